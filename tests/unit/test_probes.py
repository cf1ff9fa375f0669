"""Unit tests of the probes package: registry, arguments, payloads and parsers on realistic samples."""

from __future__ import annotations

import math
import os
import pkgutil
import random
import re
import select
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import dpkt
import orjson
import pytest

from zbanner_xdp import probes
from zbanner_xdp.probes import (
    ProbeArgError,
    ProbeKind,
    UnknownProbeError,
    all_probes,
    banner_text,
    get_probe,
    parse_probe_args,
    probe_class,
)
from zbanner_xdp.probes.base import MAX_STR_LEN, Probe, sanitise

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "probes"

EXPECTED_PROBES = [
    "ftp",
    "hello",
    "http",
    "icmp-echo",
    "imap",
    "jarm",
    "lzr",
    "mysql",
    "pop3",
    "redis",
    "smtp",
    "ssh",
    "synscan",
    "telnet",
    "tls",
    "udp-dns",
    "udp-ntp",
]


def sample(name: str) -> bytes:
    return (DATA_DIR / f"{name}.bin").read_bytes()


def parse(probe_name: str, data: bytes, args: dict[str, str] | None = None) -> dict[str, Any]:
    p = get_probe(probe_name, args)
    out = p.parse("192.0.2.1", p.default_port, data)
    assert list(out) == list(p.fields)
    orjson.dumps(out)
    return out


# -- TLS server messages, built byte by byte ---------------------------------------------------------------

SERVER_RANDOM = bytes(range(0x40, 0x60))
SESSION_ID = bytes(range(0xA0, 0xC0))
SERVER_X25519 = bytes.fromhex("9fd7ad6dcff4298dd3f96d5b1b2af910a0535b1488d7f8fabb349a982880b615")


def tls13_server_hello() -> bytes:
    """ServerHello selecting TLS 1.3 / TLS_AES_128_GCM_SHA256 / x25519, then CCS and an encrypted record."""
    extensions = (
        b"\x00\x2b\x00\x02\x03\x04"  # supported_versions: TLS 1.3
        + b"\x00\x33\x00\x24"  # key_share, 36 bytes
        + b"\x00\x1d\x00\x20"  # x25519, 32-byte key
        + SERVER_X25519
    )
    body = (
        b"\x03\x03"  # legacy_version TLS 1.2
        + SERVER_RANDOM
        + b"\x20"
        + SESSION_ID  # legacy_session_id_echo
        + b"\x13\x01"  # TLS_AES_128_GCM_SHA256
        + b"\x00"  # compression null
        + struct.pack("!H", len(extensions))
        + extensions
    )
    assert len(body) == 118
    handshake = b"\x02" + len(body).to_bytes(3, "big") + body
    record = b"\x16\x03\x03" + struct.pack("!H", len(handshake)) + handshake
    ccs = b"\x14\x03\x03\x00\x01\x01"  # middlebox-compatibility ChangeCipherSpec
    app = b"\x17\x03\x03\x00\x20" + bytes(range(32))  # start of encrypted EncryptedExtensions
    return record + ccs + app


def tls12_server_hello() -> bytes:
    """ServerHello for ECDHE-RSA-AES128-GCM-SHA256 + ALPN h2, followed by a Certificate cut short."""
    extensions = (
        b"\xff\x01\x00\x01\x00"  # renegotiation_info, empty
        + b"\x00\x0b\x00\x04\x03\x00\x01\x02"  # ec_point_formats
        + b"\x00\x23\x00\x00"  # session_ticket
        + b"\x00\x10\x00\x05\x00\x03\x02h2"  # ALPN: h2
        + b"\x00\x17\x00\x00"  # extended_master_secret
    )
    body = (
        b"\x03\x03"
        + SERVER_RANDOM
        + b"\x20"
        + SESSION_ID
        + b"\xc0\x2f"  # TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        + b"\x00"
        + struct.pack("!H", len(extensions))
        + extensions
    )
    server_hello = b"\x02" + len(body).to_bytes(3, "big") + body
    cert_len = 0x0A31
    certificate_start = (
        b"\x0b" + cert_len.to_bytes(3, "big") + b"\x00\x0a\x2e\x00\x0a\x2b\x30\x82\x0a\x27\x30\x82"
    )
    # The record announces the full flight but the capture stops inside the Certificate.
    record_len = len(server_hello) + 4 + cert_len
    return b"\x16\x03\x03" + struct.pack("!H", record_len) + server_hello + certificate_start


def tls_alert() -> bytes:
    return b"\x15\x03\x03\x00\x02\x02\x28"  # fatal handshake_failure


def tls_hello_retry_request() -> bytes:
    from zbanner_xdp.probes.tls import HRR_RANDOM

    extensions = b"\x00\x2b\x00\x02\x03\x04" + b"\x00\x33\x00\x02\x00\x17"  # key_share: please use secp256r1
    body = (
        b"\x03\x03" + HRR_RANDOM + b"\x20" + SESSION_ID + b"\x13\x02\x00" + struct.pack("!H", len(extensions))
    )
    body += extensions
    hs = b"\x02" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x03" + struct.pack("!H", len(hs)) + hs


TLS_SAMPLES = {
    "tls__tls13_server_hello": tls13_server_hello,
    "tls__tls12_server_hello": tls12_server_hello,
    "tls__alert_handshake_failure": tls_alert,
    "tls__hello_retry_request": tls_hello_retry_request,
}


@pytest.mark.parametrize("name", sorted(TLS_SAMPLES))
def test_tls_sample_files_match_construction(name: str) -> None:
    # The fuzz tests mutate the files; keep them identical to the documented constructions here.
    assert sample(name) == TLS_SAMPLES[name]()


# -- registry, args, base class ----------------------------------------------------------------------------


def test_registry_lists_all_probes_sorted() -> None:
    names = [c.name for c in all_probes()]
    assert names == EXPECTED_PROBES
    assert all(issubclass(c, Probe) for c in all_probes())


