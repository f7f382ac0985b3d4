"""Notebook 08 (the real-QEMU lab): tables, figures and the explorer widget.

Display only.  The rows come from :mod:`kit.lab.experiment` (a live run) or
``data/lab/*.json``; medians, model runs and the gap figures come from
:mod:`kit.lab.model`.  Nothing here runs QEMU or fits anything.

* ``*_text`` functions return small plain-text tables.
* ``*_figure`` functions return a pyplot figure for inline use.
* :class:`LabExplorer` is the widget: one lab cell (RAM, workload, hint) beside
  the model, redrawn as PNG into ``widgets.Image``.
"""
from __future__ import annotations

import html
import io
import os
import re
import statistics
import textwrap

import numpy as np

from ..lab import model as lm
from ..units import MiB
from . import palette
from .widgets import PickedFigure

HINT_COLOURS = palette.HINT     # as notebook 07: original red (vermillion), hint blue
HINT_LABELS = {False: "hint off", True: "hint on"}
MODEL_COLOUR = "k"
PV_COLOUR = palette.MODES["pv"]
FATE_COLOURS = palette.FATES


def onoff(hint) -> str:
    return "on" if hint else "off"


def cell_label(ram, workload, hint) -> str:
    return f"{ram} {workload} hint {onoff(hint)}"


# ---------------------------------------------------------------------------- one row
def short_command(cmd) -> str:
    """A QEMU command line, wrapped, with the run's temp folder written ``<tmp>`` and
    the guest's kernel and initrd by file name only (they live in a per-user cache)."""
    out, prev = [], None
    for a in cmd:
        a = re.sub(r"/tmp/kit-lab-[^/,]+", "<tmp>", str(a))
        if prev in ("-kernel", "-initrd"):
            a = "<cache>/" + os.path.basename(a)
        if " " in a:
            a = f"'{a}'"
        out.append(a)
        prev = a
    out[0] = os.path.basename(out[0])
    return textwrap.fill(" ".join(out), width=100, subsequent_indent="    ", break_on_hyphens=False,
                         break_long_words=False)


def setup_text(row) -> str:
    """What ran: QEMU, the machine, the device, the guest, the host (from one row)."""
    cmd = row["command-lines"]["source"]
    q, g, h = row["qemu"], row["guest"], row["host"]
    v = q.get("version") or {}
    dev = next(cmd[i + 1] for i, a in enumerate(cmd) if a == "-device")
    return "\n".join([
        f"QEMU          {v.get('major')}.{v.get('minor')}.{v.get('micro')} ({q.get('package') or 'no package'})",
        f"accelerator   {cmd[cmd.index('-accel') + 1]}, machine {cmd[cmd.index('-M') + 1]}, "
        f"-smp {cmd[cmd.index('-smp') + 1]}, -m {cmd[cmd.index('-m') + 1]}, -nodefaults",
        f"balloon       {dev}",
        f"guest kernel  {g['kernel-package']}",
        f"guest /init   {g['busybox-package']}, modules: {', '.join(g['modules'])}",
        f"kernel args   {g['append']}",
        f"host          {h['cpus']} CPUs, Linux {h['kernel']}",
    ])


def row_text(row) -> str:
    """One run: its status, the command line, query-migrate's figures, the destination."""
    c, qm = row["config"], row.get("query-migrate") or {}
    ram = qm.get("ram", {})
    d = row.get("derived") or {}
    dest = row.get("destination") or {}
    lines = [f"run           {c['ram']} {c['workload']}, free-page-hint={onoff(c['free_page_hint'])}, "
             f"init_on_alloc={c['init_on_alloc']}: status {row['status']}"
             + (f" at {row['stage']}: {row['error']}" if row["status"] != "ok" else ""),
             "source        " + short_command(row["command-lines"]["source"]).replace("\n", "\n" + " " * 14)]
    if qm:
        lines += [
            f"query-migrate status {qm.get('status')}, total-time {qm.get('total-time')} ms, "
            f"setup-time {qm.get('setup-time')} ms, downtime {qm.get('downtime')} ms",
            f"  ram         transferred {ram.get('transferred', 0):,} B, normal {ram.get('normal', 0):,} pages, "
            f"duplicate (zero) {ram.get('duplicate', 0):,} pages",
            f"              total {ram.get('total', 0):,} B, dirty-sync-count {ram.get('dirty-sync-count')}, "
            f"downtime-bytes {ram.get('downtime-bytes', 0):,} B"]
    if d:
        lines.append(f"derived       {d['guest-pages']:,} guest pages: {d['pages-sent']:,} sent, "
                     f"{d['pages-skipped']:,} skipped ({100 * (1 - d['sent-fraction']):.1f} %)")
    if dest:
        lines.append(f"destination   {dest.get('status', '?')}, heartbeat {dest.get('heartbeat', '-')} "
                     f"{dest.get('heartbeat-after-s', '-')} s after switch-over, "
                     f"panic {dest.get('panic', '-')}, QEMU alive {dest.get('alive', '-')}")
    return "\n".join(lines)


