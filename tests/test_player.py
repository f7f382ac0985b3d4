"""The bulk-stage player (kit/viz/player.py) and notebook 04's exercise checks (kit/exercises/ex04.py)."""
import pytest

from kit.exercises import ex04
from kit.viz.player import (BulkPlayer, bytes_at, event_time_ms, make_migration, run_setup,
                            setup_rows, setup_table, transfer_curve)


def test_setup_rows_follow_the_rfc_order():
    m = run_setup(make_migration("512M", "hog", "pv"))
    kinds = [r["kind"] for r in setup_rows(m.timeline)]
    assert kinds == ["bitmap", "dirty-log-start", "free-pages-request", "guest-snapshot",
                     "free-pages-done", "filter", "sync"]
    rows = setup_rows(m.timeline)
    assert all(a["end_ms"] <= b["end_ms"] for a, b in zip(rows, rows[1:]))
    assert "filter_out_guest_free_pages" in setup_table(m.timeline)


def test_wrong_order_snapshot_precedes_dirty_log():
    m = run_setup(make_migration("512M", "dirtying", "pv", inject="free-pages-before-dirty-log"))
    assert event_time_ms(m.timeline, "guest-snapshot") < event_time_ms(m.timeline, "dirty-log-start")


@pytest.mark.parametrize("mode", ["original", "pv"])
def test_transfer_curve_ends_at_transferred(mode):
    m = make_migration("512M", "hog", mode)
    m.run()
    t, b = transfer_curve(m)
    assert b[-1] == m.stats.transferred
    assert (t[1:] >= t[:-1]).all() and (b[1:] >= b[:-1]).all()
    assert bytes_at((t, b), 0.0) == 0 and bytes_at((t, b), t[-1] + 1) == m.stats.transferred


def test_player_moves_forward_and_back():
    p = BulkPlayer("512M", "hog", step_ms=50)
    assert p.slider.continuous_update is False
    assert p.end_ms % 50 == 0 and p.end_ms >= max(r["total-time"] for r in p.results.values())
    p.play.value = 100
    pics = {k: v.image.value for k, v in p.views.items()}
    texts = {k: c.value for k, c in p.counters.items()}
    p.play.value = 300
    assert p.slider.value == 300
    assert all(p.views[k].image.value != pics[k] for k in pics)
    assert all(p.counters[k].value != texts[k] for k in texts)
    p.slider.value = 100                      # the slider drives the same path
    assert p.play.value == 100
    assert {k: v.image.value for k, v in p.views.items()} == pics
    assert {k: c.value for k, c in p.counters.items()} == texts


def test_finished_migration_stays_finished():
    p = BulkPlayer("512M", "hog")
    p.play.value = p.end_ms
    assert all(m.done for m in p.migrations.values())
    done_at = {k: m.total_time for k, m in p.migrations.items()}
    p.seek(p.end_ms + 500)
    assert {k: m.total_time for k, m in p.migrations.items()} == done_at


def test_exercise_checks_give_right_verdicts():
    checks = [(ex04.check_skipped_fraction, ex04.reveal(1), 0.5),
              (ex04.check_original_mib_at_500ms, ex04.reveal(2), 2 * ex04.reveal(2)),
              (ex04.check_sync_rounds, ex04.reveal(3), ex04.reveal(3) + 1)]
    for check, answer, wrong in checks:
        assert check(answer).correct
        assert not check(wrong).correct
        none = check(None)
        assert not none.correct and "prediction" in none.message


def test_exercise_answers_make_sense():
    assert 0.9 < ex04.reveal(1) < 1.0                 # 8 GiB hog: most of RAM is free
    assert ex04.skipped_fraction("2G") < ex04.reveal(1)
    assert ex04.reveal(3) >= ex04.pv_sync_rounds("hog")
