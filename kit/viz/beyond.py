"""Notebook 07 (beyond the RFC): tables, figures and the explorer widget over :mod:`kit.beyond`.

Display only: every number comes from :mod:`kit.beyond`, which runs the model.

* ``*_text`` functions print the values as small plain-text tables.
* ``*_figure`` functions return a pyplot figure for inline use.
* :class:`BeyondExplorer` is the widget: the four modes (original, pv, hint,
  report) on one guest, a RAM slider and a guest toggle, redrawn as PNG into
  ``widgets.Image``, plus the page map of the chosen mode.
"""
from __future__ import annotations

import copy
import html
import io

import numpy as np

from .. import beyond
from .. import scenario as _scenario
from ..migration import MODES
from ..units import GiB, MiB
from . import palette
from . import pagemap as pm
from .memo import memo_png
from .performance import draw_breakdown

MODE_LABELS = {"original": "original (QEMU 2.5)", "pv": "pv (the 2016 RFC)",
               "hint": "hint (free page hinting)", "report": "report (free page reporting)"}
MODE_COLOURS = palette.MODES
WORKLOADS = ("idle", "hog", "dirtying")
RAM_OPTIONS = (1, 2, 4, 8, 16, 32, 64)          # GiB, the explorer's slider


# ---------------------------------------------------------------------------- the comparison
def comparison(ram="8G", workloads=WORKLOADS) -> dict:
    """``{workload: {mode: run}}``: the four modes on each guest (cached runs)."""
    return {wl: beyond.compare(ram, wl) for wl in workloads}


def comparison_text(table) -> str:
    """One line per guest and mode: time, MiB sent, downtime, pages skipped, hints, reported pages."""
    head = (f"{'guest':9}{'mode':9}{'total ms':>9}{'MiB sent':>10}{'downtime':>9}"
            f"{'free skipped':>13}{'4M hints':>9}{'reported':>10}{'time saved':>11}")
    lines = [head, "-" * len(head)]
    for wl, runs in table.items():
        base = runs["original"]
        for mode, r in runs.items():
            lines.append(f"{wl:9}{mode:9}{r['total-ms']:9,}{r['transferred'] / MiB:10,.0f}"
                         f"{r['downtime-ms']:9,}{r['free-skipped']:13,}{r['hinted-blocks']:9,}"
                         f"{r['reported-pages']:10,}{100 * beyond.saving(base, r):10.1f}%")
    return "\n".join(lines)