def pair_text(rows) -> str:
    """Two or more runs side by side: time, bytes, pages in full / zero / skipped, downtime."""
    head = f"{'run':24}{'status':>8}{'total ms':>10}{'MiB sent':>10}{'in full':>10}{'zero':>10}" \
           f"{'skipped':>10}{'downtime':>10}"
    lines = [head]
    for r in rows:
        c, d = r["config"], r.get("derived") or {}
        name = cell_label(c["ram"], c["workload"], c["free_page_hint"])
        if not d:
            lines.append(f"{name:24}{r['status']:>8}")
            continue
        lines.append(f"{name:24}{r['status']:>8}{d['total-time-ms']:10,}{d['transferred-bytes'] / MiB:10,.1f}"
                     f"{d['normal-pages']:10,}{d['zero-pages']:10,}{d['pages-skipped']:10,}"
                     f"{d['downtime-ms']:8,} ms")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- the matrix
def _rng(cell, f, fmt="{:,.0f}"):
    r = cell.get(f + "-range")
    return f"{fmt.format(r[0])}-{fmt.format(r[1])}" if r else "-"


def medians_text(med) -> str:
    """One line per cell: runs ok / failed, then the median and [min-max] of the total
    time, the KB sent, the pages sent in full and skipped, and the downtime."""
    head = (f"{'cell':24}{'ok':>3}{'failed':>7} {'total ms':>22} {'KB sent':>30} "
            f"{'pages in full':>26} {'skipped':>9} {'downtime ms':>16}")
    lines = [head, "-" * len(head)]
    for (ram, wl, hint), c in med.items():
        if not c["runs"]:
            lines.append(f"{cell_label(ram, wl, hint):24}{0:3}{c['failed']:7}  (no ok run)")
            continue
        lines.append(
            f"{cell_label(ram, wl, hint):24}{c['runs']:3}{c['failed']:7} "
            f"{c['total-time-ms']:7,.0f} [{_rng(c, 'total-time-ms'):>12}] "
            f"{c['transferred-kb']:10,.0f} [{_rng(c, 'transferred-kb'):>17}] "
            f"{c['normal-pages']:8,.0f} [{_rng(c, 'normal-pages'):>15}] "
            f"{c['pages-skipped']:9,.0f} "
            f"{c['downtime-ms']:5,.0f} [{_rng(c, 'downtime-ms'):>8}]")
    return "\n".join(lines)


def compare_text(cmp) -> str:
    """Lab medians beside the model, with (model - lab) / lab and the fit/predicted tag."""
    head = (f"{'cell':24}{'role':>10}{'n':>3} |{'ms lab':>8}{'model':>7}{'diff':>7} |{'MiB lab':>9}"
            f"{'model':>8}{'diff':>7} |{'in full lab':>12}{'model':>8} |{'skipped lab':>12}{'model':>8}")
    lines = [head, "-" * len(head)]
    for r in cmp:
        lab, m = r["lab"], r["model"]

        def diff(f):
            return f"{100 * (m[f] / lab[f] - 1):+6.0f}%" if lab[f] else "     -"
        lines.append(
            f"{cell_label(r['ram'], r['workload'], r['hint']):24}{r['role']:>10}{r['runs']:3} |"
            f"{lab['total-time-ms']:8,.0f}{m['total-time-ms']:7,}{diff('total-time-ms')} |"
            f"{lab['transferred-kb'] / 1024:9,.1f}{m['transferred-kb'] / 1024:8,.1f}{diff('transferred-kb')} |"
            f"{lab['normal-pages']:12,.0f}{m['normal-pages']:8,} |"
            f"{lab['pages-skipped']:12,.0f}{m['pages-skipped']:8,}")
    return "\n".join(lines)


