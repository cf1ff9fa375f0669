"""Interface, source address and next-hop MAC from the routing table (netlink)."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

from pyroute2 import IPRoute

_USABLE_NUD = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80  # REACHABLE STALE DELAY PROBE NOARP PERMANENT


class NetError(RuntimeError):
    pass


@dataclass(frozen=True)
class NetParams:
    iface: str
    src_ip: str
    src_mac: str
    gateway_mac: str
    next_hop: str | None


def _attr(msg: object, name: str) -> object:
    return msg.get_attr(name)  # type: ignore[attr-defined]


def _neighbour_mac(ipr: IPRoute, ifindex: int, ip: str) -> str | None:
    for n in ipr.get_neighbours(ifindex=ifindex, dst=ip):
        mac = _attr(n, "NDA_LLADDR")
        if mac and n["state"] & _USABLE_NUD:
            return str(mac)
    return None


def _solicit(ifname: str, ip: str) -> None:
    """Make the kernel ARP for `ip`: one datagram to the discard port."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        s.sendto(b"", (ip, 9))
    except OSError:
        pass
    finally:
        s.close()


def resolve(
    target: str,
    iface: str | None = None,
    source_ip: str | None = None,
    gateway_mac: str | None = None,
    solicit: bool = True,
) -> NetParams:
    """Defaults for what the user left out; `solicit=False` sends nothing (dry run)."""
    with IPRoute() as ipr:
        try:
            routes = ipr.route("get", dst=target)
        except Exception:
            routes = []
        route = routes[0] if routes else None
        if iface is None:
            if route is None:
                raise NetError(f"no route to {target} (use --iface, --source-ip, --gateway-mac)")
            ifindex = int(_attr(route, "RTA_OIF"))
            links = ipr.get_links(ifindex)
            iface = str(_attr(links[0], "IFLA_IFNAME"))
        else:
            idx = ipr.link_lookup(ifname=iface)
            if not idx:
                raise NetError(f"unknown interface '{iface}'")
            ifindex = idx[0]
        link = ipr.get_links(ifindex)[0]
        src_mac = str(_attr(link, "IFLA_ADDRESS") or "00:00:00:00:00:00")
        if source_ip is None:
            pref = _attr(route, "RTA_PREFSRC") if route is not None else None
            if pref:
                source_ip = str(pref)
            else:
                addrs = ipr.get_addr(family=socket.AF_INET, index=ifindex)
                if not addrs:
                    raise NetError(f"interface '{iface}' has no IPv4 address (use --source-ip)")
                source_ip = str(_attr(addrs[0], "IFA_ADDRESS"))
        next_hop = None
        if route is not None:
            gw = _attr(route, "RTA_GATEWAY")
            next_hop = str(gw) if gw else target
        if gateway_mac is None:
            if next_hop is None:
                raise NetError(f"cannot find the next hop for {target} (use --gateway-mac)")
            gateway_mac = _neighbour_mac(ipr, ifindex, next_hop)
            if gateway_mac is None and not solicit:
                gateway_mac = "00:00:00:00:00:00"
            deadline = time.monotonic() + 3.0
            while gateway_mac is None and time.monotonic() < deadline:
                _solicit(iface, next_hop)
                time.sleep(0.1)
                gateway_mac = _neighbour_mac(ipr, ifindex, next_hop)
            if gateway_mac is None:
                raise NetError(f"cannot resolve the MAC of {next_hop} on {iface} (use --gateway-mac)")
    return NetParams(iface, source_ip, src_mac, gateway_mac, next_hop)
