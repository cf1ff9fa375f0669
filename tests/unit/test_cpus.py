"""cpus.Placement: the sending thread alone on one CPU, the scan's other threads on the rest."""

from __future__ import annotations

import os
import threading

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


def _other_thread() -> tuple[threading.Thread, threading.Event, int]:
    """A thread of this process that waits (until its event is set): the thread, the event, its id."""
    started, done = threading.Event(), threading.Event()
    tid: list[int] = []

    def other() -> None:
        tid.append(threading.get_native_id())
        started.set()
        done.wait(10)

    t = threading.Thread(target=other)
    t.start()
    started.wait(10)
    return t, done, tid[0]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to pin apart")
def test_apply_pins_this_thread_apart_from_the_others_and_release_restores() -> None:
    allowed = os.sched_getaffinity(0)
    t, done, tid = _other_thread()
    p = Placement(allowed)
    try:
        p.apply()
        assert os.sched_getaffinity(0) == {p.sender}
        assert os.sched_getaffinity(tid) == set(p.others)
        assert p.sender not in p.others
        p.release()
        assert os.sched_getaffinity(0) == allowed
        assert os.sched_getaffinity(tid) == allowed  # every thread it pinned, not only the caller
    finally:
        p.release()
        done.set()
        t.join()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to pin apart")
def test_release_leaves_alone_the_id_of_a_pinned_thread_that_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    # The targets' thread (prefetch.py) is pinned with the others and usually ends before sending
    # does; by release its id may be another task's, whose CPUs are not ours to set.
    allowed = os.sched_getaffinity(0)
    t, done, tid = _other_thread()
    p = Placement(allowed)
    try:
        p.apply()
        done.set()
        t.join()
        set_for: list[int] = []
        real = os.sched_setaffinity

        def spy(pid: int, cpus: set[int]) -> None:
            set_for.append(pid)
            real(pid, cpus)

        monkeypatch.setattr(os, "sched_setaffinity", spy)
        p.release()
        assert tid not in set_for and threading.get_native_id() in set_for
        assert os.sched_getaffinity(0) == allowed
    finally:
        monkeypatch.undo()
        p.release()
        done.set()
        t.join()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to pin apart")
def test_widen_lets_one_pinned_thread_onto_every_cpu_once_and_says_so() -> None:
    allowed = os.sched_getaffinity(0)
    t, done, tid = _other_thread()
    p = Placement(allowed)
    try:
        p.apply()
        assert os.sched_getaffinity(tid) == set(p.others)
        p.widen(tid, "writer")
        assert os.sched_getaffinity(tid) == allowed
        assert os.sched_getaffinity(0) == {p.sender}  # the sender stays where it was
        p.widen(tid, "writer")  # once
        assert p.summary() == {"senders": p.senders, "others": p.others, "widened": ["writer"]}
        p.widen(None, "receiver")  # a thread not started: nothing
        assert p.widened == ["writer"]
    finally:
        p.release()
        done.set()
        t.join()
    nothing = Placement({3})
    nothing.widen(tid, "writer")  # one CPU: nothing was pinned, nothing to widen
    assert nothing.widened == [] and nothing.summary() is None


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to pin apart")
def test_widen_after_release_records_nothing() -> None:
    # The cooldown still waits for the output, but sending is over and every thread is on every
    # CPU again: `widened` is the sending's, or the metadata would say what did not happen.
    t, done, tid = _other_thread()
    p = Placement(os.sched_getaffinity(0))
    try:
        p.widen(tid, "writer")  # before apply(): nothing pinned yet
        p.apply()
        p.release()
        p.widen(tid, "writer")
        assert p.widened == [] and "widened" not in (p.summary() or {})
    finally:
        p.release()
        done.set()
        t.join()
