"""The guest kernel's buddy allocator: zones and free lists per order.

The state is one bit per frame, ``free``.  Linux merges two free buddies of the
same order at once, so the free lists are fully determined by which frames are
free: a block of order k is on ``zone->free_area[k]`` exactly when its 2**k
frames are free and (k is the top order or) its buddy is not, i.e. it is a
maximal aligned free block.  :meth:`BuddyAllocator.free_area` derives them with
11 vectorised passes instead of keeping linked lists.

Zones as on x86-64: DMA (first 16 MiB), DMA32 (up to 4 GiB), Normal (above).
Model simplifications, each also noted where it happens: one migratetype (no
MIGRATE_MOVABLE/UNMOVABLE split, no per-cpu page lists), and order-0 to order-9
requests take their free list in ascending frame order (Linux keeps it LIFO,
optionally shuffled).  The top order's list, which free page hinting takes from,
keeps Linux's order (:meth:`BuddyAllocator.top_order_blocks`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import KitError
from .memory import MAX_ORDER, MAX_ORDER_NR_PAGES, GuestMemory, mask_span, own_arrays, sorted_unique

ZONE_NAMES = ("DMA", "DMA32", "Normal")
_PFN_16M = (16 << 20) >> 12
_WHOLE_BLOCK_SUM = np.uint64(0x0101010101010101 * (MAX_ORDER_NR_PAGES // 8))   # 128 in each byte


def _overlap(a: np.ndarray, b: np.ndarray, chunk: int = 1 << 21) -> bool:
    """``(a & b).any()`` for two bool arrays of one length, a chunk at a time (no temporary
    array as long as a 1 TiB guest's frames)."""
    return any(np.logical_and(a[i:i + chunk], b[i:i + chunk]).any() for i in range(0, len(a), chunk))


class OutOfMemory(KitError):
    """The guest asked for more pages than its zones have free."""


@dataclass(frozen=True)
class Zone:
    name: str
    start_pfn: int
    end_pfn: int          # exclusive, MAX_ORDER aligned

    @property
    def spanned_pages(self):
        return self.end_pfn - self.start_pfn


@dataclass
class FreeArea:
    """The free lists of one zone: for each order, the first frame of each free block."""
    zone: Zone
    blocks: list          # blocks[k] = np.ndarray of start PFNs of free order-k blocks

    @property
    def nr_free(self):
        """Free blocks per order (``zone->free_area[k].nr_free``)."""
        return [len(b) for b in self.blocks]

    @property
    def free_pages(self):
        return sum(len(b) << k for k, b in enumerate(self.blocks))


class BuddyAllocator:
    """Free-frame bookkeeping of a guest, with Linux's zones and orders."""

    def __init__(self, memory: GuestMemory):
        self.memory = memory
        n = memory.nframes
        pfn_4g = memory.mm.pfn_4g
        cuts = [0, min(_PFN_16M, n), min(pfn_4g, n), n]
        self.zones = tuple(Zone(name, a, b) for name, a, b in zip(ZONE_NAMES, cuts, cuts[1:]) if b > a)
        self.free = np.zeros(n, dtype=bool)
        self.cursor = 0           # where runtime allocations look next (see alloc_runtime)
        # When each top-order (4 MiB) block last became wholly free at run time: 0 for a
        # block free since boot, else a count that grows with every free (top_order_blocks).
        self.freed_seq = np.zeros(n >> (MAX_ORDER - 1), dtype=np.int64)
        self._seq = 0

    # -- sharing with copies ---------------------------------------------------
    PAGE_ARRAYS = ("free", "freed_seq")

    def page_arrays(self) -> list:
        """The per-frame and per-block arrays (shared with a copy until one side writes)."""
        return [getattr(self, n) for n in self.PAGE_ARRAYS]

    def own(self) -> None:
        """Before changing the free lists: take a copy of arrays shared with a copy (read-only)."""
        own_arrays(self, self.PAGE_ARRAYS)

    # -- views ------------------------------------------------------------------
    @property
    def nr_free_pages(self) -> int:
        """``global_page_state(NR_FREE_PAGES)``."""
        return int(np.count_nonzero(self.free))

    def free_area(self, zone: Zone | None = None):
        """Free lists per zone: a list of :class:`FreeArea` (or one, if ``zone`` is given)."""
        zones = [zone] if zone is not None else self.zones
        out = [FreeArea(z, self._maximal_blocks(z.start_pfn, z.end_pfn)) for z in zones]
        return out[0] if zone is not None else out

    def _top_blocks(self, start, end):
        """The 4 MiB blocks of [start, end) (MAX_ORDER aligned): a mask of those wholly free,
        and the numbers (from ``start``) of those partly free, ascending.

        One pass over the frames: ``free`` holds one byte per frame, 0 or 1, so a sum of
        8-byte words counts 8 frames at once; a byte lane reaches at most 1024 / 8 = 128,
        so no lane carries into the next."""
        top = MAX_ORDER_NR_PAGES
        nblk = (end - start) // top
        sums = self.free[start:end].view(np.uint64).reshape(nblk, top // 8).sum(axis=1, dtype=np.uint64)
        whole = sums == _WHOLE_BLOCK_SUM
        partly = np.flatnonzero((sums != 0) & ~whole)
        return whole, partly

    def _levels(self, start, end):
        """``(whole, partly, levels)``: :meth:`_top_blocks`, and levels[k][i]: the order-k
        block i of the partly free 4 MiB blocks, laid end to end, is entirely free.

        A wholly free 4 MiB block is one top-order block and a block with no free frame has
        none, so only the partly free ones need the 11 passes."""
        whole, partly = self._top_blocks(start, end)
        top = MAX_ORDER_NR_PAGES
        levels = [self.free[start:end].reshape(-1, top)[partly].ravel()]
        for _ in range(1, MAX_ORDER):
            prev = levels[-1]
            levels.append(prev[0::2] & prev[1::2])
        return whole, partly, levels

    def _maximal_blocks(self, start, end):
        whole, partly, levels = self._levels(start, end)
        blocks = []
        for k in range(MAX_ORDER - 1):
            cur = levels[k]
            # drop blocks whose parent is entirely free: view child pairs as one uint16
            pairs = cur.view(np.uint16)
            cur = np.where(levels[k + 1], np.uint16(0), pairs).view(bool)
            # index j at order k: partly free block j >> (10 - k), order-k block j & mask in it
            shift = MAX_ORDER - 1 - k
            j = np.flatnonzero(cur)
            blocks.append(start + (((partly[j >> shift] << shift) + (j & ((1 << shift) - 1))) << k))
        blocks.append(start + (np.flatnonzero(whole) << (MAX_ORDER - 1)))
        return blocks

    def block_count(self) -> int:
        """Number of free blocks on all free lists (what a free-list walk visits)."""
        total = 0
        for z in self.zones:
            whole, _, levels = self._levels(z.start_pfn, z.end_pfn)
            total += int(np.count_nonzero(whole))
            for k in range(MAX_ORDER - 1):
                total += int(np.count_nonzero(levels[k])) - 2 * int(np.count_nonzero(levels[k + 1]))
        return total

    # -- allocation ---------------------------------------------------------------
    def free_frames(self, frames):
        """``__free_pages``: give frames back (slice, index array or mask).  Content is untouched."""
        self.own()
        if isinstance(frames, slice):
            sel = self.free[frames]
            if sel.any():
                raise KitError("double free: a frame in the range is already free")
        else:
            frames = np.asarray(frames)
            if frames.dtype == bool:
                lo, hi = mask_span(frames)
                free, m = self.free[lo:hi], frames[lo:hi]
                if _overlap(free, m):
                    raise KitError("double free: a frame is already free")
                np.logical_or(free, m, out=free)
                return
            if frames.size and self.free[frames].any():
                raise KitError("double free: a frame is already free")
        self.free[frames] = True
        self._stamp_freed(frames)

    def _stamp_freed(self, frames):
        """Stamp the top-order blocks that ``frames`` (just freed) made wholly free.

        Simplification: the frames of one call are freed in ascending order, the way a
        process that got them in that order gives them back when it exits."""
        top = MAX_ORDER_NR_PAGES
        nblk = len(self.freed_seq)
        if isinstance(frames, slice):
            lo, hi, _ = frames.indices(len(self.free))
            touched = np.arange(lo // top, min(nblk, -(-hi // top)))
        else:
            frames = np.asarray(frames)
            idx = np.flatnonzero(frames) if frames.dtype == bool else frames.ravel()
            touched = sorted_unique(idx // top)
            touched = touched[touched < nblk]
        if not len(touched):
            return
        whole = self.free[: nblk * top].reshape(nblk, top)[touched].all(axis=1)
        done = touched[whole]
        self.freed_seq[done] = self._seq + 1 + np.arange(len(done))
        self._seq += len(done)

    def top_order_blocks(self, zone: Zone) -> np.ndarray:
        """The free 4 MiB blocks of ``zone`` in the order its top-order free list hands
        them out (block numbers: frame // 1024).

        Linux frees a block of the top order to the head of its list (in
        ``__free_one_page`` a merge at that order is never "likely", so it is not put at
        the tail), so the block freed last comes first.  Blocks that have been free since
        boot were put at the tail in ascending order (``__free_pages_core`` frees with
        ``FPI_TO_TAIL`` since Linux 5.10, commit 7fef431be9c9, "mm/page_alloc: place pages
        to tail in __free_pages_core()"), so they come after, lowest first."""
        top = MAX_ORDER_NR_PAGES
        a, b = -(-zone.start_pfn // top), zone.end_pfn // top
        free2d = self.free[a * top: b * top].reshape(-1, top)
        blocks = a + np.flatnonzero(free2d.all(axis=1))
        seq = self.freed_seq[blocks]
        recent = blocks[seq > 0]
        recent = recent[np.argsort(-seq[seq > 0], kind="stable")]
        return np.concatenate([recent, blocks[seq == 0]])

    def reserve_all_ram(self):
        """At boot every RAM frame starts free (memblock hands RAM to the buddy allocator)."""
        self.own()
        for a, b in self.memory.pfn_ranges():          # present_mask(), written in place
            self.free[a:b] = True
        for a, b in self.memory._holes():
            self.free[a:b] = False

    def _zones_for(self, zonelist):
        by_name = {z.name: z for z in self.zones}
        for name in zonelist:
            if name not in ZONE_NAMES:
                raise KitError(f"unknown zone {name!r}; zones are {', '.join(ZONE_NAMES)}")
            if name in by_name:
                yield by_name[name]

    def bulk_blocks(self, npages: int, zonelist=("Normal", "DMA32", "DMA")) -> list:
        """The frames :meth:`alloc_pages_bulk` would take for ``npages``, without taking them.

        Returns ``[(first frames, length)]``: runs ``[s, s + length)`` for each ``s`` in the
        array; each entry is a whole free block of one order (``length = 2**k``, the blocks
        of that order's list in ascending frame order), except a last one that takes the
        first ``length`` frames of a larger block.  Raises :class:`OutOfMemory` when the
        zones cannot supply them."""
        npages = int(npages)
        if npages < 0:
            raise KitError("cannot allocate a negative number of pages")
        if npages > self.nr_free_pages:
            raise OutOfMemory(f"asked for {npages} pages but only {self.nr_free_pages} are free")
        out, left = [], npages
        for zone in self._zones_for(zonelist):
            if left == 0:
                break
            area = self.free_area(zone)
            for k, starts in enumerate(area.blocks):
                if left == 0 or not len(starts):
                    continue
                size = 1 << k
                nfull = min(len(starts), left >> k)
                if nfull:
                    out.append((starts[:nfull], size))
                    left -= nfull << k
                if left and nfull < len(starts) and left < size:
                    out.append((starts[nfull:nfull + 1], left))     # the low end of a split block
                    left = 0
        if left:
            raise OutOfMemory(f"zones {list(zonelist)} could not supply {npages} pages")
        return out

    @staticmethod
    def block_runs(blocks) -> tuple[np.ndarray, np.ndarray]:
        """``(starts, stops)``: the frames of :meth:`bulk_blocks`' answer as ascending,
        disjoint runs ``[start, stop)``, neighbours merged."""
        if not blocks:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        a = np.concatenate([s for s, _ in blocks]).astype(np.int64, copy=False)
        b = np.concatenate([s + n for s, n in blocks]).astype(np.int64, copy=False)
        order = np.argsort(a, kind="stable")
        a, b = a[order], b[order]
        first = np.ones(len(a), bool)
        first[1:] = a[1:] != b[:-1]               # a run starts where the last one did not end
        last = np.ones(len(a), bool)
        last[:-1] = first[1:]
        return a[first], b[last]

    def alloc_pages_bulk(self, npages: int, zonelist=("Normal", "DMA32", "DMA")) -> np.ndarray:
        """Allocate ``npages`` order-0 pages the way the buddy allocator hands them out.

        Order-0 requests come from the smallest free blocks first; a larger block
        is split and its pages used from the low end.  Zones are tried in
        ``zonelist`` order (the fallback list of a GFP_HIGHUSER_MOVABLE request).
        Returns a bool frame mask of the allocated frames (:meth:`bulk_blocks` gives the
        same frames as blocks, without taking them).  Simplification: the whole batch is
        taken at once, from lists kept in ascending frame order.
        """
        blocks = self.bulk_blocks(npages, zonelist)
        self.own()
        taken = np.zeros(self.free.shape, dtype=bool)    # calloc: pages never written stay unmapped
        lo, hi = len(taken), 0                     # [lo, hi): where the taken frames are
        for starts, length in blocks:
            if length & (length - 1) == 0:         # whole blocks of one order, aligned
                view = taken[: len(taken) // length * length].reshape(-1, length)
                view[starts // length] = True
            else:
                for st in starts.tolist():
                    taken[st:st + length] = True
            lo, hi = min(lo, int(starts[0])), max(hi, int(starts[-1]) + length)
        if lo < hi:
            free = self.free[lo:hi]
            np.greater(free, taken[lo:hi], out=free)        # free and not taken
        return taken

    def alloc_runtime(self, npages: int) -> np.ndarray:
        """Allocate a few pages while the guest runs: returns their frame numbers.

        Simplification: instead of the per-cpu lists (which hand out recently
        freed, cache-hot pages first), take the next free frames after a moving
        cursor; cheap for small batches and, like the real thing, it happily
        reuses frames that were free a moment ago.
        """
        npages = int(npages)
        if npages == 0:
            return np.zeros(0, dtype=np.int64)
        if npages > self.nr_free_pages:
            raise OutOfMemory(f"asked for {npages} pages but only {self.nr_free_pages} are free")
        self.own()
        found, have = [], 0
        n = len(self.free)
        # first pass: [cursor, n); second pass: [0, cursor)
        for lo, hi in ((self.cursor, n), (0, self.cursor)):
            pos, window = lo, max(4 * npages, 4096)
            while have < npages and pos < hi:
                stop = min(pos + window, hi)
                idx = np.flatnonzero(self.free[pos:stop])[: npages - have] + pos
                found.append(idx)
                have += len(idx)
                pos, window = stop, window * 2
        frames = np.concatenate(found)
        self.free[frames] = False
        self.cursor = int(frames[-1]) + 1 if len(frames) else self.cursor
        return frames
