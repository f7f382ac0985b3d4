"""Notebook 06's module (kit/viz/races.py) and its exercise checks (kit/exercises/ex06.py)."""
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from kit.exercises import ex06
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


@pytest.mark.parametrize("check, answer", [
    (ex06.check_wrong_order_loss, lambda: ex06.reveal(1)),
    (ex06.check_lost_outside_lie, lambda: ex06.reveal(2)),
    (ex06.check_slowest_walk, lambda: ex06.reveal(3)),
])
def test_exercise_checks_give_right_verdicts(check, answer):
    a = answer()
    v = check(None)
    assert v.correct is False and "prediction" in v.message
    assert check(a).correct is True
    assert check(a * 3 + 50).correct is False


def test_exercise_answers_follow_the_rules():
    assert ex06.reveal(2) == 0
    assert ex06.reveal(1) == pytest.approx(16384 * 0.0238, rel=0.05)      # churn x gap
    assert ex06.reveal(3) == pytest.approx(0.1 / 202687 * 1e9, rel=0.05)  # 100 ms / free pages
