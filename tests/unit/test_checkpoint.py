"""--checkpoint / resume without the network: positions, the file, the output's last line, duplicates."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import orjson
import pytest

from tests.conftest import ZB
from zbanner_xdp import __version__, checkpoint
from zbanner_xdp.checkpoint import CheckpointError, DupFilter, positioned_batches, span_pairs
from zbanner_xdp.output import cut_partial_line
from zbanner_xdp.targets import TargetSpace, iter_batches


@pytest.mark.parametrize(
    ("cidrs", "ports", "shards", "shard", "batch", "max_targets"),
    [
        ([(0xC6120000, 0xC6120400)], [22, 80, 443], 1, 0, 256, None),
        ([(0xC6120000, 0xC6120400)], [80], 4, 3, 100, None),
        ([(10, 20), (1000, 1003), (5000, 9000)], [1, 2], 3, 1, 7, 1500),
        ([(0, 1)], [80], 1, 0, 1, None),
    ],
)
def test_positioned_batches_are_iter_batches_and_resume_anywhere(
    cidrs: list, ports: list, shards: int, shard: int, batch: int, max_targets: int | None
) -> None:
    space = TargetSpace(cidrs, ports)
    want = list(iter_batches(space, 99, shards, shard, batch=batch, max_targets=max_targets))
    got = list(positioned_batches(space, 99, shards, shard, batch, max_targets))
    assert len(got) == len(want)
    for (wa, wp), (ga, gp, span) in zip(want, got, strict=True):
        assert np.array_equal(wa, ga) and np.array_equal(wp, gp)
        # A span gives the same pairs again, from the permutation alone.
        sa, sp = span_pairs(space, 99, shards, span)
        assert np.array_equal(sa, ga) and np.array_equal(sp, gp)
    flat = np.concatenate([a.astype(np.uint64) << 16 | p for a, p, _ in got]) if got else []
    # From any batch's end, the rest is the same.
    for i in range(0, len(got), max(1, len(got) // 5)):
        span = got[i][2]
        rest = list(
            positioned_batches(space, 99, shards, shard, batch, max_targets, (span.k_hi, span.pos + span.n))
        )
        tail = np.concatenate([a.astype(np.uint64) << 16 | p for a, p, _ in rest]) if rest else []
        assert np.array_equal(tail, flat[span.pos + span.n :])


def test_cut_partial_line(tmp_path: Path) -> None:
    p = tmp_path / "out.jsonl"
    p.write_bytes(b'{"a":1}\n{"b":2}\n{"c":')
    fd = os.open(p, os.O_RDWR)
    try:
        assert cut_partial_line(fd) == 16
        assert cut_partial_line(fd) == 16
    finally:
        os.close(fd)
    assert p.read_bytes() == b'{"a":1}\n{"b":2}\n'
    p.write_bytes(b"x" * 200_000)  # no newline at all: nothing whole
    fd = os.open(p, os.O_RDWR)
    try:
        assert cut_partial_line(fd) == 0
    finally:
        os.close(fd)


def _rec(addr: str, cls: str = "synack", **kw: object) -> dict:
    return {
        "saddr": addr,
        "sport": 80,
        "probe": "synscan",
        "classification": cls,
        "tarpit_probe": False,
        **kw,
    }


def test_dup_filter_drops_only_what_was_written() -> None:
    f = DupFilter({checkpoint.record_key(_rec("1.2.3.4")), checkpoint.record_key(_rec("1.2.3.5", "rst"))})
    lines = [_rec("1.2.3.4", success=True), _rec("1.2.3.4", "rst"), _rec("1.2.3.5", "rst"), _rec("9.9.9.9")]
    blob = b"".join(orjson.dumps(r) + b"\n" for r in lines)
    out, n = f(blob, 4)
    assert n == 2 and [orjson.loads(x) for x in out.splitlines()] == [lines[1], lines[3]]
    assert f.dropped.lines == 2 and f.dropped.responses == {"synack": 1, "rst": 1} and f.dropped.hits == 1
    fresh = orjson.dumps(_rec("8.8.8.8")) + b"\n"
    assert f(fresh, 1) == (fresh, 1)


def _doc(**over: object) -> dict:
    snap = checkpoint.Snapshot(0.0, (5, 3), None, [], 3, 0)
    doc = {
        "format": checkpoint.FORMAT,
        "version": __version__,
        "finished": False,
        "reason": "running",
        "seed": 1,
        "key": "00" * 16,
        "options": {"targets": ["198.18.0.0/24"], "ports": "80"},
        "space": {"pairs": 256, "digest": "x"},
        "lag_s": 1.0,
        "batch": 256,
        "position": snap.to_json(),
        "counts": {},
        "output": {"offset": 0, "lines": 0, "dedup_offset": 0},
        "parts": [],
    }
    doc.update(over)
    return doc


def _resume(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ZB, "resume", str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:-40]), "damaged (not JSON)"),
        (
            lambda p: p.write_bytes(p.read_bytes().replace(b'"seed": 1', b'"seed": 2')),
            "checksum does not match",
        ),
        (lambda p: checkpoint.write_atomic(str(p), _doc(version="0.0.1")), "written by zbanner-xdp 0.0.1"),
        (lambda p: checkpoint.write_atomic(str(p), _doc(finished=True, reason="completed")), "is finished"),
        (lambda p: checkpoint.write_atomic(str(p), _doc(position={"cursor": []})), "bad position"),
        (lambda p: checkpoint.write_atomic(str(p), _doc(batch="x")), "no valid 'batch'"),
        (lambda p: p.write_bytes(b'{"format": "other"}'), "not a zbanner-xdp checkpoint"),
        (lambda p: p.unlink(), "cannot read checkpoint"),
    ],
)
def test_refused_checkpoints_are_one_line_exit_2(tmp_path: Path, damage, message: str) -> None:
    p = tmp_path / "scan.ckpt"
    checkpoint.write_atomic(str(p), _doc())
    assert checkpoint.load(str(p))["seed"] == 1  # undamaged: loads
    damage(p)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        checkpoint.load(str(p))
    r = _resume(p)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zbanner-xdp: error: ") and message in lines[0]
    assert "Traceback" not in r.stderr


def test_atomic_write_leaves_no_temporary_and_is_private(tmp_path: Path) -> None:
    p = tmp_path / "scan.ckpt"
    checkpoint.write_atomic(str(p), _doc())
    checkpoint.write_atomic(str(p), _doc(seed=3))
    assert sorted(os.listdir(tmp_path)) == ["scan.ckpt"]
    assert os.stat(p).st_mode & 0o777 == 0o600
    assert checkpoint.load(str(p))["seed"] == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["scan", "198.18.0.1", "-p", "80", "--checkpoint", "{d}/c"], "--checkpoint needs -o FILE"),
        (["-o", "{d}/o", "-f", "saddr,sport", "scan", "198.18.0.1", "-p", "80", "--checkpoint", "{d}/c"],
         "needs probe, classification among --output-fields"),
        (["-o", "{d}/o", "scan", "198.18.0.1", "-p", "80", "--checkpoint", "{d}/o"], "name the same file"),
        (["-o", "{d}/o", "scan", "198.18.0.1", "-p", "80", "--checkpoint", "/nonexistent/c"],
         "no such directory"),
    ],
)  # fmt: skip
def test_bad_checkpoint_options(tmp_path: Path, args: list[str], message: str) -> None:
    empty = tmp_path / "empty"
    empty.write_text("")
    argv = ["--blocklist", str(empty), "--iface", "lo", *(a.format(d=tmp_path) for a in args)]
    r = subprocess.run([ZB, *argv], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert not (tmp_path / "o").exists()
