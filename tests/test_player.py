"""The bulk-stage player (kit/viz/player.py) and notebook 04's exercise checks (kit/exercises/ex04.py)."""
import pytest

import by_hand
from kit.costmodel import get_preset
from kit.exercises import ex04
from kit.migration import Migration
from kit.units import MiB
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


def test_exercise_verdicts_before_a_prediction():
    for check in (ex04.check_skipped_fraction, ex04.check_original_mib_at_500ms, ex04.check_sync_rounds):
        none = check(None)
        assert not none.correct and "prediction" in none.message


def test_exercise_1_skipped_share_is_the_free_share_of_pc_ram():
    """The hog guest writes nothing during migration, so the RFC skips exactly the pages
    free when it is asked: count them as bits of the guest's buddy bitmap (the guest,
    not the migration). The check accepts answers within 0.02."""
    g = by_hand.seed_guest(ex04.EX1_RAM, "hog")
    share = by_hand.free_frames(g) / g.mm.ram_pages
    assert 0.9 < share < 1.0                             # the hog freed nearly all it took
    assert ex04.check_skipped_fraction(round(share, 3)).correct
    assert ex04.check_skipped_fraction(share + 0.015).correct       # within 0.02
    assert not ex04.check_skipped_fraction(share - 0.05).correct
    assert not ex04.check_skipped_fraction(0.5).correct


def test_exercise_2_bytes_at_500_ms_are_the_wire_rate_after_setup():
    """Original QEMU, 2 GiB hog guest: after setup (fixed part, write-protecting every
    backed frame, one sync) it sends page after page. Nearly every page is full, and a
    full page's 4104 bytes take longer on the wire than the CPU takes to read it, so the
    link runs flat out: MiB by 500 ms = wire rate x (500 ms - setup). Within 10 %."""
    cost = get_preset("seed-2016")
    g = by_hand.seed_guest(ex04.RAM, "hog")
    assert by_hand.full_ram_pages(g) > 0.9 * g.mm.ram_pages
    assert by_hand.FULL_PAGE_WIRE / cost.wire_bytes_per_s > cost.cpu_ns_per_page * 1e-9
    setup = by_hand.setup_s(cost, g, syncs=1)
    assert 0 < setup < 0.5
    mib = cost.wire_bytes_per_s * (0.5 - setup) / MiB
    assert ex04.check_original_mib_at_500ms(round(mib, 1)).correct
    assert ex04.check_original_mib_at_500ms(mib * 1.05).correct      # within 10 %
    assert not ex04.check_original_mib_at_500ms(mib * 1.3).correct
    assert not ex04.check_original_mib_at_500ms(cost.wire_bytes_per_s * 0.5 / MiB * 1.15).correct


def test_exercise_3_sync_rounds_are_dirty_log_fetches():
    """Counted at a different level: every migration_bitmap_sync fetches the guest's dirty
    log once (KVM_GET_DIRTY_LOG), so count the calls into the guest's DirtyLog during the
    patched migration of the 2 GiB dirtying guest, not the migration's own counter. At
    least three: the setup's sync, one when the rest fits the downtime limit, one after
    the VM stops. Exact."""
    m = Migration(by_hand.seed_guest(ex04.RAM, "dirtying"), "pv", seed=0)
    log = m.guest.memory.dirty_log                       # the migration's own copy of the guest
    fetch, calls = log.fetch_and_clear, []
    log.fetch_and_clear = lambda: calls.append(1) or fetch()
    m.run()
    n = len(calls)
    assert n >= 3
    assert ex04.check_sync_rounds(n).correct
    assert not ex04.check_sync_rounds(n + 1).correct and not ex04.check_sync_rounds(n - 1).correct


def test_exercise_answers_make_sense():
    assert ex04.skipped_fraction("2G") < ex04.skipped_fraction("8G")   # bigger guest, more left free
    assert ex04.pv_sync_rounds("dirtying") >= ex04.pv_sync_rounds("hog")


def test_player_shows_setup_happening():
    from kit.viz.player import setup_strip_html
    p = BulkPlayer("2G", "hog", step_ms=50)
    setup_end = max(m["setup-time"] for m in p.results.values())
    assert setup_end > 100                   # the first two steps of Play land inside setup
    shown = []
    for t in (0, 50, 100):
        p.seek(t)
        shown.append({k: s.value for k, s in p.strips.items()})
    for mode in p.strips:                    # each step changes what the player shows
        assert len({s[mode] for s in shown}) == 3
    assert "bitmap" in shown[0]["pv"] and "start dirty log" in shown[1]["pv"]
    assert "in setup" in shown[2]["pv"] and "no page is sent before" in shown[2]["pv"]
    p.seek(150)
    assert all("done at" in s.value for s in p.strips.values())
    steps = p.setup["pv"]
    assert [r["kind"] for r in steps] == ["bitmap", "dirty-log-start", "free-pages-request",
                                          "free-pages-done", "filter", "sync"]
    assert setup_strip_html(steps, 0.0) != setup_strip_html(steps, 50.0)


def test_page_map_view_skips_an_unchanged_picture():
    import numpy as np
    from kit.viz import pagemap as pm
    from kit.viz.widgets import PageMapView
    v = PageMapView("t", pm.MIGRATION_CLASSES, pm.MIGRATION_COLOURS, 64, 4)
    seen = []
    v.image.observe(lambda c: seen.append(c["new"]), names="value")
    a = np.zeros(256, np.uint8)
    v.update(a, "one")
    v.update(a.copy(), "two")                # same classes: not encoded or sent again
    assert len(seen) == 1 and v.caption.value == "two"
    a[3] = 1
    v.update(a)
    assert len(seen) == 2
