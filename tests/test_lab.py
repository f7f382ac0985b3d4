"""The real-QEMU lab: its parts without QEMU, then real TCG migrations (marked lab).

The real tests skip, saying why, when qemu-system-x86_64 is missing; dev.py
test apt-installs it (as root), so CI runs them.
"""
import io
import json
import shutil
import socket
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from kit.cli import main
from kit.errors import KitError, UnknownNameError
from kit.lab import check as lab_check
from kit.lab.errors import LabError, LabMissingError, QMPError
from kit.lab.experiment import (LabConfig, derived, parse_bandwidth, run_experiment,
                                save_row, summary_line)
from kit.lab.image import GuestImage, module_order, write_cpio
from kit.lab.qemu import command_line
from kit.lab.qmp import QMP

HAVE_QEMU = shutil.which("qemu-system-x86_64") is not None
needs_qemu = pytest.mark.skipif(not HAVE_QEMU, reason="qemu-system-x86_64 is not installed "
                                "(apt-get install --no-install-recommends qemu-system-x86)")


# --- the initramfs writer ---------------------------------------------------

def read_cpio(data: bytes):
    """A reader of newc cpio, written from the format's description, to check the writer."""
    out, pos = {}, 0
    while True:
        assert data[pos:pos + 6] == b"070701", f"bad magic at {pos}"
        f = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = f[1], f[6], f[9], f[10], f[11]
        name = data[pos + 110: pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        body = data[pos: pos + size]
        pos += size + (-size % 4)
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, body, (rmaj, rmin))


def test_cpio_round_trip(tmp_path):
    path = tmp_path / "x.cpio"
    write_cpio(path, [("dev", "dir", None), ("dev/console", "char", (5, 1)),
                      ("init", "file", (b"#!/bin/sh\necho hi\n", 0o755)),
                      ("a/odd", "file", (b"123", 0o644))])
    got = read_cpio(path.read_bytes())
    assert set(got) == {"dev", "dev/console", "init", "a/odd"}
    assert stat.S_ISDIR(got["dev"][0])
    assert stat.S_ISCHR(got["dev/console"][0]) and got["dev/console"][2] == (5, 1)
    assert got["init"][1] == b"#!/bin/sh\necho hi\n" and got["init"][0] & 0o777 == 0o755
    assert got["a/odd"][1] == b"123"
    assert len(path.read_bytes()) % 4 == 0


