"""Lost writes per cell of recorded lab stress + verify rows (issue 14).

    python tools/lab_lost_writes.py data/lab/tcg-bug [more folders or files...]

One line per cell (QEMU, TCG workaround, RAM, hint), the runs in it, and for each
run the verdict's lost writes (pages the guest held live that differ from the
paused source; with hints off every differing page), then the stamp check's lost
pages, the harmless (free) and unplaced differences, and whether the destination
was healthy.  Rows recorded before the verdict existed show "-" for it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kit.lab.compare import WORKAROUND_WORDS, load_tree, tcg_bug_cells  # noqa: E402


def rows(paths):
    for p in map(Path, paths):
        yield from (load_tree(p) if p.is_dir() else [json.loads(p.read_text())])


def run_text(r):
    verdict, d, v = r.get("verdict") or {}, r.get("src-dst-diff") or {}, r.get("verify") or {}
    cls = d.get("classes") or {}
    health = "ok" if r["status"] == "ok" else f"FAILED at {r['stage']}"
    return (f"lost {verdict.get('lost-writes', '-')} (stamps {v.get('lost-pages', '-')}, "
            f"differ {d.get('pages-differ', '-')}: held {cls.get('held-live', '-')} free {cls.get('free', '-')} "
            f"unplaced {cls.get('unplaced', '-')}) {health}")


def main(argv):
    cells = tcg_bug_cells(list(rows(argv or ["data/lab/tcg-bug"])))
    print("| QEMU | RAM size | RAM | hint | runs | lost writes per run | per run |")
    print("|---|---|---|---|---:|---|---|")
    for (q, wa, ram, hint), rs in cells.items():
        lost = ", ".join(str((r.get("verdict") or {}).get("lost-writes", "-")) for r in rs)
        print(f"| {q} | {WORKAROUND_WORDS[wa]} | {ram} | {'on' if hint else 'off'} | {len(rs)} | {lost} | "
              + "; ".join(run_text(r) for r in rs) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
