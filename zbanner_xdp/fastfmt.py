"""The C record formatter (zbfmt.c), compiled on first use and cached.

Loaded through ctypes, so no Python headers are needed: only a C compiler,
which setup installs. Where none works, `load()` returns None and
jsonlines falls back to its numpy formatter, which writes the same bytes.
The column ops and struct zb_col are defined in zbfmt.c and mirrored here;
the compile asserts they agree (cchecks.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from . import cchecks
from .kheaders import cache_dirs, check_cached_file, private_dir

SOURCE = Path(__file__).with_name("zbfmt.c")

CONST, UINT, DOTTED, WORD, TIME, IPV6 = range(6)


class Col(ctypes.Structure):
    _fields_ = [
        ("op", ctypes.c_uint32),
        ("len", ctypes.c_uint32),
        ("bytes", ctypes.c_void_p),
        ("offs", ctypes.c_void_p),
        ("vals", ctypes.c_void_p),
        ("valid", ctypes.c_void_p),
    ]


_lib: ctypes.CDLL | None = None
_tried = False


def _check_flags() -> list[str]:
    """-DZB_FMT_CHECKS: zbfmt.c asserts the ops and the column layout are the ones above."""
    ops = {
        "ZB_CONST": CONST,
        "ZB_UINT": UINT,
        "ZB_DOTTED": DOTTED,
        "ZB_WORD": WORD,
        "ZB_TIME": TIME,
        "ZB_IPV6": IPV6,
    }
    checks = cchecks.values(ops, "fastfmt.py")
    offsets = ((name, getattr(Col, name).offset) for name, _ in Col._fields_)
    checks += cchecks.layout("zb_col", ctypes.sizeof(Col), offsets, "fastfmt.py")
    return [cchecks.define("ZB_FMT_CHECKS", checks)]


def _compile(src: bytes, target: Path) -> bool:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return False
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    try:
        r = subprocess.run(
            [cc, "-O2", "-shared", "-fPIC", *_check_flags(), "-o", str(tmp), "-x", "c", "-"],
            input=src,
            capture_output=True,
            timeout=60,
        )
        if r.returncode != 0:
            return False
        os.chmod(tmp, 0o755)  # whatever the umask: one others could write would be refused
        os.replace(tmp, target)  # atomic: a concurrent scanner sees all of it or nothing
        return True
    except (OSError, subprocess.TimeoutExpired):
        return False
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def load() -> ctypes.CDLL | None:
    """The compiled formatter, or None (ZBANNER_NO_CFMT=1 forces None, for tests)."""
    global _lib, _tried
    if os.environ.get("ZBANNER_NO_CFMT"):
        return None
    if _tried:
        return _lib
    _tried = True
    try:
        src = SOURCE.read_bytes()
    except OSError:
        return None
    name = f"zbfmt-{hashlib.sha256(src + ' '.join(_check_flags()).encode()).hexdigest()[:16]}.so"
    for d in cache_dirs():
        if not private_dir(d):
            continue
        path = Path(d) / name
        try:
            if not path.exists() and not _compile(src, path):
                continue
            check_cached_file(str(path))  # before dlopen: its constructors would run with privileges
            lib = ctypes.CDLL(str(path))
        except OSError:
            continue
        lib.zb_format.restype = ctypes.c_size_t
        lib.zb_format.argtypes = [ctypes.POINTER(Col), ctypes.c_size_t, ctypes.c_size_t, ctypes.c_void_p]
        _lib = lib
        return lib
    return None
