"""Patch 4's bulk stage, played back: the setup table, transfer curves and a Play widget.

:class:`BulkPlayer` builds two identical seeded guests, migrates one with
original QEMU and one with the RFC (``mode="pv"``) and shows both page maps
side by side with ``info migrate``-style counters under each.  Its
``widgets.Play`` value is *simulated* time in ms: each change advances both
migrations with ``Migration.run(until=t)``; going backwards rebuilds both from
the seed and runs them forward again (cheap at 1-2 GiB).  A finished migration
stays finished.

The helpers read a migration's ``timeline`` (records with the simulated end
time ``t`` of each action): :func:`setup_table` lists the steps of
``ram_save_setup`` with their times, :func:`transfer_curve` gives bytes sent
against time.  Display only: nothing here changes the model.
"""
from __future__ import annotations

import numpy as np

from .. import scenario as _scenario
from ..migration import STATE_NAMES, Migration
from ..scenario import Scenario

MODES = ("original", "pv")        # the two sides of the player: before and after the RFC
from ..units import MiB, parse_size
from . import pagemap as pm
from . import palette

MODE_TITLES = {"original": "ORIGINAL (QEMU 2.5)", "pv": "PATCHED (the RFC, pv)"}


def scenario(ram="2G", workload="hog", mode="original", *, seed=0, machine="pc", preset="seed-2016",
             track_pages=True, **kw) -> Scenario:
    """The scenario :func:`make_migration` builds (``kw``: other Scenario fields)."""
    return Scenario(ram=parse_size(ram, what="ram"), workload=workload, mode=mode, machine=machine,
                    cost=preset, seed=seed, track_pages=track_pages, **kw)


def make_migration(ram="2G", workload="hog", mode="original", *, seed=0, machine="pc", **kw):
    """A freshly booted, seeded guest and a Migration of it (nothing has run yet)."""
    return _scenario.build(scenario(ram, workload, mode, seed=seed, machine=machine, **kw))


def run_setup(m: Migration) -> Migration:
    """Step ``m`` through ram_save_setup only (it stops before the first iteration)."""
    while m.phase == "setup" and not m.done:
        m.step()
    return m


# ---------------------------------------------------------------------------- setup table
def _describe(rec) -> tuple[str, str]:
    """(QEMU step, what it did) for one timeline record of the setup phase."""
    k = rec["kind"]
    if k == "bitmap":
        if rec["how"] == "all ones":
            return "ram_save_setup: bitmap", "every bit set (all pages dirty)"
        return "ram_save_setup: bitmap", "patch 3: dirty_memory marked, bitmap left empty"
    if k == "dirty-log-start":
        return "memory_global_dirty_log_start", f"KVM write-protects {rec['backed_pages']:,} backed pages"
    if k == "free-pages-request":
        return "balloon_get_free_pages (request)", f"QEMU sends low_mem = {rec['low_mem']:#x}"
    if k == "guest-snapshot":
        return "  guest: walk the free lists", f"snapshot: {rec['free_pages']:,} free pages"
    if k == "free-pages-done":
        return "poll every 1 ms until done", f"{rec['polls']} polls, bitmap of {rec['free_pages']:,} free pages"
    if k == "filter":
        return "filter_out_guest_free_pages", f"{rec['free_pages']:,} pages of pc.ram cleared (first block only)"
    if k == "sync":
        return "migration_bitmap_sync", f"{rec['migration_dirty_pages']:,} pages to send"
    return k, ""


def setup_rows(timeline) -> list[dict]:
    """The setup records in the order they ran, each with start and end (simulated ms).

    A record's ``t`` is the time its action ended; it started where the previous
    one ended.  The guest's snapshot is logged (at the request's time) before the
    request record itself, so the two are put back in the order they happened.
    """
    recs = [r for r in timeline if r["phase"] == "setup"]
    for i in range(len(recs) - 1):
        if recs[i]["kind"] == "guest-snapshot" and recs[i + 1]["kind"] == "free-pages-request":
            recs[i], recs[i + 1] = recs[i + 1], recs[i]
    rows, prev = [], 0.0
    for r in recs:
        step, what = _describe(r)
        start = r["t"] if r["kind"] == "guest-snapshot" else prev
        rows.append({"step": step, "start_ms": start * 1e3, "end_ms": r["t"] * 1e3, "what": what,
                     "kind": r["kind"]})
        prev = r["t"]
    return rows


def setup_table(timeline) -> str:
    """A plain-text table of ``setup_rows`` (times in simulated ms, 0.1 ms resolution)."""
    rows = setup_rows(timeline)
    w = max(len(r["step"]) for r in rows)
    lines = [f"{'step':<{w}}  {'start ms':>8}  {'end ms':>8}  what it did",
             f"{'':-<{w}}  {'':->8}  {'':->8}  {'':-<44}"]
    for r in rows:
        lines.append(f"{r['step']:<{w}}  {r['start_ms']:8.1f}  {r['end_ms']:8.1f}  {r['what']}")
    return "\n".join(lines)


