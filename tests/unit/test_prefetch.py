"""prefetch.Prefetch: the sending loop's target batches computed ahead on a thread of their own."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from zbanner_xdp import checkpoint, targets
from zbanner_xdp.prefetch import Prefetch


def test_items_come_in_order_and_the_iteration_ends():
    with Prefetch(iter(range(1000)), depth=3) as it:
        assert list(it) == list(range(1000))
        with pytest.raises(StopIteration):
            next(it)


def test_an_exception_is_raised_where_its_item_would_have_come():
    def source():
        yield 1
        yield 2
        raise ValueError("bad target file")

    it = Prefetch(source())
    assert next(it) == 1
    assert next(it) == 2
    with pytest.raises(ValueError, match="bad target file"):
        next(it)
    with pytest.raises(StopIteration):  # and nothing after it
        next(it)
    it.close()


def test_the_producer_runs_at_most_depth_items_ahead():
    made = []

    def source():
        for i in range(100):
            made.append(i)
            yield i

    with Prefetch(source(), depth=2) as it:
        assert next(it) == 0
        time.sleep(0.2)  # time enough to run ahead as far as it may
        # Taken: 1; queued: 2; in the producer's hand, waiting for room: 1.
        assert len(made) == 1 + 2 + 1


def test_close_stops_a_producer_waiting_for_room_and_a_consumer_sees_the_end():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    it = Prefetch(endless(), depth=1, name="test-prefetch")
    assert next(it) == 0
    it.close()
    assert not any(t.name == "test-prefetch" for t in threading.enumerate())
    with pytest.raises(StopIteration):
        next(it)


def test_a_scans_batches_are_the_same_through_it():
    """The scanner's target batches (plain, and --checkpoint's positioned ones) prefetched are
    the batches themselves: same pairs, same order, same spans."""
    space = targets.TargetSpace([(0xC6120000, 0xC6121000)], np.array([22, 80, 443]))
    plain = list(targets.iter_batches(space, 7, batch=1000))
    with Prefetch(targets.iter_batches(space, 7, batch=1000)) as it:
        got = list(it)
    assert len(got) == len(plain) == -(-space.size // 1000)
    for (a, p), (b, q) in zip(got, plain, strict=True):
        assert np.array_equal(a, b) and np.array_equal(p, q)
    pos = list(checkpoint.positioned_batches(space, 7, 2, 1, 500))
    with Prefetch(checkpoint.positioned_batches(space, 7, 2, 1, 500)) as it:
        got2 = list(it)
    assert [s for _, _, s in got2] == [s for _, _, s in pos]
    for (a, p, _), (b, q, _) in zip(got2, pos, strict=True):
        assert np.array_equal(a, b) and np.array_equal(p, q)


def test_depth_below_one_is_refused():
    with pytest.raises(ValueError):
        Prefetch(iter(()), depth=0)


def test_not_enabled_it_iterates_in_the_consumers_thread():
    where = []

    def source():
        for i in range(3):
            where.append(threading.current_thread().name)
            yield i

    before = threading.active_count()
    with Prefetch(source(), enabled=False) as it:
        assert threading.active_count() == before
        assert list(it) == [0, 1, 2]
    assert set(where) == {threading.current_thread().name}
