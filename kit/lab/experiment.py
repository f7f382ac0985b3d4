"""One lab experiment: boot a guest, migrate it over 127.0.0.1, check the destination.

:func:`run_experiment` returns one row (a dict, see :data:`SCHEMA`).  Bad
input and a missing tool raise before anything starts; a failure while QEMU
runs (boot, migration, destination health) is caught and recorded in the row
with ``status: "failed"``, the stage and the message, so a matrix never drops
a run silently.  Both QEMUs are stopped and the temp folder removed on every
path, Ctrl-C included.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import re
import tempfile
import time
from pathlib import Path

from ..errors import KitError, UnknownNameError
from ..units import MiB, TARGET_PAGE_SIZE, parse_size
from .errors import LabError
from .image import build_guest, cache_dir
from .qemu import (BAD_CONSOLE, POSTCOPY_NO_HINTS, WORKAROUND_KIB, Qemu, check_qemu_choice, command_line,
                   needs_tcg_dirty_sync_workaround, ram_option, resolve_qemu, version_tuple)

SCHEMA = "kit-lab-run/2"     # 2: the curve, the trace, paths relative to <tmp> and <cache>
WORKLOADS = ("idle", "hog", "dirtying", "stress")
MACHINES = ("pc", "q35")
UNLIMITED = 1 << 40   # max-bandwidth in bytes/s that QEMU never reaches on loopback
MAX_LAB_RAM_MIB = 8 * 1024   # the seed's size; two QEMUs of it need about 16.5 GiB of the host
CURVE_FIELDS = ("transferred", "remaining", "duplicate", "normal", "dirty-sync-count", "dirty-pages-rate")


@dataclasses.dataclass
class LabConfig:
    """What one lab run does.  ``bandwidth`` is QEMU's max-bandwidth in bytes/s
    (None: no limit); ``init_on_alloc`` is the guest kernel's setting (0 is what
    2016-era kernels did; Debian's default is 1)."""
    ram: str = "1G"
    workload: str = "idle"
    free_page_hint: bool = False
    bandwidth: int | None = None
    downtime_limit_ms: int = 300
    init_on_alloc: int = 0
    machine: str = "pc"
    hog_percent: int = 90
    settle_s: float = 1.0
    boot_timeout_s: float = 120.0
    migrate_timeout_s: float = 300.0
    health_timeout_s: float = 20.0
    verify: bool = False
    tcg_workaround: bool | None = None   # None: on for QEMU < 9.0 (see kit/lab/qemu.py)
    stress_args: str = ""   # passed to `kitmem stress` as kit.stress=a,b,c (see files/kitmem.c)
    poll_ms: int = 25       # query-migrate is polled this often during the migration (the curve)
    trace: bool = True      # record the source's trace events (kit/lab/qemu.py TRACE_EVENTS)
    qemu: str | None = None  # None: the system's; "7.2" (the system's) or "10.0" (kit/lab/backport.py)
    postcopy: bool = False  # the postcopy-ram capability on both sides (the run stays pre-copy)
    # the destination touches all its RAM when it starts (QEMU's -mem-prealloc), so no page it
    # receives costs a first-touch fault during the migration
    dest_prealloc: bool = False

    def check(self) -> int:
        """Validate; return the RAM in MiB.  Raises a KitError saying what to fix."""
        ram = parse_size(self.ram, what="--ram")
        if ram % MiB or ram < 128 * MiB:
            raise KitError(f"--ram {self.ram}: the lab guest needs a whole number of MiB, "
                           f"at least 128M (e.g. 1G)")
        if ram > MAX_LAB_RAM_MIB * MiB:
            raise KitError(f"--ram {self.ram}: lab guests go up to {MAX_LAB_RAM_MIB // 1024}G, the seed's size "
                           f"(two QEMUs of it need about {2 * MAX_LAB_RAM_MIB // 1024 + 1}G of this host)")
        if not 20 <= self.poll_ms <= 50:
            raise KitError(f"poll_ms {self.poll_ms}: poll query-migrate every 20 to 50 ms")
        if self.workload not in WORKLOADS:
            raise UnknownNameError(f"unknown lab workload {self.workload!r}; choose one of "
                                   f"{', '.join(WORKLOADS)}")
        if self.machine not in MACHINES:
            raise UnknownNameError(f"unknown lab machine {self.machine!r}; choose pc or q35")
        if self.init_on_alloc not in (0, 1):
            raise KitError(f"init_on_alloc must be 0 or 1, not {self.init_on_alloc!r}")
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise KitError("--bandwidth must be positive (bytes/s, e.g. 1G), or none")
        if not 1 <= self.hog_percent <= 100:
            raise KitError(f"hog percent {self.hog_percent} must be within 1..100")
        check_qemu_choice(self.qemu)
        if self.verify and self.workload != "stress":
            raise KitError("--verify checks the stress workload's stamps: use --workload stress")
        return ram // MiB

    def append(self) -> str:
        """The guest kernel's command line."""
        parts = ["console=ttyS0", "panic=-1", "quiet", f"init_on_alloc={self.init_on_alloc}",
                 f"kit.workload={self.workload}", f"kit.hog={self.hog_percent}"]
        if self.workload == "stress" and self.stress_args:
            parts.append(f"kit.stress={self.stress_args}")
        return " ".join(parts)


