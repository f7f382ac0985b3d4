"""Errors of the real-QEMU lab.  Each message says what to do about it."""
from ..errors import KitError


class LabError(KitError):
    """The lab could not do what was asked (a build step, a QEMU, a migration)."""


class LabMissingError(LabError):
    """A tool the lab needs is not installed; the message names the apt command."""


class GuestBootError(LabError):
    """The guest did not reach KIT-READY in time, or its console shows a panic."""


class QMPError(LabError):
    """QEMU's monitor refused a command or closed the connection."""
