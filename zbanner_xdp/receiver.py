"""Drain the XDP ring buffer in batches, answer, classify and record.

Events are collected raw by a minimal callback and decoded per poll as one
numpy structured array; replies for the whole batch are built vectorised
and queued for the sender, which sends them before any new SYN.
"""

from __future__ import annotations

import base64
import mmap
import select
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
    EV_ANSWERED,
    EV_UNVALIDATED,
    EVENT_DTYPE,
    EVENT_SIZE,
    ICMP_CLASSES,
    Kind,
)
from .output import RecordWriter
from .sender import ReplyQueue


def ip_from_raw(raw: int) -> str:
    return socket.inet_ntoa(struct.pack("<I", raw))


def _bswap32(a: np.ndarray) -> np.ndarray:
    return a.astype(np.uint32).byteswap()


_BUSY = np.uint32(1 << 31)
_DISCARD = np.uint32(1 << 30)
_HDR = 8  # u32 len (with BUSY/DISCARD bits) + u32 page offset
# Records of a batch exist as dicts at once (~1.5 KB each): bound the batch,
# not the ring, so peak memory stays flat however fast replies arrive.
_EVENT_BATCH = 8192
_BANNER_BATCH = 4096


class MmapRing:
    """A BPF ring buffer of fixed-size records, read through its mmap.

    The kernel maps the data area twice back to back, so any run of records
    from the consumer to the producer position is one contiguous slice: a
    batch is a single strided numpy view, copied out before the consumer
    position moves on. No per-record Python, no callback.
    """

    def __init__(self, map_fd: int, data_size: int, record_size: int, dtype: np.dtype):
        self.page = mmap.PAGESIZE
        self.size = data_size
        self.mask = data_size - 1
        self.stride = (record_size + _HDR + 7) & ~7
        fields: list[tuple] = [("len", "<u4"), ("pgoff", "<u4"), ("rec", dtype)]
        pad = self.stride - _HDR - dtype.itemsize
        if pad:
            fields.append(("_pad", "V", pad))
        self.dtype = np.dtype(fields)
        self.fd = map_fd
        self._cons = mmap.mmap(map_fd, self.page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._prod = mmap.mmap(
            map_fd, self.page + 2 * data_size, mmap.MAP_SHARED, mmap.PROT_READ, offset=self.page
        )
        self._cons_pos = np.frombuffer(self._cons, dtype=np.uint64, count=1)
        self._prod_pos = np.frombuffer(self._prod, dtype=np.uint64, count=1)
        self._data = np.frombuffer(self._prod, dtype=np.uint8, offset=self.page)

    def read(self, limit: int = 1 << 16) -> np.ndarray:
        cons = int(self._cons_pos[0])
        prod = int(self._prod_pos[0])
        n = min((prod - cons) // self.stride, limit)
        if n <= 0:
            return np.zeros(0, self.dtype)["rec"]
        off = cons & self.mask
        view = self._data[off : off + n * self.stride].view(self.dtype)
        lens = view["len"]
        busy = np.flatnonzero(lens & _BUSY)
        if len(busy):
            n = int(busy[0])  # still being written: stop before it
            view = view[:n]
            lens = lens[:n]
        out = view[(lens & _DISCARD) == 0]["rec"].copy()
        # Publish the new consumer position only after the copy.
        self._cons_pos[0] = cons + n * self.stride
        return out

    def fill(self) -> float:
        """How full the ring is, 0..1 (two loads from the mapped pages, no syscall)."""
        if self._cons_pos is None:
            return 0.0
        return (int(self._prod_pos[0]) - int(self._cons_pos[0])) / self.size

    def close(self) -> None:
        self._cons_pos = self._prod_pos = self._data = None  # type: ignore[assignment]
        for m in (self._cons, self._prod):
            try:
                m.close()
            except BufferError:
                pass


BANNER_DTYPE = np.dtype([("h", EVENT_DTYPE), ("data", "u1", (DATA_MAX,))])


class RingReader:
    """Both rings of the XDP program; `poll()` waits for either and drains both."""

    def __init__(self, bpf: Any, ringbuf_pages: int, banner_pages: int | None = None):
        page = mmap.PAGESIZE
        self.small = MmapRing(bpf[b"events"].map_fd, ringbuf_pages * page, EVENT_SIZE, EVENT_DTYPE)
        self.big = MmapRing(
            bpf[b"banners"].map_fd, (banner_pages or ringbuf_pages) * page, BANNER_EVENT_SIZE, BANNER_DTYPE
        )
        self._ep = select.epoll()
        self._ep.register(self.small.fd, select.EPOLLIN)
        self._ep.register(self.big.fd, select.EPOLLIN)

    def poll(self, timeout_ms: int) -> tuple[np.ndarray, np.ndarray]:
        hdr, ban = self.small.read(_EVENT_BATCH), self.big.read(_BANNER_BATCH)
        if len(hdr) == 0 and len(ban) == 0 and timeout_ms > 0:
            self._ep.poll(timeout_ms / 1000)
            hdr, ban = self.small.read(_EVENT_BATCH), self.big.read(_BANNER_BATCH)
        return hdr, ban

    def backlog(self) -> float:
        return max(self.small.fill(), self.big.fill())

    def close(self) -> None:
        self._ep.close()
        self.small.close()
        self.big.close()


REPEAT_DUP = 1  # a network duplicate: recorded only with --output-repeats
REPEAT_RETRANSMIT = 2  # the server retransmitted: our answer was lost, answer again

_SUCCESS = (Kind.SYNACK, Kind.BANNER, Kind.UDP, Kind.ECHOREPLY)
_TCP_KINDS = (Kind.SYNACK, Kind.ZEROWIN, Kind.RST, Kind.BANNER)
_CLASS_BY_KIND = np.array([CLASSIFICATION.get(k, "unknown") for k in range(256)], dtype=object)
_ICMP_CLASS_BY_TYPE = np.array([ICMP_CLASSES.get(t, "icmp-other") for t in range(256)], dtype=object)
_OCTETS = [str(i) for i in range(256)]


def _dotted(raw: np.ndarray) -> list[str]:
    """Dotted quads for raw (network-order) addresses, a batch at a time."""
    o = raw.astype("<u4").view(np.uint8).reshape(-1, 4).tolist()
    t = _OCTETS
    return [f"{t[a]}.{t[b]}.{t[c]}.{t[d]}" for a, b, c, d in o]


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
        # Computed once: _tally consults it for every record.
        self._syn_only_names = {p.name for p in self.probes if p.transport == "tcp" and not p.handshake}
        self._probe_names = np.array([p.name for p in self.probes], dtype=object)
        self._icmp_probe_mask = np.array([p.transport == "icmp" for p in self.probes])
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
        answer = ev[(ev["repeat"] != REPEAT_DUP) & ((ev["flags"] & EV_ANSWERED) == 0)]
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
    def _records(self, ev: np.ndarray) -> list[dict[str, Any]]:
        """Records for a batch of events, built column by column.

        Every conversion (addresses, timestamps, classifications, which
        fields apply) is vectorised; the only per-record Python left is
        zipping the columns into dicts for orjson.
        """
        n = len(ev)
        if n == 0:
            return []
        kind = ev["kind"]
        variant = ev["variant"].astype(np.int64)
        probe_i = variant % self.plan.P
        is_tcp = np.isin(kind, _TCP_KINDS)
        is_icmp = kind == Kind.ICMP
        icmp_probe = self._icmp_probe_mask[probe_i]
        has_ports = (kind != Kind.ECHOREPLY) & ~icmp_probe
        cls = _CLASS_BY_KIND[kind].astype(object)
        if is_icmp.any():
            cls[is_icmp] = _ICMP_CLASS_BY_TYPE[ev["icmp_type"][is_icmp]]
        ms = ((ev["ts_ns"].astype(np.int64) + self._wall_offset_ns) // 1_000_000).astype("datetime64[ms]")
        stamps = np.char.add(np.datetime_as_string(ms, unit="ms"), "Z")

        def opt(values: np.ndarray, mask: np.ndarray) -> list:
            out = values.astype(object)
            out[~mask] = None
            return out.tolist()

        responder = np.full(n, None, dtype=object)
        if is_icmp.any():
            responder[is_icmp] = _dotted(ev["icmp_responder"][is_icmp])
        columns = {
            "saddr": _dotted(ev["saddr"]),
            "sport": opt(ev["sport"], has_ports),
            "daddr": _dotted(ev["daddr"]),
            "dport": opt(ev["dport"], has_ports),
            "classification": cls.tolist(),
            "success": np.isin(kind, _SUCCESS).tolist(),
            "repeat": (ev["repeat"] != 0).tolist(),
            "timestamp": stamps.tolist(),
            "ttl": ev["ttl"].tolist(),
            "window": opt(ev["window"], is_tcp),
            "ipid": ev["ipid"].tolist(),
            "seqnum": opt(ev["seq"], is_tcp),
            "acknum": opt(ev["ack"], is_tcp),
            "tcp_flags": opt(ev["tcp_flags"], is_tcp),
            "probe": self._probe_names[probe_i].tolist(),
            "icmp_type": opt(ev["icmp_type"], is_icmp),
            "icmp_code": opt(ev["icmp_code"], is_icmp),
            "icmp_responder": responder.tolist(),
            "validated": ((ev["flags"] & EV_UNVALIDATED) == 0).tolist(),
            "attempt": (variant // self.plan.P).tolist(),
            "tarpit_probe": (probe_i == self.plan.tarpit_index).tolist(),
        }
        keys = list(self.writer.template())
        cols = [columns.get(k) or [None] * n for k in keys]
        return [dict(zip(keys, row, strict=True)) for row in zip(*cols, strict=True)]

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
        records = self._records(ev[keep])
        self._tally(records)
        self.writer.write(records)

    def _handle_big(self, big: np.ndarray) -> None:
        hdr = big["h"]
        tcp = hdr["kind"] == Kind.BANNER
        answer = tcp & (hdr["repeat"] != REPEAT_DUP) & ((hdr["flags"] & EV_ANSWERED) == 0)
        self.reanswered += int((answer & (hdr["repeat"] == REPEAT_RETRANSMIT)).sum())
        self._queue_rst(hdr[answer])
        rows = big[self._recorded(hdr)]
        records = self._records(rows["h"])
        for rec, row in zip(records, rows, strict=True):
            data = row["data"][: int(row["h"]["data_len"])].tobytes()
            probe = self.probes[self._probe_index(int(row["h"]["variant"]))]
            rec["banner"] = _banner_text(data)
            rec["data"] = base64.b64encode(data).decode("ascii")
            parsed = probe.parse(rec["saddr"], rec["sport"], data)
            rec[probe.name] = parsed
            rec["app_match"] = probe.matches(parsed)
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


def _banner_text(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")
