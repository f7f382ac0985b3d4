"""The guest's RAM at page granularity, and KVM's dirty log over it.

Arrays are indexed by guest frame number (PFN), padded to a whole number of
MAX_ORDER blocks, so the buddy allocator can look at aligned blocks with a
reshape.  Frames in the PCI hole exist in the arrays but are not RAM
(:meth:`GuestMemory.is_ram` is False there).  QEMU's own view, indexed by ``ram_addr``, is two
slices of these arrays (the "ram-below-4g" and "ram-above-4g" aliases of
pc.ram); :meth:`GuestMemory.ram_segments` gives them.

Each page carries:

* ``version`` - a counter bumped on every write, so a destination copy can be
  checked page by page.  It is 16 bits wide to keep a 1 TiB guest within
  memory; two versions that differ by exactly a multiple of 65536 writes would
  look equal (the model never comes near that);
* ``zero``    - whether its content is all zero bytes (what ``is_zero_range``
  would find); it decides 9 bytes versus 4104 bytes on the wire.  It is not
  stored: a page reads zero if it was never written (version 0) or if zeros
  are what it last got (``zeroed``: written with zeros, or discarded by the
  host).  So a guest whose pages are written only with data (the common case)
  needs no per-frame array for it.  (A page written a multiple of 65536 times
  would read zero; as above, the model never comes near that.)

Writes come from two kinds of writer.  A vCPU write (:meth:`GuestMemory.write`) goes
into KVM's dirty log.  A device write (:meth:`GuestMemory.device_write`: DMA by a
device QEMU emulates, or by a vhost backend) never reaches KVM's log: it goes into
``device_log``, and the migration decides where that lands (``dirty_memory`` at once
for an emulated device, vhost's own log for vhost; see :mod:`kit.dirty`).
"""
from __future__ import annotations

import numpy as np

from ..errors import KitError
from ..memmap import PCMemoryMap

MAX_ORDER = 11                      # Linux 4.5: orders 0..10, 4 MiB blocks on x86-64
MAX_ORDER_NR_PAGES = 1 << (MAX_ORDER - 1)
VERSION_DTYPE = np.uint16


