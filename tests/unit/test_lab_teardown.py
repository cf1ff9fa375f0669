"""Tearing the lab down kills what this process started for it, even a server caught mid-start.

A `lab up` that fails (a server that does not start) tears down at once. A server started a moment
earlier may still be `ip netns exec` on its way into the target namespace: not in any lab namespace
yet, and not yet what its pid file says. It used to outlive the teardown (CI, 2026-12-05: the lab's
postgres alive after a deliberately failed up). No network and no namespace here: the searches by
namespace and pid file find nothing, only this process's own children are left to find.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from zbanner_xdp.lab import lifecycle, procs, relay, servers


def test_a_child_started_for_the_lab_dies_when_no_search_finds_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifecycle, "_lab_namespaces", lambda: [])
    monkeypatch.setattr(servers, "server_pid", lambda name: None)
    monkeypatch.setattr(relay, "relay_pid", lambda: None)
    monkeypatch.setattr(procs, "CHILDREN", {})
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    procs.CHILDREN[child.pid] = child
    try:
        removed: list[str] = []
        lifecycle._kill_lab_processes(removed)
        assert child.poll() is not None, "the child outlived the teardown"
        assert any(str(child.pid) in r and "started for the lab" in r for r in removed), removed
        assert procs.CHILDREN == {}  # reaped: no zombie left behind
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
