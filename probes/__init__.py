"""Probe modules: a deterministic payload per protocol and a never-raising parser of the first response."""

from __future__ import annotations

from .base import (
    Probe,
    ProbeArgError,
    UnknownProbeError,
    all_probes,
    banner_text,
    get_probe,
    parse_probe_args,
    register,
)
from .ftp import FtpProbe
from .hello import HelloProbe
from .http import HttpProbe
from .imap import ImapProbe
from .mysql import MysqlProbe
from .pop3 import Pop3Probe
from .redis import RedisProbe
from .smtp import SmtpProbe
from .ssh import SshProbe
from .synscan import SynScanProbe
from .telnet import TelnetProbe
from .tls import TlsProbe

__all__ = [
    "FtpProbe",
    "HelloProbe",
    "HttpProbe",
    "ImapProbe",
    "MysqlProbe",
    "Pop3Probe",
    "Probe",
    "ProbeArgError",
    "RedisProbe",
    "SmtpProbe",
    "SshProbe",
    "SynScanProbe",
    "TelnetProbe",
    "TlsProbe",
    "UnknownProbeError",
    "all_probes",
    "banner_text",
    "get_probe",
    "parse_probe_args",
    "register",
]
