"""Who uses the lab besides this process: what keeps down() from removing someone else's lab.

Several labs coexist on one machine (one per prefix), and the default one's
name is everybody's: a `lab down` (or a test fixture's down(), or an up() that
rebuilds) under the default prefix would remove whoever's lab that is, in the
middle of their scan. So down() and a rebuilding up() first look for users
other than the calling process and its children, and refuse while there are any
(force=True, `--force`, overrides):

- leases: a process that relies on the lab (a test module, a benchmark) holds
  one with `using()` — a shared flock on STATE_DIR/lease, so any number can,
  and the kernel drops it when the holder exits however it exits (no stale
  state). Holders are read from /proc/locks;
- processes inside the lab's namespaces that are not the lab's own (its
  servers, its relay and their children): a scan running in the scan
  namespace, a capture, an emulator.

lab.json records who built the lab (`built_by`), so a refusal can say whose it is.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

from . import procs, relay, servers
from .topology import PREFIX, STATE_DIR

LEASE_FILE = os.path.join(STATE_DIR, "lease")


class LabInUse(RuntimeError):
    """down() (or an up() that would rebuild) refused: another process uses the lab."""


@contextlib.contextmanager
def using() -> Iterator[None]:
    """Hold the lab while the block runs: another process's down() (or rebuilding up()) refuses."""
    try:
        fd = os.open(LEASE_FILE, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except FileNotFoundError:
        raise RuntimeError(f"lab: not up (no {STATE_DIR})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def lease_holders() -> list[int]:
    """Pids holding a lease (as /proc/locks names them: the process that took it)."""
    try:
        st = os.stat(LEASE_FILE)
        with open("/proc/locks") as f:
            lines = f.readlines()
    except OSError:
        return []
    pids = []
    for line in lines:
        cols = line.split()
        # "7: FLOCK  ADVISORY  READ  1234 00:1a:5678 0 EOF"; a lock still waited for has "->" at [1].
        if len(cols) < 6 or cols[1] == "->" or cols[1] != "FLOCK":
            continue
        try:
            major, minor, ino = cols[5].split(":")
            dev = os.makedev(int(major, 16), int(minor, 16))
            if int(ino) == st.st_ino and dev == st.st_dev:
                pids.append(int(cols[4]))
        except ValueError:
            continue
    return sorted(set(pids))


def _descendants(roots: set[int]) -> set[int]:
    """`roots` and every process below them."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    seen, todo = set(roots), list(roots)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def _lab_namespaces() -> list[str]:
    try:
        return sorted(n for n in os.listdir("/run/netns") if n.startswith(PREFIX))
    except OSError:
        return []


def _name(pid: int) -> str:
    argv = procs.cmdline(pid)
    shown = " ".join(argv)[:60] if argv else (procs.comm(pid) or "?")
    return f"pid {pid} ({shown})"


def others() -> list[str]:
    """Who uses the lab besides this process, its children and the lab's own processes; [] if nobody."""
    roots = {os.getpid()}
    roots |= {pid for name in servers.SERVERS if (pid := servers.server_pid(name)) is not None}
    if (pid := relay.relay_pid()) is not None:
        roots.add(pid)
    ours = _descendants(roots)
    found = [f"{_name(pid)} holds a lease" for pid in lease_holders() if pid not in ours]
    for ns in _lab_namespaces():
        found += [f"{_name(pid)} runs in {ns}" for pid in procs.pids_in_netns(ns) if pid not in ours]
    return found


def owner() -> dict[str, Any]:
    """Who is building the lab now, for lab.json's `built_by`."""
    try:
        user = os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return {
        "pid": os.getpid(),
        "user": user,
        "command": " ".join(sys.argv)[:200],
        "cwd": os.getcwd(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def describe_owner(built_by: dict[str, Any] | None) -> str:
    if not built_by:
        return "built by an unknown process"
    b = {k: built_by.get(k, "?") for k in ("user", "pid", "command", "cwd", "time")}
    return f"built by {b['user']} (pid {b['pid']}, {b['command']} in {b['cwd']}) at {b['time']}"


def refuse_if_used(what: str, built_by: dict[str, Any] | None) -> None:
    """Raise LabInUse naming who uses the lab, if anybody but us does."""
    users = others()
    if not users:
        return
    shown = "; ".join(users[:3]) + (f"; and {len(users) - 3} more" if len(users) > 3 else "")
    raise LabInUse(
        f"lab: {PREFIX!r} is in use ({shown}); {describe_owner(built_by)}: not {what}. "
        f"Another prefix (--prefix, ZBANNER_LAB_PREFIX) gives you a lab of your own; --force {what} it anyway"
    )
