"""The emulator's Python model (open/closed by a keyed hash, banner checksum): no BPF needed."""

from __future__ import annotations

import socket
import struct

from zbanner_xdp.lab.emulator import is_open
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
