"""Ground truth: what every lab address answers, as code (the address plan in the package docstring).

expected(addr, port, proto) is the plan's table, expected_icmp() the ICMP
(type, code) of an error and expected_icmp_responder() who sends it. The
router and the target send ICMP errors without rate limits, so these are
exact.
"""

from __future__ import annotations

import ipaddress

from .topology import (
    BIG_NET,
    BLACKHOLE_NET,
    DROP_NET,
    NOECHO_NET,
    OPEN_NET,
    OPEN_TCP_PORTS,
    PROHIBIT_NET,
    ROUTER_NS,
    RST_NET,
    SILENT_NET,
    TARGET_GW,
    TARPIT_IP,
    TARPIT_PORT,
    TCP_SERVICES,
    TTL_NET,
    UDP_PORTS,
    UNREACH_NET,
)

_RST = ipaddress.ip_network(RST_NET)
_SILENT = ipaddress.ip_network(SILENT_NET)
_NOECHO = ipaddress.ip_network(NOECHO_NET)
_TARPIT = ipaddress.ip_address(TARPIT_IP)
_BIG = ipaddress.ip_network(BIG_NET)
_GW = ipaddress.ip_address(TARGET_GW)
# Router carve-outs: classification, ICMP (type, code).
_ROUTER_ICMP: list[tuple[ipaddress.IPv4Network, str, tuple[int, int]]] = [
    (ipaddress.ip_network(UNREACH_NET), "icmp-unreach", (3, 1)),
    (ipaddress.ip_network(PROHIBIT_NET), "icmp-unreach", (3, 13)),
    (ipaddress.ip_network(TTL_NET), "icmp-timxceed", (11, 0)),
]
_PORT_UNREACH = (3, 3)
PROTOS = ("tcp", "udp", "icmp")


def _local_target(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """An address the target namespace answers for at all (local and not SILENT)."""
    return ip in _BIG and ip not in _SILENT


def _router_carveout(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[str, tuple[int, int]] | None:
    for net, cls, icmp in _ROUTER_ICMP:
        if ip in net:
            return cls, icmp
    return None


def _check_args(addr: str, port: int | None, proto: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
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
    The two-argument form is the old TCP-only call.
    """
    ip = _check_args(addr, port, proto)
    if ip.version != 4:
        return None
    router = _router_carveout(ip)
    if router is not None:
        return router[0]  # the router answers for every protocol and port
    if ip == _GW:  # the router itself: no listeners
        return {"tcp": "rst", "udp": "icmp-unreach", "icmp": "echoreply"}[proto]
    if not _local_target(ip):
        return None  # SILENT_NET, DROP_NET, the rest of BLACKHOLE_NET, no route at all
    if proto == "icmp":
        return None if ip in _NOECHO else "echoreply"
    if proto == "udp":
        return "udp" if port in UDP_PORTS else "icmp-unreach"
    # Order matters: the carve-outs sit inside BIG_NET.
    if ip in _RST:
        return "rst"
    if ip == _TARPIT:
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
    """ICMP (type, code) of the error a probe draws, or None if it draws none (see expected())."""
    ip = _check_args(addr, port, proto)
    if ip.version != 4:
        return None
    router = _router_carveout(ip)
    if router is not None:
        return router[1]
    if proto == "udp" and expected(addr, port, proto) == "icmp-unreach":
        return _PORT_UNREACH
    return None


def expected_icmp_responder(addr: str) -> str | None:
    """Source of ICMP about addr: the router (TARGET_GW) for its carve-outs, addr itself where a host
    answers (the target's local addresses, the gateway), None where nothing ever answers."""
    ip = ipaddress.ip_address(addr)
    if ip.version != 4:
        return None
    if _router_carveout(ip) is not None:
        return TARGET_GW
    if ip == _GW or _local_target(ip):
        return str(ip)
    return None


def is_tarpit(addr: str) -> bool:
    """True for the address that SYN-ACKs every TCP port."""
    return ipaddress.ip_address(addr) == _TARPIT


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
    }
