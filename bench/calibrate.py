"""Redo the seed-2016 fit and print the values to store (see kit/calibrate.py)."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from kit.calibrate import fit_seed_2016
from kit.units import MiB

t = time.perf_counter()
cost, wl = fit_seed_2016()
print(f"fit took {time.perf_counter() - t:.1f} s")
for name in ("cpu_ns_per_page", "setup_ms", "dirty_log_ns_per_backed_page",
             "guest_walk_ns_per_free_page", "bitmap_transfer_ns_per_byte"):
    print(f"CostModel.{name} = {getattr(cost, name)!r}")
idle = wl["idle"]
print(f"Workload.boot_footprint = {idle.boot_footprint // 4096} pages ({idle.boot_footprint / MiB:.2f} MiB)")
print(f"Workload.boot_stale_free = {idle.boot_stale_free // 4096} pages ({idle.boot_stale_free / MiB:.2f} MiB)")
print(f"hog.hog_fraction = {wl['hog'].hog_fraction!r}")
