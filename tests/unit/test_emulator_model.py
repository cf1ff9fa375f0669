"""The emulator's Python model (open/closed by a keyed hash, banner checksum): no BPF needed."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

from zbanner_xdp.lab.emulator import (
    EmulatorError,
    EmulatorParams,
    canned_response,
    is_open,
    prefix_sums,
    segment,
    segment_sum,
)
from zbanner_xdp.lab.emulator import main as emulator_main
from zbanner_xdp.packets import native_word_sum

NET_BASE = struct.unpack("!I", socket.inet_aton("198.18.3.0"))[0]


def _ip(n: int) -> int:
    return NET_BASE + n


def test_python_hash_edges() -> None:
    assert all(is_open(_ip(n), p, 1000, 1) for n in range(5) for p in (1, 22))
    assert not any(is_open(_ip(n), p, 0, 1) for n in range(5) for p in (1, 22))
    # The seed matters and the share follows open_permil.
    hits = sum(is_open(_ip(n), 80, 300, 7) for n in range(1000))
    assert 230 < hits < 370
    assert [is_open(_ip(n), 80, 500, 1) for n in range(64)] != [
        is_open(_ip(n), 80, 500, 2) for n in range(64)
    ]


def test_banner_csum_matches_bytes() -> None:
    # Odd length: the last byte is padded, as the TCP checksum wants.
    odd = b"abc"
    words = struct.unpack("=2H", odd + b"\0")
    assert native_word_sum(odd) == sum(words)
    assert native_word_sum(b"") == 0


def test_canned_response_is_numbered_text_ending_its_only_line() -> None:
    for n in (1, 2, 3, 31, 32, 33, 685, 4096):
        data = canned_response(n)
        assert len(data) == n
        assert data.endswith(b"\r\n"[-min(n, 2) :])
        assert b"\n" not in data[:-1]
    assert canned_response(100) == canned_response(100)
    assert canned_response(64)[32:] == b"zbanner-emulator-resp 000000032"[: 64 - 32 - 2] + b"\r\n"
    with pytest.raises(EmulatorError):
        canned_response(0)


@pytest.mark.parametrize("data", [b"a", b"ab", bytes(range(256)) * 3 + b"xyz", canned_response(685)])
def test_prefix_sums_give_every_segments_checksum(data: bytes) -> None:
    # What the program computes from two table entries equals summing the segment itself, at
    # even and odd starts alike (an odd start's words are the bytes swapped).
    psum = prefix_sums(data)
    assert len(psum) == len(data) + 1 and psum[0] == 0
    for k in range(len(data)):
        for n in {1, 2, 3, 7, 160, len(data) - k}:
            if 1 <= n <= len(data) - k:
                want = _fold(native_word_sum(data[k : k + n]))
                assert segment_sum(psum, k, n) == want, (k, n)


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def test_segment_model() -> None:
    data = canned_response(500)
    assert segment(data, 0, 1024, 160) == (data[:160], False)
    assert segment(data, 160, 100, 160) == (data[160:260], False)  # the window limits
    assert segment(data, 480, 1024, 160) == (data[480:], True)  # the last: FIN
    assert segment(data, 499, 1, 160) == (data[499:], True)
    assert segment(data, 500, 1024, 160) is None  # all acked
    assert segment(data, 10, 0, 160) is None  # zero window


def test_params_refuse_bad_response_and_segment() -> None:
    with pytest.raises(EmulatorError, match="response is 0 bytes"):
        EmulatorParams(response=b"")
    with pytest.raises(EmulatorError, match="response is 65537 bytes"):
        EmulatorParams(response=bytes(65537))
    for bad in (0, 1461):
        with pytest.raises(EmulatorError, match="segment bytes"):
            EmulatorParams(segment=bad)
    flags = EmulatorParams(response=b"x", segment=160).cflags()
    assert "-DZE_RESPONSE=1" in flags and "-DZE_SEG=160" in flags
    assert "-DZE_RESPONSE=0" in EmulatorParams().cflags()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--response-file", "/nonexistent/zbe-response"], "cannot read response file"),
        (["--response-file", "/dev/null"], "is 0 bytes, must be 1..65536"),
        (["--response-bytes", "0"], "response size must be 1..65536"),
        (["--response-bytes", "65537"], "response size must be 1..65536"),
        (["--response-bytes", "lots"], "invalid response size"),
        (["--segment-bytes", "0"], "segment size must be 1..1460"),
        (["--segment-bytes", "1461"], "segment size must be 1..1460"),
        (["--response-bytes", "10", "--response-file", str(Path(__file__))], "not allowed with"),
    ],
    ids=["missing", "empty", "zero", "too-long", "not-a-number", "seg-zero", "seg-too-long", "both"],
)
def test_cli_response_errors_one_line_exit_2(
    args: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        emulator_main(["--iface", "zbe-nope0", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("emulator: ") and fragment in err, err


def test_the_ipv6_sink_needs_the_sink_and_a_prefix_of_64_or_shorter() -> None:
    bad_ones = ({"sink6": "2001:2::/64"}, {"sink": True, "sink6": "2001:2::/96"}, {"sink": 1, "sink6": "x"})
    for bad in bad_ones:
        with pytest.raises(EmulatorError):
            EmulatorParams(**bad)  # type: ignore[arg-type]
    flags = EmulatorParams(sink=True, sink6="2001:2::/64").cflags()
    assert "-DZE_SINK6=1" in flags and "-DZE_SINK6=0" in EmulatorParams().cflags()
