"""``python -m kit``: memmap, migrate, reproduce; sizes; one-line errors with exit 2.

Most tests call :func:`kit.cli.main` in-process; a handful run ``python -m kit`` in a
subprocess to check the real exit code and that stderr is one line, never a traceback.
"""
import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from kit.cli import main
from kit.errors import SizeError
from kit.units import GiB, MiB, TiB, parse_size

PAGE = 4096
REPO = Path(__file__).resolve().parents[1]
VGA_VRAM = 16 * MiB          # the second RAMBlock the migration model adds after pc.ram


def run(*argv):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def run_json(*argv):
    rc, out, err = run(*argv, "--json")
    assert rc == 0, err
    assert err == ""
    return json.loads(out)               # the whole of stdout is one JSON document


def run_subprocess(*argv, timeout=60):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "kit", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(rc, out, err, *hints):
    assert rc == 2, (rc, out, err)
    assert out == ""
    assert "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert err.startswith("error:"), repr(err)
    for hint in hints:                  # the message says what to fix
        assert hint.lower() in err.lower(), (hint, err)


# -- memmap ----------------------------------------------------------------------------

@pytest.mark.parametrize("args, below, above", [
    (["--ram", "4G", "--machine", "pc-i440fx-1.7"], 3584 * MiB, 512 * MiB),
    (["--ram", "4G", "--machine", "pc"], 3072 * MiB, 1024 * MiB),
    (["--ram", "4G", "--max-ram-below-4g", "2G"], 2048 * MiB, 2048 * MiB),
    (["--ram", "3968M", "--max-ram-below-4g", "4G"], 3968 * MiB, 0),
])
def test_memmap_qemu_documented_examples(args, below, above):
    d = run_json("memmap", *args)
    for key in ("lowmem", "below_4g_mem_size", "above_4g_mem_size"):
        assert type(d[key]) is int
    assert (d["below_4g_mem_size"], d["above_4g_mem_size"]) == (below, above)
    if above:
        assert d["lowmem"] == below


def test_memmap_default_machine_is_pc_and_lowmem_of_all_low_example():
    assert run_json("memmap", "--ram", "4G") == run_json("memmap", "--ram", "4G", "--machine", "pc")
    d = run_json("memmap", "--ram", "3968M", "--max-ram-below-4g", "4G")
    assert d["lowmem"] == 4 * GiB         # max-ram-below-4g=4G: lowmem 4G, all 3968M below it


def test_memmap_q35():
    d = run_json("memmap", "--ram", "8G", "--machine", "q35")
    assert (d["lowmem"], d["below_4g_mem_size"], d["above_4g_mem_size"]) == (2 * GiB, 2 * GiB, 6 * GiB)
    d = run_json("memmap", "--ram", "2G", "--machine", "q35")
    assert (d["below_4g_mem_size"], d["above_4g_mem_size"]) == (2 * GiB, 0)


@pytest.mark.parametrize("text, nbytes", [
    # as QEMU reads -m: a bare number is MiB, a fraction needs a unit, B is bytes (rounded up to 8 KiB)
    ("4096", 4 * GiB), ("512M", 512 * MiB), ("8G", 8 * GiB), ("8GiB", 8 * GiB), ("1T", TiB),
    ("3.5G", 3 * GiB + 512 * MiB), ("1.5M", 3 * 512 * 1024), ("8192B", 8192), ("4096B", 8192),
])
def test_memmap_size_spellings(text, nbytes):
    d = run_json("memmap", "--ram", text)
    assert d["below_4g_mem_size"] + d["above_4g_mem_size"] == nbytes


@settings(max_examples=40, deadline=None)
@given(pages=st.integers(1, 1 << 22), machine=st.sampled_from(["pc", "pc-i440fx-1.7", "q35"]))
def test_memmap_split_adds_up(pages, machine):
    d = run_json("memmap", "--ram", f"{pages * 2 * PAGE}B", "--machine", machine)
    below, above = d["below_4g_mem_size"], d["above_4g_mem_size"]
    assert below + above == pages * 2 * PAGE
    assert 0 < below <= d["lowmem"] <= 4 * GiB
    assert below % PAGE == 0 and above % PAGE == 0
    if above:
        assert below == d["lowmem"]


