"""Numbers printed as R prints them: ``format(x, digits=)``, ``format.pval`` and the columns
of ``printCoefmat``, so that a summary shows the digits an R user expects.

R formats a vector *jointly*: every number gets the same number of decimals, enough for the
one that needs most to show ``digits`` significant digits, unless fixed notation would be
wider than scientific notation, when all of them are printed in scientific notation.  The
rules here follow R 4.2's ``formatReal`` (src/main/format.c) and ``stats::printCoefmat``.

Examples
--------
>>> from bayeslmm.results.rformat import format_numbers
>>> format_numbers([612.10, 35.07, 654.94], digits=4)
['612.10', ' 35.07', '654.94']
>>> format_numbers([2.122, 0.0004619, 314.0], digits=4)
['2.122e+00', '4.619e-04', '3.140e+02']
"""
from __future__ import annotations

import math

import numpy as np

P_VALUE_EPS = float(np.finfo(float).eps)  # R's .Machine$double.eps, printCoefmat's eps.Pvalue
STAR_CUTS = ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, "."), (1.0, " "))
SIGNIF_LEGEND = "Signif. codes:  0 ‘***’ 0.001 ‘**’ 0.01 ‘*’ 0.05 ‘.’ 0.1 ‘ ’ 1"


def _significant(value: float, digits: int) -> tuple[int, int]:
    """(power of ten, significant digits needed) of |value| rounded to ``digits`` digits."""
    if value == 0:
        return 0, 1
    mantissa, exponent = f"{abs(value):.{digits - 1}e}".split("e")
    return int(exponent), len(mantissa.replace(".", "").rstrip("0")) or 1


def format_numbers(values, digits: int = 7, nsmall: int = 0) -> list[str]:
    """R's ``format(values, digits = digits, nsmall = nsmall)``: common decimals (or scientific
    notation for all), right-justified to a common width; NaN prints as ``NaN``."""
    values = [float(v) for v in values]
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return _justify(["NaN" if math.isnan(v) else ("Inf" if v > 0 else "-Inf") for v in values])
    parts = [_significant(v, digits) for v in finite]
    negative = any(v < 0 for v in finite)
    left = max((v < 0) + max(power + 1, 1) for v, (power, _) in zip(finite, parts))
    right = max(0, max(nsig - power - 1 for power, nsig in parts))
    fixed_width = left + right + (right > 0)
    mantissa = max(nsig for _, nsig in parts) - 1
    exponent_digits = 2 if max(abs(p) for p, _ in parts) >= 100 else 1
    sci_width = negative + (mantissa > 0) + mantissa + 4 + exponent_digits
    if fixed_width <= sci_width:
        right = max(right, nsmall)
        text = [f"{v:.{right}f}" if math.isfinite(v) else _special(v) for v in values]
    else:
        text = [f"{v:.{mantissa}e}" if math.isfinite(v) else _special(v) for v in values]
    return _justify(text)


def _special(value: float) -> str:
    return "NaN" if math.isnan(value) else ("Inf" if value > 0 else "-Inf")


def _justify(text: list[str]) -> list[str]:
    width = max((len(t) for t in text), default=0)
    return [t.rjust(width) for t in text]


def format_pvalues(pvalues, digits: int = 3, eps: float = P_VALUE_EPS) -> list[str]:
    """R's ``format.pval``: p below ``eps`` as ``< 2e-16``; the others formatted jointly, the
    ones from 1e-4 up apart from the smaller ones (which may be scientific)."""
    pvalues = [float(p) for p in pvalues]
    text = [""] * len(pvalues)
    small = [p < eps for p in pvalues]
    shown = [i for i, is_small in enumerate(small) if not is_small]
    fixed = [i for i in shown if math.floor(math.log10(pvalues[i])) >= -3
             or (math.floor(math.log10(pvalues[i])) == -4 and digits > 1)] if shown else []
    for group in (fixed, [i for i in shown if i not in fixed]):
        for i, t in zip(group, format_numbers([pvalues[i] for i in group], digits)):
            text[i] = t
    if any(small):
        eps_digits = max(1, digits - 2)
        widest = max((len(text[i]) for i in shown), default=0)
        if shown and eps_digits > 1 and eps_digits + 6 > widest:
            eps_digits = max(1, widest - 7)
        sep = "" if eps_digits == 1 and (not shown or widest <= 6) else " "
        bound = "<" + sep + format_numbers([eps], eps_digits)[0]
        text = [bound if is_small else t for t, is_small in zip(text, small)]
    return text


def significance_stars(pvalues) -> list[str]:
    """R's significance codes (``***`` below 0.001 … ``.`` below 0.1), left-justified."""
    stars = [next(star for cut, star in STAR_CUTS if p <= cut) if math.isfinite(p) else " " for p in pvalues]
    width = max(len(s) for s in stars)
    return [s.ljust(width) for s in stars]


def zap_small(values, digits: int) -> np.ndarray:
    """R's ``zapsmall(values, digits)``: rounded to ``digits`` significant digits of the largest."""
    values = np.asarray(values, dtype=float)
    largest = np.nanmax(np.abs(values)) if values.size else 0.0
    decimals = max(0, digits - math.log10(largest)) if largest > 0 else digits
    return np.round(values, int(math.floor(decimals + 0.5)))


def coefficient_columns(table, digits: int = 4) -> dict[str, list[str]]:
    """The printed columns of a coefficient table, as ``printCoefmat(table, digits)`` prints them.

    ``table``: a DataFrame whose last column is a p-value (``Pr(…)``) and whose column before
    that is the test statistic; the columns before the statistic (estimate, standard error,
    df) share one number of decimals, set by the smallest of them (R's ``cs.ind``).  Without a
    p-value column the last column is the statistic.
    """
    columns = list(table.columns)
    has_p = columns[-1].startswith("Pr(")
    statistic = columns[-2] if has_p else columns[-1]
    shared = columns[:columns.index(statistic)]
    block = table[shared].to_numpy(dtype=float)
    finite = np.abs(block[np.isfinite(block) & (block != 0)])
    smallest = 1 + math.floor(math.log10(finite.min())) if finite.size else 1
    rounded = np.round(block, max(1, digits - smallest))
    text = np.array(format_numbers(rounded.T.reshape(-1), digits)).reshape(len(shared), -1)
    printed = {name: list(text[k]) for k, name in enumerate(shared)}
    _show_nonzero_that_rounded_to_zero(printed, table, digits)
    printed[statistic] = format_numbers(np.round(table[statistic].to_numpy(dtype=float), _test_digits(digits)),
                                        digits)
    if has_p:
        printed[columns[-1]] = format_pvalues(table[columns[-1]], _test_digits(digits))
    return printed


def _test_digits(digits: int) -> int:
    """printCoefmat's ``dig.tst``: the statistic's and the p-value's digits."""
    return max(1, min(5, digits - 1))


def _show_nonzero_that_rounded_to_zero(printed: dict, table, digits: int) -> None:
    """printCoefmat's last touch: a nonzero number that printed as 0 is shown with digits − 1."""
    for name, text in printed.items():
        values = table[name].to_numpy(dtype=float)
        wrong = [i for i, (v, t) in enumerate(zip(values, text)) if v != 0 and float(t) == 0]
        if wrong:
            redone = format_numbers(values[wrong], max(1, digits - 1))
            for i, t in zip(wrong, redone):
                text[i] = t.strip()  # R's print justifies the column again
