"""A pytest run ended by a signal leaves no process behind (project issue 11).

Each test starts a child pytest on tests/sigterm_child.py, which starts a
long-lived process the way the kit does (a QEMU through kit.lab.qemu.Qemu, or
tests/test_browser.py's JupyterLab fixture), waits until it runs, signals the
child pytest (or the ``dev.py`` wrapper around it) and then looks through
/proc for any process that carries the run's marker (a random string in the
environment, which every process of the run inherits).  Linux only.
"""
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHILD = ROOT / "tests" / "sigterm_child.py"
MARK = "KIT_SIGTERM_MARK"
HAVE_QEMU = shutil.which("qemu-system-x86_64") is not None

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")

QEMU_CASES = [
    pytest.param("qemu", marks=[pytest.mark.lab, pytest.mark.skipif(
        not HAVE_QEMU, reason="qemu-system-x86_64 is not installed "
                              "(apt-get install --no-install-recommends qemu-system-x86)")]),
    "standin",
]


def _is_zombie(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def _marked(mark):
    """{pid: command line} of the live processes whose environment or argv holds ``mark``."""
    found, needle = {}, mark.encode()
    for d in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (d / "cmdline").read_bytes()
            environ = (d / "environ").read_bytes()
        except OSError:
            continue
        if (needle in environ or needle in cmdline) and not _is_zombie(int(d.name)):
            found[int(d.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")[:200]
    return found


def _wait_gone(mark, timeout):
    deadline = time.monotonic() + timeout
    while (left := _marked(mark)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


class Run:
    """A child pytest on sigterm_child.py holding ``case``, with its own marker."""

    def __init__(self, tmp_path, case, wrap=None, tmpdir=None):
        self.mark = f"kit-sigterm-{secrets.token_hex(8)}"
        self.ready = tmp_path / "ready.json"
        self.log = tmp_path / "child.log"
        env = dict(os.environ, KIT_SIGTERM_CASE=case, KIT_SIGTERM_READY=str(self.ready),
                   BROWSER_ARTIFACTS=str(tmp_path / "artifacts"), PYTHONUNBUFFERED="1")
        if tmpdir is not None:
            # the child's own temp folders (the root conftest's IPython dir, ...): a child
            # ended by SIGKILL cannot remove them, so they go where the fixture removes them
            env["TMPDIR"] = str(tmpdir)
        env[MARK] = self.mark
        # without nbval and hypothesis, which it does not use: importing them takes
        # seconds (nbformat -> jsonschema -> rfc3987_syntax builds lark grammars)
        pytest_cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                      "-p", "no:nbval", "-p", "no:hypothesispytest",
                      "--basetemp", str(tmp_path / "base"), str(CHILD)]
        cmd = pytest_cmd if wrap is None else wrap(pytest_cmd)
        with open(self.log, "wb") as log:
            # its own session: only the signals this test sends reach it
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self):
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while not self.ready.exists():
            assert self.proc.poll() is None, f"the child pytest ended early:\n{self.output()}"
            assert time.monotonic() < deadline, f"the child never got ready:\n{self.output()}"
            time.sleep(0.1)
        pids = json.loads(self.ready.read_text())["pids"]
        running = _marked(self.mark)
        assert pids and set(pids) <= set(running), (pids, running)   # the scan does see them
        return pids

    def signal_and_wait(self, sig, timeout=60):
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the child did not exit within {timeout} s of signal {sig}:\n{self.output()}")
        return code, time.monotonic() - t0

    def kill_all(self):
        """Whatever the test found, kill all of the run's processes."""
        for pid in [self.proc.pid, *_marked(self.mark)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()


@pytest.fixture
def run(tmp_path):
    runs = []
    tmpdir = tempfile.mkdtemp(prefix="kit-sig-")     # short: QMP's unix sockets live below it

    def start(case, wrap=None):
        runs.append(Run(tmp_path, case, wrap, tmpdir=tmpdir))
        return runs[-1]

    try:
        yield start
    finally:
        for r in runs:
            r.kill_all()
        shutil.rmtree(tmpdir, ignore_errors=True)


@pytest.mark.parametrize("case", QEMU_CASES)
def test_sigterm_ends_pytest_and_its_qemu(run, case):
    r = run(case)
    r.wait_ready(60)
    code, took = r.signal_and_wait(signal.SIGTERM)
    assert _wait_gone(r.mark, 5) == {}, r.output()
    assert code == pytest.ExitCode.INTERRUPTED, r.output()
    assert "SIGTERM" in r.output()
    assert took < 15   # Qemu.stop: TERM, at most 3 s, then KILL


def test_sigterm_stops_the_run_even_if_a_test_catches_the_interrupt(run):
    r = run("swallow")
    r.wait_ready(60)
    code, _ = r.signal_and_wait(signal.SIGTERM)
    assert _wait_gone(r.mark, 5) == {}, r.output()
    assert code == pytest.ExitCode.INTERRUPTED, r.output()
    assert "caught by tests/sigterm_child.py::test_catch_the_interrupt" in r.output()
    assert "this ran after a SIGTERM" not in r.output()


@pytest.mark.parametrize("case", QEMU_CASES)
def test_sigkill_of_pytest_takes_its_qemu_along(run, case):
    """No cleanup runs after a SIGKILL: only PR_SET_PDEATHSIG stops the QEMU."""
    r = run(case)
    r.wait_ready(60)
    code, _ = r.signal_and_wait(signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert _wait_gone(r.mark, 5) == {}


def _needs_jupyterlab():
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        pytest.skip("jupyterlab is not installed (pip install -e '.[notebook,test]')")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_signal_ends_the_jupyterlab_fixture_and_its_kernel(run, sig):
    """SIGTERM: the fixture's teardown shuts the server down.  SIGKILL: the server gets
    PR_SET_PDEATHSIG's SIGKILL, and its kernel sees its parent gone and exits."""
    _needs_jupyterlab()
    r = run("jupyterlab")
    assert len(r.wait_ready(120)) >= 2   # the server and a kernel
    code, took = r.signal_and_wait(sig)
    assert _wait_gone(r.mark, 10) == {}, r.output()
    if sig == signal.SIGTERM:
        assert code == pytest.ExitCode.INTERRUPTED, r.output()


# --- dev.py test: SIGTERM to dev.py is passed on to pytest -------------------

def _dev_run_pytest(grace=None):
    """Run a command through dev.run_pytest, as `dev.py test` runs pytest."""
    kw = "" if grace is None else f", grace={grace}"
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import dev; "
            f"sys.exit(dev.run_pytest(sys.argv[1:]{kw}))")
    return lambda cmd: [sys.executable, "-c", code, *cmd]


def test_dev_py_passes_sigterm_on_to_pytest(run):
    r = run("standin", wrap=_dev_run_pytest())
    r.wait_ready(60)
    code, _ = r.signal_and_wait(signal.SIGTERM)   # to dev.py only, not to its group
    assert _wait_gone(r.mark, 5) == {}, r.output()
    assert code == 128 + signal.SIGTERM, r.output()
    assert "SIGTERM" in r.output()


# A "pytest" that ignores SIGTERM and has a child of its own (no death signal).
STUBBORN = r"""
import json, os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
p = subprocess.Popen(["sleep", "600"])
ready = os.environ["KIT_SIGTERM_READY"]
open(ready + ".tmp", "w").write(json.dumps({"pids": [os.getpid(), p.pid]}))
os.rename(ready + ".tmp", ready)
time.sleep(600)
"""


def test_dev_py_kills_a_pytest_that_ignores_sigterm(run):
    r = run("standin", wrap=lambda cmd: _dev_run_pytest(grace=1)([sys.executable, "-c", STUBBORN]))
    r.wait_ready(30)
    code, took = r.signal_and_wait(signal.SIGTERM)
    assert _wait_gone(r.mark, 5) == {}, r.output()
    assert code == 128 + signal.SIGTERM, r.output()
    assert took < 10
