"""Patch 1/4: the PC RAM split and the PFN <-> ram_addr mapping."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from kit.errors import BitmapLengthError, KitError, MachineError, SizeError
from kit.memmap import (MACHINES, PFN_4G, PCMemoryMap, layout_segments, pc_memory_map,
                        pfn_to_ram_page, ram_page_to_pfn, shift_pfn_bitmap)
from kit.units import GiB, MiB

PAGE = 4096


# -- QEMU's documented examples ------------------------------------------------

@pytest.mark.parametrize("machine, ram, max_below, below, above", [
    ("pc-i440fx-1.7", "4G", None, 3584 * MiB, 512 * MiB),
    ("pc", "4G", None, 3072 * MiB, 1024 * MiB),
    ("pc", "4G", "2G", 2048 * MiB, 2048 * MiB),
    ("pc", "3968M", "4G", 3968 * MiB, 0),
])
def test_qemu_documented_examples(machine, ram, max_below, below, above):
    mm = pc_memory_map(ram, machine, max_ram_below_4g=max_below)
    assert (mm.below_4g_mem_size, mm.above_4g_mem_size) == (below, above)


def test_pc_max_below_4g_equals_lowmem_when_ram_fits():
    mm = pc_memory_map("3968M", "pc", max_ram_below_4g=4 * GiB)
    assert mm.lowmem == 4 * GiB
    assert mm.hole_pages == 0 and mm.max_pfn == mm.ram_pages == 3968 * 256


@pytest.mark.parametrize("machine, lowmem, hole, max_pfn", [
    ("pc", 0xC0000000, 262_144, 0x240000),
    ("q35", 0x80000000, 524_288, 0x280000),
])
def test_8gib_guest(machine, lowmem, hole, max_pfn):
    mm = pc_memory_map(8 * GiB, machine)
    assert mm.lowmem == mm.below_4g_mem_size == lowmem
    assert mm.above_4g_mem_size == 8 * GiB - lowmem
    assert mm.hole_pages == hole
    assert mm.max_pfn == max_pfn
    assert mm.ram_pages == 2_097_152 == mm.max_pfn - mm.hole_pages
    assert mm.pfn_4g == PFN_4G == 1 << 20
    assert mm.to_dict() == {"machine": machine, "ram_size": 8 * GiB, "lowmem": lowmem,
                            "below_4g_mem_size": lowmem,
                            "above_4g_mem_size": 8 * GiB - lowmem}


def test_old_i440fx_8g_keeps_3_5g_low():
    mm = pc_memory_map("8G", "pc-i440fx-1.7")
    assert mm.lowmem == 0xE0000000
    assert mm.hole_pages == (512 * MiB) // PAGE


def test_pc_small_ram_all_low():
    mm = pc_memory_map("2G", "pc")
    assert mm.lowmem == 0xE0000000             # not capped: RAM fits
    assert (mm.below_4g_mem_size, mm.above_4g_mem_size) == (2 * GiB, 0)


def test_q35_small_ram_all_low():
    mm = pc_memory_map("2G", "q35")
    assert mm.lowmem == 0xB0000000
    assert (mm.below_4g_mem_size, mm.above_4g_mem_size) == (2 * GiB, 0)
    assert mm.max_pfn == mm.ram_pages and mm.hole_pages == 0


def test_q35_threshold_both_sides():
    just_below = pc_memory_map(0xB0000000 - PAGE, "q35")
    assert just_below.lowmem == 0xB0000000
    assert just_below.above_4g_mem_size == 0
    at = pc_memory_map(0xB0000000, "q35")
    assert at.lowmem == 0x80000000
    assert at.below_4g_mem_size == 2 * GiB
    assert at.above_4g_mem_size == 0xB0000000 - 2 * GiB


def test_q35_max_ram_below_4g_only_lowers():
    lowered = pc_memory_map("8G", "q35", max_ram_below_4g="1G")
    assert lowered.lowmem == lowered.below_4g_mem_size == 1 * GiB
    assert lowered.above_4g_mem_size == 7 * GiB
    not_raised = pc_memory_map("8G", "q35", max_ram_below_4g="3G")
    assert not_raised.lowmem == 2 * GiB
    assert pc_memory_map("8G", "q35").max_ram_below_4g == 4 * GiB


def test_pc_gigabyte_align_caps_user_4g_when_ram_does_not_fit():
    mm = pc_memory_map("4G", "pc", max_ram_below_4g="4G")
    assert mm.lowmem == 3 * GiB and mm.above_4g_mem_size == 1 * GiB
    old = pc_memory_map("4G", "pc-i440fx-1.7", max_ram_below_4g="4G")
    assert old.lowmem == old.below_4g_mem_size == 4 * GiB and old.above_4g_mem_size == 0


def test_pc_gigabyte_align_caps_only_above_3g():
    mm = pc_memory_map("4G", "pc", max_ram_below_4g="2560M")
    assert mm.lowmem == 2560 * MiB                  # below 3G: kept (QEMU only warns)


# -- errors --------------------------------------------------------------------

def test_unknown_machine_lists_known():
    with pytest.raises(MachineError) as exc:
        pc_memory_map("4G", "isapc")
    msg = str(exc.value)
    assert "isapc" in msg
    for name in MACHINES:
        assert name in msg


@pytest.mark.parametrize("value", ["5G", 4 * GiB + PAGE, 4097, "1.5G", -PAGE])
def test_bad_max_ram_below_4g(value):
    with pytest.raises(MachineError) as exc:
        pc_memory_map("8G", "pc", max_ram_below_4g=value)
    assert "allowed range" in str(exc.value)
    assert "4G" in str(exc.value)


@pytest.mark.parametrize("value, text", [
    (0, "positive"), (-PAGE, "positive"), (4097, "4096"), ("8X", "cannot read"),
    ("1.5", "fraction"), (True, "expected a size"),
])
def test_bad_ram_size(value, text):
    with pytest.raises(SizeError, match=text):
        pc_memory_map(value, "pc")


def test_ram_size_reads_as_qemu_m():
    assert pc_memory_map("1.5G", "pc").ram_size == 3 * 512 * MiB
    assert pc_memory_map("4096", "pc").ram_size == 4 * GiB          # a bare number is MiB
    assert pc_memory_map(4096 * 2, "pc").ram_size == 8192           # an int is bytes


@pytest.mark.parametrize("zero", [0, "0", "0G"])
def test_max_ram_below_4g_zero_means_default(zero):
    for machine in ("pc", "pc-i440fx-1.7", "q35"):
        assert pc_memory_map("8G", machine, max_ram_below_4g=zero) == pc_memory_map("8G", machine)


def test_ram_size_beyond_52_bits():
    with pytest.raises(SizeError, match="52"):
        pc_memory_map(1 << 52, "pc")


def test_errors_are_kit_errors():
    assert issubclass(MachineError, KitError) and issubclass(SizeError, KitError)


def test_inconsistent_direct_construction_rejected():
    with pytest.raises(MachineError, match="pc_memory_map"):
        PCMemoryMap("pc", 8 * GiB, 0xE0000000, 3 * GiB, 3 * GiB, 4 * GiB)


# -- PFN <-> ram page ---------------------------------------------------------

def test_pfn_mapping_edges_8g_pc():
    mm = pc_memory_map("8G", "pc")
    last_low = mm.below_4g_pages - 1
    assert pfn_to_ram_page(mm, 0) == 0
    assert pfn_to_ram_page(mm, last_low) == last_low
    assert pfn_to_ram_page(mm, PFN_4G) == mm.below_4g_pages
    assert pfn_to_ram_page(mm, mm.max_pfn - 1) == mm.ram_pages - 1
    assert isinstance(pfn_to_ram_page(mm, 5), int)
    arr = pfn_to_ram_page(mm, np.array([0, last_low, PFN_4G, mm.max_pfn - 1]))
    assert arr.tolist() == [0, last_low, mm.below_4g_pages, mm.ram_pages - 1]
    assert ram_page_to_pfn(mm, mm.below_4g_pages) == PFN_4G
    assert ram_page_to_pfn(mm, mm.ram_pages - 1) == mm.max_pfn - 1


@pytest.mark.parametrize("bad, text", [
    (0xC0000, "0xc0000"),           # first hole frame (3 GiB)
    (PFN_4G - 1, "0xfffff"),        # last hole frame
    (0x240000, "0x240000"),         # max_pfn
    (-1, "-0x1"),
])
def test_pfn_outside_ram_raises(bad, text):
    mm = pc_memory_map("8G", "pc")
    with pytest.raises(MachineError, match=text) as exc:
        pfn_to_ram_page(mm, bad)
    assert "PCI hole" in str(exc.value)


def test_first_bad_frame_in_array_is_named():
    mm = pc_memory_map("8G", "pc")
    with pytest.raises(MachineError, match=r"0xc0001 \(element 2\)"):
        pfn_to_ram_page(mm, np.array([1, 2, 0xC0001, 0xC0000]))


def test_ram_page_out_of_range():
    mm = pc_memory_map("8G", "pc")
    with pytest.raises(MachineError, match="2097152 pages"):
        ram_page_to_pfn(mm, mm.ram_pages)
    with pytest.raises(MachineError, match="outside pc.ram"):
        ram_page_to_pfn(mm, np.array([0, -1]))
    with pytest.raises(MachineError, match="integers"):
        ram_page_to_pfn(mm, np.array([0.5]))


# -- shifting the guest's bitmap -------------------------------------------------

def test_shift_edges_8g_pc():
    mm = pc_memory_map("8G", "pc")
    bits = np.zeros(mm.max_pfn, dtype=bool)
    last_low = mm.below_4g_pages - 1
    bits[[0, last_low, PFN_4G, mm.max_pfn - 1]] = True
    out = shift_pfn_bitmap(mm, bits)
    assert out.shape == (mm.ram_pages,) and out.dtype == np.bool_
    assert np.flatnonzero(out).tolist() == [0, last_low, mm.below_4g_pages,
                                            mm.ram_pages - 1]


def test_shift_ignores_hole_frames():
    mm = pc_memory_map("8G", "q35")
    bits = np.zeros(mm.max_pfn, dtype=bool)
    bits[mm.below_4g_pages:PFN_4G] = True
    assert not shift_pfn_bitmap(mm, bits).any()


def test_shift_without_high_ram_is_identity():
    mm = pc_memory_map("2G", "q35")
    bits = np.zeros(mm.max_pfn, dtype=bool)
    bits[::7] = True
    assert np.array_equal(shift_pfn_bitmap(mm, bits), bits)


def test_wrong_low_mem_shifts_visibly_wrong():
    """A guest told 3.5G (pc-1.7's value) on a pc guest whose lowmem is 3G."""
    mm = pc_memory_map("8G", "pc")
    bits = np.zeros(mm.max_pfn, dtype=bool)
    bits[PFN_4G] = True                        # first frame above 4G is free
    bits[mm.max_pfn - 1] = True                # and the last one
    out = shift_pfn_bitmap(mm, bits, low_mem=0xE0000000)
    delta = (0xE0000000 - 0xC0000000) // PAGE  # shift too small by 131072 frames
    # ram page below_4g_pages (the truly free one) is not marked, a page that
    # holds other data is marked instead; the last frame falls off the end.
    assert not out[mm.below_4g_pages]
    assert np.flatnonzero(out).tolist() == [mm.below_4g_pages + delta]
    assert out.shape == (mm.ram_pages,)


def test_wrong_low_mem_too_low_overlaps_low_ram():
    mm = pc_memory_map("8G", "pc")
    bits = np.zeros(mm.max_pfn, dtype=bool)
    bits[PFN_4G] = True
    out = shift_pfn_bitmap(mm, bits, low_mem="2G")
    assert np.flatnonzero(out).tolist() == [(2 * GiB) // PAGE]   # lands on low RAM


def test_shift_low_mem_string_and_bad_value():
    mm = pc_memory_map("8G", "pc")
    bits = np.ones(mm.max_pfn, dtype=bool)
    assert shift_pfn_bitmap(mm, bits, low_mem="3G").all()
    with pytest.raises(MachineError, match="allowed range"):
        shift_pfn_bitmap(mm, bits, low_mem="5G")


def test_shift_wrong_length():
    mm = pc_memory_map("8G", "pc")
    with pytest.raises(BitmapLengthError) as exc:
        shift_pfn_bitmap(mm, np.zeros(mm.ram_pages, dtype=bool))
    msg = str(exc.value)
    assert str(mm.max_pfn) in msg and str(mm.ram_pages) in msg


def test_shift_accepts_uint8():
    mm = pc_memory_map("4G", "pc")
    bits = np.zeros(mm.max_pfn, dtype=np.uint8)
    bits[PFN_4G] = 1
    assert np.flatnonzero(shift_pfn_bitmap(mm, bits)).tolist() == [mm.below_4g_pages]


# -- layout picture ------------------------------------------------------------

def test_layout_segments():
    assert layout_segments(pc_memory_map("8G", "pc")) == [
        ("RAM below 4G", 0, 3 * GiB, "ram"),
        ("PCI hole", 3 * GiB, 4 * GiB, "hole"),
        ("RAM above 4G", 4 * GiB, 9 * GiB, "ram"),
    ]
    assert layout_segments(pc_memory_map("2G", "q35")) == [
        ("RAM below 4G", 0, 2 * GiB, "ram"),
        ("PCI hole", 2 * GiB, 4 * GiB, "hole"),
    ]
    # pc-1.7 has no gigabyte_align, so 4G below 4G really means no hole
    assert layout_segments(pc_memory_map("4G", "pc-i440fx-1.7", max_ram_below_4g="4G")) == [
        ("RAM below 4G", 0, 4 * GiB, "ram"),
    ]


# -- properties ----------------------------------------------------------------

ram_sizes = st.integers(min_value=1, max_value=(64 * GiB) // PAGE).map(lambda n: n * PAGE)
machines = st.sampled_from(MACHINES)
max_below = st.one_of(st.none(), st.integers(1, PFN_4G).map(lambda n: n * PAGE))


@settings(max_examples=200, deadline=None)
@given(ram_sizes, machines, max_below)
def test_split_invariants(ram, machine, mb):
    mm = pc_memory_map(ram, machine, max_ram_below_4g=mb)
    assert mm.below_4g_mem_size + mm.above_4g_mem_size == ram
    assert 0 < mm.lowmem <= 4 * GiB
    assert mm.below_4g_mem_size <= mm.lowmem
    assert mm.lowmem <= mm.max_ram_below_4g
    assert mm.max_pfn - mm.hole_pages == mm.ram_pages
    if mm.above_4g_mem_size:
        assert mm.below_4g_mem_size == mm.lowmem
    segs = layout_segments(mm)
    assert sum(e - s for _, s, e, k in segs if k == "ram") == ram
    assert all(a[2] == b[1] for a, b in zip(segs, segs[1:]))


@settings(max_examples=100, deadline=None)
@given(ram_sizes, machines, max_below, st.lists(st.floats(0, 1, exclude_max=True),
                                                min_size=1, max_size=50))
def test_pfn_round_trip(ram, machine, mb, fractions):
    mm = pc_memory_map(ram, machine, max_ram_below_4g=mb)
    pages = (np.array(fractions) * mm.ram_pages).astype(np.int64)
    pfns = ram_page_to_pfn(mm, pages)
    assert ((pfns < mm.below_4g_pages) | ((pfns >= PFN_4G) & (pfns < mm.max_pfn))).all()
    assert np.array_equal(pfn_to_ram_page(mm, pfns), pages)
    assert ram_page_to_pfn(mm, int(pages[0])) == int(pfns[0])


def _naive_shift(mm, bits, low_mem):
    out = np.zeros(mm.ram_pages, dtype=bool)
    shift = PFN_4G - low_mem // PAGE
    for pfn in np.flatnonzero(bits).tolist():
        if mm.below_4g_pages <= pfn < PFN_4G:
            continue                            # not RAM
        idx = pfn if pfn < PFN_4G else pfn - shift
        if 0 <= idx < mm.ram_pages:
            out[idx] = True
    return out


# small RAM above 4G (<= 64 MiB) keeps the arrays about 1 M entries
small_rams = st.integers(min_value=1, max_value=(64 * MiB) // PAGE).map(lambda n: n * PAGE)


@settings(max_examples=40, deadline=None)
@given(machines, small_rams, st.integers(1, 16).map(lambda n: n * 256 * MiB),
       st.one_of(st.none(), st.integers(1, PFN_4G).map(lambda n: n * PAGE)),
       st.integers(0, 2**32 - 1))
def test_shift_matches_naive(machine, extra, max_below, low_mem, seed):
    mm = pc_memory_map(min(max_below, 4 * GiB) + extra, machine,
                       max_ram_below_4g=min(max_below, 4 * GiB))
    rng = np.random.default_rng(seed)
    bits = np.zeros(mm.max_pfn, dtype=bool)
    bits[rng.integers(0, mm.max_pfn, size=300)] = True
    # make sure the edges are exercised too
    bits[[0, mm.max_pfn - 1]] = True
    if mm.above_4g_pages:
        bits[[mm.below_4g_pages - 1, PFN_4G]] = True
    lm = mm.lowmem if low_mem is None else low_mem
    got = shift_pfn_bitmap(mm, bits, low_mem=low_mem)
    assert np.array_equal(got, _naive_shift(mm, bits, lm))
    if low_mem is None:
        # the correct shift is exactly the frame -> ram page mapping
        ram_frames = np.flatnonzero(bits)
        ram_frames = ram_frames[(ram_frames < mm.below_4g_pages) | (ram_frames >= PFN_4G)]
        assert np.flatnonzero(got).tolist() == pfn_to_ram_page(mm, ram_frames).tolist()


@settings(max_examples=30, deadline=None)
@given(machines, small_rams, st.integers(1, 16).map(lambda n: n * 256 * MiB),
       st.one_of(st.none(), st.integers(1, PFN_4G).map(lambda n: n * PAGE)),
       st.sampled_from([8, 4096, 1 << 16, 1 << 24]), st.integers(0, 2**32 - 1))
def test_packed_shift_is_the_packed_naive_shift_for_any_chunk(machine, extra, max_below, low_mem,
                                                               chunk, seed):
    from kit.bitmap import bitmap_bytes
    from kit.memmap import shift_pfn_bitmap_packed
    mm = pc_memory_map(min(max_below, 4 * GiB) + extra, machine,
                       max_ram_below_4g=min(max_below, 4 * GiB))
    rng = np.random.default_rng(seed)
    bits = rng.random(mm.max_pfn) < 0.001
    bits[[0, mm.max_pfn - 1]] = True
    lm = mm.lowmem if low_mem is None else low_mem
    want = _naive_shift(mm, bits, lm)
    got = shift_pfn_bitmap_packed(mm, bits, low_mem=low_mem, chunk=chunk)
    assert got.dtype == np.uint8 and len(got) == bitmap_bytes(mm.ram_pages)
    # unpacked by hand: bit i % 8 of byte i // 8, least significant first; padding bits zero
    unpacked = ((got[:, None] >> np.arange(8)) & 1).astype(bool).ravel()
    assert np.array_equal(unpacked[:mm.ram_pages], want)
    assert not unpacked[mm.ram_pages:].any()


def test_packed_shift_wants_a_chunk_of_whole_bytes():
    from kit.memmap import shift_pfn_bitmap_packed
    mm = pc_memory_map("64M")
    with pytest.raises(ValueError, match="multiple of 8"):
        shift_pfn_bitmap_packed(mm, np.zeros(mm.max_pfn, bool), chunk=12)
