"""Integration tests for the built-in lab (zbanner_xdp.lab).

They build the real lab (two namespaces, a veth pair, nftables, nginx, sshd,
vsftpd, redis) and probe it from inside the scan namespace, so they need root.
All traffic stays inside the lab's namespaces; every test leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from zbanner_xdp import lab

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.skipif(
        not (os.geteuid() == 0 and shutil.which("ip")),
        reason="the lab needs root and iproute2 (network namespaces, veth, nftables)",
    ),
]

# Runs inside zbl-scan. Probes run in parallel so the deliberate 1 s timeouts
# (silent and blackholed targets) cost about a second in total.
PROBE_SCRIPT = r"""
import json, socket, ssl, sys
from concurrent.futures import ThreadPoolExecutor

def probe(check):
    addr, port, kind, timeout = check
    try:
        s = socket.create_connection((addr, port), timeout=timeout)
    except ConnectionRefusedError:
        return {"outcome": "rst"}
    except (TimeoutError, socket.timeout):
        return {"outcome": "timeout"}
    except OSError as e:
        return {"outcome": "error", "error": repr(e)}
    out = {"outcome": "synack"}
    s.settimeout(5)
    try:
        with s:
            if kind == "http":
                s.sendall(b"GET / HTTP/1.0\r\nHost: lab\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                out["data"] = data.decode("latin-1")
            elif kind == "redis":
                s.sendall(b"PING\r\n")
                out["data"] = s.recv(64).decode("latin-1")
            elif kind == "banner":
                out["data"] = s.recv(256).decode("latin-1")
            elif kind == "tls":
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                with ctx.wrap_socket(s, server_hostname="zbanner-lab") as t:
                    out["tls"] = t.version()
                    cert = t.getpeercert(binary_form=True)
                    out["cert_len"] = len(cert or b"")
    except OSError as e:
        out["error"] = repr(e)
    return out

checks = json.loads(sys.argv[1])
with ThreadPoolExecutor(len(checks)) as pool:
    print(json.dumps(list(pool.map(probe, checks))))
"""

Check = tuple[str, int, str]

OPEN_ADDR = "198.18.0.5"
CHECKS: list[Check] = [
    (OPEN_ADDR, 80, "http"),
    (OPEN_ADDR, 443, "tls"),
    (OPEN_ADDR, 22, "banner"),
    (OPEN_ADDR, 21, "banner"),
    (OPEN_ADDR, 6379, "redis"),
    (OPEN_ADDR, 81, "connect"),  # closed port on an open address
    ("198.18.1.5", 80, "connect"),  # RST_NET, even on a server port
    ("198.18.1.5", 22, "connect"),
    ("198.18.2.5", 80, "connect"),  # SILENT_NET
    ("198.18.2.5", 22, "connect"),
    ("198.19.0.5", 80, "connect"),  # BLACKHOLE_NET
    ("198.18.123.45", 80, "http"),  # BIG_NET outside the carve-outs behaves as open
    ("198.18.255.254", 6379, "redis"),
    ("198.18.77.1", 8080, "connect"),
    (lab.TARGET_GW, 22, "banner"),
]
PROBE_TIMEOUT = 1.0
# Taken at import, before any lab call could have moved this thread.
HOST_NETNS_INO = os.stat("/proc/thread-self/ns/net").st_ino


def run_probes(checks: list[Check]) -> dict[Check, dict[str, Any]]:
    argv = lab.ns_exec_argv(
        lab.SCAN_NS,
        [sys.executable, "-c", PROBE_SCRIPT, json.dumps([[*c, PROBE_TIMEOUT] for c in checks])],
    )
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    return dict(zip(checks, json.loads(proc.stdout), strict=True))


def ns_names() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def root_link_names() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=10, check=True)
    return [line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines()]


def alive(pid: int) -> bool:
    """Running (zombies count as gone: a non-reaping init may keep them around)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def assert_nothing_left() -> None:
    assert not [n for n in ns_names() if n.startswith(lab.PREFIX)]
    assert not [n for n in root_link_names() if n.startswith(lab.PREFIX)]
    assert not os.path.exists(lab.STATE_DIR)


# --------------------------------------------------------------------------- no lab needed


def test_expected_ground_truth() -> None:
    assert lab.expected("198.18.0.5", 80) == "synack"
    assert lab.expected("198.18.0.5", 81) == "rst"
    assert lab.expected("198.18.200.1", 6379) == "synack"
    assert lab.expected("198.18.1.5", 80) == "rst"
    assert lab.expected("198.18.1.5", 12345) == "rst"
    assert lab.expected("198.18.2.5", 80) is None
    assert lab.expected("198.19.0.5", 80) is None
    assert lab.expected("198.19.255.255", 22) is None
    assert lab.expected("8.8.8.8", 80) is None
    assert lab.expected(lab.TARGET_GW, 22) == "synack"
    for port in lab.PORTS.values():
        assert lab.expected("198.18.0.0", port) == "synack"
    with pytest.raises(ValueError):
        lab.expected("198.18.0.5", 70000)


def test_ns_exec_argv() -> None:
    assert lab.ns_exec_argv("zbl-scan", ["true", "x"]) == ["ip", "netns", "exec", "zbl-scan", "true", "x"]


# --------------------------------------------------------------------------- teardown of broken labs
# These run before the module fixture builds the lab (pytest keeps file order).


def test_down_when_nothing_exists() -> None:
    lab.down()
    assert lab.down() == []
    assert_nothing_left()


def test_down_cleans_half_built_lab() -> None:
    lab.down()
    stray: subprocess.Popen[bytes] | None = None
    bystander: subprocess.Popen[bytes] | None = None
    try:
        for ns in (lab.SCAN_NS, lab.TARGET_NS):
            subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
        subprocess.run(
            ["ip", "-n", lab.SCAN_NS, "link", "add", lab.SCAN_IF, "type", "veth",
             "peer", "name", lab.TARGET_IF, "netns", lab.TARGET_NS],
            check=True,
            timeout=10,
        )  # fmt: skip
        stray = subprocess.Popen(lab.ns_exec_argv(lab.TARGET_NS, ["sleep", "300"]), start_new_session=True)
        # A stale pid file naming an unrelated process outside the lab: down()
        # must leave it alone because it is not the server the file is for.
        bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)
        os.makedirs(lab.STATE_DIR, exist_ok=True)
        with open(os.path.join(lab.STATE_DIR, "nginx.pid"), "w") as f:
            f.write(f"{bystander.pid}\n")
        deadline = time.monotonic() + 5
        while not os.path.exists(f"/proc/{stray.pid}") or stray.pid not in lab._pids_in_netns(lab.TARGET_NS):
            assert time.monotonic() < deadline, "stray process never entered the target namespace"
            time.sleep(0.02)

        assert not lab.status()["complete"]
        removed = lab.down()

        assert f"netns {lab.SCAN_NS}" in removed
        assert f"netns {lab.TARGET_NS}" in removed
        assert any(item.startswith(f"process {stray.pid} ") for item in removed)
        assert stray.wait(timeout=5) is not None
        assert bystander.poll() is None, "down() killed a process that merely had a stale pid file"
        assert_nothing_left()
        assert lab.down() == []
    finally:
        for p in (stray, bystander):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(timeout=5)
        lab.down()


