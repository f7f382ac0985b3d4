"""Guest bitmap layout: little-endian bits, padded to 64-bit words."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from kit.bitmap import bitmap_bytes, count_bits, pack_bitmap, unpack_bitmap
from kit.errors import BitmapLengthError, KitError


@pytest.mark.parametrize("npages, nbytes", [
    (0, 0), (1, 8), (63, 8), (64, 8), (65, 16), (128, 16), (129, 24),
    (2_097_152, 262_144),           # 8 GiB i440fx guest: 256 KiB
    (1 << 28, 32 << 20),            # 1 TiB: 32 MiB
])
def test_bitmap_bytes_pads_to_whole_longs(npages, nbytes):
    assert bitmap_bytes(npages) == nbytes


def test_bitmap_bytes_rejects_negative_and_non_int():
    with pytest.raises(BitmapLengthError, match="0 or more"):
        bitmap_bytes(-1)
    with pytest.raises(BitmapLengthError, match="whole number"):
        bitmap_bytes(1.5)


def test_bit_zero_of_byte_zero_is_page_zero():
    bits = np.zeros(10, dtype=bool)
    bits[0] = True
    buf = pack_bitmap(bits)
    assert buf.dtype == np.uint8 and buf.size == 8
    assert buf.tolist() == [1, 0, 0, 0, 0, 0, 0, 0]
    bits[:] = False
    bits[9] = True                  # page 9 = bit 1 of byte 1
    assert pack_bitmap(bits).tolist() == [0, 2, 0, 0, 0, 0, 0, 0]
    bits[7] = True                  # page 7 = bit 7 (MSB) of byte 0
    assert pack_bitmap(bits)[0] == 0x80


def test_padding_is_zero_even_with_all_pages_set():
    buf = pack_bitmap(np.ones(65, dtype=bool))
    assert buf.size == 16
    assert buf[:8].tolist() == [0xFF] * 8
    assert buf[8:].tolist() == [1, 0, 0, 0, 0, 0, 0, 0]
    assert count_bits(buf) == 65


def test_unpack_accepts_bytes_and_ignores_padding():
    raw = bytes([0b0000_0101, 0, 0, 0, 0, 0, 0, 0xFF])   # padding bits set
    out = unpack_bitmap(raw, 3)
    assert out.dtype == np.bool_
    assert out.tolist() == [True, False, True]


def test_unpack_wrong_length_says_expected_and_got():
    with pytest.raises(BitmapLengthError) as exc:
        unpack_bitmap(np.zeros(8, dtype=np.uint8), 65)
    msg = str(exc.value)
    assert "16 bytes" in msg and "got 8 bytes" in msg and "pack_bitmap" in msg
    assert isinstance(exc.value, KitError)


def test_unpack_rejects_non_uint8():
    with pytest.raises(BitmapLengthError, match="uint8"):
        unpack_bitmap(np.zeros(8, dtype=np.int32), 64)


def test_pack_rejects_2d():
    with pytest.raises(BitmapLengthError, match="1-D"):
        pack_bitmap(np.zeros((2, 8), dtype=bool))


def test_count_bits_odd_length_and_bytes():
    assert count_bits(b"\xff\x01\x80") == 10
    assert count_bits(np.array([3], dtype=np.uint8)) == 2
    assert count_bits(b"") == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), max_size=300))
def test_pack_unpack_round_trip(values):
    bits = np.array(values, dtype=bool)
    buf = pack_bitmap(bits)
    assert buf.size == bitmap_bytes(bits.size) and buf.size % 8 == 0
    assert np.array_equal(unpack_bitmap(buf, bits.size), bits)
    assert count_bits(buf) == int(bits.sum())
    # bit i of the buffer, read the little-endian way, is page i
    for i in np.flatnonzero(bits)[:20]:
        assert (buf[i // 8] >> (i % 8)) & 1


def test_large_bitmap_is_vectorised():
    rng = np.random.default_rng(1)
    bits = rng.random(1 << 22) < 0.3          # 16 GiB worth of pages
    buf = pack_bitmap(bits)
    assert count_bits(buf) == int(bits.sum())
    assert np.array_equal(unpack_bitmap(buf, bits.size), bits)
