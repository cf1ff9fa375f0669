"""Target space, allow/block lists, seeded permutation and shards (zbanner_xdp/targets.py)."""

from __future__ import annotations

import ipaddress
import itertools
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zbanner_xdp.targets import (
    ADDR_SPACE,
    DEFAULT_BLOCKLIST,
    EXACT_COUNT_LIMIT,
    Permutation,
    TargetError,
    TargetSpace,
    complement,
    expected_count,
    intersect,
    iter_batches,
    normalize,
    parse_ports,
    parse_targets,
    read_cidr_file,
    subtract,
    union,
)


def ip(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def pairs(space: TargetSpace, seed: int, **kw: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for addrs, ports in iter_batches(space, seed, **kw):
        assert addrs.dtype == np.uint32 and ports.dtype == np.uint16
        out.extend(zip(addrs.tolist(), ports.tolist(), strict=True))
    return out


def naive_pairs(space: TargetSpace) -> list[tuple[int, int]]:
    addrs = [a for s, e in space.intervals.tolist() for a in range(s, e)]
    return [(a, p) for a in addrs for p in space.ports.tolist()]


@pytest.fixture
def empty_file(tmp_path: Path) -> Path:
    path = tmp_path / "empty.conf"
    path.write_text("")
    return path


# --------------------------------------------------------------------------- ports


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("80", [80]),
        ("443,80", [80, 443]),
        ("80,443,8000-8003", [80, 443, 8000, 8001, 8002, 8003]),
        (" 22 , 21-23 ,22", [21, 22, 23]),
        ("1", [1]),
        ("65535", [65535]),
        ("5-5", [5]),
    ],
)
def test_parse_ports(spec: str, expected: list[int]) -> None:
    ports = parse_ports(spec)
    assert ports.dtype == np.uint16
    assert ports.tolist() == expected


def test_parse_ports_full_range() -> None:
    ports = parse_ports("1-65535")
    assert len(ports) == 65535 and ports[0] == 1 and ports[-1] == 65535


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("70000", "invalid port '70000'"),
        ("0", "invalid port '0'"),
        ("0-10", "invalid port '0-10'"),
        ("8100-8000", "invalid port '8100-8000'"),
        ("80,", "invalid port ''"),
        ("80,,443", "invalid port ''"),
        ("http", "invalid port 'http'"),
        ("1-", "invalid port '1-'"),
        ("-5", "invalid port '-5'"),
        ("1-2-3", "invalid port '1-2-3'"),
        ("", "empty port list"),
        ("  ", "empty port list"),
    ],
)
def test_parse_ports_errors(spec: str, message: str) -> None:
    with pytest.raises(TargetError) as exc:
        parse_ports(spec)
    assert str(exc.value) == message


# --------------------------------------------------------------------------- targets and files


def test_parse_targets() -> None:
    iv = parse_targets(["10.0.0.5", "192.168.1.0/24", "10.0.0.4/31,8.8.8.8"])
    assert iv.dtype == np.uint64
    assert iv.tolist() == [
        [ip("8.8.8.8"), ip("8.8.8.8") + 1],
        [ip("10.0.0.4"), ip("10.0.0.6")],
        [ip("192.168.1.0"), ip("192.168.2.0")],
    ]
    # Host bits below the prefix are ignored, as in ZMap.
    assert parse_targets(["10.1.2.3/8"]).tolist() == [[ip("10.0.0.0"), ip("11.0.0.0")]]
    assert parse_targets(["0.0.0.0/0"]).tolist() == [[0, ADDR_SPACE]]
    assert parse_targets([]).shape == (0, 2)


@pytest.mark.parametrize(
    "bad", ["1.2.3.4/33", "1.2.3", "256.0.0.1", "01.2.3.4", "1.2.3.4/", "1.2.3.4/-1", "::1", "", "a.b.c.d"]
)
def test_parse_targets_errors(bad: str) -> None:
    with pytest.raises(TargetError) as exc:
        parse_targets(["1.1.1.1", bad])
    assert str(exc.value) == f"invalid target '{bad}'"


