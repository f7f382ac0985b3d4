"""kit.viz.widgets.static_picture (a widget's first picture as a plain PNG) and keyboard reach.

Keyboard: every control in kit/viz is a stock ipywidgets control (sliders, Play, Dropdown,
ToggleButtons, Button); JupyterLab and Voila render each as a native <input>, <select> or
<button>, which Tab reaches and the arrow keys, Space and Enter drive.  The test below keeps it
so: no other widget class, no custom widget, no tabbable=False, no disabled control.
"""
import io
import pathlib
import re

import ipywidgets as widgets
import numpy as np
import pytest
from PIL import Image

from kit.guest import Guest
from kit.memmap import pc_memory_map
from kit.viz import memmap_view as mv
from kit.viz import pagemap as pm
from kit.viz import palette
from kit.viz import widgets as kw

CONTROLS = {"Button", "Dropdown", "FloatSlider", "FloatLogSlider", "IntSlider", "SelectionSlider",
            "ToggleButtons", "Play", "Checkbox", "BoundedFloatText"}
DISPLAYS = {"HTML", "Image", "Label", "VBox", "HBox", "Box", "Layout", "IntProgress", "FloatProgress",
            "Output", "jslink"}


def test_static_picture_lays_out_images_legend_and_caption(monkeypatch):
    g = Guest(pc_memory_map("256M"), "hog", seed=1)
    view = kw.guest_map(g, "a 256M guest", width=256, height=64)
    view.caption.value = "caption text"
    img = kw._picture_of(view.widget)
    page_map = np.asarray(Image.open(io.BytesIO(view.image.value)).convert("RGB"))
    assert img.shape[1] >= 256 + 2 and img.shape[0] > 66 + 2 * 18
    top = next(i for i in range(img.shape[0]) if (img[i:i + 64, 1:257] == page_map).all())
    assert top > 0                                            # the title above the map
    below = img[top + 64:].reshape(-1, 3)
    for c in pm.GUEST_COLOURS:                                # every legend square, in its colour
        assert (below == c.astype(np.uint8)).all(axis=1).any()
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    assert kw.static_picture(view) is None
    (obj,) = shown
    assert Image.open(io.BytesIO(obj.data)).format == "PNG" and repr(obj) == "<IPython.core.display.Image object>"
    with pytest.raises(ValueError):
        kw.static_picture(widgets.VBox([widgets.HTML("<table><tr><td>x</td></tr></table>")]))


def test_static_picture_puts_hbox_children_side_by_side():
    a = widgets.Image(value=pm.png(np.zeros((10, 20, 3), np.uint8)), format="png")
    b = widgets.Image(value=pm.png(np.full((30, 5, 3), 7, np.uint8)), format="png")
    img = kw._picture_of(widgets.HBox([a, b]))
    assert img.shape == (32, 22 + kw._GAP + 7, 3)
    assert (img[1:11, 1:21] == 0).all() and (img[1:-1, -6:-1] == 7).all() and (img[12:, :22] == 255).all()
    assert (img[0, :22] == 0xBB).all()                           # each image framed


def test_striped_legend_squares_are_striped():
    img = kw._text_image([], [(palette.ORANGE, palette.WHITE, "free, stale data")])
    assert (img == palette.rgb(palette.ORANGE)[0].astype(np.uint8)).all(axis=2).any()


def test_every_control_is_a_stock_ipywidget_that_tab_reaches():
    viz = pathlib.Path(pm.__file__).parent
    for f in sorted(viz.glob("*.py")):
        text = f.read_text()
        used = set(re.findall(r"\bwidgets\.([A-Z]\w*)\(", text))
        assert used <= CONTROLS | DISPLAYS, f"{f.name}: {used - CONTROLS - DISPLAYS}"
        assert not re.search(r"class \w+\((?:widgets\.)?\w*(?:Widget|Box)\)", text), f"{f.name}: a custom widget"
        assert "tabbable" not in text and "disabled=True" not in text, f.name
    live = mv.LiveGuestMap(ram="256M", workload="idle", seed=0, width=128, height=32)
    stack, found = [live.widget], []
    while stack:
        w = stack.pop()
        stack.extend(getattr(w, "children", ()))
        if type(w).__name__ in CONTROLS:
            found.append(type(w).__name__)
            assert not w.disabled and w.tabbable is not False
    assert sorted(found) == ["Button", "Dropdown"]
