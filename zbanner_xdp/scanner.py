"""One scan: targets -> SYNs out, replies in, records and summary out.

Threads: the main thread sends (replies first, then new SYNs, within the
rate) and prints status; a receiver thread drains the ring buffer. Every
exit path — done, Ctrl-C, SIGTERM, full disk, an exception — goes through
the same shutdown: stop sending, drain, detach XDP, flush, write metadata.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import signal
import threading
import time
from typing import Any

import numpy as np
import orjson

from . import __version__, cookie, packets, targets
from .bpfprog import BpfSetupError, ProgParams, RecvProgram
from .config import ScanConfig
from .events import Counter
from .netinfo import NetParams, resolve
from .output import OutputError, RecordWriter
from .receiver import Receiver, RingReader
from .sender import RateLimiter, ReplyQueue, SendError, TxRing
from .status import StatusLine


class ScanError(RuntimeError):
    """A user-facing failure: one line, exit status 2."""


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ip_int(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def source_ports(
    key: bytes, daddr: np.ndarray, dport: np.ndarray, lo: int, hi: int, variants: int, variant: int = 0
) -> np.ndarray:
    """Spread probes over the source-port range, recoverable without state.

    sport = lo + variant + variants * slot, with the slot a keyed mix of the
    target, so the XDP side recovers the variant as (port - lo) % variants.
    """
    slots = max(1, (hi - lo + 1) // variants)
    k = np.uint64(int.from_bytes(key[:8], "little") | 1)
    x = (daddr.astype(np.uint64) << np.uint64(16)) ^ dport.astype(np.uint64) ^ k
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(33)
        x *= np.uint64(0xFF51AFD7ED558CCD)
        x ^= x >> np.uint64(33)
    return (lo + variant + variants * (x % np.uint64(slots))).astype(np.uint16)


class Scanner:
    def __init__(self, cfg: ScanConfig, probes: list[Any]):
        self.cfg = cfg
        self.probes = probes
        self.variants = len(probes)
        self.stop = threading.Event()
        self.reason = "completed"
        self.seed = cfg.seed if cfg.seed is not None else int.from_bytes(os.urandom(4), "little")
        self.key = cookie.new_key()
        try:
            self.space = targets.TargetSpace.build(
                list(cfg.targets), targets.parse_ports(cfg.ports), cfg.blocklist, cfg.allowlist
            )
        except (targets.TargetError, OSError) as exc:
            raise ScanError(str(exc)) from None
        pairs = targets.expected_count(self.space, cfg.shards, cfg.shard, cfg.max_targets)
        self.total = pairs * self.variants  # SYNs this scan sends: one per probe per pair
        self.sent_probes = 0
        self.sent_replies = 0
        self.prog: RecvProgram | None = None
        self.tx: TxRing | None = None
        self.receiver: Receiver | None = None
        self.writer: RecordWriter | None = None
        self.net: NetParams | None = None

    # -- set-up ----------------------------------------------------------
    def _first_target(self) -> str:
        first = int(self.space.addrs_at(np.array([0], dtype=np.uint64))[0])
        return str(ipaddress.IPv4Address(first))

    def _resolve(self, solicit: bool = True) -> NetParams:
        cfg = self.cfg
        try:
            return resolve(self._first_target(), cfg.iface, cfg.source_ip, cfg.gateway_mac, solicit=solicit)
        except Exception as exc:
            raise ScanError(str(exc)) from None

    def _link(self) -> packets.LinkParams:
        assert self.net is not None
        try:
            return packets.LinkParams(
                packets.mac_bytes(self.net.src_mac),
                packets.mac_bytes(self.net.gateway_mac),
                _ip_int(self.net.src_ip),
                self.cfg.ttl,
            )
        except ValueError as exc:
            raise ScanError(str(exc)) from None

    def _batches(self, size: int):
        return targets.iter_batches(
            self.space,
            self.seed,
            self.cfg.shards,
            self.cfg.shard,
            batch=size,
            max_targets=self.cfg.max_targets,
        )

    def _syn_batch(self, link: packets.LinkParams, addrs: np.ndarray, ports: np.ndarray):
        """SYNs for a batch of pairs, every probe of a pair back to back."""
        out = []
        for v in range(self.variants):
            sports = source_ports(
                self.key, addrs, ports, self.cfg.source_port_lo, self.cfg.source_port_hi, self.variants, v
            )
            seqs = cookie.cookies(self.key, link.src_ip, addrs, sports, ports)
            out.append(packets.syn_frames(link, addrs, ports, sports, seqs))
        if self.variants == 1:
            return out[0]
        frames = np.stack([f for f, _ in out], axis=1).reshape(-1, out[0][0].shape[1])
        lens = np.stack([n for _, n in out], axis=1).reshape(-1)
        return frames, lens

    # -- dry run ---------------------------------------------------------
    def dry_run(self, out) -> int:
        self.net = self._resolve(solicit=False)
        link = self._link()
        n = 0
        for addrs, ports in self._batches(4096):
            frames, lens = self._syn_batch(link, addrs, ports)
            for i in range(len(lens)):
                out.write(packets.describe(frames[i, : lens[i]].tobytes()) + "\n")
            n += len(lens)
        out.flush()
        return n

    # -- the scan --------------------------------------------------------
    def run(self) -> dict:
        cfg = self.cfg
        if os.geteuid() != 0:
            raise ScanError("scanning needs root (raw sockets and XDP); try sudo, or --dry-run")
        self.net = self._resolve()
        link = self._link()
        self.started = _now_iso()
        t0 = time.monotonic()
        old_handlers = self._install_signals()
        try:
            self.writer = RecordWriter(cfg.output, probe_fields=[p.name for p in self.probes if p.handshake])
            params = ProgParams(
                src_ip=link.src_ip,
                port_lo=cfg.source_port_lo,
                port_hi=cfg.source_port_hi,
                variants=self.variants,
                banners=any(p.handshake for p in self.probes),
                dedup_window_s=cfg.dedup_window,
                emit_repeats=cfg.output_repeats,
            )
            self.prog = RecvProgram(params, self.key, probe_lens=self._probe_lens())
            self.prog.attach(self.net.iface)
            self.tx = TxRing(self.net.iface)
            replies = ReplyQueue()
            self.replies = replies
            self.receiver = Receiver(
                RingReader(self.prog.bpf),
                link,
                replies,
                self.writer,
                self.probes,
                cfg.ack_window,
                cfg.output_repeats,
            )
            self.receiver.start()
            self._send_loop(link, replies, t0)
        except OutputError as exc:
            self.reason = "output-error"
            self.error = str(exc)
        except (BpfSetupError, SendError) as exc:
            self.reason = "error"
            self.error = str(exc)
        finally:
            summary = self._shutdown(t0)
            self._restore_signals(old_handlers)
        return summary

    def _install_signals(self) -> dict:
        def handler(signum: int, _frame: Any) -> None:
            if self.stop.is_set():
                raise KeyboardInterrupt  # second signal: stop draining too
            self.reason = "interrupted" if signum == signal.SIGINT else "terminated"
            self.stop.set()

        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
        return old

    @staticmethod
    def _restore_signals(old: dict) -> None:
        for sig, h in old.items():
            signal.signal(sig, h)

    def _probe_lens(self) -> list[tuple[int, int]]:
        """Per variant, what the XDP side needs to know the expected ack of a banner."""
        return [self._probe_len(p) for p in self.probes]

    @staticmethod
    def _probe_len(probe: Any) -> tuple[int, int]:
        if not probe.handshake:
            return (0, 0)
        fixed = probe.fixed_payload
        if fixed is not None:
            return (len(fixed), 0)
        short = probe.payload("1.1.1.1", 1)
        long_ = probe.payload("100.100.100.100", 1)
        if len(long_) == len(short):
            return (len(short), 0)
        if len(long_) - len(short) == 8:  # the dotted address is in the payload (e.g. Host:)
            return (len(short) - 7, 1)
        raise ScanError(
            f"probe {probe.name}: payload length must not depend on the target beyond its address"
        )

    def _check_receiver(self) -> None:
        rcv = self.receiver
        if rcv is not None and rcv.error is not None:
            if isinstance(rcv.error, OutputError):
                raise rcv.error
            raise ScanError(f"receiver failed: {rcv.error!r}")

    def _status(self, status: StatusLine, phase: str) -> None:
        assert self.receiver is not None and self.prog is not None
        c = self.prog.counters()
        drops = int(c[Counter.RINGBUF_FULL]) + self.replies.dropped
        status.show(self.sent_probes, self.sent_probes + self.sent_replies, self.hits(), drops, phase)

    def hits(self) -> int:
        assert self.receiver is not None
        return self.receiver.hits

    def _send_loop(self, link: packets.LinkParams, replies: ReplyQueue, t0: float) -> None:
        cfg = self.cfg
        assert self.tx is not None
        limiter = RateLimiter(cfg.rate)
        status = StatusLine(self.total, cfg.quiet)
        self.status = status
        next_status = time.monotonic() + 1.0
        gen_size = 65536 if cfg.rate == 0 else int(min(65536, max(256, cfg.rate // 10)))
        batches = self._batches(gen_size)
        # --max-runtime counts from the first packet, not from the BPF compile.
        t0 = self.send_start = time.monotonic()
        frames = lens = None
        pos = 0
        sending = True
        cool_until: float | None = None
        while True:
            now = time.monotonic()
            if now >= next_status:
                self._status(status, "sending" if sending else "cooldown")
                next_status = now + 1.0
            self._check_receiver()
            if self.stop.is_set():
                break
            if sending and cfg.max_runtime is not None and now - t0 >= cfg.max_runtime:
                self.reason = "max-runtime"
                sending = False
            if not sending:
                if cool_until is None:
                    cool_until = now + cfg.cooldown
                    self.send_end = now
                if now >= cool_until:
                    break
            budget = limiter.budget(self.stop)
            if budget == 0:
                continue
            for rf, rl in replies.take(budget):
                self.tx.send(rf, rl)
                self.sent_replies += len(rl)
                budget -= len(rl)
            while sending and budget > 0:
                if frames is None or pos >= len(lens):
                    try:
                        addrs, ports = next(batches)
                    except StopIteration:
                        sending = False
                        break
                    frames, lens = self._syn_batch(link, addrs, ports)
                    pos = 0
                k = min(budget, len(lens) - pos)
                self.tx.send(frames[pos : pos + k], lens[pos : pos + k])
                pos += k
                budget -= k
                self.sent_probes += k
            if not sending and budget > 0 and replies.pending == 0:
                # Nothing to send in cooldown: wait for replies without spinning.
                self.stop.wait(0.005)

    def _shutdown(self, t0: float) -> dict:
        rcv, prog = self.receiver, self.prog
        err = getattr(self, "error", None)
        if rcv is not None:
            try:
                rcv.stop()
            except OutputError as exc:
                err = str(exc)
                self.reason = "output-error"
        counters = prog.counters() if prog is not None else None
        if prog is not None:
            prog.close()  # detaches XDP: from here the host kernel sees replies again
        if self.tx is not None:
            self.tx.close()
        if rcv is not None and hasattr(self, "status"):
            self._status_final(counters)
        if self.writer is not None:
            self.writer.close()
        summary = self.summary(t0, counters, err)
        if self.cfg.metadata:
            try:
                with open(self.cfg.metadata, "wb") as fh:
                    fh.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
            except OSError as exc:
                raise ScanError(f"cannot write metadata '{self.cfg.metadata}': {exc.strerror}") from None
        if err:
            raise ScanError(err)
        return summary

    def _status_final(self, counters) -> None:
        drops = (int(counters[Counter.RINGBUF_FULL]) if counters is not None else 0) + self.replies.dropped
        self.status.show(self.sent_probes, self.sent_probes + self.sent_replies, self.hits(), drops, "done")

    def _send_rate(self) -> float:
        start = getattr(self, "send_start", None)
        if start is None:
            return 0.0
        span = getattr(self, "send_end", time.monotonic()) - start
        return round(self.sent_probes / span, 1) if span > 0 else 0.0

    def summary(self, t0: float, counters, error: str | None) -> dict:
        dur = time.monotonic() - t0
        rcv = self.receiver
        xdp = {c.name.lower(): int(counters[c]) for c in Counter} if counters is not None else {}
        return {
            "version": __version__,
            "reason": self.reason,
            "error": error,
            "options": self.cfg.as_dict(),
            "seed": self.seed,
            "probe": ",".join(p.name for p in self.probes),
            "targets": {
                "specs": list(self.cfg.targets) or ["0.0.0.0/0"],
                "ports": self.cfg.ports,
                "addresses": int(self.space.n_addrs),
                "pairs": int(self.space.size),
                "this_shard": int(self.total),
            },
            "interface": self.net.iface if self.net else None,
            "source_ip": self.net.src_ip if self.net else None,
            "gateway_mac": self.net.gateway_mac if self.net else None,
            "tx_mode": self.tx.mode if self.tx else None,
            "packets_sent": {
                "probes": self.sent_probes,
                "replies": self.sent_replies,
                "total": self.sent_probes + self.sent_replies,
            },
            "send_rate_pps": self._send_rate(),
            "responses": dict(rcv.by_class) if rcv else {},
            "hits": self.hits() if rcv else 0,
            "repeats": int(xdp.get("repeat", 0)),
            "reanswered": rcv.reanswered if rcv else 0,
            "drops": {
                "ringbuf_full": int(xdp.get("ringbuf_full", 0)),
                "reply_queue": self.replies.dropped if hasattr(self, "replies") else 0,
                "validation_failed": int(xdp.get("bad_cookie", 0)),
            },
            "xdp_counters": xdp,
            "records_written": self.writer.count if self.writer else 0,
            "start": getattr(self, "started", None),
            "end": _now_iso(),
            "duration_s": round(dur, 3),
        }
