"""`zbanner-xdp report --blocks`: alive addresses per /24 block, per probe key, and their distribution.

The view of Bano et al.'s Figure 2b ("Scanning the Internet for Liveness"): how
densely the /24 blocks that answer at all are populated. An address counts as
alive on a probe key when it is network-alive there in the liveness report's
sense (report.py: any reply sent by the target itself; router ICMP errors,
unvalidated RSTs, repeats and tarpit-check answers do not count), so both
reports agree on every number. "any" is the union over the keys.

Only blocks with at least one alive address exist in the results, so the
distribution is over those blocks (1..256 alive addresses each).

IPv6 targets (a mixed file) are grouped per /64, the IPv6 subnet: the unit a
/24 stands for in IPv4, a site's LAN (a /48 is a whole site, a /120 no unit
anybody assigns). They get a section of their own, "ipv6", of the same shape;
a /64 holds far more than 256 addresses, so its histogram's last bin counts
blocks with 256 or more alive, and "full_blocks" those blocks. The IPv4
section counts IPv4 targets only.

This module also holds the default IPv6 blocklist, DEFAULT_BLOCKLIST6 (the
IANA IPv6 special-purpose registry; targets.default_blocklist6() reads it), the
counterpart of targets.DEFAULT_BLOCKLIST for IPv4.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from typing import Any

import numpy as np

from .report import ANY, STRIDE, V6, ReportBuilder, _import_pyplot, _table, save_png

SCHEMA = "zbanner-xdp-blocks/1"
ANY_KEY = "any"
# Text bins of alive addresses per block (the JSON has the full 1..256 histogram).
BINS = ((1, 1), (2, 3), (4, 7), (8, 15), (16, 31), (32, 63), (64, 127), (128, 255), (256, 256))


V6_BLOCK = 64  # IPv6 targets are grouped per /64 (module docstring)


def _block_name(block: int) -> str:
    """A block key's text: an IPv4 /24, or (V6 set) an IPv6 /64."""
    if block & V6:
        return f"{ipaddress.IPv6Address((block ^ V6) << (128 - V6_BLOCK))}/{V6_BLOCK}"
    a = block << 8
    return f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.0/24"


def _block_of(addr: int) -> int:
    """The block key of a report target key (report._addr): its /24, or its /64 with V6 set."""
    if addr & V6:
        return V6 | ((addr ^ V6) >> (128 - V6_BLOCK))
    return addr >> 8


def _key_name(key: tuple[str, int | None]) -> str:
    probe, port = key
    return probe if port is None else f"{probe}/{port}"


def _summary(per_block: Counter[int]) -> dict[str, Any]:
    counts = np.array(sorted(per_block.values()), dtype=np.int64)
    # An IPv6 /64 may hold more than 256: the last bin is "256 or more" (for a /24, exactly 256).
    binned = np.minimum(counts, 256)
    hist = np.bincount(binned, minlength=257)[1:] if len(counts) else np.zeros(256, np.int64)
    q = (lambda p: float(np.percentile(counts, p))) if len(counts) else (lambda p: None)
    return {
        "blocks": len(counts),
        "addresses": int(counts.sum()),
        "mean": round(float(counts.mean()), 3) if len(counts) else None,
        "quantiles": {f"p{p}": q(p) for p in (10, 25, 50, 75, 90)},
        "full_blocks": int(hist[255]),
        # histogram[i]: blocks with exactly i + 1 alive addresses.
        "histogram": hist.tolist(),
        "per_block": {_block_name(b): n for b, n in sorted(per_block.items())},
    }


def blocks_of(builder: ReportBuilder) -> dict[str, Any]:
    """The blocks report of a fed ReportBuilder (its per-target state is the liveness report's); with
    an "ipv6" section of the same shape (per /64) when there are IPv6 targets."""
    keys = list(builder._key_ids)  # index = key id
    order = sorted(range(len(keys)), key=lambda k: (keys[k][0], -1 if keys[k][1] is None else keys[k][1]))
    # Per family (4, 6): per key id, then the union.
    per_key: dict[int, list[Counter[int]]] = {f: [Counter() for _ in keys] for f in (4, 6)}
    union: dict[int, Counter[int]] = {4: Counter(), 6: Counter()}
    for addr, state in builder._targets.items():
        family = 6 if addr & V6 else 4
        block = _block_of(addr)
        alive = False
        for kid in range(len(keys)):
            if (state >> (kid * STRIDE)) & ANY:
                per_key[family][kid][block] += 1
                alive = True
        if alive:
            union[family][block] += 1

    def section(family: int) -> dict[str, Any]:
        return {
            "probe_keys": [_key_name(keys[k]) for k in order],
            "keys": {_key_name(keys[k]): _summary(per_key[family][k]) for k in order},
            ANY_KEY: _summary(union[family]),
        }

    rep = {"schema": SCHEMA, "level": "network_alive", **section(4)}
    if any(addr & V6 for addr in builder._targets):
        rep["ipv6"] = {"block": f"/{V6_BLOCK}", **section(6)}
    return rep


