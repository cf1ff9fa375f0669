"""A user-space stand-in for ``tc netem``: an impairment relay between two veth interfaces.

The lab's fault-injection tests want netem on the lab link (loss, duplication,
reordering, delay with jitter), but kernels built without CONFIG_NET_SCH_NETEM
cannot do that. This module runs the same impairments in user space: a process
in a "wire" network namespace reads every Ethernet frame arriving on one
interface (AF_PACKET, ETH_P_ALL) and writes it out of the other, applying the
:class:`Impairment` of that direction. Where the kernel does have netem,
:meth:`Impairment.netem_args` gives the equivalent ``tc qdisc ... netem``
arguments and :func:`netem_available` says whether that will work.

Wiring (this module is topology-agnostic; the caller builds it)::

    left ns                      wire ns                        right ns
    L0 10.99.0.1/24 <-veth-> W0  [relay: W0 <-> W1]  W1 <-veth-> R0 10.99.0.2/24

* two veth pairs whose wire-side ends (W0, W1) live in the wire namespace;
  both up, no IP addresses on them;
* IPv6 disabled in the wire namespace (``net.ipv6.conf.{all,default}.disable_ipv6=1``
  set before the links arrive) so it emits nothing of its own; the relay also
  ignores frames its own namespace transmits, so nothing could leak anyway;
* tx checksum offload off on all four veth ends (``ethtool -K IF tx off`` or
  pyroute2's ``IoctlEthtool.set_offload_flag("tx-checksumming", 0)``), so the
  checksums on the wire are real and a capture on either side sees what a
  physical link would carry. (The relay copes if this is forgotten: it moves
  frames with their virtio-net header, so partial checksums and TSO super-frames
  survive the trip; the stats count such frames as ``offloaded``.)

Start it inside the wire namespace and wait for ``ready`` on stdout::

    ip netns exec WIRE /path/to/venv/bin/python -m zbanner_xdp.lab.impair \\
        --a W0 --b W1 --a2b "loss 5% delay 50ms 10ms" --b2a "loss 5%" --seconds 60

It runs until SIGTERM/SIGINT or ``--seconds`` and then prints its statistics
as one JSON line. :class:`Relay` does all of that from Python.

Semantics follow sch_netem (uniform jitter, no correlation):

* duplicate first, then loss: a frame that is both duplicated and lost goes
  out once; the extra copy then passes through the impairment again with
  duplication off (its own loss draw and its own delay), as netem re-enqueues
  its clone at the root qdisc;
* ``delay D J``: each frame waits D +/- uniform(J), never less than 0; frames
  leave in order of due time, so jitter reorders them, as netem's tfifo does;
* ``reorder P`` with a delay: a fraction P of frames skips the delay (goes to
  the head of the queue) and overtakes the delayed ones, like netem's
  ``reorder P gap 1``. Without a delay (netem refuses that) the relay instead
  holds a frame back with probability P until the next one has passed, i.e.
  swaps adjacent frames; a held frame is released after 10 ms if nothing follows;
* ``limit N`` (default 100000 frames, netem's own default is 1000) tail-drops
  frames when the delay queue is full.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import gzip
import heapq
import itertools
import json
import math
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_STATISTICS = 6
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
VNET_F_NEEDS_CSUM = 1

BURST = 256  # frames read from one socket before looking at the other and at the delay queue
RX_BUF = 1 << 18  # room for a 64 KiB GSO super-frame (and BIG TCP) plus the vnet header
SOCK_BUF = 8 << 20
SWAP_HOLD_S = 0.010  # how long swap-mode reordering holds a lone frame
IDLE_POLL_S = 0.05  # bounds how late a stop request or the deadline is noticed
SEND_TIMEOUT_S = 0.1
DEFAULT_LIMIT = 100_000
MAX_SECONDS = 3600.0

_TIME_UNITS_MS = {
    "s": 1000.0, "sec": 1000.0, "secs": 1000.0,
    "ms": 1.0, "msec": 1.0, "msecs": 1.0,
    "us": 0.001, "usec": 0.001, "usecs": 0.001,
}  # fmt: skip
_TIME_RE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)([a-z]+)$")
_PCT_RE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)%?$")
_KEYWORDS = {"loss", "drop", "duplicate", "reorder", "delay", "seed", "limit"}


@dataclass(frozen=True)
class Impairment:
    """What one direction of the link does to frames. Probabilities are fractions (0.05 = 5%)."""

    loss: float = 0
    duplicate: float = 0
    reorder: float = 0
    delay_ms: float = 0
    jitter_ms: float = 0
    seed: int | None = None
    limit: int = DEFAULT_LIMIT

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder"):
            p = getattr(self, name)
            if not (isinstance(p, (int, float)) and 0 <= p <= 1):
                raise ValueError(f"{name} must be a probability in 0..1, got {p!r}")
        for name in ("delay_ms", "jitter_ms"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v <= 3_600_000):
                raise ValueError(f"{name} must be 0..3600000 ms, got {v!r}")
        if not (isinstance(self.limit, int) and self.limit >= 1):
            raise ValueError(f"limit must be a positive frame count, got {self.limit!r}")

    @classmethod
    def parse(cls, spec: str) -> Impairment:
        """Parse netem-style text, e.g. ``"loss 5% delay 50ms 10ms"``; ``""`` or ``"none"`` is a clean link.

        Like tc, a bare percentage number means percent (``loss 5`` == ``loss 5%``).
        Times need a unit (s, ms, us). Correlations and distributions are not supported.
        """
        toks = spec.split()
        if toks == ["none"]:
            toks = []
        kw: dict[str, Any] = {}
        seen: set[str] = set()
        i = 0

        def value(what: str) -> str:
            if i + 1 >= len(toks):
                raise ValueError(f"{what}: missing value")
            return toks[i + 1]

        while i < len(toks):
            word = toks[i]
            key = "loss" if word == "drop" else word
            if key not in _KEYWORDS:
                raise ValueError(f"unknown or unsupported netem option {word!r}")
            if key in seen:
                raise ValueError(f"{word} given twice")
            seen.add(key)
            if key == "loss" and value(word) == "random":
                i += 1  # netem's "loss random P" is the plain Bernoulli loss
            if key in ("loss", "duplicate", "reorder"):
                kw[key] = _parse_percent(value(word), word)
                i += 2
            elif key == "delay":
                kw["delay_ms"] = _parse_time_ms(value(word), word)
                i += 2
                if i < len(toks) and toks[i] not in _KEYWORDS:
                    kw["jitter_ms"] = _parse_time_ms(toks[i], "delay jitter")
                    i += 1
            else:  # seed, limit
                raw = value(word)
                if not re.fullmatch(r"\d+", raw):
                    raise ValueError(f"{word}: expected a non-negative integer, got {raw!r}")
                kw[key] = int(raw)
                i += 2
            if i < len(toks) and toks[i] not in _KEYWORDS:
                raise ValueError(
                    f"{word}: unexpected {toks[i]!r} (correlation, gap and distribution are not supported)"
                )
        return cls(**kw)

    @property
    def is_clean(self) -> bool:
        return not (self.loss or self.duplicate or self.reorder or self.delay_ms or self.jitter_ms)

    @property
    def swap_reorder(self) -> bool:
        """Reordering without a delay: the relay's adjacent-swap mode (netem has no equivalent)."""
        return bool(self.reorder) and not self.delay_ms

    def spec(self) -> str:
        """Canonical text form; ``Impairment.parse(x.spec()) == x``."""
        parts: list[str] = []
        if self.delay_ms or self.jitter_ms:
            parts += ["delay", _fmt_ms(self.delay_ms)]
            if self.jitter_ms:
                parts.append(_fmt_ms(self.jitter_ms))
        if self.reorder:
            parts += ["reorder", _fmt_pct(self.reorder)]
        if self.loss:
            parts += ["loss", _fmt_pct(self.loss)]
        if self.duplicate:
            parts += ["duplicate", _fmt_pct(self.duplicate)]
        if self.limit != DEFAULT_LIMIT:
            parts += ["limit", str(self.limit)]
        if self.seed is not None:
            parts += ["seed", str(self.seed)]
        return " ".join(parts) or "none"

    def __str__(self) -> str:
        return self.spec()

    def netem_args(self) -> list[str]:
        """Arguments for ``tc qdisc add dev IF root netem ...`` with the same behaviour.

        ``limit`` is always passed because netem's default (1000 frames) would
        drop under load where the relay does not. Raises ValueError for swap-mode
        reordering (reorder without delay), which netem rejects.
        """
        if self.swap_reorder:
            raise ValueError("netem cannot reorder without a delay (the relay's swap mode has no equivalent)")
        args = ["limit", str(self.limit)]
        if self.delay_ms or self.jitter_ms:
            args += ["delay", _fmt_ms(self.delay_ms)]
            if self.jitter_ms:
                # No "distribution": without a table netem's jitter is uniform, like the relay's.
                args.append(_fmt_ms(self.jitter_ms))
        if self.reorder:
            args += ["reorder", _fmt_pct(self.reorder)]  # tc implies "gap 1"
        if self.loss:
            args += ["loss", _fmt_pct(self.loss)]
        if self.duplicate:
            args += ["duplicate", _fmt_pct(self.duplicate)]
        if self.seed is not None:
            args += ["seed", str(self.seed)]
        return args


