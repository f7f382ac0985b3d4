"""A widget that moves the downtime limit and shows downtime and total time, original vs pv.

Display only: every run goes through :func:`kit.downtime.sweep`, that is
:func:`kit.scenario.run` (cached), with the cost model's ``downtime_limit_ms`` changed.
The curves are the runs at :data:`kit.downtime.LIMITS_MS`; the slider's limit is run
too and drawn as a vertical line with its points.  Free page hinting (mode ``hint``) is
a checkbox, off at first.
"""
from __future__ import annotations

import html
import io

import numpy as np

from .. import downtime as dt
from ..scenario import Scenario
from . import palette
from .memo import memo_png

__all__ = ["GUESTS", "MODE_STYLE", "downtime_png", "point_html", "DowntimeExplorer"]

# the guests the widget offers: notebook 00's dirtying guest and the cover letter's two cases
GUESTS = {
    "1 GiB dirtying (notebook 00)": Scenario(ram="1G", workload="dirtying", track_pages=False),
    "8 GiB idle (cover letter)": Scenario(ram="8G", workload="idle", track_pages=False),
    "8 GiB after the hog (cover letter)": Scenario(ram="8G", workload="hog", track_pages=False),
}
MODE_STYLE = {"original": (palette.MODES["original"], "o", "-"), "pv": (palette.MODES["pv"], "s", "-"),
              "hint": (palette.MODES["hint"], "^", "--")}
MODE_LABEL = {"original": "original", "pv": "pv (the RFC)", "hint": "free page hinting"}


def downtime_png(curves: dict, limit_ms: float, point: dict, title: str = "", dpi: int = 80) -> bytes:
    """Two panels: downtime and total time against the limit, one curve per mode, the
    chosen ``limit_ms`` as a vertical line with ``point`` ({mode: (downtime, total)}) on it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(10, 3.4))
    FigureCanvasAgg(fig)
    ad, at = fig.subplots(1, 2)
    top = max(max(curves[m]["limit-ms"]) for m in curves)
    ad.plot([0, top], [0, top], color=palette.GREY, lw=1, zorder=0)
    ad.text(top * 0.62, top * 0.70, "downtime = limit", color=palette.MID_GREY, rotation=0, fontsize=8)
    for mode, c in curves.items():
        colour, marker, ls = MODE_STYLE[mode]
        ad.plot(c["limit-ms"], c["downtime-ms"], ls, color=colour, marker=marker, ms=4, label=MODE_LABEL[mode])
        at.plot(c["limit-ms"], c["total-time-ms"], ls, color=colour, marker=marker, ms=4, label=MODE_LABEL[mode])
        d, t = point[mode]
        ad.plot([limit_ms], [d], marker="*", ms=14, color=colour, mec="black", zorder=5)
        at.plot([limit_ms], [t], marker="*", ms=14, color=colour, mec="black", zorder=5)
    for ax, what in ((ad, "downtime (ms)"), (at, "total time (ms)")):
        ax.axvline(limit_ms, color="black", lw=0.8, ls=":")
        ax.set_xlabel("downtime limit, migrate_set_downtime (ms)")
        ax.set_ylabel(what)
        ax.set_xlim(0, top * 1.03)
        ax.spines[["top", "right"]].set_visible(False)
    ad.set_ylim(bottom=0)
    at.set_ylim(bottom=0)
    ad.legend(frameon=False, fontsize=8, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.16, top=0.88, wspace=0.25)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def point_html(limit_ms: float, point: dict) -> str:
    """One line per mode: downtime and total time at this limit (fixed height: one row per mode)."""
    rows = "".join(
        f"<tr><td>{html.escape(MODE_LABEL[m])}</td><td style='text-align:right'>{d} ms</td>"
        f"<td style='text-align:right'>{t:,} ms</td></tr>" for m, (d, t) in point.items())
    return (f"<div>downtime limit <b>{limit_ms:g} ms</b>: each run pauses the guest for less than the limit"
            f" (or about as long)</div><table style='font-family:monospace'><tr><th>mode</th>"
            f"<th>downtime</th><th>total time</th></tr>{rows}</table>")


class DowntimeExplorer:
    """Pick a guest, move the downtime limit; see downtime and total time, original vs pv
    (and free page hinting when its box is ticked).  ``update()`` redraws; the slider runs
    when let go (``continuous_update=False``)."""

    def __init__(self, guest: str = next(iter(GUESTS)), limit_ms: int = 300, hint: bool = False,
                 limits=dt.LIMITS_MS):
        import ipywidgets as widgets
        self.limits = tuple(limits)
        self.guest = widgets.Dropdown(options=list(GUESTS), value=guest, description="guest",
                                      layout=widgets.Layout(width="24em"))
        self.limit = widgets.IntSlider(value=limit_ms, min=10, max=1000, step=10,
                                       description="limit (ms)", continuous_update=False)
        self.hint = widgets.Checkbox(value=hint, description="free page hinting too")
        self.image = widgets.Image(format="png", layout=widgets.Layout(width="100%"))
        self.caption = widgets.HTML("")
        self.widget = widgets.VBox([widgets.HBox([self.guest, self.hint]), self.limit, self.image,
                                    self.caption])
        for w in (self.guest, self.limit, self.hint):
            w.observe(self._on_change, names="value")
        self.update()

    def _on_change(self, change):
        self.update()

    @property
    def modes(self) -> tuple:
        return ("original", "pv", "hint") if self.hint.value else ("original", "pv")

    def update(self):
        s = GUESTS[self.guest.value]
        lim = self.limit.value
        curves = dt.sweep(s, self.limits, self.modes)
        here = dt.sweep(s, (lim,), self.modes)
        self.point = {m: (here[m]["downtime-ms"][0], here[m]["total-time-ms"][0]) for m in self.modes}
        self.image.value = memo_png(downtime_png, curves, lim, self.point, title=self.guest.value)
        self.caption.value = point_html(lim, self.point)
        return self
