"""Patch 2/4 of the RFC: the virtio-balloon device (host side) and QEMU's generic balloon layer.

What the patch adds to QEMU, and where it lives here:

* a feature bit, ``VIRTIO_BALLOON_F_GET_FREE_PAGES`` (3), always offered;
* a fourth virtqueue, ``fvq`` (128 entries), next to the inflate (``ivq``),
  deflate (``dvq``) and stats (``svq``) queues;
* a small request machine in the device (``req_status``: NOT_STARTED ->
  STARTED -> DONE -> NOT_STARTED) driven by :meth:`VirtIOBalloon.virtio_balloon_free_pages`;
* one more callback in the generic layer (QEMU's balloon.c and
  include/sysemu/balloon.h), so migration code can call
  ``balloon_get_free_pages()`` without knowing about virtio: :class:`BalloonRegistry`.

One request, step by step (every step is an :class:`Event` in the device's
:class:`EventLog`, so a notebook can walk through it with Next/Back):

1. At probe the guest driver pre-posts an 8-byte device-writable buffer on
   ``fvq`` and kicks; the device pops it and keeps it (``free_pages_vq_elem``).
2. Migration polls; in NOT_STARTED the device remembers the destination bitmap,
   writes ``MemLayout{low_mem}`` into the kept buffer, returns it on the used
   ring, notifies the guest and goes to STARTED.  The poll returns 0.
3. The guest walks its free lists, builds the bitmap, and posts one chain of
   three driver-written parts (free count, bitmap length, bitmap) followed by a
   fresh 8-byte buffer for the next request, then kicks.
4. The device's ``fvq`` handler checks the reply, copies the bitmap straight
   into the destination buffer and goes to DONE.
5. The next poll returns ``(1, free count)`` and resets to NOT_STARTED.

Time is simulated: every method that acts takes ``now`` (seconds, float) and
nothing sleeps.  The guest driver (kit/guest/balloon_driver.py) receives device
notifications through ``driver.on_notify(vq_name, now)`` and
``driver.on_config_change(now)``: the device calls them synchronously, the way
an interrupt would run the driver's callback.
"""
from __future__ import annotations

import enum
import inspect
import math
import operator
import struct
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .bitmap import bitmap_bytes, count_bits
from .errors import BitmapLengthError, KitError, ProtocolError, VirtQueueFull
from .units import TARGET_PAGE_BITS

__all__ = [
    "VIRTIO_BALLOON_F_MUST_TELL_HOST", "VIRTIO_BALLOON_F_STATS_VQ",
    "VIRTIO_BALLOON_F_DEFLATE_ON_OOM", "VIRTIO_BALLOON_F_GET_FREE_PAGES",
    "VIRTIO_BALLOON_PFN_SHIFT", "VIRTIO_BALLOON_ARRAY_PFNS_MAX", "VIRTQUEUE_SIZE",
    "VIRTIO_BALLOON_S_SWAP_IN", "VIRTIO_BALLOON_S_SWAP_OUT", "VIRTIO_BALLOON_S_MAJFLT",
    "VIRTIO_BALLOON_S_MINFLT", "VIRTIO_BALLOON_S_MEMFREE", "VIRTIO_BALLOON_S_MEMTOT",
    "VIRTIO_BALLOON_S_NR", "STAT_NAMES",
    "VIRTIO_REQ_STATUS", "NOT_STARTED", "STARTED", "DONE",
    "features_to_mask", "feature_names", "virtio_has_feature",
    "MemLayout", "Event", "EventLog", "VirtQueueElement", "VirtQueue", "VirtIOBalloon",
    "BalloonRegistry", "default_registry", "qemu_add_balloon_handler",
    "qemu_remove_balloon_handler", "balloon_free_pages_support", "balloon_get_free_pages",
]

# --------------------------------------------------------------------------- features
VIRTIO_BALLOON_F_MUST_TELL_HOST = 0     # guest must tell the host before it reuses deflated pages
VIRTIO_BALLOON_F_STATS_VQ = 1           # memory statistics virtqueue
VIRTIO_BALLOON_F_DEFLATE_ON_OOM = 2     # guest may deflate when it runs out of memory
# The RFC's bit.  It was never merged: upstream later gave bit 3 to
# VIRTIO_BALLOON_F_FREE_PAGE_HINT (Wei Wang, Linux 4.20 / QEMU 4.0), a different protocol.
VIRTIO_BALLOON_F_GET_FREE_PAGES = 3

_FEATURE_NAMES = {
    VIRTIO_BALLOON_F_MUST_TELL_HOST: "VIRTIO_BALLOON_F_MUST_TELL_HOST",
    VIRTIO_BALLOON_F_STATS_VQ: "VIRTIO_BALLOON_F_STATS_VQ",
    VIRTIO_BALLOON_F_DEFLATE_ON_OOM: "VIRTIO_BALLOON_F_DEFLATE_ON_OOM",
    VIRTIO_BALLOON_F_GET_FREE_PAGES: "VIRTIO_BALLOON_F_GET_FREE_PAGES",
}