def _parse_percent(raw: str, what: str) -> float:
    m = _PCT_RE.match(raw)
    if not m:
        raise ValueError(f"{what}: expected a percentage like 5%, got {raw!r}")
    p = float(m.group(1)) / 100
    if p > 1:
        raise ValueError(f"{what}: {raw} is more than 100%")
    return p


def _parse_time_ms(raw: str, what: str) -> float:
    m = _TIME_RE.match(raw)
    if not m or m.group(2) not in _TIME_UNITS_MS:
        raise ValueError(f"{what}: expected a time with a unit like 50ms, got {raw!r}")
    return float(m.group(1)) * _TIME_UNITS_MS[m.group(2)]


def _fmt_pct(p: float) -> str:
    return f"{p * 100:.10g}%"


def _fmt_ms(ms: float) -> str:
    return f"{ms * 1000:.10g}us" if ms and ms < 1 else f"{ms:.10g}ms"


# --------------------------------------------------------------------------- netem probe


def _kernel_config(option: str) -> str | None:
    """'y', 'm', 'n' (present but not set) or None when /proc/config.gz is unavailable."""
    try:
        with gzip.open("/proc/config.gz", "rt") as fh:
            text = fh.read()
    except OSError:
        return None
    m = re.search(rf"^{option}=(\w+)$", text, re.M)
    if m:
        return m.group(1)
    return "n" if re.search(rf"^# {option} is not set$", text, re.M) else None


