"""User-space mirror of bpf/shared.h.

The numpy dtypes and constants here are the Python half of the one shared
definition: the BPF program is compiled with every struct's size and member
offsets and every shared constant's value (record kinds, counters, repeat
codes, event flags, size limits) as static asserts (cchecks.py), so the two
sides cannot drift.
"""

from __future__ import annotations

import enum
import socket

import numpy as np

from . import cchecks, packets
from .targets import ADDR6_DTYPE, addr6_ints

# Bytes of a data segment a banner record keeps (ZB_DATA_MAX).
DATA_MAX = 1024


class Kind(enum.IntEnum):
    SYNACK = 1
    RST = 2
    ZEROWIN = 3
    BANNER = 4
    ICMP = 5
    UDP = 6
    ECHOREPLY = 7
    FIN = 8  # multi-step probes: the server closed without answering (not a record of its own)
    ACKED = 9  # multi-step probes: the server acknowledged our whole request (not a record of its own)


CLASSIFICATION = {
    Kind.SYNACK: "synack",
    Kind.RST: "rst",
    Kind.ZEROWIN: "zerowin",
    Kind.BANNER: "banner",
    Kind.UDP: "udp",
    Kind.ECHOREPLY: "echoreply",
}


class Counter(enum.IntEnum):
    RX = 0
    PASS = 1
    SYNACK = 2
    RST = 3
    ZEROWIN = 4
    BANNER = 5
    REPEAT = 6
    BAD_COOKIE = 7
    RINGBUF_FULL = 8
    IGNORED = 9
    ICMP = 10
    UDP = 11
    ECHOREPLY = 12
    RST_UNVALIDATED = 13
    KERNEL_REPLIES = 14
    NO_ROOM = 15
    FIN = 16
    ACKED = 17


N_COUNTERS = 18
# zb_probe_info.flags
PROBE_ACKS = 0x01  # report a pure ACK of the whole probe (Kind.ACKED): multi-step probes (steps.py)
EV_UNVALIDATED = 0x01
EV_ANSWERED = 0x02

# zb_event.repeat: 0 for a first reply, else why it came again.
REPEAT_DUP = 1  # a network duplicate: recorded only with --output-repeats
REPEAT_RETRANSMIT = 2  # the server retransmitted: our answer was lost, answer again

ICMP_CLASSES = {
    3: "icmp-unreach",
    4: "icmp-srcquench",
    5: "icmp-redirect",
    11: "icmp-timxceed",
    12: "icmp-paramprob",
}

# ICMPv6 errors (an IPv6 scan's icmp_type and icmp_code are ICMPv6's): the same classes where there is
# one; packet too big (2) has its own (IPv4 says it as unreachable, code 4).
ICMP6_CLASSES = {1: "icmp-unreach", 2: "icmp-toobig", 3: "icmp-timxceed", 4: "icmp-paramprob"}

EVENT_DTYPE = np.dtype(
    [
        ("ts_ns", "<u8"),
        ("saddr", "<u4"),
        ("daddr", "<u4"),
        ("seq", "<u4"),
        ("ack", "<u4"),
        ("icmp_responder", "<u4"),
        ("sport", "<u2"),
        ("dport", "<u2"),
        ("window", "<u2"),
        ("ipid", "<u2"),
        ("data_len", "<u2"),
        ("payload_len", "<u2"),
        ("ttl", "u1"),
        ("kind", "u1"),
        ("tcp_flags", "u1"),
        ("icmp_type", "u1"),
        ("icmp_code", "u1"),
        ("repeat", "u1"),
        ("variant", "u1"),
        ("flags", "u1"),
    ]
)
EVENT_SIZE = EVENT_DTYPE.itemsize
BANNER_EVENT_SIZE = EVENT_SIZE + DATA_MAX

assert EVENT_SIZE == 48, "zb_event must stay 8-byte aligned and packed"

