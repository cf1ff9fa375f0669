"""The built-in lab: scanner, router and target namespaces with real servers.

Used by the demo, the integration tests and the benchmarks, and by
`zbanner-xdp lab up|down|status`. Everything lives in network namespaces
joined by veth pairs, so scans never leave the machine. Every name derives
from PREFIX (environment variable ZBANNER_LAB_PREFIX, default "zbl-"; 1-4
lowercase letters/digits and a final "-"), so several labs can coexist; the
names below are for the default prefix::

    zbl-scan                  zbl-rtr                                zbl-tgt
    zbl-s0 10.77.0.1/24 <--> zbl-r0 10.77.0.2/24
                              zbl-r1 10.77.1.1/24 <----------------> zbl-t0 10.77.1.2/24
    route 198.18.0.0/15       ip_forward=1                           default via 10.77.1.1
      via 10.77.0.2           198.18.0.0/16 via 10.77.1.2            local 198.18.0.0/16 dev lo
    (no default route)        unreachable 198.19.0.0/24 (*)            (AnyIP: all local)
                              prohibit    198.19.1.0/24 (*)          nft table inet zbl, servers
                              blackhole   198.19.2.0/24
                              198.19.3.0/24 via 10.77.1.2 (*)
                              blackhole   198.19.0.0/16

(*) nft table ip zbl in zbl-rtr, prerouting: "reject with icmp type
host-unreachable" / "admin-prohibited" for the first two, "ip ttl set 1" for
198.19.3.0/24 (so forwarding expires it). The reject rules answer before the
routes are consulted: ICMP errors from unreachable/prohibit routes go through
ip_error(), which the kernel rate-limits per source (burst 5, then 1/s) with
host-wide sysctls (net.ipv4.route.error_cost/error_burst) that a namespace
cannot change; nft's reject is limited only by the namespace's icmp_* sysctls.

With up(wire=True) a fault wire sits between scanner and router: zbl-s0 is
paired with zbl-w0 in zbl-wire, and zbl-w1 (also in zbl-wire) with zbl-r0.
zbl-wire has no addresses and no IPv6; both w ends are up and promiscuous.
Frames cross it only through a user-space relay, `python -m zbanner_xdp.impair
--a zbl-w0 --b zbl-w1 ...` (a = scanner side, b = router side, so "a2b" is the
probes and "b2a" the replies): up(wire=True) starts a plain relay, and the
impair() context manager swaps in one with netem-like faults ("loss 5%",
"delay 50ms 10ms", ...). The relay caps a run at an hour, so the plain relay
is restarted by a bounded loop (a week's worth of rounds, ~0.2 s gap each).
The scanner's next hop is 10.77.0.2 with MAC 02:7a:62:6c:00:02 either way.
If zbanner_xdp.impair is missing, up(wire=True) still builds the wire, but no
frame crosses it.

Address plan (all reached from zbl-scan through the gateway 10.77.0.2):

    198.18.0.0/24   OPEN       every server port open (AnyIP), other TCP ports RST,
                               UDP 53/123 answered, other UDP ports ICMP port unreachable
    198.18.1.0/24   RST        every TCP SYN answered by RST (nft reject with tcp reset);
                               UDP and ICMP as OPEN
    198.18.2.0/24   SILENT     every packet dropped (nft drop): TCP, UDP, ICMP echo
    198.18.3.0/24   NOECHO     ICMP echo requests dropped; TCP and UDP as OPEN
    198.18.4.5      TARPIT     SYN-ACKs every TCP port: ports without a server are
                               DNATed to nginx's port 80; UDP and ICMP as OPEN
    198.18.0.0/16   BIG        all local; outside the carve-outs above it behaves
                               as OPEN (65,536 targets for benchmarks)
    198.19.0.0/24   UNREACH    router: ICMP host unreachable (3/1) from 10.77.0.2
    198.19.1.0/24   PROHIBIT   router: ICMP admin prohibited (3/13) from 10.77.0.2
    198.19.2.0/24   DROP       router: blackhole route, silent
    198.19.3.0/24   TTL        router: ICMP time exceeded (11/0) from 10.77.0.2
    198.19.0.0/16   BLACKHOLE  router: the rest of the /16 is blackholed, silent
    10.77.0.2       gateway    the router itself: no servers, so TCP RST on every port,
                               ICMP port unreachable for UDP, echo replies

expected(addr, port, proto) is this table as code, expected_icmp() gives the
ICMP (type, code) and expected_icmp_responder() its source. The router and
the target send ICMP errors without rate limits (icmp_ratelimit=0, 100,000
msgs/s), so they are exact ground truth too.

Servers (Debian's own binaries, run in the foreground inside zbl-tgt and
listening on 0.0.0.0, so every local address above answers):

    nginx    80 (http), 443 (https, self-signed RSA cert, TLSv1.2/1.3)
    sshd     22
    vsftpd   21
    redis    6379
    dnsmasq  53 udp+tcp (zbanner.lab A 198.18.0.1, REFUSED for other names)
    chronyd  123 udp (NTP server, stratum 10 local clock; -x: never touches the clock)

To see every frame the scanner sends exactly as sent, capture on CAPTURE_IF
(zbl-r0) in CAPTURE_NS (zbl-rtr); zbl-t0 in zbl-tgt sees only what was
forwarded to the target, with the TTL one lower.

Configs, pid files, logs and generated keys live in STATE_DIR; the config
templates are in zbanner_xdp/lab_files/. Every veth end has tx checksum
offload switched off: otherwise packets the target's kernel sends carry only a
partial checksum across the veths, and anything reading raw frames on zbl-s0
(the XDP program, tcpdump, pcap tests, the relay) would see bad TCP checksums
that a real wire never shows. IPv6 is disabled in every namespace so the scan
interface carries no DAD/MLD/RS chatter. Conntrack runs in the target
namespace only for the tarpit address (its DNAT needs it); everything else is
untracked, so big scans cannot fill the table.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.util
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

from . import netns

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
# Locally administered and fixed, so pcaps and XDP tests can hard-code them.
SCAN_MAC = "02:7a:62:6c:00:01"
GATEWAY_MAC = "02:7a:62:6c:00:02"  # ROUTER_IF
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

PORTS: dict[str, int] = {
    "ssh": 22, "ftp": 21, "http": 80, "https": 443, "redis": 6379, "dns": 53, "ntp": 123,
}  # fmt: skip
# Which transports each PORTS entry is served on.
PORT_PROTOS: dict[str, tuple[str, ...]] = {
    "ssh": ("tcp",), "ftp": ("tcp",), "http": ("tcp",), "https": ("tcp",), "redis": ("tcp",),
    "dns": ("udp", "tcp"), "ntp": ("udp",),
}  # fmt: skip
TCP_PORTS = frozenset(PORTS[k] for k, protos in PORT_PROTOS.items() if "tcp" in protos)
UDP_PORTS = frozenset(PORTS[k] for k, protos in PORT_PROTOS.items() if "udp" in protos)
BIG_PAGE = "/big.html"  # on every nginx, ~4.5 kB: see _write_configs
TARPIT_PORT = PORTS["http"]  # the tarpit's other ports are DNATed to nginx here

# server name -> the PORTS keys it serves
SERVERS: dict[str, tuple[str, ...]] = {
    "nginx": ("http", "https"),
    "sshd": ("ssh",),
    "vsftpd": ("ftp",),
    "redis": ("redis",),
    "dnsmasq": ("dns",),
    "chronyd": ("ntp",),
}
# Pids read back from STATE_DIR are only trusted (and signalled) when the
# process really is that server: a stale pid file may name a reused pid.
_SERVER_EXE: dict[str, str] = {
    "nginx": "nginx",
    "sshd": "sshd",
    "vsftpd": "vsftpd",
    "redis": "redis-server",
    "dnsmasq": "dnsmasq",
    "chronyd": "chronyd",
}

RELAY_MODULE = "zbanner_xdp.impair"
RELAY_MAX_SECONDS = 3600.0  # the relay's own cap on --seconds (zbanner_xdp.impair.MAX_SECONDS)
# The plain relay must outlive that cap: a bounded shell loop restarts it this many times
# (a week at 3600 s), with a gap of a Python start-up (~0.2 s) between rounds.
PLAIN_RELAY_ROUNDS = 168

SCAN_SYSCTLS: dict[str, str] = {
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    "net.ipv6.conf.all.disable_ipv6": "1",
    "net.ipv6.conf.default.disable_ipv6": "1",
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
}
ROUTER_SYSCTLS: dict[str, str] = {
    "net.ipv4.ip_forward": "1",
    **SCAN_SYSCTLS,
    **ICMP_SYSCTLS,
    # No redirects: the only ICMP the router sends is the address plan's.
    "net.ipv4.conf.all.send_redirects": "0",
    "net.ipv4.conf.default.send_redirects": "0",
}
TARGET_SYSCTLS: dict[str, str] = {
    **SCAN_SYSCTLS,
    **ICMP_SYSCTLS,
    "net.core.somaxconn": "65535",
    "net.ipv4.tcp_max_syn_backlog": "65535",
    # Cookies only kick in once the (now large) SYN queue overflows, and then
    # they still answer with a SYN-ACK, which keeps expected() true.
    "net.ipv4.tcp_syncookies": "1",
}
WIRE_SYSCTLS: dict[str, str] = {
    "net.ipv4.ip_forward": "0",
    "net.ipv6.conf.all.disable_ipv6": "1",
    "net.ipv6.conf.default.disable_ipv6": "1",
}

READY_TIMEOUT = 10.0
RELAY_READY_TIMEOUT = 10.0
CMD_TIMEOUT = 30.0
TERM_GRACE = 3.0

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

# Popen objects of servers (and the relay) this process started, so down()
# can reap them (no zombies, no ResourceWarning) when up() and down() share a process.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _topology(wire: bool) -> list[tuple[str, str, str, str, str, str]]:
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


def _interfaces(wire: bool) -> list[tuple[str, str]]:
    """(ns, ifname) of every veth end, scanner side first."""
    out = []
    for ns, ifname, _mac, peer_ns, peer_if, _peer_mac in _topology(wire):
        out += [(ns, ifname), (peer_ns, peer_if)]
    return out


def _namespaces(wire: bool) -> list[str]:
    return [SCAN_NS, *([WIRE_NS] if wire else []), ROUTER_NS, TARGET_NS]


# Interface -> its address (the wire's interfaces have none).
_ADDRESSES: dict[str, str] = {
    SCAN_IF: SCAN_IP,
    ROUTER_IF: TARGET_GW,
    ROUTER_TARGET_IF: ROUTER_TARGET_IP,
    TARGET_IF: TARGET_IP,
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabInfo:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


# --------------------------------------------------------------------------- ground truth


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
    return "synack" if port in TCP_PORTS else "rst"


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
        "open": f"{OPEN_NET}: every server port open (AnyIP), other TCP ports RST, "
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


# --------------------------------------------------------------------------- helpers


def ns_exec_argv(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def _run(argv: list[str], what: str, timeout: float = CMD_TIMEOUT) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as e:
        raise RuntimeError(f"lab: {what}: {argv[0]} not found (is it installed?)") from e
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"lab: {what}: {' '.join(argv)} timed out after {timeout:.0f}s") from e
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip()
        raise RuntimeError(f"lab: {what}: {' '.join(argv)} exited {proc.returncode}: {msg}")
    return proc.stdout


@contextlib.contextmanager
def _step(what: str) -> Iterator[None]:
    """Turn any failure (pyroute2's NetlinkError, OSError, ...) into a RuntimeError naming the step."""
    try:
        yield
    except RuntimeError:
        raise
    except Exception as e:
        raise RuntimeError(f"lab: {what} failed: {type(e).__name__}: {e}") from e


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    # Serialises up/down/status/impair across processes (CLI and test fixtures). Not re-entrant.
    try:
        f = open(LOCK_FILE, "a")  # noqa: SIM115 - closed below
    except PermissionError:
        # Not root: status() still works read-only; up()/down() fail later anyway.
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _netns_path(ns: str) -> str:
    return os.path.join("/run/netns", ns)


def _netns_exists(ns: str) -> bool:
    return os.path.exists(_netns_path(ns))


_in_netns = netns.run_in


def _proc_state(pid: int) -> str | None:
    """Single-letter process state, or None if no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may contain spaces and parentheses: the state follows the last ')'.
    return stat.rsplit(")", 1)[1].split()[0]


def _alive(pid: int) -> bool:
    return _proc_state(pid) not in (None, "Z", "X")


def _exe_name(pid: int) -> str | None:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe")).removesuffix(" (deleted)")
    except OSError:
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _ns_inode(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _pids_in_netns(ns: str) -> list[int]:
    want = _ns_inode(_netns_path(ns))
    if want is None:
        return []
    me = os.getpid()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        if _ns_inode(f"/proc/{entry}/ns/net") == want and _alive(int(entry)):
            pids.append(int(entry))
    return sorted(pids)


def _bound_ports(pid: int, proto: str) -> list[int]:
    """IPv4 ports of pid's network namespace: listening TCP sockets, or unconnected bound UDP ones."""
    state = {"tcp": "0A", "udp": "07"}[proto]  # TCP_LISTEN, TCP_CLOSE (an unconnected UDP socket)
    ports = set()
    try:
        with open(f"/proc/{pid}/net/{proto}") as f:
            next(f)
            for line in f:
                cols = line.split()
                port = int(cols[1].rsplit(":", 1)[1], 16)
                if cols[3] == state and port:
                    ports.add(port)
    except (OSError, StopIteration):
        return []
    return sorted(ports)


def _listening_ports(pid: int) -> list[int]:
    """TCP ports listening in pid's network namespace (IPv4)."""
    return _bound_ports(pid, "tcp")


def _read_pidfile(name: str) -> int | None:
    try:
        with open(os.path.join(STATE_DIR, f"{name}.pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _comm(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def _server_pid(name: str) -> int | None:
    """The tracked pid of server `name` if that process is alive and really is the server."""
    pid = _read_pidfile(name)
    if pid is None or not _alive(pid):
        return None
    # Debian's redis-server is a symlink to redis-check-rdb (exe shows the
    # target, comm the name it was started as), so accept either.
    if _SERVER_EXE[name] not in (_exe_name(pid), _comm(pid)):
        return None
    return pid


def _log_path(name: str) -> str:
    return os.path.join(STATE_DIR, f"{name}.log")


def _log_tail(name: str, lines: int = 15) -> str:
    try:
        with open(_log_path(name), errors="replace") as f:
            return "".join(f.readlines()[-lines:]).rstrip()
    except OSError:
        return ""


def _render(template: str, dest: str, mode: int = 0o644) -> None:
    text = resources.files("zbanner_xdp").joinpath("lab_files", template).read_text()
    values = {
        "STATE_DIR": STATE_DIR,
        "TABLE": NFT_TABLE,
        "RST_NET": RST_NET,
        "SILENT_NET": SILENT_NET,
        "NOECHO_NET": NOECHO_NET,
        "TARPIT_IP": TARPIT_IP,
        "TARPIT_PORT": str(TARPIT_PORT),
        "TCP_PORTS": ", ".join(str(p) for p in sorted(TCP_PORTS)),
        "TTL_NET": TTL_NET,
        "UNREACH_NET": UNREACH_NET,
        "PROHIBIT_NET": PROHIBIT_NET,
        "DNS_NAME": DNS_NAME,
        "DNS_ANSWER": DNS_ANSWER,
        "DNS_PORT": str(PORTS["dns"]),
        "NTP_PORT": str(PORTS["ntp"]),
        "NTP_STRATUM": str(NTP_STRATUM),
    }
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    leftover = re.findall(r"@[A-Z_]+@", text)
    if leftover:
        raise RuntimeError(f"lab: template {template} has unknown placeholders {leftover}")
    with open(dest, "w") as f:
        f.write(text)
    os.chmod(dest, mode)


# --------------------------------------------------------------------------- UDP probes (readiness)


def _dns_query(name: str, qid: int = 0x7A62) -> bytes:
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)  # RD, one question
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack(">HH", 1, 1)  # A, IN


def _dns_answer(reply: bytes, qid: int = 0x7A62) -> str | None:
    """The first A record of a reply to _dns_query (whose question is echoed, so the answer is last)."""
    if len(reply) < 16 or struct.unpack(">H", reply[:2])[0] != qid or reply[3] & 0x0F:
        return None
    ancount = struct.unpack(">H", reply[6:8])[0]
    if ancount < 1 or reply[-6:-4] != b"\x00\x04":  # RDLENGTH 4 right before the address
        return None
    return socket.inet_ntoa(reply[-4:])


NTP_REQUEST = bytes([0x23]) + bytes(47)  # LI 0, version 4, mode 3 (client)


def _udp_exchange(addr: str, port: int, payload: bytes, timeout: float) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((addr, port))
            s.send(payload)
            return s.recv(2048)
        except OSError:
            return None


def _dns_ok(addr: str, timeout: float = 0.3) -> bool:
    reply = _udp_exchange(addr, PORTS["dns"], _dns_query(DNS_NAME), timeout)
    return reply is not None and _dns_answer(reply) == DNS_ANSWER


def _ntp_ok(addr: str, timeout: float = 0.3) -> bool:
    reply = _udp_exchange(addr, PORTS["ntp"], NTP_REQUEST, timeout)
    return reply is not None and len(reply) >= 48 and reply[0] & 7 == 4 and reply[1] == NTP_STRATUM


# --------------------------------------------------------------------------- the relay (wire lab)


def relay_available() -> bool:
    """True if zbanner_xdp.impair (the wire's user-space relay) can be run."""
    try:
        return importlib.util.find_spec(RELAY_MODULE) is not None
    except (ImportError, ValueError):
        return False


def _require_relay() -> None:
    if not relay_available():
        raise RuntimeError(
            f"lab: the fault wire needs {RELAY_MODULE} (python -m {RELAY_MODULE}), which is not "
            "installed; without it frames do not cross the wire"
        )


def _relay_max_seconds() -> float:
    """The relay's cap on --seconds (its CLI refuses more)."""
    try:
        from zbanner_xdp import impair as relay_mod

        return float(relay_mod.MAX_SECONDS)
    except Exception:  # noqa: BLE001 - not there yet, or mid-edit: the documented cap
        return RELAY_MAX_SECONDS


def _relay_argv(a2b: str, b2a: str, seconds: float) -> list[str]:
    return [
        sys.executable, "-m", RELAY_MODULE, "--a", WIRE_SCAN_IF, "--b", WIRE_ROUTER_IF,
        "--a2b", a2b, "--b2a", b2a, "--seconds", f"{seconds:g}",
    ]  # fmt: skip


def _relay_out() -> str:
    return os.path.join(STATE_DIR, "relay.out")


def _relay_meta() -> dict[str, Any]:
    try:
        with open(os.path.join(STATE_DIR, "relay.json")) as f:
            d = json.load(f)
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def _relay_pid() -> int | None:
    """The tracked relay's pid if that process is alive and really is the relay."""
    pid = _read_pidfile("relay")
    if pid is None or not _alive(pid):
        return None
    argv = _cmdline(pid)
    if RELAY_MODULE not in argv or WIRE_SCAN_IF not in argv:
        return None
    return pid


def _relay_stats() -> dict[str, Any]:
    """The JSON line the last relay printed on exit ({} if none)."""
    try:
        with open(_relay_out(), errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                d = json.loads(line)
                if isinstance(d, dict):
                    return d
    return {}


def _pgroup_members(pgid: int) -> list[int]:
    """Live processes in process group pgid."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            out.append(int(entry))
    return out


def _start_relay(a2b: str = "", b2a: str = "", seconds: float | None = None) -> int:
    """Start the relay in WIRE_NS and wait until it prints "ready"; return its pid (a process group
    leader). seconds=None is the plain relay: rounds of the relay's longest run, restarted by a bounded
    shell loop."""
    _require_relay()
    relay = _relay_argv(a2b, b2a, seconds if seconds is not None else _relay_max_seconds())
    if seconds is None:
        loop = f'i=0; while [ "$i" -lt {PLAIN_RELAY_ROUNDS} ]; do "$@"; i=$((i + 1)); done'
        argv = ns_exec_argv(WIRE_NS, ["sh", "-c", loop, "relay-loop", *relay])
    else:
        argv = ns_exec_argv(WIRE_NS, relay)
    # Run the module from this very source tree, whether or not the package is installed.
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH")) if p)
    with open(_relay_out(), "wb") as out, open(_log_path("relay"), "ab") as log:
        log.write(f"--- {time.strftime('%H:%M:%S')} a2b={a2b!r} b2a={b2a!r} seconds={seconds}\n".encode())
        log.flush()
        try:
            # stdout goes to a file, not a pipe: the relay outlives `lab up` and must never get EPIPE.
            # Own session: the relay ignores the terminal's SIGINT, and _stop_relay signals the group.
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=log, start_new_session=True,
                cwd=STATE_DIR, env=env,
            )  # fmt: skip
        except OSError as e:
            raise RuntimeError(f"lab: starting the relay failed: {e}") from e
    _CHILDREN[proc.pid] = proc
    with open(os.path.join(STATE_DIR, "relay.pid"), "w") as f:
        f.write(f"{proc.pid}\n")
    meta = {"pid": proc.pid, "a2b": a2b, "b2a": b2a, "seconds": seconds, "started": time.time()}
    with open(os.path.join(STATE_DIR, "relay.json"), "w") as f:
        json.dump(meta, f)
    deadline = time.monotonic() + RELAY_READY_TIMEOUT
    while True:
        with contextlib.suppress(OSError), open(_relay_out(), errors="replace") as f:
            if any(line.strip() == "ready" for line in f):
                return proc.pid
        if proc.poll() is not None:
            raise RuntimeError(
                f"lab: the relay exited with status {proc.returncode} before it was ready; "
                f"see {_log_path('relay')}:\n{_log_tail('relay')}"
            )
        if time.monotonic() >= deadline:
            _stop_relay()
            raise RuntimeError(
                f"lab: the relay did not print 'ready' within {RELAY_READY_TIMEOUT:.0f}s; "
                f"see {_log_path('relay')}:\n{_log_tail('relay')}"
            )
        time.sleep(0.02)


def _stop_relay() -> dict[str, Any]:
    """SIGTERM the tracked relay's process group (SIGKILL if it lingers) and wait until all of it is
    gone, so two relays never forward at once; return the stats the relay printed on exit."""
    pid = _relay_pid()
    if pid is not None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
            deadline = time.monotonic() + TERM_GRACE
            while (members := _pgroup_members(pid)) and time.monotonic() < deadline:
                _reap([pid] if pid in _CHILDREN and _CHILDREN[pid].poll() is not None else [])
                time.sleep(0.02)
            if not members:
                break
        _reap([pid])
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(STATE_DIR, "relay.pid"))
    return _relay_stats()


@contextlib.contextmanager
def impair(a2b: str = "", b2a: str = "", seconds: float = 600) -> Iterator[dict[str, Any]]:
    """Run the wire's relay with netem-like faults ("loss 5%", "duplicate 20%", "delay 50ms 10ms",
    "reorder 25% delay 20ms", combinable; "" for none) for the duration of the block.

    a2b shapes what the scanner sends (toward the router), b2a what comes back. Needs a lab built with
    up(wire=True). Yields a dict that is filled with the relay's exit stats (its JSON line) when the
    block ends; then the plain relay is back. The relay also stops by itself after `seconds`.
    """
    _require_relay()
    if not 0 < seconds <= _relay_max_seconds():
        raise ValueError(f"impair: seconds must be in (0, {_relay_max_seconds():g}], not {seconds!r}")
    stats: dict[str, Any] = {}
    with _locked():
        if not _netns_exists(WIRE_NS):
            raise RuntimeError("lab: impair() needs the wire lab: call up(wire=True) first")
        _stop_relay()
        try:
            _start_relay(a2b, b2a, seconds)
        except BaseException:
            _start_relay()
            raise
    try:
        yield stats
    finally:
        with _locked():
            stats.update(_stop_relay())
            if _netns_exists(WIRE_NS):
                _start_relay()


# --------------------------------------------------------------------------- status

IFF_UP = 0x1
IFF_PROMISC = 0x100
_RT_TYPES = {1: "unicast", 2: "local", 6: "blackhole", 7: "unreachable", 8: "prohibit"}


def _link_status(ns: str, ifname: str) -> dict[str, Any] | None:
    from pyroute2 import IPRoute

    with IPRoute(netns=ns, flags=0) as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            return None
        link = ipr.get_links(idx[0])[0]
        addrs = [
            f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
            for a in ipr.get_addr(index=idx[0], family=socket.AF_INET)
        ]
        return {
            "netns": ns,
            "index": idx[0],
            "up": bool(link["flags"] & IFF_UP),
            "promisc": bool(link["flags"] & IFF_PROMISC),
            "mac": link.get_attr("IFLA_ADDRESS"),
            "addrs": addrs,
        }


# status key -> (namespace, destination, route type, gateway, table)
_ROUTES: dict[str, tuple[str, str, str, str | None, int]] = {
    "scan_route": (SCAN_NS, SCAN_ROUTE, "unicast", TARGET_GW, 254),
    "router_targets": (ROUTER_NS, BIG_NET, "unicast", TARGET_IP, 254),
    "router_unreach": (ROUTER_NS, UNREACH_NET, "unreachable", None, 254),
    "router_prohibit": (ROUTER_NS, PROHIBIT_NET, "prohibit", None, 254),
    "router_drop": (ROUTER_NS, DROP_NET, "blackhole", None, 254),
    "router_ttl": (ROUTER_NS, TTL_NET, "unicast", TARGET_IP, 254),
    "blackhole": (ROUTER_NS, BLACKHOLE_NET, "blackhole", None, 254),
    "target_default": (TARGET_NS, "0.0.0.0/0", "unicast", ROUTER_TARGET_IP, 254),
    "anyip": (TARGET_NS, BIG_NET, "local", None, 255),
}


def _routes_ok() -> dict[str, bool]:
    from pyroute2 import IPRoute

    out = dict.fromkeys(_ROUTES, False)
    for ns in (SCAN_NS, ROUTER_NS, TARGET_NS):
        if not _netns_exists(ns):
            continue
        with IPRoute(netns=ns, flags=0) as ipr:
            for table in (254, 255):
                have = {
                    (
                        f"{r.get_attr('RTA_DST') or '0.0.0.0'}/{r['dst_len']}",
                        _RT_TYPES.get(r["type"]),
                        r.get_attr("RTA_GATEWAY"),
                    )
                    for r in ipr.get_routes(family=socket.AF_INET, table=table)
                }
                for key, (rns, dst, kind, gw, rtable) in _ROUTES.items():
                    if rns == ns and rtable == table:
                        out[key] = (dst, kind, gw) in have
    return out


def _nft_tables_present() -> dict[str, bool]:
    out = {}
    for ns, family in ((TARGET_NS, "inet"), (ROUTER_NS, "ip")):
        ok = False
        if _netns_exists(ns):
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                ok = (
                    subprocess.run(
                        ns_exec_argv(ns, ["nft", "list", "table", family, NFT_TABLE]),
                        capture_output=True,
                        timeout=CMD_TIMEOUT,
                        check=False,
                    ).returncode
                    == 0
                )
        out[ns] = ok
    return out


def _root_leftover_links() -> list[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        names = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
    return sorted(n for n in names if n and n.startswith(PREFIX))


def _marker() -> dict[str, Any] | None:
    try:
        with open(os.path.join(STATE_DIR, "lab.json")) as f:
            d = json.load(f)
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def _relay_status() -> dict[str, Any]:
    meta = _relay_meta()
    pid = _relay_pid()
    return {
        "available": relay_available(),
        "pid": pid if pid is not None else meta.get("pid"),
        "alive": pid is not None,
        "in_wire_ns": pid is not None and _ns_inode(f"/proc/{pid}/ns/net") == _ns_inode(_netns_path(WIRE_NS)),
        "a2b": meta.get("a2b"),
        "b2a": meta.get("b2a"),
        "log": _log_path("relay"),
    }


def _status_unlocked() -> dict[str, Any]:
    marker = _marker()
    # The wire is part of the lab when up(wire=True) built it, or when its namespace exists at all.
    wire = bool(marker and marker.get("wire")) or _netns_exists(WIRE_NS)
    namespaces = {ns: _netns_exists(ns) for ns in _namespaces(wire)}
    links: dict[str, Any] = {}
    for ns, ifname in _interfaces(wire):
        links[ifname] = None
        if namespaces[ns]:
            with contextlib.suppress(Exception):
                links[ifname] = _link_status(ns, ifname)
    try:
        routes = _routes_ok()
    except Exception:
        routes = dict.fromkeys(_ROUTES, False)
    target_ino = _ns_inode(_netns_path(TARGET_NS))
    servers: dict[str, Any] = {}
    for name, keys in SERVERS.items():
        recorded = _read_pidfile(name)
        pid = _server_pid(name)
        servers[name] = {
            "pid": recorded,
            "alive": pid is not None,
            "in_target_ns": pid is not None and _ns_inode(f"/proc/{pid}/ns/net") == target_ino,
            "ports": [PORTS[k] for k in keys],
            "log": _log_path(name),
        }
    # Every server shares the target namespace, so one pid shows all listeners.
    any_pid = next((s["pid"] for s in servers.values() if s["alive"]), None)
    listening = _bound_ports(any_pid, "tcp") if any_pid else []
    listening_udp = _bound_ports(any_pid, "udp") if any_pid else []
    try:
        root_links = _root_leftover_links()
    except Exception:
        root_links = []
    nft = _nft_tables_present()
    links_ok = all(
        links[i] is not None and links[i]["up"] and f"{ip}/{LINK_PREFIXLEN}" in links[i]["addrs"]
        for i, ip in _ADDRESSES.items()
    )
    relay = _relay_status() if wire else None
    wire_ok = True
    if wire:
        wire_ok = all(
            links[i] is not None and links[i]["up"] and links[i]["promisc"] and not links[i]["addrs"]
            for i in (WIRE_SCAN_IF, WIRE_ROUTER_IF)
        )
        # Without the relay module the wire cannot forward; it is as complete as it can be.
        wire_ok = wire_ok and (relay is not None and (relay["alive"] or not relay["available"]))
    complete = (
        marker is not None
        and bool(marker.get("wire")) == wire
        and all(namespaces.values())
        and links_ok
        and wire_ok
        and all(routes.values())
        and all(nft.values())
        and all(s["alive"] and s["in_target_ns"] for s in servers.values())
        and set(listening) >= TCP_PORTS
        and set(listening_udp) >= UDP_PORTS
    )
    return {
        "complete": bool(complete),
        "prefix": PREFIX,
        "state_dir": STATE_DIR,
        "state_dir_exists": os.path.isdir(STATE_DIR),
        "wire": wire,
        "namespaces": namespaces,
        "links": links,
        "routes": routes,
        "nft_table": all(nft.values()),
        "nft_tables": nft,
        "servers": servers,
        "relay": relay,
        "listening_ports": listening,
        "listening_udp_ports": listening_udp,
        "root_leftover_links": root_links,
        "scan_ip": SCAN_IP,
        "gateway_ip": TARGET_GW,
        "address_plan": address_plan(),
    }


def status() -> dict[str, Any]:
    """What exists right now; JSON-serialisable. "complete" is True only for a fully built lab."""
    with _locked():
        return _status_unlocked()


def format_status(d: dict[str, Any]) -> str:
    def yn(b: bool) -> str:
        return "yes" if b else "NO"

    kind = "with fault wire" if d.get("wire") else "no wire"
    state = "UP (complete)" if d["complete"] else "not (fully) up"
    lines = [f"lab: {state} (prefix {d['prefix']!r}, {kind})"]
    lines.append(f"  state dir   {d['state_dir']} ({'present' if d['state_dir_exists'] else 'absent'})")
    for ns, present in d["namespaces"].items():
        lines.append(f"  netns       {ns}: {'present' if present else 'absent'}")
    for ifname, link in d["links"].items():
        if link is None:
            lines.append(f"  link        {ifname}: absent")
        else:
            state = "up" if link["up"] else "down"
            if link["promisc"]:
                state += ", promisc"
            addrs = ", ".join(link["addrs"]) or "no address"
            lines.append(f"  link        {ifname} in {link['netns']}: {state}, {link['mac']}, {addrs}")
    r = d["routes"]
    for key, (ns, dst, kind, gw, table) in _ROUTES.items():
        what = f"{kind} {dst}" + (f" via {gw}" if gw else "") + (" (table local)" if table == 255 else "")
        lines.append(f"  route       {ns}: {what}: {yn(r.get(key, False))}")
    for ns, ok in d["nft_tables"].items():
        family = "inet" if ns == TARGET_NS else "ip"
        lines.append(f"  nftables    table {family} {NFT_TABLE} in {ns}: {yn(ok)}")
    for name, s in d["servers"].items():
        ports = ",".join(str(p) for p in s["ports"])
        pid = s["pid"] if s["pid"] is not None else "-"
        state = "running" if s["alive"] else "not running"
        lines.append(f"  server      {name:<8} ports {ports:<7} pid {pid!s:<8} {state}  log {s['log']}")
    relay = d.get("relay")
    if relay is not None:
        if not relay["available"]:
            lines.append(f"  relay       {RELAY_MODULE} not available: frames do NOT cross the wire")
        else:
            state = "running" if relay["alive"] else "not running"
            faults = f"a2b {relay['a2b']!r} b2a {relay['b2a']!r}" if relay["alive"] else ""
            pid = relay["pid"] if relay["pid"] is not None else "-"
            lines.append(f"  relay       pid {pid!s:<8} {state} {faults}  log {relay['log']}")
    if d["listening_ports"]:
        lines.append(f"  listening   tcp {', '.join(str(p) for p in d['listening_ports'])}")
    if d["listening_udp_ports"]:
        lines.append(f"  listening   udp {', '.join(str(p) for p in d['listening_udp_ports'])}")
    if d["root_leftover_links"]:
        lines.append(f"  LEFTOVER    root-namespace links: {', '.join(d['root_leftover_links'])}")
    lines.append(f"address plan (scan from {SCAN_NS}, {d['scan_ip']} -> gateway {d['gateway_ip']}):")
    for text in d["address_plan"].values():
        lines.append(f"  {text}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- down


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _reap(pids: list[int]) -> None:
    for pid in pids:
        child = _CHILDREN.pop(pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=1)
            continue
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    left = pids
    while True:
        _reap([p for p in left if p in _CHILDREN and _CHILDREN[p].poll() is not None])
        left = [p for p in left if _alive(p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.02)


def _lab_namespaces() -> list[str]:
    from pyroute2 import netns as pr_netns

    return sorted(n for n in pr_netns.listnetns() if n.startswith(PREFIX))


def _kill_lab_processes(removed: list[str]) -> None:
    victims: dict[int, str] = {}
    # Every PREFIX* namespace, not just the lab's: down() removes them all, and a
    # namespace still holding a process would outlive its name (with its links).
    for ns in _lab_namespaces():
        for pid in _pids_in_netns(ns):
            victims[pid] = f"process {pid} ({_comm(pid) or '?'}) in {ns}"
    for name in SERVERS:
        pid = _server_pid(name)
        if pid is not None and pid != os.getpid():
            victims.setdefault(pid, f"process {pid} ({name}) from {STATE_DIR}")
    pid = _relay_pid()
    if pid is not None and pid != os.getpid():
        victims.setdefault(pid, f"process {pid} (relay) from {STATE_DIR}")
    if not victims:
        _reap(list(_CHILDREN))
        return
    pids = sorted(victims)
    _signal_all(pids, signal.SIGTERM)
    left = _wait_gone(pids, TERM_GRACE)
    if left:
        _signal_all(left, signal.SIGKILL)
        left = _wait_gone(left, TERM_GRACE)
    _reap(pids + list(_CHILDREN))
    removed.extend(victims[p] for p in pids if p not in left)
    for pid in left:
        removed.append(f"{victims[pid]} did NOT exit (uninterruptible?)")


def _down_unlocked(keep_state_dir: bool = False) -> list[str]:
    from pyroute2 import IPRoute
    from pyroute2 import netns as pr_netns

    removed: list[str] = []
    _kill_lab_processes(removed)
    # Deleting a namespace only drops its mount; the kernel tears it (and the
    # veths) down asynchronously. Deleting the veths first makes that synchronous.
    for ns, ifname in dict.fromkeys(_interfaces(False) + _interfaces(True)):
        if not _netns_exists(ns):
            continue
        with contextlib.suppress(Exception), IPRoute(netns=ns, flags=0) as ipr:
            idx = ipr.link_lookup(ifname=ifname)
            if idx:
                ipr.link("del", index=idx[0])
                removed.append(f"link {ifname} in {ns}")
    for ns in _lab_namespaces():
        try:
            pr_netns.remove(ns)
            removed.append(f"netns {ns}")
        except OSError:
            # `ip` can cope with odd leftovers (e.g. a mount without a file).
            with contextlib.suppress(RuntimeError):
                _run(["ip", "netns", "delete", ns], f"delete netns {ns}")
                removed.append(f"netns {ns}")
    with contextlib.suppress(Exception), IPRoute() as ipr:
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if name and name.startswith(PREFIX):
                with contextlib.suppress(Exception):
                    ipr.link("del", index=link["index"])
                    removed.append(f"link {name} in root namespace")
    if not keep_state_dir and os.path.isdir(STATE_DIR):
        shutil.rmtree(STATE_DIR, ignore_errors=True)
        removed.append(f"state dir {STATE_DIR}")
    return removed


def down() -> list[str]:
    """Remove every lab piece that exists (even half-built), the wire and its relay included; return
    what was removed. Touches only names with this lab's PREFIX. Never raises for missing pieces."""
    with _locked():
        return _down_unlocked()


# --------------------------------------------------------------------------- up


def _sysctl(ns: str, values: dict[str, str]) -> None:
    _run(
        ns_exec_argv(ns, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in values.items())]), f"sysctl in {ns}"
    )


