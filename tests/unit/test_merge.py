"""`zbanner-xdp merge`: shards checked (one scan, all present, completed), merged, duplicates dropped."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import orjson
import pytest

from tests.conftest import ZB
from zbanner_xdp.merge import MergeError, find_shards, merge

SHARDS = 4


def _meta(shard: int, records: int, **over: object) -> dict:
    options = {
        "targets": ["198.18.0.0/24"],
        "ports": "80",
        "probe": "synscan",
        "seed": 42,
        "shards": SHARDS,
        "shard": shard,
        "output": f"/data/shard-{shard}.jsonl",
        "metadata": f"/data/shard-{shard}.json",
        "iface": f"eth{shard}",
        "rate": 1000,
        "kernel_replies": None,  # the default: in-kernel replies where the scan allows them
    }
    meta = {
        "version": "0.1.0",
        "reason": "completed",
        "options": options,
        "seed": 42,
        "probe": "synscan",
        "targets": {"specs": ["198.18.0.0/24"], "ports": "80", "pairs": 256, "this_shard": 64},
        "packets_sent": {"probes": 64, "replies": 10, "total": 74},
        "responses": {"synack": records},
        "hits": records,
        "drops": {"ringbuf_full": 0, "output_lost": 0},
        "records_written": records,
        "start": f"2026-01-01T00:00:0{shard}.000Z",
        "end": f"2026-01-01T00:01:0{shard}.000Z",
    }
    for k, v in over.items():
        if k == "seed":
            options[k] = meta[k] = v
        elif k == "meta_targets":
            meta["targets"] = v
        elif k in options:
            options[k] = v
        else:
            meta[k] = v
    return meta


def _rec(addr: str, cls: str = "synack") -> dict:
    return {"saddr": addr, "sport": 80, "probe": "synscan", "classification": cls, "tarpit_probe": False}


def _write(d: Path, shard: int, records: list[dict], **over: object) -> None:
    (d / f"shard-{shard}.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    (d / f"shard-{shard}.json").write_bytes(orjson.dumps(_meta(shard, len(records), **over)))


def _four(d: Path) -> list[list[dict]]:
    recs = [[_rec(f"198.18.0.{s * 64 + i}") for i in range(10)] for s in range(SHARDS)]
    for s in range(SHARDS):
        _write(d, s, recs[s])
    return recs


def test_accepts_four_and_writes_every_record(tmp_path: Path) -> None:
    d = tmp_path / "shards"
    d.mkdir()
    recs = _four(d)
    doc = merge(str(d), str(tmp_path / "all.jsonl"), str(tmp_path / "all.json"))
    lines = (tmp_path / "all.jsonl").read_bytes().splitlines()
    assert [orjson.loads(x) for x in lines] == [r for shard in recs for r in shard]
    assert doc["records_written"] == 40
    assert doc["merged"]["shards"] == SHARDS
    assert doc["hits"] == 40 and doc["responses"] == {"synack": 40}
    assert doc["packets_sent"] == {"probes": 256, "replies": 40, "total": 296}
    assert "shard" not in doc["options"] and doc["options"]["shards"] == SHARDS
    assert orjson.loads((tmp_path / "all.json").read_bytes()) == doc


def test_refuses_three_of_four_naming_the_missing_one(tmp_path: Path) -> None:
    d = tmp_path / "shards"
    d.mkdir()
    _four(d)
    (d / "shard-2.jsonl").unlink()
    (d / "shard-2.json").unlink()
    r = subprocess.run(
        [ZB, "merge", str(d), "-o", str(tmp_path / "all.jsonl")], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert "missing shard 2 of 4" in lines[0]
    assert not (tmp_path / "all.jsonl").exists()
    r = subprocess.run(
        [ZB, "merge", str(d), "-o", str(tmp_path / "all.jsonl")], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2


def test_cli_accepts_four(tmp_path: Path) -> None:
    d = tmp_path / "shards"
    d.mkdir()
    _four(d)
    r = subprocess.run(
        [ZB, "merge", str(d), "-o", str(tmp_path / "all.jsonl"), "--metadata", str(tmp_path / "m.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "merged 4 shards: 40 records" in r.stderr
    assert len((tmp_path / "all.jsonl").read_bytes().splitlines()) == 40


def test_incomplete_shards_are_named(tmp_path: Path) -> None:
    d = tmp_path / "shards"
    d.mkdir()
    recs = _four(d)
    _write(d, 1, recs[1], reason="interrupted")
    # A copy cut short: fewer lines than its metadata says it wrote.
    (d / "shard-3.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs[3][:4]))
    with pytest.raises(MergeError) as exc:
        merge(str(d), str(tmp_path / "all.jsonl"))
    msg = str(exc.value)
    assert "incomplete shard 1, 3" in msg and "1: interrupted" in msg
    assert "3: 4 lines, metadata says 10" in msg


@pytest.mark.parametrize(
    ("over", "what"),
    [
        ({"seed": 7}, "seed"),
        ({"ports": "443"}, "options (ports)"),
        ({"shards": 5}, "options (shards)"),
        ({"meta_targets": {"specs": ["198.18.0.0/24"], "ports": "80", "pairs": 9}}, "targets (pairs)"),
    ],
)
def test_refuses_shards_of_another_scan(tmp_path: Path, over: dict, what: str) -> None:
    d = tmp_path / "shards"
    d.mkdir()
    recs = _four(d)
    _write(d, 3, recs[3], **over)
    pattern = r"shards 0 \(shard-0\) and 3 \(shard-3\) differ in " + re.escape(what)
    with pytest.raises(MergeError, match=pattern):
        merge(str(d), str(tmp_path / "all.jsonl"))


def test_machine_local_options_may_differ(tmp_path: Path) -> None:
    d = tmp_path / "shards"
    d.mkdir()
    recs = _four(d)
    _write(d, 2, recs[2], iface="ens5", quiet=True)
    assert merge(str(d), str(tmp_path / "all.jsonl"))["records_written"] == 40


def test_cross_shard_duplicates_dropped_repeats_within_a_shard_kept(tmp_path: Path) -> None:
    d = tmp_path / "shards"
    d.mkdir()
    recs = _four(d)
    dup = recs[0][3]
    _write(d, 2, [*recs[2], dup, {**dup, "classification": "rst"}])
    _write(d, 0, [*recs[0], dup])  # twice in shard 0 (e.g. --output-repeats): both stay
    doc = merge(str(d), str(tmp_path / "all.jsonl"))
    out = [orjson.loads(x) for x in (tmp_path / "all.jsonl").read_bytes().splitlines()]
    assert out.count(dup) == 2
    assert {**dup, "classification": "rst"} in out
    assert doc["merged"]["duplicates_dropped"] == 1
    assert doc["merged"]["duplicates_by_shard"] == {"2": 1}
    assert doc["records_written"] == len(out) == 42


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: (d / "x.jsonl").write_text(""), "come in pairs"),
        (lambda d: None, "no shard results"),
        (lambda d: ((d / "a.jsonl").write_text(""), (d / "a.json").write_text("{")), "invalid JSON"),
        (lambda d: ((d / "a.jsonl").write_text(""), (d / "a.json").write_text("[]")), "no options"),
    ],
)
def test_bad_directories(tmp_path: Path, setup, message: str) -> None:
    d = tmp_path / "shards"
    d.mkdir()
    setup(d)
    with pytest.raises(MergeError, match=message):
        merge(str(d), str(tmp_path / "all.jsonl"))


def test_output_inside_the_directory_is_not_a_shard(tmp_path: Path) -> None:
    d = tmp_path / "shards"
    d.mkdir()
    _four(d)
    merge(str(d), str(d / "all.jsonl"), str(d / "all.json"))
    # A second merge into the same files ignores them.
    assert len(find_shards(str(d), (str(d / "all.jsonl"), str(d / "all.json")))) == SHARDS
    assert merge(str(d), str(d / "all.jsonl"), str(d / "all.json"))["records_written"] == 40


def test_shards_that_differ_only_in_who_answered_merge(tmp_path: Path) -> None:
    # In-kernel replies became the default (issue 17): a shard run before (kernel_replies False, then the
    # default) or with --no-kernel-replies gives the same results; merge must not refuse it.
    d = tmp_path / "shards"
    d.mkdir()
    recs = _four(d)
    _write(d, 1, recs[1], kernel_replies=False)
    _write(d, 3, recs[3], kernel_replies=True)
    assert merge(str(d), str(tmp_path / "all.jsonl"))["records_written"] == 40
