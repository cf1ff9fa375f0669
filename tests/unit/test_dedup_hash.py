"""The duplicate filter's bucket index (bpf/xdp_recv.c dedup_bucket, mirrored by events.dedup_index).

A scan's keys are structured: one /16 of targets on one port, a pseudo-random port of ours each, three
kinds of reply (SYN-ACK, banner, FIN). The first hash kept only part of that structure: at the default
size (2^20 entries, 131,072 buckets of 8) a lab /16 filled 80k buckets with up to 16 keys each and
evicted ~740 entries a scan, whose repeats were then recorded again (a banner recorded twice, by hand
against the lab's nginx at --rate 0). A uniform hash evicts ~9 there. The C side is held to this
mirror by a frame test (tests/integration/test_xdp_program.py).
"""

from __future__ import annotations

import numpy as np

from zbanner_xdp.events import DEDUP_WAYS, dedup_index


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
    assert len(np.unique(idx)) > 98_000  # a uniform hash: 131,072 * (1 - e^-1.5) ~ 101,800 buckets used
    assert _evicted(idx, buckets) < 40  # uniform: ~9; the first hash: ~740


def test_ipv6_keys_spread_too() -> None:
    buckets = 1 << 14
    rng = np.random.default_rng(8)
    n = 3 * buckets // 2
    hi = np.tile(np.array([0x02000120, 0, 0], np.uint32), (n, 1))  # 2001:2::/96, as loaded raw
    low = np.arange(n, dtype=np.uint32).byteswap()  # the last 32 bits count up
    idx = dedup_index(low, np.full(n, 443), rng.integers(32768, 61000, n), np.full(n, 1), buckets, hi)
    assert _evicted(idx, buckets) < 10
