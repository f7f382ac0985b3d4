"""Notebook 08's display module (kit/viz/lab.py), its exercises (kit/exercises/ex08.py) and
the helpers appended to kit/lab/model.py for it.  Recorded rows only: no QEMU runs here."""
import copy
import json
import statistics

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from kit.exercises import ex08
from kit.guest import Guest
from kit.memmap import pc_memory_map
from kit.migration import Migration
from kit.units import MiB
from kit.lab import model as lm
from kit.viz import lab as lv

ROWS, COST = lm.recorded()


def _ok(ram, workload, hint):
    return next(r for r in ROWS if r["status"] == "ok" and r["config"]["ram"] == ram
                and r["config"]["workload"] == workload and r["config"]["free_page_hint"] == hint)


def test_row_texts_are_stable_and_say_what_ran():
    row = _ok("1G", "hog", True)
    text = lv.row_text(row)
    assert "free-page-hint=on" in text and "query-migrate status completed" in text
    assert "destination   running" in text and "/tmp/kit-lab-" not in text and "<tmp>/src.qmp" in text
    assert text == lv.row_text(copy.deepcopy(row))
    setup = lv.setup_text(row)
    assert "tcg" in setup and "init_on_alloc=0" in setup and "-nodefaults" in setup
    pair = lv.pair_text([_ok("1G", "hog", False), row])
    assert pair.count("\n") == 2 and "hint on" in pair


def test_failed_row_is_shown_not_hidden():
    bad = copy.deepcopy(_ok("1G", "idle", False))
    bad.update(status="failed", stage="destination-health", error="destination console shows 'Oops'")
    assert "failed at destination-health" in lv.row_text(bad)
    med = lm.medians(ROWS + [bad])
    assert med["1G", "idle", False]["failed"] == 1
    assert "1G idle hint off" in lv.medians_text(med)


def test_compare_and_gap_tables():
    cmp = lm.compare(ROWS, COST)
    text = lv.compare_text(cmp)
    assert "fit" in text and text.count("\n") == len(cmp) + 1
    race = lm.hint_race(ROWS)
    assert all(r["normal-off"] <= 0.05 for r in race.values())        # hint off repeats
    assert "hint on" in lv.race_text(race)
    sc = lm.size_scaling(ROWS, COST)
    assert ("hog", False) in sc and "ms per GiB" in lv.scaling_text(sc)
    blocks = lm.ramblocks(ROWS, COST)
    for b in blocks.values():
        assert b["model-other-pages"] == 4096 and 0 < b["lab-other-pages"] < 1024
        assert b["model-zero-pages"] - b["model-zero-pages-no-vga"] == 4096
    dt = lm.downtime_cells(ROWS)
    assert "MiB sent while paused" in lv.downtime_text(dt)
    # every ok run, but those whose total-time QEMU reported as 0 (kit/lab/model.py)
    unreported = sum(r["status"] == "ok" and lm._time_unreported(r) for r in ROWS)
    assert len(lm.load_effect(ROWS)) == sum(c["runs"] for c in lm.medians(ROWS).values()) - unreported


def test_figures():
    cmp = lm.compare(ROWS, COST)
    for fig in (lv.overlay_figure(cmp, ROWS, "t"), lv.scaling_figure(lm.size_scaling(ROWS, COST)),
                lv.load_figure(lm.load_effect(ROWS))):
        assert fig.axes
        plt.close(fig)


def test_pv_runs_in_the_model_only():
    t = {m: lm.model_run_mode(COST, 1024, "hog", m) for m in ("original", "hint", "pv")}
    assert t["pv"]["ram"]["transferred"] <= t["hint"]["ram"]["transferred"] < t["original"]["ram"]["transferred"]
    assert "pv ms" in lv.pv_text({("1G", "hog"): t})


def test_stress_text_degrades_gracefully(tmp_path):
    assert lm.load_stress_rows(tmp_path / "nothing") == []
    assert lv.stress_text([]) == "no stress runs recorded yet (data/lab/stress/*.json)"
    row = copy.deepcopy(_ok("1G", "idle", True))
    row["config"].update(workload="stress", verify=True)
    row["verify"] = {"lost-pages": 0, "missing": 0, "stale": 0, "corrupt": 0, "duplicate": 0}
    text = lv.stress_text([row], {("1G", True): 0})
    assert "1G hint on init_on_alloc=0" in text and text.splitlines()[1].split()[-1] == "0"