VIRTIO_BALLOON_PFN_SHIFT = TARGET_PAGE_BITS    # balloon PFNs always count 4 KiB frames
VIRTIO_BALLOON_ARRAY_PFNS_MAX = 256            # PFNs per inflate/deflate message (2016 Linux driver)
VIRTQUEUE_SIZE = 128                           # every balloon queue in QEMU 2.5 and in the RFC

# Memory statistics tags (struct virtio_balloon_stat: le16 tag, le64 value, packed).
VIRTIO_BALLOON_S_SWAP_IN = 0
VIRTIO_BALLOON_S_SWAP_OUT = 1
VIRTIO_BALLOON_S_MAJFLT = 2
VIRTIO_BALLOON_S_MINFLT = 3
VIRTIO_BALLOON_S_MEMFREE = 4
VIRTIO_BALLOON_S_MEMTOT = 5
VIRTIO_BALLOON_S_NR = 6                        # as of early 2016 (AVAIL came later)
STAT_NAMES = ("stat-swap-in", "stat-swap-out", "stat-major-faults",
              "stat-minor-faults", "stat-free-memory", "stat-total-memory")
_STAT = struct.Struct("<HQ")


def features_to_mask(bits) -> int:
    """A feature set as a bit mask: accepts an int mask or an iterable of bit numbers."""
    if isinstance(bits, bool):
        raise KitError(f"features: expected an int mask or a set of bit numbers, got {bits!r}")
    if isinstance(bits, (int, np.integer)):
        mask = int(bits)
        if mask < 0:
            raise KitError(f"features: a mask cannot be negative, got {mask}")
        return mask
    mask = 0
    for b in bits:
        try:
            b = operator.index(b)
        except TypeError:
            raise KitError(f"features: bit numbers must be whole numbers, got {b!r}") from None
        if not 0 <= b < 64:
            raise KitError(f"features: bit numbers go from 0 to 63, got {b}")
        mask |= 1 << b
    return mask


def feature_names(bits) -> list[str]:
    """Names of the feature bits in ``bits`` (mask or iterable), lowest bit first."""
    mask = features_to_mask(bits)
    return [_FEATURE_NAMES.get(b, f"bit {b}") for b in range(64) if mask >> b & 1]


def virtio_has_feature(features, fbit: int) -> bool:
    """True if bit ``fbit`` is set in ``features`` (mask or iterable)."""
    return bool(features_to_mask(features) >> fbit & 1)


# --------------------------------------------------------------------------- request machine
class VIRTIO_REQ_STATUS(enum.IntEnum):
    """State of the device's free-page request (``req_status`` in the RFC)."""
    NOT_STARTED = 0
    STARTED = 1
    DONE = 2


NOT_STARTED = VIRTIO_REQ_STATUS.NOT_STARTED
STARTED = VIRTIO_REQ_STATUS.STARTED
DONE = VIRTIO_REQ_STATUS.DONE


@dataclass(frozen=True)
class MemLayout:
    """What the host tells the guest with each request: where RAM stops below 4 GiB (bytes)."""
    low_mem: int

    SIZE = 8    # one little-endian uint64

    def to_bytes(self) -> bytes:
        return int(self.low_mem).to_bytes(self.SIZE, "little")

    @classmethod
    def from_bytes(cls, buf) -> "MemLayout":
        if isinstance(buf, np.ndarray):
            buf = buf.astype(np.uint8, copy=False).tobytes()
        raw = bytes(buf)[: cls.SIZE]
        if len(raw) < cls.SIZE:
            raise ProtocolError(f"mem_layout: need {cls.SIZE} bytes, got {len(raw)}")
        return cls(int.from_bytes(raw, "little"))


# --------------------------------------------------------------------------- event log
ACTORS = ("guest", "host", "migration")


@dataclass(frozen=True)
class Event:
    """One message or step: at time ``t`` (s), ``actor`` did ``kind`` on queue ``vq``."""
    t: float
    actor: str
    vq: str | None
    kind: str
    detail: dict = field(default_factory=dict)
    seq: int = 0            # position in the log, for Next/Back

    def to_dict(self) -> dict:
        return {"seq": self.seq, "t": self.t, "actor": self.actor, "vq": self.vq,
                "kind": self.kind, "detail": dict(self.detail)}

    def __str__(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.detail.items())
        return f"{self.seq:4d} {self.t:10.6f}s {self.actor:9s} {self.vq or '-':4s} {self.kind:9s} {extra}"


