"""Where a big guest's time and memory go (the 1 TiB runs of bench/bench.py).

    python bench/profile_1t.py [--ram 1T] [--workload hog] [--mode original]
                               [--what cpu,mem,send,window,build]

* ``cpu``: cProfile of the guest build and of ``Migration.run`` (top functions).
* ``mem``: tracemalloc (numpy reports its buffers to it) per function: the
  transient memory a call needs on top of what was live when it started, and
  ``ru_maxrss`` after each phase; then the big arrays that stay alive.
* ``send``: one ``Migration._send`` batch taken apart statement by statement
  (cProfile books the inline numpy work of ``_send`` as its own time).
* ``window``: the same migration with ``kit.migration._WINDOW`` (the batch
  size cap) patched in this process only: same result, how much faster.
  (A window of 14,390 pages is what ``_send`` would get by sizing its batch
  for full pages, ``MAX_WAIT_S / (NORMAL_PAGE_BYTES / wire)``, instead of for
  the cheapest page.)
* ``build``: the guest build's heavy numpy idioms against cheaper equivalents
  on arrays of this guest's size.

Each section runs in a fresh process.  Nothing in kit/ is changed; patches
are monkeypatches in that process.
"""
from __future__ import annotations

import argparse
import cProfile
import functools
import io
import os
import pstats
import resource
import subprocess
import sys
import time
import tracemalloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

import kit.migration as kmig  # noqa: E402
from kit.guest import Guest  # noqa: E402
from kit.guest.buddy import BuddyAllocator  # noqa: E402
from kit.guest.memory import GuestMemory  # noqa: E402
from kit.memmap import pc_memory_map  # noqa: E402
from kit.migration import Migration  # noqa: E402
from kit.modes import RFC  # noqa: E402
from kit.scenario import Scenario, build as build_migration  # noqa: E402

MiB = 1 << 20


def maxrss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def section(title):
    print(f"\n=== {title}", flush=True)


def scenario(args):
    return Scenario(ram=args.ram, workload=args.workload, mode=args.mode, cost="seed-2016",
                    track_pages=False)


# ------------------------------------------------------------------------------ cpu
def cpu(args):
    section(f"cProfile, {args.ram} {args.workload} {args.mode}")
    for label, fn in (("build", lambda: build_migration(scenario(args))),):
        pr = cProfile.Profile()
        t = time.perf_counter()
        pr.enable()
        m = fn()
        pr.disable()
        print(f"-- {label}: {time.perf_counter() - t:.1f} s (under the profiler)")
        _print_stats(pr, 12)
    pr = cProfile.Profile()
    t = time.perf_counter()
    pr.enable()
    res = m.run()
    pr.disable()
    print(f"-- migrate: {time.perf_counter() - t:.1f} s (under the profiler), "
          f"{res.stats['ram']['dirty-sync-count']} syncs, {m.stats.iterations} ram_save_iterate calls")
    _print_stats(pr, 14)


