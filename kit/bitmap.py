"""Linux-style page bitmaps, as the RFC's guest hands them to QEMU.

The guest kernel in the RFC allocates ``ALIGN(npages, BITS_PER_LONG) / 8``
bytes (so a whole number of 64-bit words on x86-64) and sets one bit per free
page with ``set_bit_le``: page ``i`` is bit ``i % 8`` of byte ``i // 8``, the
least significant bit first.  That byte order does not depend on the CPU's
endianness, which is why the guest and QEMU can exchange the buffer as bytes.

These helpers convert between that byte layout and a numpy ``bool`` array with
one entry per page.  They work on whole arrays (``np.packbits`` /
``np.unpackbits`` / ``np.bitwise_count``); there is no Python loop per page.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np

from .errors import BitmapLengthError

BITS_PER_LONG = 64
_BYTES_PER_LONG = BITS_PER_LONG // 8


def _npages(npages) -> int:
    try:
        n = operator.index(npages)
    except TypeError:
        raise BitmapLengthError(
            f"page count must be a whole number, got {npages!r}") from None
    if n < 0:
        raise BitmapLengthError(f"page count must be 0 or more, got {n}")
    return n


def bitmap_bytes(npages) -> int:
    """Bytes the guest allocates for a bitmap of ``npages`` pages.

    One bit per page, rounded up to a whole number of 64-bit words (the
    kernel's ``ALIGN(npages, BITS_PER_LONG) / 8``): 1 page -> 8 bytes,
    64 pages -> 8 bytes, 65 pages -> 16 bytes, an 8 GiB i440fx guest
    (2,097,152 pages) -> 262,144 bytes.
    """
    n = _npages(npages)
    return -(-n // BITS_PER_LONG) * _BYTES_PER_LONG


def _as_bytes(buf) -> np.ndarray:
    """View ``buf`` (bytes-like or a uint8 array) as a 1-D uint8 array without copying."""
    if isinstance(buf, (bytes, bytearray, memoryview)):
        return np.frombuffer(buf, dtype=np.uint8)
    arr = np.asarray(buf)
    if arr.dtype != np.uint8:
        raise BitmapLengthError(
            f"a packed bitmap must be bytes or a uint8 array, got dtype {arr.dtype}; "
            f"pack a bool array with pack_bitmap() first")
    return arr.reshape(-1)


@dataclass(frozen=True)
class PackedBitmap:
    """A bitmap of ``npages`` pages already in the guest's byte layout (what :func:`pack_bitmap`
    returns), so whoever sends it need not pack it again."""
    data: np.ndarray
    npages: int


def pack_bitmap(bits) -> np.ndarray:
    """Pack a 1-D bool array (one entry per page) into the guest's byte layout.

    Returns a ``uint8`` array of ``bitmap_bytes(len(bits))`` bytes; page ``i``
    is bit ``i % 8`` (least significant first) of byte ``i // 8`` and the
    padding bits at the end are zero, as after the kernel's ``kzalloc``.
    """
    b = np.asarray(bits)
    if b.ndim != 1:
        raise BitmapLengthError(
            f"pack_bitmap expects a 1-D array with one entry per page, got shape {b.shape}")
    packed = np.packbits(b.astype(bool, copy=False), bitorder="little")
    out = np.zeros(bitmap_bytes(b.size), dtype=np.uint8)
    out[:packed.size] = packed
    return out


def unpack_bitmap(buf, npages) -> np.ndarray:
    """Unpack a guest bitmap of ``npages`` pages into a bool array of that length.

    ``buf`` is bytes-like or a ``uint8`` array and must be exactly
    ``bitmap_bytes(npages)`` long, otherwise :class:`BitmapLengthError`.
    Padding bits after the last page are ignored.
    """
    n = _npages(npages)
    raw = _as_bytes(buf)
    want = bitmap_bytes(n)
    if raw.size != want:
        raise BitmapLengthError(
            f"bitmap for {n} pages must be {want} bytes (one bit per page, padded to "
            f"a multiple of 8 bytes), got {raw.size} bytes; build it with "
            f"pack_bitmap() over exactly {n} pages, or pass the page count it was built for")
    return np.unpackbits(raw, count=n, bitorder="little").view(bool)


def count_bits(buf) -> int:
    """Number of set bits in a packed bitmap (bytes-like or ``uint8`` array)."""
    raw = _as_bytes(buf)
    if raw.size % _BYTES_PER_LONG == 0 and raw.flags.c_contiguous:
        raw = raw.view(np.uint64)       # fewer, wider popcounts; same total
    return int(np.bitwise_count(raw).sum(dtype=np.int64))
