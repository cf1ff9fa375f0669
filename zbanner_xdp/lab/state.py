"""What of the lab exists right now, and whether it is complete: status() and its text form."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
from typing import Any

from .. import bpfsys
from . import procs, relay, servers, topology, users
from .network import IFF_PROMISC, IFF_UP
from .procs import CMD_TIMEOUT, ns_exec_argv
from .topology import (
    ADDRESSES,
    ADDRESSES6,
    LINK_PREFIXLEN,
    LINK_PREFIXLEN6,
    NFT_TABLE,
    PASS_PROG_NAME,
    PORTS,
    PREFIX,
    ROUTER_IF,
    ROUTER_NS,
    ROUTES,
    SCAN_IP,
    SCAN_IP6,
    SCAN_NS,
    STATE_DIR,
    TARGET_GW,
    TARGET_GW6,
    TARGET_NS,
    TCP_PORTS,
    UDP_PORTS,
    WIRE_NS,
    WIRE_ROUTER_IF,
    WIRE_SCAN_IF,
)
from .truth import address_plan

_RT_TYPES = {1: "unicast", 2: "local", 6: "blackhole", 7: "unreachable", 8: "prohibit"}


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
        # Global IPv6 addresses only: the kernel's own link-local fe80:: one is not the plan's.
        addrs6 = [
            f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
            for a in ipr.get_addr(index=idx[0], family=socket.AF_INET6)
            if not a.get_attr("IFA_ADDRESS", "").startswith("fe80:")
        ]
        xdp = link.get_attr("IFLA_XDP")
        prog_id = xdp.get_attr("IFLA_XDP_PROG_ID") if xdp is not None else None
        return {
            "netns": ns,
            "index": idx[0],
            "up": bool(link["flags"] & IFF_UP),
            "promisc": bool(link["flags"] & IFF_PROMISC),
            "mac": link.get_attr("IFLA_ADDRESS"),
            "addrs": addrs,
            "addrs6": addrs6,
            "xdp": _prog_name(prog_id) if prog_id else None,
        }


def _prog_name(prog_id: int) -> str | None:
    """The name of a loaded BPF program, by id (None if it is gone)."""
    try:
        fd = bpfsys.prog_fd_by_id(prog_id)
    except OSError:
        return None
    try:
        return bpfsys.prog_name(fd)
    finally:
        os.close(fd)


def _routes_ok() -> dict[str, bool]:
    from pyroute2 import IPRoute

    out = dict.fromkeys(ROUTES, False)
    for ns in (SCAN_NS, ROUTER_NS, TARGET_NS):
        if not procs.netns_exists(ns):
            continue
        with IPRoute(netns=ns, flags=0) as ipr:
            for table in (254, 255):
                have = {
                    (
                        f"{r.get_attr('RTA_DST') or ('::' if family == socket.AF_INET6 else '0.0.0.0')}"
                        f"/{r['dst_len']}",
                        _RT_TYPES.get(r["type"]),
                        r.get_attr("RTA_GATEWAY"),
                    )
                    for family in (socket.AF_INET, socket.AF_INET6)
                    for r in ipr.get_routes(family=family, table=table)
                }
                for key, (rns, dst, kind, gw, rtable) in ROUTES.items():
                    if rns == ns and rtable == table:
                        out[key] = (dst, kind, gw) in have
    return out


def _nft_tables_present() -> dict[str, bool]:
    out = {}
    for ns, families in ((TARGET_NS, ("inet",)), (ROUTER_NS, ("ip", "ip6"))):
        ok = False
        if procs.netns_exists(ns):
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                ok = all(
                    subprocess.run(
                        ns_exec_argv(ns, ["nft", "list", "table", family, NFT_TABLE]),
                        capture_output=True,
                        timeout=CMD_TIMEOUT,
                        check=False,
                    ).returncode
                    == 0
                    for family in families
                )
        out[ns] = ok
    return out


def _root_leftover_links() -> list[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        names = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
    return sorted(n for n in names if n and n.startswith(PREFIX))


def read_marker() -> dict[str, Any] | None:
    try:
        with open(os.path.join(STATE_DIR, "lab.json")) as f:
            d = json.load(f)
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def status_unlocked() -> dict[str, Any]:
    marker = read_marker()
    # The wire is part of the lab when up(wire=True) built it, or when its namespace exists at all.
    wire = bool(marker and marker.get("wire")) or procs.netns_exists(WIRE_NS)
    namespaces = {ns: procs.netns_exists(ns) for ns in topology.namespaces(wire)}
    links: dict[str, Any] = {}
    for ns, ifname in topology.interfaces(wire):
        links[ifname] = None
        if namespaces[ns]:
            with contextlib.suppress(Exception):
                links[ifname] = _link_status(ns, ifname)
    try:
        routes = _routes_ok()
    except Exception:
        routes = dict.fromkeys(ROUTES, False)
    target_ino = procs.ns_inode(procs.netns_path(TARGET_NS))
    server_st: dict[str, Any] = {}
    for name, keys in servers.SERVERS.items():
        recorded = procs.read_pidfile(name)
        pid = servers.server_pid(name)
        server_st[name] = {
            "pid": recorded,
            "alive": pid is not None,
            "in_target_ns": pid is not None and procs.ns_inode(f"/proc/{pid}/ns/net") == target_ino,
            "ports": [PORTS[k] for k in keys],
            "log": procs.log_path(name),
        }
    # Every server shares the target namespace, so one pid shows all listeners.
    any_pid = next((s["pid"] for s in server_st.values() if s["alive"]), None)
    listening = procs.bound_ports(any_pid, "tcp") if any_pid else []
    listening_udp = procs.bound_ports(any_pid, "udp") if any_pid else []
    try:
        root_links = _root_leftover_links()
    except Exception:
        root_links = []
    nft = _nft_tables_present()
    links_ok = all(
        links[i] is not None
        and links[i]["up"]
        and f"{ip}/{LINK_PREFIXLEN}" in links[i]["addrs"]
        and f"{ADDRESSES6[i]}/{LINK_PREFIXLEN6}" in links[i]["addrs6"]
        for i, ip in ADDRESSES.items()
    )
    relay_st = relay.relay_status() if wire else None
    wire_ok = True
    if wire:
        wire_ok = all(
            links[i] is not None
            and links[i]["up"]
            and links[i]["promisc"]
            and not links[i]["addrs"]
            and not links[i]["addrs6"]
            for i in (WIRE_SCAN_IF, WIRE_ROUTER_IF)
        )
        # Without the relay module the wire cannot forward; it is as complete as it can be.
        wire_ok = wire_ok and (relay_st is not None and (relay_st["alive"] or not relay_st["available"]))
    # The next hop's pass program (nexthop.py): reported, not required (an emulator may hold it).
    hop = links.get(WIRE_SCAN_IF if wire else ROUTER_IF)
    next_hop_xdp = hop is not None and hop["xdp"] == PASS_PROG_NAME
    complete = (
        marker is not None
        and bool(marker.get("wire")) == wire
        and all(namespaces.values())
        and links_ok
        and wire_ok
        and all(routes.values())
        and all(nft.values())
        and all(s["alive"] and s["in_target_ns"] for s in server_st.values())
        and set(listening) >= TCP_PORTS
        and set(listening_udp) >= UDP_PORTS
    )
    return {
        "complete": bool(complete),
        "prefix": PREFIX,
        "state_dir": STATE_DIR,
        "state_dir_exists": os.path.isdir(STATE_DIR),
        "wire": wire,
        "namespaces": namespaces,
        "links": links,
        "routes": routes,
        "nft_table": all(nft.values()),
        "nft_tables": nft,
        "servers": server_st,
        "relay": relay_st,
        "next_hop_xdp": next_hop_xdp,
        "listening_ports": listening,
        "listening_udp_ports": listening_udp,
        "root_leftover_links": root_links,
        "built_by": (marker or {}).get("built_by"),
        "in_use_by": users.others() if os.path.isdir(STATE_DIR) or any(namespaces.values()) else [],
        "scan_ip": SCAN_IP,
        "gateway_ip": TARGET_GW,
        "scan_ip6": SCAN_IP6,
        "gateway_ip6": TARGET_GW6,
        "address_plan": address_plan(),
    }


def status() -> dict[str, Any]:
    """What exists right now; JSON-serialisable. "complete" is True only for a fully built lab."""
    with procs.locked():
        return status_unlocked()


def format_status(d: dict[str, Any]) -> str:
    def yn(b: bool) -> str:
        return "yes" if b else "NO"

    kind = "with fault wire" if d.get("wire") else "no wire"
    state = "UP (complete)" if d["complete"] else "not (fully) up"
    lines = [f"lab: {state} (prefix {d['prefix']!r}, {kind})"]
    lines.append(f"  state dir   {d['state_dir']} ({'present' if d['state_dir_exists'] else 'absent'})")
    for ns, present in d["namespaces"].items():
        lines.append(f"  netns       {ns}: {'present' if present else 'absent'}")
    for ifname, link in d["links"].items():
        if link is None:
            lines.append(f"  link        {ifname}: absent")
        else:
            state = "up" if link["up"] else "down"
            if link["promisc"]:
                state += ", promisc"
            addrs = ", ".join(link["addrs"] + link.get("addrs6", [])) or "no address"
            xdp = f", xdp {link['xdp']}" if link.get("xdp") else ""
            lines.append(f"  link        {ifname} in {link['netns']}: {state}, {link['mac']}, {addrs}{xdp}")
    r = d["routes"]
    for key, (ns, dst, kind, gw, table) in ROUTES.items():
        what = f"{kind} {dst}" + (f" via {gw}" if gw else "") + (" (table local)" if table == 255 else "")
        lines.append(f"  route       {ns}: {what}: {yn(r.get(key, False))}")
    for ns, ok in d["nft_tables"].items():
        family = "inet" if ns == TARGET_NS else "ip and ip6"
        lines.append(f"  nftables    table {family} {NFT_TABLE} in {ns}: {yn(ok)}")
    for name, s in d["servers"].items():
        ports = ",".join(str(p) for p in s["ports"])
        pid = s["pid"] if s["pid"] is not None else "-"
        state = "running" if s["alive"] else "not running"
        lines.append(f"  server      {name:<8} ports {ports:<7} pid {pid!s:<8} {state}  log {s['log']}")
    relay_st = d.get("relay")
    if relay_st is not None:
        if not relay_st["available"]:
            lines.append(f"  relay       {relay.RELAY_MODULE} not available: frames do NOT cross the wire")
        else:
            state = "running" if relay_st["alive"] else "not running"
            faults = f"a2b {relay_st['a2b']!r} b2a {relay_st['b2a']!r}" if relay_st["alive"] else ""
            pid = relay_st["pid"] if relay_st["pid"] is not None else "-"
            lines.append(f"  relay       pid {pid!s:<8} {state} {faults}  log {relay_st['log']}")
    if d["listening_ports"]:
        lines.append(f"  listening   tcp {', '.join(str(p) for p in d['listening_ports'])}")
    if d["listening_udp_ports"]:
        lines.append(f"  listening   udp {', '.join(str(p) for p in d['listening_udp_ports'])}")
    if d["root_leftover_links"]:
        lines.append(f"  LEFTOVER    root-namespace links: {', '.join(d['root_leftover_links'])}")
    if d.get("built_by"):
        lines.append(f"  owner       {users.describe_owner(d['built_by'])}")
    for user in d.get("in_use_by") or []:
        lines.append(f"  in use      {user}")
    lines.append(f"address plan (scan from {SCAN_NS}, {d['scan_ip']} -> gateway {d['gateway_ip']}):")
    for text in d["address_plan"].values():
        lines.append(f"  {text}")
    return "\n".join(lines)