def test_explorer_redraws_on_every_control():
    e = lv.LabExplorer(ROWS, COST, workload="idle", hint=True)
    pic, caption = e.image.value, e.caption.value
    assert pic[:4] == b"\x89PNG" and "idle" in caption
    e.workload.value = "hog"
    assert e.image.value != pic and "hog" in e.caption.value
    e.hint.value = False
    assert e.view["model"]["pages-skipped"] == 0
    e.ram.value = e.ram.options[-1]
    assert e.view["ram"] == e.ram.options[-1]
    e.workload.value, e.hint.value, e.ram.value = "idle", True, e.ram.options[0]
    assert e.image.value == pic and e.caption.value == caption


def _raw_cells():
    """{(ram, workload, hint, ram-mib): [QEMU's query-migrate of each ok run]}, read straight
    from data/lab/*.json (not through kit.lab.model's medians)."""
    cells = {}
    for path in sorted(lm.DATA.glob("*.json")):
        row = json.loads(path.read_text())
        c = row["config"]
        if row["status"] == "ok" and c["workload"] in ("idle", "hog"):
            key = (c["ram"], c["workload"], bool(c["free_page_hint"]), c["ram-mib"])
            cells.setdefault(key, []).append(row["query-migrate"])
    return cells


def test_exercise_verdicts_before_a_prediction():
    assert ex08.check_hog_mib(None).pending
    assert ex08.check_further_off(None).pending and ex08.check_idle_time(None).pending


def test_exercise_1_hog_mib_is_the_median_of_qemus_own_figure():
    """The median over the 2 GiB hog, hint off runs of QEMU's ``transferred`` bytes, in
    MiB. Within 10 %."""
    qm = next(v for k, v in _raw_cells().items() if k[:3] == ("2G", "hog", False))
    assert len(qm) >= 3
    mib = statistics.median(q["ram"]["transferred"] for q in qm) / (1 << 20)
    assert 1024 < mib < 2048                          # most of a 2 GiB guest the hog filled
    assert ex08.check_hog_mib(round(mib)).correct
    assert ex08.check_hog_mib(mib * 1.08).correct                  # within 10 %
    assert not ex08.check_hog_mib(mib * 1.2).correct and not ex08.check_hog_mib(mib / 2).correct


def test_exercise_2_further_off_by_a_separate_run_of_the_fitted_model():
    """Only the model can say how far off it is, so this runs it by another route than
    kit.lab.model.compare: one Migration per predicted cell (not the 1 GiB the fit used),
    on the fitted cost model, against medians of QEMU's raw query-migrate figures
    (total-time 0 means QEMU did not report it)."""
    err = {"time": [], "bytes": []}
    for (ram, workload, hint, mib), qm in _raw_cells().items():
        if ram == "1G":
            continue
        guest = Guest(pc_memory_map(mib * MiB, "pc"), COST.workload_for(workload))
        s = Migration(guest, "hint" if hint else "original", COST, track_pages=False).run().stats
        t = statistics.median(q["total-time"] for q in qm if q["total-time"])
        b = statistics.median(q["ram"]["transferred"] for q in qm)
        err["time"].append(abs(s["total-time"] / t - 1))
        err["bytes"].append(abs(s["ram"]["transferred"] / b - 1))
    assert len(err["time"]) >= 4
    time_err, bytes_err = statistics.median(err["time"]), statistics.median(err["bytes"])
    assert time_err > 1.5 * bytes_err                 # clearly apart, not a coin toss
    answer = "time" if time_err > bytes_err else "bytes"
    other = "bytes" if answer == "time" else "time"
    assert ex08.check_further_off(answer).correct and ex08.check_further_off(answer.upper()).correct
    assert not ex08.check_further_off(other).correct


