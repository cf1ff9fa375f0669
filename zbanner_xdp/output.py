"""Streamed JSON-lines results with a fixed schema (ZMap-compatible names)."""

from __future__ import annotations

import errno
import sys
from typing import IO, Any

import orjson

# Every record carries every field, null where it does not apply, so
# downstream tools see one schema whatever the reply type.
BASE_FIELDS = (
    "saddr",
    "sport",
    "daddr",
    "dport",
    "classification",
    "success",
    "repeat",
    "timestamp",
    "ttl",
    "window",
    "ipid",
    "seqnum",
    "acknum",
    "tcp_flags",
    "probe",
    "icmp_type",
    "icmp_code",
    "icmp_responder",
    "banner",
    "data",
    "validated",
    "attempt",
    "tarpit_probe",
    "app_match",
)


class OutputError(RuntimeError):
    pass


def select_fields(available: list[str], wanted: tuple[str, ...] | None) -> list[str]:
    """The record's keys: every available field, or the chosen ones in the chosen order."""
    if wanted is None:
        return available
    unknown = [f for f in wanted if f not in available]
    if unknown or not wanted or len(set(wanted)) != len(wanted):
        bad = ", ".join(unknown) if unknown else "empty or repeated names"
        raise OutputError(f"--output-fields: {bad} (fields: {','.join(available)})")
    return list(wanted)


class RecordWriter:
    def __init__(
        self, path: str | None, probe_fields: list[str] | None = None, fields: tuple[str, ...] | None = None
    ):
        self.path = path
        self.probe_fields = probe_fields or []
        self.fields = select_fields([*BASE_FIELDS, *self.probe_fields], fields)
        self.count = 0
        self._fh: IO[bytes]
        if path is None or path == "-":
            self._fh = sys.stdout.buffer
            self._own = False
        else:
            try:
                self._fh = open(path, "wb")  # noqa: SIM115 - lives as long as the scan
            except OSError as exc:
                raise OutputError(f"cannot open output file '{path}': {exc.strerror}") from None
            self._own = True

    def template(self) -> dict[str, Any]:
        return dict.fromkeys(self.fields)

    def write(self, records: list[dict[str, Any]]) -> None:
        if records:
            self.write_lines(b"".join(orjson.dumps(r) + b"\n" for r in records), len(records))

    def write_lines(self, blob: bytes, count: int) -> None:
        """`count` records already encoded as JSON lines."""
        try:
            self._fh.write(blob)
            self._fh.flush()
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise OutputError("output disk full: stopping the scan") from None
            if exc.errno == errno.EPIPE:
                raise OutputError("output pipe closed: stopping the scan") from None
            raise OutputError(f"cannot write output: {exc.strerror}") from None
        self.count += count

    def close(self) -> None:
        try:
            self._fh.flush()
        except OSError:
            pass
        if self._own:
            try:
                self._fh.close()
            except OSError:
                pass
