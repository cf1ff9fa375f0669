"""Probe base class, registry and shared helpers.

A probe knows two things about one protocol: what to send after the handshake (``payload``) and how to
turn the server's first response into a flat, JSON-serialisable dict (``parse``).  Banners come from the
Internet, so ``parse`` is wrapped in a safety net: a parser bug yields all-None fields instead of
crashing the scanner, and the output is sanitised so ``orjson.dumps`` can never fail on it.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

__all__ = [
    "MAX_LIST_ITEMS",
    "MAX_PARSE_BYTES",
    "MAX_STR_LEN",
    "Probe",
    "ProbeArgError",
    "ProbeKind",
    "StepOutcome",
    "UnknownProbeError",
    "banner_text",
    "first_match",
    "parse_probe_args",
    "parse_reply_lines",
    "range_bytes",
    "sanitise",
    "split_lines",
]

# Bounds on parser input and output: a hostile server must not be able to blow up the result size or make
# a regex run for long.  Real first responses are a few hundred bytes to a few KiB.
MAX_PARSE_BYTES = 64 * 1024
MAX_STR_LEN = 1024
MAX_LIST_ITEMS = 256
_MAX_DEPTH = 8

# orjson only serialises integers that fit in 64 bits.
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


class ProbeArgError(ValueError):
    """Bad ``--probe-args``: unknown key, malformed string or invalid value."""


class UnknownProbeError(ValueError):
    """No probe with that name is registered."""


def banner_text(data: bytes | bytearray | memoryview) -> str:
    """Decode banner bytes as UTF-8, escaping undecodable bytes (``\\xff``) so nothing is lost or raises."""
    return bytes(data).decode("utf-8", errors="backslashreplace")


def _clean_str(s: str) -> str:
    if len(s) > MAX_STR_LEN:
        s = s[:MAX_STR_LEN]
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (e.g. from a surrogateescape decode) are not valid UTF-8 and orjson rejects them.
        s = s.encode("utf-8", errors="backslashreplace").decode("utf-8")[:MAX_STR_LEN]
    return s


def sanitise(value: Any, _depth: int = 0) -> Any:
    """Coerce a parser result into what orjson can always serialise.

    bytes become text, over-long strings and lists are truncated, non-finite floats and out-of-range ints
    are replaced, tuples/sets become lists, dict keys become strings; anything else becomes its ``str()``.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if _INT_MIN <= value <= _INT_MAX:
            return int(value)  # int subclasses (IntEnum) -> plain int
        return _clean_str(str(value))
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _clean_str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _clean_str(banner_text(bytes(value)[: MAX_STR_LEN * 4]))
    if _depth >= _MAX_DEPTH:
        return None
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if len(out) >= MAX_LIST_ITEMS:
                break
            key = sanitise(k, _depth + 1) if isinstance(k, (str, bytes, bytearray)) else str(k)
            out[_clean_str(str(key))] = sanitise(v, _depth + 1)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)[:MAX_LIST_ITEMS]
        return [sanitise(v, _depth + 1) for v in items]
    return _clean_str(str(value))


class ProbeKind(enum.Enum):
    """What a probe sends and what answers it; its transport and everything else follow from it."""

    SYN = "syn"  # TCP: a SYN; the SYN-ACK (or RST) is the answer and nothing follows it
    BANNER = "banner"  # TCP: a handshake, then payload() (or nothing); the server's first data is parsed
    DATAGRAM = "datagram"  # UDP: udp_template() with the cookie patched in; the reply echoes it, parsed
    ECHO = "echo"  # ICMP: an echo request whose id/seq is the cookie

    @property
    def transport(self) -> str:
        """What goes on the wire: "tcp", "udp" or "icmp"."""
        return {ProbeKind.DATAGRAM: "udp", ProbeKind.ECHO: "icmp"}.get(self, "tcp")

    @property
    def parses(self) -> bool:
        """The answer carries data the probe parses, recorded under its name in every record."""
        return self in (ProbeKind.BANNER, ProbeKind.DATAGRAM)


_GOLDEN = 0x9E3779B97F4A7C15
_M64 = (1 << 64) - 1


