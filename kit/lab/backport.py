"""A second QEMU for the lab: 10.0 from Debian's ``bookworm-backports``, fetched, never installed.

The lab's own QEMU is the system's (Debian 12 ships 7.2).  To run the same
experiment on a QEMU that has the TCG dirty-sync fix (9.0, see
:mod:`kit.lab.qemu`), :func:`fetch_backport` puts QEMU 10.0 into the lab cache
(:func:`kit.lab.image.cache_dir`) ``qemu-10.0/``, in these steps:

1. **A private apt configuration.** ``apt/sources.list`` names one line,
   ``deb [signed-by=…] <mirror> bookworm-backports main``, where the mirror and
   its keyring are the ones the system's own sources use for ``bookworm``
   (read from ``/etc/apt/sources.list`` and ``/etc/apt/sources.list.d/``, both
   the one-line and the deb822 format).  apt is run with
   ``-o Dir::Etc::sourcelist=… -o Dir::Etc::sourceparts=- -o Dir::State::Lists=…
   -o Dir::Cache=…`` pointing into that folder, so ``apt-get update`` fills a
   lists folder of its own and the system's sources, lists and package cache
   are left as they were.  Nothing is installed: ``apt-get download`` only
   writes ``.deb`` files into the current folder.
2. **The packages.** ``qemu-system-x86`` (the binary), ``qemu-system-data``
   (option ROMs such as ``linuxboot_dma.bin``, keymaps), ``seabios`` (the
   ``bios-256k.bin`` the pc machine boots) and ``qemu-system-common`` (its
   loadable modules, so the 10.0 binary never tries the 7.2 ones).
   ``ipxe-qemu`` is a dependency too, but only network cards load its ROMs and
   lab guests have none (``-nodefaults``).
3. **Libraries the system lacks.** Every other entry of ``qemu-system-x86``'s
   ``Depends`` is compared with what dpkg has installed (``dpkg-query`` and
   ``dpkg --compare-versions``); a library missing or too old is downloaded
   too (from the backports first, else from the system's own suites), with its
   own dependencies, until nothing is missing.  On Debian 12 today that list is
   empty: the backport is built against bookworm's libraries.
4. ``dpkg-deb -x`` unpacks every ``.deb`` into ``root/``.  Then ``ldd`` on the
   unpacked binary, with ``LD_LIBRARY_PATH`` naming any unpacked library
   folder, must report no library or symbol version "not found", and
   ``--version`` must say 10.0.

It runs with ``-L root/usr/share/qemu -L root/usr/share/seabios`` (the
folders Debian's build searches, here the unpacked ones, searched before the
binary's built-in ``/usr/share/qemu``, which holds the system 7.2's files),
``QEMU_MODULE_DIR`` naming its own modules, and ``LD_LIBRARY_PATH`` only when
a library had to be fetched.  A second call finds ``root/.unpacked`` and the
recorded package list (``backport.json``) and does nothing else.

Where the backport cannot be had (no apt, no network, no such package, not a
Debian 12 system) :class:`BackportMissingError` says why in one line; the
CLI prints it and exits 2, the tests skip with it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from .errors import LabMissingError
from .image import unpack_into

SUITE = "bookworm-backports"
CODENAME = "bookworm"
VERSION = "10.0"
PACKAGES = ("qemu-system-x86", "qemu-system-data", "qemu-system-common", "seabios")
# Depends of qemu-system-x86 that are not fetched: the system's ROMs for network cards, which
# lab guests do not have.
NOT_NEEDED = ("ipxe-qemu",)
BINARY = "usr/bin/qemu-system-x86_64"
FIRMWARE = ("usr/share/qemu", "usr/share/seabios")
MODULES = "usr/lib/x86_64-linux-gnu/qemu"
LIB_DIRS = ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu")


class BackportMissingError(LabMissingError):
    """QEMU 10.0 from bookworm-backports cannot be had here; the message says why."""


def folder(cache=None) -> Path:
    from .image import cache_dir
    return Path(cache or cache_dir()) / f"qemu-{VERSION}"


# --------------------------------------------------------------------------- the mirror

def _deb822_stanzas(text: str):
    stanza: dict = {}
    key = None
    for line in text.splitlines() + [""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if stanza:
                yield stanza
            stanza, key = {}, None
        elif line[0] in " \t" and key:
            stanza[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            stanza[key] = value.strip()


def system_mirror(etc: Path = Path("/etc/apt")) -> tuple[str, str | None]:
    """(URI, signed-by keyring or None) of the system's apt source for Debian 12's main suite.

    Raises :class:`BackportMissingError` when no such source is configured."""
    entries = []       # (uri, suites, signed-by)
    one_line = [etc / "sources.list"] + sorted((etc / "sources.list.d").glob("*.list"))
    for path in one_line:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            m = re.match(r"deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)", line)
            if m:
                opts = dict(o.split("=", 1) for o in (m.group(1) or "").split() if "=" in o)
                entries.append((m.group(2), [m.group(3)], opts.get("signed-by")))
    for path in sorted((etc / "sources.list.d").glob("*.sources")):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for st in _deb822_stanzas(text):
            if "deb" not in st.get("types", "").split() or st.get("enabled", "yes").lower() == "no":
                continue
            for uri in st.get("uris", "").split():
                entries.append((uri, st.get("suites", "").split(), st.get("signed-by")))
    for uri, suites, signed in entries:
        if CODENAME in suites and "security" not in uri:
            keyring = signed if signed and "\n" not in signed and os.path.exists(signed) else None
            return uri.rstrip("/"), keyring
    raise BackportMissingError(f"QEMU {VERSION} comes from Debian's {SUITE}, but no apt source of "
                               f"this system names the {CODENAME} suite (see /etc/apt/sources.list.d)")


# --------------------------------------------------------------------------- apt, privately

class PrivateApt:
    """apt-get and apt-cache with their own sources list, lists and cache under ``root``."""

    def __init__(self, root: Path, uri: str, keyring: str | None):
        self.root = Path(root)
        self.sources = self.root / "sources.list"
        for d in ("lists/partial", "cache/archives/partial"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        opt = f"[signed-by={keyring}] " if keyring else ""
        line = f"deb {opt}{uri} {SUITE} main\n"
        if not self.sources.exists() or self.sources.read_text() != line:
            self.sources.write_text(line)

    def options(self) -> list[str]:
        return ["-o", f"Dir::Etc::sourcelist={self.sources}", "-o", "Dir::Etc::sourceparts=-",
                "-o", f"Dir::State::Lists={self.root / 'lists'}", "-o", f"Dir::Cache={self.root / 'cache'}",
                "-o", "APT::Sandbox::User=root" if _is_root() else "APT::Sandbox::User=_apt"]

    def lists_present(self) -> bool:
        return any((self.root / "lists").glob(f"*{SUITE}*Packages*"))

    def update(self):
        _run(["apt-get", "-q", *self.options(), "update"], f"apt-get update of {SUITE}")
        if not self.lists_present():
            raise BackportMissingError(f"apt-get update fetched no package list of {SUITE} "
                                       f"(see {self.sources})")

    def candidate(self, pkg: str) -> str | None:
        out = _run(["apt-cache", *self.options(), "madison", pkg], f"apt-cache madison {pkg}")
        for line in out.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) >= 3 and parts[0] == pkg and SUITE in parts[2]:
                return parts[1]
        return None

    def download(self, pkg: str, version: str, dest: Path):
        _run(["apt-get", "-q", *self.options(), "download", f"{pkg}={version}"],
             f"apt-get download {pkg} from {SUITE}", cwd=dest)


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _run(cmd, what, cwd=None) -> str:
    try:
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600,
                           stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise BackportMissingError(f"{cmd[0]} is not here: QEMU {VERSION} comes from Debian's {SUITE} "
                                   "through apt") from None
    except subprocess.TimeoutExpired:
        raise BackportMissingError(f"{what} took more than 10 minutes (no network?)") from None
    if p.returncode != 0:
        lines = [ln.strip() for ln in (p.stderr or p.stdout).splitlines() if ln.strip()]
        errs = [ln for ln in lines if ln.startswith(("E:", "W:"))] or lines
        raise BackportMissingError(f"{what} failed: {(errs[-1] if errs else f'exit {p.returncode}')}")
    return p.stdout


# --------------------------------------------------------------------------- dependencies

def parse_depends(text: str) -> list[list[tuple[str, str | None, str | None]]]:
    """``Depends`` as a list of alternatives, each (package, operator or None, version or None)."""
    out = []
    for group in filter(None, (g.strip() for g in text.split(","))):
        alts = []
        for alt in group.split("|"):
            m = re.match(r"\s*([a-z0-9][a-z0-9+.-]*)(?::\S+)?\s*(?:\(\s*(<<|<=|=|>=|>>)\s*([^)\s]+)\s*\))?",
                         alt)
            if m:
                alts.append((m.group(1), m.group(2), m.group(3)))
        if alts:
            out.append(alts)
    return out


def installed_version(pkg: str) -> str | None:
    try:
        p = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}|${Version}", pkg],
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    status, _, version = p.stdout.partition("|")
    return version.strip() if p.returncode == 0 and status.startswith("ii") else None


def version_ok(have: str | None, op: str | None, want: str | None) -> bool:
    if have is None:
        return False
    if op is None:
        return True
    dpkg_op = {"<<": "lt", "<=": "le", "=": "eq", ">=": "ge", ">>": "gt"}[op]
    return subprocess.run(["dpkg", "--compare-versions", have, dpkg_op, want],
                          capture_output=True, timeout=60).returncode == 0


def _deb_field(deb: Path, field: str) -> str:
    return _run(["dpkg-deb", "-f", str(deb), field], f"dpkg-deb -f {deb.name}").strip()


def _find_deb(debs: Path, pkg: str) -> Path | None:
    found = sorted(debs.glob(f"{pkg}_*.deb"))
    return found[-1] if found else None


def _fetch(apt: PrivateApt, debs: Path, pkg: str, log) -> Path:
    deb = _find_deb(debs, pkg)
    if deb is None:
        version = apt.candidate(pkg)
        if version is None:
            # not in the backports: a library the system lacks comes from its own suites
            log(f"apt-get download {pkg} (the system's suites)")
            _run(["apt-get", "-q", "download", pkg], f"apt-get download {pkg}", cwd=debs)
        else:
            log(f"apt-get download {pkg}={version} ({SUITE})")
            apt.download(pkg, version, debs)
        deb = _find_deb(debs, pkg)
        if deb is None:
            raise BackportMissingError(f"apt-get download {pkg} left no .deb in {debs}")
    return deb


def missing_libraries(controls, have=installed_version, ok=version_ok) -> list[str]:
    """Packages named in the ``Depends`` of ``controls`` (``(Package, Depends)`` pairs of the
    fetched .debs) that the system lacks at the needed version and that are not fetched
    already (nor :data:`NOT_NEEDED`).  An alternative ``a | b`` is met by either."""
    ours = {name for name, _ in controls}
    out = []
    for _, depends in controls:
        for alts in parse_depends(depends):
            if any(name in ours or name in NOT_NEEDED for name, _, _ in alts):
                continue
            if not any(ok(have(name), op, ver) for name, op, ver in alts):
                name = alts[0][0]
                if name not in out:
                    out.append(name)
    return out


def _controls(debs) -> list[tuple[str, str]]:
    return [(_deb_field(d, "Package"), _deb_field(d, "Depends")) for d in debs]


# --------------------------------------------------------------------------- the whole fetch

def _backport_record(root: Path) -> dict | None:
    try:
        rec = json.loads((root.parent / "backport.json").read_text())
    except (OSError, ValueError):
        return None
    return rec if (root / ".unpacked").exists() and (root / BINARY).exists() else None


def build_from_record(rec: dict, base: Path):
    from .qemu import QemuBuild
    root = base / "root"
    env = {"QEMU_MODULE_DIR": str(root / MODULES)}
    if rec.get("library-path"):
        env["LD_LIBRARY_PATH"] = ":".join(str(root / d) for d in rec["library-path"])
    return QemuBuild(kind=SUITE, binary=str(root / BINARY),
                     firmware=tuple(str(root / d) for d in FIRMWARE), env=env,
                     packages=tuple(rec["packages"]))


def cached_backport(cache=None):
    """The backport's :class:`~kit.lab.qemu.QemuBuild` if it is already in the cache, else None."""
    base = folder(cache)
    rec = _backport_record(base / "root")
    return build_from_record(rec, base) if rec else None


