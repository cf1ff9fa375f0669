"""SMTP probe (server-first): greeting code, text, announced hostname and a software guess."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from .base import Probe, ProbeKind, first_match, parse_reply_lines
from .registry import register

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
_HOST_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")
_LITERAL_RE = re.compile(r"^\[[0-9A-Fa-f:.]+(?:IPv6:[0-9A-Fa-f:.]+)?\]$|^\[IPv6:[0-9A-Fa-f:.]+\]$")
# "554 5.7.1 ..." enhanced status codes look like dotted hostnames.
_ENHANCED_RE = re.compile(r"^\d\.\d{1,3}\.\d{1,3}$")
_KEYWORDS = {"ESMTP", "SMTP", "LMTP", "SERVICE", "READY", "MAIL"}

_SOFTWARE = [
    (re.compile(r"\bPostfix\b", re.I), lambda m: "Postfix"),
    (re.compile(r"\bExim\s+([0-9][\w.]*)", re.I), lambda m: f"Exim {m.group(1)}"),
    (re.compile(r"\bSendmail\s+([0-9][\w./+-]*)", re.I), lambda m: f"Sendmail {m.group(1)}"),
    (re.compile(r"\bMicrosoft ESMTP MAIL Service\b", re.I), lambda m: "Microsoft Exchange"),
    (re.compile(r"\bOpenSMTPD\b", re.I), lambda m: "OpenSMTPD"),
    (re.compile(r"\bqmail\b", re.I), lambda m: "qmail"),
    (re.compile(r"\bHaraka\b", re.I), lambda m: "Haraka"),
    (re.compile(r"\bMDaemon\b", re.I), lambda m: "MDaemon"),
    (re.compile(r"\bExim\b", re.I), lambda m: "Exim"),
    (re.compile(r"\bSendmail\b", re.I), lambda m: "Sendmail"),
]


def _hostname(first_line: str) -> str | None:
    words = first_line.split()
    if not words:
        return None
    word = words[0]
    if _LITERAL_RE.match(word):
        return word
    if not _HOST_RE.match(word) or word.upper() in _KEYWORDS or word.isdigit() or _ENHANCED_RE.match(word):
        return None
    # A bare single label ("mx") is only trusted when followed by the usual ESMTP/SMTP keyword.
    if "." in word or (len(words) > 1 and words[1].upper().strip(";,") in ("ESMTP", "SMTP", "LMTP")):
        return word
    return None


@register
class SmtpProbe(Probe):
    name: ClassVar[str] = "smtp"
    default_port: ClassVar[int] = 25
    fields: ClassVar[tuple[str, ...]] = ("code", "text", "hostname", "esmtp", "software")
    description: ClassVar[str] = "SMTP greeting: reply code, text, hostname and software guess"
    server_first = True
    kind: ClassVar[ProbeKind] = ProbeKind.BANNER
    args_help: ClassVar[dict[str, str]] = {}

    def _parse(self, ip: str, port: int, data: bytes) -> dict[str, Any]:
        code, text, _ = parse_reply_lines(data)
        if code is None or text is None:
            return {}
        first_line = text.split("\n", 1)[0]
        return {
            "code": code,
            "text": text,
            "hostname": _hostname(first_line),
            "esmtp": bool(re.search(r"\bESMTP\b", text, re.I)),
            "software": first_match(_SOFTWARE, text),
        }

    def _matches(self, parsed: dict[str, Any]) -> bool:
        code = parsed.get("code")
        return isinstance(code, int) and 200 <= code < 600
