"""The XDP target emulator: hand-made frames through BPF_PROG_TEST_RUN, then a real
Linux TCP client against it across a veth pair, then a flood to measure its rate.

Its own two namespaces (zble-c: client, zble-t: emulator with the default lab prefix zbl-; the
lab prefix's tag and "e-" in general), never the lab's zbl-*::

    zble-c                                        zble-t
    zble-c0 10.88.0.1/24  <---- veth ---->  zble-t0 10.88.0.2/24
    route 198.18.0.0/15 via 10.88.0.2            emulator for 198.18.3.0/24
    PeerPass (XDP_PASS, see emulator.py)         a real server on 10.88.0.2:8022
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dpkt
import pytest

from tests.conftest import privileged_reason
from zbanner_xdp import bpfsys, kheaders
from zbanner_xdp.lab import netns, topology
from zbanner_xdp.lab.emulator import (
    XDP_DROP,
    XDP_PASS,
    XDP_TX,
    Emulator,
    EmulatorParams,
    PeerPass,
    canned_response,
    segment,
)

pytestmark = pytest.mark.privileged


# Named after the lab prefix (ZBANNER_LAB_PREFIX), as every lab is: runs under other prefixes at the
# same time (other users, other test runs) build and tear down namespaces of their own, not these.
_TAG = f"{topology.PREFIX.rstrip('-')}e"
CLIENT_NS, TARGET_NS = f"{_TAG}-c", f"{_TAG}-t"
CLIENT_IF, TARGET_IF = f"{_TAG}-c0", f"{_TAG}-t0"
CLIENT_IP, TARGET_IP = "10.88.0.1", "10.88.0.2"
# Locally administered and fixed, so expected frames can hard-code them.
CLIENT_MAC, TARGET_MAC = "02:7a:62:65:00:01", "02:7a:62:65:00:02"
ROUTE = "198.18.0.0/15"
NET = "198.18.3.0/24"
REAL_PORT = 8022

BANNER = b"SSH-2.0-zbanner-emulator\r\n"
PARAMS = EmulatorParams(
    net=NET, open_permil=500, ports=frozenset({22, 80, 443}), window=29200, banner=BANNER, seed=0x5EED
)

C_MAC = bytes.fromhex(CLIENT_MAC.replace(":", ""))
T_MAC = bytes.fromhex(TARGET_MAC.replace(":", ""))
C_IP = struct.unpack("!I", socket.inet_aton(CLIENT_IP))[0]
NET_BASE = struct.unpack("!I", socket.inet_aton("198.18.3.0"))[0]
# MSS, SACK-permitted, timestamps, NOP, window scale: what a Linux SYN carries (40 bytes of TCP header).
LINUX_SYN_OPTS = bytes.fromhex("020405b4") + b"\x04\x02\x08\x0a" + bytes(8) + b"\x01\x03\x03\x07"
CMD_TIMEOUT = 10.0


def _ip(n: int) -> int:
    return NET_BASE + n


def _dotted(ip: int) -> str:
    return socket.inet_ntoa(struct.pack("!I", ip))


def _first(pred: Callable[[int], bool]) -> int:
    return next(_ip(n) for n in range(1, 255) if pred(_ip(n)))


# Ground truth picked from the same hash the program uses.
OPEN_IP = _first(lambda ip: PARAMS.is_open(ip, 22))
CLOSED_IP = _first(lambda ip: not PARAMS.is_open(ip, 22))


# --------------------------------------------------------------------------- helpers


in_netns = netns.run_in


def ns_argv(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def run_in(ns: str, argv: list[str], timeout: float = CMD_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(ns_argv(ns, argv), capture_output=True, text=True, timeout=timeout)


def emulator_cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return run_in(TARGET_NS, [sys.executable, "-m", "zbanner_xdp.lab.emulator", *args], timeout=timeout)


def xdp_on_target() -> bool:
    out = subprocess.run(
        ["ip", "-n", TARGET_NS, "-d", "link", "show", TARGET_IF],
        capture_output=True,
        text=True,
        timeout=CMD_TIMEOUT,
    ).stdout
    return "prog/xdp" in out


# A real Linux TCP client, in its own process inside the client namespace.
CLIENT_CODE = """
import json, socket, sys
host, port, probe, read = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), sys.argv[4] == "1"
try:
    s = socket.create_connection((host, port), timeout=2)
except ConnectionRefusedError:
    print(json.dumps({"result": "refused"}))
    sys.exit(0)
except OSError as exc:
    print(json.dumps({"result": type(exc).__name__}))
    sys.exit(0)
if probe:
    s.sendall(probe)
if not read:
    print(json.dumps({"result": "connected"}))
    sys.exit(0)
try:
    data = s.recv(4096)
except OSError as exc:
    print(json.dumps({"result": "connected", "error": type(exc).__name__}))
    sys.exit(0)
