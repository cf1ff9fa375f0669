"""Drain the XDP ring buffer in batches, answer, classify and record.

Events are collected raw by a minimal callback and decoded per poll as one
numpy structured array; replies for the whole batch are built vectorised
and queued for the sender, which sends them before any new SYN.
"""

from __future__ import annotations

import base64
import ctypes
import datetime as dt
import socket
import struct
import threading
import time
from collections import Counter as Tally
from typing import Any

import numpy as np

from . import packets
from .events import BANNER_EVENT_SIZE, CLASSIFICATION, DATA_MAX, EVENT_DTYPE, EVENT_SIZE, Kind
from .output import RecordWriter
from .sender import ReplyQueue

BANNER_DTYPE = np.dtype([("h", EVENT_DTYPE), ("data", "u1", (DATA_MAX,))])


def ip_from_raw(raw: int) -> str:
    return socket.inet_ntoa(struct.pack("<I", raw))


def _bswap32(a: np.ndarray) -> np.ndarray:
    return a.astype(np.uint32).byteswap()


class RingReader:
    """Collects ring-buffer records; `poll()` returns them decoded as arrays."""

    def __init__(self, bpf: Any, name: bytes = b"events"):
        self.bpf = bpf
        self._small: list[bytes] = []
        self._big: list[bytes] = []

        def _cb(_ctx: Any, data: int, size: int) -> int:
            # Keep the per-event Python work to one copy; decoding is batched.
            (self._small if size == EVENT_SIZE else self._big).append(ctypes.string_at(data, size))
            return 0

        self._cb = _cb
        bpf[name].open_ring_buffer(_cb)

    def poll(self, timeout_ms: int) -> tuple[np.ndarray, np.ndarray]:
        self.bpf.ring_buffer_poll(timeout_ms)
        small, big = self._small, self._big
        self._small, self._big = [], []
        hdr = np.frombuffer(b"".join(small), dtype=EVENT_DTYPE) if small else np.zeros(0, EVENT_DTYPE)
        ban = (
            np.frombuffer(b"".join(b[:BANNER_EVENT_SIZE] for b in big), dtype=BANNER_DTYPE)
            if big
            else np.zeros(0, BANNER_DTYPE)
        )
        return hdr, ban


class Receiver:
    def __init__(
        self,
        reader: RingReader,
        link: packets.LinkParams,
        replies: ReplyQueue,
        writer: RecordWriter,
        probe: Any,
        ack_window: int,
        output_repeats: bool = False,
    ):
        self.reader = reader
        self.link = link
        self.replies = replies
        self.writer = writer
        self.probe = probe
        self.handshake = bool(getattr(probe, "handshake", False))
        self.ack_window = ack_window
        self.output_repeats = output_repeats
        self.by_class: Tally[str] = Tally()
        self.hits = 0
        self.repeats_seen = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="receiver", daemon=True)
        # bpf_ktime_get_ns() is CLOCK_MONOTONIC: one offset maps it to wall time.
        self._wall_offset_ns = time.time_ns() - time.monotonic_ns()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.drain_once(0)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.drain_once(50)
        except BaseException as exc:  # surfaced by the scanner, which stops the scan
            self.error = exc

    def drain_once(self, timeout_ms: int) -> int:
        hdr, ban = self.reader.poll(timeout_ms)
        if len(hdr):
            self._handle_tcp(hdr)
        if len(ban):
            self._handle_banners(ban)
        return len(hdr) + len(ban)

    # -- replies ---------------------------------------------------------
    def _queue_rst(self, ev: np.ndarray) -> None:
        if len(ev) == 0:
            return
        frames, lens = packets.tcp_frames(
            self.link, _bswap32(ev["saddr"]), ev["sport"], ev["dport"], ev["ack"], 0, packets.RST, 0
        )
        self.replies.put(frames, lens)

    def _queue_probe(self, ev: np.ndarray) -> None:
        if len(ev) == 0:
            return
        daddr = _bswap32(ev["saddr"])
        fixed = self.probe.fixed_payload
        if fixed is not None:
            pay = np.frombuffer(fixed, dtype=np.uint8)[None, :] if fixed else None
            plen = np.full(len(ev), len(fixed), dtype=np.uint64) if fixed else None
            if pay is not None:
                pay = np.broadcast_to(pay, (len(ev), len(fixed)))
        else:
            pays = [
                self.probe.payload(ip_from_raw(int(s)), int(p))
                for s, p in zip(ev["saddr"], ev["sport"], strict=True)
            ]
            pay, plen = packets.payload_matrix(pays)
            if pay.shape[1] == 0:
                pay = plen = None
        flags = packets.ACK | (packets.PSH if pay is not None else 0)
        frames, lens = packets.tcp_frames(
            self.link,
            daddr,
            ev["sport"],
            ev["dport"],
            ev["ack"],
            ev["seq"] + np.uint32(1),
            flags,
            self.ack_window,
            payload=pay,
            payload_len=plen,
        )
        self.replies.put(frames, lens)

    # -- records ---------------------------------------------------------
    def _base_record(self, e: np.void) -> dict[str, Any]:
        rec = self.writer.template()
        kind = int(e["kind"])
        ts = dt.datetime.fromtimestamp((int(e["ts_ns"]) + self._wall_offset_ns) / 1e9, dt.timezone.utc)
        rec.update(
            saddr=ip_from_raw(int(e["saddr"])),
            sport=int(e["sport"]),
            daddr=ip_from_raw(int(e["daddr"])),
            dport=int(e["dport"]),
            classification=CLASSIFICATION.get(Kind(kind), "unknown")
            if kind in Kind._value2member_map_
            else "unknown",
            success=kind in (Kind.SYNACK, Kind.BANNER),
            repeat=bool(e["repeat"]),
            timestamp=ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            ttl=int(e["ttl"]),
            window=int(e["window"]),
            ipid=int(e["ipid"]),
            seqnum=int(e["seq"]),
            acknum=int(e["ack"]),
            tcp_flags=int(e["tcp_flags"]),
            probe=self.probe.name,
        )
        return rec

    def _handle_tcp(self, ev: np.ndarray) -> None:
        fresh = ev[ev["repeat"] == 0]
        synack = fresh[fresh["kind"] == Kind.SYNACK]
        if self.handshake:
            self._queue_probe(synack)
            self._queue_rst(fresh[fresh["kind"] == Kind.ZEROWIN])
        else:
            self._queue_rst(fresh[(fresh["kind"] == Kind.SYNACK) | (fresh["kind"] == Kind.ZEROWIN)])
        self.repeats_seen += int(len(ev) - len(fresh))
        rows = ev if self.output_repeats else fresh
        records = [self._base_record(e) for e in rows]
        self._tally(records)
        self.writer.write(records)

    def _handle_banners(self, ban: np.ndarray) -> None:
        hdr = ban["h"]
        fresh_mask = hdr["repeat"] == 0
        self._queue_rst(hdr[fresh_mask])
        self.repeats_seen += int((~fresh_mask).sum())
        records = []
        for row in ban if self.output_repeats else ban[fresh_mask]:
            e = row["h"]
            data = row["data"][: int(e["data_len"])].tobytes()
            rec = self._base_record(e)
            rec["banner"] = _banner_text(data)
            rec["data"] = base64.b64encode(data).decode("ascii")
            rec[self.probe.name] = self.probe.parse(rec["saddr"], rec["sport"], data)
            records.append(rec)
        self._tally(records)
        self.writer.write(records)

    def _tally(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            if r["repeat"]:
                continue
            self.by_class[r["classification"]] += 1
            if r["success"]:
                self.hits += 1


def _banner_text(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")
