"""Re-execute notebooks in place (so nbval has fresh outputs) and drop saved widget state.

    .venv/bin/python tools/refresh_notebooks.py [notebooks/NN-*.ipynb ...]

Runs each notebook with nbclient in its own directory, with store_widget_state
off, then removes ``metadata.widgets`` if an older run left it.  The kernels
carry the tests' CPU guard (tests/cpu_guard.py): a cell or kit function that
calls numpy.linalg, polyfit, dot or matmul fails, so no stored output can
depend on the CPU's BLAS kernels.
"""
import glob
import os
import shutil
import sys
import tempfile

import nbformat
from nbclient import NotebookClient

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def refresh(path):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", store_widget_state=False,
                            resources={"metadata": {"path": os.path.dirname(path)}})
    client.execute()
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)
    print(f"refreshed {os.path.relpath(path, ROOT)}")


def _guarded_kernels():
    """An IPYTHONDIR whose startup file installs the CPU guard in every kernel."""
    tests = os.path.join(os.path.abspath(ROOT), "tests")
    sys.path.insert(0, tests)
    import cpu_guard
    d = tempfile.mkdtemp(prefix="kit-ipython-")
    os.makedirs(os.path.join(d, "profile_default", "startup"))
    with open(os.path.join(d, "profile_default", "startup", "00-kit-cpu-guard.py"), "w") as f:
        f.write(cpu_guard.STARTUP.format(tests=tests))
    os.environ["IPYTHONDIR"] = d
    return d


if __name__ == "__main__":
    paths = sys.argv[1:] or sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))
    ipython_dir = _guarded_kernels()
    try:
        for p in paths:
            refresh(os.path.abspath(p))
    finally:
        shutil.rmtree(ipython_dir, ignore_errors=True)
