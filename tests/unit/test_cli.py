"""CLI contract: one clear line on stderr and exit status 2 for every bad input."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import ZB

NET = ["--iface", "lo", "--source-ip", "10.0.0.1", "--gateway-mac", "02:00:00:00:00:02"]
HTTP_4K = ["--dry-run", "scan", "1.2.3.4", "-p", "80", "--probe", "http", "--banner-bytes", "4K"]


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
        # Without one seed, shards each draw their own permutation: they overlap and miss targets.
        (["--shards", "2", "--shard", "1", "--dry-run", "scan", "1.2.3.4", "-p", "80"], "needs --seed"),
        (["--dry-run", "scan", "1.2.3.4", "-p", "80", "--shards", "2"], "--shards 2 needs --seed"),
        (["--tx", "packet", "--tx-threads", "2", "scan", "1.2.3.4", "-p", "80"], "not with --tx packet"),
        (["--tx-threads", "1025", "scan", "1.2.3.4", "-p", "80"], "--tx-threads"),
        (["--tx-threads", "1024", "scan", "1.2.3.4", "-p", "80"], "CPUs allowed"),
        (["--source-port", "9-2", "scan", "1.2.3.4", "-p", "80"], "invalid source port range '9-2'"),
        (["--source-ip", "1.2.3", "scan", "1.2.3.4", "-p", "80"], "invalid IPv4 address '1.2.3'"),
        (["--gateway-mac", "zz", "scan", "1.2.3.4", "-p", "80"], "invalid MAC address 'zz'"),
        (["scan", "1.2.3.4"], "-p/--ports is needed for TCP probes (synscan)"),
        (["scan", "1.2.3.4", "--probe", "icmp-echo", "--tarpit-check"], "-p/--ports is needed for --tarpit"),
        (["scan", "1.2.3.4", "-p", "80", "--dedup-entries", "12"], "invalid --dedup-entries '12'"),
        (["scan", "1.2.3.4", "-p", "80", "--dedup-entries", "lots"], "invalid --dedup-entries 'lots'"),
        (["scan", "1.2.3.4", "-p", "80", "--step-table", "0"], "invalid --step-table '0'"),
        (["scan", "1.2.3.4", "-p", "80", "--step-table", "1.5"], "invalid --step-table '1.5'"),
        (["-f", "saddr,nope", "--dry-run", "scan", "1.2.3.4", "-p", "80"], "--output-fields: nope"),
        (
            ["-f", "saddr,saddr", "--dry-run", "scan", "1.2.3.4", "-p", "80"],
            "--output-fields: empty or repeated",
        ),
        (["-f", "saddr,http", "--dry-run", "scan", "1.2.3.4", "-p", "80"], "--output-fields: http"),
        (["--dry-run", "scan", "198.18.0.1", "-p", "80"], "no targets left after allow/block lists"),
        (["scan", "1.2.3.4", "-p", "80", "--banner-bytes", "0"], "invalid --banner-bytes '0'"),
        (["scan", "1.2.3.4", "-p", "80", "--banner-bytes", "65537"], "invalid --banner-bytes '65537'"),
        (["scan", "1.2.3.4", "-p", "80", "--banner-table", "0"], "invalid --banner-table '0'"),
        (
            ["--dry-run", "scan", "1.2.3.4", "-p", "80", "--banner-bytes", "4K"],
            "--banner-bytes: the probe grabs no banner",
        ),
        (
            ["--dry-run", "scan", "1.2.3.4", "-p", "443", "--probe", "jarm", "--banner-bytes", "4K"],
            "--banner-bytes: not with multi-connection probes",
        ),
        ([*HTTP_4K, "--kernel-replies"], "--banner-bytes: not with --kernel-replies"),
        ([*HTTP_4K, "--retransmit", "1"], "--banner-bytes: not with --retransmit"),
        (
            ["scan", "1.2.3.4", "-p", "443", "--probe", "tls", "--probe-args", "max_version=1.0"],
            "max_version must be 1.2 or 1.3",
        ),
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
        r.stderr.strip() == "zbanner-xdp: error: scanning needs root, or the capabilities "
        "cap_net_admin,cap_net_raw,cap_bpf,cap_perfmon; try sudo, or --dry-run"
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


# --------------------------------------------------------------------------- in process: main(argv)

LAB = ["198.18.0.0/30", "-p", "80"]


def main_exit(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """zbanner_xdp.cli.main(argv): (exit status, stdout, stderr); a normal return is status 0."""
    from zbanner_xdp.cli import main

    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code: int, err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("zbanner-xdp: error: "), err
    assert "Traceback" not in err and "internal error" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, err)


class CapturedScanner:
    """Stands in for Scanner: keeps the ScanConfig the CLI built; a dry run prints nothing."""

    cfgs: list = []

    def __init__(self, cfg, probes) -> None:
        CapturedScanner.cfgs.append(cfg)

    def dry_run(self, out) -> int:
        return 0

    def run(self) -> dict:
        raise AssertionError("a real scan was started (argv misparsed: no --dry-run)")


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list:
    import zbanner_xdp.scanner

    CapturedScanner.cfgs = []
    monkeypatch.setattr(zbanner_xdp.scanner, "Scanner", CapturedScanner)
    return CapturedScanner.cfgs


@pytest.mark.parametrize(("text", "rate"), [("0.5", 0.5), ("0.01", 0.01), ("1.5K", 1500), ("0", 0)])
def test_fractional_rate_reaches_the_config(
    text: str, rate: float, captured: list, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = main_exit(["--rate", text, "--dry-run", "scan", *LAB], capsys)
    assert code == 0, err
    assert captured[0].rate == rate


@pytest.mark.parametrize("text", ["1e-9", "0.001"])
def test_a_rate_below_the_minimum_is_a_usage_error(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = main_exit(["--rate", text, "--dry-run", *NET, "scan", *LAB], capsys)
    assert_usage_error(code, err, f"'{text}'", "0.01")


def test_rate_help_says_fractions_are_allowed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = main_exit(["--help"], capsys)
    assert code == 0
    text = " ".join(out.split())
    assert "0.01" in text and "0 = unlimited" in text


@pytest.mark.parametrize("which", ["--blocklist", "--allowlist"])
def test_cidr_list_dev_zero_is_one_line(which: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = main_exit([which, "/dev/zero", *NET, "--dry-run", "scan", *LAB], capsys)
    assert_usage_error(code, err, "/dev/zero", "not a text file")


@pytest.mark.parametrize("which", ["--blocklist", "--allowlist"])
def test_cidr_list_with_a_10k_line_is_one_line(
    which: str, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "long.conf"
    path.write_text("198.18.0.1\n# fine\n" + "1" * 10_000 + "\n")
    code, _, err = main_exit([which, str(path), *NET, "--dry-run", "scan", *LAB], capsys)
    assert_usage_error(code, err, f"{path}:3:", "longer than 4096 bytes")
    assert len(err) < 300


@pytest.mark.parametrize("which", ["--blocklist", "--allowlist"])
def test_cidr_list_with_nul_bytes_is_one_line(
    which: str, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bin.conf"
    path.write_bytes(b"198.18.0.1\n10.0.0.0/8\x00\x00\x01\x02\n")
    code, _, err = main_exit([which, str(path), *NET, "--dry-run", "scan", *LAB], capsys)
    assert_usage_error(code, err, f"{path}:2:", "not a text file")


@pytest.mark.parametrize("which", ["--blocklist", "--allowlist"])
def test_cidr_list_binary_garbage_is_one_short_line(
    which: str, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bin.conf"
    path.write_bytes(bytes(range(0x80, 0x100)) * 10)  # no NUL, no newline, not UTF-8
    code, _, err = main_exit([which, str(path), *NET, "--dry-run", "scan", *LAB], capsys)
    assert_usage_error(code, err, f"{path}:1:", "not a text file")
    assert len(err) < 300


@pytest.mark.parametrize("which", ["--blocklist", "--allowlist"])
@pytest.mark.parametrize(("kind", "message"), [("dir", "Is a directory"), ("missing", "No such file")])
def test_cidr_list_unusable_path_is_one_line(
    which: str, kind: str, message: str, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path if kind == "dir" else tmp_path / "nope.conf"
    code, _, err = main_exit([which, str(path), *NET, "--dry-run", "scan", *LAB], capsys)
    assert_usage_error(code, err, str(path), message)


def test_cidr_list_too_many_lines_or_bytes(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from zbanner_xdp import targets

    path = tmp_path / "big.conf"
    path.write_text("# just comments\n" * 100)
    monkeypatch.setattr(targets, "CIDR_FILE_MAX_LINES", 50)
    code, _, err = main_exit(["--blocklist", str(path), *NET, "--dry-run", "scan", *LAB], capsys)
    assert_usage_error(code, err, str(path), "more than 50 lines")
    monkeypatch.setattr(targets, "CIDR_FILE_MAX_LINES", 1000)
    monkeypatch.setattr(targets, "CIDR_FILE_MAX_BYTES", 1000)
    code, _, err = main_exit(["--blocklist", str(path), *NET, "--dry-run", "scan", *LAB], capsys)
    assert_usage_error(code, err, str(path), "larger than 1000 bytes")


def test_normal_cidr_lists_still_work(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    bl = tmp_path / "block.conf"
    bl.write_text("# lab\n198.18.0.1  # one host\n\n")
    al = tmp_path / "allow.conf"
    al.write_text("198.18.0.0/31\n198.18.0.3\n")
    code, out, err = main_exit(["--blocklist", str(bl), *NET, "--dry-run", "scan", *LAB], capsys)
    assert code == 0, err
    assert sorted(ln.split()[4] for ln in out.splitlines()) == [f"198.18.0.{i}:80" for i in (0, 2, 3)]
    code, out, err = main_exit(
        ["--blocklist", str(bl), "--allowlist", str(al), *NET, "--dry-run", "scan", *LAB], capsys
    )
    assert code == 0, err
    assert sorted(ln.split()[4] for ln in out.splitlines()) == [f"198.18.0.{i}:80" for i in (0, 3)]


def test_output_file_named_scan(tmp_path, monkeypatch: pytest.MonkeyPatch, captured: list, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = main_exit(["-o", "scan", "scan", *LAB, "--dry-run"], capsys)
    assert code == 0, err
    assert captured[-1].output == "scan" and captured[-1].dry_run
    assert captured[-1].targets == ("198.18.0.0/30",) and captured[-1].ports == "80"
    code, _, err = main_exit(["--output=scan", "-r", "1", "scan", *LAB, "--dry-run", "-q"], capsys)
    assert code == 0, err
    assert (captured[-1].output, captured[-1].rate, captured[-1].quiet) == ("scan", 1, True)


def test_hoist_finds_the_subcommand_not_a_value() -> None:
    from zbanner_xdp.cli import _hoist_global_options as hoist

    assert hoist(["-o", "scan", "scan", *LAB, "--dry-run"]) == ["-o", "scan", "--dry-run", "scan", *LAB]
    assert hoist(["--rate", "1", "scan", *LAB, "--seed", "5"]) == ["--rate", "1", "--seed", "5", "scan", *LAB]
    assert hoist(["-oscan", "scan", *LAB, "-q"]) == ["-oscan", "-q", "scan", *LAB]  # attached short value
    assert hoist(["-qo", "scan", "scan", *LAB, "-i", "lo"]) == ["-qo", "scan", "-i", "lo", "scan", *LAB]
    # Only `scan` hoists: another subcommand, or `scan` as a later word, is left alone.
    assert hoist(["--metadata", "m", "report", "scan", "--json", "-"]) == [
        "--metadata",
        "m",
        "report",
        "scan",
        "--json",
        "-",
    ]
    assert hoist(["probes", "scan", "-q"]) == ["probes", "scan", "-q"]
    # The value of a scan option stays with it, even when it looks like a global option.
    assert hoist(["scan", *LAB, "--probe-args", "-q", "-q"]) == ["-q", "scan", *LAB, "--probe-args", "-q"]
    assert hoist(["scan", *LAB, "--", "-q"]) == ["scan", *LAB, "--", "-q"]


def test_rate_before_scan_and_options_after_it(captured: list, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = main_exit(["--rate", "1", "scan", *LAB, "--dry-run", "--ttl", "9", "-o", "out"], capsys)
    assert code == 0, err
    c = captured[-1]
    assert (c.rate, c.dry_run, c.ttl, c.output, c.targets) == (1, True, 9, "out", ("198.18.0.0/30",))


def test_step_table(captured: list, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = main_exit(["scan", *LAB, "--dry-run", "--probe", "lzr", "--step-table", "4"], capsys)
    assert code == 0, err
    assert captured[-1].step_table == 4
    code, _, err = main_exit(["scan", *LAB, "--dry-run", "--probe", "lzr", "--step-table", "2K"], capsys)
    assert code == 0, err
    assert captured[-1].step_table == 2000
    main_exit(["scan", *LAB, "--dry-run"], capsys)
    assert captured[-1].step_table == 256 * 1024


@pytest.mark.parametrize("text", ["65536.5", "100000.25"])
def test_dedup_entries_must_be_a_whole_count(text: str, captured: list, capsys) -> None:
    code, _, err = main_exit(["scan", *LAB, "--dry-run", "--dedup-entries", text], capsys)
    assert_usage_error(code, err, f"invalid --dedup-entries '{text}'")
    assert not captured
