"""Exercises for notebook 05 (performance): predict, then let the model check.

Every scenario is the seed's testbed (``seed-2016`` preset, ``pc`` machine,
seed 0) with one thing changed.  Each check runs the model through
:func:`kit.viz.performance.run_point`; ``question(n)`` prints the question with
its unit and tolerance, ``reveal(n)`` returns the answer.
"""
from __future__ import annotations

from . import Exercises, Question, Verdict, judge_choice, judge_number
from ..viz.performance import run_point

WIRE, CPU = "wire", "CPU"

QUESTIONS = {
    1: Question("The idle 8 GiB guest, original QEMU, on a 40 Gbit/s link: is its sending time now "
                "mostly wire or mostly CPU?", choices=(WIRE, CPU)),
    2: Question("The hog workload in a 64 GiB guest, migrated with the RFC over the seed's 10 GbE: "
                "how many seconds does the model predict?", unit="s", rel=0.15, example="2.5"),
    3: Question("The 8 GiB hog guest, original QEMU, on a 100 Gbit/s link: how many ms does it take?",
                unit="ms", rel=0.15, example="2500"),
}


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
    split = idle_original_send_split(EX1_GBIT)
    total = run_point(8, "idle", "original", EX1_GBIT)["total-time-ms"]
    why = (f"Most of the idle guest's pages are zero: each costs the thread a scan but only 9 bytes on "
           f"the wire, and a faster link shortens only the wire's part. Of {total:,} ms in all, the "
           f"wire takes {split[WIRE]:,.0f} ms and the CPU adds {split[CPU]:,.0f} ms on top.")
    return judge_choice(prediction, idle_original_mostly(EX1_GBIT), QUESTIONS[1], why=why)


# Exercise 2 ------------------------------------------------------------------
EX2_GIB = 64


def hog_pv_seconds(ram_gib: int = EX2_GIB) -> float:
    """Total time (s) of the patched migration of a ``ram_gib`` GiB guest after the hog."""
    return run_point(ram_gib, "hog", "pv")["total-time-ms"] / 1000


def check_hog_pv_64g(prediction) -> Verdict:
    """The 64 GiB hog guest with the RFC: seconds, right within 15 %."""
    base, answer = hog_pv_seconds(8), hog_pv_seconds(EX2_GIB)
    why = (f"At 8 GiB it takes {base:.3f} s. The used pages (a fixed footprint plus struct page, "
           f"1/64 of RAM) go out in full; the free ones cost a walk in the guest and a bit in the "
           f"bitmap; setup's write-protect and syncs grow with RAM. The fixed footprint does not "
           f"grow, so 8 times the RAM takes {answer / base:.1f} times as long.")
    mistakes = [(lambda v: abs(v - 8 * base) <= 0.1 * 8 * base,
                 "That is 8 times the 8 GiB run. Part of that run is the kernel's fixed footprint, "
                 "which does not grow with RAM.")]
    return judge_number(prediction, answer, QUESTIONS[2], why=why,
                        mistakes=mistakes, reveal_hint="ex05.reveal(2)",
                        hint="Take the 8 GiB `workload, pv` bar apart and scale each cause by what "
                             "it grows with.")


# Exercise 3 ------------------------------------------------------------------
EX3_GBIT = 100.0


def hog_original_ms(gbit: float = EX3_GBIT) -> int:
    """Total time (ms) of the original migration of the 8 GiB hog guest over a ``gbit`` link."""
    return run_point(8, "hog", "original", gbit)["total-time-ms"]


def check_hog_original_100g(prediction) -> Verdict:
    """The 8 GiB hog guest, original, 100 Gbit/s: milliseconds, right within 15 %.
    Says how far ten times the link gets you."""
    base = hog_original_ms(None)
    answer = hog_original_ms(EX3_GBIT)
    why = (f"At 10 Gbit/s it is {base:,} ms, so ten times the link gives {base / answer:.1f}x: once "
           f"the wire is fast, one thread copying full pages at cpu_ns_per_page is the limit.")
    mistakes = [(lambda v: abs(v - base / 10) <= 0.1 * base / 10,
                 "That is a tenth of the 10 Gbit/s time. Ten times the link helps only while the wire "
                 "is the slowest part.")]
    return judge_number(prediction, answer, QUESTIONS[3], why=why, mistakes=mistakes,
                        reveal_hint="ex05.reveal(3)",
                        hint="Compare the wire time of a full page at 100 Gbit/s with the CPU's "
                             "cpu_ns_per_page: the slower one sets the pace.")


_EX = Exercises("ex05", QUESTIONS, {1: idle_original_mostly, 2: hog_pv_seconds, 3: hog_original_ms})


def reveal(n):
    """The model's answer to exercise ``n`` (1, 2 or 3)."""
    return _EX.reveal(n)


def question(n):
    """Exercise ``n``'s question, with its unit and how close counts."""
    return _EX.question(n)
