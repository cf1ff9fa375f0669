"""In-kernel replies for every TCP probe: payload templates the XDP program completes per target.

A probe's payload may depend on the target in two ways the program can
reproduce without user space (bpf/xdp_recv.c, kernel_reply_finish):
- the target address as text somewhere in it (HTTP's Host:, JARM's SNI),
  dotted or RFC 5952 (IPv6), and lengths that grow with it: one template per
  length of the address text (7-15 characters, IPv6 2-39), zeros where the
  text goes (`ip_at`);
- pseudo-random ranges derived from the target (the TLS probe's random,
  session id and key share): up to RANGES ranges of a multiple of 8 bytes,
  zeros in the template, filled with range_bytes(seed, address, port, index)
  — SplitMix64, cheap in the program and here (probes.base.range_bytes).

build() derives the templates from the probe's own payload() and keeps them
only if render() reproduces payload() exactly for a sample of targets, so a
probe the program would answer wrongly is answered by user space instead.
"""

from __future__ import annotations

import ipaddress
import itertools
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import events, packets
from .probes.base import range_bytes

VARIANTS = events.KP_VARIANTS  # templates per probe: one per length of the address text (0-39)
RANGES = events.KP_RANGES
RANGE_MAX = events.KP_RANGE_MAX
NONE = events.KP_NONE


@dataclass
class Variant:
    """One template: what the program stores, then completes."""

    data: bytes
    ip_at: int = NONE
    ranges: list[tuple[int, int]] = field(default_factory=list)  # (offset, length)


@dataclass
class KernelPayload:
    handshake: bool
    seed: int = 0
    variants: list[Variant | None] = field(default_factory=lambda: [None] * VARIANTS)


def _addr(lengths: tuple[int, ...], digit: str) -> str:
    return ".".join(digit * n for n in lengths)


def _octet_lengths(total: int) -> tuple[int, ...]:
    """Digit counts of a dotted address `total` characters long (7-15), e.g. 11 -> (3, 2, 1, 2)."""
    digits = total - 3
    out = []
    for i in range(4):
        rest = 3 - i  # octets after this one, each at least one digit
        n = min(3, digits - rest)
        out.append(n)
        digits -= n
    return tuple(out)


def render(v: Variant, seed: int, ip: str, port: int) -> bytes:
    """What the program sends for this target: the template, the address text, the ranges."""
    data = bytearray(v.data)
    if v.ip_at != NONE:
        data[v.ip_at : v.ip_at + len(ip)] = ip.encode()
    for r, (at, n) in enumerate(v.ranges):
        # (An IPv6 target's last 32 bits, as the program's kp_range and the TLS probe take them.)
        data[at : at + n] = range_bytes(seed, int(ipaddress.ip_address(ip)) & 0xFFFFFFFF, port, r, n)
    return bytes(data)


def _samples(length: int, rng: random.Random, n: int = 6) -> list[str]:
    """`n` random addresses whose dotted text is `length` characters (7-15) long, built octet by
    octet: a split of the length into four digit counts, then an octet of each count. (Drawing
    random addresses until one has the length took 1.5 s of start-up for length 7, which about
    one address in 430,000 has.)"""
    splits = [c for c in itertools.product((1, 2, 3), repeat=4) if sum(c) == length - 3]
    lows = {1: 0, 2: 10, 3: 100}
    out = []
    for _ in range(n):
        digits = rng.choice(splits)
        out.append(".".join(str(rng.randint(lows[d], min(10**d - 1, 255))) for d in digits))
    return out


def build(probe: Any, family: int = 4) -> KernelPayload | None:
    """The probe's templates, or None where the program cannot reproduce its payload."""
    if probe.transport != "tcp":
        return None
    if not probe.handshake:
        return KernelPayload(handshake=False)  # a SYN-ACK gets a RST: no payload
    out = KernelPayload(handshake=True)
    ranges_spec = probe.kernel_ranges()
    if ranges_spec is not None:
        out.seed, ranges = ranges_spec
        if len(ranges) > RANGES or any(n % 8 or not 0 < n <= RANGE_MAX for _, n in ranges):
            return None
    else:
        ranges = []
    rng = random.Random(7)
    # Per length of the address's text: a pair of addresses to find where it goes, samples to check.
    if family == 6:
        lengths, pair, samples = range(2, 40), _pair6, _samples6
    else:
        lengths, pair, samples = range(7, 16), _pair4, _samples
    fixed = probe.fixed_payload
    for length in lengths:
        if fixed is not None:
            v = Variant(fixed)
        else:
            v = _variant(probe, length, ranges, pair(length))
            if v is None:
                return None
        if len(v.data) > events.KPAYLOAD_MAX:
            return None
        for ip in samples(length, rng):
            port = rng.randrange(1, 65536)
            if render(v, out.seed, ip, port) != probe.payload(ip, port):
                return None
        out.variants[length] = v
    return out


