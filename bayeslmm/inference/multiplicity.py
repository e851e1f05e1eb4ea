"""p values of a family of t (or z) tests, adjusted for multiplicity as emmeans adjusts them.

- ``"tukey"``: Tukey's honest significant difference for pairwise comparisons of k means,
  P(studentized range of k means on df > √2 |t|) (scipy's ``studentized_range``, as R's ``ptukey``).
- ``"dunnettx"``: emmeans' approximation of Dunnett's distribution for m comparisons with
  correlations 0.5 (treatments against one control): the CDF of max |t| is a mixture
  w F_tukey(√2 |t|; k*, df) + (1 − w) F_F(t²; 1, df)^m with w = (m − 1)/m and k* the number of
  means whose m* = k*(k* − 1)/2 pairs equal m, i.e. k* = (1 + √(1 + 8m))/2.
- ``"sidak"``: 1 − (1 − p)^m; ``"bonferroni"``: min(1, m p); ``"holm"``: Holm's step-down
  Bonferroni; ``"none"``: the unadjusted two-sided p.
"""
from __future__ import annotations

import numpy as np
from scipy import stats as st

from bayeslmm.errors import LMMError

ADJUSTMENTS = ("tukey", "dunnettx", "sidak", "bonferroni", "holm", "none")
DEFAULT_ADJUSTMENT = {"pairwise": "tukey", "trt.vs.ctrl": "dunnettx"}


def check_adjust(adjust, method: str) -> str:
    """The adjustment in lower case; ``None`` is the method's default (emmeans')."""
    if adjust is None:
        return DEFAULT_ADJUSTMENT[method]
    if not isinstance(adjust, str) or adjust.lower() not in ADJUSTMENTS:
        raise LMMError(f"adjust must be one of {', '.join(map(repr, ADJUSTMENTS))}; got {adjust!r}")
    if adjust.lower() == "tukey" and method != "pairwise":
        raise LMMError(f"adjust='tukey' is for pairwise comparisons; for method={method!r} use 'dunnettx' "
                       "(its default), 'sidak', 'bonferroni', 'holm' or 'none'")
    return adjust.lower()


def adjusted_p(t: np.ndarray, df: np.ndarray, adjust: str, n_means: int) -> np.ndarray:
    """Two-sided p values of one family of tests (``n_means`` means compared), adjusted.

    Examples
    --------
    >>> import numpy as np
    >>> t, df = np.array([2.5, 1.0, -0.3]), np.array([20.0, 20.0, 20.0])
    >>> adjusted_p(t, df, "none", 3).round(4).tolist()
    [0.0212, 0.3293, 0.7673]
    >>> adjusted_p(t, df, "tukey", 3).round(4).tolist()  # R: ptukey(sqrt(2) * abs(t), 3, 20, lower = FALSE)
    [0.0531, 0.5854, 0.9517]
    """
    t, df = np.abs(np.asarray(t, dtype=float)), np.asarray(df, dtype=float)
    raw = 2 * st.t.sf(t, df)
    m = t.size
    if adjust == "none" or m == 0:
        return raw
    if adjust == "tukey":
        return st.studentized_range.sf(np.sqrt(2) * t, n_means, df)
    if adjust == "dunnettx":
        return 1 - dunnettx_cdf(t, m, df)
    if adjust == "sidak":
        return 1 - (1 - raw) ** m
    if adjust == "bonferroni":
        return np.minimum(1.0, m * raw)
    return holm(raw)


def dunnettx_cdf(t: np.ndarray, m: int, df: np.ndarray) -> np.ndarray:
    """emmeans' approximate P(max of m Dunnett |t| ≤ t) (see the module's docstring)."""
    sidak = (1 - 2 * st.t.sf(t, df)) ** m  # F_F(t²; 1, df) = P(|T| ≤ t), also for df = ∞
    if m == 1:
        return sidak
    weight = (m - 1) / m
    tukey = st.studentized_range.cdf(np.sqrt(2) * t, (1 + np.sqrt(1 + 8 * m)) / 2, df)
    return weight * tukey + (1 - weight) * sidak


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment: the i-th smallest p times (m − i + 1), kept monotone."""
    order = np.argsort(p, kind="stable")
    m = p.size
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(1.0, stepped)
    return out