def _print_stats(pr, n):
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(n)
    lines = [ln for ln in s.getvalue().splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls"))
    print("\n".join(ln.replace(ROOT + "/", "") for ln in lines[start:]))


# ------------------------------------------------------------------------------ mem
class MemTracer:
    """Per-function transient memory with tracemalloc, nested calls handled."""

    def __init__(self):
        self.stack, self.rows = [], {}

    def wrap(self, owner, name):
        fn = getattr(owner, name)
        label = f"{owner.__name__}.{name}"

        @functools.wraps(fn)
        def inner(*a, **kw):
            cur, pk = tracemalloc.get_traced_memory()
            if self.stack:
                self.stack[-1]["peak"] = max(self.stack[-1]["peak"], pk)
            tracemalloc.reset_peak()
            self.stack.append({"start": cur, "peak": cur})
            try:
                return fn(*a, **kw)
            finally:
                cur2, pk2 = tracemalloc.get_traced_memory()
                me = self.stack.pop()
                me["peak"] = max(me["peak"], pk2)
                if self.stack:
                    self.stack[-1]["peak"] = max(self.stack[-1]["peak"], me["peak"])
                tracemalloc.reset_peak()
                row = self.rows.setdefault(label, {"calls": 0, "extra": 0, "peak": 0, "start": 0})
                row["calls"] += 1
                if me["peak"] - me["start"] > row["extra"]:
                    row["extra"], row["start"] = me["peak"] - me["start"], me["start"]
                row["peak"] = max(row["peak"], me["peak"])

        setattr(owner, name, inner)


def mem(args):
    section(f"memory, {args.ram} {args.workload} {args.mode}")
    tr = MemTracer()
    for owner, names in ((Guest, ("_boot", "_prepare")),
                         (BuddyAllocator, ("alloc_pages_bulk", "_maximal_blocks", "_levels",
                                           "free_frames", "reserve_all_ram", "block_count")),
                         (GuestMemory, ("write", "present_mask")),
                         (Guest, ("build_free_page_bitmap",)),
                         (Migration, ("_do_ram_save_setup", "_do_memory_global_dirty_log_start",
                                      "migration_bitmap_sync", "_send", "_migration_completion")),
                         (RFC, ("do_balloon_get_free_pages", "do_wait_free_pages",
                                "do_filter_out_guest_free_pages"))):
        for name in names:
            tr.wrap(owner, name)
    tracemalloc.start()
    base = maxrss_mib()
    m = build_migration(scenario(args))
    guest = m.guest
    rss_build = maxrss_mib()
    m.run()
    rss_all = maxrss_mib()
    peak = max(r["peak"] for r in tr.rows.values())
    tracemalloc.stop()
    print(f"ru_maxrss: {base:.0f} MiB after imports, {rss_build:.0f} MiB after the build, "
          f"{rss_all:.0f} MiB after the migration; tracemalloc peak {peak / MiB:.0f} MiB "
          f"(counts calloc'ed zeros that were never touched, RSS does not)")
    print(f"{'function':50s} {'calls':>5s} {'live at start':>14s} {'extra inside':>13s} {'peak':>9s}")
    for label, r in sorted(tr.rows.items(), key=lambda kv: -kv[1]["peak"]):
        print(f"{label:50s} {r['calls']:5d} {r['start'] / MiB:11.0f} MiB {r['extra'] / MiB:9.0f} MiB "
              f"{r['peak'] / MiB:6.0f} MiB")
    print("arrays alive after the migration:")
    arrays = {"guest.memory.zeroed": guest.memory.zeroed, "guest.memory.version": guest.memory.version,
              "guest.buddy.free": guest.buddy.free, "migration.bmap": m.bmap,
              "migration.free_pages_bmap": m.free_pages_bmap, "guest.working_set": guest.working_set}
    for k, a in arrays.items():
        if a is not None:
            print(f"  {k:28s} {str(a.dtype):7s} {a.size:>12,d} elements {a.nbytes / MiB:8.0f} MiB")


# ------------------------------------------------------------------------------ send
def send(args):
    """Time each statement of one _send batch, on the real arrays, mid-round."""
    section(f"one _send batch taken apart, {args.ram} {args.workload} {args.mode}")
    m = build_migration(scenario(args))
    guest = m.guest
    while m.phase == "setup":
        m.step()
    cpu_ns = m.cost.cpu_ns_per_page * 1e-9
    wire = m.cost.wire_bytes_per_s
    per_page = max(cpu_ns, kmig.ZERO_PAGE_BYTES / wire)
    window = int(min(kmig._WINDOW, kmig.MAX_WAIT_S / per_page + 64))
    ra, rb, pa = guest.memory.ram_segments()[-1]
    a = ra + (rb - ra) // 2
    b = a + window
    T = {}

    def t(label, fn, reps=50):
        best = float("inf")
        for _ in range(reps):
            s = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - s)
        T[label] = best
        return out

    idx = t("idx = flatnonzero(bmap[a:b])", lambda: np.flatnonzero(m.bmap[a:b]))
    zero = t("zero = memory.zero_of(pa - ra + a + idx)", lambda: guest.memory.zero_of(pa - ra + a + idx))
    nbytes = t("nbytes = where(zero, 9, 4104)",
               lambda: np.where(zero, kmig.ZERO_PAGE_BYTES, kmig.NORMAL_PAGE_BYTES))
    cum_bytes = t("cum_bytes = used + cumsum(nbytes)", lambda: 0 + np.cumsum(nbytes))
    cum_cpu = t("cum_cpu = used + cpu_ns * arange(1, n+1)",
                lambda: 0.0 + cpu_ns * np.arange(1, len(idx) + 1))
    done = t("done = (max(cum_cpu, cum_bytes/wire) >= budget) | (cum_bytes >= byte_budget)",
             lambda: (np.maximum(cum_cpu, cum_bytes / wire) >= kmig.MAX_WAIT_S) | (cum_bytes >= np.inf))
    take = t("take = argmax(done) + 1 if done.any()",
             lambda: int(np.argmax(done)) + 1 if done.any() else len(idx))
    pages = a + idx[:take]
    saved = m.bmap[pages].copy()
    t("bmap[pages] = False", lambda: m.bmap.__setitem__(pages, False))
    m.bmap[pages] = saved
    t("count_nonzero(zero[:take])", lambda: int(np.count_nonzero(zero[:take])))
    total = sum(v for v in T.values() if v)
    print(f"window {window:,} pages examined per batch, {take:,} taken (the time budget runs out "
          f"after {take / window:.0%} of the window: full pages cost {kmig.NORMAL_PAGE_BYTES / wire * 1e6:.2f} µs "
          f"on the wire, the window is sized for {per_page * 1e6:.3f} µs)")
    for k, v in T.items():
        if v:
            print(f"  {v * 1e6:8.0f} µs  {v / total:4.0%}  {k}")
    print(f"  {total * 1e6:8.0f} µs  per batch in numpy; x {m.total_pages / take:,.0f} batches "
          f"(one per ram_save_iterate) = {total * m.total_pages / take:.1f} s")


