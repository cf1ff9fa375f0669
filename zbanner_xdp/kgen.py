"""Kernel-side SYN generator (--tx xdp).

Python still walks the permutation, but only writes (address, port,
variant) into an mmapped BPF array; the XDP program `xdp_gen` (same BPF
module as the receiver, so it shares the key and maps) computes the port
slot and cookie, writes the SYN and transmits it with XDP_TX, run by
BPF_PROG_TEST_RUN in live-frame mode. No frame is built in Python and no
per-packet syscall is made.

A program run that way but attached natively nowhere pays an RCU grace
period (~20 ms) per call, as the kernel adds it to and removes it from the
XDP dispatcher. So `xdp_gen` is also attached, natively, to a veth pair in a
private network namespace that only this process holds (by an fd): it
vanishes with the process, even a killed one, and touches no real interface.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import socket
import threading
import time
from typing import TYPE_CHECKING

import numpy as np

from . import bpfsys, events, packets
from .ethstats import XDP_TX_ERRORS, XDP_TX_SENT, XdpTxStats

if TYPE_CHECKING:
    from .bpfprog import RecvProgram

TARGET_DTYPE = events.GEN_TARGET_DTYPE


class KernelGenError(RuntimeError):
    pass


def fill_ring(
    ring: np.ndarray, base: int, addrs: np.ndarray, ports: np.ndarray, variants: np.ndarray | int
) -> None:
    """Targets `base`, `base`+1, ... (indices the program takes modulo the ring's size) into the
    generator's target ring: at most two slices, one either side of the wrap (indexing by an
    array of slots instead cost ~0.7 ms a 65,536-target batch against ~0.1, on the sending thread)."""
    n, slots = len(addrs), len(ring)
    if n > slots:
        raise ValueError("more targets than the ring holds")
    start = base % slots
    first = min(n, slots - start)
    v6 = "daddr6" in ring.dtype.names  # an IPv6 scan's program takes whole addresses
    dst_addrs = addrs if v6 else addrs.astype(np.uint32).byteswap()
    dst_ports = ports.astype(np.uint16).byteswap()
    for dst, src in ((slice(start, start + first), slice(0, first)), (slice(0, n - first), slice(first, n))):
        if dst.stop <= dst.start:
            continue
        ring["daddr6" if v6 else "daddr_raw"][dst] = dst_addrs[src]
        ring["dport_raw"][dst] = dst_ports[src]
        ring["variant"][dst] = variants if np.ndim(variants) == 0 else variants[src]


CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class _DispatcherAnchor:
    """xdp_gen attached natively to a veth in a private, fd-held network namespace."""

    def __init__(self, prog_fd: int):
        result: dict = {}

        def work() -> None:
            # Namespaces are per thread: only this short-lived thread moves.
            try:
                if _libc.unshare(CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")
                result["ns_fd"] = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
                from pyroute2 import IPRoute

                with IPRoute() as ipr:
                    ipr.link("add", ifname="zbgen0", kind="veth", peer="zbgen1")
                    idx = ipr.link_lookup(ifname="zbgen0")[0]
                result["link_fd"] = bpfsys.xdp_link_create(prog_fd, idx, bpfsys.XDP_FLAGS_DRV_MODE)
            except Exception as exc:  # reported by the caller
                result["error"] = exc

        t = threading.Thread(target=work, name="zbgen-anchor")
        t.start()
        t.join()
        self.ns_fd = result.get("ns_fd")
        self.link_fd = result.get("link_fd")
        if "error" in result:
            self.close()
            raise KernelGenError(f"cannot anchor the generator: {result['error']}")

    def close(self) -> None:
        for fd in (self.link_fd, self.ns_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.link_fd = self.ns_fd = None


class _Worker:
    """One more generator thread (--tx-threads), pinned to a CPU of its own: it runs its share of
    each of the generator's runs with a runner of its own. The program takes target indices from a
    shared atomic counter, so shares need no ranges: together they run as many frames as the run
    holds, and a share cut short (a signal) leaves the rest for the main thread."""

    def __init__(self, prog_fd: int, frame: bytes, ifindex: int, batch: int, cpu: int):
        self.runner = bpfsys.LiveRunner(prog_fd, frame, ifindex, batch)
        self.cpu = cpu
        self.count = 0
        self.error: BaseException | None = None
        self._stop = False
        self._go = threading.Event()
        self._done = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"zbgen-{cpu}", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        with contextlib.suppress(OSError):  # unpinned it is slower, not wrong
            os.sched_setaffinity(0, {self.cpu})
        while True:
            self._go.wait()
            self._go.clear()
            if self._stop:
                return
            try:
                self.runner.run(self.count)
            except bpfsys.BpfError as exc:
                if exc.errno != errno.EINTR:
                    self.error = exc
            except BaseException as exc:  # surfaced by run_share's caller
                self.error = exc
            self._done.set()

    def start(self, count: int) -> None:
        self.count, self.error = count, None
        self._done.clear()
        self._go.set()

    def wait(self) -> str | None:
        """Until its share (milliseconds of frames) is done, even through a Ctrl-C, which is raised
        after: the thread runs the program, which the scan closes next. What went wrong, if anything."""
        interrupted: BaseException | None = None
        while True:
            try:
                if self._done.wait(0.05):
                    break
            except BaseException as exc:  # (the signal handler's KeyboardInterrupt)
                interrupted = exc
        if interrupted is not None:
            raise interrupted
        return f"kernel generator thread failed: {self.error}" if self.error is not None else None

    def close(self) -> None:
        self._stop = True
        self._go.set()
        self.thread.join(5)


class KernelGenerator:
    # Frames per BPF_PROG_RUN call: large runs amortise the call, small ones
    # bound what a ring overflow costs in repeats.
    MIN_CHUNK = 64
    MIN_SHARE = 1024  # frames a thread at least: below, one thread runs it (waking others costs more)
    START_CHUNK = 256
    MAX_CHUNK = 16384
    RESEND_TRIES = 10  # with pauses from 0.2 ms, doubling: ~100 ms for a next hop to catch up
    # Frames the kernel runs between two flushes, after each of which the
    # softirq that drains the peer's ring gets to run. veth's XDP ring holds
    # 256 frames: to a sink, batches of 256 in short runs overflowed it once
    # in ~70 frames; batches of 64 (the NAPI weight) not once in 7M frames,
    # with or without two CPU hogs.
    BATCH = 64
    # Pacing after a refusal (see send()): the gap between frames doubles at most once every
    # CUT_S, halves every HALF_LIFE_S without a refusal, and is dropped below MIN_GAP_NS
    # (3M frames/s, what the generator sends to a sink unpaced). While paced, a run holds at
    # most PACED_RUN_S of frames, so that the pace is also the burst's.
    FIRST_GAP_NS = 1_000
    MAX_GAP_NS = 1_000_000
    MIN_GAP_NS = 300
    CUT_S = 0.01
    HALF_LIFE_S = 1.0
    # Slow start, with in-kernel replies (watch_replies()): the first run is paced at
    # START_GAP_NS and, until the first refusal, the gap halves every START_HALF_LIFE_S (full
    # speed after ~30 ms). Their answers leave at the rate the servers answer, a burst of SYNs
    # before the first refusal is a burst of answers after it. Until the driver's counters say
    # whether the program's answers leave, user space holds what the program answered
    # (replies.Replies.HOLD_MAX, 65,536; past it, it answers at once, and twice if the kernel's
    # answers did leave). "Sent" and "refused" are known at the first verification poll
    # (kreplies.KernelReplies.POLL_S, 20 ms): from 500k/s the first 20 ms send ~22k SYNs, inside
    # that bound (unpaced, ~66k would not be). ("Vanished", neither sent nor refused, takes a
    # second poll; answering at once is then right.) It was 50k/s (full speed after ~60 ms):
    # against the lab's emulator that start took ~64 ms of a ~125 ms 65,536-target banner scan,
    # and against its real nginx at `--rate 0` neither start (nor none) lost a banner.
    START_GAP_NS = 2_000
    START_HALF_LIFE_S = 0.01
    PACED_RUN_S = 0.001

    @classmethod
    def batch_size(cls) -> int:
        # ZBANNER_GEN_BATCH: for tests and benchmarks that need ring overflows to happen.
        return int(os.environ.get("ZBANNER_GEN_BATCH", cls.BATCH))

    def __init__(self, prog: RecvProgram, ifname: str, link: packets.LinkParams, slots: int):
        self.slots = slots
        self.prog = prog
        self.prog_fd = prog.obj.prog_fd("xdp_gen")
        self.anchor = _DispatcherAnchor(self.prog_fd)
        # An IPv6 scan's program takes whole addresses (events.GEN_TARGET6_DTYPE).
        self.family = link.family
        dtype = events.gen_target_dtype(self.family)
        size = slots * dtype.itemsize
        size = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
        self._mm = mmap.mmap(
            prog.map_fd("gen_targets"), size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
        )
        self.targets = np.frombuffer(self._mm, dtype=dtype, count=slots)
        self.written = 0
        # The SYN template: ours in every field but destination, ports, seq, checksums.
        nowhere = np.zeros(1, events.ADDR6_DTYPE if self.family == 6 else np.uint32)
        frames, lens = packets.syn_frames(link, nowhere, np.zeros(1), np.zeros(1), np.zeros(1, np.uint32))
        syn = frames[0, : lens[0]].tobytes()
        prog.obj.update("gen_template", 0, syn)
        self._set_state(0, 0)
        # Two bytes longer than the SYN: xdp_gen trims them, see there.
        self.frame = syn + b"\x00\x00"
        self.runner = bpfsys.LiveRunner(
            self.prog_fd, self.frame, socket.if_nametoindex(ifname), self.batch_size()
        )
        stats = XdpTxStats(ifname)
        self.stats: XdpTxStats | None = stats if stats.available else None
        if self.stats is None:
            stats.close()
        self.chunk = self.START_CHUNK
        self.workers: list[_Worker] = []  # --tx-threads beyond the first (start_workers())
        self.threads = 1  # sending threads asked for
        self.parallel_frames = 0  # frames of runs shared out between them (a paced run is not)
        self.runs = 0
        self.resent = 0  # frames sent again after a transmit ring overflowed
        self.xmit_errors = 0  # frames the driver refused (ring full), over all attempts
        self.lost = 0  # frames still refused after every retry
        self.gap_ns = 0.0  # pacing between frames after refusals; 0: none (see send())
        # --rate's spacing: the rate limiter grants ~5 ms of frames at a time, a burst that
        # overflows a next hop's XDP ring (256 frames on a veth) from a few tens of thousands
        # of frames a second; spread over its 5 ms it does not.
        self.min_gap_ns = 0.0
        self._next_run = 0.0
        self._last_cut: float | None = None
        self._last_run: float | None = None
        self.paced_s = 0.0  # time spent waiting for the pace
        self.reply_errors = 0  # the receive program's XDP_TX answers the driver refused meanwhile
        self.reply_stats: XdpTxStats | None = None
        self._reply_seen: int | None = None

    def watch_replies(self, ifname: str) -> None:
        """With in-kernel replies: the program's answers share the next hop's ring with the SYNs,
        and every answer refused costs a server retransmission, so their refusals slow the SYNs too."""
        stats = XdpTxStats(ifname, XDP_TX_SENT, XDP_TX_ERRORS)
        if stats.available:
            self.reply_stats = stats
        else:
            stats.close()
        if self._last_cut is None:
            self.gap_ns = float(self.START_GAP_NS)

    def _own_refusals(self) -> int | None:
        """The driver's count of the generator's refused frames so far; None if unreadable."""
        cur = self.stats.read() if self.stats is not None else None
        return cur[1] if cur is not None else None

    def _new_reply_refusals(self) -> int:
        """The program's answers the driver refused since the last call. They happen all the time
        (answers leave as the targets' replies come), not only during the generator's runs: a
        running baseline, so those made while it waited between runs count too."""
        cur = self.reply_stats.read() if self.reply_stats is not None else None
        if cur is None:
            return 0
        if self._reply_seen is None:
            self._reply_seen = cur[1]
        new, self._reply_seen = cur[1] - self._reply_seen, cur[1]
        return max(0, new)

    def spread_for(self, rate: float) -> None:
        """Spread each grant of a --rate limiter over most of its period (see min_gap_ns).

        At 80 % of the period: the limiter keeps the average, and a run that starts late (a
        sleep overshoots by tens of microseconds) can catch up instead of costing the rate (at
        the full period --rate 1M sent 925k). Below 1,000 pps the limiter grants a frame or two
        at a time, and above ~3M the generator cannot go faster than the spacing anyway.
        """
        gap = 0.8e9 / rate if rate >= 1000 else 0.0
        self.min_gap_ns = gap if gap >= self.MIN_GAP_NS else 0.0

    def gap(self) -> float:
        """The current spacing between frames in ns (0: none)."""
        return max(self.gap_ns, self.min_gap_ns)

    def frames_within(self, seconds: float) -> int:
        """How many frames the current pace sends in `seconds` (a call to send() should not hold
        its caller much longer: the caller sends user space's replies and watches for signals)."""
        gap = self.gap()
        return max(self.MIN_CHUNK, int(seconds * 1e9 / gap)) if gap else 1 << 30

    def _pace(self, frames: int, gap_ns: float) -> None:
        """Wait until a run of `frames` may start at `gap_ns` between frames."""
        if not gap_ns:
            return
        now = time.monotonic()
        if self._next_run > now:
            time.sleep(self._next_run - now)
            self.paced_s += self._next_run - now
            now = self._next_run
        self._next_run = max(now, self._next_run) + frames * gap_ns * 1e-9

    def _set_state(self, nxt: int, end: int) -> None:
        self.prog.obj.update("gen_state", 0, events.pack(events.GEN_STATE_DTYPE, next=nxt, end=end))

    def _next(self) -> int:
        return int(events.unpack(events.GEN_STATE_DTYPE, self.prog.obj.lookup("gen_state", 0))["next"])

    def start_workers(self, cpus: list[int]) -> None:
        """--tx-threads: a generator thread on each of `cpus`, besides the calling one."""
        ifindex = self.runner.ifindex
        self.threads = len(cpus) + 1
        self.workers = [_Worker(self.prog_fd, self.frame, ifindex, self.batch_size(), c) for c in cpus]

    def _run(self, start: int, count: int) -> None:
        """Frames [start, start+count) through the program, resuming where a signal stopped it."""
        self._set_state(start, start + count)
        todo = count
        if self.workers and count >= min(self.MIN_SHARE * (len(self.workers) + 1), self.MAX_CHUNK):
            # Every thread its share at once; what a signal cut short, the loop below sends.
            share = count // (len(self.workers) + 1)
            for w in self.workers:
                w.start(share)
            self.runs += 1
            failed: str | None = None
            try:
                self.runner.run(count - share * len(self.workers))
            except bpfsys.BpfError as exc:
                if exc.errno != errno.EINTR:
                    failed = f"kernel generator run failed: {exc.strerror}"
            finally:
                # Every thread done before anything else happens (a Ctrl-C included): none may run
                # the program once the scan closes it.
                errors = [w.wait() for w in self.workers]
            failed = failed or next((e for e in errors if e is not None), None)
            if failed is not None:
                raise KernelGenError(failed)
            self.parallel_frames += count
            todo = count - (min(self._next(), start + count) - start)
            if todo <= 0:
                return
        for _ in range(10_000):
            self.runs += 1
            try:
                self.runner.run(todo)
                return
            except bpfsys.BpfError as exc:
                # A signal (Ctrl-C, a profiler, SIGCHLD) ends the run early with EINTR. The
                # program counts what it consumed; running more than is left is harmless (the
                # extra runs find the range done and drop their frame).
                if exc.errno != errno.EINTR:
                    raise KernelGenError(f"kernel generator run failed: {exc.strerror}") from None
            done = min(self._next(), start + count) - start
            todo = count - done
            if todo <= 0:
                return
        raise KernelGenError("kernel generator: every run interrupted by a signal")

    def probe(self) -> None:
        """One empty run: fails fast where live frames are unsupported."""
        try:
            self.runner.run(1)
        except bpfsys.BpfError as exc:
            raise KernelGenError(f"live-frame BPF_PROG_TEST_RUN unavailable: {exc.strerror}") from None

    def send(self, addrs: np.ndarray, ports: np.ndarray, variants: np.ndarray | int) -> int:
        """Transmit one SYN per (address, port); returns how many were handed to the program.

        The batch goes out in runs of `chunk` frames. After each run the
        driver's XDP transmit error counter says whether its ring overflowed
        (a veth peer whose softirq is starved, a NIC ring at line rate): the
        lost frames cannot be identified, so the whole run is sent again after
        a pause, and the run length shrinks (AIMD). Some targets of that run
        then get two SYNs, which the receive path deduplicates; none gets none
        unless every retry fails (`lost`).
        """
        n = len(addrs)
        if n == 0:
            return 0
        if n > self.slots:
            raise KernelGenError("batch larger than the generator's target ring")
        base = self.written
        fill_ring(self.targets, base, addrs, ports, variants)
        todo = [(base, n, 0)]  # (first index, count, tries so far), a stack
        while todo:
            start, count, tries = todo.pop()
            c = min(self.chunk, count)
            gap = self.gap()
            if gap:
                c = min(c, max(self.MIN_CHUNK, int(self.PACED_RUN_S * 1e9 / gap)))
            if c < count:
                todo.append((start + c, count - c, 0))
            self._pace(c, gap)
            before = self._own_refusals()
            self._run(start, c)
            after = self._own_refusals() if before is not None else None
            errs = after - before if before is not None and after is not None else 0
            reply_errs = self._new_reply_refusals()
            self.reply_errors += reply_errs
            now = time.monotonic()
            since = now - self._last_run if self._last_run is not None else 0.0
            self._last_run = now
            if errs <= 0 and reply_errs <= 0:
                self.chunk = min(self.MAX_CHUNK, self.chunk + max(64, self.chunk // 8))
                if self.gap_ns:
                    half = self.HALF_LIFE_S if self._last_cut is not None else self.START_HALF_LIFE_S
                    self.gap_ns *= 0.5 ** (min(since, 1.0) / half)
                    if self.gap_ns < self.MIN_GAP_NS:
                        self.gap_ns = 0.0
                continue
            # The next hop is behind (its ring full): what it refused is the loss we can see;
            # behind it, queues we cannot see overflow at the same moment. Slow down (the gap
            # between frames, cut like TCP's window: once per round of refusals) rather than
            # only resend.
            if self._last_cut is None or now - self._last_cut >= self.CUT_S:
                self._last_cut = now
                # From the gap in force (--rate's spacing included), so the first cut slows.
                top = max(self.MAX_GAP_NS, 8 * self.min_gap_ns)
                self.gap_ns = min(top, max(self.FIRST_GAP_NS, 2 * self.gap()))
            self.chunk = max(self.MIN_CHUNK, self.chunk // 2)
            if errs <= 0:
                continue  # only answers refused: the servers retransmit, the program answers again
            self.xmit_errors += errs
            if tries + 1 >= self.RESEND_TRIES:
                self.lost += errs
                continue
            self.resent += c
            todo.append((start, c, tries + 1))
            # Let the consumer drain its ring before trying again.
            time.sleep(0.0002 * (1 << tries))
        self.written = base + n
        return n

    def stop_workers(self) -> None:
        for w in self.workers:
            w.close()
        self.workers = []

    def close(self) -> None:
        self.stop_workers()
        self.anchor.close()
        for stats in (self.stats, self.reply_stats):
            if stats is not None:
                stats.close()
        self.stats = self.reply_stats = None
        self.targets = None  # type: ignore[assignment]
        try:
            self._mm.close()
        except BufferError:
            pass
