"""The RFC's successor for migration: free page hinting (Wei Wang, Linux 4.20 / QEMU 4.0).

What was merged in the end (Linux commit 86a559787e6f, QEMU commit c13c4153f7,
device property ``free-page-hint=on``) keeps the RFC's idea, QEMU skips pages
the guest has free, but answers the review of 2016 point by point:

* **No stall.**  QEMU does not wait for the guest.  It writes a new command id
  (from ``0x80000000`` up) into the balloon's config space and goes on saving
  RAM.  The guest answers in its own time.  QEMU's iothread consumes the hints
  as they arrive, in parallel with the migration thread.
* **Order.**  The bitmap starts all ones, as in the original.  Dirty logging is
  on before the first hint is asked for.  Before every bitmap sync QEMU stops
  hinting (command id STOP = 0); hints that arrive after that are ignored.
  After the sync, if the VM still runs, a new round starts with a fresh id.
  A hint that arrives late is therefore never applied over a sync that has
  already seen the page dirtied again.
* **What is reported.**  There is no bitmap and no ``low_mem``.  The guest
  *allocates* blocks of order ``MAX_ORDER - 1`` (4 MiB, 1024 pages) from its
  free lists and sends their guest addresses.  The allocation cannot reclaim
  memory or compact it (``__GFP_NORETRY``, no direct reclaim).  So only 4 MiB
  blocks that are already free and aligned are hinted.  Free memory in smaller
  blocks is sent as usual.  A hinted block stays allocated to the balloon
  driver, and the guest cannot use it, until the host writes DONE (= 1) at the
  end.  The guest then frees the blocks.  It does not free them earlier,
  because freeing would dirty memory and could keep migration from converging.
* QEMU clears each hinted range in the migration bitmap
  (``qemu_guest_free_page_hint``).  It subtracts from ``migration_dirty_pages``
  only the bits that were still set.  A page sent before its hint arrived has
  been sent; the hint saves nothing for it.

This module is the guest's half and the device's state (:class:`FreePageHinting`).
Clearing the migration bitmap is migration code: ``Migration.qemu_guest_free_page_hint``
in :mod:`kit.migration`.

Model simplifications, each also noted where it happens:

* Time.  The first hint of a round reaches QEMU ``CostModel.hint_start_ms`` after the
  round starts, then one every ``CostModel.hint_ns_per_block`` (see :mod:`kit.costmodel`
  for where each preset's values come from; the lab's are measured from QEMU's trace).  The blocks of a round are chosen
  when the round starts, and the guest allocates each one when its hint
  arrives.  A block that the running guest has partly allocated by then is
  dropped.  The real guest would take another block instead.
* Blocks come from zone Normal, then DMA32, then DMA (the fallback order of a
  request without zone modifiers), and within a zone in the order of its top-order
  free list: the block freed last first, blocks free since boot last and lowest first
  (:meth:`kit.guest.buddy.BuddyAllocator.top_order_blocks`).
* When QEMU applies them (``CostModel.hint_drain_chance``).  In QEMU 7.2 (and 10.0)
  ``ram_save_iterate`` holds ``bitmap_mutex`` for a whole iteration (up to MAX_WAIT,
  50 ms) and ``qemu_guest_free_page_hint`` needs it for every hint, so the iothread
  applies hints only between two iterations (:meth:`FreePageHinting.take_between_iterations`).
  The guest meanwhile fills the free page queue, which has ``QUEUE_SLOTS`` places.
  Which thread gets the mutex there is a race the model does not play out: it
  applies, at each gap, one hint plus ``hint_drain_chance`` of the rest of the queue
  (the expected value; a real run drains all or nothing).
* Watermarks as in Linux 4.20, approximately.  An order-10 allocation without
  reclaim may not take a zone below its min watermark plus ``lowmem_reserve``
  (see :func:`zone_watermarks`).  "Managed" pages are taken to be the present RAM
  frames.
* No shrinker.  Linux's driver can give hinted blocks back early when memory
  runs short; here the guest keeps them until DONE.  No page poisoning
  (``VIRTIO_BALLOON_F_PAGE_POISON``), no post-copy (QEMU does not hint then).
"""
from __future__ import annotations

from dataclasses import dataclass
from math import isqrt

import numpy as np

from .errors import KitError
from .guest import Guest
from .guest.memory import MAX_ORDER

