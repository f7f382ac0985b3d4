"""Page maps: every page of a guest as a coloured cell, fast enough to redraw live.

A page map is a 1-D array of small integer classes (one per page) turned into
an RGB image: ``W`` pixels wide, each pixel the average colour of the pages it
covers (an 8 GiB guest has 2 M pages; at 1024 x 512 each pixel is 4 pages).
:func:`png` encodes it with Pillow; a widget shows the bytes.  A plain-text
strip (:func:`text_strip`) shows the same classes as letters.
"""
from __future__ import annotations

import io

import numpy as np

from ..migration import STATE_NAMES
from . import palette

# Guest view (what the guest knows about each page)
USED, USED_ZERO, FREE_ZERO, FREE_STALE, HOLE = range(5)
GUEST_CLASSES = ("used", "used, zero", "free, zero", "free, stale data", "PCI hole")
GUEST_COLOURS = palette.GUEST
GUEST_LETTERS = "U u . s #"

# Migration view: kit.migration.PENDING .. REDIRTIED
MIGRATION_CLASSES = STATE_NAMES
MIGRATION_COLOURS = palette.MIGRATION
MIGRATION_LETTERS = "- f z N D"


def guest_classes(guest, order: str = "ram") -> np.ndarray:
    """One class per page: used / used-zero / free-zero / free-stale (and hole in PFN order).

    ``order="ram"`` gives QEMU's ram_addr order; ``order="pfn"`` the guest's frame
    order, with the PCI hole drawn as its own class.
    """
    mem, free = guest.memory, guest.buddy.free
    f8, z8 = free.view(np.uint8), mem.zero.view(np.uint8)
    cls = (f8 << 1) | (z8 ^ f8)          # used 0, used-zero 1, free-zero 2, free-stale 3
    if order == "ram":
        return mem.to_ram_order(cls)
    if order == "pfn":
        cls = cls[: guest.mm.max_pfn].copy()
        cls[guest.mm.below_4g_pages: guest.mm.pfn_4g if guest.mm.above_4g_pages else 0] = HOLE
        return cls
    raise ValueError("order is 'ram' or 'pfn'")


def migration_classes(migration) -> np.ndarray:
    """The page states (pending, skipped as free, sent zero/normal, re-dirtied) of a
    Migration or of a :class:`kit.scenario.Result`."""
    if migration.page_state is None:
        raise ValueError("this migration was made with track_pages=False")
    return migration.page_state


def render(classes: np.ndarray, colours: np.ndarray, width: int = 1024, height: int | None = None,
           patterns: bool = True):
    """An RGB uint8 image (height, width, 3) of ``classes``, pages left to right, top to bottom.

    With ``patterns``, a class whose colour is in :data:`kit.viz.palette.PATTERNS` gets its second
    cue: the pixels where it is at least half of the pages are striped (:func:`stripe`).
    """
    n = len(classes)
    if height is None:
        height = max(1, min(512, -(-n // width)))
    k = max(1, -(-n // (width * height)))            # pages per pixel
    rows = -(-n // (k * width))
    padded = np.full(rows * width * k, 255, np.uint8)     # 255: past the last page (white)
    padded[:n] = classes
    cells = padded.reshape(rows * width, k)
    acc_t = np.uint16 if k <= 256 else np.uint32
    pal = np.full((256, 3), 255, acc_t)
    pal[: len(colours)] = colours
    acc = np.zeros((rows * width, 3), acc_t)
    for j in range(k):                               # k is small: pages per pixel
        acc += pal[cells[:, j]]
    img = (acc // k).astype(np.uint8).reshape(rows, width, 3)
    patterned = _patterned(colours) if patterns else ()
    if patterned:
        on = _stripe_pixels(rows, width)                 # only the pixels on a stripe line
        flat, sub = img.reshape(-1, 3), cells[on]
        for cls, alt in patterned:
            lut = np.zeros(256, acc_t)
            lut[cls] = 1
            share = np.zeros(len(on), acc_t)
            for j in range(k):
                share += lut[sub[:, j]]
            flat[on[2 * share >= k]] = alt
    return img


def _patterned(colours):
    """``(class, alt colour)`` for the classes of ``colours`` that carry a stripe pattern."""
    return [(i, palette.rgb(palette.PATTERNS[h])[0].astype(np.uint8))
            for i, h in enumerate(palette.hex_of(c) for c in np.asarray(colours)) if h in palette.PATTERNS]


STRIPE_PERIOD = 4
_STRIPES: dict = {}


def _stripe_pixels(rows: int, width: int, period: int = STRIPE_PERIOD) -> np.ndarray:
    """Flat indices of the pixels of a (rows, width) image on a diagonal stripe line (cached)."""
    key = (rows, width, period)
    if key not in _STRIPES:
        r, c = np.indices((rows, width), sparse=True)
        _STRIPES[key] = np.flatnonzero((r + c) % period == 0)
    return _STRIPES[key]


def stripe(img: np.ndarray, mask: np.ndarray, alt, period: int = STRIPE_PERIOD) -> np.ndarray:
    """Paint ``alt`` on the pixels of ``mask`` that lie on a diagonal stripe line, in place."""
    on = _stripe_pixels(*mask.shape, period)
    img.reshape(-1, 3)[on[mask.reshape(-1)[on]]] = alt
    return img


def upscale(classes: np.ndarray, colours, width: int, scale: int) -> np.ndarray:
    """One cell of ``scale`` x ``scale`` pixels per page, ``width`` pages a row, stripes drawn at full size."""
    img = render(classes, colours, width, -(-len(classes) // width), patterns=False)
    big = np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
    padded = np.full(img.shape[0] * width, 255, np.int32)
    padded[: len(classes)] = classes
    grid = padded.reshape(img.shape[0], width)
    for cls, alt in _patterned(colours):
        stripe(big, np.repeat(np.repeat(grid == cls, scale, axis=0), scale, axis=1), alt)
    return big


def png(image: np.ndarray) -> bytes:
    """PNG bytes of an RGB image (Pillow)."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def text_strip(classes: np.ndarray, letters: str, start: int = 0, count: int = 64) -> str:
    """``count`` pages from ``start`` as letters, e.g. 'UUUU....ss' (one letter per page)."""
    table = letters.split()
    return "".join(table[c] for c in classes[start:start + count].tolist())


def swatch_css(colour) -> str:
    """CSS background of a legend square for one class colour (striped where the page map stripes it)."""
    h = palette.hex_of(colour)
    if h in palette.PATTERNS:
        return (f"background:repeating-linear-gradient(-45deg,{palette.PATTERNS[h]} 0 1.5px,"
                f"{h} 1.5px {STRIPE_PERIOD + 0.5}px)")
    return f"background:{h}"


def legend_html(names, colours) -> str:
    """A one-line HTML legend: a coloured square and a name per class."""
    items = []
    for name, colour in zip(names, np.asarray(colours)):
        items.append(f'<span style="display:inline-block;width:0.9em;height:0.9em;'
                     f'{swatch_css(colour)};border:1px solid {palette.MID_GREY};margin:0 0.3em 0 0.9em"></span>{name}')
    return "<div>" + "".join(items) + "</div>"


def legend_patch(name, colour):
    """A matplotlib legend handle for one page-map class, hatched where the page map stripes it."""
    from matplotlib.patches import Patch
    h = palette.hex_of(colour)
    if h in palette.PATTERNS:
        return Patch(facecolor=h, edgecolor=palette.PATTERNS[h], hatch="////", linewidth=0, label=name)
    return Patch(color=h, label=name)