# An IPv6 scan's events (shared.h, ZB_IPV6): the same 48 bytes, then the whole addresses, in
# network order as targets.ADDR6_DTYPE holds them (so ev["saddr6"] is a batch of targets).
EVENT6_DTYPE = np.dtype(
    [
        *((n, EVENT_DTYPE.fields[n][0]) for n in EVENT_DTYPE.names),
        ("saddr6", ADDR6_DTYPE),
        ("icmp_responder6", ADDR6_DTYPE),
    ]
)
assert EVENT6_DTYPE.itemsize == 80, "zb_event (IPv6) must stay 8-byte aligned and packed"


def event_dtype(family: int) -> np.dtype:
    """The ring records of a scan of this address family."""
    return EVENT6_DTYPE if family == 6 else EVENT_DTYPE


def banner_dtype(family: int) -> np.dtype:
    return np.dtype([("h", event_dtype(family)), ("data", "u1", (DATA_MAX,))])


# Bytes of a banner the short ring's records keep (ZB_SHORT_MAX): a banner that fits goes there
# when the scan has that ring (bpfprog.ProgParams.short_pages).
SHORT_MAX = 256


def short_dtype(family: int) -> np.dtype:
    return np.dtype([("h", event_dtype(family)), ("data", "u1", (SHORT_MAX,))])


# The longest fixed payload the program answers a SYN-ACK with itself (--kernel-replies).
KPAYLOAD_MAX = 1024
# In-kernel reply templates (kpayload.py): per probe one per length of the address's text (dotted
# IPv4 7-15, RFC 5952 IPv6 2-39), and the per-target pseudo-random ranges the program fills.
KP_VARIANTS = 40
KP_RANGES = 4
KP_RANGE_MAX = 32
KP_NONE = 0xFFFF
# The SYN the kernel-side generator sends: Ethernet, IPv4, TCP with the MSS option (ZB_GEN_FRAME);
# IPv6 (an IPv6 scan's program): Ethernet, IPv6, the same TCP.
GEN_FRAME = packets.TCP_OFF + packets.TCP_LEN + len(packets.SYN_OPTIONS)
GEN_FRAME6 = packets.TCP6_OFF + packets.TCP_LEN + len(packets.SYN_OPTIONS)

# The maps user space writes or reads element by element (one struct each).
CONFIG_DTYPE = np.dtype([("k0", "<u8"), ("k1", "<u8")])
PROBE_INFO_DTYPE = np.dtype(
    [
        ("base", "<u4"),
        ("plus_ip_strlen", "u1"),
        ("proto", "u1"),
        ("cookie_len", "u1"),
        ("flags", "u1"),
        ("reply_cookie_off", "<u2"),
        ("udp_len", "<u2"),
        ("udp_tmpl_sum", "<u4"),
        ("cookie_off", "<u2"),
        ("pad3", "<u2"),
    ]
)
KPAYLOAD_DTYPE = np.dtype(
    [
        ("enabled", "<u4"),
        ("len", "<u4"),
        ("csum", "<u4"),
        ("handshake", "<u4"),
        ("seed", "<u8"),
        ("ip_at", "<u2"),
        ("range_at", "<u2", (KP_RANGES,)),
        ("range_len", "<u2", (KP_RANGES,)),
        ("pad", "<u2"),
        ("pad2", "<u4"),
        ("data", "u1", (KPAYLOAD_MAX,)),
    ]
)
GEN_TARGET_DTYPE = np.dtype([("daddr_raw", "<u4"), ("dport_raw", "<u2"), ("variant", "u1"), ("pad", "u1")])
GEN_TEMPLATE_DTYPE = np.dtype([("frame", "u1", (64,))])
GEN_TARGET6_DTYPE = np.dtype(
    [*((n, GEN_TARGET_DTYPE.fields[n][0]) for n in GEN_TARGET_DTYPE.names), ("daddr6", ADDR6_DTYPE)]
)
GEN_TEMPLATE6_DTYPE = np.dtype([("frame", "u1", (80,))])


def gen_target_dtype(family: int) -> np.dtype:
    """The kernel generator's target records (gen_targets) of a program of this family."""
    return GEN_TARGET6_DTYPE if family == 6 else GEN_TARGET_DTYPE


