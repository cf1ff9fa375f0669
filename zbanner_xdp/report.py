"""`zbanner-xdp report`: the liveness taxonomy of Bano et al., "Scanning the Internet for Liveness" (2018).

Reads the scanner's JSON-lines results (streamed; "-" is stdin; gzip is detected by its magic bytes, so
``results.jsonl.gz`` works) and reports, per probe key ("synscan/80", "udp-dns/53", "icmp-echo"),
how many distinct targets were

* network-alive: any reply sent by the target itself, including ICMP errors whose ``icmp_responder`` is
  the target;
* transport-active: a TCP segment (SYN-ACK, zero-window SYN-ACK, RST, banner) or a UDP reply;
* transport-alive: a SYN-ACK (zero-window SYN-ACKs and banners imply one) or a UDP reply;
* application-active: a payload (a banner record, or a UDP reply carrying data);
* application-alive: a payload that parsed as the probed protocol (``app_match`` true).

Each level includes the next (application-alive ⊆ application-active ⊆ transport-alive ⊆ transport-active
⊆ network-alive), because ``app_match`` true is taken to imply a payload.

Choices where the paper or the schema leave room:

* ICMP errors sent by another address (a router) say only that the target was unreachable, not that it
  exists, so they make the target neither alive nor "active" (cross-protocol matrix, unique coverage,
  retransmission gain). They are still counted in the reply-type breakdown (``icmp_from_router`` and the
  per type/code table), and a target that only drew router errors is counted in ``totals.router_icmp_only``.
* RSTs with ``validated`` false may be spoofed or stray (no cookie to check), so they count only in the
  breakdown (``rst_unvalidated``), never as liveness. All other RSTs count as transport-active.
* Records with ``repeat`` true are counted in ``totals.repeats_ignored`` and otherwise ignored.
* Records with ``tarpit_probe`` true answer a random control port, not a probe key: they feed only the
  tarpit section. A tarpit is a target that SYN-ACK'd that control port and every TCP port of the scan,
  where the scan's TCP ports are those of the TCP probe keys seen in the input (the results hold replies
  only, so which ports a silent target was probed on is inferred from the whole file).
* A probe's transport is the one the probe registry declares for it; a name the registry does not know
  (a file from another version) counts as TCP.
* Retransmission gain: targets network-alive on a key whose every reply from the target there came from a
  retransmitted copy (``attempt`` >= 1); "added" is that count as a percentage of the targets found by
  first transmissions.
* A line that is not a JSON object with every schema field, of the right type, is skipped and counted in
  ``totals.malformed`` (with the first reason in ``totals.malformed_reasons``); blank lines are ignored.

Memory is one integer per distinct target (bit fields for every probe key), plus a sparse map for targets
with ICMP errors and a set for tarpit-check answers: never the records themselves.

IPv4 and IPv6 targets may share a file (``saddr`` as IPv4 or IPv6 text): a target is its address in either
family, the counts are of distinct targets whatever their family, and an ICMPv6 error is named by ICMPv6's
codes (its label ends in "(ICMPv6)": ICMPv6's destination-unreachable code 1 is not IPv4's).
"""

from __future__ import annotations

import gzip
import io
import math
import os
import socket
import sys
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any

import orjson

from . import fields
from .probes import probe_class
from .targets import TargetError, parse_ports

SCHEMA = "zbanner-xdp-report/1"
PNG_NEEDS = "--png needs matplotlib: pip install 'zbanner-xdp[plot]'"
ZSTD_NEEDS = "the zstandard package: pip install 'zbanner-xdp[zstd]'"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# The fields every results file has (the output table marks them; a field added later is optional here,
# so that files written by an older scanner stay readable).
REQUIRED_FIELDS = fields.REQUIRED
_REQUIRED = frozenset(REQUIRED_FIELDS)

# icmp-toobig: ICMPv6's packet too big (IPv4 says it with unreachable code 4, fragmentation needed).
ICMP_ERRORS = frozenset(
    {
        "icmp-unreach",
        "icmp-timxceed",
        "icmp-redirect",
        "icmp-srcquench",
        "icmp-paramprob",
        "icmp-toobig",
        "icmp-other",
    }
)
CLASSIFICATIONS = frozenset({"synack", "rst", "zerowin", "banner", "udp", "echoreply"}) | ICMP_ERRORS

