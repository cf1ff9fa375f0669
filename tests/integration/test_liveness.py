"""Liveness: every probe type in one scan of the lab, compared exactly with the lab's ground truth.

One permutation carries TCP SYNs per (address, port) pair and, once per address, an ICMP echo, a DNS and
an NTP query on their default ports and the tarpit check's SYN to a random high port. The expected records
come from lab.expected()/expected_icmp()/expected_icmp_responder()/is_tarpit() for every (target, probe,
port); the report's numbers are derived from that same ground truth, never copied from a run. A packet
capture on the router's scanner-side interface names every probe the scanner sent (and the tarpit ports,
which depend on the scan's random key).

The forged-ICMP test injects ICMP errors from the router namespace (a raw socket in a child process with a
bounded life) quoting the exact headers of probes seen on the wire during the scan, with only the
cookie-bearing field changed, and checks that none of them is recorded while the same quotes with the
cookie intact are.

Every name comes from the lab module, so ZBANNER_LAB_PREFIX=zby- runs this next to other labs.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import ZB
from tests.integration.conftest import (
    NO_DROPS,
    Capture,
    read_records,
    run_scanner,
    scanner_argv,
    xdp_attached,
)
from zbanner_xdp import lab
from zbanner_xdp.lab import netns, servers
from zbanner_xdp.probes import get_probe
from zbanner_xdp.report import icmp_label

pytestmark = pytest.mark.privileged

PORTS = (22, 80, 81, 443)  # 81: no server (RST) on the open range; every port SYN-ACKs on the tarpit
PROBES = "synscan,icmp-echo,udp-dns,udp-ntp"
DNS_PORT = get_probe("udp-dns").default_port
NTP_PORT = get_probe("udp-ntp").default_port
SPORT_LO, SPORT_HI = 32768, 61000  # the scanner's default source-port range
TARPIT_CHECK_LO = 10000  # plan.TARPIT_PORT_LO: the tarpit check's port lies in [10000, 65535]


def _slice(net: str, prefixlen: int) -> str:
    return str(next(ipaddress.ip_network(net).subnets(new_prefix=prefixlen)))


def _targets(prefixlen: int) -> list[str]:
    """A slice of every range of the address plan, the tarpit and the router itself."""
    nets = (
        lab.OPEN_NET, lab.RST_NET, lab.SILENT_NET, lab.NOECHO_NET,
        lab.UNREACH_NET, lab.PROHIBIT_NET, lab.TTL_NET, lab.DROP_NET,
    )  # fmt: skip
    return [*(_slice(n, prefixlen) for n in nets), f"{lab.TARPIT_IP}/32", f"{lab.TARGET_GW}/32"]


def _addresses(targets: Iterable[str]) -> list[str]:
    return [str(a) for t in targets for a in ipaddress.ip_network(t)]


# --------------------------------------------------------------------------- capture


@dataclass(frozen=True)
class Sent:
    """One probe as it left the scanner: our_port None for echo requests."""

    proto: str  # tcp / udp / icmp
    dst: str
    their_port: int | None
    our_port: int | None


def pcap_probes(path: Path) -> list[Sent]:
    """Every probe the scanner sent (SYNs, UDP datagrams, echo requests), in capture order."""
    import dpkt

    out = []
    with open(path, "rb") as fh:
        for _ts, buf in dpkt.pcap.Reader(fh):
            ip = dpkt.ethernet.Ethernet(buf).data
            if not isinstance(ip, dpkt.ip.IP) or socket.inet_ntoa(ip.src) != lab.SCAN_IP:
                continue
            dst, l4 = socket.inet_ntoa(ip.dst), ip.data
            if isinstance(l4, dpkt.tcp.TCP) and l4.flags == dpkt.tcp.TH_SYN:
                out.append(Sent("tcp", dst, l4.dport, l4.sport))
            elif isinstance(l4, dpkt.udp.UDP):
                out.append(Sent("udp", dst, l4.dport, l4.sport))
            elif isinstance(l4, dpkt.icmp.ICMP) and l4.type == dpkt.icmp.ICMP_ECHO:
                out.append(Sent("icmp", dst, None, None))
    return out


def tarpit_ports(sent: list[Sent]) -> dict[str, int]:
    """address -> the tarpit check's port: the one SYN per address outside the scan's ports."""
    out: dict[str, int] = {}
    for s in sent:
        if s.proto == "tcp" and s.their_port not in PORTS:
            assert out.setdefault(s.dst, s.their_port) == s.their_port, f"two tarpit ports for {s.dst}"
    return out


# --------------------------------------------------------------------------- ground truth


@dataclass(frozen=True)
class Spec:
    """One probe of one address: what goes out."""

    probe: str
    proto: str
    port: int | None
    tarpit: bool = False


def combined_specs(addr: str, tports: dict[str, int], ports: Iterable[int] = PORTS) -> list[Spec]:
    """The probes a `--probe synscan,icmp-echo,udp-dns,udp-ntp --tarpit-check` scan sends an address:
    TCP per port, the rest once per address (UDP on its default port)."""
    return [
        *(Spec("synscan", "tcp", p) for p in ports),
        Spec("icmp-echo", "icmp", None),
        Spec("udp-dns", "udp", DNS_PORT),
        Spec("udp-ntp", "udp", NTP_PORT),
        Spec("synscan", "tcp", tports[addr], tarpit=True),
    ]


KEY_FIELDS = ("saddr", "probe", "sport", "classification", "icmp_type", "icmp_code", "icmp_responder")


def truth(addrs: Iterable[str], specs) -> list[dict[str, Any]]:
    """The records the lab's ground truth implies: one per probe that draws an answer."""
    out = []
    for a in addrs:
        for s in specs(a):
            cls = lab.expected(a, s.port, s.proto)
            if cls is None:
                continue
            icmp = lab.expected_icmp(a, s.port, s.proto) if cls.startswith("icmp-") else None
            out.append(
                {
                    "saddr": a,
                    "probe": s.probe,
                    "sport": None if s.proto == "icmp" else s.port,
                    "classification": cls,
                    "icmp_type": icmp[0] if icmp else None,
                    "icmp_code": icmp[1] if icmp else None,
                    "icmp_responder": lab.expected_icmp_responder(a) if icmp else None,
                    "tarpit_probe": s.tarpit,
                }
            )
    return out


