"""IPv6 frames (SYN, ACK+payload, RST, UDP, ICMPv6 echo) against an independent checksum and dpkt's parse."""

from __future__ import annotations

import ipaddress
import struct

import dpkt
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from zbanner_xdp import packets
from zbanner_xdp.targets import addr6_array

US = int(ipaddress.IPv6Address("2001:2:ff::1"))
LINK = packets.LinkParams(b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02", US, 64, family=6)


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _l4_checksum_ok(ip6: dpkt.ip6.IP6, proto: int) -> bool:
    """RFC 8200 8.1: the upper-layer checksum over the pseudo header verifies to 0xffff."""
    l4 = bytes(ip6.data) if not isinstance(ip6.data, bytes) else ip6.data
    pseudo = ip6.src + ip6.dst + struct.pack("!IxxxB", len(l4), proto)
    return _csum(pseudo + l4) == 0xFFFF


def _frames(frames: np.ndarray, lens: np.ndarray) -> list[dpkt.ethernet.Ethernet]:
    return [dpkt.ethernet.Ethernet(frames[i, : lens[i]].tobytes()) for i in range(len(lens))]


@settings(max_examples=50, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 2**128 - 1),
            st.integers(1, 65535),
            st.integers(0, 2**32 - 1),
            st.binary(max_size=40),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_tcp_frames_v6(rows: list[tuple[int, int, int, bytes]]) -> None:
    daddr = addr6_array(r[0] for r in rows)
    pay, plen = packets.payload_matrix([r[3] for r in rows])
    frames, lens = packets.tcp_frames(
        LINK,
        daddr,
        np.array([r[1] for r in rows]),
        np.full(len(rows), 40000),
        np.array([r[2] for r in rows], np.uint32),
        7,
        packets.ACK | packets.PSH,
        1024,
        payload=pay if pay.shape[1] else None,
        payload_len=plen if pay.shape[1] else None,
    )
    for eth, (dst, dport, seq, data) in zip(_frames(frames, lens), rows, strict=True):
        assert eth.type == dpkt.ethernet.ETH_TYPE_IP6
        ip6 = eth.data
        assert (ip6.v, ip6.nxt, ip6.hlim, ip6.plen) == (6, 6, 64, 20 + len(data))
        assert ip6.src == US.to_bytes(16, "big") and ip6.dst == dst.to_bytes(16, "big")
        tcp = ip6.data
        assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack, tcp.win, tcp.data) == (
            40000,
            dport,
            seq,
            7,
            1024,
            data,
        )
        assert _l4_checksum_ok(ip6, 6)


def test_syn_udp_echo_v6() -> None:
    daddr = addr6_array(
        [int(ipaddress.IPv6Address("2001:2::5")), int(ipaddress.IPv6Address("2001:2:0:1::ff"))]
    )
    f, n = packets.syn_frames(
        LINK, daddr, np.array([80, 443]), np.array([40000, 40001]), np.array([1, 2], np.uint32)
    )
    for eth in _frames(f, n):
        assert eth.data.data.flags == dpkt.tcp.TH_SYN and _l4_checksum_ok(eth.data, 6)
        assert len(eth) == 14 + 40 + 24  # MSS option
    pay = np.tile(np.frombuffer(b"\x12\x34query", np.uint8), (2, 1))
    f, n = packets.udp_frames(LINK, daddr, np.array([53, 53]), np.array([40002, 40003]), pay, np.zeros(2))
    for eth in _frames(f, n):
        assert eth.data.nxt == 17 and eth.data.data.data == b"\x12\x34query" and _l4_checksum_ok(eth.data, 17)
    sums = packets.udp_checksums(LINK, daddr, np.array([53, 53]), np.array([40002, 40003]), pay)
    assert sums.tolist() == [e.data.data.sum for e in _frames(f, n)]
    f, n = packets.icmp_echo_frames(LINK, daddr, np.array([0x1234, 1]), np.array([0x5678, 2]), b"zb")
    for eth in _frames(f, n):
        icmp = eth.data.data
        assert eth.data.nxt == 58 and icmp.type == 128 and _l4_checksum_ok(eth.data, 58)


def test_describe_v6() -> None:
    daddr = addr6_array([int(ipaddress.IPv6Address("2001:2::5"))])
    f, n = packets.syn_frames(LINK, daddr, np.array([80]), np.array([40000]), np.array([1], np.uint32))
    line = packets.describe(f[0, : n[0]].tobytes())
    assert (
        line.startswith("TCP [S] [2001:2:ff::1]:40000 -> [2001:2::5]:80 seq=0x00000001") and "len=0" in line
    )
    f, n = packets.icmp_echo_frames(LINK, daddr, np.array([1]), np.array([2]), b"")
    assert packets.describe(f[0, : n[0]].tobytes()).startswith("ICMPv6 echo [2001:2:ff::1] -> [2001:2::5]")
