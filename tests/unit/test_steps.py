"""The step table (zbanner_xdp/steps.py): a target's steps gathered into one record, without a network.

Events are built as the XDP program writes them; the plan, the replies queue and the probes are the real
ones; the writer only collects lines. The canned JARM answers are nginx's (tests/unit/test_jarm.py).
"""

from __future__ import annotations

import socket
import time
import types

import dpkt
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_jarm import ANSWERS, REFERENCE
from zbanner_xdp import packets
from zbanner_xdp.events import EVENT_DTYPE, REPEAT_DUP, REPEAT_RETRANSMIT, Kind
from zbanner_xdp.plan import ProbePlan, split_variant
from zbanner_xdp.probes import get_probe, lzr
from zbanner_xdp.replies import ReplyQueue
from zbanner_xdp.steps import StepTable

US = 0x0A4D0001
LINK = packets.LinkParams(b"\x02" * 6, b"\x04" * 6, US)
KEY = bytes(range(16))
FIELDS = ["saddr", "sport", "dport", "classification", "probe", "banner", "incomplete", "jarm", "lzr"]


class Writer:
    def __init__(self) -> None:
        self.records: list[dict] = []

    def template(self) -> dict:
        return dict.fromkeys(FIELDS)

    def write_lines(self, blob: bytes, count: int) -> None:
        lines = [orjson.loads(x) for x in blob.splitlines()]
        assert len(lines) == count
        self.records += lines


def _table(names: tuple[str, ...], limit: int = 1000, tarpit: bool = False, **args: str):
    probes = [get_probe(n, args if n == names[0] else {}) for n in names]
    plan = ProbePlan(probes, np.array([443]), 32768, 61000, tarpit_check=tarpit)
    resent: list[np.ndarray] = []  # the SYN-ACK events whose request the table sent again
    writer, replies = Writer(), types.SimpleNamespace(queue=ReplyQueue(), resend=resent.append, resent=resent)
    tally: list[tuple[str, bool]] = []
    table = StepTable(plan, LINK, KEY, replies, writer, limit, lambda c, h: tally.append((c, h)))
    return table, plan, writer, replies.queue, tally


def _raw(ip: str) -> int:
    return int.from_bytes(socket.inet_aton(ip), "little")


ISN = 1000  # the servers' SYN-ACK sequence number in these tests


def _ev(
    kind: Kind,
    entry: int,
    ip: str = "198.18.0.5",
    port: int = 443,
    ts: int = 0,
    repeat: int = 0,
    seq: int = -1,
):
    e = np.zeros(1, EVENT_DTYPE)
    e["kind"], e["variant"], e["saddr"], e["sport"], e["dport"] = kind, entry, _raw(ip), port, 40000 + entry
    e["ts_ns"], e["repeat"], e["ttl"] = ts, repeat, 61
    # A SYN-ACK carries the ISN; an answer without data right after it (a FIN) carries ISN + 1.
    e["seq"] = seq if seq >= 0 else (ISN if kind in (Kind.SYNACK, Kind.ZEROWIN) else ISN + 1)
    return e


def _sent_syns(queue: ReplyQueue, plan: ProbePlan) -> list[tuple[str, int, int]]:
    """(target, port, plan entry) of the SYNs waiting in the replies queue."""
    out = []
    for frames, lens in queue.take(1 << 20):
        for f, n in zip(frames, lens, strict=True):
            ip = dpkt.ethernet.Ethernet(f[:n].tobytes()).data
            assert ip.data.flags == dpkt.tcp.TH_SYN
            entry, attempt = split_variant((ip.data.sport - plan.lo) % plan.V, plan.P)
            assert attempt == 0
            out.append((socket.inet_ntoa(ip.dst), ip.data.dport, int(entry)))
    return out


def _step(table: StepTable, entry: int, answer: bytes | None, ts: int, kind: Kind = Kind.BANNER) -> None:
    table.events(_ev(Kind.SYNACK, entry, ts=ts))
    if answer is None:
        table.events(_ev(kind, entry, ts=ts + 1))
    else:
        table.events(_ev(Kind.BANNER, entry, ts=ts + 1), [answer])
    table.release()


