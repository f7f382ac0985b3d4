"""The unit, property and CLI tests on every Python the README names.

    pip install nox
    nox -s unit                 # Python 3.10, 3.11, 3.12 and 3.13, each in .nox/
    nox -s unit-3.10 -- -k cli  # one Python; arguments after -- go to pytest

Each session installs requirements/lock.txt (resolved for Python 3.10 and
newer), then the kit with --no-deps, as dev.py does.  The notebooks, the
browser tests and the real-QEMU lab tests are left out: `python3 dev.py test`
runs those.  A Python that is not installed is skipped with a message.
pyenv's interpreters are found even when pyenv does not put them on PATH.
"""
import glob
import os

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
LOCK = "requirements/lock.txt"
PYTEST_ARGS = ["tests", "-m", "not browser and not lab", "--ignore=tests/test_browser.py",
               "-p", "no:cacheprovider"]

nox.options.sessions = ["unit"]
nox.options.error_on_missing_interpreters = False
nox.options.reuse_venv = "yes"  # the lock is big; `nox -R` or `--no-reuse-existing-virtualenvs` to redo


def _version_key(python):
    """'<root>/versions/3.10.13/bin/python3.10' -> (3, 10, 13); other parts count as -1."""
    name = os.path.basename(os.path.dirname(os.path.dirname(python)))
    return tuple(int(p) if p.isdigit() else -1 for p in name.split("."))


def _add_pyenv_pythons():
    """Append pyenv's bin folders to PATH, newest patch release of each X.Y.

    pyenv's shims stand for every installed version but run only the selected
    ones, so nox would skip the others as missing.  Appending keeps whatever
    PATH already had first.
    """
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    path = os.environ.get("PATH", "").split(os.pathsep)
    for version in PYTHONS:
        found = glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", f"python{version}"))
        if found:
            folder = os.path.dirname(max(found, key=_version_key))
            if folder not in path:
                path.append(folder)
    os.environ["PATH"] = os.pathsep.join(path)


_add_pyenv_pythons()


@nox.session(python=PYTHONS)
def unit(session):
    """Unit, property (hypothesis) and CLI tests: no notebooks, browser or QEMU."""
    session.install("-r", LOCK)
    session.install("--no-deps", "-e", ".")
    session.run("python", "-m", "pytest", *PYTEST_ARGS, *session.posargs)
