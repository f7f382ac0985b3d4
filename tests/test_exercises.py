"""Every exercise check as a student meets it: right, near, wrong, wrong unit, unreadable.

The expected answers are worked out here or in the by-hand helpers of the other
test files (tests/by_hand.py and the ``*_by_hand`` functions), from the question's
numbers and the cost model's inputs, never by calling a check's own answer
function.  What is tested is the verdict a student sees: accepted or not, which
way a miss goes, the unit slip named, one line for an input that is no answer,
and no exact answer given away on a wrong try.
"""
import math
import statistics

import pytest

import by_hand
from kit.costmodel import get_preset
from kit.exercises import Verdict, ex01, ex02, ex03, ex04, ex05, ex06, ex07, ex08, ex09
from kit.exercises import Question, read_number
from kit.guest import Guest, get_workload
from kit.memmap import pc_memory_map
from kit.units import GiB, MiB

COST = get_preset("seed-2016")


# -- answers by hand ---------------------------------------------------------------
def _ex02_polls():
    g = by_hand.seed_guest("8G", "hog")
    wait_s = (by_hand.free_frames(g) * COST.guest_walk_ns_per_free_page
              + (g.mm.ram_pages // 8) * COST.bitmap_transfer_ns_per_byte) * 1e-9
    return math.ceil(wait_s / 1e-3)


def _ex03_after_sync():
    g = Guest(pc_memory_map("2G", "q35"), "idle", seed=3)
    return g.mm.ram_pages - by_hand.free_frames(g) + by_hand.VGA_PAGES


def _ex04_fraction():
    g = by_hand.seed_guest("8G", "hog")
    return by_hand.free_frames(g) / g.mm.ram_pages


def _ex04_mib():
    g = by_hand.seed_guest("2G", "hog")
    return COST.wire_bytes_per_s * (0.5 - by_hand.setup_s(COST, g, syncs=1)) / MiB


def _ex05_pv_64g_s():
    from test_performance_view import _pv_hog_by_hand
    return _pv_hog_by_hand("64G")


def _ex05_orig_100g_ms():
    cost = COST.with_(wire_bytes_per_s=100e9 / 8 * 1448 / 1538)
    g = by_hand.seed_guest("8G", "hog")
    return 1000 * (by_hand.setup_s(cost, g, syncs=3) + by_hand.all_pages(g) * cost.cpu_ns_per_page * 1e-9)


def _ex06_lost():
    g = by_hand.seed_guest("2G", get_workload("dirtying").with_(churn_rate=16384.0))
    gap = by_hand.free_page_answer_s(COST, g) + by_hand.backed_frames(g) * COST.dirty_log_ns_per_backed_page * 1e-9
    return 16384.0 * gap


def _ex06_walk_ns():
    g = by_hand.seed_guest("1G", "hog")
    return 0.1 / by_hand.free_frames(g) * 1e9


def _ex07_blocks():
    """Whole free 4 MiB blocks, zone by zone, as many as each zone's min watermark lets an
    order-10 allocation take (Linux's defaults: min_free_kbytes = sqrt(16 x KiB of RAM),
    shared among the zones by size; a lower zone also keeps 1/256 of the zones above it
    back for allocations that could have used those)."""
    import numpy as np
    g = by_hand.seed_guest("16G", "idle")
    present, free = g.memory.present_mask(), g.buddy.free
    zones = g.buddy.zones
    managed = [int(np.count_nonzero(present[z.start_pfn:z.end_pfn])) for z in zones]
    total = sum(managed)
    min_free = min(max(math.isqrt(total * 4 * 16), 128), 65536) // 4      # pages
    hinted = 0
    for i, z in enumerate(zones):
        keep = min_free * managed[i] // total + sum(managed[i + 1:]) // 256
        nfree = int(np.count_nonzero(free[z.start_pfn:z.end_pfn]))
        a, b = z.start_pfn // 1024, z.end_pfn // 1024
        whole = int(np.count_nonzero(free.reshape(-1, 1024)[a:b].all(axis=1)))
        allowed = max(0, -(-(nfree - 1023 - keep) // 1024))
        hinted += min(whole, allowed)
    return hinted


def _ex07_balloon_ms():
    g = by_hand.seed_guest("16G", "hog")
    balloon = g.inflate_balloon(2 * GiB)
    inflate_s = 0.491 / 7 * int(balloon.sum()) * by_hand.PAGE / GiB
    full = by_hand.full_ram_pages(g)
    send_s = (full * by_hand.page_s(COST, by_hand.FULL_PAGE_WIRE)
              + (by_hand.all_pages(g) - full) * by_hand.page_s(COST, by_hand.ZERO_PAGE_WIRE))
    return 1000 * (inflate_s + by_hand.setup_s(COST, g, syncs=3) + send_s)


def _ex08_mib():
    from test_lab_view import _raw_cells
    qm = next(v for k, v in _raw_cells().items() if k[:3] == ("2G", "hog", False))
    return statistics.median(q["ram"]["transferred"] for q in qm) / MiB


# check, answer by hand, near (accepted), slipped value with the unit it is in
NUMBER_CASES = {
    "ex01.1": (ex01.check_1, lambda: 6 * 1024 - 2 * 1024, None, (4096 * 1024, "KiB")),
    "ex01.2": (ex01.check_2, lambda: 0x200000 - (2 * GiB) // 4096, None, (0x180000 * 4096, "ram_addr")),
    "ex01.3": (ex01.check_3, lambda: _ex01_lost(), 1.015, None),
    "ex02.1": (ex02.check_bitmap_bytes, lambda: 4 * GiB // 4096 // 8, None, (4 * GiB // 4096, "bits")),
    "ex02.2": (ex02.check_polls, _ex02_polls, "+1", None),
    "ex03.2": (ex03.check_dirty_after_first_sync, _ex03_after_sync, None, ("x4096", "bytes")),
    "ex03.3": (ex03.check_bulk_visits, lambda: 524288 + by_hand.VGA_PAGES, None, ("x4096", "bytes")),
    "ex04.1": (ex04.check_skipped_fraction, _ex04_fraction, "+0.015", ("x100", "percentage")),
    "ex04.2": (ex04.check_original_mib_at_500ms, _ex04_mib, 1.05, ("x1024", "KiB")),
    "ex05.2": (ex05.check_hog_pv_64g, _ex05_pv_64g_s, 1.1, ("x1000", "milliseconds")),
    "ex05.3": (ex05.check_hog_original_100g, _ex05_orig_100g_ms, 1.1, ("/1000", "seconds")),
    "ex06.1": (ex06.check_wrong_order_loss, _ex06_lost, 1.1, ("x4096", "bytes")),
    "ex06.3": (ex06.check_slowest_walk, _ex06_walk_ns, 1.05, ("/1000", "microseconds")),
    "ex07.1": (ex07.check_hinted_blocks, _ex07_blocks, "+8", ("x1024", "pages")),
    "ex07.3": (ex07.check_balloon_sg, _ex07_balloon_ms, 1.08, ("/1000", "seconds")),
    "ex08.1": (ex08.check_hog_mib, _ex08_mib, 1.08, ("x1024", "KiB")),
}


def _ex01_lost():
    from kit.viz import memmap_view as mv
    return mv.outcome_counts(mv.shift_outcome(ex01.scenario_3_guest(), low_mem=4 * GiB))["used, skipped: LOST"]


def _apply(answer, how):
    if isinstance(how, float):
        return answer * how
    op, k = how[0], float(how[1:])
    return {"+": answer + k, "x": answer * k, "/": answer / k}[op]


@pytest.fixture(scope="module")
def answers():
    return {}


def _answer(key, answers):
    if key not in answers:
        answers[key] = NUMBER_CASES[key][1]()
    return answers[key]


def _whole(check, value):
    """The prediction as a student would type it: whole numbers where the answer is one."""
    integer = check in (ex01.check_1, ex01.check_2, ex01.check_3, ex02.check_bitmap_bytes, ex02.check_polls,
                        ex03.check_dirty_after_first_sync, ex03.check_bulk_visits, ex04.check_sync_rounds,
                        ex06.check_wrong_order_loss, ex07.check_hinted_blocks)
    return round(value) if integer else value


@pytest.mark.parametrize("key", sorted(NUMBER_CASES))
def test_number_checks_as_a_student_meets_them(key, answers):
    check, _, near, slip = NUMBER_CASES[key]
    answer = _answer(key, answers)
    right = _whole(check, answer)
    # right, as a number and as text
    assert check(right).correct, check(right)
    assert check(str(right)).correct
    assert check(f"{right:,}" if isinstance(right, int) else f"{right:.6g}").correct
    # near, within the stated tolerance
    if near is not None:
        v = check(_whole(check, _apply(answer, near)))
        assert v.correct, v
    # wrong: the direction and size of the miss, and no exact answer in the message
    high = check(_whole(check, answer * 3 + 7))
    assert not high.correct and not high.unreadable
    assert "too high" in high.message and "reveal(" in high.message
    low = check(_whole(check, answer * 0.6))
    assert not low.correct
    assert "too low" in low.message or "That" in low.message   # a known wrong road is named instead
    for text in (high.message, low.message):
        assert f"{right:,}" not in text and f"answer is {right}" not in text
    # a unit slip is named
    if slip is not None:
        how, unit = slip
        value = _whole(check, _apply(answer, how) if isinstance(how, str) else how)
        v = check(value)
        assert not v.correct
        assert unit in v.message or "ram_addr" in v.message, v
    # unreadable: one line, no traceback
    for junk in ("lots", "", [answer], {"a": 1}, "4,5"):
        v = check(junk)
        assert isinstance(v, Verdict) and v.unreadable and not v.correct
        assert "\n" not in v.message and "Traceback" not in v.message


@pytest.mark.parametrize("check, right, wrong", [
    (ex02.check_old_guest_return, -1, 0),
    (ex05.check_idle_40g, "CPU", "wire"),
    (ex07.check_faster_successor, "hint", "report"),
    (ex08.check_idle_time, "setup", "wire"),
])
def test_choice_checks(check, right, wrong):
    """02 ex 3: a guest without bit 3 gets -1 from the generic layer (the RFC's
    balloon_get_free_pages).  05 ex 1: an idle guest's zero pages cost 756 ns of CPU each
    but 9 bytes of wire.  07 ex 2: reporting still reads every page.  08 ex 3: see
    test_lab_view."""
    assert check(right).correct and check(str(right).upper() if isinstance(right, str) else str(right)).correct
    assert check(f"  {right}  ").correct
    v = check(wrong)
    assert not v.correct and not v.unreadable and len(v.message) > 40       # a reason, not a bare verdict
    bad = check("banana")
    assert bad.unreadable and "banana" in bad.message
    assert check(None).pending


def test_exact_small_counts_say_the_direction_only():
    """04 ex 3 (sync rounds) and 06 ex 2 (pages lost outside the lie, 0 in the right order):
    a small exact count would be given away by its size, so only the direction is said."""
    v = ex04.check_sync_rounds(100)
    assert not v.correct and "too high" in v.message and "%" not in v.message
    assert ex04.check_sync_rounds(4.5).unreadable            # a whole number of syncs
    assert ex06.check_lost_outside_lie(0).correct and ex06.check_lost_outside_lie("0").correct
    assert "too high" in ex06.check_lost_outside_lie(3).message
    assert ex03.check_dirty_after_setup_call(0).correct         # patch 3 starts the count at 0


def test_hex_only_where_the_question_allows_it():
    answer = 0x200000 - 0x80000
    assert ex01.check_2(hex(answer)).correct and ex01.check_2(hex(answer).upper().replace("X", "x")).correct
    assert ex01.check_2(f"{answer:#X}").correct
    v = ex01.check_1("0x1000")
    assert v.unreadable and "hex" in v.message
    assert ex01.check_2("0x12g").unreadable


def test_whole_numbers_refuse_fractions():
    v = ex01.check_2(786432.5)
    assert v.unreadable and "whole number" in v.message
    assert ex01.check_2(float(0x180000)).correct                # 1572864.0 is a whole number


def test_known_wrong_roads_are_named():
    """Each of these is a mistake the question invites, answered with its own reason."""
    assert "pc machine" in ex01.check_2(0x200000 - 0x40000).message          # pc's 1 GiB hole
    assert "frame number itself" in ex01.check_2(0x200000).message
    assert "pc (i440fx)" in ex01.check_1(3072).message
    assert "max_pfn" in ex02.check_bitmap_bytes(196608).message               # hole counted
    assert "vga.vram" in ex03.check_bulk_visits(524288).message
    assert "2 GiB guest" in ex04.check_skipped_fraction(0.879).message
    assert "no memory" in ex07.check_hinted_blocks(4096).message or "used no memory" in ex07.check_hinted_blocks(4096).message
    g = by_hand.seed_guest("16G", "idle")
    assert "2 MiB" in ex07.check_hinted_blocks(round(by_hand.free_frames(g) / 512)).message


def test_percent_and_units_in_text():
    assert "fraction" in ex04.check_skipped_fraction("95.8%").message
    assert ex04.check_skipped_fraction("95.8%").unreadable
    v = ex05.check_hog_pv_64g("2517 ms")
    assert v.unreadable and "ms" in v.message and "asks for s" in v.message
    assert ex05.check_hog_original_100g("1,800 ms").correct is not None
    assert ex01.check_1("4096 MiB").correct and ex01.check_1("4 096").correct and ex01.check_1("4_096").correct
    assert ex04.check_skipped_fraction("0,958").unreadable                     # a decimal comma


@pytest.mark.parametrize("mod", [ex01, ex02, ex03, ex04, ex05, ex06, ex07, ex08, ex09])
def test_reveal_and_question_take_bad_numbers_calmly(mod):
    n = len(mod.QUESTIONS)
    listed = ", ".join(str(i) for i in range(1, n)) + f" and {n}" if n > 1 else "1"
    word = "exercises" if n > 1 else "exercise"
    for bad in (n + 1, 0, "x", 2.5, None):
        text = repr(mod.reveal(bad))
        assert f"has {word} {listed}" in text and "\n" not in text
    assert mod.reveal(str(n)) == mod.reveal(n)
    for n in sorted(mod.QUESTIONS):
        q = str(mod.question(n))
        assert "?" in q and ("counts" in q.lower() or "exact" in q or "Answer" in q)
    assert "no exercise" in str(mod.question(7))


def test_question_states_the_tolerance():
    assert "within 10 %" in str(ex04.question(2)) and "MiB" in str(ex04.question(2))
    assert "within 0.02" in str(ex04.question(1)) and "fraction" in str(ex04.question(1))
    assert "exact" in str(ex01.question(1)) and "hex" in str(ex01.question(2))
    assert "One off counts" in str(ex02.question(2))
    assert "within 10 blocks" in str(ex07.question(1))
    assert "median" in str(ex08.question(2))
    assert "2 GiB" in str(ex04.question(2))                     # not exercise 1's 8 GiB


def test_a_right_answer_within_tolerance_says_so_and_a_wrong_one_does_not():
    right = ex04.check_original_mib_at_500ms(round(_ex04_mib() * 1.05, 1))
    assert right.correct and "within 10 % counts" in right.message
    wrong = ex04.check_original_mib_at_500ms(round(_ex04_mib() * 1.5, 1))
    assert "too high by about 50 %" in wrong.message


def test_read_number_directly():
    q = Question("?", unit="MiB")
    assert read_number("1.5e3", q) == (1500.0, None)
    assert read_number("  -12 ", q) == (-12, None)
    assert read_number(float("nan"), q)[0] is None
    assert read_number(True, q)[0] is None
    assert read_number("12 KiB", q)[1].startswith("'12 KiB' is in KiB")


def test_ex09_qemu_10_hog_time_from_the_rows():
    """The 4 GiB hog without hints on QEMU 10.0: the median of its recorded runs' total times,
    read straight from the row files here (not through kit.lab)."""
    import json
    import pathlib
    import statistics
    folder = pathlib.Path(__file__).resolve().parents[1] / "data" / "lab" / "curves-qemu10.0"
    times = [r["derived"]["total-time-ms"] for r in map(json.loads, (p.read_text() for p in folder.glob("*.json")))
             if r["status"] == "ok" and r["config"]["ram"] == "4G" and r["config"]["workload"] == "hog"
             and not r["config"]["free_page_hint"]]
    assert len(times) == 3
    right = statistics.median(times)
    assert ex09.check_total_ms_10(round(right)).correct
    assert ex09.check_total_ms_10(str(round(right * 1.05))).correct           # within 10 %
    v = ex09.check_total_ms_10(12140)                                        # 7.2's time
    assert not v.correct and "7.2" in v.message
    assert not ex09.check_total_ms_10(right * 1.3).correct
    assert ex09.check_total_ms_10("nine seconds").unreadable
