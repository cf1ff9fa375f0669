"""`zbanner-xdp report`: exact numbers on a hand-checked record set, robustness and streaming."""

from __future__ import annotations

import gzip
import io
import math
import sys
import time
import tracemalloc
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zbanner_xdp.report import (
    PNG_NEEDS,
    REQUIRED_FIELDS,
    ReportBuilder,
    ReportError,
    build_report,
    format_report,
    protocol_of,
    run_report,
    write_png,
)

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "report"
ROUTER = "9.9.9.9"


def rec(saddr: str, probe: str, cls: str, sport: int | None = None, **extra: Any) -> dict[str, Any]:
    r: dict[str, Any] = dict.fromkeys(REQUIRED_FIELDS)
    r.update(
        saddr=saddr,
        sport=sport,
        daddr="10.77.0.1",
        dport=40000,
        classification=cls,
        success=cls in ("synack", "banner"),
        repeat=False,
        timestamp="2026-01-01T00:00:00.000Z",
        ttl=64,
        probe=probe,
    )
    r.update(extra)
    return r


def icmp(saddr: str, probe: str, cls: str, itype: int, code: int, responder: str, sport: int | None = None):
    return rec(saddr, probe, cls, sport, icmp_type=itype, icmp_code=code, icmp_responder=responder)


# The ground truth: one host per category, probe keys http/80, icmp-echo, synscan/80, synscan/443, udp-dns/53.
SCENARIO: list[dict[str, Any]] = [
    # H1: SYN-ACK only.
    rec("1.0.0.1", "synscan", "synack", 80),
    # H2: RSTs only.
    rec("1.0.0.2", "synscan", "rst", 80),
    rec("1.0.0.2", "synscan", "rst", 443, validated=True),
    # H3: only its own ICMP port-unreachable.
    icmp("1.0.0.3", "udp-dns", "icmp-unreach", 3, 3, "1.0.0.3", 53),
    # H4: only router ICMP errors: not alive, not active.
    icmp("1.0.0.4", "synscan", "icmp-unreach", 3, 1, ROUTER, 80),
    icmp("1.0.0.4", "icmp-echo", "icmp-timxceed", 11, 0, ROUTER),
    # H5: tarpit: SYN-ACKs every TCP port of the scan and the random check port.
    rec("1.0.0.5", "synscan", "synack", 80),
    rec("1.0.0.5", "synscan", "synack", 443),
    rec("1.0.0.5", "http", "banner", 80, app_match=False, data="SFRUUA==", banner="HTTP"),
    rec("1.0.0.5", "synscan", "synack", 54321, tarpit_probe=True),
    # H6: echo and 443 found only by retransmissions; 80 by the first transmission.
    rec("1.0.0.6", "icmp-echo", "echoreply", attempt=1),
    rec("1.0.0.6", "synscan", "synack", 80, attempt=0),
    rec("1.0.0.6", "synscan", "synack", 443, attempt=2),
    # H7: alive at every level; its 443 reply is a repeat (ignored); RST on the check port: no tarpit.
    rec("1.0.0.7", "synscan", "synack", 80),
    rec("1.0.0.7", "http", "banner", 80, app_match=True, data="SFRUUC8xLjE=", banner="HTTP/1.1"),
    rec("1.0.0.7", "icmp-echo", "echoreply", attempt=0),
    rec("1.0.0.7", "udp-dns", "udp", 53, app_match=True, data="AAAA"),
    rec("1.0.0.7", "synscan", "synack", 443, repeat=True),
    rec("1.0.0.7", "synscan", "rst", 61000, tarpit_probe=True),
    # H8: an unvalidated RST only: not alive.
    rec("1.0.0.8", "synscan", "rst", 443, validated=False),
    # H9: zero-window SYN-ACK; UDP reply without payload.
    rec("1.0.0.9", "synscan", "zerowin", 443, window=0),
    rec("1.0.0.9", "udp-dns", "udp", 53, app_match=None),
    # H10: SYN-ACKs the check port and 80 but RSTs 443: no tarpit.
    rec("1.0.0.10", "synscan", "synack", 80),
    rec("1.0.0.10", "synscan", "rst", 443),
    rec("1.0.0.10", "synscan", "synack", 50000, tarpit_probe=True),
    # H11: UDP payload that is not DNS.
    rec("1.0.0.11", "udp-dns", "udp", 53, app_match=False, data="aGVsbG8="),
]

