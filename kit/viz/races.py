"""Notebook 06: races between the guest's free-page snapshot and QEMU's dirty log.

The RFC's filter is safe only because of an order (docs/sources.md: patch 4/4 and the ordering question): KVM's
dirty log is on *before* the guest walks its free lists, so a page the guest
reports free and then allocates and writes is in the log, and the first
``migration_bitmap_sync`` (after the filter) puts it back.  This module runs the
model both ways and draws what happens to each page.  Display only: it reads
:class:`~kit.migration.Migration` and :class:`~kit.guest.Guest` and changes
nothing in them.

* :func:`make_race`: a seeded guest and a ``verify=True`` migration in the right
  or the wrong order (``inject="free-pages-before-dirty-log"``).
* :func:`race_classes`: one class per ram page after a migration: the guest's
  own classes (:mod:`kit.viz.pagemap`) plus "reported free, then used: resent"
  and "LOST".  :func:`zoom_png` enlarges a few thousand pages of it.
* :func:`plot_orders`: the setup steps of both orders on one time axis.
* :func:`step_lines`, :func:`dirty_logged`: the step-by-step demonstration.
* :func:`run_trials` / :func:`trials_table` / :func:`plot_trials`: many seeded
  random guests, both orders.
* :func:`walk_sweep` / :func:`plot_walk_sweep`: a slow guest, waiting forever
  or with a bounded wait.
* :func:`dma_table` / :func:`plot_dma_sweep` / :func:`dma_compare_table`: device writes
  during the RFC's wait (the sweep and the runs are :mod:`kit.dma`'s).
* :class:`RaceExplorer`: a widget (order, churn rate, guest speed) that reruns a
  small migration and redraws the page map with the lost pages.
"""
from __future__ import annotations

import copy
import html
import math

import numpy as np

from ..bitmap import unpack_bitmap
from ..costmodel import get_preset
from ..guest import Workload
from ..units import MiB
from . import palette
from . import pagemap as pm
from .player import make_migration, setup_rows

__all__ = ["RIGHT", "WRONG", "ORDERS", "race_workload", "make_race", "log_on_ms", "snapshot_ms",
           "unprotected_ms", "reported_free", "lost_mask", "RACE_CLASSES", "RACE_COLOURS",
           "RACE_LETTERS", "RESCUED", "LOST", "race_classes", "race_counts", "first_of",
           "zoom_png", "zoom_pair_png", "lied_mask", "LIED_RESENT", "LIAR_CLASSES", "LIAR_COLOURS",
           "LIAR_LETTERS", "liar_classes", "liar_counts", "plot_orders", "describe", "step_lines",
           "setup_lines", "dirty_logged", "verify_line",
           "run_trials", "trials_table", "plot_trials", "walk_sweep", "walk_table",
           "plot_walk_sweep", "dma_table", "plot_dma_sweep", "dma_compare_table", "RaceExplorer"]

RIGHT, WRONG = "right order", "wrong order"
ORDERS = {RIGHT: None, WRONG: "free-pages-before-dirty-log"}


# ---------------------------------------------------------------------------- scenarios
def race_workload(churn_rate: float = 8192.0, *, working_set=128 * MiB, dirty_rate=5000.0,
                  churn_pool_seconds=60.0) -> Workload:
    """A small busy guest: rewrites a working set and allocates ``churn_rate`` fresh pages a second.

    Churned pages stay allocated ``churn_pool_seconds`` (a minute by default, so
    they are still in use at switch-over and a lost one counts).
    """
    return Workload(f"churn-{churn_rate:g}", "rewrites a working set and keeps allocating fresh pages",
                    working_set=working_set, dirty_rate=dirty_rate, churn_rate=float(churn_rate),
                    churn_pool_seconds=churn_pool_seconds)


def make_race(ram="512M", workload="dirtying", order=RIGHT, *, seed=0, **kw):
    """A seeded guest and a ``verify=True`` pv migration of it, in ``order`` (nothing has run yet)."""
    if order not in ORDERS:
        raise ValueError(f"order is {RIGHT!r} or {WRONG!r}")
    kw.setdefault("inject", ORDERS[order])
    return make_migration(ram, workload, "pv", seed=seed, verify=True, **kw)


# ---------------------------------------------------------------------------- times
def _first(timeline, kind):
    return next((r for r in timeline if r["kind"] == kind), None)


