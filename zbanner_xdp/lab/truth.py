"""Ground truth: what every lab address answers, as code (the address plan in the package docstring).

expected(addr, port, proto) is the plan's table, expected_icmp() the ICMP
(type, code) of an error and expected_icmp_responder() who sends it. The
router and the target send ICMP errors without rate limits, so these are
exact.

IPv6 addresses get the same answers as their v4 twins (topology.v6_twin), in
ICMPv6's words: proto "icmp" means ICMPv6 echo there, and the errors are
address unreachable (1/3) for host unreachable (3/1), admin prohibited (1/1)
for (3/13), hop limit exceeded (3/0) for TTL exceeded (11/0) and port
unreachable (1/4) for (3/3). The classifications ("icmp-unreach",
"icmp-timxceed", "echoreply") are the same words for both families.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .topology import (
    BIG_NET,
    BIG_NET6,
    BLACKHOLE_NET,
    BLACKHOLE_NET6,
    DROP_NET,
    DROP_NET6,
    NOECHO_NET,
    NOECHO_NET6,
    OPEN_NET,
    OPEN_NET6,
    OPEN_TCP_PORTS,
    PROHIBIT_NET,
    PROHIBIT_NET6,
    ROUTER_NS,
    RST_NET,
    RST_NET6,
    SILENT_NET,
    SILENT_NET6,
    TARGET_GW,
    TARGET_GW6,
    TARPIT_IP,
    TARPIT_IP6,
    TARPIT_PORT,
    TCP_SERVICES,
    TTL_NET,
    TTL_NET6,
    UDP_PORTS,
    UNREACH_NET,
    UNREACH_NET6,
)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class _Plan:
    """One family's address plan (the same shape for both)."""

    rst: Network
    silent: Network
    noecho: Network
    tarpit: Address
    big: Network
    gw: Address
    # Router carve-outs: network, classification, ICMP (type, code).
    router_icmp: tuple[tuple[Network, str, tuple[int, int]], ...]
    port_unreach: tuple[int, int]


def _plan(
    rst: str,
    silent: str,
    noecho: str,
    tarpit: str,
    big: str,
    gw: str,
    router: tuple[tuple[str, str, tuple[int, int]], ...],
    port_unreach: tuple[int, int],
) -> _Plan:
    net, addr = ipaddress.ip_network, ipaddress.ip_address
    return _Plan(
        net(rst), net(silent), net(noecho), addr(tarpit), net(big), addr(gw),
        tuple((net(n), cls, icmp) for n, cls, icmp in router), port_unreach,
    )  # fmt: skip


_PLANS: dict[int, _Plan] = {
    4: _plan(
        RST_NET,
        SILENT_NET,
        NOECHO_NET,
        TARPIT_IP,
        BIG_NET,
        TARGET_GW,
        (
            (UNREACH_NET, "icmp-unreach", (3, 1)),  # host unreachable
            (PROHIBIT_NET, "icmp-unreach", (3, 13)),  # administratively prohibited
            (TTL_NET, "icmp-timxceed", (11, 0)),  # TTL exceeded in transit
        ),
        (3, 3),
    ),  # fmt: skip
    6: _plan(
        RST_NET6,
        SILENT_NET6,
        NOECHO_NET6,
        TARPIT_IP6,
        BIG_NET6,
        TARGET_GW6,
        (
            (UNREACH_NET6, "icmp-unreach", (1, 3)),  # address unreachable
            (PROHIBIT_NET6, "icmp-unreach", (1, 1)),  # administratively prohibited
            (TTL_NET6, "icmp-timxceed", (3, 0)),  # hop limit exceeded in transit
        ),
        (1, 4),
    ),  # fmt: skip
}
PROTOS = ("tcp", "udp", "icmp")


def _local_target(ip: Address) -> bool:
    """An address the target namespace answers for at all (local and not SILENT)."""
    plan = _PLANS[ip.version]
    return ip in plan.big and ip not in plan.silent


def _router_carveout(ip: Address) -> tuple[str, tuple[int, int]] | None:
    for net, cls, icmp in _PLANS[ip.version].router_icmp:
        if ip in net:
            return cls, icmp
    return None


def _check_args(addr: str, port: int | None, proto: str) -> Address:
    if proto not in PROTOS:
        raise ValueError(f"proto must be one of {PROTOS}, not {proto!r}")
    if proto != "icmp":
        if port is None:
            raise ValueError(f"{proto} needs a port")
        if not 0 <= port <= 65535:
            raise ValueError(f"port out of range: {port}")
    return ipaddress.ip_address(addr)


def expected(addr: str, port: int | None, proto: str = "tcp") -> str | None:
    """The first answer a probe to addr (from the scan namespace) gets; None for silence.

    tcp (a SYN to port): "synack", "rst", "icmp-unreach", "icmp-timxceed" or None.
    udp (a datagram to port; 53 and 123 get a DNS/NTP query): "udp" (a reply), "icmp-unreach"
    (port unreachable from the target or the router, or an error from the router) or None.
    icmp (an echo request; port is ignored): "echoreply", "icmp-unreach", "icmp-timxceed" or None.
    The two-argument form is the old TCP-only call. IPv6 addresses: the same, over ICMPv6.
    """
    ip = _check_args(addr, port, proto)
    plan = _PLANS[ip.version]
    router = _router_carveout(ip)
    if router is not None:
        return router[0]  # the router answers for every protocol and port
    if ip == plan.gw:  # the router itself: no listeners
        return {"tcp": "rst", "udp": "icmp-unreach", "icmp": "echoreply"}[proto]
    if not _local_target(ip):
        return None  # SILENT_NET, DROP_NET, the rest of BLACKHOLE_NET, no route at all
    if proto == "icmp":
        return None if ip in plan.noecho else "echoreply"
    if proto == "udp":
        return "udp" if port in UDP_PORTS else "icmp-unreach"
    # Order matters: the carve-outs sit inside BIG_NET.
    if ip in plan.rst:
        return "rst"
    if ip == plan.tarpit:
        return "synack"
    return "synack" if port in OPEN_TCP_PORTS else "rst"