def key(rec: dict[str, Any]) -> tuple:
    return (*(rec[f] for f in KEY_FIELDS), rec["tarpit_probe"])


def _protocol(probe: str) -> str:
    return get_probe(probe).transport


def proto_of(rec: dict[str, Any]) -> str:
    return _protocol(rec["probe"])


def check_records(recs: list[dict[str, Any]], want: list[dict[str, Any]], sent: list[Sent]) -> None:
    """Records == ground truth exactly (no duplicates), each one answering a probe that was sent."""
    got = Counter(key(r) for r in recs)
    dups = {k: n for k, n in got.items() if n > 1}
    assert not dups, f"duplicate records: {dups}"
    expect = Counter(key(w) for w in want)
    missing = sorted(set(expect) - set(got), key=str)
    extra = sorted(set(got) - set(expect), key=str)
    assert not missing and not extra, f"missing {missing}\nextra {extra}"
    assert len(recs) == len(want)
    # The record's dport is the source port of the first copy of the probe it answers.
    first: dict[tuple, Sent] = {}
    for s in sent:
        first.setdefault((s.proto, s.dst, s.their_port), s)
    for r in recs:
        s = first.get((proto_of(r), r["saddr"], r["sport"]))
        assert s is not None, f"a record for a probe never sent: {r}"
        assert r["dport"] == s.our_port, r
        assert r["daddr"] == lab.SCAN_IP
        assert r["repeat"] is False and r["attempt"] == 0, r
        # A bare RST (no ACK to check) is the only record XDP cannot validate; the lab sends none.
        assert r["validated"] is True, r
        assert r["success"] is (r["classification"] in ("synack", "udp", "echoreply")), r


# --------------------------------------------------------------------------- the report's numbers


