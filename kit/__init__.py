"""pv-migration-kit: a page-granular model of the 2016 QEMU RFC
"A PV solution for live migration optimization" (Liang Li), for teaching."""
import os as _os

__version__ = "0.1.0"


def _plain_pages_for_numpy() -> None:
    """Ask numpy not to request transparent huge pages for big arrays (``madvise``).

    The kit's big arrays (a 1 TiB guest has 268 M frames) are written once and soon freed.
    On the virtual machine the kit was measured on, the kernel's first touch of such arrays as
    huge pages took about 1.3 times the system time of plain 4 KiB pages in a fresh process,
    and 1.7 times in notebook 05's kernel after its other cells (``bench/bench_hugepages.py``).
    Only speed changes, never a result.  Set ``NUMPY_MADVISE_HUGEPAGE`` (numpy's own switch,
    read when numpy is imported) to keep numpy's choice instead."""
    if "NUMPY_MADVISE_HUGEPAGE" in _os.environ:
        return
    import numpy
    toggle = getattr(getattr(getattr(numpy, "_core", None), "multiarray", None),
                     "_set_madvise_hugepage", None)
    if toggle is not None:                # numpy >= 2 on Linux; elsewhere there is nothing to do
        toggle(False)


_plain_pages_for_numpy()
