"""Device writes: DMA into fresh page-cache pages, and what each way of skipping free pages does with it.

The expected answers are derived without the migration's bitmaps: which pages a device filled
and when (the guest's ``dma_history``), the times of the guest's snapshot and of the filter (the
timeline), and a page-by-page comparison of the destination with the source.
"""
import io
import json
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from kit import dma
from kit.cli import main
from kit.costmodel import get_preset
from kit.dirty import DirtyMemory
from kit.errors import KitError, RateError, UnknownNameError
from kit.guest import get_workload
from kit.memmap import MACHINES, pfn_to_ram_page
from kit.scenario import Scenario, build, run
from kit.units import MiB

from convergence import slower_than_the_link


def lost_pages(m) -> np.ndarray:
    """Ram pages the guest uses whose destination copy differs from the source (own comparison)."""
    mem = m.guest.memory
    src = mem.to_ram_order(mem.version)
    used = ~mem.to_ram_order(m.guest.buddy.free)
    return np.flatnonzero(used & (m.dest_version[: len(src)] != src))


def filled_in_window(m) -> np.ndarray:
    """Ram pages the device filled after the guest's snapshot and no later than the filter."""
    t = {}
    for rec in m.timeline:
        t.setdefault(rec["kind"], rec["t"])
    frames = [f for when, f in m.guest.dma_history if t["guest-snapshot"] < when <= t["filter"]]
    frames = np.concatenate(frames) if frames else np.zeros(0, np.int64)
    return np.sort(pfn_to_ram_page(m.mm, frames))


# -- generated guests -------------------------------------------------------------------------

@st.composite
def scenarios(draw):
    """A guest that converges, reading a disk at a rate the link outruns (with the writes of its
    workload), migrated with a drawn walk cost, so a drawn wait."""
    ram = draw(st.sampled_from(["64M", "200M", "512M"]))
    machine = draw(st.sampled_from(MACHINES))
    base = draw(st.sampled_from(["idle", "hog", "dirtying"]))
    wire = draw(st.sampled_from([1.2e9, 1.2e10]))
    cost = get_preset("seed-2016").with_(
        name="prop", wire_bytes_per_s=wire, cpu_ns_per_page=draw(st.sampled_from([0.0, 200.0])),
        guest_walk_ns_per_free_page=draw(st.sampled_from([10.0, 100.0, 1000.0])))
    w = get_workload(base)
    if base == "dirtying":
        dirty, churn = draw(st.sampled_from(slower_than_the_link(cost)))
        w = w.with_(name="prop", working_set=16 * MiB, dirty_rate=dirty / 2, churn_rate=churn / 2)
    mib_s = draw(st.sampled_from([2.0, 16.0, 64.0]))
    return dict(ram=ram, machine=machine, workload=w, cost=cost, seed=draw(st.integers(0, 2**16)),
                dma_mib_s=mib_s, verify=True, max_time_s=120)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.sampled_from(["overwrite", "and"]))
def test_the_rfc_filter_loses_exactly_the_pages_a_device_filled_during_the_wait(kw, how):
    m = build(Scenario(mode="pv", dma_writer="emulated", rfc_filter=how, **kw))
    r = m.run()
    assert r["status"] == "completed", r.stats.get("stall")
    expected = filled_in_window(m)
    lost = lost_pages(m)
    assert np.array_equal(lost, expected)
    assert r["verify"]["lost-pages"] == r["verify"]["lost-device-written-pages"] == len(expected)
    # and it is not an empty claim: the window holds rate x length pages, give or take one,
    # unless the guest's free memory ran out (a churning guest can take it all: no read then)
    window = dma.window_s(m.timeline)
    if kw["workload"].churn_rate == 0:
        assert m.guest.buddy.nr_free_pages > 0
        assert len(expected) >= int(kw["dma_mib_s"] * 256 * window) - 1


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.sampled_from([("pv", "vhost", "overwrite"), ("pv", "emulated", "migration-bitmap"),
                                     ("pv", "vhost", "migration-bitmap"), ("hint", "emulated", "overwrite"),
                                     ("hint", "vhost", "overwrite"), ("original", "emulated", "overwrite")]))
def test_vhost_hinting_and_the_repair_lose_no_page_a_device_or_a_vcpu_wrote(kw, case):
    mode, writer, how = case
    m = build(Scenario(mode=mode, dma_writer=writer, rfc_filter=how, **kw))
    r = m.run()
    assert r["status"] == "completed", r.stats.get("stall")
    assert len(lost_pages(m)) == 0
    assert r["verify"]["lost-pages"] == 0
    assert r["ram"]["remaining"] == 0
    assert r["device-writes"]["pages"] == sum(len(f) for _, f in m.guest.dma_history)


