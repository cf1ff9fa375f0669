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
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Capture
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

# Runs inside the scan namespace: for each (addr, port, protocol), a connection and the protocol's
# first exchange, as a client of that service would have it; the answer's bytes (hex) or the outcome.
# Probes run in parallel, so the deliberate timeouts (silent targets) cost about one in total.
CLIENT_SCRIPT = r"""
import json, socket, ssl, struct, sys
from concurrent.futures import ThreadPoolExecutor

def dns_query(name, qtype):
    q = struct.pack(">HHHHHH", 0x7A62, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack(">HH", qtype, 1)

# CONNECT: protocol "MQTT" level 4, clean session, keep-alive 60, client id "zblab".
MQTT_CONNECT = bytes([0x10, 0x11, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 5]) + b"zblab"
REQUESTS = {
    "http": b"GET / HTTP/1.0\r\nHost: lab\r\n\r\n",
    "redis": b"PING\r\n",
    "memcached": b"version\r\n",
    "mqtt": MQTT_CONNECT,
    "postgres": struct.pack(">II", 8, 80877103),  # SSLRequest: answered "N" (no TLS here)
}

def recv_all(s, limit):
    data = b""
    while len(data) < limit:
        try:
            chunk = s.recv(65536)
        except (TimeoutError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
    return data

def client(arg):
    addr, port, proto, timeout = arg
    try:
        s = socket.create_connection((addr, port), timeout=timeout)
    except ConnectionRefusedError:
        return {"outcome": "rst"}
    except (TimeoutError, socket.timeout):
        return {"outcome": "timeout"}
    except OSError as e:
        return {"outcome": "error", "error": repr(e)}
    out = {"outcome": "synack"}
    # Server-first greetings can take a while (exim). A read takes the first segment (HTTP: to the close).
    s.settimeout(5)
    try:
        with s:
            if proto == "tls":
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                with ctx.wrap_socket(s, server_hostname="zbanner-lab") as t:
                    out["data"] = (t.getpeercert(binary_form=True) or b"").hex()
                    out["tls"] = t.version()
            elif proto == "dns":
                q = dns_query("zbanner.lab", 28)  # AAAA
                s.sendall(struct.pack(">H", len(q)) + q)
                out["data"] = s.recv(512).hex()
            elif proto == "http":
                s.sendall(REQUESTS[proto])
                out["data"] = recv_all(s, 1 << 20).hex()
            else:
                if proto in REQUESTS:
                    s.sendall(REQUESTS[proto])
                out["data"] = s.recv(4096).hex()
    except OSError as e:
        out["error"] = repr(e)
    return out

checks = json.loads(sys.argv[1])
with ThreadPoolExecutor(len(checks)) as pool:
    print(json.dumps(list(pool.map(client, checks))))
"""

Client = tuple[str, int, str]  # (address, port, protocol by LZR's name)


def run_clients(checks: list[Client], timeout: float = 2.0) -> dict[Client, dict[str, Any]]:
    argv = lab.ns_exec_argv(
        lab.SCAN_NS, [sys.executable, "-c", CLIENT_SCRIPT, json.dumps([[*c, timeout] for c in checks])]
    )
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)
    return dict(zip(checks, json.loads(proc.stdout), strict=True))