def _ko(path: Path, depends: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF junk\x00license=GPL\x00depends=" + depends.encode() + b"\x00name=x\x00")


def test_module_order_puts_dependencies_first(tmp_path):
    _ko(tmp_path / "a" / "virtio_balloon.ko", "virtio,virtio_ring")
    _ko(tmp_path / "a" / "virtio.ko", "virtio_ring")
    _ko(tmp_path / "b" / "virtio_ring.ko", "")
    _ko(tmp_path / "b" / "virtio_pci.ko", "virtio,virtio_ring")
    names = [n for n, _ in module_order(tmp_path)]
    assert sorted(names) == ["virtio", "virtio_balloon", "virtio_pci", "virtio_ring"]
    for mod, deps in (("virtio", ["virtio_ring"]), ("virtio_balloon", ["virtio", "virtio_ring"]),
                      ("virtio_pci", ["virtio", "virtio_ring"])):
        assert all(names.index(d) < names.index(mod) for d in deps)


def test_module_order_errors(tmp_path):
    _ko(tmp_path / "virtio_pci.ko", "virtio")
    _ko(tmp_path / "virtio_balloon.ko", "")
    with pytest.raises(LabError, match="virtio.ko not found"):
        module_order(tmp_path)
    _ko(tmp_path / "virtio.ko", "virtio_pci")
    with pytest.raises(LabError, match="loop"):
        module_order(tmp_path)


# --- configuration, command lines, rows -------------------------------------

@pytest.mark.parametrize("kw, err, text", [
    (dict(ram="64M"), KitError, "at least 128M"),
    (dict(ram="1000K"), KitError, "whole number of MiB"),
    (dict(ram="9G"), KitError, "up to 8G"),
    (dict(poll_ms=100), KitError, "20 to 50 ms"),
    (dict(ram="lots"), KitError, "cannot read"),
    (dict(workload="compile"), UnknownNameError, "idle, hog, dirtying, stress"),
    (dict(machine="isapc"), UnknownNameError, "pc or q35"),
    (dict(init_on_alloc=2), KitError, "0 or 1"),
    (dict(bandwidth=0), KitError, "positive"),
    (dict(verify=True), KitError, "--workload stress"),
])
def test_config_errors_say_what_to_fix(kw, err, text):
    with pytest.raises(err, match=text):
        LabConfig(**kw).check()


def test_config_append_records_the_guest_settings():
    c = LabConfig(ram="1G", workload="stress", init_on_alloc=1, stress_args="a=1,b=2")
    assert c.check() == 1024
    args = c.append().split()
    assert "init_on_alloc=1" in args and "kit.workload=stress" in args and "kit.stress=a=1,b=2" in args
    assert "console=ttyS0" in args
    assert "kit.stress" not in LabConfig(workload="hog", stress_args="x").append()


def test_parse_bandwidth():
    assert parse_bandwidth("none") is None and parse_bandwidth(None) is None
    assert parse_bandwidth("100M") == 100 << 20
    with pytest.raises(KitError):
        parse_bandwidth("fast")


def test_command_lines_differ_only_where_they_should(tmp_path):
    kw = dict(ram_mib=1024, kernel="vmlinuz", initrd="initrd", append="console=ttyS0",
              machine="pc", qmp=tmp_path / "q", console=tmp_path / "c")
    off = command_line("qemu", free_page_hint=False, **kw)
    on = command_line("qemu", free_page_hint=True, **kw)
    dst = command_line("qemu", free_page_hint=True, incoming=True, **kw)
    assert [a for a in on if a not in off] == [
        "virtio-balloon-pci,id=balloon0,iothread=io0,free-page-hint=on"]
    assert dst[:len(on)] == on and dst[len(on):] == ["-incoming", "defer"]
    for cmd in (on, off):
        assert "iothread,id=io0" in cmd and cmd[cmd.index("-accel") + 1] == "tcg"
        assert not any("0.0.0.0" in a for a in cmd)


def test_tcg_dirty_sync_workaround_and_paused_destination(tmp_path):
    from kit.lab.qemu import needs_tcg_dirty_sync_workaround, version_tuple
    assert version_tuple("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7)") == (7, 2, 22)
    assert version_tuple("QEMU emulator version 9.0.0") == (9, 0, 0) and version_tuple("what") == ()
    assert needs_tcg_dirty_sync_workaround((7, 2, 22)) and needs_tcg_dirty_sync_workaround((8, 2, 2))
    assert not needs_tcg_dirty_sync_workaround((9, 0, 0)) and not needs_tcg_dirty_sync_workaround(())
    kw = dict(ram_mib=1024, kernel="k", initrd="i", append="a", machine="pc", free_page_hint=True,
              qmp=tmp_path / "q", console=tmp_path / "c")
    plain, fixed = command_line("qemu", **kw), command_line("qemu", workaround=True, **kw)
    assert plain[plain.index("-m") + 1] == "1024M"
    assert fixed[fixed.index("-m") + 1] == "1048568K"        # not a whole number of 256 KiB
    assert (1048568 * 1024) % (256 * 1024) != 0
    dst = command_line("qemu", incoming=True, paused=True, **kw)
    assert dst[-3:] == ["-incoming", "defer", "-S"]


def test_dest_prealloc_adds_mem_prealloc_to_the_destination_only(tmp_path):
    from kit.cli import _lab_config, build_parser
    kw = dict(ram_mib=1024, kernel="k", initrd="i", append="a", machine="pc", free_page_hint=False,
              qmp=tmp_path / "q", console=tmp_path / "c")
    plain, pre = command_line("qemu", incoming=True, **kw), command_line("qemu", incoming=True, prealloc=True, **kw)
    assert [a for a in pre if a not in plain] == ["-mem-prealloc"] and "-mem-prealloc" not in plain
    a = build_parser().parse_args(["lab", "run", "--ram", "2G", "--dest-prealloc"])
    assert _lab_config(a)["dest_prealloc"] is True
    assert _lab_config(build_parser().parse_args(["lab", "run"]))["dest_prealloc"] is False


QM = {"status": "completed", "total-time": 500, "downtime": 100, "setup-time": 3,
      "ram": {"page-size": 4096, "duplicate": 1000, "normal": 3000, "transferred": 13_000_000,
              "total": 1 << 30}}


def test_derived_counts_pages_sent_and_skipped():
    d = derived(QM, 1024)
    assert d["guest-pages"] == 262144 and d["pages-sent"] == 4000
    assert d["pages-skipped"] == 262144 - 4000
    assert d["transferred-kb"] == 13_000_000 >> 10 and d["total-time-ms"] == 500
    # a guest that re-sent pages: sent can exceed the guest's pages; skipped never negative
    big = dict(QM, ram=dict(QM["ram"], normal=300000))
    assert derived(big, 1024)["pages-skipped"] == 0
    assert derived(QM, 1024, ram_kib=1048568)["guest-pages"] == 262142   # the workaround's 8 KiB


def test_save_row_and_summary(tmp_path):
    row = {"config": {"ram": "1G", "workload": "hog", "free_page_hint": True, "init_on_alloc": 0},
           "started": "2026-11-26T03:50:12+00:00", "status": "ok", "stage": "done",
           "derived": derived(QM, 1024)}
    p = save_row(row, tmp_path / "out")
    assert p.name == "20261126T035012-1G-hog-hint-on-ioa0.json"
    assert json.loads(p.read_text())["derived"]["pages-sent"] == 4000
    assert "500 ms" in summary_line(row) and "healthy" in summary_line(row)
    failed = dict(row, status="failed", stage="boot", error="source guest printed no KIT-READY")
    assert "FAILED at boot: source guest printed no KIT-READY" in summary_line(failed)


# --- QMP, against a fake QEMU on a unix socket -------------------------------

def _fake_qmp(path, replies):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)
    seen = []

    def serve():
        conn, _ = srv.accept()
        f = conn.makefile("rwb")
        f.write(b'{"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 22}, '
                b'"package": "fake"}, "capabilities": []}}\n')
        f.flush()
        for reply in replies:
            line = f.readline()
            if not line:
                break
            seen.append(json.loads(line))
            f.write(reply)
            f.flush()
        conn.close()
        srv.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t, seen


