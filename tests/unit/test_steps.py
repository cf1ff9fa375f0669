"""The step table (steps.py) on its own: rows, deadlines and how long they hold the scan's cooldown."""

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