def test_exercise_3_the_fitted_model_spends_the_idle_run_in_setup():
    """The fit puts the migration thread's CPU cost per page at its floor, 0: a page's
    send time is then its bytes on the wire alone, so the CPU never adds time beyond
    the wire. And the idle 1 GiB run's setup time, read from the model's figures (not
    from the breakdown the check uses), is more than half of its total."""
    assert COST.cpu_ns_per_page == 0.0 and COST.wire_bytes_per_s > 0
    fig = lm.model_figures(lm.model_run(COST, 1024, "idle", False))
    assert fig["setup-time-ms"] > 0.5 * fig["total-time-ms"]
    assert ex08.check_idle_time("setup").correct and ex08.check_idle_time("SETUP").correct
    assert not ex08.check_idle_time("wire").correct and not ex08.check_idle_time("cpu").correct
    assert ex08.check_idle_time("neither").unreadable


@pytest.mark.parametrize("cmd,expect", [
    (["/usr/bin/qemu-system-x86_64", "-kernel", "/root/.cache/x/vmlinuz-1", "-serial", "file:/tmp/kit-lab-ab12/src.console"],
     "qemu-system-x86_64 -kernel <cache>/vmlinuz-1 -serial file:<tmp>/src.console"),
])
def test_short_command(cmd, expect):
    assert lv.short_command(cmd) == expect


def _curve_row(ram, workload, hint, rep, rem):
    t = [10.0 * i for i in range(len(rem))]
    return {"status": "ok", "rep": rep,
            "config": {"ram": ram, "workload": workload, "free_page_hint": hint},
            "curve": {"t-ms": t, "status": ["setup"] + ["active"] * (len(rem) - 2) + ["completed"],
                      "remaining": [None] + rem[1:]},
            "trace": {"hint-pops-ms": [15.0, 16.0] if hint else []}}


def test_lab_curves_keep_the_points_qemu_reported():
    rows = [_curve_row("1G", "hog", False, 0, [None, 300, 200, 0]),
            _curve_row("1G", "hog", True, 0, [None, 300, 50, 0]),
            _curve_row("2G", "hog", True, 0, [None, 9, 0])]
    c = lm.lab_curves(rows, "1G", "hog", True)
    assert len(c) == 1 and c[0]["t-ms"] == [10.0, 20.0, 30.0] and c[0]["remaining"] == [300, 50, 0]
    assert c[0]["hint-pops-ms"] == [15.0, 16.0]
    assert lm.lab_curves(rows, "4G", "hog", True) == []


def test_model_curve_falls_to_zero_and_faster_with_hints():
    off = lm.model_curve(COST, 1024, "hog", False)
    on = lm.model_curve(COST, 1024, "hog", True)
    for m in (off, on):
        assert m["remaining"][-1] == 0 and all(b >= a for a, b in zip(m["t-ms"], m["t-ms"][1:]))
    # the same guest: hints can only take pages away from what is left to send
    half = off["remaining"][0] / 2
    first_below = lambda m: next(t for t, r in zip(m["t-ms"], m["remaining"]) if r < half)
    assert first_below(on) < first_below(off) and on["hints-ms"]


def test_curves_explorer_redraws_when_the_cell_changes():
    rows = [_curve_row(ram, wl, h, 0, [None, 300, 100, 0]) for ram in ("1G", "2G") for wl in ("idle", "hog")
            for h in (False, True)]
    ex = lv.CurvesExplorer(rows, COST)
    first = ex.image.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and ex.ram.options == ("1G", "2G")
    ex.ram.value = "2G"
    assert ex.image.value != first and "2G hog: 1 runs with hints off, 1 with hints on" in ex.note.value


def test_lab_progress_bar_follows_what_is_left():
    bar = lv.LabProgress()
    bar("boot", None)
    assert bar.label.value == "boot" and bar.bar.value == 0.0
    bar("migrate", 1000e6)
    bar("migrate", 250e6)
    assert bar.bar.value == pytest.approx(0.75) and "250 MB remaining" in bar.label.value
    bar("destination-health", None)
    assert bar.bar.value == 1.0
    bar.reset("hint on")
    assert bar.bar.value == 0.0 and bar.bar.description == "hint on"
