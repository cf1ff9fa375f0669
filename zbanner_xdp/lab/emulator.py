"""A stateless XDP "target emulator" for the target side of a veth lab.

xdp_responder.c answers TCP for a whole address range like a server
stack would (SYN-ACK or RST, then one banner segment), without any
per-connection state. Tests use it to build hosts with exotic behaviour
(zero-window SYN-ACKs, fixed banners, a known share of open ports);
benchmarks use it so they measure the scanner rather than the target's
kernel. What is open is a keyed hash of (ip, port): `is_open()` computes the
same function, so a test knows the ground truth for every target.

Two ways to attach, both to an interface of the *current* network namespace
(enter it first, e.g. `ip netns exec` or setns in a thread):

- default: a bpf_link (like the scanner). It lives exactly as long as the
  Emulator (the process): nothing can be left behind.
- ``persistent=True``: classic netlink attach (BCC's ``BPF.attach_xdp``). It
  survives the process; it goes away with the veth, or through ``detach()``
  / ``python -m zbanner_xdp.lab.emulator --iface X --detach``.

veth quirks (kernel 6.18):

- XDP_TX on a veth hands the frame straight to the *peer's* NAPI queue. With
  no XDP program on the peer every reply is dropped silently: the emulator's
  counters say it answered, only `ethtool -S` on its veth shows
  rx_queue_0_xdp_tx_errors. GRO on the peer, the documented alternative,
  does NOT work here: the frames then reach the peer's queue but are freed
  inside NAPI (kfree_skb, reason NOT_SPECIFIED) before tcpdump or TCP see
  them. What works is an XDP program on the peer, even one that only
  returns XDP_PASS. In the scan namespace the scanner's own program is that;
  for a plain Linux client attach ``PeerPass(peer_ifname)`` in its namespace.
- XDP on a veth runs on the skb's buffer, which has almost no tailroom (about
  10 bytes after a pure ACK) but ~256 bytes of headroom, so a reply longer
  than the received frame grows at the front. The program keeps 32 bytes of
  headroom spare (with under ~50 left, XDP_TX succeeds but the frame never
  arrives at the peer), so a banner can be at most ~180 bytes longer than
  the segment it answers (a bare ACK is 54 bytes); beyond that the frame is
  dropped and counted as no_room. Drivers with page-sized buffers (and
  BPF_PROG_TEST_RUN) grow at the tail and take the full BANNER_MAX.

Run it in a lab namespace::

    ip netns exec zbe-t python -m zbanner_xdp.lab.emulator --iface zbe-t0 \\
        --net 198.18.3.0/24 --window 0 --open-permil 1000 --banner 'SSH-2.0-x\\r\\n'

A canned multi-segment response instead of the banner (for --banner-bytes
scans): ``--response-file FILE`` or ``--response-bytes N`` (a deterministic
text of N bytes, see `canned_response`), in segments of at most
``--segment-bytes`` (default 1460). Still without state: an ACK of byte k
(ack = ISN + 1 + k) gets the segment starting at k, as long as the ACK's
window allows, PSH|FIN on the last one; a segment that does not fit the
frame's buffer is halved until it does (on a veth: ~180 bytes). `segment()`
is the same function in Python::

    ip netns exec zbe-t python -m zbanner_xdp.lab.emulator --iface zbe-t0 \\
        --net 198.18.3.0/24 --response-file tests/data/probes/tls__tls12_certificates.bin

It stays in the foreground until SIGINT/SIGTERM or --seconds, always
detaching, and prints its counters as one JSON line when it ends; with
--persistent it attaches and exits.
"""

from __future__ import annotations

import argparse
import codecs
import ctypes
import errno
import ipaddress
import json
import os
import signal
import socket
import struct
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np

from .. import bpfsys, cchecks, kheaders
from ..bpfload import stderr_to as _stderr_to
from ..bpfprog import BPF_DIR, BpfSetupError
from ..cookie import cookie_scalar, key_words
from ..packets import native_word_sum
from . import netns

LOG_PATH = "/tmp/zbanner-xdp-emulator.log"
SOURCE = Path(__file__).with_name("xdp_responder.c")  # includes cookie.h and parsing.h from BPF_DIR
FUNC = "xdp_responder"

