"""Run a function inside another network namespace, without moving the process."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def run_in(ns: str | int, fn: Callable[[], T]) -> T:
    """fn() in a throw-away thread that joined `ns` (a name under /var/run/netns, or an fd).

    setns(CLONE_NEWNET) moves only the calling thread, and sockets keep the
    namespace they were created in, so this needs no fork and never leaks the
    namespace into the rest of the process, whatever fn does or raises.
    """
    from pyroute2 import netns as pr_netns

    result: list[T] = []
    error: list[BaseException] = []

    def runner() -> None:
        try:
            pr_netns.setns(ns, flags=0)
            result.append(fn())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            error.append(exc)

    t = threading.Thread(target=runner, name=f"netns-{ns}", daemon=True)
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]
