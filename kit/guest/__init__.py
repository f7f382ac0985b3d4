"""The guest: RAM pages, the buddy allocator, workloads and the guest half of the balloon."""
from __future__ import annotations

import copy
from collections import deque

import numpy as np

from ..bitmap import PackedBitmap
from ..memmap import PCMemoryMap, shift_pfn_bitmap, shift_pfn_bitmap_packed
from .buddy import ZONE_NAMES, BuddyAllocator, OutOfMemory
from .memory import MAX_ORDER, MAX_ORDER_NR_PAGES, DirtyLog, GuestMemory
from .workloads import WORKLOADS, Workload, get_workload, register_workload

__all__ = ["Guest", "GuestMemory", "DirtyLog", "BuddyAllocator", "OutOfMemory", "Workload",
           "WORKLOADS", "get_workload", "register_workload", "ZONE_NAMES", "MAX_ORDER"]

_FIRMWARE_FRAMES = 256      # the first MiB: real-mode area, BIOS data, EBDA; never given to the buddy allocator


def _last_set(mask: np.ndarray, n: int) -> np.ndarray:
    """The frame numbers of the ``n`` highest set entries of ``mask``, ascending.

    Scans down from the top in chunks, so a 1 TiB guest does not index all its frames
    (``np.flatnonzero(mask)[-n:]`` with ``n`` at most a quarter of the set entries)."""
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    chunk, start, have = 1 << 20, len(mask), 0
    while start > 0 and have < n:
        lo = max(0, start - chunk)
        have += int(np.count_nonzero(mask[lo:start]))
        start = lo
    idx = np.flatnonzero(mask[start:]) + start
    return idx[max(0, len(idx) - n):]


