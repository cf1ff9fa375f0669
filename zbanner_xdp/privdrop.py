"""Least privilege: once everything privileged is set up, stop being root (README "Privileges").

Design: one process that drops, not a privileged/unprivileged pair. Once set up, the only privilege
the scan still uses is bpf(2), for the counters and status line (map lookups) and the kernel
generator (map updates, BPF_PROG_TEST_RUN), and only on kernels before 6.5 with
kernel.unprivileged_bpf_disabled set, where bpf(2) refuses every command without CAP_BPF. From 6.5 on
the dropped process keeps no capability, and a split would have nothing to separate; before, it would
confine CAP_BPF to the sending side, at the price of moving the receiver's hand-offs to the sender
(replies, backpressure, multi-step follow-ups, batch by batch) across processes. So after the maps and
programs are loaded and attached, the sockets and rings open and the output files opened, the
scanner becomes `--user` (default `nobody` when started as root), with no supplementary groups,
keeping only what kept() finds it needs (README "Privileges"), with the bounding set cut down to the
same and no_new_privs set: nothing it executes afterwards can gain anything back.

Capabilities are per thread in the kernel (glibc only synchronises the uids and
gids across threads), so `drop()` refuses to run while any other thread exists:
the scanner starts its threads after it.

Debian has python3-prctl (last released in 2020) and python3-cap-ng (libcap-ng's bindings); what is
needed here is capget/capset and three prctl calls, so this uses libc through ctypes rather than add
a package to set-up, the image and the venv.
"""

from __future__ import annotations

import ctypes
import errno
import os
import pwd
import threading
import time
from dataclasses import dataclass

# linux/capability.h
CAP_SETGID = 6
CAP_SETUID = 7
CAP_SETPCAP = 8
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39

NAMES = {
    CAP_SETGID: "cap_setgid",
    CAP_SETUID: "cap_setuid",
    CAP_SETPCAP: "cap_setpcap",
    CAP_NET_ADMIN: "cap_net_admin",
    CAP_NET_RAW: "cap_net_raw",
    CAP_SYS_ADMIN: "cap_sys_admin",
    CAP_PERFMON: "cap_perfmon",
    CAP_BPF: "cap_bpf",
}

# What the scan may still need after the drop, found by trying (README "Privileges"). None of
# NET_ADMIN (the XDP link is an fd: detached by closing it), NET_RAW (the AF_PACKET sockets are open),
# PERFMON (only the verifier needs it, at load) or SYS_ADMIN (the generator's namespace is made) is.
# CAP_BPF is, where bpf(2) refuses every command without it: kernels before 6.5 with
# kernel.unprivileged_bpf_disabled set (Debian 12's 6.1). Then the counters and status line (map
# lookups) and the kernel generator (map updates, BPF_PROG_TEST_RUN) keep using it to the end. From
# 6.5 on, bpf(2) on a map or program fd already held needs nothing, and the scan keeps no capability
# at all. kept() finds out which, by trying.
MAYBE_KEPT = frozenset({CAP_BPF})

# Needed to start a scan (README "Privileges"): without any one of them it does not start (tried).
TO_START = {
    CAP_NET_ADMIN: "attach the XDP program; the kernel generator's private veth",
    CAP_NET_RAW: "AF_PACKET sockets (the TX rings)",
    CAP_BPF: "create the maps, load the programs",
    CAP_PERFMON: "the verifier's pointer checks for the receive program",
}
# Used where given: without them the scan starts and does less.
OPTIONAL = {
    CAP_SYS_ADMIN: "the kernel generator's network namespace (unshare): --tx auto uses AF_PACKET without",
    CAP_SETPCAP: "cut the bounding set at the drop (no_new_privs holds without it)",
}
# Started as root (sudo, a container's uid 0): to become --user (setgroups, setresgid, setresuid).
TO_CHANGE_USER = {CAP_SETGID: "setgroups, setresgid", CAP_SETUID: "setresuid"}


def container_caps() -> list[str]:
    """A root container's capabilities (deploy/k8s/scan-job.yaml adds exactly these), as Kubernetes
    names them: NET_ADMIN, …"""
    return [NAMES[c].removeprefix("cap_").upper() for c in (*TO_START, *OPTIONAL, *TO_CHANGE_USER)]


_PR_SET_KEEPCAPS = 8
_BPF_MAP_TYPE_ARRAY = 2
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class PrivDropError(RuntimeError):
    """The drop could not be done, or its result is not what was asked (one line)."""


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise PrivDropError(f"{what}: {os.strerror(err)}")


def mask(caps: frozenset[int] | set[int]) -> int:
    return sum(1 << c for c in caps)


def names(bits: int) -> str:
    """cap_bpf,cap_net_raw (or 'none'), as getpcaps writes them."""
    found = [NAMES.get(c, f"cap_{c}") for c in range(64) if bits >> c & 1]
    return ",".join(found) or "none"


def current() -> tuple[int, int]:
    """(effective, permitted) of the calling thread."""
    hdr = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    _check(_libc.capget(ctypes.byref(hdr), data), "capget")
    eff = data[0].effective | data[1].effective << 32
    prm = data[0].permitted | data[1].permitted << 32
    return eff, prm