# include/uapi/linux/virtio_balloon.h (feature bits and command ids)
VIRTIO_BALLOON_F_FREE_PAGE_HINT = 3      # the RFC's bit 3, reused upstream for this protocol
VIRTIO_BALLOON_F_PAGE_POISON = 4
VIRTIO_BALLOON_F_REPORTING = 5
VIRTIO_BALLOON_CMD_ID_STOP = 0
VIRTIO_BALLOON_CMD_ID_DONE = 1
# hw/virtio/virtio-balloon.c: ids QEMU hands out for rounds
VIRTIO_BALLOON_FREE_PAGE_HINT_CMD_ID_MIN = 0x80000000

# hw/virtio/virtio-balloon.c gives the free page queue VIRTQUEUE_MAX_SIZE (1024) entries;
# the Linux 6.1 driver adds a block only while more than one is free (get_free_page_and_send),
# keeping one for its cmd id.  When the queue is full the guest waits for QEMU to take hints.
QUEUE_SLOTS = 1023

HINT_BLOCK_ORDER = MAX_ORDER - 1         # VIRTIO_BALLOON_HINT_BLOCK_ORDER: 10 on x86-64
HINT_BLOCK_PAGES = 1 << HINT_BLOCK_ORDER  # 1024 pages = 4 MiB

# mm/page_alloc.c defaults (Linux 4.20 .. 5.x), x86-64
MIN_FREE_KBYTES_RANGE = (128, 65536)     # min_free_kbytes = clamp(sqrt(16 * lowmem KiB))
LOWMEM_RESERVE_RATIO = 256               # sysctl_lowmem_reserve_ratio for DMA and DMA32
WATERMARK_SCALE_FACTOR = 10              # low = min + max(min / 4, managed * 10 / 10000)

# QEMU's free_page_hint_status
S_REQUESTED, S_START, S_STOP, S_DONE = "requested", "start", "stop", "done"


@dataclass(frozen=True)
class ZoneWatermarks:
    """One zone's watermarks (pages), as Linux computes them at boot."""
    name: str
    start_pfn: int
    end_pfn: int
    managed: int
    min: int
    low: int
    lowmem_reserve: int    # pages kept back from an allocation that could use a higher zone