class EventLog:
    """Every message between guest, device and migration, in the order it happened."""

    def __init__(self):
        self._events: list[Event] = []

    def record(self, t, actor: str, vq, kind: str, **detail) -> Event:
        if actor not in ACTORS:
            raise KitError(f"event actor must be one of {ACTORS}, got {actor!r}")
        ev = Event(float(t), actor, vq, kind, detail, len(self._events))
        self._events.append(ev)
        return ev

    def __len__(self):
        return len(self._events)

    def __getitem__(self, i):
        return self._events[i]

    def __iter__(self):
        return iter(list(self._events))

    def replay(self, start: int = 0):
        """Yield the events from position ``start`` on, one by one (a snapshot of the log now)."""
        yield from list(self._events[start:])

    def filter(self, kind=None, actor=None, vq=None) -> list[Event]:
        """Events matching every given field; each field may be one value or a tuple of values."""
        def ok(value, want):
            return want is None or value == want or (isinstance(want, (tuple, list, set))
                                                      and value in want)
        return [e for e in self._events if ok(e.kind, kind) and ok(e.actor, actor) and ok(e.vq, vq)]

    def kinds(self) -> list[str]:
        return [e.kind for e in self._events]

    def to_records(self) -> list[dict]:
        return [e.to_dict() for e in self._events]

    def __repr__(self):
        return f"<EventLog {len(self._events)} events>"


def _check_now(now) -> float:
    t = float(now)
    if math.isnan(t) or t < 0:
        raise KitError(f"now must be a time in seconds, 0 or more, got {now!r}")
    return t


# --------------------------------------------------------------------------- virtqueues
def _payload(direction: str, payload) -> np.ndarray:
    """A chain part as a flat uint8 array: read-only view for 'out', writable buffer for 'in'."""
    if direction == "in":
        if isinstance(payload, (int, np.integer)) and not isinstance(payload, bool):
            return np.zeros(int(payload), dtype=np.uint8)
        if isinstance(payload, bytearray):
            return np.frombuffer(payload, dtype=np.uint8)
        arr = np.asarray(payload)
        if not isinstance(payload, np.ndarray) or arr.dtype != np.uint8 or not arr.flags.writeable:
            raise ProtocolError("an 'in' part must be a size in bytes, a bytearray or a writable "
                                "uint8 array: the device writes into it")
        return arr.reshape(-1)
    if direction == "out":
        if isinstance(payload, (bytes, bytearray, memoryview)):
            return np.frombuffer(bytes(payload), dtype=np.uint8)
        arr = np.ascontiguousarray(payload)
        return arr.view(np.uint8).reshape(-1)
    raise ProtocolError(f"a chain part's direction is 'out' (driver -> device) or 'in' "
                        f"(device-writable), got {direction!r}")


class VirtQueueElement:
    """One descriptor chain: ordered (direction, uint8 array) parts, like QEMU's VirtQueueElement."""
    __slots__ = ("index", "parts", "tag")

    def __init__(self, index: int, parts, tag=None):
        self.index = index
        self.parts = tuple(parts)
        self.tag = tag

    @property
    def out_sg(self):
        return [p for d, p in self.parts if d == "out"]

    @property
    def in_sg(self):
        return [p for d, p in self.parts if d == "in"]

    @property
    def out_num(self) -> int:
        return len(self.out_sg)

    @property
    def in_num(self) -> int:
        return len(self.in_sg)

    @property
    def in_bytes(self) -> int:
        return sum(p.size for p in self.in_sg)

    def describe(self) -> list:
        return [[d, int(p.size)] for d, p in self.parts]

    def __repr__(self):
        return f"<VirtQueueElement #{self.index} {self.tag or ''} {self.describe()}>"