def parse_bandwidth(text) -> int | None:
    if text is None or str(text).strip().lower() in ("none", "unlimited", ""):
        return None
    return parse_size(text, what="--bandwidth", page_aligned=False)


def _available_bytes():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _host():
    return {"node": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
            "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def derived(qm: dict, ram_mib: int, ram_kib: int | None = None) -> dict:
    """Pages of the guest, sent and skipped, from one query-migrate reply.

    QEMU 7.2 has no counter of hinted pages, so ``skipped`` is the guest's pages
    minus those sent as zero pages (``duplicate``) or in full (``normal``).  A
    page sent twice (dirtied again) counts twice in ``normal``, so skipped can
    undercount, never overcount, when the guest writes during migration."""
    ram = qm.get("ram", {})
    page = ram.get("page-size", TARGET_PAGE_SIZE) or TARGET_PAGE_SIZE
    guest_pages = (ram_kib if ram_kib is not None else ram_mib * 1024) * 1024 // page
    sent = ram.get("duplicate", 0) + ram.get("normal", 0)
    return {"guest-pages": guest_pages, "zero-pages": ram.get("duplicate", 0),
            "normal-pages": ram.get("normal", 0), "pages-sent": sent,
            "pages-skipped": max(guest_pages - sent, 0),
            "sent-fraction": round(sent / guest_pages, 4),
            "total-time-ms": qm.get("total-time"), "downtime-ms": qm.get("downtime"),
            "setup-time-ms": qm.get("setup-time"), "transferred-bytes": ram.get("transferred"),
            "transferred-kb": (ram.get("transferred") or 0) >> 10}


def memory_needed(ram_mib: int) -> int:
    """Bytes of host memory a run of ``ram_mib`` needs: two QEMUs and some room."""
    return 2 * ram_mib * MiB + 512 * MiB


def largest_ram_mib(avail_bytes: int | None) -> int | None:
    """The largest whole-GiB lab guest that fits in ``avail_bytes`` now (at most the seed's 8G)."""
    if avail_bytes is None:
        return None
    gib = (avail_bytes - 512 * MiB) // (2 * 1024 * MiB)
    return int(max(0, min(gib * 1024, MAX_LAB_RAM_MIB)))


def run_experiment(cfg: LabConfig, log=lambda msg: None, guest=None, progress=None) -> dict:
    """Run one lab experiment (see the module doc); returns its row.

    ``progress(stage, remaining_bytes)`` is called as the run moves on: at each stage, and at
    every poll of the migration with QEMU's ``ram.remaining`` (None outside the migration)."""
    ram_mib = cfg.check()
    build = resolve_qemu(cfg.qemu, log=log)
    binary = build.binary
    avail = _available_bytes()
    need = memory_needed(ram_mib)
    if avail is not None and avail < need:
        raise LabError(f"--ram {cfg.ram}: two QEMUs need about {need >> 20} MiB here, only "
                       f"{avail >> 20} MiB is available; use a smaller --ram (at most "
                       f"{largest_ram_mib(avail) // 1024}G fits now)")
    version = build.version_line()
    workaround = (needs_tcg_dirty_sync_workaround(version_tuple(version))
                  if cfg.tcg_workaround is None else cfg.tcg_workaround)
    ram_kib = ram_mib * 1024 - (WORKAROUND_KIB if workaround else 0)
    guest = guest or build_guest(log=log)
    row = {"schema": SCHEMA, "status": "failed", "stage": "start", "error": None,
           "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "config": dataclasses.asdict(cfg) | {"ram-mib": ram_mib},
           "qemu": build.record() | {"version-line": version,
                    "tcg-dirty-sync-workaround": {
                        "on": workaround, "m": ram_option(ram_mib, workaround),
                        "default": needs_tcg_dirty_sync_workaround(version_tuple(version)),
                        "set-by": "default for this QEMU's version" if cfg.tcg_workaround is None
                                  else "asked for" if cfg.tcg_workaround else "--no-tcg-workaround",
                        "why": "QEMU < 9.0 under TCG misses writes after a migration bitmap sync of a "
                               "RAMBlock that is a whole number of 256 KiB (fixed in 9.0 by 'physmem: Fix "
                               "migration dirty bitmap coherency with TCG memory access'); 8 KiB less "
                               "RAM takes the per-page sync that resets the TLB"}},
           **({"postcopy": POSTCOPY_NO_HINTS | {"capability": "postcopy-ram", "started": False}}
              if cfg.postcopy else {}),
           "guest": {
               "kernel-package": guest.kernel_package, "busybox-package": guest.busybox_package,
               "modules": list(guest.modules), "compiler": guest.compiler,
               "append": cfg.append()},
           "host": _host()}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kit-lab-") as tmp:
        tmp = Path(tmp)
        common = dict(ram_mib=ram_mib, kernel=guest.kernel, initrd=guest.initrd, workaround=workaround,
                      append=cfg.append(), free_page_hint=cfg.free_page_hint, machine=cfg.machine,
                      firmware=build.firmware)
        env = build.environ() if build.env else None
        trace = tmp / "src.trace" if cfg.trace else None
        src = Qemu("source", command_line(binary, qmp=tmp / "src.qmp", console=tmp / "src.console",
                                          trace=trace, **common), tmp, tmp / "src.console", tmp / "src.qmp",
                  env=env)
        dst = Qemu("destination", command_line(binary, qmp=tmp / "dst.qmp", console=tmp / "dst.console",
                                               incoming=True, paused=cfg.verify,
                                               prealloc=cfg.dest_prealloc, **common),
                   tmp, tmp / "dst.console", tmp / "dst.qmp", env=env)
        row["command-lines"] = {"source": src.cmd, "destination": dst.cmd}
        try:
            _run(cfg, ram_mib, ram_kib, src, dst, row, log, tmp, progress or (lambda stage, rem: None))
        except LabError as e:
            row["error"] = str(e)
        finally:
            row["source-console-tail"] = src.console_tail()
            row.setdefault("destination", {})["console-tail"] = dst.console_tail()
            src.stop()
            dst.stop()
            started = row.pop("migrate-started-unix", None)
            if trace is not None and started is not None:
                row["trace"] = read_trace(trace, started)
        row = relative_paths(row, {str(tmp): "<tmp>", str(cache_dir()): "<cache>"})
    row["wall-s"] = round(time.monotonic() - t0, 2)
    row["host"]["loadavg-after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    if row["error"] is None:
        row["status"], row["stage"] = "ok", "done"
    return row


LOAD_WAIT_S = 30.0


def destination_status_after_load(dst, timeout_s: float = LOAD_WAIT_S, poll_s: float = 0.05) -> str:
    """The destination's run state once it has left "inmigrate", or "inmigrate" after ``timeout_s``.

    The source reports "completed" when it has sent the whole stream; the destination loads the
    last of it (the device state) and only then changes state, a moment later and later still on
    a busy host.  So a check made the moment the source completes can still see "inmigrate"."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = dst.qmp.execute("query-status").get("status")
        if status != "inmigrate" or time.monotonic() > deadline:
            return status
        time.sleep(poll_s)


def _run(cfg, ram_mib, ram_kib, src, dst, row, log, tmp, progress):
    row["stage"] = "boot"
    progress("boot", None)
    log(f"booting the source ({cfg.ram}, {cfg.workload}, free-page-hint="
        f"{'on' if cfg.free_page_hint else 'off'})")
    src.start()
    row["qemu"]["version"] = src.qmp.version.get("qemu")
    row["qemu"]["package"] = src.qmp.version.get("package", "").strip()
    t_boot = time.monotonic()
    m = src.wait_console(r"KIT-READY[^\n]*\n", cfg.boot_timeout_s, "KIT-READY")
    row["guest"]["ready-line"] = m.group(0).strip()
    row["guest"]["boot-s"] = round(time.monotonic() - t_boot, 2)
    for line in src.console_text().splitlines():
        if line.startswith(("KIT-HOG", "KIT-BALLOON", "KIT-STRESS", "KIT-DIRTY")):
            row["guest"][line.split()[0].lower()] = line.strip()
    time.sleep(cfg.settle_s)

    row["stage"] = "destination"
    progress("destination", None)
    dst.start()
    if cfg.postcopy:
        # Both sides must have the capability (the destination before it listens).  The run
        # never sends migrate-start-postcopy, so it completes as pre-copy: what changes is that
        # QEMU does not start free page hinting at all (see kit/lab/qemu.py POSTCOPY_NO_HINTS).
        for q in (dst, src):
            q.qmp.execute("migrate-set-capabilities",
                          capabilities=[{"capability": "postcopy-ram", "state": True}])
    dst.qmp.execute("migrate-incoming", uri="tcp:127.0.0.1:0")
    addr = dst.qmp.execute("query-migrate").get("socket-address") or []
    port = next((a.get("port") for a in addr if a.get("type") in ("inet", "tcp")), None)
    if not port:
        raise LabError(f"the destination did not say which port it listens on: {addr}")

    row["stage"] = "migrate"
    src.qmp.execute("migrate-set-parameters", **{
        "max-bandwidth": cfg.bandwidth or UNLIMITED, "downtime-limit": cfg.downtime_limit_ms})
    row["migrate-parameters"] = src.qmp.execute("query-migrate-parameters")
    row["migrate-capabilities"] = {c["capability"]: c["state"] for c in
                                   src.qmp.execute("query-migrate-capabilities") if c["state"]}
    log(f"migrating to 127.0.0.1:{port}")
    row["migrate-started-unix"] = time.time()       # the trace's clock (gettimeofday)
    t_mig = time.monotonic()
    src.qmp.execute("migrate", uri=f"tcp:127.0.0.1:{port}")
    deadline = t_mig + cfg.migrate_timeout_s
    curve = row["curve"] = {"t-ms": [], "status": [], **{f: [] for f in CURVE_FIELDS}}
    while True:
        qm = src.qmp.execute("query-migrate")
        status = qm.get("status")
        ram = qm.get("ram", {})
        curve["t-ms"].append(round((time.monotonic() - t_mig) * 1000, 1))
        curve["status"].append(status)
        for f in CURVE_FIELDS:
            curve[f].append(ram.get(f))
        progress("migrate", ram.get("remaining"))
        if status in ("completed", "failed", "cancelled"):
            break
        if time.monotonic() > deadline:
            src.qmp.execute("migrate_cancel")
            row["query-migrate"] = qm
            raise LabError(f"migration did not complete within {cfg.migrate_timeout_s:.0f} s "
                           f"(status {status}); cancelled")
        if not src.alive():
            raise LabError(f"the source QEMU died during migration: {src.log_tail(1)}")
        time.sleep(cfg.poll_ms / 1000)
    t_done = time.monotonic()
    row["query-migrate"] = qm
    row["derived"] = derived(qm, ram_mib, ram_kib)
    if status != "completed":
        raise LabError(f"migration {status}: {qm.get('error-desc', 'no reason given')}")

    if cfg.verify:
        # The destination was started with -S: check its memory before it runs a
        # single guest instruction, and against the paused source, then let it go.
        from .verify import diff_source_destination, verify_destination
        row["stage"] = "verify"
        if destination_status_after_load(dst) == "inmigrate":
            raise LabError(f"the destination was still loading {LOAD_WAIT_S:g} s after the source completed")
        row["verify"] = verify_destination(dst, ram_mib, tmp, log=log, machine=cfg.machine)
        diff = row["src-dst-diff"] = diff_source_destination(src, dst, ram_mib, tmp, machine=cfg.machine,
                                                             hint=cfg.free_page_hint)
        row["verdict"] = {k: diff[k] for k in ("lost-writes", "harmless", "unplaced-not-counted", "rule")}
        cls = diff["classes"]
        log(f"source vs destination: {diff['pages-differ']} pages differ ({diff['differ-dst-zero']} of "
            f"them zero on the destination): {cls['held-live']} held live by the guest (lost writes), "
            f"{cls['free']} free (harmless), {cls['unplaced']} the dumps cannot place (kernel or free"
            f"{', lost writes with hints off' if not cfg.free_page_hint else ', not counted'})")
        dst.qmp.execute("cont")
        t_done = time.monotonic()

    row["stage"] = "destination-health"
    progress("destination-health", None)
    health = row.setdefault("destination", {})
    health["status"] = destination_status_after_load(dst)
    if health["status"] != "running":
        raise LabError(f"destination is {health['status']!r} after switch-over, not running")
    m = dst.wait_console(r"KIT-HB (\d+)", cfg.health_timeout_s, "heartbeat after switch-over")
    health["heartbeat"] = int(m.group(1))
    health["heartbeat-after-s"] = round(time.monotonic() - t_done, 2)
    time.sleep(3.0)   # a few seconds of running: an oops from a bad page often comes late
    bad = BAD_CONSOLE.search(dst.console_text())
    health["panic"] = bool(bad)
    if bad:
        raise LabError(f"destination console shows {bad.group(0)!r} after switch-over")
    health["alive"] = dst.alive()
    if cfg.verify and (row["verify"]["lost-pages"] or row["verdict"]["lost-writes"]):
        raise LabError(f"verify: {row['verdict']['lost-writes']} lost writes (pages the guest holds, "
                       f"differing from the paused source); the stamp check counts "
                       f"{row['verify']['lost-pages']} lost pages on the destination")


_TRACE_LINE = re.compile(r"^\d+@(\d+\.\d+):(\w+)(.*)$")


def read_trace(path: Path, t0_unix: float) -> dict:
    """The source's trace events, as ms after the migrate command (QEMU's log backend with
    ``-msg timestamp=on`` writes ``pid@seconds.micros:event args``).

    ``hint-pops-ms`` are the pops of the virtqueue popped most often during the migration: with
    hints on that is the free page queue, one pop a hinted 4 MiB block (or a cmd id); the other
    queues are counted in ``pops-per-queue`` (queues numbered in order of first use, not by address)."""
    out = {"bitmap-sync-start-ms": [], "bitmap-sync-end-ms": [], "get-config-ms": [],
           "hint-pops-ms": [], "pops-per-queue": []}
    pops: dict = {}
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return out | {"error": "no trace file"}
    for line in text.splitlines():
        m = _TRACE_LINE.match(line)
        if not m:
            continue
        t = round((float(m.group(1)) - t0_unix) * 1000, 2)
        event, args = m.group(2), m.group(3)
        if event == "migration_bitmap_sync_start":
            out["bitmap-sync-start-ms"].append(t)
        elif event == "migration_bitmap_sync_end":
            out["bitmap-sync-end-ms"].append(t)
        elif event == "virtio_balloon_get_config":
            out["get-config-ms"].append(t)
        elif event == "virtqueue_pop":
            vq = args.split("vq ", 1)[1].split()[0] if "vq " in args else "?"
            pops.setdefault(vq, []).append(t)
    queues = sorted(pops.values(), key=lambda ts: ts[0])
    out["pops-per-queue"] = [sum(1 for t in ts if t >= 0) for ts in queues]
    if queues:
        busiest = max(queues, key=lambda ts: sum(1 for t in ts if t >= 0))
        out["hint-pops-ms"] = [t for t in busiest if t >= 0]
    return out


def relative_paths(obj, mapping: dict):
    """``obj`` with every string's absolute folder prefixes in ``mapping`` replaced (the temp
    folder by <tmp>, the lab cache by <cache>), so a row says nothing of this machine's paths."""
    if isinstance(obj, str):
        for prefix, name in mapping.items():
            obj = obj.replace(prefix, name)
        return obj
    if isinstance(obj, list):
        return [relative_paths(x, mapping) for x in obj]
    if isinstance(obj, dict):
        return {k: relative_paths(v, mapping) for k, v in obj.items()}
    return obj


