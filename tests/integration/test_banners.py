"""Stateless banner grabbing against the lab's real servers.

For each probe: one banner record per target, and its parsed fields equal
what a normal stateful client (a Python socket, same payload) gets from the
same server.
"""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.integration.conftest import (
    NO_DROPS,
    REPLY_ARGS,
    Capture,
    pcap_tcp,
    python_in_scan_ns,
    read_records,
    run_scanner,
)
from zbanner_xdp import lab

pytestmark = pytest.mark.privileged

TTL = 111

# Fields that do not change between two connections to the same server.
STABLE = {
    "http": ("status_code", "reason", "version", "server", "content_type", "location", "title"),
    "tls": (
        "content_type",
        "handshake_type",
        "version",
        "cipher",
        "cipher_name",
        "compression",
        "session_id_length",
        "extensions",
        "alpn",
        "alert_description",
    ),
    "ssh": ("protocol_version", "software", "comments", "raw"),
    "ftp": ("code", "text", "software"),
    "redis": ("type", "value", "pong", "error"),
}

CASES = [  # probe, port, net, rate
    ("http", 80, "198.18.0.0/24", "5K"),
    ("tls", 443, "198.18.0.0/24", "5K"),
    ("redis", 6379, "198.18.0.0/24", "5K"),
    # sshd re-executes itself per connection (listen backlog 128) and vsftpd
    # forks per connection (backlog 32): faster than this, their accept queues
    # overflow and they drop SYNs (ListenDrops). With in-kernel replies the rate
    # is all SYNs (replies do not count against it), so it is a third of what
    # it was when user space's replies shared it.
    ("ssh", 22, "198.18.0.0/24", "200"),
    ("ftp", 21, "198.18.0.0/26", "200"),
]

STATEFUL_CLIENT = r"""
import json, socket, ssl, sys
from zbanner_xdp.probes import get_probe
name, port, addrs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
probe = get_probe(name)
out = {}
for a in addrs:
    s = socket.create_connection((a, port), timeout=5)
    payload = probe.payload(a, port)
    if payload:
        s.sendall(payload)
    data = s.recv(1024)
    s.close()
    rec = {"parsed": probe.parse(a, port, data)}
    if name == "tls":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(socket.create_connection((a, port), timeout=5)) as t:
            rec["ssl_version"] = t.version()
    out[a] = rec
print(json.dumps(out))
"""


def stateful_view(probe: str, port: int, addrs: list[str]) -> dict:
    return json.loads(python_in_scan_ns(STATEFUL_CLIENT, probe, str(port), *addrs))


def check_banners(recs: list[dict], probe: str, port: int, targets: list[str]) -> list[dict]:
    """One banner record per target, its parsed fields equal to a stateful client's (a sample of
    targets); the banner records."""
    banners = [x for x in recs if x["classification"] == "banner"]
    per_target = Counter(x["saddr"] for x in banners)
    assert set(per_target) == set(targets), f"missing {sorted(set(targets) - set(per_target))[:5]}"
    assert set(per_target.values()) == {1}
    assert all(x["probe"] == probe and x["success"] and x["sport"] == port for x in banners)
    assert all(x["banner"] and x["data"] and isinstance(x[probe], dict) for x in banners)
    sample = targets[:: max(1, len(targets) // 8)]
    truth = stateful_view(probe, port, sample)
    by_addr = {x["saddr"]: x for x in banners}
    for a in sample:
        ours = {k: by_addr[a][probe][k] for k in STABLE[probe]}
        theirs = {k: truth[a]["parsed"][k] for k in STABLE[probe]}
        assert ours == theirs, a
        if probe == "tls":
            assert by_addr[a]["tls"]["version"] == truth[a]["ssl_version"] == "TLSv1.3"
    return banners


@pytest.mark.parametrize(("probe", "port", "net", "rate"), CASES, ids=[c[0] for c in CASES])
def test_one_banner_per_target_equal_to_stateful_client(
    lab_up, tmp_path: Path, empty_blocklist: str, probe: str, port: int, net: str, rate: str, replies: str
) -> None:
    out, meta, pcap = tmp_path / "out.jsonl", tmp_path / "meta.json", tmp_path / "cap.pcap"
    with Capture(pcap):
        r = run_scanner(
            "--blocklist",
            empty_blocklist,
            "--rate",
            rate,
            "--ttl",
            str(TTL),
            "--cooldown",
            "3",
            "-o",
            str(out),
            "--metadata",
            str(meta),
            "scan",
            net,
            "-p",
            str(port),
            "--probe",
            probe,
            *REPLY_ARGS[replies],
        )
    assert r.returncode == 0, r.stderr
    targets = [str(a) for a in ipaddress.ip_network(net)]
    banners = check_banners(read_records(out), probe, port, targets)

    # No RST from the scanner namespace's kernel: every RST it sent carries our TTL.
    # (Kernel sockets of the scan namespace use ports 10000-30000, see the lab.)
    frames = [f for f in pcap_tcp(pcap) if f[0] == lab.SCAN_IP and f[2] >= 32768]
    assert frames and {f[5] for f in frames} == {TTL}
    m = orjson.loads(meta.read_bytes())
    assert m["responses"]["banner"] == len(targets)
    assert m["drops"] == NO_DROPS
    print(
        f"\n{probe}: {len(targets)} targets, {len(banners)} banners, {m['duration_s']} s, "
        f"repeats {m['repeats']}, re-answered {m['reanswered']}"
    )
