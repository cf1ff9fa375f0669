"""ICMP echo: the network-layer liveness probe (id/seq carry the cookie)."""

from __future__ import annotations

from typing import Any, ClassVar

from .base import Probe, ProbeKind
from .registry import register

# Fixed, recognisable, and small: some hosts answer only echo requests with data.
ECHO_DATA = b"zbanner-xdp\x00\x00\x00\x00\x00"


@register
class IcmpEchoProbe(Probe):
    name: ClassVar[str] = "icmp-echo"
    default_port: ClassVar[int] = 0
    fields: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = "ICMP echo request once per address; records echo replies (and ICMP errors)"
    kind: ClassVar[ProbeKind] = ProbeKind.ECHO

    def payload(self, ip: str, port: int) -> bytes:
        return ECHO_DATA

    def _parse(self, ip: str, port: int, data: bytes) -> dict[str, Any]:
        return {}
