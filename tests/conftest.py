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


# Under CI a skip is a failure unless a known kernel feature is missing (see there).
from tests.skip_policy import (  # noqa: E402, F401 - hooks, registered by being names here
    pytest_runtest_logreport,
    pytest_sessionfinish,
    pytest_terminal_summary,
    strict,
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = privileged_reason()
    if reason is None:
        return
    if strict() and any("privileged" in item.keywords for item in items):
        pytest.exit(f"CI: the privileged tests cannot run ({reason}); they must not be skipped", returncode=1)
    skip = pytest.mark.skip(reason=f"privileged test: {reason}")
    for item in items:
        if "privileged" in item.keywords:
            item.add_marker(skip)
