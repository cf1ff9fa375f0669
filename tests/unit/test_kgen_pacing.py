"""The kernel generator's pacing (kgen.KernelGenerator.send), on a simulated next hop.

No BPF here: the program run, the driver's counters and the clock are stand-ins, so what is
checked is the arithmetic of the pace — the lab tests (tests/integration/test_fast_paths.py)
check it on real veths.
"""

from __future__ import annotations

import numpy as np
import pytest

from zbanner_xdp import kgen
from zbanner_xdp.kgen import KernelGenerator


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += max(0.0, s)


class FakeGen(KernelGenerator):
    """A generator whose next hop takes `capacity` frames a second and refuses the rest."""

    def __init__(self, clock: Clock, capacity: float, reply_refusals_per_s: float = 0.0):
        self.clock = clock
        self.capacity = capacity
        self.reply_rate = reply_refusals_per_s
        self.slots = 1 << 16
        self.targets = np.zeros(self.slots, dtype=kgen.TARGET_DTYPE)
        self.written = 0
        self.chunk = self.START_CHUNK
        self.runs = self.resent = self.xmit_errors = self.lost = 0
        self.gap_ns = 0.0
        self.min_gap_ns = 0.0
        self._next_run = 0.0
        self._last_cut = None
        self._last_run = None
        self.paced_s = 0.0
        self.reply_errors = 0
        self.reply_stats = None
        self._reply_seen = None
        self.stats = None
        self.refused = 0  # the driver's error counter
        self.reply_refused = 0.0
        self.last_t = clock.t
        self.queue = 0.0
        self.read_fails = False

    RING = 256  # a veth's XDP ring

    def _run(self, start: int, count: int) -> None:
        # A run leaves at line rate into the hop's ring, which drains at `capacity`; what does not
        # fit is refused.
        self.queue = max(0.0, self.queue - (self.clock.t - self.last_t) * self.capacity)
        taken = min(count, int(self.RING - self.queue))
        self.refused += count - taken
        self.queue += taken
        self.last_t = self.clock.t
        self.clock.t += count * 300e-9

    def _own_refusals(self) -> int | None:
        return None if self.read_fails else self.refused

    def _new_reply_refusals(self) -> int:
        # Answers refused at a steady rate, whether or not the generator is running.
        total = self.reply_rate * (self.clock.t - 1000.0)
        new = int(total - self.reply_refused)
        self.reply_refused += new
        return new


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(kgen.time, "monotonic", c.monotonic)
    monkeypatch.setattr(kgen.time, "sleep", c.sleep)
    return c


def _send(g: FakeGen, n: int) -> None:
    g.send(np.arange(n, dtype=np.uint32), np.full(n, 80), 0)


def test_a_refusal_at_a_set_rate_slows_below_that_rate(clock: Clock) -> None:
    # --rate 50K spaces frames 20 µs apart; a hop taking 20k/s refuses. The first cut must slow
    # the generator below the rate's spacing (the old cut started from its own gap, 1 µs).
    g = FakeGen(clock, capacity=20_000)
    g.min_gap_ns = 20_000
    for _ in range(100):
        _send(g, 250)  # one grant of the limiter at 50K
        if g.xmit_errors:
            break
    assert g.xmit_errors > 0
    assert g.gap() > 20_000, g.gap_ns


def test_answers_refused_between_runs_slow_the_generator(clock: Clock) -> None:
    # The program's answers are refused while the generator waits for its pace: they count.
    g = FakeGen(clock, capacity=1e9, reply_refusals_per_s=2_000)
    g.reply_stats = object()  # watched
    g.gap_ns = g.START_GAP_NS
    for _ in range(50):
        _send(g, 256)
    assert g.reply_errors > 0 and g._last_cut is not None


def test_a_failed_counter_read_is_no_refusal(clock: Clock) -> None:
    g = FakeGen(clock, capacity=1e9)
    g.refused = 10**9  # the driver's counter since boot
    g.read_fails = True
    _send(g, 4096)
    assert g.xmit_errors == 0 and g.resent == 0 and g.lost == 0