class VirtQueue:
    """A virtqueue between the guest driver and the device.

    ``add_buf``/``kick``/``get_used`` are the driver's calls, ``pop``/``push``
    the device's.  ``handler(vq, now)`` is the device callback that a kick runs.
    A buffer counts against ``size`` from ``add_buf`` until the driver collects it
    with ``get_used``.
    """
    # Model: no descriptor table, avail/used ring indices or event suppression; a FIFO of chains.

    def __init__(self, name: str, size: int = VIRTQUEUE_SIZE, log: EventLog | None = None,
                 handler=None):
        if operator.index(size) <= 0:
            raise KitError(f"virtqueue {name}: size must be positive, got {size}")
        self.name = name
        self.size = int(size)
        self.log = log if log is not None else EventLog()
        self.handler = handler
        self._avail: deque[VirtQueueElement] = deque()
        self._inflight: dict[int, VirtQueueElement] = {}
        self._used: deque[tuple[VirtQueueElement, int]] = deque()
        self._next_index = 0

    @property
    def num_free(self) -> int:
        return self.size - len(self._avail) - len(self._inflight) - len(self._used)

    @property
    def num_avail(self) -> int:
        """Chains the driver added that the device has not popped yet."""
        return len(self._avail)

    def add_buf(self, chain, now, tag=None) -> VirtQueueElement:
        """Driver: make a chain of ``(direction, payload)`` parts available to the device."""
        now = _check_now(now)
        if self.num_free <= 0:
            raise VirtQueueFull(
                f"virtqueue {self.name}: all {self.size} entries are in use ({len(self._avail)} "
                f"waiting for the device, {len(self._inflight)} held by it, {len(self._used)} "
                f"used but not collected); the driver must collect used buffers with get_used() "
                f"or the device must pop and push before another buffer fits")
        parts = []
        seen_in = False
        for item in chain:
            try:
                direction, payload = item
            except (TypeError, ValueError):
                raise ProtocolError(f"virtqueue {self.name}: a chain is a list of (direction, "
                                    f"payload) pairs, got {item!r}") from None
            if direction == "out" and seen_in:
                raise ProtocolError(f"virtqueue {self.name}: device-readable ('out') parts must "
                                    f"come before device-writable ('in') parts in a chain")
            seen_in = seen_in or direction == "in"
            parts.append((direction, _payload(direction, payload)))
        if not parts:
            raise ProtocolError(f"virtqueue {self.name}: a chain needs at least one part")
        elem = VirtQueueElement(self._next_index, parts, tag)
        self._next_index += 1
        self._avail.append(elem)
        self.log.record(now, "guest", self.name, "add_buf", index=elem.index, tag=tag,
                        parts=elem.describe(), num_free=self.num_free)
        return elem

    def kick(self, now):
        """Driver: tell the device there are new buffers; runs the device's handler now."""
        now = _check_now(now)
        self.log.record(now, "guest", self.name, "kick", avail=len(self._avail))
        if self.handler is not None:
            self.handler(self, now)

    def pop(self, now) -> VirtQueueElement | None:
        """Device: take the next available chain, or None if there is none."""
        now = _check_now(now)
        if not self._avail:
            return None
        elem = self._avail.popleft()
        self._inflight[elem.index] = elem
        self.log.record(now, "host", self.name, "pop", index=elem.index, tag=elem.tag,
                        parts=elem.describe())
        return elem

    def push(self, elem: VirtQueueElement, written: int, now):
        """Device: return a popped chain on the used ring, saying how many bytes it wrote."""
        now = _check_now(now)
        if self._inflight.get(elem.index) is not elem:
            raise ProtocolError(f"virtqueue {self.name}: push of chain #{elem.index}, which the "
                                f"device has not popped from this queue")
        written = operator.index(written)
        if not 0 <= written <= elem.in_bytes:
            raise ProtocolError(f"virtqueue {self.name}: chain #{elem.index} has "
                                f"{elem.in_bytes} writable bytes, cannot report {written} written")
        del self._inflight[elem.index]
        self._used.append((elem, written))
        self.log.record(now, "host", self.name, "push", index=elem.index, tag=elem.tag,
                        written=written)

    def get_used(self, now=None):
        """Driver: collect the next used chain as ``(elem, written)``, or None (frees its entry)."""
        if not self._used:
            return None
        elem, written = self._used.popleft()
        t = _check_now(now) if now is not None else (self.log[-1].t if len(self.log) else 0.0)
        self.log.record(t, "guest", self.name, "get_used", index=elem.index, tag=elem.tag,
                        written=written)
        return elem, written

    def __repr__(self):
        return (f"<VirtQueue {self.name} size={self.size} avail={len(self._avail)} "
                f"inflight={len(self._inflight)} used={len(self._used)}>")


