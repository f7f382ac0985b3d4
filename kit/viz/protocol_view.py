"""Pictures for patch 2 (notebook 02): feature bits, virtqueues, one free-page request
step by step, the guest's buddy free lists and the bitmap built from them.

Display only: everything here reads the model (a :class:`~kit.migration.Migration`,
its device's :class:`~kit.balloon.EventLog`, a :class:`~kit.guest.Guest`) and
never changes it.  The one exception is :func:`classic_balloon`, which wires a
fresh device and driver to a guest so a notebook can inflate and deflate.

The Next/Back stepper replays a recorded log, so stepping is instant and the
same in JupyterLab, Voila and under nbval.
"""
from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np

from .. import balloon as bl
from ..bitmap import count_bits, pack_bitmap, unpack_bitmap
from ..guest import MAX_ORDER
from ..guest.balloon_driver import GUEST_FEATURES, VirtioBalloonDriver
from ..units import format_size
from . import palette
from . import pagemap as pm

__all__ = ["FEATURES", "VIRTQUEUES", "feature_table", "virtqueue_table", "negotiation",
           "Step", "request_steps", "ProtocolStepper", "free_area_table", "plot_free_area",
           "bitmap_bits", "interesting_start", "bitmap_text", "plot_guest_and_bitmap",
           "BITMAP_CLASSES", "BITMAP_COLOURS", "classic_balloon", "runs_table"]

# --------------------------------------------------------------------------- features, queues
FEATURES = (
    (bl.VIRTIO_BALLOON_F_MUST_TELL_HOST, "tell the host before reusing deflated pages"),
    (bl.VIRTIO_BALLOON_F_STATS_VQ, "memory statistics on a third queue"),
    (bl.VIRTIO_BALLOON_F_DEFLATE_ON_OOM, "the guest may deflate when it runs out of memory"),
    (bl.VIRTIO_BALLOON_F_GET_FREE_PAGES, "the RFC: report free pages as a bitmap "
                                         "(bit 3 went to FREE_PAGE_HINT upstream)"),
)

VIRTQUEUES = (
    ("ivq", "inflate: the guest sends PFNs of pages it gives to the host"),
    ("dvq", "deflate: the guest sends PFNs of pages it takes back"),
    ("svq", "stats: the guest sends (tag, value) memory statistics"),
    ("fvq", "the RFC's free-page queue: request (mem_layout) and 3-part reply"),
)


def _yes(flag) -> str:
    return "yes" if flag else "-"


def feature_table(device, driver) -> str:
    """Bits 0-3: who offers, who accepts, what was negotiated (plain text)."""
    rows = [f"{'bit':>3}  {'name':34s} {'device offers':>13s} {'guest knows':>11s} "
            f"{'negotiated':>10s}  meaning"]
    for bit, meaning in FEATURES:
        rows.append(f"{bit:>3}  {bl.feature_names({bit})[0]:34s} "
                    f"{_yes(bl.virtio_has_feature(device.host_features, bit)):>13s} "
                    f"{_yes(bl.virtio_has_feature(driver.supported_features, bit)):>11s} "
                    f"{_yes(device.virtio_vdev_has_feature(bit)):>10s}  {meaning}")
    return "\n".join(rows)


def virtqueue_table(device) -> str:
    """The device's four queues: name, size, the device's handler, purpose (plain text)."""
    rows = [f"{'vq':4s} {'size':>4s}  {'handler in the device':32s} purpose"]
    for name, purpose in VIRTQUEUES:
        vq = device.vqs[name]
        handler = vq.handler.__name__ if vq.handler is not None else "-"
        rows.append(f"{name:4s} {vq.size:>4d}  {handler:32s} {purpose}")
    return "\n".join(rows)


def negotiation(log) -> str:
    """The feature negotiation recorded in ``log``: what was offered, what was kept."""
    ev = log.filter(kind="negotiate")[0]
    offered, kept = ev.detail["offered"], ev.detail["negotiated"]
    short = lambda names: ", ".join(n.replace("VIRTIO_BALLOON_F_", "") for n in names) or "none"
    dropped = [n for n in offered if n not in kept]
    return (f"offered   : {short(offered)}\n"
            f"negotiated: {short(kept)}\n"
            f"dropped   : {short(dropped)}")


