"""The lab over IPv6 (issue 16): the twins of the IPv4 plan, checked with stateful clients.

Every check runs from inside the scan namespace against the real lab: each
TCP service's answer over IPv6 against the same client's over IPv4, the RST
and silent ranges, the router's ICMPv6 errors (captured on the scan interface
and matched to their probe through the quoted header, like test_lab's ICMP
ones), neighbour discovery without static entries, and the quiet that the
lab's IPv6 sysctls promise on the scan link. The same ground truth
(lab.expected and friends) is the oracle for both families.
"""

from __future__ import annotations

import ipaddress
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Capture
from tests.integration.labprobes import (
    Check,
    assert_ground_truth,
    assert_icmp_not_rate_limited,
    probe_with_icmp,
    run_probes,
    sysctl,
)
from zbanner_xdp import lab

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.skipif(
        not (os.geteuid() == 0 and shutil.which("ip") and shutil.which("tcpdump")),
        reason="the lab needs root, iproute2 and tcpdump",
    ),
]

twin = lab.v6_twin
OPEN4, OPEN6 = "198.18.0.5", twin("198.18.0.5")
BIG4 = "198.18.123.45"
RST6 = twin("198.18.1.5")
SILENT6 = twin("198.18.2.5")
NOECHO6 = twin("198.18.3.7")
BIG6 = twin(BIG4)
UNREACH6 = twin("198.19.0.5")
PROHIBIT6 = twin("198.19.1.5")
DROP6 = twin("198.19.2.5")
TTL6 = twin("198.19.3.5")
BLACKHOLE6 = twin("198.19.200.1")
GW6 = lab.TARGET_GW6
TARPIT6 = lab.TARPIT_IP6
# Fresh every run (shown in assertion messages): the tarpit must answer on any port.
TARPIT_PORTS = random.sample(sorted(set(range(1024, 65536)) - lab.OPEN_TCP_PORTS), 3)

# --------------------------------------------------------------------------- stateful clients


def ask(checks: list[Check], timeout: float = 2.0) -> dict[Check, dict[str, Any]]:
    """Stateful clients (labprobes' "ask:PROTOCOL" and "connect" kinds) from the scan namespace, keyed by
    (address, port, protocol); each answer's bytes (hex) in "raw"."""
    kinds = [(a, p, "connect" if proto == "connect" else f"ask:{proto}") for a, p, proto in checks]
    got = run_probes(kinds, timeout)
    return {c: got[k] for c, k in zip(checks, kinds, strict=True)}


def normalised(proto: str, data: bytes) -> bytes:
    """What of a service's answer must be the same whichever family asked: the parts that change
    with every connection (a date, a salt, a connection id) are cut away, everything else kept."""
    if proto == "http":
        head, _, body = data.partition(b"\r\n\r\n")
        return b"\r\n".join(line for line in head.split(b"\r\n") if not line.startswith(b"Date:")) + body
    if proto == "smtp":
        # "220 zbanner.lab ESMTP Exim 4.96 Sat, 05 Dec 2026 08:39:56 +0000": up to the date.
        return data.split(b" +0000")[0].rsplit(b",", 1)[0]
    if proto == "mysql":
        return data[4:].split(b"\0", 1)[0]  # the handshake's protocol version and server version
    if proto == "ssh":
        return data.split(b"\r\n", 1)[0]  # the identification line (a key exchange may follow it)
    return data


