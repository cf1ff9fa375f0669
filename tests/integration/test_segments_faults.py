"""--banner-bytes through a faulty link: loss, duplication and reordering never corrupt an answer.

The lab's fault wire (see test_faults.py) impairs both directions while the scanner reads nginx's
whole /big.html (~4.6 kB: about ten segments at the window the scanner advertises) from 128
targets. Every banner record must be the server's bytes in order: the whole response (Date aside)
when not marked truncated, a prefix of it when marked. Duplication and reordering lose nothing, so
every target's answer is whole; under loss the server's retransmissions recover the lost segments
(we acknowledge only in order), and what a lost SYN or an expired connection costs is counted.
"""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path

import orjson
import pytest

from tests.integration.conftest import NO_DROPS, read_records, run_scanner
from tests.integration.test_faults import (
    _check_relay,
    _source_ports,
    fault,
    wire_lab,  # noqa: F401 (the fixture)
)
from tests.integration.test_segments import stateful_response, without_date
from zbanner_xdp import lab

pytestmark = pytest.mark.privileged

NET = "198.18.0.0/25"
TARGETS = {str(a) for a in ipaddress.ip_network(NET)}
PATH = f"path={lab.BIG_PAGE}"

# id, spec (both directions), relay counter that must show the fault, minimum share of the targets
# whose handshake completes, minimum share of those whose answer is whole.
# Under 5% loss each way a target is lost when its SYN is (we send it once: 6.4 of 128 expected, 15
# is 3.4 standard deviations out). The answers of the others are whole unless the scan ended first:
# after a retransmitted SYN-ACK a server waits 3 s, then 6 s, 12 s to resend a lost segment, longer
# than the cooldown for ~1.5% of them (measured: 0-2 of ~120 in each of nine runs), marked truncated then.
FAULTS = [
    ("duplicate", "duplicate 20%", "duplicated", 1.0, 1.0),
    ("reorder", "reorder 25% delay 10ms", "reordered", 1.0, 1.0),
    ("loss", "loss 5%", "dropped", 0.88, 0.95),
]


@pytest.mark.usefixtures("wire_lab")  # the fault wire's lab, shared with test_faults.py
@pytest.mark.parametrize(
    ("spec", "counter", "min_synacks", "min_whole"), [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS]
)
def test_big_page_whole_or_marked_truncated_never_wrong(
    tmp_path: Path, empty_blocklist: str, spec: str, counter: str, min_synacks: float, min_whole: float
) -> None:
    truth = without_date(stateful_response(sorted(TARGETS)[0], 80, PATH))
    assert len(truth) > 4096
    out, meta = tmp_path / "out.jsonl", tmp_path / "meta.json"
    with fault("relay", spec) as stats:
        r = run_scanner(
            *("--blocklist", empty_blocklist, "-q", "--rate", "1K", "--cooldown", "10"),
            *("--source-port", _source_ports(), "-o", str(out), "--metadata", str(meta)),
            *("scan", NET, "-p", "80", "--probe", "http", "--probe-args", PATH),
            *("--no-kernel-replies", "--banner-bytes", "16K"),
        )
    assert r.returncode == 0, r.stderr
    _check_relay(stats, counter)
    recs = read_records(out)
    m = orjson.loads(meta.read_bytes())
    assert m["drops"] == NO_DROPS
    banners = [x for x in recs if x["classification"] == "banner"]
    assert len({x["saddr"] for x in banners}) == len(banners), "one record per target"
    whole = 0
    for x in banners:
        data = without_date(base64.b64decode(x["data"]))
        if x["truncated"]:
            assert truth.startswith(data), x["saddr"]  # a prefix, never a wrong byte
        else:
            assert data == truth, x["saddr"]
            whole += 1
    seg = m["segments"]
    print(
        f"\n{spec}: targets {len(TARGETS)} synacks {m['responses'].get('synack')} banners {len(banners)} "
        f"whole {whole} ends {seg['ends']} "
        f"out-of-order {seg['out_of_order_segments']} segments {seg['segments_taken']} "
        f"acks {seg['acks_sent']} peak {seg['peak_connections']} conns {seg['peak_bytes']} B "
        f"without data {seg['dropped_without_data']}"
    )
    assert seg["results"] == len(banners) and seg["truncated"] == len(banners) - whole
    # Cut short only by time (the scan's end, a quiet connection): never by the limit or the table.
    assert seg["truncated"] == seg["ends"]["scan_end"] + seg["ends"]["timeout"]
    assert seg["segments_taken"] >= 5 * whole  # the page took many segments
    # Every completed handshake gives its record, or is counted as given up before any data: under loss
    # a server's last try can come after the scan's end (our ACK lost, its SYN-ACK resent at 1, 3, 7 s,
    # then its first segment at 3 s, 6 s): at 5 % one target in 1 of 32 runs (CI's failure of
    # 2026-12-05), at 15 % 0-3 a run in five, each one counted. A lost SYN (sent once) or SYN-ACK
    # costs the target. The whole answers' share below bounds how many.
    synacks = {x["saddr"] for x in recs if x["classification"] == "synack"}
    got = {x["saddr"] for x in banners}
    assert got <= synacks, sorted(got - synacks)[:5]
    # (<=: a connection given up empty and then revived by a late SYN-ACK is counted and recorded.)
    assert len(synacks - got) <= seg["dropped_without_data"], sorted(synacks - got)[:5]
    assert whole >= min_whole * len(synacks), f"{whole}/{len(synacks)} whole answers"
    assert len(synacks) >= min_synacks * len(TARGETS), f"{len(synacks)}/{len(TARGETS)} handshakes"
    if counter == "reordered":
        assert seg["out_of_order_segments"] > 0  # a gap was seen, and filled by the server's resend
