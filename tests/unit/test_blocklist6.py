"""The default IPv6 blocklist (blocks.DEFAULT_BLOCKLIST6): the IANA IPv6 special-purpose registry's rule."""

from __future__ import annotations

import ipaddress

import pytest

from zbanner_xdp import lab
from zbanner_xdp.blocks import DEFAULT_BLOCKLIST6, IPV6_ALSO_BLOCKED, IPV6_SPECIAL_PURPOSE

NETS = [ipaddress.IPv6Network(n) for n in DEFAULT_BLOCKLIST6]


def blocked(addr: str) -> bool:
    a = ipaddress.IPv6Address(addr)
    return any(a in n for n in NETS)


def test_well_formed_disjoint_and_sorted() -> None:
    assert sorted(NETS) == NETS
    assert [str(n) for n in NETS] == list(DEFAULT_BLOCKLIST6)  # strict CIDRs, canonical text
    for a, b in zip(NETS, NETS[1:], strict=False):
        assert not a.overlaps(b), (a, b)
    for net, _name, rfc, _reachable in IPV6_SPECIAL_PURPOSE:
        assert str(ipaddress.IPv6Network(net)) == net and rfc.startswith("RFC ")


@pytest.mark.parametrize(
    "addr",
    [
        "::", "::1", "::ffff:8.8.8.8", "64:ff9b::808:808", "64:ff9b:1::1", "100::1", "100:0:0:1::1",
        "2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
        "2001:1::4", "2001:2::1", "2001:2:0:ffff::1",  # benchmarking (the lab's block)
        "2001:10::1", "2001:1ff::1", "2001:db8::1", "2002:c000:204::1", "3fff::1", "3fff:fff::1",
        "5f00::1", "fc00::1", "fd12:3456::1", "fe80::1", "febf::1", "ff02::1", "ff0e::1",
    ],
)  # fmt: skip
def test_special_purpose_addresses_are_blocked(addr: str) -> None:
    assert blocked(addr), addr


@pytest.mark.parametrize(
    "addr",
    [
        # The registry's globally reachable blocks, even inside the unreachable 2001::/23.
        "2001:1::1", "2001:1::2", "2001:1::3", "2001:3::1", "2001:3:ffff::1", "2001:4:112::1",
        "2001:20::1", "2001:2f:ffff::1", "2001:30::1", "2620:4f:8000::1",
        # Ordinary global unicast, next to special blocks.
        "2001:200::1", "2001:4860:4860::8888", "2606:4700:4700::1111", "2003::1", "2001:db9::1",
        "2620:4f:8001::1", "4000::1", "64:ff9c::1",
    ],
)  # fmt: skip
def test_globally_reachable_addresses_are_not(addr: str) -> None:
    assert not blocked(addr), addr


def test_the_registry_rule() -> None:
    """Every block not globally reachable is covered whole, unless a reachable block sits inside it;
    every reachable block is left open unless IPV6_ALSO_BLOCKED names it; the extras are covered."""
    reachable = [ipaddress.IPv6Network(n) for n, _m, _r, ok in IPV6_SPECIAL_PURPOSE if ok is True]
    also = {ipaddress.IPv6Network(n) for n, _why in IPV6_ALSO_BLOCKED}
    for net, name, _rfc, ok in IPV6_SPECIAL_PURPOSE:
        n = ipaddress.IPv6Network(net)
        inside = [r for r in reachable if r != n and r.subnet_of(n)]
        if ok is True and n not in also:
            assert not any(n.overlaps(b) for b in NETS), name
        elif not inside:
            assert any(n.subnet_of(b) for b in NETS), name
        else:  # covered but for its reachable parts
            size = sum(b.num_addresses for b in NETS if b.subnet_of(n))
            assert size == n.num_addresses - sum(r.num_addresses for r in inside), name
    for n in also:
        assert any(n.subnet_of(b) for b in NETS)


def test_the_lab_is_blocked_by_default_like_its_ipv4_twin() -> None:
    """The lab's IPv6 ranges sit in the benchmark block, which the default blocklist reserves, as the
    IPv4 ones sit in 198.18.0.0/15: lab scans pass an empty --blocklist for both families."""
    for addr in (lab.READY_ADDR6, lab.TARPIT_IP6, lab.SCAN_IP6, lab.TARGET_GW6, lab.TARGET_IP6):
        assert blocked(addr), addr
    route = ipaddress.IPv6Network(lab.SCAN_ROUTE6)
    assert any(route.subnet_of(b) for b in NETS)
    assert any(ipaddress.IPv6Network("2001:2::/48").subnet_of(b) for b in NETS)