GEN_STATE_DTYPE = np.dtype([("next", "<u8"), ("end", "<u8"), ("sent", "<u8")])

DEDUP_WAYS = 16
DEDUP_SLOT_DTYPE = np.dtype(
    [("saddr", "<u4"), ("ports", "<u4"), ("kind", "<u4"), ("first_t", "<u4"), ("answered_t", "<u4")]
)
DEDUP_SLOT6_DTYPE = np.dtype(
    [*((n, DEDUP_SLOT_DTYPE.fields[n][0]) for n in DEDUP_SLOT_DTYPE.names), ("saddr_hi", "<u4", (3,))]
)


def dedup_index(
    saddr_raw: np.ndarray,
    sport: np.ndarray,
    key_port: np.ndarray,
    kind: np.ndarray,
    buckets: int,
    saddr_hi: np.ndarray | None = None,
) -> np.ndarray:
    """The duplicate filter's bucket of each key, as bpf/xdp_recv.c dedup_bucket() computes it
    (MurmurHash3's 64-bit finalizer over the key; a connection's kinds share one bucket).
    saddr_raw: the event's address (raw); saddr_hi: an IPv6 key's first 12 address bytes as three
    raw u32 (shape (n, 3))."""
    u = np.uint64
    with np.errstate(over="ignore"):
        h = saddr_raw.astype(u) | ((sport.astype(u) | (key_port.astype(u) << u(16))) << u(32))
        if saddr_hi is not None:
            hi = saddr_hi.astype(u)
            h ^= (hi[:, 0] | (hi[:, 1] << u(32))) * u(0x9E3779B97F4A7C15)
            h ^= hi[:, 2] * u(0xC2B2AE3D27D4EB4F)
        # A connection's SYN-ACK, zero-window SYN-ACK and banner share a bucket (the C says why).
        apart = ~np.isin(kind, (Kind.SYNACK, Kind.ZEROWIN, Kind.BANNER))
        h ^= np.where(apart, kind.astype(u) * u(0x165667B19E3779F9), u(0))
        h ^= h >> u(33)
        h *= u(0xFF51AFD7ED558CCD)
        h ^= h >> u(33)
        h *= u(0xC4CEB9FE1A85EC53)
        h ^= h >> u(33)
    return (h & u(buckets - 1)).astype(np.int64)


SHARED_STRUCTS = {
    "zb_event": EVENT_DTYPE,
    "zb_config": CONFIG_DTYPE,
    "zb_probe_info": PROBE_INFO_DTYPE,
    "zb_kpayload": KPAYLOAD_DTYPE,
    "zb_gen_target": GEN_TARGET_DTYPE,
    "zb_gen_template": GEN_TEMPLATE_DTYPE,
    "zb_gen_state": GEN_STATE_DTYPE,
    "zb_dedup_slot": DEDUP_SLOT_DTYPE,
}


def host_addrs(raw: np.ndarray) -> np.ndarray:
    """Event addresses (raw: the packet's bytes read as a little-endian u32) as host-order numbers."""
    return raw.astype(np.uint32).byteswap()


def event_targets(ev: np.ndarray) -> np.ndarray:
    """A batch's targets as the frame builders and cookies take them: host-order u32 (IPv4), or
    targets.ADDR6_DTYPE records (an IPv6 scan's events)."""
    if ev.dtype.names is not None and "saddr6" in ev.dtype.names:
        return np.ascontiguousarray(ev["saddr6"])
    return host_addrs(ev["saddr"])


def target_texts(ev: np.ndarray) -> list[str]:
    """A batch's targets as text (dotted, or IPv6 as the records write it)."""
    if ev.dtype.names is not None and "saddr6" in ev.dtype.names:
        from .addrtext import ipv6_texts

        return ipv6_texts(ev["saddr6"])
    return [addr_text(a) for a in ev["saddr"].tolist()]


