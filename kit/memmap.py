"""Patch 1/4 of the RFC: where a PC guest's RAM sits below and above 4 GiB.

QEMU gives a PC guest its RAM as one RAMBlock, "pc.ram", and maps it into
guest-physical address space through two aliases (``pc_memory_init`` in
QEMU's hw/i386/pc.c):

* "ram-below-4g": RAMBlock offset 0 .. ``below_4g_mem_size`` at guest address 0;
* "ram-above-4g": RAMBlock offset ``below_4g_mem_size`` .. ``ram_size`` at guest
  address 4 GiB (only if ``above_4g_mem_size`` > 0).

Between ``below_4g_mem_size`` and 4 GiB lies address space with no RAM (the
"PCI hole": MMIO windows, PCIe MMCONFIG, the IO-APIC, firmware).  So the guest
numbers its frames by guest-physical address (PFN), while QEMU's dirty and
migration bitmaps count pages by ``ram_addr`` inside pc.ram; above 4 GiB the
two differ by the size of the hole.  The guest cannot work out where the hole
starts by itself, so patch 1 keeps the ``lowmem`` value that the machine init
code computed (new field in ``PCMachineState``, read back by a new
``pc_get_lowmem()``) and patch 2 sends it to the guest, which shifts the frames
above 4 GiB down before setting bits.

How the split is chosen (our paraphrase of QEMU's rules):

* i440fx (``pc_init1`` in hw/i386/pc_piix.c): the machine option
  ``max-ram-below-4g`` defaults to 3.5 GiB (0xe0000000) and is the starting
  ``lowmem``.  If the RAM does not fit below it and the machine type aligns to
  gigabytes (every type after pc-i440fx-1.7), ``lowmem`` is lowered to 3 GiB
  when it is above that, so that 1 GiB-aligned guest addresses above 4 GiB
  land on 1 GiB-aligned host addresses (good for huge pages).  QEMU only warns
  about a user value that is not a multiple of 1 GiB; so do we (silently).
* q35 (``pc_q35_init`` in hw/i386/pc_q35.c): 512 MiB of I/O space plus
  256 MiB of PCIe MMCONFIG must fit below 4 GiB, so ``lowmem`` is 2.75 GiB
  (0xb0000000) if the RAM is smaller than that and 2 GiB (0x80000000)
  otherwise.  ``max-ram-below-4g`` (default 4 GiB) can only lower it.
* Both: if ``ram_size >= lowmem`` the first ``lowmem`` bytes go below 4 GiB
  and the rest above; otherwise all RAM is below 4 GiB.

Examples from QEMU's own comments, reproduced by :func:`pc_memory_map`:
pc-i440fx-1.7 with 4G -> 3584M below, 512M above; pc with 4G -> 3072M/1024M;
pc, max-ram-below-4g=2G, 4G -> 2048M/2048M; pc, max-ram-below-4g=4G, 3968M ->
all 3968M below.

Everything here counts 4 KiB pages (``TARGET_PAGE_SIZE``).  Mapping functions
take numpy integer arrays or plain ints.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .bitmap import bitmap_bytes
from .errors import BitmapLengthError, MachineError, SizeError
from .units import (GiB, MAX_PHYS_BYTES, TARGET_PAGE_BITS, TARGET_PAGE_SIZE, format_size,
                    parse_ram_size, parse_size)

MACHINES = ("pc", "pc-i440fx-1.7", "q35")
"""Machine types the model knows: current i440fx, i440fx before gigabyte
alignment (QEMU 1.7), and current q35."""

FOUR_GIB = 4 * GiB
PFN_4G = FOUR_GIB >> TARGET_PAGE_BITS          # 1 << 20

# chipset, gigabyte_align, default max-ram-below-4g
_MACHINE_RULES = {
    "pc": ("i440fx", True, 0xE0000000),
    "pc-i440fx-1.7": ("i440fx", False, 0xE0000000),
    "q35": ("q35", True, FOUR_GIB),
}
_I440FX_GB_ALIGNED_LOWMEM = 0xC0000000         # 3 GiB
_Q35_SMALL_LOWMEM = 0xB0000000                 # 2.75 GiB, where q35's MMCONFIG starts
_Q35_LARGE_LOWMEM = 0x80000000                 # 2 GiB

_RANGE_TEXT = (f"allowed range is {TARGET_PAGE_SIZE} bytes to 4G "
               f"({FOUR_GIB} bytes), in whole 4 KiB pages")


def _check_machine(machine) -> str:
    if machine not in _MACHINE_RULES:
        raise MachineError(f"unknown machine {machine!r}; known machines: "
                           + ", ".join(MACHINES))
    return machine


def _parse_below_4g(value, what: str) -> int:
    """A value for max-ram-below-4g / low_mem: page aligned, 1 page .. 4 GiB.

    Every problem with it (unreadable, zero, too big, unaligned) is reported as
    :class:`MachineError`, since it is a machine option.
    """
    if _is_zero(value):
        return 0            # QEMU: 0 means "not set", the machine's default (pc_init1, pc_q35_init)
    try:
        nbytes = parse_size(value, what=what, page_aligned=False, limit=None)
    except SizeError as exc:
        raise MachineError(f"{exc}; {_RANGE_TEXT}") from None
    if nbytes > FOUR_GIB or nbytes % TARGET_PAGE_SIZE:
        raise MachineError(f"{what}: got {value!r} = {nbytes} bytes; {_RANGE_TEXT}")
    return nbytes


def _is_zero(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value == 0
    return re.fullmatch(r"\s*0+\s*(?:[KMGTP](?:I?B)?|B)?\s*", str(value), re.IGNORECASE) is not None


@dataclass(frozen=True)
class PCMemoryMap:
    """The RAM split of a PC guest, as QEMU computes it at machine init.

    Byte fields use QEMU's names: ``lowmem`` is the value patch 1 stores in
    ``PCMachineState`` and ``pc_get_lowmem()`` returns; ``below_4g_mem_size``
    and ``above_4g_mem_size`` are the sizes of the two aliases of pc.ram.
    ``max_ram_below_4g`` is the effective machine option (its default filled
    in).  Build one with :func:`pc_memory_map`.

    Page properties count 4 KiB frames.  The invariant
    ``max_pfn - hole_pages == ram_pages`` always holds; it is the sum the RFC's
    guest does (``get_total_pages_count``) to size its bitmap.
    """
    machine: str
    ram_size: int
    max_ram_below_4g: int
    lowmem: int
    below_4g_mem_size: int
    above_4g_mem_size: int

    def __post_init__(self):
        if self.below_4g_mem_size + self.above_4g_mem_size != self.ram_size:
            raise MachineError(
                f"inconsistent memory map: below_4g_mem_size + above_4g_mem_size "
                f"({self.below_4g_mem_size} + {self.above_4g_mem_size}) != ram_size "
                f"({self.ram_size}); build it with pc_memory_map()")
        if self.below_4g_mem_size > FOUR_GIB or (
                self.above_4g_mem_size and self.below_4g_mem_size != self.lowmem):
            raise MachineError(
                "inconsistent memory map: RAM above 4G requires below_4g_mem_size == "
                "lowmem <= 4G; build it with pc_memory_map()")

    # -- pages ---------------------------------------------------------------
    @property
    def ram_pages(self) -> int:
        """Pages in pc.ram, i.e. the length of QEMU's migration bitmap for it."""
        return self.ram_size >> TARGET_PAGE_BITS

    @property
    def below_4g_pages(self) -> int:
        """RAM frames below 4 GiB: PFNs 0 .. below_4g_pages-1."""
        return self.below_4g_mem_size >> TARGET_PAGE_BITS

    @property
    def above_4g_pages(self) -> int:
        """RAM frames from 4 GiB up: PFNs pfn_4g .. max_pfn-1."""
        return self.above_4g_mem_size >> TARGET_PAGE_BITS

    @property
    def pfn_4g(self) -> int:
        """The frame number of guest address 4 GiB (1 << 20), ``PFN_4G`` in the RFC."""
        return PFN_4G

    @property
    def hole_pages(self) -> int:
        """Frames a PFN-indexed bitmap must skip to become ram_addr-indexed.

        This is ``pfn_4g - below_4g_pages`` when there is RAM above 4 GiB and 0
        otherwise: with nothing above 4 GiB, the empty space under 4 GiB lies
        past the last RAM frame, so no frame index needs shifting (the RFC's
        guest likewise subtracts the hole only when ``max_pfn`` reaches 4 GiB).
        The address-space picture (:func:`layout_segments`) still shows that
        space; it is just not counted here.
        """
        return PFN_4G - self.below_4g_pages if self.above_4g_mem_size else 0

    @property
    def max_pfn(self) -> int:
        """One past the highest RAM frame (Linux's ``max_pfn``)."""
        if self.above_4g_mem_size:
            return PFN_4G + self.above_4g_pages
        return self.below_4g_pages

    def to_dict(self) -> dict:
        """The machine, ``ram_size`` and QEMU's three integers, in bytes."""
        return {
            "machine": self.machine,
            "ram_size": self.ram_size,
            "lowmem": self.lowmem,
            "below_4g_mem_size": self.below_4g_mem_size,
            "above_4g_mem_size": self.above_4g_mem_size,
        }


