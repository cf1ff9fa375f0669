"""An IPv6 scan's tables key on the whole address: two targets sharing their last 32 bits (the
event's saddr word) are two rows of the step table and two connections of the segment table."""

from __future__ import annotations

import ipaddress
from types import SimpleNamespace

import numpy as np

from tests.unit.test_steps_rows import _Probe
from zbanner_xdp.events import EVENT6_DTYPE, Kind, event_key, event_keys, key_targets, key_text
from zbanner_xdp.segments import SegmentTable
from zbanner_xdp.steps import StepTable
from zbanner_xdp.targets import addr6_array, addr6_ints

A = int(ipaddress.IPv6Address("2001:2::5"))
B = int(ipaddress.IPv6Address("2001:2:0:7::5"))  # the same last 32 bits


def _synacks(*addrs: int) -> np.ndarray:
    ev = np.zeros(len(addrs), dtype=EVENT6_DTYPE)
    ev["saddr6"] = addr6_array(addrs)
    ev["saddr"] = [int.from_bytes(a.to_bytes(16, "big")[12:], "little") for a in addrs]
    ev["sport"], ev["dport"], ev["kind"] = 6379, 40000, Kind.SYNACK
    return ev


def test_keys_are_whole_addresses() -> None:
    ev = _synacks(A, B)
    assert ev["saddr"][0] == ev["saddr"][1]
    assert event_keys(ev) == [A, B] == [event_key(e) for e in ev]
    assert key_text(B, 6) == "2001:2:0:7::5"
    assert addr6_ints(key_targets([A, B], 6)) == [A, B]


def test_step_table_rows_per_whole_address() -> None:
    probe = _Probe()
    plan = SimpleNamespace(P=2, group_of=[0, 0], step_of=[0, 1], user_probe_of=[probe, probe])
    link = SimpleNamespace(src_ip=int(ipaddress.IPv6Address("2001:2:ff::1")), family=6)
    table = StepTable(plan, link=link, key=b"", replies=None, writer=None, limit=16)
    table.events(_synacks(A, B), now=100.0)
    assert table.pending == 2
    assert sorted(k[0] for k in table.rows) == [A, B]


def test_segment_table_connections_per_whole_address() -> None:
    assert SegmentTable._key(_synacks(A)[0]) != SegmentTable._key(_synacks(B)[0])
