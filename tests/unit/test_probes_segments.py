"""Probes past the first segment (--banner-bytes): TLS 1.2 hellos and certificates, completeness."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.unit.test_probes import parse_client_hello
from zbanner_xdp.probes import ProbeArgError, get_probe


def _cert(key, subject: str, issuer: str, sans: list[x509.GeneralName] | None = None) -> bytes:
    start = datetime.datetime(2026, 1, 2, 3, 4, 5)
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(0x0123456789ABCDEF0123)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=90))
    )
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _u24(n: int) -> bytes:
    return n.to_bytes(3, "big")


def _records(handshakes: bytes, size: int = 2**14) -> bytes:
    return b"".join(
        b"\x16\x03\x03" + len(c).to_bytes(2, "big") + c
        for c in (handshakes[i : i + size] for i in range(0, len(handshakes), size))
    )


def _server_hello(extensions: bytes = b"") -> bytes:
    body = b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\xc0\x2f" + b"\x00" + len(extensions).to_bytes(2, "big")
    return b"\x02" + _u24(len(body) + len(extensions)) + body + extensions


SERVER_HELLO = _server_hello()


def _flight(ders: list[bytes]) -> bytes:
    chain = b"".join(_u24(len(d)) + d for d in ders)
    cert_msg = b"\x0b" + _u24(3 + len(chain)) + _u24(len(chain)) + chain
    return SERVER_HELLO + cert_msg + b"\x0e\x00\x00\x00"


@pytest.fixture(scope="module")
def chain() -> list[bytes]:
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    sans = [x509.DNSName("a.example"), x509.IPAddress(ipaddress.ip_address("192.0.2.7"))]
    return [_cert(leaf_key, "a.example", "Example CA", sans), _cert(ca_key, "Example CA", "Example CA")]


def test_certificate_fields_only_when_capturing_segments(chain: list[bytes]) -> None:
    data = _records(_flight(chain), size=1000)  # the handshake split over several records
    plain = get_probe("tls", {"max_version": "1.2"})
    assert "certificate" not in plain.parse("192.0.2.7", 443, data)  # a default scan's record as it was
    p = get_probe("tls", {"max_version": "1.2"})
    p.capture_segments()
    out = p.parse("192.0.2.7", 443, data)
    assert out["chain_length"] == 2
    assert out["handshake_messages"] == ["server_hello", "certificate", "server_hello_done"]
    assert out["certificate"] == {
        "sha256": hashlib.sha256(chain[0]).hexdigest(),
        "parsed": True,
        "subject": "CN=a.example",
        "issuer": "CN=Example CA",
        "serial": "123456789abcdef0123",
        "not_before": "2026-01-02T03:04:05Z",
        "not_after": "2026-04-02T03:04:05Z",
        "subject_alt_names": ["a.example", "192.0.2.7"],
        "public_key_type": "rsa",
        "public_key_bits": 2048,
        "signature_algorithm": "sha256WithRSAEncryption",
    }


def test_unparsable_leaf_still_has_its_sha256() -> None:
    junk = b"\x30\x03\x02\x01\x00"
    p = get_probe("tls")
    p.capture_segments()
    out = p.parse("192.0.2.7", 443, _records(_flight([junk])))
    assert out["certificate"] == {"sha256": hashlib.sha256(junk).hexdigest(), "parsed": False}
    assert out["chain_length"] == 1


def test_tls_complete_at_the_whole_certificate_not_before(chain: list[bytes]) -> None:
    p = get_probe("tls", {"max_version": "1.2"})
    data = _records(_flight(chain)[:-4])  # no ServerHelloDone: the Certificate message ends it
    end = len(data)
    assert p.complete(data)
    assert not any(p.complete(data[:n]) for n in range(0, end - 1, 37))
    assert p.complete(_records(SERVER_HELLO) + b"\x15\x03\x03\x00\x02\x02\x28")  # an alert ends it
    assert p.complete(_records(_server_hello(b"\x00\x2b\x00\x02\x03\x04")))  # TLS 1.3: the rest is encrypted
    assert p.complete(b"SSH-2.0-x\r\n")  # not TLS: nothing to wait for


def test_tls12_hello_offers_no_tls13() -> None:
    p = get_probe("tls", {"max_version": "1.2"})
    ch = parse_client_hello(p.payload("192.0.2.1", 443))
    assert not {43, 45, 51} & set(ch["extensions"])
    assert not [c for c in ch["ciphers"] if c >> 8 == 0x13] and 0xC02F in ch["ciphers"]
    assert len(p.payload("192.0.2.1", 443)) == len(p.payload("203.0.113.200", 1))
    seed, ranges = p.kernel_ranges() or (0, [])
    assert len(ranges) == 2  # random and session id; no key share
    assert get_probe("tls", {"max_version": "1.3"}).payload("192.0.2.1", 443) == get_probe("tls").payload(
        "192.0.2.1", 443
    )


@pytest.mark.parametrize("bad", ["1.1", "1.4", "", "tls1.2"])
def test_tls_max_version_refused(bad: str) -> None:
    with pytest.raises(ProbeArgError, match="max_version must be 1.2 or 1.3"):
        get_probe("tls", {"max_version": bad})


def test_http_complete_at_head_and_title() -> None:
    p = get_probe("http")
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
    assert not p.complete(head)
    assert not p.complete(head + b"\r\n<html><head><tit")
    assert p.complete(head + b"\r\n<html><head><title>x</title>")
    assert p.complete(head.replace(b"text/html", b"image/png") + b"\r\n")
    assert p.complete(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: text/html\r\n\r\nabc")
    assert p.complete(b"\x00\x01binary")
    assert not p.complete(b"HTT")
    assert get_probe("http", {"method": "HEAD"}).complete(head + b"\r\n")


def test_line_protocols_complete_at_the_end_of_a_line() -> None:
    p = get_probe("ssh")
    assert not p.complete(b"SSH-2.0-OpenSSH_9.2p1 Deb")
    assert p.complete(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
