"""Redis probe: RESP ``PING`` (or ``INFO``) and the type/value of the reply."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from .base import Probe, ProbeArgError, ProbeKind, banner_text
from .registry import register

_COMMANDS = {
    "ping": b"*1\r\n$4\r\nPING\r\n",
    "info": b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n",
}
_TYPES = {"+": "simple_string", "-": "error", ":": "integer", "$": "bulk_string", "*": "array"}
_LEN_RE = re.compile(r"^-?\d{1,12}$")
_INFO_RE = {key: re.compile(rf"(?:^|\n){key}:([^\r\n]*)") for key in ("redis_version", "redis_mode", "os")}


@register
class RedisProbe(Probe):
    name: ClassVar[str] = "redis"
    default_port: ClassVar[int] = 6379
    fields: ClassVar[tuple[str, ...]] = (
        "type",
        "value",
        "pong",
        "error",
        "auth_required",
        "redis_version",
        "redis_mode",
        "os",
    )
    description: ClassVar[str] = "Redis PING (or INFO server): reply type, PONG, error, redis_version"
    server_first = False
    kind: ClassVar[ProbeKind] = ProbeKind.BANNER
    args_help: ClassVar[dict[str, str]] = {"cmd": "ping (default) or info (INFO server, reveals version)"}

    def _configure(self, args: dict[str, str]) -> None:
        cmd = args.get("cmd", "ping").strip().lower()
        if cmd not in _COMMANDS:
            raise ProbeArgError(f"redis: cmd must be one of {', '.join(_COMMANDS)}, got {cmd!r}")
        self.cmd = cmd

    def payload(self, ip: str, port: int) -> bytes:
        return _COMMANDS[self.cmd]

    def _parse(self, ip: str, port: int, data: bytes) -> dict[str, Any]:
        if not data:
            return {}
        kind = _TYPES.get(chr(data[0]))
        if kind is None:
            return {}
        nl = data.find(b"\n")
        head = banner_text(data[1 : nl if nl >= 0 else len(data)]).rstrip("\r")
        if kind in ("integer", "bulk_string", "array") and not _LEN_RE.match(head):
            # "$", ":" or "*" followed by garbage is not RESP (e.g. some other protocol's banner).
            return {}
        out: dict[str, Any] = {"type": kind, "pong": False}
        if kind == "simple_string":
            out["value"] = head
            out["pong"] = head.upper() == "PONG"
        elif kind == "error":
            out["error"] = head
            out["auth_required"] = head.upper().startswith(("NOAUTH", "WRONGPASS"))
        elif kind == "integer":
            out["value"] = head
        elif kind == "bulk_string":
            body = banner_text(data[nl + 1 :]) if nl >= 0 else ""
            if int(head) >= 0:
                out["value"] = body[: int(head)]
            for key, pat in _INFO_RE.items():
                m = pat.search(body.replace("\r\n", "\n"))
                if m:
                    out[key] = m.group(1).strip()
        if kind != "error":
            out["auth_required"] = False
        return out

    def _matches(self, parsed: dict[str, Any]) -> bool:
        return parsed.get("type") is not None
