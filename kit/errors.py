"""Exceptions the kit raises.

Every error the kit raises on bad input derives from :class:`KitError`, so the
CLI can catch one type, print one line and exit 2.  Each message says what to
fix, not just what went wrong.
"""


class KitError(ValueError):
    """Base class: bad input or an impossible request.  The message says what to fix."""


class SizeError(KitError):
    """A size that is unparsable, not positive, not a whole number of pages, or too large."""


class MachineError(KitError):
    """An unknown machine type or an impossible memory layout for it."""


class BitmapLengthError(KitError):
    """A bitmap whose length does not match the memory it should describe."""


class UnknownNameError(KitError):
    """An unknown workload, mode, preset or injection name."""


class ProtocolError(KitError):
    """A virtio-balloon message that the protocol does not allow at this point."""


class VirtQueueFull(ProtocolError):
    """The guest tried to add a buffer to a virtqueue that has no free entries."""


class RateError(KitError):
    """A rate (MiB/s, pages/s) that is negative, infinite or not a number."""