def test_a_slice_of_sending_is_short_whatever_the_pace() -> None:
    g = FakeGen(Clock(), capacity=1e9)
    assert g.frames_within(0.01) >= 1 << 20  # unpaced: whatever the grant is
    g.gap_ns = g.MAX_GAP_NS
    assert g.frames_within(0.01) == g.MIN_CHUNK  # 64 frames at 1 ms: 64 ms at most
    g.gap_ns, g.min_gap_ns = 0.0, 20_000
    assert g.frames_within(0.01) == 500


def test_a_rate_spreads_its_grants_over_most_of_their_period() -> None:
    g = FakeGen(Clock(), capacity=1e9)
    g.spread_for(50_000)
    assert g.min_gap_ns == pytest.approx(16_000)  # 80 % of 20 µs: late runs can catch up
    g.spread_for(3_000_000)
    assert g.min_gap_ns == 0.0  # faster than the generator's own spacing
    g.spread_for(500)
    assert g.min_gap_ns == 0.0  # the limiter grants a frame or two at a time


def test_the_slow_start_sends_no_more_than_user_space_holds_before_the_first_verdict(clock: Clock) -> None:
    # With in-kernel replies not yet proven, user space holds the events the program answered
    # until a verification poll says whether the driver sent or refused them; past HOLD_MAX it
    # answers them at once (twice, if the kernel's answers did leave). From the slow start's
    # pace, one poll interval of SYNs (each a possible answer) must stay well inside that.
    from zbanner_xdp.kreplies import KernelReplies
    from zbanner_xdp.replies import Replies

    g = FakeGen(clock, capacity=1e9)
    g.RING = 1 << 30  # a hop that never refuses: the start alone decides the pace
    g.reply_stats = object()  # watched: the slow start applies
    g.gap_ns = g.START_GAP_NS
    started: list[tuple[float, int]] = []
    run = g._run

    def logged(start: int, count: int) -> None:
        started.append((clock.t, count))
        run(start, count)

    g._run = logged  # type: ignore[method-assign]
    t0 = clock.t
    for _ in range(16):
        _send(g, 4096)
    early = sum(n for t, n in started if t < t0 + KernelReplies.POLL_S)
    assert early <= Replies.HOLD_MAX // 2, early
    # ... and it is a start, not a pace: full speed (no gap) well before the 65,536 frames end.
    assert g.gap() == 0.0
    assert clock.t - t0 < 0.05, clock.t - t0


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize(("base", "n"), [(0, 5), (3, 13), (14, 2), (15, 16), (16 * 7 + 9, 16), (5, 0)])
def test_fill_ring_puts_target_i_where_the_program_takes_index_base_plus_i(family, base, n):
    """Slot (base + i) % slots holds target i, in the program's byte order, on both sides of the
    ring's wrap; slots outside the batch are left alone."""
    from zbanner_xdp import events, targets

    slots = 16
    ring = np.zeros(slots, events.gen_target_dtype(family))
    ring["variant"] = 0xEE  # untouched slots keep it
    rng = np.random.default_rng(base * 31 + n)
    ports = rng.integers(1, 65536, n).astype(np.uint16)
    variants = rng.integers(0, 8, n).astype(np.uint8)
    if family == 4:
        addrs = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    else:
        addrs = targets.addr6_array(int(x) << 64 | int(y) for x, y in rng.integers(0, 2**63, (n, 2)))
    kgen.fill_ring(ring, base, addrs, ports, variants)
    for i in range(n):
        s = ring[(base + i) % slots]
        if family == 4:
            assert int(s["daddr_raw"]) == int(addrs[i].byteswap())
        else:
            assert s["daddr6"] == addrs[i]
        assert int(s["dport_raw"]) == int(ports[i].byteswap())
        assert int(s["variant"]) == int(variants[i])
    untouched = sorted(set(range(slots)) - {(base + i) % slots for i in range(n)})
    assert all(int(ring[k]["variant"]) == 0xEE for k in untouched)
    kgen.fill_ring(ring, base, addrs, ports, 3)  # one variant for the whole batch
    assert all(int(ring[(base + i) % slots]["variant"]) == 3 for i in range(n))
    with pytest.raises(ValueError):
        kgen.fill_ring(ring, base, np.zeros(slots + 1, addrs.dtype), np.zeros(slots + 1, np.uint16), 0)
