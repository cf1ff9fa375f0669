"""--banner-bytes against the lab's real servers: answers reassembled past their first segment.

HTTP: with a 64-byte --ack-window nginx's head comes in several segments; the record holds the whole
head and the title, byte for byte what a stateful client reads (the Date header aside). TLS
(max_version=1.2): the leaf certificate of nginx equals `openssl x509 -fingerprint -sha256` of the
lab's certificate file; an `openssl s_server` with a three-certificate chain of 4096-bit keys
(several KiB, many segments) gives its chain length and leaf. Bounded: a table of a few connections
evicts (counted) and never holds more.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.conftest import ROOT
from tests.integration.conftest import NO_DROPS, python_in_scan_ns, read_records, run_scanner
from tests.integration.test_fast_paths import emulated
from zbanner_xdp import lab
from zbanner_xdp.lab import emulator as emu_mod

pytestmark = pytest.mark.privileged

NET = "198.18.0.0/28"
TARGETS = [str(a) for a in ipaddress.ip_network(NET)]

FULL_RESPONSE = r"""
import json, socket, sys
from zbanner_xdp.probes import get_probe
addr, port, args = sys.argv[1], int(sys.argv[2]), dict(a.split("=", 1) for a in sys.argv[3:])
probe = get_probe("http", args)
s = socket.create_connection((addr, port), timeout=5)
s.sendall(probe.payload(addr, port))
data = b""
while chunk := s.recv(65536):
    data += chunk
