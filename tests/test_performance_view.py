"""Notebook 05's module (kit/viz/performance.py) and its exercise checks (kit/exercises/ex05.py)."""
import numpy as np
import pytest

from kit.costmodel import get_preset
from kit.exercises import ex05
from kit.guest import Guest
from kit.memmap import pc_memory_map
from kit.reference import SEED_2016
from kit.units import GiB
from kit.viz import performance as perf


def test_seed_table_differences_and_fit_tags():
    rows = perf.seed_table()
    assert len(rows) == len(SEED_2016)
    for r in rows:
        want = 100 * (r["total-time-ms"] - r["seed-total-time-ms"]) / r["seed-total-time-ms"]
        assert r["time-diff-%"] == pytest.approx(want)
    fits = perf.fitted_figures()
    predicted = sorted(k for k, v in fits.items() if v is None)
    # calibrate.py's docstring: workload/original time and workload/pv KB are predicted
    assert predicted == [("workload", "original", "time"), ("workload", "pv", "kb")]
    assert fits[("idle", "original", "time")] == "CostModel.cpu_ns_per_page"
    text = perf.seed_table_text(rows)
    assert text.count("PRED") == 2 and text.count("fit ") == 6
    assert "PREDICTED" in perf.fitted_figures_text()


def test_parameter_table_lists_every_source():
    text = perf.parameter_table()
    sources = get_preset("seed-2016").sources
    for name in perf.SEED_PARAMETERS:
        assert name in text and sources[name] in text
    assert "9.41 Gbit/s" in text


def test_breakdown_adds_up_to_total_time():
    for (case, mode), b in perf.breakdowns(1).items():
        wl = "idle" if case == "idle" else "hog"
        total = perf.run_point(1, wl, mode)["total-time-ms"]
        assert sum(b.values()) == pytest.approx(total, abs=1.0)
        assert ("free-page-wait" in b) == (mode == "pv")


def test_link_cost_at_10_gbit_is_the_seed_preset():
    assert perf.link_cost(10.0).wire_bytes_per_s == pytest.approx(get_preset("seed-2016").wire_bytes_per_s)
    assert perf.link_cost(None) is get_preset("seed-2016")
    assert 40 < perf.cpu_limit_gbit() < 50


def test_run_point_returns_a_copy():
    a = perf.run_point(1, "hog", "pv")
    a["breakdown-ms"]["setup"] = -1
    assert perf.run_point(1, "hog", "pv")["breakdown-ms"]["setup"] > 0


@pytest.mark.parametrize("share", [0.5, 0.6, 0.75])
def test_free_share_workload_leaves_that_share_free(share):
    wl = perf.free_share_workload(share, "hog", ram_gib=1)
    mm = pc_memory_map(1 * GiB)
    g = Guest(mm, wl)
    assert g.buddy.nr_free_pages / mm.ram_pages == pytest.approx(share, abs=2 / mm.ram_pages)
    with pytest.raises(ValueError):
        perf.free_share_workload(0.2, "hog", ram_gib=1)


def test_sweeps_shapes_and_trends():
    sw = perf.sweep("ram", (1, 2), "hog")
    assert sw["x"].tolist() == [1, 2]
    for mode in perf.MODES:
        assert sw[mode]["time_ms"].shape == (2,) and sw[mode]["converged"].all()
    assert (np.diff(sw["original"]["bytes"]) > 0).all()
    assert (sw["pv"]["bytes"] < sw["original"]["bytes"]).all()
    link = perf.sweep("link", (5, 20), "hog")
    assert link["original"]["time_ms"][1] < link["original"]["time_ms"][0]
    assert link["original"]["bytes"][0] == pytest.approx(link["original"]["bytes"][1], rel=1e-5)
    assert "pv saves" in perf.sweep_text(sw)


def test_dirty_point_uses_the_dirtying_workload():
    runs = perf.sweep_point("dirty", 100)
    assert runs["pv"]["converged"] and runs["pv"]["dirty-sync-count"] >= 3
    assert perf.dirty_workload(100).dirty_rate == pytest.approx(100 * 256)


def test_explorer_updates_picture_and_caption():
    grids = {"ram": (1, 2), "link": (5, 20), "free": (0.6, 0.9), "dirty": (0, 200)}
    e = perf.SweepExplorer(grids=grids)
    e.sliders["ram"].value = 1
    pic, cap = e.image.value, e.caption.value
    e.sliders["ram"].value = 2
    assert e.image.value != pic and e.caption.value != cap and "2 GiB" in e.caption.value
    e.axis.value = "link"
    assert e.slider_box.children[0] is e.sliders["link"]
    e.axis.value = "dirty"
    assert e.guest.disabled and "dirtying" in e.caption.value
    for s in e.sliders.values():
        assert s.continuous_update is False


def test_exercise_checks():
    assert "prediction" in ex05.check_idle_40g(None).message
    right = ex05.reveal(1)
    wrong = ex05.WIRE if right == ex05.CPU else ex05.CPU
    assert ex05.check_idle_40g(right.lower()).correct
    assert not ex05.check_idle_40g(wrong).correct
    ans = ex05.reveal(3)
    assert ex05.check_hog_original_100g(ans * 1.05).correct
    assert not ex05.check_hog_original_100g(ex05.hog_original_ms(None) / 10).correct
    assert not ex05.check_hog_original_100g(None).correct


def test_exercise_2_scale():
    ans = ex05.reveal(2)
    assert ex05.check_hog_pv_64g(ans).correct
    assert not ex05.check_hog_pv_64g(ans * 2).correct
