"""JSON lines for a batch of records, built column-wise in numpy.

Building one dict per record and handing it to orjson cost ~3 us a record,
which made turning ring-buffer events into output the scanner's ceiling.
Here every line of a batch is a row of one byte matrix: each field is a
block of columns (digits of a number, octets of an address, a word from a
small vocabulary) plus a mask of which of those bytes the row uses. Blocks
are written for all rows at once, straight into the matrix, and the masked
bytes, read row by row, are the lines: `matrix[mask]`. The output is byte
for byte what orjson writes for the same dict (tests check it), so it is
valid JSON whatever the values.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson

from . import fastfmt
from .addrtext import ipv6_text_columns
from .fields import FieldType

_ZERO = np.uint8(ord("0"))
_NULL = np.frombuffer(b"null", np.uint8)
# Filled in build(): (the block's columns of the byte matrix, the same columns of the mask).
Fill = Callable[[np.ndarray, np.ndarray], None]


def _digit_table(limit: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    v = np.arange(limit, dtype=np.uint32)[:, None]
    digits = (v // (10 ** np.arange(width - 1, -1, -1, dtype=np.uint32)) % 10 + _ZERO).astype(np.uint8)
    return digits, _digit_count(v[:, 0], width)


def _digit_count(values: np.ndarray, width: int) -> np.ndarray:
    return np.searchsorted(10 ** np.arange(1, width, dtype=np.uint64), values, side="right") + 1


# Small fields (TTLs, octets, ports, IP ids) are looked up, not divided.
_TABLES = {1: _digit_table(1 << 8, 3), 2: _digit_table(1 << 16, 5)}


def _put_digits(dst: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Decimal digits of `values`, right-aligned in the columns of `dst`; returns how many each has."""
    width = dst.shape[1]
    table = _TABLES.get(values.dtype.itemsize) if values.dtype.kind == "u" else None
    if table is not None:
        digits, counts = table
        k = digits.shape[1]
        np.take(digits, values, axis=0, out=dst[:, width - k :])
        return counts[values]
    v = values.astype(np.uint64)
    pow10 = 10 ** np.arange(width - 1, -1, -1, dtype=np.uint64)
    dst[:] = v[:, None] // pow10 % np.uint64(10) + np.uint64(_ZERO)
    return _digit_count(v, width)


def _mask_right(use: np.ndarray, lens: np.ndarray) -> None:
    w = use.shape[1]
    np.greater_equal(np.arange(w), (w - lens)[:, None], out=use)


def _mask_left(use: np.ndarray, lens: np.ndarray) -> None:
    np.less(np.arange(use.shape[1]), lens[:, None], out=use)


def _null_rows(dst: np.ndarray, use: np.ndarray, valid: np.ndarray | None) -> None:
    """An address block's rows that are not `valid`: null instead."""
    if valid is not None and not valid.all():
        nulls = ~valid
        dst[nulls, :4] = _NULL
        use[nulls] = False
        use[nulls, :4] = True


def _width(dtype: np.dtype) -> int:
    return len(str(np.iinfo(dtype).max)) if dtype.kind in "ui" else 20


