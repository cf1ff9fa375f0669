"""The XDP program of an IPv6 scan, run by the kernel on hand-made IPv6 frames (BPF_PROG_TEST_RUN).

As for IPv4 (test_xdp_program.py): the C cookie over 128-bit addresses meets the Python one, our
replies are consumed and recorded with whole addresses, and everything else, neighbour discovery
above all, passes untouched.
"""

from __future__ import annotations

import ipaddress
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.test_xdp_program import _plan_prog
from zbanner_xdp import bpfsys
from zbanner_xdp.cookie import cookie_scalar6
from zbanner_xdp.events import EVENT6_DTYPE, Counter
from zbanner_xdp.targets import addr6_array, addr6_ints

pytestmark = pytest.mark.privileged

XDP_DROP, XDP_PASS, XDP_TX = 1, 2, 3
KEY = bytes(range(16))
US = int(ipaddress.IPv6Address("2001:2:ff::1"))
THEM = int(ipaddress.IPv6Address("2001:2::5"))
# The same last 32 bits as THEM: only a whole-address cookie and dedup key tell them apart.
THEM_TWIN = int(ipaddress.IPv6Address("2001:2:0:7::5"))
SPORT = 40000
LO, HI = 32768, 61000
ETH6 = b"\x02" * 6 + b"\x04" * 6 + b"\x86\xdd"


def ip6(nexthdr: int, src: int, body: bytes, dst: int = US, hop: int = 61, ext: bytes = b"") -> bytes:
    """Ethernet + IPv6 (+ `ext`, extension headers whose first next-header is `nexthdr`) + body."""
    first = ext[0:0]
    hdr = struct.pack("!IHBB", 6 << 28, len(ext) + len(body), nexthdr, hop)
    return ETH6 + hdr + src.to_bytes(16, "big") + dst.to_bytes(16, "big") + first + ext + body


def tcp(
    sport: int, dport: int, seq: int, ack: int, flags: int, window: int = 64240, payload: bytes = b""
) -> bytes:
    # The checksum is not the program's business (the kernel checks what it passes on).
    return (
        struct.pack("!HHIIBBHHH", sport, dport, seq, ack & 0xFFFFFFFF, 5 << 4, flags, window, 0, 0) + payload
    )


def cookie(sport: int = SPORT, them: int = THEM, dport: int = 80) -> int:
    return cookie_scalar6(KEY, US, them, sport, dport)


class Prog6:
    def __init__(self, probes: list[tuple[str, dict[str, str]]] | None = None, port: int = 80) -> None:
        self.p, self.ring, self.plan = _plan_prog(probes or [("synscan", {})], port, src_ip=US, family=6)

    def run(self, frame: bytes) -> int:
        ret, _ = bpfsys.prog_test_run(self.p.prog_fd, frame)
        return ret

    def drain(self) -> tuple[np.ndarray, np.ndarray]:
        small, big, _ = self.ring.poll(0)  # (no short ring here)
        return small, big

    def close(self) -> None:
        self.ring.close()
        self.p.close()


@pytest.fixture(scope="module")
def synprog():
    p = Prog6()
    yield p
    p.close()


@pytest.fixture(scope="module")
def httpprog():
    p = Prog6([("http", {})])
    yield p
    p.close()


def sport_of(plan, them: int, dport: int = 80, variant: int = 0) -> int:
    return int(plan.source_ports(KEY, US, addr6_array([them]), np.array([dport], np.uint16), variant)[0])


def test_synack_consumed_and_recorded_with_the_whole_address(synprog: Prog6) -> None:
    c = cookie(sport=40010)
    assert synprog.run(ip6(6, THEM, tcp(80, 40010, 777, c + 1, 0x12))) == XDP_DROP
    small, big = synprog.drain()
    assert len(small) == 1 and len(big) == 0 and small.dtype == EVENT6_DTYPE
    e = small[0]
    assert e["kind"] == 1 and e["seq"] == 777 and e["ack"] == (c + 1) & 0xFFFFFFFF
    assert (e["sport"], e["dport"], e["ttl"], e["window"], e["repeat"]) == (80, 40010, 61, 64240, 0)
    assert addr6_ints(small["saddr6"]) == [THEM]
    assert small["saddr"][0] == int.from_bytes(THEM.to_bytes(16, "big")[12:], "little")


