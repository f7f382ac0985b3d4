"""The packaging files agree with each other: pyproject.toml, requirements/lock.txt,
environment.yml, dev.py, .ci/run and the README's two commands."""
import importlib.util
import re
import shutil
from pathlib import Path

import pytest
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"
OPEN_CMD = "python3 dev.py open"
TEST_CMD = "python3 dev.py test"
CONDA_ONLY = {"python", "pip"}  # environment.yml entries that are not Python deps
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]  # what the README promises
PLATFORMS = {  # marker values for Linux, macOS and Windows
    "linux": {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"},
    "darwin": {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix"},
    "win32": {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt"},
}


def norm(requirement):
    """'ipywidgets>=8.1' -> 'ipywidgets' (PEP 503 normalised, no version/extras/marker)."""
    name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def needed_requirements():
    """The dependencies plus the notebook and test extras: what the lock is made from."""
    project = pyproject()
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in project["dependencies"] + extras["notebook"] + extras["test"]]


def dev_module():
    spec = importlib.util.spec_from_file_location("dev_script", ROOT / "dev.py")
    dev = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dev)
    return dev


def lock_lines(path=LOCK):
    """The requirement lines of a uv/pip-compile lock file (comments dropped)."""
    reqs = []
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):
            reqs.append(Requirement(line))
    return reqs


def marker_env(python, platform="linux"):
    return {"python_version": python, "python_full_version": f"{python}.0",
            "implementation_name": "cpython", "platform_python_implementation": "CPython",
            "platform_machine": "x86_64", **PLATFORMS[platform]}


def lock_pins(python, platform="linux", path=LOCK):
    """{normalised name: version} that `pip install -r` takes from the lock on this
    Python and platform.  Every line must be an exact `==` pin, one per package."""
    env = marker_env(python, platform)
    pins = {}
    for req in lock_lines(path):
        spec = list(req.specifier)
        assert len(spec) == 1 and spec[0].operator == "==", f"not an exact pin: {req}"
        if req.marker is None or req.marker.evaluate(env):
            name = norm(req.name)
            assert name not in pins, f"two pins for {name} on Python {python}/{platform}"
            pins[name] = spec[0].version
    return pins


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


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
@pytest.mark.parametrize("python", PYTHONS)
def test_lock_pins_every_dependency_within_pyprojects_bounds(python, platform):
    """On each Python and OS the README names, the lock pins every dependency of
    pyproject.toml (and its notebook and test extras) to a version it allows."""
    pins = lock_pins(python, platform)
    for req in needed_requirements():
        name = norm(req.name)
        assert name in pins, f"{name} (pyproject.toml) is not in {LOCK.name} for Python {python}"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"{LOCK.name} pins {name}=={pins[name]}, pyproject.toml asks for {req}"
    assert "pv-migration-kit" not in pins, "the kit itself is installed with --no-deps -e ."


def conda_python():
    """'3.11' from environment.yml's `python=3.11`."""
    (spec,) = [s for s in conda_env()[0] if norm(s) == "python"]
    return re.fullmatch(r"python\s*=+\s*(\d+\.\d+)", spec).group(1)


def test_environment_yml_pins_equal_the_lock():
    """Each conda package is pinned (==) to the version the lock gives its Python on Linux."""
    pins = lock_pins(conda_python(), "linux")
    for spec in conda_env()[0]:
        name = norm(spec)
        if name in CONDA_ONLY:
            continue
        m = re.fullmatch(r"[A-Za-z0-9._-]+\s*==\s*(\S+)", spec)
        assert m, f"environment.yml: {spec!r} is not pinned with =="
        assert name in pins, f"environment.yml lists {name}, {LOCK.name} does not"
        assert m.group(1) == pins[name], f"environment.yml: {spec}, {LOCK.name}: {pins[name]}"


def test_readme_gives_the_command_that_made_the_lock():
    """The lock's header names its uv command; the README tells readers to run that one."""
    header = LOCK.read_text().splitlines()[:2]
    assert header[0].startswith("# This file was autogenerated by uv"), header
    command = header[1].lstrip("#").strip()
    assert command.startswith("uv pip compile pyproject.toml") and "--universal" in command
    assert f"-o {LOCK.relative_to(ROOT).as_posix()}" in command
    assert command in (ROOT / "README.md").read_text(), f"README.md should show: {command}"


def test_dev_installs_from_the_lock_and_its_hash_covers_it(tmp_path, monkeypatch):
    dev = dev_module()
    assert (ROOT / dev.LOCK).resolve() == LOCK
    for name in ("pyproject.toml", dev.LOCK):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    monkeypatch.setattr(dev, "ROOT", str(tmp_path))
    before = dev.install_hash()
    with open(tmp_path / dev.LOCK, "a") as f:
        f.write("# edited\n")
    assert dev.install_hash() != before, "editing the lock must trigger a reinstall"

    calls = []
    monkeypatch.setattr(dev, "run", lambda cmd, **kw: calls.append(cmd) or 0)
    monkeypatch.setattr(dev, "venv_python_works", lambda venv: True)
    pinned = dev.Venv(".venv")  # under tmp_path now: no stamp, so it installs
    Path(pinned.path).mkdir()
    dev.ensure_venv(pinned)
    installs = [c[c.index("install") + 1:] for c in calls if "install" in c]
    assert installs == [["-q", "-r", dev.LOCK], ["-q", "--no-deps", "-e", "."]]
    assert (tmp_path / ".venv" / ".kit-installed").read_text().strip() == dev.install_hash()


def test_dev_test_latest_is_consumed_by_dev_py(monkeypatch):
    dev = dev_module()
    used, launched = [], []

    class Proc:
        def __init__(self, cmd):
            launched.append(cmd)

        def wait(self):
            return 0

    monkeypatch.setattr(dev, "ensure_venv", used.append)
    monkeypatch.setattr(dev, "ensure_system_packages", lambda pairs: None)
    monkeypatch.setattr(dev, "run", lambda cmd, **kw: 0)
    monkeypatch.setattr(dev.subprocess, "Popen", Proc)
    monkeypatch.chdir(ROOT)
    assert dev.cmd_test(["--latest", "-k", "memmap"]) == 0
    assert dev.cmd_test(["-k", "memmap"]) == 0
    assert [v.name for v in used] == [".venv-latest", ".venv"]
    assert used[0].latest and not used[1].latest
    for cmd in launched:
        assert "--latest" not in cmd and cmd[-2:] == ["-k", "memmap"]
    assert launched[0][0] == dev.LATEST.python and launched[1][0] == dev.PINNED.python


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
    test_extra = {norm(r) for r in pyproject()["optional-dependencies"]["test"]}
    assert {"playwright", "voila"} <= test_extra
    dev = dev_module()
    apt = dict((binary, pkgs) for binary, pkgs in dev.SYSTEM_PACKAGES)
    assert "chromium" in apt.get("/usr/bin/chromium", [])
    assert {"fonts-dejavu-core", "fonts-liberation"} <= set(apt["/usr/bin/chromium"])