print(json.dumps({"result": "connected", "data": data.decode("latin-1")}))
"""


def tcp_client(host: str, port: int, probe: bytes = b"", read: bool = True) -> dict[str, str]:
    argv = [sys.executable, "-c", CLIENT_CODE, host, str(port), probe.decode(), str(int(read))]
    proc = run_in(CLIENT_NS, argv)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def frame(
    flags: int,
    *,
    dst: int = OPEN_IP,
    dport: int = 22,
    src: int = C_IP,
    sport: int = 40000,
    seq: int = 1000,
    ack: int = 0,
    opts: bytes = b"",
    payload: bytes = b"",
    proto_udp: bool = False,
    win: int = 64240,
) -> bytes:
    """An Ethernet/IPv4/TCP frame as the client would send it, checksums filled in by dpkt."""
    if proto_udp:
        l4: dpkt.Packet = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
        l4.ulen = 8 + len(payload)
        proto = dpkt.ip.IP_PROTO_UDP
    else:
        l4 = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=win, opts=opts)
        l4.off = (20 + len(opts)) // 4
        l4.data = payload
        proto = dpkt.ip.IP_PROTO_TCP
    ip = dpkt.ip.IP(src=struct.pack("!I", src), dst=struct.pack("!I", dst), p=proto, ttl=64, id=4321, data=l4)
    ip.len = 20 + len(bytes(l4))
    return bytes(dpkt.ethernet.Ethernet(src=C_MAC, dst=T_MAC, type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


def checked_reply(out: bytes, ip_offset: int = 14) -> tuple[dpkt.ip.IP, dpkt.tcp.TCP]:
    """Parse an emulator reply; assert what every reply shares, both checksums included."""
    eth = dpkt.ethernet.Ethernet(out)
    assert eth.src == T_MAC and eth.dst == C_MAC
    ip = eth.data
    assert isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP)
    assert len(out) == ip_offset + ip.len  # trimmed exactly: no stale tail
    assert (ip.v, ip.hl, ip.tos, ip.id, ip.df, ip.mf, ip.offset) == (4, 5, 0, 0, 1, 0, 0)
    assert ip.ttl == 64 and ip.p == dpkt.ip.IP_PROTO_TCP
    assert ip.dst == struct.pack("!I", C_IP)
    tcp = ip.data
    assert tcp.urp == 0
    sums = (ip.sum, tcp.sum)
    # dpkt recomputes a checksum that is zero when it serialises.
    ip.sum = 0
    tcp.sum = 0
    again = dpkt.ip.IP(bytes(ip))
    assert sums == (again.sum, again.data.sum), "checksums differ from dpkt's"
    ip.sum, tcp.sum = sums
    return ip, tcp


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


# --------------------------------------------------------------------------- fixtures


def _teardown() -> None:
    from pyroute2 import IPRoute
    from pyroute2 import netns as pr_netns

    present = pr_netns.listnetns()
    if CLIENT_NS in present:
        # Deleting the veth first makes the pair (and anything attached) go now, not lazily.
        with contextlib.suppress(Exception), IPRoute(netns=CLIENT_NS, flags=0) as ipr:
            idx = ipr.link_lookup(ifname=CLIENT_IF)
            if idx:
                ipr.link("del", index=idx[0])
    for ns in (CLIENT_NS, TARGET_NS):
        if ns in present:
            pr_netns.remove(ns)


def _build() -> None:
    from pyroute2 import IPRoute
    from pyroute2 import netns as pr_netns

    for ns in (CLIENT_NS, TARGET_NS):
        pr_netns.create(ns)
    with IPRoute(netns=CLIENT_NS, flags=0) as ipr:
        ipr.link(
            "add",
            ifname=CLIENT_IF,
            kind="veth",
            address=CLIENT_MAC,
            peer={"ifname": TARGET_IF, "net_ns_fd": TARGET_NS, "address": TARGET_MAC},
        )
        idx = ipr.link_lookup(ifname=CLIENT_IF)[0]
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        ipr.addr("add", index=idx, address=CLIENT_IP, prefixlen=24)
        ipr.link("set", index=idx, state="up")
        ipr.route("add", dst=ROUTE, gateway=TARGET_IP)
    with IPRoute(netns=TARGET_NS, flags=0) as ipr:
        idx = ipr.link_lookup(ifname=TARGET_IF)[0]
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        ipr.addr("add", index=idx, address=TARGET_IP, prefixlen=24)
        ipr.link("set", index=idx, state="up")


class Lab:
    def __init__(self) -> None:
        self.peer: PeerPass | None = None

    def peer_pass(self) -> None:
        self.peer = in_netns(CLIENT_NS, lambda: PeerPass(CLIENT_IF))

    def peer_off(self) -> None:
        if self.peer is not None:
            self.peer.close()
            self.peer = None


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    reason = privileged_reason()
    if reason:
        pytest.skip(f"privileged test: {reason}")
    _teardown()  # leftovers of a killed run: only our own names
    state = Lab()
    try:
        _build()
        state.peer_pass()
        yield state
    finally:
        state.peer_off()
        _teardown()


def _compiled(params: EmulatorParams) -> Iterator[Emulator]:
    reason = privileged_reason()
    if reason:
        pytest.skip(f"privileged test: {reason}")
    e = Emulator(params)
    try:
        yield e
    finally:
        e.close()


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    yield from _compiled(PARAMS)


@contextlib.contextmanager
def attached(emu: Emulator) -> Iterator[None]:
    in_netns(TARGET_NS, lambda: emu.attach(TARGET_IF))
    try:
        yield
    finally:
        emu.detach()


# --------------------------------------------------------------------------- BPF_PROG_TEST_RUN


def test_syn_open_gets_synack(emu: Emulator) -> None:
    before = emu.counters()
    ret, out = emu.test_run(frame(dpkt.tcp.TH_SYN, seq=0xFFFFFFFF, opts=LINUX_SYN_OPTS))
    assert ret == XDP_TX
    ip, tcp = checked_reply(out)
    assert ip.src == struct.pack("!I", OPEN_IP)
    assert ip.len == 20 + 24  # the client's 20 option bytes trimmed, MSS added
    assert (tcp.sport, tcp.dport) == (22, 40000)
    assert tcp.flags == dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK
    assert tcp.seq == PARAMS.isn(OPEN_IP, C_IP, 22, 40000)
    assert tcp.ack == 0  # their seq + 1, wrapped
    assert tcp.win == 29200
    assert tcp.off == 6 and tcp.opts == bytes.fromhex("020405b4") and tcp.data == b""
    assert delta(before, emu.counters()) == {"syn_open": 1}


def test_syn_without_options_grows(emu: Emulator) -> None:
    ret, out = emu.test_run(frame(dpkt.tcp.TH_SYN))
    assert ret == XDP_TX
    ip, tcp = checked_reply(out)
    assert ip.len == 44 and tcp.opts == bytes.fromhex("020405b4") and tcp.ack == 1001


@pytest.mark.parametrize(
    ("dst", "dport"),
    [(CLOSED_IP, 22), (OPEN_IP, 23)],
    ids=["hash-closed", "port-not-listed"],
)
def test_syn_closed_gets_rst(emu: Emulator, dst: int, dport: int) -> None:
    before = emu.counters()
    ret, out = emu.test_run(frame(dpkt.tcp.TH_SYN, dst=dst, dport=dport, seq=5000, opts=LINUX_SYN_OPTS))
    assert ret == XDP_TX
    ip, tcp = checked_reply(out)
    assert ip.src == struct.pack("!I", dst) and ip.len == 40
    assert (tcp.sport, tcp.dport) == (dport, 40000)
    assert tcp.flags == dpkt.tcp.TH_RST | dpkt.tcp.TH_ACK
    assert (tcp.seq, tcp.ack, tcp.win, tcp.off) == (0, 5001, 0, 5)
    assert delta(before, emu.counters()) == {"syn_closed": 1}


def test_open_matches_python_ground_truth(emu: Emulator) -> None:
    opened = 0
    for n in range(1, 255):
        for port in (22, 80, 443, 8080):
            ret, out = emu.test_run(frame(dpkt.tcp.TH_SYN, dst=_ip(n), dport=port))
            assert ret == XDP_TX
            flags = dpkt.ethernet.Ethernet(out).data.data.flags
            want = PARAMS.is_open(_ip(n), port)
            assert flags == (dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK if want else dpkt.tcp.TH_RST | dpkt.tcp.TH_ACK)
            opened += want
    assert 0.4 < opened / (254 * 3) < 0.6  # open_permil 500 of the listed ports; 8080 never


@pytest.mark.parametrize("probe", [b"GET / HTTP/1.0\r\n\r\n", b"x" * 300], ids=["grow", "shrink"])
def test_probe_gets_banner(emu: Emulator, probe: bytes) -> None:
    isn = PARAMS.isn(OPEN_IP, C_IP, 22, 40000)
    before = emu.counters()
    f = frame(dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, seq=1001, ack=isn + 1, payload=probe)
    ret, out = emu.test_run(f)
    assert ret == XDP_TX
    ip, tcp = checked_reply(out)
    assert ip.len == 40 + len(BANNER)
    assert (tcp.sport, tcp.dport) == (22, 40000)
    assert tcp.flags == dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK
    assert (tcp.seq, tcp.ack, tcp.win, tcp.off) == (isn + 1, 1001 + len(probe), 65535, 5)
    assert tcp.data == BANNER
    assert delta(before, emu.counters()) == {"banner": 1}


def test_vlan_tag_is_kept(emu: Emulator) -> None:
    f = frame(dpkt.tcp.TH_SYN)
    tagged = f[:12] + b"\x81\x00\x00\x05" + f[12:]
    ret, out = emu.test_run(tagged)
    assert ret == XDP_TX
    assert out[12:16] == b"\x81\x00\x00\x05"
    untagged = out[:12] + out[16:]
    ip, tcp = checked_reply(untagged)
    assert tcp.flags == dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK and len(out) == 18 + ip.len


def _ack(isn_offset: int, flags: int = dpkt.tcp.TH_ACK, payload: bytes = b"", dst: int = OPEN_IP) -> bytes:
    isn = PARAMS.isn(dst, C_IP, 22, 40000)
    return frame(flags, dst=dst, seq=1001, ack=(isn + isn_offset) & 0xFFFFFFFF, payload=payload)


@pytest.mark.parametrize(
    ("make", "counter"),
    [
        (lambda: _ack(1), "dropped"),  # bare ACK of the handshake: client-first, so silence
        (lambda: _ack(1 + len(BANNER)), "dropped"),  # the client acking our banner
        (lambda: _ack(2, payload=b"hi"), "bad_ack"),
        (lambda: _ack(0, payload=b"hi"), "bad_ack"),
        (lambda: _ack(1, payload=b"hi", dst=CLOSED_IP), "dropped"),
        (lambda: _ack(1, flags=dpkt.tcp.TH_RST | dpkt.tcp.TH_ACK), "dropped"),
        (lambda: _ack(1, flags=dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK), "dropped"),
        (lambda: frame(dpkt.tcp.TH_RST), "dropped"),
        (lambda: frame(dpkt.tcp.TH_SYN | dpkt.tcp.TH_FIN), "dropped"),
        (lambda: frame(dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK), "dropped"),
        (lambda: frame(0), "dropped"),
    ],
    ids=[
        "bare-ack", "ack-of-banner", "ack-off-by-one", "ack-isn", "closed-port", "rst", "fin",
        "rst-bare", "syn-fin", "synack", "no-flags",
    ],
)  # fmt: skip
def test_silent_cases(emu: Emulator, make: Callable[[], bytes], counter: str) -> None:
    before = emu.counters()
    ret, _ = emu.test_run(make())
    assert ret == XDP_DROP
    assert delta(before, emu.counters()) == {counter: 1}


def test_unanswerable_ip_is_dropped(emu: Emulator) -> None:
    f = bytearray(frame(dpkt.tcp.TH_SYN))
    f[20] |= 0x20  # more fragments
    ret, _ = emu.test_run(bytes(f))
    assert ret == XDP_DROP


@pytest.mark.parametrize(
    "f",
    [
        frame(dpkt.tcp.TH_SYN, dst=struct.unpack("!I", socket.inet_aton(TARGET_IP))[0]),
        frame(dpkt.tcp.TH_SYN, dst=_ip(256)),  # 198.18.4.0: just outside the /24
        frame(0, proto_udp=True, payload=b"dns?"),
        C_MAC + b"\xff" * 6 + b"\x08\x06" + bytes(28),
    ],
    ids=["real-stack-address", "outside-range", "udp-to-range", "arp"],
)
def test_everything_else_passes_untouched(emu: Emulator, f: bytes) -> None:
    before = emu.counters()
    ret, out = emu.test_run(f)
    assert (ret, out) == (XDP_PASS, f)
    assert delta(before, emu.counters()) == {"passed": 1}


def test_server_first_zero_window_build() -> None:
    """A server-first, option-less, zero-window build: the bare ACK already gets the banner."""
    if privileged_reason():
        pytest.skip("privileged")
    params = EmulatorParams(net=NET, window=0, mss=0, server_first=True, banner=b"220 hi\r\n", seed=3)
    with Emulator(params) as e:
        ret, out = e.test_run(frame(dpkt.tcp.TH_SYN, dport=2121, opts=LINUX_SYN_OPTS))
        ip, tcp = checked_reply(out)
        assert ret == XDP_TX and tcp.win == 0 and tcp.off == 5 and ip.len == 40
        isn = params.isn(OPEN_IP, C_IP, 2121, 40000)
        ret, out = e.test_run(frame(dpkt.tcp.TH_ACK, dport=2121, seq=1001, ack=isn + 1))
        ip, tcp = checked_reply(out)
        assert ret == XDP_TX and tcp.data == b"220 hi\r\n" and tcp.ack == 1001 and tcp.seq == isn + 1
        assert e.counters()["banner"] == 1


def test_a_drift_of_the_mirrored_constants_fails_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """xdp_responder.c asserts the counters and the banner size emulator.py mirrors."""
    if privileged_reason():
        pytest.skip("privileged")
    from zbanner_xdp.lab import emulator
    from zbanner_xdp.lab.emulator import EmulatorError

    swapped = (emulator.COUNTERS[1], emulator.COUNTERS[0], *emulator.COUNTERS[2:])
    monkeypatch.setattr(emulator, "COUNTERS", swapped)
    with pytest.raises(EmulatorError, match="cannot build the emulator"):
        Emulator(EmulatorParams(net=NET))


# --------------------------------------------------------------------------- canned response

RESPONSE = canned_response(500)
SEG = 160
RESP_PARAMS = EmulatorParams(
    net=NET, open_permil=500, ports=frozenset({22, 80, 443}), response=RESPONSE, segment=SEG, seed=0x5EED
)


@pytest.fixture(scope="module")
def emu_resp() -> Iterator[Emulator]:
    yield from _compiled(RESP_PARAMS)


def _resp_ack(k: int, win: int = 1024, payload: bytes = b"", dst: int = OPEN_IP) -> bytes:
    """The client's ACK of k bytes of the response (seq past a probe of 7 bytes)."""
    isn = RESP_PARAMS.isn(dst, C_IP, 22, 40000)
    flags = dpkt.tcp.TH_ACK | (dpkt.tcp.TH_PUSH if payload else 0)
    ack = (isn + 1 + k) & 0xFFFFFFFF
    return frame(flags, dst=dst, seq=1001 if payload else 1008, ack=ack, payload=payload, win=win)


