"""The lab's names and its ground-truth oracle: pure checks, no namespace or privilege needed.

The integration tests compare every scan with lab.expected(); if the oracle were
wrong they would pass or fail for the wrong reason, so it is checked here on its own.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys

import pytest

from zbanner_xdp import lab
from zbanner_xdp.lab import relay as relay_mod


def test_names_derive_from_prefix() -> None:
    names = [lab.SCAN_NS, lab.ROUTER_NS, lab.TARGET_NS, lab.WIRE_NS]
    ifnames = [
        lab.SCAN_IF, lab.ROUTER_IF, lab.ROUTER_TARGET_IF, lab.TARGET_IF, lab.WIRE_SCAN_IF, lab.WIRE_ROUTER_IF,
    ]  # fmt: skip
    assert all(n.startswith(lab.PREFIX) for n in names + ifnames)
    assert len(set(names + ifnames)) == len(names + ifnames)
    assert all(len(n) <= 15 for n in ifnames)
    tag = lab.PREFIX.rstrip("-")
    assert tag == lab.NFT_TABLE
    want_state = "/run/zbanner-xdp-lab" if lab.PREFIX == "zbl-" else f"/run/zbanner-xdp-lab-{tag}"
    assert want_state == lab.STATE_DIR
    assert f"{want_state}.lock" == lab.LOCK_FILE
    assert lab.LabInfo().prefix == lab.PREFIX


def _import_lab_with(prefix: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ZBANNER_LAB_PREFIX"}
    if prefix is not None:
        env["ZBANNER_LAB_PREFIX"] = prefix
    code = "import json, zbanner_xdp.lab as m; print(json.dumps([m.SCAN_NS, m.STATE_DIR, m.LOCK_FILE]))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)


def test_prefix_from_environment() -> None:
    # Importing only computes names: nothing is created.
    default = _import_lab_with(None)
    assert json.loads(default.stdout) == ["zbl-scan", "/run/zbanner-xdp-lab", "/run/zbanner-xdp-lab.lock"]
    other = _import_lab_with("ab1-")
    assert json.loads(other.stdout) == [
        "ab1-scan",
        "/run/zbanner-xdp-lab-ab1",
        "/run/zbanner-xdp-lab-ab1.lock",
    ]
    for bad in ("", "zbl", "ZBL-", "toolong-", "a_b-", "zb--", "-"):
        r = _import_lab_with(bad)
        assert r.returncode != 0 and "ZBANNER_LAB_PREFIX" in r.stderr, (bad, r.stderr)


def test_expected_ground_truth() -> None:
    assert lab.expected("198.18.0.5", 80) == "synack"
    assert lab.expected("198.18.0.5", 81) == "rst"
    assert lab.expected("198.18.200.1", 6379) == "synack"
    assert lab.expected("198.18.1.5", 80) == "rst"
    assert lab.expected("198.18.1.5", 12345) == "rst"
    assert lab.expected("198.18.2.5", 80) is None
    assert lab.expected("198.19.0.5", 80) == "icmp-unreach"
    assert lab.expected("198.19.1.5", 80) == "icmp-unreach"
    assert lab.expected("198.19.2.5", 80) is None
    assert lab.expected("198.19.3.5", 80) == "icmp-timxceed"
    assert lab.expected("198.19.255.255", 22) is None
    assert lab.expected("8.8.8.8", 80) is None
    assert lab.expected(lab.TARGET_GW, 22) == "rst"
    assert lab.expected("198.18.3.1", 80) == "synack"
    assert lab.expected("198.18.3.1", 81) == "rst"
    assert lab.expected(lab.TARPIT_IP, 81) == "synack"
    assert lab.expected(lab.TARPIT_IP, 65535) == "synack"
    assert lab.expected("198.18.4.6", 81) == "rst"
    for port in lab.TCP_PORTS:
        assert lab.expected("198.18.0.0", port) == "synack"
    assert lab.expected("198.18.0.5", lab.PORTS["ntp"]) == "rst"  # NTP is UDP only
    with pytest.raises(ValueError):
        lab.expected("198.18.0.5", 70000)
    with pytest.raises(ValueError):
        lab.expected("198.18.0.5", 80, "sctp")
    with pytest.raises(ValueError):
        lab.expected("198.18.0.5", None, "udp")


def test_expected_udp_and_icmp() -> None:
    for addr in ("198.18.0.5", "198.18.1.5", "198.18.3.5", lab.TARPIT_IP, "198.18.200.1"):
        assert lab.expected(addr, 53, "udp") == "udp"
        assert lab.expected(addr, 123, "udp") == "udp"
        assert lab.expected(addr, 9999, "udp") == "icmp-unreach"
        assert lab.expected_icmp(addr, 9999, "udp") == (3, 3)
        assert lab.expected_icmp(addr, 53, "udp") is None
        assert lab.expected_icmp_responder(addr) == addr
    for proto, port in (("tcp", 80), ("udp", 53), ("icmp", None)):
        assert lab.expected("198.18.2.5", port, proto) is None
        assert lab.expected("198.19.0.9", port, proto) == "icmp-unreach"
        assert lab.expected_icmp("198.19.0.9", port, proto) == (3, 1)
        assert lab.expected_icmp("198.19.1.9", port, proto) == (3, 13)
        assert lab.expected("198.19.3.9", port, proto) == "icmp-timxceed"
        assert lab.expected_icmp("198.19.3.9", port, proto) == (11, 0)
        assert lab.expected("198.19.2.9", port, proto) is None
        assert lab.expected("198.19.77.9", port, proto) is None
    assert lab.expected("198.18.0.5", None, "icmp") == "echoreply"
    assert lab.expected("198.18.3.5", None, "icmp") is None
    assert lab.expected("198.18.3.5", 7, "icmp") is None  # the port is ignored for ICMP
    assert lab.expected(lab.TARGET_GW, None, "icmp") == "echoreply"
    assert lab.expected(lab.TARGET_GW, 53, "udp") == "icmp-unreach"
    assert lab.expected_icmp_responder(lab.TARGET_GW) == lab.TARGET_GW
    for addr in ("198.19.0.1", "198.19.1.1", "198.19.3.1"):
        assert lab.expected_icmp_responder(addr) == lab.TARGET_GW
    for addr in ("198.18.2.1", "198.19.2.1", "198.19.200.1", "8.8.8.8", lab.SCAN_IP):
        assert lab.expected_icmp_responder(addr) is None
    assert lab.is_tarpit(lab.TARPIT_IP) and not lab.is_tarpit("198.18.4.6")


def test_ns_exec_argv() -> None:
    assert lab.ns_exec_argv(lab.SCAN_NS, ["true", "x"]) == ["ip", "netns", "exec", lab.SCAN_NS, "true", "x"]


def test_impair_needs_the_relay_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay_mod, "relay_available", lambda: False)
    with (
        pytest.raises(RuntimeError, match=r"zbanner_xdp\.lab\.impair.*not installed"),
        lab.impaired("loss 1%"),
    ):
        pass


# The fault tests' 512 targets (tests/integration/test_faults.py: NETS).
FAULT_TARGETS = [str(a) for net in (lab.OPEN_NET, "198.18.5.0/24") for a in ipaddress.ip_network(net)]


def test_fault_test_targets_are_open() -> None:
    assert len(FAULT_TARGETS) == 512
    assert {lab.expected(a, lab.PORTS["http"]) for a in FAULT_TARGETS} == {"synack"}
    assert not [a for a in FAULT_TARGETS if lab.is_tarpit(a)]


def test_unexpected_ports_ground_truth() -> None:
    # Every TCP service also answers on a port that is not its own, on every address that answers TCP.
    assert {lab.PROTOCOLS[k] for k in lab.UNEXPECTED.values()} == {
        lab.PROTOCOLS[k] for k, protos in lab.PORT_PROTOS.items() if "tcp" in protos
    }
    assert not lab.UNEXPECTED_PORTS & lab.TCP_PORTS
    assert lab.OPEN_TCP_PORTS == lab.TCP_PORTS | lab.UNEXPECTED_PORTS
    for port, key in lab.UNEXPECTED.items():
        assert lab.PORTS[key] != port
        for addr in ("198.18.0.5", "198.18.3.1", "198.18.200.1", lab.TARPIT_IP):
            assert lab.expected(addr, port) == "synack", (addr, port)
            assert lab.service(addr, port) == lab.PROTOCOLS[key] == lab.TCP_SERVICES[port]
        assert lab.expected("198.18.1.5", port) == "rst"
        assert lab.expected("198.18.2.5", port) is None
        assert lab.service("198.18.1.5", port) is None
        assert lab.expected("198.18.0.5", port, "udp") == "icmp-unreach"  # TCP only


def test_service_table() -> None:
    want = {
        21: "ftp", 22: "ssh", 25: "smtp", 53: "dns", 80: "http", 110: "pop3", 143: "imap", 443: "tls",
        1883: "mqtt", 3306: "mysql", 5432: "postgres", 6379: "redis", 11211: "memcached",
    }  # fmt: skip
    assert {p: s for p, s in lab.TCP_SERVICES.items() if p in lab.TCP_PORTS} == want
    assert set(lab.TCP_SERVICES) == lab.OPEN_TCP_PORTS
    for port, proto in want.items():
        assert lab.expected("198.18.0.5", port) == "synack"
        assert lab.service("198.18.0.5", port) == proto
    # The servers cover every TCP entry of PORTS, and nothing else listens.
    served = {k for keys in lab.SERVERS.values() for k in keys}
    assert served == set(lab.PORTS)
    assert lab.service("198.18.0.5", 81) is None  # RST
    assert lab.service(lab.TARPIT_IP, 81) == "http"  # the tarpit's other ports reach nginx
    assert lab.service("198.18.0.5", 123) is None  # NTP is UDP only
    assert len(lab.SERVERS) >= 12 and len(set(want.values())) >= 10
