"""A user's first hour (issue 14): what the scanner says, takes and writes, as a ZMap user expects."""

from __future__ import annotations

import csv
import gzip
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from zbanner_xdp import output
from zbanner_xdp.cli import summary_line
from zbanner_xdp.output import MetadataFile, OutputError, RecordWriter
from zbanner_xdp.scanner import DROP_KEYS, exit_status, unanswered_warning


def _summary(**over: object) -> dict:
    r = {
        "reason": "completed",
        "packets_sent": {"probes": 256, "replies": 512},
        "hits": 133,
        "records_written": 389,
        "responses": {"synack": 256, "banner": 133},
        "drops": dict.fromkeys(DROP_KEYS, 0),
        "duration_s": 9.5,
        "handshakes": {"ssh": {"completed": 256, "answered": 133, "unanswered": 123}},
    }
    r.update(over)
    return r


def test_the_summary_line_is_plain_words_and_numbers() -> None:
    line = summary_line(_summary())
    assert "{" not in line and "'" not in line, line
    assert "(responses: synack 256, banner 133)" in line
    assert "handshakes without an answer: ssh 123 of 256" in line


def test_refused_in_kernel_answers_are_named_but_are_not_losses_when_answered_again() -> None:
    # The servers retransmit what went unanswered and the program answers again (--reanswer-after):
    # a refused answer costs a retransmission; one that never got through shows as unanswered.
    kr = {"mode": "kernel", "refused": 89}
    done = {"http": {"completed": 65024, "answered": 65024, "unanswered": 0}}
    r = _summary(kernel_replies=kr, handshakes=done)
    line = summary_line(r)
    assert "nothing lost" in line and "89 in-kernel answers refused by the driver (answered again" in line
    assert exit_status(r) == 0
    # Never answered again (--reanswer-after 0), the scanner counts them in drops.tx_refused.
    drops = {**dict.fromkeys(DROP_KEYS, 0), "tx_refused": 89}
    lost = _summary(kernel_replies=kr, drops=drops, options={"reanswer_after": 0})
    assert "LOST: tx_refused 89" in summary_line(lost) and "answered again" not in summary_line(lost)
    assert exit_status(lost) == 3


def test_many_handshakes_without_an_answer_warn_with_advice() -> None:
    warning = unanswered_warning(_summary())
    assert warning is not None and "\n" not in warning
    assert "ssh 123 of 256 (48 %)" in warning
    assert "--rate" in warning and "--retransmit" in warning


def test_few_or_no_unanswered_handshakes_do_not_warn() -> None:
    few = {"http": {"completed": 1000, "answered": 990, "unanswered": 10}}  # 1 %
    assert unanswered_warning(_summary(handshakes=few)) is None
    tiny = {"http": {"completed": 4, "answered": 1, "unanswered": 3}}  # 75 %, but 3 targets
    assert unanswered_warning(_summary(handshakes=tiny)) is None
    none = {"http": {"completed": 256, "answered": 256, "unanswered": 0}}
    assert unanswered_warning(_summary(handshakes=none)) is None
    assert "handshakes without" not in summary_line(_summary(handshakes=none))
    assert unanswered_warning(_summary(handshakes={})) is None


# --------------------------------------------------------------------------- output by suffix, CSV, -f a.b

_FULL_DISK_GZ = r"""
import os, resource, signal, sys
sys.path.insert(0, sys.argv[2])
from zbanner_xdp import output
output.CHUNK = 2000  # members of ~20 lines
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))
writer = output.RecordWriter(sys.argv[1])
writer.open()
lines = [b'{"i":%d,"pad":"%s"}\n' % (i, os.urandom(40).hex().encode()) for i in range(400)]
refused = 0
for k in range(0, 400, 10):  # random pads: gzip cannot squeeze 400 lines into the 3000 bytes allowed
    try:
        writer.write_lines(b"".join(lines[k : k + 10]), 10)
    except output.OutputError:
        refused += 1
writer.close()
print(writer.count, writer.lost, writer.cut_line, writer.error)
"""


def _lines(first: int, n: int) -> bytes:
    return b"".join(orjson.dumps({"i": i, "text": "x" * 50}) + b"\n" for i in range(first, first + n))


