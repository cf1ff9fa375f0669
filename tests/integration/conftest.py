"""Lab fixtures: build the namespace lab for a module, always tear it down."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from tests.conftest import ZB, privileged_reason
from zbanner_xdp import lab
from zbanner_xdp.scanner import DROP_KEYS

# A clean scan's metadata `drops`: every counter there, all zero.
NO_DROPS = dict.fromkeys(DROP_KEYS, 0)


@pytest.fixture(scope="module")
def lab_up() -> Iterator[lab.LabInfo]:
    if privileged_reason():
        pytest.skip(privileged_reason() or "")
    lab.down()
    info = lab.up()
    try:
        with lab.using():  # another process's down() now refuses to take the lab from these tests
            yield info
    finally:
        lab.down()


# The two reply paths (README: --kernel-replies): the XDP program answers, or user space does. Tests of
# results take `replies` and pass REPLY_ARGS[replies] to the scanner: the same results both ways.
REPLY_ARGS = {"kernel": ("--kernel-replies",), "user": ("--no-kernel-replies",)}


@pytest.fixture(params=sorted(REPLY_ARGS))
def replies(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def empty_blocklist(tmp_path: Path) -> str:
    # The lab lives in 198.18.0.0/15, which the default blocklist reserves.
    p = tmp_path / "empty-blocklist"
    p.write_text("")
    return str(p)


def scanner_argv(*args: str) -> list[str]:
    """The scanner, always inside the lab's scan namespace."""
    return lab.ns_exec_argv(lab.SCAN_NS, [ZB, *args])


def run_scanner(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(scanner_argv(*args), capture_output=True, text=True, timeout=timeout)


def run_scanner_read_late(*args: str, wait_s: float, timeout: float = 120) -> tuple[int, bytes, bytes]:
    """The scanner writing to a pipe nobody reads for `wait_s` (its output has to wait), then read
    to the end: exit status, stdout, stderr."""
    scan = subprocess.Popen(scanner_argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(wait_s)
        out, err = scan.communicate(timeout=timeout)
    finally:
        if scan.poll() is None:
            scan.kill()
            scan.wait()
    return scan.returncode, out, err


def python_in_scan_ns(code: str, *args: str, timeout: float = 120) -> str:
    """A Python client (`python -c code args…`) in the scan namespace, from the repository; its stdout."""
    r = subprocess.run(
        lab.ns_exec_argv(lab.SCAN_NS, [sys.executable, "-c", code, *args]),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def signal_scanner(
    args: tuple[str, ...], ready: Callable[[], bool], settle: float = 0.0, sig: int = signal.SIGTERM
) -> tuple[int, str]:
    """Start the scanner, send it `sig` `settle` s after `ready()` holds (or 30 s); (exit status, stderr)."""
    proc = subprocess.Popen(scanner_argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(settle)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def read_records(path: Path | str) -> list[dict]:
    with open(path, "rb") as fh:
        return [orjson.loads(line) for line in fh]


def xdp_attached() -> bool:
    out = subprocess.run(
        ["ip", "-n", lab.SCAN_NS, "-d", "link", "show", lab.SCAN_IF],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    return "prog/xdp" in out or " xdp" in out


class Capture:
    """tcpdump in a lab namespace; by default on the first hop from the scanner (the router side of
    its link), which sees every frame the scanner sends."""

    def __init__(
        self,
        path: Path,
        bpf_filter: str = "tcp",
        ns: str = lab.CAPTURE_NS,
        iface: str = lab.CAPTURE_IF,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.path = path
        argv = [
            "tcpdump",
            "-i",
            iface,
            "--immediate-mode",
            "-B",
            "65536",
            "-U",
            "-n",
            *extra,
            "-w",
            str(path),
        ]
        self.proc = subprocess.Popen(
            lab.ns_exec_argv(ns, [*argv, bpf_filter]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 10
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if "listening on" in line:
                return
            if self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError("tcpdump did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def pcap_tcp(path: Path) -> list[tuple[str, str, int, int, int, int, int]]:
    """(src, dst, sport, dport, flags, ttl, payload_len) per TCP frame in a pcap."""
    import socket

    import dpkt

    out = []
    with open(path, "rb") as fh:
        for _ts, buf in dpkt.pcap.Reader(fh):
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            t = ip.data
            out.append(
                (
                    socket.inet_ntoa(ip.src),
                    socket.inet_ntoa(ip.dst),
                    t.sport,
                    t.dport,
                    t.flags,
                    ip.ttl,
                    len(t.data),
                )
            )
    return out