# --------------------------------------------------------------------------- the request
LANES = ("guest driver", "fvq", "virtio-balloon device", "migration thread")
_G, _Q, _D, _M = range(4)
STATUSES = ("NOT_STARTED", "STARTED", "DONE")


@dataclass(frozen=True)
class Step:
    """One step of a request as the stepper shows it."""
    seq: int | None           # position in the EventLog; None for the model's uncounted polls
    t: float                  # seconds
    src: int                  # lane numbers (see LANES); src == dst for a local action
    dst: int
    kind: str
    text: str
    status: str               # req_status after this step
    parts: tuple = ()         # (part, bytes, content) for each part of a message


def _hex(raw: bytes) -> str:
    return " ".join(f"{b:02x}" for b in raw)


def _u64(value: int) -> str:
    return f"{value:,} (bytes {_hex(int(value).to_bytes(8, 'little'))})"


def request_steps(log, *, low_mem: int, free_count: int | None = None, bitmap=None,
                  polls: int | None = None) -> list[Step]:
    """The steps of the free-page request recorded in ``log`` (the device's EventLog).

    Keeps the negotiation and every event on ``fvq``.  ``low_mem``, ``free_count``
    and ``bitmap`` (the packed bitmap QEMU received) fill in the message contents;
    ``polls`` (from the migration timeline) adds one step for the polls that
    returned 0: the model counts them without logging each one.
    """
    steps: list[Step] = []
    status = "NOT_STARTED"
    head = "" if bitmap is None else _hex(bytes(np.asarray(bitmap[:8], np.uint8)))
    nset = "" if bitmap is None else f", {count_bits(bitmap):,} bits set"
    for ev in log:
        d, tag = ev.detail, ev.detail.get("tag")
        if ev.kind == "negotiate":
            has = "VIRTIO_BALLOON_F_GET_FREE_PAGES" in d["negotiated"]
            steps.append(Step(ev.seq, ev.t, _G, _D, ev.kind,
                              "probe: the guest accepts the features it knows; bit 3 (GET_FREE_PAGES) "
                              + ("is negotiated" if has else "is NOT negotiated"), status))
            continue
        if ev.vq != "fvq":
            continue
        parts: tuple = ()
        if ev.kind == "add_buf" and tag == "mem_layout":
            src, dst = _G, _Q
            text = "the guest posts an empty 8-byte buffer for the host's next request"
            parts = (("mem_layout (device-writable)", 8, "empty"),)
        elif ev.kind == "add_buf":
            src, dst = _G, _Q
            text = "the guest posts its reply: one chain of three parts it wrote"
            nbytes = d["parts"][2][1]
            parts = (("free page count", 8, _u64(free_count) if free_count is not None else "?"),
                     ("bitmap length", 8, _u64(nbytes)),
                     ("bitmap", nbytes, f"one bit per page of pc.ram{nset}; first bytes {head} ..."))
        elif ev.kind == "kick":
            src, dst = _G, _D
            text = "the guest kicks fvq: the device's handler virtio_balloon_get_free_pages runs"
        elif ev.kind == "pop" and tag == "mem_layout":
            src, dst = _Q, _D
            text = "the device takes the empty buffer and keeps it (free_pages_vq_elem)"
        elif ev.kind == "pop":
            src, dst = _Q, _D
            text = "the device takes the reply chain"
        elif ev.kind == "request":
            src, dst = _M, _D
            text = (f"migration calls balloon_get_free_pages(): no request is running, so the device "
                    f"starts one; QEMU's bitmap buffer is {d['bitmap_bytes']:,} bytes")
        elif ev.kind == "state":
            src = dst = _D
            status = d["to"]
            text = f"req_status {d['from']} -> {d['to']}"
        elif ev.kind == "push" and tag == "mem_layout":
            src, dst = _D, _Q
            text = "the device writes MemLayout{low_mem} into the kept buffer and returns it"
            parts = (("mem_layout.low_mem", d["written"],
                      f"{low_mem:#x} = {format_size(low_mem)} "
                      f"(bytes {_hex(int(low_mem).to_bytes(8, 'little'))})"),)
        elif ev.kind == "push":
            src, dst = _D, _Q
            text = "the device hands the reply chain back (it wrote nothing into it)"
        elif ev.kind == "notify":
            src, dst = _D, _G
            text = "the device interrupts the guest: the fvq callback runs"
        elif ev.kind == "get_used" and tag == "mem_layout":
            src, dst = _Q, _G
            text = "the guest finds its buffer filled: a request, with low_mem"
            parts = (("mem_layout.low_mem", d["written"], f"{low_mem:#x}"),)
        elif ev.kind == "get_used":
            src, dst = _Q, _G
            text = "the guest collects its returned reply chain"
        elif ev.kind == "walk":
            src = dst = _G
            text = (f"the guest walks its free lists under zone->lock and sets one bit per free page "
                    f"({d['free_count']:,} pages, {d['bitmap_bytes']:,} bytes); walk "
                    f"{d['cost_s'] * 1e3:.2f} ms + hand-over {d['transfer_s'] * 1e3:.2f} ms")
        elif ev.kind == "reply":
            src = dst = _D
            text = "the device copies the bitmap straight into migration's buffer and keeps the count"
            parts = (("free page count", 8, f"{d['count']:,} -> free_pages_count"),
                     ("bitmap", d["bitmap_bytes"], f"{d['bits_set']:,} bits set -> migration's "
                                                   f"free_pages_bmap"))
        elif ev.kind == "poll":
            src, dst = _M, _D
            text = (f"migration polls balloon_get_free_pages(): req_status {d['req_status']}, "
                    f"returns {d['ret']}" + (f" with count {d['count']:,}" if d["ret"] == 1 else ""))
        else:                                   # an event this picture does not know: show it raw
            src = dst = _D
            text = f"{ev.actor} {ev.kind} {d}"
        steps.append(Step(ev.seq, ev.t, src, dst, ev.kind, text, status, parts))
        if ev.kind == "walk" and polls and polls > 1:
            steps.append(Step(None, ev.t, _M, _D, "polls",
                              f"meanwhile migration polls every 1 ms (usleep(1000)); {polls - 1} "
                              f"polls return 0 (STARTED). The model counts them but does not log "
                              f"each one", status))
    return steps


