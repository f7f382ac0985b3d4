"""Pictures a widget has drawn, kept by everything they were drawn from."""
from __future__ import annotations

import json

import numpy as np

_PNGS: dict = {}
_PNGS_SIZE = 32


def _plain(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"memo_png: cannot key a picture on a {type(o).__name__}")


def memo_png(draw, *args, **kw) -> bytes:
    """``draw(*args, **kw)``, a PNG, drawn once for the same arguments: a widget that comes back
    to a state it showed before (a control moved and moved back) is not drawn again.  The
    arguments are the key (as JSON: numbers, strings, lists, dicts, arrays); others are drawn
    every time."""
    try:
        key = json.dumps([draw.__module__, draw.__qualname__, args, kw], sort_keys=True, default=_plain)
    except (TypeError, ValueError):        # arguments that are no key: just draw
        return draw(*args, **kw)
    if key not in _PNGS:
        _PNGS[key] = draw(*args, **kw)
        while len(_PNGS) > _PNGS_SIZE:
            _PNGS.pop(next(iter(_PNGS)))
    return _PNGS[key]
