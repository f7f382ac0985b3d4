"""Notebook 09's display: QEMU 7.2 beside QEMU 10.0 in the lab (data: :mod:`kit.lab.compare`).

Text tables in plain characters, figures in matplotlib, one widget (:class:`QemuCurves`).
"""
from __future__ import annotations


import numpy as np

from ..lab import compare as lc
from ..lab import model as lm
from ..units import MiB
from . import palette
from .widgets import PickedFigure

QEMU_COLOURS = palette.QEMUS
WORKAROUND = {True: "8 KiB less", False: "exact RAM"}


def tcg_bug_text(rows) -> str:
    """Lost writes per cell of the stress + verify rows, and a total per QEMU and RAM size."""
    lines = [f"{'QEMU':>5} {'RAM size':>10} {'guest':>5} {'hint':>4}  lost writes per run   destinations"]
    for (q, wa, ram, hint), rs in lc.tcg_bug_cells(rows).items():
        lost = ", ".join(str(lc.lost_writes(r)) for r in rs)
        healthy = sum(r["status"] == "ok" for r in rs)
        lines.append(f"{q:>5} {WORKAROUND[wa]:>10} {ram:>5} {'on' if hint else 'off':>4}  {lost:<20} "
                     f"{healthy} of {len(rs)} healthy")
    lines.append("")
    for (q, wa), s in lc.tcg_bug_summary(rows).items():
        lines.append(f"QEMU {q}, {WORKAROUND[wa]}: {s['runs-losing']} of {s['runs']} runs lost a write "
                     f"({s['lost-writes']} in all), {s['unhealthy']} destinations not healthy")
    return "\n".join(lines)


def tcg_bug_figure(rows):
    """Lost writes of every run, grouped by QEMU and RAM size (a bar per run)."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 3.0))
    groups: dict = {}
    for (q, wa, ram, hint), rs in lc.tcg_bug_cells(rows).items():
        groups.setdefault((q, wa), []).extend(lc.lost_writes(r) or 0 for r in rs)
    x = 0
    ticks, labels = [], []
    for (q, wa), vals in groups.items():
        xs = np.arange(x, x + len(vals))
        ax.bar(xs, vals, color=QEMU_COLOURS[q], hatch="" if wa else "//", edgecolor=palette.WHITE,
               width=0.8)
        ticks.append(xs.mean())
        labels.append(f"QEMU {q}\n{WORKAROUND[wa]}")
        x += len(vals) + 2
    ax.set_xticks(ticks, labels, fontsize=8)
    ax.set_ylabel("lost writes in one run")
    ax.set_title("stress + verify, 1 and 2 GiB, hint off and on, 2 runs each", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def setup_text(rows) -> str:
    """Median setup-time per (QEMU, RAM size, guest RAM), with the runs' range."""
    import statistics
    lines = [f"{'QEMU':>5} {'RAM size':>10} {'guest':>5} {'runs':>4} {'setup ms (median)':>17} {'range':>13}"]
    for (q, wa, ram), v in lc.setup_cells(rows).items():
        lines.append(f"{q:>5} {WORKAROUND[wa]:>10} {ram:>5} {len(v):>4} {statistics.median(v):>17,.0f} "
                     f"{min(v):>6,}-{max(v):<6,}")
    return "\n".join(lines)


def postcopy_text(rows) -> str:
    lines = [f"{'QEMU':>5} {'workload':8} {'postcopy-ram':>12} {'pages skipped':>13} {'hints':>6} "
             f"{'sent / guest pages':>18} {'lost writes':>11}"]
    for r in lc.postcopy_rows(rows):
        lw = "-" if r["lost-writes"] is None else str(r["lost-writes"])
        lines.append(f"{r['qemu']:>5} {r['workload']:8} {'on' if r['postcopy'] else 'off':>12} "
                     f"{r['pages-skipped']:>13,} {r['hint-pops']:>6,} {r['sent-fraction']:>18.3f} {lw:>11}")
    return "\n".join(lines)


def first_pass_drops_text(rows) -> str:
    """Per hint-on cell: the median largest fall of ``remaining`` between two polls of the first
    pass, beside what QEMU sent between those polls."""
    import statistics
    cells: dict = {}
    for d in lc.first_pass_drops(rows):
        cells.setdefault((d["ram"], d["workload"]), []).append(d)
    lines = [f"{'cell':10} {'runs':>4} {'largest fall in one poll (MiB)':>30} {'sent meanwhile (MiB)':>21}"]
    for (ram, wl), ds in sorted(cells.items(), key=lambda kv: (int(kv[0][0][:-1]), kv[0][1])):
        lines.append(f"{ram + ' ' + wl:10} {len(ds):>4} {statistics.median(d['drop'] for d in ds) / MiB:>30,.0f} "
                     f"{statistics.median(d['sent'] for d in ds) / MiB:>21,.1f}")
    return "\n".join(lines)


