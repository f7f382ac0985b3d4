"""``python -m kit lab check``: what the lab needs, what is missing, and the fix.

Both QEMUs are reported: the system's (``qemu``, Debian 12's 7.2) and 10.0 from
bookworm-backports (``qemu 10.0``, :mod:`kit.lab.backport`), which only ``--qemu 10.0`` needs.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess

from .qemu import APT_HINT, QEMU_BINARY


@dataclasses.dataclass
class Item:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def _version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else ""


def _backport_item() -> Item:
    """QEMU 10.0 from bookworm-backports: already in the lab cache, or can be fetched (asks apt
    for the backports' package list, downloads no package), or why not."""
    from .backport import BackportMissingError, available, cached_backport
    from .errors import LabError
    try:
        build = cached_backport()
        if build:
            return Item("qemu 10.0", True, f"{build.version_line()} (--qemu 10.0; bookworm-backports, "
                        f"unpacked in the lab cache, not installed)", required=False)
        version = available()
        return Item("qemu 10.0", True, f"qemu-system-x86 {version} can be fetched from bookworm-backports "
                    "(--qemu 10.0 does it once, about 14 MB, never installed)", required=False)
    except (BackportMissingError, LabError, OSError) as e:
        return Item("qemu 10.0", False, f"cannot be had: {e}", "needs Debian 12's apt and its mirror "
                    "(only --qemu 10.0 needs it)", required=False)


def check() -> list[Item]:
    items = []
    qemu = os.environ.get("KIT_LAB_QEMU") or shutil.which(QEMU_BINARY)
    items.append(Item("qemu", bool(qemu), _version([qemu, "--version"]) if qemu else "not installed",
                      APT_HINT))
    if qemu:
        props = subprocess.run([qemu, "-device", "virtio-balloon-pci,help"], capture_output=True,
                               text=True, timeout=30).stdout
        has = "free-page-hint" in props
        items.append(Item("free-page-hint", has,
                          "virtio-balloon-pci has free-page-hint" if has else
                          "this QEMU's virtio-balloon-pci has no free-page-hint (needs QEMU >= 4.0)",
                          "install a newer qemu-system-x86"))
    items.append(_backport_item())
    for tool, why, fix in (("apt-get", "fetches the guest's Debian packages", "the lab needs a Debian-like host"),
                           ("dpkg-deb", "unpacks them without installing", "apt-get install dpkg"),
                           ("cc", "builds the guest's static workload program", "apt-get install gcc libc6-dev")):
        path = shutil.which(tool) or (shutil.which("gcc") if tool == "cc" else None)
        items.append(Item(tool, bool(path), f"{path} ({why})" if path else f"missing: {why}", fix))
    kvm = os.path.exists("/dev/kvm") and os.access("/dev/kvm", os.R_OK | os.W_OK)
    items.append(Item("kvm", kvm, "/dev/kvm is present; the lab still uses TCG, so runs compare across hosts"
                      if kvm else "no /dev/kvm; fine, the lab uses TCG (the emulator) everywhere", required=False))
    try:
        with open("/proc/meminfo") as f:
            avail = next(int(ln.split()[1]) // 1024 for ln in f if ln.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        avail = None
    from .experiment import MAX_LAB_RAM_MIB, largest_ram_mib
    biggest = largest_ram_mib(avail * 1024 * 1024) if avail is not None else None
    items.append(Item("memory", avail is None or avail >= 3 * 1024,
                      f"{avail} MiB available; a run needs about 2 x RAM + 512 MiB, so --ram up to "
                      f"{biggest // 1024}G fits now (the lab goes up to {MAX_LAB_RAM_MIB // 1024}G, "
                      f"the seed's size, which needs {2 * MAX_LAB_RAM_MIB // 1024 + 1}G free)"
                      if avail is not None else "unknown", "free memory, or use --ram 512M", required=False))
    return items


def report(items) -> tuple[str, bool]:
    lines, ok = [], True
    for it in items:
        mark = "ok " if it.ok else ("-- " if not it.required else "NO ")
        lines.append(f"{mark} {it.name:15} {it.detail}" + (f"\n    fix: {it.fix}" if not it.ok and it.fix else ""))
        ok &= it.ok or not it.required
    lines.append("the lab is ready" if ok else "the lab cannot run here yet: see the fixes above")
    return "\n".join(lines), ok
