"""Least privilege (README "Privileges"): the scan parses the network's bytes as nobody, with no capability
it no longer needs; it runs without root at all; it loads no cached code another user could have written."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.conftest import ZB
from tests.integration.conftest import NO_DROPS, read_records, scanner_argv
from zbanner_xdp import lab, privdrop

pytestmark = pytest.mark.privileged

NOBODY = 65534
CAP_BPF = 39
# What a non-root scan is given to start (README "Privileges"): privdrop's list, but for changing user.
START_CAPS = ("net_admin", "net_raw", "bpf", "perfmon", "sys_admin")
OPEN, RST = "198.18.0.0/24", "198.18.1.0/24"  # lab ground truth: port 80 open / RST on every address


def expected_kept() -> int:
    """The capabilities left after the drop, as a /proc mask: CAP_BPF only where bpf(2) refuses every
    command without it (before 6.5, unprivileged BPF disabled); from 6.5 on, held fds need none."""
    release = tuple(int(x) for x in platform.release().split(".")[:2])
    with open("/proc/sys/kernel/unprivileged_bpf_disabled") as fh:
        disabled = int(fh.read()) != 0
    return 1 << CAP_BPF if disabled and release < (6, 5) else 0


def _status(pid: int) -> list[dict[str, str]]:
    """/proc/<pid>/task/*/status of every thread: the capabilities are per thread."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            text = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:
            continue  # a thread that just ended
        out.append(dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line))
    return out


def watch_dropped(proc: subprocess.Popen, uid: int) -> list[dict[str, str]]:
    """Poll until the scanner runs as `uid` (it drops once set up) and its threads have started; their
    status lines, read while it scans."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        tasks = _status(proc.pid)
        if len(tasks) > 2 and all(t["Uid"].split() == [str(uid)] * 4 for t in tasks):
            return tasks
        time.sleep(0.05)
    out, err = proc.communicate(timeout=60)
    raise AssertionError(f"never saw the scan as uid {uid}: exit {proc.returncode}, {err[-2000:]}")


def scan_watching(argv: list[str], env: dict[str, str] | None = None) -> list[dict[str, str]]:
    """Run a scan to its end (exit 0); its threads' status lines, read while it scanned as nobody."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        tasks = watch_dropped(proc, NOBODY)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    return tasks


def check_scan(out: Path, meta: Path) -> dict:
    """Everything the scan found, recorded: port 80 open on OPEN, RST on RST; no drops."""
    doc = orjson.loads(meta.read_bytes())
    assert doc["reason"] == "completed" and doc["drops"] == NO_DROPS, doc
    recs = read_records(out)
    by = {(r["saddr"], r["classification"]) for r in recs}
    assert len(recs) == 512 == len(by)
    assert sum(1 for r in recs if r["classification"] == "synack") == 256
    assert {r["saddr"].rsplit(".", 1)[0] for r in recs} == {"198.18.0", "198.18.1"}
    return doc


@pytest.mark.parametrize("tx", ["xdp", "packet"])
def test_scan_as_root_parses_as_nobody_without_capabilities(
    lab_up, tmp_path: Path, empty_blocklist: str, tx: str
) -> None:
    """Started as root: once set up, every thread is nobody, in group nogroup only, with only the kept
    capabilities (bounding set too) and no_new_privs; the scan records all, its checkpoint and pcap
    included (written where nobody could not write: the test's root-only directory)."""
    out, meta, ck, pcap = (tmp_path / n for n in ("out.jsonl", "meta.json", "scan.ckpt", "scan.pcap"))
    argv = scanner_argv(
        *("--blocklist", empty_blocklist, "--rate", "400", "--cooldown", "2", "--seed", "3", "-q"),
        *("-o", str(out), "--metadata", str(meta), "--tx", tx),
        *("scan", OPEN, RST, "-p", "80", "--checkpoint", str(ck), "--pcap", str(pcap)),
    )
    tasks = scan_watching(argv)
    kept = f"{expected_kept():016x}"
    for t in tasks:
        assert t["Gid"].split() == [str(NOBODY)] * 4 and t["Groups"].strip() == "", t
        assert (t["CapEff"], t["CapPrm"], t["CapInh"], t["CapAmb"], t["CapBnd"]) == (kept,) * 5, t
        assert t["NoNewPrivs"] == "1", t
    doc = check_scan(out, meta)
    assert doc["tx_mode"] == ("xdp" if tx == "xdp" else "tx_ring")
    assert doc["privileges"].startswith(f"uid {NOBODY} (nobody), capabilities ")
    assert orjson.loads(ck.read_bytes())["finished"] is True
    assert doc["pcap"]["frames"] == 512, doc["pcap"]
    # Made by root before the drop, written by nobody to the end.
    assert out.stat().st_uid == 0 and len(out.read_bytes()) > 0


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    """A directory nobody owns (tmp_path's parents are root's alone)."""
    d = Path(tempfile.mkdtemp(prefix="zbp-priv-"))
    os.chmod(d, 0o755)
    os.chown(d, NOBODY, NOBODY)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_scan_without_root_with_only_the_start_capabilities(lab_up, nobody_dir: Path) -> None:
    """Never root: nobody with exactly START_CAPS as ambient capabilities (what systemd's
    AmbientCapabilities= or `setpriv` give); the scan keeps only what it needs once set up."""
    bl, out, meta, cache = (nobody_dir / n for n in ("blocklist", "out.jsonl", "meta.json", "cache"))
    bl.write_text("")
    # The compiled artefacts, made by a root scan into a cache the user then owns (README "Privileges").
    env = {**os.environ, "ZBANNER_CACHE_DIR": str(cache)}
    warm = subprocess.run(
        scanner_argv(
            "--blocklist", str(bl), "-q", "-o", os.devnull, "--cooldown", "0", "scan", OPEN, "-p", "80"
        ),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert warm.returncode == 0, warm.stderr
    subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(nobody_dir)], check=True)
    caps = ",".join(f"+{c}" for c in START_CAPS)
    setpriv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    setpriv += [f"--inh-caps=-all,{caps}", f"--ambient-caps=-all,{caps}", "--"]
    argv = lab.ns_exec_argv(
        lab.SCAN_NS,
        [*setpriv, ZB, "--blocklist", str(bl), "--rate", "400", "--cooldown", "2", "-q"]
        + ["-o", str(out), "--metadata", str(meta), "scan", OPEN, RST, "-p", "80"],
    )
    tasks = scan_watching(argv, env)
    kept = f"{expected_kept():016x}"
    for t in tasks:
        assert (t["CapEff"], t["CapPrm"], t["CapInh"], t["CapAmb"]) == (kept, kept, "0" * 16, "0" * 16), t
        assert t["NoNewPrivs"] == "1", t
    doc = check_scan(out, meta)
    assert doc["tx_mode"] == "xdp"  # the kernel generator, with cap_sys_admin for its namespace
    assert doc["privileges"].startswith(f"uid {NOBODY} (nobody), capabilities ")
    assert out.stat().st_uid == meta.stat().st_uid == NOBODY  # made by the scan, never root


def _refused(tmp_path: Path, env: dict[str, str], empty_blocklist: str) -> subprocess.CompletedProcess[str]:
    out = tmp_path / "out.jsonl"
    r = subprocess.run(
        scanner_argv("--blocklist", empty_blocklist, "-q", "-o", str(out), "scan", OPEN, "-p", "80"),
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert not out.exists()  # refused before anything was opened
    return r


@pytest.mark.parametrize("cache", ["bpf", "formatter"])
def test_a_cache_directory_others_can_write_is_refused(
    lab_up, tmp_path: Path, empty_blocklist: str, cache: str
) -> None:
    d = tmp_path / "cache"
    d.mkdir()
    os.chmod(d, 0o777)
    var = {"bpf": "ZBANNER_BPF_CACHE_DIR", "formatter": "ZBANNER_CACHE_DIR"}[cache]
    r = _refused(tmp_path, {var: str(d)}, empty_blocklist)
    assert r.stderr.strip() == (
        f"zbanner-xdp: error: refusing the cache directory {d}: writable by others (mode 777); it holds "
        f"code loaded with privileges (fix: chown root {d} && chmod go-w {d}, or remove it)"
    )


@pytest.mark.parametrize("suffix", [".json", ".so"])
def test_a_cached_file_others_can_write_is_refused(
    lab_up, tmp_path: Path, empty_blocklist: str, suffix: str
) -> None:
    """A scan fills a private cache; one of its entries made writable by others is then refused."""
    d = tmp_path / "cache"
    env = {"ZBANNER_CACHE_DIR": str(d)}
    first = subprocess.run(
        scanner_argv("--blocklist", empty_blocklist, "-q", "-o", os.devnull, "scan", OPEN, "-p", "80"),
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    assert first.returncode == 0, first.stderr
    entries = sorted(p for p in d.rglob(f"*{suffix}"))
    assert entries, list(d.rglob("*"))
    for p in entries:
        os.chmod(p, 0o666)
    r = _refused(tmp_path, env, empty_blocklist)
    assert r.stderr.startswith(f"zbanner-xdp: error: refusing the cached file {entries[0].parent}/"), r.stderr
    assert "writable by others (mode 666)" in r.stderr


def test_a_root_container_with_only_its_capabilities(lab_up, tmp_path: Path, empty_blocklist: str) -> None:
    """uid 0 with exactly deploy/k8s's capabilities (privdrop.container_caps) scans and drops to nobody;
    without cap_setuid it refuses in one line."""
    out, meta = tmp_path / "out.jsonl", tmp_path / "meta.json"

    def run(caps: list[str]) -> subprocess.CompletedProcess[str]:
        bounding = ",".join(f"+{c.lower()}" for c in caps)
        argv = lab.ns_exec_argv(
            lab.SCAN_NS,
            ["setpriv", f"--bounding-set=-all,{bounding}", "--inh-caps=-all", "--", ZB]
            + ["--blocklist", empty_blocklist, "--rate", "2K", "--cooldown", "1", "-q"]
            + ["-o", str(out), "--metadata", str(meta), "scan", OPEN, RST, "-p", "80"],
        )
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    caps = privdrop.container_caps()
    assert {c.lower() for c in START_CAPS} <= {c.lower() for c in caps}
    r = run(caps)
    assert r.returncode == 0, r.stderr
    doc = check_scan(out, meta)
    assert doc["tx_mode"] == "xdp" and doc["privileges"].startswith(f"uid {NOBODY} (nobody)")
    out.unlink()
    r = run([c for c in caps if c != "SETUID"])
    assert r.returncode == 2
    assert (
        r.stderr.strip() == "zbanner-xdp: error: scanning as root needs the capabilities cap_setuid as well"
    )
    assert not out.exists()
