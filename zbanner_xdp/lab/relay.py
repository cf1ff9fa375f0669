"""The fault wire's relay: started, swapped and stopped from here; the relay itself is impair.py.

With up(wire=True) a fault wire sits between scanner and router, and frames
cross it only through a user-space relay, `python -m zbanner_xdp.lab.impair
--a WIRE_SCAN_IF --b WIRE_ROUTER_IF ...` (a = scanner side, b = router side,
so "a2b" is the probes and "b2a" the replies): up(wire=True) starts a plain
relay, and impaired() swaps in one with netem-like faults ("loss 5%",
"delay 50ms 10ms", ...). The relay caps a run at an hour, so the plain relay
is restarted by a bounded loop (a week's worth of rounds, ~0.2 s gap each).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import procs
from .procs import TERM_GRACE, log_path, log_tail, ns_exec_argv
from .topology import STATE_DIR, WIRE_NS, WIRE_ROUTER_IF, WIRE_SCAN_IF

RELAY_MODULE = "zbanner_xdp.lab.impair"
RELAY_MAX_SECONDS = 3600.0  # the relay's own cap on --seconds (impair.MAX_SECONDS)
# The plain relay must outlive that cap: a bounded shell loop restarts it this many times
# (a week at 3600 s), with a gap of a Python start-up (~0.2 s) between rounds.
PLAIN_RELAY_ROUNDS = 168
RELAY_READY_TIMEOUT = 10.0


def relay_available() -> bool:
    """True if the wire's user-space relay (RELAY_MODULE) can be run."""
    try:
        return importlib.util.find_spec(RELAY_MODULE) is not None
    except (ImportError, ValueError):
        return False


def _require_relay() -> None:
    if not relay_available():
        raise RuntimeError(
            f"lab: the fault wire needs {RELAY_MODULE} (python -m {RELAY_MODULE}), which is not "
            "installed; without it frames do not cross the wire"
        )


def _relay_max_seconds() -> float:
    """The relay's cap on --seconds (its CLI refuses more)."""
    try:
        from . import impair as relay_mod  # not at import: `python -m` of it imports this package

        return float(relay_mod.MAX_SECONDS)
    except Exception:  # noqa: BLE001 - not there yet, or mid-edit: the documented cap
        return RELAY_MAX_SECONDS


def _relay_argv(a2b: str, b2a: str, seconds: float) -> list[str]:
    return [
        sys.executable, "-m", RELAY_MODULE, "--a", WIRE_SCAN_IF, "--b", WIRE_ROUTER_IF,
        "--a2b", a2b, "--b2a", b2a, "--seconds", f"{seconds:g}",
    ]  # fmt: skip


def _relay_out() -> str:
    return os.path.join(STATE_DIR, "relay.out")


def _relay_meta() -> dict[str, Any]:
    try:
        with open(os.path.join(STATE_DIR, "relay.json")) as f:
            d = json.load(f)
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def relay_pid() -> int | None:
    """The tracked relay's pid if that process is alive and really is the relay."""
    pid = procs.read_pidfile("relay")
    if pid is None or not procs.alive(pid):
        return None
    argv = procs.cmdline(pid)
    if RELAY_MODULE not in argv or WIRE_SCAN_IF not in argv:
        return None
    return pid


