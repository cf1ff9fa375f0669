"""Multi-connection probes: a target's steps gathered, statelessly on the wire, in a bounded table.

A probe with steps > 1 (JARM: ten ClientHellos; LZR: handshakes until one
identifies the service) connects to a target once per step. Nothing about a
step lives in the kernel or on the wire but its source port, which names the
plan entry (probe and step, plan.py). Here, in the receiver's thread:

- a step-0 SYN-ACK opens a row keyed by (target, port, probe);
- the answer to the row's current step (the first data segment, a RST, a FIN
  without data, a zero window, or nothing within the probe's step_timeout) is
  kept (Probe.step_part) and the probe says what comes next (Probe.next_step):
  another step, whose SYN leaves through the replies stage (never behind new
  probes), or the end: the row becomes one record (classification banner,
  Probe.result under the probe's name) and leaves the table;
- the table is bounded (`limit` rows): a row that does not fit evicts the
  oldest, which is written as it stands, marked `incomplete`; at the end of
  the scan every row left is written the same way. A result is never lost and
  never merged with another target's (the key holds target and port).

Events of a row's earlier steps (a FIN after a banner already taken, a late
RST) are ignored: only the current step's answer counts.

"No answer within step_timeout" must be what the server did, not what the
network lost, or a complete result would be wrong (a JARM of zeros, an LZR
"unknown"). So a step's time runs from its SYN-ACK, and on evidence that our
request or the server's answer was lost it runs again, for at least
LOSS_WAIT: a retransmitted SYN-ACK (the server never got our ACK with the
request; answered again, see ZB_REANSWER_NS) or a FIN whose sequence number
shows that data before it was lost. After a retransmitted SYN-ACK a server's
first retransmission timeout is 3 s (RFC 6298 5.7, Linux's
TCP_TIMEOUT_FALLBACK), then 6 s: LOSS_WAIT covers a lost answer and its lost
first retransmission. And a step without answer is the server's silence only
if the server acknowledged our request (Kind.ACKED, a pure ACK of the whole
probe, reported for multi-step probes only: ZB_PROBE_ACKS; a step that sends
nothing, LZR's "wait", has nothing to acknowledge): when our request and
every SYN-ACK the server retransmitted for it were lost, nothing says so but
the missing ACK. So at the step's deadline, without an ACK, the request is
sent once more (as TCP would retransmit it; the server answers it, or, if it
had it, acknowledges it again at once) and the step gets its time again;
still nothing, and the row is written as it stands, incomplete.
"""

from __future__ import annotations

import base64
import collections
import datetime as dt
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from .events import REPEAT_RETRANSMIT, Kind, event_key, key_targets, key_text
from .output import fill_dotted
from .plan import KernelSyns, payload_len_rule, split_variant
from .probes import StepOutcome

_OUTCOME_BY_KIND = {
    Kind.BANNER: StepOutcome.DATA,
    Kind.RST: StepOutcome.RESET,
    Kind.FIN: StepOutcome.CLOSED,
    Kind.ZEROWIN: StepOutcome.ZEROWIN,
}


_Deadline = tuple[float, tuple[int, int, int], int]  # (time.monotonic(), row key, the row's gen)


@dataclass
class Row:
    group: int  # the plan entry of the probe's step 0
    step: int  # the step whose answer is awaited
    gen: int  # bumped at every step: deadlines of earlier steps are stale
    synack: bool  # the current step's SYN-ACK arrived
    dport: int  # our port of step 0's connection
    isn: int = -1  # the server's sequence number in the current step's SYN-ACK (-1: not seen)
    parts: list[Any] = field(default_factory=list)
    # The answer the record shows as its banner/data: the probe's choice of first or last data.
    shown: tuple[bytes, int, dict[str, int]] | None = None  # (data, payload_len, header values)
    opened: float = 0.0  # time.monotonic() of step 0's SYN-ACK (a checkpoint never passes an open row)
    deadline: float = 0.0  # when the current step's answer is TIMEOUT (queued deadlines before it are stale)
    acked: bool = False  # the server acknowledged the current step's request: its silence is an answer
    synack_ev: Any = None  # the current step's SYN-ACK event: to send its request again
    resent: bool = False  # the current step's request was sent again (once)


