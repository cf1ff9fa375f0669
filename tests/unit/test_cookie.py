import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from zbanner_xdp.cookie import cookie_scalar, cookies, siphash24

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
