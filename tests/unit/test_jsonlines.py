"""Records as the receiver writes them (column-wise, C or numpy) against a plain per-record reference."""

from __future__ import annotations

import base64
import ctypes
import datetime as dt
import os
import types
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zbanner_xdp import fastfmt, fields, packets
from zbanner_xdp import receiver as rx
from zbanner_xdp.events import CLASSIFICATION, EV_ANSWERED, EV_UNVALIDATED, EVENT_DTYPE, ICMP_CLASSES, Kind
from zbanner_xdp.jsonlines import Lines
from zbanner_xdp.output import RecordWriter
from zbanner_xdp.probes import ProbeKind, get_probe
from zbanner_xdp.replies import Replies, ReplyQueue


class _Probe:
    def __init__(self, name: str, kind: ProbeKind):
        self.name, self.kind, self.transport = name, kind, kind.transport
        self.handshake = kind is ProbeKind.BANNER


class _Sink:
    """A replies stage that answers nothing (no link to build frames for)."""

    def answer(self, ev: np.ndarray) -> None:
        pass


def _receiver(path: Path, probes: list | None = None, tarpit: int = 4) -> rx.Receiver:
    probes = probes or [
        _Probe("synscan", ProbeKind.SYN),
        _Probe("http", ProbeKind.BANNER),
        _Probe("icmp-echo", ProbeKind.ECHO),
        _Probe("udp-dns", ProbeKind.DATAGRAM),
        _Probe("tarpit", ProbeKind.SYN),
    ]
    plan = types.SimpleNamespace(
        P=len(probes),
        probes=probes,
        tarpit_index=tarpit,
        multi=np.zeros(len(probes), bool),
        later_step=np.zeros(len(probes), bool),
    )
    fields = [p.name for p in probes if hasattr(p, "parse")]
    writer = RecordWriter(str(path / "out.jsonl"), fields)
    writer.open()
    return rx.Receiver(None, None, _Sink(), writer, plan, b"k" * 16)  # type: ignore[arg-type]


def _ip(raw: int) -> str:
    return ".".join(str(b) for b in int(raw).to_bytes(4, "little"))


