#!/usr/bin/env python3
"""How long each notebook takes a reader: reading time from word counts, plus execution time.

    PYTHONPATH=. .venv/bin/python tools/walk_times.py                 # every notebook
    PYTHONPATH=. .venv/bin/python tools/walk_times.py 00 05 --no-run  # words only

Reading time: the words of the markdown cells at ``--wpm`` (default 200, a careful
technical read), plus the words of the code cells and of their committed text
outputs at half that speed (code and tables are read more slowly than prose).
Execution time: each notebook is copied into a fresh temporary directory (outside
the repository, so nothing in it changes) and run there from top to bottom with
nbclient, on the current kernel; the time from the first cell to the last is
measured on the wall clock, kernel start excluded.  The host's 1-minute load
average is printed beside it, since a busy machine runs the cells slower.

TEACHING.md quotes this script's figures and says when they were taken.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORD = re.compile(r"[A-Za-z0-9_'’.,%-]+")


def words(text: str) -> int:
    return len(WORD.findall(text))


def count(nb) -> dict:
    """Words of prose, words of code and of the committed text outputs, and cell counts."""
    prose = code = out = 0
    for c in nb.cells:
        if c.cell_type == "markdown":
            prose += words(c.source)
        elif c.cell_type == "code":
            code += words(c.source)
            for o in c.get("outputs", []):
                if "text" in o:
                    out += words(o["text"])
                elif "data" in o and "text/plain" in o["data"] and "image/png" not in o["data"]:
                    t = o["data"]["text/plain"]
                    if not t.startswith(("<", "VBox(", "HBox(")):
                        out += words(t)
    return {"prose": prose, "code": code, "outputs": out,
            "cells": len(nb.cells), "code_cells": sum(c.cell_type == "code" for c in nb.cells)}


def sections(nb) -> list:
    """[(heading, prose words, code and output words)] per '## ' section (the part before the
    first heading is the notebook's title)."""
    out = [["(title)", 0, 0]]
    for c in nb.cells:
        if c.cell_type == "markdown":
            for line in c.source.splitlines():
                if line.startswith("## "):
                    out.append([line[3:].strip(), 0, 0])
            out[-1][1] += words(c.source)
        elif c.cell_type == "code":
            one = count(_Only(c))
            out[-1][2] += one["code"] + one["outputs"]
    return [tuple(x) for x in out]


class _Only(dict):
    """A notebook-like object holding one cell (for :func:`count`)."""

    def __init__(self, cell):
        super().__init__()
        self.cells = [cell]


def execute(path: str, timeout: int = 900) -> tuple[float, int]:
    """Seconds to run a copy of ``path`` from its first cell to its last (kernel start
    excluded), and how many cells raised (they are timed too; the run goes on)."""
    import nbformat
    from nbclient import NotebookClient
    tmp = tempfile.mkdtemp(prefix="walk-times-")
    try:
        copy = os.path.join(tmp, os.path.basename(path))
        shutil.copy(path, copy)
        nb = nbformat.read(copy, as_version=4)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                                resources={"metadata": {"path": tmp}})
        with client.setup_kernel():
            t0 = time.perf_counter()
            for i, cell in enumerate(nb.cells):
                client.execute_cell(cell, i)
            spent = time.perf_counter() - t0
        errors = sum(any(o.get("output_type") == "error" for o in c.get("outputs", []))
                     for c in nb.cells if c.cell_type == "code")
        return spent, errors
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> int:
    import nbformat
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", help="numbers such as 00 05 (default: all)")
    ap.add_argument("--wpm", type=float, default=200.0, help="prose words per minute (default 200)")
    ap.add_argument("--no-run", action="store_true", help="count words only")
    ap.add_argument("--sections", action="store_true", help="reading minutes per '## ' section too")
    a = ap.parse_args(argv)
    paths = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))
    if a.notebooks:
        paths = [p for p in paths if os.path.basename(p)[:2] in a.notebooks]
    print(f"reading speed: prose {a.wpm:g} words/min, code and outputs {a.wpm / 2:g} words/min")
    print(f"{'notebook':32} {'cells':>5} {'prose':>6} {'code+out':>8} {'read min':>8} {'run s':>7} {'load1':>5}")
    tot_read = tot_run = 0.0
    for p in paths:
        nb = nbformat.read(p, as_version=4)
        c = count(nb)
        read = c["prose"] / a.wpm + (c["code"] + c["outputs"]) / (a.wpm / 2)
        run = load = None
        errors = 0
        if not a.no_run:
            run, errors = execute(p)
            load = os.getloadavg()[0]
            tot_run += run
        tot_read += read
        if a.sections:
            for head, pw, cw in sections(nb):
                print(f"    {head[:60]:60} {pw / a.wpm + cw / (a.wpm / 2):5.1f} min")
        print(f"{os.path.basename(p):32} {c['cells']:5} {c['prose']:6} {c['code'] + c['outputs']:8} "
              f"{read:8.1f} {'' if run is None else f'{run:7.1f}':>7} {'' if load is None else f'{load:5.1f}':>5}"
              + (f"  ({errors} cell(s) raised)" if errors else ""),
              flush=True)
    print(f"{'total':32} {'':5} {'':6} {'':8} {tot_read:8.1f} {'' if a.no_run else f'{tot_run:7.1f}':>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