def pc_memory_map(ram_size, machine: str = "pc", max_ram_below_4g=None) -> PCMemoryMap:
    """Split ``ram_size`` between below and above 4 GiB as QEMU does for ``machine``.

    ``ram_size`` is bytes (a positive whole number of 4 KiB pages, else
    :class:`SizeError`) or a string read as QEMU reads ``-m`` ("8G", "3.5G",
    "4096" = 4096 MiB).  ``max_ram_below_4g`` is the machine
    option of that name (bytes or a string; ``None`` or 0 = the machine's default,
    3.5 GiB for i440fx and 4 GiB for q35); it must be page aligned and at most
    4 GiB, else :class:`MachineError`.  See the module docstring for the rules
    (``pc_init1`` in pc_piix.c, ``pc_q35_init`` in pc_q35.c).
    """
    machine = _check_machine(machine)
    ram = parse_ram_size(ram_size, what="ram_size")
    chipset, gigabyte_align, default_max = _MACHINE_RULES[machine]
    max_below = (None if max_ram_below_4g is None
                 else _parse_below_4g(max_ram_below_4g, "max_ram_below_4g")) or default_max

    if chipset == "i440fx":
        lowmem = max_below
        if ram >= max_below and gigabyte_align:
            lowmem = min(lowmem, _I440FX_GB_ALIGNED_LOWMEM)
    else:
        # q35 keeps 512 MiB of PCI I/O space and 256 MiB of MMCONFIG below 4 GiB.
        lowmem = _Q35_LARGE_LOWMEM if ram >= _Q35_SMALL_LOWMEM else _Q35_SMALL_LOWMEM
        lowmem = min(lowmem, max_below)

    if ram >= lowmem:
        below, above = lowmem, ram - lowmem
    else:
        below, above = ram, 0

    top = FOUR_GIB + above if above else below
    if top > MAX_PHYS_BYTES:
        raise SizeError(f"ram_size: {ram_size!r} puts the top of RAM at guest address "
                        f"{top:#x}, beyond x86-64's 52 physical address bits; "
                        f"use less RAM")
    return PCMemoryMap(machine=machine, ram_size=ram, max_ram_below_4g=max_below,
                       lowmem=lowmem, below_4g_mem_size=below, above_4g_mem_size=above)


