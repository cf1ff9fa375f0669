"""TLS probe: sends a modern ClientHello (TLS 1.3 + 1.2) and parses the ServerHello or alert that comes back.

With max_version=1.2 the hello offers TLS 1.2 at most, so the server's Certificate message comes in clear;
with --banner-bytes (zbanner_xdp/segments.py) the answer is read on until that message is whole, and the
leaf certificate is parsed with `cryptography` (tls.certificate, tls.chain_length).

The handshake is never completed, so the "random" values only need to look random to the server; they are
derived from sha256 of the target so that payload(ip, port) is deterministic (reproducible scans, and the
same bytes on a retransmission).
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct
from typing import Any, ClassVar

from .base import Probe, ProbeArgError, ProbeKind, banner_text, range_bytes
from .registry import register

# -- constants ------------------------------------------------------------------------------------------

CONTENT_TYPES = {
    20: "change_cipher_spec",
    21: "alert",
    22: "handshake",
    23: "application_data",
    24: "heartbeat",
}

HANDSHAKE_TYPES = {
    0: "hello_request",
    1: "client_hello",
    2: "server_hello",
    4: "new_session_ticket",
    8: "encrypted_extensions",
    11: "certificate",
    12: "server_key_exchange",
    13: "certificate_request",
    14: "server_hello_done",
    15: "certificate_verify",
    16: "client_key_exchange",
    20: "finished",
    22: "certificate_status",
}

VERSIONS = {
    0x0200: "SSLv2",
    0x0300: "SSLv3",
    0x0301: "TLSv1.0",
    0x0302: "TLSv1.1",
    0x0303: "TLSv1.2",
    0x0304: "TLSv1.3",
}

CIPHER_SUITES = {
    0x0004: "TLS_RSA_WITH_RC4_128_MD5",
    0x0005: "TLS_RSA_WITH_RC4_128_SHA",
    0x000A: "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA",
    0x0033: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
    0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    0x0039: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
    0x003C: "TLS_RSA_WITH_AES_128_CBC_SHA256",
    0x003D: "TLS_RSA_WITH_AES_256_CBC_SHA256",
    0x0067: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
    0x006B: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
    0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256",
    0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
    0x009E: "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    0x009F: "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0x1304: "TLS_AES_128_CCM_SHA256",
    0x1305: "TLS_AES_128_CCM_8_SHA256",
    0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    0xC011: "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    0xC012: "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    0xC023: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    0xC024: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    0xC027: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    0xC028: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAA: "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}

# What we offer, in preference order: TLS 1.3 suites, then forward-secret AEAD, then CBC and plain-RSA
# fallbacks so that old servers still answer with a ServerHello rather than a handshake_failure alert.
OFFERED_CIPHERS: tuple[int, ...] = (
    0x1301, 0x1302, 0x1303,
    0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8,
    0xC009, 0xC013, 0xC00A, 0xC014,
    0x009E, 0x009F,
    0x009C, 0x009D, 0x002F, 0x0035, 0x000A,
)  # fmt: skip

ALERT_LEVELS = {1: "warning", 2: "fatal"}

ALERT_DESCRIPTIONS = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    21: "decryption_failed",
    22: "record_overflow",
    30: "decompression_failure",
    40: "handshake_failure",
    41: "no_certificate",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    60: "export_restriction",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    100: "no_renegotiation",
    109: "missing_extension",
    110: "unsupported_extension",
    111: "certificate_unobtainable",
    112: "unrecognized_name",
    113: "bad_certificate_status_response",
    114: "bad_certificate_hash_value",
    115: "unknown_psk_identity",
    116: "certificate_required",
    120: "no_application_protocol",
}

# Extension type numbers.
EXT_SERVER_NAME = 0
EXT_SUPPORTED_GROUPS = 10
EXT_EC_POINT_FORMATS = 11
EXT_SIGNATURE_ALGORITHMS = 13
EXT_ALPN = 16
EXT_PADDING = 21
EXT_EXTENDED_MASTER_SECRET = 23
EXT_SESSION_TICKET = 35
EXT_SUPPORTED_VERSIONS = 43
EXT_PSK_KEY_EXCHANGE_MODES = 45
EXT_KEY_SHARE = 51
EXT_RENEGOTIATION_INFO = 0xFF01

GROUP_X25519 = 0x001D
SUPPORTED_GROUPS = (GROUP_X25519, 0x0017, 0x0018)  # x25519, secp256r1, secp384r1
GROUP_NAMES = {
    0x001D: "x25519",
    0x0017: "secp256r1",
    0x0018: "secp384r1",
    0x0019: "secp521r1",
    0x001E: "x448",
}

SIGNATURE_ALGORITHMS = (
    0x0403,  # ecdsa_secp256r1_sha256
    0x0804,  # rsa_pss_rsae_sha256
    0x0401,  # rsa_pkcs1_sha256
    0x0503,  # ecdsa_secp384r1_sha384
    0x0805,  # rsa_pss_rsae_sha384
    0x0501,  # rsa_pkcs1_sha384
    0x0806,  # rsa_pss_rsae_sha512
    0x0601,  # rsa_pkcs1_sha512
    0x0807,  # ed25519
    0x0201,  # rsa_pkcs1_sha1: still the only option for some embedded devices
)

# RFC 8446 4.1.3: a ServerHello with this random is really a HelloRetryRequest.
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

MAX_RECORD_LEN = 2**14 + 2048


def version_name(v: int) -> str:
    if v in VERSIONS:
        return VERSIONS[v]
    if v >> 8 == 0x7F:
        return f"TLSv1.3-draft{v & 0xFF}"
    return f"0x{v:04x}"


def _u16(v: int) -> bytes:
    return struct.pack("!H", v)


def _ext(ext_type: int, body: bytes) -> bytes:
    return _u16(ext_type) + _u16(len(body)) + body


def _vec8(body: bytes) -> bytes:
    return bytes([len(body)]) + body


def _vec16(body: bytes) -> bytes:
    return _u16(len(body)) + body


# The random, session id and key share derive from the target (range_bytes, ranges 0, 1 and 2), so that
# payload(ip, port) is deterministic and the XDP program can write the same bytes (in-kernel replies).
_RANGE_SEED = int.from_bytes(hashlib.sha256(b"zbanner-xdp/tls").digest()[:8], "little")


def _derive(index: int, ip: str, port: int) -> bytes:
    addr = int(ipaddress.ip_address(ip)) & 0xFFFFFFFF if ip else 0
    return range_bytes(_RANGE_SEED, addr, port, index, 32)


class _Reader:
    """Bounds-checked big-endian reader; ``None`` on truncation instead of IndexError."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes | None:
        if n < 0 or self.pos + n > len(self.data):
            return None
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def uint(self, n: int) -> int | None:
        b = self.take(n)
        return None if b is None else int.from_bytes(b, "big")