def test_jarm_ten_connections_one_record_equal_to_the_reference() -> None:
    table, plan, writer, queue, tally = _table(("jarm",))
    for k, hexed in enumerate(ANSWERS["nginx_443"]):
        _step(table, k, bytes.fromhex(hexed), ts=10 * k)
        if k < 9:
            # The next hello's SYN, to the same target and port, from the next step's source port.
            assert _sent_syns(queue, plan) == [("198.18.0.5", 443, k + 1)]
            assert table.pending == 1 and writer.records == []
    (rec,) = writer.records
    assert rec["jarm"]["fingerprint"] == REFERENCE["nginx_443"]
    assert rec["classification"] == "banner" and rec["incomplete"] is False and rec["probe"] == "jarm"
    assert (rec["saddr"], rec["sport"], rec["dport"]) == ("198.18.0.5", 443, 40000)
    assert rec["banner"] is not None  # the first answer, shown
    assert table.pending == 0 and table.summary()["followup_syns"] == 9 and tally == [("banner", True)]


def test_a_port_that_does_not_speak_tls_costs_one_connection() -> None:
    table, plan, writer, queue, _ = _table(("jarm",))
    _step(table, 0, b"HTTP/1.1 400 Bad Request\r\n\r\n", ts=1)
    (rec,) = writer.records
    assert rec["jarm"]["fingerprint"] == "0" * 62 and rec["incomplete"] is False
    assert _sent_syns(queue, plan) == []


def test_a_fin_read_before_its_banner_does_not_hide_it() -> None:
    # The banner ring is read after the event ring: a FIN that followed the data arrives first.
    table, plan, writer, queue, _ = _table(("lzr",))
    table.events(_ev(Kind.SYNACK, 0, ts=1))
    table.events(_ev(Kind.FIN, 0, ts=3))  # deferred until release()
    table.events(_ev(Kind.BANNER, 0, ts=2), [b"SSH-2.0-OpenSSH_9.2p1\r\n"])
    table.release()
    (rec,) = writer.records
    assert rec["lzr"]["fingerprint"] == "ssh" and rec["lzr"]["handshakes"] == 1
    assert _sent_syns(queue, plan) == []


def test_a_fin_after_lost_data_is_no_answer() -> None:
    # The FIN's sequence number is past the server's ISN + 1: data came first and was lost. The server
    # sends it again (we have not acknowledged it); the FIN must not end the step as "closed".
    table, plan, writer, queue, _ = _table(("lzr",))
    table.events(_ev(Kind.SYNACK, 0, ts=1))
    table.events(_ev(Kind.FIN, 0, ts=3, seq=ISN + 1 + 120))
    table.release()
    assert writer.records == [] and _sent_syns(queue, plan) == []
    table.events(_ev(Kind.BANNER, 0, ts=9), [b"HTTP/1.1 200 OK\r\nServer: nginx\r\n\r\n"])
    table.release()
    (rec,) = writer.records
    assert rec["lzr"]["fingerprint"] == "http" and rec["lzr"]["handshakes"] == 1


def test_no_answer_means_the_next_handshake_and_the_identifying_data_is_shown() -> None:
    table, plan, writer, queue, _ = _table(("lzr",))
    _step(table, 0, None, ts=1, kind=Kind.FIN)  # http: closed without data
    assert _sent_syns(queue, plan) == [("198.18.0.5", 443, 1)]
    _step(table, 1, None, ts=5, kind=Kind.RST)  # tls: reset
    table.events(_ev(Kind.SYNACK, 2, ts=9))  # rdp: acknowledged, then silent...
    table.events(_ev(Kind.ACKED, 2, ts=10))
    table.sweep(now=time.monotonic() + 6)  # ...until its time (5 s) is up; the next one's is not
    assert [s[2] for s in _sent_syns(queue, plan)] == [2, 3]
    _step(table, 3, b"220 mail ESMTP Exim 4.96\r\n", ts=20)
    (rec,) = writer.records
    assert rec["lzr"]["fingerprint"] == "smtp" and rec["lzr"]["handshakes"] == 4
    assert rec["lzr"]["handshake"] == lzr.HANDSHAKES[3].name and rec["banner"].startswith("220 mail")


