"""The replies stage: which events get an answer, and the answer's frames (no network: a queue)."""

from __future__ import annotations

import socket
import types

import dpkt
import numpy as np
import pytest

from zbanner_xdp import packets
from zbanner_xdp.events import EV_ANSWERED, EVENT_DTYPE, REPEAT_DUP, REPEAT_RETRANSMIT, Kind
from zbanner_xdp.probes import get_probe
from zbanner_xdp.replies import Replies, ReplyQueue

US = 0x0A000001
LINK = packets.LinkParams(b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02", US)
THEM = "198.18.0.7"


def _replies() -> Replies:
    probes = [get_probe("synscan"), get_probe("redis")]  # redis: a fixed payload (PING)
    plan = types.SimpleNamespace(P=len(probes), probes=probes)
    return Replies(LINK, plan, 1024, ReplyQueue())


def _events(*rows: tuple[Kind, int, int, int]) -> np.ndarray:
    """(kind, variant, repeat, flags) per event, from THEM:6379 to our port 40000."""
    ev = np.zeros(len(rows), EVENT_DTYPE)
    for i, (kind, variant, repeat, flags) in enumerate(rows):
        ev[i]["saddr"] = int.from_bytes(socket.inet_aton(THEM), "little")  # raw, as the program stores it
        ev[i]["sport"], ev[i]["dport"] = 6379, 40000
        ev[i]["seq"], ev[i]["ack"] = 1000, 5001
        ev[i]["kind"], ev[i]["variant"], ev[i]["repeat"], ev[i]["flags"] = kind, variant, repeat, flags
    return ev


def _sent(r: Replies) -> list[dpkt.tcp.TCP]:
    out = []
    for frames, lens in r.queue.take(1 << 20):
        for f, n in zip(frames, lens, strict=True):
            ip = dpkt.ethernet.Ethernet(f[:n].tobytes()).data
            assert socket.inet_ntoa(ip.dst) == THEM and ip.data.dport == 6379 and ip.data.sport == 40000
            out.append(ip.data)
    return out


def test_synack_gets_the_probes_payload_or_a_rst() -> None:
    r = _replies()
    r.answer(_events((Kind.SYNACK, 1, 0, 0), (Kind.SYNACK, 0, 0, 0)))
    by_flags = {t.flags: t for t in _sent(r)}
    ack = by_flags[dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH]  # redis: ACK + PING, seq = their ack
    assert (ack.seq, ack.ack, ack.win, ack.data) == (5001, 1001, 1024, get_probe("redis").fixed_payload)
    rst = by_flags[dpkt.tcp.TH_RST]  # synscan: nothing after the SYN-ACK
    assert (rst.seq, rst.data) == (5001, b"")


def test_zero_window_and_banner_get_a_rst_other_kinds_nothing() -> None:
    r = _replies()
    r.answer(
        _events((Kind.ZEROWIN, 1, 0, 0), (Kind.BANNER, 1, 0, 0), (Kind.RST, 1, 0, 0), (Kind.UDP, 0, 0, 0))
    )
    assert [t.flags for t in _sent(r)] == [dpkt.tcp.TH_RST, dpkt.tcp.TH_RST]


def test_duplicates_and_kernel_answers_are_not_answered_retransmissions_are() -> None:
    r = _replies()
    r.answer(
        _events(
            (Kind.SYNACK, 1, REPEAT_DUP, 0),
            (Kind.SYNACK, 1, 0, EV_ANSWERED),
            (Kind.SYNACK, 1, REPEAT_RETRANSMIT, 0),
        )
    )
    assert len(_sent(r)) == 1 and r.reanswered == 1 and r.answered_late == 0


@pytest.mark.parametrize("verdict", ["trusted", "refused"])
def test_unproven_kernel_answers_are_held_then_forgotten_or_answered(verdict: str) -> None:
    r = _replies()
    r.kernel_state = "unproven"  # the program's answers not yet seen leaving the interface
    r.answer(
        _events((Kind.SYNACK, 1, 0, EV_ANSWERED), (Kind.BANNER, 1, 0, EV_ANSWERED), (Kind.SYNACK, 1, 0, 0))
    )
    assert len(_sent(r)) == 1  # only what the program did not answer: no second copy of its answers
    r.settle()  # still unproven: still held
    assert r.queue.pending == 0 and r.answered_late == 0
    r.kernel_state = verdict
    r.settle()
    if verdict == "trusted":
        assert r.queue.pending == 0 and r.answered_late == 0  # they left: forgotten
    else:
        flags = sorted(t.flags for t in _sent(r))
        assert r.answered_late == 2 and flags == sorted([dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, dpkt.tcp.TH_RST])
    r.settle()
    assert r.queue.pending == 0  # answered once


def test_holding_is_bounded() -> None:
    r = _replies()
    r.kernel_state = "unproven"
    r.HOLD_MAX = 3
    r.answer(_events(*[(Kind.SYNACK, 1, 0, EV_ANSWERED)] * 3))
    assert r.queue.pending == 0
    r.answer(_events((Kind.SYNACK, 1, 0, EV_ANSWERED)))
    assert r.queue.pending == 1  # past the bound: answered at once (twice, rather than never)
