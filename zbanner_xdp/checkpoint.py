"""`scan --checkpoint FILE` and `zbanner-xdp resume FILE`: a long scan survives its machine.

What a checkpoint holds (JSON, written atomically: temporary file, fsync,
rename, fsync of the directory; at the start, at least once a second, and at
exit): the format and the scanner's version, the scan's seed and cookie key
(so a resumed scan is the same scan: same order, same source ports and
sequence numbers), its options, shard, target-space digest, the position in
the permutation, counts so far, and where the output stood. A SHA-256 over
the rest detects damage. The file is 0600: the key validates replies.

**Position in the permutation.** The shard's pairs come in domain order of
the Feistel permutation (targets.py); a position is a *cursor*: the next
domain index to try and how many of this shard's pairs came before it, so
resuming never replays the permutation from 0. The send loop holds at most
one batch in flight (its probes go out a segment at a time): the position
names that batch by its span of the domain (first and next index, pairs) and
how many of its probes left. With `--retransmit` the queue of later copies is
part of the position too: one span, attempt and due time per queued batch,
regenerated from the permutation on resume (pairs are never stored).

**Which position is durable.** A probe's result exists only once its reply
came back and its record is on disk. A checkpoint written at time t names the
position the send loop had at ``t_d = min(t_mark, oldest step row) - lag``:
``t_mark`` is when the receiver last drained the rings completely, with every
record handed over then written and fsynced (the checkpoint's output offset);
``lag`` is the scan's cooldown (at least 1 s), the time the scan itself
allows a reply to take. A multi-connection probe's row in progress
(steps.py) lives only in the process, so the position never passes the
oldest row open when the mark was taken (minus the lag: its first SYN left
before). So a resumed scan re-sends the probes sent since t_d: the last
lag + 1 s or so of sending, and never anything older.

**Output.** Resume appends to the same file: it first cuts a half-written last
line, checks the file still holds what the checkpoint says, then reads the
records written since the oldest thing it will send again (the durable
position's offset, the first send of every queued retransmission) and never
writes those again (a DupFilter on the writer, keyed as merge.RECORD_KEY;
incomplete multi-step results are not keys: the resumed scan writes the
complete one). The final metadata covers every part: counts of the parts
before (as of their last checkpoint), the records they wrote after it
(counted from the file), and this part's; `resume` says how many probes
were sent again, at least (those between the durable position and the last
checkpoint; any sent after it died with the process, uncounted).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from . import __version__, filebroker, targets
from .config import ScanConfig
from .merge import RECORD_KEY, record_key

FORMAT = "zbanner-xdp-checkpoint/1"
INTERVAL_S = 0.5  # checkpoints are written at least this often (the promise is once a second)
SNAPSHOT_S = 0.1  # how often the send loop's position is noted
MIN_LAG_S = 1.0
PATH_OPTIONS = ("output", "metadata", "blocklist", "allowlist", "checkpoint", "pcap")


class CheckpointError(Exception):
    """A checkpoint that cannot be resumed or written: one line, exit status 2."""


# --------------------------------------------------------------------------- positions


@dataclass(frozen=True)
class Span:
    """A batch of a shard's pairs: domain indices [k_lo, k_hi), `n` pairs, the first at position `pos`."""

    k_lo: int
    k_hi: int
    pos: int
    n: int


def _limit(space: targets.TargetSpace, max_targets: int | None) -> int:
    return space.size if max_targets is None else min(max_targets, space.size)


