"""The built-in lab: a scanner namespace, a target namespace and real servers.

Used by the demo, the integration tests and the benchmarks, and by
`zbanner-xdp lab up|down|status`. Everything lives in two network namespaces
joined by one veth pair, so scans never leave the machine::

    zbl-scan                                  zbl-tgt
    zbl-s0 10.77.0.1/24  <---- veth ---->  zbl-t0 10.77.0.2/24
    route 198.18.0.0/15 via 10.77.0.2         local 198.18.0.0/16 dev lo (AnyIP)
    (no default route)                        blackhole 198.19.0.0/16
                                              nft table inet zbl, servers

Address plan (all reached from zbl-scan through the gateway 10.77.0.2):

    198.18.0.0/24  OPEN       every server port open (AnyIP), other ports RST
    198.18.1.0/24  RST        every TCP SYN answered by RST (nft reject with tcp reset)
    198.18.2.0/24  SILENT     every packet dropped (nft drop)
    198.18.0.0/16  BIG        all local; outside the two /24 carve-outs above it
                              behaves as OPEN (65,536 targets for benchmarks)
    198.19.0.0/16  BLACKHOLE  routed to zbl-tgt, which blackholes it: silent
    10.77.0.2      gateway    local too, behaves as OPEN

Servers (Debian's own binaries, run in the foreground inside zbl-tgt and
listening on 0.0.0.0, so every local address above answers):

    nginx   80 (http), 443 (https, self-signed RSA cert, TLSv1.2/1.3)
    sshd    22
    vsftpd  21
    redis   6379

Configs, pid files, logs and generated keys live in STATE_DIR; the config
templates are in zbanner_xdp/lab_files/. Both veth ends have tx checksum
offload switched off: otherwise packets the target's kernel sends carry only a
partial checksum across the veth, and anything reading raw frames on zbl-s0
(the XDP program, tcpdump, pcap tests) would see bad TCP checksums that a real
wire never shows. IPv6 is disabled in both namespaces so the scan interface
carries no DAD/MLD/RS chatter.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any, TypeVar

PREFIX = "zbl-"
SCAN_NS = "zbl-scan"
TARGET_NS = "zbl-tgt"
SCAN_IF = "zbl-s0"
TARGET_IF = "zbl-t0"
SCAN_IP = "10.77.0.1"
TARGET_GW = "10.77.0.2"
LINK_PREFIXLEN = 24
# Locally administered and fixed, so pcaps and XDP tests can hard-code them.
SCAN_MAC = "02:7a:62:6c:00:01"
TARGET_MAC = "02:7a:62:6c:00:02"
STATE_DIR = "/run/zbanner-xdp-lab"
# Outside STATE_DIR because down() deletes that while holding the lock.
LOCK_FILE = "/run/zbanner-xdp-lab.lock"

OPEN_NET = "198.18.0.0/24"
RST_NET = "198.18.1.0/24"
SILENT_NET = "198.18.2.0/24"
BIG_NET = "198.18.0.0/16"
BLACKHOLE_NET = "198.19.0.0/16"
SCAN_ROUTE = "198.18.0.0/15"  # BIG_NET + BLACKHOLE_NET, via TARGET_GW

PORTS: dict[str, int] = {"ssh": 22, "ftp": 21, "http": 80, "https": 443, "redis": 6379}

# server name -> the PORTS keys it serves
SERVERS: dict[str, tuple[str, ...]] = {
    "nginx": ("http", "https"),
    "sshd": ("ssh",),
    "vsftpd": ("ftp",),
    "redis": ("redis",),
}
# Pids read back from STATE_DIR are only trusted (and signalled) when the
# process really is that server: a stale pid file may name a reused pid.
_SERVER_EXE: dict[str, str] = {
    "nginx": "nginx",
    "sshd": "sshd",
    "vsftpd": "vsftpd",
    "redis": "redis-server",
}

SCAN_SYSCTLS: dict[str, str] = {
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    "net.ipv6.conf.all.disable_ipv6": "1",
    "net.ipv6.conf.default.disable_ipv6": "1",
}
TARGET_SYSCTLS: dict[str, str] = {
    **SCAN_SYSCTLS,
    "net.core.somaxconn": "65535",
    "net.ipv4.tcp_max_syn_backlog": "65535",
    # Cookies only kick in once the (now large) SYN queue overflows, and then
    # they still answer with a SYN-ACK, which keeps expected() true.
    "net.ipv4.tcp_syncookies": "1",
}

READY_TIMEOUT = 10.0
CMD_TIMEOUT = 30.0
TERM_GRACE = 3.0

_RST = ipaddress.ip_network(RST_NET)
_SILENT = ipaddress.ip_network(SILENT_NET)
_BIG = ipaddress.ip_network(BIG_NET)
_GW = ipaddress.ip_address(TARGET_GW)

# Popen objects of servers this process started, so down() can reap them
# (no zombies, no ResourceWarning) when up() and down() share a process.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}

T = TypeVar("T")


@dataclass
class LabInfo:
    scan_ns: str = SCAN_NS
    target_ns: str = TARGET_NS
    scan_if: str = SCAN_IF
    target_if: str = TARGET_IF
    scan_ip: str = SCAN_IP
    gateway_ip: str = TARGET_GW
    scan_mac: str = SCAN_MAC
    gateway_mac: str = TARGET_MAC
    open_net: str = OPEN_NET
    rst_net: str = RST_NET
    silent_net: str = SILENT_NET
    big_net: str = BIG_NET
    blackhole_net: str = BLACKHOLE_NET
    scan_route: str = SCAN_ROUTE
    ports: dict[str, int] = field(default_factory=lambda: dict(PORTS))
    servers: dict[str, int] = field(default_factory=dict)
    state_dir: str = STATE_DIR

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabInfo:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


# --------------------------------------------------------------------------- ground truth


def expected(addr: str, port: int) -> str | None:
    """What a SYN to addr:port gets: "synack", "rst", or None (no answer)."""
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range: {port}")
    ip = ipaddress.ip_address(addr)
    if ip.version != 4:
        return None
    # Order matters: the /24 carve-outs sit inside BIG_NET.
    if ip in _SILENT:
        return None
    if ip in _RST:
        return "rst"
    if ip in _BIG or ip == _GW:
        return "synack" if port in PORTS.values() else "rst"
    # BLACKHOLE_NET and anything the scan namespace has no route for.
    return None


def address_plan() -> dict[str, str]:
    return {
        "open": f"{OPEN_NET}: every server port open (AnyIP), other ports RST",
        "rst": f"{RST_NET}: every TCP SYN answered by RST (nft reject with tcp reset)",
        "silent": f"{SILENT_NET}: every packet dropped silently (nft drop)",
        "big": f"{BIG_NET}: all local; outside the RST/SILENT /24s behaves as OPEN",
        "blackhole": f"{BLACKHOLE_NET}: blackhole route in {TARGET_NS}: silent",
        "gateway": f"{TARGET_GW}: local in {TARGET_NS}, behaves as OPEN",
    }


# --------------------------------------------------------------------------- helpers


def ns_exec_argv(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def _run(argv: list[str], what: str, timeout: float = CMD_TIMEOUT) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as e:
        raise RuntimeError(f"lab: {what}: {argv[0]} not found (is it installed?)") from e
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"lab: {what}: {' '.join(argv)} timed out after {timeout:.0f}s") from e
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip()
        raise RuntimeError(f"lab: {what}: {' '.join(argv)} exited {proc.returncode}: {msg}")
    return proc.stdout


@contextlib.contextmanager
def _step(what: str) -> Iterator[None]:
    """Turn any failure (pyroute2's NetlinkError, OSError, ...) into a RuntimeError naming the step."""
    try:
        yield
    except RuntimeError:
        raise
    except Exception as e:
        raise RuntimeError(f"lab: {what} failed: {type(e).__name__}: {e}") from e


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    # Serialises up/down/status across processes (CLI and test fixtures).
    try:
        f = open(LOCK_FILE, "a")  # noqa: SIM115 - closed below
    except PermissionError:
        # Not root: status() still works read-only; up()/down() fail later anyway.
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _netns_path(ns: str) -> str:
    return os.path.join("/run/netns", ns)


def _netns_exists(ns: str) -> bool:
    return os.path.exists(_netns_path(ns))


def _in_netns(ns: str, fn: Callable[[], T]) -> T:
    """Run fn in a throw-away thread that has joined ns.

    setns(CLONE_NEWNET) only moves the calling thread, and sockets keep the
    namespace they were created in, so this needs no fork and cannot leak the
    namespace into the rest of the process.
    """
    from pyroute2 import netns as pr_netns

    result: list[T] = []
    error: list[BaseException] = []

    def runner() -> None:
        try:
            pr_netns.setns(ns, flags=0)
            result.append(fn())
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            error.append(e)

    t = threading.Thread(target=runner, name=f"zbl-netns-{ns}", daemon=True)
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]


