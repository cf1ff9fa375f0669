"""Under CI a skipped test is a failure, unless a kernel feature it needs is known to be missing.

A suite whose privileged tests all skip (no root, no bcc) would otherwise pass
while testing nothing. So with CI set (`.ci/run` sets it), the run fails:
- at once, when the privileged tests cannot run at all (not root, no bcc, no
  iproute2): `privileged_reason()`;
- at the end, naming them, when any test skipped for another reason than
  `missing_feature(...)` of a feature in KNOWN_MISSING.
Tests that need a kernel feature skip through `missing_feature()`, which names it.
"""

from __future__ import annotations

import os

import pytest

FEATURE_PREFIX = "missing kernel feature: "
# Features the CI machine's kernel is known to lack; a skip for anything else fails under CI.
KNOWN_MISSING = frozenset({"sch_netem"})

_bad_skips: list[str] = []


def strict() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def missing_feature(feature: str, why: str = "") -> str:
    """The skip reason for a test that needs `feature`; `why` says what covers it instead."""
    return f"{FEATURE_PREFIX}{feature}" + (f" ({why})" if why else "")


def allowed(reason: str) -> bool:
    if not reason.startswith(FEATURE_PREFIX):
        return False
    feature = reason[len(FEATURE_PREFIX) :].split(" ", 1)[0]
    return feature in KNOWN_MISSING


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        text = str(longrepr[2])
        return text[len("Skipped: ") :] if text.startswith("Skipped: ") else text
    return str(longrepr)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and strict():
        reason = _reason(report)
        if not allowed(reason):
            _bad_skips.append(f"{report.nodeid}: {reason}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _bad_skips:
        terminalreporter.section("skipped under CI (each a failure)", red=True)
        for line in _bad_skips:
            terminalreporter.line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _bad_skips and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
