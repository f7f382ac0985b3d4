"""Patch 2: virtio-balloon device, guest driver and generic balloon layer."""
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kit.balloon import (DONE, NOT_STARTED, STARTED, VIRTIO_BALLOON_F_DEFLATE_ON_OOM,
                         VIRTIO_BALLOON_F_GET_FREE_PAGES, VIRTIO_BALLOON_F_MUST_TELL_HOST,
                         VIRTIO_BALLOON_F_STATS_VQ, VIRTIO_BALLOON_S_MEMFREE,
                         VIRTIO_BALLOON_S_MEMTOT, BalloonRegistry, Event, EventLog, MemLayout,
                         VirtIOBalloon, VirtQueue, feature_names, features_to_mask)
from kit.bitmap import bitmap_bytes, pack_bitmap, unpack_bitmap
from kit.errors import BitmapLengthError, KitError, ProtocolError, VirtQueueFull
from kit.guest.balloon_driver import VirtioBalloonDriver

LOW_MEM = 0xC0000000
RAM_PAGES = 1000
COST_S = 0.020       # Liang's ~20 ms to build the bitmap
XFER_S = 0.003       # and ~3 ms to move it


class FakeSource:
    """free_page_source that hands out a fixed bitmap and remembers its calls."""

    def __init__(self, ram_pages=RAM_PAGES, cost_s=COST_S, seed=0, length=None):
        rng = np.random.default_rng(seed)
        self.bits = rng.random(ram_pages if length is None else length) < 0.7
        self.cost_s = cost_s
        self.calls = []

    def __call__(self, low_mem, now):
        self.calls.append((low_mem, now))
        return self.bits, int(self.bits.sum()), self.cost_s


def make(source=None, guest_features=None, offer_free_pages=True, ram_pages=RAM_PAGES,
         probe=True, must_tell_host=False, deflate_on_oom=False, bitmap_transfer_s=XFER_S,
         **driver_kw):
    """A registry, a device, its driver (probed at t=0) and the fake source."""
    reg = BalloonRegistry()
    dev = VirtIOBalloon(LOW_MEM, ram_pages, log=EventLog(), offer_free_pages=offer_free_pages,
                        must_tell_host=must_tell_host, deflate_on_oom=deflate_on_oom,
                        registry=reg)
    source = FakeSource(ram_pages) if source is None else source
    drv = VirtioBalloonDriver(dev, source, guest_features, bitmap_transfer_s=bitmap_transfer_s,
                              **driver_kw)
    if probe:
        drv.probe(0.0)
    return reg, dev, drv, source


def dest(ram_pages=RAM_PAGES):
    return np.zeros(bitmap_bytes(ram_pages), dtype=np.uint8)


def is_subsequence(wanted, kinds):
    it = iter(kinds)
    return all(k in it for k in wanted)


def reply_chain(count, bitmap, declared=None):
    declared = len(bitmap) if declared is None else declared
    return [("out", int(count).to_bytes(8, "little")), ("out", int(declared).to_bytes(8, "little")),
            ("out", np.asarray(bitmap, dtype=np.uint8))]


# ----------------------------------------------------------------------------- features
def test_feature_helpers():
    assert features_to_mask({0, 3}) == 0b1001
    assert features_to_mask(0b110) == 0b110
    assert feature_names(0b1010) == ["VIRTIO_BALLOON_F_STATS_VQ", "VIRTIO_BALLOON_F_GET_FREE_PAGES"]
    assert feature_names({5}) == ["bit 5"]
    with pytest.raises(KitError):
        features_to_mask({64})


def test_offer_matches_qemu_2_5_plus_rfc():
    dev = VirtIOBalloon(LOW_MEM, RAM_PAGES)
    assert dev.get_features() == features_to_mask({VIRTIO_BALLOON_F_STATS_VQ,
                                                   VIRTIO_BALLOON_F_GET_FREE_PAGES})
    dev = VirtIOBalloon(LOW_MEM, RAM_PAGES, offer_free_pages=False, deflate_on_oom=True)
    assert dev.get_features() == features_to_mask({VIRTIO_BALLOON_F_STATS_VQ,
                                                   VIRTIO_BALLOON_F_DEFLATE_ON_OOM})


