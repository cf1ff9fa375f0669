"""The once-a-second status line on stderr."""

from __future__ import annotations

import sys
import time


def _si(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.0f}"


def _dur(s: float) -> str:
    s = max(0, int(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class StatusLine:
    def __init__(self, total: int, quiet: bool = False, stream=None):
        self.total = max(total, 0)
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self._last_t = self.start
        self._last_sent = 0

    def line(self, sent_probes: int, sent_packets: int, hits: int, drops: int, phase: str) -> str:
        now = time.monotonic()
        el = now - self.start
        pct = 100.0 if self.total == 0 else min(100.0, 100.0 * sent_probes / self.total)
        dt = now - self._last_t
        pps = (sent_packets - self._last_sent) / dt if dt > 0 else 0.0
        self._last_t, self._last_sent = now, sent_packets
        if sent_probes >= self.total:
            eta = "--"
        elif sent_probes > 0:
            eta = _dur(el * (self.total - sent_probes) / sent_probes)
        else:
            eta = "?"
        rate = 100.0 * hits / sent_probes if sent_probes else 0.0
        return (
            f"{_dur(el)} {pct:5.1f}% ({phase}) ETA {eta}; sent {sent_packets} ({_si(pps)} pps); "
            f"hits {hits} ({rate:.2f}%); drops {drops}"
        )

    def show(self, *args, **kwargs) -> None:
        text = self.line(*args, **kwargs)
        if not self.quiet:
            print(text, file=self.stream, flush=True)
