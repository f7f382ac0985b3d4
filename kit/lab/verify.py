"""Did a real migration lose a page?  The host side of ``kitmem stress`` (issue 7).

The guest program (``files/kitmem.c``, ``stress_main``) keeps N one-page
*slots*.  Every live slot starts with a 64-byte header and ends with a tail
word; a control page says where the guest is.  Pass G walks the slots in order;
whether slot i is live in pass G is a hash of (nonce, G, i) alone
(:func:`free_in_pass`), and the generation in a live page is incremented in
place once per pass, as QEMU's ``tests/qtest/migration-test.c`` does with one
byte per page.  So from the control page alone the host knows which slots the
guest holds at the instant it was stopped, and what each must say:

* slots before the cursor are in pass G's state, with generation G; slots after
  it in pass G-1's, with G-1 (one edge).  The slot *at* the cursor may be half
  done and may be in either state.
* a live page's ``alloc_gen`` is the pass that last allocated the slot.

:func:`check_memory` finds every stamped page in a memory image (vectorised: the
pages are a ``(n, 512)`` view of 64-bit words) and reports ``lost-pages``, with
the meaning of the model's ``--verify`` (:meth:`kit.migration.Migration.verify`):
pages the guest holds whose content on the destination is wrong.  Here that is
a live slot with no good copy (``missing``: no page carries it, e.g. it arrived
as zeros; ``stale``: only an older generation or incarnation; ``corrupt``: the
header or tail is torn), or with two good copies (``duplicate``), plus the bad
pages the guest itself found and has freed since (``guest-bad-freed``).

:func:`verify_destination` stops the destination, dumps its RAM through QMP
``pmemsave`` in chunks into the experiment's temp folder, keeps only each
page's header and tail, always deletes the dump, and checks.

THE LAYOUT IS DEFINED IN ``files/kitmem.c`` (``struct slot_hdr``,
``struct ctrl_page``, ``mix64``, ``page_check``, ``ctrl_check``,
``free_in_pass``); this module mirrors it.  Change both together.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..memmap import pc_memory_map
from ..units import MiB
from .errors import LabError

PAGE = 4096
WORDS = PAGE // 8
TAIL_WORD = WORDS - 1            # kitmem.c TAIL_WORD


def _sig(text: bytes) -> int:
    return int.from_bytes(text, "little")


SIG_LIVE = _sig(b"KIT-SLOT")     # kitmem.c SIG_LIVE
SIG_DEAD = _sig(b"KIT-DEAD")     # kitmem.c SIG_DEAD
SIG_CTRL = _sig(b"KIT-CTRL")     # kitmem.c SIG_CTRL
LAYOUT_VERSION = 1

# struct slot_hdr: 64-bit word index of each field.
SLOT_SIG, SLOT_NONCE, SLOT_SLOT_N, SLOT_SEQ, SLOT_ALLOC_GEN, SLOT_GEN, SLOT_CHECK = range(7)
HDR_WORDS = 8
# struct ctrl_page
(CTRL_SIG, CTRL_NONCE, CTRL_NSLOTS_VERSION, CTRL_SEG, CTRL_THR, CTRL_CHECK, CTRL_POS, CTRL_SEQ,
 CTRL_BAD, CTRL_BAD_FREED, CTRL_FREES, CTRL_BASE) = range(12)
CTRL_WORDS = 12

U64 = np.uint64
_M1, _M2, _GOLD = U64(0xbf58476d1ce4e5b9), U64(0x94d049bb133111eb), U64(0x9e3779b97f4a7c15)
WHERE_MAX = 20
DUMP_CHUNK = 256 * MiB


def mix64(z):
    """splitmix64's finaliser (kitmem.c ``mix64``), on uint64 arrays or ints."""
    scalar = not isinstance(z, np.ndarray)
    z = np.asarray(z, dtype=U64)
    with np.errstate(over="ignore"):
        z = z + _GOLD
        z = (z ^ (z >> U64(30))) * _M1
        z = (z ^ (z >> U64(27))) * _M2
        z = z ^ (z >> U64(31))
    return int(z) if scalar else z


