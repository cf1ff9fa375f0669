"""IPv6 targets: parsing, list files, the space's indexing, its bound and the one-family rule."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import numpy as np
import pytest

from zbanner_xdp import targets
from zbanner_xdp.targets import (
    ADDR6_DTYPE,
    TargetError,
    TargetSpace,
    TargetSpace6,
    addr6_ints,
    iter_batches,
    parse_target6,
)


def v6(text: str) -> int:
    return int(ipaddress.IPv6Address(text))


def test_parse_prefix_address_and_range() -> None:
    assert parse_target6("2001:2::/120") == (v6("2001:2::"), v6("2001:2::100"))
    assert parse_target6("2001:2::17/120") == (v6("2001:2::"), v6("2001:2::100"))  # host bits ignored
    assert parse_target6("2001:2::5") == (v6("2001:2::5"), v6("2001:2::6"))
    assert parse_target6("2001:2::5-2001:2::7") == (v6("2001:2::5"), v6("2001:2::8"))


@pytest.mark.parametrize(
    "bad", ["2001:2::/129", "2001:2::/", "2001:2::/012", "fe80::1%eth0", "2001:2::7-2001:2::5", "2001::2::1"]
)
def test_parse_errors_are_one_line(bad: str) -> None:
    with pytest.raises(TargetError) as exc:
        TargetSpace.build([bad], "80", blocklist="/dev/null")
    assert str(exc.value) == f"invalid target '{bad}'"


def test_space_enumerates_every_address_once_across_the_64_bit_carry(tmp_path: Path) -> None:
    # A range straddling the low word's wrap: the carry must reach the high word.
    lo, hi = "2001:2:0:1:ffff:ffff:ffff:fffe", "2001:2:0:2::1"
    space = TargetSpace.build([f"{lo}-{hi}"], "80,443", blocklist="/dev/null")
    assert isinstance(space, TargetSpace6) and space.family == 6
    assert (space.n_addrs, space.size) == (4, 8)
    addrs, ports = next(iter_batches(space, seed=3, batch=100))
    assert addrs.dtype == ADDR6_DTYPE
    got = sorted(zip(addr6_ints(addrs), ports.tolist(), strict=True))
    want = sorted((v6(lo) + i, p) for i in range(4) for p in (80, 443))
    assert got == want
    # The records' bytes are the packet's address bytes (network order).
    first = addrs[np.argsort(addr6_ints(addrs))[0]]
    assert bytes(np.array([first]).view(np.uint8)) == ipaddress.IPv6Address(lo).packed


def test_shards_are_disjoint_and_complete() -> None:
    space = TargetSpace.build(["2001:2::/118"], "80", blocklist="/dev/null")
    seen: list[int] = []
    for shard in range(3):
        for addrs, _ in iter_batches(space, seed=9, shards=3, shard=shard, batch=200):
            seen += addr6_ints(addrs)
    assert sorted(seen) == [v6("2001:2::") + i for i in range(1024)]


def test_too_large_is_one_line() -> None:
    too_large = r"^IPv6 target space too large: 18446744073709551616 addresses x 1 "
    with pytest.raises(TargetError, match=too_large):
        TargetSpace.build(["2001:2::/64"], "80", blocklist="/dev/null")
    # 2^61 pairs is within what the permutation orders (never materialised).
    assert TargetSpace.build(["2001:2::/67"], "80", blocklist="/dev/null").size == 1 << 61
    with pytest.raises(TargetError, match="too large"):
        TargetSpace.build(["2001:2::/67"], "80,443", blocklist="/dev/null")


def test_mixed_families_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match=r"^IPv4 and IPv6 targets in one scan: run one scan per family"):
        TargetSpace.build(["198.18.0.1", "2001:2::1"], "80", blocklist="/dev/null")
    listed = tmp_path / "t.txt"
    listed.write_text("2001:2::1\n")
    with pytest.raises(TargetError, match="one scan per family"):
        TargetSpace.build(["198.18.0.1"], "80", blocklist="/dev/null", list_of_targets=listed)


def test_list_files_and_block_allow_exclude(tmp_path: Path) -> None:
    listed = tmp_path / "t.txt"
    listed.write_text("# v6 targets\n2001:2::/124\n2001:2::100-2001:2::103\n")
    block = tmp_path / "block.txt"
    block.write_text("198.18.0.0/15\n2001:2::8/125\n")  # both families: each scan takes its own
    space = TargetSpace.build([], "80", blocklist=block, list_of_targets=listed, exclude=["2001:2::101"])
    addrs, _ = next(iter_batches(space, seed=1, batch=100))
    want = [v6("2001:2::") + i for i in range(8)] + [v6("2001:2::100"), v6("2001:2::102"), v6("2001:2::103")]
    assert sorted(addr6_ints(addrs)) == want
    assert space.contains("2001:2::100") and not space.contains("2001:2::101")
    allow = tmp_path / "allow.txt"
    allow.write_text("2001:2::100/126\n")
    space = TargetSpace.build([], "80", blocklist=block, allowlist=allow, list_of_targets=listed)
    assert space.n_addrs == 4
    # An IPv4 scan with the same mixed blocklist is unchanged by its IPv6 lines.
    space4 = TargetSpace.build(["198.20.0.0/30"], "80", blocklist=block)
    assert space4.family == 4 and space4.n_addrs == 4


def test_bad_v6_line_names_file_and_line(tmp_path: Path) -> None:
    listed = tmp_path / "t.txt"
    listed.write_text("2001:2::1\n2001:2::/200\n")
    with pytest.raises(TargetError) as exc:
        TargetSpace.build([], "80", blocklist="/dev/null", list_of_targets=listed)
    assert str(exc.value) == f"{listed}:2: invalid CIDR '2001:2::/200'"


def test_checkpoint_digest_differs_by_family() -> None:
    a = TargetSpace.build(["2001:2::/120"], "80", blocklist="/dev/null")
    assert a.intervals.shape == (1, 4)
    assert targets.expected_count(a) == 256