def event_time_ms(timeline, kind: str) -> float:
    """Simulated time (ms) of the first record of ``kind``."""
    return next(r["t"] for r in timeline if r["kind"] == kind) * 1e3


# ---------------------------------------------------------------------------- bytes vs time
def transfer_curve(m: Migration):
    """(t_ms, bytes) points of bytes sent against simulated time, from ``m.timeline``.

    Each iteration sends at a steady rate over its ``seconds``; the stop-and-copy
    over its ``downtime``.  The stream header (a few dozen bytes, counted at the
    end of setup and not in any record) is put at the setup's end, so the curve
    ends at ``m.stats.transferred``.
    """
    recs = [r for r in m.timeline if "bytes" in r]
    header = m.stats.transferred - sum(r["bytes"] for r in recs)
    setup_end = m.setup_time if m.setup_time is not None else 0.0
    ts, bs, total = [0.0, setup_end], [0, header], header
    for r in recs:
        dur = r["downtime"] if r["kind"] == "completed" else r["seconds"]
        ts.append(max(ts[-1], r["t"] - dur))
        bs.append(total)
        total += r["bytes"]
        ts.append(r["t"])
        bs.append(total)
    return np.array(ts) * 1e3, np.array(bs, dtype=np.int64)


def bytes_at(curve, t_ms: float) -> float:
    """Bytes sent by simulated time ``t_ms`` (linear between the curve's points)."""
    t, b = curve
    return float(np.interp(t_ms, t, b))