def test_target_error_is_value_error() -> None:
    assert issubclass(TargetError, ValueError)


def test_read_cidr_file(tmp_path: Path) -> None:
    path = tmp_path / "list.conf"
    path.write_text(
        "# a comment line\n\n10.0.0.0/8\n   192.168.1.1   # trailing comment\n\t\n192.168.1.0/30#no space\n"
    )
    assert read_cidr_file(path).tolist() == [
        [ip("10.0.0.0"), ip("11.0.0.0")],
        [ip("192.168.1.0"), ip("192.168.1.4")],
    ]


def test_read_cidr_file_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.conf"
    path.write_text("# header\n10.0.0.0/8\n10.0.0.0/33 # oops\n")
    with pytest.raises(TargetError) as exc:
        read_cidr_file(path)
    assert str(exc.value) == f"{path}:3: invalid CIDR '10.0.0.0/33'"
    path.write_text("1.2.3.4 5.6.7.8\n")
    with pytest.raises(TargetError, match=r":1: invalid CIDR '1.2.3.4 5.6.7.8'$"):
        read_cidr_file(str(path))


def test_read_cidr_file_missing(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match=r"nope\.conf: No such file or directory"):
        read_cidr_file(tmp_path / "nope.conf")


# --------------------------------------------------------------------------- interval sets

# Small intervals near both ends of the address space, so complement's edges are exercised too.
_raw_intervals = st.lists(
    st.tuples(st.integers(0, 120), st.integers(0, 12), st.booleans()).map(
        lambda t: (t[0], t[0] + t[1]) if t[2] else (ADDR_SPACE - 1 - t[0] - t[1], ADDR_SPACE - t[0])
    ),
    max_size=8,
)


def as_set(iv: np.ndarray) -> set[int]:
    return {a for s, e in iv.tolist() for a in range(s, e)}


def raw_set(raw: list[tuple[int, int]]) -> set[int]:
    return {a for s, e in raw for a in range(s, e)}


def check_normal(iv: np.ndarray) -> None:
    assert iv.dtype == np.uint64 and iv.ndim == 2 and iv.shape[1] == 2
    flat = iv.ravel().tolist()
    # Strictly increasing boundaries: non-empty, sorted, disjoint and not touching (merged).
    assert all(x < y for x, y in itertools.pairwise(flat))


@settings(max_examples=150, deadline=None)
@given(_raw_intervals, _raw_intervals)
def test_interval_ops_match_sets(a_raw: list[tuple[int, int]], b_raw: list[tuple[int, int]]) -> None:
    a, b = normalize(a_raw), normalize(b_raw)
    sa, sb = raw_set(a_raw), raw_set(b_raw)
    for iv in (a, b, union(a, b), intersect(a, b), subtract(a, b), complement(a)):
        check_normal(iv)
    assert as_set(a) == sa
    assert as_set(union(a, b)) == sa | sb
    assert as_set(intersect(a, b)) == sa & sb
    assert as_set(subtract(a, b)) == sa - sb
    comp = complement(a)
    assert int((comp[:, 1] - comp[:, 0]).sum()) == ADDR_SPACE - len(sa)
    assert not as_set(intersect(comp, normalize([(0, 200), (ADDR_SPACE - 200, ADDR_SPACE)]))) & sa


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 500), st.integers(1, 20)), min_size=1, max_size=8),
    st.lists(st.integers(1, 65535), min_size=1, max_size=4),
)
def test_addrs_at_and_pair_at_match_naive(raw: list[tuple[int, int]], port_list: list[int]) -> None:
    space = TargetSpace([(s, s + n) for s, n in raw], np.array(port_list))
    addrs = sorted(raw_set([(s, s + n) for s, n in raw]))
    assert space.n_addrs == len(addrs)
    assert space.addrs_at(np.arange(space.n_addrs, dtype=np.uint64)).tolist() == addrs
    ports = sorted(set(port_list))
    expected = [(a, p) for a in addrs for p in ports]
    got_a, got_p = space.pair_at(np.arange(space.size, dtype=np.uint64))
    assert list(zip(got_a.tolist(), got_p.tolist(), strict=True)) == expected
    for a in range(0, 530):
        assert space.contains(a) == (a in set(addrs))


