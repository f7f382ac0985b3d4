"""Real-browser tests: every notebook in JupyterLab, four of them in Voila.

Playwright drives Debian's ``/usr/bin/chromium`` (never ``playwright install``).
One JupyterLab server per session runs on 127.0.0.1, on a free port, with a
random token, on a temporary COPY of ``notebooks/`` (Lab's autosave can never
rewrite the repo) and with its own config/runtime/settings/workspace dirs.
Voila runs as the server extension of that same server (``/voila/render/NB``).

For each notebook the test opens it in Lab, clears the stored outputs, runs
all cells, waits for every code cell to get its execution count, checks that
the widgets rendered (no "Loading widget", no "Error displaying widget", no
traceback, no ``pageerror``), then moves the notebook's main control (table
``CONTROLS``) and checks that a ``widgets.Image`` of that widget shows new
bytes.  Screenshots and console logs go to ``$BROWSER_ARTIFACTS`` (default
``build/browser-artifacts/``).

Skips when chromium, playwright or jupyterlab is missing (the Voila test also
when voila is); ``python3 dev.py test`` installs them all (apt, as root; pip).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from kit.childproc import die_with_parent

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb"))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS") or ROOT / "build" / "browser-artifacts")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

# Text that must never be on the page once the widgets have rendered.
FORBIDDEN = ("Error displaying widget", "Loading widget", "Failed to load model class",
             "Kernel Dead", "Traceback (most recent call last)",
             "There was an error when executing cell")


def _missing():
    if not os.path.exists(CHROMIUM):
        return (f"{CHROMIUM} is missing: `python3 dev.py test` apt-installs it when run as root "
                "(or: apt-get install chromium fonts-dejavu-core fonts-liberation)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if importlib.util.find_spec("jupyterlab") is None:
        return "jupyterlab is not installed (pip install -e '.[test]')"
    return None


pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(_missing() is not None, reason=str(_missing()))]


# ----------------------------------------------------------------------------- the controls
@dataclass(frozen=True)
class Control:
    """How to move a notebook's main widget so that its picture must change."""
    kind: str             # "slider": ArrowRight on the handle; "button"/"toggle": click it
    label: str            # the slider's description / the button's text
    presses: int = 1      # ArrowRight presses or clicks
    readout: float = 0    # slider: its value after the presses
    prepare: tuple = ()   # (dropdown description, option) to pick first (a change itself)


CONTROLS = {
    # LiveGuestMap: the idle guest writes nothing in 100 ms, so switch to "dirtying" first.
    "00-overview.ipynb": Control("button", "let it run 100 ms", prepare=("workload", "dirtying")),
    # MemoryMapWidget: -m (GiB) 4 -> 4.25 moves the 4G boundary.
    "01-patch1-memory-map.ipynb": Control("slider", "-m (GiB)", presses=2, readout=4.25),
    # ProtocolStepper: the bitmap picture changes at step 4 ("request": QEMU allocates it).
    "02-patch2-balloon.ipynb": Control("button", "Next", presses=4),
    # SetupComparison: one step of ram_save_setup changes the migration bitmaps.
    "03-patch3-setup.ipynb": Control("button", "Next step"),
    # BulkPlayer: t (ms) slider, linked to the Play widget; 0 -> 150 ms (50 ms is still setup).
    "04-patch4-bulk-filter.ipynb": Control("slider", "t (ms)", presses=3, readout=150),
    # SweepExplorer: the notebook leaves RAM at 4 GiB; one step right is the 8 GiB point.
    "05-performance.ipynb": Control("slider", "RAM", presses=1, readout=8),
    # RaceExplorer: the wrong order (free pages before the dirty log) loses pages.
    "06-races-and-correctness.ipynb": Control("toggle", "wrong order"),
    # BeyondExplorer: the notebook leaves RAM at 8 GiB; one step right runs the four modes at 16 GiB.
    "07-beyond-the-rfc.ipynb": Control("slider", "RAM", presses=1, readout=16),
    # LabExplorer: the notebook leaves the idle cell with hints on; "hog" draws the hog's cell.
    "08-real-qemu-lab.ipynb": Control("toggle", "hog"),
    # QemuCurves: the notebook leaves the idle cell; "hog" draws both QEMUs' hog curves.
    "09-qemu-today.ipynb": Control("toggle", "hog"),
}
# CONTROLS[nb] = None: a notebook without a widget; Lab only runs it and checks the page.
VOILA_NOTEBOOKS = ["01-patch1-memory-map.ipynb", "04-patch4-bulk-filter.ipynb", "07-beyond-the-rfc.ipynb",
                   "08-real-qemu-lab.ipynb"]