def test_a_step_whose_syn_is_never_answered_is_cut_short() -> None:
    # Step 1's SYN drew nothing at all: lost, or refused silently. Guessing "no service there" could
    # be wrong, so the row is written as it stands, incomplete (steps.py counts it).
    table, plan, writer, queue, _ = _table(("lzr",), handshakes="2")
    _step(table, 0, None, ts=1, kind=Kind.FIN)
    table.sweep(now=time.monotonic() + 6)
    (rec,) = writer.records
    assert rec["incomplete"] is True and rec["lzr"]["handshakes"] == 1 and rec["banner"] is None
    assert table.summary()["unanswered_followups"] == 1


def test_stragglers_and_repeats_change_nothing() -> None:
    table, plan, writer, queue, _ = _table(("lzr",))
    _step(table, 0, None, ts=1, kind=Kind.FIN)
    # Step 0's late RST, a repeated SYN-ACK of step 1, data for step 5 (never started): ignored.
    table.events(_ev(Kind.RST, 0, ts=4))
    table.events(_ev(Kind.SYNACK, 1, ts=5, repeat=REPEAT_DUP))
    table.events(_ev(Kind.BANNER, 5, ts=6), [b"SSH-2.0-x\r\n"])
    table.release()
    assert writer.records == [] and table.pending == 1
    # A RST for the first step of a target with no row: the port is closed (a record of the receiver's).
    table.events(_ev(Kind.RST, 0, ip="198.18.0.9", ts=7))
    table.release()
    assert table.pending == 1


def test_a_full_table_writes_what_it_evicts_incomplete_and_loses_nothing() -> None:
    table, plan, writer, queue, _ = _table(("lzr",), limit=2)
    ips = [f"198.18.0.{i}" for i in range(5)]
    for ip in ips:
        table.events(_ev(Kind.SYNACK, 0, ip=ip, ts=1))
    assert table.pending == 2 and table.summary()["evicted"] == 3
    assert [r["saddr"] for r in writer.records] == ips[:3] and all(r["incomplete"] for r in writer.records)
    table.flush()  # the end of the scan
    assert sorted(r["saddr"] for r in writer.records) == sorted(ips)  # each once, none merged
    s = table.summary()
    assert (s["complete"], s["incomplete"], s["table_peak"]) == (0, 5, 2)


def test_closing_finishes_rows_instead_of_starting_steps() -> None:
    table, plan, writer, queue, _ = _table(("jarm",))
    table.closing = True  # XDP detached: a SYN now could not be answered
    _step(table, 0, bytes.fromhex(ANSWERS["nginx_443"][0]), ts=1)
    (rec,) = writer.records
    assert rec["incomplete"] is True and rec["jarm"]["fingerprint"] is None
    assert _sent_syns(queue, plan) == []


def test_a_tarpit_is_not_identified_further() -> None:
    table, plan, writer, queue, _ = _table(("lzr",), tarpit=True)
    table.tarpit(np.array([_raw("198.18.4.5")], np.uint32))
    table.events(_ev(Kind.SYNACK, 0, ip="198.18.4.5", ts=1))
    table.events(_ev(Kind.FIN, 0, ip="198.18.4.5", ts=2))
    table.release()
    (rec,) = writer.records
    assert rec["lzr"]["tarpit"] is True and rec["lzr"]["handshakes"] == 1 and rec["incomplete"] is False
    assert _sent_syns(queue, plan) == []


