"""MmapRing.read over a memfd laid out like a BPF ring buffer's mmap (consumer page, producer page,
data area): the records it returns, the ones it skips and where it leaves the consumer."""

from __future__ import annotations

import mmap
import os

import numpy as np
import pytest

from zbanner_xdp import events
from zbanner_xdp.receiver import _BUSY, _DISCARD, MmapRing

DATA = 1 << 16


def _ring(dtype: np.dtype) -> tuple[MmapRing, mmap.mmap]:
    fd = os.memfd_create("ring")
    page = mmap.PAGESIZE
    os.ftruncate(fd, 2 * page + 2 * DATA)
    ring = MmapRing(fd, DATA, dtype.itemsize, dtype)
    raw = mmap.mmap(fd, 2 * page + 2 * DATA)
    os.close(fd)
    return ring, raw


def _put(ring: MmapRing, raw: mmap.mmap, n: int, flags: dict[int, int]) -> None:
    """n records at the start of the data area, record i's seq = i, its len word or-ed with flags[i]."""
    slots = np.frombuffer(raw, ring.dtype, count=n, offset=2 * mmap.PAGESIZE)
    slots["len"] = [ring.stride - 8 | flags.get(i, 0) for i in range(n)]
    rec = slots["rec"]
    seq = rec["h"]["seq"] if "h" in (rec.dtype.names or ()) else rec["seq"]
    seq[:] = np.arange(n)
    np.frombuffer(raw, np.uint64, count=1, offset=mmap.PAGESIZE)[0] = n * ring.stride


def _seq(out: np.ndarray) -> list[int]:
    return (out["h"]["seq"] if "h" in (out.dtype.names or ()) else out["seq"]).tolist()


def test_banner_records_skip_discarded_and_stop_at_busy() -> None:
    ring, raw = _ring(events.banner_dtype(4))
    _put(ring, raw, 6, {1: int(_DISCARD), 4: int(_BUSY)})
    out = ring.read()
    assert _seq(out) == [0, 2, 3]
    assert out.dtype == events.banner_dtype(4)
    # The consumer moved past the discarded record, not past the busy one.
    assert int(ring._cons_pos[0]) == 4 * ring.stride
    # A copy: the ring's slots may be overwritten once the consumer moved on.
    np.frombuffer(raw, ring.dtype, count=6, offset=2 * mmap.PAGESIZE)["rec"]["h"]["seq"][:] = 99
    assert _seq(out) == [0, 2, 3]
    ring.close()
    raw.close()


def test_small_records_all_kept() -> None:
    ring, raw = _ring(events.event_dtype(4))
    _put(ring, raw, 5, {})
    assert _seq(ring.read()) == [0, 1, 2, 3, 4]
    assert len(ring.read()) == 0
    ring.close()
    raw.close()


def _plan(*names: str):
    from zbanner_xdp.plan import ProbePlan
    from zbanner_xdp.probes import get_probe

    return ProbePlan([get_probe(n) for n in names], np.array([443]), 32768, 61000)


@pytest.mark.parametrize(
    ("names", "segmented", "short"),
    [
        (("ssh",), False, True),  # one-segment banners: the short ring
        (("http", "tls"), False, True),
        (("ssh",), True, False),  # --banner-bytes: a connection's segments in one ring
        (("jarm",), False, False),  # multi-connection probes: their answers stay ordered
        (("lzr",), False, False),
        (("ssh", "jarm"), False, False),
        (("synscan",), False, False),  # no banner at all
    ],
)
def test_short_ring_only_where_banners_are_one_segment(
    names: tuple[str, ...], segmented: bool, short: bool
) -> None:
    from zbanner_xdp.scanner import SHORT_RING_PAGES, short_ring_pages

    plan = _plan(*names)
    seg = np.full(len(plan.probes), segmented)
    assert short_ring_pages(plan, seg) == (SHORT_RING_PAGES if short else 0)


@pytest.mark.parametrize("dtype", [events.banner_dtype(4), events.short_dtype(4), events.short_dtype(6)])
def test_row_bytes_are_each_records_own_bytes(dtype: np.dtype) -> None:
    """_row_bytes: the bytes of each banner record, data_len of them, from a batch of mixed lengths
    (none, one byte, the whole record) as the ring returns it (a view of padded slots)."""
    from zbanner_xdp.receiver import _row_bytes

    width = dtype["data"].shape[0]
    rng = np.random.default_rng(5)
    slots = np.zeros(9, np.dtype([("rec", dtype), ("pad", "u1", (3,))]))
    batch = slots["rec"]
    batch["data"] = rng.integers(0, 256, batch["data"].shape)
    lens = [0, 1, width, 7, width - 1, 0, 2, width, 5]
    batch["h"]["data_len"] = lens
    want = [bytes(batch["data"][i][:n]) for i, n in enumerate(lens)]
    assert _row_bytes(batch) == want
    assert _row_bytes(batch[:0]) == []
    assert _row_bytes(batch[[0, 5]]) == [b"", b""]
