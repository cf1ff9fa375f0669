"""--checkpoint after the privilege drop: a helper that keeps root only to replace one file.

A checkpoint is replaced whole (a temporary file beside it, renamed over it), which needs write access
to its directory: the user the scan drops to (privdrop.py, `nobody`) rarely has it. So before the drop
the scanner starts this helper, exec'd afresh (not forked from the threaded scanner) with the one path
it may replace. It reads a length and that many bytes from its stdin, puts them in place (replace()),
and answers with an errno (0: done); it interprets nothing else, and exits when the pipe closes, the
scanner's death included. It never sees a byte from the network, only the checkpoint the scanner made.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys

_LEN = struct.Struct("<Q")
_ERR = struct.Struct("<i")


def replace(path: str, data: bytes) -> None:
    """Write, fsync, rename, fsync the directory: the file is the old one or the new one, never half."""
    d = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(d, f".{os.path.basename(path)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _read(fh, n: int) -> bytes | None:
    data = fh.read(n)
    return data if len(data) == n else None


def serve(path: str, rfile, wfile) -> None:
    while (head := _read(rfile, _LEN.size)) is not None:
        data = _read(rfile, _LEN.unpack(head)[0])
        if data is None:
            return
        try:
            replace(path, data)
            err = 0
        except OSError as exc:
            err = exc.errno or 5
        wfile.write(_ERR.pack(err))
        wfile.flush()


class Broker:
    """The scanner's end: replace(data) as the helper, which keeps the privileges the scanner drops."""

    def __init__(self, path: str):
        self.path = path
        self._proc = subprocess.Popen(
            # -I: it keeps root, so no module from the working directory (`-m` would put it first on
            # the path) and no PYTHON* variable may reach it.
            [sys.executable, "-I", "-m", "zbanner_xdp.filebroker", path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )

    def replace(self, path: str, data: bytes) -> None:
        assert path == self.path and self._proc.stdin is not None and self._proc.stdout is not None
        try:
            self._proc.stdin.write(_LEN.pack(len(data)) + data)
            self._proc.stdin.flush()
            answer = _read(self._proc.stdout, _ERR.size)
        except (BrokenPipeError, ValueError):
            answer = None
        if answer is None:
            raise OSError(5, "the checkpoint helper is gone")
        err = _ERR.unpack(answer)[0]
        if err:
            raise OSError(err, os.strerror(err))

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


if __name__ == "__main__":
    serve(sys.argv[1], sys.stdin.buffer, sys.stdout.buffer)
