"""Exact Wigner 3j symbols and Clebsch-Gordan coefficients, py3nj-compatible.

escnn calls ``py3nj.clebsch_gordan(two_j1, two_j2, two_j3, two_m1, two_m2, two_m3)``
with broadcastable integer arrays holding *twice* the angular momenta. The Fortran
original needs gfortran to build; without any py3nj escnn falls back to a numerical
solver seeded from unseeded random samples, whose signs differ from one fresh cache to
the next. This module evaluates the Racah formula in exact rational arithmetic, so the
result is the correctly rounded float64 of the true coefficient, everywhere.

Phase convention: Condon-Shortley, as in py3nj and every standard table.
"""
from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from math import factorial, isqrt, sqrt

import numpy as np

__all__ = ["wigner3j", "clebsch_gordan"]
__version__ = "0.2.1.post100"


def _valid(tj1: int, tj2: int, tj3: int, tm1: int, tm2: int, tm3: int) -> bool:
    """True when the doubled arguments describe genuine angular momenta."""
    if min(tj1, tj2, tj3) < 0:
        return False
    return all((tj + tm) % 2 == 0 for tj, tm in ((tj1, tm1), (tj2, tm2), (tj3, tm3)))


@lru_cache(maxsize=None)
def _wigner3j_exact(tj1: int, tj2: int, tj3: int, tm1: int, tm2: int, tm3: int) -> float:
    """Racah formula on doubled integer arguments; 0 outside the selection rules."""
    if tm1 + tm2 + tm3 != 0:
        return 0.0
    if abs(tm1) > tj1 or abs(tm2) > tj2 or abs(tm3) > tj3:
        return 0.0
    # triangle condition, and j1 + j2 + j3 must be an integer
    if tj3 > tj1 + tj2 or tj3 < abs(tj1 - tj2) or (tj1 + tj2 + tj3) % 2:
        return 0.0
    a = (tj1 + tj2 - tj3) // 2
    b = (tj1 - tj2 + tj3) // 2
    c = (-tj1 + tj2 + tj3) // 2
    big = (tj1 + tj2 + tj3) // 2 + 1
    j1pm1, j1mm1 = (tj1 + tm1) // 2, (tj1 - tm1) // 2
    j2pm2, j2mm2 = (tj2 + tm2) // 2, (tj2 - tm2) // 2
    j3pm3, j3mm3 = (tj3 + tm3) // 2, (tj3 - tm3) // 2

    prefactor_sq = Fraction(
        factorial(a) * factorial(b) * factorial(c)
        * factorial(j1pm1) * factorial(j1mm1) * factorial(j2pm2)
        * factorial(j2mm2) * factorial(j3pm3) * factorial(j3mm3),
        factorial(big),
    )
    # k runs over all integers keeping every factorial argument non-negative
    t1 = (tj3 - tj2 + tm1) // 2  # j3 - j2 + m1
    t2 = (tj3 - tj1 - tm2) // 2  # j3 - j1 - m2
    k_min = max(0, -t1, -t2)
    k_max = min(a, j1mm1, j2pm2)
    total = Fraction(0)
    for k in range(k_min, k_max + 1):
        denom = (factorial(k) * factorial(t1 + k) * factorial(t2 + k)
                 * factorial(a - k) * factorial(j1mm1 - k) * factorial(j2pm2 - k))
        total += Fraction(-1 if k % 2 else 1, denom)
    if total == 0:
        return 0.0
    phase_exp = (tj1 - tj2 - tm3) // 2
    sign = -1 if (phase_exp % 2) else 1
    if total < 0:
        sign = -sign
    value_sq = total * total * prefactor_sq
    return sign * _sqrt_fraction(value_sq)


def _sqrt_fraction(q: Fraction) -> float:
    """sqrt of a non-negative rational, exact to float64 rounding."""
    num, den = q.numerator, q.denominator
    # scale so the integer square root carries ~80 significant bits
    shift = max(0, 160 - (num.bit_length() - den.bit_length()))
    shift += shift % 2
    root = isqrt((num << shift) // den)
    return float(Fraction(root, 1 << (shift // 2))) if shift else sqrt(num / den)


def _broadcast_apply(fn, ignore_invalid: bool, *args) -> np.ndarray | float:
    arrays = np.broadcast_arrays(*[np.asarray(x, dtype=np.int64) for x in args])
    out = np.empty(arrays[0].shape, dtype=np.float64)
    flat = [a.ravel() for a in arrays]
    for i in range(out.size):
        vals = tuple(int(a[i]) for a in flat)
        if not _valid(*vals):
            if not ignore_invalid:
                raise ValueError(f"invalid angular momenta (doubled): {vals}")
            out.flat[i] = 0.0
            continue
        out.flat[i] = fn(*vals)
    if out.ndim == 0:
        return float(out)
    return out


def wigner3j(two_l1, two_l2, two_l3, two_m1, two_m2, two_m3, ignore_invalid=False):
    """Wigner 3j symbol (l1 l2 l3; m1 m2 m3); every argument doubled, broadcastable."""
    return _broadcast_apply(_wigner3j_exact, ignore_invalid,
                            two_l1, two_l2, two_l3, two_m1, two_m2, two_m3)


def _cg_exact(tj1, tj2, tj3, tm1, tm2, tm3) -> float:
    # <j1 m1 j2 m2 | j3 m3> = (-1)^(j1 - j2 + m3) sqrt(2 j3 + 1) (j1 j2 j3; m1 m2 -m3)
    w = _wigner3j_exact(tj1, tj2, tj3, tm1, tm2, -tm3)
    if w == 0.0:
        return 0.0
    phase = ((tj1 - tj2 + tm3) // 2) % 2
    return (-1.0 if phase else 1.0) * sqrt(tj3 + 1) * w


def clebsch_gordan(two_j1, two_j2, two_j3, two_m1, two_m2, two_m3, ignore_invalid=False):
    """Clebsch-Gordan coefficient <j1 m1 j2 m2 | j3 m3>; arguments doubled, broadcastable."""
    return _broadcast_apply(_cg_exact, ignore_invalid,
                            two_j1, two_j2, two_j3, two_m1, two_m2, two_m3)
