"""The scan's settings, validated once by the CLI and frozen."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ScanConfig:
    targets: tuple[str, ...]
    ports: str
    probe: str = "synscan"
    probe_args: dict[str, str] = field(default_factory=dict)
    iface: str | None = None
    rate: int = 10_000
    source_ip: str | None = None
    gateway_mac: str | None = None
    source_port_lo: int = 32768
    source_port_hi: int = 61000
    ttl: int = 255
    seed: int | None = None
    shards: int = 1
    shard: int = 0
    output: str | None = None
    output_fields: tuple[str, ...] | None = None  # None: every field
    metadata: str | None = None
    cooldown: float = 8.0
    max_targets: int | None = None
    max_runtime: float | None = None
    blocklist: str | None = None
    allowlist: str | None = None
    dry_run: bool = False
    quiet: bool = False
    ack_window: int = 1024
    dedup_window: float = 0.0
    dedup_entries: int = 1_000_000
    output_repeats: bool = False
    retransmit: int = 0
    retransmit_delay: float = 20.0
    retransmit_queue: int = 1 << 20
    tarpit_check: bool = False
    tx: str = "auto"
    kernel_replies: bool = False

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def parse_rate(text: str) -> int:
    """'1M' -> 1_000_000, '250k' -> 250_000, '0' -> unlimited."""
    t = text.strip().lower().replace("_", "")
    mult = 1
    if t.endswith(("k", "m", "g")):
        mult = {"k": 10**3, "m": 10**6, "g": 10**9}[t[-1]]
        t = t[:-1]
    try:
        value = float(t)
    except ValueError:
        raise ValueError(f"invalid rate '{text}' (use pps, e.g. 10000, 250K, 1M; 0 = unlimited)") from None
    if value < 0 or value != value or value * mult > 1e10:
        raise ValueError(f"invalid rate '{text}' (use pps, e.g. 10000, 250K, 1M; 0 = unlimited)")
    return int(value * mult)


def parse_port_range(text: str) -> tuple[int, int]:
    try:
        lo_s, hi_s = text.split("-", 1)
        lo, hi = int(lo_s), int(hi_s)
    except ValueError:
        raise ValueError(f"invalid source port range '{text}' (use LO-HI, e.g. 32768-61000)") from None
    if not (1 <= lo <= hi <= 65535):
        raise ValueError(f"invalid source port range '{text}' (use LO-HI within 1-65535)")
    return lo, hi
