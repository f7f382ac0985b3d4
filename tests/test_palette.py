"""kit.viz.palette: every legend's classes stay apart for dichromats, and one place holds the colours.

How far apart is "apart": MIN_DELTA_E = 10 CIEDE2000 units, under normal vision and under each
simulated dichromacy (tests/colour_vision.py: Machado et al. 2009, severity 1.0).  The reasoning:

* ΔE00 = 1 is about one just-noticeable difference between two large patches side by side
  (the scale of CIEDE2000 is built so; Sharma, Wu and Dalal 2005).
* A page map is not two large patches side by side: a class is a pixel or a few pixels (an
  8 GiB guest is 4 pages a pixel), and the reader matches it to a 0.9 em legend square
  somewhere else.  Colour difference needs grow several-fold as marks shrink (M. Stone,
  D. A. Szafir and V. Setlur, "An Engineering Model for Color Difference as a Function of
  Size", Color and Imaging Conference 2014).  The simulation is also only a model of one
  reader.  So the bar is ten JNDs, not one.
* Ten is also what a good palette can give: Okabe-Ito's closest pairs under full dichromacy
  are 10.9-12.5 (orange/yellow 11.6 and orange/vermillion 12.5 under deuteranopia); the old
  tab10-style palette had green/red at 4.6 under deuteranopia.

A page-map pair closer than CUE_DELTA_E = 15 must also carry a second cue (a stripe pattern,
kit.viz.palette.PATTERNS), because a page map has no position or label to tell its classes
apart.  Figures keep their bars and lines in labelled places and only need MIN_DELTA_E.
"""
import pathlib
import re

import numpy as np
import pytest

from colour_vision import MACHADO_2009, VISIONS, ciede2000, pair_distances, simulate, to_lab
from kit.viz import pagemap as pm
from kit.viz import palette
from kit.viz import memmap_view as mv, protocol_view as pv, races, setup_view as sv

MIN_DELTA_E = 10.0
CUE_DELTA_E = 15.0

PAGE_MAPS = {
    "guest (00, 01)": (pm.GUEST_CLASSES, pm.GUEST_COLOURS),
    "migration (00, 03, 04, 07)": (pm.MIGRATION_CLASSES, pm.MIGRATION_COLOURS),
    "setup bitmaps (03)": (sv.SETUP_CLASSES, sv.SETUP_COLOURS),
    "free-page bitmap (02)": (pv.BITMAP_CLASSES, pv.BITMAP_COLOURS),
    "races (06)": (races.RACE_CLASSES, races.RACE_COLOURS),
    "races with the liar apart (06)": (races.LIAR_CLASSES, races.LIAR_COLOURS),
    "live guest (00)": (mv.OVERVIEW_CLASSES, mv.OVERVIEW_COLOURS),
    "wrong shift (01)": (mv.SHIFT_CLASSES, mv.SHIFT_COLOURS),
}
FIGURES = {
    "modes (07)": palette.MODES,
    "lab hint off/on and pv (08)": {**{str(k): v for k, v in palette.HINT.items()}, "pv": palette.MODES["pv"]},
    "page fates (08)": palette.FATES,
    "where the time goes (05, 07)": palette.CAUSES,
    "setup timeline (06)": palette.STEPS,
    "right/wrong order (06)": palette.RIGHT_WRONG,
    "memory map (01)": palette.MEMORY_MAP,
    "two QEMUs (09)": palette.QEMUS,
}

# The palette before kit.viz.palette (commit 7cfc494), written out so that the test shows it fails.
OLD = {
    "old guest": [[214, 39, 40], [255, 152, 150], [220, 220, 220], [255, 187, 120], [60, 60, 60]],
    "old migration": [[200, 200, 200], [44, 160, 44], [174, 199, 232], [31, 119, 180], [214, 39, 40]],
    "old setup bitmaps": [[225, 225, 225], [31, 119, 180], [44, 160, 44], [255, 255, 255]],
    "old free-page bitmap": [[214, 39, 40], [44, 160, 44], [255, 255, 255]],
    "old wrong shift": [[44, 160, 44], [214, 39, 40], [220, 220, 220], [255, 187, 120]],
    "old modes": palette.rgb("#d62728", "#2ca02c", "#1f77b4", "#ff7f0e"),
    "old causes": palette.rgb("#7f7f7f", "#9467bd", "#2ca02c", "#8c564b", "#1f77b4", "#d62728", "#bcbd22"),
}


def close_pairs(colours, vision, threshold=MIN_DELTA_E):
    """``[(i, j, ΔE00)]`` for the pairs of ``colours`` closer than ``threshold`` as ``vision`` sees them."""
    d = pair_distances(np.asarray(colours, float), vision)
    i, j = np.triu_indices(len(d), 1)
    return [(int(a), int(b), round(float(d[a, b]), 1)) for a, b in zip(i, j) if d[a, b] < threshold]


# ---------------------------------------------------------------- the colour science itself

