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

# Guest view (what the guest knows about each page)
USED, USED_ZERO, FREE_ZERO, FREE_STALE, HOLE = range(5)
GUEST_CLASSES = ("used", "used, zero", "free, zero", "free, stale data", "PCI hole")
GUEST_COLOURS = np.array([[214, 39, 40], [255, 152, 150], [220, 220, 220], [255, 187, 120],
                          [60, 60, 60]], np.float32)
GUEST_LETTERS = "U u . s #"

# Migration view: kit.migration.PENDING .. REDIRTIED
MIGRATION_CLASSES = STATE_NAMES
MIGRATION_COLOURS = np.array([[200, 200, 200], [44, 160, 44], [174, 199, 232], [31, 119, 180],
                              [214, 39, 40]], np.float32)
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


def render(classes: np.ndarray, colours: np.ndarray, width: int = 1024, height: int | None = None):
    """An RGB uint8 image (height, width, 3) of ``classes``, pages left to right, top to bottom."""
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
    return (acc // k).astype(np.uint8).reshape(rows, width, 3)


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


def legend_html(names, colours) -> str:
    """A one-line HTML legend: a coloured square and a name per class."""
    items = []
    for name, (r, g, b) in zip(names, colours.astype(int).tolist()):
        items.append(f'<span style="display:inline-block;width:0.9em;height:0.9em;'
                     f'background:rgb({r},{g},{b});border:1px solid #888;margin:0 0.3em 0 0.9em"></span>{name}')
    return "<div>" + "".join(items) + "</div>"
