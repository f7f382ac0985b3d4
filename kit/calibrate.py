"""Fit the ``seed-2016`` preset and the boot-time guest sizes to the seed's table.

What is fitted to what (everything else is fixed from physics or a stated source):

====================================  ==========================================
parameter                             fitted to
====================================  ==========================================
Workload.boot_footprint               idle, pv, transferred KB (used pages)
Workload.boot_stale_free              idle, original, transferred KB (all non-zero)
hog's hog_fraction                    workload, original, transferred KB
CostModel.cpu_ns_per_page             idle, original, total time
CostModel.setup_ms                    idle, pv, total time  } solved
CostModel.dirty_log_ns_per_backed...  workload, pv, total time  } together
CostModel.guest_walk_ns_per_free_page Liang Li: ~20 ms to build an idle 8 GB guest's bitmap
CostModel.bitmap_transfer_ns_per_byte Liang Li: ~3 ms to hand over the 256 KiB bitmap
====================================  ==========================================

Predicted, not fitted: workload/original total time and workload/pv transferred
KB (and everything at other sizes, links and workloads).

The fit runs the model itself (no separate formula that could drift from it):
a few Newton steps with finite differences.  ``python bench/calibrate.py``
prints the result; the numbers are then written into ``kit/costmodel.py`` and
``kit/guest/workloads.py`` and a test checks that they still are the fit.
"""
from __future__ import annotations

import numpy as np

from .stats import solve
from .costmodel import get_preset
from .guest import get_workload
from .memmap import pc_memory_map
from .reference import (SEED_2016, SEED_2016_BITMAP_BUILD_MS, SEED_2016_BITMAP_TRANSFER_MS,
                        SEED_2016_RAM)
from .bitmap import bitmap_bytes
from .scenario import Scenario, guest, run
from .units import TARGET_PAGE_SIZE, parse_size

_PAGE_DELTA = 4104 - 9       # bytes one page more or less non-zero changes


def _seed(workload, mode):
    return next(r for r in SEED_2016 if r["workload"] == workload and r["mode"] == mode)


def _scenario(workload, cost, mode="original", machine="pc") -> Scenario:
    return Scenario(ram=parse_size(SEED_2016_RAM), workload=workload, mode=mode, machine=machine,
                    cost=cost, seed=0, track_pages=False)


def _run(workloads, cost, workload, mode, machine="pc"):
    return run(_scenario(workloads[workload], cost, mode, machine)).stats


def _kb(stats):
    return stats["ram"]["transferred"] / 1024


def _round_pages(nbytes):
    return int(round(nbytes / TARGET_PAGE_SIZE)) * TARGET_PAGE_SIZE


def fit_seed_2016(start_cost="seed-2016", rounds=3):
    """Return ``(cost_model, {"idle": Workload, "hog": Workload})`` fitted to the seed."""
    cost = get_preset(start_cost)
    wl = {"idle": get_workload("idle"), "hog": get_workload("hog")}

    def set_boot(footprint, stale):
        for k in wl:
            wl[k] = wl[k].with_(boot_footprint=_round_pages(footprint), boot_stale_free=_round_pages(stale))

    # Liang Li's two figures fix the guest side of the request.
    mm = pc_memory_map(parse_size(SEED_2016_RAM))
    idle_guest = guest(_scenario(wl["idle"], cost))
    cost = cost.with_(
        guest_walk_ns_per_free_page=SEED_2016_BITMAP_BUILD_MS * 1e6 / idle_guest.buddy.nr_free_pages,
        bitmap_transfer_ns_per_byte=SEED_2016_BITMAP_TRANSFER_MS * 1e6 / bitmap_bytes(mm.ram_pages))

    # 1. bytes: boot sizes and the hog's share
    for _ in range(rounds):
        fp, st = wl["idle"].boot_footprint, wl["idle"].boot_stale_free
        d = (_seed("idle", "original")["transferred-kb"] - _kb(_run(wl, cost, "idle", "original"))) * 1024
        st += d / _PAGE_DELTA * TARGET_PAGE_SIZE
        set_boot(fp, st)
        d = (_seed("idle", "pv")["transferred-kb"] - _kb(_run(wl, cost, "idle", "pv"))) * 1024
        moved = d / _PAGE_DELTA * TARGET_PAGE_SIZE     # used pages up, stale free pages down
        set_boot(fp + moved, st - moved)
        free = guest(_scenario(wl["idle"], cost)).buddy.nr_free_pages
        d = (_seed("hog", "original")["transferred-kb"] - _kb(_run(wl, cost, "hog", "original"))) * 1024
        frac = min(1.0, max(0.0, wl["hog"].hog_fraction + d / _PAGE_DELTA / free))
        wl["hog"] = wl["hog"].with_(hog_fraction=round(frac, 5))

    # 2. times: three parameters, three figures
    names = ("cpu_ns_per_page", "setup_ms", "dirty_log_ns_per_backed_page")
    targets = (("idle", "original"), ("idle", "pv"), ("hog", "pv"))
    want = np.array([_seed(w, m)["total-time-ms"] for w, m in targets], float)

    def times(c):
        return np.array([_run(wl, c, w, m)["total-time"] for w, m in targets], float)

    for _ in range(rounds):
        x = np.array([getattr(cost, n) for n in names], float)
        base = times(cost)
        jac = np.empty((3, 3))
        for j, n in enumerate(names):
            h = max(abs(x[j]) * 0.05, 1.0)
            jac[:, j] = (times(cost.with_(**{n: x[j] + h})) - base) / h
        x = np.maximum(x + np.array(solve(jac.tolist(), (want - base).tolist())), 0.0)
        cost = cost.with_(**{n: float(round(v, 1)) for n, v in zip(names, x)})
    return cost, wl
