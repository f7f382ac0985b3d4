"""Redo the seed-2016 fit from its fixed start and print the values to store (see kit/calibrate.py)."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from kit.calibrate import fit_seed_2016  # noqa: E402
from kit.units import MiB  # noqa: E402

t = time.perf_counter()
cost, wl, report = fit_seed_2016()
print(f"fit took {time.perf_counter() - t:.1f} s")
for name in ("cpu_ns_per_page", "setup_ms", "dirty_log_ns_per_backed_page",
             "guest_walk_ns_per_free_page", "bitmap_transfer_ns_per_byte"):
    print(f"CostModel.{name} = {getattr(cost, name)!r}")
idle = wl["idle"]
print(f"Workload.boot_footprint = {idle.boot_footprint // 4096} pages ({idle.boot_footprint / MiB:.2f} MiB)")
print(f"Workload.boot_stale_free = {idle.boot_stale_free // 4096} pages ({idle.boot_stale_free / MiB:.2f} MiB)")
print(f"hog.hog_fraction = {wl['hog'].hog_fraction!r}")
print()
print(f"{'figure':28} {'role':10} {'model':>12} {'seed':>10} {'diff':>9}  by / what it tests")
for r in report:
    w, m, what = r["figure"]
    print(f"{w + ' ' + m + ' ' + what:28} {r['role']:10} {r['model']:12.1f} {r['seed']:10} "
          f"{100 * (r['model'] / r['seed'] - 1):+8.3f}%  {r['by'] or r['tests']}")
