"""`report --blocks`: alive addresses per /24 per probe key, and their distribution."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson

from tests.conftest import ZB
from zbanner_xdp.blocks import blocks_of, format_blocks
from zbanner_xdp.fields import NAMES
from zbanner_xdp.report import ReportBuilder


def _rec(addr: str, cls: str, probe: str = "synscan", sport: int | None = 80, **kw: object) -> bytes:
    rec = dict.fromkeys(NAMES)
    rec.update(
        saddr=addr,
        sport=sport,
        classification=cls,
        probe=probe,
        repeat=False,
        success=cls in ("synack", "echoreply"),
        validated=True,
        attempt=0,
        tarpit_probe=False,
    )
    rec.update(kw)
    return orjson.dumps(rec)


def _lines() -> list[bytes]:
    out = [_rec(f"10.0.0.{i}", "synack") for i in range(256)]  # a full block
    out += [_rec(f"10.0.1.{i}", "rst") for i in range(0, 256, 2)]  # half of one
    out += [_rec(f"10.0.2.{i}", "synack") for i in range(3)]  # three
    out += [_rec(f"10.0.1.{i}", "echoreply", "icmp-echo", None) for i in range(5)]
    # Not alive: router errors, unvalidated RSTs, repeats, tarpit-check answers.
    out += [
        _rec("10.0.3.1", "icmp-unreach", icmp_type=3, icmp_code=1, icmp_responder="10.9.9.9"),
        _rec("10.0.3.2", "rst", validated=False),
        _rec("10.0.3.3", "synack", repeat=True),
        _rec("10.0.3.4", "synack", tarpit_probe=True, sport=31337),
    ]
    # An ICMP error from the target itself makes it alive.
    out.append(_rec("10.0.2.200", "icmp-unreach", icmp_type=3, icmp_code=3, icmp_responder="10.0.2.200"))
    return out


def _report() -> dict:
    b = ReportBuilder()
    for line in _lines():
        b.add_line(line)
    return blocks_of(b)


def test_counts_per_block_and_key() -> None:
    rep = _report()
    assert rep["probe_keys"] == ["icmp-echo", "synscan/80"]
    syn = rep["keys"]["synscan/80"]
    assert syn["per_block"] == {"10.0.0.0/24": 256, "10.0.1.0/24": 128, "10.0.2.0/24": 4}
    assert syn["blocks"] == 3 and syn["addresses"] == 388 and syn["full_blocks"] == 1
    assert syn["histogram"][255] == 1 and syn["histogram"][127] == 1 and syn["histogram"][3] == 1
    assert sum(syn["histogram"]) == 3
    assert syn["quantiles"]["p50"] == 128.0
    assert rep["keys"]["icmp-echo"]["per_block"] == {"10.0.1.0/24": 5}
    # any: the union: the echo repliers are among the RST block's even addresses only in part.
    assert rep["any"]["per_block"] == {"10.0.0.0/24": 256, "10.0.1.0/24": 128 + 2, "10.0.2.0/24": 4}


def test_text_and_cli(tmp_path: Path) -> None:
    text = format_blocks(_report())
    assert "synscan/80" in text and "256" in text and "128-255" in text
    res = tmp_path / "r.jsonl"
    res.write_bytes(b"\n".join(_lines()) + b"\n")
    outs = ["--json", str(tmp_path / "b.json"), "--png", str(tmp_path / "b.png")]
    r = subprocess.run(
        [ZB, "report", str(res), "--blocks", *outs],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "Blocks by alive addresses per /24" in r.stdout
    assert orjson.loads((tmp_path / "b.json").read_bytes())["keys"]["synscan/80"]["blocks"] == 3
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_empty_results() -> None:
    rep = blocks_of(ReportBuilder())
    assert rep["any"]["blocks"] == 0 and rep["any"]["mean"] is None
    assert "any" in format_blocks(rep)