def test_every_probe_module_of_the_folder_is_registered() -> None:
    """The package's imports are the one list of probes: none of the folder's modules is left out."""
    not_probes = {"base", "registry", "auto"}  # (auto: expands into probes, see there)
    modules = {m.name for m in pkgutil.iter_modules(probes.__path__)} - not_probes
    assert {c.__module__.rpartition(".")[2] for c in all_probes()} == modules


def test_kind_declares_the_transport() -> None:
    kinds = {c.name: (c.kind, c.transport, c.handshake) for c in all_probes()}
    assert kinds["synscan"] == (ProbeKind.SYN, "tcp", False)
    assert kinds["http"] == (ProbeKind.BANNER, "tcp", True)
    assert kinds["udp-dns"] == kinds["udp-ntp"] == (ProbeKind.DATAGRAM, "udp", False)
    assert kinds["icmp-echo"] == (ProbeKind.ECHO, "icmp", False)
    assert probe_class("udp-ntp") is get_probe("udp-ntp").__class__ and probe_class("UDP-NTP") is None
    with pytest.raises(TypeError, match="declare `kind`"):

        class _Declares(Probe):
            transport = "udp"


def test_get_probe_unknown_lists_known_names() -> None:
    with pytest.raises(UnknownProbeError) as ei:
        get_probe("gopher")
    assert isinstance(ei.value, ValueError)
    for n in EXPECTED_PROBES:
        assert n in str(ei.value)


def test_get_probe_is_case_insensitive() -> None:
    assert get_probe("HTTP").name == "http"


@pytest.mark.parametrize("name", EXPECTED_PROBES)
def test_unknown_arg_rejected(name: str) -> None:
    with pytest.raises(ProbeArgError) as ei:
        get_probe(name, {"no_such_arg": "1"})
    assert isinstance(ei.value, ValueError)
    msg = str(ei.value)
    assert "no_such_arg" in msg and "\n" not in msg


@pytest.mark.parametrize("cls", all_probes(), ids=lambda c: c.name)
def test_class_attributes(cls: type[Probe]) -> None:
    assert isinstance(cls.name, str) and cls.name
    assert isinstance(cls.default_port, int) and (0 < cls.default_port < 65536 or cls.transport == "icmp")
    assert cls.transport in ("tcp", "udp", "icmp")
    assert isinstance(cls.fields, tuple) and all(isinstance(f, str) for f in cls.fields)
    assert len(set(cls.fields)) == len(cls.fields)
    assert isinstance(cls.description, str) and cls.description and "\n" not in cls.description
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in cls.args_help.items())
    p = cls()
    assert isinstance(p.server_first, bool) and isinstance(p.handshake, bool)
    assert p.handshake is (cls.transport == "tcp" and cls.name != "synscan")
    if p.server_first:
        assert p.payload("192.0.2.1", 1) == b""


@pytest.mark.parametrize("name", EXPECTED_PROBES)
def test_payload_deterministic_and_fixed_payload(name: str) -> None:
    # (A probe with random fields draws them once per instance, from its seed: give both the same.)
    args = {"seed": "5eed"} if "seed" in probe_class(name).args_help else {}
    a, b = get_probe(name, args), get_probe(name, args)
    for ip, port in [("192.0.2.1", 80), ("198.51.100.7", 8443), ("2001:db8::1", 443)]:
        assert a.payload(ip, port) == b.payload(ip, port) == a.payload(ip, port)
        assert isinstance(a.payload(ip, port), bytes)
    fixed = a.fixed_payload
    if fixed is not None:
        assert fixed == a.payload("203.0.113.9", 1234) == a.payload("192.0.2.1", 80)


@pytest.mark.parametrize("name", EXPECTED_PROBES)
def test_parse_empty_and_garbage_give_declared_fields(name: str) -> None:
    p = get_probe(name)
    noise = random.Random(name).randbytes(300)
    for data in (b"", b"\x00", b"\xff" * 40, noise, bytearray(b"abc"), memoryview(b"xyz")):
        out = p.parse("192.0.2.1", 1, data)  # type: ignore[arg-type]
        assert list(out) == list(p.fields)
        orjson.dumps(out)
        assert isinstance(p.matches(out), bool)
    assert all(v is None for v in p.parse("192.0.2.1", 1, b"").values()) or name in ("telnet", "hello")
    assert p.matches({}) is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("   ", {}),
        ("host=example.com", {"host": "example.com"}),
        ("host=a,path=/x", {"host": "a", "path": "/x"}),
        ("alpn=h2,http/1.1,sni=example.com", {"alpn": "h2,http/1.1", "sni": "example.com"}),
        ("sni=x, alpn=h2", {"sni": "x", "alpn": "h2"}),
        ('payload="a,b=c",regex=x', {"payload": "a,b=c", "regex": "x"}),
        ("payload='GET / HTTP/1.0\\r\\n\\r\\n'", {"payload": "GET / HTTP/1.0\\r\\n\\r\\n"}),
        ("regex=(\\d+)=(\\w+)", {"regex": "(\\d+)=(\\w+)"}),
        ("a=", {"a": ""}),
        ("a=1,", {"a": "1"}),
    ],
)
def test_parse_probe_args(text: str, expected: dict[str, str]) -> None:
    assert parse_probe_args(text) == expected


@pytest.mark.parametrize("text", ["novalue", "=x", "a=1,a=2", 'a="unterminated', 'a="x"y', " =1"])
def test_parse_probe_args_malformed(text: str) -> None:
    with pytest.raises(ProbeArgError):
        parse_probe_args(text)


def test_banner_text() -> None:
    assert banner_text(b"SSH-2.0-x\r\n") == "SSH-2.0-x\r\n"
    assert banner_text(b"caf\xc3\xa9 \xff\xfe") == "caf\u00e9 \\xff\\xfe"
    assert banner_text(bytearray(b"a\x00b")) == "a\x00b"


class _BrokenProbe(Probe):
    name = "broken"
    fields = ("a", "b")

    def _parse(self, ip: str, port: int, data: bytes) -> dict[str, Any]:
        raise IndexError("parser bug")

    def _matches(self, parsed: dict[str, Any]) -> bool:
        raise KeyError("bug")


