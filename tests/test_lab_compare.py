"""QEMU 7.2 beside 10.0: how kit.lab.compare groups recorded rows (crafted rows, answers by hand)."""
import pytest

from kit.lab import compare as lc


def _stress(qemu, wa, ram, hint, lost, status="ok", unplaced=0, setup=5):
    return {"status": status, "started": f"{qemu}{wa}{ram}{hint}",
            "config": {"ram": ram, "ram-mib": int(ram[:-1]) * 1024, "free_page_hint": hint, "workload": "stress"},
            "qemu": {"package": "Debian 1:10.0.2+ds-2" if qemu == "10.0" else "Debian 1:7.2+dfsg-7",
                     "tcg-dirty-sync-workaround": {"on": wa}},
            "verdict": {"lost-writes": lost}, "derived": {"setup-time-ms": setup},
            "src-dst-diff": {"classes": {"unplaced": unplaced}}}


def test_qemu_of_reads_the_package_or_the_version():
    assert lc.qemu_of(_stress("7.2", True, "1G", False, 0)) == "7.2"
    assert lc.qemu_of(_stress("10.0", False, "1G", False, 0)) == "10.0"
    assert lc.qemu_of({"qemu": {"version": {"major": 9, "minor": 2}}}) == "9.2"


def test_tcg_bug_summary_counts_runs_that_lose_and_destinations_that_fail():
    rows = [_stress("7.2", False, "1G", False, 15, status="failed", unplaced=14),
            _stress("7.2", False, "2G", True, 1, status="failed", unplaced=6),
            _stress("7.2", True, "1G", False, 0),
            _stress("10.0", False, "1G", True, 0, unplaced=262),
            _stress("10.0", False, "2G", True, 0)]
    s = lc.tcg_bug_summary(rows)
    assert s["7.2", False] == {"runs": 2, "runs-losing": 2, "lost-writes": 16, "unhealthy": 2, "unplaced": 20}
    assert s["7.2", True] == {"runs": 1, "runs-losing": 0, "lost-writes": 0, "unhealthy": 0, "unplaced": 0}
    assert s["10.0", False] == {"runs": 2, "runs-losing": 0, "lost-writes": 0, "unhealthy": 0, "unplaced": 262}
    # cells come 7.2 before 10.0, the workaround first, then by RAM and hint
    assert list(lc.tcg_bug_cells(rows)) == [("7.2", True, "1G", False), ("7.2", False, "1G", False),
                                           ("7.2", False, "2G", True), ("10.0", False, "1G", True),
                                           ("10.0", False, "2G", True)]


def test_setup_cells_group_by_qemu_workaround_and_size():
    rows = [_stress("7.2", True, "1G", False, 0, setup=700), _stress("7.2", True, "1G", True, 0, setup=800),
            _stress("10.0", False, "1G", False, 0, setup=2)]
    assert lc.setup_cells(rows) == {("7.2", True, "1G"): [700, 800], ("10.0", False, "1G"): [2]}


def _curve_row(hint, remaining, transferred, syncs, workload="hog"):
    return {"status": "ok", "config": {"ram": "4G", "workload": workload, "free_page_hint": hint},
            "curve": {"t-ms": [10.0 * i for i in range(len(remaining))], "status": ["active"] * len(remaining),
                      "remaining": remaining, "transferred": transferred, "dirty-sync-count": syncs}}


def test_first_pass_drops_find_the_biggest_fall_before_the_second_sync():
    rows = [_curve_row(True, [900, 880, 300, 290, 10], [0, 20, 40, 50, 900], [1, 1, 1, 1, 2]),
            _curve_row(False, [900, 100], [0, 800], [1, 1])]                  # hint off: not counted
    d = lc.first_pass_drops(rows)
    # falls in the first pass: 20, 580, 10; the 280 after the second sync does not count
    assert d == [{"ram": "4G", "workload": "hog", "drop": 580, "sent": 20, "t-ms": 20.0}]


def test_both_medians_pairs_the_cells_both_qemus_ran():
    def timing(ram, hint, total, setup, kb):
        return {"status": "ok", "started": str(total),
                "config": {"ram": ram, "ram-mib": 1024, "workload": "hog", "free_page_hint": hint},
                "derived": {"total-time-ms": total, "setup-time-ms": setup, "transferred-kb": kb,
                            "normal-pages": 1, "zero-pages": 1, "pages-sent": 2, "pages-skipped": 0,
                            "downtime-ms": 1}}
    a = [timing("1G", True, 1000, 600, 100), timing("1G", True, 1200, 700, 140), timing("2G", True, 5, 1, 1)]
    b = [timing("1G", True, 400, 2, 150)]
    both = lc.both_medians(a, b)
    assert len(both) == 1 and both[0]["ram"] == "1G"
    assert both[0]["7.2", "total-time-ms"] == 1100 and both[0]["10.0", "total-time-ms"] == 400
    assert lc.after_setup_ms(both[0], "7.2") == pytest.approx(1100 - 650)
