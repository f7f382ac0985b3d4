"""Performance (notebook 05): the seed's table, where the time goes, and sweeps.

Everything here runs the model; nothing is typed in except the grid points.

- :func:`seed_table` puts the model's four runs (``kit.reproduce.reproduce_seed``)
  beside the seed's figures, with the difference in % and whether each figure
  was *fitted* (``kit/calibrate.py`` says which) or *predicted*.
- :func:`breakdowns` runs the seed's four cases and returns QEMU's
  ``breakdown-ms``: simulated ms by cause (setup, dirty-log start, free-page
  wait, bitmap syncs, wire, and the CPU time beyond the wire).
- :func:`run_point` runs one migration (cached) and :func:`sweep` runs a grid
  along one axis: RAM size, link speed, free share, dirty rate.
- :class:`SweepExplorer` is the widget: a slider along the chosen axis, the
  sweep's curves, the point under the slider and its breakdown, drawn as PNG
  into a ``widgets.Image``.

Link speeds are *nominal* Ethernet rates.  The model's wire rate is the TCP
payload rate, the nominal rate times the payload share of 1500-byte frames, as
in the ``seed-2016`` preset (10 Gbit/s there is 9.41 Gbit/s of payload).
"""
from __future__ import annotations

import html
import io

import numpy as np

from .. import calibrate
from .. import scenario as _scenario
from ..costmodel import GBIT, TEN_GBE_TCP, get_preset
from ..guest import get_workload
from ..guest.workloads import Workload
from ..memmap import pc_memory_map
from ..migration import NORMAL_PAGE_BYTES
from ..reference import SEED_2016
from ..reproduce import reproduce_seed
from ..scenario import Scenario
from ..units import GiB, MiB, TARGET_PAGE_SIZE
from . import palette
from .memo import memo_png

PRESET = "seed-2016"
MACHINE = "pc"
SEED = 0
SEED_RAM_GIB = 8

# the payload share of an Ethernet link carrying TCP in 1500-byte frames (1448 of 1538 bytes)
TCP_PAYLOAD_SHARE = TEN_GBE_TCP / (10 * GBIT)
SEED_LINK_GBIT = 10.0

# Grids: the points the notebook computes once (the widget's curves reuse them from the cache).
GRIDS = {
    "ram": (1, 2, 4, 8, 16, 32, 64),                 # GiB
    "link": (1, 2, 5, 10, 20, 40, 100),              # nominal Gbit/s
    "free": (0.5, 0.6, 0.7, 0.8, 0.9, 0.95),         # share of RAM free in the guest
    "dirty": (0, 400, 800, 1200),                    # MiB/s written in the working set
}
AXIS_LABELS = {"ram": "guest RAM (GiB)", "link": "link speed (Gbit/s, nominal)",
               "free": "share of RAM free in the guest", "dirty": "dirty rate (MiB/s)"}
AXIS_TITLES = {"ram": "RAM size", "link": "link speed", "free": "free share", "dirty": "dirty rate"}
DIRTY_MAX_TIME_S = 20.0          # a dirtying run that has not converged by then is stopped
MAX_TIME_S = 3600.0              # the model's default: plenty for every guest that does not write

# Causes of simulated time, in the order they happen (Migration.breakdown's keys)
CAUSES = ("setup", "dirty-log-start", "free-page-wait", "bitmap-sync", "send-wire", "send-cpu",
          "rate-limit-sleep")
CAUSE_LABELS = {
    "setup": "fixed setup",
    "dirty-log-start": "start dirty log",
    "free-page-wait": "wait for bitmap",
    "bitmap-sync": "bitmap syncs",
    "send-wire": "send: wire",
    "send-cpu": "send: CPU > wire",
    "rate-limit-sleep": "rate-limit sleep",
}
CAUSE_SHORT = {"setup": "setup", "dirty-log-start": "dirty-log", "free-page-wait": "free-wait",
               "bitmap-sync": "syncs", "send-wire": "wire", "send-cpu": "cpu", "rate-limit-sleep": "sleep"}
CAUSE_COLOURS = palette.CAUSES
MODE_STYLE = {"original": dict(color=palette.MODES["original"], marker="o"), "pv": dict(color=palette.MODES["pv"], marker="s")}
MODES = ("original", "pv")


