"""`make bench`: zbanner-xdp against ZMap, masscan and nmap on the built-in lab.

A script that prints figures (not a timed test). Every tool runs inside the lab's scanner
namespace against lab addresses only, every run is bounded in time, and the lab is torn down at
the end even when something fails. Each figure is the median (min–max) of --runs runs; every run
is kept raw. Ground truth (the denominators) comes from the lab's oracle `lab.expected()` and the
emulator's `is_open()`, never from a tool.

Scenarios (--only; all by default):
  syn-real         SYN scan of 65,536 addresses whose kernel answers (nginx on :80)
  syn-sink         the send path alone: 1,048,576 SYNs into a range that only counts them
  syn-emu          SYN scans answered by the XDP emulator (1M and 4M targets, 50 % open)
  banner           SSH banners from the emulator at 0/10/50/100 % open
  banner-real      HTTP banners from real nginx on 65,536 addresses: zbanner-xdp and masscan
  masscan-explain  masscan --banners under tcpdump: what reached its interface vs what it wrote
  open-ratio       the ZBanner paper's section 5.4 (Figs. 10, 11): --targets N addresses, 0..100 %
                   of them nginx, the rest silent; zbanner-xdp, masscan --banners, ZMap then nmap
  rss              zbanner-xdp's peak RSS by target count and open ratio
  profile          where an SSH banner's time goes: BPF run time per program, the machine's CPU
                   by kind, the scanner's own CPU, perf's busiest symbols (one extra run)
(Separate entry points: --only multistep, the multi-connection probes; --only certs, TLS
certificates with --banner-bytes against real nginx; --only certs-emu, the same against the XDP
emulator's canned multi-segment TLS response at growing target counts.)

Results go to --out (default bench-results/, git-ignored; `make bench` writes docs/bench/, which
is committed): one <scenario>.json each (open-ratio: open-ratio.json, the list of rows, and
open-ratio-meta.json, plus two PNGs), and bench.md with every table. scripts/bench_tables.py
renders the tables, and with --readme the bench rewrites the README's "Measured" tables from
those files.

masscan runs the way its manual prefers ("Setting your source IP address this way is the
preferred way of running this scanner"): from an address of its own on the scanner's link,
10.77.0.9, which it answers ARP for itself. The router's connected route sends the replies there;
the scanner namespace's kernel drops them without a RST (not its address, no forwarding), so no
firewall rule is needed and the namespace stays the same for every tool (masscan-explain checks
both from its captures). Its source port is its default (one random port). It gets the same
targets as the others, and the wait of its manual's default (10 s), which zbanner-xdp and ZMap get
as their cooldown: masscan sends its request only after 2-6 s of waiting for a server-first
banner. No signal: its own --wait ends it. But masscan 1.3.2 notices the end of its wait only when a
frame arrives (its receive thread sleeps in poll()), so on the lab's quiet veth it often never
exited, and it writes its banners only at exit: while masscan runs, the bench sends ten frames a
second to the scanner's veth, as any real link carries (link_heartbeat). A run still going 30 s
after its wait is killed, flagged "hung" and left out of the figures (the tables count them).
Before any masscan banner figure the bench checks its banner path on 256 nginx at 1K pps and
publishes no masscan banner figure if it gets fewer than 90 % (masscan-explain shows why the
check was needed).

Peak RSS is per pipeline: every process of a run goes into a fresh memory cgroup; a sampler adds
up the RSS of all of them every 10 ms, and the figure is the larger of that peak and GNU time's
maximum RSS (exact for the largest single process). The cgroup's own peak (which also counts page
cache and kernel memory such as BPF maps) is kept as cgroup_peak_kib.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench_tables as tables  # noqa: E402

from zbanner_xdp import bpfsys, lab  # noqa: E402

PY = str(ROOT / ".venv" / "bin" / "python")
ZB = str(ROOT / ".venv" / "bin" / "zbanner-xdp")
OUT = ROOT / "bench-results"
# The emulator sits on the router's scanner-facing veth and answers this
# whole /16 before routing (the router's ICMP carve-outs in it don't matter here).
EMU_NET = "198.19.0.0/16"
PASS_NET = "198.19.0.0/30"  # an emulator here only provides the XDP program a veth's XDP_TX needs
EMU_SEED = 0  # the emulator's default --seed: its open/closed hash key
MASSCAN_IP = "10.77.0.9"  # masscan's own address on the scanner's link (see the docstring)
MASSCAN_GRACE = 30  # seconds past its --wait after which a masscan run counts as hung
REAL_WAIT = 10  # cooldown (zbanner-xdp, zmap) = --wait (masscan, its manual's default) for banners
# from real servers: masscan sends its request only after 2-6 s of waiting for a server-first banner.
SANITY_NET = lab.OPEN_NET  # 256 addresses, nginx on all of them
SANITY_RATE = 1000
SANITY_PCT = 90
# nmap options that fetched 4,096 nginx responses fastest in a sweep on this machine (4.3-4.7 s):
# a TCP connect scan (the OS's sockets, as ZGrab's second pass), no ping, no DNS, T5 timing, host
# groups of 256 (64-512 were within noise; no limit: 5.7 s, 4,096: 8.9 s) and the http-headers
# NSE script (HEAD /, no -sV). The "banner" script waits for a server-first banner: 130 s for 256.
NMAP_OPTS = ["-sT", "-Pn", "-n", "-p80", "-T5", "--max-hostgroup", "256", "--script", "http-headers"]
# Open-ratio targets: nginx addresses well clear of the carve-outs, silent ones blackholed at the router.
OPEN_POOL = ("198.18.16.0", 240 * 256)  # 198.18.16.0 - 198.18.255.255: all OPEN
SILENT_POOL = ("198.19.4.0", 252 * 256)  # 198.19.4.0 - 198.19.255.255: router blackhole, silent


# --------------------------------------------------------------------------- plumbing


def sh(argv: list[str], timeout: float = 600, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def in_scan(argv: list[str]) -> list[str]:
    return lab.ns_exec_argv(lab.SCAN_NS, argv)


def ensure_peers() -> None:
    missing = [p for p in ("zmap", "masscan", "nmap", "tcpdump") if not shutil.which(p)]
    if missing:
        print(f"bench: installing {' '.join(missing)} (Debian)", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        r = sh(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env)
        if r.returncode != 0:
            sys.exit(f"bench: could not install {missing}: {r.stderr.strip()[-300:]}")


def tool_versions() -> dict[str, str]:
    def first(argv: list[str], pattern: str) -> str:
        try:
            r = sh(argv, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return "?"
        m = re.search(pattern, r.stdout + r.stderr)
        return m.group(1) if m else "?"

    return {
        "kernel": os.uname().release,
        "zmap": first(["zmap", "--version"], r"zmap (\S+)"),
        "masscan": first(["masscan", "--version"], r"Masscan version (\S+)"),
        "nmap": first(["nmap", "--version"], r"Nmap version (\S+)"),
    }


def _cpu_times() -> tuple[int, int]:
    vals = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = vals[3] + vals[4]
    return sum(vals) - idle, sum(vals)


def load_snapshot() -> dict[str, Any]:
    """What else the machine is doing: load averages, CPU busy over one second, the busiest processes."""
    b0, t0 = _cpu_times()
    time.sleep(1.0)
    b1, t1 = _cpu_times()
    top = sh(["ps", "-eo", "pcpu,comm", "--sort=-pcpu", "--no-headers"], timeout=10).stdout.splitlines()[:5]
    return {
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "cpu_busy_pct": round(100 * (b1 - b0) / max(t1 - t0, 1), 1),
        "top_processes_lifetime_pcpu": [" ".join(line.split()) for line in top],
    }


def quiesce(max_s: float = 180) -> float:
    """Wait until the target's TCP stack has let go of earlier runs' connections.

    A run right after another inherits their half-open and idle connections (a SYN queue more
    than half full prunes new entries at their first timeout; nginx workers near their limit close
    idle connections): the second of two zbanner-xdp runs 5 s apart lost 3-12 % of its banners.
    masscan's runs also leave tens of thousands of orphans (CLOSING, FIN-WAIT-1: its FIN, then no
    ACK of the server's) for a minute or two; the host's orphan limit is shared by every namespace
    on the machine, other people's labs included, so they must drain too.
    """
    t0 = time.monotonic()
    while time.monotonic() - t0 < max_s:
        out = sh(lab.ns_exec_argv(lab.TARGET_NS, ["ss", "-tanH"]), timeout=30).stdout
        states = [line.split(maxsplit=1)[0] for line in out.splitlines() if line.strip()]
        busy = sum(1 for st in states if st in ("SYN-RECV", "ESTAB", "CLOSE-WAIT"))
        orphans = sum(1 for st in states if st in ("FIN-WAIT-1", "FIN-WAIT-2", "CLOSING", "LAST-ACK"))
        if busy < 64 and orphans < 2000:
            break
        time.sleep(2.0)
    return round(time.monotonic() - t0, 1)


def set_gso(on: bool) -> None:
    """GSO on the scanner's veth: off in the lab (lab.py says why); masscan-explain turns it back on."""
    sh(in_scan(["ethtool", "-K", lab.SCAN_IF, "gso", "on" if on else "off"]), timeout=30)


def nginx_warnings() -> int:
    """Lines in which nginx says it ran out of connections (it then closes idle ones)."""
    try:
        text = Path(lab.STATE_DIR, "nginx.log").read_text(errors="replace")
    except OSError:
        return 0
    return text.count("worker_connections are not enough")


def expected_set(addrs: list[str], port: int = 80) -> set[str]:
    """The lab's ground truth: addresses whose port answers with a SYN-ACK (and, for 80, serve HTTP)."""
    return {a for a in addrs if lab.expected(a, port) == "synack"}


def net_addrs(net: str) -> list[str]:
    return [str(a) for a in ipaddress.ip_network(net)]


def emu_expected_open(net: str, ports: range, permil: int) -> int:
    """How many (address, port) pairs the emulator treats as open: its own keyed hash, vectorised."""
    from zbanner_xdp.cookie import cookies
    from zbanner_xdp.lab import emulator

    if permil >= 1000:
        return ipaddress.ip_network(net).num_addresses * len(ports)
    if permil <= 0:
        return 0
    n = ipaddress.ip_network(net)
    ips = np.arange(int(n.network_address), int(n.network_address) + n.num_addresses, dtype=np.uint64)
    key = emulator._open_key(EMU_SEED)
    total = 0
    for port in ports:
        c = cookies(key, ips, np.zeros_like(ips), np.full_like(ips, port), np.zeros_like(ips))
        total += int(np.count_nonzero(c % 1000 < permil))
    return total


# --------------------------------------------------------------------------- measuring a run


