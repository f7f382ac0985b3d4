"""The kit's colours, in one place: every view takes its colours from here.

The hues are the eight of Okabe and Ito's "Color Universal Design" palette (M. Okabe and
K. Ito, *Color Universal Design (CUD): How to make figures and presentations that are friendly
to colorblind people*, 2002/2008, https://jfly.uni-koeln.de/color/), plus four greys.  They stay
apart for readers with protanopia, deuteranopia and tritanopia: ``tests/test_palette.py``
simulates each (Machado et al. 2009) and checks every pair of classes in every legend.

Each Okabe-Ito hue keeps the job its old colour had, and the name the notebooks use for it:
"red" is vermillion, "green" bluish green, "blue" blue, "light blue" sky blue, "orange" orange,
so a sentence such as "free pages skipped (green)" still reads right.

Page maps (``kit.viz.pagemap``) take ``(n, 3)`` float32 RGB arrays, one row per class;
figures take the hex strings.  Where two classes of one legend stay close under a simulated
deficiency, the class carries a second cue: :data:`PATTERNS` gives a page map a stripe pattern
for a colour, drawn in the picture and in its legend.
"""
from __future__ import annotations

import numpy as np

OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky blue": "#56B4E9", "bluish green": "#009E73",
             "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish purple": "#CC79A7"}
BLACK, ORANGE, SKY_BLUE, GREEN, YELLOW, BLUE, VERMILLION, PURPLE = OKABE_ITO.values()
WHITE = "#FFFFFF"
LIGHT_GREY = "#DDDDDD"        # nothing to do: a free page that is zero
GREY = "#BBBBBB"              # not decided yet: a page still pending
MID_GREY = "#888888"          # a reference (the cover letter's figures)
DARK_GREY = "#444444"         # not RAM: the PCI hole
DARK_GREEN = "#005A46"        # bluish green, darker: a thin band "the dirty log is on"
PALE = "#EEEEEE"              # a background span (predicted, not fitted)
TEXT_GREY = "#555555"         # small annotations


def rgb(*colours) -> np.ndarray:
    """``(n, 3)`` float32 RGB (0-255) of hex colours, the form :func:`kit.viz.pagemap.render` takes."""
    return np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in colours], np.float32)


def hex_of(row) -> str:
    """``'#RRGGBB'`` of one RGB row."""
    r, g, b = (int(round(float(v))) for v in row)
    return f"#{r:02X}{g:02X}{b:02X}"


# ------------------------------------------------------------------ page maps, one row per class
# kit.viz.pagemap: used / used, zero / free, zero / free, stale data / PCI hole
GUEST = rgb(VERMILLION, SKY_BLUE, LIGHT_GREY, ORANGE, DARK_GREY)   # a used zero page is sent as zero
# kit.migration states: pending / skipped as free / sent as zero / sent as normal / re-dirtied
MIGRATION = rgb(GREY, GREEN, SKY_BLUE, BLUE, VERMILLION)
# kit.viz.setup_view: bit clear / bit set: page to send / bit clear: free in the guest / not allocated yet
SETUP = rgb(GREY, BLUE, GREEN, WHITE)
# kit.viz.protocol_view: bit clear: used / bit set: free in the guest / not allocated yet
BITMAP = rgb(VERMILLION, GREEN, WHITE)
# kit.viz.races: the guest's four classes, then rescued (resent by the dirty log) and LOST
RACE = np.vstack([GUEST[:4], rgb(BLUE, BLACK)])
LIAR = np.vstack([RACE, rgb(YELLOW)])            # races, with the lied-about resent pages apart
# kit.viz.memmap_view, notebook 00: the guest's four classes, then dirty (logged by KVM)
OVERVIEW = np.vstack([GUEST[:4], rgb(BLUE)])
# kit.viz.memmap_view, notebook 01: used, sent / used, skipped: LOST / free, skipped / free, sent anyway
SHIFT = rgb(GREEN, VERMILLION, LIGHT_GREY, ORANGE)

# A second cue, by colour: a page map draws the pixels where a class of this colour is most of
# the pages with diagonal white stripes (one pixel in four), and its legend swatch shows the
# same stripes.  tests/test_palette.py asks for one on every page-map pair under 15 CIEDE2000:
# - orange, the "stale free page" (00-02, 06) and "free, sent anyway" (01), is 12.5 from
#   vermillion ("used", "LOST") under deuteranopia, and used-or-free is what the RFC is about;
# - bluish green, "skipped as free" (00, 03, 04, 07) and "bit clear: free in the guest" (03),
#   is 12.1 from sky blue ("sent as zero") and 12.4 from blue ("bit set") under tritanopia.
PATTERNS = {ORANGE: WHITE, GREEN: WHITE}

# ------------------------------------------------------------------ figures (matplotlib)
MODES = {"original": VERMILLION, "pv": GREEN, "hint": BLUE, "report": ORANGE}
HINT = {False: VERMILLION, True: BLUE}          # hint off as the original, hint on as hinting
QEMUS = {"7.2": BLACK, "10.0": ORANGE}         # the lab's two QEMUs (notebook 09)
FATES = {"sent in full": BLUE, "sent as zero": SKY_BLUE, "skipped": GREEN}   # as MIGRATION
CAUSES = {"setup": GREY, "dirty-log-start": PURPLE, "free-page-wait": GREEN, "bitmap-sync": YELLOW,
          "send-wire": BLUE, "send-cpu": VERMILLION, "rate-limit-sleep": SKY_BLUE}
# notebook 06's setup timeline: one colour per step of ram_save_setup
STEPS = {"bitmap": GREY, "dirty-log-start": GREEN, "free-pages": ORANGE, "filter": PURPLE,
         "sync": BLUE, "log-on": DARK_GREEN, "unprotected": VERMILLION}
RIGHT_WRONG = {"right": GREEN, "wrong": VERMILLION}
MEMORY_MAP = {"below 4G": GREEN, "above 4G": BLUE, "PCI hole": LIGHT_GREY}
REFERENCE = MID_GREY                            # the cover letter's bars beside the model's
# HTML highlights in notebook 02's protocol stepper (the active box is also bold)
HIGHLIGHT, STATUS_ON, OFF_BOX, ARROW = "#F7E3A1", "#A8DCC9", "#F4F4F4", VERMILLION