def service(addr: str, port: int) -> str | None:
    """The protocol (LZR's name, topology.TCP_SERVICES) of the server a TCP connection to addr:port
    reaches, or None where no connection is made (expected() is not "synack"). The tarpit's ports
    without a service of their own reach nginx: http."""
    if expected(addr, port, "tcp") != "synack":
        return None
    return TCP_SERVICES.get(port, TCP_SERVICES[TARPIT_PORT])


def expected_icmp(addr: str, port: int | None, proto: str = "tcp") -> tuple[int, int] | None:
    """ICMP (type, code) of the error a probe draws, or None if it draws none (see expected()); ICMPv6's
    (type, code) for an IPv6 address."""
    ip = _check_args(addr, port, proto)
    router = _router_carveout(ip)
    if router is not None:
        return router[1]
    if proto == "udp" and expected(addr, port, proto) == "icmp-unreach":
        return _PLANS[ip.version].port_unreach
    return None


def expected_icmp_responder(addr: str) -> str | None:
    """Source of ICMP about addr: the router (TARGET_GW) for its carve-outs, addr itself where a host
    answers (the target's local addresses, the gateway), None where nothing ever answers. For an
    IPv6 address: TARGET_GW6, or addr itself."""
    ip = ipaddress.ip_address(addr)
    plan = _PLANS[ip.version]
    if _router_carveout(ip) is not None:
        return str(plan.gw)
    if ip == plan.gw or _local_target(ip):
        return str(ip)
    return None


def is_tarpit(addr: str) -> bool:
    """True for the address that SYN-ACKs every TCP port (TARPIT_IP or TARPIT_IP6)."""
    ip = ipaddress.ip_address(addr)
    return ip == _PLANS[ip.version].tarpit


def address_plan() -> dict[str, str]:
    return {
        "open": f"{OPEN_NET}: every server port and unexpected port open (AnyIP), other TCP ports RST, "
        f"UDP {'/'.join(map(str, sorted(UDP_PORTS)))} answered, other UDP ports ICMP port unreachable",
        "rst": f"{RST_NET}: every TCP SYN answered by RST (nft reject with tcp reset); UDP, ICMP as open",
        "silent": f"{SILENT_NET}: every packet dropped silently (nft drop), ICMP echo and UDP too",
        "noecho": f"{NOECHO_NET}: ICMP echo requests dropped; TCP and UDP as open",
        "tarpit": f"{TARPIT_IP}: SYN-ACKs every TCP port (DNAT to nginx :{TARPIT_PORT}); UDP, ICMP as open",
        "big": f"{BIG_NET}: all local; outside the carve-outs above behaves as open",
        "unreach": f"{UNREACH_NET}: router {TARGET_GW} answers ICMP host unreachable (3/1)",
        "prohibit": f"{PROHIBIT_NET}: router {TARGET_GW} answers ICMP admin prohibited (3/13)",
        "drop": f"{DROP_NET}: router blackhole route: silent",
        "ttl": f"{TTL_NET}: router {TARGET_GW} answers ICMP time exceeded (11/0)",
        "blackhole": f"{BLACKHOLE_NET}: the rest is blackholed in {ROUTER_NS}: silent",
        "gateway": f"{TARGET_GW}: the router itself: TCP RST, UDP port unreachable, echo replies",
        "open6": f"{OPEN_NET6} (IPv6 twin of {OPEN_NET}, and so on: the same answers over ICMPv6): open",
        "rst6": f"{RST_NET6}: every TCP SYN answered by RST",
        "silent6": f"{SILENT_NET6}: every packet dropped silently",
        "noecho6": f"{NOECHO_NET6}: ICMPv6 echo requests dropped; TCP and UDP as open",
        "tarpit6": f"{TARPIT_IP6}: SYN-ACKs every TCP port",
        "big6": f"{BIG_NET6}: all local; outside the carve-outs above behaves as open",
        "unreach6": f"{UNREACH_NET6}: router {TARGET_GW6} answers ICMPv6 address unreachable (1/3)",
        "prohibit6": f"{PROHIBIT_NET6}: router {TARGET_GW6} answers ICMPv6 admin prohibited (1/1)",
        "drop6": f"{DROP_NET6}: router blackhole route: silent",
        "ttl6": f"{TTL_NET6}: router {TARGET_GW6} answers ICMPv6 hop limit exceeded (3/0)",
        "blackhole6": f"{BLACKHOLE_NET6}: the rest is blackholed in {ROUTER_NS}: silent",
        "gateway6": f"{TARGET_GW6}: the router itself: TCP RST, UDP port unreachable, echo replies",
    }
