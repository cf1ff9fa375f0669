"""The XDP program run by the kernel on hand-made frames (BPF_PROG_TEST_RUN).

This is where the C cookie meets the Python cookie: a SYN-ACK built with the
Python cookie must be consumed, one cookie off must pass untouched.
"""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zbanner_xdp import bpfsys, kpayload, packets
from zbanner_xdp.cookie import cookie_scalar
from zbanner_xdp.events import EVENT_DTYPE, EVENT_SIZE, Counter
from zbanner_xdp.receiver import RingReader

pytestmark = pytest.mark.privileged

XDP_DROP, XDP_PASS = 1, 2
KEY = bytes(range(16))
US = 0x0A4D0001  # 10.77.0.1
THEM = 0xC6120005  # 198.18.0.5
SPORT = 40000  # ours
LO, HI = 32768, 61000
THEM_LINK = packets.LinkParams(b"\x02" * 6, b"\x04" * 6, THEM, 61)
PAYLOAD = b"GET / HTTP/1.0\r\n\r\n"
PROBE_INFO = {"base": len(PAYLOAD), "proto": socket.IPPROTO_TCP}  # one TCP probe, sending PAYLOAD


class Prog:
    def __init__(
        self, banners: bool, segments: bool = False, short_pages: int = 0, dedup_window_s: float = 0.0
    ) -> None:
        from zbanner_xdp.bpfprog import ProgParams, RecvProgram

        params = ProgParams(
            src_ip=US,
            port_lo=LO,
            port_hi=HI,
            banners=banners,
            segments=segments,
            dedup_entries=1024,
            ringbuf_pages=64,
            banner_pages=64,
            short_pages=short_pages,
            dedup_window_s=dedup_window_s,
        )
        self.p = RecvProgram(params, KEY, probe_infos=[PROBE_INFO] if banners else None)
        self.ring = RingReader(self.p, 64, 64, short_pages)

    def run(self, frame: bytes) -> int:
        ret, _ = bpfsys.prog_test_run(self.p.prog_fd, frame)
        return ret

    def drain(self) -> list[bytes]:
        """Raw records, as the mmap reader hands them over."""
        small, big, short = self.ring.poll(0)
        return [r.tobytes() for r in small] + [r.tobytes() for r in big] + [r.tobytes() for r in short]


@pytest.fixture(scope="module")
def synprog():
    p = Prog(banners=False)
    yield p
    p.ring.close()
    p.p.close()


@pytest.fixture(scope="module")
def banprog():
    p = Prog(banners=True)
    yield p
    p.ring.close()
    p.p.close()


def frame(
    flags: int,
    ack: int,
    seq: int = 1000,
    window: int = 64240,
    sport: int = SPORT,
    src: int = THEM,
    dport: int = 80,
    payload: bytes = b"",
    dst: int = US,
) -> bytes:
    link = packets.LinkParams(b"\x02" * 6, b"\x04" * 6, src, 61)
    pay, plen = packets.payload_matrix([payload]) if payload else (None, None)
    f, n = packets.tcp_frames(
        link,
        np.array([dst], np.uint32),
        np.array([sport]),
        np.array([dport]),
        np.array([seq], np.uint32),
        ack & 0xFFFFFFFF,
        flags,
        window,
        payload=pay,
        payload_len=plen,
    )
    return f[0, : n[0]].tobytes()


def cookie(sport: int = SPORT, them: int = THEM, dport: int = 80) -> int:
    return cookie_scalar(KEY, US, them, sport, dport)


def test_valid_synack_is_consumed_and_recorded(synprog: Prog) -> None:
    c = cookie(sport=40010)
    assert synprog.run(frame(0x12, c + 1, seq=777, sport=40010)) == XDP_DROP
    (ev,) = synprog.drain()
    assert len(ev) == EVENT_SIZE
    e = np.frombuffer(ev, EVENT_DTYPE)[0]
    assert e["kind"] == 1 and e["seq"] == 777 and e["ack"] == (c + 1) & 0xFFFFFFFF
    assert (e["sport"], e["dport"], e["ttl"], e["window"], e["repeat"]) == (80, 40010, 61, 64240, 0)


