"""Pictures and widgets for notebooks 00 (overview) and 01 (patch 1, the PC memory map).

Display only: everything here reads the model (``kit.memmap``, ``kit.guest``,
``kit.migration``) and draws it; nothing changes how the model behaves.

* :class:`LayoutDrawing` draws a :class:`~kit.memmap.PCMemoryMap` to scale on a
  matplotlib axes: guest-physical address space (RAM below 4G, PCI hole, RAM
  above 4G) over QEMU's pc.ram (``ram_addr``), with the "ram-above-4g" alias
  drawn as a band from one to the other.  :class:`MemoryMapWidget` puts it in
  a ``widgets.Image`` (one persistent figure, updated with ``set_*`` calls and painted by
  :class:`LayoutPainter`: matplotlib for the shapes, Pillow for the texts).
* :func:`overview_classes` and :class:`LiveGuestMap`: a guest's pages (used,
  zero, stale, free) with KVM's dirty log drawn on top, for notebook 00.
* :func:`shift_outcome` / :func:`migration_outcome`: what QEMU does with each
  page when the guest shifts its free-page bitmap by the wrong ``low_mem``.
"""
from __future__ import annotations

import io

import numpy as np

from .. import scenario as _scenario
from ..guest import Guest
from ..memmap import (FOUR_GIB, MACHINES, PCMemoryMap, layout_segments, pc_memory_map,
                      pfn_to_ram_page, shift_pfn_bitmap)
from ..units import GiB, MiB, TARGET_PAGE_BITS, format_size
from . import palette
from . import pagemap as pm

# ----------------------------------------------------------------------------- helpers

def mib(nbytes: int) -> str:
    """Bytes as whole MiB with thousands separators, e.g. '3,072 MiB'."""
    return f"{nbytes // MiB:,} MiB"


def gib_label(nbytes: int) -> str:
    """A short GiB label for axis ticks: '3', '2.75', '4'."""
    return f"{nbytes / GiB:g}"


def fig_png(fig, dpi: int | None = None) -> bytes:
    """PNG bytes of a matplotlib figure (no pyplot, no display), at the figure's own dpi.

    The Agg canvas draws once and Pillow encodes its pixels at compression level 1 (``savefig``
    took twice as long for the same picture); another ``dpi`` goes through ``savefig``.  A full
    draw of the memory map takes 40-50 ms, so its widget paints with :class:`LayoutPainter`.
    """
    if dpi is not None and dpi != fig.dpi:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
        return buf.getvalue()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def rgb_png(rgb: np.ndarray, level: int = 1) -> bytes:
    """PNG bytes of an ``(h, w, 3)`` uint8 RGB array: rows unfiltered, zlib at ``level``.

    About 2 ms for a 900 x 190 widget picture, where Pillow's encoder (which filters every
    row) takes 5-8 ms at compression level 1; the file is no bigger for a picture of flat colours.
    """
    import struct
    import zlib
    h, w, _ = rgb.shape
    rows = np.empty((h, w * 3 + 1), np.uint8)
    rows[:, 0] = 0                             # filter type 0 (None) on every row
    rows[:, 1:] = rgb.reshape(h, w * 3)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), level)) + chunk(b"IEND", b""))


# ----------------------------------------------------------------------------- layout to scale

LOW_RAM_COLOUR = palette.MEMORY_MAP["below 4G"]
HIGH_RAM_COLOUR = palette.MEMORY_MAP["above 4G"]
HOLE_COLOUR = palette.MEMORY_MAP["PCI hole"]