MALFORMED: list[bytes] = [
    b"{not json",
    b"[1, 2]",
    orjson.dumps({k: v for k, v in rec("1.0.0.1", "synscan", "synack", 80).items() if k != "ttl"}),
    orjson.dumps(rec("1.0.0", "synscan", "synack", 80)),
    orjson.dumps(rec("1.0.0.1", "synscan", "synack", True)),
    orjson.dumps(rec("1.0.0.1", "synscan", "unknown", 80)),
    orjson.dumps(rec("1.0.0.1", "synscan", "icmp-unreach", 80, icmp_type=3, icmp_code=3)),
    orjson.dumps(rec("1.0.0.1", "synscan", "synack", 80, attempt=-1)),
    orjson.dumps(rec("1.0.0.1", "synscan", "synack", None)),
    b"\xff\xfe",
]
MALFORMED_REASONS = {
    "bad 'attempt'": 1,
    "bad 'classification'": 1,
    "bad 'icmp_responder'": 1,
    "bad 'saddr'": 1,
    "bad 'sport'": 1,
    "invalid JSON": 2,
    "missing 'sport' for a TCP/UDP probe": 1,
    "missing field 'ttl'": 1,
    "not a JSON object": 1,
}


def scenario_lines() -> list[bytes]:
    # Garbage interleaved with the records, and blank lines, which are neither records nor malformed.
    lines = [orjson.dumps(r) + b"\n" for r in SCENARIO]
    for i, bad in enumerate(MALFORMED):
        lines.insert(2 * i + 1, bad + b"\n")
    return [b"\n", *lines, b"   \n"]


KEYS = ["http/80", "icmp-echo", "synscan/80", "synscan/443", "udp-dns/53"]


def z(**kw: int) -> dict[str, int]:
    base = {
        "synack": 0,
        "zerowin": 0,
        "rst": 0,
        "rst_unvalidated": 0,
        "udp": 0,
        "echoreply": 0,
        "icmp_from_target": 0,
        "icmp_from_router": 0,
    }
    base.update(kw)
    return base


def liveness(na: int, ta: int, tl: int, aa: int, al: int) -> dict[str, int]:
    return {
        "network_alive": na,
        "transport_active": ta,
        "transport_alive": tl,
        "application_active": aa,
        "application_alive": al,
    }


def retx(found: int, first: int, only: int, added: float | None) -> dict[str, Any]:
    return {"found": found, "first_attempt": first, "retransmission_only": only, "added_percent": added}


EXPECTED_PER_KEY: dict[str, dict[str, Any]] = {
    "http/80": {
        "probe": "http",
        "port": 80,
        "protocol": "tcp",
        "liveness": liveness(2, 2, 2, 2, 1),
        "replies": {**z(synack=2), "icmp": {}},
        "unique": {"only_this_key": 0, "only_icmp": 0, "only_rst": 0},
        "retransmission": retx(2, 2, 0, 0.0),
    },
    "icmp-echo": {
        "probe": "icmp-echo",
        "port": None,
        "protocol": "icmp",
        "liveness": liveness(2, 0, 0, 0, 0),
        "replies": {
            **z(echoreply=2, icmp_from_router=1),
            "icmp": {"icmp-timxceed/0 ttl-exceeded": {"target": 0, "router": 1}},
        },
        "unique": {"only_this_key": 0, "only_icmp": 0, "only_rst": 0},
        "retransmission": retx(2, 1, 1, 100.0),
    },
    "synscan/80": {
        "probe": "synscan",
        "port": 80,
        "protocol": "tcp",
        "liveness": liveness(6, 6, 5, 0, 0),
        "replies": {
            **z(synack=5, rst=1, icmp_from_router=1),
            "icmp": {"icmp-unreach/1 host-unreachable": {"target": 0, "router": 1}},
        },
        "unique": {"only_this_key": 1, "only_icmp": 0, "only_rst": 1},
        "retransmission": retx(6, 6, 0, 0.0),
    },
    "synscan/443": {
        "probe": "synscan",
        "port": 443,
        "protocol": "tcp",
        "liveness": liveness(5, 5, 3, 0, 0),
        "replies": {**z(synack=2, zerowin=1, rst=2, rst_unvalidated=1), "icmp": {}},
        "unique": {"only_this_key": 0, "only_icmp": 0, "only_rst": 2},
        "retransmission": retx(5, 4, 1, 25.0),
    },
    "udp-dns/53": {
        "probe": "udp-dns",
        "port": 53,
        "protocol": "udp",
        "liveness": liveness(4, 3, 3, 2, 1),
        "replies": {
            **z(udp=3, icmp_from_target=1),
            "icmp": {"icmp-unreach/3 port-unreachable": {"target": 1, "router": 0}},
        },
        "unique": {"only_this_key": 2, "only_icmp": 1, "only_rst": 0},
        "retransmission": retx(4, 4, 0, 0.0),
    },
}

