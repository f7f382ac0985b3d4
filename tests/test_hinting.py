"""The RFC's successors: free page hinting (mode "hint") and free page reporting (mode "report")."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from kit.costmodel import get_preset
from kit.errors import KitError
from kit.guest import Guest, get_workload
from kit.hinting import (HINT_BLOCK_PAGES, VIRTIO_BALLOON_CMD_ID_DONE,
                         VIRTIO_BALLOON_FREE_PAGE_HINT_CMD_ID_MIN, FreePageHinting, zone_watermarks)
from kit.memmap import MACHINES, pc_memory_map
from kit.migration import (MODES, PENDING, SENT_NORMAL, SENT_ZERO, SKIPPED_FREE, Migration,
                           migrate)
from kit.reporting import PAGE_REPORTING_MIN_PAGES
from kit.units import MiB

from convergence import slower_than_the_link

SEED = get_preset("seed-2016")


def make(ram="512M", workload="idle", mode="hint", machine="pc", seed=0, **kw):
    g = Guest(pc_memory_map(ram, machine), workload, seed=seed)
    m = Migration(g, mode, seed=seed, **kw)
    return m.guest, m          # the migration runs its own copy of the guest: look at that one


def kinds(m, prefix=""):
    return [e["kind"] for e in m.timeline if e["kind"].startswith(prefix)]


def fragment(g, every):
    """Take one free page in every aligned run of ``every`` frames, so no free block reaches that size."""
    frames = np.arange(every // 2, g.memory.nframes, every)
    frames = frames[g.buddy.free[frames]]
    g.buddy.free[frames] = False
    g.memory.write(frames)
    return frames


def test_modes():
    assert MODES == ("original", "pv", "hint", "report")


# -- free page hinting ------------------------------------------------------------------

def test_hint_protocol_order_and_command_ids():
    g, m = make(ram="1G", workload="hog")
    rec = m.step()
    assert rec["how"] == "all ones" and m.bmap.all()            # as the original
    r = m.run()
    k = [e["kind"] for e in m.timeline if e["kind"] in
         ("dirty-log-start", "sync", "hint-start", "hint-stop", "hint-done", "vm-stop")]
    # dirty logging first; the first round starts at the first sync, not before
    assert k[:3] == ["dirty-log-start", "hint-start", "sync"]
    assert k[-1] == "hint-done" and k.index("vm-stop") < len(k) - 1
    ids = [e["cmd_id"] for e in m.timeline if e["kind"] == "hint-start"]
    assert ids[0] == VIRTIO_BALLOON_FREE_PAGE_HINT_CMD_ID_MIN == 0x80000000
    assert ids == list(range(ids[0], ids[0] + len(ids)))       # a fresh id per round
    assert r["free-page-hint"]["cmd-ids"] == ids
    assert m.hinting.cmd_id == VIRTIO_BALLOON_CMD_ID_DONE
    # every sync after the first is preceded by STOP of the running round
    seq = [e["kind"] for e in m.timeline if e["kind"] in ("sync", "hint-start", "hint-stop")]
    starts = stops = 0
    for kind in seq:
        starts += kind == "hint-start"
        stops += kind == "hint-stop"
        assert 0 <= starts - stops <= 1
    assert starts == stops == r["free-page-hint"]["rounds"]
    t = [e["t"] for e in m.timeline]
    assert t == sorted(t)                                       # hints are stamped when they arrive


def test_migration_does_not_wait_for_the_guest():
    g, m = make(ram="1G", workload="hog")
    r = m.run()
    assert "free-page-wait" not in r["breakdown-ms"]
    first_hint = next(e for e in m.timeline if e["kind"] == "hints")
    assert first_hint["t"] > m.setup_time                       # hints arrive while RAM is saved
    assert any(e["kind"] == "iterate" and e["t"] < first_hint["t"] + 0.05 for e in m.timeline)


@pytest.mark.parametrize("workload", ["idle", "hog", "dirtying"])
def test_hint_loses_no_page(workload):
    r = migrate("2G", workload, "hint", verify=True, track_pages=False)
    assert r["status"] == "completed"
    assert r["verify"]["lost-pages"] == 0
    assert r["ram"]["free-skipped"] > 0


def test_hint_skips_most_free_pages_and_sends_much_less_on_hog():
    g, m = make(ram="2G", workload="hog")
    free = g.buddy.nr_free_pages
    r = m.run()
    orig = migrate("2G", "hog", "original", track_pages=False)
    assert r["ram"]["free-skipped"] > 0.9 * free
    assert r["ram"]["transferred"] < orig["ram"]["transferred"] / 4
    assert r["total-time"] < orig["total-time"] / 3
    assert r["ram"]["normal"] < orig["ram"]["normal"] / 4


def test_each_page_is_sent_or_cleared_once_and_a_late_hint_saves_nothing():
    # slow hints: the bulk stage reaches some blocks before their hints do
    cost = SEED.with_(hint_ns_per_block=400_000.0)
    g, m = make(ram="1G", workload="idle", preset=cost)
    r = m.run()
    ram = r["ram"]
    hinted = r["free-page-hint"]["blocks-hinted"] * HINT_BLOCK_PAGES
    # an idle guest writes nothing: every page is sent once or its bit cleared once
    assert ram["normal"] + ram["duplicate"] + ram["free-skipped"] == m.total_pages
    assert 0 < ram["free-skipped"] < hinted                     # pages sent before their hint count no more
    st = m.page_state
    assert (st == SKIPPED_FREE).sum() == ram["free-skipped"]
    assert np.isin(st, (SENT_ZERO, SENT_NORMAL, SKIPPED_FREE)).all()


def test_hints_stop_before_each_sync_and_late_ones_are_dropped():
    cost = SEED.with_(hint_ns_per_block=2_000_000.0)             # far slower than the bulk stage
    g, m = make(ram="1G", workload="idle", preset=cost, verify=True)
    r = m.run()
    assert r["free-page-hint"]["blocks-dropped-at-stop"] > 0
    assert r["verify"]["lost-pages"] == 0
    stops = {e["cmd_id"]: e["t"] for e in m.timeline if e["kind"] == "hint-stop"}
    for e in m.timeline:
        if e["kind"] == "hints":
            assert e["t"] <= stops[e["cmd_id"]]                 # no hint of a round after its STOP


def test_hinted_blocks_are_held_until_done_then_given_back():
    g, m = make(ram="1G", workload="idle")
    free_before = g.buddy.nr_free_pages
    held = None
    while not m.done:
        m.step()
        if m.phase == "iterate" and m.hinting.blocks_held:
            held = m.hinting.held_frames()
            assert not g.buddy.free[held].any()                 # the guest cannot use them
            assert g.buddy.nr_free_pages == free_before - int(held.sum())
    assert held is not None and held.sum() > 0.5 * free_before
    r = m.result()
    assert m.hinting.blocks_held == 0
    assert g.buddy.free[held].all()                             # DONE: freed back to the guest
    assert g.buddy.nr_free_pages == free_before                 # an idle guest allocates nothing else
    h = r["free-page-hint"]
    assert h["blocks-freed-at-done"] == h["blocks-hinted"] > 0 and h["status"] == "done"
    done = next(e for e in m.timeline if e["kind"] == "hint-done")
    assert done["t"] >= next(e["t"] for e in m.timeline if e["kind"] == "vm-stop")


def test_only_whole_aligned_4mib_free_blocks_are_hinted():
    g = Guest(pc_memory_map("512M"), "hog")
    fragment(g, HINT_BLOCK_PAGES)              # free memory now lies in blocks of 2 MiB at most
    assert g.buddy.nr_free_pages > 0.6 * g.mm.ram_pages
    m = Migration(g, "hint", verify=True)
    r = m.run()
    assert r["ram"]["free-skipped"] == 0
    assert r["free-page-hint"]["blocks-hinted"] == 0
    assert r["verify"]["lost-pages"] == 0
    g2 = Guest(pc_memory_map("512M"), "hog")
    fragment(g2, HINT_BLOCK_PAGES)
    r2 = Migration(g2, "original").run()
    assert (r["ram"]["normal"], r["ram"]["duplicate"]) == (r2["ram"]["normal"], r2["ram"]["duplicate"])


def test_hinting_respects_zone_watermarks():
    g = Guest(pc_memory_map("2G"), "idle")
    h = FreePageHinting(g, 5000.0)
    h.start(0.0)
    h.take_arrived(1.0)
    assert not h.pending and h.blocks_held > 0
    for wm in zone_watermarks(g):
        nfree = int(g.buddy.free[wm.start_pfn:wm.end_pfn].sum())
        if wm.name != "DMA":
            # the last allocation still found free - 1023 > min + lowmem_reserve
            assert nfree > wm.min + wm.lowmem_reserve - HINT_BLOCK_PAGES
        assert wm.min >= 0 and wm.low >= wm.min
    assert h.done(2.0) == h.blocks_freed > 0
    with pytest.raises(KitError):
        FreePageHinting(g, 0.0)


def test_a_guest_without_the_hint_feature_migrates_as_the_original():
    g, m = make(ram="512M", workload="hog", guest_features={0, 1, 2})
    r = m.run()
    r2 = make(ram="512M", workload="hog", mode="original")[1].run()
    assert r["ram"]["free-skipped"] == 0
    assert (r["ram"]["normal"], r["ram"]["duplicate"]) == (r2["ram"]["normal"], r2["ram"]["duplicate"])
    assert "free-page-hint-unsupported" in kinds(m)
    assert r["free-page-hint"]["rounds"] == 0


@pytest.mark.parametrize("mode", ["hint", "report"])
@pytest.mark.parametrize("workload", ["idle", "hog", "dirtying"])
def test_breakdown_adds_up(workload, mode):
    r = migrate("2G", workload, mode, track_pages=False)
    assert sum(r["breakdown-ms"].values()) == pytest.approx(r["total-time"], abs=1.0)


@st.composite
def scenarios(draw):
    """Guests that always converge: the dirtying rates are drawn below the link's rate
    (tests/convergence.py says why that is enough)."""
    ram = draw(st.sampled_from(["64M", "200M", "512M", "3968M"]))
    machine = draw(st.sampled_from(MACHINES))
    base = draw(st.sampled_from(["idle", "hog", "dirtying"]))
    cost = SEED.with_(
        cpu_ns_per_page=draw(st.sampled_from([0.0, 200.0, 2000.0])),
        wire_bytes_per_s=draw(st.sampled_from([1e8, 1.2e9, 1.2e10])),
        hint_ns_per_block=draw(st.sampled_from([100.0, 5000.0, 300_000.0, 5_000_000.0])))
    w = get_workload(base)
    if base == "dirtying":
        dirty, churn = draw(st.sampled_from(slower_than_the_link(cost)))
        w = w.with_(name="prop", working_set=draw(st.sampled_from([16, 64])) * MiB,
                    dirty_rate=dirty, churn_rate=churn,
                    churn_pool_seconds=draw(st.sampled_from([0.05, 1.0, 60.0])))
    return ram, machine, w, cost, draw(st.integers(0, 2**16))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_hint_never_loses_a_page(sc):
    """Writers covered: the guest's vCPUs (KVM's dirty log); device writes: tests/test_device_writes.py."""
    ram, machine, w, cost, seed = sc
    g = Guest(pc_memory_map(ram, machine), w, seed=seed)
    m = Migration(g, "hint", cost, verify=True, seed=seed, max_time_s=120)
    r = m.run()
    # every drawn guest writes more slowly than the link sends, so each must complete
    assert r["status"] == "completed", r.stats.get("stall")
    assert r["verify"]["lost-pages"] == 0
    assert m.hinting.blocks_held == 0
    assert r["ram"]["remaining"] == 0
    assert m.migration_dirty_pages == int(m.bmap.sum()) == 0
    assert not (m.page_state == PENDING).any()


def test_hint_says_so_when_the_guest_outruns_the_link():
    # the other side of the property's strategy: 200000 pages/s into 64 MiB against a
    # 100 MB/s link (~24000 pages/s) cannot fit a 300 ms downtime, so the run must stop
    # with the stall reason rather than complete
    w = get_workload("dirtying").with_(name="storm", working_set=64 * MiB, dirty_rate=200000.0)
    cost = SEED.with_(wire_bytes_per_s=1e8)
    g = Guest(pc_memory_map("512M"), w)
    r = Migration(g, "hint", cost, max_time_s=10, track_pages=False).run()
    assert r["status"] == "active"
    assert "did not converge" in r["stall"]


# -- free page reporting ----------------------------------------------------------------

def test_report_sends_reported_blocks_as_zero_pages():
    g, m = make(ram="1G", workload="hog", mode="report")
    rep = m.reporting
    assert rep.reported_pages > 0.8 * g.buddy.nr_free_pages
    assert rep.reported_pages % PAGE_REPORTING_MIN_PAGES == 0
    assert g.memory.zero[rep.discarded].all()
    assert g.buddy.free[rep.discarded].all()                    # only free pages are reported
    r = m.run()
    st_ram = m.page_state[: g.mm.ram_pages]
    discarded = g.memory.to_ram_order(rep.discarded)
    assert (st_ram[discarded] == SENT_ZERO).all()               # sent, as 9-byte records
    assert r["ram"]["free-skipped"] == 0
    assert r["free-page-reporting"]["reported-pages"] == rep.reported_pages


def test_report_on_hog_sends_far_less_but_scans_like_idle():
    orig_hog = migrate("2G", "hog", "original", track_pages=False)
    orig_idle = migrate("2G", "idle", "original", track_pages=False)
    rep = migrate("2G", "hog", "report", track_pages=False, verify=True)
    assert rep["verify"]["lost-pages"] == 0
    assert rep["ram"]["transferred"] < orig_hog["ram"]["transferred"] / 4
    assert rep["ram"]["transferred"] <= orig_idle["ram"]["transferred"]
    # every page is still read: time like the idle original, not like hinting
    assert rep["total-time"] == pytest.approx(orig_idle["total-time"], rel=0.1)
    sent = rep["ram"]["normal"] + rep["ram"]["duplicate"]
    assert sent == orig_idle["ram"]["normal"] + orig_idle["ram"]["duplicate"]
    # discarded pages are not backed, so dirty logging starts as fast as for an idle guest
    assert rep["breakdown-ms"]["dirty-log-start"] < orig_hog["breakdown-ms"]["dirty-log-start"] / 4


def test_report_ignores_blocks_smaller_than_2mib():
    g = Guest(pc_memory_map("512M"), "hog")
    fragment(g, PAGE_REPORTING_MIN_PAGES)
    m = Migration(g, "report")
    assert m.reporting.reported_pages == 0
    r = m.run()
    g2 = Guest(pc_memory_map("512M"), "hog")
    fragment(g2, PAGE_REPORTING_MIN_PAGES)
    r2 = Migration(g2, "original").run()
    assert r["ram"]["transferred"] == r2["ram"]["transferred"]


def test_report_without_the_feature_or_in_a_tiny_guest_reports_nothing():
    g, m = make(ram="512M", workload="hog", mode="report", guest_features={0, 1, 2, 3})
    assert m.reporting is None and "free-page-reporting-unsupported" in kinds(m)
    assert m.run()["free-page-reporting"]["reported-pages"] == 0
    # a zone needs its low watermark plus 32 blocks of 2 MiB free before it reports
    g, m = make(ram="64M", workload="hog", mode="report")
    assert m.reporting.reported_pages == 0 and "DMA32" in m.reporting.zones_skipped


# -- the order Linux 6.1 hands out 4 MiB blocks, and when QEMU 7.2 applies hints -------------

def _block_free(g, b):
    return bool(g.buddy.free[b * HINT_BLOCK_PAGES:(b + 1) * HINT_BLOCK_PAGES].all())


def test_top_order_free_list_hands_out_the_block_freed_last_first():
    g = Guest(pc_memory_map("512M"), "idle")
    zone = g.buddy.zones[-1]
    boot = [int(b) for b in g.buddy.top_order_blocks(zone)]
    assert boot == sorted(boot) and len(boot) >= 6           # free since boot: lowest first
    a, b, c = boot[1], boot[3], boot[4]
    for blk in (a, b, c):                                    # a process takes three blocks ...
        g.buddy.free[blk * HINT_BLOCK_PAGES:(blk + 1) * HINT_BLOCK_PAGES] = False
    for blk in (b, a, c):                                    # ... and frees them: b, then a, then c
        g.buddy.free_frames(slice(blk * HINT_BLOCK_PAGES, (blk + 1) * HINT_BLOCK_PAGES))
    order = [int(x) for x in g.buddy.top_order_blocks(zone)]
    rest = [x for x in boot if x not in (a, b, c)]
    assert order == [c, a, b] + rest                         # head: the last freed; tail: boot order


def test_a_block_freed_in_halves_counts_when_its_second_half_comes_back():
    g = Guest(pc_memory_map("512M"), "idle")
    zone = g.buddy.zones[-1]
    x, y = [int(b) for b in g.buddy.top_order_blocks(zone)[:2]]
    half = HINT_BLOCK_PAGES // 2
    for blk in (x, y):
        g.buddy.free[blk * HINT_BLOCK_PAGES:(blk + 1) * HINT_BLOCK_PAGES] = False
    g.buddy.free_frames(slice(x * HINT_BLOCK_PAGES, x * HINT_BLOCK_PAGES + half))   # x half free
    g.buddy.free_frames(slice(y * HINT_BLOCK_PAGES, (y + 1) * HINT_BLOCK_PAGES))    # y whole
    assert x not in g.buddy.top_order_blocks(zone)
    g.buddy.free_frames(slice(x * HINT_BLOCK_PAGES + half, (x + 1) * HINT_BLOCK_PAGES))
    assert [int(b) for b in g.buddy.top_order_blocks(zone)[:2]] == [x, y]


STEP_S = 1 / 1024                     # a binary fraction, so the times below add up exactly


def _hinting(ram="1G", drain=0.5, step_s=STEP_S):
    g = Guest(pc_memory_map(ram), "idle")
    return g, FreePageHinting(g, step_s * 1e9, drain_chance=drain)


def test_between_iterations_the_iothread_applies_one_hint_plus_a_share_of_the_queue():
    g, h = _hinting(drain=0.5)
    rnd = h.start(0.0)
    n = rnd["planned_blocks"]
    assert n > 120
    # 50 steps in, the guest has queued 51 blocks (the first at 0); one hint plus half of
    # the other 50 is applied: 26
    first = h.take_between_iterations(50 * STEP_S)
    assert len(first) == 26 and h.blocks_held == 26
    # 50 steps later the guest has queued 50 more: 25 + 50 wait; 1 + round(0.5 * 74) = 38
    second = h.take_between_iterations(100 * STEP_S)
    assert len(second) == 38 and h.blocks_held == 64
    assert all(not _block_free(g, b) for b in np.concatenate([first, second]))


def test_between_iterations_without_a_drain_one_hint_per_gap_and_with_one_all_that_wait():
    _, h = _hinting(drain=0.0)
    h.start(0.0)
    assert [len(h.take_between_iterations(k * 50 * STEP_S)) for k in (1, 2, 3)] == [1, 1, 1]
    _, h = _hinting(drain=1.0)
    h.start(0.0)
    assert len(h.take_between_iterations(50 * STEP_S)) == 51


def test_a_full_free_page_queue_holds_the_guest_back():
    from kit.hinting import QUEUE_SLOTS
    assert QUEUE_SLOTS == 1023                # 1024 entries; the driver keeps one for its cmd id
    _, h = _hinting(ram="8G", drain=0.0, step_s=1e-6)      # a fast guest: 1 us a block
    rnd = h.start(0.0)
    assert rnd["planned_blocks"] > 1500
    assert len(h.take_between_iterations(0.05)) == 1        # 50,000 steps, but 1023 places
    assert h._queued == QUEUE_SLOTS
    # one place freed at 0.05 s: the guest queues one more right away, and no more
    h.take_between_iterations(0.10)
    assert h._queued == QUEUE_SLOTS + 1


def test_tcg_loopback_applies_hints_only_between_iterations():
    from kit.scenario import Scenario, run
    r = run(Scenario(ram=1024 * MiB, workload="hog", mode="hint", cost=get_preset("tcg-loopback"),
                     track_pages=False))
    boundaries = {e["t"] for e in r.timeline if e["kind"] in ("iterate", "sync", "hint-start")}
    hints = [e for e in r.timeline if e["kind"] == "hints"]
    assert hints and all(e["t"] in boundaries for e in hints)
    assert get_preset("seed-2016").hint_drain_chance is None     # the 2016 testbed: as they arrive