def _grouped_bars(ax, table, key, scale, ylabel, highlight=None, legend=True):
    groups = list(table)
    modes = list(next(iter(table.values())))
    width = 0.8 / len(modes)
    x = np.arange(len(groups))
    for i, mode in enumerate(modes):
        vals = np.array([table[g][mode][key] for g in groups], float) / scale
        edge = "k" if mode == highlight else "none"
        bars = ax.bar(x + (i - (len(modes) - 1) / 2) * width, vals, width, color=MODE_COLOURS[mode],
                      label=mode, edgecolor=edge, linewidth=1.5)
        for b, v in zip(bars, vals):
            ax.text(b.get_x() + b.get_width() / 2, v, f"{v:.2g}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, groups)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.3)            # room for the legend above the bars
    if legend:
        ax.legend(fontsize=7, ncol=len(modes), loc="upper center", frameon=False)


def draw_comparison(ax_time, ax_bytes, table, highlight=None):
    _grouped_bars(ax_time, table, "total-ms", 1000, "total time (s)", highlight)
    _grouped_bars(ax_bytes, table, "transferred", GiB, "transferred (GiB)", highlight, legend=False)


def comparison_figure(table, title=""):
    import matplotlib.pyplot as plt
    fig, (at, ab) = plt.subplots(1, 2, figsize=(11, 3.6))
    draw_comparison(at, ab, table)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- the reviewers' questions
def balloon_text(runs: dict, original: dict, pv: dict) -> str:
    """``runs = {speed: balloon_instead(...)}`` beside original and pv on the same guest."""
    lines = [f"{'':34}{'inflate ms':>11}{'migrate ms':>11}{'total ms':>10}{'MiB sent':>10}"]
    lines.append(f"{'original QEMU':34}{0:11,}{original['total-ms']:11,}{original['total-ms']:10,}"
                 f"{original['transferred'] / MiB:10,.0f}")
    for speed, r in runs.items():
        lines.append(f"{'inflate to 1 GiB first (' + speed + ')':34}{r['inflate-ms']:11,.0f}"
                     f"{r['migrate-ms']:11,}{r['total-ms']:10,.0f}{r['transferred'] / MiB:10,.0f}")
    lines.append(f"{'the RFC (pv)':34}{0:11,}{pv['total-ms']:11,}{pv['total-ms']:10,}"
                 f"{pv['transferred'] / MiB:10,.0f}")
    return "\n".join(lines)


def pagemap_text(estimates: dict) -> str:
    """``estimates = {workload: pagemap_estimate(...)}`` as a table."""
    lines = [f"{'guest':7}{'free pages':>12}{'of them not present':>21}{'pagemap finds':>15}"
             f"{'original ms':>13}{'pagemap ms (est.)':>19}{'pv ms':>7}"]
    for wl, e in estimates.items():
        c = e["counts"]
        lines.append(f"{wl:7}{c['free']:12,}{c['free-not-present']:21,}"
                     f"{c['free-not-present'] / c['free']:14.1%} {e['original-ms']:13,}"
                     f"{e['pagemap-ms']:19,.0f}{e['pv-ms']:7,}")
    return "\n".join(lines)


def bitmap_text(sizes: dict) -> str:
    """``sizes = {label: bitmap_sizes(...)}``: what each design hands over, side by side."""
    def b(n):
        return f"{n / MiB:,.2f} MiB" if n >= MiB else f"{n / 1024:,.0f} KiB"
    rows = [("RAM pages", lambda s: f"{s['ram-pages']:,}"),
            ("free pages (model guest)", lambda s: f"{s['free-pages']:,}"),
            ("RFC: bitmap, one piece", lambda s: b(s["rfc-bitmap-bytes"])),
            ("RFC: x largest buddy block", lambda s: f"{s['rfc-bitmap-vs-max-block']:g}"),
            ("RFC: guest walk (wait)", lambda s: f"{s['rfc-walk-ms']:,.0f} ms"),
            ("RFC: hand-over (wait)", lambda s: f"{s['rfc-handover-ms']:,.0f} ms"),
            ("hint: 4 MiB hints, at most", lambda s: f"{s['hint-blocks']:,}"),
            ("hint: guest time (no wait)", lambda s: f"{s['hint-ms']:,.0f} ms"),
            ("report: reports of 32", lambda s: "{:,}-{:,}".format(*s["reports"])),
            ("QEMU's own bitmap", lambda s: b(s["qemu-bitmap-bytes"]))]
    labels = list(sizes)
    lines = [f"{'':30}" + "".join(f"{lab:>18}" for lab in labels)]
    for name, f in rows:
        lines.append(f"{name:30}" + "".join(f"{f(sizes[lab]):>18}" for lab in labels))
    return "\n".join(lines)


def bitmap_figure(rams_gib=(1, 4, 16, 64, 256, 1024, 4096)):
    """The RFC's one bitmap against RAM size, beside the largest block the buddy allocator gives."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter
    sizes = [beyond.bitmap_sizes(int(g * GiB)) for g in rams_gib]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(rams_gib, [s["rfc-bitmap-bytes"] / MiB for s in sizes], "o-", color=MODE_COLOURS["pv"],
            label="the RFC's bitmap (one allocation)")
    ax.axhline(beyond.BUDDY_MAX_BLOCK_BYTES / MiB, color="k", linestyle=":",
               label="largest buddy block (order 10)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.yaxis.set_major_formatter(plain)
    ax.set_xlabel("guest RAM (GiB)")
    ax.set_ylabel("MiB")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def postcopy_text(splits: dict) -> str:
    """``splits = {label: postcopy_split(...)}``: before and after switch-over."""
    lines = [f"{'':24}{'switch ms':>10}{'MiB before':>11}{'used due':>10}{'free due':>10}"
             f"{'skipped':>10}{'MiB after, no info':>20}{'with info':>11}"]
    for label, s in splits.items():
        free_due = s["free-stale-due"] + s["free-zero-due"]
        lines.append(f"{label:24}{s['switch-ms']:10,.0f}{s['before-bytes'] / MiB:11,.0f}"
                     f"{s['used-due']:10,}{free_due:10,}{s['skipped-free']:10,}"
                     f"{s['after-bytes-no-info'] / MiB:20,.0f}{s['after-bytes-with-info'] / MiB:11,.0f}")
    return "\n".join(lines)


def reviewers_figure(rows: dict, title=""):
    """Horizontal bars of total time: ``rows = {label: (ms, colour)}``, in order, top down."""
    import matplotlib.pyplot as plt
    labels = list(rows)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(labels) + 1.0))
    y = np.arange(len(labels))[::-1]
    vals = [rows[k][0] / 1000 for k in labels]
    ax.barh(y, vals, color=[rows[k][1] for k in labels], height=0.6)
    for yi, v in zip(y, vals):
        ax.text(v, yi, f" {v:.2f} s", va="center", fontsize=8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlim(0, max(vals) * 1.15)
    ax.set_xlabel("simulated total time (s)")
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- the successors' protocols
def hint_events_text(m) -> str:
    """The free page hinting events of a finished ``hint`` migration, one line each."""
    lines = []
    for e in m.timeline:
        k, t = e["kind"], f"{e['t'] * 1000:8.1f} ms  "
        if k == "hint-start":
            lines.append(t + f"QEMU writes cmd id {e['cmd_id']:#x}; the guest will hint "
                             f"{e['planned_blocks']:,} blocks of 4 MiB")
        elif k == "hints":
            lines.append(t + f"hints for cmd id {e['cmd_id']:#x} so far: {e['blocks']:,} blocks, "
                             f"{e['pages_cleared']:,} bits cleared in the migration bitmap")
        elif k == "hint-stop":
            lines.append(t + f"STOP (cmd id 0) before a bitmap sync; round {e['cmd_id']:#x} "
                             f"hinted {e['hinted_blocks']:,} blocks")
        elif k == "hint-done":
            lines.append(t + f"DONE (cmd id 1): the guest frees its {e['blocks_freed']:,} hinted blocks")
        elif k == "vm-stop":
            lines.append(t + "the VM stops: stop-and-copy")
        elif k == "completed":
            lines.append(t + f"completed; downtime {e['downtime'] * 1000:.0f} ms")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- Wei Wang's runs
def wei_wang_text(rows) -> str:
    head = (f"{'series':16}{'RAM':>5}{'downtime':>9}{'hint ms':>9}{'legacy ms':>10}{'saving':>8}   "
            f"{'model hint':>10}{'original':>9}{'saving':>8}")
    lines = [f"{'':39}published{'':17}model (seed-2016 testbed)", head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['series']:16}{r['ram-gib']:>4}G{r['downtime-ms']:>7} ms{r['published-hint-ms']:9,}"
                     f"{r['published-legacy-ms']:10,}{100 * r['published-saving']:7.1f}%   "
                     f"{r['model-hint-ms']:10,}{r['model-legacy-ms']:9,}{100 * r['model-saving']:7.1f}%")
    return "\n".join(lines)


def wei_wang_figure(rows):
    """Left: published and model times (log scale); right: the share of time hinting saves."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1.6, 1]})
    labels = [f"{r['series']}\n{r['ram-gib']} GB, {r['downtime-ms']} ms" for r in rows]
    x = np.arange(len(rows))
    w = 0.2
    series = [("published-legacy-ms", "published, without hints", MODE_COLOURS["original"], "//"),
              ("model-legacy-ms", "model, original", MODE_COLOURS["original"], ""),
              ("published-hint-ms", "published, with hints", MODE_COLOURS["hint"], "//"),
              ("model-hint-ms", "model, hint", MODE_COLOURS["hint"], "")]
    for i, (key, lab, col, hatch) in enumerate(series):
        a.bar(x + (i - 1.5) * w, [r[key] / 1000 for r in rows], w, label=lab, color=col if not hatch else "white",
              edgecolor=col, hatch=hatch)
    a.set_yscale("log")
    a.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    a.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a.yaxis.set_minor_locator(NullLocator())
    a.set_xticks(x, labels, fontsize=7)
    a.set_ylabel("total time (s)")
    a.grid(axis="y", alpha=0.3)
    a.legend(fontsize=7, ncol=2)
    b.plot(x, [100 * r["published-saving"] for r in rows], "o", color="k", label="published")
    b.plot(x, [100 * r["model-saving"] for r in rows], "s", color=MODE_COLOURS["hint"], label="model")
    b.set_xticks(x, [f"{r['series'].split()[0]}, {r['ram-gib']} GB" for r in rows], fontsize=7)
    b.set_ylabel("time saved by hinting (%)")
    b.set_ylim(60, 100)
    b.grid(alpha=0.3)
    b.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- the widget
_TRACKED: dict = {}              # Scenario.key() -> (PNG, stats); the page maps are not kept
_TRACKED_SIZE = 16


def _tracked(ram_gib: int, workload: str, mode: str):
    """(page-map PNG, query-migrate stats) of one migration with page tracking (cached)."""
    s = beyond.scenario(int(ram_gib * GiB), workload, mode, track_pages=True)
    key = s.key()
    if key not in _TRACKED:
        r = _scenario.run(s, cache=False)           # a page map per run: not for run()'s cache
        img = pm.png(pm.render(pm.migration_classes(r), pm.MIGRATION_COLOURS, 1024, 160))
        _TRACKED[key] = (img, r.stats)
        while len(_TRACKED) > _TRACKED_SIZE:
            _TRACKED.pop(next(iter(_TRACKED)))
    img, stats = _TRACKED[key]
    return img, copy.deepcopy(stats)


def explorer_png(table, workload, mode, ram_gib, dpi=72) -> bytes:
    """Time and bytes of the four modes on one guest (``mode`` outlined), and where the time goes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(13, 3.6))
    FigureCanvasAgg(fig)
    at, ab, ac = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.4]})
    one = {f"{workload}, {ram_gib} GiB": table}
    draw_comparison(at, ab, one, highlight=mode)
    draw_breakdown(ac, {m: table[m]["breakdown-ms"] for m in table}, "where the time goes")
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.15, top=0.92, wspace=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def caption_html(table, workload, mode, ram_gib, stats) -> str:
    r, base = table[mode], table["original"]
    ram = stats["ram"]
    extra = ""
    if "free-page-hint" in stats:
        h = stats["free-page-hint"]
        extra = (f"; {h['blocks-hinted']:,} blocks of 4 MiB hinted in {h['rounds']} rounds "
                 f"(cmd ids from {h['cmd-ids'][0]:#x})" if h["cmd-ids"] else "")
    if "free-page-reporting" in stats:
        extra = f"; {stats['free-page-reporting']['reported-pages']:,} pages reported before migration"
    return (f"<b>{html.escape(MODE_LABELS[mode])}</b>, {html.escape(workload)} guest, {ram_gib} GiB: "
            f"{r['total-ms']:,} ms, {r['transferred'] / MiB:,.0f} MiB sent, downtime {r['downtime-ms']:,} ms, "
            f"{ram['free-skipped']:,} pages skipped as free, {ram['duplicate']:,} sent as zero{extra}. "
            f"Time saved against original: {100 * beyond.saving(base, r):.1f} %.")


class BeyondExplorer:
    """The four modes side by side on one guest; the chosen mode's page map below.

    Controls: ``mode`` (which mode to outline and map), ``guest`` (idle, hog, dirtying)
    and ``ram`` (1 to 64 GiB, runs when released).  Every run is cached.
    """

    def __init__(self, ram_gib=8, workload="idle", mode="hint"):
        import ipywidgets as widgets
        self.mode = widgets.ToggleButtons(options=list(MODES), value=mode, description="mode")
        self.guest = widgets.ToggleButtons(options=list(WORKLOADS), value=workload, description="guest")
        self.ram = widgets.SelectionSlider(options=[(f"{g} GiB", g) for g in RAM_OPTIONS], value=ram_gib,
                                           description="RAM", continuous_update=False)
        self.image = widgets.Image(format="png", layout=widgets.Layout(width="100%"))
        self.map_title = widgets.HTML("")
        self.page_map = widgets.Image(format="png", layout=widgets.Layout(width="100%"))
        self.legend = widgets.HTML(pm.legend_html(pm.MIGRATION_CLASSES, pm.MIGRATION_COLOURS))
        self.caption = widgets.HTML("")
        self.widget = widgets.VBox([self.mode, self.guest, self.ram, self.image, self.map_title,
                                    self.page_map, self.legend, self.caption])
        for w in (self.mode, self.guest, self.ram):
            w.observe(self._on_change, names="value")
        self.update()

    def _on_change(self, change):
        self.update()

    def update(self):
        ram, wl, mode = self.ram.value, self.guest.value, self.mode.value
        self.table = beyond.compare(int(ram * GiB), wl)
        self.image.value = memo_png(explorer_png, self.table, wl, mode, ram)
        img, stats = _tracked(ram, wl, mode)
        self.stats = stats
        self.page_map.value = img
        self.map_title.value = (f"<b>pc.ram and vga.vram after the {html.escape(mode)} migration</b> "
                                f"(ram_addr order, left to right, top to bottom)")
        self.caption.value = caption_html(self.table, wl, mode, ram, stats)
        return self
