"""The lab next to the model: recorded rows, their medians, the ``tcg-loopback`` fit.

Recorded runs live in ``data/lab/*.json`` (one row per run, written by
``python -m kit lab matrix``).  :func:`medians` groups them by
(RAM, workload, hint) and takes the median of each figure over the
repetitions.  :func:`fit_tcg_loopback` calibrates the ``tcg-loopback`` preset
on the cells of one RAM size only, by running the model (as
:func:`kit.calibrate.fit_seed_2016` does for the seed):

==================================  =============================================
parameter                           fitted to (lab medians at the calibration size)
==================================  =============================================
guest_sizes.boot_footprint          idle guest's MemFree (the KIT-READY line)
guest_sizes.boot_stale_free         idle, hint off: pages sent in full (normal)
guest_sizes.hog_fraction            hog, hint off: pages sent in full
guest_sizes.hog_unmerged_blocks     hint on: 4 MiB blocks hinted, idle minus hog (measured)
CostModel.setup_ns_per_page         QEMU's own setup-time / pages (measured, not fitted)
CostModel.cpu_ns_per_page           idle, hint off: total time
CostModel.wire_bytes_per_s          hog, hint off: total time
CostModel.hint_start_ms             QEMU's trace, hint on: first pop after the round's start
CostModel.hint_ns_per_block         QEMU's trace, hint on: the guest's pace, an upper bound, the
                                    tightest with the bandwidth-limited runs of data/lab/guest-pace
                                    (measured, not fitted; rows recorded before the trace: hog,
                                    hint on, pages sent in full)
CostModel.hint_drain_chance         QEMU's trace, hint on: share of the gaps between iterations
                                    where the iothread drained the free page queue
CostModel.hint_drain_chance_busy    the same, dirtying (the vCPU busy at every gap)
==================================  =============================================

Everything else is a prediction: the times and bytes of hint on, every other
RAM size, and ``python -m kit migrate --preset tcg-loopback`` anywhere.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from .. import scenario as _scenario
from ..costmodel import get_preset
from ..scenario import Scenario
from ..units import MiB, TARGET_PAGE_SIZE

DATA = Path(__file__).resolve().parents[2] / "data" / "lab"
CURVES = DATA / "curves"      # rows with the migration's curve and QEMU's trace (kit-lab-run/2)
FIGURES = ("total-time-ms", "transferred-kb", "normal-pages", "zero-pages", "pages-sent",
           "pages-skipped", "downtime-ms", "setup-time-ms")


def load_rows(path=DATA, pattern="*.json") -> list[dict]:
    """Every row under ``path`` (not its subfolders), oldest first."""
    rows = [json.loads(p.read_text()) for p in sorted(Path(path).glob(pattern))]
    return sorted(rows, key=lambda r: r.get("started", ""))


def _memfree_kib(row):
    line = row.get("guest", {}).get("ready-line", "")
    for part in line.split():
        if part.startswith("memfree_kib="):
            return int(part.split("=", 1)[1])
    return None


_TIMES = ("total-time-ms", "downtime-ms", "setup-time-ms")


def _time_unreported(row) -> bool:
    """QEMU 7.2 now and then completes a migration with ``total-time`` 0 (and downtime 0)
    while its setup-time says it ran: its times are then not counted (its bytes are)."""
    return row.get("derived", {}).get("total-time-ms") == 0


def cell_of(row) -> tuple:
    """A row's cell: ``(ram, workload, hint)``, as the tables key it."""
    c = row["config"]
    return c["ram"], c["workload"], bool(c["free_page_hint"])


def medians(rows, workloads=("idle", "hog")) -> dict:
    """{(ram, workload, hint): {figure: median, "runs": n, "failed": m}} of the ok rows."""
    cells: dict = {}
    for r in rows:
        c = r["config"]
        if c["workload"] not in workloads:
            continue
        cells.setdefault(cell_of(r), []).append(r)
    out = {}
    for key, rs in sorted(cells.items()):
        ok = [r for r in rs if r["status"] == "ok"]
        cell = {"runs": len(ok), "failed": len(rs) - len(ok), "ram-mib": rs[0]["config"]["ram-mib"]}
        for f in FIGURES:
            vals = [r["derived"][f] for r in ok if r.get("derived", {}).get(f) is not None
                    and not (f in _TIMES and _time_unreported(r))]
            cell[f] = statistics.median(vals) if vals else None
            cell[f + "-range"] = (min(vals), max(vals)) if vals else None
        free = [m for m in map(_memfree_kib, ok) if m is not None]
        cell["memfree-kib"] = statistics.median(free) if free else None
        out[key] = cell
    return out