def test_response_first_segment_answers_the_probe(emu_resp: Emulator) -> None:
    isn = RESP_PARAMS.isn(OPEN_IP, C_IP, 22, 40000)
    before = emu_resp.counters()
    ret, out = emu_resp.test_run(_resp_ack(0, payload=b"hello\r\n"))
    assert ret == XDP_TX
    ip, tcp = checked_reply(out)
    assert tcp.data == RESPONSE[:SEG] and ip.len == 40 + SEG
    assert tcp.flags == dpkt.tcp.TH_ACK  # more to come: no PSH, no FIN
    assert (tcp.seq, tcp.ack, tcp.win) == (isn + 1, 1008, 65535)
    assert delta(before, emu_resp.counters()) == {"banner": 1}


def test_response_segments_follow_the_acks_statelessly(emu_resp: Emulator) -> None:
    # Every byte the client may acknowledge, odd offsets included (the checksum then comes from
    # byte-swapped prefix sums: checked_reply recomputes it), under windows large and small.
    isn = RESP_PARAMS.isn(OPEN_IP, C_IP, 22, 40000)
    before = emu_resp.counters()
    sent = 0
    for k in range(1, len(RESPONSE)):
        win = (1024, 100, 1, 333)[k % 4]
        ret, out = emu_resp.test_run(_resp_ack(k, win=win))
        assert ret == XDP_TX, k
        ip, tcp = checked_reply(out)
        want, fin = segment(RESPONSE, k, win, SEG)  # type: ignore[misc]
        assert tcp.data == want, (k, win)
        last = dpkt.tcp.TH_PUSH | dpkt.tcp.TH_FIN if fin else 0
        assert tcp.flags == dpkt.tcp.TH_ACK | last, k
        assert (tcp.seq, tcp.ack) == ((isn + 1 + k) & 0xFFFFFFFF, 1008)
        sent += 1
    assert delta(before, emu_resp.counters()) == {"segment": sent}