def test_failed_up_names_server_and_cleans_up(monkeypatch: pytest.MonkeyPatch) -> None:
    real_argv = lab._server_argv

    def broken(name: str) -> list[str]:
        if name == "vsftpd":
            return ["vsftpd", "/nonexistent/vsftpd.conf"]
        return real_argv(name)

    monkeypatch.setattr(lab, "_server_argv", broken)
    try:
        with pytest.raises(RuntimeError, match=r"vsftpd.*vsftpd\.log"):
            lab.up()
        assert not [n for n in ns_names() if n.startswith(lab.PREFIX)]
        # Processes are gone, but the logs stay for the post-mortem.
        assert os.path.exists(os.path.join(lab.STATE_DIR, "vsftpd.log"))
        for name in lab.SERVERS:
            assert lab._server_pid(name) is None
    finally:
        lab.down()
    assert_nothing_left()


# --------------------------------------------------------------------------- the running lab


@pytest.fixture(scope="module")
def lab_info() -> Iterator[lab.LabInfo]:
    try:
        t0 = time.monotonic()
        info = lab.up()
        print(f"lab.up() took {time.monotonic() - t0:.2f}s")
        yield info
    finally:
        lab.down()


@pytest.fixture(scope="module")
def probes(lab_info: lab.LabInfo) -> dict[Check, dict[str, Any]]:
    return run_probes(CHECKS)