def test_cookie_covers_the_whole_address(synprog: Prog6) -> None:
    """THEM's cookie is wrong for a target sharing its last 32 bits: passed and counted."""
    c = cookie(sport=40011)
    before = synprog.p.counters()[Counter.BAD_COOKIE]
    assert synprog.run(ip6(6, THEM_TWIN, tcp(80, 40011, 1, c + 1, 0x12))) == XDP_PASS
    for ack in (c, c + 2):
        assert synprog.run(ip6(6, THEM, tcp(80, 40011, 1, ack, 0x12))) == XDP_PASS
    assert synprog.p.counters()[Counter.BAD_COOKIE] == before + 3
    assert len(synprog.drain()[0]) == 0


def test_dedup_keys_on_the_whole_address(synprog: Prog6) -> None:
    c1, c2 = cookie(sport=40012), cookie(sport=40012, them=THEM_TWIN)
    assert synprog.run(ip6(6, THEM, tcp(80, 40012, 5, c1 + 1, 0x12))) == XDP_DROP
    assert synprog.run(ip6(6, THEM_TWIN, tcp(80, 40012, 5, c2 + 1, 0x12))) == XDP_DROP
    assert synprog.run(ip6(6, THEM, tcp(80, 40012, 5, c1 + 1, 0x12))) == XDP_DROP  # a network duplicate
    small, _ = synprog.drain()
    assert sorted(addr6_ints(small["saddr6"])) == sorted([THEM, THEM_TWIN])
    assert small["repeat"].tolist() == [0, 0]


def test_rst_validated_and_bare(synprog: Prog6) -> None:
    c = cookie(sport=40013)
    assert synprog.run(ip6(6, THEM, tcp(80, 40013, 0, c + 1, 0x14))) == XDP_DROP
    # A bare RST: only its port slot says it is ours.
    good = sport_of(synprog.plan, THEM)
    assert synprog.run(ip6(6, THEM, tcp(80, good, 0, 0, 0x04))) == XDP_DROP
    assert synprog.run(ip6(6, THEM, tcp(80, good + 1, 0, 0, 0x04))) == XDP_PASS
    small, _ = synprog.drain()
    assert small["kind"].tolist() == [2, 2] and small["flags"].tolist() == [0, 1]


def test_extension_headers_skipped_fragments_passed(synprog: Prog6) -> None:
    c = cookie(sport=40014)
    body = tcp(80, 40014, 9, c + 1, 0x12)
    # hop-by-hop (8 bytes: next = destination options), destination options (8 bytes: next = TCP)
    ext = bytes([60, 0, 1, 4, 0, 0, 0, 0]) + bytes([6, 0, 1, 4, 0, 0, 0, 0])
    assert synprog.run(ip6(0, THEM, body, ext=ext)) == XDP_DROP
    frag = bytes([6, 0, 0, 1, 0, 0, 0, 7])  # a first fragment: cannot be validated alone
    c2 = cookie(sport=40015)
    assert synprog.run(ip6(44, THEM, tcp(80, 40015, 9, c2 + 1, 0x12), ext=frag)) == XDP_PASS
    small, _ = synprog.drain()
    assert len(small) == 1 and small["seq"][0] == 9


