"""The output fields, described once: name, type, which layer or probe fills it, what it means.

Every record carries every field of FIELDS, null where its source does not
apply, then one field per probe of the scan that parses its answers (the
parsed fields, under the probe's name). This table drives the record's field
list (and -f), the JSON-lines formatter (a field's type picks how its column
is written, jsonlines.Lines.put), `zbanner-xdp probes --fields` and the
README's field list (tests/unit/test_fields.py fails when the two disagree).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .events import DATA_MAX


class FieldType(enum.Enum):
    """How a field's value is written (see jsonlines.Lines.put); the label is the JSON users see."""

    IP = ("ip", "IPv4/IPv6")  # a string: the dotted quad, or IPv6 text (RFC 5952) in an IPv6 scan
    UINT = ("uint", "integer")
    BOOL = ("bool", "boolean")
    WORD = ("word", "string")  # one of a few words (listed in the description)
    TIME = ("time", "time")  # a string: ISO 8601, milliseconds, UTC
    TEXT = ("text", "string")  # any string, JSON-escaped per record
    OBJECT = ("object", "object")

    def __init__(self, _key: str, label: str) -> None:
        self.label = label


class Source(enum.Enum):
    """Which records fill a field: the others have null there."""

    IP = ("IP", "every record: the reply's IP header")
    SCAN = ("scanner", "every record: the scanner's reading of the reply")
    PORTS = ("TCP/UDP", "replies to TCP and UDP probes and the ICMP errors quoting them")
    TCP = ("TCP", "TCP replies: SYN-ACK, zero-window SYN-ACK, RST, banner")
    ICMP = ("ICMP", "ICMP errors")
    DATA = ("data", "the records that carry data: banners and UDP replies")
    PROBE = ("probe", "the records of that probe that carry data")
    STEPS = ("steps", "the one record of a multi-connection probe's target (jarm, lzr): its steps gathered")

    def __init__(self, label: str, meaning: str) -> None:
        self.label = label
        self.meaning = meaning


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    source: Source
    description: str
    # The zb_event member the value is, as it is (None: the receiver derives it).
    event: str | None = None
    # In every results file the scanner ever wrote, so `report` refuses a record without it; a field
    # added later says False, and files written before it stay readable.
    required: bool = True


T, S = FieldType, Source
FIELDS: tuple[Field, ...] = (
    Field("saddr", T.IP, S.IP, "the target (of an ICMP error: the quoted probe's destination)", "saddr"),
    Field("sport", T.UINT, S.PORTS, "the target's port", "sport"),
    Field("daddr", T.IP, S.IP, "our address", "daddr"),
    Field("dport", T.UINT, S.PORTS, "our port, the probe's source port", "dport"),
    Field(
        "classification",
        T.WORD,
        S.SCAN,
        "synack, rst, zerowin, banner, udp, echoreply, icmp-unreach, icmp-timxceed, icmp-redirect, "
        "icmp-srcquench, icmp-paramprob, icmp-toobig (ICMPv6's packet too big)",
    ),
    Field("success", T.BOOL, S.SCAN, "a positive answer: synack, banner, udp or echoreply"),
    Field("repeat", T.BOOL, S.SCAN, "a reply seen before (written only with --output-repeats)"),
    Field("timestamp", T.TIME, S.SCAN, "when the XDP program saw the reply"),
    Field("ttl", T.UINT, S.IP, "the reply's TTL", "ttl"),
    Field("window", T.UINT, S.TCP, "the TCP window", "window"),
    Field("ipid", T.UINT, S.IP, "the IP identification", "ipid"),
    Field("seqnum", T.UINT, S.TCP, "the TCP sequence number", "seq"),
    Field("acknum", T.UINT, S.TCP, "the TCP acknowledgement number", "ack"),
    Field("tcp_flags", T.UINT, S.TCP, "the TCP flags (FIN 1, SYN 2, RST 4, PSH 8, ACK 16)", "tcp_flags"),
    Field("probe", T.WORD, S.SCAN, "the probe module the reply answers"),
    Field("icmp_type", T.UINT, S.ICMP, "the ICMP type", "icmp_type"),
    Field("icmp_code", T.UINT, S.ICMP, "the ICMP code", "icmp_code"),
    Field(
        "icmp_responder", T.IP, S.ICMP, "who sent the ICMP error: the target, or a router", "icmp_responder"
    ),
    Field(
        "banner",
        T.TEXT,
        S.DATA,
        "the first segment (with --banner-bytes: the answer, reassembled) or datagram as text, "
        "undecodable bytes escaped",
    ),
    Field("data", T.TEXT, S.DATA, "base64 of the raw first segment (--banner-bytes: answer) or datagram"),
    Field(
        "truncated",
        T.BOOL,
        S.DATA,
        f"the segment was longer than the {DATA_MAX:,} bytes a record keeps (possible with a large "
        "--ack-window); with --banner-bytes, the answer ended before it was complete (the limit, the "
        "table's cap, a quiet connection, the scan's end): what it holds is still the server's bytes, "
        "in order",
        required=False,
    ),
    Field("validated", T.BOOL, S.SCAN, "false for a bare RST, matched only by its port", required=False),
    Field(
        "attempt",
        T.UINT,
        S.SCAN,
        "the copy of the probe answered (--retransmit): 0 is the first",
        required=False,
    ),
    Field("tarpit_probe", T.BOOL, S.SCAN, "the reply answers the --tarpit-check port", required=False),
    Field("app_match", T.BOOL, S.DATA, "the data parsed as the probed protocol", required=False),
    Field(
        "incomplete",
        T.BOOL,
        S.STEPS,
        "not every step the probe wanted came back: the scan ended, the table was full, a fault hid one",
        required=False,
    ),
)
del T, S

NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
REQUIRED: tuple[str, ...] = tuple(f.name for f in FIELDS if f.required)
_BY_NAME = {f.name: f for f in FIELDS}


def probe_field(probe: Any) -> Field:
    """The field a probe that parses its answers adds: its parsed fields, under its name."""
    text = ", ".join(probe.fields)
    extra = [f for f in getattr(probe, "segment_fields", ()) if f not in probe.fields]
    if extra:
        text += f"; with --banner-bytes also {', '.join(extra)}"
    return Field(probe.name, FieldType.OBJECT, Source.PROBE, text, required=False)


def field(name: str) -> Field:
    """The field called `name`: one of FIELDS, else a probe's."""
    found = _BY_NAME.get(name)
    if found is not None:
        return found
    return Field(name, FieldType.OBJECT, Source.PROBE, f"the {name} probe's parsed fields", required=False)


# The README's row for the probes' fields (`zbanner-xdp probes --fields` lists them one by one).
_ANY_PROBE = Field(
    "‹probe›",
    FieldType.OBJECT,
    Source.PROBE,
    'the probe\'s parsed fields, under its name ("http": {…}); `zbanner-xdp probes --fields` lists them',
    required=False,
)


def markdown() -> str:
    """The README's field list: a table of FIELDS, then what each source means."""
    rows = ["| field | type | filled by | description |", "|---|---|---|---|"]
    rows += [
        f"| `{f.name}` | {f.type.label} | {f.source.label} | {f.description} |" for f in (*FIELDS, _ANY_PROBE)
    ]
    rows += ["", "Filled by (null in every other record):", ""]
    rows += [f"- {s.label}: {s.meaning}" for s in Source]
    return "\n".join(rows) + "\n"


def text(probes: Iterable[Any]) -> str:
    """`zbanner-xdp probes --fields`: FIELDS, then the field of each probe that parses its answers."""
    listed = [*FIELDS, *(probe_field(p) for p in probes if p.kind.parses)]
    width = max(len(f.name) for f in listed)
    lines = [f"{f.name:<{width}}  {f.type.label:<7}  {f.source.label:<7}  {f.description}" for f in listed]
    lines += ["", "filled by (null in every other record):"]
    lines += [f"  {s.label:<7}  {s.meaning}" for s in Source]
    return "\n".join(lines) + "\n"