class LayoutDrawing:
    """A PC memory map drawn to scale on one matplotlib axes, redrawn by :meth:`update`.

    Top row: guest-physical addresses (what the guest's frame numbers count).
    Bottom row: offsets in QEMU's RAMBlock pc.ram (``ram_addr``, what the
    migration bitmap counts).  A band joins the "ram-above-4g" alias to its
    place in pc.ram; its slant is the shift patch 1 lets the guest undo.
    All artists are made once; ``update`` only moves them.
    """

    Y_GPA, Y_RAM, H = 1.0, 0.0, 0.42

    def __init__(self, ax):
        from matplotlib.patches import Polygon, Rectangle
        self.ax = ax
        y, h = self.Y_GPA, self.H
        self.low = Rectangle((0, y - h / 2), 0, h, fc=LOW_RAM_COLOUR, ec="black", lw=0.6)
        self.hole = Rectangle((0, y - h / 2), 0, h, fc=HOLE_COLOUR, ec="black", lw=0.6, hatch="//")
        self.high = Rectangle((0, y - h / 2), 0, h, fc=HIGH_RAM_COLOUR, ec="black", lw=0.6)
        y = self.Y_RAM
        self.ram_low = Rectangle((0, y - h / 2), 0, h, fc=LOW_RAM_COLOUR, ec="black", lw=0.6)
        self.ram_high = Rectangle((0, y - h / 2), 0, h, fc=HIGH_RAM_COLOUR, ec="black", lw=0.6)
        self.band = Polygon([[0, 0]] * 4, closed=True, fc=HIGH_RAM_COLOUR, alpha=0.18, lw=0)
        for p in (self.band, self.low, self.hole, self.high, self.ram_low, self.ram_high):
            ax.add_patch(p)
        kw = dict(ha="center", va="center", fontsize=8)
        self.t_low = ax.text(0, self.Y_GPA, "", color="white", **kw)
        self.t_hole = ax.text(0, self.Y_GPA, "", color="black",
                              bbox=dict(fc="white", ec="none", pad=0.5), **kw)
        self.t_high = ax.text(0, self.Y_GPA, "", color="white", **kw)
        self.t_shift = ax.text(0, 0.5, "", color=HIGH_RAM_COLOUR, fontsize=8.5, ha="left", va="center")
        self.four = ax.axvline(4, color="black", lw=0.8, ls=":")
        ax.set_yticks([self.Y_RAM, self.Y_GPA])
        ax.set_yticklabels(["pc.ram\n(ram_addr)", "guest\nphysical"], fontsize=8.5)
        ax.set_ylim(-0.45, 1.45)
        ax.set_xlabel("GiB", fontsize=8.5)
        ax.tick_params(axis="x", labelsize=8)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        self.title = ax.set_title("", fontsize=9.5, loc="left")

    def update(self, mm: PCMemoryMap, title: str | None = None, xmax: float | None = None):
        """Redraw for ``mm``; ``xmax`` (GiB) fixes the scale, e.g. to share it between drawings."""
        G = float(GiB)
        segs = {name: (a / G, b / G) for name, a, b, _ in layout_segments(mm)}
        below = mm.below_4g_mem_size / G
        above = mm.above_4g_mem_size / G
        top_gpa = 4 + above if above else below
        self.low.set_width(below)
        ha, hb = segs.get("PCI hole", (below, below))
        self.hole.set_x(ha)
        self.hole.set_width(hb - ha)
        self.high.set_x(4)
        self.high.set_width(above)
        self.ram_low.set_width(below)
        self.ram_high.set_x(below)
        self.ram_high.set_width(above)
        yg, yr = self.Y_GPA - self.H / 2, self.Y_RAM + self.H / 2
        if above:
            self.band.set_xy([[4, yg], [4 + above, yg], [below + above, yr], [below, yr]])
        else:
            self.band.set_xy([[0, yr]] * 4)
        xmax = xmax or max(4.0, top_gpa) * 1.03
        self.ax.set_xlim(0, xmax)
        px_per_gib = self.ax.get_window_extent().width / xmax

        def fit(width_gib, *labels):            # the longest label that fits in the box
            for text in labels:
                if width_gib * px_per_gib > 5.3 * len(text) + 8:
                    return text
            return ""
        self.t_low.set_position((below / 2, self.Y_GPA))
        self.t_low.set_text(fit(below, f"below 4G: {mib(mm.below_4g_mem_size)}", "below 4G", "low"))
        self.t_hole.set_position(((ha + hb) / 2, self.Y_GPA))
        self.t_hole.set_text(fit(hb - ha, f"hole: {mib(int((hb - ha) * G))}", "hole"))
        self.t_high.set_position((4 + above / 2, self.Y_GPA))
        self.t_high.set_text(fit(above, f"above 4G: {mib(mm.above_4g_mem_size)}", "above 4G", "high"))
        if above:
            self.t_shift.set_position((4 + 0.01 * xmax, 0.5))
            self.t_shift.set_text(f"  shift down by {mib(mm.hole_pages << TARGET_PAGE_BITS)}"
                                  f" = {mm.hole_pages:,} pages")
        else:
            self.t_shift.set_text("")
        ticks = []
        for t in (0.0, 4.0, below, top_gpa, below + above):     # skip ticks that would collide
            if all(abs(t - k) * px_per_gib > 30 for k in ticks):
                ticks.append(t)
        ticks.sort()
        self.tick_labels = [f"{t:g}" for t in ticks]
        self.ax.set_xticks(ticks)
        self.ax.set_xticklabels(self.tick_labels)
        self.title.set_text(title if title is not None else
                            f"{mm.machine}, -m {format_size(mm.ram_size)}: lowmem = {mib(mm.lowmem)}")
        return self


