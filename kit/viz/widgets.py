"""Thin ipywidgets layers over the model: they hold no logic of their own.

Pictures go into ``widgets.Image`` as PNG (fast redraw, deterministic under
nbval, works in Voila); heavy controls use ``continuous_update=False``.
"""
from __future__ import annotations

import ipywidgets as widgets
import numpy as np

from . import pagemap as pm


def fixed_lines_html(lines, height_lines: int | None = None) -> str:
    """``lines`` as a block of exactly ``height_lines`` lines (default: as many as given).

    Each line stays on one line (no wrapping; what does not fit is cut at the edge), and the
    block's height is fixed, so a caption whose numbers grow never moves the page below it.
    """
    lines = list(lines)
    n = height_lines or len(lines)
    if len(lines) > n:
        raise ValueError(f"{len(lines)} lines do not fit in {n}")
    lines += ["&nbsp;"] * (n - len(lines))
    body = "".join(f"<div style='white-space:nowrap;overflow:hidden;text-overflow:ellipsis'>{x}</div>"
                   for x in lines)
    return f"<div class='kit-fixed-lines' style='line-height:1.4em;height:{1.4 * n:g}em'>{body}</div>"


class PageMapView:
    """A page map picture with a title and a legend; ``update(classes)`` redraws it.

    A picture whose classes did not change since the last update is not encoded or sent again.
    """

    def __init__(self, title: str, names, colours, width: int = 1024, height: int = 256):
        self.names, self.colours, self.width, self.height = names, colours, width, height
        self.title = widgets.HTML(f"<b>{title}</b>")
        self.image = widgets.Image(format="png", layout=widgets.Layout(width="100%"))
        self.caption = widgets.HTML("")
        self._shown = None                  # the classes now in the picture (a copy)
        self.widget = widgets.VBox([self.title, self.image, widgets.HTML(pm.legend_html(names, colours)),
                                    self.caption])

    def update(self, classes, caption: str = ""):
        classes = np.asarray(classes)
        if self._shown is None or not np.array_equal(classes, self._shown):
            self.image.value = pm.png(pm.render(classes, self.colours, self.width, self.height))
            self._shown = classes.copy()
        self.caption.value = caption
        return self


def guest_map(guest, title="guest pages", order="ram", **kw) -> PageMapView:
    view = PageMapView(title, pm.GUEST_CLASSES, pm.GUEST_COLOURS, **kw)
    return view.update(pm.guest_classes(guest, order))


def migration_map(migration, title="migration", **kw) -> PageMapView:
    view = PageMapView(title, pm.MIGRATION_CLASSES, pm.MIGRATION_COLOURS, **kw)
    return view.update(pm.migration_classes(migration))


def info_migrate_html(stats: dict) -> str:
    """``info migrate``-style counters as a small HTML table."""
    ram = stats["ram"]
    rows = [("status", stats["status"]), ("total time", f"{stats['total-time']} ms"),
            ("setup", f"{stats['setup-time']} ms"),
            ("downtime", "-" if stats["downtime"] is None else f"{stats['downtime']} ms"),
            ("transferred ram", f"{ram['transferred'] >> 10} kbytes"),
            ("remaining ram", f"{ram['remaining'] >> 10} kbytes"),
            ("duplicate", f"{ram['duplicate']} pages"), ("normal", f"{ram['normal']} pages"),
            ("free pages skipped", f"{ram['free-skipped']} pages"),
            ("dirty sync count", ram["dirty-sync-count"])]
    body = "".join(f"<tr><td>{k}</td><td style='text-align:right'>{v}</td></tr>" for k, v in rows)
    return f"<table style='font-family:monospace'>{body}</table>"
