"""FTP probe (server-first): greeting reply code and text, plus a server software guess."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from .base import Probe, ProbeKind, first_match, parse_reply_lines
from .registry import register

_SOFTWARE = [
    (re.compile(r"\bvsFTPd\s+([0-9][\w.]*)", re.I), lambda m: f"vsFTPd {m.group(1)}"),
    (re.compile(r"\bProFTPD(?:\s+([0-9][\w.]*))?", re.I), lambda m: f"ProFTPD {m.group(1) or ''}".strip()),
    (re.compile(r"\bPure-FTPd\b", re.I), lambda m: "Pure-FTPd"),
    (re.compile(r"\bFileZilla Server(?:\s+(?:version\s+)?v?([0-9][\w.]*))?", re.I),
     lambda m: f"FileZilla Server {m.group(1) or ''}".strip()),
    (re.compile(r"\bMicrosoft FTP Service\b", re.I), lambda m: "Microsoft FTP Service"),
    (re.compile(r"\bServ-U FTP Server v?([0-9][\w.]*)?", re.I),
     lambda m: f"Serv-U {m.group(1) or ''}".strip()),
    (re.compile(r"\bwu-([0-9][\w.()-]*)", re.I), lambda m: f"wu-ftpd {m.group(1)}"),
    (re.compile(r"\bvsFTPd\b", re.I), lambda m: "vsFTPd"),
]  # fmt: skip


@register
class FtpProbe(Probe):
    name: ClassVar[str] = "ftp"
    default_port: ClassVar[int] = 21
    fields: ClassVar[tuple[str, ...]] = ("code", "text", "software")
    description: ClassVar[str] = "FTP greeting: reply code, text and software guess"
    server_first = True
    kind: ClassVar[ProbeKind] = ProbeKind.BANNER
    args_help: ClassVar[dict[str, str]] = {}

    def _parse(self, ip: str, port: int, data: bytes) -> dict[str, Any]:
        code, text, _ = parse_reply_lines(data)
        if code is None or text is None:
            return {}
        return {"code": code, "text": text, "software": first_match(_SOFTWARE, text)}

    def _matches(self, parsed: dict[str, Any]) -> bool:
        code = parsed.get("code")
        return isinstance(code, int) and 100 <= code < 600
