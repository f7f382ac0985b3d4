"""One scenario, one run: the only door into the model.

A :class:`Scenario` is a frozen value that holds everything a migration depends
on: the machine and its RAM, the guest's workload, the mode, the cost model,
the seed, an injected fault and the options.  It echoes itself
(:meth:`Scenario.echo`, every parameter, as the OSTEP simulators do) and
round-trips through JSON.

* :func:`run` builds the guest and the migration, runs it to the end and
  returns a :class:`Result`.  Runs are cached by the *whole* scenario value (its
  JSON), so two scenarios that differ in any field, a cost model's wire rate
  included, never share a result.  A result handed out is a copy: changing it
  changes nothing in the cache.
* :func:`build` builds the same guest and migration without running it, for
  pictures and widgets that step through a migration (``step()``,
  ``run(until=...)``) or read it afterwards (``m.guest``, ``m.bmap``).
* :func:`guest` builds only the guest, as :func:`build` would.

The CLI, the notebooks, the exercises, the viz modules, ``kit.beyond``, the lab
model, the calibration and the benchmarks all come through here; nothing else
builds a guest and a migration.  A run never changes its scenario, and the
migration works on a guest that :func:`build` made for it alone.
"""
from __future__ import annotations

import copy
import json
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from .balloon import features_to_mask
from .costmodel import CostModel, get_preset
from .errors import KitError, UnknownNameError
from .guest import Guest, Workload, get_workload
from .memmap import pc_memory_map
from .units import MiB, TARGET_PAGE_SIZE, format_size, parse_ram_size, parse_size

MODES = ("original", "pv", "hint", "report")
# Who does a workload's device writes (``dma_mib_s``): a device QEMU emulates (its writes reach
# dirty_memory at once) or a vhost backend (its own log, synced with KVM's).  See kit/dma.py.
DMA_WRITERS = ("emulated", "vhost")
# How mode "pv" applies the guest's free bitmap: as the RFC does, or a candidate repair.
RFC_FILTERS = ("overwrite", "and", "hold-bql", "migration-bitmap")
# Which modes each injected fault applies to.  All four act on the RFC's free-page
# request (patch 4's order, the guest's reply, patch 1's shift, the guest's walk).
INJECTIONS = {
    "free-pages-before-dirty-log": ("pv",),
    "guest-reports-used-pages-free": ("pv",),
    "wrong-lowmem": ("pv",),
    "guest-hangs": ("pv",),
}


