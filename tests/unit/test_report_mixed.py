"""`report` (and `report --blocks`) on a file mixing IPv4 and IPv6 targets (issue 16)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import ZB
from zbanner_xdp.blocks import blocks_of, format_blocks
from zbanner_xdp.report import REQUIRED_FIELDS, ReportBuilder, build_report, format_report

GW6 = "2001:2:0:ff00::2"


def rec(saddr: str, probe: str, cls: str, sport: int | None = None, **extra: Any) -> bytes:
    r: dict[str, Any] = dict.fromkeys(REQUIRED_FIELDS)
    r.update(
        saddr=saddr,
        sport=sport,
        daddr="2001:2:0:ff00::1" if ":" in saddr else "10.77.0.1",
        dport=40000,
        classification=cls,
        success=cls in ("synack", "banner", "echoreply"),
        repeat=False,
        timestamp="2026-01-01T00:00:00.000Z",
        ttl=64,
        probe=probe,
        validated=True,
    )
    r.update(extra)
    return orjson.dumps(r)


def icmp(saddr: str, probe: str, cls: str, itype: int, code: int, responder: str, sport: int | None) -> bytes:
    return rec(saddr, probe, cls, sport, icmp_type=itype, icmp_code=code, icmp_responder=responder)


MIXED = [
    rec("198.18.0.5", "synscan", "synack", 80),
    rec("2001:2::5", "synscan", "synack", 80),
    rec("2001:2:0:0:0:0:0:5", "synscan", "synack", 80, attempt=1),  # the same target, spelled out
    rec("2001:2::105", "synscan", "rst", 80),
    rec("2001:2::6", "icmp-echo", "echoreply"),
    rec("198.18.0.6", "icmp-echo", "echoreply"),
    # ICMPv6 errors: the target's own port unreachable makes it alive; the router's do not.
    icmp("2001:2::7", "udp-dns", "icmp-unreach", 1, 4, "2001:2::7", 53),
    icmp("2001:2::1:5", "udp-dns", "icmp-unreach", 1, 3, GW6, 53),
    icmp("2001:2::1:305", "udp-dns", "icmp-timxceed", 3, 0, GW6, 53),
    icmp("2001:2::1:105", "udp-dns", "icmp-unreach", 1, 1, GW6, 53),
    icmp("2001:2::8", "udp-dns", "icmp-toobig", 2, 0, "2001:2::8", 53),
    # Its IPv4 twins, whose codes mean other things.
    icmp("198.19.0.5", "udp-dns", "icmp-unreach", 3, 1, "10.77.0.2", 53),
    icmp("198.18.0.7", "udp-dns", "icmp-unreach", 3, 3, "198.18.0.7", 53),
    # A tarpit over IPv6: the control port and every TCP port of the scan SYN-ACK'd.
    rec("2001:2::405", "synscan", "synack", 80),
    rec("2001:2::405", "synscan", "synack", 31337, tarpit_probe=True),
    # Not addresses: skipped as malformed.
    rec("2001:2::zz", "synscan", "synack", 80),
    rec("2001:2::5%eth0", "synscan", "synack", 80),
    icmp("2001:2::9", "udp-dns", "icmp-unreach", 1, 4, "not-an-address", 53),
]


def test_mixed_families_counted_as_distinct_targets() -> None:
    rep = build_report(MIXED)
    t = rep["totals"]
    assert t["malformed_reasons"] == {"bad 'saddr'": 2, "bad 'icmp_responder'": 1}
    # v4: .5, .6, .7 and 198.19.0.5; v6: ::5, ::105, ::6, ::7, ::1:5, ::1:305, ::1:105, ::8, ::405.
    assert t["targets"] == 4 + 9
    assert t["router_icmp_only"] == 1 + 3
    assert t["network_alive"] == 3 + 6
    syn = rep["per_key"]["synscan/80"]
    assert syn["liveness"]["network_alive"] == 4  # 198.18.0.5, 2001:2::5 (once), ::105, ::405
    assert syn["liveness"]["transport_alive"] == 3
    assert syn["retransmission"]["retransmission_only"] == 0  # ::5 answered its first SYN too
    assert rep["per_key"]["icmp-echo"]["liveness"]["network_alive"] == 2
    assert rep["tarpits"]["addresses"] == ["2001:2::405"]
    labels = rep["per_key"]["udp-dns/53"]["replies"]["icmp"]
    assert labels == {
        "icmp-unreach/1 host-unreachable": {"target": 0, "router": 1},
        "icmp-unreach/3 port-unreachable": {"target": 1, "router": 0},
        "icmp-unreach/1 admin-prohibited (ICMPv6)": {"target": 0, "router": 1},
        "icmp-unreach/3 address-unreachable (ICMPv6)": {"target": 0, "router": 1},
        "icmp-unreach/4 port-unreachable (ICMPv6)": {"target": 1, "router": 0},
        "icmp-timxceed/0 hop-limit-exceeded (ICMPv6)": {"target": 0, "router": 1},
        "icmp-toobig/0 packet-too-big (ICMPv6)": {"target": 1, "router": 0},
    }
    text = format_report(rep)
    assert "2001:2::405" in text and "address-unreachable (ICMPv6)" in text


def test_blocks_per_24_and_per_64() -> None:
    b = ReportBuilder()
    for i in range(300):  # more than 256 alive in one /64
        b.add_line(rec(f"2001:2::{i:x}", "synscan", "synack", 80))
    b.add_line(rec("2001:2:0:1::1", "synscan", "synack", 80))
    b.add_line(icmp("2001:2:0:2::1", "synscan", "icmp-unreach", 1, 3, GW6, 80))  # not alive: no block
    for i in range(256):
        b.add_line(rec(f"198.18.0.{i}", "synscan", "synack", 80))
    rep = blocks_of(b)
    # IPv4: its own section, unchanged by the IPv6 targets.
    assert rep["any"]["per_block"] == {"198.18.0.0/24": 256}
    assert rep["any"]["full_blocks"] == 1 and rep["any"]["addresses"] == 256
    v6 = rep["ipv6"]
    assert v6["block"] == "/64"
    assert v6["keys"]["synscan/80"]["per_block"] == {"2001:2::/64": 300, "2001:2:0:1::/64": 1}
    assert v6["any"]["addresses"] == 301 and v6["any"]["blocks"] == 2
    assert v6["any"]["histogram"][255] == 1 and v6["any"]["histogram"][0] == 1  # 256 or more; one
    assert v6["any"]["full_blocks"] == 1
    text = format_blocks(rep)
    assert "IPv6 targets, per /64 block" in text and "256+" in text and "full /24s" in text
    # A file without IPv6 targets has no IPv6 section.
    assert "ipv6" not in blocks_of(ReportBuilder())


def test_cli_on_a_mixed_file(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(MIXED) + b"\n")
    for extra in ([], ["--blocks"]):
        out = tmp_path / f"r{len(extra)}.json"
        r = subprocess.run(
            [ZB, "report", str(path), *extra, "--json", str(out)], capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 0, r.stderr
        rep = orjson.loads(out.read_bytes())
        if extra:
            # Alive: ::5, ::105, ::6, ::7, ::8, ::405; the router-only ::1:x are in the /64 but not alive.
            assert rep["ipv6"]["any"]["per_block"] == {"2001:2::/64": 6}
        else:
            assert rep["totals"]["targets"] == 13
