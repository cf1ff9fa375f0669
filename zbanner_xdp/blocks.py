"""`zbanner-xdp report --blocks`: alive addresses per /24 block, per probe key, and their distribution.

The view of Bano et al.'s Figure 2b ("Scanning the Internet for Liveness"): how
densely the /24 blocks that answer at all are populated. An address counts as
alive on a probe key when it is network-alive there in the liveness report's
sense (report.py: any reply sent by the target itself; router ICMP errors,
unvalidated RSTs, repeats and tarpit-check answers do not count), so both
reports agree on every number. "any" is the union over the keys.

Only blocks with at least one alive address exist in the results, so the
distribution is over those blocks (1..256 alive addresses each).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from .report import ANY, STRIDE, ReportBuilder, _import_pyplot, _table, save_png

SCHEMA = "zbanner-xdp-blocks/1"
ANY_KEY = "any"
# Text bins of alive addresses per block (the JSON has the full 1..256 histogram).
BINS = ((1, 1), (2, 3), (4, 7), (8, 15), (16, 31), (32, 63), (64, 127), (128, 255), (256, 256))


def _block_name(block: int) -> str:
    a = block << 8
    return f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.0/24"


def _key_name(key: tuple[str, int | None]) -> str:
    probe, port = key
    return probe if port is None else f"{probe}/{port}"


def _summary(per_block: Counter[int]) -> dict[str, Any]:
    counts = np.array(sorted(per_block.values()), dtype=np.int64)
    hist = np.bincount(counts, minlength=257)[1:] if len(counts) else np.zeros(256, np.int64)
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
    """The blocks report of a fed ReportBuilder (its per-target state is the liveness report's)."""
    keys = list(builder._key_ids)  # index = key id
    order = sorted(range(len(keys)), key=lambda k: (keys[k][0], -1 if keys[k][1] is None else keys[k][1]))
    per_key: list[Counter[int]] = [Counter() for _ in keys]
    union: Counter[int] = Counter()
    for addr, state in builder._targets.items():
        block = addr >> 8
        alive = False
        for kid in range(len(keys)):
            if (state >> (kid * STRIDE)) & ANY:
                per_key[kid][block] += 1
                alive = True
        if alive:
            union[block] += 1
    return {
        "schema": SCHEMA,
        "level": "network_alive",
        "probe_keys": [_key_name(keys[k]) for k in order],
        "keys": {_key_name(keys[k]): _summary(per_key[k]) for k in order},
        ANY_KEY: _summary(union),
    }


def format_blocks(rep: dict[str, Any]) -> str:
    names = [*rep["probe_keys"], ANY_KEY]
    data = {**rep["keys"], ANY_KEY: rep[ANY_KEY]}
    out = [
        "zbanner-xdp /24 blocks: network-alive addresses per block (Bano et al. 2018, Figure 2b)",
        "",
    ]
    head = ["probe key", "blocks", "alive", "mean", "p10", "p50", "p90", "full /24s"]
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
    out += ["", "Blocks by alive addresses per /24"]
    bhead = ["probe key", *(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in BINS)]
    brows = [[k, *(str(sum(data[k]["histogram"][lo - 1 : hi])) for lo, hi in BINS)] for k in names]
    out += _table(bhead, brows)
    return "\n".join(out) + "\n"


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
        ax.set_title("Alive addresses per /24 block")
        if not drawn:
            ax.text(0.5, 0.5, "no alive addresses", ha="center", va="center")
            ax.set_axis_off()
        else:
            ax.set_xlim(0.5, 256.5)
            ax.set_xlabel("alive addresses in the /24 block")
            ax.set_ylabel("/24 blocks")
            ax.legend(fontsize=8)
        save_png(fig, path)
    finally:
        plt.close(fig)
