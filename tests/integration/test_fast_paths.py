"""Zero-window hosts, the kernel-side SYN generator and in-kernel replies, in the lab.

The XDP target emulator (zbanner_xdp.lab.emulator) runs on the router's
scanner-facing veth and answers a 198.19.x range like a TCP stack would:
with a zero window, or open/closed by a keyed hash whose ground truth the
test computes. Its XDP program is also what lets the scanner's kernel-side
generator (XDP_TX from the scan namespace) deliver on a veth.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.conftest import ROOT
from tests.integration.conftest import NO_DROPS, Capture, pcap_tcp, read_records, run_scanner, signal_scanner
from tests.integration.conftest import run_scanner_read_late as read_late
from zbanner_xdp import lab
from zbanner_xdp.lab import emulator as emu

pytestmark = pytest.mark.privileged

SEED = 7
BANNER = "SSH-2.0-zbanner-emulator\\r\\n"


@contextlib.contextmanager
def emulated(net: str, *extra: str) -> Iterator[dict]:
    """The emulator in the router namespace for the duration; yields its counters after exit."""
    # One XDP program per interface: the emulator's, for now.
    with lab.next_hop_xdp_released(), _emulator(net, *extra) as counters:
        yield counters


@contextlib.contextmanager
def _emulator(net: str, *extra: str) -> Iterator[dict]:
    argv = [
        sys.executable,
        "-m",
        "zbanner_xdp.lab.emulator",
        "--iface",
        lab.ROUTER_IF,
        "--net",
        net,
        "--seed",
        str(SEED),
        "--banner",
        BANNER,
        "--seconds",
        "300",
        *extra,
    ]
    proc = subprocess.Popen(
        lab.ns_exec_argv(lab.ROUTER_NS, argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(ROOT),
    )
    counters: dict = {}
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # attached once the program shows on the interface
            out = subprocess.run(
                ["ip", "-n", lab.ROUTER_NS, "link", "show", lab.ROUTER_IF],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout
            if "xdp" in out or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        yield counters
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        for line in out.splitlines():
            with contextlib.suppress(ValueError):
                counters.update(json.loads(line))


def scan_capture(path: Path) -> Capture:
    """What the scanner transmits through the stack (AF_PACKET), captured on its own interface."""
    return Capture(path, "tcp", ns=lab.SCAN_NS, iface=lab.SCAN_IF, extra=("-Q", "out"))


def test_zero_window_host_gets_a_rst_and_no_probe(lab_up, tmp_path: Path, empty_blocklist: str) -> None:
    net = "198.19.4.0/28"
    out, pcap = tmp_path / "out.jsonl", tmp_path / "cap.pcap"
    with emulated(net, "--window", "0", "--server-first") as counters, scan_capture(pcap):
        r = run_scanner(
            "--blocklist",
            empty_blocklist,
            "--tx",
            "packet",
            "--rate",
            "1K",
            "--cooldown",
            "2",
            "-q",
            "-o",
            str(out),
            "scan",
            net,
            "-p",
            "22",
            "--probe",
            "ssh",
            "--no-kernel-replies",  # the capture sees what leaves through the stack: user space's RSTs
        )
    assert r.returncode == 0, r.stderr
    recs = read_records(out)
    assert Counter(x["classification"] for x in recs) == {"zerowin": 16}
    assert all(x["window"] == 0 and x["success"] is False for x in recs)
    sent = [f for f in pcap_tcp(pcap) if f[0] == lab.SCAN_IP]
    flags = Counter(f[4] for f in sent)
    assert flags == {0x02: 16, 0x04: 16}  # a SYN and a RST each: no ACK, no probe
    assert counters["syn_open"] == 16 and counters["banner"] == 0


def _truth(net: str, ports: range, permil: int) -> set[tuple[str, int]]:
    return {
        (str(a), p) for a in ipaddress.ip_network(net) for p in ports if emu.is_open(int(a), p, permil, SEED)
    }


def _kgen_scan(
    net: str, tmp_path: Path, empty_blocklist: str, extra: tuple[str, ...] = ()
) -> tuple[dict, dict, list[dict]]:
    """A --rate 0 SYN scan of ports 1-8 through the kernel generator, 50 % open.

    Returns the emulator's counters, the metadata, and the records, after
    checking that every SYN reached the target side and every target answered:
    the SYNs the veth refused were sent again.
    """
    ports = range(1, 9)
    out, meta = tmp_path / "out.jsonl", tmp_path / "meta.json"
    with emulated(net, "--open-permil", "500") as counters:
        r = run_scanner(
            *("--blocklist", empty_blocklist, "--tx", "xdp", *extra, "--rate", "0", "--cooldown", "1", "-q"),
            *("-o", str(out), "--metadata", str(meta), "scan", net, "-p", "1-8"),
        )
    assert r.returncode == 0, r.stderr
    m = orjson.loads(meta.read_bytes())
    assert m["tx_mode"] == "xdp"
    gen, n = m["tx_generator"], ipaddress.ip_network(net).num_addresses * len(ports)
    assert gen["lost"] == 0 and m["drops"]["tx_ring_full"] == 0
    assert counters["syn_open"] + counters["syn_closed"] == n + gen["resent"] - gen["xmit_errors"]
    recs = read_records(out)
    assert {(x["saddr"], x["sport"]) for x in recs if x["classification"] == "synack"} == _truth(
        net, ports, 500
    )
    assert len(recs) == n  # every closed port answered with a RST; resent SYNs' repeats not recorded
    return counters, m, recs


def test_kernel_generator_delivers_every_syn(lab_up, tmp_path: Path, empty_blocklist: str) -> None:
    _kgen_scan("198.19.5.0/24", tmp_path, empty_blocklist)


def test_generator_threads_deliver_every_syn_once_each(lab_up, tmp_path: Path, empty_blocklist: str) -> None:
    # --tx-threads 2: two threads take target indices from one counter; none sent twice but
    # the refused runs, none missed, each thread on a CPU of its own.
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU allowed: --tx-threads 2 is refused")
    before = _queue_xdp_packets()
    _, m, _ = _kgen_scan("198.19.32.0/19", tmp_path, empty_blocklist, ("--tx-threads", "2"))
    assert len(m["cpus"]["senders"]) == 2 and m["options"]["tx_threads"] == 2
    # Both sent: a veth hands a frame to the peer's queue of the sending CPU (a queue per CPU).
    after = _queue_xdp_packets()
    queues = [cpu % len(after) for cpu in m["cpus"]["senders"]]
    assert all(after[q] - before.get(q, 0) > 1000 for q in queues), (queues, before, after)
    # Runs are shared out only unpaced (after a refusal the generator paces itself, one thread): how
    # many depends on the veth's refusals, that some were does not.
    assert m["tx_generator"]["threads"] == 2 and m["tx_generator"]["parallel_frames"] > 0, m["tx_generator"]


def _queue_xdp_packets() -> dict[int, int]:
    """Frames the router's scan-facing veth ran XDP on, per receive queue."""
    out = subprocess.run(
        lab.ns_exec_argv(lab.ROUTER_NS, ["ethtool", "-S", lab.ROUTER_IF]), capture_output=True, text=True
    ).stdout
    return {int(q): int(n) for q, n in re.findall(r"rx_queue_(\d+)_xdp_packets: (\d+)", out)}


