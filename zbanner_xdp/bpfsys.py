"""The few bpf(2) commands BCC's Python API lacks, through ctypes.

- BPF_LINK_CREATE for XDP: the attachment lives as long as the link fd, i.e.
  as long as our process. Even a SIGKILLed scanner leaves nothing attached,
  and a second scanner on the same interface gets EBUSY instead of silently
  replacing the first (netlink attach would do both wrong).
- BPF_PROG_TEST_RUN: run the XDP program on hand-made frames (tests, and the
  kernel-side generator).
- BPF_MAP_CREATE, BPF_PROG_LOAD, element lookup/update and map info: enough to
  load a cached, already compiled program (bpfload.py) without BCC.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import struct

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "riscv64": 280, "ppc64le": 361, "s390x": 351}

BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_PROG_LOAD = 5
BPF_PROG_TEST_RUN = 10
BPF_PROG_GET_NEXT_ID = 11
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_TYPE_XDP = 6
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
    outbuf = ctypes.create_string_buffer(len(frame) + 2048)  # room for a reply grown by a whole segment
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
        self.ifindex = ifindex
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


class _MapCreateAttr(ctypes.Structure):
    _fields_ = [
        ("map_type", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("inner_map_fd", ctypes.c_uint32),
        ("numa_node", ctypes.c_uint32),
        ("map_name", ctypes.c_char * 16),
        ("_rest", ctypes.c_uint8 * 40),
    ]


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int, flags: int, name: str) -> int:
    attr = _MapCreateAttr(
        map_type=map_type,
        key_size=key_size,
        value_size=value_size,
        max_entries=max_entries,
        map_flags=flags,
        map_name=name.encode()[:15],
    )
    return _bpf(BPF_MAP_CREATE, attr)


class _ElemAttr(ctypes.Structure):
    _fields_ = [
        ("map_fd", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("key", ctypes.c_uint64),
        ("value", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    ]


def map_lookup(fd: int, key: bytes, value_size: int) -> bytes:
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value_size)
    _bpf(BPF_MAP_LOOKUP_ELEM, _ElemAttr(map_fd=fd, key=ctypes.addressof(k), value=ctypes.addressof(v)))
    return v.raw


def map_update(fd: int, key: bytes, value: bytes) -> None:
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value, len(value))
    _bpf(BPF_MAP_UPDATE_ELEM, _ElemAttr(map_fd=fd, key=ctypes.addressof(k), value=ctypes.addressof(v)))


class _ProgLoadAttr(ctypes.Structure):
    _fields_ = [
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
        ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_name", ctypes.c_char * 16),
        ("_rest", ctypes.c_uint8 * 64),
    ]


def prog_load(
    prog_type: int, insns: bytes, license: str, name: str, kern_version: int = 0
) -> tuple[int, str]:
    """Load a program; returns (fd, "") or (-1, the verifier's log)."""
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    attr = _ProgLoadAttr(
        prog_type=prog_type,
        insn_cnt=len(insns) // 8,
        insns=ctypes.addressof(code),
        license=ctypes.addressof(lic),
        kern_version=kern_version,
        prog_name=name.encode()[:15],
    )
    try:
        return _bpf(BPF_PROG_LOAD, attr), ""
    except BpfError as exc:
        # Again, with the verifier's log: the one-line error points at it.
        log = ctypes.create_string_buffer(1 << 20)
        attr.log_level, attr.log_size, attr.log_buf = 1, len(log), ctypes.addressof(log)
        try:
            return _bpf(BPF_PROG_LOAD, attr), ""
        except BpfError:
            return -1, f"{exc.strerror}\n{log.value.decode(errors='replace')}"


class _InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


class MapInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * 16),
    ]


def map_info(fd: int) -> MapInfo:
    info = MapInfo()
    _bpf(
        BPF_OBJ_GET_INFO_BY_FD,
        _InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info)),
    )
    return info


class _GetByIdAttr(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32), ("open_flags", ctypes.c_uint32)]


def prog_fd_by_id(prog_id: int) -> int:
    return _bpf(BPF_PROG_GET_FD_BY_ID, _GetByIdAttr(id=prog_id))


_PROG_INFO_NAME = 64  # struct bpf_prog_info: offset of name[16] (BPF_OBJ_NAME_LEN)


def prog_name(fd: int) -> str:
    """A loaded program's name (the first 15 bytes of what it was loaded with)."""
    buf = ctypes.create_string_buffer(_PROG_INFO_NAME + 16)
    _bpf(BPF_OBJ_GET_INFO_BY_FD, _InfoAttr(bpf_fd=fd, info_len=len(buf), info=ctypes.addressof(buf)))
    return buf.raw[_PROG_INFO_NAME : _PROG_INFO_NAME + 16].split(b"\0", 1)[0].decode(errors="replace")


# struct bpf_prog_info: offsets of run_time_ns and run_cnt (both __u64), counted only while
# kernel.bpf_stats_enabled is 1.
_PROG_INFO_RUN_TIME = 192
_PROG_INFO_SIZE = 224


def prog_ids() -> list[int]:
    """The ids of every loaded BPF program."""
    ids, cur = [], 0
    while True:
        attr = _GetByIdAttr(id=cur)
        try:
            _bpf(BPF_PROG_GET_NEXT_ID, attr)
        except BpfError:
            return ids  # ENOENT: no more
        cur = attr.next_id
        ids.append(cur)


def prog_stats(fd: int) -> tuple[str, int, int]:
    """(name, run_time_ns, run_cnt) of a loaded program."""
    buf = ctypes.create_string_buffer(_PROG_INFO_SIZE)
    _bpf(BPF_OBJ_GET_INFO_BY_FD, _InfoAttr(bpf_fd=fd, info_len=len(buf), info=ctypes.addressof(buf)))
    name = buf.raw[_PROG_INFO_NAME : _PROG_INFO_NAME + 16].split(b"\0", 1)[0].decode(errors="replace")
    run_ns, runs = struct.unpack_from("<QQ", buf.raw, _PROG_INFO_RUN_TIME)
    return name, run_ns, runs


def possible_cpus() -> int:
    """What per-CPU maps are sized by (possible, not online, CPUs)."""
    try:
        with open("/sys/devices/system/cpu/possible") as fh:
            text = fh.read().strip()
    except OSError:
        return os.cpu_count() or 1
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n