def test_neighbour_discovery_and_ipv4_pass_untouched(synprog: Prog6) -> None:
    before = synprog.p.counters()
    ns = bytes([135, 0, 0, 0, 0, 0, 0, 0]) + US.to_bytes(16, "big") + bytes([1, 1]) + b"\x02" * 6
    na = bytes([136, 0, 0, 0, 0x60, 0, 0, 0]) + THEM.to_bytes(16, "big") + bytes([2, 1]) + b"\x04" * 6
    solicited = int(ipaddress.IPv6Address("ff02::1:ff00:1"))
    frames = [
        ip6(58, THEM, ns, dst=solicited, hop=255),  # to the solicited-node group
        ip6(58, THEM, ns, hop=255),  # unicast, to us
        ip6(58, THEM, na, hop=255),
        ip6(58, THEM, bytes([134, 0, 0, 0, 64, 0, 0, 0]) + bytes(8), hop=255),  # router advertisement
        ip6(58, THEM, bytes([128, 0, 0, 0, 0, 1, 0, 1])),  # an echo request to us: the kernel answers
        ETH6[:12] + b"\x08\x00" + bytes(40),  # IPv4
    ]
    for f in frames:
        out, ret = None, None
        ret, out = bpfsys.prog_test_run(synprog.p.prog_fd, f)
        assert ret == XDP_PASS and out == f
    after = synprog.p.counters()
    assert after[Counter.PASS] - before[Counter.PASS] == len(frames)
    assert after[Counter.BAD_COOKIE] == before[Counter.BAD_COOKIE]
    assert len(synprog.drain()[0]) == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    groups=st.lists(st.sampled_from([0, 0, 0, 1, 0x1F, 0x2A0, 0xBEEF]), min_size=8, max_size=8),
)
def test_banner_ack_counts_the_address_text_as_python_writes_it(httpprog: Prog6, groups: list[int]) -> None:
    """HTTP's Host: [address]: the program computes the RFC 5952 text's length (zero runs, hex
    without leading zeros) exactly as Python's ipaddress, or the banner would not validate."""
    them = int.from_bytes(b"".join(g.to_bytes(2, "big") for g in groups), "big")
    probe = httpprog.plan.probes[0]
    plen = len(probe.payload(str(ipaddress.IPv6Address(them)), 80))
    sport = sport_of(httpprog.plan, them)
    c = cookie_scalar6(KEY, US, them, sport, 80)
    before = int(httpprog.p.counters()[Counter.BANNER])
    reply = tcp(80, sport, 5000, c + 1 + plen, 0x18, payload=b"HTTP/1.1 200 OK\r\n")
    assert httpprog.run(ip6(6, them, reply)) == XDP_DROP
    # Counted as a banner (before the duplicate filter: a repeated example is still one).
    assert int(httpprog.p.counters()[Counter.BANNER]) == before + 1
    small, big = httpprog.drain()
    assert [int(k) for k in big["h"]["kind"]] in ([4], [])
    assert httpprog.run(ip6(6, them, tcp(80, sport, 5000, c + 2 + plen, 0x18, payload=b"x"))) == XDP_PASS


def test_icmp6_errors_linked_to_the_probe_and_echo_replies() -> None:
    p = Prog6([("synscan", {}), ("icmp-echo", {})])
    try:
        router = int(ipaddress.IPv6Address("2001:2:ff::2"))
        sport = sport_of(p.plan, THEM)
        c = cookie(sport=sport)
        syn = struct.pack("!IHBB", 6 << 28, 20, 6, 64) + US.to_bytes(16, "big") + THEM.to_bytes(16, "big")
        syn += tcp(sport, 80, c, 0, 0x02)
        unreach = bytes([1, 3, 0, 0, 0, 0, 0, 0]) + syn
        assert p.run(ip6(58, router, unreach)) == XDP_DROP
        forged = bytes([1, 3, 0, 0, 0, 0, 0, 0]) + syn[:44] + (c + 100).to_bytes(4, "big") + syn[48:]
        assert p.run(ip6(58, router, forged)) == XDP_PASS
        ec = cookie_scalar6(KEY, US, THEM, 0, 0)
        echo = bytes([129, 0, 0, 0]) + (ec >> 16).to_bytes(2, "big") + (ec & 0xFFFF).to_bytes(2, "big")
        assert p.run(ip6(58, THEM, echo)) == XDP_DROP
        assert p.run(ip6(58, THEM_TWIN, echo)) == XDP_PASS
        small, _ = p.drain()
        assert small["kind"].tolist() == [5, 7]
        assert addr6_ints(small["saddr6"]) == [THEM, THEM]
        assert addr6_ints(small["icmp_responder6"][:1]) == [router]
        assert (small["icmp_type"][0], small["icmp_code"][0], small["sport"][0]) == (1, 3, 80)
    finally:
        p.close()