# -- frame <-> ram page ---------------------------------------------------------

def _int_array(x, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise MachineError(f"{what} must be integers, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise MachineError(f"{what} {int(arr.max())} is far beyond any guest's RAM")
    return arr.astype(np.int64, copy=False)


def _first_bad(arr: np.ndarray, bad: np.ndarray):
    pos = int(np.flatnonzero(bad.reshape(-1))[0])
    return pos, int(arr.reshape(-1)[pos])


def _result(arr_in, out: np.ndarray):
    return int(out) if np.ndim(arr_in) == 0 else out


def pfn_to_ram_page(mm: PCMemoryMap, pfn):
    """Map guest frame numbers to page indices in pc.ram (``ram_addr >> 12``).

    Frames below ``below_4g_pages`` map to themselves; frames from 4 GiB up map
    to ``pfn - (pfn_4g - below_4g_pages)``, following the "ram-above-4g" alias.
    ``pfn`` is an int or an integer array (result: int or int64 array of the
    same shape).  A frame in the hole, past ``max_pfn`` or negative raises
    :class:`MachineError` naming the first such frame.
    """
    p = _int_array(pfn, "frame numbers")
    below, top = mm.below_4g_pages, mm.max_pfn
    bad = (p < 0) | (p >= top) | ((p >= below) & (p < PFN_4G))
    if bad.any():
        pos, val = _first_bad(p, bad)
        where = "" if p.ndim == 0 else f" (element {pos})"
        raise MachineError(
            f"frame {val:#x}{where} is not guest RAM on this {mm.machine} guest: RAM frames "
            f"are [0, {below:#x}) below 4G" +
            (f" and [{PFN_4G:#x}, {top:#x}) above 4G" if mm.above_4g_pages else "") +
            "; frames in between are the PCI hole")
    out = np.where(p < PFN_4G, p, p - (PFN_4G - below))
    return _result(pfn, out)


def ram_page_to_pfn(mm: PCMemoryMap, page):
    """Inverse of :func:`pfn_to_ram_page`: pc.ram page index -> guest frame number.

    Pages ``0 .. below_4g_pages-1`` stay put; later pages go above 4 GiB.
    A page outside ``[0, ram_pages)`` raises :class:`MachineError`.
    """
    r = _int_array(page, "ram page numbers")
    below, n = mm.below_4g_pages, mm.ram_pages
    bad = (r < 0) | (r >= n)
    if bad.any():
        pos, val = _first_bad(r, bad)
        where = "" if r.ndim == 0 else f" (element {pos})"
        raise MachineError(f"ram page {val}{where} is outside pc.ram, which has "
                           f"{n} pages (0 .. {n - 1})")
    out = np.where(r < below, r, r + (PFN_4G - below))
    return _result(page, out)


# -- the guest's bitmap --------------------------------------------------------

def shift_pfn_bitmap(mm: PCMemoryMap, pfn_bits, low_mem=None) -> np.ndarray:
    """Turn a PFN-indexed bitmap into a pc.ram-indexed one, as the RFC's guest does.

    ``pfn_bits`` is a 1-D bool array of length ``mm.max_pfn`` (else
    :class:`BitmapLengthError`), e.g. "this frame is free".  The result is a
    bool array of length ``mm.ram_pages``:

    * frames below 4 GiB keep their index;
    * frames from 4 GiB up move down by ``pfn_4g - (low_mem >> 12)``;
    * bits for frames in the real hole (``below_4g_pages .. pfn_4g``) are
      ignored: they are not RAM, and a real guest's free lists never hold them.

    ``low_mem`` (bytes or a size string, page aligned, at most 4 GiB) is what
    QEMU told the guest; by default the correct value, ``mm.lowmem``, which
    equals ``below_4g_mem_size`` whenever there is RAM above 4 GiB (with no RAM
    above 4 GiB nothing is shifted, so the value does not matter).

    A *wrong* ``low_mem`` (what a guest would face without patch 1) is applied
    as given, without an error: shifted bits that fall outside ``[0,
    ram_pages)`` are dropped, bits shifted onto pages below 4 GiB are OR-ed in
    (the guest just sets the bit again), and pages no frame lands on stay False.
    The real guest would also size its bitmap from the wrong value; here the
    result always has QEMU's length, to show which pages QEMU would skip.

    Works with slices only (no per-page loop, no index arrays), so it stays
    fast for a 1 TiB guest (268 M pages).
    """
    bits, shift = _shift_args(mm, pfn_bits, low_mem)
    out = np.empty(mm.ram_pages, dtype=bool)
    _shift_into(mm, bits, shift, 0, mm.ram_pages, out)
    return out


def shift_pfn_bitmap_packed(mm: PCMemoryMap, pfn_bits, low_mem=None, *, chunk=1 << 24) -> np.ndarray:
    """``pack_bitmap(shift_pfn_bitmap(mm, pfn_bits, low_mem))``, built ``chunk`` pages at a
    time, so no bool array as long as RAM is made (a 1 TiB guest's would be 256 MiB).

    Returns ``uint8`` bytes in the guest's layout (:mod:`kit.bitmap`): page ``i`` is bit
    ``i % 8`` of byte ``i // 8``, padded with zero bits to whole 64-bit words."""
    if chunk <= 0 or chunk % 8:
        raise ValueError(f"shift_pfn_bitmap_packed: chunk must be a positive multiple of 8, got {chunk}")
    bits, shift = _shift_args(mm, pfn_bits, low_mem)
    n = mm.ram_pages
    out = np.zeros(bitmap_bytes(n), dtype=np.uint8)
    buf = np.empty(min(chunk, n), dtype=bool)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        _shift_into(mm, bits, shift, a, b, buf)
        packed = np.packbits(buf[:b - a], bitorder="little")
        out[a // 8:a // 8 + len(packed)] = packed
    return out


def _shift_args(mm: PCMemoryMap, pfn_bits, low_mem):
    """The checked bool PFN bitmap and the shift (in frames) for :func:`shift_pfn_bitmap`."""
    bits = np.asarray(pfn_bits)
    if bits.ndim != 1 or bits.shape[0] != mm.max_pfn:
        raise BitmapLengthError(
            f"PFN bitmap must be 1-D with one entry per guest frame, i.e. length "
            f"max_pfn = {mm.max_pfn} for this {mm.machine} guest with "
            f"{format_size(mm.ram_size)} of RAM; got shape {bits.shape}. Index it by "
            f"guest frame number, including the {mm.hole_pages} hole frames")
    if bits.dtype != np.bool_:
        bits = bits.astype(bool)
    low = mm.lowmem if low_mem is None else _parse_below_4g(low_mem, "low_mem")
    return bits, PFN_4G - (low >> TARGET_PAGE_BITS)


def _shift_into(mm: PCMemoryMap, bits, shift: int, a: int, b: int, out) -> None:
    """Write pages [a, b) of the shifted bitmap into ``out[:b - a]``: cleared first (a write,
    so a fresh array is never read before it is written), then frames below 4 GiB copied,
    then frames from 4 GiB up OR-ed in ``shift`` pages lower."""
    below = mm.below_4g_pages
    out[:b - a] = False
    x, y = a, min(below, b)
    if x < y:
        out[x - a:y - a] = bits[x:y]
    if mm.above_4g_pages:
        # frames [PFN_4G, max_pfn) land on [PFN_4G - shift, max_pfn - shift); keep the part
        # inside [0, ram_pages).  PFN_4G - shift = low pages >= 0.
        x = max(PFN_4G - shift, a)
        y = min(mm.max_pfn - shift, mm.ram_pages, b)
        if x < y:
            out[x - a:y - a] |= bits[x + shift:y + shift]


# -- picture -----------------------------------------------------------------

def layout_segments(mm: PCMemoryMap) -> list[tuple[str, int, int, str]]:
    """Guest-physical address ranges for drawing the layout to scale.

    Returns ``(name, start_gpa, end_gpa, kind)`` tuples, ``end`` exclusive,
    ``kind`` "ram" or "hole": "RAM below 4G" [0, below_4g_mem_size), "PCI hole"
    [below_4g_mem_size, 4 GiB) when that is not empty, and "RAM above 4G"
    [4 GiB, 4 GiB + above_4g_mem_size) when there is RAM there.  The hole is
    drawn as one block of non-RAM address space (the legacy VGA/BIOS window
    under 1 MiB, which overlays pc.ram, is not shown).
    """
    segs = [("RAM below 4G", 0, mm.below_4g_mem_size, "ram")]
    if mm.below_4g_mem_size < FOUR_GIB:
        segs.append(("PCI hole", mm.below_4g_mem_size, FOUR_GIB, "hole"))
    if mm.above_4g_mem_size:
        segs.append(("RAM above 4G", FOUR_GIB, FOUR_GIB + mm.above_4g_mem_size, "ram"))
    return segs


__all__ = ["MACHINES", "PFN_4G", "PCMemoryMap", "pc_memory_map", "pfn_to_ram_page",
           "ram_page_to_pfn", "shift_pfn_bitmap", "shift_pfn_bitmap_packed", "layout_segments"]
