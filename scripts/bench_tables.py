"""Tables and figures of the benchmark, from its results files alone (no root, no lab).

scripts/bench.py writes one JSON file per scenario into a results directory (`make bench`:
docs/bench/, committed). This module turns those files into the markdown tables of bench.md and
of the README's "Measured" section, and into the open-ratio PNGs, so that every figure shown is
computed from a committed file and README and results cannot drift:

    python scripts/bench_tables.py --readme          # rewrite the README's tables from docs/bench
    python scripts/bench_tables.py --check-readme    # exit 1 if the README differs (a unit test runs it)

In the README each generated block sits between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`;
the text outside the markers is free prose and states no figure.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "bench"
README = ROOT / "README.md"

# Scenario files, in the order bench.md shows them.
SCENARIOS = (
    "syn-real",
    "syn-sink",
    "syn-emu",
    "banner",
    "banner-real",
    "masscan-explain",
    "open-ratio",
    "rss",
    "profile",
)
TOOLS_OPEN_RATIO = ("zbanner-xdp", "masscan", "zmap+nmap")


# --------------------------------------------------------------------------- statistics


def valid(runs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs that count: no error, and not flagged invalid (e.g. masscan killed after hanging)."""
    return [r for r in runs if not r.get("error") and not r.get("invalid")]


def summarize(runs: list[dict[str, Any]], keys: Iterable[str]) -> dict[str, dict[str, float | int | None]]:
    """Median, min, max and count of each numeric key over the valid runs."""
    ok = valid(runs)
    out: dict[str, dict[str, float | int | None]] = {}
    for key in keys:
        vals = [
            r[key] for r in ok if isinstance(r.get(key), int | float) and not isinstance(r.get(key), bool)
        ]
        if not vals:
            out[key] = {"median": None, "min": None, "max": None, "n": 0}
            continue
        med = statistics.median(vals)
        if all(isinstance(v, int) for v in vals) and float(med).is_integer():
            med = int(med)
        out[key] = {"median": med, "min": min(vals), "max": max(vals), "n": len(vals)}
    return out


# --------------------------------------------------------------------------- formatting


def _num(x: float | int | None, digits: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, int) or float(x).is_integer() and digits == 0:
        return f"{int(x):,}"
    return f"{x:,.{digits}f}"


def _rate(x: float | int | None) -> str:
    """Packets per second the way people say them: 712k, 4.9M."""
    if x is None:
        return "–"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.0f}k"
    return f"{x:.0f}"


def cell(summary: dict[str, Any], key: str, fmt: Callable[[Any], str] = _num) -> str:
    """`median (min–max)` over the runs; just the median when they all agree."""
    s = summary.get(key) or {}
    if not s or s.get("median") is None:
        return "–"
    med, lo, hi = fmt(s["median"]), fmt(s["min"]), fmt(s["max"])
    if lo == hi or s.get("n", 0) < 2:  # equal as shown, e.g. RSS within the same MiB
        return med
    return f"{med} ({lo}–{hi})"


def of(summary: dict[str, Any], key: str, expected: int | None) -> str:
    """A count against its ground truth: `65,024 of 65,024`, with the runs' spread if any."""
    c = cell(summary, key, lambda v: _num(v, 0))
    return c if expected is None else f"{c} of {expected:,}"


def mib(summary: dict[str, Any], key: str = "peak_rss_kib") -> str:
    return cell(summary, key, lambda v: f"{v / 1024:.0f}")


def _rel(results_dir: Path) -> str:
    try:
        return str(results_dir.resolve().relative_to(ROOT))
    except ValueError:
        return str(results_dir)


def _source(res: dict[str, Any], name: str, results_dir: Path) -> str:
    load = res.get("load", {})
    before = load.get("before", {}).get("loadavg")
    after = load.get("after", {}).get("loadavg")
    la = ""
    if before and after:
        la = f"; 1-min load average {before[0]:.2f} before, {after[0]:.2f} after"
    return (
        f"_From `{_rel(results_dir)}/{name}.json` ({res.get('date', '?')}, "
        f"{res.get('runs_per_figure', '?')} runs per figure, median (min–max){la})._"
    )


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    return res.get("rows", [])


# --------------------------------------------------------------------------- one table per scenario


def table_syn_real(res: dict[str, Any]) -> list[str]:
    return _syn_real(res) + hung_note(res)