def log_on_ms(m) -> float | None:
    """When KVM's dirty log came on (the end of ``memory_global_dirty_log_start``), simulated ms."""
    r = _first(m.timeline, "dirty-log-start")
    return None if r is None else r["t"] * 1e3


def snapshot_ms(m) -> float | None:
    """When the guest took its free-list snapshot (it holds zone->lock while walking), ms."""
    r = _first(m.timeline, "guest-snapshot")
    return None if r is None else r["t"] * 1e3


def unprotected_ms(m) -> float:
    """How long the guest ran between its snapshot and the dirty log coming on (0 if the log was first)."""
    a, b = snapshot_ms(m), log_on_ms(m)
    if a is None or b is None:
        return 0.0
    return max(0.0, b - a)


# ---------------------------------------------------------------------------- page classes
RESCUED, LOST = 4, 5
RACE_CLASSES = pm.GUEST_CLASSES[:4] + ("reported free, then used: resent (dirty log)",
                                       "LOST: in use, destination copy stale")
RACE_COLOURS = palette.RACE
RACE_LETTERS = "U u . s R X"


def reported_free(m) -> np.ndarray:
    """The pages of pc.ram the guest's bitmap called free (all False if no bitmap arrived)."""
    n = m.mm.ram_pages
    if m.free_pages_bmap is None or m.free_pages_count is None:
        return np.zeros(n, bool)
    return unpack_bitmap(m.free_pages_bmap, n)


def lost_mask(m) -> np.ndarray:
    """Pages in use whose destination copy differs from the source (what ``verify()`` counts)."""
    g, n = m.guest, m.mm.ram_pages
    if m.dest_version is None:
        raise ValueError("needs a Migration made with verify=True")
    src = g.memory.to_ram_order(g.memory.version)
    return g.used_ram_pages() & (m.dest_version[:n] != src)


def race_classes(m) -> np.ndarray:
    """One class per ram page: the guest's classes, then RESCUED and LOST on top.

    RESCUED: the guest reported the page free, it is in use now and its current
    content reached the destination (the dirty log brought it back).  LOST: in
    use, and the destination holds an older version.  Meant for a migration that
    has completed (the guest is stopped).
    """
    cls = pm.guest_classes(m.guest, "ram")
    used = m.guest.used_ram_pages()
    lost = lost_mask(m)
    cls[reported_free(m) & used & ~lost] = RESCUED
    cls[lost] = LOST
    return cls


def race_counts(m) -> dict:
    c = np.bincount(race_classes(m), minlength=len(RACE_CLASSES))
    return dict(zip(RACE_CLASSES, c.tolist()))


def first_of(classes, cls, default=0) -> int:
    """Index of the first page of class ``cls`` (``default`` if there is none)."""
    hit = np.flatnonzero(classes == cls)
    return int(hit[0]) if len(hit) else default


def zoom_png(classes, start: int, count: int = 1024, width: int = 64, scale: int = 6,
             colours=RACE_COLOURS) -> bytes:
    """PNG of pages [start, start + count), one cell of ``scale`` x ``scale`` pixels per page."""
    start = max(0, min(int(start), len(classes) - 1))
    return pm.png(pm.upscale(np.asarray(classes)[start:start + count], colours, width, scale))


def zoom_pair_png(migrations, start: int, count: int = 1024, width: int = 64, scale: int = 7,
                  gap: int = 16) -> bytes:
    """Zooms (:func:`zoom_png`) of the same pages in several migrations, side by side."""
    imgs = []
    for m in migrations:
        imgs.append(pm.upscale(race_classes(m)[start:start + count], RACE_COLOURS, width, scale))
    parts = []
    for i, img in enumerate(imgs):
        if i:
            parts.append(np.full((img.shape[0], gap, 3), 255, np.uint8))
        parts.append(img)
    return pm.png(np.concatenate(parts, axis=1))


def lied_mask(m) -> np.ndarray:
    """The pages (ram order) a lying guest reported free although it uses them (all False otherwise)."""
    g = m.guest
    if g.lie_frames is None:
        return np.zeros(m.mm.ram_pages, bool)
    return g.memory.to_ram_order(g.lie_frames)