@register
class TlsProbe(Probe):
    name: ClassVar[str] = "tls"
    default_port: ClassVar[int] = 443
    fields: ClassVar[tuple[str, ...]] = (
        "content_type",
        "record_version",
        "handshake_type",
        "handshake_messages",
        "version",
        "cipher",
        "cipher_name",
        "compression",
        "session_id_length",
        "extensions",
        "alpn",
        "key_share_group",
        "hello_retry_request",
        "alert_level",
        "alert_level_name",
        "alert_description",
        "alert_name",
    )
    description: ClassVar[str] = (
        "TLS 1.3/1.2 ClientHello; ServerHello version, cipher, ALPN, extensions or alert"
    )
    server_first = False
    kind: ClassVar[ProbeKind] = ProbeKind.BANNER
    args_help: ClassVar[dict[str, str]] = {
        "sni": "server_name to send (default: no SNI extension)",
        "alpn": "comma-separated ALPN protocols, empty to omit the extension (default: h2,http/1.1)",
        "fixed": "1 = same random/session id/key share for all targets, so the payload is fixed (default: 0)",
        "max_version": "1.2 = offer TLS 1.2 at most, so the server's certificates come in clear "
        "(read them with --banner-bytes); 1.3 = the default hello",
    }
    # With --banner-bytes (a TLS 1.2 handshake: max_version=1.2): the leaf certificate and the chain.
    segment_fields: ClassVar[tuple[str, ...]] = ("certificate", "chain_length")

    def _configure(self, args: dict[str, str]) -> None:
        sni = args.get("sni")
        if sni is not None:
            sni = sni.strip().rstrip(".")
            if not sni or len(sni) > 253 or not all(0x21 <= ord(c) <= 0x7E for c in sni):
                raise ProbeArgError(
                    f"tls: sni must be a hostname of 1-253 printable ASCII characters, got {sni!r}"
                )
        alpn_arg = args.get("alpn", "h2,http/1.1")
        alpn = [p.strip() for p in alpn_arg.split(",") if p.strip()]
        for p in alpn:
            if len(p.encode("utf-8")) > 255:
                raise ProbeArgError(f"tls: ALPN protocol name longer than 255 bytes: {p[:40]!r}...")
        fixed = args.get("fixed", "0").strip().lower()
        if fixed not in ("0", "1", "true", "false", "yes", "no"):
            raise ProbeArgError(f"tls: fixed must be 0 or 1, got {fixed!r}")
        max_version = args.get("max_version", "1.3").strip()
        if max_version not in ("1.2", "1.3"):
            raise ProbeArgError(f"tls: max_version must be 1.2 or 1.3, got {max_version!r}")
        self.tls13 = max_version == "1.3"
        self.sni: str | None = sni
        self.alpn: list[str] = alpn
        self.fixed = fixed in ("1", "true", "yes")

    def _payload_varies(self) -> bool:
        return not self.fixed

    def payload(self, ip: str, port: int) -> bytes:
        return self.client_hello(ip, port)

    def client_hello(self, ip: str, port: int) -> bytes:
        """The full TLS record carrying our ClientHello.  Its length never depends on ip/port."""
        if self.fixed:
            ip, port = "", 0
        return self._hello(_derive(0, ip, port), _derive(1, ip, port), _derive(2, ip, port))

    def kernel_ranges(self) -> tuple[int, list[tuple[int, int]]] | None:
        if self.fixed:
            return None
        marks = [bytes([0xA0 + i]) * 32 for i in range(3)]
        hello = self._hello(*marks)
        return _RANGE_SEED, [(hello.index(m), 32) for m in marks if m in hello]  # no key share in 1.2

    def _hello(self, random: bytes, session_id: bytes, key_share: bytes) -> bytes:

        exts: list[bytes] = []
        if self.sni is not None:
            name = self.sni.encode("ascii")
            exts.append(_ext(EXT_SERVER_NAME, _vec16(b"\x00" + _vec16(name))))
        exts.append(_ext(EXT_RENEGOTIATION_INFO, b"\x00"))
        exts.append(_ext(EXT_SUPPORTED_GROUPS, _vec16(b"".join(_u16(g) for g in SUPPORTED_GROUPS))))
        exts.append(_ext(EXT_EC_POINT_FORMATS, _vec8(b"\x00")))  # uncompressed
        exts.append(_ext(EXT_SESSION_TICKET, b""))
        if self.alpn:
            protos = b"".join(_vec8(p.encode("utf-8")) for p in self.alpn)
            exts.append(_ext(EXT_ALPN, _vec16(protos)))
        exts.append(_ext(EXT_EXTENDED_MASTER_SECRET, b""))
        exts.append(_ext(EXT_SIGNATURE_ALGORITHMS, _vec16(b"".join(_u16(s) for s in SIGNATURE_ALGORITHMS))))
        # A TLS 1.3 server only negotiates 1.3 when it sees supported_versions and a usable key_share;
        # without the key share it would have to send a HelloRetryRequest.
        # max_version=1.2: a TLS 1.2 hello (no supported_versions, no key share, no 1.3 suites), so
        # the server's Certificate is not encrypted.
        ciphers = OFFERED_CIPHERS if self.tls13 else tuple(c for c in OFFERED_CIPHERS if c >> 8 != 0x13)
        if self.tls13:
            exts.append(_ext(EXT_SUPPORTED_VERSIONS, _vec8(_u16(0x0304) + _u16(0x0303))))
            exts.append(_ext(EXT_PSK_KEY_EXCHANGE_MODES, _vec8(b"\x01")))  # psk_dhe_ke
            exts.append(_ext(EXT_KEY_SHARE, _vec16(_u16(GROUP_X25519) + _vec16(key_share))))

        def body(extensions: list[bytes]) -> bytes:
            return (
                _u16(0x0303)
                + random
                + _vec8(session_id)
                + _vec16(b"".join(_u16(c) for c in ciphers))
                + _vec8(b"\x00")  # null compression only
                + _vec16(b"".join(extensions))
            )

        hello = body(exts)
        # Some F5 load balancers hang on ClientHellos of 256-511 bytes (RFC 7685 rationale): pad past them,
        # as browsers do.
        hs_len = 4 + len(hello)
        if 0xFF < hs_len < 0x200:
            pad = 0x200 - hs_len
            pad = pad - 4 if pad >= 5 else 1
            hello = body([*exts, _ext(EXT_PADDING, b"\x00" * pad)])
        handshake = b"\x01" + len(hello).to_bytes(3, "big") + hello
        return b"\x16" + _u16(0x0303) + _vec16(handshake)

    # -- parsing -----------------------------------------------------------------------------------------

    def _parse(self, ip: str, port: int, data: bytes) -> dict[str, Any]:
        out: dict[str, Any] = {}
        r = _Reader(data)
        hs_buf = b""
        first = True
        # Walk consecutive records of the same type as the first one: handshake messages may be split
        # across records, and the ServerHello may be followed by Certificate etc. in later records.
        while r.remaining() >= 5:
            start = r.pos
            ctype, ver, length = r.uint(1), r.uint(2), r.uint(2)
            assert ctype is not None and ver is not None and length is not None
            if ctype not in CONTENT_TYPES or ver >> 8 != 3 or length > MAX_RECORD_LEN:
                if first:
                    return out
                break
            if first:
                out["content_type"] = CONTENT_TYPES[ctype]
                out["record_version"] = version_name(ver)
                first = False
            elif CONTENT_TYPES[ctype] != out["content_type"]:
                break
            frag = r.take(length)
            truncated = frag is None
            if frag is None:
                frag = data[start + 5 :]
            if ctype == 21:
                self._parse_alert(frag, out)
                break
            if ctype != 22:
                break
            hs_buf += frag
            if truncated:
                break
        if out.get("content_type") == "handshake":
            self._parse_handshakes(hs_buf, out)
        return out

    @staticmethod
    def _parse_alert(frag: bytes, out: dict[str, Any]) -> None:
        if len(frag) >= 1:
            out["alert_level"] = frag[0]
            out["alert_level_name"] = ALERT_LEVELS.get(frag[0])
        if len(frag) >= 2:
            out["alert_description"] = frag[1]
            out["alert_name"] = ALERT_DESCRIPTIONS.get(frag[1])

    def _parse_handshakes(self, buf: bytes, out: dict[str, Any]) -> None:
        r = _Reader(buf)
        messages: list[str] = []
        while r.remaining() >= 4:
            htype, hlen = r.uint(1), r.uint(3)
            assert htype is not None and hlen is not None
            messages.append(HANDSHAKE_TYPES.get(htype, str(htype)))
            body = r.take(hlen)
            if htype == 11 and body is not None and "certificate" in self.fields:
                _parse_certificates(body, out)
            if len(messages) == 1:
                out["handshake_type"] = messages[0]
                if htype == 2:
                    self._parse_server_hello(body if body is not None else buf[4:], body is None, out)
            if body is None:
                break
        out["handshake_messages"] = messages

    @staticmethod
    def _parse_server_hello(body: bytes, truncated: bool, out: dict[str, Any]) -> None:
        r = _Reader(body)
        legacy = r.uint(2)
        if legacy is None:
            return
        random = r.take(32)
        if random is None:
            return
        out["hello_retry_request"] = random == HRR_RANDOM
        sid_len = r.uint(1)
        if sid_len is None:
            return
        out["session_id_length"] = sid_len
        if r.take(sid_len) is None:
            return
        cipher = r.uint(2)
        if cipher is None:
            return
        out["cipher"] = f"0x{cipher:04x}"
        out["cipher_name"] = CIPHER_SUITES.get(cipher)
        comp = r.uint(1)
        if comp is None:
            return
        out["compression"] = comp

        ext_total = r.uint(2)
        exts: list[int] = []
        selected_version: int | None = None
        ext_complete = False
        if ext_total is None:
            # No extension block at all is legal (pre-TLS 1.3) unless the message was cut short.
            ext_complete = not truncated
        else:
            er = _Reader(body[r.pos : r.pos + ext_total])
            ext_complete = r.remaining() >= ext_total
            while er.remaining() >= 4:
                etype, elen = er.uint(2), er.uint(2)
                assert etype is not None and elen is not None
                edata = er.take(elen)
                if edata is None:
                    ext_complete = False
                    break
                exts.append(etype)
                if etype == EXT_SUPPORTED_VERSIONS and elen == 2:
                    selected_version = int.from_bytes(edata, "big")
                elif etype == EXT_ALPN and elen >= 3:
                    plen = edata[2]
                    if 3 + plen <= elen and plen:
                        out["alpn"] = banner_text(edata[3 : 3 + plen])
                elif etype == EXT_KEY_SHARE and elen >= 2:
                    group = int.from_bytes(edata[:2], "big")
                    out["key_share_group"] = GROUP_NAMES.get(group, f"0x{group:04x}")
            if er.remaining() > 0:
                ext_complete = False
        out["extensions"] = exts
        if selected_version is not None:
            out["version"] = version_name(selected_version)
        elif ext_complete or legacy < 0x0303:
            # Without supported_versions the legacy field is authoritative; but if the extensions were cut
            # off, a legacy 0x0303 might still hide a TLS 1.3 selection, so leave it unknown.
            out["version"] = version_name(legacy)

    def _matches(self, parsed: dict[str, Any]) -> bool:
        return parsed.get("content_type") in ("handshake", "alert")

    def _complete(self, data: bytes) -> bool:
        """Done once nothing more comes in clear: ServerHelloDone, or the whole Certificate message, or
        a TLS 1.3 ServerHello (the rest is encrypted), an alert, a record that is not a handshake."""
        r = _Reader(data)
        hs = b""
        while r.remaining() >= 5:
            ctype, ver, length = r.uint(1), r.uint(2), r.uint(2)
            assert ctype is not None and ver is not None and length is not None
            if ctype != 22 or ver >> 8 != 3:
                return True
            frag = r.take(length)
            if frag is None:
                hs += data[r.pos :]
                break
            hs += frag
        h = _Reader(hs)
        while h.remaining() >= 4:
            htype, hlen = h.uint(1), h.uint(3)
            assert htype is not None and hlen is not None
            body = h.take(hlen)
            if body is None:
                return False
            if htype in (11, 14):  # certificate, server_hello_done
                return True
            if htype == 2:
                out: dict[str, Any] = {}
                self._parse_server_hello(body, False, out)
                if out.get("version") == "TLSv1.3" or out.get("hello_retry_request"):
                    return True
        return False


