"""The lab's plan: every name, address, port and veth pair, derived from one prefix.

Nothing here touches the system: importing only computes names (see the
package docstring for the picture).

IPv6 runs alongside IPv4 with the same shape, every address inside the RFC 5180
benchmark block 2001:2::/48 (the IANA registry's counterpart of 198.18.0.0/15).
Each v4 name has a v6 twin with the suffix 6 (OPEN_NET6, TARGET_GW6, ...):

    links        2001:2:0:ff00::/64 scanner-router (::1 scanner, ::2 router),
                 2001:2:0:ff01::/64 router-target (::1 router, ::2 target);
                 the twins of 10.77.0.0/24 and 10.77.1.0/24
    targets      2001:2::/111 (SCAN_ROUTE6) = BIG_NET6 2001:2::/112 + BLACKHOLE_NET6
                 2001:2::1:0/112: an address's low 17 bits are its v4 twin's offset in
                 198.18.0.0/15, written in hex: 198.18.1.5 <-> 2001:2::105,
                 198.19.3.5 <-> 2001:2::1:305 (v6_twin() computes it) Every name derives from PREFIX
(environment variable ZBANNER_LAB_PREFIX, default "zbl-"; 1-4 lowercase
letters/digits and a final "-"), so several labs can coexist.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

# The plan's public names: the lab package re-exports them (`lab.SCAN_NS`).
__all__ = [
    "PASS_PROG_NAME",
    "BIG_NET",
    "BIG_PAGE",
    "BLACKHOLE_NET",
    "CAPTURE_IF",
    "CAPTURE_NS",
    "DEFAULT_PREFIX",
    "DNS_ANSWER",
    "DNS_NAME",
    "DROP_NET",
    "GATEWAY_MAC",
    "LINK_PREFIXLEN",
    "LOCK_FILE",
    "NFT_TABLE",
    "NOECHO_NET",
    "NTP_STRATUM",
    "OPEN_NET",
    "OPEN_TCP_PORTS",
    "PROTOCOLS",
    "PORT_PROTOS",
    "PORTS",
    "PREFIX",
    "PROHIBIT_NET",
    "READY_ADDR",
    "ROUTER_IF",
    "ROUTER_NS",
    "ROUTER_TARGET_IF",
    "ROUTER_TARGET_IP",
    "ROUTER_TARGET_MAC",
    "RST_NET",
    "SCAN_IF",
    "SCAN_IP",
    "SCAN_MAC",
    "SCAN_NS",
    "SCAN_ROUTE",
    "SILENT_NET",
    "STATE_DIR",
    "TARGET_GW",
    "TARGET_IF",
    "TARGET_IP",
    "TARGET_LINK_MAC",
    "TARGET_MAC",
    "TARGET_NS",
    "TARPIT_IP",
    "TARPIT_PORT",
    "TCP_PORTS",
    "TCP_SERVICES",
    "TTL_NET",
    "UDP_PORTS",
    "UNEXPECTED",
    "UNEXPECTED_PORTS",
    "UNREACH_NET",
    "WIRE_NS",
    "WIRE_ROUTER_IF",
    "WIRE_ROUTER_MAC",
    "WIRE_SCAN_IF",
    "WIRE_SCAN_MAC",
    "LabInfo",
    # IPv6: the twins (module docstring).
    "ADDRESSES6",
    "BIG_NET6",
    "BLACKHOLE_NET6",
    "DNS_ANSWER6",
    "DROP_NET6",
    "LINK_PREFIXLEN6",
    "NOECHO_NET6",
    "OPEN_NET6",
    "PROHIBIT_NET6",
    "READY_ADDR6",
    "ROUTER_TARGET_IP6",
    "RST_NET6",
    "SCAN_IP6",
    "SCAN_ROUTE6",
    "SILENT_NET6",
    "TARGET_GW6",
    "TARGET_IP6",
    "TARPIT_IP6",
    "TTL_NET6",
    "UNREACH_NET6",
    "v6_twin",
]

DEFAULT_PREFIX = "zbl-"


def _lab_prefix() -> str:
    prefix = os.environ.get("ZBANNER_LAB_PREFIX", DEFAULT_PREFIX)
    # Interface names (PREFIX + 2 chars) must stay within the kernel's 15; short names also keep
    # `ip` output and STATE_DIR readable.
    if not re.fullmatch(r"[a-z0-9]{1,4}-", prefix):
        raise ValueError(
            f"ZBANNER_LAB_PREFIX={prefix!r}: must be 1-4 lowercase letters/digits followed by '-' "
            f"(e.g. {DEFAULT_PREFIX!r})"
        )
    return prefix


PREFIX = _lab_prefix()
_TAG = PREFIX.rstrip("-")
SCAN_NS = f"{PREFIX}scan"
ROUTER_NS = f"{PREFIX}rtr"
TARGET_NS = f"{PREFIX}tgt"
WIRE_NS = f"{PREFIX}wire"
SCAN_IF = f"{PREFIX}s0"
ROUTER_IF = f"{PREFIX}r0"  # scanner side of the router
ROUTER_TARGET_IF = f"{PREFIX}r1"  # target side of the router
TARGET_IF = f"{PREFIX}t0"
WIRE_SCAN_IF = f"{PREFIX}w0"  # relay side "a"
WIRE_ROUTER_IF = f"{PREFIX}w1"  # relay side "b"
# Where to tcpdump every frame the scanner sends, exactly as sent (TTL not yet decremented, router
# carve-outs included, after the wire's faults if any): the router's scanner-side interface.
# TARGET_NS/TARGET_IF see only what the router forwarded to the target, one TTL lower.
CAPTURE_NS = ROUTER_NS
CAPTURE_IF = ROUTER_IF
SCAN_IP = "10.77.0.1"
TARGET_GW = "10.77.0.2"  # the scanner's gateway: the router's ROUTER_IF
ROUTER_TARGET_IP = "10.77.1.1"
TARGET_IP = "10.77.1.2"
LINK_PREFIXLEN = 24
# The links' IPv6 twins (2001:2:0:ff00::/64, 2001:2:0:ff01::/64): inside the benchmark block, outside
# SCAN_ROUTE6, so a link address is never a target.
SCAN_IP6 = "2001:2:0:ff00::1"
TARGET_GW6 = "2001:2:0:ff00::2"  # the router's ROUTER_IF
ROUTER_TARGET_IP6 = "2001:2:0:ff01::1"
TARGET_IP6 = "2001:2:0:ff01::2"
LINK_PREFIXLEN6 = 64
# Locally administered and fixed, so pcaps and XDP tests can hard-code them.
SCAN_MAC = "02:7a:62:6c:00:01"
GATEWAY_MAC = "02:7a:62:6c:00:02"  # ROUTER_IF
PASS_PROG_NAME = "zb_lab_pass"  # the XDP program on the scanner's next hop (nexthop.py)
TARGET_MAC = GATEWAY_MAC  # old name: the MAC the scanner sends to (was the target's before the router)
ROUTER_TARGET_MAC = "02:7a:62:6c:00:03"
TARGET_LINK_MAC = "02:7a:62:6c:00:04"
WIRE_SCAN_MAC = "02:7a:62:6c:00:05"
WIRE_ROUTER_MAC = "02:7a:62:6c:00:06"
STATE_DIR = "/run/zbanner-xdp-lab" if PREFIX == DEFAULT_PREFIX else f"/run/zbanner-xdp-lab-{_TAG}"
# Outside STATE_DIR because down() deletes that while holding the lock.
LOCK_FILE = f"{STATE_DIR}.lock"
NFT_TABLE = _TAG  # "table inet zbl" in the target, "table ip zbl" in the router

OPEN_NET = "198.18.0.0/24"
RST_NET = "198.18.1.0/24"
SILENT_NET = "198.18.2.0/24"
NOECHO_NET = "198.18.3.0/24"
TARPIT_IP = "198.18.4.5"
BIG_NET = "198.18.0.0/16"
UNREACH_NET = "198.19.0.0/24"
PROHIBIT_NET = "198.19.1.0/24"
DROP_NET = "198.19.2.0/24"
TTL_NET = "198.19.3.0/24"
BLACKHOLE_NET = "198.19.0.0/16"
SCAN_ROUTE = "198.18.0.0/15"  # BIG_NET + BLACKHOLE_NET, via TARGET_GW
# Readiness probes go here: an OPEN address behind the router (so they prove the whole path).
READY_ADDR = "198.18.0.1"
DNS_NAME = "zbanner.lab"
DNS_ANSWER = "198.18.0.1"
NTP_STRATUM = 10

# IPv6: each range is its v4 twin's offset in 198.18.0.0/15 as the low 17 bits (v6_twin()).
OPEN_NET6 = "2001:2::/120"
RST_NET6 = "2001:2::100/120"
SILENT_NET6 = "2001:2::200/120"
NOECHO_NET6 = "2001:2::300/120"
TARPIT_IP6 = "2001:2::405"
BIG_NET6 = "2001:2::/112"
UNREACH_NET6 = "2001:2::1:0/120"
PROHIBIT_NET6 = "2001:2::1:100/120"
DROP_NET6 = "2001:2::1:200/120"
TTL_NET6 = "2001:2::1:300/120"
BLACKHOLE_NET6 = "2001:2::1:0/112"
SCAN_ROUTE6 = "2001:2::/111"  # BIG_NET6 + BLACKHOLE_NET6, via TARGET_GW6
READY_ADDR6 = "2001:2::1"
DNS_ANSWER6 = "2001:2::1"  # the AAAA record of DNS_NAME (the A record stays DNS_ANSWER)


def v6_twin(addr: str) -> str:
    """The IPv6 twin of an IPv4 address or network in SCAN_ROUTE (198.18.1.5 -> 2001:2::105,
    198.19.0.0/24 -> 2001:2::1:0/120); ValueError outside it."""
    v4 = ipaddress.ip_network(addr, strict=False) if "/" in addr else ipaddress.ip_network(f"{addr}/32")
    route = ipaddress.ip_network(SCAN_ROUTE)
    if v4.version != 4 or not v4.subnet_of(route):  # type: ignore[arg-type]
        raise ValueError(f"{addr} is not an IPv4 address or network inside {SCAN_ROUTE}")
    base = ipaddress.ip_network(SCAN_ROUTE6).network_address
    twin = base + (int(v4.network_address) - int(route.network_address))
    if "/" not in addr:
        return str(twin)
    return f"{twin}/{v4.prefixlen + 96}"


PORTS: dict[str, int] = {
    "ssh": 22, "ftp": 21, "http": 80, "https": 443, "redis": 6379, "dns": 53, "ntp": 123,
    "postgres": 5432, "mysql": 3306, "memcached": 11211, "mqtt": 1883, "smtp": 25, "pop3": 110, "imap": 143,
}  # fmt: skip
# Which transports each PORTS entry is served on.
PORT_PROTOS: dict[str, tuple[str, ...]] = {
    "ssh": ("tcp",), "ftp": ("tcp",), "http": ("tcp",), "https": ("tcp",), "redis": ("tcp",),
    "dns": ("udp", "tcp"), "ntp": ("udp",),
    "postgres": ("tcp",), "mysql": ("tcp",), "memcached": ("tcp",), "mqtt": ("tcp",), "smtp": ("tcp",),
    "pop3": ("tcp",), "imap": ("tcp",),
}  # fmt: skip
# The protocol each PORTS entry speaks, by LZR's name (probes/lzr.py): the key itself unless said here.
PROTOCOLS: dict[str, str] = {k: {"https": "tls"}.get(k, k) for k in PORTS}
TCP_PORTS = frozenset(PORTS[k] for k, protos in PORT_PROTOS.items() if "tcp" in protos)
UDP_PORTS = frozenset(PORTS[k] for k, protos in PORT_PROTOS.items() if "udp" in protos)
# Every TCP service also answers on a port that is not its own (LZR's point: unexpected services):
# nftables in the target namespace DNATs port -> the PORTS entry's port on TARGET_IP (files/target.nft).
# Nothing listens on these ports, so TCP_PORTS (what the servers bind) leaves them out.
UNEXPECTED: dict[int, str] = {
    9021: "ftp", 9022: "ssh", 9025: "smtp", 9053: "dns", 9080: "http", 9110: "pop3", 9143: "imap",
    9211: "memcached", 9306: "mysql", 9379: "redis", 9432: "postgres", 9443: "https", 9883: "mqtt",
}  # fmt: skip
UNEXPECTED_PORTS = frozenset(UNEXPECTED)
OPEN_TCP_PORTS = TCP_PORTS | UNEXPECTED_PORTS  # the ports an open lab address SYN-ACKs
# Which protocol answers on each TCP port of an open lab address, own ports and unexpected ones
# (truth.service() adds the tarpit, whose other ports all reach nginx's http).
TCP_SERVICES: dict[int, str] = {
    **{PORTS[k]: PROTOCOLS[k] for k in PORTS if "tcp" in PORT_PROTOS[k]},
    **{port: PROTOCOLS[k] for port, k in UNEXPECTED.items()},
}
BIG_PAGE = "/big.html"  # on every nginx, ~4.5 kB: see servers.write_configs
TARPIT_PORT = PORTS["http"]  # the tarpit's other ports are DNATed to nginx here


def veth_pairs(wire: bool) -> list[tuple[str, str, str, str, str, str]]:
    """The veth pairs: (ns, ifname, mac, peer ns, peer ifname, peer mac)."""
    if wire:
        scan_side = [
            (SCAN_NS, SCAN_IF, SCAN_MAC, WIRE_NS, WIRE_SCAN_IF, WIRE_SCAN_MAC),
            (WIRE_NS, WIRE_ROUTER_IF, WIRE_ROUTER_MAC, ROUTER_NS, ROUTER_IF, GATEWAY_MAC),
        ]
    else:
        scan_side = [(SCAN_NS, SCAN_IF, SCAN_MAC, ROUTER_NS, ROUTER_IF, GATEWAY_MAC)]
    target_side = (ROUTER_NS, ROUTER_TARGET_IF, ROUTER_TARGET_MAC, TARGET_NS, TARGET_IF, TARGET_LINK_MAC)
    return [*scan_side, target_side]


def interfaces(wire: bool) -> list[tuple[str, str]]:
    """(ns, ifname) of every veth end, scanner side first."""
    out = []
    for ns, ifname, _mac, peer_ns, peer_if, _peer_mac in veth_pairs(wire):
        out += [(ns, ifname), (peer_ns, peer_if)]
    return out


def namespaces(wire: bool) -> list[str]:
    return [SCAN_NS, *([WIRE_NS] if wire else []), ROUTER_NS, TARGET_NS]


# Interface -> its address (the wire's interfaces have none).
ADDRESSES: dict[str, str] = {
    SCAN_IF: SCAN_IP,
    ROUTER_IF: TARGET_GW,
    ROUTER_TARGET_IF: ROUTER_TARGET_IP,
    TARGET_IF: TARGET_IP,
}
ADDRESSES6: dict[str, str] = {
    SCAN_IF: SCAN_IP6,
    ROUTER_IF: TARGET_GW6,
    ROUTER_TARGET_IF: ROUTER_TARGET_IP6,
    TARGET_IF: TARGET_IP6,
}


# Every route of the lab, keyed as status() reports it: (namespace, destination, route type,
# gateway, table).
ROUTES: dict[str, tuple[str, str, str, str | None, int]] = {
    "scan_route": (SCAN_NS, SCAN_ROUTE, "unicast", TARGET_GW, 254),
    "router_targets": (ROUTER_NS, BIG_NET, "unicast", TARGET_IP, 254),
    "router_unreach": (ROUTER_NS, UNREACH_NET, "unreachable", None, 254),
    "router_prohibit": (ROUTER_NS, PROHIBIT_NET, "prohibit", None, 254),
    "router_drop": (ROUTER_NS, DROP_NET, "blackhole", None, 254),
    "router_ttl": (ROUTER_NS, TTL_NET, "unicast", TARGET_IP, 254),
    "blackhole": (ROUTER_NS, BLACKHOLE_NET, "blackhole", None, 254),
    "target_default": (TARGET_NS, "0.0.0.0/0", "unicast", ROUTER_TARGET_IP, 254),
    "anyip": (TARGET_NS, BIG_NET, "local", None, 255),
    # IPv6: the same routes (the family follows from the destination).
    "scan_route6": (SCAN_NS, SCAN_ROUTE6, "unicast", TARGET_GW6, 254),
    "router_targets6": (ROUTER_NS, BIG_NET6, "unicast", TARGET_IP6, 254),
    "router_unreach6": (ROUTER_NS, UNREACH_NET6, "unreachable", None, 254),
    "router_prohibit6": (ROUTER_NS, PROHIBIT_NET6, "prohibit", None, 254),
    "router_drop6": (ROUTER_NS, DROP_NET6, "blackhole", None, 254),
    "router_ttl6": (ROUTER_NS, TTL_NET6, "unicast", TARGET_IP6, 254),
    "blackhole6": (ROUTER_NS, BLACKHOLE_NET6, "blackhole", None, 254),
    "target_default6": (TARGET_NS, "::/0", "unicast", ROUTER_TARGET_IP6, 254),
    "anyip6": (TARGET_NS, BIG_NET6, "local", None, 255),
}


@dataclass
class LabInfo:
    scan_ns: str = SCAN_NS
    target_ns: str = TARGET_NS
    scan_if: str = SCAN_IF
    target_if: str = TARGET_IF
    scan_ip: str = SCAN_IP
    gateway_ip: str = TARGET_GW
    scan_mac: str = SCAN_MAC
    gateway_mac: str = GATEWAY_MAC
    open_net: str = OPEN_NET
    rst_net: str = RST_NET
    silent_net: str = SILENT_NET
    big_net: str = BIG_NET
    blackhole_net: str = BLACKHOLE_NET
    scan_route: str = SCAN_ROUTE
    ports: dict[str, int] = field(default_factory=lambda: dict(PORTS))
    servers: dict[str, int] = field(default_factory=dict)
    state_dir: str = STATE_DIR
    # Since the router (and the optional wire) came in.
    prefix: str = PREFIX
    router_ns: str = ROUTER_NS
    router_if: str = ROUTER_IF
    router_target_if: str = ROUTER_TARGET_IF
    router_target_ip: str = ROUTER_TARGET_IP
    target_ip: str = TARGET_IP
    noecho_net: str = NOECHO_NET
    tarpit_ip: str = TARPIT_IP
    unreach_net: str = UNREACH_NET
    prohibit_net: str = PROHIBIT_NET
    drop_net: str = DROP_NET
    ttl_net: str = TTL_NET
    tcp_ports: list[int] = field(default_factory=lambda: sorted(TCP_PORTS))
    udp_ports: list[int] = field(default_factory=lambda: sorted(UDP_PORTS))
    wire: bool = False
    wire_ns: str | None = None
    wire_ifs: list[str] = field(default_factory=list)  # [a (scanner side), b (router side)]
    relay_pid: int | None = None
    built_by: dict[str, Any] = field(default_factory=dict)  # users.owner(): who ran up()
    # IPv6 (the twins: see the module docstring).
    scan_ip6: str = SCAN_IP6
    gateway_ip6: str = TARGET_GW6
    router_target_ip6: str = ROUTER_TARGET_IP6
    target_ip6: str = TARGET_IP6
    open_net6: str = OPEN_NET6
    rst_net6: str = RST_NET6
    silent_net6: str = SILENT_NET6
    noecho_net6: str = NOECHO_NET6
    tarpit_ip6: str = TARPIT_IP6
    big_net6: str = BIG_NET6
    unreach_net6: str = UNREACH_NET6
    prohibit_net6: str = PROHIBIT_NET6
    drop_net6: str = DROP_NET6
    ttl_net6: str = TTL_NET6
    blackhole_net6: str = BLACKHOLE_NET6
    scan_route6: str = SCAN_ROUTE6

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabInfo:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)
