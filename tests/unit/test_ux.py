"""A user's first hour (issue 14): what the scanner says, takes and writes, as a ZMap user expects."""

from __future__ import annotations

from zbanner_xdp.cli import summary_line
from zbanner_xdp.scanner import DROP_KEYS, unanswered_warning


def _summary(**over: object) -> dict:
    r = {
        "reason": "completed",
        "packets_sent": {"probes": 256, "replies": 512},
        "hits": 133,
        "records_written": 389,
        "responses": {"synack": 256, "banner": 133},
        "drops": dict.fromkeys(DROP_KEYS, 0),
        "duration_s": 9.5,
        "handshakes": {"ssh": {"completed": 256, "answered": 133, "unanswered": 123}},
    }
    r.update(over)
    return r


def test_the_summary_line_is_plain_words_and_numbers() -> None:
    line = summary_line(_summary())
    assert "{" not in line and "'" not in line, line
    assert "(responses: synack 256, banner 133)" in line
    assert "handshakes without an answer: ssh 123 of 256" in line


def test_many_handshakes_without_an_answer_warn_with_advice() -> None:
    warning = unanswered_warning(_summary())
    assert warning is not None and "\n" not in warning
    assert "ssh 123 of 256 (48 %)" in warning
    assert "--rate" in warning and "--retransmit" in warning


def test_few_or_no_unanswered_handshakes_do_not_warn() -> None:
    few = {"http": {"completed": 1000, "answered": 990, "unanswered": 10}}  # 1 %
    assert unanswered_warning(_summary(handshakes=few)) is None
    tiny = {"http": {"completed": 4, "answered": 1, "unanswered": 3}}  # 75 %, but 3 targets
    assert unanswered_warning(_summary(handshakes=tiny)) is None
    none = {"http": {"completed": 256, "answered": 256, "unanswered": 0}}
    assert unanswered_warning(_summary(handshakes=none)) is None
    assert "handshakes without" not in summary_line(_summary(handshakes=none))
    assert unanswered_warning(_summary(handshakes={})) is None
