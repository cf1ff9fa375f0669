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
from .events import (
    BANNER_EVENT_SIZE,
    CLASSIFICATION,
    DATA_MAX,
    EV_UNVALIDATED,
    EVENT_DTYPE,
    EVENT_SIZE,
    ICMP_CLASSES,
    Kind,
)
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

_SUCCESS = (Kind.SYNACK, Kind.BANNER, Kind.UDP, Kind.ECHOREPLY)


class Receiver:
    """Turns ring-buffer batches into replies and records.

    The event's variant names the probe (and attempt) that was answered, see
    plan.ProbePlan: a SYN-ACK is answered with that probe's payload, or with
    a RST for SYN-only probes.
    """

    def __init__(
        self,
        reader: RingReader,
        link: packets.LinkParams,
        replies: ReplyQueue,
        writer: RecordWriter,
        plan: Any,
        key: bytes,
        ack_window: int,
        output_repeats: bool = False,
    ):
        self.reader = reader
        self.link = link
        self.replies = replies
        self.writer = writer
        self.plan = plan
        self.probes = plan.probes
        self.key = key
        self.ack_window = ack_window
        self.output_repeats = output_repeats
        self.by_class: Tally[str] = Tally()
        self.hits = 0
        self.reanswered = 0
        self.invalid = 0
        self.error: BaseException | None = None
        self._syn_only = {i for i, p in enumerate(self.probes) if p.transport == "tcp" and not p.handshake}
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
        hdr, big = self.reader.poll(timeout_ms)
        if len(hdr):
            self._handle_small(hdr)
        if len(big):
            self._handle_big(big)
        return len(hdr) + len(big)

    def _probe_index(self, variant: int) -> int:
        return variant % self.plan.P

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

    def _answer_synacks(self, ev: np.ndarray) -> None:
        answer = ev[ev["repeat"] != REPEAT_DUP]
        self.reanswered += int((answer["repeat"] == REPEAT_RETRANSMIT).sum())
        self._queue_rst(answer[answer["kind"] == Kind.ZEROWIN])
        synack = answer[answer["kind"] == Kind.SYNACK]
        probe_idx = synack["variant"] % np.uint8(self.plan.P)
        for i in np.unique(probe_idx):
            probe = self.probes[int(i)]
            sub = synack[probe_idx == i]
            if probe.handshake:
                self._queue_probe(sub, probe)
            else:
                self._queue_rst(sub)

    # -- validation user space adds ----------------------------------------
    def _quoted_udp_ok(self, ev: np.ndarray) -> np.ndarray:
        """ICMP errors quoting a UDP probe: the quoted checksum must be ours.

        XDP only checks the source-port slot for these; the checksum covers
        the cookie we put in the payload, so a forged quote fails here.
        """
        ok = np.ones(len(ev), dtype=bool)
        idx = ev["variant"] % np.uint8(self.plan.P)
        for i in np.unique(idx):
            probe = self.probes[int(i)]
            if probe.transport != "udp":
                continue
            m = idx == i
            sub = ev[m]
            them = _bswap32(sub["saddr"])
            pay = self.plan.udp_payloads(self.key, self.link.src_ip, probe, them, sub["sport"], sub["dport"])
            want = packets.udp_checksums(self.link, them, sub["sport"], sub["dport"], pay)
            ok[m] = want == sub["seq"]
        return ok

    # -- records ---------------------------------------------------------
    def _base_record(self, e: np.void) -> dict[str, Any]:
        rec = self.writer.template()
        kind = int(e["kind"])
        variant = int(e["variant"])
        probe_i = self._probe_index(variant)
        probe = self.probes[probe_i]
        ts = dt.datetime.fromtimestamp((int(e["ts_ns"]) + self._wall_offset_ns) / 1e9, dt.timezone.utc)
        tcp = kind in (Kind.SYNACK, Kind.ZEROWIN, Kind.RST, Kind.BANNER)
        has_ports = kind != Kind.ECHOREPLY and probe.transport != "icmp"
        if kind == Kind.ICMP:
            cls = ICMP_CLASSES.get(int(e["icmp_type"]), "icmp-other")
        else:
            cls = CLASSIFICATION.get(kind, "unknown")
        rec.update(
            saddr=ip_from_raw(int(e["saddr"])),
            sport=int(e["sport"]) if has_ports else None,
            daddr=ip_from_raw(int(e["daddr"])),
            dport=int(e["dport"]) if has_ports else None,
            classification=cls,
            success=kind in _SUCCESS,
            repeat=bool(e["repeat"]),
            timestamp=ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            ttl=int(e["ttl"]),
            window=int(e["window"]) if tcp else None,
            ipid=int(e["ipid"]),
            seqnum=int(e["seq"]) if tcp else None,
            acknum=int(e["ack"]) if tcp else None,
            tcp_flags=int(e["tcp_flags"]) if tcp else None,
            probe=probe.name,
            validated=not (int(e["flags"]) & EV_UNVALIDATED),
            attempt=variant // self.plan.P,
            tarpit_probe=probe_i == self.plan.tarpit_index,
        )
        if kind == Kind.ICMP:
            rec.update(
                icmp_type=int(e["icmp_type"]),
                icmp_code=int(e["icmp_code"]),
                icmp_responder=ip_from_raw(int(e["icmp_responder"])),
            )
        return rec

    def _recorded(self, ev: np.ndarray) -> np.ndarray:
        return np.ones(len(ev), bool) if self.output_repeats else ev["repeat"] == 0

    def _handle_small(self, ev: np.ndarray) -> None:
        self._answer_synacks(ev)
        keep = self._recorded(ev)
        icmp = ev["kind"] == Kind.ICMP
        if icmp.any():
            valid = np.ones(len(ev), dtype=bool)
            valid[icmp] = self._quoted_udp_ok(ev[icmp])
            self.invalid += int((~valid).sum())
            keep &= valid
        records = [self._base_record(e) for e in ev[keep]]
        self._tally(records)
        self.writer.write(records)

    def _handle_big(self, big: np.ndarray) -> None:
        hdr = big["h"]
        tcp = hdr["kind"] == Kind.BANNER
        answer = tcp & (hdr["repeat"] != REPEAT_DUP)
        self.reanswered += int((answer & (hdr["repeat"] == REPEAT_RETRANSMIT)).sum())
        self._queue_rst(hdr[answer])
        records = []
        for row in big[self._recorded(hdr)]:
            e = row["h"]
            data = row["data"][: int(e["data_len"])].tobytes()
            rec = self._base_record(e)
            probe = self.probes[self._probe_index(int(e["variant"]))]
            rec["banner"] = _banner_text(data)
            rec["data"] = base64.b64encode(data).decode("ascii")
            parsed = probe.parse(rec["saddr"], rec["sport"], data)
            rec[probe.name] = parsed
            rec["app_match"] = probe.matches(parsed)
            records.append(rec)
        self._tally(records)
        self.writer.write(records)

    def _tally(self, records: list[dict[str, Any]]) -> None:
        # A hit is what the probe is after: a SYN-ACK for SYN-only probes,
        # a banner, a UDP reply or an echo reply otherwise.
        for r in records:
            if r["repeat"]:
                continue
            cls = r["classification"]
            self.by_class[cls] += 1
            if r["tarpit_probe"]:
                continue
            if cls in ("banner", "udp", "echoreply") or (
                cls == "synack" and r["probe"] in self._syn_only_names
            ):
                self.hits += 1

    @property
    def _syn_only_names(self) -> set[str]:
        return {self.probes[i].name for i in self._syn_only}


def _banner_text(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")