# --------------------------------------------------------------------------- the device
class VirtIOBalloon:
    """QEMU's virtio-balloon device with the RFC's free-page extension.

    ``low_mem`` is ``pc_get_lowmem()`` (bytes of RAM below 4 GiB, patch 1);
    ``ram_pages`` is the number of pages in pc.ram, i.e. the length of the
    migration bitmap the guest's free-page bitmap must fill.
    ``offer_free_pages`` models a QEMU with (True) or without the RFC.
    ``deflate_on_oom`` is QEMU's "deflate-on-oom" property (default off);
    ``must_tell_host`` exists only in the model: QEMU 2.5 never offered that bit.
    Give ``registry`` to register with the generic layer, as realize does.
    """

    def __init__(self, low_mem: int, ram_pages: int, log: EventLog | None = None,
                 offer_free_pages: bool = True, *, deflate_on_oom: bool = False,
                 must_tell_host: bool = False, registry: "BalloonRegistry | None" = None):
        self.low_mem = operator.index(low_mem)
        self.ram_pages = operator.index(ram_pages)
        if self.low_mem < 0 or self.ram_pages <= 0:
            raise KitError(f"virtio-balloon: need low_mem >= 0 and ram_pages > 0, got "
                           f"low_mem={low_mem}, ram_pages={ram_pages}")
        self.log = log if log is not None else EventLog()
        self.host_features = 1 << VIRTIO_BALLOON_F_STATS_VQ
        if deflate_on_oom:
            self.host_features |= 1 << VIRTIO_BALLOON_F_DEFLATE_ON_OOM
        if must_tell_host:
            self.host_features |= 1 << VIRTIO_BALLOON_F_MUST_TELL_HOST
        if offer_free_pages:
            self.host_features |= 1 << VIRTIO_BALLOON_F_GET_FREE_PAGES
        self.guest_features = 0
        self.num_pages = 0          # config: balloon size the host asks for (4 KiB pages)
        self.actual = 0             # config: balloon size the guest reports
        self.ballooned: set[int] = set()     # guest frame numbers currently in the balloon
        self.stats: dict[int, int] = {}
        self.stats_vq_elem: VirtQueueElement | None = None
        self.stats_last_update: float | None = None
        # The RFC's new fields.
        self.free_pages_vq_elem: VirtQueueElement | None = None
        self.free_pages_bitmap: np.ndarray | None = None
        self.free_pages_count = 0
        self.mem_layout = MemLayout(self.low_mem)
        self.req_status = NOT_STARTED
        self.ivq = VirtQueue("ivq", VIRTQUEUE_SIZE, self.log, self.virtio_balloon_handle_output)
        self.dvq = VirtQueue("dvq", VIRTQUEUE_SIZE, self.log, self.virtio_balloon_handle_output)
        self.svq = VirtQueue("svq", VIRTQUEUE_SIZE, self.log, self.virtio_balloon_receive_stats)
        self.fvq = VirtQueue("fvq", VIRTQUEUE_SIZE, self.log, self.virtio_balloon_get_free_pages)
        self.vqs = {vq.name: vq for vq in (self.ivq, self.dvq, self.svq, self.fvq)}
        self.driver = None
        self.registry = None
        if registry is not None:
            self.realize(registry)

    # -- wiring ---------------------------------------------------------------------
    def realize(self, registry: "BalloonRegistry"):
        """Register with the generic balloon layer (what virtio_balloon_device_realize does)."""
        ret = registry.qemu_add_balloon_handler(
            self.virtio_balloon_to_target, self.virtio_balloon_stat,
            self.virtio_balloon_free_pages, self,
            free_pages_support_fn=self.balloon_free_pages_supported)
        if ret < 0:
            raise KitError("Only one balloon device is supported: this registry already has one; "
                           "use a fresh BalloonRegistry or unrealize the other device")
        self.registry = registry

    def unrealize(self):
        if self.registry is not None:
            self.registry.qemu_remove_balloon_handler(self)
            self.registry = None

    def attach_driver(self, driver):
        """The guest driver that receives this device's notifications.

        The device calls ``driver.on_notify(vq_name, now)`` after it returns
        buffers on a queue, and ``driver.on_config_change(now)`` after it changes
        the config, synchronously, the way an interrupt would run the driver.
        """
        self.driver = driver

    def virtio_notify(self, vq: VirtQueue, now):
        self.log.record(now, "host", vq.name, "notify")
        if self.driver is not None:
            self.driver.on_notify(vq.name, now)

    def virtio_notify_config(self, now):
        self.log.record(now, "host", None, "notify", what="config")
        if self.driver is not None:
            self.driver.on_config_change(now)

    # -- features -------------------------------------------------------------------
    def get_features(self) -> int:
        """Feature bits the device offers (a mask)."""
        return self.host_features

    def set_features(self, guest_features, now):
        """The guest writes the features it accepted; they must be a subset of the offer."""
        now = _check_now(now)
        mask = features_to_mask(guest_features)
        extra = mask & ~self.host_features
        if extra:
            raise ProtocolError(f"virtio-balloon: the guest accepted feature(s) the device did not "
                                f"offer: {feature_names(extra)}; offered: "
                                f"{feature_names(self.host_features)}")
        self.guest_features = mask
        self.log.record(now, "guest", None, "negotiate", offered=feature_names(self.host_features),
                        negotiated=feature_names(mask))

    def virtio_vdev_has_feature(self, fbit: int) -> bool:
        return bool(self.guest_features >> fbit & 1)

    def balloon_free_pages_supported(self) -> bool:
        return self.virtio_vdev_has_feature(VIRTIO_BALLOON_F_GET_FREE_PAGES)

    # -- config ---------------------------------------------------------------------
    def get_config(self) -> dict:
        return {"num_pages": self.num_pages, "actual": self.actual}

    def set_target(self, pages: int, now):
        """Host: ask for a balloon of ``pages`` 4 KiB pages; changes the config and notifies."""
        now = _check_now(now)
        pages = operator.index(pages)
        if not 0 <= pages <= self.ram_pages:
            raise KitError(f"balloon target must be between 0 and {self.ram_pages} pages, "
                           f"got {pages}")
        self.num_pages = pages
        self.log.record(now, "host", None, "config", num_pages=pages)
        self.virtio_notify_config(now)

    def set_config_actual(self, actual: int, now):
        """Guest: write ``actual`` (the balloon size it has reached) into the config space."""
        now = _check_now(now)
        self.actual = operator.index(actual)
        self.log.record(now, "guest", None, "config", actual=self.actual)

    def virtio_balloon_to_target(self, target: int, now):
        """Generic-layer event callback: leave the guest ``target`` bytes of RAM."""
        ram_size = self.ram_pages << VIRTIO_BALLOON_PFN_SHIFT
        target = min(operator.index(target), ram_size)
        self.set_target((ram_size - target) >> VIRTIO_BALLOON_PFN_SHIFT, now)

    def virtio_balloon_stat(self) -> dict:
        """Generic-layer status callback: RAM the guest has left, in bytes (query-balloon)."""
        return {"actual": (self.ram_pages - self.actual) << VIRTIO_BALLOON_PFN_SHIFT}

    # -- inflate / deflate ----------------------------------------------------------
    def virtio_balloon_handle_output(self, vq: VirtQueue, now):
        """ivq/dvq handler: each chain carries little-endian uint32 guest frame numbers."""
        while (elem := vq.pop(now)) is not None:
            raw = np.concatenate(elem.out_sg) if elem.out_num else np.zeros(0, np.uint8)
            if raw.size % 4:
                vq.push(elem, 0, now)
                raise ProtocolError(f"virtqueue {vq.name}: PFN arrays are 4-byte entries, got a "
                                    f"{raw.size}-byte buffer")
            pfns = raw.view("<u4").astype(np.int64)
            if vq is self.ivq:
                self.ballooned.update(pfns.tolist())
                self.log.record(now, "host", vq.name, "inflate", npfns=int(pfns.size),
                                ballooned=len(self.ballooned))
            else:
                unknown = sum(1 for p in pfns.tolist() if p not in self.ballooned)
                self.ballooned.difference_update(pfns.tolist())
                self.log.record(now, "host", vq.name, "deflate", npfns=int(pfns.size),
                                not_in_balloon=unknown, ballooned=len(self.ballooned))
            # Model: QEMU would madvise(DONTNEED/WILLNEED) the host pages here; we only track PFNs.
            vq.push(elem, 0, now)
            self.virtio_notify(vq, now)

    def ballooned_pfns(self) -> np.ndarray:
        """Guest frame numbers currently in the balloon, sorted."""
        return np.array(sorted(self.ballooned), dtype=np.int64)

    # -- stats ----------------------------------------------------------------------
    def virtio_balloon_receive_stats(self, vq: VirtQueue, now):
        """svq handler: read the guest's stats buffer and keep it to ask for the next update."""
        while (elem := vq.pop(now)) is not None:
            raw = np.concatenate(elem.out_sg).tobytes() if elem.out_num else b""
            if len(raw) % _STAT.size:
                vq.push(elem, 0, now)
                raise ProtocolError(f"stats buffer must hold {_STAT.size}-byte (tag, value) "
                                    f"entries, got {len(raw)} bytes")
            if self.stats_vq_elem is not None:      # a driver that broke the rules; hand it back
                vq.push(self.stats_vq_elem, 0, now)
            for tag, val in _STAT.iter_unpack(raw):
                if tag < VIRTIO_BALLOON_S_NR:
                    self.stats[tag] = val
            self.stats_vq_elem = elem
            self.stats_last_update = now
            self.log.record(now, "host", vq.name, "stats",
                            stats={STAT_NAMES[k]: v for k, v in sorted(self.stats.items())})

    def balloon_stats_poll(self, now) -> bool:
        """Host: ask the guest for fresh stats by returning its buffer.  False if none is held."""
        now = _check_now(now)
        if self.stats_vq_elem is None:
            return False
        elem, self.stats_vq_elem = self.stats_vq_elem, None
        self.svq.push(elem, 0, now)
        self.virtio_notify(self.svq, now)
        return True

    def get_stats(self) -> dict:
        return {STAT_NAMES[k]: v for k, v in sorted(self.stats.items())}

    # -- the RFC's free-page request --------------------------------------------------
    def _set_status(self, new: VIRTIO_REQ_STATUS, now):
        old, self.req_status = self.req_status, new
        self.log.record(now, "host", "fvq", "state", **{"from": old.name, "to": new.name})

    def _check_destination(self, buf) -> np.ndarray:
        want = bitmap_bytes(self.ram_pages)
        if not isinstance(buf, np.ndarray) or buf.dtype != np.uint8 or buf.ndim != 1:
            raise BitmapLengthError(f"free-page bitmap destination must be a 1-D uint8 array of "
                                    f"{want} bytes (bitmap_bytes({self.ram_pages})), got "
                                    f"{type(buf).__name__}")
        if buf.size != want:
            raise BitmapLengthError(f"free-page bitmap destination: expected {want} bytes "
                                    f"(bitmap_bytes({self.ram_pages})), got {buf.size}")
        if not buf.flags.writeable:
            raise BitmapLengthError("free-page bitmap destination must be writable")
        return buf

    def virtio_balloon_free_pages(self, free_pages_bitmap_out, now) -> tuple[int, int]:
        """Poll the free-page request: ``(-1, 0)`` not negotiated, ``(0, 0)`` not ready,
        ``(1, count)`` done (the bitmap is then already in ``free_pages_bitmap_out``)."""
        now = _check_now(now)
        if not self.balloon_free_pages_supported():
            self.log.record(now, "migration", "fvq", "poll", ret=-1, count=0,
                            req_status=self.req_status.name)
            return -1, 0
        if self.req_status is STARTED:
            self.log.record(now, "migration", "fvq", "poll", ret=0, count=0, req_status="STARTED")
            return 0, 0
        if self.req_status is DONE:
            count = self.free_pages_count
            self.log.record(now, "migration", "fvq", "poll", ret=1, count=count,
                            req_status="DONE")
            self._set_status(NOT_STARTED, now)
            return 1, count

        # NOT_STARTED: start a request.  Check everything before changing anything.
        dest = self._check_destination(free_pages_bitmap_out)
        self.log.record(now, "migration", "fvq", "request", low_mem=self.low_mem,
                        bitmap_bytes=int(dest.size))
        elem = self.free_pages_vq_elem
        if elem is None:                    # the guest added a buffer but did not kick
            elem = self.fvq.pop(now)
            if elem is not None and (elem.out_num or elem.in_bytes < MemLayout.SIZE):
                self.fvq.push(elem, 0, now)
                raise ProtocolError(f"fvq: expected the guest's pre-posted {MemLayout.SIZE}-byte "
                                    f"mem_layout buffer, found chain {elem.describe()}")
        if elem is None:
            # The RFC set STARTED first and returned 0 here, so migration would wait forever.
            raise ProtocolError("fvq: no pre-posted mem_layout buffer to carry the request; the "
                                "guest driver must add an 'in' buffer on fvq at probe and after "
                                "every reply")
        self.free_pages_vq_elem = None
        self.free_pages_bitmap = dest
        self.mem_layout = MemLayout(self.low_mem)
        self._set_status(STARTED, now)
        written = _iov_from_buf(elem.in_sg, self.mem_layout.to_bytes())
        self.fvq.push(elem, written, now)
        self.virtio_notify(self.fvq, now)
        return 0, 0

    def virtio_balloon_get_free_pages(self, vq: VirtQueue, now):
        """fvq handler (runs on the guest's kick): keep pre-posted buffers, take in replies."""
        while (elem := vq.pop(now)) is not None:
            if elem.out_num == 0:                       # a pre-posted mem_layout buffer
                if elem.in_bytes < MemLayout.SIZE or self.free_pages_vq_elem is not None:
                    vq.push(elem, 0, now)
                    why = ("it is smaller than mem_layout" if elem.in_bytes < MemLayout.SIZE
                           else "the device already holds one")
                    raise ProtocolError(f"fvq: rejected a pre-posted buffer of {elem.in_bytes} "
                                        f"bytes: {why}")
                self.free_pages_vq_elem = elem
                continue
            self._receive_free_pages_reply(vq, elem, now)

    def _receive_free_pages_reply(self, vq: VirtQueue, elem: VirtQueueElement, now):
        # Validate first; on any error hand the chain back unread and leave the request as it was.
        def reject(exc):
            vq.push(elem, 0, now)
            raise exc

        if self.req_status is not STARTED:
            reject(ProtocolError(f"fvq: a free-page reply arrived while req_status is "
                                 f"{self.req_status.name}: no request is outstanding "
                                 f"(the guest may only reply to a mem_layout request)"))
        if elem.in_num or elem.out_num != 3:
            reject(ProtocolError(f"fvq: a reply is exactly three 'out' parts (free count, bitmap "
                                 f"length, bitmap), got {elem.describe()}"))
        count_part, len_part, bitmap = elem.out_sg
        if count_part.size != 8 or len_part.size != 8:
            reject(ProtocolError(f"fvq: free count and bitmap length are 8 bytes each, got "
                                 f"{count_part.size} and {len_part.size}"))
        count = int.from_bytes(count_part.tobytes(), "little")
        declared = int.from_bytes(len_part.tobytes(), "little")
        expected = bitmap_bytes(self.ram_pages)
        if declared != bitmap.size or bitmap.size != expected:
            reject(BitmapLengthError(
                f"fvq: free-page bitmap length: expected {expected} bytes "
                f"(bitmap_bytes({self.ram_pages}) for {self.ram_pages} RAM pages), got "
                f"{declared} declared and {bitmap.size} sent"))
        # Model: the RFC trusted the declared length and copied that many bytes; we check it.
        self.free_pages_bitmap[:] = bitmap
        self.free_pages_count = count
        self.log.record(now, "host", vq.name, "reply", count=count, bitmap_bytes=int(bitmap.size),
                        bits_set=count_bits(bitmap))
        self._set_status(DONE, now)
        # Model: the RFC kept this chain and never returned it; we push it so the ring cannot leak.
        vq.push(elem, 0, now)
        self.virtio_notify(vq, now)

    def __repr__(self):
        return (f"<VirtIOBalloon ram_pages={self.ram_pages} low_mem={self.low_mem:#x} "
                f"features={feature_names(self.guest_features)} req_status={self.req_status.name}>")


