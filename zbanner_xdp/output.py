"""Streamed results with a fixed schema (ZMap-compatible names): JSON lines or CSV, plain or compressed.

Results are the product, so the writer owns three promises:
- nothing taken from the network is dropped silently: records wait in a
  bounded in-memory queue while the output lags (the sender throttles new
  probes on its high-water mark, see `behind()`), and whatever cannot be
  written is counted in `lost`;
- lines are whole: on a full disk the file is cut back to its last complete
  line and `count` is the number of lines in it;
- a file is touched only once the scan has started (`open()`, called after
  XDP is attached), under an exclusive lock taken before it is truncated, so a
  second run can never wipe the first one's results.

A name ending in .gz or .zst is compressed (gzip by Python's zlib; zstd by the
`zstandard` package, an optional dependency). Compressed output is written as
a series of independent members (gzip) or frames (zstd), each holding whole
lines — at most CHUNK bytes of them, or FLUSH_S seconds' worth — which gzip,
zcat and zstdcat read as one stream. The promises hold member by member: on a
full disk the file is cut back to its last complete member, so it still
decompresses to whole lines and `count` is their number.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import fcntl
import gzip
import os
import re
import select
import stat
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

from .fields import NAMES as FIELD_NAMES

# Output queued in memory: above HIGH_WATER the sender stops starting new
# probes (handshakes still complete); at HARD_CAP the receiver itself waits,
# the kernel ring fills and what overflows is counted there (ringbuf_full).
HIGH_WATER = 32 << 20
HARD_CAP = 256 << 20
_POLL_S = 0.1

# Compressed output: a member (gzip) or frame (zstd) is closed at CHUNK bytes of lines, or FLUSH_S
# seconds after its first line, so a slow scan's results reach the disk too.
CHUNK = 1 << 20
FLUSH_S = 1.0
GZIP_LEVEL = 6  # gzip(1)'s default
ZSTD_LEVEL = 3  # zstd(1)'s default
ZSTD_NEEDS = "zstandard"  # the package, installed with the [zstd] extra

FORMATS = ("json", "csv")


class OutputError(RuntimeError):
    pass


def select_fields(
    probe_fields: list[str], wanted: tuple[str, ...] | None, parsed: dict[str, tuple[str, ...]] | None = None
) -> list[str]:
    """The record's keys: every field (the output table's, then the probes'), or the chosen ones
    (-f) in the chosen order. `parsed` (probe -> its parsed fields) allows `probe.field` (http.server)."""
    available = [*FIELD_NAMES, *probe_fields]
    if wanted is None:
        return available
    dotted = {
        f"{name}.{sub}" for name, subs in (parsed or {}).items() if name in probe_fields for sub in subs
    }
    unknown = [f for f in wanted if f not in available and f not in dotted]
    if unknown or not wanted or len(set(wanted)) != len(wanted):
        bad = ", ".join(unknown) if unknown else "empty or repeated names"
        known = [name for f in unknown if (name := f.partition(".")[0]) in (parsed or {}) and "." in f]
        if known:
            hint = f"{known[0]}'s fields: {','.join((parsed or {})[known[0]])}"
        else:
            hint = f"fields: {','.join(available)}" + (" and probe.field, e.g. http.server" if dotted else "")
        raise OutputError(f"--output-fields: {bad} ({hint})")
    return list(wanted)


def fill_dotted(rec: dict[str, Any], values: dict[str, Any]) -> None:
    """Fill the record's `probe.field` keys (-f http.server) from `values`' parsed fields (probe -> dict)."""
    for f in rec:
        name, dot, sub = f.partition(".")
        if dot:
            parsed = values.get(name)
            rec[f] = parsed.get(sub) if isinstance(parsed, dict) else None


def _is_stdout(path: str | None) -> bool:
    return path is None or path == "-"


def compression_of(path: str | None) -> str | None:
    """'gzip' or 'zstd' for a name ending in .gz or .zst (never stdout); None otherwise."""
    if _is_stdout(path):
        return None
    assert path is not None
    if path.endswith(".gz"):
        return "gzip"
    if path.endswith(".zst"):
        return "zstd"
    return None


def format_of(path: str | None, given: str | None) -> str:
    """The output format: --output-format if given, else csv for a name ending in .csv (.csv.gz, …)."""
    if given is not None:
        return given
    name = path or ""
    for ext in (".gz", ".zst"):
        name = name.removesuffix(ext)
    return "csv" if name.endswith(".csv") else "json"


def _zstd() -> Any:
    try:
        import zstandard
    except ImportError:
        raise OutputError(
            f"zstd output needs the {ZSTD_NEEDS} package: pip install 'zbanner-xdp[zstd]' (or use .gz)"
        ) from None
    return zstandard


def compressor(kind: str | None) -> Callable[[bytes], bytes] | None:
    """bytes -> one complete, independently decodable gzip member or zstd frame; None: no compression."""
    if kind == "gzip":
        return lambda data: gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)
    if kind == "zstd":
        cctx = _zstd().ZstdCompressor(level=ZSTD_LEVEL)  # used by the writer thread alone
        return cctx.compress
    return None


# CSV cells, as ZMap writes them: null empty, booleans 1/0, numbers in decimal, text quoted only when it
# must be (RFC 4180), objects (a probe's parsed fields) as compact JSON. Control characters are escaped
# (\r, \n, \t, \xNN) so that a record is always one line; `data` keeps the exact bytes (base64).
_CSV_PLAIN = re.compile(r'[^,"\x00-\x1f\x7f-\x9f]*').fullmatch
_CSV_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CSV_ESCAPES = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}


def _csv_escape(m: re.Match[str]) -> str:
    c = m.group()
    return _CSV_ESCAPES.get(c) or f"\\x{ord(c):02x}"


def _csv_text(text: str) -> str:
    if _CSV_PLAIN(text) and text == text.strip():
        return text
    text = _CSV_CONTROL.sub(_csv_escape, text)
    if "," in text or '"' in text or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text


_CSV_CELL: dict[type, Callable[[Any], str]] = {
    type(None): lambda _v: "",
    bool: lambda v: "1" if v else "0",
    int: str,
    str: _csv_text,
}


def _csv_cell(value: Any) -> str:
    cell = _CSV_CELL.get(type(value))
    return cell(value) if cell is not None else _csv_text(orjson.dumps(value).decode())


def csv_header(fields: list[str]) -> bytes:
    return (",".join(_csv_text(f) for f in fields) + "\n").encode()


def json_to_csv(blob: bytes, fields: list[str]) -> bytes:
    """JSON lines (the receiver's) -> CSV rows of `fields`, in that order, one line each."""
    loads = orjson.loads
    rows = [",".join([_csv_cell(rec.get(f)) for f in fields]) for rec in map(loads, blob.splitlines())]
    rows.append("")
    return "\n".join(rows).encode("utf-8", errors="backslashreplace")


def _lock(fd: int, path: str) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OutputError(f"'{path}' is being written by another zbanner-xdp run") from None


def check_path(path: str, what: str) -> None:
    """Fail early, touching nothing, where open_locked() would fail later."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise OutputError(f"cannot write {what} '{path}': no such directory") from None
        if not os.access(parent, os.W_OK):
            raise OutputError(f"cannot write {what} '{path}': directory not writable") from None
        return
    except OSError as exc:
        raise OutputError(f"cannot write {what} '{path}': {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"cannot write {what} '{path}': is a directory")
    if stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode) or stat.S_ISSOCK(st.st_mode):
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise OutputError(f"cannot write {what} '{path}': {exc.strerror}") from None
    _lock(fd, path)  # closes fd when another run holds it
    os.close(fd)


def same_file(a: str | None, b: str | None) -> bool:
    if _is_stdout(a) or _is_stdout(b):
        return False
    assert a is not None and b is not None
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def open_locked(path: str, what: str, flags: int = os.O_WRONLY, truncate: bool = True) -> int:
    """Open (creating) a regular file, lock it exclusively, then empty it (unless not `truncate`).
    Never truncates unlocked."""
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC | os.O_NOCTTY, 0o644)
    except OSError as exc:
        raise OutputError(f"cannot open {what} '{path}': {exc.strerror}") from None
    if stat.S_ISREG(os.fstat(fd).st_mode):
        _lock(fd, path)
        if truncate:
            os.ftruncate(fd, 0)
    return fd


def cut_partial_line(fd: int) -> int:
    """Cut a regular file back to the end of its last whole line (a line a crash left half-written);
    returns the new size."""
    size = os.fstat(fd).st_size
    pos = size
    while pos > 0:
        start = max(0, pos - (1 << 16))
        chunk = os.pread(fd, pos - start, start)
        nl = chunk.rfind(b"\n")
        if nl >= 0:
            pos = start + nl + 1
            break
        pos = start
    if pos != size:
        os.ftruncate(fd, pos)
    return pos


def open_fifo(path: str, stop: threading.Event) -> int:
    """A FIFO's write end, waiting (interruptibly) for a reader instead of blocking in open()."""
    told = False
    while True:
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise OutputError(f"cannot open output '{path}': {exc.strerror}") from None
        if not told:
            print(f"zbanner-xdp: waiting for a reader on FIFO '{path}' (Ctrl-C to stop)", file=sys.stderr)
            told = True
        if stop.wait(_POLL_S):
            raise OutputError(f"no reader opened FIFO '{path}'")


class RecordWriter:
    """JSON lines (or CSV) to a file, a pipe or stdout, written by a thread of its own.

    The receiver hands over whole batches (`write_lines`) and goes back to the
    ring at once: a slow consumer slows the scan (see `behind()`) instead of
    stalling the handshakes or losing what was received. The writer's thread
    also turns them into CSV (`fmt="csv"`) and compresses them (a path ending
    in .gz or .zst), so neither costs the receiver anything.
    """

    def __init__(
        self,
        path: str | None,
        probe_fields: list[str] | None = None,
        fields: tuple[str, ...] | None = None,
        parsed: dict[str, tuple[str, ...]] | None = None,
        fmt: str | None = None,
        append: bool = False,
    ):
        self.path = path
        # A resumed scan (checkpoint.py) appends, after cutting a half-written last line.
        self.append = append
        self.probe_fields = probe_fields or []
        self.fields = select_fields(self.probe_fields, fields, parsed)
        self.format = format_of(path, fmt)
        self.compression = compression_of(path)
        self._compress = compressor(self.compression)  # (raises OutputError without zstandard)
        # Compressed: lines waiting for their member (bytes, lines, time of the first).
        self._pending: list[bytes] = []
        self._pending_lines = 0
        self._pending_bytes = 0
        self._pending_since = 0.0
        self.count = 0  # lines completely written
        self.lost = 0  # lines handed over but not written (disk full, pipe closed, abandoned)
        self.cut_line = False  # a pipe reader got part of a line (abandoned mid-write)
        self.error: OutputError | None = None
        self._fd: int | None = None
        self._own = False
        self._regular = False
        self._restore_flags: int | None = None
        self._offset = 0  # end of the last whole line in a file we own
        self._queue: collections.deque[tuple[bytes, int]] = collections.deque()
        self._queued = 0
        self._cv = threading.Condition()
        self._closing = False
        self._abandon = threading.Event()
        self._thread: threading.Thread | None = None
        self._fifo_fd: int | None = None
        # Bytes and lines handed over so far, as file offsets (a resumed scan's file starts with the
        # parts before): the checkpoint's marks. `filter`: a resumed scan's duplicate filter.
        self.handed = 0
        self.base_lines = 0
        self.handed_lines = 0
        self.filter: Any = None

    # -- set-up ------------------------------------------------------------
    def check(self, stop: threading.Event) -> None:
        """Before the scan starts: fail on a path that cannot work; wait for a FIFO's reader."""
        if _is_stdout(self.path):
            return
        assert self.path is not None
        check_path(self.path, "output")
        try:
            fifo = stat.S_ISFIFO(os.stat(self.path).st_mode)
        except OSError:
            fifo = False
        if fifo:
            self._fifo_fd = open_fifo(self.path, stop)

    def open(self, start: bool = True) -> None:
        """Open (or take) the file; `start=False`: its thread waits for start() (after privileges go)."""
        if _is_stdout(self.path):
            fd = sys.stdout.fileno()
            try:
                sys.stdout.flush()
            except (OSError, ValueError):
                pass
        elif self._fifo_fd is not None:
            fd, self._own = self._fifo_fd, True
        else:
            assert self.path is not None
            flags = os.O_RDWR if self.append else os.O_WRONLY  # (appending reads its last line)
            fd, self._own = open_locked(self.path, "output", flags, truncate=not self.append), True
        mode = os.fstat(fd).st_mode
        if self.append and stat.S_ISREG(mode):
            self._offset = self.handed = cut_partial_line(fd)
            os.lseek(fd, self._offset, os.SEEK_SET)
        self._regular = stat.S_ISREG(mode)
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            # Non-blocking, so a reader that never reads cannot hold the scan's exit hostage
            # (a second Ctrl-C abandons); put back as found at close().
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            if not flags & os.O_NONBLOCK:
                self._restore_flags = flags
                fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self._fd = fd
        if self.format == "csv":
            self._queue.append((csv_header(self.fields), 0))  # a header, as ZMap's: no record
        if start:
            self.start()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self._thread.start()

    @property
    def thread_id(self) -> int | None:
        """The writing thread's native id (cpus.Placement.widen) while it runs (an ended thread's
        id may be another task's by now)."""
        t = self._thread
        return t.native_id if t is not None and t.is_alive() else None

    def template(self) -> dict[str, Any]:
        return dict.fromkeys(self.fields)

    # -- producer side -----------------------------------------------------
    def write(self, records: list[dict[str, Any]]) -> None:
        if records:
            self.write_lines(b"".join(orjson.dumps(r) + b"\n" for r in records), len(records))

    def write_lines(self, blob: bytes, count: int) -> None:
        """`count` records already encoded as JSON lines; returns at once unless HARD_CAP is queued."""
        if self.filter is not None:
            blob, count = self.filter(blob, count)
            if not count:
                return
        with self._cv:
            while self._queued >= HARD_CAP and self.error is None and not self._abandon.is_set():
                self._cv.wait(_POLL_S)
            if self.error is not None or self._abandon.is_set() or self._fd is None:
                self.lost += count
                if self.error is not None:
                    raise self.error
                return
            self._queue.append((blob, count))
            self._queued += len(blob)
            self.handed += len(blob)
            self.handed_lines += count
            self._cv.notify_all()

    @property
    def fd(self) -> int | None:
        return self._fd

    def sync(self) -> int:
        """fsync a regular file: every byte before the returned offset is on disk."""
        done = self._offset
        fd = self._fd
        if fd is not None and self._regular:
            os.fsync(fd)
        return done

    def behind(self) -> bool:
        """More output queued than the high-water mark: new probes should wait."""
        return self._queued >= HIGH_WATER

    # -- the writing thread ------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closing:
                    if self._pending and time.monotonic() >= self._pending_since + FLUSH_S:
                        break
                    self._cv.wait(FLUSH_S if self._pending else None)
                if not self._queue:
                    if self._closing:
                        # What is left goes into the last member (abandoned: counted lost instead).
                        if self._pending:
                            self._flush_member()
                        return
                    item = None
                else:
                    item = self._queue[0]
            if item is None:
                ok = self._flush_member()  # its time is up: a slow scan's lines reach the file too
            else:
                blob, count = item
                if self.format == "csv" and count:
                    blob = json_to_csv(blob, self.fields)
                ok = self._add(blob, count) if self._compress else self._write_blob(blob, count)
            with self._cv:
                if item is not None:
                    self._queue.popleft()
                    self._queued -= len(item[0])
                self._cv.notify_all()
                if not ok:
                    self.lost += sum(c for _, c in self._queue) + self._pending_lines
                    self._pending, self._pending_lines = [], 0
                    self._queue.clear()
                    self._queued = 0
                    return

    def _add(self, blob: bytes, count: int) -> bool:
        """Lines into the member being gathered; written once it holds CHUNK bytes."""
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending.append(blob)
        self._pending_lines += count
        self._pending_bytes += len(blob)
        return self._flush_member() if self._pending_bytes >= CHUNK else True

    def _flush_member(self) -> bool:
        """The lines gathered, as one gzip member (zstd frame): written whole, or the file cut back."""
        assert self._compress is not None
        data, count = b"".join(self._pending), self._pending_lines
        self._pending, self._pending_lines, self._pending_bytes = [], 0, 0
        if not data:
            return True
        return self._write_blob(self._compress(data), count, member=True)

    def _write_blob(self, blob: bytes, count: int, member: bool = False) -> bool:
        """Write `blob`, `count` lines (or one compressed member holding them): False if it stopped."""
        assert self._fd is not None
        view = memoryview(blob)
        done = 0
        while done < len(blob):
            if self._abandon.is_set() and (done == 0 or (not member and blob[done - 1 : done] == b"\n")):
                self._account(blob, done, count, member=member)
                return False
            try:
                done += os.write(self._fd, view[done:])
            except BlockingIOError:
                if self._abandon.is_set():
                    self._account(blob, done, count, member=member)
                    return False
                select.select([], [self._fd], [], _POLL_S)
            except InterruptedError:
                continue
            except OSError as exc:
                self._account(blob, done, count, exc, member)
                return False
        self.count += count
        self._offset += len(blob)
        return True

    def _account(
        self, blob: bytes, done: int, count: int, exc: OSError | None = None, member: bool = False
    ) -> None:
        """A write stopped after `done` bytes of `blob`: count whole lines, cut a file back to them.

        A compressed member is whole or nothing: its lines count only once all of it is written."""
        if member:
            whole = done if done == len(blob) else 0
            lines = count if whole else 0
        else:
            whole = blob.rfind(b"\n", 0, done) + 1
            lines = blob.count(b"\n", 0, whole)
        self.count += lines
        self.lost += count - lines
        self._offset += whole
        if whole != done and self._own and self._regular:
            try:
                os.ftruncate(self._fd, self._offset)  # type: ignore[arg-type]
            except OSError:
                self.cut_line = True
        elif whole != done:
            self.cut_line = True
        if exc is None:
            return
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            msg = "output disk full: stopping the scan"
        elif exc.errno == errno.EPIPE:
            msg = "output pipe closed: stopping the scan"
        else:
            msg = f"cannot write output: {exc.strerror}"
        self.error = OutputError(msg)

    # -- shutdown ----------------------------------------------------------
    def close(self, abandon: threading.Event | None = None) -> None:
        """Write everything queued, then close; `abandon` set: stop at the next line, count the rest."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        t = self._thread
        while t is not None and t.is_alive():
            if abandon is not None and abandon.is_set():
                self._abandon.set()
            t.join(_POLL_S)
        with self._cv:  # written by nobody now
            self.lost += sum(c for _, c in self._queue)
            self._queue.clear()
            self._queued = 0
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self._restore_flags is not None:
            try:
                fcntl.fcntl(fd, fcntl.F_SETFL, self._restore_flags)
            except OSError:
                pass
        if self._own:
            try:
                os.close(fd)
            except OSError:
                pass


class MetadataFile:
    """--metadata: opened, locked and space reserved when the scan starts; written whole at the end.

    The reservation is why a disk the results filled still takes the summary
    that says so (instead of a 0-byte file).
    """

    RESERVE = 64 << 10  # a summary is ~4 kB

    def __init__(self, path: str):
        self.path = path
        self._fd: int | None = None

    def check(self) -> None:
        if not _is_stdout(self.path):
            check_path(self.path, "metadata")

    def open(self, doc: dict) -> None:
        if _is_stdout(self.path):
            return  # '-': the summary goes to stdout once, at the end
        self._fd = fd = open_locked(self.path, "metadata", os.O_RDWR)
        if stat.S_ISREG(os.fstat(fd).st_mode):
            _reserve(fd, self.RESERVE)
            self._put(doc, final=False)

    def _put(self, doc: dict, final: bool = True) -> None:
        assert self._fd is not None
        data = orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
        if not stat.S_ISREG(os.fstat(self._fd).st_mode):
            os.write(self._fd, data)
            return
        os.pwrite(self._fd, data, 0)  # into the reserved blocks: no allocation needed
        if final:
            # Only now: a truncate also frees the reservation beyond the end.
            os.ftruncate(self._fd, len(data))
            os.fsync(self._fd)

    def write(self, doc: dict) -> None:
        if _is_stdout(self.path):
            try:
                sys.stdout.flush()
                sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
                sys.stdout.buffer.flush()
            except (OSError, ValueError) as exc:
                raise OutputError(f"cannot write metadata to stdout: {exc}") from None
            return
        try:
            if self._fd is None:  # the scan never started: nothing reserved, nothing locked
                self._fd = open_locked(self.path, "metadata", os.O_RDWR)
            self._put(doc)
        except OSError as exc:
            raise OutputError(f"cannot write metadata '{self.path}': {exc.strerror}") from None
        finally:
            self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


_FALLOC_FL_KEEP_SIZE = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _reserve(fd: int, size: int) -> None:
    """Allocate `size` bytes beyond the end without changing the size (best effort)."""
    if _libc.fallocate(fd, _FALLOC_FL_KEEP_SIZE, ctypes.c_long(0), ctypes.c_long(size)) != 0:
        err = ctypes.get_errno()
        if err in (errno.ENOSPC, errno.EDQUOT):
            raise OutputError("metadata: no space left on its disk")
        # EOPNOTSUPP and friends: a filesystem without fallocate, no reservation