def cost_text(cost, seed) -> str:
    """The fitted ``tcg-loopback`` parameters beside the ``seed-2016`` ones."""
    rows = [("wire rate", f"{cost.wire_bytes_per_s * 8 / 1e9:.2f} Gbit/s", f"{seed.wire_bytes_per_s * 8 / 1e9:.2f} Gbit/s"),
            ("CPU per page", f"{cost.cpu_ns_per_page:,.0f} ns", f"{seed.cpu_ns_per_page:,.0f} ns"),
            ("fixed setup", f"{cost.setup_ms:g} ms", f"{seed.setup_ms:g} ms"),
            ("guest hint per 4 MiB block", f"{cost.hint_ns_per_block / 1000:,.0f} us",
             f"{seed.hint_ns_per_block / 1000:,.0f} us"),
            ("boot footprint", f"{cost.guest_sizes['boot_footprint'] / MiB:.1f} MiB", "-"),
            ("stale free pages after boot", f"{cost.guest_sizes['boot_stale_free'] / MiB:.1f} MiB", "-"),
            ("share of free memory the hog wrote", f"{cost.guest_sizes['hog_fraction']:.3f}", "-")]
    lines = [f"{'parameter':36}{'tcg-loopback (fit)':>20}{'seed-2016':>14}"]
    lines += [f"{a:36}{b:>20}{c:>14}" for a, b, c in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- overlay figure
PANELS = (("total-time-ms", 1000, "total time (s)"), ("transferred-kb", 1024, "transferred (MiB)"),
          ("normal-pages", 1000, "pages sent in full (thousands)"),
          ("pages-skipped", 1000, "pages skipped (thousands)"))


def _lab_bar(ax, x, med, rng, runs, hint, scale, width=0.6):
    ax.bar(x, med / scale, width, color=HINT_COLOURS[hint], alpha=0.75)
    if rng:
        ax.errorbar(x, med / scale, yerr=[[max(med - rng[0], 0) / scale], [max(rng[1] - med, 0) / scale]],
                    fmt="none", ecolor="k", capsize=3, lw=1)
    if runs:
        ax.plot([x] * len(runs), np.array(runs, float) / scale, ".", color="k", ms=3, alpha=0.6)


def overlay_figure(cmp, rows, title=""):
    """Lab medians as bars (whiskers: min-max over runs, dots: each run) and the model
    as black diamonds, for time, bytes, pages sent in full and pages skipped.
    Cells the model was not fitted to are shaded and marked "predicted"."""
    import matplotlib.pyplot as plt
    values = {f: lm.cell_values(rows, f) for f, _, _ in PANELS}
    cells = sorted(cmp, key=lambda r: (int(r["ram"].rstrip("GM")) * (1024 if r["ram"].endswith("G") else 1),
                                       r["workload"] != "idle", r["hint"]))
    fig, axes = plt.subplots(2, 2, figsize=(12, 6.4))
    x = np.arange(len(cells))
    for ax, (f, scale, ylabel) in zip(axes.flat, PANELS):
        for i, r in enumerate(cells):
            key = (r["ram"], r["workload"], r["hint"])
            if r["role"] != "fit":
                ax.axvspan(i - 0.5, i + 0.5, color=palette.PALE, zorder=0)
            _lab_bar(ax, i, r["lab"][f], r["lab-range"][f], values[f].get(key), r["hint"], scale)
            ax.plot(i, r["model"][f] / scale, "D", color=MODEL_COLOUR, ms=6, mfc="white", mew=1.5)
        ax.set_xticks(x, [f"{r['ram']}\n{r['workload']}\n{onoff(r['hint'])}" for r in cells], fontsize=7)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.set_xlim(-0.5, len(cells) - 0.5)
        top = ax.get_ylim()[1] * 1.12
        ax.set_ylim(0, top)
        for i, r in enumerate(cells):
            ax.text(i, top * 0.97, r["role"], ha="center", va="top", fontsize=6, color=palette.TEXT_GREY)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    handles = [Patch(color=HINT_COLOURS[False], alpha=0.75, label="lab, hint off (median)"),
               Patch(color=HINT_COLOURS[True], alpha=0.75, label="lab, hint on (median)"),
               Line2D([], [], color="k", marker="|", ls="none", label="lab min-max; dots: each run"),
               Line2D([], [], color=MODEL_COLOUR, marker="D", mfc="white", ls="none", label="model"),
               Patch(color=palette.PALE, label="predicted (not fitted)")]
    fig.legend(handles=handles, loc="upper center", ncol=5, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10, y=0.93)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig


# ---------------------------------------------------------------------------- the gaps
def race_text(race) -> str:
    head = (f"{'cell':10}{'runs':>6}  {'pages in full, spread':>23}  {'total time, spread':>20}  "
            f"{'skipped with hints':>22}")
    lines = [head, f"{'':16}  {'hint off':>11}{'hint on':>12}  {'hint off':>9}{'hint on':>11}  "
                   f"{'fewest':>11}{'most':>11}"]
    for (ram, wl), r in race.items():
        lines.append(f"{ram + ' ' + wl:10}{r['runs-off']:>3}/{r['runs-on']:<2}  {100 * r['normal-off']:10.1f}%"
                     f"{100 * r['normal-on']:11.1f}%  {100 * r['time-off']:8.0f}%{100 * r['time-on']:10.0f}%  "
                     f"{r['skipped-min']:11,}{r['skipped-max']:11,}")
    return "\n".join(lines)


def scaling_text(sc) -> str:
    lines = [f"{'cell':14}{'lab: fixed ms':>14}{'ms per GiB':>12}   {'model: fixed ms':>16}{'ms per GiB':>12}"
             f"   {'lab ms at each size':>24}"]
    for (wl, hint), s in sc.items():
        at = ", ".join(f"{g:g}G {t:,.0f}" for g, t in zip(s["gib"], s["lab"]))
        lines.append(f"{wl + ' hint ' + onoff(hint):14}{s['lab-fixed-ms']:14,.0f}{s['lab-ms-per-gib']:12,.0f}   "
                     f"{s['model-fixed-ms']:16,.0f}{s['model-ms-per-gib']:12,.0f}   {at:>24}")
    return "\n".join(lines)


def scaling_figure(sc):
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len({wl for wl, _ in sc}), figsize=(10, 3.2), squeeze=False)
    for ax, wl in zip(axes.flat, ("idle", "hog")):
        for hint in (False, True):
            s = sc.get((wl, hint))
            if not s:
                continue
            g = np.array(s["gib"])
            gg = np.array([0, g.max()])
            ax.plot(g, np.array(s["lab"]) / 1000, "o", color=HINT_COLOURS[hint], label=f"lab, {HINT_LABELS[hint]}")
            ax.plot(gg, (s["lab-fixed-ms"] + s["lab-ms-per-gib"] * gg) / 1000, "-", color=HINT_COLOURS[hint], lw=1)
            ax.plot(g, np.array(s["model"]) / 1000, "D", color=HINT_COLOURS[hint], mfc="white",
                    label=f"model, {HINT_LABELS[hint]}")
            ax.plot(gg, (s["model-fixed-ms"] + s["model-ms-per-gib"] * gg) / 1000, ":", color=HINT_COLOURS[hint], lw=1)
        ax.set_title(f"{wl} guest", fontsize=9)
        ax.set_xlabel("guest RAM (GiB)")
        ax.set_ylabel("total time (s)")
        ax.set_xlim(0, None)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def ramblocks_text(rb) -> str:
    lines = [f"{'RAM':5}{'guest pages':>13}{'lab: other pages':>18}{'model: vga.vram':>17}"
             f"{'model zero pages (idle, off)':>30}{'without vga.vram':>18}"]
    for ram, r in rb.items():
        lines.append(f"{ram:5}{r['guest-pages']:13,}{r['lab-other-pages']:18,}{r['model-other-pages']:17,}"
                     f"{r['model-zero-pages']:30,}{r['model-zero-pages-no-vga']:18,}")
    return "\n".join(lines)


