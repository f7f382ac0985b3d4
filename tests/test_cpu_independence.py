"""No printed figure may depend on the CPU: no BLAS/LAPACK in kit code or notebook cells.

Three checks: a static one (the source never names numpy.linalg, polyfit,
lstsq, dot, matmul, einsum, and never uses ``@``); the runtime guard itself
(tests/cpu_guard.py) refuses such calls from kit code and lets others through;
and the kernels that nbval starts carry the guard, so every notebook runs with
it (its committed outputs are then compared as usual).
"""
import ast
import json
import os
from pathlib import Path

import numpy as np
import pytest

import cpu_guard

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN_ATTRS = {"linalg", "polyfit", "lstsq", "dot", "vdot", "inner", "matmul", "tensordot",
                   "einsum", "cov", "corrcoef"}


def _violations(tree):
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            out.append((node.lineno, "the @ operator"))
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRS:
            out.append((node.lineno, f".{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and node.module and "linalg" in node.module:
            out.append((node.lineno, f"from {node.module} import"))
    return out


def _cell_sources(nb_path):
    nb = json.loads(nb_path.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            src = "".join(cell["source"])
            # IPython magics and shell escapes are not Python
            src = "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in src.splitlines())
            yield i, src


def test_static_check_finds_what_it_forbids():
    bad = ast.parse("import numpy as np\nx = np.polyfit(a, b, 1)\ny = a @ b\nz = a.dot(b)\n"
                    "from numpy.linalg import solve\n")
    assert sorted(what for _, what in _violations(bad)) == sorted(
        [".polyfit", "the @ operator", ".dot", "from numpy.linalg import"])
    assert _violations(ast.parse("import math\nx = math.fsum([1.0, 2.0])\n")) == []


def test_kit_and_tools_source_use_no_blas():
    found = []
    for folder in ("kit", "tools", "bench"):
        for p in sorted((ROOT / folder).rglob("*.py")):
            for line, what in _violations(ast.parse(p.read_text(), str(p))):
                found.append(f"{p.relative_to(ROOT)}:{line}: {what}")
    assert found == [], "CPU-dependent numerics (use kit.stats):\n" + "\n".join(found)


def test_notebook_cells_use_no_blas():
    found = []
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for i, src in _cell_sources(nb):
            for line, what in _violations(ast.parse(src)):
                found.append(f"{nb.name} cell {i} line {line}: {what}")
    assert found == [], "\n".join(found)


def _module_calling(fn_name):
    """A module named kit._guard_probe whose function f calls numpy.<fn_name>."""
    import types
    mod = types.ModuleType("kit._guard_probe")
    exec(compile(f"import numpy as np\ndef f(*a):\n    return np.{fn_name}(*a)\n", "<probe>", "exec"),
         mod.__dict__)
    return mod


@pytest.mark.parametrize("fn_name", ["polyfit", "dot", "matmul", "linalg.solve", "linalg.lstsq"])
def test_guard_refuses_blas_from_kit_code(fn_name):
    cpu_guard.install()
    args = {"polyfit": ([0.0, 1.0, 2.0], [1.0, 3.0, 5.0], 1), "dot": (np.ones(3), np.ones(3)),
            "matmul": (np.eye(2), np.eye(2)), "linalg.solve": (np.eye(2), np.ones(2)),
            "linalg.lstsq": (np.eye(2), np.ones(2))}[fn_name]
    with pytest.raises(cpu_guard.CPUDependentNumerics, match="depends on the CPU"):
        _module_calling(fn_name).f(*args)


def test_guard_lets_other_callers_through():
    cpu_guard.install()
    # this test module is not kit code: numpy answers as usual (matplotlib relies on this)
    assert np.dot(np.ones(3), np.ones(3)) == 3.0
    assert np.linalg.solve(np.eye(2) * 2, np.ones(2)).tolist() == [0.5, 0.5]


def test_notebook_kernels_carry_the_guard():
    """A kernel started the way nbval starts one (same environment) refuses polyfit in a cell."""
    pytest.importorskip("jupyter_client")
    from jupyter_client.manager import start_new_kernel
    assert os.environ.get("IPYTHONDIR"), "the root conftest.py sets IPYTHONDIR for kernels"
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        outs = []
        kc.execute_interactive("import numpy as np\nnp.polyfit([0, 1, 2], [1, 3, 5], 1)", timeout=60,
                               output_hook=lambda msg: outs.append(msg))
        errors = [m["content"] for m in outs if m["msg_type"] == "error"]
        assert errors and errors[0]["ename"] == "CPUDependentNumerics"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
