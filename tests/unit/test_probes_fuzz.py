"""Property tests: every probe's parser survives arbitrary and mutated banners.

Invariants for any input bytes: parse never raises (not even the raw parser behind the safety net), returns
exactly the declared fields, the result is orjson-serialisable, and matches() returns a bool.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zbanner_xdp.probes import ProbeKind, all_probes, get_probe
from zbanner_xdp.probes.base import Probe, sanitise

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "probes"
SAMPLES: dict[str, bytes] = {f.stem: f.read_bytes() for f in sorted(DATA_DIR.glob("*.bin"))}

# Every registered probe, plus argument variants that switch on extra parsing paths.
PROBE_CONFIGS: list[tuple[str, dict[str, str]]] = [(cls.name, {}) for cls in all_probes()] + [
    ("hello", {"regex": r"(\w+)[-_/ ]v?(\d+(?:\.\d+)*)?"}),
    ("redis", {"cmd": "info"}),
    ("tls", {"sni": "example.com", "alpn": "h2"}),
]
CONFIG_IDS = [name + ("+" + ",".join(sorted(args)) if args else "") for name, args in PROBE_CONFIGS]
# --banner-bytes: banner probes reading past the first segment (extra fields, and complete()).
SEGMENT_CONFIGS = [(n, a) for n, a in PROBE_CONFIGS if get_probe(n, a).kind is ProbeKind.BANNER] + [
    ("tls", {"max_version": "1.2"})
]
SEGMENT_IDS = [name + ("+" + ",".join(sorted(args)) if args else "") for name, args in SEGMENT_CONFIGS]

FUZZ_SETTINGS = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def check(probe: Probe, data: bytes) -> dict[str, Any]:
    # The safety net in Probe.parse would hide parser bugs as all-None results, so also require the raw
    # parser to cope on its own.
    raw = probe._parse("198.51.100.23", probe.default_port, data)
    assert isinstance(raw, dict) and set(raw) <= set(probe.fields)
    out = probe.parse("198.51.100.23", probe.default_port, data)
    assert isinstance(out, dict)
    assert list(out) == list(probe.fields)
    orjson.dumps(out)
    assert isinstance(probe.matches(out), bool)
    return out


def test_samples_present_for_every_probe() -> None:
    # Mutation fuzzing is only meaningful if each protocol has realistic seeds.
    prefixes = {name.split("__")[0] for name in SAMPLES}
    # (Multi-connection probes parse per step: their cores are fuzzed in test_jarm.py and test_lzr.py,
    # step_part and result in test_steps.py.)
    multi = {cls.name for cls in all_probes() if cls.steps > 1}
    missing = {cls.name for cls in all_probes()} - prefixes - {"synscan", "icmp-echo"} - multi
    assert not missing


@pytest.mark.parametrize(("name", "args"), PROBE_CONFIGS, ids=CONFIG_IDS)
@FUZZ_SETTINGS
@given(data=st.binary(max_size=2048))
def test_random_bytes(name: str, args: dict[str, str], data: bytes) -> None:
    check(get_probe(name, args), data)


@st.composite
def mutated_sample(draw: st.DrawFn) -> bytes:
    data = bytearray(SAMPLES[draw(st.sampled_from(sorted(SAMPLES)))])
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        op = draw(st.sampled_from(["truncate", "flip", "set", "insert", "delete", "duplicate"]))
        n = len(data)
        if n == 0:
            data += draw(st.binary(min_size=1, max_size=8))
            continue
        i = draw(st.integers(min_value=0, max_value=n - 1))
        if op == "truncate":
            del data[i:]
        elif op == "flip":
            data[i] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif op == "set":
            # Boundary values are what breaks length fields.
            data[i] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF, 0x0A, 0x0D, 0x20]))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[i : i + draw(st.integers(min_value=1, max_value=16))]
        else:
            j = draw(st.integers(min_value=i, max_value=n))
            data[j:j] = data[i:j]
    return bytes(data)


@pytest.mark.parametrize(("name", "args"), PROBE_CONFIGS, ids=CONFIG_IDS)
@FUZZ_SETTINGS
@given(data=mutated_sample())
def test_mutated_samples(name: str, args: dict[str, str], data: bytes) -> None:
    check(get_probe(name, args), data)


@pytest.mark.parametrize(("name", "args"), PROBE_CONFIGS, ids=CONFIG_IDS)
def test_every_prefix_of_every_sample(name: str, args: dict[str, str]) -> None:
    # Banners are routinely cut at a segment boundary: exhaustively check all truncation points.
    probe = get_probe(name, args)
    for sample in SAMPLES.values():
        for n in range(len(sample) + 1):
            check(probe, sample[:n])


@pytest.mark.parametrize("sample_name", sorted(SAMPLES))
def test_own_samples_match(sample_name: str) -> None:
    probe = get_probe(sample_name.split("__")[0])
    assert probe.matches(check(probe, SAMPLES[sample_name]))


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**100), max_value=2**100)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=50)
    | st.binary(max_size=50)
    | st.sampled_from(["\udcff", "x" * 5000, math.nan]),
    lambda children: (
        st.lists(children, max_size=5)
        | st.tuples(children, children)
        | st.dictionaries(
            st.one_of(st.text(max_size=5), st.integers(), st.binary(max_size=5)), children, max_size=5
        )
    ),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None, database=None)
@given(value=json_like)
def test_sanitise_always_serialisable(value: Any) -> None:
    orjson.dumps(sanitise(value))


_HTTP_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n"
ADVERSARIAL = {
    "many_titles": _HTTP_HEAD + b"<TiTlE x>" * 7000,
    "apop_ats": b"+OK <" + b"@" * 4000,
    "telnet_sb": b"\xff\xfa" * 32768,
    "dotted_word": b"220 " + b"a." * 32000,
    "multiline_reply": b"220-" + b"220-x\r\n" * 9000,
    "many_headers": b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 10000,
    "folded_header": b"HTTP/1.1 200 OK\r\nX: y\r\n" + b" z\r\n" * 15000,
    "tiny_tls_records": (b"\x16\x03\x03\x00\x04" + b"\x0b\x00\x00\x00") * 6000,
    "tls_hs_headers": b"\x16\x03\x03\x40\x00" + b"\x02\x00\x00\x00" * 16000,
    "redis_info_keys": b"$65000\r\n" + b"redis_version:" * 4600,
    "ansi": b"\x1b[" + b"1;" * 32000,
    "capabilities": b"* OK [CAPABILITY " + b"A " * 32000,
    "newlines": b"\n" * 65536,
    "oversized": b"A" * 1_000_000,
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_parsers_stay_fast_on_adversarial_input(name: str) -> None:
    # A hostile server must not be able to stall the receiver with a slow (e.g. backtracking) parse.
    data = ADVERSARIAL[name]
    for cls in all_probes():
        probe = cls()
        start = time.perf_counter()
        check(probe, data)
        assert time.perf_counter() - start < 0.5, cls.name


def segment_probe(name: str, args: dict[str, str]) -> Probe:
    probe = get_probe(name, args)
    probe.capture_segments()
    return probe


def check_segments(probe: Probe, data: bytes) -> None:
    check(probe, data)
    assert isinstance(probe._complete(data), bool)  # the raw check copes on its own too
    assert isinstance(probe.complete(data), bool)


@pytest.mark.parametrize(("name", "args"), SEGMENT_CONFIGS, ids=SEGMENT_IDS)
@FUZZ_SETTINGS
@given(data=st.binary(max_size=4096))
def test_segments_random_bytes(name: str, args: dict[str, str], data: bytes) -> None:
    check_segments(segment_probe(name, args), data)


@pytest.mark.parametrize(("name", "args"), SEGMENT_CONFIGS, ids=SEGMENT_IDS)
@FUZZ_SETTINGS
@given(data=mutated_sample())
def test_segments_mutated_samples(name: str, args: dict[str, str], data: bytes) -> None:
    check_segments(segment_probe(name, args), data)


@pytest.mark.parametrize(("name", "args"), SEGMENT_CONFIGS, ids=SEGMENT_IDS)
def test_segments_every_prefix_of_every_sample(name: str, args: dict[str, str]) -> None:
    # A reassembled answer ends wherever the limit, a FIN or a timeout cut it.
    probe = segment_probe(name, args)
    for sample in SAMPLES.values():
        for n in range(0, len(sample) + 1, 7):
            check_segments(probe, sample[:n])
