"""Pre-copy RAM migration as in QEMU 2.5/2.6: original, with the RFC's patches 3 and 4, or its successors.

One :class:`Migration` is QEMU's migration thread for one guest.  ``step()``
runs one action (a part of ``ram_save_setup``, one turn of the migration
thread's loop, or the stop-and-copy) and returns a record of it; ``run()``
steps until the migration completes.  Time is simulated: the cost model says
how long each action takes and the guest runs (writes, allocates) meanwhile.

Names follow QEMU (migration/ram.c and migration/migration.c of 2.5/2.6):
``ram_save_setup``, ``memory_global_dirty_log_start``,
``filter_out_guest_free_pages``, ``migration_bitmap_sync``,
``ram_save_iterate``, ``ram_save_pending``, ``ram_save_complete``,
``migration_dirty_pages``, ``ram_bulk_stage``, ``bitmap_sync_count``.

Wire format (per page): a zero page is an 8-byte header (offset | flag) plus
one byte, 9 bytes; any other page is the header plus 4096 bytes, 4104 bytes.
The first page sent from a RAMBlock after another block's carries the block's
name (1 + length bytes).  Every ``ram_save_iterate`` ends with an 8-byte EOS.

Modes (:data:`MODES`):

* ``original``: QEMU 2.5 as it was;
* ``pv``: the 2016 RFC (patches 3 and 4 here, 1 and 2 in :mod:`kit.memmap` and :mod:`kit.balloon`);
* ``hint``: free page hinting, the RFC's merged successor (Linux 4.20, QEMU 4.0,
  ``free-page-hint=on``).  The bitmap starts all ones as in the original.  After
  the first sync a hinting round starts, and hints clear bits while RAM saving
  goes on.  Hinting stops before every sync, and DONE comes at the end.  See
  :mod:`kit.hinting`.
* ``report``: free page reporting (Linux 5.7, QEMU ``free-page-reporting=on``)
  in its steady state.  The guest's free blocks of 2 MiB or more have been
  discarded by the host and read zero.  Migration is the original algorithm.
  See :mod:`kit.reporting`.

Writers: the guest's vCPUs write through KVM's dirty log (fetched at each sync).  With
``dma_mib_s`` a device also writes (a disk read into fresh page cache): an emulated
device's writes reach ``dirty_memory`` at once, vhost's reach it at a sync.  In mode
"pv" the filter erases the former when they fall in the wait (:mod:`kit.dma`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import balloon as _balloon
from .costmodel import CostModel, get_preset
from .errors import KitError, RateError, UnknownNameError
from .guest import Guest
from .guest.balloon_driver import VirtioBalloonDriver
from .hinting import HINT_BLOCK_PAGES
from .clock import SendClock
from .dirty import DirtyMemory
from .modes import MODE_CLASSES
from .memmap import pfn_to_ram_page
from .scenario import DMA_WRITERS, INJECTIONS, MODES, RFC_FILTERS   # the one list of each, kept with Scenario
from .units import MiB, TARGET_PAGE_SIZE

RAM_SAVE_FLAG_COMPRESS = 0x02       # a zero page ("compress" = one repeated byte)
RAM_SAVE_FLAG_MEM_SIZE = 0x04
RAM_SAVE_FLAG_PAGE = 0x08
RAM_SAVE_FLAG_EOS = 0x10
RAM_SAVE_FLAG_CONTINUE = 0x20
ZERO_PAGE_BYTES = 8 + 1
NORMAL_PAGE_BYTES = 8 + TARGET_PAGE_SIZE
EOS_BYTES = 8

MAX_WAIT_S = 0.050                  # ram_save_iterate returns after at most 50 ms
BUFFER_DELAY_S = 0.100              # the thread measures bandwidth every 100 ms
XFER_LIMIT_RATIO = 10               # rate limit per 100 ms = max-bandwidth / 10
POLL_INTERVAL_S = 0.001             # the RFC polls the balloon every 1 ms (usleep(1000))
_WINDOW = 1 << 18                   # pages examined per vectorised batch (1 GiB of RAM)

# Page states for pictures (``Migration.page_state``), in ram_addr order.
PENDING, SKIPPED_FREE, SENT_ZERO, SENT_NORMAL, REDIRTIED = range(5)
STATE_NAMES = ("pending", "skipped as free", "sent as zero", "sent as normal", "re-dirtied")


@dataclass(frozen=True)
class RAMBlock:
    """One entry of ``ram_list.blocks``: a named range of ram_addr space (in pages)."""
    idstr: str
    offset: int
    used_length: int
    guest_ram: bool          # pc.ram (the guest's RAM) or device memory such as VGA RAM


@dataclass
class Stats:
    """The counters behind ``query-migrate``'s "ram" section."""
    transferred: int = 0      # ram_bytes_transferred(): what ram_save_iterate and ram_save_complete's pages add
    file_bytes: int = 0       # qemu_ftell(): everything RAM put in the stream, headers and EOS markers too
    duplicate: int = 0        # zero pages sent as 9-byte records
    normal: int = 0           # full pages sent
    skipped: int = 0          # always 0 since QEMU 1.5.3
    free_skipped: int = 0     # pages skipped as free: filtered by the RFC, or cleared by hints
    dirty_sync_count: int = 0
    iterations: int = 0
    visited: int = 0          # pages the bulk-stage shortcut looked at without reading the bitmap


