"""The lab guest: a Debian kernel and a busybox initramfs, built on the host.

Nothing is installed on the host.  ``apt-get download`` fetches two Debian
packages into a cache folder, ``dpkg-deb -x`` unpacks them there, the host's C
compiler builds ``kitmem`` (the guest's memory workloads, ``files/kitmem.c``)
as a static program, and :func:`write_cpio` packs ``/init`` (``files/init.sh``),
busybox, kitmem and the virtio modules into an initramfs.  Everything is keyed
by what went into it, so a second call only checks that the files are there.

The cache folder is ``$KIT_LAB_CACHE`` or ``~/.cache/pv-migration-kit/lab``.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from .errors import LabMissingError, LabError

FILES = Path(__file__).with_name("files")
KERNEL_META = "linux-image-cloud-amd64"   # Debian's "current cloud kernel" package
BUSYBOX = "busybox-static"
# virtio_pci finds the balloon on the PCI bus; virtio_balloon drives it.  Their
# dependencies are read from each module's own "depends=" string.
WANTED_MODULES = ("virtio_pci", "virtio_balloon")


@dataclasses.dataclass(frozen=True)
class GuestImage:
    """What a lab QEMU boots: ``-kernel`` and ``-initrd``, and what is in them."""
    kernel: Path
    initrd: Path
    kernel_package: str          # e.g. linux-image-6.1.0-56-cloud-amd64 6.1.192-2
    busybox_package: str
    modules: tuple[str, ...]     # insmod order
    compiler: str                # first line of `cc --version`


def cache_dir() -> Path:
    d = os.environ.get("KIT_LAB_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "pv-migration-kit", "lab")
    return Path(d)


def _run(cmd, cwd=None, what=None) -> str:
    try:
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError as e:
        raise LabMissingError(f"{cmd[0]} not found: {what or 'it is needed to build the lab guest'}") from e
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or [""]
        raise LabError(f"{' '.join(map(str, cmd[:3]))} … failed ({p.returncode}): {tail[0]}")
    return p.stdout


def kernel_abi_package() -> str:
    """The versioned kernel package the cloud metapackage points at (asks apt)."""
    try:
        out = _run(["apt-cache", "depends", KERNEL_META], what="the lab guest's kernel comes from Debian's apt")
    except LabMissingError:
        raise
    except LabError:
        out = ""
    if "Depends:" not in out and hasattr(os, "geteuid") and os.geteuid() == 0:
        # a fresh machine may have no package lists yet: fetch them once
        _run(["apt-get", "update", "-q"], what="apt-get update fetches Debian's package lists")
        out = _run(["apt-cache", "depends", KERNEL_META])
    for line in out.splitlines():
        m = re.match(r"\s*Depends:\s*(linux-image-\S+)", line)
        if m:
            return m.group(1)
    raise LabError(f"apt-cache knows no kernel behind {KERNEL_META}; run apt-get update")


def _fetch_deb(pkg: str, debs: Path) -> Path:
    found = sorted(debs.glob(f"{pkg}_*.deb"))
    if not found:
        debs.mkdir(parents=True, exist_ok=True)
        _run(["apt-get", "download", pkg], cwd=debs, what="apt-get download fetches the guest's packages")
        found = sorted(debs.glob(f"{pkg}_*.deb"))
        if not found:
            raise LabError(f"apt-get download {pkg} left no .deb in {debs}")
    return found[-1]


def _deb_version(deb: Path) -> str:
    return _run(["dpkg-deb", "-f", str(deb), "Version"]).strip()


def unpack_into(dest: Path, debs, extract=lambda deb, into: _run(["dpkg-deb", "-x", str(deb), str(into)]),
                check=lambda root: None) -> Path:
    """Unpack ``debs`` (``dpkg-deb -x``, through ``extract``) into ``dest``, whole or not at all.

    They go into a temporary folder beside ``dest``; ``check(folder)`` may refuse the result
    by raising; only then does the folder, marked ``.unpacked``, take ``dest``'s place.  The
    temporary folder is removed on every path.  An already marked ``dest`` is kept."""
    if (dest / ".unpacked").exists():
        return dest
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".unpack-"))
    try:
        for deb in debs:
            extract(deb, tmp)
        check(tmp)
        (tmp / ".unpacked").touch()
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest


def _unpack(deb: Path, dest: Path) -> Path:
    return unpack_into(dest, [deb])


def module_depends(ko: Path) -> list[str]:
    """The modules ``ko`` needs, from the ``depends=`` entry of its .modinfo."""
    m = re.search(rb"depends=([A-Za-z0-9_,-]*)\x00", ko.read_bytes())
    return [d for d in (m.group(1).decode().split(",") if m else []) if d]


def module_order(moddir: Path, wanted=WANTED_MODULES) -> list[tuple[str, Path]]:
    """(name, path) of ``wanted`` and what they need, dependencies first."""
    paths = {p.stem: p for p in moddir.rglob("*.ko")}
    order: list[tuple[str, Path]] = []

    def visit(name, chain=()):
        if any(n == name for n, _ in order):
            return
        if name in chain:
            raise LabError(f"module dependency loop: {' -> '.join(chain + (name,))}")
        if name not in paths:
            raise LabError(f"kernel module {name}.ko not found under {moddir}")
        for dep in module_depends(paths[name]):
            visit(dep, chain + (name,))
        order.append((name, paths[name]))

    for w in wanted:
        visit(w)
    return order


def build_kitmem(out: Path) -> str:
    """Compile files/kitmem.c as a static program; returns the compiler's name line."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise LabMissingError("no C compiler (cc/gcc): apt-get install gcc libc6-dev")
    version = _run([cc, "--version"]).splitlines()[0]
    src = FILES / "kitmem.c"
    tmp = out.with_suffix(".tmp")
    _run([cc, "-static", "-O2", "-Wall", "-o", str(tmp), str(src)],
         what="the guest's workloads are a small static C program")
    tmp.rename(out)
    return version


