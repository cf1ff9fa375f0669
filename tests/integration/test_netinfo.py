"""netinfo.resolve() in the lab's scan namespace: interface, source, next hop and its MAC from netlink,
for IPv6 targets as for IPv4 ones, with the neighbour resolved on demand (NDP, ARP) and never
statically."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.integration.conftest import python_in_scan_ns
from zbanner_xdp import lab

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.skipif(
        not (os.geteuid() == 0 and shutil.which("ip")), reason="the lab needs root and iproute2"
    ),
]

RESOLVE = r"""
import dataclasses, json, sys
from zbanner_xdp.netinfo import resolve
kw = json.loads(sys.argv[2])
print(json.dumps(dataclasses.asdict(resolve(sys.argv[1], **kw))))
"""


def resolved(target: str, **kw: object) -> dict[str, str | None]:
    return json.loads(python_in_scan_ns(RESOLVE, target, json.dumps(kw)))


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=True).stdout


def flush_neighbours() -> None:
    ip("-n", lab.SCAN_NS, "neigh", "flush", "dev", lab.SCAN_IF)


def neighbour(addr: str) -> str | None:
    for line in ip("-n", lab.SCAN_NS, "neigh", "show", "dev", lab.SCAN_IF).splitlines():
        if line.split()[0] == addr:
            return line
    return None


@pytest.fixture
def flushed(lab_up: lab.LabInfo) -> Iterator[None]:
    flush_neighbours()
    assert neighbour(lab.TARGET_GW6) is None and neighbour(lab.TARGET_GW) is None
    yield


@pytest.mark.parametrize(
    ("target", "src", "gw"),
    [(lab.v6_twin("198.18.0.5"), lab.SCAN_IP6, lab.TARGET_GW6), ("198.18.0.5", lab.SCAN_IP, lab.TARGET_GW)],
    ids=["ipv6", "ipv4"],
)
def test_resolves_route_source_and_gateway_mac(flushed: None, target: str, src: str, gw: str) -> None:
    got = resolved(target)
    assert got == {
        "iface": lab.SCAN_IF,
        "src_ip": src,
        "src_mac": lab.SCAN_MAC,
        "gateway_mac": lab.GATEWAY_MAC,
        "next_hop": gw,
    }
    # Resolved by the kernel (NDP or ARP) on demand: a dynamic entry, not a static one.
    entry = neighbour(gw)
    assert entry is not None and f"lladdr {lab.GATEWAY_MAC}" in entry and "PERMANENT" not in entry, entry


def test_a_dry_run_sends_nothing(flushed: None) -> None:
    got = resolved(lab.v6_twin("198.19.0.5"), solicit=False)  # through the same gateway
    assert got["next_hop"] == lab.TARGET_GW6 and got["src_ip"] == lab.SCAN_IP6
    assert got["gateway_mac"] == "00:00:00:00:00:00"
    assert neighbour(lab.TARGET_GW6) is None  # no solicitation went out
    # What the user gives is kept.
    given = resolved(
        lab.OPEN_NET6.split("/")[0], source_ip="2001:2:0:ff00::99", gateway_mac="02:00:00:00:00:09"
    )
    assert (given["src_ip"], given["gateway_mac"]) == ("2001:2:0:ff00::99", "02:00:00:00:00:09")


def test_link_local_gateway(lab_up: lab.LabInfo) -> None:
    """A route via the router's link-local address (as routes learned from router advertisements are):
    the neighbour is solicited and found within the interface's scope."""
    out = ip("-n", lab.ROUTER_NS, "-6", "-o", "addr", "show", "dev", lab.ROUTER_IF, "scope", "link").split()
    link_local = out[out.index("inet6") + 1].split("/")[0]
    assert link_local.startswith("fe80:")
    # Inside the benchmark block, outside the lab's plan: only this route leads there.
    net = "2001:2:0:fe00::/64"
    ip("-n", lab.SCAN_NS, "-6", "route", "add", net, "via", link_local, "dev", lab.SCAN_IF)
    try:
        flush_neighbours()
        got = resolved("2001:2:0:fe00::1")
        assert got["next_hop"] == link_local and got["gateway_mac"] == lab.GATEWAY_MAC, got
        assert got["src_ip"] == lab.SCAN_IP6 and got["iface"] == lab.SCAN_IF
        entry = neighbour(link_local)
        assert entry is not None and "PERMANENT" not in entry, entry
    finally:
        ip("-n", lab.SCAN_NS, "-6", "route", "del", net, "via", link_local, "dev", lab.SCAN_IF)