def _syn_real(res: dict[str, Any]) -> list[str]:
    exp = res["ground_truth"]["synack"]
    total = res["ground_truth"]["targets"]
    rows = [
        [r["label"], cell(r["summary"], "wall_s"), of(r["summary"], "open_found", exp), mib(r["summary"])]
        for r in _rows(res)
    ]
    return _table(
        [
            f"SYN scan, {total:,} addresses, port 80 (kernel responders), cooldown 2 s",
            "wall s",
            "open found",
            "peak RSS MiB",
        ],
        rows,
    )


def table_syn_sink(res: dict[str, Any]) -> list[str]:
    n = res["ground_truth"]["probes"]
    rows = [
        [
            r["label"],
            cell(r["summary"], "send_pps", _rate),
            cell(r["summary"], "delivered_pct", lambda v: f"{v:.2f} %"),
        ]
        for r in _rows(res)
    ]
    return _table([f"Send path alone: {n:,} SYNs into a silent range", "sent pps", "delivered"], rows)


def table_syn_emu(res: dict[str, Any]) -> list[str]:
    rows = []
    for r in _rows(res):
        exp = r["expected_open"]
        rows.append(
            [
                r["label"],
                cell(r["summary"], "send_pps", _rate),
                cell(r["summary"], "delivered_pct", lambda v: f"{v:.2f} %"),
                of(r["summary"], "open_found", exp),
            ]
        )
    return _table(
        ["SYN scan answered by the XDP emulator (50 % open)", "sent pps", "delivered", "open found"], rows
    )


def table_banner(res: dict[str, Any]) -> list[str]:
    n = res["ground_truth"]["targets"]
    rows = [
        [
            r["label"],
            of(r["summary"], "banners", r["expected_banners"]),
            cell(r["summary"], "banners_per_s", _rate),
            cell(r["summary"], "delivered_pct", lambda v: f"{v:.2f} %"),
        ]
        for r in _rows(res)
    ]
    head = f"Banners from the XDP emulator: SSH, {n:,} targets, --rate 0, unless the row says otherwise"
    return _table([head, "banners", "banners/s", "SYNs delivered"], rows)


def table_banner_real(res: dict[str, Any]) -> list[str]:
    gt = res["ground_truth"]
    lines = _table(
        [
            f"HTTP banners from real nginx, {gt['targets']:,} addresses, cooldown/wait {res['cooldown_s']} s",
            "wall s",
            "banners",
            "peak RSS MiB",
        ],
        [
            [
                r["label"],
                cell(r["summary"], "wall_s"),
                of(r["summary"], "banners", gt["banners"]),
                mib(r["summary"]),
            ]
            for r in _rows(res)
        ],
    )
    lines += hung_note(res)
    lines += ["", masscan_sanity_line(res.get("masscan_sanity"))]
    return lines


def hung_note(res: dict[str, Any]) -> list[str]:
    """Runs masscan did not finish (killed 30 s after its --wait; left out of the figures)."""
    runs = [run for r in res.get("rows", []) for run in r.get("runs", []) if "hung" in run]  # masscan's
    hung = sum(1 for run in runs if run["hung"])
    total = len(runs)
    if not total:
        return []
    return [
        "",
        f"masscan runs that did not exit 30 s after their --wait (killed, not counted): {hung} of {total}.",
    ]


def masscan_sanity_line(s: dict[str, Any] | None) -> str:
    if not s:
        return "masscan sanity check: not run, so no masscan banner figure is published."
    verdict = "passed" if s["passed"] else "FAILED: no masscan banner figure is published"
    return (
        f"masscan sanity check (run by the bench before any masscan banner figure): {s['banners']:,} of "
        f"{s['expected']:,} nginx banners at {s['rate']:,} pps, threshold {s['threshold_pct']} %: {verdict}."
    )


def table_masscan_explain(res: dict[str, Any]) -> list[str]:
    keys = [
        ("synack_on_wire", "SYN-ACKs on the wire"),
        ("synack_seen", "SYN-ACKs masscan saw"),
        ("server_closed_first", "server closed before the request"),
        ("request_sent", "requests sent"),
        ("response_on_wire", "responses on the wire"),
        ("banners", "banners written"),
    ]
    gt = res["ground_truth"]
    rows = [[r["label"], *(cell(r["summary"], k, lambda v: _num(v, 0)) for k, _ in keys)] for r in _rows(res)]
    lines = _table(
        [
            f"masscan --banners, {gt['targets']:,} addresses ({gt['banners']:,} serve HTTP), "
            f"{_rate(res['rate'])} pps",
            *(h for _, h in keys),
        ],
        rows,
    )
    delays = [run["hello_delay_s"] for r in _rows(res) for run in valid(r["runs"])
              if (run.get("hello_delay_s") or {}).get("median") is not None]  # fmt: skip
    if delays:
        lines += [
            "",
            "masscan's wait between the SYN-ACK and its request, per connection (captures, all runs): "
            f"{min(d['min'] for d in delays):.1f}–{max(d['max'] for d in delays):.1f} s, per-run medians "
            f"{min(d['median'] for d in delays):.1f}–{max(d['median'] for d in delays):.1f} s.",
        ]
    ring = res.get("pcap_ring") or {}
    if ring:
        lines += [
            "",
            "libpcap receive ring masscan asked for (PACKET_RX_RING, read with gdb): "
            + "; ".join(
                f"{k}: {v['frame_nr']:,} frames of {v['frame_size']:,} bytes" for k, v in ring.items()
            )
            + ".",
        ]
    lines += hung_note(res)
    return lines


