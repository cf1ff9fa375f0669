"""The step table (steps.py) on its own with a stand-in probe: deadlines, the cooldown, rows cut short."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from zbanner_xdp.events import EVENT_DTYPE, Kind
from zbanner_xdp.probes import StepOutcome
from zbanner_xdp.steps import StepTable


class _Probe:
    name = "two"
    steps = 2
    step_timeout = 5.0
    record_data = "last"
    stop_at_tarpit = False

    def step_part(self, step: int, outcome: StepOutcome, data: bytes) -> Any:
        return outcome.value

    def next_step(self, step: int, outcome: StepOutcome, data: bytes, parts: list[Any]) -> int | None:
        return step + 1 if step == 0 and outcome is StepOutcome.DATA else None


def _table() -> StepTable:
    probe = _Probe()
    # Entries 0 and 1: the probe's steps 0 and 1.
    plan = SimpleNamespace(P=2, group_of=[0, 0], step_of=[0, 1], user_probe_of=[probe, probe])
    return StepTable(plan, link=None, key=b"", replies=None, writer=None, limit=16)


def _synack(saddr: int, sport: int, variant: int) -> np.ndarray:
    ev = np.zeros(1, dtype=EVENT_DTYPE)
    ev["saddr"], ev["sport"], ev["dport"] = saddr, sport, 40000
    ev["variant"], ev["kind"] = variant, Kind.SYNACK
    return ev


def test_cooldown_waits_for_a_slow_first_answer() -> None:
    # A target SYN-ACKed step 0 but has not answered yet, and no follow-up SYN was ever sent: the
    # cooldown must still give the row its step's time (it used to end at the plain cooldown, and the
    # row was written incomplete although its answer, or its timeout, was still to come).
    table = _table()
    table.events(_synack(0x0A000001, 6379, 0), now=100.0)
    assert table.pending == 1
    assert table.wait_until(102.0) == 100.0 + _Probe.step_timeout + StepTable.LAST_ANSWER_GRACE
    assert table.wait_until(200.0) == 200.0  # a longer cooldown stays


def test_cooldown_is_plain_without_pending_rows() -> None:
    table = _table()
    assert table.wait_until(102.0) == 102.0


# -- rows cut short rather than guessed (faults on the wire) ----------------------------------------------


class _Writer:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def template(self) -> dict[str, Any]:
        return dict.fromkeys(("saddr", "sport", "classification", "incomplete", "lzr"))

    def write_lines(self, blob: bytes, count: int) -> None:
        import orjson

        self.records += [orjson.loads(line) for line in blob.splitlines()]


def _lzr_table() -> tuple[StepTable, _Writer, list[Any]]:
    from zbanner_xdp.probes import get_probe

    probe = get_probe("lzr", {"timeout": "2"})
    n = probe.steps
    sent: list[Any] = []
    plan = SimpleNamespace(
        P=n,
        group_of=[0] * n,
        step_of=list(range(n)),
        user_probe_of=[probe] * n,
        entry=lambda group, step: group + step,
        syn_frames=lambda link, key, syns: sent.append(syns) or SimpleNamespace(frames=b"", lengths=[]),
    )
    writer = _Writer()
    replies = SimpleNamespace(queue=SimpleNamespace(put=lambda frames, lengths: None))
    table = StepTable(plan, SimpleNamespace(src_ip=0x0A4D0001), b"", replies, writer, limit=16)
    return table, writer, sent


def _event(kind: Kind, step: int, seq: int) -> np.ndarray:
    ev = _synack(0xC6120009, 5432, step)
    ev["kind"], ev["seq"] = kind, seq
    return ev


def test_a_follow_up_never_answered_is_incomplete_not_a_timeout() -> None:
    # Step 0 (http) closed without data: LZR goes on with its second handshake. That SYN is lost (no
    # SYN-ACK ever): the row used to take "timeout" as the server's answer and go on, and could end
    # complete but wrong (an unidentified service, "unknown"). It is cut short, incomplete.
    table, writer, sent = _lzr_table()
    table.events(_event(Kind.SYNACK, 0, 1000), now=10.0)
    table.events(_event(Kind.FIN, 0, 1001), now=10.01)
    table.release(now=10.01)
    assert table.pending == 1 and len(sent) == 1  # the second handshake's SYN left
    table.sweep(now=13.0)  # its time (2 s) is up, and no SYN-ACK came
    assert table.pending == 0
    [rec] = writer.records
    assert rec["incomplete"] is True and rec["lzr"]["handshakes"] == 1
    assert table.summary()["unanswered_followups"] == 1


def test_a_follow_up_answered_but_silent_is_a_timeout() -> None:
    table, writer, sent = _lzr_table()
    table.events(_event(Kind.SYNACK, 0, 1000), now=10.0)
    table.events(_event(Kind.FIN, 0, 1001), now=10.01)
    table.release(now=10.01)
    table.events(_event(Kind.SYNACK, 1, 5000), now=10.02)  # the second connection is made,
    table.events(_event(Kind.ACKED, 1, 5001), now=10.03)  # the request acknowledged,
    table.sweep(now=12.5)  # and it stays silent: the server's answer is "nothing", the third goes out
    assert table.pending == 1 and len(sent) == 2 and not writer.records


def test_data_that_is_not_the_first_segment_is_incomplete() -> None:
    # Reordering: the server's second segment overtook its first. Identifying on mid-stream bytes could
    # be wrong; the row is cut short instead.
    table, writer, _ = _lzr_table()
    table.events(_event(Kind.SYNACK, 0, 0xFFFFFFF0), now=10.0)
    table.events(_event(Kind.BANNER, 0, (0xFFFFFFF1 + 1448) & 0xFFFFFFFF), [b"\x00 cert bytes"], now=10.01)
    [rec] = writer.records
    assert rec["incomplete"] is True and table.summary()["out_of_order_answers"] == 1


def test_the_first_segment_is_taken() -> None:
    table, writer, _ = _lzr_table()
    table.events(_event(Kind.SYNACK, 0, 0xFFFFFFFF), now=10.0)  # the sequence number wraps
    table.events(_event(Kind.BANNER, 0, 0), [b"SSH-2.0-OpenSSH_9.2p1\r\n"], now=10.01)
    [rec] = writer.records
    assert rec["incomplete"] is False and rec["lzr"]["fingerprint"] == "ssh"
