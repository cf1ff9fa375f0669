"""Target space: which (address, port) pairs a scan probes, and in what order.

The space can be all of IPv4 times every port (~2^48 pairs), so nothing here
ever materialises it. Addresses are kept as sorted, merged, disjoint half-open
intervals of host-order integers (198.18.0.1 == 0xC6120001), stored as an
``(n, 2)`` uint64 array; memory is proportional to the number of intervals.
A pair is named by its index ``idx`` in ``[0, size)``:
``addr = idx // n_ports``-th address, ``port = ports[idx % n_ports]``.

The probe order is a keyed pseudo-random bijection of ``[0, 2^nbits)`` (a
Feistel network) restricted to ``[0, size)`` by skipping out-of-range values,
the same trick ZMap uses with its cyclic group, but one that vectorises in
numpy. Shard ``i`` of ``S`` takes the domain positions ``k`` with
``k % S == i``; the shards of one seed are therefore disjoint and complete.
"""

from __future__ import annotations

import array
import contextlib
import hashlib
import ipaddress
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

__all__ = [
    "ADDR6_DTYPE",
    "ADDR_SPACE",
    "MAX_PAIRS",
    "DEFAULT_BLOCKLIST",
    "EXACT_COUNT_LIMIT",
    "Intervals",
    "Permutation",
    "TargetError",
    "TargetSpace",
    "TargetSpace6",
    "complement",
    "expected_count",
    "intersect",
    "iter_batches",
    "normalize",
    "parse_cidr",
    "parse_cidrs",
    "parse_ports",
    "parse_target",
    "parse_targets",
    "read_cidr_file",
    "subtract",
    "union",
]

ADDR_SPACE = 1 << 32
ADDR6_SPACE = 1 << 128
# IPv6 addresses in user space: one 16-byte record each, in network order, so that a batch's bytes
# are the packets' address bytes and its "<u8" view is SipHash's two message words (cookie.py).
ADDR6_DTYPE = np.dtype([("hi", ">u8"), ("lo", ">u8")])
# The most (address, port) pairs the permutation orders (Permutation: size < 2^62).
MAX_PAIRS = (1 << 62) - 1

# ZMap's conf/blocklist.conf: IANA special-purpose ranges that must never be probed.
DEFAULT_BLOCKLIST: tuple[str, ...] = (
    "0.0.0.0/8",  # RFC 1122: "this" network
    "10.0.0.0/8",  # RFC 1918: private-use
    "100.64.0.0/10",  # RFC 6598: shared address space (CGN)
    "127.0.0.0/8",  # RFC 1122: loopback
    "169.254.0.0/16",  # RFC 3927: link local
    "172.16.0.0/12",  # RFC 1918: private-use
    "192.0.0.0/24",  # RFC 6890: IETF protocol assignments
    "192.0.2.0/24",  # RFC 5737: TEST-NET-1
    "192.88.99.0/24",  # RFC 3068: 6to4 relay anycast
    "192.168.0.0/16",  # RFC 1918: private-use
    "198.18.0.0/15",  # RFC 2544: benchmarking
    "198.51.100.0/24",  # RFC 5737: TEST-NET-2
    "203.0.113.0/24",  # RFC 5737: TEST-NET-3
    "224.0.0.0/4",  # RFC 5771: multicast
    "240.0.0.0/4",  # RFC 1112: reserved
    "255.255.255.255/32",  # RFC 919: limited broadcast
)

# Above this many pairs an exact per-shard count would cost seconds of
# permutation work just to draw a progress bar, so expected_count() estimates.
EXACT_COUNT_LIMIT = 1 << 24

Intervals = npt.NDArray[np.uint64]
"""Shape ``(n, 2)`` uint64: sorted, merged, disjoint, half-open ``[start, end)`` address ranges."""

_U64 = np.uint64


class TargetError(ValueError):
    """A target, port spec or list file is unusable; the message is one line, fit for the CLI."""


# --------------------------------------------------------------------------- parsing