BITMAP_CLASSES = ("bit clear: used (or padding)", "bit set: free in the guest", "not allocated yet")
BITMAP_COLOURS = palette.BITMAP
BITMAP_LETTERS = "0 1 -"


def _box(text, on, colour=palette.HIGHLIGHT) -> str:
    bg = colour if on else palette.OFF_BOX
    weight = "bold" if on else "normal"
    return (f"<td style='padding:3px 8px;border:1px solid #bbb;background:{bg};"
            f"font-weight:{weight};text-align:center'>{html.escape(text)}</td>")


class ProtocolStepper:
    """Next / Back over the steps of one recorded request.

    Shows, for the current step: where the message goes (four lanes), the
    request state, the message parts, a window of the log, and QEMU's
    destination bitmap as a page map (empty until the device copies the reply in).
    Build it with :meth:`from_migration` after the migration's setup has run.
    """

    def __init__(self, steps, bitmap_bits=None, width: int = 512, height: int = 64):
        import ipywidgets as widgets
        if not steps:
            raise ValueError("no steps to show")
        self.steps = list(steps)
        self.index = 0
        self.back_button = widgets.Button(description="Back", icon="arrow-left")
        self.next_button = widgets.Button(description="Next", icon="arrow-right")
        self.position = widgets.HTML()
        self.panel = widgets.HTML()
        self.image = widgets.Image(format="png", layout=widgets.Layout(width="100%"))
        self.caption = widgets.HTML()
        self.back_button.on_click(lambda _: self.back())
        self.next_button.on_click(lambda _: self.next())
        self._pngs = self._bitmap_pngs(bitmap_bits, width, height)
        legend = widgets.HTML(pm.legend_html(BITMAP_CLASSES, BITMAP_COLOURS))
        self.widget = widgets.VBox([
            widgets.HBox([self.back_button, self.next_button, self.position]),
            self.panel, widgets.HTML("<b>QEMU's free-page bitmap buffer</b>"),
            self.image, legend, self.caption])
        self.show()

    @classmethod
    def from_migration(cls, m, **kw) -> "ProtocolStepper":
        """The request a pv :class:`~kit.migration.Migration` made during its setup."""
        if m.free_pages_bmap is None or m.free_pages_count is None:
            raise ValueError("run the pv migration through its setup first (and the guest must "
                             "have negotiated VIRTIO_BALLOON_F_GET_FREE_PAGES)")
        done = [e for e in m.timeline if e["kind"] == "free-pages-done"]
        steps = request_steps(m.balloon.log, low_mem=m.balloon.low_mem,
                              free_count=m.free_pages_count, bitmap=m.free_pages_bmap,
                              polls=done[0]["polls"] if done else None)
        bits = unpack_bitmap(m.free_pages_bmap, m.mm.ram_pages)
        return cls(steps, bits, **kw)

    # -- pictures -------------------------------------------------------------
    def _bitmap_pngs(self, bits, width, height):
        if bits is None:
            return None
        n = len(bits)
        none = np.full(n, 2, np.uint8)
        empty = np.zeros(n, np.uint8)
        full = bits.astype(np.uint8)
        return tuple(pm.png(pm.render(c, BITMAP_COLOURS, width, height)) for c in (none, empty, full))

    def _bitmap_stage(self) -> int:
        """0: QEMU has no buffer yet; 1: allocated, empty; 2: the reply was copied in."""
        kinds = [s.kind for s in self.steps[: self.index + 1]]
        if "reply" in kinds:
            return 2
        if "request" in kinds:
            return 1
        return 0

    # -- navigation -------------------------------------------------------------
    def goto(self, i: int):
        self.index = max(0, min(int(i), len(self.steps) - 1))
        self.show()
        return self

    def next(self):
        return self.goto(self.index + 1)

    def back(self):
        return self.goto(self.index - 1)

    # -- drawing ------------------------------------------------------------------
    def lanes_html(self, step: Step) -> str:
        cells = "".join(_box(name, i in (step.src, step.dst)) for i, name in enumerate(LANES))
        lo, hi = sorted((step.src, step.dst))
        arrow = []
        for i in range(len(LANES)):
            if step.src == step.dst:
                mark = "&#9679;" if i == step.src else ""
            elif i == step.dst:
                mark = "&#9664;" if step.dst < step.src else "&#9654;"
            elif lo <= i <= hi:
                mark = "&#9472;" * 6
            else:
                mark = ""
            arrow.append(f"<td style='text-align:center;color:{palette.ARROW}'>{mark}</td>")
        return (f"<table style='border-collapse:collapse'><tr>{cells}</tr>"
                f"<tr>{''.join(arrow)}</tr></table>")

    def status_html(self, status: str) -> str:
        boxes = "<td>&rarr;</td>".join(_box(s, s == status, palette.STATUS_ON) for s in STATUSES)
        return (f"<table style='border-collapse:collapse'><tr><td>req_status&nbsp;</td>"
                f"{boxes}<td>&rarr; NOT_STARTED</td></tr></table>")

    def parts_html(self, step: Step) -> str:
        if not step.parts:
            return "<div><i>no message content in this step</i></div>"
        rows = "".join(f"<tr><td>{html.escape(p)}</td><td style='text-align:right'>{n:,} B</td>"
                       f"<td style='font-family:monospace'>{html.escape(str(v))}</td></tr>"
                       for p, n, v in step.parts)
        return ("<table style='border-collapse:collapse'><tr><th align=left>part</th>"
                f"<th align=right>size</th><th align=left>content</th></tr>{rows}</table>")

    def log_html(self, around: int = 3) -> str:
        lo = max(0, self.index - around)
        hi = min(len(self.steps), self.index + around + 1)
        lines = []
        for i in range(lo, hi):
            s = self.steps[i]
            mark = "&#9654;" if i == self.index else "&nbsp;"
            line = html.escape(f"{s.t * 1e3:8.3f} ms  {s.kind:9s} {s.text}")
            lines.append(f"<b>{mark} {line}</b>" if i == self.index else f"{mark} {line}")
        return ("<div style='font-family:monospace;font-size:85%;white-space:pre-wrap;overflow-wrap:anywhere'>"
                + "<br>".join(lines) + "</div>")

    def show(self):
        s = self.steps[self.index]
        seq = "model: not logged" if s.seq is None else f"log #{s.seq}"
        self.position.value = (f"<b>step {self.index + 1} of {len(self.steps)}</b> "
                               f"(t = {s.t * 1e3:.3f} ms, {seq})")
        self.panel.value = (self.lanes_html(s) + f"<p><b>{html.escape(s.text)}</b></p>"
                            + self.status_html(s.status) + self.parts_html(s) + self.log_html())
        self.back_button.disabled = self.index == 0
        self.next_button.disabled = self.index == len(self.steps) - 1
        if self._pngs is not None:
            stage = self._bitmap_stage()
            self.image.value = self._pngs[stage]
            self.caption.value = ("QEMU has not allocated it yet (no migration)",
                                  "allocated by ram_save_setup, still all zero",
                                  "filled by the device from the guest's reply")[stage]
        return self


