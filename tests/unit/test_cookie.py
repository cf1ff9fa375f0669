import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from zbanner_xdp.cookie import cookie_scalar, cookie_scalar6, cookies, siphash24
from zbanner_xdp.targets import addr6_array

KEY = bytes(range(16))

# From the SipHash reference implementation (vectors.h, SipHash-2-4, 64-bit
# output, key 00..0f, message 00..len-1), and the paper's worked example.
VECTORS = {
    0: 0x726FDB47DD0E0E31,
    12: 0x751E8FBC860EE5FB,
    15: 0xA129CA6149BE45E5,
}


def test_reference_vectors() -> None:
    for length, expected in VECTORS.items():
        assert siphash24(KEY, bytes(range(length))) == expected


def test_cookie_is_siphash_of_the_four_tuple_in_network_order() -> None:
    # 10.77.0.1:40000 -> 198.18.0.5:80
    msg = bytes([10, 77, 0, 1, 198, 18, 0, 5, 0x9C, 0x40, 0, 80])
    assert cookie_scalar(KEY, 0x0A4D0001, 0xC6120005, 40000, 80) == siphash24(KEY, msg) & 0xFFFFFFFF


@settings(max_examples=200, deadline=None)
@given(
    key=st.binary(min_size=16, max_size=16),
    ours=st.integers(0, 2**32 - 1),
    theirs=st.lists(
        st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 65535), st.integers(0, 65535)),
        min_size=1,
        max_size=20,
    ),
)
def test_vectorised_matches_reference(key: bytes, ours: int, theirs: list[tuple[int, int, int]]) -> None:
    ips = np.array([t[0] for t in theirs], dtype=np.uint32)
    dports = np.array([t[1] for t in theirs], dtype=np.uint16)
    sports = np.array([t[2] for t in theirs], dtype=np.uint16)
    got = cookies(key, ours, ips, sports, dports)
    want = [
        cookie_scalar(key, ours, int(i), int(s), int(d)) for i, s, d in zip(ips, sports, dports, strict=True)
    ]
    assert got.tolist() == want


# IPv6 (the 36-byte message): a vector fixed here, checked by the C side too (tests/integration/
# test_xdp_program.py runs zb_cookie6 on frames carrying it). Reference SipHash of the message
# 2001:2::1 | 2001:2::5 | 40000 | 80 under KEY.
V6_US = 0x20010002000000000000000000000001
V6_THEM = 0x20010002000000000000000000000005


def test_cookie6_is_siphash_of_the_36_byte_message() -> None:
    msg = V6_US.to_bytes(16, "big") + V6_THEM.to_bytes(16, "big") + bytes([0x9C, 0x40, 0, 80])
    assert len(msg) == 36
    assert cookie_scalar6(KEY, V6_US, V6_THEM, 40000, 80) == siphash24(KEY, msg) & 0xFFFFFFFF


def test_siphash_reference_vectors_at_v6_length() -> None:
    # vectors.h (SipHash-2-4, 64-bit output), messages 00..len-1, key 00..0f: lengths 32..36, which
    # exercise the v6 cookie's four full words and its 4-byte tail.
    assert siphash24(KEY, bytes(range(32))) == 0x7127512F72F27CCE
    assert siphash24(KEY, bytes(range(36))) == 0x314DFFBE0815A3B4
    assert siphash24(KEY, bytes(range(63))) == 0x958A324CEB064572


@settings(max_examples=200, deadline=None)
@given(
    key=st.binary(min_size=16, max_size=16),
    ours=st.integers(0, 2**128 - 1),
    theirs=st.lists(
        st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 65535), st.integers(0, 65535)),
        min_size=1,
        max_size=20,
    ),
)
def test_vectorised_v6_matches_reference(key: bytes, ours: int, theirs: list[tuple[int, int, int]]) -> None:
    ips = addr6_array(t[0] for t in theirs)
    dports = np.array([t[1] for t in theirs], dtype=np.uint16)
    sports = np.array([t[2] for t in theirs], dtype=np.uint16)
    got = cookies(key, ours, ips, sports, dports)
    want = [cookie_scalar6(key, ours, t[0], t[2], t[1]) for t in theirs]
    assert got.tolist() == want