def verdict_classes_text(rows) -> str:
    """Per stress cell: the differing pages by class, summed over its runs."""
    lines = [f"{'QEMU':>5} {'RAM size':>10} {'guest':>5} {'hint':>4} {'differ':>7} {'held live':>9} "
             f"{'free':>5} {'unplaced':>8} {'of them zero on dst':>19}"]
    for (q, wa, ram, hint), rs in lc.tcg_bug_cells(rows).items():
        tot = {"differ": 0, "held-live": 0, "free": 0, "unplaced": 0, "unplaced-dst-zero": 0}
        for r in rs:
            d = r.get("src-dst-diff") or {}
            tot["differ"] += d.get("pages-differ", 0)
            for k in ("held-live", "free", "unplaced", "unplaced-dst-zero"):
                tot[k] += d.get("classes", {}).get(k, 0)
        lines.append(f"{q:>5} {WORKAROUND[wa]:>10} {ram:>5} {'on' if hint else 'off':>4} {tot['differ']:>7,} "
                     f"{tot['held-live']:>9,} {tot['free']:>5,} {tot['unplaced']:>8,} {tot['unplaced-dst-zero']:>19,}")
    return "\n".join(lines)


def both_text(both) -> str:
    """Per cell, both QEMUs' median total time, setup, the rest, and bytes."""
    lines = [f"{'cell':18} | {'7.2 total':>9} {'setup':>6} {'rest':>6} {'MiB':>6} | "
             f"{'10.0 total':>10} {'setup':>6} {'rest':>6} {'MiB':>6}"]
    for r in both:
        cell = f"{r['ram']} {r['workload']} hint {'on' if r['hint'] else 'off'}"
        parts = []
        for q in ("7.2", "10.0"):
            parts.append(f"{r[q, 'total-time-ms']:>{9 if q == '7.2' else 10},.0f} {r[q, 'setup-time-ms']:>6,.0f} "
                         f"{lc.after_setup_ms(r, q):>6,.0f} {r[q, 'transferred-kb'] / 1024:>6,.0f}")
        lines.append(f"{cell:18} | {parts[0]} | {parts[1]}")
    return "\n".join(lines)


def both_figure(both, workload="hog"):
    """Total time against RAM, hint off and on, both QEMUs: setup (dark) and the rest (light)."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, hint in zip(axes, (False, True)):
        rs = [r for r in both if r["workload"] == workload and r["hint"] == hint]
        x = np.arange(len(rs))
        for k, q in enumerate(("7.2", "10.0")):
            setup = np.array([r[q, "setup-time-ms"] for r in rs], float) / 1000
            rest = np.array([lc.after_setup_ms(r, q) for r in rs], float) / 1000
            xs = x + (k - 0.5) * 0.38
            ax.bar(xs, setup, width=0.36, color=QEMU_COLOURS[q], label=f"QEMU {q}: setup")
            ax.bar(xs, rest, width=0.36, bottom=setup, color=QEMU_COLOURS[q], alpha=0.4, hatch="..",
                   edgecolor=palette.WHITE, label=f"QEMU {q}: the rest")
        ax.set_xticks(x, [r["ram"] for r in rs])
        ax.set_title(f"{workload}, hint {'on' if hint else 'off'}", fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("median total time (s)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def curves_pair_figure(rows_by_qemu, ram, workload):
    """``remaining`` against time after setup, hint off (left) and on (right), every run of
    both QEMUs."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, hint in zip(axes, (False, True)):
        for q, rows in rows_by_qemu.items():
            runs = lm.lab_curves(rows, ram, workload, hint)
            for i, c in enumerate(runs):
                t = np.asarray(c["t-ms"], float)
                ax.plot(t / 1000, np.asarray(c["remaining"]) / MiB, color=QEMU_COLOURS[q], lw=1, alpha=0.8,
                        ls="-" if q == "7.2" else "--", label=f"QEMU {q} ({len(runs)} runs)" if i == 0 else None)
        ax.set_title(f"{ram} {workload}, hint {'on' if hint else 'off'}", fontsize=10)
        ax.set_xlabel("s after the migrate command")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("remaining (MiB)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


class QemuCurves(PickedFigure):
    """Pick a RAM size and a workload: both QEMUs' recorded curves, hint off and on."""

    def __init__(self, rows_by_qemu, dpi=72):
        import ipywidgets as widgets
        self.rows_by_qemu, self.dpi = rows_by_qemu, dpi
        cells = set.intersection(*({(r["config"]["ram"], r["config"]["workload"]) for r in rows
                                    if r.get("status") == "ok" and "curve" in r}
                                   for rows in rows_by_qemu.values()))
        rams = sorted({c[0] for c in cells}, key=lambda r: int(r[:-1]))
        self.ram = widgets.Dropdown(options=rams, value=rams[0], description="RAM")
        self.workload = widgets.ToggleButtons(options=["idle", "hog"], value="idle", description="workload")
        self._build([self.ram, self.workload])

    def figure(self):
        return curves_pair_figure(self.rows_by_qemu, self.ram.value, self.workload.value)

    def note_text(self) -> str:
        n = {q: len([r for r in rows if r["config"]["ram"] == self.ram.value
                     and r["config"]["workload"] == self.workload.value and r.get("status") == "ok"])
             for q, rows in self.rows_by_qemu.items()}
        return ", ".join(f"QEMU {q}: {k} runs" for q, k in n.items())