class _DirtyProbe(Probe):
    name = "dirty"
    fields = ("raw", "nan", "big", "long", "nested", "surrogate", "obj")

    def _parse(self, ip: str, port: int, data: bytes) -> dict[str, Any]:
        return {
            "raw": b"\xff\x00ok",
            "nan": math.nan,
            "big": 2**80,
            "long": "x" * 10_000,
            "nested": {1: (b"a", {2: math.inf}), "k": {"x", "y"}},
            "surrogate": "bad\udcff",
            "obj": object(),
            "extra_key": 1,
        }


def test_safety_net_catches_parser_exceptions() -> None:
    p = _BrokenProbe()
    assert p.parse("192.0.2.1", 1, b"data") == {"a": None, "b": None}
    assert p.matches({"a": 1}) is False


def test_output_sanitised() -> None:
    out = _DirtyProbe().parse("192.0.2.1", 1, b"")
    orjson.dumps(out)
    assert list(out) == list(_DirtyProbe.fields)
    assert out["raw"] == "\\xff\x00ok"
    assert out["nan"] is None
    assert out["big"] == str(2**80)
    assert len(out["long"]) == MAX_STR_LEN
    assert out["nested"]["1"] == ["a", {"2": None}]
    assert sorted(out["nested"]["k"]) == ["x", "y"]
    assert out["surrogate"] == "bad\\udcff"
    assert isinstance(out["obj"], str)


def test_sanitise_keeps_plain_values() -> None:
    v = {"a": [1, 2.5, True, None, "s"], "b": {"c": -1}}
    assert sanitise(v) == v


def test_parse_non_bytes_input_does_not_raise() -> None:
    p = get_probe("http")
    assert p.parse("192.0.2.1", 80, None) == dict.fromkeys(p.fields)  # type: ignore[arg-type]


# -- synscan ------------------------------------------------------------------------------------------------


def test_synscan() -> None:
    p = get_probe("synscan")
    assert p.handshake is False and p.server_first is False
    assert p.payload("192.0.2.1", 80) == b"" and p.fixed_payload == b""
    assert p.fields == () and p.default_port == 80
    assert p.parse("192.0.2.1", 80, b"HTTP/1.1 200 OK\r\n") == {}
    assert p.matches({}) is False


# -- http ---------------------------------------------------------------------------------------------------


def test_http_payload_default() -> None:
    p = get_probe("http")
    assert p.payload("192.0.2.1", 80) == (
        b"GET / HTTP/1.1\r\nHost: 192.0.2.1\r\nUser-Agent: Mozilla/5.0 (compatible; zbanner-xdp/0.1)\r\n"
        b"Accept: */*\r\nConnection: close\r\n\r\n"
    )
    assert p.fixed_payload is None
    assert b"Host: [2001:db8::1]\r\n" in p.payload("2001:db8::1", 80)
    assert p.server_first is False and p.default_port == 80


def test_http_payload_args() -> None:
    p = get_probe(
        "http", {"host": "example.com", "path": "/robots.txt", "method": "HEAD", "user_agent": "t/1"}
    )
    expected = (
        b"HEAD /robots.txt HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\n"
        b"Accept: */*\r\nConnection: close\r\n\r\n"
    )
    assert p.payload("192.0.2.1", 80) == expected
    assert p.fixed_payload == expected
    assert b"User-Agent" not in get_probe("http", {"user_agent": ""}).payload("192.0.2.1", 80)


@pytest.mark.parametrize(
    "args",
    [
        {"method": "G ET"},
        {"method": ""},
        {"path": "/a b"},
        {"path": ""},
        {"host": "a\r\nX-Injected: 1"},
        {"host": ""},
        {"user_agent": "x\r\ny"},
        {"path": "/caf\u00e9"},
    ],
)
def test_http_bad_args(args: dict[str, str]) -> None:
    with pytest.raises(ProbeArgError):
        get_probe("http", args)


def test_http_parse_nginx() -> None:
    out = parse("http", sample("http__nginx_301"))
    assert out == {
        "status_code": 301,
        "reason": "Moved Permanently",
        "version": "HTTP/1.1",
        "server": "nginx/1.24.0",
        "content_type": "text/html",
        "location": "https://example.com/",
        "headers": {
            "server": "nginx/1.24.0",
            "date": "Sat, 22 Nov 2025 00:00:00 GMT",
            "content-type": "text/html",
            "content-length": "169",
            "connection": "close",
            "location": "https://example.com/",
        },
        "title": "301 Moved Permanently",
    }
    assert get_probe("http").matches(out)


def test_http_parse_apache() -> None:
    out = parse("http", sample("http__apache_200"))
    assert out["status_code"] == 200 and out["reason"] == "OK"
    assert out["server"] == "Apache/2.4.62 (Debian)"
    assert out["title"] == "Apache2 Debian Default Page: It works"
    assert out["headers"]["etag"] == '"29cd-61a0a0d0e0f00"'
    assert len(out["headers"]) == 9 and out["location"] is None


def test_http_truncated_mid_header() -> None:
    data = sample("http__nginx_301")
    cut = data.index(b"nginx") + 3  # "Server: ngi"
    out = parse("http", data[:cut])
    assert out["status_code"] == 301 and out["server"] is None and out["headers"] == {}
    assert out["title"] is None
    # Cut right after a complete header line: that header is kept.
    out = parse("http", data[: data.index(b"Date:")])
    assert out["server"] == "nginx/1.24.0" and out["title"] is None


def test_http_truncated_inside_title_and_status() -> None:
    data = sample("http__nginx_301")
    out = parse("http", data[: data.index(b"Permanently</title>") + 4])
    assert out["title"] == "301 Moved Perm"
    assert parse("http", b"HTTP/1.1 2")["status_code"] is None
    out = parse("http", b"HTTP/1.1 503")
    assert out["status_code"] == 503 and out["reason"] == "" and out["headers"] == {}


