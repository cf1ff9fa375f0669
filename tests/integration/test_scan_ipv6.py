"""IPv6 scans of the lab (issue 16): SYN scan exact against the ground truth, banners equal to a
stateful client's, liveness probes and ICMPv6 errors linked to their probe, no RST from the scanner
namespace's kernel, neighbour discovery working while a scan runs, and what is refused over IPv6."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.integration.conftest import (
    NO_DROPS,
    REPLY_ARGS,
    Capture,
    read_records,
    run_scanner,
    scanner_argv,
    xdp_attached,
)
from tests.integration.test_banners import check_banners
from tests.integration.test_lab_ipv6 import ECHO_GW_SCRIPT, neighbours
from zbanner_xdp import lab

pytestmark = pytest.mark.privileged

TTL = 99  # the kernel's hop limit is 64: a frame from the scanner with another was not ours
twin = lab.v6_twin
# open, RST, silent, blackholed at the router
NETS6 = [str(lab.OPEN_NET6), str(lab.RST_NET6), str(lab.SILENT_NET6), str(lab.DROP_NET6)]


def pcap_tcp6(path: Path) -> list[tuple[str, str, int, int, int, int]]:
    """(src, dst, sport, dport, flags, hop limit) per IPv6 TCP frame in a pcap."""
    import dpkt

    out = []
    with open(path, "rb") as fh:
        for _ts, buf in dpkt.pcap.Reader(fh):
            ip6 = dpkt.ethernet.Ethernet(buf).data
            if not isinstance(ip6, dpkt.ip6.IP6) or not isinstance(ip6.data, dpkt.tcp.TCP):
                continue
            t = ip6.data
            src, dst = (str(ipaddress.IPv6Address(a)) for a in (ip6.src, ip6.dst))
            out.append((src, dst, t.sport, t.dport, t.flags, ip6.hlim))
    return out


def scan6(tmp_path: Path, *args: str, rate: str = "5K", cooldown: str = "2") -> tuple[list[dict], dict, str]:
    empty = tmp_path / "empty"
    empty.write_text("")
    out, meta = tmp_path / "out.jsonl", tmp_path / "meta.json"
    r = run_scanner(
        "--blocklist", str(empty), "--rate", rate, "--ttl", str(TTL), "--cooldown", cooldown,
        "-o", str(out), "--metadata", str(meta), "scan", *args,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return read_records(out), orjson.loads(meta.read_bytes()), r.stderr


@pytest.mark.parametrize(("tx", "replies"), [("xdp", "kernel"), ("packet", "user")])
def test_synscan6_matches_ground_truth_and_the_kernel_sends_no_rst(
    lab_up, tmp_path: Path, tx: str, replies: str
) -> None:
    """Both SYN paths (the kernel generator's IPv6 SYNs, AF_PACKET's) and both reply paths (the
    program's RSTs, XDP_TX; user space's)."""
    pcap = tmp_path / "scan.pcap"
    with Capture(pcap, "ip6 and tcp"):
        recs, m, _ = scan6(tmp_path, *NETS6, "-p", "80,81", "--seed", "42", "--tx", tx, *REPLY_ARGS[replies])
    got = {(rec["saddr"], rec["sport"]): rec["classification"] for rec in recs}
    assert len(got) == len(recs), "duplicate records"
    want = {}
    for net in NETS6:
        for a in ipaddress.ip_network(net):
            for p in (80, 81):
                e = lab.expected(str(a), p)
                if e:
                    want[(str(a), p)] = e
    assert got == want
    assert Counter(got.values()) == {"synack": 256, "rst": 256 + 512}
    assert all(rec["daddr"] == lab.SCAN_IP6 and 32768 <= rec["dport"] <= 61000 for rec in recs)
    assert all(rec["success"] is (rec["classification"] == "synack") for rec in recs)
    assert m["reason"] == "completed" and m["drops"] == NO_DROPS
    assert m["packets_sent"] == {**m["packets_sent"], "probes": 4 * 256 * 2, "replies": 256}
    assert (m["tx_mode"] == "xdp") is (tx == "xdp"), m["tx_mode"]
    assert m["packets_sent"]["replies_in_kernel"] == (256 if replies == "kernel" else 0), m["kernel_replies"]

    # Every frame the scanner namespace sent carries our hop limit: the kernel answered nothing (no RST
    # to a SYN-ACK it never asked for); each pair was probed exactly once; our RSTs close the SYN-ACKs.
    frames = [f for f in pcap_tcp6(pcap) if f[0] == lab.SCAN_IP6]
    assert {f[5] for f in frames} == {TTL}
    syns = Counter((f[1], f[3]) for f in frames if f[4] == 0x02)
    assert len(syns) == 4 * 256 * 2 and set(syns.values()) == {1}
    assert len([f for f in frames if f[4] & 0x04]) == 256
    assert not xdp_attached()


CASES6 = [("http", 80, "5K"), ("tls", 443, "5K"), ("ssh", 22, "200")]  # sshd: see test_banners' CASES


@pytest.mark.parametrize(("probe", "port", "rate"), CASES6, ids=[c[0] for c in CASES6])
def test_banners6_equal_a_stateful_clients(
    lab_up, tmp_path: Path, probe: str, port: int, rate: str, replies: str
) -> None:
    """Both reply paths: with --kernel-replies the program answers every one over IPv6, http's
    Host: [address] included (the address's text written by the program)."""
    net = "2001:2::/122"  # 64 of the open range
    pcap = tmp_path / "cap.pcap"
    with Capture(pcap, "ip6 and tcp"):
        recs, m, _ = scan6(
            tmp_path, net, "-p", str(port), "--probe", probe, *REPLY_ARGS[replies], rate=rate, cooldown="3"
        )
    banners = check_banners(recs, probe, port, [str(a) for a in ipaddress.ip_network(net)])
    if probe == "http":  # Host: [address], whose length the XDP program computed to validate the banner
        assert all(x["http"]["status_code"] == 200 for x in banners)
    frames = [f for f in pcap_tcp6(pcap) if f[0] == lab.SCAN_IP6 and f[2] >= 32768]
    assert frames and {f[5] for f in frames} == {TTL}
    assert m["responses"]["banner"] == len(banners) and m["drops"] == NO_DROPS
    in_kernel = replies == "kernel"
    assert (m["packets_sent"]["replies_in_kernel"] > 0) is in_kernel, m["kernel_replies"]


def test_liveness6_and_icmpv6_errors_linked_to_their_probe(lab_up, tmp_path: Path) -> None:
    nets = ["2001:2::/125", "2001:2::300/125", "2001:2::200/126", twin("198.19.0.0") + "/125"]
    nets += [twin("198.19.1.0") + "/125", twin("198.19.3.0") + "/125"]
    probes = "synscan,icmp-echo,udp-dns,udp-ntp"
    recs, m, _ = scan6(tmp_path, *nets, "-p", "80,9999", "--probe", probes)
    assert m["drops"] == NO_DROPS
    got = Counter((r["saddr"], r["probe"], r["sport"]) for r in recs)
    assert set(got.values()) == {1}, "one record per probe and target"
    by = {(r["saddr"], r["probe"], r["sport"]): r for r in recs}
    n = 0
    for net in nets:
        for a in map(str, ipaddress.ip_network(net)):
            for probe, port, proto in (
                ("synscan", 80, "tcp"), ("synscan", 9999, "tcp"), ("icmp-echo", None, "icmp"),
                ("udp-dns", 53, "udp"), ("udp-ntp", 123, "udp"),
            ):  # fmt: skip
                want = lab.expected(a, port, proto)
                rec = by.get((a, probe, port))
                assert (rec or {}).get("classification") == want, (a, probe, port)
                if rec is None:
                    continue
                n += 1
                if want.startswith("icmp-"):
                    assert (rec["icmp_type"], rec["icmp_code"]) == lab.expected_icmp(a, port, proto), rec
                    assert rec["icmp_responder"] == lab.expected_icmp_responder(a), rec
                else:
                    assert rec["icmp_responder"] is None
    assert n == len(recs) and n > 0


def test_neighbour_discovery_keeps_working_during_a_scan(lab_up, tmp_path: Path) -> None:
    """The program attached, a scan sending: the namespace's kernel forgets its gateway and resolves
    it again (solicitation out, advertisement in through XDP), and its own echo gets answered."""
    empty = tmp_path / "empty"
    empty.write_text("")
    out = tmp_path / "out.jsonl"
    # 256 x 64 SYNs into the silent range at 2K pps: ~8 s of sending, bounded by --max-runtime.
    argv = scanner_argv(
        "--blocklist", str(empty), "--rate", "2K", "--cooldown", "1", "--max-runtime", "20", "-q",
        "-o", str(out), "scan", str(lab.SILENT_NET6), "-p", "1-64",
    )  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not xdp_attached() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert xdp_attached(), "the scan did not attach"
        time.sleep(0.5)
        subprocess.run(
            ["ip", "-n", lab.SCAN_NS, "-6", "neigh", "flush", "dev", lab.SCAN_IF], check=True, timeout=10
        )
        assert lab.TARGET_GW6 not in neighbours(lab.SCAN_NS)
        answered = subprocess.run(
            lab.ns_exec_argv(lab.SCAN_NS, [sys.executable, "-c", ECHO_GW_SCRIPT, lab.TARGET_GW6]),
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        still_attached = xdp_attached() and proc.poll() is None
        entry = [ln for ln in neighbours(lab.SCAN_NS).splitlines() if ln.startswith(f"{lab.TARGET_GW6} ")]
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert still_attached, "the scan ended before the check: make it longer"
    assert answered.stdout.strip() == "answered", answered.stderr
    assert entry and f"lladdr {lab.GATEWAY_MAC}" in entry[0], entry
    assert proc.returncode == 0, err
    assert read_records(out) == []


def test_lzr6_identifies_every_service_and_stops_at_the_tarpit(lab_up, tmp_path: Path) -> None:
    """Multi-connection probes over IPv6 (their step table keys on the whole address): lzr identifies
    every lab service on its own and its unexpected port, and --tarpit-check stops it at the tarpit."""
    from tests.integration.test_multistep import LZR_ARGS, check_lzr, results

    target = twin("198.18.0.9")
    ports = ",".join(map(str, sorted(lab.TCP_SERVICES)))
    recs, m, _ = scan6(tmp_path, target, "-p", ports, "--probe", "lzr", "--probe-args", LZR_ARGS)
    got = results(recs, "lzr")
    assert set(got) == {(target, p) for p in lab.TCP_SERVICES}, sorted(got)
    for (addr, port), rec in sorted(got.items()):
        check_lzr(rec, addr, port)
    assert m["steps"]["incomplete"] == 0 and m["steps"]["complete"] == len(got)

    neighbour, port = twin("198.18.4.6"), lab.PORTS["postgres"]  # four handshakes
    recs, _, _ = scan6(
        tmp_path, lab.TARPIT_IP6, neighbour, "-p", str(port), "--probe", "lzr", "--probe-args", LZR_ARGS,
        "--tarpit-check",
    )  # fmt: skip
    got = results(recs, "lzr")
    tarpit = got[(lab.TARPIT_IP6, port)]
    assert tarpit["lzr"]["tarpit"] is True and tarpit["lzr"]["handshakes"] == 1, tarpit
    check_lzr(got[(neighbour, port)], neighbour, port)
    assert any(r["tarpit_probe"] and r["saddr"] == lab.TARPIT_IP6 for r in recs)


def test_jarm6_equals_the_same_servers_over_ipv4(lab_up, tmp_path: Path) -> None:
    """JARM's ten hellos over IPv6 fingerprint the lab's nginx exactly as over IPv4."""
    recs6, _, _ = scan6(tmp_path, twin("198.18.0.9"), "-p", "443", "--probe", "jarm")
    (v6,) = [r for r in recs6 if r["probe"] == "jarm" and r["classification"] == "banner"]
    recs4, _, _ = scan6(tmp_path, "198.18.0.9", "-p", "443", "--probe", "jarm")
    (v4,) = [r for r in recs4 if r["probe"] == "jarm" and r["classification"] == "banner"]
    assert v6["incomplete"] is False and v6["saddr"] == twin("198.18.0.9")
    assert v6["jarm"]["fingerprint"] == v4["jarm"]["fingerprint"] != "0" * 62


def test_banner_bytes6_whole_http_head(lab_up, tmp_path: Path) -> None:
    """--banner-bytes over IPv6: nginx's head over many segments (a 64-byte window), reassembled, each
    byte the server's (a stateful client's over IPv6 is the truth)."""
    import base64

    from tests.integration.test_segments import stateful_response, without_date

    net = "2001:2::/126"
    recs, m, _ = scan6(
        tmp_path, net, "-p", "80", "--probe", "http", "--ack-window", "64", "--banner-bytes", "8K",
        rate="500", cooldown="3",
    )  # fmt: skip
    got = {r["saddr"]: r for r in recs if r["classification"] == "banner"}
    assert sorted(got) == sorted(str(a) for a in ipaddress.ip_network(net))
    truth = without_date(stateful_response("2001:2::1", 80))
    for addr, rec in got.items():
        data = without_date(base64.b64decode(rec["data"]))
        assert truth.startswith(data) and b"</title>" in data and rec["truncated"] is False, addr
    seg = m["segments"]
    assert seg["ends"]["complete"] == len(got) and seg["segments_taken"] >= 2 * len(got), seg


def test_kill_9_then_resume6_equals_the_ground_truth(lab_up, tmp_path: Path) -> None:
    """--checkpoint over IPv6: killed midway, resumed, the records are the truth's, none twice, and
    exactly the probes from the durable position on were sent again."""
    from tests.integration.test_long import COOLDOWN, RATE, _keys, _killed_midway, _truth

    cidrs, ports = ("2001:2::/117",), [22, 80, 443]  # 2,048 addresses: open, RST, silent, tarpit
    planned = 2048 * len(ports)
    empty = tmp_path / "empty"
    empty.write_text("")
    out, meta, ckpt = tmp_path / "out.jsonl", tmp_path / "out.json", tmp_path / "scan.ckpt"
    args = [
        *("--blocklist", str(empty), "--rate", str(RATE), "--cooldown", str(COOLDOWN), "--seed", "15"),
        *("-q", "-o", str(out), "--metadata", str(meta), "--tx", "packet"),
        *("scan", *cidrs, "-p", ",".join(map(str, ports)), "--checkpoint", str(ckpt)),
    ]
    with Capture(tmp_path / "part1.pcap", "ip6 and tcp") as cap:
        _killed_midway(args, ckpt, 0.4, planned)
        time.sleep(0.5)
    cap.stop()
    doc = orjson.loads(ckpt.read_bytes())
    durable = doc["position"]["probes"]
    with Capture(tmp_path / "part2.pcap", "ip6 and tcp") as cap:
        r = subprocess.run(scanner_argv("resume", str(ckpt)), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr

    def syns(pcap: Path) -> list[tuple[str, int]]:
        return [(f[1], f[3]) for f in pcap_tcp6(pcap) if f[4] == 0x02 and f[0] == lab.SCAN_IP6]

    part1, part2 = syns(tmp_path / "part1.pcap"), syns(tmp_path / "part2.pcap")
    assert 0 < durable < len(part1) < planned
    assert len(part2) == planned - durable and len(set(part1) | set(part2)) == planned
    keys = _keys(read_records(out))
    assert len(keys) == len(set(keys)), "a record written twice"
    assert set(keys) == _truth(cidrs, ports)
    m = orjson.loads(meta.read_bytes())
    assert m["reason"] == "completed" and m["resume"]["parts"] == 2


def test_pcap6_frames_equal_the_records(lab_up, tmp_path: Path) -> None:
    """--pcap over IPv6: the frames as they arrived, one per record, each the record's reply."""
    import dpkt

    pcap = tmp_path / "replies.pcap"
    nets = ["2001:2::/125", "2001:2::100/126", twin("198.19.0.0") + "/126"]
    recs, m, _ = scan6(tmp_path, *nets, "-p", "80", "--probe", "http,icmp-echo", "--pcap", str(pcap))
    with open(pcap, "rb") as fh:
        frames = [dpkt.ethernet.Ethernet(buf).data for _ts, buf in dpkt.pcap.Reader(fh)]
    assert len(frames) == len(recs) == m["pcap"]["frames"] and m["pcap"]["lost"] == 0
    assert all(
        isinstance(f, dpkt.ip6.IP6) and str(ipaddress.IPv6Address(f.dst)) == lab.SCAN_IP6 for f in frames
    )

    def src(f: dpkt.ip6.IP6) -> str:
        return str(ipaddress.IPv6Address(f.src))

    want = Counter(r["icmp_responder"] or r["saddr"] for r in recs)
    assert Counter(src(f) for f in frames) == want
    kinds = Counter(r["classification"] for r in recs)
    assert {"synack", "banner", "echoreply", "rst", "icmp-unreach"} <= set(kinds), kinds
    errors = [f for f in frames if f.nxt == 58 and bytes(f.data)[0] == 1]  # ICMPv6 destination unreachable
    assert len(errors) == kinds["icmp-unreach"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("scan", "2001:2::5", "198.18.0.5", "-p", "80"), "IPv4 and IPv6 targets in one scan"),
        (("scan", "2001:2::/64", "-p", "80"), "IPv6 target space too large"),
        (("--source-ip", "10.77.0.1", "scan", "2001:2::5", "-p", "80"), "is IPv4, the targets are IPv6"),
    ],
)
def test_what_ipv6_refuses_is_one_line(lab_up, tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    empty = tmp_path / "empty"
    empty.write_text("")
    r = run_scanner("--blocklist", str(empty), "-o", str(tmp_path / "o.jsonl"), *args, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "o.jsonl").exists()