# ----------------------------------------------------------------------------- helpers
def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children_map():
    """{ppid: [pid, ...]} from /proc (Linux); {} elsewhere."""
    kids = {}
    for d in Path("/proc").glob("[0-9]*"):
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(d.name))
    return kids


def _descendants(pid):
    kids, out, todo = _children_map(), [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class LabServer:
    """One JupyterLab (+ Voila server extension) on a temp copy of notebooks/."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.root = tmp / "notebooks"
        shutil.copytree(NOTEBOOK_DIR, self.root,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        self.token = secrets.token_hex(24)
        dirs = {name: tmp / name for name in ("config", "runtime", "settings", "workspaces", "ipython")}
        for d in dirs.values():
            d.mkdir()
        settings = {
            # The "notified about official Jupyter news?" toast covers the page.
            "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                            "checkForUpdates": False},
            # Every cell in the DOM, so prompts and outputs can be read.
            "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
        }
        for plugin, values in settings.items():
            f = dirs["settings"] / f"{plugin}.jupyterlab-settings"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps(values))
        self.env = dict(os.environ, JUPYTER_CONFIG_DIR=str(dirs["config"]),
                        JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
                        JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
                        JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]),
                        IPYTHONDIR=str(dirs["ipython"]), PYTHONUNBUFFERED="1")
        self.env.pop("JUPYTER_TOKEN", None)
        self.log_path = ARTIFACTS / "jupyter-server.log"
        self.log_path.unlink(missing_ok=True)  # one session's log
        self.proc = None
        self.pids = set()

    def start(self, timeout=120):
        for attempt in range(3):  # port_retries=0: a port taken meanwhile is a retry here
            self.port = _free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            cmd = [sys.executable, "-m", "jupyterlab", "--no-browser",
                   "--ip=127.0.0.1", f"--port={self.port}", "--ServerApp.port_retries=0",
                   f"--ServerApp.root_dir={self.root}", f"--IdentityProvider.token={self.token}",
                   "--LabApp.news_url=None",
                   "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                   "--VoilaConfiguration.show_tracebacks=True"]
            if IS_ROOT:
                cmd.append("--allow-root")
            log = open(self.log_path, "ab")
            # its own process group; on Linux it dies with this thread even on a SIGKILL
            # (its kernels then exit too: they poll for their parent, JPY_PARENT_PID)
            self.proc = subprocess.Popen(cmd, cwd=self.tmp, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=die_with_parent())
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    self.api("GET", "/api/status", timeout=5)
                    return self
                except (OSError, urllib.error.URLError):
                    time.sleep(0.3)
            self.stop()
            if time.monotonic() >= deadline:
                break
        raise RuntimeError(f"JupyterLab did not start; see {self.log_path}")

    def api(self, method, path, body=None, timeout=30):
        headers = {"Authorization": f"token {self.token}"}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def start_session(self, nb):
        """Start the notebook's kernel now; Lab attaches to it (saves a kernel start per test)."""
        self.api("POST", "/api/sessions", {"path": nb, "name": nb, "type": "notebook",
                                           "kernel": {"name": "python3"}})

    def shutdown_kernels(self):
        """Free CPU and memory between tests (Lab and Voila kernels both live here)."""
        self.pids.update(_descendants(self.proc.pid))
        try:
            for k in self.api("GET", "/api/kernels"):
                self.api("DELETE", f"/api/kernels/{k['id']}")
        except (OSError, urllib.error.URLError):
            pass

    def stop(self):
        """Shut the server down and kill whatever it left.

        Returns (pids the clean shutdown left alive, pids still alive after SIGKILL).
        """
        if self.proc is None:
            return [], []
        self.pids.update(_descendants(self.proc.pid))
        if self.proc.poll() is None:
            try:
                self.api("POST", "/api/shutdown", timeout=10)  # also shuts its kernels down
            except (OSError, urllib.error.URLError):
                pass
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
        left = [p for p in sorted(self.pids) if _alive(p)]
        try:  # the server's process group; kernels run in sessions of their own
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for p in left:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        time.sleep(0.2)
        self.proc = None
        return left, [p for p in left if _alive(p)]


# Content fingerprint of every widgets.Image in the widget that holds `el`:
# FNV-1a of the bytes behind each img's blob: URL (null while one is unreadable).
PICTURES_JS = """async (el) => {
  const scope = el.closest('.jp-OutputArea-output') || document;
  const out = [];
  for (const img of scope.querySelectorAll('img.widget-image')) {
    if (!img.src) { out.push('no-src'); continue; }
    if (!img.complete || img.naturalWidth === 0) return null;
    let buf;
    try { buf = new Uint8Array(await (await fetch(img.src)).arrayBuffer()); }
    catch (e) { return null; }
    let h = 0x811c9dc5;
    for (let i = 0; i < buf.length; i++) { h ^= buf[i]; h = Math.imul(h, 0x01000193) >>> 0; }
    out.push(buf.length + ':' + h.toString(16));
  }
  return out.length ? out.join(' ') : null;
}"""

# Progress of Run All: execution counts of the code cells of the visible notebook.
RUN_STATE_JS = """(panel) => {
  const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
    .map(p => p.textContent.trim());
  const errors = [...panel.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
    .map(e => e.textContent.slice(0, 2000));
  return {n: prompts.length,
          done: prompts.filter(t => /^\\[\\d+\\]:?$/.test(t)).length,
          running: prompts.filter(t => t.includes('*')).length,
          prompts: prompts, stderr: errors};
}"""


def _new_page(context):
    page = context.new_page()
    page.errors, page.console = [], []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("console", lambda m: page.console.append(f"{m.type}: {m.text}"))
    page.marks = [("start", time.monotonic())]
    return page


def _mark(page, what):
    page.marks.append((what, time.monotonic()))


def _save(page, name):
    """Screenshot, console log and phase timings of one test, into ARTIFACTS."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    (ARTIFACTS / f"{name}.console.txt").write_text(
        "\n".join(page.console + [f"pageerror: {e}" for e in page.errors]) + "\n")
    t0 = page.marks[0][1]
    with open(ARTIFACTS / "timings.txt", "a") as f:
        f.write(f"{name:40} " + " ".join(f"{w}={t - t0:.1f}s" for w, t in page.marks[1:]) + "\n")


def _check_clean(page, where):
    text = page.locator("body").inner_text()
    bad = [s for s in FORBIDDEN if s in text]
    assert not bad, f"{where}: page shows {bad}"
    assert not page.errors, f"{where}: pageerror events: {page.errors}"


def _locate(scope, control: Control):
    if control.kind == "slider":
        return scope.locator(".widget-slider", has_text=control.label).first
    css = ".widget-toggle-button" if control.kind == "toggle" else ".widget-button"
    return scope.locator(css, has_text=re.compile(rf"^\s*{re.escape(control.label)}\s*$")).first


def _pictures(page, el, before=None, timeout=60):
    """The pictures' fingerprint once it is steady; with ``before``, once it differs from it."""
    handle = el.element_handle()
    deadline, last = time.monotonic() + timeout, None
    while True:
        fp = page.evaluate(PICTURES_JS, handle)
        if fp is not None and fp != before and (before is not None or fp == last):
            return fp
        last = fp
        if time.monotonic() > deadline:
            what = "rendered" if before is None else "changed"
            raise AssertionError(f"the widget's pictures never {what} (last: {fp})")
        page.wait_for_timeout(400)


def _drive(page, scope, nb, where):
    """Wait for the control and its pictures, move it, check the pictures changed."""
    control = CONTROLS[nb]
    el = _locate(scope, control)
    el.wait_for(state="visible", timeout=120_000)
    el.evaluate("e => e.scrollIntoView({block: 'start'})")
    before = _pictures(page, el)
    _mark(page, "rendered")
    _check_clean(page, f"{where} after rendering")

    if control.prepare:
        desc, option = control.prepare
        scope.locator(".widget-dropdown", has_text=desc).first.locator("select").select_option(option)
        _pictures(page, el, before)
        before = _pictures(page, el)

    if control.kind == "slider":
        handle = el.locator(".noUi-handle")
        handle.focus()
        for _ in range(control.presses):
            page.keyboard.press("ArrowRight")
            page.wait_for_timeout(100)
        readout = el.locator(".widget-readout")
        # numerically: the ".3f" readout shows 4.25 as "4.250"
        page.wait_for_function("([r, t]) => parseFloat(r.textContent) === t",
                               arg=[readout.element_handle(), control.readout], timeout=30_000)
    else:
        for _ in range(control.presses):
            el.click()
            page.wait_for_timeout(150)
    after = _pictures(page, el, before)
    assert after != before
    page.wait_for_timeout(300)  # let the last redraw land before the screenshot
    el.evaluate("e => e.scrollIntoView({block: 'start'})")
    _check_clean(page, f"{where} after moving {control.label!r}")


def _menu(page, menu, item):
    page.locator("#jp-MainMenu .lm-MenuBar-itemLabel",
                 has_text=re.compile(rf"^{menu}$")).click()
    page.locator(".lm-Menu .lm-Menu-itemLabel",
                 has_text=re.compile(rf"^{re.escape(item)}$")).first.click()


def _wait_run_all(page, panel, timeout=240):
    handle = panel.element_handle()
    deadline, started, state = time.monotonic() + timeout, False, None
    while time.monotonic() < deadline:
        state = page.evaluate(RUN_STATE_JS, handle)
        if state["n"] and state["done"] == state["n"] and not state["running"]:
            return state
        started = started or state["running"] > 0
        if started and not state["running"]:
            break  # execution stopped before the last cell: an error
        page.wait_for_timeout(250)
    raise AssertionError(f"Run All did not finish: prompts {state and state['prompts']}, "
                         f"stderr {state and state['stderr']}")


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    server = LabServer(tmp_path_factory.mktemp("lab"))
    try:
        yield server.start()
    finally:
        left, survivors = server.stop()
        if left:
            warnings.warn(f"JupyterLab's shutdown left processes {left}; killed them")
        assert not survivors, f"processes left behind: {survivors}"


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def context(browser):
    """One context for all pages: its HTTP cache keeps Lab's assets after the first load."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    ctx.set_default_timeout(60_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context, lab):
    page = _new_page(context)
    try:
        yield page
    finally:
        page.close()
        lab.shutdown_kernels()


# ----------------------------------------------------------------------------- the tests
def test_every_notebook_has_a_control():
    assert NOTEBOOKS, "no notebooks found"
    assert sorted(CONTROLS) == NOTEBOOKS, ("add each new notebook's main control to CONTROLS "
                                           "(None for a notebook without widgets)")


@pytest.mark.parametrize("nb", NOTEBOOKS)
def test_lab_run_all_and_move_control(lab, page, nb):
    lab.start_session(nb)  # the kernel starts while the page loads
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    try:
        page.goto(f"{lab.url}/lab/tree/{nb}?token={lab.token}&reset")
        page.get_by_text("| Idle").wait_for(timeout=120_000)
        _mark(page, "kernel")
        _menu(page, "Edit", "Clear Outputs of All Cells")
        _menu(page, "Run", "Run All Cells")
        _wait_run_all(page, panel)
        page.get_by_text("| Idle").wait_for(timeout=60_000)
        _mark(page, "ran")
        if CONTROLS.get(nb):
            _drive(page, panel, nb, f"lab {nb}")
            _mark(page, "moved")
        else:
            _check_clean(page, f"lab {nb} after Run All")
    finally:
        _save(page, f"lab_{Path(nb).stem}")


@pytest.mark.skipif(importlib.util.find_spec("voila") is None,
                    reason="voila is not installed (pip install -e '.[test]')")
@pytest.mark.parametrize("nb", VOILA_NOTEBOOKS)
def test_voila_renders_and_control_works(lab, page, nb):
    # Voila's templates load Font Awesome and MathJax from CDNs: refuse them at once
    # (offline they fail anyway, as console errors only).
    page.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), lambda route: route.abort())
    body = page.locator("body")
    try:
        page.goto(f"{lab.url}/voila/render/{nb}?token={lab.token}", wait_until="commit")
        page.wait_for_load_state("load", timeout=240_000)  # Voila streams the page while it runs
        _mark(page, "ran")
        _drive(page, body, nb, f"voila {nb}")
        _mark(page, "moved")
    finally:
        _save(page, f"voila_{Path(nb).stem}")
