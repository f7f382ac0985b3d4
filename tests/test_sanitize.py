"""tests/nbval_sanitize.cfg: what nbval blanks before it compares a cell's output.

The file is read here as nbval reads it (nbval.plugin.get_sanitize_patterns) and its
rules are applied in order, as nbval applies them (re.sub, one after the other).
"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CFG = ROOT / "tests" / "nbval_sanitize.cfg"
NOTEBOOKS = ROOT / "notebooks"
HEX = re.compile(r"0x[0-9a-fA-F]{6,16}")


def patterns():
    text = CFG.read_text()
    pairs = re.findall("^regex: (.*)$\n^replace: (.*)$", text, re.M)
    try:
        from nbval.plugin import get_sanitize_patterns
    except ImportError:
        pass
    else:
        assert get_sanitize_patterns(text) == pairs
    return dict(pairs)          # nbval keeps them in an OrderedDict keyed by regex


def sanitize(s):
    for regex, replace in patterns().items():
        s = re.sub(regex, replace, s)
    return s


def output_texts(nb_path):
    """Every text output of a committed notebook (images are not compared by nbval)."""
    nb = json.loads(nb_path.read_text())
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if "text" in out:
                yield "".join(out["text"])
            for mime, data in out.get("data", {}).items():
                if mime.startswith("text/"):
                    yield "".join(data) if isinstance(data, list) else data


def test_every_rule_is_read():
    names = re.findall(r"^\[(.+)\]$", CFG.read_text(), re.M)
    assert len(patterns()) == len(names) >= 4


@pytest.mark.parametrize("repr_text", [
    "<kit.migration.Migration object at 0x7f3a2c1b5e50>",
    "<function frame_table at 0x7f3a2c1b5e50>",
    "[<matplotlib.lines.Line2D at 0x7fe353dcb380>]",
    "<built-in method any of numpy.ndarray object at 0x7efff99ba070>",
    "<weakref at 0x7f3a2c1b5e50; to 'Guest' at 0x7f3a2c1b6000>",
])
def test_object_repr_addresses_are_blanked(repr_text):
    out = sanitize(repr_text)
    assert not HEX.search(out) and "0xADDR" in out
    # two runs of the same cell print different addresses and still compare equal
    assert sanitize(repr_text.replace("0x7f", "0x55")) == out


@pytest.mark.parametrize("line", [
    # notebook 01's committed outputs: frame numbers, max_pfn, low_mem, guest-physical addresses
    "2 MiB | hole: 262,144 frames | max_pfn: 0x240000",
    "    0x100000    0x100000000  RAM above 4G       0xc0000     0xc0000000",
    "    0x23ffff    0x23ffff000  RAM above 4G      0x1fffff    0x1fffff000",
    "RAM frames are [0, 0xc0000) below 4G and [0x100000, 0x240000) above 4G",
    "      low_mem: 4G (0x100000000)",
    "(['0x1234', '0xc0000', '0x140000', '0x1fffff'],",
    "ram pages 0x17ffe8.. .......",
    # elsewhere: the low_mem QEMU sends, free page hinting's command ids
    "QEMU sends low_mem = 0xe0000000",
    "QEMU writes cmd id 0x80000000; the guest",
])
def test_the_notebooks_own_hex_numbers_are_kept(line):
    assert sanitize(line) == line


def test_no_committed_output_loses_a_hex_number():
    # the committed outputs hold no object reprs, so every hex number in them must survive
    texts = [t for nb in sorted(NOTEBOOKS.glob("*.ipynb")) for t in output_texts(nb)]
    found = [h for t in texts for h in HEX.findall(t)]
    assert "0x240000" in found and "0x100000000" in found      # notebook 01's max_pfn, low_mem
    for t in texts:
        assert HEX.findall(sanitize(t)) == HEX.findall(t)