def format_blocks(rep: dict[str, Any]) -> str:
    out = [
        "zbanner-xdp /24 blocks: network-alive addresses per block (Bano et al. 2018, Figure 2b)",
        "",
    ]
    out += _format_section(rep, "/24")
    if "ipv6" in rep:
        out += ["", f"IPv6 targets, per {rep['ipv6']['block']} block", ""]
        out += _format_section(rep["ipv6"], rep["ipv6"]["block"])
    return "\n".join(out) + "\n"


def _format_section(rep: dict[str, Any], block: str) -> list[str]:
    names = [*rep["probe_keys"], ANY_KEY]
    data = {**rep["keys"], ANY_KEY: rep[ANY_KEY]}
    v6 = block != "/24"
    out: list[str] = []
    head = [
        "probe key",
        "blocks",
        "alive",
        "mean",
        "p10",
        "p50",
        "p90",
        f"{block}s with 256+" if v6 else "full /24s",
    ]
    rows = []
    for k in names:
        s = data[k]
        qs = s["quantiles"]
        rows.append(
            [
                k,
                str(s["blocks"]),
                str(s["addresses"]),
                "-" if s["mean"] is None else f"{s['mean']:.1f}",
                *("-" if qs[p] is None else f"{qs[p]:g}" for p in ("p10", "p50", "p90")),
                str(s["full_blocks"]),
            ]
        )
    out += _table(head, rows)
    out += ["", f"Blocks by alive addresses per {block}"]
    bins = [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in BINS]
    if v6:
        bins[-1] = "256+"
    brows = [[k, *(str(sum(data[k]["histogram"][lo - 1 : hi])) for lo, hi in BINS)] for k in names]
    out += _table(["probe key", *bins], brows)
    return out


def write_png(rep: dict[str, Any], path: str) -> None:
    """A histogram per probe key: how many /24 blocks have 1..256 alive addresses."""
    plt = _import_pyplot()
    names = [*rep["probe_keys"], ANY_KEY]
    data = {**rep["keys"], ANY_KEY: rep[ANY_KEY]}
    fig, ax = plt.subplots(figsize=(8, 4.5))
    try:
        x = np.arange(1, 257)
        drawn = False
        for k in names:
            h = np.asarray(data[k]["histogram"])
            if h.sum():
                ax.step(x, h, where="mid", label=k, linewidth=2.0 if k == ANY_KEY else 1.2)
                drawn = True
        v6 = rep.get("ipv6")
        if v6 is not None:  # dashed: IPv6 /64 blocks (the last bin: 256 or more)
            for k in [*v6["probe_keys"], ANY_KEY]:
                h = np.asarray((v6[ANY_KEY] if k == ANY_KEY else v6["keys"][k])["histogram"])
                if h.sum():
                    ax.step(x, h, where="mid", linestyle="--", label=f"{k} (IPv6 {v6['block']})")
                    drawn = True
        ax.set_title("Alive addresses per /24 block" + (" (dashed: per IPv6 /64)" if v6 is not None else ""))
        if not drawn:
            ax.text(0.5, 0.5, "no alive addresses", ha="center", va="center")
            ax.set_axis_off()
        else:
            ax.set_xlim(0.5, 256.5)
            ax.set_xlabel("alive addresses in the block")
            ax.set_ylabel("blocks")
            ax.legend(fontsize=8)
        save_png(fig, path)
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------- the default IPv6 blocklist

