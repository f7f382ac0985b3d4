"""``python -m kit``: the model from a terminal (thin: parse, call, print).

Bad input prints one line on stderr and exits 2; it never shows a traceback.
"""
from __future__ import annotations

import argparse
import json
import re
import sys

from .errors import KitError
from .units import TARGET_PAGE_SIZE, format_size, parse_ram_size

# Peak memory of ``migrate`` per 4 KiB page of guest RAM: measured 14-16 bytes (bitmaps,
# zero flags, versions, the dirty log, index arrays); twice that as a safety margin.
_MODEL_BYTES_PER_PAGE = 32


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # argparse reads "-1G" as an unknown option, so "--ram -1G" would fail with
        # "expected one argument"; treat anything that starts like a negative number
        # as a value, so parse_size can say "must be positive".
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def error(self, message):          # one line, exit 2 (argparse prints usage too)
        raise KitError(f"{self.prog}: {message} (see --help)")


def _size(text, what="--ram"):
    """A guest RAM size read as QEMU reads -m: a bare number is MiB, fractions need a unit."""
    return parse_ram_size(text, what=what)


def _max_below_4g(text):
    """--max-ram-below-4g as bytes (None: the machine's default), errors naming the option."""
    if text is None:
        return None
    from .memmap import _parse_below_4g
    return _parse_below_4g(text, "--max-ram-below-4g")


def _rate(text, what):
    """A rate in MiB/s: a number >= 0 (errors name the option)."""
    try:
        value = float(str(text).replace("_", ""))
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise KitError(f"{what}: expected a number of MiB/s >= 0, e.g. 64, got {text!r}")
    return value


