"""LZR-style identification (probes/lzr.py) on real first responses and, where no server could run here,
responses built from the protocol's specification.

REAL: captured from Debian 12 servers run in the lab's target namespace (nginx 1.22.1 on 80/443, OpenSSH
9.2p1, vsftpd 3.0.3, redis 7.0, dnsmasq 2.90, and, installed for the capture only: PostgreSQL 15,
MariaDB 10.11, memcached 1.6.18, mosquitto 2.0, exim 4.96, dovecot 2.3.19 for POP3 and IMAP). A socket
in the scan namespace connected to 198.18.0.5 (dnsmasq: to the target's own 10.77.1.2 from inside the
target namespace, as it answers TCP only on an interface address), sent handshake `sent`
(lzr.HANDSHAKES) and kept the first recv(1024) — the server's first data. Keys are `server__sent`.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.mutation import mutated
from zbanner_xdp.probes import lzr

FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

REAL: dict[str, str] = {
    "nginx_http__http": (
        "485454502f312e3120323030204f4b0d0a5365727665723a206e67696e782f312e32322e310d0a446174653a20467269"
        "2c2030342044656320323032362032323a35323a313020474d540d0a436f6e74656e742d547970653a20746578742f68"
        "746d6c0d0a436f6e74656e742d4c656e6774683a203230330d0a4c6173742d4d6f6469666965643a204672692c203034"
        "2044656320323032362032323a35313a353120474d540d0a436f6e6e656374696f6e3a20636c6f73650d0a455461673a"
        "202236623133343430372d6362220d0a4163636570742d52616e6765733a2062797465730d0a0d0a3c21444f43545950"
        "452068746d6c3e0a3c68746d6c3e0a3c686561643e3c6d65746120636861727365743d227574662d38223e3c7469746c"
        "653e7a62616e6e65722d786470206c61623c2f7469746c653e3c2f686561643e0a3c626f64793e0a3c68313e7a62616e"
        "6e65722d786470206c61623c2f68313e0a3c703e536572766564206279206e67696e7820696e7369646520746865206c"
        "6162277320746172676574206e6574776f726b206e616d6573706163652e3c2f703e0a3c2f626f64793e0a3c2f68746d"
        "6c3e0a"
    ),
    "nginx_http__tls": (
        "485454502f312e31203430302042616420526571756573740d0a5365727665723a206e67696e782f312e32322e310d0a"
        "446174653a204672692c2030342044656320323032362032323a35323a313020474d540d0a436f6e74656e742d547970"
        "653a20746578742f68746d6c0d0a436f6e74656e742d4c656e6774683a203135370d0a436f6e6e656374696f6e3a2063"
        "6c6f73650d0a0d0a3c68746d6c3e0d0a3c686561643e3c7469746c653e3430302042616420526571756573743c2f7469"
        "746c653e3c2f686561643e0d0a3c626f64793e0d0a3c63656e7465723e3c68313e343030204261642052657175657374"
        "3c2f68313e3c2f63656e7465723e0d0a3c68723e3c63656e7465723e6e67696e782f312e32322e313c2f63656e746572"
        "3e0d0a3c2f626f64793e0d0a3c2f68746d6c3e0d0a"
    ),
    "nginx_http__ipp": (
        "485454502f312e3120343034204e6f7420466f756e640d0a5365727665723a206e67696e782f312e32322e310d0a4461"
        "74653a204672692c2030342044656320323032362032323a35323a313020474d540d0a436f6e74656e742d547970653a"
        "20746578742f68746d6c0d0a436f6e74656e742d4c656e6774683a203135330d0a436f6e6e656374696f6e3a20636c6f"
        "73650d0a0d0a3c68746d6c3e0d0a3c686561643e3c7469746c653e343034204e6f7420466f756e643c2f7469746c653e"
        "3c2f686561643e0d0a3c626f64793e0d0a3c63656e7465723e3c68313e343034204e6f7420466f756e643c2f68313e3c"
        "2f63656e7465723e0d0a3c68723e3c63656e7465723e6e67696e782f312e32322e313c2f63656e7465723e0d0a3c2f62"
        "6f64793e0d0a3c2f68746d6c3e0d0a"
    ),
    "nginx_https__http": (
        "485454502f312e31203430302042616420526571756573740d0a5365727665723a206e67696e782f312e32322e310d0a"
        "446174653a204672692c2030342044656320323032362032323a35323a313320474d540d0a436f6e74656e742d547970"
        "653a20746578742f68746d6c0d0a436f6e74656e742d4c656e6774683a203235350d0a436f6e6e656374696f6e3a2063"
        "6c6f73650d0a0d0a3c68746d6c3e0d0a3c686561643e3c7469746c653e3430302054686520706c61696e204854545020"
        "72657175657374207761732073656e7420746f20485454505320706f72743c2f7469746c653e3c2f686561643e0d0a3c"
        "626f64793e0d0a3c63656e7465723e3c68313e3430302042616420526571756573743c2f68313e3c2f63656e7465723e"
        "0d0a3c63656e7465723e54686520706c61696e20485454502072657175657374207761732073656e7420746f20485454"
        "505320706f72743c2f63656e7465723e0d0a3c68723e3c63656e7465723e6e67696e782f312e32322e313c2f63656e74"
        "65723e0d0a3c2f626f64793e0d0a3c2f68746d6c3e0d0a"
    ),
    "nginx_https__tls": (
        "160303007a0200007603035480d3f63ad9763b293c8b6f1b812c3e0ff777111d505e95dd51d232ef3de8bf20e94c3c68"
        "0ec9500476f370a8b91fa459e14ab677717e288c919b36b4e685cce1130100002e002b0002030400330024001d0020f4"
        "8bba583d907f6590ec9bd367992ea45b35143cf7a3ece33df8d6b3fc77c92a1403030001011703030026fa86e1cf1a4b"
        "b3ff87c3375155460077f9eef0122da12c4d843f92d600828720305080e2bc04170303032f4e60ccdbf8fb0ec1f7634b"
        "870018da0bae570e3663628cdf9468810d2b30cce2de4a36aaf1c7a4248a342f0970c3d3e680a15c95d66709159fae7b"
        "8d6a5d3d9b4d7d62c2a46a547ce18d9d30172eb8b979d1a8429838e9df9354164f6b8d202cdce55e8d08a2d178b58128"
        "890f09c8456753582515105131e1df334321e07d6ef1c97d00cec10fed0a4f364e50fe3d11c1bf58c796d7229cff34cd"
        "60f1d82f19376a47e59c3beb54c465a111b8d17431881671f699864cb3a79695a98183edb8fd94685fca89ea3d7ce2f5"
        "0923831cf02432ffa804d6f3449db5d22f74b8a14a6c0ca820b207249bc1ad00a40cad0c9a2ca2d6d82b82e072879861"
        "6efe95b517241bc69499a4c8cb3483972ceb0c8d14c8fdda801ee0f757cf617ce1048c9ef7848e67cca73173d0d9b9cf"
        "4d6c6fb84ae00660b75f4d29ee14648f017f877512f9e1cd98b02e17503a3229a3c0aca85b4b3b9c4c8d8342568e3a4f"
        "82a97c8bd8eef826d16f96b50de0be9f8d758c86dc0e04d940d418d75123c0dffbede133bf08bb5032fea9d21edf1572"
        "2bf2b6bbc823acdb51dcf0d4be72ffcc177ab057706100769375794676473e83ece776efb0c7210a8aed35199dc6c9e4"
        "5a19fc976ec7e0839090db6c48645f606df7636646174028afe26726a7e166fef0604322d4da904130a55d52f7c5e699"
        "98935f37f734bd6533dc45d2d9df1bf18799862abbbaaea5d219cb01c0d02ecd2f3e8e1b0e23b29fe74b258de4afd5bf"
        "b04c07560bc821bd136a4a8f36711b5582397b9841ef9e095a3fd02d4964605f334fba8e8139500249bcf221756c30bd"
        "711b7bde585f5ff9425be42249fd8d1d076549bf740370a3993cb28d793f28440fdc11c5dfdf3eb5500b71ddec2a0c5d"
        "75e9621286d621bec9b5112aa09b73894556ba2bc0063a11a6573b205fab47e8b533007015700ab583d0f59ba684fa66"
        "c1e2f90e441643ffe0f767777b01ff4e64d1e7727006875f2ecc6149bcd575914364755ab19617941e1f33e51243a4cd"
        "fa1680e46bc71c77f53eb1a656e8998d89d9981012dce9ee3f8d243c2890c19c2ea668ab584155ab61d475e8a1d6d797"
        "a80d7c914191c22a1f43e2ebed77e596a5d22f7dd6c7b058d65b6c9105959bf5eba6e0e5170303011950e134281d1b3b"
        "fa47b692b1e9e880e08ccf74e5956525"
    ),
    "nginx_https__rdp": (
        "485454502f312e31203430302042616420526571756573740d0a5365727665723a206e67696e782f312e32322e310d0a"
        "446174653a204672692c2030342044656320323032362032323a35323a313320474d540d0a436f6e74656e742d547970"
        "653a20746578742f68746d6c0d0a436f6e74656e742d4c656e6774683a203135370d0a436f6e6e656374696f6e3a2063"
        "6c6f73650d0a0d0a3c68746d6c3e0d0a3c686561643e3c7469746c653e3430302042616420526571756573743c2f7469"
        "746c653e3c2f686561643e0d0a3c626f64793e0d0a3c63656e7465723e3c68313e343030204261642052657175657374"
        "3c2f68313e3c2f63656e7465723e0d0a3c68723e3c63656e7465723e6e67696e782f312e32322e313c2f63656e746572"
        "3e0d0a3c2f626f64793e0d0a3c2f68746d6c3e0d0a"
    ),
    "openssh__http": (
        "5353482d322e302d4f70656e5353485f392e3270312044656269616e2d322b64656231327531300d0a496e76616c6964"
        "20535348206964656e74696669636174696f6e20737472696e672e0d0a"
    ),
    "openssh__wait": ("5353482d322e302d4f70656e5353485f392e3270312044656269616e2d322b64656231327531300d0a"),
    "vsftpd__http": ("323230202876734654506420332e302e33290d0a"),
    "redis__http": (
        "2d4552522077726f6e67206e756d626572206f6620617267756d656e747320666f7220276765742720636f6d6d616e640d0a"
    ),
    "redis__rtsp": (
        "2d45525220756e6b6e6f776e20636f6d6d616e6420274f5054494f4e53272c2077697468206172677320626567696e6e"
        "696e6720776974683a20272a272027525453502f312e3027200d0a2d45525220756e6b6e6f776e20636f6d6d616e6420"
        "27435365713a272c2077697468206172677320626567696e6e696e6720776974683a20273127200d0a"
    ),
    "redis__redis": ("2b504f4e470d0a"),
    "redis__memcached": (
        "2d45525220756e6b6e6f776e20636f6d6d616e64202776657273696f6e272c2077697468206172677320626567696e6e"
        "696e6720776974683a200d0a"
    ),
    "dnsmasq__dns": ("00117a62818500010000000000000000020001"),
    "postgresql__postgres": ("4e"),
    "postgresql__smb": (
        "450000008b53464154414c0056464154414c00433041303030004d756e737570706f727465642066726f6e74656e6420"
        "70726f746f636f6c2036353336332e31393737383a2073657276657220737570706f72747320332e3020746f20332e30"
        "0046706f73746d61737465722e63004c32323232005250726f63657373537461727475705061636b65740000"
    ),
    "mariadb_denied__http": (
        "44000000ff6a04486f7374202731302e37372e302e3127206973206e6f7420616c6c6f77656420746f20636f6e6e6563"
        "7420746f2074686973204d61726961444220736572766572"
    ),
    "mariadb__http": (
        "640000000a352e352e352d31302e31312e31392d4d6172696144422d302b6465623132753100030000006f543651726a"
        "3d3300fef7080200ff81150000000000001d0000002664497c567a243f5057432b006d7973716c5f6e61746976655f70"
        "617373776f726400"
    ),
    "memcached__tls": ("4552524f520d0a4552524f520d0a4552524f520d0a"),
    "memcached__rtsp": ("4552524f520d0a4552524f520d0a4552524f520d0a"),
    "memcached__memcached": ("56455253494f4e20312e362e31380d0a"),
    "mosquitto__mqtt": ("20020000"),
    "exim__http": (
        "32323020766d2045534d5450204578696d20342e3936204672692c2030342044656320323032362032323a35353a3136"
        "202b303030300d0a35303020756e7265636f676e697a656420636f6d6d616e640d0a35303020756e7265636f676e697a"
        "656420636f6d6d616e640d0a"
    ),
    "exim__wait": (
        "32323020766d2045534d5450204578696d20342e3936204672692c2030342044656320323032362032323a35353a3436"
        "202b303030300d0a"
    ),
    "dovecot_pop3__http": ("2b4f4b20446f7665636f74202844656269616e292072656164792e0d0a"),
    "dovecot_pop3__memcached": (
        "2b4f4b20446f7665636f74202844656269616e292072656164792e0d0a2d45525220556e6b6e6f776e20636f6d6d616e"
        "642e0d0a"
    ),
    "dovecot_imap__http": (
        "2a204f4b205b4341504142494c49545920494d41503472657631205341534c2d4952204c4f47494e2d52454645525241"
        "4c5320494420454e41424c452049444c45204c49544552414c2b20415554483d504c41494e5d20446f7665636f742028"
        "44656269616e292072656164792e0d0a"
    ),
    "dovecot_imap__tls": (
        "2a204f4b2057616974696e6720666f722061757468656e7469636174696f6e2070726f6365737320746f20726573706f"
        "6e642e2e0d0a"
    ),
}

# fixture -> the exact list identify() must return
REAL_EXPECTED: dict[str, list[str]] = {
    "nginx_http__http": ["http"],
    "nginx_http__tls": ["http"],  # a 400 to the ClientHello
    "nginx_http__ipp": ["http"],  # a 404 to the IPP POST: not a printer
    "nginx_https__http": ["http", "tls"],  # "The plain HTTP request was sent to HTTPS port"
    "nginx_https__tls": ["tls"],
    "nginx_https__rdp": ["http"],  # nginx answers garbage on its TLS port with a plain 400
    "openssh__http": ["ssh"],
    "openssh__wait": ["ssh"],
    "vsftpd__http": ["ftp"],
    "redis__http": ["redis"],  # -ERR wrong number of arguments for 'get' command
    "redis__rtsp": ["redis"],  # -ERR unknown command 'OPTIONS'
    "redis__redis": ["redis"],
    "redis__memcached": ["redis"],
    "dnsmasq__dns": ["dns"],  # REFUSED, our id echoed
    "postgresql__postgres": ["postgres"],  # "N": no SSL
    "postgresql__smb": ["postgres"],  # ErrorResponse: unsupported frontend protocol
    "mariadb_denied__http": ["mysql"],  # error 1130, host not allowed
    "mariadb__http": ["mysql"],  # protocol-10 greeting
    "memcached__tls": ["memcached"],  # ERROR per line of the ClientHello
    "memcached__rtsp": ["memcached"],
    "memcached__memcached": ["memcached"],
    "mosquitto__mqtt": ["mqtt"],
    "exim__http": ["smtp"],
    "exim__wait": ["smtp"],
    "dovecot_pop3__http": ["pop3"],
    "dovecot_pop3__memcached": ["pop3"],
    "dovecot_imap__http": ["imap"],
    "dovecot_imap__tls": ["imap"],
}

# What the real servers answered to each handshake, in HANDSHAKES order, up to the first identified
# answer: every earlier handshake got no data (silence, FIN or RST) in the capture. This is the walk the
# scanner does; its length is the number of connections the service costs.
REAL_WALKS: dict[str, tuple[str, str]] = {
    # server: (identifying handshake, fixture)
    "nginx_http": ("http", "nginx_http__http"),
    "nginx_https": ("http", "nginx_https__http"),
    "openssh": ("http", "openssh__http"),
    "vsftpd": ("http", "vsftpd__http"),
    "redis": ("http", "redis__http"),
    "mariadb": ("http", "mariadb__http"),
    "exim": ("http", "exim__http"),
    "dovecot_pop3": ("http", "dovecot_pop3__http"),
    "dovecot_imap": ("http", "dovecot_imap__http"),
    "memcached": ("tls", "memcached__tls"),  # closes on an HTTP request
    "postgresql": ("smb", "postgresql__smb"),  # silent to http/tls/rdp
    "dnsmasq": ("dns", "dnsmasq__dns"),
    "mosquitto": ("mqtt", "mosquitto__mqtt"),  # resets anything but MQTT
}


# -- responses built from the specifications --------------------------------------------------------------


def _tpkt_x224_cc(neg: bytes) -> bytes:
    # [MS-RDPBCGR] 2.2.1.2: TPKT (RFC 1006) + X.224 Connection Confirm (ISO 8073: LI, 0xD0, dst-ref,
    # src-ref, class 0) + RDP_NEG_RSP / RDP_NEG_FAILURE.
    x224 = bytes([6 + len(neg), 0xD0]) + b"\x00\x00\x12\x34\x00" + neg
    return b"\x03\x00" + struct.pack(">H", 4 + len(x224)) + x224


def _smb2_negotiate_response() -> bytes:
    # [MS-SMB2] 2.2.1.2 SYNC header (64 bytes) + 2.2.4 NEGOTIATE Response, dialect 2.??? (0x02FF).
    header = (
        b"\xfeSMB" + struct.pack("<HHIHHIIQIIQ", 64, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0) + b"\x00" * 16  # signature
    )
    body = (
        struct.pack("<HHHH", 65, 1, 0x02FF, 0)
        + bytes(range(16))  # server GUID
        + struct.pack("<IIII", 0x7, 0x800000, 0x800000, 0x800000)
        + struct.pack("<QQ", 0x01DB000000000000, 0)
        + struct.pack("<HHI", 0x80, 0, 0)
    )
    msg = header + body
    return struct.pack(">I", len(msg)) + msg


def _smb1_negotiate_response() -> bytes:
    # [MS-CIFS] 2.2.4.52.2: SMB header + NT LM 0.12 response (17 words), dialect index 0, no blob.
    header = b"\xffSMB\x72" + b"\x00" * 4 + b"\x98" + struct.pack("<H", 0xC853) + b"\x00" * 12
    header += b"\xff\xff" + struct.pack("<H", 0xFEFF) + b"\x00\x00\x00\x00"
    words = struct.pack("<HBHHIIIIQhB", 0, 3, 50, 1, 65536, 65536, 0, 0xE3FC, 0, 0, 0)
    msg = header + b"\x11" + words + struct.pack("<H", 0)
    return struct.pack(">I", len(msg)) + msg


def _ber(tag: int, body: bytes) -> bytes:
    n = len(body)
    length = bytes([n]) if n < 0x80 else bytes([0x81, n])
    return bytes([tag]) + length + body


def _ldap_result(message_id: int, op: int, code: int, extra: bytes = b"") -> bytes:
    # RFC 4511 4.1.9 LDAPResult: resultCode ENUMERATED, matchedDN, diagnosticMessage (+ extra fields).
    result = _ber(0x0A, bytes([code])) + _ber(0x04, b"") + _ber(0x04, b"") + extra
    return _ber(0x30, _ber(0x02, bytes([message_id])) + _ber(op, result))


def _bson(*elements: bytes) -> bytes:
    body = b"".join(elements)
    return struct.pack("<i", 4 + len(body) + 1) + body + b"\x00"


def _mongo_reply() -> bytes:
    # MongoDB wire protocol OP_REPLY (opCode 1) to our request id, with an isMaster document.
    doc = _bson(
        b"\x08ismaster\x00\x01",
        b"\x10maxBsonObjectSize\x00" + struct.pack("<i", 16 * 1024 * 1024),
        b"\x10maxWireVersion\x00" + struct.pack("<i", 17),
        b"\x01ok\x00" + struct.pack("<d", 1.0),
    )
    body = struct.pack("<iqii", 8, 0, 0, 1) + doc
    return struct.pack("<iiii", 16 + len(body), 99, lzr.MONGO_REQUEST_ID, 1) + body


def _amqp_connection_start() -> bytes:
    # AMQP 0-9-1 2.3.5 frame (type 1 method, channel 0, size, payload, 0xCE) carrying connection.start
    # (class 10, method 10): version 0-9, server-properties table, mechanisms and locales long strings.
    def longstr(s: bytes) -> bytes:
        return struct.pack(">I", len(s)) + s

    props = b"\x07product" + b"S" + longstr(b"RabbitMQ")
    payload = b"\x00\x0a\x00\x0a\x00\x09" + longstr(props) + longstr(b"PLAIN AMQPLAIN") + longstr(b"en_US")
    return b"\x01\x00\x00" + struct.pack(">I", len(payload)) + payload + b"\xce"


def _ipp_response() -> bytes:
    # RFC 8010 3.1.1 / RFC 8011 4.2.5: Get-Printer-Attributes response, version 2.0, successful-ok.
    def attr(tag: int, name: bytes, value: bytes) -> bytes:
        return bytes([tag]) + struct.pack(">H", len(name)) + name + struct.pack(">H", len(value)) + value

    body = (
        b"\x02\x00\x00\x00" + struct.pack(">I", 1) + b"\x01"
        + attr(0x47, b"attributes-charset", b"utf-8")
        + attr(0x48, b"attributes-natural-language", b"en")
        + b"\x04" + attr(0x41, b"printer-name", b"lab1") + b"\x03"
    )  # fmt: skip
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/ipp\r\nContent-Length: %d\r\n\r\n" % len(body)
    return head + body


def _modbus(function: bytes) -> bytes:
    # Modbus/TCP MBAP (transaction echoed, protocol 0, length, unit) + PDU.
    return struct.pack(">HHHB", lzr.MODBUS_TRANSACTION, 0, len(function) + 1, 0) + function


def _x11_failed(reason: bytes) -> bytes:
    # X11 protocol, Connection Setup reply "Failed": 0, reason length, protocol 11.0 (LSB first: we sent
    # "l"), additional length in 4-byte units, reason padded.
    pad = b"\x00" * (-len(reason) % 4)
    return struct.pack("<BBHHH", 0, len(reason), 11, 0, (len(reason) + len(pad)) // 4) + reason + pad


SPEC: dict[str, tuple[str, bytes, list[str]]] = {
    # name: (handshake sent, response, identify() result)
    "telnet_linux": ("http", bytes.fromhex("fffd18fffd20fffd23fffd27"), ["telnet"]),  # RFC 854/1091/1079
    "telnet_router": (
        "http",
        bytes.fromhex("fffb01fffb03fffd1f") + b"\r\nUser Access Verification\r\n",
        ["telnet"],
    ),
    "vnc": ("http", b"RFB 003.008\n", ["vnc"]),  # RFC 6143 7.1.1
    "vnc_3_3": ("wait", b"RFB 003.003\n", ["vnc"]),
    "rdp_tls": ("rdp", _tpkt_x224_cc(bytes.fromhex("0200080001000000")), ["rdp"]),
    "rdp_failure": ("rdp", _tpkt_x224_cc(bytes.fromhex("0300080005000000")), ["rdp"]),
    "rdp_legacy": ("rdp", _tpkt_x224_cc(b""), ["rdp"]),  # no negotiation (RDP 4/5)
    "smb2": ("smb", _smb2_negotiate_response(), ["smb"]),
    "smb1": ("smb", _smb1_negotiate_response(), ["smb"]),
    "sip": (
        "sip",
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP nm;branch=z9hG4bK-zbanner-lzr\r\nCall-ID: zbanner-lzr@nm\r\n"
        b"CSeq: 42 OPTIONS\r\nAllow: INVITE, ACK, CANCEL, OPTIONS, BYE\r\nContent-Length: 0\r\n\r\n",
        ["sip"],
    ),  # RFC 3261 11.2
    "rtsp": (
        "rtsp",
        b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nPublic: DESCRIBE, SETUP, TEARDOWN, PLAY, PAUSE\r\n\r\n",
        ["rtsp"],
    ),  # RFC 2326 10.1
    "rtsp_to_http": ("http", b"RTSP/1.0 400 Bad Request\r\nCSeq: 0\r\n\r\n", ["rtsp"]),
    "ldap_bind": ("ldap", _ldap_result(1, 0x61, 0), ["ldap"]),  # RFC 4511 4.2.2
    "ldap_disconnect": (
        "http",
        _ldap_result(0, 0x78, 2, _ber(0x8A, b"1.3.6.1.4.1.1466.20036")),  # RFC 4511 4.4.1
        ["ldap"],
    ),
    "mongodb": ("mongodb", _mongo_reply(), ["mongodb"]),
    "amqp_start": ("amqp", _amqp_connection_start(), ["amqp"]),
    "amqp_header": ("amqp", b"AMQP\x00\x00\x09\x01", ["amqp"]),  # version mismatch: the server's header
    "amqp_1_0": ("amqp", b"AMQP\x03\x01\x00\x00", ["amqp"]),  # AMQP 1.0 SASL layer
    "ipp": ("ipp", _ipp_response(), ["http", "ipp"]),
    "ipp_cups_get": (
        "http",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/html\r\n"
        b"Server: CUPS/2.4 IPP/2.1\r\n\r\n",
        ["http", "ipp"],
    ),
    "x11_failed": ("x11", _x11_failed(b"No protocol specified\n"), ["x11"]),
    "x11_authenticate": ("x11", b"\x02\x00\x00\x00\x00\x00\x02\x00" + b"MIT-MAGIC", ["x11"]),
    "modbus_device_id": (
        "modbus",
        _modbus(bytes.fromhex("2b0e0101000003") + b"\x00\x04Acme" + b"\x01\x03PLC" + b"\x02\x031.0"),
        ["modbus"],
    ),
    "modbus_exception": ("modbus", _modbus(b"\xab\x01"), ["modbus"]),
    "tls_alert": ("http", bytes.fromhex("15030100020246"), ["tls"]),  # RFC 8446 6: protocol_version alert
    "mqtt5_connack": ("mqtt", bytes.fromhex("2003000000"), ["mqtt"]),  # MQTT 5.0 3.2: CONNACK + no properties
    "mysql_8": (
        "wait",
        bytes.fromhex("4a0000000a") + b"8.0.36\x00" + bytes(40),
        ["mysql"],
    ),  # protocol 10 greeting (MySQL internals, Connection Phase)
    "postgres_ssl": ("postgres", b"S", ["postgres"]),
    "smtp_postfix": ("http", b"220 mail.example.org ESMTP Postfix (Debian/GNU)\r\n", ["smtp"]),  # RFC 5321
    "smtp_plain_greeting": ("http", b"220 mx.example.org Service ready, mail only\r\n", ["smtp"]),
    "ftp_plain_greeting": ("http", b"220 Service ready for new user.\r\n", ["ftp"]),  # RFC 959: no hint
    "ftp_proftpd": ("http", b"220 ProFTPD Server (Debian) [::ffff:198.18.0.5]\r\n", ["ftp"]),
    "imap_preauth": ("http", b"* PREAUTH IMAP4rev1 server logged in as anonymous\r\n", ["imap"]),
    "http_0_9": ("http", b"<html><body><h1>It works</h1></body></html>\n", ["http"]),
    "http_2_status": ("http", b"HTTP/2 200 \r\n\r\n", ["http"]),
    "redis_noauth": ("redis", b"-NOAUTH Authentication required.\r\n", ["redis"]),
    "redis_protected": (
        "http",
        b"-DENIED Redis is running in protected mode because protected mode\r\n",
        ["redis"],
    ),
}


def _real(name: str) -> bytes:
    return bytes.fromhex(REAL[name])


def _sent(name: str) -> str:
    return name.split("__")[1]


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_responses(name: str) -> None:
    matches = lzr.identify(_real(name), _sent(name))
    assert matches == REAL_EXPECTED[name]
    want = {"nginx_https__http": "tls"}.get(name, matches[0])
    assert lzr.best(matches) == want


@pytest.mark.parametrize("name", sorted(SPEC))
def test_spec_responses(name: str) -> None:
    sent, data, expected = SPEC[name]
    matches = lzr.identify(data, sent)
    assert matches == expected
    assert lzr.best(matches) == ("ipp" if "ipp" in expected else expected[0])


def test_every_required_protocol_has_a_fingerprint_and_a_fixture() -> None:
    required = [
        "http", "tls", "ssh", "ftp", "smtp", "pop3", "imap", "telnet", "redis", "mysql", "postgres",
        "mongodb", "memcached", "mqtt", "amqp", "rdp", "vnc", "smb", "dns", "sip", "rtsp", "ldap", "x11",
        "ipp", "modbus",
    ]  # fmt: skip
    assert set(required) <= set(lzr.PROTOCOLS)
    assert set(lzr.PROTOCOLS) == set(lzr.PRECEDENCE)
    covered = {m for n in REAL for m in REAL_EXPECTED[n]} | {m for _, _, e in SPEC.values() for m in e}
    assert set(required) <= covered


@pytest.mark.parametrize(
    ("name", "protocol"),
    [
        ("openssh__wait", "ssh"), ("vsftpd__http", "ftp"), ("mariadb__http", "mysql"),
        ("mariadb_denied__http", "mysql"), ("exim__wait", "smtp"), ("dovecot_pop3__http", "pop3"),
        ("dovecot_imap__http", "imap"),
    ],
)  # fmt: skip
def test_server_first_whatever_was_sent(name: str, protocol: str) -> None:
    # The banner is the first data whatever we sent (and with nothing sent): same identification.
    for sent in [*lzr.HANDSHAKE_NAMES, "", "no-such-handshake"]:
        assert lzr.best(lzr.identify(_real(name), sent)) == protocol, sent
    for spec in ("telnet_linux", "vnc", "mysql_8"):
        _, data, expected = SPEC[spec]
        for sent in lzr.HANDSHAKE_NAMES:
            assert lzr.identify(data, sent) == expected


@pytest.mark.parametrize("server", sorted(REAL_WALKS))
def test_walks_take_few_connections(server: str) -> None:
    handshake, fixture = REAL_WALKS[server]
    steps = lzr.HANDSHAKE_NAMES.index(handshake) + 1
    assert lzr.identify(_real(fixture), handshake)
    # HTTP and the server-first services: one connection; the others within the first ten.
    assert steps == 1 or server in {"memcached", "postgresql", "dnsmasq", "mosquitto"}
    assert steps <= 10


def test_answers_to_other_handshakes_are_not_misread() -> None:
    # Every fixture answered with a different `sent` still yields only its own protocol(s) (or nothing,
    # for the few fingerprints that depend on what was sent): never another protocol.
    fixtures = [(_real(n), set(REAL_EXPECTED[n])) for n in REAL] + [(d, set(e)) for _, d, e in SPEC.values()]
    for data, expected in fixtures:
        for sent in lzr.HANDSHAKE_NAMES:
            assert set(lzr.identify(data, sent)) <= expected, (data[:40], sent)


def test_a_web_page_is_http() -> None:
    page = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n"
        b"SSH-2.0-OpenSSH in a page\r\n220 ftp and smtp\r\n+OK\r\n* OK\r\nRFB 003.008\n"
    )
    assert lzr.identify(page, "http") == ["http"]


def test_handshakes_table() -> None:
    names = lzr.HANDSHAKE_NAMES
    assert names[:2] == ("http", "tls") and names[-1] == "wait"
    assert len(set(names)) == len(names)
    assert lzr.handshake("wait").payload == b""
    assert set(lzr._PAYLOADS) == set(names)  # every payload has its place in the order
    for h in lzr.HANDSHAKES:
        assert isinstance(h.payload, bytes)
        assert set(h.identifies) <= set(lzr.PROTOCOLS)
        assert h.payload == lzr.handshake(h.name).payload  # deterministic: built once, the same for all
        if h.name != "wait":
            assert h.payload
    # Every client-first protocol has a handshake that elicits it.
    elicited = {p for h in lzr.HANDSHAKES for p in h.identifies}
    assert set(lzr.PROTOCOLS) <= elicited
    # Length fields inside the binary payloads are consistent.
    smb = lzr.handshake("smb").payload
    assert int.from_bytes(smb[1:4], "big") == len(smb) - 4 and smb[4:8] == b"\xffSMB"
    rdp = lzr.handshake("rdp").payload
    assert int.from_bytes(rdp[2:4], "big") == len(rdp) and rdp[4] == len(rdp) - 5
    dns = lzr.handshake("dns").payload
    assert int.from_bytes(dns[:2], "big") == len(dns) - 2
    mongo = lzr.handshake("mongodb").payload
    assert int.from_bytes(mongo[:4], "little") == len(mongo)
    mqtt = lzr.handshake("mqtt").payload
    assert mqtt[1] == len(mqtt) - 2
    ldap = lzr.handshake("ldap").payload
    assert ldap[1] == len(ldap) - 2
    ipp = lzr.handshake("ipp").payload
    head, body = ipp.split(b"\r\n\r\n", 1)
    assert b"Content-Length: %d" % len(body) in head and body.endswith(b"\x03")


def test_best() -> None:
    assert lzr.best([]) == "unknown"
    assert lzr.best(["http", "tls"]) == "tls"
    assert lzr.best(["http", "ipp"]) == "ipp"
    assert lzr.best(["ftp", "smtp"]) == "smtp"
    assert lzr.best(["something-new"]) == "something-new"
    assert lzr.best(["http", "something-new"]) == "http"
    assert lzr.best(None) == "unknown"  # type: ignore[arg-type]


def test_empty_and_odd_inputs() -> None:
    assert lzr.identify(b"", "http") == []
    assert lzr.identify(b"N", "http") == []  # a bare N is postgres only after our SSLRequest
    assert lzr.identify(b"ERROR\r\n", "wait") == []  # ... and ERROR only as an answer to something
    assert lzr.identify(None, "http") == []  # type: ignore[arg-type]
    assert lzr.identify(bytearray(b"RFB 003.008\n"), None) == ["vnc"]  # type: ignore[arg-type]
    assert lzr.identify(memoryview(b"SSH-2.0-x\r\n"), "tls") == ["ssh"]


MUTATED = mutated(
    [_real(n) for n in REAL] + [d for _, d, _ in SPEC.values()], [0x00, 0x01, 0x0A, 0x30, 0x7F, 0x80, 0xFF]
)


@FUZZ
@given(data=st.binary(max_size=2048) | MUTATED, sent=st.sampled_from([*lzr.HANDSHAKE_NAMES, "", "x"]))
def test_identify_never_raises(data: bytes, sent: str) -> None:
    matches = lzr.identify(data, sent)
    assert isinstance(matches, list) and set(matches) <= set(lzr.PROTOCOLS)
    assert lzr.best(matches) in (*lzr.PROTOCOLS, "unknown")


def test_every_prefix() -> None:
    for data in [_real(n) for n in REAL] + [d for _, d, _ in SPEC.values()]:
        for n in range(len(data) + 1):
            for sent in ("http", "wait"):
                assert isinstance(lzr.identify(data[:n], sent), list)


def test_large_input_is_bounded() -> None:
    assert lzr.identify(b"HTTP/1.1 200 OK\r\n" + b"x" * 10_000_000, "http") == ["http"]
