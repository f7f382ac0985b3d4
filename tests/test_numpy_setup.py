"""``import kit`` turns numpy's huge-page requests off, unless the user set numpy's own switch."""
import os
import subprocess
import sys

import pytest

PROBE = ("import kit, numpy\n"
         "toggle = numpy._core.multiarray._set_madvise_hugepage\n"
         "print(toggle(True))")       # the toggle returns the setting it replaces


def _probe(env_value):
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if env_value is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise huge pages are Linux's")
def test_import_kit_turns_numpy_huge_pages_off():
    assert _probe(None) == "False"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise huge pages are Linux's")
def test_an_explicit_numpy_setting_is_left_alone():
    assert _probe("1") == "True"
    assert _probe("0") == "False"
