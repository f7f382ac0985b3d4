"""Exercises for notebook 07 (beyond the RFC): predict, then let the model check.

Every scenario is seeded (seed 0, ``pc`` machine, ``seed-2016`` cost model) and
each check runs the model through :mod:`kit.beyond`; ``reveal(n)`` returns the
answer.

1. How many 4 MiB blocks does free page hinting hint for an idle 16 GiB guest?
2. After the hog (8 GiB), which successor migrates faster: hinting or reporting?
3. Inflate the balloon to 1 GiB with the 2017 scatter-gather speed, then migrate
   the 8 GiB hog guest with original QEMU: how many ms in all?
"""
from __future__ import annotations

from . import Verdict, check_choice, check_number
from .. import beyond

HINT, REPORT = "hint", "report"


# Exercise 1 ------------------------------------------------------------------
EX1_RAM = "16G"


def hinted_blocks(ram: str = EX1_RAM) -> int:
    """4 MiB blocks hinted during the migration of an idle guest of ``ram``."""
    return beyond.run_point(ram, "idle", "hint")["hinted-blocks"]


def check_hinted_blocks(prediction) -> Verdict:
    """Right within 5 %."""
    v = check_number(prediction, hinted_blocks(), rel=0.05, unit=" blocks")
    if prediction is not None:
        free = beyond.free_pages_after_boot(EX1_RAM)
        v.message += (f". The guest had {free:,} free pages, {free / 1024:,.0f} blocks' worth; the rest "
                      f"lie in blocks that are not whole or are held back by the zones' watermarks")
    return v


# Exercise 2 ------------------------------------------------------------------
EX2_RAM, EX2_WORKLOAD = "8G", "hog"


def faster_successor(ram: str = EX2_RAM, workload: str = EX2_WORKLOAD) -> str:
    """"hint" or "report": which mode migrates the guest in less simulated time."""
    runs = beyond.compare(ram, workload, modes=(HINT, REPORT))
    return HINT if runs[HINT]["total-ms"] <= runs[REPORT]["total-ms"] else REPORT


def check_faster_successor(prediction) -> Verdict:
    if prediction is None:
        return Verdict.ask("write your prediction first: 'hint' or 'report'")
    pred = str(prediction).strip().lower()
    v = check_choice(pred, faster_successor(), (HINT, REPORT))
    if pred in (HINT, REPORT):
        runs = beyond.compare(EX2_RAM, EX2_WORKLOAD)
        v.message += (f" (hint {runs[HINT]['total-ms']:,} ms, report {runs[REPORT]['total-ms']:,} ms, "
                      f"original {runs['original']['total-ms']:,} ms)")
    return v


# Exercise 3 ------------------------------------------------------------------
EX3_RAM, EX3_TARGET, EX3_SPEED = "8G", "1G", "2017-sg"


def balloon_sg_total_ms() -> float:
    """Inflate (2017 speed) plus original migration of the 8 GiB hog guest, in ms."""
    return beyond.balloon_instead(EX3_RAM, "hog", EX3_TARGET, EX3_SPEED)["total-ms"]


def check_balloon_sg(prediction) -> Verdict:
    """Milliseconds; right within 15 %."""
    r = beyond.balloon_instead(EX3_RAM, "hog", EX3_TARGET, EX3_SPEED)
    v = check_number(prediction, round(r["total-ms"]), rel=0.15, unit=" ms")
    if prediction is not None:
        v.message += (f": {r['inflate-ms']:,.0f} ms to inflate, then {r['migrate-ms']:,} ms to migrate; "
                      f"the RFC takes {beyond.run_point(EX3_RAM, 'hog', 'pv')['total-ms']:,} ms")
    return v


def reveal(n: int):
    """The model's answer to exercise ``n`` (1, 2 or 3)."""
    return {1: hinted_blocks, 2: faster_successor, 3: lambda: round(balloon_sg_total_ms())}[n]()
