"""The rate limiter's accounting and the reply queue's two modes (no network: the TX ring is a stub)."""

from __future__ import annotations

import threading

import numpy as np

from zbanner_xdp.sender import RateLimiter, ReplyQueue


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