def test_bit3_negotiated_and_buffer_preposted():
    reg, dev, drv, _ = make()
    assert dev.balloon_free_pages_supported() and reg.balloon_free_pages_support()
    assert dev.free_pages_vq_elem is not None and dev.free_pages_vq_elem.in_bytes == 8
    assert dev.log.filter(kind="negotiate")[0].detail["negotiated"] == [
        "VIRTIO_BALLOON_F_STATS_VQ", "VIRTIO_BALLOON_F_GET_FREE_PAGES"]


@pytest.mark.parametrize("guest_features,offer", [({0, 1, 2}, True), (None, False)])
def test_not_negotiated_returns_minus_one(guest_features, offer):
    reg, dev, drv, src = make(guest_features=guest_features, offer_free_pages=offer)
    assert not reg.balloon_free_pages_support()
    assert dev.fvq.num_avail == 0 and dev.free_pages_vq_elem is None    # nothing pre-posted
    buf = dest()
    assert reg.balloon_get_free_pages(buf, 0.001) == (-1, 0)
    assert dev.req_status is NOT_STARTED and not buf.any() and src.calls == []


def test_guest_accepting_unoffered_bit_is_an_error():
    dev = VirtIOBalloon(LOW_MEM, RAM_PAGES)
    with pytest.raises(ProtocolError, match="MUST_TELL_HOST"):
        dev.set_features({VIRTIO_BALLOON_F_MUST_TELL_HOST, VIRTIO_BALLOON_F_STATS_VQ}, 0.0)
    assert dev.guest_features == 0


def test_no_balloon_registered():
    reg = BalloonRegistry()
    assert not reg.balloon_free_pages_support()
    assert reg.balloon_get_free_pages(dest(), 0.0) == (-1, 0)
    VirtIOBalloon(LOW_MEM, RAM_PAGES, registry=reg)
    with pytest.raises(KitError, match="Only one balloon"):
        VirtIOBalloon(LOW_MEM, RAM_PAGES, registry=reg)


def test_registry_accepts_bound_methods_or_c_style_functions():
    # bound method, no support callback: the registry asks the device itself
    dev = VirtIOBalloon(LOW_MEM, RAM_PAGES)
    drv = VirtioBalloonDriver(dev, FakeSource(), {VIRTIO_BALLOON_F_STATS_VQ})
    drv.probe(0.0)
    reg = BalloonRegistry()
    assert reg.qemu_add_balloon_handler(None, None, dev.virtio_balloon_free_pages, dev) == 0
    assert not reg.balloon_free_pages_support()
    assert reg.balloon_get_free_pages(dest(), 0.0) == (-1, 0)
    # C style: plain functions that take opaque first
    reg = BalloonRegistry()
    seen = []
    reg.qemu_add_balloon_handler(lambda o, target, now: seen.append((o, target, now)),
                                 lambda o: {"actual": 1},
                                 lambda o, buf, now: (1, 42), "opaque")
    reg.qmp_balloon(4096, 1.0)
    assert seen == [("opaque", 4096, 1.0)] and reg.qmp_query_balloon() == {"actual": 1}
    assert reg.balloon_free_pages_support() and reg.balloon_get_free_pages(dest(), 0) == (1, 42)
    reg.qemu_remove_balloon_handler("someone else")
    assert reg.have_balloon()
    reg.qemu_remove_balloon_handler("opaque")
    assert not reg.have_balloon()


def test_unrealize_removes_handler():
    reg, dev, drv, _ = make()
    dev.unrealize()
    assert reg.balloon_get_free_pages(dest(), 0.0) == (-1, 0)


# ----------------------------------------------------------------------------- request cycle
def test_full_request_cycle():
    reg, dev, drv, src = make()
    buf = dest()
    t0 = 0.001
    assert reg.balloon_get_free_pages(buf, t0) == (0, 0)
    assert dev.req_status is STARTED
    assert src.calls == [(LOW_MEM, t0)]                       # low_mem reached the guest
    due = drv.next_action_time()
    assert due == pytest.approx(t0 + COST_S + XFER_S)

    # poll every 1 ms of simulated time, as ram_save_setup does
    results = []
    for k in range(2, 40):
        now = k * 1e-3
        drv.run_until(now)
        results.append((now, reg.balloon_get_free_pages(buf, now)))
        if results[-1][1][0] == 1:
            break
    before = [r for now, r in results if now < due - 1e-12]
    assert before and all(r == (0, 0) for r in before)
    now, (ret, count) = results[-1]
    assert ret == 1 and now >= due - 1e-12
    assert count == int(src.bits.sum())
    assert np.array_equal(buf, pack_bitmap(src.bits))
    assert np.array_equal(unpack_bitmap(buf, RAM_PAGES), src.bits)
    assert dev.req_status is NOT_STARTED and drv.next_action_time() is None
    assert dev.free_pages_vq_elem is not None                 # fresh buffer for next time

    kinds = dev.log.kinds()
    assert is_subsequence(["negotiate", "add_buf", "kick", "pop",                 # probe
                           "request", "state", "push", "notify", "get_used", "walk",
                           "add_buf", "add_buf", "kick", "pop", "reply", "state",
                           "push", "notify", "get_used", "pop", "poll", "state"], kinds)
    states = [(e.detail["from"], e.detail["to"]) for e in dev.log.filter(kind="state")]
    assert states == [("NOT_STARTED", "STARTED"), ("STARTED", "DONE"), ("DONE", "NOT_STARTED")]
    times = [e.t for e in dev.log]
    assert times == sorted(times)


