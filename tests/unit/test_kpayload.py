"""kpayload's sample addresses: every length of dotted text, every split into octets, few draws."""

from __future__ import annotations

import ipaddress
import itertools
import random

import pytest

from zbanner_xdp import kpayload


class CountingRandom(random.Random):
    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.draws = 0

    def getrandbits(self, k: int) -> int:
        self.draws += 1
        return super().getrandbits(k)

    def random(self) -> float:
        self.draws += 1
        return super().random()


@pytest.mark.parametrize("length", range(7, 16))
def test_samples_have_the_length_and_are_addresses(length: int) -> None:
    for ip in kpayload._samples(length, random.Random(length), n=50):
        assert len(ip) == length and str(ipaddress.IPv4Address(ip)) == ip  # no leading zeros, <= 255


def test_samples_cover_every_split_of_the_length() -> None:
    # Templates are checked against these addresses: a split never sampled would go unchecked.
    for length in range(7, 16):
        splits = {c for c in itertools.product((1, 2, 3), repeat=4) if sum(c) == length - 3}
        ips = kpayload._samples(length, random.Random(1), n=400)
        seen = {tuple(len(o) for o in ip.split(".")) for ip in ips}
        assert seen == splits, length


def test_samples_are_drawn_not_searched_for() -> None:
    # The old sampler drew random addresses until one had the length: ~430,000 draws for each
    # 7-character one, 1.5 s of every banner scan's start-up.
    rng = CountingRandom(7)
    for length in range(7, 16):
        kpayload._samples(length, rng)
    assert rng.draws < 500, rng.draws
