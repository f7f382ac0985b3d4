"""kit.viz.protocol_view (notebook 02's pictures and stepper) and kit.exercises.ex02."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from kit.units import GiB

from kit.bitmap import bitmap_bytes, unpack_bitmap
from kit.exercises import ex02
from kit.guest import Guest
from kit.memmap import pc_memory_map
from kit.migration import Migration
from kit.viz import protocol_view as pv


@pytest.fixture(scope="module")
def done():
    """A 256 MiB guest whose pv migration has run its setup (one free-page request)."""
    m = Migration(Guest(pc_memory_map("256M"), "hog", seed=1), "pv")
    while m.phase == "setup":
        m.step()
    return m.guest, m


def test_request_steps_follow_the_state_machine(done):
    g, m = done
    st = pv.ProtocolStepper.from_migration(m)
    kinds = [s.kind for s in st.steps]
    assert kinds[0] == "negotiate"
    for k in ("request", "walk", "reply", "poll"):
        assert k in kinds
    assert [s.status for s in st.steps if s.kind == "state"] == ["STARTED", "DONE", "NOT_STARTED"]
    assert st.steps[-1].status == "NOT_STARTED"
    reply = next(s for s in st.steps if s.kind == "add_buf" and len(s.parts) == 3)
    assert [p[1] for p in reply.parts] == [8, 8, bitmap_bytes(g.mm.ram_pages)]
    assert f"{m.free_pages_count:,}" in reply.parts[0][2]
    push = next(s for s in st.steps if s.kind == "push" and s.parts)
    assert f"{m.balloon.low_mem:#x}" in push.parts[0][2]
    # the polls that returned 0 appear as one step, marked as not logged
    polls = next(e["polls"] for e in m.timeline if e["kind"] == "free-pages-done")
    extra = [s for s in st.steps if s.seq is None]
    assert len(extra) == (1 if polls > 1 else 0)


def test_stepper_buttons_move_and_redraw(done):
    _, m = done
    st = pv.ProtocolStepper.from_migration(m)
    assert st.index == 0 and st.back_button.disabled
    png0, panel0, pos0 = st.image.value, st.panel.value, st.position.value
    st.next_button.click()
    assert st.index == 1 and st.panel.value != panel0 and st.position.value != pos0
    reply_at = next(i for i, s in enumerate(st.steps) if s.kind == "reply")
    st.goto(reply_at - 1)
    before = st.image.value
    st.next_button.click()
    assert st.image.value != before            # the bitmap arrives in QEMU's buffer
    st.goto(10_000)
    assert st.index == len(st.steps) - 1 and st.next_button.disabled
    st.back_button.click()
    assert st.index == len(st.steps) - 2
    st.goto(-5)
    assert st.index == 0 and st.image.value == png0


def test_stepper_needs_a_finished_request():
    m = Migration(Guest(pc_memory_map("256M"), "idle", seed=0), "pv")
    with pytest.raises(ValueError):
        pv.ProtocolStepper.from_migration(m)


def test_feature_and_queue_tables(done):
    _, m = done
    ft = pv.feature_table(m.balloon, m.driver)
    assert "VIRTIO_BALLOON_F_GET_FREE_PAGES" in ft and len(ft.splitlines()) == 5
    assert all(name in pv.virtqueue_table(m.balloon) for name in ("ivq", "dvq", "svq", "fvq"))
    assert "dropped   : none" in pv.negotiation(m.balloon.log)
    old = Migration(Guest(pc_memory_map("256M"), "idle", seed=0), "pv", guest_features={0, 1, 2})
    assert "dropped   : GET_FREE_PAGES" in pv.negotiation(old.balloon.log)


def test_free_area_table_and_plot(done):
    g, _ = done
    text = pv.free_area_table(g)
    assert f"{g.buddy.nr_free_pages:,}  = NR_FREE_PAGES" in text
    fig = pv.plot_free_area(g)
    assert len(fig.axes) == 2
    plt.close(fig)


def test_bitmap_matches_the_guest_and_qemus_copy(done):
    g, m = done
    bits = pv.bitmap_bits(g)
    assert len(bits) == g.mm.ram_pages and int(bits.sum()) == g.buddy.nr_free_pages
    assert np.array_equal(bits, unpack_bitmap(m.free_pages_bmap, g.mm.ram_pages))
    start = pv.interesting_start(bits)
    assert start % 8 == 0 and bits[start:start + 64].any() and not bits[start:start + 64].all()
    lines = pv.bitmap_text(g, bits, start).splitlines()
    guest_line, bit_line = lines[1].split(": ")[1], lines[2].split(": ")[1]
    assert all((gl in ".s") == (bl == "1") for gl, bl in zip(guest_line, bit_line))
    fig = pv.plot_guest_and_bitmap(g, bits)
    plt.close(fig)


def test_classic_balloon_inflates_and_deflates():
    g = Guest(pc_memory_map("256M"), "idle", seed=0)
    reg, dev, drv = pv.classic_balloon(g)
    free = g.buddy.nr_free_pages
    reg.qmp_balloon(192 << 20, 1.0)                  # leave 192 MiB: 16384 pages in the balloon
    assert dev.actual == 16384 and g.buddy.nr_free_pages == free - 16384
    assert len(dev.log.filter(kind="add_buf", vq="ivq")) == 64
    reg.qmp_balloon(256 << 20, 2.0)
    assert dev.actual == 0 and g.buddy.nr_free_pages == free


def test_runs_table_lists_every_run():
    a = Migration(Guest(pc_memory_map("256M"), "idle", seed=0), "original")
    b = Migration(Guest(pc_memory_map("256M"), "idle", seed=0), "pv")
    a.run(), b.run()
    text = pv.runs_table({"orig": a, "pv": b})
    assert "orig" in text and "free pages skipped" in text


# -- exercises -------------------------------------------------------------------------
def test_ex02_checks_give_the_right_verdicts():
    """Answers by hand: 1. a 4 GiB q35 guest keeps 2 GiB below 4 GiB and 2 GiB above, 4 GiB of
    pc.ram = 1,048,576 pages, one bit each: 131,072 bytes.  2. QEMU polls every 1 ms until the
    guest's reply lands: the guest walks its free pages (cost per free page) and hands the
    bitmap over (cost per byte), from the cost model's inputs.  3. A guest without bit 3: the
    generic layer returns -1."""
    import math
    from by_hand import free_frames, seed_guest
    from kit.costmodel import get_preset
    for check in (ex02.check_bitmap_bytes, ex02.check_polls, ex02.check_old_guest_return):
        assert not check(None).correct and "prediction first" in check(None).message
    assert ex02.check_bitmap_bytes(4 * GiB // 4096 // 8).correct
    assert not ex02.check_bitmap_bytes(196608).correct   # max_pfn counted: hole included
    assert "hole" in ex02.check_bitmap_bytes(196608).message
    cost = get_preset("seed-2016")
    g = seed_guest(ex02.SCENARIO_2["ram"], ex02.SCENARIO_2["workload"])
    wait_s = (free_frames(g) * cost.guest_walk_ns_per_free_page
              + (g.mm.ram_pages // 8) * cost.bitmap_transfer_ns_per_byte) * 1e-9
    polls = math.ceil(wait_s / 1e-3)
    assert ex02.check_polls(polls).correct
    assert not ex02.check_polls(polls + 5).correct and not ex02.check_polls(polls - 5).correct
    assert ex02.check_old_guest_return(-1).correct
    assert not ex02.check_old_guest_return(0).correct
    assert not ex02.check_old_guest_return("x").correct
    for n in (1, 2, 3):
        assert ex02.scenario(n)