def _add_routes(ipr: Any, ns: str) -> None:
    for _key, (rns, dst, kind, gw, table) in _ROUTES.items():
        if rns != ns:
            continue
        if kind == "local":
            # == `ip route add local 198.18.0.0/16 dev lo`: AnyIP, every address is ours.
            lo = ipr.link_lookup(ifname="lo")[0]
            ipr.route("add", dst=dst, type="local", oif=lo, table=table, scope="host")
        elif gw is not None:
            ipr.route("add", dst=dst, gateway=gw)
        else:
            ipr.route("add", dst=dst, type=kind)


def _build_network(wire: bool) -> None:
    from pyroute2 import IPRoute
    from pyroute2 import netns as pr_netns

    sysctls = {
        SCAN_NS: {**SCAN_SYSCTLS, **SCANNER_ONLY_SYSCTLS},
        WIRE_NS: WIRE_SYSCTLS,
        ROUTER_NS: ROUTER_SYSCTLS,
        TARGET_NS: TARGET_SYSCTLS,
    }
    with _step("creating namespaces"):
        for ns in _namespaces(wire):
            pr_netns.create(ns)
    # Before the veths exist, so their ends inherit the "default" values.
    for ns in _namespaces(wire):
        _sysctl(ns, sysctls[ns])
    for ns, ifname, mac, peer_ns, peer_if, peer_mac in _topology(wire):
        with _step(f"creating veth {ifname}/{peer_if}"), IPRoute(netns=ns, flags=0) as ipr:
            # Created inside one lab namespace with the peer placed straight into
            # the other: the pair never appears in the host's namespace.
            ipr.link(
                "add",
                ifname=ifname,
                kind="veth",
                address=mac,
                peer={"ifname": peer_if, "net_ns_fd": peer_ns, "address": peer_mac},
            )
    for ns in _namespaces(wire):
        with _step(f"configuring {ns}"), IPRoute(netns=ns, flags=0) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            for lns, ifname in _interfaces(wire):
                if lns != ns:
                    continue
                idx = ipr.link_lookup(ifname=ifname)[0]
                if ifname in _ADDRESSES:
                    ipr.addr("add", index=idx, address=_ADDRESSES[ifname], prefixlen=LINK_PREFIXLEN)
                    ipr.link("set", index=idx, state="up")
                else:  # the wire: no address, takes every frame for the relay
                    both = IFF_UP | IFF_PROMISC
                    ipr.link("set", index=idx, flags=both, change=both)
            _add_routes(ipr, ns)
    for ns, ifname in _interfaces(wire):
        with _step(f"disabling tx checksum offload on {ifname}"):
            _in_netns(ns, lambda ifname=ifname: _tx_csum_off(ifname))
    with _step(f"disabling GSO on {SCAN_IF}"):
        # libpcap sizes its receive ring's frames by the largest packet the interface can
        # hand it: with any segmentation offload on, 64 KiB, so its default 2 MiB ring holds
        # 32 frames (masscan's, in immediate mode). On a wire replies spread over many round
        # trips; in the lab they come back in bursts a 32-frame ring drops (masscan missed 15 %
        # of SYN-ACKs at 50K pps). Without GSO the frames are MTU-sized: 1,310 of them.
        _in_netns(SCAN_NS, lambda: _tx_csum_off(SCAN_IF, "generic-segmentation-offload"))
    with _step(f"giving {SCAN_IF} a transmit queue"), IPRoute(netns=SCAN_NS, flags=0) as ipr:
        # A veth has no qdisc ("noqueue"): when its peer's ring is full (an XDP
        # program there, fed from two CPUs) a frame is dropped and the sender gets
        # ENOBUFS. With a queue the veth stops and restarts it instead (kernel
        # >= 6.16), which is what a real NIC's driver and qdisc do.
        ipr.tc("replace", "pfifo", ipr.link_lookup(ifname=SCAN_IF)[0], limit=QUEUE_LIMIT)