# A lying guest's page map tells apart the two kinds of RESCUED page: one the guest honestly
# reported free and then allocated and wrote (the case the RFC's order is for), and one it lied
# about (in use all along) that it happened to write again after dirty logging started.  Both
# were skipped by the filter and came back through the dirty log.  RACE_CLASSES keeps them in
# one class; LIAR_CLASSES adds the second as its own class.
LIED_RESENT = 6
LIAR_CLASSES = RACE_CLASSES[:RESCUED] + ("reported free honestly, then used: resent (dirty log)",) \
    + RACE_CLASSES[RESCUED + 1:] + ("lied about, written again: resent (dirty log)",)
LIAR_COLOURS = palette.LIAR
LIAR_LETTERS = RACE_LETTERS + " L"


def liar_classes(m) -> np.ndarray:
    """:func:`race_classes`, with the RESCUED pages that the guest lied about moved to
    LIED_RESENT (RESCUED keeps the pages it reported free honestly and then used)."""
    cls = race_classes(m)
    cls[(cls == RESCUED) & lied_mask(m)] = LIED_RESENT
    return cls


def liar_counts(m) -> dict:
    c = np.bincount(liar_classes(m), minlength=len(LIAR_CLASSES))
    return dict(zip(LIAR_CLASSES, c.tolist()))


# ---------------------------------------------------------------------------- the timeline picture
_STEP_STYLE = {           # kind -> (colour, label)
    "bitmap": (palette.STEPS["bitmap"], "ram_save_setup: mark dirty_memory"),
    "dirty-log-start": (palette.STEPS["dirty-log-start"], "memory_global_dirty_log_start"),
    "free-pages-done": (palette.STEPS["free-pages"], "guest walks its free lists, QEMU polls every 1 ms"),
    "free-pages-timeout": (palette.STEPS["free-pages"], "guest walks its free lists, QEMU polls every 1 ms"),
    "filter": (palette.STEPS["filter"], "filter_out_guest_free_pages"),
    "filter-skipped": (palette.STEPS["filter"], "filter_out_guest_free_pages"),
    "sync": (palette.STEPS["sync"], "migration_bitmap_sync"),
}


_LOG_ON = palette.STEPS["log-on"]
_UNPROTECTED = palette.STEPS["unprotected"]


