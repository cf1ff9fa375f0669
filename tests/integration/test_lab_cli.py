"""`zbanner-xdp lab`: its options (--prefix, up --wire), and what keeps `lab down` from taking a lab in use.

These tests build and remove the lab through the command line, so they hold no lease of their own
(the lab_up fixture's would make every `lab down` here refuse, rightly).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.conftest import ZB, privileged_reason
from zbanner_xdp import lab

pytestmark = pytest.mark.privileged

# The lab's own prefix goes on the command line; the environment names a lab nobody has, so a
# --prefix the CLI ignored could never touch someone else's lab.
ENV = {**os.environ, "ZBANNER_LAB_PREFIX": "zz9-"}
HOLD = (
    "from zbanner_xdp import lab; import time; c = lab.using(); c.__enter__(); "
    "print('held', flush=True); time.sleep(120)"
)


def zb_lab(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ZB, "lab", "--prefix", lab.PREFIX, *args], capture_output=True, text=True, timeout=timeout, env=ENV
    )


@pytest.fixture(scope="module")
def cli_lab() -> Iterator[None]:
    if privileged_reason():
        pytest.skip(privileged_reason() or "")
    lab.down()
    try:
        yield
    finally:
        lab.down(force=True)


def _holder() -> subprocess.Popen[str]:
    env = {**os.environ, "ZBANNER_LAB_PREFIX": lab.PREFIX}
    proc = subprocess.Popen([sys.executable, "-c", HOLD], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()


def _one_error_line(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zbanner-xdp: error: lab: "), r.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_lab_down_refuses_a_lab_in_use_and_leaves_no_lock_file(cli_lab: None) -> None:
    r = zb_lab("up")
    assert r.returncode == 0, r.stderr
    assert "UP (complete)" in r.stdout and f"prefix {lab.PREFIX!r}" in r.stdout
    assert "  owner       built by " in r.stdout  # who built it, for whoever finds it
    holder = _holder()
    try:
        # A test module, a benchmark holding a lease: neither down nor a rebuild takes the lab.
        _one_error_line(zb_lab("down"), "is in use", f"pid {holder.pid}", "holds a lease", "--force")
        _one_error_line(zb_lab("up", "--wire"), "is in use", "not rebuilt")
        assert lab.status()["complete"]
        st = zb_lab("status")
        assert f"in use      pid {holder.pid}" in st.stdout
    finally:
        _stop(holder)
    # A scan (here a sleep) in the lab's scan namespace: in use as well.
    sleeper = subprocess.Popen(lab.ns_exec_argv(lab.SCAN_NS, ["sleep", "120"]))
    try:
        deadline = time.monotonic() + 10
        while sleeper.pid not in lab.procs.pids_in_netns(lab.SCAN_NS) and time.monotonic() < deadline:
            time.sleep(0.05)
        _one_error_line(zb_lab("down"), "is in use", f"runs in {lab.SCAN_NS}")
        assert lab.status()["complete"]
        r = zb_lab("down", "--force")
        assert r.returncode == 0, r.stderr
        assert sleeper.wait(timeout=10) != 0  # ended with the lab
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
    assert f"netns {lab.SCAN_NS}" in r.stdout
    assert not any(n.startswith(lab.PREFIX) for n in os.listdir("/run/netns"))
    assert not os.path.exists(lab.STATE_DIR)
    assert not os.path.exists(lab.LOCK_FILE)  # nothing left in /run
    r = zb_lab("status")
    assert r.returncode == 0 and not os.path.exists(lab.LOCK_FILE)  # a status of no lab leaves none either


def test_lab_up_wire_from_the_command_line(cli_lab: None) -> None:
    r = zb_lab("up", "--wire")
    assert r.returncode == 0, r.stderr
    assert "with fault wire" in r.stdout and lab.status()["wire"]
    assert lab.status()["complete"]
    r = zb_lab("down")
    assert r.returncode == 0, r.stderr
    assert f"netns {lab.WIRE_NS}" in r.stdout
    assert not os.path.exists(lab.LOCK_FILE)
    r = zb_lab("down")
    assert r.returncode == 0 and r.stdout.startswith("lab: removed nothing")


def test_a_bad_prefix_is_one_line() -> None:
    r = subprocess.run([ZB, "lab", "--prefix", "Nope", "status"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "--prefix" in r.stderr and "'Nope'" in r.stderr
    env = {**os.environ, "ZBANNER_LAB_PREFIX": "Bad"}
    r = subprocess.run([ZB, "lab", "status"], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2 and r.stderr.startswith("zbanner-xdp: error: ZBANNER_LAB_PREFIX='Bad'")
