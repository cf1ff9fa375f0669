"""--kernel-replies, verified: in-kernel answers are trusted only once the driver shows them leaving.

The receive program answers SYN-ACKs and banners itself with XDP_TX. Where
the driver refuses XDP transmits (a veth whose peer has no XDP program, a NIC
without XDP_TX support, a full ring) those answers vanish, and a scan that
trusted them would silently get no banners. So:

- until the driver's XDP_TX counters show a frame sent, the replies stage
  holds the events the program answered ("unproven"), in a bounded list;
- sent > 0: proven, the held events are forgotten; what the driver refuses
  from then on (its ring full) is counted (`refused`, a drop);
- errors but nothing sent, or the program answered VANISH_AFTER replies and
  the counters did not move at all: refused. The program is told to stop
  answering, user space answers the held events at once (`answered_late`,
  tens of milliseconds late) and everything after, as without the option;
- a driver without XDP_TX counters cannot be verified: user space answers
  from the start.

Holding rather than answering twice matters: a second ACK with the probe
arriving after the connection is closed draws a RST, a record of its own.

A veth whose peer has GRO but no XDP program is not caught: its XDP_TX frames
count as sent but wait in the peer's ring until other traffic wakes it
(the kernel's veth_xdp_flush only kicks a peer that has an XDP program).
The README says so; the lab gives its router an XDP program, as a NIC would.

The metadata's `kernel_replies` says which ran and why.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .ethstats import XDP_TX_ERRORS, XDP_TX_SENT, XdpTxStats
from .events import Counter

if TYPE_CHECKING:
    from .bpfprog import RecvProgram
    from .replies import Replies


class KernelReplies:
    VANISH_AFTER = 16  # answers the program made with neither a sent frame nor an error counted
    POLL_S = 0.02  # while verifying; once decided, once a second is enough

    def __init__(self, prog: RecvProgram, replies: Replies, ifname: str):
        self.prog = prog
        self.replies = replies
        self.ifname = ifname
        self.mode = "verifying"
        self.note: str | None = None
        self.sent = 0  # XDP_TX frames the driver sent (all of them ours: the program is the only XDP there)
        self.refused = 0  # refused once proven: answers lost (a drop; the server retransmits)
        self.early_refusals = 0  # refused while unproven: their events were held, then answered
        self._next_poll = 0.0
        self._answered_before = 0
        self._charged = 0  # answers already charged to the rate (answered_since_last)
        self.stats: XdpTxStats | None = XdpTxStats(ifname, XDP_TX_SENT, XDP_TX_ERRORS)
        if not self.stats.available:
            self._fall_back(f"the driver of '{ifname}' has no XDP_TX counters to verify them by")
            return
        self._base = self.stats.read() or (0, 0)
        replies.kernel_state = "unproven"

    def _fall_back(self, why: str) -> None:
        self.prog.disable_kernel_replies()
        self.replies.kernel_state = "refused"  # for good: user space answers every reply
        self.mode = "user space"
        self.note = f"in-kernel replies not used: {why}; user space answered"
        self._close_stats()

    def _close_stats(self) -> None:
        if self.stats is not None:
            self.stats.close()
            self.stats = None

    def poll(self, now: float | None = None, force: bool = False) -> None:
        """Read the counters (rate-limited unless `force`) and move on from "verifying"."""
        now = time.monotonic() if now is None else now
        if self.stats is None or (not force and now < self._next_poll):
            return
        self._next_poll = now + (self.POLL_S if self.mode == "verifying" else 1.0)
        answered = self.prog.counter(Counter.KERNEL_REPLIES)
        cur = self.stats.read()
        if cur is None:
            return
        sent, errors = cur[0] - self._base[0], cur[1] - self._base[1]
        self.sent = sent
        if self.mode == "kernel":
            self.refused = errors - self.early_refusals
            return
        if sent > 0:
            self.mode = "kernel"
            self.early_refusals = errors
            self.replies.kernel_state = "trusted"
            return
        if errors > 0:
            self.early_refusals = errors
            self._fall_back(f"the driver of '{self.ifname}' refused {errors} XDP transmits and sent none")
        elif self._answered_before >= self.VANISH_AFTER:
            # Read at the previous poll, 20 ms ago: long past the end of their NAPI poll.
            self._fall_back(
                f"{self._answered_before} XDP transmits on '{self.ifname}' neither sent nor counted as errors"
            )
        self._answered_before = answered

    def answered_since_last(self) -> int:
        """Answers the program made since the last call (one map read)."""
        answered = self.prog.counter(Counter.KERNEL_REPLIES)
        new, self._charged = answered - self._charged, answered
        return new

    def close(self) -> None:
        self.poll(force=True)
        self._close_stats()
        if self.mode == "verifying":  # the program never had to answer, or the driver never showed it
            self.mode = "unverified"

    def summary(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "note": self.note,
            "why": self.note,  # why user space answered, if it did
            "sent": self.sent,
            "refused": self.refused,
            "early_refusals": self.early_refusals,
            # Answers the program made, refused, that user space then made itself.
            "answered_late": self.replies.answered_late,
        }
