"""The pytest run that tests/test_sigterm.py ends with a signal.

Not collected on its own (no ``test_`` prefix): test_sigterm.py runs it as
``pytest tests/sigterm_child.py`` with ``KIT_SIGTERM_CASE`` saying what to hold:

- ``qemu``: a real QEMU (``-machine none``, paused), started by kit.lab.qemu.Qemu;
- ``standin``: a stand-in QEMU that only speaks QMP, started the same way;
- ``swallow``: the stand-in, in a test that catches the KeyboardInterrupt itself;
- ``jupyterlab``: tests/test_browser.py's ``lab`` fixture, with one kernel.

Once they run, the test writes their pids to ``KIT_SIGTERM_READY`` and sleeps
until the signal comes.
"""
import json
import os
import sys
import time
from pathlib import Path

import pytest

CASE = os.environ.get("KIT_SIGTERM_CASE")
pytestmark = pytest.mark.skipif(CASE is None, reason="run by tests/test_sigterm.py only")
if CASE == "jupyterlab":
    # tests/ has no __init__.py, so pytest's default ("prepend") import mode put it on sys.path
    from test_browser import _descendants, lab  # noqa: F401  the server fixture, teardown and all

# A QEMU as far as kit.lab.qemu.Qemu.start can tell: a QMP greeting, one reply, then nothing.
STANDIN_QEMU = r"""
import socket, sys, time
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sys.argv[1])
srv.listen(1)
f = srv.accept()[0].makefile("rwb")
f.write(b'{"QMP": {"version": {"qemu": {"major": 0, "minor": 0, "micro": 0}, "package": "stand-in"}, '
        b'"capabilities": []}}\n')
f.flush()
f.readline()
f.write(b'{"return": {}}\n')
f.flush()
time.sleep(3600)
"""


def _ready(pids):
    path = Path(os.environ["KIT_SIGTERM_READY"])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pids": pids}))
    tmp.rename(path)


def _hold():
    time.sleep(600)   # the signal ends this
    pytest.fail("no signal came")


def _hold_a_qemu(tmp_path, case):
    from kit.lab.qemu import Qemu, qemu_binary
    mark, qmp = os.environ["KIT_SIGTERM_MARK"], tmp_path / "qmp"
    if case == "qemu":
        cmd = [qemu_binary(), "-machine", "none", "-nodefaults", "-display", "none", "-S",
               "-qmp", f"unix:{qmp},server=on,wait=off", "-name", mark]
    else:
        cmd = [sys.executable, "-c", STANDIN_QEMU, str(qmp), mark]
    with Qemu("held", cmd, tmp_path, tmp_path / "console", qmp) as q:
        q.start()
        _ready([q.proc.pid])
        _hold()


@pytest.mark.skipif(CASE not in ("qemu", "standin"), reason="a QEMU case")
def test_hold_a_qemu(tmp_path):
    _hold_a_qemu(tmp_path, CASE)


@pytest.mark.skipif(CASE != "swallow", reason="the swallowed-interrupt case")
def test_catch_the_interrupt(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _hold_a_qemu(tmp_path, "standin")


@pytest.mark.skipif(CASE != "swallow", reason="the swallowed-interrupt case")
def test_run_after_the_catch():
    pytest.fail("this ran after a SIGTERM")


@pytest.mark.skipif(CASE != "jupyterlab", reason="the JupyterLab case")
def test_hold_a_jupyterlab(request):
    lab = request.getfixturevalue("lab")
    lab.start_session("00-overview.ipynb")
    deadline = time.monotonic() + 60
    while True:  # the kernel, once the processes below the server stop coming and going
        assert time.monotonic() < deadline, "the kernel did not start"
        before = set(_descendants(lab.proc.pid))
        time.sleep(0.5)
        now = set(_descendants(lab.proc.pid))
        if before and before == now:
            break
    _ready([lab.proc.pid, *sorted(now)])
    _hold()