def test_pair_at_out_of_range() -> None:
    space = TargetSpace([(0, 4)], np.array([1, 2]))
    with pytest.raises(IndexError):
        space.pair_at([8])
    with pytest.raises(IndexError):
        space.addrs_at([4])


def test_host_order_integers(empty_file: Path) -> None:
    space = TargetSpace.build(["198.18.0.1"], parse_ports("80"), blocklist=empty_file)
    assert space.addrs_at([0]).tolist() == [0xC6120001]
    assert space.contains("198.18.0.1") and space.contains(0xC6120001)
    assert not space.contains("198.18.0.2")


# --------------------------------------------------------------------------- build: allow/block lists


def test_no_targets_is_ipv4_minus_default_blocklist() -> None:
    # 255.255.255.255/32 lies inside 240.0.0.0/4, so it must not be counted twice.
    nets = list(ipaddress.collapse_addresses(ipaddress.IPv4Network(c) for c in DEFAULT_BLOCKLIST))
    blocked = sum(n.num_addresses for n in nets)
    space = TargetSpace.build([], parse_ports("80,443"))
    assert space.n_addrs == ADDR_SPACE - blocked == 3_702_258_432
    assert space.n_ports == 2 and space.size == 2 * space.n_addrs
    for cidr in DEFAULT_BLOCKLIST:
        net = ipaddress.IPv4Network(cidr)
        assert not space.contains(str(net[0])) and not space.contains(str(net[-1]))
    for ok in ("1.1.1.1", "8.8.8.8", "9.255.255.255", "11.0.0.0", "223.255.255.255", "100.128.0.0"):
        assert space.contains(ok)


def test_default_blocklist_applies_to_targets() -> None:
    space = TargetSpace.build(["9.255.254.0/23", "192.168.0.1"], parse_ports("80"))
    assert space.intervals.tolist() == [[ip("9.255.254.0"), ip("10.0.0.0")]]
    with pytest.raises(TargetError) as exc:
        TargetSpace.build(["10.1.0.0/16", "127.0.0.1"], parse_ports("80"))
    assert str(exc.value) == "no targets left after allow/block lists"


def test_blocklist_file_replaces_default(tmp_path: Path) -> None:
    block = tmp_path / "block.conf"
    block.write_text("10.0.0.1  # just this one\n")
    space = TargetSpace.build(["10.0.0.0/30"], parse_ports("80"), blocklist=block)
    assert space.n_addrs == 3 and not space.contains("10.0.0.1")
    # The default list no longer applies: 192.168/16 is scannable.
    assert TargetSpace.build(["192.168.0.0/16"], parse_ports("80"), blocklist=block).n_addrs == 65536


def test_empty_blocklist_file_disables(empty_file: Path) -> None:
    space = TargetSpace.build([], parse_ports("80"), blocklist=empty_file)
    assert space.n_addrs == ADDR_SPACE
    assert space.intervals.tolist() == [[0, ADDR_SPACE]]


