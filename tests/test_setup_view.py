"""kit.viz.setup_view (notebook 03's side-by-side setup) and kit.exercises.ex03."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from kit.exercises import ex03
from kit.guest import Guest
from kit.memmap import pc_memory_map
from kit.migration import Migration
from kit.viz import setup_view as sv


def guest():
    return Guest(pc_memory_map("256M"), "hog", seed=1)


def test_bitmap_views_follow_the_rfc():
    o, p = Migration(guest(), "original"), Migration(guest(), "pv")
    assert (sv.bitmap_views(o)[sv.MIGRATION_BITMAP] == sv.NONE).all()
    o.step(), p.step()                                        # ram_save_setup
    assert (sv.bitmap_views(o)[sv.MIGRATION_BITMAP] == sv.SET).all()
    v = sv.bitmap_views(p)
    assert (v[sv.MIGRATION_BITMAP] == sv.CLEAR).all() and (v[sv.DIRTY_MEMORY] == sv.SET).all()
    assert sv.bits_set(p) == p.migration_dirty_pages == 0
    assert set(sv.setup_strip(p, 0)) == {"."}
    while p.phase == "setup":
        p.step()
    v = sv.bitmap_views(p)
    assert (v[sv.DIRTY_MEMORY] == sv.CLEAR).all()
    assert sv.bits_set(p) == p.migration_dirty_pages
    assert int(np.count_nonzero(v[sv.MIGRATION_BITMAP] == sv.CLEAR_FREE)) == p.stats.free_skipped
    start = sv.first_boundary(p)
    assert set(sv.setup_strip(p, start)) == {"#", "f"}
    assert "filter" in sv.timeline_lines(p) and "sync" in sv.timeline_lines(p)


def test_comparison_aligns_steps_and_redraws():
    c = sv.SetupComparison(guest, width=128, height=16)
    first = {m: {k: i.value for k, i in p.images.items()} for m, p in c.panels.items()}
    numbers = c.panels["original"].numbers.value
    c.next_button.click()                     # ram_save_setup on both sides
    assert {m: len(d) for m, d in c.done.items()} == {"original": 1, "pv": 1}
    assert c.panels["original"].images[sv.MIGRATION_BITMAP].value != first["original"][sv.MIGRATION_BITMAP]
    assert c.panels["pv"].images[sv.DIRTY_MEMORY].value != first["pv"][sv.DIRTY_MEMORY]
    assert c.panels["original"].numbers.value != numbers
    c.next_button.click()                     # dirty log start on both
    c.next_button.click()                     # the RFC's request: the original waits
    assert {m: len(d) for m, d in c.done.items()} == {"original": 2, "pv": 3}
    assert "waits" in c.status.value
    while not c.finished:
        c.next_button.click()
    assert c.clicks == len(c.plans["pv"]) and c.next_button.disabled
    assert [r["kind"] for r in c.done["original"]][-1] == "sync"
    assert c.panels["pv"].images[sv.MIGRATION_BITMAP].value != first["pv"][sv.MIGRATION_BITMAP]
    c.reset_button.click()
    assert c.clicks == 0 and not c.next_button.disabled
    assert c.panels["pv"].images[sv.MIGRATION_BITMAP].value == first["pv"][sv.MIGRATION_BITMAP]


def test_bulk_visits_count_every_page_once():
    o, p = Migration(guest(), "original"), Migration(guest(), "pv")
    assert sv.run_counting_bulk_visits(o) == o.total_pages
    assert sv.run_counting_bulk_visits(p) == 0
    text = sv.bulk_table({"original": (o, o.total_pages), "patched": (p, 0)})
    assert "bitmap unread" in text
    fig = sv.plot_page_states({"original": o, "patched": p})
    assert len(fig.axes) == 2
    plt.close(fig)


def test_ex03_checks_give_the_right_verdicts():
    """Answers by hand: 1. patch 3 leaves migration_dirty_pages at 0 after ram_save_setup.
    2. After the filter and the first sync, every page of pc.ram the guest does not have free,
    plus all of vga.vram (the filter leaves the second RAMBlock alone): ram pages - free frames
    + 4096.  3. The bulk stage's shortcut passes over every page of ram_addr space once:
    pc.ram and vga.vram."""
    import numpy as np
    from kit.guest import Guest
    checks = {1: ex03.check_dirty_after_setup_call, 2: ex03.check_dirty_after_first_sync,
              3: ex03.check_bulk_visits}
    mm = pc_memory_map(ex03.SCENARIO["ram"], ex03.SCENARIO["machine"])
    g = Guest(mm, ex03.SCENARIO["workload"], seed=ex03.SCENARIO["seed"])
    by_hand = {1: 0, 2: mm.ram_pages - int(np.count_nonzero(g.buddy.free)) + 4096,
               3: mm.ram_pages + 4096}
    for n, check in checks.items():
        assert not check(None).correct and "prediction first" in check(None).message
        assert check(by_hand[n]).correct, n
        assert not check(by_hand[n] + 1).correct
        assert ex03.scenario(n)
    assert "vga.vram" in ex03.check_bulk_visits(mm.ram_pages).message