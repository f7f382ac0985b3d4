"""Dirtying rates a migration is sure to outrun, for the property tests' strategies.

Pre-copy converges when the guest writes pages more slowly than the migration sends
them: each round then leaves fewer dirty pages than the one before, until they fit in
the downtime limit. One 4 KiB page costs 8 + 4096 bytes on the wire (the be64 header
and the page), or the CPU's per-page cost if that is longer. Asking for at most half
that rate leaves a margin for repeated writes and for each round's fixed costs.
"""

RATES = (0.0, 500.0, 20000.0, 200000.0)


def page_send_seconds(cost) -> float:
    """Seconds to send one full page: the wire's share or the CPU's, whichever is longer."""
    return max((8 + 4096) / cost.wire_bytes_per_s, cost.cpu_ns_per_page * 1e-9)


def slower_than_the_link(cost, rates=RATES):
    """(dirty_rate, churn_rate) pairs, in pages per second, that together write at most
    half as many pages per second as ``cost``'s link sends."""
    page_s = page_send_seconds(cost)
    return [(d, c) for d in rates for c in rates if (d + c) * page_s <= 0.5]
