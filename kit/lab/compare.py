"""QEMU 7.2 beside QEMU 10.0 in the lab: the recorded rows, grouped the way notebook 09 reads them.

Every row says which QEMU ran it (``row["qemu"]``: the system's Debian 12 build, or the
``bookworm-backports`` one that :mod:`kit.lab.backport` unpacks into the lab cache) and whether
the 8 KiB TCG workaround was on (:mod:`kit.lab.qemu`).  The folders:

* ``data/lab/curves/`` and ``data/lab/curves-qemu10.0/``: the timing matrix (1, 2, 4, 8 GiB ×
  idle/hog × hint off/on × 3) on each QEMU;
* ``data/lab/tcg-bug/``: stress + verify on both QEMUs, with and without the workaround;
* ``data/lab/postcopy/``: hint-on runs with the ``postcopy-ram`` capability on, and without.

Display lives in :mod:`kit.viz.qemu_today`.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from .model import DATA, medians

CURVES_10 = DATA / "curves-qemu10.0"
TCG_BUG = DATA / "tcg-bug"
POSTCOPY = DATA / "postcopy"
WORKAROUND_WORDS = {True: "8K-less", False: "exact"}


def load_tree(path) -> list[dict]:
    """Every row under ``path`` and its subfolders, oldest first ([] if the folder is missing)."""
    path = Path(path)
    if not path.is_dir():
        return []
    rows = [json.loads(p.read_text()) for p in sorted(path.rglob("*.json"))]
    return sorted(rows, key=lambda r: r.get("started", ""))


def qemu_of(row) -> str:
    """``"7.2"`` or ``"10.0"``: the QEMU a row ran on, from its ``qemu`` record."""
    q = row.get("qemu", {})
    v = q.get("version")
    if isinstance(v, dict) and "major" in v:
        return f"{v['major']}.{v['minor']}"
    package = q.get("package", "")
    return "10.0" if ":10.0" in package or q.get("kind") == "bookworm-backports" else "7.2"


def workaround_on(row) -> bool:
    return bool(row.get("qemu", {}).get("tcg-dirty-sync-workaround", {}).get("on"))


def lost_writes(row):
    """The verdict's lost writes of a stress + verify row (None for rows without a verdict)."""
    return (row.get("verdict") or {}).get("lost-writes")


def tcg_bug_cells(rows) -> dict:
    """{(qemu, workaround on, ram, hint): [row, ...]} of the stress + verify rows."""
    cells: dict = {}
    for r in rows:
        if "verdict" not in r and "src-dst-diff" not in r:
            continue
        c = r["config"]
        key = (qemu_of(r), workaround_on(r), c["ram"], bool(c["free_page_hint"]))
        cells.setdefault(key, []).append(r)
    order = lambda k: (float(k[0]), not k[1], int(k[2][:-1]), k[3])
    return dict(sorted(cells.items(), key=lambda kv: order(kv[0])))


def tcg_bug_summary(rows) -> dict:
    """Per (qemu, workaround on): runs, runs that lost a write, lost writes in all, destinations
    that were not healthy, and the differing pages the dumps could not place."""
    out: dict = {}
    for (q, wa, _ram, _hint), rs in tcg_bug_cells(rows).items():
        s = out.setdefault((q, wa), {"runs": 0, "runs-losing": 0, "lost-writes": 0, "unhealthy": 0,
                                     "unplaced": 0})
        for r in rs:
            lw = lost_writes(r) or 0
            s["runs"] += 1
            s["runs-losing"] += lw > 0
            s["lost-writes"] += lw
            s["unhealthy"] += r["status"] != "ok"
            s["unplaced"] += (r.get("src-dst-diff") or {}).get("classes", {}).get("unplaced", 0)
    return out


def postcopy_rows(rows) -> list[dict]:
    """The hint-on runs of ``data/lab/postcopy/`` as plain figures: QEMU, postcopy-ram on or
    off, workload, pages skipped, hints popped, pages sent over guest pages, lost writes."""
    out = []
    for r in rows:
        c = r["config"]
        if r.get("status") != "ok" or not c.get("free_page_hint"):
            continue
        d = r["derived"]
        out.append({"qemu": qemu_of(r), "postcopy": bool(c.get("postcopy")), "workload": c["workload"],
                    "ram": c["ram"], "pages-skipped": d["pages-skipped"],
                    "hint-pops": len((r.get("trace") or {}).get("hint-pops-ms", [])),
                    "sent-fraction": d["sent-fraction"], "lost-writes": lost_writes(r)})
    return sorted(out, key=lambda x: (x["workload"], float(x["qemu"]), x["postcopy"]))