class LayoutPainter:
    """A :class:`LayoutDrawing`'s picture, redrawn in a few milliseconds: what the widget shows.

    A full matplotlib draw of the drawing takes 40-50 ms, nearly all of it text (matplotlib 3.11
    renders each glyph from Python: 4-5 ms a label).  So the painter keeps what never moves
    (the y labels, "GiB", the axis line) as a background drawn once by matplotlib; for each
    picture matplotlib draws only the band, the bars, the hatched hole and the 4G line over it
    (``restore_region`` and ``draw_artist``, about 3 ms), and Pillow writes the texts (the
    labels, the title, the x tick labels) and the tick marks, in matplotlib's font and size,
    at the places matplotlib gives them.  The texts are the drawing's own artists' texts, so
    the picture says what a full draw of the figure says (``tests/test_memmap_view.py``
    compares the two); Pillow's glyphs are hinted a little differently, that is all.

    The figure's size and margins must stay as they were when the painter was made.
    """

    def __init__(self, drawing: LayoutDrawing):
        from matplotlib.text import Text
        self.drawing = d = drawing
        ax = d.ax
        self.fig = fig = ax.figure
        self.canvas = fig.canvas
        self.canvas.draw()                     # places the title, the tick labels and "GiB"
        tick = ax.xaxis.get_major_ticks()[0]
        label = tick.label1                    # its look and height, in a Text of our own
        self.tick_label = Text(0, 0, "", color=label.get_color(), fontproperties=label.get_fontproperties(),
                               ha=label.get_horizontalalignment(), va=label.get_verticalalignment())
        self.tick_label_y = float(label.get_transform().transform(label.get_position())[1])
        self.tick_len = round(tick.tick1line.get_markersize() * fig.dpi / 72)
        self.tick_width = max(1, round(tick.tick1line.get_markeredgewidth() * fig.dpi / 72))
        self.shapes = [d.band, d.low, d.hole, d.high, d.ram_low, d.ram_high, d.four]   # drawing order
        self.texts = [d.t_low, d.t_hole, d.t_high, d.t_shift, d.title]
        moving = self.shapes + self.texts
        shown = [a.get_visible() for a in moving]
        for a in moving:
            a.set_visible(False)
        ax.xaxis.set_visible(False)
        try:
            self.canvas.draw()
            ax.draw_artist(ax.xaxis.label)     # "GiB", where the full draw put it
            self.background = self.canvas.copy_from_bbox(fig.bbox)
        finally:
            ax.xaxis.set_visible(True)
            for a, v in zip(moving, shown):
                a.set_visible(v)
        self._fonts, self._stamps = {}, {}
        self.painted: list[str] = []           # the texts of the last picture, left to right, then the labels

    def _font(self, text):
        """Pillow's font for a Text, and the ascent and descent of matplotlib's line box ("lp")."""
        key = (text.get_fontproperties(), self.fig.dpi)
        if key not in self._fonts:
            from matplotlib import font_manager
            from PIL import ImageFont
            path, size = font_manager.findfont(key[0]), text.get_fontsize() * self.fig.dpi / 72
            try:
                font = ImageFont.truetype(path, size)
            except TypeError:                  # Pillow before 10.1 takes whole pixels only
                font = ImageFont.truetype(path, round(size))
            _, top, _, bottom = font.getbbox("lp", anchor="ls")
            self._fonts[key] = (font, -top, bottom)
        return self._fonts[key]

    def _stamp(self, font, s):
        """``s`` in ``font`` as an "L" mask, the mask's offset from the pen on the baseline, and
        the text's advance; kept, since most labels come back from one picture to the next."""
        key = (id(font), s)
        hit = self._stamps.get(key)
        if hit is None:
            from PIL import Image, ImageDraw
            x0, y0, x1, y1 = (int(v) for v in font.getbbox(s, anchor="ls"))
            mask = Image.new("L", (max(1, x1 - x0), max(1, y1 - y0)))
            ImageDraw.Draw(mask).text((-x0, -y0), s, fill=255, font=font, anchor="ls")
            if len(self._stamps) >= 2048:
                self._stamps.clear()
            hit = self._stamps[key] = (mask, x0, y0, font.getlength(s))
        return hit

    def _text(self, img, draw, text, xy):
        """Write a one-line Text whose anchor is at display point ``xy``, aligned as matplotlib aligns it."""
        from matplotlib.colors import to_rgb
        s = text.get_text()
        if not s or not text.get_visible():
            return
        font, asc, desc = self._font(text)
        mask, dx, dy, w = self._stamp(font, s)
        row = img.height - xy[1]               # display y runs up, the image's rows down
        va = text.get_verticalalignment()
        base = round({"center": row + (asc - desc) / 2, "top": row + asc, "bottom": row - desc}.get(va, row))
        left = round(xy[0] - {"left": 0, "center": w / 2, "right": w}[text.get_horizontalalignment()])
        box = text.get_bbox_patch()
        if box is not None:
            pad = box.get_boxstyle().pad * text.get_fontsize() * self.fig.dpi / 72
            fill = tuple(round(255 * c) for c in to_rgb(box.get_facecolor()))
            draw.rectangle([left - pad, base - asc - pad, left + w + pad, base + desc + pad], fill=fill)
        img.paste(tuple(round(255 * c) for c in to_rgb(text.get_color())), (left + dx, base + dy), mask)
        self.painted.append(s)

    def image(self) -> np.ndarray:
        """The drawing as it stands now, as an ``(h, w, 3)`` uint8 RGB array."""
        from PIL import Image, ImageDraw
        ax, canvas = self.drawing.ax, self.canvas
        canvas.restore_region(self.background)
        for a in self.shapes:
            ax.draw_artist(a)
        w, h = canvas.get_width_height()
        img = Image.frombuffer("RGBA", (w, h), canvas.buffer_rgba(), "raw", "RGBA", 0, 1).convert("RGB")
        draw = ImageDraw.Draw(img)
        self.painted = []
        y0 = h - ax.bbox.y0                    # the x axis line's row
        for t, label in zip(ax.get_xticks(), self.drawing.tick_labels):
            x = float(ax.transData.transform((t, 0))[0])
            xi = round(x - self.tick_width / 2)
            draw.rectangle([xi, y0, xi + self.tick_width - 1, y0 + self.tick_len - 1], fill=(0, 0, 0))
            self.tick_label.set_text(label)
            self._text(img, draw, self.tick_label, (x, self.tick_label_y))
        for t in self.texts:
            self._text(img, draw, t, t.get_transform().transform(t.get_position()))
        return np.asarray(img)

    def png(self) -> bytes:
        return rgb_png(self.image())


