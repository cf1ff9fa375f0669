"""Integration tests for the built-in lab (zbanner_xdp.lab).

They build the real lab (scanner, router and target namespaces, veth pairs,
nftables, nginx, sshd, vsftpd, redis, dnsmasq, chronyd; then the fault wire
with its relay) and probe it from inside the scan namespace, so they need
root. All traffic stays inside the lab's namespaces; every test leaves nothing
behind. Every name comes from the lab module, so ZBANNER_LAB_PREFIX=zbx- runs
the suite on a lab of its own (zbx-scan, ...) next to the default one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.labprobes import (
    Check,
    FlowKey,
    IcmpError,
    assert_ground_truth,
    assert_icmp_not_rate_limited,
    probe_with_icmp,
    run_probes,
    sysctl,
)
from zbanner_xdp import lab
from zbanner_xdp.lab import netns, procs, servers, topology
from zbanner_xdp.lab import relay as relay_mod

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.skipif(
        not (os.geteuid() == 0 and shutil.which("ip")),
        reason="the lab needs root and iproute2 (network namespaces, veth, nftables)",
    ),
]

OPEN_ADDR = "198.18.0.5"
RST_ADDR = "198.18.1.5"
SILENT_ADDR = "198.18.2.5"
NOECHO_ADDR = "198.18.3.7"
BIG_ADDR = "198.18.123.45"
UNREACH_ADDR = "198.19.0.5"
PROHIBIT_ADDR = "198.19.1.5"
DROP_ADDR = "198.19.2.5"
TTL_ADDR = "198.19.3.5"
BLACKHOLE_ADDR = "198.19.200.1"
GW = lab.TARGET_GW
# Fresh every run (shown in assertion messages): the tarpit must answer on any port.
TARPIT_PORTS = random.sample(sorted(set(range(1024, 65536)) - lab.OPEN_TCP_PORTS), 5)

CHECKS: list[Check] = [
    # TCP
    (OPEN_ADDR, 80, "http"),
    (OPEN_ADDR, 443, "tls"),
    (OPEN_ADDR, 22, "banner"),
    (OPEN_ADDR, 21, "banner"),
    (OPEN_ADDR, 6379, "redis"),
    (OPEN_ADDR, 53, "connect"),  # dnsmasq serves TCP too
    ("198.18.0.6", 53, "dnstcp"),  # and answers it on every lab address (DNAT to its own)
    (BIG_ADDR, 9053, "dnstcp"),
    (OPEN_ADDR, 25, "banner"),
    (OPEN_ADDR, 110, "banner"),
    (OPEN_ADDR, 143, "banner"),
    (OPEN_ADDR, 3306, "banner"),
    (OPEN_ADDR, 5432, "connect"),
    (OPEN_ADDR, 11211, "connect"),
    (OPEN_ADDR, 1883, "connect"),
    # Unexpected ports: each service also on a port not its own (DNAT), on every address that answers.
    (OPEN_ADDR, 9022, "banner"),
    (OPEN_ADDR, 9021, "banner"),
    (BIG_ADDR, 9025, "banner"),
    (OPEN_ADDR, 9080, "http"),
    (OPEN_ADDR, 9443, "tls"),
    (OPEN_ADDR, 9379, "redis"),
    (NOECHO_ADDR, 9306, "banner"),
    (RST_ADDR, 9022, "connect"),  # the carve-outs stay what they are
    (SILENT_ADDR, 9022, "connect"),
    (RST_ADDR, 53, "connect"),
    (lab.TARPIT_IP, 9022, "banner"),  # the tarpit's unexpected ports keep their services
    (OPEN_ADDR, 123, "connect"),  # NTP is UDP only: RST
    (OPEN_ADDR, 81, "connect"),  # closed port on an open address
    (RST_ADDR, 80, "connect"),  # RST_NET, even on a server port
    (RST_ADDR, 22, "connect"),
    (SILENT_ADDR, 80, "connect"),
    (SILENT_ADDR, 22, "connect"),
    (NOECHO_ADDR, 80, "http"),  # NOECHO answers TCP like OPEN
    (NOECHO_ADDR, 81, "connect"),
    (BIG_ADDR, 80, "http"),  # BIG_NET outside the carve-outs behaves as open
    ("198.18.255.254", 6379, "redis"),
    ("198.18.77.1", 8080, "connect"),
    (lab.TARPIT_IP, 80, "http"),
    (lab.TARPIT_IP, 22, "banner"),  # the tarpit's server ports keep their servers
    (lab.TARPIT_IP, TARPIT_PORTS[0], "http"),  # other ports reach nginx
    *[(lab.TARPIT_IP, p, "connect") for p in TARPIT_PORTS[1:]],
    ("198.18.4.6", TARPIT_PORTS[0], "connect"),  # the tarpit's neighbour is an ordinary open host
    (UNREACH_ADDR, 80, "connect"),
    (PROHIBIT_ADDR, 80, "connect"),
    (DROP_ADDR, 80, "connect"),
    (TTL_ADDR, 80, "connect"),
    (BLACKHOLE_ADDR, 80, "connect"),
    (GW, 22, "connect"),  # the router runs no servers
    (GW, 80, "connect"),
    # UDP
    (OPEN_ADDR, 53, "dns"),
    (RST_ADDR, 53, "dns"),
    (NOECHO_ADDR, 53, "dns"),
    (lab.TARPIT_IP, 53, "dns"),
    ("198.18.200.200", 53, "dns"),
    (SILENT_ADDR, 53, "dns"),
    (GW, 53, "dns"),  # port unreachable from the router itself
    (UNREACH_ADDR, 53, "dns"),
    (PROHIBIT_ADDR, 53, "dns"),
    (DROP_ADDR, 53, "dns"),
    (TTL_ADDR, 53, "dns"),
    (BLACKHOLE_ADDR, 53, "dns"),
    (OPEN_ADDR, 123, "ntp"),
    (BIG_ADDR, 123, "ntp"),
    (lab.TARPIT_IP, 123, "ntp"),
    (SILENT_ADDR, 123, "ntp"),
    (OPEN_ADDR, 9999, "udp"),
    (RST_ADDR, 9999, "udp"),
    (NOECHO_ADDR, 9999, "udp"),
    (lab.TARPIT_IP, 9999, "udp"),
    (SILENT_ADDR, 9999, "udp"),
    (GW, 9999, "udp"),
    (TTL_ADDR, 9999, "udp"),
    # ICMP echo
    (OPEN_ADDR, 0, "echo"),
    (RST_ADDR, 0, "echo"),
    (SILENT_ADDR, 0, "echo"),
    (NOECHO_ADDR, 0, "echo"),
    (lab.TARPIT_IP, 0, "echo"),
    ("198.18.99.99", 0, "echo"),
    (GW, 0, "echo"),
    (UNREACH_ADDR, 0, "echo"),
    (PROHIBIT_ADDR, 0, "echo"),
    (DROP_ADDR, 0, "echo"),
    (TTL_ADDR, 0, "echo"),
    (BLACKHOLE_ADDR, 0, "echo"),
]
# Taken at import, before any lab call could have moved this thread.
HOST_NETNS_INO = os.stat("/proc/thread-self/ns/net").st_ino


def ns_names() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def root_link_names() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=10, check=True)
    return [line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines()]


def alive(pid: int) -> bool:
    """Running (zombies count as gone: a non-reaping init may keep them around)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def offload_flags(ns: str, ifname: str) -> dict[str, bool]:
    from pyroute2.ethtool.ioctl import IoctlEthtool

    def flags() -> dict[str, bool]:
        eth = IoctlEthtool(ifname)
        try:
            return eth.get_offload_flags()
        finally:
            eth.close()

    return netns.run_in(ns, flags)