BANNER_MAX = 1024  # ZE_BANNER_MAX: the map value's banner buffer
RESPONSE_MAX = 65536  # ZE_RESP_MAX: the canned response's buffer
SEGMENT_MAX = 1460  # ZE_SEG_MAX: a response segment's largest payload
DEFAULT_BANNER = b"SSH-2.0-zbanner-emulator\r\n"
# In enum ze_counter order (the build asserts it, see _check_flags).
COUNTERS = ("syn_open", "syn_closed", "banner", "dropped", "bad_ack", "passed", "no_room", "segment")

XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX = 0, 1, 2, 3

_M64 = (1 << 64) - 1
# Fixed second key words: one seed yields two unrelated hashes, so the ISN
# says nothing about whether a port is open and vice versa.
_OPEN_TWEAK = 0x7A652D6F70656E21  # "ze-open!"
_ISN_TWEAK = 0x7A652D69736E2121  # "ze-isn!!"


class EmulatorError(BpfSetupError):
    """Anything that stops the emulator from being built, configured or attached (one line)."""


def _open_key(seed: int) -> bytes:
    return struct.pack("<QQ", seed & _M64, _OPEN_TWEAK)


def _isn_key(seed: int) -> bytes:
    return struct.pack("<QQ", seed & _M64, _ISN_TWEAK)


def canned_response(n: int) -> bytes:
    """N deterministic bytes of text, every 32-byte piece numbered by its offset, one line:
    only the last two bytes are CRLF, so a line probe's answer is complete exactly at the end."""
    if n < 1:
        raise EmulatorError(f"response must be 1..{RESPONSE_MAX} bytes, not {n}")
    body = b"".join(b"zbanner-emulator-resp %09d " % off for off in range(0, n + 32, 32))
    return body[: max(0, n - 2)] + b"\r\n"[-min(n, 2) :]


