"""LZR identification against the lab's real servers: probes/lzr.py's handshakes, in order, each on a new
connection from an ordinary socket, until a response is identified — what the scanner's steps will do.

Every lab server is reached from the scan namespace at 198.18.0.5 (dnsmasq's TCP through the lab's DNAT to
its interface address, the only kind of address it answers TCP on).
"""

from __future__ import annotations

import select
import socket

import pytest

from zbanner_xdp import lab
from zbanner_xdp.lab import netns
from zbanner_xdp.probes import lzr

pytestmark = pytest.mark.privileged

TARGET = "198.18.0.5"
WAIT = 2.0  # per step: the lab's servers answer within milliseconds, or not at all

# (namespace, address, port) -> (protocol, connections used)
CASES: dict[tuple[str, str, int], tuple[str, int]] = {
    (lab.SCAN_NS, TARGET, lab.PORTS["http"]): ("http", 1),
    (lab.SCAN_NS, TARGET, lab.PORTS["https"]): ("tls", 1),  # nginx's "HTTPS port" error page
    (lab.SCAN_NS, TARGET, lab.PORTS["ssh"]): ("ssh", 1),
    (lab.SCAN_NS, TARGET, lab.PORTS["ftp"]): ("ftp", 1),
    (lab.SCAN_NS, TARGET, lab.PORTS["redis"]): ("redis", 1),
    (lab.SCAN_NS, TARGET, lab.PORTS["dns"]): ("dns", lzr.HANDSHAKE_NAMES.index("dns") + 1),
}


def _first_data(ns: str, addr: str, port: int, payload: bytes) -> bytes | None:
    """The server's first data after `payload`; b"" when it closed, None when it could not be reached."""

    def go() -> bytes | None:
        s = socket.socket()
        s.settimeout(WAIT)
        try:
            s.connect((addr, port))
        except OSError:
            return None
        try:
            if payload:
                s.sendall(payload)
            readable, _, _ = select.select([s], [], [], WAIT)
            return s.recv(1024) if readable else b""
        except OSError:
            return b""
        finally:
            s.close()

    return netns.run_in(ns, go)


def _walk(ns: str, addr: str, port: int) -> tuple[str, int, list[str]]:
    used = 0
    for h in lzr.HANDSHAKES:
        data = _first_data(ns, addr, port, h.payload)
        used += 1
        if data is None:
            break  # nothing listens: no point in other handshakes
        matches = lzr.identify(data, h.name)
        if matches:
            return lzr.best(matches), used, matches
    return "unknown", used, []


@pytest.mark.parametrize(("where", "want"), list(CASES.items()), ids=[f"{p}" for _, _, p in CASES])
def test_lab_services_identified(
    lab_up: lab.LabInfo, where: tuple[str, str, int], want: tuple[str, int]
) -> None:
    protocol, used, matches = _walk(*where)
    assert (protocol, used) == want, matches


def test_closed_port_is_unknown(lab_up: lab.LabInfo) -> None:
    assert _walk(lab.SCAN_NS, TARGET, 4435) == ("unknown", 1, [])