def assert_nothing_left() -> None:
    assert not [n for n in ns_names() if n.startswith(lab.PREFIX)]
    assert not [n for n in root_link_names() if n.startswith(lab.PREFIX)]
    assert not os.path.exists(lab.STATE_DIR)


# --------------------------------------------------------------------------- no lab needed


# --------------------------------------------------------------------------- teardown of broken labs
# These run before the module fixture builds the lab (pytest keeps file order).


def test_down_when_nothing_exists() -> None:
    lab.down()
    assert lab.down() == []
    assert_nothing_left()


def test_down_cleans_half_built_lab() -> None:
    lab.down()
    stray: subprocess.Popen[bytes] | None = None
    bystander: subprocess.Popen[bytes] | None = None
    # A look-alike namespace of another prefix: down() must only take its own.
    lookalike = f"{lab.PREFIX.rstrip('-')}x-keep"
    try:
        for ns in (lab.SCAN_NS, lab.WIRE_NS, lab.ROUTER_NS, lab.TARGET_NS, lookalike):
            subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
        subprocess.run(
            ["ip", "-n", lab.SCAN_NS, "link", "add", lab.SCAN_IF, "type", "veth",
             "peer", "name", lab.WIRE_SCAN_IF, "netns", lab.WIRE_NS],
            check=True,
            timeout=10,
        )  # fmt: skip
        subprocess.run(
            ["ip", "-n", lab.ROUTER_NS, "link", "add", lab.ROUTER_TARGET_IF, "type", "veth",
             "peer", "name", lab.TARGET_IF, "netns", lab.TARGET_NS],
            check=True,
            timeout=10,
        )  # fmt: skip
        stray = subprocess.Popen(lab.ns_exec_argv(lab.TARGET_NS, ["sleep", "300"]), start_new_session=True)
        # A stale pid file naming an unrelated process outside the lab: down()
        # must leave it alone because it is not the server the file is for.
        bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)
        os.makedirs(lab.STATE_DIR, exist_ok=True)
        for name in ("nginx", "relay"):
            with open(os.path.join(lab.STATE_DIR, f"{name}.pid"), "w") as f:
                f.write(f"{bystander.pid}\n")
        deadline = time.monotonic() + 5
        while not os.path.exists(f"/proc/{stray.pid}") or stray.pid not in procs.pids_in_netns(lab.TARGET_NS):
            assert time.monotonic() < deadline, "stray process never entered the target namespace"
            time.sleep(0.02)

        assert not lab.status()["complete"]
        removed = lab.down()

        for ns in (lab.SCAN_NS, lab.WIRE_NS, lab.ROUTER_NS, lab.TARGET_NS):
            assert f"netns {ns}" in removed
        assert any(item.startswith(f"process {stray.pid} ") for item in removed)
        assert stray.wait(timeout=5) is not None
        assert bystander.poll() is None, "down() killed a process that merely had a stale pid file"
        assert lookalike in ns_names(), "down() removed another prefix's namespace"
        assert_nothing_left()
        assert lab.down() == []
    finally:
        for p in (stray, bystander):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(timeout=5)
        if lookalike in ns_names():
            subprocess.run(["ip", "netns", "delete", lookalike], check=False, timeout=10)
        lab.down()