def zone_watermarks(guest: Guest) -> list[ZoneWatermarks]:
    """``setup_per_zone_wmarks`` and ``setup_per_zone_lowmem_reserve``, approximately.

    Each ``lowmem_reserve`` applies to an allocation whose highest zone is the
    guest's highest one (Normal, or DMA32 in a guest of 3 GiB or less).  Hint
    allocations are like that.  Simplification: managed pages = present RAM frames.
    """
    present = guest.memory.present_mask()
    zones = guest.buddy.zones
    managed = [int(np.count_nonzero(present[z.start_pfn:z.end_pfn])) for z in zones]
    total = max(1, sum(managed))
    lo, hi = MIN_FREE_KBYTES_RANGE
    min_free_pages = min(max(isqrt(total * 4 * 16), lo), hi) // 4
    out = []
    for i, (z, m) in enumerate(zip(zones, managed)):
        zmin = min_free_pages * m // total
        low = zmin + max(zmin // 4, m * WATERMARK_SCALE_FACTOR // 10000)
        reserve = sum(managed[i + 1:]) // LOWMEM_RESERVE_RATIO
        out.append(ZoneWatermarks(z.name, z.start_pfn, z.end_pfn, m, zmin, low, reserve))
    return out


class FreePageHinting:
    """The free-page-hint device state in QEMU and the guest driver that answers it.

    Block numbers are guest frame numbers divided by 1024 (a block is the 4 MiB
    aligned range ``[b * 1024, (b + 1) * 1024)`` of frames).

    * :meth:`start` is QEMU's ``virtio_balloon_free_page_start``.  It writes a new
      command id, and the guest picks the blocks it will hint in this round.
    * :meth:`take_arrived` gives the blocks whose hints reached QEMU by a time.
      Each is allocated in the guest's buddy allocator at that moment and held.
    * :meth:`stop` is ``virtio_balloon_free_page_stop``, before a bitmap sync.
    * :meth:`done` is ``virtio_balloon_free_page_done``.  The guest frees every
      block it holds.

    ``ns_per_block``: the guest's reporting cost per 4 MiB block; ``start_s``: from the
    round's start to the first hint (the guest taking the config interrupt, reading the
    id and allocating its first block).
    ``supported``: whether the guest driver negotiated the feature.  Without it
    nothing is ever hinted.
    """

    def __init__(self, guest: Guest, ns_per_block: float, supported: bool = True, start_s: float = 0.0,
                 drain_chance: float | None = None, drain_chance_busy: float | None = None):
        if not ns_per_block > 0:
            raise KitError(f"hint_ns_per_block must be positive, got {ns_per_block!r}")
        if not start_s >= 0:
            raise KitError(f"hint_start_ms must not be negative, got {start_s * 1e3!r}")
        if drain_chance is not None and not 0 <= drain_chance <= 1:
            raise KitError(f"hint_drain_chance must be between 0 and 1 (or None), got {drain_chance!r}")
        if drain_chance_busy is not None and not 0 <= drain_chance_busy <= 1:
            raise KitError(f"hint_drain_chance_busy must be between 0 and 1 (or None), got {drain_chance_busy!r}")
        self.drain_chance = drain_chance
        self.drain_chance_busy = drain_chance if drain_chance_busy is None else drain_chance_busy
        self._queued = 0                                 # this round's blocks the guest has queued
        self._guest_t = 0.0                              # when the guest can queue its next block
        self.guest = guest
        self.ns_per_block = float(ns_per_block)
        self.start_s = float(start_s)
        self.supported = supported
        nblocks = guest.memory.nframes // HINT_BLOCK_PAGES
        self.held = np.zeros(nblocks, bool)              # hinted blocks the driver holds until DONE
        self.block_arrival = np.full(nblocks, np.inf)    # when a queued block's hint reaches QEMU
        self.cmd_id = VIRTIO_BALLOON_CMD_ID_STOP         # the config field free_page_hint_cmd_id
        self.status = S_STOP
        self._next_id = VIRTIO_BALLOON_FREE_PAGE_HINT_CMD_ID_MIN
        self._queue = np.zeros(0, np.int64)              # this round's blocks, in hinting order
        self._times = np.zeros(0)
        self._head = 0
        self.rounds: list[dict] = []
        self.last_arrival = None                         # when the latest hint taken reached QEMU
        self.watermarks = zone_watermarks(guest)
        self.blocks_freed = 0

    # -- views -------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self.status in (S_REQUESTED, S_START)

    @property
    def pending(self) -> bool:
        """Hints of this round that have not reached QEMU yet."""
        return self._head < len(self._queue)

    def next_arrival(self) -> float:
        return float(self._times[self._head]) if self.pending else float("inf")

    @property
    def blocks_held(self) -> int:
        return int(np.count_nonzero(self.held))

    def held_frames(self) -> np.ndarray:
        """A bool frame mask of the frames in hinted blocks the guest still holds."""
        return np.repeat(self.held, HINT_BLOCK_PAGES)

    # -- the guest: which blocks it can allocate ----------------------------------
    def _candidates(self) -> np.ndarray:
        """Fully free aligned 4 MiB blocks the guest can allocate now, in the order it would."""
        zones = {z.name: z for z in self.guest.buddy.zones}
        picks = []
        for wm in reversed(self.watermarks):            # Normal, then DMA32, then DMA
            blocks = self.guest.buddy.top_order_blocks(zones[wm.name])
            # zone_watermark_ok(order 10, ALLOC_WMARK_MIN): the i-th allocation needs
            # free - i*1024 - 1023 > min + lowmem_reserve
            nfree = int(np.count_nonzero(self.guest.buddy.free[wm.start_pfn:wm.end_pfn]))
            room = nfree - (HINT_BLOCK_PAGES - 1) - (wm.min + wm.lowmem_reserve)
            quota = max(0, -(-room // HINT_BLOCK_PAGES))
            picks.append(blocks[:quota])
        return np.concatenate(picks) if picks else np.zeros(0, np.int64)

    # -- the device ----------------------------------------------------------------
    def start(self, now: float) -> dict | None:
        """A new round: a fresh command id; the guest starts allocating and hinting blocks."""
        if not self.supported:
            return None
        self.cmd_id = self._next_id
        self._next_id += 1
        self.status = S_START      # simplification: the guest's echo of the id is instantaneous
        queue = self._candidates()
        step = self.ns_per_block * 1e-9
        self._queue = queue
        # the guest reads the new id, then hints a block every step: the first after start_s
        self._times = now + self.start_s + step * np.arange(len(queue))
        self._head = 0
        self._queued, self._guest_t = 0, now + self.start_s
        if self.drain_chance is None:
            self.block_arrival[queue] = self._times
        rnd = {"cmd_id": self.cmd_id, "start": now, "planned_blocks": int(len(queue)),
               "hinted_blocks": 0, "dropped_busy": 0, "dropped_at_stop": 0, "pages_cleared": 0,
               "guest_finishes": float(self._times[-1]) if len(queue) else now}
        self.rounds.append(rnd)
        return rnd

    @property
    def between_iterations(self) -> bool:
        """Whether hints wait for a gap between two ``ram_save_iterate`` calls."""
        return self.drain_chance is not None

    def take_arrived(self, t: float) -> np.ndarray:
        """Blocks whose hints QEMU applies by time ``t``; the guest now holds them.

        A block the running guest has partly allocated since the round started
        is dropped (simplification: the real guest would have taken another).
        """
        if self.between_iterations:
            return self.take_between_iterations(t)
        if not self.pending or self._times[self._head] > t:
            return np.zeros(0, np.int64)
        j = int(np.searchsorted(self._times, t, side="right"))
        blocks = self._queue[self._head:j]
        self.last_arrival = float(self._times[j - 1])
        self._head = j
        self.block_arrival[blocks] = np.inf
        return self._hold(blocks)

    def take_between_iterations(self, t: float) -> np.ndarray:
        """The iothread gets ``bitmap_mutex`` at time ``t``, between two iterations.

        First the guest queues, at its pace, the blocks it has reached by ``t``, as long as
        the queue has room (a guest with a full queue waits).  Then QEMU applies the hint
        the iothread was holding, plus ``drain_chance`` of the others queued, or
        ``drain_chance_busy`` while the guest's vCPU is busy: it has blocks left to hint,
        or its workload runs during migration.
        """
        n = len(self._queue)
        if not self.pending:
            return np.zeros(0, np.int64)
        step = self.ns_per_block * 1e-9
        room = QUEUE_SLOTS - (self._queued - self._head)
        full = room <= 0
        if t >= self._guest_t and room > 0:
            new = min(n - self._queued, room, int((t - self._guest_t) / step) + 1)
            self._queued += new
            self._guest_t += new * step
            full = new == room and self._queued < n
        waiting = self._queued - self._head
        if waiting <= 0:
            return np.zeros(0, np.int64)
        busy = self._queued < n or self.guest.workload.runs_during_migration
        k = 1 + int(round((self.drain_chance_busy if busy else self.drain_chance) * (waiting - 1)))
        blocks = self._queue[self._head:self._head + k]
        self._head += k
        if full:                                  # the guest resumes once QEMU freed places
            self._guest_t = max(self._guest_t, t)
        self.last_arrival = t
        return self._hold(blocks)

    def _hold(self, blocks) -> np.ndarray:
        """The guest holds the hinted ``blocks`` that are still wholly free."""
        self.guest.buddy.own()
        free2d = self.guest.buddy.free.reshape(-1, HINT_BLOCK_PAGES)
        ok = free2d[blocks].all(axis=1)
        rnd = self.rounds[-1]
        rnd["dropped_busy"] += int(len(blocks) - np.count_nonzero(ok))
        blocks = blocks[ok]
        free2d[blocks] = False                 # alloc_pages(order 10): the driver holds them
        self.held[blocks] = True
        rnd["hinted_blocks"] += int(len(blocks))
        return blocks

    def stop(self, now: float) -> dict | None:
        """Before a bitmap sync: STOP.  Hints not yet arrived are never applied."""
        if not self.active:
            return None
        rest = self._queue[self._head:]
        self.block_arrival[rest] = np.inf
        self._queued = 0
        rnd = self.rounds[-1]
        rnd["dropped_at_stop"] = int(len(rest))
        rnd["stop"] = now
        self._queue, self._times, self._head = np.zeros(0, np.int64), np.zeros(0), 0
        self.cmd_id = VIRTIO_BALLOON_CMD_ID_STOP
        self.status = S_STOP
        return rnd

    def done(self, now: float) -> int:
        """DONE: the guest frees every block it holds; returns how many blocks."""
        self.stop(now)
        self.cmd_id = VIRTIO_BALLOON_CMD_ID_DONE
        self.status = S_DONE
        self.guest.buddy.own()
        free2d = self.guest.buddy.free.reshape(-1, HINT_BLOCK_PAGES)
        if free2d[self.held].any():
            raise KitError("a hinted block is free in the guest while the driver holds it")
        free2d[self.held] = True
        self.guest.buddy._stamp_freed(np.flatnonzero(self.held) * HINT_BLOCK_PAGES)
        n = self.blocks_held
        self.blocks_freed += n
        self.held[:] = False
        return n

    def summary(self) -> dict:
        """What ``query-migrate`` shows for this mode (not a QEMU field: the kit's own)."""
        return {"rounds": len(self.rounds),
                "cmd-ids": [r["cmd_id"] for r in self.rounds],
                "blocks-hinted": sum(r["hinted_blocks"] for r in self.rounds),
                "blocks-dropped-at-stop": sum(r["dropped_at_stop"] for r in self.rounds),
                "blocks-held": self.blocks_held,
                "blocks-freed-at-done": self.blocks_freed,
                "status": self.status}