ICMP_CODE_NAMES: dict[str, dict[int, str]] = {
    "icmp-unreach": {
        0: "net-unreachable",
        1: "host-unreachable",
        2: "protocol-unreachable",
        3: "port-unreachable",
        4: "fragmentation-needed",
        5: "source-route-failed",
        6: "dest-net-unknown",
        7: "dest-host-unknown",
        8: "source-host-isolated",
        9: "net-prohibited",
        10: "host-prohibited",
        11: "net-unreachable-for-tos",
        12: "host-unreachable-for-tos",
        13: "admin-prohibited",
        14: "host-precedence-violation",
        15: "precedence-cutoff",
    },
    "icmp-timxceed": {0: "ttl-exceeded", 1: "reassembly-time-exceeded"},
    "icmp-redirect": {0: "redirect-net", 1: "redirect-host", 2: "redirect-tos-net", 3: "redirect-tos-host"},
    "icmp-srcquench": {0: "source-quench"},
    "icmp-paramprob": {0: "pointer-indicates-error", 1: "missing-required-option", 2: "bad-length"},
}
# RFC 4443 (with RFC 6550's and RFC 7112's codes), by the same classifications.
ICMP6_CODE_NAMES: dict[str, dict[int, str]] = {
    "icmp-unreach": {
        0: "no-route",
        1: "admin-prohibited",
        2: "beyond-scope",
        3: "address-unreachable",
        4: "port-unreachable",
        5: "source-policy-failed",
        6: "reject-route",
        7: "source-routing-header-error",
        8: "headers-too-long",
    },
    "icmp-timxceed": {0: "hop-limit-exceeded", 1: "reassembly-time-exceeded"},
    "icmp-paramprob": {
        0: "erroneous-header-field",
        1: "unrecognized-next-header",
        2: "unrecognized-option",
        3: "incomplete-header-chain",
    },
    "icmp-toobig": {0: "packet-too-big"},
}

# Bit fields of one (target, probe key) slot; a target's state packs one slot per probe key id.
ANY = 1 << 0  # a reply from the target itself: network-alive, and "active" for the matrix
FIRST = 1 << 1  # such a reply to a first transmission (attempt 0)
TA = 1 << 2  # transport-active
TL = 1 << 3  # transport-alive
AA = 1 << 4  # application-active
AL = 1 << 5  # application-alive
SYNACK = 1 << 6
ZEROWIN = 1 << 7
RST = 1 << 8
RST_UNVAL = 1 << 9
UDP = 1 << 10
ECHO = 1 << 11
ICMP_T = 1 << 12  # ICMP error sent by the target
ICMP_R = 1 << 13  # ICMP error about the target sent by someone else
N_BITS = 14
STRIDE = 16
SLOT = (1 << STRIDE) - 1

_CLASS_BITS = {
    "synack": ANY | TA | TL | SYNACK,
    "zerowin": ANY | TA | TL | ZEROWIN,
    "banner": ANY | TA | TL | SYNACK | AA,
    "rst": ANY | TA | RST,
    "udp": ANY | TA | TL | UDP,
    "echoreply": ANY | ECHO,
}

LIVENESS_FIELDS = (
    ("network_alive", ANY),
    ("transport_active", TA),
    ("transport_alive", TL),
    ("application_active", AA),
    ("application_alive", AL),
)
REPLY_FIELDS = (
    ("synack", SYNACK),
    ("zerowin", ZEROWIN),
    ("rst", RST),
    ("rst_unvalidated", RST_UNVAL),
    ("udp", UDP),
    ("echoreply", ECHO),
    ("icmp_from_target", ICMP_T),
    ("icmp_from_router", ICMP_R),
)


# What the text report prints under its tables: the categories and what they count.
DEFINITIONS = (
    ("network-alive", "any reply sent by the target itself: SYN-ACK, RST, banner, UDP reply, echo reply, "
     "or an ICMP error whose sender is the target"),
    ("transport-active", "a TCP segment (SYN-ACK, zero-window SYN-ACK, RST, banner) or a UDP reply"),
    ("transport-alive", "a SYN-ACK (a zero-window one, or a banner, implies one) or a UDP reply: the port "
     "is open"),
    ("app-active", "a payload: a banner, or a UDP reply carrying data"),
    ("app-alive", "a payload that parsed as the probed protocol (app_match)"),
)  # fmt: skip
DEFINITION_NOTES = (
    "Each level includes the next: app-alive ⊆ app-active ⊆ transport-alive ⊆ transport-active ⊆ "
    "network-alive.",
    "Counts are distinct targets (addresses) per probe key (probe/port; icmp-echo has no port). ICMP errors "
    "sent by a router, RSTs matched only by their port (unvalidated) and repeats make no target alive; they "
    "are counted apart.",
)


class ReportError(Exception):
    """A user error (missing or unreadable input, unwritable output): one line for the CLI."""


