"""Exercises for notebook 07 (beyond the RFC): predict, then let the model check.

Every scenario is seeded (seed 0, ``pc`` machine, ``seed-2016`` cost model) and
each check runs the model through :mod:`kit.beyond`; ``question(n)`` prints the
question with its unit and tolerance, ``reveal(n)`` returns the answer.  The
guests are ones the notebook's tables do not show (its tables are at 8 GiB).

1. How many 4 MiB blocks does free page hinting hint for an idle 16 GiB guest?
2. After the hog, in a 16 GiB guest, which successor migrates faster: hinting or
   reporting?
3. Inflate the 16 GiB hog guest's balloon to 2 GiB with the 2017 scatter-gather
   speed, then migrate with original QEMU: how many ms in all?
"""
from __future__ import annotations

from . import Exercises, Question, Verdict, judge_choice, judge_number
from .. import beyond
from ..units import parse_size

HINT, REPORT = "hint", "report"

EX1_RAM = "16G"
EX2_RAM, EX2_WORKLOAD = "16G", "hog"
EX3_RAM, EX3_TARGET, EX3_SPEED = "16G", "2G", "2017-sg"

QUESTIONS = {
    1: Question("An idle 16 GiB guest migrated with free page hinting: how many 4 MiB blocks does "
                "the guest hint?", unit="blocks", abs_=10, example="4000"),
    2: Question("The 16 GiB guest after the hog: which successor finishes first, free page hinting "
                "or free page reporting?", choices=(HINT, REPORT)),
    3: Question("Inflate the 16 GiB hog guest's balloon down to 2 GiB at the 2017 scatter-gather "
                "speed, then migrate with original QEMU: how many ms in all (inflate plus "
                "migration)?", unit="ms", rel=0.15, example="3000"),
}


# Exercise 1 ------------------------------------------------------------------
def hinted_blocks(ram: str = EX1_RAM) -> int:
    """4 MiB blocks hinted during the migration of an idle guest of ``ram``."""
    return beyond.run_point(ram, "idle", "hint")["hinted-blocks"]


def check_hinted_blocks(prediction) -> Verdict:
    """Hinted 4 MiB blocks of the idle 16 GiB guest: right within 10 blocks.

    The tolerance is tight on purpose: the lesson (whole, aligned blocks only, and
    the watermarks) is worth well under 1 % of the count."""
    if prediction is None:
        return judge_number(None, 0, QUESTIONS[1])
    free = beyond.free_pages_after_boot(EX1_RAM)
    all_blocks = parse_size(EX1_RAM) // (4 << 20)
    why = (f"The guest had {free:,} free pages, {free / 1024:,.0f} blocks' worth; the rest lie in "
           f"blocks that are not whole or are held back by the zones' watermarks.")
    mistakes = [
        (lambda v: v == all_blocks, "That is every 4 MiB of the guest, as if it used no memory at all. "
                                    "A booted kernel holds some pages, and a block is hinted only if "
                                    "all of it is free."),
        (lambda v: abs(v - free / 1024) < 1.5,
         "That is the free pages divided into 4 MiB. Free pages in a block that is partly used, or "
         "held back by a zone's watermark, cannot be hinted."),
        (lambda v: abs(v - free / 512) < 3,
         "That counts 2 MiB blocks, the size free page reporting works in. Hinting uses 4 MiB ones."),
    ]
    return judge_number(prediction, hinted_blocks(), QUESTIONS[1], why=why, mistakes=mistakes,
                        hint="Only aligned 4 MiB blocks whose every page is free are hinted, and the "
                             "zones keep a few back.", reveal_hint="ex07.reveal(1)")


# Exercise 2 ------------------------------------------------------------------
def faster_successor(ram: str = EX2_RAM, workload: str = EX2_WORKLOAD) -> str:
    """"hint" or "report": which mode migrates the guest in less simulated time."""
    runs = beyond.compare(ram, workload, modes=(HINT, REPORT))
    return HINT if runs[HINT]["total-ms"] <= runs[REPORT]["total-ms"] else REPORT


def check_faster_successor(prediction) -> Verdict:
    """The 16 GiB hog guest: 'hint' or 'report', any case."""
    if prediction is None:
        return Verdict.ask("write your prediction first: 'hint' or 'report'")
    runs = beyond.compare(EX2_RAM, EX2_WORKLOAD)
    why = (f"Both cut the bytes, but reporting still sends every page (the reported ones as zero "
           f"pages) and QEMU reads each one, while hinting skips the hinted blocks unread "
           f"(hint {runs[HINT]['total-ms']:,} ms, report {runs[REPORT]['total-ms']:,} ms, "
           f"original {runs['original']['total-ms']:,} ms).")
    return judge_choice(prediction, faster_successor(), QUESTIONS[2], why=why)


# Exercise 3 ------------------------------------------------------------------
def balloon_sg_total_ms() -> float:
    """Inflate (2017 speed) plus original migration of the 16 GiB hog guest, in ms."""
    return beyond.balloon_instead(EX3_RAM, "hog", EX3_TARGET, EX3_SPEED)["total-ms"]


def check_balloon_sg(prediction) -> Verdict:
    """Inflate to 2 GiB, then original QEMU, 16 GiB hog guest: milliseconds, right within 15 %."""
    if prediction is None:
        return judge_number(None, 0, QUESTIONS[3])
    r = beyond.balloon_instead(EX3_RAM, "hog", EX3_TARGET, EX3_SPEED)
    pv = beyond.run_point(EX3_RAM, "hog", "pv")["total-ms"]
    why = (f"{r['inflate-ms']:,.0f} ms to inflate, then {r['migrate-ms']:,} ms to migrate: the "
           f"ballooned pages read as zero, but QEMU 2.5 still reads each one, and the stale pages "
           f"the balloon leaves go out in full. The RFC takes {pv:,} ms.")
    inflate_2016 = beyond.balloon_instead(EX3_RAM, "hog", EX3_TARGET, "2016")["total-ms"]
    mistakes = [(lambda v: abs(v - inflate_2016) <= 0.1 * inflate_2016,
                 "That inflates at 2016's speed. The question asks for the 2017 scatter-gather one.")]
    return judge_number(prediction, round(r["total-ms"]), QUESTIONS[3], why=why, mistakes=mistakes,
                        hint="Inflate time (s per GiB times the GiB taken) plus an original migration "
                             "in which the ballooned pages are zero pages.",
                        reveal_hint="ex07.reveal(3)")


_EX = Exercises("ex07", QUESTIONS, {1: hinted_blocks, 2: faster_successor,
                                    3: lambda: round(balloon_sg_total_ms())})


def reveal(n):
    """The model's answer to exercise ``n`` (1, 2 or 3)."""
    return _EX.reveal(n)


def question(n):
    """Exercise ``n``'s question, with its unit and how close counts."""
    return _EX.question(n)