def positioned_batches(
    space: targets.TargetSpace,
    seed: int,
    shards: int,
    shard: int,
    batch: int,
    max_targets: int | None = None,
    cursor: tuple[int, int] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, Span]]:
    """targets.iter_batches' pairs and batches, each with its Span, from a cursor (domain index, position).

    From the start it yields exactly iter_batches(space, seed, shards, shard, batch, max_targets).
    """
    perm = targets.Permutation(space.size, seed)
    limit = _limit(space, max_targets)
    k, pos = cursor if cursor is not None else (shard, 0)
    chunk = max(1, -(-batch * perm.domain // space.size))
    step = chunk * shards
    size = np.uint64(space.size)
    cv = np.zeros(0, np.uint64)  # values carried to the next batch, and their domain indices
    ck = np.zeros(0, np.uint64)
    while k < perm.domain and pos + len(cv) < limit:
        ks = np.arange(k, min(k + step, perm.domain), shards, dtype=np.uint64)
        k += step
        v = perm.apply(ks)
        keep = v < size
        v, ks = v[keep], ks[keep]
        room = limit - pos - len(cv)
        cv, ck = np.concatenate((cv, v[:room])), np.concatenate((ck, ks[:room]))
        while len(cv) >= batch:
            span = Span(int(ck[0]), int(ck[batch - 1]) + shards, pos, batch)
            a, p = space._pairs_unchecked(cv[:batch])
            yield a, p, span
            pos += batch
            cv, ck = cv[batch:], ck[batch:]
    if len(cv):
        a, p = space._pairs_unchecked(cv)
        yield a, p, Span(int(ck[0]), int(ck[-1]) + shards, pos, len(cv))


def span_pairs(
    space: targets.TargetSpace, seed: int, shards: int, span: Span
) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of a span, again."""
    perm = targets.Permutation(space.size, seed)
    v = perm.apply(np.arange(span.k_lo, span.k_hi, shards, dtype=np.uint64))
    v = v[v < np.uint64(space.size)]
    if len(v) != span.n:
        raise CheckpointError(f"checkpoint position does not fit the targets ({len(v)} pairs, not {span.n})")
    return space._pairs_unchecked(v)


def space_digest(space: targets.TargetSpace) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(space.intervals, dtype="<u8").tobytes())
    h.update(np.ascontiguousarray(space.ports, dtype="<u2").tobytes())
    return h.hexdigest()


@dataclass
class Tag:
    """What the retransmission queue and the send loop keep of a batch: its span and where the output
    stood when it was first sent (records about it can only come after)."""

    span: Span
    offset0: int


@dataclass
class Snapshot:
    t: float  # time.monotonic()
    cursor: tuple[int, int]
    item: tuple[Tag, int, int] | None  # (tag, attempt, probes of it sent)
    queue: list[tuple[Tag, int, float]]  # (tag, attempt, due wall time)
    probes: int
    offset: int  # output bytes handed over when the snapshot was taken

    def dedup_offset(self) -> int:
        offs = [self.offset, *(t.offset0 for t, _, _ in self.queue)]
        if self.item is not None:
            offs.append(self.item[0].offset0)
        return min(offs)

    def to_json(self) -> dict[str, Any]:
        def span(t: Tag) -> list[int]:
            s = t.span
            return [s.k_lo, s.k_hi, s.pos, s.n, t.offset0]

        return {
            "cursor": list(self.cursor),
            "item": None if self.item is None else [*span(self.item[0]), self.item[1], self.item[2]],
            "queue": [[*span(t), a, round(due, 3)] for t, a, due in self.queue],
            "probes": self.probes,
        }

    @staticmethod
    def from_json(d: dict[str, Any]) -> Snapshot:
        def tag(v: list[int]) -> Tag:
            return Tag(Span(int(v[0]), int(v[1]), int(v[2]), int(v[3])), int(v[4]))

        item = d["item"]
        return Snapshot(
            t=0.0,
            cursor=(int(d["cursor"][0]), int(d["cursor"][1])),
            item=None if item is None else (tag(item[:5]), int(item[5]), int(item[6])),
            queue=[(tag(q[:5]), int(q[5]), float(q[6])) for q in d["queue"]],
            probes=int(d["probes"]),
            offset=0,
        )


class Progress:
    """The send loop's position, noted as it goes; snapshots for the checkpointer (thread-safe)."""

    def __init__(self, start: Snapshot | None, writer: Any) -> None:
        self.writer = writer
        self.cursor = start.cursor if start is not None else None
        self.item: tuple[Tag, int, int] | None = None
        self.last: Tag | None = None
        self._lock = threading.Lock()
        self._snaps: collections.deque[Snapshot] = collections.deque()
        self._next = 0.0
        self.first: Snapshot | None = None

    def batches(self, it: Iterator[tuple[np.ndarray, np.ndarray, Span]]) -> Iterator[tuple[Any, Any]]:
        for a, p, span in it:
            self.last = Tag(span, self.writer.handed)
            yield a, p
        self.last = None

    def took(self, tag: Tag, attempt: int) -> None:
        """A batch (new, attempt 0, or a retransmission) is now the one in flight."""
        if attempt == 0:
            self.cursor = (tag.span.k_hi, tag.span.pos + tag.span.n)
        self.item = (tag, attempt, 0)

    def sent(self, k: int, done: bool) -> None:
        if self.item is not None:
            tag, attempt, n = self.item
            self.item = None if done else (tag, attempt, n + k)

    def note(self, now: float, retrans: Any, probes: int, force: bool = False) -> None:
        """A snapshot, at most every SNAPSHOT_S (or now, with force)."""
        if not force and now < self._next:
            return
        self._next = now + SNAPSHOT_S
        wall = time.time()
        queue = [(tag, att, wall + (due - now)) for due, att, tag in retrans.entries()]
        snap = Snapshot(now, self.cursor or (0, 0), self.item, queue, probes, self.writer.handed)
        with self._lock:
            if self.first is None:
                self.first = snap
            self._snaps.append(snap)

    def durable(self, t: float) -> Snapshot:
        """The newest snapshot taken at or before `t` (the first one if none); older ones are dropped."""
        with self._lock:
            snaps = self._snaps
            while len(snaps) > 1 and snaps[1].t <= t:
                snaps.popleft()
            assert self.first is not None
            return snaps[0] if snaps and snaps[0].t <= t else self.first


# --------------------------------------------------------------------------- the file


def _digest(doc: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()


def encode(doc: dict[str, Any]) -> bytes:
    """The file's bytes: the document with its own digest."""
    body = {k: v for k, v in doc.items() if k != "sha256"}
    return orjson.dumps({**body, "sha256": _digest(body)}, option=orjson.OPT_INDENT_2) + b"\n"


def write_atomic(path: str, doc: dict[str, Any]) -> None:
    """The file is the old one or the new one, never half (filebroker.replace)."""
    filebroker.replace(path, encode(doc))


_REQUIRED = {
    "format": str,
    "version": str,
    "finished": bool,
    "reason": str,
    "seed": int,
    "key": str,
    "options": dict,
    "space": dict,
    "lag_s": float,
    "batch": int,
    "position": dict,
    "counts": dict,
    "output": dict,
    "parts": list,
}


def load(path: str) -> dict[str, Any]:
    """A checkpoint that can be resumed, or CheckpointError saying why not (one line)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(64 << 20)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint '{path}': {exc.strerror or exc}") from None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise CheckpointError(f"checkpoint '{path}' is damaged (not JSON)") from None
    if type(doc) is not dict or doc.get("format") != FORMAT:
        raise CheckpointError(f"'{path}' is not a zbanner-xdp checkpoint")
    body = {k: v for k, v in doc.items() if k != "sha256"}
    if doc.get("sha256") != _digest(body):
        raise CheckpointError(f"checkpoint '{path}' is damaged (its checksum does not match)")
    if doc.get("version") != __version__:
        raise CheckpointError(
            f"checkpoint '{path}' was written by zbanner-xdp {doc.get('version')}, this is {__version__}"
        )
    for k, typ in _REQUIRED.items():
        if not isinstance(doc.get(k), typ) or (typ is int and isinstance(doc.get(k), bool)):
            raise CheckpointError(f"checkpoint '{path}' is damaged (no valid '{k}')")
    if doc["finished"]:
        raise CheckpointError(
            f"checkpoint '{path}': that scan is finished ({doc['reason']}); nothing to resume"
        )
    try:
        Snapshot.from_json(doc["position"])
        bytes.fromhex(doc["key"])
        config_of(doc)
    except (KeyError, TypeError, ValueError, IndexError):
        raise CheckpointError(f"checkpoint '{path}' is damaged (bad position or options)") from None
    return doc


def config_of(doc: dict[str, Any]) -> ScanConfig:
    fields = {f.name for f in dataclasses.fields(ScanConfig)}
    opts = {k: v for k, v in doc["options"].items() if k in fields}
    opts["targets"] = tuple(opts.get("targets") or ())
    if opts.get("output_fields") is not None:
        opts["output_fields"] = tuple(opts["output_fields"])
    return ScanConfig(**opts)


def absolute_options(cfg: ScanConfig) -> dict[str, Any]:
    """The options, file names made absolute: resume may run from another directory."""
    opts = cfg.as_dict()
    for k in PATH_OPTIONS:
        if opts.get(k) and opts[k] != "-":
            opts[k] = os.path.abspath(opts[k])
    return opts


def check_scan(cfg: ScanConfig) -> None:
    """--checkpoint's own requirements, before anything starts (ScanError text)."""
    if not cfg.checkpoint:
        return
    from .output import _is_stdout, check_path, same_file

    if _is_stdout(cfg.output):
        raise CheckpointError("--checkpoint needs -o FILE: a resumed scan appends to it")
    if os.path.exists(cfg.output or "") and not os.path.isfile(cfg.output or ""):
        raise CheckpointError(f"--checkpoint needs -o to be a regular file, not '{cfg.output}'")
    for other in (cfg.output, cfg.metadata):
        if other and same_file(cfg.checkpoint, other):
            raise CheckpointError(f"--checkpoint and another option name the same file '{cfg.checkpoint}'")
    missing = [f for f in RECORD_KEY[:4] if cfg.output_fields is not None and f not in cfg.output_fields]
    if missing:
        raise CheckpointError(
            f"--checkpoint needs {', '.join(missing)} among --output-fields "
            "(a resumed scan recognises the records it already wrote by them)"
        )
    try:
        check_path(cfg.checkpoint, "checkpoint")
    except Exception as exc:  # OutputError: the same one-line message
        raise CheckpointError(str(exc)) from None


# --------------------------------------------------------------------------- records already written

_SADDR = re.compile(rb'"saddr":"([^"]*)"')


def _is_hit(rec: dict[str, Any]) -> bool:
    """The scan's `hits` rule (receiver.py) for one written record."""
    from .probes import ProbeKind, probe_class

    if not rec.get("success") or rec.get("tarpit_probe") or rec.get("repeat"):
        return False
    if rec.get("classification") != "synack":
        return True
    cls = probe_class(str(rec.get("probe")))
    return cls is not None and cls.kind is ProbeKind.SYN


class Tally:
    def __init__(self) -> None:
        self.lines = 0
        self.responses: collections.Counter[str] = collections.Counter()
        self.hits = 0

    def add(self, rec: dict[str, Any]) -> None:
        self.lines += 1
        if not rec.get("repeat") and isinstance(rec.get("classification"), str):
            self.responses[rec["classification"]] += 1
            self.hits += _is_hit(rec)


class DupFilter:
    """The writer's filter in a resumed scan: records the parts before already wrote are not written again.

    Cheap when nothing matches: one regular-expression pass over the batch's bytes for the
    addresses; only lines about an address already written are parsed."""

    def __init__(self, keys: set[tuple[Any, ...]]) -> None:
        self.keys = keys
        self.saddrs = {str(k[0]).encode() for k in keys}
        self.dropped = Tally()

    def __call__(self, blob: bytes, count: int) -> tuple[bytes, int]:
        if not self.keys or not any(a in self.saddrs for a in _SADDR.findall(blob)):
            return blob, count
        kept: list[bytes] = []
        for line in blob.split(b"\n"):
            if not line:
                continue
            m = _SADDR.search(line)
            if m is not None and m.group(1) in self.saddrs:
                rec = orjson.loads(line)
                if not rec.get("incomplete") and record_key(rec) in self.keys:
                    self.dropped.add(rec)
                    continue
            kept.append(line)
        return (b"\n".join(kept) + b"\n" if kept else b""), len(kept)


def read_written(fd: int, start: int, mark: int) -> tuple[set[tuple[Any, ...]], Tally]:
    """Keys of the records from `start` on, and a tally of those from `mark` on (written after the
    checkpoint's count)."""
    keys: set[tuple[Any, ...]] = set()
    after = Tally()
    with os.fdopen(os.dup(fd), "rb") as fh:
        fh.seek(start)
        off = start
        for line in fh:
            here = off
            off += len(line)
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if type(rec) is not dict:
                continue
            if not rec.get("incomplete"):
                keys.add(record_key(rec))
            if here >= mark:
                after.add(rec)
    return keys, after


# --------------------------------------------------------------------------- resume


class Resume:
    """A checkpoint being resumed: the scan's identity, where it stood, and what its parts already counted."""

    def __init__(self, path: str, doc: dict[str, Any]) -> None:
        self.path = path
        self.doc = doc
        self.seed = int(doc["seed"])
        self.key = bytes.fromhex(doc["key"])
        self.options = doc["options"]
        self.start = Snapshot.from_json(doc["position"])
        self.counts = doc["counts"]
        self.output = doc["output"]
        self.parts = list(doc["parts"])
        self.filter: DupFilter | None = None
        self.after = Tally()  # records written after the checkpoint's count, before the process ended
        self.resumed_at = time.time()

    def check_space(self, space: targets.TargetSpace) -> None:
        if space_digest(space) != self.doc["space"].get("digest"):
            raise CheckpointError(
                "the targets differ from the checkpoint's (a changed --blocklist or --allowlist file?)"
            )

    def attach(self, writer: Any) -> None:
        """The output is open (locked, its cut line gone): check it, read what was written, filter."""
        size = writer.handed
        if size < int(self.output["offset"]):
            raise CheckpointError(
                f"'{writer.path}' holds {size} bytes, the checkpoint counted {self.output['offset']}: "
                "not the output this scan wrote"
            )
        keys, self.after = read_written(
            writer.fd, int(self.output["dedup_offset"]), int(self.output["offset"])
        )
        self.filter = DupFilter(keys)
        writer.filter = self.filter
        writer.base_lines = writer.handed_lines = self.prior()["lines"]

    def restore(
        self, space: targets.TargetSpace, shards: int, segments: Callable[[np.ndarray, np.ndarray, int], list]
    ) -> tuple[list, list[tuple[float, int, np.ndarray, np.ndarray, Tag]]]:
        """The batch in flight (its probes not yet sent) and the retransmission queue, rebuilt."""
        pending: list = []
        s = self.start
        if s.item is not None:
            tag, attempt, sent = s.item
            a, p = span_pairs(space, self.seed, shards, tag.span)
            for seg in segments(a, p, attempt):
                if sent >= len(seg):
                    sent -= len(seg)
                    continue
                if sent:
                    _, seg = seg.split(sent)
                    sent = 0
                pending.append(seg)
        now_wall, now = time.time(), time.monotonic()
        queue = []
        for tag, attempt, due in s.queue:
            a, p = span_pairs(space, self.seed, shards, tag.span)
            queue.append((now + max(0.0, due - now_wall), attempt, a, p, tag))
        return pending, queue

    def prior(self) -> dict[str, Any]:
        """What the parts before this one counted: as of the checkpoint, plus the records they wrote after."""
        responses = collections.Counter(self.counts.get("responses", {}))
        responses.update(self.after.responses)
        return {
            "lines": int(self.output["lines"]) + self.after.lines,
            "responses": responses,
            "hits": int(self.counts.get("hits", 0)) + self.after.hits,
            "replies": int(self.counts.get("replies_sent", 0)),
            "drops": dict(self.counts.get("drops", {})),
        }


# --------------------------------------------------------------------------- the checkpointer


@dataclass
class Mark:
    t: float  # the receiver drained both rings completely after this time.monotonic()
    handed: int  # output bytes handed to the writer by then (absolute file offset)
    lines: int
    responses: dict[str, int]
    hits: int
    oldest_row: float | None  # time.monotonic() the oldest multi-step row in progress opened


class Checkpointer:
    """Writes the checkpoint: at start, every INTERVAL_S from its own thread, and at exit."""

    def __init__(self, scanner: Any, resume: Resume | None) -> None:
        self.s = scanner
        cfg = scanner.cfg
        self.path = os.path.abspath(cfg.checkpoint)
        self.lag = max(float(cfg.cooldown), MIN_LAG_S)
        self.resume = resume
        self.options = resume.options if resume is not None else absolute_options(cfg)
        self.prior = resume.prior() if resume is not None else None
        self.marks: collections.deque[Mark] = collections.deque(maxlen=4096)
        self._mark_next = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.error: str | None = None
        self.write_s = 0.0  # time spent writing checkpoints (fsyncs included)
        # Puts the file in place; after a change of user, a filebroker.Broker's, which can.
        self.replace: Callable[[str, bytes], None] = filebroker.replace
        self.part_start = scanner.started
        # A resumed part also reads back what the part before wrote since its durable position, until
        # its own durable position has passed everything that part can have sent: it died within
        # INTERVAL_S of its last checkpoint, which lay `lag` past its durable position.
        self.inherit_until = time.monotonic() + self.lag + 2 * INTERVAL_S + 2.0

    # -- marks, from the receiver's thread -----------------------------------------------------------
    def mark(self, t: float) -> None:
        if t < self._mark_next:
            return
        self._mark_next = t + 0.02
        s = self.s
        rcv, w = s.receiver, s.writer
        steps = s.steps
        oldest = None
        if steps is not None and steps.rows:
            oldest = next(iter(steps.rows.values())).opened
        self.marks.append(Mark(t, w.handed, w.handed_lines, dict(rcv.by_class), rcv.hits, oldest))

    def _usable_mark(self, written: int) -> Mark | None:
        """The newest mark whose records are all written (`written`: the writer's offset)."""
        for m in reversed(list(self.marks)):  # (a copy: the receiver's thread appends meanwhile)
            if m.handed <= written:
                return m
        return None

    # -- the thread ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL_S):
            self.write()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    # -- one checkpoint -----------------------------------------------------------------------------
    def write(self, final_reason: str | None = None, end_mark: Mark | None = None) -> None:
        s = self.s
        w = s.writer
        t0 = time.monotonic()
        try:
            written = w.sync()  # everything written so far is on disk
            mark = end_mark or self._usable_mark(written)
            progress = s.progress
            if mark is None:
                snap = progress.first
                mark = Mark(0.0, snap.offset if snap else w.handed, w.base_lines, {}, 0, None)
            else:
                edge = mark.t if mark.oldest_row is None else min(mark.t, mark.oldest_row)
                snap = progress.durable(edge - self.lag)
            if snap is None:
                return
            finished = final_reason in ("completed", "max-runtime")
            doc = self._doc(snap, mark, final_reason, finished)
            self.replace(self.path, encode(doc))
            self.written += 1
        except (OSError, CheckpointError) as exc:
            self.error = f"cannot write checkpoint '{self.path}': {getattr(exc, 'strerror', None) or exc}"
        finally:
            self.write_s += time.monotonic() - t0

    def _dedup_offset(self, snap: Snapshot, mark: Mark) -> int:
        off = min(snap.dedup_offset(), mark.handed)
        if self.resume is not None and snap.t < self.inherit_until:
            off = min(off, int(self.resume.output["dedup_offset"]))
        return off

    def _doc(self, snap: Snapshot, mark: Mark, reason: str | None, finished: bool) -> dict[str, Any]:
        s = self.s
        prior = self.prior
        dropped = self.resume.filter.dropped if self.resume and self.resume.filter else None
        responses = collections.Counter(mark.responses)
        hits = mark.hits
        if dropped is not None:
            responses.subtract(dropped.responses)
            hits -= dropped.hits
        replies = s.replies_sent()
        drops = s.live_drops()
        if prior is not None:
            responses.update(prior["responses"])
            hits += prior["hits"]
            replies += prior["replies"]
            drops = {k: drops.get(k, 0) + int(prior["drops"].get(k, 0)) for k in {*drops, *prior["drops"]}}
        part = {
            "start": self.part_start,
            "last_checkpoint": _iso(time.time()),
            "reason": reason or "running",
            "probes_sent": s.sent_probes,
            "sending_s": s._sending_s(),
        }
        return {
            "format": FORMAT,
            "version": __version__,
            "written": _iso(time.time()),
            "finished": finished,
            "reason": reason or "running",
            "seed": s.seed,
            "key": s.key.hex(),
            "options": self.options,
            "shard": s.cfg.shard,
            "shards": s.cfg.shards,
            "space": {"pairs": int(s.space.size), "digest": space_digest(s.space)},
            "lag_s": float(self.lag),
            "batch": int(s.gen_size),
            "position": snap.to_json(),
            "counts": {
                "probes_sent": s.sent_probes,
                "replies_sent": replies,
                "responses": {k: v for k, v in sorted(responses.items()) if v},
                "hits": hits,
                "drops": drops,
            },
            "output": {
                "path": self.options.get("output"),
                "offset": mark.handed,
                "lines": mark.lines,
                "dedup_offset": self._dedup_offset(snap, mark),
            },
            "parts": [*(self.resume.parts if self.resume else []), part],
        }


def _iso(t: float) -> str:
    import datetime as dt

    return (
        dt.datetime.fromtimestamp(t, dt.timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def combine(summary: dict[str, Any], scanner: Any) -> None:
    """The summary of a scan with --checkpoint: the checkpoint's own numbers and, for a resumed
    scan, every part's counts together (see the module docstring)."""
    ck = scanner.checkpointer
    summary["checkpoint"] = {
        "path": ck.path,
        "written": ck.written,
        "write_s": round(ck.write_s, 3),
        "lag_s": ck.lag,
        "error": ck.error,
    }
    res: Resume | None = scanner.resume
    if res is None:
        return
    prior = res.prior()
    dropped = res.filter.dropped if res.filter is not None else Tally()
    responses = collections.Counter(summary["responses"])
    responses.subtract(dropped.responses)
    responses.update(prior["responses"])
    summary["responses"] = {k: v for k, v in sorted(responses.items()) if v}
    summary["hits"] = summary["hits"] - dropped.hits + prior["hits"]
    sent = summary["packets_sent"]
    sent["replies"] += prior["replies"]
    sent["total"] = sent["probes"] + sent["replies"]
    summary["drops"] = {k: v + int(prior["drops"].get(k, 0)) for k, v in summary["drops"].items()}
    w = scanner.writer
    summary["records_written"] = w.base_lines + w.count if w is not None else prior["lines"]
    before = [p for p in res.parts if p.get("start")]
    if before:
        summary["start"] = before[0]["start"]
    summary["resume"] = {
        "checkpoint": res.path,
        "parts": len(res.parts) + 1,
        "previous": res.parts,
        "resumed_at": _iso(res.resumed_at),
        # Sent by the part before between the durable position and its last checkpoint: sent again.
        # (Any it sent after that checkpoint died with it, uncounted.)
        "probes_resent_at_least": max(0, int(res.counts.get("probes_sent", 0)) - res.start.probes),
        "records_after_checkpoint": res.after.lines,
        "duplicates_not_written": dropped.lines,
    }