def _relay_stats() -> dict[str, Any]:
    """The JSON line the last relay printed on exit ({} if none)."""
    try:
        with open(_relay_out(), errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                d = json.loads(line)
                if isinstance(d, dict):
                    return d
    return {}


def _pgroup_members(pgid: int) -> list[int]:
    """Live processes in process group pgid."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            out.append(int(entry))
    return out


def start_relay(a2b: str = "", b2a: str = "", seconds: float | None = None) -> int:
    """Start the relay in WIRE_NS and wait until it prints "ready"; return its pid (a process group
    leader). seconds=None is the plain relay: rounds of the relay's longest run, restarted by a bounded
    shell loop."""
    _require_relay()
    relay = _relay_argv(a2b, b2a, seconds if seconds is not None else _relay_max_seconds())
    if seconds is None:
        loop = f'i=0; while [ "$i" -lt {PLAIN_RELAY_ROUNDS} ]; do "$@"; i=$((i + 1)); done'
        argv = ns_exec_argv(WIRE_NS, ["sh", "-c", loop, "relay-loop", *relay])
    else:
        argv = ns_exec_argv(WIRE_NS, relay)
    # Run the module from this very source tree, whether or not the package is installed.
    pkg_parent = str(Path(__file__).resolve().parents[2])  # the folder holding zbanner_xdp/
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH")) if p)
    with open(_relay_out(), "wb") as out, open(log_path("relay"), "ab") as log:
        log.write(f"--- {time.strftime('%H:%M:%S')} a2b={a2b!r} b2a={b2a!r} seconds={seconds}\n".encode())
        log.flush()
        try:
            # stdout goes to a file, not a pipe: the relay outlives `lab up` and must never get EPIPE.
            # Own session: the relay ignores the terminal's SIGINT, and _stop_relay signals the group.
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=log, start_new_session=True,
                cwd=STATE_DIR, env=env,
            )  # fmt: skip
        except OSError as e:
            raise RuntimeError(f"lab: starting the relay failed: {e}") from e
    procs.CHILDREN[proc.pid] = proc
    with open(os.path.join(STATE_DIR, "relay.pid"), "w") as f:
        f.write(f"{proc.pid}\n")
    meta = {"pid": proc.pid, "a2b": a2b, "b2a": b2a, "seconds": seconds, "started": time.time()}
    with open(os.path.join(STATE_DIR, "relay.json"), "w") as f:
        json.dump(meta, f)
    deadline = time.monotonic() + RELAY_READY_TIMEOUT
    while True:
        with contextlib.suppress(OSError), open(_relay_out(), errors="replace") as f:
            if any(line.strip() == "ready" for line in f):
                return proc.pid
        if proc.poll() is not None:
            raise RuntimeError(
                f"lab: the relay exited with status {proc.returncode} before it was ready; "
                f"see {log_path('relay')}:\n{log_tail('relay')}"
            )
        if time.monotonic() >= deadline:
            stop_relay()
            raise RuntimeError(
                f"lab: the relay did not print 'ready' within {RELAY_READY_TIMEOUT:.0f}s; "
                f"see {log_path('relay')}:\n{log_tail('relay')}"
            )
        time.sleep(0.02)


def stop_relay() -> dict[str, Any]:
    """SIGTERM the tracked relay's process group (SIGKILL if it lingers) and wait until all of it is
    gone, so two relays never forward at once; return the stats the relay printed on exit."""
    pid = relay_pid()
    if pid is not None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
            deadline = time.monotonic() + TERM_GRACE
            while (members := _pgroup_members(pid)) and time.monotonic() < deadline:
                procs.reap([pid] if pid in procs.CHILDREN and procs.CHILDREN[pid].poll() is not None else [])
                time.sleep(0.02)
            if not members:
                break
        procs.reap([pid])
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(STATE_DIR, "relay.pid"))
    return _relay_stats()


@contextlib.contextmanager
def impaired(a2b: str = "", b2a: str = "", seconds: float = 600) -> Iterator[dict[str, Any]]:
    """Run the wire's relay with netem-like faults ("loss 5%", "duplicate 20%", "delay 50ms 10ms",
    "reorder 25% delay 20ms", combinable; "" for none) for the duration of the block.

    a2b shapes what the scanner sends (toward the router), b2a what comes back. Needs a lab built with
    up(wire=True). Yields a dict that is filled with the relay's exit stats (its JSON line) when the
    block ends; then the plain relay is back. The relay also stops by itself after `seconds`.
    """
    _require_relay()
    if not 0 < seconds <= _relay_max_seconds():
        raise ValueError(f"impaired: seconds must be in (0, {_relay_max_seconds():g}], not {seconds!r}")
    stats: dict[str, Any] = {}
    with procs.locked():
        if not procs.netns_exists(WIRE_NS):
            raise RuntimeError("lab: impaired() needs the wire lab: call up(wire=True) first")
        stop_relay()
        try:
            start_relay(a2b, b2a, seconds)
        except BaseException:
            start_relay()
            raise
    try:
        yield stats
    finally:
        with procs.locked():
            stats.update(stop_relay())
            if procs.netns_exists(WIRE_NS):
                start_relay()


def relay_status() -> dict[str, Any]:
    meta = _relay_meta()
    pid = relay_pid()
    return {
        "available": relay_available(),
        "pid": pid if pid is not None else meta.get("pid"),
        "alive": pid is not None,
        "in_wire_ns": pid is not None
        and procs.ns_inode(f"/proc/{pid}/ns/net") == procs.ns_inode(procs.netns_path(WIRE_NS)),
        "a2b": meta.get("a2b"),
        "b2a": meta.get("b2a"),
        "log": log_path("relay"),
    }
