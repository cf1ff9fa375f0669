"""Drain the XDP rings in batches, classify and record.

Each poll reads a batch of fixed-size records straight from the mmapped
rings as one numpy structured array. The batch goes to the replies stage
(replies.py), which answers what needs answering, and is then recorded:
validated further where only user space can, classified and written as JSON
lines, column-wise.
"""

from __future__ import annotations

import base64
import mmap
import select
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from . import fields, packets
from .addrtext import ipv6_texts
from .events import (
    ADDR6_DTYPE,
    CLASSIFICATION,
    DATA_MAX,
    EV_UNVALIDATED,
    ICMP6_CLASSES,
    ICMP_CLASSES,
    Kind,
    addr_text,
    banner_dtype,
    event_dtype,
    event_keys,
    event_targets,
    short_dtype,
    target_texts,
)
from .fields import Source
from .jsonlines import Lines
from .output import RecordWriter
from .plan import split_variant
from .probes import ProbeKind

if TYPE_CHECKING:
    from .replies import Replies
    from .segments import SegmentTable
    from .steps import StepTable


_BUSY = np.uint32(1 << 31)
_DISCARD = np.uint32(1 << 30)
_HDR = 8  # u32 len (with BUSY/DISCARD bits) + u32 page offset
# A batch's lines and columns exist at once: bound the batch, not the ring,
# so peak memory stays flat however fast replies arrive.
_EVENT_BATCH = 8192
_SMALL_BATCH = 2048
_BATCH_WAIT = 0.002
# Distinct banners whose parse is remembered (cleared when full: a bound, not an LRU).
_PARSE_MEMO = 16384
_BANNER_BATCH = 4096
_SHORT_BATCH = 8192
_NO_SHORTS = np.zeros(0, short_dtype(4))


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
        # Select on the record field, not the whole slot: a boolean index of slots (with their
        # padding, a void field) costs ~840 ns a banner record against ~90 ns this way (a copy either way).
        out = view["rec"][(lens & _DISCARD) == 0]
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


BANNER_DTYPE = banner_dtype(4)