def plot_orders(runs: dict, ax=None, min_width_ms: float = 0.2):
    """The setup steps of each migration in ``runs`` ({label: Migration}) on one time axis.

    Each row is one order.  A black triangle marks the guest's snapshot, a green
    band the time KVM's dirty log is on, and a red hatched span the time the
    guest ran after its snapshot with the log still off: a page written there
    is lost.  Returns the axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 1.2 + 1.0 * len(runs)))
    labels, lo, hi, seen = list(runs), np.inf, 0.0, {}
    for i, label in enumerate(labels):
        m = runs[label]
        y = len(labels) - 1 - i
        rows = setup_rows(m.timeline)
        end = max(r["end_ms"] for r in rows)
        hi = max(hi, end)
        for r in rows:
            k = r["kind"]
            if k == "bitmap":
                lo = min(lo, r["end_ms"])
            if k not in _STEP_STYLE:
                continue
            colour, name = _STEP_STYLE[k]
            width = r["end_ms"] - r["start_ms"]
            if width < min_width_ms:            # an instant: a thick tick on top of the bars
                ax.plot([r["start_ms"]] * 2, [y - 0.25, y + 0.25], color=colour, lw=3, zorder=3)
            else:
                ax.barh(y, width, left=r["start_ms"], height=0.5, color=colour, edgecolor="white",
                        linewidth=0.5)
            seen.setdefault(name, colour)
        on, snap = log_on_ms(m), snapshot_ms(m)
        ax.barh(y - 0.34, end - on, left=on, height=0.1, color=_LOG_ON)
        if snap is not None:
            ax.plot([snap], [y + 0.36], marker="v", color="black", markersize=9)
            ax.annotate("guest snapshot", (snap, y + 0.36), xytext=(4, 4), textcoords="offset points",
                        fontsize=8)
            if snap < on:
                ax.barh(y, on - snap, left=snap, height=0.86, color="none", edgecolor=_UNPROTECTED,
                        hatch="///", linewidth=1.0)
    ax.set_xlim(lo - 3, hi + 1.5)
    ax.set_ylim(-0.7, len(labels) - 0.3)
    ax.set_yticks(range(len(labels)), labels[::-1])
    ax.set_xlabel(f"simulated time (ms); ram_save_setup's fixed part runs from 0 to {lo:.1f} ms")
    handles = [Patch(color=c, label=n) for n, c in seen.items()]
    handles.append(Patch(color=_LOG_ON, label="KVM's dirty log is on (thin band)"))
    handles.append(Patch(facecolor="none", edgecolor=_UNPROTECTED, hatch="///",
                         label="guest runs after its snapshot, log off: writes here are lost"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return ax


# ---------------------------------------------------------------------------- step by step
def _polls(n):
    return f"{n:,} poll" + ("" if n == 1 else "s")


def _pages(n):
    return f"{n:,} page" + ("" if n == 1 else "s")


def describe(rec) -> str:
    """One line for a timeline record: time, what happened."""
    k, t = rec["kind"], rec["t"] * 1e3
    text = {
        "bitmap": lambda: "ram_save_setup: dirty_memory marked, migration bitmap empty",
        "dirty-log-start": lambda: f"dirty log on (KVM write-protected {rec['backed_pages']:,} pages)",
        "free-pages-request": lambda: "QEMU asks the guest for its free pages",
        "guest-snapshot": lambda: f"guest snapshot: {rec['free_pages']:,} pages free",
        "free-pages-done": lambda: f"the guest's bitmap arrived ({_polls(rec['polls'])})",
        "free-pages-timeout": lambda: f"gave up after {_polls(rec['polls'])}: every page will be sent",
        "filter": lambda: f"filter: {rec['free_pages']:,} free pages cleared from the bitmap",
        "filter-skipped": lambda: "filter skipped (no bitmap)",
        "sync": lambda: f"sync: {_pages(rec['new_dirty'])} newly dirty from the log, "
                        f"{rec['migration_dirty_pages']:,} to send",
        "stalled": lambda: f"stalled: {rec['reason']}",
        "completed": lambda: f"completed (downtime {rec['downtime'] * 1e3:.0f} ms)",
    }.get(k, lambda: k)()
    return f"{t:8.1f} ms  {text}"


def _in_order(recs):
    """Put the request before the guest's snapshot: the model logs the snapshot first (same time)."""
    recs = list(recs)
    for i in range(len(recs) - 1):
        if recs[i]["kind"] == "guest-snapshot" and recs[i + 1]["kind"] == "free-pages-request":
            recs[i], recs[i + 1] = recs[i + 1], recs[i]
    return recs


def step_lines(m, n: int = 1) -> str:
    """Run ``m.step()`` ``n`` times; the timeline records they added, one line each."""
    before = len(m.timeline)
    for _ in range(n):
        m.step()
    return "\n".join(describe(r) for r in _in_order(m.timeline[before:]))


def setup_lines(m) -> str:
    """The setup records of ``m`` (it has run at least that far), one line each, in order."""
    return "\n".join(describe(r) for r in _in_order(r for r in m.timeline if r["phase"] == "setup"))


def dirty_logged(guest) -> np.ndarray:
    """The frames KVM's dirty log holds right now, without clearing it (a fetch on a copy)."""
    return copy.deepcopy(guest.memory.dirty_log).fetch_and_clear()


def verify_line(m) -> str:
    """The verify counters of a finished migration, on one line."""
    v = m.query_migrate().get("verify", {})

    def fmt(x):
        if isinstance(x, list):
            return "[" + ", ".join(map(str, x[:6])) + (", ...]" if len(x) > 6 else "]")
        return f"{x:,}"
    return ", ".join(f"{k} {fmt(v[k])}" for k in v)


# ---------------------------------------------------------------------------- randomised trials
def _trial_params(rng, i):
    ram = str(rng.choice(["256M", "512M"]))
    # log-uniform draws through math.exp/log (the C library), not numpy's SIMD exp,
    # whose last bit can depend on the CPU
    churn = 0.0 if rng.random() < 0.15 else float(round(math.exp(rng.uniform(math.log(500), math.log(30000)))))
    pool = round(math.exp(rng.uniform(math.log(0.05), math.log(60.0))), 3)
    ws = int(rng.choice([32, 64, 128])) * MiB
    dirty = float(np.round(rng.uniform(0, 20000)))
    walk = round(math.exp(rng.uniform(math.log(5), math.log(300))), 1)
    dlog = float(np.round(rng.uniform(20, 200), 1))
    w = Workload(f"trial-{i}", working_set=ws, dirty_rate=dirty, churn_rate=churn, churn_pool_seconds=pool)
    cost = get_preset("seed-2016").with_(name=f"trial-{i}", guest_walk_ns_per_free_page=walk,
                                         dirty_log_ns_per_backed_page=dlog)
    return ram, w, cost


