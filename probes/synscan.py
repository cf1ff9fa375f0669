"""SYN-only scan: no ACK and no payload after the SYN-ACK, so there is never anything to parse."""

from __future__ import annotations

from typing import Any, ClassVar

from .base import Probe, ProbeKind
from .registry import register


@register
class SynScanProbe(Probe):
    name: ClassVar[str] = "synscan"
    default_port: ClassVar[int] = 80
    fields: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = (
        "SYN-only port scan (default): a SYN-ACK means open, nothing is sent after it"
    )
    server_first = False
    kind: ClassVar[ProbeKind] = ProbeKind.SYN
    args_help: ClassVar[dict[str, str]] = {}

    def payload(self, ip: str, port: int) -> bytes:
        return b""

    def _parse(self, ip: str, port: int, data: bytes) -> dict[str, Any]:
        return {}

    def _matches(self, parsed: dict[str, Any]) -> bool:
        # No application data is ever exchanged, so "application alive" cannot be established.
        return False
