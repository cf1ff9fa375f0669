"""LZR-style service identification: what really answers on a port, from first responses.

Pure protocol code, no sockets. After LZR ("LZR: Identifying Unexpected Internet Services", Izhikevich,
Teixeira, Durumeric, USENIX Security 2021): open a connection, send one handshake, look at the first data
the server returns and check it against the fingerprints of **every** protocol, not only the one whose
handshake was sent (a port may run anything, and a server answering the "wrong" handshake often still
gives itself away). If nothing matches, try the next handshake on a new connection.

``identify(data, sent)`` lists every protocol whose fingerprint matches ``data`` (the first response to
handshake ``sent``); ``best(matches)`` settles several matches by ``PRECEDENCE``; both never raise.
Fingerprints are anchored on structure (magic bytes, length fields, status lines), not on a word found
anywhere, so a web page that mentions "ssh" is still http. A few weak ones (a bare one-byte answer, a
plain ``ERROR``) only count after the handshake that elicits them: that is what ``sent`` is for.

Server-first protocols (ssh, ftp, smtp, pop3, imap, telnet, mysql, vnc) send their banner as soon as the
connection is up, before reading anything, so whatever handshake was sent, the first data segment is the
banner and they are identified on the first connection.

**The handshake order** (``HANDSHAKES``; each payload is fixed bytes, the same for every target, so its
length is a constant for the XDP side):

1. ``http`` — ``GET / HTTP/1.0``. Identifies http, every server-first protocol (its banner comes first
   anyway), TLS servers that answer plaintext with an alert or an "HTTP request to an HTTPS port" page,
   redis (its RESP error for the inline ``GET``), CUPS (IPP, by its Server header).
   HTTP is by far the most common service on unexpected ports (LZR: only 3 % of HTTP runs on port 80).
2. ``tls`` — a TLS 1.3/1.2 ClientHello (the ``tls`` probe's, fixed): tls, the second most common (LZR:
   only 6 % of TLS runs on 443); memcached, which closes on an HTTP request, answers each line of it with
   ``ERROR``. Together these two connections cover HTTP, TLS and all server-first services, the bulk of
   what LZR found; the next ones are the client-first binary/text protocols that ignore an HTTP request,
   most deployed first (PostgreSQL already answers the SMB negotiate with an ErrorResponse):
3. ``rdp`` (X.224 connection request), 4. ``smb`` (negotiate, SMB1 + SMB2 dialects), 5. ``dns``
   (a query over TCP), 6. ``rtsp`` (``OPTIONS``; cameras), 7. ``sip`` (``OPTIONS`` over TCP),
8. ``postgres`` (SSLRequest), 9. ``mqtt`` (CONNECT 3.1.1), 10. ``ldap`` (anonymous bind),
11. ``mongodb`` (``isMaster`` OP_QUERY), 12. ``ipp`` (Get-Printer-Attributes over HTTP POST),
13. ``amqp`` (0-9-1 protocol header), 14. ``x11`` (connection setup), 15. ``modbus`` (read device
   identification),
16. ``redis`` (PING) and 17. ``memcached`` (``version``): normally already identified by steps 1-2, kept
   for servers that stay silent on those,
18. ``wait`` — send nothing: last resort for a server-first service that closes on unexpected client data
   before its banner, or a multiplexer (sslh) that routes a silent client to its default service.

So a scan stops after 1 connection for HTTP and server-first services, 2 for TLS, and at most 7 for the
next most deployed client-first ones (LZR reports 99 % of identifiable services within 5 handshakes).

**What a step's reply must contain, for the scanner.** The first data the server sends on that connection
(the first TCP data segment, up to the scanner's 1,024 bytes: the fixtures were captured as one 1,024-byte
read, and every fingerprint decides on the status line, header or first message found there). No data
(FIN or RST, or a timeout) means no match: go to the next handshake. Stop at the first step whose
``identify`` is not empty; when every handshake is used up, the result is ``unknown`` (keep the last
data). A banner may take seconds (exim in the lab greeted up to ~5 s after the connection, while its
reverse-DNS lookup ran into the lab's missing resolver), so a step's wait must be generous before it
counts as "no data".
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from .base import Probe, ProbeArgError, ProbeKind, StepOutcome
from .registry import register
from .tls import TlsProbe

__all__ = [
    "HANDSHAKES",
    "HANDSHAKE_NAMES",
    "PRECEDENCE",
    "PROTOCOLS",
    "Handshake",
    "LzrProbe",
    "best",
    "handshake",
    "identify",
]

# Fingerprints only look at the start of a response; bounding the input bounds the work.
MAX_INSPECT = 4096


@dataclass(frozen=True)
class Handshake:
    """One LZR step: what to send after the TCP handshake (empty: send nothing, wait for a banner)."""

    name: str
    payload: bytes
    identifies: tuple[str, ...]  # what this handshake is there for (others may match its answer too)


# -- the payloads -------------------------------------------------------------------------------------------

# Payloads by handshake name, each next to the reasoning behind its bytes.
_PAYLOADS: dict[str, bytes] = {"wait": b""}

_PAYLOADS["http"] = b"GET / HTTP/1.0\r\n\r\n"
_PAYLOADS["tls"] = TlsProbe({"fixed": "1"}).payload("", 0)

# RDP: TPKT + X.224 Connection Request + RDP Negotiation Request (TLS | CredSSP).
_PAYLOADS["rdp"] = bytes.fromhex("030000130ee000000000000100080003000000")


def _smb_negotiate() -> bytes:
    # SMB1 NEGOTIATE offering NT LM 0.12 and the SMB2 dialects: an SMB1-only server answers in SMB1, a
    # modern one (SMB1 disabled) picks "SMB 2.???" and answers with an SMB2 NEGOTIATE response.
    dialects = b"".join(b"\x02" + d + b"\x00" for d in (b"NT LM 0.12", b"SMB 2.002", b"SMB 2.???"))
    header = (
        b"\xffSMB"
        + b"\x72"  # SMB_COM_NEGOTIATE
        + b"\x00\x00\x00\x00"  # status
        + b"\x18"  # flags: canonical paths, case-insensitive
        + struct.pack("<H", 0xC843)  # flags2: unicode, NT status, ext. security, long names
        + b"\x00" * 12  # pid high, security features, reserved
        + b"\xff\xff"  # tid
        + struct.pack("<H", 0xFEFF)  # pid
        + b"\x00\x00\x00\x00"  # uid, mid
    )
    msg = header + b"\x00" + struct.pack("<H", len(dialects)) + dialects  # word count 0, byte count
    return struct.pack(">I", len(msg)) + msg  # NetBIOS session message, 24-bit length


_PAYLOADS["smb"] = _smb_negotiate()


DNS_ID = 0x7A62  # "zb": the answer must echo it


def _dns_query() -> bytes:
    # Root NS, recursion desired: every DNS server has an answer (data, referral or an error rcode).
    msg = struct.pack(">HHHHHH", DNS_ID, 0x0100, 1, 0, 0, 0) + b"\x00" + struct.pack(">HH", 2, 1)
    return struct.pack(">H", len(msg)) + msg


_PAYLOADS["dns"] = _dns_query()


_PAYLOADS["rtsp"] = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n"

_PAYLOADS["sip"] = (
    b"OPTIONS sip:nm SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP nm;branch=z9hG4bK-zbanner-lzr\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:nm@nm>;tag=7a62\r\n"
    b"To: <sip:nm2@nm2>\r\n"
    b"Call-ID: zbanner-lzr@nm\r\n"
    b"CSeq: 42 OPTIONS\r\n"
    b"Accept: application/sdp\r\n"
    b"Content-Length: 0\r\n\r\n"
)

_PAYLOADS["postgres"] = struct.pack(">II", 8, 80877103)

_PAYLOADS["mqtt"] = bytes.fromhex("100f00044d5154540402003c00037a6273")  # MQTT 3.1.1, clean session, id "zbs"

# LDAPv3 anonymous simple bind, message id 1.
_PAYLOADS["ldap"] = bytes.fromhex("300c020101600702010304008000")

MONGO_REQUEST_ID = 0x7A62


def _mongo_is_master() -> bytes:
    doc_body = b"\x10isMaster\x00" + struct.pack("<i", 1)
    doc = struct.pack("<i", 4 + len(doc_body) + 1) + doc_body + b"\x00"
    # OP_QUERY (2004) on admin.$cmd, numberToReturn -1: the handshake query every MongoDB still accepts.
    body = struct.pack("<i", 0) + b"admin.$cmd\x00" + struct.pack("<ii", 0, -1) + doc
    return struct.pack("<iiii", 16 + len(body), MONGO_REQUEST_ID, 0, 2004) + body


_PAYLOADS["mongodb"] = _mongo_is_master()


def _ipp_request() -> bytes:
    def attr(tag: int, name: bytes, value: bytes) -> bytes:
        return bytes([tag]) + struct.pack(">H", len(name)) + name + struct.pack(">H", len(value)) + value

    body = (
        b"\x01\x01"  # IPP 1.1
        + b"\x00\x0b"  # Get-Printer-Attributes
        + struct.pack(">I", 1)  # request id
        + b"\x01"  # operation attributes
        + attr(0x47, b"attributes-charset", b"utf-8")
        + attr(0x48, b"attributes-natural-language", b"en")
        + attr(0x45, b"printer-uri", b"ipp://localhost/ipp/print")
        + b"\x03"  # end of attributes
    )
    head = b"POST /ipp/print HTTP/1.0\r\nContent-Type: application/ipp\r\nContent-Length: %d\r\n\r\n" % len(
        body
    )
    return head + body


_PAYLOADS["ipp"] = _ipp_request()


_PAYLOADS["amqp"] = b"AMQP\x00\x00\x09\x01"

# X11 connection setup, little-endian, protocol 11.0, no authorisation.
_PAYLOADS["x11"] = bytes.fromhex("6c000b000000000000000000")

MODBUS_TRANSACTION = 0x7A62
# Modbus/TCP: MBAP header (transaction, protocol 0, length 5, unit 0) + Read Device Identification
# (function 0x2B, MEI 0x0E, basic, object 0).
_PAYLOADS["modbus"] = struct.pack(">HHHB", MODBUS_TRANSACTION, 0, 5, 0) + bytes.fromhex("2b0e0100")

_PAYLOADS["redis"] = b"*1\r\n$4\r\nPING\r\n"
_PAYLOADS["memcached"] = b"version\r\n"

# The order (module docstring): one connection each, until an answer is identified.
_ORDER = (
    "http", "tls",
    "rdp", "smb", "dns", "rtsp", "sip",
    "postgres", "mqtt", "ldap", "mongodb", "ipp", "amqp", "x11", "modbus",
    "redis", "memcached",
    "wait",
)  # fmt: skip
# What each handshake is there for, when that is not its own name.
_PURPOSE = {"wait": ("ssh", "ftp", "smtp", "pop3", "imap", "telnet", "mysql", "vnc")}
HANDSHAKES: tuple[Handshake, ...] = tuple(Handshake(n, _PAYLOADS[n], _PURPOSE.get(n, (n,))) for n in _ORDER)
HANDSHAKE_NAMES: tuple[str, ...] = tuple(h.name for h in HANDSHAKES)
_BY_NAME = {h.name: h for h in HANDSHAKES}


def handshake(name: str) -> Handshake:
    """The handshake called `name` (KeyError if there is none)."""
    return _BY_NAME[name]


# -- the fingerprints ---------------------------------------------------------------------------------------

_HTTP_STATUS = re.compile(rb"HTTP/[0-9](?:\.[0-9])? [0-9]{3}(?:[ \r\n]|$)")
_HTML_START = re.compile(rb"\s{0,16}<(?:!doctype html|html|head|body|h1)[\s>]", re.IGNORECASE)
_HTTPS_PORT_ERROR = re.compile(
    rb"plain HTTP request was sent to HTTPS port|speaking plain HTTP to an SSL-enabled server port"
    rb"|Client sent an HTTP request to an HTTPS server",
    re.IGNORECASE,
)
_SSH_LINE = re.compile(rb"SSH-[0-9]+\.[0-9]+-[\x21-\x7e]")
_REPLY_CODE = re.compile(rb"([1-5][0-9]{2})[ -]")
_SMTP_HINT = re.compile(rb"e?smtp|\bmail\b|postfix|exim|sendmail|qmail|mailer|postmaster", re.IGNORECASE)
_FTP_HINT = re.compile(rb"ftp", re.IGNORECASE)
_IMAP_GREETING = re.compile(rb"\* (?:OK|PREAUTH|BYE)(?:[ \[\r\n]|$)", re.IGNORECASE)
_POP3_GREETING = re.compile(rb"\+OK(?:[ \r\n]|$)")
_VNC = re.compile(rb"RFB [0-9]{3}\.[0-9]{3}\n")
_RTSP_STATUS = re.compile(rb"RTSP/[0-9]\.[0-9] [0-9]{3}")
_SIP_STATUS = re.compile(rb"SIP/2\.0 [0-9]{3}")
_REDIS_ERROR = re.compile(
    rb"-(?:ERR (?:wrong number of arguments for|unknown command)|NOAUTH |WRONGPASS |DENIED Redis|"
    rb"ERR Protocol error|MISCONF )"
)
_MEMCACHED = re.compile(rb"VERSION [0-9]+\.[0-9]+|STAT pid [0-9]|(?:CLIENT|SERVER)_ERROR ")
_MEMCACHED_ERRORS = re.compile(rb"(?:ERROR\r\n)+")
_IPP_SERVER = re.compile(rb"\r\nServer:[^\r\n]*\bIPP/[0-9]", re.IGNORECASE)
_IPP_CONTENT = re.compile(rb"\r\nContent-Type:\s*application/ipp", re.IGNORECASE)

_HTTP_LIKE = ("http", "ipp", "rtsp", "sip")  # handshakes that send an HTTP-style text request


def _http(data: bytes, sent: str) -> bool:
    if _HTTP_STATUS.match(data):
        return True
    # A bare HTML document (HTTP/0.9-style servers and some embedded devices), after a text request.
    return sent in _HTTP_LIKE and _HTML_START.match(data) is not None


def _tls(data: bytes, sent: str) -> bool:
    if len(data) >= 5 and data[0] in (0x15, 0x16) and data[1] == 3 and data[2] <= 4:
        length = int.from_bytes(data[3:5], "big")
        if 0 < length <= 16384 + 2048:
            # An alert is 2 bytes (encrypted ones are longer); a handshake record starts with a message
            # header whose type is a known handshake type.
            return data[0] == 0x15 or len(data) < 6 or data[5] in (0, 1, 2, 4, 8, 11, 12, 13, 14, 15, 16, 20)
    # A TLS server's HTTP error page on a plaintext request (nginx, Apache).
    return _HTTP_STATUS.match(data) is not None and _HTTPS_PORT_ERROR.search(data) is not None


def _ssh(data: bytes, sent: str) -> bool:
    # RFC 4253: the version line may follow other lines; look at the first few (not in an HTTP answer,
    # whose body could carry anything).
    if _HTTP_STATUS.match(data):
        return False
    return any(_SSH_LINE.match(line) for line in data.split(b"\n", 8)[:8])


def _reply(data: bytes) -> tuple[int | None, bytes]:
    m = _REPLY_CODE.match(data)
    return (int(m.group(1)), data[:512]) if m else (None, b"")


def _ftp(data: bytes, sent: str) -> bool:
    code, head = _reply(data)
    if code is None:
        return False
    if _FTP_HINT.search(head):
        return code in (120, 220, 421, 530)
    # A 220 greeting that says neither FTP nor SMTP: as LZR, FTP unless it looks like mail.
    return code == 220 and not _SMTP_HINT.search(head)


def _smtp(data: bytes, sent: str) -> bool:
    code, head = _reply(data)
    return code in (220, 421, 554) and _SMTP_HINT.search(head) is not None and not _FTP_HINT.search(head)


def _pop3(data: bytes, sent: str) -> bool:
    return _POP3_GREETING.match(data) is not None


def _imap(data: bytes, sent: str) -> bool:
    return _IMAP_GREETING.match(data) is not None


def _telnet(data: bytes, sent: str) -> bool:
    # Option negotiation first: IAC (255) then WILL/WONT/DO/DONT + option, or SB.
    return len(data) >= 3 and data[0] == 0xFF and data[1] in (0xFA, 0xFB, 0xFC, 0xFD, 0xFE)


def _mysql(data: bytes, sent: str) -> bool:
    # Packet: 3-byte little-endian length, sequence 0, then a protocol-10 greeting or an error packet.
    if len(data) < 7 or data[3] != 0:
        return False
    length = int.from_bytes(data[:3], "little")
    if length < 3 or length > 1024:
        return False
    if data[4] == 0x0A:
        end = data.find(b"\x00", 5, 5 + 64)
        version = data[5:end] if end > 5 else b""
        return bool(re.fullmatch(rb"[0-9]+\.[0-9]+[\x20-\x7e]*", version))
    if data[4] == 0xFF:
        code = int.from_bytes(data[5:7], "little")
        return 1000 <= code < 3000 or 4000 <= code < 5000
    return False


def _postgres(data: bytes, sent: str) -> bool:
    # The SSLRequest answer is a single byte; only meaningful after our SSLRequest.
    if sent == "postgres" and data in (b"S", b"N"):
        return True
    # ErrorResponse: 'E', int32 length, then fields such as S(everity)FATAL, C(ode)SQLSTATE.
    if len(data) >= 10 and data[0:1] == b"E":
        length = int.from_bytes(data[1:5], "big")
        return 8 <= length <= 4096 and data[5:6] in (b"S", b"V", b"C") and b"\x00C" in data[5 : 5 + length]
    return False


def _mongodb(data: bytes, sent: str) -> bool:
    # Message header (little-endian length, request id, responseTo, opCode): an OP_REPLY or OP_MSG that
    # answers our request id, or carries the isMaster reply's tell-tale field.
    if len(data) < 16:
        return False
    length, _request, response_to, opcode = struct.unpack("<iiii", data[:16])
    if opcode not in (1, 2013) or not 16 < length <= 48 * 1024 * 1024:
        return False
    return response_to == MONGO_REQUEST_ID or b"maxBsonObjectSize" in data


def _memcached(data: bytes, sent: str) -> bool:
    if _MEMCACHED.match(data):
        return True
    # memcached answers every line it does not know with a bare ERROR (one per line we sent).
    return sent != "wait" and _MEMCACHED_ERRORS.fullmatch(data[:512]) is not None


def _redis(data: bytes, sent: str) -> bool:
    if data.startswith(b"+PONG\r\n") or _REDIS_ERROR.match(data):
        return True
    return data.startswith(b"$") and b"redis_version:" in data[:512]


def _mqtt(data: bytes, sent: str) -> bool:
    # CONNACK: type 2, remaining length 2, session-present flag 0/1, return code 0-5 (3.1.1) or a
    # reason code (5.0, longer remaining length with properties).
    if len(data) >= 4 and data[0] == 0x20:
        if data[1] == 2:
            return data[2] in (0, 1) and data[3] <= 5
        return sent == "mqtt" and 3 <= data[1] < 128 and data[2] in (0, 1)
    return False


def _amqp(data: bytes, sent: str) -> bool:
    # A protocol header back (version mismatch, or AMQP 1.0), or a Connection.Start method frame.
    if data.startswith(b"AMQP") and len(data) >= 8:
        return True
    return len(data) >= 11 and data[0] == 1 and data[1:3] == b"\x00\x00" and data[7:11] == b"\x00\x0a\x00\x0a"


def _rdp(data: bytes, sent: str) -> bool:
    # TPKT version 3, then an X.224 Connection Confirm (code 0xD0).
    if len(data) < 11 or data[0] != 3 or data[1] != 0:
        return False
    length = int.from_bytes(data[2:4], "big")
    return 11 <= length <= 1024 and data[4] >= 6 and data[5] & 0xF0 == 0xD0


def _vnc(data: bytes, sent: str) -> bool:
    return _VNC.match(data) is not None


def _smb(data: bytes, sent: str) -> bool:
    # NetBIOS session message (type 0), then an SMB1, SMB2 or SMB3-transform header.
    return len(data) >= 8 and data[0] == 0 and data[4:8] in (b"\xffSMB", b"\xfeSMB", b"\xfdSMB")


def _dns(data: bytes, sent: str) -> bool:
    # TCP DNS: 2-byte length, our id echoed, QR set, standard query, at most one question.
    if len(data) < 14:
        return False
    length, ident, flags, qdcount = struct.unpack(">HHHH", data[:8])
    return (
        length >= 12 and ident == DNS_ID and flags & 0x8000 != 0 and (flags >> 11) & 0xF == 0 and qdcount <= 1
    )


def _sip(data: bytes, sent: str) -> bool:
    return _SIP_STATUS.match(data) is not None


def _rtsp(data: bytes, sent: str) -> bool:
    return _RTSP_STATUS.match(data) is not None


def _ldap_length(data: bytes, pos: int) -> tuple[int, int] | None:
    """BER length at pos -> (length, position after it)."""
    if pos >= len(data):
        return None
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    n = first & 0x7F
    if n == 0 or n > 4 or pos + 1 + n > len(data):
        return None
    return int.from_bytes(data[pos + 1 : pos + 1 + n], "big"), pos + 1 + n


def _ldap(data: bytes, sent: str) -> bool:
    # LDAPMessage: SEQUENCE { messageID INTEGER, protocolOp [APPLICATION n] ... }, with a bind response,
    # search result, or extended response (a "notice of disconnection") and its resultCode ENUMERATED.
    if len(data) < 10 or data[0] != 0x30:
        return False
    seq = _ldap_length(data, 1)
    if seq is None or seq[0] < 7:
        return False
    pos = seq[1]
    if data[pos : pos + 1] != b"\x02":
        return False
    id_len = data[pos + 1] if pos + 1 < len(data) else 0
    if not 1 <= id_len <= 4:
        return False
    pos += 2 + id_len
    if pos >= len(data) or data[pos] not in (0x61, 0x64, 0x65, 0x78):
        return False
    tag = data[pos]
    op = _ldap_length(data, pos + 1)
    if op is None:
        return False
    pos = op[1]
    if tag == 0x64:
        return data[pos : pos + 1] == b"\x04"  # a search entry starts with its DN
    return data[pos : pos + 2] == b"\x0a\x01"  # resultCode


def _x11(data: bytes, sent: str) -> bool:
    # Setup reply: Failed (0, reason length, protocol 11.0) or Success (1, unused, 11.0); Authenticate (2)
    # only after our setup request. Little-endian since we asked with "l"; big-endian servers answer "B".
    if len(data) < 8:
        return False
    major = data[2:4]
    if data[0] in (0, 1) and major in (b"\x0b\x00", b"\x00\x0b") and data[4:6] == b"\x00\x00":
        return True
    return sent == "x11" and data[0] == 2 and data[1:6] == b"\x00" * 5


def _modbus(data: bytes, sent: str) -> bool:
    # MBAP header with our transaction id and protocol 0, then our function (0x2B) or an exception (0x80+).
    if len(data) < 9:
        return False
    transaction, protocol, length = struct.unpack(">HHH", data[:6])
    return (
        transaction == MODBUS_TRANSACTION
        and protocol == 0
        and 3 <= length <= 254
        and (data[7] == 0x2B or data[7] & 0x80 != 0)
    )


def _ipp(data: bytes, sent: str) -> bool:
    # IPP rides on HTTP: an HTTP response with an IPP body or from a server that says IPP (CUPS).
    return _HTTP_STATUS.match(data) is not None and (
        _IPP_CONTENT.search(data) is not None or _IPP_SERVER.search(data) is not None
    )


_FINGERPRINTS: dict[str, Callable[[bytes, str], bool]] = {
    "http": _http,
    "tls": _tls,
    "ssh": _ssh,
    "ftp": _ftp,
    "smtp": _smtp,
    "pop3": _pop3,
    "imap": _imap,
    "telnet": _telnet,
    "redis": _redis,
    "mysql": _mysql,
    "postgres": _postgres,
    "mongodb": _mongodb,
    "memcached": _memcached,
    "mqtt": _mqtt,
    "amqp": _amqp,
    "rdp": _rdp,
    "vnc": _vnc,
    "smb": _smb,
    "dns": _dns,
    "sip": _sip,
    "rtsp": _rtsp,
    "ldap": _ldap,
    "x11": _x11,
    "ipp": _ipp,
    "modbus": _modbus,
}
PROTOCOLS: tuple[str, ...] = tuple(_FINGERPRINTS)

# Several matches: the first protocol of this list wins.
# - Protocols carried in another's syntax before their carrier: ipp (an HTTP response) before http; tls
#   before http (an HTTP error page saying "HTTPS port" comes from a TLS server).
# - Binary fingerprints, which check magic values and length fields (and often our echoed id), before
#   text ones; among them the ones that check more come first.
# - Text status lines and greetings next; smtp before ftp (their reply codes overlap, and a banner naming
#   both is more often a mail server mentioning FTP than the reverse), http last: it is the most generic
#   and what much else speaks.
PRECEDENCE: tuple[str, ...] = (
    "ipp",
    "tls",
    "ssh",
    "dns",
    "modbus",
    "mongodb",
    "smb",
    "rdp",
    "ldap",
    "mysql",
    "postgres",
    "mqtt",
    "amqp",
    "x11",
    "vnc",
    "telnet",
    "redis",
    "memcached",
    "rtsp",
    "sip",
    "imap",
    "pop3",
    "smtp",
    "ftp",
    "http",
)
_RANK = {name: i for i, name in enumerate(PRECEDENCE)}


def identify(data: bytes, sent: str) -> list[str]:
    """Every protocol whose fingerprint matches `data`, the first response to handshake `sent` (a name
    of HANDSHAKES; anything else is taken as an unknown handshake), in PROTOCOLS order. Never raises."""
    try:
        buf = bytes(data[:MAX_INSPECT])
    except Exception:
        return []
    if not buf:
        return []
    how = sent if isinstance(sent, str) else ""
    out = []
    for name, check in _FINGERPRINTS.items():
        try:
            if check(buf, how):
                out.append(name)
        except Exception:
            # A fingerprint bug on some odd answer must cost that fingerprint, not the identification.
            continue
    return out


def best(matches: list[str]) -> str:
    """The one protocol to report for `matches` (PRECEDENCE decides); "unknown" when there is none."""
    try:
        known = [m for m in matches if isinstance(m, str)]
    except TypeError:
        return "unknown"
    if not known:
        return "unknown"
    return min(known, key=lambda m: (_RANK.get(m, len(_RANK)), m))


# -- the probe ------------------------------------------------------------------------------------------


@register
class LzrProbe(Probe):
    """LZR-style identification: HANDSHAKES in order, one connection each, until an answer is identified."""

    name: ClassVar[str] = "lzr"
    default_port: ClassVar[int] = 80
    kind: ClassVar[ProbeKind] = ProbeKind.BANNER
    fields: ClassVar[tuple[str, ...]] = ("fingerprint", "matches", "handshakes", "handshake", "tarpit")
    description: ClassVar[str] = (
        "what really runs on a port (LZR): 25 protocols, handshakes until one identifies it"
    )
    steps: ClassVar[int] = len(HANDSHAKES)
    # Some servers greet late (exim in the lab: up to ~5 s); a silent step costs this much.
    step_timeout: ClassVar[float] = 5.0
    record_data: ClassVar[str] = "last"  # the identifying answer (or the last data seen)
    stop_at_tarpit: ClassVar[bool] = True
    args_help: ClassVar[dict[str, str]] = {
        "handshakes": f"at most this many handshakes (connections) per target, 1-{len(HANDSHAKES)} "
        f"(default {len(HANDSHAKES)})",
        "timeout": "seconds a handshake may wait for its answer (default 5)",
    }

    def _configure(self, args: dict[str, str]) -> None:
        self.max_handshakes = len(HANDSHAKES)
        if "handshakes" in args:
            raw = args["handshakes"]
            if not raw.isdigit() or not 1 <= int(raw) <= len(HANDSHAKES):
                raise ProbeArgError(f"probe 'lzr': handshakes must be 1-{len(HANDSHAKES)}, got {raw!r}")
            self.max_handshakes = int(raw)
        self._step_timeout_arg(args)

    def payload(self, ip: str, port: int) -> bytes:
        return HANDSHAKES[0].payload

    def step_payload(self, step: int, ip: str, port: int) -> bytes:
        return HANDSHAKES[step].payload

    def step_part(self, step: int, outcome: StepOutcome, data: bytes) -> Any:
        sent = HANDSHAKES[step].name
        matches = identify(data, sent) if outcome is StepOutcome.DATA else []
        return {"handshake": sent, "outcome": outcome.value, "matches": matches}

    def next_step(self, step: int, outcome: StepOutcome, data: bytes, parts: list[Any]) -> int | None:
        if parts and parts[-1]["matches"]:
            return None  # identified
        return step + 1 if step + 1 < self.max_handshakes else None

    def combine(
        self, ip: str, port: int, parts: list[Any], complete: bool, tarpit: bool = False
    ) -> dict[str, Any]:
        found = next((p for p in parts if p["matches"]), None)
        matches = found["matches"] if found else []
        return {
            "fingerprint": best(matches),
            "matches": matches,
            "handshakes": len(parts),
            "handshake": found["handshake"] if found else None,
            # A host that SYN-ACKs the --tarpit-check port: not identified further (HyperACKtive).
            "tarpit": tarpit,
        }

    def _matches(self, parsed: dict[str, Any]) -> bool:
        return parsed.get("fingerprint") not in (None, "unknown")
