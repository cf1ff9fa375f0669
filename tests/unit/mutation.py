"""A hypothesis strategy shared by the protocol fuzz tests: real answers, cut, patched or padded."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st


@st.composite
def mutated(draw: st.DrawFn, pool: Sequence[bytes], boundary: Sequence[int]) -> bytes:
    """One of `pool`, with 1-4 edits: truncated, a byte set to one of `boundary` (the values that break
    length and type fields), or a few random bytes inserted."""
    data = bytearray(draw(st.sampled_from(list(pool))))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        if not data:
            break
        i = draw(st.integers(min_value=0, max_value=len(data) - 1))
        op = draw(st.sampled_from(["truncate", "set", "insert"]))
        if op == "truncate":
            del data[i:]
        elif op == "set":
            data[i] = draw(st.sampled_from(list(boundary)))
        else:
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)