# --------------------------------------------------------------------------- buddy free lists
def free_area_table(guest) -> str:
    """nr_free per order for each zone, and the free pages it adds up to (plain text)."""
    head = "zone    " + "".join(f"{k:>6d}" for k in range(MAX_ORDER)) + "   free pages"
    rows = [head, "order:  " + "-" * (6 * MAX_ORDER) + "   ----------"]
    total = 0
    for area in guest.buddy.free_area():
        rows.append(f"{area.zone.name:8s}" + "".join(f"{n:>6d}" for n in area.nr_free)
                    + f"   {area.free_pages:>10,d}")
        total += area.free_pages
    rows.append(f"{'':8s}" + " " * (6 * MAX_ORDER) + f"   {total:>10,d}  = NR_FREE_PAGES "
                f"{guest.buddy.nr_free_pages:,}")
    return "\n".join(rows)


def plot_free_area(guest, figsize=(10, 3.2)):
    """Two bar charts: free blocks per order (nr_free) and the pages they hold, by zone."""
    import matplotlib.pyplot as plt
    areas = guest.buddy.free_area()
    orders = np.arange(MAX_ORDER)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=figsize)
    width = 0.8 / len(areas)
    bottom = np.zeros(MAX_ORDER)
    for j, area in enumerate(areas):
        nr = np.array(area.nr_free)
        ax1.bar(orders + (j - (len(areas) - 1) / 2) * width, nr, width, label=area.zone.name)
        mib = nr * (1 << orders) * 4096 / 2**20
        ax2.bar(orders, mib, 0.8, bottom=bottom, label=area.zone.name)
        bottom += mib
    ax1.set_yscale("log")
    ax1.set_ylim(0.5, None)
    ax1.set_title("free blocks per order (nr_free), log scale")
    ax2.set_title("memory in those blocks (MiB)")
    for ax in (ax1, ax2):
        ax.set_xticks(orders)
        ax.set_xlabel("order (block = 2^order pages)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- the bitmap
def bitmap_bits(guest, low_mem=None) -> np.ndarray:
    """The guest's free-page bitmap as bools, in ram_addr order (what the RFC's guest sends)."""
    bits, _, _ = guest.build_free_page_bitmap(guest.mm.lowmem if low_mem is None else low_mem)
    return bits[: guest.mm.ram_pages]


def interesting_start(bits, count: int = 64) -> int:
    """Where a ``count``-page window centred on the first change in ``bits`` starts.

    Rounded down to a multiple of 8, so the window starts on a byte of the bitmap.
    """
    b = np.asarray(bits, bool)
    change = np.flatnonzero(b[1:] != b[:-1])
    if not len(change):
        return 0
    start = max(0, int(change[0]) + 1 - count // 2) // 8 * 8
    return min(start, max(0, (len(b) - count) // 8 * 8))


def bitmap_text(guest, bits, start: int, count: int = 64) -> str:
    """The guest's pages and the bitmap bits for the same pages, one letter each, and the bytes."""
    gcls = pm.guest_classes(guest, "ram")
    raw = pack_bitmap(bits)[start // 8:(start + count) // 8]
    return (f"ram pages {start:,} .. {start + count - 1:,}\n"
            f"guest : {pm.text_strip(gcls, pm.GUEST_LETTERS, start, count)}\n"
            f"bitmap: {pm.text_strip(np.asarray(bits, np.uint8), BITMAP_LETTERS, start, count)}\n"
            f"bytes : {_hex(bytes(raw))}  (page i is bit i % 8 of byte i // 8)")


def plot_guest_and_bitmap(guest, bits, width: int = 1024, height: int = 96, figsize=(10, 3.4)):
    """Two page maps, ram_addr order: the guest's pages, and the bitmap built from its free lists."""
    import matplotlib.pyplot as plt
    gimg = pm.render(pm.guest_classes(guest, "ram"), pm.GUEST_COLOURS, width, height)
    bimg = pm.render(np.asarray(bits, np.uint8), BITMAP_COLOURS, width, height)
    fig, axes = plt.subplots(2, 1, figsize=figsize)
    for ax, img, title, names, colours in (
            (axes[0], gimg, "the guest's pages", pm.GUEST_CLASSES[:4], pm.GUEST_COLOURS[:4]),
            (axes[1], bimg, "the free-page bitmap it sends", BITMAP_CLASSES[:2], BITMAP_COLOURS[:2])):
        ax.imshow(img, aspect="auto", interpolation="nearest")
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(handles=[pm.legend_patch(nm, c) for nm, c in zip(names, colours)],
                  loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- classic balloon
def classic_balloon(guest):
    """A fresh virtio-balloon device and driver over ``guest``, for inflate/deflate.

    The driver takes pages from the guest's buddy allocator when it inflates and
    gives them back when it deflates.  Returns ``(registry, device, driver)``;
    ``registry.qmp_balloon(bytes, now)`` is the monitor's ``balloon`` command.
    """
    mm = guest.mm
    reg = bl.BalloonRegistry()
    dev = bl.VirtIOBalloon(mm.lowmem, mm.ram_pages, registry=reg)
    drv = VirtioBalloonDriver(dev, None, guest_features=GUEST_FEATURES,
                              page_allocator=lambda n, now: guest.buddy.alloc_runtime(n),
                              page_release=lambda pfns, now: guest.buddy.free_frames(pfns))
    drv.probe(0.0)
    return reg, dev, drv


# --------------------------------------------------------------------------- comparing runs
def runs_table(runs: dict) -> str:
    """Finished migrations side by side: ``{"label": Migration or kit.scenario.Result}`` -> plain text."""
    keys = (("setup-time", "setup (ms)", None), ("total-time", "total time (ms)", None),
            ("transferred", "transferred (KiB)", "kib"), ("free-skipped", "free pages skipped", "ram"),
            ("duplicate", "zero pages sent", "ram"), ("normal", "normal pages sent", "ram"))
    labels = list(runs)
    w = max(12, *(len(x) for x in labels))
    rows = [f"{'':20s}" + "".join(f"{x:>{w + 2}s}" for x in labels)]
    stats = {x: m.query_migrate() if hasattr(m, "query_migrate") else m.stats for x, m in runs.items()}
    for key, name, where in keys:
        vals = []
        for x in labels:
            s = stats[x]
            v = s[key] if where is None else s["ram"][key if where == "ram" else "transferred"]
            vals.append(v >> 10 if where == "kib" else v)
        rows.append(f"{name:20s}" + "".join(f"{v:>{w + 2},d}" for v in vals))
    return "\n".join(rows)
