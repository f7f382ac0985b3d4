"""Notebook 06's module (kit/viz/races.py) and its exercise checks (kit/exercises/ex06.py)."""
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import by_hand
from kit.costmodel import get_preset
from kit.exercises import ex06
from kit.guest import get_workload
from kit.memmap import pfn_to_ram_page
from kit.viz import races
from kit.viz.races import LOST, RESCUED, RIGHT, WRONG


@pytest.fixture(scope="module")
def both_orders():
    runs = {o: races.make_race("512M", races.race_workload(8192), o, seed=0) for o in (RIGHT, WRONG)}
    for m in runs.values():
        m.run()
    return runs


def test_right_order_loses_nothing_wrong_order_loses_churn_times_gap(both_orders):
    right, wrong = both_orders[RIGHT], both_orders[WRONG]
    assert right.verify_result["lost-pages"] == 0
    assert races.unprotected_ms(right) == 0.0
    gap = races.unprotected_ms(wrong)
    assert gap > 0 and races.snapshot_ms(wrong) < races.log_on_ms(wrong)
    lost = wrong.verify_result["lost-pages"]
    assert lost == pytest.approx(8192 * gap * 1e-3, abs=2)


def test_classes_agree_with_verify(both_orders):
    for m in both_orders.values():
        cls = races.race_classes(m)
        assert len(cls) == m.mm.ram_pages
        assert np.count_nonzero(cls == LOST) == m.verify_result["lost-pages"]
        assert np.array_equal(cls == LOST, races.lost_mask(m))
    assert np.count_nonzero(races.race_classes(both_orders[RIGHT]) == RESCUED) > 0
    counts = races.race_counts(both_orders[WRONG])
    assert sum(counts.values()) == both_orders[WRONG].mm.ram_pages


@pytest.mark.parametrize("order, steps, logged, lost", [(RIGHT, 4, True, 0), (WRONG, 3, False, 64)])
def test_page_allocated_after_the_report(order, steps, logged, lost):
    m = races.make_race("256M", "idle", order, seed=0)
    text = races.step_lines(m, steps)
    assert "bitmap arrived" in text
    assert text.index("asks the guest") < text.index("guest snapshot")
    frames = m.guest.allocate_and_write(64)
    pages = pfn_to_ram_page(m.mm, frames)
    assert races.reported_free(m)[pages].all()
    assert np.array_equal(races.dirty_logged(m.guest), frames) is logged
    assert m.guest.memory.dirty_log.pending == (64 if logged else 0)     # the peek did not clear it
    m.run()
    assert m.verify_result["lost-pages"] == lost
    assert "lost-pages" in races.verify_line(m)


def test_lying_guest_loses_only_lied_pages():
    m = races.make_race("512M", "dirtying", RIGHT, seed=0, inject="guest-reports-used-pages-free",
                        lie_fraction=0.02)
    m.run()
    v = m.verify_result
    lost, lied = races.lost_mask(m), races.lied_mask(m)
    assert v["lost-outside-lied-pages"] == 0 and v["lost-pages"] > 0
    assert not (lost & ~lied).any() and np.count_nonzero(lied) == v["lied-pages"]


def test_liar_classes_split_the_resent_pages_into_honest_and_lied():
    """06 section 4: the RESCUED class of a lying guest holds two kinds of page; LIAR_CLASSES
    tells them apart, and every lied page is either lost or lied-and-resent."""
    m = races.make_race("512M", "dirtying", RIGHT, seed=0, inject="guest-reports-used-pages-free",
                        lie_fraction=0.02)
    m.run()
    lost, lied = races.lost_mask(m), races.lied_mask(m)
    old, new = races.race_classes(m), races.liar_classes(m)
    assert len(races.LIAR_CLASSES) == len(races.LIAR_COLOURS) == len(races.LIAR_LETTERS.split()) == 7
    moved = old != new
    assert (old[moved] == races.RESCUED).all() and (new[moved] == races.LIED_RESENT).all()
    assert np.array_equal(new == races.LIED_RESENT, lied & ~lost)
    honest = new == races.RESCUED
    assert not (honest & lied).any() and honest.any()          # both kinds occur in this guest
    c = races.liar_counts(m)
    assert c[races.LIAR_CLASSES[races.LIED_RESENT]] + c[races.LIAR_CLASSES[races.RESCUED]] \
        == races.race_counts(m)[races.RACE_CLASSES[races.RESCUED]]
    assert c[races.LIAR_CLASSES[races.LIED_RESENT]] + c[races.LIAR_CLASSES[races.LOST]] == v_lied(m)
    # an honest guest has no lied pages: the two maps agree
    h = races.make_race("512M", "dirtying", RIGHT, seed=0)
    h.run()
    assert np.array_equal(races.race_classes(h), races.liar_classes(h))


