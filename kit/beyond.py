"""Beyond the RFC (notebook 07): the reviewers' questions and the successor designs, as numbers.

The review of March 2016 asked questions the RFC's cover letter did not answer
(docs/sources.md, "The review").  Some of them the page model can answer directly;
for the others this module computes what it can and says what it leaves out.

* **Inflate the balloon instead** (Roman Kagan): :func:`balloon_instead`
  inflates the balloon of a model guest, so the host discards the pages, and
  migrates it with original QEMU.  The inflate time is Liang Li's own figure.
* **pagemap** (Dave Gilbert): :func:`pagemap_counts` says which pages QEMU
  could skip by reading its own ``/proc/self/pagemap`` (pages the host never
  backed), and :func:`pagemap_estimate` turns that into a time with
  :func:`send_estimate_s`, a per-page estimate checked against the model.
* **Bitmap size at 1 TiB**: :func:`bitmap_sizes`, by arithmetic only (no
  1 TiB guest is built).
* **Post-copy** (Dave Gilbert): :func:`postcopy_split` runs pre-copy up to a
  switch-over time and counts what post-copy would still have to move, with and
  without knowing which pages are free.
* **The successors**: :func:`compare` runs the four modes of
  :mod:`kit.migration` (original, pv, hint, report) on one guest, and
  :func:`wei_wang_rows` puts the model beside Wei Wang's published runs
  (:data:`WEI_WANG`).

Everything is seeded (seed 0, ``pc`` machine, ``seed-2016`` cost model unless
told otherwise), so the same call gives the same numbers.  Every run is a
:class:`kit.scenario.Scenario` run by :func:`kit.scenario.run` (cached there, by
the whole scenario value).  Model modules only: no matplotlib, no widgets.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bitmap import bitmap_bytes
from .costmodel import CostModel, get_preset
from .guest import MAX_ORDER, Guest, get_workload
from .hinting import HINT_BLOCK_PAGES
from .memmap import pc_memory_map
from .migration import MODES, NORMAL_PAGE_BYTES, ZERO_PAGE_BYTES, Migration
from .reporting import PAGE_REPORTING_CAPACITY, PAGE_REPORTING_DELAY_S, PAGE_REPORTING_MIN_PAGES
from . import scenario as _scenario
from .scenario import Scenario, run
from .units import GiB, TARGET_PAGE_SIZE, parse_size

PRESET = "seed-2016"
MACHINE = "pc"
SEED = 0
FIRMWARE_FRAMES = 256            # kit.guest: the first MiB is never given to the buddy allocator
BUDDY_MAX_BLOCK_BYTES = (1 << (MAX_ORDER - 1)) * TARGET_PAGE_SIZE    # order 10: 4 MiB on x86-64


def _ram_bytes(ram) -> int:
    return parse_size(ram, what="ram") if isinstance(ram, str) else int(ram)


def scenario(ram="8G", workload="idle", mode="original", *, preset=PRESET, **kw) -> Scenario:
    """This module's scenario: a seeded ``pc`` guest on ``preset`` (``kw``: other Scenario fields)."""
    kw.setdefault("seed", SEED)
    return Scenario(ram=_ram_bytes(ram), workload=workload, mode=mode, machine=MACHINE,
                    cost=get_preset(preset), **kw)


def _guest(ram, workload, seed=SEED) -> Guest:
    return _scenario.guest(scenario(ram, workload, seed=seed))


def _cost(preset=PRESET, downtime_limit_ms=None) -> CostModel:
    cm = get_preset(preset)
    if downtime_limit_ms is not None:
        cm = cm.with_(name=f"{cm.name}, downtime {downtime_limit_ms:g} ms",
                      downtime_limit_ms=float(downtime_limit_ms))
    return cm


# ---------------------------------------------------------------------------- one run
def make(ram="8G", workload="idle", mode="original", *, preset=PRESET, track_pages=True,
         **kw) -> Migration:
    """A seeded guest and a Migration of it in ``mode`` (nothing has run yet)."""
    return _scenario.build(scenario(ram, workload, mode, preset=preset, track_pages=track_pages, **kw))


