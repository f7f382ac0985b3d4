"""Run All of notebooks in a real browser: how long a student waits once the kernel is up.

For each notebook this starts JupyterLab the way ``tests/test_browser.py`` does (its
``LabServer``: 127.0.0.1, a free port, a random token, private config/runtime/settings dirs),
with JupyterLab's ``recordTiming`` setting on, opens the notebook in Debian's
``/usr/bin/chromium`` with Playwright, waits for the kernel, clears the outputs and clicks
Run > Run All Cells.  It prints, per run:

* ``wall``: from the click to the last cell's prompt showing its number (polled every 250 ms);
* the kernel's own user and system CPU over that time (from ``/proc``);
* ``cells``: the kernel-side time of each cell (``recordTiming``: execute_input to
  execute_reply), summed, and the slowest cells.

    .venv/bin/python bench/bench_runall.py 05 07 --reps 3
    .venv/bin/python bench/bench_runall.py 05 --numpy-hugepages 1,0   # an A/B of numpy's switch
    .venv/bin/python bench/bench_runall.py 05 --kit DIR --kit .       # another kit, then this one

``--kit`` (repeatable) runs each notebook once per kit in turn, its ``kit/`` package put first
on the kernels' ``PYTHONPATH`` (e.g. a ``git archive`` of an older commit); the notebooks are
always this checkout's.

``--numpy-hugepages`` runs each notebook once per value of ``NUMPY_MADVISE_HUGEPAGE`` (numpy's
own switch for asking Linux for transparent huge pages), in turn.  Everything it starts
(server, kernels, browser) and its temp folder are gone when it ends, also on an error, on
Ctrl-C and on SIGTERM.  Not a test: the numbers depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def _cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _cell_times(nb: dict) -> list[tuple[float, int]]:
    """(seconds, cell index) of each executed code cell, from recordTiming's metadata."""
    out = []
    for i, cell in enumerate(nb["cells"]):
        m = cell.get("metadata", {}).get("execution", {})
        a, z = m.get("iopub.execute_input"), m.get("shell.execute_reply")
        if a and z:
            t = (datetime.datetime.fromisoformat(z.replace("Z", "+00:00")) -
                 datetime.datetime.fromisoformat(a.replace("Z", "+00:00")))
            out.append((t.total_seconds(), i))
    return out


def run_all(ctx, lab, nb: str) -> dict:
    import test_browser as tb
    page = ctx.new_page()
    try:
        lab.start_session(nb)
        page.goto(f"{lab.url}/lab/tree/{nb}?token={lab.token}&reset")
        page.get_by_text("| Idle").wait_for(timeout=120_000)
        panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        kernels = [k["id"] for k in lab.api("GET", "/api/kernels")]
        kernel = next(p for p in tb._descendants(lab.proc.pid)
                      if any(k.encode() in Path(f"/proc/{p}/cmdline").read_bytes() for k in kernels))
        tb._menu(page, "Edit", "Clear Outputs of All Cells")
        u0, s0 = _cpu(kernel)
        t0 = time.monotonic()
        tb._menu(page, "Run", "Run All Cells")
        tb._wait_run_all(page, panel)
        wall = time.monotonic() - t0
        u1, s1 = _cpu(kernel)
        before = (lab.root / nb).stat().st_mtime
        page.keyboard.press("Control+s")               # the timings are in the saved file
        deadline = time.monotonic() + 30
        while (lab.root / nb).stat().st_mtime == before and time.monotonic() < deadline:
            page.wait_for_timeout(200)
        cells = _cell_times(json.loads((lab.root / nb).read_text()))
        return {"wall": wall, "user": u1 - u0, "sys": s1 - s0, "cells": cells,
                "load": os.getloadavg()[0]}
    finally:
        page.close()
        lab.shutdown_kernels()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("notebooks", nargs="+", help="numbers such as 05 07")
    ap.add_argument("--reps", type=int, default=1, help="runs of each notebook (default 1)")
    ap.add_argument("--numpy-hugepages", default=None,
                    help="comma-separated NUMPY_MADVISE_HUGEPAGE values to run in turn, e.g. 1,0")
    ap.add_argument("--kit", type=Path, action="append",
                    help="directory holding the kit/ package the kernels import (repeatable)")
    args = ap.parse_args(argv)
    names = []
    for n in args.notebooks:
        found = sorted(p.name for p in (ROOT / "notebooks").glob(f"{n}-*.ipynb"))
        if len(found) != 1:
            ap.error(f"no single notebook numbered {n!r} in {ROOT / 'notebooks'}")
        names.append(found[0])
    settings = [None] if args.numpy_hugepages is None else args.numpy_hugepages.split(",")
    kits = [None] if not args.kit else [k.resolve() for k in args.kit]
    base_path = os.environ.get("PYTHONPATH", "")

    from playwright.sync_api import sync_playwright
    import test_browser as tb

    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))    # unwind through the finally blocks
    tmp = Path(tempfile.mkdtemp(prefix="kit-bench-runall-"))
    results: dict = {}
    try:
        order = [(k, v) for _ in range(args.reps) for k in kits for v in settings]
        for n_run, (kit, value) in enumerate(order):
            if kit is not None:
                os.environ["PYTHONPATH"] = os.pathsep.join([str(kit), base_path])
            if value is None:
                os.environ.pop("NUMPY_MADVISE_HUGEPAGE", None)
            else:
                os.environ["NUMPY_MADVISE_HUGEPAGE"] = value       # the kernels inherit it
            run_dir = tmp / f"run-{n_run}"
            run_dir.mkdir()
            lab = tb.LabServer(run_dir)
            lab.log_path = run_dir / "jupyter-server.log"
            f = run_dir / "settings" / "@jupyterlab/notebook-extension/tracker.jupyterlab-settings"
            f.write_text(json.dumps(dict(json.loads(f.read_text()), recordTiming=True)))
            try:
                lab.start()
                with sync_playwright() as p:
                    browser = p.chromium.launch(executable_path=tb.CHROMIUM, headless=True,
                                                args=tb.CHROMIUM_ARGS)
                    try:
                        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
                        ctx.set_default_timeout(60_000)
                        for nb in names:
                            r = run_all(ctx, lab, nb)
                            results.setdefault((nb, kit, value), []).append(r)
                            slow = ", ".join(f"{i}: {t:.2f}" for t, i in sorted(r["cells"], reverse=True)[:4])
                            label = ("" if kit is None else f" kit {kit}") + \
                                ("" if value is None else f" NUMPY_MADVISE_HUGEPAGE={value}")
                            print(f"{nb}{label}: wall {r['wall']:5.2f} s, kernel user {r['user']:5.2f} s, "
                                  f"sys {r['sys']:5.2f} s, cells {sum(t for t, _ in r['cells']):5.2f} s "
                                  f"(slowest {slow}); load {r['load']:.1f}", flush=True)
                        ctx.close()
                    finally:
                        browser.close()
            finally:
                left, survivors = lab.stop()
                if survivors:
                    print(f"processes still alive after SIGKILL: {survivors}", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'notebook':26} {'kit':24} {'hugepg':>6} {'runs':>4} {'median wall':>11} {'min':>6} "
          f"{'max':>6} {'median sys':>10}")
    for (nb, kit, value), rs in results.items():
        walls = [r["wall"] for r in rs]
        print(f"{nb:26} {'' if kit is None else str(kit)[-24:]:24} {'' if value is None else value:>6} "
              f"{len(rs):4d} {statistics.median(walls):10.2f}s {min(walls):6.2f} {max(walls):6.2f} "
              f"{statistics.median(r['sys'] for r in rs):9.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
