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


# --------------------------------------------------------------------------- IPv6 (issue 16)

V6_TWINS = {
    "OPEN_NET": "OPEN_NET6", "RST_NET": "RST_NET6", "SILENT_NET": "SILENT_NET6", "NOECHO_NET": "NOECHO_NET6",
    "TARPIT_IP": "TARPIT_IP6", "BIG_NET": "BIG_NET6", "UNREACH_NET": "UNREACH_NET6",
    "PROHIBIT_NET": "PROHIBIT_NET6", "DROP_NET": "DROP_NET6", "TTL_NET": "TTL_NET6",
    "BLACKHOLE_NET": "BLACKHOLE_NET6", "SCAN_ROUTE": "SCAN_ROUTE6", "READY_ADDR": "READY_ADDR6",
}  # fmt: skip


def test_v6_plan_is_the_v4_plan_twinned() -> None:
    for v4, v6 in V6_TWINS.items():
        assert lab.v6_twin(getattr(lab, v4)) == getattr(lab, v6), v4
        assert v6 in lab.__all__
    assert lab.v6_twin("198.18.1.5") == "2001:2::105"
    assert lab.v6_twin("198.19.3.5") == "2001:2::1:305"
    assert lab.v6_twin("198.18.255.255") == "2001:2::ffff"
    assert lab.v6_twin("198.19.0.0/16") == "2001:2::1:0/112"
    for bad in ("198.20.0.1", "10.77.0.1", "198.18.0.0/14", "2001:2::1", "8.8.8.8/32"):
        with pytest.raises(ValueError):
            lab.v6_twin(bad)
    # Twinning keeps the plan's nesting and sizes: same count, same carve-outs inside BIG_NET.
    for v4, v6 in V6_TWINS.items():
        n4 = ipaddress.ip_network(getattr(lab, v4))
        n6 = ipaddress.ip_network(getattr(lab, v6))
        assert n4.num_addresses == n6.num_addresses, v4


def test_v6_addresses_are_all_in_the_benchmark_block() -> None:
    """Every IPv6 address the lab assigns or routes is in 2001:2::/48 (RFC 5180), nothing else."""
    block = ipaddress.ip_network("2001:2::/48")
    addrs = [*lab.ADDRESSES6.values(), lab.SCAN_IP6, lab.TARGET_GW6, lab.ROUTER_TARGET_IP6, lab.TARGET_IP6]
    addrs += [lab.DNS_ANSWER6]
    nets = [getattr(lab, v6) for v6 in V6_TWINS.values()]
    for a in addrs:
        assert ipaddress.ip_address(a) in block, a
    for n in nets:
        assert ipaddress.ip_network(n).subnet_of(block), n  # type: ignore[arg-type]
    for _key, (_ns, dst, _kind, gw, _table) in lab.topology.ROUTES.items():
        if ":" in dst and dst != "::/0":
            assert ipaddress.ip_network(dst).subnet_of(block), dst  # type: ignore[arg-type]
        if gw is not None and ":" in gw:
            assert ipaddress.ip_address(gw) in block, gw
    # The links are not targets: outside SCAN_ROUTE6, each its own /64.
    route6 = ipaddress.ip_network(lab.SCAN_ROUTE6)
    for a in lab.ADDRESSES6.values():
        assert ipaddress.ip_address(a) not in route6
    assert set(lab.ADDRESSES6) == set(lab.topology.ADDRESSES)
    links = {ipaddress.ip_interface(f"{a}/{lab.LINK_PREFIXLEN6}").network for a in lab.ADDRESSES6.values()}
    assert len(links) == 2
    assert (
        ipaddress.ip_interface(f"{lab.SCAN_IP6}/64").network
        == ipaddress.ip_interface(f"{lab.TARGET_GW6}/64").network
    )


def test_v6_ground_truth_mirrors_v4() -> None:
    """Every v4 answer has its twin over IPv6; ICMP errors in ICMPv6's words, from the v6 responders."""
    icmp6 = {(3, 1): (1, 3), (3, 13): (1, 1), (11, 0): (3, 0), (3, 3): (1, 4)}
    addrs = [
        "198.18.0.5", "198.18.1.5", "198.18.2.5", "198.18.3.5", lab.TARPIT_IP, "198.18.4.6", "198.18.200.1",
        "198.18.255.255", "198.19.0.9", "198.19.1.9", "198.19.2.9", "198.19.3.9", "198.19.77.9",
    ]  # fmt: skip
    for a4 in addrs:
        a6 = lab.v6_twin(a4)
        for proto, ports in (
            ("tcp", [21, 22, 53, 80, 81, 123, 9022, 40000]),
            ("udp", [53, 123, 9999]),
            ("icmp", [None]),
        ):
            for port in ports:
                assert lab.expected(a6, port, proto) == lab.expected(a4, port, proto), (a6, port, proto)
                i4 = lab.expected_icmp(a4, port, proto)
                assert lab.expected_icmp(a6, port, proto) == (None if i4 is None else icmp6[i4]), (
                    a6,
                    port,
                    proto,
                )
                if proto == "tcp":
                    assert lab.service(a6, port) == lab.service(a4, port)
        r4 = lab.expected_icmp_responder(a4)
        want = None if r4 is None else lab.TARGET_GW6 if r4 == lab.TARGET_GW else a6
        assert lab.expected_icmp_responder(a6) == want, a6
        assert lab.is_tarpit(a6) == lab.is_tarpit(a4)
    # The router itself.
    assert lab.expected(lab.TARGET_GW6, 22) == "rst"
    assert lab.expected(lab.TARGET_GW6, 9999, "udp") == "icmp-unreach"
    assert lab.expected_icmp(lab.TARGET_GW6, 9999, "udp") == (1, 4)
    assert lab.expected(lab.TARGET_GW6, None, "icmp") == "echoreply"
    assert lab.expected_icmp_responder(lab.TARGET_GW6) == lab.TARGET_GW6
    # Outside the plan: silence, no responder (the links, other benchmark addresses, the Internet).
    for a6 in (lab.SCAN_IP6, "2001:2::2:1", "2001:2:0:5::1", "2001:4860::8888"):
        assert lab.expected(a6, 80) is None and lab.expected_icmp_responder(a6) is None, a6
    assert lab.is_tarpit(lab.TARPIT_IP6) and not lab.is_tarpit("2001:2::406")


def test_address_plan_names_the_v6_ranges() -> None:
    text = "\n".join(lab.address_plan().values())
    for v6 in V6_TWINS.values():
        if v6 not in ("SCAN_ROUTE6", "READY_ADDR6"):
            assert getattr(lab, v6) in text, v6
    info = lab.LabInfo()
    assert (info.scan_ip6, info.gateway_ip6, info.open_net6) == (lab.SCAN_IP6, lab.TARGET_GW6, lab.OPEN_NET6)
    assert lab.LabInfo.from_dict(info.to_dict()) == info
