"""Probe modules: a deterministic payload per protocol and a never-raising parser of the first response.

Importing a probe module registers its probe (registry.py); the imports below
are therefore the one list of built-in probes.
"""

from __future__ import annotations

from .base import (
    Probe,
    ProbeArgError,
    ProbeKind,
    StepOutcome,
    UnknownProbeError,
    banner_text,
    parse_probe_args,
)
from .ftp import FtpProbe
from .hello import HelloProbe
from .http import HttpProbe
from .icmp_echo import IcmpEchoProbe
from .imap import ImapProbe
from .jarm import JarmProbe
from .lzr import LzrProbe
from .mysql import MysqlProbe
from .pop3 import Pop3Probe
from .redis import RedisProbe
from .registry import all_probes, get_probe, probe_class, register
from .smtp import SmtpProbe
from .ssh import SshProbe
from .synscan import SynScanProbe
from .telnet import TelnetProbe
from .tls import TlsProbe
from .udp_dns import UdpDnsProbe
from .udp_ntp import UdpNtpProbe

__all__ = [
    "FtpProbe",
    "HelloProbe",
    "HttpProbe",
    "IcmpEchoProbe",
    "ImapProbe",
    "JarmProbe",
    "LzrProbe",
    "MysqlProbe",
    "Pop3Probe",
    "Probe",
    "ProbeArgError",
    "ProbeKind",
    "RedisProbe",
    "SmtpProbe",
    "SshProbe",
    "StepOutcome",
    "SynScanProbe",
    "TelnetProbe",
    "TlsProbe",
    "UdpDnsProbe",
    "UdpNtpProbe",
    "UnknownProbeError",
    "all_probes",
    "banner_text",
    "get_probe",
    "parse_probe_args",
    "probe_class",
    "register",
]
