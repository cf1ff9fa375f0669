"""filebroker.py: the helper that keeps root to replace the checkpoint after the scan drops it."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from zbanner_xdp.filebroker import Broker


def test_replaces_the_one_file_and_reports_errors(tmp_path: Path) -> None:
    path = tmp_path / "scan.ckpt"
    b = Broker(str(path))
    try:
        b.replace(str(path), b"one\n")
        b.replace(str(path), b"two\n")
        assert path.read_bytes() == b"two\n" and not list(tmp_path.glob(".*.tmp"))
    finally:
        b.close()
    gone = tmp_path / "no-such-dir" / "scan.ckpt"
    b = Broker(str(gone))
    try:
        with pytest.raises(OSError) as info:
            b.replace(str(gone), b"x")
        assert info.value.errno == errno.ENOENT
    finally:
        b.close()


def test_no_module_from_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It keeps root: a zbanner_xdp planted where the scan runs must not be what it imports."""
    planted = tmp_path / "zbanner_xdp"
    planted.mkdir()
    marker = tmp_path / "planted-ran"
    (planted / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (planted / "filebroker.py").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    path = tmp_path / "scan.ckpt"
    b = Broker(str(path))
    try:
        b.replace(str(path), b"ok\n")
    finally:
        b.close()
    assert path.read_bytes() == b"ok\n"
    assert not marker.exists()
    assert os.getcwd() == str(tmp_path)