def expected_report(want: list[dict[str, Any]]) -> dict[str, Any]:
    """What `zbanner-xdp report` must say about a results file holding exactly the records `want`
    (the taxonomy as report.py documents it, computed plainly per target)."""
    state: dict[str, dict[tuple[str, int | None], set[str]]] = {}
    icmp: dict[tuple[str, int | None], dict[str, dict[str, set[str]]]] = {}
    tarpit_synack = set()
    for w in want:
        a, cls = w["saddr"], w["classification"]
        if w["tarpit_probe"]:
            if cls == "synack":
                tarpit_synack.add(a)
            continue
        k = (w["probe"], w["sport"])
        flags = state.setdefault(a, {}).setdefault(k, set())
        if cls.startswith("icmp-"):
            who = "target" if w["icmp_responder"] == a else "router"
            flags |= {"any", "icmp_t"} if who == "target" else {"icmp_r"}
            label = icmp_label(cls, w["icmp_type"], w["icmp_code"])
            entry = icmp.setdefault(k, {}).setdefault(label, {"target": set(), "router": set()})
            entry[who].add(a)
        else:
            flags |= {
                "synack": {"any", "ta", "tl", "synack"},
                "rst": {"any", "ta", "rst"},
                # the lab's DNS and NTP servers answer with data that parses: app_match true
                "udp": {"any", "ta", "tl", "udp", "aa", "al"},
                "echoreply": {"any", "echo"},
            }[cls]
    keys = sorted(
        {k for per in state.values() for k in per}, key=lambda k: (k[0], -1 if k[1] is None else k[1])
    )
    names = [p if port is None else f"{p}/{port}" for p, port in keys]

    def n(k: tuple[str, int | None], pred) -> int:
        return sum(1 for per in state.values() if k in per and pred(per[k]))

    def active(per: dict) -> set:
        return {k for k, f in per.items() if "any" in f}

    per_key = {}
    for name, k in zip(names, keys, strict=True):
        found = n(k, lambda f: "any" in f)
        per_key[name] = {
            "probe": k[0],
            "port": k[1],
            "protocol": _protocol(k[0]),
            "liveness": {
                "network_alive": found,
                "transport_active": n(k, lambda f: "ta" in f),
                "transport_alive": n(k, lambda f: "tl" in f),
                "application_active": n(k, lambda f: "aa" in f),
                "application_alive": n(k, lambda f: "al" in f),
            },
            "replies": {
                "synack": n(k, lambda f: "synack" in f),
                "zerowin": 0,
                "rst": n(k, lambda f: "rst" in f),
                "rst_unvalidated": 0,
                "udp": n(k, lambda f: "udp" in f),
                "echoreply": n(k, lambda f: "echo" in f),
                "icmp_from_target": n(k, lambda f: "icmp_t" in f),
                "icmp_from_router": n(k, lambda f: "icmp_r" in f),
                "icmp": {
                    label: {who: len(addrs) for who, addrs in e.items()}
                    for label, e in icmp.get(k, {}).items()
                },
            },
            "unique": {
                "only_this_key": sum(1 for per in state.values() if active(per) == {k}),
                "only_icmp": n(k, lambda f: "icmp_t" in f and not f & {"ta", "echo"}),
                "only_rst": n(k, lambda f: "rst" in f and not f & {"tl", "echo", "icmp_t"}),
            },
            # every record answers a first transmission
            "retransmission": {
                "found": found,
                "first_attempt": found,
                "retransmission_only": 0,
                "added_percent": 0.0 if found else None,
            },
        }
    unions = {a: set().union(*per.values()) for a, per in state.items()}
    both = [[sum(1 for per in state.values() if {ka, kb} <= active(per)) for kb in keys] for ka in keys]
    tcp_keys = [k for k in keys if _protocol(k[0]) == "tcp"]
    tcp_ports = sorted({port for _p, port in tcp_keys})
    # A tarpit SYN-ACKs the check port and every TCP port of the scan.
    tarpits = sorted(
        (
            a
            for a in tarpit_synack
            if all(
                any(k[1] == tp and "tl" in state.get(a, {}).get(k, ()) for k in tcp_keys) for tp in tcp_ports
            )
        ),
        key=ipaddress.ip_address,
    )
    n_tarpit = sum(1 for w in want if w["tarpit_probe"])
    return {
        "schema": "zbanner-xdp-report/1",
        "totals": {
            "lines": len(want),
            "records": len(want),
            "repeats_ignored": 0,
            "tarpit_check_records": n_tarpit,
            "malformed": 0,
            "malformed_reasons": {},
            "targets": len(state),
            "network_alive": sum(1 for per in state.values() if active(per)),
            "router_icmp_only": sum(
                1 for a, per in state.items() if not active(per) and "icmp_r" in unions[a]
            ),
            "found_only_via_icmp": sum(
                1 for u in unions.values() if "icmp_t" in u and not u & {"ta", "echo"}
            ),
            "found_only_via_rst": sum(
                1 for u in unions.values() if "rst" in u and not u & {"tl", "echo", "icmp_t"}
            ),
        },
        "probe_keys": names,
        "per_key": per_key,
        "matrix": {
            "keys": names,
            "active": [both[i][i] for i in range(len(keys))],
            "both": both,
            "p": [[round(b / row[i], 6) if row[i] else None for b in row] for i, row in enumerate(both)],
        },
        "tarpits": {
            "tcp_ports": tcp_ports,
            "check_port_synack": len(tarpit_synack),
            "count": len(tarpits),
            "addresses": tarpits,
        },
    }


