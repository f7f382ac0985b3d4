"""Exercises for notebook 06 (races and correctness).

Every scenario is seeded (seed 0, ``pc`` machine) and each check runs the model
to get the answer; ``reveal(n)`` returns it.

1. The wrong order on the notebook's 2 GiB ``dirtying`` guest, with the churn
   raised to 16,384 pages/s: how many pages are lost?
2. A lying guest (2 GiB ``dirtying``, 2 % of its used pages reported free): how
   many pages does it lose that it did *not* lie about?
3. A slow guest with a bounded wait of 100 ms (1 GiB ``hog``): up to which walk
   cost (ns per free page) does the filter still get its bitmap?
4. A 1 GiB guest reading its disk at 32 MiB/s through an emulated device, walking
   its free lists at 300 ns per free page: how many pages does the RFC's filter lose?
"""
from __future__ import annotations

from . import Verdict, check_number
from .. import dma
from ..costmodel import get_preset
from ..scenario import run
from ..guest import get_workload
from ..viz.races import RIGHT, WRONG, make_race

SEED = 0

# Exercise 1 ------------------------------------------------------------------
EX1_RAM, EX1_CHURN = "2G", 16384.0


def wrong_order_lost(churn: float = EX1_CHURN, ram: str = EX1_RAM) -> int:
    """Lost pages of the wrong order on the ``dirtying`` guest with ``churn`` pages/s."""
    w = get_workload("dirtying").with_(churn_rate=float(churn))
    m = make_race(ram, w, WRONG, seed=SEED, track_pages=False)
    m.run()
    return m.verify_result["lost-pages"]


def check_wrong_order_loss(prediction) -> Verdict:
    """Right within 15 %."""
    return check_number(prediction, wrong_order_lost(), rel=0.15, unit=" pages")


# Exercise 2 ------------------------------------------------------------------
EX2_RAM, EX2_LIE = "2G", 0.02


def lying_guest_verify(ram: str = EX2_RAM, lie_fraction: float = EX2_LIE) -> dict:
    m = make_race(ram, "dirtying", RIGHT, seed=SEED, track_pages=False,
                  inject="guest-reports-used-pages-free", lie_fraction=lie_fraction)
    m.run()
    return m.verify_result


def lost_outside_lie() -> int:
    return lying_guest_verify()["lost-outside-lied-pages"]


def check_lost_outside_lie(prediction) -> Verdict:
    """Exact."""
    v = lying_guest_verify()
    verdict = check_number(prediction, v["lost-outside-lied-pages"], unit=" pages")
    if prediction is not None:
        verdict.message += (f". It lied about {v['lied-pages']:,} pages and lost {v['lost-pages']:,} "
                            f"of them; the rest were written again after the log started, and resent")
    return verdict


# Exercise 3 ------------------------------------------------------------------
EX3_RAM, EX3_WORKLOAD, EX3_TIMEOUT = "1G", "hog", 0.1


def _filter_used(ns: int) -> bool:
    cost = get_preset("seed-2016").with_(name=f"walk-{ns}", guest_walk_ns_per_free_page=float(ns))
    m = make_race(EX3_RAM, EX3_WORKLOAD, RIGHT, seed=SEED, preset=cost, track_pages=False,
                  free_page_wait_timeout_s=EX3_TIMEOUT)
    while m.phase == "setup" and not m.done:
        m.step()
    return m.free_pages_count is not None


def slowest_walk_ns() -> int:
    """The largest whole ns per free page for which the bounded wait still gets the bitmap."""
    lo, hi = 10, 100_000            # lo: the bitmap arrives; hi: the wait gives up
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if _filter_used(mid) else (lo, mid)
    return lo


def check_slowest_walk(prediction) -> Verdict:
    """Right within 10 %."""
    return check_number(prediction, slowest_walk_ns(), rel=0.10, unit=" ns per free page")


# Exercise 4 ------------------------------------------------------------------
EX4_RAM, EX4_MIB_S, EX4_WALK_NS = "1G", 32.0, 300.0


def disk_read_lost(mib_s: float = EX4_MIB_S, walk_ns: float = EX4_WALK_NS, ram: str = EX4_RAM) -> int:
    """Pages the RFC's filter loses on an idle guest whose disk fills ``mib_s`` of page cache."""
    r = run(dma.disk_reader(mib_s, walk_ns=walk_ns, ram=ram, seed=SEED))
    return r.stats["verify"]["lost-pages"]


def check_disk_read_loss(prediction) -> Verdict:
    """Right within 15 %.  A string such as "512" counts as the number."""
    return check_number(prediction, disk_read_lost(), rel=0.15, unit=" pages")


def reveal(n: int):
    """The model's answer to exercise ``n`` (1 to 4)."""
    return {1: wrong_order_lost, 2: lost_outside_lie, 3: slowest_walk_ns, 4: disk_read_lost}[n]()
