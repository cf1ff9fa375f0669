"""Multi-connection probes through the real scanner, against the lab's real servers (issue 12).

- `--probe lzr` identifies every lab service on its own port and on its unexpected port
  (lab.TCP_SERVICES), complete, in exactly the connections LZR's handshake order implies;
- `--probe jarm` gives the reference JARM (../shared/reference/jarm.md) for the lab's nginx and the
  reference `openssl s_server`s (started as test_jarm_lab.py does), and the all-zero JARM after one
  connection on ports that do not speak TLS;
- `--probe auto` gives each well-known port its probe's natural banner (the fields a stateful client
  parses from the same server) and LZR's identification on every other port;
- `--tarpit-check`: the lab's tarpit is marked and its handshakes stop;
- a step table too small evicts, and every evicted target is still written, once, `incomplete`;
- faults on the wire (loss, reordering): every complete LZR and JARM result equals the clean run's.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.conftest import pcap_tcp, read_records, run_scanner
from tests.integration.test_banners import STABLE, stateful_view
from tests.integration.test_faults import wire_lab  # noqa: F401 - a fixture (lab.up(wire=True))
from tests.integration.test_jarm_lab import CLOSED_PORT, REFERENCE, tls_servers  # noqa: F401 - a fixture
from zbanner_xdp import lab
from zbanner_xdp.probes import auto, jarm, lzr

pytestmark = pytest.mark.privileged

TARGET = "198.18.0.9"
OTHER = "198.18.77.7"  # BIG_NET outside the carve-outs: as open as OPEN_NET
LZR_ARGS = "timeout=2"  # the lab's servers answer within milliseconds, or not at all

# The handshake that identifies each lab protocol: the first in LZR's order (lzr.HANDSHAKES) whose
# answer matches. http and every server-first service answer the first (http) handshake, nginx's TLS
# port too (its "plain HTTP request was sent to HTTPS port" page, in a TLS-capable server's words);
# memcached answers the TLS hello's "lines" with ERROR (2nd); PostgreSQL answers the SMB negotiate
# with an ErrorResponse (4th) before its own SSLRequest (8th); dnsmasq and mosquitto stay silent or
# close until their own handshake (dns 5th, mqtt 9th).
IDENTIFIED_BY = {
    "http": "http", "tls": "http", "ssh": "http", "ftp": "http", "smtp": "http", "pop3": "http",
    "imap": "http", "mysql": "http", "redis": "http", "memcached": "tls", "postgres": "smb",
    "dns": "dns", "mqtt": "mqtt",
}  # fmt: skip

# Fields of the well-known probes that do not change between two connections (test_banners' plus the
# probes it does not cover).
STABLE_FIELDS = {
    **STABLE,
    "smtp": ("code", "hostname", "esmtp", "software"),
    "pop3": ("status", "text", "apop"),
    "imap": ("status", "capabilities", "starttls", "text"),
    "mysql": ("protocol_version", "server_version", "capabilities", "character_set", "auth_plugin"),
}

# Every scan its own source-port window: answers still arriving from an earlier scan (retransmitted
# SYN-ACKs after a fault) must not fall into the next one's.
_WINDOWS = itertools.count()


def _source_ports() -> str:
    lo = 32768 + 3000 * (next(_WINDOWS) % 9)
    return f"{lo}-{lo + 2999}"


def scan(
    tmp_path: Path,
    blocklist: str,
    targets: list[str],
    ports: str,
    probe: str,
    *extra: str,
    rate: str = "1K",
    cooldown: str = "2",
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    out, meta = tmp_path / f"{probe}-{next(_WINDOWS)}.jsonl", tmp_path / "meta.json"
    r = run_scanner(
        *("--blocklist", blocklist, "--rate", rate, "--cooldown", cooldown, "--source-port", _source_ports()),
        *("-o", str(out), "--metadata", str(meta), "scan", *targets, "-p", ports, "--probe", probe, *extra),
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return read_records(out), orjson.loads(meta.read_bytes())


def results(recs: list[dict[str, Any]], probe: str) -> dict[tuple[str, int], dict[str, Any]]:
    """The multi-step results of `probe`, by (address, port): one record each, never two."""
    mine = [r for r in recs if r["classification"] == "banner" and r["probe"] == probe]
    count = Counter((r["saddr"], r["sport"]) for r in mine)
    assert set(count.values()) <= {1}, [k for k, n in count.items() if n > 1]
    return {(r["saddr"], r["sport"]): r for r in mine}


def all_ports() -> str:
    return ",".join(map(str, sorted(lab.TCP_SERVICES)))


def check_lzr(rec: dict[str, Any], addr: str, port: int) -> None:
    want = lab.service(addr, port)
    got = rec["lzr"]
    used = lzr.HANDSHAKE_NAMES.index(IDENTIFIED_BY[want]) + 1
    where = (addr, port, want, got)
    assert rec["incomplete"] is False and rec["success"] and rec["app_match"], where
    assert got["fingerprint"] == want and want in got["matches"], where
    assert (got["handshake"], got["handshakes"]) == (IDENTIFIED_BY[want], used), where
    assert got["tarpit"] is False, where


# --------------------------------------------------------------------------- lzr


def test_lzr_identifies_every_service_own_and_unexpected_port(
    lab_up: lab.LabInfo, tmp_path: Path, empty_blocklist: str
) -> None:
    targets = [TARGET, OTHER]
    recs, meta = scan(tmp_path, empty_blocklist, targets, all_ports(), "lzr", "--probe-args", LZR_ARGS)
    got = results(recs, "lzr")
    want = {(a, p) for a in targets for p in lab.TCP_SERVICES}
    assert set(got) == want, sorted(want ^ set(got))
    for addr, port in sorted(want):
        check_lzr(got[(addr, port)], addr, port)
    # The exact connections: one SYN per handshake after the first.
    steps = meta["steps"]
    assert (steps["complete"], steps["incomplete"], steps["evicted"]) == (len(want), 0, 0), steps
    follow_ups = sum(r["lzr"]["handshakes"] - 1 for r in got.values())
    assert steps["followup_syns"] == follow_ups, steps
    print(f"\nlzr: {len(want)} services, {follow_ups + len(want)} connections, {meta['duration_s']} s")


def test_lzr_tarpit_check_stops_the_tarpit(lab_up: lab.LabInfo, tmp_path: Path, empty_blocklist: str) -> None:
    neighbour = "198.18.4.6"  # an ordinary open host next to the tarpit
    # One port per scan: the tarpit check's SYN leaves with the address's first port, so its answer
    # is known before the first handshake's (with several ports an early one can finish first).
    for port, steps_needed in ((lab.PORTS["postgres"], 4), (lab.PORTS["mqtt"], 9), (lab.PORTS["http"], 1)):
        recs, _ = scan(
            tmp_path, empty_blocklist, [lab.TARPIT_IP, neighbour], str(port), "lzr",
            "--probe-args", LZR_ARGS, "--tarpit-check",
        )  # fmt: skip
        got = results(recs, "lzr")
        tarpit = got[(lab.TARPIT_IP, port)]
        assert tarpit["incomplete"] is False and tarpit["lzr"]["tarpit"] is True, tarpit
        assert tarpit["lzr"]["handshakes"] == 1, tarpit  # HyperACKtive: no further handshake
        check_lzr(got[(neighbour, port)], neighbour, port)
        assert got[(neighbour, port)]["lzr"]["handshakes"] == steps_needed
        assert any(r["tarpit_probe"] and r["saddr"] == lab.TARPIT_IP for r in recs)


def test_step_table_too_small_evicts_and_writes_incomplete(
    lab_up: lab.LabInfo, tmp_path: Path, empty_blocklist: str
) -> None:
    targets = [str(a) for a in ipaddress.ip_network("198.18.0.0/26")]
    port = lab.PORTS["postgres"]  # four handshakes each: rows stay a while
    recs, meta = scan(
        tmp_path, empty_blocklist, targets, str(port), "lzr", "--probe-args", LZR_ARGS, "--step-table", "4"
    )
    got = results(recs, "lzr")
    # Never lost, never merged: one record per target.
    assert sorted(a for a, _ in got) == sorted(targets)
    assert len([r for r in recs if r["classification"] == "banner"]) == len(targets)
    steps = meta["steps"]
    assert steps["table_limit"] == 4 and steps["table_peak"] == 4, steps
    assert steps["evicted"] > 0, steps
    incomplete = [r for r in got.values() if r["incomplete"]]
    complete = [r for r in got.values() if not r["incomplete"]]
    assert len(incomplete) == steps["incomplete"] >= steps["evicted"], steps
    assert len(complete) == steps["complete"] and complete, steps
    for r in complete:
        check_lzr(r, r["saddr"], port)
    for r in incomplete:  # cut short before postgres answered: not identified, never misidentified
        assert r["lzr"]["fingerprint"] == "unknown" and r["lzr"]["handshakes"] < 4, r


# --------------------------------------------------------------------------- jarm


def test_jarm_reference_fingerprints(
    tls_servers: None,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    empty_blocklist: str,
) -> None:
    ports = sorted(REFERENCE)
    recs, meta = scan(tmp_path, empty_blocklist, [TARGET], ",".join(map(str, ports)), "jarm")
    got = results(recs, "jarm")
    tls_ports = [p for p in ports if p != CLOSED_PORT]
    assert sorted(p for _, p in got) == tls_ports
    for port in tls_ports:
        r = got[(TARGET, port)]
        assert r["incomplete"] is False, r
        assert r["jarm"]["fingerprint"] == REFERENCE[port], (port, r["jarm"]["parts"])
        assert len(r["jarm"]["parts"]) == jarm.HELLO_COUNT
    # Nothing listening: the SYN is refused, no connection, no JARM record (the RST's own record).
    assert [r["classification"] for r in recs if r["sport"] == CLOSED_PORT] == ["rst"]
    assert meta["steps"]["followup_syns"] == (jarm.HELLO_COUNT - 1) * len(tls_ports)


def test_jarm_not_tls_is_zero_after_one_connection(
    lab_up: lab.LabInfo, tmp_path: Path, empty_blocklist: str
) -> None:
    ports = [p for p, proto in sorted(lab.TCP_SERVICES.items()) if proto in ("ssh", "http", "redis", "smtp")]
    recs, meta = scan(tmp_path, empty_blocklist, [TARGET], ",".join(map(str, ports)), "jarm")
    got = results(recs, "jarm")
    assert sorted(p for _, p in got) == ports
    for r in got.values():
        assert r["incomplete"] is False and r["jarm"]["fingerprint"] == jarm.ZERO_FINGERPRINT, r
        assert r["app_match"] is False
    assert meta["steps"]["followup_syns"] == 0  # the other nine hellos never sent


LOST_REQUESTS = "198.18.0.10"  # an OPEN_NET address of its own: the router drops what reaches it below
JARM_2S = ("--probe-args", "timeout=2")
LZR_2S = ("--probe-args", LZR_ARGS)


@contextlib.contextmanager
def router_drops(name: str, body: str) -> Iterator[Callable[[], dict[str, int]]]:
    """An nftables table of the test's own in the router (forwarded frames), removed after; yields a
    reader of its named counters (packets), to prove the path did what the test says."""
    table = f"{lab.NFT_TABLE}{name}"
    nft = lab.ns_exec_argv(lab.ROUTER_NS, ["nft"])
    rules = f"table ip {table} {{\n{body}\n}}\n"
    subprocess.run([*nft, "-f", "-"], input=rules, text=True, check=True, capture_output=True)

    def counters() -> dict[str, int]:
        out = subprocess.run(
            [*nft, "-j", "list", "counters", "table", "ip", table], text=True, check=True, capture_output=True
        ).stdout
        return {
            c["counter"]["name"]: c["counter"]["packets"]
            for c in orjson.loads(out)["nftables"]
            if "counter" in c
        }

    try:
        yield counters
    finally:
        subprocess.run([*nft, "delete", "table", "ip", table], capture_output=True)


def requests_lost(addr: str, port: int) -> contextlib.AbstractContextManager[Callable[[], dict[str, int]]]:
    """Every segment with data to addr:port is lost (our requests), and every SYN-ACK from it after the
    first (the server's retransmissions, which would tell us our request was lost). What a lossy path
    does to a step now and then, every time."""
    return router_drops("loss", f"""
    counter requests {{ }}
    counter synacks {{ }}
    chain forward {{
        type filter hook forward priority -10; policy accept;
        ip daddr {addr} tcp dport {port} ip length > 80 counter name requests drop
        ip saddr {addr} tcp sport {port} tcp flags & (syn | ack) == syn | ack \\
            limit rate over 1/hour burst 1 packets counter name synacks drop
    }}""")  # fmt: skip


def first_ack_lost(addr: str, port: int) -> contextlib.AbstractContextManager[Callable[[], dict[str, int]]]:
    """The first pure ACK from addr:port is lost (a server acknowledging our request, then silent)."""
    return router_drops("ack", f"""
    counter acks {{ }}
    quota first {{ until 60 bytes }}  # one pure ACK (40 or 52 bytes), not two
    chain forward {{
        type filter hook forward priority -10; policy accept;
        ip saddr {addr} tcp sport {port} tcp flags == ack ip length < 60 \\
            quota name first counter name acks drop
    }}""")  # fmt: skip


def test_a_step_whose_request_was_lost_is_incomplete_never_a_timeout(
    lab_up: lab.LabInfo, tmp_path: Path, empty_blocklist: str
) -> None:
    # Our hello and every SYN-ACK nginx retransmits for it are lost: the step sees a SYN-ACK, then
    # nothing, as from a server that stays silent. But nginx never had the hello, never acknowledged
    # it: the row is incomplete. (It was written complete, the reference's all-zero "timeout" JARM:
    # CI under 5 % loss, 2026-12-05.)
    port = lab.PORTS["https"]
    with requests_lost(LOST_REQUESTS, port) as dropped:
        recs, meta = scan(tmp_path, empty_blocklist, [LOST_REQUESTS], str(port), "jarm", *JARM_2S)
        lost = dropped()
    assert lost["requests"] >= 2 and lost["synacks"] >= 1, lost  # the path did what the test says
    (r,) = results(recs, "jarm").values()
    assert r["incomplete"] is True and r["jarm"]["fingerprint"] is None, r
    # The hello went twice (at the step's deadline, as TCP would resend it), lost both times.
    steps = meta["steps"]
    assert (steps["unacknowledged_requests"], steps["requests_resent"]) == (1, 1), steps
    # The same address and path without the drops: nginx's JARM, complete (the lab is as it was).
    recs, meta = scan(tmp_path, empty_blocklist, [LOST_REQUESTS], str(port), "jarm", *JARM_2S)
    (r,) = results(recs, "jarm").values()
    assert r["incomplete"] is False and r["jarm"]["fingerprint"] == REFERENCE[port], r


def test_a_lost_ack_of_a_silent_step_costs_a_resend_not_the_result(
    lab_up: lab.LabInfo, tmp_path: Path, empty_blocklist: str
) -> None:
    # dnsmasq acknowledges LZR's first handshakes and stays silent until its own (dns, the 5th). The
    # first such ACK is lost: at the step's deadline the request goes again, the server acknowledges it
    # again at once, and its silence is the answer after all: the same identification as without loss.
    # (mosquitto closes instead: a FIN, which acknowledges the request too.)
    port = lab.PORTS["dns"]
    with first_ack_lost(LOST_REQUESTS, port) as dropped:
        recs, meta = scan(tmp_path, empty_blocklist, [LOST_REQUESTS], str(port), "lzr", *LZR_2S)
        lost = dropped()
    assert lost["acks"] == 1, lost  # the path did what the test says
    (r,) = results(recs, "lzr").values()
    check_lzr(r, LOST_REQUESTS, port)
    steps = meta["steps"]
    assert (steps["requests_resent"], steps["unacknowledged_requests"]) == (1, 0), steps


def test_pcap_holds_no_pure_ack_of_a_step(lab_up: lab.LabInfo, tmp_path: Path, empty_blocklist: str) -> None:
    """--pcap copies the frames user space records: a server's pure ACK of a step's request goes up
    only as the step's evidence (Kind.ACKED), and is not a frame of the capture."""
    port, pcap = lab.PORTS["dns"], tmp_path / "steps.pcap"
    recs, meta = scan(tmp_path, empty_blocklist, [TARGET], str(port), "lzr", *LZR_2S, "--pcap", str(pcap))
    assert meta["xdp_counters"]["acked"] > 0  # dnsmasq acknowledged LZR's handshakes (the path ran)
    (r,) = results(recs, "lzr").values()
    check_lzr(r, TARGET, port)
    theirs = [f for f in pcap_tcp(pcap) if f[0] == TARGET and f[2] == port]
    assert theirs, "the capture holds the scan's frames"
    assert [f for f in theirs if f[4] == 0x10 and f[6] == 0] == []  # flags ACK alone, no data
    assert meta["pcap"]["frames"] == len(theirs) and meta["pcap"]["lost"] == 0


# --------------------------------------------------------------------------- auto


def test_auto_natural_banners_and_lzr_elsewhere(
    lab_up: lab.LabInfo, tmp_path: Path, empty_blocklist: str
) -> None:
    recs, _ = scan(tmp_path, empty_blocklist, [TARGET], all_ports(), "auto")
    banners = [r for r in recs if r["classification"] == "banner"]
    by_port = {r["sport"]: r for r in banners}
    assert Counter(r["sport"] for r in banners) == Counter(set(lab.TCP_SERVICES))  # one each
    for port in sorted(lab.TCP_SERVICES):
        r = by_port[port]
        name = auto.PORT_PROBE.get(port, auto.OTHER)
        assert r["probe"] == name, (port, r["probe"])
        if name == auto.OTHER:
            check_lzr(r, TARGET, port)
            continue
        # The well-known probe's natural banner: what a stateful client parses from the same server.
        assert r["success"] and r["app_match"], r
        truth = stateful_view(name, port, [TARGET])[TARGET]["parsed"]
        fields = STABLE_FIELDS[name]
        assert {k: r[name][k] for k in fields} == {k: truth[k] for k in fields}, port
    # The unexpected ports got lzr, and every lab service's own well-known port its own probe.
    assert {by_port[p]["probe"] for p in lab.UNEXPECTED_PORTS} == {auto.OTHER}


# --------------------------------------------------------------------------- faults


FAULT_TARGETS = [str(a) for a in ipaddress.ip_network("198.18.0.0/28")]
FAULT_LZR_PORTS = ",".join(map(str, (22, 80, 443, 5432, 11211, 9022, 9053, 9443)))
FAULTS = ["loss 5%", "reorder 25% delay 10ms"]
RELAY_SECONDS = 300


def _fault_scans(tmp_path: Path, blocklist: str) -> dict[str, dict[tuple[str, int], dict[str, Any]]]:
    # A lost SYN-ACK or banner is retransmitted by the server 1 s, 3 s, ... later: cooldown and step
    # timeouts cover the first retransmissions.
    lzr_recs, _ = scan(
        tmp_path, blocklist, FAULT_TARGETS, FAULT_LZR_PORTS, "lzr", "--probe-args", "timeout=4", cooldown="8"
    )
    jarm_recs, _ = scan(
        tmp_path, blocklist, FAULT_TARGETS, str(lab.PORTS["https"]), "jarm", "--probe-args", "timeout=4",
        cooldown="8",
    )  # fmt: skip
    return {"lzr": results(lzr_recs, "lzr"), "jarm": results(jarm_recs, "jarm")}


@pytest.mark.parametrize("spec", FAULTS)
def test_faults_leave_results_right_or_incomplete(
    wire_lab: lab.LabInfo,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    empty_blocklist: str,
    spec: str,
) -> None:
    with lab.impaired("", "", seconds=RELAY_SECONDS):
        clean = _fault_scans(tmp_path, empty_blocklist)
    # The clean run through the wire: everything complete and right.
    for (addr, port), r in clean["lzr"].items():
        check_lzr(r, addr, port)
    assert len(clean["lzr"]) == len(FAULT_TARGETS) * len(FAULT_LZR_PORTS.split(","))
    assert {r["jarm"]["fingerprint"] for r in clean["jarm"].values()} == {REFERENCE[lab.PORTS["https"]]}
    assert len(clean["jarm"]) == len(FAULT_TARGETS)

    with lab.impaired(spec, spec, seconds=RELAY_SECONDS) as stats:
        faulty = _fault_scans(tmp_path, empty_blocklist)
    assert all(stats[d]["received"] > 0 for d in ("a2b", "b2a")), stats
    tally: Counter[str] = Counter()
    for probe, key in (("lzr", "fingerprint"), ("jarm", "fingerprint")):
        for where, r in faulty[probe].items():
            assert where in clean[probe], where  # never a result for a target the clean run lacks
            if r["incomplete"]:
                tally[f"{probe} incomplete"] += 1
                continue
            tally[f"{probe} complete"] += 1
            assert r[probe][key] == clean[probe][where][probe][key], (spec, where, r[probe])
    # LZR's results are mostly complete. A result needs every connection of its steps to go through:
    # a lost follow-up SYN (never retransmitted) or a first segment overtaken by the next (a lost or
    # delayed first segment of a multi-segment answer) cuts the row short, so JARM (ten connections,
    # each a multi-segment TLS answer) is cut short far more often than LZR (mostly one or two
    # connections, one-segment answers). Seen: loss 5 %: lzr 89-97 % complete, jarm 3-11 of 16;
    # reorder 25 %: lzr 99-100 %, jarm 4-7 of 16. What matters here is above: none of them is wrong
    # (a step whose answer was lost waits for its retransmission rather than time out: steps.py).
    assert tally["lzr complete"] >= 0.8 * len(clean["lzr"]), (spec, tally)
    print(f"\n{spec}: {dict(tally)}")