def test_qmp_client_handles_events_and_errors(tmp_path):
    sock = tmp_path / "qmp.sock"
    t, seen = _fake_qmp(sock, [
        b'{"return": {}}\n',
        b'{"event": "MIGRATION", "data": {"status": "setup"}}\n{"return": {"status": "active"}}\n',
        b'{"error": {"class": "GenericError", "desc": "no such thing"}}\n'])
    q = QMP(sock, timeout=5)
    assert q.version["qemu"]["major"] == 7
    assert q.execute("query-migrate") == {"status": "active"}
    assert q.events[0]["event"] == "MIGRATION"
    with pytest.raises(QMPError, match="refused frobnicate: no such thing"):
        q.execute("frobnicate", x=1)
    assert seen[0] == {"execute": "qmp_capabilities"}
    assert seen[2] == {"execute": "frobnicate", "arguments": {"x": 1}}
    with pytest.raises(QMPError, match="closed"):
        q.execute("query-status")
    q.close()
    t.join(5)


def test_qmp_gives_up_when_qemu_is_gone(tmp_path):
    with pytest.raises(QMPError, match="exited"):
        QMP(tmp_path / "never.sock", timeout=5, alive=lambda: False)


# --- without a usable QEMU ---------------------------------------------------

def test_missing_qemu_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("KIT_LAB_QEMU", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    items = {i.name: i for i in lab_check.check()}
    assert not items["qemu"].ok and "apt-get install" in items["qemu"].fix
    text, ok = lab_check.report(items.values())
    assert not ok and "fix: apt-get install --no-install-recommends qemu-system-x86" in text
    with pytest.raises(LabMissingError, match="apt-get install"):
        run_experiment(LabConfig())


def test_cli_lab_errors_are_one_line(capsys):
    for argv in (["lab", "run", "--ram", "9G"], ["lab", "run", "--free-page-hint", "yes"],
                 ["lab", "matrix", "--reps", "0"], ["lab", "run", "--downtime-limit", "0"],
                 ["lab", "frob"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: "), (argv, err)


def test_a_qemu_that_dies_is_an_honest_failed_row(monkeypatch, tmp_path):
    """A QEMU that exits at once: the row says where and why; nothing is left behind."""
    fake = tmp_path / "bin" / "qemu-system-x86_64"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'qemu: could not load kernel' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("KIT_LAB_QEMU", str(fake))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    guest = GuestImage(kernel=tmp_path / "k", initrd=tmp_path / "i", kernel_package="k 1",
                       busybox_package="b 1", modules=(), compiler="cc")
    row = run_experiment(LabConfig(ram="256M"), guest=guest)
    assert row["status"] == "failed" and row["stage"] == "boot"
    assert "source QEMU exited (1): qemu: could not load kernel" in row["error"]
    assert list(tmp.iterdir()) == []


# --- real QEMU ---------------------------------------------------------------

def _no_lab_qemus():
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if "qemu-system" in ln and "kit-lab-" in ln]


@pytest.fixture
def clean_tmp(monkeypatch, tmp_path):
    import tempfile
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    yield tmp
    assert list(tmp.iterdir()) == [], "the lab left files in its temp folder"
    assert _no_lab_qemus() == [], "the lab left QEMUs running"


@pytest.mark.lab
@pytest.mark.slow
@needs_qemu
def test_real_qemu_hint_skips_the_hogs_free_pages(clean_tmp):
    """1 GiB guest, idle and hog, free-page-hint off and on: every destination is
    healthy, and with the hint the hog's freed (non-zero) pages are not sent."""
    rows = {}
    for wl in ("idle", "hog"):
        # hint on first: right after the hog without hints, whose two QEMUs just freed 2 GiB, a
        # VM host that reports free pages hands the destination memory that is cheap to touch,
        # and the migration thread can outrun the hints (data/lab/freed-memory, README)
        for hint in (True, False):
            r = run_experiment(LabConfig(ram="1G", workload=wl, free_page_hint=hint))
            assert r["status"] == "ok", (wl, hint, r["error"], r.get("destination"))
            assert r["destination"]["status"] == "running" and not r["destination"]["panic"]
            assert r["destination"]["heartbeat-after-s"] < 20
            assert r["query-migrate"]["status"] == "completed"
            assert r["qemu"]["version"]["major"] >= 4
            wa = r["qemu"]["tcg-dirty-sync-workaround"]
            assert wa["on"] == (r["qemu"]["version"]["major"] < 9)
            assert r["command-lines"]["source"][r["command-lines"]["source"].index("-m") + 1] == wa["m"]
            rows[wl, hint] = r
    hog_off, hog_on = rows["hog", False]["derived"], rows["hog", True]["derived"]
    # the hog filled ~90 % of its memory with non-zero bytes and freed it
    assert hog_off["normal-pages"] > 0.6 * hog_off["guest-pages"]
    assert hog_on["transferred-bytes"] < 0.4 * hog_off["transferred-bytes"]
    assert hog_on["pages-skipped"] > 0.5 * hog_on["guest-pages"]
    # the idle guest's free pages are zero: whether hints beat the migration thread to them is a
    # race the emulated guest sometimes loses almost entirely (data/lab/, notebook 08 section 6.1),
    # so only "some were skipped" is certain
    assert rows["idle", True]["derived"]["pages-skipped"] > 0
    assert rows["idle", False]["derived"]["pages-skipped"] == 0
    # every run records its curve: QEMU's counters only grow, and the run ends completed
    for (wl, hint), r in rows.items():
        c = r["curve"]
        assert len(c["t-ms"]) >= 3 and c["status"][-1] == "completed", (wl, hint)
        assert all(b > a for a, b in zip(c["t-ms"], c["t-ms"][1:]))
        for f in ("transferred", "normal", "duplicate", "dirty-sync-count"):
            vals = [v for v in c[f] if v is not None]
            assert vals and all(b >= a for a, b in zip(vals, vals[1:])), (wl, hint, f)
        lines = json.dumps(r["command-lines"])
        assert "<tmp>/src.qmp" in lines and "<cache>/" in lines and str(clean_tmp) not in lines
        assert r["trace"]["bitmap-sync-end-ms"], "the trace records QEMU's bitmap syncs"
    # with hints the hog's curve falls faster: it gets below a quarter of the guest sooner
    def t_below(r, share):
        c, total = r["curve"], r["query-migrate"]["ram"]["total"]
        return next(t for t, st, rem in zip(c["t-ms"], c["status"], c["remaining"])
                    if st in ("active", "completed") and rem is not None and rem < share * total)
    assert t_below(rows["hog", True], 0.25) < t_below(rows["hog", False], 0.25)
    # and the trace shows the hints arriving: about one pop of the free page queue per 4 MiB
    # block skipped (a block can be hinted after its pages were sent, so pops can exceed it)
    pops = len(rows["hog", True]["trace"]["hint-pops-ms"])
    assert pops >= 0.5 * rows["hog", True]["derived"]["pages-skipped"] / 1024
    assert len(rows["hog", False]["trace"]["hint-pops-ms"]) < 0.1 * pops


@pytest.mark.lab
@needs_qemu
def test_real_qemu_interrupted_run_leaves_nothing(clean_tmp):
    """Ctrl-C while the guest boots: both QEMUs are stopped and the temp folder removed."""
    def log(msg):
        if msg.startswith("migrating"):
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run_experiment(LabConfig(ram="256M"), log=log)


def test_read_trace_turns_qemu_log_lines_into_times(tmp_path):
    from kit.lab.experiment import read_trace
    t0 = 1700000000.0
    lines = [
        "1234@1700000000.010000:migration_bitmap_sync_start ",
        "1234@1700000000.012500:migration_bitmap_sync_end dirty_pages 100",
        "1234@1699999999.500000:virtqueue_pop vq 0x55aa elem 0x1 in_num 0 out_num 1",   # before: ignored
        "1234@1700000000.020000:virtqueue_pop vq 0x55bb elem 0x2 in_num 0 out_num 1",
        "1234@1700000000.030000:virtqueue_pop vq 0x55bb elem 0x3 in_num 0 out_num 1",
        "1234@1700000000.040000:virtqueue_pop vq 0x55aa elem 0x4 in_num 0 out_num 1",
        "1234@1700000000.050000:virtio_balloon_get_config num_pages: 0 actual: 0",
        "qemu-system-x86_64: some other message",
    ]
    (tmp_path / "t").write_text("\n".join(lines) + "\n")
    tr = read_trace(tmp_path / "t", t0)
    assert tr["bitmap-sync-start-ms"] == [10.0] and tr["bitmap-sync-end-ms"] == [12.5]
    assert tr["hint-pops-ms"] == [20.0, 30.0]              # the queue popped most after the start
    assert tr["pops-per-queue"] == [1, 2]                  # queues in order of first use, no addresses
    assert tr["get-config-ms"] == [50.0]
    assert read_trace(tmp_path / "missing", t0)["error"] == "no trace file"


def test_relative_paths_hide_this_machines_folders():
    from kit.lab.experiment import relative_paths
    row = {"cmd": ["-qmp", "unix:/tmp/kit-lab-x/src.qmp", "-kernel", "/root/.cache/lab/k/vmlinuz"],
           "n": 3, "nested": {"a": "/tmp/kit-lab-x/c"}}
    out = relative_paths(row, {"/tmp/kit-lab-x": "<tmp>", "/root/.cache/lab": "<cache>"})
    assert out == {"cmd": ["-qmp", "unix:<tmp>/src.qmp", "-kernel", "<cache>/k/vmlinuz"], "n": 3,
                   "nested": {"a": "<tmp>/c"}}
    assert row["cmd"][1] == "unix:/tmp/kit-lab-x/src.qmp"          # the input is not changed


def test_largest_ram_that_fits():
    from kit.lab.experiment import MAX_LAB_RAM_MIB, largest_ram_mib, memory_needed
    assert largest_ram_mib(None) is None
    assert largest_ram_mib(memory_needed(8192)) == 8192 == MAX_LAB_RAM_MIB
    assert largest_ram_mib(memory_needed(8192) - 1) == 7 * 1024
    assert largest_ram_mib(64 << 30) == MAX_LAB_RAM_MIB and largest_ram_mib(0) == 0
    assert LabConfig(ram="8G").check() == 8192


def test_progress_line_only_on_a_terminal():
    from kit.cli import _ProgressLine
    class Tty(io.StringIO):
        def isatty(self):
            return True
    tty, pipe = Tty(), io.StringIO()
    p, q = _ProgressLine(tty), _ProgressLine(pipe)
    for line in (p, q):
        line("boot", None)
        line("migrate", 123_000_000)
        line.wrap(lambda msg: None)("a log line")
        line("migrate", 1_000_000)
        line.end()
    assert pipe.getvalue() == ""
    out = tty.getvalue()
    assert "lab: boot" in out and "lab: migrate, 123 MB remaining" in out and out.endswith("\r\033[K")


@pytest.mark.lab
@pytest.mark.slow
@needs_qemu
def test_real_qemu_dirtying_guest_keeps_writing_while_it_migrates(clean_tmp):
    """The lab's dirtying guest writes while QEMU migrates it: QEMU syncs the bitmap more than
    the idle guest's three times, sees a dirty-page rate, and still completes healthy."""
    r = run_experiment(LabConfig(ram="512M", workload="dirtying"))
    assert r["status"] == "ok", (r["error"], r.get("destination"))
    assert r["guest"]["kit-dirty"].startswith("KIT-DIRTY working_set_kib=")
    c = r["curve"]
    assert max(v or 0 for v in c["dirty-sync-count"]) >= 3
    assert r["query-migrate"]["ram"]["dirty-sync-count"] >= 3
    # pages written during the migration are sent again: more pages go than the guest has
    d = r["derived"]
    assert d["pages-sent"] > d["guest-pages"]


def test_matrix_pauses_between_runs_and_records_it(monkeypatch):
    import kit.lab.experiment as ex
    slept, ran = [], []
    monkeypatch.setattr(ex, "build_guest", lambda log: "guest")
    monkeypatch.setattr(ex.time, "sleep", slept.append)

    def fake_run(cfg, log, guest, progress):
        ran.append((cfg.ram, cfg.free_page_hint, len(slept)))
        return {"status": "ok", "wall-s": 1.0, "config": {"ram": cfg.ram}, "stage": "done"}
    monkeypatch.setattr(ex, "run_experiment", fake_run)
    monkeypatch.setattr(ex, "summary_line", lambda row: "")
    rows = ex.run_matrix(rams=("1G",), workloads=("hog",), hints=(False, True), reps=2, pause_s=30.0)
    # four runs; a pause before each but the first, taken before the run starts
    assert [n for *_, n in ran] == [0, 1, 2, 3] and slept == [30.0] * 3
    assert [r["pause-before-s"] for r in rows] == [0.0, 30.0, 30.0, 30.0]
    with pytest.raises(KitError, match="--pause"):
        ex.run_matrix(rams=("1G",), workloads=("hog",), pause_s=-1)


def test_the_destination_is_given_time_to_finish_loading():
    """The source reports completion before the destination has left "inmigrate"."""
    from kit.lab.experiment import destination_status_after_load

    class FakeQMP:
        def __init__(self, states):
            self.states = list(states)

        def execute(self, cmd):
            assert cmd == "query-status"
            return {"status": self.states.pop(0) if len(self.states) > 1 else self.states[0]}

    class FakeDst:
        def __init__(self, states):
            self.qmp = FakeQMP(states)

    assert destination_status_after_load(FakeDst(["inmigrate"] * 3 + ["running"]), poll_s=0) == "running"
    assert destination_status_after_load(FakeDst(["paused"]), poll_s=0) == "paused"     # -S: no wait
    assert destination_status_after_load(FakeDst(["inmigrate"]), timeout_s=0.05, poll_s=0.01) == "inmigrate"
