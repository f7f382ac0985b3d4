"""The recorded lab matrix (data/lab/) and the tcg-loopback preset fitted on it."""
import subprocess
import sys

import pytest

from kit.costmodel import get_preset
from kit.guest import get_workload
from kit.lab.model import CURVES, DATA, compare, fit_tcg_loopback, hint_timing, load_rows, medians, model_run

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


def test_stored_tcg_loopback_is_the_fit_of_the_curves():
    """The stored preset is exactly what the fit gives on data/lab/curves/ (a fixed point)."""
    fitted = fit_tcg_loopback(load_rows(CURVES))
    stored = get_preset("tcg-loopback")
    for name in ("wire_bytes_per_s", "cpu_ns_per_page", "setup_ms", "setup_ns_per_page", "hint_start_ms",
                 "hint_ns_per_block", "hint_drain_chance", "hint_drain_chance_busy"):
        assert getattr(fitted, name) == pytest.approx(getattr(stored, name), rel=1e-6), name
    assert fitted.guest_sizes == stored.guest_sizes


def test_the_older_matrix_still_fits_with_its_own_hint_cost():
    """data/lab/ (recorded before the trace existed) fits the hint cost from pages sent in full,
    with no start latency; its other figures stay close to the curves' fit (same QEMU, guest)."""
    fitted = fit_tcg_loopback(ROWS)
    assert fitted.hint_start_ms == 0.0 and fitted.hint_ns_per_block > 1e5
    assert fitted.hint_drain_chance is None and fitted.guest_sizes["hog_unmerged_blocks"] == 0
    assert fitted.setup_ns_per_page == pytest.approx(get_preset("tcg-loopback").setup_ns_per_page, rel=0.1)


def test_compare_reproduces_the_fitted_cells_and_tags_predictions():
    rows = compare(load_rows(CURVES))
    assert {(r["ram"], r["workload"], r["hint"]) for r in rows} >= {
        (ram, wl, h) for ram in ("1G", "2G", "4G", "8G") for wl in ("idle", "hog") for h in (False, True)}
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


def _trace_row(ram, hint, ends, begins, pops, status="ok"):
    return {"status": status, "config": {"ram": ram, "workload": "hog", "free_page_hint": hint},
            "trace": {"bitmap-sync-end-ms": ends, "bitmap-sync-start-ms": begins, "hint-pops-ms": pops}}


def test_hint_timing_reads_the_gaps_between_iterations_from_the_trace():
    from kit.lab.model import hint_timing
    burst = lambda t: [t + 0.01 * i for i in range(5)]
    rows = [
        # round 1 from 100 ms (the first sync's end) to 400 ms (the next sync's start).  Pops,
        # after the start: 2 and 2.5 (the cmd id, then a hint that waits for the mutex),
        # one at 52 and at 102, then 5 together at 152 (a drain); 410 is after STOP
        _trace_row("1G", True, [100.0, 420.0], [2.0, 400.0],
                   [102.0, 102.5, 152.0, 202.0] + burst(252.0) + [410.0]),
        # round from 50 ms: the cmd id at 5, then a drain at 55
        _trace_row("1G", True, [50.0], [1.0], [55.0] + burst(105.0)),
        _trace_row("1G", False, [50.0], [1.0], [60.0, 70.0]),            # hint off: not counted
        _trace_row("2G", True, [50.0], [1.0], [60.0, 70.0]),             # another size
        _trace_row("1G", True, [50.0], [1.0], [60.0, 70.0], status="failed"),
    ]
    t = hint_timing(rows, "1G")
    assert t["runs"] == 2
    assert t["start-ms"] == pytest.approx(3.5) and t["start-ms-range"] == pytest.approx((2.0, 5.0))
    # single pops 50 ms apart (2 -> 52 -> 102): the period between two gaps
    assert t["period-ms"] == pytest.approx(50.0)
    # gaps around 50, 100, 150 ms in the first run (one drain), around 50 ms in the second (a drain)
    assert (t["gaps"], t["drains"]) == (4, 2) and t["drain-chance"] == pytest.approx(0.5)
    # pace bounds: first run 152.04 ms for 8 hints after the cmd id (19.005 ms); second
    # run 55.04 ms for 5 (11.008 ms): the tighter one
    assert t["ns-per-block"] == pytest.approx(11.008e6)
    assert hint_timing(rows, "8G")["runs"] == 0