@pytest.mark.parametrize("lab1, lab2, expected", [         # Sharma, Wu and Dalal 2005, Table 1
    ((50, 2.6772, -79.7751), (50, 0, -82.7485), 2.0425),     # pair 1
    ((50, 3.1571, -77.2803), (50, 0, -82.7485), 2.8615),     # pair 2
    ((50, 0, 0), (50, -1, 2), 2.3669),                       # pair 7
    ((50, 2.5, 0), (73, 25, -18), 27.1492),                  # pair 17
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),   # pair 25
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),         # pair 34
])
def test_ciede2000_matches_sharma_table(lab1, lab2, expected):
    assert ciede2000(np.array(lab1), np.array(lab2)) == pytest.approx(expected, abs=1e-4)
    assert ciede2000(np.array(lab2), np.array(lab1)) == pytest.approx(expected, abs=1e-4)


def test_lab_and_simulation_fixed_points():
    assert to_lab([255, 255, 255]) == pytest.approx([100, 0, 0], abs=1e-3)
    assert to_lab([0, 0, 0]) == pytest.approx([0, 0, 0], abs=1e-6)
    assert to_lab([255, 0, 0]) == pytest.approx([53.24, 80.09, 67.20], abs=0.01)
    greys = np.array([[0, 0, 0], [68, 68, 68], [187, 187, 187], [255, 255, 255]], float)
    for vision, m in MACHADO_2009.items():
        assert m.sum(axis=1) == pytest.approx(1, abs=2e-6)       # greys stay greys
        assert simulate(greys, vision) == pytest.approx(greys, abs=0.01)
    # the confusion a deutan reader has with the kit's old colours: tab red and tab green
    old = np.array([[214, 39, 40], [44, 160, 44]], float)
    assert pair_distances(old, "normal")[0, 1] > 50
    assert pair_distances(old, "deuteranopia")[0, 1] < 5


# ---------------------------------------------------------------- the legends

CASES = ([pytest.param(name, cols, True, id=name) for name, (_, cols) in PAGE_MAPS.items()]
         + [pytest.param(name, palette.rgb(*d.values()), True, id=name) for name, d in FIGURES.items()]
         + [pytest.param(name, cols, False, id=name) for name, cols in OLD.items()])


@pytest.mark.parametrize("name, colours, good", CASES)
def test_every_pair_in_a_legend_stays_apart(name, colours, good):
    """New legends: no pair under MIN_DELTA_E for any vision.  The old ones: at least one."""
    close = {v: close_pairs(colours, v) for v in VISIONS}
    bad = {v: c for v, c in close.items() if c}
    if good:
        assert not bad, f"{name}: pairs closer than {MIN_DELTA_E} ΔE00: {bad}"
    else:
        assert bad, f"{name}: the old palette was expected to fail"


@pytest.mark.parametrize("name", PAGE_MAPS)
def test_close_page_map_pairs_carry_a_second_cue(name):
    names, colours = PAGE_MAPS[name]
    striped = {i for i, c in enumerate(colours) if palette.hex_of(c) in palette.PATTERNS}
    for v in VISIONS:
        for i, j, d in close_pairs(colours, v, CUE_DELTA_E):
            assert {i, j} & striped, f"{name}, {v}: {names[i]!r} and {names[j]!r} at {d} ΔE00 need a cue"
    legend = pm.legend_html(names, colours)
    assert legend.count("repeating-linear-gradient") == len(striped)


def test_stripes_are_drawn_where_the_class_is_most_of_a_pixel():
    cls = np.zeros(64 * 16, np.uint8)
    cls[: 64 * 8] = pm.FREE_STALE                                   # top half stale, 1 page a pixel
    img = pm.render(cls, pm.GUEST_COLOURS, 64, 16)
    white, orange = palette.rgb(palette.WHITE)[0], palette.rgb(palette.ORANGE)[0]
    top, bottom = img[:8].reshape(-1, 3), img[8:].reshape(-1, 3)
    share = np.mean((top == white).all(axis=1))
    assert share == pytest.approx(1 / pm.STRIPE_PERIOD, abs=0.02)
    assert np.mean((top == orange).all(axis=1)) == pytest.approx(1 - share)
    assert not (bottom == white).all(axis=1).any()
    plain = pm.render(cls, pm.GUEST_COLOURS, 64, 16, patterns=False)
    assert not (plain == white).all(axis=2).any()
    big = pm.upscale(cls[:64 * 2], pm.GUEST_COLOURS, 64, 6)        # zooms: stripes at full size
    assert big.shape == (12, 384, 3) and np.mean((big == white).all(axis=2)) == pytest.approx(0.25, abs=0.02)
    mixed = np.tile(np.array([pm.FREE_STALE, pm.USED], np.uint8), 64 * 16 * 2)   # 4 pages a pixel
    assert (pm.render(mixed, pm.GUEST_COLOURS, 64, 16) == white).all(axis=2).any()


def test_no_colour_literals_outside_the_palette():
    viz = pathlib.Path(pm.__file__).parent
    for f in sorted(viz.glob("*.py")):
        if f.name == "palette.py":
            continue
        text = f.read_text()
        assert not re.findall(r"#[0-9a-fA-F]{6}\b", text), f"{f.name} has a hex colour"
        assert not re.findall(r"\[\[\d{1,3}, \d{1,3}, \d{1,3}\]", text), f"{f.name} has an RGB array"
