"""`--probe auto`: every port gets its well-known probe, every other port LZR's identification.

Not a probe itself: expand() turns it into probe instances, each limited to
its ports (Probe.port_filter), so one scan over many ports grabs each
service's natural banner, and what runs on an unexpected port is identified
(LZR) rather than guessed from the port number.
"""

from __future__ import annotations

from collections.abc import Iterable

from .base import Probe
from .registry import get_probe

NAME = "auto"

# Probe -> its well-known ports (IANA's assignments, and the usual alternates).
WELL_KNOWN: dict[str, tuple[int, ...]] = {
    "ftp": (21,),
    "ssh": (22,),
    "telnet": (23,),
    "smtp": (25, 587),
    "http": (80, 8000, 8080),
    "pop3": (110,),
    "imap": (143,),
    "tls": (443, 8443),
    "mysql": (3306,),
    "redis": (6379,),
}
OTHER = "lzr"  # every port not listed above

PORT_PROBE: dict[int, str] = {port: name for name, ports in WELL_KNOWN.items() for port in ports}


def expand(ports: Iterable[int]) -> list[Probe]:
    """The probes `auto` stands for, for a scan of `ports`: one per well-known probe that has a port
    in the scan (limited to those ports), then `lzr` for every other port (if there is any)."""
    scan = set(int(p) for p in ports)
    out: list[Probe] = []
    for name, known in WELL_KNOWN.items():
        mine = scan & set(known)
        if mine:
            probe = get_probe(name)
            probe.port_filter = ("only", frozenset(mine))
            out.append(probe)
    if scan - set(PORT_PROBE):
        probe = get_probe(OTHER)
        probe.port_filter = ("except", frozenset(PORT_PROBE))
        out.append(probe)
    return out


def describe() -> str:
    """The port map, for `zbanner-xdp probes`."""
    rows = [f"  {', '.join(map(str, ports)):<16} {name}" for name, ports in WELL_KNOWN.items()]
    return "\n".join([*rows, f"  {'any other port':<16} {OTHER}"])