def test_multi_step_entries_in_the_plan() -> None:
    plan = ProbePlan(
        [get_probe("synscan"), get_probe("jarm"), get_probe("http")], np.array([443]), 32768, 61000
    )
    assert plan.P == 12 and plan.step_of == [0, *range(10), 0]
    assert plan.group_of == [0, *[1] * 10, 11] and plan.multi.tolist() == [False, *[True] * 10, False]
    assert plan.per_pair() == 3  # later steps are not planned: answers start them
    seg = plan.segments(LINK, KEY, np.array([0xC6120005], np.uint32), np.array([443], np.uint16))
    assert len(seg) == 3
    # Each step has its own payload length rule for the XDP program: the hello's base + the address.
    infos = plan.probe_infos()
    assert [i["plus_ip_strlen"] for i in infos[1:11]] == [1] * 10
    lengths = [len(plan.probes[1 + k].payload("1.2.3.4", 443)) for k in range(10)]
    assert [i["base"] + 7 for i in infos[1:11]] == lengths


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    script=st.lists(
        st.tuples(
            st.sampled_from([Kind.SYNACK, Kind.BANNER, Kind.RST, Kind.FIN, Kind.ZEROWIN, "sweep", "release"]),
            st.integers(0, 17),
            st.integers(0, 3),
            st.binary(max_size=64),
        ),
        max_size=60,
    ),
    name=st.sampled_from(["jarm", "lzr"]),
    limit=st.integers(1, 4),
)
def test_any_event_sequence_writes_each_opened_row_exactly_once(script, name: str, limit: int) -> None:
    table, plan, writer, queue, _ = _table((name,), limit=limit)
    opened: list[str] = []
    real_open = table._open

    def counting_open(k, *a):
        opened.append(socket.inet_ntoa(k[0].to_bytes(4, "little")))
        return real_open(k, *a)

    table._open = counting_open  # type: ignore[method-assign]
    for what, entry, host, data in script:
        entry %= plan.P
        if what == "sweep":
            table.sweep(now=time.monotonic() + 1000)
        elif what == "release":
            table.release()
        else:
            ev = _ev(what, entry, ip=f"198.18.0.{host}", ts=len(opened))
            table.events(ev, [data] if what == Kind.BANNER else None)
    table.flush()
    assert table.pending == 0
    # Every row opened is written once (a target may be opened again after its row finished).
    assert sorted(r["saddr"] for r in writer.records) == sorted(opened)
    fields = set(plan.probes[0].fields)
    assert all(isinstance(r[name], dict) and set(r[name]) == fields for r in writer.records)


def test_records_are_valid_json_whatever_the_answer_bytes() -> None:
    table, plan, writer, queue, _ = _table(("lzr",), handshakes="1")
    _step(table, 0, bytes(range(256)) + b"\xff\xfe\x00", ts=1)
    (rec,) = writer.records
    assert isinstance(rec["banner"], str)


@pytest.mark.parametrize("name", ["jarm", "lzr"])
def test_result_never_raises_and_keeps_the_fields(name: str) -> None:
    probe = get_probe(name)
    for parts in ([], [None], ["garbage", 3, {"x": 1}], [{"matches": "x"}]):
        for complete in (True, False):
            out = probe.result("198.18.0.5", 443, parts, complete)
            assert list(out) == list(probe.fields)


# --------------------------------------------------------------------------- time, and loss
# A step's TIMEOUT must be the server's silence, never the network's loss: a complete result built on a
# lost answer would be wrong (seen in the lab under 5 % loss: a JARM of zeros, an LZR "unknown").


def test_a_follow_up_steps_time_runs_from_its_synack() -> None:
    # Step 1's SYN-ACK came a second late (the first was lost; the server retransmits it after 1 s):
    # its answer may take the step's whole time (5 s) from then, not from the SYN.
    table, plan, writer, queue, _ = _table(("lzr",))
    t0 = time.monotonic()
    table.events(_ev(Kind.SYNACK, 0, ts=1), now=t0)
    table.events(_ev(Kind.FIN, 0, ts=2), now=t0)
    table.release(now=t0)  # http: closed without data; step 1's SYN leaves at t0
    assert _sent_syns(queue, plan) == [("198.18.0.5", 443, 1)]
    table.events(_ev(Kind.SYNACK, 1, ts=3), now=t0 + 1)
    table.sweep(now=t0 + 5.5)  # past the SYN's 5 s, within the SYN-ACK's
    assert writer.records == [] and _sent_syns(queue, plan) == []
    table.events(_ev(Kind.BANNER, 1, ts=4), [b"SSH-2.0-OpenSSH_9.2p1\r\n"], now=t0 + 5.7)
    table.release(now=t0 + 5.7)
    (rec,) = writer.records
    assert rec["incomplete"] is False and rec["lzr"]["fingerprint"] == "ssh" and rec["lzr"]["handshakes"] == 2


