"""MySQL/MariaDB probe (server-first): the initial handshake packet (protocol 10) or an error packet."""

from __future__ import annotations

from typing import Any, ClassVar

from .base import Probe, ProbeKind, banner_text
from .registry import register


def _cstring(buf: bytes, pos: int) -> tuple[bytes, int, bool]:
    """NUL-terminated string at pos -> (value, position after the NUL, terminated?)."""
    end = buf.find(b"\x00", pos)
    if end < 0:
        return buf[pos:], len(buf), False
    return buf[pos:end], end + 1, True


def _le(buf: bytes, pos: int, n: int) -> int | None:
    if pos + n > len(buf):
        return None
    return int.from_bytes(buf[pos : pos + n], "little")


@register
class MysqlProbe(Probe):
    name: ClassVar[str] = "mysql"
    default_port: ClassVar[int] = 3306
    fields: ClassVar[tuple[str, ...]] = (
        "packet_length",
        "sequence",
        "protocol_version",
        "server_version",
        "connection_id",
        "capabilities",
        "character_set",
        "status_flags",
        "auth_plugin",
        "error_code",
        "sql_state",
        "error_message",
    )
    description: ClassVar[str] = (
        "MySQL/MariaDB initial handshake: server version, connection id, or error packet"
    )
    server_first = True
    kind: ClassVar[ProbeKind] = ProbeKind.BANNER
    args_help: ClassVar[dict[str, str]] = {}

    def _parse(self, ip: str, port: int, data: bytes) -> dict[str, Any]:
        if len(data) < 5:
            return {}
        plen = int.from_bytes(data[0:3], "little")
        seq = data[3]
        p = data[4 : 4 + plen]
        kind = p[0] if p else None
        if kind not in (9, 10, 0xFF):
            # Any other first byte is not a handshake we understand; don't report a bogus packet header.
            return {}
        out: dict[str, Any] = {"packet_length": plen, "sequence": seq}
        if kind == 0xFF:
            out["error_code"] = _le(p, 1, 2)
            msg = p[3:]
            # The "#SQLSTATE" marker is only present once CLIENT_PROTOCOL_41 is negotiated, which a
            # pre-handshake error (e.g. "Host ... is not allowed to connect") never has.
            if msg[:1] == b"#" and len(msg) >= 6:
                out["sql_state"] = banner_text(msg[1:6])
                msg = msg[6:]
            out["error_message"] = banner_text(msg)
            return out
        out["protocol_version"] = kind
        version, pos, terminated = _cstring(p, 1)
        out["server_version"] = banner_text(version)
        if not terminated or kind == 9:
            return out
        out["connection_id"] = _le(p, pos, 4)
        pos += 4 + 8 + 1  # auth-plugin-data part 1 + filler
        cap_low = _le(p, pos, 2)
        if cap_low is None:
            return out
        out["capabilities"] = cap_low
        pos += 2
        out["character_set"] = _le(p, pos, 1)
        out["status_flags"] = _le(p, pos + 1, 2)
        cap_high = _le(p, pos + 3, 2)
        if cap_high is None:
            return out
        caps = cap_low | (cap_high << 16)
        out["capabilities"] = caps
        auth_len = _le(p, pos + 5, 1)
        pos += 6 + 10  # cap high + auth data length + reserved
        if auth_len is None or pos > len(p):
            return out
        if caps & 0x8000:  # CLIENT_SECURE_CONNECTION: auth-plugin-data part 2
            pos += max(13, auth_len - 8)
        if caps & 0x80000 and pos < len(p):  # CLIENT_PLUGIN_AUTH
            plugin, _, _ = _cstring(p, pos)
            out["auth_plugin"] = banner_text(plugin)
        return out

    def _matches(self, parsed: dict[str, Any]) -> bool:
        # Sequence 0 and a modest length rule out most non-MySQL banners whose bytes happen to line up.
        if parsed.get("sequence") != 0 or not isinstance(parsed.get("packet_length"), int):
            return False
        if parsed["packet_length"] > 0xFFFF:
            return False
        if parsed.get("error_code") is not None:
            return True
        return parsed.get("protocol_version") in (9, 10) and bool(parsed.get("server_version"))