def test_wrong_cookie_passes_untouched(synprog: Prog) -> None:
    c = cookie(sport=40011)
    before = synprog.p.counters()[Counter.BAD_COOKIE]
    for ack in (c, c + 2, c ^ 0x80000000):
        assert synprog.run(frame(0x12, ack, sport=40011)) == XDP_PASS
    assert synprog.drain() == []
    assert synprog.p.counters()[Counter.BAD_COOKIE] == before + 3


def test_not_ours_passes(synprog: Prog) -> None:
    c = cookie(sport=40012)
    assert synprog.run(frame(0x12, c + 1, sport=40012, dst=US + 1)) == XDP_PASS  # other address
    assert synprog.run(frame(0x12, c + 1, sport=LO - 1)) == XDP_PASS  # below our port range
    assert synprog.run(frame(0x12, c + 1, sport=HI + 1)) == XDP_PASS
    assert synprog.drain() == []


def test_rst_acking_cookie_or_cookie_plus_one(synprog: Prog) -> None:
    for sp, delta in ((40020, 0), (40021, 1)):
        assert synprog.run(frame(0x14, cookie(sport=sp) + delta, sport=sp)) == XDP_DROP
    evs = [np.frombuffer(e, EVENT_DTYPE)[0] for e in synprog.drain()]
    assert [int(e["kind"]) for e in evs] == [2, 2]
    assert synprog.run(frame(0x14, cookie(sport=40022) + 2, sport=40022)) == XDP_PASS


def test_zero_window(synprog: Prog) -> None:
    assert synprog.run(frame(0x12, cookie(sport=40030) + 1, sport=40030, window=0)) == XDP_DROP
    (ev,) = synprog.drain()
    assert np.frombuffer(ev, EVENT_DTYPE)[0]["kind"] == 3


def test_duplicate_counts_as_repeat(synprog: Prog) -> None:
    f = frame(0x12, cookie(sport=40040) + 1, sport=40040)
    before = synprog.p.counters()[Counter.REPEAT]
    assert [synprog.run(f) for _ in range(3)] == [XDP_DROP] * 3
    assert len(synprog.drain()) == 1
    assert synprog.p.counters()[Counter.REPEAT] == before + 2


def test_a_repeat_inside_a_renewed_window_is_a_repeat() -> None:
    """--dedup-window: a reply seen again after the window is new (recorded again), and its repeats
    inside the new window are repeats. The filter used to give the key a second slot and keep finding
    the first, expired one: every later repeat was recorded, each adding yet another slot."""
    p = Prog(banners=False, dedup_window_s=0.01)
    try:
        f = frame(0x12, cookie(sport=40060) + 1, sport=40060)
        assert p.run(f) == XDP_DROP and len(p.drain()) == 1
        time.sleep(0.05)  # the window (10 ms) has passed
        assert [p.run(f) for _ in range(3)] == [XDP_DROP] * 3
        assert len(p.drain()) == 1  # the first after the window; then two repeats
        assert p.p.counters()[Counter.REPEAT] == 2
    finally:
        p.ring.close()
        p.p.close()


def test_banner_segment(banprog: Prog) -> None:
    c = cookie(sport=40050)
    body = b"HTTP/1.1 200 OK\r\nServer: nginx\r\n\r\n" + bytes(range(256)) * 8
    assert banprog.run(frame(0x18, c + 1 + len(PAYLOAD), sport=40050, payload=body)) == XDP_DROP
    (ev,) = banprog.drain()
    e = np.frombuffer(ev[:EVENT_SIZE], EVENT_DTYPE)[0]
    assert e["kind"] == 4 and e["payload_len"] == len(body) and e["data_len"] == 1024
    assert ev[EVENT_SIZE : EVENT_SIZE + 1024] == body[:1024]
    # A pure ACK of our probe is ours (consumed) but not a record.
    assert banprog.run(frame(0x10, c + 1 + len(PAYLOAD), sport=40050)) == XDP_DROP
    # Data acking anything but the whole probe is not a banner of ours.
    assert banprog.run(frame(0x18, c + 1 + len(PAYLOAD) + 1, sport=40050, payload=b"x")) == XDP_PASS
    assert banprog.drain() == []