def test_memmap_human_output():
    rc, out, err = run("memmap", "--ram", "4G")
    assert rc == 0 and err == ""
    for label in ("machine", "lowmem", "below_4g_mem_size", "above_4g_mem_size", "PCI hole"):
        assert label in out
    lines = {ln.split()[0]: ln for ln in out.splitlines()}
    assert "pc" in lines["machine"]
    assert "3G" in lines["below_4g_mem_size"] and "1G" in lines["above_4g_mem_size"]
    assert "0xc0000000" in lines["lowmem"]


# -- migrate -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def idle_original():
    return run_json("migrate", "--ram", "8G", "--workload", "idle", "--mode", "original")


@pytest.fixture(scope="module")
def idle_pv():
    return run_json("migrate", "--ram", "8G", "--workload", "idle", "--mode", "pv")


RAM_KEYS = ("transferred", "total", "duplicate", "normal", "normal-bytes", "remaining",
            "dirty-sync-count", "free-skipped")


@pytest.mark.parametrize("which", ["idle_original", "idle_pv"])
def test_migrate_json_is_query_migrate(which, request):
    s = request.getfixturevalue(which)
    for key in ("status", "total-time", "setup-time", "downtime", "ram"):
        assert key in s
    for key in RAM_KEYS:
        assert type(s["ram"][key]) is int, key
    assert s["status"] == "completed"
    assert 0 < s["setup-time"] <= s["total-time"]
    assert 0 <= s["downtime"] <= s["total-time"]
    assert "verify" not in s


@pytest.mark.parametrize("which", ["idle_original", "idle_pv"])
def test_migrate_counters_are_consistent(which, request):
    ram = request.getfixturevalue(which)["ram"]
    assert ram["total"] == 8 * GiB + VGA_VRAM
    assert ram["normal-bytes"] == ram["normal"] * PAGE
    assert ram["remaining"] == 0
    assert ram["dirty-sync-count"] >= 2          # setup sync and the final one at stop
    # every page of pc.ram and VGA RAM is sent (as zero or normal) or skipped as free
    assert ram["normal"] + ram["duplicate"] + ram["free-skipped"] >= ram["total"] // PAGE
    # transferred = page records (8-byte header + 4096 bytes, or header + 1 byte) + headers/EOS
    records = ram["normal"] * (8 + PAGE) + ram["duplicate"] * (8 + 1)
    assert 0 < ram["transferred"] - records < 64 * 1024


def test_migrate_original_sends_every_page(idle_original):
    ram = idle_original["ram"]
    assert ram["free-skipped"] == 0
    assert ram["normal"] + ram["duplicate"] >= ram["total"] // PAGE


