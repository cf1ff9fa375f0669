"""The few bpf(2) commands BCC's Python API lacks, through ctypes.

- BPF_LINK_CREATE for XDP: the attachment lives as long as the link fd, i.e.
  as long as our process. Even a SIGKILLed scanner leaves nothing attached,
  and a second scanner on the same interface gets EBUSY instead of silently
  replacing the first (netlink attach would do both wrong).
- BPF_PROG_TEST_RUN: run the XDP program on hand-made frames (tests, and the
  kernel-side generator later).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "riscv64": 280, "ppc64le": 361, "s390x": 351}

BPF_PROG_TEST_RUN = 10
BPF_LINK_CREATE = 28
BPF_XDP = 37  # enum bpf_attach_type
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class BpfError(OSError):
    pass


def _bpf(cmd: int, attr: ctypes.Structure) -> int:
    nr = _SYS_BPF.get(platform.machine())
    if nr is None:
        raise BpfError(0, f"unsupported architecture {platform.machine()}")
    ret = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), ctypes.byref(attr), ctypes.sizeof(attr))
    if ret < 0:
        err = ctypes.get_errno()
        raise BpfError(err, os.strerror(err))
    return ret


class _LinkCreateAttr(ctypes.Structure):
    _fields_ = [
        ("prog_fd", ctypes.c_uint32),
        ("target_ifindex", ctypes.c_uint32),
        ("attach_type", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("_rest", ctypes.c_uint8 * 48),
    ]


def xdp_link_create(prog_fd: int, ifindex: int, flags: int = 0) -> int:
    """Attach an XDP program through a bpf_link; returns the link fd."""
    attr = _LinkCreateAttr(prog_fd=prog_fd, target_ifindex=ifindex, attach_type=BPF_XDP, flags=flags)
    return _bpf(BPF_LINK_CREATE, attr)


class _TestRunAttr(ctypes.Structure):
    _fields_ = [
        ("prog_fd", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("data_in", ctypes.c_uint64),
        ("data_out", ctypes.c_uint64),
        ("repeat", ctypes.c_uint32),
        ("duration", ctypes.c_uint32),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_uint64),
        ("ctx_out", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    ]


def prog_test_run(prog_fd: int, frame: bytes, repeat: int = 1) -> tuple[int, bytes]:
    """Run a program once on `frame`; returns (XDP action, output frame)."""
    inbuf = ctypes.create_string_buffer(frame, len(frame))
    outbuf = ctypes.create_string_buffer(len(frame) + 512)
    attr = _TestRunAttr(
        prog_fd=prog_fd,
        data_size_in=len(frame),
        data_size_out=len(outbuf),
        data_in=ctypes.addressof(inbuf),
        data_out=ctypes.addressof(outbuf),
        repeat=repeat,
    )
    _bpf(BPF_PROG_TEST_RUN, attr)
    return attr.retval, outbuf.raw[: attr.data_size_out]


BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1


class _XdpMd(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_uint32),
        ("data_end", ctypes.c_uint32),
        ("data_meta", ctypes.c_uint32),
        ("ingress_ifindex", ctypes.c_uint32),
        ("rx_queue_index", ctypes.c_uint32),
        ("egress_ifindex", ctypes.c_uint32),
    ]


class LiveRunner:
    """Runs an XDP program `repeat` times over one frame in live-frame mode.

    Every run gets a fresh copy of the frame, and XDP_TX really transmits on
    `ifindex` (kernel >= 5.18). Buffers are built once: a call is one
    syscall, which releases the GIL while the kernel works.
    """

    def __init__(self, prog_fd: int, frame: bytes, ifindex: int, batch_size: int = 256):
        self._in = ctypes.create_string_buffer(frame, len(frame))
        self._ctx = _XdpMd(data=0, data_end=len(frame), ingress_ifindex=ifindex)
        self._attr = _TestRunAttr(
            prog_fd=prog_fd,
            data_size_in=len(frame),
            data_in=ctypes.addressof(self._in),
            ctx_size_in=ctypes.sizeof(self._ctx),
            ctx_in=ctypes.addressof(self._ctx),
            flags=BPF_F_TEST_XDP_LIVE_FRAMES,
            batch_size=batch_size,
        )

    def run(self, repeat: int) -> None:
        self._attr.repeat = repeat
        _bpf(BPF_PROG_TEST_RUN, self._attr)
