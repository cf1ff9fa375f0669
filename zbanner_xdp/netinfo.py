"""Interface, source address and next-hop MAC from the routing table (netlink).

IPv4 and IPv6 alike: the family is the target's. Over IPv6 the source is the
address the kernel's route lookup selects (RTA_PREFSRC, RFC 6724 rules), or
failing that the interface's first global address; the next hop's MAC comes
from the neighbour table (NDP rather than ARP), which the kernel fills when
asked to send through that neighbour. A gateway may be link-local (fe80::, as
routes learned from router advertisements have): the neighbour table and the
solicitation then work within the interface's scope.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass

from pyroute2 import IPRoute

_USABLE_NUD = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80  # REACHABLE STALE DELAY PROBE NOARP PERMANENT
_IFA_UNUSABLE = 0x08 | 0x20 | 0x40  # IFA_F_DADFAILED, IFA_F_DEPRECATED, IFA_F_TENTATIVE


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


def _family(ip: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET


def _neighbour_mac(ipr: IPRoute, ifindex: int, ip: str) -> str | None:
    want = ipaddress.ip_address(ip)
    # Compared as addresses: the same IPv6 address has many spellings.
    for n in ipr.get_neighbours(family=_family(ip), ifindex=ifindex):
        dst = _attr(n, "NDA_DST")
        mac = _attr(n, "NDA_LLADDR")
        if dst and ipaddress.ip_address(str(dst)) == want and mac and n["state"] & _USABLE_NUD:
            return str(mac)
    return None


def _solicit(ifname: str, ifindex: int, ip: str) -> None:
    """Make the kernel resolve `ip` (ARP, or neighbour solicitation for IPv6): one datagram to the
    discard port. The scope id makes a link-local address usable; other addresses ignore it."""
    family = _family(ip)
    s = socket.socket(family, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        s.sendto(b"", (ip, 9, 0, ifindex) if family == socket.AF_INET6 else (ip, 9))
    except OSError:
        pass
    finally:
        s.close()


def _interface_address(ipr: IPRoute, ifindex: int, family: int) -> str | None:
    """The interface's first usable address of the family: for IPv6 a global one (not link-local,
    tentative, deprecated or failed DAD), which is what a scan's replies can come back to."""
    for a in ipr.get_addr(family=family, index=ifindex):
        addr = str(_attr(a, "IFA_ADDRESS"))
        if family == socket.AF_INET6:
            flags = _attr(a, "IFA_FLAGS")
            flags = int(flags) if flags is not None else a["flags"]
            if ipaddress.IPv6Address(addr).is_link_local or flags & _IFA_UNUSABLE:
                continue
        return addr
    return None


def resolve(
    target: str,
    iface: str | None = None,
    source_ip: str | None = None,
    gateway_mac: str | None = None,
    solicit: bool = True,
) -> NetParams:
    """Defaults for what the user left out; `solicit=False` sends nothing (dry run). `target` is an
    IPv4 or IPv6 address, and the route, source and neighbour are of its family."""
    family = _family(target)
    with IPRoute() as ipr:
        try:
            routes = ipr.route("get", dst=target, family=family)
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
                source_ip = _interface_address(ipr, ifindex, family)
                if source_ip is None:
                    kind = "global IPv6" if family == socket.AF_INET6 else "IPv4"
                    raise NetError(f"interface '{iface}' has no {kind} address (use --source-ip)")
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
                _solicit(iface, ifindex, next_hop)
                time.sleep(0.1)
                gateway_mac = _neighbour_mac(ipr, ifindex, next_hop)
            if gateway_mac is None:
                raise NetError(f"cannot resolve the MAC of {next_hop} on {iface} (use --gateway-mac)")
    return NetParams(iface, source_ip, src_mac, gateway_mac, next_hop)
