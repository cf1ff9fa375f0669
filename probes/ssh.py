"""SSH probe (server-first): parses the RFC 4253 identification string ``SSH-protover-software comments``."""

from __future__ import annotations

from typing import Any, ClassVar

from .base import Probe, ProbeKind, banner_text, split_lines
from .registry import register


@register
class SshProbe(Probe):
    name: ClassVar[str] = "ssh"
    default_port: ClassVar[int] = 22
    fields: ClassVar[tuple[str, ...]] = ("protocol_version", "software", "comments", "raw", "pre_banner")
    description: ClassVar[str] = "SSH identification string: protocol version, software, comments"
    server_first = True
    kind: ClassVar[ProbeKind] = ProbeKind.BANNER
    args_help: ClassVar[dict[str, str]] = {}

    def _parse(self, ip: str, port: int, data: bytes) -> dict[str, Any]:
        out: dict[str, Any] = {}
        # The identification string may be followed by the binary KEXINIT in the same segment; only look at
        # text before it, and the spec allows other lines before the "SSH-" line.
        lines = split_lines(banner_text(data[:8192]))
        pre: list[str] = []
        for ln in lines:
            if ln.startswith("SSH-"):
                out["raw"] = ln
                rest = ln[4:]
                proto, sep, software_comments = rest.partition("-")
                out["protocol_version"] = proto
                if sep:
                    software, _, comments = software_comments.partition(" ")
                    out["software"] = software
                    out["comments"] = comments if comments else None
                break
            pre.append(ln)
            if len(pre) >= 16:
                break
        if "raw" in out and pre:
            out["pre_banner"] = "\n".join(pre)
        return out

    def _matches(self, parsed: dict[str, Any]) -> bool:
        return parsed.get("raw") is not None