def layout_figure(maps, width: float = 9.0, row_height: float = 1.55):
    """A pyplot figure with one :class:`LayoutDrawing` per memory map, on a common x scale."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(maps), 1, figsize=(width, row_height * len(maps)), squeeze=False)
    xmax = max(4 * GiB, *(FOUR_GIB + mm.above_4g_mem_size for mm in maps)) / GiB * 1.03
    fig.tight_layout()
    for ax, mm in zip(axes[:, 0], maps):
        LayoutDrawing(ax).update(mm, xmax=xmax)
    fig.tight_layout()
    return fig


def split_html(mm: PCMemoryMap) -> str:
    """QEMU's three numbers (and the page counts the guest derives) as a small HTML table."""
    rows = [("lowmem (pc_get_lowmem)", mm.lowmem), ("below_4g_mem_size", mm.below_4g_mem_size),
            ("above_4g_mem_size", mm.above_4g_mem_size)]
    body = "".join(f"<tr><td>{k}</td><td style='text-align:right'>{mib(v)}</td>"
                   f"<td style='text-align:right'>{v:#x}</td></tr>" for k, v in rows)
    body += (f"<tr><td>hole frames skipped / max_pfn</td><td style='text-align:right'>"
             f"{mm.hole_pages:,}</td><td style='text-align:right'>{mm.max_pfn:#x}</td></tr>")
    return f"<table style='font-family:monospace'>{body}</table>"


