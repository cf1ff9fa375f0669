"""A user's first hour (issue 14) in the lab: losses said, outputs as asked, the lab's own commands."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.conftest import read_records, run_scanner

pytestmark = pytest.mark.privileged


def test_handshakes_without_an_answer_are_counted_and_warned_about(
    lab_up, tmp_path: Path, empty_blocklist: str
) -> None:
    # One OpenSSH (a fork per connection, MaxStartups) answering 256 addresses at full speed accepts
    # handshakes it then drops (MEASURED.md: ~133 banners): the old summary said "nothing lost".
    out, meta = tmp_path / "ssh.jsonl", tmp_path / "ssh.json"
    r = run_scanner(
        "--blocklist", empty_blocklist, "--rate", "0", "--cooldown", "3",
        "-o", str(out), "--metadata", str(meta), "scan", "198.18.0.0/24", "-p", "22", "--probe", "ssh",
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