@pytest.mark.parametrize("suffix", [".gz", ".zst"])
def test_a_compressed_suffix_compresses_in_members_of_whole_lines(
    suffix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(output, "CHUNK", 4096)
    path = tmp_path / f"out.jsonl{suffix}"
    writer = RecordWriter(str(path))
    assert writer.compression == {".gz": "gzip", ".zst": "zstd"}[suffix]
    writer.open()
    for k in range(20):
        writer.write_lines(_lines(k * 50, 50), 50)
    writer.close()
    raw = path.read_bytes()
    plain = _decompress(raw, suffix)
    assert [orjson.loads(x)["i"] for x in plain.splitlines()] == list(range(1000))
    assert (writer.count, writer.lost) == (1000, 0)
    assert len(raw) < len(plain) / 5
    # Several members, each a whole number of lines: a reader of a cut file loses no half line.
    tool = {".gz": ["gzip", "-dc"], ".zst": ["zstd", "-dcq"]}[suffix]
    assert subprocess.run([*tool, str(path)], capture_output=True, check=True).stdout == plain


def _decompress(raw: bytes, suffix: str) -> bytes:
    if suffix == ".gz":
        return gzip.decompress(raw)
    import zstandard

    return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw), read_across_frames=True).read()


def test_a_slow_scan_reaches_a_compressed_file_within_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(output, "FLUSH_S", 0.2)
    path = tmp_path / "out.jsonl.gz"
    writer = RecordWriter(str(path))
    writer.open()
    writer.write_lines(_lines(0, 3), 3)
    deadline = time.monotonic() + 5
    while writer.count < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer.count == 3  # written as a member of its own, long before the scan ends
    assert gzip.decompress(path.read_bytes()) == _lines(0, 3)
    writer.close()


