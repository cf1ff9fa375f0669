"""Which CPU runs what while the kernel generator sends.

The generator's BPF_PROG_TEST_RUN runs every frame's XDP program in the calling thread, and on a
veth (and for a NIC's XDP_TX completions) the softirqs those frames start run on the same CPU:
the generator, the next hop's program and, with in-kernel replies, our own answers. The rest of
the scan is Python: the receiver (rings to JSON lines) and the writer, which share one GIL.

Left to the scheduler, the receiver or writer lands on the generator's CPU now and then, and a
run of 4,096 SYNs that takes 6 ms alone took 9-26 ms (measured on the two-core lab: SSH banners
from the emulator, every run timed). So with two or more CPUs allowed, the sending thread gets
one of them to itself and every other thread of the scan the rest; with one CPU (or a `taskset`
of one) nothing is pinned. The placement ends with the sending loop.

--tx-threads N: N generator threads on N CPUs, each sending its share of every run (the program
takes target indices from one shared atomic counter, so a thread may run anywhere, pinning is
for speed). On a NIC (or the lab's veth, a queue per CPU) each CPU's frames go to its own queue.
"""

from __future__ import annotations

import os
import threading
from typing import Any


class Placement:
    """Pin the sending threads to CPUs of their own and the scan's other threads to the rest.

    `senders` CPUs (the highest-numbered allowed: CPU 0 usually takes the most interrupts and
    housekeeping) go to the generator: the calling thread takes the last, the generator's worker
    threads (--tx-threads) the others, each pinning itself (`worker_cpus`). With one CPU allowed
    nothing is pinned; with no CPU left over, the other threads share them all.
    """

    def __init__(self, allowed: set[int] | None = None, senders: int = 1):
        self.allowed = sorted(allowed if allowed is not None else os.sched_getaffinity(0))
        if senders > len(self.allowed):
            raise ValueError(f"{senders} sending threads, {len(self.allowed)} CPUs allowed")
        self.senders = self.allowed[-senders:] if len(self.allowed) >= 2 else []
        self.sender: int | None = self.senders[-1] if self.senders else None
        self.worker_cpus = self.senders[:-1]
        self.others = [c for c in self.allowed if c not in self.senders] or self.allowed
        self._pinned: list[int] = []  # native thread ids whose mask we changed
        self.widened: list[str] = []  # threads let back onto every CPU while sending (widen())
        self._active = False  # between apply() and release()

    def apply(self) -> None:
        """Pin now: this thread to `sender`, every other live thread of the process to `others`.

        Threads started later inherit the mask of the thread that starts them."""
        if self.sender is None:
            return
        self._active = True
        me = threading.get_native_id()
        for t in threading.enumerate():
            tid = t.native_id
            if tid is None or tid == me or not t.is_alive():
                continue
            try:
                os.sched_setaffinity(tid, self.others)
                self._pinned.append(tid)
            except OSError:  # a thread that ended meanwhile
                continue
        try:
            os.sched_setaffinity(0, {self.sender})
        except OSError:  # (the allowed set changed meanwhile): slower, not wrong
            return
        self._pinned.append(me)

    def release(self) -> None:
        """Every pinned thread back to the CPUs the scan was allowed."""
        self._active = False
        for tid in self._pinned:
            # A thread that ended since (the targets' thread ends before sending does): its id
            # may be another task's by now.
            if not os.path.exists(f"/proc/self/task/{tid}"):
                continue
            try:
                os.sched_setaffinity(tid, self.allowed)
            except OSError:
                continue
        self._pinned.clear()

    def widen(self, tid: int | None, name: str) -> None:
        """Let one of the other threads run on every CPU allowed again, the senders' included.

        For the writer once the scan waits for its output: the sending thread then sleeps on its
        CPU, and the writer's copy into the file's page cache (a third of a long banner scan's
        busy time) had only the CPU it shared with the receiver (by hand, 1,048,576 SSH targets:
        ~398k banners/s pinned, ~480k widened; widened from the start, a 65,536-target scan that
        never waits lost ~6 %: ~930k, ~874k). Only while the placement holds: after release()
        every thread is on every CPU anyway (the cooldown's waits are not the sender's)."""
        if not self._active or tid is None or name in self.widened:
            return
        try:
            os.sched_setaffinity(tid, self.allowed)
        except OSError:  # ended meanwhile
            return
        self.widened.append(name)

    def summary(self) -> dict[str, Any] | None:
        if self.sender is None:
            return None
        out: dict[str, Any] = {"senders": self.senders, "others": self.others}
        if self.widened:
            out["widened"] = self.widened  # on every CPU once the scan waited for them
        return out
