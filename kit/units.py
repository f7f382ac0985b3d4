"""Page size and human sizes ("4096", "512M", "8G", "8GiB", "1T").

x86-64 uses 4 KiB target pages (QEMU's ``TARGET_PAGE_BITS`` = 12) and at most
52 physical address bits, so a guest can have at most 2**52 bytes of RAM.
"""
import re

from .errors import SizeError

TARGET_PAGE_BITS = 12
TARGET_PAGE_SIZE = 1 << TARGET_PAGE_BITS
KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
PHYS_ADDR_BITS = 52
MAX_PHYS_BYTES = 1 << PHYS_ADDR_BITS

_SUFFIX = {"": 1, "K": KiB, "M": MiB, "G": GiB, "T": TiB, "P": 1 << 50}
# A sign is read only to say "must be positive" rather than "cannot read" about "-1G".
# ASCII digits only; "B"/"iB" may follow a unit letter ("8GiB", "8GB"), a bare "B" only
# a plain number ("4096B").
_SIZE_RE = re.compile(r"^\s*(-?\d+)\s*(?:([KMGTP])(?:I?B)?|B)?\s*\Z",
                      re.IGNORECASE | re.ASCII)


def parse_size(text, *, what="size", page_aligned=True, limit=MAX_PHYS_BYTES):
    """Return a size in bytes from ``text`` (an int or a string like "8G" or "512MiB").

    Suffixes are binary, as in QEMU's ``-m``: K, M, G, T, P, optionally followed
    by "B" or "iB".  Raises :class:`SizeError` saying what to fix.
    """
    if isinstance(text, bool):
        raise SizeError(f"{what}: expected a size such as 4096, 512M or 8G, got {text!r}")
    if isinstance(text, int):
        value = text
    else:
        m = _SIZE_RE.match(str(text))
        if not m:
            raise SizeError(f"{what}: cannot read {text!r}; write a whole number with an "
                            f"optional K/M/G/T suffix, e.g. 4096, 512M, 8G or 8GiB")
        sign, digits = m.group(1)[:1] == "-", m.group(1).lstrip("-").lstrip("0")
        if sign and digits:
            raise SizeError(f"{what}: must be positive (a size such as 512M or 8G), got {text!r}")
        if len(digits) > 30:        # int() refuses > 4300 digits; anything this long is too big
            raise SizeError(f"{what}: {str(text)[:40]!r}... is far too large; x86-64 can "
                            f"address at most 4 PiB (52 physical address bits)")
        value = int(digits or "0") * _SUFFIX[(m.group(2) or "").upper()]
    if value <= 0:
        raise SizeError(f"{what}: must be positive (a size such as 512M or 8G), got {text!r}")
    if page_aligned and value % TARGET_PAGE_SIZE:
        raise SizeError(f"{what}: {text!r} is not a whole number of 4 KiB pages; "
                        f"round it to a multiple of 4096 bytes")
    if limit is not None and value > limit:
        raise SizeError(f"{what}: {text!r} is beyond what x86-64 can address "
                        f"(52 physical address bits, at most 4 PiB)")
    return value


# QEMU's -m: a decimal fraction is allowed before a unit letter ("3.5G"); "B" is an explicit byte count.
_RAM_RE = re.compile(r"^\s*(-?)(\d+(?:\.\d*)?|\.\d+)\s*(?:([KMGTP])(?:I?B)?|(B))?\s*\Z",
                     re.IGNORECASE | re.ASCII)
RAM_ALIGN = 8192            # set_memory_options rounds the RAM size up to a multiple of 8 KiB


def parse_ram_size(text, *, what="--ram", limit=MAX_PHYS_BYTES):
    """A guest RAM size read as QEMU reads ``-m`` (vl.c ``set_memory_options``, QEMU 2.5).

    A bare number is MiB (``4096`` is 4 GiB); a unit letter K/M/G/T/P (binary, optionally
    followed by "B" or "iB") may follow a fraction (``3.5G``); a trailing "B" alone is a byte
    count (``4096B``).  The size is rounded up to 8 KiB, as QEMU does.  An int is taken as
    bytes.  Raises :class:`SizeError` saying what to fix.
    """
    if isinstance(text, bool):
        raise SizeError(f"{what}: expected a size such as 4096 (MiB), 512M or 8G, got {text!r}")
    if isinstance(text, int):
        return parse_size(text, what=what, limit=limit)
    m = _RAM_RE.match(str(text))
    if not m:
        raise SizeError(f"{what}: cannot read {text!r}; write a number of MiB (4096) or a number "
                        f"with a K/M/G/T suffix (512M, 3.5G, 8GiB), or bytes with B (4096B)")
    sign, number, unit, byte = m.groups()
    if sign and float(number) > 0:
        raise SizeError(f"{what}: must be positive (a size such as 512M or 8G), got {text!r}")
    if len(number) > 30:
        raise SizeError(f"{what}: {str(text)[:40]!r}... is far too large; x86-64 can "
                        f"address at most 4 PiB (52 physical address bits)")
    if "." in number and not unit:
        raise SizeError(f"{what}: {text!r}: a fraction needs a unit letter, as in 3.5G or 1.5M "
                        f"(a bare number is MiB, a trailing B is bytes)")
    mul = 1 if byte else _SUFFIX[unit.upper()] if unit else MiB
    whole, _, frac = number.partition(".")
    # exact arithmetic: whole * mul + frac * mul / 10**len(frac), rounded up to a byte
    num = int(whole or "0") * 10 ** len(frac) + int(frac or "0")
    value = -(-num * mul // 10 ** len(frac))
    if value <= 0:
        raise SizeError(f"{what}: must be positive (a size such as 512M or 8G), got {text!r}")
    value = -(-value // RAM_ALIGN) * RAM_ALIGN
    if limit is not None and value > limit:
        raise SizeError(f"{what}: {text!r} is beyond what x86-64 can address "
                        f"(52 physical address bits, at most 4 PiB)")
    return value


def format_size(nbytes):
    """Return ``nbytes`` as the shortest exact binary size, e.g. 3221225472 -> '3G'."""
    for suffix, unit in (("T", TiB), ("G", GiB), ("M", MiB), ("K", KiB)):
        if nbytes and nbytes % unit == 0:
            return f"{nbytes // unit}{suffix}"
    return str(nbytes)
