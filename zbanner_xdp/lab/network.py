"""The lab's network: namespaces, veth pairs, addresses, routes and sysctls (see topology.py).

Every veth end has tx checksum offload switched off: otherwise packets the
target's kernel sends carry only a partial checksum across the veths, and
anything reading raw frames on the scanner's veth (the XDP program, tcpdump,
pcap tests, the relay) would see bad TCP checksums that a real wire never
shows.

IPv6 runs in the scanner, router and target namespaces (the wire has none: it
carries frames, it sends none), without the chatter that would reach the scan
interface unasked: no DAD probes (accept_dad=0, dad_transmits=0: addresses are
usable at once), no router solicitations (router_solicitations=0, accept_ra=0:
routes are the plan's only), and the unsolicited MLD reports every interface
sends as it comes up squeezed into its first few milliseconds, while the lab is
still being built (mld*_unsolicited_report_interval=10 ms; nothing in the lab
sends MLD queries, so none follow). Neighbour discovery stays on: the scanner
resolves its IPv6 gateway as a host would, with no static neighbour entries.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from . import netns
from .procs import ns_exec_argv, run, step
from .topology import (
    ADDRESSES,
    ADDRESSES6,
    LINK_PREFIXLEN,
    LINK_PREFIXLEN6,
    ROUTER_IF,
    ROUTER_NS,
    ROUTES,
    SCAN_IF,
    SCAN_NS,
    TARGET_NS,
    WIRE_NS,
    WIRE_ROUTER_IF,
    WIRE_SCAN_IF,
    interfaces,
    namespaces,
    veth_pairs,
)

IFF_UP = 0x1
IFF_PROMISC = 0x100
IFA_F_NODAD = 0x02

# IPv6 on, quiet (module docstring). "default" is what the veths inherit (set before they exist),
# "all" covers lo and anything else already there.
IPV6_SYSCTLS: dict[str, str] = {
    f"net.ipv6.conf.{which}.{key}": value
    for which in ("all", "default")
    for key, value in (
        ("disable_ipv6", "0"),
        ("accept_ra", "0"),
        ("autoconf", "0"),
        ("router_solicitations", "0"),
        ("accept_dad", "0"),
        ("dad_transmits", "0"),
        ("mldv1_unsolicited_report_interval", "10"),
        ("mldv2_unsolicited_report_interval", "10"),
    )
}
SCAN_SYSCTLS: dict[str, str] = {
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    **IPV6_SYSCTLS,
}
# The scanner's own namespace keeps its kernel sockets (test clients) out of
# the scanner's default source-port range, 32768-61000, as one would on a
# real scan host: captures then tell the two apart.
SCANNER_ONLY_SYSCTLS: dict[str, str] = {"net.ipv4.ip_local_port_range": "10000 30000"}
# No per-destination or global ICMP rate limit: every ICMP error is ground truth.
ICMP_SYSCTLS: dict[str, str] = {
    "net.ipv4.icmp_ratelimit": "0",
    "net.ipv4.icmp_msgs_per_sec": "100000",
    "net.ipv4.icmp_msgs_burst": "100000",
    # ICMPv6 errors: the per-destination limit is this one (the global budget is the icmp_msgs_* above).
    "net.ipv6.icmp.ratelimit": "0",
}
ROUTER_SYSCTLS: dict[str, str] = {
    "net.ipv4.ip_forward": "1",
    **SCAN_SYSCTLS,
    "net.ipv6.conf.all.forwarding": "1",
    "net.ipv6.conf.default.forwarding": "1",
    **ICMP_SYSCTLS,
    # No redirects: the only ICMP the router sends is the address plan's.
    "net.ipv4.conf.all.send_redirects": "0",
    "net.ipv4.conf.default.send_redirects": "0",
    # ICMPv6 redirects have no sysctl to switch them off; the router never sends one because no
    # packet leaves by the interface it came in on (the scanner's routes all point past the router).
}
TARGET_SYSCTLS: dict[str, str] = {
    **SCAN_SYSCTLS,
    **ICMP_SYSCTLS,
    "net.core.somaxconn": "65535",
    "net.ipv4.tcp_max_syn_backlog": "65535",
    # Cookies only kick in once the (now large) SYN queue overflows, and then
    # they still answer with a SYN-ACK, which keeps expected() true.
    "net.ipv4.tcp_syncookies": "1",
    # IPv6 has no AnyIP for sending: a socket may set a source (dnsmasq's UDP replies, through
    # IPV6_PKTINFO) only if an interface holds that address, which the local route does not count.
    # Non-local binds allowed, dnsmasq answers from the address asked, as over IPv4.
    "net.ipv6.ip_nonlocal_bind": "1",
}
# The target's conntrack (files/target.nft): a packet that starts no connection (an untracked
# connection's reply) creates no entry; DNATed connections are short, and a scanner's odd segments
# (stateless re-answers under faults) must not turn "invalid" and miss their translation.
TARGET_CONNTRACK_SYSCTLS: dict[str, str] = {
    "net.netfilter.nf_conntrack_tcp_loose": "0",
    "net.netfilter.nf_conntrack_tcp_be_liberal": "1",
    "net.netfilter.nf_conntrack_tcp_timeout_established": "300",
}
WIRE_SYSCTLS: dict[str, str] = {
    "net.ipv4.ip_forward": "0",
    "net.ipv6.conf.all.disable_ipv6": "1",
    "net.ipv6.conf.default.disable_ipv6": "1",
}


def _sysctl(ns: str, values: dict[str, str]) -> None:
    run(ns_exec_argv(ns, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in values.items())]), f"sysctl in {ns}")


def conntrack_sysctls() -> None:
    """Set TARGET_CONNTRACK_SYSCTLS: only once nftables has loaded conntrack (its sysctls exist then)."""
    _sysctl(TARGET_NS, TARGET_CONNTRACK_SYSCTLS)


def _add_routes(ipr: Any, ns: str) -> None:
    for _key, (rns, dst, kind, gw, table) in ROUTES.items():
        if rns != ns:
            continue
        family = socket.AF_INET6 if ":" in dst else socket.AF_INET
        if kind == "local":
            # == `ip route add local 198.18.0.0/16 dev lo` (or `ip -6 route add local 2001:2::/112
            # dev lo`): AnyIP, every address is ours.
            lo = ipr.link_lookup(ifname="lo")[0]
            ipr.route("add", dst=dst, type="local", oif=lo, table=table, scope="host", family=family)
        elif gw is not None:
            ipr.route("add", dst=dst, gateway=gw, family=family)
        else:
            ipr.route("add", dst=dst, type=kind, family=family)


def scan_link_queues() -> dict[str, int]:
    n = max(1, os.cpu_count() or 1)
    return {"num_rx_queues": n, "num_tx_queues": n}


def build(wire: bool) -> None:
    from pyroute2 import IPRoute
    from pyroute2 import netns as pr_netns

    sysctls = {
        SCAN_NS: {**SCAN_SYSCTLS, **SCANNER_ONLY_SYSCTLS},
        WIRE_NS: WIRE_SYSCTLS,
        ROUTER_NS: ROUTER_SYSCTLS,
        TARGET_NS: TARGET_SYSCTLS,
    }
    with step("creating namespaces"):
        for ns in namespaces(wire):
            pr_netns.create(ns)
    # Before the veths exist, so their ends inherit the "default" values.
    for ns in namespaces(wire):
        _sysctl(ns, sysctls[ns])
    for ns, ifname, mac, peer_ns, peer_if, peer_mac in veth_pairs(wire):
        # The scanner's link to the router has a queue per CPU, as a NIC has: a veth hands an XDP
        # frame to the peer's queue of the sending CPU (its NAPI runs there), so that several
        # generator threads (--tx-threads) each keep their frames on their own CPU.
        queues = scan_link_queues() if (ifname, peer_if) == (SCAN_IF, ROUTER_IF) else {}
        with step(f"creating veth {ifname}/{peer_if}"), IPRoute(netns=ns, flags=0) as ipr:
            # Created inside one lab namespace with the peer placed straight into
            # the other: the pair never appears in the host's namespace.
            ipr.link(
                "add",
                ifname=ifname,
                kind="veth",
                address=mac,
                peer={"ifname": peer_if, "net_ns_fd": peer_ns, "address": peer_mac, **queues},
                **queues,
            )
    for ns in namespaces(wire):
        with step(f"configuring {ns}"), IPRoute(netns=ns, flags=0) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            for lns, ifname in interfaces(wire):
                if lns != ns:
                    continue
                idx = ipr.link_lookup(ifname=ifname)[0]
                if ifname in ADDRESSES:
                    ipr.addr("add", index=idx, address=ADDRESSES[ifname], prefixlen=LINK_PREFIXLEN)
                    # nodad as well as accept_dad=0: the address is usable at once, whatever the sysctl.
                    ipr.addr(
                        "add", index=idx, address=ADDRESSES6[ifname], prefixlen=LINK_PREFIXLEN6,
                        family=socket.AF_INET6, flags=IFA_F_NODAD,
                    )  # fmt: skip
                    ipr.link("set", index=idx, state="up")
                else:  # the wire: no address, takes every frame for the relay
                    both = IFF_UP | IFF_PROMISC
                    ipr.link("set", index=idx, flags=both, change=both)
            _add_routes(ipr, ns)
    for ns, ifname in interfaces(wire):
        with step(f"disabling tx checksum offload on {ifname}"):
            netns.run_in(ns, lambda ifname=ifname: _tx_csum_off(ifname))
    with step(f"disabling GSO on {SCAN_IF}"):
        # libpcap sizes its receive ring's frames by the largest packet the interface can
        # hand it: with any segmentation offload on, 64 KiB, so its default 2 MiB ring holds
        # 32 frames (masscan's, in immediate mode). On a wire replies spread over many round
        # trips; in the lab they come back in bursts a 32-frame ring drops (masscan missed 15 %
        # of SYN-ACKs at 50K pps). Without GSO the frames are MTU-sized: 1,310 of them.
        netns.run_in(SCAN_NS, lambda: _tx_csum_off(SCAN_IF, "generic-segmentation-offload"))
    with step(f"giving {SCAN_IF} a transmit queue"), IPRoute(netns=SCAN_NS, flags=0) as ipr:
        # A veth has no qdisc ("noqueue"): when its peer's ring is full (an XDP
        # program there, fed from two CPUs) a frame is dropped and the sender gets
        # ENOBUFS. With a queue the veth stops and restarts it instead (kernel
        # >= 6.16), which is what a real NIC's driver and qdisc do.
        ipr.tc("replace", "pfifo", ipr.link_lookup(ifname=SCAN_IF)[0], limit=QUEUE_LIMIT)
    if wire:
        # The relay's sends too: a burst (the kernel generator sends 64 SYNs at once) into a peer
        # whose XDP ring is full would otherwise be lost as ENOBUFS, a loss no fault asked for.
        with step("giving the wire's ends a transmit queue"), IPRoute(netns=WIRE_NS, flags=0) as ipr:
            for ifname in (WIRE_SCAN_IF, WIRE_ROUTER_IF):
                ipr.tc("replace", "pfifo", ipr.link_lookup(ifname=ifname)[0], limit=QUEUE_LIMIT)


QUEUE_LIMIT = 10_000


def _tx_csum_off(ifname: str, flag: str = "tx-checksumming") -> None:
    from pyroute2.ethtool.ioctl import IoctlEthtool

    eth = IoctlEthtool(ifname)  # its ioctl socket is created in this thread's namespace
    try:
        eth.set_offload_flag(flag, 0)
    finally:
        eth.close()
