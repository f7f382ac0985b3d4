"""A naive per-page implementation of the bulk stage, for comparison only.

It walks ram_addr space one page at a time in Python, as a first attempt at
the model would: for every page, test its bit, check whether it is zero, count
bytes and CPU.  Only for guests that do not run during migration (idle, hog)
and without a rate limit (``max_bandwidth`` None, as in ``seed-2016``).
bench/bench.py times it against kit.migration on a small guest.

What both functions measure ("the first full round"): every page that is
dirty in the migration bitmap when setup ends is sent once.  Both return

* ``pages``, ``duplicate``, ``normal``: pages sent, as zero / full pages;
* ``bytes``: the wire bytes of those page records (8-byte header, plus 1 or
  4096 bytes, plus the RAMBlock name on the first page from each block);
* ``eos``, ``transferred``: the 8-byte end-of-section markers and the total
  including them;
* ``seconds``: simulated time of the round.

``pages``, ``duplicate``, ``normal`` and ``bytes`` must agree exactly
(:func:`compare`).  ``eos``/``transferred``/``seconds`` need not: the naive
walk cuts the round into 50 ms ``ram_save_iterate`` calls, while the model's
migration thread may finish the round in the stop-and-copy (one batch, one
EOS, plus a bitmap sync) once the remainder fits the downtime limit.

Start both from identical, freshly built objects: :func:`fresh_migration`
(the guest build is seeded, so two calls give the same guest), then
:func:`finish_setup` outside the timed region.
"""
from __future__ import annotations

import numpy as np

from kit.errors import KitError
from kit.migration import EOS_BYTES, MAX_WAIT_S, NORMAL_PAGE_BYTES, ZERO_PAGE_BYTES
from kit.scenario import Scenario, build

COMPARED = ("pages", "duplicate", "normal", "bytes")


def fresh_migration(ram, workload="hog", mode="original", preset="seed-2016", seed=0):
    """A freshly built guest of ``ram`` bytes and a new Migration of it (pages not tracked)."""
    return build(Scenario(ram=ram, workload=workload, mode=mode, cost=preset, seed=seed, track_pages=False))


def finish_setup(migration):
    """Run ``ram_save_setup`` and the rest of the setup plan with the real code (idempotent)."""
    m = migration
    if m.guest.workload.runs_during_migration:
        raise KitError("the naive bulk stage only handles guests that do not run during migration")
    if m.cost.max_bandwidth is not None:
        raise KitError("the naive bulk stage does not model a rate limit (max_bandwidth)")
    while m.phase == "setup" and not m.done:
        m.step()
    if m.phase != "iterate":
        raise KitError(f"setup did not finish: phase {m.phase!r}, stall {m.stall!r}")
    if m.stats.duplicate or m.stats.normal:
        raise KitError("the migration has already sent pages; start from a fresh one")
    return m


def naive_bulk_stage(migration):
    """Send every page dirty after setup, one by one, in 50 ms ``ram_save_iterate`` calls."""
    m = finish_setup(migration)
    mem = m.guest.memory
    cpu_s = m.cost.cpu_ns_per_page * 1e-9
    wire = m.cost.wire_bytes_per_s
    segs = []
    for ra, rb, pa in mem.ram_segments():
        segs.append((ra, rb, pa))
    ram_pages = m.mm.ram_pages
    bmap = [bool(x) for x in m.bmap]           # a Python list of bits, as a naive port would use
    duplicate = normal = 0
    page_bytes = eos = 0
    elapsed = slice_s = 0.0
    nbytes = 0
    last_block = None
    zero = mem.zero                            # one array for the whole loop (it is computed)
    for page in range(m.total_pages):
        if not bmap[page]:
            continue
        bmap[page] = False
        if page < ram_pages:
            for ra, rb, pa in segs:
                if ra <= page < rb:
                    is_zero = bool(zero[pa + page - ra])
                    break
            block = "pc.ram"
        else:
            is_zero, block = True, "vga.vram"
        size = ZERO_PAGE_BYTES if is_zero else NORMAL_PAGE_BYTES
        if block != last_block:
            size += 1 + len(block)
            last_block = block
        duplicate += is_zero
        normal += not is_zero
        nbytes += size
        slice_s += max(cpu_s, size / wire)              # a page takes max(CPU, wire), as kit/clock.py
        if slice_s >= MAX_WAIT_S:                       # one ram_save_iterate is over
            page_bytes += nbytes
            eos += 1
            elapsed += slice_s
            slice_s, nbytes = 0.0, 0
    if nbytes:
        page_bytes += nbytes
        eos += 1
        elapsed += slice_s
    return {"pages": duplicate + normal, "duplicate": duplicate, "normal": normal,
            "bytes": page_bytes, "eos": eos, "transferred": page_bytes + eos * EOS_BYTES,
            "seconds": elapsed}


def vectorised_bulk_stage(migration):
    """The same measure from kit.migration: step the real thread until the first round is over.

    The round is over when the search wraps (``ram_bulk_stage`` turns False) or
    the migration completes (the stop-and-copy sent the rest), whichever comes
    first.
    """
    m = finish_setup(migration)
    t0, b0, it0 = m.now, m.stats.transferred, m.stats.iterations
    dirty0 = m.migration_dirty_pages
    while m.ram_bulk_stage and not m.done:
        m.step()
    # ram.transferred counts each ram_save_iterate's EOS, not the stop-and-copy's
    counted_eos = m.stats.iterations - it0
    eos = counted_eos + (1 if m.phase == "completed" else 0)
    transferred = m.stats.transferred - b0
    out = {"pages": m.stats.duplicate + m.stats.normal, "duplicate": m.stats.duplicate,
           "normal": m.stats.normal, "bytes": transferred - counted_eos * EOS_BYTES, "eos": eos,
           "transferred": transferred, "seconds": m.now - t0}
    if out["pages"] != dirty0:
        raise KitError(f"the model sent {out['pages']} pages in its first round, "
                       f"but {dirty0} were dirty after setup")
    return out


def compare(naive: dict, vectorised: dict) -> list[str]:
    """Names of the measures (:data:`COMPARED`) on which the two results differ; [] if none."""
    return [k for k in COMPARED if naive[k] != vectorised[k]]


__all__ = ["COMPARED", "fresh_migration", "finish_setup", "naive_bulk_stage",
           "vectorised_bulk_stage", "compare"]
