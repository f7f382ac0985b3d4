"""Free page reporting (Alexander Duyck, Linux b0c504f15471, QEMU ``free-page-reporting=on``).

This is not a migration feature.  Its aim is host memory overcommit.  While
high-order frees happen, the guest reports free buddy blocks of order
``PAGE_REPORTING_MIN_ORDER`` (= ``pageblock_order``, 9: 2 MiB) or more every
2 s, in batches of 32, on the balloon's reporting virtqueue.  The host discards
them (``MADV_DONTNEED``), and they read back as zero.  The guest marks them
"reported" and does not report them again until they have been allocated and
freed.  A zone is left alone while its free memory is below its low watermark
plus 32 blocks of the minimum order (64 MiB).

What that means for migration: a reported page reads as zero.  So the
*original* pre-copy algorithm sends it as a 9-byte zero record instead of a
4104-byte page.  It is still read and proven zero, so it costs the migration
thread the same CPU as any zero page, and ``free-skipped`` stays 0.  The host
no longer backs it, so starting dirty logging does not write-protect it.

Model (:func:`report_free_pages`): when migration starts, the guest has been
reporting long enough to reach a steady state.  Every free block of order 9 or
more, in every zone that passes the watermark check, has been reported and
discarded: its frames read zero.  Nothing is reported during the migration
itself.  It lasts a few seconds, and the guest reports every 2 s and only
blocks freed since.  Discarding is not a guest write, so KVM's dirty log does
not see it.  That does not matter here, because it all happens before dirty
logging starts.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .guest import Guest
from .hinting import zone_watermarks

PAGE_REPORTING_MIN_ORDER = 9            # pageblock_order on x86-64: 2 MiB
PAGE_REPORTING_MIN_PAGES = 1 << PAGE_REPORTING_MIN_ORDER
PAGE_REPORTING_CAPACITY = 32            # blocks per report (and the reporting vq's size in QEMU)
PAGE_REPORTING_DELAY_S = 2.0            # the reporting work reruns every 2 s while frees happen


@dataclass
class FreePageReporting:
    """What the guest reported before migration: a frame mask and counts."""
    discarded: np.ndarray      # bool per frame: reported and dropped by the host (reads zero)
    reported_blocks: int       # free-list entries reported (an order-10 block is one entry)
    reported_pages: int
    reports: int               # virtqueue requests of up to 32 entries
    zones_skipped: list        # zones below low watermark + 32 min-order blocks

    def backed_pages(self, guest: Guest) -> int:
        """Pages the host backs: written once, and not discarded and still unused since."""
        mem = guest.memory
        still_dropped = self.discarded & guest.buddy.free & mem.zero
        return int(np.count_nonzero(mem.version)) - int(np.count_nonzero(mem.version[still_dropped]))

    def summary(self) -> dict:
        return {"reported-pages": self.reported_pages, "reported-blocks": self.reported_blocks,
                "reports": self.reports, "zones-skipped": list(self.zones_skipped)}


def report_free_pages(guest: Guest) -> FreePageReporting:
    """Bring ``guest`` to reporting's steady state: every free block of order >= 9 reads zero.

    Returns what was reported.  The guest's page contents change (``zero`` is
    set), but its versions do not.  A discard is not a write, and the pages are
    free, so no one may rely on their contents.
    """
    mem, buddy = guest.memory, guest.buddy
    discarded = np.zeros(mem.nframes, bool)
    free2d = buddy.free.reshape(-1, PAGE_REPORTING_MIN_PAGES)
    whole = free2d.all(axis=1)                 # 2 MiB chunks that are entirely free
    skipped = []
    for wm in zone_watermarks(guest):
        a = wm.start_pfn // PAGE_REPORTING_MIN_PAGES
        b = wm.end_pfn // PAGE_REPORTING_MIN_PAGES
        nfree = int(np.count_nonzero(buddy.free[wm.start_pfn:wm.end_pfn]))
        if nfree <= wm.low + PAGE_REPORTING_CAPACITY * PAGE_REPORTING_MIN_PAGES:
            whole[a:b] = False
            skipped.append(wm.name)
    discarded.reshape(-1, PAGE_REPORTING_MIN_PAGES)[whole] = True
    # free-list entries: order-10 blocks count once, lone order-9 blocks once each
    pairs = whole[: len(whole) // 2 * 2].reshape(-1, 2)
    order10 = int(np.count_nonzero(pairs.all(axis=1)))
    order9 = int(np.count_nonzero(whole)) - 2 * order10
    entries = order10 + order9
    mem.set_zero(discarded)
    return FreePageReporting(discarded=discarded, reported_blocks=entries,
                             reported_pages=int(np.count_nonzero(discarded)),
                             reports=-(-entries // PAGE_REPORTING_CAPACITY), zones_skipped=skipped)
