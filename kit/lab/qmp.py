"""A small synchronous QMP client over QEMU's unix socket.

QMP is JSON, one object per line: QEMU greets, the client sends
``qmp_capabilities``, then each ``{"execute": …}`` gets exactly one
``{"return": …}`` or ``{"error": …}``; events (``{"event": …}``) may arrive
in between and are kept in :attr:`QMP.events`.  Blocking and thread-free, so it
also works inside a Jupyter kernel, whose asyncio loop is already running
(which is why the kit does not use ``qemu.qmp``'s synchronous wrapper).
"""
from __future__ import annotations

import json
import socket
import time

from .errors import QMPError


class QMP:
    def __init__(self, path, timeout=30.0, alive=None):
        """Connect to QEMU's QMP socket at ``path``, retrying until it appears;
        ``alive()`` (if given) returning False stops the wait at once."""
        self.path = str(path)
        self.timeout = timeout
        self.events: list[dict] = []
        self._buf = b""
        deadline = time.monotonic() + timeout
        while True:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self.sock.connect(self.path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.sock.close()
                if alive is not None and not alive():
                    raise QMPError(f"QEMU exited before opening its QMP socket {self.path}")
                if time.monotonic() > deadline:
                    raise QMPError(f"no QMP socket at {self.path} after {timeout:.0f} s: did QEMU start?")
                time.sleep(0.05)
        self.sock.settimeout(timeout)
        self.greeting = self._read()
        if "QMP" not in self.greeting:
            raise QMPError(f"not a QMP greeting: {self.greeting}")
        self.version = self.greeting["QMP"]["version"]
        self.execute("qmp_capabilities")

    def _read(self) -> dict:
        while b"\n" not in self._buf:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout as e:
                raise QMPError(f"QEMU did not answer on {self.path} within {self.timeout:.0f} s") from e
            except OSError as e:          # reset: QEMU died or closed the monitor
                raise QMPError(f"QEMU closed its QMP socket {self.path} ({e.strerror})") from e
            if not chunk:
                raise QMPError(f"QEMU closed its QMP socket {self.path} (did it exit?)")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def execute(self, command: str, **arguments):
        msg = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        try:
            self.sock.sendall(json.dumps(msg).encode() + b"\n")
        except OSError as e:          # EPIPE/reset: QEMU died or closed the monitor
            raise QMPError(f"QEMU closed its QMP socket {self.path} (cannot send {command}: "
                           f"{e.strerror or e})") from e
        while True:
            reply = self._read()
            if "event" in reply:
                self.events.append(reply)
                continue
            if "error" in reply:
                err = reply["error"]
                raise QMPError(f"QEMU refused {command}: {err.get('desc', err)}")
            return reply.get("return")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