def event_key(e: np.void) -> int:
    """One event's target as an int (a table's key): the raw IPv4 word, or the 128-bit IPv6 address."""
    if "saddr6" in e.dtype.names:
        a = e["saddr6"]
        return (int(a["hi"]) << 64) | int(a["lo"])
    return int(e["saddr"])


def event_keys(ev: np.ndarray) -> list[int]:
    """event_key of each event of a batch."""
    if ev.dtype.names is not None and "saddr6" in ev.dtype.names:
        return addr6_ints(ev["saddr6"])
    return [int(a) for a in ev["saddr"].tolist()]


def key_text(key: int, family: int) -> str:
    """An event_key as the records write the address."""
    if family == 6:
        from .addrtext import ipv6_texts
        from .targets import addr6_array

        return ipv6_texts(addr6_array([key]))[0]
    return addr_text(key)


def key_targets(keys: list[int], family: int) -> np.ndarray:
    """event_keys as the frame builders and cookies take targets (event_targets' form)."""
    if family == 6:
        from .targets import addr6_array

        return addr6_array(keys)
    return host_addrs(np.array(keys, dtype=np.uint32))


def addr_text(raw: int) -> str:
    """One raw event address as dotted text."""
    return socket.inet_ntoa(int(raw).to_bytes(4, "little"))


def pack(dtype: np.dtype, **fields: object) -> bytes:
    """One struct's bytes, unnamed fields zero."""
    rec = np.zeros((), dtype=dtype)
    for name, value in fields.items():
        rec[name] = value
    return rec.tobytes()


def unpack(dtype: np.dtype, raw: bytes) -> np.void:
    return np.frombuffer(raw[: dtype.itemsize], dtype=dtype)[0]


def shared_constants() -> dict[str, int]:
    """Every constant of shared.h user space relies on, by its C name, with the value it relies on."""
    return {
        **{f"ZB_KIND_{k.name}": int(k) for k in Kind},
        **{f"ZB_CNT_{c.name}": int(c) for c in Counter},
        "ZB_CNT_MAX": N_COUNTERS,
        "ZB_REPEAT_DUP": REPEAT_DUP,
        "ZB_REPEAT_RETRANSMIT": REPEAT_RETRANSMIT,
        "ZB_EV_UNVALIDATED": EV_UNVALIDATED,
        "ZB_EV_ANSWERED": EV_ANSWERED,
        "ZB_PROBE_ACKS": PROBE_ACKS,
        "ZB_DATA_MAX": DATA_MAX,
        "ZB_SHORT_MAX": SHORT_MAX,
        "ZB_KPAYLOAD_MAX": KPAYLOAD_MAX,
        "ZB_KP_VARIANTS": KP_VARIANTS,
        "ZB_KP_RANGES": KP_RANGES,
        "ZB_KP_RANGE_MAX": KP_RANGE_MAX,
        "ZB_KP_NONE": KP_NONE,
        "ZB_DEDUP_WAYS": DEDUP_WAYS,
        "ZB_GEN_FRAME": GEN_FRAME,
    }


def bpf_check_cflags(family: int = 4) -> list[str]:
    """The -D flag that makes shared.h assert these layouts (sizes, every offset) and constants,
    those of a program compiled for `family` (ZB_IPV6)."""
    constants = {**shared_constants(), "ZB_IPV6": int(family == 6)}
    structs = dict(SHARED_STRUCTS)
    if family == 6:
        constants["ZB_GEN_FRAME"] = GEN_FRAME6
        structs.update(
            zb_event=EVENT6_DTYPE,
            zb_dedup_slot=DEDUP_SLOT6_DTYPE,
            zb_gen_target=GEN_TARGET6_DTYPE,
            zb_gen_template=GEN_TEMPLATE6_DTYPE,
        )
    structs.update(zb_banner_event=banner_dtype(family), zb_short_event=short_dtype(family))
    checks = cchecks.values(constants, "events.py")
    for struct, dt in structs.items():
        checks += cchecks.layout(struct, dt.itemsize, ((n, dt.fields[n][1]) for n in dt.names), "events.py")
    return [cchecks.define("ZB_SHARED_CHECKS", checks)]
