"""The guest: memory, buddy allocator, workloads, free-page bitmap."""
import numpy as np
import pytest

from kit.errors import KitError, UnknownNameError
from kit.guest import MAX_ORDER, Guest, Workload, get_workload
from kit.guest.buddy import OutOfMemory
from kit.memmap import pc_memory_map, ram_page_to_pfn


def small(ram="256M", machine="pc", workload="idle", **kw):
    return Guest(pc_memory_map(ram, machine), workload, **kw)


def naive_free_lists(free, start, end):
    """Per-block reference: maximal aligned free blocks, top order first."""
    out = {k: [] for k in range(MAX_ORDER)}
    covered = np.zeros_like(free)
    for k in reversed(range(MAX_ORDER)):
        size = 1 << k
        for b in range(start, end, size):
            if free[b:b + size].all() and not covered[b:b + size].any():
                out[k].append(b)
                covered[b:b + size] = True
    return out


def test_free_lists_match_a_per_block_reference():
    g = small("64M")
    rng = np.random.default_rng(1)
    frames = rng.choice(np.flatnonzero(g.buddy.free), 3000, replace=False)
    g.buddy.free[frames] = False            # punch holes at random
    for area in g.buddy.free_area():
        ref = naive_free_lists(g.buddy.free, area.zone.start_pfn, area.zone.end_pfn)
        for k in range(MAX_ORDER):
            assert sorted(area.blocks[k].tolist()) == ref[k]
    assert sum(a.free_pages for a in g.buddy.free_area()) == g.buddy.nr_free_pages
    assert g.buddy.block_count() == sum(sum(a.nr_free) for a in g.buddy.free_area())


def test_zones_follow_x86_64_boundaries():
    g = small("8G")
    names = {z.name: (z.start_pfn, z.end_pfn) for z in g.buddy.zones}
    assert names["DMA"] == (0, 4096)                 # first 16 MiB
    assert names["DMA32"] == (4096, 1 << 20)         # up to 4 GiB
    assert names["Normal"][0] == 1 << 20


def test_bulk_allocation_takes_smallest_blocks_first_and_low_half():
    g = small("64M")
    b = g.buddy
    b.free[:] = False
    b.free[4096 + 1024:4096 + 2048] = True           # one order-10 block in DMA32
    b.free[4096 + 5] = True                           # one lonely order-0 page
    taken = b.alloc_pages_bulk(3, zonelist=("DMA32",))
    got = np.flatnonzero(taken).tolist()
    assert got == [4096 + 5, 4096 + 1024, 4096 + 1025]


def test_out_of_memory_is_a_clear_error():
    g = small("64M")
    with pytest.raises(OutOfMemory, match="only"):
        g.buddy.alloc_pages_bulk(g.buddy.nr_free_pages + 1)


def test_hole_frames_are_never_free_or_written():
    g = small("8G")
    mm = g.mm
    assert not g.buddy.free[mm.below_4g_pages:mm.pfn_4g].any()
    with pytest.raises(KitError, match="not RAM"):
        g.memory.write(np.array([mm.below_4g_pages]))


def test_idle_hog_dirtying_differ_as_described():
    idle, hog = small("1G", workload="idle"), small("1G", workload="hog")
    assert idle.buddy.nr_free_pages == hog.buddy.nr_free_pages          # the hog has exited
    stale = lambda g: int(np.count_nonzero(g.buddy.free & ~g.memory.zero))
    assert stale(hog) > 10 * stale(idle)                                # its pages stayed non-zero
    d = small("1G", workload="dirtying")
    assert len(d.working_set) > 0
    before = d.memory.version[d.working_set].astype(int).sum()
    d.advance(0.1)
    assert d.memory.version[d.working_set].astype(int).sum() > before


def test_free_page_bitmap_is_ram_indexed_and_counts_free_pages():
    g = small("8G")
    bits, count, blocks = g.build_free_page_bitmap(g.mm.lowmem)
    assert len(bits) == g.mm.ram_pages
    assert int(bits.sum()) == count == g.buddy.nr_free_pages
    pfns = ram_page_to_pfn(g.mm, np.flatnonzero(bits))
    assert g.buddy.free[pfns].all()
    assert blocks == g.buddy.block_count()


def test_dirty_log_records_writes_only_while_on():
    g = small("64M")
    frames = g.allocate_and_write(10)
    assert g.memory.dirty_log.fetch_and_clear().size == 0
    g.memory.dirty_log.start()
    frames = g.allocate_and_write(10)
    np.testing.assert_array_equal(g.memory.dirty_log.fetch_and_clear(), np.sort(frames))