@pytest.mark.parametrize(
    ("make", "counter"),
    [
        (lambda: _resp_ack(0), "dropped"),  # the bare ACK of the handshake: client-first, silence
        (lambda: _resp_ack(len(RESPONSE)), "dropped"),  # all of it acked
        (lambda: _resp_ack(len(RESPONSE) + 1), "dropped"),  # its FIN acked too
        (lambda: _resp_ack(len(RESPONSE) + 2), "bad_ack"),
        (lambda: _resp_ack(-1), "bad_ack"),
        (lambda: _resp_ack(10, win=0), "dropped"),  # a zero window: nothing until it opens
        (lambda: _resp_ack(10, dst=CLOSED_IP), "dropped"),
    ],
    ids=["bare-ack", "all-acked", "fin-acked", "past-fin", "before-isn", "zero-window", "closed"],
)
def test_response_silent_cases(emu_resp: Emulator, make: Callable[[], bytes], counter: str) -> None:
    before = emu_resp.counters()
    ret, _ = emu_resp.test_run(make())
    assert ret == XDP_DROP
    assert delta(before, emu_resp.counters()) == {counter: 1}


def test_response_server_first_and_syn_unchanged() -> None:
    if privileged_reason():
        pytest.skip("privileged")
    params = EmulatorParams(net=NET, server_first=True, response=b"x" * 3000, seed=3)  # 1460-byte segments
    with Emulator(params) as e:
        ret, out = e.test_run(frame(dpkt.tcp.TH_SYN, dport=2121, opts=LINUX_SYN_OPTS))
        ip, tcp = checked_reply(out)
        assert ret == XDP_TX and tcp.flags == dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK and ip.len == 44
        isn = params.isn(OPEN_IP, C_IP, 2121, 40000)
        for k, n in ((0, 1460), (1460, 1460), (2920, 80)):
            ret, out = e.test_run(frame(dpkt.tcp.TH_ACK, dport=2121, seq=1001, ack=isn + 1 + k))
            ip, tcp = checked_reply(out)
            assert ret == XDP_TX and tcp.data == b"x" * n and tcp.seq == isn + 1 + k