def test_second_request_reuses_the_fresh_buffer_and_ring_does_not_leak():
    reg, dev, drv, src = make()
    for cycle in range(3):
        t = cycle * 1.0
        buf = dest()
        assert reg.balloon_get_free_pages(buf, t) == (0, 0)
        drv.run_until(drv.next_action_time())
        assert reg.balloon_get_free_pages(buf, t + 0.5) == (1, int(src.bits.sum()))
        assert np.array_equal(buf, pack_bitmap(src.bits))
    assert dev.fvq.num_free == dev.fvq.size - 1               # only the pre-posted buffer


def test_driver_that_did_not_kick_still_serves_request():
    reg, dev, drv, src = make(probe=False)
    dev.set_features({VIRTIO_BALLOON_F_GET_FREE_PAGES}, 0.0)
    drv.features = dev.guest_features
    dev.fvq.add_buf([("in", 8)], 0.0, tag="mem_layout")       # no kick
    assert reg.balloon_get_free_pages(dest(), 0.001) == (0, 0)
    assert src.calls == [(LOW_MEM, 0.001)]


def test_hung_guest_never_completes():
    src = FakeSource(cost_s=math.inf)
    reg, dev, drv, _ = make(source=src)
    buf = dest()
    assert reg.balloon_get_free_pages(buf, 0.0) == (0, 0)
    assert drv.next_action_time() == math.inf
    assert drv.run_until(1e9) == 0 and drv.run_until(math.inf) == 0
    assert reg.balloon_get_free_pages(buf, 1e9) == (0, 0)
    assert dev.req_status is STARTED and not buf.any()
    assert dev.log.filter(kind="walk")[0].detail["hung"] is True


def test_transfer_time_may_depend_on_size():
    reg, dev, drv, src = make(bitmap_transfer_s=lambda nbytes: nbytes / 1e6)
    reg.balloon_get_free_pages(dest(), 0.0)
    assert drv.next_action_time() == pytest.approx(COST_S + bitmap_bytes(RAM_PAGES) / 1e6)


# ----------------------------------------------------------------------------- bad messages
def test_reply_with_no_request_is_a_protocol_error():
    reg, dev, drv, src = make()
    bm = pack_bitmap(src.bits)
    dev.fvq.add_buf(reply_chain(5, bm), 0.1)
    with pytest.raises(ProtocolError, match="no request is outstanding"):
        dev.fvq.kick(0.1)
    assert dev.req_status is NOT_STARTED and dev.free_pages_count == 0


def test_reply_after_done_is_a_protocol_error():
    reg, dev, drv, src = make()
    buf = dest()
    reg.balloon_get_free_pages(buf, 0.0)
    drv.run_until(1.0)
    assert dev.req_status is DONE
    dev.fvq.add_buf(reply_chain(7, np.zeros_like(buf)), 1.0)
    with pytest.raises(ProtocolError, match="DONE"):
        dev.fvq.kick(1.0)
    assert dev.req_status is DONE and dev.free_pages_count == int(src.bits.sum())
    assert np.array_equal(buf, pack_bitmap(src.bits))
    assert reg.balloon_get_free_pages(buf, 1.0) == (1, int(src.bits.sum()))


def test_request_without_preposted_buffer_is_a_protocol_error():
    reg = BalloonRegistry()
    dev = VirtIOBalloon(LOW_MEM, RAM_PAGES, registry=reg)
    dev.set_features({VIRTIO_BALLOON_F_GET_FREE_PAGES}, 0.0)   # a guest that never posts
    with pytest.raises(ProtocolError, match="no pre-posted"):
        reg.balloon_get_free_pages(dest(), 0.001)
    assert dev.req_status is NOT_STARTED