def _probe_ok(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@cache
def netem_available(ns: str | None = None) -> bool:
    """Can this kernel run ``tc qdisc ... netem``?

    /proc/config.gz answers directly when CONFIG_NET_SCH_NETEM is built in or
    not set. Otherwise (a module, or no config) the answer comes from actually
    adding a netem qdisc where it cannot disturb anything: on ``lo`` of a fresh
    anonymous namespace (``unshare --net``, gone when tc exits) or, given
    ``ns``, on a temporary veth pair created and deleted inside that namespace.
    Needs root for the probe; without it the answer is False.
    """
    cfg = _kernel_config("CONFIG_NET_SCH_NETEM")
    if cfg == "y":
        return True
    if cfg == "n":
        return False
    netem = ["qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]
    if ns is None:
        return _probe_ok(["unshare", "--net", "--", "tc", *netem])
    probe_if = f"zbfnp{os.getpid() % 100000}"
    add = ["ip", "-n", ns, "link", "add", probe_if, "type", "veth", "peer", "name", probe_if + "p"]
    if not _probe_ok(add):
        return False
    try:
        netem[2:4] = ["dev", probe_if]
        return _probe_ok(["tc", "-n", ns, *netem])
    finally:
        _probe_ok(["ip", "-n", ns, "link", "del", probe_if])


# --------------------------------------------------------------------------- relay


def _sysfs_int(ifname: str, attr: str) -> int | None:
    try:
        with open(f"/sys/class/net/{ifname}/{attr}") as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return None


def _same_veth_pair(if_a: str, if_b: str) -> bool:
    """Are if_a and if_b the two ends of one veth pair? Relaying between them loops every frame forever.

    Only answerable when /sys shows this namespace (as under ``ip netns exec``); the
    ifindex cross-check rejects a /sys that belongs to another namespace.
    """
    try:
        idx_a, idx_b = socket.if_nametoindex(if_a), socket.if_nametoindex(if_b)
    except OSError:
        return False
    if _sysfs_int(if_a, "ifindex") != idx_a or _sysfs_int(if_b, "ifindex") != idx_b:
        return False
    return _sysfs_int(if_a, "iflink") == idx_b and _sysfs_int(if_b, "iflink") == idx_a


def _open_port(ifname: str) -> tuple[socket.socket, bool, bool]:
    """A raw packet socket on ifname: (socket, vnet_hdr, ignores_outgoing)."""
    # Protocol 0 until bind: a socket created with ETH_P_ALL would queue frames from
    # every interface in the namespace until bind() narrows it to ifname.
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        try:
            s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            vnet = True
        except OSError:
            vnet = False
        try:
            s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            ign = True
        except OSError:
            ign = False
        for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
            # The FORCE variants may exceed net.core.[rw]mem_max (root only); a burst of
            # small frames must fit while the relay is busy with the other direction.
            try:
                s.setsockopt(socket.SOL_SOCKET, force, SOCK_BUF)
            except OSError:
                s.setsockopt(socket.SOL_SOCKET, plain, SOCK_BUF)
        # A bounded blocking send: reads use MSG_DONTWAIT, so the socket can stay blocking
        # and a momentarily full send buffer costs a short wait instead of a lost frame.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 0, int(SEND_TIMEOUT_S * 1e6)))
        try:
            s.bind((ifname, ETH_P_ALL))
            ifindex = socket.if_nametoindex(ifname)
        except OSError as e:
            raise OSError(e.errno, f"{ifname}: {e.strerror or e}") from e
        # Promiscuous through a membership rather than the interface flag: the kernel drops
        # it when the socket closes, so a killed relay leaves the interface as it found it.
        mreq = struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
        s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
    except BaseException:
        s.close()
        raise
    return s, vnet, ign


class _Direction:
    """One direction of the link: reads frames from rx, impairs them, writes them to tx."""

    def __init__(
        self, name: str, rx: socket.socket, tx: socket.socket, imp: Impairment, ign_out: bool, vnet: bool
    ) -> None:
        self.name = name
        self.rx = rx
        self.tx = tx
        self.imp = imp
        self.ign_out = ign_out
        self.vnet = vnet
        self.rng = random.Random(imp.seed)
        self.buf = bytearray(RX_BUF)
        self.view = memoryview(self.buf)
        self.queue: list[tuple[float, int, int, bytes]] = []  # (due, tiebreak, arrival seq, frame)
        self.order = itertools.count()
        self.held: tuple[int, bytes] | None = None
        self.held_due = 0.0
        self.max_out = -1  # highest arrival seq forwarded so far
        self.first_rx = 0.0
        self.last_tx = 0.0
        self.tx_errnos: dict[str, int] = {}
        self.received = self.forwarded = self.dropped = self.duplicated = 0
        self.delayed = self.reordered = self.max_queue = self.overflow = 0
        self.tx_errors = self.offloaded = 0

    # -- receive

    def pump(self, now: float) -> int:
        """Read one burst; returns the number of frames taken off the socket."""
        recv_into = self.rx.recv_into
        recvfrom_into = self.rx.recvfrom_into
        buf, view = self.buf, self.view
        clean = self.imp.is_clean
        vnet = self.vnet
        got = 0
        for _ in range(BURST):
            try:
                if self.ign_out:
                    # recvfrom_into would cost an extra SIOCGIFNAME ioctl per frame to name
                    # the interface; with PACKET_IGNORE_OUTGOING the address is not needed.
                    n = recv_into(buf, 0, socket.MSG_DONTWAIT)
                else:
                    n, addr = recvfrom_into(buf, 0, socket.MSG_DONTWAIT)
                    if addr[2] == PACKET_OUTGOING:
                        continue
            except (BlockingIOError, InterruptedError):
                break
            got += 1
            seq = self.received
            self.received = seq + 1
            if vnet and (buf[0] & VNET_F_NEEDS_CSUM or buf[1]):
                self.offloaded += 1
            if clean:
                self._emit(view[:n], seq)
            else:
                self._impair(view[:n], seq, now)
        if got and not self.first_rx:
            self.first_rx = now
        return got

    def _impair(self, frame: memoryview, seq: int, now: float) -> None:
        imp, rng = self.imp, self.rng
        copies = 1
        if imp.duplicate and rng.random() < imp.duplicate:
            copies = 2
            self.duplicated += 1
        if imp.loss and rng.random() < imp.loss:
            copies -= 1
            self.dropped += 1
        if copies == 0:
            return
        if copies == 2:
            # netem re-enqueues its clone at the root with duplication off: own loss draw, own delay.
            if imp.loss and rng.random() < imp.loss:
                self.dropped += 1
            else:
                self._schedule(frame, seq, now)
        self._schedule(frame, seq, now)

    def _schedule(self, frame: memoryview, seq: int, now: float) -> None:
        imp, rng = self.imp, self.rng
        if imp.delay_ms or imp.jitter_ms:
            if imp.reorder and imp.delay_ms and rng.random() < imp.reorder:
                due = 0.0  # netem puts these at the head of its queue, ahead of everything due
            else:
                d = imp.delay_ms
                if imp.jitter_ms:
                    d += rng.uniform(-imp.jitter_ms, imp.jitter_ms)
                due = now + max(d, 0.0) / 1000
            if len(self.queue) >= imp.limit:
                self.overflow += 1
                return
            if due:
                self.delayed += 1
            heapq.heappush(self.queue, (due, next(self.order), seq, bytes(frame)))
            self.max_queue = max(self.max_queue, len(self.queue))
        elif imp.reorder:
            if self.held is not None:
                held_seq, held = self.held
                self.held = None
                self._emit(frame, seq)
                self._emit(held, held_seq)
            elif rng.random() < imp.reorder:
                self.held = (seq, bytes(frame))
                self.held_due = now + SWAP_HOLD_S
                self.max_queue = max(self.max_queue, 1)
            else:
                self._emit(frame, seq)
        else:
            self._emit(frame, seq)

    # -- transmit

    def _emit(self, frame: bytes | memoryview, seq: int) -> None:
        try:
            self.tx.send(frame)
        except OSError as e:
            # ENOBUFS: the far veth's backlog was full; EMSGSIZE: an oversized frame
            # without a vnet header; ENETDOWN: the far end is down. The frame is lost
            # either way, as it would be on a real wire; count it, keep relaying.
            self.tx_errors += 1
            key = errno.errorcode.get(e.errno or 0, str(e.errno))
            self.tx_errnos[key] = self.tx_errnos.get(key, 0) + 1
            return
        self.forwarded += 1
        if seq < self.max_out:
            self.reordered += 1
        else:
            self.max_out = seq
        self.last_tx = time.monotonic()

    def flush_due(self, now: float) -> None:
        q = self.queue
        while q and q[0][0] <= now:
            _, _, seq, frame = heapq.heappop(q)
            self._emit(frame, seq)
        if self.held is not None and now >= self.held_due:
            seq, frame = self.held
            self.held = None
            self._emit(frame, seq)

    def next_due(self) -> float:
        due = self.queue[0][0] if self.queue else math.inf
        return min(due, self.held_due) if self.held is not None else due

    def stats(self) -> dict[str, Any]:
        try:
            _, kernel_drops = struct.unpack("II", self.rx.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        except OSError:
            kernel_drops = -1
        active = self.last_tx - self.first_rx if self.first_rx and self.last_tx > self.first_rx else 0.0
        return {
            "impairment": self.imp.spec(),
            "received": self.received,
            "forwarded": self.forwarded,
            "dropped": self.dropped,
            "duplicated": self.duplicated,
            "delayed": self.delayed,
            "reordered": self.reordered,
            "max_queue": self.max_queue,
            "overflow": self.overflow,
            "unsent": len(self.queue) + (self.held is not None),
            "tx_errors": self.tx_errors,
            "tx_errnos": self.tx_errnos,
            "rx_kernel_drops": kernel_drops,
            "offloaded": self.offloaded,
            "active_s": round(active, 6),
        }


def run_relay(
    if_a: str,
    if_b: str,
    a_to_b: Impairment,
    b_to_a: Impairment,
    seconds: float,
    stop: threading.Event | None = None,
    *,
    on_ready: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Relay frames between if_a and if_b (in the current namespace) until stop is set or seconds pass.

    Returns statistics per direction ("a2b", "b2a"). Per direction,
    ``received + duplicated == forwarded + dropped + overflow + unsent + tx_errors``;
    ``reordered`` counts frames that left after a frame that arrived later
    (what a receiver numbering the frames would see as out of order);
    ``rx_kernel_drops`` are frames the kernel dropped because the relay fell behind.
    Frames still queued at the end are discarded (``unsent``), as deleting a netem qdisc would.
    """
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds must be positive and finite, got {seconds!r}")
    if if_a == if_b:
        raise ValueError("the two interfaces must differ")
    if _same_veth_pair(if_a, if_b):
        raise ValueError(f"{if_a} and {if_b} are the two ends of one veth pair: frames would loop forever")
    stop = stop or threading.Event()
    sa, vnet_a, ign_a = _open_port(if_a)
    try:
        sb, vnet_b, ign_b = _open_port(if_b)
    except BaseException:
        sa.close()
        raise
    try:
        vnet = vnet_a and vnet_b
        if not vnet and (vnet_a or vnet_b):
            # A frame read with a vnet header must be written with one: both or neither.
            for s in (sa, sb):
                with contextlib.suppress(OSError):
                    s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 0)
        dirs = {
            sa.fileno(): _Direction("a2b", sa, sb, a_to_b, ign_a, vnet),
            sb.fileno(): _Direction("b2a", sb, sa, b_to_a, ign_b, vnet),
        }
        fds = list(dirs)
        started = time.monotonic()
        deadline = started + seconds
        if on_ready is not None:
            on_ready()
        while not stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                break
            wake = min(deadline, now + IDLE_POLL_S, *(d.next_due() for d in dirs.values()))
            # select(), not epoll/poll: their timeouts are whole milliseconds (rounded up), which
            # would make every delay up to 1 ms late; select's microsecond timeout keeps it ~0.1 ms.
            ready, _, _ = select.select(fds, [], [], max(wake - now, 0.0))
            now = time.monotonic()
            # One burst per ready socket per round: a busy socket is ready again at once,
            # and neither direction nor the delay queues starve.
            for fd in ready:
                dirs[fd].pump(now)
            for d in dirs.values():
                d.flush_due(now)
        # Frames already sitting in the socket buffers were on the wire before the stop (a
        # forwarded frame is often answered within the relay's own send call): pass on what
        # is due now, or a TCP peer retransmits into whatever runs on these links next.
        now = time.monotonic()
        for d in dirs.values():
            for _ in range(16):
                if d.pump(now) < BURST:
                    break
        for d in dirs.values():
            d.flush_due(now)
        elapsed = time.monotonic() - started
        a2b, b2a = dirs[sa.fileno()], dirs[sb.fileno()]
        return {
            "if_a": if_a,
            "if_b": if_b,
            "seconds": round(elapsed, 3),
            "vnet_hdr": vnet,
            "a2b": a2b.stats(),
            "b2a": b2a.stats(),
        }
    finally:
        sa.close()
        sb.close()


# --------------------------------------------------------------------------- launcher


class Relay:
    """The relay as a child process inside a wire namespace.

    ``start()`` returns once the relay printed ``ready``; ``stop()`` sends
    SIGTERM and returns its statistics; leaving the ``with`` block kills it.
    It exits by itself after ``seconds``, and with ``die_with_parent`` it also
    gets SIGTERM when its parent goes away (PR_SET_PDEATHSIG). Note that the
    kernel ties that to the *thread* that started it: call ``start()`` from a
    long-lived thread (or pass ``die_with_parent=False``).
    """

    def __init__(
        self,
        wire_ns: str,
        if_a: str,
        if_b: str,
        a_to_b: Impairment | str = "",
        b_to_a: Impairment | str = "",
        seconds: float = 60,
        python: str = sys.executable,
        die_with_parent: bool = True,
    ) -> None:
        self.die_with_parent = die_with_parent
        self.a_to_b = a_to_b if isinstance(a_to_b, Impairment) else Impairment.parse(a_to_b)
        self.b_to_a = b_to_a if isinstance(b_to_a, Impairment) else Impairment.parse(b_to_a)
        self.argv = [
            "ip", "netns", "exec", wire_ns, python, "-m", "zbanner_xdp.lab.impair",
            "--a", if_a, "--b", if_b, "--a2b", self.a_to_b.spec(), "--b2a", self.b_to_a.spec(),
            "--seconds", f"{seconds:g}",
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self._out = b""
        self.stats: dict[str, Any] | None = None

    def start(self, timeout: float = 15) -> Relay:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here: the child must not import
        sigterm = int(signal.SIGTERM)

        def pdeathsig() -> None:
            prctl(1, sigterm)  # PR_SET_PDEATHSIG; survives the exec of ip and then of python

        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # The folder holding zbanner_xdp/: `-m` finds the package there even when not installed.
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
            preexec_fn=pdeathsig if self.die_with_parent else None,
        )
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        try:
            while b"ready\n" not in self._out:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"impairment relay not ready after {timeout:g}s")
                r, _, _ = select.select([fd], [], [], left)
                if r:
                    chunk = os.read(fd, 4096)
                    if not chunk:
                        _, err_b = self.proc.communicate(timeout=5)
                        err = err_b.decode(errors="replace").strip()
                        raise RuntimeError(f"impairment relay exited {self.proc.returncode}: {err}")
                    self._out += chunk
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self, timeout: float = 10) -> dict[str, Any]:
        """Stop the relay and return its statistics (also kept in ``self.stats``)."""
        if self.proc is None:
            raise RuntimeError("relay not started")
        if self.stats is not None:
            return self.stats
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        lines = (self._out + out).decode(errors="replace").splitlines()
        stats = [ln for ln in lines if ln.startswith("{")]
        if not stats:
            msg = err.decode(errors="replace").strip()
            raise RuntimeError(f"impairment relay exited {self.proc.returncode} without stats: {msg}")
        self.stats = json.loads(stats[-1])
        return self.stats

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.communicate(timeout=5)

    def __enter__(self) -> Relay:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.kill()


# --------------------------------------------------------------------------- CLI


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2, like a bad spec
        print(f"impair: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="python -m zbanner_xdp.lab.impair", description=__doc__.split("\n")[0])
    p.add_argument("--a", required=True, metavar="IF", help="first interface")
    p.add_argument("--b", required=True, metavar="IF", help="second interface")
    p.add_argument("--a2b", default="", metavar="SPEC", help='A->B, e.g. "loss 5%% delay 50ms 10ms"')
    p.add_argument("--b2a", default="", metavar="SPEC", help="impairment B->A")
    p.add_argument("--seconds", required=True, type=float, help=f"run time bound (max {MAX_SECONDS:g})")
    args = p.parse_args(argv)
    imps = []
    for opt in ("a2b", "b2a"):
        try:
            imps.append(Impairment.parse(getattr(args, opt)))
        except ValueError as e:
            print(f"impair: bad --{opt} {getattr(args, opt)!r}: {e}", file=sys.stderr)
            return 2
    if not (0 < args.seconds <= MAX_SECONDS):
        print(f"impair: --seconds must be in (0, {MAX_SECONDS:g}]", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())

    def ready() -> None:
        print("ready", flush=True)

    try:
        stats = run_relay(args.a, args.b, imps[0], imps[1], args.seconds, stop, on_ready=ready)
    except ValueError as e:
        print(f"impair: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"impair: {e.strerror or e}", file=sys.stderr)
        return 1
    print(json.dumps(stats), flush=True)
    return 0


__all__ = ["Impairment", "Relay", "main", "netem_available", "run_relay"]

if __name__ == "__main__":
    sys.exit(main())