def model_run(cost, ram_mib, workload, hint, machine="pc", guest_sizes=None):
    """The model's query-migrate statistics for one lab cell (``guest_sizes``: the
    preset's guest image replaced, as the fit tries values)."""
    cost = get_preset(cost)
    if guest_sizes:
        cost = cost.with_(guest_sizes=guest_sizes)
    return model_run_mode(cost, ram_mib, workload, "hint" if hint else "original", machine)


def model_figures(stats) -> dict:
    ram = stats["ram"]
    return {"total-time-ms": stats["total-time"], "transferred-kb": ram["transferred"] >> 10,
            "normal-pages": ram["normal"], "zero-pages": ram["duplicate"],
            "pages-sent": ram["normal"] + ram["duplicate"],
            "pages-skipped": ram["total"] // TARGET_PAGE_SIZE - ram["normal"] - ram["duplicate"],
            "downtime-ms": stats["downtime"], "setup-time-ms": stats["setup-time"]}


def _secant(f, x0, x1, target, lo=0.0, hi=None, steps=8, tol=1e-3):
    """Solve f(x) = target for a monotone f, starting from x0, x1."""
    f0, f1 = f(x0) - target, f(x1) - target
    for _ in range(steps):
        if f1 == f0 or abs(f1) <= tol * max(abs(target), 1):
            break
        x2 = x1 - f1 * (x1 - x0) / (f1 - f0)
        x2 = max(lo, x2 if hi is None else min(hi, x2))
        x0, f0, x1 = x1, f1, x2
        f1 = f(x1) - target
    return x1


def _log_bisect(f, lo, hi, target, steps=24):
    """Solve f(x) = target for a nondecreasing f that may be flat in places
    (where a secant step would stall), by bisection on log(x)."""
    for _ in range(steps):
        mid = (lo * hi) ** 0.5
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
    return (lo * hi) ** 0.5


def _round_pops(row):
    """(pops of the first hinting round in ms after it started, its length in ms), or None.

    A round starts when the first ``migration_bitmap_sync`` ends (its AFTER_BITMAP_SYNC
    notifier writes the cmd id) and stops when the next one starts."""
    tr = row.get("trace") or {}
    ends, begins = tr.get("bitmap-sync-end-ms", []), tr.get("bitmap-sync-start-ms", [])
    if not ends:
        return None
    r0, r1 = ends[0], begins[1] if len(begins) > 1 else float("inf")
    return [t - r0 for t in tr.get("hint-pops-ms", []) if r0 <= t < r1], r1 - r0


def _gaps(pops, period):
    """How many pops each gap between two ``ram_save_iterate`` calls saw: gap k is the
    window of half a period either side of ``k * period`` after the round's start."""
    counts = []
    k = 1
    while (k - 0.5) * period <= pops[-1]:
        counts.append(sum(1 for t in pops if abs(t - k * period) < period / 2))
        k += 1
    return counts