def test_prediction_errors_take_the_90th_percentile_of_predicted_cells_only():
    from kit.lab.model import prediction_errors

    def cell(role, hint, lab_t, model_t, lab_kb=100.0, model_kb=100.0):
        return {"role": role, "hint": hint, "lab": {"total-time-ms": lab_t, "transferred-kb": lab_kb},
                "lab-range": {"total-time-ms": (lab_t * 0.9, lab_t * 1.1), "transferred-kb": (lab_kb, lab_kb)},
                "model": {"total-time-ms": model_t, "transferred-kb": model_kb}}
    cmp = [cell("fit", True, 100, 500)] + [cell("predicted", True, 100, 100 + e) for e in (0, 10, 20, 30, 40)]
    e = prediction_errors(cmp)["on"]
    # errors 0, .1, .2, .3, .4: the 90th percentile (linear between order statistics) is 0.36
    assert e["cells"] == 5 and e["p90-time"] == pytest.approx(0.36) and e["p90-bytes"] == 0
    assert e["p90-spread-time"] == pytest.approx(0.2)
    assert "off" not in prediction_errors(cmp)


# --------------------------------------------------------------------------- data/lab/curves (kit-lab-run/2)

CURVE_ROWS = load_rows(CURVES)
CURVE_CELLS = [(ram, wl, hint) for ram in ("1G", "2G", "4G", "8G") for wl in ("idle", "hog")
               for hint in (False, True)]


def test_recorded_curves_are_complete_honest_and_machine_free():
    med = medians(CURVE_ROWS)
    for cell in CURVE_CELLS:
        assert cell in med and med[cell]["runs"] + med[cell]["failed"] >= 3, cell
    for r in CURVE_ROWS:
        assert r["schema"] == "kit-lab-run/2"
        text = str(r["command-lines"])
        assert "<tmp>/" in text and "<cache>/" in text and "/tmp/kit-lab" not in text and "/.cache/" not in text
        if r["status"] != "ok":
            continue
        c = r["curve"]
        assert c["status"][-1] == "completed" and all(b > a for a, b in zip(c["t-ms"], c["t-ms"][1:]))
        for f in ("transferred", "normal", "duplicate", "dirty-sync-count"):
            vals = [v for v in c[f] if v is not None]
            assert all(b >= a for a, b in zip(vals, vals[1:])), (r["file"], f)
        assert r["trace"]["bitmap-sync-end-ms"]


def test_the_trace_counts_the_hints():
    """The busiest virtqueue's pops are the hints: about one per 4 MiB block skipped."""
    for r in CURVE_ROWS:
        if r["status"] != "ok" or not r["config"]["free_page_hint"] or r["config"]["workload"] != "hog":
            continue
        pops, blocks = len(r["trace"]["hint-pops-ms"]), r["derived"]["pages-skipped"] / 1024
        assert 0.9 * blocks <= pops <= 1.5 * blocks + 16, (r["file"], pops, blocks)


def test_stored_tcg_loopback_hint_timing_comes_from_the_traces():
    t = hint_timing(CURVE_ROWS, "1G")
    stored = get_preset("tcg-loopback")
    assert t["runs"] >= 6
    assert stored.hint_start_ms == float(f"{t['start-ms']:.3g}")
    assert stored.hint_drain_chance == float(f"{t['drain-chance']:.3g}")


def _pace_bound_by_hand(rows):
    """The fewest ms per block any pop shows: the k-th pop after the cmd id (k >= 2) at t ms
    after the first sync ended bounds the guest's pace by t / k."""
    best = float("inf")
    for r in rows:
        tr = r["trace"]
        r0, r1 = tr["bitmap-sync-end-ms"][0], tr["bitmap-sync-start-ms"][1]
        pops = [t - r0 for t in tr["hint-pops-ms"] if r0 <= t < r1]
        best = min([best] + [t / k for k, t in enumerate(pops) if k >= 2])
    return best * 1e6