class RingReader:
    """The XDP program's rings: small records, banners and, if the scan has it, short banners
    (events.SHORT_MAX). `poll()` waits for any and drains each."""

    def __init__(self, prog: Any, ringbuf_pages: int, banner_pages: int | None = None, short_pages: int = 0):
        page = mmap.PAGESIZE
        # An IPv6 scan's program records whole addresses after the IPv4 layout (events.EVENT6_DTYPE).
        self.family = prog.params.family
        small, big = event_dtype(self.family), banner_dtype(self.family)
        self.small = MmapRing(prog.map_fd("events"), ringbuf_pages * page, small.itemsize, small)
        self.big = MmapRing(prog.map_fd("banners"), (banner_pages or ringbuf_pages) * page, big.itemsize, big)
        self.short: MmapRing | None = None
        if short_pages:
            dt = short_dtype(self.family)
            self.short = MmapRing(prog.map_fd("shorts"), short_pages * page, dt.itemsize, dt)
        self._ep = select.epoll()
        for ring in self.rings():
            self._ep.register(ring.fd, select.EPOLLIN)

    def rings(self) -> list[MmapRing]:
        return [r for r in (self.small, self.big, self.short) if r is not None]

    def _read(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        short = self.short.read(_SHORT_BATCH) if self.short is not None else _NO_SHORTS
        return self.small.read(_EVENT_BATCH), self.big.read(_BANNER_BATCH), short

    def poll(self, timeout_ms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A batch of each ring: small records, banners, short banners (empty without that ring)."""
        got = self._read()
        if not any(len(g) for g in got) and timeout_ms > 0:
            self._ep.poll(timeout_ms / 1000)
            got = self._read()
        return got

    def backlog(self) -> float:
        return max(r.fill() for r in self.rings())

    def close(self) -> None:
        self._ep.close()
        for ring in self.rings():
            ring.close()


_SUCCESS = (Kind.SYNACK, Kind.BANNER, Kind.UDP, Kind.ECHOREPLY)
_TCP_KINDS = (Kind.SYNACK, Kind.ZEROWIN, Kind.RST, Kind.BANNER)


def _not_step_evidence(ev: np.ndarray) -> np.ndarray:
    """Events that may be records: not a FIN or an ACK, which only a multi-step probe's step table uses."""
    return (ev["kind"] != Kind.FIN) & (ev["kind"] != Kind.ACKED)


# Classifications as codes into one vocabulary, so a batch is classified by indexing.
CLASS_VOCAB = sorted(
    {*CLASSIFICATION.values(), *ICMP_CLASSES.values(), *ICMP6_CLASSES.values(), "unknown", "icmp-other"}
)
_CLASS_CODE = {c: i for i, c in enumerate(CLASS_VOCAB)}
_CLASS_BY_KIND = np.array([_CLASS_CODE[CLASSIFICATION.get(k, "unknown")] for k in range(256)])
_ICMP_CLASS_BY_TYPE = np.array([_CLASS_CODE[ICMP_CLASSES.get(t, "icmp-other")] for t in range(256)])
_ICMP6_CLASS_BY_TYPE = np.array([_CLASS_CODE[ICMP6_CLASSES.get(t, "icmp-other")] for t in range(256)])
_HIT_CLASSES = np.array([c in ("banner", "udp", "echoreply") for c in CLASS_VOCAB])
_SYNACK_CODE = _CLASS_CODE["synack"]
_BANNER_CODE = _CLASS_CODE["banner"]


class Receiver:
    """Turns ring-buffer batches into records, handing each to the replies stage first.

    The event's variant names the probe (and attempt) that was answered, see
    plan.ProbePlan.
    """

    def __init__(
        self,
        reader: RingReader,
        link: packets.LinkParams,
        replies: Replies,
        writer: RecordWriter,
        plan: Any,
        key: bytes,
        output_repeats: bool = False,
    ):
        self.reader = reader
        self.link = link
        self.replies = replies
        self.writer = writer
        self.plan = plan
        self.probes = plan.probes
        self.key = key
        self.output_repeats = output_repeats
        # Multi-connection probes' steps (steps.py), when the scan has any; set by the scanner.
        self.steps: StepTable | None = None
        # --banner-bytes: banner probes' answers reassembled past their first segment; set by the scanner.
        self.segments: SegmentTable | None = None
        self._multi = np.asarray(plan.multi, bool)
        self._later = np.asarray(plan.later_step, bool)
        # An IPv6 scan's records: whole addresses from the event's IPv6 members, ours as text, ICMPv6
        # types classified as ICMPv6 numbers them.
        self.family = link.family if link is not None else 4  # (unit tests build one without a link)
        self._v6_cols = {"saddr": "saddr6", "icmp_responder": "icmp_responder6"} if self.family == 6 else {}
        self._our_text = b""
        if self.family == 6:
            ours = np.array([(link.src_ip >> 64, link.src_ip & ((1 << 64) - 1))], dtype=ADDR6_DTYPE)
            self._our_text = orjson.dumps(ipv6_texts(ours)[0])
        self._icmp_classes = _ICMP6_CLASS_BY_TYPE if self.family == 6 else _ICMP_CLASS_BY_TYPE
        self.by_class: Tally[str] = Tally()
        self.hits = 0
        self.invalid = 0
        self.truncated = 0  # banners longer than the record keeps (DATA_MAX), marked in their record
        self.error: BaseException | None = None
        self._draining = False
        self._abandon: threading.Event | None = None  # set by stop(): a second Ctrl-C
        # Computed once: _tally consults it for every record.
        # Per probe index: a SYN-ACK is itself the hit (SYN-only probes).
        self._syn_only = np.array([p.kind is ProbeKind.SYN for p in self.probes], bool)
        # Per probe index, for banner probes of one connection: SYN-ACKs (handshakes completed) and
        # banners (answers to them); the difference is what the summary warns about.
        self._handshake = np.array([p.kind is ProbeKind.BANNER for p in self.probes], bool) & ~self._multi
        self.handshakes = np.zeros(len(self.probes), np.int64)
        self.answered = np.zeros(len(self.probes), np.int64)
        self._probe_names = np.array([p.name for p in self.probes], dtype=object)
        self._fields = [fields.field(name) for name in writer.fields]
        self._vocab = {"classification": CLASS_VOCAB, "probe": self._probe_names.tolist()}
        self._icmp_probe_mask = np.array([p.transport == "icmp" for p in self.probes])
        self._parsed: dict[tuple[int, bytes], tuple[bytes, bytes, bytes, bool, dict[str, Any]]] = {}
        self._dotted = [f for f in writer.fields if "." in f]  # a probe's parsed field (-f http.server)
        # Called with the time a poll started whenever it drained both rings (--checkpoint's marks:
        # every event that arrived before then has been handed to the writer).
        self.on_drained: Callable[[float], None] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="receiver", daemon=True)
        # bpf_ktime_get_ns() is CLOCK_MONOTONIC: one offset maps it to wall time.
        self._wall_offset_ns = time.time_ns() - time.monotonic_ns()

    def start(self) -> None:
        self._thread.start()

    def stop(self, abandon: threading.Event | None = None) -> None:
        """Drain the rings to their last record (XDP detached first), then stop.

        No timeout: a record taken from the network is written or counted.
        `abandon` (a second Ctrl-C) stops at the current batch; count_unread()
        then says how many records stayed in the rings.
        """
        self._abandon = abandon
        self._stop.set()
        while self._thread.is_alive():
            self._thread.join(0.1)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                n = self.drain_once(50)
                if 0 < n < _SMALL_BATCH:
                    # A batch costs ~0.3 ms whatever its size: draining a few hundred
                    # events at a time spent more on that than on the events (5.1 s of
                    # CPU for 4M events; 1.8 s with this wait). Two milliseconds let the
                    # next batch fill; replies wait that long, servers a second.
                    self._stop.wait(_BATCH_WAIT)
            # Stopping: answering is pointless now (XDP is detached), recording is not.
            self._draining = True
            abandon = self._abandon
            while not (abandon is not None and abandon.is_set()):
                if self.drain_once(0) == 0:
                    break
        except BaseException as exc:  # surfaced by the scanner, which stops the scan
            self.error = exc

    def count_unread(self) -> int:
        """Records still in the rings (after an abandoned or failed drain) that would have been written."""
        if self._thread.is_alive():
            return 0
        n = 0
        for ring in self.reader.rings():
            while True:
                ev = ring.read(1 << 16)
                if len(ev) == 0:
                    break
                hdr = ev["h"] if ev.dtype.names and "h" in ev.dtype.names else ev
                n += int((self._recorded(hdr) & _not_step_evidence(hdr)).sum())
        return n

    def drain_once(self, timeout_ms: int) -> int:
        if not self._draining:
            self.replies.settle()  # held in-kernel answers, once proven or refused
            if self.steps is not None:
                self.steps.sweep()  # steps whose answer did not come in time
            if self.segments is not None:
                self.segments.sweep()  # answers that stopped coming
        t0 = time.monotonic()
        hdr, big, short = self.reader.poll(timeout_ms)
        if len(hdr):
            self._handle_small(hdr)
        if len(big):
            self._handle_big(big)
        if len(short):
            self._handle_big(short)  # (a scan with this ring has neither steps nor segments)
        if self.steps is not None and len(big) < _BANNER_BATCH:
            self.steps.release()  # the banner ring read to its end: answers without data now count
        ends = len(hdr) < _EVENT_BATCH and len(big) < _BANNER_BATCH and len(short) < _SHORT_BATCH
        if self.on_drained is not None and ends:
            self.on_drained(t0)
        return len(hdr) + len(big) + len(short)

    # -- validation user space adds ----------------------------------------
    def _quoted_udp_ok(self, ev: np.ndarray) -> np.ndarray:
        """ICMP errors quoting a UDP probe: the quoted checksum must be ours.

        XDP only checks the source-port slot for these; the checksum covers
        the cookie we put in the payload, so a forged quote fails here.
        """
        ok = np.ones(len(ev), dtype=bool)
        idx, _ = split_variant(ev["variant"], self.plan.P)
        for i in np.unique(idx):
            probe = self.probes[int(i)]
            if probe.transport != "udp":
                continue
            m = idx == i
            sub = ev[m]
            them = event_targets(sub)
            pay = self.plan.udp_payloads(self.key, self.link.src_ip, probe, them, sub["sport"], sub["dport"])
            want = packets.udp_checksums(self.link, them, sub["sport"], sub["dport"], pay)
            ok[m] = want == sub["seq"]
        return ok

    # -- records ---------------------------------------------------------
    def _derived(self, ev: np.ndarray) -> dict[str, np.ndarray]:
        """What both record paths compute from a batch: which fields apply, class codes, times."""
        kind = ev["kind"]
        probe_i, attempt = split_variant(ev["variant"].astype(np.int64), self.plan.P)
        is_icmp = kind == Kind.ICMP
        cls = _CLASS_BY_KIND[kind]
        if is_icmp.any():
            cls[is_icmp] = self._icmp_classes[ev["icmp_type"][is_icmp]]
        return {
            "probe_i": probe_i,
            "attempt": attempt,
            "is_tcp": np.isin(kind, _TCP_KINDS),
            "is_icmp": is_icmp,
            "has_ports": (kind != Kind.ECHOREPLY) & ~self._icmp_probe_mask[probe_i],
            "cls": cls,
            "ms": (ev["ts_ns"].astype(np.int64) + self._wall_offset_ns) // 1_000_000,
        }

    def _lines(self, ev: np.ndarray, data: dict[str, Callable[[], Any]] | None = None) -> bytes:
        """The JSON lines of a batch of events, without a dict per record.

        The output table (fields.py) says what each field is: a zb_event member
        as it is, or one of the values derived here; `data` adds the fields of
        records that carry data (the banner path's). A field with neither is null.
        """
        d = self._derived(ev)
        valid = {Source.PORTS: d["has_ports"], Source.TCP: d["is_tcp"], Source.ICMP: d["is_icmp"]}
        derived: dict[str, Callable[[], Any]] = {
            "classification": lambda: d["cls"],
            "success": lambda: np.isin(ev["kind"], _SUCCESS),
            "repeat": lambda: ev["repeat"] != 0,
            "timestamp": lambda: d["ms"],
            "probe": lambda: d["probe_i"],
            "validated": lambda: (ev["flags"] & EV_UNVALIDATED) == 0,
            "attempt": lambda: d["attempt"],
            "tarpit_probe": lambda: d["probe_i"] == self.plan.tarpit_index,
            **(data or {}),
        }
        out = Lines(len(ev))
        for i, f in enumerate(self._fields):
            out.key(f.name, first=i == 0)
            if f.name == "daddr" and self.family == 6:
                out.const(self._our_text)  # (an IPv6 event keeps only our address's last 4 bytes)
                continue
            if f.event is not None:
                values = ev[self._v6_cols.get(f.event, f.event)]
            elif f.name in derived:
                values = derived[f.name]()
            else:
                out.const(b"null")
                continue
            out.put(f.type, values, valid.get(f.source), self._vocab.get(f.name))
        self._tally_batch(ev, d)
        return out.build()

    def _tally_batch(self, ev: np.ndarray, d: dict[str, np.ndarray]) -> None:
        """_tally for a batch: counts by class and hits, vectorised."""
        fresh = ev["repeat"] == 0
        cls = d["cls"][fresh]
        for code, count in zip(*np.unique(cls, return_counts=True), strict=True):
            self.by_class[CLASS_VOCAB[code]] += int(count)
        probe_i = d["probe_i"][fresh]
        hit = _HIT_CLASSES[cls] | ((cls == _SYNACK_CODE) & self._syn_only[probe_i])
        hit &= probe_i != self.plan.tarpit_index
        self.hits += int(hit.sum())
        if self._handshake.any():
            n = len(self.probes)
            self.handshakes += np.bincount(probe_i[cls == _SYNACK_CODE], minlength=n)
            self.answered += np.bincount(probe_i[cls == _BANNER_CODE], minlength=n)

    def handshake_counts(self) -> dict[str, dict[str, int]]:
        """Per banner probe: handshakes completed (SYN-ACKs), answered (banners) and not answered."""
        out: dict[str, dict[str, int]] = {}
        for i in np.flatnonzero(self._handshake):
            done, answered = int(self.handshakes[i]), int(self.answered[i])
            c = out.setdefault(self.probes[i].name, {"completed": 0, "answered": 0, "unanswered": 0})
            c["completed"] += done
            c["answered"] += min(answered, done)
            c["unanswered"] += max(0, done - answered)
        return out

    def tally_result(self, classification: str, hit: bool) -> None:
        """A record written outside the batch paths (a multi-connection probe's result, steps.py)."""
        self.by_class[classification] += 1
        self.hits += int(hit)

    def _recorded(self, ev: np.ndarray) -> np.ndarray:
        return np.ones(len(ev), bool) if self.output_repeats else ev["repeat"] == 0

    def _entries(self, ev: np.ndarray) -> np.ndarray:
        return split_variant(ev["variant"].astype(np.int64), self.plan.P)[0]

    def _handle_small(self, ev: np.ndarray) -> None:
        if not self._draining:
            self.replies.answer(ev)
        keep = self._recorded(ev)
        # Never records of their own: a FIN (an answer only to a step), an ACK (a step's proof that the
        # server has our request), and any event of a later step of a multi-connection probe (its
        # result is one record, written by the step table).
        entry = self._entries(ev)
        keep &= _not_step_evidence(ev) & ~self._later[entry]
        if self.steps is not None:
            # Tarpit verdicts first: an answer in the same batch must already know its host is one.
            tarpit = (entry == self.plan.tarpit_index) & (ev["kind"] == Kind.SYNACK)
            if tarpit.any():
                self.steps.tarpit(event_keys(ev[tarpit]))
            mine = self._multi[entry]
            if mine.any():
                self.steps.events(ev[mine])
        if self.segments is not None:
            self._segment_events(ev, entry)
        icmp = ev["kind"] == Kind.ICMP
        if icmp.any():
            valid = np.ones(len(ev), dtype=bool)
            valid[icmp] = self._quoted_udp_ok(ev[icmp])
            self.invalid += int((~valid).sum())
            keep &= valid
        kept = ev[keep]
        if len(kept):
            self.writer.write_lines(self._lines(kept), len(kept))

    def _segment_events(self, ev: np.ndarray, entry: np.ndarray) -> None:
        """SYN-ACKs, FINs and RSTs of the connections the segment table reassembles."""
        table = self.segments
        assert table is not None
        table.answering = not self._draining
        mine = ev[self.replies.segmented[entry]] if self.replies.segmented is not None else ev[:0]
        kind = mine["kind"]
        for k, handle in ((Kind.SYNACK, table.synacks), (Kind.FIN, table.fins), (Kind.RST, table.resets)):
            sel = kind == k
            if k == Kind.RST:
                sel &= (mine["flags"] & EV_UNVALIDATED) == 0  # a bare RST proves nothing
            if sel.any():
                handle(mine[sel])

    def _handle_big(self, big: np.ndarray) -> None:
        hdr = big["h"]
        if not self._draining:
            self.replies.answer(hdr)
        if self.segments is not None:
            seg = self.replies.segmented[self._entries(hdr)]  # type: ignore[index]
            if seg.any():
                sub = big[seg]
                self.segments.answering = not self._draining
                self.segments.segments(sub["h"], _row_bytes(sub))
                big, hdr = big[~seg], hdr[~seg]
        steps = self._multi[self._entries(hdr)]
        if steps.any():
            # A multi-connection probe's answers go to its step table, not to records of their own.
            if self.steps is not None:
                sub = big[steps]
                self.steps.events(sub["h"], _row_bytes(sub))
            big, hdr = big[~steps], hdr[~steps]
        rows = big[self._recorded(hdr)]
        if len(rows) == 0:
            return
        h = rows["h"]
        # The record keeps DATA_MAX bytes of a segment: a longer one is marked, never passed off as whole.
        cut = h["payload_len"] > h["data_len"]
        self.truncated += int((cut & (h["repeat"] == 0)).sum())
        self.write_banners(h, _row_bytes(rows), cut)

    def write_banners(self, h: np.ndarray, datas: list[bytes], cut: np.ndarray) -> None:
        """Banner records: event headers, the data each carries, and whether that data is cut short
        (a segment longer than its record; with --banner-bytes, an answer that ended before it was whole)."""
        probe_i = split_variant(h["variant"], self.plan.P)[0].tolist()
        # IPv4: raw addresses, made text only for a parse (a memo miss); IPv6: their text.
        ips = target_texts(h) if self.family == 6 else h["saddr"].tolist()
        parts = [
            self._banner_parts(p, d, ip, port)
            for p, d, ip, port in zip(probe_i, datas, ips, h["sport"].tolist(), strict=True)
        ]
        banner, data, parsed, match, values = zip(*parts, strict=True)
        carried: dict[str, Callable[[], Any]] = {
            "banner": lambda: banner,
            "data": lambda: data,
            "truncated": lambda: cut,
            "app_match": lambda: np.array(match, bool),
        }
        names = self._probe_names[probe_i]
        for name in set(names.tolist()):
            mine = names == name
            carried[name] = lambda mine=mine: [p if m else b"null" for p, m in zip(parsed, mine, strict=True)]
        for dotted in self._dotted:  # -f http.server: one of a probe's parsed fields
            name, _, sub = dotted.partition(".")
            carried[dotted] = lambda name=name, sub=sub: [
                orjson.dumps(v.get(sub)) if n == name else b"null" for v, n in zip(values, names, strict=True)
            ]
        self.writer.write_lines(self._lines(h, carried), len(h))

    def _banner_parts(
        self, probe_index: int, data: bytes, ip: int | str, port: int
    ) -> tuple[bytes, bytes, bytes, bool, dict[str, Any]]:
        """A banner's per-record JSON: text, base64, the probe's parse, whether it matched, and the parse.

        Memoised by (probe, bytes) for probes whose parse reads only the
        data: repeated banners (most of the Internet's SSH, FTP, SMTP
        greetings) are parsed once.
        """
        key = (probe_index, data)
        hit = self._parsed.get(key)
        if hit is not None:
            return hit
        probe = self.probes[probe_index]
        parsed = probe.parse(ip if isinstance(ip, str) else addr_text(ip), port, data)
        parts = (
            orjson.dumps(_banner_text(data)),
            b'"' + base64.b64encode(data) + b'"',
            orjson.dumps(parsed),
            probe.matches(parsed),
            parsed,
        )
        if probe.parse_uses_target or len(data) > DATA_MAX:
            # (Reassembled answers, --banner-bytes, are not kept: the memo's bound is in entries.)
            return parts
        if len(self._parsed) >= _PARSE_MEMO:
            self._parsed.clear()
        self._parsed[key] = parts
        return parts


def _row_bytes(big: np.ndarray) -> list[bytes]:
    """The bytes each banner record holds: the batch's data copied once (up to its longest), then a
    slice of that each. (A numpy row, sliced and copied per record, cost several times as much.)"""
    data = big["data"]
    # (data_len never exceeds the record's data: XDP copies at most that much. Capped all the same:
    # one wrong length must not shift every later record's bytes.)
    lens = np.minimum(big["h"]["data_len"], data.shape[1]).tolist()
    width = max(lens, default=0)
    if width == 0:
        return [b""] * len(lens)
    buf = data[:, :width].tobytes()
    return [buf[at : at + n] for at, n in zip(range(0, len(lens) * width, width), lens, strict=True)]


def _banner_text(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")
