"""Stateful probes of the lab from its scan namespace, for IPv4 and IPv6 addresses alike, and their
comparison with the lab's ground truth (used by test_lab.py and test_lab_ipv6.py).

A check is (address, port, kind): kind "echo" is an ICMP (ICMPv6) echo, "dns", "ntp" and "udp" are UDP
exchanges, everything else a TCP connection ("http", "tls", "redis", "banner", "dnstcp" go on to talk;
"ask:PROTOCOL", by LZR's protocol names, does a client's first exchange of that protocol and keeps the
answer's bytes as hex in "raw").
The family is the address's. ICMP errors are captured on the scan interface and matched to their check
through the quoted header, since a socket sees only some of them.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.integration.conftest import Capture
from zbanner_xdp import lab

# Runs inside the scan namespace. Probes run in parallel so the deliberate 1 s
# timeouts (silent and blackholed targets) cost about a second in total.
PROBE_SCRIPT = r"""
import json, os, socket, ssl, struct, sys, time
from concurrent.futures import ThreadPoolExecutor

def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET

def dns_query(name, qtype=1):  # 1: A, 28: AAAA
    q = struct.pack(">HHHHHH", 0x7A62, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack(">HH", qtype, 1)

# A client's first words per protocol (ask:PROTOCOL); server-first protocols need none.
# MQTT: CONNECT, protocol "MQTT" level 4, clean session, keep-alive 60, client id "zblab".
# PostgreSQL: SSLRequest, answered "N" (no TLS here). DNS over TCP: an AAAA query, length-prefixed.
AAAA = dns_query("zbanner.lab", 28)
REQUESTS = {
    "http": b"GET / HTTP/1.0\r\nHost: lab\r\n\r\n",
    "redis": b"PING\r\n",
    "memcached": b"version\r\n",
    "mqtt": bytes([0x10, 0x11, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 5]) + b"zblab",
    "postgres": struct.pack(">II", 8, 80877103),
    "dns": struct.pack(">H", len(AAAA)) + AAAA,
}

# The first exchange of proto: the first segment of the answer (HTTP: all of it; TLS: the certificate,
# DER), as hex.
def ask(s, proto, out):
    if proto == "tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(s, server_hostname="zbanner-lab") as t:
            out["tls"] = t.version()
            return (t.getpeercert(binary_form=True) or b"").hex()
    if proto in REQUESTS:
        s.sendall(REQUESTS[proto])
    if proto != "http":
        return s.recv(4096).hex()
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data.hex()

def tcp(addr, port, kind, timeout):
    try:
        s = socket.create_connection((addr, port), timeout=timeout)
    except ConnectionRefusedError:
        return {"outcome": "rst"}
    except (TimeoutError, socket.timeout):
        return {"outcome": "timeout"}
    except OSError as e:
        return {"outcome": "error", "error": repr(e)}
    out = {"outcome": "synack"}
    s.settimeout(5)  # server-first greetings can take a while (exim)
    try:
        with s:
            if kind.startswith("ask:"):
                out["raw"] = ask(s, kind[4:], out)
            elif kind == "http":
                s.sendall(b"GET / HTTP/1.0\r\nHost: lab\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                out["data"] = data.decode("latin-1")
            elif kind == "redis":
                s.sendall(b"PING\r\n")
                out["data"] = s.recv(64).decode("latin-1")
            elif kind == "banner":
                out["data"] = s.recv(256).decode("latin-1")
            elif kind == "dnstcp":
                q = dns_query("zbanner.lab")
                s.sendall(struct.pack(">H", len(q)) + q)
                out["data"] = s.recv(512).hex()
            elif kind == "tls":
                out["cert_len"] = len(ask(s, "tls", out)) // 2
    except OSError as e:
        out["error"] = repr(e)
    return out

def udp(addr, port, kind, timeout):
    payload = {"dns": dns_query("zbanner.lab"), "ntp": bytes([0x23]) + bytes(47)}.get(kind, b"zbanner lab\n")
    with socket.socket(family(addr), socket.SOCK_DGRAM) as s:
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

def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF

def echo(addr, ident, timeout):
    v6 = family(addr) == socket.AF_INET6
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    request, reply = (128, 129) if v6 else (8, 0)
    with socket.socket(family(addr), socket.SOCK_RAW, proto) as s:
        body = struct.pack("!HH", ident, 1) + b"zbanner-lab"
        # ICMPv6: the kernel fills in the checksum (it covers a pseudo-header) and hands back no IPv6 header.
        ck = 0 if v6 else checksum(struct.pack("!BBH", request, 0, 0) + body)
        s.sendto(struct.pack("!BBH", request, 0, ck) + body, (addr, 0))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                data, src = s.recvfrom(2048)
            except (TimeoutError, socket.timeout):
                break
            off = 0 if v6 else (data[0] & 0x0F) * 4
            typ, _code, _ck, got_id = struct.unpack("!BBHH", data[off:off + 6])
            if src[0] == addr and typ == reply and got_id == ident:
                return {"outcome": "echoreply"}
    return {"outcome": "timeout"}

def probe(arg):
    i, (addr, port, kind, timeout) = arg
    if kind in ("dns", "ntp", "udp"):
        return udp(addr, port, kind, timeout)
    if kind == "echo":
        return echo(addr, (os.getpid() + i) & 0xFFFF, timeout)
    return tcp(addr, port, kind, timeout)

checks = json.loads(sys.argv[1])
with ThreadPoolExecutor(len(checks)) as pool:
    print(json.dumps(list(pool.map(probe, enumerate(checks)))))
"""

Check = tuple[str, int, str]
KIND_PROTO = {"dns": "udp", "ntp": "udp", "udp": "udp", "echo": "icmp"}  # everything else is TCP
PROBE_TIMEOUT = 1.0

# (address, proto, port or None for ICMP): what an ICMP error quotes; unique per check
FlowKey = tuple[str, str, int | None]
IcmpError = tuple[str, int, int]  # (source, type, code)
# ICMP error types -> expected()'s words, per family (ICMPv6's types are not ICMP's).
ERROR_CLASSES = {4: {3: "icmp-unreach", 11: "icmp-timxceed"}, 6: {1: "icmp-unreach", 3: "icmp-timxceed"}}


def family_of(addr: str) -> int:
    return 6 if ":" in addr else 4


def proto_of(check: Check) -> str:
    return KIND_PROTO.get(check[2], "tcp")


def flow_key(check: Check) -> FlowKey:
    proto = proto_of(check)
    return (check[0], proto, None if proto == "icmp" else check[1])


def expected_of(check: Check) -> str | None:
    proto = proto_of(check)
    return lab.expected(check[0], None if proto == "icmp" else check[1], proto)


class IcmpCapture(Capture):
    """tcpdump on the scan interface of the ICMP and ICMPv6 errors the scanner namespace receives."""

    def __init__(self, path: Path) -> None:
        # ip6[40]: the ICMPv6 type where no extension header comes first (none in the lab); below 128:
        # errors, not echo or neighbour discovery.
        super().__init__(path, "icmp or (icmp6 and ip6[40] < 128)", ns=lab.SCAN_NS, iface=lab.SCAN_IF)

    def errors(self) -> dict[FlowKey, list[IcmpError]]:
        """ICMP errors (types 3 and 11; ICMPv6 1 to 4) by the flow their quoted packet belongs to."""
        import dpkt

        out: dict[FlowKey, list[IcmpError]] = {}
        with open(self.path, "rb") as fh:
            for _ts, buf in dpkt.pcap.Reader(fh):
                ip = dpkt.ethernet.Ethernet(buf).data
                if isinstance(ip, dpkt.ip.IP) and ip.p == socket.IPPROTO_ICMP:
                    raw = bytes(ip.data)
                    # Only errors sent to the scanner (not its own, e.g. for a reply that came too late).
                    if raw[0] not in (3, 11) or socket.inet_ntoa(ip.dst) != lab.SCAN_IP:
                        continue
                    inner = raw[8:]  # after type, code, checksum and the unused word
                    hlen, proto, dst = (inner[0] & 0x0F) * 4, inner[9], socket.inet_ntoa(inner[16:20])
                    src = socket.inet_ntoa(ip.src)
                elif isinstance(ip, dpkt.ip6.IP6) and ip.nxt == socket.IPPROTO_ICMPV6:
                    raw = bytes(ip.data)
                    if not 1 <= raw[0] <= 4 or socket.inet_ntop(socket.AF_INET6, ip.dst) != lab.SCAN_IP6:
                        continue
                    inner = raw[8:]  # after type, code, checksum and the unused (or MTU) word
                    hlen, proto, dst = 40, inner[6], socket.inet_ntop(socket.AF_INET6, inner[24:40])
                    src = socket.inet_ntop(socket.AF_INET6, ip.src)
                else:
                    continue
                if proto in (socket.IPPROTO_ICMP, socket.IPPROTO_ICMPV6):
                    key: FlowKey = (dst, "icmp", None)
                else:
                    dport = struct.unpack("!H", inner[hlen + 2 : hlen + 4])[0]
                    key = (dst, {6: "tcp", 17: "udp"}.get(proto, str(proto)), dport)
                out.setdefault(key, []).append((src, raw[0], raw[1]))
        return out

    def __enter__(self) -> IcmpCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_probes(checks: list[Check], timeout: float = PROBE_TIMEOUT) -> dict[Check, dict[str, Any]]:
    argv = lab.ns_exec_argv(
        lab.SCAN_NS,
        [sys.executable, "-c", PROBE_SCRIPT, json.dumps([[*c, timeout] for c in checks])],
    )
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    return dict(zip(checks, json.loads(proc.stdout), strict=True))


def probe_with_icmp(
    checks: list[Check], tmp: Path
) -> tuple[dict[Check, dict[str, Any]], dict[FlowKey, list[IcmpError]]]:
    assert len({flow_key(c) for c in checks}) == len(checks), "ICMP errors could not be told apart"
    with IcmpCapture(tmp / "icmp.pcap") as cap:
        results = run_probes(checks)
        time.sleep(0.1)  # every error arrived long before the 1 s timeouts ended; let tcpdump write it
    return results, cap.errors()


def observed(check: Check, result: dict[str, Any], icmp: dict[FlowKey, list[IcmpError]]) -> str | None:
    """What the probe saw, in expected()'s vocabulary."""
    if result["outcome"] in ("synack", "rst", "udp", "echoreply"):
        return result["outcome"]
    errors = icmp.get(flow_key(check))
    if errors:
        return ERROR_CLASSES[family_of(check[0])][errors[0][1]]
    return None


def assert_ground_truth(
    results: dict[Check, dict[str, Any]], icmp: dict[FlowKey, list[IcmpError]], extra: str = ""
) -> None:
    """Every probe got what expected() says; every ICMP error has the expected type, code and source,
    and no ICMP error arrived that the address plan does not promise."""
    for check, r in results.items():
        addr, port, _kind = check
        proto = proto_of(check)
        ctx = (check, r, icmp.get(flow_key(check)), extra)
        assert observed(check, r, icmp) == expected_of(check), ctx
        want_icmp = lab.expected_icmp(addr, None if proto == "icmp" else port, proto)
        got_icmp = icmp.get(flow_key(check), [])
        if want_icmp is None:
            assert not got_icmp, ctx
        else:
            assert got_icmp, ctx
            assert {(t, c) for _src, t, c in got_icmp} == {want_icmp}, ctx
            assert {src for src, _t, _c in got_icmp} == {lab.expected_icmp_responder(addr)}, ctx
    stray = set(icmp) - {flow_key(c) for c in results}
    assert not stray, f"ICMP errors nobody asked for: {[(k, icmp[k]) for k in stray]}"


# Runs inside the scan namespace: a burst of UDP datagrams to ranges of one family, then a count of the
# ICMP (ICMPv6) errors they drew, by range, sender ("self" for the quoted destination) and type/code.
BURST_SCRIPT = r"""
import collections, json, socket, sys
nets, n = json.loads(sys.argv[1]), int(sys.argv[2])  # {label: [addresses]}, datagrams per range
v6 = ":" in next(iter(nets.values()))[0]
fam = socket.AF_INET6 if v6 else socket.AF_INET
label = {socket.inet_pton(fam, a): name for name, addrs in nets.items() for a in addrs}
raw = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
with socket.socket(fam, socket.SOCK_DGRAM) as u:
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
    if not v6:
        data = data[(data[0] & 0x0F) * 4:]  # a raw IPv4 socket hands over the IP header too
    if data[0] not in ((1, 3) if v6 else (3, 11)):
        continue
    dst = data[8 + 24 : 8 + 40] if v6 else data[8 + 16 : 8 + 20]  # the quoted packet's destination
    who = "self" if socket.inet_pton(fam, src[0]) == dst else src[0]
    got[json.dumps([label.get(dst, "?"), who, data[0], data[1]])] += 1
print(json.dumps(got))
"""


def assert_icmp_not_rate_limited(nets: dict[str, list[str]], n: int = 1000) -> None:
    """n datagrams to each range of `nets` (label -> addresses, one family, every address of a range
    answering alike) draw exactly n ICMP errors each, of the type, code and sender the truth gives."""
    argv = lab.ns_exec_argv(lab.SCAN_NS, [sys.executable, "-c", BURST_SCRIPT, json.dumps(nets), str(n)])
    got = json.loads(subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout)
    want = {}
    for name, addrs in nets.items():
        responder = lab.expected_icmp_responder(addrs[0])
        icmp = lab.expected_icmp(addrs[0], 20000, "udp")
        assert icmp is not None and responder is not None
        want[json.dumps([name, "self" if responder == addrs[0] else responder, *icmp])] = n
    assert got == want


def sysctl(ns: str, key: str) -> str:
    out = subprocess.run(
        lab.ns_exec_argv(ns, ["sysctl", "-n", key]), capture_output=True, text=True, timeout=10, check=True
    )
    return out.stdout.strip()