def test_malformed_reply_chain_is_a_protocol_error():
    reg, dev, drv, src = make()
    reg.balloon_get_free_pages(dest(), 0.0)
    dev.fvq.add_buf([("out", b"\0" * 8), ("out", b"\0" * 16)], 0.001)
    with pytest.raises(ProtocolError, match="exactly three"):
        dev.fvq.kick(0.001)
    assert dev.req_status is STARTED


def test_wrong_bitmap_length_leaves_state_unchanged():
    src = FakeSource(length=RAM_PAGES + 64)                   # one 64-bit word too many
    reg, dev, drv, _ = make(source=src)
    buf = np.full(bitmap_bytes(RAM_PAGES), 0xAA, dtype=np.uint8)
    assert reg.balloon_get_free_pages(buf, 0.0) == (0, 0)
    with pytest.raises(BitmapLengthError, match=f"expected {bitmap_bytes(RAM_PAGES)} bytes"):
        drv.run_until(1.0)
    assert dev.req_status is STARTED and dev.free_pages_count == 0
    assert (buf == 0xAA).all()
    assert reg.balloon_get_free_pages(buf, 1.0) == (0, 0)


def test_declared_length_must_match_sent_bitmap():
    reg, dev, drv, src = make()
    buf = dest()
    reg.balloon_get_free_pages(buf, 0.0)
    bm = pack_bitmap(src.bits)
    dev.fvq.add_buf(reply_chain(3, bm, declared=len(bm) - 8), 0.001)
    with pytest.raises(BitmapLengthError, match="declared"):
        dev.fvq.kick(0.001)
    assert dev.req_status is STARTED and not buf.any()


def test_destination_of_wrong_length_is_refused_before_starting():
    reg, dev, drv, src = make()
    with pytest.raises(BitmapLengthError, match="expected"):
        reg.balloon_get_free_pages(np.zeros(bitmap_bytes(RAM_PAGES) + 8, np.uint8), 0.0)
    assert dev.req_status is NOT_STARTED and src.calls == []
    assert dev.free_pages_vq_elem is not None                 # the buffer is still there


# ----------------------------------------------------------------------------- virtqueue
def test_virtqueue_full_at_128():
    vq = VirtQueue("fvq")
    for _ in range(128):
        vq.add_buf([("in", 8)], 0.0)
    with pytest.raises(VirtQueueFull, match="all 128 entries"):
        vq.add_buf([("in", 8)], 0.0)
    elem = vq.pop(0.0)
    vq.push(elem, 8, 0.0)
    with pytest.raises(VirtQueueFull):                        # used but not collected yet
        vq.add_buf([("in", 8)], 0.0)
    assert vq.get_used(0.0) == (elem, 8)
    vq.add_buf([("in", 8)], 0.0)


def test_virtqueue_rules():
    vq = VirtQueue("q", size=4)
    with pytest.raises(ProtocolError, match="before"):
        vq.add_buf([("in", 8), ("out", b"x")], 0.0)
    elem = vq.add_buf([("out", b"abc"), ("in", 4)], 0.0)
    other = VirtQueue("r")
    with pytest.raises(ProtocolError, match="not popped"):
        other.push(elem, 0, 0.0)
    assert vq.pop(0.0) is elem and vq.pop(0.0) is None
    with pytest.raises(ProtocolError, match="writable"):
        vq.push(elem, 5, 0.0)
    vq.push(elem, 4, 0.0)


def test_memlayout_roundtrip():
    assert MemLayout.from_bytes(MemLayout(LOW_MEM).to_bytes()).low_mem == LOW_MEM


# ----------------------------------------------------------------------------- classic balloon
def test_inflate_deflate_via_config_change():
    pool = list(range(5000, 6000))
    released = []

    def allocator(n, now):
        out, pool[:] = pool[:n], pool[n:]
        return np.array(out)

    reg, dev, drv, _ = make(page_allocator=allocator,
                            page_release=lambda pfns, now: released.extend(pfns.tolist()))
    dev.set_target(600, 1.0)
    assert dev.actual == drv.num_pages == 600
    assert dev.ballooned == set(range(5000, 5600))
    assert len(dev.log.filter(kind="add_buf", vq="ivq")) == 3          # 256 + 256 + 88
    assert reg.qmp_query_balloon() == {"actual": (RAM_PAGES - 600) * 4096}

    reg.qmp_balloon((RAM_PAGES - 100) * 4096, 2.0)                    # leave the guest 900 pages
    assert dev.num_pages == 100
    assert dev.actual == 100 and dev.ballooned == set(range(5000, 5100))
    assert sorted(released) == list(range(5100, 5600))
    assert dev.ivq.num_free == dev.dvq.num_free == 128                # every buffer collected