def v_lied(m):
    return m.verify_result["lied-pages"]


def test_hung_guest_stalls_and_bounded_wait_falls_back():
    hung = races.make_race("256M", "idle", RIGHT, inject="guest-hangs", max_time_s=2)
    r = hung.run()
    assert r["status"] == "setup" and r["ram"]["transferred"] == 0
    assert "stalled" in races.setup_lines(hung)
    b = races.make_race("256M", "idle", RIGHT, inject="guest-hangs", free_page_wait_timeout_s=0.1).run()
    assert b["status"] == "completed" and b["ram"]["free-skipped"] == 0
    assert b["verify"]["lost-pages"] == 0


def test_walk_sweep_setup_grows_and_bound_caps_it():
    rows = races.walk_sweep([10, 10000], ram="256M", workload="hog")
    forever = [r for r in rows if r["timeout"] is None]
    bounded = [r for r in rows if r["timeout"] is not None]
    assert forever[1]["setup"] > 5 * forever[0]["setup"]
    assert bounded[1]["skipped"] == 0 and bounded[1]["setup"] < forever[1]["setup"]
    assert all(r["lost"] == 0 for r in rows)
    assert "wait forever" in races.walk_table(rows)
    races.plot_walk_sweep(rows)
    plt.close("all")


def test_trials_right_order_never_loses():
    rows = races.run_trials(6, seed=7)
    assert all(r["lost_right"] == 0 for r in rows)
    assert "wrong order" in races.trials_table(rows)
    races.plot_trials(rows)
    plt.close("all")


def test_pictures(both_orders):
    races.plot_orders(both_orders)
    plt.close("all")
    cls = races.race_classes(both_orders[WRONG])
    start = races.first_of(cls, LOST) - 128
    assert races.zoom_png(cls, start)[:4] == b"\x89PNG"
    assert races.zoom_pair_png(both_orders.values(), start)[:4] == b"\x89PNG"


def test_explorer_redraws_on_every_control():
    e = races.RaceExplorer("256M", seed=0, churn=8192)
    assert e.churn.continuous_update is False and e.walk.continuous_update is False
    assert e.migration.verify_result["lost-pages"] == 0
    pic, zoom, text = e.view.image.value, e.zoom.value, e.counters.value
    e.order.value = WRONG
    lost = e.migration.verify_result["lost-pages"]
    assert lost > 0 and e.view.image.value != pic and e.zoom.value != zoom and e.counters.value != text
    e.churn.value = 32768
    assert e.migration.verify_result["lost-pages"] > 3 * lost
    e.walk.value = 300
    more = e.migration.verify_result["lost-pages"]
    e.walk.value = 10
    assert more > e.migration.verify_result["lost-pages"]
    e.churn.value, e.order.value = 8192, RIGHT
    assert e.counters.value == text and e.view.image.value == pic


def test_exercise_verdicts_before_a_prediction():
    for check in (ex06.check_wrong_order_loss, ex06.check_lost_outside_lie, ex06.check_slowest_walk,
                  ex06.check_disk_read_loss):
        v = check(None)
        assert v.correct is False and "prediction" in v.message


