"""netinfo's choices among netlink answers (no network here: the netlink replies are stand-ins; the
lab's tests/integration/test_netinfo.py asks a real kernel)."""

from __future__ import annotations

import socket
from typing import Any

from zbanner_xdp import netinfo


class Msg(dict):
    """A netlink message as pyroute2 gives it: header fields by key, attributes by get_attr()."""

    def __init__(self, attrs: dict[str, Any], **fields: Any) -> None:
        super().__init__(fields)
        self.attrs = attrs

    def get_attr(self, name: str) -> Any:
        return self.attrs.get(name)


class FakeIPRoute:
    def __init__(self, addrs: list[Msg], neighbours: list[Msg]) -> None:
        self.addrs, self.neighbours = addrs, neighbours

    def get_addr(self, family: int, index: int) -> list[Msg]:
        return [a for a in self.addrs if a["family"] == family and a["index"] == index]

    def get_neighbours(self, family: int, ifindex: int) -> list[Msg]:
        return [n for n in self.neighbours if n["family"] == family and n["ifindex"] == ifindex]


def addr6(text: str, flags: int = 0) -> Msg:
    return Msg({"IFA_ADDRESS": text, "IFA_FLAGS": flags}, family=socket.AF_INET6, index=3, flags=flags & 0xFF)


def test_source_is_a_usable_global_ipv6_address() -> None:
    ipr = FakeIPRoute(
        [
            addr6("fe80::1"),  # link-local: replies to it never come back from the Internet
            addr6("2001:2::a", flags=0x40),  # tentative (DAD running)
            addr6("2001:2::b", flags=0x20),  # deprecated
            addr6("2001:2::c", flags=0x08),  # DAD failed
            addr6("2001:2::d", flags=0x100),  # IFA_F_NOPREFIXROUTE: fine
            Msg({"IFA_ADDRESS": "10.0.0.1"}, family=socket.AF_INET, index=3, flags=0),
        ],
        [],
    )
    assert netinfo._interface_address(ipr, 3, socket.AF_INET6) == "2001:2::d"  # type: ignore[arg-type]
    assert netinfo._interface_address(ipr, 3, socket.AF_INET) == "10.0.0.1"  # type: ignore[arg-type]
    assert netinfo._interface_address(FakeIPRoute([addr6("fe80::2")], []), 3, socket.AF_INET6) is None  # type: ignore[arg-type]


def test_neighbour_matched_as_an_address_in_a_usable_state() -> None:
    def neigh(dst: str, mac: str, state: int) -> Msg:
        return Msg({"NDA_DST": dst, "NDA_LLADDR": mac}, family=socket.AF_INET6, ifindex=3, state=state)

    ipr = FakeIPRoute(
        [],
        [
            neigh("2001:2:0:ff00::2", "02:00:00:00:00:01", 0x20),  # FAILED
            neigh("2001:2:0:ff00:0:0:0:2", "02:00:00:00:00:02", 0x04),  # STALE, spelled out in full
            neigh("2001:2:0:ff00::3", "02:00:00:00:00:03", 0x02),
        ],
    )
    assert netinfo._neighbour_mac(ipr, 3, "2001:2:0:ff00::2") == "02:00:00:00:00:02"  # type: ignore[arg-type]
    assert netinfo._neighbour_mac(ipr, 3, "2001:2:0:ff00::4") is None  # type: ignore[arg-type]