# Active sets: H1 {s80} H2 {s80,s443} H3 {udp} H5 {http,s80,s443} H6 {echo,s80,s443} H7 {http,echo,s80,udp}
# H9 {s443,udp} H10 {s80,s443} H11 {udp}.
EXPECTED_BOTH = [
    [2, 1, 2, 1, 1],
    [1, 2, 2, 1, 1],
    [2, 2, 6, 4, 1],
    [1, 1, 4, 5, 1],
    [1, 1, 1, 1, 4],
]
EXPECTED_P = [
    [1.0, 0.5, 1.0, 0.5, 0.5],
    [0.5, 1.0, 1.0, 0.5, 0.5],
    [0.333333, 0.333333, 1.0, 0.666667, 0.166667],
    [0.2, 0.2, 0.8, 1.0, 0.2],
    [0.25, 0.25, 0.25, 0.25, 1.0],
]


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return build_report(scenario_lines())


def test_totals(report: dict[str, Any]) -> None:
    assert report["schema"] == "zbanner-xdp-report/1"
    assert report["totals"] == {
        "lines": len(SCENARIO) + len(MALFORMED),
        "records": len(SCENARIO),
        "repeats_ignored": 1,
        "tarpit_check_records": 3,
        "malformed": len(MALFORMED),
        "malformed_reasons": MALFORMED_REASONS,
        "targets": 11,
        "network_alive": 9,  # all but H4 (router errors) and H8 (unvalidated RST)
        "router_icmp_only": 1,
        "found_only_via_icmp": 1,
        "found_only_via_rst": 1,
    }


def test_per_key_exact(report: dict[str, Any]) -> None:
    assert report["probe_keys"] == KEYS
    assert list(report["per_key"]) == KEYS
    for key in KEYS:
        assert report["per_key"][key] == EXPECTED_PER_KEY[key], key


def test_matrix_exact(report: dict[str, Any]) -> None:
    m = report["matrix"]
    assert m["keys"] == KEYS
    assert m["active"] == [2, 2, 6, 5, 4]
    assert m["both"] == EXPECTED_BOTH
    assert m["p"] == EXPECTED_P


def test_tarpits(report: dict[str, Any]) -> None:
    assert report["tarpits"] == {
        "tcp_ports": [80, 443],
        "check_port_synack": 2,
        "count": 1,
        "addresses": ["1.0.0.5"],
    }


def test_key_order_is_stable_and_json_round_trips(report: dict[str, Any]) -> None:
    assert list(report) == ["schema", "totals", "probe_keys", "per_key", "matrix", "tarpits"]
    shuffled = build_report(reversed(scenario_lines()))
    assert orjson.dumps(shuffled) == orjson.dumps(report)
    assert orjson.loads(orjson.dumps(report)) == report


def test_str_lines_and_sample_file_match(report: dict[str, Any]) -> None:
    assert (
        build_report(line.decode("utf-8", "replace") for line in scenario_lines())["matrix"]
        == (report["matrix"])
    )
    # The sample file under tests/data is this scenario, so the CLI can be tried on it by hand.
    assert (DATA_DIR / "sample.jsonl").read_bytes() == b"".join(scenario_lines())