def page_check(nonce, slot_n, seq, alloc_gen):
    """kitmem.c ``page_check``; the tail word is its complement."""
    return mix64(np.asarray(nonce, U64) ^ mix64(np.asarray(slot_n, U64)
                 ^ mix64(np.asarray(seq, U64) ^ mix64(np.asarray(alloc_gen, U64)))))


def ctrl_check(words) -> int:
    """kitmem.c ``ctrl_check`` over a control page's first words."""
    w = [int(x) for x in words[:CTRL_CHECK]]
    return mix64(w[CTRL_SIG] ^ mix64(w[CTRL_NONCE] ^ mix64(
        w[CTRL_NSLOTS_VERSION] ^ mix64(w[CTRL_SEG] ^ mix64(w[CTRL_THR])))))


def free_in_pass(ctrl: dict, slots: np.ndarray, g: int) -> np.ndarray:
    """kitmem.c ``free_in_pass``: which of ``slots`` are free in pass ``g``."""
    slots = np.asarray(slots, dtype=U64)
    if g < 0:
        return np.ones(slots.shape, dtype=bool)
    seg_thr = ctrl["shrink-thr"] if g & 1 else ctrl["grow-thr"]
    nonce, key = U64(ctrl["nonce"]), U64(g) << U64(33)
    seg_hash = mix64(nonce ^ (key | (slots // U64(ctrl["seg"])) << U64(1))) >> U64(48)
    slot_hash = mix64(nonce ^ (key | slots << U64(1) | U64(1))) >> U64(48)
    return (seg_hash < U64(seg_thr)) | (slot_hash < U64(ctrl["churn-thr"]))


def alloc_pass(ctrl: dict, slots: np.ndarray, g: int) -> np.ndarray:
    """For each slot live in pass ``g``: the pass that allocated it (-1 if free)."""
    slots = np.asarray(slots, dtype=U64)
    out = np.full(slots.shape, -1, dtype=np.int64)
    run = np.ones(slots.shape, dtype=bool)     # still live, going back from g
    for p in range(g, -1, -1):
        run &= ~free_in_pass(ctrl, slots, p)
        if not run.any():
            break
        out[run] = p
    return out


# --------------------------------------------------------------------------- finding pages

def page_words(mem: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each page's header words ``(n, 8)`` and tail word ``(n,)`` (copies) of an
    image whose length is a whole number of pages."""
    mem = np.asarray(mem)
    if mem.dtype != np.uint8 or mem.ndim != 1:
        raise ValueError("memory image must be a 1-D uint8 array")
    if mem.size % PAGE:
        raise ValueError(f"memory image of {mem.size} bytes is not a whole number of 4 KiB pages")
    words = mem.view("<u8").reshape(-1, WORDS)
    return np.ascontiguousarray(words[:, :CTRL_WORDS]), np.ascontiguousarray(words[:, TAIL_WORD])


def _read_control(hdr: np.ndarray, addrs: np.ndarray) -> tuple[dict | None, int]:
    """The control page with the furthest position; also how many valid copies."""
    rows = np.flatnonzero(hdr[:, CTRL_SIG] == U64(SIG_CTRL))
    good = [r for r in rows if ctrl_check(hdr[r]) == int(hdr[r, CTRL_CHECK])
            and int(hdr[r, CTRL_NSLOTS_VERSION]) >> 32 == LAYOUT_VERSION]
    if not good:
        return None, 0
    r = max(good, key=lambda r: int(hdr[r, CTRL_POS]))
    w = [int(x) for x in hdr[r]]
    n = w[CTRL_NSLOTS_VERSION] & 0xffffffff
    thr = w[CTRL_THR]
    ctrl = {"nonce": w[CTRL_NONCE], "slots": n, "seg": w[CTRL_SEG],
            "grow-thr": thr & 0xfffff, "shrink-thr": (thr >> 20) & 0xfffff,
            "churn-thr": (thr >> 40) & 0xfffff, "pos": w[CTRL_POS],
            "pass": w[CTRL_POS] // n if n else 0, "cursor": w[CTRL_POS] % n if n else 0,
            "allocations": w[CTRL_SEQ], "frees": w[CTRL_FREES], "guest-bad-checks": w[CTRL_BAD],
            "guest-bad-freed": w[CTRL_BAD_FREED], "gpa": int(addrs[r])}
    return ctrl, len(good)


def _good_copies(hdr, tail, addrs):
    """The stamp analysis shared by :func:`check_headers` and :func:`held_pages`: the
    control page, which slots the guest holds, and which pages are good copies of them
    (as local variables of one namespace); None without a control page."""
    hdr = np.asarray(hdr, dtype=U64)
    tail = np.asarray(tail, dtype=U64)
    addrs = np.asarray(addrs, dtype=U64)
    ctrl, ctrl_copies = _read_control(hdr, addrs)
    if ctrl is None:
        return None
    n, nonce, g, cursor = ctrl["slots"], U64(ctrl["nonce"]), ctrl["pass"], ctrl["cursor"]

    mine = hdr[:, SLOT_NONCE] == nonce
    live_rows = np.flatnonzero(mine & (hdr[:, SLOT_SIG] == U64(SIG_LIVE)))
    dead = int(np.count_nonzero(mine & (hdr[:, SLOT_SIG] == U64(SIG_DEAD))))
    h, t = hdr[live_rows], tail[live_rows]
    slot_n = h[:, SLOT_SLOT_N]
    slot = (slot_n & U64(0xffffffff)).astype(np.int64)
    chk = page_check(nonce, slot_n, h[:, SLOT_SEQ], h[:, SLOT_ALLOC_GEN])
    intact = ((slot_n >> U64(32)) == U64(n)) & (slot < n) & (h[:, SLOT_CHECK] == chk) & (t == ~chk)
    torn_slots = slot[~intact & (slot < n)]

    # What the guest holds now, and what each page must say (two candidate
    # states for the slot at the cursor, which may be half done).
    all_slots = np.arange(n, dtype=U64)
    ag_prev = alloc_pass(ctrl, all_slots, g - 1)                 # state of pass g-1
    live_prev = ag_prev >= 0
    live_now = ~free_in_pass(ctrl, all_slots, g)
    ag_now = np.where(live_now, np.where(live_prev, ag_prev, g), -1)
    before = np.arange(n) < cursor
    want_live = np.where(before, live_now, live_prev)
    want_gen = np.where(before, g, g - 1)
    want_ag = np.where(before, ag_now, ag_prev)
    accept = want_live.copy()            # a good copy here is not an orphan
    demand = want_live.copy()            # the guest holds this slot: one good copy needed
    if cursor < n:
        # The step in progress may be half done: a slot being freed may already
        # be dead, one being allocated may not be written yet.
        accept[cursor] = live_prev[cursor] or live_now[cursor]
        demand[cursor] = live_prev[cursor] and live_now[cursor]

    gen = h[:, SLOT_GEN].astype(np.int64)
    agen = h[:, SLOT_ALLOC_GEN].astype(np.int64)
    s_ok = np.where(intact, slot, 0)
    good = intact & want_live[s_ok] & (gen == want_gen[s_ok]) & (agen == want_ag[s_ok])
    if cursor < n:
        at_cur = intact & (slot == cursor)
        good |= at_cur & (((gen == g - 1) & (agen == ag_prev[cursor]) & live_prev[cursor])
                          | ((gen == g) & (agen == ag_now[cursor]) & live_now[cursor]))
    return SimpleNamespace(**{k: v for k, v in locals().items() if k not in ("hdr", "tail", "addrs")})


def check_headers(hdr: np.ndarray, tail: np.ndarray, addrs: np.ndarray) -> dict:
    """:func:`check_memory` on pages already reduced to header words, tail word
    and guest physical address (one row per page)."""
    hdr = np.asarray(hdr, dtype=U64)
    tail = np.asarray(tail, dtype=U64)
    addrs = np.asarray(addrs, dtype=U64)
    ns = _good_copies(hdr, tail, addrs)
    if ns is None:
        return {"lost-pages": None, "control": None,
                "error": "no kitmem control page in guest memory (is the stress workload running?)",
                "pages-scanned": int(len(hdr))}
    (ctrl, ctrl_copies, n, g, cursor, live_rows, dead, h, slot, intact, torn_slots, want_gen, demand,
     accept, gen, agen, s_ok, good) = (
        ns.ctrl, ns.ctrl_copies, ns.n, ns.g, ns.cursor, ns.live_rows, ns.dead, ns.h, ns.slot, ns.intact,
        ns.torn_slots, ns.want_gen, ns.demand, ns.accept, ns.gen, ns.agen, ns.s_ok, ns.good)
    good_count = np.bincount(slot[good], minlength=n)[:n]
    valid_count = np.bincount(slot[intact], minlength=n)[:n]
    torn_count = np.bincount(torn_slots, minlength=n)[:n]

    missing_good = demand & (good_count == 0)
    stale = missing_good & (valid_count > 0)
    corrupt = missing_good & ~stale & (torn_count > 0)
    missing = missing_good & ~stale & ~corrupt
    duplicate = demand & (good_count > 1)
    held_lost = int(np.count_nonzero(missing_good | duplicate))
    lost = held_lost + ctrl["guest-bad-freed"]

    # migration-test's check: the generation of every held slot, in slot order
    # (its good copy, else any intact copy) changes exactly once, at the cursor.
    rows = np.flatnonzero(intact & demand[s_ok])
    rows = rows[np.lexsort((~good[rows], slot[rows]))]          # by slot, good copy first
    rows = rows[np.r_[True, np.diff(slot[rows]) != 0]] if len(rows) else rows
    edge_at = np.flatnonzero(np.diff(gen[rows]) != 0)
    edges = int(len(edge_at))
    edge_slots = slot[rows][edge_at + 1]
    # With one edge, it must sit at the cursor (the first held slot after it).
    # If it sits elsewhere the pages and the control page disagree: typically
    # the control page itself arrived stale, and every slot between the two is
    # counted lost although only that one page is.
    later = np.flatnonzero(demand[cursor + 1:]) if cursor < n else np.array([], int)
    nxt = cursor + 1 + int(later[0]) if len(later) else n
    edge_at_cursor = bool(edges == 0 if cursor == 0 else
                          edges == 1 and cursor <= int(edge_slots[0]) <= nxt)
    extra_copies = intact & ~good & accept[s_ok] & (good_count[s_ok] > 0)
    orphans = intact & ~accept[s_ok]

    where = []
    row_gpa = addrs[live_rows]
    for kind, mask in (("missing", missing), ("stale", stale), ("corrupt", corrupt),
                       ("duplicate", duplicate)):
        for s in np.flatnonzero(mask)[:WHERE_MAX]:
            copies = np.flatnonzero(slot == s)
            where.append({"slot": int(s), "kind": kind, "want-gen": int(want_gen[s]),
                          "copies": [{"gpa": hex(int(row_gpa[c])), "gen": int(gen[c]),
                                      "alloc-gen": int(agen[c]), "seq": int(h[c, SLOT_SEQ]),
                                      "intact": bool(intact[c])} for c in copies[:4]]})
    where.sort(key=lambda w: w["slot"])
    return {
        "lost-pages": lost,
        "lost-held": held_lost,
        "guest-bad-freed": ctrl["guest-bad-freed"],
        "guest-bad-checks": ctrl["guest-bad-checks"],
        "missing": int(np.count_nonzero(missing)), "stale": int(np.count_nonzero(stale)),
        "corrupt": int(np.count_nonzero(corrupt)), "duplicate": int(np.count_nonzero(duplicate)),
        "slots": n, "live-expected": int(np.count_nonzero(demand)),
        "live-found": int(np.count_nonzero(demand & (good_count >= 1))),
        "generation": g, "cursor": cursor, "edges": edges,
        "edge-slots": [int(x) for x in edge_slots[:4]],
        "edges-expected": int(0 < cursor < n),
        "edge-at-cursor": edge_at_cursor,
        "stale-copies": int(np.count_nonzero(extra_copies)),
        "orphan-live-copies": int(np.count_nonzero(orphans)),
        "torn-copies": int(len(torn_slots)),
        "dead-markers": dead,
        "control": {k: ctrl[k] for k in ("nonce", "slots", "seg", "pos", "allocations", "frees", "gpa")}
                   | {"copies": ctrl_copies, "nonce": f"{ctrl['nonce']:016x}", "gpa": hex(ctrl["gpa"])},
        "pages-scanned": int(len(hdr)),
        "where": where[:WHERE_MAX],
    }


def check_memory(mem, base_addrs=0) -> dict:
    """Check a guest memory image for lost stamped pages (see the module doc).

    ``mem`` is a 1-D uint8 array (a whole number of pages) whose first byte is
    guest physical address ``base_addrs``, or a list of such arrays with a list
    of base addresses (e.g. RAM below 4 GiB at 0 and RAM above it at 4 GiB).
    Returns a dict; ``lost-pages`` is None when there is no control page."""
    if isinstance(mem, np.ndarray):
        mem, base_addrs = [mem], [base_addrs]
    parts = [page_words(m) + (U64(b) + np.arange(m.size // PAGE, dtype=U64) * U64(PAGE),)
             for m, b in zip(mem, base_addrs)]
    return check_headers(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                         np.concatenate([p[2] for p in parts]))


# --------------------------------------------------------------------------- the destination

def ram_regions(ram_mib: int, machine: str = "pc") -> list[tuple[int, int]]:
    """(guest physical address, bytes) of the guest's RAM: below 4 GiB from 0,
    above it from 4 GiB (QEMU's pc_memory_init)."""
    mm = pc_memory_map(ram_mib * MiB, machine)
    out = [(0, mm.below_4g_mem_size)]
    if mm.above_4g_mem_size:
        out.append((1 << 32, mm.above_4g_mem_size))
    return out


def _dump_chunks(q, ram_mib, tmp, name, machine):
    """(guest physical address, bytes as a uint8 array) of the stopped guest's RAM,
    DUMP_CHUNK at a time through QMP ``pmemsave`` into ``tmp/name``; the file is
    deleted as soon as each chunk is read, and always at the end."""
    f = Path(tmp) / name
    try:
        for gpa, size in ram_regions(ram_mib, machine):
            for off in range(0, size, DUMP_CHUNK):
                n = min(DUMP_CHUNK, size - off)
                q.qmp.execute("pmemsave", val=gpa + off, size=n, filename=str(f))
                if f.stat().st_size != n:
                    raise LabError(f"pmemsave wrote {f.stat().st_size} bytes, not {n}")
                mem = np.fromfile(f, dtype=np.uint8)
                f.unlink()
                yield gpa + off, mem
    finally:
        f.unlink(missing_ok=True)


def verify_destination(dst, ram_mib: int, tmp, log=lambda msg: None, machine: str = "pc") -> dict:
    """Stop the destination, dump its RAM with QMP ``pmemsave`` (in chunks, into
    ``tmp``), check it with :func:`check_headers`.  The dump is always deleted.
    Raises :class:`LabError` when there is nothing to check (no control page)."""
    t0 = time.monotonic()
    dst.qmp.execute("stop")
    hdrs, tails, addrs = [], [], []
    for gpa, mem in _dump_chunks(dst, ram_mib, tmp, f"kit-verify-{os.getpid()}.mem", machine):
        h, t = page_words(mem)
        hdrs.append(h)
        tails.append(t)
        addrs.append(U64(gpa) + np.arange(mem.size // PAGE, dtype=U64) * U64(PAGE))
    t_dump = time.monotonic() - t0
    out = check_headers(np.concatenate(hdrs), np.concatenate(tails), np.concatenate(addrs))
    out["dump-s"] = round(t_dump, 2)
    out["check-s"] = round(time.monotonic() - t0 - t_dump, 2)
    if out["lost-pages"] is None:
        raise LabError(f"verify: {out['error']}")
    log(f"verify: {out['lost-pages']} lost pages; {out['live-found']}/{out['live-expected']} live "
        f"slots found, generation {out['generation']}, {out['edges']} edge(s), "
        f"{out['dead-markers']} dead markers")
    return out




def held_pages(hdr: np.ndarray, tail: np.ndarray, addrs: np.ndarray) -> dict:
    """What ``kitmem stress`` holds in a memory image (the paused source's): the guest
    physical addresses of the good copy of every slot it holds and of its control page,
    sorted (``held``), and of every page that is still exactly what kitmem left in it when it
    freed a slot (``dead``: see :func:`classify_differences`).  ``None`` values when the
    image has no control page."""
    hdr = np.asarray(hdr, dtype=U64)
    tail = np.asarray(tail, dtype=U64)
    addrs = np.asarray(addrs, dtype=U64)
    ns = _good_copies(hdr, tail, addrs)
    if ns is None:
        return {"held": None, "control-gpa": None, "nonce": None, "slots": None}
    # every good copy: of a slot the guest holds, or of the slot at the cursor in either state
    held = np.concatenate([addrs[ns.live_rows[ns.good]], [U64(ns.ctrl["gpa"])]])
    return {"held": np.sort(held), "control-gpa": ns.ctrl["gpa"], "nonce": ns.ctrl["nonce"],
            "slots": ns.n}


def dead_slot_image(words: np.ndarray, nonce: int, n: int) -> np.ndarray:
    """For whole pages (rows of 512 words): is each exactly what kitmem leaves in a slot
    page it frees?  That is: the header of a slot of this boot (nonce, a slot below ``n``
    with ``n``, a check word that matches, the tail its complement) with the signature
    turned DEAD, and every other word zero (the page was faulted in zeroed, and kitmem
    writes only the header and the tail)."""
    w = np.asarray(words, dtype=U64).reshape(-1, WORDS)
    slot_n = w[:, SLOT_SLOT_N]
    chk = page_check(U64(nonce), slot_n, w[:, SLOT_SEQ], w[:, SLOT_ALLOC_GEN])
    return ((w[:, SLOT_SIG] == U64(SIG_DEAD)) & (w[:, SLOT_NONCE] == U64(nonce))
            & ((slot_n >> U64(32)) == U64(n)) & ((slot_n & U64(0xffffffff)) < U64(n))
            & (w[:, SLOT_CHECK] == chk) & (w[:, TAIL_WORD] == ~chk)
            & ~w[:, HDR_WORDS - 1:TAIL_WORD].any(axis=1))


DIFF_CLASSES = ("held-live", "free", "unplaced")


def classify_differences(gpa, held, dead, hint: bool, dst_zero=None) -> dict:
    """The verdict on the pages where the destination differs from the paused source.

    ``gpa``: their addresses; ``held``: the sorted addresses the guest holds live
    (:func:`held_pages` on the source); ``dead``: for each of ``gpa``, whether the source
    page is an untouched freed slot (:func:`dead_slot_image`).  Each differing page is one of

    * ``held-live``: the guest holds it (a slot's good copy, or the control page).  Its last
      write did not reach the destination: a **lost write**, a failure, hints or not.
    * ``free``: kitmem freed it and nothing has written it since (the whole source page is
      still the dead slot it left).  It is in the buddy allocator or held by the balloon;
      either way nobody holds data in it, so its old content on the destination is
      harmless.  This is what a page freed after it was sent and hinted before it was sent
      again looks like (QEMU clears hinted pages in its bitmap): the orphan live copies the
      destination's stamp check counts.
    * ``unplaced``: anything else, i.e. the kernel's own memory (page tables, slab, the
      kernel's stacks), kitmem's unstamped memory (its stack, its table of sequence numbers)
      or free memory that kitmem never stamped.  The dumps cannot tell which: nothing in
      guest RAM says whether the kernel holds a page.  Without hints QEMU sends every
      page it has not proven clean, so any difference is a lost write and these count as
      lost.  With hints they are free pages QEMU skipped, or lost writes of the kernel; they
      are counted on their own line, and the destination's health check (it runs, its
      console shows no oops) is the only evidence about them.  Of these, ``unplaced-dst-zero``
      are zero on the destination: QEMU never sent them at all, as for a page hinted free
      before its first send and not written since; but a write the dirty log missed after
      the hint would look the same, so they are not proven free either.

    ``lost-writes`` is ``held-live``, plus ``unplaced`` when hints are off."""
    gpa = np.asarray(gpa, dtype=U64)
    dead = np.asarray(dead, dtype=bool)
    if held is None:                           # no control page: nothing can be placed
        is_held = np.zeros(gpa.shape, dtype=bool)
        dead = np.zeros(gpa.shape, dtype=bool)
    else:
        held = np.asarray(held, dtype=U64)
        at = np.searchsorted(held, gpa)
        is_held = (at < len(held)) & (held[np.minimum(at, len(held) - 1)] == gpa) if len(held) else \
            np.zeros(gpa.shape, dtype=bool)
    free = dead & ~is_held
    unplaced = ~is_held & ~free
    counts = {"held-live": int(is_held.sum()), "free": int(free.sum()), "unplaced": int(unplaced.sum())}
    if dst_zero is not None:
        counts["unplaced-dst-zero"] = int((unplaced & np.asarray(dst_zero, dtype=bool)).sum())
    return {"classes": counts,
            "lost-writes": counts["held-live"] + (0 if hint else counts["unplaced"]),
            "harmless": counts["free"],
            "unplaced-not-counted": counts["unplaced"] if hint else 0,
            "where": {k: [hex(int(a)) for a in gpa[m][:WHERE_MAX]]
                      for k, m in zip(DIFF_CLASSES, (is_held, free, unplaced))},
            "rule": "lost writes: differing pages the guest holds live"
                    + ("; differing pages the dumps cannot place are not counted (free or kernel)"
                       if hint else ", and with hints off every other differing page too")}


def diff_source_destination(src, dst, ram_mib: int, tmp, machine: str = "pc", hint: bool = False) -> dict:
    """Compare the paused source's RAM with the destination's, page by page, and classify
    every differing page from what the guest holds at the pause (:func:`classify_differences`).

    Both must be stopped (the source is after a completed migration; the destination when
    started with ``-S``).  What the guest holds is read from the source's own memory: kitmem's
    control page and the stamps of its held slots (the source is the truth; the analysis is
    the destination's stamp check, :func:`held_pages`), so no extra guest code runs and
    nothing is sampled before the pause.  Only each page's header and tail are kept of the
    source, and whole pages only where the two differ."""
    differ = dst_zero = 0
    hdrs, tails, addrs = [], [], []
    diff_gpa, diff_rows, diff_dst_zero = [], [], []
    for (ga, a), (_, b) in zip(_dump_chunks(src, ram_mib, tmp, "kit-src.mem", machine),
                               _dump_chunks(dst, ram_mib, tmp, "kit-dst.mem", machine)):
        h, t = page_words(a)
        hdrs.append(h)
        tails.append(t)
        addrs.append(U64(ga) + np.arange(a.size // PAGE, dtype=U64) * U64(PAGE))
        a, b = a.view("<u8").reshape(-1, WORDS), b.view("<u8").reshape(-1, WORDS)
        d = np.flatnonzero((a != b).any(axis=1))
        zero = ~b[d].any(axis=1)
        differ += len(d)
        dst_zero += int(zero.sum())
        diff_gpa.append(addrs[-1][d])
        diff_rows.append(a[d].copy())
        diff_dst_zero.append(zero)
    gpa = np.concatenate(diff_gpa) if diff_gpa else np.zeros(0, U64)
    rows = np.concatenate(diff_rows) if diff_rows else np.zeros((0, WORDS), U64)
    zero = np.concatenate(diff_dst_zero) if diff_dst_zero else np.zeros(0, bool)
    held = held_pages(np.concatenate(hdrs), np.concatenate(tails), np.concatenate(addrs))
    dead = (dead_slot_image(rows, held["nonce"], held["slots"]) if held["held"] is not None
            else np.zeros(len(gpa), bool))
    verdict = classify_differences(gpa, held["held"], dead, hint, dst_zero=zero)
    return {"pages-differ": int(differ), "differ-dst-zero": dst_zero,
            "differ-dst-nonzero": int(differ - dst_zero),
            "nonzero-where": [hex(int(x)) for x in gpa[~zero][:WHERE_MAX]],
            "source-held-pages": None if held["held"] is None else int(len(held["held"])),
            **verdict}
