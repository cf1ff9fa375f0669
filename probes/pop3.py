"""POP3 probe (server-first): ``+OK``/``-ERR`` greeting status and text."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from .base import Probe, ProbeKind, banner_text, split_lines
from .registry import register

_STATUS_RE = re.compile(r"^(\+OK|-ERR)(?:\s+(.*))?$", re.I)
# RFC 1939 APOP: the greeting carries a msg-id like <1896.697170952@dbc.mtview.ca.us>.
_APOP_RE = re.compile(r"<[^<>@\s]+@[^<>@\s]+>")


@register
class Pop3Probe(Probe):
    name: ClassVar[str] = "pop3"
    default_port: ClassVar[int] = 110
    fields: ClassVar[tuple[str, ...]] = ("status", "text", "apop")
    description: ClassVar[str] = "POP3 greeting: +OK/-ERR status and text"
    server_first = True
    kind: ClassVar[ProbeKind] = ProbeKind.BANNER
    args_help: ClassVar[dict[str, str]] = {}

    def _parse(self, ip: str, port: int, data: bytes) -> dict[str, Any]:
        lines = split_lines(banner_text(data[:4096]))
        m = _STATUS_RE.match(lines[0]) if lines else None
        if m is None:
            return {}
        text = (m.group(2) or "").strip()
        return {"status": m.group(1).upper(), "text": text, "apop": bool(_APOP_RE.search(text))}

    def _matches(self, parsed: dict[str, Any]) -> bool:
        return parsed.get("status") in ("+OK", "-ERR")
