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
from . import Verdict, check_choice, check_number

__all__ = ["SCENARIO_1", "SCENARIO_2", "SCENARIO_3", "bitmap_bytes_answer", "check_bitmap_bytes",
           "polls_answer", "check_polls", "old_guest_return_answer", "check_old_guest_return",
           "scenario", "reveal"]

SCENARIO_1 = dict(ram="4G", machine="q35", workload="idle", seed=0)
SCENARIO_2 = dict(ram="8G", machine="pc", workload="hog", seed=0)
SCENARIO_3 = dict(ram="1G", machine="pc", workload="idle", seed=0, guest_features={0, 1, 2})

_ASK = "write your prediction first (the answer is hidden until you do)"


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
    v = check_number(prediction, answer, unit=" bytes")
    mm = pc_memory_map(scenario["ram"], scenario["machine"])
    why = (f" The bitmap has one bit per page of pc.ram ({mm.ram_pages:,} pages), rounded up "
           f"to whole 64-bit words.")
    if not v.correct and prediction == bitmap_bytes(mm.max_pfn):
        why += (f" You counted every frame up to max_pfn ({mm.max_pfn:,}), hole included; the "
                f"guest shifts frames above 4 GiB down by the hole, using the low_mem QEMU sent "
                f"(patch 1), so the hole costs no bits.")
    return Verdict(v.correct, v.message + "." + why)


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
    ok = abs(prediction - answer) <= 1
    return Verdict(ok, f"the model says {answer} polls; you said {prediction} (one off counts). "
                       f"The guest walks {walk['free_count']:,} free pages in "
                       f"{walk['cost_s'] * 1e3:.2f} ms and hands over {walk['bitmap_bytes']:,} bytes "
                       f"in {walk['transfer_s'] * 1e3:.2f} ms; QEMU sleeps 1 ms between polls, "
                       f"so the poll after the reply lands is number {answer}.")


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
    v = check_choice(prediction, answer, (-1, 0, 1))
    if prediction not in (-1, 0, 1):
        return v
    return Verdict(v.correct, v.message + ". 1 means done, 0 means not yet (poll again), -1 means "
                              "this balloon cannot do it: the feature was not negotiated, so "
                              "migration sends every page as before.")


# -- for teachers --------------------------------------------------------------------
_SCENARIOS = {1: SCENARIO_1, 2: SCENARIO_2, 3: SCENARIO_3}
_ANSWERS = {1: bitmap_bytes_answer, 2: polls_answer, 3: old_guest_return_answer}


def scenario(n: int) -> str:
    """Exercise ``n``'s parameters, one per line."""
    return "\n".join(f"{k:>14}: {v}" for k, v in _SCENARIOS[n].items())


def reveal(n: int) -> int:
    """The model's answer to exercise ``n``."""
    return _ANSWERS[n]()
