"""The packaging files agree with each other: pyproject.toml, environment.yml,
.ci/run and the README's two commands."""
import re
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
OPEN_CMD = "python3 dev.py open"
TEST_CMD = "python3 dev.py test"
CONDA_ONLY = {"python", "pip"}  # environment.yml entries that are not Python deps


def norm(requirement):
    """'ipywidgets>=8.1' -> 'ipywidgets' (PEP 503 normalised, no version/extras/marker)."""
    name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def conda_env(path=ROOT / "environment.yml"):
    """Tiny parser for environment.yml: (conda deps, pip deps) as raw strings.

    Understands only the shape we write: a top-level ``dependencies:`` list of
    ``- spec`` lines, with one nested ``- pip:`` list.
    """
    conda, pip = [], []
    in_deps = in_pip = False
    dep_indent = None
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        text = line.strip()
        if indent == 0:
            in_deps, in_pip = text == "dependencies:", False
            continue
        if not in_deps or not text.startswith("- "):
            continue
        item = text[2:].strip()
        if dep_indent is None:
            dep_indent = indent
        if indent == dep_indent:
            in_pip = item == "pip:"
            if not in_pip:
                conda.append(item)
        elif in_pip:
            pip.append(item)
    return conda, pip


def test_tiny_yaml_parser_matches_pyyaml_when_available():
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda, pip = conda_env()
    want_conda = [d for d in data["dependencies"] if isinstance(d, str)]
    want_pip = [x for d in data["dependencies"] if isinstance(d, dict) for x in d["pip"]]
    assert (conda, pip) == (want_conda, want_pip)


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = pyproject()
    extras = project["optional-dependencies"]
    needed = {norm(r) for r in project["dependencies"] + extras["notebook"] + extras["test"]}
    declared = needed | {norm(r) for reqs in extras.values() for r in reqs}

    conda, pip = conda_env()
    listed = {norm(spec) for spec in conda} - CONDA_ONLY

    assert needed - listed == set(), "in pyproject.toml but missing from environment.yml"
    assert listed - declared == set(), "in environment.yml but not declared in pyproject.toml"
    assert "pip" in conda and "-e ." in pip, "environment.yml must pip-install the kit itself"


def test_environment_yml_pins_match_pyproject():
    """Where both files give a lower bound, they give the same one."""
    project = pyproject()
    reqs = project["dependencies"] + [r for v in project["optional-dependencies"].values() for r in v]
    bounds = {}
    for r in reqs:
        m = re.search(r">=\s*([\w.]+)", r)
        if m:
            bounds[norm(r)] = m.group(1)
    for spec in conda_env()[0]:
        m = re.search(r">=\s*([\w.]+)", spec)
        if m and norm(spec) in bounds:
            assert m.group(1) == bounds[norm(spec)], spec


def test_import_package_is_kit_only():
    with open(ROOT / "pyproject.toml", "rb") as f:
        find = tomllib.load(f)["tool"]["setuptools"]["packages"]["find"]
    assert find["include"] == ["kit*"]


def test_ci_runs_the_readme_test_command_and_nothing_else():
    script = (ROOT / ".ci" / "run").read_text()
    commands = [ln.strip() for ln in script.splitlines()
                if ln.strip() and not ln.lstrip().startswith("#")]
    assert commands[-1] == f"exec {TEST_CMD}"
    assert all(c.startswith(("set ", "cd ")) for c in commands[:-1]), commands


def test_readme_shows_the_two_commands():
    readme = ROOT / "README.md"
    if not readme.exists():
        pytest.skip("README.md not written yet")
    text = readme.read_text()
    assert OPEN_CMD in text
    assert TEST_CMD in text


def test_dev_test_provides_the_browser_tests_tools():
    """`dev.py test` pip-installs playwright + voila and apt-installs chromium (tests/test_browser.py)."""
    import importlib.util
    test_extra = {norm(r) for r in pyproject()["optional-dependencies"]["test"]}
    assert {"playwright", "voila"} <= test_extra
    spec = importlib.util.spec_from_file_location("dev_script", ROOT / "dev.py")
    dev = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dev)
    apt = dict((binary, pkgs) for binary, pkgs in dev.SYSTEM_PACKAGES)
    assert "chromium" in apt.get("/usr/bin/chromium", [])
    assert {"fonts-dejavu-core", "fonts-liberation"} <= set(apt["/usr/bin/chromium"])