# ------------------------------------------------------------------------------ window
def window(args):
    section(f"_WINDOW patched in this process, {args.ram} {args.workload} {args.mode}")
    orig = kmig._WINDOW
    ref = None
    for w in (orig, 1 << 15, 1 << 14, 14390):
        kmig._WINDOW = w
        best = float("inf")
        for _ in range(args.reps):
            m = build_migration(scenario(args))
            s = time.perf_counter()
            res = m.run()
            best = min(best, time.perf_counter() - s)
            del m
        same = "" if ref is None else ("  same stats" if res.stats == ref else "  STATS DIFFER")
        ref = ref or res.stats
        print(f"  _WINDOW = {w:7,d}: migrate {best:6.2f} s{same}", flush=True)
    kmig._WINDOW = orig


# ------------------------------------------------------------------------------ build
def build(args):
    section(f"guest-build idioms on arrays of this size ({args.ram})")
    mm = pc_memory_map(args.ram)
    n = GuestMemory(mm).nframes
    rng = np.random.default_rng(0)
    mask = np.ones(n, bool)
    mask[rng.integers(0, n, n // 30)] = False          # ~97% set, like the hog's allocation
    version = np.zeros(n, np.uint16)
    zero = np.ones(n, bool)
    free = np.zeros(n, bool)

    def best(fn, reps=3):
        out = float("inf")
        for _ in range(reps):
            s = time.perf_counter()
            fn()
            out = min(out, time.perf_counter() - s)
        return out

    def both(label, slow, fast):
        ts, tf = best(slow), best(fast)
        print(f"  {ts * 1e3:8.1f} ms -> {tf * 1e3:8.1f} ms ({ts / tf:4.1f}x)  {label}")

    print(f"{n:,} frames, bool mask with {np.count_nonzero(mask):,} set")
    both("GuestMemory.write: version[mask] += 1  ->  version += mask (np.add(version, mask, out=version))",
         lambda: version.__setitem__(mask, version[mask] + np.uint16(1)),
         lambda: np.add(version, mask, out=version))
    both("GuestMemory.write: zero[mask] = False  ->  np.greater(zero, mask, out=zero)",
         lambda: zero.__setitem__(mask, False),
         lambda: np.greater(zero, mask, out=zero))
    both("free_frames: free[mask].any(); free[mask] = True  ->  (free & mask).any(); free |= mask",
         lambda: (free[mask].any(), free.__setitem__(mask, True)),
         lambda: (np.logical_and(free, mask).any(), np.logical_or(free, mask, out=free)))
    lev0, lev1 = mask, mask[0::2] & mask[1::2]
    both("_maximal_blocks order 0: cur & ~np.repeat(parent, 2)  ->  "
         "np.where(parent, 0, cur.view(np.uint16)).view(bool)",
         lambda: lev0 & ~np.repeat(lev1, 2),
         lambda: np.where(lev1, np.uint16(0), lev0.view(np.uint16)).view(bool))
    assert np.array_equal(lev0 & ~np.repeat(lev1, 2),
                          np.where(lev1, np.uint16(0), lev0.view(np.uint16)).view(bool))
    both("_levels order 1: cur[0::2] & cur[1::2]  ->  cur.view(np.uint16) == 0x0101",
         lambda: lev0[0::2] & lev0[1::2],
         lambda: lev0.view(np.uint16) == 0x0101)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ram", default="1T")
    ap.add_argument("--workload", default="hog")
    ap.add_argument("--mode", default="original")
    ap.add_argument("--reps", type=int, default=1, help="best of N for --what window")
    ap.add_argument("--what", default="cpu,mem,send,window,build")
    args = ap.parse_args()
    sections = {"cpu": cpu, "mem": mem, "send": send, "window": window, "build": build}
    whats = args.what.split(",")
    if len(whats) == 1:
        sections[whats[0]](args)
        return
    # one fresh process per section, so that ru_maxrss and freed memory are each section's own
    for what in whats:
        if what not in sections:
            raise SystemExit(f"unknown section {what!r}; choose from {', '.join(sections)}")
        cmd = [sys.executable, os.path.abspath(__file__), "--ram", args.ram, "--workload", args.workload,
               "--mode", args.mode, "--reps", str(args.reps), "--what", what]
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
