"""Exercises for notebook 04 (patch 4/4: the bulk-stage filter).

Every scenario is seeded (seed 0, ``pc`` machine).  Exercise 1 asks about an
**8 GiB** hog guest (the seed's size); exercises 2 and 3 use the notebook's
**2 GiB** guests.  Each check runs the model to get the answer; ``question(n)``
prints the question with its unit and tolerance, ``reveal(n)`` returns the answer.

Simulated time: ``Migration.run(until=...)`` takes **seconds**, while the
player's ``t`` slider and exercise 2 speak in **milliseconds** (500 ms is
``until=0.5``).
"""
from __future__ import annotations

from . import Exercises, Question, judge_number
from ..costmodel import get_preset
from ..units import MiB
from ..viz.player import bytes_at, make_migration, transfer_curve

RAM, SEED, MACHINE = "2G", 0, "pc"

EX1_RAM = "8G"          # the seed's guest size; the notebook shows 2 GiB (0.879)

QUESTIONS = {
    1: Question("The 8 GiB pc guest after the hog, seed 0, patched: what fraction of pc.ram's pages "
                "does the run skip as free?", unit="fraction", abs_=0.02, example="0.5"),
    2: Question("The 2 GiB pc guest after the hog, seed 0, original QEMU: how many MiB has it sent by "
                "t = 500 ms of simulated time?", unit="MiB", rel=0.10, example="300"),
    3: Question("The 2 GiB dirtying guest, seed 0, patched: how many times is migration_bitmap_sync "
                "called (dirty-sync-count)?", unit="syncs", integer=True, example="3"),
}


def _run(workload, mode):
    m = make_migration(RAM, workload, mode, seed=SEED, machine=MACHINE)
    m.run()
    return m


# Exercise 1 ------------------------------------------------------------------
def skipped_fraction(ram: str = EX1_RAM) -> float:
    """Share of pc.ram's pages the patched run skips as free (hog guest), to 3 decimals."""
    m = make_migration(ram, "hog", "pv", seed=SEED, machine=MACHINE)
    m.run()
    return round(m.stats.free_skipped / m.mm.ram_pages, 3)


def check_skipped_fraction(prediction):
    """The 8 GiB hog guest: a fraction between 0 and 1, right within 0.02."""
    answer = skipped_fraction(EX1_RAM)
    small = skipped_fraction(RAM)
    why = ("The hog's pages went back to the free lists, so nearly all of pc.ram is free; what is "
           "not is a booted kernel's fixed footprint plus struct page (1/64 of RAM). The fixed part "
           f"weighs less in a bigger guest, so the share rises from {small} at 2 GiB.")
    mistakes = [(lambda v: abs(v - small) < 0.005,
                 "That is the 2 GiB guest's share, from the table. In the 8 GiB guest the kernel's "
                 "fixed footprint is a smaller part of RAM.")]
    return judge_number(prediction, answer, QUESTIONS[1], why=why, mistakes=mistakes,
                        hint="Used = about 215 MiB + RAM/64; the rest of pc.ram is free.",
                        reveal_hint="ex04.reveal(1)")


# Exercise 2 ------------------------------------------------------------------
def original_mib_at(t_ms: float = 500.0) -> float:
    """MiB the original migration of the 2 GiB hog guest has sent by simulated time ``t_ms``."""
    return round(bytes_at(transfer_curve(_run("hog", "original")), t_ms) / MiB, 1)


def check_original_mib_at_500ms(prediction):
    """The 2 GiB hog guest, original: MiB by t = 500 ms, right within 10 %."""
    answer = original_mib_at(500.0)
    wire = get_preset("seed-2016").wire_bytes_per_s
    no_setup = wire * 0.5 / MiB
    why = ("Setup takes the first part of the 500 ms and sends nearly nothing; from then on nearly "
           "every page is full, so the link runs flat out and the MiB grow with the wire rate.")
    mistakes = [(lambda v: abs(v - no_setup) <= 0.05 * no_setup,
                 "That is the link's rate over the whole 500 ms. Setup comes first, and nothing "
                 "much is sent during it.")]
    return judge_number(prediction, answer, QUESTIONS[2], why=why, mistakes=mistakes,
                        hint="The link's rate times the time left after setup (the setup table "
                             "in section 1 gives its end for this guest).",
                        reveal_hint="ex04.reveal(2)")


# Exercise 3 ------------------------------------------------------------------
def pv_sync_rounds(workload: str = "dirtying") -> int:
    """``dirty-sync-count`` of the patched migration of the ``workload`` guest."""
    return _run(workload, "pv").stats.dirty_sync_count


def check_sync_rounds(prediction):
    """The 2 GiB dirtying guest, patched: exact, a whole number of migration_bitmap_sync calls."""
    hog = pv_sync_rounds("hog")
    why = (f"One sync in setup, then one each time the pending pages are counted below the "
           f"downtime limit, and one after the VM stops. The dirtying guest keeps writing, so "
           f"the first pass leaves work behind; the hog guest needs {hog}.")
    return judge_number(prediction, pv_sync_rounds("dirtying"), QUESTIONS[3], why=why,
                        hint="The guest keeps writing while its pages go out: how many times must "
                             "the pending pages be counted before what is left fits the downtime?",
                        reveal_hint="ex04.reveal(3)")


_EX = Exercises("ex04", QUESTIONS, {1: skipped_fraction, 2: original_mib_at, 3: pv_sync_rounds})


def reveal(n):
    """The model's answer to exercise ``n`` (1, 2 or 3)."""
    return _EX.reveal(n)


def question(n):
    """Exercise ``n``'s question, with its unit and how close counts."""
    return _EX.question(n)
