"""Exercises for notebook 04 (patch 4/4: the bulk-stage filter).

Every scenario is seeded (seed 0, ``pc`` machine): exercises 2 and 3 use the
notebook's 2 GiB guests; exercise 1 asks about the seed's 8 GiB size.  Each
check runs the model to get the answer; ``reveal(n)`` returns it.
"""
from __future__ import annotations

from . import Verdict, check_number
from ..units import MiB
from ..viz.player import bytes_at, make_migration, transfer_curve

RAM, SEED, MACHINE = "2G", 0, "pc"


def _run(workload, mode):
    m = make_migration(RAM, workload, mode, seed=SEED, machine=MACHINE)
    m.run()
    return m


# Exercise 1 ------------------------------------------------------------------
EX1_RAM = "8G"          # the seed's guest size; the notebook shows 2 GiB (0.879)


def skipped_fraction(ram: str = EX1_RAM) -> float:
    """Share of pc.ram's pages the patched run skips as free (hog guest), to 3 decimals."""
    m = make_migration(ram, "hog", "pv", seed=SEED, machine=MACHINE)
    m.run()
    return round(m.stats.free_skipped / m.mm.ram_pages, 3)


def check_skipped_fraction(prediction) -> Verdict:
    """The 8 GiB hog guest; right within 0.02."""
    return check_number(prediction, skipped_fraction(EX1_RAM), abs_=0.02)


# Exercise 2 ------------------------------------------------------------------
def original_mib_at(t_ms: float = 500.0) -> float:
    """MiB the original migration of the hog guest has sent by simulated time ``t_ms``."""
    return round(bytes_at(transfer_curve(_run("hog", "original")), t_ms) / MiB, 1)


def check_original_mib_at_500ms(prediction) -> Verdict:
    """Right within 10 %."""
    return check_number(prediction, original_mib_at(500.0), rel=0.10, unit=" MiB")


# Exercise 3 ------------------------------------------------------------------
def pv_sync_rounds(workload: str = "dirtying") -> int:
    """``dirty-sync-count`` of the patched migration of the ``workload`` guest."""
    return _run(workload, "pv").stats.dirty_sync_count


def check_sync_rounds(prediction) -> Verdict:
    """Exact: a whole number of migration_bitmap_sync calls."""
    v = check_number(prediction, pv_sync_rounds("dirtying"), unit=" syncs")
    if prediction is not None:
        v.message += f" (the hog guest needs {pv_sync_rounds('hog')})"
    return v


def reveal(n: int):
    """The model's answer to exercise ``n`` (1, 2 or 3)."""
    return {1: skipped_fraction, 2: original_mib_at, 3: pv_sync_rounds}[n]()
