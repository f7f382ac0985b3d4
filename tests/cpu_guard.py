"""Make CPU-dependent numerics fail loudly when the kit or a notebook calls them.

A figure a notebook prints must come out the same on every machine.  LAPACK and
BLAS (``numpy.linalg``, ``polyfit``, ``lstsq``, float ``dot``/``matmul``) pick
their kernels per CPU, so their last bits differ between machines.  The kit
uses :mod:`kit.stats` instead; :func:`install` holds it to that.

``install()`` wraps those numpy functions.  A wrapped function raises
:class:`CPUDependentNumerics` when its direct caller is kit code (a module
``kit`` or ``kit.*``) or a notebook cell (``__main__``); any other caller
(matplotlib's transforms use ``numpy.dot``, for one) gets numpy's function as
usual.  The ``@`` operator and ``ndarray.dot`` cannot be wrapped; the static
check in ``tests/test_cpu_independence.py`` forbids them in kit code and cells.

The root ``conftest.py`` calls it in the pytest process and, through an IPython
startup file, in every kernel that nbval and the browser tests start.
"""
from __future__ import annotations

import functools
import sys

import numpy as np

# numpy functions that reach BLAS or LAPACK (or, like polyfit and cov, call them inside)
TOP_LEVEL = ("polyfit", "dot", "vdot", "inner", "matmul", "tensordot", "einsum", "cov", "corrcoef",
             "linalg")
LINALG = ("solve", "lstsq", "inv", "pinv", "det", "slogdet", "eig", "eigh", "eigvals", "eigvalsh", "svd",
          "qr", "cholesky", "norm", "matrix_power", "matrix_rank", "multi_dot", "tensorsolve",
          "tensorinv", "cond")
ENV_FLAG = "KIT_CPU_GUARD"


class CPUDependentNumerics(AssertionError):
    pass


def _guarded_caller(depth: int = 2) -> str | None:
    name = sys._getframe(depth).f_globals.get("__name__", "")
    if name == "__main__" or name == "kit" or name.startswith("kit."):
        return name
    return None


def _wrap(fn, label):
    if getattr(fn, "_kit_cpu_guard", False):
        return fn

    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        who = _guarded_caller()
        if who is not None:
            raise CPUDependentNumerics(
                f"{label} called from {who}: its result depends on the CPU (BLAS/LAPACK kernels); "
                "use kit.stats (plain floats, math.fsum) for any figure a reader sees")
        return fn(*args, **kwargs)

    guarded._kit_cpu_guard = True
    return guarded


def install() -> None:
    """Wrap numpy's CPU-dependent functions (idempotent)."""
    for name in LINALG:
        if hasattr(np.linalg, name):
            setattr(np.linalg, name, _wrap(getattr(np.linalg, name), f"numpy.linalg.{name}"))
    for name in TOP_LEVEL:
        if name != "linalg" and hasattr(np, name):
            setattr(np, name, _wrap(getattr(np, name), f"numpy.{name}"))


STARTUP = """\
# Written by the kit's tests (tests/cpu_guard.py): no CPU-dependent numerics in kit code or cells.
import sys as _s
_s.path.insert(0, {tests!r})
import cpu_guard as _g
_g.install()
del _s, _g
"""
