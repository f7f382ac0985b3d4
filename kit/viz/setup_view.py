"""Pictures for patch 3 (notebook 03): the migration bitmap at setup, original beside patched.

Display only; :class:`SetupComparison` drives two real
:class:`~kit.migration.Migration` objects with ``step()``, one per mode.

What is drawn: the model's two bitmaps, as QEMU 2.5 has them.
``ram_list.dirty_memory[DIRTY_MEMORY_MIGRATION]`` (``Migration.dirty_memory``)
has every page marked since the RAMBlocks were allocated; patch 3 leaves the
migration bitmap (``Migration.bmap``) empty; patch 4 overwrites pc.ram's
dirty_memory bits with the complement of the guest's free bitmap; the first
``migration_bitmap_sync()`` moves dirty_memory into the migration bitmap,
clears it, and counts.
"""
from __future__ import annotations

import html

import numpy as np

from ..migration import SKIPPED_FREE
from . import palette
from . import pagemap as pm

__all__ = ["CLEAR", "SET", "CLEAR_FREE", "NONE", "SETUP_CLASSES", "SETUP_COLOURS", "SETUP_LETTERS",
           "bitmap_views", "bits_set", "setup_strip", "first_boundary", "timeline_lines", "SetupComparison", "run_counting_bulk_visits",
           "bulk_table", "plot_page_states"]

CLEAR, SET, CLEAR_FREE, NONE = range(4)
SETUP_CLASSES = ("bit clear", "bit set: page to send", "bit clear: free in the guest",
                 "not allocated yet")
SETUP_COLOURS = palette.SETUP
SETUP_LETTERS = ". # f -"

MIGRATION_BITMAP = "migration bitmap"
DIRTY_MEMORY = "ram_list.dirty_memory[DIRTY_MEMORY_MIGRATION]"

MODE_TITLES = {"original": "original QEMU 2.5", "pv": "with the RFC (patches 3 and 4)"}


def _classes(m) -> np.ndarray:
    cls = m.bmap.astype(np.uint8)                    # SET where the bit is set, CLEAR elsewhere
    if m.page_state is not None:
        cls[(cls == CLEAR) & (m.page_state == SKIPPED_FREE)] = CLEAR_FREE
    return cls


def _dirty_memory_classes(m) -> np.ndarray:
    cls = m.dirty_memory.get().astype(np.uint8)      # SET where the bit is set, CLEAR elsewhere
    synced = any(e["kind"] == "sync" for e in m.timeline)   # the first sync consumed it all
    if m.page_state is not None and not synced:
        cls[(cls == CLEAR) & (m.page_state == SKIPPED_FREE)] = CLEAR_FREE
    return cls


def bitmap_views(m) -> dict:
    """The bitmaps of ``m``, one class per page of ram_addr space.

    Returns ``{MIGRATION_BITMAP: classes}`` for the original and
    ``{DIRTY_MEMORY: classes, MIGRATION_BITMAP: classes}`` for pv mode.
    Meant for the setup stage (afterwards pages leave the bitmap as they are sent).
    Before ``ram_save_setup`` has run, every page is NONE (no bitmap yet).
    """
    n = m.total_pages
    if not any(e["kind"] == "bitmap" for e in m.timeline):
        none = np.full(n, NONE, np.uint8)
        views = {MIGRATION_BITMAP: none}
        if m.mode == "pv":
            views = {DIRTY_MEMORY: none, MIGRATION_BITMAP: none}
        return views
    if m.mode == "original":
        return {MIGRATION_BITMAP: _classes(m)}
    return {DIRTY_MEMORY: _dirty_memory_classes(m), MIGRATION_BITMAP: _classes(m)}


def bits_set(m) -> int:
    """Set bits in the migration bitmap, drawn the RFC's way (see :func:`bitmap_views`)."""
    return int(np.count_nonzero(bitmap_views(m)[MIGRATION_BITMAP] == SET))


def setup_strip(m, start: int, count: int = 64, which: str = MIGRATION_BITMAP) -> str:
    """``count`` pages of one bitmap as letters: ``#`` set, ``.`` clear, ``f`` clear and free."""
    return pm.text_strip(bitmap_views(m)[which], SETUP_LETTERS, start, count)


