"""Re-execute notebooks in place (so nbval has fresh outputs) and drop saved widget state.

    .venv/bin/python tools/refresh_notebooks.py [notebooks/NN-*.ipynb ...]

Runs each notebook with nbclient in its own directory, with store_widget_state
off, then removes ``metadata.widgets`` if an older run left it.
"""
import glob
import os
import sys

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


if __name__ == "__main__":
    paths = sys.argv[1:] or sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))
    for p in paths:
        refresh(os.path.abspath(p))
