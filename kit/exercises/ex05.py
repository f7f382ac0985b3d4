"""Exercises for notebook 05 (performance): predict, then let the model check.

Every scenario is the seed's testbed (``seed-2016`` preset, ``pc`` machine,
seed 0) with one thing changed.  Each check runs the model through
:func:`kit.viz.performance.run_point`; ``reveal(n)`` returns the answer.
"""
from __future__ import annotations

from . import Verdict, check_choice, check_number
from ..viz.performance import run_point

WIRE, CPU = "wire", "CPU"


# Exercise 1 ------------------------------------------------------------------
EX1_GBIT = 40.0


def idle_original_send_split(gbit: float = EX1_GBIT) -> dict:
    """ms of the idle 8 GiB original run's sending time booked to the wire and to CPU beyond it."""
    b = run_point(8, "idle", "original", gbit)["breakdown-ms"]
    return {WIRE: b.get("send-wire", 0.0), CPU: b.get("send-cpu", 0.0)}


def idle_original_mostly(gbit: float = EX1_GBIT) -> str:
    """"wire" or "CPU": which takes more of the idle original guest's sending time."""
    split = idle_original_send_split(gbit)
    return CPU if split[CPU] > split[WIRE] else WIRE


def check_idle_40g(prediction) -> Verdict:
    """At 40 Gbit/s, is the idle original guest's time mostly wire or CPU?"""
    if prediction is None:
        return Verdict.ask("write your prediction first: 'wire' or 'CPU'")
    pred = {"wire": WIRE, "cpu": CPU}.get(str(prediction).strip().lower(), prediction)
    v = check_choice(pred, idle_original_mostly(EX1_GBIT), (WIRE, CPU))
    if pred in (WIRE, CPU):
        split = idle_original_send_split(EX1_GBIT)
        total = run_point(8, "idle", "original", EX1_GBIT)["total-time-ms"]
        v.message += (f" (of {total:,} ms in all, the wire takes {split[WIRE]:,.0f} ms and the CPU"
                      f" adds {split[CPU]:,.0f} ms on top)")
    return v


# Exercise 2 ------------------------------------------------------------------
EX2_GIB = 64


def hog_pv_seconds(ram_gib: int = EX2_GIB) -> float:
    """Total time (s) of the patched migration of a ``ram_gib`` GiB guest after the hog."""
    return run_point(ram_gib, "hog", "pv")["total-time-ms"] / 1000


def check_hog_pv_64g(prediction) -> Verdict:
    """Seconds; right within 15 %."""
    return check_number(prediction, hog_pv_seconds(EX2_GIB), rel=0.15, unit=" s")


# Exercise 3 ------------------------------------------------------------------
EX3_GBIT = 100.0


def hog_original_ms(gbit: float = EX3_GBIT) -> int:
    """Total time (ms) of the original migration of the 8 GiB hog guest over a ``gbit`` link."""
    return run_point(8, "hog", "original", gbit)["total-time-ms"]


def check_hog_original_100g(prediction) -> Verdict:
    """Milliseconds; right within 15 %.  Says how far ten times the link gets you."""
    v = check_number(prediction, hog_original_ms(EX3_GBIT), rel=0.15, unit=" ms")
    if prediction is not None:
        base = hog_original_ms(None)
        v.message += f"; at 10 Gbit/s it is {base:,} ms, so ten times the link gives {base / hog_original_ms(EX3_GBIT):.1f}x"
    return v


def reveal(n: int):
    """The model's answer to exercise ``n`` (1, 2 or 3)."""
    return {1: idle_original_mostly, 2: hog_pv_seconds, 3: hog_original_ms}[n]()
