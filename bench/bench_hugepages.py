"""Run All of a notebook with numpy's huge pages on and off, in turn: does ``kit``'s switch pay?

``import kit`` asks numpy not to request transparent huge pages for big arrays (see
``kit/__init__.py``) unless ``NUMPY_MADVISE_HUGEPAGE`` is set.  This script runs a notebook
in a fresh kernel with ``NUMPY_MADVISE_HUGEPAGE=1`` (numpy's default on Linux) and with ``=0``
(what the kit now chooses), alternating A B A B, and prints for each run the cells' wall time
summed (kernel start excluded, as ``tools/walk_times.py`` times it), the slowest cell and the
kernel's own user and system CPU.

    .venv/bin/python bench/bench_hugepages.py              # notebook 05, 3 runs each
    .venv/bin/python bench/bench_hugepages.py 07 --reps 2

Each run executes a copy in a temporary folder, removed afterwards.  Not a test: the numbers
depend on the machine, its kernel's huge-page policy (``/sys/kernel/mm/transparent_hugepage``)
and its load, which is printed with each run.
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def run_all(path: str, hugepages: bool) -> dict:
    import nbformat
    from nbclient import NotebookClient
    tmp = tempfile.mkdtemp(prefix="bench-hugepages-")
    old = os.environ.get("NUMPY_MADVISE_HUGEPAGE")
    os.environ["NUMPY_MADVISE_HUGEPAGE"] = "1" if hugepages else "0"    # the kernel inherits it
    try:
        copy = os.path.join(tmp, os.path.basename(path))
        shutil.copy(path, copy)
        nb = nbformat.read(copy, as_version=4)
        client = NotebookClient(nb, timeout=900, kernel_name="python3",
                                resources={"metadata": {"path": tmp}})
        cells = []
        with client.setup_kernel():
            pid = client.km.provisioner.pid
            u0, s0 = _cpu(pid)
            for i, cell in enumerate(nb.cells):
                t = time.perf_counter()
                client.execute_cell(cell, i)
                if cell.cell_type == "code":
                    cells.append((time.perf_counter() - t, i))
            u1, s1 = _cpu(pid)
        return {"wall": sum(t for t, _ in cells), "slowest": max(cells), "user": u1 - u0,
                "sys": s1 - s0, "load": os.getloadavg()[0]}
    finally:
        if old is None:
            os.environ.pop("NUMPY_MADVISE_HUGEPAGE", None)
        else:
            os.environ["NUMPY_MADVISE_HUGEPAGE"] = old
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebook", nargs="?", default="05", help="its number (default 05)")
    ap.add_argument("--reps", type=int, default=3, help="runs with each setting (default 3)")
    a = ap.parse_args(argv)
    paths = sorted(glob.glob(str(ROOT / "notebooks" / f"{a.notebook}-*.ipynb")))
    if len(paths) != 1:
        ap.error(f"no single notebook numbered {a.notebook!r} in {ROOT / 'notebooks'}")
    policy = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    print(f"{os.path.basename(paths[0])}; transparent_hugepage: "
          f"{policy.read_text().strip() if policy.exists() else 'not available'}")
    got = {True: [], False: []}
    for _ in range(a.reps):
        for hp in (True, False):
            r = run_all(paths[0], hp)
            got[hp].append(r)
            t, i = r["slowest"]
            print(f"  huge pages {'on ' if hp else 'off'}: cells {r['wall']:5.2f} s, kernel user "
                  f"{r['user']:5.2f} s, sys {r['sys']:5.2f} s; slowest cell {i} {t:5.2f} s; "
                  f"load {r['load']:.1f}", flush=True)
    for hp in (True, False):
        rs = got[hp]
        print(f"median, huge pages {'on ' if hp else 'off'}: cells "
              f"{statistics.median(r['wall'] for r in rs):5.2f} s, sys "
              f"{statistics.median(r['sys'] for r in rs):5.2f} s, slowest cell "
              f"{statistics.median(r['slowest'][0] for r in rs):5.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
