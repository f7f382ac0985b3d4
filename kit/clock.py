"""Time accounting for sending pages: how long each page of a batch takes.

The page walker (:mod:`kit.migration`) finds the dirty pages of a batch and how
many bytes each one puts on the wire; this layer turns them into seconds, once
per batch, and says how much of that time the wire and the CPU account for
(``breakdown-ms``'s ``send-wire`` and ``send-cpu``).

The rule: a page takes the larger of its CPU time (read it, check it for zero,
copy it into the stream: ``cpu_ns_per_page``) and its wire time (its bytes over
the link rate).  A full page on 10 GbE is wire-bound (4104 bytes take 3.5 us, the
CPU 0.76 us); a zero page is CPU-bound (9 bytes).
Simplification: pages do not overlap each other.  In QEMU the migration thread
can read ahead while the socket drains, but only by what the socket buffer holds
(a few MiB, milliseconds at 10 GbE), so a run of zero pages right after a run of
full pages overlaps the wire for about that long.  A rule that let the CPU run
ahead for a whole 50 ms slice made the total time jump by 40 ms when a cost
moved by 0.1 % (which page ended which slice changed); this rule is continuous
in every cost.
"""
from __future__ import annotations

import numpy as np


class SendClock:
    """Per-page send times for one cost model and QEMU's two kinds of page record: a zero
    page (``zero_bytes`` on the wire) and a full one (``normal_bytes``)."""

    def __init__(self, cpu_ns_per_page: float, wire_bytes_per_s: float, zero_bytes: int, normal_bytes: int):
        if not wire_bytes_per_s > 0:
            raise ValueError(f"the wire rate must be positive, got {wire_bytes_per_s!r}")
        self.cpu_s = max(0.0, float(cpu_ns_per_page)) * 1e-9
        self.wire = float(wire_bytes_per_s)
        self.zero_bytes, self.normal_bytes = int(zero_bytes), int(normal_bytes)
        self.t_zero = self.page_s(self.zero_bytes)       # also the shortest time any page takes
        self.t_normal = self.page_s(self.normal_bytes)
        self._kt = np.zeros(0)                           # 1, 2, ..., n times t_normal (cached)

    def page_s(self, nbytes: int) -> float:
        """The time of one page record of ``nbytes``."""
        return max(self.cpu_s, nbytes / self.wire)

    def wire_seconds(self, nbytes) -> float:
        """The wire's share of sending ``nbytes`` (the rest of a batch's time is CPU)."""
        return float(nbytes) / self.wire

    def _first(self, first_zero: bool, first_extra: int) -> float:
        """What ``first_extra`` bytes more on the first page (a RAMBlock's name) add to its time."""
        b0 = self.zero_bytes if first_zero else self.normal_bytes
        return self.page_s(b0 + first_extra) - self.page_s(b0)

    def totals(self, n: int, nz: int, first_zero: bool, first_extra: int = 0):
        """Bytes and seconds of a whole batch of ``n`` pages, ``nz`` of them zero pages: the last
        entries of :meth:`cumulative`, from two counts (the same operations, the same bits)."""
        nbytes = n * self.normal_bytes - nz * (self.normal_bytes - self.zero_bytes)
        secs = n * self.t_normal - nz * (self.t_normal - self.t_zero)
        if first_extra:
            nbytes += first_extra
            secs += self._first(first_zero, first_extra)
        return nbytes, secs

    def _seconds(self, cz: np.ndarray) -> np.ndarray:
        """Seconds after each page, from the running count of zero pages ``cz``:
        ``t(k) = k * t_normal - zeros(k) * (t_normal - t_zero)``."""
        n = len(cz)
        if len(self._kt) < n:
            self._kt = np.arange(1, max(n, 1 << 18) + 1, dtype=np.int64) * self.t_normal
        out = cz * (self.t_normal - self.t_zero)
        return np.subtract(self._kt[:n], out, out=out)          # the same sums, one array fewer

    def cumulative_seconds(self, zero: np.ndarray, first_extra: int = 0) -> np.ndarray:
        """Seconds after each page of a batch, counted from the batch's start; ``zero`` says
        which pages are zero pages, and the first page carries ``first_extra`` bytes more."""
        cum_t = self._seconds(np.cumsum(zero, dtype=np.int64))
        if first_extra:
            cum_t += self._first(bool(zero[0]), first_extra)
        return cum_t

    def cumulative(self, zero: np.ndarray, first_extra: int = 0):
        """Bytes and seconds after each page of a batch (as :meth:`cumulative_seconds`); both
        come from one count of zero pages, since a page's cost depends only on its kind."""
        cz = np.cumsum(zero, dtype=np.int64)
        cum_bytes = np.arange(1, len(cz) + 1, dtype=np.int64) * self.normal_bytes \
            - cz * (self.normal_bytes - self.zero_bytes)
        cum_t = self._seconds(cz)
        if first_extra:
            cum_bytes += first_extra
            cum_t += self._first(bool(zero[0]), first_extra)
        return cum_bytes, cum_t