def test_every_tcp_service_answers_ipv6_as_ipv4(lab_up: lab.LabInfo) -> None:
    """Each open TCP port, own and unexpected (DNAT), on an OPEN and a BIG address: the same answer,
    normalised, over IPv6 as over IPv4; and a non-empty one."""
    pairs = [
        (a4, twin(a4), port, proto)
        for a4 in (OPEN4, BIG4)
        for port, proto in sorted(lab.TCP_SERVICES.items())
    ]
    checks = [c for a4, a6, port, proto in pairs for c in ((a4, port, proto), (a6, port, proto))]
    got = ask(checks)
    for a4, a6, port, proto in pairs:
        r4, r6 = got[(a4, port, proto)], got[(a6, port, proto)]
        assert r4["outcome"] == r6["outcome"] == "synack", (port, proto, r4, r6)
        assert "error" not in r6, (port, proto, r6)
        d4, d6 = bytes.fromhex(r4["raw"]), bytes.fromhex(r6["raw"])
        assert d6, (a6, port, proto)
        assert normalised(proto, d6) == normalised(proto, d4), (a6, port, proto, d4, d6)
        if proto == "tls":
            assert r6["tls"] in ("TLSv1.2", "TLSv1.3")
    answers = {
        proto: bytes.fromhex(got[(OPEN6, port, proto)]["raw"]) for port, proto in lab.TCP_SERVICES.items()
    }
    # What the servers say, not only that both families agree.
    assert answers["ssh"].startswith(b"SSH-2.0-OpenSSH")
    assert answers["ftp"].startswith(b"220 (vsFTPd ")
    assert answers["smtp"].startswith(b"220 zbanner.lab ESMTP Exim ")
    assert answers["pop3"].startswith(b"+OK Dovecot")
    assert answers["imap"].startswith(b"* OK [CAPABILITY IMAP4rev1")
    assert b"-MariaDB-" in answers["mysql"]
    assert (
        answers["http"].startswith(b"HTTP/1.1 200") and b"<title>zbanner-xdp lab</title>" in answers["http"]
    )
    assert answers["redis"] == b"+PONG\r\n"
    assert answers["memcached"].startswith(b"VERSION ")
    assert answers["mqtt"] == bytes([0x20, 0x02, 0x00, 0x00])  # CONNACK, accepted
    assert answers["postgres"] == b"N"
    # DNS over TCP (DNATed to dnsmasq's own address): our id, and the lab's AAAA record last.
    assert answers["dns"][2:4] == b"\x7a\x62"
    assert answers["dns"][-16:] == ipaddress.IPv6Address(lab.DNS_ANSWER6).packed


def test_tcp_outcomes_over_ipv6(lab_up: lab.LabInfo) -> None:
    """The carve-outs over IPv6: RST range, silent range, tarpit, closed ports, the router."""
    checks: list[Check] = [
        (RST6, 80, "connect"), (RST6, 22, "connect"), (RST6, 9022, "connect"),
        (SILENT6, 80, "connect"), (SILENT6, 22, "connect"),
        (OPEN6, 81, "connect"), (OPEN6, 123, "connect"),
        (NOECHO6, 80, "http"),
        (TARPIT6, 22, "ssh"), (TARPIT6, TARPIT_PORTS[0], "http"),
        *[(TARPIT6, p, "connect") for p in TARPIT_PORTS[1:]],
        (twin("198.18.4.6"), TARPIT_PORTS[0], "connect"),
        (DROP6, 80, "connect"), (BLACKHOLE6, 80, "connect"),
        (GW6, 22, "connect"), (GW6, 80, "connect"),
    ]  # fmt: skip
    got = ask(checks, timeout=1.0)
    for check, r in got.items():
        addr, port, _proto = check
        want = {"synack": "synack", "rst": "rst", None: "timeout"}[lab.expected(addr, port, "tcp")]
        assert r["outcome"] == want, (check, r, TARPIT_PORTS)
    assert bytes.fromhex(got[(NOECHO6, 80, "http")]["raw"]).startswith(b"HTTP/1.1 200")
    assert bytes.fromhex(got[(TARPIT6, 22, "ssh")]["raw"]).startswith(b"SSH-2.0-OpenSSH")
    assert bytes.fromhex(got[(TARPIT6, TARPIT_PORTS[0], "http")]["raw"]).startswith(b"HTTP/1.1 200")


# --------------------------------------------------------------------------- UDP, echo, ICMPv6 errors

