"""Notebook 07's display module (kit/viz/beyond.py) and its exercise checks (kit/exercises/ex07.py)."""
import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from kit import beyond
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


def test_exercises():
    assert "prediction first" in repr(ex07.check_hinted_blocks(None))
    n = ex07.reveal(1)
    assert ex07.check_hinted_blocks(n).correct and not ex07.check_hinted_blocks(n * 2).correct
    assert n == beyond.run_point("16G", "idle", "hint")["hinted-blocks"]
    assert ex07.reveal(2) == "hint"
    assert ex07.check_faster_successor("HINT").correct
    assert not ex07.check_faster_successor("report").correct
    assert not ex07.check_faster_successor("balloon").correct
    ms = ex07.reveal(3)
    assert ex07.check_balloon_sg(ms).correct and not ex07.check_balloon_sg(ms * 2).correct
    assert "prediction first" in repr(ex07.check_balloon_sg(None))
