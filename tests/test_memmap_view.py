"""kit.viz.memmap_view (notebooks 00 and 01) and kit.exercises.ex01."""
import numpy as np
import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("matplotlib")

from kit.exercises import ex01                      # noqa: E402
from kit.guest import Guest                         # noqa: E402
from kit.memmap import pc_memory_map                # noqa: E402
from kit.migration import Migration                 # noqa: E402
from kit.units import GiB, MiB                      # noqa: E402
from kit.viz import memmap_view as mv               # noqa: E402

PNG_MAGIC = b"\x89PNG"


# -- the memory-map widget ------------------------------------------------------

def test_memory_map_widget_redraws_and_reports_qemus_split():
    w = mv.MemoryMapWidget(machine="pc", ram_gib=4.0)
    assert bytes(w.image.value).startswith(PNG_MAGIC)
    assert w.mm == pc_memory_map("4G", "pc") and "3,072 MiB" in w.values.value
    png, html = w.image.value, w.values.value
    w.machine.value = "pc-i440fx-1.7"
    assert w.mm.below_4g_mem_size == 3584 * MiB and "3,584 MiB" in w.values.value
    assert w.image.value != png and w.values.value != html
    w.machine.value, w.ram.value = "q35", 6.0
    assert w.mm.above_4g_mem_size == 4096 * MiB
    w.below.value = 1 * GiB                        # max-ram-below-4g can only lower q35's lowmem
    assert w.mm.lowmem == 1 * GiB
    w.below.value = 0                              # "default"
    assert w.mm == pc_memory_map("6G", "q35")


def test_layout_drawing_handles_every_shape():
    from matplotlib.figure import Figure
    d = mv.LayoutDrawing(Figure().add_subplot(1, 1, 1))
    for mm in (pc_memory_map("512M"), pc_memory_map("3968M", "pc", "4G"),
               pc_memory_map("4G", "pc-i440fx-1.7"), pc_memory_map("64G", "q35")):
        d.update(mm)
        assert d.high.get_width() == pytest.approx(mm.above_4g_mem_size / GiB)
        assert d.ram_low.get_width() + d.ram_high.get_width() == pytest.approx(mm.ram_size / GiB)
        assert ("shift down" in d.t_shift.get_text()) == bool(mm.above_4g_mem_size)


def test_frame_rows_follow_the_aliases():
    mm = pc_memory_map("8G", "pc")
    rows = mv.frame_rows(mm, [0, 0xBFFFF, 0xC0000, 0x100000, mm.max_pfn - 1, mm.max_pfn])
    assert [r["ram_page"] for r in rows] == [0, 0xBFFFF, None, 0xC0000, mm.ram_pages - 1, None]
    assert [r["where"] for r in rows] == ["RAM below 4G", "RAM below 4G", "PCI hole",
                                          "RAM above 4G", "RAM above 4G", "beyond RAM"]
    assert "PCI hole" in mv.frame_table(mm, [0xC0000])


# -- wrong low_mem ----------------------------------------------------------------

def test_outcome_classes_truth_table():
    used = np.array([True, True, False, False])
    skipped = np.array([False, True, True, False])
    assert mv.outcome_classes(used, skipped).tolist() == [mv.USED_SENT, mv.USED_LOST,
                                                         mv.FREE_SKIPPED, mv.FREE_SENT]


def test_right_low_mem_loses_and_wastes_nothing():
    g = Guest(pc_memory_map("6G", "pc"), "idle", seed=0)
    counts = mv.outcome_counts(mv.shift_outcome(g))
    assert counts["used, skipped: LOST"] == 0 and counts["free, sent anyway"] == 0


def test_wrong_low_mem_loses_high_pages_as_predicted_and_as_migrated():
    # 6 GiB pc: hole 1 GiB; 256 MiB used at 5.5 GiB, the frames 1 GiB lower (4.5 GiB) are free
    g = mv.guest_with_pages_at("6G", "pc", at_gpa=5 * GiB + 512 * MiB, nbytes=256 * MiB)
    predicted = mv.outcome_counts(mv.shift_outcome(g, low_mem=4 * GiB))
    # the 256 MiB, and the kernel's mem_map (64 bytes per page of RAM), which sits at the top
    # of RAM where the frames 1 GiB lower are free too
    memmap = 6 * GiB // 4096 * 64 // 4096
    assert predicted["used, skipped: LOST"] == 256 * MiB // 4096 + memmap
    m = Migration(g, "pv", inject="wrong-lowmem", verify=True)
    lost = m.run().stats["verify"]["lost-pages"]
    assert lost == predicted["used, skipped: LOST"]
    assert mv.outcome_counts(mv.migration_outcome(m)) == predicted