def first_boundary(m, count: int = 64) -> int:
    """Start of a ``count``-page window around the first change between used and free pages."""
    used = m.guest.used_ram_pages()
    change = np.flatnonzero(used[1:] != used[:-1])
    if not len(change):
        return 0
    return max(0, int(change[0]) + 1 - count // 2) // 8 * 8


def timeline_lines(m, phase: str = "setup") -> str:
    """The migration's timeline records of one phase, one line each, with their key numbers."""
    return "\n".join(f"{e['t'] * 1e3:8.3f} ms  {e['kind']:20s} {_summary(e)}"
                     for e in m.timeline if e["phase"] == phase)


def _summary(rec) -> str:
    k = rec["kind"]
    if k == "bitmap":
        return f"{rec['how']}; migration_dirty_pages = {rec['migration_dirty_pages']:,}"
    if k == "dirty-log-start":
        return f"KVM write-protects {rec['backed_pages']:,} backed pages"
    if k == "free-pages-request":
        return f"request sent (returned {rec['ret']})"
    if k == "free-pages-done":
        return f"{rec['free_pages']:,} free pages after {rec['polls']} polls"
    if k == "filter":
        return f"{rec['free_pages']:,} free pages cleared in dirty_memory"
    if k == "guest-snapshot":
        return f"the guest walks its free lists: {rec['free_pages']:,} free pages"
    if k == "free-pages-unsupported":
        return "no free-page support: nothing to do"
    if k == "sync":
        return (f"{rec['new_dirty']:,} new from KVM's log; "
                f"migration_dirty_pages = {rec['migration_dirty_pages']:,}")
    return k


class _Panel:
    def __init__(self, widgets, mode, rows, width, height):
        self.mode, self.width, self.height = mode, width, height
        self.title = widgets.HTML(f"<b>{MODE_TITLES[mode]}</b>")
        self.plan = widgets.HTML()
        self.images, items = {}, [self.title, self.plan]
        for name in rows:
            img = widgets.Image(format="png", layout=widgets.Layout(width="100%"))
            self.images[name] = img
            items += [widgets.HTML(f"<code>{html.escape(name)}</code>"), img]
        if len(rows) == 1:
            items += [widgets.HTML(f"<code>{html.escape(DIRTY_MEMORY)}</code>"),
                      widgets.HTML("<i>not touched: the original sets the migration bitmap "
                                   "directly</i>")]
        self.numbers = widgets.HTML()
        items.append(self.numbers)
        self.widget = widgets.VBox(items, layout=widgets.Layout(width="50%", padding="0 8px"))

    def show(self, m, plan, done):
        lines = []
        for i, name in enumerate(plan):
            if i < len(done):
                lines.append(f"&#10003; {name}: {html.escape(_summary(done[i]))}")
            elif i == len(done):
                lines.append(f"<b>&#9654; {name}</b> (next)")
            else:
                lines.append(f"&nbsp;&nbsp;&nbsp;{name}")
        self.plan.value = ("<div style='font-family:monospace;font-size:85%'>"
                           + "<br>".join(lines) + "</div>")
        for name, cls in bitmap_views(m).items():
            self.images[name].value = pm.png(pm.render(cls, SETUP_COLOURS, self.width, self.height))
        self.numbers.value = (f"<b>migration_dirty_pages = {m.migration_dirty_pages:,}</b>; "
                              f"bits set in the migration bitmap = {bits_set(m):,} "
                              f"(of {m.total_pages:,} pages)")


class SetupComparison:
    """Two migrations of identical guests, original and pv, stepped through setup together.

    ``make_guest``: a :class:`~kit.scenario.Scenario` (its mode is replaced by each side's),
    or a function that builds a fresh guest (same seed each time), as older notebooks pass.
    **Next step** runs one setup action of each migration that still has one; **Reset**
    starts over with fresh guests.
    """

    def __init__(self, make_guest, width: int = 512, height: int = 40):
        import ipywidgets as widgets
        self.make_guest = make_guest
        self.next_button = widgets.Button(description="Next step", icon="step-forward")
        self.reset_button = widgets.Button(description="Reset", icon="undo")
        self.status = widgets.HTML()
        self.next_button.on_click(lambda _: self.next())
        self.reset_button.on_click(lambda _: self.reset())
        self.panels = {"original": _Panel(widgets, "original", [MIGRATION_BITMAP], width, height),
                       "pv": _Panel(widgets, "pv", [DIRTY_MEMORY, MIGRATION_BITMAP], width, height)}
        legend = widgets.HTML(pm.legend_html(SETUP_CLASSES, SETUP_COLOURS))
        self.widget = widgets.VBox([
            widgets.HBox([self.next_button, self.reset_button, self.status]),
            widgets.HBox([p.widget for p in self.panels.values()]), legend])
        self.reset()

    def _build(self, mode):
        from .. import scenario as sc
        if isinstance(self.make_guest, sc.Scenario):
            return sc.build(self.make_guest.with_(mode=mode))
        g = self.make_guest()
        s = sc.Scenario(ram=g.mm.ram_size, machine=g.mm.machine, max_ram_below_4g=g.mm.max_ram_below_4g,
                        workload=g.workload, mode=mode, track_pages=True)
        return sc.build(s, guest=g)

    def reset(self):
        self.migrations = {mode: self._build(mode) for mode in self.panels}
        # The plan is read once, before any step; Migration pops it as it goes.
        self.plans = {mode: list(m._plan) for mode, m in self.migrations.items()}
        self.done = {mode: [] for mode in self.panels}
        self.clicks = 0
        return self.show()

    @property
    def finished(self) -> bool:
        return all(m.phase != "setup" for m in self.migrations.values())

    def _next_actions(self) -> dict:
        return {mode: self.plans[mode][len(self.done[mode])]
                for mode, m in self.migrations.items() if m.phase == "setup"}

    def movers(self) -> list:
        """Which migrations the next click steps.

        Steps with the same name run side by side; a step only one side has
        (the RFC's request, wait and filter) runs while the other side waits.
        """
        nxt = self._next_actions()
        if len(set(nxt.values())) <= 1:
            return list(nxt)
        rest = {mode: self.plans[mode][len(self.done[mode]):] for mode in nxt}
        own = [mode for mode, name in nxt.items()
               if not any(name in rest[o] for o in nxt if o != mode)]
        return own or list(nxt)

    def next(self):
        for mode in self.movers():
            self.done[mode].append(self.migrations[mode].step())
        self.clicks += 1
        return self.show()

    def show(self):
        for mode, panel in self.panels.items():
            panel.show(self.migrations[mode], self.plans[mode], self.done[mode])
        if self.finished:
            self.status.value = "setup finished for both: the bulk stage would start now"
        else:
            nxt = self._next_actions()
            waiting = [MODE_TITLES[mode] for mode in nxt if mode not in self.movers()]
            self.status.value = (f"after {self.clicks} click(s)"
                                 + (f"; next click: {', '.join(waiting)} waits" if waiting else ""))
        self.next_button.disabled = self.finished
        return self


# --------------------------------------------------------------------------- the bulk stage
def run_counting_bulk_visits(m) -> int:
    """Run ``m`` to the end; return how many pages the bulk-stage shortcut passed over.

    In QEMU 2.5, ``migration_bitmap_find_dirty`` returns the next page without
    reading the bitmap while ``ram_bulk_stage`` is set; patch 4 removes that
    shortcut.  We count the pages the search position moves over while the
    shortcut is on (the model's ``stats.visited`` counts a batch window whole
    even when a batch stops inside it, so it can come out higher).
    """
    visited = 0
    while not m.done:
        shortcut = m.phase == "iterate" and m.mode == "original" and m.ram_bulk_stage
        before = m.pos
        m.step()
        if shortcut:
            visited += (m.pos - before) if m.ram_bulk_stage else (m.total_pages - before)
    return visited


def bulk_table(runs: dict) -> str:
    """``{"label": (finished Migration, shortcut visits)}`` -> plain-text comparison."""
    labels = list(runs)
    w = max(14, *(len(x) for x in labels))
    rows = [f"{'':42s}" + "".join(f"{x:>{w + 2}s}" for x in labels)]

    def row(name, f):
        rows.append(f"{name:42s}" + "".join(f"{f(*runs[x]):>{w + 2},d}" for x in labels))

    row("pages in ram_addr space", lambda m, v: m.total_pages)
    row("passed by the shortcut, bitmap unread", lambda m, v: v)
    row("read and zero-checked (sent)", lambda m, v: m.stats.duplicate + m.stats.normal)
    row("skipped as free, never read", lambda m, v: m.stats.free_skipped)
    row("KiB transferred", lambda m, v: m.stats.transferred >> 10)
    return "\n".join(rows)


def plot_page_states(runs: dict, width: int = 1024, height: int = 64, figsize=(10, 2.8)):
    """One page map per finished migration: what happened to each page."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(runs), 1, figsize=figsize, squeeze=False)
    for ax, (label, m) in zip(axes[:, 0], runs.items()):
        img = pm.render(pm.migration_classes(m), pm.MIGRATION_COLOURS, width, height)
        ax.imshow(img, aspect="auto", interpolation="nearest")
        ax.set_title(label, fontsize=10, loc="left")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].legend(handles=[pm.legend_patch(n, c)
                               for n, c in zip(pm.MIGRATION_CLASSES, pm.MIGRATION_COLOURS)],
                      loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
