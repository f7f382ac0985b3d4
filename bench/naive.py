"""A naive per-page implementation of the bulk stage, for comparison only.

It walks ram_addr space one page at a time in Python, as a first attempt at
the model would: for every page, test its bit, check whether it is zero, count
bytes and CPU.  Only for guests that do not run during migration (idle, hog).
bench/bench.py times it against kit.migration on a small guest; tests check that
both give the same pages and bytes.
"""
from __future__ import annotations

import numpy as np

from kit.migration import EOS_BYTES, MAX_WAIT_S, NORMAL_PAGE_BYTES, ZERO_PAGE_BYTES


def naive_bulk_stage(migration):
    """Finish ``migration``'s setup with the real code, then send every dirty page one by one."""
    m = migration
    while m.phase == "setup":
        m.step()
    mem = m.guest.memory
    cpu_s = m.cost.cpu_ns_per_page * 1e-9
    wire = m.cost.wire_bytes_per_s
    segs = []
    for ra, rb, pa in mem.ram_segments():
        segs.append((ra, rb, pa))
    ram_pages = m.mm.ram_pages
    bmap = [bool(x) for x in m.bmap]           # a Python list of bits, as a naive port would use
    zero_of = {}
    transferred = duplicate = normal = 0
    elapsed = cpu = 0.0
    nbytes = 0
    last_block = None
    for page in range(m.total_pages):
        if not bmap[page]:
            continue
        bmap[page] = False
        if page < ram_pages:
            for ra, rb, pa in segs:
                if ra <= page < rb:
                    is_zero = bool(mem.zero[pa + page - ra])
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
        cpu += cpu_s
        if max(cpu, nbytes / wire) >= MAX_WAIT_S:        # one ram_save_iterate is over
            transferred += nbytes + EOS_BYTES
            elapsed += max(cpu, nbytes / wire)
            cpu, nbytes = 0.0, 0
    transferred += nbytes + EOS_BYTES
    elapsed += max(cpu, nbytes / wire)
    zero_of.clear()
    return {"duplicate": duplicate, "normal": normal, "bytes": transferred, "seconds": elapsed}


def vectorised_bulk_stage(migration):
    """The same measure from kit.migration: run until the first full round is over."""
    m = migration
    while m.phase == "setup":
        m.step()
    t0, b0 = m.now, m.stats.transferred
    while m.ram_bulk_stage and not m.done:
        m.step()
    return {"duplicate": m.stats.duplicate, "normal": m.stats.normal,
            "bytes": m.stats.transferred - b0, "seconds": m.now - t0, "pages": int(np.sum(0))}
