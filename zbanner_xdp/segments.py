"""--banner-bytes: the answer past its first segment, reassembled in a bounded table.

Every data segment a server sends on one of our connections acks the same
number, cookie + 1 + len(probe payload), so the XDP program validates each
by itself (with ZB_SEGMENTS it passes them all up, undeduplicated). This
table keeps, per connection, the next sequence number wanted (learnt from
the SYN-ACK) and the bytes so far. Only the segment that starts exactly
there is taken and acknowledged (ack = its seq + the bytes kept), with a
window of at most what is still wanted; anything else gets a duplicate ACK
of what we have, so a lost or reordered segment comes again from the
server's own retransmission. A result is therefore the server's bytes in
order, or marked truncated: never bytes out of place.

A connection ends with a record and a RST when N bytes are in, the server
sent a FIN, the probe says its answer is complete (Probe.complete), or it
went quiet; the table's caps (connections, bytes) evict the least recently
active first, written truncated. The ACKs come from user space (replies.py
builds the frames); the XDP program only validates and passes up.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .events import DATA_MAX, event_key
from .plan import split_variant

FIN = 0x01
_MOD = 1 << 32
_HALF = 1 << 31
# Seconds without a new in-order byte (or, before any, since the SYN-ACK) before a connection is
# given up. A server whose SYN-ACK had to be retransmitted starts its data retransmissions at 3 s
# (RFC 6298 5.7, as Linux does), then 6 s: two lost in a row still fit; only a dead connection waits
# it out.
IDLE_S = 10.0
# Ends, as counted in the metadata.
ENDS = ("complete", "fin", "limit", "timeout", "evicted", "reset", "scan_end")


@dataclass
class _Conn:
    next_seq: int  # the next byte wanted: the server's ISN + 1 + bytes kept
    probe_i: int
    touched: float
    first: np.ndarray | None = None  # the first data segment's event (the record's header fields)
    parts: list[bytes] = field(default_factory=list)
    size: int = 0
    last: np.ndarray | None = None  # the latest event, to answer with (its ack is our sequence number)


class SegmentTable:
    """Reassembly of banner probes' answers up to `want` bytes; see the module docstring.

    `record(headers, datas, truncated)` writes finished results (the receiver's banner path);
    `ack(events, acks, windows)` and `rst(events)` send answers (replies.py).
    """

    def __init__(
        self,
        plan: Any,
        want: int,
        record: Callable[[np.ndarray, list[bytes], np.ndarray], None],
        ack: Callable[[np.ndarray, np.ndarray, np.ndarray], None],
        rst: Callable[[np.ndarray], None],
        max_conns: int = 1 << 16,
        max_bytes: int = 256 << 20,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.plan = plan
        self.probes = plan.probes
        self.want = want
        self._record = record
        self._ack = ack
        self._rst = rst
        self.max_conns = max_conns
        self.max_bytes = max_bytes
        self.clock = clock
        self.conns: collections.OrderedDict[tuple[int, int, int], _Conn] = collections.OrderedDict()
        self.bytes = 0
        self.peak_conns = 0
        self.peak_bytes = 0
        self.ends: dict[str, int] = dict.fromkeys(ENDS, 0)
        self.dropped_empty = 0  # connections given up or evicted before their first data
        self.untracked = 0  # data for a connection the table did not hold (evicted, or its SYN-ACK lost)
        # Data for a connection the table finished moments ago: sent (or resent, our ACK being slow)
        # before our RST reached the server. Not a loss: counted apart from untracked.
        self.late = 0
        self._finished: collections.OrderedDict[tuple[int, int, int], float] = collections.OrderedDict()
        self.out_of_order = 0  # segments not at the next wanted byte: duplicate ACK, server resends
        self.acks = 0
        self.taken = 0  # segments that brought new bytes, in order
        self.answering = True  # False once XDP is detached: nothing is sent any more
        self._done: list[tuple[_Conn, bool]] = []

    # -- events ------------------------------------------------------------------------------------
    @staticmethod
    def _key(ev: np.ndarray) -> tuple[int, int, int]:
        return event_key(ev), int(ev["sport"]), int(ev["dport"])

    def synacks(self, ev: np.ndarray) -> None:
        """SYN-ACKs of the probes this table serves: the server's ISN fixes where its data starts."""
        now = self.clock()
        probe_i = split_variant(ev["variant"].astype(np.int64), self.plan.P)[0]
        for row, p in zip(ev, probe_i.tolist(), strict=True):
            key = self._key(row)
            if key in self.conns:
                # A retransmitted SYN-ACK (our ACK and probe were lost, and answered again): the same
                # connection, alive; its data is still to come.
                self.conns[key].touched = now
                self.conns.move_to_end(key)
                continue
            while len(self.conns) >= self.max_conns:
                self._evict()
            self._finished.pop(key, None)
            self.conns[key] = _Conn(next_seq=(int(row["seq"]) + 1) % _MOD, probe_i=p, touched=now)
            self.peak_conns = max(self.peak_conns, len(self.conns))
        self._flush()

    def segments(self, hdr: np.ndarray, datas: list[bytes]) -> None:
        """Data segments (banner events and the bytes their records hold)."""
        now = self.clock()
        acks: list[tuple[np.ndarray, int, int]] = []
        rst: list[np.ndarray] = []
        for row, data in zip(hdr, datas, strict=True):
            key = self._key(row)
            c = self.conns.get(key)
            if c is None:
                if key in self._finished:
                    self.late += 1
                else:
                    self.untracked += 1
                rst.append(row)  # nothing to put it after: close rather than leave it open
                continue
            ahead = (int(row["seq"]) - c.next_seq) % _MOD
            if ahead != 0 and ahead < _HALF:
                # A gap before it: keep nothing, repeat what we have (the server resends the gap).
                self.out_of_order += 1
                acks.append((row, c.next_seq, self._window(c)))
                continue
            skip = (_MOD - ahead) % _MOD  # bytes of it we already hold (a retransmission)
            new = data[skip:] if skip < len(data) else b""
            new = new[: self.want - c.size]
            # Only the bytes the record holds are kept (DATA_MAX of a segment): acking just those, the
            # server sends the rest again.
            if new:
                if c.first is None:
                    c.first = row.copy()
                c.parts.append(new)
                self.taken += 1
                c.size += len(new)
                self.bytes += len(new)
                self.peak_bytes = max(self.peak_bytes, self.bytes)
                c.next_seq = (c.next_seq + len(new)) % _MOD
                c.touched = now
                self.conns.move_to_end(key)
            c.last = row.copy()
            whole = skip + len(new) >= int(row["payload_len"])
            end = self._end(c, fin=bool(row["tcp_flags"] & FIN) and whole)
            if end is None:
                acks.append((row, c.next_seq, self._window(c)))
            else:
                self._finish(key, end)
        while self.bytes > self.max_bytes and self.conns:
            self._evict()
        if self.answering and acks:
            rows = np.array([a[0] for a in acks], dtype=hdr.dtype)
            self.acks += len(acks)
            self._ack(rows, np.array([a[1] for a in acks], np.uint32), np.array([a[2] for a in acks]))
        if self.answering and rst:
            self._rst(np.array(rst, dtype=hdr.dtype))
        self._flush()

    def fins(self, ev: np.ndarray) -> None:
        """FINs without data: the answer is whole if the FIN comes right after the bytes we hold."""
        for row in ev:
            key = self._key(row)
            c = self.conns.get(key)
            if c is not None and int(row["seq"]) == c.next_seq:
                c.last = row.copy()
                self._finish(key, "fin")
        self._flush()

    def resets(self, ev: np.ndarray) -> None:
        """The server reset the connection: what we hold is all there will be."""
        for row in ev:
            key = self._key(row)
            c = self.conns.get(key)
            if c is not None:
                c.last = None  # nothing to answer a RST with
                self._finish(key, "reset")
        self._flush()

    def sweep(self) -> None:
        """Connections quiet for IDLE_S: written as they stand (truncated), or dropped if empty."""
        now = self.clock()
        while self.conns:
            key, c = next(iter(self.conns.items()))  # the least recently active first
            if now - c.touched < IDLE_S:
                break
            self._finish(key, "timeout")
        self._flush()

    def flush(self) -> None:
        """The scan ends: every connection left is written as it stands, nothing more is sent."""
        self.answering = False
        for key in list(self.conns):
            self._finish(key, "scan_end")
        self._flush()

    # -- internals ---------------------------------------------------------------------------------
    def _window(self, c: _Conn) -> int:
        # At most what is still wanted, and at most what one ring record holds: every segment then
        # fits its record whole (a larger one would be acked only in part, and resent).
        return max(1, min(self.want - c.size, DATA_MAX))

    def _end(self, c: _Conn, fin: bool) -> str | None:
        if c.size and self.probes[c.probe_i].complete(b"".join(c.parts)):
            return "complete"
        if fin:
            return "fin"
        if c.size >= self.want:
            return "limit"
        return None

    def _evict(self) -> None:
        key = next(iter(self.conns))
        self._finish(key, "evicted")

    FINISHED_MAX = 1 << 16  # finished connections remembered (late segments), for at most IDLE_S

    def _finish(self, key: tuple[int, int, int], end: str) -> None:
        c = self.conns.pop(key)
        now = self.clock()
        self._finished[key] = now
        self._finished.move_to_end(key)
        while self._finished and (
            len(self._finished) > self.FINISHED_MAX or now - next(iter(self._finished.values())) > IDLE_S
        ):
            self._finished.popitem(last=False)
        self.bytes -= c.size
        if c.first is None:
            self.dropped_empty += 1
            if c.last is not None and self.answering:
                self._rst(c.last[None])
            return
        self.ends[end] += 1
        self._done.append((c, end not in ("complete", "fin")))

    def _flush(self) -> None:
        """Write the finished connections' records, and reset those still open at the server."""
        if not self._done:
            return
        done, self._done = self._done, []
        firsts = np.array([c.first for c, _ in done], dtype=done[0][0].first.dtype)  # type: ignore[union-attr]
        self._record(firsts, [b"".join(c.parts) for c, _ in done], np.array([t for _, t in done], bool))
        last = [c.last for c, _ in done if c.last is not None]
        if self.answering and last:
            self._rst(np.array(last, dtype=last[0].dtype))

    def summary(self) -> dict[str, Any]:
        return {
            "banner_bytes": self.want,
            "results": sum(self.ends.values()),
            "ends": dict(self.ends),
            "truncated": sum(self.ends[e] for e in ENDS if e not in ("complete", "fin")),
            "evicted": self.ends["evicted"],
            "dropped_without_data": self.dropped_empty,
            "untracked_segments": self.untracked,
            "late_segments": self.late,
            "out_of_order_segments": self.out_of_order,
            "segments_taken": self.taken,
            "acks_sent": self.acks,
            "peak_connections": self.peak_conns,
            "peak_bytes": self.peak_bytes,
            "max_connections": self.max_conns,
            "max_bytes": self.max_bytes,
        }
