"""The guest half of patch 2: the kernel RFC's changes to drivers/virtio/virtio_balloon.c.

The 2016 Linux driver, plus what the RFC added to it:

* ``probe``: negotiate features; if ``VIRTIO_BALLOON_F_GET_FREE_PAGES`` was
  accepted, pre-post an 8-byte device-writable buffer on the fourth queue (the
  kernel calls it "free_pages"; QEMU's field is ``fvq``) for the host's request;
* ``free_pages_rq`` / ``free_pages_handle_rq``: when the host returns that
  buffer filled with ``MemLayout{low_mem}``, walk the free lists (the
  ``free_page_source`` callable stands for the kernel's ``get_free_pages()``),
  then post the three-part reply (free count, bitmap length, bitmap) and a fresh
  buffer for the next request;
* the classic balloon: ``inflate``/``deflate`` send arrays of 32-bit PFNs on
  ``ivq``/``dvq``, at most 256 per message, and write ``actual`` back.

How the device reaches the driver: the driver registers itself with
``device.attach_driver(self)`` when it is created, and the device then calls
``on_notify(vq_name, now)`` and ``on_config_change(now)`` synchronously, as an
interrupt would run the driver's callbacks.

Time is simulated.  Work that takes the guest time (building the bitmap and
moving it to the host) is not done at once: the reply sits in a queue of
pending actions with the time it is due.  ``next_action_time()`` says when the
next one is due and ``run_until(t)`` performs every action due by ``t``, in time
order, each at its own due time.  A hung guest is one whose walk never ends
(``free_page_source`` returns ``cost_s = float('inf')``): its reply is due at
``inf``, ``next_action_time()`` returns ``inf`` and ``run_until`` never performs it.
"""
from __future__ import annotations

import heapq
import math
import operator
import struct

import numpy as np

from ..balloon import (MemLayout, VIRTIO_BALLOON_ARRAY_PFNS_MAX, VIRTIO_BALLOON_F_DEFLATE_ON_OOM,
                       VIRTIO_BALLOON_F_GET_FREE_PAGES, VIRTIO_BALLOON_F_MUST_TELL_HOST,
                       VIRTIO_BALLOON_F_STATS_VQ, features_to_mask)
from ..bitmap import PackedBitmap, pack_bitmap
from ..errors import KitError, ProtocolError

__all__ = ["VirtioBalloonDriver", "GUEST_FEATURES", "OOM_VBALLOON_DEFAULT_PAGES"]

GUEST_FEATURES = frozenset({VIRTIO_BALLOON_F_MUST_TELL_HOST, VIRTIO_BALLOON_F_STATS_VQ,
                            VIRTIO_BALLOON_F_DEFLATE_ON_OOM, VIRTIO_BALLOON_F_GET_FREE_PAGES})
"""What a guest kernel with the RFC applied understands."""

OOM_VBALLOON_DEFAULT_PAGES = 256    # pages the driver gives back per OOM notification

_STAT = struct.Struct("<HQ")