QUEUE_LIMIT = 10_000


def _tx_csum_off(ifname: str, flag: str = "tx-checksumming") -> None:
    from pyroute2.ethtool.ioctl import IoctlEthtool

    eth = IoctlEthtool(ifname)  # its ioctl socket is created in this thread's namespace
    try:
        eth.set_offload_flag(flag, 0)
    finally:
        eth.close()


def _prepare_state_dir() -> list[subprocess.Popen[bytes]]:
    """Lay out STATE_DIR and start key generation (in parallel with the network build)."""
    for sub in ("", "run", "www", "tls", "nginx-tmp"):
        os.makedirs(os.path.join(STATE_DIR, sub), mode=0o755, exist_ok=True)
    os.chmod(STATE_DIR, 0o755)  # nginx workers run as www-data and read www/
    # sshd refuses to start without its privilege separation dir; vsftpd
    # without its secure_chroot_dir. Both are the packages' standard paths.
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    os.makedirs("/var/run/vsftpd/empty", mode=0o755, exist_ok=True)
    tls = os.path.join(STATE_DIR, "tls")
    argvs = [
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-subj", "/CN=zbanner-lab", "-days", "30",
            "-keyout", os.path.join(tls, "lab.key"), "-out", os.path.join(tls, "lab.crt"),
        ],
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{STATE_DIR}/ssh_host_ed25519_key"],
    ]  # fmt: skip
    procs = []
    for argv in argvs:
        try:
            procs.append(
                subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
                )
            )
        except FileNotFoundError as e:
            raise RuntimeError(f"lab: {argv[0]} not found (is it installed?)") from e
    return procs


