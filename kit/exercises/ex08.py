"""Exercises for notebook 08 (the real-QEMU lab): predict, then let the data check.

Every answer is computed from the recorded lab rows (``data/lab/*.json``) and
the ``tcg-loopback`` fit on them (:func:`kit.lab.model.recorded`); nothing is
typed in.  ``question(n)`` prints the question with its unit and tolerance,
``reveal(n)`` returns the answer.

1. The hog guest with hint off: from the 1 GiB figures, how many MiB does the
   lab send at 2 GiB?
2. Over the cells the model was not fitted to, is it further off in time or in
   bytes, by the median relative error?
3. In the fitted model, where does most of the 1 GiB idle guest's time go (hint
   off): to setup and the bitmap syncs, to the wire, or to the migration
   thread's CPU beyond it?
"""
from __future__ import annotations

import statistics

from . import Exercises, Question, Verdict, judge_choice, judge_number
from ..lab import model as lm

SMALL, BIG = "1G", "2G"
TIME, BYTES = "time", "bytes"
SETUP, WIRE, CPU = "setup", "wire", "cpu"

QUESTIONS = {
    1: Question("The lab's hog guest with hint off: from the 1 GiB figures, how many MiB does the "
                "2 GiB guest send (median of its runs)?", unit="MiB", rel=0.10, example="1000"),
    2: Question("Over the cells the model was not fitted to, is the model further off in time or in "
                "bytes? Compare the median of |model - lab| / lab over those cells.",
                choices=(TIME, BYTES)),
    3: Question("In the fitted model, the 1 GiB idle guest with hint off: where does most of its "
                "time go: to setup and the bitmap syncs, to the wire, or to the migration "
                "thread's CPU beyond the wire time?", choices=(SETUP, WIRE, CPU)),
}


def _med():
    rows, _ = lm.recorded()
    return lm.medians(rows)


# Exercise 1 ------------------------------------------------------------------
def hog_mib(ram: str = BIG) -> int:
    """Median MiB the lab sent for the hog guest with hint off at ``ram``."""
    return round(_med()[ram, "hog", False]["transferred-kb"] / 1024)


def check_hog_mib(prediction) -> Verdict:
    """The lab's 2 GiB hog guest, hint off: MiB sent (median), right within 10 %."""
    if prediction is None:
        return judge_number(None, 0, QUESTIONS[1])
    rows, cost = lm.recorded()
    model = lm.model_figures(lm.model_run(cost, _med()[BIG, "hog", False]["ram-mib"], "hog", False))
    why = (f"At {SMALL} the lab sent {hog_mib(SMALL):,} MiB; the model, fitted there, predicted "
           f"{model['transferred-kb'] / 1024:,.0f} MiB at {BIG}. Nearly every page the hog wrote goes "
           f"out in full, so the bytes grow with the RAM it could fill.")
    mistakes = [(lambda v: abs(v - hog_mib(SMALL)) <= 0.05 * hog_mib(SMALL),
                 f"That is about what the {SMALL} guest sent. The hog fills the RAM it is given, so "
                 f"a bigger guest has more stale pages to send.")]
    return judge_number(prediction, hog_mib(BIG), QUESTIONS[1], why=why, mistakes=mistakes,
                        hint="What does the hog fill, and what is left in use when it exits?",
                        reveal_hint="ex08.reveal(1)")


# Exercise 2 ------------------------------------------------------------------
def predicted_errors() -> dict:
    """Median |model - lab| / lab over the predicted cells, for time and for bytes."""
    rows, cost = lm.recorded()
    pred = [r for r in lm.compare(rows, cost) if r["role"] == "predicted"]
    err = {}
    for name, f in ((TIME, "total-time-ms"), (BYTES, "transferred-kb")):
        err[name] = statistics.median(abs(r["model"][f] / r["lab"][f] - 1) for r in pred)
    return err


def further_off() -> str:
    err = predicted_errors()
    return TIME if err[TIME] >= err[BYTES] else BYTES


def check_further_off(prediction) -> Verdict:
    if prediction is None:
        return Verdict.ask(f"write your prediction first: {TIME!r} or {BYTES!r}")
    err = predicted_errors()
    why = (f"Median error over the predicted cells: time {100 * err[TIME]:.0f} %, bytes "
           f"{100 * err[BYTES]:.0f} %. Bytes depend on what the guest holds, which scales with RAM; "
           f"time also depends on how the two host cores were shared during each run.")
    return judge_choice(prediction, further_off(), QUESTIONS[2], why=why)


# Exercise 3 ------------------------------------------------------------------
def idle_breakdown() -> dict:
    rows, cost = lm.recorded()
    mib = _med()[SMALL, "idle", False]["ram-mib"]
    return lm.model_run(cost, mib, "idle", False)["breakdown-ms"]


def idle_time_goes_to() -> str:
    """The largest of the three parts of the fitted model's 1 GiB idle run (hint off)."""
    b = idle_breakdown()
    parts = {SETUP: b["setup"] + b["bitmap-sync"], WIRE: b["send-wire"], CPU: b["send-cpu"]}
    return max(parts, key=parts.get)


def check_idle_time(prediction) -> Verdict:
    if prediction is None:
        return Verdict.ask(f"write your prediction first: {SETUP!r}, {WIRE!r} or {CPU!r}")
    b = idle_breakdown()
    total = sum(b.values())
    setup = b["setup"] + b["bitmap-sync"]
    why = (f"Setup and syncs {setup:,.1f} ms ({100 * setup / total:.0f} % of the run), wire "
           f"{b['send-wire']:,.0f} ms, CPU beyond the wire {b['send-cpu']:,.0f} ms. The fit puts the "
           f"per-page CPU cost at its floor, 0, so sending is all wire, and an idle 1 GiB guest has "
           f"little to send: most of its run is setup.")
    return judge_choice(prediction, idle_time_goes_to(), QUESTIONS[3], why=why)


_EX = Exercises("ex08", QUESTIONS, {1: hog_mib, 2: further_off, 3: idle_time_goes_to})


def reveal(n):
    """The answer to exercise ``n`` (1, 2 or 3)."""
    return _EX.reveal(n)


def question(n):
    """Exercise ``n``'s question, with its unit and how close counts."""
    return _EX.question(n)
