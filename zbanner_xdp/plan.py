"""What to send for a batch of (address, port) pairs, for every probe of a scan.

Several probes share one permutation: each pair gets every TCP probe; ICMP
echo, the tarpit check and (in scans that also have TCP probes) UDP probes
go once per address, on the pair carrying the first port. Every probe of a
target therefore leaves within one batch, a few milliseconds apart.

A multi-step probe (JARM's ten hellos, LZR's handshakes: Probe.steps > 1)
takes one entry of the plan per step, contiguous, each with its own payload:
every step is a connection of its own, told apart by its source port. Only
step 0 is sent here; the receiver starts step k + 1 when step k's answer
asks for it (steps.py). With `--probe auto` a TCP probe may be limited to
some ports (or to all but some): `ProbePlan(..., port_filters=...)`.

Stateless bookkeeping lives in the source port: a probe (plan entry) with
index `probe` sent as attempt `attempt` uses
    variant = probe + P * attempt
    sport   = lo + variant + V * (cookie(us, them, 0, their_port) % slots)
with P probes, V = P * attempts variants and slots = (hi - lo + 1) // V, so
the XDP program recovers probe and attempt from the port alone and can check
the slot even when nothing else is echoed (bare RSTs, quoted UDP headers).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import cookie, events, packets

TARPIT_PORT_LO = 10000  # the tarpit check's random port lies in [10000, 65535]


class PlanError(ValueError):
    pass


def split_variant(variant: Any, probes: int) -> tuple[Any, Any]:
    """(probe index, attempt) of a variant, or of an array of them: variant = probe + probes * attempt.

    The XDP program's side is zb_split_variant (bpf/shared.h)."""
    return variant % probes, variant // probes


@dataclass
class Segment:
    """Frames of one probe for part of a batch, ready for the TX ring."""

    frames: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.lengths)

    def split(self, k: int) -> tuple[Segment, Segment]:
        return Segment(self.frames[:k], self.lengths[:k]), Segment(self.frames[k:], self.lengths[k:])


@dataclass
class KernelSyns:
    """SYNs for the kernel-side generator: just the targets and the variant."""

    addrs: np.ndarray
    ports: np.ndarray
    variant: int

    def __len__(self) -> int:
        return len(self.addrs)

    def split(self, k: int) -> tuple[KernelSyns, KernelSyns]:
        return (
            KernelSyns(self.addrs[:k], self.ports[:k], self.variant),
            KernelSyns(self.addrs[k:], self.ports[k:], self.variant),
        )


class StepEntry:
    """Step `step` of a multi-step probe, as the rest of the scanner sees a probe: the parent's kind,
    name and fields, its own payload (and so its own payload length for the XDP program)."""

    def __init__(self, parent: Any, step: int):
        self.parent = parent
        self.step = step

    def __getattr__(self, name: str) -> Any:
        return getattr(self.parent, name)

    def payload(self, ip: str, port: int) -> bytes:
        return self.parent.step_payload(self.step, ip, port)

    @property
    def fixed_payload(self) -> bytes | None:
        if self.parent._payload_varies():
            return None
        return self.payload("0.0.0.0", 0)


# A probe's port filter (--probe auto): ("only", ports) or ("except", ports); None: every port.
PortFilter = tuple[str, frozenset[int]] | None


