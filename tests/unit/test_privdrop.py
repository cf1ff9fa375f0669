"""privdrop.py and the cache checks (kheaders.py) on their own; the lab scans are in
tests/integration/test_privileges.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from zbanner_xdp import kheaders, privdrop

NOBODY = 65534


def test_a_new_cache_directory_is_made_private(tmp_path: Path) -> None:
    d = tmp_path / "new"
    assert kheaders.private_dir(str(d))
    assert d.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize(
    ("mode", "why"), [(0o777, "writable by others (mode 777)"), (0o775, "writable by its group")]
)
def test_a_cache_directory_others_can_write_is_refused(tmp_path: Path, mode: int, why: str) -> None:
    d = tmp_path / "c"
    d.mkdir()
    os.chmod(d, mode)
    with pytest.raises(
        kheaders.UnsafeCacheError, match=re.escape(f"refusing the cache directory {d}: {why}")
    ):
        kheaders.private_dir(str(d))


@pytest.mark.privileged
def test_a_cache_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "c"
    d.mkdir(mode=0o700)
    os.chown(d, NOBODY, NOBODY)
    with pytest.raises(kheaders.UnsafeCacheError, match=f"owned by uid {NOBODY}, neither root nor us"):
        kheaders.private_dir(str(d))


def test_cached_files(tmp_path: Path) -> None:
    f = tmp_path / "x.so"
    f.write_bytes(b"")
    os.chmod(f, 0o644)
    kheaders.check_cached_file(str(f))  # fine
    os.chmod(f, 0o646)
    with pytest.raises(kheaders.UnsafeCacheError, match="writable by others"):
        kheaders.check_cached_file(str(f))
    link = tmp_path / "y.so"
    link.symlink_to(f)
    with pytest.raises(kheaders.UnsafeCacheError, match="not a regular file"):
        kheaders.check_cached_file(str(link))


def test_target() -> None:
    with pytest.raises(privdrop.PrivDropError, match="--user no-such-user-zb: no such user"):
        privdrop.target("no-such-user-zb")
    with pytest.raises(privdrop.PrivDropError, match="that is root"):
        privdrop.target("root")


DROP = r"""
import os, sys, threading
from zbanner_xdp import privdrop
if sys.argv[1] == "thread":
    threading.Thread(target=threading.Event().wait, daemon=True).start()
if sys.argv[1] == "ending":
    # A thread on its way out (as one just joined: Thread.join() returns a moment before the kernel's
    # task ends): a bare pthread running usleep(100 ms), then gone.
    import ctypes
    libc = ctypes.CDLL(None)
    tid = ctypes.c_ulong()
    usleep = ctypes.cast(libc.usleep, ctypes.c_void_p)
    assert libc.pthread_create(ctypes.byref(tid), None, usleep, ctypes.c_void_p(100_000)) == 0
    libc.pthread_detach(tid)
    assert len(os.listdir("/proc/self/task")) == 2
try:
    print(privdrop.drop(privdrop.target("nobody")))
except privdrop.PrivDropError as exc:
    print("refused:", exc)
    sys.exit(3)
print(open("/proc/self/status").read())
"""


def _status(text: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


@pytest.mark.privileged
@pytest.mark.parametrize("before", ["-", "ending"])
def test_drop_from_root(before: str) -> None:
    r = subprocess.run([sys.executable, "-c", DROP, before], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    first, rest = r.stdout.split("\n", 1)
    st = _status(rest)
    assert st["Uid"].split() == st["Gid"].split() == [str(NOBODY)] * 4 and st["Groups"].strip() == ""
    kept = privdrop.mask(privdrop.kept())
    assert first == f"uid {NOBODY} (nobody), capabilities {privdrop.names(kept)}"
    assert {st[k] for k in ("CapEff", "CapPrm", "CapBnd")} == {f"{kept:016x}"}
    assert st["CapInh"] == st["CapAmb"] == "0" * 16 and st["NoNewPrivs"] == "1"


@pytest.mark.privileged
def test_drop_refuses_beside_another_thread() -> None:
    """Capabilities are per thread: one started before the drop would keep root's."""
    r = subprocess.run([sys.executable, "-c", DROP, "thread"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3, r.stdout + r.stderr
    assert r.stdout.startswith("refused: privileges must be dropped before any other thread starts")