def test_http_parse_variants() -> None:
    data = (
        b"\r\nHTTP/1.0 200\nServer: Boa/0.94.14rc21\nSet-Cookie: a=1\nSet-Cookie: b=2\n"
        b"X-Long: part one\n  part two\nbogus line\nContent-Type: text/html; charset=ISO-8859-1\n\n"
        b"<HTML><HEAD><TITLE  lang=en>\n  Caf\xe9  &amp;\n\tBar </TITLE></HEAD>"
    )
    out = parse("http", data)
    assert out["version"] == "HTTP/1.0" and out["status_code"] == 200 and out["reason"] == ""
    assert out["server"] == "Boa/0.94.14rc21"
    assert out["headers"]["set-cookie"] == "a=1, b=2"
    assert out["headers"]["x-long"] == "part one part two"
    assert out["title"] == "Caf\u00e9 & Bar"


def test_http_not_http() -> None:
    p = get_probe("http")
    for data in (sample("ssh__openssh_9_2"), b"<html><title>x</title>", b"HTTP/1.1 OK\r\n\r\n"):
        out = p.parse("192.0.2.1", 80, data)
        assert all(v is None for v in out.values())
        assert p.matches(out) is False


# -- tls ----------------------------------------------------------------------------------------------------


def parse_client_hello(record: bytes) -> dict[str, Any]:
    """Independent strict ClientHello parser: every length must be consistent."""
    assert record[0] == 0x16 and record[1:3] == b"\x03\x03"
    assert int.from_bytes(record[3:5], "big") == len(record) - 5
    hs = record[5:]
    assert hs[0] == 1 and int.from_bytes(hs[1:4], "big") == len(hs) - 4
    b = hs[4:]
    out: dict[str, Any] = {"client_version": b[0:2], "random": b[2:34]}
    pos = 34
    sid_len = b[pos]
    out["session_id"] = b[pos + 1 : pos + 1 + sid_len]
    pos += 1 + sid_len
    cs_len = int.from_bytes(b[pos : pos + 2], "big")
    assert cs_len % 2 == 0
    out["ciphers"] = [int.from_bytes(b[i : i + 2], "big") for i in range(pos + 2, pos + 2 + cs_len, 2)]
    pos += 2 + cs_len
    comp_len = b[pos]
    out["compression"] = list(b[pos + 1 : pos + 1 + comp_len])
    pos += 1 + comp_len
    ext_len = int.from_bytes(b[pos : pos + 2], "big")
    pos += 2
    assert pos + ext_len == len(b)
    exts: dict[int, bytes] = {}
    order: list[int] = []
    while pos < len(b):
        et, el = struct.unpack("!HH", b[pos : pos + 4])
        assert pos + 4 + el <= len(b)
        assert et not in exts
        exts[et] = b[pos + 4 : pos + 4 + el]
        order.append(et)
        pos += 4 + el
    out["extensions"] = exts
    out["order"] = order
    return out


def test_tls_client_hello_well_formed_independent_parser() -> None:
    p = get_probe("tls")
    ch = parse_client_hello(p.payload("192.0.2.1", 443))
    assert ch["client_version"] == b"\x03\x03"
    assert len(ch["random"]) == 32 and len(ch["session_id"]) == 32
    assert ch["ciphers"][:3] == [0x1301, 0x1302, 0x1303]
    assert {0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA8, 0xCCA9, 0x009C, 0x002F} <= set(ch["ciphers"])
    assert ch["compression"] == [0]
    exts = ch["extensions"]
    assert 0 not in exts  # no SNI unless asked
    assert exts[10] == b"\x00\x06\x00\x1d\x00\x17\x00\x18"
    assert exts[11] == b"\x01\x00"
    sig = exts[13]
    assert int.from_bytes(sig[:2], "big") == len(sig) - 2
    algs = {int.from_bytes(sig[i : i + 2], "big") for i in range(2, len(sig), 2)}
    assert {0x0403, 0x0804, 0x0401} <= algs
    assert exts[16] == b"\x00\x0c\x02h2\x08http/1.1"
    assert exts[43] == b"\x04\x03\x04\x03\x03"
    assert exts[45] == b"\x01\x01"
    ks = exts[51]
    assert ks[:6] == b"\x00\x24\x00\x1d\x00\x20" and len(ks) == 38
    assert exts[0xFF01] == b"\x00" and exts[23] == b"" and exts[35] == b""


def test_tls_client_hello_dpkt() -> None:
    data = get_probe("tls", {"sni": "example.com"}).payload("192.0.2.1", 443)
    rec = dpkt.ssl.TLSRecord(data)
    assert rec.type == 22 and rec.version == 0x0303 and len(rec.data) == rec.length == len(data) - 5
    hs = dpkt.ssl.TLSHandshake(rec.data)
    assert hs.type == 1 and isinstance(hs.data, dpkt.ssl.TLSClientHello)
    hello = hs.data
    assert len(hello.random) == 32 and len(hello.session_id) == 32
    ext_types = [t for t, _ in hello.extensions]
    for t in (0, 10, 11, 13, 16, 23, 35, 43, 45, 51, 0xFF01):
        assert t in ext_types
    sni = dict(hello.extensions)[0]
    assert sni == b"\x00\x0e\x00\x00\x0bexample.com"


def test_tls_client_hello_padding_avoids_256_511() -> None:
    for sni in (None, "a.example", "example.com", "x" * 100, "y" * 240):
        args = {"sni": sni} if sni else {}
        rec = get_probe("tls", args).payload("192.0.2.1", 443)
        hs_len = len(rec) - 5
        assert not (0xFF < hs_len < 0x200), (sni, hs_len)
        parse_client_hello(rec)


def test_tls_payload_deterministic_and_target_dependent() -> None:
    p = get_probe("tls")
    a = p.payload("192.0.2.1", 443)
    assert a == get_probe("tls").payload("192.0.2.1", 443)
    b = p.payload("192.0.2.2", 443)
    c = p.payload("192.0.2.1", 8443)
    assert a != b and a != c and len(a) == len(b) == len(c)
    assert p.fixed_payload is None
    f = get_probe("tls", {"fixed": "1"})
    assert f.fixed_payload == f.payload("192.0.2.9", 1) == f.payload("192.0.2.1", 443)
    assert len(f.fixed_payload or b"") == len(a)


