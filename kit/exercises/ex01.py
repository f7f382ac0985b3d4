"""Exercises for notebook 01 (patch 1: the PC memory map and the guest's ``low_mem``).

Each ``check_N(prediction)`` computes the answer with the model and returns a
:class:`~kit.exercises.Verdict`; ``scenario(N)`` echoes every parameter and
``reveal(N)`` gives the answer outright.
"""
from __future__ import annotations

from .. import scenario as _scenario
from ..memmap import pc_memory_map, pfn_to_ram_page
from ..scenario import Scenario
from ..units import GiB, MiB, format_size
from . import Verdict, check_number

# Every parameter of every exercise, echoed by scenario(N).
SCENARIOS = {
    1: {"machine": "q35", "ram": "6G",
        "question": "how many MiB of RAM does QEMU map above 4 GiB?"},
    2: {"machine": "pc", "ram": "8G", "pfn": 0x100000,
        "question": "which page of pc.ram (ram_addr >> 12) holds guest frame 0x100000?"},
    3: {"machine": "pc", "ram": "8G", "workload": "idle", "seed": 0,
        "program_at": 4 * GiB + 512 * MiB, "program_bytes": 1 * GiB, "low_mem": 4 * GiB,
        "question": "the guest was told low_mem = 4 GiB (no hole); after a pv migration with "
                    "verify, how many used pages arrived stale (lost)?"},
}


def _show(key, value) -> str:
    if key == "pfn":
        return f"{value:#x}"
    if key in ("program_at", "program_bytes", "low_mem"):
        return f"{format_size(value)} ({value:#x})"
    return str(value)


def scenario(n: int) -> str:
    """The exercise's parameters, one per line."""
    return "\n".join(f"{k:>13}: {_show(k, v)}" for k, v in SCENARIOS[n].items())


# -- the answers, computed by the model ----------------------------------------

def answer_1() -> int:
    s = SCENARIOS[1]
    return pc_memory_map(s["ram"], s["machine"]).above_4g_mem_size // MiB


def answer_2() -> int:
    s = SCENARIOS[2]
    return pfn_to_ram_page(pc_memory_map(s["ram"], s["machine"]), s["pfn"])


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


def reveal(n: int):
    """The model's answer to exercise ``n``."""
    return ANSWERS[n]()


# -- the checks --------------------------------------------------------------

def check_1(prediction) -> Verdict:
    """MiB above 4 GiB for q35 with 6 GiB: exact."""
    return check_number(prediction, answer_1(), unit=" MiB")


def check_2(prediction) -> Verdict:
    """The pc.ram page of guest frame 0x100000 in an 8 GiB pc guest: exact (decimal or hex)."""
    ans = answer_2()
    if prediction is None:
        return check_number(None, ans)
    ok = int(prediction) == ans
    return Verdict(ok, f"the model says page {ans:#x} ({ans:,}); you said {int(prediction):#x} "
                       f"({int(prediction):,})")


def check_3(prediction) -> Verdict:
    """Lost pages with the wrong low_mem: within 2 %."""
    return check_number(prediction, answer_3(), rel=0.02, unit=" pages")


__all__ = ["SCENARIOS", "scenario", "reveal", "check_1", "check_2", "check_3", "scenario_3", "scenario_3_guest"]