def _seed(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def _available_memory():
    """Bytes this process can still allocate (MemAvailable, capped by a cgroup limit); None if unknown."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit != "max":
            room = int(limit) - used
            avail = room if avail is None else min(avail, room)
    except (OSError, ValueError):
        pass
    return avail


def _add_machine(p):
    p.add_argument("--machine", default="pc", help="pc (default), pc-i440fx-1.7 or q35")
    p.add_argument("--max-ram-below-4g", default=None, metavar="SIZE",
                   help="the machine property of that name (at most 4G)")


def build_parser():
    ap = _Parser(prog="python -m kit", description="Model of the 2016 QEMU RFC "
                 "'A PV solution for live migration optimization'.", epilog=EXIT_CODES,
                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=_Parser,
                            metavar="{memmap,migrate,reproduce,lab}")

    p = sub.add_parser("memmap", help="patch 1: how QEMU splits guest RAM around the PCI hole")
    p.add_argument("--ram", required=True, help="guest RAM as QEMU's -m: 8G, 3.5G, 512M, 4096 (MiB)")
    _add_machine(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("migrate", help="migrate a modelled guest and print query-migrate statistics",
                       epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ram", default="8G", help="guest RAM as QEMU's -m: 8G, 3.5G, 4096 (MiB) (default 8G)")
    p.add_argument("--workload", default="idle", help="idle, hog or dirtying")
    p.add_argument("--mode", default="original",
                   help="original, pv (the RFC), hint (free page hinting, QEMU 4.0) or "
                        "report (free page reporting's steady state)")
    _add_machine(p)
    p.add_argument("--preset", default="seed-2016", help="cost model preset")
    p.add_argument("--verify", action="store_true", help="check every page at the destination")
    p.add_argument("--inject", default=None, help="a deliberate fault, e.g. free-pages-before-dirty-log")
    p.add_argument("--seed", type=_seed, default=0, help="random seed of the workload (>= 0)")
    p.add_argument("--dma-mib-s", default="0", metavar="RATE",
                   help="a disk read in the guest: MiB/s of fresh page-cache pages a device fills by "
                        "DMA while it migrates (default 0)")
    p.add_argument("--dma-writer", default="emulated",
                   help="who does those writes: emulated (a device QEMU emulates, default) or vhost")
    p.add_argument("--rfc-filter", default="overwrite",
                   help="mode pv: overwrite (the RFC, default), and, hold-bql or migration-bitmap "
                        "(candidate repairs; see notebook 06)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("reproduce", help="the seed's table: model next to the published numbers")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("lab", help="the same experiment on a real QEMU (TCG, 127.0.0.1)")
    lab = p.add_subparsers(dest="labcmd", required=True, parser_class=_Parser,
                           metavar="{check,run,matrix}")
    lab.add_parser("check", help="what the lab needs, what is missing, and the apt command that fixes it")
    for name, helptext in (("run", "boot a guest, migrate it once, check the destination"),
                           ("matrix", "every combination, --reps times, one JSON per run")):
        q = lab.add_parser(name, help=helptext)
        if name == "run":
            q.add_argument("--ram", default="1G", help="guest RAM, 128M..8G (default 1G)")
            q.add_argument("--workload", default="idle", help="idle, hog or stress")
            q.add_argument("--free-page-hint", default="off", help="on or off (QEMU's virtio-balloon property)")
            q.add_argument("--json", action="store_true", help="print the whole row as JSON")
            q.add_argument("--out", default=None, metavar="DIR", help="also save the row as JSON in DIR")
        else:
            q.add_argument("--ram", default="1G,2G", help="comma-separated sizes (default 1G,2G)")
            q.add_argument("--workload", default="idle,hog", help="comma-separated (default idle,hog)")
            q.add_argument("--free-page-hint", default="off,on", help="comma-separated (default off,on)")
            q.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
            q.add_argument("--pause", type=float, default=0.0, metavar="S",
                           help="seconds to wait before each run but the first (default 0); about 30 "
                                "lets a VM host take back the memory the last run freed")
            q.add_argument("--out", default="data/lab", metavar="DIR",
                           help="where the JSON rows go (default data/lab)")
        q.add_argument("--bandwidth", default="none",
                       help="QEMU max-bandwidth in bytes/s, e.g. 1G or 100M (default none: no limit)")
        q.add_argument("--downtime-limit", type=int, default=300, metavar="MS",
                       help="QEMU downtime-limit in ms (default 300)")
        q.add_argument("--init-on-alloc", type=int, default=0, choices=(0, 1),
                       help="the guest kernel's init_on_alloc (default 0; Debian's default is 1)")
        q.add_argument("--machine", default="pc", help="pc or q35 (default pc)")
        q.add_argument("--verify", action="store_true",
                       help="stress workload only: read the destination's memory and count lost pages")
        q.add_argument("--stress-args", default="", help="arguments of the stress workload (see kitmem.c)")
        q.add_argument("--qemu", default=None, metavar="7.2|10.0",
                       help="which QEMU: 7.2 is the system's (Debian 12), 10.0 is fetched from Debian's "
                            "bookworm-backports into the lab cache, never installed (default: the system's)")
        q.add_argument("--postcopy", action="store_true",
                       help="set the postcopy-ram capability on both QEMUs (the run stays pre-copy; "
                            "QEMU then starts no free page hinting)")
        q.add_argument("--dest-prealloc", action="store_true",
                       help="start the destination with -mem-prealloc: it touches all its RAM first, so "
                            "no page it receives costs a first-touch fault while it migrates")
        q.add_argument("--no-tcg-workaround", action="store_true",
                       help="give the guest exactly --ram even on QEMU < 9.0, whose TCG dirty tracking "
                            "then misses writes (see kit/lab/qemu.py); to see the bug")
        q.add_argument("--tcg-workaround", default="auto", metavar="auto|on|off",
                       help="8 KiB less guest RAM against QEMU < 9.0's TCG bug: auto (on for QEMU < 9.0, "
                            "the default), on (on any QEMU, e.g. 10.0, to compare) or off")
    return ap


def cmd_memmap(a):
    from .memmap import pc_memory_map
    _size(a.ram)                                 # errors name --ram
    mm = pc_memory_map(a.ram, a.machine, _max_below_4g(a.max_ram_below_4g))
    d = mm.to_dict()
    if a.json:
        return json.dumps(d, indent=2)
    rows = [f"machine            {mm.machine}", f"ram_size           {format_size(mm.ram_size)}",
            f"lowmem             {format_size(mm.lowmem)} ({mm.lowmem:#x})",
            f"below_4g_mem_size  {format_size(mm.below_4g_mem_size)}",
            f"above_4g_mem_size  {format_size(mm.above_4g_mem_size)}",
            f"PCI hole           {mm.hole_pages} frames; max_pfn {mm.max_pfn:#x}"]
    return "\n".join(rows)


def _check_fits(ram, text):
    """Refuse a guest the model cannot hold in this machine's memory (instead of a
    MemoryError traceback, or the OOM killer)."""
    need = ram // TARGET_PAGE_SIZE * _MODEL_BYTES_PER_PAGE
    avail = _available_memory()
    if avail is not None and need > avail:
        raise KitError(f"--ram {text}: modelling it page by page needs about "
                       f"{format_size(-(-need // (1 << 20)) << 20)} of memory here, but only "
                       f"{avail >> 20} MiB is available; use a smaller --ram")


def cmd_migrate(a):
    """Returns (text, exit code): 1 when the run lost pages, stalled or did not converge."""
    from .guest import OutOfMemory
    from .scenario import Scenario, run
    ram = _size(a.ram)
    s = Scenario(ram=ram, workload=a.workload, mode=a.mode, machine=a.machine,
                 max_ram_below_4g=_max_below_4g(a.max_ram_below_4g), cost=a.preset, seed=a.seed,
                 inject=a.inject, verify=a.verify, dma_mib_s=_rate(a.dma_mib_s, "--dma-mib-s"),
                 dma_writer=a.dma_writer, rfc_filter=a.rfc_filter)
    from .memmap import pc_memory_map
    pc_memory_map(s.ram, s.machine, s.max_ram_below_4g)   # layout errors before the memory check
    _check_fits(ram, a.ram)
    try:
        r = run(s)
    except OutOfMemory as e:
        raise KitError(f"--ram {a.ram}: the modelled {a.workload} guest does not fit in it "
                       f"({e}); give it more RAM, e.g. --ram 16M or more") from None
    except MemoryError:
        raise KitError(f"--ram {a.ram}: this machine ran out of memory modelling the guest "
                       f"page by page; use a smaller --ram") from None
    st = r.stats
    problem = run_problem(st)
    if a.json:
        return json.dumps({**st, "scenario": s.to_dict()}, indent=2), problem
    ram = st["ram"]
    lines = [s.echo(), f"status: {st['status']}", f"mode: {st['mode']}",
             f"total time: {st['total-time']} ms",
             f"downtime: {'-' if st['downtime'] is None else st['downtime']} ms",
             f"setup: {st['setup-time']} ms",
             f"transferred ram: {ram['transferred'] >> 10} kbytes",
             f"throughput: {ram['mbps']:.2f} mbps",
             f"remaining ram: {ram['remaining'] >> 10} kbytes",
             f"total ram: {ram['total'] >> 10} kbytes",
             f"duplicate: {ram['duplicate']} pages", f"skipped: {ram['skipped']} pages",
             f"normal: {ram['normal']} pages", f"normal bytes: {ram['normal-bytes'] >> 10} kbytes",
             f"dirty sync count: {ram['dirty-sync-count']}"]
    if st["mode"] in ("pv", "hint"):
        lines.append(f"free pages skipped ({'hints' if st['mode'] == 'hint' else 'RFC'}): "
                     f"{ram['free-skipped']} pages")
    if "free-page-hint" in st:
        h = st["free-page-hint"]
        ids = ", ".join(f"{i:#x}" for i in h["cmd-ids"]) or "none"
        lines.append(f"free page hint: {h['rounds']} rounds (cmd ids {ids}), "
                     f"{h['blocks-hinted']} blocks of 4 MiB hinted, "
                     f"{h['blocks-freed-at-done']} freed at DONE")
    if "free-page-reporting" in st:
        rp = st["free-page-reporting"]
        lines.append(f"free page reporting: {rp['reported-pages']} pages reported before migration "
                     f"(read as zero)")
    if "stall" in st:
        lines.append(f"stalled: {st['stall']}")
    if "device-writes" in st:
        dw = st["device-writes"]
        lines.append(f"device writes ({dw['writer']}): {dw['pages']} pages filled by DMA "
                     f"at {dw['mib-per-s']:g} MiB/s")
    if "verify" in st:
        lines.append(f"verify: {st['verify']['lost-pages']} lost pages")
        if "lost-device-written-pages" in st["verify"]:
            lines.append(f"verify: {st['verify']['lost-device-written-pages']} of them written by a "
                         f"device ({st['device-writes']['writer']}) and never resent")
    return "\n".join(lines), problem


def run_problem(stats) -> str | None:
    """Why a finished run counts as a failure (exit 1), or None: lost pages, a stall, or no
    convergence."""
    v = stats.get("verify")
    if v and v.get("lost-pages"):
        return f"the destination lost {v['lost-pages']} pages (verify)"
    if stats.get("stall"):
        return f"the migration did not finish: {stats['stall']}"
    if stats["status"] != "completed":
        return f"the migration did not complete (status {stats['status']})"
    return None


def cmd_reproduce(a):
    from .reproduce import reproduce_seed
    rows = reproduce_seed()
    if a.json:
        return json.dumps(rows, indent=2)
    out = [f"{'case':9} {'mode':9} {'time model':>10} {'seed':>6} {'diff':>7}   "
           f"{'KB model':>10} {'seed':>10} {'diff':>7}"]
    for r in rows:
        dt = 100 * (r["total-time-ms"] / r["seed-total-time-ms"] - 1)
        db = 100 * (r["transferred-kb"] / r["seed-transferred-kb"] - 1)
        out.append(f"{r['case']:9} {r['mode']:9} {r['total-time-ms']:>10} {r['seed-total-time-ms']:>6} "
                   f"{dt:>+6.1f}%   {r['transferred-kb']:>10} {r['seed-transferred-kb']:>10} {db:>+6.1f}%")
    return "\n".join(out)


def _on_off(text, what="--free-page-hint"):
    t = str(text).strip().lower()
    if t not in ("on", "off"):
        raise KitError(f"{what}: expected on or off, got {text!r}")
    return t == "on"


def _workaround(a):
    t = str(a.tcg_workaround).strip().lower()
    if t not in ("auto", "on", "off"):
        raise KitError(f"--tcg-workaround {a.tcg_workaround}: expected auto, on or off")
    if a.no_tcg_workaround:
        if t == "on":
            raise KitError("--no-tcg-workaround and --tcg-workaround on contradict each other: give one")
        return False
    return None if t == "auto" else t == "on"


def _lab_config(a, **over):
    from .lab.experiment import parse_bandwidth
    return dict(bandwidth=parse_bandwidth(a.bandwidth), downtime_limit_ms=a.downtime_limit,
                init_on_alloc=a.init_on_alloc, machine=a.machine, verify=a.verify,
                stress_args=a.stress_args, tcg_workaround=_workaround(a),
                qemu=a.qemu, postcopy=a.postcopy, dest_prealloc=a.dest_prealloc, **over)


class _ProgressLine:
    """One live line on stderr (a terminal only): the lab's stage, then MB remaining while it
    migrates.  Log lines are printed above it.  Off when stderr is not a terminal, so logs and
    --json output stay clean."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.on = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.shown = False

    def __call__(self, stage, remaining):
        if not self.on:
            return
        text = f"lab: {stage}" + (f", {remaining / 1e6:,.0f} MB remaining" if remaining is not None else "")
        self.stream.write("\r\033[K" + text)
        self.stream.flush()
        self.shown = True

    def wrap(self, log):
        def inner(msg):
            if self.shown:
                self.stream.write("\r\033[K")
                self.shown = False
            log(msg)
        return inner

    def end(self):
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False