class ProbePlan:
    def __init__(
        self,
        probes: list[Any],
        ports: np.ndarray,
        sport_lo: int,
        sport_hi: int,
        attempts: int = 1,
        tarpit_check: bool = False,
        port_filters: list[PortFilter] | None = None,
        udp_once: bool = False,
    ):
        from .probes import get_probe

        self.user_probes = list(probes)
        filters = list(port_filters) if port_filters is not None else [p.port_filter for p in probes]
        if len(filters) != len(probes):
            raise PlanError("one port filter per probe")
        # The plan's entries: one per probe, one per step of a multi-step probe (contiguous).
        self.probes: list[Any] = []
        self.step_of: list[int] = []  # per entry: its step (0 for single-step probes)
        self.group_of: list[int] = []  # per entry: the entry of its probe's step 0
        self.port_filter: list[PortFilter] = []
        self.user_probe_of: list[Any] = []  # per entry: the probe it is (a step of)
        for probe, pf in zip(probes, filters, strict=True):
            first = len(self.probes)
            n = max(1, int(probe.steps))
            for k in range(n):
                self.probes.append(probe if n == 1 else StepEntry(probe, k))
                self.step_of.append(k)
                self.group_of.append(first)
                self.port_filter.append(pf)
                self.user_probe_of.append(probe)
        self.tarpit_index = -1
        if tarpit_check:
            self.tarpit_index = len(self.probes)
            self.probes.append(get_probe("synscan"))
            self.step_of.append(0)
            self.group_of.append(self.tarpit_index)
            self.port_filter.append(None)
            self.user_probe_of.append(self.probes[-1])
        self.multi = np.array([p.steps > 1 for p in self.probes], bool)  # per entry
        self.later_step = np.array(self.step_of, np.int64) > 0  # per entry: not sent by segments()
        self.P = len(self.probes)
        self.attempts = max(1, attempts)
        self.V = self.P * self.attempts
        self.lo, self.hi = sport_lo, sport_hi
        self.slots = (sport_hi - sport_lo + 1) // self.V
        if self.slots < 1:
            raise PlanError(
                f"source port range {sport_lo}-{sport_hi} too small for "
                f"{self.P} probes x {self.attempts} attempts"
            )
        if self.V > 255:
            raise PlanError("at most 255 probe variants (probes x attempts)")
        self.ports = np.asarray(ports, dtype=np.uint16)
        self.first_port = int(self.ports[0]) if len(self.ports) else 0
        kinds = [p.transport for p in self.probes]
        self.has_tcp = any(k == "tcp" for k in kinds[: len(self.user_probes)])
        # UDP probes go once per address, to their default port, in scans with TCP probes and in
        # scans given no ports (-p): otherwise to every port of the scan.
        self.udp_once = self.has_tcp or udp_once
        icmp = [i for i, k in enumerate(kinds) if k == "icmp"]
        if len(icmp) > 1:
            raise PlanError("icmp-echo can appear once")
        self.icmp_index = icmp[0] if icmp else -1

    # -- sizes -----------------------------------------------------------
    def per_pair(self) -> float:
        """Probes sent for every pair (on average over the scan's ports, with port filters)."""
        n = 0.0
        for i in range(len(self.probes)):
            p = self.probes[i]
            if self.step_of[i] or i == self.tarpit_index:
                continue
            if p.transport == "tcp":
                n += self._port_share(self.port_filter[i])
            elif p.transport == "udp" and not self.udp_once:
                n += 1
        return n

    def _port_share(self, pf: PortFilter) -> float:
        if pf is None or len(self.ports) == 0:
            return 1.0
        how, which = pf
        inside = float(np.isin(self.ports, np.fromiter(which, np.uint16, len(which))).mean())
        return inside if how == "only" else 1.0 - inside

    def per_address(self) -> int:
        """Probes sent once per address (on the first-port pair)."""
        n = sum(
            1 for p in self.user_probes if p.transport == "icmp" or (p.transport == "udp" and self.udp_once)
        )
        return n + (1 if self.tarpit_index >= 0 else 0)

    def expected_probes(self, pairs: int, n_ports: int) -> int:
        """First connections only: a multi-step probe's later steps depend on the answers."""
        addresses = -(-pairs // max(1, n_ports))
        return round((pairs * self.per_pair() + addresses * self.per_address()) * self.attempts)

    def entry(self, group: int, step: int) -> int:
        """The plan entry of step `step` of the probe whose step 0 is entry `group`."""
        return group + step

    # -- the stateless port and cookies --------------------------------------
    def source_ports(
        self, key: bytes, us: int, them: np.ndarray, their_port: np.ndarray | int, variant: int
    ) -> np.ndarray:
        tp = np.broadcast_to(np.asarray(their_port, dtype=np.uint16), them.shape)
        c0 = cookie.cookies(key, us, them, 0, tp)
        slot = (c0 % np.uint32(self.slots)).astype(np.uint32)
        return (self.lo + variant + self.V * slot).astype(np.uint16)

    def tarpit_ports(self, key: bytes, us: int, them: np.ndarray) -> np.ndarray:
        c = cookie.cookies(key, us, them, 0, np.ones(them.shape, dtype=np.uint16))
        return (TARPIT_PORT_LO + c % np.uint32(65536 - TARPIT_PORT_LO)).astype(np.uint16)

    # -- frames ------------------------------------------------------------
    def segments(
        self,
        link: packets.LinkParams,
        key: bytes,
        addrs: np.ndarray,
        ports: np.ndarray,
        attempt: int = 0,
        kernel_syns: bool = False,
    ) -> list[Segment | KernelSyns]:
        """Every probe's frames for one batch of pairs.

        With kernel_syns, SYNs come back as KernelSyns (targets for the
        kernel-side generator, which builds the frames itself).
        """
        first = ports == self.first_port
        out: list[Segment | KernelSyns] = []
        # The tarpit check first: its verdict must be in before a multi-step probe's answers decide
        # whether to step on (lzr stops at a tarpit), and a batch can take seconds at a low rate.
        order = list(range(len(self.probes)))
        if self.tarpit_index >= 0:
            order.remove(self.tarpit_index)
            order.insert(0, self.tarpit_index)
        for i in order:
            probe = self.probes[i]
            variant = i + self.P * attempt
            if self.step_of[i]:
                continue  # a later step: started by the answer to the one before (steps.py)
            if i == self.tarpit_index or probe.transport == "tcp":
                if i == self.tarpit_index:
                    a = addrs[first]
                    p = self.tarpit_ports(key, link.src_ip, a)
                elif self.port_filter[i] is not None:
                    how, which = self.port_filter[i]
                    mine = np.isin(ports, np.fromiter(which, np.uint16, len(which)))
                    mine = mine if how == "only" else ~mine
                    a, p = addrs[mine], ports[mine]
                else:
                    a, p = addrs, ports
                syns = KernelSyns(a, p, variant)
                out.append(syns if kernel_syns else self.syn_frames(link, key, syns))
            elif probe.transport == "udp":
                if self.udp_once:
                    a = addrs[first]
                    p = np.full(a.shape, probe.default_port, dtype=np.uint16)
                else:
                    a, p = addrs, ports
                out.append(self._udp(link, key, probe, a, p, variant))
            else:
                a = addrs[first]
                c = cookie.cookies(key, link.src_ip, a, 0, np.zeros(a.shape, dtype=np.uint16))
                f, n = packets.icmp_echo_frames(
                    link, a, c >> np.uint32(16), c & np.uint32(0xFFFF), probe.payload("", 0)
                )
                out.append(Segment(f, n))
        return [s for s in out if len(s)]

    def syn_frames(self, link: packets.LinkParams, key: bytes, syns: KernelSyns) -> Segment:
        """The frames of SYNs (those the kernel-side generator would have built, where it cannot)."""
        sports = self.source_ports(key, link.src_ip, syns.addrs, syns.ports, syns.variant)
        seqs = cookie.cookies(key, link.src_ip, syns.addrs, sports, syns.ports)
        return Segment(*packets.syn_frames(link, syns.addrs, syns.ports, sports, seqs))

    def udp_payloads(
        self, key: bytes, us: int, probe: Any, addrs: np.ndarray, ports: np.ndarray, sports: np.ndarray
    ) -> np.ndarray:
        """The datagrams' payloads: the template with each target's cookie patched in."""
        tmpl = np.frombuffer(probe.udp_template(), dtype=np.uint8)
        pay = np.tile(tmpl, (len(addrs), 1))
        if probe.cookie_len:
            c = cookie.cookies(key, us, addrs, sports, ports).astype(np.uint64)
            for j in range(probe.cookie_len):
                shift = np.uint64(8 * (probe.cookie_len - 1 - j))
                pay[:, probe.cookie_offset + j] = ((c >> shift) & np.uint64(0xFF)).astype(np.uint8)
        return pay

    def _udp(
        self,
        link: packets.LinkParams,
        key: bytes,
        probe: Any,
        addrs: np.ndarray,
        ports: np.ndarray,
        variant: int,
    ) -> Segment:
        sports = self.source_ports(key, link.src_ip, addrs, ports, variant)
        pay = self.udp_payloads(key, link.src_ip, probe, addrs, ports, sports)
        ipid = cookie.cookies(key, link.src_ip, addrs, sports, ports) & np.uint32(0xFFFF)
        return Segment(*packets.udp_frames(link, addrs, ports, sports, pay, ipid))

    # -- for the XDP program -------------------------------------------------
    def kernel_payloads(self, family: int = 4) -> list[Any]:
        """In-kernel replies: per plan entry, the templates the program answers a SYN-ACK with by itself
        (kpayload.KernelPayload), or None where it cannot reproduce the payload (user space answers)."""
        from . import kpayload

        return [kpayload.build(p, family) for p in self.probes]

    def probe_infos(self, family: int = 4) -> list[dict[str, int]]:
        """Per probe, the members of its zb_probe_info (events.PROBE_INFO_DTYPE) the program reads:
        TCP, how long our payload is; UDP, where the cookie goes and the datagram's checksum parts.
        `family` 6: a payload's address is IPv6 text (the program computes its length)."""
        out = []
        for i, p in enumerate(self.probes):
            if p.transport == "udp":
                tmpl = bytearray(p.udp_template())
                tmpl[p.cookie_offset : p.cookie_offset + p.cookie_len] = bytes(p.cookie_len)
                if len(tmpl) % 2:
                    tmpl.append(0)
                words = int(np.frombuffer(bytes(tmpl), dtype=">u2").astype(np.uint64).sum())
                info = {
                    "proto": socket.IPPROTO_UDP,
                    "cookie_len": p.cookie_len,
                    "reply_cookie_off": p.reply_cookie_offset,
                    "udp_len": 8 + len(p.udp_template()),
                    "udp_tmpl_sum": words,
                    "cookie_off": p.cookie_offset,
                }
            elif p.transport == "icmp":
                info = {"proto": socket.IPPROTO_ICMP}
            else:
                base, plus = payload_len_rule(p, family)
                info = {"proto": socket.IPPROTO_TCP, "base": base, "plus_ip_strlen": plus}
                if self.multi[i]:
                    # A step's "no answer" counts only once the server has acknowledged our request.
                    info["flags"] = events.PROBE_ACKS
            out.append(info)
        return out


# Two addresses of each family whose texts differ in length: (short, long).
_SAMPLE_TEXTS = {4: ("1.1.1.1", "100.100.100.100"), 6: ("2001:2::1", "2001:2:3:4:5:6:7:8")}


def payload_len_rule(probe: Any, family: int = 4) -> tuple[int, int]:
    """How long a TCP probe's payload is: (base, 1 if the target address's text is part of it:
    dotted for IPv4, RFC 5952 for IPv6, bpf/xdp_recv.c dotted_len / text6_len)."""
    if not probe.handshake:
        return (0, 0)
    fixed = probe.fixed_payload
    if fixed is not None:
        return (len(fixed), 0)
    short_text, long_text = _SAMPLE_TEXTS[family]
    short = probe.payload(short_text, 1)
    long_ = probe.payload(long_text, 1)
    if len(long_) == len(short):
        return (len(short), 0)
    if len(long_) - len(short) == len(long_text) - len(short_text):  # the address is in it (Host:)
        return (len(short) - len(short_text), 1)
    raise PlanError(f"probe {probe.name}: payload length must not depend on the target beyond its address")
