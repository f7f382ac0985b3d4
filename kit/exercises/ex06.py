"""Exercises for notebook 06 (races and correctness).

Every scenario is seeded (seed 0, ``pc`` machine) and each check runs the model
to get the answer; ``question(n)`` prints the question with its unit and
tolerance, ``reveal(n)`` returns the answer.

1. The wrong order on the notebook's 2 GiB ``dirtying`` guest, with the churn
   raised to 16,384 pages/s: how many pages are lost?
2. A lying guest (2 GiB ``dirtying``, 2 % of its used pages reported free): how
   many pages does it lose that it did *not* lie about?
3. A slow guest with a bounded wait of 100 ms (1 GiB ``hog``): up to which walk
   cost (ns per free page) does the filter still get its bitmap?
"""
from __future__ import annotations

from . import Exercises, Question, Verdict, judge_number
from .. import dma
from ..costmodel import get_preset
from ..guest import get_workload
from ..scenario import run
from ..viz.races import RIGHT, WRONG, make_race

SEED = 0

QUESTIONS = {
    1: Question("The 2 GiB dirtying guest (seed 0) in the wrong order, allocating 16,384 fresh pages "
                "a second instead of 1,024: how many pages are lost?", unit="pages", rel=0.15,
                example="400"),
    2: Question("A 2 GiB dirtying guest (seed 0), in the right order, lies about 2 % of its used "
                "pages: how many pages does it lose that it did not lie about "
                "(lost-outside-lied-pages)?", unit="pages", integer=True, example="0"),
    3: Question("The 1 GiB hog guest (seed 0) with a bounded wait of 100 ms: up to which walk cost, "
                "in ns per free page, does the bitmap still arrive in time?", unit="ns", rel=0.10,
                example="500"),
    4: Question("A 1 GiB idle guest (seed 0) reads its disk into the page cache at 32 MiB/s through an "
                "emulated device, and its free-list walk costs 300 ns per free page: how many pages "
                "does the RFC's filter lose?", unit="pages", rel=0.15, example="1000"),
}

# Exercise 1 ------------------------------------------------------------------
EX1_RAM, EX1_CHURN = "2G", 16384.0


def wrong_order_lost(churn: float = EX1_CHURN, ram: str = EX1_RAM) -> int:
    """Lost pages of the wrong order on the ``dirtying`` guest with ``churn`` pages/s."""
    w = get_workload("dirtying").with_(churn_rate=float(churn))
    m = make_race(ram, w, WRONG, seed=SEED, track_pages=False)
    m.run()
    return m.verify_result["lost-pages"]


def check_wrong_order_loss(prediction) -> Verdict:
    """Lost pages in the wrong order at 16,384 pages/s: right within 15 %."""
    why = ("In the wrong order the guest takes its snapshot before the dirty log starts. A page "
           "allocated and written in that gap is marked free in the bitmap and never logged, so it "
           "is skipped and lost: the loss is the churn rate times the gap.")
    mistakes = [(lambda v: v == 0, "In the wrong order nothing catches a page written between the "
                                   "snapshot and the start of the log.")]
    return judge_number(prediction, wrong_order_lost(), QUESTIONS[1], why=why, mistakes=mistakes,
                        hint="Pages allocated per second times the length of the gap, in seconds.",
                        reveal_hint="ex06.reveal(1)")


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
    """Pages lost outside the lie: exact."""
    if prediction is None:
        return judge_number(None, 0, QUESTIONS[2])
    v = lying_guest_verify()
    why = (f"A lie can only hide the pages it names: every other page is still in the migration "
           f"bitmap or in the dirty log. It lied about {v['lied-pages']:,} pages and lost "
           f"{v['lost-pages']:,} of them; the rest were written again after the log started, and "
           f"resent.")
    return judge_number(prediction, v["lost-outside-lied-pages"], QUESTIONS[2], why=why,
                        hint="Which pages can a false 'free' bit hide, and which ones does the dirty "
                             "log still catch?", reveal_hint="ex06.reveal(2)")


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
    """The slowest walk (ns per free page) that still beats the 100 ms wait: right within 10 %."""
    why = ("The wait gives up after 100 ms, and the walk takes its cost times the free pages; the "
           "bitmap hand-over and the 1 ms polls take a little of the 100 ms as well, so the limit "
           "is a bit under 100 ms divided by the free pages.")
    return judge_number(prediction, slowest_walk_ns(), QUESTIONS[3], why=why,
                        hint="100 ms, in ns, shared among the guest's free pages.",
                        reveal_hint="ex06.reveal(3)")


# Exercise 4 ------------------------------------------------------------------
EX4_RAM, EX4_MIB_S, EX4_WALK_NS = "1G", 32.0, 300.0


def disk_read_lost(mib_s: float = EX4_MIB_S, walk_ns: float = EX4_WALK_NS, ram: str = EX4_RAM) -> int:
    """Pages the RFC's filter loses on an idle guest whose disk fills ``mib_s`` of page cache."""
    r = run(dma.disk_reader(mib_s, walk_ns=walk_ns, ram=ram, seed=SEED))
    return r.stats["verify"]["lost-pages"]


def check_disk_read_loss(prediction) -> Verdict:
    """Pages lost to device writes during the RFC's wait: right within 15 %."""
    why = ("A device write during the wait sets its page's bit in dirty_memory at once, and the "
           "filter then overwrites those bits with the complement of the free bitmap. A page that "
           "was free at the snapshot and filled by the disk meanwhile loses its bit: the loss is the "
           "read rate (in pages per second) times the time from the snapshot to the filter.")
    mistakes = [(lambda v: v == 0, "The dirty log starts first, but these writes are not the vCPU's: "
                                   "they reach dirty_memory before the filter, which erases them.")]
    return judge_number(prediction, disk_read_lost(), QUESTIONS[4], why=why, mistakes=mistakes,
                        hint="32 MiB/s is 8,192 pages a second; how long is the wait?",
                        reveal_hint="ex06.reveal(4)")


_EX = Exercises("ex06", QUESTIONS, {1: wrong_order_lost, 2: lost_outside_lie, 3: slowest_walk_ns,
                                    4: disk_read_lost})


def reveal(n):
    """The model's answer to exercise ``n`` (1 to 4)."""
    return _EX.reveal(n)


def question(n):
    """Exercise ``n``'s question, with its unit and how close counts."""
    return _EX.question(n)