def available(cache=None) -> str:
    """Whether the backport could be fetched, without downloading a package: the candidate
    version line.  Raises :class:`BackportMissingError` saying why not."""
    base = folder(cache)
    base.mkdir(parents=True, exist_ok=True)
    apt = PrivateApt(base / "apt", *system_mirror())
    apt.update()
    version = apt.candidate(PACKAGES[0])
    if version is None:
        raise BackportMissingError(f"{SUITE} has no {PACKAGES[0]}")
    return version


def fetch_backport(cache=None, log=lambda msg: None):
    """QEMU 10.0 from bookworm-backports in the lab cache (see the module doc); its QemuBuild."""
    from .qemu import qemu_version, version_tuple
    base = folder(cache)
    got = cached_backport(cache)
    if got:
        return got
    if not shutil.which("dpkg-deb"):
        raise BackportMissingError("dpkg-deb is not here: the backport is unpacked with it")
    base.mkdir(parents=True, exist_ok=True)
    apt = PrivateApt(base / "apt", *system_mirror())
    log(f"fetching QEMU {VERSION} from {SUITE} into {base} (about 14 MB, once)")
    apt.update()
    version = apt.candidate(PACKAGES[0])
    if version is None or not version.split(":")[-1].startswith(VERSION):
        raise BackportMissingError(f"{SUITE} offers {PACKAGES[0]} {version or 'not at all'}, "
                                   f"not {VERSION}")
    debs_dir = base / "debs"
    debs_dir.mkdir(exist_ok=True)
    debs = [_fetch(apt, debs_dir, p, log) for p in PACKAGES]
    for _ in range(8):                      # libraries, then what they need, until none is missing
        extra = missing_libraries(_controls(debs))
        if not extra:
            break
        debs += [_fetch(apt, debs_dir, p, log) for p in extra]
    else:
        raise BackportMissingError(f"the libraries QEMU {VERSION} needs keep needing more: "
                                   f"{', '.join(missing_libraries(_controls(debs)))}")

    root = base / "root"
    lib_path = []

    def runs_here(tmp):
        """The unpacked binary finds every library it needs (through the unpacked ones)."""
        lib_path[:] = [d for d in LIB_DIRS if (tmp / d).is_dir() and
                       any(p.suffix == ".so" or ".so." in p.name for p in (tmp / d).iterdir())]
        env = dict(os.environ)
        if lib_path:
            env["LD_LIBRARY_PATH"] = ":".join(str(tmp / d) for d in lib_path)
        ldd = subprocess.run(["ldd", str(tmp / BINARY)], capture_output=True, text=True, env=env,
                             timeout=60)
        bad = [ln.strip() for ln in (ldd.stdout + ldd.stderr).splitlines() if "not found" in ln]
        if ldd.returncode != 0 or bad:
            raise BackportMissingError(f"QEMU {VERSION} from {SUITE} cannot run here: "
                                       f"{bad[0] if bad else ldd.stderr.strip() or 'ldd failed'}")

    (root / ".unpacked").unlink(missing_ok=True)     # not a usable build (no record): unpack afresh
    unpack_into(root, debs, extract=lambda deb, into: _run(["dpkg-deb", "-x", str(deb), str(into)],
                                                          f"dpkg-deb -x {deb.name}"),
                check=runs_here)
    rec = {"packages": [f"{_deb_field(d, 'Package')} {_deb_field(d, 'Version')}" for d in debs],
           "library-path": lib_path, "mirror": apt.sources.read_text().strip()}
    build = build_from_record(rec, base)
    line = qemu_version(build.binary, env=build.environ())
    if version_tuple(line)[:2] != tuple(int(x) for x in VERSION.split(".")):
        shutil.rmtree(root, ignore_errors=True)
        raise BackportMissingError(f"the unpacked QEMU says {line!r}, not {VERSION}")
    (base / "backport.json").write_text(json.dumps(rec, indent=1) + "\n")
    log(f"QEMU {VERSION} ready: {line}")
    return build