def test_short_banners_go_to_their_own_ring() -> None:
    """With a short ring (the scanner's default for one-segment banners), a banner of up to
    SHORT_MAX bytes is a short record holding all of it; a longer one a full banner record."""
    from zbanner_xdp.events import SHORT_MAX, short_dtype

    prog = Prog(banners=True, short_pages=64)
    try:
        sizes = {40070: 26, 40071: SHORT_MAX, 40072: SHORT_MAX + 1}
        for sport, n in sizes.items():
            body = bytes((i * 7 + sport) % 256 for i in range(n))
            ack = cookie(sport=sport) + 1 + len(PAYLOAD)
            assert prog.run(frame(0x18, ack, sport=sport, payload=body)) == XDP_DROP
        small, big, short = prog.ring.poll(0)
        assert len(small) == 0 and short.dtype == short_dtype(4)
        assert sorted(short["h"]["dport"].tolist()) == [40070, 40071]
        assert big["h"]["dport"].tolist() == [40072]
        for rec in [*short, *big]:
            sport, n = int(rec["h"]["dport"]), int(rec["h"]["data_len"])
            assert n == int(rec["h"]["payload_len"]) == sizes[sport]
            assert rec["data"][:n].tobytes() == bytes((i * 7 + sport) % 256 for i in range(n))
    finally:
        prog.ring.close()
        prog.p.close()


def test_later_segments_are_repeats_by_default_every_one_goes_up_with_segments(banprog: Prog) -> None:
    segprog = Prog(banners=True, segments=True)
    try:
        ack = cookie(sport=40060) + 1 + len(PAYLOAD)
        # Two segments, the first one again (a network duplicate, or a resend), then a FIN twice.
        frames = [
            frame(0x18, ack, seq=1000 + o, sport=40060, payload=d)
            for o, d in ((0, b"a" * 10), (10, b"b" * 5))
        ]
        frames += [
            frames[0],
            frame(0x11, ack, seq=1015, sport=40060),
            frame(0x11, ack, seq=1015, sport=40060),
        ]
        for prog in (banprog, segprog):
            assert [prog.run(f) for f in frames] == [XDP_DROP] * 5
        first = [np.frombuffer(e[:EVENT_SIZE], EVENT_DTYPE)[0] for e in banprog.drain()]
        # By default: the first segment only, and the first FIN (a multi-step probe's answer).
        assert sorted((int(e["kind"]), int(e["seq"])) for e in first) == [(4, 1000), (8, 1015)]
        evs = [np.frombuffer(e[:EVENT_SIZE], EVENT_DTYPE)[0] for e in segprog.drain()]
        got = sorted((int(e["kind"]), int(e["seq"]), int(e["repeat"])) for e in evs)
        assert got == [(4, 1000, 0), (4, 1000, 0), (4, 1010, 0), (8, 1015, 0), (8, 1015, 0)]
    finally:
        segprog.ring.close()
        segprog.p.close()


