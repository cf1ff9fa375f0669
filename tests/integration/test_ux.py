"""A user's first hour (issue 14) in the lab: losses said, outputs as asked, the lab's own commands."""

from __future__ import annotations

import csv
import gzip
import io
import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import ZB
from tests.integration.conftest import read_records, run_scanner

pytestmark = pytest.mark.privileged


def test_handshakes_without_an_answer_are_counted_and_warned_about(
    lab_up, tmp_path: Path, empty_blocklist: str
) -> None:
    # One OpenSSH (a fork per connection, MaxStartups) answering 256 addresses at full speed accepts
    # handshakes it then drops (MEASURED.md: ~133 banners): the old summary said "nothing lost".
    # (User space answering: its replies lag the SYN-ACKs, the server's queue fills with handshakes
    # that complete; the program's instant answers make it drop SYNs instead, which is no handshake.)
    out, meta = tmp_path / "ssh.jsonl", tmp_path / "ssh.json"
    r = run_scanner(
        "--blocklist", empty_blocklist, "--rate", "0", "--cooldown", "3",
        "-o", str(out), "--metadata", str(meta), "scan", "198.18.0.0/24", "-p", "22", "--probe", "ssh",
        "--no-kernel-replies",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    by_class = Counter(rec["classification"] for rec in read_records(out))
    counts = json.loads(meta.read_text())["handshakes"]["ssh"]
    assert counts["completed"] == by_class["synack"] > 0
    assert counts["answered"] == by_class["banner"]
    assert counts["unanswered"] == by_class["synack"] - by_class["banner"]
    assert counts["unanswered"] >= max(5, 0.05 * counts["completed"]), counts  # the lab's sshd, overrun
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("zbanner-xdp: warning: ")]
    assert len(warnings) == 1, r.stderr
    assert f"ssh {counts['unanswered']} of {counts['completed']}" in warnings[0]
    assert "--rate" in warnings[0] and "--retransmit" in warnings[0]
    summary = r.stderr.strip().splitlines()[-1]
    assert f"handshakes without an answer: ssh {counts['unanswered']} of {counts['completed']}" in summary


def test_compressed_csv_with_a_parsed_field_and_metadata_on_stdout(
    lab_up, tmp_path: Path, empty_blocklist: str
) -> None:
    out = tmp_path / "http.csv.gz"
    r = run_scanner(
        "--blocklist", empty_blocklist, "--rate", "5K", "--cooldown", "2", "-q",
        "-o", str(out), "--metadata", "-", "-f", "saddr,sport,classification,http.server,http.status_code",
        "scan", "198.18.0.0/28", "-p", "80", "--probe", "http",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    meta = json.loads(r.stdout)  # the summary, alone on stdout
    assert not Path("-").exists()
    rows = list(csv.reader(io.StringIO(gzip.decompress(out.read_bytes()).decode())))
    assert rows[0] == ["saddr", "sport", "classification", "http.server", "http.status_code"]
    banners = [row for row in rows[1:] if row[2] == "banner"]
    assert len(banners) == 16 and meta["records_written"] == len(rows) - 1
    assert all(row[3].startswith("nginx") and row[4] == "200" for row in banners), banners[:2]
    assert all(row[3] == row[4] == "" for row in rows[1:] if row[2] == "synack")


def test_zstd_json_lines_and_a_parsed_field(lab_up, tmp_path: Path, empty_blocklist: str) -> None:
    import zstandard

    out = tmp_path / "ssh.jsonl.zst"
    r = run_scanner(
        "--blocklist", empty_blocklist, "--rate", "500", "--cooldown", "2", "-q",
        "-o", str(out), "-f", "saddr,ssh.software", "scan", "198.18.0.0/30", "-p", "22", "--probe", "ssh",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(out.read_bytes()), read_across_frames=True)
    recs = [json.loads(line) for line in reader.read().splitlines()]
    software = [rec["ssh.software"] for rec in recs if rec["ssh.software"]]
    assert len(software) == 4 and all(s.startswith("OpenSSH_") for s in software)
    assert all(list(rec) == ["saddr", "ssh.software"] for rec in recs)


def test_a_liveness_scan_without_ports(lab_up, tmp_path: Path, empty_blocklist: str) -> None:
    # No -p: each UDP probe goes to its own port (DNS 53, NTP 123), the echo to the address.
    out, meta = tmp_path / "live.jsonl", tmp_path / "live.json"
    r = run_scanner(
        "--blocklist", empty_blocklist, "--rate", "5K", "--cooldown", "2", "-q", "-o", str(out),
        "--metadata", str(meta), "scan", "198.18.0.0/28", "--probe", "udp-dns,udp-ntp,icmp-echo",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    got = Counter((rec["probe"], rec["classification"], rec["sport"]) for rec in read_records(out))
    want = {("udp-dns", "udp", 53): 16, ("udp-ntp", "udp", 123): 16, ("icmp-echo", "echoreply", None): 16}
    assert got == want
    # The report of it, with the scan's summary: every count a share of the 16 targets scanned.
    rep = subprocess.run(
        [ZB, "report", str(out), "--metadata", str(meta)], capture_output=True, text=True, timeout=120
    )
    assert rep.returncode == 0, rep.stderr
    assert "16 addresses x 1 ports, 16 (address, port) pairs in this shard: 16 targets scanned" in rep.stdout
    rows = {ln.split()[0]: ln.split()[1:4] for ln in rep.stdout.splitlines() if "(100.0%)" in ln}
    assert rows == {k: ["16", "16", "(100.0%)"] for k in ("icmp-echo", "udp-dns/53", "udp-ntp/123")}
