"""The seed's table, recomputed by the model (``python -m kit reproduce``)."""
from __future__ import annotations

from .reference import SEED_2016, SEED_2016_RAM
from .scenario import Scenario, run


def reproduce_seed(preset="seed-2016", machine="pc"):
    """Run the seed's four migrations in the model; return rows with model and seed figures.

    The seed does not say which machine type it used; QEMU's default ``pc`` is assumed.
    """
    rows = []
    for ref in SEED_2016:
        r = run(Scenario(ram=SEED_2016_RAM, workload=ref["workload"], mode=ref["mode"], machine=machine,
                         cost=preset, track_pages=False))
        s = r.stats
        rows.append({"case": ref["case"], "mode": ref["mode"],
                     "total-time-ms": s["total-time"], "transferred-kb": s["ram"]["transferred"] >> 10,
                     "seed-total-time-ms": ref["total-time-ms"],
                     "seed-transferred-kb": ref["transferred-kb"],
                     "setup-time-ms": s["setup-time"], "downtime-ms": s["downtime"]})
    return rows