def range_bytes(seed: int, ip: int, port: int, index: int, n: int) -> bytes:
    """`n` (a multiple of 8) pseudo-random bytes for a target (`ip` as a number), the same in the XDP
    program (bpf/xdp_recv.c, kp_range): SplitMix64 from seed ^ ip << 32 ^ port << 16 ^ index, each
    output little-endian. Not secret: values that only need to look random to a server (TLS randoms)."""
    x = (seed ^ (ip << 32) ^ (port << 16) ^ index) & _M64
    out = bytearray()
    for _ in range(n // 8):
        x = (x + _GOLDEN) & _M64
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
        z ^= z >> 31
        out += z.to_bytes(8, "little")
    return bytes(out)


class StepOutcome(enum.Enum):
    """How one step (connection) of a multi-step probe ended."""

    DATA = "data"  # the server's first data segment
    RESET = "reset"  # RST: refused (no SYN-ACK) or reset after the handshake
    CLOSED = "closed"  # FIN without data
    ZEROWIN = "zerowin"  # a zero-window SYN-ACK: nothing can be sent
    TIMEOUT = "timeout"  # nothing within the probe's step_timeout


class Probe:
    """Base class of all probes.

    Subclasses set the class attributes, optionally override ``_configure`` (argument validation),
    ``payload``, ``_payload_varies`` (whether the payload depends on ip/port), and implement ``_parse``
    and ``_matches``.  Callers use the public ``parse``/``matches`` which never raise.
    """

    name: ClassVar[str] = ""
    default_port: ClassVar[int] = 0
    fields: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    kind: ClassVar[ProbeKind] = ProbeKind.BANNER
    # Derived from `kind` for every subclass (see __init_subclass__), never declared: "tcp", "udp" or
    # "icmp", and whether a handshake (and payload()) follows the SYN-ACK.
    transport: ClassVar[str] = kind.transport
    handshake: ClassVar[bool] = True
    # Instance-overridable: e.g. ``hello`` with an empty payload becomes server-first.
    server_first: bool = False
    # UDP only: the server echoes our cookie back at reply_cookie_offset of
    # its reply, which is how the XDP program validates it without state.
    cookie_offset: ClassVar[int] = 0
    cookie_len: ClassVar[int] = 0
    reply_cookie_offset: ClassVar[int] = 0
    args_help: ClassVar[dict[str, str]] = {}
    # False: _parse reads only the data, so the receiver may reuse the result for a banner it has
    # parsed before (the Internet repeats its banners). A probe whose parse looks at ip/port says True.
    parse_uses_target: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = {"transport", "handshake"} & set(vars(cls))
        if declared:
            raise TypeError(f"{cls.__name__}: declare `kind`; {', '.join(sorted(declared))} derive from it")
        cls.transport = cls.kind.transport
        cls.handshake = cls.kind is ProbeKind.BANNER

    def __init__(self, args: dict[str, str] | None = None) -> None:
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise ProbeArgError(f"probe {self.name!r}: arguments must be a dict of strings")
        for k, v in args.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ProbeArgError(
                    f"probe {self.name!r}: argument {k!r} must be a string key with a string value"
                )
        unknown = sorted(set(args) - set(self.args_help))
        if unknown:
            accepted = ", ".join(sorted(self.args_help)) if self.args_help else "none"
            raise ProbeArgError(
                f"probe {self.name!r} does not accept argument(s) {', '.join(unknown)} (accepted: {accepted})"
            )
        self.args: dict[str, str] = dict(args)
        self._configure(self.args)

    # -- to override -------------------------------------------------------------------------------------

    def _configure(self, args: dict[str, str]) -> None:
        """Validate and store arguments; raise ProbeArgError with a one-line message on bad values."""

    def _payload_varies(self) -> bool:
        """True when ``payload`` depends on the target ip/port."""
        return False

    def udp_template(self) -> bytes:
        """UDP probes: the datagram, with zeros where the cookie goes."""
        return b""

    def payload(self, ip: str, port: int) -> bytes:
        return b""

    def _parse(self, ip: str, port: int, data: bytes) -> dict[str, Any]:
        return {}

    def _matches(self, parsed: dict[str, Any]) -> bool:
        return False

    def kernel_ranges(self) -> tuple[int, list[tuple[int, int]]] | None:
        """Where payload() puts bytes derived from the target (range_bytes), for in-kernel replies:
        (seed, [(offset, length), ...]) — lengths multiples of 8, at most 4 ranges of 32 bytes."""
        return None

    # -- multi-connection probes (steps) -----------------------------------------------------------------
    # A probe with `steps` > 1 may connect to a target again, statelessly: step k is its own connection
    # (its own source port: see zbanner_xdp/plan.py), and the answer to step k decides whether step
    # k + 1 starts (next_step). Answers are gathered per target in a bounded table (zbanner_xdp/steps.py)
    # and written as one record, with combine()'s fields under the probe's name.

    steps: ClassVar[int] = 1
    # Seconds a step may go without an answer (after its SYN-ACK; after its SYN while there is none)
    # before it counts as TIMEOUT; longer after evidence of loss (zbanner_xdp/steps.py).
    step_timeout: ClassVar[float] = 3.0

    def _step_timeout_arg(self, args: dict[str, str]) -> None:
        """`--probe-args timeout=S`: the step time, 0.1-120 seconds."""
        if "timeout" not in args:
            return
        try:
            self.step_timeout = float(args["timeout"])
        except ValueError:
            self.step_timeout = -1.0
        if not 0.1 <= self.step_timeout <= 120:
            got = args["timeout"]
            raise ProbeArgError(f"probe {self.name!r}: timeout must be 0.1-120 seconds, got {got!r}")

    # Which step's data the record shows as its banner/data: the "first" data, or the "last".
    record_data: ClassVar[str] = "first"
    # Which of the scan's ports get this probe (--probe auto sets it on the instance): ("only", ports),
    # ("except", ports), or None: every port.
    port_filter: tuple[str, frozenset[int]] | None = None

    def step_payload(self, step: int, ip: str, port: int) -> bytes:
        """What step `step` sends after its handshake (its length may depend only on len(ip))."""
        return self.payload(ip, port)

    def step_part(self, step: int, outcome: StepOutcome, data: bytes) -> Any:
        """What to keep of a step's answer (JSON-serialisable)."""
        return banner_text(data) if outcome is StepOutcome.DATA else None

    def next_step(self, step: int, outcome: StepOutcome, data: bytes, parts: list[Any]) -> int | None:
        """The step to start after `step`'s answer (parts holds every kept part so far), or None: done."""
        return step + 1 if step + 1 < self.steps else None

    # With --tarpit-check: stop stepping at a host that SYN-ACKs the check's random port (LZR's
    # HyperACKtive filter: such a host acknowledges everything, so identifying it is meaningless).
    stop_at_tarpit: ClassVar[bool] = False

    def combine(
        self, ip: str, port: int, parts: list[Any], complete: bool, tarpit: bool = False
    ) -> dict[str, Any]:
        """The record's fields (self.fields) from the parts of the steps that ran."""
        return {}

    def result(
        self, ip: str, port: int, parts: list[Any], complete: bool, tarpit: bool = False
    ) -> dict[str, Any]:
        """combine(), never raising, sanitised to exactly self.fields."""
        try:
            raw = self.combine(ip, port, parts, complete, tarpit)
            if not isinstance(raw, dict):
                return self.empty_result()
            return {f: sanitise(raw.get(f)) for f in self.fields}
        except Exception:
            return self.empty_result()

    # -- public, never raising ---------------------------------------------------------------------------

    @property
    def fixed_payload(self) -> bytes | None:
        """The payload when it is the same for every target (the XDP side can then size it statically)."""
        if self._payload_varies():
            return None
        return self.payload("0.0.0.0", 0)

    def empty_result(self) -> dict[str, Any]:
        return dict.fromkeys(self.fields)

    def parse(self, ip: str, port: int, data: bytes) -> dict[str, Any]:
        """Parse the server's first response.  Pure; never raises; returns exactly ``self.fields`` keys."""
        try:
            ok = isinstance(data, (bytes, bytearray, memoryview))
            buf = bytes(data[:MAX_PARSE_BYTES]) if ok else b""
            raw = self._parse(ip, port, buf)
            if not isinstance(raw, dict):
                return self.empty_result()
            return {f: sanitise(raw.get(f)) for f in self.fields}
        except Exception:
            # A parser bug on some odd banner must cost one result, not the scan.
            return self.empty_result()

    # -- answers past the first segment (--banner-bytes, zbanner_xdp/segments.py) ----------------------
    # Fields the probe fills only from an answer reassembled past its first segment: records carry them
    # only in such scans (capture_segments), so a default scan's records stay as they were.
    segment_fields: ClassVar[tuple[str, ...]] = ()

    def capture_segments(self) -> None:
        """The scan reassembles answers past the first segment: parse() fills segment_fields too."""
        self.fields = (*type(self).fields, *self.segment_fields)

    def _complete(self, data: bytes) -> bool:
        """Whether `data` (the answer so far, in order) holds all the probe wants of it.

        By default an answer is complete at the end of a line: the greetings and replies of the
        line protocols (ssh, ftp, smtp, pop3, imap, redis, ...) end there, and a segment boundary
        inside a line is what reading on is for. Probes that know better override it."""
        return data.endswith(b"\n")

    def complete(self, data: bytes) -> bool:
        """_complete(), never raising (an error counts as not complete: more bytes, or the limit)."""
        try:
            return bool(self._complete(bytes(data[:MAX_PARSE_BYTES])))
        except Exception:
            return False

    def matches(self, parsed: dict[str, Any]) -> bool:
        """True when the parsed response shows this protocol is alive on the port."""
        try:
            return bool(self._matches(parsed)) if isinstance(parsed, dict) else False
        except Exception:
            return False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} args={self.args!r}>"