def run_report(results: Path, out: Path) -> dict[str, Any]:
    r = subprocess.run(
        [ZB, "report", str(results), "--json", str(out)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    return orjson.loads(out.read_bytes())


def expected_meta(want: list[dict[str, Any]]) -> dict[str, Any]:
    """Responses and hits the scanner's summary must report for exactly these records."""
    # A hit is what the probe is after; every TCP probe here is synscan, whose hit is the SYN-ACK.
    hits = sum(
        1 for w in want if not w["tarpit_probe"] and w["classification"] in ("synack", "udp", "echoreply")
    )
    return {"responses": dict(Counter(w["classification"] for w in want)), "hits": hits}


# --------------------------------------------------------------------------- the combined scan


@dataclass
class ScanResult:
    dir: Path
    out: Path
    recs: list[dict[str, Any]]
    meta: dict[str, Any]
    sent: list[Sent]
    addrs: list[str]
    want: list[dict[str, Any]]


def _blocklist(d: Path) -> str:
    p = d / "empty-blocklist"
    p.write_text("")  # the lab lives in 198.18.0.0/15, which the default blocklist reserves
    return str(p)


def combined_scan(d: Path, targets: list[str], *extra: str, cooldown: str = "3") -> ScanResult:
    out, meta, pcap = d / "out.jsonl", d / "meta.json", d / "probes.pcap"
    with Capture(pcap, f"src host {lab.SCAN_IP}"):
        r = run_scanner(
            "--blocklist", _blocklist(d), "--rate", "2000", "--cooldown", cooldown, "-q",
            "-o", str(out), "--metadata", str(meta),
            "scan", *targets, "-p", ",".join(map(str, PORTS)), "--probe", PROBES, "--tarpit-check", *extra,
        )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert not xdp_attached()
    sent = pcap_probes(pcap)
    addrs = _addresses(targets)
    tports = tarpit_ports(sent)
    assert set(tports) == set(addrs), "one tarpit-check SYN per address"
    assert all(TARPIT_CHECK_LO <= p <= 65535 for p in tports.values())
    want = truth(addrs, lambda a: combined_specs(a, tports))
    return ScanResult(d, out, read_records(out), orjson.loads(meta.read_bytes()), sent, addrs, want)


def _udp_ask(addr: str, port: int, payload: bytes) -> bytes | None:
    """One request from the scanner's namespace through the kernel (the servers' own answer)."""
    return netns.run_in(lab.SCAN_NS, lambda: servers.udp_exchange(addr, port, payload, 2.0))


@pytest.fixture(scope="module")
def main_scan(lab_up, tmp_path_factory: pytest.TempPathFactory) -> tuple[ScanResult, dict[str, Any]]:
    # What dnsmasq itself answers to the probe's default query (id aside), asked before the scan.
    dns = get_probe("udp-dns")
    reply = _udp_ask(lab.READY_ADDR, DNS_PORT, dns.udp_template())
    assert reply is not None, "dnsmasq did not answer the default query"
    dns_truth = dns.parse(lab.READY_ADDR, DNS_PORT, reply)
    return combined_scan(tmp_path_factory.mktemp("liveness"), _targets(28)), dns_truth


# --------------------------------------------------------------------------- tests


def test_all_probes_one_scan_match_ground_truth(main_scan) -> None:
    res, dns_truth = main_scan
    recs, meta, want, sent, addrs = res.recs, res.meta, res.want, res.sent, res.addrs

    # What went out: every probe exactly once, as many as planned.
    per_addr = len(combined_specs(addrs[0], dict.fromkeys(addrs, 0)))
    planned = len(addrs) * per_addr
    assert meta["reason"] == "completed"
    assert meta["targets"]["addresses"] == len(addrs) and meta["targets"]["pairs"] == len(addrs) * len(PORTS)
    assert meta["targets"]["probes_planned"] == planned
    assert meta["packets_sent"]["probes"] == planned == len(sent)
    copies = Counter((s.proto, s.dst, s.their_port) for s in sent)
    assert len(copies) == planned and set(copies.values()) == {1}
    assert all(SPORT_LO <= s.our_port <= SPORT_HI for s in sent if s.our_port is not None)

    # What came back: the ground truth, exactly.
    check_records(recs, want, sent)
    synacks = sum(1 for w in want if w["classification"] == "synack")
    assert meta["packets_sent"]["replies"] == synacks  # one RST per SYN-ACK, tarpit check included
    assert meta["records_written"] == len(want)
    for k, v in expected_meta(want).items():
        assert meta[k] == v, k
    assert meta["repeats"] == 0
    assert meta["drops"] == NO_DROPS

    by = {(r["saddr"], r["probe"], r["sport"], r["tarpit_probe"]): r for r in recs}
    # Every behaviour of the address plan is in this scan.
    behaviours = {
        (w["probe"], w["classification"], w["icmp_type"], w["icmp_code"],
         w["icmp_responder"] == w["saddr"] if w["icmp_responder"] else None)
        for w in want
    }  # fmt: skip
    for b in [
        ("synscan", "synack", None, None, None), ("synscan", "rst", None, None, None),
        ("synscan", "icmp-unreach", 3, 1, False), ("synscan", "icmp-unreach", 3, 13, False),
        ("synscan", "icmp-timxceed", 11, 0, False), ("udp-dns", "udp", None, None, None),
        ("udp-ntp", "udp", None, None, None), ("udp-dns", "icmp-unreach", 3, 3, True),
        ("udp-ntp", "icmp-unreach", 3, 3, True), ("icmp-echo", "echoreply", None, None, None),
        ("icmp-echo", "icmp-unreach", 3, 1, False), ("icmp-echo", "icmp-timxceed", 11, 0, False),
    ]:  # fmt: skip
        assert b in behaviours, b

    # UDP replies parse: DNS as dnsmasq answers the default query, NTP with the lab's stratum.
    udp = [r for r in recs if r["classification"] == "udp"]
    assert udp and all(r["app_match"] is True and r["data"] for r in udp)
    for r in udp:
        if r["probe"] == "udp-dns":
            d = r["udp-dns"]
            assert d["qr"] is True and d["opcode"] == 0, r
            for f in ("rcode", "rcode_name", "qdcount", "ancount", "question", "answer_name", "answer_data"):
                assert d[f] == dns_truth[f], (f, r)
        else:
            n = r["udp-ntp"]
            assert n["stratum"] == lab.NTP_STRATUM and n["mode"] == 4 and n["version"] == 4, r
    # Echo replies from every address that answers echo (not NOECHO, not SILENT, not the router carve-outs).
    echo = {r["saddr"] for r in recs if r["classification"] == "echoreply"}
    assert echo == {a for a in addrs if lab.expected(a, None, "icmp") == "echoreply"}
    assert not echo & set(_addresses([_slice(lab.NOECHO_NET, 28), _slice(lab.SILENT_NET, 28)]))
    # UDP to a host without the server: port unreachable from the target itself (the router's own address).
    for probe, port in (("udp-dns", DNS_PORT), ("udp-ntp", NTP_PORT)):
        r = by[(lab.TARGET_GW, probe, port, False)]
        assert (r["classification"], r["icmp_type"], r["icmp_code"], r["icmp_responder"]) == (
            "icmp-unreach", 3, 3, lab.TARGET_GW,
        )  # fmt: skip
    # The tarpit SYN-ACKs its random check port; nobody else does.
    tp = [r for r in recs if r["tarpit_probe"] and r["classification"] == "synack"]
    assert [r["saddr"] for r in tp] == [lab.TARPIT_IP]
    assert lab.is_tarpit(tp[0]["saddr"]) and tp[0]["sport"] >= TARPIT_CHECK_LO
    assert [a for a in addrs if lab.is_tarpit(a)] == [lab.TARPIT_IP]


def test_report_numbers_match_ground_truth(main_scan) -> None:
    res, _ = main_scan
    rep = run_report(res.out, res.dir / "report.json")
    want = expected_report(res.want)
    assert rep["totals"] == want["totals"]
    assert rep["probe_keys"] == want["probe_keys"]
    for name in want["probe_keys"]:
        assert rep["per_key"][name] == want["per_key"][name], name
    assert rep == want
    assert rep["tarpits"]["addresses"] == [lab.TARPIT_IP]
    # The ICMP breakdown separates router errors from the target's own.
    dns = rep["per_key"][f"udp-dns/{DNS_PORT}"]["replies"]["icmp"]
    assert dns["icmp-unreach/3 port-unreachable"] == {"target": 1, "router": 0}
    n_unreach = len(_addresses([_slice(lab.UNREACH_NET, 28)]))
    assert dns["icmp-unreach/1 host-unreachable"] == {"target": 0, "router": n_unreach}


def test_retransmitted_probes_are_not_recorded_twice(lab_up, tmp_path: Path) -> None:
    res = combined_scan(tmp_path, _targets(30), "--retransmit", "1", "--retransmit-delay", "1")
    meta, sent, want = res.meta, res.sent, res.want
    single = len(res.addrs) * len(combined_specs(res.addrs[0], dict.fromkeys(res.addrs, 0)))
    # Every probe went out twice ...
    assert meta["targets"]["probes_planned"] == 2 * single
    assert meta["packets_sent"]["probes"] == 2 * single == len(sent)
    copies: dict[tuple, list[Sent]] = {}
    for s in sent:
        copies.setdefault((s.proto, s.dst, s.their_port), []).append(s)
    assert len(copies) == single and {len(c) for c in copies.values()} == {2}
    for (proto, _dst, _port), (a, b) in copies.items():
        if proto != "icmp":  # each copy from its attempt's source port; echo copies are identical
            assert a.our_port != b.our_port
    # ... yet each answer is recorded once, from the first copy (check_records: dport of the first copy).
    check_records(res.recs, want, sent)
    assert all(r["attempt"] == 0 for r in res.recs)
    synacks = sum(1 for w in want if w["classification"] == "synack")
    assert meta["packets_sent"]["replies"] == 2 * synacks  # the second copy's SYN-ACK is RST too
    assert meta["repeats"] == len(want)  # every answer came twice; the second is a repeat
    for k, v in expected_meta(want).items():
        assert meta[k] == v, k
    assert meta["drops"] == NO_DROPS
    rep = run_report(res.out, tmp_path / "report.json")
    assert rep == expected_report(want)


def test_udp_per_pair_port_unreachable_from_target(lab_up, tmp_path: Path) -> None:
    """Without TCP probes, UDP goes to every port of -p: closed ports draw port unreachable from the
    target itself (router carve-outs still answer for their ranges)."""
    out, meta_p, pcap = tmp_path / "out.jsonl", tmp_path / "meta.json", tmp_path / "probes.pcap"
    targets = _targets(29)
    ports = (DNS_PORT, DNS_PORT + 1)
    with Capture(pcap, f"src host {lab.SCAN_IP}"):
        r = run_scanner(
            "--blocklist", _blocklist(tmp_path), "--rate", "2000", "--cooldown", "3", "-q",
            "-o", str(out), "--metadata", str(meta_p),
            "scan", *targets, "-p", ",".join(map(str, ports)), "--probe", "udp-dns,icmp-echo",
        )  # fmt: skip
    assert r.returncode == 0, r.stderr
    sent = pcap_probes(pcap)
    addrs = _addresses(targets)

    def specs(_a: str) -> list[Spec]:
        return [*(Spec("udp-dns", "udp", p) for p in ports), Spec("icmp-echo", "icmp", None)]

    want = truth(addrs, specs)
    recs = read_records(out)
    meta = orjson.loads(meta_p.read_bytes())
    assert meta["packets_sent"]["probes"] == len(addrs) * 3 == len(sent)
    check_records(recs, want, sent)
    closed = [r for r in recs if r["sport"] == ports[1] and r["icmp_responder"] == r["saddr"]]
    assert closed and all((r["icmp_type"], r["icmp_code"]) == (3, 3) for r in closed)
    assert {r["saddr"] for r in closed} == {
        a for a in addrs if lab.expected_icmp(a, ports[1], "udp") == (3, 3)
    }
    for k, v in expected_meta(want).items():
        assert meta[k] == v, k
    assert meta["rejected"]["validation_failed"] == 0
    assert run_report(out, tmp_path / "report.json") == expected_report(want)


# --------------------------------------------------------------------------- forged ICMP

# Runs in the router namespace: sniffs the scanner's probes on the router's scanner-side interface
# (AF_PACKET), waits for the ones named in cfg["wanted"], then sends ICMP destination-unreachable
# messages to the scanner quoting their IP header and first 8 L4 bytes, with the cookie-bearing field
# (TCP sequence number, UDP checksum, echo id) changed where cfg["send"] says so. Bounded by a deadline.
FORGER = r"""
import json, socket, struct, sys, time

cfg = json.loads(sys.argv[1])
deadline = time.monotonic() + cfg["timeout"]
sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
sniff.bind((cfg["ifname"], 0))
sniff.settimeout(0.2)
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
print("ready", flush=True)

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

seen = {}
while len(seen) < len(cfg["wanted"]) and time.monotonic() < deadline:
    try:
        frame = sniff.recv(4096)
    except socket.timeout:
        continue
    if len(frame) < 42 or frame[12:14] != b"\x08\x00":
        continue
    ip = frame[14:]
    ihl = (ip[0] & 15) * 4
    if socket.inet_ntoa(ip[12:16]) != cfg["scan_ip"] or len(ip) < ihl + 8:
        continue
    proto, dst, l4 = ip[9], socket.inet_ntoa(ip[16:20]), ip[ihl:ihl + 8]
    if proto == 6 and ip[ihl + 13] != 0x02:
        continue  # SYNs only (not our RSTs)
    if proto == 1 and l4[0] != 8:
        continue  # echo requests only
    if proto not in (1, 6, 17):
        continue
    their = None if proto == 1 else struct.unpack("!H", l4[2:4])[0]
    for role, wproto, addr, wport in cfg["wanted"]:
        if role not in seen and (wproto, addr, wport) == (proto, dst, their):
            seen[role] = bytes(ip[:ihl] + l4)
if len(seen) < len(cfg["wanted"]):
    missing = sorted(set(r[0] for r in cfg["wanted"]) - set(seen))
    print(json.dumps({"error": "probes not seen", "missing": missing}))
    sys.exit(1)
time.sleep(cfg["settle"])  # let the real answers arrive first

report = []
for role, mutate in cfg["send"]:
    quote = bytearray(seen[role])
    ihl = (quote[0] & 15) * 4
    proto = quote[9]
    off = ihl + 4 if proto in (1, 6) else ihl + 6  # TCP seq / echo id / UDP checksum
    if mutate:
        quote[off] ^= 0x5A
        quote[off + 1] ^= 0xA5
    body = struct.pack("!BBHI", 3, 1, 0, 0) + bytes(quote)
    msg = body[:2] + struct.pack("!H", csum(body)) + body[4:]
    raw.sendto(msg, (cfg["scan_ip"], 0))
    our = None if proto == 1 else struct.unpack("!H", quote[ihl:ihl + 2])[0]
    their = None if proto == 1 else struct.unpack("!H", quote[ihl + 2:ihl + 4])[0]
    report.append({"role": role, "mutated": mutate, "proto": proto, "addr": socket.inet_ntoa(quote[16:20]),
                   "our_port": our, "their_port": their})
    time.sleep(cfg["gap"])
print(json.dumps({"sent": report}), flush=True)
"""


@pytest.fixture(scope="module")
def forged_scan(lab_up, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("forged")
    out, meta = d / "out.jsonl", d / "meta.json"
    open_a = _addresses([_slice(lab.OPEN_NET, 30)])
    silent = _addresses([_slice(lab.SILENT_NET, 30)])
    tcp_port = PORTS[1]
    wanted = [
        # answered probes: their wrong-cookie quotes must not be recorded
        ["tcp_open", 6, open_a[0], tcp_port],
        ["udp_open", 17, open_a[1], DNS_PORT],
        ["echo_open", 1, open_a[2], None],
        # unanswered probes: the same quotes with the cookie intact are ICMP errors like any router's
        ["tcp_silent", 6, silent[0], tcp_port],
        ["udp_silent", 17, silent[1], DNS_PORT],
        ["echo_silent", 1, silent[2], None],
        # a wrong-checksum quote first, then the genuine one for the same probe
        ["udp_masked", 17, silent[3], DNS_PORT],
    ]
    send = [
        ["tcp_open", True], ["udp_open", True], ["echo_open", True],
        ["tcp_silent", False], ["udp_silent", False], ["echo_silent", False],
        ["udp_masked", True], ["udp_masked", False],
    ]  # fmt: skip
    cfg = {
        "ifname": lab.CAPTURE_IF, "scan_ip": lab.SCAN_IP, "wanted": wanted, "send": send,
        "timeout": 30, "settle": 0.3, "gap": 0.05,
    }  # fmt: skip
    forger = subprocess.Popen(
        lab.ns_exec_argv(lab.CAPTURE_NS, [sys.executable, "-c", FORGER, json.dumps(cfg)]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    scanner = None
    try:
        assert forger.stdout is not None
        assert forger.stdout.readline().strip() == "ready", forger.stderr.read() if forger.stderr else ""
        scanner = subprocess.Popen(
            scanner_argv(
                "--blocklist", _blocklist(d), "--rate", "200", "--cooldown", "4", "-q",
                "-o", str(out), "--metadata", str(meta),
                "scan", *open_a, *silent, "-p", str(tcp_port), "--probe", "synscan,icmp-echo,udp-dns",
            ),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        _, err = scanner.communicate(timeout=90)
        assert scanner.returncode == 0, err
        f_out, f_err = forger.communicate(timeout=40)
        assert forger.returncode == 0, f_out + f_err
    finally:
        for proc in (scanner, forger):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert not xdp_attached()
    sent = json.loads(f_out.strip().splitlines()[-1])["sent"]
    addrs = [*open_a, *silent]

    def specs(_a: str) -> list[Spec]:
        return [
            Spec("synscan", "tcp", tcp_port),
            Spec("icmp-echo", "icmp", None),
            Spec("udp-dns", "udp", DNS_PORT),
        ]

    return {
        "recs": read_records(out),
        "meta": orjson.loads(meta.read_bytes()),
        "sent": sent,
        "want": truth(addrs, specs),
        "open": open_a,
        "silent": silent,
    }


def _forged_record(s: dict[str, Any]) -> dict[str, Any]:
    """The record an ICMP error (3/1 from the router's address) quoting this probe makes."""
    probe = {6: "synscan", 17: "udp-dns", 1: "icmp-echo"}[s["proto"]]
    return {
        "saddr": s["addr"], "probe": probe, "sport": s["their_port"], "classification": "icmp-unreach",
        "icmp_type": 3, "icmp_code": 1, "icmp_responder": lab.TARGET_GW, "tarpit_probe": False,
    }  # fmt: skip


def test_forged_icmp_errors_are_not_recorded(forged_scan) -> None:
    recs, meta, sent = forged_scan["recs"], forged_scan["meta"], forged_scan["sent"]
    forged = [s for s in sent if s["mutated"]]
    intact = [s for s in sent if not s["mutated"] and s["role"] != "udp_masked"]
    assert len(forged) == 4 and len(intact) == 3
    got = Counter(key(r) for r in recs)
    # No forged quote is recorded: the answered probes' records are exactly the ground truth ...
    # (The masked target's genuine error follows its forgery: see the next test.)
    for s in forged:
        if s["role"] == "udp_masked":
            continue
        assert not any(r["saddr"] == s["addr"] and r["classification"].startswith("icmp-") for r in recs), s
    # ... while the same quotes with the cookie intact are (so the injected errors did reach the program).
    for s in intact:
        k = key(_forged_record(s))
        assert got[k] == 1, (s, sorted(got, key=str))
        r = next(r for r in recs if key(r) == k)
        assert r["dport"] == s["our_port"] and r["validated"] is True and r["attempt"] == 0
    others = [r for r in recs if r["saddr"] not in {s["addr"] for s in sent if s["role"] == "udp_masked"}]
    want = forged_scan["want"] + [_forged_record(s) for s in intact]
    assert Counter(key(r) for r in others) == Counter(key(w) for w in want)
    # Each forgery is a validation failure: the TCP and echo ones in the XDP program (bad cookie), the UDP
    # ones (only the port slot is checked there) in user space, which checks the quoted checksum.
    assert meta["rejected"]["validation_failed"] == len(forged)
    assert meta["xdp_counters"]["bad_cookie"] >= sum(1 for s in forged if s["proto"] != 17)
    assert meta["drops"]["ringbuf_full"] == 0


def test_forged_udp_quote_does_not_mask_the_genuine_error(forged_scan) -> None:
    recs = forged_scan["recs"]
    masked = [s for s in forged_scan["sent"] if s["role"] == "udp_masked"]
    assert [s["mutated"] for s in masked] == [True, False]
    genuine = _forged_record(masked[1])
    assert [key(r) for r in recs if r["saddr"] == genuine["saddr"]] == [key(genuine)]