def table_open_ratio(res: dict[str, Any]) -> list[str]:
    by = {(r["open_pct"], r["tool"]): r for r in res["rows"]}
    pcts = sorted({r["open_pct"] for r in res["rows"]})
    tools = [t for t in TOOLS_OPEN_RATIO if any(k[1] == t for k in by)]
    header = [
        "open %",
        *(f"{t}: wall s" for t in tools),
        *(f"{t}: banners" for t in tools),
        *(f"{t}: peak RSS MiB" for t in tools),
    ]
    rows = []
    for p in pcts:
        row = [str(p)]
        for field in ("wall_s", "banners", "peak_rss_kib"):
            for t in tools:
                r = by.get((p, t))
                if r is None:
                    row.append("–")
                elif field == "banners":
                    row.append(of(r["summary"], "banners", r["expected_banners"]))
                elif field == "peak_rss_kib":
                    row.append(mib(r["summary"]))
                else:
                    row.append(cell(r["summary"], "wall_s"))
        rows.append(row)
    lines = _table(header, rows)
    rates = res.get("rates", {})
    if rates:
        lines += [
            "",
            "Rates: the highest at which each tool got, on the 100 %-open set, as many banners as at "
            "its slowest rate (its ceiling; one run per rate, from fast to slow): "
            + "; ".join(
                f"{t} `{_rate_arg(v['chosen'])}` (ceiling {v.get('ceiling')} of {v.get('expected')})"
                for t, v in rates.items()
            )
            + ".",
        ]
    lines += hung_note(res)
    lines += ["", masscan_sanity_line(res.get("masscan_sanity"))]
    return lines


def _rate_arg(rate: str) -> str:
    """A rate as the tool was given it: 0 is "as fast as possible" for zbanner-xdp and ZMap."""
    return "0 (unlimited)" if rate == "0" else (_rate(int(rate)) if rate.isdigit() else rate)


def table_rss(res: dict[str, Any]) -> list[str]:
    rows = [[r["label"], mib(r["summary"])] for r in _rows(res)]
    return _table(["zbanner-xdp, --rate 0", "peak RSS MiB"], rows)


def table_profile(res: dict[str, Any]) -> list[str]:
    n = res["ground_truth"]["targets"]

    def ns(summary: dict[str, Any], key: str) -> str:
        return cell(summary, key, lambda x: f"{x:,.0f}")

    rows = []
    for r in _rows(res):
        s = r["summary"]
        rows.append(
            [
                r["label"],
                cell(s, "banners_per_s", _rate),
                ns(s, "machine_busy_ns_per_banner"),
                ns(s, "machine_user_ns_per_banner"),
                ns(s, "machine_system_ns_per_banner"),
                ns(s, "machine_softirq_ns_per_banner"),
                ns(s, "scanner_user_ns_per_banner"),
                ns(s, "scanner_system_ns_per_banner"),
                f"{ns(s, 'recv_ns_per_banner')} ({ns(s, 'recv_ns_per_run')} a run)",
                f"{ns(s, 'gen_ns_per_banner')} ({ns(s, 'gen_ns_per_run')} a SYN)",
                ns(s, "emu_ns_per_banner"),
            ]
        )
    lines = _table(
        [
            f"SSH banners, emulator, {n:,} targets, 100 % open, `--rate 0`; ns per banner",
            "banners/s",
            "CPU, both cores",
            "user",
            "system",
            "softirq",
            "scanner user",
            "scanner system",
            "`xdp_recv`",
            "`xdp_gen`",
            "emulator (target side)",
        ],
        rows,
    )
    for label, top in (res.get("perf_top") or {}).items():
        shown = [t for t in top if "pct" in t][:8]
        if shown:
            lines += [
                "",
                f"perf, {label} (one more run, every CPU, share of the busy samples): "
                + "; ".join(f"{t['pct']:.1f} % {t['comm']} `{t['symbol']}`" for t in shown),
            ]
    for label, top in (res.get("py_spy_top") or {}).items():
        shown = [t for t in top if "pct" in t][:8]
        if shown:
            lines += [
                "",
                f"py-spy, {label} (one more run, the scanner's threads on CPU): "
                + "; ".join(f"{t['pct']:.1f} % `{t['function']}`" for t in shown),
            ]
    return lines