def summarize(m) -> dict:
    """The numbers the notebook shows for one finished migration or :class:`~kit.scenario.Result`
    (a plain dict)."""
    s = m.query_migrate() if isinstance(m, Migration) else m.stats
    ram = s["ram"]
    out = {"mode": s["mode"], "status": s["status"], "total-ms": s["total-time"],
           "setup-ms": s["setup-time"], "downtime-ms": s["downtime"],
           "transferred": ram["transferred"], "duplicate": ram["duplicate"],
           "normal": ram["normal"], "free-skipped": ram["free-skipped"],
           "dirty-sync-count": ram["dirty-sync-count"], "breakdown-ms": dict(s["breakdown-ms"]),
           "hinted-blocks": 0, "hint-rounds": 0, "reported-pages": 0}
    if "free-page-hint" in s:
        out["hinted-blocks"] = s["free-page-hint"]["blocks-hinted"]
        out["hint-rounds"] = s["free-page-hint"]["rounds"]
    if "free-page-reporting" in s:
        out["reported-pages"] = s["free-page-reporting"]["reported-pages"]
    return out


def run_point(ram="8G", workload="idle", mode="original", *, preset=PRESET,
              downtime_limit_ms=None) -> dict:
    """Migrate a seeded ``pc`` guest once (cached by :func:`kit.scenario.run`); :func:`summarize`'s dict."""
    return summarize(run(scenario(ram, workload, mode, preset=_cost(preset, downtime_limit_ms),
                                  track_pages=False)))


def compare(ram="8G", workload="idle", modes=MODES, **kw) -> dict:
    """``{mode: run_point(...)}`` for each mode on the same guest: the successors side by side."""
    return {mode: run_point(ram, workload, mode, **kw) for mode in modes}


def saving(base: dict, other: dict, key="total-ms") -> float:
    """The share of ``base[key]`` that ``other`` saves (0.79 = 79 % less)."""
    return 1.0 - other[key] / base[key]


# ---------------------------------------------------------------------------- a per-page estimate
def send_estimate_s(normal_pages: int, zero_pages: int, cost: CostModel | str = PRESET) -> float:
    """Seconds the migration thread needs to send ``normal_pages`` full pages and read
    ``zero_pages`` pages that turn out zero.

    Each page costs the larger of its CPU time and its wire time, as a batch does in
    :mod:`kit.migration`: a full page is wire-bound on 10 GbE (4104 bytes take 3.5 us,
    the CPU 0.76 us), a zero page CPU-bound (9 bytes).  Simplification: per page, not per
    batch, so it ignores a batch that mixes both kinds.  Within a few per cent of the
    model on the seed's runs (tests/test_beyond.py).
    """
    cm = get_preset(cost)
    cpu = cm.cpu_ns_per_page * 1e-9
    return (normal_pages * max(cpu, NORMAL_PAGE_BYTES / cm.wire_bytes_per_s)
            + zero_pages * max(cpu, ZERO_PAGE_BYTES / cm.wire_bytes_per_s))


def fixed_ms(run: dict) -> float:
    """The part of a run that is not sending pages: setup, dirty-log start, syncs, waits."""
    return sum(v for k, v in run["breakdown-ms"].items() if not k.startswith("send-"))


def estimate_ms(run: dict, cost: CostModel | str = PRESET) -> float:
    """:func:`send_estimate_s` applied to a run's own page counts, plus its fixed part."""
    return fixed_ms(run) + 1000 * send_estimate_s(run["normal"], run["duplicate"], cost)


# ---------------------------------------------------------------------------- 1. inflate the balloon
# Liang Li, 4 Mar 2016 (docs/sources.md#liang-replies): inflating the balloon of an 8 GB guest down to 1 GB took
# about 5 s (7 GiB).  Liang Li's later "fast balloon" patches, reposted by Wei Wang as v12
# (Jul 2017, VIRTIO_BALLOON_F_SG): 7 GB of an 8 GB guest in about 491 ms instead of 4126 ms.
INFLATE_S_PER_GIB = {"2016": 5.0 / 7, "2017-sg": 0.491 / 7}
INFLATE_SOURCES = {
    "2016": "Liang Li, 4 Mar 2016: about 5 s to inflate an 8 GB guest's balloon down to 1 GB",
    "2017-sg": "virtio-balloon v12 (Jul 2017, VIRTIO_BALLOON_F_SG): 7 GB of an 8 GB guest in about 491 ms",
}


def inflate_balloon(guest: Guest, target_bytes: int) -> np.ndarray:
    """Inflate ``guest``'s balloon until the guest keeps ``target_bytes`` of RAM (or all it can give).

    :meth:`kit.guest.Guest.inflate_balloon`, which a scenario's ``balloon_target`` uses: the
    balloon driver allocates free pages and tells the host, which discards them
    (``MADV_DONTNEED``).  In the model: the pages leave the buddy allocator, read as zero and
    are no longer backed by the host (write version 0).  Returns a frame mask of the balloon.
    """
    return guest.inflate_balloon(target_bytes)