# In-kernel replies over IPv6: every TCP probe's, the address's RFC 5952 text included (http's
# Host: [...], jarm's), with tls's per-target ranges.
TEMPLATED6 = [("tls", {}), ("ssh", {}), ("redis", {}), ("http", {}), ("jarm", {}), ("synscan", {})]


@pytest.fixture(scope="module")
def tprog6():
    prog, ring, plan = _plan_prog(
        TEMPLATED6, 443, src_ip=US, family=6, kernel_replies=True, ttl=64, ack_window=1024
    )
    kps = plan.kernel_payloads(6)
    assert all(k is not None for k in kps)
    yield prog, ring, plan
    ring.close()
    prog.close()


# Groups that give every shape of text: zero runs anywhere (the first longest is "::", leading and
# trailing ones included), single zero groups, 1-4 hex digits.
GROUP = st.sampled_from([0, 0, 0, 0, 1, 0xA, 0x1F, 0x2A0, 0xBEEF, 0xFFFF])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    groups=st.lists(GROUP, min_size=8, max_size=8),
    port=st.integers(1, 65535),
    entry=st.integers(0, 63),
)
def test_kernel_answers6_equal_user_space_frames_byte_for_byte(
    tprog6, groups: list[int], port: int, entry: int
) -> None:
    """The program's answer to an IPv6 SYN-ACK (ACK + payload, or RST for a SYN scan) is, byte for byte,
    the frame user space builds (packets.py, IPv6 pseudo-header checksum included), the address's
    text in http's and jarm's payloads as Python's ipaddress writes it."""
    from zbanner_xdp import packets

    them = int.from_bytes(b"".join(g.to_bytes(2, "big") for g in groups), "big")
    prog, ring, plan = tprog6
    entry %= plan.P
    probe = plan.probes[entry]
    sport = sport_of(plan, them, port, entry)
    c = cookie_scalar6(KEY, US, them, sport, port)
    repeats = prog.counter(Counter.REPEAT)
    ret, out = bpfsys.prog_test_run(prog.prog_fd, ip6(6, them, tcp(port, sport, 777, c + 1, 0x12)))
    ring.poll(0)
    if prog.counter(Counter.REPEAT) > repeats:
        return  # hypothesis ran this target before: a duplicate, rightly not answered again
    assert ret == XDP_TX, (probe.name, prog.counter(Counter.NO_ROOM))
    link = packets.LinkParams(b"\x02" * 6, b"\x04" * 6, US, 64, family=6)
    args = (link, addr6_array([them]), np.array([port]), np.array([sport]), np.array([(c + 1) & 0xFFFFFFFF]))
    if probe.handshake:
        payload = probe.payload(str(ipaddress.IPv6Address(them)), port)
        pay, plen = packets.payload_matrix([payload])
        want, n = packets.tcp_frames(
            *args, 778, packets.ACK | (packets.PSH if payload else 0), 1024,
            payload=pay if payload else None, payload_len=plen if payload else None,
        )  # fmt: skip
    else:
        want, n = packets.tcp_frames(*args, 0, packets.RST, 0)
    assert out == want[0, : n[0]].tobytes(), (probe.name, str(ipaddress.IPv6Address(them)))