V4_ADDRS = [
    "198.18.0.5", "198.18.1.5", "198.18.2.5", "198.18.3.7", "198.18.4.5", "198.18.200.200",
    "198.19.0.5", "198.19.1.5", "198.19.2.5", "198.19.3.5", "198.19.200.1",
]  # fmt: skip
CHECKS6: list[Check] = [
    *[(twin(a), 53, "dns") for a in V4_ADDRS],
    *[(twin(a), 9999, "udp") for a in V4_ADDRS],
    *[(twin(a), 0, "echo") for a in V4_ADDRS],
    (OPEN6, 123, "ntp"),
    (BIG6, 123, "ntp"),
    (TARPIT6, 123, "ntp"),
    (SILENT6, 123, "ntp"),
    (GW6, 53, "dns"),
    (GW6, 9999, "udp"),
    (GW6, 0, "echo"),
]


def test_udp_echo_and_icmpv6_errors_match_ground_truth(lab_up: lab.LabInfo, tmp_path: Path) -> None:
    """Every UDP and echo probe gets what lab.expected() says; every ICMPv6 error has the type, code
    and source the truth gives (the router's for its ranges, the probed address's for port
    unreachable); no error arrives that the plan does not promise."""
    results, icmp = probe_with_icmp(CHECKS6, tmp_path)
    assert_ground_truth(results, icmp, "over IPv6")
    for (addr, _port, kind), r in results.items():
        if kind == "dns" and r["outcome"] == "udp":
            # Answered from the very address asked (AnyIP + IPV6_PKTINFO), with the lab's A record.
            assert r == {"outcome": "udp", "src": addr, "rcode": 0, "answer": lab.DNS_ANSWER}, (addr, r)
        if kind == "ntp" and r["outcome"] == "udp":
            assert r == {"outcome": "udp", "src": addr, "mode": 4, "stratum": lab.NTP_STRATUM}, (addr, r)
    # Every kind of error the plan promises showed up, from the right source.
    assert {e for errs in icmp.values() for e in errs} >= {
        (GW6, 1, 3), (GW6, 1, 1), (GW6, 3, 0), (GW6, 1, 4), (OPEN6, 1, 4), (TARPIT6, 1, 4),
    }  # fmt: skip
    # The client's sockets saw them too: port unreachable refuses, silence times out.
    assert results[(OPEN6, 9999, "udp")]["outcome"] == "refused"
    assert results[(SILENT6, 53, "dns")]["outcome"] == "timeout"
    assert results[(NOECHO6, 0, "echo")]["outcome"] == "timeout"
    assert results[(OPEN6, 0, "echo")]["outcome"] == "echoreply"
    assert results[(twin("198.18.200.200"), 53, "dns")]["outcome"] == "udp"


def test_icmpv6_errors_are_not_rate_limited(lab_up: lab.LabInfo) -> None:
    """A burst far above the kernel's default ICMPv6 rate limit draws exactly one error per packet."""
    # The twins of test_lab's ranges: .1-.254 of each /24, here the last byte of each /120.
    nets = ("198.19.0", "198.19.1", "198.19.3", "198.18.0", "198.18.1", "198.18.4")
    assert_icmp_not_rate_limited({v4: [twin(f"{v4}.{i}") for i in range(1, 255)] for v4 in nets})


# --------------------------------------------------------------------------- the network itself