# ---------------------------------------------------------------------------- the seed's table
def fitted_figures() -> dict:
    """Which of the seed's eight figures were fitted: the fit's own plan (``kit.calibrate.FIT_PLAN``).

    Returns ``{(case, mode, "time" | "kb"): parameter or None}``: the parameter
    fitted to that figure, or None for a figure the model *predicts*.
    """
    case = {r["workload"]: r["case"] for r in SEED_2016}
    return {(case[w], m, what): p for (w, m, what), p in calibrate.tags().items()}


def predicted_tests() -> dict:
    """``{(case, mode, "time" | "kb"): what that predicted figure really tests}``."""
    case = {r["workload"]: r["case"] for r in SEED_2016}
    return {(case[w], m, what): text for (w, m, what), text in calibrate.PREDICTED.items()}


def _pct(model, seed):
    return 100.0 * (model - seed) / seed


def seed_table(preset=PRESET) -> list[dict]:
    """The seed's four runs: model and seed figures, difference in %, fitted or predicted."""
    fits = fitted_figures()
    rows = []
    for r in reproduce_seed(preset, MACHINE):
        rows.append({**r,
                     "time-diff-%": _pct(r["total-time-ms"], r["seed-total-time-ms"]),
                     "kb-diff-%": _pct(r["transferred-kb"], r["seed-transferred-kb"]),
                     "time-fitted-by": fits[(r["case"], r["mode"], "time")],
                     "kb-fitted-by": fits[(r["case"], r["mode"], "kb")]})
    return rows


def seed_table_text(rows) -> str:
    """``rows`` of :func:`seed_table` as a plain-text table (fit: fitted; PRED: predicted)."""
    def tag(param):
        return "fit " if param else "PRED"
    lines = [f"{'case':9}{'mode':9}{'time ms':>8}{'seed':>7}{'diff':>8}      "
             f"{'KB':>9}{'seed':>10}{'diff':>8}",
             "-" * 74]
    for r in rows:
        lines.append(f"{r['case']:9}{r['mode']:9}{r['total-time-ms']:8}{r['seed-total-time-ms']:7}"
                     f"{r['time-diff-%']:+7.1f}% {tag(r['time-fitted-by'])} "
                     f"{r['transferred-kb']:9}{r['seed-transferred-kb']:10}"
                     f"{r['kb-diff-%']:+7.1f}% {tag(r['kb-fitted-by'])}")
    return "\n".join(lines)


def savings(rows) -> dict:
    """``{case: {"bytes-%": saved, "time-%": saved}}``: what pv saves against the original."""
    by = {(r["case"], r["mode"]): r for r in rows}
    out = {}
    for case in dict.fromkeys(r["case"] for r in rows):
        o, p = by[(case, "original")], by[(case, "pv")]
        out[case] = {"bytes-%": 100.0 * (1 - p["transferred-kb"] / o["transferred-kb"]),
                     "time-%": 100.0 * (1 - p["total-time-ms"] / o["total-time-ms"])}
    return out


def savings_text(rows) -> str:
    lines = []
    for case, s in savings(rows).items():
        lines.append(f"{case:9} pv saves {s['bytes-%']:4.1f} % of the bytes and {s['time-%']:4.1f} % of the time")
    return "\n".join(lines)


def _value_text(name, value):
    if name == "wire_bytes_per_s":
        return f"{value * 8 / 1e9:.2f} Gbit/s"
    if name == "max_bandwidth":
        return "above link" if value is None else f"{value * 8 / 1e6:.0f} Mbit/s"
    if name.endswith("_ms"):
        return f"{value:g} ms"
    if "_ns_" in name:
        return f"{value:g} ns"
    return f"{value:g}"


# The parameters the seed's four runs use (the README's table).  Listed by name, so that
# parameters added later for other mechanisms do not change this notebook's table.
SEED_PARAMETERS = ("wire_bytes_per_s", "cpu_ns_per_page", "setup_ms", "dirty_log_ns_per_backed_page",
                   "sync_ns_per_page", "guest_walk_ns_per_free_page", "guest_walk_ns_per_block",
                   "bitmap_transfer_ns_per_byte", "max_bandwidth", "downtime_limit_ms")


