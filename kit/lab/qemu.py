"""Start and stop one lab QEMU: its command line, its console, its QMP socket.

Each QEMU runs in its own process group with its serial console written to a
file and QMP on a unix socket, both in the experiment's temp folder.
:meth:`Qemu.stop` kills the group (TERM, then KILL) and is safe to call twice;
the experiment calls it for both QEMUs whatever happens.  On Linux each QEMU
is also started with ``PR_SET_PDEATHSIG(SIGKILL)`` (:mod:`kit.childproc`), so
it dies with the thread that started it even when no cleanup runs (SIGKILL).
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from ..childproc import die_with_parent
from ..errors import UnknownNameError
from .errors import GuestBootError, LabError, LabMissingError
from .qmp import QMP

QEMU_BINARY = "qemu-system-x86_64"
APT_HINT = "apt-get install --no-install-recommends qemu-system-x86"
# Lines on a guest console that mean it is not healthy.
BAD_CONSOLE = re.compile(r"Kernel panic|Oops|BUG:|general protection fault|Call Trace|"
                         r"segfault|KIT-ERROR|KIT-VERIFY-FAIL")


def qemu_binary() -> str:
    path = os.environ.get("KIT_LAB_QEMU") or shutil.which(QEMU_BINARY)
    if not path:
        raise LabMissingError(f"{QEMU_BINARY} is not installed: {APT_HINT}")
    return path


def qemu_version(binary=None, env=None) -> str:
    out = subprocess.run([binary or qemu_binary(), "--version"], capture_output=True,
                         text=True, timeout=30, env=env).stdout
    return out.splitlines()[0] if out else ""


@dataclasses.dataclass(frozen=True)
class QemuBuild:
    """Which QEMU a run uses: the system's (``kind`` "system") or the one fetched from
    Debian's bookworm-backports into the lab cache (:mod:`kit.lab.backport`), with the
    firmware folders it is started with (``-L``, searched before the binary's built-in
    one) and the environment it needs (its module folder, a library path)."""
    kind: str
    binary: str
    firmware: tuple = ()
    env: dict = dataclasses.field(default_factory=dict)
    packages: tuple = ()

    def environ(self) -> dict:
        return {**os.environ, **self.env}

    def version_line(self) -> str:
        return qemu_version(self.binary, env=self.environ())

    def record(self) -> dict:
        """What a row says of it (paths are made relative to the cache by the row)."""
        return {"kind": self.kind, "binary": self.binary, "firmware": list(self.firmware),
                "env": dict(self.env), "packages": list(self.packages)}


# --qemu: the system's QEMU (Debian 12's 7.2) or 10.0 from bookworm-backports.
QEMU_CHOICES = ("7.2", "10.0")


def check_qemu_choice(choice) -> None:
    if choice is not None and choice not in QEMU_CHOICES:
        raise UnknownNameError(f"--qemu {choice}: choose 7.2 (the system's, Debian 12) or 10.0 "
                               f"(fetched from Debian's bookworm-backports)")


def resolve_qemu(choice=None, log=lambda msg: None) -> QemuBuild:
    """The QemuBuild of ``--qemu``: None is the system's whatever its version; "7.2" is the
    system's and must be 7.2; "10.0" is the backport, fetched on first use."""
    check_qemu_choice(choice)
    if choice == "10.0":
        from .backport import fetch_backport
        return fetch_backport(log=log)
    build = QemuBuild(kind="system", binary=qemu_binary())
    if choice == "7.2":
        line = build.version_line()
        if version_tuple(line)[:2] != (7, 2):
            raise LabError(f"--qemu 7.2 is the system's QEMU, but this system's says {line!r}; "
                           f"leave --qemu out to use it")
    return build