def run_trials(n: int = 40, seed: int = 2016) -> list[dict]:
    """``n`` random small guests (size, working set, dirty and churn rates, guest and KVM speed),
    each migrated in both orders from the same seed; one row per trial."""
    rows = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        ram, w, cost = _trial_params(rng, i)
        row = {"trial": i, "ram": ram, "churn": w.churn_rate, "pool_s": w.churn_pool_seconds,
               "walk_ns": cost.guest_walk_ns_per_free_page}
        for order in ORDERS:
            m = make_race(ram, w, order, seed=seed + i, preset=cost, track_pages=False)
            m.run()
            key = "right" if order == RIGHT else "wrong"
            row[f"lost_{key}"] = m.verify_result["lost-pages"]
            row[f"time_{key}"] = m.total_time * 1e3
            if order == WRONG:
                row["gap_ms"] = unprotected_ms(m)
        row["churn_x_gap"] = row["churn"] * row["gap_ms"] * 1e-3
        rows.append(row)
    return rows


def trials_table(rows) -> str:
    """A summary of :func:`run_trials`: per order, how many trials lost pages and how many."""
    lines = [f"{'order':<12} {'trials':>6} {'with loss':>9} {'lost: min':>9} {'median':>7} {'max':>6}",
             "-" * 54]
    for key, name in (("right", RIGHT), ("wrong", WRONG)):
        lost = np.array([r[f"lost_{key}"] for r in rows])
        lines.append(f"{name:<12} {len(lost):>6} {int(np.count_nonzero(lost)):>9} {int(lost.min()):>9} "
                     f"{int(np.median(lost)):>7} {int(lost.max()):>6}")
    churny = [r for r in rows if r["churn"] > 0 and r["pool_s"] > r["time_wrong"] * 1e-3]
    hit = sum(1 for r in churny if r["lost_wrong"] > 0)
    lines.append("")
    some = [r for r in rows if r["churn"] > 0]
    lines.append(f"wrong order, guests that allocate while migrating: "
                 f"{sum(1 for r in some if r['lost_wrong'] > 0)} of {len(some)} lost pages")
    lines.append(f"  ... and keep each new page longer than the migration lasts: {hit} of {len(churny)}")
    return "\n".join(lines)


def plot_trials(rows, axes=None):
    """Left: histogram of lost pages per trial, both orders.  Right: lost pages (wrong order)
    against churn rate x unprotected time."""
    import matplotlib.pyplot as plt
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    right = np.array([r["lost_right"] for r in rows])
    wrong = np.array([r["lost_wrong"] for r in rows])
    top = max(1, int(wrong.max()))
    bins = np.linspace(0, top, 21)
    axes[0].hist([right, wrong], bins=bins, label=[RIGHT, WRONG], color=[palette.RIGHT_WRONG["right"], palette.RIGHT_WRONG["wrong"]])
    axes[0].set_xlabel("lost pages in one migration")
    axes[0].set_ylabel("trials")
    axes[0].legend(fontsize=8)
    axes[0].set_title(f"{len(rows)} random guests, each migrated both ways", fontsize=10)
    x = np.array([r["churn_x_gap"] for r in rows])
    kept = np.array([r["pool_s"] > r["time_wrong"] * 1e-3 for r in rows])
    axes[1].plot([0, x.max()], [0, x.max()], color="grey", lw=0.8, label="lost = churn x gap")
    axes[1].scatter(x[kept], wrong[kept], s=18, color=palette.RIGHT_WRONG["wrong"], label="a churned page lives longer than the migration")
    axes[1].scatter(x[~kept], wrong[~kept], s=18, facecolor="none", edgecolor=palette.RIGHT_WRONG["wrong"],
                    label="shorter: some are free again at switch-over")
    axes[1].set_xlabel("churn rate x unprotected time (pages)")
    axes[1].set_ylabel("lost pages (wrong order)")
    axes[1].legend(fontsize=8)
    axes[1].set_title("the loss is the pages allocated in the gap", fontsize=10)
    for ax in axes:
        ax.grid(alpha=0.3)
    return axes