def test_a_full_disk_cuts_a_compressed_file_back_to_its_last_whole_member(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl.gz"
    src = str(Path(output.__file__).resolve().parent.parent)
    r = subprocess.run([sys.executable, "-c", _FULL_DISK_GZ, str(path), src], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    count, lost, cut, err = r.stdout.strip().splitlines()[-1].split(" ", 3)
    data = path.read_bytes()
    assert 0 < len(data) <= 3000
    plain = gzip.decompress(data)  # whole: no truncated member
    assert plain.endswith(b"\n")
    assert [orjson.loads(x)["i"] for x in plain.splitlines()] == list(range(int(count)))
    assert int(count) + int(lost) == 400 and int(lost) > 0
    assert cut == "False" and "cannot write output" in err


def test_csv_output_has_zmap_columns_and_one_line_per_record(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    fields = ("saddr", "sport", "success", "banner", "http.server", "http")
    writer = RecordWriter(str(path), ["http"], fields, {"http": ("server", "title")})
    assert writer.format == "csv"  # by the suffix
    writer.open()
    recs = [
        {"saddr": "198.18.0.1", "sport": 80, "success": True, "banner": 'HTTP/1.1 200 OK\r\nX: "a,b"\r\n',
         "http.server": "nginx", "http": {"server": "nginx", "title": None}},
        {"saddr": "198.18.0.2", "sport": 80, "success": False, "banner": None, "http.server": None,
         "http": None},
    ]  # fmt: skip
    writer.write(recs)
    writer.close()
    text = path.read_text()
    assert text.splitlines() == [
        "saddr,sport,success,banner,http.server,http",
        '198.18.0.1,80,1,"HTTP/1.1 200 OK\\r\\nX: ""a,b""\\r\\n",nginx,'
        '"{""server"":""nginx"",""title"":null}"',
        "198.18.0.2,80,0,,,",
    ]
    assert writer.count == 2  # records, not the header
    rows = list(csv.reader(io.StringIO(text)))
    assert (
        rows[1][3] == 'HTTP/1.1 200 OK\\r\\nX: "a,b"\\r\\n' and orjson.loads(rows[1][5])["server"] == "nginx"
    )


def test_the_format_follows_the_name_unless_given() -> None:
    assert output.format_of("a.csv", None) == "csv"
    assert output.format_of("a.csv.gz", None) == output.format_of("a.csv.zst", None) == "csv"
    assert output.format_of("a.jsonl.gz", None) == output.format_of(None, None) == "json"
    assert output.format_of("a.csv", "json") == "json" and output.format_of("-", "csv") == "csv"
    assert output.compression_of("-") is None and output.compression_of("x.csv") is None


def test_output_fields_take_a_probes_parsed_field() -> None:
    parsed = {"http": ("server", "title")}
    assert output.select_fields(["http"], ("saddr", "http.server"), parsed) == ["saddr", "http.server"]
    with pytest.raises(OutputError, match=r"http\.nope \(http's fields: server,title\)"):
        output.select_fields(["http"], ("saddr", "http.nope"), parsed)
    with pytest.raises(OutputError, match="ssh.software"):
        output.select_fields(["http"], ("ssh.software",), parsed)  # not a probe of this scan
    rec = dict.fromkeys(["saddr", "http.server", "http.title"])
    output.fill_dotted(rec, {"saddr": "x", "http": {"server": "nginx", "title": "t"}})
    assert rec == {"saddr": None, "http.server": "nginx", "http.title": "t"}


def test_metadata_dash_is_stdout(capfd: pytest.CaptureFixture[str]) -> None:
    meta = MetadataFile("-")
    meta.check()
    meta.open({"reason": "running"})  # nothing yet: stdout gets the summary once, at the end
    meta.write({"reason": "completed"})
    out, _ = capfd.readouterr()
    assert orjson.loads(out) == {"reason": "completed"}
    assert not os.path.exists("-")


# --------------------------------------------------------------------------- report reads what scans write

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "report" / "sample.jsonl"


def test_report_reads_a_zstd_results_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import zstandard

    from zbanner_xdp.report import run_report

    zst = tmp_path / "r.jsonl.zst"
    data = SAMPLE.read_bytes()
    half = data.index(b"\n", len(data) // 2) + 1  # two frames, as the writer makes them
    cctx = zstandard.ZstdCompressor()
    zst.write_bytes(cctx.compress(data[:half]) + cctx.compress(data[half:]))
    assert run_report(str(SAMPLE), None, None) == 0
    plain = capsys.readouterr().out
    assert run_report(str(zst), None, None) == 0
    assert capsys.readouterr().out == plain


def test_report_png_to_stdout() -> None:
    from zbanner_xdp.report import ReportError, run_report

    r = subprocess.run(
        [sys.executable, "-m", "zbanner_xdp.cli", "report", str(SAMPLE), "--png", "-"],
        capture_output=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"\x89PNG\r\n") and not Path("-").exists()
    with pytest.raises(ReportError, match="share stdout"):
        run_report(str(SAMPLE), "-", "-")


# --------------------------------------------------------------------------- targets, as ZMap and masscan

NET = ["--iface", "lo", "--source-ip", "10.0.0.1", "--gateway-mac", "02:00:00:00:00:02"]


def _zb(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    from tests.conftest import ZB

    return subprocess.run([ZB, *args], capture_output=True, text=True, timeout=60, input=stdin)


def _dry(tmp_path: Path, *args: str, stdin: str | None = None) -> list[str]:
    empty = tmp_path / "empty"
    empty.write_text("")
    r = _zb("--blocklist", str(empty), *NET, "--dry-run", *args, stdin=stdin)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def _dests(lines: list[str]) -> set[str]:
    return {ln.split(" -> ")[1].split()[0] for ln in lines}


def test_ranges_are_targets_everywhere(tmp_path: Path) -> None:
    from zbanner_xdp.targets import TargetError, parse_target, parse_targets, read_cidr_file

    assert parse_target("10.0.0.7-10.0.0.9") == (0x0A000007, 0x0A00000A)
    assert parse_target("10.0.0.7-10.0.0.7") == (0x0A000007, 0x0A000008)
    for bad in ("10.0.0.9-10.0.0.7", "10.0.0.1-", "-10.0.0.1", "10.0.0.1-10.0.0", "10.0.0.1-2"):
        with pytest.raises(TargetError, match="invalid target"):
            parse_targets([bad])
    lst = tmp_path / "list"
    lst.write_text("198.18.0.254-198.18.1.1  # across a /24\n10.0.0.1\n")
    assert read_cidr_file(lst).tolist() == [[0x0A000001, 0x0A000002], [0xC61200FE, 0xC6120102]]
    lst.write_text("1.2.3.9-1.2.3.1\n")
    with pytest.raises(TargetError, match=r":1: invalid range '1.2.3.9-1.2.3.1'$"):
        read_cidr_file(lst)
    assert _dests(_dry(tmp_path, "scan", "198.18.0.254-198.18.1.1", "-p", "80")) == {
        "198.18.0.254:80", "198.18.0.255:80", "198.18.1.0:80", "198.18.1.1:80",
    }  # fmt: skip


def test_a_list_of_targets_from_a_file_or_stdin_with_the_targets_given(tmp_path: Path) -> None:
    lst = tmp_path / "targets.txt"
    lst.write_text("# ZMap -I, masscan -iL\n198.18.0.1\n198.18.0.8/31\n198.18.0.20-198.18.0.21\n")
    want = {f"198.18.0.{i}:80" for i in (1, 8, 9, 20, 21)}
    assert _dests(_dry(tmp_path, "-I", str(lst), "scan", "-p", "80")) == want
    assert _dests(_dry(tmp_path, "scan", "-p", "80", "--list-of-targets", "-", stdin=lst.read_text())) == want
    assert _dests(_dry(tmp_path, "-I", str(lst), "scan", "198.18.0.30", "-p", "80")) == want | {
        "198.18.0.30:80"
    }
    lst.write_text("# nothing\n")
    r = _zb(*NET, "--dry-run", "-I", str(lst), "scan", "-p", "80")
    assert r.returncode == 2 and r.stderr.strip() == f"zbanner-xdp: error: {lst}: no targets in the list"
    r = _zb(*NET, "--dry-run", "-I", "-", "--blocklist", "-", "scan", "-p", "80", stdin="1.2.3.4\n")
    assert r.returncode == 2 and "only one list may be read from stdin" in r.stderr


def test_exclude_adds_to_the_blocklist_which_blocklist_replaces(tmp_path: Path) -> None:
    ex = tmp_path / "exclude.txt"
    ex.write_text("198.18.0.3\n")
    lines = _dry(
        tmp_path, "--exclude", "198.18.0.0,198.18.0.5-198.18.0.6", "--exclude-file", str(ex),
        "scan", "198.18.0.0/29", "-p", "80",
    )  # fmt: skip
    assert _dests(lines) == {f"198.18.0.{i}:80" for i in (1, 2, 4, 7)}
    # Added to the default blocklist (which keeps 198.18.0.0/15 out), not replacing it.
    r = _zb(*NET, "--dry-run", "--exclude", "1.2.3.2", "scan", "198.18.0.0/30", "1.2.3.0/30", "-p", "80")
    assert r.returncode == 0, r.stderr
    assert _dests(r.stdout.splitlines()) == {"1.2.3.0:80", "1.2.3.1:80", "1.2.3.3:80"}
    r = _zb(*NET, "--dry-run", "--exclude", "1.2.3.x", "scan", "1.2.3.0/30", "-p", "80")
    assert r.returncode == 2 and "--exclude: invalid target '1.2.3.x'" in r.stderr


def test_icmp_and_udp_scans_need_no_ports(tmp_path: Path) -> None:
    lines = _dry(tmp_path, "scan", "198.18.0.0/31", "--probe", "icmp-echo")
    assert len(lines) == 2 and all(ln.startswith("ICMP echo ") for ln in lines)
    lines = _dry(tmp_path, "scan", "198.18.0.0/31", "--probe", "udp-dns,udp-ntp,icmp-echo")
    udp = sorted(ln.split(" -> ")[1].split()[0] for ln in lines if ln.startswith("UDP "))
    # Each UDP probe once per address, to its own port: never DNS to 123 or NTP to 53.
    assert udp == ["198.18.0.0:123", "198.18.0.0:53", "198.18.0.1:123", "198.18.0.1:53"]
    assert all(" len=29 " in ln for ln in lines if ":53 " in ln)
    # With -p, as before: UDP probes of a UDP-only scan go to every port given.
    lines = _dry(tmp_path, "scan", "198.18.0.0/31", "--probe", "udp-dns", "-p", "53,5353")
    assert len(lines) == 4


# --------------------------------------------------------------------------- the lab's lock file


def test_the_lab_lock_file_goes_with_the_lab_and_a_waiter_relocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from zbanner_xdp.lab import procs

    state = tmp_path / "state"
    lock = tmp_path / "state.lock"
    monkeypatch.setattr(procs, "STATE_DIR", str(state))
    monkeypatch.setattr(procs, "LOCK_FILE", str(lock))
    state.mkdir()
    order: list[str] = []
    inside = threading.Event()

    def waiter() -> None:
        inside.wait()
        with procs.locked():
            order.append("waiter in")
            # Locked anew, on the file the name leads to now: the one it waited on was removed.
            order.append("relocked" if lock.exists() else "stale")

    t = threading.Thread(target=waiter)
    t.start()
    with procs.locked():
        inside.set()
        time.sleep(0.3)  # the waiter blocks on the old file meanwhile
        os.rmdir(state)  # down() removed the lab
        order.append("holder out")
    t.join(10)
    assert order == ["holder out", "waiter in", "relocked"]
    assert not lock.exists()  # no lab: the last holder removed the lock file too
    state.mkdir()
    with procs.locked():
        pass
    assert lock.exists()  # while a lab exists, the file stays


# --------------------------------------------------------------------------- help that helps


def _all_commands() -> list[tuple[str, object]]:
    import click

    from zbanner_xdp.cli import main_group

    out: list[tuple[str, object]] = []

    def walk(cmd: click.Command, path: str) -> None:
        out.append((path, cmd))
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, f"{path} {name}")

    walk(main_group, "zbanner-xdp")
    return out


def test_every_command_and_option_has_help() -> None:
    import click

    for path, cmd in _all_commands():
        assert isinstance(cmd, click.Command)
        assert cmd.help, f"{path} has no description"
        for p in cmd.params:
            if isinstance(p, click.Option) and p.name != "help":
                assert p.help, f"{path} {p.opts[0]} has no help"


def test_help_shows_global_options_under_scan_and_cuts_nothing_short() -> None:
    top = _zb("--help").stdout
    commands = top[top.index("Commands:") :].splitlines()[1:]
    assert commands and not any(line.rstrip().endswith("...") for line in commands), commands
    scan = _zb("scan", "--help").stdout
    glob = scan[scan.index("Global options (before or after `scan`)") :]
    for opt in ("--rate", "--ttl", "--shards", "--shard", "--seed", "-o, --output", "--metadata", "-I,"):
        assert opt in glob, opt
    rate = " ".join(glob[glob.index("--rate") : glob.index("-S, --source-ip")].split())
    assert "probes, and the replies that complete handshakes" in rate and "--kernel-replies" in rate
    lab = _zb("lab", "--help").stdout
    assert "--prefix" in lab and "ZBANNER_LAB_PREFIX" in lab and "--force" in lab
    for sub in ("up", "down", "status"):
        assert sub in lab[lab.index("Commands:") :]
    assert "--wire" in _zb("lab", "up", "--help").stdout


def test_dry_run_shows_what_follows_the_handshake(tmp_path: Path) -> None:
    lines = _dry(tmp_path, "--seed", "3", "scan", "198.18.0.1", "-p", "80,22", "--probe", "auto")
    by_port = {ln.split(" -> ")[1].split()[0]: i for i, ln in enumerate(lines) if ln.startswith("TCP ")}
    http = lines[by_port["198.18.0.1:80"] + 1]
    assert http.startswith("  after its SYN-ACK: ACK len=")
    assert 'payload="GET / HTTP/1.1\\r\\nHost: 198.18.0.1\\r\\n' in http
    assert (
        lines[by_port["198.18.0.1:22"] + 1]
        == "  after its SYN-ACK: ACK, no payload (the server speaks first)"
    )
    jarm = _dry(tmp_path, "scan", "198.18.0.1", "-p", "443", "--probe", "jarm")
    assert len(jarm) == 2 and jarm[1].endswith("; then up to 9 more connections, as the answers decide")
    assert len(_dry(tmp_path, "scan", "198.18.0.0/30", "-p", "80")) == 4  # a SYN scan: SYNs only


def test_probe_args_take_quoted_values_and_say_so() -> None:
    from zbanner_xdp.probes import parse_probe_args

    assert parse_probe_args('path="/a?x=1,y=2",method=HEAD') == {"path": "/a?x=1,y=2", "method": "HEAD"}
    assert parse_probe_args("path='/a?x=1,y=2'") == {"path": "/a?x=1,y=2"}
    assert parse_probe_args("path=/a?x=1,2") == {"path": "/a?x=1,2"}  # no key after the comma: kept
    r = _zb(
        *NET, "--dry-run", "scan", "1.2.3.4", "-p", "80", "--probe", "http", "--probe-args", "path=/a?x=1,y=2"
    )
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "does not accept argument(s) y" in r.stderr and 'path="/a?x=1,y=2"' in r.stderr


# --------------------------------------------------------------------------- report: definitions, shares


def test_report_defines_its_categories(capsys: pytest.CaptureFixture[str]) -> None:
    from zbanner_xdp.report import DEFINITIONS, run_report

    assert run_report(str(SAMPLE), None, None) == 0
    text = capsys.readouterr().out
    tail = text[text.index("What the liveness columns count") :]
    for name in ("network-alive", "transport-active", "transport-alive", "app-active", "app-alive"):
        assert f"  {name} " in tail
    assert all(meaning in tail for _, meaning in DEFINITIONS)
    assert "--metadata FILE" in tail  # where the denominators come from


def _meta(tmp_path: Path, **over: object) -> Path:
    doc = {
        "reason": "completed",
        "options": {"shards": 1, "max_targets": None},
        "targets": {"addresses": 10, "pairs": 20, "this_shard": 20, "ports": "80,443", "probes_planned": 50},
        "packets_sent": {"probes": 50, "replies": 7},
    }
    doc.update(over)
    path = tmp_path / "meta.json"
    path.write_bytes(orjson.dumps(doc))
    return path


def test_report_with_the_scans_metadata_gives_shares_of_targets_scanned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from zbanner_xdp.report import run_report

    meta = _meta(tmp_path)
    out = tmp_path / "rep.json"
    assert run_report(str(SAMPLE), str(out), None, str(meta)) == 0
    text = capsys.readouterr().out
    assert (
        "10 addresses x 2 ports, 20 (address, port) pairs in this shard: 10 targets scanned per probe key"
        in text
    )
    rep = orjson.loads(out.read_bytes())
    assert rep["scan"]["targets_per_key"] == 10 and rep["scan"]["exact"]
    alive = rep["per_key"]["synscan/80"]["liveness"]["network_alive"]
    assert rep["per_key"]["synscan/80"]["scanned"] == 10
    row = next(ln.split() for ln in text.splitlines() if ln.startswith("  synscan/80 ") and "%" in ln)
    assert row[:4] == ["synscan/80", "10", str(alive), f"({100 * alive / 10:.1f}%)"]
    # A scan cut short says its shares are of targets planned.
    short = _meta(tmp_path, reason="interrupted", packets_sent={"probes": 20, "replies": 0})
    assert run_report(str(SAMPLE), None, None, str(short)) == 0
    assert "ended early (interrupted): 20 of 50 probes were sent" in capsys.readouterr().out


def test_report_refuses_files_without_the_fields_it_needs(tmp_path: Path) -> None:
    # Written with -f: the old report read it as nothing but "malformed lines skipped", and exited 0.
    cut = tmp_path / "cut.jsonl"
    cut.write_text('{"saddr":"1.2.3.4","sport":80,"classification":"synack"}\n' * 3)
    csvf = tmp_path / "out.csv"
    csvf.write_text("saddr,sport,classification\n1.2.3.4,80,synack\n")
    bad_meta = tmp_path / "results-as-meta.json"
    bad_meta.write_bytes(SAMPLE.read_bytes())
    for args, needle in (
        ([str(cut)], "its records lack daddr, dport, success"),
        ([str(cut)], "written with -f?"),
        ([str(csvf)], "not JSON lines (CSV?)"),
        ([str(SAMPLE), "--metadata", str(bad_meta)], "not a zbanner-xdp scan summary"),
        ([str(SAMPLE), "--metadata", str(tmp_path / "nope.json")], "cannot read"),
    ):
        r = _zb("report", *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("zbanner-xdp: error: ") and needle in lines[0], lines
        assert r.stdout == ""
