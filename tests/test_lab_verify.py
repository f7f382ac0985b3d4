"""kit.lab.verify: the host side of `kitmem stress` (issue 7).

Synthetic memory images are built here by replaying the guest's schedule in
numpy (what files/kitmem.c stress_main does, pass by pass), then damaged in one
way at a time.  One real migration, marked ``lab``, runs QEMU.
"""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from kit.lab import verify as V

U64 = np.uint64
KITMEM_C = Path(V.__file__).with_name("files") / "kitmem.c"


def pct_thr(p):
    return p * 65536 // 100


class Image:
    """A guest memory image with kitmem's pages, replayed in numpy.

    Slot i lives at physical page ``phys[i]`` (a fixed random placement); freed
    slots keep their page with a DEAD signature, as in the guest right after
    madvise; ``spare`` pages are free memory nobody stamped."""

    def __init__(self, n=3000, seg=64, grow=5, shrink=60, churn=3, passes=3, cursor=1234,
                 spare=500, nonce=0x1234_5678_9ABC_DEF1, seed=7, base=0):
        rng = np.random.default_rng(seed)
        self.n, self.nonce, self.base = n, nonce, base
        self.ctrl = {"nonce": nonce, "seg": seg, "grow-thr": pct_thr(grow),
                     "shrink-thr": pct_thr(shrink), "churn-thr": pct_thr(churn)}
        total = n + spare + 1
        order = rng.permutation(total)
        self.phys, self.ctrl_page, self.spare = order[:n], int(order[n]), order[n + 1:]
        self.words = np.zeros((total, V.WORDS), dtype=U64)
        w = self.words
        seqs = np.zeros(n, dtype=U64)
        seq = 0
        slots = np.arange(n, dtype=U64)
        for g in range(passes + 1):
            upto = n if g < passes else cursor
            was = ~V.free_in_pass(self.ctrl, slots, g - 1)[:upto]
            now = ~V.free_in_pass(self.ctrl, slots, g)[:upto]
            keep = np.flatnonzero(was & now)
            w[self.phys[keep], V.SLOT_GEN] += U64(1)
            freed = np.flatnonzero(was & ~now)
            w[self.phys[freed], V.SLOT_SIG] = U64(V.SIG_DEAD)
            new = np.flatnonzero(~was & now)
            new_seq = np.arange(seq + 1, seq + 1 + len(new), dtype=U64)
            seq += len(new)
            seqs[new] = new_seq
            p = self.phys[new]
            w[p] = 0
            slot_n = new.astype(U64) | (U64(n) << U64(32))
            chk = V.page_check(U64(nonce), slot_n, new_seq, U64(g))
            w[p, V.SLOT_SIG] = U64(V.SIG_LIVE)
            w[p, V.SLOT_NONCE] = U64(nonce)
            w[p, V.SLOT_SLOT_N] = slot_n
            w[p, V.SLOT_SEQ] = new_seq
            w[p, V.SLOT_ALLOC_GEN] = U64(g)
            w[p, V.SLOT_GEN] = U64(g)
            w[p, V.SLOT_CHECK] = chk
            w[p, V.TAIL_WORD] = ~chk
        c = w[self.ctrl_page]
        c[V.CTRL_SIG] = U64(V.SIG_CTRL)
        c[V.CTRL_NONCE] = U64(nonce)
        c[V.CTRL_NSLOTS_VERSION] = U64(n | V.LAYOUT_VERSION << 32)
        c[V.CTRL_SEG] = U64(seg)
        c[V.CTRL_THR] = U64(pct_thr(grow) | pct_thr(shrink) << 20 | pct_thr(churn) << 40)
        c[V.CTRL_CHECK] = U64(V.ctrl_check(c))
        c[V.CTRL_POS] = U64(passes * n + cursor)
        c[V.CTRL_SEQ] = U64(seq)
        self.g, self.cursor = passes, cursor

    def live_slots(self):
        """Slots whose page says LIVE now (in slot order)."""
        sig = self.words[self.phys, V.SLOT_SIG]
        return np.flatnonzero(sig == U64(V.SIG_LIVE))

    def mem(self):
        return self.words.view(np.uint8).reshape(-1)

    def check(self):
        return V.check_memory(self.mem(), self.base)

    def a_live_slot(self, after_cursor=False):
        live = self.live_slots()
        live = live[live > self.cursor] if after_cursor else live[live < self.cursor]
        return int(live[len(live) // 2])

    def gpa(self, slot):
        return hex(self.base + int(self.phys[slot]) * V.PAGE)


@pytest.fixture
def img():
    return Image()


def kinds(out):
    return {(w["slot"], w["kind"]) for w in out["where"]}


def test_intact_image_has_no_lost_page_and_one_edge(img):
    out = img.check()
    assert out["lost-pages"] == 0
    assert out["live-found"] == out["live-expected"] == len(img.live_slots()) > 1000
    assert out["generation"] == 3 and out["cursor"] == 1234
    assert out["edges"] == out["edges-expected"] == 1 and out["edge-at-cursor"]
    assert out["edge-slots"][0] >= 1234         # the first slot of generation 2 after the cursor
    assert out["dead-markers"] > 0
    assert out["where"] == [] and out["duplicate"] == out["stale"] == 0
    assert out["control"]["gpa"] == hex(img.ctrl_page * V.PAGE)


def test_cursor_at_zero_has_no_edge():
    out = Image(cursor=0).check()
    assert out["lost-pages"] == 0 and out["edges"] == out["edges-expected"] == 0
    assert out["edge-at-cursor"]


def test_a_zeroed_page_is_missing(img):
    s = img.a_live_slot()
    img.words[img.phys[s]] = 0
    out = img.check()
    assert out["lost-pages"] == 1 and out["missing"] == 1
    assert kinds(out) == {(s, "missing")}
    assert out["live-found"] == out["live-expected"] - 1


def test_a_page_one_generation_behind_is_stale(img):
    s = img.a_live_slot()                       # before the cursor: should be generation 3
    img.words[img.phys[s], V.SLOT_GEN] -= U64(1)
    out = img.check()
    assert out["lost-pages"] == 1 and out["stale"] == 1
    (w,) = out["where"]
    assert (w["slot"], w["kind"], w["want-gen"]) == (s, "stale", 3)
    assert w["copies"][0]["gen"] == 2 and w["copies"][0]["gpa"] == img.gpa(s)
    assert out["edges"] == 3                    # 3 3 [2] 3 3 | 2 2: out of line


def test_a_page_ahead_of_the_cursor_is_stale_too(img):
    s = img.a_live_slot(after_cursor=True)      # should still be generation 2
    img.words[img.phys[s], V.SLOT_GEN] += U64(1)
    out = img.check()
    assert out["lost-pages"] == 1 and kinds(out) == {(s, "stale")}


def test_an_old_incarnation_is_stale(img):
    # The page of an earlier allocation of the slot: right generation, wrong alloc pass.
    s = img.a_live_slot()
    w = img.words[img.phys[s]]
    w[V.SLOT_ALLOC_GEN] = U64(int(w[V.SLOT_ALLOC_GEN]) + 1)
    chk = U64(V.page_check(U64(img.nonce), w[V.SLOT_SLOT_N], w[V.SLOT_SEQ], w[V.SLOT_ALLOC_GEN]))
    w[V.SLOT_CHECK], w[V.TAIL_WORD] = chk, ~chk
    out = img.check()
    assert out["lost-pages"] == 1 and kinds(out) == {(s, "stale")}


def test_a_torn_page_is_corrupt(img):
    s = img.a_live_slot()
    img.words[img.phys[s], V.TAIL_WORD] ^= U64(1)   # the end of the page is from another time
    out = img.check()
    assert out["lost-pages"] == 1 and out["corrupt"] == 1 and kinds(out) == {(s, "corrupt")}
    assert out["torn-copies"] == 1


def test_two_live_copies_are_a_duplicate(img):
    s = img.a_live_slot()
    img.words[img.spare[0]] = img.words[img.phys[s]]
    out = img.check()
    assert out["lost-pages"] == 1 and out["duplicate"] == 1
    (w,) = out["where"]
    assert w["kind"] == "duplicate" and {c["gpa"] for c in w["copies"]} == {
        img.gpa(s), hex(int(img.spare[0]) * V.PAGE)}


def test_a_dead_copy_in_free_memory_is_not_lost(img):
    s = img.a_live_slot()
    before = img.check()["dead-markers"]
    img.words[img.spare[0]] = img.words[img.phys[s]]
    img.words[img.spare[0], V.SLOT_SIG] = U64(V.SIG_DEAD)
    out = img.check()
    assert out["lost-pages"] == 0 and out["dead-markers"] == before + 1


def test_an_older_copy_beside_the_good_one_is_not_lost(img):
    s = img.a_live_slot()
    img.words[img.spare[0]] = img.words[img.phys[s]]
    img.words[img.spare[0], V.SLOT_GEN] -= U64(1)     # e.g. left behind by a page move
    out = img.check()
    assert out["lost-pages"] == 0 and out["stale-copies"] == 1


def test_a_live_copy_of_a_free_slot_is_an_orphan_not_a_loss(img):
    sig = img.words[img.phys, V.SLOT_SIG]
    s = int(np.flatnonzero(sig == U64(V.SIG_DEAD))[0])
    img.words[img.phys[s], V.SLOT_SIG] = U64(V.SIG_LIVE)   # its dead marker never arrived
    out = img.check()
    assert out["lost-pages"] == 0 and out["orphan-live-copies"] == 1


def test_pages_the_guest_found_bad_and_freed_still_count(img):
    img.words[img.ctrl_page, V.CTRL_BAD_FREED] = U64(2)
    img.words[img.ctrl_page, V.CTRL_BAD] = U64(5)
    out = img.check()
    assert out["lost-pages"] == 2 and out["lost-held"] == 0
    assert out["guest-bad-checks"] == 5


def test_a_stale_control_page_shows_as_lost_pages(img):
    # What QEMU 7.2's TCG bug did in the lab: the control page arrived old.
    img.words[img.ctrl_page, V.CTRL_POS] -= U64(400)
    out = img.check()
    assert out["lost-pages"] > 50 and out["cursor"] == 834
    assert out["edges"] == 1 and not out["edge-at-cursor"]   # the pages say 1234


def test_half_done_step_at_the_cursor_is_accepted():
    # The slot at the cursor may already be in pass G's state.
    ref = Image()
    g, c = ref.g, ref.cursor
    nxt = Image(cursor=c + 1)                    # one more step done...
    nxt.words[nxt.ctrl_page, V.CTRL_POS] = U64(g * nxt.n + c)   # ...but not yet published
    out = nxt.check()
    assert out["lost-pages"] == 0 and out["cursor"] == c and out["edge-at-cursor"]


def test_no_control_page_gives_no_verdict(img):
    img.words[img.ctrl_page] = 0
    out = img.check()
    assert out["lost-pages"] is None and "control page" in out["error"]


def test_other_nonce_is_ignored(img):
    other = Image(nonce=0xABC, n=100, spare=10, seed=1)
    mem = np.concatenate([img.mem(), other.words[other.phys].view(np.uint8).reshape(-1)])
    out = V.check_memory(mem)
    assert out["lost-pages"] == 0


def test_ram_above_4g_keeps_its_addresses():
    hi = Image(base=1 << 32)
    s = hi.a_live_slot()
    hi.words[hi.phys[s], V.SLOT_GEN] += U64(5)
    low = np.zeros(16 * V.PAGE, dtype=np.uint8)
    out = V.check_memory([low, hi.mem()], [0, 1 << 32])
    assert out["lost-pages"] == 1
    assert out["where"][0]["copies"][0]["gpa"] == hi.gpa(s)
    assert int(out["where"][0]["copies"][0]["gpa"], 16) >= 1 << 32


def test_memory_image_must_be_whole_pages():
    with pytest.raises(ValueError, match="whole number"):
        V.check_memory(np.zeros(4097, dtype=np.uint8))


def test_ram_regions_follow_the_pc_memory_map():
    assert V.ram_regions(1024) == [(0, 1 << 30)]
    assert V.ram_regions(4096) == [(0, 3 << 30), (1 << 32, 1 << 30)]


def test_layout_matches_kitmem_c():
    """The header layout lives in kitmem.c; verify.py mirrors it."""
    src = KITMEM_C.read_text()
    for name in ("SIG_LIVE", "SIG_DEAD", "SIG_CTRL"):
        m = re.search(rf"#define {name} (0x[0-9a-f]+)ULL", src)
        assert m and int(m.group(1), 16) == getattr(V, name), name
    assert re.search(rf"#define LAYOUT_VERSION {V.LAYOUT_VERSION}\b", src)

    def fields(struct):
        body = re.search(rf"struct {struct} {{(.*?)}};", src, re.S).group(1)
        return re.findall(r"uint64_t (\w+);", body)

    assert fields("slot_hdr")[:7] == ["sig", "nonce", "slot_n", "seq", "alloc_gen", "gen", "check"]
    assert [V.SLOT_SIG, V.SLOT_NONCE, V.SLOT_SLOT_N, V.SLOT_SEQ, V.SLOT_ALLOC_GEN, V.SLOT_GEN,
            V.SLOT_CHECK] == list(range(7))
    assert fields("ctrl_page") == ["sig", "nonce", "nslots_version", "seg", "thr", "check", "pos",
                                   "seq", "bad", "bad_freed", "frees", "base"]
    assert V.CTRL_WORDS == 12 and V.CTRL_BASE == 11


def test_mix64_matches_splitmix64():
    # splitmix64 seeded with 0: the first output is mix64(0) (published value)
    assert V.mix64(0) == 0xE220A8397B1DCDAF
    arr = V.mix64(np.array([0, 1], dtype=U64))
    assert int(arr[0]) == 0xE220A8397B1DCDAF and int(arr[1]) == V.mix64(1)


# ---------------------------------------------------------------- verify_destination

class FakeQMP:
    def __init__(self, mem, fail_at=None):
        self.mem, self.calls, self.fail_at = mem, [], fail_at

    def execute(self, cmd, **kw):
        self.calls.append(cmd)
        if cmd == "pmemsave":
            if self.fail_at is not None and kw["val"] >= self.fail_at:
                Path(kw["filename"]).write_bytes(b"partial")
                raise RuntimeError("QEMU refused pmemsave")
            data = np.zeros(kw["size"], dtype=np.uint8)
            chunk = self.mem[kw["val"]:kw["val"] + kw["size"]]
            data[:len(chunk)] = chunk
            data.tofile(kw["filename"])
        return {}


class FakeQemu:
    def __init__(self, mem, **kw):
        self.qmp = FakeQMP(mem, **kw)


def test_verify_destination_dumps_checks_and_removes_the_dump(tmp_path, monkeypatch):
    img = Image()
    monkeypatch.setattr(V, "DUMP_CHUNK", 1 << 20)           # several chunks
    mem = np.zeros(128 << 20, dtype=np.uint8)
    m = img.mem()
    mem[:len(m)] = m
    dst = FakeQemu(mem)
    out = V.verify_destination(dst, 128, tmp_path)
    assert dst.qmp.calls[0] == "stop" and dst.qmp.calls.count("pmemsave") == 128
    assert out["lost-pages"] == 0 and out["pages-scanned"] == 32768
    assert list(tmp_path.iterdir()) == []


def test_verify_destination_removes_the_dump_on_error(tmp_path, monkeypatch):
    monkeypatch.setattr(V, "DUMP_CHUNK", 16 << 20)
    dst = FakeQemu(np.zeros(128 << 20, dtype=np.uint8), fail_at=64 << 20)
    with pytest.raises(RuntimeError):
        V.verify_destination(dst, 128, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_verify_destination_without_stress_raises(tmp_path):
    from kit.lab.errors import LabError
    with pytest.raises(LabError, match="control page"):
        V.verify_destination(FakeQemu(np.zeros(128 << 20, dtype=np.uint8)), 128, tmp_path)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- the verdict on differing pages

def _pair(img):
    """The paused source (``img``) and a destination that starts as its exact copy, as 128 MiB dumps."""
    src = np.zeros(128 << 20, dtype=np.uint8)
    m = img.mem()
    src[:len(m)] = m
    return src, src.copy()


def _page(mem, page):
    return mem[page * V.PAGE:(page + 1) * V.PAGE].view("<u8")


def test_differing_pages_are_classed_by_what_the_guest_holds(tmp_path, monkeypatch):
    """Five crafted differences, each class derived here by hand from how the page was made."""
    img = Image()
    monkeypatch.setattr(V, "DUMP_CHUNK", 1 << 20)
    src, dst = _pair(img)
    sig = img.words[img.phys, V.SLOT_SIG]
    dead_slots = np.flatnonzero(sig == U64(V.SIG_DEAD))
    held, ctrl = img.a_live_slot(), img.ctrl_page
    freed, reused = int(dead_slots[0]), int(dead_slots[1])
    spare = int(img.spare[0])
    # 1. a slot the guest holds: the destination has it one generation behind -> held live
    _page(dst, img.phys[held])[V.SLOT_GEN] -= U64(1)
    # 2. the control page: the destination has an older position -> held live
    _page(dst, ctrl)[V.CTRL_POS] -= U64(1)
    # 3. a slot freed and untouched since: the destination still has it LIVE (the DEAD marker was
    #    skipped as a hinted free page) -> free, harmless
    _page(dst, img.phys[freed])[V.SLOT_SIG] = U64(V.SIG_LIVE)
    # 4. a freed slot's page that someone wrote since (a word in the middle): not the page kitmem
    #    left, so nobody can say who holds it -> unplaced
    _page(src, img.phys[reused])[100] = U64(0xABCDEF)
    # 5. a page kitmem never stamped, non-zero on the source, zero on the destination (never
    #    sent) -> unplaced, zero on the destination
    _page(src, spare)[:] = U64(0x1111)
    out = {hint: V.diff_source_destination(FakeQemu(src), FakeQemu(dst), 128, tmp_path, hint=hint)
           for hint in (False, True)}
    for hint, d in out.items():
        assert d["pages-differ"] == 5 and d["differ-dst-zero"] == 1
        assert d["classes"] == {"held-live": 2, "free": 1, "unplaced": 2, "unplaced-dst-zero": 1}
        gpa = lambda page: hex(int(page) * V.PAGE)
        assert sorted(d["where"]["held-live"]) == sorted([gpa(img.phys[held]), gpa(ctrl)])
        assert d["where"]["free"] == [gpa(img.phys[freed])]
        assert sorted(d["where"]["unplaced"]) == sorted([gpa(img.phys[reused]), gpa(spare)])
        assert d["harmless"] == 1
    # hints on: only what the guest holds is a lost write; off: every difference is
    assert out[True]["lost-writes"] == 2 and out[True]["unplaced-not-counted"] == 2
    assert out[False]["lost-writes"] == 5 - 1 and out[False]["unplaced-not-counted"] == 0
    assert list(tmp_path.iterdir()) == []


def test_identical_dumps_have_no_difference_of_any_class(tmp_path):
    src, dst = _pair(Image())
    d = V.diff_source_destination(FakeQemu(src), FakeQemu(dst), 128, tmp_path, hint=True)
    assert d["pages-differ"] == 0 and d["lost-writes"] == 0 and d["harmless"] == 0
    assert d["classes"] == {"held-live": 0, "free": 0, "unplaced": 0, "unplaced-dst-zero": 0}
    assert d["source-held-pages"] == len(Image().live_slots()) + 1      # its slots and the control page


def test_the_dead_slot_image_is_the_whole_page():
    img = Image()
    sig = img.words[img.phys, V.SLOT_SIG]
    s = int(np.flatnonzero(sig == U64(V.SIG_DEAD))[0])
    page = img.words[img.phys[s]].copy()
    rows = np.stack([page] * 5)
    rows[1, 7] = U64(1)                         # the header's unused word
    rows[2, V.TAIL_WORD] ^= U64(1)              # a torn tail
    rows[3, V.SLOT_NONCE] ^= U64(1)             # another boot's page
    rows[4, V.SLOT_SIG] = U64(V.SIG_LIVE)       # not freed
    assert V.dead_slot_image(rows, img.nonce, img.n).tolist() == [True, False, False, False, False]


def test_without_a_control_page_nothing_is_placed():
    d = V.classify_differences(np.array([0x1000, 0x2000], dtype=U64), None, [True, False], hint=True)
    assert d["classes"] == {"held-live": 0, "free": 0, "unplaced": 2}


# ---------------------------------------------------------------- one real migration

@pytest.mark.lab
@pytest.mark.slow
def test_real_stress_migration_with_hinting_loses_no_page(tmp_path, monkeypatch):
    if not shutil.which("qemu-system-x86_64"):
        pytest.skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
    from kit.lab.experiment import LabConfig, run_experiment
    from kit.lab.errors import LabMissingError
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)          # re-read TMPDIR
    cfg = LabConfig(ram="512M", workload="stress", free_page_hint=True, verify=True,
                    stress_args="pass_ms=2000")
    try:
        row = run_experiment(cfg)
    except LabMissingError as e:
        pytest.skip(str(e))
    assert row["status"] == "ok", (row["error"], row["destination"].get("console-tail"))
    v = row["verify"]
    assert v["lost-pages"] == 0 and v["live-found"] == v["live-expected"] > 10000
    assert v["edges"] <= 1
    # no page the guest holds differs from the paused source (hints on: free pages QEMU skipped,
    # and pages the dumps cannot place, may; they are counted apart)
    assert row["verdict"]["lost-writes"] == 0 and row["src-dst-diff"]["classes"]["held-live"] == 0, \
        row["src-dst-diff"]
    d = row["destination"]
    assert d["status"] == "running" and d["alive"] and not d["panic"] and d["heartbeat"] >= 0
    assert list(tmp_path.iterdir()) == []                     # no dump, no temp folder left
