"""Colour-vision deficiency simulation and colour difference, in numpy, for tests/test_palette.py.

Nothing here comes from a colour library: the formulas are written out from their sources.

* sRGB <-> linear RGB and linear RGB -> CIE XYZ (D65): IEC 61966-2-1:1999 (sRGB), the
  piecewise transfer function with 0.04045 / 12.92 / 2.4 and the standard RGB -> XYZ matrix.
* XYZ -> CIELAB: CIE 15:2004, with the D65 white point (0.95047, 1.0, 1.08883).
* Dichromacy (severity 1.0) as simulated by G. M. Machado, M. M. Oliveira and L. A. F. Fernandes,
  "A Physiologically-based Model for Simulation of Color Vision Deficiency", IEEE TVCG 15(6),
  2009, pp. 1291-1298, Table 1 (the matrices for severity 1.0), applied to linear RGB.
  Machado's model is weakest for tritanopia (the paper itself says its tritan data are less
  certain); it is still the usual one-matrix simulation, and the test holds tritan to the
  same rule as the others.
* CIEDE2000: G. Sharma, W. Wu and E. N. Dalal, "The CIEDE2000 Color-Difference Formula:
  Implementation Notes, Supplementary Test Data, and Mathematical Observations", Color Research
  and Application 30(1), 2005, equations (1)-(22), kL = kC = kH = 1.  Checked against rows of
  that paper's Table 1 in tests/test_palette.py.
"""
from __future__ import annotations

import numpy as np

MACHADO_2009 = {          # severity 1.0, Machado et al. 2009, Table 1; rows act on linear (R, G, B)
    "protanopia": np.array([[0.152286, 1.052583, -0.204868],
                            [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968],
                              [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "tritanopia": np.array([[1.255528, -0.076749, -0.178779],
                            [-0.078411, 0.930809, 0.147602],
                            [0.004733, 0.691367, 0.303900]]),
}
VISIONS = ("normal",) + tuple(MACHADO_2009)

_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],       # IEC 61966-2-1, D65
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])


def to_linear(rgb255) -> np.ndarray:
    c = np.asarray(rgb255, float) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def from_linear(lin) -> np.ndarray:
    c = np.clip(np.asarray(lin, float), 0.0, 1.0)
    return 255.0 * np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)


def simulate(rgb255, vision: str) -> np.ndarray:
    """The sRGB colours (0-255, shape (..., 3)) as a dichromat of ``vision`` sees them."""
    if vision == "normal":
        return np.asarray(rgb255, float)
    return from_linear(to_linear(rgb255) @ MACHADO_2009[vision].T)


def to_lab(rgb255) -> np.ndarray:
    xyz = to_linear(rgb255) @ _RGB_TO_XYZ.T / _WHITE_D65
    d = 6 / 29
    f = np.where(xyz > d ** 3, np.cbrt(xyz), xyz / (3 * d * d) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def ciede2000(lab1, lab2) -> np.ndarray:
    """CIEDE2000 colour difference of two CIELAB arrays (Sharma, Wu and Dalal 2005)."""
    L1, a1, b1 = np.moveaxis(np.asarray(lab1, float), -1, 0)
    L2, a2, b2 = np.moveaxis(np.asarray(lab2, float), -1, 0)
    C1, C2 = np.hypot(a1, b1), np.hypot(a2, b2)
    Cbar7 = ((C1 + C2) / 2) ** 7
    G = 0.5 * (1 - np.sqrt(Cbar7 / (Cbar7 + 25.0 ** 7)))                        # (4)
    a1p, a2p = (1 + G) * a1, (1 + G) * a2                                       # (5)
    C1p, C2p = np.hypot(a1p, b1), np.hypot(a2p, b2)                             # (6)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360                                 # (7)
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    h1p = np.where((b1 == 0) & (a1p == 0), 0.0, h1p)
    h2p = np.where((b2 == 0) & (a2p == 0), 0.0, h2p)
    dLp = L2 - L1                                                               # (8)
    dCp = C2p - C1p                                                             # (9)
    dh = h2p - h1p                                                              # (10)
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(C1p * C2p == 0, 0.0, dh)
    dHp = 2 * np.sqrt(C1p * C2p) * np.sin(np.radians(dh) / 2)                   # (11)
    Lbp = (L1 + L2) / 2                                                         # (12)
    Cbp = (C1p + C2p) / 2                                                       # (13)
    hsum = h1p + h2p                                                            # (14)
    hbp = np.where(np.abs(h1p - h2p) <= 180, hsum / 2,
                   np.where(hsum < 360, (hsum + 360) / 2, (hsum - 360) / 2))
    hbp = np.where(C1p * C2p == 0, hsum, hbp)
    T = (1 - 0.17 * np.cos(np.radians(hbp - 30)) + 0.24 * np.cos(np.radians(2 * hbp))   # (15)
         + 0.32 * np.cos(np.radians(3 * hbp + 6)) - 0.20 * np.cos(np.radians(4 * hbp - 63)))
    dtheta = 30 * np.exp(-(((hbp - 275) / 25) ** 2))                            # (16)
    Cbp7 = Cbp ** 7
    RC = 2 * np.sqrt(Cbp7 / (Cbp7 + 25.0 ** 7))                                 # (17)
    SL = 1 + 0.015 * (Lbp - 50) ** 2 / np.sqrt(20 + (Lbp - 50) ** 2)            # (18)
    SC = 1 + 0.045 * Cbp                                                        # (19)
    SH = 1 + 0.015 * Cbp * T                                                    # (20)
    RT = -np.sin(np.radians(2 * dtheta)) * RC                                   # (21)
    return np.sqrt((dLp / SL) ** 2 + (dCp / SC) ** 2 + (dHp / SH) ** 2          # (22)
                   + RT * (dCp / SC) * (dHp / SH))


def pair_distances(colours, vision: str) -> np.ndarray:
    """The (n, n) matrix of CIEDE2000 differences between ``colours`` as ``vision`` sees them."""
    lab = to_lab(simulate(np.asarray(colours, float), vision))
    return ciede2000(lab[:, None, :], lab[None, :, :])
