"""Compile, configure, attach and read the XDP receive program (BCC)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import bpfsys, events, kheaders

BPF_DIR = Path(__file__).resolve().parent.parent / "bpf"


LOG_PATH = "/tmp/zbanner-xdp-bpf.log"


@contextlib.contextmanager
def _stderr_to(path: str) -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError:
        os.close(saved)
        yield
        return
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


KPAYLOAD_MAX = 512


def payload_csum(data: bytes) -> int:
    """Partial ones'-complement sum of a payload as the program adds it (LE 16-bit loads)."""
    if len(data) % 2:
        data += b"\x00"
    words = np.frombuffer(data, dtype="<u2").astype(np.uint64)
    total = int(words.sum())
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


class BpfSetupError(RuntimeError):
    """Anything that stops the program from being built or attached (one-line message)."""


@dataclass(frozen=True)
class ProgParams:
    src_ip: int
    port_lo: int
    port_hi: int
    probes: int = 1
    variants: int = 1
    slots: int = 0  # 0: (port_hi - port_lo + 1) // variants
    icmp_variant: int = -1
    banners: bool = False
    dedup_entries: int = 1 << 20
    dedup_window_s: float = 0.0
    emit_repeats: bool = False
    # Below a server's minimum RTO (200 ms on Linux): anything repeating
    # sooner is a network duplicate, not a retransmission of our lost answer.
    reanswer_s: float = 0.15
    ringbuf_pages: int = 4096  # 16 MiB: ~300k small records
    # 64 MiB: ~60k banners of up to 1 KiB, what a fast emulated target set can
    # produce before the receiver has parsed the first ones.
    banner_pages: int = 16384
    generator: bool = False
    gen_slots: int = 1 << 20
    kernel_replies: bool = False
    ttl: int = 255
    ack_window: int = 1024

    def cflags(self) -> list[str]:
        raw_ip = struct.unpack("<I", struct.pack("!I", self.src_ip))[0]
        return [
            f"-I{BPF_DIR}",
            f"-DZB_SRC_IP_RAW={raw_ip}U",
            f"-DZB_PORT_LO={self.port_lo}",
            f"-DZB_PORT_HI={self.port_hi}",
            f"-DZB_PROBES={max(1, self.probes)}U",
            f"-DZB_VARIANTS={max(1, self.variants)}U",
            f"-DZB_SLOTS={self.slots or (self.port_hi - self.port_lo + 1) // max(1, self.variants)}U",
            f"-DZB_ICMP_VARIANT={self.icmp_variant}",
            f"-DZB_BANNERS={int(self.banners)}",
            f"-DZB_DEDUP_ENTRIES={self.dedup_entries}",
            f"-DZB_DEDUP_WINDOW_NS={int(self.dedup_window_s * 1e9)}ULL",
            f"-DZB_EMIT_REPEATS={int(self.emit_repeats)}",
            f"-DZB_REANSWER_NS={int(self.reanswer_s * 1e9)}ULL",
            f"-DZB_RINGBUF_PAGES={self.ringbuf_pages}",
            f"-DZB_BANNER_PAGES={self.banner_pages}",
            f"-DZB_GENERATOR={int(self.generator)}",
            f"-DZB_GEN_SLOTS={self.gen_slots}",
            f"-DZB_KERNEL_REPLIES={int(self.kernel_replies)}",
            f"-DZB_TTL={self.ttl}",
            f"-DZB_ACK_WINDOW={self.ack_window}",
            *events.bpf_layout_cflags(),
        ]


class RecvProgram:
    """The compiled XDP program and its maps; attach() ties it to an interface."""

    def __init__(
        self,
        params: ProgParams,
        key: bytes,
        probe_infos: list[tuple[int, ...]] | None = None,
        kernel_payloads: list[tuple[bool, bytes] | None] | None = None,
    ):
        try:
            BPF = kheaders.import_bcc()
        except kheaders.HeadersError as exc:
            raise BpfSetupError(str(exc)) from None
        self._BPF = BPF
        self.params = params
        self.link_fd: int | None = None
        self.ifname: str | None = None
        src = (BPF_DIR / "xdp_recv.c").read_text()
        # BCC prints compiler and verifier logs straight to fd 2: keep them
        # in a file so the user gets one line, and the log when asked for.
        with _stderr_to(LOG_PATH):
            try:
                self.bpf = BPF(text=src.encode(), cflags=params.cflags())
                self.fn = self.bpf.load_func(b"xdp_recv", BPF.XDP)
            except Exception as exc:  # bcc raises bare Exception
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise BpfSetupError(f"cannot build the XDP program: {first} (log: {LOG_PATH})") from None
        k0, k1 = struct.unpack("<QQ", key)
        cfg = self.bpf[b"config"]
        leaf = cfg.Leaf()
        leaf.k0, leaf.k1 = k0, k1
        cfg[ctypes.c_int(0)] = leaf
        infos = self.bpf[b"probe_info"]
        for i, info in enumerate(probe_infos or []):
            base, plus_ip, proto, cookie_len, reply_off, *udp = info
            lv = infos.Leaf()
            lv.base, lv.plus_ip_strlen, lv.proto = base, int(plus_ip), proto
            lv.cookie_len, lv.reply_cookie_off = cookie_len, reply_off
            if udp:
                lv.udp_len, lv.udp_tmpl_sum, lv.cookie_off = udp
            infos[ctypes.c_int(i)] = lv
        if params.kernel_replies:
            self._set_kernel_payloads(kernel_payloads or [])
        self._counters = self.bpf[b"counters"]

    def _set_kernel_payloads(self, payloads: list[tuple[bool, bytes] | None]) -> None:
        """Per probe: (handshake, fixed payload) the program answers with, or None (user space does)."""
        table = self.bpf[b"kpayload"]
        for i, item in enumerate(payloads):
            leaf = table.Leaf()
            if item is not None:
                handshake, data = item
                if len(data) > KPAYLOAD_MAX:
                    continue
                leaf.enabled, leaf.len, leaf.handshake = 1, len(data), int(handshake)
                leaf.csum = payload_csum(data)
                ctypes.memmove(ctypes.addressof(leaf.data), data, len(data))
            table[ctypes.c_int(i)] = leaf

    @property
    def prog_fd(self) -> int:
        return self.fn.fd

    def attach(self, ifname: str) -> None:
        try:
            ifindex = socket.if_nametoindex(ifname)
        except OSError:
            raise BpfSetupError(f"unknown interface '{ifname}'") from None
        try:
            self.link_fd = bpfsys.xdp_link_create(self.prog_fd, ifindex)
        except bpfsys.BpfError as exc:
            if exc.errno == 16:  # EBUSY
                raise BpfSetupError(
                    f"interface '{ifname}' already has an XDP program (another scanner running?)"
                ) from None
            raise BpfSetupError(f"cannot attach XDP to '{ifname}': {exc.strerror}") from None
        self.ifname = ifname

    def detach(self) -> None:
        if self.link_fd is not None:
            os.close(self.link_fd)  # the link is the attachment: closing it detaches
            self.link_fd = None

    def counters(self) -> np.ndarray:
        """Counters summed over CPUs, indexed by events.Counter."""
        out = np.zeros(events.N_COUNTERS, dtype=np.uint64)
        for k, v in self._counters.items():
            out[k.value] = sum(int(x) for x in v)
        return out

    def close(self) -> None:
        self.detach()
        try:
            self.bpf.cleanup()
        except Exception:
            pass
