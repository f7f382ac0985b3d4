"""Exercises for notebook 02 (patch 2: the virtio-balloon device and its free-page request).

Each ``check_*`` takes the student's prediction, runs the model on the seeded
scenario and returns a :class:`~kit.exercises.Verdict`; ``*_answer()`` gives
the model's answer (for tests and for teachers).  With ``prediction=None`` a
check only asks for a prediction and runs nothing.
"""
from __future__ import annotations

import numpy as np

from .. import scenario as _scenario
from ..bitmap import bitmap_bytes
from ..memmap import pc_memory_map
from ..migration import Migration
from ..scenario import Scenario
from . import ASK, Exercises, Question, Verdict, judge_choice, judge_number

__all__ = ["SCENARIO_1", "SCENARIO_2", "SCENARIO_3", "QUESTIONS", "bitmap_bytes_answer",
           "check_bitmap_bytes", "polls_answer", "check_polls", "old_guest_return_answer",
           "check_old_guest_return", "scenario", "question", "reveal"]

SCENARIO_1 = dict(ram="4G", machine="q35", workload="idle", seed=0)
SCENARIO_2 = dict(ram="8G", machine="pc", workload="hog", seed=0)
SCENARIO_3 = dict(ram="1G", machine="pc", workload="idle", seed=0, guest_features={0, 1, 2})

_ASK = ASK

QUESTIONS = {
    1: Question("A 4 GiB q35 guest, idle, seed 0: how many bytes is the bitmap the guest sends "
                "(the third part of its reply)?", unit="bytes", integer=True),
    2: Question("An 8 GiB pc guest after the hog, seed 0: how many 1 ms polls does QEMU make, "
                "counting the one that returns 1?", unit="polls", abs_=1, integer=True, example="10"),
    3: Question("A 1 GiB guest whose kernel knows only feature bits 0 to 2: what does "
                "balloon_get_free_pages() return?", choices=(-1, 0, 1)),
}


def _migration(scenario, run_setup=True) -> Migration:
    m = _scenario.build(Scenario(**scenario, mode="pv", track_pages=True))
    while run_setup and m.phase == "setup":
        m.step()
    return m


# -- exercise 1 ----------------------------------------------------------------------
def bitmap_bytes_answer(scenario=SCENARIO_1) -> int:
    """Bytes of the bitmap the guest sends (its third reply part), from the device's log."""
    m = _migration(scenario)
    return int(m.balloon.log.filter(kind="walk")[0].detail["bitmap_bytes"])


def check_bitmap_bytes(prediction, scenario=SCENARIO_1) -> Verdict:
    if prediction is None:
        return Verdict.ask(_ASK)
    answer = bitmap_bytes_answer(scenario)
    mm = pc_memory_map(scenario["ram"], scenario["machine"])
    why = (f"The bitmap has one bit per page of pc.ram ({mm.ram_pages:,} pages), rounded up "
           f"to whole 64-bit words; 8 bits make a byte.")
    mistakes = [(lambda v: v == bitmap_bytes(mm.max_pfn),
                 "You counted every frame up to max_pfn, hole included. The guest shifts frames "
                 "above 4 GiB down by the hole, using the low_mem QEMU sent (patch 1), so the hole "
                 "costs no bits.")]
    return judge_number(prediction, answer, QUESTIONS[1], why=why, mistakes=mistakes,
                        hint="One bit per page of pc.ram: how many pages, and how many bits in a byte?",
                        reveal_hint="ex02.reveal(1)")


# -- exercise 2 ----------------------------------------------------------------------
def polls_answer(scenario=SCENARIO_2) -> int:
    """How many 1 ms polls ram_save_setup makes until balloon_get_free_pages returns 1."""
    m = _migration(scenario)
    return int(next(e["polls"] for e in m.timeline if e["kind"] == "free-pages-done"))


def check_polls(prediction, scenario=SCENARIO_2) -> Verdict:
    if prediction is None:
        return Verdict.ask(_ASK)
    m = _migration(scenario)
    answer = int(next(e["polls"] for e in m.timeline if e["kind"] == "free-pages-done"))
    walk = m.balloon.log.filter(kind="walk")[0].detail
    why = (f"The guest walks {walk['free_count']:,} free pages in {walk['cost_s'] * 1e3:.2f} ms and "
           f"hands over {walk['bitmap_bytes']:,} bytes in {walk['transfer_s'] * 1e3:.2f} ms; QEMU "
           f"sleeps 1 ms between polls, so the poll after the reply lands is number {answer}.")
    hint = ("Add the walk (ns per free page times the free pages) and the hand-over (ns per byte "
            "times the bitmap's bytes), then count the 1 ms sleeps that fit before the reply is in.")
    return judge_number(prediction, answer, QUESTIONS[2], why=why, hint=hint,
                        reveal_hint="ex02.reveal(2)")


# -- exercise 3 ----------------------------------------------------------------------
def old_guest_return_answer(scenario=SCENARIO_3) -> int:
    """What balloon_get_free_pages() returns when the guest did not negotiate bit 3."""
    m = _migration(scenario, run_setup=False)
    buf = np.zeros(bitmap_bytes(m.mm.ram_pages), np.uint8)
    ret, _ = m.registry.balloon_get_free_pages(buf, m.now)
    return int(ret)


def check_old_guest_return(prediction, scenario=SCENARIO_3) -> Verdict:
    if prediction is None:
        return Verdict.ask(_ASK)
    answer = old_guest_return_answer(scenario)
    why = ("1 means done, 0 means not yet (poll again), -1 means this balloon cannot do it: the "
           "feature was not negotiated, so migration sends every page as before.")
    return judge_choice(prediction, answer, QUESTIONS[3], why=why)


# -- for teachers --------------------------------------------------------------------
_SCENARIOS = {1: SCENARIO_1, 2: SCENARIO_2, 3: SCENARIO_3}
_ANSWERS = {1: bitmap_bytes_answer, 2: polls_answer, 3: old_guest_return_answer}
_EX = Exercises("ex02", QUESTIONS, _ANSWERS, _SCENARIOS)


def scenario(n) -> str:
    """Exercise ``n``'s parameters, one per line."""
    return _EX.scenario(n)


def question(n) -> str:
    """Exercise ``n``'s question, with its unit and how close counts."""
    return _EX.question(n)


def reveal(n):
    """The model's answer to exercise ``n``."""
    return _EX.reveal(n)
