"""A TPACKET_V3 receive ring (PACKET_MMAP): the kernel writes frames into shared blocks, no syscall per frame.

Why: a ``recv_into`` loop in Python tops out near 70k frames/s and dropped
half of a 150k frames/s replay; with the ring the kernel fills whole blocks
(``BLOCK`` bytes, retired when full or after ``RETIRE_MS``), and one numba
walk per block lists its frames (offset, captured and wire length, kernel
timestamp) into numpy arrays.  The block is then copied out and given back,
so a slow decoder never holds the ring.

Layouts (linux/if_packet.h): ``tpacket_block_desc`` = version, offset_to_priv,
then ``tpacket_hdr_v1`` = block_status @8, num_pkts @12,
offset_to_first_pkt @16, blk_len @20, seq_num @24, ts_first @32, ts_last @40;
``tpacket3_hdr`` = next_offset @0, sec @4, nsec @8, snaplen @12, len @16,
status @20, mac @24 (u16).
"""

from __future__ import annotations

import mmap
import socket
import struct
from typing import Any

import numpy as np
from numba import njit

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_VERSION = 10
TPACKET_V3 = 2
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
BLOCK = 1 << 20
BLOCKS = 64  # 64 MiB of ring per interface
FRAME = 2048  # only sizes the request: V3 packs frames of any length into blocks
RETIRE_MS = 8  # a block that is not full is handed over after this long


class Ring:
    """The mapped ring of one packet socket, read block by block in order."""

    def __init__(self, sock: socket.socket, blocks: int = BLOCKS, block: int = BLOCK) -> None:
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        req = struct.pack("7I", block, blocks, FRAME, block * blocks // FRAME, RETIRE_MS, 0, 0)
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        self.map = mmap.mmap(sock.fileno(), block * blocks, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.buf = np.frombuffer(self.map, dtype=np.uint8)
        self.words = np.frombuffer(self.map, dtype=np.uint32)
        self.block = block
        self.blocks = blocks
        self.next = 0

    def ready(self) -> bool:
        """True when the next block in order belongs to user space."""
        return bool(self.words[(self.next * self.block + 8) // 4] & TP_STATUS_USER)

    def take(
        self, dest: np.ndarray, pos: int, off: np.ndarray, cap: np.ndarray, orig: np.ndarray, ts: np.ndarray, n: int
    ) -> tuple[int, int, int]:
        """Copy the next block's frames to dest[pos:] and list them from row n; give the block back.

        Returns (new pos, new n, frames the block said it held but could not be listed); the caller
        guarantees room for one block and its frames.
        """
        base = self.next * self.block
        used = int(self.words[(base + 20) // 4])
        used = min(max(used, 0), self.block, len(dest) - pos)
        dest[pos : pos + used] = self.buf[base : base + used]
        k = _walk(dest, pos, used, off, cap, orig, ts, n)
        count = int(self.words[(base + 12) // 4])
        self.words[(base + 8) // 4] = TP_STATUS_KERNEL
        self.next = (self.next + 1) % self.blocks
        return pos + used, n + k, max(0, count - k)

    def close(self) -> None:
        """Unmap (the numpy views must be gone first)."""
        del self.buf, self.words
        self.map.close()


def warm() -> None:
    """Run the block walk once (its first call loads the compiled kernel)."""
    z = np.zeros(1, dtype=np.int64)
    _walk(np.zeros(64, dtype=np.uint8), 0, 64, z, z.copy(), z.copy(), z.copy(), 0)


@njit(cache=True)
def _u32(b: np.ndarray, p: Any) -> Any:
    return np.int64(b[p]) | (np.int64(b[p + 1]) << 8) | (np.int64(b[p + 2]) << 16) | (np.int64(b[p + 3]) << 24)


@njit(cache=True)
def _walk(
    b: np.ndarray,
    base: int,
    used: int,
    off: np.ndarray,
    cap: np.ndarray,
    orig: np.ndarray,
    ts: np.ndarray,
    n: int,
) -> int:
    """List a copied block's frames (absolute offsets into b); damaged links end the walk. Returns the count."""
    end = base + used
    if used < 48:
        return 0
    count = _u32(b, base + 12)
    p = base + _u32(b, base + 16)
    k = 0
    while k < count and n + k < off.shape[0] and p + 32 <= end:
        snap = _u32(b, p + 12)
        mac = np.int64(b[p + 24]) | (np.int64(b[p + 25]) << 8)
        start = p + mac
        if start + snap > end:
            break
        off[n + k] = start
        cap[n + k] = snap
        orig[n + k] = _u32(b, p + 16)
        ts[n + k] = _u32(b, p + 4) * 1000000 + _u32(b, p + 8) // 1000
        k += 1
        step = _u32(b, p)
        if step == 0:
            break
        p += step
    return k