def _parse_ipv4(text: str) -> int | None:
    parts = text.split(".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        # Leading zeros are refused (as inet_pton does) because some tools read them as octal.
        if not (part.isascii() and part.isdigit()) or len(part) > 3 or (len(part) > 1 and part[0] == "0"):
            return None
        octet = int(part)
        if octet > 255:
            return None
        value = (value << 8) | octet
    return value


def _prefix(text: str, parse_addr: Callable[[str], int | None], bits: int) -> tuple[int, int]:
    """An address or ``address/n`` of one family (``bits`` long) -> half-open ``(start, end)``.

    Host bits below the prefix are ignored, as ZMap does (``10.1.2.3/8`` is ``10.0.0.0/8``).
    """
    addr_text, slash, prefix_text = text.partition("/")
    addr = parse_addr(addr_text)
    if addr is None:
        raise ValueError(text)
    prefix = bits
    if slash:
        if (
            not (prefix_text.isascii() and prefix_text.isdigit())
            or len(prefix_text) > len(str(bits))
            or (len(prefix_text) > 1 and prefix_text[0] == "0")
        ):
            raise ValueError(text)
        prefix = int(prefix_text)
        if prefix > bits:
            raise ValueError(text)
    span = 1 << (bits - prefix)
    start = addr & ~(span - 1)
    return start, start + span


def _target(text: str, parse_addr: Callable[[str], int | None], bits: int) -> tuple[int, int]:
    """An address, a prefix or an inclusive range ``a-b`` (as masscan) of one family -> half-open
    ``(start, end)``; raises ValueError."""
    lo_text, dash, hi_text = text.partition("-")
    if not dash:
        return _prefix(text, parse_addr, bits)
    lo, hi = parse_addr(lo_text.strip()), parse_addr(hi_text.strip())
    if lo is None or hi is None or hi < lo:
        raise ValueError(text)
    return lo, hi + 1


def parse_cidr(text: str) -> tuple[int, int]:
    """``"a.b.c.d"`` or ``"a.b.c.d/n"`` -> half-open ``(start, end)``; raises ValueError."""
    return _prefix(text, _parse_ipv4, 32)


def parse_target(text: str) -> tuple[int, int]:
    """An IPv4 address, a CIDR or an inclusive range ``a.b.c.d-e.f.g.h`` -> half-open ``(start, end)``."""
    return _target(text, _parse_ipv4, 32)


def is_v6(token: str) -> bool:
    """Whether a target, CIDR or range is IPv6 (only IPv6 text has a colon)."""
    return ":" in token


def _parse_ipv6(text: str) -> int | None:
    # No zone ("%eth0"): a scope is an interface's business, not a target's.
    if "%" in text or not text.isascii():
        return None
    try:
        return int(ipaddress.IPv6Address(text))
    except ValueError:
        return None


def parse_target6(text: str) -> tuple[int, int]:
    """An IPv6 address, prefix or inclusive range ``a-b`` -> half-open ``(start, end)`` of 128-bit ints."""
    return _target(text, _parse_ipv6, 128)


Ranges6 = list[tuple[int, int]]
"""IPv6 intervals: sorted, merged, disjoint, half-open ``(start, end)`` of Python ints (128 bits)."""


def normalize6(ranges: Iterable[tuple[int, int]]) -> Ranges6:
    out: Ranges6 = []
    for start, end in sorted((s, e) for s, e in ranges if s < e):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def subtract6(a: Ranges6, b: Ranges6) -> Ranges6:
    """``a`` minus ``b``, both normalised."""
    out: Ranges6 = []
    j = 0
    for start, end in a:
        while j < len(b) and b[j][1] <= start:
            j += 1
        k = j
        cur = start
        while k < len(b) and b[k][0] < end:
            if b[k][0] > cur:
                out.append((cur, b[k][0]))
            cur = max(cur, b[k][1])
            k += 1
        if cur < end:
            out.append((cur, end))
    return out


def intersect6(a: Ranges6, b: Ranges6) -> Ranges6:
    return subtract6(a, subtract6(a, b))


def parse_targets6(args: Sequence[str]) -> Ranges6:
    """IPv6 command-line targets (as parse_targets for IPv4)."""
    ranges: Ranges6 = []
    for token in args:
        try:
            ranges.append(parse_target6(token))
        except ValueError:
            raise TargetError(f"invalid target '{token}'") from None
    return normalize6(ranges)


def _split_families(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """Command-line TARGETs (a comma also separates) -> (IPv4 tokens, IPv6 tokens)."""
    v4: list[str] = []
    v6: list[str] = []
    for arg in args:
        for token in arg.split(","):
            token = token.strip()
            (v6 if is_v6(token) else v4).append(token)
    return v4, v6


def parse_cidrs(items: Iterable[str]) -> Intervals:
    """Trusted CIDR strings (e.g. DEFAULT_BLOCKLIST) -> Intervals; raises ValueError on a bad one."""
    return normalize([parse_cidr(item) for item in items])


def parse_targets(args: Sequence[str]) -> Intervals:
    """Command-line TARGETs (addresses, CIDRs or ranges a-b; a comma also separates) -> Intervals.

    An empty ``args`` gives empty Intervals: deciding that "no TARGET" means the
    whole IPv4 space is TargetSpace.build's job, not the parser's.
    """
    ranges: list[tuple[int, int]] = []
    for arg in args:
        for token in arg.split(","):
            token = token.strip()
            try:
                ranges.append(parse_target(token))
            except ValueError:
                raise TargetError(f"invalid target '{token}'") from None
    return normalize(ranges)


# Bounds on an allow/block list, so that /dev/zero or a wrong file is an error, not a MemoryError.
# Generous: a full BGP table is ~1M prefixes (~20 MB); 16M lines of /32s is ~256 MB of text.
CIDR_FILE_MAX_LINE = 4096  # bytes, newline included
CIDR_FILE_MAX_BYTES = 256 << 20
CIDR_FILE_MAX_LINES = 16 << 20


def _shown(text: str, limit: int | None = 60) -> str:
    """``text`` fit for a one-line message: cut short, control characters escaped."""
    cut = text if limit is None or len(text) <= limit else text[:limit] + "…"
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in cut)


@contextlib.contextmanager
def _open_list(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    if os.fspath(path) == "-":
        yield sys.stdin.buffer
    else:
        with open(path, "rb") as f:
            yield f


def read_cidr_file(path: str | os.PathLike[str]) -> Intervals:
    """The IPv4 entries of a list file (read_list: both families)."""
    return read_list(path)[0]


def read_list(path: str | os.PathLike[str]) -> tuple[Intervals, Ranges6]:
    """A ZMap-style allow/block list or list of targets (-I): one address, CIDR or range a-b a line,
    ``#`` comments, blank lines ignored; ``-`` is stdin.

    Read a line at a time within CIDR_FILE_MAX_LINE / _BYTES / _LINES; binary
    content (a NUL byte, or not UTF-8) is refused as "not a text file". Every
    problem is a TargetError whose message is one line naming the file (and line).
    """
    name = "stdin" if os.fspath(path) == "-" else _shown(os.fspath(path), None)
    flat = array.array("Q")  # start, end, start, end, …: 16 bytes an entry, not ~120 as tuples
    six: Ranges6 = []
    total = 0
    try:
        with _open_list(path) as f:
            lineno = 0
            while True:
                raw = f.readline(CIDR_FILE_MAX_LINE + 1)
                if not raw:
                    break
                lineno += 1
                total += len(raw)
                if b"\0" in raw:
                    raise TargetError(f"{name}:{lineno}: not a text file (NUL byte)")
                if len(raw) > CIDR_FILE_MAX_LINE:
                    raise TargetError(f"{name}:{lineno}: line longer than {CIDR_FILE_MAX_LINE} bytes")
                if total > CIDR_FILE_MAX_BYTES:
                    raise TargetError(f"{name}: larger than {CIDR_FILE_MAX_BYTES} bytes")
                if lineno > CIDR_FILE_MAX_LINES:
                    raise TargetError(f"{name}: more than {CIDR_FILE_MAX_LINES} lines")
                try:
                    line = raw.decode("utf-8-sig")  # (-sig: a leading byte-order mark is not a CIDR)
                except UnicodeDecodeError:
                    raise TargetError(f"{name}:{lineno}: not a text file (not UTF-8)") from None
                token = line.split("#", 1)[0].strip()
                if not token:
                    continue
                try:
                    if is_v6(token):
                        six.append(parse_target6(token))
                    else:
                        flat.extend(parse_target(token))
                except ValueError:
                    what = "range" if "-" in token else "CIDR"
                    raise TargetError(f"{name}:{lineno}: invalid {what} '{_shown(token)}'") from None
    except OSError as e:
        raise TargetError(f"{name}: {e.strerror or e}") from None
    return normalize(np.frombuffer(flat, dtype=np.uint64) if flat else _empty()), normalize6(six)


def _parse_port(text: str) -> int | None:
    # The length cap keeps int() away from absurd digit strings; leading zeros are harmless here.
    if not (text.isascii() and text.isdigit()) or len(text) > 5:
        return None
    port = int(text)
    return port if 1 <= port <= 65535 else None


def parse_ports(spec: str) -> npt.NDArray[np.uint16]:
    """``"80,443,8000-8100"`` -> sorted unique uint16 ports; port 0 is invalid."""
    if not spec.strip():
        raise TargetError("empty port list")
    # A 64 KiB mask makes "1-65535" as cheap as "80" and sorts/dedups for free.
    mask = np.zeros(65536, dtype=bool)
    for raw in spec.split(","):
        token = raw.strip()
        lo_text, dash, hi_text = token.partition("-")
        lo = _parse_port(lo_text.strip())
        hi = _parse_port(hi_text.strip()) if dash else lo
        if lo is None or hi is None or hi < lo:
            raise TargetError(f"invalid port '{token}'")
        mask[lo : hi + 1] = True
    return np.flatnonzero(mask).astype(np.uint16)


# --------------------------------------------------------------------------- interval sets


def _empty() -> Intervals:
    return np.zeros((0, 2), dtype=np.uint64)


def normalize(ranges: npt.ArrayLike) -> Intervals:
    """Any ``(start, end)`` pairs -> sorted, merged (overlapping or touching), disjoint Intervals."""
    iv = np.asarray(ranges, dtype=np.uint64).reshape(-1, 2)
    iv = iv[iv[:, 0] < iv[:, 1]]
    if len(iv) == 0:
        return _empty()
    iv = iv[np.argsort(iv[:, 0], kind="stable")]
    starts, ends = iv[:, 0], iv[:, 1]
    # reach[i]: furthest address covered by intervals 0..i; a run breaks where a start lies beyond it.
    reach = np.maximum.accumulate(ends)
    breaks = np.flatnonzero(starts[1:] > reach[:-1]) + 1
    first = np.concatenate(([0], breaks))
    last = np.concatenate((breaks - 1, [len(starts) - 1]))
    return np.stack((starts[first], reach[last]), axis=1)


def union(a: Intervals, b: Intervals) -> Intervals:
    return normalize(np.concatenate((a.reshape(-1, 2), b.reshape(-1, 2))))


def complement(a: Intervals) -> Intervals:
    """Gaps of normalised ``a`` within ``[0, 2^32)``."""
    starts = np.concatenate((np.zeros(1, np.uint64), a[:, 1]))
    ends = np.concatenate((a[:, 0], np.full(1, ADDR_SPACE, np.uint64)))
    keep = starts < ends
    return np.stack((starts[keep], ends[keep]), axis=1)


def intersect(a: Intervals, b: Intervals) -> Intervals:
    # De Morgan keeps every set operation on the one well-tested primitive, normalize().
    return complement(union(complement(a), complement(b)))


def subtract(a: Intervals, b: Intervals) -> Intervals:
    return intersect(a, complement(b))


# --------------------------------------------------------------------------- target space


def _check_ports(ports: npt.ArrayLike | str) -> npt.NDArray[np.uint16]:
    if isinstance(ports, str):
        return parse_ports(ports)
    arr = np.asarray(ports)
    if arr.size == 0:
        raise TargetError("empty port list")
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer) or arr.min() < 1 or arr.max() > 65535:
        raise TargetError("ports must be integers in 1..65535")
    return np.unique(arr).astype(np.uint16)


class TargetSpace:
    """The (address, port) pairs to probe, indexable by ``idx`` in ``[0, size)`` without materialising."""

    family = 4
    intervals: Intervals
    ports: npt.NDArray[np.uint16]
    n_addrs: int
    n_ports: int
    size: int

    def __init__(self, intervals: npt.ArrayLike, ports: npt.ArrayLike | str) -> None:
        iv = normalize(intervals)
        if len(iv) == 0:
            raise TargetError("empty target space")
        if int(iv[-1, 1]) > ADDR_SPACE:
            raise TargetError("address interval beyond 255.255.255.255")
        self.intervals = iv
        self.ports = _check_ports(ports)
        self._starts = np.ascontiguousarray(iv[:, 0])
        self._ends = np.ascontiguousarray(iv[:, 1])
        # offsets[i]: index of interval i's first address; offsets[-1] == n_addrs.
        self._offsets = np.concatenate((np.zeros(1, np.uint64), np.cumsum(self._ends - self._starts)))
        self.n_addrs = int(self._offsets[-1])
        self.n_ports = len(self.ports)
        self.size = self.n_addrs * self.n_ports
        self._n_ports_u64 = _U64(self.n_ports)

    @classmethod
    def build(
        cls,
        targets: Sequence[str],
        ports: npt.ArrayLike | str,
        blocklist: str | os.PathLike[str] | None = None,
        allowlist: str | os.PathLike[str] | None = None,
        list_of_targets: str | os.PathLike[str] | None = None,
        exclude: Sequence[str] = (),
        exclude_files: Sequence[str | os.PathLike[str]] = (),
    ) -> TargetSpace:
        """The CLI's space: (TARGETs ∪ list_of_targets, or all IPv4) ∩ allowlist − blocklist − exclude,
        times ``ports``.

        ``blocklist=None`` applies DEFAULT_BLOCKLIST; a file replaces it (an empty file disables it).
        ``exclude`` (addresses, CIDRs, ranges) and ``exclude_files`` are taken out as well, whichever
        blocklist applies. A file named ``-`` is stdin (one of them at most).
        """
        files = [f for f in (list_of_targets, blocklist, allowlist, *exclude_files) if f is not None]
        if sum(os.fspath(f) == "-" for f in files) > 1:
            raise TargetError("only one list may be read from stdin ('-')")
        port_arr = _check_ports(ports)
        given = bool(targets) or list_of_targets is not None
        tokens4, tokens6 = _split_families(targets)
        space = parse_targets(tokens4)
        space6 = parse_targets6(tokens6)
        if list_of_targets is not None:
            listed, listed6 = read_list(list_of_targets)
            if len(listed) == 0 and not listed6:
                raise TargetError(f"{_shown(os.fspath(list_of_targets), None)}: no targets in the list")
            space = union(space, listed)
            space6 = normalize6(space6 + listed6)
        if space6:
            if len(space):
                raise TargetError(
                    "IPv4 and IPv6 targets in one scan: run one scan per family "
                    "(a scan has one source address, one next hop and one frame layout)"
                )
            return TargetSpace6.build6(space6, port_arr, blocklist, allowlist, exclude, exclude_files)
        if not given:
            space = np.array([[0, ADDR_SPACE]], dtype=np.uint64)
        if allowlist is not None:
            allowed = read_cidr_file(allowlist)
            space = intersect(space, allowed) if given else allowed
        blocked = parse_cidrs(DEFAULT_BLOCKLIST) if blocklist is None else read_cidr_file(blocklist)
        blocked = union(blocked, parse_targets(_excluded(exclude, 4)))
        for path in exclude_files:
            blocked = union(blocked, read_cidr_file(path))
        space = subtract(space, blocked)
        if len(space) == 0:
            _nothing_left(exclude, exclude_files)
        return cls(space, port_arr)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(intervals={len(self.intervals)}, n_addrs={self.n_addrs}, "
            f"n_ports={self.n_ports}, size={self.size})"
        )

    def _addrs_unchecked(self, idx: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint32]:
        if len(self._starts) == 1:
            out = idx + self._starts[0]
        else:
            i = np.searchsorted(self._offsets, idx, side="right") - 1
            out = self._starts[i] + (idx - self._offsets[i])
        return out.astype(np.uint32)

    def _pairs_unchecked(
        self, idx: npt.NDArray[np.uint64]
    ) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint16]]:
        if self.n_ports == 1:
            return self._addrs_unchecked(idx), np.full(len(idx), self.ports[0], dtype=np.uint16)
        addr_idx = idx // self._n_ports_u64
        port_idx = idx - addr_idx * self._n_ports_u64
        return self._addrs_unchecked(addr_idx), self.ports[port_idx]

    @staticmethod
    def _as_index(idx: npt.ArrayLike, bound: int) -> npt.NDArray[np.uint64]:
        arr = np.asarray(idx)
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= bound):
            raise IndexError(f"index out of range [0, {bound})")
        return arr.astype(np.uint64, copy=False)

    def addrs_at(self, idx: npt.ArrayLike) -> npt.NDArray[np.uint32]:
        """Address indices in ``[0, n_addrs)`` -> host-order uint32 addresses."""
        return self._addrs_unchecked(self._as_index(idx, self.n_addrs))

    def pair_at(self, idx: npt.ArrayLike) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint16]]:
        """Pair indices in ``[0, size)`` -> (uint32 addresses, uint16 ports)."""
        return self._pairs_unchecked(self._as_index(idx, self.size))

    def contains(self, addr: int | str) -> bool:
        """Whether an address (host-order int or dotted quad) is in the space."""
        if isinstance(addr, str):
            parsed = _parse_ipv4(addr)
            if parsed is None:
                raise ValueError(f"invalid address '{addr}'")
            addr = parsed
        if not 0 <= addr < ADDR_SPACE:
            return False
        i = int(np.searchsorted(self._starts, _U64(addr), side="right")) - 1
        return i >= 0 and addr < int(self._ends[i])