# The IANA IPv6 Special-Purpose Address Registry, https://www.iana.org/assignments/iana-ipv6-special-registry
# (RFC 6890 as amended by RFC 8190), every entry as of 2025 (RFC 9637's 3fff::/20 and RFC 9602's 5f00::/16
# came in 2024, RFC 9780's dummy prefix in 2025): (address block, name, RFC, globally reachable; None where
# the registry says N/A).
IPV6_SPECIAL_PURPOSE: tuple[tuple[str, str, str, bool | None], ...] = (
    ("::1/128", "Loopback Address", "RFC 4291", False),
    ("::/128", "Unspecified Address", "RFC 4291", False),
    ("::ffff:0:0/96", "IPv4-mapped Address", "RFC 4291", False),
    ("64:ff9b::/96", "IPv4-IPv6 Translat.", "RFC 6052", True),
    ("64:ff9b:1::/48", "IPv4-IPv6 Translat.", "RFC 8215", False),
    ("100::/64", "Discard-Only Address Block", "RFC 6666", False),
    ("100:0:0:1::/64", "Dummy IPv6 Prefix", "RFC 9780", False),
    ("2001::/23", "IETF Protocol Assignments", "RFC 2928", False),
    ("2001::/32", "TEREDO", "RFC 4380, RFC 8190", None),
    ("2001:1::1/128", "Port Control Protocol Anycast", "RFC 7723", True),
    ("2001:1::2/128", "Traversal Using Relays around NAT Anycast", "RFC 8155", True),
    ("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast", "RFC 9665", True),
    ("2001:2::/48", "Benchmarking", "RFC 5180, errata 1752", False),
    ("2001:3::/32", "AMT", "RFC 7450", True),
    ("2001:4:112::/48", "AS112-v6", "RFC 7535", True),
    ("2001:10::/28", "Deprecated (previously ORCHID)", "RFC 4843", None),
    ("2001:20::/28", "ORCHIDv2", "RFC 7343", True),
    ("2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs) Prefix", "RFC 9374", True),
    ("2001:db8::/32", "Documentation", "RFC 3849", False),
    ("2002::/16", "6to4", "RFC 3056", None),
    ("2620:4f:8000::/48", "Direct Delegation AS112 Service", "RFC 7534", True),
    ("3fff::/20", "Documentation", "RFC 9637", False),
    ("5f00::/16", "Segment Routing (SRv6) SIDs", "RFC 9602", False),
    ("fc00::/7", "Unique-Local", "RFC 4193, RFC 8190", False),
    ("fe80::/10", "Link-Local Unicast", "RFC 4291", False),
)
# Blocked besides the registry's rule (below), as the IPv4 list blocks 224.0.0.0/4 from outside its registry.
IPV6_ALSO_BLOCKED: tuple[tuple[str, str], ...] = (
    ("ff00::/8", "multicast (RFC 4291): never a unicast target"),
    # Globally reachable, but each address embeds an IPv4 one: a scan there is an IPv4 scan through
    # somebody's NAT64 translator, out of the IPv4 blocklist's reach.
    ("64:ff9b::/96", "IPv4-IPv6 translation (RFC 6052): IPv4 addresses in disguise"),
)


def _default_blocklist6() -> tuple[str, ...]:
    """Every registry block not globally reachable (False or N/A, as ZMap's IPv4 list leaves out the
    globally reachable entries), minus the globally reachable blocks inside them (the registry's more
    specific entry decides: 2001:3::/32 AMT is scannable though 2001::/23 is not), plus
    IPV6_ALSO_BLOCKED; as disjoint CIDRs in address order."""
    also = [ipaddress.IPv6Network(net) for net, _why in IPV6_ALSO_BLOCKED]
    blocked = [
        ipaddress.IPv6Network(net) for net, _n, _r, reachable in IPV6_SPECIAL_PURPOSE if reachable is not True
    ]
    reachable = [ipaddress.IPv6Network(net) for net, _n, _r, ok in IPV6_SPECIAL_PURPOSE if ok is True]
    pieces = list(ipaddress.collapse_addresses(blocked))
    for hole in reachable:
        if hole in also:
            continue
        out: list[ipaddress.IPv6Network] = []
        for piece in pieces:
            if hole.subnet_of(piece):
                out += piece.address_exclude(hole)
            else:
                out.append(piece)
        pieces = out
    return tuple(str(n) for n in ipaddress.collapse_addresses([*pieces, *also]))


DEFAULT_BLOCKLIST6: tuple[str, ...] = _default_blocklist6()
