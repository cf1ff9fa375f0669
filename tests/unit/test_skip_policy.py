"""Under CI a skip fails the run unless a known kernel feature is missing (tests/skip_policy.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

SUITE = """
import pytest
from tests.skip_policy import missing_feature

def test_runs():
    pass

def test_needs_netem():
    pytest.skip(missing_feature("sch_netem", "the relay covers it"))
"""


def _pytest(tmp_path: Path, body: str, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_suite.py").write_text(body)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(ROOT)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.skip_policy", "."],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("ci", [None, "true"])
def test_a_missing_known_feature_may_skip(tmp_path: Path, ci: str | None) -> None:
    r = _pytest(tmp_path, SUITE, ci)
    assert r.returncode == 0, r.stdout
    assert "1 passed, 1 skipped" in r.stdout


@pytest.mark.parametrize(
    "skip",
    [
        'pytest.skip("privileged test: needs root")',
        'pytest.skip(missing_feature("xdp_live_frames"))',  # not a feature CI is known to lack
        'pytest.importorskip("no_such_module_anywhere")',
    ],
)
def test_any_other_skip_fails_under_ci(tmp_path: Path, skip: str) -> None:
    body = SUITE + f"\ndef test_other():\n    {skip}\n"
    assert _pytest(tmp_path, body, None).returncode == 0  # outside CI: a skip is a skip
    r = _pytest(tmp_path, body, "true")
    assert r.returncode == 1, r.stdout
    assert "skipped under CI (each a failure)" in r.stdout
    assert "test_suite.py::test_other" in r.stdout
    assert "test_needs_netem" not in r.stdout.split("skipped under CI")[1]


def test_ci_run_sets_ci() -> None:
    text = (ROOT / ".ci" / "run").read_text()
    assert "export CI=true" in text and "make test" in text


def test_ci_fails_at_once_when_privileged_tests_cannot_run(tmp_path: Path) -> None:
    # No bcc (a stub that fails to import stands in for a machine without python3-bpfcc).
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "bcc.py").write_text("raise ImportError('no bcc here')\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    privileged: needs root\n")
    (tmp_path / "test_priv.py").write_text(
        "import pytest\n\n@pytest.mark.privileged\ndef test_lab():\n    pass\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = f"{stub}:{ROOT}"
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest", "."]
    r = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "1 skipped" in r.stdout, r.stdout  # outside CI: skipped, with its reason
    r = subprocess.run(
        argv, cwd=tmp_path, env={**env, "CI": "true"}, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 1, r.stdout
    assert "the privileged tests cannot run (needs Debian's python3-bpfcc)" in r.stdout + r.stderr
