"""DNS over UDP: one query whose transaction id is the cookie; parses the response header and first answer."""

from __future__ import annotations

import struct
from typing import Any, ClassVar

from .base import Probe, ProbeArgError, ProbeKind
from .registry import register

_QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "ANY": 255}
_QTYPE_NAMES = {v: k for k, v in _QTYPES.items()}
_RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
_MAX_POINTERS = 16


def _encode_name(name: str) -> bytes:
    out = b""
    for label in name.strip(".").split("."):
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise ProbeArgError(f"udp-dns: invalid name {name!r}")
        out += bytes([len(raw)]) + raw
    return out + b"\x00"


def _read_name(data: bytes, off: int) -> tuple[str, int]:
    """Decode a (possibly compressed) name; returns (name, offset after it in the record)."""
    labels: list[str] = []
    end = -1
    jumps = 0
    while True:
        if off >= len(data):
            raise ValueError("name runs past the end")
        n = data[off]
        if n == 0:
            off += 1
            break
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(data) or jumps >= _MAX_POINTERS:
                raise ValueError("bad compression pointer")
            if end < 0:
                end = off + 2
            off = ((n & 0x3F) << 8) | data[off + 1]
            jumps += 1
            continue
        if n & 0xC0:
            raise ValueError("bad label type")
        labels.append(data[off + 1 : off + 1 + n].decode("ascii", errors="backslashreplace"))
        off += 1 + n
    return ".".join(labels) + ".", (end if end >= 0 else off)


@register
class UdpDnsProbe(Probe):
    name: ClassVar[str] = "udp-dns"
    default_port: ClassVar[int] = 53
    fields: ClassVar[tuple[str, ...]] = (
        "id",
        "qr",
        "opcode",
        "aa",
        "tc",
        "rd",
        "ra",
        "rcode",
        "rcode_name",
        "qdcount",
        "ancount",
        "nscount",
        "arcount",
        "question",
        "answer_name",
        "answer_type",
        "answer_ttl",
        "answer_data",
    )
    description: ClassVar[str] = "DNS query over UDP (id = cookie): rcode, flags, counts, first answer"
    kind: ClassVar[ProbeKind] = ProbeKind.DATAGRAM
    cookie_offset: ClassVar[int] = 0
    cookie_len: ClassVar[int] = 2
    reply_cookie_offset: ClassVar[int] = 0
    args_help: ClassVar[dict[str, str]] = {
        "name": "name to query (default example.com, a reserved name)",
        "qtype": f"query type ({', '.join(_QTYPES)}; default A)",
    }

    def _configure(self, args: dict[str, str]) -> None:
        self.qname = args.get("name", "example.com")
        qtype = args.get("qtype", "A").upper()
        if qtype not in _QTYPES:
            raise ProbeArgError(f"udp-dns: unknown qtype {qtype!r}")
        self.qtype = _QTYPES[qtype]
        self._template = (
            struct.pack("!HHHHHH", 0, 0x0100, 1, 0, 0, 0)
            + _encode_name(self.qname)
            + struct.pack("!HH", self.qtype, 1)
        )

    def udp_template(self) -> bytes:
        return self._template

    def payload(self, ip: str, port: int) -> bytes:
        return self._template

    def _parse(self, ip: str, port: int, data: bytes) -> dict[str, Any]:
        if len(data) < 12:
            return {}
        ident, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", data, 0)
        out: dict[str, Any] = {
            "id": ident,
            "qr": bool(flags & 0x8000),
            "opcode": (flags >> 11) & 0xF,
            "aa": bool(flags & 0x0400),
            "tc": bool(flags & 0x0200),
            "rd": bool(flags & 0x0100),
            "ra": bool(flags & 0x0080),
            "rcode": flags & 0xF,
            "rcode_name": _RCODES.get(flags & 0xF),
            "qdcount": qd,
            "ancount": an,
            "nscount": ns,
            "arcount": ar,
        }
        off = 12
        try:
            if qd:
                out["question"], off = _read_name(data, off)
                off += 4 * qd if qd == 1 else 4
                for _ in range(qd - 1):
                    _, off = _read_name(data, off)
                    off += 4
            if an:
                name, off = _read_name(data, off)
                rtype, _cls, ttl, rdlen = struct.unpack_from("!HHIH", data, off)
                off += 10
                rdata = data[off : off + rdlen]
                out.update(answer_name=name, answer_type=_QTYPE_NAMES.get(rtype, rtype), answer_ttl=ttl)
                if rtype == 1 and len(rdata) == 4:
                    out["answer_data"] = ".".join(str(b) for b in rdata)
                elif rtype == 28 and len(rdata) == 16:
                    import ipaddress

                    out["answer_data"] = str(ipaddress.IPv6Address(rdata))
                elif rtype in (2, 5, 12):
                    out["answer_data"], _ = _read_name(data, off)
                else:
                    out["answer_data"] = rdata.hex()
        except (ValueError, struct.error):
            pass  # a truncated answer still leaves the header fields
        return out

    def _matches(self, parsed: dict[str, Any]) -> bool:
        return parsed.get("qr") is True and parsed.get("opcode") == 0
