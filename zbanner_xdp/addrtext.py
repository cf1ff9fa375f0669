"""IPv6 addresses as text, vectorised: RFC 5952 (Python's ipaddress writes the same), for the
records (jsonlines.Lines.ipv6; zbfmt.c put_ipv6 is the C twin) and the probe payloads that carry the
target's address (whose length the XDP program computes: bpf/xdp_recv.c text6_len)."""

from __future__ import annotations

import numpy as np

_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)


def ipv6_text_columns(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RFC 5952 text of IPv6 addresses (rows of 16 network-order bytes), column-wise: 41 columns
    per row (a leading ':', eight groups of 4 hex digits each followed by a separator column, the
    last one a trailing ':') and which of them the text uses. Groups lose their leading zeros; the
    first longest run of two or more zero groups becomes "::" (the leading column when it starts
    the address, the trailing one when it ends it, the separator after its last group otherwise)."""
    n = len(raw)
    groups = (raw[:, 0::2].astype(np.uint32) << 8) | raw[:, 1::2]
    best_len = np.ones(n, np.int64)
    best_end = np.full(n, -1, np.int64)
    run = np.zeros(n, np.int64)
    for i in range(8):
        run = np.where(groups[:, i] == 0, run + 1, 0)
        longer = run > best_len
        best_len = np.where(longer, run, best_len)
        best_end = np.where(longer, i, best_end)
    has = best_end >= 0
    start = np.where(has, best_end - best_len + 1, 8)
    stop = np.where(has, best_end + 1, 8)
    idx = np.arange(8)
    inside = (idx >= start[:, None]) & (idx < stop[:, None])
    text = np.full((n, 41), ord(":"), np.uint8)
    used = np.zeros((n, 41), bool)
    used[:, 0] = has & (start == 0)
    digits = 1 + (groups >= 0x10).astype(np.int64) + (groups >= 0x100) + (groups >= 0x1000)
    for i in range(8):
        c = 1 + 5 * i
        g = groups[:, i]
        for k in range(4):
            text[:, c + k] = _HEX[(g >> (4 * (3 - k))) & 0xF]
            used[:, c + k] = ~inside[:, i] & (digits[:, i] >= 4 - k)
        # After a group: ':' unless the group is inside the run (its last group's stands for the
        # run); after the last group, only a run ending the address needs one.
        sep = (~inside[:, i] | (has & (stop - 1 == i))) if i < 7 else has & (stop == 8)
        used[:, c + 4] = sep
    return text, used


def ipv6_texts(addrs: np.ndarray) -> list[str]:
    """IPv6 addresses (targets.ADDR6_DTYPE records) as RFC 5952 text, as the records write them:
    the text a probe payload carries (HTTP's Host:), whose length the XDP program computes."""
    raw = np.ascontiguousarray(addrs).view(np.uint8).reshape(-1, 16)
    text, used = ipv6_text_columns(raw)
    return [row[u].tobytes().decode() for row, u in zip(text, used, strict=True)]