# --------------------------------------------------------------------------- end to end


def test_e2e_client_first(lab: Lab, emu: Emulator) -> None:
    """A Linux client: handshake, probe, banner; a closed port is refused; the real stack still works."""
    listener = in_netns(TARGET_NS, lambda: socket.create_server((TARGET_IP, REAL_PORT)))
    listener.settimeout(CMD_TIMEOUT)

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"real-server\r\n")

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        with attached(emu):
            assert xdp_on_target()
            before = emu.counters()
            got = tcp_client(_dotted(OPEN_IP), 22, b"hello\r\n")
            assert got == {"result": "connected", "data": BANNER.decode()}
            assert tcp_client(_dotted(CLOSED_IP), 22) == {"result": "refused"}
            assert tcp_client(_dotted(OPEN_IP), 23) == {"result": "refused"}
            assert tcp_client(TARGET_IP, REAL_PORT) == {"result": "connected", "data": "real-server\r\n"}
            # A link attachment cannot be removed behind its owner's back.
            assert emulator_cli("--iface", TARGET_IF, "--detach").returncode == 2
            assert xdp_on_target()
            d = delta(before, emu.counters())
            assert d["syn_open"] >= 1 and d["syn_closed"] >= 2 and d["banner"] >= 1 and d["passed"] >= 3
            assert d.get("bad_ack", 0) == 0 and d.get("no_room", 0) == 0
        assert not xdp_on_target()
    finally:
        listener.close()
        server.join(timeout=CMD_TIMEOUT)


