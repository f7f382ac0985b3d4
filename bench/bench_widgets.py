"""End-to-end latency of the kit's main controls in a real browser: key press -> new picture.

For each control (00's run button, 01's RAM slider, 04's t slider) this starts a JupyterLab
the way ``tests/test_browser.py`` does (its ``LabServer``: 127.0.0.1, a free port, a random
token, private config/runtime/settings dirs, its own process group), opens a two-cell notebook
that builds the notebook's widget, and drives the control from the keyboard with Playwright
and Debian's ``/usr/bin/chromium``: ArrowRight on the slider's handle, Enter on the button.

What is timed, in the page: from the ``keydown`` event (its ``timeStamp``) to the ``load``
event of the last ``widgets.Image`` picture that changed because of it.  That covers the
widget's message to the kernel, the model and the redraw there, the PNG's trip back and the
browser decoding it.  After each press the script waits until the pictures have been quiet
for a while, so presses do not queue.  Prints median and p90 per control, and the load average.

    .venv/bin/python bench/bench_widgets.py              # the kit in this checkout
    .venv/bin/python bench/bench_widgets.py --kit DIR    # another kit (e.g. a `git archive`)

Every process it starts (server, kernels, browser) and every temp dir is gone when it ends,
on success, on an error, on Ctrl-C and on SIGTERM.  Not a test: the numbers depend on the
machine and its load.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

# Each control: the notebook's widget, built as the notebook builds it, and how to move it.
CONTROLS = {
    "00 run button": dict(
        code=("from kit.viz import memmap_view as mv\n"
              "live = mv.LiveGuestMap(ram='1G', workload='dirtying', seed=0)\nlive.widget"),
        kind="button", label="let it run 100 ms"),
    "01 RAM slider": dict(
        code=("from kit.viz import memmap_view as mv\n"
              "explorer = mv.MemoryMapWidget(machine='pc', ram_gib=3.0)\nexplorer.widget"),
        kind="slider", label="-m (GiB)"),
    "04 t slider": dict(
        # from 150 ms: the first two steps are inside setup, where no page map changes
        code=("from kit.viz.player import BulkPlayer\n"
              "player = BulkPlayer('2G', 'hog', seed=0, step_ms=50)\nplayer.slider.value = 150\n"
              "player.widget"),
        kind="slider", label="t (ms)"),
}

# Installed once per page: keydown time, then the load time of every widget picture.
WATCH_JS = """() => {
  const k = window.__kit = {key: null, loads: []};
  document.addEventListener('keydown', e => { k.key = e.timeStamp; k.loads = []; }, true);
  const watched = new WeakSet();
  const watch = img => {
    if (watched.has(img)) return;
    watched.add(img);
    img.addEventListener('load', () => { if (k.key !== null) k.loads.push(performance.now()); });
  };
  document.querySelectorAll('img.widget-image').forEach(watch);
  new MutationObserver(() => document.querySelectorAll('img.widget-image').forEach(watch))
    .observe(document.body, {childList: true, subtree: true});
}"""
STATE_JS = "() => ({key: window.__kit.key, loads: window.__kit.loads.slice(), now: performance.now()})"


def notebook(code: str) -> dict:
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(code)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def measure(page, lab, name: str, control: dict, presses: int, quiet_ms: int) -> list[float]:
    """Open the control's notebook, run it, press ``presses`` times; latencies in ms."""
    import nbformat
    from test_browser import _menu, _wait_run_all
    nb_name = f"bench_{name.split()[0]}.ipynb"
    nbformat.write(nbformat.from_dict(notebook(control["code"])), lab.root / nb_name)
    lab.start_session(nb_name)
    page.goto(f"{lab.url}/lab/tree/{nb_name}?token={lab.token}&reset")
    page.get_by_text("| Idle").wait_for(timeout=120_000)
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    _menu(page, "Run", "Run All Cells")
    _wait_run_all(page, panel)
    page.locator("img.widget-image").first.wait_for(state="visible", timeout=120_000)
    page.evaluate(WATCH_JS)
    if control["kind"] == "slider":
        target = panel.locator(".widget-slider", has_text=control["label"]).first.locator(".noUi-handle")
        key = "ArrowRight"
    else:
        target = panel.locator(".widget-button", has_text=control["label"]).first
        key = "Enter"
    target.wait_for(state="visible", timeout=60_000)
    page.wait_for_timeout(1000)                    # let the first picture settle
    out = []
    for i in range(presses):
        target.focus()
        page.keyboard.press(key)
        deadline = time.monotonic() + 20
        while True:                                # until the pictures are quiet for quiet_ms
            page.wait_for_timeout(50)
            s = page.evaluate(STATE_JS)
            last = max(s["loads"]) if s["loads"] else None
            if last is not None and s["now"] - last >= quiet_ms:
                out.append(last - s["key"])
                break
            if time.monotonic() > deadline:
                print(f"  {name}: press {i + 1} brought no new picture in 20 s", file=sys.stderr)
                break
    lab.shutdown_kernels()
    return out


def p90(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kit", type=Path, default=ROOT,
                    help="directory holding the kit/ package the kernels import (default: this checkout)")
    ap.add_argument("--presses", type=int, default=15)
    ap.add_argument("--quiet-ms", type=int, default=400,
                    help="a press is over when no picture has loaded for this long")
    ap.add_argument("--only", action="append", choices=[k.split()[0] for k in CONTROLS],
                    help="run only this control (00, 01, 04); repeatable")
    ap.add_argument("--screenshots", type=Path, help="save a screenshot per control here")
    args = ap.parse_args(argv)

    from playwright.sync_api import sync_playwright
    from test_browser import CHROMIUM, CHROMIUM_ARGS, LabServer

    # SIGTERM unwinds like Ctrl-C, so the finally blocks below stop everything
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(args.kit.resolve()), os.environ.get("PYTHONPATH", "")])
    tmp = Path(tempfile.mkdtemp(prefix="kit-bench-widgets-"))
    lab = None
    results = {}
    load_before = os.getloadavg()
    try:
        lab = LabServer(tmp)
        lab.log_path = tmp / "jupyter-server.log"
        lab.start()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
                ctx.set_default_timeout(60_000)
                for name, control in CONTROLS.items():
                    if args.only and name.split()[0] not in args.only:
                        continue
                    page = ctx.new_page()
                    try:
                        results[name] = measure(page, lab, name, control, args.presses, args.quiet_ms)
                        if args.screenshots:
                            args.screenshots.mkdir(parents=True, exist_ok=True)
                            page.screenshot(path=str(args.screenshots / f"{name.split()[0]}.png"))
                    finally:
                        page.close()
                ctx.close()
            finally:
                browser.close()
    finally:
        if lab is not None:
            left, survivors = lab.stop()
            if survivors:
                print(f"processes still alive after SIGKILL: {survivors}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()
    print(f"kit: {args.kit.resolve()}")
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}, "
          f"on {os.cpu_count()} CPUs")
    print(f"{'control':16} {'n':>3} {'median ms':>10} {'p90 ms':>8} {'min':>6} {'max':>6}")
    for name, xs in results.items():
        if xs:
            print(f"{name:16} {len(xs):3d} {statistics.median(xs):10.0f} {p90(xs):8.0f} "
                  f"{min(xs):6.0f} {max(xs):6.0f}")
        else:
            print(f"{name:16}   0  (no picture changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