def both_medians(rows_72, rows_10) -> list[dict]:
    """One row per (ram, workload, hint) that both QEMUs ran: each one's medians of total time,
    setup time, bytes and pages skipped, with their ranges (:func:`kit.lab.model.medians`)."""
    a, b = medians(rows_72), medians(rows_10)
    out = []
    for key in sorted(set(a) & set(b), key=lambda k: (int(k[0][:-1]), k[1], k[2])):
        if not a[key]["runs"] or not b[key]["runs"]:
            continue
        row = {"ram": key[0], "workload": key[1], "hint": key[2]}
        for q, m in (("7.2", a[key]), ("10.0", b[key])):
            for f in ("total-time-ms", "setup-time-ms", "transferred-kb", "pages-skipped", "downtime-ms"):
                row[q, f] = m[f]
                row[q, f + "-range"] = m[f + "-range"]
            row[q, "runs"] = m["runs"]
        out.append(row)
    return out


def after_setup_ms(row, q) -> float:
    """Total minus setup time of one QEMU's medians in a :func:`both_medians` row."""
    return row[q, "total-time-ms"] - row[q, "setup-time-ms"]


def setup_ms_per_gib(rows) -> dict:
    """{qemu: median setup-time per GiB of guest RAM} over the ok rows of the timing matrix."""
    per: dict = {}
    for r in rows:
        if r.get("status") != "ok" or r["config"].get("workload") not in ("idle", "hog"):
            continue
        per.setdefault(qemu_of(r), []).append(r["derived"]["setup-time-ms"] / (r["config"]["ram-mib"] / 1024))
    return {q: statistics.median(v) for q, v in per.items()}


def setup_cells(rows) -> dict:
    """{(qemu, workaround on, ram): [setup-time ms of each run]} of rows that report one."""
    out: dict = {}
    for r in rows:
        setup = (r.get("derived") or {}).get("setup-time-ms")
        if setup is None:
            continue
        key = (qemu_of(r), workaround_on(r), r["config"]["ram"])
        out.setdefault(key, []).append(setup)
    return dict(sorted(out.items(), key=lambda kv: (float(kv[0][0]), not kv[0][1], int(kv[0][2][:-1]))))


def first_pass_drops(rows) -> list[dict]:
    """Per hint-on run with a curve: the largest fall of ``remaining`` between two polls of the
    first pass (``dirty-sync-count`` 1), beside the bytes QEMU sent between those two polls."""
    out = []
    for r in rows:
        c = r.get("config", {})
        if r.get("status") != "ok" or not c.get("free_page_hint") or "curve" not in r:
            continue
        cv = r["curve"]
        pts = [(t, rem, tr) for t, st, rem, tr, n in zip(cv["t-ms"], cv["status"], cv["remaining"],
                                                        cv["transferred"], cv["dirty-sync-count"])
               if st == "active" and rem is not None and tr is not None and n == 1]
        best = None
        for (t0, r0, x0), (t1, r1, x1) in zip(pts, pts[1:]):
            if best is None or r0 - r1 > best["drop"]:
                best = {"drop": r0 - r1, "sent": x1 - x0, "t-ms": t1}
        if best is not None:
            out.append({"ram": c["ram"], "workload": c["workload"], **best})
    return out


def preset_for_10(rows_10, cost="tcg-loopback"):
    """The ``tcg-loopback`` preset with one value changed: setup per page, the median of QEMU
    10.0's own ``setup-time`` per page (its exact-size RAM takes the sync's fast path).  Every
    other value stays the 7.2 fit, so the 10.0 matrix is a prediction."""
    from ..costmodel import get_preset
    from ..units import TARGET_PAGE_SIZE
    per = [r["derived"]["setup-time-ms"] * 1e6 / (r["config"]["ram-mib"] * 2**20 // TARGET_PAGE_SIZE)
           for r in rows_10 if r.get("status") == "ok" and r["config"].get("workload") in ("idle", "hog")]
    ns = statistics.median(per) if per else 0.0
    return get_preset(cost).with_(setup_ns_per_page=float(f"{ns:.3g}"))
