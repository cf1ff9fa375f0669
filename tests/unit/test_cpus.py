"""cpus.Placement: the sending thread alone on one CPU, the scan's other threads on the rest."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator

import pytest

from zbanner_xdp.cpus import Placement


def test_one_cpu_pins_nothing() -> None:
    p = Placement({3})
    assert p.sender is None and p.summary() is None
    p.apply()  # a no-op
    p.release()


def test_the_sender_gets_the_highest_cpu() -> None:
    p = Placement({0, 2, 5})
    assert p.sender == 5 and p.others == [0, 2] and p.worker_cpus == []
    assert p.summary() == {"senders": [5], "others": [0, 2]}


def test_generator_threads_get_the_next_highest() -> None:
    p = Placement({0, 1, 2, 3}, senders=3)
    assert p.sender == 3 and p.worker_cpus == [1, 2] and p.others == [0]
    # Every CPU sending: the rest of the scan shares them.
    p = Placement({0, 1}, senders=2)
    assert p.sender == 1 and p.worker_cpus == [0] and p.others == [0, 1]
    with pytest.raises(ValueError):
        Placement({0, 1}, senders=3)


@contextlib.contextmanager
def _placed_beside_another_thread() -> Iterator[tuple[Placement, int, Callable[[], None]]]:
    """A Placement over every CPU allowed and another thread of this process that waits: the
    placement, the thread's id, and a call that ends the thread. Released and ended at the end."""
    started, done = threading.Event(), threading.Event()
    tid: list[int] = []

    def other() -> None:
        tid.append(threading.get_native_id())
        started.set()
        done.wait(10)

    t = threading.Thread(target=other)
    t.start()
    started.wait(10)

    def end() -> None:
        done.set()
        t.join()

    p = Placement(os.sched_getaffinity(0))
    try:
        yield p, tid[0], end
    finally:
        p.release()
        end()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to pin apart")
def test_apply_pins_this_thread_apart_from_the_others_and_release_restores() -> None:
    allowed = os.sched_getaffinity(0)
    with _placed_beside_another_thread() as (p, tid, _):
        p.apply()
        assert os.sched_getaffinity(0) == {p.sender}
        assert os.sched_getaffinity(tid) == set(p.others)
        assert p.sender not in p.others
        p.release()
        assert os.sched_getaffinity(0) == allowed
        assert os.sched_getaffinity(tid) == allowed  # every thread it pinned, not only the caller


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to pin apart")
def test_release_leaves_alone_the_id_of_a_pinned_thread_that_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    # The targets' thread (prefetch.py) is pinned with the others and usually ends before sending
    # does; by release its id may be another task's, whose CPUs are not ours to set.
    allowed = os.sched_getaffinity(0)
    with _placed_beside_another_thread() as (p, tid, end):
        p.apply()
        end()
        set_for: list[int] = []
        real = os.sched_setaffinity

        def spy(pid: int, cpus: set[int]) -> None:
            set_for.append(pid)
            real(pid, cpus)

        monkeypatch.setattr(os, "sched_setaffinity", spy)
        p.release()
        monkeypatch.undo()
        assert tid not in set_for and threading.get_native_id() in set_for
        assert os.sched_getaffinity(0) == allowed


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to pin apart")
def test_widen_lets_one_pinned_thread_onto_every_cpu_once_and_says_so() -> None:
    allowed = os.sched_getaffinity(0)
    with _placed_beside_another_thread() as (p, tid, _):
        p.apply()
        assert os.sched_getaffinity(tid) == set(p.others)
        p.widen(tid, "writer")
        assert os.sched_getaffinity(tid) == allowed
        assert os.sched_getaffinity(0) == {p.sender}  # the sender stays where it was
        p.widen(tid, "writer")  # once
        assert p.summary() == {"senders": p.senders, "others": p.others, "widened": ["writer"]}
        p.widen(None, "receiver")  # a thread not started: nothing
        assert p.widened == ["writer"]
    nothing = Placement({3})
    nothing.widen(tid, "writer")  # one CPU: nothing was pinned, nothing to widen
    assert nothing.widened == [] and nothing.summary() is None


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to pin apart")
def test_widen_after_release_records_nothing() -> None:
    # The cooldown still waits for the output, but sending is over and every thread is on every
    # CPU again: `widened` is the sending's, or the metadata would say what did not happen.
    with _placed_beside_another_thread() as (p, tid, _):
        p.widen(tid, "writer")  # before apply(): nothing pinned yet
        p.apply()
        p.release()
        p.widen(tid, "writer")
        assert p.widened == [] and "widened" not in (p.summary() or {})