_KEY_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*=")


def parse_probe_args(text: str | None) -> dict[str, str]:
    """Parse ``"k=v,k2=v2"`` into a dict.

    Values may themselves contain commas (``alpn=h2,http/1.1``): a comma only ends a value when it is
    followed by ``key=`` (or ends the string).  A value may be quoted with ``"`` or ``'`` to protect a
    ``,key=`` inside it.  Keys are case-sensitive; values are kept verbatim (payload whitespace matters).
    """
    if text is None or not text.strip():
        return {}
    out: dict[str, str] = {}
    pos, n = 0, len(text)
    while pos < n:
        m = _KEY_RE.match(text, pos)
        if m is None:
            raise ProbeArgError(f"malformed probe arguments {text!r}: expected key=value at offset {pos}")
        key = m.group(1)
        if key in out:
            raise ProbeArgError(f"malformed probe arguments {text!r}: duplicate key {key!r}")
        pos = m.end()
        if pos < n and text[pos] in "\"'":
            quote = text[pos]
            close = text.find(quote, pos + 1)
            if close < 0:
                raise ProbeArgError(f"malformed probe arguments {text!r}: unterminated {quote} quote")
            value = text[pos + 1 : close]
            pos = close + 1
            while pos < n and text[pos].isspace():
                pos += 1
            if pos < n:
                if text[pos] != ",":
                    raise ProbeArgError(f"malformed probe arguments {text!r}: text after closing quote")
                pos += 1
        else:
            end = pos
            while True:
                comma = text.find(",", end)
                if comma < 0:
                    end = n
                    break
                if _KEY_RE.match(text, comma + 1) or not text[comma + 1 :].strip():
                    end = comma
                    break
                end = comma + 1
            value = text[pos:end]
            pos = end + 1
        out[key] = value
        if not text[pos:].strip():
            break
    return out


