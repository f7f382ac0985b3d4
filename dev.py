#!/usr/bin/env python3
"""The two commands of pv-migration-kit (pure stdlib, any Python >= 3.10).

    python3 dev.py open                  # JupyterLab on 127.0.0.1 with a random token
    python3 dev.py test [pytest args]    # unit tests + notebooks (nbval)
    python3 dev.py test --latest [...]   # the same, with the newest releases

Both create ``.venv`` next to this file if it is missing and install into it
the pinned versions of requirements/lock.txt (``pip install -r``), then the
kit itself (``pip install --no-deps -e .``).  The install is skipped while
``.venv/.kit-installed`` holds the hash of the current pyproject.toml and lock
file, so editing either triggers a reinstall; editing kit/ does not need one
(editable install).

``test --latest`` uses ``.venv-latest`` instead and upgrades it, on every run,
to the newest releases pyproject.toml allows
(``pip install -U --upgrade-strategy eager -e '.[notebook,test]'``, no lock).

``test`` also apt-installs the system tools in SYSTEM_PACKAGES (Debian's
chromium for the browser tests) when they are missing, as root only; without
them those tests skip.
"""
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.abspath(__file__))
LOCK = os.path.join("requirements", "lock.txt")  # relative to ROOT
EXTRAS = "notebook,test"
WINDOWS = os.name == "nt"


class Venv:
    """A virtual environment next to this file: '.venv' (from the lock) or
    '.venv-latest' (newest releases, for `test --latest`)."""

    def __init__(self, name, latest=False):
        self.name = name
        self.latest = latest
        self.path = os.path.join(ROOT, name)
        self.stamp = os.path.join(self.path, ".kit-installed")
        self.bin = os.path.join(self.path, "Scripts" if WINDOWS else "bin")
        self.python = os.path.join(self.bin, "python.exe" if WINDOWS else "python")


PINNED = Venv(".venv")
LATEST = Venv(".venv-latest", latest=True)

# Default pytest arguments for `dev.py test`.  Paths come from
# [tool.pytest.ini_options] testpaths = ["tests", "notebooks"], which pytest
# uses whenever no path is given on the command line.  --nbval only adds
# .ipynb collection; ordinary test_*.py files are collected as usual.
NBVAL_ARGS = [
    "--nbval",
    "--nbval-current-env",
    "--nbval-sanitize-with", os.path.join("tests", "nbval_sanitize.cfg"),
    "--nbval-cell-timeout=600",
]

# (binary, apt packages) pairs that `dev.py test` makes sure of (as root with
# apt-get only; otherwise the tests that need them skip).
SYSTEM_PACKAGES = [
    # tests/test_browser.py: Playwright drives Debian's chromium (never
    # `playwright install`).  Fonts are only Recommends of chromium.
    ("/usr/bin/chromium", ["chromium", "fonts-dejavu-core", "fonts-liberation"]),
    # tests/test_lab.py: real TCG migrations (the guest itself is fetched with
    # apt-get download by kit/lab/image.py, nothing more is installed).  The
    # second QEMU (10.0, tests/test_lab_backport.py) is not installed either:
    # the test fetches it from bookworm-backports with a private apt
    # configuration (kit/lab/backport.py), or skips saying why.
    ("qemu-system-x86_64", ["qemu-system-x86"]),
]