s.close()
sys.stdout.write(data.hex())
"""


def stateful_response(addr: str, port: int, *args: str) -> bytes:
    return bytes.fromhex(python_in_scan_ns(FULL_RESPONSE, addr, str(port), *args, timeout=60))


def without_date(response: bytes) -> bytes:
    return b"\r\n".join(ln for ln in response.split(b"\r\n") if not ln.lower().startswith(b"date:"))


def scan(
    tmp_path: Path, blocklist: str, *args: str, net: str = NET, rate: str = "500"
) -> tuple[list[dict], dict]:
    out, meta = tmp_path / "out.jsonl", tmp_path / "meta.json"
    r = run_scanner(
        *("--blocklist", blocklist, "--rate", rate, "--cooldown", "3", "-o", str(out)),
        *("--metadata", str(meta), "scan", net, "--no-kernel-replies", *args),
    )
    assert r.returncode == 0, r.stderr
    return read_records(out), orjson.loads(meta.read_bytes())


def banners(recs: list[dict]) -> dict[str, dict]:
    got = [x for x in recs if x["classification"] == "banner"]
    by_addr = {x["saddr"]: x for x in got}
    assert len(by_addr) == len(got), "one banner record per target"
    return by_addr


def test_http_whole_response_over_many_segments(lab_up, tmp_path: Path, empty_blocklist: str) -> None:
    # A 64-byte window: nginx's head alone takes several segments.
    recs, meta = scan(
        tmp_path, empty_blocklist, "-p", "80", "--probe", "http", "--ack-window", "64", "--banner-bytes", "8K"
    )
    got = banners(recs)
    assert sorted(got) == sorted(TARGETS)
    truth = without_date(stateful_response(TARGETS[0], 80))
    assert b"<title>zbanner-xdp lab</title>" in truth
    for addr, rec in got.items():
        # The head whole and the title: complete there (the rest of the page may follow in the same
        # segment, or not), every byte the server's.
        data = without_date(base64.b64decode(rec["data"]))
        assert truth.startswith(data) and b"</title>" in data, addr
        assert rec["truncated"] is False
        assert rec["http"]["title"] == "zbanner-xdp lab"
        assert rec["http"]["server"].startswith("nginx")
        assert rec["http"]["headers"]["content-length"] == str(len(truth.split(b"\r\n\r\n", 1)[1]))
    seg = meta["segments"]
    assert seg["ends"]["complete"] == len(TARGETS) and seg["truncated"] == 0
    assert seg["out_of_order_segments"] == 0 and seg["untracked_segments"] == 0
    # The head took more than one segment, each but the last acked.
    assert seg["segments_taken"] >= 2 * len(TARGETS) and seg["acks_sent"] >= len(TARGETS)
    assert meta["drops"] == NO_DROPS


def openssl_sha256(cert: str) -> str:
    out = subprocess.run(
        ["openssl", "x509", "-in", cert, "-noout", "-fingerprint", "-sha256"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return out.strip().split("=", 1)[1].replace(":", "").lower()


def test_tls_certificate_of_nginx(lab_up, tmp_path: Path, empty_blocklist: str) -> None:
    recs, meta = scan(
        *(tmp_path, empty_blocklist, "-p", "443", "--probe", "tls"),
        *("--probe-args", "max_version=1.2", "--banner-bytes", "16K"),
    )
    got = banners(recs)
    assert sorted(got) == sorted(TARGETS)
    want = openssl_sha256(os.path.join(lab.STATE_DIR, "tls", "lab.crt"))
    for addr, rec in got.items():
        tls = rec["tls"]
        assert tls["version"] == "TLSv1.2", addr
        assert tls["handshake_messages"][:2] == ["server_hello", "certificate"]
        assert tls["chain_length"] == 1
        cert = tls["certificate"]
        assert cert["sha256"] == want
        assert cert["parsed"] is True
        assert cert["subject"] == cert["issuer"] == "CN=zbanner-lab"
        assert (cert["public_key_type"], cert["public_key_bits"]) == ("rsa", 2048)
        assert cert["signature_algorithm"] == "sha256WithRSAEncryption"
        assert rec["truncated"] is False
    assert meta["segments"]["ends"]["complete"] == len(TARGETS)
    assert meta["drops"] == NO_DROPS


CHAIN_PORT = 8443


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def chain_server(lab_up, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """openssl s_server in the target namespace with a root -> intermediate -> leaf chain, 4096-bit
    RSA keys (about 4.5 KiB of certificates: many segments)."""
    d = tmp_path_factory.mktemp("chain")
    (d / "ca.ext").write_text("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n")
    (d / "leaf.ext").write_text("subjectAltName=DNS:leaf.zbanner.lab,DNS:www.zbanner.lab,IP:198.18.0.1\n")
    _openssl(
        *("req", "-x509", "-newkey", "rsa:4096", "-nodes", "-subj", "/CN=zbanner root", "-days", "30"),
        *("-keyout", "root.key", "-out", "root.crt"),
        cwd=d,
    )
    for name, issuer, ext in (("mid", "root", "ca.ext"), ("leaf", "mid", "leaf.ext")):
        subj = "/CN=zbanner intermediate" if name == "mid" else "/O=zbanner lab/CN=leaf.zbanner.lab"
        _openssl("req", "-newkey", "rsa:4096", "-nodes", "-subj", subj, "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", cwd=d)  # fmt: skip
        _openssl(
            *("x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.crt", "-CAkey", f"{issuer}.key"),
            *("-CAcreateserial", "-days", "30", "-extfile", ext, "-out", f"{name}.crt"),
            cwd=d,
        )
    (d / "chain.crt").write_text((d / "mid.crt").read_text() + (d / "root.crt").read_text())
    argv = [
        *("openssl", "s_server", "-quiet", "-accept", str(CHAIN_PORT), "-tls1_2"),
        *("-cert", str(d / "leaf.crt"), "-key", str(d / "leaf.key"), "-cert_chain", str(d / "chain.crt")),
    ]
    proc = subprocess.Popen(
        lab.ns_exec_argv(lab.TARGET_NS, argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            probe = subprocess.run(
                lab.ns_exec_argv(lab.TARGET_NS, ["ss", "-Hltn", f"sport = :{CHAIN_PORT}"]),
                capture_output=True,
                text=True,
                timeout=10,
            )
            if probe.stdout.strip():
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("openssl s_server did not start")
        yield {"leaf": str(d / "leaf.crt")}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_tls_three_certificate_chain_over_many_segments(
    chain_server: dict[str, str], tmp_path: Path, empty_blocklist: str
) -> None:
    recs, meta = scan(
        *(tmp_path, empty_blocklist, "-p", str(CHAIN_PORT), "--probe", "tls"),
        *("--probe-args", "max_version=1.2", "--banner-bytes", "16K"),
        net="198.18.0.0/30",
    )
    got = banners(recs)
    assert len(got) == 4
    want = openssl_sha256(chain_server["leaf"])
    for addr, rec in got.items():
        tls = rec["tls"]
        assert tls["chain_length"] == 3, addr
        cert = tls["certificate"]
        assert cert["sha256"] == want
        assert cert["subject"] == "CN=leaf.zbanner.lab,O=zbanner lab"
        assert cert["issuer"] == "CN=zbanner intermediate"
        assert cert["subject_alt_names"] == ["leaf.zbanner.lab", "www.zbanner.lab", "198.18.0.1"]
        assert (cert["public_key_type"], cert["public_key_bits"]) == ("rsa", 4096)
        assert cert["not_before"].endswith("Z") and cert["not_after"] > cert["not_before"]
        assert len(base64.b64decode(rec["data"])) > 3 * 1024  # three certificates of 4096-bit keys
    seg = meta["segments"]
    assert seg["ends"]["complete"] == 4 and seg["segments_taken"] >= 4 * 5
    assert meta["drops"] == NO_DROPS


def test_table_cap_honoured_and_evictions_counted(lab_up, tmp_path: Path, empty_blocklist: str) -> None:
    # 64 handshakes within 13 ms, each answer ~10 segments long, for a table of 4 connections.
    path = f"path={lab.BIG_PAGE}"
    recs, meta = scan(
        *(tmp_path, empty_blocklist, "-p", "80", "--probe", "http", "--probe-args", path),
        *("--banner-bytes", "16K", "--banner-table", "4"),
        net="198.18.0.0/26",
        rate="5K",
    )
    truth = without_date(stateful_response(TARGETS[0], 80, path))
    got = banners(recs)
    seg = meta["segments"]
    assert seg["max_connections"] == 4 and seg["peak_connections"] == 4
    assert seg["evicted"] > 0 and seg["ends"]["evicted"] == seg["evicted"]
    cut = [x for x in got.values() if x["truncated"]]
    assert len(cut) == seg["truncated"] == seg["evicted"] + seg["ends"]["timeout"] + seg["ends"]["scan_end"]
    for addr, rec in got.items():
        data = without_date(base64.b64decode(rec["data"]))
        assert truth.startswith(data) if rec["truncated"] else data == truth, addr
    # Every handshake ends as a record, or evicted before its first byte (and its data then reset).
    synacks = meta["responses"]["synack"]
    assert len(got) + seg["dropped_without_data"] == synacks == 64
    print(f"\ntable of 4: {len(got)} records, {len(cut)} truncated, {seg}")


def test_server_first_greeting_complete_at_its_line_end(lab_up, tmp_path: Path, empty_blocklist: str) -> None:
    # sshd speaks first; its version line ends the answer (it then waits for ours): no timeout.
    recs, meta = scan(
        tmp_path, empty_blocklist, "-p", "22", "--probe", "ssh", "--banner-bytes", "4K", net="198.18.0.0/30"
    )
    got = banners(recs)
    assert len(got) == 4
    for rec in got.values():
        assert rec["banner"].startswith("SSH-2.0-OpenSSH") and rec["banner"].endswith("\r\n")
        assert rec["truncated"] is False and rec["ssh"]["software"].startswith("OpenSSH")
    assert meta["segments"]["ends"]["complete"] == 4 and meta["duration_s"] < 8


# --------------------------------------------------------------------------- the emulator's canned response
# The XDP emulator on the router's veth answers EMU_NET with a canned response, statelessly, one segment
# per ACK of ours (what the bench's certs-emu measures): every open target's record is that response,
# byte for byte.

EMU_NET = "198.19.7.0/28"
EMU_TARGETS = [str(a) for a in ipaddress.ip_network(EMU_NET)]
TLS_SAMPLE = ROOT / "tests" / "data" / "probes" / "tls__tls12_certificates.bin"


def leaf_sha256(response: bytes) -> str:
    """The first certificate of a TLS 1.2 answer's Certificate message, hashed: read here by hand."""
    hs, i = b"", 0
    while i < len(response):  # handshake records' bodies, joined (a message may span records)
        n = int.from_bytes(response[i + 3 : i + 5], "big")
        hs += response[i + 5 : i + 5 + n]
        i += 5 + n
    j = 0
    while hs[j] != 11:  # to the Certificate message
        j += 4 + int.from_bytes(hs[j + 1 : j + 4], "big")
    der_len = int.from_bytes(hs[j + 7 : j + 10], "big")
    return hashlib.sha256(hs[j + 10 : j + 10 + der_len]).hexdigest()