def prefix_sums(data: bytes) -> np.ndarray:
    """psum[i]: the unfolded native 16-bit word sum of data[:i] (odd i: its last byte zero-padded),
    as the response map holds it; a segment's sum is psum[k + n] - psum[k], see segment_sum()."""
    padded = data + b"\0" * (len(data) % 2)
    words = np.frombuffer(padded, dtype="=u2").astype(np.uint64)
    full = np.concatenate(([0], np.cumsum(words)))  # full[j]: the first j words
    out = np.empty(len(data) + 1, np.uint64)
    out[0::2] = full[: len(data) // 2 + 1]
    odd = np.arange(1, len(data) + 1, 2)
    if len(odd):
        last = np.frombuffer(bytes(x for b in data[0::2] for x in (b, 0)), dtype="=u2")
        out[1::2] = full[(odd - 1) // 2] + last[: len(odd)]
    return out.astype(np.uint32)


def _fold16(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def segment_sum(psum: np.ndarray, k: int, n: int) -> int:
    """The folded native word sum of data[k:k+n] placed at an even offset (xdp_responder.c's)."""
    part = _fold16(int(psum[k + n]) - int(psum[k]))
    return ((part & 0xFF) << 8) | (part >> 8) if k & 1 else part


def segment(response: bytes, ack_k: int, window: int, seg: int) -> tuple[bytes, bool] | None:
    """The emulator's answer to an ACK of ack_k bytes: (payload, FIN), or None for none.

    Before halving for room (a veth): the program may send a shorter prefix of this payload."""
    if ack_k >= len(response) or window <= 0:
        return None
    data = response[ack_k : ack_k + min(seg, window)]
    return data, ack_k + len(data) == len(response)


def is_open(ip: int, port: int, open_permil: int, seed: int) -> bool:
    """Whether the emulator treats ip:port (host-order ints) as open, ignoring any port list."""
    if open_permil >= 1000:
        return True
    if open_permil <= 0:
        return False
    return cookie_scalar(_open_key(seed), ip, 0, port, 0) % 1000 < open_permil


def isn(seed: int, our_ip: int, their_ip: int, our_port: int, their_port: int) -> int:
    """The SYN-ACK sequence number the emulated host our_ip:our_port sends to their_ip:their_port."""
    return cookie_scalar(_isn_key(seed), our_ip, their_ip, our_port, their_port)


@dataclass(frozen=True)
class EmulatorParams:
    net: str = "198.18.0.0/15"
    open_permil: int = 1000
    window: int = 65535
    banner: bytes = DEFAULT_BANNER
    ports: frozenset[int] | None = None  # None: every port may be open
    server_first: bool = False
    sink: bool = False  # drop everything to the range: a silent network that counts arrivals
    mss: int = 1460  # 0: SYN-ACKs without options
    seed: int = 0
    response: bytes | None = None  # a canned response in segments instead of the banner
    segment: int = SEGMENT_MAX  # a response segment's largest payload
    sink6: str | None = None  # with sink: an IPv6 prefix (/64 or shorter) whose TCP is dropped, counted

    def __post_init__(self) -> None:
        if self.sink6 is not None:
            try:
                net6 = ipaddress.IPv6Network(self.sink6, strict=False)
            except ValueError as exc:
                raise EmulatorError(f"invalid IPv6 range '{self.sink6}': {exc}") from None
            if not self.sink or net6.prefixlen > 64:
                raise EmulatorError("--sink6: with --sink, a /64 or shorter")
        try:
            ipaddress.IPv4Network(self.net, strict=False)
        except ValueError as exc:
            raise EmulatorError(f"invalid IPv4 range '{self.net}': {exc}") from None
        if not 0 <= self.open_permil <= 1000:
            raise EmulatorError(f"open permil must be 0..1000, not {self.open_permil}")
        if not 0 <= self.window <= 65535:
            raise EmulatorError(f"window must be 0..65535, not {self.window}")
        if not 0 <= self.mss <= 65535:
            raise EmulatorError(f"MSS must be 0..65535, not {self.mss}")
        if len(self.banner) > BANNER_MAX:
            raise EmulatorError(f"banner is {len(self.banner)} bytes, at most {BANNER_MAX} fit")
        if self.ports is not None and any(not 0 <= p <= 65535 for p in self.ports):
            raise EmulatorError("ports must be 0..65535")
        if self.response is not None and not 1 <= len(self.response) <= RESPONSE_MAX:
            raise EmulatorError(f"response is {len(self.response)} bytes, it must be 1..{RESPONSE_MAX}")
        if not 1 <= self.segment <= SEGMENT_MAX:
            raise EmulatorError(f"segment bytes must be 1..{SEGMENT_MAX}, not {self.segment}")

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.net, strict=False)

    def is_open(self, ip: int, port: int) -> bool:
        """The ground truth for ip:port, port list included."""
        if self.ports is not None and port not in self.ports:
            return False
        return is_open(ip, port, self.open_permil, self.seed)

    def isn(self, our_ip: int, their_ip: int, our_port: int, their_port: int) -> int:
        return isn(self.seed, our_ip, their_ip, our_port, their_port)

    def _sink6_flags(self) -> list[str]:
        if self.sink6 is None:
            return ["-DZE_SINK6=0"]
        net6 = ipaddress.IPv6Network(self.sink6, strict=False)
        # The first 8 bytes of the destination, loaded as a native integer, as the C side compares them.
        hi = int.from_bytes(net6.network_address.packed[:8], sys.byteorder)
        mask = int.from_bytes(net6.netmask.packed[:8], sys.byteorder)
        return ["-DZE_SINK6=1", f"-DZE_NET6_RAW={hi}ULL", f"-DZE_MASK6_RAW={mask}ULL"]

    def cflags(self) -> list[str]:
        def raw(word: int) -> int:
            # The packet's bytes loaded as a native integer, as the C side compares them.
            return struct.unpack("=I", struct.pack("!I", word))[0]

        network = self.network
        return [
            f"-I{BPF_DIR}",
            f"-DZE_NET_RAW={raw(int(network.network_address))}U",
            f"-DZE_MASK_RAW={raw(int(network.netmask))}U",
            f"-DZE_OPEN_PERMIL={self.open_permil}",
            f"-DZE_PORT_FILTER={int(self.ports is not None)}",
            f"-DZE_WINDOW={self.window}",
            f"-DZE_MSS={self.mss}",
            f"-DZE_SERVER_FIRST={int(self.server_first)}",
            f"-DZE_SINK={int(self.sink)}",
            *self._sink6_flags(),
            f"-DZE_RESPONSE={int(self.response is not None)}",
            f"-DZE_SEG={self.segment}",
            *_check_flags(),
        ]


def _check_flags() -> list[str]:
    """-DZE_CHECKS: xdp_responder.c asserts BANNER_MAX and COUNTERS are its own."""
    expected = {"ZE_BANNER_MAX": BANNER_MAX, "ZE_CNT_MAX": len(COUNTERS)}
    expected |= {"ZE_RESP_MAX": RESPONSE_MAX, "ZE_SEG_MAX": SEGMENT_MAX}
    expected |= {f"ZE_CNT_{name.upper()}": i for i, name in enumerate(COUNTERS)}
    return [cchecks.define("ZE_CHECKS", cchecks.values(expected, "emulator.py"))]


def _thread_netns_fd() -> int:
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def _load_bcc() -> type:
    try:
        return kheaders.import_bcc()
    except kheaders.HeadersError as exc:
        raise EmulatorError(str(exc)) from None


def remove_persistent(ifname: str) -> None:
    """Remove a netlink-attached XDP program from ifname (current namespace).

    A bpf_link attachment (a running scanner or foreground emulator) cannot be
    removed this way: the kernel answers EBUSY, which protects it.
    """
    bpf_cls = _load_bcc()
    try:
        socket.if_nametoindex(ifname)
    except OSError:
        raise EmulatorError(f"unknown interface '{ifname}'") from None
    with _stderr_to(LOG_PATH):
        try:
            bpf_cls.remove_xdp(ifname.encode(), 0)
        except Exception:  # bcc raises bare Exception; libbcc left the errno
            err = ctypes.get_errno()
            hint = " (attached through a bpf_link: stop its owner instead)" if err == errno.EBUSY else ""
            raise EmulatorError(f"cannot remove XDP from '{ifname}': {os.strerror(err)}{hint}") from None


_PASS_SRC = "int xdp_pass(struct xdp_md *ctx) { return XDP_PASS; }"


class PeerPass:
    """A do-nothing XDP program on the emulator's veth peer, so that XDP_TX frames reach it.

    See the module docstring: without an XDP program there the peer never
    receives them. Attached through a bpf_link in the current namespace; it
    goes with close() or the process.
    """

    def __init__(self, ifname: str) -> None:
        bpf_cls = _load_bcc()
        try:
            ifindex = socket.if_nametoindex(ifname)
        except OSError:
            raise EmulatorError(f"unknown interface '{ifname}'") from None
        with _stderr_to(LOG_PATH):
            try:
                self.bpf = bpf_cls(text=_PASS_SRC.encode())
                fn = self.bpf.load_func(b"xdp_pass", bpf_cls.XDP)
            except Exception as exc:  # bcc raises bare Exception
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise EmulatorError(f"cannot build the pass program: {first} (log: {LOG_PATH})") from None
        try:
            self._link_fd: int | None = bpfsys.xdp_link_create(fn.fd, ifindex)
        except bpfsys.BpfError as exc:
            self.bpf.cleanup()
            raise EmulatorError(f"cannot attach XDP to '{ifname}': {exc.strerror}") from None
        self.ifname = ifname

    def close(self) -> None:
        if self._link_fd is not None:
            os.close(self._link_fd)
            self._link_fd = None
            self.bpf.cleanup()

    def __enter__(self) -> PeerPass:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Emulator:
    """The compiled responder and its maps; attach() ties it to an interface."""

    def __init__(self, params: EmulatorParams) -> None:
        bpf_cls = _load_bcc()
        self._BPF = bpf_cls
        self.params = params
        self.ifname: str | None = None
        self.persistent = False
        self._link_fd: int | None = None
        self._netns_fd: int | None = None
        # BCC prints compiler and verifier logs straight to fd 2: keep them in
        # a file so a failure is one line, with the log a path away.
        with _stderr_to(LOG_PATH):
            try:
                self.bpf = bpf_cls(text=SOURCE.read_bytes(), cflags=params.cflags())
                self.fn = self.bpf.load_func(FUNC.encode(), bpf_cls.XDP)
            except Exception as exc:  # bcc raises bare Exception
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise EmulatorError(f"cannot build the emulator: {first} (log: {LOG_PATH})") from None
        self._write_config()
        self._counters = self.bpf[b"counters"]

    def _write_config(self) -> None:
        p = self.params
        cfg = self.bpf[b"config"]
        leaf = cfg.Leaf()
        leaf.open_k0, leaf.open_k1 = key_words(_open_key(p.seed))
        leaf.isn_k0, leaf.isn_k1 = key_words(_isn_key(p.seed))
        leaf.banner_len = len(p.banner)
        leaf.banner_csum = native_word_sum(p.banner)
        ctypes.memmove(leaf.banner, p.banner, len(p.banner))
        cfg[ctypes.c_int(0)] = leaf
        if p.ports is not None:
            ports = self.bpf[b"ports"]
            bits = ports.Leaf()
            for port in p.ports:
                bits.bits[port >> 3] |= 1 << (port & 7)
            ports[ctypes.c_int(0)] = bits
        if p.response is not None:
            resp = self.bpf[b"response"]
            value = resp.Leaf()
            value.len = len(p.response)
            psum = prefix_sums(p.response)
            ctypes.memmove(value.psum, psum.ctypes.data, psum.nbytes)
            ctypes.memmove(value.bytes, p.response, len(p.response))
            resp[ctypes.c_int(0)] = value

    @property
    def prog_fd(self) -> int:
        return self.fn.fd

    def attach(self, ifname: str, persistent: bool = False) -> None:
        """Attach to `ifname` in the calling thread's network namespace."""
        if self.ifname is not None:
            raise EmulatorError(f"already attached to '{self.ifname}'")
        try:
            ifindex = socket.if_nametoindex(ifname)
        except OSError:
            raise EmulatorError(f"unknown interface '{ifname}'") from None
        if persistent:
            with _stderr_to(LOG_PATH):
                try:
                    # UPDATE_IF_NOEXIST: never silently replace someone else's program.
                    self._BPF.attach_xdp(ifname.encode(), self.fn, XDP_FLAGS_UPDATE_IF_NOEXIST)
                except Exception:  # bcc raises bare Exception; libbcc left the errno
                    err = ctypes.get_errno()
                    if err == errno.EBUSY:
                        raise EmulatorError(f"interface '{ifname}' already has an XDP program") from None
                    raise EmulatorError(f"cannot attach XDP to '{ifname}': {os.strerror(err)}") from None
        else:
            try:
                self._link_fd = bpfsys.xdp_link_create(self.prog_fd, ifindex)
            except bpfsys.BpfError as exc:
                if exc.errno == errno.EBUSY:
                    raise EmulatorError(f"interface '{ifname}' already has an XDP program") from None
                raise EmulatorError(f"cannot attach XDP to '{ifname}': {exc.strerror}") from None
        # Remembered so detach() finds the interface from any namespace.
        self._netns_fd = _thread_netns_fd()
        self.ifname = ifname
        self.persistent = persistent

    def detach(self) -> None:
        """Remove our attachment (link or persistent); a no-op when not attached."""
        try:
            if self._link_fd is not None:
                os.close(self._link_fd)  # the link is the attachment: closing it detaches
            elif self.persistent and self.ifname is not None and self._netns_fd is not None:
                ifname = self.ifname

                def remove() -> None:
                    # The veth may be gone already, taking the program with it.
                    try:
                        socket.if_nametoindex(ifname)
                    except OSError:
                        return
                    self._BPF.remove_xdp(ifname.encode(), 0)

                netns.run_in(self._netns_fd, remove)
        finally:
            self._link_fd = None
            if self._netns_fd is not None:
                os.close(self._netns_fd)
                self._netns_fd = None
            self.ifname = None
            self.persistent = False

    def counters(self) -> dict[str, int]:
        """Outcome counters summed over CPUs."""
        out = dict.fromkeys(COUNTERS, 0)
        for k, v in self._counters.items():
            if k.value < len(COUNTERS):
                out[COUNTERS[k.value]] = sum(int(x) for x in v)
        return out

    def test_run(self, frame: bytes) -> tuple[int, bytes]:
        """Run the program once on `frame` (BPF_PROG_TEST_RUN): (XDP action, output frame)."""
        return bpfsys.prog_test_run(self.prog_fd, frame)

    def close(self) -> None:
        """Release the program; a link attachment goes with it, a persistent one stays
        (call detach() first to remove that too)."""
        if self._link_fd is not None:
            self.detach()
        elif self._netns_fd is not None:
            os.close(self._netns_fd)
            self._netns_fd = None
        try:
            self.bpf.cleanup()
        except Exception:  # bcc raises bare Exception; nothing left to do about it
            pass

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- CLI


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, as for every other error.
        print(f"emulator: {message}", file=sys.stderr)
        raise SystemExit(2)


def _ports(text: str) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid port list '{text}'") from None
        if not 0 <= a <= b <= 65535:
            raise argparse.ArgumentTypeError(f"invalid port range '{part}'")
        out.update(range(a, b + 1))
    return frozenset(out)


def _banner(text: str) -> bytes:
    # Escapes as in a Python bytes literal ('\r\n', '\x00'), so banners fit a shell argument.
    try:
        return codecs.escape_decode(text.encode("utf-8"))[0]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid banner escape: {exc}") from None


def _response_file(text: str) -> bytes:
    try:
        data = Path(text).read_bytes()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read response file '{text}': {exc.strerror}") from None
    if not 1 <= len(data) <= RESPONSE_MAX:
        size = len(data)
        raise argparse.ArgumentTypeError(f"response file '{text}' is {size} bytes, must be 1..{RESPONSE_MAX}")
    return data


def _int_in(text: str, what: str, top: int) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid {what} '{text}'") from None
    if not 1 <= n <= top:
        raise argparse.ArgumentTypeError(f"{what} must be 1..{top}, not {n}")
    return n


def _response_bytes(text: str) -> bytes:
    return canned_response(_int_in(text, "response size", RESPONSE_MAX))


def _segment_bytes(text: str) -> int:
    return _int_in(text, "segment size", SEGMENT_MAX)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m zbanner_xdp.lab.emulator", description="Stateless XDP TCP target emulator.")
    p.add_argument("--iface", required=True, help="interface in the current network namespace")
    p.add_argument("--net", default="198.18.0.0/15", help="IPv4 range to answer for (default %(default)s)")
    p.add_argument("--open-permil", type=int, default=1000, help="share of ip:port open, 0..1000")
    p.add_argument("--ports", type=_ports, default=None, help="only these ports may be open: 22,80,8000-8080")
    p.add_argument("--window", type=int, default=65535, help="SYN-ACK window (0: zero-window host)")
    p.add_argument("--mss", type=int, default=1460, help="SYN-ACK MSS option (0: none)")
    p.add_argument("--banner", type=_banner, default=DEFAULT_BANNER, help=r"banner, escapes allowed: 'x\r\n'")
    p.add_argument("--server-first", action="store_true", help="send the banner right after the handshake")
    p.add_argument("--sink", action="store_true", help="answer nothing: drop and count every frame to --net")
    p.add_argument(
        "--sink6", default=None, help="with --sink: drop and count TCP to this IPv6 /64 (or shorter) too"
    )
    resp = p.add_mutually_exclusive_group()
    resp.add_argument(
        "--response-file", dest="response", type=_response_file, default=None,
        help="answer with this file's bytes, in segments, instead of the banner",
    )  # fmt: skip
    resp.add_argument(
        "--response-bytes", dest="response", type=_response_bytes, default=None,
        help="answer with N canned bytes of text, in segments, instead of the banner",
    )  # fmt: skip
    p.add_argument(
        "--segment-bytes", type=_segment_bytes, default=SEGMENT_MAX,
        help="a response segment's largest payload (default %(default)s)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="key of the open/closed hash and the ISNs")
    p.add_argument("--persistent", action="store_true", help="attach through netlink and exit")
    p.add_argument("--detach", action="store_true", help="remove a persistent emulator from --iface")
    p.add_argument("--seconds", type=float, default=None, help="run this long (default: until a signal)")
    return p


def _serve(emu: Emulator, seconds: float | None) -> None:
    stop = threading.Event()

    def on_signal(_sig: int, _frame: object) -> None:
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop.wait(seconds)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        try:
            socket.if_nametoindex(args.iface)  # fail before the slow compile
        except OSError:
            raise EmulatorError(f"unknown interface '{args.iface}'") from None
        if args.detach:
            remove_persistent(args.iface)
            return 0
        params = EmulatorParams(
            net=args.net,
            open_permil=args.open_permil,
            window=args.window,
            banner=args.banner,
            ports=args.ports,
            server_first=args.server_first,
            sink=args.sink,
            sink6=args.sink6,
            mss=args.mss,
            seed=args.seed,
            response=args.response,
            segment=args.segment_bytes,
        )
        emu = Emulator(params)
        try:
            emu.attach(args.iface, persistent=args.persistent)
            what = "persistently attached" if args.persistent else "attached"
            print(f"emulator {what} to {args.iface}: {params.network}", file=sys.stderr, flush=True)
            if args.persistent:
                return 0
            try:
                _serve(emu, args.seconds)
            finally:
                emu.detach()
            print(json.dumps(emu.counters()), flush=True)
        finally:
            emu.close()
    except EmulatorError as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