def test_tls_args() -> None:
    ch = parse_client_hello(get_probe("tls", {"alpn": "http/1.1"}).payload("192.0.2.1", 443))
    assert ch["extensions"][16] == b"\x00\x09\x08http/1.1"
    ch = parse_client_hello(get_probe("tls", {"alpn": ""}).payload("192.0.2.1", 443))
    assert 16 not in ch["extensions"]
    for bad in ({"sni": ""}, {"sni": "a b"}, {"sni": "x" * 300}, {"alpn": "x" * 300}, {"fixed": "maybe"}):
        with pytest.raises(ProbeArgError):
            get_probe("tls", bad)


def test_tls_parse_tls13_server_hello() -> None:
    out = parse("tls", tls13_server_hello())
    assert out == {
        "content_type": "handshake",
        "record_version": "TLSv1.2",
        "handshake_type": "server_hello",
        "handshake_messages": ["server_hello"],
        "version": "TLSv1.3",
        "cipher": "0x1301",
        "cipher_name": "TLS_AES_128_GCM_SHA256",
        "compression": 0,
        "session_id_length": 32,
        "extensions": [43, 51],
        "alpn": None,
        "key_share_group": "x25519",
        "hello_retry_request": False,
        "alert_level": None,
        "alert_level_name": None,
        "alert_description": None,
        "alert_name": None,
    }
    assert get_probe("tls").matches(out)


def test_tls_parse_tls12_server_hello() -> None:
    out = parse("tls", tls12_server_hello())
    assert out == {
        "content_type": "handshake",
        "record_version": "TLSv1.2",
        "handshake_type": "server_hello",
        "handshake_messages": ["server_hello", "certificate"],
        "version": "TLSv1.2",
        "cipher": "0xc02f",
        "cipher_name": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "compression": 0,
        "session_id_length": 32,
        "extensions": [0xFF01, 11, 35, 16, 23],
        "alpn": "h2",
        "key_share_group": None,
        "hello_retry_request": False,
        "alert_level": None,
        "alert_level_name": None,
        "alert_description": None,
        "alert_name": None,
    }


def test_tls_parse_alert() -> None:
    out = parse("tls", tls_alert())
    assert out["content_type"] == "alert" and out["record_version"] == "TLSv1.2"
    assert (out["alert_level"], out["alert_level_name"]) == (2, "fatal")
    assert (out["alert_description"], out["alert_name"]) == (40, "handshake_failure")
    assert out["version"] is None and out["cipher"] is None
    assert get_probe("tls").matches(out)
    out = parse("tls", b"\x15\x03\x01\x00\x02\x02\x46")
    assert out["record_version"] == "TLSv1.0" and out["alert_name"] == "protocol_version"


def test_tls_parse_hello_retry_request() -> None:
    out = parse("tls", tls_hello_retry_request())
    assert out["hello_retry_request"] is True and out["version"] == "TLSv1.3"
    assert out["key_share_group"] == "secp256r1" and out["cipher_name"] == "TLS_AES_256_GCM_SHA384"


def test_tls_parse_handshake_split_across_records() -> None:
    rec = tls13_server_hello()
    hs = rec[5 : 5 + 122]
    split = b"\x16\x03\x03\x00\x28" + hs[:40] + b"\x16\x03\x03" + struct.pack("!H", len(hs) - 40) + hs[40:]
    out = parse("tls", split)
    assert out["version"] == "TLSv1.3" and out["cipher"] == "0x1301"


def test_tls_parse_truncated() -> None:
    data = tls13_server_hello()
    for n in range(len(data) + 1):
        out = parse("tls", data[:n])
        if n < 5:
            assert out["content_type"] is None
        if n < 5 + 4 + 2 + 32 + 1 + 32 + 2:
            assert out["cipher"] is None
        if n < 5 + 4 + 118:
            # supported_versions not fully seen: TLS 1.3 cannot be told apart from 1.2 yet.
            assert out["version"] in (None, "TLSv1.3")
    assert parse("tls", data[:5])["content_type"] == "handshake"
    cut = parse("tls", data[: 5 + 4 + 2 + 32 + 1 + 32 + 2])
    assert cut["cipher"] == "0x1301" and cut["compression"] is None and cut["version"] is None
    one = parse("tls", tls_alert()[:6])
    assert one["alert_level"] == 2 and one["alert_description"] is None


def test_tls_parse_not_tls() -> None:
    p = get_probe("tls")
    for data in (b"HTTP/1.1 400 Bad Request\r\n\r\n", sample("ssh__openssh_9_2"), b"\x16\x05\x00\x00\x10"):
        out = p.parse("192.0.2.1", 443, data)
        assert all(v is None for v in out.values())
        assert not p.matches(out)


def _wait_for_accept(proc: subprocess.Popen[bytes], timeout: float) -> int:
    assert proc.stdout is not None
    buf = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            m = re.search(rb"ACCEPT 127\.0\.0\.1:(\d+)", buf)
            if m:
                return int(m.group(1))
    raise AssertionError(f"openssl s_server did not start: {buf!r}")


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl binary not available")
    d = tmp_path_factory.mktemp("tls")
    key, cert = d / "key.pem", d / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost", "-days", "1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return key, cert