def test_kernel_generator_sends_again_what_the_ring_refused(
    lab_up, tmp_path: Path, empty_blocklist: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of 256 frames overflow the router veth's 256-frame XDP ring (while its softirq
    # is starved, as on a loaded CI machine): the generator must see it in the driver's
    # counters and send those runs again until all are in.
    monkeypatch.setenv("ZBANNER_GEN_BATCH", "256")
    _, m, _ = _kgen_scan("198.19.4.0/22", tmp_path, empty_blocklist)
    gen = m["tx_generator"]
    assert gen["xmit_errors"] > 0 and gen["resent"] > 0  # it happened
    # and the generator slowed down rather than only sending again (the old one never waited)
    assert gen["paced_ms"] > 0, gen


def test_auto_uses_the_kernel_generator_where_it_delivers(
    lab_up, tmp_path: Path, empty_blocklist: str
) -> None:
    # The lab's next hop has an XDP program, as a NIC delivers XDP transmits: no fallback.
    meta = tmp_path / "meta.json"
    r = run_scanner(
        *("--blocklist", empty_blocklist, "--rate", "5K", "--cooldown", "1", "-q"),
        *("-o", str(tmp_path / "o.jsonl"), "--metadata", str(meta), "scan", lab.OPEN_NET, "-p", "80"),
    )
    assert r.returncode == 0, r.stderr
    m = orjson.loads(meta.read_bytes())
    assert m["tx_mode"] == "xdp" and m["tx_note"] is None, m["tx_note"]
    assert m["responses"] == {"synack": 256} and m["tx_generator"]["lost"] == 0
    assert "note:" not in r.stderr


def test_auto_falls_back_where_xdp_transmit_cannot_deliver(
    lab_up, tmp_path: Path, empty_blocklist: str
) -> None:
    # No XDP program on the router's veth: frames the generator sends there are lost without an error.
    meta = tmp_path / "meta.json"
    with lab.next_hop_xdp_released():
        r = run_scanner(
            *("--blocklist", empty_blocklist, "--rate", "5K", "--cooldown", "1", "-q"),
            *("-o", str(tmp_path / "o.jsonl"), "--metadata", str(meta), "scan", lab.OPEN_NET, "-p", "80"),
        )
    assert r.returncode == 0, r.stderr
    m = orjson.loads(meta.read_bytes())
    assert m["tx_mode"] == "tx_ring" and "AF_PACKET" in (m["tx_note"] or "")
    assert m["responses"] == {"synack": 256}  # the SYNs of the failed first batch were sent again


def test_kernel_replies_complete_handshakes_in_xdp(lab_up, tmp_path: Path, empty_blocklist: str) -> None:
    net = "198.19.6.0/24"
    out, meta = tmp_path / "out.jsonl", tmp_path / "meta.json"
    with emulated(net, "--open-permil", "700", "--server-first") as counters:
        r = run_scanner(
            "--blocklist",
            empty_blocklist,
            "--rate",
            "20K",
            "--cooldown",
            "2",
            "-q",
            "-o",
            str(out),
            "--metadata",
            str(meta),
            "scan",
            net,
            "-p",
            "22",
            "--probe",
            "ssh",
            "--kernel-replies",
        )
    assert r.returncode == 0, r.stderr
    m = orjson.loads(meta.read_bytes())
    truth = {a for a, _ in _truth(net, range(22, 23), 700)}
    banners = [x for x in read_records(out) if x["classification"] == "banner"]
    assert {x["saddr"] for x in banners} == truth and len(banners) == len(truth)
    assert all(x["ssh"]["software"] == "zbanner-emulator" for x in banners)
    # The program answered every SYN-ACK (bare ACK) and every banner (RST); user space sent none
    # (it held the events the program answered until the driver's counters showed them leaving).
    assert m["xdp_counters"]["kernel_replies"] == 2 * len(truth)
    kr = m["kernel_replies"]
    assert kr["mode"] == "kernel" and kr["sent"] == 2 * len(truth) and kr["refused"] == 0, (kr, m["drops"])
    assert m["packets_sent"]["replies"] == m["packets_sent"]["replies_in_kernel"] == kr["sent"]
    assert kr["answered_late"] == 0
    assert counters["banner"] == len(truth)


def test_rate_counts_the_programs_answers(lab_up, tmp_path: Path, empty_blocklist: str) -> None:
    # --rate is every packet we send. 256 nginx at --rate 2K: a SYN, then the program's ACK with the
    # request and its RST after the banner: 768 packets, at least ~0.38 s of sending once the
    # answers are charged as they are made. The old scanner did not count them (its SYNs left in
    # 0.128 s, three times the rate on the wire).
    out, meta = tmp_path / "out.jsonl", tmp_path / "meta.json"
    r = run_scanner(
        *("--blocklist", empty_blocklist, "--rate", "2K", "--cooldown", "2", "-q", "-o", str(out)),
        *("--metadata", str(meta), "scan", lab.OPEN_NET, "-p", "80", "--probe", "http", "--kernel-replies"),
    )
    assert r.returncode == 0, r.stderr
    m = orjson.loads(meta.read_bytes())
    assert m["kernel_replies"]["mode"] == "kernel", m["kernel_replies"]
    assert m["responses"].get("banner") == 256 and m["packets_sent"]["replies_in_kernel"] == 512
    # Answers charged as the limiter sees them (its batches of 10 at 2K): the 256th SYN waits for
    # ~2 × 255 answers before it, 0.38 s; a margin for the answers still in flight at the end.
    assert m["sending_s"] >= 0.3, (m["sending_s"], m["packets_sent"])


@pytest.mark.parametrize("asked", [True, False])
def test_kernel_replies_where_the_driver_refuses_them(
    lab_up, tmp_path: Path, empty_blocklist: str, asked: bool
) -> None:
    # Without its XDP program the router's veth takes no XDP_TX: the scan veth refuses every one
    # (the old scanner answered nothing: 0 of 16 banners, exit 0, drops 0). User space takes over;
    # asked for, a note on stderr says so; by default (not asked for) only the metadata's `why`.
    out, meta = tmp_path / "out.jsonl", tmp_path / "meta.json"
    with lab.next_hop_xdp_released():
        r = run_scanner(
            *("--blocklist", empty_blocklist, "--rate", "1K", "--cooldown", "2", "-q"),
            *("-o", str(out), "--metadata", str(meta), "scan", "198.18.0.0/28", "-p", "22"),
            *("--probe", "ssh", *(["--kernel-replies"] if asked else [])),
        )
    assert r.returncode == 0, r.stderr
    m = orjson.loads(meta.read_bytes())
    banners = [x for x in read_records(out) if x["classification"] == "banner"]
    assert sorted(x["saddr"] for x in banners) == sorted(f"198.18.0.{i}" for i in range(16))
    kr = m["kernel_replies"]
    assert kr["mode"] == "user space" and kr["sent"] == 0 and "refused" in kr["why"], kr
    said = "in-kernel replies not used" in r.stderr  # (the generator's own fallback has a note of its own)
    assert (kr["note"] == kr["why"] and said) if asked else (kr["note"] is None and not said), (kr, r.stderr)
    # Held while unproven, answered once refused. (The generator's own refused SYNs count in the
    # same driver counter: were the first SYN-ACKs later than the first verification poll, the
    # scan would answer them at once, none late; the first grant going at once keeps them early.)
    assert kr["answered_late"] > 0, (kr, m["tx_mode"], m.get("tx_note"))
    assert m["drops"] == NO_DROPS


def test_sigterm_while_the_kernel_generator_runs(lab_up, tmp_path: Path, empty_blocklist: str) -> None:
    # At --rate 0 the main thread spends its time inside BPF_PROG_RUN, so the signal ends that
    # syscall with EINTR: the generator must resume or stop cleanly, never crash.
    meta = tmp_path / "meta.json"
    with emulated("198.19.0.0/16", "--sink"):
        t0 = time.monotonic()
        rc, err = signal_scanner(
            (
                *("--blocklist", empty_blocklist, "--tx", "xdp", "--rate", "0", "--max-runtime", "30"),
                *("--cooldown", "0.5", "-q", "-o", str(tmp_path / "o.jsonl"), "--metadata", str(meta)),
                *("scan", "198.19.0.0/16", "-p", "1-1024"),
            ),
            ready=lambda: time.monotonic() - t0 > 6,  # BCC compiles (~2 s), then ~67M SYNs: far from done
        )
    assert rc == 143, err  # SIGTERM: 128 + 15, as a shell reports it (README: Exit status)
    assert "Traceback" not in err and "error" not in err
    m = orjson.loads(meta.read_bytes())
    assert m["reason"] == "terminated" and m["tx_mode"] == "xdp"
    assert 0 < m["packets_sent"]["probes"] < 1024 * 65536


@pytest.mark.parametrize(
    ("extra", "mode", "why"),
    [
        ((), "kernel", None),
        (("--no-kernel-replies",), "user space", "--no-kernel-replies"),
        (("--pcap", "PCAP"), "user space", "--pcap: user space answered"),
        (("--banner-bytes", "4096"), "user space", "--banner-bytes: user space answered"),
    ],
)
def test_in_kernel_replies_are_the_default_where_the_scan_allows_them(
    lab_up, tmp_path: Path, empty_blocklist: str, extra: tuple[str, ...], mode: str, why: str | None
) -> None:
    # Issue 17: the program answers by default; user space where the scan needs it to (--pcap copies
    # frames the program would rewrite, --banner-bytes sends every ACK of its reassembly) or where
    # asked to. The metadata says which path ran and why; no stderr note for a choice not asked for.
    out, meta = tmp_path / "out.jsonl", tmp_path / "meta.json"
    extra = tuple(str(tmp_path / "p.pcap") if x == "PCAP" else x for x in extra)
    targets = [str(a) for a in ipaddress.ip_network(lab.OPEN_NET)][:16]
    r = run_scanner(
        *("--blocklist", empty_blocklist, "--rate", "2K", "--cooldown", "2", "-o", str(out)),
        *("--metadata", str(meta), "scan", *targets, "-p", "80", "--probe", "http", *extra),
    )
    assert r.returncode == 0, r.stderr
    assert "note:" not in r.stderr, r.stderr
    m = orjson.loads(meta.read_bytes())
    kr = m["kernel_replies"]
    assert kr["mode"] == mode and kr["note"] is None, kr
    assert (kr["why"] or "").startswith(why or "") and (why is None) == (kr["why"] is None), kr
    assert (m["packets_sent"]["replies_in_kernel"] > 0) == (mode == "kernel"), m["packets_sent"]
    assert len([x for x in read_records(out) if x["classification"] == "banner"]) == 16


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the placement needs two CPUs")
def test_an_output_bound_scan_lets_the_writer_onto_the_senders_cpu(
    lab_up, tmp_path: Path, empty_blocklist: str
) -> None:
    # The sending thread has a CPU to itself and the writer shares the others with the receiver
    # (cpus.py). Once the scan waits for its output, the writer may use the sender's CPU too: a
    # reader that does not read for 5 s holds back ~70 MB of records (65,536 SSH banners and their
    # SYN-ACKs), past the writer's high-water mark, while the SYNs still go out (--rate 30K).
    # Every record arrives all the same.
    net = "198.19.0.0/16"
    meta = tmp_path / "m.json"
    with emulated(net, "--server-first"):
        rc, out, err = read_late(
            *("--blocklist", empty_blocklist, "--rate", "30K", "--cooldown", "1", "-q"),
            *("--metadata", str(meta), "-o", "-", "scan", net, "-p", "22", "--probe", "ssh"),
            wait_s=5,
        )
    assert rc == 0, err
    m = orjson.loads(meta.read_bytes())
    assert m["throttled_ms"] > 0, m["throttled_ms"]  # the scan did wait for its output
    assert m["cpus"] == {
        "senders": [m["cpus"]["senders"][0]],
        "others": m["cpus"]["others"],
        "widened": ["writer"],
    }
    assert m["responses"] == {"synack": 65536, "banner": 65536} and out.count(b"\n") == 2 * 65536
    assert m["drops"] == NO_DROPS
