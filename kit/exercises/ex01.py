"""Exercises for notebook 01 (patch 1: the PC memory map and the guest's ``low_mem``).

Each ``check_N(prediction)`` computes the answer with the model and returns a
:class:`~kit.exercises.Verdict`; ``question(N)`` prints the question with its
unit and tolerance, ``scenario(N)`` echoes every parameter and ``reveal(N)``
gives the answer outright.
"""
from __future__ import annotations

from .. import scenario as _scenario
from ..memmap import pc_memory_map, pfn_to_ram_page
from ..scenario import Scenario
from ..units import GiB, MiB, format_size
from . import Exercises, Question, judge_number

# Every parameter of every exercise, echoed by scenario(N).
SCENARIOS = {
    1: {"machine": "q35", "ram": "6G",
        "question": "how many MiB of RAM does QEMU map above 4 GiB?"},
    2: {"machine": "q35", "ram": "8G", "pfn": 0x200000,
        "question": "which page of pc.ram (ram_addr >> 12) holds guest frame 0x200000?"},
    3: {"machine": "pc", "ram": "8G", "workload": "idle", "seed": 0,
        "program_at": 4 * GiB + 512 * MiB, "program_bytes": 1 * GiB, "low_mem": 4 * GiB,
        "question": "the guest was told low_mem = 4 GiB (no hole); after a pv migration with "
                    "verify, how many used pages arrived stale (lost)?"},
}

QUESTIONS = {
    1: Question("A q35 guest with -m 6G: how many MiB of its RAM does QEMU map above 4 GiB?",
                unit="MiB", integer=True),
    2: Question("An 8 GiB q35 guest, default options: which page of pc.ram (ram_addr >> 12) "
                "holds guest frame 0x200000?", unit="", integer=True, hex_ok=True, example="0x12345"),
    3: Question("The idle 8 GiB pc guest (seed 0) with a program that wrote 1 GiB from 4.5 GiB, "
                "told low_mem = 4 GiB: how many used pages does a pv migration lose?",
                unit="pages", rel=0.02),
}


def _show(key, value) -> str:
    if key == "pfn":
        return f"{value:#x}"
    if key in ("program_at", "program_bytes", "low_mem"):
        return f"{format_size(value)} ({value:#x})"
    return str(value)


# -- the answers, computed by the model ----------------------------------------

def answer_1() -> int:
    s = SCENARIOS[1]
    return pc_memory_map(s["ram"], s["machine"]).above_4g_mem_size // MiB


def answer_2() -> int:
    s = SCENARIOS[2]
    return int(pfn_to_ram_page(pc_memory_map(s["ram"], s["machine"]), s["pfn"]))


def scenario_3() -> Scenario:
    """Exercise 3 as a scenario: the guest below, migrated by the RFC told low_mem = 4 GiB."""
    s = SCENARIOS[3]
    return Scenario(ram=s["ram"], machine=s["machine"], workload=s["workload"], seed=s["seed"],
                    program_at=s["program_at"], program_bytes=s["program_bytes"], mode="pv",
                    inject="wrong-lowmem", verify=True, track_pages=False)


def scenario_3_guest():
    """Exercise 3's guest: booted idle, then a program allocates and writes 1 GiB from 4.5 GiB up."""
    return _scenario.guest(scenario_3())


def answer_3() -> int:
    return _scenario.run(scenario_3())["verify"]["lost-pages"]


ANSWERS = {1: answer_1, 2: answer_2, 3: answer_3}
_EX = Exercises("ex01", QUESTIONS, ANSWERS, SCENARIOS)


def reveal(n):
    """The model's answer to exercise ``n``."""
    return _EX.reveal(n)


def question(n):
    """Exercise ``n``'s question, with its unit and how close counts."""
    return _EX.question(n)


def scenario(n) -> str:
    """The exercise's parameters, one per line."""
    return _EX.scenario(n, _show)


# -- the checks --------------------------------------------------------------

def check_1(prediction):
    """MiB above 4 GiB for q35 with 6 GiB. Exact, a whole number of MiB."""
    s = SCENARIOS[1]
    mm = pc_memory_map(s["ram"], s["machine"])
    low = mm.below_4g_mem_size // MiB
    why = (f"q35 reserves room for PCI I/O and MMCONFIG below 4 GiB. With this much RAM it keeps "
           f"{low:,} MiB below 4 GiB, and the rest of the {mm.ram_size // MiB:,} MiB goes above.")
    mistakes = [
        (lambda v: v == 6 * 1024 - 0xB0000000 // MiB,
         "That keeps 2.75 GiB below 4 GiB, q35's split for guests smaller than that. This guest is "
         "bigger, so q35 aligns the split down to a whole GiB."),
        (lambda v: v == 6 * 1024 - 3 * 1024 or v == 6 * 1024 - 3584,
         "That is the pc (i440fx) machine's split. q35 reserves 256 MiB more (MMCONFIG) below 4 GiB, "
         "so less RAM fits there."),
    ]
    return judge_number(prediction, answer_1(), QUESTIONS[1], why=why, mistakes=mistakes,
                        hint="Find how much RAM q35 keeps below 4 GiB for a guest this size (section 2); "
                             "the rest goes above.",
                        reveal_hint="ex01.reveal(1)")


def check_2(prediction):
    """The pc.ram page of guest frame 0x200000 in an 8 GiB q35 guest. Exact; decimal or hex."""
    s = SCENARIOS[2]
    mm = pc_memory_map(s["ram"], s["machine"])
    pfn, hole = s["pfn"], mm.hole_pages
    why = (f"q35 keeps {mm.below_4g_mem_size // GiB} GiB below 4 GiB, so the hole is "
           f"{hole:#x} frames ({hole * 4096 // GiB} GiB), and every frame from 4 GiB up moves down by "
           f"that much in pc.ram.")
    pc_hole = (4 * GiB - pc_memory_map(s["ram"], "pc").below_4g_mem_size) // 4096
    mistakes = [
        (lambda v: v == pfn, "That is the frame number itself. Above 4 GiB, pc.ram has no pages for "
                             "the hole, so the page number is smaller than the frame number."),
        (lambda v: v == pfn - pc_hole,
         "You took away the pc machine's 1 GiB hole. This guest is q35, which keeps less RAM below "
         "4 GiB, so its hole is bigger."),
        (lambda v: v == pfn * 4096 - hole * 4096,
         "That is the ram_addr, in bytes. The question asks for the page: ram_addr >> 12."),
    ]
    return judge_number(prediction, answer_2(), QUESTIONS[2], why=why, mistakes=mistakes,
                        hint="Subtract the hole, in frames, from the frame number.",
                        reveal_hint="ex01.reveal(2)")


def check_3(prediction):
    """Lost pages with the wrong low_mem: within 2 %."""
    why = ("With low_mem = 4 GiB the guest shifts nothing, so each bit it sets for a frame above 4 GiB "
           "lands one hole (1 GiB) too high in pc.ram. The used pages that end up under a 'free' bit "
           "are skipped, and the destination keeps zeros there.")
    return judge_number(prediction, answer_3(), QUESTIONS[3], why=why,
                        hint="Ask which used pages sit 1 GiB below a free frame: the free bit of "
                             "frame f lands on pc.ram page f, which holds frame f + hole.",
                        reveal_hint="ex01.reveal(3)")


__all__ = ["SCENARIOS", "QUESTIONS", "scenario", "question", "reveal", "check_1", "check_2",
           "check_3", "scenario_3", "scenario_3_guest"]