def _pair4(length: int) -> tuple[str, str]:
    """Two dotted addresses `length` characters long, the same octet lengths, every digit different."""
    octets = _octet_lengths(length)
    return _addr(octets, "1"), _addr(octets, "2")


def _shapes6(length: int) -> list[tuple[int, int, int]]:
    """The shapes of IPv6 texts `length` characters long: (zero run's first group, its length
    (0: none), digits of the other groups in all), the other groups being non-zero."""
    out = []
    for at, run in [(8, 0)] + [(a, n) for n in range(2, 9) for a in range(0, 9 - n)]:
        groups = 8 - run
        after = 8 - at - run if run else 0
        seps = 7 if not run else max(at - 1, 0) + max(after - 1, 0) + 2
        digits = length - seps
        if groups <= digits <= 4 * groups and (groups or not digits):
            out.append((at, run, digits))
    return out


def _address6(at: int, run: int, digits: list[int], values: list[int]) -> str:
    groups = [0] * 8
    others = [i for i in range(8) if not at <= i < at + run]
    for i, g in zip(others, values, strict=True):
        groups[i] = g
    return str(ipaddress.IPv6Address(b"".join(g.to_bytes(2, "big") for g in groups)))


def _split(total: int, parts: int, rng: random.Random | None) -> list[int]:
    """`parts` digit counts (1-4 each) adding up to `total`: the first filled first, or at random."""
    out = [1] * parts
    free = list(range(parts))
    for _ in range(total - parts):
        i = rng.choice(free) if rng is not None else free[0]
        out[i] += 1
        if out[i] == 4:
            free.remove(i)
    return out


def _pair6(length: int) -> tuple[str, str]:
    """Two addresses whose texts are `length` characters long, the same shape, every digit different."""
    at, run, digits = _shapes6(length)[0]
    counts = _split(digits, 8 - run, None)
    a, b = (_address6(at, run, counts, [int(d * n, 16) for n in counts]) for d in ("1", "2"))
    return a, b


def _samples6(length: int, rng: random.Random, n: int = 6) -> list[str]:
    """`n` random addresses whose RFC 5952 text is `length` characters long, built shape first (as
    _samples builds dotted ones: drawn at random, most lengths would take millions of draws)."""
    shapes = _shapes6(length)
    out = []
    for _ in range(n):
        at, run, digits = rng.choice(shapes)
        counts = _split(digits, 8 - run, rng)
        out.append(_address6(at, run, counts, [rng.randint(16 ** (c - 1), 16**c - 1) for c in counts]))
    return out


def _variant(probe: Any, length: int, ranges: list[tuple[int, int]], pair: tuple[str, str]) -> Variant | None:
    """The template for addresses `length` characters long: where the address text sits, found as
    the bytes that differ between `pair`, two addresses with different digits in the same places."""
    a, b = pair
    pa, pb = probe.payload(a, 80), probe.payload(b, 80)
    if len(pa) != len(pb):
        return None
    # (The ranges differ between the two too, by design: they are masked, and must not move.)
    data = bytearray(pa)
    mask = [x != y for x, y in zip(pa, pb, strict=True)]
    for at, n in ranges:
        data[at : at + n] = bytes(n)
        mask[at : at + n] = [False] * n
    diff = [i for i, m in enumerate(mask) if m]
    if not diff:
        return Variant(bytes(data), NONE, list(ranges))
    # Where the text starts: at the first difference, or (an IPv6 text may begin with "::", the
    # same in both) a few characters before it.
    at = [s for s in range(diff[0], max(diff[0] - length, -1), -1) if pa[s : s + length] == a.encode()]
    ip_at = at[0] if at else -1
    if ip_at < 0 or pb[ip_at : ip_at + length] != b.encode() or any(i >= ip_at + length for i in diff):
        return None  # the address is not there once, as text
    data[ip_at : ip_at + length] = bytes(length)
    return Variant(bytes(data), ip_at, list(ranges))


def records(kp: KernelPayload | None) -> list[bytes]:
    """The program's zb_kpayload entries of one probe (VARIANTS of them, disabled where None)."""
    out = []
    for i in range(VARIANTS):
        rec = np.zeros((), dtype=events.KPAYLOAD_DTYPE)
        v = kp.variants[i] if kp is not None and kp.handshake else None
        if kp is not None and (v is not None or not kp.handshake):
            rec["enabled"], rec["handshake"], rec["seed"] = 1, int(kp.handshake), kp.seed
            rec["ip_at"] = NONE
            rec["range_at"][:] = NONE
            if v is not None:
                rec["len"] = len(v.data)
                rec["csum"] = packets.native_word_sum(v.data)
                rec["ip_at"] = v.ip_at
                for r, (at, n) in enumerate(v.ranges):
                    rec["range_at"][r], rec["range_len"][r] = at, n
                rec["data"][: len(v.data)] = list(v.data)
        out.append(rec.tobytes())
    return out