def test_migrate_pv_skips_most_of_an_idle_guest_as_free(idle_original, idle_pv):
    ram = idle_pv["ram"]
    assert ram["free-skipped"] > 0.9 * (8 * GiB // PAGE)
    assert ram["duplicate"] < 0.1 * idle_original["ram"]["duplicate"]
    assert idle_pv["total-time"] < 0.5 * idle_original["total-time"]
    assert ram["transferred"] <= idle_original["ram"]["transferred"]


@pytest.fixture(scope="module")
def dirtying_pv_verified():
    return run_json("migrate", "--ram", "8G", "--workload", "dirtying", "--mode", "pv", "--verify")


def test_migrate_verify_dirtying_pv_loses_nothing(dirtying_pv_verified):
    s = dirtying_pv_verified
    assert s["status"] == "completed"
    assert s["verify"]["lost-pages"] == 0
    assert s["ram"]["free-skipped"] > 0


def test_migrate_verify_catches_free_pages_before_dirty_log(dirtying_pv_verified):
    rc, out, err = run("migrate", "--ram", "8G", "--workload", "dirtying", "--mode", "pv", "--verify",
                       "--inject", "free-pages-before-dirty-log", "--json")
    s = json.loads(out)
    assert s["status"] == "completed"
    assert s["verify"]["lost-pages"] > 0
    # a run that loses pages exits 1, with one line that says so
    assert rc == 1 and err.count("\n") == 1 and "lost" in err and "Traceback" not in err


def test_migrate_human_output_matches_json():
    args = ("migrate", "--ram", "1G", "--workload", "idle", "--mode", "pv", "--verify")
    s = run_json(*args)
    rc, out, err = run(*args)
    assert rc == 0 and err == ""
    for label in ("status: completed", "mode: pv", "total time:", "downtime:", "setup:",
                  "transferred ram:", "total ram:", "duplicate:", "normal:",
                  "dirty sync count:", "free pages skipped", "verify: 0 lost pages"):
        assert label in out, label
    assert f"total time: {s['total-time']} ms" in out
    assert f"transferred ram: {s['ram']['transferred'] >> 10} kbytes" in out
    assert f"free pages skipped (RFC): {s['ram']['free-skipped']} pages" in out


@pytest.mark.parametrize("mode", ["original", "report"])
def test_migrate_text_names_no_free_page_skip_where_nothing_skips_free_pages(mode):
    """Only the RFC (pv) and hinting skip pages as free: original QEMU and free page reporting
    read every page, so their text output has no "free pages skipped" line at all (a line
    saying "(RFC): 0 pages" under --mode original read as if the RFC had run)."""
    rc, out, err = run("migrate", "--ram", "256M", "--workload", "idle", "--mode", mode)
    assert rc == 0 and err == ""
    assert f"mode: {mode}" in out
    assert "free pages skipped" not in out and "(RFC)" not in out


def test_migrate_mode_hint():
    s = run_json("migrate", "--ram", "1G", "--workload", "hog", "--mode", "hint", "--verify")
    orig = run_json("migrate", "--ram", "1G", "--workload", "hog", "--mode", "original")
    assert s["status"] == "completed" and s["mode"] == "hint"
    assert s["verify"]["lost-pages"] == 0
    assert s["ram"]["free-skipped"] > 0.5 * (GiB // PAGE)
    assert s["ram"]["transferred"] < orig["ram"]["transferred"] / 4
    h = s["free-page-hint"]
    assert h["cmd-ids"][0] == 0x80000000 and h["blocks-hinted"] == h["blocks-freed-at-done"] > 0
    rc, out, err = run("migrate", "--ram", "1G", "--workload", "hog", "--mode", "hint")
    assert rc == 0 and err == ""
    assert f"free pages skipped (hints): {s['ram']['free-skipped']} pages" in out
    assert "cmd ids 0x80000000" in out


def test_migrate_mode_report():
    s = run_json("migrate", "--ram", "1G", "--workload", "hog", "--mode", "report", "--verify")
    orig = run_json("migrate", "--ram", "1G", "--workload", "hog", "--mode", "original")
    assert s["status"] == "completed" and s["mode"] == "report"
    assert s["verify"]["lost-pages"] == 0
    assert s["ram"]["free-skipped"] == 0                   # reported pages are still read...
    assert s["ram"]["duplicate"] > orig["ram"]["duplicate"] + s["free-page-reporting"]["reported-pages"] // 2
    assert s["ram"]["transferred"] < orig["ram"]["transferred"] / 4    # ...but sent as zero pages
    rc, out, err = run("migrate", "--ram", "1G", "--workload", "hog", "--mode", "report")
    assert rc == 0 and err == ""
    assert "free page reporting: " in out and "mode: report" in out


def test_migrate_defaults_and_options():
    # machine / max-ram-below-4g reach the model: total RAM is the same, the run completes
    s = run_json("migrate", "--ram", "1G", "--machine", "q35", "--max-ram-below-4g", "512M",
                 "--workload", "hog", "--seed", "3")
    assert s["status"] == "completed"
    assert s["ram"]["total"] == GiB + VGA_VRAM


# -- reproduce -------------------------------------------------------------------------

SEED = {("idle", "original"): (1894, 398017), ("idle", "pv"): (421, 353242),
        ("workload", "original"): (7436, 8146291), ("workload", "pv"): (552, 361375)}


@pytest.fixture(scope="module")
def reproduced():
    return run_json("reproduce")


def test_reproduce_json_rows(reproduced):
    assert isinstance(reproduced, list) and len(reproduced) == 4
    assert {(r["case"], r["mode"]) for r in reproduced} == set(SEED)
    for r in reproduced:
        for key in ("total-time-ms", "transferred-kb", "seed-total-time-ms", "seed-transferred-kb"):
            assert isinstance(r[key], int), key
        assert (r["seed-total-time-ms"], r["seed-transferred-kb"]) == SEED[r["case"], r["mode"]]


def test_reproduce_within_5_percent_of_the_seed(reproduced):
    for r in reproduced:
        assert abs(r["total-time-ms"] / r["seed-total-time-ms"] - 1) <= 0.05, r
        assert abs(r["transferred-kb"] / r["seed-transferred-kb"] - 1) <= 0.05, r


def test_reproduce_human_output(reproduced):
    rc, out, err = run("reproduce")
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert len(lines) == 5
    for label in ("case", "mode", "time model", "seed", "KB model", "diff"):
        assert label in lines[0]
    for r, line in zip(reproduced, lines[1:]):
        assert line.split()[:4] == [r["case"], r["mode"], str(r["total-time-ms"]),
                                    str(r["seed-total-time-ms"])]
        assert str(r["transferred-kb"]) in line and "%" in line


# -- bad input: one line on stderr, exit 2 --------------------------------------------

BAD = [
    # sizes
    (["memmap", "--ram", "0"], ["positive"]),
    (["memmap", "--ram", "0G"], ["positive"]),
    (["memmap", "--ram", "-1G"], ["--ram", "positive"]),
    (["memmap", "--ram=-1G"], ["--ram", "positive"]),
    (["memmap", "--ram", "-4096"], ["positive"]),
    (["memmap", "--ram", "abc"], ["--ram", "cannot read", "8G"]),
    (["memmap", "--ram", "8X"], ["cannot read"]),
    (["memmap", "--ram", "1.5"], ["fraction", "unit"]),
    (["migrate", "--ram", "4096.5B"], ["fraction", "unit"]),
    (["migrate", "--mode", "hint", "--inject", "wrong-lowmem"], ["wrong-lowmem", "mode pv"]),
    (["migrate", "--mode", "original", "--inject", "free-pages-before-dirty-log"], ["mode pv"]),
    (["memmap", "--ram", ""], ["cannot read"]),
    (["memmap", "--ram", "+8G"], ["cannot read"]),
    (["memmap", "--ram", "5P"], ["52"]),
    (["memmap", "--ram", str((1 << 52) + PAGE)], ["52"]),
    (["memmap", "--ram", "4P"], ["52"]),                 # fits 52 bits, but not with the PCI hole
    (["memmap", "--ram", "9" * 5000], ["too large"]),    # int() would refuse > 4300 digits
    # machine options
    (["memmap", "--ram", "8G", "--machine", "pc-q35-9.9"], ["unknown machine", "q35"]),
    (["memmap", "--ram", "8G", "--max-ram-below-4g", "5G"], ["--max-ram-below-4g", "4G"]),
    (["memmap", "--ram", "8G", "--max-ram-below-4g", "4097"], ["--max-ram-below-4g", "4 KiB"]),
    (["memmap", "--ram", "8G", "--max-ram-below-4g", "-1G"], ["--max-ram-below-4g", "positive"]),
    (["memmap", "--ram", "8G", "--max-ram-below-4g=-1G"], ["--max-ram-below-4g", "positive"]),
    (["memmap", "--ram", "8G", "--max-ram-below-4g", "lots"], ["--max-ram-below-4g", "cannot read"]),
    # argparse
    (["memmap"], ["required", "--ram"]),
    (["memmap", "--ram"], ["--ram", "expected one argument"]),
    (["memmap", "--ram", "8G", "--bogus"], ["unrecognized", "--bogus"]),
    (["memmap", "--ram", "8G", "extra"], ["unrecognized", "extra"]),
    (["frobnicate"], ["invalid choice", "memmap"]),
    ([], ["required", "memmap"]),
    (["--ram", "8G"], []),
    # migrate
    (["migrate", "--workload", "nope"], ["unknown workload", "idle"]),
    (["migrate", "--mode", "fast"], ["unknown mode", "pv", "hint", "report"]),
    (["migrate", "--preset", "seed-1999"], ["unknown preset", "seed-2016"]),
    (["migrate", "--inject", "cosmic-ray"], ["unknown injection", "free-pages-before-dirty-log"]),
    (["migrate", "--machine", "isapc"], ["unknown machine"]),
    (["migrate", "--ram", "-1G"], ["--ram", "positive"]),
    (["migrate", "--ram=-1G"], ["--ram", "positive"]),
    (["migrate", "--ram", "0"], ["positive"]),
    (["migrate", "--ram", "5P"], ["52"]),
    (["migrate", "--max-ram-below-4g", "5G"], ["--max-ram-below-4g"]),
    (["migrate", "--seed", "-1"], ["--seed", ">= 0"]),
    (["migrate", "--seed", "x"], ["--seed"]),
    (["migrate", "--ram", "2P"], ["smaller --ram"]),      # far more than this host can model
    (["migrate", "--verify=yes"], ["--verify"]),
    (["migrate", "--bogus"], ["unrecognized"]),
    (["reproduce", "--bogus"], ["unrecognized"]),
]


@pytest.mark.parametrize("argv, hints", BAD, ids=[" ".join(a)[:60] or "(none)" for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(argv, hints):
    assert_one_line_error(*run(*argv), *hints)


def test_negative_size_is_read_as_a_value_not_an_option():
    # argparse would say "expected one argument" for "--ram -1G"; the user must learn the fix
    rc, out, err = run("memmap", "--ram", "-1G")
    assert "expected one argument" not in err
    assert "positive" in err


def test_help_exits_0():
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit) as exc:
        main(["migrate", "--help"])
    assert exc.value.code == 0
    for opt in ("--ram", "--workload", "--mode", "--verify", "--inject", "--json"):
        assert opt in out.getvalue()


# -- sizes -----------------------------------------------------------------------------

@pytest.mark.parametrize("text, nbytes", [
    ("4096", 4096), ("4096B", 4096), ("512M", 512 * MiB), ("512MiB", 512 * MiB), ("8G", 8 * GiB),
    ("8GiB", 8 * GiB), ("8gb", 8 * GiB), ("1T", TiB), (" 8G ", 8 * GiB), ("64K", 64 * 1024),
])
def test_parse_size_spellings(text, nbytes):
    assert parse_size(text) == nbytes


@pytest.mark.parametrize("text", ["-1G", "-0", "+8G", "4096iB", "8GiBB", "\uff18G", "8 G B", "1e9"])
def test_parse_size_rejects(text):
    with pytest.raises(SizeError):
        parse_size(text)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 1 << 40), unit=st.sampled_from(["", "K", "M", "G", "T"]),
       tail=st.sampled_from(["", "B", "iB"]))
def test_parse_size_property(n, unit, tail):
    if tail == "iB" and not unit:
        tail = ""
    factor = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[unit]
    value = n * factor
    text = f"{n}{unit}{tail}"
    if value % PAGE:
        with pytest.raises(SizeError, match="4096"):
            parse_size(text)
    elif value > 1 << 52:
        with pytest.raises(SizeError, match="52"):
            parse_size(text)
    else:
        assert parse_size(text) == value


# -- the real process: exit code, one stderr line, no traceback ------------------------

@pytest.mark.parametrize("argv", [
    ["memmap", "--ram", "-1G"],
    ["migrate", "--ram=-1G"],
    ["migrate", "--workload", "nope"],
    ["migrate", "--seed", "-1"],
    ["frobnicate"],
    [],
])
def test_subprocess_bad_input(argv):
    p = run_subprocess(*argv)
    assert_one_line_error(p.returncode, p.stdout, p.stderr)


def test_subprocess_memmap_json():
    p = run_subprocess("memmap", "--ram", "4G", "--machine", "pc-i440fx-1.7", "--json")
    assert p.returncode == 0 and p.stderr == ""
    d = json.loads(p.stdout)
    assert (d["below_4g_mem_size"], d["above_4g_mem_size"]) == (3584 * MiB, 512 * MiB)


def test_subprocess_migrate_json():
    p = run_subprocess("migrate", "--ram", "8G", "--workload", "idle", "--mode", "pv", "--json")
    assert p.returncode == 0 and p.stderr == ""
    assert json.loads(p.stdout)["status"] == "completed"


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_max_ram_below_4g_zero_is_the_machine_default():
    """QEMU takes max-ram-below-4g=0 as "not set" (pc_init1, pc_q35_init)."""
    for machine in ("pc", "q35"):
        assert run_json("memmap", "--ram", "8G", "--machine", machine, "--max-ram-below-4g", "0") == \
            run_json("memmap", "--ram", "8G", "--machine", machine)


def test_exit_codes_are_documented_in_help():
    p = subprocess.run([sys.executable, "-m", "kit", "migrate", "--help"], capture_output=True, text=True,
                       cwd=ROOT)
    out = p.stdout
    assert p.returncode == 0
    for line in ("0  the command did what it says", "1  migrate: the run lost pages", "2  bad input"):
        assert line in out


def test_original_mode_text_does_not_claim_rfc_skips():
    rc, out, err = run("migrate", "--ram", "1G", "--mode", "original")
    assert rc == 0 and "free pages skipped" not in out
    rc, out, err = run("migrate", "--ram", "1G", "--mode", "pv")
    assert rc == 0 and "free pages skipped (RFC):" in out


def test_closed_pipe_gives_one_line_and_no_traceback():
    """A reader that goes away early (| head -c 20) or a full disk: one line, no traceback."""
    cmd = [sys.executable, "-m", "kit", "migrate", "--ram", "1G", "--json"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    p.stdout.close()                                # nobody reads: the first write fails
    err = p.stderr.read().decode()
    assert p.wait() == 1
    assert "Traceback" not in err and err.count("\n") == 1 and "closed" in err
    with open("/dev/full", "w") as full:
        q = subprocess.run(cmd, stdout=full, stderr=subprocess.PIPE, cwd=ROOT)
    assert q.returncode == 1 and b"Traceback" not in q.stderr and q.stderr.count(b"\n") == 1


def test_wrong_lowmem_loses_pages_on_a_built_in_workload():
    """The uptime guest's page cache sits above 4 GiB, where the unshifted bitmap marks used
    frames free (their ram_addr is their frame number minus the hole)."""
    rc, out, err = run("migrate", "--ram", "8G", "--workload", "uptime", "--mode", "pv", "--verify",
                       "--inject", "wrong-lowmem", "--json")
    assert rc == 1 and json.loads(out)["verify"]["lost-pages"] > 0
    rc, out, err = run("migrate", "--ram", "8G", "--workload", "uptime", "--mode", "pv", "--verify", "--json")
    assert rc == 0 and json.loads(out)["verify"]["lost-pages"] == 0