def _wrong_order_gap_s():
    """How long the 2 GiB dirtying guest's fresh allocations go unseen in the wrong order:
    from the free-list snapshot until dirty logging is on, i.e. the walk and the bitmap's
    hand-over, QEMU's next poll, then write-protecting every backed frame (logging is on
    only when that pass ends)."""
    cost = get_preset("seed-2016")
    g = by_hand.seed_guest(ex06.EX1_RAM, get_workload("dirtying").with_(churn_rate=ex06.EX1_CHURN))
    return by_hand.free_page_answer_s(cost, g) + by_hand.backed_frames(g) * cost.dirty_log_ns_per_backed_page * 1e-9


def test_exercise_1_lost_pages_are_churn_times_the_gap():
    """Every page the guest allocates in the gap was reported free, so it is skipped, and
    no dirty log saw its write; churned pages stay allocated a minute, so none is freed
    again before switch-over. Lost = churn rate x gap. Within 15 %."""
    lost = ex06.EX1_CHURN * _wrong_order_gap_s()
    assert ex06.check_wrong_order_loss(round(lost)).correct
    assert ex06.check_wrong_order_loss(lost * 1.1).correct           # within 15 %
    assert not ex06.check_wrong_order_loss(lost * 1.4).correct
    assert not ex06.check_wrong_order_loss(0).correct


def test_exercise_1_gap_is_the_models_unprotected_window():
    # the same window, as the timeline shows it (snapshot -> dirty log on): the hand
    # computation above must describe what the model does, to within the poll's 1 ms
    w = get_workload("dirtying").with_(churn_rate=ex06.EX1_CHURN)
    m = races.make_race(ex06.EX1_RAM, w, WRONG, seed=0, track_pages=False)
    m.run()
    assert races.unprotected_ms(m) == pytest.approx(1e3 * _wrong_order_gap_s(), abs=1.0)


def test_exercise_2_right_order_loses_nothing_it_did_not_lie_about():
    """In the right order every page written after the snapshot is in the dirty log, so
    a page is lost only if the guest lied about it: the answer is 0, exactly."""
    assert ex06.check_lost_outside_lie(0).correct
    assert not ex06.check_lost_outside_lie(1).correct
    assert not ex06.check_lost_outside_lie(50).correct


def test_exercise_3_slowest_walk_fits_the_wait_to_the_free_pages():
    """The bounded wait gets the bitmap if walking every free page fits in 100 ms: the
    slowest walk is 100 ms / free pages of the 1 GiB hog guest (bits of its buddy bitmap;
    the bitmap's hand-over and the 1 ms poll move it by under 1 %). Within 10 %."""
    g = by_hand.seed_guest(ex06.EX3_RAM, ex06.EX3_WORKLOAD)
    ns = ex06.EX3_TIMEOUT / by_hand.free_frames(g) * 1e9
    assert ex06.check_slowest_walk(round(ns)).correct
    assert ex06.check_slowest_walk(ns * 1.07).correct                # within 10 %
    assert not ex06.check_slowest_walk(ns * 1.3).correct
    # counting every page of pc.ram, not only the free ones, is too far off
    assert not ex06.check_slowest_walk(ex06.EX3_TIMEOUT / g.mm.ram_pages * 1e9).correct


def test_exercise_4_disk_read_loss_is_the_read_rate_times_the_wait():
    """Every page the disk fills between the guest's snapshot and the filter was free in the
    snapshot, its bit is set in dirty_memory and overwritten with 0; nothing rewrites it.
    Lost = read rate in pages/s x (walk + bitmap hand-over + the next 1 ms poll). Within 15 %.
    (The free pages are counted before the reads start; the reads during the walk take a few
    hundred of them, well under 1 %.)"""
    cost = get_preset("seed-2016").with_(guest_walk_ns_per_free_page=ex06.EX4_WALK_NS)
    g = by_hand.seed_guest(ex06.EX4_RAM, "idle")
    lost = ex06.EX4_MIB_S * 256 * by_hand.free_page_answer_s(cost, g)
    assert ex06.check_disk_read_loss(round(lost)).correct
    assert ex06.check_disk_read_loss(str(round(lost))).correct       # a string reads as the number
    assert not ex06.check_disk_read_loss(lost * 1.3).correct
    assert not ex06.check_disk_read_loss(0).correct
    v = ex06.check_disk_read_loss("about five hundred")
    assert not v.correct and v.unreadable and "give a number" in v.message