def protocol_of(probe: str) -> str:
    """The transport the probe registry declares for `probe`; TCP for a name it does not know."""
    cls = probe_class(probe)
    return cls.transport if cls is not None else "tcp"


# A target's key: an IPv4 address as its 32-bit value, an IPv6 one as its 128-bit value with this bit
# set above it, so the families never collide and IPv4 sorts first.
V6 = 1 << 128


def _addr(s: Any) -> int | None:
    """The key of an IPv4 or IPv6 address text; None if it is neither."""
    if type(s) is not str:
        return None
    try:
        # inet_pton, unlike inet_aton, rejects shorthand such as "10.1" instead of guessing.
        return int.from_bytes(socket.inet_pton(socket.AF_INET, s), "big")
    except (OSError, ValueError, UnicodeError):
        pass
    if ":" not in s:
        return None
    try:
        return V6 | int.from_bytes(socket.inet_pton(socket.AF_INET6, s), "big")
    except (OSError, ValueError, UnicodeError):
        return None


def _ntoa(addr: int) -> str:
    """The text of an _addr() key (RFC 5952's form for IPv6)."""
    if addr & V6:
        return socket.inet_ntop(socket.AF_INET6, (addr ^ V6).to_bytes(16, "big"))
    return socket.inet_ntoa(addr.to_bytes(4, "big"))


def _opt_int(v: Any) -> bool:
    return v is None or type(v) is int


def icmp_label(classification: str, icmp_type: int | None, code: int, family: int = 4) -> str:
    """The breakdown's name of an ICMP error; ICMPv6 ones (family 6) by ICMPv6's codes, marked as such."""
    mark = " (ICMPv6)" if family == 6 else ""
    if classification == "icmp-other":
        return f"icmp-other/{icmp_type if icmp_type is not None else '?'}/{code}{mark}"
    name = (ICMP6_CODE_NAMES if family == 6 else ICMP_CODE_NAMES).get(classification, {}).get(code)
    return f"{classification}/{code} {name}{mark}" if name else f"{classification}/{code}{mark}"