def hint_timing(rows, ram=None, workloads=("idle", "hog")) -> dict:
    """When the guest's hints reach QEMU and when QEMU applies them, from the source's trace
    (rows of kit-lab-run/2; ``ram``: only that size).

    Each pop of the free page queue is one element QEMU's iothread takes (the first is the
    guest's cmd id).  In QEMU 7.2 the iothread needs ``bitmap_mutex`` for each hint, which
    ``ram_save_iterate`` holds for up to 50 ms, so the pops come in groups, one group per
    gap between two iterations: one pop when the iothread got the mutex for one hint, a
    burst when it kept it and drained the queue.  Returned medians and counts:

    * ``start-ms``: the first pop after the round starts;
    * ``period-ms``: the time between two gaps (the spacing of single pops, 40-60 ms);
    * ``drain-chance``: of the gaps while hints were waiting, the share with a burst
      (more than three pops);
    * ``ns-per-block``: the guest's pace, at most: each run bounds it by the fewest ms
      per block any gap shows (pops so far over the time since the round started); the
      tightest bound over the runs.
    """
    rounds = []                     # the first round's pops of every run that counts
    for r in rows:
        c = r.get("config", {})
        if r.get("status") != "ok" or not c.get("free_page_hint") or "trace" not in r:
            continue
        if (ram is not None and c.get("ram") != ram) or c.get("workload") not in workloads:
            continue
        got = _round_pops(r)
        if got and len(got[0]) >= 2:
            rounds.append(got[0])
    if not rounds:
        return {"runs": 0, "start-ms": None, "ns-per-block": None, "drain-chance": None}
    starts, singles, paces = [], [], []
    for pops in rounds:
        starts.append(pops[0])
        groups = [[pops[0]]]
        for a, b in zip(pops, pops[1:]):
            if b - a > 1.0:
                groups.append([b])
            else:
                groups[-1].append(b)
        heads = [g[0] for g in groups if len(g) <= 2]
        singles += [b - a for a, b in zip(heads, heads[1:]) if 40 <= b - a <= 60]
        done = 0
        best = float("inf")
        for g in groups:
            done += len(g)
            if done > 2:
                best = min(best, g[-1] / (done - 1))
        if best < float("inf"):
            paces.append(best)
    period = statistics.median(singles) if singles else 50.0
    gaps = drains = 0
    for pops in rounds:
        counts = _gaps(pops, period)
        gaps += len(counts)
        drains += sum(1 for n in counts if n > 3)
    return {"runs": len(rounds), "start-ms": statistics.median(starts),
            "ns-per-block": min(paces) * 1e6, "period-ms": period, "period-measured": bool(singles),
            "drain-chance": drains / gaps if gaps else None, "gaps": gaps, "drains": drains,
            "start-ms-range": (min(starts), max(starts)),
            "ns-per-block-range": (min(paces) * 1e6, max(paces) * 1e6)}


PACE = DATA / "guest-pace"


