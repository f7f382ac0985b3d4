"""The recorded lab matrix (data/lab/) and the tcg-loopback preset fitted on it."""
import subprocess
import sys

import pytest

from kit.costmodel import get_preset
from kit.guest import get_workload
from kit.lab.model import DATA, compare, fit_tcg_loopback, load_rows, medians, model_run

ROWS = load_rows(DATA)
CELLS = [(ram, wl, hint) for ram in ("1G", "2G") for wl in ("idle", "hog") for hint in (False, True)]


def test_recorded_matrix_is_complete_and_honest():
    """1 and 2 GiB, idle and hog, hint on and off, 3 repetitions each; every row says
    what ran (QEMU, kernel, command lines) and, if it failed, where and why."""
    med = medians(ROWS)
    for cell in CELLS:
        assert cell in med, f"data/lab/ has no row for {cell}"
        assert med[cell]["runs"] + med[cell]["failed"] >= 3, cell
    for r in ROWS:
        assert r["schema"] == "kit-lab-run/1"
        assert r["qemu"]["version"]["major"] >= 4 and r["guest"]["kernel-package"].startswith("linux-image")
        assert "-incoming" in r["command-lines"]["destination"]
        assert "init_on_alloc=" in r["guest"]["append"]
        if r["status"] == "ok":
            assert r["query-migrate"]["status"] == "completed"
            assert r["destination"]["status"] == "running" and not r["destination"]["panic"]
        else:
            assert r["error"] and r["stage"] != "done"


def test_recorded_hint_saves_the_hogs_bytes():
    med = medians(ROWS)
    for ram in ("1G", "2G"):
        off, on = med[ram, "hog", False], med[ram, "hog", True]
        assert on["transferred-kb"] < 0.6 * off["transferred-kb"], ram
        assert off["pages-skipped"] == 0 and on["pages-skipped"] > 0


def test_stored_tcg_loopback_is_the_fit_of_data_lab():
    fitted = fit_tcg_loopback(ROWS)
    stored = get_preset("tcg-loopback")
    for name in ("wire_bytes_per_s", "cpu_ns_per_page", "setup_ms"):
        assert getattr(fitted, name) == pytest.approx(getattr(stored, name), rel=0.03), name
    # the hint fit is a bisection over a step-like curve: a looser match
    assert fitted.hint_ns_per_block == pytest.approx(stored.hint_ns_per_block, rel=0.25)
    for k in ("boot_footprint", "boot_stale_free"):
        assert fitted.guest_sizes[k] == pytest.approx(stored.guest_sizes[k], rel=0.02), k
    assert fitted.guest_sizes["hog_fraction"] == pytest.approx(stored.guest_sizes["hog_fraction"], abs=0.01)


def test_compare_reproduces_the_fitted_cells_and_tags_predictions():
    rows = compare(ROWS)
    assert {(r["ram"], r["workload"], r["hint"]) for r in rows} >= set(CELLS)
    for r in rows:
        assert r["role"] == ("fit" if r["ram"] == "1G" else "predicted")
        if r["role"] == "fit" and not r["hint"]:
            assert r["model"]["transferred-kb"] == pytest.approx(r["lab"]["transferred-kb"], rel=0.01)
            # the wire rate is solved on the hog's time; the CPU cost per page on the idle
            # guest's, unless it hits its floor of 0 (then the model can only be slower)
            t_model, t_lab = r["model"]["total-time-ms"], r["lab"]["total-time-ms"]
            if r["workload"] == "hog" or get_preset("tcg-loopback").cpu_ns_per_page > 0:
                assert t_model == pytest.approx(t_lab, rel=0.05), r["workload"]
            else:
                assert t_lab <= t_model <= 1.15 * t_lab


def test_medians_ignore_failed_rows_but_count_them():
    base = {"config": {"ram": "1G", "workload": "idle", "free_page_hint": False, "ram-mib": 1024},
            "guest": {"ready-line": "KIT-READY workload=idle memfree_kib=900000"}}
    ok = [dict(base, status="ok", derived={"total-time-ms": t, "transferred-kb": 10}) for t in (100, 300, 200)]
    bad = dict(base, status="failed", derived={"total-time-ms": 9999})
    cell = medians(ok + [bad])["1G", "idle", False]
    assert cell["runs"] == 3 and cell["failed"] == 1
    assert cell["total-time-ms"] == 200 and cell["total-time-ms-range"] == (100, 300)
    assert cell["memfree-kib"] == 900000


def test_preset_uses_the_lab_guest_image():
    lab = get_preset("tcg-loopback")
    w = lab.workload_for("hog")
    assert w.boot_footprint == lab.guest_sizes["boot_footprint"]
    assert w.hog_fraction == lab.guest_sizes["hog_fraction"]
    assert lab.workload_for("idle").hog_fraction == 0.0          # idle does not start hogging
    # the seed's testbed has no guest image of its own: the hog keeps its own hog_fraction
    assert get_preset("seed-2016").guest_sizes == {}
    assert get_preset("seed-2016").workload_for("hog").hog_fraction == get_workload("hog").hog_fraction
    hog_on = model_run(lab, 1024, "hog", True)
    hog_off = model_run(lab, 1024, "hog", False)
    assert hog_on["ram"]["transferred"] < 0.5 * hog_off["ram"]["transferred"]


def test_cli_predicts_a_lab_run():
    out = subprocess.run([sys.executable, "-m", "kit", "migrate", "--preset", "tcg-loopback",
                          "--ram", "4G", "--workload", "hog", "--mode", "hint"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "status: completed" in out.stdout and "free page hint:" in out.stdout
