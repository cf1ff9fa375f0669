"""NTP over UDP: an NTPv4 client request whose transmit timestamp carries the cookie."""

from __future__ import annotations

import struct
from typing import Any, ClassVar

from .base import Probe, ProbeKind
from .registry import register

_NTP_EPOCH = 2208988800  # 1900-01-01 to 1970-01-01
_MODES = {
    1: "symmetric-active",
    2: "symmetric-passive",
    3: "client",
    4: "server",
    5: "broadcast",
    6: "control",
}


def _short(v: int) -> float:
    return round((v >> 16) + (v & 0xFFFF) / 65536, 6)


def _stamp(sec: int, frac: int) -> float | None:
    if sec == 0 and frac == 0:
        return None
    return round(sec - _NTP_EPOCH + frac / 2**32, 6)


@register
class UdpNtpProbe(Probe):
    name: ClassVar[str] = "udp-ntp"
    default_port: ClassVar[int] = 123
    fields: ClassVar[tuple[str, ...]] = (
        "leap",
        "version",
        "mode",
        "mode_name",
        "stratum",
        "poll",
        "precision",
        "root_delay",
        "root_dispersion",
        "reference_id",
        "reference_time",
        "receive_time",
        "transmit_time",
    )
    description: ClassVar[str] = "NTPv4 client request (mode 3): stratum, version, reference id, clock"
    kind: ClassVar[ProbeKind] = ProbeKind.DATAGRAM
    # The server copies our transmit timestamp (offset 40) into its origin timestamp (offset 24).
    cookie_offset: ClassVar[int] = 40
    cookie_len: ClassVar[int] = 4
    reply_cookie_offset: ClassVar[int] = 24

    def udp_template(self) -> bytes:
        return bytes([0x23]) + bytes(47)  # LI 0, version 4, mode 3 (client)

    def payload(self, ip: str, port: int) -> bytes:
        return self.udp_template()

    def _parse(self, ip: str, port: int, data: bytes) -> dict[str, Any]:
        if len(data) < 48:
            return {}
        b0, stratum, poll, precision, rdelay, rdisp, refid = struct.unpack_from("!BBbbIII", data, 0)
        ref_s, ref_f, _o_s, _o_f, rx_s, rx_f, tx_s, tx_f = struct.unpack_from("!8I", data, 16)
        mode = b0 & 7
        raw_ref = data[12:16]
        if stratum <= 1:
            ref = raw_ref.rstrip(b"\x00").decode("ascii", errors="backslashreplace")
        else:
            ref = ".".join(str(x) for x in raw_ref)
        return {
            "leap": b0 >> 6,
            "version": (b0 >> 3) & 7,
            "mode": mode,
            "mode_name": _MODES.get(mode),
            "stratum": stratum,
            "poll": poll,
            "precision": precision,
            "root_delay": _short(rdelay),
            "root_dispersion": _short(rdisp),
            "reference_id": ref,
            "reference_time": _stamp(ref_s, ref_f),
            "receive_time": _stamp(rx_s, rx_f),
            "transmit_time": _stamp(tx_s, tx_f),
        }

    def _matches(self, parsed: dict[str, Any]) -> bool:
        return parsed.get("mode") == 4 and parsed.get("version") in (1, 2, 3, 4)
