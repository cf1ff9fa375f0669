"""Ethernet/IPv4/TCP frames (and IPv6: LinkParams.family) built in numpy batches.

A header template is laid down once per batch and only the varying fields
(addresses, ports, sequence numbers, flags, payload) are written, then both
checksums are computed vectorised over the whole batch. Frames live in a
(n, slot) uint8 array plus their lengths, which is what the TX ring wants.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np

ETH_LEN = 14
IP_LEN = 20
IP6_LEN = 40
TCP_LEN = 20
IP_OFF = ETH_LEN
TCP_OFF = ETH_LEN + IP_LEN
TCP6_OFF = ETH_LEN + IP6_LEN
ICMPV6 = 58

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
# MSS 1460, as ZMap sends: some stacks ignore option-less SYNs.
SYN_OPTIONS = b"\x02\x04\x05\xb4"


@dataclass(frozen=True)
class LinkParams:
    """What every frame of one scan shares."""

    src_mac: bytes
    dst_mac: bytes
    src_ip: int  # IPv6: the 128-bit address as an int
    ttl: int = 255
    family: int = 4  # 6: IPv6 frames; their destinations are targets.ADDR6_DTYPE records

    @property
    def l4_off(self) -> int:
        """Where the transport header starts in our frames."""
        return TCP6_OFF if self.family == 6 else TCP_OFF

    @property
    def ip_len(self) -> int:
        return IP6_LEN if self.family == 6 else IP_LEN


def mac_bytes(mac: str) -> bytes:
    parts = mac.split(":")
    if len(parts) != 6 or not all(len(p) in (1, 2) for p in parts):
        raise ValueError(f"invalid MAC address '{mac}'")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"invalid MAC address '{mac}'") from None


def _put_be(frames: np.ndarray, off: int, values: np.ndarray | int, width: int) -> None:
    v = np.asarray(values, dtype=np.uint64)
    for i in range(width):
        frames[:, off + i] = (v >> np.uint64(8 * (width - 1 - i))) & np.uint64(0xFF)


def native_word_sum(data: bytes) -> int:
    """A payload's ones'-complement partial sum as the XDP programs add it, unfolded.

    bpf_csum_diff sums native 16-bit words, and the programs add this to
    theirs before one fold (bpf/csum.h), so native order is right on either
    endianness. Zero-padded to even length; under 128 KiB it fits the u32
    the programs keep it in.
    """
    padded = data + b"\0" * (len(data) % 2)
    return int(np.frombuffer(padded, dtype="=u2").sum(dtype=np.uint64))


def _fold(total: np.ndarray) -> np.ndarray:
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return (~total) & 0xFFFF


def _sum16(frames: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Ones'-complement partial sum of big-endian 16-bit words in [start, stop)."""
    seg = frames[:, start:stop]
    if seg.shape[1] % 2:
        seg = np.pad(seg, ((0, 0), (0, 1)))
    hi = seg[:, 0::2].astype(np.uint64)
    lo = seg[:, 1::2].astype(np.uint64)
    return ((hi << np.uint64(8)) | lo).sum(axis=1, dtype=np.uint64)


def _l2_l3(
    frames: np.ndarray,
    link: LinkParams,
    daddr: np.ndarray,
    proto: int,
    ip_total: np.ndarray,
    ipid: np.ndarray,
) -> None:
    """Ethernet and IPv4 headers (with checksum) for every row; IPv6 for an IPv6 link (`ip_total`
    then still counts the IP header: the payload length is what follows it)."""
    frames[:, 0:6] = np.frombuffer(link.dst_mac, dtype=np.uint8)
    frames[:, 6:12] = np.frombuffer(link.src_mac, dtype=np.uint8)
    if link.family == 6:
        frames[:, 12:14] = (0x86, 0xDD)
        _ipv6(frames, link, daddr, proto, np.asarray(ip_total, dtype=np.uint64) - np.uint64(IP6_LEN))
        return
    frames[:, 12:14] = (0x08, 0x00)
    ip = IP_OFF
    frames[:, ip] = 0x45
    _put_be(frames, ip + 2, ip_total, 2)
    _put_be(frames, ip + 4, ipid, 2)
    frames[:, ip + 6] = 0x40  # DF, as stacks do
    frames[:, ip + 8] = link.ttl
    frames[:, ip + 9] = proto
    _put_be(frames, ip + 12, link.src_ip, 4)
    _put_be(frames, ip + 16, daddr, 4)
    _put_be(frames, ip + 10, _fold(_sum16(frames, ip, ip + IP_LEN)), 2)