def test_failed_up_names_server_and_cleans_up(monkeypatch: pytest.MonkeyPatch) -> None:
    real_argv = servers.server_argv

    def broken(name: str) -> list[str]:
        if name == "vsftpd":
            return ["vsftpd", "/nonexistent/vsftpd.conf"]
        return real_argv(name)

    monkeypatch.setattr(servers, "server_argv", broken)
    try:
        with pytest.raises(RuntimeError, match=r"vsftpd.*vsftpd\.log"):
            lab.up()
        assert not [n for n in ns_names() if n.startswith(lab.PREFIX)]
        # Processes are gone, but the logs stay for the post-mortem.
        assert os.path.exists(os.path.join(lab.STATE_DIR, "vsftpd.log"))
        for name in lab.SERVERS:
            assert servers.server_pid(name) is None
    finally:
        lab.down()
    assert_nothing_left()


# --------------------------------------------------------------------------- the running lab


@pytest.fixture(scope="module")
def lab_info() -> Iterator[lab.LabInfo]:
    try:
        t0 = time.monotonic()
        info = lab.up()
        print(f"lab.up() took {time.monotonic() - t0:.2f}s")
        yield info
    finally:
        t0 = time.monotonic()
        lab.down()
        print(f"lab.down() took {time.monotonic() - t0:.2f}s")


@pytest.fixture(scope="module")
def probed(
    lab_info: lab.LabInfo, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[Check, dict[str, Any]], dict[FlowKey, list[IcmpError]]]:
    return probe_with_icmp(CHECKS, tmp_path_factory.mktemp("probes"))


@pytest.fixture(scope="module")
def probes(probed: tuple[dict[Check, dict[str, Any]], Any]) -> dict[Check, dict[str, Any]]:
    return probed[0]


