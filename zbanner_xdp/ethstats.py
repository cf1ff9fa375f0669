"""A driver's XDP transmit counters, read with the SIOCETHTOOL ioctl.

The kernel generator checks them after every BPF_PROG_RUN call, so reading
must cost a syscall, not an `ethtool -S` process: the stat names are looked
up once, then each read is one ETHTOOL_GSTATS.
"""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct

SIOCETHTOOL = 0x8946
ETHTOOL_GSTRINGS = 0x1B
ETHTOOL_GSTATS = 0x1D
ETHTOOL_GSSET_INFO = 0x37
ETH_SS_STATS = 1
ETH_GSTRING_LEN = 32

# Two paths, two sets of counters. ndo_xdp_xmit (the generator's live frames, a
# redirect): veth tx_queue_N_xdp_xmit(_errors); mlx5 tx_xdp_xmit / tx_xdp_err /
# tx_xdp_full. XDP_TX from the receive program (in-kernel replies): veth
# rx_queue_N_xdp_tx(_errors); mlx5 rx_xdp_tx_xmit / rx_xdp_tx_full / rx_xdp_tx_err.
XMIT_SENT = ("_xdp_xmit",)
XMIT_ERRORS = ("_xdp_xmit_errors", "_xdp_xmit_err", "tx_xdp_err", "tx_xdp_full")
XDP_TX_SENT = ("_xdp_tx", "rx_xdp_tx_xmit")
XDP_TX_ERRORS = ("_xdp_tx_errors", "rx_xdp_tx_full", "rx_xdp_tx_err")


class XdpTxStats:
    """(sent, errors) summed over a device's queues; None where the driver has no such counters.

    By default the ndo_xdp_xmit counters (what the kernel generator's frames
    go through); `XdpTxStats(ifname, XDP_TX_SENT, XDP_TX_ERRORS)` reads XDP_TX's.
    """

    def __init__(self, ifname: str, sent: tuple[str, ...] = XMIT_SENT, errors: tuple[str, ...] = XMIT_ERRORS):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._name = ifname.encode()[:15]
        self.sent_idx: list[int] = []
        self.err_idx: list[int] = []
        self._n = 0
        try:
            names = self._names()
        except OSError:
            names = []
        self._n = len(names)
        for i, name in enumerate(names):
            if name.endswith(errors):
                self.err_idx.append(i)
            elif name.endswith(sent):
                self.sent_idx.append(i)
        # Both: a driver that only counts errors could never prove a frame went out.
        self.available = bool(self.sent_idx and self.err_idx)
        if self._n:
            self._buf = ctypes.create_string_buffer(8 + 8 * self._n)

    def _ioctl(self, buf: ctypes.Array) -> None:
        ifreq = struct.pack("16sP", self._name, ctypes.addressof(buf))
        fcntl.ioctl(self._sock.fileno(), SIOCETHTOOL, ifreq)

    def _names(self) -> list[str]:
        info = ctypes.create_string_buffer(struct.pack("IIQI", ETHTOOL_GSSET_INFO, 0, 1 << ETH_SS_STATS, 0))
        self._ioctl(info)
        mask, count = struct.unpack_from("QI", info.raw, 8)
        if not mask & (1 << ETH_SS_STATS) or count == 0:
            return []
        strings = ctypes.create_string_buffer(12 + ETH_GSTRING_LEN * count)
        struct.pack_into("III", strings, 0, ETHTOOL_GSTRINGS, ETH_SS_STATS, count)
        self._ioctl(strings)
        raw = strings.raw[12:]
        return [
            raw[i * ETH_GSTRING_LEN : (i + 1) * ETH_GSTRING_LEN].split(b"\0", 1)[0].decode("ascii", "replace")
            for i in range(count)
        ]

    def read(self) -> tuple[int, int] | None:
        if not self.available:
            return None
        struct.pack_into("II", self._buf, 0, ETHTOOL_GSTATS, self._n)
        try:
            self._ioctl(self._buf)
        except OSError:
            return None
        vals = struct.unpack_from(f"{self._n}Q", self._buf.raw, 8)
        return sum(vals[i] for i in self.sent_idx), sum(vals[i] for i in self.err_idx)

    def close(self) -> None:
        self._sock.close()