def _ipv6(frames: np.ndarray, link: LinkParams, daddr: np.ndarray, proto: int, payload: np.ndarray) -> None:
    """The IPv6 header: no checksum, no ID; flow label 0, as ZMap sends."""
    ip = IP_OFF
    frames[:, ip] = 0x60
    _put_be(frames, ip + 4, payload, 2)
    frames[:, ip + 6] = proto
    frames[:, ip + 7] = link.ttl
    frames[:, ip + 8 : ip + 24] = np.frombuffer(link.src_ip.to_bytes(16, "big"), dtype=np.uint8)
    frames[:, ip + 24 : ip + 40] = np.ascontiguousarray(daddr).view(np.uint8).reshape(-1, 16)


def _addr6_words(daddr: np.ndarray) -> np.ndarray:
    """Sum of each IPv6 address's eight 16-bit words (for the pseudo header)."""
    return np.ascontiguousarray(daddr).view(">u2").reshape(-1, 8).sum(axis=1, dtype=np.uint64)


def _pseudo(link: LinkParams, daddr: np.ndarray, proto: int, seg_len: np.ndarray) -> np.ndarray:
    if link.family == 6:
        # RFC 8200 8.1: both addresses, the upper-layer length, the next header.
        src = int(np.frombuffer(link.src_ip.to_bytes(16, "big"), dtype=">u2").astype(np.uint64).sum())
        return np.uint64(src) + _addr6_words(daddr) + np.uint64(proto) + np.asarray(seg_len, dtype=np.uint64)
    d = np.asarray(daddr, dtype=np.uint64)
    s = np.uint64(link.src_ip)
    m = np.uint64(0xFFFF)
    return (s >> np.uint64(16)) + (s & m) + (d >> np.uint64(16)) + (d & m) + np.uint64(proto) + seg_len


