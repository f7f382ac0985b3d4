"""The stored seed-2016 numbers are the fit, and the fit reproduces the seed."""
import pytest

from kit.calibrate import fit_seed_2016
from kit.costmodel import get_preset
from kit.guest import get_workload


@pytest.mark.slow
def test_stored_preset_is_a_fixed_point_of_the_fit():
    cost, wl = fit_seed_2016()
    stored = get_preset("seed-2016")
    for name in ("cpu_ns_per_page", "setup_ms", "dirty_log_ns_per_backed_page",
                 "guest_walk_ns_per_free_page", "bitmap_transfer_ns_per_byte"):
        assert getattr(cost, name) == pytest.approx(getattr(stored, name), rel=0.03), name
    for name in ("boot_footprint", "boot_stale_free"):
        assert getattr(wl["idle"], name) == pytest.approx(getattr(get_workload("idle"), name), rel=0.01)
    assert wl["hog"].hog_fraction == pytest.approx(get_workload("hog").hog_fraction, abs=0.002)


@pytest.mark.parametrize("preset", ["seed-2016", "tcg-loopback"])
def test_every_parameter_says_where_it_comes_from(preset):
    cm = get_preset(preset)
    fields = [f for f in cm.to_dict() if f not in ("name", "sources", "guest_sizes")]
    fields += [f"guest_sizes.{k}" for k in cm.guest_sizes]
    assert sorted(cm.sources) == sorted(fields)
    assert all(isinstance(v, str) and len(v) > 10 for v in cm.sources.values())
