"""How long things take: the few physical parameters of a migration testbed.

The page-level model (``kit.migration``) counts what happens: pages read,
proven zero, sent; bitmaps synced; free lists walked.  This module turns counts
into seconds.  Each parameter has a physical meaning and a stated source; a
preset is one testbed.

``seed-2016`` is the seed's testbed (Xeon E5-2699 v3, 10 GbE, 8 GB guest,
QEMU 2.5 era).  Which of its numbers were fitted to which of the seed's figures,
and which figures are then *predicted*, is written next to each value and
in the README; ``bench/calibrate.py`` redoes the fit from scratch.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from .errors import UnknownNameError

GBIT = 1e9 / 8


@dataclass(frozen=True)
class CostModel:
    name: str
    # the link
    wire_bytes_per_s: float              # TCP payload rate the link carries (bytes/s)
    # QEMU's migration thread
    cpu_ns_per_page: float               # read a page to prove it zero, or copy it into the stream
    setup_ms: float                      # fixed setup: thread start, bitmap allocation, stream header
    dirty_log_ns_per_backed_page: float  # dirty-log start: write-protect each page the host has backed
    sync_ns_per_page: float              # one migration_bitmap_sync, per page of RAM
    # the guest (the RFC's free-page request)
    guest_walk_ns_per_free_page: float   # set one bit per free page while walking the free lists
    guest_walk_ns_per_block: float       # visit one free-list entry (a block of 2**order pages)
    bitmap_transfer_ns_per_byte: float   # hand the bitmap to QEMU over the virtqueue
    # QEMU's migration parameters
    max_bandwidth: float | None          # migrate_set_speed in bytes/s; None: above the link rate
    downtime_limit_ms: float = 300.0     # migrate_set_downtime (QEMU 2.x default 300 ms)
    setup_ns_per_page: float = 0.0       # setup's part per page of RAM (the first sync finds every page dirty)
    # the RFC's successor, free page hinting (mode "hint", kit/hinting.py)
    hint_ns_per_block: float = 5000.0    # guest allocates and hints one 4 MiB block (QEMU clears its bits)
    hint_start_ms: float = 0.0           # from a round's start (QEMU writes the cmd id) to the first hint
    # None: QEMU's iothread applies each hint as it arrives.  A number: QEMU 7.2's migration
    # thread holds bitmap_mutex through each ram_save_iterate, so hints are applied only
    # between iterations, and this is the chance that the iothread drains its queue there
    hint_drain_chance: float | None = None
    # the same while the guest's vCPU is busy (still hinting, or a workload runs): the iothread
    # then shares the host's cores with one more busy thread.  None: as hint_drain_chance
    hint_drain_chance_busy: float | None = None
    # the guest image this testbed runs, when it is not the seed's: Workload fields
    # (boot_footprint, boot_stale_free, hog_fraction) that replace a workload's own
    guest_sizes: dict = field(default_factory=dict, compare=False)
    sources: dict = field(default_factory=dict, compare=False)

    def workload_for(self, workload):
        """``workload`` as it runs on this testbed's guest image.

        Simplification: one guest image per preset; hog_fraction and hog_unmerged_blocks
        replace only a workload that hogs at all (hog_fraction > 0)."""
        from .guest import get_workload
        w = get_workload(workload)
        sizes = dict(self.guest_sizes)
        if not w.hog_fraction:
            sizes.pop("hog_fraction", None)
            sizes.pop("hog_unmerged_blocks", None)
        return w.with_(**sizes) if sizes else w

    def guest_walk_s(self, free_pages: int, nr_blocks: int) -> float:
        return (free_pages * self.guest_walk_ns_per_free_page + nr_blocks * self.guest_walk_ns_per_block) * 1e-9

    def bitmap_transfer_s(self, nbytes: int) -> float:
        return nbytes * self.bitmap_transfer_ns_per_byte * 1e-9

    def dirty_log_start_s(self, backed_pages: int) -> float:
        return backed_pages * self.dirty_log_ns_per_backed_page * 1e-9

    def sync_s(self, pages: int) -> float:
        return pages * self.sync_ns_per_page * 1e-9

    def to_dict(self):
        return asdict(self)

    def with_(self, **changes) -> "CostModel":
        return replace(self, **changes)


# 10 GbE carrying TCP with 1500-byte frames: 1448 payload bytes (with TCP timestamps)
# per 1538 bytes on the wire (preamble, header, FCS, inter-frame gap) -> 9.41 Gbit/s.
TEN_GBE_TCP = 10 * GBIT * 1448 / 1538

PRESETS: dict[str, CostModel] = {}


def register_preset(cm: CostModel) -> CostModel:
    PRESETS[cm.name] = cm
    return cm


def get_preset(name_or_model) -> CostModel:
    if isinstance(name_or_model, CostModel):
        return name_or_model
    try:
        return PRESETS[name_or_model]
    except KeyError:
        raise UnknownNameError(f"unknown preset {name_or_model!r}; choose one of "
                               f"{', '.join(sorted(PRESETS))}") from None


# Values below marked "fit" are what kit/calibrate.py fit_seed_2016 gives (python bench/calibrate.py
# prints them; tests/test_calibrate.py checks they are exactly that, and within 0.1 % of the seed).
register_preset(CostModel(
    name="seed-2016",
    wire_bytes_per_s=TEN_GBE_TCP,
    cpu_ns_per_page=735.35,
    setup_ms=74.938,
    dirty_log_ns_per_backed_page=67.611,
    sync_ns_per_page=1.0,
    guest_walk_ns_per_free_page=9.9358,
    guest_walk_ns_per_block=0.0,
    bitmap_transfer_ns_per_byte=11.444,
    max_bandwidth=None,
    downtime_limit_ms=300.0,
    hint_ns_per_block=5000.0,
    hint_start_ms=0.0,
    sources={
        "wire_bytes_per_s": "physics: 10 GbE line rate x TCP payload share with 1500-byte frames (9.41 Gbit/s)",
        "cpu_ns_per_page": "fit: seed case 1 (idle), original, total time 1894 ms",
        "setup_ms": "fit: seed case 1 (idle), pv, total time 421 ms (jointly with the next)",
        "setup_ns_per_page": "0: the seed has one RAM size, so a per-page part of setup cannot be told "
                             "apart from the fixed part (it is in setup_ms and dirty_log_ns_per_backed_page)",
        "dirty_log_ns_per_backed_page": "fit: seed case 2 (workload), pv, total time 552 ms",
        "sync_ns_per_page": "assumed: 1 ns per page (a 2 M-page bitmap merges in about 2 ms); small either way",
        "guest_walk_ns_per_free_page": "Liang Li, 4 Mar 2016: about 20 ms to build the bitmap of an idle 8 GB guest",
        "guest_walk_ns_per_block": "not identifiable from the seed; 0 (folded into the per-page cost)",
        "bitmap_transfer_ns_per_byte": "Liang Li, 4 Mar 2016: about 3 ms to transfer the 256 KiB bitmap",
        "max_bandwidth": "the seed's 7.4 s for 8 GB implies migrate_set_speed above the link rate",
        "downtime_limit_ms": "QEMU 2.x default (max_downtime = 300 ms)",
        "hint_ns_per_block": "assumed, no source measures it: 5 us per 4 MiB block = one order-10 "
                             "allocation (~1 us) plus a virtqueue add and kick, i.e. one VM exit "
                             "(~2-4 us on Haswell/Broadwell); QEMU's iothread clears the 1024 bits "
                             "in parallel in well under 1 us. Not used by the seed's four cases; "
                             "8 GiB idle/hog hint runs move by under 6% anywhere from 1 to 20 us",
        "hint_start_ms": "assumed 0: a real guest's driver reacts to the config interrupt within "
                         "microseconds; only --mode hint uses it",
        "hint_drain_chance": "None: hints applied as they arrive. Not measured on 2016 hardware, where "
                             "the RFC ran; QEMU 7.2 would apply them only between iterations (its "
                             "bitmap_mutex), which the tcg-loopback preset measures",
        "hint_drain_chance_busy": "None: as hint_drain_chance",
    },
))



# The lab's testbed (kit/lab): QEMU 7.2 under TCG on this kind of 2-core host,
# migrating over TCP on 127.0.0.1 to a second QEMU, with the lab's busybox guest.
# Values marked "fit" come from kit/lab/model.py fit_tcg_loopback on the 1 GiB
# medians of data/lab/curves/ (python bench/calibrate_lab.py redoes it); 2, 4 and 8 GiB are
# predictions.  The hint timing is measured from QEMU's trace, not fitted.
register_preset(CostModel(
    name="tcg-loopback",
    wire_bytes_per_s=400.2e6,
    cpu_ns_per_page=0.0,
    setup_ms=0.0,
    setup_ns_per_page=2428.0,
    dirty_log_ns_per_backed_page=0.0,
    sync_ns_per_page=1.0,
    guest_walk_ns_per_free_page=9.98,
    guest_walk_ns_per_block=0.0,
    bitmap_transfer_ns_per_byte=11.44,
    max_bandwidth=None,
    downtime_limit_ms=300.0,
    hint_ns_per_block=38200.0,
    hint_start_ms=4.94,
    hint_drain_chance=0.583,
    hint_drain_chance_busy=0.3,
    guest_sizes={"boot_footprint": 19464 * 4096, "boot_stale_free": 4230 * 4096, "hog_fraction": 0.8341,
                 "hog_unmerged_blocks": 10},
    sources={
        "wire_bytes_per_s": "fit: lab 1 GiB hog, hint off, total time (loopback TCP as QEMU's "
                            "migration thread drives it beside two TCG guests on 2 cores). Mostly the "
                            "destination's first touch of each page: with its RAM preallocated the same "
                            "runs send 3-5 times as fast (data/lab/dest-prealloc)",
        "cpu_ns_per_page": "fit: lab 1 GiB idle, hint off, total time; it comes out at its floor, 0: "
                           "setup and the wire already account for the median time, so the zero-page "
                           "checks are hidden in those two (notebook 08 shows what this costs)",
        "setup_ms": "0: QEMU's setup-time grows with RAM in the lab (about 0.6 s per GiB), so all of "
                    "it is put in the per-page part",
        "setup_ns_per_page": "measured: median of QEMU's setup-time over the 1 GiB lab rows, divided by the "
                             "pages. Under TCG with the dirty-sync workaround (kit/lab/qemu.py) the first sync "
                             "finds every page dirty and resets the emulated TLB for each one",
        "dirty_log_ns_per_backed_page": "0: under TCG, starting dirty logging is part of QEMU's setup-time",
        "sync_ns_per_page": "assumed, as seed-2016: 1 ns per page",
        "guest_walk_ns_per_free_page": "not measured: QEMU has no RFC mode; the seed's value",
        "guest_walk_ns_per_block": "not measured: QEMU has no RFC mode; 0 as in seed-2016",
        "bitmap_transfer_ns_per_byte": "not measured: QEMU has no RFC mode; the seed's value",
        "max_bandwidth": "the lab sets max-bandwidth to 1 TiB/s: no limit",
        "downtime_limit_ms": "QEMU's default downtime-limit, which the lab keeps (300 ms)",
        "hint_ns_per_block": "measured, an upper bound: the guest's pace, from QEMU's trace of the 1 GiB "
                             "hint-on lab runs (kit/lab/model.py hint_timing): the fewest ms per block that "
                             "any run shows (pops so far over time since the round started). The tightest "
                             "bound comes from 1 GiB runs with max-bandwidth 10-50 MB/s (data/lab/guest-pace), "
                             "where the iothread takes hints soon after the guest queues them; their "
                             "migration thread mostly sleeps, so the guest may hint a little slower in "
                             "unlimited runs (not modelled)",
        "hint_start_ms": "measured: median over the 1 GiB hint-on lab runs of the first pop after the "
                         "first bitmap sync ends (QEMU's trace; kit/lab/model.py hint_timing)",
        "hint_drain_chance": "measured: of the gaps between two ram_save_iterate calls while hints waited, "
                             "the share where QEMU's iothread drained the queue (more than three pops "
                             "together), 1 GiB hint-on lab runs (QEMU 7.2 holds bitmap_mutex through "
                             "each iteration, migration/ram.c ram_save_iterate)",
        "hint_drain_chance_busy": "measured: the same share over the 1 GiB dirtying hint-on lab runs, whose "
                                  "vCPU is busy at every gap: the iothread, the migration thread, the vCPU and "
                                  "the destination's thread then share the host's 2 cores",
        "guest_sizes.boot_footprint": "fit: MemFree of the idle 1 GiB lab guest at KIT-READY",
        "guest_sizes.boot_stale_free": "fit: lab 1 GiB idle, hint off, pages sent in full",
        "guest_sizes.hog_fraction": "fit: lab 1 GiB hog, hint off, pages sent in full "
                                    "(kitmem hog fills 90 % of MemAvailable)",
        "guest_sizes.hog_unmerged_blocks": "measured: the 1 GiB hog guest hints 10 fewer 4 MiB blocks than the "
                                           "idle one (lab medians of pages skipped, hint on), and sends 40 MiB "
                                           "more; which kernel pages keep those blocks from merging is not known",
    },
))