def test_text_report(report: dict[str, Any]) -> None:
    text = format_report(report)
    lines = text.splitlines()
    assert "Records: 26 read, 1 repeats ignored, 3 tarpit checks, 10 malformed lines skipped" in text
    assert "Targets: 11 distinct, 9 network-alive, 1 only reported unreachable by routers" in text
    assert "  synscan/443  icmp-unreach/3" not in text
    assert any(ln.split() == ["synscan/80", "icmp-unreach/1", "host-unreachable", "0", "1"] for ln in lines)
    assert any(ln.split() == ["synscan/443", "5", "4", "1", "+25.00%"] for ln in lines)
    assert any(
        ln.split() == ["[3]", "synscan/80", "6", "0.333", "0.333", "1.000", "0.667", "0.167"] for ln in lines
    )
    assert "  1.0.0.5" in lines
    # Tables are aligned: every row of the liveness table has the same width as its header.
    start = lines.index("Liveness per probe key (distinct targets)") + 1
    table = lines[start : start + 1 + len(KEYS)]
    assert len({len(row) for row in table}) == 1
    assert table[1].split() == ["http/80", "2", "2", "2", "2", "1"]


def test_empty_input() -> None:
    rep = build_report([])
    assert rep["totals"]["targets"] == 0
    assert rep["matrix"] == {"keys": [], "active": [], "both": [], "p": []}
    assert rep["tarpits"]["count"] == 0
    assert "nothing to report" in format_report(rep)


def test_transport_comes_from_the_probe_registry() -> None:
    assert [protocol_of(p) for p in ("synscan", "http", "udp-dns", "udp-ntp", "icmp-echo")] == [
        "tcp",
        "tcp",
        "udp",
        "udp",
        "icmp",
    ]
    assert protocol_of("udp-from-a-newer-scanner") == "tcp"  # unknown names: TCP, not guessed from the name


def test_active_row_without_targets_is_null() -> None:
    # A key reached only by router errors has no active targets: its conditional row is undefined.
    rep = build_report(
        [
            orjson.dumps(icmp("1.0.0.4", "synscan", "icmp-unreach", 3, 1, ROUTER, 22)),
            orjson.dumps(rec("1.0.0.1", "synscan", "synack", 80)),
        ]
    )
    assert rep["matrix"]["p"] == [[None, None], [0.0, 1.0]]
    assert "-" in format_report(rep)


def test_strict_ipv4_and_icmp_labels() -> None:
    rep = build_report(
        [
            orjson.dumps(rec("10.1", "synscan", "synack", 80)),
            orjson.dumps(icmp("1.0.0.1", "synscan", "icmp-unreach", 3, 13, ROUTER, 80)),
            orjson.dumps(icmp("1.0.0.1", "synscan", "icmp-unreach", 3, 99, ROUTER, 80)),
            orjson.dumps(icmp("1.0.0.2", "synscan", "icmp-other", 42, 7, ROUTER, 80)),
        ]
    )
    assert rep["totals"]["malformed_reasons"] == {"bad 'saddr'": 1}
    assert list(rep["per_key"]["synscan/80"]["replies"]["icmp"]) == [
        "icmp-other/42/7",
        "icmp-unreach/13 admin-prohibited",
        "icmp-unreach/99",
    ]


# -- run_report ---------------------------------------------------------------


def test_run_report_plain_gzip_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = tmp_path / "r.jsonl"
    plain.write_bytes(b"".join(scenario_lines()))
    gz = tmp_path / "r.jsonl.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    out = tmp_path / "rep.json"
    assert run_report(str(plain), str(out), None) == 0
    text = capsys.readouterr().out
    assert text == format_report(build_report(scenario_lines()))
    first = orjson.loads(out.read_bytes())
    assert run_report(str(gz), str(out), None) == 0
    assert capsys.readouterr().out == text
    assert orjson.loads(out.read_bytes()) == first == build_report(scenario_lines())


def test_run_report_stdin_and_json_to_stdout(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    raw = io.BufferedReader(io.BytesIO(gzip.compress(b"".join(scenario_lines()))))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(raw))
    assert run_report("-", "-", None) == 0
    assert orjson.loads(capsys.readouterr().out) == build_report(scenario_lines())


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "cannot read '{p}/missing.jsonl': No such file or directory"),
        (lambda p: (p / "missing.jsonl").mkdir(), "cannot read '{p}/missing.jsonl': Is a directory"),
        (
            lambda p: (p / "missing.jsonl").write_bytes(gzip.compress(b"".join(scenario_lines()) * 50)[:400]),
            "'{p}/missing.jsonl': corrupt or truncated gzip data",
        ),
    ],
)
def test_run_report_input_errors(tmp_path: Path, setup: Any, message: str) -> None:
    setup(tmp_path)
    with pytest.raises(ReportError) as err:
        run_report(str(tmp_path / "missing.jsonl"), None, None)
    assert str(err.value).startswith(message.format(p=tmp_path))
    assert "\n" not in str(err.value)