def _iov_from_buf(sg, data: bytes) -> int:
    """Copy ``data`` into the writable parts ``sg`` in order; return the bytes written."""
    off = 0
    for part in sg:
        n = min(part.size, len(data) - off)
        if n <= 0:
            break
        part[:n] = np.frombuffer(data, dtype=np.uint8, count=n, offset=off)
        off += n
    return off


# --------------------------------------------------------------------------- generic layer
def _call(fn, opaque, *args):
    """Call a registered callback: a bound method already carries its object; a plain
    function gets ``opaque`` first, as in C."""
    return fn(*args) if inspect.ismethod(fn) else fn(opaque, *args)


class BalloonRegistry:
    """QEMU's balloon.c: the one registered balloon and the calls the rest of QEMU makes.

    Callbacks may be bound methods (``dev.virtio_balloon_free_pages``) or plain
    functions that take the registered ``opaque`` first, as in C:
    ``event_fn([opaque,] target_bytes, now)``, ``stat_fn([opaque]) -> dict``,
    ``free_pages_fn([opaque,] bitmap_out, now) -> (ret, count)`` and
    ``free_pages_support_fn([opaque]) -> bool``.  Any of them may be None.
    """

    def __init__(self):
        self.balloon_event_fn = None
        self.balloon_stat_fn = None
        self.balloon_free_pages_fn = None
        self.balloon_free_pages_support_fn = None
        self.balloon_opaque = None

    def qemu_add_balloon_handler(self, event_fn, stat_fn, free_pages_fn, opaque,
                                 free_pages_support_fn=None) -> int:
        """Register a balloon; 0 on success, -1 if one is already registered (as in QEMU).

        Without ``free_pages_support_fn``, ``opaque.balloon_free_pages_supported()``
        is used if ``opaque`` has it (a :class:`VirtIOBalloon` does).
        """
        if (self.balloon_event_fn or self.balloon_stat_fn or self.balloon_free_pages_fn
                or self.balloon_opaque is not None):
            return -1
        if free_pages_support_fn is None:
            free_pages_support_fn = getattr(opaque, "balloon_free_pages_supported", None)
        self.balloon_event_fn = event_fn
        self.balloon_stat_fn = stat_fn
        self.balloon_free_pages_fn = free_pages_fn
        self.balloon_free_pages_support_fn = free_pages_support_fn
        self.balloon_opaque = opaque
        return 0

    def qemu_remove_balloon_handler(self, opaque):
        if self.balloon_opaque is not opaque:
            return
        self.balloon_event_fn = self.balloon_stat_fn = None
        self.balloon_free_pages_fn = self.balloon_free_pages_support_fn = None
        self.balloon_opaque = None

    def have_balloon(self) -> bool:
        return self.balloon_opaque is not None

    def qmp_balloon(self, target: int, now):
        """Monitor command ``balloon``: leave the guest ``target`` bytes of RAM."""
        if self.balloon_event_fn is None:
            raise KitError("No balloon device has been activated")
        if target <= 0:
            raise KitError("balloon target must be positive")
        _call(self.balloon_event_fn, self.balloon_opaque, target, now)

    def qmp_query_balloon(self) -> dict:
        if self.balloon_stat_fn is None:
            raise KitError("No balloon device has been activated")
        return _call(self.balloon_stat_fn, self.balloon_opaque)

    def balloon_free_pages_support(self) -> bool:
        """A balloon is registered and its guest negotiated the free-page feature."""
        # The RFC returned true whenever a balloon was registered; the negotiation was only
        # found out at the first balloon_get_free_pages() (-1).  We ask the device up front.
        if self.balloon_free_pages_fn is None:
            return False
        fn = self.balloon_free_pages_support_fn
        return True if fn is None else bool(_call(fn, self.balloon_opaque))

    def balloon_get_free_pages(self, bitmap_out, now) -> tuple[int, int]:
        """``(-1, 0)`` no balloon or feature not negotiated, ``(0, 0)`` not yet, ``(1, count)`` done."""
        if self.balloon_free_pages_fn is None or bitmap_out is None:
            return -1, 0
        return _call(self.balloon_free_pages_fn, self.balloon_opaque, bitmap_out, now)


default_registry = BalloonRegistry()
"""A process-wide registry for scripts that want QEMU's global functions; tests use their own."""


def qemu_add_balloon_handler(event_fn, stat_fn, free_pages_fn, opaque, free_pages_support_fn=None):
    return default_registry.qemu_add_balloon_handler(event_fn, stat_fn, free_pages_fn, opaque,
                                                     free_pages_support_fn)


def qemu_remove_balloon_handler(opaque):
    default_registry.qemu_remove_balloon_handler(opaque)


def balloon_free_pages_support() -> bool:
    return default_registry.balloon_free_pages_support()


def balloon_get_free_pages(bitmap_out, now) -> tuple[int, int]:
    return default_registry.balloon_get_free_pages(bitmap_out, now)
