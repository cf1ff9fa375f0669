"""One scan: targets -> probes out, replies in, records and summary out.

Threads: the main thread sends (replies first, then due retransmissions,
then new probes, all within the rate) and prints status; a receiver thread
drains the ring buffer and hands each batch to the replies stage (replies.py)
before recording it. When SYNs go out through AF_PACKET, the receiver's thread
sends the replies at once, on its own TX ring (in parallel with the SYNs;
they count against the rate); a writer thread owns the output (see
output.RecordWriter). Nothing is opened for writing before XDP is attached, so
a scan that cannot start leaves every file as it was. Every exit path after
that — done, Ctrl-C, SIGTERM, full disk, an exception — goes through the same
shutdown: stop sending, detach XDP, drain the rings to the last record, flush
the writer, write metadata. A second signal abandons the drain; what it leaves
unwritten is counted (drops.output_lost), never silently gone.
"""

from __future__ import annotations

import collections
import datetime as dt
import ipaddress
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from . import __version__, checkpoint, cookie, cpus, fastfmt, filebroker, packets, prefetch, privdrop, targets
from .bpfprog import BpfSetupError, ProgParams, RecvProgram
from .config import ScanConfig
from .events import Counter
from .kgen import KernelGenerator, KernelGenError
from .kheaders import UnsafeCacheError
from .kreplies import KernelReplies
from .netinfo import NetParams, resolve
from .output import (
    MetadataFile,
    OutputError,
    RecordWriter,
    compression_of,
    compressor,
    same_file,
    select_fields,
)
from .pcap import PcapWriter, snap_bytes
from .plan import KernelSyns, PlanError, ProbePlan, Segment, split_variant
from .probes import ProbeKind
from .receiver import Receiver, RingReader
from .replies import Replies, ReplyQueue
from .segments import SegmentTable
from .sender import RateLimiter, SendError, TxRing
from .status import StatusLine
from .steps import StepTable


class ScanError(RuntimeError):
    """A user-facing failure before the scan started: one line, exit status 2, nothing written."""


# Exit statuses (README "Exit status"): scripts tell a complete result from a partial one.
EXIT_OK = 0  # completed (also when --max-targets / --max-runtime ended it)
EXIT_INTERNAL = 1  # a bug, or sending/receiving failed during the scan
EXIT_SETUP = 2  # bad usage or could not start: no file touched
EXIT_LOSSES = 3  # completed, but records or packets were lost (named in drops)
EXIT_OUTPUT = 4  # output failed (disk full, closed pipe): results cut at the last whole line
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

# The metadata's `drops`, in order: each a loss (a record or a packet the scan
# should have had). Packets refused as not ours are not losses; they are counted
# apart, in `rejected` (see summary()).
DROP_KEYS = ("ringbuf_full", "reply_queue", "tx_ring_full", "tx_refused", "output_lost")


# A banner probe's handshakes completed without an answer (a SYN-ACK, then no banner), as a share of its
# handshakes, from which the summary warns: a server answering many addresses (a load balancer, a
# CDN, a lab) overwhelmed by the rate accepts connections it then drops (MEASURED: 256 addresses of one
# OpenSSH at 10K pps gave ~133 banners, 251 at 2K).
UNANSWERED_WARN_SHARE = 0.05

# The longest the sending thread hands the kernel generator at once (see _send_loop).
SEND_SLICE_S = 0.01
UNANSWERED_WARN_MIN = 5


def unanswered(summary: dict) -> dict[str, tuple[int, int]]:
    """Probe -> (handshakes without an answer, handshakes), for the probes that had any."""
    return {
        name: (c["unanswered"], c["completed"])
        for name, c in (summary.get("handshakes") or {}).items()
        if c["unanswered"]
    }


def unanswered_warning(summary: dict) -> str | None:
    """One line when many handshakes brought no answer, with what to try; None otherwise."""
    high = {
        name: (n, total)
        for name, (n, total) in unanswered(summary).items()
        if n >= UNANSWERED_WARN_MIN and n >= UNANSWERED_WARN_SHARE * total
    }
    if not high:
        return None
    what = ", ".join(f"{name} {n} of {total} ({100 * n / total:.0f} %)" for name, (n, total) in high.items())
    return (
        f"{what} handshakes completed without an answer: servers overwhelmed, or answers lost; "
        "try a lower --rate, or --retransmit 2"
    )


# --dry-run: the characters of a payload shown (escaped as Python shows bytes), the rest cut.
DRY_RUN_PAYLOAD_SHOWN = 200


def losses(summary: dict) -> dict[str, int]:
    return {k: v for k in DROP_KEYS if (v := int(summary.get("drops", {}).get(k, 0)))}


def exit_status(summary: dict) -> int:
    reason = summary.get("reason")
    if reason == "output-error":
        return EXIT_OUTPUT
    if reason == "error":
        return EXIT_INTERNAL
    if reason == "interrupted":
        return EXIT_SIGINT
    if reason == "terminated":
        return EXIT_SIGTERM
    return EXIT_LOSSES if losses(summary) else EXIT_OK


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ip_int(text: str, family: int = 4) -> int:
    """Our address as an int; one line when it is not of the targets' family."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"invalid source address '{text}'") from None
    if addr.version != family:
        raise ValueError(f"source address {text} is IPv{addr.version}, the targets are IPv{family}")
    return int(addr)


class RetransmitQueue:
    """Batches of pairs waiting to be probed again (--retransmit).

    Holds pairs, not frames (6 bytes a pair); bounded: when full, new probes
    wait until due copies have gone out, so nothing is dropped.
    """

    def __init__(self, attempts: int, delay: float, limit: int):
        self.extra = attempts - 1
        self.delay = delay
        self.limit = limit
        self.pairs = 0
        # (due, attempt, addrs, ports, tag): the tag is --checkpoint's name for the batch (checkpoint.Tag).
        self._q: collections.deque[tuple[float, int, np.ndarray, np.ndarray, Any]] = collections.deque()

    def add(self, addrs: np.ndarray, ports: np.ndarray, now: float, tag: Any = None) -> None:
        if self.extra > 0:
            self._q.append((now + self.delay, 1, addrs, ports, tag))
            self.pairs += len(addrs)

    def due(self, now: float) -> tuple[int, np.ndarray, np.ndarray, Any] | None:
        if not self._q or self._q[0][0] > now:
            return None
        when, attempt, addrs, ports, tag = self._q.popleft()
        self.pairs -= len(addrs)
        if attempt < self.extra:
            self._q.append((now + self.delay, attempt + 1, addrs, ports, tag))
            self.pairs += len(addrs)
        return attempt, addrs, ports, tag

    def entries(self) -> list[tuple[float, int, Any]]:
        """(due, attempt, tag) of every queued batch, in order."""
        return [(due, attempt, tag) for due, attempt, _, _, tag in self._q]

    def restore(self, items: list[tuple[float, int, np.ndarray, np.ndarray, Any]]) -> None:
        """A resumed scan's queue (checkpoint.Resume.restore)."""
        for item in items:
            self._q.append(item)
            self.pairs += len(item[2])

    def full(self) -> bool:
        return self.pairs >= self.limit

    def __len__(self) -> int:
        return len(self._q)