def plot_transfer(curves: dict, ax=None, title=""):
    """Draw ``{label: curve}`` as MiB sent against simulated ms; returns the axes."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.4))
    for label, (t, b) in curves.items():
        ax.plot(t, b / MiB, label=f"{label}: {b[-1] / MiB:,.0f} MiB in {t[-1]:,.0f} ms")
    ax.set_xlabel("simulated time (ms)")
    ax.set_ylabel("bytes sent (MiB)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


# ---------------------------------------------------------------------------- pictures
def state_counts(m: Migration) -> dict:
    """How many pages are in each migration state right now."""
    n = np.bincount(m.page_state, minlength=len(STATE_NAMES))
    return {name: int(c) for name, c in zip(STATE_NAMES, n)}


def side_by_side_png(migrations, width=512, height=258, gap=12) -> bytes:
    """One PNG with the page maps of ``migrations`` next to each other (white gap between)."""
    imgs = [pm.render(pm.migration_classes(m), pm.MIGRATION_COLOURS, width, height) for m in migrations]
    h = max(i.shape[0] for i in imgs)
    parts = []
    for i, img in enumerate(imgs):
        if i:
            parts.append(np.full((h, gap, 3), 255, np.uint8))
        pad = np.full((h, img.shape[1], 3), 255, np.uint8)
        pad[: img.shape[0]] = img
        parts.append(pad)
    return pm.png(np.concatenate(parts, axis=1))


# ---------------------------------------------------------------------------- setup, drawn
SETUP_SHORT = {"bitmap": "bitmap", "dirty-log-start": "start dirty log", "free-pages-request": "request",
               "free-pages-done": "wait for the guest", "filter": "filter", "sync": "sync"}
_STRIP_DONE, _STRIP_NOW, _STRIP_TODO = palette.TEXT_GREY, palette.GREY, palette.WHITE


def setup_steps(timeline) -> list[dict]:
    """The setup steps a student sees in the player: ``setup_rows`` without the guest's own
    snapshot (it takes no QEMU time), each with ``label``, ``start_ms`` and ``end_ms``."""
    return [dict(r, label=SETUP_SHORT.get(r["kind"], r["kind"])) for r in setup_rows(timeline)
            if r["kind"] != "guest-snapshot"]


def setup_strip_html(steps, now_ms: float) -> str:
    """A bar of the setup steps, each as wide as it is long (at least a sliver), filled up to
    ``now_ms``: the steps done dark, the one under way half-filled, the rest white.  Below it
    the step under way by name, so a move inside ``ram_save_setup`` shows on the screen."""
    end = steps[-1]["end_ms"] if steps else 0.0
    total = sum(max(r["end_ms"] - r["start_ms"], 0.0) for r in steps) or 1.0
    cells = []
    for r in steps:
        dur = max(r["end_ms"] - r["start_ms"], 0.0)
        width = 4 + 76 * dur / total               # percent: 4 % for an instant step
        if now_ms >= r["end_ms"]:
            fill = f"background:{_STRIP_DONE};color:white"
        elif now_ms > r["start_ms"]:
            part = 100 * (now_ms - r["start_ms"]) / dur
            fill = (f"background:linear-gradient(to right,{_STRIP_DONE} {part:.0f}%,"
                    f"{_STRIP_NOW} {part:.0f}%);color:white")
        else:
            fill = f"background:{_STRIP_TODO};color:#333"
        cells.append(f"<div title='{r['step']}: {r['what']}' style='flex:0 0 {width:.1f}%;{fill};"
                     f"border:1px solid #333;overflow:hidden;white-space:nowrap;font-size:11px;"
                     f"padding:0 2px;box-sizing:border-box'>{r['label']}</div>")
    if now_ms >= end:
        where = f"setup (ram_save_setup) done at {end:,.1f} ms"
    else:
        cur = next(r for r in steps if now_ms < r["end_ms"])
        where = (f"in setup at {now_ms:,.1f} ms: <b>{cur['label']}</b> ({cur['step'].strip()}, "
                 f"{cur['start_ms']:,.1f} to {cur['end_ms']:,.1f} ms); no page is sent before "
                 f"{end:,.1f} ms")
    bar = "".join(cells)
    return (f"<div style='display:flex;height:16px;line-height:14px;width:100%'>{bar}</div>"
            f"<div style='font-size:12px;white-space:nowrap;overflow:hidden;height:1.4em'>{where}</div>")


# ---------------------------------------------------------------------------- the player
class BulkPlayer:
    """ORIGINAL and PATCHED migrations of two identical seeded guests, played in simulated time.

    ``play`` (``widgets.Play``) and ``slider`` (an ``IntSlider`` with
    ``continuous_update=False``) are linked; their value is simulated ms.
    ``views[mode]`` is a :class:`~kit.viz.widgets.PageMapView`, ``counters[mode]``
    an ``info migrate`` table.  ``seek(t_ms)`` does what a value change does.
    ``results`` and ``curves`` come from complete reference runs made at
    construction (they also give the Play widget its end).
    """

    def __init__(self, ram="2G", workload="hog", *, seed=0, machine="pc", step_ms=50,
                 interval_ms=300, width=512, height=258):
        import ipywidgets as widgets
        from .widgets import PageMapView

        self.ram, self.workload, self.seed, self.machine = ram, workload, seed, machine
        self.step_ms = step_ms
        ref = {mode: self._build(mode) for mode in MODES}
        for m in ref.values():
            m.run()
        self.results = {mode: m.query_migrate() for mode, m in ref.items()}
        self.setup = {mode: setup_steps(m.timeline) for mode, m in ref.items()}
        self.curves = {mode: transfer_curve(m) for mode, m in ref.items()}
        end = max(m.now for m in ref.values()) * 1e3
        self.end_ms = int(np.ceil(end / step_ms)) * step_ms

        self.play = widgets.Play(value=0, min=0, max=self.end_ms, step=step_ms, interval=interval_ms,
                                 description="play")
        self.slider = widgets.IntSlider(value=0, min=0, max=self.end_ms, step=step_ms,
                                        continuous_update=False, description="t (ms)",
                                        layout=widgets.Layout(width="60%"))
        self.link = widgets.link((self.play, "value"), (self.slider, "value"))
        self.clock = widgets.HTML()
        self.views, self.counters, self.strips, columns = {}, {}, {}, []
        for mode in MODES:
            view = PageMapView(f"{MODE_TITLES[mode]}, {ram} {workload} guest, seed {seed}",
                               pm.MIGRATION_CLASSES, pm.MIGRATION_COLOURS, width, height)
            self.views[mode] = view
            self.counters[mode] = widgets.HTML()
            self.strips[mode] = widgets.HTML()
            view.widget.children = (view.title, self.strips[mode], *view.widget.children[1:])
            columns.append(widgets.VBox([view.widget, self.counters[mode]],
                                        layout=widgets.Layout(width="49%")))
        self.widget = widgets.VBox([widgets.HBox([self.play, self.slider]), self.clock,
                                    widgets.HBox(columns)])
        self.t_ms = 0
        self._rebuild()
        self._draw()
        self.play.observe(self._on_value, names="value")

    def _build(self, mode):
        return make_migration(self.ram, self.workload, mode, seed=self.seed, machine=self.machine)

    def _rebuild(self):
        self.migrations = {mode: self._build(mode) for mode in MODES}

    def _on_value(self, change):
        self.seek(change["new"])

    def seek(self, t_ms: int):
        """Show both migrations at simulated time ``t_ms`` (each runs until its clock reaches it)."""
        if t_ms < self.t_ms:
            self._rebuild()                   # back in time: replay from the seed
        for m in self.migrations.values():
            m.run(until=t_ms * 1e-3)
        self.t_ms = t_ms
        self._draw()

    def _caption(self, m) -> str:
        if m.done:
            when = f"finished at {m.total_time * 1e3:,.0f} ms" if m.total_time else "stopped"
        else:
            stage = "bulk stage" if m.phase == "iterate" and m.ram_bulk_stage else m.phase
            when = f"its clock: {m.now * 1e3:,.1f} ms ({stage})"
        c = state_counts(m)
        counts = " &middot; ".join(f"{name} {n:,}" for name, n in c.items())
        return f"<small>{when}<br>{counts}</small>"

    def _draw(self):
        from .widgets import info_migrate_html
        self.clock.value = (f"<b>simulated time {self.t_ms:,} ms</b> "
                            f"(each migration runs until its own clock passes it)")
        for mode, m in self.migrations.items():
            self.strips[mode].value = setup_strip_html(self.setup[mode], m.now * 1e3)
            self.views[mode].update(pm.migration_classes(m), self._caption(m))
            self.counters[mode].value = info_migrate_html(m.query_migrate())