def test_addresses_routes_and_sysctls(lab_up: lab.LabInfo) -> None:
    d = lab.status()
    assert d["complete"]
    for ifname, addr in lab.ADDRESSES6.items():
        assert d["links"][ifname]["addrs6"] == [f"{addr}/{lab.LINK_PREFIXLEN6}"], ifname
    assert all(v for k, v in d["routes"].items() if k.endswith("6")), d["routes"]
    assert {k for k in d["routes"] if k.endswith("6")} == {k for k in lab.topology.ROUTES if k.endswith("6")}
    text = lab.format_status(d)
    for net in (lab.OPEN_NET6, lab.RST_NET6, lab.SILENT_NET6, lab.UNREACH_NET6, lab.TTL_NET6, lab.TARGET_GW6):
        assert net in text

    def routes(ns: str) -> str:
        return subprocess.run(
            ["ip", "-n", ns, "-6", "route", "show"], capture_output=True, text=True, timeout=10, check=True
        ).stdout

    scan = routes(lab.SCAN_NS)
    assert "default" not in scan
    assert f"{lab.SCAN_ROUTE6} via {lab.TARGET_GW6} dev {lab.SCAN_IF}" in scan
    rtr = routes(lab.ROUTER_NS)
    for line in (
        f"{lab.BIG_NET6} via {lab.TARGET_IP6} dev {lab.ROUTER_TARGET_IF}",
        f"unreachable {lab.UNREACH_NET6}",
        f"prohibit {lab.PROHIBIT_NET6}",
        f"blackhole {lab.DROP_NET6}",
        f"{lab.TTL_NET6} via {lab.TARGET_IP6} dev {lab.ROUTER_TARGET_IF}",
        f"blackhole {lab.BLACKHOLE_NET6}",
    ):
        assert line in rtr, (line, rtr)
    assert f"default via {lab.ROUTER_TARGET_IP6} dev {lab.TARGET_IF}" in routes(lab.TARGET_NS)
    local = subprocess.run(
        ["ip", "-n", lab.TARGET_NS, "-6", "route", "show", "table", "local"],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout  # fmt: skip
    assert f"local {lab.BIG_NET6} dev lo" in local
    assert sysctl(lab.ROUTER_NS, "net.ipv6.conf.all.forwarding") == "1"
    assert sysctl(lab.TARGET_NS, "net.ipv6.conf.all.forwarding") == "0"
    for ns in (lab.SCAN_NS, lab.ROUTER_NS, lab.TARGET_NS):
        assert sysctl(ns, "net.ipv6.conf.all.disable_ipv6") == "0"
    for ns, ifname in (
        (lab.SCAN_NS, lab.SCAN_IF), (lab.ROUTER_NS, lab.ROUTER_IF),
        (lab.ROUTER_NS, lab.ROUTER_TARGET_IF), (lab.TARGET_NS, lab.TARGET_IF),
    ):  # fmt: skip
        for key, value in (("accept_dad", "0"), ("router_solicitations", "0"), ("accept_ra", "0")):
            assert sysctl(ns, f"net.ipv6.conf.{ifname}.{key}") == value, (ifname, key)
    for ns in (lab.ROUTER_NS, lab.TARGET_NS):
        assert sysctl(ns, "net.ipv6.icmp.ratelimit") == "0"


# Runs inside the scan namespace: one ICMPv6 echo to the gateway, True if it was answered.
ECHO_GW_SCRIPT = r"""
import socket, struct, sys
with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as s:
    s.settimeout(3)
    s.sendto(struct.pack("!BBHHH", 128, 0, 0, 0x7A62, 1) + b"nd", (sys.argv[1], 0))
    while True:
        data, src = s.recvfrom(2048)
        if data[0] == 129 and src[0] == sys.argv[1]:
            print("answered")
            break
"""


def neighbours(ns: str) -> str:
    return subprocess.run(
        ["ip", "-n", ns, "-6", "neigh", "show", "dev", lab.SCAN_IF if ns == lab.SCAN_NS else lab.ROUTER_IF],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout  # fmt: skip


def test_neighbour_discovery_resolves_the_gateway(lab_up: lab.LabInfo, tmp_path: Path) -> None:
    """No static neighbour entries: the scanner's namespace resolves its IPv6 gateway by neighbour
    solicitation (captured), as a host on a wire would."""
    subprocess.run(
        ["ip", "-n", lab.SCAN_NS, "-6", "neigh", "flush", "dev", lab.SCAN_IF], check=True, timeout=10
    )
    assert lab.TARGET_GW6 not in neighbours(lab.SCAN_NS)
    pcap = tmp_path / "nd.pcap"
    with Capture(pcap, "icmp6 and (ip6[40] == 135 or ip6[40] == 136)"):
        out = subprocess.run(
            lab.ns_exec_argv(lab.SCAN_NS, [sys.executable, "-c", ECHO_GW_SCRIPT, lab.TARGET_GW6]),
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
        time.sleep(0.1)
    assert out.strip() == "answered"
    entry = next(
        line for line in neighbours(lab.SCAN_NS).splitlines() if line.startswith(f"{lab.TARGET_GW6} ")
    )
    assert f"lladdr {lab.GATEWAY_MAC}" in entry and "PERMANENT" not in entry, entry
    assert "PERMANENT" not in neighbours(lab.SCAN_NS) + neighbours(lab.ROUTER_NS)

    import dpkt

    with open(pcap, "rb") as fh:
        nd = [dpkt.ethernet.Ethernet(buf).data for _ts, buf in dpkt.pcap.Reader(fh)]
    solicits = [ip6 for ip6 in nd if bytes(ip6.data)[0] == 135]
    adverts = [ip6 for ip6 in nd if bytes(ip6.data)[0] == 136]
    gw = ipaddress.IPv6Address(lab.TARGET_GW6).packed
    # The solicitation asks for the gateway (target address after the reserved word) and is answered.
    assert any(bytes(ip6.data)[8:24] == gw for ip6 in solicits), solicits
    assert any(bytes(ip6.data)[8:24] == gw for ip6 in adverts), adverts


def test_scan_link_is_quiet(lab_up: lab.LabInfo, tmp_path: Path) -> None:
    """IPv6 on, but no router solicitations, DAD probes or MLD reports on the scan link while the lab
    idles: a capture's frame counts (CAPTURE_IF) see only what a test sends, and what follows it
    (neighbour discovery, ARP)."""
    pcap = tmp_path / "idle.pcap"
    with Capture(pcap, "not arp and not (icmp6 and (ip6[40] == 135 or ip6[40] == 136))"):
        time.sleep(3)
    import dpkt

    with open(pcap, "rb") as fh:
        frames = [buf for _ts, buf in dpkt.pcap.Reader(fh)]
    assert frames == [], [dpkt.ethernet.Ethernet(f) for f in frames]


# --------------------------------------------------------------------------- through the fault wire
# Last in the module: it rebuilds the lab with the wire, and back.


@pytest.mark.skipif(not lab.relay_available(), reason="zbanner_xdp.lab.impair is not there")
def test_ipv6_crosses_the_fault_wire(lab_up: lab.LabInfo, tmp_path: Path) -> None:
    """The wire's relay carries IPv6 frames (ND included) like any other: a banner, an echo and the
    router's ICMPv6 errors arrive through it, and a 100 % loss on the probes' direction stops them."""
    try:
        assert lab.up(wire=True).wire
        got = ask([(OPEN6, 22, "ssh"), (RST6, 80, "connect")])
        assert bytes.fromhex(got[(OPEN6, 22, "ssh")]["raw"]).startswith(b"SSH-2.0-OpenSSH"), got
        assert got[(RST6, 80, "connect")]["outcome"] == "rst"
        checks: list[Check] = [
            (OPEN6, 0, "echo"),
            (UNREACH6, 53, "dns"),
            (TTL6, 0, "echo"),
            (OPEN6, 9999, "udp"),
        ]
        results, icmp = probe_with_icmp(checks, tmp_path)
        assert results[(OPEN6, 0, "echo")]["outcome"] == "echoreply"
        assert icmp[(UNREACH6, "udp", 53)] == [(GW6, 1, 3)]
        assert icmp[(TTL6, "icmp", None)] == [(GW6, 3, 0)]
        assert icmp[(OPEN6, "udp", 9999)] == [(OPEN6, 1, 4)]
        with lab.impaired(a2b="loss 100%"):
            lost = ask([(OPEN6, 80, "connect")], timeout=1.0)
        assert lost[(OPEN6, 80, "connect")]["outcome"] == "timeout"
    finally:
        lab.up()  # the plain lab again, for whatever runs next
    assert not lab.status()["wire"]
