"""A real SYN scan of the lab: exact ground truth, no kernel RSTs, nothing left attached."""

from __future__ import annotations

import ipaddress
import subprocess
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.integration.conftest import (
    REPLY_ARGS,
    Capture,
    pcap_tcp,
    read_records,
    run_scanner,
    scanner_argv,
    signal_scanner,
    xdp_attached,
)
from zbanner_xdp import lab

pytestmark = pytest.mark.privileged

TTL = 99  # the kernel would use 64: any RST with another TTL was not ours
NETS = ["198.18.0.0/24", "198.18.1.0/24", "198.18.2.0/24", "198.19.2.0/24"]  # open, RST, silent, blackhole
PORTS = (80, 81)
FIELDS = {
    "saddr",
    "sport",
    "daddr",
    "dport",
    "classification",
    "success",
    "repeat",
    "timestamp",
    "ttl",
    "window",
    "ipid",
    "probe",
}


def test_synscan_matches_ground_truth(lab_up, tmp_path: Path, empty_blocklist: str, replies: str) -> None:
    out, meta, pcap = tmp_path / "out.jsonl", tmp_path / "meta.json", tmp_path / "scan.pcap"
    with Capture(pcap):
        r = run_scanner(
            "--blocklist",
            empty_blocklist,
            "--rate",
            "20K",
            "--ttl",
            str(TTL),
            "--cooldown",
            "2",
            "--seed",
            "42",
            "-o",
            str(out),
            "--metadata",
            str(meta),
            "scan",
            *NETS,
            "-p",
            "80,81",
            *REPLY_ARGS[replies],
        )
    assert r.returncode == 0, r.stderr
    recs = read_records(out)
    assert all(rec.keys() >= FIELDS for rec in recs)
    got = {(rec["saddr"], rec["sport"]): rec["classification"] for rec in recs}
    assert len(got) == len(recs), "duplicate records"
    want = {}
    for net in NETS:
        for a in ipaddress.ip_network(net):
            for p in PORTS:
                e = lab.expected(str(a), p)
                if e:
                    want[(str(a), p)] = e
    assert got == want
    assert Counter(got.values()) == {"synack": 256, "rst": 256 + 512}  # closed 81 on the open /24
    assert all(rec["success"] is (rec["classification"] == "synack") for rec in recs)
    assert all(rec["daddr"] == lab.SCAN_IP and 32768 <= rec["dport"] <= 61000 for rec in recs)

    m = orjson.loads(meta.read_bytes())
    assert m["reason"] == "completed"
    assert m["packets_sent"]["probes"] == 4 * 256 * 2
    assert m["packets_sent"]["replies"] == 256  # one RST per SYN-ACK
    assert m["responses"] == {"synack": 256, "rst": 768}
    assert m["drops"]["ringbuf_full"] == 0

    # Every RST leaving the scanner namespace is ours (TTL 99): the kernel never answered a SYN-ACK.
    frames = pcap_tcp(pcap)
    from_scanner = [f for f in frames if f[0] == lab.SCAN_IP]
    rsts = [f for f in from_scanner if f[4] & 0x04]
    assert len(rsts) == 256
    assert {f[5] for f in from_scanner} == {TTL}
    syns = Counter((f[1], f[3]) for f in from_scanner if f[4] == 0x02)
    assert len(syns) == 4 * 256 * 2 and set(syns.values()) == {1}  # each pair probed exactly once
    assert not xdp_attached()


def test_shards_partition_the_scan(lab_up, tmp_path: Path, empty_blocklist: str) -> None:
    seen: list[tuple[str, int]] = []
    for shard in range(3):
        out = tmp_path / f"s{shard}.jsonl"
        r = run_scanner(
            "--blocklist",
            empty_blocklist,
            "--rate",
            "20K",
            "--cooldown",
            "1",
            "--seed",
            "7",
            "--shards",
            "3",
            "--shard",
            str(shard),
            "-q",
            "-o",
            str(out),
            "scan",
            "198.18.0.0/25",
            "198.18.1.0/25",
            "-p",
            "80",
        )
        assert r.returncode == 0, r.stderr
        seen += [(rec["saddr"], rec["sport"]) for rec in read_records(out)]
    assert len(seen) == len(set(seen)) == 256


