"""Generic probe: send a user-given payload (or nothing) and report the banner, optionally regex-matched."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from .base import Probe, ProbeArgError, ProbeKind, banner_text
from .registry import register

MAX_PAYLOAD = 1400  # must fit in one segment after the handshake ACK


def unescape_payload(text: str) -> bytes:
    """Interpret C-like escapes (\\r \\n \\t \\0 \\\\ \\xHH) so binary payloads fit on a command line."""
    out = bytearray()
    i, n = 0, len(text)
    simple = {"r": 13, "n": 10, "t": 9, "0": 0, "\\": 92, "a": 7, "e": 27}
    while i < n:
        c = text[i]
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
            continue
        if i + 1 >= n:
            raise ProbeArgError("hello: payload ends with a lone backslash")
        e = text[i + 1]
        if e in simple:
            out.append(simple[e])
            i += 2
        elif e == "x":
            hx = text[i + 2 : i + 4]
            if len(hx) != 2 or not all(h in "0123456789abcdefABCDEF" for h in hx):
                raise ProbeArgError(f"hello: bad \\x escape at offset {i} in payload")
            out.append(int(hx, 16))
            i += 4
        else:
            raise ProbeArgError(f"hello: unknown escape \\{e} in payload (use \\r \\n \\t \\0 \\\\ \\xHH)")
    return bytes(out)


@register
class HelloProbe(Probe):
    name: ClassVar[str] = "hello"
    default_port: ClassVar[int] = 80
    fields: ClassVar[tuple[str, ...]] = ("banner", "length", "matched", "groups")
    description: ClassVar[str] = (
        "Generic: send a given payload (or nothing) and record the banner, with optional regex"
    )
    server_first = False
    kind: ClassVar[ProbeKind] = ProbeKind.BANNER
    args_help: ClassVar[dict[str, str]] = {
        "payload": "text to send; \\r \\n \\t \\0 \\\\ \\xHH escapes are interpreted",
        "hex": "payload as hex digits (spaces allowed)",
        "file": "read the payload from this file (once, at start)",
        "regex": "Python regex searched in the banner text: sets matched and groups",
    }

    def _configure(self, args: dict[str, str]) -> None:
        given = [k for k in ("payload", "hex", "file") if k in args]
        if len(given) > 1:
            raise ProbeArgError(f"hello: give only one of payload, hex, file (got {', '.join(given)})")
        data = b""
        if "payload" in args:
            data = unescape_payload(args["payload"])
        elif "hex" in args:
            try:
                data = bytes.fromhex(args["hex"].replace(":", " "))
            except ValueError as e:
                raise ProbeArgError(f"hello: hex is not valid hex: {e}") from None
        elif "file" in args:
            try:
                with open(args["file"], "rb") as f:
                    data = f.read(MAX_PAYLOAD + 1)
            except OSError as e:
                raise ProbeArgError(
                    f"hello: cannot read payload file {args['file']!r}: {e.strerror}"
                ) from None
        if len(data) > MAX_PAYLOAD:
            raise ProbeArgError(f"hello: payload longer than {MAX_PAYLOAD} bytes")
        self._payload = data
        # With nothing to send the server must speak first (SSH-like services, or just a banner grab).
        self.server_first = not data
        self.regex: re.Pattern[str] | None = None
        if "regex" in args:
            try:
                self.regex = re.compile(args["regex"])
            except re.error as e:
                raise ProbeArgError(f"hello: bad regex {args['regex']!r}: {e}") from None

    def payload(self, ip: str, port: int) -> bytes:
        return self._payload

    def _parse(self, ip: str, port: int, data: bytes) -> dict[str, Any]:
        text = banner_text(data)
        out: dict[str, Any] = {"banner": text, "length": len(data)}
        if self.regex is not None:
            m = self.regex.search(text)
            out["matched"] = m is not None
            out["groups"] = list(m.groups()) if m else []
        return out

    def _matches(self, parsed: dict[str, Any]) -> bool:
        if self.regex is not None:
            return parsed.get("matched") is True
        return bool(parsed.get("length"))