def downtime_text(dt, model_downtime=None) -> str:
    lines = [f"{'cell':24}{'downtime ms, each run':>24}{'MiB sent while paused, each run':>34}"
             + (f"{'model ms':>10}" if model_downtime else "")]
    for key, d in dt.items():
        ms = ", ".join(f"{v}" for v in d["downtime-ms"])
        mb = ", ".join("-" if v is None else f"{v / MiB:.1f}" for v in d["downtime-bytes"])
        lines.append(f"{cell_label(*key):24}{ms:>24}{mb:>34}"
                     + (f"{model_downtime[key]:10,}" if model_downtime and key in model_downtime else ""))
    return "\n".join(lines)


def load_figure(effect):
    """Each run's time / its cell's median against the host's 1-minute load before it."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for hint in (False, True):
        pts = [(e["load1"], e["time-vs-median"]) for e in effect if e["hint"] == hint and e["load1"] is not None]
        if pts:
            ax.plot(*zip(*pts), "o", color=HINT_COLOURS[hint], alpha=0.7, label=HINT_LABELS[hint])
    ax.axhline(1, color="k", lw=0.8, ls=":")
    ax.set_xlabel("host load average (1 min) when the run started")
    ax.set_ylabel("time / median of its cell")
    ax.set_yscale("log", base=2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def pv_text(table) -> str:
    """``table = {(ram, workload): {"original": stats, "hint": stats, "pv": stats}}`` (model runs)."""
    lines = [f"{'guest':10}{'original ms':>12}{'hint ms':>9}{'pv ms':>8}   {'original MiB':>13}{'hint MiB':>10}"
             f"{'pv MiB':>8}   {'pv: wait for the bitmap':>24}"]
    for (ram, wl), t in table.items():
        o, h, p = t["original"], t["hint"], t["pv"]
        wait = p["breakdown-ms"].get("free-page-wait", 0.0)
        lines.append(f"{ram + ' ' + wl:10}{o['total-time']:12,}{h['total-time']:9,}{p['total-time']:8,}   "
                     f"{o['ram']['transferred'] / MiB:13,.1f}{h['ram']['transferred'] / MiB:10,.1f}"
                     f"{p['ram']['transferred'] / MiB:8,.1f}   {wait:21,.1f} ms")
    return "\n".join(lines)


def _destination_word(r) -> str:
    d = r.get("destination") or {}
    if r["status"] == "ok":
        return "healthy"
    if d.get("panic") or "console shows" in (r.get("error") or ""):
        return "crashed"
    return f"failed at {r.get('stage')}"


def returned_mib(row) -> float:
    """MiB of hinted memory the guest got back from the balloon during the run: kitmem's
    heartbeat counts MemFree jumps after it runs the shrinkers (see kitmem.c)."""
    vals = [int(x.split("returned_kib=")[1].split()[0]) for x in row.get("source-console-tail", [])
            if "returned_kib=" in x]
    return max(vals, default=0) / 1024


def stress_text(stress_rows, model_lost=None) -> str:
    """One line per stress + verify run: the TCG workaround, lost pages (the stamp check),
    pages that differ between the paused source and the destination (non-zero ones are
    lost writes), the destination's health and, with ``model_lost = {(ram, hint): n}``,
    the model's ``verify`` on its dirtying guest."""
    if not stress_rows:
        return "no stress runs recorded yet (data/lab/stress/*.json)"
    lines = [f"{'run':31}{'TCG fix':>8}{'re-used MiB':>12}{'lost pages':>11}{'src != dst':>11}"
             f"{'of them non-zero':>17}{'destination':>13}" + (f"{'model lost':>12}" if model_lost is not None else "")]
    for r in stress_rows:
        c, v, d = r["config"], r.get("verify") or {}, r.get("src-dst-diff") or {}
        wa = (r.get("qemu", {}).get("tcg-dirty-sync-workaround") or {}).get("on")
        name = f"{c['ram']} hint {onoff(c['free_page_hint'])} init_on_alloc={c['init_on_alloc']}"
        lost = v.get("lost-pages")
        ml = model_lost.get((c["ram"], bool(c["free_page_hint"]))) if model_lost is not None else None
        lines.append(f"{name:31}{'-' if wa is None else onoff(wa):>8}{returned_mib(r):>12,.0f}"
                     f"{'-' if lost is None else lost:>11}"
                     f"{d.get('pages-differ', '-'):>11}{d.get('differ-dst-nonzero', '-'):>17}"
                     f"{_destination_word(r):>13}" + (f"{'-' if ml is None else ml:>12}" if model_lost is not None else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------------------- the widget
def _fates(f, total_pages):
    skipped = max(total_pages - f["normal-pages"] - f["zero-pages"], 0)
    return {"sent in full": f["normal-pages"], "sent as zero": f["zero-pages"], "skipped": skipped}


def explorer_png(view, dpi=72) -> bytes:
    """Time, MiB sent and page fates of one cell: the lab (median, min-max, each run),
    the model in the same mode, and the RFC (pv) on the model only."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(13, 3.4))
    FigureCanvasAgg(fig)
    at, ab, af = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.5]})
    hint = view["hint"]
    mode = "hint" if hint else "original"
    for ax, f, scale, unit in ((at, "total-time-ms", 1000, "total time (s)"),
                               (ab, "transferred-kb", 1024, "transferred (MiB)")):
        if view["lab"]:
            _lab_bar(ax, 0, view["lab"][f], view["lab-range"][f], view["runs"][f], hint, scale)
        ax.bar(1, view["model"][f] / scale, 0.6, color="white", edgecolor="k", hatch="//")
        ax.bar(2, view["pv"][f] / scale, 0.6, color=PV_COLOUR, alpha=0.5, edgecolor=PV_COLOUR, hatch="..")
        ax.set_xticks([0, 1, 2], ["lab", f"model\n{mode}", "model\npv (RFC)"], fontsize=8)
        ax.set_ylabel(unit, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        for x, v in ((0, view["lab"][f] if view["lab"] else None), (1, view["model"][f]), (2, view["pv"][f])):
            if v is not None:
                ax.text(x, v / scale, f"{v / scale:.3g}", ha="center", va="bottom", fontsize=7)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.15)
    bars = [("lab", view["lab-fates"]), (f"model {mode}", view["model-fates"]), ("model pv", view["pv-fates"])]
    y = np.arange(len(bars))[::-1]
    for yi, (name, fates) in zip(y, bars):
        left = 0
        for k, col in FATE_COLOURS.items():
            v = fates[k] / 1000 if fates else 0
            af.barh(yi, v, left=left, color=col, label=k if yi == y[0] else None)
            left += v
    af.set_yticks(y, [b[0] for b in bars], fontsize=8)
    af.set_xlabel("pages (thousands)", fontsize=8)
    af.legend(fontsize=7, loc="lower right")
    af.set_title("what happened to each page", fontsize=9)
    fig.suptitle(f"{view['ram']} {view['workload']} guest, free-page-hint={onoff(hint)} "
                 f"({view['role']}; lab: {view['runs-ok']} ok, {view['failed']} failed)", fontsize=10)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.17, top=0.86, wspace=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def caption_html(view) -> str:
    lab, m = view["lab"], view["model"]
    if not lab:
        return f"<b>{html.escape(view['ram'])} {view['workload']}, hint {onoff(view['hint'])}</b>: no ok lab run."
    def d(f):
        return f"{100 * (m[f] / lab[f] - 1):+.0f} %" if lab[f] else "-"
    return (f"<b>{html.escape(view['ram'])} {view['workload']}, hint {onoff(view['hint'])}</b> "
            f"({view['role']}): lab median {lab['total-time-ms']:,.0f} ms and "
            f"{lab['transferred-kb'] / 1024:,.1f} MiB over {view['runs-ok']} run(s); model "
            f"{m['total-time-ms']:,} ms ({d('total-time-ms')}) and {m['transferred-kb'] / 1024:,.1f} MiB "
            f"({d('transferred-kb')}); the RFC (model only) {view['pv']['total-time-ms']:,} ms.")


class LabExplorer:
    """One recorded lab cell beside the model.  Controls: ``workload`` (idle, hog),
    ``hint`` (off, on) and ``ram`` (the recorded sizes).  Everything is computed
    at construction (medians, model runs), so a redraw is only a picture."""

    def __init__(self, rows, cost, workload="idle", hint=True, ram=None):
        import ipywidgets as widgets
        self.views = build_views(rows, cost)
        rams = sorted({k[0] for k in self.views}, key=_mib)
        self.workload = widgets.ToggleButtons(options=["idle", "hog"], value=workload, description="workload")
        self.hint = widgets.ToggleButtons(options=[("off", False), ("on", True)], value=hint,
                                          description="hint")
        self.ram = widgets.ToggleButtons(options=rams, value=ram or rams[0], description="RAM")
        self.image = widgets.Image(format="png", layout=widgets.Layout(width="100%"))
        self.caption = widgets.HTML("")
        self.widget = widgets.VBox([self.workload, self.hint, self.ram, self.image, self.caption])
        for w in (self.workload, self.hint, self.ram):
            w.observe(self._on_change, names="value")
        self.update()

    def _on_change(self, change):
        self.update()

    def update(self):
        self.view = self.views[self.ram.value, self.workload.value, self.hint.value]
        self.image.value = explorer_png(self.view)
        self.caption.value = caption_html(self.view)
        return self


def _mib(ram: str) -> int:
    return int(ram[:-1]) * (1024 if ram.upper().endswith("G") else 1)


def build_views(rows, cost) -> dict:
    """{(ram, workload, hint): everything the explorer draws for that cell}."""
    cmp = {(r["ram"], r["workload"], r["hint"]): r for r in lm.compare(rows, cost)}
    med = lm.medians(rows)
    per_run = {f: lm.cell_values(rows, f) for f in ("total-time-ms", "transferred-kb")}
    views = {}
    for key, cell in med.items():
        ram, wl, hint = key
        mib = cell["ram-mib"]
        pv = lm.model_figures(lm.model_run_mode(cost, mib, wl, "pv"))
        r = cmp.get(key)
        model = r["model"] if r else lm.model_figures(lm.model_run(cost, mib, wl, hint))
        total = mib * MiB // 4096
        lab = r["lab"] if r else None
        views[key] = {"ram": ram, "workload": wl, "hint": hint, "role": "fit" if r and r["role"] == "fit"
                      else "predicted", "runs-ok": cell["runs"], "failed": cell["failed"],
                      "lab": lab, "lab-range": r["lab-range"] if r else None,
                      "runs": {f: per_run[f].get(key, []) for f in per_run},
                      "model": model, "pv": pv,
                      "lab-fates": _fates(lab, total) if lab else None,
                      "model-fates": _fates(model, total), "pv-fates": _fates(pv, total)}
    return views


# ---------------------------------------------------------------------------- the curves
def curves_figure(rows, cost, ram, workload, ax=None):
    """``remaining`` against time: every recorded repetition of the cell (thin lines, hint off
    red and on blue) under the model's curve (black, dashed), and the times the trace saw
    hints reach QEMU (ticks along the bottom)."""
    import matplotlib.pyplot as plt
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 3.4))
    mib = _mib(ram)
    for hint in (False, True):
        runs = lm.lab_curves(rows, ram, workload, hint)
        for i, c in enumerate(runs):
            ax.plot(c["t-ms"], np.asarray(c["remaining"]) / MiB, color=HINT_COLOURS[hint], lw=1, alpha=0.7,
                    label=f"lab, {HINT_LABELS[hint]} ({len(runs)} runs)" if i == 0 else None)
            if hint and c["hint-pops-ms"]:
                ax.plot(c["hint-pops-ms"], np.zeros(len(c["hint-pops-ms"])), "|", color=HINT_COLOURS[hint],
                        ms=8, alpha=0.5, label="hints reach QEMU (trace)" if i == 0 else None)
        m = lm.model_curve(cost, mib, workload, hint)
        ax.plot(m["t-ms"], np.asarray(m["remaining"]) / MiB, color=MODEL_COLOUR, ls="--" if hint else ":",
                lw=1.5, label=f"model, {HINT_LABELS[hint]}")
    ax.set_xlabel("ms after the migrate command")
    ax.set_ylabel("remaining (MiB)")
    ax.set_title(f"{ram} {workload}: what is left to send", fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(alpha=0.3)
    if fig is not None:
        fig.tight_layout()
    return fig if fig is not None else ax.figure


class CurvesExplorer(PickedFigure):
    """Pick a RAM size and a workload; see that cell's recorded curves beside the model's
    (:func:`curves_figure`), as a PNG in a ``widgets.Image``."""

    def __init__(self, rows, cost, dpi=72):
        import ipywidgets as widgets
        self.rows, self.cost, self.dpi = rows, cost, dpi
        cells = sorted({(r["config"]["ram"], r["config"]["workload"]) for r in rows
                        if r.get("status") == "ok" and "curve" in r}, key=lambda c: (_mib(c[0]), c[1]))
        rams = sorted({c[0] for c in cells}, key=_mib)
        workloads = sorted({c[1] for c in cells})
        self.ram = widgets.Dropdown(options=rams, value=rams[0], description="RAM")
        self.workload = widgets.Dropdown(options=workloads, value="hog" if "hog" in workloads else workloads[0],
                                         description="workload")
        self._build([self.ram, self.workload])

    def _recorded(self) -> bool:
        return any(r["config"]["ram"] == self.ram.value and r["config"]["workload"] == self.workload.value
                   for r in self.rows)

    def figure(self):
        return curves_figure(self.rows, self.cost, self.ram.value, self.workload.value) if self._recorded() else None

    def note_text(self) -> str:
        ram, wl = self.ram.value, self.workload.value
        if not self._recorded():
            return f"no recorded runs of {ram} {wl}"
        n = {h: len(lm.lab_curves(self.rows, ram, wl, h)) for h in (False, True)}
        return f"{ram} {wl}: {n[False]} runs with hints off, {n[True]} with hints on"


def hint_pops_text(rows) -> str:
    """Per hint-on cell with a trace: pops of the busiest queue against pages skipped / 1024."""
    cells: dict = {}
    for r in rows:
        c = r.get("config", {})
        if r.get("status") != "ok" or not c.get("free_page_hint") or "trace" not in r:
            continue
        cells.setdefault((c["ram"], c["workload"]), []).append(
            (len(r["trace"].get("hint-pops-ms", [])), r["derived"]["pages-skipped"] / 1024))
    lines = [f"{'cell':14} {'runs':>4} {'pops (median)':>14} {'skipped / 1024':>15}"]
    for (ram, wl), v in sorted(cells.items(), key=lambda kv: (_mib(kv[0][0]), kv[0][1])):
        pops = statistics.median(p for p, _ in v)
        blocks = statistics.median(b for _, b in v)
        lines.append(f"{ram + ' ' + wl:14} {len(v):>4} {pops:>14,.0f} {blocks:>15,.0f}")
    return "\n".join(lines)


def hint_timing_text(t) -> str:
    if not t["runs"]:
        return "no hint-on runs with a trace"
    a, b = t["start-ms-range"]
    return (f"{t['runs']} runs: the first pop {t['start-ms']:.2f} ms after the round starts (runs "
            f"{a:.2f} to {b:.2f}); a gap between iterations every {t['period-ms']:.1f} ms"
            f"{'' if t.get('period-measured') else ' (MAX_WAIT: no single pops to time it)'}; the iothread "
            f"drained the queue at {t['drains']} of {t['gaps']} gaps ({100 * t['drain-chance']:.0f} %); "
            f"the guest hints a block in at most {t['ns-per-block'] / 1e6:.3f} ms")


def prediction_errors_text(errors) -> str:
    lines = []
    for hint, e in errors.items():
        lines.append(f"hint {hint}: {e['cells']} predicted cells; 90th-percentile error: time "
                     f"{100 * e['p90-time']:.0f} %, bytes {100 * e['p90-bytes']:.0f} %; the lab's own "
                     f"spread: time {100 * e['p90-spread-time']:.0f} %, bytes {100 * e['p90-spread-bytes']:.0f} %")
    return "\n".join(lines)


class LabProgress:
    """An ipywidgets progress bar for a live lab run, fed by the run's own polling: pass it as
    ``run_experiment(..., progress=bar)``.  The bar shows the stage, then how much of the
    guest's RAM is left to send."""

    def __init__(self, description="lab run"):
        import ipywidgets as widgets
        self.bar = widgets.FloatProgress(value=0.0, min=0.0, max=1.0, description=description)
        self.label = widgets.Label("waiting to start")
        self.widget = widgets.HBox([self.bar, self.label])
        self._first = None

    def __call__(self, stage, remaining):
        if stage == "migrate" and remaining is not None:
            self._first = self._first or max(remaining, 1)
            self.bar.value = max(0.0, min(1.0, 1 - remaining / self._first))
            self.label.value = f"migrating: {remaining / 1e6:,.0f} MB remaining"
        else:
            self.label.value = stage
            if stage == "destination-health":
                self.bar.value = 1.0

    def reset(self, description=None):
        self._first = None
        self.bar.value = 0.0
        if description:
            self.bar.description = description


def drain_table_text(rows, sizes=("1G", "2G", "4G", "8G")) -> str:
    """Per RAM size: the gaps between iterations while hints waited, and how many of them the
    iothread drained the queue at (:func:`kit.lab.model.hint_timing`), idle and hog together."""
    from ..lab.model import hint_timing
    lines = [f"{'RAM':>4} {'runs':>4} {'gaps':>5} {'drains':>6} {'share':>6}"]
    for ram in sizes:
        t = hint_timing(rows, ram)
        if t["runs"] and t["drain-chance"] is not None:
            lines.append(f"{ram:>4} {t['runs']:>4} {t['gaps']:>5} {t['drains']:>6} {100 * t['drain-chance']:>5.0f}%")
    return "\n".join(lines)


def send_rates_text(rates, workload="hog") -> str:
    """Full pages per second in each run's first 300 ms, hint off beside on, per RAM size."""
    cells: dict = {}
    for r in rates:
        if r["workload"] == workload:
            cells.setdefault((_mib(r["ram"]), r["ram"], r["hint"]), []).append(r["early-mb-s"])
    lines = [f"{workload} guest: MB/s of full pages, first 300 ms of each run"]
    for (_, ram, hint), v in sorted(cells.items()):
        lines.append(f"{ram:>4} hint {onoff(hint):3}: " + ", ".join(f"{x:,.0f}" for x in v))
    return "\n".join(lines)


def rate_conditioned_text(runs) -> str:
    """Each run's bytes, the model's as fitted, and the model's when told the run's own rate."""
    lines = [f"{'RAM':>4} {'run':>3} {'rate MB/s':>9} {'lab KB':>11} {'model KB':>11} {'diff':>6}"
             f" {'own rate KB':>12} {'diff':>6}"]
    for r in runs:
        lines.append(f"{r['ram']:>4} {r['rep']:>3} {r['rate-mb-s']:>9,.0f} {r['lab-kb']:>11,} {r['model-kb']:>11,}"
                     f" {r['model-kb'] / r['lab-kb'] - 1:>+6.0%} {r['own-rate-kb']:>12,}"
                     f" {r['own-rate-kb'] / r['lab-kb'] - 1:>+6.0%}")
    from ..stats import percentile
    big = [r for r in runs if r["ram-mib"] > 1024]
    if big:
        p = {k: percentile([abs(r[k] / r["lab-kb"] - 1) for r in big], 90) for k in ("model-kb", "own-rate-kb")}
        lines.append(f"runs above 1 GiB ({len(big)}), 90th percentile of |diff|: as fitted {p['model-kb']:.0%}, "
                     f"with the run's own rate {p['own-rate-kb']:.0%}")
    return "\n".join(lines)


def pops_per_gap_text(runs, ram) -> str:
    """One line per run: the pops at each gap (a drain is more than three), and its bytes."""
    lines = [f"{ram} hog, hint on: pops at each gap between two iterations (first round)"]
    for r in runs:
        first = next((k + 1 for k, n in enumerate(r["pops"]) if n > 3), None)
        lines.append(f"run {r['rep']}: {r['transferred-kb']:>9,} KB sent, first drain at gap {first}: "
                     + " ".join(str(n) for n in r["pops"]))
    return "\n".join(lines)


def within_range_text(cmp, workload="hog", hint=True, figure="transferred-kb") -> str:
    """Each cell's lab range (fewest to most over its runs) and where the model falls."""
    lines = [f"{workload}, hint {onoff(hint)}: {figure}, the lab's runs (fewest to most) and the model"]
    for r in cmp:
        if r["workload"] != workload or r["hint"] != hint:
            continue
        lo, hi = r["lab-range"][figure]
        m = r["model"][figure]
        where = "inside" if lo <= m <= hi else ("below" if m < lo else "above")
        lines.append(f"{r['ram']:>4} {r['role']:9} {lo:>11,} .. {hi:>11,}   model {m:>11,}  {where}")
    return "\n".join(lines)


def after_previous_text(runs, fast_mb_s=600.0) -> str:
    """Each hog run's early rate beside the run before it (and the full pages that one sent)."""
    lines = [f"{'RAM':>4} {'hint':4} {'run':>3} {'MB/s':>6}  run before it, and the full pages it sent"]
    for r in runs:
        ram, wl, hint = r["previous"]
        lines.append(f"{r['ram']:>4} {onoff(r['hint']):4} {r['rep']:>3} {r['early-mb-s']:>6,.0f}  "
                     f"{ram} {wl} hint {onoff(hint)}, {r['previous-full-mib']:,.0f} MiB")
    for before in ("idle", "hog"):
        these = [r for r in runs if r["previous"][1] == before]
        if not these:
            continue
        fast = sum(r["early-mb-s"] > fast_mb_s for r in these)
        article = "an" if before[0] in "aeiou" else "a"
        lines.append(f"after {article} {before} run: {fast} of {len(these)} runs faster than {fast_mb_s:,.0f} MB/s")
    return "\n".join(lines)


def ab_rates_text(rows, label, workload="hog") -> str:
    """Whole-run MB/s of full pages, grouped by ``label(row)`` (e.g. plain against prealloc)."""
    from ..lab.model import send_rates
    groups: dict = {}
    for r in sorted(rows, key=lambda r: r.get("started", "")):
        for s in send_rates([r], workloads=(workload,)):
            groups.setdefault(label(r), []).append(s["whole-mb-s"])
    width = max(map(len, groups), default=0)
    return "\n".join(f"{k:<{width}}  " + ", ".join(f"{x:,.0f}" for x in v) + " MB/s" for k, v in groups.items())