def test_lab_info(lab_info: lab.LabInfo) -> None:
    assert lab_info.scan_ns == lab.SCAN_NS and lab_info.target_ns == lab.TARGET_NS
    assert lab_info.router_ns == lab.ROUTER_NS and not lab_info.wire
    assert lab_info.scan_ip == lab.SCAN_IP and lab_info.gateway_ip == lab.TARGET_GW
    assert set(lab_info.servers) == set(lab.SERVERS)
    assert all(alive(pid) for pid in lab_info.servers.values())
    json.dumps(lab_info.to_dict())
    # lab joins namespaces only from throw-away threads; this one must still be in the host's.
    assert os.stat("/proc/thread-self/ns/net").st_ino == HOST_NETNS_INO
    # The scanner's next hop is the router, with the fixed gateway MAC.
    out = subprocess.run(
        ["ip", "-n", lab.ROUTER_NS, "-o", "link", "show", lab.ROUTER_IF],
        capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    assert lab_info.gateway_mac == lab.GATEWAY_MAC == lab.TARGET_MAC
    assert lab_info.gateway_mac in out.stdout


def test_http(probes: dict[Check, dict[str, Any]]) -> None:
    for addr, port in ((OPEN_ADDR, 80), (BIG_ADDR, 80), (NOECHO_ADDR, 80), (lab.TARPIT_IP, 80)):
        r = probes[(addr, port, "http")]
        assert r["outcome"] == "synack", (addr, r)
        assert r["data"].startswith("HTTP/1.1 200")
        assert "<title>zbanner-xdp lab</title>" in r["data"]


def test_tls_handshake(probes: dict[Check, dict[str, Any]]) -> None:
    r = probes[(OPEN_ADDR, 443, "tls")]
    assert r["outcome"] == "synack", r
    assert r.get("tls") in ("TLSv1.2", "TLSv1.3"), r
    assert r["cert_len"] > 0


def test_ssh_banner(probes: dict[Check, dict[str, Any]]) -> None:
    for addr in (OPEN_ADDR, lab.TARPIT_IP):
        assert probes[(addr, 22, "banner")]["data"].startswith("SSH-2.0-OpenSSH")


def test_ftp_greeting(probes: dict[Check, dict[str, Any]]) -> None:
    assert probes[(OPEN_ADDR, 21, "banner")]["data"].startswith("220 (vsFTPd ")


def test_more_servers_and_unexpected_ports(probes: dict[Check, dict[str, Any]]) -> None:
    assert probes[(OPEN_ADDR, 25, "banner")]["data"].startswith("220 zbanner.lab ESMTP Exim ")
    assert probes[(OPEN_ADDR, 110, "banner")]["data"].startswith("+OK Dovecot")
    assert probes[(OPEN_ADDR, 143, "banner")]["data"].startswith("* OK [CAPABILITY IMAP4rev1")
    assert "-MariaDB-" in probes[(OPEN_ADDR, 3306, "banner")]["data"]
    for port in (5432, 11211, 1883):
        assert probes[(OPEN_ADDR, port, "connect")]["outcome"] == "synack", port
    for addr in (OPEN_ADDR, lab.TARPIT_IP):
        assert probes[(addr, 9022, "banner")]["data"].startswith("SSH-2.0-OpenSSH"), addr
    assert probes[(OPEN_ADDR, 9021, "banner")]["data"].startswith("220 (vsFTPd ")
    assert probes[(BIG_ADDR, 9025, "banner")]["data"].startswith("220 zbanner.lab ESMTP Exim ")
    assert "-MariaDB-" in probes[(NOECHO_ADDR, 9306, "banner")]["data"]
    assert probes[(OPEN_ADDR, 9080, "http")]["data"].startswith("HTTP/1.1 200")
    assert probes[(OPEN_ADDR, 9443, "tls")].get("tls") in ("TLSv1.2", "TLSv1.3")
    assert probes[(OPEN_ADDR, 9379, "redis")]["data"] == "+PONG\r\n"
    assert probes[(RST_ADDR, 9022, "connect")]["outcome"] == "rst"
    assert probes[(RST_ADDR, 53, "connect")]["outcome"] == "rst"
    assert probes[(SILENT_ADDR, 9022, "connect")]["outcome"] == "timeout"
    for where in (("198.18.0.6", 53, "dnstcp"), (BIG_ADDR, 9053, "dnstcp")):
        reply = bytes.fromhex(probes[where].get("data", ""))
        # Length prefix, our id, an answer; the last four bytes are the lab's A record.
        assert reply[2:4] == b"\x7a\x62" and reply[-4:] == bytes(map(int, lab.DNS_ANSWER.split("."))), where


def test_redis_ping(probes: dict[Check, dict[str, Any]]) -> None:
    for addr in (OPEN_ADDR, "198.18.255.254"):
        assert probes[(addr, 6379, "redis")]["data"] == "+PONG\r\n"


def test_dns(probes: dict[Check, dict[str, Any]]) -> None:
    for addr in (OPEN_ADDR, RST_ADDR, NOECHO_ADDR, lab.TARPIT_IP, "198.18.200.200"):
        r = probes[(addr, 53, "dns")]
        # Answered from the very address asked (AnyIP + IP_PKTINFO), with the lab's record.
        assert r == {"outcome": "udp", "src": addr, "rcode": 0, "answer": lab.DNS_ANSWER}, (addr, r)
    assert probes[(OPEN_ADDR, 53, "connect")]["outcome"] == "synack"


def test_ntp(probes: dict[Check, dict[str, Any]]) -> None:
    for addr in (OPEN_ADDR, BIG_ADDR, lab.TARPIT_IP):
        r = probes[(addr, 123, "ntp")]
        assert r == {"outcome": "udp", "src": addr, "mode": 4, "stratum": lab.NTP_STRATUM}, (addr, r)
    assert probes[(OPEN_ADDR, 123, "connect")]["outcome"] == "rst"


def test_tarpit_answers_every_port(probes: dict[Check, dict[str, Any]]) -> None:
    r = probes[(lab.TARPIT_IP, TARPIT_PORTS[0], "http")]
    assert r["outcome"] == "synack" and r["data"].startswith("HTTP/1.1 200"), (TARPIT_PORTS, r)
    for port in TARPIT_PORTS[1:]:
        assert probes[(lab.TARPIT_IP, port, "connect")]["outcome"] == "synack", (TARPIT_PORTS, port)
    assert probes[("198.18.4.6", TARPIT_PORTS[0], "connect")]["outcome"] == "rst", TARPIT_PORTS


def test_refused_and_silent(probes: dict[Check, dict[str, Any]]) -> None:
    assert probes[(OPEN_ADDR, 81, "connect")]["outcome"] == "rst"
    assert probes[(RST_ADDR, 80, "connect")]["outcome"] == "rst"
    assert probes[(RST_ADDR, 22, "connect")]["outcome"] == "rst"
    assert probes[(GW, 22, "connect")]["outcome"] == "rst"
    for addr in (SILENT_ADDR, DROP_ADDR, BLACKHOLE_ADDR):
        assert probes[(addr, 80, "connect")]["outcome"] == "timeout", addr
        assert probes[(addr, 0, "echo")]["outcome"] == "timeout", addr
        assert probes[(addr, 53, "dns")]["outcome"] == "timeout", addr
    assert probes[(SILENT_ADDR, 9999, "udp")]["outcome"] == "timeout"
    assert probes[(NOECHO_ADDR, 0, "echo")]["outcome"] == "timeout"
    for addr in (OPEN_ADDR, RST_ADDR, lab.TARPIT_IP, GW):
        assert probes[(addr, 0, "echo")]["outcome"] == "echoreply", addr
    for addr in (OPEN_ADDR, RST_ADDR, NOECHO_ADDR, lab.TARPIT_IP, GW):
        assert probes[(addr, 9999, "udp")]["outcome"] == "refused", addr
    # TCP turns the router's ICMP into an error unless it arrives while connect() still holds the
    # socket (then it is only a soft error and connect() times out); the capture is the ground truth.
    for addr in (UNREACH_ADDR, PROHIBIT_ADDR, TTL_ADDR):
        assert probes[(addr, 80, "connect")]["outcome"] in ("error", "timeout"), addr
    # UDP sockets report only "hard" ICMP errors (RFC 1122): admin prohibited yes, host unreachable no.
    assert probes[(PROHIBIT_ADDR, 53, "dns")]["outcome"] == "error"
    assert probes[(UNREACH_ADDR, 53, "dns")]["outcome"] == "timeout"


def test_expected_agrees_with_observed(
    probed: tuple[dict[Check, dict[str, Any]], dict[FlowKey, list[IcmpError]]],
) -> None:
    results, icmp = probed
    assert_ground_truth(results, icmp)
    # Every ICMP error the plan promises showed up: router ones and the target's port unreachables.
    assert {e for errs in icmp.values() for e in errs} >= {
        (lab.TARGET_GW, 3, 1), (lab.TARGET_GW, 3, 13), (lab.TARGET_GW, 11, 0),
        (lab.TARGET_GW, 3, 3), (OPEN_ADDR, 3, 3), (lab.TARPIT_IP, 3, 3),
    }  # fmt: skip


def test_icmp_errors_are_not_rate_limited(lab_info: lab.LabInfo) -> None:
    """A burst far above any kernel default rate limit draws exactly one ICMP error per packet."""
    nets = ["198.19.0", "198.19.1", "198.19.3", "198.18.0", "198.18.1", "198.18.4"]
    assert_icmp_not_rate_limited({net: [f"{net}.{i}" for i in range(1, 255)] for net in nets})


def test_status(lab_info: lab.LabInfo) -> None:
    d = lab.status()
    json.dumps(d)
    assert d["complete"] and not d["wire"] and d["relay"] is None
    assert d["prefix"] == lab.PREFIX
    assert d["namespaces"] == {lab.SCAN_NS: True, lab.ROUTER_NS: True, lab.TARGET_NS: True}
    assert d["links"][lab.SCAN_IF]["addrs"] == [f"{lab.SCAN_IP}/24"]
    assert d["links"][lab.ROUTER_IF]["addrs"] == [f"{lab.TARGET_GW}/24"]
    assert d["links"][lab.ROUTER_TARGET_IF]["addrs"] == [f"{lab.ROUTER_TARGET_IP}/24"]
    assert d["links"][lab.TARGET_IF]["addrs"] == [f"{lab.TARGET_IP}/24"]
    assert all(d["routes"].values()), d["routes"]
    assert d["nft_table"] and all(d["nft_tables"].values())
    # Ground truth depends on nothing else listening in the target namespace.
    assert d["listening_ports"] == sorted(lab.TCP_PORTS)
    assert d["listening_udp_ports"] == sorted(lab.UDP_PORTS)
    assert {n: s["pid"] for n, s in d["servers"].items()} == lab_info.servers
    text = lab.format_status(d)
    for net in (
        lab.OPEN_NET, lab.RST_NET, lab.SILENT_NET, lab.NOECHO_NET, lab.TARPIT_IP, lab.BIG_NET,
        lab.UNREACH_NET, lab.PROHIBIT_NET, lab.DROP_NET, lab.TTL_NET, lab.BLACKHOLE_NET,
    ):  # fmt: skip
        assert net in text


def test_routes(lab_info: lab.LabInfo) -> None:
    def routes(ns: str) -> str:
        return subprocess.run(
            ["ip", "-n", ns, "-4", "route", "show"], capture_output=True, text=True, timeout=10, check=True
        ).stdout

    scan = routes(lab.SCAN_NS)
    assert "default" not in scan
    assert f"{lab.SCAN_ROUTE} via {lab.TARGET_GW} dev {lab.SCAN_IF}" in scan
    rtr = routes(lab.ROUTER_NS)
    assert "default" not in rtr
    for line in (
        f"{lab.BIG_NET} via {lab.TARGET_IP} dev {lab.ROUTER_TARGET_IF}",
        f"unreachable {lab.UNREACH_NET}",
        f"prohibit {lab.PROHIBIT_NET}",
        f"blackhole {lab.DROP_NET}",
        f"{lab.TTL_NET} via {lab.TARGET_IP} dev {lab.ROUTER_TARGET_IF}",
        f"blackhole {lab.BLACKHOLE_NET}",
    ):
        assert line in rtr, (line, rtr)
    assert f"default via {lab.ROUTER_TARGET_IP} dev {lab.TARGET_IF}" in routes(lab.TARGET_NS)


def test_sysctls(lab_info: lab.LabInfo) -> None:
    assert sysctl(lab.ROUTER_NS, "net.ipv4.ip_forward") == "1"
    assert sysctl(lab.TARGET_NS, "net.ipv4.ip_forward") == "0"
    for ns in (lab.ROUTER_NS, lab.TARGET_NS):
        assert sysctl(ns, "net.ipv4.icmp_ratelimit") == "0"
        assert sysctl(ns, "net.ipv4.icmp_msgs_per_sec") == "100000"
        assert sysctl(ns, "net.ipv4.icmp_msgs_burst") == "100000"
        assert sysctl(ns, "net.ipv4.conf.all.rp_filter") == "0"
    for ns in (lab.SCAN_NS, lab.ROUTER_NS, lab.TARGET_NS):
        assert sysctl(ns, "net.ipv6.conf.all.disable_ipv6") == "0"  # IPv6 on (network.py: quiet)


def test_tx_checksum_offload_off(lab_info: lab.LabInfo) -> None:
    for ns, ifname in topology.interfaces(wire=False):
        assert offload_flags(ns, ifname)["tx-checksumming"] is False, ifname


def test_next_hop_has_an_xdp_program(lab_info: lab.LabInfo) -> None:
    # What makes a veth deliver XDP transmits, as a NIC does (kernel generator, in-kernel replies).
    def hop_xdp() -> str | None:
        return lab.status()["links"][lab.ROUTER_IF]["xdp"]

    assert hop_xdp() == lab.PASS_PROG_NAME and lab.status()["next_hop_xdp"]
    assert "xdp zb_lab_pass" in lab.format_status(lab.status())
    with lab.next_hop_xdp_released():
        assert hop_xdp() is None and not lab.status()["next_hop_xdp"]
    assert hop_xdp() == lab.PASS_PROG_NAME
    lab.next_hop_xdp(False)  # as a killed emulator leaves it: up() puts it back
    assert lab.up().servers == lab_info.servers and hop_xdp() == lab.PASS_PROG_NAME


def test_up_is_idempotent(lab_info: lab.LabInfo) -> None:
    before = lab.status()
    t0 = time.monotonic()
    again = lab.up()
    assert time.monotonic() - t0 < 2
    assert again.servers == {n: s["pid"] for n, s in before["servers"].items()}
    assert lab.status()["complete"]


def test_up_rebuilds_partial_lab(lab_info: lab.LabInfo) -> None:
    old = dict(lab.up().servers)
    os.kill(old["chronyd"], signal.SIGKILL)
    deadline = time.monotonic() + 5
    while alive(old["chronyd"]):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert not lab.status()["complete"]

    new = lab.up()
    assert lab.status()["complete"]
    assert set(new.servers) == set(lab.SERVERS)
    assert all(alive(pid) for pid in new.servers.values())
    assert not any(alive(pid) for pid in old.values()), "rebuild left old servers running"
    r = run_probes([(OPEN_ADDR, 6379, "redis"), ("198.18.1.9", 6379, "connect"), (OPEN_ADDR, 123, "ntp")])
    assert r[(OPEN_ADDR, 6379, "redis")]["data"] == "+PONG\r\n"
    assert r[("198.18.1.9", 6379, "connect")]["outcome"] == "rst"
    assert r[(OPEN_ADDR, 123, "ntp")]["stratum"] == lab.NTP_STRATUM


def test_impair_needs_the_wire_lab(lab_info: lab.LabInfo) -> None:
    with pytest.raises(RuntimeError), lab.impaired("loss 1%"):
        pass
    assert lab.status()["complete"]


TTL_SCRIPT = r"""
import socket, sys
for addr in sys.argv[1:]:
    s = socket.socket()
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 99)
    s.settimeout(0.3)
    try:
        s.connect((addr, 80))
    except OSError:
        pass
    s.close()
"""


def test_capture_point_sees_frames_as_sent(lab_info: lab.LabInfo, tmp_path: Path) -> None:
    import dpkt

    pcap = tmp_path / "first-hop.pcap"
    addrs = [OPEN_ADDR, UNREACH_ADDR, DROP_ADDR]
    cap = subprocess.Popen(
        lab.ns_exec_argv(
            lab.CAPTURE_NS,
            [
                "tcpdump",
                "-i",
                lab.CAPTURE_IF,
                "--immediate-mode",
                "-U",
                "-n",
                "-w",
                str(pcap),
                f"tcp and src host {lab.SCAN_IP}",
            ],
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert cap.stderr is not None
        assert "listening on" in cap.stderr.readline()
        subprocess.run(
            lab.ns_exec_argv(lab.SCAN_NS, [sys.executable, "-c", TTL_SCRIPT, *addrs]), check=True, timeout=30
        )
        time.sleep(0.1)
    finally:
        cap.send_signal(signal.SIGINT)
        cap.wait(timeout=10)
        if cap.stderr is not None:
            cap.stderr.close()
    with open(pcap, "rb") as fh:
        syns = [dpkt.ethernet.Ethernet(buf).data for _ts, buf in dpkt.pcap.Reader(fh)]
    syns = [ip for ip in syns if isinstance(ip, dpkt.ip.IP) and ip.data.flags & dpkt.tcp.TH_SYN]
    # Every SYN, router carve-outs included, with the TTL the scanner set.
    assert {socket.inet_ntoa(ip.dst) for ip in syns} == set(addrs)
    assert {ip.ttl for ip in syns} == {99}


def test_wire_lab_without_the_relay_module(lab_info: lab.LabInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay_mod, "relay_available", lambda: False)
    info = lab.up(wire=True)
    assert info.wire and info.relay_pid is None
    d = lab.status()
    assert d["complete"] and d["wire"] and d["namespaces"][lab.WIRE_NS]
    assert d["relay"]["available"] is False and not d["relay"]["alive"]
    assert "not available" in lab.format_status(d)
    # No relay: no frame crosses the wire.
    assert run_probes([(OPEN_ADDR, 80, "connect")])[(OPEN_ADDR, 80, "connect")]["outcome"] == "timeout"
    with pytest.raises(RuntimeError, match=r"zbanner_xdp\.lab\.impair"), lab.impaired("loss 1%"):
        pass


# --------------------------------------------------------------------------- the fault wire

WIRE_CHECKS: list[Check] = [
    (OPEN_ADDR, 80, "http"),
    (OPEN_ADDR, 53, "dns"),
    (OPEN_ADDR, 0, "echo"),
    (OPEN_ADDR, 9999, "udp"),
    (RST_ADDR, 80, "connect"),
    (UNREACH_ADDR, 80, "connect"),
    (TTL_ADDR, 0, "echo"),
]
needs_relay = pytest.mark.skipif(not lab.relay_available(), reason="zbanner_xdp.lab.impair is not there yet")


@pytest.fixture(scope="module")
def wire_lab(lab_info: lab.LabInfo) -> lab.LabInfo:
    t0 = time.monotonic()
    info = lab.up(wire=True)  # a plain lab is up: this rebuilds
    print(f"lab.up(wire=True) over a plain lab took {time.monotonic() - t0:.2f}s")
    return info


def test_wire_topology(wire_lab: lab.LabInfo) -> None:
    assert wire_lab.wire and wire_lab.wire_ns == lab.WIRE_NS
    assert wire_lab.wire_ifs == [lab.WIRE_SCAN_IF, lab.WIRE_ROUTER_IF]
    d = lab.status()
    assert d["complete"] and d["wire"]
    assert d["namespaces"] == dict.fromkeys((lab.SCAN_NS, lab.WIRE_NS, lab.ROUTER_NS, lab.TARGET_NS), True)
    for ifname in (lab.WIRE_SCAN_IF, lab.WIRE_ROUTER_IF):
        link = d["links"][ifname]
        assert link["netns"] == lab.WIRE_NS and link["up"] and link["promisc"] and link["addrs"] == []
    # The scanner's side is unchanged: same address, same next hop and MAC, behind the wire.
    assert d["links"][lab.SCAN_IF]["addrs"] == [f"{lab.SCAN_IP}/24"]
    assert d["links"][lab.ROUTER_IF]["netns"] == lab.ROUTER_NS
    assert d["links"][lab.ROUTER_IF]["mac"] == lab.GATEWAY_MAC
    assert sysctl(lab.WIRE_NS, "net.ipv6.conf.all.disable_ipv6") == "1"
    assert sysctl(lab.WIRE_NS, "net.ipv4.ip_forward") == "0"
    for ns, ifname in topology.interfaces(wire=True):
        assert offload_flags(ns, ifname)["tx-checksumming"] is False, ifname
    relay = d["relay"]
    assert relay["available"] == lab.relay_available()
    if relay["available"]:
        assert relay["alive"] and relay["in_wire_ns"] and (relay["a2b"], relay["b2a"]) == ("", "")
        assert wire_lab.relay_pid == relay["pid"]
    assert "relay" in lab.format_status(d)
    assert d["links"][lab.WIRE_SCAN_IF]["xdp"] == lab.PASS_PROG_NAME  # the scanner's next hop here
    assert lab.up(wire=True).servers == wire_lab.servers  # idempotent for the wire kind too


@needs_relay
def test_wire_forwards(wire_lab: lab.LabInfo, tmp_path: Path) -> None:
    results, icmp = probe_with_icmp(WIRE_CHECKS, tmp_path)
    assert_ground_truth(results, icmp, "through the plain relay")
    assert results[(OPEN_ADDR, 80, "http")]["data"].startswith("HTTP/1.1 200")


@needs_relay
def test_impair_loss_blocks_and_recovers(wire_lab: lab.LabInfo) -> None:
    checks: list[Check] = [(OPEN_ADDR, 80, "connect"), (OPEN_ADDR, 53, "dns"), (OPEN_ADDR, 0, "echo")]
    with lab.impaired(a2b="loss 100%") as stats:
        relay = lab.status()["relay"]
        assert relay["alive"] and relay["a2b"] == "loss 100%" and relay["b2a"] == ""
        r = run_probes(checks)
        assert stats == {}  # filled only when the relay has exited
    assert {c: v["outcome"] for c, v in r.items()} == dict.fromkeys(checks, "timeout")
    assert stats, "the relay's exit stats were not collected"
    if isinstance(stats.get("a2b"), dict) and "dropped" in stats["a2b"]:
        assert stats["a2b"]["dropped"] >= len(checks), stats

    with lab.impaired(b2a="loss 100%"):  # the replies this time
        r = run_probes(checks[:1])
    assert r[checks[0]]["outcome"] == "timeout"

    relay = lab.status()["relay"]
    assert relay["alive"] and (relay["a2b"], relay["b2a"]) == ("", "")
    r = run_probes(checks)
    assert {c: v["outcome"] for c, v in r.items()} == {
        checks[0]: "synack", checks[1]: "udp", checks[2]: "echoreply",
    }  # fmt: skip


@needs_relay
def test_impair_rejects_bad_specs(wire_lab: lab.LabInfo) -> None:
    with pytest.raises(RuntimeError, match="relay"), lab.impaired("loss banana"):
        pass
    with pytest.raises(ValueError), lab.impaired("loss 1%", seconds=10**9):
        pass
    assert lab.status()["complete"]  # the plain relay is back


def test_up_switches_between_plain_and_wire(wire_lab: lab.LabInfo) -> None:
    relay_pid = lab.status()["relay"]["pid"]
    t0 = time.monotonic()
    plain = lab.up()
    print(f"lab.up() over a wire lab took {time.monotonic() - t0:.2f}s")
    assert not plain.wire and lab.WIRE_NS not in ns_names()
    assert relay_pid is None or not alive(relay_pid)
    d = lab.status()
    assert d["complete"] and not d["wire"]
    assert run_probes([(OPEN_ADDR, 80, "connect")])[(OPEN_ADDR, 80, "connect")]["outcome"] == "synack"
    assert lab.up(wire=True).wire  # and back, for the teardown test below


def test_down_removes_everything(lab_info: lab.LabInfo) -> None:
    d = lab.status()
    pids = [s["pid"] for s in d["servers"].values()]
    for ns in d["namespaces"]:
        pids += procs.pids_in_netns(ns)
    assert pids

    t0 = time.monotonic()
    removed = lab.down()
    print(f"lab.down() of a {'wire' if d['wire'] else 'plain'} lab took {time.monotonic() - t0:.2f}s")

    for ns in d["namespaces"]:
        assert f"netns {ns}" in removed
    assert_nothing_left()
    left = [pid for pid in pids if alive(pid)]
    assert not left, f"lab processes still running: {left}"
    assert not lab.status()["complete"]
    assert lab.down() == []
