"""The migration modes, as small strategies behind one set of named hooks.

The migration thread (:class:`kit.migration.Migration`) never asks which mode
it runs.  It calls these hooks, and each mode fills the ones it needs:

* ``setup_plan()``: the steps of ``ram_save_setup``, in order; a step is a method
  ``do_<step>`` of the mode, or else of the migration thread;
* ``ram_save_setup(m)``: the migration bitmap as setup leaves it;
* ``backed_pages(m)``: pages the host backs, which dirty-log start write-protects;
* ``bulk_shortcut``: whether the bulk stage may skip reading the bitmap;
* ``before_sync(m)`` and ``after_sync(m)``: around every ``migration_bitmap_sync``
  (QEMU 4.0's precopy notifiers);
* ``catch_up(m, t)``, ``next_change()`` and ``limit_batch(...)``: bitmap changes that
  another thread makes while pages are sent (free page hinting's iothread);
* ``between_iterations(m)``: the same, in the gap between two ``ram_save_iterate`` calls;
* ``stats(m)``: what the mode adds to ``query-migrate``.

Modes: ``original`` (QEMU 2.5), ``pv`` (the RFC's patches 3 and 4), ``hint``
(free page hinting, :mod:`kit.hinting`), ``report`` (free page reporting's
steady state, :mod:`kit.reporting`).  A new mode is a class here and a line in
:data:`MODE_CLASSES`.
"""
from __future__ import annotations

import numpy as np

from . import balloon as _balloon
from .bitmap import bitmap_bytes, count_bits, unpack_bitmap
from .hinting import HINT_BLOCK_PAGES, VIRTIO_BALLOON_F_FREE_PAGE_HINT, VIRTIO_BALLOON_F_REPORTING, \
    FreePageHinting
from .reporting import report_free_pages

def guest_has(fbit, guest_features) -> bool:
    return guest_features is None or _balloon.virtio_has_feature(guest_features, fbit)


class Mode:
    """Original QEMU 2.5; the other modes override the hooks they change."""
    name = "original"
    bulk_shortcut = True        # migration_bitmap_find_dirty's bulk-stage shortcut (QEMU 2.5)

    def __init__(self, m, guest_features=None):
        pass

    def setup_plan(self) -> list[str]:
        return ["ram_save_setup", "memory_global_dirty_log_start", "migration_bitmap_sync"]

    def ram_save_setup(self, m):
        """Every bit set: every page is due once (QEMU 2.5's ``bitmap_set(migration_bitmap, ...)``)."""
        m.bmap[:] = True
        m.migration_dirty_pages = m.total_pages
        return m._event("bitmap", how="all ones", migration_dirty_pages=m.total_pages)

    def backed_pages(self, m) -> int:
        return int(np.count_nonzero(m.guest.memory.version))

    def before_sync(self, m):
        pass

    def after_sync(self, m):
        pass

    def next_change(self) -> float:
        return float("inf")

    def catch_up(self, m, t):
        pass

    def between_iterations(self, m):
        self.catch_up(m, m.now)

    def limit_batch(self, m, take, idx, a, ra, pa, cum_t, used_t) -> int:
        return take

    def busy(self) -> bool:
        """Whether bitmap changes from another thread are still to come."""
        return False

    def stats(self, m) -> dict:
        return {}


class Reporting(Mode):
    """Free page reporting (Linux 5.7, QEMU ``free-page-reporting=on``) in its steady state:
    the guest's free blocks of 2 MiB or more were discarded by the host and read zero.
    Migration itself is the original algorithm."""
    name = "report"

    def __init__(self, m, guest_features=None):
        self.reporting = None
        if guest_has(VIRTIO_BALLOON_F_REPORTING, guest_features):
            self.reporting = report_free_pages(m.guest)
            m._event("free-page-reporting", **self.reporting.summary())
        else:
            m._event("free-page-reporting-unsupported")

    def backed_pages(self, m) -> int:
        if self.reporting is None:
            return super().backed_pages(m)
        return self.reporting.backed_pages(m.guest)     # pages the host discarded are not backed

    def stats(self, m) -> dict:
        return {"free-page-reporting": self.reporting.summary() if self.reporting is not None
                else {"reported-pages": 0, "supported": False}}