class Migration:
    """QEMU's migration thread for ``guest``, in ``mode`` "original", "pv" (the RFC),
    "hint" (free page hinting) or "report" (free page reporting's steady state).

    Parameters: ``preset`` (a cost model or its name), ``verify`` (keep the
    destination's copy of every page and count lost pages at switch-over),
    ``inject`` (a deliberate fault, one of :data:`INJECTIONS`), ``vga_vram``
    (bytes of a second RAMBlock after pc.ram, as the default VGA card adds; 0 to
    leave it out), ``track_pages`` (keep a per-page state for pictures),
    ``max_time_s`` (stop a migration that does not converge), ``lie_fraction``
    (with the lying-guest injection: the share of used pages reported free),
    ``guest_features`` (what the guest's balloon driver supports; default all; bit 3
    is the RFC's feature in mode "pv" and free page hinting in mode "hint", bit 5 is
    free page reporting),
    ``free_page_wait_timeout_s`` (None waits for the guest forever, as the RFC does;
    a number gives up after that long and sends every page),
    ``dma_mib_s`` (a disk read in the guest: MiB/s of fresh page-cache pages that a device
    fills by DMA while the guest runs), ``dma_writer`` (who writes them: "emulated", a device
    QEMU emulates, whose writes reach ``dirty_memory`` at once; or "vhost", whose writes go
    to vhost's log, synced like KVM's), ``rfc_filter`` (mode "pv" only: how the filter applies
    the guest's bitmap; "overwrite" as the RFC, or a candidate repair, see :mod:`kit.dma`).
    """

    def __init__(self, guest: Guest, mode: str = "original", preset="seed-2016", *,
                 verify: bool = False, inject: str | None = None, vga_vram: int = 16 * MiB,
                 track_pages: bool = True, max_time_s: float = 3600.0, lie_fraction: float = 0.01,
                 guest_features=None, free_page_wait_timeout_s: float | None = None,
                 seed: int = 0, owns_guest: bool = False, scenario=None, dma_mib_s: float = 0.0,
                 dma_writer: str = "emulated", rfc_filter: str = "overwrite"):
        if mode not in MODES:
            raise UnknownNameError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        if inject is not None and inject not in INJECTIONS:
            raise UnknownNameError(f"unknown injection {inject!r}; choose one of {', '.join(INJECTIONS)}")
        if vga_vram < 0 or vga_vram % TARGET_PAGE_SIZE:
            raise KitError("vga_vram must be a non-negative whole number of 4 KiB pages")
        check_device_writes(dma_mib_s, dma_writer, rfc_filter, mode)
        if not owns_guest:
            # a run never changes its inputs: migrate a copy (kit.scenario.build hands over a
            # guest made for this migration alone, and says so with owns_guest=True)
            guest = guest.copy()
        self.guest, self.mode, self.inject = guest, mode, inject
        self.scenario = scenario
        self.cost: CostModel = get_preset(preset)
        self.mm = guest.mm
        self.max_time_s = max_time_s
        self.free_page_wait_timeout_s = free_page_wait_timeout_s     # None: wait forever, as the RFC
        self.rng = np.random.default_rng(seed)
        self.dma_writer, self.rfc_filter = dma_writer, rfc_filter
        self.dma_mib_s = float(dma_mib_s)
        guest.dma_rate = self.dma_mib_s * MiB / TARGET_PAGE_SIZE      # pages per second

        ram_pages = self.mm.ram_pages
        self.blocks = [RAMBlock("pc.ram", 0, ram_pages, True)]
        if vga_vram:
            self.blocks.append(RAMBlock("vga.vram", ram_pages, vga_vram // TARGET_PAGE_SIZE, False))
        self.total_pages = sum(b.used_length for b in self.blocks)      # last_ram_offset() >> 12

        self.now = 0.0
        self.breakdown: dict[str, float] = {}      # simulated seconds by cause (see _spend)
        self.clock = SendClock(self.cost.cpu_ns_per_page, self.cost.wire_bytes_per_s,
                               ZERO_PAGE_BYTES, NORMAL_PAGE_BYTES)
        self.vm_running = True
        self.phase = "setup"
        self.status = "setup"
        self.stats = Stats()
        self.timeline: list[dict] = []
        self.bmap = np.zeros(self.total_pages, bool)     # the migration bitmap (ram_addr order)
        # ram_list.dirty_memory[DIRTY_MEMORY_MIGRATION]: every page set when the RAMBlocks were made
        self.dirty_memory = DirtyMemory(self.total_pages, all_set=True)
        self.migration_dirty_pages = 0
        self.ram_bulk_stage = True
        self.pos = 0
        self.last_sent_block = None
        self.setup_time = None
        self.downtime = None
        self.total_time = None
        self.max_size = 0.0
        self.bandwidth = 0.0
        self.window_start = 0.0
        self.window_bytes = 0
        self.dirty_pages_rate = 0.0
        self._rate_period_start = 0.0
        self._rate_period_pages = 0
        self.free_pages_count = None
        self.free_pages_bmap = None
        self.stall = None
        self.page_state = np.zeros(self.total_pages, np.uint8) if track_pages else None
        self.dest_version = np.zeros(self.total_pages, guest.memory.version.dtype) if verify else None
        self.verify_result = None

        if inject == "guest-reports-used-pages-free":
            used = np.flatnonzero(guest.memory.present_mask() & ~guest.buddy.free)
            pick = self.rng.choice(used, size=max(1, int(len(used) * lie_fraction)), replace=False)
            lie = np.zeros(guest.memory.nframes, bool)
            lie[pick] = True
            guest.lie_frames = lie

        # virtio-balloon: device in QEMU, driver in the guest, both probed at boot.
        low_mem = 4 << 30 if inject == "wrong-lowmem" else self.mm.lowmem   # pc_get_lowmem()
        self.balloon = _balloon.VirtIOBalloon(low_mem=low_mem, ram_pages=ram_pages)
        self.driver = VirtioBalloonDriver(self.balloon, self._free_page_source,
                                          guest_features=guest_features,
                                          bitmap_transfer_s=self.cost.bitmap_transfer_s)
        self.driver.probe(0.0)
        self.registry = _balloon.BalloonRegistry()
        self.registry.qemu_add_balloon_handler(None, None, self.balloon.virtio_balloon_free_pages,
                                               self.balloon)
        self._snapshot_time = None

        # The mode: a small strategy whose hooks the thread calls (kit/modes.py).
        self.strategy = MODE_CLASSES[mode](self, guest_features)
        self._plan = self.strategy.setup_plan()

    @property
    def hinting(self):
        """Free page hinting's state (:class:`kit.hinting.FreePageHinting`) in mode "hint", else None."""
        return getattr(self.strategy, "hinting", None)

    @property
    def reporting(self):
        """Free page reporting's state in mode "report" (None if the guest lacks it, or another mode)."""
        return getattr(self.strategy, "reporting", None)

    # ------------------------------------------------------------------ guest side
    def _free_page_source(self, low_mem, now):
        """The guest answers the request: walk the free lists now, reply after the walk."""
        self.guest.advance(now)
        bits, count, nr_blocks = self.guest.build_free_page_bitmap(low_mem, packed=True)
        self._snapshot_time = now
        self._event("guest-snapshot", free_pages=int(count), free_blocks=int(nr_blocks))
        if self.inject == "guest-hangs":
            return bits, count, float("inf")     # it never finishes the walk
        return bits, count, self.cost.guest_walk_s(count, nr_blocks)

    def _spend(self, seconds: float, what: str):
        """Let ``seconds`` of simulated time pass, booked under ``what`` in :attr:`breakdown`."""
        self.breakdown[what] = self.breakdown.get(what, 0.0) + seconds
        self.now += seconds
        if self.vm_running:
            self.guest.advance(self.now)

    def _event(self, kind: str, **detail):
        rec = {"t": self.now, "phase": self.phase, "kind": kind, **detail}
        self.timeline.append(rec)
        return rec

    # ------------------------------------------------------------------ setup
    @property
    def pv_active(self) -> bool:
        """The RFC's path is taken: pv mode and the balloon feature was negotiated."""
        return self.mode == "pv" and self.strategy.active(self)

    def _do_ram_save_setup(self):
        self._spend(self.cost.setup_ms * 1e-3 + self.total_pages * self.cost.setup_ns_per_page * 1e-9,
                    "setup")
        return self.strategy.ram_save_setup(self)

    def _do_memory_global_dirty_log_start(self):
        backed = self.strategy.backed_pages(self)
        self._spend(self.cost.dirty_log_start_s(backed), "dirty-log-start")
        self.guest.memory.dirty_log.start()
        # global dirty logging: emulated devices' writes now set DIRTY_MEMORY_MIGRATION
        # (memory_region_get_dirty_log_mask), and vhost starts its log (log_global_start)
        self.guest.memory.device_log.start()
        return self._event("dirty-log-start", backed_pages=backed)

    def _wait_free_pages(self):
        """The RFC's wait: poll the balloon every 1 ms until the guest's bitmap is in."""
        start, polls = self.now, 0
        timeout = self.free_page_wait_timeout_s
        deadline = start + timeout if timeout is not None else float("inf")
        while True:
            due = self.driver.next_action_time()
            due = float("inf") if due is None else due
            target = min(due, deadline)
            if np.isinf(target):
                # The RFC waits synchronously: a guest that never answers stalls migration
                # (Daniel Berrange's objection, 3 Mar 2016).
                self.stall = "the guest never answered the free-page request"
                self._spend(max(0.0, self.max_time_s - self.now), "free-page-wait")
                self.status = "setup"
                return self._event("stalled", reason=self.stall, polls=polls)
            if target > self.now + POLL_INTERVAL_S:
                skip = int(np.floor((target - self.now) / POLL_INTERVAL_S))
                polls += skip
                self._spend(skip * POLL_INTERVAL_S, "free-page-wait")
            self._spend(POLL_INTERVAL_S, "free-page-wait")            # usleep(1000)
            polls += 1
            self.driver.run_until(self.now)
            ret, count = self.registry.balloon_get_free_pages(self.free_pages_bmap, self.now)
            if ret == 1:
                self.free_pages_count = int(count)
                return self._event("free-pages-done", polls=polls, waited=self.now - start,
                                   free_pages=int(count))
            if self.now >= deadline:
                # Not in the RFC: a bounded wait that gives up and migrates every page.
                self.free_pages_count = None
                return self._event("free-pages-timeout", polls=polls, waited=self.now - start)

    def _do_migration_bitmap_sync(self):
        new = self.migration_bitmap_sync()
        return self._event("sync", new_dirty=new, migration_dirty_pages=self.migration_dirty_pages)

    # ------------------------------------------------------------------ the bitmap
    def migration_bitmap_sync(self) -> int:
        """Fetch KVM's dirty log, OR it into the migration bitmap; returns newly dirty pages.

        The mode's hooks run around it (in mode "hint", QEMU 4.0's precopy notifiers:
        hinting stops before the sync; after it a new round starts if the VM runs, else DONE).
        """
        self.strategy.before_sync(self)
        new = self._bitmap_sync()
        self.strategy.after_sync(self)
        return new

    def emulated_writes_to_dirty_memory(self) -> np.ndarray:
        """Put the emulated devices' writes so far into ``dirty_memory``; returns their ram pages.

        QEMU sets the bit at the write itself (``invalidate_and_set_dirty``).  The model keeps
        the writes in the guest's device log and moves them here before anything reads or
        changes ``dirty_memory`` (the filter, a sync), which comes to the same.  With
        ``dma_writer="vhost"`` nothing moves: vhost's log is read only at a sync."""
        if self.dma_writer != "emulated":
            return np.zeros(0, np.int64)
        return self._take_device_log()

    def _take_device_log(self) -> np.ndarray:
        frames = self.guest.memory.device_log.fetch_and_clear()
        pages = pfn_to_ram_page(self.mm, frames) if len(frames) else frames
        self.dirty_memory.set_pages(pages)
        return pages

    def _bitmap_sync(self) -> int:
        self._spend(self.cost.sync_s(self.total_pages), "bitmap-sync")
        # address_space_sync_dirty_bitmap: every listener's log_sync puts its log into
        # dirty_memory (KVM's kvm_log_sync, and vhost's vhost_log_sync); emulated devices'
        # writes are in dirty_memory already.  Then dirty_memory moves into the migration bitmap.
        frames = self.guest.memory.dirty_log.fetch_and_clear()
        pages = pfn_to_ram_page(self.mm, frames) if len(frames) else frames
        self.dirty_memory.set_pages(pages)
        dev = self._take_device_log()
        if len(dev):
            pages = np.concatenate([pages, dev])
        new = self.dirty_memory.fold_into(self.bmap)
        self.migration_dirty_pages += new
        self.stats.dirty_sync_count += 1
        if self.page_state is not None and len(pages):
            st = self.page_state[pages]
            self.page_state[pages] = np.where(st == PENDING, PENDING, REDIRTIED)
        self._rate_period_pages += new
        if self.now - self._rate_period_start >= 1.0:
            self.dirty_pages_rate = self._rate_period_pages / (self.now - self._rate_period_start)
            self._rate_period_start, self._rate_period_pages = self.now, 0
        return new

    # ------------------------------------------------------------------ free page hinting
    def _apply_hints(self, t: float) -> int:
        """The iothread: feed every hint that reached QEMU by time ``t`` to the bitmap."""
        blocks = self.hinting.take_arrived(t)
        if not len(blocks):
            return 0
        cleared = self.qemu_guest_free_page_hint(blocks)
        rnd = self.hinting.rounds[-1]
        rnd["pages_cleared"] += cleared
        t = self.hinting.last_arrival
        last = self.timeline[-1] if self.timeline else None
        if last is not None and last["kind"] == "hints" and last["cmd_id"] == rnd["cmd_id"]:
            # hints that arrive between two other events are one record (t: the last arrival)
            last.update(t=t, blocks=last["blocks"] + int(len(blocks)),
                        pages_cleared=last["pages_cleared"] + cleared,
                        migration_dirty_pages=self.migration_dirty_pages)
        else:
            self._event("hints", t=t, cmd_id=rnd["cmd_id"], blocks=int(len(blocks)), pages_cleared=cleared,
                        migration_dirty_pages=self.migration_dirty_pages)
        return cleared

    def qemu_guest_free_page_hint(self, blocks) -> int:
        """Clear hinted 4 MiB blocks (guest block numbers) in the bitmap; returns bits cleared.

        Only bits still set count: ``migration_dirty_pages`` drops by those.  A
        page already sent stays sent.  Vectorised: the blocks of one alias of pc.ram
        are rows of a (n, 1024) view of the bitmap.
        """
        cleared = 0
        frames = np.asarray(blocks, np.int64) * HINT_BLOCK_PAGES
        if len(frames) <= 4:                       # a few blocks (the usual case): plain slices
            for f in frames.tolist():
                ra, pa = next((ra, pa) for ra, rb, pa in self.guest.memory.ram_segments()
                              if pa <= f < pa + rb - ra)
                r = f - pa + ra
                bits = self.bmap[r:r + HINT_BLOCK_PAGES]
                cnt = int(np.count_nonzero(bits))
                if cnt and self.page_state is not None:
                    self.page_state[r:r + HINT_BLOCK_PAGES][bits] = SKIPPED_FREE
                bits[:] = False
                cleared += cnt
            self.migration_dirty_pages -= cleared
            self.stats.free_skipped += cleared
            return cleared
        for ra, rb, pa in self.guest.memory.ram_segments():
            sel = frames[(frames >= pa) & (frames < pa + rb - ra)]
            if not len(sel):
                continue
            # a hinted block is free, so all of it is RAM and inside this alias
            s = (ra - pa) % HINT_BLOCK_PAGES
            n = (self.total_pages - s) // HINT_BLOCK_PAGES
            rows = (sel - pa + ra - s) // HINT_BLOCK_PAGES
            view = self.bmap[s:s + n * HINT_BLOCK_PAGES].reshape(n, HINT_BLOCK_PAGES)
            bits = view[rows]
            cnt = int(np.count_nonzero(bits))
            view[rows] = False
            if self.page_state is not None and cnt:
                ps = self.page_state[s:s + n * HINT_BLOCK_PAGES].reshape(n, HINT_BLOCK_PAGES)
                sub = ps[rows]
                sub[bits] = SKIPPED_FREE
                ps[rows] = sub
            cleared += cnt
        self.migration_dirty_pages -= cleared
        self.stats.free_skipped += cleared
        return cleared

    # ------------------------------------------------------------------ sending pages
    def _segments(self):
        """(ram_a, ram_b, pfn_a or None, block) covering ram_addr space in order."""
        out = []
        for ra, rb, pa in self.guest.memory.ram_segments():
            out.append((ra, rb, pa, self.blocks[0]))
        for b in self.blocks[1:]:
            out.append((b.offset, b.offset + b.used_length, None, b))
        return out

    def _send(self, time_budget: float, byte_budget: float):
        """Find and send dirty pages from ``self.pos`` on, within the budgets.

        Returns (pages sent, bytes, seconds used, seconds of them the wire accounts for,
        whether a full circle found nothing).  How long each page takes is the clock's
        business (:class:`kit.clock.SendClock`), asked once per batch.
        """
        clock = self.clock
        segs = self._segments()
        used_t, used_wire, used_bytes, sent = 0.0, 0.0, 0, 0
        scanned_empty = 0
        shortcut = self.strategy.bulk_shortcut and self.ram_bulk_stage
        mode = self.strategy
        # Size the first batch for full pages (the common case) and double it
        # whenever a batch is used up without reaching the budget.
        per_page = clock.t_normal
        window = _WINDOW if np.isinf(time_budget) else int(min(_WINDOW, time_budget / per_page + 64))
        while True:
            mode.catch_up(self, self.now + used_t)      # another thread (hinting's iothread) ran meanwhile
            if used_t >= time_budget or used_bytes >= byte_budget:
                return sent, used_bytes, used_t, used_wire, False
            if scanned_empty >= self.total_pages:
                return sent, used_bytes, used_t, used_wire, True
            if self.pos >= self.total_pages:
                self.pos = 0
                self.ram_bulk_stage = False        # the search wrapped: the bulk stage is over
                shortcut = False
            seg = next(s for s in segs if s[0] <= self.pos < s[1])
            ra, rb, pa, block = seg
            a, b = self.pos, min(self.pos + window, rb)
            ndirty = int(np.count_nonzero(self.bmap[a:b]))
            if not ndirty:
                if shortcut:
                    self.stats.visited += b - a     # migration_bitmap_find_dirty returns nr + 1
                scanned_empty += b - a
                self.pos = b
                continue
            scanned_empty = 0
            # every page of the window dirty (the bulk stage): slices instead of index arrays
            dense = ndirty == b - a
            idx = np.arange(b - a) if dense else np.flatnonzero(self.bmap[a:b])
            if pa is None:
                zero = np.ones(len(idx), bool)
            elif dense:
                zero = self.guest.memory.zero_of(slice(pa - ra + a, pa - ra + b))
            else:
                zero = self.guest.memory.zero_of(pa - ra + a + idx)
            extra = 1 + len(block.idstr) if block is not self.last_sent_block else 0
            n = len(idx)
            nz_all = int(np.count_nonzero(zero))
            tot_b, tot_t = clock.totals(n, nz_all, bool(zero[0]), extra)
            busy = mode.busy()
            if used_bytes + tot_b < byte_budget and used_t + tot_t < time_budget and not busy:
                take, new_bytes, new_t = n, used_bytes + tot_b, used_t + tot_t      # all of it fits
            elif used_bytes + tot_b < byte_budget and not busy:
                # only the time limit falls inside: find the page that reaches it.  Guess where
                # from the batch's mean page time; fall back to a bound that cannot miss (every
                # page a zero page, the shortest kind)
                left = time_budget - used_t
                kmax = min(n, int(left / clock.t_zero) + 2)
                guess = min(kmax, int(1.25 * left * n / tot_t) + 64)
                cum_t = clock.cumulative_seconds(zero[:guess], extra)
                if cum_t[-1] + used_t < time_budget:
                    cum_t = clock.cumulative_seconds(zero[:kmax], extra)
                cum_t += used_t
                take = int(np.searchsorted(cum_t, time_budget, side="left")) + 1
                tb, _ = clock.totals(take, int(np.count_nonzero(zero[:take])), bool(zero[0]), extra)
                new_bytes, new_t = used_bytes + tb, float(cum_t[take - 1])
            else:
                # a byte limit (max-bandwidth), or another thread racing the scan: page by page
                cum_bytes, cum_t = clock.cumulative(zero, extra)
                cum_bytes += used_bytes
                cum_t += used_t
                take = n
                if cum_bytes[-1] >= byte_budget:        # the page that reaches a limit is still sent
                    take = int(np.searchsorted(cum_bytes, byte_budget, side="left")) + 1
                if cum_t[take - 1] >= time_budget:
                    take = min(take, int(np.searchsorted(cum_t, time_budget, side="left")) + 1)
                if busy:
                    raced = mode.limit_batch(self, take, idx, a, ra, pa, cum_t, used_t)
                    if raced < take:
                        # a hint lands just ahead: look at about one 4 MiB block at a time for a while
                        take, window = raced, HINT_BLOCK_PAGES // 2
                new_bytes, new_t = int(cum_bytes[take - 1]), float(cum_t[take - 1])
            if take == len(idx):
                window = min(2 * window, _WINDOW)
            pages = slice(a, a + take) if dense else a + idx[:take]
            zero = zero[:take]
            self.bmap[pages] = False
            self.migration_dirty_pages -= take
            nzero = nz_all if take == n else int(np.count_nonzero(zero))
            self.stats.duplicate += nzero
            self.stats.normal += take - nzero
            if self.page_state is not None:
                self.page_state[pages] = np.where(zero, SENT_ZERO, SENT_NORMAL)
            if self.dest_version is not None and pa is not None:
                src = slice(pa - ra + a, pa - ra + a + take) if dense else pa - ra + pages
                self.dest_version[pages] = self.guest.memory.version[src]
            used_wire += clock.wire_seconds(new_bytes - used_bytes)
            used_bytes = new_bytes
            used_t = new_t
            sent += take
            self.last_sent_block = block
            new_pos = a + int(idx[take - 1]) + 1 if take < len(idx) else b
            if shortcut:
                self.stats.visited += new_pos - a
            self.pos = new_pos

    # ------------------------------------------------------------------ the thread loop
    def ram_save_pending(self) -> int:
        remaining = self.migration_dirty_pages * TARGET_PAGE_SIZE
        if remaining < self.max_size:
            self.migration_bitmap_sync()
            remaining = self.migration_dirty_pages * TARGET_PAGE_SIZE
        return remaining

    def _xfer_limit(self):
        mb = self.cost.max_bandwidth
        return float("inf") if mb is None else mb / XFER_LIMIT_RATIO

    def _ram_save_iterate(self):
        budget = self._xfer_limit() - self.window_bytes
        sent, nbytes, secs, wire_s, _ = self._send(MAX_WAIT_S, budget)
        nbytes += EOS_BYTES                 # QEMU 2.5 counts ram_save_iterate's EOS in bytes_transferred
        self.stats.transferred += nbytes
        self.stats.file_bytes += nbytes
        self.window_bytes += nbytes
        self.stats.iterations += 1
        eos_s = self.clock.wire_seconds(EOS_BYTES)
        self._spend_sending(secs + eos_s, wire_s + eos_s)
        return self._event("iterate", pages=sent, bytes=nbytes, seconds=secs,
                           bulk=self.ram_bulk_stage, migration_dirty_pages=self.migration_dirty_pages)

    def _thread_turn(self):
        """One turn of migration_thread's loop: pending check, iterate or complete, bandwidth."""
        rec = None
        self.strategy.between_iterations(self)
        if self.window_bytes < self._xfer_limit():
            pending = self.ram_save_pending()
            if pending and pending >= self.max_size:
                rec = self._ram_save_iterate()
            else:
                return self._migration_completion()
        if self.window_bytes >= self._xfer_limit():
            # rate limited: sleep until this 100 ms window ends
            self._spend(max(0.0, self.window_start + BUFFER_DELAY_S - self.now), "rate-limit-sleep")
            self._close_window()
        elif self.now - self.window_start >= BUFFER_DELAY_S - 1e-12:
            self._close_window()
        if self.now > self.max_time_s:
            self.status = "active"
            self.stall = f"did not converge within {self.max_time_s:g} s of simulated time"
            self.phase = "stopped"
            return self._event("not-converged", pending=self.migration_dirty_pages)
        return rec

    def _spend_sending(self, seconds: float, wire_seconds: float):
        """Book sending time: the wire's share, and what the CPU (zero checks) adds on top."""
        wire_part = min(seconds, wire_seconds)
        self.breakdown["send-wire"] = self.breakdown.get("send-wire", 0.0) + wire_part
        self._spend(seconds - wire_part, "send-cpu")
        self.now += wire_part
        if self.vm_running:
            self.guest.advance(self.now)

    def _close_window(self):
        """Every BUFFER_DELAY: measure bandwidth, derive max_size, reset the rate limit."""
        spent = self.now - self.window_start
        if spent > 0:
            self.bandwidth = self.window_bytes / spent
            self.max_size = self.bandwidth * self.cost.downtime_limit_ms * 1e-3
        self.window_start, self.window_bytes = self.now, 0

    def _migration_completion(self):
        self.phase = "complete"
        stop = self.now
        self.vm_running = False            # vm_stop: the guest does not run from here on
        self._event("vm-stop")
        self.migration_bitmap_sync()
        sent, nbytes, secs, wire_s, _ = self._send(float("inf"), float("inf"))
        self.stats.transferred += nbytes    # ram_save_complete's pages count; its final EOS does not
        self.stats.file_bytes += nbytes + EOS_BYTES
        self._spend_sending(secs, wire_s)
        self.downtime = self.now - stop
        self.total_time = self.now
        self.status = "completed"
        self.phase = "completed"
        if self.dest_version is not None:
            self.verify_result = self.verify()
        return self._event("completed", pages=sent, bytes=nbytes, downtime=self.downtime)

    # ------------------------------------------------------------------ driving
    @property
    def done(self) -> bool:
        return self.phase in ("completed", "stopped") or self.stall is not None and self.phase == "setup"

    def step(self):
        """Run one action; returns its timeline record (None once finished)."""
        if self.done:
            return None
        if self.phase == "setup":
            action = self._plan.pop(0)
            own = getattr(self.strategy, "do_" + action, None)     # a step of the mode's own
            rec = own(self) if own is not None else getattr(self, "_do_" + action)()
            if self.stall:
                return rec
            if not self._plan:
                # ram_save_setup's header goes into the stream, not into bytes_transferred
                self.stats.file_bytes += self._header_bytes()
                self.setup_time = self.now
                self.window_start = self.now
                self._rate_period_start = self.now
                self.phase = "iterate"
                self.status = "active"
            return rec
        return self._thread_turn()

    def run(self, until: float | None = None):
        """Step until the migration completes (or simulated time passes ``until``)."""
        while not self.done and (until is None or self.now < until):
            self.step()
        return self.result()

    def _header_bytes(self):
        # be64 total RAM | RAM_SAVE_FLAG_MEM_SIZE, then per block: name length, name, size; then EOS
        return 8 + sum(1 + len(b.idstr) + 8 for b in self.blocks) + EOS_BYTES

    # ------------------------------------------------------------------ results
    def verify(self) -> dict:
        """Compare the destination with the source: pages the guest uses that arrived stale."""
        if self.dest_version is None:
            raise KitError("verify needs Migration(..., verify=True) from the start")
        mem = self.guest.memory
        n = self.mm.ram_pages
        src = mem.to_ram_order(mem.version)
        used = self.guest.used_ram_pages()
        lost = used & (self.dest_version[:n] != src)
        lost_pages = np.flatnonzero(lost)
        out = {"lost-pages": int(len(lost_pages)), "first-lost-ram-pages": lost_pages[:16].tolist()}
        if self.dma_mib_s:
            # the pages a device wrote: the page cache's, which no vCPU writes again
            dev = mem.device_written if mem.device_written is not None else np.zeros(mem.nframes, bool)
            out["lost-device-written-pages"] = int(np.count_nonzero(lost & mem.to_ram_order(dev)))
        if self.guest.lie_frames is not None:
            lied = mem.to_ram_order(self.guest.lie_frames)
            out["lied-pages"] = int(np.count_nonzero(lied))
            out["lost-outside-lied-pages"] = int(np.count_nonzero(lost & ~lied))
        return out

    def _mbps(self) -> float:
        """QEMU 2.5's ``mbps``: the last 100 ms window's rate while active; once completed, the
        whole stream over the total time (``bytes * 8 / total-time``).  Simplification: the
        stream here is RAM's part only (no device state)."""
        if self.status == "completed" and self.total_time:
            return self.stats.file_bytes * 8 / self.total_time / 1e6
        return self.bandwidth * 8 / 1e6

    def query_migrate(self) -> dict:
        """Statistics with the names and meaning of QEMU's ``query-migrate``."""
        s = self.stats
        d = {
            "status": self.status,
            "total-time": _ms(self.total_time if self.total_time is not None else self.now),
            "setup-time": _ms(self.setup_time if self.setup_time is not None else self.now),
            "downtime": _ms(self.downtime) if self.downtime is not None else None,
            "ram": {
                "transferred": s.transferred,
                "remaining": self.migration_dirty_pages * TARGET_PAGE_SIZE,
                "total": self.total_pages * TARGET_PAGE_SIZE,
                "duplicate": s.duplicate,
                "skipped": s.skipped,
                "normal": s.normal,
                "normal-bytes": s.normal * TARGET_PAGE_SIZE,
                "dirty-sync-count": s.dirty_sync_count,
                "dirty-pages-rate": round(self.dirty_pages_rate),
                "mbps": round(self._mbps(), 2),
                "free-skipped": s.free_skipped,
            },
            "mode": self.mode,
            "breakdown-ms": {k: round(v * 1000, 3) for k, v in self.breakdown.items()},
        }
        d.update(self.strategy.stats(self))
        if self.dma_mib_s:
            d["device-writes"] = {"writer": self.dma_writer, "mib-per-s": self.dma_mib_s,
                                  "pages": int(sum(len(f) for _, f in self.guest.dma_history))}
        if self.stall:
            d["stall"] = self.stall
        if self.verify_result is not None:
            d["verify"] = self.verify_result
        return d

    def result(self) -> "MigrationResult":
        return MigrationResult(self.query_migrate(), list(self.timeline))


def check_device_writes(dma_mib_s, dma_writer, rfc_filter, mode) -> None:
    """Raise a specific error for a device-write rate, writer or RFC filter that cannot be."""
    if isinstance(dma_mib_s, bool) or not isinstance(dma_mib_s, (int, float, np.integer, np.floating)) \
            or not np.isfinite(dma_mib_s) or dma_mib_s < 0:
        raise RateError(f"dma_mib_s must be a number of MiB/s >= 0, got {dma_mib_s!r}")
    if dma_writer not in DMA_WRITERS:
        raise UnknownNameError(f"unknown dma_writer {dma_writer!r}; choose one of {', '.join(DMA_WRITERS)}")
    if rfc_filter not in RFC_FILTERS:
        raise UnknownNameError(f"unknown rfc_filter {rfc_filter!r}; choose one of {', '.join(RFC_FILTERS)}")
    if rfc_filter != "overwrite" and mode != "pv":
        raise KitError(f"rfc_filter {rfc_filter!r} changes the RFC's filter, which mode {mode!r} "
                       f"does not run; use it with mode pv")


@dataclass
class MigrationResult:
    stats: dict
    timeline: list = field(repr=False)

    def __getitem__(self, key):
        return self.stats[key]


def _ms(seconds):
    return None if seconds is None else int(round(seconds * 1000))


def migrate(ram="8G", workload="idle", mode="original", **kwargs):
    """``run(Scenario(ram, workload, mode, ...))``: a shorthand kept for old code.

    ``preset`` is accepted as the old name of ``cost``."""
    from .scenario import Scenario, run
    if "preset" in kwargs:
        kwargs["cost"] = kwargs.pop("preset")
    return run(Scenario(ram=ram, workload=workload, mode=mode, **kwargs))
