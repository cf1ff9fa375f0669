"""--pcap FILE: every reply the scanner records, as a classic pcap (link type Ethernet).

What "headers intact" means here: the frames are the frames as they arrived,
not rebuilt. A record (zb_event) keeps only some header fields (no options,
no MACs, no checksums, no ICMP quotation, at most 1,024 bytes of data), so
rebuilding frames from records would invent what it does not know. Instead,
with --pcap the XDP program (compiled with ZB_PCAP_SNAP) copies the first
`--pcap-snaplen` bytes of every reply it records into a ring of its own,
right after deciding to record it and before anything could rewrite the
frame; this thread writes them as they come. A frame longer than the snap
length is cut there, as tcpdump -s cuts it (the record says its length).

Exactly the replies that make records: first replies (repeats too with
--output-repeats), not the FINs the program reports only for multi-connection
probes' steps; but also those user space then folds into one record (the
answers to a multi-connection probe's steps) or rejects (an ICMP error whose
quoted UDP checksum is forged): the pcap shows what came, the records what it
meant. Not with --kernel-replies: the program rewrites a SYN-ACK into
its answer before recording it. A frame the ring has no room for is counted
(metadata `pcap.lost`), never silently gone.
"""

from __future__ import annotations

import mmap
import os
import select
import struct
import threading
import time
from typing import Any

import numpy as np

from .output import OutputError, check_path, open_locked
from .receiver import MmapRing

LINKTYPE_ETHERNET = 1
PCAP_MAGIC = 0xA1B2C3D4  # microsecond timestamps: what every reader takes
DEFAULT_SNAPLEN = 1514  # a whole standard Ethernet frame
MAX_SNAPLEN = 9216  # a jumbo frame
MIN_SNAPLEN = 64
_REC_HDR = np.dtype([("sec", "<u4"), ("usec", "<u4"), ("caplen", "<u4"), ("len", "<u4")])


def snap_bytes(snaplen: int) -> int:
    """The bytes the program copies: the snap length rounded up to 8 (ring records stay aligned)."""
    return (snaplen + 7) & ~7


def frame_dtype(snap: int) -> np.dtype:
    return np.dtype([("ts_ns", "<u8"), ("len", "<u4"), ("caplen", "<u4"), ("data", "u1", (snap,))])


def global_header(snaplen: int) -> bytes:
    return struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET)


def records(frames: np.ndarray, snaplen: int, wall_offset_ns: int) -> bytes:
    """pcap records (header + bytes) of a batch of ring frames."""
    if len(frames) == 0:
        return b""
    ns = frames["ts_ns"].astype(np.int64) + wall_offset_ns
    cap = np.minimum(frames["caplen"], snaplen).astype(np.uint32)
    hdr = np.zeros(len(frames), _REC_HDR)
    hdr["sec"] = ns // 1_000_000_000
    hdr["usec"] = (ns % 1_000_000_000) // 1000
    hdr["caplen"] = cap
    hdr["len"] = frames["len"]
    data = frames["data"]
    return b"".join(
        h.tobytes() + data[i, :c].tobytes() for i, (h, c) in enumerate(zip(hdr, cap.tolist(), strict=True))
    )


class PcapWriter:
    """The `frames` ring to a pcap file, in a thread of its own (started once XDP is attached)."""

    def __init__(self, path: str, snaplen: int) -> None:
        self.path = path
        self.snaplen = snaplen
        self.snap = snap_bytes(snaplen)
        self.written = 0  # frames in the file
        self.error: str | None = None
        self._fd: int | None = None
        self._ring: MmapRing | None = None
        self._ep: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # bpf_ktime_get_ns() is CLOCK_MONOTONIC: one offset maps it to wall time (as the records do).
        self._wall = time.time_ns() - time.monotonic_ns()

    def check(self) -> None:
        check_path(self.path, "pcap")

    def open(self, prog: Any, pages: int, start: bool = True) -> None:
        """Open the file and the frames' ring; `start=False`: the thread waits for start()."""
        self._fd = open_locked(self.path, "pcap")
        self._write(global_header(self.snaplen))
        fd = prog.map_fd("frames")
        self._ring = MmapRing(
            fd, pages * mmap.PAGESIZE, frame_dtype(self.snap).itemsize, frame_dtype(self.snap)
        )
        self._ep = select.epoll()
        self._ep.register(fd, select.EPOLLIN)
        if start:
            self.start()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pcap", daemon=True)
        self._thread.start()

    def _write(self, blob: bytes) -> None:
        assert self._fd is not None
        view = memoryview(blob)
        while view:
            view = view[os.write(self._fd, view) :]

    def _drain(self) -> int:
        assert self._ring is not None
        frames = self._ring.read(4096)
        if len(frames):
            self._write(records(frames, self.snaplen, self._wall))
            self.written += len(frames)
        return len(frames)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self._drain() == 0:
                    self._ep.poll(0.05)
            while self._drain():  # XDP is detached: to the ring's last frame
                pass
        except OSError as exc:
            self.error = f"cannot write pcap '{self.path}': {exc.strerror or exc}"
        except OutputError as exc:
            self.error = str(exc)

    def close(self, prog: Any) -> dict[str, Any]:
        """After XDP is detached: every frame written; what the ring had no room for, counted."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        lost = 0
        if prog is not None:
            try:
                lost = int.from_bytes(prog.obj.lookup("pcap_lost", 0)[:8], "little")
            except Exception:  # noqa: BLE001 - a count, not worth failing the scan's summary
                lost = 0
        if self._ring is not None:
            self._ring.close()
        if self._ep is not None:
            self._ep.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        return {
            "path": self.path,
            "snaplen": self.snaplen,
            "frames": self.written,
            "lost": lost,
            "error": self.error,
        }