class MemCgroup:
    """A fresh memory cgroup (v2 if the host has it, else v1) that a run's processes join."""

    _seq = 0

    def __init__(self) -> None:
        MemCgroup._seq += 1
        name = f"{lab.PREFIX}bench-{os.getpid()}-{MemCgroup._seq}"
        self.path: Path | None = None
        self.v2 = False
        v2root = Path("/sys/fs/cgroup")
        if (v2root / "cgroup.controllers").exists() and "memory" in (
            v2root / "cgroup.controllers"
        ).read_text():
            self.path, self.v2 = v2root / name, True
        elif Path("/sys/fs/cgroup/memory").is_dir():
            self.path = Path("/sys/fs/cgroup/memory") / name
        if self.path is not None:
            try:
                self.path.mkdir()
            except OSError:
                self.path = None

    def enter(self) -> None:
        """preexec_fn: move the child into the cgroup before it execs (its children follow)."""
        if self.path is not None:
            (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def pids(self) -> list[int]:
        if self.path is None:
            return []
        try:
            # a set: cgroup v1 may list a process more than once
            return sorted({int(p) for p in (self.path / "cgroup.procs").read_text().split()})
        except OSError:
            return []

    def peak_kib(self) -> int | None:
        if self.path is None:
            return None
        f = self.path / ("memory.peak" if self.v2 else "memory.max_usage_in_bytes")
        try:
            return int(f.read_text()) // 1024
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.rmdir()
            self.path = None


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return 0


class Meter:
    """Wall time and memory of a pipeline: one cgroup for all its stages (run one after another)."""

    def __init__(self) -> None:
        self.cg = MemCgroup()
        self.wall_s = 0.0
        self.largest_kib = 0  # GNU time's %M, the largest single process
        self.tree_kib = 0  # sampled sum of the RSS of every process in the cgroup
        self.user_s = self.system_s = 0.0

    def run(
        self, argv: list[str], timeout: float, stdout: Any = subprocess.PIPE
    ) -> tuple[subprocess.CompletedProcess[str], bool]:
        """Run one stage; (result, True) if it had to be killed at `timeout`."""
        with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
            t0 = time.monotonic()
            proc = subprocess.Popen(
                ["/usr/bin/time", "-f", "%M %U %S", "-o", tf.name, *argv],
                stdout=stdout,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,  # so a hung run can be killed with all its children
                preexec_fn=self.cg.enter,
            )
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    total = sum(_rss_kib(p) for p in self.cg.pids() if p != proc.pid)
                    self.tree_kib = max(self.tree_kib, total)
                    stop.wait(0.01)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            killed = False
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                killed = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                out, err = proc.communicate()
            finally:
                stop.set()
                sampler.join()
            self.wall_s += time.monotonic() - t0
            with contextlib.suppress(ValueError, IndexError):
                rss, user, system = tf.read().strip().splitlines()[-1].split()
                self.largest_kib = max(self.largest_kib, int(rss))
                self.user_s += float(user)
                self.system_s += float(system)
        return subprocess.CompletedProcess(argv, proc.returncode, out, err), killed

    def result(self) -> dict[str, Any]:
        peak = self.cg.peak_kib()
        self.cg.close()
        return {
            # GNU time's user and system CPU of every stage (each process and what it waited for)
            "cpu_user_ms": round(self.user_s * 1000),
            "cpu_system_ms": round(self.system_s * 1000),
            "wall_s": round(self.wall_s, 3),
            "peak_rss_kib": max(self.largest_kib, self.tree_kib),
            "largest_process_rss_kib": self.largest_kib,
            "cgroup_peak_kib": peak,
        }


# --------------------------------------------------------------------------- the emulator


@contextlib.contextmanager
def emulator(
    net: str,
    open_permil: int = 1000,
    banner: str = "SSH-2.0-zbanner-emulator\\r\\n",
    server_first: bool = True,
    sink: bool = False,
    ns: str | None = None,
    iface: str | None = None,
    extra: tuple[str, ...] = (),
) -> Iterator[dict[str, Any]]:
    """The XDP emulator on the router's scanner-facing veth; yields its counters after exit.

    It takes the place of the lab's next-hop pass program (one XDP program per interface). `extra`:
    more of its options (a canned response: --response-file, --segment-bytes)."""
    with (
        lab.next_hop_xdp_released(),
        _emulator(net, open_permil, banner, server_first, sink, ns, iface, extra) as r,
    ):
        yield r


@contextlib.contextmanager
def _emulator(
    net: str,
    open_permil: int,
    banner: str,
    server_first: bool,
    sink: bool,
    ns: str | None,
    iface: str | None,
    extra: tuple[str, ...] = (),
) -> Iterator[dict[str, Any]]:
    argv = [PY, "-m", "zbanner_xdp.lab.emulator", "--iface", iface or lab.ROUTER_IF, "--net", net]
    argv += ["--open-permil", str(open_permil), "--banner", banner, "--seconds", "900"]
    argv += ["--seed", str(EMU_SEED), *extra]
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
    result: dict[str, Any] = {}
    try:
        # Until it says it is attached (compile, maps, attach): a fixed 3 s was sometimes too short
        # (a canned response's 329 KB map), and the first SYNs then went past it to the router.
        seen = ""
        while proc.stderr is not None and "attached to" not in seen:
            line = proc.stderr.readline()
            if not line:
                raise RuntimeError(f"emulator failed: {seen.strip()[-300:]}")
            seen += line
        yield result
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        for line in out.splitlines():
            with contextlib.suppress(ValueError):
                result.update(json.loads(line))


# --------------------------------------------------------------------------- the tools


_WARM: set[tuple[str, ...]] = set()
WARMUP_TARGET = "198.18.2.1"  # dropped by the target (SILENT_NET), outside every emulator range


def warm_up(args: list[str], tmp: Path) -> None:
    """Fill the compiled-program cache for these options with a one-address scan, unmeasured.

    The cache key is the compile flags (tx mode, probes, kernel replies, duplicate filter...), not
    the targets or the rate; a miss adds a BCC compile (and LLVM's memory) to the first run, and
    the figures are meant for the usual case, a hit.
    """
    i = args.index("scan")
    j = args.index("-p", i)
    pre = [a for k, a in enumerate(args[:i]) if a != "--cooldown" and (k == 0 or args[k - 1] != "--cooldown")]
    key = tuple(pre + args[j + 2 :])
    if key in _WARM:
        return
    _WARM.add(key)
    argv = [ZB, "--blocklist", str(tmp / "empty"), "-q", "-o", "/dev/null", *pre, "--cooldown", "0", "scan",
            WARMUP_TARGET, *args[j:]]  # fmt: skip
    sh(in_scan(argv), timeout=300)


def zb(
    args: list[str],
    tmp: Path,
    timeout: float = 600,
    parse: bool = True,
    meter: Meter | None = None,
    cpus: str | None = None,
) -> dict[str, Any]:
    """One zbanner-xdp run. With parse, the addresses it recorded a SYN-ACK / banner from. `cpus`:
    the only CPUs it may use (taskset's list)."""
    warm_up(args, tmp)
    meta, out = tmp / "meta.json", tmp / "out.jsonl"
    for f in (meta, out):
        f.unlink(missing_ok=True)
    own = meter is None
    meter = meter or Meter()
    pin = ["taskset", "-c", cpus] if cpus else []
    argv = in_scan(
        [*pin, ZB, "--blocklist", str(tmp / "empty"), "-q", "-o", str(out), "--metadata", str(meta), *args]
    )
    r, killed = meter.run(argv, timeout)
    res = meter.result() if own else {}
    if killed or r.returncode not in (0, 3):
        raise RuntimeError(f"zbanner-xdp failed (status {r.returncode}): {r.stderr.strip()[-400:]}")
    m = json.loads(meta.read_text())
    res.update(
        send_pps=m["send_rate_pps"],
        probes=m["packets_sent"]["probes"],
        send_s=round(m["packets_sent"]["probes"] / m["send_rate_pps"], 3) if m["send_rate_pps"] else 0.0,
        responses=m["responses"],
        drops=m.get("drops"),
        tx_mode=m["tx_mode"],
        exit_status=r.returncode,
    )
    if parse:
        synack: set[str] = set()
        banner: set[str] = set()
        stamps: list[float] = []
        with open(out, "rb") as fh:
            for line in fh:
                rec = orjson.loads(line)
                if rec["classification"] == "synack":
                    synack.add(rec["saddr"])
                elif rec["classification"] == "banner":
                    banner.add(rec["saddr"])
                    stamps.append(time.mktime(time.strptime(rec["timestamp"][:19], "%Y-%m-%dT%H:%M:%S")))
                    stamps[-1] += float(rec["timestamp"][19:-1] or 0)
        res["_synack"], res["_banner"] = synack, banner
        # Banners per second: first to last banner record, by the records' own timestamps.
        if len(stamps) > 1:
            res["banners_per_s"] = round(len(stamps) / max(max(stamps) - min(stamps), 1e-3))
    return res


def zmap(
    targets: list[str] | Path, tmp: Path, rate: str = "0", cooldown: float = 2, meter: Meter | None = None
) -> dict[str, Any]:
    """One ZMap SYN scan of port 80: the addresses that answered with a SYN-ACK."""
    out = tmp / "zmap.csv"
    out.unlink(missing_ok=True)
    tgt = ["-w", str(targets)] if isinstance(targets, Path) else list(targets)
    argv = [
        "zmap",
        "-i",
        lab.SCAN_IF,
        "-S",
        lab.SCAN_IP,
        "-G",
        lab.GATEWAY_MAC,
        "-p",
        "80",
        "-b",
        str(tmp / "empty"),
        "-r",
        rate,
        "-c",
        str(cooldown),
        "-o",
        str(out),
        "-q",
        "-f",
        "saddr",
        *tgt,
    ]
    own = meter is None
    meter = meter or Meter()
    r, killed = meter.run(in_scan(argv), timeout=600)
    res = meter.result() if own else {}
    if killed or r.returncode != 0:
        raise RuntimeError(f"zmap failed (status {r.returncode}): {r.stderr.strip()[-300:]}")
    lines = out.read_text().splitlines()[1:] if out.exists() else []
    res["_synack"] = {ln.strip() for ln in lines if ln.strip()}
    return res


HEARTBEAT = """
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
frame = bytes.fromhex(sys.argv[2] + sys.argv[3] + "88b5") + b"zbanner-xdp lab heartbeat".ljust(46, b"\\0")
for _ in range(int(sys.argv[4])):
    s.send(frame)
    time.sleep(0.1)
"""


@contextlib.contextmanager
def link_heartbeat(max_s: float) -> Iterator[None]:
    """Ten frames a second from the router to the scanner's veth while masscan runs (at most max_s).

    masscan's receive thread (libpcap, immediate mode) sleeps in poll() until a frame arrives,
    and only then sees that its --wait is over: on a quiet link it never does (its threads are
    done, its main thread prints "waiting -N-secs" forever, and its banners, written at exit, are
    lost). A real link is never that quiet. The frames (experimental ethertype 0x88b5, to the
    scanner's MAC) mean nothing to any tool.
    """
    mac = lab.SCAN_MAC.replace(":", "") + lab.GATEWAY_MAC.replace(":", "")
    argv = [PY, "-c", HEARTBEAT, lab.ROUTER_IF, mac[:12], mac[12:], str(int(max_s * 10))]
    proc = subprocess.Popen(lab.ns_exec_argv(lab.ROUTER_NS, argv), stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def masscan_argv(targets: list[str] | Path, rate: str, wait: float, out: Path) -> list[str]:
    """masscan from its own address on the scanner's link, port 80, JSON output."""
    tgt = ["-iL", str(targets)] if isinstance(targets, Path) else list(targets)
    return ["masscan", *tgt, "-p", "80", "--rate", rate, "--adapter", lab.SCAN_IF, "--adapter-ip", MASSCAN_IP,
            "--router-mac", lab.GATEWAY_MAC, "--wait", str(wait), "-oJ", str(out)]  # fmt: skip


def masscan(
    targets: list[str] | Path,
    tmp: Path,
    rate: str = "10000000",
    wait: float = 2,
    banners: bool = False,
    meter: Meter | None = None,
    est_send_s: float = 60,
) -> dict[str, Any]:
    """One masscan run from its own address (see the docstring); never signalled before --wait ends."""
    out = tmp / "masscan.json"
    out.unlink(missing_ok=True)
    argv = masscan_argv(targets, rate, wait, out)
    if banners:
        argv.append("--banners")
    own = meter is None
    meter = meter or Meter()
    # Past sending + --wait + MASSCAN_GRACE: masscan 1.3.2 sometimes never exits (its threads are
    # done, its main thread keeps "waiting -N-secs"), and it writes banners only at exit. Such a
    # run is killed, flagged "invalid" and kept out of every figure.
    bound = est_send_s + wait + MASSCAN_GRACE
    with link_heartbeat(bound + 5):
        r, killed = meter.run(in_scan(argv), timeout=bound, stdout=subprocess.DEVNULL)
    res = meter.result() if own else {}
    opens, banner_ips = parse_masscan(out)
    res.update(_synack=opens, _banner=banner_ips, exit_status=r.returncode, hung=killed)
    if killed:
        res["invalid"] = f"killed after {bound:.0f} s: still running {MASSCAN_GRACE} s after its --wait"
    elif r.returncode != 0:
        res["invalid"] = f"exit status {r.returncode}: {r.stderr.strip()[-200:]}"
    return res


def parse_masscan(path: Path) -> tuple[set[str], set[str]]:
    """-oJ: one JSON object per line inside a bracketed list, with trailing commas."""
    opens: set[str] = set()
    banner_ips: set[str] = set()
    text = path.read_text(errors="replace") if path.exists() else ""
    for line in text.splitlines():
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
            svc = port.get("service") or {}
            if svc.get("name") == "http" and svc.get("banner"):
                banner_ips.add(rec.get("ip"))
    return opens, banner_ips


def nmap(hosts: set[str], tmp: Path, meter: Meter) -> set[str]:
    """nmap's HTTP grab on the given hosts (ZMap's hits); the hosts it got a response from."""
    if not hosts:
        return set()
    hosts_file, out = tmp / "nmap-hosts.txt", tmp / "nmap.xml"
    hosts_file.write_text("\n".join(sorted(hosts)) + "\n")
    out.unlink(missing_ok=True)
    r, killed = meter.run(in_scan(["nmap", *NMAP_OPTS, "-iL", str(hosts_file), "-oX", str(out)]), timeout=900)
    if killed or r.returncode != 0:
        raise RuntimeError(f"nmap failed (status {r.returncode}): {r.stderr.strip()[-300:]}")
    got: set[str] = set()
    for host in ET.parse(out).getroot().iter("host"):
        addr = host.find("address")
        for script in host.iter("script"):
            output = script.get("output", "")
            if addr is not None and script.get("id") == "http-headers" and "Server:" in output:
                got.add(addr.get("addr", ""))
    return got


def score(res: dict[str, Any], expected: set[str]) -> dict[str, Any]:
    """Counts against the ground truth; the address sets themselves stay out of the results files."""
    for key, name in (("_synack", "open_found"), ("_banner", "banners")):
        if key in res:
            found = res.pop(key)
            res[name] = len(found & expected)
            res[f"{name}_unexpected"] = len(found - expected)
    return res


def repeat(n: int, label: str, fn: Callable[[], dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        waited = quiesce()
        try:
            r = fn()
        except Exception as exc:  # a failed run is reported, not fatal
            r = {"error": str(exc)[-500:]}
        r["quiesce_s"] = waited
        out.append(r)
        print(f"    {label} run {i + 1}/{n}: {summary_line(r)}", flush=True)
    return out


def summary_line(r: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in r.items() if not isinstance(v, dict | set | list))


ROW_KEYS = (
    "wall_s",
    "peak_rss_kib",
    "largest_process_rss_kib",
    "cgroup_peak_kib",
    "send_pps",
    "open_found",
    "banners",
    "banners_per_s",
    "delivered",
    "delivered_pct",
    "delivered_pps",
    "synack_on_wire",
    "synack_seen",
    "server_closed_first",
    "request_sent",
    "response_on_wire",
    "nginx_warnings",
    # profile
    "cpu_user_ms",
    "cpu_system_ms",
    "machine_busy_ns_per_banner",
    "machine_user_ns_per_banner",
    "machine_system_ns_per_banner",
    "machine_softirq_ns_per_banner",
    "scanner_user_ns_per_banner",
    "scanner_system_ns_per_banner",
    "recv_ns_per_run",
    "recv_ns_per_banner",
    "gen_ns_per_run",
    "gen_ns_per_banner",
    "emu_ns_per_run",
    "emu_ns_per_banner",
)


def row(label: str, runs: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"label": label, **extra, "summary": tables.summarize(runs, ROW_KEYS), "runs": runs}


# --------------------------------------------------------------------------- masscan's sanity check


def masscan_sanity(tmp: Path) -> dict[str, Any]:
    """masscan's banner path must work in the lab before any masscan banner figure is published.

    A run that hangs at exit says nothing about the banner path (and loses its banners): it is
    tried again, up to three times in all; the first run that ends decides.
    """
    exp = expected_set(net_addrs(SANITY_NET))
    attempts = []
    for _ in range(3):
        quiesce()
        r = masscan([SANITY_NET], tmp, rate=str(SANITY_RATE), wait=REAL_WAIT, banners=True, est_send_s=1)
        attempts.append(score(r, exp))
        if not r.get("hung"):
            break
    last = attempts[-1]
    passed = not last.get("invalid") and last["banners"] * 100 >= SANITY_PCT * len(exp)
    print(
        f"  masscan sanity: {last['banners']} of {len(exp)} banners at {SANITY_RATE} pps "
        f"({len(attempts)} attempt(s)): {'passed' if passed else 'FAILED'}",
        flush=True,
    )
    return {
        "net": SANITY_NET,
        "rate": SANITY_RATE,
        "wait_s": REAL_WAIT,
        "threshold_pct": SANITY_PCT,
        "expected": len(exp),
        "banners": last["banners"],
        "passed": passed,
        "hung_attempts": sum(1 for a in attempts if a.get("hung")),
        "attempts": attempts,
    }


# --------------------------------------------------------------------------- scenarios


def scenario_syn_real(runs: int, tmp: Path) -> dict[str, Any]:
    print("syn-real: 65,536 addresses x port 80, real kernel responders", flush=True)
    addrs = net_addrs(lab.BIG_NET)
    exp = expected_set(addrs)
    rows = []
    syn = ["--rate", "0", "--cooldown", "2", "scan", lab.BIG_NET, "-p", "80"]
    rows.append(
        row(
            "zbanner-xdp `--tx packet` (AF_PACKET)",
            repeat(runs, "zbanner-xdp --tx packet", lambda: score(zb(["--tx", "packet", *syn], tmp), exp)),
        )
    )
    with emulator(PASS_NET):
        rows.append(
            row(
                "zbanner-xdp `--tx xdp` (kernel generator)",
                repeat(runs, "zbanner-xdp --tx xdp", lambda: score(zb(["--tx", "xdp", *syn], tmp), exp)),
            )
        )
    tv = tool_versions()
    rows.append(
        row(
            f"ZMap {tv['zmap']} `-r 0`",
            repeat(runs, "zmap", lambda: score(zmap([lab.BIG_NET], tmp, rate="0", cooldown=2), exp)),
        )
    )
    rows.append(
        row(
            f"masscan {tv['masscan']} `--rate 10M`",
            repeat(runs, "masscan", lambda: score(masscan([lab.BIG_NET], tmp, wait=2, est_send_s=5), exp)),
        )
    )
    return {"ground_truth": {"targets": len(addrs), "synack": len(exp)}, "rows": rows}


def _xdp_packets() -> int:
    """Frames the router's scan-facing veth ran XDP on, over its queues (one per CPU: a generator
    thread's frames go to its CPU's queue)."""
    out = sh(lab.ns_exec_argv(lab.ROUTER_NS, ["ethtool", "-S", lab.ROUTER_IF])).stdout
    return sum(int(n) for n in re.findall(r"rx_queue_\d+_xdp_packets: (\d+)", out))


def scenario_syn_sink(runs: int, tmp: Path) -> dict[str, Any]:
    """Sending alone: 1,048,576 SYNs into a range whose frames an XDP sink counts and drops."""
    print("syn-sink: 1,048,576 SYNs to a silent range (no replies): the send path alone", flush=True)
    net, ports = "198.19.64.0/18", "1-64"
    probes = ipaddress.ip_network(net).num_addresses * 64
    # IPv6 (issue 16): the same number of SYNs on the same path, into the lab's silent IPv6 range
    # (65,536 addresses x 16 ports), which the sink drops and counts as it does the IPv4 range.
    net6, ports6 = str(ipaddress.ip_network(lab.BLACKHOLE_NET6)), "1-16"
    assert ipaddress.ip_network(net6).num_addresses * 16 == probes
    v4, v6 = (net, ports), (net6, ports6)
    rows = []
    with emulator(net, sink=True, extra=("--sink6", str(ipaddress.ip_network(net6).supernet(new_prefix=64)))):
        for name, args, (where, which) in (
            ("AF_PACKET (PACKET_TX_RING from numpy), `--rate 0`", ["--tx", "packet", "--rate", "0"], v4),
            ("AF_PACKET, `--rate 500K`", ["--tx", "packet", "--rate", "500K"], v4),
            ("kernel generator (`xdp_gen`, live frames), `--rate 0`", ["--tx", "xdp", "--rate", "0"], v4),
            ("kernel generator, `--rate 1M`", ["--tx", "xdp", "--rate", "1M"], v4),
            ("kernel generator, `--rate 3M`", ["--tx", "xdp", "--rate", "3M"], v4),
            (
                "kernel generator, `--tx-threads 2` (both CPUs), `--rate 0`",
                ["--tx", "xdp", "--tx-threads", "2", "--rate", "0"],
                v4,
            ),
            ("IPv6, AF_PACKET, `--rate 0`", ["--tx", "packet", "--rate", "0"], v6),
            ("IPv6, kernel generator, `--rate 0`", ["--tx", "xdp", "--rate", "0"], v6),
            ("IPv6, kernel generator, `--rate 1M`", ["--tx", "xdp", "--rate", "1M"], v6),
        ):

            def one(args: list[str] = args, where: str = where, which: str = which) -> dict[str, Any]:
                before = _xdp_packets()
                r = zb([*args, "--cooldown", "0.5", "scan", where, "-p", which], tmp, parse=False)
                delivered = _xdp_packets() - before
                return {
                    **r,
                    "delivered": delivered,
                    "delivered_pct": round(100 * delivered / probes, 2),
                    "delivered_pps": round(delivered / r["send_s"]) if r["send_s"] else None,
                }

            rows.append(row(name, repeat(runs, name, one)))
    return {"ground_truth": {"probes": probes}, "rows": rows}


def scenario_syn_emu(runs: int, tmp: Path) -> dict[str, Any]:
    print("syn-emu: 1,048,576 (and 4,194,304) targets answered by the XDP emulator, 50 % open", flush=True)
    few = ["-f", "saddr,sport,classification"]  # ZMap's default output is saddr alone
    kr = ["--kernel-replies"]
    us = ["--no-kernel-replies"]  # user space's replies (the default until 2026-12-05)
    cases = [
        (
            "1M targets, AF_PACKET, `--no-kernel-replies`, `--rate 0`",
            ["--tx", "packet", "--rate", "0"],
            us,
            range(1, 17),
        ),  # fmt: skip
        (
            "1M targets, kernel generator, `--no-kernel-replies`, `--rate 0`",
            ["--tx", "xdp", "--rate", "0"],
            us,
            range(1, 17),
        ),  # fmt: skip
        (
            "1M targets, kernel generator + `--kernel-replies`, `--rate 0`",
            ["--tx", "xdp", "--rate", "0"],
            kr,
            range(1, 17),
        ),
        (
            "1M targets, kernel generator + `--kernel-replies`, `--rate 1M`",
            ["--tx", "xdp", "--rate", "1M"],
            kr,
            range(1, 17),
        ),
        ("4M targets, same, `--rate 1M`, full records", ["--tx", "xdp", "--rate", "1M"], kr, range(1, 65)),
        (
            "4M targets, same, `--rate 1M`, `-f saddr,sport,classification`",
            ["--tx", "xdp", "--rate", "1M", *few],
            kr,
            range(1, 65),
        ),
    ]
    rows = []
    for name, pre, post, ports in cases:
        expected = emu_expected_open(EMU_NET, ports, 500)
        probes = ipaddress.ip_network(EMU_NET).num_addresses * len(ports)
        spec = f"{ports.start}-{ports.stop - 1}"

        def one(pre: list[str] = pre, post: list[str] = post, spec: str = spec, probes: int = probes) -> dict:
            with emulator(EMU_NET, open_permil=500) as counters:
                r = zb([*pre, "--cooldown", "1", "scan", EMU_NET, "-p", spec, *post], tmp, parse=False)
            delivered = counters.get("syn_open", 0) + counters.get("syn_closed", 0)
            return {
                **r,
                "open_found": r["responses"].get("synack", 0),
                "delivered": delivered,
                "delivered_pct": round(100 * delivered / probes, 2),
                "delivered_pps": round(delivered / r["send_s"]) if r["send_s"] else None,
            }

        rows.append(row(name, repeat(runs, name, one), expected_open=expected, probes=probes))
    return {"ground_truth": {"emulator_seed": EMU_SEED, "open_permil": 500}, "rows": rows}


def scenario_banner(runs: int, tmp: Path) -> dict[str, Any]:
    print("banner: 65,536 targets (port 22), emulator server-first banner, 0/10/50/100 % open", flush=True)
    rows = []
    # (masscan is not in this one: against the emulator it finds the open ports but records no
    # banner and never exits — its TCP stack waits for a close that a stateless emulator never
    # sends. It is compared on real nginx in banner-real and open-ratio.)
    for pct in (0, 10, 50, 100):
        expected = emu_expected_open(EMU_NET, range(22, 23), pct * 10)
        for label, extra in (
            ("zbanner-xdp `--no-kernel-replies`", ["--no-kernel-replies"]),
            ("zbanner-xdp (default: in-kernel replies)", ["--kernel-replies"]),
        ):

            def one(pct: int = pct, extra: list[str] = extra) -> dict[str, Any]:
                with emulator(EMU_NET, open_permil=pct * 10):
                    args = [
                        "--rate",
                        "0",
                        "--cooldown",
                        "2",
                        "scan",
                        EMU_NET,
                        "-p",
                        "22",
                        "--probe",
                        "ssh",
                        *extra,
                    ]
                    r = zb(args, tmp)  # parsed: banners per second from the records' timestamps
                r.pop("_synack"), r.pop("_banner")
                return {**r, "banners": r["responses"].get("banner", 0)}

            rows.append(
                row(f"{pct} % open, {label}", repeat(runs, f"{pct}% {label}", one), expected_banners=expected)
            )
    rows += banner_more(runs, tmp)
    return {"ground_truth": {"targets": 65536, "emulator_seed": EMU_SEED}, "rows": rows}


# An HTTP response head as nginx sends it (HEAD /; 238 bytes): the emulator answers the probe's
# request with it. On a veth its answer can be at most ~180 bytes longer than the request's frame
# (lab/emulator.py), so not a head with a body.
EMU_HTTP = (
    "HTTP/1.1 200 OK\\r\\nServer: nginx/1.22.1\\r\\nDate: Sat, 05 Dec 2026 10:00:00 GMT\\r\\n"
    "Content-Type: text/html\\r\\nContent-Length: 615\\r\\nLast-Modified: Tue, 13 Jun 2023 15:08:10 GMT"
    '\\r\\nConnection: keep-alive\\r\\nETag: "6488865a-267"\\r\\nAccept-Ranges: bytes\\r\\n\\r\\n'
)
GLOBAL_FLAGS = ("--rate", "--tx-threads")  # banner_more's options that take a value and precede `scan`
ONE_CPU = "@one-cpu"  # banner_more: not an option of the scanner's; the run is confined to CPU 1
SUSTAINED_PORTS = "1000-1015"  # 16 ports x 65,536 addresses: 1,048,576 targets, ~2 s at full speed


def _split_global(extra: list[str]) -> tuple[list[str], list[str]]:
    """Options that precede `scan` (GLOBAL_FLAGS and their values) and the scan's own."""
    glob = {i for i, a in enumerate(extra) if a in GLOBAL_FLAGS}
    glob |= {i + 1 for i in glob}
    return [a for i, a in enumerate(extra) if i in glob], [a for i, a in enumerate(extra) if i not in glob]


def banner_more(runs: int, tmp: Path) -> list[dict[str, Any]]:
    """Issue 17's other banner figures: the HTTP default probe, a scan long enough that the
    receiver's own pace decides (rings absorb a 65,536-target burst), and --rate 1M at 50 % open."""
    rows = []
    n16 = 16 * 65536
    http, n_kr, r1m = "HTTP (`--probe http`, 238-byte response)", ["--no-kernel-replies"], ["--rate", "1M"]
    cases: list[tuple[str, str, str, int, list[str], str | None, int]] = [
        # (label, ports, probe, open permil, extra options, emulator banner (None: SSH), targets);
        # ONE_CPU among the options: the scan may use CPU 1 only (and the lab's softirq work of
        # its frames, the emulator's included, runs where it sends).
        (f"{http}, 100 % open, default", "80", "http", 1000, [], EMU_HTTP, 65536),
        (f"{http}, 100 % open, `--no-kernel-replies`", "80", "http", 1000, n_kr, EMU_HTTP, 65536),
        ("100 % open, default, one CPU (`taskset -c 1`)", "22", "ssh", 1000, [ONE_CPU], None, 65536),
        (
            "100 % open, default, `--tx-threads 2` (both CPUs generate)",
            "22",
            "ssh",
            1000,
            ["--tx-threads", "2"],
            None,
            65536,
        ),
        ("1,048,576 targets (16 ports), 100 % open, default", SUSTAINED_PORTS, "ssh", 1000, [], None, n16),
        ("1,048,576 targets, 50 % open, default, `--rate 1M`", SUSTAINED_PORTS, "ssh", 500, r1m, None, n16),
    ]
    for label, ports, probe, permil, extra, banner, targets in cases:
        lo, _, hi = ports.partition("-")
        expected = emu_expected_open(EMU_NET, range(int(lo), int(hi or lo) + 1), permil)

        def one(
            ports: str = ports, probe: str = probe, permil: int = permil, extra: list[str] = extra,
            banner: str | None = banner, targets: int = targets,
        ) -> dict[str, Any]:  # fmt: skip
            emu: dict[str, Any] = {"server_first": banner is None}
            if banner is not None:
                emu["banner"] = banner
            cpus = "1" if ONE_CPU in extra else None
            pre, post = _split_global([a for a in extra if a != ONE_CPU])
            rate = [] if "--rate" in pre else ["--rate", "0"]
            args = [*rate, "--cooldown", "2", *pre, "scan", EMU_NET, "-p", ports, "--probe", probe, *post]
            with emulator(EMU_NET, open_permil=permil, **emu) as counters:
                r = zb(args, tmp, cpus=cpus)
            r.pop("_synack"), r.pop("_banner")
            delivered = counters.get("syn_open", 0) + counters.get("syn_closed", 0)
            return {
                **r,
                "banners": r["responses"].get("banner", 0),
                "delivered": delivered,
                "delivered_pct": round(100 * delivered / targets, 2),
            }

        rows.append(row(label, repeat(runs, label, one), expected_banners=expected, targets=targets))
    return rows


def scenario_banner_real(runs: int, tmp: Path) -> dict[str, Any]:
    """HTTP banners from real nginx on 65,536 addresses, the same cooldown/wait for every tool."""
    print(f"banner-real: HTTP banners from nginx, 65,536 addresses, cooldown/wait {REAL_WAIT} s", flush=True)
    addrs = net_addrs(lab.BIG_NET)
    exp = expected_set(addrs)
    rows = []
    for rate in ("0", "50K"):
        args = [
            "--rate",
            rate,
            "--cooldown",
            str(REAL_WAIT),
            "scan",
            lab.BIG_NET,
            "-p",
            "80",
            "--probe",
            "http",
        ]
        label = f"zbanner-xdp `--probe http --rate {rate}`"
        rows.append(row(label, repeat(runs, label, lambda args=args: score(zb(args, tmp), exp))))
    sanity = masscan_sanity(tmp)
    if sanity["passed"]:
        for rate in ("10000000", "50000"):
            label = f"masscan `--banners --rate {'10M' if rate == '10000000' else '50K'}`"

            def one(rate: str = rate) -> dict[str, Any]:
                return score(
                    masscan([lab.BIG_NET], tmp, rate=rate, wait=REAL_WAIT, banners=True, est_send_s=5), exp
                )

            rows.append(row(label, repeat(runs, label, one)))
    return {
        "ground_truth": {"targets": len(addrs), "banners": len(exp)},
        "cooldown_s": REAL_WAIT,
        "masscan_sanity": sanity,
        "rows": rows,
    }


# --- masscan-explain: captures


def analyse_capture(pcap: Path, expected: set[str]) -> dict[str, Any]:
    """Per masscan connection (target, source port): what crossed the scanner's veth.

    Parsed by hand (a few struct reads per frame) because dpkt objects are slow for ~1M frames;
    the capture keeps 96 bytes of each frame, so payload lengths come from the IP header.
    """
    me = struct.unpack("!I", ipaddress.ip_address(MASSCAN_IP).packed)[0]
    syn_sent: set[tuple[int, int]] = set()
    synack: set[tuple[int, int]] = set()
    request: set[tuple[int, int]] = set()
    closed_first: set[tuple[int, int]] = set()
    response: set[tuple[int, int]] = set()
    synack_at: dict[tuple[int, int], float] = {}
    hello_delay: list[float] = []  # first SYN-ACK to masscan's request, per connection
    scanner_rst = 0
    arp_reply = False
    with open(pcap, "rb") as fh:
        hdr = fh.read(24)
        if len(hdr) < 24:
            return {}
        endian = "<" if hdr[:4] == b"\xd4\xc3\xb2\xa1" else ">"
        rec = struct.Struct(endian + "IIII")
        while True:
            h = fh.read(16)
            if len(h) < 16:
                break
            sec, usec, caplen, _ = rec.unpack(h)
            f = fh.read(caplen)
            if len(f) < 14:
                continue
            etype = f[12:14]
            if etype == b"\x08\x06":  # ARP: masscan answering for its own address
                if len(f) >= 42 and f[20:22] == b"\x00\x02" and struct.unpack("!I", f[28:32])[0] == me:
                    arp_reply = True
                continue
            if etype != b"\x08\x00" or len(f) < 54 or f[23] != 6:
                continue
            ihl = (f[14] & 0x0F) * 4
            tot = struct.unpack("!H", f[16:18])[0]
            src, dst = struct.unpack("!II", f[26:34])
            t = 14 + ihl
            sport, dport = struct.unpack("!HH", f[t : t + 4])
            flags = f[t + 13]
            plen = tot - ihl - (f[t + 12] >> 4) * 4
            if src == me:
                key = (dst, sport)
                if flags & 0x04:
                    scanner_rst += 1
                if flags & 0x02:
                    syn_sent.add(key)
                elif plen > 0:
                    if key not in request and key in synack_at:
                        hello_delay.append(sec + usec / 1e6 - synack_at[key])
                    request.add(key)
            elif dst == me:
                key = (src, dport)
                if (flags & 0x12) == 0x12 and not flags & 0x04:
                    synack.add(key)
                    synack_at.setdefault(key, sec + usec / 1e6)
                    continue
                if plen > 0:
                    response.add(key)
                if flags & 0x05 and key not in request:  # FIN or RST before any request of ours
                    closed_first.add(key)

    def addrs(keys: set[tuple[int, int]]) -> set[str]:
        # only connections this run opened (stale retransmissions from earlier runs are ignored)
        return {str(ipaddress.ip_address(k[0])) for k in keys if k in syn_sent}

    def n(keys: set[tuple[int, int]]) -> int:
        return len(addrs(keys) & expected)

    return {
        "syn_sent": len({k[0] for k in syn_sent}),
        "synack_on_wire": n(synack),
        "server_closed_first": n(closed_first),
        "request_sent": n(request),
        "response_on_wire": n(response),
        "hello_delay_s": {
            "min": round(min(hello_delay), 2) if hello_delay else None,
            "median": round(float(np.median(hello_delay)), 2) if hello_delay else None,
            "max": round(max(hello_delay), 2) if hello_delay else None,
        },
        "scanner_side_rsts": scanner_rst,
        "masscan_answered_arp": arp_reply,
    }


def pcap_ring(tmp: Path) -> dict[str, dict[str, int]]:
    """The PACKET_RX_RING masscan's libpcap asks for, read from the setsockopt call with gdb."""
    if not shutil.which("gdb"):
        return {}
    script = tmp / "ring.gdb"
    script.write_text(
        "set pagination off\nset breakpoint pending on\n"
        "break setsockopt if $rsi==263 && $rdx==5\ncommands\nsilent\n"
        'printf "RING %u %u %u %u\\n", ((unsigned int*)$rcx)[0], ((unsigned int*)$rcx)[1], '
        "((unsigned int*)$rcx)[2], ((unsigned int*)$rcx)[3]\ncontinue\nend\nrun\n"
    )
    out: dict[str, dict[str, int]] = {}
    try:
        for gso in (True, False):
            set_gso(gso)
            masscan_args = masscan_argv(["198.18.0.0/30"], "100", 0, tmp / "ring.json")
            argv = ["gdb", "-q", "-batch", "-x", str(script), "--args", *masscan_args]
            r = sh(in_scan(argv), timeout=60)
            m = re.search(r"RING (\d+) (\d+) (\d+) (\d+)", r.stdout)
            if m:
                bs, bn, fs, fn = (int(x) for x in m.groups())
                out[f"GSO {'on' if gso else 'off'}"] = {
                    "block_size": bs,
                    "block_nr": bn,
                    "frame_size": fs,
                    "frame_nr": fn,
                }
    finally:
        set_gso(False)
    return out


@contextlib.contextmanager
def nginx_budget(workers: int, connections: int) -> Iterator[None]:
    """Run the lab's nginx with another connection budget for a while (config rewrite + SIGHUP).

    masscan-explain uses it to put back the budget the lab had when the bench found 3 % of
    masscan's banners (1 worker x 4096 connections), next to today's (see lab_files/nginx.conf).
    """
    conf = Path(lab.STATE_DIR, "nginx.conf")
    original = conf.read_text()
    master = int(Path(lab.STATE_DIR, "run", "nginx.pid").read_text())

    def reload(text: str, n: int) -> None:
        conf.write_text(text)
        os.kill(master, signal.SIGHUP)
        t0 = time.monotonic()
        # The old workers finish their connections and exit; wait until only the new ones remain.
        while time.monotonic() - t0 < 30:
            kids = sh(["pgrep", "-P", str(master)], timeout=10).stdout.split()
            if len(kids) == n:
                break
            time.sleep(0.5)

    changed = re.sub(r"worker_processes \d+;", f"worker_processes {workers};", original)
    changed = re.sub(r"worker_connections \d+;", f"worker_connections {connections};", changed)
    default_workers = int(re.search(r"worker_processes (\d+);", original).group(1))  # type: ignore[union-attr]
    reload(changed, workers)
    try:
        yield
    finally:
        reload(original, default_workers)


def scenario_masscan_explain(runs: int, tmp: Path) -> dict[str, Any]:
    """masscan --banners on 65,536 nginx addresses under tcpdump, with and without each lab artifact."""
    rate = "50000"
    print(f"masscan-explain: masscan --banners, 65,536 addresses, {rate} pps, captured", flush=True)
    addrs = net_addrs(lab.BIG_NET)
    exp = expected_set(addrs)
    rows = []
    # (label, nginx workers, connections per worker, GSO on the scanner's veth)
    configs = [
        ("the old lab: nginx 1 x 4,096 connections, GSO on", 1, 4096, True),
        ("nginx 1 x 4,096 connections, GSO off", 1, 4096, False),
        ("nginx 8 x 16,384 connections, GSO on", 8, 16384, True),
        ("today's lab: nginx 8 x 16,384 connections, GSO off", 8, 16384, False),
    ]

    def one(gso: bool) -> dict[str, Any]:
        set_gso(gso)
        pcap = tmp / "masscan.pcap"
        pcap.unlink(missing_ok=True)
        # Snap 96 bytes and a 256 MiB buffer: the capture itself must not drop (checked below).
        tcpdump = ["tcpdump", "-i", lab.SCAN_IF, "-n", "-B", "262144", "-s", "96", "-w", str(pcap)]
        cap = subprocess.Popen(
            in_scan(["timeout", "-s", "INT", "180", *tcpdump]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(1.5)
            warn0 = nginx_warnings()
            r = masscan([lab.BIG_NET], tmp, rate=rate, wait=REAL_WAIT, banners=True, est_send_s=5)
            time.sleep(1.0)
        finally:
            cap.send_signal(signal.SIGINT)
            _, err = cap.communicate(timeout=60)
        m = re.search(r"(\d+) packets dropped by kernel", err)
        r = score(r, exp)
        r["synack_seen"] = r.pop("open_found")
        r["nginx_warnings"] = nginx_warnings() - warn0
        r["capture_dropped"] = int(m.group(1)) if m else None
        r.update(analyse_capture(pcap, exp))
        pcap.unlink(missing_ok=True)
        return r

    try:
        for label, workers, conns, gso in configs:
            with nginx_budget(workers, conns):
                runs_ = repeat(runs, label, lambda gso=gso: one(gso))
            rows.append(row(label, runs_, nginx_workers=workers, nginx_connections=conns, gso=gso))
        ring = pcap_ring(tmp)
    finally:
        set_gso(False)
    return {
        "ground_truth": {"targets": len(addrs), "banners": len(exp)},
        "rate": int(rate),
        "wait_s": REAL_WAIT,
        "pcap_ring": ring,
        "rows": rows,
    }


# --- open-ratio (ZBanner paper section 5.4)


def open_ratio_targets(n: int, pct: int) -> tuple[list[str], set[str]]:
    """n addresses, pct % of them nginx on :80 (OPEN_POOL), the rest silent (SILENT_POOL), shuffled."""
    n_open = round(n * pct / 100)
    if n_open > OPEN_POOL[1] or n - n_open > SILENT_POOL[1]:
        raise ValueError(
            f"--targets {n}: the lab has {OPEN_POOL[1]} open and {SILENT_POOL[1]} silent addresses"
        )
    rng = np.random.default_rng(1000 * n + pct)  # the same sets every time
    base_o = int(ipaddress.ip_address(OPEN_POOL[0]))
    base_s = int(ipaddress.ip_address(SILENT_POOL[0]))
    opens = base_o + rng.choice(OPEN_POOL[1], n_open, replace=False)
    silent = base_s + rng.choice(SILENT_POOL[1], n - n_open, replace=False)
    addrs = [str(ipaddress.ip_address(int(a))) for a in np.concatenate([opens, silent])]
    rng.shuffle(addrs)
    exp = expected_set(addrs)
    assert len(exp) == n_open, "lab ground truth disagrees with the pools"  # the oracle decides
    return addrs, exp


ZB_RATES = ("0", "1M", "300K", "100K", "30K", "10K")
MASSCAN_RATES = ("10000000", "1000000", "300000", "100000", "30000", "10000", "3000", "1000")
ZMAP_RATES = ("0", "1000000", "300000", "100000", "30000", "10000")


def open_ratio_run(tool: str, rate: str, addrs: list[str], exp: set[str], tmp: Path) -> dict[str, Any]:
    targets = tmp / "targets.txt"
    targets.write_text("\n".join(addrs) + "\n")
    if tool == "zbanner-xdp":
        args = ["--rate", rate, "--cooldown", str(REAL_WAIT), "scan", *addrs, "-p", "80", "--probe", "http"]
        return score(zb(args, tmp), exp)
    if tool == "masscan":
        return score(masscan(targets, tmp, rate=rate, wait=REAL_WAIT, banners=True, est_send_s=10), exp)
    # ZMap then nmap on ZMap's hits, in one cgroup: two passes through OS sockets (the ZGrab model).
    meter = Meter()
    z = zmap(targets, tmp, rate=rate, cooldown=REAL_WAIT, meter=meter)
    hits = z.pop("_synack")
    t_zmap = meter.wall_s
    got = nmap(hits & set(addrs), tmp, meter)
    res = meter.result()
    res.update(zmap_wall_s=round(t_zmap, 3), nmap_wall_s=round(max(res["wall_s"] - t_zmap, 0.0), 3))
    res.update(_synack=hits, _banner=got)
    return score(res, exp)


def scenario_open_ratio(n: int, runs: int, tmp: Path) -> dict[str, Any]:
    print(
        f"open-ratio: {n:,} targets, 0..100 % nginx, the rest silent; cooldown/wait {REAL_WAIT} s", flush=True
    )
    sanity = masscan_sanity(tmp)
    tools = ["zbanner-xdp", "zmap+nmap"] + (["masscan"] if sanity["passed"] else [])
    # Each tool's rate: the highest at which it loses nothing on the 100 %-open set. "Nothing" is
    # measured against the tool's own ceiling, its result at the slowest candidate rate (ZMap misses
    # the reply to its very first probe at any rate in this lab, so it never reaches the ground
    # truth); then a sweep from fast to slow stops at the first rate that matches it. One run each.
    addrs, exp = open_ratio_targets(n, 100)
    rates: dict[str, dict[str, Any]] = {}

    def trial(tool: str, rate: str) -> dict[str, Any]:
        quiesce()
        try:
            r = open_ratio_run(tool, rate, addrs, exp, tmp)
        except Exception as exc:
            r = {"error": str(exc)[-300:]}
        print(f"  sweep {tool} rate {rate}: {r.get('banners')} of {len(exp)}", flush=True)
        return {
            "rate": rate,
            "banners": None if r.get("error") or r.get("invalid") else r.get("banners"),
            "expected": len(exp),
            "wall_s": r.get("wall_s"),
            "error": r.get("error") or r.get("invalid"),
        }

    for tool, candidates in (
        ("zbanner-xdp", ZB_RATES),
        ("masscan", MASSCAN_RATES),
        ("zmap+nmap", ZMAP_RATES),
    ):
        if tool not in tools:
            continue
        ref = trial(tool, candidates[-1])
        tried = [ref]
        chosen = candidates[-1]
        for rate in candidates[:-1]:
            t = trial(tool, rate)
            tried.append(t)
            if t["banners"] is not None and ref["banners"] is not None and t["banners"] >= ref["banners"]:
                chosen = rate
                break
        rates[tool] = {"chosen": chosen, "ceiling": ref["banners"], "expected": len(exp), "tried": tried}
    out_rows = []
    for pct in range(0, 101, 10):
        addrs, exp = open_ratio_targets(n, pct)
        for tool in tools:
            rate = rates[tool]["chosen"]
            runs_ = repeat(
                runs,
                f"{pct}% {tool} rate {rate}",
                lambda tool=tool, rate=rate, addrs=addrs, exp=exp: open_ratio_run(
                    tool, rate, addrs, exp, tmp
                ),
            )
            s = tables.summarize(runs_, ROW_KEYS)
            out_rows.append(
                {
                    "open_pct": pct,
                    "tool": tool,
                    "rate": rate,
                    "wall_s": s["wall_s"]["median"],
                    "banners": s["banners"]["median"],
                    "expected_banners": len(exp),
                    "peak_rss_mib": round(s["peak_rss_kib"]["median"] / 1024, 1)
                    if s["peak_rss_kib"]["median"]
                    else None,
                    "summary": s,
                    "runs": runs_,
                }
            )
    return {
        "targets": n,
        "port": 80,
        "cooldown_s": REAL_WAIT,
        "pools": {
            "open": f"{OPEN_POOL[0]} + {OPEN_POOL[1]}",
            "silent": f"{SILENT_POOL[0]} + {SILENT_POOL[1]}",
        },
        "commands": {
            "zbanner-xdp": f"zbanner-xdp --rate RATE --cooldown {REAL_WAIT} scan ADDRS -p 80 --probe http",
            "masscan": f"masscan -iL FILE -p 80 --rate RATE --adapter-ip {MASSCAN_IP} --wait {REAL_WAIT} "
            "--banners -oJ OUT",
            "zmap+nmap": f"zmap -w FILE -p 80 -r RATE -c {REAL_WAIT} -f saddr -o HITS; "
            f"nmap {' '.join(NMAP_OPTS)} -iL HITS -oX OUT",
        },
        "rates": rates,
        "masscan_sanity": sanity,
        "rows": out_rows,
    }


# --------------------------------------------------------------------------- profile (issue 17)

PROFILE_PROGS = ("xdp_recv", "xdp_gen", "xdp_responder")  # the scanner's two, the emulator's
_PROC_STAT_KINDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def _cpu_kinds() -> dict[str, int]:
    """Jiffies by kind, all CPUs (/proc/stat's first line)."""
    vals = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return dict(zip(_PROC_STAT_KINDS, vals, strict=True))


class ProgWatcher:
    """BPF programs' run time (kernel.bpf_stats_enabled) while a scan runs, read every 20 ms.

    The scanner's programs are loaded during the run and unloaded at its end, taking their
    statistics with them: the last reading before the unload is what counts (the scan's last
    20 ms are its cooldown, where they run next to nothing). Programs already loaded when the
    watcher starts count from their reading then. A name seen under two new ids means another
    scanner ran meanwhile: the run is flagged.
    """

    def __init__(self, names: tuple[str, ...] = PROFILE_PROGS) -> None:
        self.names = names
        self.base: dict[int, tuple[str, int, int]] = {}
        self.last: dict[int, tuple[str, int, int]] = {}
        self.ignored: set[int] = set()
        self._stop = threading.Event()
        self._read(self.base)
        self.last.update(self.base)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _read(self, into: dict[int, tuple[str, int, int]]) -> None:
        for pid in bpfsys.prog_ids():
            if pid in self.ignored:
                continue
            try:
                fd = bpfsys.prog_fd_by_id(pid)
            except OSError:
                continue  # unloaded meanwhile
            try:
                st = bpfsys.prog_stats(fd)
            finally:
                os.close(fd)
            if st[0] in self.names:
                into[pid] = st
            else:
                self.ignored.add(pid)

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            self._read(self.last)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        out: dict[str, Any] = {}
        for pid, (name, ns, cnt) in self.last.items():
            _, ns0, cnt0 = self.base.get(pid, (name, 0, 0))
            p = out.setdefault(name, {"run_ns": 0, "runs": 0, "ids": 0})
            p["run_ns"] += ns - ns0
            p["runs"] += cnt - cnt0
            p["ids"] += pid not in self.base
        return out


@contextlib.contextmanager
def bpf_stats() -> Iterator[None]:
    """kernel.bpf_stats_enabled=1 for the duration (it costs every program two clock reads a run)."""
    path = Path("/proc/sys/kernel/bpf_stats_enabled")
    old = path.read_text().strip()
    path.write_text("1")
    try:
        yield
    finally:
        path.write_text(old)


def perf_top(seconds: float, tmp: Path) -> subprocess.Popen[str]:
    """perf record of every CPU for `seconds` (started just before a scan)."""
    return subprocess.Popen(
        ["perf", "record", "-a", "-F", "999", "-q", "-o", str(tmp / "perf.data")]
        + ["--", "sleep", str(seconds)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def perf_report(tmp: Path, top: int = 12) -> list[dict[str, Any]]:
    """The busiest symbols, as shares of the samples on a busy CPU (the idle task's left out):
    share, process, symbol."""
    r = sh(
        ["perf", "report", "-i", str(tmp / "perf.data"), "--stdio", "--sort", "comm,sym",
         "--percent-limit", "0", "-q"],
        timeout=300,
    )  # fmt: skip
    rows = []
    for line in r.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.+?)\s*$", line)
        if m and m.group(2) != "swapper":
            rows.append((float(m.group(1)), m.group(2), m.group(3)))
    busy = sum(p for p, _, _ in rows) or 1.0
    rows.sort(key=lambda x: -x[0])
    return [{"pct": round(100 * p / busy, 1), "comm": c, "symbol": sym} for p, c, sym in rows[:top]]


PY_SPY = str(Path(sys.executable).parent / "py-spy")


def py_spy_top(args: list[str], tmp: Path, limit: int = 12) -> list[dict[str, Any]]:
    """One scan under py-spy (200 samples a second, threads on CPU only): the share of samples in
    each of the project's functions, as the deepest project frame of each sample."""
    raw = tmp / "py-spy.txt"
    raw.unlink(missing_ok=True)
    argv = [PY_SPY, "record", "-r", "200", "-f", "raw", "-o", str(raw), "--nonblocking", "--"]
    argv += [ZB, "--blocklist", str(tmp / "empty"), "-q", "-o", str(tmp / "out.jsonl"), *args]
    r = sh(in_scan(argv), timeout=300)
    if not raw.exists():
        return [{"error": r.stderr.strip()[-300:]}]
    counts: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        total += int(n)
        ours = [f for f in stack.split(";") if "zbanner_xdp/" in f or "/probes/" in f]
        key = ours[-1] if ours else "(outside the project: interpreter start-up, libraries)"
        key = re.sub(r" \((?:.*/)?((?:zbanner_xdp|probes)/[^:]+):\d+\)", r" (\1)", key)
        counts[key] = counts.get(key, 0) + int(n)
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:limit]
    return [{"pct": round(100 * n / max(total, 1), 1), "function": k} for k, n in top]


def scenario_profile(runs: int, tmp: Path) -> dict[str, Any]:
    """Where an SSH banner's time goes, default options and --kernel-replies."""
    print("profile: SSH banners from the emulator, 65,536 targets, 100 % open, --rate 0", flush=True)
    targets = ipaddress.ip_network(EMU_NET).num_addresses
    rows = []
    perf: dict[str, list[dict[str, Any]]] = {}
    spy: dict[str, list[dict[str, Any]]] = {}
    for label, extra in (
        ("`--no-kernel-replies`", ["--no-kernel-replies"]),
        ("default (in-kernel replies)", ["--kernel-replies"]),
    ):
        args = ["--rate", "0", "--cooldown", "2", "scan", EMU_NET, "-p", "22", "--probe", "ssh", *extra]

        def one(args: list[str] = args) -> dict[str, Any]:
            warm_up(args, tmp)
            with emulator(EMU_NET, open_permil=1000), bpf_stats():
                watcher = ProgWatcher()
                cpu0 = _cpu_kinds()
                r = zb(args, tmp)
                cpu1 = _cpu_kinds()
                progs = watcher.stop()
            r.pop("_synack"), r.pop("_banner")
            banners = r["responses"].get("banner", 0)
            if any(progs.get(n, {}).get("ids", 0) > 1 for n in ("xdp_recv", "xdp_gen")):
                raise RuntimeError("another scanner's programs ran during the run")
            jiffy_ns = 1e9 / os.sysconf("SC_CLK_TCK")
            per = max(banners, 1)
            out = {**r, "banners": banners, "progs": progs}
            for name, key in (("xdp_recv", "recv"), ("xdp_gen", "gen"), ("xdp_responder", "emu")):
                p = progs.get(name)
                if p and p["runs"]:
                    out[f"{key}_ns_per_run"] = round(p["run_ns"] / p["runs"], 1)
                    out[f"{key}_ns_per_banner"] = round(p["run_ns"] / per, 1)
            for kind in ("user", "system", "softirq"):
                out[f"machine_{kind}_ns_per_banner"] = round((cpu1[kind] - cpu0[kind]) * jiffy_ns / per)
            busy = sum(cpu1[k] - cpu0[k] for k in _PROC_STAT_KINDS if k not in ("idle", "iowait"))
            out["machine_busy_ns_per_banner"] = round(busy * jiffy_ns / per)
            if r.get("cpu_user_ms") is not None:
                out["scanner_user_ns_per_banner"] = round(r["cpu_user_ms"] * 1e6 / per)
                out["scanner_system_ns_per_banner"] = round(r["cpu_system_ms"] * 1e6 / per)
            return out

        rows.append(row(label, repeat(runs, label, one), expected_banners=targets))
        # One more run under perf (not among the figures: sampling perturbs them).
        if shutil.which("perf"):
            warm_up(args, tmp)
            with emulator(EMU_NET, open_permil=1000):
                rec = perf_top(6, tmp)
                time.sleep(0.2)
                zb(args, tmp, parse=False)
                _, err = rec.communicate(timeout=60)
            perf[label] = perf_report(tmp) if rec.returncode == 0 else [{"error": err.strip()[-300:]}]
        if Path(PY_SPY).exists():
            with emulator(EMU_NET, open_permil=1000):
                spy[label] = py_spy_top(args, tmp)
    return {
        "ground_truth": {"targets": targets, "emulator_seed": EMU_SEED, "open_permil": 1000},
        "perf_top": perf,
        "py_spy_top": spy,
        "rows": rows,
    }


def scenario_rss(runs: int, tmp: Path) -> dict[str, Any]:
    print("rss: peak RSS by target count and open ratio", flush=True)
    rows = []
    cases = [
        ("10k targets, SYN scan (emulator, 50 % open)", ["scan", "198.19.0.0/20", "-p", "1-3"], 500),
        ("1M targets, SYN scan (emulator, 50 % open)", ["scan", EMU_NET, "-p", "1-16"], 500),
        ("16M targets, SYN scan (emulator, 50 % open)", ["scan", EMU_NET, "-p", "1-256"], 500),
        ("65,536 SSH banner grabs, 0 % open", ["scan", EMU_NET, "-p", "22", "--probe", "ssh"], 0),
        ("65,536 SSH banner grabs, 100 % open", ["scan", EMU_NET, "-p", "22", "--probe", "ssh"], 1000),
    ]
    for name, args, permil in cases:

        def one(args: list[str] = args, permil: int = permil) -> dict[str, Any]:
            with emulator(EMU_NET, open_permil=permil):
                few = ["-f", "saddr,sport,classification"] if "1-256" in args else []
                r = zb(["--rate", "0", "--cooldown", "1", *few, *args], tmp, timeout=900, parse=False)
            return {**r, "banners": r["responses"].get("banner", 0)}

        rows.append(row(name, repeat(runs, name, one)))
    return {"rows": rows}


# --------------------------------------------------------------------------- main


SCENARIOS = tables.SCENARIOS


def save(out: Path, name: str, res: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if name == "open-ratio":
        rows = res.pop("rows")
        (out / "open-ratio.json").write_text(json.dumps(rows, indent=1, default=str) + "\n")
        (out / "open-ratio-meta.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
        tables.plot_open_ratio(out)
    else:
        (out / f"{name}.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    (out / "bench.md").write_text(tables.bench_md(out))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="runs per figure (default 3)")
    ap.add_argument("--only", nargs="*", choices=SCENARIOS)
    ap.add_argument("--targets", type=int, default=1024, help="open-ratio: addresses per target set")
    ap.add_argument("--out", type=Path, default=OUT, help="results directory (make bench: docs/bench)")
    ap.add_argument("--readme", action="store_true", help="then rewrite the README's tables from --out")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: needs root (sudo make bench)")
    ensure_peers()
    only = list(args.only or SCENARIOS)
    failed: list[str] = []
    versions = tool_versions()
    lab.down()
    lab.up()
    try:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            os.chmod(tmp, 0o755)
            (tmp / "empty").write_text("")
            for name in only:
                fn: dict[str, Callable[[], dict[str, Any]]] = {
                    "syn-real": lambda: scenario_syn_real(args.runs, tmp),
                    "syn-sink": lambda: scenario_syn_sink(args.runs, tmp),
                    "syn-emu": lambda: scenario_syn_emu(args.runs, tmp),
                    "banner": lambda: scenario_banner(args.runs, tmp),
                    "banner-real": lambda: scenario_banner_real(args.runs, tmp),
                    "masscan-explain": lambda: scenario_masscan_explain(args.runs, tmp),
                    "open-ratio": lambda: scenario_open_ratio(args.targets, args.runs, tmp),
                    "rss": lambda: scenario_rss(args.runs, tmp),
                    "profile": lambda: scenario_profile(args.runs, tmp),
                }
                before = load_snapshot()
                t0 = time.monotonic()
                try:
                    res = fn[name]()
                except Exception as exc:  # one broken scenario must not cost the others' figures
                    print(f"  {name} FAILED: {exc!r}; its results file is left as it was", flush=True)
                    failed.append(name)
                    continue
                res = {
                    "scenario": name,
                    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "runs_per_figure": args.runs,
                    "duration_s": round(time.monotonic() - t0, 1),
                    "machine": {"cpus": os.cpu_count(), **versions},
                    "load": {"before": before, "after": load_snapshot()},
                    **res,
                }
                save(args.out, name, res)  # each scenario's file survives a later failure
                print(f"  written: {args.out / name}.json", flush=True)
    finally:
        lab.down()
    print()
    print(tables.bench_md(args.out))
    if args.readme:
        tables.README.write_text(tables.render_readme(tables.README.read_text(), args.out))
        print("README.md: Measured tables rewritten")
    if failed:
        print(f"bench: failed scenarios: {', '.join(failed)}")
        return 1
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


def _records(tmp: Path) -> list[dict]:
    with open(tmp / "out.jsonl", "rb") as fh:
        return [json.loads(line) for line in fh]


def _spread(values: list[float]) -> dict:
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
            for x in _records(tmp)
            if x["classification"] == "banner" and x["success"]
        }
        shares.append(round(100.0 * len(got) / want, 2))
        walls.append(r["wall_s"])
        print(f"  auto: {len(got)}/{want} banners, {r['wall_s']} s", flush=True)
    return {"banners_pct": _spread(shares), "wall_s": _spread(walls), "targets": want}


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
        res = [x for x in _records(tmp) if x["classification"] == "banner" and x["lzr"]]
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
        "connections_per_service": _spread(per_service),
        "connections_by_protocol": {k: sorted(v) for k, v in sorted(per_proto.items())},
        "wall_s": _spread(walls),
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
def _fresh_lab() -> Iterator[Path]:
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
    with _fresh_lab() as tmp:
        res["auto"] = multistep_auto(args.runs, tmp)
        res["lzr"] = multistep_lzr(args.runs, tmp)
    (OUT / "multistep.json").write_text(json.dumps(res, indent=2))
    md = multistep_markdown(res)
    (OUT / "multistep.md").write_text(md)
    print()
    print(md)
    print(f"written: {OUT / 'multistep.json'}, {OUT / 'multistep.md'}")
    return 0


# --------------------------------------------------------------------------- certs (issue 13)
#
# `bench.py --only certs [--runs N] [--out DIR]`: TLS certificates with --banner-bytes from the lab's
# real nginx (TLS 1.2 ClientHello, max_version=1.2), against the same scan of the first segment only
# (the ServerHello, no certificate): certificates per second (records with tls.certificate, over the
# scan's wall time, start-up included) and peak RSS. Self-contained, like multistep.

CERTS_NET = "198.18.0.0/20"  # 4,096 addresses, 3,584 of them nginx (lab.expected)
CERTS_RATE = "5K"  # nginx's TLS handshakes (RSA signatures) on the lab's 2 cores are the bound
CERTS_ARGS = ["scan", CERTS_NET, "-p", "443", "--probe", "tls", "--probe-args", "max_version=1.2"]


def certs_run(runs: int, tmp: Path, extra: list[str]) -> dict:
    got, per_s, flow, rss, walls = [], [], [], [], []
    for _ in range(runs):
        r = zb(["--rate", CERTS_RATE, "--cooldown", "2", *CERTS_ARGS, *extra], tmp)
        # With --banner-bytes a result is a certificate; without, a banner (a ServerHello).
        recs = [x for x in _records(tmp) if x["classification"] == "banner"]
        got.append(sum(1 for x in recs if x["tls"].get("certificate")) if extra else len(recs))
        per_s.append(round(got[-1] / r["wall_s"], 1))
        flow.append(r.get("banners_per_s", 0))  # first to last record, by their timestamps
        rss.append(round(r["peak_rss_kib"] / 1024, 1))
        walls.append(r["wall_s"])
        print(f"  {extra or 'first segment'}: {got[-1]} results, {r['wall_s']} s, {rss[-1]} MiB", flush=True)
    return {
        "results": _spread(got),
        "per_s": _spread(per_s),
        "per_s_records": _spread(flow),
        "peak_rss_mib": _spread(rss),
        "wall_s": _spread(walls),
    }


def certs_markdown(res: dict) -> str:
    def spread(d: dict) -> str:
        return f"{d['median']} ({d['min']}-{d['max']})"

    rows = (
        ("--banner-bytes 16K: certificates", res["certs"]),
        ("first segment: ServerHellos", res["first_segment"]),
    )
    lines = [
        f"## TLS certificates from nginx (median (min-max) of {res['runs']} runs)",
        "",
        f"`zbanner-xdp --rate {CERTS_RATE} --cooldown 2 {' '.join(CERTS_ARGS)} [--banner-bytes 16K]`: "
        f"{res['targets']} addresses, {res['open']} of them nginx on 443. Per second: over the scan's wall "
        "time (start-up and cooldown included), and from the first record to the last.",
        "",
        "| scan | results | per second (wall) | per second (records) | peak RSS MiB | wall s |",
        "|---|---|---|---|---|---|",
        *(
            f"| {label} | {spread(d['results'])} | {spread(d['per_s'])} | {spread(d['per_s_records'])} | "
            f"{spread(d['peak_rss_mib'])} | {spread(d['wall_s'])} |"
            for label, d in rows
        ),
    ]
    return "\n".join(lines) + "\n"


def side_parser(only: str, description: str) -> argparse.ArgumentParser:
    """The options of a separate entry point (--only certs, certs-emu): --runs, --out."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--only", nargs="+", choices=[only], required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT)
    return ap


def side_start(ap: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bench: needs root (sudo make bench)")
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def side_save(out: Path, name: str, res: dict, md: str) -> None:
    (out / f"{name}.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (out / f"{name}.md").write_text(md)
    print()
    print(md)
    print(f"written: {out / f'{name}.json'}, {out / f'{name}.md'}")


def certs_main(argv: list[str]) -> int:
    args = side_start(side_parser("certs", "TLS certificates with --banner-bytes (issue 13)"), argv)
    res: dict = {
        "runs": args.runs,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count()},
        "targets": len(net_addrs(CERTS_NET)),
        "open": len(expected_set(net_addrs(CERTS_NET), 443)),
    }
    with _fresh_lab() as tmp:
        res["certs"] = certs_run(args.runs, tmp, ["--banner-bytes", "16K"])
        res["first_segment"] = certs_run(args.runs, tmp, [])
    side_save(args.out, "certs", res, certs_markdown(res))
    return 0


# --------------------------------------------------------------------------- certs-emu (issue 13)
#
# `bench.py --only certs-emu [--runs N] [--out DIR] [--rate R | --sweep R,R,...]`: --banner-bytes
# scans of the XDP emulator answering every target (100 % open) with a canned TLS 1.2 answer
# (ServerHello, Certificate, ServerHelloDone: tests/data/probes' sample, 685 bytes) in segments,
# statelessly, one per ACK of ours: the scanner's reassembly alone, without a server's handshake
# cost. At 4,096, 16,384 and 65,536 targets: results per second (first record to last), complete
# results against the ground truth (every target: the whole answer, byte for byte, and its
# certificate), peak RSS (bounded by --banner-table and 256 MiB of answer data: flat?). The rate is
# the highest of a short sweep (--sweep, one run each at 65,536 targets) that loses nothing.

CERTS_EMU_SAMPLE = ROOT / "tests" / "data" / "probes" / "tls__tls12_certificates.bin"
# The largest segment that fits the router veth's buffer after a bare ACK (the emulator would
# halve a larger one: more segments, irregular): 685 bytes in 5 segments.
CERTS_EMU_SEG = 160
CERTS_EMU_CASES = (  # targets, range, ports
    (4096, "198.19.0.0/20", "443"),
    (16384, "198.19.0.0/18", "443"),
    (65536, EMU_NET, "443"),
)
# Losses in early runs were the emulator attaching after the first SYNs (fixed in _emulator), not
# the path: at 10K every target was complete.
CERTS_EMU_SWEEP = ("1K", "2K", "4K")
# --tx packet: one send path for every run (auto picked the kernel generator in one run, AF_PACKET in another)
CERTS_EMU_SCAN = ["--probe", "tls", "--probe-args", "max_version=1.2", "--banner-bytes", "16K"]
CERTS_EMU_TX = ["--tx", "packet"]
# --rate counts every packet sent: per result a SYN, the probe, 4 ACKs and a RST (7), so results come
# at rate/7 and the probes queue behind the SYNs; 10 s of cooldown leaves room for that queue.
CERTS_EMU_COOLDOWN = "10"
CERTS_EMU_KEYS = ("complete", "complete_pct", "results_per_s", "peak_rss_mib", "wall_s", "truncated")


def _leaf_sha256(response: bytes) -> str:
    """The canned answer's leaf certificate, hashed: the truth a record's tls.certificate must give."""
    from cryptography import x509

    hs, i = b"", 0
    while i < len(response):
        n = int.from_bytes(response[i + 3 : i + 5], "big")
        hs += response[i + 5 : i + 5 + n]
        i += 5 + n
    j = 0
    while hs[j] != 11:
        j += 4 + int.from_bytes(hs[j + 1 : j + 4], "big")
    der = hs[j + 10 : j + 10 + int.from_bytes(hs[j + 7 : j + 10], "big")]
    x509.load_der_x509_certificate(der)  # a real certificate
    return hashlib.sha256(der).hexdigest()


def certs_emu_one(net: str, ports: str, rate: str, tmp: Path) -> dict[str, Any]:
    """One --banner-bytes scan of the emulator's canned answer, scored against every target."""
    sample = CERTS_EMU_SAMPLE.read_bytes()
    want_data, want_sha = base64.b64encode(sample).decode(), _leaf_sha256(sample)
    emu = ("--response-file", str(CERTS_EMU_SAMPLE), "--segment-bytes", str(CERTS_EMU_SEG))
    with emulator(net, server_first=False, extra=emu) as counters:
        args = [*CERTS_EMU_TX, "--rate", rate, "--cooldown", CERTS_EMU_COOLDOWN, "scan", net, "-p", ports]
        args += CERTS_EMU_SCAN
        r = zb(args, tmp)
    r.pop("_synack"), r.pop("_banner")
    lo, hi = ports.partition("-")[::2]
    targets = ipaddress.ip_network(net).num_addresses * (int(hi or lo) - int(lo) + 1)
    complete: set[tuple[str, int]] = set()
    results = truncated = 0
    with open(tmp / "out.jsonl", "rb") as fh:  # streamed: 262,144 records do not fit as dicts
        for line in fh:
            rec = orjson.loads(line)
            if rec["classification"] != "banner":
                continue
            results += 1
            truncated += bool(rec["truncated"])
            cert = (rec.get("tls") or {}).get("certificate") or {}
            if rec["data"] == want_data and cert.get("sha256") == want_sha and not rec["truncated"]:
                complete.add((rec["saddr"], rec["sport"]))
    meta = json.loads((tmp / "meta.json").read_text())
    return {
        **r,
        "targets": targets,
        "results": results,
        "complete": len(complete),
        "complete_pct": round(100 * len(complete) / targets, 3),
        "truncated": truncated,
        "results_per_s": r.get("banners_per_s"),
        "peak_rss_mib": round(r["peak_rss_kib"] / 1024, 1),
        "segments": meta.get("segments"),
        "emulator": dict(counters),
    }


def certs_emu_markdown(res: dict) -> str:
    def spread(s: dict) -> str:
        if s["median"] is None:
            return "–"
        return f"{s['median']:,} ({s['min']:,}-{s['max']:,})"

    lines = [
        "## --banner-bytes against the emulator's canned TLS answer "
        f"(median (min-max) of {res['runs']} runs)",
        "",
        f"`zbanner-xdp {' '.join(CERTS_EMU_TX)} --rate {res['rate']} --cooldown {CERTS_EMU_COOLDOWN} "
        f"scan NET -p PORTS {' '.join(CERTS_EMU_SCAN)}`; the "
        f"emulator answers every target with {res['response_bytes']} bytes (ServerHello, Certificate, "
        f"ServerHelloDone) in segments of {CERTS_EMU_SEG} bytes, one per ACK. Complete: the whole answer "
        "byte for byte and its certificate, against every target. Per second: first record to last.",
        "",
        "| targets | complete | per second (records) | peak RSS MiB | wall s |",
        "|---|---|---|---|---|",
    ]
    for rw in res["rows"]:
        sm = rw["summary"]
        lines.append(
            f"| {rw['targets']:,} | {spread(sm['complete'])} | {spread(sm['results_per_s'])} | "
            f"{spread(sm['peak_rss_mib'])} | {spread(sm['wall_s'])} |"
        )
    if res.get("sweep"):
        lines += ["", f"Rate sweep at {CERTS_EMU_CASES[1][0]:,} targets (one run each): " + ", ".join(
            f"{s['rate']}: {s.get('complete', 'error')} complete" for s in res["sweep"]) + "."]  # fmt: skip
    return "\n".join(lines) + "\n"


def certs_emu_main(argv: list[str]) -> int:
    ap = side_parser("certs-emu", "--banner-bytes against the emulator's canned answer (issue 13)")
    ap.add_argument("--rate", default=None, help="this rate, no sweep")
    ap.add_argument("--sweep", default=",".join(CERTS_EMU_SWEEP), help="rates to try (default %(default)s)")
    args = side_start(ap, argv)
    res: dict = {
        "runs": args.runs,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count()},
        "response_bytes": len(CERTS_EMU_SAMPLE.read_bytes()),
        "segment_bytes": CERTS_EMU_SEG,
        "sweep": [],
    }
    with _fresh_lab() as tmp:
        rate = args.rate
        if rate is None:
            _, net, ports = CERTS_EMU_CASES[1]  # 16,384 targets
            for cand in args.sweep.split(","):
                quiesce()
                try:
                    one = certs_emu_one(net, ports, cand, tmp)
                except Exception as exc:  # a failed run is reported, not fatal
                    one = {"error": str(exc)[-500:]}
                keys = ("complete", "complete_pct", "results_per_s", "send_pps", "truncated")
                keys += ("drops", "segments", "error")
                res["sweep"].append({"rate": cand, **{k: one[k] for k in keys if k in one}})
                print(f"  sweep {cand}: {summary_line(one)}", flush=True)
                if one.get("complete") != one.get("targets"):
                    break
                rate = cand
            if rate is None:
                sys.exit("bench: certs-emu: even the sweep's lowest rate lost results")
        res["rate"] = rate
        res["rows"] = []
        for targets, net, ports in CERTS_EMU_CASES:
            label = f"{targets:,} targets"
            runs = repeat(args.runs, label, lambda net=net, ports=ports: certs_emu_one(net, ports, rate, tmp))
            res["rows"].append({"label": label, "targets": targets, "net": net, "ports": ports,
                                "summary": tables.summarize(runs, CERTS_EMU_KEYS), "runs": runs})  # fmt: skip
    side_save(args.out, "certs-emu", res, certs_emu_markdown(res))
    return 0


if __name__ == "__main__":
    if "multistep" in sys.argv[1:]:
        sys.exit(multistep_main(sys.argv[1:]))
    if "certs-emu" in sys.argv[1:]:
        sys.exit(certs_emu_main(sys.argv[1:]))
    sys.exit(certs_main(sys.argv[1:]) if "certs" in sys.argv[1:] else main())