# -- the candidates, one by one ---------------------------------------------------------------

def test_and_gives_the_very_bitmap_the_overwrite_gives():
    def dirty_after_filter(how):
        m = build(dma.disk_reader(64, rfc_filter=how, walk_ns=100, ram="256M"))
        while m._plan[0] != "migration_bitmap_sync":
            m.step()
        return m.dirty_memory.bits.copy()
    assert np.array_equal(dirty_after_filter("overwrite"), dirty_after_filter("and"))


def test_holding_the_bql_through_the_wait_never_takes_the_reply():
    r = run(dma.disk_reader(64, rfc_filter="hold-bql", ram="256M", max_time_s=5))
    assert r["status"] == "setup" and "BQL" in r["stall"]
    assert r["ram"]["transferred"] == 0 and r["total-time"] == 5000


def test_the_repair_still_skips_the_free_pages():
    rfc = run(dma.disk_reader(64, ram="512M"))
    fix = run(dma.disk_reader(64, ram="512M", rfc_filter="migration-bitmap"))
    orig = run(dma.disk_reader(64, ram="512M", mode="original"))
    assert fix["verify"]["lost-pages"] == 0 < rfc["verify"]["lost-pages"]
    assert fix["ram"]["free-skipped"] > 0.9 * rfc["ram"]["free-skipped"]
    assert fix["ram"]["duplicate"] < orig["ram"]["duplicate"] / 10


def test_a_page_filled_after_the_filter_is_saved_by_the_sync():
    # the device writes that complete between the filter and the sync land after the overwrite
    m = build(dma.disk_reader(256, ram="256M"))
    while m._plan[0] != "migration_bitmap_sync":
        m.step()
    t_filter = m.now
    m.step()                                              # the sync (its cost lets the disk run)
    late = pfn_to_ram_page(m.mm, dma.filled_after(m.guest, t_filter))
    assert len(late) and m.bmap[late].all()


def test_the_walk_through_stops_before_the_filter():
    m = dma.walk_through(64, 1000, ram="256M")
    assert m._plan[0] == "filter_out_guest_free_pages"
    t_snap = next(r["t"] for r in m.timeline if r["kind"] == "guest-snapshot")
    assert len(dma.filled_after(m.guest, t_snap)) > 0


def test_without_device_writes_nothing_changes():
    a = run(Scenario(ram="512M", workload="hog", mode="pv", verify=True))
    b = run(Scenario(ram="512M", workload="hog", mode="pv", verify=True, dma_writer="vhost"))
    assert a.stats["total-time"] == b.stats["total-time"] and "device-writes" not in a.stats
    assert "lost-device-written-pages" not in a["verify"]


# -- the scenario's fields ----------------------------------------------------------------------

def test_scenario_fields_round_trip_and_are_checked():
    s = Scenario(ram="1G", mode="pv", dma_mib_s=32, dma_writer="vhost", rfc_filter="migration-bitmap")
    assert Scenario.from_json(s.to_json()) == s and isinstance(s.dma_mib_s, float)
    assert "dma=32MiB/s(vhost)" in s.echo() and "rfc-filter=migration-bitmap" in s.echo()
    with pytest.raises(RateError, match="dma_mib_s"):
        Scenario(dma_mib_s=-1)
    with pytest.raises(RateError):
        Scenario(dma_mib_s=float("nan"))
    with pytest.raises(RateError):
        Scenario(dma_mib_s="64")
    with pytest.raises(UnknownNameError, match="emulated, vhost"):
        Scenario(dma_writer="virtio")
    with pytest.raises(UnknownNameError, match="migration-bitmap"):
        Scenario(mode="pv", rfc_filter="xor")
    with pytest.raises(KitError, match="mode pv"):
        Scenario(mode="hint", rfc_filter="and")


def test_a_run_does_not_change_its_scenario_or_a_guest_it_is_given():
    s = dma.disk_reader(64, ram="256M")
    before = s.to_json()
    run(s, cache=False)
    assert s.to_json() == before
    from kit.scenario import guest as make_guest
    g = make_guest(s)
    version = g.memory.version.copy()
    build(s, guest=g).run()
    assert np.array_equal(g.memory.version, version) and g.dma_history == [] and g.dma_rate == 0


