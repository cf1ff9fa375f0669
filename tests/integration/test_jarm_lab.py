"""JARM against real TLS servers in the lab: probes/jarm.py must give the reference's exact fingerprints.

The servers and fingerprints are those of ../shared/reference/jarm.md: the lab's nginx on 443 and four
`openssl s_server` on 4431-4434 with fresh certificates, all in the target namespace; 4435 has no server
(the lab RSTs it). The client is an ordinary socket in the scan namespace that does what the reference
does per hello: one connection, send the hello, one recv(1484); a refused/reset connection scores `|||`
for that hello, a timeout voids the whole fingerprint.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from zbanner_xdp import lab
from zbanner_xdp.lab import netns
from zbanner_xdp.probes import jarm

pytestmark = pytest.mark.privileged

TARGET = "198.18.0.5"
CLOSED_PORT = 4435
RECV_SIZE = 1484  # the reference's single read
TIMEOUT = 10.0
SERVER_SECONDS = 600  # `timeout` bound on every server, in case the teardown itself is killed

# port -> (certificate kind, extra s_server options)
S_SERVERS: dict[int, tuple[str, tuple[str, ...]]] = {
    4431: ("rsa", ("-tls1_2",)),
    4432: ("rsa", ("-tls1_3",)),
    4433: ("ec", ()),
    4434: ("rsa", ()),
}

REFERENCE: dict[int, str] = {
    443: "21d19d00021d21d00042d43d0000005ad20eceaf7f71ae0887d2ff117bf97f",
    4431: "07d14d16d21d21d00007d14d07d21d0ae59125bcd90b8876b50928af8f6cd4",
    4432: "00000000000000000042d43d0000009535d5979f591ae8e547c5e5743e5b64",
    4433: "1dd40d40d00040d00042d43d000000ad9bf51cc3f5a1e29eecb81d0c7b06eb",
    4434: "07d14d16d21d21d00042d43d000000aa99ce74e2c6d013c745aa52b5cc042d",
    CLOSED_PORT: "0" * 62,
}


def _certificates(d: Path) -> None:
    keys = {
        "rsa": ["-newkey", "rsa:2048"],
        "ec": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
    }
    for kind, newkey in keys.items():
        subprocess.run(
            ["openssl", "req", "-x509", *newkey, "-nodes", "-days", "2", "-subj", "/CN=jref"]
            + ["-keyout", str(d / f"{kind}.key"), "-out", str(d / f"{kind}.crt")],
            check=True,
            capture_output=True,
            timeout=60,
        )


def _in_scan_ns(fn):  # type: ignore[no-untyped-def]
    return netns.run_in(lab.SCAN_NS, fn)


def _accepts(port: int) -> bool:
    def probe() -> bool:
        try:
            with socket.create_connection((TARGET, port), timeout=1):
                return True
        except OSError:
            return False

    return bool(_in_scan_ns(probe))


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


@pytest.fixture(scope="module")
def tls_servers(lab_up: lab.LabInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    d = tmp_path_factory.mktemp("jarm-certs")
    _certificates(d)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for port, (kind, extra) in S_SERVERS.items():
            argv = ["timeout", str(SERVER_SECONDS), "openssl", "s_server", "-quiet", "-accept", str(port)]
            argv += ["-cert", str(d / f"{kind}.crt"), "-key", str(d / f"{kind}.key"), *extra, "-www"]
            procs.append(
                subprocess.Popen(
                    lab.ns_exec_argv(lab.TARGET_NS, argv),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        deadline = time.monotonic() + 15
        waiting = set(S_SERVERS) | {443}
        while waiting and time.monotonic() < deadline:
            waiting = {p for p in waiting if not _accepts(p)}
            time.sleep(0.1)
        assert not waiting, f"TLS servers not listening: {sorted(waiting)}"
        assert not _accepts(CLOSED_PORT)
        yield
    finally:
        _stop(procs)


def _answer(port: int, hello: bytes) -> bytes | None | str:
    """The reference's send_packet: the answer bytes, None (connection error) or "timeout"."""

    def go() -> bytes | None | str:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(TIMEOUT)
        try:
            s.connect((TARGET, port))
            s.sendall(hello)
            return s.recv(RECV_SIZE)
        except TimeoutError:
            return "timeout"
        except OSError:
            return None
        finally:
            s.close()

    return _in_scan_ns(go)  # type: ignore[no-any-return]


def _jarm(port: int) -> tuple[str, list[str]]:
    parts: list[str] = []
    for hello in jarm.hellos(TARGET, port, b"zbanner-xdp jarm lab test"):
        got = _answer(port, hello)
        if got == "timeout":
            parts = [jarm.EMPTY_PART] * jarm.HELLO_COUNT
            break
        parts.append(jarm.parse_server_hello(got) if isinstance(got, bytes) else jarm.EMPTY_PART)
    return jarm.fingerprint(parts), parts


@pytest.mark.parametrize("port", sorted(REFERENCE))
def test_reference_fingerprint(tls_servers: None, port: int) -> None:
    fp, parts = _jarm(port)
    assert fp == REFERENCE[port], parts