def test_a_retransmitted_synack_means_our_request_was_lost_and_the_step_waits() -> None:
    # The server retransmits its SYN-ACK: it never got our ACK with the request (the program answers
    # again). Its answer comes after that, and if lost once more, 3 s later still (its RTO after a
    # retransmitted SYN-ACK): the step waits LOSS_WAIT from the retransmission.
    table, plan, writer, queue, _ = _table(("lzr",))
    t0 = time.monotonic()
    table.events(_ev(Kind.SYNACK, 0, ts=1), now=t0)
    table.events(_ev(Kind.SYNACK, 0, ts=2, repeat=REPEAT_RETRANSMIT), now=t0 + 3)
    table.sweep(now=t0 + 3 + StepTable.LOSS_WAIT - 0.1)
    assert writer.records == [] and _sent_syns(queue, plan) == []  # not TIMEOUT: no next handshake
    table.events(_ev(Kind.BANNER, 0, ts=3), [b"SSH-2.0-OpenSSH_9.2p1\r\n"], now=t0 + 12)
    table.release(now=t0 + 12)
    (rec,) = writer.records
    assert rec["incomplete"] is False and rec["lzr"]["handshakes"] == 1 and rec["lzr"]["fingerprint"] == "ssh"
    assert table.summary()["loss_waits"] == 1


def test_a_fin_after_lost_data_makes_the_step_wait_for_the_retransmission() -> None:
    # JARM: the server's answer (data, then FIN) lost its data; the FIN shows it (seq past ISN + 1). The
    # retransmission comes after the server's RTO: the step waits for it instead of ending the target
    # with the reference's all-zero "timeout" JARM.
    table, plan, writer, queue, _ = _table(("jarm",))
    t0 = time.monotonic()
    table.events(_ev(Kind.SYNACK, 0, ts=1), now=t0)
    table.events(_ev(Kind.FIN, 0, ts=2, seq=ISN + 1 + 1400), now=t0)
    table.release(now=t0)
    table.sweep(now=t0 + 9)  # past the 5 s timeout
    assert writer.records == [] and table.pending == 1
    table.events(_ev(Kind.BANNER, 0, ts=3), [bytes.fromhex(ANSWERS["nginx_443"][0])], now=t0 + 9.5)
    table.release(now=t0 + 9.5)
    assert _sent_syns(queue, plan) == [("198.18.0.5", 443, 1)]  # TLS: on to hello 2


def test_silence_after_the_wait_is_still_a_timeout() -> None:
    # Loss makes a step wait longer, not forever: a server silent all along is still "no answer".
    table, plan, writer, queue, _ = _table(("lzr",), handshakes="1")
    t0 = time.monotonic()
    table.events(_ev(Kind.SYNACK, 0, ts=1), now=t0)
    table.events(_ev(Kind.SYNACK, 0, ts=2, repeat=REPEAT_RETRANSMIT), now=t0 + 1)
    table.events(_ev(Kind.ACKED, 0, ts=3), now=t0 + 1)  # our request, answered again, acknowledged
    table.sweep(now=t0 + 1 + StepTable.LOSS_WAIT + 0.1)
    (rec,) = writer.records
    assert rec["incomplete"] is False and rec["lzr"]["fingerprint"] == "unknown"
    assert table.wait_until(0.0) == 0.0  # nothing pending holds the cooldown


# A step's silence is the server's answer only once the server has acknowledged our request. Under
# loss, our request and every SYN-ACK the server retransmitted for it can be lost: the step then saw
# a SYN-ACK and nothing more, exactly as from a silent server, but the server never had the request.
# Taking that silence as the answer wrote a complete JARM of zeros for the lab's nginx (CI under 5 %
# loss, 2026-12-05).