def test_allowlist(tmp_path: Path, empty_file: Path) -> None:
    allow = tmp_path / "allow.conf"
    allow.write_text("# allowed\n1.2.3.0/24\n10.0.0.0/8\n5.5.5.5\n")
    # Only an allowlist: it is the target set, minus the (default) blocklist.
    space = TargetSpace.build([], parse_ports("80"), allowlist=allow)
    assert space.intervals.tolist() == [[ip("1.2.3.0"), ip("1.2.4.0")], [ip("5.5.5.5"), ip("5.5.5.6")]]
    # TARGETs and allowlist intersect.
    space = TargetSpace.build(["1.2.3.128/25", "5.0.0.0/8", "7.7.7.7"], parse_ports("80"), allowlist=allow)
    assert space.intervals.tolist() == [[ip("1.2.3.128"), ip("1.2.4.0")], [ip("5.5.5.5"), ip("5.5.5.6")]]
    space = TargetSpace.build(["10.9.0.0/16"], parse_ports("80"), allowlist=allow, blocklist=empty_file)
    assert space.n_addrs == 65536
    with pytest.raises(TargetError, match="^no targets left after allow/block lists$"):
        TargetSpace.build(["7.7.7.7"], parse_ports("80"), allowlist=allow)
    with pytest.raises(TargetError, match="^no targets left after allow/block lists$"):
        TargetSpace.build([], parse_ports("80"), allowlist=empty_file)


def test_build_rejects_bad_ports() -> None:
    with pytest.raises(TargetError, match="^empty port list$"):
        TargetSpace.build(["1.2.3.4"], np.array([], dtype=np.uint16))
    with pytest.raises(TargetError):
        TargetSpace.build(["1.2.3.4"], np.array([0, 80]))
    assert TargetSpace.build(["1.2.3.4"], "443,80").ports.tolist() == [80, 443]


# --------------------------------------------------------------------------- permutation


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 13, 255, 256, 257, 1000, 4097])
def test_permutation_is_bijection_with_inverse(size: int) -> None:
    perm = Permutation(size, 42)
    assert perm.domain == max(4, 1 << (size - 1).bit_length())
    k = np.arange(perm.domain, dtype=np.uint64)
    v = perm.apply(k)
    assert np.array_equal(np.sort(v), k)
    assert np.array_equal(perm.inverse(v), k)


def test_permutation_scalar_and_large_domain() -> None:
    perm = Permutation(2**48 - 5, 7)
    assert perm.nbits == 48
    k = np.array([0, 1, 2**47, 2**48 - 1], dtype=np.uint64)
    v = perm.apply(k)
    assert (v < np.uint64(2**48)).all() and len(set(v.tolist())) == 4
    assert np.array_equal(perm.inverse(v), k)
    assert int(perm.apply(3)) == int(perm.apply([3])[0])


def test_permutation_looks_shuffled() -> None:
    v = Permutation(1 << 16, 3).apply(np.arange(1 << 16, dtype=np.uint64)).astype(np.int64)
    # Neither the identity nor a stride: few fixed points and few consecutive neighbours.
    assert (v == np.arange(1 << 16)).sum() < 10
    assert (np.diff(v) == 1).sum() < 10
    assert abs(np.corrcoef(v[:-1], v[1:])[0, 1]) < 0.05


@pytest.mark.parametrize("seed", [0, 0xDEADBEEF])
def test_every_pair_exactly_once_sizes_1_to_300(seed: int) -> None:
    for size in range(1, 301):
        space = TargetSpace([(1000, 1000 + size)], np.array([80]))
        got = pairs(space, seed, batch=64)
        assert len(got) == size
        assert sorted(got) == [(a, 80) for a in range(1000, 1000 + size)]


@pytest.mark.parametrize(
    ("targets", "ports"),
    [
        (["1.2.3.4"], "80"),
        (["1.2.3.4"], "80,443,8000-8002"),
        (["1.2.3.0/30", "9.9.9.9", "20.0.0.0/29"], "22"),
        (["1.2.3.0/29", "9.9.9.9", "20.0.0.0/28", "20.0.0.64/27"], "21-23,80,443"),
        (["100.0.0.0/22"], "7,13"),
    ],
)
@pytest.mark.parametrize("seed", [1, 99])
def test_every_pair_exactly_once_multi(targets: list[str], ports: str, seed: int, empty_file: Path) -> None:
    space = TargetSpace.build(targets, parse_ports(ports), blocklist=empty_file)
    got = pairs(space, seed, batch=97)
    assert len(got) == space.size
    assert sorted(got) == naive_pairs(space)


