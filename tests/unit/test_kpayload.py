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


@pytest.mark.parametrize("length", range(2, 40))
def test_ipv6_samples_and_pairs_have_the_length_and_are_rfc5952_text(length: int) -> None:
    ips = kpayload._samples6(length, random.Random(length), n=50)
    a, b = kpayload._pair6(length)
    for ip in [*ips, a, b]:
        assert len(ip) == length and str(ipaddress.IPv6Address(ip)) == ip


def test_ipv6_templates_render_every_probes_payload_for_any_address() -> None:
    # What the program sends (render: template, the address's text, the ranges) equals the probe's
    # own payload for addresses of every shape, not only the samples build() checked with.
    from zbanner_xdp.probes import get_probe

    rng = random.Random(3)
    groups = [0, 0, 0, 1, 0xA, 0x1F, 0x2A0, 0xBEEF, 0xFFFF]
    for name in ("http", "jarm", "tls", "ssh"):
        probe = get_probe(name)
        kp = kpayload.build(probe, 6)
        assert kp is not None, name
        for _ in range(300):
            addr = ipaddress.IPv6Address(b"".join(rng.choice(groups).to_bytes(2, "big") for _ in range(8)))
            port = rng.randrange(1, 65536)
            text = str(addr)
            v = kp.variants[len(text)]
            assert v is not None
            assert kpayload.render(v, kp.seed, text, port) == probe.payload(text, port), (name, text)