def test_idle_guest_with_wrong_low_mem_loses_its_mem_map_at_the_top():
    """An idle guest holds little above 4 GiB but its mem_map (64 bytes per page of RAM),
    which memblock puts at the top of RAM; the frames 1 GiB lower are free."""
    g = Guest(pc_memory_map("6G", "pc"), "idle", seed=0)
    counts = mv.outcome_counts(mv.shift_outcome(g, low_mem=4 * GiB))
    assert counts["used, skipped: LOST"] == 6 * GiB // 4096 * 64 // 4096
    assert counts["free, sent anyway"] > 0


# -- the live guest map (notebook 00) ---------------------------------------------

def test_live_guest_map_logs_dirty_pages_only_for_a_writing_workload():
    live = mv.LiveGuestMap(ram="256M", workload="idle", seed=0)
    png, caption = live.view.image.value, live.view.caption.value
    live.button.click()
    assert live.counts()["dirty (logged by KVM)"] == 0 and live.view.caption.value != caption
    assert live.view.image.value == png             # an idle guest writes nothing
    live.workload.value = "dirtying"
    png = live.view.image.value
    live.button.click()
    assert live.counts()["dirty (logged by KVM)"] > 0 and live.view.image.value != png
    assert live.guest.memory.dirty_log.enabled
    live.workload.value = "hog"
    assert live.counts()["dirty (logged by KVM)"] == 0 and live.guest.time == 0


def test_seed_table_lines_up_model_and_seed():
    from kit.reference import SEED_2016
    rows = [{"case": r["case"], "mode": r["mode"], "total-time-ms": r["total-time-ms"],
             "transferred-kb": r["transferred-kb"], "seed-total-time-ms": r["total-time-ms"],
             "seed-transferred-kb": r["transferred-kb"]} for r in SEED_2016]
    text = mv.seed_table(rows)
    assert len(text.splitlines()) == 5 and text.count("+0.0%") == 8


# -- exercises of notebook 01 --------------------------------------------------------

def test_ex01_answers_come_from_the_model():
    assert ex01.reveal(1) == pc_memory_map("6G", "q35").above_4g_mem_size // MiB == 4096
    assert ex01.reveal(2) == 0x180000
    g = ex01.scenario_3_guest()
    assert ex01.reveal(3) == mv.outcome_counts(mv.shift_outcome(g, low_mem=4 * GiB))["used, skipped: LOST"]


def _ex01_by_hand(n):
    """Exercise 1's answers worked out without the migration model.

    1. q35 with 6 GiB: RAM of 2.75 GiB or more keeps 2 GiB below 4 GiB (512 MiB of PCI I/O and
       256 MiB of MMCONFIG are reserved too), so 6 - 2 = 4 GiB, 4096 MiB, sit above 4 GiB.
    2. q35 with 8 GiB: lowmem is 2 GiB (room for PCI I/O and MMCONFIG, gigabyte aligned), so
       the hole is 2 GiB = 0x80000 frames, and frame 0x200000 (8 GiB) is ram page
       0x200000 - 0x80000 = 0x180000.
    3. The pages the wrongly shifted bitmap marks free while the guest uses them, from the
       bitmap shift alone (kit.viz.memmap_view.shift_outcome), not from a migration."""
    if n == 1:
        return (6 * 1024) - 2 * 1024
    if n == 2:
        return 0x200000 - (4 * GiB - 2 * GiB) // 4096
    return mv.outcome_counts(mv.shift_outcome(ex01.scenario_3_guest(), low_mem=4 * GiB))["used, skipped: LOST"]


@pytest.mark.parametrize("n, check", [(1, ex01.check_1), (2, ex01.check_2), (3, ex01.check_3)])
def test_ex01_verdicts(n, check):
    answer = _ex01_by_hand(n)
    assert check(answer).correct
    assert not check(answer * 2 + 1).correct
    v = check(None)
    assert not v.correct and "prediction" in v.message
    assert str(answer) not in v.message                  # nothing is given away
    assert "question" in ex01.scenario(n)

