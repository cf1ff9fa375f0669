"""The scan's settings, validated once by the CLI and frozen."""

from __future__ import annotations

import dataclasses
import decimal
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ScanConfig:
    targets: tuple[str, ...]
    ports: str
    probe: str = "synscan"
    probe_args: dict[str, str] = field(default_factory=dict)
    iface: str | None = None
    rate: float = 10_000  # packets per second, fractions allowed (>= MIN_RATE); 0: unlimited
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
    output_format: str | None = None  # json or csv; None: csv for a name ending in .csv, else json
    metadata: str | None = None
    cooldown: float = 8.0
    max_targets: int | None = None
    max_runtime: float | None = None
    blocklist: str | None = None
    allowlist: str | None = None
    list_of_targets: str | None = None  # -I FILE: targets, one a line, with (or instead of) TARGETs
    exclude: tuple[str, ...] = ()  # --exclude: addresses, CIDRs, ranges; added to the blocklist
    exclude_files: tuple[str, ...] = ()  # --exclude-file: lists of them, added as well
    dry_run: bool = False
    quiet: bool = False
    ack_window: int = 1024
    # --banner-bytes: reassemble answers up to this many bytes (segments.py); 0: the first segment only.
    banner_bytes: int = 0
    banner_table: int = 1 << 16  # connections reassembled at once (--banner-bytes)
    dedup_window: float = 0.0
    step_table: int = 256 * 1024  # rows of multi-connection probes' results in progress (steps.py)
    reanswer_after: float = 0.15  # seconds; 0: never answer a retransmitted SYN-ACK or banner again
    dedup_entries: int = 1_000_000
    output_repeats: bool = False
    retransmit: int = 0
    retransmit_delay: float = 20.0
    retransmit_queue: int = 1 << 20
    tarpit_check: bool = False
    tx: str = "auto"
    tx_threads: int = 1  # kernel generator threads, each on a CPU of its own (cpus.py)
    # Answered in XDP where the driver delivers (kreplies.py): None (the default) wherever the scan
    # allows it, True asked for (refused where it cannot be), False never (user space answers).
    kernel_replies: bool | None = None
    checkpoint: str | None = None  # --checkpoint FILE (checkpoint.py)
    pcap: str | None = None  # --pcap FILE (pcap.py)
    pcap_snaplen: int = 1514
    # --user: whom the scan becomes once set up (privdrop.py); None: nobody if started as root.
    user: str | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


MIN_RATE = 0.01
"""The slowest rate in packets per second (one packet every 100 s); 0 is unlimited."""
MAX_RATE = 10**10

_RATE_HELP = "use pps, e.g. 10000, 250K, 1M, 0.5; 0 = unlimited"


def parse_rate(text: str) -> int | float:
    """'1M' -> 1_000_000, '250k' -> 250_000, '0.5' -> 0.5 (one packet every 2 s), '0' -> unlimited.

    Integral rates come back as int, fractional ones as float; a positive rate
    below MIN_RATE is refused rather than rounded (to 0, which would mean unlimited).
    """
    t = text.strip().lower().replace("_", "")
    mult = 1
    if t.endswith(("k", "m", "g")):
        mult = {"k": 10**3, "m": 10**6, "g": 10**9}[t[-1]]
        t = t[:-1]
    shown = text if len(text) <= 40 else text[:40] + "…"
    try:
        # Decimal, not float: '1.1K' is exactly 1100, not 1100.0000000000002.
        given = decimal.Decimal(t)
        value = given * mult
    except (decimal.DecimalException, ValueError):
        raise ValueError(f"invalid rate '{shown}' ({_RATE_HELP})") from None
    if not value.is_finite() or value < 0 or value > MAX_RATE:
        raise ValueError(f"invalid rate '{shown}' ({_RATE_HELP})")
    # (given > 0 too: a tiny enough value underflows to 0 in the multiplication.)
    if given > 0 and value < decimal.Decimal(str(MIN_RATE)):
        raise ValueError(f"rate '{shown}' is below the minimum {MIN_RATE} pps (0 = unlimited)")
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def parse_port_range(text: str) -> tuple[int, int]:
    try:
        lo_s, hi_s = text.split("-", 1)
        lo, hi = int(lo_s), int(hi_s)
    except ValueError:
        raise ValueError(f"invalid source port range '{text}' (use LO-HI, e.g. 32768-61000)") from None
    if not (1 <= lo <= hi <= 65535):
        raise ValueError(f"invalid source port range '{text}' (use LO-HI within 1-65535)")
    return lo, hi