_BALLOONED: dict = {}          # Scenario.key() -> pages the balloon took


def _ballooned_pages(s: Scenario) -> int:
    key = s.key()
    if key not in _BALLOONED:
        _BALLOONED[key] = int(np.count_nonzero(_scenario.guest(s).balloon_frames))
    return _BALLOONED[key]


def balloon_instead(ram="8G", workload="hog", target="1G", speed="2016", preset=PRESET) -> dict:
    """Roman Kagan's alternative: inflate the balloon to ``target``, then migrate with original QEMU.

    Returns the inflate time (``speed``: a key of :data:`INFLATE_S_PER_GIB`), the migration
    (ballooned pages read as zero: 9 bytes each on the wire, but still read by QEMU 2.5),
    their sum, and the pages the balloon took.  The deflate on the destination comes after
    switch-over and is not counted; the guest lives without that memory meanwhile.
    """
    s = scenario(ram, workload, "original", preset=preset, track_pages=False,
                 balloon_target=_ram_bytes(target))
    r = summarize(run(s))
    pages = _ballooned_pages(s)
    inflate_ms = 1000 * INFLATE_S_PER_GIB[speed] * pages * TARGET_PAGE_SIZE / GiB
    return {"ballooned-pages": pages, "ballooned-gib": pages * TARGET_PAGE_SIZE / GiB,
            "inflate-ms": inflate_ms, "migrate-ms": r["total-ms"], "total-ms": inflate_ms + r["total-ms"],
            "transferred": r["transferred"], "run": r, "speed": speed}


# ---------------------------------------------------------------------------- 2. pagemap
def pagemap_counts(ram="8G", workload="idle") -> dict:
    """What QEMU would read in ``/proc/self/pagemap`` for the guest's RAM, by the guest's page class.

    A guest page the host never backed (never written, or discarded) is "not present" (bit 63
    clear); QEMU may skip it, since the destination's fresh RAM is zero too.  A page that was
    written is present, whether the guest still uses it or has freed it.  Counts over pc.ram:
    ``not-present``, ``present``, and the guest's free pages split the same way
    (``free-not-present``: what pagemap finds of the free memory; ``free-present``: what it
    misses).  Assumes guest RAM is plain anonymous memory, not preallocated, no huge pages.
    """
    g = _guest(ram, workload)
    mem = g.memory
    backed = mem.to_ram_order(mem.version != 0)
    free = mem.to_ram_order(g.buddy.free)
    zero = mem.to_ram_order(mem.zero)
    return {"ram-pages": int(len(backed)), "not-present": int(np.count_nonzero(~backed)),
            "present": int(np.count_nonzero(backed)), "free": int(np.count_nonzero(free)),
            "free-not-present": int(np.count_nonzero(free & ~backed)),
            "free-present": int(np.count_nonzero(free & backed)),
            "present-zero": int(np.count_nonzero(backed & zero)),
            "present-nonzero": int(np.count_nonzero(backed & ~zero))}


def pagemap_estimate(ram="8G", workload="idle", preset=PRESET) -> dict:
    """Gilbert's pagemap idea as a time: original QEMU that skips every page the host never backed.

    An estimate, not a run: the fixed part of the original run plus :func:`send_estimate_s`
    for the present pages (full pages sent, zero ones read).  Reading pagemap itself
    (8 bytes per page) is left out.  Beside it: the model's original and pv runs.
    """
    c = pagemap_counts(ram, workload)
    orig = run_point(ram, workload, "original", preset=preset)
    pv = run_point(ram, workload, "pv", preset=preset)
    est = fixed_ms(orig) + 1000 * send_estimate_s(c["present-nonzero"], c["present-zero"], preset)
    return {"counts": c, "original-ms": orig["total-ms"], "pv-ms": pv["total-ms"],
            "pagemap-ms": est, "original-check-ms": estimate_ms(orig, preset)}