def _parse_certificates(body: bytes, out: dict[str, Any]) -> None:
    """A TLS 1.2 Certificate message: the chain's length and the leaf certificate."""
    r = _Reader(body)
    total = r.uint(3)
    if total is None:
        return
    chain = _Reader(body[3 : 3 + total])
    ders: list[bytes] = []
    while chain.remaining() >= 3:
        n = chain.uint(3)
        der = chain.take(n) if n is not None else None
        if der is None:
            break
        ders.append(der)
    out["chain_length"] = len(ders)
    if ders:
        out["certificate"] = describe_certificate(ders[0])


def _attempt(fn: Any) -> Any:
    try:
        return fn()
    except Exception:  # a field the library cannot read in this certificate: null, not the rest
        return None


def _name(name: Any) -> str:
    return name.rfc4514_string()


def _utc(dt: Any) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")  # cryptography gives naive UTC datetimes


def _public_key(cert: Any) -> tuple[str | None, int | None]:
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    key = cert.public_key()
    sized = ((rsa.RSAPublicKey, "rsa"), (ec.EllipticCurvePublicKey, "ec"), (dsa.DSAPublicKey, "dsa"))
    for cls, kind in sized:
        if isinstance(key, cls):
            return kind, int(key.key_size)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "ed448", 456
    return type(key).__name__, None