# The choices of the max-ram-below-4g slider: "default" (0: the machine's own default),
# then 512M .. 4G in 256 MiB steps.
BELOW_4G_OPTIONS = [("default", 0)] + [(f"{v / 1024:g}G", v * MiB) for v in range(512, 4097, 256)]


RAM_GIB_MIN, RAM_GIB_MAX, RAM_GIB_STEP = 0.5, 16.0, 0.125


class MemoryMapWidget:
    """Machine dropdown, RAM slider (with a box to type into) and max-ram-below-4g slider over a
    to-scale layout picture.

    The RAM slider runs from 0.5 to 16 GiB in steps of 1/8 GiB: 124 steps, about 3 px each
    on a notebook's width, so a mouse can stop on 3.375 GiB as the arrow keys can; the box
    beside it takes any of those values typed in.  The picture is one persistent figure whose
    margins are set once: each redraw moves its artists and a :class:`LayoutPainter` paints
    them (a few ms, where a full matplotlib draw takes 40-50 ms).
    """

    def __init__(self, machine: str = "pc", ram_gib: float = 4.0, max_below: int = 0):
        import ipywidgets as widgets
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        self.machine = widgets.Dropdown(options=list(MACHINES), value=machine, description="machine")
        self.ram = widgets.FloatSlider(value=ram_gib, min=RAM_GIB_MIN, max=RAM_GIB_MAX, step=RAM_GIB_STEP,
                                       readout_format=".3f", description="-m (GiB)",
                                       continuous_update=False, layout=widgets.Layout(width="640px"))
        self.ram_text = widgets.BoundedFloatText(value=ram_gib, min=RAM_GIB_MIN, max=RAM_GIB_MAX,
                                                 step=RAM_GIB_STEP, description="or type",
                                                 layout=widgets.Layout(width="150px"),
                                                 style={"description_width": "initial"})
        self.ram_link = widgets.link((self.ram, "value"), (self.ram_text, "value"))
        self.below = widgets.SelectionSlider(options=BELOW_4G_OPTIONS, value=max_below,
                                             description="max-ram-below-4g",
                                             style={"description_width": "initial"},
                                             continuous_update=False)
        self.fig = Figure(figsize=(9, 1.9))
        FigureCanvasAgg(self.fig)
        self.drawing = LayoutDrawing(self.fig.add_subplot(1, 1, 1))
        # Margins once, for good: the y labels never change and the x ticks keep their height,
        # so no redraw needs a tight_layout (two of them took about 31 ms a redraw).
        self.drawing.update(self.mm)
        self.fig.tight_layout()
        self.painter = LayoutPainter(self.drawing)
        self.image = widgets.Image(format="png", layout=widgets.Layout(width="100%"))
        self.values = widgets.HTML()
        for w in (self.machine, self.ram, self.below):
            w.observe(self.redraw, names="value")
        self.widget = widgets.VBox([widgets.HBox([self.machine, self.ram, self.ram_text]), self.below,
                                    self.image, self.values])
        self.redraw()

    @property
    def mm(self) -> PCMemoryMap:
        return pc_memory_map(int(round(self.ram.value * 8)) * (GiB // 8), self.machine.value,
                             self.below.value or None)

    def redraw(self, change=None):
        mm = self.mm
        self.drawing.update(mm)
        self.image.value = self.painter.png()
        self.values.value = split_html(mm)


# ----------------------------------------------------------------------------- frames vs ram pages

def frame_rows(mm: PCMemoryMap, pfns):
    """For each guest frame: its address, where it lies, and its pc.ram page (or None in the hole)."""
    rows = []
    for pfn in pfns:
        pfn = int(pfn)
        gpa = pfn << TARGET_PAGE_BITS
        if pfn < mm.below_4g_pages:
            where = "RAM below 4G"
        elif pfn < mm.pfn_4g or pfn >= mm.max_pfn:
            where = "PCI hole" if pfn < mm.pfn_4g else "beyond RAM"
        else:
            where = "RAM above 4G"
        page = pfn_to_ram_page(mm, pfn) if where.startswith("RAM") else None
        rows.append({"pfn": pfn, "gpa": gpa, "where": where, "ram_page": page})
    return rows


def frame_table(mm: PCMemoryMap, pfns) -> str:
    """:func:`frame_rows` as a fixed-width text table."""
    lines = [f"{'guest frame':>12} {'address':>14}  {'where':<13} {'pc.ram page':>12} {'ram_addr':>14}"]
    for r in frame_rows(mm, pfns):
        page = "-" if r["ram_page"] is None else f"{r['ram_page']:#x}"
        addr = "-" if r["ram_page"] is None else f"{r['ram_page'] << TARGET_PAGE_BITS:#x}"
        lines.append(f"{r['pfn']:>#12x} {r['gpa']:>#14x}  {r['where']:<13} {page:>12} {addr:>14}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- static page maps

def show_page_map(classes, names, colours, title="", caption="", width=1024, height=None):
    """Display a page map as a PNG (nbval skips image bytes) and its legend + caption as HTML."""
    from IPython.display import HTML, Image, display
    if height is None:
        height = max(1, min(256, -(-len(classes) // width)))
    head = f"<b>{title}</b>" if title else ""
    if head:
        display(HTML(head))
    display(Image(data=pm.png(pm.render(classes, colours, width, height)), format="png"))
    display(HTML(pm.legend_html(names, colours) + (f"<div>{caption}</div>" if caption else "")))


# ----------------------------------------------------------------------------- notebook 00: live guest

OVERVIEW_CLASSES = ("used", "used, zero", "free, zero", "free, stale data", "dirty (logged by KVM)")
OVERVIEW_COLOURS = palette.OVERVIEW
OVERVIEW_LETTERS = "U u . s D"
DIRTY = 4


def overview_classes(guest: Guest, dirty=None) -> np.ndarray:
    """The guest's pages in ram_addr order, with pages in ``dirty`` (bool, ram order) as DIRTY."""
    cls = pm.guest_classes(guest, "ram")
    if dirty is not None:
        cls[dirty] = DIRTY
    return cls


class LiveGuestMap:
    """A guest with KVM dirty logging on: pick a workload, let it run 100 ms at a time.

    Each press of the button advances the guest by ``step_s`` of simulated time,
    fetches KVM's dirty log (as ``migration_bitmap_sync`` would) and ORs it into
    :attr:`dirty`, which the picture draws as the "dirty" class.
    """

    def __init__(self, ram="1G", machine="pc", workload="idle", seed=0, step_s=0.1,
                 width=1024, height=256):
        import ipywidgets as widgets
        from .widgets import PageMapView
        self.mm = pc_memory_map(ram, machine)
        self.ram, self.machine = ram, machine
        self.seed, self.step_s = seed, step_s
        self.workload = widgets.Dropdown(options=["idle", "hog", "dirtying"], value=workload,
                                         description="workload")
        self.button = widgets.Button(description=f"let it run {step_s * 1000:g} ms",
                                     icon="play")
        self.view = PageMapView(f"{ram} {machine} guest, pages in ram_addr order",
                                OVERVIEW_CLASSES, OVERVIEW_COLOURS, width=width, height=height)
        self.workload.observe(lambda change: self.reset(), names="value")
        self.button.on_click(lambda b: self.step())
        self.widget = widgets.VBox([widgets.HBox([self.workload, self.button]), self.view.widget])
        self.reset()

    def reset(self):
        """A freshly booted guest of the chosen workload, dirty logging switched on."""
        self.guest = _scenario.guest(_scenario.Scenario(ram=self.ram, machine=self.machine,
                                                        workload=self.workload.value, seed=self.seed))
        self.guest.memory.dirty_log.start()
        self.dirty = np.zeros(self.mm.ram_pages, dtype=bool)
        self.redraw()

    def step(self):
        """Run the guest ``step_s`` longer, then fetch the dirty log into :attr:`dirty`."""
        g = self.guest
        g.advance(g.time + self.step_s)
        frames = g.memory.dirty_log.fetch_and_clear()
        if len(frames):
            self.dirty[pfn_to_ram_page(self.mm, frames)] = True
        self.redraw()

    def counts(self) -> dict:
        c = np.bincount(overview_classes(self.guest, self.dirty), minlength=len(OVERVIEW_CLASSES))
        return dict(zip(OVERVIEW_CLASSES, c.tolist()))

    CAPTION_LINES = 3

    def caption_lines(self) -> list[str]:
        """The caption, always :attr:`CAPTION_LINES` lines (the page below never jumps)."""
        c = self.counts()
        return [f"guest time {self.guest.time * 1000:,.0f} ms with dirty logging on; pages:",
                f"{OVERVIEW_CLASSES[0]}: {c[OVERVIEW_CLASSES[0]]:,}, {OVERVIEW_CLASSES[1]}: "
                f"{c[OVERVIEW_CLASSES[1]]:,}, {OVERVIEW_CLASSES[2]}: {c[OVERVIEW_CLASSES[2]]:,},",
                f"{OVERVIEW_CLASSES[3]}: {c[OVERVIEW_CLASSES[3]]:,}, {OVERVIEW_CLASSES[4]}: "
                f"{c[OVERVIEW_CLASSES[4]]:,}"]

    def redraw(self):
        from .widgets import fixed_lines_html
        self.view.update(overview_classes(self.guest, self.dirty),
                         fixed_lines_html(self.caption_lines(), self.CAPTION_LINES))


# ----------------------------------------------------------------------------- notebook 00: migration

def dirty_curve(ax, migration, label=None, **kw):
    """Plot ``migration_dirty_pages`` (pages still to send) against simulated time, in ms."""
    t, y = [], []
    for e in migration.timeline:
        if "migration_dirty_pages" in e:
            t.append(e["t"] * 1000)
            y.append(e["migration_dirty_pages"])
        elif e["kind"] == "completed":
            t.append(e["t"] * 1000)
            y.append(0)
    ax.step(t, y, where="post", label=label, **kw)
    return ax


def seed_table(rows) -> str:
    """Model rows from :func:`kit.reproduce.reproduce_seed` beside the seed's figures, as text."""
    lines = [f"{'case':<9} {'mode':<9} {'time ms':>8} {'seed':>6} {'diff':>7}   "
             f"{'KB sent':>9} {'seed':>9} {'diff':>7}"]
    for r in rows:
        dt = r["total-time-ms"] / r["seed-total-time-ms"] - 1
        dk = r["transferred-kb"] / r["seed-transferred-kb"] - 1
        lines.append(f"{r['case']:<9} {r['mode']:<9} {r['total-time-ms']:>8} "
                     f"{r['seed-total-time-ms']:>6} {dt:>+7.1%}   {r['transferred-kb']:>9} "
                     f"{r['seed-transferred-kb']:>9} {dk:>+7.1%}")
    return "\n".join(lines)


def seed_figure(rows, width: float = 9.0):
    """Two bar panels (total time, transferred KB): the seed's bars beside the model's, per run."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import StrMethodFormatter
    fig, axes = plt.subplots(1, 2, figsize=(width, 3.0))
    labels = [f"{r['case']}\n{r['mode']}" for r in rows]
    x = np.arange(len(rows))
    for ax, key, unit in ((axes[0], "total-time-ms", "total time (ms)"),
                          (axes[1], "transferred-kb", "transferred ram (KB)")):
        ax.bar(x - 0.2, [r["seed-" + key] for r in rows], 0.4, label="seed (Liang Li, 2016)",
               color=palette.REFERENCE)
        ax.bar(x + 0.2, [r[key] for r in rows], 0.4, label="model", color=HIGH_RAM_COLOUR)
        ax.set_xticks(x)
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylabel(unit, fontsize=8.5)
        ax.tick_params(axis="y", labelsize=8)
        ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    axes[0].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- notebook 01: wrong shift

SHIFT_CLASSES = ("used, sent", "used, skipped: LOST", "free, skipped", "free, sent anyway")
SHIFT_COLOURS = palette.SHIFT
SHIFT_LETTERS = "U X . w"
USED_SENT, USED_LOST, FREE_SKIPPED, FREE_SENT = range(4)


def outcome_classes(used, skipped) -> np.ndarray:
    """One class per ram page from two bool arrays: used by the guest, skipped by QEMU."""
    used = np.asarray(used, bool)
    skipped = np.asarray(skipped, bool)
    return ((~used).astype(np.uint8) << 1) | (used == skipped).astype(np.uint8)


def shift_outcome(guest: Guest, low_mem=None) -> np.ndarray:
    """What QEMU would do with each ram page if the guest shifted its free bitmap by ``low_mem``.

    ``low_mem=None`` is the right value (``pc_get_lowmem``); ``4 << 30`` is a guest
    that assumes no hole.  Computed from :func:`kit.memmap.shift_pfn_bitmap`
    without migrating: a page marked free is skipped, any other page is sent.
    """
    mm = guest.mm
    skipped = shift_pfn_bitmap(mm, guest.buddy.free[: mm.max_pfn], low_mem=low_mem)
    return outcome_classes(guest.used_ram_pages(), skipped)


def migration_outcome(migration) -> np.ndarray:
    """The same classes after a real run of a migration with ``verify=True`` (and ``track_pages``).

    A used page is LOST when its destination copy differs from the source (what
    ``verify()`` counts); a free page is "skipped" when the filter dropped it.
    """
    from ..migration import SKIPPED_FREE
    if migration.dest_version is None or migration.page_state is None:
        raise ValueError("needs a migration built with verify=True and track_pages=True, run to the end")
    g, n = migration.guest, migration.mm.ram_pages
    used = g.used_ram_pages()
    lost = used & (migration.dest_version[:n] != g.memory.to_ram_order(g.memory.version))
    skipped = migration.page_state[:n] == SKIPPED_FREE
    cls = outcome_classes(used, skipped)
    cls[lost] = USED_LOST
    return cls


def outcome_counts(classes) -> dict:
    c = np.bincount(classes, minlength=len(SHIFT_CLASSES))
    return dict(zip(SHIFT_CLASSES, c.tolist()))


def guest_with_pages_at(ram="8G", machine="pc", at_gpa=7 * GiB, nbytes=512 * MiB,
                        workload="idle", seed=0) -> Guest:
    """A booted guest in which a program then allocates and writes ``nbytes`` from ``at_gpa`` up.

    Uses the model's runtime allocator (``alloc_runtime`` takes the next free
    frames after its cursor), with the cursor placed at ``at_gpa``: the kernel
    may hand out any free frame, high ones included.  The guest of
    :func:`kit.scenario.guest` with ``program_at=at_gpa, program_bytes=nbytes``.
    """
    return _scenario.guest(_scenario.Scenario(ram=ram, machine=machine, workload=workload, seed=seed,
                                              program_at=int(at_gpa), program_bytes=int(nbytes)))


__all__ = ["LayoutDrawing", "layout_figure", "MemoryMapWidget", "split_html", "frame_rows",
           "frame_table", "show_page_map", "OVERVIEW_CLASSES", "OVERVIEW_COLOURS", "OVERVIEW_LETTERS",
           "overview_classes", "LiveGuestMap", "dirty_curve", "seed_table", "seed_figure", "SHIFT_CLASSES",
           "SHIFT_COLOURS", "SHIFT_LETTERS", "outcome_classes", "shift_outcome",
           "migration_outcome", "outcome_counts", "guest_with_pages_at", "FOUR_GIB"]