def test_stored_hint_pace_is_the_tightest_bound_and_the_bandwidth_limited_runs_give_it():
    from kit.lab.model import PACE
    pace = load_rows(PACE)
    assert pace and all(r["status"] == "ok" and r["config"]["ram"] == "1G" and r["config"]["free_page_hint"]
                        and 0 < r["config"]["bandwidth"] <= 50 * 2**20 for r in pace)
    unlimited = [r for r in CURVE_ROWS if r["status"] == "ok" and r["config"]["ram"] == "1G"
                 and r["config"]["free_page_hint"] and r["config"]["workload"] in ("idle", "hog")]
    # a migration thread that sleeps between short iterations lets the iothread take hints
    # sooner: the limited runs bound the pace more than twice as tightly
    assert _pace_bound_by_hand(pace) < 0.5 * _pace_bound_by_hand(unlimited)
    stored = get_preset("tcg-loopback").hint_ns_per_block
    assert stored == float(f"{_pace_bound_by_hand(pace + unlimited):.3g}")


def test_pops_per_gap_counts_each_gap_of_the_first_round():
    from kit.lab.model import pops_per_gap
    burst = lambda t, n: [t + 0.01 * i for i in range(n)]
    # round from 100 ms; single pops 50 ms apart set the period; a drain of 6 near 150 ms
    # after the start; a pop at 410 ms comes after the next sync started and is not counted
    row = _trace_row("8G", True, [100.0, 420.0], [2.0, 400.0],
                     [102.0, 152.0, 202.0] + burst(252.0, 6) + [302.0, 410.0])
    row["rep"], row["derived"] = 4, {"transferred-kb": 1234}
    other = dict(_trace_row("8G", False, [100.0], [2.0], [150.0]), rep=0)
    got = pops_per_gap([row, other], "8G")
    # gaps at 50, 100, 150 and 200 ms after the round's start (2 ms, the cmd id, is before gap 1)
    assert got == [{"rep": 4, "pops": [1, 1, 6, 1], "transferred-kb": 1234}]


def test_rate_conditioned_tells_the_model_each_runs_own_rate():
    from kit.lab.model import model_figures, rate_conditioned, send_rates
    rows = load_rows(CURVES)
    tcg = get_preset("tcg-loopback")
    runs = rate_conditioned(rows, tcg)
    hog_on = [r for r in rows if r["config"]["workload"] == "hog" and r["config"]["free_page_hint"]
              and r["status"] == "ok"]
    assert len(runs) == len(hog_on) == 12
    # one run by hand: the 8 GiB run 2, with the rate its own curve shows
    rate = next(s["early-mb-s"] for s in send_rates(rows, workloads=("hog",))
                if s["hint"] and (s["ram"], s["rep"]) == ("8G", 2))
    own = model_figures(model_run(tcg.with_(wire_bytes_per_s=rate * 1e6), 8192, "hog", True))
    r = next(r for r in runs if (r["ram"], r["rep"]) == ("8G", 2))
    assert r["own-rate-kb"] == own["transferred-kb"]
    assert r["model-kb"] == model_figures(model_run(tcg, 8192, "hog", True))["transferred-kb"]
    # the model's race: a migration thread that sends faster gets through more of the hog's
    # pages before the hints land, so it sends more with every faster rate
    sent = [model_figures(model_run(tcg.with_(wire_bytes_per_s=w), 4096, "hog", True))["transferred-kb"]
            for w in (300e6, 600e6, 1200e6)]
    assert sent[0] < sent[1] < sent[2]


def test_a_busy_loop_beside_a_run_does_not_bring_the_fast_rate():
    from kit.lab.model import send_rates
    rows = load_rows(DATA / "busy-loop")
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    rates = send_rates(rows, workloads=("hog",))
    assert len(rates) == 4
    # the fast rate of hint-on hog runs is 900-1,300 MB/s; with or without the loop these stay
    # near the hint-off rate (330-435 MB/s in curves/)
    assert all(r["whole-mb-s"] < 600 for r in rates)


