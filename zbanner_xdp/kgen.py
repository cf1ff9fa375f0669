"""Kernel-side SYN generator (--tx xdp).

Python still walks the permutation, but only writes (address, port,
variant) into an mmapped BPF array; the XDP program — the very receive
program attached to the scan interface, which is what keeps
BPF_PROG_TEST_RUN cheap (see MEASURED.md: a program not attached natively
somewhere pays an RCU grace period, ~20 ms, per call) — computes the port
slot and cookie, patches a template SYN and transmits it with XDP_TX in
live-frame mode. No frame is built in Python and no per-packet syscall is
made.
"""

from __future__ import annotations

import ctypes
import mmap
import socket
import struct

import numpy as np

from . import bpfsys, packets

GEN_ETHERTYPE = 0x88B5
TARGET_DTYPE = np.dtype([("daddr_raw", "<u4"), ("dport_raw", "<u2"), ("variant", "u1"), ("pad", "u1")])


class KernelGenError(RuntimeError):
    pass


class KernelGenerator:
    def __init__(self, bpf: object, prog_fd: int, ifname: str, link: packets.LinkParams, slots: int):
        self.slots = slots
        tmap = bpf[b"gen_targets"]  # type: ignore[index]
        size = slots * TARGET_DTYPE.itemsize
        size = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
        self._mm = mmap.mmap(tmap.map_fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.targets = np.frombuffer(self._mm, dtype=TARGET_DTYPE, count=slots)
        self._state = bpf[b"gen_state"]  # type: ignore[index]
        self.written = 0
        # The template: a SYN from us to nobody, its ethertype marking it for
        # the generator path (the program rewrites it to IPv4).
        frames, lens = packets.syn_frames(
            link, np.zeros(1, np.uint32), np.zeros(1), np.zeros(1), np.zeros(1, np.uint32)
        )
        frame = bytearray(frames[0, : lens[0]].tobytes())
        frame[12:14] = struct.pack("!H", GEN_ETHERTYPE)
        self.frame = bytes(frame)
        self._set_state(0, 0)
        self.runner = bpfsys.LiveRunner(prog_fd, self.frame, socket.if_nametoindex(ifname))

    def _set_state(self, nxt: int, end: int) -> None:
        leaf = self._state.Leaf()
        leaf.next, leaf.end, leaf.sent = nxt, end, 0
        self._state[ctypes.c_int(0)] = leaf

    def probe(self) -> None:
        """One empty run: fails fast where live frames are unsupported."""
        try:
            self.runner.run(1)
        except bpfsys.BpfError as exc:
            raise KernelGenError(f"live-frame BPF_PROG_TEST_RUN unavailable: {exc.strerror}") from None

    def send(self, addrs: np.ndarray, ports: np.ndarray, variants: np.ndarray | int) -> int:
        """Transmit one SYN per (address, port); returns how many the program sent."""
        n = len(addrs)
        if n == 0:
            return 0
        if n > self.slots:
            raise KernelGenError("batch larger than the generator's target ring")
        base = self.written
        idx = (base + np.arange(n)) % self.slots
        t = self.targets
        t["daddr_raw"][idx] = addrs.astype(np.uint32).byteswap()
        t["dport_raw"][idx] = ports.astype(np.uint16).byteswap()
        t["variant"][idx] = variants
        self._set_state(base, base + n)
        self.runner.run(n)
        self.written = base + n
        return int(self._state[ctypes.c_int(0)].sent)

    def close(self) -> None:
        self.targets = None  # type: ignore[assignment]
        try:
            self._mm.close()
        except BufferError:
            pass


def xdp_xmit_stats(ifname: str) -> tuple[int, int] | None:
    """(frames, errors) the driver reports for XDP transmits, where it reports them."""
    import subprocess

    try:
        out = subprocess.run(["ethtool", "-S", ifname], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    sent = errs = 0
    found = False
    for line in out.splitlines():
        name, _, value = line.strip().partition(":")
        if name.endswith("_xdp_xmit") or name.endswith("_xdp_xmit_errors"):
            found = True
            try:
                v = int(value)
            except ValueError:
                continue
            if name.endswith("_errors"):
                errs += v
            else:
                sent += v
    return (sent, errs) if found else None