def test_a_request_never_acknowledged_is_sent_again_then_incomplete_not_a_timeout() -> None:
    table, plan, writer, queue, _ = _table(("jarm",))
    t0 = time.monotonic()
    table.events(_ev(Kind.SYNACK, 0, ts=1), now=t0)  # then nothing: no ACK of the hello, no answer
    table.sweep(now=t0 + 5.1)  # the step's time: the hello once more, as TCP would send it again
    (again,) = table.replies.resent
    assert (int(again["kind"][0]), int(again["seq"][0])) == (Kind.SYNACK, ISN) and writer.records == []
    table.sweep(now=t0 + 10.0)  # not yet: the step's time again, from the resend
    assert writer.records == []
    table.sweep(now=t0 + 10.2)
    (rec,) = writer.records
    assert rec["incomplete"] is True and rec["jarm"]["fingerprint"] is None, rec
    s = table.summary()
    assert (s["unacknowledged_requests"], s["requests_resent"]) == (1, 1) and _sent_syns(queue, plan) == []
    assert len(table.replies.resent) == 1  # once only


def test_a_request_sent_again_and_then_acknowledged_is_the_references_timeout() -> None:
    # The server had the hello: its ACK was what got lost. Sent again, the hello draws a duplicate ACK
    # at once; the server's silence is then its answer.
    table, plan, writer, queue, _ = _table(("jarm",))
    t0 = time.monotonic()
    table.events(_ev(Kind.SYNACK, 0, ts=1), now=t0)
    table.sweep(now=t0 + 5.1)
    table.events(_ev(Kind.ACKED, 0, ts=2), now=t0 + 5.2)
    table.sweep(now=t0 + 10.2)
    (rec,) = writer.records
    assert rec["incomplete"] is False and rec["jarm"]["fingerprint"] == "0" * 62, rec


def test_a_request_sent_again_and_then_answered_goes_on() -> None:
    table, plan, writer, queue, _ = _table(("jarm",))
    t0 = time.monotonic()
    table.events(_ev(Kind.SYNACK, 0, ts=1), now=t0)
    table.sweep(now=t0 + 5.1)
    table.events(_ev(Kind.BANNER, 0, ts=2), [bytes.fromhex(ANSWERS["nginx_443"][0])], now=t0 + 5.2)
    table.release(now=t0 + 5.2)
    assert _sent_syns(queue, plan) == [("198.18.0.5", 443, 1)] and writer.records == []


def test_a_later_steps_request_never_acknowledged_is_incomplete() -> None:
    table, plan, writer, queue, _ = _table(("jarm",))
    t0 = time.monotonic()
    _step(table, 0, bytes.fromhex(ANSWERS["nginx_443"][0]), ts=1)
    assert _sent_syns(queue, plan) == [("198.18.0.5", 443, 1)]
    table.events(_ev(Kind.SYNACK, 1, ts=5), now=t0)
    table.sweep(now=t0 + 5.1)
    table.sweep(now=t0 + 60)
    (rec,) = writer.records
    assert rec["incomplete"] is True and len(rec["jarm"]["parts"]) == 1, rec
    assert [int(e["variant"][0]) for e in table.replies.resent] == [1]  # step 1's hello, sent again


def test_a_port_silent_to_every_lzr_handshake_is_complete_unknown() -> None:
    # Every handshake acknowledged and unanswered; the last ("wait") sends nothing, so there is nothing
    # to acknowledge: its silence is the answer (the review of the first version found it cut short).
    table, plan, writer, queue, _ = _table(("lzr",))
    t = time.monotonic()
    for step in range(len(lzr.HANDSHAKES)):
        table.events(_ev(Kind.SYNACK, step, ts=step), now=t)
        if plan.probes[step].payload("198.18.0.5", 443):
            table.events(_ev(Kind.ACKED, step, ts=step), now=t)
        t += 5.1
        table.sweep(now=t)
    (rec,) = writer.records
    assert rec["incomplete"] is False and rec["lzr"]["fingerprint"] == "unknown", rec
    assert rec["lzr"]["handshakes"] == len(lzr.HANDSHAKES) and table.replies.resent == []


