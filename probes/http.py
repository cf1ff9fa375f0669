"""HTTP/1.1 GET probe: parses the status line, headers and the page title of the response's first segment
(or, with --banner-bytes, of as much of it as that allows: the whole header block, the title within it)."""

from __future__ import annotations

import codecs
import html
import re
from typing import Any, ClassVar

from .base import Probe, ProbeArgError, ProbeKind, banner_text
from .registry import register

DEFAULT_USER_AGENT = "Mozilla/5.0 (compatible; zbanner-xdp/0.1)"

_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Printable ASCII without space: anything else would need escaping or would break the request line.
_NOSPACE_RE = re.compile(r"^[\x21-\x7e]+$")
_PRINTABLE_RE = re.compile(r"^[\x20-\x7e]*$")

_STATUS_RE = re.compile(rb"^HTTP/(\d+(?:\.\d+)?)[ \t]+(\d{3})(?:[ \t]+(.*))?$")
_HEADER_RE = re.compile(rb"^([!#$%&'*+.^_`|~0-9A-Za-z-]+)[ \t]*:(.*)$")
_TITLE_RE = re.compile(r"<title(?:\s[^>]*)?>(.*?)(?:</title\s*>|$)", re.IGNORECASE | re.DOTALL)
_CHARSET_RE = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._:-]+)", re.IGNORECASE)


def _decode_body(body: bytes, content_type: str | None) -> str:
    """Decode with the declared charset when it is a real text codec (many titles are latin-1/cp1251)."""
    if content_type:
        m = _CHARSET_RE.search(content_type)
        if m:
            try:
                # Non-text codecs (base64, rot13, ...) raise LookupError here and fall back to UTF-8.
                return body.decode(codecs.lookup(m.group(1)).name, errors="backslashreplace")
            except Exception:
                pass
    return banner_text(body)


@register
class HttpProbe(Probe):
    name: ClassVar[str] = "http"
    default_port: ClassVar[int] = 80
    fields: ClassVar[tuple[str, ...]] = (
        "status_code",
        "reason",
        "version",
        "server",
        "content_type",
        "location",
        "headers",
        "title",
    )
    description: ClassVar[str] = "HTTP/1.1 GET request; status line, headers and <title>"
    server_first = False
    kind: ClassVar[ProbeKind] = ProbeKind.BANNER
    args_help: ClassVar[dict[str, str]] = {
        "host": "Host header value (default: the target IP, bracketed for IPv6)",
        "path": "request target (default: /)",
        "method": "request method (default: GET)",
        "user_agent": f"User-Agent header value, empty to omit it (default: {DEFAULT_USER_AGENT})",
    }

    def _configure(self, args: dict[str, str]) -> None:
        host = args.get("host")
        if host is not None:
            host = host.strip()
            if not _NOSPACE_RE.match(host):
                raise ProbeArgError(
                    f"http: host must be non-empty printable ASCII without spaces, got {host!r}"
                )
        path = args.get("path", "/").strip()
        if not _NOSPACE_RE.match(path):
            raise ProbeArgError(f"http: path must be non-empty printable ASCII without spaces, got {path!r}")
        method = args.get("method", "GET").strip()
        if not _TOKEN_RE.match(method):
            raise ProbeArgError(f"http: method must be an HTTP token such as GET or HEAD, got {method!r}")
        ua = args.get("user_agent", DEFAULT_USER_AGENT).strip()
        if not _PRINTABLE_RE.match(ua):
            raise ProbeArgError(f"http: user_agent must be printable ASCII, got {ua!r}")
        self.host: str | None = host
        self.path = path
        self.method = method
        self.user_agent = ua

    def _payload_varies(self) -> bool:
        return self.host is None

    def payload(self, ip: str, port: int) -> bytes:
        host = self.host
        if host is None:
            host = f"[{ip}]" if ":" in ip else ip
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {host}"]
        if self.user_agent:
            lines.append(f"User-Agent: {self.user_agent}")
        lines += ["Accept: */*", "Connection: close", "", ""]
        return "\r\n".join(lines).encode("ascii", errors="replace")

    def _parse(self, ip: str, port: int, data: bytes) -> dict[str, Any]:
        out: dict[str, Any] = {}
        # Some servers emit stray blank lines before the status line (RFC 9112 says to ignore them).
        buf = data.lstrip(b"\r\n")
        ends = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := buf.find(sep)) >= 0]
        body: bytes | None
        if ends:
            idx, seplen = min(ends)
            head, body = buf[:idx], buf[idx + seplen :]
        else:
            head, body = buf, None
        lines = head.split(b"\n")
        if body is None and len(lines) > 1 and not head.endswith(b"\n"):
            # Truncated mid-header: a partial "Server: ngi" would be a wrong value, so drop it.
            lines.pop()
        lines = [ln.rstrip(b"\r") for ln in lines]
        m = _STATUS_RE.match(lines[0]) if lines else None
        if m is None:
            return out
        out["version"] = "HTTP/" + m.group(1).decode("ascii")
        out["status_code"] = int(m.group(2))
        out["reason"] = banner_text(m.group(3) or b"").strip()

        headers: dict[str, str] = {}
        last: str | None = None
        for ln in lines[1:]:
            if not ln.strip():
                continue
            if ln[:1] in (b" ", b"\t") and last is not None:
                # obs-fold continuation line.
                headers[last] = (headers[last] + " " + banner_text(ln).strip()).strip()
                continue
            hm = _HEADER_RE.match(ln)
            if hm is None:
                last = None
                continue
            key = hm.group(1).decode("ascii").lower()
            value = banner_text(hm.group(2)).strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
            last = key
        out["headers"] = headers
        out["server"] = headers.get("server")
        out["content_type"] = headers.get("content-type")
        out["location"] = headers.get("location")

        if body is not None:
            tm = _TITLE_RE.search(_decode_body(body, out["content_type"]))
            if tm:
                out["title"] = " ".join(html.unescape(tm.group(1)).split())
        return out

    def _complete(self, data: bytes) -> bool:
        # The whole header block, and the title when the page has one: done at the end of the head
        # (or the title), the end of the body, or a body that is no HTML page at all.
        buf = data.lstrip(b"\r\n")
        if not b"HTTP/".startswith(buf[:5]):
            return True  # not HTTP: more of it would add nothing the parse reads
        ends = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := buf.find(sep)) >= 0]
        if not ends:
            return False
        idx, seplen = min(ends)
        body = buf[idx + seplen :]
        if self.method == "HEAD":
            return True
        parsed = self._parse("", 0, data)
        headers = parsed.get("headers") or {}
        length = headers.get("content-length", "")
        if length.isdigit() and len(body) >= int(length):
            return True
        if "html" not in (headers.get("content-type") or "").lower():
            return True
        lower = body.lower()
        return b"</title" in lower or b"</head" in lower

    def _matches(self, parsed: dict[str, Any]) -> bool:
        return parsed.get("status_code") is not None