class Guest:
    """A guest of ``mm.ram_size`` bytes that has booted and run ``workload``.

    ``advance(t)`` lets it run (write and allocate) up to simulated time ``t``
    seconds; ``build_free_page_bitmap(low_mem)`` is the guest half of the RFC's
    balloon request.  Everything is seeded, so a scenario repeats exactly.
    """

    def __init__(self, mm: PCMemoryMap, workload="idle", seed: int = 0):
        self.mm = mm
        self.workload = get_workload(workload)
        self.rng = np.random.default_rng(seed)
        self.memory = GuestMemory(mm)
        self.buddy = BuddyAllocator(self.memory)
        self.time = 0.0
        self.lie_frames = None          # frames a lying guest reports free although it uses them
        self.balloon_frames = None      # frames the balloon holds (inflate_balloon)
        self._carry_dirty = 0.0
        self._carry_churn = 0.0
        self._churned = deque()
        # Device reads into fresh page-cache pages (a disk being read), set by the migration
        # from its scenario: pages per second, and (time, frames) of each batch for checks.
        self.dma_rate = 0.0
        self._carry_dma = 0.0
        self.dma_history: list[tuple[float, np.ndarray]] = []
        self.working_set = np.zeros(0, dtype=np.int64)
        self._boot()
        self._prepare()

    # -- before migration ----------------------------------------------------------
    def _boot(self):
        w, mem, buddy = self.workload, self.memory, self.buddy
        buddy.reserve_all_ram()
        low = min(_FIRMWARE_FRAMES, self.mm.below_4g_pages)
        buddy.free[:low] = False
        mem.write(slice(0, low))
        ram_pages = self.mm.ram_pages
        # A guest too small for the usual footprint boots in at most a quarter of what is free.
        budget = buddy.nr_free_pages // 4
        memmap = min(ram_pages * w.memmap_bytes_per_page // 4096, budget)
        footprint = min(w.boot_footprint // 4096, budget)
        stale = min(w.boot_stale_free // 4096, budget)
        # The kernel's mem_map comes from memblock before the buddy allocator exists, and on
        # x86 memblock allocates top-down (Linux 6.1 mm/memblock.c: bottom_up is false unless
        # movable_node is on), so it sits at the top of RAM.
        top = _last_set(buddy.free, memmap)
        buddy.free[top] = False
        mem.write(top)
        mem.write(buddy.alloc_pages_bulk(footprint))
        boot_only = buddy.alloc_pages_bulk(stale)
        mem.write(boot_only)
        buddy.free_frames(boot_only)

    def _prepare(self):
        w, mem, buddy = self.workload, self.memory, self.buddy
        if w.hog_fraction:
            # The hog allocates its pages, writes them and exits, so its pages go back and keep
            # their content: the free lists end as they began.  So the frames it would be
            # given are written without taking them (no frame mask as large as RAM is built).
            starts, stops = buddy.block_runs(buddy.bulk_blocks(int(buddy.nr_free_pages * w.hog_fraction)))
            for a, b in zip(starts.tolist(), stops.tolist()):
                mem.write(slice(a, b))
            if w.hog_unmerged_blocks:
                # Some 4 MiB blocks the hog used do not come back whole: the kernel keeps a
                # page in each (simplification: the lowest page of blocks picked at random).
                top = MAX_ORDER_NR_PAGES
                nblk = len(buddy.free) // top
                whole = buddy.free[: nblk * top].reshape(nblk, top).all(axis=1)
                had_hog = np.zeros(nblk + 1, np.int64)      # +1 / -1 at each run's first / past-last block
                np.add.at(had_hog, starts // top, 1)
                np.add.at(had_hog, (stops - 1) // top + 1, -1)
                had_hog = np.cumsum(had_hog[:nblk]) > 0
                cand = np.flatnonzero(whole & had_hog)
                pick = self.rng.choice(cand, size=min(w.hog_unmerged_blocks, len(cand)), replace=False)
                buddy.free[pick * top] = False
        if w.page_cache:
            # After a long uptime the page cache sits anywhere in RAM, not in the low frames a
            # fresh boot hands out: pick its frames at random among the free ones (seeded).
            # Simplification: single pages, no regard for zones or pageblocks.
            free = np.flatnonzero(buddy.free)
            npages = min(w.page_cache // 4096, len(free) // 2)
            cache = np.zeros_like(buddy.free)
            cache[self.rng.choice(free, size=npages, replace=False)] = True
            np.greater(buddy.free, cache, out=buddy.free)
            mem.write(cache)
        if w.working_set:
            npages = min(w.working_set // 4096, buddy.nr_free_pages // 2)
            ws = buddy.alloc_pages_bulk(npages)
            mem.write(ws)
            self.working_set = np.flatnonzero(ws)

    def copy(self) -> "Guest":
        """An independent copy (its own pages, free lists, clock and random generator).

        The per-frame arrays are shared, read-only in both guests, until one of them writes:
        each writer first takes a copy of its own (``own()`` in :class:`GuestMemory` and
        :class:`BuddyAllocator`), so a copy that a migration only reads costs no memory.  A
        write that skips ``own()`` fails loudly (numpy: "assignment destination is read-only")."""
        shared = self.memory.page_arrays() + self.buddy.page_arrays() + [self.working_set]
        for a in shared:
            a.flags.writeable = False
        return copy.deepcopy(self, {id(a): a for a in shared})

    def inflate_balloon(self, target_bytes: int) -> np.ndarray:
        """Inflate the balloon until the guest keeps ``target_bytes`` of RAM (or all it can give).

        The balloon driver allocates free pages and tells the host, which discards them
        (``MADV_DONTNEED``): here the pages leave the buddy allocator, read as zero and are no
        longer backed by the host (write version 0).  Returns a frame mask of the balloon.
        Simplification: the driver takes pages the way :meth:`BuddyAllocator.alloc_pages_bulk`
        hands them out, and only free pages (a real guest would first shrink its caches).
        """
        want = max(0, self.mm.ram_pages - int(target_bytes) // 4096)
        n = min(want, self.buddy.nr_free_pages)
        mask = self.buddy.alloc_pages_bulk(n)
        self.memory.own("version")
        self.memory.version[mask] = 0                  # never backed: reads zero
        self.balloon_frames = mask if self.balloon_frames is None else self.balloon_frames | mask
        return mask

    # -- during migration ----------------------------------------------------------
    def advance(self, t: float) -> int:
        """Run the workload from ``self.time`` to ``t``; returns the number of pages written."""
        dt = t - self.time
        if dt <= 0:
            return 0
        self.time = t
        w = self.workload
        written = 0
        if w.dirty_rate and len(self.working_set):
            self._carry_dirty += w.dirty_rate * dt
            n = int(self._carry_dirty)
            self._carry_dirty -= n
            if n:
                pick = self.rng.integers(0, len(self.working_set), size=n)
                written += self.memory.write(self.working_set[pick])
        if w.churn_rate:
            self._carry_churn += w.churn_rate * dt
            n = int(self._carry_churn)
            self._carry_churn -= n
            if n:
                n = min(n, self.buddy.nr_free_pages)
                frames = self.buddy.alloc_runtime(n)
                written += self.memory.write(frames)
                self._churned.append((t, frames))
                while self._churned and self._churned[0][0] < t - w.churn_pool_seconds:
                    self.buddy.free_frames(self._churned.popleft()[1])
        if self.dma_rate:
            written += self._dma_read(t, dt)
        return written

    def _dma_read(self, t: float, dt: float) -> int:
        """A disk read: the kernel allocates page-cache pages and the disk's DMA fills them.

        Nothing in the guest writes these pages with a vCPU: the page cache only reads them
        afterwards, and they stay cached to the end.  Simplification: the reads stop when free
        memory runs out (no reclaim), and each batch is allocated and written at time ``t``.
        """
        self._carry_dma += self.dma_rate * dt
        n = min(int(self._carry_dma), self.buddy.nr_free_pages)
        self._carry_dma -= int(self._carry_dma)
        if not n:
            return 0
        frames = self.buddy.alloc_runtime(n)
        self.dma_history.append((t, frames))
        return self.memory.device_write(frames)

    def allocate_and_write(self, npages: int) -> np.ndarray:
        """Allocate ``npages`` right now and write them (used by notebooks and tests)."""
        frames = self.buddy.alloc_runtime(npages)
        self.memory.write(frames)
        return frames

    # -- the guest half of the balloon request (kernel RFC 1/2 and 2/2) -------------
    def build_free_page_bitmap(self, low_mem: int, *, packed: bool = False):
        """Walk the free lists of every zone and mark each free page in a bitmap.

        Returns ``(bits, free_count, nr_blocks)``: ``bits`` is indexed by ram
        page, because the RFC's guest shifts frames above 4 GiB down by the hole
        using the ``low_mem`` QEMU sent (a bool array, or with ``packed=True`` a
        :class:`~kit.bitmap.PackedBitmap` in the bytes the guest sends);
        ``free_count`` is NR_FREE_PAGES; ``nr_blocks`` is how many free-list
        entries the walk visited (its time cost is the cost model's business).
        The walk holds ``zone->lock``, so the snapshot is consistent.
        """
        free = self.buddy.free
        if self.lie_frames is not None:
            free = free | self.lie_frames
        if packed:
            data = shift_pfn_bitmap_packed(self.mm, free[: self.mm.max_pfn], low_mem=low_mem)
            bits = PackedBitmap(data, self.mm.ram_pages)
        else:
            bits = shift_pfn_bitmap(self.mm, free[: self.mm.max_pfn], low_mem=low_mem)
        return bits, self.buddy.nr_free_pages, self.buddy.block_count()

    def used_ram_pages(self) -> np.ndarray:
        """Pages in use (present and not free), in ram_addr order: what must arrive intact."""
        return ~self.memory.to_ram_order(self.buddy.free)