def _plan_prog(names: list[tuple[str, dict[str, str]]], port: int, **extra: object):
    """(program, its ring reader, plan) built as a scan of `names` on `port` builds them."""
    from zbanner_xdp.bpfprog import ProgParams, RecvProgram
    from zbanner_xdp.plan import ProbePlan
    from zbanner_xdp.probes import get_probe

    plan = ProbePlan([get_probe(n, a) for n, a in names], np.array([port]), LO, HI)
    family = int(extra.get("family", 4))  # type: ignore[call-overload]
    params = ProgParams(
        src_ip=int(extra.pop("src_ip", US)),  # type: ignore[call-overload]
        port_lo=LO,
        port_hi=HI,
        probes=plan.P,
        variants=plan.V,
        slots=plan.slots,
        icmp_variant=plan.icmp_index,
        banners=any(p.handshake for p in plan.probes),
        dedup_entries=1024,
        ringbuf_pages=64,
        banner_pages=64,
        **extra,  # type: ignore[arg-type]
    )
    kps = plan.kernel_payloads(family) if extra.get("kernel_replies") else None
    prog = RecvProgram(params, KEY, probe_infos=plan.probe_infos(family), kernel_payloads=kps)
    return prog, RingReader(prog, 64, 64), plan


@pytest.fixture(scope="module")
def liveprog():
    """The program as a liveness scan builds it: TCP banners, UDP (DNS, NTP) and ICMP echo probes."""
    prog, ring, _ = _plan_prog([(n, {}) for n in ("http", "udp-dns", "udp-ntp", "icmp-echo")], 80)
    yield prog, ring
    ring.close()
    prog.close()


def _ipv4(proto: int, src: int, body: bytes) -> bytes:
    """Ethernet + a valid IPv4 header (to us) + `body`; the IP checksum is not checked by the program."""
    ip = bytes([0x45, 0, *(20 + len(body)).to_bytes(2, "big"), 0, 1, 0x40, 0, 61, proto, 0, 0])
    addrs = src.to_bytes(4, "big") + US.to_bytes(4, "big")
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + addrs + body


ICMP_ERRORS = st.sampled_from([(3, 0), (3, 1), (3, 3), (3, 13), (11, 0), (0, 0), (8, 0), (5, 1), (12, 0)])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    proto=st.sampled_from([1, 6, 17]),
    src=st.sampled_from([THEM, US, 0, 0xFFFFFFFF]) | st.integers(0, 2**32 - 1),
    icmp=ICMP_ERRORS,
    quoted=st.sampled_from([1, 6, 17, 0]),
    data=st.binary(min_size=0, max_size=200),
)
def test_garbage_never_breaks_the_program_nor_makes_a_record(
    liveprog, proto: int, src: int, icmp: tuple[int, int], quoted: int, data: bytes
) -> None:
    """Random bytes as TCP, UDP and ICMP (echo replies, errors quoting random TCP/UDP/ICMP headers
    from us): every bound check holds, and nothing without our cookie becomes a record."""
    prog, ring = liveprog
    bodies = [data]
    if proto == 1:
        # An ICMP error whose quote is a plausible IPv4 header from us, then garbage.
        quote = _ipv4(quoted, US, data)[14:]
        quote = quote[:12] + US.to_bytes(4, "big") + src.to_bytes(4, "big") + quote[20:]
        bodies.append(bytes([*icmp, 0, 0, 0, 0, 0, 0]) + quote)
    for body in bodies:
        ret, _ = bpfsys.prog_test_run(prog.prog_fd, _ipv4(proto, src, body))
        assert ret in (XDP_DROP, XDP_PASS)
    # The kernel refuses test frames shorter than an Ethernet header.
    ret, _ = bpfsys.prog_test_run(prog.prog_fd, data.ljust(14, b"\x00"))
    assert ret in (XDP_DROP, XDP_PASS)
    small, big, short = ring.poll(0)
    assert len(small) == 0 and len(big) == 0 and len(short) == 0, "a record from garbage"


