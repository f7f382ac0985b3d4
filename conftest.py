"""Root pytest configuration: applies to tests/ and to notebooks/ (nbval).

No CPU-dependent numerics (tests/cpu_guard.py): the guard is installed in this
process, and an IPython startup file installs it in every kernel started during
the run (nbval's and the browser tests'), through ``IPYTHONDIR``.
"""
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.join(HERE, "tests")
_made = []


def pytest_configure(config):
    sys.path.insert(0, TESTS)
    import cpu_guard
    cpu_guard.install()
    if os.environ.get(cpu_guard.ENV_FLAG) != "off":
        d = tempfile.mkdtemp(prefix="kit-ipython-")
        _made.append(d)
        startup = os.path.join(d, "profile_default", "startup")
        os.makedirs(startup)
        with open(os.path.join(startup, "00-kit-cpu-guard.py"), "w") as f:
            f.write(cpu_guard.STARTUP.format(tests=TESTS))
        os.environ["IPYTHONDIR"] = d


def pytest_unconfigure(config):
    for d in _made:
        shutil.rmtree(d, ignore_errors=True)
