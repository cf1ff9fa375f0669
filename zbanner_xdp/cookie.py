"""The SYN cookie, computed exactly as bpf/cookie.h computes it.

cookie = low 32 bits of SipHash-2-4(key, our_ip | their_ip | our_port | their_port),
the message in network byte order: 12 bytes over IPv4, 36 over IPv6 (16-byte
addresses; bpf/cookie.h zb_cookie6). `siphash24` is a plain reference
implementation (checked against the published SipHash vectors); `cookies` is
the vectorised form the sender uses for whole batches.
"""

from __future__ import annotations

import os
import struct

import numpy as np

_M64 = (1 << 64) - 1
_C = (0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573)


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _M64


def siphash24(key: bytes, msg: bytes) -> int:
    """Reference SipHash-2-4 over any message (slow; for tests and vectors)."""
    if len(key) != 16:
        raise ValueError("SipHash key must be 16 bytes")
    k0, k1 = key_words(key)
    v = [k0 ^ _C[0], k1 ^ _C[1], k0 ^ _C[2], k1 ^ _C[3]]

    def rnd() -> None:
        v[0] = (v[0] + v[1]) & _M64
        v[1] = _rotl(v[1], 13) ^ v[0]
        v[0] = _rotl(v[0], 32)
        v[2] = (v[2] + v[3]) & _M64
        v[3] = _rotl(v[3], 16) ^ v[2]
        v[0] = (v[0] + v[3]) & _M64
        v[3] = _rotl(v[3], 21) ^ v[0]
        v[2] = (v[2] + v[1]) & _M64
        v[1] = _rotl(v[1], 17) ^ v[2]
        v[2] = _rotl(v[2], 32)

    tail_len = len(msg) % 8
    body = len(msg) - tail_len
    for i in range(0, body, 8):
        (m,) = struct.unpack_from("<Q", msg, i)
        v[3] ^= m
        rnd()
        rnd()
        v[0] ^= m
    last = (len(msg) & 0xFF) << 56
    for i, byte in enumerate(msg[body:]):
        last |= byte << (8 * i)
    v[3] ^= last
    rnd()
    rnd()
    v[0] ^= last
    v[2] ^= 0xFF
    for _ in range(4):
        rnd()
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def cookie_scalar(key: bytes, our_ip: int, their_ip: int, our_port: int, their_port: int) -> int:
    """One cookie from host-order integers (the reference for `cookies`)."""
    msg = struct.pack("!IIHH", our_ip, their_ip, our_port, their_port)
    return siphash24(key, msg) & 0xFFFFFFFF


def cookie_scalar6(key: bytes, our_ip: int, their_ip: int, our_port: int, their_port: int) -> int:
    """One IPv6 cookie from 128-bit integer addresses (the reference for `cookies` on IPv6)."""
    msg = our_ip.to_bytes(16, "big") + their_ip.to_bytes(16, "big") + struct.pack("!HH", our_port, their_port)
    return siphash24(key, msg) & 0xFFFFFFFF


def new_key() -> bytes:
    return os.urandom(16)


def key_words(key: bytes) -> tuple[int, int]:
    """The 16-byte key as SipHash's two little-endian 64-bit words (as the programs' zb_config holds it)."""
    k0, k1 = struct.unpack("<QQ", key)
    return k0, k1


def _bswap32(x: np.ndarray) -> np.ndarray:
    return x.astype(np.uint32).byteswap().astype(np.uint64)


def _bswap16(x: np.ndarray) -> np.ndarray:
    return x.astype(np.uint16).byteswap().astype(np.uint64)


def _rotl_np(x: np.ndarray, b: int) -> np.ndarray:
    return (x << np.uint64(b)) | (x >> np.uint64(64 - b))


def cookies(
    key: bytes,
    our_ip: int | np.ndarray,
    their_ip: np.ndarray,
    our_port: int | np.ndarray,
    their_port: np.ndarray,
) -> np.ndarray:
    """Vectorised cookies (uint32) for arrays of host-order addresses/ports.

    IPv6: `their_ip` is an array of targets.ADDR6_DTYPE records and `our_ip` a 128-bit int."""
    k0, k1 = (np.uint64(w) for w in key_words(key))
    their_ip = np.asarray(their_ip)
    n = their_ip.shape[0]
    if their_ip.dtype.names:
        return _cookies6(k0, k1, int(our_ip), their_ip, our_port, their_port)
    # SipHash reads the network-order bytes as little-endian words: byteswap.
    ours = _bswap32(np.broadcast_to(np.asarray(our_ip, dtype=np.uint64), (n,)))
    theirs = _bswap32(their_ip)
    op = _bswap16(np.broadcast_to(np.asarray(our_port, dtype=np.uint64), (n,)))
    tp = _bswap16(np.asarray(their_port))
    m0 = ours | (theirs << np.uint64(32))
    m1 = op | (tp << np.uint64(16)) | np.uint64(12 << 56)

    return _siphash_words(k0, k1, n, (m0, m1))


def _siphash_words(k0: np.uint64, k1: np.uint64, n: int, words: tuple[np.ndarray, ...]) -> np.ndarray:
    """SipHash-2-4 of n messages given as their little-endian 64-bit words (the length byte already
    in the last), low 32 bits."""
    v0 = np.full(n, k0 ^ np.uint64(_C[0]), dtype=np.uint64)
    v1 = np.full(n, k1 ^ np.uint64(_C[1]), dtype=np.uint64)
    v2 = np.full(n, k0 ^ np.uint64(_C[2]), dtype=np.uint64)
    v3 = np.full(n, k1 ^ np.uint64(_C[3]), dtype=np.uint64)

    def rnd() -> None:
        nonlocal v0, v1, v2, v3
        v0 += v1
        v1 = _rotl_np(v1, 13) ^ v0
        v0 = _rotl_np(v0, 32)
        v2 += v3
        v3 = _rotl_np(v3, 16) ^ v2
        v0 += v3
        v3 = _rotl_np(v3, 21) ^ v0
        v2 += v1
        v1 = _rotl_np(v1, 17) ^ v2
        v2 = _rotl_np(v2, 32)

    for m in words:
        v3 ^= m
        rnd()
        rnd()
        v0 ^= m
    v2 ^= np.uint64(0xFF)
    for _ in range(4):
        rnd()
    return (v0 ^ v1 ^ v2 ^ v3).astype(np.uint32)


def _cookies6(
    k0: np.uint64,
    k1: np.uint64,
    our_ip: int,
    their_ip: np.ndarray,
    our_port: int | np.ndarray,
    their_port: np.ndarray,
) -> np.ndarray:
    """The 36-byte message: our 16 bytes, theirs (their records' bytes are the packet's: a "<u8" view
    is SipHash's words), the two ports, the length 36 in the last word's top byte."""
    n = their_ip.shape[0]
    ours = struct.unpack("<QQ", our_ip.to_bytes(16, "big"))
    theirs = np.ascontiguousarray(their_ip).view("<u8").reshape(n, 2).astype(np.uint64)
    op = _bswap16(np.broadcast_to(np.asarray(our_port, dtype=np.uint64), (n,)))
    tp = _bswap16(np.broadcast_to(np.asarray(their_port), (n,)))
    tail = op | (tp << np.uint64(16)) | np.uint64(36 << 56)
    words = (
        np.full(n, ours[0], dtype=np.uint64),
        np.full(n, ours[1], dtype=np.uint64),
        theirs[:, 0],
        theirs[:, 1],
        tail,
    )
    return _siphash_words(k0, k1, n, words)
