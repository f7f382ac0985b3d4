"""What the guest did before and during migration.

A :class:`Workload` is a small value: what the guest holds after boot, what ran
and exited before migration, and what it keeps doing while migration runs.
Built in: ``idle`` (just booted: the seed's case 1), ``hog`` (a memory-hungry
process ran and exited just before migration, so free pages hold stale
non-zero data: the seed's case 2) and ``dirtying`` (a program keeps writing a
working set and allocating and freeing memory while migration runs).
Define others with :func:`register_workload` or by passing a ``Workload``.

The sizes of a booted guest (``boot_footprint``, ``boot_stale_free``) and the
share of free memory the hog touched (``hog_fraction``) are fitted to the
seed's transferred bytes by ``bench/calibrate.py``; see ``kit/costmodel.py``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from ..errors import UnknownNameError
from ..units import MiB


@dataclass(frozen=True)
class Workload:
    name: str
    description: str = ""
    # after boot
    boot_footprint: int = 55105 * 4096      # non-zero pages the booted kernel and services hold (bytes)
    boot_stale_free: int = 6781 * 4096      # memory used during boot and freed again, left non-zero (bytes)
    memmap_bytes_per_page: int = 64       # sizeof(struct page): the kernel's mem_map, 1/64 of RAM
    # before migration
    hog_fraction: float = 0.0             # share of free memory a process wrote and released before migration
    hog_unmerged_blocks: int = 0          # 4 MiB blocks of the hog's that its exit leaves not wholly free
    working_set: int = 0                  # bytes a running program holds (allocated and written)
    page_cache: int = 0                   # bytes of clean page cache, scattered over free memory (uptime)
    # during migration
    dirty_rate: float = 0.0               # pages per second written at random in the working set
    churn_rate: float = 0.0               # pages per second freshly allocated and written (older ones freed)
    churn_pool_seconds: float = 1.0       # how long a churned page stays allocated before it is freed

    def __post_init__(self):
        for field in ("boot_footprint", "boot_stale_free", "working_set", "page_cache"):
            if getattr(self, field) < 0:
                raise UnknownNameError(f"workload {self.name!r}: {field} must not be negative")
        if self.hog_unmerged_blocks < 0:
            raise UnknownNameError(f"workload {self.name!r}: hog_unmerged_blocks must not be negative")
        if not 0.0 <= self.hog_fraction <= 1.0:
            raise UnknownNameError(f"workload {self.name!r}: hog_fraction must be between 0 and 1")
        if self.dirty_rate < 0 or self.churn_rate < 0:
            raise UnknownNameError(f"workload {self.name!r}: rates must not be negative")
        if self.dirty_rate and not self.working_set:
            raise UnknownNameError(f"workload {self.name!r}: a dirty_rate needs a working_set to write in")

    @property
    def runs_during_migration(self) -> bool:
        return bool(self.dirty_rate or self.churn_rate)

    def to_dict(self):
        return asdict(self)

    def with_(self, **changes) -> "Workload":
        return replace(self, **changes)


WORKLOADS: dict[str, Workload] = {}


def register_workload(workload: Workload, *, replace_existing: bool = False) -> Workload:
    """Add a workload under its name so the CLI and notebooks can use it."""
    if workload.name in WORKLOADS and not replace_existing:
        raise UnknownNameError(f"a workload named {workload.name!r} exists; pass replace_existing=True")
    WORKLOADS[workload.name] = workload
    return workload


def get_workload(name_or_workload) -> Workload:
    if isinstance(name_or_workload, Workload):
        return name_or_workload
    try:
        return WORKLOADS[name_or_workload]
    except KeyError:
        raise UnknownNameError(f"unknown workload {name_or_workload!r}; choose one of "
                               f"{', '.join(sorted(WORKLOADS))}") from None


register_workload(Workload(
    "idle", "just booted, nothing running: the seed's case 1"))
register_workload(Workload(
    "hog", "a memory-hungry process ran and exited just before migration: the seed's case 2",
    hog_fraction=0.9678))
register_workload(Workload(
    "uptime", "a guest that has been up for a while: 1 GiB of page cache (files read once, "
    "never written since) scattered over its RAM, nothing running during migration",
    page_cache=1024 * MiB))
register_workload(Workload(
    "dirtying", "a program keeps writing a 1 GiB working set (100 MiB/s) and allocating and "
    "freeing 4 MiB/s (each kept for a minute) while migration runs",
    working_set=1024 * MiB, dirty_rate=25600.0, churn_rate=1024.0, churn_pool_seconds=60.0))