def test_forgeries_reach_each_handler_and_fail_its_validation(liveprog) -> None:
    """The fuzz above is not vacuous: a near-miss of each kind gets as far as the cookie check of
    its handler (TCP, UDP, ICMP echo, ICMP error quoting TCP) and fails there: counted, passed, no record."""
    prog, ring = liveprog
    ours = (SPORT).to_bytes(2, "big")
    tcp_synack = frame(0x12, cookie() + 2)[34:]  # one off
    udp = (53).to_bytes(2, "big") + ours + (8 + 12).to_bytes(2, "big") + b"\0\0" + bytes(12)
    echo = bytes([0, 0, 0, 0]) + b"\x12\x34\x56\x78"
    far_off = (cookie() + 100_000).to_bytes(4, "big")  # beyond cookie + 1 + the probe's payload
    quoted_tcp = _ipv4(6, US, ours + (80).to_bytes(2, "big") + far_off + bytes(12))
    quoted_tcp = quoted_tcp[14:26] + US.to_bytes(4, "big") + THEM.to_bytes(4, "big") + quoted_tcp[34:]
    unreach = bytes([3, 1, 0, 0, 0, 0, 0, 0]) + quoted_tcp
    for proto, body in ((6, tcp_synack), (17, udp), (1, echo), (1, unreach)):
        before = int(prog.counters()[Counter.BAD_COOKIE])
        ret, _ = bpfsys.prog_test_run(prog.prog_fd, _ipv4(proto, THEM, body))
        assert ret == XDP_PASS, (proto, body[:4])
        assert int(prog.counters()[Counter.BAD_COOKIE]) == before + 1, (proto, body[:4])
    small, big, short = ring.poll(0)
    assert len(small) == 0 and len(big) == 0 and len(short) == 0


def test_ring_reader_across_wraparound(synprog: Prog) -> None:
    # 64 pages hold ~4,600 records of 56 bytes: 12,000 replies read in chunks of 1,500 wrap it twice.
    seen: list[int] = []
    for chunk in range(8):
        for i in range(1500):
            sport = 33000 + chunk * 1500 + i
            assert synprog.run(frame(0x12, cookie(sport=sport) + 1, seq=sport, sport=sport)) == XDP_DROP
        seen += [int(np.frombuffer(r, EVENT_DTYPE)[0]["seq"]) for r in synprog.drain()]
    assert seen == list(range(33000, 33000 + 12000))


XDP_TX = 3


@pytest.fixture(scope="module")
def kprog():
    from zbanner_xdp.bpfprog import ProgParams, RecvProgram

    params = ProgParams(
        src_ip=US,
        port_lo=LO,
        port_hi=HI,
        banners=True,
        dedup_entries=1024,
        ringbuf_pages=64,
        banner_pages=64,
        kernel_replies=True,
        ttl=77,
        ack_window=512,
    )
    p = Prog.__new__(Prog)
    fixed = kpayload.KernelPayload(handshake=True, variants=[kpayload.Variant(PAYLOAD)] * kpayload.VARIANTS)
    p.p = RecvProgram(params, KEY, probe_infos=[PROBE_INFO], kernel_payloads=[fixed])
    p.ring = RingReader(p.p, 64)
    yield p
    p.ring.close()
    p.p.close()


def dpkt_ethernet(raw: bytes):
    import dpkt

    return dpkt.ethernet.Ethernet(raw)


def _checked(out: bytes):
    import dpkt

    eth = dpkt.ethernet.Ethernet(out)
    ip, tcp = eth.data, eth.data.data
    got = (ip.sum, tcp.sum)
    ip.sum = tcp.sum = 0
    again = dpkt.ethernet.Ethernet(bytes(eth))
    assert (again.data.sum, again.data.data.sum) == got
    return eth, ip, tcp


