"""The rate limiter's accounting and the reply queue's two modes (no network: the TX ring is a stub)."""

from __future__ import annotations

import threading
import time
import types

import numpy as np
import pytest

from zbanner_xdp import sender
from zbanner_xdp.config import parse_rate
from zbanner_xdp.replies import ReplyQueue
from zbanner_xdp.sender import RateLimiter


def _frames(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((n, 64), np.uint8), np.full(n, 60, np.uint32)


class FakeTx:
    def __init__(self) -> None:
        self.sent = 0
        self.threads: set[str] = set()

    def send(self, frames: np.ndarray, lengths: np.ndarray) -> int:
        self.sent += len(lengths)
        self.threads.add(threading.current_thread().name)
        return len(lengths)


def test_charged_replies_shrink_later_grants() -> None:
    lim = RateLimiter(1000)
    lim.start -= 1.0  # one second's worth (1000) is due
    lim.charge(600)  # replies already sent in that second
    assert 400 <= lim.available() <= 410  # (plus what the test's own milliseconds add)
    assert lim.budget() == 2 * lim.batch  # grants stay small: the rest waits for the next call


def test_refund_gives_back_an_unused_grant() -> None:
    lim = RateLimiter(1000)
    lim.start -= 1.0
    before = lim.available()
    lim.refund(lim.budget())
    assert lim.available() >= before


def test_unlimited_rate_ignores_charges() -> None:
    lim = RateLimiter(0)
    lim.charge(10**9)
    assert lim.budget() == lim.batch


def test_queue_holds_replies_until_taken() -> None:
    q = ReplyQueue(limit=100)
    q.put(*_frames(60))
    q.put(*_frames(60))  # over the limit: the oldest batch goes
    assert (q.pending, q.dropped) == (60, 60)
    taken = q.take(1000)
    assert sum(len(lens) for _, lens in taken) == 60 and q.pending == 0


def test_direct_mode_sends_from_the_callers_thread_and_charges_the_rate() -> None:
    q, tx, lim = ReplyQueue(), FakeTx(), RateLimiter(1000)
    lim.start -= 1.0
    q.send_directly(tx, lim)  # type: ignore[arg-type]
    t = threading.Thread(target=q.put, args=_frames(250), name="receiver")
    t.start()
    t.join()
    assert (tx.sent, tx.threads, q.sent_direct, q.pending) == (250, {"receiver"}, 250, 0)
    assert 750 <= lim.available() <= 760


# --------------------------------------------------------------------------- fractional rates, deadlines


class FakeClock:
    """time.monotonic and time.sleep for the sender module: sleeping advances the clock, instantly."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def monotonic(self) -> float:
        return self.t

    def sleep(self, dt: float) -> None:
        assert dt >= 0
        self.t += dt


class FakeStop:
    """A threading.Event that is never set; wait() advances the fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def wait(self, dt: float) -> bool:
        self.clock.sleep(dt)
        return False


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    c = FakeClock()
    monkeypatch.setattr(sender, "time", types.SimpleNamespace(monotonic=c.monotonic, sleep=c.sleep))
    return c


def test_parse_rate_fractions_and_minimum() -> None:
    assert parse_rate("0.5") == 0.5
    assert parse_rate("0.01") == 0.01
    assert parse_rate("2.5K") == 2500 and isinstance(parse_rate("2.5K"), int)
    assert parse_rate("1.1K") == 1100  # exact, not 1100.0000000000002
    assert (parse_rate("250K"), parse_rate("1M"), parse_rate("1_000"), parse_rate("0")) == (
        250_000,
        1_000_000,
        1000,
        0,
    )
    for bad in ("1e-9", "0.001", "0.0099", "1e-9999999999K"):  # (the last underflows to 0 in Decimal)
        with pytest.raises(ValueError, match=r"below the minimum 0\.01 pps"):
            parse_rate(bad)
    for bad in ("nan", "inf", "-1", "1Q", ""):
        with pytest.raises(ValueError, match="invalid rate"):
            parse_rate(bad)


def test_half_a_packet_per_second_sends_the_first_at_once_then_one_every_2_s(clock: FakeClock) -> None:
    t0 = clock.t
    lim = RateLimiter(0.5)
    assert lim.batch == 1
    got = []
    while clock.t - t0 < 6.1:
        n = lim.budget(FakeStop(clock), deadline=t0 + 6.1)  # type: ignore[arg-type]
        got.extend([round(clock.t - t0, 3)] * n)
    assert got == [0.0, 2.0, 4.0, 6.0]


def test_half_a_packet_per_second_grants_one_in_the_first_tenth_and_two_by_2_1_s(clock: FakeClock) -> None:
    t0 = clock.t
    lim = RateLimiter(0.5)
    assert lim.budget(deadline=t0 + 0.1) == 1 and clock.t == t0  # the first: at once
    assert lim.budget(deadline=t0 + 0.1) == 0 and clock.t == pytest.approx(t0 + 0.1)
    assert lim.budget(deadline=t0 + 2.1) == 1 and clock.t == pytest.approx(t0 + 2.0)
    assert lim.budget(deadline=t0 + 2.1) == 0 and clock.t == pytest.approx(t0 + 2.1)


def test_fractional_rates_keep_an_integer_batch() -> None:
    for rate in (0.01, 0.5, 1.5, 999.9, 1000.5, 2.5e6):
        lim = RateLimiter(rate)
        assert isinstance(lim.batch, int) and 1 <= lim.batch <= 4096, rate


def test_budget_returns_0_at_the_deadline_not_after(clock: FakeClock) -> None:
    lim = RateLimiter(1)
    assert lim.budget() == 1
    deadline = clock.t + 0.3
    assert lim.budget(FakeStop(clock), deadline) == 0  # type: ignore[arg-type]
    assert clock.t == pytest.approx(deadline)
    assert lim.budget(deadline=deadline) == 0 and clock.t == pytest.approx(deadline)  # past it: at once
    assert lim.budget(deadline=None) == 1  # without one it waits for the packet (0.7 s on)
    assert clock.t == pytest.approx(deadline + 0.7)


def test_budget_deadline_with_a_real_clock() -> None:
    lim = RateLimiter(0.5)
    t = time.monotonic()
    assert lim.budget(threading.Event(), t + 5) == 1
    assert time.monotonic() - t < 0.5  # the first packet does not wait 2 s
    t = time.monotonic()
    assert lim.budget(threading.Event(), t + 0.2) == 0
    waited = time.monotonic() - t
    assert 0.15 <= waited < 1.0  # waited for the deadline, not for the packet due 2 s on


def test_unlimited_rate_ignores_the_deadline() -> None:
    lim = RateLimiter(0)
    assert lim.budget(deadline=time.monotonic() - 1) == lim.batch


def test_a_slow_limiter_sends_its_first_packet_at_once(clock: FakeClock) -> None:
    t0 = clock.t
    lim = RateLimiter(0.5)
    assert lim.budget() == 1
    assert clock.t == t0  # not 2 s later
    assert lim.budget() == 1
    assert clock.t == pytest.approx(t0 + 2.0)


def test_the_first_packet_of_a_batched_rate_goes_at_once(clock: FakeClock) -> None:
    # At 1K pps a grant is 5 packets; the first used to wait for all five to be due (4 ms), so
    # the first probes' replies came that much later than the clock said.
    t0 = clock.t
    lim = RateLimiter(1000)
    assert lim.batch == 5
    assert lim.budget() == 1 and clock.t == t0
    assert lim.budget() == 5 and clock.t == pytest.approx(t0 + 0.005)  # packets 2-6, due by 5 ms
    assert lim.budget() == 5 and clock.t == pytest.approx(t0 + 0.010)


def _sent_within(lim: RateLimiter, clock: FakeClock, seconds: float) -> list[float]:
    """When each packet the limiter grants goes, as seconds from now, until `seconds` from now."""
    t0, got = clock.t, []
    while n := lim.budget(FakeStop(clock), deadline=t0 + seconds):  # type: ignore[arg-type]
        got.extend([round(clock.t - t0, 3)] * n)
    return got


def test_restart_sets_the_clock_to_when_sending_starts(clock: FakeClock) -> None:
    # A limiter made before set-up that took time: restarted when sending starts, it owes nothing
    # for that time (at --rate 1, --max-runtime 4 then sent a fifth probe). (Deadlines short of
    # whole seconds: the fake clock's 50 ms waits add up to a hair under them.)
    lim = RateLimiter(1)
    clock.t += 0.5  # set-up
    lim.restart(clock.t)
    assert _sent_within(lim, clock, 3.99) == [0.0, 1.0, 2.0, 3.0]
    lim = RateLimiter(1)
    clock.t += 0.5
    # Not restarted: the set-up's half second is owed.
    assert _sent_within(lim, clock, 3.99) == [0.0, 0.5, 1.5, 2.5, 3.5]