def _capset(eff: int, prm: int) -> None:
    hdr = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    for i in range(2):
        data[i].effective = eff >> (32 * i) & 0xFFFFFFFF
        data[i].permitted = prm >> (32 * i) & 0xFFFFFFFF
        data[i].inheritable = 0  # and so no ambient capabilities either
    _check(_libc.capset(ctypes.byref(hdr), data), "capset")


def kept() -> frozenset[int]:
    """The capabilities a set-up scan still needs: {CAP_BPF} if a map lookup on a held fd fails without
    it (tried with the effective set emptied for the moment: uid 0 alone passes no capability check)."""
    from . import bpfsys

    fd = bpfsys.map_create(_BPF_MAP_TYPE_ARRAY, 4, 4, 1, 0, "zb_privprobe")
    eff, prm = current()
    try:
        _capset(0, prm)
        try:
            bpfsys.map_lookup(fd, bytes(4), 4)
        except OSError as exc:
            if exc.errno != errno.EPERM:
                raise
            return MAYBE_KEPT
        return frozenset()
    finally:
        _capset(eff, prm)
        os.close(fd)


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return 40


def missing_to_start(change_user: bool) -> list[str]:
    """The capabilities a scan needs to start that this process lacks, by name."""
    eff, _ = current()
    need = [*TO_START, *(TO_CHANGE_USER if change_user else ())]
    return [NAMES[c] for c in need if not eff >> c & 1]


@dataclass(frozen=True)
class Target:
    name: str
    uid: int
    gid: int


def target(user: str | None) -> Target | None:
    """Whom the scan becomes: --user, or nobody when started as root; None: stay (not root, no --user)."""
    if user is None:
        if os.geteuid() != 0:
            return None  # already unprivileged (capabilities granted): only capabilities are dropped
        user = "nobody"
    try:
        pw = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
    except KeyError:
        raise PrivDropError(f"--user {user}: no such user") from None
    if pw.pw_uid == 0:
        raise PrivDropError(f"--user {user}: that is root; name an unprivileged user (default: nobody)")
    if os.geteuid() != 0 and pw.pw_uid != os.geteuid():
        raise PrivDropError(f"--user {user}: only a scan started as root can change user")
    return Target(pw.pw_name, pw.pw_uid, pw.pw_gid)


def _threads() -> int:
    """The process's threads, once those already joined have gone: Thread.join() returns when the
    thread's Python state is released, a moment before the kernel's task ends (the kernel generator's
    set-up thread was seen still there)."""
    deadline = time.monotonic() + 2.0
    while True:
        try:
            n = len(os.listdir("/proc/self/task"))
        except OSError:
            return 1
        if n == 1 or threading.active_count() > 1 or time.monotonic() > deadline:
            return n
        time.sleep(0.001)


def drop(to: Target | None, keep: frozenset[int] | None = None) -> str:
    """Become `to` (if any) keeping only `keep` (kept()); verified. Returns a line for the metadata."""
    try:
        keep = kept() if keep is None else keep
    except OSError as exc:
        raise PrivDropError(
            f"cannot find out which capabilities the scan still needs: {exc.strerror}"
        ) from None
    if _threads() != 1:
        # Another thread would keep every capability it has (they are per thread).
        comms = []
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/comm") as fh:
                comms.append(fh.read().strip())
        raise PrivDropError(f"privileges must be dropped before any other thread starts ({', '.join(comms)})")
    eff, _ = current()
    if to is not None and to.uid != os.geteuid():
        _check(_libc.prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")
    if eff >> CAP_SETPCAP & 1:
        # The bounding set: no exec can gain what was dropped, not even from a setuid or file-cap binary.
        for cap in range(_last_cap() + 1):
            if cap not in keep:
                _check(_libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop {cap} from the bounding set")
    if to is not None and to.uid != os.geteuid():
        try:
            os.setgroups([])
            os.setresgid(to.gid, to.gid, to.gid)
            os.setresuid(to.uid, to.uid, to.uid)
        except OSError as exc:
            raise PrivDropError(f"cannot become {to.name}: {exc.strerror}") from None
    bits = mask(keep) & (current()[1] | eff)
    _capset(bits, bits)
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    _verify(to, keep)
    uid = os.getuid()
    try:
        name = to.name if to else pwd.getpwuid(uid).pw_name
    except KeyError:  # a container's uid without a passwd entry
        name = "?"
    return f"uid {uid} ({name}), capabilities {names(current()[0])}"


def _verify(to: Target | None, keep: frozenset[int]) -> None:
    """As OpenSSH does: check the result, including that root cannot be had back."""
    eff, prm = current()
    if (eff | prm) & ~mask(keep):
        raise PrivDropError(f"capabilities left after the drop: {names((eff | prm) & ~mask(keep))}")
    if to is None:
        return
    if os.getresuid() != (to.uid,) * 3 or os.getresgid() != (to.gid,) * 3 or os.getgroups():
        raise PrivDropError(f"did not become {to.name}")
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise PrivDropError("root could be had back after the drop")