class StepTable:
    def __init__(
        self,
        plan: Any,
        link: Any,
        key: bytes,
        replies: Any,
        writer: Any,
        limit: int,
        tally: Callable[[str, bool], None] | None = None,
    ):
        self.plan = plan
        self.tally = tally  # (classification, hit) of each record written, for the scan's counts
        self.link = link
        self.family = getattr(link, "family", 4)  # 6: an IPv6 scan's keys are 128-bit addresses
        # Our address as every finished row's record writes it (once, not a row at a time).
        src = getattr(link, "src_ip", None)
        self._our_text = (
            None if src is None else key_text(src, 6) if self.family == 6 else str(ipaddress.IPv4Address(src))
        )
        self.key = key
        self.replies = replies
        self.writer = writer
        self.limit = limit
        self.rows: collections.OrderedDict[tuple[int, int, int], Row] = collections.OrderedDict()
        # Deadlines in the order they were set, one queue per probe and kind of wait (the step's timeout,
        # or the longer wait after a loss: one length each, so each queue is in time order).
        self._deadlines: dict[tuple[int, bool], collections.deque[_Deadline]] = {}
        self._pending_syns: list[tuple[int, int, int]] = []  # (saddr raw, port, entry)
        self._deferred: list[tuple[int, int, Any]] = []  # (ts_ns, entry, event): answers without data
        self.tarpits: set[int] = set()  # raw addresses that SYN-ACKed the --tarpit-check port
        self._records: list[dict[str, Any]] = []
        self.peak = 0
        self.evicted = 0
        self.complete = 0
        self.incomplete = 0
        self.followups = 0  # SYNs of later steps sent
        self.unanswered = 0  # rows cut short: a follow-up SYN got no SYN-ACK within the step's time
        self.unordered = 0  # rows cut short: the first data seen was not the stream's first bytes
        self.unacknowledged = 0  # rows cut short: a step's request was never acknowledged, nor answered
        self.resent = 0  # requests sent again: unacknowledged at their step's deadline
        # Step-0 banners read before their SYN-ACK (see events()), by row key, in arrival order.
        self._orphans: dict[tuple[int, int, int], list[tuple[int, Any, bytes, float]]] = {}
        self.orphans_adopted = 0  # such banners taken once their SYN-ACK was read
        self.orphans_expired = 0  # such banners no SYN-ACK claimed within ORPHAN_WAIT
        # Per entry: its step sends no request (LZR's "wait"): nothing to acknowledge, silence is the answer.
        self._no_request = [payload_len_rule(p) == (0, 0) for p in getattr(plan, "probes", [])]
        self.loss_waits = 0  # steps that waited longer for an answer after evidence of loss
        self.last_followup = 0.0  # time.monotonic() of the last one
        self.closing = False  # the scan is ending (XDP detached): no step starts any more
        self._gen = 0

    # -- input from the receiver ------------------------------------------------------------------------
    def events(self, ev: np.ndarray, data: list[bytes] | None = None, now: float | None = None) -> None:
        """Events of multi-step entries: SYN-ACKs open rows and arm timeouts, answers decide the next
        step. `data`: the banner path's bytes, one per event.

        A banner and the FIN or RST that follows it travel in two rings (banners have their own), so
        the FIN can be read first. An answer without data therefore waits (deferred) until release()
        says the banner ring has been read past it: only then is "closed without data" known.

        And a banner can be read before its SYN-ACK: the receiver reads the event ring, then the
        banner ring, and with in-kernel replies a server's answer follows its SYN-ACK by a fraction of
        a millisecond, so a banner that arrived between the two reads is seen first. A step-0 banner
        without its row waits (an orphan) for the SYN-ACK that opens it."""
        now = time.monotonic() if now is None else now
        entry = split_variant(ev["variant"].astype(np.int64), self.plan.P)[0]
        for i in range(len(ev)):
            e = ev[i]
            kind = int(e["kind"])
            if e["repeat"]:
                if e["repeat"] == REPEAT_RETRANSMIT and kind == Kind.SYNACK:
                    self._request_lost(int(entry[i]), e, now)
                continue
            if kind in (Kind.SYNACK, Kind.BANNER, Kind.ACKED):
                self._event(int(entry[i]), e, kind, data[i] if data is not None else b"", now)
            elif kind in _OUTCOME_BY_KIND:
                self._deferred.append((int(e["ts_ns"]), int(entry[i]), e.copy()))
        self._flush_out()

    TARPITS_MAX = 1 << 20  # addresses remembered; past it the set starts again (a bound, rarely hit)

    def tarpit(self, keys: list[int]) -> None:
        """Hosts that SYN-ACKed the --tarpit-check port (events.event_keys)."""
        if len(self.tarpits) + len(keys) > self.TARPITS_MAX:
            self.tarpits.clear()
        self.tarpits.update(keys)

    def release(self, now: float | None = None) -> None:
        """The banner ring has been read to its end: the deferred answers (in the order they came)."""
        if not self._deferred:
            return
        now = time.monotonic() if now is None else now
        deferred, self._deferred = sorted(self._deferred, key=lambda d: d[0]), []
        for _, ent, e in deferred:
            self._event(ent, e, int(e["kind"]), b"", now)
        self._flush_out()

    def _event(self, ent: int, e: Any, kind: int, data: bytes, now: float) -> None:
        group, step = self.plan.group_of[ent], self.plan.step_of[ent]
        k = (event_key(e), int(e["sport"]), group)
        row = self.rows.get(k)
        if row is None:
            if step == 0 and kind == Kind.BANNER:
                self._orphan(k, ent, e, data, now)  # its SYN-ACK not read yet (or a finished row's)
                return
            if step != 0 or kind not in (Kind.SYNACK, Kind.ZEROWIN):
                return  # step 0 refused (a RST record of its own), or a late event of a finished row
            row = self._open(k, group, int(e["dport"]), now)
            orphans = self._orphans.pop(k, None)
            if orphans is not None:
                self._event(ent, e, kind, data, now)  # the SYN-ACK first, then what came before it
                for o_ent, o_e, o_data, _ in orphans:
                    self.orphans_adopted += 1
                    self._event(o_ent, o_e, Kind.BANNER, o_data, now)
                return
        if step != row.step:
            return  # an earlier step's straggler
        if kind == Kind.ACKED:
            row.acked = True
            return
        if kind == Kind.SYNACK:
            if not row.synack:
                row.synack, row.isn, row.synack_ev = True, int(e["seq"]), e.copy()
                row.acked = ent < len(self._no_request) and self._no_request[ent]
                self._arm(k, row, now + self._timeout(row))  # the step's time runs from its handshake
            return
        if kind == Kind.RST and not row.synack and step == 0:
            return
        if kind == Kind.FIN and (row.isn < 0 or int(e["seq"]) != (row.isn + 1) & 0xFFFFFFFF):
            # Data came before this FIN and was lost: the server sends it again (we have not
            # acknowledged it), up to seconds later. Its answer, not a timeout.
            if row.synack:
                row.acked = True  # the FIN acknowledges our whole request
                self._extend(k, row, now)
            return
        if kind == Kind.BANNER and row.synack and int(e["seq"]) != (row.isn + 1) & 0xFFFFFFFF:
            # Not the stream's first bytes (a later segment overtook the first on the way): what this
            # step would decide on is unknown, and a guess could be wrong. Written as it stands.
            self.unordered += 1
            self._cut_short(k, row)
            return
        self._answer(k, row, _OUTCOME_BY_KIND[Kind(kind)], data, e, now)

    def _request_lost(self, ent: int, e: Any, now: float) -> None:
        """A retransmitted SYN-ACK of a row's current step: the server never got our request (the
        program answered it again), so the step's time starts again."""
        group, step = self.plan.group_of[ent], self.plan.step_of[ent]
        k = (event_key(e), int(e["sport"]), group)
        row = self.rows.get(k)
        if row is not None and step == row.step and row.synack:
            self._extend(k, row, now)

    LOSS_WAIT = 10.0  # seconds a step waits after evidence of loss (see the module docstring)
    ORPHAN_WAIT = 5.0  # seconds a banner read before its SYN-ACK waits for it
    ORPHANS_MAX = 1 << 16  # banners waiting at most; past it the oldest go (counted)

    def _orphan(self, k: tuple[int, int, int], ent: int, e: Any, data: bytes, now: float) -> None:
        if len(self._orphans) >= self.ORPHANS_MAX:
            self.orphans_expired += len(self._orphans.pop(next(iter(self._orphans))))  # all its banners
        self._orphans.setdefault(k, []).append((ent, e.copy(), data, now))

    def _expire_orphans(self, now: float) -> None:
        """Banners whose SYN-ACK never came (a finished row's late first answer): forgotten, counted."""
        while self._orphans:
            k, items = next(iter(self._orphans.items()))
            if items[0][3] + self.ORPHAN_WAIT > now:
                break
            del self._orphans[k]
            self.orphans_expired += len(items)

    def _extend(self, k: tuple[int, int, int], row: Row, now: float) -> None:
        until = now + max(self._timeout(row), self.LOSS_WAIT)
        if until > row.deadline:
            self.loss_waits += 1
            self._arm(k, row, until, after_loss=True)

    def sweep(self, now: float | None = None) -> None:
        """Steps whose time is up: their answer is TIMEOUT."""
        now = time.monotonic() if now is None else now
        self._expire_orphans(now)
        again: list[tuple[tuple[int, int, int], Row]] = []  # requests sent again: their time, after the loop
        for q in self._deadlines.values():
            while q and q[0][0] <= now:
                t, k, gen = q.popleft()
                row = self.rows.get(k)
                if row is None or row.gen != gen or t < row.deadline:
                    continue  # a finished row, an earlier step, or a deadline moved later since
                if not row.synack:
                    # A follow-up SYN never answered: its connection was never made (the SYN or the
                    # SYN-ACKs were lost), so "no answer" is not what the server said. As it stands.
                    self.unanswered += 1
                    self._cut_short(k, row)
                elif not row.acked and not row.resent and self._resend(row):
                    again.append((k, row))
                elif not row.acked:
                    # The server never acknowledged our request, sent twice: it may never have had it (the
                    # requests and the SYN-ACKs it retransmitted lost), so its silence says nothing.
                    self.unacknowledged += 1
                    self._cut_short(k, row)
                else:
                    self._answer(k, row, StepOutcome.TIMEOUT, b"", None, now)
        for k, row in again:
            self._arm(k, row, now + self._timeout(row))
        self._flush_out()

    def _resend(self, row: Row) -> bool:
        """The current step's request once more (its SYN-ACK answered again, from user space)."""
        resend = getattr(self.replies, "resend", None)
        if row.synack_ev is None or resend is None or self.closing:
            return False
        ev = np.array([row.synack_ev], dtype=row.synack_ev.dtype)
        ev["repeat"] = 0
        resend(ev)
        row.resent = True
        self.resent += 1
        return True

    def flush(self) -> None:
        """The end of the scan: every row left is written, incomplete."""
        self.release()
        self.orphans_expired += sum(len(v) for v in self._orphans.values())
        self._orphans.clear()
        while self.rows:
            k, row = self.rows.popitem(last=False)
            self._finish(k, row, complete=False)
        self._flush_out()

    @property
    def pending(self) -> int:
        return len(self.rows)

    LAST_ANSWER_GRACE = 1.0  # seconds past a step's deadline for its answer (or timeout) to be taken

    def wait_until(self, cool_base: float) -> float:
        """When the scan's cooldown may end: at cool_base, or once every row still pending has had its
        current step's time. A step's deadline runs from its SYN (later steps, until their SYN-ACK),
        from its SYN-ACK, and again after evidence of loss, so a row whose answer is slow or lost
        holds the cooldown as a follow-up does."""
        if not self.rows:
            return cool_base
        latest = max((q[-1][0] for q in self._deadlines.values() if q), default=0.0)
        return max(cool_base, latest + self.LAST_ANSWER_GRACE)

    def summary(self) -> dict[str, Any]:
        return {
            "table_limit": self.limit,
            "table_peak": self.peak,
            "evicted": self.evicted,
            "complete": self.complete,
            "incomplete": self.incomplete,
            "followup_syns": self.followups,
            "unanswered_followups": self.unanswered,
            "out_of_order_answers": self.unordered,
            "unacknowledged_requests": self.unacknowledged,
            "requests_resent": self.resent,
            "answers_before_synack": self.orphans_adopted,
            "answers_without_synack": self.orphans_expired,
            "loss_waits": self.loss_waits,
        }

    # -- the table ----------------------------------------------------------------------------------------
    def _open(self, k: tuple[int, int, int], group: int, dport: int, now: float) -> Row:
        if len(self.rows) >= self.limit:
            old_k, old = self.rows.popitem(last=False)
            self.evicted += 1
            self._finish(old_k, old, complete=False)
        self._gen += 1
        row = Row(group=group, step=0, gen=self._gen, synack=False, dport=dport, opened=now)
        self.rows[k] = row
        self.peak = max(self.peak, len(self.rows))
        return row

    def _probe(self, row: Row) -> Any:
        return self.plan.user_probe_of[row.group]

    def _timeout(self, row: Row) -> float:
        return float(self._probe(row).step_timeout)

    def _arm(self, k: tuple[int, int, int], row: Row, until: float, after_loss: bool = False) -> None:
        """The current step's answer is TIMEOUT at `until` (moves the deadline: one queued earlier for
        the same step is then stale)."""
        row.deadline = until
        self._deadlines.setdefault((row.group, after_loss), collections.deque()).append((until, k, row.gen))

    def _answer(
        self, k: tuple[int, int, int], row: Row, outcome: StepOutcome, data: bytes, e: Any, now: float
    ) -> None:
        probe = self._probe(row)
        row.parts.append(probe.step_part(row.step, outcome, data))
        shows = row.shown is None or probe.record_data == "last"
        if outcome is StepOutcome.DATA and e is not None and shows:
            hdr = {n: int(e[n]) for n in ("ttl", "window", "ipid", "seq", "ack", "tcp_flags", "ts_ns")}
            row.shown = (data, int(e["payload_len"]), hdr)
        try:
            nxt = probe.next_step(row.step, outcome, data, row.parts)
        except Exception:  # a probe bug costs this target's further steps, not the scan
            nxt = None
        if nxt is not None and probe.stop_at_tarpit and k[0] in self.tarpits:
            nxt = None  # a tarpit (HyperACKtive): not worth a further step
        if nxt is None or not 0 <= nxt < probe.steps or self.closing:
            del self.rows[k]
            self._finish(k, row, complete=nxt is None)
            return
        self._gen += 1
        row.step, row.gen, row.synack, row.isn, row.acked = int(nxt), self._gen, False, -1, False
        row.synack_ev, row.resent = None, False
        self._arm(k, row, now + self._timeout(row))  # no SYN-ACK within the timeout: cut short (sweep)
        self._pending_syns.append((k[0], k[1], self.plan.entry(row.group, row.step)))

    def _cut_short(self, k: tuple[int, int, int], row: Row) -> None:
        del self.rows[k]
        self._finish(k, row, complete=False)

    def _finish(self, k: tuple[int, int, int], row: Row, complete: bool) -> None:
        probe = self._probe(row)
        saddr_raw, port, _ = k
        ip = key_text(saddr_raw, self.family)
        result = probe.result(ip, port, row.parts, complete, saddr_raw in self.tarpits)
        if complete:
            self.complete += 1
        else:
            self.incomplete += 1
        rec = self.writer.template()
        shown = row.shown
        values: dict[str, Any] = {
            "saddr": ip,
            "sport": port,
            "daddr": self._our_text,
            "dport": row.dport,
            "classification": "banner",
            "success": shown is not None,
            "repeat": False,
            "timestamp": _iso_now(),
            "probe": probe.name,
            "validated": True,
            "attempt": 0,
            "tarpit_probe": False,
            "app_match": bool(probe.matches(result)),
            "incomplete": not complete,
            probe.name: result,
        }
        if shown is not None:
            data, payload_len, hdr = shown
            values.update(
                banner=data.decode("utf-8", errors="backslashreplace"),
                data=base64.b64encode(data).decode(),
                truncated=payload_len > len(data),
                ttl=hdr["ttl"],
                window=hdr["window"],
                ipid=hdr["ipid"],
                seqnum=hdr["seq"],
                acknum=hdr["ack"],
                tcp_flags=hdr["tcp_flags"],
            )
        for name, value in values.items():
            if name in rec:
                rec[name] = value
        fill_dotted(rec, values)  # -f jarm.fingerprint
        self._records.append(rec)
        if self.tally is not None:
            self.tally("banner", shown is not None)

    def _flush_out(self) -> None:
        if self._records:
            records, self._records = self._records, []
            self.writer.write_lines(b"".join(orjson.dumps(r) + b"\n" for r in records), len(records))
        if self._pending_syns:
            syns, self._pending_syns = self._pending_syns, []
            by_entry: dict[int, list[tuple[int, int, int]]] = {}
            for syn in syns:
                by_entry.setdefault(syn[2], []).append(syn)
            for entry, sub in sorted(by_entry.items()):
                addrs = key_targets([s[0] for s in sub], self.family)
                ports = np.array([s[1] for s in sub], dtype=np.uint16)
                frames = self.plan.syn_frames(self.link, self.key, KernelSyns(addrs, ports, int(entry)))
                self.replies.queue.put(frames.frames, frames.lengths)
            self.followups += len(syns)
            self.last_followup = time.monotonic()


def _iso_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