class RFC(Mode):
    """The 2016 RFC, patches 3 and 4: an empty bitmap at setup, then dirty-log start, the
    guest's free-page bitmap, the filter, and the first sync.  The injected faults that act on
    this path (:data:`kit.scenario.INJECTIONS`) change the order or the guest's answer here.

    ``m.rfc_filter`` picks how the bitmap is applied (notebook 06, "A write the dirty log never
    sees"; the source walk is in :mod:`kit.dma`): "overwrite" (the RFC), "and" (``dirty_memory``
    ANDed with the complement: the same erasure), "hold-bql" (keep the big lock through the
    wait: the reply is never taken) and "migration-bitmap" (the repair: a first sync, then the
    free pages cleared in the migration bitmap, ``dirty_memory`` left alone)."""
    name = "pv"
    bulk_shortcut = False       # with patch 3 the bitmap is read from the start (no all-ones bulk stage)

    def __init__(self, m, guest_features=None):
        self.m = m

    def setup_plan(self) -> list[str]:
        if getattr(self.m, "rfc_filter", "overwrite") == "migration-bitmap":
            return self._repair_plan()
        if self.m.inject == "free-pages-before-dirty-log":
            return ["ram_save_setup", "balloon_get_free_pages", "wait_free_pages",
                    "memory_global_dirty_log_start", "filter_out_guest_free_pages",
                    "migration_bitmap_sync"]
        return ["ram_save_setup", "memory_global_dirty_log_start", "balloon_get_free_pages",
                "wait_free_pages", "filter_out_guest_free_pages", "migration_bitmap_sync"]

    def active(self, m) -> bool:
        """The RFC's path is taken: the balloon feature was negotiated."""
        return m.registry.balloon_free_pages_support()

    def _repair_plan(self) -> list[str]:
        """The repair's order: the bitmap all ones and a first sync, as QEMU 2.5, before the
        request; the free pages come off the migration bitmap; the next sync adds back every
        page written since the first one (KVM's log, vhost's, or dirty_memory)."""
        ask = ["balloon_get_free_pages", "wait_free_pages"]
        log = ["memory_global_dirty_log_start", "migration_bitmap_sync"]
        first, then = (ask, log) if self.m.inject == "free-pages-before-dirty-log" else (log, ask)
        return ["ram_save_setup"] + first + then + ["filter_free_pages_from_migration_bitmap"]

    def ram_save_setup(self, m):
        if getattr(m, "rfc_filter", "overwrite") == "migration-bitmap":
            super().ram_save_setup(m)                   # every bit set, as QEMU 2.5
            if self.active(m):
                m.free_pages_bmap = np.zeros(bitmap_bytes(m.mm.ram_pages), np.uint8)
            return m._event("bitmap", how="all ones", migration_dirty_pages=m.total_pages,
                            free_page_support=self.active(m))
        # patch 3: no bits in the migration bitmap (``bitmap_new`` without the ``bitmap_set``: a
        # fresh zeroed array, whose memory is not touched until a bit is set);
        # dirty_memory[DIRTY_MEMORY_MIGRATION] has every page marked (from RAM allocation), and
        # the first sync moves them into the bitmap.
        m.bmap = np.zeros(m.total_pages, bool)
        m.migration_dirty_pages = 0
        if self.active(m):
            m.free_pages_bmap = np.zeros(bitmap_bytes(m.mm.ram_pages), np.uint8)
        return m._event("bitmap", how="dirty_memory marked, bitmap empty", migration_dirty_pages=0,
                        free_page_support=self.active(m))

    def do_balloon_get_free_pages(self, m):
        if not self.active(m):
            return m._event("free-pages-unsupported")
        ret, _ = m.registry.balloon_get_free_pages(m.free_pages_bmap, m.now)
        return m._event("free-pages-request", ret=ret, low_mem=m.balloon.low_mem)

    def do_wait_free_pages(self, m):
        if not self.active(m):
            return m._event("free-pages-unsupported")
        if getattr(m, "rfc_filter", "overwrite") == "hold-bql":
            # The balloon's virtqueue handler, which takes the guest's reply, runs in the main
            # loop with the BQL held (os_host_main_loop_wait drops it only around the poll).
            # The migration thread keeps it while polling: the reply is never taken.
            m.stall = "the guest's reply waits for the BQL, which the polling migration thread holds"
            m._spend(max(0.0, m.max_time_s - m.now), "free-page-wait")
            m.status = "setup"
            return m._event("stalled", reason=m.stall, polls=None)
        return m._wait_free_pages()

    def do_filter_out_guest_free_pages(self, m):
        """The RFC overwrites pc.ram's dirty_memory bits with the complement of the free bitmap
        (``slow_bitmap_complement``), so the first sync brings only used pages into the bitmap."""
        if not self.active(m) or m.free_pages_count is None:
            return m._event("filter-skipped")
        block = m.blocks[0]                 # the RFC filters the first RAMBlock only (pc.ram)
        n = block.used_length
        m.emulated_writes_to_dirty_memory()     # emulated devices set their bits at the write
        if getattr(m, "rfc_filter", "overwrite") == "and":
            m.dirty_memory.and_not_packed(block.offset, m.free_pages_bmap, n)
        else:
            m.dirty_memory.assign_complement_packed(block.offset, m.free_pages_bmap, n)
        skipped = count_bits(m.free_pages_bmap)        # bits past pc.ram are never set
        m.stats.free_skipped = skipped
        if m.page_state is not None:
            from .migration import SKIPPED_FREE     # the thread's page states (it imports this module)
            free = unpack_bitmap(m.free_pages_bmap, n)
            m.page_state[block.offset:block.offset + n][free] = SKIPPED_FREE
        return m._event("filter", free_pages=skipped)

    def do_filter_free_pages_from_migration_bitmap(self, m):
        """The repair: clear the guest's free pages in the migration bitmap (as hints do), and
        leave ``dirty_memory``, with the writes since the first sync, for the next sync."""
        if not self.active(m) or m.free_pages_count is None:
            return m._event("filter-skipped")
        block = m.blocks[0]
        n = block.used_length
        free = unpack_bitmap(m.free_pages_bmap, n)
        seg = m.bmap[block.offset:block.offset + n]
        cleared = int(np.count_nonzero(seg & free))
        seg &= ~free
        m.migration_dirty_pages -= cleared
        m.stats.free_skipped = cleared
        if m.page_state is not None:
            from .migration import SKIPPED_FREE
            m.page_state[block.offset:block.offset + n][free] = SKIPPED_FREE
        return m._event("filter", free_pages=cleared, where="migration bitmap")


