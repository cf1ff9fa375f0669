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

IPv6 alongside, the same shape (topology.py; every address in the RFC 5180
benchmark block 2001:2::/48):

    zbl-s0 2001:2:0:ff00::1/64 <--> zbl-r0 2001:2:0:ff00::2/64
                                    zbl-r1 2001:2:0:ff01::1/64 <--> zbl-t0 2001:2:0:ff01::2/64
    route 2001:2::/111              forwarding=1                    default via 2001:2:0:ff01::1
      via 2001:2:0:ff00::2          2001:2::/112 via ff01::2        local 2001:2::/112 dev lo
                                    unreachable/prohibit/blackhole/TTL: the twins below

(*) nft table ip zbl in zbl-rtr, prerouting: "reject with icmp type
host-unreachable" / "admin-prohibited" for the first two, "ip ttl set 1" for
198.19.3.0/24 (so forwarding expires it). The reject rules answer before the
routes are consulted: ICMP errors from unreachable/prohibit routes go through
ip_error(), which the kernel rate-limits per source (burst 5, then 1/s) with
host-wide sysctls (net.ipv4.route.error_cost/error_burst) that a namespace
cannot change; nft's reject is limited only by the namespace's icmp_* sysctls.
nft table ip6 zbl does the same for IPv6: "reject with icmpv6 type
addr-unreachable" (1/3) / "admin-prohibited" (1/1), "ip6 hoplimit set 1" (so
forwarding answers hop limit exceeded, 3/0).

