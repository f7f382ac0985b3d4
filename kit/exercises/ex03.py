"""Exercises for notebook 03 (patch 3: the migration bitmap at setup).

Each ``check_*`` takes the student's prediction, runs the model on the seeded
scenario and returns a :class:`~kit.exercises.Verdict`; ``*_answer()`` gives
the model's answer.  With ``prediction=None`` a check only asks for a prediction.
"""
from __future__ import annotations

from .. import scenario as _scenario
from ..migration import Migration
from ..scenario import Scenario
from ..viz.setup_view import run_counting_bulk_visits
from . import ASK, Exercises, Question, Verdict, judge_number

__all__ = ["SCENARIO", "QUESTIONS", "question", "dirty_after_setup_call_answer", "check_dirty_after_setup_call",
           "dirty_after_first_sync_answer", "check_dirty_after_first_sync",
           "bulk_visits_answer", "check_bulk_visits", "scenario", "reveal"]

SCENARIO = dict(ram="2G", machine="q35", workload="idle", seed=3)

_ASK = ASK

_GUEST = "The 2 GiB q35 guest, idle, seed 3 (with vga.vram as its second RAMBlock)"
QUESTIONS = {
    1: Question(f"{_GUEST}: right after the patched ram_save_setup, before any other setup step, "
                f"what is migration_dirty_pages?", unit="pages", integer=True, example="0"),
    2: Question(f"{_GUEST}: after the patched setup has run to its end (filter, then the first "
                f"migration_bitmap_sync), what is migration_dirty_pages?", unit="pages", integer=True),
    3: Question(f"{_GUEST}, original QEMU: how many pages does the bulk stage hand out without "
                f"reading the migration bitmap?", unit="pages", integer=True),
}


def _judge(n, prediction, answer, why, hint, mistakes=()):
    return judge_number(prediction, answer, QUESTIONS[n], why=why, hint=hint, mistakes=mistakes,
                        reveal_hint=f"ex03.reveal({n})")


def _migration(mode, scenario=SCENARIO) -> Migration:
    return _scenario.build(Scenario(**scenario, mode=mode, track_pages=True))


def _vga_slip(m, without_vga):
    """The known wrong road of leaving vga.vram out, as a ``mistakes`` entry."""
    vga = m.total_pages - m.mm.ram_pages
    return [(lambda v: bool(vga) and v == without_vga,
             f"You left out the second RAMBlock, vga.vram ({vga:,} pages): it is in the migration "
             f"bitmap too, and the free-page filter never touches it.")]


# -- exercise 1 ----------------------------------------------------------------------
def dirty_after_setup_call_answer(scenario=SCENARIO) -> int:
    """migration_dirty_pages right after the patched ram_save_setup (before any sync)."""
    m = _migration("pv", scenario)
    m.step()
    return int(m.migration_dirty_pages)


def check_dirty_after_setup_call(prediction, scenario=SCENARIO) -> Verdict:
    if prediction is None:
        return Verdict.ask(_ASK)
    answer = dirty_after_setup_call_answer(scenario)
    why = ("Patch 3 starts the count at 0 and leaves the migration bitmap empty; it marks the pages "
           "dirty in dirty_memory instead, and the first sync will fill both.")
    every = _migration("original", scenario).total_pages
    mistakes = [(lambda v: v == every,
                 "Every page is what the original ram_save_setup counts. What does patch 3 change "
                 "about the starting count?")]
    return _judge(1, prediction, answer, why, "Read what patch 3 does to the count and the bitmap "
                  "in ram_save_setup (section 1).", mistakes)


# -- exercise 2 ----------------------------------------------------------------------
def dirty_after_first_sync_answer(scenario=SCENARIO) -> int:
    """migration_dirty_pages after the pv setup (filter, then the first sync)."""
    m = _migration("pv", scenario)
    while m.phase == "setup":
        m.step()
    return int(m.migration_dirty_pages)


def check_dirty_after_first_sync(prediction, scenario=SCENARIO) -> Verdict:
    if prediction is None:
        return Verdict.ask(_ASK)
    m = _migration("pv", scenario)
    while m.phase == "setup":
        m.step()
    answer = int(m.migration_dirty_pages)
    used = int(m.guest.used_ram_pages().sum())
    why = (f"pc.ram has {m.mm.ram_pages:,} pages, {m.stats.free_skipped:,} of them free in the "
           f"guest: {used:,} used pages stay, plus {m.total_pages - m.mm.ram_pages:,} of vga.vram.")
    hint = ("The filter clears the free pages of pc.ram only; the first sync then counts what is "
            "left dirty in every RAMBlock.")
    return _judge(2, prediction, answer, why, hint, _vga_slip(m, used))


# -- exercise 3 ----------------------------------------------------------------------
def bulk_visits_answer(scenario=SCENARIO) -> int:
    """Pages the original bulk stage passes over without reading the migration bitmap."""
    return run_counting_bulk_visits(_migration("original", scenario))


def check_bulk_visits(prediction, scenario=SCENARIO) -> Verdict:
    if prediction is None:
        return Verdict.ask(_ASK)
    m = _migration("original", scenario)
    answer = run_counting_bulk_visits(m)
    why = ("The shortcut hands out every page of ram_addr space once, in order, until the "
           "search wraps around: pc.ram and vga.vram.")
    hint = "The shortcut does not care whether a page is free or zero: count the pages it walks past."
    return _judge(3, prediction, answer, why, hint, _vga_slip(m, m.mm.ram_pages))


# -- for teachers --------------------------------------------------------------------
_ANSWERS = {1: dirty_after_setup_call_answer, 2: dirty_after_first_sync_answer,
            3: bulk_visits_answer}


_EX = Exercises("ex03", QUESTIONS, _ANSWERS, {n: SCENARIO for n in _ANSWERS})


def scenario(n) -> str:
    """Exercise ``n``'s parameters (all three share one guest), one per line."""
    return _EX.scenario(n)


def question(n) -> str:
    """Exercise ``n``'s question, with its unit and how close counts."""
    return _EX.question(n)


def reveal(n):
    """The model's answer to exercise ``n``."""
    return _EX.reveal(n)
