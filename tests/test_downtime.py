"""The switch-over rule (kit/downtime.py) and its widget (kit/viz/downtime_view.py)."""
import pytest

from kit import downtime as dt
from kit.errors import KitError
from kit.scenario import Scenario
from kit.units import TARGET_PAGE_SIZE
from kit.viz import downtime_view as dv

DIRTYING = Scenario(ram="1G", workload="dirtying")


@pytest.mark.parametrize("mode", ["original", "pv"])
@pytest.mark.parametrize("limit", [50, 300])
def test_the_rule_stops_the_guest_at_the_first_check_under_the_line(mode, limit):
    r = dt.switch_over(dt.with_limit(DIRTYING.with_(mode=mode), limit))
    assert r["status"] == "completed" and r["limit-ms"] == limit
    checks = r["checks"]
    assert checks[-1]["switch"] and not any(c["switch"] for c in checks[:-1])
    last = checks[-1]
    # what the rule compares: pages still set (4 KiB each) against bandwidth x limit
    assert last["pending"] < last["max-size"]
    assert last["max-size"] == pytest.approx(last["bandwidth"] * limit / 1e3)
    assert last["pending"] % TARGET_PAGE_SIZE == 0
    # the pause stays under the limit (plus the final sync's few ms)
    assert r["downtime-ms"] <= limit + 5


def test_pv_pauses_near_the_limit_because_only_full_pages_are_pending():
    pv = dt.switch_over(DIRTYING.with_(mode="pv"))
    orig = dt.switch_over(DIRTYING.with_(mode="original"))
    # pv: every pending page is a full page, so pending / bandwidth predicts the pause
    assert pv["downtime-ms"] == pytest.approx(pv["predicted-ms"], rel=0.05)
    # and pending fell by about 50 ms of wire time per check: it lands within one step of the line
    assert pv["max-size"] - pv["pending"] <= pv["step"]
    assert pv["downtime-ms"] > 0.8 * 300 - 50
    # the original's last pages include zero pages: pending overstates its pause
    assert orig["downtime-ms"] < orig["predicted-ms"]
    assert orig["downtime-ms"] < pv["downtime-ms"]


def test_the_original_pauses_near_the_limit_too_when_its_last_pages_are_full():
    hog = dt.switch_over(Scenario(ram="1G", workload="hog", mode="original"))
    assert hog["downtime-ms"] > 0.6 * hog["limit-ms"]


def test_a_lower_limit_lowers_pv_downtime_and_costs_a_little_total_time():
    sw = dt.sweep(DIRTYING, (20, 300))
    for mode in ("original", "pv"):
        assert sw[mode]["status"] == ["completed", "completed"]
        assert sw[mode]["downtime-ms"][0] <= 20 + 5
    assert sw["pv"]["downtime-ms"][0] < sw["pv"]["downtime-ms"][1]
    assert sw["pv"]["total-time-ms"][0] >= sw["pv"]["total-time-ms"][1]
    # at both limits the RFC's total time is the shorter
    assert all(p < o for p, o in zip(sw["pv"]["total-time-ms"], sw["original"]["total-time-ms"]))


def test_with_limit_changes_only_the_limit():
    s = dt.with_limit(DIRTYING, 120)
    assert s.cost.downtime_limit_ms == 120.0
    assert s.with_(cost=DIRTYING.cost) == DIRTYING
    with pytest.raises(KitError):
        dt.with_limit(DIRTYING, 0)


def test_switch_over_text_names_every_run():
    runs = {m: dt.switch_over(DIRTYING.with_(mode=m)) for m in ("original", "pv")}
    text = dt.switch_over_text(runs)
    assert "original" in text and "pv" in text and "max_size" in text
    assert f"{runs['pv']['downtime-ms']:>8}" in text.splitlines()[-1]


def test_explorer_redraws_on_each_control():
    e = dv.DowntimeExplorer(limits=(50, 300))
    assert set(e.point) == {"original", "pv"}
    pic, cap = e.image.value, e.caption.value
    e.limit.value = 50
    assert e.image.value != pic and e.caption.value != cap and "50 ms" in e.caption.value
    assert e.point["pv"][0] <= 55
    e.hint.value = True
    assert set(e.point) == {"original", "pv", "hint"}
    assert e.caption.value.count("<tr>") == 4            # header + one row per mode
    e.hint.value = False
    assert e.caption.value.count("<tr>") == 3
