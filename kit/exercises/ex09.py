"""Exercise for notebook 09 (QEMU 7.2 beside 10.0): predict, then let the recorded rows check.

The answer is computed from the two timing matrices (``data/lab/curves/`` on 7.2,
``data/lab/curves-qemu10.0/`` on 10.0, :mod:`kit.lab.compare`); nothing is typed in.

1. On 7.2 the 4 GiB hog guest without hints took 12,140 ms, 2,782 of them setup (the
   medians shown in section 4's table, which comes after the question). How long does it
   take on QEMU 10.0, whose exact-size RAM needs no per-page sync?
"""
from __future__ import annotations

from . import Exercises, Question, Verdict, judge_number
from ..lab import compare as lc
from ..lab import model as lm

CELL = ("4G", "hog", False)

QUESTIONS = {
    1: Question("QEMU 7.2 migrates the lab's 4 GiB hog guest without hints in a median 12,140 ms, 2,782 ms "
                "of them setup. How many ms does QEMU 10.0 take for the same guest (median of its runs)?",
                unit="ms", rel=0.10, example="8000"),
}


def _cell(q):
    rows = lm.load_rows(lm.CURVES) if q == "7.2" else lc.load_tree(lc.CURVES_10)
    return lm.medians(rows)[CELL]


def total_ms_10() -> int:
    """The 4 GiB hog without hints on QEMU 10.0: median total time, ms."""
    return round(_cell("10.0")["total-time-ms"])


def check_total_ms_10(prediction) -> Verdict:
    """QEMU 10.0's 4 GiB hog, hint off: median total time, right within 10 %."""
    if prediction is None:
        return judge_number(None, 0, QUESTIONS[1])
    old, new = _cell("7.2"), _cell("10.0")
    why = (f"QEMU 10.0 took {new['total-time-ms']:,.0f} ms, {new['setup-time-ms']:,.0f} of them setup. "
           f"Nearly all of the 7.2 run's setup ({old['setup-time-ms']:,.0f} ms) is the per-page sync that "
           f"7.2 needs to lose no write; the rest, sending 3.5 GiB of the hog's pages, costs about the "
           f"same on both ({old['total-time-ms'] - old['setup-time-ms']:,.0f} ms on 7.2, "
           f"{new['total-time-ms'] - new['setup-time-ms']:,.0f} on 10.0).")
    mistakes = [(lambda v: abs(v - old["total-time-ms"]) <= 0.05 * old["total-time-ms"],
                 "That is 7.2's time. Which part of it came from the workaround?"),
                (lambda v: v < 0.2 * old["total-time-ms"],
                 "Setup is not all of it: the hog's pages still have to cross the wire.")]
    return judge_number(prediction, total_ms_10(), QUESTIONS[1], why=why, mistakes=mistakes,
                        hint="Take 7.2's time apart: setup, and the rest.", reveal_hint="ex09.reveal(1)")


_EX = Exercises("ex09", QUESTIONS, {1: total_ms_10})


def reveal(n):
    """The answer to exercise ``n`` (1)."""
    return _EX.reveal(n)


def question(n):
    """Exercise ``n``'s question, with its unit and how close counts."""
    return _EX.question(n)