def save_row(row: dict, out_dir: Path, name: str | None = None) -> Path:
    """Write one row as JSON under ``out_dir``; the name says what ran and when."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    c = row["config"]
    stamp = re.sub(r"[^0-9T]", "", row["started"])[:15]
    q = row.get("qemu") or {}
    tag = "" if q.get("kind", "system") == "system" else f"-qemu{'.'.join(map(str, version_tuple(q.get('version-line', ''))[:2]))}"
    tag += "-postcopy" if c.get("postcopy") else ""
    tag += "-dest-prealloc" if c.get("dest_prealloc") else ""
    name = name or (f"{stamp}-{c['ram']}-{c['workload']}-hint-{'on' if c['free_page_hint'] else 'off'}"
                    f"-ioa{c['init_on_alloc']}{tag}.json")
    path = out_dir / name
    path.write_text(json.dumps(row, indent=1, sort_keys=True) + "\n")
    return path


def summary_line(row: dict) -> str:
    c, d = row["config"], row.get("derived") or {}
    head = (f"{c['ram']:>4} {c['workload']:6} hint {'on ' if c['free_page_hint'] else 'off'} "
            f"ioa={c['init_on_alloc']}")
    q = row.get("qemu") or {}
    if q.get("version-line"):
        v = ".".join(map(str, version_tuple(q["version-line"])[:2]))
        wa = (q.get("tcg-dirty-sync-workaround") or {}).get("on")
        head += f" qemu {v}{' -8K' if wa else ''}{' postcopy' if c.get('postcopy') else ''}"
        head += " dest-prealloc" if c.get("dest_prealloc") else ""
    if row["status"] != "ok":
        return f"{head}  FAILED at {row['stage']}: {row['error']}"
    extra = ""
    if "verify" in row:
        extra = f"  lost {row['verify']['lost-pages']}"
        verdict = row.get("verdict")
        if verdict:
            extra = (f"  lost writes {verdict['lost-writes']} (stamp check {row['verify']['lost-pages']}; "
                     f"{verdict['harmless']} harmless differences)")
    return (f"{head}  {d['total-time-ms']:>6} ms  {d['transferred-kb']:>8} KB  sent "
            f"{100 * d['sent-fraction']:5.1f}% of pages  downtime {d['downtime-ms']} ms  "
            f"destination healthy{extra}")


def run_matrix(rams=("1G", "2G"), workloads=("idle", "hog"), hints=(False, True), reps=3,
               out_dir: Path | None = None, log=lambda msg: None, progress=None, pause_s=0.0,
               **config) -> list[dict]:
    """Every combination ``reps`` times, repetition outermost (so slow drift of the
    host spreads over all cells); each row is saved as it finishes, failed ones too.

    ``pause_s``: seconds to wait before every run but the first.  On a host that is itself a
    VM reporting its free pages (data/lab/freed-memory/), memory a run has just freed is cheap
    for the next run's destination to touch, for up to about 30 s; a pause that long lets
    every run start from memory handed back to the host."""
    cfgs = [LabConfig(ram=r, workload=w, free_page_hint=h, **config)
            for r in rams for w in workloads for h in hints]
    for c in cfgs:
        c.check()                  # every bad input before the first QEMU starts
    if reps < 1:
        raise KitError(f"--reps {reps}: need at least 1")
    if not 0 <= pause_s <= 600:
        raise KitError(f"--pause {pause_s}: give 0 to 600 seconds between runs")
    guest = build_guest(log=log)
    rows = []
    todo = [(rep, c) for rep in range(reps) for c in cfgs]
    done_wall = done_mib = 0.0
    for i, (rep, c) in enumerate(todo, 1):
        left_mib = sum(parse_size(x.ram) // MiB for _, x in todo[i - 1:])
        pauses = pause_s * (len(todo) - i)
        eta = (f", about {(done_wall / done_mib * left_mib + pauses) / 60:.0f} min left"
               if done_mib else "")
        if i > 1 and pause_s:
            time.sleep(pause_s)
        log(f"run {i} of {len(todo)}: {c.ram} {c.workload} hint {'on' if c.free_page_hint else 'off'}, "
            f"repetition {rep + 1}{eta}")
        row = run_experiment(c, log=log, guest=guest, progress=progress)
        done_wall += row.get("wall-s", 0.0)
        done_mib += parse_size(c.ram) // MiB
        row["rep"] = rep
        row["pause-before-s"] = pause_s if i > 1 else 0.0
        if out_dir is not None:
            row["file"] = save_row(row, out_dir).name
        rows.append(row)
        log(summary_line(row))
    return rows