def _excluded(exclude: Sequence[str], family: int) -> list[str]:
    """--exclude's tokens of one family; a bad token of either is a TargetError naming the option."""
    v4, v6 = _split_families(exclude)
    try:
        parse_targets(v4)
        parse_targets6(v6)
    except TargetError as exc:
        raise TargetError(f"--exclude: {exc}") from None
    return v6 if family == 6 else v4


def _nothing_left(exclude: Sequence[str], exclude_files: Sequence[object]) -> None:
    more = " and --exclude" if exclude or exclude_files else ""
    raise TargetError(f"no targets left after allow/block lists{more}")


def default_blocklist6() -> Ranges6:
    """The IPv6 special-purpose ranges a scan never probes unless --blocklist replaces them."""
    from . import blocks

    listed = getattr(blocks, "DEFAULT_BLOCKLIST6", None)
    if listed is None:
        raise TargetError("no default IPv6 blocklist in this build: give --blocklist FILE (empty: none)")
    return parse_targets6(list(listed))


class TargetSpace6(TargetSpace):
    """An IPv6 target space: the same pair indexing and order as TargetSpace, over 128-bit addresses.

    Addresses come out as ADDR6_DTYPE records. The pairs must number under 2^62 (what the
    permutation orders): a /64 cannot be scanned whole, a /96 on 65,535 ports can.
    """

    family = 6

    def __init__(self, ranges: Iterable[tuple[int, int]], ports: npt.ArrayLike | str) -> None:
        iv = normalize6(ranges)
        if not iv:
            raise TargetError("empty target space")
        if iv[-1][1] > ADDR6_SPACE:
            raise TargetError("address interval beyond ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
        self.ports = _check_ports(ports)
        self.n_ports = len(self.ports)
        self.n_addrs = sum(e - s for s, e in iv)
        self.size = self.n_addrs * self.n_ports
        if self.size > MAX_PAIRS:
            raise TargetError(
                f"IPv6 target space too large: {self.n_addrs} addresses x {self.n_ports} ports is over 2^62 "
                "pairs, the most a scan orders (--max-targets only stops it early): use longer prefixes"
            )
        self.ranges6 = iv
        m = (1 << 64) - 1
        # intervals (the checkpoint's digest of the space): start hi, start lo, end hi, end lo.
        self.intervals = np.array(
            [(s >> 64, s & m, (e - 1) >> 64, (e - 1) & m) for s, e in iv], dtype=np.uint64
        ).reshape(-1, 4)
        self._hi = np.ascontiguousarray(self.intervals[:, 0])
        self._lo = np.ascontiguousarray(self.intervals[:, 1])
        counts = np.array([e - s for s, e in iv], dtype=np.uint64)
        self._offsets = np.concatenate((np.zeros(1, np.uint64), np.cumsum(counts)))
        self._n_ports_u64 = _U64(self.n_ports)

    @classmethod
    def build6(
        cls,
        space: Ranges6,
        ports: npt.NDArray[np.uint16],
        blocklist: str | os.PathLike[str] | None,
        allowlist: str | os.PathLike[str] | None,
        exclude: Sequence[str],
        exclude_files: Sequence[str | os.PathLike[str]],
    ) -> TargetSpace6:
        if allowlist is not None:
            space = intersect6(space, read_list(allowlist)[1])
        blocked = default_blocklist6() if blocklist is None else read_list(blocklist)[1]
        excluded = parse_targets6(_excluded(exclude, 6))
        blocked = normalize6(blocked + excluded + [r for p in exclude_files for r in read_list(p)[1]])
        space = subtract6(space, blocked)
        if not space:
            _nothing_left(exclude, exclude_files)
        return cls(space, ports)

    def _addrs_unchecked(self, idx: npt.NDArray[np.uint64]) -> npt.NDArray[np.void]:  # type: ignore[override]
        i = np.searchsorted(self._offsets, idx, side="right") - 1
        off = idx - self._offsets[i]
        lo = self._lo[i] + off  # wraps mod 2^64; the carry goes to hi
        hi = self._hi[i] + (lo < self._lo[i]).astype(np.uint64)
        out = np.empty(len(idx), dtype=ADDR6_DTYPE)
        out["hi"] = hi
        out["lo"] = lo
        return out

    def contains(self, addr: int | str) -> bool:
        if isinstance(addr, str):
            parsed = _parse_ipv6(addr)
            if parsed is None:
                raise ValueError(f"invalid address '{addr}'")
            addr = parsed
        return any(s <= addr < e for s, e in self.ranges6)


def addr6_ints(addrs: npt.NDArray[np.void]) -> list[int]:
    """ADDR6_DTYPE records -> Python ints (for tests and text)."""
    his, los = addrs["hi"].tolist(), addrs["lo"].tolist()
    return [(int(h) << 64) | int(lo) for h, lo in zip(his, los, strict=True)]


def addr6_array(values: Iterable[int]) -> npt.NDArray[np.void]:
    """Python ints -> ADDR6_DTYPE records."""
    vals = list(values)
    out = np.empty(len(vals), dtype=ADDR6_DTYPE)
    m = (1 << 64) - 1
    out["hi"] = [v >> 64 for v in vals]
    out["lo"] = [v & m for v in vals]
    return out


# --------------------------------------------------------------------------- permutation

_MIX1 = _U64(0xBF58476D1CE4E5B9)
_MIX2 = _U64(0x94D049BB133111EB)


def _mix64(z: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64's finaliser, in place: a bijective 64-bit mix whose low bits depend on all input bits."""
    z ^= z >> 30
    z *= _MIX1  # wraps mod 2^64, which is the point; numpy raises no warning for array ops
    z ^= z >> 27
    z *= _MIX2
    z ^= z >> 31
    return z


def _round_key(seed: int, rnd: int) -> np.uint64:
    digest = hashlib.blake2b(f"{seed}/{rnd}".encode(), digest_size=8, person=b"zbanner-xdp-perm").digest()
    return _U64(int.from_bytes(digest, "little"))


class Permutation:
    """A seeded bijection of ``[0, size)``, evaluated on whole arrays of positions.

    A Feistel network permutes ``[0, 2^nbits)`` (halves of ``ceil`` and ``floor``
    of nbits/2 bits, alternating, so odd nbits works); positions whose image is
    ``>= size`` are skipped by the caller. Since ``2^nbits < 2 * size`` (nbits >= 2),
    at most 3/4 of the candidates are wasted for size 1 and under half otherwise.
    """

    ROUNDS = 6

    def __init__(self, size: int, seed: int, rounds: int = ROUNDS) -> None:
        if size < 1:
            raise ValueError("permutation size must be >= 1")
        if rounds < 4:
            raise ValueError("a Feistel permutation needs >= 4 rounds")
        self.size = int(size)
        self.seed = int(seed)
        self.rounds = rounds
        self.nbits = max(2, (self.size - 1).bit_length())
        if self.nbits > 62:
            raise ValueError("permutation size must be < 2^62")
        self.domain = 1 << self.nbits
        # Round keys come from a hash so that nearby seeds give unrelated orders.
        self._keys = [_round_key(self.seed, r) for r in range(rounds)]
        # Round r rewrites the top (nbits - lo_bits) bits from the low lo_bits and rotates them to the bottom;
        # alternating lo_bits between the two half widths makes an unbalanced Feistel for odd nbits.
        half = self.nbits // 2
        self._lo_bits = [self.nbits - half if r % 2 == 0 else half for r in range(rounds)]

    def __repr__(self) -> str:
        return f"Permutation(size={self.size}, seed={self.seed}, nbits={self.nbits}, rounds={self.rounds})"

    def apply(self, k: npt.ArrayLike) -> npt.NDArray[np.uint64]:
        """Domain positions in ``[0, 2^nbits)`` -> images in ``[0, 2^nbits)`` (may be >= size)."""
        # ndmin=1: numpy scalars (unlike arrays) warn on the wrapping multiply in _mix64.
        x = np.array(k, dtype=np.uint64, ndmin=1)
        for key, lo_bits in zip(self._keys, self._lo_bits, strict=True):
            hi_bits = self.nbits - lo_bits
            lo = x & _U64((1 << lo_bits) - 1)
            x >>= _U64(lo_bits)  # x is now the high half
            f = _mix64(lo ^ key)
            f &= _U64((1 << hi_bits) - 1)
            x ^= f
            lo <<= _U64(hi_bits)
            x |= lo
        return x.reshape(np.shape(k))

    __call__ = apply

    def inverse(self, v: npt.ArrayLike) -> npt.NDArray[np.uint64]:
        """Inverse of apply(): images -> domain positions."""
        y = np.array(v, dtype=np.uint64, ndmin=1)
        for key, lo_bits in zip(reversed(self._keys), reversed(self._lo_bits), strict=True):
            hi_bits = self.nbits - lo_bits
            lo = y >> _U64(hi_bits)
            y &= _U64((1 << hi_bits) - 1)
            y ^= _mix64(lo ^ key) & _U64((1 << hi_bits) - 1)
            y <<= _U64(lo_bits)
            y |= lo
        return y.reshape(np.shape(v))


# --------------------------------------------------------------------------- iteration


def _check_shard(shards: int, shard: int) -> None:
    if shards < 1:
        raise TargetError(f"invalid shard count {shards}")
    if not 0 <= shard < shards:
        raise TargetError(f"shard {shard} out of range for {shards} shards")


def _shard_values(perm: Permutation, shards: int, shard: int, chunk: int) -> Iterator[npt.NDArray[np.uint64]]:
    """This shard's pair indices (images < size) in domain order, in variable-length arrays."""
    step = chunk * shards
    for k0 in range(shard, perm.domain, step):
        v = perm.apply(np.arange(k0, min(k0 + step, perm.domain), shards, dtype=np.uint64))
        v = v[v < _U64(perm.size)]
        if len(v):
            yield v


def iter_batches(
    space: TargetSpace,
    seed: int,
    shards: int = 1,
    shard: int = 0,
    batch: int = 65536,
    max_targets: int | None = None,
    start: int = 0,
) -> Iterator[tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint16]]]:
    """Yield ``(addrs uint32, ports uint16)`` for this shard, in the seed's pseudo-random order.

    Every batch holds exactly ``batch`` pairs except possibly the last. Positions
    count this shard's pairs from 0: ``max_targets`` caps the shard's total (ZMap:
    the limit is per shard) and ``start`` skips that many, for resuming, so the
    pairs yielded are positions ``[start, min(max_targets, shard's count))``.
    Skipped pairs still cost the permutation work, but no address lookups.
    """
    _check_shard(shards, shard)
    if batch < 1:
        raise TargetError(f"invalid batch size {batch}")
    if start < 0:
        raise TargetError(f"invalid start {start}")
    if max_targets is not None and max_targets < 0:
        raise TargetError(f"invalid max targets {max_targets}")
    limit = space.size if max_targets is None else min(max_targets, space.size)
    if start >= limit:
        return
    perm = Permutation(space.size, seed)
    # Enough candidates per chunk that, after skipping images >= size, about one batch survives.
    chunk = max(1, -(-batch * perm.domain // space.size))
    pos = 0  # this shard's position of the first value in the next array
    carry = np.zeros(0, dtype=np.uint64)
    for values in _shard_values(perm, shards, shard, chunk):
        n = len(values)
        lo, hi = max(start - pos, 0), min(limit - pos, n)
        pos += n
        if lo >= hi:
            if pos >= limit:
                break
            continue
        values = values[lo:hi]
        if len(carry):
            values = np.concatenate((carry, values))
        full = len(values) - len(values) % batch
        for off in range(0, full, batch):
            yield space._pairs_unchecked(values[off : off + batch])
        carry = values[full:]
        if pos >= limit:
            break
    if len(carry):
        yield space._pairs_unchecked(carry)


def expected_count(
    space: TargetSpace,
    shards: int = 1,
    shard: int = 0,
    max_targets: int | None = None,
    seed: int | None = None,
) -> int:
    """How many pairs iter_batches(space, seed, shards, shard, max_targets=...) yields, for progress.

    Exact when ``shards == 1``, or when ``seed`` is given and ``space.size <=
    EXACT_COUNT_LIMIT`` (the shard's permutation is then run, vectorised, to count).
    Otherwise it is the proportional share ``size // S`` (+1 for the first ``size % S``
    shards), which sums to ``size`` over all shards but may be off by a little per shard.
    """
    _check_shard(shards, shard)
    if shards == 1:
        n = space.size
    elif seed is not None and space.size <= EXACT_COUNT_LIMIT:
        perm = Permutation(space.size, seed)
        n = sum(len(v) for v in _shard_values(perm, shards, shard, 1 << 20))
    else:
        n = space.size // shards + (1 if shard < space.size % shards else 0)
    return n if max_targets is None else min(n, max_targets)