def test_kernel_replies_answer_synack_and_banner(kprog: Prog) -> None:
    c = cookie(sport=40100)
    ret, out = bpfsys.prog_test_run(kprog.p.prog_fd, frame(0x12, c + 1, seq=5000, sport=40100))
    assert ret == XDP_TX
    eth, ip, tcp = _checked(out)
    assert (eth.src, eth.dst) == (b"\x04" * 6, b"\x02" * 6)  # back to whoever sent the SYN-ACK
    assert (ip.src, ip.dst, ip.ttl) == (US.to_bytes(4, "big"), THEM.to_bytes(4, "big"), 77)
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack, tcp.win) == (40100, 80, (c + 1) & 0xFFFFFFFF, 5001, 512)
    assert tcp.flags == 0x18 and bytes(tcp.data) == PAYLOAD
    (ev,) = kprog.drain()
    e = np.frombuffer(ev, EVENT_DTYPE)[0]
    assert e["kind"] == 1 and e["flags"] & 0x02  # recorded, and marked answered

    ret, out = bpfsys.prog_test_run(
        kprog.p.prog_fd,
        frame(0x18, c + 1 + len(PAYLOAD), seq=5001, sport=40100, payload=b"HTTP/1.1 200 OK\r\n"),
    )
    assert ret == XDP_TX
    _, _, tcp = _checked(out)
    assert tcp.flags == 0x04 and tcp.seq == (c + 1 + len(PAYLOAD)) & 0xFFFFFFFF and bytes(tcp.data) == b""
    (ev,) = kprog.drain()
    assert np.frombuffer(ev[:EVENT_SIZE], EVENT_DTYPE)[0]["kind"] == 4
    # A network duplicate is neither recorded nor answered again.
    assert bpfsys.prog_test_run(kprog.p.prog_fd, frame(0x12, c + 1, seq=5000, sport=40100))[0] == XDP_DROP


# Probes whose payload depends on the target, answered in the kernel from a template: the address text
# (http's Host:, each JARM hello's SNI and the lengths around it), the per-target ranges (tls's random,
# session id, key share).
TEMPLATED = [("http", {}), ("tls", {}), ("jarm", {"seed": "00ff"}), ("lzr", {}), ("ssh", {})]


@pytest.fixture(scope="module")
def tprog():
    prog, ring, plan = _plan_prog(TEMPLATED, 443, kernel_replies=True, ttl=64, ack_window=1024)
    assert all(k is not None for k in plan.kernel_payloads())  # every one answered in the kernel
    yield prog, ring, plan
    ring.close()
    prog.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(them=st.integers(0x01000000, 0xDFFFFFFF), port=st.integers(1, 65535), entry=st.integers(0, 63))
def test_templated_payloads_equal_user_space_byte_for_byte(tprog, them: int, port: int, entry: int) -> None:
    """The program's ACK+payload for any target (address text of every length, ports, every JARM
    hello) is the frame user space builds from probe.payload(), checksums included."""
    prog, ring, plan = tprog
    entry %= plan.P
    probe = plan.probes[entry]
    sport = int(plan.source_ports(KEY, US, np.array([them], np.uint32), port, entry)[0])
    c = cookie_scalar(KEY, US, them, sport, port)
    synack = frame(0x12, c + 1, seq=777, sport=sport, src=them, dport=port)
    repeats = prog.counter(Counter.REPEAT)
    ret, out = bpfsys.prog_test_run(prog.prog_fd, synack)
    ring.poll(0)
    if prog.counter(Counter.REPEAT) > repeats:
        return  # hypothesis ran this target before: a duplicate, rightly not answered again
    assert ret == XDP_TX, (probe.name, entry, prog.counter(Counter.NO_ROOM))
    ip_text = ".".join(str(b) for b in them.to_bytes(4, "big"))
    payload = probe.payload(ip_text, port)
    link = packets.LinkParams(b"\x04" * 6, b"\x02" * 6, US, 64)
    pay, plen = packets.payload_matrix([payload])
    want, n = packets.tcp_frames(
        link,
        np.array([them], np.uint32),
        np.array([port]),
        np.array([sport]),
        np.array([(c + 1) & 0xFFFFFFFF], np.uint32),
        778,
        packets.ACK | (packets.PSH if payload else 0),
        1024,
        payload=pay if payload else None,
        payload_len=plen if payload else None,
    )
    got_eth, got_ip, got_tcp = _checked(out)
    want_eth = dpkt_ethernet(want[0, : n[0]].tobytes())
    assert bytes(got_tcp.data) == payload, (probe.name, ip_text)
    assert got_tcp.sum == want_eth.data.data.sum and got_ip.len == want_eth.data.len