# --- a newc cpio writer: the format the kernel unpacks as initramfs ---------

def _cpio_entry(name: str, mode: int, data: bytes = b"", ino: int = 0, rdev=(0, 0)) -> bytes:
    namez = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(namez), 0]
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + namez
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def write_cpio(path: Path, entries) -> None:
    """entries: (name, kind, payload) with kind 'dir', 'file' (bytes, mode), 'char' ((major, minor))."""
    parts = []
    for ino, (name, kind, payload) in enumerate(entries, start=1):
        if kind == "dir":
            parts.append(_cpio_entry(name, stat.S_IFDIR | 0o755, ino=ino))
        elif kind == "file":
            data, mode = payload
            parts.append(_cpio_entry(name, stat.S_IFREG | mode, data, ino=ino))
        elif kind == "char":
            parts.append(_cpio_entry(name, stat.S_IFCHR | 0o600, ino=ino, rdev=payload))
        else:
            raise ValueError(kind)
    parts.append(_cpio_entry("TRAILER!!!", 0))
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(b"".join(parts))
    tmp.rename(path)


def build_guest(cache: Path | None = None, log=lambda msg: None) -> GuestImage:
    """Fetch, unpack, compile and pack the lab guest (cached); return its files."""
    cache = Path(cache or cache_dir())
    cache.mkdir(parents=True, exist_ok=True)
    kpkg = kernel_abi_package()
    kdeb = _fetch_deb(kpkg, cache / "debs")
    bdeb = _fetch_deb(BUSYBOX, cache / "debs")
    kroot = _unpack(kdeb, cache / kdeb.stem)
    broot = _unpack(bdeb, cache / bdeb.stem)
    vmlinuz = sorted(glob.glob(str(kroot / "boot" / "vmlinuz-*")))
    if not vmlinuz:
        raise LabError(f"{kdeb.name} holds no boot/vmlinuz-*")
    kver = Path(vmlinuz[-1]).name[len("vmlinuz-"):]
    mods = module_order(kroot / "lib" / "modules" / kver)
    busybox = broot / "bin" / "busybox"

    src_hash = hashlib.sha256()
    for f in (FILES / "init.sh", FILES / "kitmem.c"):
        src_hash.update(f.read_bytes())
    src_hash.update(kdeb.name.encode() + bdeb.name.encode())
    key = src_hash.hexdigest()[:16]
    initrd = cache / f"initrd-{key}.cpio"
    kitmem = cache / f"kitmem-{key}"
    cc_file = cache / f"kitmem-{key}.cc"
    if not kitmem.exists():
        log("compiling kitmem (static)")
        cc_file.write_text(build_kitmem(kitmem))
    if not initrd.exists():
        log(f"packing {initrd.name}")
        entries = [("dev", "dir", None), ("dev/console", "char", (5, 1)), ("bin", "dir", None),
                   ("kit", "dir", None), ("kit/modules", "dir", None),
                   ("init", "file", ((FILES / "init.sh").read_bytes(), 0o755)),
                   ("bin/busybox", "file", (busybox.read_bytes(), 0o755)),
                   ("bin/sh", "file", (busybox.read_bytes(), 0o755)),
                   ("kit/kitmem", "file", (kitmem.read_bytes(), 0o755)),
                   ("kit/modules.order", "file", ("\n".join(n for n, _ in mods).encode() + b"\n", 0o644))]
        entries += [(f"kit/modules/{n}.ko", "file", (p.read_bytes(), 0o644)) for n, p in mods]
        write_cpio(initrd, entries)
    return GuestImage(kernel=Path(vmlinuz[-1]), initrd=initrd,
                      kernel_package=f"{kpkg} {_deb_version(kdeb)}",
                      busybox_package=f"{BUSYBOX} {_deb_version(bdeb)}",
                      modules=tuple(n for n, _ in mods),
                      compiler=cc_file.read_text().strip() if cc_file.exists() else "")
