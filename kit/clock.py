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
    """Per-page send times for one cost model."""

    def __init__(self, cpu_ns_per_page: float, wire_bytes_per_s: float):
        if not wire_bytes_per_s > 0:
            raise ValueError(f"the wire rate must be positive, got {wire_bytes_per_s!r}")
        self.cpu_s = max(0.0, float(cpu_ns_per_page)) * 1e-9
        self.wire = float(wire_bytes_per_s)
        self._k = np.zeros(0, np.int64)
        self._ramp_t = {}

    def totals(self, n: int, nz: int, zero_bytes: int, normal_bytes: int, first_zero: bool,
               first_extra: int = 0):
        """Bytes and seconds of a whole batch of ``n`` pages, ``nz`` of them zero pages: the last
        entries of :meth:`cumulative`, from two counts (the same operations, the same bits)."""
        nbytes = n * normal_bytes - nz * (normal_bytes - zero_bytes)
        t_z, t_n = self.fastest_page_s(zero_bytes), self.fastest_page_s(normal_bytes)
        secs = n * t_n - nz * (t_n - t_z)
        if first_extra:
            b0 = zero_bytes if first_zero else normal_bytes
            nbytes += first_extra
            secs += self.fastest_page_s(b0 + first_extra) - self.fastest_page_s(b0)
        return nbytes, secs

    def cumulative(self, zero: np.ndarray, zero_bytes: int, normal_bytes: int, first_extra: int = 0):
        """Bytes and seconds after each page of a batch, counted from the batch's start.

        ``zero`` says which pages are zero pages (``zero_bytes`` on the wire, the others
        ``normal_bytes``); the first page carries ``first_extra`` bytes more (a RAMBlock's
        name).  Both come from one count of zero pages, since a page's time depends only
        on its kind: ``t(k) = k * t_normal - zeros(k) * (t_normal - t_zero)``.
        """
        n = len(zero)
        k = self._ramp(n)
        cz = np.cumsum(zero, dtype=np.int64)
        cum_bytes = k * normal_bytes - cz * (normal_bytes - zero_bytes)
        t_z, t_n = self.fastest_page_s(zero_bytes), self.fastest_page_s(normal_bytes)
        cum_t = k * t_n - cz * (t_n - t_z)
        if first_extra:
            b0 = zero_bytes if zero[0] else normal_bytes
            cum_bytes += first_extra
            cum_t += self.fastest_page_s(b0 + first_extra) - self.fastest_page_s(b0)
        return cum_bytes, cum_t

    def cumulative_seconds(self, zero: np.ndarray, zero_bytes: int, normal_bytes: int,
                           first_extra: int = 0) -> np.ndarray:
        """The seconds of :meth:`cumulative` alone (the same bits), with fewer array passes."""
        t_z, t_n = self.fastest_page_s(zero_bytes), self.fastest_page_s(normal_bytes)
        n = len(zero)
        kt = self._ramp_t.get(t_n)
        if kt is None or len(kt) < n:
            kt = self._ramp(max(n, 1 << 18)) * t_n
            self._ramp_t[t_n] = kt
        cz = np.cumsum(zero, dtype=np.int64)
        cum_t = kt[:n] - cz * (t_n - t_z)
        if first_extra:
            b0 = zero_bytes if zero[0] else normal_bytes
            cum_t += self.fastest_page_s(b0 + first_extra) - self.fastest_page_s(b0)
        return cum_t

    def _ramp(self, n: int) -> np.ndarray:
        """1, 2, ..., n (cached)."""
        if len(self._k) < n:
            self._k = np.arange(1, max(n, 1 << 18) + 1, dtype=np.int64)
        return self._k[:n]

    @property
    def min_page_s(self) -> float:
        """The shortest time any page can take (a zero page's): bounds how many pages fit in a time."""
        return max(self.cpu_s, 9 / self.wire)

    def page_seconds(self, nbytes: np.ndarray) -> np.ndarray:
        """Seconds each page of a batch takes, from the bytes it puts on the wire."""
        return np.maximum(self.cpu_s, nbytes / self.wire)

    def wire_seconds(self, nbytes) -> float:
        """The wire's share of sending ``nbytes`` (the rest of a batch's time is CPU)."""
        return float(nbytes) / self.wire

    def fastest_page_s(self, nbytes: int) -> float:
        """The time of one page of ``nbytes``: to size a batch before it is looked at."""
        return max(self.cpu_s, nbytes / self.wire)