def test_persistent_detach_from_another_namespace(lab: Lab, emu: Emulator) -> None:
    in_netns(TARGET_NS, lambda: emu.attach(TARGET_IF, persistent=True))
    try:
        assert xdp_on_target()
        assert tcp_client(_dotted(OPEN_IP), 22, b"x") == {"result": "connected", "data": BANNER.decode()}
        emu.detach()  # from this thread, in the root namespace
        assert not xdp_on_target()
    finally:
        emu.detach()


class Capture:
    """tcpdump on the client's veth, until stopped.

    --immediate-mode: otherwise packets wait in a TPACKET_V3 block until it
    fills or times out, and a capture stopped right after the exchange is empty.
    """

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            ns_argv(CLIENT_NS, ["tcpdump", "-i", CLIENT_IF, "--immediate-mode", "-nw", str(path), "tcp"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        deadline = time.monotonic() + CMD_TIMEOUT
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if "listening on" in line or not line:
                break
        if self.proc.poll() is not None:
            raise RuntimeError("tcpdump did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=CMD_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def _synacks(path: Path) -> list[bytes]:
    out = []
    with open(path, "rb") as fh:
        for _ts, buf in dpkt.pcap.Reader(fh):
            ip = dpkt.ethernet.Ethernet(buf).data
            tcp = ip.data if isinstance(ip, dpkt.ip.IP) else None
            if isinstance(tcp, dpkt.tcp.TCP) and tcp.flags == dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK:
                out.append(buf)
    return out


def test_e2e_zero_window_foreground_cli(lab: Lab, tmp_path: Path) -> None:
    """The CLI in the foreground: a zero-window host; SIGTERM detaches and prints the counters."""
    argv = ns_argv(
        TARGET_NS,
        [sys.executable, "-m", "zbanner_xdp.lab.emulator", "--iface", TARGET_IF, "--net", NET,
         "--window", "0", "--open-permil", "1000", "--seconds", "20"],
    )  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pcap = tmp_path / "zero.pcap"
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "attached to" in line, line + proc.stderr.read()
        cap = Capture(pcap)
        try:
            # A Linux client completes the handshake against a zero window.
            assert tcp_client(_dotted(_ip(9)), 5555, read=False) == {"result": "connected"}
        finally:
            cap.stop()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=CMD_TIMEOUT)
        assert proc.returncode == 0, err
        counters = json.loads(out.strip().splitlines()[-1])
        assert counters["syn_open"] >= 1
        assert not xdp_on_target()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    synacks = _synacks(pcap)
    assert synacks, "no SYN-ACK captured"
    for buf in synacks:
        ip, tcp = checked_reply(buf)
        assert ip.src == struct.pack("!I", _ip(9)) and tcp.win == 0


def test_e2e_persistent_server_first_cli(lab: Lab) -> None:
    """--persistent outlives its process; a server-first client just reads; --detach removes it."""
    try:
        proc = emulator_cli(
            "--iface", TARGET_IF, "--net", NET, "--ports", "22,2200-2201", "--server-first",
            "--banner", r"SSH-2.0-zero\r\n", "--persistent",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert xdp_on_target()
        assert tcp_client(_dotted(_ip(7)), 22) == {"result": "connected", "data": "SSH-2.0-zero\r\n"}
        assert tcp_client(_dotted(_ip(7)), 2201)["data"] == "SSH-2.0-zero\r\n"
        assert tcp_client(_dotted(_ip(7)), 2202) == {"result": "refused"}
        proc = emulator_cli("--iface", TARGET_IF, "--detach")
        assert proc.returncode == 0, proc.stderr
        assert not xdp_on_target()
    finally:
        if xdp_on_target():
            emulator_cli("--iface", TARGET_IF, "--detach")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--iface", f"{_TAG}-nope0"], "unknown interface"),
        (["--iface", TARGET_IF, "--open-permil", "2000"], "open permil"),
        (["--iface", TARGET_IF, "--net", "198.18.3.0/99"], "invalid IPv4 range"),
        (["--iface", TARGET_IF, "--ports", "70000"], "invalid port range"),
        (["--iface", TARGET_IF, "--banner", "x" * 2000], "at most"),
    ],
    ids=["iface", "permil", "net", "ports", "banner"],
)
def test_cli_errors_one_line_exit_2(lab: Lab, args: list[str], fragment: str) -> None:
    proc = emulator_cli(*args)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and fragment in proc.stderr, proc.stderr
    assert not xdp_on_target()


# --------------------------------------------------------------------------- rate


# Two helpers on the client veth for the flood: `gen` is never attached: run
# through bpfsys.LiveRunner (BPF_F_TEST_XDP_LIVE_FRAMES) it transmits its frame
# out of CLIENT_IF at kernel speed. It writes the whole SYN from a template on
# every run, since a recycled page may still hold what the emulator made of
# it in place. `sink` is attached to CLIENT_IF: it counts the SYN-ACKs coming
# back and drops them (the client's kernel would RST every one), and, being an
# XDP program, it is what lets CLIENT_IF receive XDP_TX frames at all.
BENCH_SRC = r"""
struct tmpl { __u8 b[TMPL_LEN]; };
BPF_ARRAY(template, struct tmpl, 1);
BPF_PERCPU_ARRAY(synacks, __u64, 1);

int gen(struct xdp_md *ctx)
{
    __u32 zero = 0;
    struct tmpl *t = template.lookup(&zero);
    if (!t || bpf_xdp_store_bytes(ctx, 0, t->b, TMPL_LEN))
        return XDP_DROP;
    return XDP_TX;
}

int sink(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    if (data + 14 + 20 + 20 > end)
        return XDP_PASS;
    __u8 *p = data;
    if (p[12] != 0x08 || p[13] != 0x00 || p[23] != 6 || p[47] != 0x12)
        return XDP_PASS;
    __u32 zero = 0;
    __u64 *v = synacks.lookup(&zero);
    if (v)
        *v += 1;
    return XDP_DROP;
}
"""
FLOOD = 500_000


BPF_OBJ_GET_INFO_BY_FD = 15
BPF_ENABLE_STATS = 32
_RUN_TIME_OFF = 192  # struct bpf_prog_info: run_time_ns, run_cnt


class _InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


class _StatsAttr(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("_pad", ctypes.c_uint8 * 12)]


def _run_stats(prog_fd: int) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of a program: what the kernel charged to it while stats were on."""
    buf = ctypes.create_string_buffer(256)
    bpfsys._bpf(BPF_OBJ_GET_INFO_BY_FD, _InfoAttr(prog_fd, 256, ctypes.addressof(buf)))
    return struct.unpack_from("<QQ", buf.raw, _RUN_TIME_OFF)


def _xdp_tx_stats() -> tuple[tuple[int, int], tuple[int, int]]:
    """(sent, refused) of the generator's live frames on the client veth, and of the emulator's
    XDP_TX on the target veth: read in their namespaces."""
    from zbanner_xdp.ethstats import XDP_TX_ERRORS, XDP_TX_SENT, XdpTxStats

    def read(ifname: str, *names: tuple[str, ...]) -> tuple[int, int]:
        st = XdpTxStats(ifname, *names)
        try:
            got = st.read()
        finally:
            st.close()
        assert got is not None, ifname
        return got

    gen = in_netns(CLIENT_NS, lambda: read(CLIENT_IF))
    emu = in_netns(TARGET_NS, lambda: read(TARGET_IF, XDP_TX_SENT, XDP_TX_ERRORS))
    return gen, emu


def test_flood_rate(lab: Lab, emu: Emulator) -> None:
    """SYN -> SYN-ACK rate across the veth: printed (run with -s), and every frame accounted for."""
    from bcc import BPF

    kheaders.export_for_bcc()
    syn = frame(dpkt.tcp.TH_SYN, dst=OPEN_IP, opts=bytes.fromhex("020405b4"))
    bench = BPF(text=BENCH_SRC.encode(), cflags=[f"-DTMPL_LEN={len(syn)}"])
    try:
        tmpl = bench[b"template"]
        leaf = tmpl.Leaf()
        ctypes.memmove(leaf.b, syn, len(syn))
        tmpl[ctypes.c_int(0)] = leaf
        gen = bench.load_func(b"gen", BPF.XDP)
        sink = bench.load_func(b"sink", BPF.XDP)
        counter = bench[b"synacks"]

        def received() -> int:
            return sum(int(x) for x in counter[ctypes.c_int(0)])

        lab.peer_off()  # the sink takes PeerPass's place on CLIENT_IF
        link = in_netns(CLIENT_NS, lambda: bpfsys.xdp_link_create(sink.fd, socket.if_nametoindex(CLIENT_IF)))
        try:
            # BPF_ENABLE_STATS: run-time accounting only while this fd is open,
            # so no global sysctl is left switched on.
            stats_fd = bpfsys._bpf(BPF_ENABLE_STATS, _StatsAttr(type=0))
            with attached(emu):
                before = emu.counters()["syn_open"]
                ns0, runs0 = _run_stats(emu.prog_fd)
                gen0, emu0 = _xdp_tx_stats()

                def flood() -> float:
                    # In CLIENT_NS: live mode resolves the ifindex in the caller's namespace.
                    runner = bpfsys.LiveRunner(gen.fd, syn, socket.if_nametoindex(CLIENT_IF), batch_size=64)
                    t0 = time.perf_counter()
                    runner.run(FLOOD)
                    return time.perf_counter() - t0

                sent_s = in_netns(CLIENT_NS, flood)
                # Bounded wait for the last replies in flight.
                last, deadline = -1, time.monotonic() + 2
                while received() != last and time.monotonic() < deadline:
                    last = received()
                    time.sleep(0.05)
                answered = emu.counters()["syn_open"] - before
                got = received()
                ns1, runs1 = _run_stats(emu.prog_fd)
                gen1, emu1 = _xdp_tx_stats()
            os.close(stats_fd)
        finally:
            os.close(link)
            lab.peer_pass()
    finally:
        bench.cleanup()
    per_pkt = (ns1 - ns0) / max(runs1 - runs0, 1)
    print(
        f"\nveth flood: {FLOOD:,} SYNs in {sent_s:.3f} s (generator, veths, emulator, sink on one CPU), "
        f"emulator answered {answered:,}, client received {got:,} SYN-ACKs = {got / sent_s:,.0f} SYN-ACK/s"
        f"\nemulator program alone (bpf_stats): {per_pkt:.0f} ns/packet over {runs1 - runs0:,} runs "
        f"= {1e9 / max(per_pkt, 1):,.0f} SYN-ACK/s per CPU"
    )
    # What it prints, accounted for exactly: every SYN the generator's driver took was answered,
    # every SYN-ACK the emulator's driver took was received; the rest are its counted refusals.
    gen_sent, gen_refused = gen1[0] - gen0[0], gen1[1] - gen0[1]
    emu_sent, emu_refused = emu1[0] - emu0[0], emu1[1] - emu0[1]
    assert gen_sent + gen_refused == FLOOD and answered == gen_sent, (gen_sent, gen_refused, answered)
    assert emu_sent + emu_refused == answered and got == emu_sent, (emu_sent, emu_refused, got)
    assert got > FLOOD // 2  # most of it, on a quiet machine all of it
    assert runs1 - runs0 >= answered and per_pkt > 0


# --------------------------------------------------------------------------- the IPv6 sink (bench)
SINK6_PARAMS = EmulatorParams(net=NET, sink=True, sink6="2001:2::/64")


@pytest.fixture(scope="module")
def sink6() -> Iterator[Emulator]:
    yield from _compiled(SINK6_PARAMS)


def _frame6(dst: str, proto: int, body: bytes) -> bytes:
    src, dst_b = (socket.inet_pton(socket.AF_INET6, a) for a in ("2001:2:0:ff00::1", dst))
    ip6 = dpkt.ip6.IP6(src=src, dst=dst_b, nxt=proto, hlim=64, data=body, plen=len(body))
    return T_MAC + C_MAC + b"\x86\xdd" + bytes(ip6)


def _syn6(dst: str) -> bytes:
    tcp = dpkt.tcp.TCP(sport=40000, dport=22, seq=1000, flags=dpkt.tcp.TH_SYN, off=5)
    return _frame6(dst, socket.IPPROTO_TCP, bytes(tcp))


@pytest.mark.parametrize(
    ("f", "ret", "counter"),
    [
        (_syn6("2001:2::1:5"), XDP_DROP, "dropped"),  # the bench's IPv6 SYNs: dropped, counted
        (_syn6("2001:3::5"), XDP_PASS, "passed"),  # outside the /64
        (_frame6("2001:2::1:5", 58, bytes([135, 0, 0, 0]) + bytes(20)), XDP_PASS, "passed"),  # ND
        (frame(dpkt.tcp.TH_SYN), XDP_DROP, "dropped"),  # IPv4 to --net: the sink as before
    ],
    ids=["tcp-in-prefix", "tcp-outside", "neighbour-solicitation", "ipv4-in-net"],
)
def test_the_ipv6_sink_drops_tcp_to_its_prefix_and_passes_the_rest(
    sink6: Emulator, f: bytes, ret: int, counter: str
) -> None:
    before = sink6.counters()
    got, out = sink6.test_run(f)
    assert got == ret and (ret == XDP_DROP or out == f)
    assert delta(before, sink6.counters()) == {counter: 1}