@dataclass(frozen=True)
class Scenario:
    """Everything one migration depends on.  Sizes are bytes; ``ram`` may be a string read as
    QEMU reads ``-m`` (:func:`kit.units.parse_ram_size`: "8G", "3.5G", "4096" = 4096 MiB),
    other sizes with :func:`kit.units.parse_size`.  ``workload`` and ``cost`` may be given by
    name."""
    ram: int = 8 << 30
    workload: Workload = "idle"
    mode: str = "original"
    machine: str = "pc"
    max_ram_below_4g: int | None = None
    cost: CostModel = "seed-2016"
    seed: int = 0
    inject: str | None = None
    verify: bool = False
    track_pages: bool = False
    vga_vram: int = 16 * MiB                     # a second RAMBlock after pc.ram (0: none, as -nodefaults)
    max_time_s: float = 3600.0                   # give up on a migration that does not converge
    lie_fraction: float = 0.01                   # with guest-reports-used-pages-free
    guest_features: int | None = None            # the guest balloon driver's features (None: all)
    free_page_wait_timeout_s: float | None = None  # None waits forever, as the RFC does
    balloon_target: int | None = None            # inflate the balloon until the guest keeps this much
    program_at: int | None = None                # after boot, a program allocates and writes
    program_bytes: int = 0                       # program_bytes from guest-physical program_at up
    dma_mib_s: float = 0.0                       # a disk read: MiB/s of page-cache pages filled by DMA
    dma_writer: str = "emulated"                 # "emulated" (dirty_memory at once) or "vhost" (its log)
    rfc_filter: str = "overwrite"                # mode pv: the RFC's filter, or a candidate repair

    def __post_init__(self):
        s = object.__setattr__
        s(self, "ram", parse_ram_size(self.ram, what="ram"))       # strings as QEMU reads -m
        if self.max_ram_below_4g is not None and not isinstance(self.max_ram_below_4g, int):
            s(self, "max_ram_below_4g", parse_size(self.max_ram_below_4g, what="max_ram_below_4g"))
        if self.balloon_target is not None:
            s(self, "balloon_target", parse_size(self.balloon_target, what="balloon_target",
                                                 page_aligned=False))
        if self.program_at is not None:
            s(self, "program_at", _size_or_zero(self.program_at, "program_at"))
        s(self, "program_bytes", _size_or_zero(self.program_bytes, "program_bytes"))
        if self.program_bytes and self.program_at is None:
            raise KitError("program_bytes needs program_at: the guest-physical address the program's "
                           "pages start from")
        if self.guest_features is not None:
            s(self, "guest_features", features_to_mask(self.guest_features))
        s(self, "workload", get_workload(self.workload))
        s(self, "cost", get_preset(self.cost))
        if self.mode not in MODES:
            raise UnknownNameError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.inject is not None:
            if self.inject not in INJECTIONS:
                raise UnknownNameError(f"unknown injection {self.inject!r}; choose one of "
                                       f"{', '.join(INJECTIONS)}")
            if self.mode not in INJECTIONS[self.inject]:
                raise KitError(f"injection {self.inject!r} acts on the RFC's free-page request, which "
                               f"mode {self.mode!r} does not make; use it with mode "
                               f"{' or '.join(INJECTIONS[self.inject])}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise KitError(f"seed must be a whole number >= 0, got {self.seed!r}")
        s(self, "seed", int(self.seed))
        if self.vga_vram < 0 or self.vga_vram % TARGET_PAGE_SIZE:
            raise KitError("vga_vram must be a non-negative whole number of 4 KiB pages")
        if not self.max_time_s > 0:
            raise KitError(f"max_time_s must be positive, got {self.max_time_s!r}")
        from .migration import check_device_writes
        check_device_writes(self.dma_mib_s, self.dma_writer, self.rfc_filter, self.mode)
        s(self, "dma_mib_s", float(self.dma_mib_s))

    # -- a value ---------------------------------------------------------------------
    def with_(self, **changes) -> "Scenario":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        """Every field, with the workload and the cost model written out in full."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["workload"] = self.workload.to_dict()
        d["cost"] = self.cost.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Scenario":
        d = dict(d)
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise KitError(f"scenario: unknown field(s) {', '.join(sorted(unknown))}")
        if isinstance(d.get("workload"), dict):
            d["workload"] = Workload(**d["workload"])
        if isinstance(d.get("cost"), dict):
            d["cost"] = CostModel(**d["cost"])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Scenario":
        return cls.from_dict(json.loads(text))

    def key(self) -> str:
        """The cache key: the whole value, as JSON (a cost model's sources included)."""
        return self.to_json()

    def echo(self) -> str:
        """Every parameter on a few lines, as a run prints it before its results."""
        w, c = self.workload, self.cost
        wname = w.name if _registered(w) else f"{w.name} (changed: {_changed(w, get_workload(w.name))})" \
            if _known_workload(w.name) else f"{w.name} (custom)"
        cname = c.name if _is_preset(c) else f"{c.name} (changed: {_changed(c, get_preset(c.name))})" \
            if _known_preset(c.name) else f"{c.name} (custom)"
        below = "default" if self.max_ram_below_4g is None else format_size(self.max_ram_below_4g)
        opts = [f"ram={format_size(self.ram)}", f"machine={self.machine}", f"max-ram-below-4g={below}",
                f"workload={wname}", f"mode={self.mode}", f"cost={cname}", f"seed={self.seed}"]
        more = [f"inject={self.inject or 'none'}", f"verify={'on' if self.verify else 'off'}",
                f"vga-vram={format_size(self.vga_vram) if self.vga_vram else '0'}",
                f"max-time={self.max_time_s:g}s"]
        if self.inject == "guest-reports-used-pages-free":
            more.append(f"lie-fraction={self.lie_fraction:g}")
        if self.guest_features is not None:
            more.append(f"guest-features={self.guest_features:#x}")
        if self.free_page_wait_timeout_s is not None:
            more.append(f"free-page-wait-timeout={self.free_page_wait_timeout_s:g}s")
        if self.balloon_target is not None:
            more.append(f"balloon-target={format_size(self.balloon_target)}")
        if self.program_at is not None:
            more.append(f"program={format_size(self.program_bytes)}@{self.program_at:#x}")
        if self.dma_mib_s:
            more.append(f"dma={self.dma_mib_s:g}MiB/s({self.dma_writer})")
        if self.rfc_filter != "overwrite":
            more.append(f"rfc-filter={self.rfc_filter}")
        return "scenario: " + " ".join(opts) + "\n          " + " ".join(more)


def _size_or_zero(value, what) -> int:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value == 0:
        return 0
    return parse_size(value, what=what, page_aligned=False)


def _registered(w) -> bool:
    return _known_workload(w.name) and get_workload(w.name) == w


def _known_workload(name) -> bool:
    try:
        get_workload(name)
        return True
    except UnknownNameError:
        return False


def _known_preset(name) -> bool:
    try:
        get_preset(name)
        return True
    except UnknownNameError:
        return False


def _is_preset(c) -> bool:
    return _known_preset(c.name) and get_preset(c.name).to_dict() == c.to_dict()


def _changed(a, b) -> str:
    da, db = asdict(a), asdict(b)
    keys = [k for k in da if k != "sources" and da[k] != db.get(k)]
    return ", ".join(keys) or "sources"


# ---------------------------------------------------------------------------- building
# Booted guests, by everything a guest depends on: the modes of one sweep point, the four
# designs of a comparison and a widget's replays all start from the same guest, so it boots
# once and each build gets a copy (an 8 GiB guest boots in about 60 ms, copies in about 5 ms).
_GUESTS: "OrderedDict[str, Guest]" = OrderedDict()
GUEST_CACHE_FRAMES = 1 << 26         # at most this many frames kept (64 M: 256 GiB of guests)
GUEST_CACHE_MAX = GUEST_CACHE_FRAMES // 3   # a guest up to this size is kept (a 64 GiB sweep point's)


def _guest_key(s: Scenario, workload: Workload) -> str:
    return json.dumps([s.ram, s.machine, s.max_ram_below_4g, asdict(workload), s.seed, s.program_at,
                       s.program_bytes, s.balloon_target], sort_keys=True, default=str)


def guest(s: Scenario) -> Guest:
    """The scenario's guest, freshly booted and prepared (nothing has migrated).

    Each call returns a guest of its own (a copy of a cached booted one, which is the same
    guest: same pages, free lists and random generator state)."""
    workload = s.cost.workload_for(s.workload)
    key = _guest_key(s, workload)
    if key in _GUESTS:
        _GUESTS.move_to_end(key)
        return _GUESTS[key].copy()
    g = _boot_guest(s, workload)
    frames = g.memory.nframes
    if frames <= GUEST_CACHE_MAX:
        _GUESTS[key] = g.copy()
        while sum(x.memory.nframes for x in _GUESTS.values()) > GUEST_CACHE_FRAMES:
            _GUESTS.popitem(last=False)
    return g


def _boot_guest(s: Scenario, workload: Workload) -> Guest:
    mm = pc_memory_map(s.ram, s.machine, s.max_ram_below_4g)
    g = Guest(mm, workload, seed=s.seed)
    if s.program_at is not None:
        # the kernel may hand a program any free frame: place the runtime allocator's cursor
        g.buddy.cursor = s.program_at // TARGET_PAGE_SIZE
        g.allocate_and_write(s.program_bytes // TARGET_PAGE_SIZE)
    if s.balloon_target is not None:
        g.inflate_balloon(s.balloon_target)
    return g


def build(s: Scenario, *, guest: Guest | None = None):
    """The scenario's migration, set up and not yet run: ``step()`` or ``run(until=...)`` it.

    ``guest``: migrate a copy of this guest instead of building the scenario's (for old code
    that hands a widget a guest factory).  Its memory map must be the scenario's; the
    scenario then gives the mode, the cost model and the options, and its seed seeds the
    migration's own choices (the lying guest's pages)."""
    from .migration import Migration
    if guest is not None:
        mm = pc_memory_map(s.ram, s.machine, s.max_ram_below_4g)
        if guest.mm != mm:
            raise KitError(f"build(guest=...): the guest's memory map ({guest.mm.machine}, "
                           f"{format_size(guest.mm.ram_size)}) is not the scenario's "
                           f"({s.machine}, {format_size(s.ram)})")
    return Migration(_guest_of(s) if guest is None else guest, s.mode, s.cost, verify=s.verify,
                     inject=s.inject, vga_vram=s.vga_vram, track_pages=s.track_pages,
                     max_time_s=s.max_time_s, lie_fraction=s.lie_fraction,
                     guest_features=s.guest_features,
                     free_page_wait_timeout_s=s.free_page_wait_timeout_s, seed=s.seed,
                     owns_guest=guest is None, scenario=s, dma_mib_s=s.dma_mib_s,
                     dma_writer=s.dma_writer, rfc_filter=s.rfc_filter)


_guest_of = guest


@dataclass(frozen=True)
class Result:
    """What one run gives: ``stats`` (named as QEMU's ``query-migrate``), the ``timeline`` of
    events, and, with ``track_pages``, ``page_state`` (read-only, in ram_addr order)."""
    scenario: Scenario
    stats: dict
    timeline: list = field(repr=False)
    page_state: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __getitem__(self, key):
        return self.stats[key]

    @property
    def completed(self) -> bool:
        return self.stats["status"] == "completed"

    def copy(self) -> "Result":
        return Result(self.scenario, copy.deepcopy(self.stats), copy_timeline(self.timeline), self.page_state)


_ATOMS = frozenset((int, float, str, bool, type(None), np.int64, np.float64, np.bool_))


def copy_timeline(timeline: list) -> list:
    """``copy.deepcopy(timeline)``, faster: an event whose values are all numbers, strings or
    None is copied as a dict (a run has one event per iteration, thousands for a big guest)."""
    return [dict(e) if all(type(v) in _ATOMS for v in e.values()) else copy.deepcopy(e)
            for e in timeline]


def result_of(m) -> Result:
    """Package a finished (or stopped) migration as a :class:`Result`."""
    ps = None
    if m.page_state is not None:
        ps = m.page_state.copy()
        ps.setflags(write=False)
    return Result(m.scenario, m.query_migrate(), copy_timeline(m.timeline), ps)


_CACHE: "OrderedDict[str, Result]" = OrderedDict()
CACHE_SIZE = 512


def run(s: Scenario, *, cache: bool = True) -> Result:
    """Build and run the scenario to the end (completed, stalled or not converged).

    Cached by the whole scenario value; the result is a copy."""
    if not isinstance(s, Scenario):
        raise KitError(f"run() takes a Scenario, got {type(s).__name__}; build one with Scenario(...)")
    key = s.key() if cache else None
    if key is not None and key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key].copy()
    m = build(s)
    m.run()
    r = result_of(m)
    if key is not None:
        _CACHE[key] = r
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
        return r.copy()
    return r


def clear_cache() -> None:
    _CACHE.clear()
    _GUESTS.clear()