def test_second_scanner_on_the_interface_is_refused(lab_up, tmp_path: Path, empty_blocklist: str) -> None:
    first = subprocess.Popen(
        scanner_argv(
            "--blocklist",
            empty_blocklist,
            "--rate",
            "10",
            "--cooldown",
            "0",
            "-q",
            "-o",
            str(tmp_path / "a.jsonl"),
            "scan",
            "198.18.0.0/24",
            "-p",
            "80",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not xdp_attached() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert xdp_attached()
        r = run_scanner("--blocklist", empty_blocklist, "-q", "scan", "198.18.0.0/24", "-p", "80", timeout=60)
        assert r.returncode == 2
        assert r.stderr.strip().splitlines() == [
            f"zbanner-xdp: error: interface '{lab.SCAN_IF}' already has an XDP program "
            "(another scanner running?)"
        ]
    finally:
        first.kill()
        first.wait()
    # Killed with SIGKILL, the scanner still leaves nothing attached: the bpf_link died with it.
    deadline = time.monotonic() + 10
    while xdp_attached() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not xdp_attached()


def test_sigterm_flushes_results_and_writes_summary(lab_up, tmp_path: Path, empty_blocklist: str) -> None:
    out, meta = tmp_path / "out.jsonl", tmp_path / "meta.json"
    rc, err = signal_scanner(
        (
            *("--blocklist", empty_blocklist, "--rate", "200", "--cooldown", "5"),
            *("-o", str(out), "--metadata", str(meta), "scan", "198.18.0.0/24", "-p", "80"),
        ),
        ready=lambda: out.exists() and out.stat().st_size > 0,  # results are arriving
        settle=0.5,
    )
    assert rc == 143, err  # SIGTERM: 128 + 15, as a shell reports it (README: Exit status)
    assert "Traceback" not in err
    recs = read_records(out)  # every line complete, valid JSON
    m = orjson.loads(meta.read_bytes())
    assert m["reason"] == "terminated"
    assert 0 < len(recs) == m["records_written"] < 256
    assert m["packets_sent"]["probes"] < 256
    assert not xdp_attached()


def test_output_fields_choose_and_order_the_record(lab_up, tmp_path: Path, empty_blocklist: str) -> None:
    out = tmp_path / "o.jsonl"
    r = run_scanner(
        *("--blocklist", empty_blocklist, "--cooldown", "1", "-q", "-o", str(out)),
        *("scan", "198.18.0.0/28", "-p", "80,81", "--probe", "http", "-f", "classification,saddr,sport,http"),
    )
    assert r.returncode == 0, r.stderr
    recs = read_records(out)
    assert [list(x) for x in recs] == [["classification", "saddr", "sport", "http"]] * len(recs)
    by_class = Counter(x["classification"] for x in recs)
    assert by_class == {"synack": 16, "banner": 16, "rst": 16}
    assert all(x["http"]["status_code"] == 200 for x in recs if x["classification"] == "banner")


def test_max_targets_and_runtime(lab_up, tmp_path: Path, empty_blocklist: str) -> None:
    meta = tmp_path / "m.json"
    r = run_scanner(
        "--blocklist",
        empty_blocklist,
        "--max-targets",
        "10",
        "--cooldown",
        "1",
        "-q",
        "-o",
        str(tmp_path / "o.jsonl"),
        "--metadata",
        str(meta),
        "scan",
        "198.18.0.0/24",
        "-p",
        "80",
    )
    assert r.returncode == 0, r.stderr
    m = orjson.loads(meta.read_bytes())
    assert m["packets_sent"]["probes"] == 10 and m["responses"] == {"synack": 10}
    r = run_scanner(
        "--blocklist",
        empty_blocklist,
        "--rate",
        "100",
        "--max-runtime",
        "1",
        "--cooldown",
        "0.5",
        "-q",
        "-o",
        str(tmp_path / "o2.jsonl"),
        "--metadata",
        str(meta),
        "scan",
        "198.18.0.0/24",
        "-p",
        "80",
    )
    assert r.returncode == 0, r.stderr
    m = orjson.loads(meta.read_bytes())
    assert m["reason"] == "max-runtime"
    assert 50 <= m["packets_sent"]["probes"] <= 150