# -- controls that behave as a student expects -------------------------------------

def test_ram_slider_reaches_the_suggested_values_by_mouse_and_by_box():
    w = mv.MemoryMapWidget(machine="pc", ram_gib=4.0)
    r = w.ram
    steps = round((r.max - r.min) / r.step)
    assert steps <= 128                     # about 3 px a step on the 640 px slider
    for gib in (2.75, 3.375, 3.5, 4.0, 6.0, 8.0):   # the values notebook 01 suggests
        k = (gib - r.min) / r.step
        assert abs(k - round(k)) < 1e-9 and r.min <= gib <= r.max
    png = w.image.value
    w.ram_text.value = 3.375                # typed into the box: the slider follows, and redraws
    assert w.ram.value == 3.375 and w.mm == pc_memory_map(27 * GiB // 8, "pc")
    assert w.image.value != png and "3,456 MiB" in w.values.value
    w.ram.value = 3.5                       # and the box follows the slider
    assert w.ram_text.value == 3.5


def test_memory_map_redraw_keeps_its_layout():
    w = mv.MemoryMapWidget(machine="pc", ram_gib=4.0)
    box = w.drawing.ax.get_position().bounds
    for gib in (0.5, 3.375, 16.0):
        w.ram.value = gib
        assert w.drawing.ax.get_position().bounds == box      # margins set once, never again
    assert bytes(w.image.value).startswith(PNG_MAGIC)


def test_live_guest_map_caption_keeps_its_line_count():
    import re
    live = mv.LiveGuestMap(ram="256M", workload="idle", seed=0)
    states = [live.view.caption.value]
    live.workload.value = "dirtying"
    for _ in range(3):
        live.button.click()
        states.append(live.view.caption.value)
    live.workload.value = "hog"
    states.append(live.view.caption.value)
    lines = [len(re.findall(r"<div style='white-space:nowrap", c)) for c in states]
    heights = {re.search(r"height:([\d.]+em)", c).group(1) for c in states}
    assert set(lines) == {mv.LiveGuestMap.CAPTION_LINES} and len(heights) == 1
    assert len(set(states)) == len(states)  # and it still says something new each time


def test_painted_picture_says_what_a_full_draw_says():
    """The widget's picture (matplotlib for the shapes over a background drawn once, Pillow for
    the texts) against matplotlib's full draw of the same figure: the same texts, the same
    shapes pixel for pixel, and glyphs that differ only in their hinting."""
    import io
    from matplotlib.text import Text
    from PIL import Image
    w = mv.MemoryMapWidget(machine="pc", ram_gib=4.0)
    d, fixed = w.drawing, {"guest\nphysical", "pc.ram\n(ram_addr)", "GiB"}
    for machine, gib in (("pc", 0.5), ("pc", 3.375), ("q35", 6.0), ("pc-i440fx-1.7", 16.0)):
        w.machine.value, w.ram.value = machine, gib
        fast = np.asarray(Image.open(io.BytesIO(w.image.value)).convert("RGB")).astype(int)
        full = np.asarray(Image.open(io.BytesIO(mv.fig_png(w.fig))).convert("RGB")).astype(int)
        drawn = [t.get_text() for t in w.fig.findobj(Text) if t.get_visible() and t.get_text()
                 and t.get_text() not in fixed]
        assert sorted(w.painter.painted) == sorted(drawn) and "4" in drawn and d.title.get_text() in drawn
        assert fast.shape == full.shape
        h = fast.shape[0]
        for y in (d.Y_RAM - d.H / 4, d.Y_GPA + d.H / 2 - 0.04):   # rows through the bars without text
            row = h - 1 - int(d.ax.transData.transform((0, y))[1])
            assert (fast[row] == full[row]).all()
        assert (np.abs(fast - full).max(axis=2) > 64).mean() < 0.03


def test_rgb_png_round_trips():
    import io
    from PIL import Image
    rgb = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    png = mv.rgb_png(rgb)
    assert png.startswith(PNG_MAGIC)
    assert (np.asarray(Image.open(io.BytesIO(png)).convert("RGB")) == rgb).all()