def cmd_lab(a):
    """Returns (text, exit code): a run that failed on the real QEMU exits 1 after its row."""
    from .lab.check import check, report
    if a.labcmd == "check":
        text, ok = report(check())
        return text, 0 if ok else 1
    from .lab.experiment import LabConfig, run_experiment, run_matrix, save_row, summary_line
    say = lambda msg: print(f"lab: {msg}", file=sys.stderr, flush=True)
    if a.downtime_limit <= 0:
        raise KitError(f"--downtime-limit {a.downtime_limit}: must be a positive number of ms")
    progress = _ProgressLine()
    if a.labcmd == "run":
        cfg = LabConfig(ram=a.ram, workload=a.workload, free_page_hint=_on_off(a.free_page_hint),
                        **_lab_config(a))
        try:
            row = run_experiment(cfg, log=progress.wrap(say), progress=progress)
        finally:
            progress.end()
        if a.out:
            say(f"saved {save_row(row, a.out)}")
        text = json.dumps(row, indent=1, sort_keys=True) if a.json else summary_line(row)
        return text, 0 if row["status"] == "ok" else 1
    split = lambda s: [x.strip() for x in s.split(",") if x.strip()]
    try:
        rows = run_matrix(rams=split(a.ram), workloads=split(a.workload),
                          hints=[_on_off(h) for h in split(a.free_page_hint)], reps=a.reps, pause_s=a.pause,
                          out_dir=a.out, log=progress.wrap(say), progress=progress, **_lab_config(a))
    finally:
        progress.end()
    failed = sum(r["status"] != "ok" for r in rows)
    text = "\n".join(summary_line(r) for r in rows) + f"\n{len(rows)} runs, {failed} failed; rows in {a.out}"
    return text, 0 if not failed else 1


