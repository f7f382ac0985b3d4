"""Kernel-side redraw time of an 8 GiB guest's page map (classes -> RGB -> PNG), best of 10."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from kit.scenario import Scenario, build  # noqa: E402
from kit.viz import pagemap as pm  # noqa: E402


def best(fn, n=10):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out) * 1000, sorted(out)[len(out) // 2] * 1000


m = build(Scenario(ram=8 << 30, workload="hog", mode="pv", track_pages=True))
g = m.guest
m.run(until=0.3)
guest = best(lambda: pm.png(pm.render(pm.guest_classes(g), pm.GUEST_COLOURS)))
mig = best(lambda: pm.png(pm.render(pm.migration_classes(m), pm.MIGRATION_COLOURS)))
print("| 8 GiB page map redraw (1024 x 512 PNG) | best | median | target |")
print("|---|---:|---:|---:|")
print(f"| guest view (used/free/zero/stale) | {guest[0]:.0f} ms | {guest[1]:.0f} ms | <= 100 ms |")
print(f"| migration view (sent/skipped/pending) | {mig[0]:.0f} ms | {mig[1]:.0f} ms | <= 100 ms |")
