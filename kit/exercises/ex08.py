"""Exercises for notebook 08 (the real-QEMU lab): predict, then let the data check.

Every answer is computed from the recorded lab rows (``data/lab/*.json``) and
the ``tcg-loopback`` fit on them (:func:`kit.lab.model.recorded`); nothing is
typed in.  ``reveal(n)`` returns the answer.

1. The hog guest with hint off: from the 1 GiB figures, how many MiB does the
   lab send at 2 GiB?
2. Over the cells the model was not fitted to, is it further off in time or in
   bytes?
3. In the fitted model, where does the 1 GiB idle guest's time go (hint off):
   to the wire, or to the migration thread's CPU beyond it?
"""
from __future__ import annotations

import statistics

from . import Verdict, check_choice, check_number
from ..lab import model as lm

SMALL, BIG = "1G", "2G"
TIME, BYTES = "time", "bytes"
WIRE, CPU = "wire", "cpu"


def _med():
    rows, _ = lm.recorded()
    return lm.medians(rows)


# Exercise 1 ------------------------------------------------------------------
def hog_mib(ram: str = BIG) -> int:
    """Median MiB the lab sent for the hog guest with hint off at ``ram``."""
    return round(_med()[ram, "hog", False]["transferred-kb"] / 1024)


def check_hog_mib(prediction) -> Verdict:
    """MiB; right within 10 %."""
    v = check_number(prediction, hog_mib(BIG), rel=0.10, unit=" MiB")
    v.message = v.message.replace("the model says", "the lab sent (median)")
    if prediction is not None:
        rows, cost = lm.recorded()
        model = lm.model_figures(lm.model_run(cost, _med()[BIG, "hog", False]["ram-mib"], "hog", False))
        v.message += (f". At {SMALL} the lab sent {hog_mib(SMALL):,} MiB; the model, fitted there, "
                      f"predicted {model['transferred-kb'] / 1024:,.0f} MiB at {BIG}. Nearly every page the "
                      f"hog wrote goes out in full, so the bytes grow with the RAM it could fill")
    return v


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
    pred = str(prediction).strip().lower()
    v = check_choice(pred, further_off(), (TIME, BYTES))
    if pred in (TIME, BYTES):
        err = predicted_errors()
        v.message += (f" (median error over the predicted cells: time {100 * err[TIME]:.0f} %, bytes "
                      f"{100 * err[BYTES]:.0f} %). Bytes depend on what the guest holds, which scales with "
                      f"RAM; time also depends on how the two host cores were shared during each run")
    return v


# Exercise 3 ------------------------------------------------------------------
def idle_breakdown() -> dict:
    rows, cost = lm.recorded()
    mib = _med()[SMALL, "idle", False]["ram-mib"]
    return lm.model_run(cost, mib, "idle", False)["breakdown-ms"]


def idle_time_goes_to() -> str:
    b = idle_breakdown()
    return WIRE if b["send-wire"] >= b["send-cpu"] else CPU


def check_idle_time(prediction) -> Verdict:
    if prediction is None:
        return Verdict.ask(f"write your prediction first: {WIRE!r} or {CPU!r}")
    pred = str(prediction).strip().lower()
    v = check_choice(pred, idle_time_goes_to(), (WIRE, CPU))
    if pred in (WIRE, CPU):
        b = idle_breakdown()
        v.message += (f" (wire {b['send-wire']:,.0f} ms, CPU beyond the wire {b['send-cpu']:,.0f} ms, "
                      f"setup and syncs {b['setup'] + b['bitmap-sync']:,.1f} ms)")
    return v


def reveal(n: int):
    """The answer to exercise ``n`` (1, 2 or 3)."""
    return {1: hog_mib, 2: further_off, 3: idle_time_goes_to}[n]()
