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


REPEAT_DUP = 1  # a network duplicate: recorded only with --output-repeats
REPEAT_RETRANSMIT = 2  # the server retransmitted: our answer was lost, answer again


class Receiver:
    """Turns ring-buffer batches into replies and records.

    `probes[i]` is the probe sent with variant i (the source port says which,
    see scanner.source_ports); a SYN-ACK is answered with that probe's
    payload, or with a RST for SYN-only probes.
    """

    def __init__(
        self,
        reader: RingReader,
        link: packets.LinkParams,
        replies: ReplyQueue,
        writer: RecordWriter,
        probes: list[Any],
        ack_window: int,
        output_repeats: bool = False,
    ):
        self.reader = reader
        self.link = link
        self.replies = replies
        self.writer = writer
        self.probes = probes
        self.ack_window = ack_window
        self.output_repeats = output_repeats
        self.by_class: Tally[str] = Tally()
        self.hits = 0
        self.reanswered = 0
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

    def _probe(self, variant: int) -> Any:
        return self.probes[variant] if variant < len(self.probes) else self.probes[0]

    # -- replies ---------------------------------------------------------
    def _queue_rst(self, ev: np.ndarray) -> None:
        if len(ev) == 0:
            return
        frames, lens = packets.tcp_frames(
            self.link, _bswap32(ev["saddr"]), ev["sport"], ev["dport"], ev["ack"], 0, packets.RST, 0
        )
        self.replies.put(frames, lens)

    def _queue_probe(self, ev: np.ndarray, probe: Any) -> None:
        if len(ev) == 0:
            return
        daddr = _bswap32(ev["saddr"])
        fixed = probe.fixed_payload
        pay = plen = None
        if fixed:
            pay = np.broadcast_to(np.frombuffer(fixed, dtype=np.uint8)[None, :], (len(ev), len(fixed)))
            plen = np.full(len(ev), len(fixed), dtype=np.uint64)
        elif fixed is None:
            pays = [
                probe.payload(ip_from_raw(int(s)), int(p))
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
            classification=CLASSIFICATION.get(kind, "unknown"),
            success=kind in (Kind.SYNACK, Kind.BANNER),
            repeat=bool(e["repeat"]),
            timestamp=ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            ttl=int(e["ttl"]),
            window=int(e["window"]),
            ipid=int(e["ipid"]),
            seqnum=int(e["seq"]),
            acknum=int(e["ack"]),
            tcp_flags=int(e["tcp_flags"]),
            probe=self._probe(int(e["variant"])).name,
        )
        return rec

    def _recorded(self, ev: np.ndarray) -> np.ndarray:
        return np.ones(len(ev), bool) if self.output_repeats else ev["repeat"] == 0

    def _handle_tcp(self, ev: np.ndarray) -> None:
        answer = ev[ev["repeat"] != REPEAT_DUP]
        self.reanswered += int((answer["repeat"] == REPEAT_RETRANSMIT).sum())
        self._queue_rst(answer[answer["kind"] == Kind.ZEROWIN])
        synack = answer[answer["kind"] == Kind.SYNACK]
        for v in np.unique(synack["variant"]):
            sub = synack[synack["variant"] == v]
            probe = self._probe(int(v))
            if probe.handshake:
                self._queue_probe(sub, probe)
            else:
                self._queue_rst(sub)
        records = [self._base_record(e) for e in ev[self._recorded(ev)]]
        self._tally(records)
        self.writer.write(records)

    def _handle_banners(self, ban: np.ndarray) -> None:
        hdr = ban["h"]
        answer = hdr["repeat"] != REPEAT_DUP
        self.reanswered += int((hdr["repeat"] == REPEAT_RETRANSMIT).sum())
        self._queue_rst(hdr[answer])
        records = []
        for row in ban[self._recorded(hdr)]:
            e = row["h"]
            data = row["data"][: int(e["data_len"])].tobytes()
            rec = self._base_record(e)
            probe = self._probe(int(e["variant"]))
            rec["banner"] = _banner_text(data)
            rec["data"] = base64.b64encode(data).decode("ascii")
            rec[probe.name] = probe.parse(rec["saddr"], rec["sport"], data)
            records.append(rec)
        self._tally(records)
        self.writer.write(records)

    def _tally(self, records: list[dict[str, Any]]) -> None:
        # A hit is what the probe is after: a SYN-ACK for SYN-only probes, a banner otherwise.
        syn_only = {p.name for p in self.probes if not p.handshake}
        for r in records:
            if r["repeat"]:
                continue
            cls = r["classification"]
            self.by_class[cls] += 1
            if cls == "banner" or (cls == "synack" and r["probe"] in syn_only):
                self.hits += 1


def _banner_text(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")