def parameter_table(preset=PRESET, names=SEED_PARAMETERS) -> str:
    """The cost model's parameters ``names``, their values and where each comes from (``.sources``)."""
    cm = get_preset(preset)
    rows = [(k, _value_text(k, getattr(cm, k)), cm.sources[k]) for k in names]
    w = max(len(k) for k, _, _ in rows)
    lines = [f"{'parameter':{w}}  {'value':>12}  source", "-" * (w + 16 + 40)]
    lines += [f"{k:{w}}  {v:>12}  {s}" for k, v, s in rows]
    return "\n".join(lines)


def _param_value(param):
    """The current value of a parameter named as in calibrate's table (e.g. ``Workload.boot_footprint``)."""
    if param.startswith("CostModel."):
        cm = get_preset(PRESET)
        stem = param.split(".", 1)[1].rstrip(".")
        name = next(k for k in cm.sources if k.startswith(stem))
        return name, _value_text(name, getattr(cm, name))
    if param.startswith("Workload."):
        name = param.split(".", 1)[1]
        return name, f"{getattr(get_workload('idle'), name) / MiB:.1f} MiB"
    name = param.split(".")[-1]                           # "hog.hog_fraction"
    return name, f"{getattr(get_workload('hog'), name):g}"


def fitted_figures_text() -> str:
    """One line per seed figure: the parameter fitted to it (and its value), or PREDICTED."""
    lines = []
    for (case, mode, what), param in fitted_figures().items():
        fig = f"{case:9}{mode:9}{'time' if what == 'time' else 'KB':5}"
        if param is None:
            lines.append(f"{fig}  PREDICTED, which tests: {predicted_tests()[(case, mode, what)]}")
        else:
            name, value = _param_value(param)
            lines.append(f"{fig}  fitted: {name} = {value}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- the guests' pages
def guest_pages(workload="idle", ram_gib=SEED_RAM_GIB, count=64):
    """(strips, counts) of a freshly built guest's pages in ram_addr order.

    ``strips``: ``{"where free memory starts": text, "the middle of RAM": text}``, one
    letter a page (``U`` used, ``u`` used and zero, ``.`` free and zero, ``s`` free
    with stale data); ``counts``: ``{class name: pages}`` over all of RAM.
    """
    from . import pagemap as pm
    g = _scenario.guest(Scenario(ram=int(round(ram_gib * GiB)), workload=workload, machine=MACHINE,
                                 cost=PRESET, seed=SEED))
    cls = pm.guest_classes(g)
    first_free = int(np.argmax(cls >= 2))
    counts = np.bincount(cls, minlength=len(pm.GUEST_CLASSES))
    strips = {"where free memory starts": pm.text_strip(cls, pm.GUEST_LETTERS, max(0, first_free - 16), count),
              "the middle of RAM": pm.text_strip(cls, pm.GUEST_LETTERS, len(cls) // 2, count)}
    return strips, {name: int(n) for name, n in zip(pm.GUEST_CLASSES, counts) if n}


# ---------------------------------------------------------------------------- one run, cached
def link_cost(gbit=None, preset=PRESET):
    """The preset's cost model with a link of ``gbit`` Gbit/s (nominal); None keeps the preset's."""
    cm = get_preset(preset)
    if gbit is None:
        return cm
    return cm.with_(wire_bytes_per_s=gbit * GBIT * TCP_PAYLOAD_SHARE)


def scenario(ram_gib=SEED_RAM_GIB, workload="hog", mode="pv", gbit=None, *,
             max_time_s=MAX_TIME_S) -> Scenario:
    """The scenario :func:`run_point` runs: a seeded ``pc`` guest of ``ram_gib`` GiB on a link of
    ``gbit`` Gbit/s (nominal; None keeps the preset's)."""
    return Scenario(ram=int(round(ram_gib * GiB)), workload=workload, mode=mode, machine=MACHINE,
                    cost=link_cost(gbit), seed=SEED, track_pages=False, max_time_s=float(max_time_s))


def _point(s) -> dict:
    return {"total-time-ms": s["total-time"], "transferred": s["ram"]["transferred"],
            "breakdown-ms": dict(s["breakdown-ms"]), "status": s["status"],
            "converged": s["status"] == "completed", "setup-time-ms": s["setup-time"],
            "downtime-ms": s["downtime"], "dirty-sync-count": s["ram"]["dirty-sync-count"],
            "free-skipped": s["ram"]["free-skipped"], "duplicate": s["ram"]["duplicate"],
            "normal": s["ram"]["normal"]}


def run_point(ram_gib=SEED_RAM_GIB, workload="hog", mode="pv", gbit=None, *, max_time_s=MAX_TIME_S) -> dict:
    """Migrate :func:`scenario` once (cached by :func:`kit.scenario.run`).

    Keys: ``total-time-ms``, ``transferred`` (bytes), ``breakdown-ms``, ``status``,
    ``converged``, ``setup-time-ms``, ``downtime-ms``, ``dirty-sync-count``, ``free-skipped``,
    ``duplicate`` (zero pages sent) and ``normal`` (full pages sent).
    """
    s = scenario(ram_gib, workload, mode, gbit, max_time_s=max_time_s)
    return _point(_scenario.run(s).stats)


def breakdowns(ram_gib=SEED_RAM_GIB) -> dict:
    """The seed's four runs by cause: ``{(case, mode): {cause: ms}}`` in :data:`CAUSES` order."""
    out = {}
    for case, wl in (("idle", "idle"), ("workload", "hog")):
        for mode in MODES:
            b = run_point(ram_gib, wl, mode)["breakdown-ms"]
            out[(case, mode)] = {c: b[c] for c in CAUSES if c in b}
    return out


def breakdown_text(bd) -> str:
    """``bd`` of :func:`breakdowns` as a table, ms per cause (columns in CAUSES order)."""
    causes = [c for c in CAUSES if any(c in b for b in bd.values())]
    head = f"{'run':18}" + "".join(f"{CAUSE_SHORT[c]:>10}" for c in causes) + f"{'total':>9}"
    lines = [head, "-" * len(head)]
    for (case, mode), b in bd.items():
        lines.append(f"{case + ', ' + mode:18}" + "".join(f"{b.get(c, 0.0):10.1f}" for c in causes)
                     + f"{sum(b.values()):9.1f}")
    return "\n".join(lines)


def cpu_limit_gbit(preset=PRESET) -> float:
    """The nominal link speed above which sending full pages is CPU-bound (one page per cpu_ns)."""
    cm = get_preset(preset)
    payload = NORMAL_PAGE_BYTES * 8 / (cm.cpu_ns_per_page * 1e-9) / 1e9
    return payload / TCP_PAYLOAD_SHARE


def wire_floor_s(ram_gib, gbit=None) -> float:
    """Seconds the wire alone needs for ``ram_gib`` GiB of full pages (a lower bound)."""
    pages = ram_gib * GiB / TARGET_PAGE_SIZE
    return pages * NORMAL_PAGE_BYTES / link_cost(gbit).wire_bytes_per_s


# ---------------------------------------------------------------------------- the four axes
_BOOT_FREE: dict = {}            # Scenario.key() -> free pages after boot


def _boot_free_pages(ram_bytes: int) -> int:
    s = Scenario(ram=ram_bytes, workload="idle", machine=MACHINE, cost=PRESET, seed=SEED)
    key = s.key()
    if key not in _BOOT_FREE:
        _BOOT_FREE[key] = _scenario.guest(s).buddy.nr_free_pages
    return _BOOT_FREE[key]


def free_share_range(ram_gib=SEED_RAM_GIB) -> tuple[float, float]:
    """(lowest, highest) free share a guest of this size can be given.

    The highest is what is free after boot; the lowest is set by the guest model,
    which lets a program's working set take at most half of what is free.
    """
    ram_bytes = int(round(ram_gib * GiB))
    free0 = _boot_free_pages(ram_bytes)
    ram_pages = pc_memory_map(ram_bytes, MACHINE).ram_pages
    return (free0 - free0 // 2) / ram_pages, free0 / ram_pages


def free_share_workload(share: float, base="hog", ram_gib=SEED_RAM_GIB) -> Workload:
    """``base`` (idle: free pages zero; hog: free pages stale) with a working set that leaves
    ``share`` of RAM free.  The program holds the working set and writes nothing during migration.
    """
    lo, hi = free_share_range(ram_gib)
    if not lo - 1e-9 <= share <= hi + 1e-9:
        raise ValueError(f"a {ram_gib:g} GiB guest can have between {lo:.3f} and {hi:.3f} of its RAM free")
    ram_bytes = int(round(ram_gib * GiB))
    ram_pages = pc_memory_map(ram_bytes, MACHINE).ram_pages
    used = max(0, _boot_free_pages(ram_bytes) - int(round(share * ram_pages)))
    return get_workload(base).with_(name=f"{base}, {share:.0%} free", working_set=used * TARGET_PAGE_SIZE)


def dirty_workload(mib_per_s: float) -> Workload:
    """``dirtying`` with its 1 GiB working set written at ``mib_per_s`` MiB/s."""
    return get_workload("dirtying").with_(name=f"dirtying at {mib_per_s:g} MiB/s",
                                          dirty_rate=mib_per_s * MiB / TARGET_PAGE_SIZE)


def point_args(axis, x, guest="hog"):
    """(ram_gib, workload, gbit, max_time_s) of the point ``x`` on ``axis``, others at the seed's."""
    if axis == "ram":
        return x, get_workload(guest), None, MAX_TIME_S
    if axis == "link":
        return SEED_RAM_GIB, get_workload(guest), float(x), MAX_TIME_S
    if axis == "free":
        return SEED_RAM_GIB, free_share_workload(x, guest), None, MAX_TIME_S
    if axis == "dirty":
        return SEED_RAM_GIB, dirty_workload(x), None, DIRTY_MAX_TIME_S
    raise ValueError(f"unknown axis {axis!r}; choose one of {', '.join(GRIDS)}")


def sweep_point(axis, x, guest="hog") -> dict:
    """``{mode: run_point(...)}`` for the point ``x`` on ``axis``."""
    ram, wl, gbit, tmax = point_args(axis, x, guest)
    return {mode: run_point(ram, wl, mode, gbit, max_time_s=tmax) for mode in MODES}


def sweep(axis, xs=None, guest="hog") -> dict:
    """Run both modes at every point of ``xs`` (default :data:`GRIDS`) along ``axis``.

    Returns ``{"axis", "guest", "x": array, mode: {"time_ms", "bytes", "converged": arrays}}``.
    ``guest`` is idle or hog (ignored on the dirty axis, which uses ``dirtying``).
    """
    xs = GRIDS[axis] if xs is None else xs
    out = {"axis": axis, "guest": "dirtying" if axis == "dirty" else guest, "x": np.asarray(xs, float)}
    runs = [sweep_point(axis, x, guest) for x in xs]
    for mode in MODES:
        out[mode] = {"time_ms": np.array([r[mode]["total-time-ms"] for r in runs], float),
                     "bytes": np.array([r[mode]["transferred"] for r in runs], float),
                     "converged": np.array([r[mode]["converged"] for r in runs], bool)}
    return out


def sweep_text(sw) -> str:
    """A sweep as a table: x, time and GiB sent for both modes, pv's saving in time."""
    lines = [f"{AXIS_LABELS[sw['axis']]}, {sw['guest']} guest",
             f"{'x':>8}  {'original ms':>12} {'GiB':>7}   {'pv ms':>8} {'GiB':>7}   {'pv saves':>8}"]
    o, p = sw["original"], sw["pv"]
    for i, x in enumerate(sw["x"]):
        flag = "" if o["converged"][i] and p["converged"][i] else "  (not converged)"
        lines.append(f"{x:8g}  {o['time_ms'][i]:12.0f} {o['bytes'][i] / GiB:7.2f}   "
                     f"{p['time_ms'][i]:8.0f} {p['bytes'][i] / GiB:7.2f}   "
                     f"{100 * (1 - p['time_ms'][i] / o['time_ms'][i]):7.1f}%{flag}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- drawing
def draw_breakdown(ax, bd: dict, title="", legend=True):
    """Horizontal stacked bars, one per run: ``bd = {label: {cause: ms}}``; the legend goes below them."""
    labels = list(bd)
    y = np.arange(len(labels))[::-1] + 1.4
    left = np.zeros(len(labels))
    seen = set()
    for cause in CAUSES:
        ms = np.array([bd[k].get(cause, 0.0) for k in labels])
        if not ms.any():
            continue
        ax.barh(y, ms, left=left, color=CAUSE_COLOURS[cause], height=0.6,
                label=CAUSE_LABELS[cause] if cause not in seen else None)
        seen.add(cause)
        left += ms
    for yi, total in zip(y, left):
        ax.text(total, yi, f" {total:,.0f} ms", va="center", fontsize=8)
    ax.set_yticks(y, [", ".join(k) if isinstance(k, tuple) else k for k in labels], fontsize=8)
    ax.set_xlim(0, left.max() * 1.18)
    ax.set_ylim(-0.1, y.max() + 0.5)
    ax.set_xlabel("simulated time (ms)")
    ax.grid(axis="x", alpha=0.3)
    if legend:
        ax.legend(fontsize=7, loc="lower center", ncol=3, frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def _plain_log(ax, y=True):
    """Log scales (x, and y if ``y``) with plain tick labels (1, 10, 100: no mathtext, quick to draw)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.set_xscale("log")
    if y:
        ax.set_yscale("log")
    for a in (ax.xaxis, ax.yaxis) if y else (ax.xaxis,):
        a.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        a.set_major_formatter(plain)
        a.set_minor_locator(NullLocator())


def draw_sweep(ax_time, ax_bytes, sw, *, point=None, label_guest=False, linestyle="-"):
    """Time and bytes against ``sw['x']``, both modes; ``point = (x, {mode: run})`` marks one point."""
    axis = sw["axis"]
    for mode in MODES:
        st = MODE_STYLE[mode]
        lab = f"{mode}, {sw['guest']}" if label_guest else mode
        d = sw[mode]
        ax_time.plot(sw["x"], d["time_ms"] / 1000, linestyle=linestyle, label=lab, ms=4, **st)
        ax_bytes.plot(sw["x"], d["bytes"] / GiB, linestyle=linestyle, label=lab, ms=4, **st)
        bad = ~d["converged"]
        if bad.any():
            ax_time.plot(sw["x"][bad], d["time_ms"][bad] / 1000, "kx", ms=9)
        if point is not None:
            x, runs = point
            r = runs[mode]
            kw = dict(marker="*", ms=16, color=st["color"], markeredgecolor="k", linestyle="none")
            ax_time.plot([x], [r["total-time-ms"] / 1000], **kw)
            ax_bytes.plot([x], [r["transferred"] / GiB], **kw)
    for ax in (ax_time, ax_bytes):
        ax.set_xlabel(AXIS_LABELS[axis])
        ax.grid(alpha=0.3)
        if axis in ("ram", "link"):
            _plain_log(ax, y=axis == "ram" or ax is ax_time)
        if ax.get_yscale() == "linear":
            ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    ax_time.set_ylabel("total time (s)")
    ax_bytes.set_ylabel("transferred (GiB)")
    return ax_time, ax_bytes


def sweep_figure(*sweeps, points=(), vlines=(), title=""):
    """A pyplot figure: time and bytes against the axis, for one or more sweeps (inline use).

    ``points``: extra single runs ``(x, mode, run, label)`` drawn as stars;
    ``vlines``: ``(x, label)`` marked on the time panel by a dotted line.
    """
    import matplotlib.pyplot as plt
    fig, (at, ab) = plt.subplots(1, 2, figsize=(11, 3.6))
    styles = ("-", "--", ":")
    for i, sw in enumerate(sweeps):
        draw_sweep(at, ab, sw, label_guest=len(sweeps) > 1, linestyle=styles[i % 3])
    for x, mode, r, label in points:
        kw = dict(marker="*", ms=14, color=MODE_STYLE[mode]["color"], markeredgecolor="k",
                  linestyle="none", label=label)
        at.plot([x], [r["total-time-ms"] / 1000], **kw)
        ab.plot([x], [r["transferred"] / GiB], **kw)
    for x, label in vlines:
        at.axvline(x, color="k", linestyle=":", linewidth=1, label=label)
    if points or vlines:
        at.legend(fontsize=8)
    if points:
        ab.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def breakdown_figure(bd, title="where the simulated time goes"):
    """A pyplot figure of :func:`breakdowns` (inline use)."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(10, 3.6))
    draw_breakdown(ax, bd, title)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- the widget
def _fmt_x(axis, x):
    return {"ram": f"{x:g} GiB", "link": f"{x:.3g} Gbit/s", "free": f"{x:.0%} free",
            "dirty": f"{x:g} MiB/s"}[axis]


def point_html(axis, x, runs, guest) -> str:
    """The point under the slider: time, bytes, sync count and status for both modes."""
    g = "dirtying" if axis == "dirty" else guest
    head = f"<b>{html.escape(g)} guest, {html.escape(_fmt_x(axis, x))}</b>"
    if axis != "ram":
        head += f" ({SEED_RAM_GIB} GiB)"
    rows = []
    for mode in MODES:
        r = runs[mode]
        status = "completed" if r["converged"] else f"not converged after {r['total-time-ms'] / 1000:g} s"
        rows.append(f"<tr><td>{mode}</td><td style='text-align:right'>{r['total-time-ms']:,} ms</td>"
                    f"<td style='text-align:right'>{r['transferred'] / MiB:,.0f} MiB</td>"
                    f"<td style='text-align:right'>{r['dirty-sync-count']}</td><td>{status}</td></tr>")
    o, p = runs["original"], runs["pv"]
    save = 100 * (1 - p["total-time-ms"] / o["total-time-ms"])
    return (f"{head}<table style='font-family:monospace'><tr><th>mode</th><th>total time</th>"
            f"<th>transferred</th><th>syncs</th><th>status</th></tr>{''.join(rows)}</table>"
            f"pv saves {save:.1f} % of the time")


def explorer_png(sw, x, runs, dpi=72) -> bytes:
    """Three panels as PNG: time and bytes along the sweep with the point starred, its breakdown."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(13, 3.6))
    FigureCanvasAgg(fig)
    at, ab, ac = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.3]})
    draw_sweep(at, ab, sw, point=(x, runs))
    draw_breakdown(ac, {m: runs[m]["breakdown-ms"] for m in MODES}, f"at {_fmt_x(sw['axis'], x)}")
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.15, top=0.92, wspace=0.32)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


class SweepExplorer:
    """Sweep one axis (RAM size, link speed, free share, dirty rate) and look at one point.

    The curves are the grid of :data:`GRIDS` (cached: the notebook's sweeps made
    them); the slider picks a point, which is run live (also cached) and starred,
    with its breakdown beside.  ``guest`` (idle or hog) applies to the RAM, link
    and free axes; the dirty axis uses the ``dirtying`` workload.  RAM stops at
    256 GiB (a 256 GiB point takes a few seconds).
    """

    RAM_OPTIONS = tuple(2 ** i for i in range(9))          # 1 .. 256 GiB

    def __init__(self, axis="ram", guest="hog", grids=None):
        import ipywidgets as widgets
        self.grids = dict(GRIDS if grids is None else grids)
        lo, hi = free_share_range()
        self.sliders = {
            "ram": widgets.SelectionSlider(options=[(f"{g} GiB", g) for g in self.RAM_OPTIONS],
                                           value=SEED_RAM_GIB, description="RAM",
                                           continuous_update=False),
            "link": widgets.FloatLogSlider(value=SEED_LINK_GBIT, base=10, min=0, max=2, step=0.05,
                                           description="Gbit/s", readout_format=".3g",
                                           continuous_update=False),
            "free": widgets.FloatSlider(value=0.8, min=max(0.5, np.ceil(lo * 20) / 20),
                                        max=np.floor(hi * 20) / 20, step=0.05, description="free",
                                        readout_format=".0%", continuous_update=False),
            "dirty": widgets.IntSlider(value=400, min=0, max=1500, step=100, description="MiB/s",
                                       continuous_update=False),
        }
        self.axis = widgets.ToggleButtons(options=[(AXIS_TITLES[a], a) for a in GRIDS], value=axis,
                                          description="sweep")
        self.guest = widgets.ToggleButtons(options=["idle", "hog"], value=guest, description="guest")
        self.slider_box = widgets.HBox([self.sliders[axis]])
        self.image = widgets.Image(format="png", layout=widgets.Layout(width="100%"))
        self.caption = widgets.HTML("")
        self.widget = widgets.VBox([self.axis, self.guest, self.slider_box, self.image, self.caption])
        for w in (self.axis, self.guest, *self.sliders.values()):
            w.observe(self._on_change, names="value")
        self.update()

    def _on_change(self, change):
        self.update()

    @property
    def x(self):
        return self.sliders[self.axis.value].value

    def update(self):
        axis = self.axis.value
        self.slider_box.children = [self.sliders[axis]]
        self.guest.disabled = axis == "dirty"
        sw = sweep(axis, self.grids[axis], self.guest.value)
        runs = sweep_point(axis, self.x, self.guest.value)
        self.runs = runs
        self.image.value = memo_png(explorer_png, sw, self.x, runs)
        self.caption.value = point_html(axis, self.x, runs, self.guest.value)
        return self
