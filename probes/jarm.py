"""JARM: the ten TLS ClientHellos, the per-answer summary and the 62-character fingerprint.

Pure protocol code, no sockets: the scanner core sends the hellos (one TCP connection each) and hands the
answers back here. Everything follows the reference implementation (salesforce/jarm, ``jarm.py``, v1.0)
byte for byte, quirks included, so that fingerprints equal the reference's for the same server:

- the ten hellos (``HELLO_SPECS``): TLS 1.2 x5, TLS 1.1, TLS 1.3 x4, with the reference's 69-suite list
  (64 without the TLS 1.3 suites for hello 9), its five orders (forward, reverse, top half, bottom half,
  middle out), GREASE in hellos 5 and 10, its ALPN lists and orders (including its merged
  ``spdy/3``+``h2`` entry, which makes the common list 8 entries long instead of 9 and so changes the
  middle-out/reverse orders) and its supported_versions variants;
- the SNI carries the target string exactly as given (the reference sends an IP address literal as SNI
  when scanning an address).

**Deterministic randomness.** The reference draws the client random, the session id, the x25519 key
share and each GREASE value at random. A stateless scanner must be able to rebuild any hello (for a
retransmission, or to know its length) from the scan seed alone, so here every such byte is
BLAKE2b(key=seed, "jarm" | hello index | field). They do not depend on the target, so a scan's ten hellos
differ between targets only in the SNI, and the pieces around the SNI are cached per seed. None of these
bytes can change a server's choice (a server does not see the draw, only values it must treat as
opaque), so fingerprints are unaffected.

**Payload length.** Hello *i* is ``hello_length(i, len(host))`` bytes: a per-hello constant
(``HELLO_BASE_LENGTHS``: the length with an empty host) plus the host's length in bytes. It does not
depend on the seed (GREASE values are always 2 bytes) nor on the port. ``hellos`` only accepts ASCII hosts
(IP literals, DNS names), so byte length == string length; the XDP side can size the payload from the
target string's length alone: for an IPv4 literal, 7 to 15 bytes more than the base.

**What the reference reads of an answer.** One ``recv(1484)`` per connection (20 s timeout), parsed from
its first byte: record type (byte 0), handshake type (byte 5), legacy version (bytes 9-10), session-id
length (byte 43), then the cipher, the extensions length and the extensions of the ServerHello, and two
fixed 3-byte probes (bytes ``sid+50..52`` and 82..84). It never reads beyond the end of the ServerHello's
extensions (``49 + sid_len + ext_len`` bytes, at most 85 for the fixed probe). With these hellos a
ServerHello is at most ~170 bytes (32-byte session id; extensions: ALPN, a 32-byte x25519 key share or a
short HelloRetryRequest, supported_versions, renegotiation_info, EMS, max_fragment_length, ec_point_formats,
session ticket), because only x25519 is offered as a key share and no post-quantum group is offered. So
the scanner's 1,024 bytes of the first TCP data segment are always enough: a server puts its ServerHello
first, and every MSS (>= 536 bytes) carries it whole. The only divergence would be a server splitting its
first record over several tiny segments, which the reference would see differently too (its one recv
returns whatever had arrived).

**Per-connection outcomes, as the reference scores them.** Data: ``parse_server_hello(data)``. Connection
refused/reset, or closed without data: ``EMPTY_PART`` (``|||``) for that hello only. No answer within the
timeout: the reference gives up on the whole target and the fingerprint is all zeros (62 ``0``). An alert
is an answer (``|||``) and the reference goes on with the next hello: a TLS-1.3-only server answers the
five TLS 1.2 hellos with alerts and still has a non-zero JARM, so a scanner may stop early only when hello 1
gets no TLS record at all (``answer_is_tls`` false), never on an alert.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

from .base import Probe, ProbeArgError, ProbeKind, StepOutcome
from .registry import register

__all__ = [
    "EMPTY_PART",
    "HELLO_BASE_LENGTHS",
    "HELLO_COUNT",
    "HELLO_SPECS",
    "ZERO_FINGERPRINT",
    "HelloSpec",
    "JarmProbe",
    "answer_is_tls",
    "fingerprint",
    "hello",
    "hello_length",
    "hellos",
    "parse_server_hello",
]

HELLO_COUNT = 10
EMPTY_PART = "|||"
ZERO_FINGERPRINT = "0" * 62
MAX_HOST_LEN = 255

# -- the hellos -------------------------------------------------------------------------------------------

# The reference's cipher suite list, in its order (it is not sorted: the order is part of the probe).
_ALL_CIPHERS: tuple[int, ...] = (
    0x0016, 0x0033, 0x0067, 0xC09E, 0xC0A2, 0x009E, 0x0039, 0x006B, 0xC09F, 0xC0A3, 0x009F, 0x0045,
    0x00BE, 0x0088, 0x00C4, 0x009A, 0xC008, 0xC009, 0xC023, 0xC0AC, 0xC0AE, 0xC02B, 0xC00A, 0xC024,
    0xC0AD, 0xC0AF, 0xC02C, 0xC072, 0xC073, 0xCCA9, 0x1302, 0x1301, 0xCC14, 0xC007, 0xC012, 0xC013,
    0xC027, 0xC02F, 0xC014, 0xC028, 0xC030, 0xC060, 0xC061, 0xC076, 0xC077, 0xCCA8, 0x1305, 0x1304,
    0x1303, 0xCC13, 0xC011, 0x000A, 0x002F, 0x003C, 0xC09C, 0xC0A0, 0x009C, 0x0035, 0x003D, 0xC09D,
    0xC0A1, 0x009D, 0x0041, 0x00BA, 0x0084, 0x00C0, 0x0007, 0x0004, 0x0005,
)  # fmt: skip
# "NO1.3": the same list without the five TLS 1.3 suites, order kept.
_NO13_CIPHERS: tuple[int, ...] = tuple(c for c in _ALL_CIPHERS if c >> 8 != 0x13)

# The fingerprint's cipher alphabet: a suite scores its 1-based position here (unknown: one past the end).
# It is the non-1.3 suites in numeric order, then TLS_AES_128_GCM_SHA256 .. TLS_AES_128_CCM_8_SHA256.
_CIPHER_RANK: dict[str, int] = {
    f"{c:04x}": i + 1 for i, c in enumerate([*sorted(_NO13_CIPHERS), *(c for c in range(0x1301, 0x1306))])
}
_UNKNOWN_CIPHER_RANK = len(_CIPHER_RANK) + 1

_GREASE: tuple[int, ...] = tuple(0x0A0A + 0x1010 * i for i in range(16))


def _alpn_entry(*names: bytes) -> bytes:
    return b"".join(bytes([len(n)]) + n for n in names)


# ALPN lists as the reference builds them: each entry is one unit when reordered. The common list has
# "spdy/3" and "h2" fused into one entry (the reference's missing comma), which must be kept: it decides
# where h2 lands in the reversed and middle-out orders.
_ALPN_COMMON: tuple[bytes, ...] = (
    _alpn_entry(b"http/0.9"),
    _alpn_entry(b"http/1.0"),
    _alpn_entry(b"http/1.1"),
    _alpn_entry(b"spdy/1"),
    _alpn_entry(b"spdy/2"),
    _alpn_entry(b"spdy/3", b"h2"),
    _alpn_entry(b"h2c"),
    _alpn_entry(b"hq"),
)
# "Rare" ALPN: without http/1.1 and h2.
_ALPN_RARE: tuple[bytes, ...] = (
    _alpn_entry(b"http/0.9"),
    _alpn_entry(b"http/1.0"),
    _alpn_entry(b"spdy/1"),
    _alpn_entry(b"spdy/2"),
    _alpn_entry(b"spdy/3"),
    _alpn_entry(b"h2c"),
    _alpn_entry(b"hq"),
)

# (record-layer version, ClientHello legacy_version)
_VERSIONS: dict[str, tuple[int, int]] = {
    "tls1.1": (0x0302, 0x0302),
    "tls1.2": (0x0303, 0x0303),
    "tls1.3": (0x0301, 0x0303),  # a TLS 1.3 hello says 1.2 in the hello and 1.0 on the record
}


@dataclass(frozen=True)
class HelloSpec:
    """One of the ten probes.

    version: "tls1.1" | "tls1.2" | "tls1.3" (record and hello versions, see _VERSIONS);
    ciphers: "all" (69 suites) | "no1.3" (64); cipher_order: forward | reverse | top_half | bottom_half |
    middle_out; grease: GREASE first in the suites, as first extension, in the key share and in
    supported_versions; rare_alpn: the ALPN list without http/1.1 and h2; supported_versions: "none" (no
    extension), "1.2" (TLS 1.0-1.2) or "1.3" (TLS 1.0-1.3; a tls1.3 hello always sends it); ext_order:
    forward | reverse, the order of the ALPN entries and of the supported versions.
    """

    version: str
    ciphers: str
    cipher_order: str
    grease: bool
    rare_alpn: bool
    supported_versions: str
    ext_order: str


# The ten hellos, in the reference's order (its names: tls1_2_forward, tls1_2_reverse, tls1_2_top_half,
# tls1_2_bottom_half, tls1_2_middle_out, tls1_1_middle_out, tls1_3_forward, tls1_3_reverse,
# tls1_3_invalid, tls1_3_middle_out). Hello 6 is named middle-out there but sends forward order.
HELLO_SPECS: tuple[HelloSpec, ...] = (
    HelloSpec("tls1.2", "all", "forward", False, False, "1.2", "reverse"),
    HelloSpec("tls1.2", "all", "reverse", False, False, "1.2", "forward"),
    HelloSpec("tls1.2", "all", "top_half", False, False, "none", "forward"),
    HelloSpec("tls1.2", "all", "bottom_half", False, True, "none", "forward"),
    HelloSpec("tls1.2", "all", "middle_out", True, True, "none", "reverse"),
    HelloSpec("tls1.1", "all", "forward", False, False, "none", "forward"),
    HelloSpec("tls1.3", "all", "forward", False, False, "1.3", "reverse"),
    HelloSpec("tls1.3", "all", "reverse", False, False, "1.3", "forward"),
    HelloSpec("tls1.3", "no1.3", "forward", False, False, "1.3", "forward"),
    HelloSpec("tls1.3", "all", "middle_out", True, False, "1.3", "reverse"),
)


def _bottom_half(items: list[bytes]) -> list[bytes]:
    # An odd middle element belongs to neither half.
    n = len(items)
    return items[n // 2 + (n % 2) :]


def _reorder(items: tuple[bytes, ...], order: str) -> list[bytes]:
    seq = list(items)
    n = len(seq)
    if order == "forward":
        return seq
    if order == "reverse":
        return seq[::-1]
    if order == "bottom_half":
        return _bottom_half(seq)
    if order == "top_half":
        # The first half walked backwards, preceded by the middle element when there is one.
        head = [seq[n // 2]] if n % 2 else []
        return head + _bottom_half(seq[::-1])
    if order == "middle_out":
        # From the centre outwards, the upper neighbour before the lower one.
        mid = n // 2
        if n % 2:
            out = [seq[mid]]
            for i in range(1, mid + 1):
                out += [seq[mid + i], seq[mid - i]]
            return out
        out = []
        for i in range(1, mid + 1):
            out += [seq[mid - 1 + i], seq[mid - i]]
        return out
    raise ValueError(f"unknown order {order!r}")


def _u16(v: int) -> bytes:
    return struct.pack("!H", v)


def _draw(seed: bytes, index: int, field: bytes, size: int) -> bytes:
    # Keyed BLAKE2b: unpredictable without the seed (a server cannot tell our hellos from random ones),
    # reproducible with it. Long seeds are hashed down to BLAKE2b's 64-byte key limit.
    key = seed if len(seed) <= 64 else hashlib.blake2b(seed).digest()
    return hashlib.blake2b(b"jarm|%d|" % index + field, key=key, digest_size=size).digest()


def _grease(seed: bytes, index: int, where: bytes) -> bytes:
    return _u16(_GREASE[_draw(seed, index, b"grease-" + where, 1)[0] % len(_GREASE)])


@lru_cache(maxsize=8 * HELLO_COUNT)
def _pieces(seed: bytes, index: int) -> tuple[bytes, bytes, bytes, bytes]:
    """Everything of hello `index` except the SNI: (record version, ClientHello up to the extensions,
    extensions before the SNI, extensions after it)."""
    spec = HELLO_SPECS[index]
    record_version, hello_version = _VERSIONS[spec.version]

    suites = [_u16(c) for c in (_ALL_CIPHERS if spec.ciphers == "all" else _NO13_CIPHERS)]
    suites = _reorder(tuple(suites), spec.cipher_order)
    if spec.grease:
        suites.insert(0, _grease(seed, index, b"cipher"))
    cipher_bytes = b"".join(suites)
    session_id = _draw(seed, index, b"session-id", 32)
    head = (
        _u16(hello_version)
        + _draw(seed, index, b"random", 32)
        + bytes([len(session_id)])
        + session_id
        + _u16(len(cipher_bytes))
        + cipher_bytes
        + b"\x01\x00"  # one compression method: null
    )

    before_sni = _grease(seed, index, b"extension") + b"\x00\x00" if spec.grease else b""

    alpn = b"".join(_reorder(_ALPN_RARE if spec.rare_alpn else _ALPN_COMMON, spec.ext_order))
    share = _grease(seed, index, b"key-share") + b"\x00\x01\x00" if spec.grease else b""
    share += b"\x00\x1d\x00\x20" + _draw(seed, index, b"key-share", 32)  # x25519
    after_sni = (
        b"\x00\x17\x00\x00"  # extended_master_secret
        + b"\x00\x01\x00\x01\x01"  # max_fragment_length: 512
        + b"\xff\x01\x00\x01\x00"  # renegotiation_info, empty
        + b"\x00\x0a\x00\x0a\x00\x08\x00\x1d\x00\x17\x00\x18\x00\x19"  # groups: x25519, P-256, P-384, P-521
        + b"\x00\x0b\x00\x02\x01\x00"  # ec_point_formats: uncompressed
        + b"\x00\x23\x00\x00"  # session_ticket, empty
        + b"\x00\x10"  # ALPN
        + _u16(len(alpn) + 2)
        + _u16(len(alpn))
        + alpn
        # signature_algorithms
        + b"\x00\x0d\x00\x14\x00\x12\x04\x03\x08\x04\x04\x01\x05\x03\x08\x05\x05\x01\x08\x06\x06\x01\x02\x01"
        + b"\x00\x33"  # key_share
        + _u16(len(share) + 2)
        + _u16(len(share))
        + share
        + b"\x00\x2d\x00\x02\x01\x01"  # psk_key_exchange_modes: psk_dhe_ke
    )
    if spec.version == "tls1.3" or spec.supported_versions == "1.2":
        top = 0x0303 if spec.supported_versions == "1.2" else 0x0304
        versions = b"".join(_reorder(tuple(_u16(v) for v in range(0x0301, top + 1)), spec.ext_order))
        if spec.grease:
            versions = _grease(seed, index, b"versions") + versions
        after_sni += b"\x00\x2b" + _u16(len(versions) + 1) + bytes([len(versions)]) + versions
    return _u16(record_version), head, before_sni, after_sni


def _check_host(target_host: str) -> bytes:
    if not isinstance(target_host, str):
        raise TypeError("target_host must be a str")
    try:
        host = target_host.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(
            f"target_host must be ASCII (an IP literal or an IDNA name): {target_host!r}"
        ) from None
    if len(host) > MAX_HOST_LEN:
        raise ValueError(f"target_host longer than {MAX_HOST_LEN} bytes")
    return host


def _hello(seed: bytes, index: int, host: bytes) -> bytes:
    record_version, head, before_sni, after_sni = _pieces(seed, index)
    sni = b"\x00\x00" + _u16(len(host) + 5) + _u16(len(host) + 3) + b"\x00" + _u16(len(host)) + host
    extensions = before_sni + sni + after_sni
    body = head + _u16(len(extensions)) + extensions
    handshake = b"\x01\x00" + _u16(len(body)) + body  # client_hello, 24-bit length (< 64 KiB)
    return b"\x16" + record_version + _u16(len(handshake)) + handshake


def hellos(target_host: str, port: int, seed: bytes) -> list[bytes]:
    """The ten JARM ClientHellos (full TLS records) for `target_host`, in the reference's order.

    `target_host` goes into the SNI as given (an address literal for an address scan, as the reference
    does); `port` does not enter the bytes (it does not in the reference either) and is only checked.
    Every byte the reference draws at random comes from `seed` and the hello index (module docstring).
    """
    if not isinstance(port, int) or not 0 <= port <= 0xFFFF:
        raise ValueError(f"port must be 0-65535, got {port!r}")
    if not isinstance(seed, (bytes, bytearray)):
        raise TypeError("seed must be bytes")
    host = _check_host(target_host)
    return [_hello(bytes(seed), i, host) for i in range(HELLO_COUNT)]


HELLO_BASE_LENGTHS: tuple[int, ...] = tuple(len(_hello(b"", i, b"")) for i in range(HELLO_COUNT))


def hello_length(index: int, host_len: int) -> int:
    """Length in bytes of hello `index` (0-9) for a host of `host_len` ASCII characters, whatever the seed."""
    if not 0 <= index < HELLO_COUNT:
        raise ValueError(f"hello index must be 0-{HELLO_COUNT - 1}, got {index}")
    if not 0 <= host_len <= MAX_HOST_LEN:
        raise ValueError(f"host length must be 0-{MAX_HOST_LEN}, got {host_len}")
    return HELLO_BASE_LENGTHS[index] + host_len


# -- the answers --------------------------------------------------------------------------------------


def answer_is_tls(data: bytes) -> bool:
    """True when `data` starts like a TLS record (handshake or alert, SSL 3.0-TLS 1.3 record version):
    the test for "hello 1 got a TLS answer", under which the other nine hellos are worth sending."""
    return len(data) >= 3 and data[0] in (0x15, 0x16) and data[1] == 0x03 and data[2] <= 0x04


def _extensions_summary(data: bytes, sid_len: int) -> str | None:
    """The reference's "alpn|ext-ext-..." from the ServerHello extensions. ``EMPTY_PART`` where the
    reference gives up on the extensions only (the cipher and version are still kept), None where it gives
    up on the whole answer."""
    n = len(data)
    ext_len_at = sid_len + 47
    if ext_len_at >= n:
        return EMPTY_PART  # nothing after the compression method
    if data[ext_len_at] == 11:
        # The reference takes a Certificate message here as "no extensions" (a TLS <= 1.2 ServerHello
        # without extensions followed by the Certificate in the same record).
        return EMPTY_PART
    if data[sid_len + 50 : sid_len + 53] == b"\x0e\xac\x0b" or data[82:85] == b"\x0f\xf0\x0b":
        return EMPTY_PART  # two server-specific patterns the reference maps to "no extensions"
    # A length cut short by the end of the data counts as the one byte present, as the reference reads it.
    ext_len = int.from_bytes(data[ext_len_at : ext_len_at + 2], "big")
    pos = sid_len + 49
    # The reference stops one byte early, so a last extension starting at the final byte is not read.
    end = pos + ext_len - 1
    types: list[bytes] = []
    alpn: str | None = None
    while pos < end:
        length_bytes = data[pos + 2 : pos + 4]
        if not length_bytes:
            return None  # the data ends inside this extension's header
        ext_type = data[pos : pos + 2]
        length = int.from_bytes(length_bytes, "big")
        types.append(ext_type)
        if ext_type == b"\x00\x10" and alpn is None:
            if length == 0:
                return None  # an empty ALPN extension breaks the reference's decoding
            try:
                # The selected protocol, past the list length (2) and the name length (1); it must be UTF-8.
                alpn = data[pos + 4 : pos + 4 + length][3:].decode("utf-8")
            except UnicodeDecodeError:
                return None
        pos += 4 + length
    return (alpn or "") + "|" + "-".join(t.hex() for t in types)


def parse_server_hello(data: bytes) -> str:
    """The reference's summary of one answer: ``cipher|version|alpn|extensions`` (hex cipher, hex legacy
    version, selected ALPN, extension types in order joined by ``-``), or ``|||`` when it is not a
    ServerHello (empty, an alert, anything else). Never raises."""
    try:
        buf = bytes(data)
    except Exception:
        return EMPTY_PART
    # A handshake record whose first message is a ServerHello; the session-id length must be present.
    if len(buf) < 44 or buf[0] != 0x16 or buf[5] != 0x02:
        return EMPTY_PART
    sid_len = buf[43]
    cipher = buf[sid_len + 44 : sid_len + 46].hex()  # may be short or empty on a truncated answer, as there
    version = buf[9:11].hex()
    extensions = _extensions_summary(buf, sid_len)
    if extensions is None:
        return EMPTY_PART
    return f"{cipher}|{version}|{extensions}"


# -- the fingerprint ------------------------------------------------------------------------------------


def _cipher_code(cipher: str) -> str:
    if cipher == "":
        return "00"
    return f"{_CIPHER_RANK.get(cipher, _UNKNOWN_CIPHER_RANK):02x}"


def _version_code(version: str) -> str:
    # Legacy versions 0300..0305 score a..f by their last digit. Anything else cannot come from a
    # ServerHello (the reference would raise on it); it scores like a missing version.
    if version == "":
        return "0"
    digit = version[3:4]
    if digit and digit in "012345":
        return "abcdef"[int(digit)]
    return "0"


def fingerprint(parts: list[str]) -> str:
    """The 62-character JARM of the ten per-hello summaries: per hello, the cipher's rank (2 hex digits)
    and a version letter, then the first 32 hex digits of SHA-256 over every hello's ALPN and extension
    list. All zeros when no hello got a ServerHello (every part ``|||``).

    Each part is taken whole, split on ``|``; a missing field counts as empty. (The reference joins the
    parts with ``,`` and splits them again, which only matters for an ALPN containing ``,`` — a value no
    compliant server can select from our lists.)
    """
    if len(parts) != HELLO_COUNT:
        raise ValueError(f"a JARM needs {HELLO_COUNT} parts, got {len(parts)}")
    parts = [p if isinstance(p, str) else EMPTY_PART for p in parts]
    if all(p == EMPTY_PART for p in parts):
        return ZERO_FINGERPRINT
    head = []
    tail = []
    for part in parts:
        cipher, version, alpn, exts = ([*part.split("|"), "", "", ""])[:4]
        head.append(_cipher_code(cipher) + _version_code(version))
        tail.append(alpn + exts)
    return "".join(head) + hashlib.sha256("".join(tail).encode("utf-8", "surrogatepass")).hexdigest()[:32]


# -- the probe ------------------------------------------------------------------------------------------


def hello(index: int, target_host: str, seed: bytes) -> bytes:
    """Hello `index` alone (what step `index` of the probe sends), as hellos() builds it."""
    if not 0 <= index < HELLO_COUNT:
        raise ValueError(f"hello index must be 0-{HELLO_COUNT - 1}, got {index}")
    return _hello(bytes(seed), index, _check_host(target_host))


_TIMED_OUT = "timeout"  # a step's part when its answer never came (the reference gives up on the target)


@register
class JarmProbe(Probe):
    """JARM (salesforce/jarm): ten ClientHellos, one connection each, one fingerprint per target."""

    name: ClassVar[str] = "jarm"
    default_port: ClassVar[int] = 443
    kind: ClassVar[ProbeKind] = ProbeKind.BANNER
    fields: ClassVar[tuple[str, ...]] = ("fingerprint", "parts")
    description: ClassVar[str] = (
        "JARM TLS server fingerprint: 10 ClientHellos (connections), the 62-character JARM and its parts"
    )
    steps: ClassVar[int] = HELLO_COUNT
    step_timeout: ClassVar[float] = 5.0
    args_help: ClassVar[dict[str, str]] = {
        "seed": "hex bytes the hellos' random fields derive from (default: random per scan)",
        "timeout": "seconds a hello may wait for its answer (default 5)",
    }

    def _configure(self, args: dict[str, str]) -> None:
        try:
            self.seed = bytes.fromhex(args["seed"]) if "seed" in args else os.urandom(16)
        except ValueError:
            raise ProbeArgError(f"probe 'jarm': seed must be hex bytes, got {args['seed']!r}") from None
        self._step_timeout_arg(args)

    def _payload_varies(self) -> bool:
        return True  # the SNI is the target's address

    def payload(self, ip: str, port: int) -> bytes:
        return self.step_payload(0, ip, port)

    def step_payload(self, step: int, ip: str, port: int) -> bytes:
        return hello(step, ip, self.seed)

    def step_part(self, step: int, outcome: StepOutcome, data: bytes) -> Any:
        if outcome is StepOutcome.TIMEOUT:
            return _TIMED_OUT
        return parse_server_hello(data) if outcome is StepOutcome.DATA else EMPTY_PART

    def next_step(self, step: int, outcome: StepOutcome, data: bytes, parts: list[Any]) -> int | None:
        if outcome is StepOutcome.TIMEOUT:
            return None  # as the reference: no answer within the wait ends the target
        if step == 0 and not (outcome is StepOutcome.DATA and answer_is_tls(data)):
            return None  # not TLS: the other nine are not worth sending (an alert is TLS)
        return step + 1 if step + 1 < HELLO_COUNT else None

    def combine(
        self, ip: str, port: int, parts: list[Any], complete: bool, tarpit: bool = False
    ) -> dict[str, Any]:
        if not complete:
            return {"fingerprint": None, "parts": list(parts)}
        if _TIMED_OUT in parts or len(parts) < HELLO_COUNT:
            # Not TLS (hello 1 got no TLS record), or the reference's timeout rule: all zeros.
            return {"fingerprint": ZERO_FINGERPRINT, "parts": [EMPTY_PART] * HELLO_COUNT}
        return {"fingerprint": fingerprint(parts), "parts": list(parts)}

    def _matches(self, parsed: dict[str, Any]) -> bool:
        fp = parsed.get("fingerprint")
        return isinstance(fp, str) and fp != ZERO_FINGERPRINT
