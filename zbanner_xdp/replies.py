"""The replies stage: what our side says back to a reply, built as frames and queued or sent.

A SYN-ACK is answered with the probe's payload on an ACK (or a RST, for
SYN-only probes), a zero-window SYN-ACK and a banner with a RST. The receiver
hands every batch of events here and goes on parsing and recording; this
decides what needs an answer, builds the frames for the whole batch at once
(numpy) and puts them on the ReplyQueue, which the sender drains before any
new SYN, or which sends them at once from the receiver's thread.
"""

from __future__ import annotations

import collections
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from . import packets
from .events import EV_ANSWERED, REPEAT_DUP, REPEAT_RETRANSMIT, Kind, event_targets, target_texts
from .plan import split_variant

if TYPE_CHECKING:
    from .sender import RateLimiter, TxRing

# The events that want an answer (unless a network duplicate, or answered in the kernel).
_ANSWERED_KINDS = (Kind.SYNACK, Kind.ZEROWIN, Kind.BANNER)


class ReplyQueue:
    """Replies (RST, ACK+payload) waiting to go out before any new SYN.

    Bounded: past the limit the oldest batches are dropped and counted, a
    handshake that late would have timed out at the server anyway.
    """

    def __init__(self, limit: int = 1 << 20):
        self._q: collections.deque[tuple[np.ndarray, np.ndarray]] = collections.deque()
        self._lock = threading.Lock()
        self.pending = 0
        self.limit = limit
        self.dropped = 0
        self.direct: tuple[TxRing, RateLimiter] | None = None
        self.sent_direct = 0

    def send_directly(self, tx: TxRing, limiter: RateLimiter) -> None:
        """From now on put() transmits at once, from the caller's thread, on its own ring.

        The receiver then sends each batch of replies the moment it is built,
        on the other core, in parallel with the SYNs: on a veth the receiving
        end's work (the server's handshake and response) runs in the sender's
        context, so replies queued for the SYN thread held back new SYNs. They
        are charged to the rate limiter, so `--rate` still counts them.
        """
        self.direct = (tx, limiter)

    def put(self, frames: np.ndarray, lengths: np.ndarray) -> None:
        if len(lengths) == 0:
            return
        if self.direct is not None:
            tx, limiter = self.direct
            tx.send(frames, lengths)
            self.sent_direct += len(lengths)
            limiter.charge(len(lengths))
            return
        with self._lock:
            self._q.append((frames, lengths))
            self.pending += len(lengths)
            while self.pending > self.limit and self._q:
                _, old = self._q.popleft()
                self.pending -= len(old)
                self.dropped += len(old)

    def take(self, budget: int) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        with self._lock:
            while self._q and budget > 0:
                frames, lengths = self._q[0]
                if len(lengths) <= budget:
                    self._q.popleft()
                    out.append((frames, lengths))
                else:
                    out.append((frames[:budget], lengths[:budget]))
                    self._q[0] = (frames[budget:], lengths[budget:])
                    lengths = lengths[:budget]
                budget -= len(lengths)
                self.pending -= len(lengths)
        return out


