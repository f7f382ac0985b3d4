"""kit.lab.backport: QEMU 10.0 from bookworm-backports, fetched into the lab cache, never installed.

Its parts without the network first (the apt sources it reads, the Depends it
checks, the command-line errors), then one real stress + verify migration on
10.0 (marked ``lab``), which fetches the backport itself where it can be had
and skips in one line where it cannot.
"""
import shutil
import subprocess
import tempfile

import pytest

from kit.cli import main
from kit.errors import UnknownNameError
from kit.lab import backport as B
from kit.lab.experiment import LabConfig
from kit.lab.qemu import QemuBuild, command_line, resolve_qemu


def test_mirror_from_a_deb822_source(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    key = tmp_path / "k.gpg"
    key.write_text("x")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\n"
        f"Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
        f"Components: main\nSigned-By: {key}\n")
    assert B.system_mirror(tmp_path) == ("http://mirror.example/debian", str(key))


def test_mirror_from_a_one_line_source(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# deb http://old.example/debian bookworm main\n"
        "deb http://security.debian.org/debian-security bookworm-security main\n"
        "deb [arch=amd64] http://ftp.example/debian bookworm main contrib\n")
    assert B.system_mirror(tmp_path) == ("http://ftp.example/debian", None)


def test_no_bookworm_source_is_a_one_line_reason(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb http://ftp.example/debian trixie main\n")
    with pytest.raises(B.BackportMissingError, match="names the bookworm suite"):
        B.system_mirror(tmp_path)


def test_private_apt_never_names_the_systems_sources(tmp_path):
    apt = B.PrivateApt(tmp_path / "apt", "http://m.example/debian", "/k.gpg")
    assert apt.sources.read_text() == "deb [signed-by=/k.gpg] http://m.example/debian bookworm-backports main\n"
    opts = " ".join(apt.options())
    assert f"Dir::Etc::sourcelist={tmp_path}/apt/sources.list" in opts
    assert "Dir::Etc::sourceparts=-" in opts
    assert f"Dir::State::Lists={tmp_path}/apt/lists" in opts and f"Dir::Cache={tmp_path}/apt/cache" in opts
    assert "/etc/apt" not in opts and "/var/lib/apt" not in opts


def test_parse_depends():
    got = B.parse_depends("libc6 (>= 2.34), libfoo1 | libfoo2 (<< 3), qemu-system-data (>> 1:10.0.2+ds~), "
                          "python3:any")
    assert got == [[("libc6", ">=", "2.34")], [("libfoo1", None, None), ("libfoo2", "<<", "3")],
                   [("qemu-system-data", ">>", "1:10.0.2+ds~")], [("python3", None, None)]]


def test_missing_libraries_are_those_the_system_lacks():
    # what "dpkg" has here, and a version test on plain integers
    have = {"libc6": "40", "libold1": "1", "liba1": "5"}.get
    ok = lambda v, op, want: v is not None and (op is None or {">=": int(v) >= int(want),
                                                                "=": v == want}[op])
    controls = [("qemu-system-x86", "libc6 (>= 34), libold1 (>= 2), libnew1, liba1 | libb1, "
                                    "qemu-system-data (= 10), ipxe-qemu, libnew1 (>= 1)"),
                ("qemu-system-data", "")]
    # libold1 too old, libnew1 absent (named once); qemu-system-data is fetched; ipxe-qemu not needed
    assert B.missing_libraries(controls, have=have, ok=ok) == ["libold1", "libnew1"]


def test_dpkg_compares_versions_as_debian_does():
    if not shutil.which("dpkg"):
        pytest.skip("dpkg is not here (not a Debian system)")
    assert B.version_ok("1:10.0.2+ds-2", ">>", "1:10.0.2+ds~")
    assert not B.version_ok("1:7.2+dfsg-7", ">>", "1:10.0.2+ds~")
    assert not B.version_ok(None, None, None)


def test_a_backport_build_starts_with_its_own_firmware_and_modules(tmp_path):
    rec = {"packages": ["qemu-system-x86 1:10.0.2"], "library-path": ["usr/lib/x86_64-linux-gnu"]}
    b = B.build_from_record(rec, tmp_path)
    assert b.kind == "bookworm-backports" and b.binary == str(tmp_path / "root/usr/bin/qemu-system-x86_64")
    assert b.env["QEMU_MODULE_DIR"] == str(tmp_path / "root/usr/lib/x86_64-linux-gnu/qemu")
    assert b.env["LD_LIBRARY_PATH"] == str(tmp_path / "root/usr/lib/x86_64-linux-gnu")
    cmd = command_line(b.binary, ram_mib=512, kernel="k", initrd="i", append="a", free_page_hint=True,
                       machine="pc", qmp=tmp_path / "q", console=tmp_path / "c", firmware=b.firmware)
    assert cmd[:5] == [b.binary, "-L", str(tmp_path / "root/usr/share/qemu"),
                       "-L", str(tmp_path / "root/usr/share/seabios")]
    assert cmd[5] == "-M"
    assert B.build_from_record({"packages": [], "library-path": []}, tmp_path).env.keys() == {"QEMU_MODULE_DIR"}


def test_qemu_choice_errors():
    with pytest.raises(UnknownNameError, match="choose 7.2 .* or 10.0"):
        LabConfig(qemu="9.9").check()
    with pytest.raises(UnknownNameError, match="--qemu 10"):
        resolve_qemu("10")


def test_qemu_7_2_must_be_the_systems_7_2(monkeypatch, tmp_path):
    from kit.lab.errors import LabError
    fake = tmp_path / "qemu-system-x86_64"
    fake.write_text("#!/bin/sh\necho 'QEMU emulator version 8.2.2 (Ubuntu)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("KIT_LAB_QEMU", str(fake))
    with pytest.raises(LabError, match="this system's says 'QEMU emulator version 8.2.2"):
        resolve_qemu("7.2")
    assert resolve_qemu(None) == QemuBuild(kind="system", binary=str(fake))


@pytest.mark.parametrize("argv, text", [
    (["lab", "run", "--qemu", "9.9"], "--qemu 9.9: choose 7.2"),
    (["lab", "matrix", "--qemu", "9.9", "--reps", "1"], "--qemu 9.9: choose 7.2"),
    (["lab", "run", "--tcg-workaround", "maybe"], "expected auto, on or off"),
    (["lab", "run", "--tcg-workaround", "on", "--no-tcg-workaround"], "contradict"),
])
def test_cli_qemu_errors_are_one_line(capsys, argv, text):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and text in err, err


def test_cli_says_in_one_line_when_the_backport_cannot_be_had(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("KIT_LAB_CACHE", str(tmp_path / "cache"))
    def nowhere(etc=None):
        raise B.BackportMissingError("QEMU 10.0 comes from Debian's bookworm-backports, but no apt "
                                     "source of this system names the bookworm suite")
    monkeypatch.setattr(B, "system_mirror", nowhere)
    assert main(["lab", "run", "--qemu", "10.0", "--ram", "256M"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bookworm-backports" in err and "Traceback" not in err, err


# --- the real thing -----------------------------------------------------------

def _backport_or_skip():
    try:
        return B.fetch_backport()
    except B.BackportMissingError as e:
        pytest.skip(f"QEMU 10.0 cannot be had here: {e}")


@pytest.mark.lab
@pytest.mark.slow
def test_real_qemu_10_stress_loses_no_write_without_the_workaround(tmp_path, monkeypatch):
    """512 MiB, hints on, on QEMU 10.0 with exactly 512M (the size QEMU 7.2 loses writes at):
    the destination holds every page the guest holds, and is healthy."""
    build = _backport_or_skip()
    assert build.version_line().startswith("QEMU emulator version 10.0")
    from kit.lab.experiment import run_experiment
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    row = run_experiment(LabConfig(ram="512M", workload="stress", free_page_hint=True, verify=True,
                                   qemu="10.0", stress_args="pass_ms=2000"))
    assert row["status"] == "ok", (row["error"], row["destination"].get("console-tail"))
    q = row["qemu"]
    assert q["kind"] == "bookworm-backports" and q["version"]["major"] == 10
    assert q["binary"].startswith("<cache>/qemu-10.0/") and all(f.startswith("<cache>/") for f in q["firmware"])
    wa = q["tcg-dirty-sync-workaround"]
    assert wa == {**wa, "on": False, "default": False, "m": "512M"}
    assert row["verdict"]["lost-writes"] == 0 and row["src-dst-diff"]["classes"]["held-live"] == 0
    v = row["verify"]
    assert v["lost-pages"] == 0 and v["live-found"] == v["live-expected"] > 10000
    d = row["destination"]
    assert d["status"] == "running" and d["alive"] and not d["panic"]
    assert list(tmp_path.iterdir()) == []
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert not [ln for ln in out.splitlines() if "qemu-system" in ln and str(tmp_path) in ln]