def test_seed_determines_order() -> None:
    space = TargetSpace([(5000, 5500)], np.array([80, 443]))
    a1, a2, b = pairs(space, 1), pairs(space, 1), pairs(space, 2)
    assert a1 == a2
    assert a1 != b and sorted(a1) == sorted(b)
    assert pairs(space, 3) != a1


def test_batches_are_full_except_last() -> None:
    space = TargetSpace([(0, 1001)], np.array([1, 2, 3]))
    sizes = [len(a) for a, _ in iter_batches(space, 5, batch=100)]
    assert sizes == [100] * 30 + [3]
    assert [len(a) for a, _ in iter_batches(space, 5, batch=1)] == [1] * 3003


# --------------------------------------------------------------------------- shards


@pytest.mark.parametrize("shards", [2, 3, 5])
@pytest.mark.parametrize("size", [1, 3, 7, 13, 101, 999])
def test_shards_partition(shards: int, size: int) -> None:
    space = TargetSpace([(77, 77 + size)], np.array([80]))
    whole = pairs(space, 11)
    parts = [pairs(space, 11, shards=shards, shard=i, batch=16) for i in range(shards)]
    counts = Counter(p for part in parts for p in part)
    assert sorted(counts) == sorted(whole) and set(counts.values()) == {1}
    for i, part in enumerate(parts):
        assert len(part) == expected_count(space, shards, i, seed=11)


def test_shard_order_follows_domain() -> None:
    space = TargetSpace([(0, 37)], np.array([80, 81]))
    perm = Permutation(space.size, 8)
    images = perm.apply(np.arange(perm.domain, dtype=np.uint64))
    for i in range(3):
        idx = [int(v) for k, v in enumerate(images) if k % 3 == i and v < space.size]
        a, p = space.pair_at(np.array(idx, dtype=np.uint64))
        assert pairs(space, 8, shards=3, shard=i) == list(zip(a.tolist(), p.tolist(), strict=True))


def test_more_shards_than_targets() -> None:
    space = TargetSpace([(10, 13)], np.array([80]))
    parts = [pairs(space, 4, shards=10, shard=i) for i in range(10)]
    assert sorted(p for part in parts for p in part) == [(10, 80), (11, 80), (12, 80)]
    assert sum(1 for part in parts if not part) >= 7


@pytest.mark.parametrize("shards", [1, 2, 3, 5])
def test_max_targets_is_per_shard(shards: int) -> None:
    space = TargetSpace([(0, 211)], np.array([80, 443]))
    for i in range(shards):
        full = pairs(space, 21, shards=shards, shard=i)
        for limit in (0, 1, 17, len(full), len(full) + 50):
            got = pairs(space, 21, shards=shards, shard=i, max_targets=limit, batch=8)
            assert got == full[:limit]
            assert expected_count(space, shards, i, max_targets=limit, seed=21) == len(got)


def test_start_resumes() -> None:
    space = TargetSpace([(0, 500)], np.array([80]))
    full = pairs(space, 9, shards=3, shard=1)
    for start in (0, 1, 50, len(full) - 1, len(full), len(full) + 10):
        assert pairs(space, 9, shards=3, shard=1, start=start, batch=7) == full[start:]
    # start and max_targets are both shard positions: resuming a capped scan finishes the same cap.
    assert pairs(space, 9, shards=3, shard=1, start=40, max_targets=60) == full[40:60]


