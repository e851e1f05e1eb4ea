"""LMM: one model specification, fitted by REML or ML (and, later, sampled)."""
from __future__ import annotations

from functools import cached_property

import pandas as pd

from .crossprod import CrossProducts, cross_products
from .fit.optimize import fit_theta
from .formula import build_spec
from .results.frequentist import LMMResult, check_method
from .spec import ModelSpec
from .theta import ThetaLayout, theta_layout


class LMM:
    """A linear mixed model y = Xβ + Zb + ε from an lme4 formula.

    Parameters
    ----------
    formula : str
        lme4 syntax: fixed effects as in R (``a*b``, ``0 +``, ``np.log(x)``,
        ``scale(x)``, ``C(x)``) and random terms ``(1|g)``, ``(x|g)``, ``(0 + x|g)``,
        ``(x||g)``, ``(1|a/b)``, ``(1|a:b)``, crossed ``(1|a) + (1|b)``.
    data : pandas.DataFrame
        Never modified.  Rows missing a used value are dropped with a warning.

    Examples
    --------
    >>> import bayeslmm as blm
    >>> model = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy"))
    >>> fit = model.fit(method="REML")
    >>> round(fit.sigma, 4)
    25.5918
    """

    def __init__(self, formula: str, data: pd.DataFrame):
        self.spec: ModelSpec = build_spec(formula, data)

    @cached_property
    def stats(self) -> CrossProducts:
        """Sufficient statistics, computed once and reused by every fit of this model."""
        return cross_products(self.spec)

    @cached_property
    def layout(self) -> ThetaLayout:
        return theta_layout(self.spec)

    def fit(self, method: str = "REML", *, start=None) -> LMMResult:
        """Fit by ``"REML"`` (default) or ``"ML"``; ``start`` is an optional θ to start from."""
        method = check_method(method)
        opt = fit_theta(self.stats, self.layout, method == "REML", start=start)
        return LMMResult(self.spec, self.stats, self.layout, method, opt)

    def __repr__(self) -> str:
        groups = ", ".join(f"{f.name} ({f.n_levels})" for f in self.spec.factors) or "none"
        return f"LMM({self.spec.formula!r}; {self.spec.n} observations; groups: {groups})"
