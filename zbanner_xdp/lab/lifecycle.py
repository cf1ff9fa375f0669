"""up() and down(): the whole lab built, or every piece of it removed, under the lab's lock."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import time

from . import network, nexthop, procs, relay, servers, state, users
from .procs import TERM_GRACE, ns_exec_argv
from .topology import (
    PREFIX,
    ROUTER_NS,
    SCAN_NS,
    STATE_DIR,
    TARGET_NS,
    WIRE_NS,
    WIRE_ROUTER_IF,
    WIRE_SCAN_IF,
    LabInfo,
    interfaces,
)


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    left = pids
    while True:
        procs.reap([p for p in left if p in procs.CHILDREN and procs.CHILDREN[p].poll() is not None])
        left = [p for p in left if procs.alive(p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.02)


def _lab_namespaces() -> list[str]:
    from pyroute2 import netns as pr_netns

    return sorted(n for n in pr_netns.listnetns() if n.startswith(PREFIX))


def _kill_lab_processes(removed: list[str]) -> None:
    victims: dict[int, str] = {}
    # Every PREFIX* namespace, not just the lab's: down() removes them all, and a
    # namespace still holding a process would outlive its name (with its links).
    for ns in _lab_namespaces():
        for pid in procs.pids_in_netns(ns):
            victims[pid] = f"process {pid} ({procs.comm(pid) or '?'}) in {ns}"
    for name in servers.SERVERS:
        pid = servers.server_pid(name)
        if pid is not None and pid != os.getpid():
            victims.setdefault(pid, f"process {pid} ({name}) from {STATE_DIR}")
    pid = relay.relay_pid()
    if pid is not None and pid != os.getpid():
        victims.setdefault(pid, f"process {pid} (relay) from {STATE_DIR}")
    # What this process started and has not reaped: a server started a moment before a failed up()
    # may not have entered its namespace yet, nor become what its pid file says (`ip netns exec`
    # still running); neither search above finds it, and it would outlive the lab.
    for pid, child in list(procs.CHILDREN.items()):
        if child.poll() is None:
            victims.setdefault(pid, f"process {pid} ({procs.comm(pid) or '?'}) started for the lab")
    if not victims:
        procs.reap(list(procs.CHILDREN))
        return
    pids = sorted(victims)
    _signal_all(pids, signal.SIGTERM)
    left = _wait_gone(pids, TERM_GRACE)
    if left:
        _signal_all(left, signal.SIGKILL)
        left = _wait_gone(left, TERM_GRACE)
    procs.reap(pids + list(procs.CHILDREN))
    removed.extend(victims[p] for p in pids if p not in left)
    for pid in left:
        removed.append(f"{victims[pid]} did NOT exit (uninterruptible?)")


def _down_unlocked(keep_state_dir: bool = False) -> list[str]:
    from pyroute2 import IPRoute
    from pyroute2 import netns as pr_netns

    removed: list[str] = []
    _kill_lab_processes(removed)
    # Deleting a namespace only drops its mount; the kernel tears it (and the
    # veths) down asynchronously. Deleting the veths first makes that synchronous.
    for ns, ifname in dict.fromkeys(interfaces(False) + interfaces(True)):
        if not procs.netns_exists(ns):
            continue
        with contextlib.suppress(Exception), IPRoute(netns=ns, flags=0) as ipr:
            idx = ipr.link_lookup(ifname=ifname)
            if idx:
                ipr.link("del", index=idx[0])
                removed.append(f"link {ifname} in {ns}")
    for ns in _lab_namespaces():
        try:
            pr_netns.remove(ns)
            removed.append(f"netns {ns}")
        except OSError:
            # `ip` can cope with odd leftovers (e.g. a mount without a file).
            with contextlib.suppress(RuntimeError):
                procs.run(["ip", "netns", "delete", ns], f"delete netns {ns}")
                removed.append(f"netns {ns}")
    with contextlib.suppress(Exception), IPRoute() as ipr:
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if name and name.startswith(PREFIX):
                with contextlib.suppress(Exception):
                    ipr.link("del", index=link["index"])
                    removed.append(f"link {name} in root namespace")
    if servers.remove_datadirs():  # throw-away copies, even when STATE_DIR's logs are kept
        removed.append(f"data directories {servers.DATA_DIR}")
    if not keep_state_dir and os.path.isdir(STATE_DIR):
        shutil.rmtree(STATE_DIR, ignore_errors=True)
        removed.append(f"state dir {STATE_DIR}")
    return removed


def _exists() -> bool:
    return os.path.isdir(STATE_DIR) or bool(_lab_namespaces())


def down(force: bool = False) -> list[str]:
    """Remove every lab piece that exists (even half-built), the wire and its relay included; return
    what was removed. Touches only names with this lab's PREFIX. Never raises for missing pieces.

    Raises users.LabInUse, removing nothing, while another process uses the lab (holds a lease, or
    runs in its namespaces: see users.py), unless force."""
    with procs.locked():
        if not force and _exists():
            users.refuse_if_used("removed", (state.read_marker() or {}).get("built_by"))
        return _down_unlocked()


def _info_from_state() -> LabInfo:
    info = LabInfo.from_dict(state.read_marker() or {})
    info.servers = {name: pid for name in servers.SERVERS if (pid := servers.server_pid(name)) is not None}
    info.relay_pid = relay.relay_pid() if info.wire else None
    return info


def up(force: bool = False, wire: bool = False) -> LabInfo:
    """Build the lab (with the fault wire and its plain relay if wire=True). Idempotent: a complete lab
    of the same kind is returned as is; a partial one or one of the other kind is torn down and rebuilt
    (so is a complete one with force=True). Raises RuntimeError on failure, after removing the
    namespaces and processes but keeping STATE_DIR so the logs can be read.

    Without the relay module (relay.RELAY_MODULE) a wire lab is still built, but frames do not cross
    the wire (no relay) and readiness is checked from the router instead of the scanner.

    A lab that would be torn down to be rebuilt is not while another process uses it (users.py):
    users.LabInUse is raised instead, unless force.
    """
    if os.geteuid() != 0:
        raise RuntimeError("lab: needs root (network namespaces, veth, nftables)")
    if shutil.which("ip") is None:
        raise RuntimeError("lab: iproute2's `ip` not found")
    with procs.locked():
        if not force:
            st = state.status_unlocked()
            if st["complete"] and st["wire"] == wire:
                hop_ns, hop_if = nexthop.next_hop(wire)
                if st["links"][hop_if]["xdp"] is None:  # removed (a killed emulator): put it back
                    nexthop.set_next_hop_xdp(hop_ns, hop_if, True)
                return _info_from_state()
            if _exists():
                users.refuse_if_used("rebuilt", (state.read_marker() or {}).get("built_by"))
        _down_unlocked()
        try:
            keygen = servers.prepare_state_dir()
            datadirs = servers.prepare_datadirs()
            try:
                try:
                    network.build(wire)
                    with procs.step("attaching the next hop's XDP program"):
                        nexthop.set_next_hop_xdp(*nexthop.next_hop(wire), True)
                finally:
                    servers.finish_keygen(keygen)
            finally:
                servers.finish_datadirs(datadirs)
            servers.write_configs()
            for ns, rules in ((TARGET_NS, "target.nft"), (ROUTER_NS, "router.nft")):
                procs.run(
                    ns_exec_argv(ns, ["nft", "-f", f"{STATE_DIR}/{rules}"]), f"loading nftables in {ns}"
                )
            network.conntrack_sysctls()  # once nftables has loaded conntrack
            started = {name: servers.start_server(name) for name in servers.SERVERS}
            relay_pid = None
            if wire and relay.relay_available():
                relay_pid = relay.start_relay()
            servers.wait_ready(started, ROUTER_NS if wire and relay_pid is None else SCAN_NS)
            info = LabInfo(
                servers={name: proc.pid for name, proc in started.items()},
                wire=wire,
                wire_ns=WIRE_NS if wire else None,
                wire_ifs=[WIRE_SCAN_IF, WIRE_ROUTER_IF] if wire else [],
                relay_pid=relay_pid,
                built_by=users.owner(),
            )
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
    p.add_argument(
        "--force",
        action="store_true",
        help="up: rebuild even if the lab is complete; up/down: even if another process uses it",
    )
    p.add_argument("--wire", action="store_true", help="up: with the fault wire between scanner and router")
    p.add_argument("--json", action="store_true", help="status: print JSON")
    args = p.parse_args(argv)
    try:
        if args.action == "up":
            t0 = time.monotonic()
            up(force=args.force, wire=args.wire)
            print(f"lab up in {time.monotonic() - t0:.2f}s")
            print(state.format_status(state.status()))
        elif args.action == "down":
            for item in down(force=args.force):
                print(f"removed {item}")
        else:
            d = state.status()
            print(json.dumps(d, indent=2) if args.json else state.format_status(d))
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    return 0
