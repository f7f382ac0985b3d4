"""A write the dirty log never sees: device DMA during the RFC's wait, checked step by step.

The RFC's safety argument (Liang Li's answer to Rik van Riel, April 2016) is about
writes by the guest's vCPUs: KVM logs them, and the sync after the filter puts
them back.  A write by a device that QEMU emulates takes another road.  Each step
below was checked in the source; where a step is only true in part, it says so.

1. **An emulated device's DMA sets ``dirty_memory`` at once.**  Confirmed.  In
   QEMU 2.6's ``exec.c`` (the tree the RFC applies to; 2.5 has the same logic with
   the loop inside ``address_space_rw``) a device write that goes through
   ``address_space_rw`` reaches ``address_space_write_continue``, which copies the
   bytes into guest RAM and calls ``invalidate_and_set_dirty``.  That calls
   ``cpu_physical_memory_set_dirty_range`` with the mask from ``memory.c``'s
   ``memory_region_get_dirty_log_mask``, which adds ``DIRTY_MEMORY_MIGRATION`` for
   every RAM region while global dirty logging is on.  One correction: virtio-blk
   and IDE map the guest's buffers (``address_space_map``) and the block layer fills
   them; the bit is set when the request completes and the buffer is unmapped
   (``address_space_unmap`` calls ``invalidate_and_set_dirty`` for a write).  Same
   bitmap, set at completion.  KVM's log never sees any of it: KVM logs writes made
   through the guest's page tables, and QEMU writes through its own mapping.
2. **Patch 4 releases the BQL while it waits.**  Confirmed in the patch
   (Message-ID ``1457001868-15949-5-git-send-email-liang.z.li@intel.com``): it
   unlocks the iothread mutex, polls ``balloon_get_free_pages`` with a 1 ms sleep,
   and takes the lock again before the filter.  The main loop then runs device
   emulation, request completions included, during the wait.
3. **The filter overwrites ``dirty_memory``.**  Confirmed.  ``filter_out_guest_free_pages``
   (same patch) walks the first RAMBlock in ``DIRTY_MEMORY_BLOCK_SIZE`` chunks and
   calls ``slow_bitmap_complement`` (``util/bitmap.c``), which stores the complement
   of the source word in the destination word: an assignment, not an AND.
4. **A page allocated after the snapshot and filled by DMA in the wait is lost.**
   Follows from 1 to 3: the page was free in the snapshot, its bit was set by the
   device, and the filter writes 0 over it.  KVM's log has nothing for it, so the
   sync after the filter does not set it again, and a page-cache page that is only
   read afterwards never gets another write.  The DMA must *complete* inside the
   window: a request that completes after the filter sets its bit after the
   overwrite, and that bit survives to the sync.
5. **vhost is safe.**  Confirmed.  vhost writes guest RAM from the kernel (or a
   vhost-user process) and records it in its own log.  ``hw/virtio/vhost.c`` moves
   that log into ``dirty_memory`` only in ``vhost_log_sync``, the memory listener's
   ``log_sync``, which ``migration_bitmap_sync`` calls through
   ``address_space_sync_dirty_bitmap``, the same call that fetches KVM's log, after
   the filter.  Not modelled: vhost also syncs its old log when it has to resize
   it (``vhost_dev_log_resize``, on a change of the memory map); a resize during
   the wait would expose vhost's writes to the filter too.
6. **Free page hinting is safe.**  Confirmed.  Hinting (Linux 4.20 commit
   86a559787e6f, QEMU 4.0 commit c13c4153f7) starts after the first sync; a
   hinted block is allocated by the balloon driver until DONE, so no DMA can land
   in it; and ``qemu_guest_free_page_hint`` (``migration/ram.c``) clears bits only
   in the migration bitmap (``block->bmap``).  Since QEMU gained ``clear_bmap``
   it also calls ``migration_clear_memory_region_dirty_bitmap_range``, which
   reaches ``memory_region_clear_dirty_bitmap``: that clears only the listeners'
   own logs (KVM's ``log_clear``), never ``ram_list.dirty_memory``, so a device
   write since the last sync still reaches the migration bitmap at the next sync.
   (The brief that asked for this check dated hinting to QEMU 5.1 / Linux 5.7;
   those are free page *reporting*'s releases, which does not filter migration.)

Candidate repairs (``Scenario.rfc_filter``), each run by :class:`kit.modes.RFC`:

* ``"and"``: ``dirty_memory &= ~free`` instead of the overwrite.  It erases the
  same page: the device set the bit, the page was free in the snapshot, so the AND
  clears it.  With patch 3 every bit is set before the filter and no sync runs in
  between, so AND and overwrite give the very same bitmap.
* ``"hold-bql"``: keep the big lock through the wait, so no device runs.  The
  balloon's virtqueue handler, which takes the guest's reply, runs in the main
  loop, and ``os_host_main_loop_wait`` (``main-loop.c``) drops the lock only around
  its poll and takes it back before dispatching.  The reply is never taken: the
  migration stalls in setup.
* ``"migration-bitmap"``: the repair.  The bitmap starts all ones and a first sync
  runs before the request (as in QEMU 2.5, and as hinting does); the free pages are
  then cleared in the *migration* bitmap, and ``dirty_memory`` is left alone.
  Every write since the first sync, by a vCPU, a vhost backend or an emulated
  device, reaches the migration bitmap at the next sync.  QEMU's bitmaps starting
  all ones with the migration bitmap as the only truth is David Hildenbrand's 2021
  series (``20210216105039.40680-1-david@redhat.com``).

This module is the model side of notebook 06's section on it: scenarios of a
disk-reading guest, and a small sweep.  Pictures are in :mod:`kit.viz.races`.
"""
from __future__ import annotations