def test_lab_info(lab_info: lab.LabInfo) -> None:
    assert lab_info.scan_ns == lab.SCAN_NS and lab_info.target_ns == lab.TARGET_NS
    assert lab_info.scan_ip == lab.SCAN_IP and lab_info.gateway_ip == lab.TARGET_GW
    assert set(lab_info.servers) == set(lab.SERVERS)
    assert all(alive(pid) for pid in lab_info.servers.values())
    json.dumps(lab_info.to_dict())
    # lab joins namespaces only from throw-away threads; this one must still be in the host's.
    assert os.stat("/proc/thread-self/ns/net").st_ino == HOST_NETNS_INO
    out = subprocess.run(
        ["ip", "-n", lab.TARGET_NS, "-o", "link", "show", lab.TARGET_IF],
        capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    assert lab_info.gateway_mac in out.stdout


def test_http(probes: dict[Check, dict[str, Any]]) -> None:
    for addr in (OPEN_ADDR, "198.18.123.45"):
        r = probes[(addr, 80, "http")]
        assert r["outcome"] == "synack"
        assert r["data"].startswith("HTTP/1.1 200")
        assert "<title>zbanner-xdp lab</title>" in r["data"]


def test_tls_handshake(probes: dict[Check, dict[str, Any]]) -> None:
    r = probes[(OPEN_ADDR, 443, "tls")]
    assert r["outcome"] == "synack", r
    assert r.get("tls") in ("TLSv1.2", "TLSv1.3"), r
    assert r["cert_len"] > 0


def test_ssh_banner(probes: dict[Check, dict[str, Any]]) -> None:
    for addr in (OPEN_ADDR, lab.TARGET_GW):
        assert probes[(addr, 22, "banner")]["data"].startswith("SSH-2.0-OpenSSH")


def test_ftp_greeting(probes: dict[Check, dict[str, Any]]) -> None:
    assert probes[(OPEN_ADDR, 21, "banner")]["data"].startswith("220 (vsFTPd ")


def test_redis_ping(probes: dict[Check, dict[str, Any]]) -> None:
    for addr in (OPEN_ADDR, "198.18.255.254"):
        assert probes[(addr, 6379, "redis")]["data"] == "+PONG\r\n"


def test_refused_and_silent(probes: dict[Check, dict[str, Any]]) -> None:
    assert probes[(OPEN_ADDR, 81, "connect")]["outcome"] == "rst"
    assert probes[("198.18.1.5", 80, "connect")]["outcome"] == "rst"
    assert probes[("198.18.1.5", 22, "connect")]["outcome"] == "rst"
    assert probes[("198.18.2.5", 80, "connect")]["outcome"] == "timeout"
    assert probes[("198.18.2.5", 22, "connect")]["outcome"] == "timeout"
    assert probes[("198.19.0.5", 80, "connect")]["outcome"] == "timeout"


def test_expected_agrees_with_observed(probes: dict[Check, dict[str, Any]]) -> None:
    as_expected = {"synack": "synack", "rst": "rst", "timeout": None}
    for (addr, port, _kind), r in probes.items():
        assert r["outcome"] in as_expected, (addr, port, r)
        assert lab.expected(addr, port) == as_expected[r["outcome"]], (addr, port, r)


def test_status(lab_info: lab.LabInfo) -> None:
    d = lab.status()
    json.dumps(d)
    assert d["complete"]
    assert d["namespaces"] == {lab.SCAN_NS: True, lab.TARGET_NS: True}
    assert d["links"][lab.SCAN_IF]["addrs"] == [f"{lab.SCAN_IP}/24"]
    assert d["nft_table"]
    # Ground truth depends on nothing else listening in the target namespace.
    assert d["listening_ports"] == sorted(lab.PORTS.values())
    assert {n: s["pid"] for n, s in d["servers"].items()} == lab_info.servers
    text = lab.format_status(d)
    for net in (lab.OPEN_NET, lab.RST_NET, lab.SILENT_NET, lab.BIG_NET, lab.BLACKHOLE_NET):
        assert net in text


def test_scan_namespace_routes(lab_info: lab.LabInfo) -> None:
    out = subprocess.run(
        ["ip", "-n", lab.SCAN_NS, "-4", "route", "show"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    routes = out.stdout
    assert "default" not in routes
    assert f"{lab.SCAN_ROUTE} via {lab.TARGET_GW} dev {lab.SCAN_IF}" in routes


def test_tx_checksum_offload_off(lab_info: lab.LabInfo) -> None:
    from pyroute2.ethtool.ioctl import IoctlEthtool

    def flags(ifname: str) -> dict[str, bool]:
        eth = IoctlEthtool(ifname)
        try:
            return eth.get_offload_flags()
        finally:
            eth.close()

    for ns, ifname in ((lab.SCAN_NS, lab.SCAN_IF), (lab.TARGET_NS, lab.TARGET_IF)):
        assert lab._in_netns(ns, lambda ifname=ifname: flags(ifname))["tx-checksumming"] is False


def test_up_is_idempotent(lab_info: lab.LabInfo) -> None:
    before = lab.status()
    t0 = time.monotonic()
    again = lab.up()
    assert time.monotonic() - t0 < 2
    assert again.servers == {n: s["pid"] for n, s in before["servers"].items()}
    assert lab.status()["complete"]


def test_up_rebuilds_partial_lab(lab_info: lab.LabInfo) -> None:
    old = dict(lab.up().servers)
    os.kill(old["redis"], signal.SIGKILL)
    deadline = time.monotonic() + 5
    while alive(old["redis"]):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert not lab.status()["complete"]

    new = lab.up()
    assert lab.status()["complete"]
    assert set(new.servers) == set(lab.SERVERS)
    assert all(alive(pid) for pid in new.servers.values())
    assert not any(alive(pid) for pid in old.values()), "rebuild left old servers running"
    r = run_probes([(OPEN_ADDR, 6379, "redis"), ("198.18.1.9", 6379, "connect")])
    assert r[(OPEN_ADDR, 6379, "redis")]["data"] == "+PONG\r\n"
    assert r[("198.18.1.9", 6379, "connect")]["outcome"] == "rst"


def test_down_removes_everything(lab_info: lab.LabInfo) -> None:
    d = lab.status()
    pids = [s["pid"] for s in d["servers"].values()]
    pids += lab._pids_in_netns(lab.SCAN_NS) + lab._pids_in_netns(lab.TARGET_NS)
    assert pids

    removed = lab.down()

    assert f"netns {lab.SCAN_NS}" in removed and f"netns {lab.TARGET_NS}" in removed
    assert_nothing_left()
    left = [pid for pid in pids if alive(pid)]
    assert not left, f"lab processes still running: {left}"
    assert not lab.status()["complete"]
    assert lab.down() == []