def test_unknown_workload_and_bad_workloads():
    with pytest.raises(UnknownNameError, match="choose one of"):
        get_workload("nope")
    with pytest.raises(UnknownNameError, match="working_set"):
        Workload("x", dirty_rate=10)
    with pytest.raises(UnknownNameError, match="hog_fraction"):
        Workload("x", hog_fraction=2)


def test_custom_workload_object_is_accepted():
    w = get_workload("idle").with_(name="bigboot", boot_footprint=64 << 20)
    g = small("1G", workload=w)
    assert g.workload.name == "bigboot"


def test_a_copy_shares_the_page_arrays_until_one_side_writes():
    g = small("256M", workload="hog")
    before = {n: getattr(g.memory, n).copy() for n in ("zero", "version")}
    free_before = g.buddy.free.copy()
    c = g.copy()
    # nothing copied yet: the arrays are the same memory, and read-only in both guests
    assert np.shares_memory(c.memory.version, g.memory.version)
    assert np.shares_memory(c.buddy.free, g.buddy.free)
    with pytest.raises(ValueError, match="read-only"):
        c.buddy.free[0] = True                 # a write that skips own() fails, it does not leak
    frames = c.allocate_and_write(500)         # the copy allocates and writes
    assert not np.shares_memory(c.memory.version, g.memory.version)
    assert not np.shares_memory(c.buddy.free, g.buddy.free)
    assert (c.memory.version[frames] == before["version"][frames] + 1).all()
    assert not c.buddy.free[frames].any() and free_before[frames].all()
    # the original saw none of it
    assert np.array_equal(g.memory.version, before["version"])
    assert np.array_equal(g.memory.zero, before["zero"])
    assert np.array_equal(g.buddy.free, free_before)
    # and the original writing later changes nothing in the copy
    c_version = c.memory.version.copy()
    g.memory.write(frames)
    assert np.array_equal(c.memory.version, c_version)
    assert (g.memory.version[frames] == before["version"][frames] + 1).all()


@pytest.mark.parametrize("npages", [0, 1, 3, 1000, 5000, 40_000])
def test_bulk_blocks_are_the_frames_alloc_pages_bulk_takes(npages):
    g = small("256M")
    rng = np.random.default_rng(4)
    holes = rng.choice(np.flatnonzero(g.buddy.free), 2000, replace=False)
    g.buddy.free[holes] = False              # fragment the free lists: blocks of every order
    free_before = g.buddy.free.copy()
    starts, stops = g.buddy.block_runs(g.buddy.bulk_blocks(npages))
    assert np.array_equal(g.buddy.free, free_before)         # asking takes nothing
    assert (starts[1:] > stops[:-1]).all()                   # ascending, disjoint, merged
    mask = np.zeros_like(free_before)
    for a, b in zip(starts.tolist(), stops.tolist()):
        mask[a:b] = True
    # by hand, from the per-block reference: zones Normal, DMA32, DMA; in each, orders from 0
    # up, blocks from the lowest frame; whole blocks while they fit, then a block's low end
    want, left = np.zeros_like(free_before), npages
    for zone in sorted(g.buddy.zones, key=lambda z: ("Normal", "DMA32", "DMA").index(z.name)):
        lists = naive_free_lists(free_before, zone.start_pfn, zone.end_pfn)
        for k in range(MAX_ORDER):
            for b in sorted(lists[k]):
                take = min(left, 1 << k)
                want[b:b + take] = True
                left -= take
    assert np.array_equal(mask, want)
    taken = g.buddy.alloc_pages_bulk(npages)
    assert np.array_equal(taken, want) and np.count_nonzero(taken) == npages
    assert np.array_equal(g.buddy.free, free_before & ~taken)


def test_a_page_reads_zero_until_data_is_written_and_again_after_zeros():
    g = small("64M")
    mem = g.memory
    f = np.flatnonzero(g.buddy.free)[:6]
    assert mem.zero[f].all() and mem.zero_of(f).all()          # never written
    mem.write(f)
    assert not mem.zero[f].any() and mem.zeroed is None          # data only: nothing stored for zero
    mem.write(f[:2], zero=True)                                  # cleared by the guest
    assert mem.zero[f].tolist() == [True, True, False, False, False, False]
    assert np.array_equal(mem.zero_of(slice(int(f[0]), int(f[0]) + 1)), [True])
    mem.write(f[:1])                                             # data again
    mem.device_write(f[1:2])                                     # a device's data
    assert not mem.zero[f].any()
    mask = np.zeros(mem.nframes, bool)
    mask[f[3:5]] = True
    mem.set_zero(mask)                                           # the host discarded them
    assert mem.zero[f].tolist() == [False, False, False, True, True, False]
    assert (mem.version[f] > 0).all()                            # discarding keeps the versions
    with pytest.raises(ValueError, match="read-only"):
        mem.zero[f[0]] = True                # computed: a write there would be lost, so it raises
