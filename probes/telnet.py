"""Telnet probe (server-first): IAC option negotiations and the printable text around them."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from .base import Probe, ProbeKind, banner_text
from .registry import register

IAC = 255
SB = 250
SE = 240
COMMANDS = {
    240: "SE", 241: "NOP", 242: "DM", 243: "BRK", 244: "IP", 245: "AO", 246: "AYT", 247: "EC", 248: "EL",
    249: "GA", 250: "SB", 251: "WILL", 252: "WONT", 253: "DO", 254: "DONT",
}  # fmt: skip
_OPTION_CMDS = (251, 252, 253, 254)
MAX_NEGOTIATIONS = 64

# Login banners often carry ANSI colour/cursor sequences; they are noise in a text field.
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_UNPRINTABLE_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@register
class TelnetProbe(Probe):
    name: ClassVar[str] = "telnet"
    default_port: ClassVar[int] = 23
    fields: ClassVar[tuple[str, ...]] = ("negotiations", "text")
    description: ClassVar[str] = "Telnet: IAC option negotiations (DO/WILL/...) and printable banner text"
    server_first = True
    kind: ClassVar[ProbeKind] = ProbeKind.BANNER
    args_help: ClassVar[dict[str, str]] = {}

    def _parse(self, ip: str, port: int, data: bytes) -> dict[str, Any]:
        negs: list[dict[str, Any]] = []
        text = bytearray()
        i, n = 0, len(data)
        while i < n:
            b = data[i]
            if b != IAC:
                text.append(b)
                i += 1
                continue
            if i + 1 >= n:
                break  # truncated after IAC
            c = data[i + 1]
            if c == IAC:
                text.append(IAC)  # escaped literal 255
                i += 2
            elif c in _OPTION_CMDS:
                if i + 2 >= n:
                    break
                if len(negs) < MAX_NEGOTIATIONS:
                    negs.append({"cmd": COMMANDS[c], "option": data[i + 2]})
                i += 3
            elif c == SB:
                if len(negs) < MAX_NEGOTIATIONS:
                    negs.append({"cmd": "SB", "option": data[i + 2] if i + 2 < n else None})
                # Skip to IAC SE, honouring IAC IAC escapes inside the subnegotiation data.
                j = i + 3
                while j + 1 < n and not (data[j] == IAC and data[j + 1] == SE):
                    j += 2 if data[j] == IAC and data[j + 1] == IAC else 1
                i = j + 2 if j + 1 < n else n
            else:
                if len(negs) < MAX_NEGOTIATIONS:
                    negs.append({"cmd": COMMANDS.get(c, str(c)), "option": None})
                i += 2
        s = _ANSI_RE.sub("", banner_text(bytes(text)).replace("\r\n", "\n").replace("\r", "\n"))
        s = _UNPRINTABLE_RE.sub("", s).strip()
        return {"negotiations": negs, "text": s}

    def _matches(self, parsed: dict[str, Any]) -> bool:
        # Telnet has no fixed greeting: any negotiation or any text counts as the service answering.
        return bool(parsed.get("negotiations")) or bool(parsed.get("text"))