def test_and_not_packed_matches_a_bool_reference():
    rng = np.random.default_rng(1)
    for n in (1, 7, 8, 9, 100, 1003):
        d = DirtyMemory(n + 16, all_set=False)
        start = 8
        init = rng.random(n + 16) < 0.5
        d.set_pages(np.flatnonzero(init))
        free = rng.random(n) < 0.5
        d.and_not_packed(start, np.packbits(np.r_[free, np.ones(7, bool)], bitorder="little"), n)
        want = init.copy()
        want[start:start + n] &= ~free
        assert np.array_equal(d.get(), want)



def test_fold_into_matches_a_bool_reference_for_sparse_and_dense_chunks():
    from kit.dirty import CHUNK_PAGES
    rng = np.random.default_rng(2)
    n = 3 * CHUNK_PAGES + 100                           # two whole chunks, one partial one
    # chunk 0: a few bits (the path that sets them one by one); chunk 1: half of them;
    # chunk 2: none; the partial chunk: every bit
    dirty = np.zeros(n, bool)
    dirty[rng.choice(CHUNK_PAGES, size=50, replace=False)] = True
    dirty[CHUNK_PAGES:2 * CHUNK_PAGES] = rng.random(CHUNK_PAGES) < 0.5
    dirty[3 * CHUNK_PAGES:] = True
    bmap = rng.random(n) < 0.3
    d = DirtyMemory(n, all_set=False)
    d.set_pages(np.flatnonzero(dirty))
    want_new = int(np.count_nonzero(dirty & ~bmap))
    want = bmap | dirty
    assert d.fold_into(bmap) == want_new
    assert np.array_equal(bmap, want)
    assert not d.get().any() and not d.chunk_dirty.any()

# -- the CLI ------------------------------------------------------------------------------------

def _cli(*args):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(["migrate", "--ram", "256M", *args])
    return rc, out.getvalue(), err.getvalue()


def test_cli_counts_lost_device_pages_on_their_own_line():
    rc, out, err = _cli("--mode", "pv", "--dma-mib-s", "64", "--verify")
    assert rc == 1 and "pages (verify)" in err
    lines = out.splitlines()
    total = next(line for line in lines if line.startswith("verify:") and line.endswith("lost pages"))
    device = next(line for line in lines if "written by a device (emulated)" in line)
    assert int(total.split()[1]) == int(device.split()[1]) > 0
    rc, out, _ = _cli("--mode", "pv", "--dma-mib-s", "64", "--verify", "--rfc-filter", "migration-bitmap")
    assert rc == 0 and "verify: 0 of them written by a device" in out
    rc, out, _ = _cli("--mode", "pv", "--dma-mib-s", "64", "--dma-writer", "vhost", "--verify", "--json")
    st_ = json.loads(out)
    assert rc == 0 and st_["verify"]["lost-pages"] == 0 and st_["scenario"]["dma_writer"] == "vhost"


@pytest.mark.parametrize("args,needle", [(("--dma-mib-s", "fast"), "--dma-mib-s: expected a number"),
                                         (("--dma-mib-s", "-3"), "--dma-mib-s: expected a number"),
                                         (("--dma-writer", "dma"), "unknown dma_writer"),
                                         (("--mode", "hint", "--rfc-filter", "and"), "use it with mode pv")])
def test_cli_bad_device_write_options_exit_2(args, needle):
    rc, out, err = _cli(*args)
    assert rc == 2 and needle in err and err.count("\n") == 1


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["64M", "200M", "512M"]), st.sampled_from(MACHINES), st.sampled_from(["idle", "hog"]),
       st.sampled_from([16.0, 64.0, 256.0]), st.sampled_from([100.0, 1000.0]), st.integers(0, 2**16))
def test_a_reading_guest_loses_pages_to_the_rfc_filter_whenever_its_wait_holds_a_read(ram, machine, base,
                                                                                       mib_s, walk, seed):
    # at 16 MiB/s or more and a walk of 100 ns per free page or more, the wait holds several pages
    r = run(Scenario(ram=ram, machine=machine, workload=base, mode="pv", seed=seed, verify=True,
                     dma_mib_s=mib_s, cost=get_preset("seed-2016").with_(guest_walk_ns_per_free_page=walk)))
    window = dma.window_s(r.timeline)
    assert mib_s * 256 * window >= 2
    assert r["verify"]["lost-pages"] == r["verify"]["lost-device-written-pages"] > 0