def _sans(cert: Any) -> list[str] | None:
    from cryptography import x509

    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [str(getattr(v, "value", v)) for v in ext.value]


def describe_certificate(der: bytes) -> dict[str, Any]:
    """A certificate's fields (cryptography parses it); sha256 is of the DER as sent, even unparsable."""
    out: dict[str, Any] = {"sha256": hashlib.sha256(der).hexdigest(), "parsed": False}
    try:
        from cryptography import x509

        cert = x509.load_der_x509_certificate(der)
    except Exception:
        return out
    kind_bits = _attempt(lambda: _public_key(cert)) or (None, None)
    oid = _attempt(lambda: cert.signature_algorithm_oid)
    out.update(
        parsed=True,
        subject=_attempt(lambda: _name(cert.subject)),
        issuer=_attempt(lambda: _name(cert.issuer)),
        serial=_attempt(lambda: format(cert.serial_number, "x")),
        not_before=_attempt(lambda: _utc(cert.not_valid_before)),
        not_after=_attempt(lambda: _utc(cert.not_valid_after)),
        subject_alt_names=_attempt(lambda: _sans(cert)),
        public_key_type=kind_bits[0],
        public_key_bits=kind_bits[1],
        signature_algorithm=None if oid is None else getattr(oid, "_name", None) or oid.dotted_string,
    )
    return out