def tcp_frames(
    link: LinkParams,
    daddr: np.ndarray,
    dport: np.ndarray,
    sport: np.ndarray,
    seq: np.ndarray,
    ack: np.ndarray | int,
    flags: np.ndarray | int,
    window: np.ndarray | int,
    options: bytes = b"",
    payload: np.ndarray | None = None,
    payload_len: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Build n TCP frames; returns (frames (n, slot) uint8, lengths (n,) uint32).

    `payload` is an (n, maxlen) uint8 array zero-padded past each row's
    `payload_len`; zero padding is harmless to the checksum.
    """
    n = int(np.asarray(daddr).shape[0])
    if len(options) % 4:
        raise ValueError("TCP options must be padded to 4 bytes")
    tcp_hlen = TCP_LEN + len(options)
    maxpay = 0 if payload is None else int(payload.shape[1])
    slot = link.l4_off + tcp_hlen + maxpay
    frames = np.zeros((n, slot), dtype=np.uint8)
    if n == 0:
        return frames, np.zeros(0, dtype=np.uint32)
    plen = np.zeros(n, dtype=np.uint64) if payload is None else np.asarray(payload_len, dtype=np.uint64)
    ip_total = np.uint64(link.ip_len + tcp_hlen) + plen
    # IP ID from the sequence number: varies per probe without extra state.
    ipid = (np.asarray(seq, dtype=np.uint64) >> np.uint64(16)) & np.uint64(0xFFFF)
    _l2_l3(frames, link, daddr, 6, ip_total, ipid)

    t = link.l4_off
    _put_be(frames, t, sport, 2)
    _put_be(frames, t + 2, dport, 2)
    _put_be(frames, t + 4, seq, 4)
    _put_be(frames, t + 8, ack, 4)
    frames[:, t + 12] = (tcp_hlen // 4) << 4
    frames[:, t + 13] = np.asarray(flags, dtype=np.uint8)
    _put_be(frames, t + 14, window, 2)
    if options:
        frames[:, t + TCP_LEN : t + tcp_hlen] = np.frombuffer(options, dtype=np.uint8)
    if payload is not None and maxpay:
        frames[:, t + tcp_hlen :] = payload

    csum = _fold(_pseudo(link, daddr, 6, np.uint64(tcp_hlen) + plen) + _sum16(frames, t, slot))
    _put_be(frames, t + 16, csum, 2)
    lengths = (np.uint64(ETH_LEN) + ip_total).astype(np.uint32)
    return frames, lengths


def udp_frames(
    link: LinkParams,
    daddr: np.ndarray,
    dport: np.ndarray,
    sport: np.ndarray,
    payload: np.ndarray,
    ipid: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """n UDP datagrams of one payload length (payload: (n, len) uint8)."""
    n, plen = int(payload.shape[0]), int(payload.shape[1])
    u = link.l4_off  # the L4 header starts where TCP's would
    slot = u + 8 + plen
    frames = np.zeros((n, slot), dtype=np.uint8)
    if n == 0:
        return frames, np.zeros(0, dtype=np.uint32)
    _l2_l3(frames, link, daddr, 17, np.full(n, link.ip_len + 8 + plen, dtype=np.uint64), ipid)
    _put_be(frames, u, sport, 2)
    _put_be(frames, u + 2, dport, 2)
    _put_be(frames, u + 4, 8 + plen, 2)
    frames[:, u + 8 :] = payload
    csum = _fold(_pseudo(link, daddr, 17, np.full(n, 8 + plen, dtype=np.uint64)) + _sum16(frames, u, slot))
    csum[csum == 0] = 0xFFFF  # 0 means "no checksum" in UDP
    _put_be(frames, u + 6, csum, 2)
    return frames, np.full(n, slot, dtype=np.uint32)


def udp_checksums(
    link: LinkParams, daddr: np.ndarray, dport: np.ndarray, sport: np.ndarray, payload: np.ndarray
) -> np.ndarray:
    """The UDP checksums `udp_frames` would write (to validate quoted headers in ICMP errors)."""
    frames, _ = udp_frames(link, daddr, dport, sport, payload, np.zeros(len(payload), dtype=np.uint64))
    u = link.l4_off
    return (frames[:, u + 6].astype(np.uint32) << 8) | frames[:, u + 7]


def icmp_echo_frames(
    link: LinkParams, daddr: np.ndarray, ident: np.ndarray, seq: np.ndarray, data: bytes
) -> tuple[np.ndarray, np.ndarray]:
    """n ICMP echo requests with the given id/seq (the cookie) and fixed data (ICMPv6 echo
    requests on an IPv6 link: their checksum covers the pseudo header)."""
    n = int(np.asarray(daddr).shape[0])
    i = link.l4_off
    slot = i + 8 + len(data)
    frames = np.zeros((n, slot), dtype=np.uint8)
    if n == 0:
        return frames, np.zeros(0, dtype=np.uint32)
    v6 = link.family == 6
    proto = ICMPV6 if v6 else 1
    _l2_l3(frames, link, daddr, proto, np.full(n, link.ip_len + 8 + len(data), dtype=np.uint64), seq)
    frames[:, i] = 128 if v6 else 8  # echo request
    _put_be(frames, i + 4, ident, 2)
    _put_be(frames, i + 6, seq, 2)
    if data:
        frames[:, i + 8 :] = np.frombuffer(data, dtype=np.uint8)
    total = _sum16(frames, i, slot)
    if v6:
        total = total + _pseudo(link, daddr, proto, np.full(n, 8 + len(data), dtype=np.uint64))
    _put_be(frames, i + 2, _fold(total), 2)
    return frames, np.full(n, slot, dtype=np.uint32)


def syn_frames(
    link: LinkParams, daddr: np.ndarray, dport: np.ndarray, sport: np.ndarray, seq: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    return tcp_frames(link, daddr, dport, sport, seq, 0, SYN, 65535, options=SYN_OPTIONS)


def payload_matrix(payloads: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Pack variable-length payloads into a zero-padded (n, maxlen) matrix."""
    lens = np.fromiter((len(p) for p in payloads), dtype=np.uint64, count=len(payloads))
    width = int(lens.max()) if len(payloads) else 0
    mat = np.zeros((len(payloads), width), dtype=np.uint8)
    for i, p in enumerate(payloads):
        if p:
            mat[i, : len(p)] = np.frombuffer(p, dtype=np.uint8)
    return mat, lens


_FLAG_NAMES = ((SYN, "S"), (ACK, "A"), (RST, "R"), (FIN, "F"), (PSH, "P"))


def describe(frame: bytes) -> str:
    """One human-readable line for --dry-run."""
    ip = frame[IP_OFF:]
    if ip[0] >> 4 == 6:
        # As IPv4's fields: protocol, TTL and total length where describe() reads them below.
        src6, dst6 = ipaddress.IPv6Address(ip[8:24]), ipaddress.IPv6Address(ip[24:40])
        total = (int.from_bytes(ip[4:6], "big") + IP6_LEN).to_bytes(2, "big")
        proto = 1 if ip[6] == ICMPV6 else ip[6]
        return _describe(f"{src6}", f"{dst6}", ip[40:], proto, ip[7], IP6_LEN, total, frame, v6=True)
    ihl = (ip[0] & 0x0F) * 4
    src = ipaddress.IPv4Address(ip[12:16])
    dst = ipaddress.IPv4Address(ip[16:20])
    return _describe(f"{src}", f"{dst}", ip[ihl:], ip[9], ip[8], ihl, ip[2:4], frame)


def _describe(
    src: str,
    dst: str,
    l4: bytes,
    proto: int,
    ttl: int,
    ihl: int,
    total: bytes,
    frame: bytes,
    v6: bool = False,
) -> str:
    if v6:
        src, dst = f"[{src}]", f"[{dst}]"
    if proto == 17:
        sport, dport, ulen = (int.from_bytes(l4[i : i + 2], "big") for i in (0, 2, 4))
        return f"UDP {src}:{sport} -> {dst}:{dport} len={ulen - 8} ttl={ttl} data={bytes(l4[8:ulen]).hex()}"
    if proto == 1:
        ident, seq = int.from_bytes(l4[4:6], "big"), int.from_bytes(l4[6:8], "big")
        return f"ICMP{'v6' if v6 else ''} echo {src} -> {dst} id={ident:#06x} seq={seq:#06x} ttl={ttl}"
    tcp = l4
    flags = "".join(name for bit, name in _FLAG_NAMES if tcp[13] & bit)
    sport = int.from_bytes(tcp[0:2], "big")
    dport = int.from_bytes(tcp[2:4], "big")
    seq = int.from_bytes(tcp[4:8], "big")
    ack = int.from_bytes(tcp[8:12], "big")
    win = int.from_bytes(tcp[14:16], "big")
    thl = (tcp[12] >> 4) * 4
    plen = int.from_bytes(total, "big") - ihl - thl
    dmac = ":".join(f"{b:02x}" for b in frame[0:6])
    return (
        f"TCP [{flags}] {src}:{sport} -> {dst}:{dport} seq={seq:#010x} ack={ack:#010x} "
        f"win={win} ttl={ttl} len={plen} dmac={dmac}"
    )