class VirtioBalloonDriver:
    """The guest's virtio-balloon driver, attached to ``device`` (a :class:`~kit.balloon.VirtIOBalloon`).

    ``free_page_source(low_mem, now) -> (bits, free_count, cost_s)``: ``bits`` is
    a bool array indexed by RAM page (frames above 4 GiB already shifted down by
    the hole that ``low_mem`` reveals), or the same bits already packed (a
    :class:`~kit.bitmap.PackedBitmap`), ``free_count`` is NR_FREE_PAGES and
    ``cost_s`` the simulated time the free-list walk takes (``inf`` = hung guest).
    Without a source the guest does not accept ``VIRTIO_BALLOON_F_GET_FREE_PAGES``.

    ``guest_features``: the bits this guest understands (a set or a mask; default
    0..3); pass ``{0, 1, 2}`` for a guest without the RFC.
    ``bitmap_transfer_s``: seconds to move the bitmap to the host, a constant or
    a callable ``f(nbytes)``.
    ``page_allocator(npages, now) -> pfns`` lets config changes inflate the
    balloon (deflating needs nothing); ``page_release(pfns, now)`` is told when
    pages go back to the guest; ``stats_source(now) -> {tag: value}`` feeds the
    stats queue.
    """

    def __init__(self, device, free_page_source=None, guest_features=None, *,
                 bitmap_transfer_s=0.0, page_allocator=None, page_release=None,
                 stats_source=None):
        self.device = device
        self.log = device.log
        self.free_page_source = free_page_source
        wanted = features_to_mask(GUEST_FEATURES if guest_features is None else guest_features)
        if free_page_source is None:
            wanted &= ~(1 << VIRTIO_BALLOON_F_GET_FREE_PAGES)
        self.supported_features = wanted
        self.features = 0
        self.bitmap_transfer_s = bitmap_transfer_s
        self.page_allocator = page_allocator
        self.page_release = page_release
        self.stats_source = stats_source
        self.balloon_pages: list[int] = []      # PFNs in the balloon, oldest first
        self.probed = False
        self._actions: list = []                # heap of (due, seq, kind, args)
        self._seq = 0
        self._acked = 0
        device.attach_driver(self)

    # -- helpers ----------------------------------------------------------------------
    def has_feature(self, fbit: int) -> bool:
        return bool(self.features >> fbit & 1)

    @property
    def num_pages(self) -> int:
        """Pages currently in the balloon (what the driver writes to ``actual``)."""
        return len(self.balloon_pages)

    def _transfer_s(self, nbytes: int) -> float:
        x = self.bitmap_transfer_s
        s = float(x(nbytes)) if callable(x) else float(x)
        if not s >= 0:
            raise KitError(f"bitmap_transfer_s must give a time of 0 s or more, got {s!r}")
        return s

    def _schedule(self, due: float, kind: str, args=()):
        heapq.heappush(self._actions, (due, self._seq, kind, args))
        self._seq += 1

    # -- probe ------------------------------------------------------------------------
    def probe(self, now):
        """Negotiate features and prime the stats and free-page queues."""
        if self.probed:
            raise KitError("the balloon driver is already probed")
        self.features = self.device.get_features() & self.supported_features
        self.device.set_features(self.features, now)
        self.probed = True
        if self.has_feature(VIRTIO_BALLOON_F_STATS_VQ):
            self._post_stats(now)
        if self.has_feature(VIRTIO_BALLOON_F_GET_FREE_PAGES):
            self.device.fvq.add_buf([("in", MemLayout.SIZE)], now, tag="mem_layout")
            self.device.fvq.kick(now)

    # -- notifications from the device --------------------------------------------------
    def on_notify(self, vq_name: str, now):
        """The device returned buffers on ``vq_name`` (the vq callback, run synchronously)."""
        if vq_name in ("ivq", "dvq"):
            self.balloon_ack(vq_name, now)
        elif vq_name == "svq":
            self.stats_request(now)
        elif vq_name == "fvq":
            self.free_pages_rq(now)
        else:
            raise ProtocolError(f"notification for unknown virtqueue {vq_name!r}")

    def on_config_change(self, now):
        """The host changed ``num_pages``: inflate or deflate toward it."""
        target = self.device.get_config()["num_pages"]
        have = self.num_pages
        self.log.record(now, "guest", None, "config", read_num_pages=target, actual=have)
        if target > have and self.page_allocator is not None:
            pfns = np.asarray(self.page_allocator(target - have, now))
            if pfns.size:
                self.inflate(pfns, now)
        elif target < have:
            self.deflate(self.balloon_pages[target:], now)
        # Model: no cost for inflating (Liang measured ~5 s to balloon an 8 GB guest down to 1 GB).

    def balloon_ack(self, vq_name: str, now):
        vq = self.device.vqs[vq_name]
        while vq.get_used(now) is not None:
            self._acked += 1

    # -- the RFC's free-page request ------------------------------------------------------
    def free_pages_rq(self, now):
        """fvq callback: collect returned buffers; a filled mem_layout buffer is a request."""
        vq = self.device.fvq
        while (used := vq.get_used(now)) is not None:
            elem, written = used
            if elem.in_num == 0:
                continue                        # our last reply, handed back by the host
            if written < MemLayout.SIZE:
                raise ProtocolError(f"fvq: the host wrote {written} bytes of mem_layout, "
                                    f"need {MemLayout.SIZE}")
            low_mem = MemLayout.from_bytes(np.concatenate(elem.in_sg)).low_mem
            self.free_pages_handle_rq(low_mem, now)

    def free_pages_handle_rq(self, low_mem: int, now):
        """Build the bitmap now; its reply is due after the walk and the transfer."""
        if any(kind in ("reply", "hung") for _, _, kind, _ in self._actions):
            raise ProtocolError("fvq: the host sent a new request before the guest answered "
                                "the previous one")
        bits, free_count, cost_s = self.free_page_source(low_mem, now)
        cost_s = float(cost_s)
        if math.isnan(cost_s) or cost_s < 0:
            raise KitError(f"free_page_source must return a walk time of 0 s or more "
                           f"(inf for a hung guest), got {cost_s!r}")
        if math.isinf(cost_s):
            self.log.record(now, "guest", "fvq", "walk", low_mem=low_mem, cost_s=cost_s,
                            reply_at=math.inf, hung=True)
            self._schedule(math.inf, "hung")
            return
        free_count = operator.index(free_count)
        if not 0 <= free_count < 1 << 64:
            raise KitError(f"free page count must fit in 64 bits, got {free_count}")
        packed = bits.data if isinstance(bits, PackedBitmap) else pack_bitmap(bits)
        transfer_s = self._transfer_s(packed.size)
        due = now + cost_s + transfer_s
        self.log.record(now, "guest", "fvq", "walk", low_mem=low_mem, free_count=free_count,
                        bitmap_bytes=int(packed.size), cost_s=cost_s, transfer_s=transfer_s,
                        reply_at=due)
        self._schedule(due, "reply", (free_count, packed))

    def _do_reply(self, at: float, free_count: int, packed: np.ndarray):
        vq = self.device.fvq
        vq.add_buf([("out", free_count.to_bytes(8, "little")),
                    ("out", int(packed.size).to_bytes(8, "little")),
                    ("out", packed)], at, tag="free_pages_reply")
        vq.add_buf([("in", MemLayout.SIZE)], at, tag="mem_layout")
        vq.kick(at)

    def _do_hung(self, at: float):         # never runs: its due time is inf
        raise AssertionError("a hung guest's reply was performed")

    def next_action_time(self):
        """When the next pending action is due (s); None if idle; inf if the guest hung."""
        return self._actions[0][0] if self._actions else None

    def run_until(self, t) -> int:
        """Perform every pending action due at or before ``t``, in time order.  Returns how many."""
        t = float(t)
        done = 0
        while self._actions and self._actions[0][0] <= t and math.isfinite(self._actions[0][0]):
            at, _, kind, args = heapq.heappop(self._actions)
            getattr(self, "_do_" + kind)(at, *args)
            done += 1
        return done

    # -- classic inflate / deflate --------------------------------------------------------
    @staticmethod
    def _pfn_array(pfns) -> np.ndarray:
        arr = np.asarray(pfns).reshape(-1)
        if arr.size == 0:
            return np.zeros(0, dtype=np.int64)
        if not np.issubdtype(arr.dtype, np.integer):
            raise KitError(f"PFNs must be whole numbers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        if arr.min() < 0 or arr.max() >= 1 << 32:
            raise KitError("PFNs must be between 0 and 2**32 - 1: the 2016 protocol sends "
                           "them as 32-bit numbers")
        return arr

    def _tell_host(self, vq, chunk: np.ndarray, now, tag: str):
        before = self._acked
        vq.add_buf([("out", chunk.astype("<u4"))], now, tag=tag)
        vq.kick(now)
        if self._acked == before:
            raise ProtocolError(f"{vq.name}: the device did not return the PFN buffer")

    def _chunks(self, arr: np.ndarray):
        for i in range(0, arr.size, VIRTIO_BALLOON_ARRAY_PFNS_MAX):
            yield arr[i:i + VIRTIO_BALLOON_ARRAY_PFNS_MAX]

    def inflate(self, pfns, now) -> int:
        """Give the host the pages ``pfns`` (guest frame numbers); returns how many."""
        arr = self._pfn_array(pfns)
        inside = set(self.balloon_pages)
        if np.unique(arr).size != arr.size or any(p in inside for p in arr.tolist()):
            raise KitError("inflate: each PFN may enter the balloon once; some are repeated "
                           "or already in it")
        for chunk in self._chunks(arr):
            self._tell_host(self.device.ivq, chunk, now, "inflate")
            self.balloon_pages.extend(chunk.tolist())
        self.device.set_config_actual(self.num_pages, now)
        return int(arr.size)

    def deflate(self, pfns, now) -> int:
        """Take the pages ``pfns`` back from the balloon; returns how many."""
        arr = self._pfn_array(pfns)
        inside = set(self.balloon_pages)
        if np.unique(arr).size != arr.size or any(p not in inside for p in arr.tolist()):
            raise KitError("deflate: every PFN must be in the balloon, once")
        must_tell = self.has_feature(VIRTIO_BALLOON_F_MUST_TELL_HOST)
        for chunk in self._chunks(arr):
            # Model: Linux always tells first; without MUST_TELL_HOST the spec lets the guest
            # reuse pages before telling, and we use that order so the bit shows in the log.
            if not must_tell:
                self._release(chunk, now)
            self._tell_host(self.device.dvq, chunk, now, "deflate")
            if must_tell:
                self._release(chunk, now)
        gone = set(arr.tolist())
        self.balloon_pages = [p for p in self.balloon_pages if p not in gone]
        self.device.set_config_actual(self.num_pages, now)
        return int(arr.size)

    def _release(self, chunk: np.ndarray, now):
        self.log.record(now, "guest", "dvq", "release", npfns=int(chunk.size))
        if self.page_release is not None:
            self.page_release(chunk, now)

    def oom_notify(self, now, npages: int = OOM_VBALLOON_DEFAULT_PAGES) -> int:
        """The guest ran out of memory: deflate up to ``npages`` if DEFLATE_ON_OOM was negotiated."""
        if not self.has_feature(VIRTIO_BALLOON_F_DEFLATE_ON_OOM) or not self.balloon_pages:
            return 0
        take = self.balloon_pages[-min(npages, self.num_pages):]
        return self.deflate(take, now)

    # -- stats ------------------------------------------------------------------------------
    def _post_stats(self, now):
        stats = self.stats_source(now) if self.stats_source is not None else {}
        raw = b"".join(_STAT.pack(int(tag), int(val)) for tag, val in sorted(stats.items()))
        self.device.svq.add_buf([("out", raw)], now, tag="stats")
        self.device.svq.kick(now)

    def stats_request(self, now):
        """svq callback: the host handed the stats buffer back, so send fresh numbers."""
        while self.device.svq.get_used(now) is not None:
            self._post_stats(now)

    def __repr__(self):
        return (f"<VirtioBalloonDriver features={self.features:#x} balloon={self.num_pages} pages "
                f"pending={len(self._actions)}>")
