"""The duplicate filter's bucket index (bpf/xdp_recv.c dedup_bucket, mirrored by events.dedup_index).

A scan's keys are structured: one /16 of targets on one port, a pseudo-random port of ours each, three
kinds of reply (SYN-ACK, banner, FIN). The first hash kept only part of that structure: at the default
size (2^20 entries, then 131,072 buckets of 8) a lab /16 filled 80k buckets with up to 16 keys each and
evicted ~740 entries a scan, whose repeats were then recorded again (a banner recorded twice, by hand
against the lab's nginx at --rate 0). The uniform hash that replaced it evicts 4 there (3.9 on average
over ten seeds of our ports).

Since 2026-12-05 a connection's SYN-ACK and banner share a bucket (the banner's run then finds the
cache line the SYN-ACK's loaded: ~45 ns less a run, SSH banners from the emulator), so a bucket's keys
come in pairs; with buckets of 16 (the same 2^20 entries) that /16 evicts 3 (1.4 on average; pairs in
buckets of 8: ~190). The C side is held to this mirror by a frame test
(tests/integration/test_xdp_program.py).
"""

from __future__ import annotations

import numpy as np

from zbanner_xdp.events import DEDUP_WAYS, Kind, dedup_index


def _evicted(idx: np.ndarray, buckets: int) -> int:
    load = np.bincount(idx, minlength=buckets)
    return int(np.clip(load - DEDUP_WAYS, 0, None).sum())


def test_a_slash16_on_one_port_spreads_like_a_uniform_hash() -> None:
    buckets = (1 << 20) // DEDUP_WAYS
    rng = np.random.default_rng(7)
    x, y = np.divmod(np.arange(65536, dtype=np.uint64), 256)
    raw = (198 | (18 << 8) | (x << 16) | (y << 24)).astype(np.uint32)  # 198.18.x.y, as loaded raw
    ours = rng.integers(32768, 61000, len(raw)).astype(np.uint16)
    idx = np.concatenate(
        [
            dedup_index(raw, np.full(len(raw), 80), ours, np.full(len(raw), kind), buckets)
            for kind in (1, 4, 8)
        ]
    )
    # Targets spread uniformly: 65,536 buckets, 65,536 connections and 65,536 FINs ~ 56,500 used.
    assert len(np.unique(idx)) > 54_000
    assert _evicted(idx, buckets) < 20  # 3; pairs in buckets of 8: 193 (they fill them twice as fast)


def test_a_connections_synack_and_banner_share_a_bucket_other_kinds_do_not() -> None:
    rng = np.random.default_rng(9)
    raw = rng.integers(0, 1 << 32, 1000).astype(np.uint32)
    sport, ours = np.full(1000, 22), rng.integers(32768, 61000, 1000)
    at = {k: dedup_index(raw, sport, ours, np.full(1000, int(k)), 1 << 16) for k in Kind}
    assert (at[Kind.SYNACK] == at[Kind.BANNER]).all() and (at[Kind.ZEROWIN] == at[Kind.BANNER]).all()
    for k in (Kind.FIN, Kind.RST, Kind.ICMP, Kind.ACKED):
        assert (at[k] != at[Kind.SYNACK]).mean() > 0.99, k


def test_ipv6_keys_spread_too() -> None:
    buckets = 1 << 14
    rng = np.random.default_rng(8)
    n = 3 * buckets // 2
    hi = np.tile(np.array([0x02000120, 0, 0], np.uint32), (n, 1))  # 2001:2::/96, as loaded raw
    low = np.arange(n, dtype=np.uint32).byteswap()  # the last 32 bits count up
    idx = dedup_index(low, np.full(n, 443), rng.integers(32768, 61000, n), np.full(n, 1), buckets, hi)
    assert _evicted(idx, buckets) < 10
