"""Thin ipywidgets layers over the model: they hold no logic of their own.

Pictures go into ``widgets.Image`` as PNG (fast redraw, deterministic under
nbval, works in Voila); heavy controls use ``continuous_update=False``.
"""
from __future__ import annotations

import html as htmlmod
import io
import re
import textwrap

import ipywidgets as widgets
import numpy as np

from . import palette
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


class PickedFigure:
    """Pickers above one figure and a note, redrawn when a picker's value changes.

    A subclass calls :meth:`_build` with its pickers and implements ``figure()`` (a matplotlib
    figure, or None when there is nothing to draw) and ``note_text()``."""
    dpi = 72

    def _build(self, pickers):
        self.image = widgets.Image(format="png")
        self.note = widgets.HTML()
        self.widget = widgets.VBox([widgets.HBox(pickers), self.image, self.note])
        for p in pickers:
            p.observe(self._redraw, names="value")
        self._redraw()

    def _redraw(self, *_):
        import matplotlib.pyplot as plt
        fig = self.figure()
        if fig is not None:
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=self.dpi)
            plt.close(fig)
            self.image.value = buf.getvalue()
        self.note.value = htmlmod.escape(self.note_text())


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


# ----------------------------------------------------------------------------- a static picture

_LEGEND_ITEM = re.compile(r"background:(?:repeating-linear-gradient\(-45deg,(#[0-9A-Fa-f]{6}) [^,]*,)?"
                          r"(#[0-9A-Fa-f]{6})[^>]*></span>([^<]*)")
_FONT_SIZE, _GAP = 13, 8


def _font():
    from matplotlib import font_manager
    from PIL import ImageFont
    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), _FONT_SIZE)


def _text_image(lines, items=()):
    """Lines of text, then legend ``items`` ``[(colour, stripe colour or None, name)]``, as RGB."""
    from PIL import Image as PILImage, ImageDraw
    font, line_h = _font(), _FONT_SIZE + 5
    draw = ImageDraw.Draw(PILImage.new("RGB", (1, 1)))
    widths = [draw.textlength(t, font=font) for t in lines]
    item_w = [_FONT_SIZE + 6 + draw.textlength(n, font=font) + 14 for _, _, n in items]
    w = int(max(widths + [sum(item_w)] + [1])) + 4
    im = PILImage.new("RGB", (w, line_h * (len(lines) + bool(items)) + 2), "white")
    d = ImageDraw.Draw(im)
    for i, t in enumerate(lines):
        d.text((2, i * line_h), t, fill="black", font=font)
    x, y = 2, line_h * len(lines) + 2
    for (colour, alt, name), iw in zip(items, item_w):
        swatch = np.empty((_FONT_SIZE - 1, _FONT_SIZE - 1, 3), np.uint8)
        swatch[:] = palette.rgb(colour)[0]
        if alt:
            pm.stripe(swatch, np.ones(swatch.shape[:2], bool), palette.rgb(alt)[0])
        im.paste(PILImage.fromarray(swatch), (x, y + 2))
        d.rectangle([x, y + 2, x + _FONT_SIZE - 2, y + _FONT_SIZE], outline=palette.MID_GREY)
        d.text((x + _FONT_SIZE + 4, y), name, fill="black", font=font)
        x += int(iw)
    return np.asarray(im)


def _picture_of(w):
    """An RGB array of what ``w`` shows: its images, legends and short texts, laid out as its boxes."""
    from PIL import Image as PILImage
    if isinstance(w, widgets.Image):
        if not w.value:
            return None
        img = np.asarray(PILImage.open(io.BytesIO(w.value)).convert("RGB"))
        return np.pad(img, ((1, 1), (1, 1), (0, 0)), constant_values=0xBB)   # a frame: a blank map still shows
    if isinstance(w, widgets.HTML):
        value = w.value or ""
        items = [(c, alt, htmlmod.unescape(n).strip()) for alt, c, n in _LEGEND_ITEM.findall(value)]
        if items:
            return _text_image([], items)
        text = htmlmod.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<br\s*/?>", "\n", value)))
        lines = [" ".join(t.split()) for t in text.split("\n")]
        lines = [t for t in lines if t]
        if not lines or "<table" in value or len(" ".join(lines)) > 400:
            return None
        return _text_image([x for t in lines for x in textwrap.wrap(t, 140)])
    if isinstance(w, widgets.Box) and w.layout.display != "none":
        parts = [p for p in (_picture_of(c) for c in w.children) if p is not None]
        if not parts:
            return None
        horizontal = isinstance(w, widgets.HBox)
        h = (max if horizontal else sum)(p.shape[0] for p in parts) + (0 if horizontal else _GAP * (len(parts) - 1))
        wd = (sum if horizontal else max)(p.shape[1] for p in parts) + (_GAP * (len(parts) - 1) if horizontal else 0)
        out = np.full((h, wd, 3), 255, np.uint8)
        at = 0
        for p in parts:
            if horizontal:
                out[: p.shape[0], at: at + p.shape[1]] = p
                at += p.shape[1] + _GAP
            else:
                out[at: at + p.shape[0], : p.shape[1]] = p
                at += p.shape[0] + _GAP
        return out
    return None


def static_picture(view):
    """Show the picture a widget view draws first as a plain PNG output, for readers who cannot run it.

    ``view`` is one of the kit's views (anything with a ``.widget``) or a widget.  Its images,
    its page-map legends and its short texts are laid out as its boxes lay them out, into one
    PNG: a real image output (GitHub and nbviewer show it), not saved widget state.  The cell's
    text output is ``<IPython.core.display.Image object>`` whatever the picture.
    """
    from IPython.display import Image, display
    img = _picture_of(getattr(view, "widget", view))
    if img is None:
        raise ValueError("this widget shows no picture yet")
    display(Image(data=pm.png(img), format="png"))