def fit_tcg_loopback(rows, ram="1G", start="tcg-loopback", rounds=2, pace_rows=None):
    """Return a CostModel fitted to the lab medians at ``ram`` (see the module table).

    ``pace_rows``: runs at ``ram`` with a bandwidth limit (default: those of :data:`PACE`).
    The limit makes the migration thread sleep between short iterations, so QEMU's iothread
    takes each hint soon after the guest queues it, and they bound the guest's pace more
    tightly than unlimited runs, where hints wait up to 50 ms for a gap."""
    if pace_rows is None:
        pace_rows = load_rows(PACE) if PACE.is_dir() else []
    cells = medians(rows)
    need = [(ram, w, h) for w in ("idle", "hog") for h in (False, True)]
    missing = [k for k in need if k not in cells or not cells[k]["runs"]]
    if missing:
        raise ValueError(f"no ok lab rows for {missing}: record them with python -m kit lab matrix")
    ram_mib = cells[need[0]]["ram-mib"]
    c = {(w, h): cells[(ram, w, h)] for (_, w, h) in need}
    cost = get_preset(start)
    sizes = dict(cost.guest_sizes)
    setup = statistics.median([r["derived"]["setup-time-ms"] for r in rows
                               if r["status"] == "ok" and r["config"]["ram"] == ram
                               and r["config"]["workload"] in ("idle", "hog")])
    total_pages = _scenario.build(model_scenario(cost, ram_mib, "idle", "original")).total_pages
    cost = cost.with_(setup_ms=0.0, setup_ns_per_page=float(f"{setup * 1e6 / total_pages:.4g}"),
                      dirty_log_ns_per_backed_page=0.0)

    def run(workload, hint, cm=None, gs=None):
        return model_figures(model_run(cm or cost, ram_mib, workload, hint, guest_sizes=gs or sizes))

    def free_pages(gs):
        s = model_scenario(cost.with_(guest_sizes=gs), ram_mib, "idle", "original")
        return _scenario.guest(s).buddy.nr_free_pages

    page = TARGET_PAGE_SIZE
    # measured: the hog guest hints fewer whole 4 MiB blocks than the idle one (at this size
    # every block is hinted before the scanner gets there, so the difference is the guest's).
    # Rows without a trace fit the hint speed to the hog's pages instead, so they keep 0.
    timing = hint_timing(rows, ram)
    traced = timing["runs"] > 0
    # the guest's pace: the tightest upper bound that any run gives, the bandwidth-limited ones
    # included (hint_timing takes the fewest ms per block over all the runs it is given)
    pace_ns = hint_timing(list(rows) + list(pace_rows), ram)["ns-per-block"] if traced else None
    busy = hint_timing(rows, ram, workloads=("dirtying",))
    sizes["hog_unmerged_blocks"] = max(0, round((c["idle", True]["pages-skipped"]
                                                 - c["hog", True]["pages-skipped"]) / 1024)) if traced else 0
    for _ in range(rounds):
        # bytes: the guest image
        want_free = c["idle", False]["memfree-kib"] * 1024 // page
        fp = _secant(lambda x: free_pages(sizes | {"boot_footprint": int(x) * page}),
                     sizes["boot_footprint"] // page, sizes["boot_footprint"] // page + 1000, want_free)
        sizes["boot_footprint"] = int(round(fp)) * page
        st = _secant(lambda x: run("idle", False, gs=sizes | {"boot_stale_free": int(x) * page})["normal-pages"],
                     sizes["boot_stale_free"] // page, sizes["boot_stale_free"] // page + 1000,
                     c["idle", False]["normal-pages"])
        sizes["boot_stale_free"] = int(round(st)) * page
        hf = _secant(lambda x: run("hog", False, gs=sizes | {"hog_fraction": x})["normal-pages"],
                     sizes["hog_fraction"], sizes["hog_fraction"] - 0.02, c["hog", False]["normal-pages"],
                     lo=0.0, hi=1.0)
        sizes["hog_fraction"] = round(hf, 4)
        # times
        cpu = _secant(lambda x: run("idle", False, cm=cost.with_(cpu_ns_per_page=x))["total-time-ms"],
                      cost.cpu_ns_per_page, cost.cpu_ns_per_page * 1.1, c["idle", False]["total-time-ms"])
        cost = cost.with_(cpu_ns_per_page=round(cpu, 1))
        wire = _secant(lambda x: run("hog", False, cm=cost.with_(wire_bytes_per_s=x))["total-time-ms"],
                       cost.wire_bytes_per_s, cost.wire_bytes_per_s * 1.1, c["hog", False]["total-time-ms"],
                       lo=1e6)
        cost = cost.with_(wire_bytes_per_s=float(round(wire, -5)))
        if traced:
            # measured: when the hints reached QEMU, from its trace
            cost = cost.with_(hint_start_ms=float(f"{timing['start-ms']:.3g}"),
                              hint_ns_per_block=float(f"{pace_ns:.3g}"),
                              hint_drain_chance=float(f"{timing['drain-chance']:.3g}"))
            if busy["runs"] and busy["drain-chance"] is not None:
                cost = cost.with_(hint_drain_chance_busy=float(f"{busy['drain-chance']:.3g}"))
        else:
            # rows without a trace: pages sent in full with hints rise with the time a hint
            # takes, and stay flat while every hint beats the migration thread to its block
            cost = cost.with_(hint_start_ms=0.0, hint_drain_chance=None, hint_drain_chance_busy=None)
            hint = _log_bisect(lambda x: run("hog", True, cm=cost.with_(hint_ns_per_block=x))["normal-pages"],
                               100.0, 1e8, c["hog", True]["normal-pages"])
            cost = cost.with_(hint_ns_per_block=float(f"{hint:.3g}"))
    return cost.with_(guest_sizes=sizes)


def compare(rows, cost="tcg-loopback", calibrated_on="1G") -> list[dict]:
    """One row per lab cell: lab medians (with ranges) beside the model's figures."""
    out = []
    for (ram, workload, hint), cell in medians(rows).items():
        if not cell["runs"]:
            continue
        m = model_figures(model_run(cost, cell["ram-mib"], workload, hint))
        out.append({"ram": ram, "workload": workload, "hint": hint, "runs": cell["runs"],
                    "failed": cell["failed"], "role": "fit" if ram == calibrated_on else "predicted",
                    "lab": {f: cell[f] for f in FIGURES}, "lab-range": {f: cell[f + "-range"] for f in FIGURES},
                    "model": m})
    return out


def prediction_errors(cmp) -> dict:
    """The 90th percentile of the absolute error of time and of bytes over the *predicted*
    cells of :func:`compare`, hint off and on apart (kit.stats: plain floats), with each
    cell's run-to-run spread (range over median) for comparison."""
    from ..stats import percentile
    out = {}
    for hint in (False, True):
        cells = [r for r in cmp if r["hint"] == hint and r["role"] == "predicted"]
        if not cells:
            continue
        err_t = [abs(r["model"]["total-time-ms"] / r["lab"]["total-time-ms"] - 1) for r in cells
                 if r["lab"]["total-time-ms"]]
        err_b = [abs(r["model"]["transferred-kb"] / r["lab"]["transferred-kb"] - 1) for r in cells]
        spread_t = [(r["lab-range"]["total-time-ms"][1] - r["lab-range"]["total-time-ms"][0])
                    / r["lab"]["total-time-ms"] for r in cells if r["lab"]["total-time-ms"]]
        spread_b = [(r["lab-range"]["transferred-kb"][1] - r["lab-range"]["transferred-kb"][0])
                    / r["lab"]["transferred-kb"] for r in cells]
        out["on" if hint else "off"] = {"cells": len(cells), "p90-time": percentile(err_t, 90),
                                        "p90-bytes": percentile(err_b, 90),
                                        "p90-spread-time": percentile(spread_t, 90),
                                        "p90-spread-bytes": percentile(spread_b, 90)}
    return out


# --------------------------------------------------------------------------- notebook 08 (appended)
# Pure helpers for notebooks/08-real-qemu-lab.ipynb: they read rows and run the
# model, and leave every existing function above as it was.

STRESS = DATA / "stress"


def model_scenario(cost, ram_mib, workload, mode, machine="pc", vga_vram=16 * MiB) -> Scenario:
    """The scenario of one lab cell in the model (seed 0, pages not tracked)."""
    return Scenario(ram=ram_mib * MiB, workload=workload, mode=mode, machine=machine,
                    cost=get_preset(cost), seed=0, vga_vram=vga_vram, track_pages=False)


def model_run_mode(cost, ram_mib, workload, mode, machine="pc", vga_vram=16 * MiB):
    """:func:`model_run` for any mode (``original``, ``pv``, ``hint``, ``report``) and a
    chosen second RAMBlock.  The lab's QEMU runs with ``-nodefaults`` (no VGA), so
    ``vga_vram=0`` is the lab's layout; :func:`model_run` keeps the model's 16 MiB."""
    return _scenario.run(model_scenario(cost, ram_mib, workload, mode, machine, vga_vram)).stats


def cell_values(rows, figure, workloads=("idle", "hog")) -> dict:
    """{(ram, workload, hint): [figure of each ok run, oldest first]} (``figure`` from
    ``row["derived"]``, or ``"load1"``: the host's 1-minute load average before the run)."""
    out: dict = {}
    for r in sorted(rows, key=lambda r: r.get("started", "")):
        c = r["config"]
        if c["workload"] not in workloads or r["status"] != "ok":
            continue
        if figure in _TIMES and _time_unreported(r):
            continue
        v = (r.get("host", {}).get("loadavg") or [None])[0] if figure == "load1" \
            else r.get("derived", {}).get(figure)
        if v is not None:
            out.setdefault(cell_of(r), []).append(v)
    return out


def spread(values) -> float:
    """(max - min) / median of some runs: 0 when they all agree."""
    med = statistics.median(values)
    return (max(values) - min(values)) / med if med else 0.0


def hint_race(rows) -> dict:
    """How much runs of one cell differ, hint off against hint on, per (ram, workload):
    the spread (:func:`spread`) of the pages sent in full and of the total time, and
    the fewest and most pages skipped with hints."""
    normal, skipped = cell_values(rows, "normal-pages"), cell_values(rows, "pages-skipped")
    times = cell_values(rows, "total-time-ms")
    out = {}
    for (ram, wl, hint), vals in normal.items():
        if hint or (ram, wl, True) not in normal:
            continue
        on, sk = normal[ram, wl, True], skipped[ram, wl, True]
        out[ram, wl] = {"normal-off": spread(vals), "normal-on": spread(on),
                        "time-off": spread(times[ram, wl, False]), "time-on": spread(times[ram, wl, True]),
                        "skipped-min": min(sk), "skipped-max": max(sk),
                        "runs-off": len(vals), "runs-on": len(on)}
    return out


def size_scaling(rows, cost) -> dict:
    """Time against RAM for each (workload, hint): a straight line ``a + b * GiB``
    through the lab medians (least squares, :func:`kit.stats.line_fit`: plain floats,
    the same on every CPU) and through the model's runs at the same sizes.  ``a``
    is the part that does not grow with RAM."""
    from ..stats import line_fit
    med = medians(rows)
    out = {}
    for wl in ("idle", "hog"):
        for hint in (False, True):
            cells = sorted((c["ram-mib"], c["total-time-ms"]) for (ram, w, h), c in med.items()
                           if w == wl and h == hint and c["runs"])
            if len(cells) < 2:
                continue
            gib = [m / 1024 for m, _ in cells]
            lab = [float(t) for _, t in cells]
            model = [float(model_figures(model_run(cost, m, wl, hint))["total-time-ms"])
                     for m, _ in cells]
            la, lb = line_fit(gib, lab)
            ma, mb = line_fit(gib, model)
            out[wl, hint] = {"gib": gib, "lab": lab, "model": model,
                             "lab-fixed-ms": float(la), "lab-ms-per-gib": float(lb),
                             "model-fixed-ms": float(ma), "model-ms-per-gib": float(mb)}
    return out


def ramblocks(rows, cost) -> dict:
    """Pages outside the guest's RAM that each side migrates, per RAM size: the lab's
    (QEMU's ``ram.total`` minus ``-m``: firmware and option ROMs) and the model's
    (its ``vga.vram``), with the model's zero pages with and without that block."""
    out = {}
    for r in rows:
        if r["status"] != "ok" or r["config"]["workload"] not in ("idle", "hog"):
            continue
        ram, mib = r["config"]["ram"], r["config"]["ram-mib"]
        if ram in out:
            continue
        total = r["query-migrate"]["ram"]["total"] // TARGET_PAGE_SIZE
        m16 = model_run_mode(cost, mib, "idle", "original")
        m0 = model_run_mode(cost, mib, "idle", "original", vga_vram=0)
        out[ram] = {"guest-pages": mib * MiB // TARGET_PAGE_SIZE,
                    "lab-other-pages": total - mib * MiB // TARGET_PAGE_SIZE,
                    "model-other-pages": m16["ram"]["total"] // TARGET_PAGE_SIZE - mib * MiB // TARGET_PAGE_SIZE,
                    "model-zero-pages": m16["ram"]["duplicate"], "model-zero-pages-no-vga": m0["ram"]["duplicate"]}
    return dict(sorted(out.items(), key=lambda kv: kv[1]["guest-pages"]))


def downtime_cells(rows) -> dict:
    """{(ram, workload, hint): {"downtime-ms": [..], "downtime-bytes": [..]}} of the ok runs
    (``downtime-bytes`` is QEMU's count of bytes sent while the guest was paused)."""
    out: dict = {}
    for r in sorted(rows, key=lambda r: r.get("started", "")):
        c = r["config"]
        if r["status"] != "ok" or c["workload"] not in ("idle", "hog"):
            continue
        cell = out.setdefault(cell_of(r), {"downtime-ms": [], "downtime-bytes": []})
        cell["downtime-ms"].append(r["query-migrate"]["downtime"])
        cell["downtime-bytes"].append(r["query-migrate"]["ram"].get("downtime-bytes"))
    return out


def load_effect(rows) -> list[dict]:
    """Each ok run's total time against its cell's median, beside the host's load."""
    med = medians(rows)
    out = []
    for r in rows:
        c = r["config"]
        if r["status"] != "ok" or c["workload"] not in ("idle", "hog") or _time_unreported(r):
            continue
        cell = med[cell_of(r)]
        out.append({"ram": c["ram"], "workload": c["workload"], "hint": bool(c["free_page_hint"]),
                    "load1": (r["host"].get("loadavg") or [None])[0],
                    "load1-after": (r["host"].get("loadavg-after") or [None])[0],
                    "time-vs-median": r["derived"]["total-time-ms"] / cell["total-time-ms"]})
    return out


def load_stress_rows(path=STRESS) -> list[dict]:
    """The stress + verify runs (rows with a ``verify`` key), oldest first; [] if none."""
    path = Path(path)
    if not path.is_dir():
        return []
    return [r for r in load_rows(path) if "verify" in r or r.get("config", {}).get("verify")]


_RECORDED: dict = {}


def recorded(path=DATA) -> tuple[list[dict], "object"]:
    """(rows of ``path``, the ``tcg-loopback`` fit on them), computed once per process
    (notebook 08 and its exercises share it; the fit runs the model for about a second)."""
    key = str(Path(path).resolve())
    if key not in _RECORDED:
        rows = load_rows(path)
        _RECORDED[key] = (rows, fit_tcg_loopback(rows))
    return _RECORDED[key]


# --------------------------------------------------------------------------- the curves (kit-lab-run/2)
def lab_curves(rows, ram, workload, hint) -> list[dict]:
    """Every ok run of one cell that has a curve: ``{"t-ms": [...], "remaining": [...],
    "rep": n}``, the points where QEMU reported ``ram.remaining`` (active or completed)."""
    out = []
    for r in rows:
        c = r.get("config", {})
        if (r.get("status") != "ok" or "curve" not in r or c.get("ram") != ram
                or c.get("workload") != workload or bool(c.get("free_page_hint")) != hint):
            continue
        cv = r["curve"]
        pts = [(t, rem) for t, st, rem in zip(cv["t-ms"], cv["status"], cv["remaining"])
               if st in ("active", "completed") and rem is not None]
        out.append({"t-ms": [t for t, _ in pts], "remaining": [rem for _, rem in pts],
                    "rep": r.get("rep"), "hint-pops-ms": r.get("trace", {}).get("hint-pops-ms", [])})
    return out


def model_curve(cost, ram_mib, workload, hint) -> dict:
    """The model's ``remaining`` (bytes still to send) against time, from a run's timeline:
    one point after every iteration, sync and hint batch, from the end of setup on."""
    r = _scenario.run(model_scenario(cost, ram_mib, workload, "hint" if hint else "original", vga_vram=0))
    pts = [(e["t"] * 1000, e["migration_dirty_pages"] * TARGET_PAGE_SIZE) for e in r.timeline
           if "migration_dirty_pages" in e and (e["phase"] != "setup" or e["kind"] == "sync")]
    hints = [e["t"] * 1000 for e in r.timeline if e["kind"] == "hints"]
    if r["status"] == "completed":
        pts.append((r.timeline[-1]["t"] * 1000, 0))      # QEMU reports 0 remaining once completed
    return {"t-ms": [t for t, _ in pts], "remaining": [b for _, b in pts], "hints-ms": hints,
            "total-time-ms": r["total-time"]}


def send_rates(rows, first_ms=300.0, workloads=("idle", "hog")) -> list[dict]:
    """How fast each run sent full pages: MB/s of ``normal`` pages over the first
    ``first_ms`` after setup, and over the whole run, from its curve (kit-lab-run/2).

    The model has one rate (``wire_bytes_per_s``, fitted on the 1 GiB hog without hints).
    The lab's own rate is not one number: this shows where it moves."""
    out = []
    for r in rows:
        c = r.get("config", {})
        if r.get("status") != "ok" or "curve" not in r or c.get("workload") not in workloads:
            continue
        cv, setup = r["curve"], r["derived"]["setup-time-ms"]
        pts = [(t, n) for t, st, n in zip(cv["t-ms"], cv["status"], cv["normal"])
               if st == "active" and n is not None]
        if len(pts) < 3:
            continue
        t0 = r.get("trace", {}).get("bitmap-sync-end-ms", [setup])[0]
        early = [(t, n) for t, n in pts if t0 <= t <= t0 + first_ms]
        if len(early) < 2:
            continue
        rate = lambda a, b: (b[1] - a[1]) * TARGET_PAGE_SIZE / max(1e-9, b[0] - a[0]) / 1e3
        out.append({"ram": c["ram"], "workload": c["workload"], "hint": bool(c["free_page_hint"]),
                    "rep": r.get("rep"), "early-mb-s": rate(early[0], early[-1]),
                    "whole-mb-s": rate(pts[0], pts[-1])})
    return out


def rate_conditioned(rows, cost, workload="hog", hint=True, first_ms=300.0) -> list[dict]:
    """Each recorded run of ``workload`` beside the model told that run's own send rate.

    For every run, the model runs once more with ``wire_bytes_per_s`` set to the rate at
    which that run sent full pages in its first ``first_ms`` (:func:`send_rates`), all else as
    ``cost``.  This splits the model's miss in two: what is left with the rate given is the
    race (when the hints land against where the migration thread is); the rest is the rate,
    which the model does not predict.  The rate comes from the run itself, so these figures
    are a diagnosis, not predictions."""
    cost = get_preset(cost)
    rates = {(r["ram"], r["rep"]): r["early-mb-s"] for r in send_rates(rows, first_ms, (workload,))
             if r["hint"] == hint}
    out, as_fitted = [], {}
    for r in rows:
        c = r.get("config", {})
        key = (c.get("ram"), r.get("rep"))
        if (r.get("status") != "ok" or c.get("workload") != workload
                or bool(c.get("free_page_hint")) != hint or key not in rates):
            continue
        mib = c["ram-mib"]
        own = model_figures(model_run(cost.with_(wire_bytes_per_s=rates[key] * 1e6), mib, workload, hint))
        if mib not in as_fitted:
            as_fitted[mib] = model_figures(model_run(cost, mib, workload, hint))
        one = as_fitted[mib]
        out.append({"ram": c["ram"], "ram-mib": mib, "rep": r.get("rep"), "rate-mb-s": rates[key],
                    "lab-kb": r["derived"]["transferred-kb"], "model-kb": one["transferred-kb"],
                    "own-rate-kb": own["transferred-kb"]})
    return sorted(out, key=lambda x: (x["ram-mib"], x["rep"]))


def pops_per_gap(rows, ram, workload="hog") -> list[dict]:
    """The race as each hint-on run of one cell played it: how many pops QEMU's iothread
    made at each gap between two iterations of the first round (:func:`hint_timing`'s
    gaps, with the period measured over the same runs)."""
    period = hint_timing(rows, ram, (workload,)).get("period-ms") or 50.0
    out = []
    for r in rows:
        c = r.get("config", {})
        if (r.get("status") != "ok" or not c.get("free_page_hint") or c.get("ram") != ram
                or c.get("workload") != workload):
            continue
        got = _round_pops(r)
        if got and got[0]:
            out.append({"rep": r.get("rep"), "pops": _gaps(got[0], period),
                        "transferred-kb": r["derived"]["transferred-kb"]})
    return sorted(out, key=lambda x: x["rep"])


def after_previous(rows, workload="hog", first_ms=300.0) -> list[dict]:
    """Each run of ``workload`` beside the run just before it in time: how many full pages that
    one sent (the memory its destination touched, freed when it ended) and this run's early rate.

    Rows are ordered by ``started``; a row counts as the previous one whatever its workload."""
    ordered = sorted((r for r in rows if r.get("started")), key=lambda r: r["started"])
    rates = {(r["ram"], r["workload"], r["hint"], r["rep"]): r["early-mb-s"]
             for r in send_rates(ordered, first_ms, workloads=(workload,))}
    out = []
    for prev, r in zip(ordered, ordered[1:]):
        key = cell_of(r) + (r.get("rep"),)
        if key not in rates or prev.get("status") != "ok":
            continue
        out.append({"ram": key[0], "ram-mib": r["config"]["ram-mib"], "hint": key[2], "rep": key[3],
                    "early-mb-s": rates[key], "previous": cell_of(prev),
                    "previous-full-mib": prev["derived"]["normal-pages"] * TARGET_PAGE_SIZE / MiB})
    return sorted(out, key=lambda x: (x["ram-mib"], x["hint"], x["rep"]))


SETTLED = DATA / "settled"


def with_settled(rows, settled) -> list[dict]:
    """``rows`` with every cell that ``settled`` covers (same RAM, workload and hint setting)
    taken from ``settled`` instead: the hog-on cells measured again with a pause before each
    run (``lab matrix --pause 40``), so that no run starts on memory the one before it freed."""
    redone = {cell_of(r) for r in settled}
    return sorted([r for r in rows if cell_of(r) not in redone] + list(settled), key=lambda r: r.get("started", ""))