def test_emulator_canned_tls_response_whole(lab_up, tmp_path: Path, empty_blocklist: str) -> None:
    sample = TLS_SAMPLE.read_bytes()
    tls_args = ("-p", "443", "--probe", "tls", "--probe-args", "max_version=1.2")
    emu = ("--response-file", str(TLS_SAMPLE), "--segment-bytes", "128")  # 685 bytes: 6 segments
    with emulated(EMU_NET, *emu) as counters:
        recs, meta = scan(tmp_path, empty_blocklist, *tls_args, "--banner-bytes", "16K", net=EMU_NET)
    got = banners(recs)
    assert sorted(got) == sorted(EMU_TARGETS)  # 100 % open
    want = leaf_sha256(sample)
    for addr, rec in got.items():
        assert base64.b64decode(rec["data"]) == sample, addr
        assert rec["truncated"] is False
        assert rec["tls"]["handshake_messages"][:2] == ["server_hello", "certificate"]
        assert rec["tls"]["chain_length"] == 2 and rec["tls"]["certificate"]["sha256"] == want
    seg = meta["segments"]
    assert seg["ends"]["complete"] == len(EMU_TARGETS) and seg["truncated"] == 0
    assert seg["segments_taken"] == 6 * len(EMU_TARGETS) and seg["out_of_order_segments"] == 0
    assert meta["drops"] == NO_DROPS
    # One first segment and five more per target, each answering one ACK of ours.
    assert (counters["banner"], counters["segment"]) == (len(EMU_TARGETS), 5 * len(EMU_TARGETS))
    assert counters["no_room"] == counters["bad_ack"] == 0

    # Without --banner-bytes the scan is what it was: the first segment, then a RST.
    with emulated(EMU_NET, *emu) as counters:
        recs, meta = scan(tmp_path, empty_blocklist, *tls_args, net=EMU_NET)
    got = banners(recs)
    assert sorted(got) == sorted(EMU_TARGETS)
    for addr, rec in got.items():
        assert base64.b64decode(rec["data"]) == sample[:128], addr
        assert rec["tls"]["version"] == "TLSv1.2" and "certificate" not in rec["tls"]
    assert meta.get("segments") is None and meta["drops"] == NO_DROPS
    assert (counters["banner"], counters["segment"]) == (len(EMU_TARGETS), 0)


def test_emulator_segments_halved_to_fit_a_veth(lab_up, tmp_path: Path, empty_blocklist: str) -> None:
    # 1,460-byte segments do not fit a veth's buffer after a bare ACK: the emulator halves them until
    # they do; the answer is the same bytes however it was cut.
    canned = emu_mod.canned_response(3000)
    with emulated(EMU_NET, "--response-bytes", "3000", "--server-first") as counters:
        recs, meta = scan(
            tmp_path, empty_blocklist, "-p", "22", "--probe", "ssh", "--banner-bytes", "4K", net=EMU_NET
        )
    got = banners(recs)
    assert sorted(got) == sorted(EMU_TARGETS)
    for addr, rec in got.items():
        assert base64.b64decode(rec["data"]) == canned and rec["truncated"] is False, addr
    assert meta["segments"]["ends"]["complete"] == len(EMU_TARGETS)
    assert counters["segment"] >= 3000 // 184 * len(EMU_TARGETS) and counters["no_room"] == 0
