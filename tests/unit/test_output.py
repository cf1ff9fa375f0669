"""The record writer's promises without a network: whole lines, nothing silently gone, locked files."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from zbanner_xdp import output
from zbanner_xdp.output import MetadataFile, OutputError, RecordWriter


def _blob(first: int, n: int, width: int = 200) -> bytes:
    return b"".join(orjson.dumps({"i": i, "pad": "x" * width}) + b"\n" for i in range(first, first + n))


def _numbers(data: bytes) -> list[int]:
    assert data == b"" or data.endswith(b"\n"), "last line cut"
    return [orjson.loads(line)["i"] for line in data.splitlines()]


def test_a_slow_pipe_reader_gets_every_line_and_the_producer_never_blocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Far more than a pipe holds (64 KiB), handed over faster than it is read.
    monkeypatch.setattr(output, "HIGH_WATER", 256 << 10)
    r, w = os.pipe()
    got = bytearray()

    def reader() -> None:
        time.sleep(0.5)  # asleep while the whole scan's output is produced
        while chunk := os.read(r, 1 << 16):
            got.extend(chunk)
            time.sleep(0.001)

    t = threading.Thread(target=reader)
    t.start()
    writer = RecordWriter(f"/dev/fd/{w}")
    writer.open()
    behind_seen = False
    t0 = time.monotonic()
    for k in range(100):
        writer.write_lines(_blob(k * 50, 50), 50)
        behind_seen |= writer.behind()
    produced_in = time.monotonic() - t0
    writer.close()
    os.close(w)
    t.join()
    os.close(r)
    assert produced_in < 0.5  # handed over without waiting for the reader
    assert behind_seen  # and the sender was told to slow down
    assert _numbers(bytes(got)) == list(range(5000))
    assert (writer.count, writer.lost, writer.cut_line) == (5000, 0, False)


def test_the_output_file_is_locked_and_a_second_writer_touches_nothing(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    first = RecordWriter(str(path))
    first.open()
    first.write_lines(_blob(0, 3), 3)
    time.sleep(0.1)
    before = path.read_bytes()
    second = RecordWriter(str(path))
    with pytest.raises(OutputError, match="being written by another zbanner-xdp run"):
        second.check(threading.Event())
    with pytest.raises(OutputError, match="being written by another zbanner-xdp run"):
        second.open()
    assert path.read_bytes() == before
    first.close()
    assert _numbers(path.read_bytes()) == [0, 1, 2]
    # Released: a later run may take it (and only then empties it).
    third = RecordWriter(str(path))
    third.check(threading.Event())
    assert path.read_bytes() == before
    third.open()
    third.close()
    assert path.read_bytes() == b""


def test_check_fails_early_and_touches_nothing(tmp_path: Path) -> None:
    keep = tmp_path / "keep.jsonl"
    keep.write_bytes(b'{"old":1}\n')
    RecordWriter(str(keep)).check(threading.Event())
    assert keep.read_bytes() == b'{"old":1}\n'
    for path, message in (
        (tmp_path / "no" / "such" / "out", "no such directory"),
        (tmp_path, "is a directory"),
    ):
        with pytest.raises(OutputError, match=message):
            RecordWriter(str(path)).check(threading.Event())


_FULL_DISK = r"""
import os, resource, signal, sys
sys.path.insert(0, sys.argv[2])
from zbanner_xdp.output import RecordWriter
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (5000, 5000))
w = RecordWriter(sys.argv[1])
w.open()
for k in range(10):
    blob = b"".join(b'{"i":%d,"pad":"%s"}\n' % (k * 10 + i, b"x" * 90) for i in range(10))
    try:
        w.write_lines(blob, 10)
    except Exception as exc:
        print("raised", exc)
w.close()
print(w.count, w.lost, w.cut_line, w.error)
"""


def test_a_write_that_fails_midway_leaves_whole_lines_and_counts_the_rest(tmp_path: Path) -> None:
    # A file-size limit stands in for a full disk: the same partial write, then an error.
    path = tmp_path / "out.jsonl"
    src = str(Path(output.__file__).resolve().parent.parent)
    r = subprocess.run([sys.executable, "-c", _FULL_DISK, str(path), src], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    count, lost, cut, *err = r.stdout.strip().splitlines()[-1].split(" ", 3)
    data = path.read_bytes()
    assert data.endswith(b"\n") and len(data) <= 5000
    lines = [b'{"i":%d,"pad":"%s"}\n' % (i, b"x" * 90) for i in range(100)]
    fit = max(k for k in range(101) if sum(map(len, lines[:k])) <= 5000)
    assert data == b"".join(lines[:fit])
    assert int(count) == fit
    assert int(count) + int(lost) == 100
    assert cut == "False"
    assert "cannot write output" in err[0]


def test_disk_full_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    writes: list[int] = []

    def full(fd: int, data: bytes) -> int:
        if writes:
            raise OSError(errno.ENOSPC, "No space left on device")
        writes.append(150)
        return 150  # a line and a half

    writer = RecordWriter(str(tmp_path / "o.jsonl"))
    writer.open()
    monkeypatch.setattr(output.os, "write", full)
    writer.write_lines(_blob(0, 4, width=80), 4)
    writer.close()
    monkeypatch.undo()
    assert str(writer.error) == "output disk full: stopping the scan"
    assert (writer.count, writer.lost) == (1, 3)
    with pytest.raises(OutputError, match="disk full"):
        writer.write_lines(_blob(4, 1), 1)
    assert writer.lost == 4


def test_abandoning_counts_what_stays_queued() -> None:
    r, w = os.pipe()  # nobody reads: the pipe fills and the writer waits
    writer = RecordWriter(f"/dev/fd/{w}")
    writer.open()
    for k in range(40):
        writer.write_lines(_blob(k * 100, 100), 100)
    abandon = threading.Event()
    threading.Timer(0.3, abandon.set).start()
    t0 = time.monotonic()
    writer.close(abandon)
    assert time.monotonic() - t0 < 5
    os.close(w)
    data = b""
    while chunk := os.read(r, 1 << 16):
        data += chunk
    os.close(r)
    whole = data[: data.rfind(b"\n") + 1]
    assert writer.count == len(whole.splitlines()) > 0
    assert writer.count + writer.lost == 4000 and writer.lost > 0
    assert writer.cut_line == (data != whole)


def test_metadata_is_written_whole_into_its_reservation(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    meta = MetadataFile(str(path))
    meta.check()
    meta.open({"reason": "running"})
    assert orjson.loads(path.read_bytes()) == {"reason": "running"}
    assert os.stat(path).st_blocks * 512 >= MetadataFile.RESERVE  # the final summary cannot fail for space
    other = MetadataFile(str(path))
    with pytest.raises(OutputError, match="being written by another"):
        other.check()
    meta.write({"reason": "completed", "n": list(range(100))})
    assert orjson.loads(path.read_bytes()) == {"reason": "completed", "n": list(range(100))}
    assert os.stat(path).st_size == len(path.read_bytes())