def test_an_acknowledged_request_without_answer_is_the_references_timeout() -> None:
    # The reference's rule is kept where it applies: the server had the hello and said nothing.
    table, plan, writer, queue, _ = _table(("jarm",))
    t0 = time.monotonic()
    table.events(_ev(Kind.SYNACK, 0, ts=1), now=t0)
    table.events(_ev(Kind.ACKED, 0, ts=2), now=t0)
    table.sweep(now=t0 + 6)
    (rec,) = writer.records
    assert rec["incomplete"] is False and rec["jarm"]["fingerprint"] == "0" * 62, rec


def test_an_ack_of_another_step_or_a_repeat_proves_nothing() -> None:
    table, plan, writer, queue, _ = _table(("jarm",))
    t0 = time.monotonic()
    _step(table, 0, bytes.fromhex(ANSWERS["nginx_443"][0]), ts=1)
    table.events(_ev(Kind.SYNACK, 1, ts=5), now=t0)
    table.events(_ev(Kind.ACKED, 0, ts=6), now=t0)  # step 0's connection, late
    table.events(_ev(Kind.ACKED, 1, ts=7, repeat=REPEAT_DUP), now=t0)  # a repeat: its first went unseen
    table.sweep(now=t0 + 5.1)
    table.sweep(now=t0 + 60)
    (rec,) = writer.records
    assert rec["incomplete"] is True, rec


# With in-kernel replies (the default) a server's answer follows its SYN-ACK by a fraction of a
# millisecond, and the two travel in two rings: the receiver can read the banner first. It was dropped
# (no row yet); the FIN after it then looked like the end of lost data, the step waited and timed out:
# LZR went on to its next handshake and wrote a complete, wrong result (lab, clean wire, 2026-12-05).


def test_a_banner_read_before_its_synack_is_the_steps_answer() -> None:
    table, plan, writer, queue, _ = _table(("lzr",))
    t0 = time.monotonic()
    answer = b"HTTP/1.1 200 OK\r\nServer: nginx\r\n\r\n"
    table.events(_ev(Kind.BANNER, 0, ts=3), [answer], now=t0)  # read first
    table.events(_ev(Kind.SYNACK, 0, ts=1), now=t0)
    table.events(_ev(Kind.FIN, 0, ts=4, seq=ISN + 1 + len(answer)), now=t0)
    table.release(now=t0)
    (rec,) = writer.records
    assert rec["incomplete"] is False and (rec["lzr"]["fingerprint"], rec["lzr"]["handshakes"]) == ("http", 1)
    assert table.summary()["answers_before_synack"] == 1 and _sent_syns(queue, plan) == []


def test_a_banner_no_synack_claims_is_forgotten_and_counted() -> None:
    table, plan, writer, queue, _ = _table(("lzr",))
    t0 = time.monotonic()
    table.events(_ev(Kind.BANNER, 0, ts=3), [b"late"], now=t0)
    table.sweep(now=t0 + StepTable.ORPHAN_WAIT + 0.1)
    table.events(_ev(Kind.SYNACK, 0, ts=9), now=t0 + 6)  # too late: a row of its own, unanswered
    assert writer.records == [] and table.summary()["answers_without_synack"] == 1
    table.flush()
    (rec,) = writer.records
    assert rec["incomplete"] is True and rec["banner"] is None


def test_orphans_past_the_bound_are_all_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    # The oldest target's waiting banners go when the bound is reached: every one of them counted
    # (it counted one however many were waiting).
    monkeypatch.setattr(StepTable, "ORPHANS_MAX", 2)
    table, _, writer, _, _ = _table(("lzr",))
    t0 = time.monotonic()
    table.events(_ev(Kind.BANNER, 0, ts=3), [b"first"], now=t0)
    table.events(_ev(Kind.BANNER, 0, ts=4), [b"again"], now=t0)  # the same connection's, still no SYN-ACK
    table.events(_ev(Kind.BANNER, 0, ip="198.18.0.6", ts=5), [b"other"], now=t0)
    table.events(_ev(Kind.BANNER, 0, ip="198.18.0.7", ts=6), [b"third"], now=t0)  # the first target's go
    assert writer.records == [] and table.summary()["answers_without_synack"] == 2
