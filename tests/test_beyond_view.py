"""Notebook 07's display module (kit/viz/beyond.py) and its exercise checks (kit/exercises/ex07.py)."""
import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import by_hand
from kit import beyond
from kit.costmodel import get_preset
from kit.exercises import ex07
from kit.viz import beyond as bv


def test_comparison_text_and_figure():
    table = bv.comparison("2G", workloads=("idle", "hog"))
    text = bv.comparison_text(table)
    assert text.count("\n") == 1 + 8 and "report" in text
    fig = bv.comparison_figure(table, "t")
    assert len(fig.axes) == 2
    plt.close(fig)


def test_text_helpers():
    assert "32.00 MiB" in bv.bitmap_text({"1 TiB": beyond.bitmap_sizes("1T")})
    assert "pagemap" in bv.pagemap_text({"idle": beyond.pagemap_estimate("1G", "idle")})
    s = bv.postcopy_text({"original": beyond.postcopy_split("1G", "hog", "original", 150)})
    assert "original" in s
    hog = beyond.compare("1G", "hog", modes=("original", "pv"))
    b = bv.balloon_text({"2016": beyond.balloon_instead("1G", "hog", "256M")}, hog["original"], hog["pv"])
    assert "inflate to 1 GiB first (2016)" in b


def test_hint_events_text():
    m = beyond.make("1G", "idle", "hint", track_pages=False)
    m.run()
    text = bv.hint_events_text(m)
    assert "cmd id 0x80000000" in text and "STOP (cmd id 0)" in text and "DONE (cmd id 1)" in text
    assert text.index("0x80000000") < text.index("DONE")


def test_figures():
    for fig in (bv.bitmap_figure(), bv.wei_wang_figure(beyond.wei_wang_rows(beyond.WEI_WANG[:2])),
                bv.reviewers_figure({"a": (100, "r"), "b": (50, "g")})):
        assert fig.axes
        plt.close(fig)


def test_explorer_redraws_on_every_control():
    e = bv.BeyondExplorer(ram_gib=2, workload="idle", mode="hint")
    pic, page_map, caption = e.image.value, e.page_map.value, e.caption.value
    assert pic[:4] == b"\x89PNG" and page_map[:4] == b"\x89PNG" and "2 GiB" in caption
    e.ram.value = 1
    assert e.image.value != pic and e.page_map.value != page_map and "1 GiB" in e.caption.value
    e.mode.value = "report"
    assert e.stats["ram"]["free-skipped"] == 0
    e.guest.value = "hog"
    assert e.stats["free-page-reporting"]["reported-pages"] > 0
    e.ram.value, e.guest.value, e.mode.value = 2, "idle", "hint"
    assert e.caption.value == caption and e.image.value == pic


def test_exercise_verdicts_before_a_prediction():
    assert "prediction first" in repr(ex07.check_hinted_blocks(None))
    assert "prediction first" in repr(ex07.check_faster_successor(None))
    assert "prediction first" in repr(ex07.check_balloon_sg(None))


def test_exercise_1_hinted_blocks_are_the_whole_free_4mib_blocks():
    """The guest hints only aligned 4 MiB blocks that are entirely free; an idle guest
    allocates nothing meanwhile. Count them as bits of its buddy bitmap, 1024 at a time
    then no more in each zone than its min watermark (and lowmem reserve) lets an order-10
    allocation take: under 1 % of the count, so the check wants it within 10 blocks."""
    from test_exercises import _ex07_blocks
    g = by_hand.seed_guest(ex07.EX1_RAM, "idle")
    whole = by_hand.whole_free_blocks(g)
    assert whole <= by_hand.free_frames(g) / by_hand.HINT_BLOCK
    blocks = _ex07_blocks()                       # the whole blocks the watermarks let go
    assert blocks < whole
    assert ex07.check_hinted_blocks(blocks).correct
    assert not ex07.check_hinted_blocks(whole).correct             # watermarks forgotten
    assert ex07.check_hinted_blocks(blocks + 8).correct             # within 10 blocks
    assert not ex07.check_hinted_blocks(round(blocks * 1.03)).correct
    assert not ex07.check_hinted_blocks(4096).correct               # as if no memory were in use
    assert not ex07.check_hinted_blocks(by_hand.free_frames(g) // 512).correct   # 2 MiB blocks (reporting's)


def test_exercise_2_hinting_beats_reporting_after_the_hog():
    """Reporting still sends every page (reported ones as zero pages), and the CPU reads
    each: at least pages x 756 ns. Hinting sends only what is not in a hinted block, once;
    even if a twentieth of the whole free blocks were held back, its setup, syncs, hints
    and those pages at the wire rate take well under that."""
    cost = get_preset("seed-2016")
    g = by_hand.seed_guest(ex07.EX2_RAM, ex07.EX2_WORKLOAD)
    report_at_least = by_hand.all_pages(g) * cost.cpu_ns_per_page * 1e-9
    hinted = 0.95 * by_hand.whole_free_blocks(g)
    hint_at_most = (by_hand.setup_s(cost, g, syncs=3) + hinted * cost.hint_ns_per_block * 1e-9
                    + (by_hand.all_pages(g) - hinted * by_hand.HINT_BLOCK)
                    * by_hand.page_s(cost, by_hand.FULL_PAGE_WIRE))
    assert hint_at_most < report_at_least / 1.5
    assert ex07.check_faster_successor("hint").correct and ex07.check_faster_successor("HINT").correct
    assert not ex07.check_faster_successor("report").correct
    assert not ex07.check_faster_successor("balloon").correct


def test_exercise_3_balloon_then_original_by_hand():
    """Inflate 14 GiB (16 GiB down to 2 GiB) at the 2017 scatter-gather speed (7 GB in
    about 491 ms, virtio-balloon v12), then original QEMU sends every page: the guest's
    remaining full pages at the wire rate, the ballooned and other zero pages at the
    CPU's (each lies in long runs of its own kind, so a batch is one or the other).
    Within 15 %."""
    cost = get_preset("seed-2016")
    g = by_hand.seed_guest(ex07.EX3_RAM, "hog")
    keep = 2 << 30                                       # ex07.EX3_TARGET
    assert ex07.EX3_TARGET == "2G"
    balloon = g.inflate_balloon(keep)
    assert int(balloon.sum()) == g.mm.ram_pages - keep // by_hand.PAGE     # the hog left enough free
    inflate_s = 0.491 / 7 * int(balloon.sum()) * by_hand.PAGE / (1 << 30)
    full = by_hand.full_ram_pages(g)
    assert full <= keep // by_hand.PAGE
    send_s = (full * by_hand.page_s(cost, by_hand.FULL_PAGE_WIRE)
              + (by_hand.all_pages(g) - full) * by_hand.page_s(cost, by_hand.ZERO_PAGE_WIRE))
    ms = 1000 * (inflate_s + by_hand.setup_s(cost, g, syncs=3) + send_s)
    assert ex07.check_balloon_sg(round(ms)).correct
    assert ex07.check_balloon_sg(ms * 1.08).correct                 # within 15 %
    assert not ex07.check_balloon_sg(ms * 1.4).correct
    assert not ex07.check_balloon_sg(ms + 1000 * (5.0 - inflate_s)).correct   # inflated at 2016's ~5 s