class Hinting(Mode):
    """Free page hinting (Linux 4.20, QEMU 4.0, ``free-page-hint=on``): the bitmap starts all
    ones; after the first sync a hinting round starts and the iothread clears hinted blocks
    while pages are sent; hinting stops before every sync, and DONE comes at the end."""
    name = "hint"
    bulk_shortcut = False       # QEMU 4.0 reads the bitmap in the bulk stage when hinting (fpo_enabled)

    def __init__(self, m, guest_features=None):
        self.hinting = FreePageHinting(m.guest, m.cost.hint_ns_per_block,
                                       guest_has(VIRTIO_BALLOON_F_FREE_PAGE_HINT, guest_features),
                                       start_s=m.cost.hint_start_ms * 1e-3,
                                       drain_chance=m.cost.hint_drain_chance,
                                       drain_chance_busy=m.cost.hint_drain_chance_busy)
        if not self.hinting.supported:
            m._event("free-page-hint-unsupported")

    def before_sync(self, m):
        """PRECOPY_NOTIFY_BEFORE_BITMAP_SYNC: apply the hints that arrived, then STOP."""
        h = self.hinting
        if not h.active:
            return
        m._apply_hints(m.now)
        # by="guest": the guest had hinted all it could and sent its own stop id first
        by = "guest" if not h.pending and m.now >= h.rounds[-1]["guest_finishes"] else "host"
        rnd = h.stop(m.now)
        m._event("hint-stop", cmd_id=rnd["cmd_id"], by=by, hinted_blocks=rnd["hinted_blocks"],
                 pages_cleared=rnd["pages_cleared"], dropped_at_stop=rnd["dropped_at_stop"],
                 dropped_busy=rnd["dropped_busy"])

    def after_sync(self, m):
        """PRECOPY_NOTIFY_AFTER_BITMAP_SYNC: a new round while the VM runs, else DONE."""
        h = self.hinting
        if m.vm_running:
            rnd = h.start(m.now)
            if rnd is not None:
                m._event("hint-start", cmd_id=rnd["cmd_id"], round=len(h.rounds),
                         planned_blocks=rnd["planned_blocks"], guest_finishes=rnd["guest_finishes"])
        elif h.status != "done":
            freed = h.done(m.now)
            if h.supported:
                m._event("hint-done", blocks_freed=freed, pages_freed=freed * HINT_BLOCK_PAGES)

    def busy(self) -> bool:
        return self.hinting.pending and not self.hinting.between_iterations

    def next_change(self) -> float:
        return float("inf") if self.hinting.between_iterations else self.hinting.next_arrival()

    def catch_up(self, m, t):
        if self.hinting.between_iterations:
            return                      # bitmap_mutex is the migration thread's until the iteration ends
        if self.hinting.pending and self.hinting.next_arrival() <= t:
            m._apply_hints(t)

    def between_iterations(self, m):
        if self.hinting.between_iterations:
            m._apply_hints(m.now)
        else:
            self.catch_up(m, m.now)

    def limit_batch(self, m, take, idx, a, ra, pa, cum_t, used_t) -> int:
        """Stop the batch before the first page a hint reaches before the scan does.

        Page k of the batch is reached when the pages before it are sent (the clock's
        cumulative time).  If its block's hint has arrived by then, the bitmap no longer
        has its bit: send only the pages before it, so the next batch applies that hint first.
        """
        if not self.hinting.pending or pa is None:
            return take
        arrivals = self.hinting.block_arrival
        off = pa - ra + a
        b0, b1 = (off + int(idx[0])) // HINT_BLOCK_PAGES, (off + int(idx[take - 1])) // HINT_BLOCK_PAGES
        end = m.now + float(cum_t[take - 1])
        if not arrivals[b0:b1 + 1].min() <= end:       # no hint lands in this batch's range in time
            return take
        arrival = arrivals[(off + idx[:take]) // HINT_BLOCK_PAGES]
        reach = m.now + np.concatenate(([used_t], cum_t[:take - 1]))
        hit = np.flatnonzero(arrival <= reach)
        return max(1, int(hit[0])) if len(hit) else take

    def stats(self, m) -> dict:
        return {"free-page-hint": self.hinting.summary()}


MODE_CLASSES = {"original": Mode, "pv": RFC, "hint": Hinting, "report": Reporting}