import numpy as np

from .costmodel import get_preset
from .scenario import Scenario, build, run

DISK_READER_RAM = "1G"


def disk_reader(mib_s: float = 64.0, *, writer: str = "emulated", mode: str = "pv",
                rfc_filter: str = "overwrite", walk_ns: float | None = None, ram=DISK_READER_RAM,
                seed: int = 0, **kw) -> Scenario:
    """An idle guest that reads a disk at ``mib_s`` into fresh page-cache pages while it migrates.

    ``walk_ns``: the guest's walk cost per free page (``guest_walk_ns_per_free_page``); a
    larger one makes the RFC's wait longer.  ``kw``: other Scenario fields."""
    cost = get_preset(kw.pop("cost", "seed-2016"))
    if walk_ns is not None:
        cost = cost.with_(name=f"{cost.name}, walk {walk_ns:g} ns", guest_walk_ns_per_free_page=float(walk_ns))
    kw.setdefault("verify", True)
    if mode != "pv":
        rfc_filter = "overwrite"
    return Scenario(ram=ram, workload="idle", mode=mode, cost=cost, seed=seed, dma_mib_s=mib_s,
                    dma_writer=writer, rfc_filter=rfc_filter, **kw)


def window_s(timeline) -> float:
    """Seconds from the guest's snapshot to the filter: the pages a device fills in between are
    free in the bitmap and written to ``dirty_memory`` before the overwrite."""
    t = {}
    for rec in timeline:
        t.setdefault(rec["kind"], rec["t"])
    if "guest-snapshot" not in t or "filter" not in t:
        return 0.0
    return t["filter"] - t["guest-snapshot"]


def sweep(rates=(16, 64, 256), walks=(10, 100, 1000), **kw) -> list[dict]:
    """Pages lost per migration by the RFC's filter, for each read rate (MiB/s) and walk cost."""
    rows = []
    for walk in walks:
        for rate in rates:
            r = run(disk_reader(rate, walk_ns=walk, **kw))
            v = r.stats["verify"]
            w = window_s(r.timeline)
            rows.append({"mib-s": rate, "walk-ns": walk, "wait-ms": w * 1e3, "setup-ms": r["setup-time"],
                         "lost": v["lost-pages"], "lost-device": v["lost-device-written-pages"],
                         "rate-x-window": rate * 256 * w})
    return rows


def compare(mib_s: float = 64.0, walk_ns: float | None = 1000.0, **kw) -> list[dict]:
    """The same disk-reading guest under each writer and each way of skipping free pages."""
    cases = [("RFC, emulated device", dict(mode="pv")),
             ("RFC, vhost", dict(mode="pv", writer="vhost")),
             ("RFC with AND instead of overwrite", dict(mode="pv", rfc_filter="and")),
             ("repair: free pages off the migration bitmap", dict(mode="pv", rfc_filter="migration-bitmap")),
             ("free page hinting, emulated device", dict(mode="hint")),
             ("RFC holding the BQL through the wait", dict(mode="pv", rfc_filter="hold-bql", max_time_s=10.0))]
    rows = []
    for name, opts in cases:
        r = run(disk_reader(mib_s, walk_ns=walk_ns, **opts, **kw))
        v = r.stats.get("verify") or {}
        rows.append({"case": name, "status": r["status"], "total-ms": r["total-time"],
                     "free-skipped": r["ram"]["free-skipped"], "lost": v.get("lost-pages"),
                     "stall": r.stats.get("stall")})
    return rows


def walk_through(mib_s: float = 64.0, walk_ns: float = 1000.0, **kw):
    """A disk-reading guest's RFC migration, stepped to the end of the wait (before the filter).

    Returns the migration; its guest's ``dma_history`` holds what the disk filled so far."""
    m = build(disk_reader(mib_s, walk_ns=walk_ns, track_pages=True, **kw))
    while m.phase == "setup" and m._plan and m._plan[0] != "filter_out_guest_free_pages":
        m.step()
    return m


def filled_after(guest, t: float) -> np.ndarray:
    """Frames the disk filled after simulated time ``t`` (from the guest's DMA history)."""
    got = [f for when, f in guest.dma_history if when > t]
    return np.concatenate(got) if got else np.zeros(0, np.int64)