def _finish_keygen(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=CMD_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            proc.kill()
            proc.communicate()
            raise RuntimeError(f"lab: {proc.args[0]} timed out") from e  # type: ignore[index]
        if proc.returncode != 0:
            raise RuntimeError(
                f"lab: {' '.join(proc.args)} exited {proc.returncode}: "  # type: ignore[arg-type]
                f"{out.decode(errors='replace').strip()}"
            )


def _write_configs() -> None:
    _render("nginx.conf", os.path.join(STATE_DIR, "nginx.conf"))
    _render("index.html", os.path.join(STATE_DIR, "www", "index.html"))
    # A page longer than one segment: nginx (sendfile off) sends headers and body in one write,
    # so a large enough --ack-window gets a full-MSS first segment (tests of `truncated`).
    with open(os.path.join(STATE_DIR, "www", BIG_PAGE.lstrip("/")), "w") as fh:
        fh.write("".join(f"line {i:04d} of a page longer than any segment\n" for i in range(100)))
    _render("sshd_config", os.path.join(STATE_DIR, "sshd_config"), 0o600)
    _render("vsftpd.conf", os.path.join(STATE_DIR, "vsftpd.conf"), 0o600)
    _render("dnsmasq.conf", os.path.join(STATE_DIR, "dnsmasq.conf"))
    _render("chrony.conf", os.path.join(STATE_DIR, "chrony.conf"))
    _render("target.nft", os.path.join(STATE_DIR, "target.nft"))
    _render("router.nft", os.path.join(STATE_DIR, "router.nft"))
    # Empty allow-list: with userlist_deny=NO nobody may log in.
    open(os.path.join(STATE_DIR, "vsftpd.user_list"), "w").close()
    os.chmod(os.path.join(STATE_DIR, "tls", "lab.key"), 0o600)


def _server_argv(name: str) -> list[str]:
    s = STATE_DIR
    if name == "nginx":
        return ["nginx", "-p", s, "-e", f"{s}/nginx.log", "-c", f"{s}/nginx.conf"]
    if name == "sshd":
        # sshd re-execs itself per connection and insists on an absolute path.
        return [shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-e", "-f", f"{s}/sshd_config"]
    if name == "vsftpd":
        return ["vsftpd", f"{s}/vsftpd.conf"]
    if name == "redis":
        return [
            "redis-server", "--port", str(PORTS["redis"]), "--bind", "0.0.0.0",
            "--protected-mode", "no", "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--dir", s, "--pidfile", f"{s}/run/redis.pid", "--tcp-backlog", "65535",
        ]  # fmt: skip
    if name == "dnsmasq":
        # -C: never /etc/dnsmasq.conf. Wildcard socket + IP_PKTINFO: answers on every AnyIP address.
        return ["dnsmasq", "--keep-in-foreground", "-C", f"{s}/dnsmasq.conf"]
    if name == "chronyd":
        # -x: never adjust the clock; -u root: pid and drift files stay writable in STATE_DIR.
        return ["chronyd", "-d", "-x", "-4", "-u", "root", "-f", f"{s}/chrony.conf"]
    raise ValueError(name)


def _start_server(name: str) -> subprocess.Popen[bytes]:
    argv = ns_exec_argv(TARGET_NS, _server_argv(name))
    with open(_log_path(name), "ab") as log:
        try:
            # New session: the servers must outlive the `lab up` CLI process
            # and must not get its terminal's SIGINT.
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, cwd=STATE_DIR
            )
        except OSError as e:
            raise RuntimeError(f"lab: starting {name} failed: {e}") from e
    _CHILDREN[proc.pid] = proc
    # `ip netns exec` execs the server in place, so this pid is the server itself.
    with open(os.path.join(STATE_DIR, f"{name}.pid"), "w") as f:
        f.write(f"{proc.pid}\n")
    return proc


def _accepting(host: str, ports: list[int]) -> set[int]:
    ok = set()
    for port in ports:
        try:
            with socket.create_connection((host, port), timeout=0.3):
                ok.add(port)
        except OSError:
            pass
    return ok


def _answering(host: str, names: list[str]) -> set[str]:
    """The servers in `names` that fully answer on host (TCP connect, DNS A record, NTP mode 4)."""
    tcp = sorted({PORTS[k] for n in names for k in SERVERS[n] if "tcp" in PORT_PROTOS[k]})
    ok_tcp = _accepting(host, tcp)
    out = set()
    for name in names:
        keys = SERVERS[name]
        if not {PORTS[k] for k in keys if "tcp" in PORT_PROTOS[k]} <= ok_tcp:
            continue
        if "dns" in keys and not _dns_ok(host):
            continue
        if "ntp" in keys and not _ntp_ok(host):
            continue
        out.add(name)
    return out


def _wait_ready(
    procs: dict[str, subprocess.Popen[bytes]], from_ns: str = SCAN_NS, timeout: float = READY_TIMEOUT
) -> None:
    pending = set(procs)
    deadline = time.monotonic() + timeout
    while pending:
        for name, proc in procs.items():
            if name in pending and proc.poll() is not None:
                raise RuntimeError(
                    f"lab: {name} exited with status {proc.returncode} while starting; "
                    f"see {_log_path(name)}:\n{_log_tail(name)}"
                )
        # Ask from the scanner's side: proves the veths, the router, the
        # addresses and the server all work, not just that something is bound.
        names = sorted(pending)
        pending -= _in_netns(from_ns, lambda names=names: _answering(READY_ADDR, names))
        if not pending:
            return
        if time.monotonic() >= deadline:
            name = sorted(pending)[0]
            ports = [PORTS[k] for k in SERVERS[name]]
            raise RuntimeError(
                f"lab: {name} did not answer on {READY_ADDR}:{ports} (asked from {from_ns}) "
                f"within {timeout:.0f}s; see {_log_path(name)}:\n{_log_tail(name)}"
            )
        time.sleep(0.05)


def _info_from_state() -> LabInfo:
    info = LabInfo.from_dict(_marker() or {})
    info.servers = {name: pid for name in SERVERS if (pid := _server_pid(name)) is not None}
    info.relay_pid = _relay_pid() if info.wire else None
    return info


def up(force: bool = False, wire: bool = False) -> LabInfo:
    """Build the lab (with the fault wire and its plain relay if wire=True). Idempotent: a complete lab
    of the same kind is returned as is; a partial one or one of the other kind is torn down and rebuilt
    (so is a complete one with force=True). Raises RuntimeError on failure, after removing the
    namespaces and processes but keeping STATE_DIR so the logs can be read.

    Without zbanner_xdp.impair a wire lab is still built, but frames do not cross the wire (no relay)
    and readiness is checked from the router instead of the scanner.
    """
    if os.geteuid() != 0:
        raise RuntimeError("lab: needs root (network namespaces, veth, nftables)")
    if shutil.which("ip") is None:
        raise RuntimeError("lab: iproute2's `ip` not found")
    with _locked():
        if not force:
            st = _status_unlocked()
            if st["complete"] and st["wire"] == wire:
                return _info_from_state()
        _down_unlocked()
        try:
            keygen = _prepare_state_dir()
            try:
                _build_network(wire)
            finally:
                _finish_keygen(keygen)
            _write_configs()
            for ns, rules in ((TARGET_NS, "target.nft"), (ROUTER_NS, "router.nft")):
                _run(ns_exec_argv(ns, ["nft", "-f", f"{STATE_DIR}/{rules}"]), f"loading nftables in {ns}")
            procs = {name: _start_server(name) for name in SERVERS}
            relay_pid = None
            if wire and relay_available():
                relay_pid = _start_relay()
            _wait_ready(procs, ROUTER_NS if wire and relay_pid is None else SCAN_NS)
            info = LabInfo(
                servers={name: proc.pid for name, proc in procs.items()},
                wire=wire,
                wire_ns=WIRE_NS if wire else None,
                wire_ifs=[WIRE_SCAN_IF, WIRE_ROUTER_IF] if wire else [],
                relay_pid=relay_pid,
            )
            with open(os.path.join(STATE_DIR, "lab.json"), "w") as f:
                json.dump(info.to_dict(), f, indent=2)
            return info
        except BaseException:
            _down_unlocked(keep_state_dir=True)
            raise


def main(argv: list[str] | None = None) -> int:
    """`python -m zbanner_xdp.lab up|down|status` (the same as `zbanner-xdp lab ...`)."""
    p = argparse.ArgumentParser(prog="python -m zbanner_xdp.lab")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--force", action="store_true", help="up: rebuild even if the lab is complete")
    p.add_argument("--wire", action="store_true", help="up: with the fault wire between scanner and router")
    p.add_argument("--json", action="store_true", help="status: print JSON")
    args = p.parse_args(argv)
    try:
        if args.action == "up":
            t0 = time.monotonic()
            up(force=args.force, wire=args.wire)
            print(f"lab up in {time.monotonic() - t0:.2f}s")
            print(format_status(status()))
        elif args.action == "down":
            for item in down():
                print(f"removed {item}")
        else:
            d = status()
            print(json.dumps(d, indent=2) if args.json else format_status(d))
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