With up(wire=True) a fault wire sits between scanner and router: zbl-s0 is
paired with zbl-w0 in zbl-wire, and zbl-w1 (also in zbl-wire) with zbl-r0.
zbl-wire has no addresses and no IPv6; both w ends are up and promiscuous.
Frames cross it only through a user-space relay, `python -m zbanner_xdp.lab.impair
--a zbl-w0 --b zbl-w1 ...` (a = scanner side, b = router side, so "a2b" is the
probes and "b2a" the replies): up(wire=True) starts a plain relay, and the
impaired() context manager swaps in one with netem-like faults ("loss 5%",
"delay 50ms 10ms", ...). The relay caps a run at an hour, so the plain relay
is restarted by a bounded loop (a week's worth of rounds, ~0.2 s gap each).
The scanner's next hop is 10.77.0.2 with MAC 02:7a:62:6c:00:02 either way.
If zbanner_xdp.lab.impair is missing, up(wire=True) still builds the wire, but no
frame crosses it.

Address plan (all reached from zbl-scan through the gateway 10.77.0.2):

    198.18.0.0/24   OPEN       every server port and unexpected port (below) open (AnyIP),
                               other TCP ports RST, UDP 53/123 answered, other UDP ports
                               ICMP port unreachable
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

IPv6 twins (topology.v6_twin: the low 17 bits are the v4 address's offset in
198.18.0.0/15, in hex; 198.18.1.5 <-> 2001:2::105), the same answers, ICMPv6's
types: address unreachable 1/3, admin prohibited 1/1, hop limit exceeded 3/0,
port unreachable 1/4 (from the probed address, as over IPv4):

    2001:2::/120         OPEN_NET6        2001:2::1:0/120     UNREACH_NET6 (1/3)
    2001:2::100/120      RST_NET6         2001:2::1:100/120   PROHIBIT_NET6 (1/1)
    2001:2::200/120      SILENT_NET6      2001:2::1:200/120   DROP_NET6
    2001:2::300/120      NOECHO_NET6      2001:2::1:300/120   TTL_NET6 (3/0)
    2001:2::405          TARPIT_IP6       2001:2::1:0/112     BLACKHOLE_NET6
    2001:2::/112         BIG_NET6         2001:2::/111        SCAN_ROUTE6
    2001:2:0:ff00::2     gateway (TARGET_GW6)

expected(addr, port, proto) is this table as code, expected_icmp() gives the
ICMP (type, code) and expected_icmp_responder() its source. The router and
the target send ICMP errors without rate limits (icmp_ratelimit=0, 100,000
msgs/s), so they are exact ground truth too.

Servers (Debian's own binaries, run in the foreground inside zbl-tgt and
listening on 0.0.0.0 and ::, so every local address above answers, IPv4 and
IPv6; configs and data in STATE_DIR):

    nginx      80 (http), 443 (https, self-signed RSA cert, TLSv1.2/1.3)
    sshd       22
    vsftpd     21
    redis      6379
    dnsmasq    53 udp+tcp (zbanner.lab A 198.18.0.1, AAAA 2001:2::1, REFUSED for other names; TCP
               is DNATed to 10.77.1.2, the only kind of address it answers TCP on)
    chronyd    123 udp (NTP server, stratum 10 local clock; -x: never touches the clock)
    postgres   5432 (PostgreSQL; password auth, no role has one)
    mariadb    3306 (MariaDB; no grant tables, so any client gets the greeting)
    memcached  11211 (TCP only)
    mosquitto  1883 (MQTT, anonymous)
    exim       25 (SMTP, accepts no mail)
    dovecot    110 (POP3), 143 (IMAP); nobody can log in

PostgreSQL's and MariaDB's data directories are initialised once per server
version under /var/cache/zbanner-xdp and copied by every up() into
/dev/shm/<STATE_DIR's name> (tmpfs: fast), which down() removes.

Each TCP service also answers on a port that is not its own (LZR's
"unexpected services"): nftables in zbl-tgt DNATs these ports, on every
address that answers TCP (not RST_NET or SILENT_NET), to the service's own
port on 10.77.1.2 (topology.UNEXPECTED; nothing listens on them):

    9021 ftp      9022 ssh     9025 smtp      9053 dns     9080 http
    9110 pop3     9143 imap    9211 memcached 9306 mysql   9379 redis
    9432 postgres 9443 https   9883 mqtt

topology.TCP_SERVICES maps every open TCP port (own and unexpected) to the
protocol answering there, by LZR's name (https is "tls"); service(addr, port)
adds the address plan (None where no connection is made, "http" on the
tarpit's other ports). Conntrack stays off except for these DNATs and the
tarpit's, and the target's nf_conntrack_tcp_loose=0 keeps replies of untracked
connections from creating entries.

To see every frame the scanner sends exactly as sent, capture on CAPTURE_IF
(zbl-r0) in CAPTURE_NS (zbl-rtr); zbl-t0 in zbl-tgt sees only what was
forwarded to the target, with the TTL one lower.

Configs, pid files, logs and generated keys live in STATE_DIR; the config
templates are in zbanner_xdp/lab/files/. Every veth end has tx checksum
offload switched off: otherwise packets the target's kernel sends carry only a
partial checksum across the veths, and anything reading raw frames on zbl-s0
(the XDP program, tcpdump, pcap tests, the relay) would see bad TCP checksums
that a real wire never shows. IPv6 runs in the scanner, router and target
namespaces without chatter on the scan link (network.py: no DAD, no router
solicitations, MLD reports only while the links come up) and with neighbour
discovery as on any wire (no static entries); the wire namespace has no IPv6.
Conntrack runs in the target
namespace only where a DNAT needs it (the tarpit address, TCP 53, the
unexpected ports); everything else is untracked, so big scans of the servers'
own ports cannot fill the table.

The package, one module per part (this file re-exports the public names, so
`from zbanner_xdp import lab; lab.up(); lab.expected(...)` is the interface):

    topology.py   every name, address, port, veth pair and route (nothing touches the system)
    truth.py      ground truth: expected(), expected_icmp(), expected_icmp_responder()
    network.py    namespaces, veths, addresses, routes, sysctls
    servers.py    the target's servers: configs (files/), keys, start-up, readiness
    relay.py      the fault wire's relay: started, swapped (impaired()), stopped
    state.py      status(): what exists and whether the lab is complete
    lifecycle.py  up() and down()
    users.py      who else uses the lab (leases: using(); processes in its namespaces): down()
                  and a rebuilding up() refuse while anybody does
    procs.py      commands, processes, the lock
    nexthop.py    the do-nothing XDP program on the scanner's next hop (XDP transmits delivered)
    netns.py      run a function inside another network namespace
    impair.py     the relay itself (`python -m zbanner_xdp.lab.impair`)
    emulator.py   the stateless XDP target emulator (`python -m zbanner_xdp.lab.emulator`)
                  and its program, xdp_responder.c

Neither impair nor emulator is imported here: `python -m` of either imports
this package first, and must not find itself already loaded.
"""

from __future__ import annotations

from . import topology
from .lifecycle import down, main, up
from .nexthop import next_hop_xdp, next_hop_xdp_released
from .procs import ns_exec_argv
from .relay import RELAY_MODULE, impaired, relay_available
from .servers import SERVERS
from .state import format_status, status
from .topology import *  # noqa: F403 - the plan's names are the lab's (topology.__all__)
from .truth import (
    PROTOS,
    address_plan,
    expected,
    expected_icmp,
    expected_icmp_responder,
    is_tarpit,
    service,
)
from .users import LabInUse, using

__all__ = [
    *topology.__all__,
    "LabInUse",
    "PROTOS",
    "RELAY_MODULE",
    "SERVERS",
    "address_plan",
    "down",
    "expected",
    "expected_icmp",
    "expected_icmp_responder",
    "format_status",
    "impaired",
    "is_tarpit",
    "main",
    "next_hop_xdp",
    "next_hop_xdp_released",
    "ns_exec_argv",
    "relay_available",
    "service",
    "status",
    "up",
    "using",
]
