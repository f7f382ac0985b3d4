"""Root conftest (applies to tests/ and notebooks/): SIGTERM stops a run the way Ctrl-C does,
and no kit code or notebook cell may use CPU-dependent numerics.

No CPU-dependent numerics (tests/cpu_guard.py): the guard is installed in this
process, and an IPython startup file installs it in every kernel started during
the run (nbval's and the browser tests'), through ``IPYTHONDIR``.

A CI time limit or ``timeout`` ends pytest with SIGTERM, whose default action
kills the process on the spot: no fixture teardown, no ``finally``, so lab
QEMUs and the browser tests' JupyterLab server were left running (issue 11).
Here the first SIGTERM raises :class:`Terminated`, a KeyboardInterrupt, in the
main thread, so pytest stops as after Ctrl-C: the running test's context
managers unwind, every fixture is torn down, the summary says
"Terminated: SIGTERM" and pytest exits 2 (interrupted).

A test that catches KeyboardInterrupt itself (tests/test_lab.py does, to check
the lab's Ctrl-C cleanup) would swallow it, so the run is interrupted again
once that test has finished.

Later SIGTERMs are ignored while that cleanup runs: ``timeout`` signals its
whole process group and ``dev.py test`` passes its own SIGTERM on, so two
can arrive at once.  Whoever wants pytest gone sooner sends SIGKILL; the
children that matter die with it (PR_SET_PDEATHSIG, kit/childproc.py).

The handler belongs to the main pytest process only: it is installed from the
main thread of the process that configures pytest first (not an xdist worker,
not a nested in-process run), and a process forked from pytest that inherits it
dies of the SIGTERM as it would have without it.
"""
import os
import shutil
import signal
import sys
import tempfile
import threading

import pytest


class Terminated(KeyboardInterrupt):
    """The pytest process got SIGTERM."""


_installed = {}   # config, pid, previous handler; fired, again: Terminated raised once, twice


def _on_sigterm(signum, frame):
    if os.getpid() != _installed.get("pid"):   # a fork of pytest: the default action
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    if _installed.get("fired"):
        return   # already stopping; do not cut the cleanup short
    _installed["fired"] = True
    raise Terminated("SIGTERM")


@pytest.hookimpl(trylast=True)
def pytest_runtest_logfinish(nodeid, location):
    """Only reached after a SIGTERM if the test caught the Terminated (its teardown has run)."""
    if _installed.get("fired") and not _installed.get("again"):
        _installed["again"] = True
        raise Terminated(f"SIGTERM (caught by {nodeid}; stopping after it)")


HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.join(HERE, "tests")
_ipython_dirs = []


def _install_cpu_guard():
    if TESTS not in sys.path:
        sys.path.insert(0, TESTS)
    import cpu_guard
    cpu_guard.install()
    if os.environ.get(cpu_guard.ENV_FLAG) != "off" and not _ipython_dirs:
        d = tempfile.mkdtemp(prefix="kit-ipython-")
        _ipython_dirs.append(d)
        startup = os.path.join(d, "profile_default", "startup")
        os.makedirs(startup)
        with open(os.path.join(startup, "00-kit-cpu-guard.py"), "w") as f:
            f.write(cpu_guard.STARTUP.format(tests=TESTS))
        os.environ["IPYTHONDIR"] = d


def pytest_configure(config):
    _install_cpu_guard()
    if (_installed or not hasattr(signal, "SIGTERM") or hasattr(config, "workerinput")
            or threading.current_thread() is not threading.main_thread()):
        return
    _installed.update(config=config, pid=os.getpid(),
                      previous=signal.signal(signal.SIGTERM, _on_sigterm))


def pytest_unconfigure(config):
    while _ipython_dirs:
        shutil.rmtree(_ipython_dirs.pop(), ignore_errors=True)
    if _installed.get("config") is config and _installed["pid"] == os.getpid():
        signal.signal(signal.SIGTERM, _installed["previous"])
        _installed.clear()
