import dpkt
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from zbanner_xdp import packets

LINK = packets.LinkParams(b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02", 0x0A4D0001, 200)


def _checksums_ok(frame: bytes) -> tuple[dpkt.ip.IP, dpkt.tcp.TCP]:
    """Recompute both checksums with dpkt (an independent implementation)."""
    eth = dpkt.ethernet.Ethernet(frame)
    ip = eth.data
    tcp = ip.data
    got_ip, got_tcp = ip.sum, tcp.sum
    ip.sum = 0
    tcp.sum = 0
    again = dpkt.ethernet.Ethernet(bytes(eth))  # dpkt fills in checksums on pack
    assert again.data.sum == got_ip
    assert again.data.data.sum == got_tcp
    return ip, tcp


def test_syn_frame_fields_and_checksums() -> None:
    frames, lens = packets.syn_frames(
        LINK,
        np.array([0xC6120005], np.uint32),
        np.array([443]),
        np.array([40001]),
        np.array([0xDEADBEEF], np.uint32),
    )
    frame = frames[0, : lens[0]].tobytes()
    ip, tcp = _checksums_ok(frame)
    assert (
        ip.ttl == 200 and ip.p == 6 and ip.dst == bytes([198, 18, 0, 5]) and ip.src == bytes([10, 77, 0, 1])
    )
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack) == (40001, 443, 0xDEADBEEF, 0)
    assert tcp.flags == dpkt.tcp.TH_SYN
    assert dpkt.tcp.parse_opts(tcp.opts) == [(dpkt.tcp.TCP_OPT_MSS, b"\x05\xb4")]
    assert len(frame) == 14 + 20 + 24


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 2**32 - 1),
            st.integers(1, 65535),
            st.integers(1, 65535),
            st.integers(0, 2**32 - 1),
            st.integers(0, 2**32 - 1),
            st.binary(max_size=300),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_payload_frames_match_dpkt(rows: list) -> None:
    daddr = np.array([r[0] for r in rows], np.uint32)
    dport = np.array([r[1] for r in rows])
    sport = np.array([r[2] for r in rows])
    seq = np.array([r[3] for r in rows], np.uint32)
    ack = np.array([r[4] for r in rows], np.uint32)
    pay, plen = packets.payload_matrix([r[5] for r in rows])
    frames, lens = packets.tcp_frames(
        LINK,
        daddr,
        dport,
        sport,
        seq,
        ack,
        packets.ACK | packets.PSH,
        1024,
        payload=pay if pay.shape[1] else None,
        payload_len=plen if pay.shape[1] else None,
    )
    for i, r in enumerate(rows):
        ip, tcp = _checksums_ok(frames[i, : lens[i]].tobytes())
        assert bytes(tcp.data) == r[5]
        assert (tcp.seq, tcp.ack, tcp.win) == (r[3], r[4], 1024)


def test_describe_is_one_line() -> None:
    frames, lens = packets.syn_frames(
        LINK, np.array([0xC6120005], np.uint32), np.array([80]), np.array([40000]), np.array([1], np.uint32)
    )
    line = packets.describe(frames[0, : lens[0]].tobytes())
    assert line == (
        "TCP [S] 10.77.0.1:40000 -> 198.18.0.5:80 seq=0x00000001 ack=0x00000000 win=65535 ttl=200 "
        "len=0 dmac=02:00:00:00:00:02"
    )


def test_bad_mac() -> None:
    import pytest

    with pytest.raises(ValueError, match="invalid MAC address 'zz'"):
        packets.mac_bytes("zz")


def test_udp_frames_match_dpkt() -> None:
    pay, _ = packets.payload_matrix([b"\x12\x34hello dns"])
    frames, lens = packets.udp_frames(
        LINK, np.array([0xC6120005], np.uint32), np.array([53]), np.array([40000]), pay, np.array([7])
    )
    eth = dpkt.ethernet.Ethernet(frames[0, : lens[0]].tobytes())
    ip, udp = eth.data, eth.data.data
    got_ip, got_udp = ip.sum, udp.sum
    ip.sum = udp.sum = 0
    again = dpkt.ethernet.Ethernet(bytes(eth))
    assert (again.data.sum, again.data.data.sum) == (got_ip, got_udp)
    assert (udp.sport, udp.dport, bytes(udp.data), ip.id, ip.ttl) == (40000, 53, b"\x12\x34hello dns", 7, 200)
    assert packets.udp_checksums(
        LINK, np.array([0xC6120005], np.uint32), np.array([53]), np.array([40000]), pay
    ).tolist() == [got_udp]


def test_icmp_echo_frames_match_dpkt() -> None:
    frames, lens = packets.icmp_echo_frames(
        LINK, np.array([0xC6120005], np.uint32), np.array([0xABCD]), np.array([0x1234]), b"zbanner"
    )
    eth = dpkt.ethernet.Ethernet(frames[0, : lens[0]].tobytes())
    icmp = eth.data.data
    assert isinstance(icmp, dpkt.icmp.ICMP) and icmp.type == 8
    assert (icmp.data.id, icmp.data.seq, bytes(icmp.data.data)) == (0xABCD, 0x1234, b"zbanner")
    got = icmp.sum
    icmp.sum = 0
    assert dpkt.icmp.ICMP(bytes(icmp)).sum == got  # dpkt recomputes a zeroed checksum on pack
