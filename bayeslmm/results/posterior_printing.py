"""Text and HTML reports of a posterior (brms's ``summary(brmsfit)`` in spirit): fixed effects,
variance parameters and the residual structure with their posterior mean, sd, the 95%
equal-tailed interval and the diagnostics, ESS as whole numbers; and ``prior_summary()``,
the priors in effect with their data-scaled values, laid out as brms's ``prior_summary``.
"""
from __future__ import annotations

import html

import numpy as np
import pandas as pd

from bayeslmm.model import priors as priors_module
from bayeslmm.model.covariance import term_pairs
from bayeslmm.results.rformat import format_numbers

DIGITS = 3  # significant digits of a row's smallest number (the sd, usually)
LABELS = ["grp", "var1", "var2"]
PRIOR_COLUMNS = ["prior", "class", "coef", "group", "lb", "ub", "source"]


class BayesSummary:
    """Text and HTML report of a posterior: fixed effects, variance components, diagnostics.

    The tables (``fixed_effects``, ``random_effects``, ``residual``) are the result's, with
    intervals at ``level`` (0.95 by default); text and HTML show each row's mean, sd and
    interval to the same decimals (:func:`posterior_cells`), ESS as whole numbers and R-hat to
    two decimals, as brms prints them.
    """

    def __init__(self, result, level: float = 0.95):
        self.result = result
        self.fixed_effects = result.fixef(level=level)
        self.random_effects = result.varcorr(level=level)
        self.residual = result.residual_params(level=level)
        self.diagnostics = result.diagnostics

    def _header(self) -> list[str]:
        r = self.result
        how = "random effects and fixed effects integrated out, then drawn exactly" if r.marginalize else \
            "hierarchical model"
        d = self.diagnostics
        groups = "; ".join(f"{f.name}, {f.n_levels}" for f in r.spec.factors)
        return [f"Bayesian linear mixed model (NUTS via {r.sampler}; {how})",
                f"Formula: {r.spec.formula}",
                f"   Data: {r.spec.data_name}",
                f"Draws: {d['draws']} ({r.posterior.sizes['chain']} chains); number of obs: {r.spec.n}"
                + (f", groups: {groups}" if groups else "")]

    def _diagnostic_lines(self) -> list[str]:
        d = self.diagnostics
        lines = [f"Divergences: {d['divergences']}; max R-hat: {d['max_r_hat']:.3f}; "
                 f"min ESS bulk/tail: {d['min_ess_bulk']:.0f}/{d['min_ess_tail']:.0f}"]
        return lines + [f"WARNING: {p}" for p in d["problems"]]

    def __str__(self) -> str:
        parts = self._header() + ["", "Fixed effects:", posterior_cells(self.fixed_effects).to_string(), "",
                                  "Random effects (sd, correlation) and residual sd:",
                                  posterior_cells(self.random_effects).to_string(index=False), ""]
        if not self.residual.empty:
            parts += ["Residual structure:", posterior_cells(self.residual).to_string(), ""]
        return "\n".join(parts + self._diagnostic_lines()) + "\n"

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        parts = [f"<p>{html.escape(line)}</p>" for line in self._header()]
        parts += ["<p><b>Fixed effects</b></p>", posterior_cells(self.fixed_effects).to_html(),
                  "<p><b>Random effects and residual sd</b></p>",
                  posterior_cells(self.random_effects).to_html(index=False)]
        if not self.residual.empty:
            parts += ["<p><b>Residual structure</b></p>", posterior_cells(self.residual).to_html()]
        parts += [f"<p>{html.escape(line)}</p>" for line in self._diagnostic_lines()]
        return "\n".join(parts)


