"""`make bench`: zbanner-xdp against ZMap and masscan on the built-in lab.

A script that prints figures (not a timed test). Every run happens inside
the lab's scanner namespace, against lab addresses only; each figure is the
median of --runs runs. Results: bench-results/bench.json and bench.md.

Scenarios (issue "Speed"):
  syn-real     SYN scan of 65,536 addresses whose kernel answers (nginx on :80)
  syn-emu      SYN scan of 1,048,576 targets answered by the XDP emulator:
               max send rate and delivered rate, AF_PACKET vs kernel generator,
               and whether --rate 1M holds
  banner       banner grabbing of 65,536 targets at 0/10/50/100 % open
               (emulator, server-first SSH banner) vs masscan --banners
  rss          peak RSS for 10k / 1M / 16M targets and 0 % vs 100 % open
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zbanner_xdp import lab  # noqa: E402

PY = str(ROOT / ".venv" / "bin" / "python")
ZB = str(ROOT / ".venv" / "bin" / "zbanner-xdp")
OUT = ROOT / "bench-results"
# The emulator sits on the router's scanner-facing veth and answers this
# whole /16 before routing (the router's ICMP carve-outs in it don't matter here).
EMU_NET = "198.19.0.0/16"
PASS_NET = "198.19.0.0/30"  # an emulator here only provides the XDP program a veth's XDP_TX needs
MASSCAN_IP = "10.77.0.9"  # masscan's own address: its SYN-ACKs never reach our kernel, no iptables needed


def sh(argv: list[str], timeout: float = 600, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def in_scan(argv: list[str]) -> list[str]:
    return lab.ns_exec_argv(lab.SCAN_NS, argv)


def ensure_peers() -> None:
    missing = [p for p in ("zmap", "masscan") if not shutil.which(p)]
    if missing:
        print(f"bench: installing {' '.join(missing)} (Debian)", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        r = sh(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env)
        if r.returncode != 0:
            sys.exit(f"bench: could not install {missing}: {r.stderr.strip()[-300:]}")


@contextlib.contextmanager
def emulator(
    net: str,
    open_permil: int = 1000,
    banner: str = "SSH-2.0-zbanner-emulator\\r\\n",
    server_first: bool = True,
    sink: bool = False,
    ns: str | None = None,
    iface: str | None = None,
) -> Iterator[dict]:
    """The XDP emulator on the router's scanner-facing veth; yields its counters after exit."""
    argv = [
        PY,
        "-m",
        "zbanner_xdp.lab.emulator",
        "--iface",
        iface or lab.ROUTER_IF,
        "--net",
        net,
        "--open-permil",
        str(open_permil),
        "--banner",
        banner,
        "--seconds",
        "900",
    ]
    if server_first:
        argv.append("--server-first")
    if sink:
        argv.append("--sink")
    proc = subprocess.Popen(
        lab.ns_exec_argv(ns or lab.ROUTER_NS, argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(ROOT),
    )
    result: dict = {}
    try:
        time.sleep(3.0)  # compile + attach
        if proc.poll() is not None:
            raise RuntimeError(f"emulator failed: {proc.stderr.read().strip()[-300:]}")
        yield result
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        for line in out.splitlines():
            with contextlib.suppress(ValueError):
                result.update(json.loads(line))


def timed(argv: list[str], timeout: float = 600) -> tuple[float, int, subprocess.CompletedProcess[str]]:
    """(wall seconds, peak RSS KiB, result) of a command, through GNU time."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        t0 = time.monotonic()
        r = sh(["/usr/bin/time", "-f", "%M", "-o", tf.name, *argv], timeout=timeout)
        wall = time.monotonic() - t0
        try:
            rss = int(tf.read().strip().splitlines()[-1])
        except (ValueError, IndexError):
            rss = 0
    return wall, rss, r


def zb(args: list[str], tmp: Path, timeout: float = 600) -> dict:
    meta = tmp / "meta.json"
    argv = in_scan(
        [
            ZB,
            "--blocklist",
            str(tmp / "empty"),
            "-q",
            "-o",
            str(tmp / "out.jsonl"),
            "--metadata",
            str(meta),
            *args,
        ]
    )
    wall, rss, r = timed(argv, timeout)
    if r.returncode != 0:
        raise RuntimeError(f"zbanner-xdp failed: {r.stderr.strip()[-400:]}")
    m = json.loads(meta.read_text())
    # Banners per second: first to last banner record, by the records' own timestamps.
    stamps = []
    with open(tmp / "out.jsonl", "rb") as fh:
        for line in fh:
            if b'"classification":"banner"' in line:
                stamps.append(json.loads(line)["timestamp"])
    banner_rate = None
    if len(stamps) > 1:
        ts = sorted(
            time.mktime(time.strptime(t[:19], "%Y-%m-%dT%H:%M:%S")) + float(t[19:-1] or 0) for t in stamps
        )
        banner_rate = round(len(ts) / max(ts[-1] - ts[0], 1e-3))
    sending = m["packets_sent"]["probes"] / m["send_rate_pps"] if m["send_rate_pps"] else 0.0
    return {
        "wall_s": round(wall, 3),
        "rss_kib": rss,
        "send_pps": m["send_rate_pps"],
        "send_s": round(sending, 3),
        "hits": m["hits"],
        "banners_per_s": banner_rate,
        "responses": m["responses"],
        "tx_mode": m["tx_mode"],
        "meta": m,
    }


def zmap(targets: list[str], port: int, tmp: Path, rate: int = 0, cooldown: int = 2) -> dict:
    out = tmp / "zmap.csv"
    argv = in_scan(
        [
            "zmap",
            "-i",
            lab.SCAN_IF,
            "-S",
            lab.SCAN_IP,
            "-G",
            lab.GATEWAY_MAC,
            "-p",
            str(port),
            "-b",
            str(tmp / "empty"),
            "-r",
            str(rate),
            "-c",
            str(cooldown),
            "-o",
            str(out),
            "-q",
            "-f",
            "saddr",
            *targets,
        ]
    )
    wall, rss, r = timed(argv)
    hits = len({ln.strip() for ln in out.read_text().splitlines()[1:] if ln.strip()}) if out.exists() else 0
    m = re.findall(r"send: (\d+) done", r.stderr)
    return {"wall_s": round(wall, 3), "rss_kib": rss, "hits": hits, "sent": int(m[-1]) if m else None}


def masscan(
    targets: list[str], ports: str, tmp: Path, banners: bool = False, wait: int = 2, rate: int = 10_000_000
) -> dict:
    out = tmp / "masscan.json"
    argv = in_scan(
        [
            "masscan",
            *targets,
            "-p",
            ports,
            "--rate",
            str(rate),
            "--adapter",
            lab.SCAN_IF,
            "--adapter-ip",
            MASSCAN_IP,
            "--router-mac",
            lab.GATEWAY_MAC,
            "--wait",
            str(wait),
            "-oJ",
            str(out),
        ]
        + (["--banners"] if banners else [])
    )
    # masscan can hang on exit on a quiet link (MEASURED.md): bound it, and say so.
    bound = 30 + wait
    wall, rss, r = timed(["timeout", "-s", "INT", "-k", "5", str(bound), *argv])
    hung = r.returncode in (124, 137) or wall >= bound
    opens: set[str] = set()
    banner_ips: set[str] = set()
    # -oJ is one JSON object per line inside a bracketed list, with trailing commas.
    for line in (out.read_text() if out.exists() else "").splitlines():
        line = line.strip().rstrip(",")
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        for port in rec.get("ports", []):
            if port.get("status") == "open":
                opens.add(rec.get("ip"))
            if port.get("service", {}).get("banner"):
                banner_ips.add(rec.get("ip"))
    nbanners = len(banner_ips)
    return {"wall_s": round(wall, 3), "rss_kib": rss, "hits": len(opens), "banners": nbanners, "hung": hung}


def median(runs: list[dict], key: str) -> float | None:
    vals = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(vals), 3) if vals else None


def repeat(n: int, fn, *a, **kw) -> list[dict]:
    out = []
    for i in range(n):
        try:
            out.append(fn(*a, **kw))
        except Exception as exc:  # a failed run is reported, not fatal
            out.append({"error": str(exc)})
        print(f"    run {i + 1}/{n}: {summary_line(out[-1])}", flush=True)
    return out


def summary_line(r: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in r.items() if k != "meta" and not isinstance(v, dict))


def scenario_syn_real(runs: int, tmp: Path) -> dict:
    print("syn-real: 65,536 addresses x port 80, real kernel responders", flush=True)
    res = {}
    syn = ["--rate", "0", "--cooldown", "2", "scan", lab.BIG_NET, "-p", "80"]
    print("  zbanner-xdp --tx packet", flush=True)
    res["zbanner-xdp --tx packet"] = repeat(runs, zb, ["--tx", "packet", *syn], tmp)
    print("  zbanner-xdp --tx xdp", flush=True)
    with emulator(PASS_NET):
        res["zbanner-xdp --tx xdp"] = repeat(runs, zb, ["--tx", "xdp", *syn], tmp)
    print("  zmap -r 0", flush=True)
    res["zmap"] = repeat(runs, zmap, [lab.BIG_NET], 80, tmp)
    print("  masscan --rate 10M", flush=True)
    res["masscan"] = repeat(runs, masscan, [lab.BIG_NET], "80", tmp)
    return res


def scenario_syn_emu(runs: int, tmp: Path) -> dict:
    print("syn-emu: 1,048,576 (and 4,194,304) targets answered by the XDP emulator, 50 % open", flush=True)
    res: dict = {}
    few = ["-f", "saddr,sport,classification"]  # ZMap's default output is saddr alone
    for name, args, ports in (
        ("packet, rate 0", ["--tx", "packet", "--rate", "0"], "1-16"),
        ("xdp, rate 0", ["--tx", "xdp", "--rate", "0"], "1-16"),
        ("xdp + kernel replies, rate 0", ["--tx", "xdp", "--rate", "0", "--kernel-replies"], "1-16"),
        ("xdp + kernel replies, rate 1M", ["--tx", "xdp", "--rate", "1M", "--kernel-replies"], "1-16"),
        ("packet, rate 500K", ["--tx", "packet", "--rate", "500K"], "1-16"),
        # Sustained: 4,194,304 targets (~10 s), full records (1.7 GB) and three fields.
        (
            "4M targets, xdp + kernel replies, rate 1M",
            ["--tx", "xdp", "--rate", "1M", "--kernel-replies"],
            "1-64",
        ),
        (
            "4M targets, xdp + kernel replies, rate 1M, -f 3 fields",
            ["--tx", "xdp", "--rate", "1M", "--kernel-replies", *few],
            "1-64",
        ),
        # 4.2M replies: a 4M-entry duplicate filter hardly evicts (the 1M default does, at a cost).
        (
            "4M targets, xdp + kernel replies, rate 1M, -f 3 fields, --dedup-entries 4M",
            ["--tx", "xdp", "--rate", "1M", "--kernel-replies", *few, "--dedup-entries", "4M"],
            "1-64",
        ),
    ):
        print(f"  zbanner-xdp {name}", flush=True)
        out = []
        for _ in range(runs):
            with emulator(EMU_NET, open_permil=500) as counters:
                scan_opts = {"--kernel-replies": 0, "--dedup-entries": 1}  # (options after `scan`: values)
                pre, post, i = [], [], 0
                while i < len(args):
                    n = scan_opts.get(args[i])
                    (pre if n is None else post).extend(args[i : i + 1 + (n or 0)])
                    i += 1 + (n or 0)
                r = zb([*pre, "--cooldown", "1", "scan", EMU_NET, "-p", ports, *post], tmp)
            delivered = counters.get("syn_open", 0) + counters.get("syn_closed", 0)
            r["delivered"] = delivered
            r["delivered_pct"] = round(100 * delivered / r["meta"]["packets_sent"]["probes"], 2)
            r["delivered_pps"] = round(delivered / r["send_s"]) if r["send_s"] else None
            out.append(r)
            print(f"    {summary_line(r)}", flush=True)
        res[name] = out
    return res


def _r0_xdp_packets() -> int:
    out = sh(lab.ns_exec_argv(lab.ROUTER_NS, ["ethtool", "-S", lab.ROUTER_IF])).stdout
    m = re.search(r"rx_queue_0_xdp_packets: (\d+)", out)
    return int(m.group(1)) if m else 0


def scenario_syn_sink(runs: int, tmp: Path) -> dict:
    """Sending alone: 1,048,576 SYNs into a blackholed range, counted as they reach the router's veth."""
    print("syn-sink: 1,048,576 SYNs to a silent range (no replies): the send path alone", flush=True)
    res: dict = {}
    # A sink emulator: drops (and counts) every frame to the range on the router's veth,
    # so the figure is the scanner's, not the lab router's forwarding.
    with emulator("198.19.64.0/18", sink=True):
        for name, args in (
            ("packet, rate 0", ["--tx", "packet", "--rate", "0"]),
            ("xdp, rate 0", ["--tx", "xdp", "--rate", "0"]),
            ("xdp, rate 1M", ["--tx", "xdp", "--rate", "1M"]),
            ("xdp, rate 3M", ["--tx", "xdp", "--rate", "3M"]),
            ("packet, rate 500K", ["--tx", "packet", "--rate", "500K"]),
        ):
            out = []
            for _ in range(runs):
                before = _r0_xdp_packets()
                r = zb([*args, "--cooldown", "0.5", "scan", "198.19.64.0/18", "-p", "1-64"], tmp)
                delivered = _r0_xdp_packets() - before
                probes = r["meta"]["packets_sent"]["probes"]
                r.update(
                    delivered=delivered,
                    delivered_pct=round(100 * delivered / probes, 2),
                    delivered_pps=round(delivered / r["send_s"]) if r["send_s"] else None,
                )
                out.append(r)
                print(f"    {name}: {summary_line(r)}", flush=True)
            res[name] = out
    return res


def scenario_banner(runs: int, tmp: Path) -> dict:
    print("banner: 65,536 targets (port 22), emulator server-first banner, 0/10/50/100 % open", flush=True)
    res: dict = {}
    targets = [EMU_NET]
    for pct in (0, 10, 50, 100):
        res[pct] = {}
        # (masscan is not in this one: against the emulator it finds the open ports but
        # records no banner and never exits — its TCP stack waits for a close that a
        # stateless emulator never sends. It is compared on real nginx in banner-real.)
        for tool in ("zbanner-xdp", "zbanner-xdp --kernel-replies"):
            out = []
            for _ in range(runs):
                with emulator(EMU_NET, open_permil=pct * 10) as counters:
                    if tool.startswith("zbanner"):
                        extra = ["--kernel-replies"] if "kernel" in tool else []
                        r = zb(
                            [
                                "--rate",
                                "0",
                                "--cooldown",
                                "2",
                                "scan",
                                *targets,
                                "-p",
                                "22",
                                "--probe",
                                "ssh",
                                *extra,
                            ],
                            tmp,
                        )
                        r["banners"] = r["responses"].get("banner", 0)
                    else:
                        # A veth delivers the emulator's XDP_TX replies only to a peer with an
                        # XDP program: zbanner-xdp has its own; for masscan, a pass-through one.
                        with emulator("198.19.255.252/30", ns=lab.SCAN_NS, iface=lab.SCAN_IF):
                            r = masscan(targets[:1], "22", tmp, banners=True, wait=2)
                r["emulator_banners"] = counters.get("banner")
                r.pop("meta", None)
                out.append(r)
                print(f"    {pct}% {tool}: {summary_line(r)}", flush=True)
            res[pct][tool] = out
    return res


def scenario_banner_real(runs: int, tmp: Path) -> dict:
    """HTTP banners from real nginx on 65,536 addresses (65,024 answer), same cooldown for both tools."""
    print("banner-real: HTTP banners from nginx, 65,536 addresses, cooldown 5 s", flush=True)
    res: dict = {}
    for rate, label in (("0", "as fast as possible"), ("50K", "50K pps")):
        out = []
        for _ in range(runs):
            r = zb(
                ["--rate", rate, "--cooldown", "5", "scan", lab.BIG_NET, "-p", "80", "--probe", "http"], tmp
            )
            r["banners"] = r["responses"].get("banner", 0)
            out.append(r)
            print(f"    zbanner-xdp {label}: {summary_line(r)}", flush=True)
        res[f"zbanner-xdp --probe http, {label}"] = out
    for rate, label in ((10_000_000, "--rate 10M"), (50_000, "50K pps")):
        out = []
        for _ in range(runs):
            r = masscan([lab.BIG_NET], "80", tmp, banners=True, wait=5, rate=rate)
            out.append(r)
            print(f"    masscan --banners {label}: {summary_line(r)}", flush=True)
        res[f"masscan --banners, {label}"] = out
    return res


def scenario_rss(tmp: Path) -> dict:
    print("rss: peak RSS by target count and open ratio", flush=True)
    res = {}
    cases = {
        "10k targets": ["scan", "198.19.0.0/20", "-p", "1-3"],
        "1M targets": ["scan", EMU_NET, "-p", "1-16"],
        "16M targets": ["scan", EMU_NET, "-p", "1-256"],
    }
    with emulator(EMU_NET, open_permil=500):
        for name, args in cases.items():
            r = zb(["--rate", "0", "--cooldown", "1", *args], tmp, timeout=900)
            res[name] = {
                "rss_kib": r["rss_kib"],
                "probes": r["meta"]["packets_sent"]["probes"],
                "wall_s": r["wall_s"],
            }
            print(f"  {name}: {res[name]}", flush=True)
    for pct in (0, 100):
        with emulator(EMU_NET, open_permil=pct * 10):
            r = zb(["--rate", "0", "--cooldown", "2", "scan", EMU_NET, "-p", "22", "--probe", "ssh"], tmp)
        res[f"{pct}% open (banners)"] = {"rss_kib": r["rss_kib"], "banners": r["responses"].get("banner", 0)}
        print(f"  {pct}% open: {res[f'{pct}% open (banners)']}", flush=True)
    return res


def markdown(results: dict) -> str:
    lines = [
        "# zbanner-xdp benchmark",
        "",
        f"Machine: {os.cpu_count()} cores; runs per figure: {results['runs']} (medians).",
        "",
    ]
    if "syn-real" in results:
        lines += [
            "## SYN scan, 65,536 real kernel responders",
            "",
            "| tool | wall s | hits | send pps | peak RSS MiB |",
            "|---|---|---|---|---|",
        ]
        for tool, runs in results["syn-real"].items():
            lines.append(
                f"| {tool} | {median(runs, 'wall_s')} | {median(runs, 'hits')} | "
                f"{median(runs, 'send_pps') or '-'} | {round((median(runs, 'rss_kib') or 0) / 1024)} |"
            )
        lines.append("")
    if "syn-sink" in results:
        lines += [
            "## Send path alone: 1,048,576 SYNs to a silent range",
            "",
            "| mode | send pps | delivered pps | delivered % |",
            "|---|---|---|---|",
        ]
        for mode, runs in results["syn-sink"].items():
            lines.append(
                f"| {mode} | {median(runs, 'send_pps')} | {median(runs, 'delivered_pps')} | "
                f"{median(runs, 'delivered_pct')} |"
            )
        lines.append("")
    if "syn-emu" in results:
        lines += [
            "## SYN scan, 1,048,576 targets (4,194,304 where noted), XDP emulator, 50 % open",
            "",
            "| mode | send pps | delivered pps | delivered % | open ports found | wall s |",
            "|---|---|---|---|---|---|",
        ]
        for mode, runs in results["syn-emu"].items():
            lines.append(
                f"| {mode} | {median(runs, 'send_pps')} | {median(runs, 'delivered_pps')} | "
                f"{median(runs, 'delivered_pct')} | {median(runs, 'hits')} | {median(runs, 'wall_s')} |"
            )
        lines.append("")
    if "banner" in results:
        lines += [
            "## Banner grabbing, 65,536 targets (emulator, SSH banner)",
            "",
            "| open | tool | wall s | banners | banners the emulator sent | banners/s |",
            "|---|---|---|---|---|---|",
        ]
        for pct, tools in results["banner"].items():
            for tool, runs in tools.items():
                lines.append(
                    f"| {pct}% | {tool} | {median(runs, 'wall_s')} | {median(runs, 'banners')} | "
                    f"{median(runs, 'emulator_banners')} | {median(runs, 'banners_per_s') or '-'} |"
                )
        lines.append("")
    if "banner-real" in results:
        lines += [
            "## HTTP banners from real nginx, 65,536 addresses (65,024 answer), cooldown 5 s",
            "",
            "| tool | wall s | banners | banners/s | masscan hung at exit |",
            "|---|---|---|---|---|",
        ]
        for tool, runs in results["banner-real"].items():
            hung = sum(1 for r in runs if r.get("hung"))
            lines.append(
                f"| {tool} | {median(runs, 'wall_s')} | {median(runs, 'banners')} | "
                f"{median(runs, 'banners_per_s') or '-'} | {hung}/{len(runs)} |"
            )
        lines.append("")
    if "rss" in results:
        lines += ["## Peak RSS", "", "| case | peak RSS MiB |", "|---|---|"]
        for case, r in results["rss"].items():
            lines.append(f"| {case} | {round(r['rss_kib'] / 1024)} |")
    return "\n".join(lines) + "\n"


def save(results: dict) -> str:
    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if k != "meta"}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj

    OUT.mkdir(exist_ok=True)
    (OUT / "bench.json").write_text(json.dumps(strip(results), indent=2, default=str))
    md = markdown(results)
    (OUT / "bench.md").write_text(md)
    return md


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--only", nargs="*", choices=["syn-real", "syn-sink", "syn-emu", "banner", "banner-real", "rss"]
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: needs root (sudo make bench)")
    ensure_peers()
    OUT.mkdir(exist_ok=True)
    results: dict = {"runs": args.runs, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    lab.down()
    lab.up()
    try:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            os.chmod(tmp, 0o755)
            (tmp / "empty").write_text("")
            only = set(args.only or ["syn-real", "syn-sink", "syn-emu", "banner", "banner-real", "rss"])
            scenarios = {
                "syn-real": lambda: scenario_syn_real(args.runs, tmp),
                "syn-sink": lambda: scenario_syn_sink(args.runs, tmp),
                "syn-emu": lambda: scenario_syn_emu(args.runs, tmp),
                "banner": lambda: scenario_banner(args.runs, tmp),
                "banner-real": lambda: scenario_banner_real(args.runs, tmp),
                "rss": lambda: scenario_rss(tmp),
            }
            for name, fn in scenarios.items():
                if name in only:
                    results[name] = fn()
                    save(results)  # partial results survive an interrupted run
    finally:
        lab.down()
    md = save(results)
    print()
    print(md)
    print(f"written: {OUT / 'bench.json'}, {OUT / 'bench.md'}")
    return 0


# --------------------------------------------------------------------------- multistep (issue 12)
#
# `bench.py --only multistep [--runs N]`: the multi-connection probes' figures, against the lab's
# real servers. Self-contained (its own entry point below), so the scenarios above stay as they are.
#   auto      --probe auto over 256 lab hosts x ports 22, 80, 443 at --rate 2K: share of the 768
#             banners in one scan and wall time (issue 12's goal: >= 99 %, <= 6 s)
#   lzr       --probe lzr over every lab service, own and unexpected port (lab.TCP_SERVICES):
#             connections used per identified service

MULTISTEP_AUTO_NET = "198.18.0.0/24"
MULTISTEP_AUTO_PORTS = (22, 80, 443)
MULTISTEP_LZR_HOSTS = ("198.18.0.9", "198.18.77.7")


def _multistep_records(tmp: Path) -> list[dict]:
    with open(tmp / "out.jsonl", "rb") as fh:
        return [json.loads(line) for line in fh]


def _multistep_spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def multistep_auto(runs: int, tmp: Path) -> dict:
    want = 256 * len(MULTISTEP_AUTO_PORTS)
    shares, walls = [], []
    for _ in range(runs):
        r = zb(
            ["--rate", "2K", "--cooldown", "2", "scan", MULTISTEP_AUTO_NET, "-p",
             ",".join(map(str, MULTISTEP_AUTO_PORTS)), "--probe", "auto"],
            tmp,
        )  # fmt: skip
        got = {
            (x["saddr"], x["sport"])
            for x in _multistep_records(tmp)
            if x["classification"] == "banner" and x["success"]
        }
        shares.append(round(100.0 * len(got) / want, 2))
        walls.append(r["wall_s"])
        print(f"  auto: {len(got)}/{want} banners, {r['wall_s']} s", flush=True)
    return {"banners_pct": _multistep_spread(shares), "wall_s": _multistep_spread(walls), "targets": want}


def multistep_lzr(runs: int, tmp: Path) -> dict:
    ports = ",".join(map(str, sorted(lab.TCP_SERVICES)))
    per_proto: dict[str, set[int]] = {}
    walls, per_service = [], []
    for _ in range(runs):
        r = zb(
            ["--rate", "1K", "--cooldown", "2", "scan", *MULTISTEP_LZR_HOSTS, "-p", ports, "--probe", "lzr",
             "--probe-args", "timeout=2"],
            tmp,
        )  # fmt: skip
        res = [x for x in _multistep_records(tmp) if x["classification"] == "banner" and x["lzr"]]
        right = [x for x in res if not x["incomplete"] and x["lzr"]["fingerprint"] == lab.service(
            x["saddr"], x["sport"])]  # fmt: skip
        for x in right:
            per_proto.setdefault(x["lzr"]["fingerprint"], set()).add(x["lzr"]["handshakes"])
        used = sum(x["lzr"]["handshakes"] for x in res)
        per_service.append(round(used / max(1, len(right)), 3))
        walls.append(r["wall_s"])
        print(f"  lzr: {len(right)}/{len(res)} identified, {used} connections, {r['wall_s']} s", flush=True)
    return {
        "services": len(MULTISTEP_LZR_HOSTS) * len(lab.TCP_SERVICES),
        "connections_per_service": _multistep_spread(per_service),
        "connections_by_protocol": {k: sorted(v) for k, v in sorted(per_proto.items())},
        "wall_s": _multistep_spread(walls),
    }


def multistep_markdown(res: dict) -> str:
    a, z = res["auto"], res["lzr"]

    def spread(d: dict, unit: str) -> str:
        return f"{d['median']}{unit} (min {d['min']}, max {d['max']})"

    lines = [
        f"## Multi-connection probes (median of {res['runs']} runs)",
        "",
        f"- `--probe auto`, 256 hosts x {'/'.join(map(str, MULTISTEP_AUTO_PORTS))} at --rate 2K: "
        f"{spread(a['banners_pct'], ' %')} of {a['targets']} banners, wall {spread(a['wall_s'], ' s')}",
        f"- `--probe lzr`, {z['services']} lab services (own and unexpected ports): "
        f"{spread(z['connections_per_service'], '')} connections per identified service, "
        f"wall {spread(z['wall_s'], ' s')}",
        "",
        "| protocol | connections |",
        "|---|---|",
        *(f"| {p} | {', '.join(map(str, n))} |" for p, n in z["connections_by_protocol"].items()),
    ]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _multistep_lab() -> Iterator[Path]:
    """A fresh lab and a work directory with an empty blocklist; the lab removed afterwards."""
    lab.down()
    try:
        lab.up()
        with tempfile.TemporaryDirectory(prefix="zb-multistep-") as d:
            os.chmod(d, 0o755)
            Path(d, "empty").write_text("")
            yield Path(d)
    finally:
        lab.down()


def multistep_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="multi-connection probes' figures (issue 12)")
    ap.add_argument("--only", nargs="+", choices=["multistep"], required=True)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bench: needs root (sudo make bench)")
    OUT.mkdir(exist_ok=True)
    res: dict = {"runs": args.runs, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with _multistep_lab() as tmp:
        res["auto"] = multistep_auto(args.runs, tmp)
        res["lzr"] = multistep_lzr(args.runs, tmp)
    (OUT / "multistep.json").write_text(json.dumps(res, indent=2))
    md = multistep_markdown(res)
    (OUT / "multistep.md").write_text(md)
    print()
    print(md)
    print(f"written: {OUT / 'multistep.json'}, {OUT / 'multistep.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(multistep_main(sys.argv[1:]) if "multistep" in sys.argv[1:] else main())