def _proc_state(pid: int) -> str | None:
    """Single-letter process state, or None if no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may contain spaces and parentheses: the state follows the last ')'.
    return stat.rsplit(")", 1)[1].split()[0]


def _alive(pid: int) -> bool:
    return _proc_state(pid) not in (None, "Z", "X")


def _exe_name(pid: int) -> str | None:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe")).removesuffix(" (deleted)")
    except OSError:
        return None


def _ns_inode(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _pids_in_netns(ns: str) -> list[int]:
    want = _ns_inode(_netns_path(ns))
    if want is None:
        return []
    me = os.getpid()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        if _ns_inode(f"/proc/{entry}/ns/net") == want and _alive(int(entry)):
            pids.append(int(entry))
    return sorted(pids)


def _listening_ports(pid: int) -> list[int]:
    """TCP ports listening in pid's network namespace (IPv4)."""
    ports = set()
    try:
        with open(f"/proc/{pid}/net/tcp") as f:
            next(f)
            for line in f:
                cols = line.split()
                if cols[3] == "0A":  # TCP_LISTEN
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    except (OSError, StopIteration):
        return []
    return sorted(ports)


def _read_pidfile(name: str) -> int | None:
    try:
        with open(os.path.join(STATE_DIR, f"{name}.pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _comm(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def _server_pid(name: str) -> int | None:
    """The tracked pid of server `name` if that process is alive and really is the server."""
    pid = _read_pidfile(name)
    if pid is None or not _alive(pid):
        return None
    # Debian's redis-server is a symlink to redis-check-rdb (exe shows the
    # target, comm the name it was started as), so accept either.
    if _SERVER_EXE[name] not in (_exe_name(pid), _comm(pid)):
        return None
    return pid


def _log_path(name: str) -> str:
    return os.path.join(STATE_DIR, f"{name}.log")


def _log_tail(name: str, lines: int = 15) -> str:
    try:
        with open(_log_path(name), errors="replace") as f:
            return "".join(f.readlines()[-lines:]).rstrip()
    except OSError:
        return ""


def _render(template: str, dest: str, mode: int = 0o644) -> None:
    text = resources.files("zbanner_xdp").joinpath("lab_files", template).read_text()
    values = {"STATE_DIR": STATE_DIR, "RST_NET": RST_NET, "SILENT_NET": SILENT_NET}
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    leftover = re.findall(r"@[A-Z_]+@", text)
    if leftover:
        raise RuntimeError(f"lab: template {template} has unknown placeholders {leftover}")
    with open(dest, "w") as f:
        f.write(text)
    os.chmod(dest, mode)


# --------------------------------------------------------------------------- status


def _link_status(ns: str, ifname: str) -> dict[str, Any] | None:
    from pyroute2 import IPRoute

    with IPRoute(netns=ns, flags=0) as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            return None
        link = ipr.get_links(idx[0])[0]
        addrs = [
            f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
            for a in ipr.get_addr(index=idx[0], family=socket.AF_INET)
        ]
        return {
            "netns": ns,
            "index": idx[0],
            "up": bool(link["flags"] & 1),
            "mac": link.get_attr("IFLA_ADDRESS"),
            "addrs": addrs,
        }


def _routes_ok() -> dict[str, bool]:
    from pyroute2 import IPRoute

    def has(ipr: Any, dst: str, **kw: Any) -> bool:
        net, plen = dst.split("/")
        for r in ipr.get_routes(family=socket.AF_INET, **kw):
            if r["dst_len"] == int(plen) and r.get_attr("RTA_DST") == net:
                return True
        return False

    out = {"scan_route": False, "anyip": False, "blackhole": False}
    if _netns_exists(SCAN_NS):
        with IPRoute(netns=SCAN_NS, flags=0) as ipr:
            out["scan_route"] = has(ipr, SCAN_ROUTE)
    if _netns_exists(TARGET_NS):
        with IPRoute(netns=TARGET_NS, flags=0) as ipr:
            out["anyip"] = has(ipr, BIG_NET, table=255)
            out["blackhole"] = has(ipr, BLACKHOLE_NET)
    return out


def _nft_table_present() -> bool:
    if not _netns_exists(TARGET_NS):
        return False
    try:
        proc = subprocess.run(
            ns_exec_argv(TARGET_NS, ["nft", "list", "table", "inet", "zbl"]),
            capture_output=True,
            timeout=CMD_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def _root_leftover_links() -> list[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        names = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
    return sorted(n for n in names if n and n.startswith(PREFIX))


def _status_unlocked() -> dict[str, Any]:
    namespaces = {ns: _netns_exists(ns) for ns in (SCAN_NS, TARGET_NS)}
    links: dict[str, Any] = {}
    for ns, ifname in ((SCAN_NS, SCAN_IF), (TARGET_NS, TARGET_IF)):
        links[ifname] = None
        if namespaces[ns]:
            with contextlib.suppress(Exception):
                links[ifname] = _link_status(ns, ifname)
    try:
        routes = _routes_ok()
    except Exception:
        routes = {"scan_route": False, "anyip": False, "blackhole": False}
    target_ino = _ns_inode(_netns_path(TARGET_NS))
    servers: dict[str, Any] = {}
    for name, keys in SERVERS.items():
        recorded = _read_pidfile(name)
        pid = _server_pid(name)
        servers[name] = {
            "pid": recorded,
            "alive": pid is not None,
            "in_target_ns": pid is not None and _ns_inode(f"/proc/{pid}/ns/net") == target_ino,
            "ports": [PORTS[k] for k in keys],
            "log": _log_path(name),
        }
    # Every server shares the target namespace, so one pid shows all listeners.
    any_pid = next((s["pid"] for s in servers.values() if s["alive"]), None)
    listening = _listening_ports(any_pid) if any_pid else []
    try:
        root_links = _root_leftover_links()
    except Exception:
        root_links = []
    marker = os.path.exists(os.path.join(STATE_DIR, "lab.json"))
    nft = _nft_table_present()
    links_ok = all(
        links[i] is not None and links[i]["up"] and f"{ip}/{LINK_PREFIXLEN}" in links[i]["addrs"]
        for i, ip in ((SCAN_IF, SCAN_IP), (TARGET_IF, TARGET_GW))
    )
    complete = (
        marker
        and all(namespaces.values())
        and links_ok
        and all(routes.values())
        and nft
        and all(s["alive"] and s["in_target_ns"] for s in servers.values())
        and set(PORTS.values()) <= set(listening)
    )
    return {
        "complete": bool(complete),
        "state_dir": STATE_DIR,
        "state_dir_exists": os.path.isdir(STATE_DIR),
        "namespaces": namespaces,
        "links": links,
        "routes": routes,
        "nft_table": nft,
        "servers": servers,
        "listening_ports": listening,
        "root_leftover_links": root_links,
        "scan_ip": SCAN_IP,
        "gateway_ip": TARGET_GW,
        "address_plan": address_plan(),
    }


def status() -> dict[str, Any]:
    """What exists right now; JSON-serialisable. "complete" is True only for a fully built lab."""
    with _locked():
        return _status_unlocked()


def format_status(d: dict[str, Any]) -> str:
    def yn(b: bool) -> str:
        return "yes" if b else "NO"

    lines = [f"lab: {'UP (complete)' if d['complete'] else 'not (fully) up'}"]
    lines.append(f"  state dir   {d['state_dir']} ({'present' if d['state_dir_exists'] else 'absent'})")
    for ns, present in d["namespaces"].items():
        lines.append(f"  netns       {ns}: {'present' if present else 'absent'}")
    for ifname, link in d["links"].items():
        if link is None:
            lines.append(f"  link        {ifname}: absent")
        else:
            state = "up" if link["up"] else "down"
            addrs = ", ".join(link["addrs"]) or "no address"
            lines.append(f"  link        {ifname} in {link['netns']}: {state}, {link['mac']}, {addrs}")
    r = d["routes"]
    lines.append(
        f"  routes      {SCAN_ROUTE} via {TARGET_GW}: {yn(r['scan_route'])}; "
        f"local {BIG_NET}: {yn(r['anyip'])}; blackhole {BLACKHOLE_NET}: {yn(r['blackhole'])}"
    )
    lines.append(f"  nftables    table inet zbl in {TARGET_NS}: {yn(d['nft_table'])}")
    for name, s in d["servers"].items():
        ports = ",".join(str(p) for p in s["ports"])
        pid = s["pid"] if s["pid"] is not None else "-"
        state = "running" if s["alive"] else "not running"
        lines.append(f"  server      {name:<7} ports {ports:<7} pid {pid!s:<8} {state}  log {s['log']}")
    if d["listening_ports"]:
        lines.append(f"  listening   {', '.join(str(p) for p in d['listening_ports'])}")
    if d["root_leftover_links"]:
        lines.append(f"  LEFTOVER    root-namespace links: {', '.join(d['root_leftover_links'])}")
    lines.append(f"address plan (scan from {SCAN_NS}, {d['scan_ip']} -> gateway {d['gateway_ip']}):")
    for text in d["address_plan"].values():
        lines.append(f"  {text}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- down


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _reap(pids: list[int]) -> None:
    for pid in pids:
        child = _CHILDREN.pop(pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=1)
            continue
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    left = pids
    while True:
        _reap([p for p in left if p in _CHILDREN and _CHILDREN[p].poll() is not None])
        left = [p for p in left if _alive(p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.02)


def _kill_lab_processes(removed: list[str]) -> None:
    from pyroute2 import netns as pr_netns

    victims: dict[int, str] = {}
    # Every zbl-* namespace, not just the two: down() removes them all, and a
    # namespace still holding a process would outlive its name (with its links).
    for ns in sorted(n for n in pr_netns.listnetns() if n.startswith(PREFIX)):
        for pid in _pids_in_netns(ns):
            victims[pid] = f"process {pid} ({_comm(pid) or '?'}) in {ns}"
    for name in SERVERS:
        pid = _server_pid(name)
        if pid is not None and pid != os.getpid():
            victims.setdefault(pid, f"process {pid} ({name}) from {STATE_DIR}")
    if not victims:
        _reap(list(_CHILDREN))
        return
    pids = sorted(victims)
    _signal_all(pids, signal.SIGTERM)
    left = _wait_gone(pids, TERM_GRACE)
    if left:
        _signal_all(left, signal.SIGKILL)
        left = _wait_gone(left, TERM_GRACE)
    _reap(pids + list(_CHILDREN))
    removed.extend(victims[p] for p in pids if p not in left)
    for pid in left:
        removed.append(f"{victims[pid]} did NOT exit (uninterruptible?)")


def _down_unlocked(keep_state_dir: bool = False) -> list[str]:
    from pyroute2 import IPRoute
    from pyroute2 import netns as pr_netns

    removed: list[str] = []
    _kill_lab_processes(removed)
    # Deleting a namespace only drops its mount; the kernel tears it (and the
    # veth) down asynchronously. Deleting the veth first makes that synchronous.
    for ns, ifname in ((SCAN_NS, SCAN_IF), (TARGET_NS, TARGET_IF)):
        if not _netns_exists(ns):
            continue
        with contextlib.suppress(Exception), IPRoute(netns=ns, flags=0) as ipr:
            idx = ipr.link_lookup(ifname=ifname)
            if idx:
                ipr.link("del", index=idx[0])
                removed.append(f"link {ifname} in {ns}")
    for ns in pr_netns.listnetns():
        if ns.startswith(PREFIX):
            try:
                pr_netns.remove(ns)
                removed.append(f"netns {ns}")
            except OSError:
                # `ip` can cope with odd leftovers (e.g. a mount without a file).
                with contextlib.suppress(RuntimeError):
                    _run(["ip", "netns", "delete", ns], f"delete netns {ns}")
                    removed.append(f"netns {ns}")
    with contextlib.suppress(Exception), IPRoute() as ipr:
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if name and name.startswith(PREFIX):
                with contextlib.suppress(Exception):
                    ipr.link("del", index=link["index"])
                    removed.append(f"link {name} in root namespace")
    if not keep_state_dir and os.path.isdir(STATE_DIR):
        shutil.rmtree(STATE_DIR, ignore_errors=True)
        removed.append(f"state dir {STATE_DIR}")
    return removed


def down() -> list[str]:
    """Remove every lab piece that exists (even half-built); return what was removed. Never raises
    for missing pieces."""
    with _locked():
        return _down_unlocked()


# --------------------------------------------------------------------------- up


def _sysctl(ns: str, values: dict[str, str]) -> None:
    _run(
        ns_exec_argv(ns, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in values.items())]), f"sysctl in {ns}"
    )


def _build_network() -> None:
    from pyroute2 import IPRoute
    from pyroute2 import netns as pr_netns

    with _step("creating namespaces"):
        for ns in (SCAN_NS, TARGET_NS):
            pr_netns.create(ns)
    # Before the veth exists, so its ends inherit the "default" values.
    _sysctl(SCAN_NS, SCAN_SYSCTLS)
    _sysctl(TARGET_NS, TARGET_SYSCTLS)
    with _step(f"creating veth {SCAN_IF}/{TARGET_IF}"), IPRoute(netns=SCAN_NS, flags=0) as ipr:
        # Created inside the scan namespace with the peer placed straight into
        # the target one: the pair never appears in the host's namespace.
        ipr.link(
            "add",
            ifname=SCAN_IF,
            kind="veth",
            address=SCAN_MAC,
            peer={"ifname": TARGET_IF, "net_ns_fd": TARGET_NS, "address": TARGET_MAC},
        )
    with _step(f"configuring {SCAN_NS}"), IPRoute(netns=SCAN_NS, flags=0) as ipr:
        lo = ipr.link_lookup(ifname="lo")[0]
        idx = ipr.link_lookup(ifname=SCAN_IF)[0]
        ipr.link("set", index=lo, state="up")
        ipr.addr("add", index=idx, address=SCAN_IP, prefixlen=LINK_PREFIXLEN)
        ipr.link("set", index=idx, state="up")
        ipr.route("add", dst=SCAN_ROUTE, gateway=TARGET_GW)
    with _step(f"configuring {TARGET_NS}"), IPRoute(netns=TARGET_NS, flags=0) as ipr:
        lo = ipr.link_lookup(ifname="lo")[0]
        idx = ipr.link_lookup(ifname=TARGET_IF)[0]
        ipr.link("set", index=lo, state="up")
        ipr.addr("add", index=idx, address=TARGET_GW, prefixlen=LINK_PREFIXLEN)
        ipr.link("set", index=idx, state="up")
        # == `ip route add local 198.18.0.0/16 dev lo`: AnyIP, every address is ours.
        ipr.route("add", dst=BIG_NET, type="local", oif=lo, table=255, scope="host")
        ipr.route("add", dst=BLACKHOLE_NET, type="blackhole")
    for ns, ifname in ((SCAN_NS, SCAN_IF), (TARGET_NS, TARGET_IF)):
        with _step(f"disabling tx checksum offload on {ifname}"):
            _in_netns(ns, lambda ifname=ifname: _tx_csum_off(ifname))


def _tx_csum_off(ifname: str) -> None:
    from pyroute2.ethtool.ioctl import IoctlEthtool

    eth = IoctlEthtool(ifname)  # its ioctl socket is created in this thread's namespace
    try:
        eth.set_offload_flag("tx-checksumming", 0)
    finally:
        eth.close()


def _prepare_state_dir() -> list[subprocess.Popen[bytes]]:
    """Lay out STATE_DIR and start key generation (in parallel with the network build)."""
    for sub in ("", "run", "www", "tls", "nginx-tmp"):
        os.makedirs(os.path.join(STATE_DIR, sub), mode=0o755, exist_ok=True)
    os.chmod(STATE_DIR, 0o755)  # nginx workers run as www-data and read www/
    # sshd refuses to start without its privilege separation dir; vsftpd
    # without its secure_chroot_dir. Both are the packages' standard paths.
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    os.makedirs("/var/run/vsftpd/empty", mode=0o755, exist_ok=True)
    tls = os.path.join(STATE_DIR, "tls")
    argvs = [
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-subj", "/CN=zbanner-lab", "-days", "30",
            "-keyout", os.path.join(tls, "lab.key"), "-out", os.path.join(tls, "lab.crt"),
        ],
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{STATE_DIR}/ssh_host_ed25519_key"],
    ]  # fmt: skip
    procs = []
    for argv in argvs:
        try:
            procs.append(
                subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
                )
            )
        except FileNotFoundError as e:
            raise RuntimeError(f"lab: {argv[0]} not found (is it installed?)") from e
    return procs


def _finish_keygen(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=CMD_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            proc.kill()
            proc.communicate()
            raise RuntimeError(f"lab: {proc.args[0]} timed out") from e  # type: ignore[index]
        if proc.returncode != 0:
            raise RuntimeError(
                f"lab: {' '.join(proc.args)} exited {proc.returncode}: "  # type: ignore[arg-type]
                f"{out.decode(errors='replace').strip()}"
            )


def _write_configs() -> None:
    _render("nginx.conf", os.path.join(STATE_DIR, "nginx.conf"))
    _render("index.html", os.path.join(STATE_DIR, "www", "index.html"))
    _render("sshd_config", os.path.join(STATE_DIR, "sshd_config"), 0o600)
    _render("vsftpd.conf", os.path.join(STATE_DIR, "vsftpd.conf"), 0o600)
    _render("zbl.nft", os.path.join(STATE_DIR, "zbl.nft"))
    # Empty allow-list: with userlist_deny=NO nobody may log in.
    open(os.path.join(STATE_DIR, "vsftpd.user_list"), "w").close()
    os.chmod(os.path.join(STATE_DIR, "tls", "lab.key"), 0o600)


def _server_argv(name: str) -> list[str]:
    s = STATE_DIR
    if name == "nginx":
        return ["nginx", "-p", s, "-e", f"{s}/nginx.log", "-c", f"{s}/nginx.conf"]
    if name == "sshd":
        # sshd re-execs itself per connection and insists on an absolute path.
        return [shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-e", "-f", f"{s}/sshd_config"]
    if name == "vsftpd":
        return ["vsftpd", f"{s}/vsftpd.conf"]
    if name == "redis":
        return [
            "redis-server", "--port", str(PORTS["redis"]), "--bind", "0.0.0.0",
            "--protected-mode", "no", "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--dir", s, "--pidfile", f"{s}/run/redis.pid", "--tcp-backlog", "65535",
        ]  # fmt: skip
    raise ValueError(name)


def _start_server(name: str) -> subprocess.Popen[bytes]:
    argv = ns_exec_argv(TARGET_NS, _server_argv(name))
    with open(_log_path(name), "ab") as log:
        try:
            # New session: the servers must outlive the `lab up` CLI process
            # and must not get its terminal's SIGINT.
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, cwd=STATE_DIR
            )
        except OSError as e:
            raise RuntimeError(f"lab: starting {name} failed: {e}") from e
    _CHILDREN[proc.pid] = proc
    # `ip netns exec` execs the server in place, so this pid is the server itself.
    with open(os.path.join(STATE_DIR, f"{name}.pid"), "w") as f:
        f.write(f"{proc.pid}\n")
    return proc


def _accepting(host: str, ports: list[int]) -> set[int]:
    ok = set()
    for port in ports:
        try:
            with socket.create_connection((host, port), timeout=0.3):
                ok.add(port)
        except OSError:
            pass
    return ok


def _wait_ready(procs: dict[str, subprocess.Popen[bytes]], timeout: float = READY_TIMEOUT) -> None:
    pending = {name: [PORTS[k] for k in SERVERS[name]] for name in procs}
    deadline = time.monotonic() + timeout
    while pending:
        for name, proc in procs.items():
            if name in pending and proc.poll() is not None:
                raise RuntimeError(
                    f"lab: {name} exited with status {proc.returncode} while starting; "
                    f"see {_log_path(name)}:\n{_log_tail(name)}"
                )
        ports = sorted({p for ps in pending.values() for p in ps})
        # Connect from the scanner's side: proves the veth, the addresses and
        # the server all work, not just that something is bound.
        ok = _in_netns(SCAN_NS, lambda ports=ports: _accepting(TARGET_GW, ports))
        pending = {n: ps for n, ps in pending.items() if not set(ps) <= ok}
        if not pending:
            return
        if time.monotonic() >= deadline:
            name = sorted(pending)[0]
            raise RuntimeError(
                f"lab: {name} did not accept TCP connections on {TARGET_GW}:{pending[name]} "
                f"within {timeout:.0f}s; see {_log_path(name)}:\n{_log_tail(name)}"
            )
        time.sleep(0.05)


def _info_from_state() -> LabInfo:
    try:
        with open(os.path.join(STATE_DIR, "lab.json")) as f:
            info = LabInfo.from_dict(json.load(f))
    except (OSError, ValueError):
        info = LabInfo()
    info.servers = {name: pid for name in SERVERS if (pid := _server_pid(name)) is not None}
    return info


def up(force: bool = False) -> LabInfo:
    """Build the lab. Idempotent: a complete lab is returned as is; a partial one is torn down and
    rebuilt (so is a complete one with force=True). Raises RuntimeError on failure, after removing the
    namespaces and processes but keeping STATE_DIR so the logs can be read."""
    if os.geteuid() != 0:
        raise RuntimeError("lab: needs root (network namespaces, veth, nftables)")
    if shutil.which("ip") is None:
        raise RuntimeError("lab: iproute2's `ip` not found")
    with _locked():
        if not force and _status_unlocked()["complete"]:
            return _info_from_state()
        _down_unlocked()
        try:
            keygen = _prepare_state_dir()
            try:
                _build_network()
            finally:
                _finish_keygen(keygen)
            _write_configs()
            _run(
                ns_exec_argv(TARGET_NS, ["nft", "-f", os.path.join(STATE_DIR, "zbl.nft")]), "loading nftables"
            )
            procs = {name: _start_server(name) for name in SERVERS}
            _wait_ready(procs)
            info = LabInfo(servers={name: proc.pid for name, proc in procs.items()})
            with open(os.path.join(STATE_DIR, "lab.json"), "w") as f:
                json.dump(info.to_dict(), f, indent=2)
            return info
        except BaseException:
            _down_unlocked(keep_state_dir=True)
            raise


def main(argv: list[str] | None = None) -> int:
    """`python -m zbanner_xdp.lab up|down|status` (the same as `zbanner-xdp lab ...`)."""
    p = argparse.ArgumentParser(prog="python -m zbanner_xdp.lab")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--force", action="store_true", help="up: rebuild even if the lab is complete")
    p.add_argument("--json", action="store_true", help="status: print JSON")
    args = p.parse_args(argv)
    try:
        if args.action == "up":
            t0 = time.monotonic()
            up(force=args.force)
            print(f"lab up in {time.monotonic() - t0:.2f}s")
            print(format_status(status()))
        elif args.action == "down":
            for item in down():
                print(f"removed {item}")
        else:
            d = status()
            print(json.dumps(d, indent=2) if args.json else format_status(d))
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
