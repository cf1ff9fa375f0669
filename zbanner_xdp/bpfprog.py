"""Build (bpfload: BCC once, then a cache), configure, attach and read the XDP receive program."""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from . import bpfload, bpfsys, cookie, events, kpayload

# The C sources: the package zbanner_xdp.bpf (the repository's bpf/). BCC reads them, and the headers
# through -I, from disk: the package is installed as files, as pip installs it.
BPF_DIR = Path(str(resources.files("zbanner_xdp.bpf")))


LOG_PATH = "/tmp/zbanner-xdp-bpf.log"


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
    # --banner-bytes: every data segment goes up, undeduplicated (bpf/xdp_recv.c, ZB_SEGMENTS).
    segments: bool = False
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
    # > 0: banners of up to SHORT_MAX bytes in a ring of their own (only for one-segment banners:
    # the scanner asks for it without --banner-bytes and multi-connection probes). 32 MiB: ~107k.
    short_pages: int = 0
    generator: bool = False
    gen_slots: int = 1 << 20
    kernel_replies: bool = False
    ttl: int = 255
    ack_window: int = 1024
    # --pcap: bytes of each recorded reply's frame copied (a multiple of 8; 0: no copy, no ring).
    pcap_snap: int = 0
    pcap_pages: int = 16384  # 64 MiB of frames the pcap writer has not written yet
    # 6: an IPv6 scan (src_ip a 128-bit int): the program takes IPv6 frames and records whole
    # addresses (shared.h, ZB_IPV6); IPv4 frames then pass, as IPv6 ones do in an IPv4 scan.
    family: int = 4

    @property
    def dedup_buckets(self) -> int:
        """Buckets of DEDUP_WAYS replies: a power of two holding at least dedup_entries."""
        need = max(1, -(-self.dedup_entries // events.DEDUP_WAYS))
        return 1 << (need - 1).bit_length()

    def _address_flags(self) -> list[str]:
        """Our address as the raw words the program compares with the packet's."""
        if self.family != 6:
            raw_ip = struct.unpack("<I", struct.pack("!I", self.src_ip))[0]
            return [f"-DZB_SRC_IP_RAW={raw_ip}U"]
        words = struct.unpack("<4I", self.src_ip.to_bytes(16, "big"))
        return [
            "-DZB_IPV6=1",
            f"-DZB_SRC_IP_RAW={words[3]}U",
            *(f"-DZB_SRC_IP6_W{i}={w}U" for i, w in enumerate(words)),
        ]

    def cflags(self) -> list[str]:
        return [
            f"-I{BPF_DIR}",
            *self._address_flags(),
            f"-DZB_PORT_LO={self.port_lo}",
            f"-DZB_PORT_HI={self.port_hi}",
            f"-DZB_PROBES={max(1, self.probes)}U",
            f"-DZB_VARIANTS={max(1, self.variants)}U",
            f"-DZB_SLOTS={self.slots or (self.port_hi - self.port_lo + 1) // max(1, self.variants)}U",
            f"-DZB_ICMP_VARIANT={self.icmp_variant}",
            f"-DZB_BANNERS={int(self.banners)}",
            f"-DZB_SEGMENTS={int(self.segments)}",
            f"-DZB_DEDUP_BUCKETS={self.dedup_buckets}",
            f"-DZB_DEDUP_WINDOW_NS={int(self.dedup_window_s * 1e9)}ULL",
            f"-DZB_EMIT_REPEATS={int(self.emit_repeats)}",
            f"-DZB_REANSWER_NS={int(self.reanswer_s * 1e9)}ULL",
            f"-DZB_RINGBUF_PAGES={self.ringbuf_pages}",
            f"-DZB_BANNER_PAGES={self.banner_pages}",
            f"-DZB_SHORT_PAGES={self.short_pages}",
            f"-DZB_GENERATOR={int(self.generator)}",
            f"-DZB_GEN_SLOTS={self.gen_slots}",
            f"-DZB_KERNEL_REPLIES={int(self.kernel_replies)}",
            f"-DZB_TTL={self.ttl}",
            f"-DZB_ACK_WINDOW={self.ack_window}",
            f"-DZB_PCAP_SNAP={self.pcap_snap}",
            f"-DZB_PCAP_PAGES={self.pcap_pages}",
            *events.bpf_check_cflags(self.family),
        ]


class RecvProgram:
    """The compiled XDP program and its maps; attach() ties it to an interface."""

    def __init__(
        self,
        params: ProgParams,
        key: bytes,
        probe_infos: list[dict[str, int]] | None = None,
        kernel_payloads: list[kpayload.KernelPayload | None] | None = None,
    ):
        self.params = params
        self.link_fd: int | None = None
        self.ifname: str | None = None
        progs = ["xdp_recv", "xdp_gen"] if params.generator else ["xdp_recv"]
        try:
            self.obj = bpfload.load(BPF_DIR / "xdp_recv.c", params.cflags(), progs, LOG_PATH)
        except bpfload.LoadError as exc:
            raise BpfSetupError(str(exc)) from None
        except bpfsys.BpfError as exc:
            raise BpfSetupError(f"cannot load the XDP program: {exc.strerror}") from None
        try:
            self._configure(key, probe_infos or [], kernel_payloads or [])
        except BaseException:
            self.obj.close()
            raise

    def _configure(
        self,
        key: bytes,
        probe_infos: list[dict[str, int]],
        kernel_payloads: list[kpayload.KernelPayload | None],
    ) -> None:
        k0, k1 = cookie.key_words(key)
        self.obj.update("config", 0, events.pack(events.CONFIG_DTYPE, k0=k0, k1=k1))
        for i, info in enumerate(probe_infos):
            self.obj.update("probe_info", i, events.pack(events.PROBE_INFO_DTYPE, **info))
        if self.params.kernel_replies:
            self._set_kernel_payloads(kernel_payloads)

    def _set_kernel_payloads(self, payloads: list[kpayload.KernelPayload | None]) -> None:
        """Per probe: the templates the program answers with (kpayload.py), or None (user space does)."""
        for i, item in enumerate(payloads):
            for v, rec in enumerate(kpayload.records(item)):
                self.obj.update("kpayload", i * kpayload.VARIANTS + v, rec)

    def disable_kernel_replies(self) -> None:
        """From the next packet on, the program answers nothing itself (user space does)."""
        off = np.zeros((), dtype=events.KPAYLOAD_DTYPE).tobytes()
        for i in range(self.params.probes * kpayload.VARIANTS):
            self.obj.update("kpayload", i, off)

    @property
    def compiled(self) -> bool:
        """Whether this scan compiled the program (False: loaded from the cache)."""
        return self.obj.compiled

    def map_fd(self, name: str) -> int:
        return self.obj.map_fd(name)

    @property
    def prog_fd(self) -> int:
        return self.obj.prog_fd("xdp_recv")

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

    def counter(self, which: events.Counter) -> int:
        """One counter, summed over CPUs."""
        return sum(int.from_bytes(v, "little") for v in self.obj.lookup_percpu("counters", int(which)))

    def counters(self) -> np.ndarray:
        """Counters summed over CPUs, indexed by events.Counter."""
        out = np.zeros(events.N_COUNTERS, dtype=np.uint64)
        for i in range(events.N_COUNTERS):
            out[i] = sum(int.from_bytes(v, "little") for v in self.obj.lookup_percpu("counters", i))
        return out

    def close(self) -> None:
        self.detach()
        self.obj.close()
