"""An IPv6 scan's records: addresses as RFC 5952 text from both formatters (zbfmt.c and numpy),
ours as text, ICMPv6 types classified; every other field as an IPv4 scan's."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import numpy as np
import orjson
import pytest

from tests.unit.test_jsonlines import _Probe, _random_events, _Sink, formatter, reference  # noqa: F401
from zbanner_xdp import packets
from zbanner_xdp import receiver as rx
from zbanner_xdp.addrtext import ipv6_texts
from zbanner_xdp.events import CLASSIFICATION, EVENT6_DTYPE, ICMP6_CLASSES, Kind
from zbanner_xdp.output import RecordWriter
from zbanner_xdp.probes import ProbeKind
from zbanner_xdp.targets import addr6_array, addr6_ints

US = int(ipaddress.IPv6Address("2001:2:ff::1"))


def _receiver6(path: Path) -> rx.Receiver:
    import types

    probes = [
        _Probe("synscan", ProbeKind.SYN),
        _Probe("http", ProbeKind.BANNER),
        _Probe("icmp-echo", ProbeKind.ECHO),
    ]
    plan = types.SimpleNamespace(
        P=len(probes), probes=probes, tarpit_index=-1, multi=np.zeros(3, bool), later_step=np.zeros(3, bool)
    )
    writer = RecordWriter(str(path / "out.jsonl"), ["http"])
    writer.open()
    link = packets.LinkParams(b"\x02" * 6, b"\x04" * 6, US, 64, family=6)
    return rx.Receiver(None, link, _Sink(), writer, plan, b"k" * 16)  # type: ignore[arg-type]


def _addresses(rng: np.random.Generator, n: int) -> np.ndarray:
    """Addresses with zero runs of every length and place (what RFC 5952 compresses)."""
    groups = rng.choice(np.array([0, 0, 0, 1, 0xA, 0xBC, 0xDEF, 0xFFFF], np.uint64), (n, 8))
    vals = [int.from_bytes(b"".join(int(g).to_bytes(2, "big") for g in row), "big") for row in groups]
    vals = [v for v in vals if v >> 32 != 0xFFFF]  # v4-mapped: Python's text differs by version
    return addr6_array(vals)


@pytest.mark.parametrize("seed", range(4))
def test_ipv6_records_equal_the_reference(tmp_path: Path, seed: int, formatter: str) -> None:  # noqa: F811
    rng = np.random.default_rng(seed)
    r = _receiver6(tmp_path)
    base = _random_events(rng, 800)
    ev = np.zeros(len(base), EVENT6_DTYPE)
    for name in base.dtype.names:
        ev[name] = base[name]
    addrs = _addresses(rng, 3 * len(ev))[: len(ev)]
    ev = ev[: len(addrs)]
    ev["saddr6"] = addrs
    ev["icmp_responder6"] = addrs[::-1]
    ev["kind"][:20] = Kind.ICMP
    ev["icmp_type"][:20] = [1, 2, 3, 4, 128] * 4
    want = b""
    for e in ev:
        rec = reference(r, e)
        kind = int(e["kind"])
        rec["saddr"] = str(ipaddress.IPv6Address(addr6_ints(np.array([e["saddr6"]]))[0]))
        rec["daddr"] = "2001:2:ff::1"
        if kind == Kind.ICMP:
            rec["icmp_responder"] = str(
                ipaddress.IPv6Address(addr6_ints(np.array([e["icmp_responder6"]]))[0])
            )
            rec["classification"] = ICMP6_CLASSES.get(int(e["icmp_type"]), "icmp-other")
        else:
            rec["classification"] = CLASSIFICATION.get(kind, "unknown")
        want += orjson.dumps(rec) + b"\n"
    assert r._lines(ev) == want


def test_ipv6_text_is_pythons() -> None:
    rng = np.random.default_rng(7)
    addrs = _addresses(rng, 5000)
    assert ipv6_texts(addrs) == [str(ipaddress.IPv6Address(v)) for v in addr6_ints(addrs)]
    edge = addr6_array([0, 1, 1 << 112, (1 << 128) - 1, 0x20010002000000000001000000000001])
    assert ipv6_texts(edge) == [
        "::",
        "::1",
        "1::",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "2001:2::1:0:0:1",
    ]
