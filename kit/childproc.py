"""Child processes that do not outlive the Python process that started them.

``subprocess.Popen(cmd, preexec_fn=die_with_parent())`` asks Linux
(``prctl(PR_SET_PDEATHSIG, SIGKILL)``) to kill the child as soon as its parent
is gone, however the parent went: a SIGKILL or a crash runs no ``finally``,
so this is the only cleanup that still happens then.  Elsewhere (not Linux, or
no ``prctl`` in the C library) :func:`die_with_parent` returns None, which
``Popen`` takes as "no preexec_fn", so callers need no platform test.

Two things to know:

- Linux sends the signal when the *thread* that forked the child ends, not
  the process.  Start such children from a thread that lives as long as they
  should: the main thread (the lab and the test fixtures do).
- ``preexec_fn`` runs in the child between fork and exec.  It works with
  ``start_new_session=True`` (Python calls ``setsid()`` first, and the death
  signal survives both ``setsid()`` and the exec).  ``prctl`` is looked up
  before the fork, so the child only makes the call.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1   # <linux/prctl.h>


def _find_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _find_prctl()


def die_with_parent(sig=getattr(signal, "SIGKILL", None)):
    """A ``preexec_fn`` that makes the child receive ``sig`` when its parent dies;
    None where that is not available."""
    if _PRCTL is None or sig is None:
        return None
    prctl, parent, signum = _PRCTL, os.getpid(), int(sig)

    def preexec():
        prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:   # the parent died before the prctl: nobody will signal us
            os._exit(1)

    return preexec
