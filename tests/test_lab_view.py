"""Notebook 08's display module (kit/viz/lab.py), its exercises (kit/exercises/ex08.py) and
the helpers appended to kit/lab/model.py for it.  Recorded rows only: no QEMU runs here."""
import copy

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from kit.exercises import ex08
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


def test_exercises_answers_come_from_the_data():
    med = lm.medians(ROWS)
    assert ex08.reveal(1) == round(med["2G", "hog", False]["transferred-kb"] / 1024)
    assert ex08.check_hog_mib(ex08.reveal(1)).correct
    assert not ex08.check_hog_mib(ex08.reveal(1) * 2).correct
    assert ex08.check_hog_mib(None).pending
    assert ex08.reveal(2) in ("time", "bytes") and ex08.check_further_off(ex08.reveal(2)).correct
    assert ex08.reveal(3) in ("wire", "cpu") and ex08.check_idle_time(ex08.reveal(3)).correct
    assert not ex08.check_idle_time("neither").correct


@pytest.mark.parametrize("cmd,expect", [
    (["/usr/bin/qemu-system-x86_64", "-kernel", "/root/.cache/x/vmlinuz-1", "-serial", "file:/tmp/kit-lab-ab12/src.console"],
     "qemu-system-x86_64 -kernel <cache>/vmlinuz-1 -serial file:<tmp>/src.console"),
])
def test_short_command(cmd, expect):
    assert lv.short_command(cmd) == expect