def test_inflate_deflate_direct_and_errors():
    reg, dev, drv, _ = make()
    assert drv.inflate(np.arange(10, 20), 0.0) == 10
    with pytest.raises(KitError):
        drv.inflate([15], 0.0)                                         # already in
    with pytest.raises(KitError):
        drv.deflate([99], 0.0)                                         # not in
    with pytest.raises(KitError):
        drv.inflate([1 << 32], 0.0)                                    # not a 32-bit PFN
    assert drv.deflate([10, 11], 0.0) == 2
    assert dev.actual == 8 and np.array_equal(dev.ballooned_pfns(), np.arange(12, 20))


@pytest.mark.parametrize("must_tell", [True, False])
def test_must_tell_host_orders_deflate(must_tell):
    reg, dev, drv, _ = make(must_tell_host=must_tell)
    assert drv.has_feature(VIRTIO_BALLOON_F_MUST_TELL_HOST) is must_tell
    drv.inflate([1, 2, 3], 0.0)
    drv.deflate([1, 2, 3], 0.0)
    seq = [e.kind for e in dev.log.filter(vq="dvq") if e.kind in ("release", "deflate")]
    assert seq == (["deflate", "release"] if must_tell else ["release", "deflate"])


def test_deflate_on_oom_only_when_negotiated():
    reg, dev, drv, _ = make()
    drv.inflate(np.arange(300), 0.0)
    assert drv.oom_notify(0.0) == 0
    reg, dev, drv, _ = make(deflate_on_oom=True)
    drv.inflate(np.arange(300), 0.0)
    assert drv.oom_notify(0.0) == 256 and dev.actual == 44


# ----------------------------------------------------------------------------- stats
def test_stats_queue():
    numbers = {VIRTIO_BALLOON_S_MEMFREE: 100, VIRTIO_BALLOON_S_MEMTOT: 4096}
    reg, dev, drv, _ = make(stats_source=lambda now: dict(numbers))
    assert dev.get_stats() == {"stat-free-memory": 100, "stat-total-memory": 4096}
    numbers[VIRTIO_BALLOON_S_MEMFREE] = 50
    assert dev.balloon_stats_poll(1.0)
    assert dev.get_stats()["stat-free-memory"] == 50 and dev.stats_last_update == 1.0


# ----------------------------------------------------------------------------- event log
def test_event_log_serialises_and_replays():
    reg, dev, drv, src = make()
    reg.balloon_get_free_pages(dest(), 0.0)
    drv.run_until(1.0)
    reg.balloon_get_free_pages(dest(), 1.0)
    records = dev.log.to_records()
    json.dumps(records)
    assert [r["seq"] for r in records] == list(range(len(dev.log)))
    assert list(dev.log.replay()) == list(dev.log)
    assert list(dev.log.replay(5))[0] is dev.log[5]
    assert all(isinstance(e, Event) and e.actor in ("guest", "host", "migration")
               for e in dev.log)
    assert [e.kind for e in dev.log.filter(actor="migration")] == ["request", "poll"]
    assert dev.log.filter(kind=("request", "reply"))[1].detail["count"] == int(src.bits.sum())
    with pytest.raises(Exception):
        dev.log[0].t = 5.0                                            # frozen


@settings(max_examples=30, deadline=None)
@given(ram_pages=st.integers(1, 3000), seed=st.integers(0, 2**16), cost=st.floats(0, 1))
def test_bitmap_arrives_exactly(ram_pages, seed, cost):
    src = FakeSource(ram_pages=ram_pages, cost_s=cost, seed=seed)
    reg, dev, drv, _ = make(source=src, ram_pages=ram_pages)
    buf = dest(ram_pages)
    assert reg.balloon_get_free_pages(buf, 0.0) == (0, 0)
    drv.run_until(drv.next_action_time())
    assert reg.balloon_get_free_pages(buf, 2.0) == (1, int(src.bits.sum()))
    assert np.array_equal(unpack_bitmap(buf, ram_pages), src.bits)