SHORT_RING_PAGES = 8192  # 32 MiB: ~107k short banners (events.SHORT_MAX)


def short_ring_pages(plan: ProbePlan, segmented: np.ndarray) -> int:
    """The short-banner ring's size for a scan: only where banners are one segment each (not with
    --banner-bytes, `segmented`, or multi-connection probes, whose segments of one connection must
    stay in order: one ring), and only if the scan grabs banners at all."""
    one_segment = not segmented.any() and not plan.multi.any()
    return SHORT_RING_PAGES if one_segment and any(p.handshake for p in plan.probes) else 0


class Scanner:
    def __init__(self, cfg: ScanConfig, probes: list[Any], resume: checkpoint.Resume | None = None):
        # Before any work: the first thing a user must fix. Root, or the capabilities (privdrop.py).
        self.become: privdrop.Target | None = None
        if not cfg.dry_run:
            try:
                self.become = privdrop.target(cfg.user)
            except privdrop.PrivDropError as exc:
                raise ScanError(str(exc)) from None
            missing = privdrop.missing_to_start(self.changes_user())
            if missing and os.geteuid() == 0:  # root without them: a container's limited set
                raise ScanError(f"scanning as root needs the capabilities {','.join(missing)} as well")
            if missing:
                raise ScanError(
                    f"scanning needs root, or the capabilities {','.join(missing)}; try sudo, or --dry-run"
                )
        self.privileges: str | None = None  # what the scan ran as, once dropped (the metadata's)
        self.ck_broker: filebroker.Broker | None = None
        self.cfg = cfg
        self.stop = threading.Event()
        self.abandon = threading.Event()  # second signal: stop draining, count the rest as lost
        self.reason = "completed"
        self.error: str | None = None
        self.seed = cfg.seed if cfg.seed is not None else int.from_bytes(os.urandom(4), "little")
        self.key = cookie.new_key()
        # --checkpoint / resume (checkpoint.py): a resumed scan is the same scan, same order and cookies.
        self.resume = resume
        if resume is not None:
            self.seed, self.key = resume.seed, resume.key
        self.checkpointer: checkpoint.Checkpointer | None = None
        self.progress: checkpoint.Progress | None = None
        self._final_xdp: dict[str, int] | None = None
        try:
            # No ports (-p) in a scan of UDP and ICMP probes: each goes once per address, to its own
            # port; the space's one port is only a place for them in the permutation.
            own_port = [p.default_port for p in probes if p.default_port] or [1]
            self.space = targets.TargetSpace.build(
                list(cfg.targets),
                targets.parse_ports(cfg.ports) if cfg.ports else own_port[:1],
                cfg.blocklist,
                cfg.allowlist,
                cfg.list_of_targets,
                cfg.exclude,
                cfg.exclude_files,
            )
            self.plan = ProbePlan(
                probes,
                self.space.ports,
                cfg.source_port_lo,
                cfg.source_port_hi,
                attempts=1 + cfg.retransmit,
                tarpit_check=cfg.tarpit_check,
                udp_once=not cfg.ports,
            )
        except (targets.TargetError, PlanError, OSError) as exc:
            raise ScanError(str(exc)) from None
        self.family = self.space.family
        try:
            if resume is not None:
                resume.check_space(self.space)
            if not cfg.dry_run:
                checkpoint.check_scan(cfg)
        except checkpoint.CheckpointError as exc:
            raise ScanError(str(exc)) from None
        self.probes = self.plan.probes
        self._check_banner_bytes()
        self.probe_fields = list(dict.fromkeys(p.name for p in self.plan.user_probes if p.kind.parses))
        self.parsed_fields = {p.name: tuple(p.fields) for p in self.plan.user_probes if p.kind.parses}
        try:
            select_fields(self.probe_fields, cfg.output_fields, self.parsed_fields)
            compressor(compression_of(cfg.output))  # .zst without its package: said now
        except OutputError as exc:
            raise ScanError(str(exc)) from None
        if cfg.metadata and same_file(cfg.output, cfg.metadata):
            raise ScanError(f"-o and --metadata name the same file '{cfg.metadata}'")
        if cfg.metadata == "-" and cfg.output in (None, "-"):
            raise ScanError("--metadata - and the results would share stdout: give -o a file")
        # --pcap (pcap.py): the frames of every recorded reply, copied by the XDP program.
        self.pcap = PcapWriter(cfg.pcap, cfg.pcap_snaplen) if cfg.pcap else None
        self.pcap_summary: dict[str, Any] | None = None
        if cfg.pcap and any(same_file(cfg.pcap, o) for o in (cfg.output, cfg.metadata, cfg.checkpoint)):
            raise ScanError(f"--pcap and another option name the same file '{cfg.pcap}'")
        # In-kernel replies wherever the scan allows them (cfg.kernel_replies None) or asked for (True).
        # Not with --pcap: the program rewrites a SYN-ACK into its answer in place, before its frame
        # could be copied whole; nor with --banner-bytes, whose ACKs user space sends (segments.py).
        # User space answers then: asked for, a note says so; by default, the metadata's `why`.
        why_not = (
            "--pcap: user space answered (the XDP program would rewrite a SYN-ACK into its answer "
            "before its frame is copied)"
            if cfg.pcap
            else "--banner-bytes: user space answered (it sends every ACK of the reassembly)"
            if cfg.banner_bytes
            else None
        )
        self.kernel_replies = cfg.kernel_replies is not False and why_not is None
        self.kernel_replies_note = why_not if cfg.kernel_replies and why_not else None
        self.kernel_replies_why = "--no-kernel-replies" if cfg.kernel_replies is False else why_not
        self.pairs = targets.expected_count(self.space, cfg.shards, cfg.shard, cfg.max_targets)
        self.total = self.plan.expected_probes(self.pairs, self.space.n_ports)
        # Pairs per batch the send loop takes; a resumed scan keeps its first part's.
        self.gen_size = 65536 if cfg.rate == 0 else int(min(65536, max(256, cfg.rate // 10)))
        if resume is not None:
            self.gen_size = int(resume.doc["batch"])
        self.sent_probes = 0
        self.sent_replies = 0
        self.sent_retransmits = 0
        self.reply_queue = ReplyQueue()
        self.replies: Replies | None = None  # built once the link is known
        self.reply_tx: TxRing | None = None
        self.limiter = RateLimiter(cfg.rate)  # replaced when sending starts (its clock starts then)
        self.prog: RecvProgram | None = None
        self.tx: TxRing | None = None
        self.receiver: Receiver | None = None
        self.writer: RecordWriter | None = None
        self.metadata: MetadataFile | None = None
        self.unread = 0  # records left in the rings when a drain was abandoned or failed
        self.net: NetParams | None = None
        self.status: StatusLine | None = None
        self.kgen: KernelGenerator | None = None
        self.kreplies: KernelReplies | None = None  # --kernel-replies, verified against the driver
        self.steps: StepTable | None = None  # multi-connection probes' rows (steps.py)
        self.segtable: SegmentTable | None = None  # --banner-bytes: answers in reassembly (segments.py)
        self.throttled = 0
        # time.monotonic() of the first probe, of the end of sending, of the last probe sent.
        self.send_start: float | None = None
        self.started: str | None = None  # ISO time the scan started
        self._kgen_checked = False  # the generator's first batch was checked for delivery
        self.send_end: float | None = None
        self.last_probe: float | None = None
        self.tx_mode = "tx_ring"
        self.tx_note: str | None = None
        # The kernel generator's transmit-ring accounting (see KernelGenerator.send).
        self.gen_stats: dict[str, int] | None = None
        self.placement: cpus.Placement | None = None  # while the generator sends (cpus.py)
        self._cpus: cpus.Placement | None = None  # (built before anything starts)

    # -- set-up ----------------------------------------------------------
    def _check_banner_bytes(self) -> None:
        """--banner-bytes: what it cannot be combined with, said before anything starts."""
        cfg = self.cfg
        self.segmented = np.zeros(len(self.probes), bool)  # per probe: answers reassembled (segments.py)
        if not cfg.banner_bytes:
            return
        if self.plan.multi.any():
            raise ScanError("--banner-bytes: not with multi-connection probes (jarm, lzr, auto)")
        if cfg.kernel_replies:  # asked for (the default leaves them to user space here)
            raise ScanError("--banner-bytes: not with --kernel-replies (user space sends its ACKs)")
        if cfg.checkpoint:
            raise ScanError("--banner-bytes: not with --checkpoint (answers in reassembly would be lost)")
        if cfg.retransmit:
            # A probe's copies are connections of their own; their data is not deduplicated in XDP here.
            raise ScanError("--banner-bytes: not with --retransmit (each copy would give its own record)")
        self.segmented = np.array([p.kind is ProbeKind.BANNER for p in self.probes], bool)
        if not self.segmented.any():
            raise ScanError("--banner-bytes: the probe grabs no banner (it needs a TCP banner probe)")
        for p in self.probes:
            if p.kind is ProbeKind.BANNER:
                p.capture_segments()

    def _first_target(self) -> str:
        first = self.space.addrs_at(np.array([0], dtype=np.uint64))
        if self.family == 6:
            return str(ipaddress.IPv6Address(targets.addr6_ints(first)[0]))
        return str(ipaddress.IPv4Address(int(first[0])))

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
                _ip_int(self.net.src_ip, self.family),
                self.cfg.ttl,
                family=self.family,
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

    # -- dry run ---------------------------------------------------------
    def dry_run(self, out) -> int:
        """One line per packet that would be sent; after a banner probe's SYN, what its ACK would carry."""
        self.net = self._resolve(solicit=False)
        link = self._link()
        n = 0
        for addrs, ports in self._batches(4096):
            for attempt in range(self.plan.attempts):  # retransmitted copies go out later, same lines
                for seg in self.plan.segments(link, self.key, addrs, ports, attempt):
                    for i in range(len(seg.lengths)):
                        frame = seg.frames[i, : seg.lengths[i]].tobytes()
                        out.write(packets.describe(frame) + "\n")
                        note = self._payload_note(frame)
                        if note:
                            out.write(note + "\n")
                    n += len(seg.lengths)
        out.flush()
        return n

    def _payload_note(self, frame: bytes) -> str | None:
        """For a banner probe's SYN: the payload its ACK would carry once the target SYN-ACKs."""
        ip = frame[packets.IP_OFF :]
        v6 = ip[0] >> 4 == 6
        if (ip[6] if v6 else ip[9]) != socket.IPPROTO_TCP:
            return None
        tcp = ip[packets.IP6_LEN :] if v6 else ip[(ip[0] & 0x0F) * 4 :]
        sport, dport = int.from_bytes(tcp[0:2], "big"), int.from_bytes(tcp[2:4], "big")
        entry = self.plan.probes[split_variant((sport - self.plan.lo) % self.plan.V, self.plan.P)[0]]
        if not entry.handshake:
            return None
        them = ipaddress.IPv6Address(ip[24:40]) if v6 else ipaddress.IPv4Address(ip[16:20])
        payload = entry.payload(str(them), dport)
        steps = int(entry.steps)
        more = f"; then up to {steps - 1} more connections, as the answers decide" if steps > 1 else ""
        if not payload:
            return f"  after its SYN-ACK: ACK, no payload (the server speaks first){more}"
        shown = repr(payload)[2:-1]
        if len(shown) > DRY_RUN_PAYLOAD_SHOWN:
            shown = shown[:DRY_RUN_PAYLOAD_SHOWN] + "…"
        return f'  after its SYN-ACK: ACK len={len(payload)} payload="{shown}"{more}'

    # -- the scan --------------------------------------------------------
    def run(self) -> dict:
        cfg = self.cfg
        self.net = self._resolve()
        link = self._link()
        self.started = _now_iso()
        t0 = time.monotonic()
        old_handlers = self._install_signals()
        try:
            self._check_outputs()
        except BaseException:
            self._restore_signals(old_handlers)
            raise
        started = False
        try:
            try:  # before anything starts (a resumed scan's --tx-threads may exceed this machine's CPUs)
                self._cpus = cpus.Placement(senders=cfg.tx_threads)
            except ValueError as exc:
                raise ScanError(f"--tx-threads: {exc}") from None
            fastfmt.load()  # compiled now if setup did not, not in the receiver's first batch
            params = ProgParams(
                src_ip=link.src_ip,
                port_lo=cfg.source_port_lo,
                port_hi=cfg.source_port_hi,
                probes=self.plan.P,
                variants=self.plan.V,
                slots=self.plan.slots,
                icmp_variant=self.plan.icmp_index,
                banners=any(p.handshake for p in self.probes),
                segments=bool(self.segmented.any()),
                dedup_window_s=cfg.dedup_window,
                reanswer_s=cfg.reanswer_after,
                dedup_entries=cfg.dedup_entries,
                emit_repeats=cfg.output_repeats,
                generator=cfg.tx != "packet",
                kernel_replies=self.kernel_replies,
                family=self.family,
                ttl=cfg.ttl,
                ack_window=cfg.ack_window,
                pcap_snap=snap_bytes(cfg.pcap_snaplen) if cfg.pcap else 0,
                short_pages=short_ring_pages(self.plan, self.segmented),
            )
            self.prog = RecvProgram(
                params,
                self.key,
                probe_infos=self.plan.probe_infos(self.family),
                kernel_payloads=self.plan.kernel_payloads(self.family),
            )
            self.prog.attach(self.net.iface)
            self.tx = TxRing(self.net.iface)
            self.reply_tx = TxRing(self.net.iface)
            self.kgen = self._kernel_generator(link, params)
            self._open_outputs()
            self._drop_privileges()
            started = True
            self.replies = Replies(link, self.plan, cfg.ack_window, self.reply_queue)
            self.receiver = Receiver(
                RingReader(self.prog, params.ringbuf_pages, params.banner_pages, params.short_pages),
                link,
                self.replies,
                self.writer,
                self.plan,
                self.key,
                cfg.output_repeats,
            )
            if self.plan.multi.any():
                self.steps = StepTable(
                    self.plan,
                    link,
                    self.key,
                    self.replies,
                    self.writer,
                    cfg.step_table,
                    self.receiver.tally_result,
                )
                self.receiver.steps = self.steps
            if self.segmented.any():
                self.segtable = SegmentTable(
                    self.plan,
                    cfg.banner_bytes,
                    self.receiver.write_banners,
                    self.replies.ack,
                    self.replies.rst,
                    max_conns=cfg.banner_table,
                )
                self.receiver.segments = self.segtable
                self.replies.segmented = self.segmented
            if self.kernel_replies:
                self.kreplies = KernelReplies(self.prog, self.replies, self.net.iface)
                if self.kgen is not None and self.kreplies.mode != "user space":
                    self.kgen.watch_replies(self.net.iface)
            if self.checkpointer is not None:
                self.receiver.on_drained = self.checkpointer.mark
            self.receiver.start()
            self._send_loop(link)
        except OutputError as exc:
            self.reason = "output-error"
            self.error = str(exc)
        except (BpfSetupError, SendError, KernelGenError, ScanError, UnsafeCacheError) as exc:
            self.reason = "error"
            self.error = str(exc)
        except BaseException:
            self.reason = "error"
            if not started:
                self._teardown()
                self._restore_signals(old_handlers)
                raise
            self.error = "internal error"
            self._shutdown(t0)
            self._restore_signals(old_handlers)
            raise
        if not started:
            # Could not start (attach refused, no generator with --tx xdp, …): files untouched.
            self._teardown()
            self._restore_signals(old_handlers)
            raise ScanError(self.error or "the scan did not start")
        try:
            summary = self._shutdown(t0)
        finally:
            self._restore_signals(old_handlers)
        return summary

    def _check_outputs(self) -> None:
        """Everything about -o and --metadata that can fail, before anything is attached or opened."""
        cfg = self.cfg
        self.writer = RecordWriter(
            cfg.output,
            self.probe_fields,
            cfg.output_fields,
            self.parsed_fields,
            cfg.output_format,
            append=self.resume is not None,
        )
        try:
            self.writer.check(self.stop)  # a FIFO: waits here for its reader
            if cfg.metadata:
                self.metadata = MetadataFile(cfg.metadata)
                self.metadata.check()
            if self.pcap is not None:
                self.pcap.check()
        except OutputError as exc:
            self.writer.close()
            raise ScanError(str(exc)) from None

    def _open_outputs(self) -> None:
        """The scan starts now: lock and empty the files (never one another run holds)."""
        assert self.writer is not None
        try:
            if self.metadata is not None:
                running = {"version": __version__, "reason": "running", "start": self.started}
                self.metadata.open({**running, "options": self.cfg.as_dict()})
            self.writer.open(start=False)
            if self.pcap is not None:
                assert self.prog is not None
                self.pcap.open(self.prog, self.prog.params.pcap_pages, start=False)
            if self.resume is not None:
                self.resume.attach(self.writer)
            if self.cfg.checkpoint:
                self.checkpointer = checkpoint.Checkpointer(self, self.resume)
        except (OutputError, checkpoint.CheckpointError) as exc:
            if self.metadata is not None:
                self.metadata.close()
                self.metadata = None
            raise BpfSetupError(str(exc)) from None

    def changes_user(self) -> bool:
        return self.become is not None and self.become.uid != os.geteuid()

    def _drop_privileges(self) -> None:
        """Everything privileged is done: from here on no root (privdrop.py); then the threads start."""
        assert self.writer is not None
        if self.checkpointer is not None and self.changes_user():
            # The checkpoint's directory is rarely nobody's: a helper keeps root to replace that file only.
            self.ck_broker = filebroker.Broker(self.checkpointer.path)
            self.checkpointer.replace = self.ck_broker.replace
        try:
            self.privileges = privdrop.drop(self.become)
        except privdrop.PrivDropError as exc:
            raise ScanError(str(exc)) from None
        self.writer.start()
        if self.pcap is not None:
            self.pcap.start()

    def _teardown(self) -> None:
        """Release what a scan that never started holds (no records, no metadata)."""
        for closer in (self.kgen, self.tx, self.reply_tx, self.prog, self.ck_broker):
            if closer is not None:
                try:
                    closer.close()
                except Exception:  # noqa: BLE001 - best effort on the way out of a failed start
                    pass
        if self.writer is not None:
            self.writer.close()

    def _kernel_generator(self, link: packets.LinkParams, params: ProgParams) -> KernelGenerator | None:
        """The kernel-side SYN generator, where the kernel and driver can do it (--tx auto|xdp)."""
        if self.cfg.tx == "packet":
            return None
        assert self.prog is not None and self.net is not None
        try:
            gen = KernelGenerator(self.prog, self.net.iface, link, params.gen_slots)
            gen.probe()
            gen.spread_for(self.cfg.rate)
        except (KernelGenError, OSError) as exc:
            if self.cfg.tx == "xdp":
                raise ScanError(f"--tx xdp: {exc}") from None
            self.tx_note = f"kernel generator unavailable ({exc}); using AF_PACKET"
            return None
        self.tx_mode = "xdp"
        return gen

    def _kgen_send(self, item: KernelSyns) -> None:
        """Send through the generator; on a driver that drops XDP transmits, fall back for good."""
        assert self.kgen is not None and self.net is not None
        stats = self.kgen.stats if not self._kgen_checked else None
        before = stats.read() if stats is not None else None
        self.kgen.send(item.addrs, item.ports, item.variant)
        if stats is not None:
            self._kgen_checked = True
            after = stats.read()
            if before and after and after[0] == before[0] and len(item):
                # Nothing went out (e.g. a veth whose peer has neither XDP nor GRO: its frames are
                # dropped without even an error count).
                msg = "XDP transmit refused by the driver; using AF_PACKET"
                if self.cfg.tx == "xdp":
                    raise ScanError(f"--tx xdp: {msg}")
                self.tx_note = msg
                self._unpin()
                self.kgen.close()
                self.kgen = None
                self.tx_mode = "tx_ring"
                self._replies_from_receiver()
                link = self._link()
                self._send(self.plan.syn_frames(link, self.key, item))

    def _install_signals(self) -> dict:
        def handler(signum: int, _frame: Any) -> None:
            if self.abandon.is_set():
                raise KeyboardInterrupt  # third: out now
            if self.stop.is_set():
                self.abandon.set()  # second: stop draining, count what is left as lost
                return
            if self.reason in ("completed", "max-runtime"):
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

    def _check_receiver(self) -> None:
        rcv = self.receiver
        if rcv is not None and rcv.error is not None:
            if isinstance(rcv.error, OutputError):
                raise rcv.error
            raise ScanError(f"receiver failed: {rcv.error!r}")

    def _drops(self, counters: np.ndarray | None) -> int:
        full = int(counters[Counter.RINGBUF_FULL]) if counters is not None else 0
        lost = self.writer.lost if self.writer is not None else 0
        return full + lost + self.reply_queue.dropped + (self.kgen.lost if self.kgen is not None else 0)

    def _show_status(self, phase: str, counters: np.ndarray | None = None) -> None:
        if self.status is None or self.receiver is None:
            return
        if counters is None and self.prog is not None:
            counters = self.prog.counters()
        self.status.show(
            self.sent_probes,
            self.sent_probes + self.replies_sent(),
            self.hits(),
            self._drops(counters),
            phase,
        )

    def replies_sent(self) -> int:
        """Every answer sent: from user space, and from the XDP program (the driver's count of its
        transmits, read once a second while the scan runs)."""
        return self.sent_replies + self.reply_queue.sent_direct + self._kernel_replies_sent()

    def _kreplies_summary(self) -> dict[str, Any]:
        """The in-kernel replies' summary; its stderr note only if they were asked for (by default the
        fallback to user space is said in the metadata's `why`, results being the same)."""
        assert self.kreplies is not None
        out = self.kreplies.summary()
        if self.cfg.kernel_replies is not True:
            out["note"] = None
        return out

    def _kernel_replies_sent(self) -> int:
        return self.kreplies.sent if self.kreplies is not None else 0

    def hits(self) -> int:
        return self.receiver.hits if self.receiver is not None else 0

    def _receiver_behind(self) -> bool:
        """The ring more than half full, or the output's queue past its high-water mark."""
        rcv = self.receiver
        if rcv is None:
            return False
        if rcv.reader.backlog() < 0.5 and not (self.writer is not None and self.writer.behind()):
            return False
        self.throttled += 1
        if self.placement is not None and self.writer is not None:
            # Output-bound: the writer may use the sending CPU while the sender waits (cpus.py).
            self.placement.widen(self.writer.thread_id, "writer")
        return True

    def _send(self, seg: Segment | KernelSyns) -> None:
        if isinstance(seg, KernelSyns):
            if self.kgen is not None:
                self._kgen_send(seg)
                return
            seg = self.plan.syn_frames(self._link(), self.key, seg)
        assert self.tx is not None
        self.tx.send(seg.frames, seg.lengths)

    def _replies_from_receiver(self) -> None:
        """AF_PACKET SYNs: replies leave from the receiver, in parallel (see ReplyQueue.send_directly).

        Not with the kernel generator: SYNs and replies share the driver's XDP
        ring and the generator outruns any target at --rate 0, so one thread
        sends both, replies first, which paces the SYNs to what the network answers.
        """
        if self.reply_tx is not None:
            self.reply_queue.send_directly(self.reply_tx, self.limiter)

    def _positioned(self) -> Any:
        """This shard's batches with their place in the permutation (--checkpoint), from where a
        resumed scan stood."""
        start = self.resume.start.cursor if self.resume is not None else None
        cfg = self.cfg
        return checkpoint.positioned_batches(
            self.space, self.seed, cfg.shards, cfg.shard, self.gen_size, cfg.max_targets, start
        )

    def _start_progress(
        self, link: packets.LinkParams, retrans: RetransmitQueue, pending: collections.deque
    ) -> checkpoint.Progress | None:
        """--checkpoint: the position tracker, the batch in flight and the retransmission queue of a
        resumed scan put back, the first checkpoint written and its thread started."""
        ck = self.checkpointer
        if ck is None:
            return None
        assert self.writer is not None
        res = self.resume
        prog = self.progress = checkpoint.Progress(res.start if res is not None else None, self.writer)
        if res is not None:

            def segments(a: np.ndarray, p: np.ndarray, attempt: int) -> list:
                return self.plan.segments(link, self.key, a, p, attempt, self.kgen is not None)

            restored, queue = res.restore(self.space, self.cfg.shards, segments)
            pending.extend(restored)
            retrans.restore(queue)
            prog.item = res.start.item if restored else None
            self.sent_probes = res.start.probes
        prog.note(time.monotonic(), retrans, self.sent_probes, force=True)
        ck.write()
        ck.start()
        return prog

    def live_drops(self) -> dict[str, int]:
        """The drops so far (for checkpoints, from their thread)."""
        xdp = self._final_xdp
        if xdp is None:
            counters = self.prog.counters() if self.prog is not None else None
            xdp = {c.name.lower(): int(counters[c]) for c in Counter} if counters is not None else {}
        return self._drop_counts(xdp)

    def _send_loop(self, link: packets.LinkParams) -> None:
        cfg = self.cfg
        # A round of the loop below sends a grant of SYNs (at --rate 0 a batch, 4,096; at a set
        # rate ~5 ms of it, up to a batch), then the replies due. With --tx-threads N a batch is
        # N times one thread's, so that each thread's share of a round is as long as one thread's
        # whole round was: shares of a 4,096 grant were too short to pay for waking the threads
        # (by hand, two threads sent less than one: 6.0M SYN/s against 6.4M).
        threads = 1 + len(self._cpus.worker_cpus) if self.kgen is not None and self._cpus is not None else 1
        limiter = self.limiter = RateLimiter(cfg.rate, RateLimiter.MAX_BATCH * threads)
        if self.kgen is None:
            self._replies_from_receiver()
        self.status = StatusLine(self.total, cfg.quiet)
        retrans = RetransmitQueue(1 + cfg.retransmit, cfg.retransmit_delay, cfg.retransmit_queue)
        pending: collections.deque[Segment | KernelSyns] = collections.deque()
        prog = self._start_progress(link, retrans, pending)
        # The kernel generator's targets a batch ahead, on a thread of their own (prefetch.py);
        # started before the placement below, which moves it off the generator's CPU with the
        # scan's other threads. Not in a scan that grabs banners: there the receiver's CPU is the
        # one short of time (by hand, 1,048,576 SSH targets at 100 % open, six runs each: ~379k
        # banners/s with it, ~404k without; a SYN scan to a sink: 6.4M SYN/s with, 5.2M without).
        source = self._batches(self.gen_size) if prog is None else self._positioned()
        grabs = any(p.kind is ProbeKind.BANNER for p in self.probes)
        with prefetch.Prefetch(source, enabled=self.kgen is not None and not grabs) as ahead:
            # (--checkpoint's tag of a batch is taken as the sending loop takes the batch.)
            batches = ahead if prog is None else prog.batches(ahead)
            # The generator's CPU to itself (cpus.py); after every thread of the scan has started,
            # until the last probe is sent (the cooldown's draining gets every CPU).
            try:
                if self.kgen is not None and self._cpus is not None:
                    self.placement = self._cpus
                    self.placement.apply()
                    if self.placement.worker_cpus:
                        self.kgen.start_workers(self.placement.worker_cpus)  # (started now: pinned apart)
                self._sending(link, limiter, retrans, pending, prog, batches, ahead.close)
            finally:
                self._unpin()

    def _unpin(self) -> None:
        """The generator's threads stopped, every thread back on every CPU the scan may use."""
        if self.kgen is not None:
            self.kgen.stop_workers()
        if self.placement is not None:
            self.placement.release()

    def _sending(
        self,
        link: packets.LinkParams,
        limiter: RateLimiter,
        retrans: RetransmitQueue,
        pending: collections.deque,
        prog: checkpoint.Progress | None,
        batches: Iterator[tuple[np.ndarray, np.ndarray]],
        no_more_batches: Callable[[], None],
    ) -> None:
        cfg = self.cfg
        next_status = time.monotonic() + 1.0
        # --max-runtime counts from the first packet, not from the BPF compile.
        t0 = self.send_start = time.monotonic()
        # The rate's clock from here too: what ran since the limiter was made (the checkpoint's
        # first write, the placement, the targets' thread starting on the permutation with the
        # GIL) would otherwise be owed as a burst, one probe more than --max-runtime allows at
        # --rate 1 (tests/integration/test_no_loss.py).
        limiter.restart(t0)
        generating = True
        cool_until: float | None = None
        cool_base: float | None = None  # the end of the plain cooldown (multi-step probes may extend it)
        while True:
            now = time.monotonic()
            if now >= next_status:
                self._show_status("sending" if cool_until is None else "cooldown")
                next_status = now + 1.0
            self._check_receiver()
            if self.kreplies is not None:
                self.kreplies.poll(now)
                if cfg.rate:
                    # --rate counts every packet we send: the program's answers as well as user
                    # space's (charged as they are sent, replies.py).
                    limiter.charge(self.kreplies.answered_since_last())
            if self.stop.is_set():
                break
            if generating and cfg.max_runtime is not None and now - t0 >= cfg.max_runtime:
                self.reason = "max-runtime"
                generating = False
                no_more_batches()  # (the thread computing them ahead stops now, not at the end)
                pending.clear()
                retrans = RetransmitQueue(1, 0, 0)
                if prog is not None:
                    prog.item = None
            if not generating and not pending and not len(retrans) and cool_base is None:
                cool_base = cool_until = now + cfg.cooldown
                self.send_end = now
                self._unpin()
            if cool_base is not None and self.steps is not None:
                # Multi-connection probes still stepping: the cooldown lasts until every pending row's
                # step has had its time (a first answer as much as a follow-up's), however short it is.
                cool_until = self.steps.wait_until(cool_base)
            if cool_until is not None and now >= cool_until:
                break
            # Never block past the end of sending (--max-runtime) or of the cooldown: at
            # --rate 1 the next grant can be a second away.
            if generating and cfg.max_runtime is not None:
                deadline: float | None = t0 + cfg.max_runtime
            else:
                deadline = cool_until
            budget = limiter.budget(self.stop, deadline)
            if budget == 0:
                continue
            if self.kgen is not None:
                # Paced after refusals, a grant could take the generator seconds: no more than
                # SEND_SLICE_S of it at a time, so replies, signals and --max-runtime are seen.
                excess = budget - self.kgen.frames_within(SEND_SLICE_S)
                if excess > 0:
                    budget -= excess
                    if cfg.rate:
                        limiter.refund(excess)
            # Replies first. Unlimited (--rate 0), they do not eat into the SYNs' share:
            # each round sends every reply due and then a full batch of SYNs.
            for rf, rl in self.reply_queue.take(budget if cfg.rate else self.reply_queue.pending):
                self.tx.send(rf, rl)  # type: ignore[union-attr]
                self.sent_replies += len(rl)
                if cfg.rate:
                    budget -= len(rl)
            if self._receiver_behind():
                # Backpressure: a ring more than half full, or output queued faster than it is
                # written, means user space is behind; new probes would only turn into
                # "ring buffer full" drops. Replies still go, so handshakes complete.
                self.stop.wait(0.001)
                continue
            if not pending:
                item = retrans.due(now)
                if item is not None:
                    attempt, addrs, ports, tag = item
                    pending.extend(
                        self.plan.segments(link, self.key, addrs, ports, attempt, self.kgen is not None)
                    )
                    if prog is not None:
                        prog.took(tag, attempt)
                elif generating and not retrans.full():
                    try:
                        addrs, ports = next(batches)
                    except StopIteration:
                        generating = False
                    else:
                        pending.extend(
                            self.plan.segments(link, self.key, addrs, ports, 0, self.kgen is not None)
                        )
                        tag = prog.last if prog is not None else None
                        retrans.add(addrs, ports, now, tag)
                        if prog is not None:
                            prog.took(tag, 0)
            while pending and budget > 0:
                seg = pending[0]
                k = min(budget, len(seg))
                if k == len(seg):
                    pending.popleft()
                else:
                    seg, pending[0] = seg.split(k)
                self._send(seg)
                budget -= k
                self.sent_probes += k
                self.last_probe = time.monotonic()
                if prog is not None:
                    prog.sent(k, not pending)
            if prog is not None:
                prog.note(time.monotonic(), retrans, self.sent_probes)
            if budget > 0 and not pending and generating and cfg.rate:
                # The batch ran out inside this grant: the next batch gets the rest. Without
                # this, every 64k-probe batch lost half a grant and --rate 1M sent 967k.
                limiter.refund(budget)
            if budget > 0 and not pending and self.reply_queue.pending == 0:
                # Nothing due: wait for replies (or the next retransmission) without spinning.
                self.stop.wait(0.002)

    def _shutdown(self, t0: float) -> dict:
        rcv, prog = self.receiver, self.prog
        err = self.error
        if self.checkpointer is not None:
            self.checkpointer.stop()  # its thread reads what is closed below; the last one comes at the end
        if prog is not None:
            prog.detach()  # no new events: from here the host kernel sees replies again
        detached = time.monotonic()
        oldest_row: float | None = None
        if self.kreplies is not None:
            self.kreplies.close()
        if rcv is not None:
            self._show_status("draining")
            if self.steps is not None:
                self.steps.closing = True  # XDP detached: no step starts any more
            rcv.stop(self.abandon)  # to the ring's last record, unless abandoned or failed
            if self.steps is not None and self.steps.rows:
                oldest_row = next(iter(self.steps.rows.values())).opened
            if self.steps is not None and rcv.error is None:
                self.steps.flush()  # the rows left, written incomplete (the receiver has stopped)
            if self.segtable is not None and rcv.error is None:
                self.segtable.flush()  # the answers left, written truncated
            if isinstance(rcv.error, OutputError) and err is None:
                err = str(rcv.error)
                self.reason = "output-error"
            elif rcv.error is not None and err is None:
                err = f"receiver failed: {rcv.error!r}"
                self.reason = "error"
            self.unread = rcv.count_unread()
            rcv.reader.close()
        if self.pcap is not None and self.pcap._thread is not None:
            self.pcap_summary = self.pcap.close(prog)
        counters = prog.counters() if prog is not None else None
        if prog is not None:
            prog.close()
        if self.kgen is not None:
            g = self.kgen
            self.gen_stats = {
                "runs": g.runs,
                "resent": g.resent,
                "xmit_errors": g.xmit_errors,
                "lost": g.lost,
                "reply_errors": g.reply_errors,
                "paced_ms": round(g.paced_s * 1000),
                # --tx-threads: runs of at least MIN_SHARE frames a thread are shared out, paced
                # ones (--rate, after refusals) are not: how much the threads really shared.
                "threads": g.threads,
                "parallel_frames": g.parallel_frames,
            }
            g.close()
        if self.tx is not None:
            self.tx.close()
        if self.reply_tx is not None:
            self.reply_tx.close()  # the receiver, its only user, has stopped
        if self.writer is not None:
            self.writer.close(self.abandon)  # everything queued, unless abandoned
            if self.writer.error is not None and err is None:
                err = str(self.writer.error)
                self.reason = "output-error"
        self._show_status("done", counters)
        if self.checkpointer is not None:
            err = self._last_checkpoint(counters, detached, oldest_row) or err
        if self.ck_broker is not None:
            self.ck_broker.close()
        summary = self.summary(t0, counters, err)
        if self.checkpointer is not None:
            checkpoint.combine(summary, self)
        if self.metadata is not None:
            try:
                self.metadata.write(summary)
            except OutputError as exc:
                summary["error"] = summary["error"] or str(exc)
                summary["reason"] = "output-error"
        return summary

    def _last_checkpoint(
        self, counters: np.ndarray | None, detached: float, oldest_row: float | None
    ) -> str | None:
        """The checkpoint at exit: finished, or (interrupted, failed) where a resumed scan starts."""
        ck = self.checkpointer
        assert ck is not None and self.writer is not None
        self._final_xdp = {c.name.lower(): int(counters[c]) for c in Counter} if counters is not None else {}
        w, rcv = self.writer, self.receiver
        end = None
        if rcv is not None and w.error is None and not w.lost and not self.unread and rcv.error is None:
            # Everything received until XDP was detached is written: a mark at the detach.
            end = checkpoint.Mark(
                detached, w.handed, w.handed_lines, dict(rcv.by_class), rcv.hits, oldest_row
            )
        if self.progress is not None and self.progress.first is not None:
            ck.write(self.reason, end)
        return ck.error

    def _send_rate(self) -> float:
        if self.send_start is None:
            return 0.0
        span = (self.send_end or time.monotonic()) - self.send_start
        return round(self.sent_probes / span, 1) if span > 0 else 0.0

    def _sending_s(self) -> float:
        """First probe to last probe: what --max-runtime bounds."""
        if self.send_start is None or self.last_probe is None:
            return 0.0
        return round(self.last_probe - self.send_start, 3)

    def _drop_counts(self, xdp: dict[str, int]) -> dict[str, int]:
        drops = {
            "ringbuf_full": int(xdp.get("ringbuf_full", 0)),
            "reply_queue": self.reply_queue.dropped,
            "tx_ring_full": self.gen_stats["lost"] if self.gen_stats else 0,
            # AF_PACKET flushes a queue-less device refused (ENOBUFS), a frame each at most (a SYN
            # or an answer: not told apart). In-kernel answers the driver refused once trusted
            # (kreplies.py) only when never answered again (--reanswer-after 0): otherwise the
            # server retransmits what it sent, the program answers again, and an answer that
            # never got through shows as a handshake without an answer (`handshakes`).
            "tx_refused": sum(t.busy for t in (self.tx, self.reply_tx) if t is not None)
            + (self.kreplies.refused if self.kreplies and not self.cfg.reanswer_after else 0),
            # Taken from the network, not written: a full disk, a closed pipe, an abandoned drain.
            "output_lost": (self.writer.lost if self.writer else 0) + self.unread,
        }
        assert tuple(drops) == DROP_KEYS
        return drops

    def summary(self, t0: float, counters: np.ndarray | None, error: str | None) -> dict:
        dur = time.monotonic() - t0
        rcv = self.receiver
        xdp = {c.name.lower(): int(counters[c]) for c in Counter} if counters is not None else {}
        return {
            "version": __version__,
            "reason": self.reason,
            "error": error,
            "options": self.cfg.as_dict(),
            "seed": self.seed,
            "probe": ",".join(p.name for p in self.plan.user_probes),
            "targets": {
                "specs": list(self.cfg.targets)
                or ([] if self.cfg.list_of_targets is not None else ["0.0.0.0/0"]),
                "list_of_targets": self.cfg.list_of_targets,
                "exclude": [*self.cfg.exclude, *self.cfg.exclude_files],
                "ports": self.cfg.ports,
                "addresses": int(self.space.n_addrs),
                "pairs": int(self.space.size),
                "this_shard": int(self.pairs),
                "probes_planned": int(self.total),
            },
            "interface": self.net.iface if self.net else None,
            "source_ip": self.net.src_ip if self.net else None,
            "gateway_mac": self.net.gateway_mac if self.net else None,
            "tx_mode": (self.tx_mode if self.tx_mode == "xdp" else self.tx.mode) if self.tx else None,
            "tx_note": self.tx_note,
            "tx_generator": self.gen_stats,
            "cpus": self.placement.summary() if self.placement is not None else None,
            "kernel_replies": self._kreplies_summary()
            if self.kreplies
            else {
                "mode": "user space",
                "note": self.kernel_replies_note,
                "why": self.kernel_replies_note or self.kernel_replies_why,
            },
            "steps": self.steps.summary() if self.steps else None,
            **({"segments": self.segtable.summary()} if self.segtable else {}),
            "pcap": self.pcap_summary,
            "record_formatter": "c" if fastfmt.load() is not None else "numpy",
            "privileges": self.privileges,
            "packets_sent": {
                "probes": self.sent_probes,
                "replies": self.replies_sent(),
                "replies_in_kernel": self._kernel_replies_sent(),
                "total": self.sent_probes + self.replies_sent(),
            },
            "send_rate_pps": self._send_rate(),
            "sending_s": self._sending_s(),
            "throttled_ms": self.throttled,
            "responses": dict(rcv.by_class) if rcv else {},
            "hits": self.hits(),
            "repeats": int(xdp.get("repeat", 0)),
            "reanswered": self.replies.reanswered if self.replies else 0,
            # Banner probes: SYN-ACKs (completed), banners (answered), SYN-ACKs without one (unanswered).
            "handshakes": rcv.handshake_counts() if rcv else {},
            "drops": self._drop_counts(xdp),
            # To our address and port range but not a reply to this scan's probes: forged, or
            # stale, i.e. answers to an earlier scan (a server retransmits an unanswered
            # SYN-ACK for about a minute; two scans back to back see thousands). Not recorded.
            "rejected": {
                "validation_failed": int(xdp.get("bad_cookie", 0)) + (rcv.invalid if rcv else 0),
            },
            "output_cut_line": bool(self.writer.cut_line) if self.writer else False,
            "banners_truncated": rcv.truncated if rcv else 0,
            "xdp_counters": xdp,
            "records_written": self.writer.count if self.writer else 0,
            "start": self.started,
            "end": _now_iso(),
            "duration_s": round(dur, 3),
        }
