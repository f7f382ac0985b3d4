"""Arithmetic for the exercise tests: answers worked out by hand, not by the migration model.

The exercise tests compare each checker's answer with a figure derived here from
three things, none of which runs a migration:

* counts read off a freshly booted, seeded guest (its buddy allocator's free bitmap,
  its pages' zero flags and write versions);
* a cost model's parameters, which are the model's inputs (each has a stated source
  in kit/costmodel.py), applied per page, per byte or per call;
* QEMU's wire format and algorithm, written out below.
"""
import numpy as np

from kit.guest import Guest
from kit.memmap import pc_memory_map

PAGE = 4096
ZERO_PAGE_WIRE = 8 + 1        # be64 address | RAM_SAVE_FLAG_COMPRESS, then the fill byte
FULL_PAGE_WIRE = 8 + PAGE     # be64 address | RAM_SAVE_FLAG_PAGE, then the page itself
VGA_PAGES = (16 << 20) // PAGE  # vga.vram, the second RAMBlock: 16 MiB, never written, so zero
POLL_S = 1e-3                 # the RFC's QEMU polls for the guest's answer with usleep(1000)
HINT_BLOCK = 1024             # free page hinting reports whole, aligned 4 MiB blocks


def seed_guest(ram, workload="idle"):
    """The exercises' guest: ``pc`` machine, seed 0, freshly booted (nothing migrated)."""
    return Guest(pc_memory_map(ram, "pc"), workload, seed=0)


def free_frames(g) -> int:
    """Free frames, counted as bits of the buddy allocator's free bitmap."""
    return int(np.count_nonzero(g.buddy.free))


def backed_frames(g) -> int:
    """Frames the host backs: every frame the guest ever wrote (write version > 0)."""
    return int(np.count_nonzero(g.memory.version))


def full_ram_pages(g) -> int:
    """Pages of pc.ram that are not zero, so go out as full pages."""
    zero = g.memory.to_ram_order(g.memory.zero)
    return int(len(zero) - np.count_nonzero(zero))


def whole_free_blocks(g) -> int:
    """Aligned 4 MiB blocks every frame of which is free (bits of the free bitmap, 1024 at a time)."""
    return int(np.count_nonzero(g.buddy.free.reshape(-1, HINT_BLOCK).all(axis=1)))


def all_pages(g) -> int:
    """Pages QEMU migrates: pc.ram and vga.vram."""
    return g.mm.ram_pages + VGA_PAGES


def page_s(cost, wire_bytes) -> float:
    """One page's send time: the CPU and the wire overlap, so the longer of the two."""
    return max(cost.cpu_ns_per_page * 1e-9, wire_bytes / cost.wire_bytes_per_s)


def setup_s(cost, g, syncs=1) -> float:
    """ram_save_setup's fixed and per-page parts, write-protecting every backed frame
    (memory_global_dirty_log_start), and ``syncs`` bitmap syncs over every page."""
    return (cost.setup_ms * 1e-3 + all_pages(g) * cost.setup_ns_per_page * 1e-9
            + backed_frames(g) * cost.dirty_log_ns_per_backed_page * 1e-9
            + syncs * all_pages(g) * cost.sync_ns_per_page * 1e-9)


def free_page_answer_s(cost, g) -> float:
    """The RFC's guest walk (one bit per free page) and the hand-over of the bitmap
    (one bit per page of pc.ram), and QEMU noticing the answer at its next poll.
    The walk's cost per free-list entry is left out: it must be 0 in ``cost``."""
    assert cost.guest_walk_ns_per_block == 0
    bitmap_bytes = -(-g.mm.ram_pages // 8)
    return (free_frames(g) * cost.guest_walk_ns_per_free_page * 1e-9
            + bitmap_bytes * cost.bitmap_transfer_ns_per_byte * 1e-9 + POLL_S)
