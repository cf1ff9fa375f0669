"""The scanner's next hop gets a do-nothing XDP program, as a NIC would deliver XDP transmits.

A veth delivers XDP transmits (the kernel generator's frames, in-kernel
replies) only to a peer with an XDP program: veth_xdp_flush() kicks the peer's
NAPI only then (with GRO alone the frames wait in the peer's ring until other
traffic wakes it; with neither, they are dropped). A real NIC transmits them
always, so up() attaches this program to the scanner's next hop (the router's
veth, or the wire's), through netlink so that it outlives `lab up`. The
emulator takes its place while it runs (next_hop_xdp_released()); up() puts it
back if a killed emulator left it off.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from .. import bpfsys
from . import state
from .topology import PASS_PROG_NAME, ROUTER_IF, ROUTER_NS, WIRE_NS, WIRE_SCAN_IF

_XDP_PASS_INSNS = bytes.fromhex("b7000000020000009500000000000000")  # r0 = XDP_PASS; exit


def next_hop(wire: bool) -> tuple[str, str]:
    """(namespace, interface) of the scanner's next hop."""
    return (WIRE_NS, WIRE_SCAN_IF) if wire else (ROUTER_NS, ROUTER_IF)


def set_next_hop_xdp(ns: str, ifname: str, on: bool) -> None:
    from pyroute2 import IPRoute

    fd = -1
    if on:
        fd, log = bpfsys.prog_load(bpfsys.BPF_PROG_TYPE_XDP, _XDP_PASS_INSNS, "GPL", PASS_PROG_NAME)
        if fd < 0:
            raise RuntimeError(f"lab: cannot load the next hop's XDP program: {log.splitlines()[0]}")
    try:
        with IPRoute(netns=ns, flags=0) as ipr:
            idx = ipr.link_lookup(ifname=ifname)[0]
            # Netlink, not a bpf_link: the interface keeps the program after this fd is closed.
            attrs = [["IFLA_XDP_FD", fd], ["IFLA_XDP_FLAGS", bpfsys.XDP_FLAGS_DRV_MODE]]
            ipr.link("set", index=idx, xdp={"attrs": attrs})
    finally:
        if fd >= 0:
            os.close(fd)


def next_hop_xdp(on: bool) -> None:
    """Attach (on) or remove the next hop's pass program in the lab as it stands."""
    set_next_hop_xdp(*next_hop(bool((state.read_marker() or {}).get("wire"))), on)


@contextlib.contextmanager
def next_hop_xdp_released() -> Iterator[None]:
    """Without the pass program for the block: for the emulator (one XDP program per interface),
    or to see the scanner where XDP transmits are not delivered. Put back afterwards."""
    next_hop_xdp(False)
    try:
        yield
    finally:
        next_hop_xdp(True)