# ---------------------------------------------------------------------------- a slow guest
def walk_sweep(ns_values, ram="1G", workload="hog", timeouts=(None, 0.1), seed=0) -> list[dict]:
    """Migrate a guest whose free-list walk costs ``ns`` per free page, for each ns and wait policy."""
    rows = []
    for timeout in timeouts:
        for ns in ns_values:
            cost = get_preset("seed-2016").with_(name=f"walk-{ns}", guest_walk_ns_per_free_page=float(ns))
            m = make_race(ram, workload, RIGHT, seed=seed, preset=cost, track_pages=False,
                          free_page_wait_timeout_s=timeout)
            r = m.run()
            rows.append({"ns": ns, "timeout": timeout, "setup": r["setup-time"], "total": r["total-time"],
                         "skipped": r["ram"]["free-skipped"], "lost": r["verify"]["lost-pages"],
                         "wait": r["breakdown-ms"].get("free-page-wait", 0.0)})
    return rows


def _policy(timeout):
    return "wait forever (RFC)" if timeout is None else f"give up after {timeout * 1e3:g} ms"


def walk_table(rows) -> str:
    lines = [f"{'wait':<24} {'ns/free page':>12} {'setup ms':>9} {'total ms':>9} {'free skipped':>12} {'lost':>5}",
             "-" * 76]
    for r in rows:
        lines.append(f"{_policy(r['timeout']):<24} {r['ns']:>12,} {r['setup']:>9,} {r['total']:>9,} "
                     f"{r['skipped']:>12,} {r['lost']:>5}")
    return "\n".join(lines)


def plot_walk_sweep(rows, axes=None):
    """Setup time and total time against the guest's walk cost, one line per wait policy."""
    import matplotlib.pyplot as plt
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    for timeout in dict.fromkeys(r["timeout"] for r in rows):
        rs = [r for r in rows if r["timeout"] == timeout]
        ns = [r["ns"] for r in rs]
        style = dict(marker="o", ms=4, label=_policy(timeout))
        axes[0].plot(ns, [r["setup"] for r in rs], **style)
        axes[1].plot(ns, [r["total"] for r in rs], **style)
    for ax, what in zip(axes, ("setup time (ms)", "total time (ms)")):
        ax.set_xscale("log")
        ax.set_xlabel("guest's walk: ns per free page (seed testbed: 9.98)")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    return axes


# ---------------------------------------------------------------------------- device writes
def dma_table(rows) -> str:
    """:func:`kit.dma.sweep`'s rows as plain text: lost pages against read rate and wait."""
    lines = [f"{'ns/free page':>12} {'snapshot->filter ms':>19} {'read MiB/s':>10} {'lost pages':>10} "
             f"{'rate x window':>13}", "-" * 68]
    for r in rows:
        lines.append(f"{r['walk-ns']:>12,g} {r['wait-ms']:>19.1f} {r['mib-s']:>10,g} {r['lost']:>10,} "
                     f"{r['rate-x-window']:>13,.1f}")
    return "\n".join(lines)


