"""Commands, processes and the lock: what every part of the lab runs things with.

Pids and logs of the lab's processes live in STATE_DIR (pid files are
trusted only once the process is checked to be what the file says), and one
lock file serialises up/down/status/impaired() across processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from collections.abc import Iterator

from .topology import LOCK_FILE, STATE_DIR

CMD_TIMEOUT = 30.0
TERM_GRACE = 3.0

# Popen objects of servers (and the relay) this process started, so down()
# can reap them (no zombies, no ResourceWarning) when up() and down() share a process.
CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def ns_exec_argv(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def run(argv: list[str], what: str, timeout: float = CMD_TIMEOUT) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as e:
        raise RuntimeError(f"lab: {what}: {argv[0]} not found (is it installed?)") from e
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"lab: {what}: {' '.join(argv)} timed out after {timeout:.0f}s") from e
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip()
        raise RuntimeError(f"lab: {what}: {' '.join(argv)} exited {proc.returncode}: {msg}")
    return proc.stdout


@contextlib.contextmanager
def step(what: str) -> Iterator[None]:
    """Turn any failure (pyroute2's NetlinkError, OSError, ...) into a RuntimeError naming the step."""
    try:
        yield
    except RuntimeError:
        raise
    except Exception as e:
        raise RuntimeError(f"lab: {what} failed: {type(e).__name__}: {e}") from e


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Serialises up/down/status/impaired() across processes (CLI and test fixtures). Not re-entrant.

    The lock file lives only as long as the lab: whoever holds the lock when no lab is left (no
    STATE_DIR: after down(), or a status() of no lab) removes it, still locked. A process that was
    waiting then holds a removed file, sees that the name no longer leads to it, and locks anew."""
    while True:
        try:
            f = open(LOCK_FILE, "a")  # noqa: SIM115 - closed below
        except PermissionError:
            # Not root: status() still works read-only; up()/down() fail later anyway.
            yield
            return
        with f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                current = os.stat(LOCK_FILE).st_ino == os.fstat(f.fileno()).st_ino
            except FileNotFoundError:
                current = False
            if not current:
                continue  # removed while we waited: lock the file the name leads to now
            try:
                yield
            finally:
                if not os.path.isdir(STATE_DIR):
                    with contextlib.suppress(OSError):
                        os.unlink(LOCK_FILE)
                fcntl.flock(f, fcntl.LOCK_UN)
            return


def netns_path(ns: str) -> str:
    return os.path.join("/run/netns", ns)


def netns_exists(ns: str) -> bool:
    return os.path.exists(netns_path(ns))


def _proc_state(pid: int) -> str | None:
    """Single-letter process state, or None if no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may contain spaces and parentheses: the state follows the last ')'.
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid: int) -> bool:
    return _proc_state(pid) not in (None, "Z", "X")


def exe_name(pid: int) -> str | None:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe")).removesuffix(" (deleted)")
    except OSError:
        return None


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def ns_inode(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def pids_in_netns(ns: str) -> list[int]:
    want = ns_inode(netns_path(ns))
    if want is None:
        return []
    me = os.getpid()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        if ns_inode(f"/proc/{entry}/ns/net") == want and alive(int(entry)):
            pids.append(int(entry))
    return sorted(pids)


def bound_ports(pid: int, proto: str) -> list[int]:
    """Ports of pid's network namespace, IPv4 and IPv6 sockets alike (a dual-stack socket on [::],
    such as vsftpd's, serves both and shows only in the IPv6 table): listening TCP sockets, or
    unconnected bound UDP ones."""
    state = {"tcp": "0A", "udp": "07"}[proto]  # TCP_LISTEN, TCP_CLOSE (an unconnected UDP socket)
    ports = set()
    for table in (proto, f"{proto}6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                next(f)
                for line in f:
                    cols = line.split()
                    port = int(cols[1].rsplit(":", 1)[1], 16)
                    if cols[3] == state and port:
                        ports.add(port)
        except (OSError, StopIteration):
            continue
    return sorted(ports)


def read_pidfile(name: str) -> int | None:
    try:
        with open(os.path.join(STATE_DIR, f"{name}.pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def comm(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def log_path(name: str) -> str:
    return os.path.join(STATE_DIR, f"{name}.log")


def log_tail(name: str, lines: int = 15) -> str:
    try:
        with open(log_path(name), errors="replace") as f:
            return "".join(f.readlines()[-lines:]).rstrip()
    except OSError:
        return ""


def reap(pids: list[int]) -> None:
    for pid in pids:
        child = CHILDREN.pop(pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=1)
            continue
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