def test_run_report_unwritable_json_fails_before_reading(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="No such file or directory"):
        run_report("/nonexistent/input", str(tmp_path / "nope" / "r.json"), None)
    with pytest.raises(ReportError, match="Is a directory"):
        run_report("/nonexistent/input", str(tmp_path), None)


def test_png_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    data = tmp_path / "r.jsonl"
    data.write_bytes(b"".join(scenario_lines()))
    with pytest.raises(ReportError) as err:
        run_report(str(data), None, str(tmp_path / "m.png"))
    assert str(err.value) == PNG_NEEDS == "--png needs matplotlib: pip install 'zbanner-xdp[plot]'"


def fake_matplotlib(monkeypatch: pytest.MonkeyPatch) -> mock.MagicMock:
    fig, ax = mock.MagicMock(name="fig"), mock.MagicMock(name="ax")
    pyplot = types.ModuleType("matplotlib.pyplot")
    pyplot.subplots = mock.MagicMock(return_value=(fig, ax))  # type: ignore[attr-defined]
    pyplot.close = mock.MagicMock()  # type: ignore[attr-defined]
    mpl = types.ModuleType("matplotlib")
    mpl.use = mock.MagicMock()  # type: ignore[attr-defined]
    mpl.pyplot = pyplot  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "matplotlib", mpl)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", pyplot)
    return fig


def test_write_png_draws_the_matrix(monkeypatch: pytest.MonkeyPatch, report: dict[str, Any]) -> None:
    fig = fake_matplotlib(monkeypatch)
    write_png(report, "/tmp/out.png")
    ax = sys.modules["matplotlib.pyplot"].subplots.return_value[1]
    (data,), kw = ax.imshow.call_args
    assert data == EXPECTED_P and kw["vmin"] == 0.0 and kw["vmax"] == 1.0
    ax.set_xticklabels.assert_called_once()
    assert ax.set_xticklabels.call_args[0][0] == KEYS
    fig.savefig.assert_called_once_with("/tmp/out.png", dpi=150)
    sys.modules["matplotlib.pyplot"].close.assert_called_once_with(fig)


def test_write_png_null_rows_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    fig = fake_matplotlib(monkeypatch)
    rep = build_report([orjson.dumps(icmp("1.0.0.4", "synscan", "icmp-unreach", 3, 1, ROUTER, 22))])
    fig.savefig.side_effect = PermissionError(13, "Permission denied")
    with pytest.raises(ReportError, match="cannot write '/x.png': Permission denied"):
        write_png(rep, "/x.png")
    ax = sys.modules["matplotlib.pyplot"].subplots.return_value[1]
    (data,), _ = ax.imshow.call_args
    assert math.isnan(data[0][0])
    sys.modules["matplotlib.pyplot"].close.assert_called_once_with(fig)


def test_write_png_real(tmp_path: Path, report: dict[str, Any]) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "m.png"
    write_png(report, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- robustness ---------------------------------------------------------------

ADDRS = ["1.0.0.1", "1.0.0.2", "1.0.0.3", ROUTER]
CLASSES = [
    "synack",
    "rst",
    "zerowin",
    "banner",
    "udp",
    "echoreply",
    "icmp-unreach",
    "icmp-timxceed",
    "icmp-redirect",
    "icmp-srcquench",
    "icmp-paramprob",
    "icmp-other",
]
JUNK = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.text(max_size=8), st.just([]))


