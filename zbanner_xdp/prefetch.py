"""The next batches of targets computed on a thread of their own while the current one is sent.

Walking the permutation (targets.iter_batches: the cyclic group's multiplications, the shard's
values, the blocklist) is numpy work in the sending thread, and with the kernel generator it was
about a third of a `--rate 0` scan's sending time: 1,048,576 SYNs took ~0.20 s from the first
run of the generator to the last, of which the program's runs were ~0.12 s (two-core lab, a sink
for a next hop). Done one batch ahead on another CPU, it overlaps the runs: numpy releases the
GIL in its loops, as the generator's BPF_PROG_TEST_RUN call does in the kernel.

The other CPU is the receiver's: a scan that grabs banners leaves it no time to spare, and there
the scanner iterates in the sending thread as before (scanner.py says what was measured).

Only the pure computation moves: whatever the sending loop reads when it takes a batch (the
checkpoint's tag, the records handed so far) it still reads when it takes it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_ITEM, _END, _ERROR = 0, 1, 2


class Prefetch(Generic[T]):
    """Iterate `source` on a daemon thread, at most `depth` items ahead of the consumer.

    Items come in order; an exception the source raises is raised by the `next()` that would
    have returned the item it failed on, and the iteration ends there. `close()` (or leaving a
    `with` block) stops the thread at its next item, whatever the consumer took. Not `enabled`:
    the source iterated in the consumer's thread, as if there were no Prefetch.
    """

    POLL_S = 0.05  # how often a producer waiting for room checks whether it was closed

    def __init__(self, source: Iterable[T], depth: int = 2, name: str = "targets", enabled: bool = True):
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self._q: queue.Queue[tuple[int, object]] = queue.Queue(maxsize=depth)
        self._closed = threading.Event()
        self._finished = False
        self._inline: Iterator[T] | None = None if enabled else iter(source)  # not enabled: no thread
        self._thread: threading.Thread | None = None
        if enabled:
            self._thread = threading.Thread(
                target=self._produce, args=(iter(source),), name=name, daemon=True
            )
            self._thread.start()

    def _put(self, entry: tuple[int, object]) -> bool:
        """Into the queue when there is room; False if closed meanwhile."""
        while not self._closed.is_set():
            try:
                self._q.put(entry, timeout=self.POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, it: Iterator[T]) -> None:
        try:
            for item in it:
                if not self._put((_ITEM, item)):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put((_ERROR, exc))
            return
        self._put((_END, None))

    def __iter__(self) -> Prefetch[T]:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        if self._inline is not None:
            return next(self._inline)
        assert self._thread is not None
        kind, value = self._q.get()
        if kind == _ITEM:
            return value  # type: ignore[return-value]
        self._finished = True
        self._thread.join()
        if kind == _ERROR:
            raise value  # type: ignore[misc]
        raise StopIteration

    def close(self) -> None:
        """Stop the producer (it finishes the item in hand) and wait for it."""
        self._closed.set()
        self._finished = True
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
