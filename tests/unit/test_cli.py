"""CLI contract: one clear line on stderr and exit status 2 for every bad input."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import ZB

NET = ["--iface", "lo", "--source-ip", "10.0.0.1", "--gateway-mac", "02:00:00:00:00:02"]


def run(*args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    argv = [ZB, *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "1Q", "scan", "1.2.3.4", "-p", "80"], "invalid rate '1Q'"),
        (["--rate", "-5", "scan", "1.2.3.4", "-p", "80"], "invalid rate '-5'"),
        (["--dry-run", "scan", "1.2.3.4/33", "-p", "80"], "invalid target '1.2.3.4/33'"),
        (["--dry-run", "scan", "1.2.3.4", "-p", "70000"], "invalid port '70000'"),
        (["--dry-run", "scan", "1.2.3.4", "-p", "90-80"], "invalid port '90-80'"),
        (["--iface", "nope0", "--dry-run", "scan", "1.2.3.4", "-p", "80"], "unknown interface 'nope0'"),
        (["scan", "1.2.3.4", "-p", "80", "--probe", "nope"], "unknown probe 'nope'"),
        (["--shards", "2", "--shard", "2", "scan", "1.2.3.4", "-p", "80"], "must be below --shards 2"),
        (["--source-port", "9-2", "scan", "1.2.3.4", "-p", "80"], "invalid source port range '9-2'"),
        (["--source-ip", "1.2.3", "scan", "1.2.3.4", "-p", "80"], "invalid IPv4 address '1.2.3'"),
        (["--gateway-mac", "zz", "scan", "1.2.3.4", "-p", "80"], "invalid MAC address 'zz'"),
        (["scan", "1.2.3.4"], "Missing option '-p'"),
        (["scan", "1.2.3.4", "-p", "80", "--dedup-entries", "12"], "invalid --dedup-entries '12'"),
        (["scan", "1.2.3.4", "-p", "80", "--dedup-entries", "lots"], "invalid --dedup-entries 'lots'"),
        (["-f", "saddr,nope", "--dry-run", "scan", "1.2.3.4", "-p", "80"], "--output-fields: nope"),
        (
            ["-f", "saddr,saddr", "--dry-run", "scan", "1.2.3.4", "-p", "80"],
            "--output-fields: empty or repeated",
        ),
        (["-f", "saddr,http", "--dry-run", "scan", "1.2.3.4", "-p", "80"], "--output-fields: http"),
        (["--dry-run", "scan", "198.18.0.1", "-p", "80"], "no targets left after allow/block lists"),
        (
            ["--blocklist", "/nonexistent/list", "--dry-run", "scan", "1.2.3.4", "-p", "80"],
            "/nonexistent/list",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], message: str) -> None:
    r = run(*args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("zbanner-xdp: error: ")
    assert message in lines[0]
    assert "Traceback" not in r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_not_root() -> None:
    r = run(*NET, "scan", "198.18.0.1", "-p", "80", user=65534)
    assert r.returncode == 2
    assert (
        r.stderr.strip()
        == "zbanner-xdp: error: scanning needs root (raw sockets and XDP); try sudo, or --dry-run"
    )


def test_dry_run_prints_each_probe_once_and_sends_nothing(tmp_path) -> None:
    bl = tmp_path / "empty"
    bl.write_text("")
    r = run(
        "--blocklist",
        str(bl),
        *NET,
        "--seed",
        "7",
        "--ttl",
        "77",
        "--dry-run",
        "scan",
        "198.18.0.0/29",
        "-p",
        "80,443",
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 16
    pairs = {(ln.split()[4].rsplit(":", 1)[0], ln.split()[4].rsplit(":", 1)[1]) for ln in lines}
    assert pairs == {(f"198.18.0.{i}", p) for i in range(8) for p in ("80", "443")}
    assert all(" ttl=77 " in ln and ln.startswith("TCP [S] 10.0.0.1:") for ln in lines)
    again = run(
        "--blocklist", str(bl), *NET, "--seed", "7", "--dry-run", "scan", "198.18.0.0/29", "-p", "80,443"
    )
    order = [ln.split()[4] for ln in lines]
    assert [ln.split()[4] for ln in again.stdout.splitlines()] == order  # seeded order is stable


def test_probes_lists_every_probe() -> None:
    r = run("probes")
    assert r.returncode == 0
    for name in (
        "synscan",
        "http",
        "tls",
        "ssh",
        "ftp",
        "smtp",
        "pop3",
        "imap",
        "telnet",
        "redis",
        "mysql",
        "hello",
    ):
        assert any(line.startswith(name + " ") for line in r.stdout.splitlines()), name


def test_global_options_after_the_subcommand(tmp_path) -> None:
    bl = tmp_path / "empty"
    bl.write_text("")
    before = run(
        "--blocklist",
        str(bl),
        *NET,
        "--seed",
        "5",
        "--ttl",
        "9",
        "--dry-run",
        "scan",
        "198.18.0.0/30",
        "-p",
        "80",
    )
    after = run(
        "scan",
        "198.18.0.0/30",
        "-p",
        "80",
        "--blocklist",
        str(bl),
        *NET,
        "--seed=5",
        "--ttl",
        "9",
        "--dry-run",
    )
    assert after.returncode == 0, after.stderr
    # Same seed, same order of targets (cookies differ: the key is per scan).
    assert [ln.split()[4] for ln in after.stdout.splitlines()] == [
        ln.split()[4] for ln in before.stdout.splitlines()
    ]
    assert after.stdout.count(" ttl=9 ") == 4