# -- helpers shared by line-oriented probes ---------------------------------------------------------------

_REPLY_RE = re.compile(r"^(\d{3})(?:([ -])(.*))?$")


def split_lines(text: str) -> list[str]:
    """Split on CRLF or bare LF (servers use both); a trailing partial line is kept."""
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.rstrip("\r") for ln in lines]


def parse_reply_lines(data: bytes) -> tuple[int | None, str | None, list[str]]:
    """Parse an FTP/SMTP style ``NNN text`` / ``NNN-text`` (multi-line) reply.

    Returns (code, text, lines): text joins the reply's lines without their codes, one per line; lines of
    a multi-line reply that do not carry the code are kept as-is (RFC 959 allows that).  code is None when
    the first line does not start with a 3-digit code.
    """
    lines = split_lines(banner_text(data))
    if not lines:
        return None, None, []
    m = _REPLY_RE.match(lines[0])
    if m is None:
        return None, None, lines
    code_s, sep, first = m.group(1), m.group(2), m.group(3) or ""
    texts = [first.strip()]
    if sep == "-":
        for ln in lines[1:]:
            m2 = _REPLY_RE.match(ln)
            if m2 and m2.group(1) == code_s:
                texts.append((m2.group(3) or "").strip())
                if m2.group(2) != "-":
                    break
            else:
                texts.append(ln.strip())
    return int(code_s), "\n".join(texts), lines


def first_match(
    patterns: Iterable[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]], text: str
) -> str | None:
    """Return the formatted result of the first pattern found in text (used for software guesses)."""
    for pat, fmt in patterns:
        m = pat.search(text)
        if m:
            return fmt(m)
    return None