class ReportBuilder:
    """Feed result lines one at a time with `add_line`, then call `finish` once."""

    def __init__(self) -> None:
        self.lines = 0
        self.records = 0
        self.repeats = 0
        self.tarpit_records = 0
        self.malformed: Counter[str] = Counter()
        self._targets: dict[int, int] = {}
        self._icmp: dict[
            int, int
        ] = {}  # target -> bitset over _icmp_ids; sparse: only targets with ICMP errors
        self._tarpit_synack: set[int] = set()
        self._key_ids: dict[tuple[str, int | None], int] = {}
        # (key id, classification, icmp type or -1, icmp code, sent by the target, family) -> bit index
        self._icmp_ids: dict[tuple[int, str, int, int, bool, int], int] = {}

    @property
    def n_targets(self) -> int:
        return len(self._targets)

    def _bad(self, reason: str) -> None:
        self.malformed[reason] += 1

    def add_line(self, line: bytes | bytearray | memoryview | str) -> None:
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            if not (line.strip() if isinstance(line, str) else bytes(line).strip()):
                return
            self.lines += 1
            self._bad("invalid JSON")
            return
        self.lines += 1
        if type(rec) is not dict:
            self._bad("not a JSON object")
            return
        if not rec.keys() >= _REQUIRED:
            missing = next(f for f in REQUIRED_FIELDS if f not in rec)
            self._bad(f"missing field '{missing}'")
            return
        addr = _addr(rec["saddr"])
        if addr is None:
            self._bad("bad 'saddr'")
            return
        cls = rec["classification"]
        if type(cls) is not str or cls not in CLASSIFICATIONS:
            self._bad("bad 'classification'")
            return
        probe = rec["probe"]
        if type(probe) is not str or not probe:
            self._bad("bad 'probe'")
            return
        sport = rec["sport"]
        if not _opt_int(sport) or (sport is not None and not 0 <= sport <= 65535):
            self._bad("bad 'sport'")
            return
        if type(rec["repeat"]) is not bool:
            self._bad("bad 'repeat'")
            return
        if type(rec["success"]) is not bool:
            self._bad("bad 'success'")
            return
        data = rec["data"]
        if data is not None and type(data) is not str:
            self._bad("bad 'data'")
            return
        if not _opt_int(rec["icmp_type"]):
            self._bad("bad 'icmp_type'")
            return
        if not _opt_int(rec["icmp_code"]):
            self._bad("bad 'icmp_code'")
            return
        attempt = rec.get("attempt")
        if attempt is None:
            attempt = 0
        elif type(attempt) is not int or attempt < 0:
            self._bad("bad 'attempt'")
            return
        tarpit = rec.get("tarpit_probe")
        if tarpit is not None and type(tarpit) is not bool:
            self._bad("bad 'tarpit_probe'")
            return
        validated = rec.get("validated")
        if validated is not None and type(validated) is not bool:
            self._bad("bad 'validated'")
            return
        app_match = rec.get("app_match")
        if app_match is not None and type(app_match) is not bool:
            self._bad("bad 'app_match'")
            return
        responder = None
        if cls in ICMP_ERRORS:
            responder = _addr(rec["icmp_responder"])
            if responder is None:
                self._bad("bad 'icmp_responder'")
                return
            if rec["icmp_code"] is None:
                self._bad("bad 'icmp_code'")
                return
        if protocol_of(probe) == "icmp":
            port = None
        elif sport is None:
            self._bad("missing 'sport' for a TCP/UDP probe")
            return
        else:
            port = sport

        self.records += 1
        if rec["repeat"]:
            self.repeats += 1
            return
        if tarpit:
            self.tarpit_records += 1
            if cls in ("synack", "zerowin", "banner"):
                self._tarpit_synack.add(addr)
            return

        kid = self._key_ids.get((probe, port))
        if kid is None:
            kid = self._key_ids[(probe, port)] = len(self._key_ids)
        if responder is not None:
            from_target = responder == addr
            bits = ANY | ICMP_T if from_target else ICMP_R
            itype = rec["icmp_type"]
            family = 6 if addr & V6 else 4
            ikey = (kid, cls, -1 if itype is None else itype, rec["icmp_code"], from_target, family)
            iid = self._icmp_ids.get(ikey)
            if iid is None:
                iid = self._icmp_ids[ikey] = len(self._icmp_ids)
            self._icmp[addr] = self._icmp.get(addr, 0) | (1 << iid)
        elif cls == "rst" and validated is False:
            bits = RST_UNVAL
        else:
            bits = _CLASS_BITS[cls]
            if cls == "udp" and (data or rec["banner"]):
                bits |= AA
            if app_match and cls in ("banner", "udp"):
                bits |= AA | AL
        if bits & ANY and attempt == 0:
            bits |= FIRST
        shift = kid * STRIDE
        self._targets[addr] = self._targets.get(addr, 0) | (bits << shift)

    def finish(self) -> dict[str, Any]:
        keys = list(self._key_ids)  # index = key id
        n = len(keys)
        order = sorted(range(n), key=lambda k: (keys[k][0], -1 if keys[k][1] is None else keys[k][1]))
        pos = {kid: i for i, kid in enumerate(order)}
        bit_counts = [[0] * N_BITS for _ in range(n)]
        only_key = [0] * n
        only_icmp = [0] * n
        only_rst = [0] * n
        retx_only = [0] * n
        masks: Counter[int] = Counter()
        tot: Counter[str] = Counter()

        # Targets sharing a state are counted together: real scans have few distinct states.
        for state, mult in Counter(self._targets.values()).items():
            union = 0
            active = 0
            rest = state
            while rest:
                kid = ((rest & -rest).bit_length() - 1) // STRIDE
                shift = kid * STRIDE
                s = (rest >> shift) & SLOT
                rest ^= s << shift
                union |= s
                counts = bit_counts[kid]
                for b in range(N_BITS):
                    if s >> b & 1:
                        counts[b] += mult
                if s & ANY:
                    active |= 1 << pos[kid]
                    if not s & FIRST:
                        retx_only[kid] += mult
                if s & ICMP_T and not s & (TA | ECHO):
                    only_icmp[kid] += mult
                if s & RST and not s & (TL | ECHO | ICMP_T):
                    only_rst[kid] += mult
            if active:
                masks[active] += mult
                if not active & (active - 1):
                    only_key[order[active.bit_length() - 1]] += mult
                tot["network_alive"] += mult
            elif union & ICMP_R:
                tot["router_icmp_only"] += mult
            if union & ICMP_T and not union & (TA | ECHO):
                tot["found_only_via_icmp"] += mult
            if union & RST and not union & (TL | ECHO | ICMP_T):
                tot["found_only_via_rst"] += mult

        icmp_counts = [0] * len(self._icmp_ids)
        for state, mult in Counter(self._icmp.values()).items():
            while state:
                low = state & -state
                icmp_counts[low.bit_length() - 1] += mult
                state ^= low
        icmp_by_key: list[dict[str, dict[str, int]]] = [{} for _ in range(n)]
        for (kid, cls, itype, code, from_target, family), iid in sorted(self._icmp_ids.items()):
            label = icmp_label(cls, None if itype < 0 else itype, code, family)
            entry = icmp_by_key[kid].setdefault(label, {"target": 0, "router": 0})
            entry["target" if from_target else "router"] = icmp_counts[iid]

        names = [_key_name(keys[k]) for k in order]
        per_key: dict[str, Any] = {}
        for i, kid in enumerate(order):
            probe, port = keys[kid]
            c = bit_counts[kid]
            found = c[0]
            first = found - retx_only[kid]
            per_key[names[i]] = {
                "probe": probe,
                "port": port,
                "protocol": protocol_of(probe),
                "liveness": {name: c[bit.bit_length() - 1] for name, bit in LIVENESS_FIELDS},
                "replies": {
                    **{name: c[bit.bit_length() - 1] for name, bit in REPLY_FIELDS},
                    "icmp": icmp_by_key[kid],
                },
                "unique": {
                    "only_this_key": only_key[kid],
                    "only_icmp": only_icmp[kid],
                    "only_rst": only_rst[kid],
                },
                "retransmission": {
                    "found": found,
                    "first_attempt": first,
                    "retransmission_only": retx_only[kid],
                    "added_percent": round(100 * retx_only[kid] / first, 2) if first else None,
                },
            }

        both = [[0] * n for _ in range(n)]
        for mask, mult in masks.items():
            idx = [i for i in range(n) if mask >> i & 1]
            for a in idx:
                row = both[a]
                for b in idx:
                    row[b] += mult
        prob = [
            [round(both[a][b] / both[a][a], 6) if both[a][a] else None for b in range(n)] for a in range(n)
        ]

        tcp_ports: dict[int, list[int]] = {}
        for kid, (probe, port) in enumerate(keys):
            if port is not None and protocol_of(probe) == "tcp":
                tcp_ports.setdefault(port, []).append(kid)
        tarpits = []
        if tcp_ports:
            for addr in self._tarpit_synack:
                state = self._targets.get(addr, 0)
                if all(any(state >> (kid * STRIDE) & TL for kid in kids) for kids in tcp_ports.values()):
                    tarpits.append(addr)
        tarpits.sort()

        return {
            "schema": SCHEMA,
            "totals": {
                "lines": self.lines,
                "records": self.records,
                "repeats_ignored": self.repeats,
                "tarpit_check_records": self.tarpit_records,
                "malformed": sum(self.malformed.values()),
                "malformed_reasons": dict(sorted(self.malformed.items())),
                "targets": len(self._targets),
                "network_alive": tot["network_alive"],
                "router_icmp_only": tot["router_icmp_only"],
                "found_only_via_icmp": tot["found_only_via_icmp"],
                "found_only_via_rst": tot["found_only_via_rst"],
            },
            "probe_keys": names,
            "per_key": per_key,
            "matrix": {
                "keys": names,
                "active": [both[a][a] for a in range(n)],
                "both": both,
                "p": prob,
            },
            "tarpits": {
                "tcp_ports": sorted(tcp_ports),
                "check_port_synack": len(self._tarpit_synack),
                "count": len(tarpits),
                "addresses": [_ntoa(a) for a in tarpits],
            },
        }


