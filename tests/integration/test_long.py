"""Long scans in the lab (issue 15): kill -9 then resume, report --blocks against the lab's blocks."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import ZB
from tests.integration.conftest import Capture, pcap_tcp, read_records, scanner_argv
from zbanner_xdp import lab

pytestmark = pytest.mark.privileged

RATE = 2000
COOLDOWN = 1.0


def _addrs(*cidrs: str) -> list[str]:
    return [str(a) for c in cidrs for a in ipaddress.ip_network(c)]


def _truth(cidrs: tuple[str, ...], ports: list[int]) -> set[tuple[str, int, str]]:
    out = set()
    for a in _addrs(*cidrs):
        for p in ports:
            cls = lab.expected(a, p, "tcp")
            if cls is not None:
                out.add((a, p, cls))
    return out


def _keys(records: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
    return [(r["saddr"], r["sport"], r["classification"]) for r in records]


def _killed_midway(args: list[str], ckpt: Path, fraction: float, planned: int) -> None:
    """Start a scan, SIGKILL it once its checkpoint counts `fraction` of the probes sent."""
    proc = subprocess.Popen(scanner_argv(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                doc = orjson.loads(ckpt.read_bytes())
                if doc["counts"]["probes_sent"] >= fraction * planned:
                    break
            except (OSError, orjson.JSONDecodeError, KeyError):
                pass
            time.sleep(0.05)
        assert proc.poll() is None, "the scan ended before it could be killed"
        time.sleep(0.3)  # between two checkpoints: some probes are sent after the last one
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def _scan(blocklist: str, *args: str) -> None:
    """A lab scan to its end (5K pps unless args say otherwise, cooldown 1 s), which must succeed."""
    argv = scanner_argv("--blocklist", blocklist, "--rate", "5K", "--cooldown", "1", "-q", *args)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def _syns(path: Path) -> list[tuple[str, int]]:
    return [(dst, dport) for _src, dst, _sp, dport, flags, _ttl, _n in pcap_tcp(path) if flags == 0x02]


def test_kill_9_then_resume_equals_the_ground_truth(lab_up, empty_blocklist: str, tmp_path: Path) -> None:
    cidrs = ("198.18.0.0/21", "198.18.8.0/22")  # 3072 addresses: open, RST and silent blocks
    ports = [22, 80, 443]
    planned = 3072 * len(ports)
    out, meta, ckpt = tmp_path / "out.jsonl", tmp_path / "out.json", tmp_path / "scan.ckpt"
    args = [
        *("--blocklist", empty_blocklist, "--rate", str(RATE), "--cooldown", str(COOLDOWN), "--seed", "15"),
        *("-q", "-o", str(out), "--metadata", str(meta)),
        *("scan", *cidrs, "-p", ",".join(map(str, ports)), "--checkpoint", str(ckpt)),
    ]
    with Capture(tmp_path / "part1.pcap", "tcp[tcpflags] == tcp-syn") as cap:
        _killed_midway(args, ckpt, 0.4, planned)
        time.sleep(0.5)
    cap.stop()
    part1 = _syns(tmp_path / "part1.pcap")
    doc = orjson.loads(ckpt.read_bytes())
    assert not doc["finished"] and doc["reason"] == "running"
    durable, at_ckpt = doc["position"]["probes"], doc["counts"]["probes_sent"]
    assert 0 < durable <= at_ckpt <= len(part1) < planned
    # Sent after the last checkpoint: at most what a second at the rate sends (one every 0.5 s).
    assert len(part1) - at_ckpt <= RATE * 1.0
    # The durable position lags the sending by the cooldown (the time replies may take), not more.
    assert at_ckpt - durable <= RATE * (doc["lag_s"] + 1.0)
    with open(out, "ab") as fh:
        fh.write(b'{"saddr":"198.18.')  # a line a crash left half-written

    with Capture(tmp_path / "part2.pcap", "tcp[tcpflags] == tcp-syn") as cap:
        r = subprocess.run(scanner_argv("resume", str(ckpt)), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    part2 = _syns(tmp_path / "part2.pcap")
    # Exactly the probes from the durable position on were sent again, nothing before it.
    assert len(part2) == planned - durable
    assert len(set(part1) | set(part2)) == planned
    resent = len(part1) + len(part2) - planned
    assert resent == len(part1) - durable <= RATE * (doc["lag_s"] + 2.0)

    records = read_records(out)  # every line whole: the cut one is gone
    keys = _keys(records)
    assert len(keys) == len(set(keys)), "a record written twice"
    assert set(keys) == _truth(cidrs, ports)
    m = orjson.loads(meta.read_bytes())
    assert m["reason"] == "completed" and m["records_written"] == len(records)
    assert m["packets_sent"]["probes"] == planned
    assert sum(m["responses"].values()) == len(records)
    assert m["hits"] == sum(1 for k in keys if k[2] == "synack")
    assert m["resume"]["parts"] == 2 and m["resume"]["probes_resent_at_least"] == at_ckpt - durable
    assert m["checkpoint"]["error"] is None
    final = orjson.loads(ckpt.read_bytes())
    assert final["finished"] and final["reason"] == "completed"
    r = subprocess.run(scanner_argv("resume", str(ckpt)), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "is finished" in r.stderr


def test_resume_on_fewer_cpus_sends_with_the_threads_it_has(
    lab_up, empty_blocklist: str, tmp_path: Path
) -> None:
    # --tx-threads is this machine's business: a scan started with two sending threads resumes
    # where one CPU is allowed (taskset), with one, instead of failing after it set everything up.
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU allowed: --tx-threads 2 is refused")
    cidrs, ports = ("198.18.0.0/21",), [80]
    planned = 2048
    out, meta, ckpt = tmp_path / "out.jsonl", tmp_path / "out.json", tmp_path / "scan.ckpt"
    args = [
        *("--blocklist", empty_blocklist, "--rate", str(RATE), "--cooldown", str(COOLDOWN), "--seed", "16"),
        *("--tx-threads", "2", "-q", "-o", str(out), "--metadata", str(meta)),
        *("scan", *cidrs, "-p", "80", "--checkpoint", str(ckpt)),
    ]
    _killed_midway(args, ckpt, 0.3, planned)
    one_cpu = ["taskset", "-c", str(min(os.sched_getaffinity(0)))]
    r = subprocess.run(
        [*one_cpu, *scanner_argv("resume", str(ckpt))], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    m = orjson.loads(meta.read_bytes())
    assert m["reason"] == "completed" and m["options"]["tx_threads"] == 1
    assert {(k[0], k[1]) for k in _keys(read_records(out)) if k[2] == "synack"} == {
        (a, p) for a, p, c in _truth(cidrs, ports) if c == "synack"
    }


def test_resume_with_retransmissions_and_banners(lab_up, empty_blocklist: str, tmp_path: Path) -> None:
    cidrs = ("198.18.0.0/23", "198.18.2.0/24")  # open, RST, silent
    out, meta, ckpt = tmp_path / "out.jsonl", tmp_path / "out.json", tmp_path / "scan.ckpt"
    args = [
        *("--blocklist", empty_blocklist, "--rate", "300", "--cooldown", "2", "--seed", "16"),
        *("-q", "-o", str(out), "--metadata", str(meta)),
        *("scan", *cidrs, "-p", "80", "--probe", "http", "--retransmit", "1", "--retransmit-delay", "0.5"),
        *("--checkpoint", str(ckpt)),
    ]
    _killed_midway(args, ckpt, 0.5, 768 * 2)
    doc = orjson.loads(ckpt.read_bytes())
    r = subprocess.run(scanner_argv("resume", str(ckpt)), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    records = read_records(out)
    keys = _keys(records)
    assert len(keys) == len(set(keys)), "a record written twice"
    truth = _truth(cidrs, [80])
    want = truth | {(a, p, "banner") for a, p, c in truth if c == "synack"}  # a SYN-ACK, then the banner
    assert set(keys) == want
    assert all(r["http"]["status_code"] == 200 for r in records if r["classification"] == "banner")
    m = orjson.loads(meta.read_bytes())
    assert m["records_written"] == len(records) and m["resume"]["parts"] == 2
    assert m["packets_sent"]["probes"] == 768 * 2
    assert doc["position"]["queue"] or doc["position"]["item"], "the checkpoint held retransmissions"


def test_report_blocks_against_the_labs_blocks(lab_up, empty_blocklist: str, tmp_path: Path) -> None:
    # Whole blocks (open, RST, silent, no-echo), half a block, and router-unreachable addresses.
    cidrs = ("198.18.0.0/22", "198.18.5.0/25", "198.19.0.0/24")
    out = tmp_path / "live.jsonl"
    _scan(
        empty_blocklist,
        "--rate",
        "20K",
        "-o",
        str(out),
        "scan",
        *cidrs,
        "-p",
        "80",
        "--probe",
        "synscan,icmp-echo",
    )
    r = subprocess.run([ZB, "report", str(out), "--blocks", "--json", "-"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rep = orjson.loads(r.stdout)
    want: dict[str, dict[str, int]] = {"synscan/80": {}, "icmp-echo": {}}
    for a in _addrs(*cidrs):
        block = str(ipaddress.ip_network(f"{a}/24", strict=False))
        from_target = lab.expected_icmp_responder(a) != lab.TARGET_GW
        if lab.expected(a, 80, "tcp") in ("synack", "rst") and from_target:
            want["synscan/80"][block] = want["synscan/80"].get(block, 0) + 1
        if lab.expected(a, None, "icmp") == "echoreply":
            want["icmp-echo"][block] = want["icmp-echo"].get(block, 0) + 1
    assert rep["keys"]["synscan/80"]["per_block"] == want["synscan/80"]
    assert rep["keys"]["icmp-echo"]["per_block"] == want["icmp-echo"]
    # 198.18.0, .1, .3 full; .5 half; .2 silent, 198.19.0 only router errors: not alive.
    assert want["synscan/80"] == {
        "198.18.0.0/24": 256,
        "198.18.1.0/24": 256,
        "198.18.3.0/24": 256,
        "198.18.5.0/24": 128,
    }
    syn = rep["keys"]["synscan/80"]
    assert syn["full_blocks"] == 3 and syn["histogram"][127] == 1 and syn["blocks"] == 4
    text = subprocess.run(
        [ZB, "report", str(out), "--blocks", "--png", str(tmp_path / "b.png")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert text.returncode == 0 and "198.18" not in text.stdout and "full /24s" in text.stdout
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


def _frame_record(buf: bytes) -> dict[str, Any]:
    """What a record says about this frame, read from the frame itself."""
    import base64
    import socket

    import dpkt

    eth = dpkt.ethernet.Ethernet(buf)
    ip = eth.data
    src = socket.inet_ntoa(ip.src)
    out: dict[str, Any] = {"ttl": ip.ttl, "ipid": ip.id, "daddr": socket.inet_ntoa(ip.dst)}
    l4 = ip.data
    if isinstance(l4, dpkt.tcp.TCP):
        flags = l4.flags
        if flags & dpkt.tcp.TH_RST:
            cls = "rst"
        elif flags & dpkt.tcp.TH_SYN:
            cls = "synack" if l4.win else "zerowin"
        else:
            cls = "banner"
        out.update(saddr=src, sport=l4.sport, dport=l4.dport, classification=cls, window=l4.win)
        out.update(seqnum=l4.seq, acknum=l4.ack, tcp_flags=flags & 0x3F)
        if cls == "banner":
            out["data"] = base64.b64encode(bytes(l4.data)[:1024]).decode()
    elif isinstance(l4, dpkt.udp.UDP):
        out.update(saddr=src, sport=l4.sport, dport=l4.dport, classification="udp")
        out["data"] = base64.b64encode(bytes(l4.data)).decode()
    elif l4.type == dpkt.icmp.ICMP_ECHOREPLY:
        out.update(saddr=src, sport=None, classification="echoreply")
    else:
        quoted = dpkt.ip.IP(bytes(l4.data)[4:])  # the quoted datagram (after the unused word)
        q4 = bytes(quoted.data)
        out.update(saddr=socket.inet_ntoa(quoted.dst), icmp_responder=src, classification="icmp-unreach")
        out.update(icmp_type=l4.type, icmp_code=l4.code)
        out["sport"] = int.from_bytes(q4[2:4], "big") if quoted.p in (6, 17) else None
    return out


def test_pcap_frames_equal_the_records(lab_up, empty_blocklist: str, tmp_path: Path) -> None:
    import datetime as dt

    import dpkt

    out, meta, pcap = tmp_path / "out.jsonl", tmp_path / "out.json", tmp_path / "replies.pcap"
    cidrs = ("198.18.0.0/25", "198.18.1.0/26", "198.19.0.0/27")  # open, RST, router-unreachable
    _scan(
        empty_blocklist,
        *("-o", str(out), "--metadata", str(meta)),
        *("scan", *cidrs, "-p", "80", "--probe", "http,icmp-echo,udp-dns", "--pcap", str(pcap)),
        "--kernel-replies",  # asked for: --pcap turns them off and says so
    )
    records = read_records(out)
    by_key = {(x["saddr"], x["sport"], x["classification"]): x for x in records}
    assert len(by_key) == len(records)
    with open(pcap, "rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB and reader.snaplen == 1514
        frames = list(reader)
    assert len(frames) == len(records)
    seen = set()
    for ts, buf in frames:
        got = _frame_record(buf)
        key = (got["saddr"], got["sport"], got["classification"])
        rec = by_key[key]
        seen.add(key)
        for field, value in got.items():
            assert rec[field] == value, (key, field)
        when = dt.datetime.fromisoformat(rec["timestamp"].replace("Z", "+00:00")).timestamp()
        assert abs(ts - when) < 0.002  # one clock: the program's, at the reply
    assert len(seen) == len(records)
    assert {x["classification"] for x in records} == {
        "synack",
        "banner",
        "rst",
        "udp",
        "echoreply",
        "icmp-unreach",
    }
    m = orjson.loads(meta.read_bytes())
    assert m["pcap"] == {"path": str(pcap), "snaplen": 1514, "frames": len(records), "lost": 0, "error": None}
    # In-kernel replies give way to user space's with --pcap, and the scan says so.
    kr = m["kernel_replies"]
    assert kr["mode"] == "user space" and kr["note"].startswith("--pcap: user space answered")
    assert m["packets_sent"]["replies_in_kernel"] == 0
    # tcpdump reads it, every frame.
    td = subprocess.run(["tcpdump", "-nr", str(pcap)], capture_output=True, text=True, timeout=60)
    assert td.returncode == 0 and len(td.stdout.splitlines()) == len(records)
    assert "link-type EN10MB (Ethernet)" in td.stderr


def test_pcap_snaplen_cuts_frames(lab_up, empty_blocklist: str, tmp_path: Path) -> None:
    import dpkt

    pcap = tmp_path / "cut.pcap"
    _scan(
        empty_blocklist,
        *("-o", str(tmp_path / "o"), "scan", "198.18.0.0/28", "-p", "80", "--probe", "http"),
        *("--pcap", str(pcap), "--pcap-snaplen", "80"),
    )
    with open(pcap, "rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        assert reader.snaplen == 80
        lens = [(len(buf), hdr_len) for _ts, buf, hdr_len in _with_lengths(pcap)]
    assert lens and all(cap <= 80 for cap, _ in lens)
    assert any(orig > 80 == cap for cap, orig in lens), "the banners (longer) were cut at 80 bytes"
    td = subprocess.run(["tcpdump", "-nr", str(pcap)], capture_output=True, text=True, timeout=60)
    assert td.returncode == 0 and len(td.stdout.splitlines()) == len(lens)


def _with_lengths(path: Path) -> list[tuple[float, bytes, int]]:
    """(ts, captured bytes, length on the wire) per pcap record, read by hand (dpkt hides the length)."""
    import struct

    data = path.read_bytes()
    out, off = [], 24
    while off < len(data):
        sec, usec, cap, orig = struct.unpack_from("<IIII", data, off)
        out.append((sec + usec / 1e6, data[off + 16 : off + 16 + cap], orig))
        off += 16 + cap
    return out