EXIT_CODES = """exit codes:
  0  the command did what it says (migrate: completed, and --verify found no lost page)
  1  migrate: the run lost pages, stalled or did not converge (one line on stderr says which);
     lab: a run failed on the real QEMU; the output could not be written (closed pipe, full disk)
  2  bad input (an unknown name, an unreadable size, an injection the mode does not make, ...)"""


def main(argv=None):
    code = 0
    try:
        a = build_parser().parse_args(argv)
        out = {"memmap": cmd_memmap, "migrate": cmd_migrate, "reproduce": cmd_reproduce,
               "lab": cmd_lab}[a.cmd](a)
        if isinstance(out, tuple):
            out, code = out
    except KitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    problem = None
    if isinstance(code, str):           # migrate: the reason a run failed
        problem, code = code, 1
    elif code is None:
        code = 0
    try:
        print(out)
        sys.stdout.flush()
    except (BrokenPipeError, OSError) as e:
        _quiet_stdout()
        what = "the output was closed early" if isinstance(e, BrokenPipeError) else \
            f"cannot write the output ({e.strerror or e})"
        print(f"error: {what}", file=sys.stderr)
        return 1
    if problem:
        print(f"error: {problem}", file=sys.stderr)
    return code


def _quiet_stdout():
    """Point stdout at /dev/null, so the interpreter's last flush at exit cannot fail again."""
    import os
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