def _key_name(key: tuple[str, int | None]) -> str:
    probe, port = key
    return probe if port is None else f"{probe}/{port}"


def build_report(lines: Iterable[bytes | str]) -> dict[str, Any]:
    """The report (JSON-serialisable, stable key order) of an iterable of result lines, consumed lazily."""
    builder = ReportBuilder()
    for line in lines:
        builder.add_line(line)
    return builder.finish()


# -- text -------------------------------------------------------------------


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _table(header: list[str], rows: list[list[Any]], left: int = 1, indent: str = "  ") -> list[str]:
    """The first `left` columns (labels) left-aligned, the others right-aligned."""
    cells = [header, *([_cell(x) for x in r] for r in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    out = []
    for r in cells:
        parts = [
            x.ljust(w) if i < left else x.rjust(w) for i, (x, w) in enumerate(zip(r, widths, strict=True))
        ]
        out.append((indent + "  ".join(parts)).rstrip())
    return out


def _of(n: int, scanned: int | None) -> str:
    """A count, and its share of the targets scanned when they are known."""
    return f"{n} ({100 * n / scanned:.1f}%)" if scanned else str(n)


def format_report(rep: dict[str, Any], max_tarpits: int = 50) -> str:
    """Human-readable text with aligned tables, then what their categories mean."""
    t = rep["totals"]
    keys: list[str] = rep["probe_keys"]
    pk = rep["per_key"]
    scan = rep.get("scan")
    out = ["zbanner-xdp liveness report (taxonomy of Bano et al., 2018)", ""]
    if scan is not None:
        out.append(
            f"Scan ({scan['metadata']}): {scan['addresses']} addresses x {scan['ports']} ports, "
            f"{scan['pairs']} (address, port) pairs in this shard: {scan['targets_per_key']} targets scanned "
            f"per probe key{'' if scan['exact'] else ' (about: shards or --max-targets split them)'}"
        )
        if scan["reason"] not in ("completed", "max-targets"):
            sent, planned = scan["probes_sent"], scan["probes_planned"]
            out.append(
                f"  the scan ended early ({scan['reason']}): {sent} of {planned} probes were sent, so the "
                "shares below are of targets planned, not probed"
            )
    reasons = ", ".join(f"{r}: {n}" for r, n in t["malformed_reasons"].items())
    out.append(
        f"Records: {t['records']} read, {t['repeats_ignored']} repeats ignored, "
        f"{t['tarpit_check_records']} tarpit checks, {t['malformed']} malformed lines skipped"
        + (f" ({reasons})" if reasons else "")
    )
    out.append(
        f"Targets: {t['targets']} distinct, {t['network_alive']} network-alive, "
        f"{t['router_icmp_only']} only reported unreachable by routers, "
        f"{t['found_only_via_icmp']} found only via their ICMP errors, "
        f"{t['found_only_via_rst']} only via RSTs"
    )
    if not keys:
        out += ["", "No probe keys: nothing to report."]
        return "\n".join(out) + "\n"

    levels = ["network-alive", "transport-active", "transport-alive", "app-active", "app-alive"]
    if scan is None:
        out += ["", "Liveness per probe key (distinct targets)"]
        out += _table(["probe key", *levels], [[k, *pk[k]["liveness"].values()] for k in keys])
    else:
        out += ["", "Liveness per probe key (distinct targets, and their share of the targets scanned)"]
        rows = [
            [k, pk[k]["scanned"], *(_of(n, pk[k]["scanned"]) for n in pk[k]["liveness"].values())]
            for k in keys
        ]
        out += _table(["probe key", "scanned", *levels], rows)

    out += ["", "Reply types (distinct targets)"]
    out += _table(
        [
            "probe key",
            "SYN-ACK",
            "zero-win",
            "RST",
            "RST-unvalidated",
            "UDP",
            "echo",
            "ICMP-target",
            "ICMP-router",
        ],
        [[k, *(v for name, v in pk[k]["replies"].items() if name != "icmp")] for k in keys],
    )

    icmp_rows = [
        [k, label, c["target"], c["router"]] for k in keys for label, c in pk[k]["replies"]["icmp"].items()
    ]
    if icmp_rows:
        out += ["", "ICMP errors (distinct targets, by who sent the error)"]
        out += _table(["probe key", "error", "target", "router"], icmp_rows, left=2)

    out += ["", "Unique coverage (targets found only ...)"]
    out += _table(
        ["probe key", "by this key", "via ICMP errors", "via RSTs"],
        [[k, *pk[k]["unique"].values()] for k in keys],
    )

    out += ["", "Retransmission gain"]
    rows = []
    for k in keys:
        r = pk[k]["retransmission"]
        added = "-" if r["added_percent"] is None else f"+{r['added_percent']:.2f}%"
        rows.append([k, r["found"], r["first_attempt"], r["retransmission_only"], added])
    out += _table(["probe key", "found", "first attempt", "retransmission only", "added"], rows)

    m = rep["matrix"]
    out += ["", "Cross-protocol P(active on B | active on A): row A, column B"]
    labels = [f"[{i + 1}]" for i in range(len(keys))]
    out += _table(
        ["A \\ B", "n(A)", *labels],
        [[f"{labels[a]} {k}", m["active"][a], *m["p"][a]] for a, k in enumerate(keys)],
    )

    tp = rep["tarpits"]
    ports = ",".join(map(str, tp["tcp_ports"])) or "none"
    out += [
        "",
        f"Tarpits (SYN-ACK on the check port and on every TCP port of the scan: {ports}): {tp['count']}"
        f" of {tp['check_port_synack']} that SYN-ACK'd the check port",
    ]
    shown = tp["addresses"][:max_tarpits]
    out += [f"  {a}" for a in shown]
    if len(tp["addresses"]) > len(shown):
        out.append(f"  ... and {len(tp['addresses']) - len(shown)} more (see --json)")
    out += ["", "What the liveness columns count"]
    width = max(len(name) for name, _ in DEFINITIONS)
    out += [f"  {name:<{width}}  {meaning}" for name, meaning in DEFINITIONS]
    out += [f"  {note}" for note in DEFINITION_NOTES]
    if scan is None:
        out.append("  Shares of the targets scanned: give the scan's summary, --metadata FILE.")
    return "\n".join(out) + "\n"


# -- PNG ----------------------------------------------------------------------


def _import_pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ReportError(PNG_NEEDS) from None
    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    return plt


def write_png(rep: dict[str, Any], path: str) -> None:
    """The cross-protocol matrix as a heatmap (the paper's Figure 5)."""
    plt = _import_pyplot()
    m = rep["matrix"]
    keys: list[str] = m["keys"]
    n = len(keys)
    side = max(4.0, 0.55 * n + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    try:
        if n:
            data = [[math.nan if x is None else x for x in row] for row in m["p"]]
            im = ax.imshow(data, vmin=0.0, vmax=1.0, cmap="viridis")
            ax.set_xticks(range(n))
            ax.set_xticklabels(keys, rotation=45, ha="right")
            ax.set_yticks(range(n))
            ax.set_yticklabels(keys)
            if n <= 20:
                for a in range(n):
                    for b in range(n):
                        v = m["p"][a][b]
                        if v is not None:
                            color = "black" if v > 0.6 else "white"
                            ax.text(b, a, f"{v:.2f}", ha="center", va="center", fontsize=8, color=color)
            fig.colorbar(im, ax=ax, label="P(active on B | active on A)")
            ax.set_xlabel("B")
            ax.set_ylabel("A")
        else:
            ax.text(0.5, 0.5, "no active targets", ha="center", va="center")
            ax.set_axis_off()
        ax.set_title("Cross-protocol liveness")
        save_png(fig, path)
    finally:
        plt.close(fig)


def save_png(fig: Any, path: str) -> None:
    """A figure as PNG to `path` ('-': stdout)."""
    fig.tight_layout()
    try:
        if path == "-":
            fig.savefig(sys.stdout.buffer, dpi=150, format="png")
            sys.stdout.buffer.flush()
        else:
            fig.savefig(path, dpi=150)
    except OSError as exc:
        raise ReportError(f"cannot write '{path}': {exc.strerror or exc}") from None


# -- command ------------------------------------------------------------------


@contextmanager
def open_results(path: str) -> Iterator[IO[bytes]]:
    """The results as a binary stream, gunzipped when it starts with gzip's magic bytes."""
    if path == "-":
        raw: IO[bytes] = sys.stdin.buffer
        own = False
    else:
        try:
            raw = open(path, "rb", buffering=1 << 20)  # noqa: SIM115 - closed below
        except OSError as exc:
            raise ReportError(f"cannot read '{path}': {exc.strerror or exc}") from None
        own = True
    try:
        try:
            magic = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
        except OSError as exc:
            raise ReportError(f"cannot read '{path}': {exc.strerror or exc}") from None
        if magic == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                yield gz  # type: ignore[misc]
        elif magic == ZSTD_MAGIC[:2] and raw.peek(4)[:4] == ZSTD_MAGIC:  # type: ignore[attr-defined]
            try:
                import zstandard
            except ImportError:
                raise ReportError(f"'{path}' is zstd: reading it needs {ZSTD_NEEDS}") from None
            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
            with io.BufferedReader(reader, 1 << 20) as zst:  # type: ignore[arg-type]
                yield zst
        else:
            yield raw
    finally:
        if own:
            raw.close()


def _check_writable(path: str) -> None:
    """Fail before a long read, not after, when an output cannot be created."""
    if path == "-":
        return
    if os.path.isdir(path):
        raise ReportError(f"cannot write '{path}': Is a directory")
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        raise ReportError(f"cannot write '{path}': No such file or directory")
    if not os.access(parent, os.W_OK) and not (os.path.exists(path) and os.access(path, os.W_OK)):
        raise ReportError(f"cannot write '{path}': Permission denied")


def _check_records(path: str, line: bytes) -> None:
    """The first line of a results file must be a full record: a file written with -f or as CSV is refused
    (one line, exit status 2) instead of being reported as nothing but malformed lines."""
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError:
        rec = None
    if not isinstance(rec, dict):
        raise ReportError(
            f"'{path}': not JSON lines (CSV?): report reads the records a scan writes as JSON lines"
        )
    missing = [f for f in REQUIRED_FIELDS if f not in rec]
    if missing:
        raise ReportError(
            f"'{path}': its records lack {', '.join(missing)} (written with -f?): report needs every field, "
            "as a scan writes them without -f"
        )


def feed(path: str) -> ReportBuilder:
    """A ReportBuilder fed every line of a results file (`report --blocks` reads its per-target state)."""
    builder = ReportBuilder()
    with open_results(path) as fh:
        try:
            checked = False
            for line in fh:
                if not checked and line.strip():
                    _check_records(path, line)
                    checked = True
                builder.add_line(line)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise ReportError(f"'{path}': corrupt or truncated gzip data ({exc})") from None
        except Exception as exc:
            if type(exc).__module__.startswith("zstandard"):  # its ZstdError
                raise ReportError(f"'{path}': corrupt or truncated zstd data ({exc})") from None
            raise
        except OSError as exc:
            raise ReportError(f"cannot read '{path}': {exc.strerror or exc}") from None
    return builder


def read_report(path: str) -> dict[str, Any]:
    return feed(path).finish()


# A scan summary is ~5 kB; this bounds what --metadata reads of a wrong file.
METADATA_MAX = 16 << 20


def read_metadata(path: str) -> dict[str, Any]:
    """What the report needs of a scan's summary (--metadata): the targets scanned, the denominators."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(METADATA_MAX + 1)
    except OSError as exc:
        raise ReportError(f"cannot read '{path}': {exc.strerror or exc}") from None
    try:
        doc = orjson.loads(raw) if len(raw) <= METADATA_MAX else None
    except orjson.JSONDecodeError:
        doc = None
    t = doc.get("targets") if isinstance(doc, dict) else None
    sent = doc.get("packets_sent") if isinstance(doc, dict) else None
    need = ("addresses", "this_shard", "ports", "probes_planned")
    if not isinstance(t, dict) or any(k not in t for k in need) or not isinstance(sent, dict):
        raise ReportError(
            f"'{path}': not a zbanner-xdp scan summary: give the file a scan's --metadata wrote"
        )
    assert isinstance(doc, dict)
    if doc.get("reason") == "running":
        raise ReportError(f"'{path}': the scan is still running, or died: its summary was never written")
    try:
        n_ports = len(parse_ports(t["ports"])) if t["ports"] else 1
    except (TargetError, TypeError, AttributeError):
        raise ReportError(f"'{path}': bad targets.ports {t['ports']!r}") from None
    options = doc.get("options") if isinstance(doc.get("options"), dict) else {}
    return {
        "metadata": path,
        "addresses": t["addresses"],
        "ports": n_ports,
        "pairs": t["this_shard"],
        "targets_per_key": round(t["this_shard"] / n_ports),
        "exact": options.get("shards", 1) == 1 and options.get("max_targets") is None,
        "reason": doc.get("reason"),
        "probes_sent": sent.get("probes"),
        "probes_planned": t["probes_planned"],
    }


def run_report(
    path: str, json_out: str | None, png_out: str | None, metadata: str | None = None, blocks: bool = False
) -> int:
    """`zbanner-xdp report PATH [--json OUT] [--png OUT] [--metadata FILE] [--blocks]`: text on stdout (or
    JSON with --json -); with the scan's summary, every count also as a share of the targets scanned.

    --blocks: the /24 blocks view (blocks.py) instead of the liveness taxonomy, in the same three forms."""
    if png_out == "-" and json_out == "-":
        raise ReportError("--json - and --png - would share stdout: give one of them a file")
    scan = read_metadata(metadata) if metadata is not None else None
    if png_out is not None:
        _import_pyplot()
        _check_writable(png_out)
    if json_out is not None:
        _check_writable(json_out)
    if blocks:
        from . import blocks as blocks_mod

        rep = blocks_mod.blocks_of(feed(path))
        text, png = blocks_mod.format_blocks, blocks_mod.write_png
    else:
        rep, text, png = read_report(path), format_report, write_png
        if scan is not None:
            rep["scan"] = scan
            for entry in rep["per_key"].values():
                entry["scanned"] = scan["targets_per_key"]
    blob = orjson.dumps(rep, option=orjson.OPT_INDENT_2) + b"\n"
    if json_out == "-":
        sys.stdout.buffer.write(blob)
        sys.stdout.buffer.flush()
    elif png_out != "-":  # (stdout is the PNG's: the text would corrupt it)
        sys.stdout.write(text(rep))
        sys.stdout.flush()
    if json_out not in (None, "-"):
        try:
            with open(json_out, "wb") as fh:  # type: ignore[arg-type]
                fh.write(blob)
        except OSError as exc:
            raise ReportError(f"cannot write '{json_out}': {exc.strerror or exc}") from None
    if png_out is not None:
        png(rep, png_out)
    return 0
