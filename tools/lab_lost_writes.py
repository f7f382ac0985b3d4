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
from collections import defaultdict
from pathlib import Path


def rows(paths):
    for p in map(Path, paths):
        for f in sorted(p.rglob("*.json")) if p.is_dir() else [p]:
            r = json.loads(f.read_text())
            if "verify" in r or "src-dst-diff" in r:
                yield f, r


def cell(r):
    q, c = r["qemu"], r["config"]
    version = q.get("version") or {}
    v = f"{version.get('major', '?')}.{version.get('minor', '?')}"
    wa = "8K-less" if q["tcg-dirty-sync-workaround"]["on"] else "exact"
    return (v, wa, c["ram"], "on" if c["free_page_hint"] else "off")


def run_text(r):
    verdict, d, v = r.get("verdict") or {}, r.get("src-dst-diff") or {}, r.get("verify") or {}
    cls = d.get("classes") or {}
    health = "ok" if r["status"] == "ok" else f"FAILED at {r['stage']}"
    return (f"lost {verdict.get('lost-writes', '-')} (stamps {v.get('lost-pages', '-')}, "
            f"differ {d.get('pages-differ', '-')}: held {cls.get('held-live', '-')} free {cls.get('free', '-')} "
            f"unplaced {cls.get('unplaced', '-')}) {health}")


def main(argv):
    cells = defaultdict(list)
    for _, r in rows(argv or ["data/lab/tcg-bug"]):
        cells[cell(r)].append(r)
    print("| QEMU | RAM size | RAM | hint | runs | lost writes per run | per run |")
    print("|---|---|---|---|---:|---|---|")
    for key in sorted(cells, key=lambda k: (float(k[0]) if k[0][0].isdigit() else 0, k[1], k[2], k[3])):
        rs = cells[key]
        lost = ", ".join(str((r.get("verdict") or {}).get("lost-writes", "-")) for r in rs)
        print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {len(rs)} | {lost} | "
              + "; ".join(run_text(r) for r in rs) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
