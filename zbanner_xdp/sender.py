"""AF_PACKET transmit: a PACKET_TX_RING filled from numpy, flushed per batch.

The ring turns a batch of frames into one syscall; if the kernel refuses the
ring we fall back to one send() per frame. Rate limiting is per batch with a
sleep between batches, so a low rate does not spin a core.
"""

from __future__ import annotations

import errno
import mmap
import socket
import struct
import threading
import time

import numpy as np

SOL_PACKET = 263
PACKET_VERSION = 10
PACKET_TX_RING = 13
PACKET_QDISC_BYPASS = 20
TPACKET_V2 = 1
TP_STATUS_AVAILABLE = 0
TP_STATUS_SEND_REQUEST = 1
TP_STATUS_WRONG_FORMAT = 4
# TPACKET_V2 TX data starts right after the aligned tpacket2_hdr.
_DATA_OFF = 32
ETH_P_ALL = 0x0003


class SendError(RuntimeError):
    pass


class TxRing:
    def __init__(self, ifname: str, frame_size: int = 2048, frames: int = 4096):
        try:
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise SendError("opening an AF_PACKET socket needs root (CAP_NET_RAW)") from None
        try:
            self.sock.bind((ifname, 0))
        except OSError as exc:
            self.sock.close()
            raise SendError(f"cannot bind to interface '{ifname}': {exc.strerror}") from None
        self.frame_size = frame_size
        self.nframes = frames
        self.ring: mmap.mmap | None = None
        self.pos = 0
        self.busy = 0  # flushes the device refused (ENOBUFS): each may have lost a frame
        try:
            self.sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
            block = 1 << 16
            per_block = block // frame_size
            req = struct.pack("IIII", block, frames // per_block, frame_size, frames)
            self.sock.setsockopt(SOL_PACKET, PACKET_TX_RING, req)
            self.ring = mmap.mmap(
                self.sock.fileno(), frame_size * frames, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
            )
            buf = np.frombuffer(self.ring, dtype=np.uint8).reshape(frames, frame_size)
            self.slots = buf
            words = buf.view(np.uint32)
            self.status = words[:, 0]
            self.tp_len = words[:, 1]
        except OSError:
            self.ring = None  # fall back to plain send()
        self.mode = "tx_ring" if self.ring is not None else "send"

    def send(self, frames: np.ndarray, lengths: np.ndarray) -> int:
        """Transmit every row of `frames`; returns how many went out."""
        n = len(lengths)
        if n == 0:
            return 0
        if frames.shape[1] > self.frame_size - _DATA_OFF:
            raise SendError("frame larger than the TX ring slot")
        if self.ring is None:
            for i in range(n):
                self._try_send(frames[i, : lengths[i]].tobytes())  # refused: this frame is lost
            return n
        sent = 0
        while sent < n:
            chunk = min(n - sent, self.nframes // 2)
            idx = (self.pos + np.arange(chunk)) % self.nframes
            self._wait_free(idx)
            width = frames.shape[1]
            self.slots[idx, _DATA_OFF : _DATA_OFF + width] = frames[sent : sent + chunk]
            self.tp_len[idx] = lengths[sent : sent + chunk]
            # Status last: the kernel takes a slot as soon as it reads SEND_REQUEST.
            self.status[idx] = TP_STATUS_SEND_REQUEST
            self._flush()
            self.pos = int((self.pos + chunk) % self.nframes)
            sent += chunk
        return sent

    def _try_send(self, data: bytes) -> bool:
        """One send(); False (counted in `busy`) when the device refused it.

        ENOBUFS: a device without a queue whose peer is full dropped a frame
        (a veth without qdisc, its peer's XDP ring full). The scan goes on.
        """
        try:
            self.sock.send(data)
            return True
        except OSError as exc:
            if exc.errno not in (errno.ENOBUFS, errno.EAGAIN):
                raise SendError(f"transmit failed: {exc.strerror}") from None
            self.busy += 1
            return False

    def _flush(self) -> None:
        """Hand the ring's requested frames to the kernel; after a refusal the frames
        behind the dropped one are still requested and go out with the next flush."""
        if not self._try_send(b""):
            time.sleep(0.0002)

    def _wait_free(self, idx: np.ndarray) -> None:
        deadline = time.monotonic() + 2.0
        while True:
            st = self.status[idx]
            if not (st & ~np.uint32(TP_STATUS_WRONG_FORMAT)).any():
                if (st & TP_STATUS_WRONG_FORMAT).any():
                    self.status[idx] = TP_STATUS_AVAILABLE
                return
            self._flush()
            if time.monotonic() > deadline:
                raise SendError("TX ring stuck: the interface stopped transmitting")
            time.sleep(0.0005)

    def close(self) -> None:
        if self.ring is not None:
            self.slots = self.status = self.tp_len = None  # type: ignore[assignment]
            try:
                self.ring.close()
            except BufferError:
                pass
            self.ring = None
        self.sock.close()


class RateLimiter:
    """Grants packet budgets so that sends track `rate` pps (0: unlimited).

    `rate` may be fractional (the CLI allows down to 0.01 pps). The first
    packet is due at once and packet k (k >= 1) at k / rate seconds after the
    start: a 0.5 pps limiter grants 1 packet at t=0, then one at t=2 s, 4 s, …
    Later grants wait for a whole batch to be due (the first does not: it is
    what is due at the start, one packet).
    """

    MAX_BATCH = 4096  # a batch, by default: what --rate 0 grants at once (and a cap at any rate)

    def __init__(self, rate: float, max_batch: int = MAX_BATCH):
        self.rate = rate
        self.start = time.monotonic()
        self.granted = 0
        self._first_granted = False
        self._lock = threading.Lock()  # charge() comes from the receiver thread
        # ~200 batches a second at high rates; single packets at low ones.
        self.batch = max_batch if rate == 0 else max(1, min(max_batch, int(rate // 200)))

    def restart(self, now: float) -> None:
        """The clock from `now`, when sending starts: packet k is due at k / rate after it.
        (Replies charged before, a resumed scan's, still count: nothing was granted yet.)"""
        with self._lock:
            self.start, self._first_granted = now, False

    def refund(self, n: int) -> None:
        """Give back what a grant did not use, so that it is not lost from the rate."""
        with self._lock:
            self.granted -= n

    def charge(self, n: int) -> None:
        """Packets sent without a grant (replies, which never wait): later grants shrink."""
        if self.rate:
            with self._lock:
                self.granted += n

    def _due(self, now: float) -> int:
        """Packets due by `now` since the start: the first at once, then one every 1/rate s."""
        # The small epsilon keeps float error (e.g. 2.0000000001 s * 0.5 = 0.99999…) from
        # holding a packet back by a whole period.
        return int((now - self.start) * self.rate + 1e-9) + 1

    def available(self) -> int:
        """Packets due by now and not yet granted or charged (negative: ahead of the rate)."""
        return self._due(time.monotonic()) - self.granted

    def budget(self, stop: threading.Event | None = None, deadline: float | None = None) -> int:
        """Block until a batch is due (the first grant: a packet) and grant it; 0 if `stop` is set
        or `deadline` comes first.

        `deadline` is a time.monotonic() value: when the next batch is not due by
        then, budget() returns 0 at the deadline (at once if it has passed)
        rather than blocking beyond it, so a slow rate cannot overrun --max-runtime.
        """
        if self.rate == 0:
            return self.batch
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return 0  # (first: a packet due exactly at the deadline is past it)
            allowed = self._due(now) - self.granted
            # The first packet is due at once, not when a whole batch is: the sending loop's
            # first round (and the replies the first probes draw) starts with the clock.
            if allowed >= self.batch or (allowed > 0 and not self._first_granted):
                self._first_granted = True
                grant = min(allowed, self.batch * 2)
                with self._lock:
                    self.granted += grant
                return grant
            # When the batch is due: packet number granted + batch (counting from 1).
            wait = max(0.0, (self.granted + self.batch - 1) / self.rate - (now - self.start))
            wait = min(wait, 0.05)  # stay responsive to stop (and to charge()/refund())
            if deadline is not None:
                wait = min(wait, deadline - now)
            if stop is not None:
                if stop.wait(wait):
                    return 0
            else:
                time.sleep(wait)