def version_tuple(text: str) -> tuple[int, ...]:
    """(7, 2, 22) from "QEMU emulator version 7.2.22 (Debian ...)"; () if unreadable."""
    m = re.search(r"version (\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(g or 0) for g in m.groups()) if m else ()


# QEMU before 9.0, under TCG, can miss guest writes during migration.  When a
# RAMBlock is a whole number of 64-page words, migration's bitmap sync takes a
# word-at-a-time fast path that clears dirty bits without resetting the emulated
# CPU's TLB entries, so later writes through those entries are never logged and
# never re-sent.  Fixed upstream in 9.0 ("physmem: Fix migration dirty bitmap
# coherency with TCG memory access", Nicholas Piggin, 2024).  Giving the guest
# 8 KiB less RAM makes the block's length not a multiple of 256 KiB, so the sync
# takes the per-page path, which does reset the TLB.  Found by the lab's
# stress + verify runs (data/lab/stress/: every destination lost pages without it).
TCG_DIRTY_SYNC_FIX = (9, 0)
WORKAROUND_KIB = 8


# QEMU does not start free page hinting at all while the postcopy-ram capability is on,
# whether or not postcopy is ever started: the balloon's precopy notifier returns before it
# asks the guest for hints.  The reason: a hinted page is cleared from the migration bitmap,
# so if the destination, running under postcopy, faults on it and asks the source for it, the
# source has nothing to send and the faulting thread waits until postcopy is over.  Commit
# fd51e54fa102 "virtio-balloon: don't start free page hinting if postcopy is possible" (David
# Hildenbrand, merged September 2021, first released in QEMU 6.2), so both lab QEMUs have it.
POSTCOPY_NO_HINTS = {"commit": "fd51e54fa10221e5a8add894c38cc1cf199f4bc4",
                     "title": "virtio-balloon: don't start free page hinting if postcopy is possible",
                     "why": "with postcopy-ram on, QEMU never asks the guest for hints: a hinted page is "
                            "clear in the migration bitmap, so a postcopy destination that faulted on it "
                            "would wait for a page the source never sends"}


def needs_tcg_dirty_sync_workaround(version: tuple) -> bool:
    return bool(version) and version < TCG_DIRTY_SYNC_FIX


def ram_option(ram_mib: int, workaround: bool) -> str:
    """QEMU's ``-m`` value: the RAM asked for, or 8 KiB less under the workaround."""
    return f"{ram_mib * 1024 - WORKAROUND_KIB}K" if workaround else f"{ram_mib}M"


# QEMU trace events the source records (log backend, with timestamps): each pop from a
# virtqueue (with -nodefaults the balloon's queues are the only ones; during a hint-on
# migration nearly every pop is one hinted 4 MiB block on the free page queue), the guest
# reading the balloon's config (it does when QEMU writes a new cmd id), and every
# migration_bitmap_sync.
TRACE_EVENTS = ("virtqueue_pop", "virtio_balloon_get_config", "migration_bitmap_sync_start",
                "migration_bitmap_sync_end")


def command_line(binary, *, ram_mib, kernel, initrd, append, free_page_hint, machine,
                 qmp, console, incoming=False, workaround=False, paused=False, trace=None,
                 firmware=(), prealloc=False) -> list[str]:
    """The QEMU command line of a lab guest.  Source and destination differ only in
    ``-incoming`` (and ``-S`` when the destination must not run before it is
    verified).  The iothread is there in both hint settings, so that "on" and
    "off" differ only in the feature (QEMU refuses free-page-hint=on without one).
    ``firmware``: folders given with ``-L`` (a fetched QEMU's own ROMs and BIOS).
    ``prealloc``: ``-mem-prealloc``, QEMU touches all of the guest's RAM before it starts."""
    cmd = [binary] + [a for d in firmware for a in ("-L", str(d))]
    cmd += ["-M", machine, "-accel", "tcg", "-smp", "1", "-m", ram_option(ram_mib, workaround),
            "-nodefaults", "-display", "none", "-no-reboot",
            "-kernel", str(kernel), "-initrd", str(initrd), "-append", append,
            "-serial", f"file:{console}",
            "-qmp", f"unix:{qmp},server=on,wait=off",
            "-object", "iothread,id=io0",
            "-device", "virtio-balloon-pci,id=balloon0,iothread=io0,"
                       f"free-page-hint={'on' if free_page_hint else 'off'}"]
    if trace is not None:
        cmd += ["-D", str(trace), "-msg", "timestamp=on"]
        for event in TRACE_EVENTS:
            cmd += ["-trace", f"enable={event}"]
    if prealloc:
        cmd += ["-mem-prealloc"]
    if incoming:
        cmd += ["-incoming", "defer"]
    if paused:
        cmd += ["-S"]
    return cmd


class Qemu:
    """One QEMU process.  ``with Qemu(...) as q:`` stops it on the way out."""

    def __init__(self, name, cmd, workdir: Path, console: Path, qmp_path: Path, env=None):
        self.name, self.cmd, self.console, self.qmp_path = name, cmd, console, qmp_path
        self.env = env
        self.log = workdir / f"{name}.log"
        self.proc = None
        self.qmp: QMP | None = None

    def start(self, qmp_timeout=30.0):
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=die_with_parent(), env=self.env)
        try:
            self.qmp = QMP(self.qmp_path, timeout=qmp_timeout, alive=self.alive)
        except Exception:
            try:
                self.proc.wait(0.5)          # let an exiting QEMU finish writing its log
            except subprocess.TimeoutExpired:
                pass
            if self.proc.poll() is not None:
                raise GuestBootError(f"{self.name} QEMU exited ({self.proc.returncode}): "
                                     f"{self.log_tail(1) or 'no message'}") from None
            raise
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def console_text(self) -> str:
        try:
            return self.console.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def console_tail(self, n=15) -> list[str]:
        return self.console_text().splitlines()[-n:]

    def log_tail(self, n=5) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-n:])
        except FileNotFoundError:
            return ""

    def wait_console(self, pattern, timeout, what) -> re.Match:
        """Wait for ``pattern`` on the console; fail early on a panic or a dead QEMU."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.console_text()
            m = rx.search(text)
            if m:
                return m
            bad = BAD_CONSOLE.search(text)
            if bad:
                line = next(ln for ln in text.splitlines() if bad.group(0) in ln)
                raise GuestBootError(f"{self.name} guest console shows {line.strip()!r} "
                                     f"while waiting for {what}")
            if not self.alive():
                raise GuestBootError(f"{self.name} QEMU exited while waiting for {what}: "
                                     f"{self.log_tail(1) or 'no message'}")
            if time.monotonic() > deadline:
                raise GuestBootError(f"{self.name} guest printed no {what} within {timeout:.0f} s "
                                     f"(last console line: {(self.console_tail(1) or [''])[0]!r})")
            time.sleep(0.1)

    def stop(self):
        if self.qmp:
            self.qmp.close()
            self.qmp = None
        if self.proc and self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