def _handshake_with_s_server(
    tls_cert: tuple[Path, Path], server_args: list[str], probe_args: dict[str, str]
) -> tuple[Probe, dict[str, Any]]:
    key, cert = tls_cert
    # stdin must stay open: s_server shuts down on stdin EOF.
    proc = subprocess.Popen(
        ["openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", str(cert), "-key", str(key),
         "-naccept", "1", *server_args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        port = _wait_for_accept(proc, 10)
        p = get_probe("tls", probe_args)
        data = b""
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(p.payload("127.0.0.1", port))
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                out = p.parse("127.0.0.1", port, data)
                if out["version"] is not None or out["alert_name"] is not None:
                    break
        return p, p.parse("127.0.0.1", port, data)
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_tls_against_openssl_s_server_tls13(tls_cert: tuple[Path, Path]) -> None:
    p, out = _handshake_with_s_server(tls_cert, [], {"sni": "localhost"})
    assert p.matches(out)
    assert out["handshake_type"] == "server_hello"
    assert out["version"] == "TLSv1.3"
    assert out["cipher"] in ("0x1301", "0x1302", "0x1303")
    assert out["key_share_group"] == "x25519" and out["hello_retry_request"] is False


def test_tls_against_openssl_s_server_tls12_alpn(tls_cert: tuple[Path, Path]) -> None:
    p, out = _handshake_with_s_server(tls_cert, ["-tls1_2", "-alpn", "http/1.1"], {})
    assert p.matches(out)
    assert out["version"] == "TLSv1.2"
    assert out["cipher_name"] is not None and out["cipher_name"].startswith("TLS_ECDHE_ECDSA_")
    assert out["alpn"] == "http/1.1"
    assert out["handshake_messages"][0] == "server_hello"


# -- ssh ----------------------------------------------------------------------------------------------------


def test_ssh_openssh() -> None:
    p = get_probe("ssh")
    assert p.server_first and p.payload("192.0.2.1", 22) == b"" and p.fixed_payload == b""
    out = parse("ssh", sample("ssh__openssh_9_2"))
    assert out == {
        "protocol_version": "2.0",
        "software": "OpenSSH_9.2p1",
        "comments": "Debian-2+deb12u3",
        "raw": "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3",
        "pre_banner": None,
    }
    assert p.matches(out)


def test_ssh_variants() -> None:
    out = parse("ssh", sample("ssh__dropbear"))
    assert (out["software"], out["comments"]) == ("dropbear_2022.83", None)
    out = parse("ssh", b"SSH-1.99-Cisco-1.25\n")
    assert (out["protocol_version"], out["software"]) == ("1.99", "Cisco-1.25")
    out = parse("ssh", b"Welcome\r\nno abuse\r\nSSH-2.0-OpenSSH_8.0\r\n\x00\x00\x04\x3c\x0a\x14kexinit")
    assert out["pre_banner"] == "Welcome\nno abuse" and out["software"] == "OpenSSH_8.0"
    out = parse("ssh", b"SSH-2.0-OpenSSH_7.4\r\n\x00\x00\x05\xdc\x06\x14\xff\xfe")
    assert out["raw"] == "SSH-2.0-OpenSSH_7.4"
    out = parse("ssh", b"SSH-2.0-Ope")  # truncated
    assert out["software"] == "Ope" and out["protocol_version"] == "2.0"
    out = parse("ssh", b"SSH-")
    assert out["protocol_version"] == "" and out["software"] is None
    assert not get_probe("ssh").matches(parse("ssh", b"Protocol mismatch.\n"))


# -- ftp / smtp ---------------------------------------------------------------------------------------------


def test_ftp() -> None:
    assert parse("ftp", sample("ftp__vsftpd")) == {
        "code": 220,
        "text": "(vsFTPd 3.0.5)",
        "software": "vsFTPd 3.0.5",
    }
    out = parse("ftp", sample("ftp__proftpd_multiline"))
    assert out["code"] == 220 and out["software"] == "ProFTPD 1.3.8"
    assert out["text"].split("\n") == [
        "Welcome to the example.org archive",
        "All transfers are logged.",
        "ProFTPD 1.3.8 Server (Debian) [::ffff:192.0.2.10]",
    ]
    assert get_probe("ftp").matches(out)
    out = parse("ftp", b"421 Too many connections (8) from this IP\r\n")
    assert out == {"code": 421, "text": "Too many connections (8) from this IP", "software": None}
    assert parse("ftp", b"220 Microsoft FTP Service\r\n")["software"] == "Microsoft FTP Service"
    assert (
        parse("ftp", b"220-FileZilla Server 1.8.0\r\n220 Please visit")["software"]
        == "FileZilla Server 1.8.0"
    )
    assert parse("ftp", b"22")["code"] is None
    assert parse("ftp", b"220")["code"] == 220
    assert parse("ftp", b"2200 x")["code"] is None
    assert not get_probe("ftp").matches(parse("ftp", sample("ssh__openssh_9_2")))


def test_smtp() -> None:
    out = parse("smtp", sample("smtp__postfix"))
    assert out == {
        "code": 220,
        "text": "mail.example.com ESMTP Postfix (Debian/GNU)",
        "hostname": "mail.example.com",
        "esmtp": True,
        "software": "Postfix",
    }
    out = parse("smtp", sample("smtp__exim_multiline"))
    assert out["hostname"] == "mx.example.org" and out["software"] == "Exim 4.96"
    assert out["text"].endswith("and/or bulk e-mail.")
    assert parse("smtp", b"220 mx ESMTP\r\n")["hostname"] == "mx"
    assert parse("smtp", b"220 [192.0.2.5] ESMTP ready\r\n")["hostname"] == "[192.0.2.5]"
    assert parse("smtp", b"220 ESMTP service ready\r\n")["hostname"] is None
    assert parse("smtp", b"220 Welcome\r\n")["hostname"] is None
    out = parse("smtp", b"554 5.7.1 Service unavailable; client blocked\r\n")
    assert out["code"] == 554 and out["hostname"] is None and out["esmtp"] is False
    assert get_probe("smtp").matches(out)
    assert not get_probe("smtp").matches(parse("smtp", b"+OK hi\r\n"))


# -- pop3 / imap --------------------------------------------------------------------------------------------


def test_pop3() -> None:
    out = parse("pop3", sample("pop3__dovecot"))
    assert out == {"status": "+OK", "text": "Dovecot (Debian) ready.", "apop": False}
    assert get_probe("pop3").matches(out)
    out = parse("pop3", b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n")
    assert out["apop"] is True
    assert parse("pop3", b"-ERR [SYS/TEMP] too many connections\r\n")["status"] == "-ERR"
    assert parse("pop3", b"+OK")["text"] == ""
    assert parse("pop3", b"+OKAY")["status"] is None
    assert not get_probe("pop3").matches(parse("pop3", sample("imap__dovecot")))


def test_imap() -> None:
    out = parse("imap", sample("imap__dovecot"))
    assert out == {
        "status": "OK",
        "capabilities": [
            "IMAP4rev1", "SASL-IR", "LOGIN-REFERRALS", "ID", "ENABLE", "IDLE", "LITERAL+", "STARTTLS",
            "LOGINDISABLED",
        ],
        "starttls": True,
        "text": "Dovecot (Debian) ready.",
    }  # fmt: skip
    assert get_probe("imap").matches(out)
    out = parse("imap", b"* PREAUTH [CAPABILITY IMAP4rev1] Logged in as alice\r\n")
    assert (out["status"], out["capabilities"], out["text"]) == (
        "PREAUTH",
        ["IMAP4rev1"],
        "Logged in as alice",
    )
    out = parse("imap", b"* BYE Too many connections\r\n")
    assert out["status"] == "BYE" and out["capabilities"] is None and out["text"] == "Too many connections"
    out = parse("imap", b"* ok Microsoft Exchange Server IMAP4 service is ready.\r\n")
    assert out["status"] == "OK" and out["starttls"] is None
    out = parse("imap", b"* OK [CAPABILITY IMAP4rev1 STARTT")  # truncated
    assert out["capabilities"] == ["IMAP4rev1", "STARTT"] and out["starttls"] is False
    out = parse("imap", b"* OK [ALERT] maintenance tonight\r\n")
    assert out["capabilities"] is None and out["text"] == "maintenance tonight"
    assert not get_probe("imap").matches(parse("imap", b"+OK Dovecot ready.\r\n"))


# -- telnet -------------------------------------------------------------------------------------------------


def test_telnet() -> None:
    out = parse("telnet", sample("telnet__netkit"))
    assert out == {
        "negotiations": [
            {"cmd": "DO", "option": 24},
            {"cmd": "DO", "option": 32},
            {"cmd": "DO", "option": 35},
            {"cmd": "DO", "option": 39},
        ],
        "text": "",
    }
    assert get_probe("telnet").matches(out)
    out = parse("telnet", sample("telnet__router"))
    assert [n["cmd"] for n in out["negotiations"]] == ["WILL", "WILL", "DO", "DO"]
    assert out["text"] == "RT-AX58U login:"


def test_telnet_edge_cases() -> None:
    # Subnegotiation (with an escaped IAC inside), a bare GA, a literal 255 and a trailing lone IAC.
    data = b"\xff\xfa\x18\x01\xff\xff\xf0\xff\xf0" + b"\xff\xf9" + b"Hi\xff\xffthere\r\n\xff"
    out = parse("telnet", data)
    assert out["negotiations"] == [{"cmd": "SB", "option": 24}, {"cmd": "GA", "option": None}]
    assert out["text"] == "Hi\\xffthere"
    assert parse("telnet", b"\xff\xfd")["negotiations"] == []
    assert parse("telnet", b"\xff\xfa\x18\x01")["negotiations"] == [{"cmd": "SB", "option": 24}]
    assert parse("telnet", b"\xff\xfb\x01" * 500)["negotiations"] is not None
    assert len(parse("telnet", b"\xff\xfb\x01" * 500)["negotiations"]) == 64
    out = parse("telnet", b"")
    assert out == {"negotiations": [], "text": ""} and not get_probe("telnet").matches(out)


# -- redis --------------------------------------------------------------------------------------------------


def test_redis_payload() -> None:
    p = get_probe("redis")
    assert p.payload("192.0.2.1", 6379) == b"*1\r\n$4\r\nPING\r\n" == p.fixed_payload
    assert (
        get_probe("redis", {"cmd": "info"}).payload("192.0.2.1", 6379)
        == b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"
    )
    with pytest.raises(ProbeArgError):
        get_probe("redis", {"cmd": "flushall"})


def test_redis_parse() -> None:
    out = parse("redis", sample("redis__pong"))
    assert out == {
        "type": "simple_string",
        "value": "PONG",
        "pong": True,
        "error": None,
        "auth_required": False,
        "redis_version": None,
        "redis_mode": None,
        "os": None,
    }
    assert get_probe("redis").matches(out)
    out = parse("redis", sample("redis__noauth"))
    assert (out["type"], out["error"], out["auth_required"], out["pong"]) == (
        "error", "NOAUTH Authentication required.", True, False,
    )  # fmt: skip
    out = parse("redis", sample("redis__info"), {"cmd": "info"})
    assert out["type"] == "bulk_string" and out["redis_version"] == "7.2.4"
    assert out["redis_mode"] == "standalone" and out["os"] == "Linux 6.1.0-18-amd64 x86_64"
    trunc = sample("redis__info")[:60]
    assert parse("redis", trunc)["redis_version"] == "7.2.4"
    out = parse("redis", b"-DENIED Redis is running in protected mode because protected mode is enabled\r\n")
    assert out["error"].startswith("DENIED") and out["auth_required"] is False
    assert parse("redis", b":42\r\n")["value"] == "42"
    assert parse("redis", b"+PO")["pong"] is False
    for junk in (b"HTTP/1.1 400 Bad Request\r\n", b"$ssh\r\n", b"*x\r\n"):
        out = parse("redis", junk)
        assert out["type"] is None and not get_probe("redis").matches(out)


# -- mysql --------------------------------------------------------------------------------------------------


def test_mysql_handshake() -> None:
    p = get_probe("mysql")
    assert p.server_first and p.default_port == 3306
    out = parse("mysql", sample("mysql__8_0_36"))
    assert out == {
        "packet_length": 74,
        "sequence": 0,
        "protocol_version": 10,
        "server_version": "8.0.36",
        "connection_id": 13,
        "capabilities": 0xDFFFFFFF,
        "character_set": 255,
        "status_flags": 2,
        "auth_plugin": "caching_sha2_password",
        "error_code": None,
        "sql_state": None,
        "error_message": None,
    }
    assert p.matches(out)
    out = parse("mysql", sample("mysql__mariadb_10_11"))
    assert out["server_version"] == "5.5.5-10.11.6-MariaDB-0+deb12u1"
    assert out["connection_id"] == 31 and out["auth_plugin"] == "mysql_native_password"


def test_mysql_errors() -> None:
    out = parse("mysql", sample("mysql__host_denied"))
    assert out["error_code"] == 1130 and out["sql_state"] is None
    assert out["error_message"] == "Host '192.0.2.7' is not allowed to connect to this MySQL server"
    assert out["server_version"] is None and get_probe("mysql").matches(out)
    payload = b"\xff\x10\x04#08004Too many connections"
    out = parse("mysql", len(payload).to_bytes(3, "little") + b"\x00" + payload)
    assert (out["error_code"], out["sql_state"], out["error_message"]) == (
        1040,
        "08004",
        "Too many connections",
    )


def test_mysql_truncated_and_foreign() -> None:
    data = sample("mysql__8_0_36")
    for n in range(len(data) + 1):
        out = parse("mysql", data[:n])
        if n >= 5 + len("8.0.36") + 1:
            assert out["server_version"] == "8.0.36"
    assert parse("mysql", data[:12])["connection_id"] is None
    assert parse("mysql", data[:20])["connection_id"] == 13
    p = get_probe("mysql")
    for data in (sample("ssh__openssh_9_2"), sample("http__nginx_301"), b"\x05\x00\x00\x01\x0aabc"):
        out = p.parse("192.0.2.1", 3306, data)
        assert not p.matches(out)


# -- hello --------------------------------------------------------------------------------------------------


def test_hello_payload_forms(tmp_path: Path) -> None:
    p = get_probe("hello", {"payload": "GET / HTTP/1.0\\r\\n\\r\\n"})
    assert p.payload("192.0.2.1", 80) == b"GET / HTTP/1.0\r\n\r\n" == p.fixed_payload
    assert p.server_first is False
    assert get_probe("hello", {"payload": "a\\x00\\xffb\\\\\\t"}).payload("x", 1) == b"a\x00\xffb\\\t"
    assert get_probe("hello", {"hex": "de ad:be ef"}).payload("x", 1) == b"\xde\xad\xbe\xef"
    f = tmp_path / "payload.bin"
    f.write_bytes(b"\x01\x02hello")
    p = get_probe("hello", {"file": str(f)})
    f.write_bytes(b"changed")  # read once at init
    assert p.payload("x", 1) == b"\x01\x02hello"
    empty = get_probe("hello")
    assert empty.server_first is True and empty.payload("x", 1) == b"" and empty.fixed_payload == b""
    assert get_probe("hello", {"payload": ""}).server_first is True


@pytest.mark.parametrize(
    "args",
    [
        {"payload": "a", "hex": "00"},
        {"hex": "zz"},
        {"payload": "bad \\q escape"},
        {"payload": "trailing \\"},
        {"payload": "\\x4"},
        {"file": "/nonexistent/zbanner-probe-payload"},
        {"regex": "(unclosed"},
        {"hex": "00" * 2000},
    ],
)
def test_hello_bad_args(args: dict[str, str]) -> None:
    with pytest.raises(ProbeArgError):
        get_probe("hello", args)


def test_hello_parse_and_regex() -> None:
    p = get_probe("hello")
    out = p.parse("192.0.2.1", 9, sample("hello__generic"))
    assert out == {
        "banner": "HELLO example-daemon 1.4\r\nready\r\n",
        "length": 33,
        "matched": None,
        "groups": None,
    }
    assert p.matches(out) and not p.matches(p.parse("192.0.2.1", 9, b""))
    r = get_probe("hello", {"regex": r"example-daemon (\d+)\.(\d+)"})
    out = r.parse("192.0.2.1", 9, sample("hello__generic"))
    assert out["matched"] is True and out["groups"] == ["1", "4"] and r.matches(out)
    out = r.parse("192.0.2.1", 9, b"nope\xff")
    assert out["matched"] is False and out["groups"] == [] and not r.matches(out)
    assert out["banner"] == "nope\\xff"
    opt = get_probe("hello", {"regex": r"(a)?(b)"}).parse("192.0.2.1", 9, b"b")
    assert opt["groups"] == [None, "b"]


def test_package_exports() -> None:
    for name in (
        "Probe",
        "ProbeArgError",
        "UnknownProbeError",
        "get_probe",
        "all_probes",
        "parse_probe_args",
    ):
        assert hasattr(probes, name)
    assert issubclass(ProbeArgError, ValueError) and issubclass(UnknownProbeError, ValueError)


# -- UDP and ICMP probes ----------------------------------------------------------------------------------


def test_udp_dns_query_template_and_response() -> None:
    p = get_probe("udp-dns")
    t = p.udp_template()
    assert t[:2] == b"\x00\x00" and t[2:4] == b"\x01\x00" and b"\x07example\x03com\x00" in t
    assert (p.cookie_offset, p.cookie_len, p.reply_cookie_offset) == (0, 2, 0)
    out = p.parse("192.0.2.1", 53, sample("udp-dns__noerror_a"))
    assert out["id"] == 0x1234 and out["qr"] is True and out["rcode_name"] == "NOERROR"
    assert (out["ancount"], out["question"], out["answer_type"], out["answer_ttl"]) == (
        1,
        "example.com.",
        "A",
        300,
    )
    assert out["answer_data"] == "93.184.215.14" and p.matches(out)
    refused = p.parse("192.0.2.1", 53, sample("udp-dns__refused"))
    assert refused["rcode_name"] == "REFUSED" and refused["answer_data"] is None and p.matches(refused)
    assert (
        get_probe("udp-dns", {"name": "zbanner.lab", "qtype": "AAAA"})
        .udp_template()
        .endswith(b"\x00\x1c\x00\x01")
    )
    with pytest.raises(ProbeArgError):
        get_probe("udp-dns", {"qtype": "NOPE"})


def test_udp_ntp_request_and_response() -> None:
    p = get_probe("udp-ntp")
    t = p.udp_template()
    assert (
        len(t) == 48
        and t[0] == 0x23
        and (p.cookie_offset, p.cookie_len, p.reply_cookie_offset) == (40, 4, 24)
    )
    out = p.parse("192.0.2.1", 123, sample("udp-ntp__stratum2"))
    assert (out["version"], out["mode"], out["mode_name"], out["stratum"]) == (4, 4, "server", 2)
    assert out["reference_id"] == "192.0.2.1" and p.matches(out)
    assert out["transmit_time"] == pytest.approx(3970000001 - 2208988800 + 0.25)


def test_icmp_echo_payload() -> None:
    p = get_probe("icmp-echo")
    assert p.transport == "icmp" and not p.handshake and p.payload("192.0.2.1", 0) == p.fixed_payload