# ---------------------------------------------------------------------------- 3. bitmap size
def free_pages_after_boot(ram, workload="idle") -> int:
    """Free pages of a freshly prepared model guest, by arithmetic (no guest is built).

    The same sums as :class:`kit.guest.Guest`: RAM pages, less the first MiB, ``struct page``
    (1/64 of RAM) and the boot footprint (each at most a quarter of what is free), less a
    running program's working set (at most half of what is left).  The hog's pages and the
    stale boot pages are free again.  tests/test_beyond.py checks it against real guests.
    """
    mm = pc_memory_map(_ram_bytes(ram), MACHINE)
    w = get_workload(workload)
    free = mm.ram_pages - min(FIRMWARE_FRAMES, mm.below_4g_pages)
    budget = free // 4
    free -= min(mm.ram_pages * w.memmap_bytes_per_page // TARGET_PAGE_SIZE, budget)
    free -= min(w.boot_footprint // TARGET_PAGE_SIZE, budget)
    if w.working_set:
        free -= min(w.working_set // TARGET_PAGE_SIZE, free // 2)
    return free


def bitmap_sizes(ram="1T", workload="idle", preset=PRESET) -> dict:
    """How big the RFC's free-page bitmap gets, and what its successors send instead, at ``ram``.

    * ``rfc-bitmap-bytes``: the guest's one bitmap, a bit per RAM page rounded up to 64-bit
      words (kernel RFC 2/2); ``rfc-bitmap-vs-max-block``: how many times the largest block
      the buddy allocator hands out in one piece (order 10, 4 MiB) it is;
    * ``rfc-walk-ms`` and ``rfc-handover-ms``: the guest's walk and the hand-over, at the
      cost model's per-free-page and per-byte rates (Liang Li's 20 ms and 3 ms at 8 GB),
      both spent while migration waits;
    * ``hint-blocks``: free 4 MiB blocks at most (free pages / 1024), one hint each;
      ``hint-ms``: at the model's assumed 5 us a block, spent *while* RAM is sent;
    * ``report-entries`` / ``reports``: free blocks of 2 MiB or more, at most, and the
      reports of 32 they need (an order-10 block counts once, so this is a range);
    * ``qemu-bitmap-bytes``: QEMU's own migration bitmap, which it has in every design.
    """
    cm = get_preset(preset)
    mm = pc_memory_map(_ram_bytes(ram), MACHINE)
    free = free_pages_after_boot(ram, workload)
    rfc = bitmap_bytes(mm.ram_pages)
    hint_blocks = free // HINT_BLOCK_PAGES
    entries_min = hint_blocks                              # all in order-10 blocks
    entries_max = free // PAGE_REPORTING_MIN_PAGES         # all in lone order-9 blocks
    return {"ram-pages": mm.ram_pages, "free-pages": free,
            "rfc-bitmap-bytes": rfc, "rfc-bitmap-vs-max-block": rfc / BUDDY_MAX_BLOCK_BYTES,
            "rfc-walk-ms": 1000 * cm.guest_walk_s(free, 0), "rfc-handover-ms": 1000 * cm.bitmap_transfer_s(rfc),
            "hint-blocks": hint_blocks, "hint-ms": hint_blocks * cm.hint_ns_per_block * 1e-6,
            "report-entries": (entries_min, entries_max),
            "reports": (-(-entries_min // PAGE_REPORTING_CAPACITY), -(-entries_max // PAGE_REPORTING_CAPACITY)),
            "report-every-s": PAGE_REPORTING_DELAY_S,
            "qemu-bitmap-bytes": bitmap_bytes(mm.ram_pages)}


# ---------------------------------------------------------------------------- 4. post-copy
def postcopy_split(ram="8G", workload="hog", mode="original", switch_ms=500.0, preset=PRESET) -> dict:
    """Pre-copy in ``mode`` until ``switch_ms``, then post-copy: what is left to move, and how.

    Counts the pages of pc.ram still due at switch-over, by the guest's class (used, free
    with stale data, free and zero), and the bytes and seconds (:func:`send_estimate_s`) to
    move them in post-copy **without** free-page information (every page due must reach the
    destination) and **with** it (only used pages; the free ones become zero pages there).
    ``skipped-free`` are the pages pre-copy already skipped as free (pv, hint): post-copy's
    destination must be told they are free, or a fault on one asks the source for a page it
    will never send.  ``used-due`` bounds the pages fetched on a fault.

    Simplification: the guest running on the destination is not modelled: each page due is
    counted once, pushed in the background or fetched on a fault, and fault latency is left out.
    """
    cm = get_preset(preset)
    m = _scenario.build(scenario(ram, workload, mode, preset=cm, track_pages=False))
    m.run(until=switch_ms / 1000)
    g = m.guest
    done = m.done
    n = m.mm.ram_pages
    due = m.bmap[:n].copy() if not done else np.zeros(n, bool)
    mem = g.memory
    free = mem.to_ram_order(g.buddy.free)
    zero = mem.to_ram_order(mem.zero)
    used_due = due & ~free
    stale_due = due & free & ~zero
    zero_due = due & free & zero
    used_normal = int(np.count_nonzero(used_due & ~zero))
    used_zero = int(np.count_nonzero(used_due & zero))
    n_stale, n_zero = int(np.count_nonzero(stale_due)), int(np.count_nonzero(zero_due))
    no_info_bytes = (used_normal + n_stale) * NORMAL_PAGE_BYTES + (used_zero + n_zero) * ZERO_PAGE_BYTES
    info_bytes = used_normal * NORMAL_PAGE_BYTES + used_zero * ZERO_PAGE_BYTES
    return {"mode": mode, "switch-ms": (m.total_time if done else m.now) * 1000,
            "completed-before-switch": done,
            "before-bytes": m.stats.transferred, "used-due": int(np.count_nonzero(used_due)),
            "free-stale-due": n_stale, "free-zero-due": n_zero, "skipped-free": m.stats.free_skipped,
            "after-bytes-no-info": no_info_bytes, "after-bytes-with-info": info_bytes,
            "after-ms-no-info": 1000 * send_estimate_s(used_normal + n_stale, used_zero + n_zero, cm),
            "after-ms-with-info": 1000 * send_estimate_s(used_normal, used_zero, cm)}


# ---------------------------------------------------------------------------- 5. Wei Wang's runs
@dataclass(frozen=True)
class PublishedRun:
    """One of Wei Wang's published comparisons: idle guest, with and without free page hinting."""
    series: str
    ram_gib: int
    downtime_ms: int
    hint_ms: int
    legacy_ms: int
    source: str


# docs/sources.md#hinting-kernel: host E5-2699 v4, guest 4 vCPU, migrate_set_speed 100G; "GB" read as GiB.
_V30 = "https://lists.oasis-open.org/archives/virtio-dev/201804/msg00256.html"
_V37 = "20181024205759-mutt-send-email-mst@kernel.org"
WEI_WANG = (
    PublishedRun("v30 (Apr 2018)", 8, 2000, 271, 1769, _V30),
    PublishedRun("v34", 8, 2000, 284, 1757, "v34 cover letter (docs/sources.md#hinting-kernel)"),
    PublishedRun("v36", 8, 2000, 409, 1757, "v36 cover letter (docs/sources.md#hinting-kernel)"),
    PublishedRun("v37 (Aug 2018)", 8, 400, 620, 2970, _V37),
    PublishedRun("v37 (Aug 2018)", 128, 400, 5294, 41651, _V37),
)


def wei_wang_rows(runs=WEI_WANG, preset=PRESET) -> list[dict]:
    """Each published run beside the model's idle guest of that size, original and hint.

    The model runs with the published downtime limit (``downtime_limit_ms``) but otherwise
    on the ``seed-2016`` testbed (10 GbE, Liang Li's CPU cost per page): Wei Wang's link
    speed is not in the sources.
    """
    rows = []
    for p in runs:
        o = run_point(p.ram_gib * GiB, "idle", "original", preset=preset, downtime_limit_ms=p.downtime_ms)
        h = run_point(p.ram_gib * GiB, "idle", "hint", preset=preset, downtime_limit_ms=p.downtime_ms)
        rows.append({"series": p.series, "ram-gib": p.ram_gib, "downtime-ms": p.downtime_ms,
                     "published-hint-ms": p.hint_ms, "published-legacy-ms": p.legacy_ms,
                     "published-saving": 1 - p.hint_ms / p.legacy_ms,
                     "model-hint-ms": h["total-ms"], "model-legacy-ms": o["total-ms"],
                     "model-saving": 1 - h["total-ms"] / o["total-ms"], "source": p.source})
    return rows


def seconds_per_gib(ms: float, ram_gib: float) -> float:
    return ms / 1000 / ram_gib


__all__ = ["PRESET", "MACHINE", "SEED", "BUDDY_MAX_BLOCK_BYTES", "scenario", "make", "summarize", "run_point", "compare",
           "saving", "send_estimate_s", "fixed_ms", "estimate_ms", "INFLATE_S_PER_GIB",
           "INFLATE_SOURCES", "inflate_balloon", "balloon_instead", "pagemap_counts",
           "pagemap_estimate", "free_pages_after_boot", "bitmap_sizes", "postcopy_split",
           "PublishedRun", "WEI_WANG", "wei_wang_rows", "seconds_per_gib"]