def sorted_unique(a: np.ndarray, bound: int | None = None) -> np.ndarray:
    """``np.unique(a)`` for non-negative integers, faster: a mask of ``bound`` entries when ``a``
    is dense in ``[0, bound)``, else a sort (numpy 2's hash-based ``np.unique`` took 4 s for 3 M
    frames, a sort 0.2 s, a mask 0.02 s)."""
    a = np.asarray(a, dtype=np.int64).ravel()
    if not len(a):
        return a.copy()
    if bound is not None and len(a) * 16 >= bound:
        mask = np.zeros(bound, dtype=bool)
        mask[a] = True
        return np.flatnonzero(mask).astype(np.int64, copy=False)
    s = np.sort(a)
    keep = np.empty(len(s), dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def mask_span(mask: np.ndarray) -> tuple[int, int]:
    """``[lo, hi)``: the shortest range of a bool mask that holds all its set entries
    (``(0, 0)`` if none), so a caller can work on that slice alone.

    ``argmax`` stops at the first set entry; the last one is found by scanning down from the
    top in chunks (a boot's allocations sit low in a big guest's RAM)."""
    lo = int(mask.argmax()) if len(mask) else 0
    if not len(mask) or not mask[lo]:
        return 0, 0
    chunk, hi = 1 << 20, len(mask)
    while not mask[max(lo, hi - chunk):hi].any():
        hi = max(lo, hi - chunk)
    tail = mask[max(lo, hi - chunk):hi]
    return lo, hi - int(tail[::-1].argmax())


def own_arrays(obj, names) -> None:
    """For each named array attribute of ``obj`` that is shared with a copy (read-only), give
    ``obj`` a writable copy of its own (``None`` attributes are left alone)."""
    for name in names:
        a = getattr(obj, name)
        if a is not None and not a.flags.writeable:
            setattr(obj, name, a.copy())


class DirtyLog:
    """KVM's dirty log: which guest frames were written since QEMU last fetched it.

    KVM keeps one bitmap per memory slot (here: RAM below 4G and RAM above 4G),
    indexed by frame within the slot.  Model simplification: we keep the list
    of written frames since the last fetch instead, which is the same
    information and costs memory only for pages actually written (a 1 TiB guest
    would otherwise need another 256 MiB).  ``memory_global_dirty_log_start``
    turns it on; ``migration_bitmap_sync`` fetches and clears it.
    """

    def __init__(self, nframes: int):
        self.nframes = nframes
        self.enabled = False
        self._written = []

    def start(self):
        self.enabled = True
        self._written = []

    def stop(self):
        self.enabled = False
        self._written = []

    def mark(self, frames):
        if isinstance(frames, slice):
            a, b, _ = frames.indices(self.nframes)
            self._written.append(np.arange(a, b, dtype=np.int64))
        else:
            frames = np.asarray(frames)
            if frames.dtype == bool:
                lo, hi = mask_span(frames)
                self._written.append(np.flatnonzero(frames[lo:hi]) + lo)
            else:
                self._written.append(frames.astype(np.int64, copy=False))

    @property
    def pending(self) -> int:
        """Frames logged since the last fetch (counting repeats)."""
        return sum(len(w) for w in self._written)

    def fetch_and_clear(self) -> np.ndarray:
        """Return the written frames (sorted, unique) and clear the log, like KVM_GET_DIRTY_LOG."""
        if not self._written:
            return np.zeros(0, np.int64)
        out = sorted_unique(np.concatenate(self._written), self.nframes)
        self._written = []
        return out


class GuestMemory:
    """Guest RAM: zero flag and write version per frame, writes logged in a :class:`DirtyLog`."""

    def __init__(self, mm: PCMemoryMap):
        self.mm = mm
        nframes = -(-mm.max_pfn // MAX_ORDER_NR_PAGES) * MAX_ORDER_NR_PAGES
        self.nframes = nframes
        self.version = np.zeros(nframes, dtype=VERSION_DTYPE)
        self.zeroed = None               # frames whose last content is zeros although written (made on first use)
        self.dirty_log = DirtyLog(nframes)
        self.device_log = DirtyLog(nframes)  # device writes since the migration last took them
        self.device_written = None       # frames a device ever wrote (bool mask, made on first use)
        self.writes = 0                  # pages written, for statistics

    # -- sharing with copies ---------------------------------------------------
    PAGE_ARRAYS = ("zeroed", "version", "device_written")

    def page_arrays(self) -> list:
        """The per-frame arrays (what :meth:`kit.guest.Guest.copy` shares until one side writes)."""
        return [a for a in (getattr(self, n) for n in self.PAGE_ARRAYS) if a is not None]

    def own(self, *names) -> None:
        """Before writing an array in place: if it is shared with a copy (read-only), take a
        copy of it for this guest alone.  With no names, every per-frame array."""
        own_arrays(self, names or self.PAGE_ARRAYS)

    # -- which pages read zero --------------------------------------------------
    @property
    def zero(self) -> np.ndarray:
        """Per frame, whether the page reads as all zero bytes: a new, read-only array each
        time (write pages with :meth:`write`, or mark them with :meth:`set_zero`)."""
        z = self.zero_of(slice(None))
        z.flags.writeable = False
        return z

    def zero_of(self, frames) -> np.ndarray:
        """:attr:`zero` of the given frames only (a slice or an index array)."""
        z = self.version[frames] == 0
        if self.zeroed is not None:
            z |= self.zeroed[frames]
        return z

    def set_zero(self, frames) -> None:
        """The given frames (slice, index array or bool mask) now read zero (their version
        is left alone): the host discarded them, or a write put zeros there."""
        if self.zeroed is None:
            self.zeroed = np.zeros(self.nframes, dtype=bool)
        self._mark_zeroed(frames, True)

    def _mark_zeroed(self, frames, value: bool) -> None:
        """Set ``zeroed`` of the given frames to ``value`` (False: they got data); nothing to
        do for False while no page has been zeroed."""
        if self.zeroed is None:
            return
        self.own("zeroed")
        if isinstance(frames, np.ndarray) and frames.dtype == bool:
            lo, hi = mask_span(frames)
            z, m = self.zeroed[lo:hi], frames[lo:hi]
            if value:
                np.logical_or(z, m, out=z)
            else:
                np.greater(z, m, out=z)               # zeroed and not written
        else:
            self.zeroed[frames] = value

    # -- layout ---------------------------------------------------------------
    def pfn_ranges(self):
        """The RAM frame ranges [start, stop) in PFN space: below 4G, then above 4G."""
        mm = self.mm
        out = [(0, mm.below_4g_pages)]
        if mm.above_4g_pages:
            out.append((mm.pfn_4g, mm.pfn_4g + mm.above_4g_pages))
        return out

    def ram_segments(self):
        """(ram_page_start, ram_page_stop, pfn_start) for each alias of pc.ram."""
        out, ram = [], 0
        for start, stop in self.pfn_ranges():
            out.append((ram, ram + stop - start, start))
            ram += stop - start
        return out

    def to_ram_order(self, frame_array: np.ndarray) -> np.ndarray:
        """Copy a PFN-indexed array into ram_addr order (length ram_pages)."""
        return np.concatenate([frame_array[a:b] for a, b in self.pfn_ranges()])

    def ram_slice_to_frames(self, start: int, stop: int):
        """Split the ram page range [start, stop) into PFN slices: [(ram_a, ram_b, pfn_a)]."""
        out = []
        for ra, rb, pa in self.ram_segments():
            a, b = max(start, ra), min(stop, rb)
            if a < b:
                out.append((a, b, pa + a - ra))
        return out

    # -- writes -----------------------------------------------------------------
    def is_ram(self, frames: np.ndarray) -> np.ndarray:
        """For each frame number, whether it is RAM (not in the PCI hole, not beyond the end)."""
        mm = self.mm
        return (frames >= 0) & ((frames < mm.below_4g_pages) |
                                ((frames >= mm.pfn_4g) & (frames < mm.pfn_4g + mm.above_4g_pages)))

    def present_mask(self) -> np.ndarray:
        """A bool frame mask of the RAM frames (computed on demand, not stored)."""
        mask = np.zeros(self.nframes, dtype=bool)
        for a, b in self.pfn_ranges():
            mask[a:b] = True
        return mask

    def _check_ram(self, frames):
        if isinstance(frames, slice):
            a, b, step = frames.indices(self.nframes)
            inside = a >= b or any(lo <= a and b <= hi for lo, hi in self.pfn_ranges())
            return step == 1 and inside, max(0, b - a)
        frames = np.asarray(frames)
        if frames.dtype == bool:
            if frames.shape != (self.nframes,):
                raise KitError("a frame mask must cover every frame of the guest")
            lo, hi = mask_span(frames)
            bad = any(frames[max(a, lo):min(b, hi)].any() for a, b in self._holes())
            return not bad, int(np.count_nonzero(frames[lo:hi]))
        return bool(self.is_ram(frames).all()), int(frames.size)

    def _holes(self):
        edges = [0] + [x for r in self.pfn_ranges() for x in r] + [self.nframes]
        return [(edges[i], edges[i + 1]) for i in range(0, len(edges), 2) if edges[i] < edges[i + 1]]

    def write(self, frames, zero: bool = False):
        """The guest writes the given frames (slice, index array or bool mask).

        ``zero=True`` writes zeros (e.g. clearing a page); otherwise the page
        gets non-zero data.  A write to a frame that is not RAM is a bug in the
        caller and raises.  While dirty logging is on, KVM logs the frames.
        """
        ok, n = self._check_ram(frames)
        if not ok:
            raise KitError("guest wrote a frame that is not RAM (in the PCI hole or beyond)")
        self.own("version")
        if isinstance(frames, np.ndarray) and frames.dtype == bool:
            # a ufunc over the mask's span: several times faster than masked assignment at 1 TiB
            lo, hi = mask_span(frames)
            version = self.version[lo:hi]
            np.add(version, frames[lo:hi], out=version, casting="unsafe")
        else:
            self.version[frames] += VERSION_DTYPE(1)
        if zero:
            self.set_zero(frames)
        else:
            self._mark_zeroed(frames, False)
        if self.dirty_log.enabled:
            self.dirty_log.mark(frames)
        self.writes += n
        return n

    def device_write(self, frames: np.ndarray) -> int:
        """A device writes the given frames (an index array) with non-zero data, by DMA.

        KVM's dirty log does not see it: KVM logs only writes the guest's vCPUs make through
        its page tables, and a device writes through QEMU's (or vhost's) own mapping of guest
        RAM.  While logging is on the frames go into ``device_log`` instead.
        """
        frames = np.asarray(frames, np.int64)
        if not bool(self.is_ram(frames).all()):
            raise KitError("a device wrote a frame that is not RAM (in the PCI hole or beyond)")
        self.own()
        self.version[frames] += VERSION_DTYPE(1)
        self._mark_zeroed(frames, False)
        if self.device_written is None:
            self.device_written = np.zeros(self.nframes, bool)
        self.device_written[frames] = True
        if self.device_log.enabled:
            self.device_log.mark(frames)
        self.writes += int(frames.size)
        return int(frames.size)