TABLES: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "syn-real": table_syn_real,
    "syn-sink": table_syn_sink,
    "syn-emu": table_syn_emu,
    "banner": table_banner,
    "banner-real": table_banner_real,
    "masscan-explain": table_masscan_explain,
    "open-ratio": table_open_ratio,
    "rss": table_rss,
    "profile": table_profile,
}


def load(results_dir: Path, name: str) -> dict[str, Any] | None:
    path = results_dir / f"{name}.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    if name == "open-ratio":
        # open-ratio.json is the list of rows the issue asks for; its context lives beside it.
        meta_path = results_dir / "open-ratio-meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        return {**meta, "rows": data}
    return data


def block(results_dir: Path, name: str) -> list[str]:
    res = load(results_dir, name)
    if res is None:
        return [f"_No results file `{_rel(results_dir)}/{name}.json` yet: no figure._"]
    return [_source(res, name, results_dir), "", *TABLES[name](res)]


def bench_md(results_dir: Path) -> str:
    lines = [
        "# zbanner-xdp benchmark",
        "",
        "Generated by scripts/bench_tables.py from the JSON files here.",
        "",
    ]
    for name in SCENARIOS:
        if (results_dir / f"{name}.json").exists():
            lines += [f"## {name}", "", *block(results_dir, name), ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- README


_MARK = re.compile(r"(<!-- bench:([a-z-]+) -->\n)(.*?)(<!-- /bench:\2 -->)", re.S)


def render_readme(text: str, results_dir: Path) -> str:
    def sub(m: re.Match[str]) -> str:
        return m.group(1) + "\n".join(block(results_dir, m.group(2))) + "\n" + m.group(4)

    return _MARK.sub(sub, text)


# ------------------------------------------------------------------- figures (paper 5.4, Figs 10-11)


def plot_open_ratio(results_dir: Path) -> list[Path]:
    """Duration and memory against the share of open targets, one line per tool, min–max as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = load(results_dir, "open-ratio")
    if res is None:
        return []
    written = []
    for key, ylabel, fname, scale in (
        ("wall_s", "scan duration (s)", "open-ratio-duration.png", 1.0),
        ("peak_rss_kib", "peak RSS of the whole pipeline (MiB)", "open-ratio-memory.png", 1 / 1024),
    ):
        fig, ax = plt.subplots(figsize=(6, 4))
        for tool, marker in zip(TOOLS_OPEN_RATIO, ("o", "s", "^"), strict=True):
            rows = sorted((r for r in res["rows"] if r["tool"] == tool), key=lambda r: r["open_pct"])
            pts = [
                (r["open_pct"], r["summary"][key]) for r in rows if r["summary"][key]["median"] is not None
            ]
            if not pts:
                continue
            xs = [p for p, _ in pts]
            med = [s["median"] * scale for _, s in pts]
            lo = [(s["median"] - s["min"]) * scale for _, s in pts]
            hi = [(s["max"] - s["median"]) * scale for _, s in pts]
            ax.errorbar(xs, med, yerr=[lo, hi], marker=marker, capsize=3, label=tool)
        ax.set_xlabel("known-open targets (%)")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.set_xticks(range(0, 101, 10))
        ax.grid(alpha=0.3)
        ax.legend()
        n = res.get("targets")
        ax.set_title(f"{n:,} targets, port 80, veth lab" if n else "veth lab")
        fig.tight_layout()
        path = results_dir / fname
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=DOCS, help="results directory (default: docs/bench)")
    ap.add_argument("--readme", action="store_true", help="rewrite the README's generated tables")
    ap.add_argument("--check-readme", action="store_true", help="exit 1 if the README's tables are stale")
    ap.add_argument("--plots", action="store_true", help="(re)draw the open-ratio PNGs")
    args = ap.parse_args(argv)
    if args.check_readme:
        text = README.read_text()
        if render_readme(text, args.results) != text:
            print(
                "README.md: the Measured tables differ from docs/bench (run scripts/bench_tables.py --readme)"
            )
            return 1
        return 0
    if args.readme:
        README.write_text(render_readme(README.read_text(), args.results))
    if args.plots:
        for p in plot_open_ratio(args.results):
            print(f"written: {p}")
    if not (args.readme or args.plots):
        print(bench_md(args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