class Replies:
    """Answers batches of events: see the module docstring.

    The event's variant names the probe (and attempt) that was answered, see
    plan.ProbePlan: a SYN-ACK is answered with that probe's payload, or with
    a RST for SYN-only probes.
    """

    def __init__(self, link: packets.LinkParams, plan: Any, ack_window: int, queue: ReplyQueue):
        self.link = link
        self.plan = plan
        self.ack_window = ack_window
        self.queue = queue
        self.reanswered = 0  # answers to a retransmission: our first answer was lost
        # In-kernel replies (see kreplies.py): "trusted" (or none asked for), "unproven" (the
        # events the program answered are held, not answered twice), "refused" (user space
        # answers everything, the held events first).
        self.kernel_state = "trusted"
        self._held: list[np.ndarray] = []  # copies of events the program answered while unproven
        self._held_n = 0
        self.answered_late = 0  # held events user space answered once the kernel's were refused
        # --banner-bytes, per probe index: its banners are answered by the segment table (segments.py),
        # an ACK per segment until the answer is whole, not a RST here.
        self.segmented: np.ndarray | None = None

    HOLD_MAX = 1 << 16  # held events while unproven; past it they are answered at once (twice)

    def answer(self, ev: np.ndarray) -> None:
        """Answer what a batch of events (small records or banner headers) needs answered."""
        wanted = ev[np.isin(ev["kind"], _ANSWERED_KINDS) & (ev["repeat"] != REPEAT_DUP)]
        if self.segmented is not None and len(wanted):
            probe_idx, _ = split_variant(wanted["variant"], self.plan.P)
            wanted = wanted[~((wanted["kind"] == Kind.BANNER) & self.segmented[probe_idx])]
        if len(wanted):
            # Retransmissions answered again, by the program or by us.
            self.reanswered += int((wanted["repeat"] == REPEAT_RETRANSMIT).sum())
            self._answer(wanted[self._ours_to_answer(wanted)])

    def settle(self) -> None:
        """Once the program's answers are proven, forget the held events; once refused, answer them."""
        if not self._held or self.kernel_state == "unproven":
            return
        held, self._held, self._held_n = self._held, [], 0
        if self.kernel_state == "refused":
            for ev in held:
                self.answered_late += len(ev)
                self._answer(ev)

    def _answer(self, answer: np.ndarray) -> None:
        if len(answer) == 0:
            return
        self._rst(answer[answer["kind"] != Kind.SYNACK])
        synack = answer[answer["kind"] == Kind.SYNACK]
        probe_idx, _ = split_variant(synack["variant"], self.plan.P)
        for i in np.unique(probe_idx):
            probe = self.plan.probes[int(i)]
            sub = synack[probe_idx == i]
            if probe.handshake:
                self._probe_payload(sub, probe)
            else:
                self._rst(sub)

    def _ours_to_answer(self, ev: np.ndarray) -> np.ndarray:
        """Which of `ev` user space answers: what the program did not answer, or everything once
        its answers are refused. While they are unproven, the events it answered are held (a
        copy: `ev` may be a view of the ring), to be answered only if they turn out refused."""
        by_kernel = (ev["flags"] & EV_ANSWERED) != 0
        if self.kernel_state == "refused":
            return np.ones(len(ev), dtype=bool)
        if self.kernel_state == "unproven" and by_kernel.any():
            if self._held_n >= self.HOLD_MAX:
                return np.ones(len(ev), dtype=bool)
            held = ev[by_kernel]  # (boolean indexing copies)
            self._held.append(held)
            self._held_n += len(held)
        return ~by_kernel

    def _rst(self, ev: np.ndarray) -> None:
        if len(ev) == 0:
            return
        frames, lens = packets.tcp_frames(
            self.link, event_targets(ev), ev["sport"], ev["dport"], ev["ack"], 0, packets.RST, 0
        )
        self.queue.put(frames, lens)

    def rst(self, ev: np.ndarray) -> None:
        """RSTs closing the connections of these events (the segment table's ends)."""
        self._rst(ev)

    def resend(self, synacks: np.ndarray) -> None:
        """Our request again, from user space whoever answered first: the step table's steps whose
        request the server never acknowledged (steps.py). As a TCP stack would retransmit it."""
        self._answer(synacks)

    def ack(self, ev: np.ndarray, acks: np.ndarray, windows: np.ndarray) -> None:
        """Pure ACKs of data segments (the segment table's): ack and window per event. Our sequence
        number is the event's ack, the end of our probe payload, as on every packet after it."""
        if len(ev) == 0:
            return
        daddr = event_targets(ev)
        frames, lens = packets.tcp_frames(
            self.link, daddr, ev["sport"], ev["dport"], ev["ack"], acks, packets.ACK, windows
        )
        self.queue.put(frames, lens)

    def _probe_payload(self, ev: np.ndarray, probe: Any) -> None:
        if len(ev) == 0:
            return
        daddr = event_targets(ev)
        fixed = probe.fixed_payload
        pay = plen = None
        if fixed:
            pay = np.broadcast_to(np.frombuffer(fixed, dtype=np.uint8)[None, :], (len(ev), len(fixed)))
            plen = np.full(len(ev), len(fixed), dtype=np.uint64)
        elif fixed is None:
            pays = [
                probe.payload(t, int(p)) for t, p in zip(target_texts(ev), ev["sport"].tolist(), strict=True)
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
        self.queue.put(frames, lens)
