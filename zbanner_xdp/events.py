"""User-space mirror of bpf/shared.h.

The numpy dtypes here are the Python half of the one shared definition: the
BPF program is compiled with their size and every field offset as -D
defines, and shared.h static-asserts them, so the two sides cannot drift.
"""

from __future__ import annotations

import enum

import numpy as np

DATA_MAX = 1024


class Kind(enum.IntEnum):
    SYNACK = 1
    RST = 2
    ZEROWIN = 3
    BANNER = 4
    ICMP = 5
    UDP = 6
    ECHOREPLY = 7


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


N_COUNTERS = 16
EV_UNVALIDATED = 0x01
EV_ANSWERED = 0x02

ICMP_CLASSES = {
    3: "icmp-unreach",
    4: "icmp-srcquench",
    5: "icmp-redirect",
    11: "icmp-timxceed",
    12: "icmp-paramprob",
}

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


def bpf_layout_cflags() -> list[str]:
    """-D flags that make shared.h assert this exact layout."""
    checks = " ".join(
        f"_Static_assert(__builtin_offsetof(struct zb_event, {name}) == {EVENT_DTYPE.fields[name][1]}, "
        f'"zb_event.{name} offset");'
        for name in EVENT_DTYPE.names
    )
    return [
        f"-DZB_EVENT_SIZE={EVENT_SIZE}",
        f"-DZB_DATA_MAX={DATA_MAX}",
        f"-DZB_OFFSET_CHECKS={checks}",
    ]