def field(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # Mostly well-typed values, so that deep paths run, with wrong types mixed in. (one_of would flatten
    # JUNK's branches and pick junk most of the time.)
    return st.integers(0, 19).flatmap(lambda i: JUNK if i == 0 else good)


RECORD = st.fixed_dictionaries(
    {
        "saddr": field(st.sampled_from(ADDRS)),
        "sport": field(st.one_of(st.none(), st.sampled_from([22, 53, 80, 443]), st.integers(-1, 70000))),
        "classification": field(st.sampled_from(CLASSES)),
        "success": field(st.booleans()),
        "repeat": field(st.booleans()),
        "probe": field(st.sampled_from(["synscan", "http", "udp-dns", "icmp-echo"])),
        "icmp_type": field(st.one_of(st.none(), st.integers(0, 255))),
        "icmp_code": field(st.integers(0, 20)),
        "icmp_responder": field(st.sampled_from(ADDRS)),
        "data": field(st.one_of(st.none(), st.sampled_from(["", "AAAA"]))),
        "banner": field(st.one_of(st.none(), st.text(max_size=4))),
    },
    optional={
        "validated": field(st.booleans()),
        "attempt": field(st.integers(0, 3)),
        "tarpit_probe": field(st.booleans()),
        "app_match": field(st.one_of(st.none(), st.booleans())),
    },
)


@st.composite
def record_line(draw: st.DrawFn) -> bytes | str:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=40))
    if kind == 1:
        return draw(st.text(max_size=40))
    r = dict.fromkeys(REQUIRED_FIELDS)
    r.update(draw(RECORD))
    if kind == 2:
        r.pop(draw(st.sampled_from(sorted(r))))
    line = orjson.dumps(r)
    if kind == 3:
        line = line[: draw(st.integers(0, len(line)))]
    return line


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(record_line(), max_size=40))
def test_random_streams_never_crash(lines: list[bytes | str]) -> None:
    rep = build_report(lines)
    orjson.dumps(rep)
    format_report(rep)
    t = rep["totals"]
    assert t["records"] + t["malformed"] == t["lines"] <= len(lines)
    assert t["network_alive"] + t["router_icmp_only"] <= t["targets"]
    for a, key in enumerate(rep["probe_keys"]):
        lv = list(rep["per_key"][key]["liveness"].values())
        assert lv == sorted(lv, reverse=True), (key, lv)  # each level includes the next
        assert rep["matrix"]["active"][a] == lv[0]
        for b, p in enumerate(rep["matrix"]["p"][a]):
            assert p is None if lv[0] == 0 else 0.0 <= p <= 1.0
            if a == b and p is not None:
                assert p == 1.0


# -- streaming ----------------------------------------------------------------


def synthetic(n: int, n_targets: int) -> Iterator[bytes]:
    """n lines cycling over n_targets addresses: SYN-ACK on 80, RST on 443 for odd targets."""
    r = rec("0.0.0.0", "synscan", "synack", 80)
    for i in range(n):
        t = i % n_targets
        r["saddr"] = f"10.{t >> 16 & 255}.{t >> 8 & 255}.{t & 255}"
        if (i // n_targets) % 2 == 0:
            r["sport"], r["classification"] = 80, "synack"
        elif t % 2:
            r["sport"], r["classification"] = 443, "rst"
        else:
            r["sport"], r["classification"] = 80, "synack"
        yield orjson.dumps(r)


def test_200k_lines_streamed_quickly() -> None:
    t0 = time.perf_counter()
    rep = build_report(synthetic(200_000, 100_000))
    elapsed = time.perf_counter() - t0
    assert rep["totals"]["records"] == 200_000
    assert rep["totals"]["targets"] == 100_000
    s80, s443 = rep["per_key"]["synscan/80"], rep["per_key"]["synscan/443"]
    assert s80["liveness"]["transport_alive"] == 100_000
    assert s443["liveness"] == liveness(50_000, 50_000, 0, 0, 0)
    assert s443["unique"]["only_rst"] == 50_000
    assert rep["matrix"]["p"] == [[1.0, 0.5], [1.0, 1.0]]
    assert elapsed < 30, elapsed


def test_memory_follows_targets_not_records() -> None:
    builder = ReportBuilder()
    tracemalloc.start()
    try:
        for line in synthetic(100_000, 100):
            builder.add_line(line)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert builder.n_targets == 100
    # 100k lines of ~330 bytes would be ~33 MB if kept; a compact per-target state stays tiny.
    assert peak < 1_000_000, peak
    assert builder.finish()["totals"]["records"] == 100_000
