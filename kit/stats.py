"""Small statistics in plain Python floats, so that a printed figure is the same on every CPU.

numpy's least-squares and linear-algebra routines hand the work to compiled
libraries whose kernels are chosen per CPU; their last bits (and so a rounded
figure printed by a notebook) can differ from one machine to another.  Everything here
is a closed form evaluated with IEEE-754 double operations in a fixed order and
``math.fsum`` (exactly rounded sums), which gives the same bits on any x86-64 or
arm64 machine.  Use these wherever a figure is shown to a reader.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence


def mean(xs: Iterable[float]) -> float:
    xs = [float(x) for x in xs]
    if not xs:
        raise ValueError("mean of no values")
    return math.fsum(xs) / len(xs)


def line_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares line ``y = a + b * x``; returns ``(a, b)``.

    The closed form: ``b = sum((x - mx) * (y - my)) / sum((x - mx) ** 2)`` and
    ``a = my - b * mx``, with exactly rounded sums."""
    xs, ys = [float(x) for x in xs], [float(y) for y in ys]
    if len(xs) != len(ys):
        raise ValueError(f"line_fit needs as many x as y (got {len(xs)} and {len(ys)})")
    if len(xs) < 2:
        raise ValueError("line_fit needs at least two points")
    mx, my = mean(xs), mean(ys)
    sxx = math.fsum((x - mx) * (x - mx) for x in xs)
    if sxx == 0:
        raise ValueError("line_fit needs at least two different x values")
    b = math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return my - b * mx, b


def least_squares_1(us: Sequence[float], ys: Sequence[float]) -> float:
    """Least squares ``y ~ a * u`` through the origin: ``a = sum(u * y) / sum(u * u)``."""
    suu = math.fsum(u * u for u in us)
    if suu == 0:
        raise ValueError("least_squares_1: every u is zero")
    return math.fsum(u * y for u, y in zip(us, ys)) / suu


def least_squares_2(rows: Sequence[Sequence[float]], ys: Sequence[float]) -> tuple[float, float]:
    """Least squares ``y ~ a * u + b * v`` through the origin, for rows ``(u, v)``.

    The 2x2 normal equations, solved by Cramer's rule with exactly rounded sums."""
    suu = math.fsum(u * u for u, _ in rows)
    svv = math.fsum(v * v for _, v in rows)
    suv = math.fsum(u * v for u, v in rows)
    suy = math.fsum(u * y for (u, _), y in zip(rows, ys))
    svy = math.fsum(v * y for (_, v), y in zip(rows, ys))
    det = suu * svv - suv * suv
    if det == 0:
        raise ValueError("least_squares_2: the two columns are not independent")
    return (suy * svv - svy * suv) / det, (svy * suu - suy * suv) / det


def solve(a: Sequence[Sequence[float]], b: Sequence[float]) -> list[float]:
    """Solve the square system ``a x = b`` by Gaussian elimination with partial pivoting,
    in plain Python floats (fixed order of operations)."""
    n = len(b)
    m = [[float(v) for v in row] + [float(rhs)] for row, rhs in zip(a, b)]
    if len(m) != n or any(len(r) != n + 1 for r in m):
        raise ValueError("solve needs a square matrix and a right-hand side of the same size")
    for col in range(n):
        piv = max(range(col, n), key=lambda r: abs(m[r][col]))
        if m[piv][col] == 0:
            raise ValueError("solve: the matrix is singular")
        m[col], m[piv] = m[piv], m[col]
        for r in range(col + 1, n):
            f = m[r][col] / m[col][col]
            if f:
                m[r] = [x - f * y for x, y in zip(m[r], m[col])]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        x[r] = (m[r][n] - math.fsum(m[r][c] * x[c] for c in range(r + 1, n))) / m[r][r]
    return x


def percentile(xs: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between order statistics
    (numpy's default, "linear"), in plain floats."""
    s = sorted(float(x) for x in xs)
    if not s:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be within 0..100 (got {q})")
    pos = (len(s) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)
