"""Shared test set-up: privileged tests need root, BPF and namespaces."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
ZB = str(VENV_BIN / "zbanner-xdp")


def privileged_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not shutil.which("ip"):
        return "needs iproute2"
    try:
        import bcc  # noqa: F401
    except ImportError:
        return "needs Debian's python3-bpfcc"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = privileged_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"privileged test: {reason}")
    for item in items:
        if "privileged" in item.keywords:
            item.add_marker(skip)