def die(msg, code=2):
    print(f"dev.py: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


def say(msg):
    print(f"dev.py: {msg}", flush=True)


def run(cmd, **kw):
    """subprocess.run that turns 'program not found' into a return code."""
    try:
        return subprocess.run(cmd, **kw).returncode
    except OSError as e:
        print(f"dev.py: cannot run {cmd[0]}: {e}", file=sys.stderr)
        return 127


def pip_env():
    env = dict(os.environ)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.setdefault("PIP_NO_INPUT", "1")
    env.pop("PYTHONHOME", None)
    return env


def venv_python_works(venv):
    if not os.path.exists(venv.python):
        return False
    return run([venv.python, "-c", "import sys"], stdout=subprocess.DEVNULL,
               stderr=subprocess.DEVNULL) == 0


def install_hash():
    """Hash of pyproject.toml and the lock file: a change to either reinstalls."""
    h = hashlib.sha256()
    for name in ("pyproject.toml", LOCK):
        with open(os.path.join(ROOT, name), "rb") as f:
            h.update(name.encode() + b"\0" + f.read() + b"\0")
    return h.hexdigest()


def pip_install(venv, args, what):
    if run([venv.python, "-m", "pip", "install", "-q", *args], cwd=ROOT, env=pip_env()) != 0:
        die(f"pip install {what} failed (see pip's message above)")


def ensure_venv(venv=PINNED):
    """Create the venv if needed and (re)install what it should hold.

    PINNED: the lock's versions, then the kit; skipped while the stamp holds
    install_hash().  LATEST: upgraded to the newest releases on every call
    (it has no stamp).
    """
    if not venv.latest and not os.path.exists(os.path.join(ROOT, LOCK)):
        die(f"{LOCK} is missing (see the README: 'The two commands')")
    if not venv_python_works(venv):
        fresh = not os.path.exists(venv.path)
        say(f"creating {venv.name} with {sys.executable}")
        cmd = [sys.executable, "-m", "venv"]
        if not fresh:
            say(f"{venv.name} exists but its python does not run; recreating it")
            cmd.append("--clear")
        if run(cmd + [venv.path]) != 0 or not venv_python_works(venv):
            if fresh:
                shutil.rmtree(venv.path, ignore_errors=True)
            die(f"could not create a virtual environment with {sys.executable} -m venv"
                " (on Debian/Ubuntu: apt-get install python3-venv)")

    if not venv.latest:
        want = install_hash()
        try:
            with open(venv.stamp) as f:
                if f.read().strip() == want:
                    return
        except OSError:
            pass

    if run([venv.python, "-m", "pip", "--version"], stdout=subprocess.DEVNULL,
           stderr=subprocess.DEVNULL) != 0:
        die(f"{venv.name} has no pip; delete {venv.name} and run this command again")
    # A stale stamp must not survive a failed install.
    if os.path.exists(venv.stamp):
        os.remove(venv.stamp)
    if venv.latest:
        say(f"upgrading {venv.name} to the newest pv-migration-kit[{EXTRAS}] dependencies"
            " (not the lock)")
        pip_install(venv, ["-U", "--upgrade-strategy", "eager", "-e", f".[{EXTRAS}]"],
                    f"-U -e '.[{EXTRAS}]'")
        return
    say(f"installing {LOCK} and the kit into {venv.name} (first time: about a minute)")
    pip_install(venv, ["-r", LOCK], f"-r {LOCK}")
    pip_install(venv, ["--no-deps", "-e", "."], "--no-deps -e .")
    with open(venv.stamp, "w") as f:
        f.write(want + "\n")


def ensure_system_packages(pairs):
    """Install missing system tools with apt, best effort.

    ``pairs`` is a list of (binary, [apt packages]); ``binary`` is an absolute
    path or a name looked up on PATH.  Only acts when running as root with
    apt-get available; on failure prints one line and carries on (the tests
    that need the tool skip themselves).
    """
    missing = [(b, pkgs) for b, pkgs in pairs
               if not (os.path.exists(b) if os.path.isabs(b) else shutil.which(b))]
    if not missing:
        return
    names = ", ".join(b for b, _ in missing)
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if not is_root or not shutil.which("apt-get"):
        say(f"not installing {names} (needs root and apt-get); tests that need them will skip")
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")

    def apt(*args):
        """Run apt-get quietly; '' on success, else the last line it printed."""
        try:
            p = subprocess.run(["apt-get", *args], env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        except OSError as e:
            return str(e)
        if p.returncode == 0:
            return ""
        lines = [ln.strip() for ln in p.stderr.splitlines() if ln.strip()]
        return lines[-1] if lines else f"exit status {p.returncode}"

    pkgs = " ".join(p for _, ps in missing for p in ps)
    say(f"installing {pkgs} with apt-get, for {names} (first time: about half a minute)")
    err = apt("update", "-q")
    if err:
        say(f"apt-get update failed ({err}); tests that need {names} will skip")
        return
    for b, pkgs in missing:
        err = apt("install", "-y", "-q", "--no-install-recommends", *pkgs)
        if err:
            say(f"apt-get install {' '.join(pkgs)} failed ({err}); tests that need {b} will skip")


def free_port(preferred=8888):
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    return preferred


def cmd_open(args):
    ensure_venv(PINNED)
    token = secrets.token_hex(24)
    port = free_port()
    cmd = [os.path.join(PINNED.bin, "jupyter"), "lab",
           "--ip", "127.0.0.1", "--port", str(port), "--no-browser",
           "--notebook-dir", "notebooks",
           f"--IdentityProvider.token={token}",
           "--ServerApp.port_retries=50"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    cmd += args
    print(flush=True)
    print(f"    JupyterLab: http://127.0.0.1:{port}/lab?token={token}", flush=True)
    print("    (if that port gets taken meanwhile, Jupyter prints the URL it really uses)", flush=True)
    print("    Stop it with Ctrl-C.", flush=True)
    print(flush=True)
    os.chdir(ROOT)
    if WINDOWS:
        sys.exit(run(cmd))
    try:
        os.execv(cmd[0], cmd)
    except OSError as e:
        die(f"cannot start {cmd[0]}: {e}")


# After a SIGTERM, how long `dev.py test` waits for pytest's cleanup (it stops
# QEMUs and JupyterLab) before it kills pytest and everything below it.
TERM_GRACE_S = 30


class _Terminated(Exception):
    pass


def _raise_terminated(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: pytest is told, and it is stopping
    raise _Terminated


def _kill_tree(proc):
    """SIGKILL ``proc`` and, where /proc exists, every process below it."""
    kids = {}
    for d in os.listdir("/proc") if os.path.isdir("/proc") else ():
        try:
            with open(f"/proc/{d}/stat") as f:
                kids.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(d))
        except (OSError, ValueError, IndexError):
            continue
    tree, todo = [], [proc.pid]
    while todo:
        tree.append(todo.pop())
        todo += kids.get(tree[-1], [])
    proc.kill()
    for pid in tree[1:]:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def run_pytest(cmd, grace=TERM_GRACE_S):
    """Run pytest and return its exit code.

    Ctrl-C reaches pytest directly (same process group); this waits for its
    summary.  A SIGTERM to dev.py is passed on to pytest, which stops as after
    Ctrl-C (conftest.py); after ``grace`` seconds pytest and its descendants
    are killed.  Then the code is 128 + SIGTERM, as if dev.py had not caught it.
    (pytest stays in dev.py's process group so that Ctrl-C and --pdb keep working.)
    """
    proc = subprocess.Popen(cmd)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:
                continue  # pytest got the SIGINT too; wait for its summary
            except _Terminated:
                break
        say(f"SIGTERM: stopping pytest (it cleans up; killed after {grace} s)")
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while proc.poll() is None:
            try:
                proc.wait(max(deadline - time.monotonic(), 0))
            except KeyboardInterrupt:
                continue
            except subprocess.TimeoutExpired:
                say("pytest did not stop in time; killing it")
                _kill_tree(proc)
                proc.wait()
        return 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_test(args):
    # --latest is ours, not pytest's (pytest has no such option).
    venv = LATEST if "--latest" in args else PINNED
    args = [a for a in args if a != "--latest"]
    ensure_venv(venv)
    os.chdir(ROOT)
    # First import of matplotlib builds the font cache and may print a notice
    # into a notebook's output; do it here, outside nbval.
    if run([venv.python, "-c", "import matplotlib.pyplot"]) != 0:
        die(f"importing matplotlib in {venv.name} failed")
    ensure_system_packages(SYSTEM_PACKAGES)
    pre = list(NBVAL_ARGS)
    if "--nbval-lax" in args:  # the caller chose lax mode instead of strict
        pre.remove("--nbval")
    code = run_pytest([venv.python, "-m", "pytest", *pre, *args])
    if code == 5:
        print("dev.py: error: pytest collected no tests (exit 5); treating that as a failure",
              file=sys.stderr)
        return 1
    return code


USAGE = """usage: python3 dev.py open            start JupyterLab (127.0.0.1, random token)
       python3 dev.py test [ARGS...]  run the tests and notebooks (ARGS go to pytest)
       python3 dev.py test --latest [ARGS...]
                                      the same in .venv-latest, with the newest releases
Installs come from requirements/lock.txt (except --latest)."""


def main(argv):
    if sys.version_info < (3, 10):
        die("Python >= 3.10 is needed")
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "open":
        return cmd_open(rest)
    if cmd == "test":
        return cmd_test(rest)
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
