"""`zbanner-xdp merge DIR -o OUT [--metadata OUT.json]`: the shards of one scan as one result.

DIR holds each shard's results as ``NAME.jsonl`` and its ``--metadata`` as
``NAME.json``. Before anything is written, every shard is checked: all have
the same seed, targets, options and shard count (options that only say where
or how a shard ran — its files, interface, addresses, quiet — may differ);
every shard number from 0 to count - 1 is there exactly once; each completed
(metadata reason "completed") and its file holds the lines its metadata
says it wrote. Any failure is one line naming the shard numbers, exit 2, and
no file is touched.

Shards are disjoint in (address, port) pairs, so a reply belongs to one
shard; a record in several shards (the same reply recorded twice, e.g. a
shard run twice into one directory) is written once, the first shard's.
A record's identity is RECORD_KEY: the target, its port, the probe and the
classification (and whether it answers the tarpit check). Memory: one 8-byte
hash per record for the duplicate search, never the records.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from .output import OutputError, open_locked

# Fields that name one reply: a record with the same values is the same result.
RECORD_KEY = ("saddr", "sport", "probe", "classification", "tarpit_probe")

# Options that say where or how one shard ran, not what the scan is: they may differ between shards.
LOCAL_OPTIONS = frozenset(
    {
        "shard",
        "output",
        "metadata",
        "iface",
        "source_ip",
        "gateway_mac",
        "quiet",
        "dry_run",
        "checkpoint",
        "pcap",
        "pcap_snaplen",
        "kernel_replies",  # who answers (the program or user space): the same results either way
        "tx_threads",  # how many threads send: the same probes either way
    }
)
# targets.* values that are per shard.
LOCAL_TARGETS = frozenset({"this_shard", "probes_planned"})


class MergeError(Exception):
    """One line for the CLI (exit status 2); nothing was written."""


def record_key(rec: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(rec.get(f) for f in RECORD_KEY)


def line_key(line: bytes) -> tuple[Any, ...] | None:
    """RECORD_KEY of one JSON line; None for a line that is not a JSON object."""
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return record_key(rec) if type(rec) is dict else None


@dataclass
class Shard:
    name: str
    results: str
    meta: dict[str, Any]

    @property
    def index(self) -> int:
        return int(self.meta["options"]["shard"])


def _ranges(nums: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    out: list[str] = []
    for n in sorted(set(nums)):
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out)


def _load_meta(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            meta = orjson.loads(fh.read())
    except OSError as exc:
        raise MergeError(f"cannot read '{path}': {exc.strerror or exc}") from None
    except orjson.JSONDecodeError:
        raise MergeError(f"'{path}': not a zbanner-xdp metadata file (invalid JSON)") from None
    if (
        type(meta) is not dict
        or type(meta.get("options")) is not dict
        or type(meta.get("targets")) is not dict
        or type(meta["options"].get("shard")) is not int
        or type(meta["options"].get("shards")) is not int
    ):
        raise MergeError(f"'{path}': not a zbanner-xdp metadata file (no options, targets or shard)")
    return meta


def find_shards(directory: str, exclude: tuple[str | None, ...] = ()) -> list[Shard]:
    """Every NAME.jsonl with its NAME.json in `directory` (files named in `exclude` left out)."""
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise MergeError(f"cannot read directory '{directory}': {exc.strerror or exc}") from None
    skip = {os.path.realpath(p) for p in exclude if p}
    stems: dict[str, set[str]] = {}
    for n in names:
        stem, ext = os.path.splitext(n)
        if ext in (".jsonl", ".json") and os.path.realpath(os.path.join(directory, n)) not in skip:
            stems.setdefault(stem, set()).add(ext)
    alone = [f"{s}{next(iter(e))}" for s, e in stems.items() if len(e) == 1]
    if alone:
        raise MergeError(
            f"'{directory}': results and metadata come in pairs (NAME.jsonl, NAME.json); alone: "
            + ", ".join(sorted(alone))
        )
    if not stems:
        raise MergeError(f"'{directory}': no shard results (NAME.jsonl with its metadata NAME.json)")
    return [
        Shard(s, os.path.join(directory, s + ".jsonl"), _load_meta(os.path.join(directory, s + ".json")))
        for s in sorted(stems)
    ]


def _scan_identity(meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "seed": meta.get("seed"),
        "options": {k: v for k, v in meta["options"].items() if k not in LOCAL_OPTIONS},
        "targets": {k: v for k, v in meta["targets"].items() if k not in LOCAL_TARGETS},
    }


def _count_lines(path: str) -> int:
    n = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            n += chunk.count(b"\n")
    return n


def check(shards: list[Shard]) -> int:
    """The shard count, once every shard is shown to belong to one scan, present once and completed."""
    first = shards[0]
    ident = _scan_identity(first.meta)
    for s in shards[1:]:
        other = _scan_identity(s.meta)
        if other != ident:
            what = next(k for k in ("seed", "targets", "options") if other[k] != ident[k])
            if what != "seed":
                diff = sorted(
                    k
                    for k in {*ident[what], *other[what]}
                    if ident[what].get(k) != other[what].get(k)  # type: ignore[union-attr]
                )
                what = f"{what} ({', '.join(diff)})"
            raise MergeError(f"shards {first.index} ({first.name}) and {s.index} ({s.name}) differ in {what}")
    count = int(first.meta["options"]["shards"])
    by_index: dict[int, list[Shard]] = {}
    for s in shards:
        by_index.setdefault(s.index, []).append(s)
    twice = [i for i, ss in by_index.items() if len(ss) > 1]
    if twice:
        raise MergeError(f"shard {_ranges(twice)} present more than once")
    outside = [i for i in by_index if not 0 <= i < count]
    missing = [i for i in range(count) if i not in by_index]
    incomplete: list[int] = []
    reasons: list[str] = []
    for s in shards:
        if s.index in outside:
            continue
        reason = s.meta.get("reason")
        if reason != "completed":
            incomplete.append(s.index)
            reasons.append(f"{s.index}: {reason}")
            continue
        try:
            lines = _count_lines(s.results)
        except OSError as exc:
            raise MergeError(f"cannot read '{s.results}': {exc.strerror or exc}") from None
        if lines != s.meta.get("records_written"):
            incomplete.append(s.index)
            reasons.append(f"{s.index}: {lines} lines, metadata says {s.meta.get('records_written')}")
    problems = []
    if missing:
        problems.append(f"missing shard {_ranges(missing)} of {count}")
    if incomplete:
        problems.append(f"incomplete shard {_ranges(incomplete)} ({'; '.join(reasons)})")
    if outside:
        problems.append(f"shard {_ranges(outside)} outside 0-{count - 1}")
    if problems:
        raise MergeError("; ".join(problems))
    return count


def _lines(path: str) -> Iterator[bytes]:
    with open(path, "rb", buffering=1 << 20) as fh:
        yield from fh


def _hashes(path: str) -> np.ndarray:
    """One 64-bit hash of RECORD_KEY per distinct record of a shard (hash() is stable within a process)."""
    out = set()
    for line in _lines(path):
        key = line_key(line)
        if key is None:
            raise MergeError(f"'{path}': a line is not a JSON record")
        out.add(hash(key))
    return np.fromiter(out, dtype=np.int64, count=len(out))


def merge(
    directory: str, output: str, metadata: str | None = None, shards: list[Shard] | None = None
) -> dict[str, Any]:
    """Check, then write the merged results and (optionally) the combined metadata; returns that."""
    shards = shards if shards is not None else find_shards(directory, (output, metadata))
    count = check(shards)
    shards.sort(key=lambda s: s.index)
    # Pass 1: which record hashes occur in more than one shard (each shard's hashes counted once).
    hashes = [_hashes(s.results) for s in shards]
    allh = np.concatenate(hashes) if hashes else np.zeros(0, np.int64)
    uniq, counts = np.unique(allh, return_counts=True)
    shared = set(uniq[counts > 1].tolist())
    del allh, uniq, counts, hashes
    # Pass 2: every line, except a shared record already written by an earlier shard.
    tmp = f"{output}.merging"
    try:
        fd = open_locked(tmp, "output")
    except OutputError as exc:
        raise MergeError(str(exc)) from None
    written = dropped = 0
    dropped_by_shard: dict[int, int] = {}
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as out:
            emitted: set[tuple[Any, ...]] = set()  # shared records written by earlier shards
            for s in shards:
                seen_here: set[tuple[Any, ...]] = set()
                for line in _lines(s.results):
                    key = line_key(line) if shared else None
                    if key is not None and hash(key) in shared:
                        if key in emitted:
                            dropped += 1
                            dropped_by_shard[s.index] = dropped_by_shard.get(s.index, 0) + 1
                            continue
                        seen_here.add(key)  # (repeats within one shard are that shard's to keep)
                    out.write(line if line.endswith(b"\n") else line + b"\n")
                    written += 1
                emitted |= seen_here
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, output)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    doc = combined_metadata(shards, count, written, dropped, dropped_by_shard, output)
    if metadata:
        data = orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
        mtmp = f"{metadata}.merging"
        with open(mtmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(mtmp, metadata)
    return doc


def _sum_dicts(dicts: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in dicts:
        for k, v in (d or {}).items():
            if isinstance(v, bool) or v is None:
                continue
            if isinstance(v, (int, float)):
                out[k] = out.get(k, 0) + v
            elif isinstance(v, dict):
                out[k] = _sum_dicts([out.get(k, {}), v])
    return out


def combined_metadata(
    shards: list[Shard], count: int, written: int, dropped: int, dropped_by_shard: dict[int, int], output: str
) -> dict[str, Any]:
    metas = [s.meta for s in shards]
    first = metas[0]
    options = {k: v for k, v in first["options"].items() if k not in LOCAL_OPTIONS}
    targets = {k: v for k, v in first["targets"].items() if k not in LOCAL_TARGETS}
    targets["this_shard"] = sum(int(m["targets"].get("this_shard", 0)) for m in metas)
    targets["probes_planned"] = sum(int(m["targets"].get("probes_planned", 0)) for m in metas)
    starts = [m["start"] for m in metas if m.get("start")]
    ends = [m["end"] for m in metas if m.get("end")]
    return {
        "version": first.get("version"),
        "reason": "completed",
        "error": None,
        "merged": {
            "shards": count,
            "output": os.path.abspath(output),
            "duplicates_dropped": dropped,
            "duplicates_by_shard": {str(k): v for k, v in sorted(dropped_by_shard.items())},
            "parts": [
                {
                    "shard": s.index,
                    "results": os.path.abspath(s.results),
                    "records_written": s.meta.get("records_written"),
                    "interface": s.meta.get("interface"),
                    "source_ip": s.meta.get("source_ip"),
                    "start": s.meta.get("start"),
                    "end": s.meta.get("end"),
                    "duration_s": s.meta.get("duration_s"),
                }
                for s in shards
            ],
        },
        "options": options,
        "seed": first.get("seed"),
        "probe": first.get("probe"),
        "targets": targets,
        "packets_sent": _sum_dicts([m.get("packets_sent", {}) for m in metas]),
        "responses": _sum_dicts([m.get("responses", {}) for m in metas]),
        "hits": sum(int(m.get("hits", 0)) for m in metas),
        "repeats": sum(int(m.get("repeats", 0)) for m in metas),
        "drops": _sum_dicts([m.get("drops", {}) for m in metas]),
        "rejected": _sum_dicts([m.get("rejected", {}) for m in metas]),
        "banners_truncated": sum(int(m.get("banners_truncated", 0)) for m in metas),
        "records_written": written,
        "start": min(starts) if starts else None,
        "end": max(ends) if ends else None,
    }