class Lines:
    """The fields of `n` records, added in order; `build()` returns the lines."""

    def __init__(self, n: int):
        self.n = n
        # Each field twice: a numpy block (width, fill) and a column for the C formatter.
        self._blocks: list[tuple[int, bytes | Fill]] = []
        self._cols: list[tuple] = []
        self._const = b"{"

    def _flush(self) -> None:
        if self._const:
            self._blocks.append((len(self._const), self._const))
            self._cols.append((fastfmt.CONST, self._const))
            self._const = b""

    def _add(self, width: int, fill: Fill, col: tuple) -> None:
        self._flush()
        self._blocks.append((width, fill))
        self._cols.append(col)

    # -- fields ----------------------------------------------------------------
    def put(
        self,
        ftype: FieldType,
        values: Any,
        valid: np.ndarray | None = None,
        vocab: Sequence[object] | None = None,
    ) -> None:
        """One field's values, written as its type in the output table (fields.py) says.

        `valid` (numbers and addresses): null where False; `vocab` (words): what the codes index;
        text and objects come already JSON-encoded, one per row.
        """
        assert valid is None or ftype in (FieldType.UINT, FieldType.IP), "null masks: numbers, addresses"
        if ftype is FieldType.UINT:
            self.ints(values, valid)
        elif ftype is FieldType.IP and values.dtype.names:  # an IPv6 scan's (targets.ADDR6_DTYPE)
            self.ipv6(values, valid)
        elif ftype is FieldType.IP:
            self.dotted(values, valid)
        elif ftype is FieldType.BOOL:
            self.bools(values)
        elif ftype is FieldType.WORD:
            assert vocab is not None
            self.words(values, vocab)
        elif ftype is FieldType.TIME:
            self.timestamps(values)
        else:
            self.raw(values)

    def key(self, name: str, first: bool = False) -> None:
        self._const += (b"" if first else b",") + orjson.dumps(name) + b":"

    def const(self, raw: bytes) -> None:
        self._const += raw

    def ints(self, values: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Non-negative integers; null where not `valid`."""
        width = max(_width(values.dtype), 4 if valid is not None else 1)

        def fill(dst: np.ndarray, use: np.ndarray) -> None:
            lens = _put_digits(dst, values)
            if valid is not None and not valid.all():
                nulls = ~valid
                dst[nulls, width - 4 :] = _NULL
                lens[nulls] = 4
            _mask_right(use, lens)

        self._add(width, fill, (fastfmt.UINT, values, valid))

    def words(self, codes: np.ndarray, vocab: Sequence[object]) -> None:
        """One of a few values per row (strings, booleans, null), by index into `vocab`."""
        self._word_rows(codes, [orjson.dumps(v) for v in vocab])

    def _word_rows(self, codes: np.ndarray, enc: list[bytes]) -> None:
        if len(enc) == 1:
            self.const(enc[0])
            return
        # Each value's length, once: a banner batch's per-record values come here, one per row.
        lens = np.fromiter(map(len, enc), np.uint32, count=len(enc))
        width = int(lens.max())
        idx = np.asarray(codes, np.intp)

        def fill(dst: np.ndarray, use: np.ndarray) -> None:
            table = np.zeros((len(enc), width), np.uint8)
            for i, e in enumerate(enc):
                table[i, : len(e)] = np.frombuffer(e, np.uint8)
            np.take(table, idx, axis=0, out=dst)
            _mask_left(use, lens[idx])

        self._add(width, fill, (fastfmt.WORD, idx, enc, lens))

    def raw(self, encoded: Sequence[bytes]) -> None:
        """One value per row, already JSON-encoded (the per-record parts of banner records)."""
        self._word_rows(np.arange(len(encoded)), list(encoded))

    def bools(self, values: np.ndarray) -> None:
        self.words(np.asarray(values, bool).astype(np.intp), (False, True))

    def dotted(self, raw: np.ndarray, valid: np.ndarray | None = None) -> None:
        """IPv4 addresses as JSON strings, from network-order u32 (as the XDP program stores them)."""
        octets = np.ascontiguousarray(raw, dtype="<u4").view(np.uint8).reshape(-1, 4)

        def fill(dst: np.ndarray, use: np.ndarray) -> None:
            # '"' ddd '.' ddd '.' ddd '.' ddd '"': 17 columns, digits right-aligned per octet.
            dst[:, 0] = dst[:, 16] = ord('"')
            dst[:, 4] = dst[:, 8] = dst[:, 12] = ord(".")
            use[:, 0] = use[:, 16] = use[:, 4] = use[:, 8] = use[:, 12] = True
            for i in range(4):
                c = 1 + 4 * i
                lens = _put_digits(dst[:, c : c + 3], octets[:, i])
                _mask_right(use[:, c : c + 3], lens)
            _null_rows(dst, use, valid)

        self._add(17, fill, (fastfmt.DOTTED, raw, valid))

    def ipv6(self, addrs: np.ndarray, valid: np.ndarray | None = None) -> None:
        """IPv6 addresses as JSON strings of their RFC 5952 text (what zbfmt.c's put_ipv6 writes)."""
        raw = np.ascontiguousarray(addrs).view(np.uint8).reshape(-1, 16)

        def fill(dst: np.ndarray, use: np.ndarray) -> None:
            text, used = ipv6_text_columns(raw)
            dst[:, 1:42] = text
            use[:, 1:42] = used
            dst[:, 0] = dst[:, 42] = ord('"')
            _null_rows(dst, use, valid)

        self._add(43, fill, (fastfmt.IPV6, raw, valid))

    def timestamps(self, ms: np.ndarray) -> None:
        """'"YYYY-MM-DDTHH:MM:SS.mmmZ"' (UTC) from milliseconds since the epoch."""
        ms = ms.astype(np.int64)
        day = ms // 86_400_000
        # The date's width (10 for years 1000-9999), from the extremes: the rest is left to
        # fill(), which the C formatter never calls.
        ends = np.array([day.min(), day.max()] if len(day) else [0]).astype("datetime64[D]")
        dw = max(map(len, np.datetime_as_string(ends, unit="D")))

        def fill(dst: np.ndarray, use: np.ndarray) -> None:
            days, inv = np.unique(day, return_inverse=True)
            dates = np.datetime_as_string(days.astype("datetime64[D]"), unit="D").astype(f"S{dw}")
            table = np.frombuffer(dates.tobytes(), np.uint8).reshape(len(days), dw)
            t = ms - day * 86_400_000
            parts = (
                (t // 3_600_000, 2, "T"),
                (t // 60_000 % 60, 2, ":"),
                (t // 1000 % 60, 2, ":"),
                (t % 1000, 3, "."),
            )
            dst[:, 0] = ord('"')
            np.take(table, inv.reshape(-1), axis=0, out=dst[:, 1 : 1 + dw])
            c = 1 + dw
            for value, width, sep in parts:
                dst[:, c] = ord(sep)
                _put_digits(dst[:, c + 1 : c + 1 + width], value)
                c += 1 + width
            dst[:, c] = ord("Z")
            dst[:, c + 1] = ord('"')

        self._add(dw + 16, fill, (fastfmt.TIME, ms))

    # -- result ----------------------------------------------------------------
    def build(self) -> bytes:
        self._const += b"}\n"
        self._flush()
        if self.n == 0:
            return b""
        lib = fastfmt.load()
        return self._build_c(lib) if lib is not None else self._build_numpy()

    def _build_c(self, lib: object) -> bytes:
        keep: list[object] = []  # what the Col structs point into stays alive until the call returns

        def ptr(a: np.ndarray | bytes) -> int:
            keep.append(a)
            if isinstance(a, bytes):
                return ctypes.cast(ctypes.c_char_p(a), ctypes.c_void_p).value or 0
            return a.ctypes.data

        cols = (fastfmt.Col * len(self._cols))()
        word_widths = 0  # the widest value of each WORD column, summed
        for c, spec in zip(cols, self._cols, strict=True):
            op = c.op = spec[0]
            if op == fastfmt.CONST:
                c.len, c.bytes = len(spec[1]), ptr(spec[1])
                continue
            if op == fastfmt.IPV6:
                c.vals = ptr(np.ascontiguousarray(spec[1]))  # 16 bytes a row: two u64 of network-order bytes
            else:
                vals = np.ascontiguousarray(spec[1], dtype=np.uint64 if op != fastfmt.DOTTED else "<u4")
                c.vals = ptr(vals.astype(np.uint64) if op == fastfmt.DOTTED else vals)
            valid = spec[2] if op in (fastfmt.UINT, fastfmt.DOTTED, fastfmt.IPV6) else None
            if valid is not None:
                c.valid = ptr(np.ascontiguousarray(valid, dtype=np.uint8))
            if op == fastfmt.WORD:
                words, lens = spec[2], spec[3]
                offs = np.zeros(len(words) + 1, np.uint32)
                np.cumsum(lens, out=offs[1:])
                c.len = len(words)
                c.bytes = ptr(b"".join(words))
                c.offs = ptr(offs)
                word_widths += int(lens.max())
        widest = {fastfmt.UINT: 20, fastfmt.DOTTED: 17, fastfmt.TIME: 26, fastfmt.IPV6: 41}
        width = sum(c.len if c.op == fastfmt.CONST else widest.get(c.op, 0) for c in cols) + word_widths
        out = np.empty(self.n * width, np.uint8)
        used = lib.zb_format(cols, len(cols), self.n, out.ctypes.data)  # type: ignore[attr-defined]
        return out[:used].tobytes()

    def _build_numpy(self) -> bytes:
        width = sum(w for w, _ in self._blocks)
        out = np.empty((self.n, width), np.uint8)
        use = np.ones((self.n, width), bool)
        col = 0
        for w, block in self._blocks:
            if isinstance(block, bytes):
                out[:, col : col + w] = np.frombuffer(block, np.uint8)
            else:
                block(out[:, col : col + w], use[:, col : col + w])
            col += w
        return out[use].tobytes()