def reference(r: rx.Receiver, e: np.void, data: bytes | None = None) -> dict:
    """One record, field by field, the obvious way: what the receiver's output must equal."""
    kind, variant = int(e["kind"]), int(e["variant"])
    pi = variant % r.plan.P
    probe = r.probes[pi]
    tcp = kind in (Kind.SYNACK, Kind.ZEROWIN, Kind.RST, Kind.BANNER)
    icmp = kind == Kind.ICMP
    ports = kind != Kind.ECHOREPLY and probe.transport != "icmp"
    ms = (int(e["ts_ns"]) + r._wall_offset_ns) // 1_000_000
    when = dt.datetime.fromtimestamp(ms // 1000, dt.timezone.utc)
    rec = r.writer.template()
    rec.update(
        saddr=_ip(e["saddr"]),
        sport=int(e["sport"]) if ports else None,
        daddr=_ip(e["daddr"]),
        dport=int(e["dport"]) if ports else None,
        classification=ICMP_CLASSES.get(int(e["icmp_type"]), "icmp-other")
        if icmp
        else CLASSIFICATION.get(kind, "unknown"),
        success=kind in (Kind.SYNACK, Kind.BANNER, Kind.UDP, Kind.ECHOREPLY),
        repeat=int(e["repeat"]) != 0,
        timestamp=when.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z",
        ttl=int(e["ttl"]),
        window=int(e["window"]) if tcp else None,
        ipid=int(e["ipid"]),
        seqnum=int(e["seq"]) if tcp else None,
        acknum=int(e["ack"]) if tcp else None,
        tcp_flags=int(e["tcp_flags"]) if tcp else None,
        probe=probe.name,
        icmp_type=int(e["icmp_type"]) if icmp else None,
        icmp_code=int(e["icmp_code"]) if icmp else None,
        icmp_responder=_ip(e["icmp_responder"]) if icmp else None,
        validated=not int(e["flags"]) & EV_UNVALIDATED,
        attempt=variant // r.plan.P,
        tarpit_probe=pi == r.plan.tarpit_index,
    )
    if data is not None:
        parsed = probe.parse(rec["saddr"], rec["sport"], data)
        rec.update(
            banner=data.decode("utf-8", errors="backslashreplace"),
            data=base64.b64encode(data).decode(),
            app_match=probe.matches(parsed),
            truncated=int(e["payload_len"]) > int(e["data_len"]),
        )
        rec[probe.name] = parsed
    return rec


def _reference_lines(r: rx.Receiver, ev: np.ndarray, datas: list[bytes] | None = None) -> bytes:
    datas = datas if datas is not None else [None] * len(ev)  # type: ignore[list-item]
    return b"".join(orjson.dumps(reference(r, e, d)) + b"\n" for e, d in zip(ev, datas, strict=True))


_KINDS = [int(k) for k in Kind] + [0, 77, 255]


def _random_events(rng: np.random.Generator, n: int, dtype: np.dtype = EVENT_DTYPE) -> np.ndarray:
    ev = np.zeros(n, dtype)
    for name in dtype.names:
        t = dtype[name]
        if t.subdtype is not None or t.kind not in "ui":
            continue
        info = np.iinfo(t)
        # Edges (0, 9, 10, max) matter most to a digit encoder.
        edges = np.array([0, 1, 9, 10, 99, 100, 255, info.max], dtype=np.uint64)
        edges = edges[edges <= info.max]
        pick = rng.integers(0, 2, n).astype(bool)
        vals = rng.integers(0, info.max, n, dtype=np.uint64, endpoint=True)
        vals[pick] = rng.choice(edges, pick.sum())
        ev[name] = vals.astype(t)
    ev["kind"] = rng.choice(_KINDS, n)
    ev["ts_ns"] = rng.integers(0, 10**15, n)  # monotonic ns: about two weeks of uptime, many dates
    return ev


@pytest.fixture(params=["c", "numpy"])
def formatter(request, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both formatters: the compiled one (setup installs a C compiler) and the numpy fallback."""
    if request.param == "numpy":
        monkeypatch.setenv("ZBANNER_NO_CFMT", "1")
    else:
        assert fastfmt.load() is not None, "the C formatter did not compile"
    return request.param


@pytest.mark.parametrize("seed", range(6))
def test_event_lines_equal_the_reference(tmp_path: Path, seed: int, formatter: str) -> None:
    r = _receiver(tmp_path)
    ev = _random_events(np.random.default_rng(seed), 1500)
    got = r._lines(ev)
    assert got == _reference_lines(r, ev)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 30))
def test_event_lines_equal_the_reference_small_batches(seed: int, n: int) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        r = _receiver(Path(d))
        ev = _random_events(np.random.default_rng(seed), n)
        want = _reference_lines(r, ev)
        assert r._lines(ev) == want
        os.environ["ZBANNER_NO_CFMT"] = "1"
        try:
            assert r._lines(ev) == want
        finally:
            del os.environ["ZBANNER_NO_CFMT"]


def _banner_batch(rng: np.random.Generator, datas: list[bytes], n_probes: int) -> np.ndarray:
    big = np.zeros(len(datas), rx.BANNER_DTYPE)
    big["h"] = _random_events(rng, len(datas))
    big["h"]["kind"] = Kind.BANNER
    big["h"]["flags"] |= EV_ANSWERED  # answered in the kernel: no RST to build without a link
    big["h"]["variant"] = rng.integers(0, n_probes, len(datas))
    for i, d in enumerate(datas):
        big["data"][i, : len(d)] = np.frombuffer(d, np.uint8)
        big["h"]["data_len"][i] = len(d)
        # Half of them cut: the segment on the wire was longer than the record keeps.
        big["h"]["payload_len"][i] = len(d) + int(rng.integers(0, 2)) * 500
    return big


_NASTY = [
    b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",
    b'HTTP/1.1 200 OK\r\nServer: "q\\uote"\r\n\r\n<title>\xff\xfe</title>',
    b"220 \x00\x01\x1b[31m ftp\r\n",
    b"\xc3\x28\xa0\xa1 invalid utf-8 \xed\xa0\x80",
    b'},{\n"x":1',
    b"",
    b"+PONG\r\n",
]


@pytest.mark.parametrize("seed", range(3))
def test_banner_lines_equal_the_reference(tmp_path: Path, seed: int, formatter: str) -> None:
    probes = [get_probe(n) for n in ("ssh", "http", "ftp", "redis")]
    r = _receiver(tmp_path, probes, tarpit=-1)
    rng = np.random.default_rng(seed)
    datas = [_NASTY[i] for i in rng.integers(0, len(_NASTY), 400)]
    big = _banner_batch(rng, datas, len(probes))
    r._handle_big(big)
    r._handle_big(big)  # the second time from the parse memo
    r.writer.close()
    kept = big["h"]["repeat"] == 0
    want = _reference_lines(r, big["h"][kept], [d for d, k in zip(datas, kept, strict=True) if k])
    assert (tmp_path / "out.jsonl").read_bytes() == want * 2


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=12), st.integers(0, 2**32 - 1))
def test_any_banner_bytes_give_valid_equal_json(datas: list[bytes], seed: int) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        probes = [get_probe(n) for n in ("http", "tls", "mysql")]
        r = _receiver(Path(d), probes, tarpit=-1)
        rng = np.random.default_rng(seed)
        big = _banner_batch(rng, datas, len(probes))
        big["h"]["repeat"] = 0
        r._handle_big(big)
        r.writer.close()
        got = (Path(d) / "out.jsonl").read_bytes()
        assert got == _reference_lines(r, big["h"], datas)
        assert all(isinstance(orjson.loads(line), dict) for line in got.splitlines())


def test_nothing_is_held_or_answered_while_draining(tmp_path: Path) -> None:
    """Draining (XDP detached), user space answers nothing and holds nothing back."""
    probes = [get_probe("ssh")]
    r = _receiver(tmp_path, probes, tarpit=-1)
    link = packets.LinkParams(b"\x02" * 6, b"\x04" * 6, 0x0A000001)
    r.replies = replies = Replies(link, r.plan, 1024, ReplyQueue())
    replies.kernel_state = "unproven"  # in-kernel answers not yet seen leaving: user space holds them
    big = _banner_batch(np.random.default_rng(5), [b"SSH-2.0-x\r\n"] * 8, len(probes))
    big["h"]["repeat"] = 0
    big["h"]["flags"] = EV_ANSWERED
    r._draining = True
    r._handle_big(big)
    replies.kernel_state = "refused"
    replies.settle()
    assert replies.answered_late == 0 and replies.queue.pending == 0
    r._draining = False
    replies.kernel_state = "unproven"
    r._handle_big(big)
    replies.kernel_state = "refused"
    replies.settle()
    assert replies.answered_late == 8 and replies.queue.pending == 8  # one RST each, as the program sent


def test_every_field_of_the_output_table_is_filled_in_some_record(tmp_path: Path) -> None:
    """A field the table (fields.py) names but the receiver never fills would be null everywhere."""
    probes = [get_probe(n) for n in ("synscan", "ssh")]
    r = _receiver(tmp_path, probes, tarpit=0)
    rng = np.random.default_rng(7)
    ev = _random_events(rng, 3000)
    ev["variant"] %= len(probes)
    r._handle_big(_banner_batch(rng, [b"SSH-2.0-x\r\n"] * 50, len(probes)))
    r.writer.close()
    lines = r._lines(ev) + (tmp_path / "out.jsonl").read_bytes()
    filled = {k for line in lines.splitlines() for k, v in orjson.loads(line).items() if v is not None}
    # (`incomplete` is the step table's, for multi-connection probes: tests/unit/test_steps.py.)
    assert set(fields.NAMES) - {"incomplete"} <= filled


def test_tally_counts_classes_and_hits(tmp_path: Path) -> None:
    r = _receiver(tmp_path)
    ev = _random_events(np.random.default_rng(99), 5000)
    r._lines(ev)
    refs = [reference(r, e) for e in ev]
    fresh = [x for x in refs if not x["repeat"]]
    assert r.by_class == Counter(x["classification"] for x in fresh)
    syn_only = {"synscan", "tarpit"}
    hits = [
        x
        for x in fresh
        if not x["tarpit_probe"]
        and (
            x["classification"] in ("banner", "udp", "echoreply")
            or (x["classification"] == "synack" and x["probe"] in syn_only)
        )
    ]
    assert r.hits == len(hits) > 0


def test_a_drift_of_the_formatters_ops_or_columns_fails_its_compile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """zbfmt.c asserts the ops and struct zb_col fastfmt.py mirrors: a drift never loads."""
    src = fastfmt.SOURCE.read_bytes()
    assert fastfmt._compile(src, tmp_path / "ok.so")
    monkeypatch.setattr(fastfmt, "WORD", 7)
    assert not fastfmt._compile(src, tmp_path / "ops.so")
    monkeypatch.undo()
    swapped = [*fastfmt.Col._fields_[:2], ("offs", ctypes.c_void_p), ("bytes", ctypes.c_void_p)]
    monkeypatch.setattr(fastfmt, "Col", type("Col", (ctypes.Structure,), {"_fields_": swapped}))
    assert not fastfmt._compile(src, tmp_path / "layout.so")


def test_numbers_and_nulls(formatter: str) -> None:
    out = Lines(4)
    out.key("n", first=True)
    out.ints(np.array([0, 7, 10, 4294967295], np.uint32), np.array([True, True, False, True]))
    out.key("ip")
    out.dotted(np.array([0x0100000A, 0xFFFFFFFF, 0, 0x0201A8C0], "<u4"))
    got = [orjson.loads(x) for x in out.build().splitlines()]
    assert got == [
        {"n": 0, "ip": "10.0.0.1"},
        {"n": 7, "ip": "255.255.255.255"},
        {"n": None, "ip": "0.0.0.0"},
        {"n": 4294967295, "ip": "192.168.1.2"},
    ]


def test_empty_batch(formatter: str) -> None:
    assert Lines(0).build() == b""
