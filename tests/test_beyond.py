"""kit/beyond.py: the reviewers' questions and the successor designs (notebook 07's model)."""
import numpy as np
import pytest

from kit import beyond
from kit.bitmap import bitmap_bytes
from kit.costmodel import get_preset
from kit.guest import Guest
from kit.memmap import pc_memory_map
from kit.units import GiB, MiB


@pytest.mark.parametrize("ram", ["256M", "3G", "8G"])
@pytest.mark.parametrize("workload", ["idle", "hog", "dirtying"])
def test_free_pages_arithmetic_matches_a_real_guest(ram, workload):
    g = Guest(pc_memory_map(ram), workload, seed=0)
    assert beyond.free_pages_after_boot(ram, workload) == g.buddy.nr_free_pages


@pytest.mark.parametrize("workload", ["idle", "hog"])
@pytest.mark.parametrize("mode", ["original", "pv", "report"])
def test_send_estimate_is_close_to_the_model(workload, mode):
    r = beyond.run_point("8G", workload, mode)
    assert beyond.estimate_ms(r) == pytest.approx(r["total-ms"], rel=0.03)


def test_compare_runs_every_mode_and_hint_matches_pv():
    for wl in ("idle", "hog"):
        runs = beyond.compare("8G", wl)
        assert list(runs) == ["original", "pv", "hint", "report"]
        assert runs["hint"]["total-ms"] == pytest.approx(runs["pv"]["total-ms"], rel=0.1)
        assert runs["hint"]["hinted-blocks"] > 0 and runs["report"]["reported-pages"] > 0
        assert runs["report"]["free-skipped"] == 0
    hog = beyond.compare("8G", "hog")
    # reporting saves bytes but not the reading of pages
    assert hog["report"]["transferred"] < 0.06 * hog["original"]["transferred"]
    assert hog["report"]["total-ms"] > 3 * hog["hint"]["total-ms"]


def test_run_point_is_cached_and_copies():
    a = beyond.run_point("1G", "idle", "hint")
    a["breakdown-ms"]["setup"] = -1
    b = beyond.run_point("1G", "idle", "hint")
    assert b["breakdown-ms"]["setup"] > 0


def test_inflate_balloon_discards_pages():
    g = beyond._guest("1G", "hog")
    free0 = g.buddy.nr_free_pages
    mask = beyond.inflate_balloon(g, 256 * MiB)
    n = int(np.count_nonzero(mask))
    assert n == min(g.mm.ram_pages - 256 * MiB // 4096, free0)
    assert g.buddy.nr_free_pages == free0 - n
    assert g.memory.zero[mask].all() and not g.memory.version[mask].any()
    # asking for more than the guest has free takes only what is free
    g2 = beyond._guest("1G", "idle")
    assert np.count_nonzero(beyond.inflate_balloon(g2, 0)) == beyond.free_pages_after_boot("1G")


def test_balloon_instead_adds_inflate_time():
    r16 = beyond.balloon_instead("8G", "hog", "1G", "2016")
    r17 = beyond.balloon_instead("8G", "hog", "1G", "2017-sg")
    assert r16["ballooned-gib"] == pytest.approx(7.0)
    assert r16["inflate-ms"] == pytest.approx(5000.0)          # Liang Li: about 5 s for 8 GB -> 1 GB
    assert r17["inflate-ms"] == pytest.approx(491.0)
    assert r16["migrate-ms"] == r17["migrate-ms"]
    orig, pv = (beyond.run_point("8G", "hog", m) for m in ("original", "pv"))
    assert pv["total-ms"] < r17["total-ms"] < r16["total-ms"] < orig["total-ms"]
    assert r16["transferred"] < 0.15 * orig["transferred"]


def test_pagemap_sees_idle_free_pages_but_not_the_hogs():
    idle, hog = beyond.pagemap_counts("8G", "idle"), beyond.pagemap_counts("8G", "hog")
    for c in (idle, hog):
        assert c["not-present"] + c["present"] == c["ram-pages"]
        assert c["free-not-present"] + c["free-present"] == c["free"]
    assert idle["free-not-present"] / idle["free"] > 0.99
    assert hog["free-not-present"] / hog["free"] < 0.05
    e = beyond.pagemap_estimate("8G", "idle")
    assert e["pagemap-ms"] == pytest.approx(e["pv-ms"], rel=0.05)
    assert beyond.pagemap_estimate("8G", "hog")["pagemap-ms"] > 10 * e["pv-ms"]


def test_bitmap_sizes_at_1_tib():
    s = beyond.bitmap_sizes("1T")
    assert s["rfc-bitmap-bytes"] == 32 * MiB == bitmap_bytes(s["ram-pages"])
    assert s["rfc-bitmap-vs-max-block"] == 8
    assert beyond.BUDDY_MAX_BLOCK_BYTES == 4 * MiB
    cm = get_preset(beyond.PRESET)
    assert s["rfc-handover-ms"] == pytest.approx(32 * MiB * cm.bitmap_transfer_ns_per_byte * 1e-6)
    assert s["hint-blocks"] == s["free-pages"] // 1024
    lo, hi = s["reports"]
    assert lo <= hi and lo == -(-s["hint-blocks"] // 32)
    # 8 GiB: Liang Li's 20 ms walk and 3 ms hand-over
    s8 = beyond.bitmap_sizes("8G")
    assert s8["rfc-walk-ms"] == pytest.approx(20, rel=0.05)
    assert s8["rfc-handover-ms"] == pytest.approx(3, rel=0.05)


def test_postcopy_split():
    o = beyond.postcopy_split("8G", "hog", "original", switch_ms=300)
    assert not o["completed-before-switch"] and o["skipped-free"] == 0
    assert o["after-bytes-with-info"] < 0.1 * o["after-bytes-no-info"]
    assert o["after-ms-with-info"] < o["after-ms-no-info"]
    pv = beyond.postcopy_split("8G", "hog", "pv", switch_ms=300)
    # the RFC skips every page free when asked: the bits of the hog guest's buddy bitmap
    free = int(np.count_nonzero(Guest(pc_memory_map("8G"), "hog", seed=0).buddy.free))
    assert pv["skipped-free"] == free and pv["free-stale-due"] == pv["free-zero-due"] == 0
    done = beyond.postcopy_split("1G", "idle", "pv", switch_ms=10_000)
    assert done["completed-before-switch"] and done["after-bytes-no-info"] == 0


def test_wei_wang_rows_shape():
    rows = beyond.wei_wang_rows(beyond.WEI_WANG[:1] + beyond.WEI_WANG[3:4])
    assert [r["published-hint-ms"] for r in rows] == [271, 620]
    for r in rows:
        assert 0.7 < r["model-saving"] < 0.95 and 0.7 < r["published-saving"] < 0.95
    # the model has no downtime-limit effect on an idle guest
    assert rows[0]["model-legacy-ms"] == rows[1]["model-legacy-ms"]
    assert {p.ram_gib for p in beyond.WEI_WANG} == {8, 128}