def test_a_pure_ack_of_a_multi_step_request_goes_up_and_no_other() -> None:
    """Kind.ACKED: a pure ACK of a multi-step probe's whole request (proof the server has it, steps.py);
    for a one-connection probe, or acking less than the request, nothing goes up."""
    prog, ring, plan = _plan_prog([("jarm", {"seed": "00ff"}), ("http", {})], 443)
    try:
        ip_text = ".".join(str(b) for b in THEM.to_bytes(4, "big"))
        got = {}
        for entry in (0, 1, plan.P - 1):  # JARM's hellos 1 and 2, http
            sport = int(plan.source_ports(KEY, US, np.array([THEM], np.uint32), 443, entry)[0])
            whole = cookie(sport=sport, dport=443) + 1 + len(plan.probes[entry].payload(ip_text, 443))
            for ack in (whole - 1, whole):  # part of the request, then all of it
                ret, _ = bpfsys.prog_test_run(prog.prog_fd, frame(0x10, ack, sport=sport, dport=443))
                assert ret == XDP_DROP  # ours either way: the kernel must not RST it
            small, _, _ = ring.poll(0)
            got[entry] = [(int(e["kind"]), int(e["dport"]), int(e["ack"]) == whole % 2**32) for e in small]
            assert got[entry] == ([] if entry == plan.P - 1 else [(9, sport, True)]), (entry, got)
        assert prog.counter(Counter.ACKED) == 2
    finally:
        ring.close()
        prog.close()


def test_the_duplicate_filters_bucket_is_the_one_python_computes() -> None:
    """Each reply lands in the bucket events.dedup_index says (the C hash and its mirror agree), so
    the hash's spread measured in tests/unit/test_dedup_hash.py is the program's."""
    from zbanner_xdp import events
    from zbanner_xdp.bpfprog import ProgParams, RecvProgram

    params = ProgParams(src_ip=US, port_lo=LO, port_hi=HI, banners=False, dedup_entries=1024)
    prog = RecvProgram(params, KEY)
    ring = RingReader(prog, 64)
    try:
        rng = np.random.default_rng(3)
        them = (0xC6120000 + rng.integers(0, 1 << 16, 64)).astype(np.uint32)  # 198.18.x.y
        ours = rng.integers(LO, HI, 64)
        for t, o in zip(them.tolist(), ours.tolist(), strict=True):
            c = cookie_scalar(KEY, US, t, o, 80)
            # A SYN-ACK and a zero-window one (a connection's kinds: its bucket), a RST (one of its own).
            for flags, window in ((0x12, 64240), (0x12, 0), (0x14, 64240)):
                got = bpfsys.prog_test_run(prog.prog_fd, frame(flags, c + 1, sport=o, src=t, window=window))
                assert got[0] == XDP_DROP
            ring.poll(0)
        raw = them.byteswap()  # the event's (and the key's) address: the packet's bytes, loaded raw
        for kind in (events.Kind.SYNACK, events.Kind.ZEROWIN, events.Kind.RST):
            idx = events.dedup_index(raw, np.full(64, 80), ours, np.full(64, int(kind)), params.dedup_buckets)
            for r, o, i in zip(raw.tolist(), ours.tolist(), idx.tolist(), strict=True):
                bucket = np.frombuffer(prog.obj.lookup("dedup", i), events.DEDUP_SLOT_DTYPE)
                want = (r, 80 | (o << 16), int(kind))
                assert want in {(int(s["saddr"]), int(s["ports"]), int(s["kind"])) for s in bucket}, (r, o, i)
    finally:
        ring.close()
        prog.close()