def posterior_cells(table: pd.DataFrame) -> pd.DataFrame:
    """A posterior table as printed: each row's mean, sd and interval to the same decimals
    (R's ``format`` of the row, 3 significant digits of the smallest, usually the sd), ESS
    whole, R-hat to 2 decimals, MCSE left out, empty labels blank."""
    cells = table.drop(columns=[c for c in ("mcse_mean", "mcse_sd") if c in table.columns]).astype(object)
    values = [c for c in cells.columns if c not in LABELS and not c.startswith("ess_") and c != "r_hat"]
    for column in cells.columns:
        if column in LABELS:  # pandas prints a column of only None as "None" whatever na_rep says
            cells[column] = cells[column].where(cells[column].notna(), "")
        elif column.startswith("ess_"):
            cells[column] = [f"{v:.0f}" if np.isfinite(v) else "NA" for v in table[column]]
        elif column == "r_hat":
            cells[column] = [f"{v:.2f}" if np.isfinite(v) else "NA" for v in table[column]]
    rows = [[text.strip() for text in format_numbers(row, DIGITS)] for row in table[values].to_numpy(dtype=float)]
    cells[values] = np.array(rows, dtype=object).reshape(len(table), len(values))
    return cells


# --- priors ----------------------------------------------------------------------------------


def prior_table(spec, priors: priors_module.ModelPriors, residual: bool = False) -> PriorTable:
    """The priors in effect, one row per parameter (brms's ``prior_summary`` columns).

    ``prior``: the prior as written with bayeslmm's classes, its data-scaled values filled in;
    ``class``: ``Intercept`` (the intercept at the predictors' means, as brms's), ``b``,
    ``sd``, ``cor`` (LKJ), ``sigma``, and with a residual structure ``rho``,
    ``log_sd_ratio``, ``rescor``; ``coef`` and ``group`` say which one; ``lb`` the lower bound
    of a scale; ``source``: ``default`` or ``user`` (differs from the default).
    """
    defaults = priors_module.resolve(spec, priors.labels, residual=residual)
    rows = []
    for name, chosen, default in zip(priors.beta.names, priors.beta.coordinates, defaults.beta.coordinates):
        rows.append(_row(chosen, "Intercept" if name == "(Intercept)" else "b",
                         "" if name == "(Intercept)" else name, "", chosen == default))
    for term, label, chosen, default in zip(spec.terms, priors.labels, priors.terms, defaults.terms):
        if term_pairs(term):
            rows.append(_row(f"LKJ({chosen.eta:g})", "cor", "", label, chosen.eta == default.eta))
        for column, sd, default_sd in zip(term.column_names, chosen.sds, default.sds):
            rows.append(_row(sd, "sd", column, label, sd == default_sd, lb="0"))
    rows.append(_row(priors.sigma, "sigma", "", "", priors.sigma == defaults.sigma, lb="0"))
    if priors.residual is not None:
        mine, default = priors.residual, defaults.residual
        rows += [_row(mine.rho, "rho", "", "", mine.rho == default.rho),
                 _row(mine.log_sd_ratio, "log_sd_ratio", "", "", mine.log_sd_ratio == default.log_sd_ratio),
                 _row(f"LKJ({mine.eta:g})", "rescor", "", "", mine.eta == default.eta)]
    return PriorTable(rows, columns=PRIOR_COLUMNS)


def _row(prior, kind: str, coef: str, group: str, is_default: bool, lb: str = "") -> list[str]:
    return [prior if isinstance(prior, str) else prior_text(prior), kind, coef, group, lb, "",
            "default" if is_default else "user"]


def prior_text(prior) -> str:
    """A prior as written with its class, 4 significant digits: ``Normal(mu=298.5, sigma=140.4)``.

    Examples
    --------
    >>> from bayeslmm.priors import HalfStudentT
    >>> prior_text(HalfStudentT(3, 56.1749))
    'HalfStudentT(nu=3, sigma=56.17)'
    """
    values = [(name, getattr(prior, name)) for name in getattr(prior, "__dataclass_fields__", {})]
    return f"{type(prior).__name__}({', '.join(f'{name}={value:.4g}' for name, value in values)})"


class PriorTable(pd.DataFrame):
    """A DataFrame that prints without its row numbers, as brms prints ``prior_summary``."""

    @property
    def _constructor(self):  # pandas' subclassing protocol: operations keep the class
        return PriorTable

    def __repr__(self) -> str:
        return self.to_string(index=False)