def _curve_row(ram, workload, hint, rep, started, normal, setup=100):
    """A run whose curve sends ``normal`` pages per 100 ms after a setup of ``setup`` ms."""
    ts = [setup + 50.0 * i for i in range(9)]
    return {"status": "ok", "rep": rep, "started": started,
            "config": {"ram": ram, "ram-mib": 1024, "workload": workload, "free_page_hint": hint},
            "derived": {"setup-time-ms": setup, "normal-pages": normal * 4},
            "trace": {"bitmap-sync-end-ms": [setup]},
            "curve": {"t-ms": ts, "status": ["active"] * 9, "normal": [normal * i // 2 for i in range(9)]}}


def test_after_previous_pairs_each_run_with_the_one_before_it_in_time():
    from kit.lab.model import after_previous
    rows = [_curve_row("1G", "hog", True, 0, "2026-12-02T00:00:30", 25600),     # 1,048.6 MB/s
            _curve_row("1G", "idle", False, 0, "2026-12-02T00:00:00", 1000),
            _curve_row("1G", "hog", False, 0, "2026-12-02T00:00:10", 10000)]   # 409.6 MB/s
    got = after_previous(rows)
    # the hog runs, each beside the run that started just before it (rows come unsorted)
    assert [(g["hint"], g["previous"]) for g in got] == [(False, ("1G", "idle", False)), (True, ("1G", "hog", False))]
    assert got[0]["early-mb-s"] == pytest.approx(10000 * 4096 / 0.1 / 1e6)
    assert got[1]["previous-full-mib"] == pytest.approx(10000 * 4 * 4096 / 2**20)


def test_the_destinations_first_touch_sets_the_send_rate():
    """The recorded A/B runs behind the README's claims (data/lab/dest-prealloc, freed-memory)."""
    from kit.lab.model import send_rates
    pre = load_rows(DATA / "dest-prealloc")
    assert len(pre) == 12 and all(r["status"] == "ok" for r in pre)
    by = {}
    for r in pre:
        c = r["config"]
        by.setdefault((c["free_page_hint"], c["dest_prealloc"]), []).append(r)
    rate = lambda rows: sorted(s["whole-mb-s"] for s in send_rates(rows, workloads=("hog",)))
    plain_off, pre_off = rate(by[(False, False)]), rate(by[(False, True)])
    assert len(plain_off) == len(pre_off) == 3
    # with its RAM touched first, the destination takes pages at least 2.5 times as fast
    assert min(pre_off) > 2.5 * max(plain_off)
    assert all("-mem-prealloc" in r["command-lines"]["destination"] for r in by[(False, True)])
    assert not any("-mem-prealloc" in r["command-lines"]["source"] for r in pre)
    # memory freed a moment ago is cheaper to touch than memory freed 90 s ago
    right = load_rows(DATA / "freed-memory", "*-right-after-16g-freed.json")
    later = load_rows(DATA / "freed-memory", "*-90s-after-16g-freed.json")
    assert len(right) == len(later) == 2
    assert min(rate(right)) > max(rate(later))


def test_with_settled_replaces_the_cells_measured_again():
    from kit.lab.model import SETTLED, send_rates, with_settled
    row = lambda ram, wl, hint, t: {"started": t, "config": {"ram": ram, "workload": wl, "free_page_hint": hint}}
    old = [row("2G", "hog", True, "b"), row("2G", "hog", False, "a"), row("4G", "hog", True, "c")]
    new = [row("2G", "hog", True, "z")]
    got = with_settled(old, new)
    assert [(r["config"]["ram"], r["config"]["free_page_hint"], r["started"]) for r in got] == [
        ("2G", False, "a"), ("4G", True, "c"), ("2G", True, "z")]
    # the recorded settled runs: idle and hog with hints at 2, 4 and 8 GiB, 3 each, 40 s before
    # each but the first of a matrix, and no hog run at the fast rate
    settled = load_rows(SETTLED)
    assert sorted({(r["config"]["ram"], r["config"]["workload"], r["config"]["free_page_hint"])
                   for r in settled}) == [(ram, wl, True) for ram in ("2G", "4G", "8G") for wl in ("hog", "idle")]
    assert len(settled) == 18 and sorted(r["pause-before-s"] for r in settled) == [0.0] * 3 + [40.0] * 15
    assert all(s["early-mb-s"] < 600 for s in send_rates(settled, workloads=("hog",)))
