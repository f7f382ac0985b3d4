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
from . import Verdict, check_number

__all__ = ["SCENARIO", "dirty_after_setup_call_answer", "check_dirty_after_setup_call",
           "dirty_after_first_sync_answer", "check_dirty_after_first_sync",
           "bulk_visits_answer", "check_bulk_visits", "scenario", "reveal"]

SCENARIO = dict(ram="2G", machine="q35", workload="idle", seed=3)

_ASK = "write your prediction first (the answer is hidden until you do)"


def _migration(mode, scenario=SCENARIO) -> Migration:
    return _scenario.build(Scenario(**scenario, mode=mode, track_pages=True))


def _vga_hint(m, prediction, without_vga) -> str:
    vga = m.total_pages - m.mm.ram_pages
    if vga and prediction == without_vga:
        return (f" You left out the second RAMBlock, vga.vram ({vga:,} pages): it is in the "
                f"migration bitmap too, and the free-page filter never touches it.")
    return ""


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
    v = check_number(prediction, answer, unit=" pages")
    why = (" Patch 3 starts the count at 0 and leaves the bitmap empty; the first sync will "
           "fill both.")
    if not v.correct and prediction == _migration("original", scenario).total_pages:
        why += " Every page is what the original ram_save_setup counts."
    return Verdict(v.correct, v.message + "." + why)


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
    v = check_number(prediction, answer, unit=" pages")
    used = int(m.guest.used_ram_pages().sum())
    why = (f" pc.ram has {m.mm.ram_pages:,} pages, {m.stats.free_skipped:,} of them free in the "
           f"guest: {used:,} used pages stay, plus {m.total_pages - m.mm.ram_pages:,} of vga.vram.")
    return Verdict(v.correct, v.message + "." + why + _vga_hint(m, prediction, used))


# -- exercise 3 ----------------------------------------------------------------------
def bulk_visits_answer(scenario=SCENARIO) -> int:
    """Pages the original bulk stage passes over without reading the migration bitmap."""
    return run_counting_bulk_visits(_migration("original", scenario))


def check_bulk_visits(prediction, scenario=SCENARIO) -> Verdict:
    if prediction is None:
        return Verdict.ask(_ASK)
    m = _migration("original", scenario)
    answer = run_counting_bulk_visits(m)
    v = check_number(prediction, answer, unit=" pages")
    why = (" The shortcut hands out every page of ram_addr space once, in order, until the "
           "search wraps around.")
    return Verdict(v.correct, v.message + "." + why + _vga_hint(m, prediction, m.mm.ram_pages))


# -- for teachers --------------------------------------------------------------------
_ANSWERS = {1: dirty_after_setup_call_answer, 2: dirty_after_first_sync_answer,
            3: bulk_visits_answer}


def scenario(n: int) -> str:
    """Exercise ``n``'s parameters (all three share one guest), one per line."""
    if n not in _ANSWERS:
        raise KeyError(n)
    return "\n".join(f"{k:>9}: {v}" for k, v in SCENARIO.items())


def reveal(n: int) -> int:
    """The model's answer to exercise ``n``."""
    return _ANSWERS[n]()
