"""Redo the tcg-loopback fit on data/lab/curves/ (the runs with QEMU's curve and trace) and print
the values to store, then the lab-vs-model table and the 90th-percentile errors of the predicted
cells (see kit/lab/model.py).  Usage: python bench/calibrate_lab.py [DIR]"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from kit.lab.model import CURVES, compare, fit_tcg_loopback, hint_timing, load_rows, prediction_errors  # noqa: E402

rows = load_rows(sys.argv[1] if len(sys.argv) > 1 else CURVES)
t = time.perf_counter()
cost = fit_tcg_loopback(rows)
print(f"{len(rows)} rows; fit took {time.perf_counter() - t:.1f} s")
for name in ("wire_bytes_per_s", "cpu_ns_per_page", "setup_ms", "setup_ns_per_page", "hint_start_ms",
             "hint_ns_per_block", "hint_drain_chance",
             "hint_drain_chance_busy"):
    print(f"CostModel.{name} = {getattr(cost, name)!r}")
for k, v in cost.guest_sizes.items():
    print(f"guest_sizes[{k!r}] = {v if k in ('hog_fraction', 'hog_unmerged_blocks') else f'{v // 4096} * 4096'}")
print()
print(f"{'RAM':>4} {'workload':8} {'hint':4} {'role':9} {'n':>2} | {'time lab':>8} {'model':>6} {'diff':>6} | "
      f"{'KB lab':>8} {'model':>8} {'diff':>6}")
for r in sorted(compare(rows, cost), key=lambda r: (int(r['ram'][:-1]), r['workload'], r['hint'])):
    lt, mt = r["lab"]["total-time-ms"], r["model"]["total-time-ms"]
    lk, mk = r["lab"]["transferred-kb"], r["model"]["transferred-kb"]
    print(f"{r['ram']:>4} {r['workload']:8} {'on' if r['hint'] else 'off':4} {r['role']:9} {r['runs']:>2} | "
          f"{lt:>8.0f} {mt:>6} {100 * (mt / lt - 1):>+5.0f}% | {lk:>8.0f} {mk:>8} {100 * (mk / lk - 1):>+5.0f}%")

cmp = compare(rows, cost)
print()
print("hint timing from the trace (1G, hint on):", hint_timing(rows, "1G"))
for hint, e in prediction_errors(cmp).items():
    print(f"predicted cells, hint {hint}: {e['cells']} cells, p90 |error| time {100 * e['p90-time']:.1f} %, "
          f"bytes {100 * e['p90-bytes']:.1f} %; p90 run-to-run spread time {100 * e['p90-spread-time']:.1f} %, "
          f"bytes {100 * e['p90-spread-bytes']:.1f} %")