def test_expected_count() -> None:
    space = TargetSpace([(0, 1000)], np.array([80, 443, 8080]))
    assert expected_count(space) == 3000
    assert expected_count(space, max_targets=10) == 10
    # Without a seed (or above EXACT_COUNT_LIMIT) it is a proportional estimate that sums to size.
    assert sum(expected_count(space, 7, i) for i in range(7)) == 3000
    assert [expected_count(space, 7, i) for i in range(7)] == [429] * 4 + [428] * 3
    exact = [expected_count(space, 7, i, seed=5) for i in range(7)]
    assert sum(exact) == 3000
    assert exact == [len(pairs(space, 5, shards=7, shard=i)) for i in range(7)]
    big = TargetSpace([(0, EXACT_COUNT_LIMIT + 1)], np.array([80]))
    assert expected_count(big, 2, 1, seed=5) == (EXACT_COUNT_LIMIT + 1) // 2


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"shards": 0}, "invalid shard count 0"),
        ({"shards": 3, "shard": 3}, "shard 3 out of range for 3 shards"),
        ({"shard": -1}, "shard -1 out of range for 1 shards"),
        ({"batch": 0}, "invalid batch size 0"),
        ({"start": -1}, "invalid start -1"),
        ({"max_targets": -1}, "invalid max targets -1"),
    ],
)
def test_iter_batches_argument_errors(kw: dict[str, int], message: str) -> None:
    space = TargetSpace([(0, 10)], np.array([80]))
    with pytest.raises(TargetError) as exc:
        next(iter_batches(space, 1, **kw))
    assert str(exc.value) == message


# --------------------------------------------------------------------------- scale


def test_full_ipv4_all_ports_is_lazy(empty_file: Path) -> None:
    tracemalloc.start()
    try:
        space = TargetSpace.build(["0.0.0.0/0"], parse_ports("1-65535"), blocklist=empty_file)
        assert space.size == ADDR_SPACE * 65535
        it = iter_batches(space, 2024, shards=4, shard=3)
        addrs, ports = next(it)
        addrs2, _ = next(it)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(addrs) == len(ports) == len(addrs2) == 65536
    assert peak < 32 * 2**20, f"peak {peak} bytes"
    assert len(set(zip(addrs.tolist(), ports.tolist(), strict=True))) == 65536
    # A pseudo-random spread, not a scan of one corner of the space.
    assert int(addrs.min()) < 2**28 and int(addrs.max()) > 2**32 - 2**28
    assert int(ports.min()) < 4096 and int(ports.max()) > 61440
    assert expected_count(space, 4, 3) == space.size // 4


def test_read_cidr_file_bounds_and_binary(tmp_path: Path) -> None:
    path = tmp_path / "list.conf"
    # A byte-order mark, CRLF, and a line of exactly the limit (4096 bytes, newline included).
    path.write_bytes(b"\xef\xbb\xbf10.0.0.0/8\r\n" + b"1" * 4095 + b"\n")
    with pytest.raises(TargetError, match=r"list\.conf:2: invalid CIDR '1{60}…'$"):
        read_cidr_file(path)
    path.write_bytes(b"10.0.0.0/8\n" + b"#" * 4096 + b"\n")
    with pytest.raises(TargetError, match=r"list\.conf:2: line longer than 4096 bytes$"):
        read_cidr_file(path)
    path.write_bytes(b"10.0.0.0/8\n\xff\xfe\n")
    with pytest.raises(TargetError, match=r"list\.conf:2: not a text file \(not UTF-8\)$"):
        read_cidr_file(path)
    path.write_bytes(b"10.0.0.0/8\n1.2.3.4\x1b[2J\x0b\n")  # control characters are escaped: one line
    with pytest.raises(TargetError) as exc:
        read_cidr_file(path)
    assert str(exc.value) == f"{path}:2: invalid CIDR '1.2.3.4\\x1b[2J'"
    path.write_bytes(b"\xef\xbb\xbf10.0.0.0/8\r\n# caf\xc3\xa9\n")
    assert read_cidr_file(path).tolist() == [[ip("10.0.0.0"), ip("11.0.0.0")]]
    path.write_bytes(b"")
    assert read_cidr_file(path).shape == (0, 2)


def test_read_cidr_file_dev_zero_and_directory(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match=r"^/dev/zero:1: not a text file"):
        read_cidr_file("/dev/zero")
    with pytest.raises(TargetError, match=r"Is a directory$"):
        read_cidr_file(tmp_path)