def plot_dma_sweep(rows, ax=None):
    """Lost pages against the read rate, one line per wait (log-log)."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.6))
    for walk in dict.fromkeys(r["walk-ns"] for r in rows):
        rs = [r for r in rows if r["walk-ns"] == walk]
        ax.plot([r["mib-s"] for r in rs], [max(r["lost"], 0.5) for r in rs], marker="o", ms=4,
                label=f"wait {rs[0]['wait-ms']:.0f} ms (walk {walk:g} ns/free page)")
    rates = sorted({r["mib-s"] for r in rows})
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(rates, [f"{x:g}" for x in rates])
    ax.minorticks_off()
    ax.set_xlabel("disk read rate (MiB/s of fresh page cache)")
    ax.set_ylabel("pages lost per migration")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return ax


def dma_compare_table(rows) -> str:
    """:func:`kit.dma.compare`'s rows as plain text."""
    lines = [f"{'':<46} {'status':<10} {'total ms':>8} {'free skipped':>12} {'lost':>6}", "-" * 86]
    for r in rows:
        lost = "-" if r["lost"] is None else f"{r['lost']:,}"
        lines.append(f"{r['case']:<46} {r['status']:<10} {r['total-ms']:>8,} {r['free-skipped']:>12,} {lost:>6}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- the widget
class RaceExplorer:
    """Right or wrong order, a churn rate and a guest speed: rerun a small migration, redraw.

    Controls: ``order`` (ToggleButtons), ``churn`` (pages/s the guest allocates
    and writes) and ``walk`` (ns per free page of the guest's walk: slower
    widens the gap in the wrong order), both sliders with
    ``continuous_update=False``.  The page map (:data:`RACE_CLASSES`, one page
    per pixel at 512 MiB), a zoom on the first lost (or rescued) pages and the
    verify counters are redrawn on every change.  ``rerun()`` does what a change does.
    """

    def __init__(self, ram="512M", seed=0, churn=8192, walk_ns=10, width=512, height=256):
        import ipywidgets as widgets
        from .widgets import PageMapView
        self.ram, self.seed = ram, seed
        self.order = widgets.ToggleButtons(options=[RIGHT, WRONG], value=RIGHT, description="order")
        self.churn = widgets.IntSlider(value=churn, min=0, max=40000, step=1024, continuous_update=False,
                                       description="churn/s", layout=widgets.Layout(width="50%"))
        self.walk = widgets.IntSlider(value=walk_ns, min=10, max=500, step=10, continuous_update=False,
                                      description="walk ns", layout=widgets.Layout(width="50%"))
        self.view = PageMapView(f"{ram} guest after migration, ram_addr order (one pixel per page)",
                                RACE_CLASSES, RACE_COLOURS, width, height)
        self.zoom = widgets.Image(format="png", layout=widgets.Layout(width="384px"))
        self.zoom_title = widgets.HTML()
        self.counters = widgets.HTML()
        for w in (self.order, self.churn, self.walk):
            w.observe(lambda change: self.rerun(), names="value")
        self.widget = widgets.VBox([self.order, widgets.HBox([self.churn, self.walk]), self.view.widget,
                                    widgets.HBox([widgets.VBox([self.zoom_title, self.zoom]),
                                                  self.counters])])
        self.rerun()

    def build(self):
        cost = get_preset("seed-2016").with_(name="explorer", guest_walk_ns_per_free_page=float(self.walk.value))
        return make_race(self.ram, race_workload(self.churn.value), self.order.value, seed=self.seed,
                         preset=cost)

    def rerun(self):
        m = self.build()
        m.run()
        self.migration = m
        cls = race_classes(m)
        self.classes = cls
        c = np.bincount(cls, minlength=len(RACE_CLASSES))
        focus = LOST if c[LOST] else RESCUED
        start = max(0, first_of(cls, focus) - 128)
        self.view.update(cls, f"<small>{self.order.value}, churn {self.churn.value:,} pages/s, "
                              f"guest walk {self.walk.value} ns per free page, seed {self.seed}</small>")
        self.zoom.value = zoom_png(cls, start, 1024, width=64, scale=6)
        self.zoom_title.value = (f"<small>zoom: ram pages {start:,} to {start + 1023:,}, "
                                 f"64 to a row (one cell per page)</small>")
        v = m.verify_result
        gap = unprotected_ms(m)
        rows = [("lost-pages", f"<b>{v['lost-pages']:,}</b>"),
                ("first-lost-ram-pages", html.escape(str(v["first-lost-ram-pages"][:4]))
                 + (" ..." if len(v["first-lost-ram-pages"]) > 4 else "")),
                ("reported free, then used, resent", f"{int(c[RESCUED]):,}"),
                ("guest ran after snapshot, log off", f"{gap:.1f} ms"),
                ("churn x that time", f"{self.churn.value * gap * 1e-3:,.0f} pages"),
                ("free pages skipped", f"{m.stats.free_skipped:,}"),
                ("total time", f"{m.total_time * 1e3:,.0f} ms")]
        body = "".join(f"<tr><td>{k}</td><td style='text-align:right'>{val}</td></tr>" for k, val in rows)
        self.counters.value = f"<table style='font-family:monospace'>{body}</table>"
        return self
