"""IMAP probe (server-first): untagged greeting status, CAPABILITY response code and text."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from .base import Probe, ProbeKind, banner_text, split_lines
from .registry import register

_GREETING_RE = re.compile(r"^\*\s+(OK|PREAUTH|BYE|NO|BAD)\b\s*(.*)$", re.I)
_CODE_RE = re.compile(r"^\[([^\]]*)\]?\s*(.*)$")


@register
class ImapProbe(Probe):
    name: ClassVar[str] = "imap"
    default_port: ClassVar[int] = 143
    fields: ClassVar[tuple[str, ...]] = ("status", "capabilities", "starttls", "text")
    description: ClassVar[str] = "IMAP greeting: status (OK/PREAUTH/BYE), capabilities and text"
    server_first = True
    kind: ClassVar[ProbeKind] = ProbeKind.BANNER
    args_help: ClassVar[dict[str, str]] = {}

    def _parse(self, ip: str, port: int, data: bytes) -> dict[str, Any]:
        lines = split_lines(banner_text(data[:8192]))
        m = _GREETING_RE.match(lines[0]) if lines else None
        if m is None:
            return {}
        out: dict[str, Any] = {"status": m.group(1).upper()}
        rest = m.group(2).strip()
        if rest.startswith("["):
            cm = _CODE_RE.match(rest)
            if cm:
                code_words = cm.group(1).split()
                rest = cm.group(2).strip()
                if code_words and code_words[0].upper() == "CAPABILITY":
                    # The bracket may be missing when the banner was truncated; the words seen so far are
                    # still capabilities.
                    caps = code_words[1:]
                    out["capabilities"] = caps
                    out["starttls"] = any(c.upper() == "STARTTLS" for c in caps)
        out["text"] = rest
        return out

    def _matches(self, parsed: dict[str, Any]) -> bool:
        return parsed.get("status") is not None