def normalised(proto: str, data: bytes) -> bytes:
    """What of a service's answer must be the same whichever family asked: the parts that change
    with every connection (a date, a salt, a connection id) are cut away, everything else kept."""
    if proto == "http":
        head, _, body = data.partition(b"\r\n\r\n")
        return b"\r\n".join(line for line in head.split(b"\r\n") if not line.startswith(b"Date:")) + body
    if proto == "smtp":
        return data.split(b" +0000")[0].rsplit(b",", 1)[
            0
        ]  # "220 zbanner.lab ESMTP Exim 4.96 Sat, 05 Dec ..."
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
    got = run_clients(checks)
    for a4, a6, port, proto in pairs:
        r4, r6 = got[(a4, port, proto)], got[(a6, port, proto)]
        assert r4["outcome"] == r6["outcome"] == "synack", (port, proto, r4, r6)
        assert "error" not in r6, (port, proto, r6)
        d4, d6 = bytes.fromhex(r4["data"]), bytes.fromhex(r6["data"])
        assert d6, (a6, port, proto)
        assert normalised(proto, d6) == normalised(proto, d4), (a6, port, proto, d4, d6)
        if proto == "tls":
            assert r6["tls"] in ("TLSv1.2", "TLSv1.3")
    answers = {
        proto: bytes.fromhex(got[(OPEN6, port, proto)]["data"]) for port, proto in lab.TCP_SERVICES.items()
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
    checks: list[Client] = [
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
    got = run_clients(checks, timeout=1.0)
    for check, r in got.items():
        addr, port, _proto = check
        want = {"synack": "synack", "rst": "rst", None: "timeout"}[lab.expected(addr, port, "tcp")]
        assert r["outcome"] == want, (check, r, TARPIT_PORTS)
    assert bytes.fromhex(got[(NOECHO6, 80, "http")]["data"]).startswith(b"HTTP/1.1 200")
    assert bytes.fromhex(got[(TARPIT6, 22, "ssh")]["data"]).startswith(b"SSH-2.0-OpenSSH")
    assert bytes.fromhex(got[(TARPIT6, TARPIT_PORTS[0], "http")]["data"]).startswith(b"HTTP/1.1 200")


# --------------------------------------------------------------------------- UDP, echo, ICMPv6 errors

# Runs inside the scan namespace: UDP exchanges and ICMPv6 echoes, in parallel.
PROBE6_SCRIPT = r"""
import json, os, socket, struct, sys, time
from concurrent.futures import ThreadPoolExecutor

def dns_query(name):
    q = struct.pack(">HHHHHH", 0x7A62, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack(">HH", 1, 1)

def udp(addr, port, kind, timeout):
    payload = {"dns": dns_query("zbanner.lab"), "ntp": bytes([0x23]) + bytes(47)}.get(kind, b"zbanner lab\n")
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((addr, port))
            s.send(payload)
            data, src = s.recvfrom(2048)
        except ConnectionRefusedError:
            return {"outcome": "refused"}
        except (TimeoutError, socket.timeout):
            return {"outcome": "timeout"}
        except OSError as e:
            return {"outcome": "error", "error": repr(e)}
    out = {"outcome": "udp", "src": src[0]}
    if kind == "dns":
        out["rcode"] = data[3] & 0x0F
        out["answer"] = socket.inet_ntoa(data[-4:]) if data[6:8] != b"\0\0" else None
    elif kind == "ntp":
        out["mode"], out["stratum"] = data[0] & 7, data[1]
    return out

def echo(addr, ident, timeout):
    # ICMPv6 raw sockets: the kernel fills in the checksum and strips the IPv6 header on receipt.
    with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as s:
        s.sendto(struct.pack("!BBHHH", 128, 0, 0, ident, 1) + b"zbanner-lab", (addr, 0))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                data, src = s.recvfrom(2048)
            except (TimeoutError, socket.timeout):
                break
            typ, _code, _ck, got_id = struct.unpack("!BBHH", data[:6])
            if src[0] == addr and typ == 129 and got_id == ident:
                return {"outcome": "echoreply"}
    return {"outcome": "timeout"}

def probe(arg):
    i, (addr, port, kind, timeout) = arg
    if kind == "echo":
        return echo(addr, (os.getpid() + i) & 0xFFFF, timeout)
    return udp(addr, port, kind, timeout)

checks = json.loads(sys.argv[1])
with ThreadPoolExecutor(len(checks)) as pool:
    print(json.dumps(list(pool.map(probe, enumerate(checks)))))
"""

Check = tuple[str, int, str]  # (address, port, kind): kind "echo" is ICMPv6, everything else UDP
FlowKey = tuple[str, str, int | None]  # (address, proto, port or None): what an error quotes
IcmpError = tuple[str, int, int]  # (source, type, code)
ICMPV6_ERRORS = {1: "icmp-unreach", 3: "icmp-timxceed"}  # destination unreachable, time exceeded


def proto_of(check: Check) -> str:
    return "icmp" if check[2] == "echo" else "udp"


def flow_key(check: Check) -> FlowKey:
    proto = proto_of(check)
    return (check[0], proto, None if proto == "icmp" else check[1])


class Icmp6Capture(Capture):
    """tcpdump of ICMPv6 errors on the scan interface (types 1-4: no ND, no echo)."""

    def __init__(self, path: Path) -> None:
        # ip6[40]: the ICMPv6 type, where no extension header comes first (none in the lab).
        super().__init__(path, "icmp6 and ip6[40] < 128", ns=lab.SCAN_NS, iface=lab.SCAN_IF)

    def errors(self) -> dict[FlowKey, list[IcmpError]]:
        import dpkt

        out: dict[FlowKey, list[IcmpError]] = {}
        with open(self.path, "rb") as fh:
            for _ts, buf in dpkt.pcap.Reader(fh):
                ip6 = dpkt.ethernet.Ethernet(buf).data
                if not isinstance(ip6, dpkt.ip6.IP6) or ip6.nxt != socket.IPPROTO_ICMPV6:
                    continue
                raw = bytes(ip6.data)
                typ, code = raw[0], raw[1]
                if socket.inet_ntop(socket.AF_INET6, ip6.dst) != lab.SCAN_IP6:
                    continue
                inner = raw[8:]  # after type, code, checksum and the unused (or MTU) word
                nxt, dst = inner[6], socket.inet_ntop(socket.AF_INET6, inner[24:40])
                if nxt == socket.IPPROTO_ICMPV6:
                    key: FlowKey = (dst, "icmp", None)
                else:
                    dport = struct.unpack("!H", inner[40 + 2 : 40 + 4])[0]
                    key = (dst, {6: "tcp", 17: "udp"}.get(nxt, str(nxt)), dport)
                src = socket.inet_ntop(socket.AF_INET6, ip6.src)
                out.setdefault(key, []).append((src, typ, code))
        return out

    def __enter__(self) -> Icmp6Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def probe6(
    checks: list[Check], tmp: Path
) -> tuple[dict[Check, dict[str, Any]], dict[FlowKey, list[IcmpError]]]:
    assert len({flow_key(c) for c in checks}) == len(checks), "ICMPv6 errors could not be told apart"
    argv = lab.ns_exec_argv(
        lab.SCAN_NS, [sys.executable, "-c", PROBE6_SCRIPT, json.dumps([[*c, 1.0] for c in checks])]
    )
    with Icmp6Capture(tmp / "icmp6.pcap") as cap:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
        time.sleep(0.1)  # every error arrived long before the 1 s timeouts ended; let tcpdump write it
    return dict(zip(checks, json.loads(proc.stdout), strict=True)), cap.errors()


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
    results, icmp = probe6(CHECKS6, tmp_path)
    for check, r in results.items():
        addr, port, kind = check
        proto = proto_of(check)
        errors = icmp.get(flow_key(check), [])
        ctx = (check, r, errors)
        seen = r["outcome"] if r["outcome"] in ("udp", "echoreply") else None
        if seen is None and errors:
            seen = ICMPV6_ERRORS[errors[0][1]]
        assert seen == lab.expected(addr, None if proto == "icmp" else port, proto), ctx
        want_icmp = lab.expected_icmp(addr, None if proto == "icmp" else port, proto)
        if want_icmp is None:
            assert not errors, ctx
        else:
            assert {(t, c) for _s, t, c in errors} == {want_icmp}, ctx
            assert {s for s, _t, _c in errors} == {lab.expected_icmp_responder(addr)}, ctx
        if kind == "dns" and r["outcome"] == "udp":
            # Answered from the very address asked (AnyIP + IPV6_PKTINFO), with the lab's A record.
            assert r == {"outcome": "udp", "src": addr, "rcode": 0, "answer": lab.DNS_ANSWER}, ctx
        if kind == "ntp" and r["outcome"] == "udp":
            assert r == {"outcome": "udp", "src": addr, "mode": 4, "stratum": lab.NTP_STRATUM}, ctx
    stray = set(icmp) - {flow_key(c) for c in results}
    assert not stray, f"ICMPv6 errors nobody asked for: {[(k, icmp[k]) for k in stray]}"
    # Every kind of error the plan promises showed up, from the right source.
    assert {e for errs in icmp.values() for e in errs} >= {
        (GW6, 1, 3), (GW6, 1, 1), (GW6, 3, 0), (GW6, 1, 4), (OPEN6, 1, 4), (TARPIT6, 1, 4),
    }  # fmt: skip
    # The client's sockets saw them too: port unreachable refuses, silence times out.
    assert results[(OPEN6, 9999, "udp")]["outcome"] == "refused"
    assert results[(SILENT6, 53, "dns")]["outcome"] == "timeout"
    assert results[(NOECHO6, 0, "echo")]["outcome"] == "timeout"
    assert results[(OPEN6, 0, "echo")]["outcome"] == "echoreply"


# Runs inside the scan namespace: a burst of UDP datagrams, then a count of the ICMPv6 errors they drew.
BURST6_SCRIPT = r"""
import collections, json, socket, sys
nets, n = json.loads(sys.argv[1]), int(sys.argv[2])  # {label: [addresses]}, datagrams per range
label = {socket.inet_pton(socket.AF_INET6, a): name for name, addrs in nets.items() for a in addrs}
raw = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as u:
    for i in range(n):
        for addrs in nets.values():
            u.sendto(b"zbanner lab", (addrs[i % len(addrs)], 20000 + i))
got = collections.Counter()
raw.settimeout(0.3)
while True:
    try:
        data, src = raw.recvfrom(2048)
    except (TimeoutError, socket.timeout):
        break
    if data[0] in (1, 3):
        dst = data[8 + 24 : 8 + 40]  # the quoted packet's destination
        who = "self" if socket.inet_pton(socket.AF_INET6, src[0]) == dst else src[0]
        got[json.dumps([label.get(dst, "?"), who, data[0], data[1]])] += 1
print(json.dumps(got))
"""


def test_icmpv6_errors_are_not_rate_limited(lab_up: lab.LabInfo) -> None:
    """A burst far above the kernel's default ICMPv6 rate limit draws exactly one error per packet."""
    n = 1000
    # The twins of test_lab's ranges: .1-.254 of each /24, here the last byte of each /120.
    nets = {
        v4: [twin(f"{v4}.{i}") for i in range(1, 255)]
        for v4 in ("198.19.0", "198.19.1", "198.19.3", "198.18.0", "198.18.1", "198.18.4")
    }
    argv = lab.ns_exec_argv(lab.SCAN_NS, [sys.executable, "-c", BURST6_SCRIPT, json.dumps(nets), str(n)])
    got = json.loads(subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout)
    want = {}
    for v4, addrs in nets.items():
        # Every address of a range answers alike, so one stands for all (the tarpit included).
        responder = lab.expected_icmp_responder(addrs[0])
        icmp = lab.expected_icmp(addrs[0], 20000, "udp")
        assert icmp is not None and responder is not None
        want[json.dumps([v4, "self" if responder == addrs[0] else responder, *icmp])] = n
    assert got == want


# --------------------------------------------------------------------------- the network itself


def sysctl(ns: str, key: str) -> str:
    out = subprocess.run(
        lab.ns_exec_argv(ns, ["sysctl", "-n", key]), capture_output=True, text=True, timeout=10, check=True
    )
    return out.stdout.strip()


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
        got = run_clients([(OPEN6, 22, "ssh"), (RST6, 80, "connect")])
        assert bytes.fromhex(got[(OPEN6, 22, "ssh")]["data"]).startswith(b"SSH-2.0-OpenSSH"), got
        assert got[(RST6, 80, "connect")]["outcome"] == "rst"
        checks: list[Check] = [
            (OPEN6, 0, "echo"),
            (UNREACH6, 53, "dns"),
            (TTL6, 0, "echo"),
            (OPEN6, 9999, "udp"),
        ]
        results, icmp = probe6(checks, tmp_path)
        assert results[(OPEN6, 0, "echo")]["outcome"] == "echoreply"
        assert icmp[(UNREACH6, "udp", 53)] == [(GW6, 1, 3)]
        assert icmp[(TTL6, "icmp", None)] == [(GW6, 3, 0)]
        assert icmp[(OPEN6, "udp", 9999)] == [(OPEN6, 1, 4)]
        with lab.impaired(a2b="loss 100%"):
            lost = run_clients([(OPEN6, 80, "connect")], timeout=1.0)
        assert lost[(OPEN6, 80, "connect")]["outcome"] == "timeout"
    finally:
        lab.up()  # the plain lab again, for whatever runs next
    assert not lab.status()["wire"]
