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

    def page_seconds(self, nbytes: np.ndarray) -> np.ndarray:
        """Seconds each page of a batch takes, from the bytes it puts on the wire."""
        return np.maximum(self.cpu_s, nbytes / self.wire)

    def wire_seconds(self, nbytes) -> float:
        """The wire's share of sending ``nbytes`` (the rest of a batch's time is CPU)."""
        return float(nbytes) / self.wire

    def fastest_page_s(self, nbytes: int) -> float:
        """The time of one page of ``nbytes``: to size a batch before it is looked at."""
        return max(self.cpu_s, nbytes / self.wire)
