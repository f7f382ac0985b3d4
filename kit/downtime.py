"""Why a migration pauses as long as it does: the switch-over rule, measured.

QEMU 2.5's migration thread (``migration_thread`` in migration/migration.c, modelled in
:meth:`kit.migration.Migration._thread_turn`) keeps two numbers:

* ``bandwidth``: the bytes it put on the wire in the last 100 ms window, per second;
* ``max_size = bandwidth x downtime_limit`` (the limit is ``migrate_set_downtime``, 300 ms
  by default): how many bytes it could send in the allowed pause.

Before each ``ram_save_iterate`` it asks ``ram_save_pending`` how much is still to send,
counted as 4 KiB per page still set in the migration bitmap.  While that is at least
``max_size`` it keeps sending with the guest running; the first time it is smaller, it stops
the guest and sends the rest.  So the downtime is about ``pending / bandwidth`` at that
moment: **anything below the limit**, set by where the pending count happens to land when it
first drops under the line.  The limit caps the pause; it is not a target.

Which side of the line a run ends on depends on what its last pages are:

* pending falls by one iteration's worth per check (each ``ram_save_iterate`` sends for at most
  50 ms).  When every page still pending is a full page, as in a pv run (the filter took the free
  pages out), it falls in steps of about 50 ms of wire time, and the first check under the line
  finds up to one limit's worth still to send: a pause near the limit;
* when the last pages are free zero pages, as in the original's walk of an idle or a dirtying
  guest, each counts 4 KiB in ``pending`` but costs 9 bytes on the wire, so one iteration takes
  hundreds of MiB off the count and the check lands far below the line: a short pause.  The same
  original run after the hog (stale, full free pages) pauses near the limit too.

:func:`switch_over` runs a scenario check by check and returns these numbers;
:func:`sweep` runs it at several limits through :func:`kit.scenario.run`.
"""
from __future__ import annotations

from .errors import KitError
from .scenario import Scenario, build, run
from .units import TARGET_PAGE_SIZE

__all__ = ["with_limit", "switch_over", "switch_over_text", "sweep", "LIMITS_MS"]

# the limits a sweep visits by default, ms (QEMU 2.x's default is 300)
LIMITS_MS = (20, 50, 100, 150, 200, 300, 400, 600, 1000)


def with_limit(s: Scenario, limit_ms: float) -> Scenario:
    """``s`` with its cost model's downtime limit (``migrate_set_downtime``) set to ``limit_ms``."""
    if not limit_ms > 0:
        raise KitError(f"the downtime limit must be positive, got {limit_ms!r} ms")
    return s.with_(cost=s.cost.with_(downtime_limit_ms=float(limit_ms)))


def switch_over(s: Scenario) -> dict:
    """Run ``s`` one thread turn at a time and return what the switch-over rule saw.

    Keys: ``checks`` (one dict per check of the rule: ``t-ms``, ``pending`` bytes,
    ``max-size`` bytes, ``bandwidth`` bytes/s, and ``switch``: whether this check stopped the
    guest), and for the check that stopped it: ``pending`` and ``max-size`` (bytes),
    ``bandwidth`` (bytes/s), ``step`` (how far pending fell at the check before, bytes: one
    iteration's pages, minus what the guest dirtied meanwhile), ``predicted-ms``
    (pending / bandwidth), then ``downtime-ms`` and ``total-time-ms`` as the run reported them,
    and ``limit-ms``."""
    m = build(s)
    while m.phase == "setup" and not m.done:
        m.step()
    checks = []
    while not m.done:
        pending, max_size, bw, t = m.migration_dirty_pages * TARGET_PAGE_SIZE, m.max_size, m.bandwidth, m.now
        rec = m.step()
        kind = rec.get("kind") if isinstance(rec, dict) else None
        if kind in ("iterate", "completed"):
            checks.append({"t-ms": t * 1e3, "pending": pending, "max-size": max_size, "bandwidth": bw,
                           "switch": kind == "completed"})
    st = m.query_migrate()
    out = {"checks": checks, "limit-ms": m.cost.downtime_limit_ms, "status": st["status"],
           "downtime-ms": st["downtime"], "total-time-ms": st["total-time"]}
    if checks and checks[-1]["switch"]:
        last = checks[-1]
        out.update(pending=last["pending"], **{"max-size": last["max-size"]}, bandwidth=last["bandwidth"],
                   step=(checks[-2]["pending"] - last["pending"]) if len(checks) > 1 else None,
                   **{"predicted-ms": last["pending"] / last["bandwidth"] * 1e3 if last["bandwidth"] else None})
    return out


def switch_over_text(runs: dict) -> str:
    """``{label: switch_over(...)}`` as a table: the numbers behind each run's pause."""
    mib = 1 << 20
    lines = [f"{'run':<12} {'bandwidth':>10} {'max_size':>9} {'last step':>9} {'pending':>8} "
             f"{'pending/bw':>10} {'downtime':>8} {'total':>7}",
             f"{'':<12} {'MB/s':>10} {'MiB':>9} {'MiB':>9} {'MiB':>8} {'ms':>10} {'ms':>8} {'ms':>7}"]
    for label, r in runs.items():
        if "pending" not in r:
            lines.append(f"{label:<12} did not switch over ({r['status']})")
            continue
        step = "-" if r["step"] is None else f"{r['step'] / mib:.1f}"
        lines.append(f"{label:<12} {r['bandwidth'] / 1e6:>10,.0f} {r['max-size'] / mib:>9.1f} {step:>9} "
                     f"{r['pending'] / mib:>8.1f} {r['predicted-ms']:>10.0f} {r['downtime-ms']:>8} "
                     f"{r['total-time-ms']:>7,}")
    return "\n".join(lines)


def sweep(s: Scenario, limits=LIMITS_MS, modes=("original", "pv")) -> dict:
    """``{mode: {"limit-ms": [...], "downtime-ms": [...], "total-time-ms": [...], "status": [...]}}``
    of ``s`` in each mode at each downtime limit (each run cached by :func:`kit.scenario.run`)."""
    out = {}
    for mode in modes:
        rows = {"limit-ms": [], "downtime-ms": [], "total-time-ms": [], "status": []}
        for lim in limits:
            st = run(with_limit(s.with_(mode=mode), lim)).stats
            rows["limit-ms"].append(float(lim))
            rows["downtime-ms"].append(st["downtime"])
            rows["total-time-ms"].append(st["total-time"])
            rows["status"].append(st["status"])
        out[mode] = rows
    return out
