"""``ram_list.dirty_memory[DIRTY_MEMORY_MIGRATION]``: QEMU's own dirty bitmap, apart from the migration's.

QEMU 2.5 keeps two bitmaps over ram_addr space:

* ``dirty_memory[DIRTY_MEMORY_MIGRATION]`` (this class): set for every page when a
  RAMBlock is allocated, by a write that QEMU itself makes to guest RAM (an emulated
  device's DMA goes through ``cpu_physical_memory_set_dirty_range``, at the write,
  while global dirty logging is on), and by each fetch of KVM's and vhost's logs
  during a sync.  The RFC's filter overwrites it, so a device write made between the
  guest's snapshot and the filter is erased there (:mod:`kit.dma` has the steps);
* the migration bitmap (``migration_bitmap``, :attr:`kit.migration.Migration.bmap`):
  the pages still to send.

``migration_bitmap_sync`` fetches KVM's log into ``dirty_memory``, then moves every
set bit into the migration bitmap and clears it (``migration_bitmap_sync_range``,
a test-and-clear), counting the bits that were not already set there.

Packed as QEMU packs it: one bit per page, little-endian within a byte (bit ``i``
is bit ``i % 8`` of byte ``i // 8``), so a 1 TiB guest needs 32 MiB.  Chunks of
:data:`CHUNK_PAGES` that may hold a set bit are tracked, so a sync looks only there.
"""
from __future__ import annotations

import numpy as np

CHUNK_PAGES = 1 << 18               # 1 GiB of RAM per chunk


class DirtyMemory:
    def __init__(self, npages: int, all_set: bool = True):
        self.npages = int(npages)
        self.bits = np.full(-(-self.npages // 8), 0xFF if all_set else 0, np.uint8)
        if all_set and self.npages % 8:
            self.bits[-1] = (1 << (self.npages % 8)) - 1
        self.chunk_dirty = np.full(-(-self.npages // CHUNK_PAGES), bool(all_set))

    def _unpack(self, a: int, b: int) -> np.ndarray:
        """Bits of pages [a, b) as bools (``a`` a multiple of 8)."""
        raw = self.bits[a >> 3: -(-b // 8)]
        return np.unpackbits(raw, count=b - a, bitorder="little").view(bool)

    def get(self, a: int = 0, b: int | None = None) -> np.ndarray:
        """A bool copy of pages [a, b) (any ``a``)."""
        b = self.npages if b is None else b
        a8 = a & ~7
        return self._unpack(a8, b)[a - a8:].copy()

    def set_pages(self, pages) -> None:
        """Mark ``pages`` (ram_addr page numbers) dirty, as a write QEMU sees does."""
        pages = np.asarray(pages, np.int64)
        if not len(pages):
            return
        np.bitwise_or.at(self.bits, pages >> 3, np.left_shift(1, pages & 7).astype(np.uint8))
        self.chunk_dirty[pages // CHUNK_PAGES] = True          # repeats are harmless here

    def assign_complement_packed(self, start: int, packed: np.ndarray, n: int) -> None:
        """Overwrite pages [start, start + n) with the complement of a packed bitmap of the same
        layout (``slow_bitmap_complement`` of the guest's free bitmap), byte by byte: no bool
        array of the block is made.  ``start`` must be a multiple of 8."""
        if start % 8:
            raise ValueError("DirtyMemory.assign_complement_packed: start must be a multiple of 8 pages")
        whole = n // 8
        b0 = start >> 3
        np.invert(packed[:whole], out=self.bits[b0:b0 + whole])
        if n % 8:
            mask = (1 << (n % 8)) - 1
            keep = int(self.bits[b0 + whole]) & ~mask & 0xFF
            self.bits[b0 + whole] = keep | (~int(packed[whole]) & mask)
        lo, hi = start // CHUNK_PAGES, -(-(start + n) // CHUNK_PAGES)
        self.chunk_dirty[lo:hi] = True

    def and_not_packed(self, start: int, packed: np.ndarray, n: int) -> None:
        """Clear pages [start, start + n) whose bit is set in a packed bitmap of the same layout,
        keeping the others as they are (``dirty &= ~free``, the "AND" candidate of notebook 06).
        ``start`` must be a multiple of 8."""
        if start % 8:
            raise ValueError("DirtyMemory.and_not_packed: start must be a multiple of 8 pages")
        b0, nb = start >> 3, -(-n // 8)
        src = packed[:nb].copy()
        if n % 8:
            src[-1] &= (1 << (n % 8)) - 1          # pages past n keep their bits
        np.bitwise_and(self.bits[b0:b0 + nb], np.invert(src), out=self.bits[b0:b0 + nb])

    def fold_into(self, bmap: np.ndarray) -> int:
        """Move every set bit into ``bmap`` (bool per page) and clear it; returns how many
        pages were newly set in ``bmap`` (``migration_bitmap_sync_range``)."""
        new = 0
        for c in np.flatnonzero(self.chunk_dirty).tolist():
            a, b = c * CHUNK_PAGES, min((c + 1) * CHUNK_PAGES, self.npages)
            d = self._unpack(a, b)
            nset = int(np.count_nonzero(d))
            if nset:
                seg = bmap[a:b]
                new += int(np.count_nonzero(d & ~seg))
                if nset * 64 < len(d):
                    seg[np.flatnonzero(d)] = True     # few bits: leave the rest of bmap untouched
                else:
                    seg |= d
                self.bits[a >> 3: -(-b // 8)] = 0
            self.chunk_dirty[c] = False
        return new
