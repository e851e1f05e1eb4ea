"""Text and HTML reports of a REML/ML fit, laid out as lmerTest's ``summary(lmer)`` prints them.

Numbers are formatted as R formats them (:mod:`bayeslmm.results.rformat`): the columns of
the random-effects table each with one number of decimals, the fixed effects as
``printCoefmat`` prints them (estimate, standard error and df to the same decimals, p-values
with ``format.pval`` and significance stars).  Two departures from lme4, on purpose: a
variance that is zero up to rounding (below 1e-10 of the largest) prints as 0 rather than as
``2.552e-25``, and the correlation of the fixed effects keeps the full names (lme4 cuts
them to 6 characters).
"""
from __future__ import annotations

import html
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayeslmm.errors import LMMError
from bayeslmm.inference.fixed_effects import check_ddf, coef_table
from bayeslmm.model.covariance import sd_cor, term_labels
from bayeslmm.model.residual import ResidualParameters
from bayeslmm.results.rformat import SIGNIF_LEGEND, coefficient_columns, format_numbers, significance_stars, zap_small

DIGITS = 4  # lme4's print digits: max(3, getOption("digits") - 3)
ZERO_VARIANCE = 1e-10  # a variance below this fraction of the largest one prints as 0
TEST_METHODS = {"satterthwaite": "t-tests use Satterthwaite's method",
                "kenward-roger": "t-tests use Kenward-Roger's method",
                "asymptotic": "z-tests use the normal approximation"}


@dataclass(frozen=True)
class Summary:
    """The pieces of a summary; ``str()`` gives lmerTest-style text, Jupyter renders HTML.

    ``fixed_effects`` has lmerTest's columns ``Estimate, Std. Error, df, t value, Pr(>|t|)``
    (``z value, Pr(>|z|)`` and no df with ``ddf="asymptotic"``; only ``Estimate, Std. Error,
    t value`` when the requested df could not be computed, which ``notes`` explains).
    """

    title: str
    formula: str
    data_name: str
    criteria: pd.DataFrame  # one row: REML criterion, or AIC/BIC/logLik/deviance/df.resid
    scaled_residuals: pd.Series
    random_effects: pd.DataFrame  # Groups, Name, Variance, Std.Dev., Corr…
    counts: str
    fixed_effects: pd.DataFrame  # Estimate, Std. Error, df, t value, Pr(>|t|)
    correlation: pd.DataFrame  # lower triangle, full names
    notes: tuple[str, ...]

    def __str__(self) -> str:
        parts = [self.title, f"Formula: {self.formula}", f"   Data: {self.data_name}", "",
                 _criteria_text(self.criteria), "", "Scaled residuals:", *_scaled_residual_lines(self.scaled_residuals),
                 "", "Random effects:", _random_effects_text(self.random_effects), self.counts, ""]
        if len(self.fixed_effects):
            parts += ["Fixed effects:", *_fixed_effects_lines(self.fixed_effects), ""]
        if len(self.correlation):
            parts += ["Correlation of Fixed Effects:", _correlation_text(self.correlation), ""]
        parts += list(self.notes)
        return "\n".join(parts).rstrip() + "\n"

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        residuals = self.scaled_residuals
        blocks = [f"<h4>{html.escape(self.title)}</h4>",
                  f"<p><b>Formula:</b> <code>{html.escape(self.formula)}</code><br>"
                  f"<b>Data:</b> {html.escape(self.data_name)}</p>",
                  _criteria_frame(self.criteria).to_html(index=False),
                  "<p><b>Scaled residuals</b></p>",
                  pd.DataFrame([_residual_cells(residuals)], columns=residuals.index).to_html(index=False),
                  "<p><b>Random effects</b></p>",
                  _random_effects_cells(self.random_effects).to_html(index=False),
                  f"<p>{html.escape(self.counts)}</p>"]
        if len(self.fixed_effects):
            blocks += ["<p><b>Fixed effects</b></p>", _fixed_effects_cells(self.fixed_effects).to_html()]
        if len(self.correlation):
            blocks += ["<p><b>Correlation of Fixed Effects</b></p>", _correlation_cells(self.correlation).to_html()]
        blocks += [f"<p><i>{html.escape(note)}</i></p>" for note in self.notes if note]
        return "\n".join(blocks)


def summarize(fit, ddf: str = "satterthwaite") -> Summary:
    """The summary of a REML/ML fit with ``ddf``'s t tests (see :meth:`LMMResult.summary`)."""
    ddf = check_ddf(ddf)
    fixed, unavailable = _fixed_effects(fit, ddf)
    kind = "REML" if fit.reml else "maximum likelihood"
    title = f"{'Linear mixed model' if fit.spec.factors else 'Linear model'} fit by {kind}"
    if not unavailable and len(fixed):
        title += f". {TEST_METHODS[ddf]}"
    return Summary(
        title=title,
        formula=fit.spec.formula,
        data_name=fit.spec.data_name,
        criteria=_criteria(fit),
        scaled_residuals=fit.scaled_residual_quantiles(),
        random_effects=random_effects_table(fit),
        counts=_counts(fit),
        fixed_effects=fixed,
        correlation=_fixef_correlation(fit),
        notes=(unavailable,) + _notes(fit) if unavailable else _notes(fit),
    )


def _fixed_effects(fit, ddf: str) -> tuple[pd.DataFrame, str]:
    """lmerTest's coefficient table, and "" or the note saying why its df are unavailable."""
    estimate, se = fit.fixef(), fit.se()
    try:
        table = coef_table(fit, ddf=ddf)
    except LMMError as err:
        note = f"{TEST_METHODS[ddf].split(' use ')[1]} is not available for this model ({err}); no df or p-values shown"
        warnings.warn(note, UserWarning, stacklevel=4)
        return pd.DataFrame({"Estimate": estimate, "Std. Error": se, "t value": estimate / se}), note
    if ddf == "asymptotic":
        return pd.DataFrame({"Estimate": table["estimate"], "Std. Error": table["std_error"],
                             "z value": table["statistic"], "Pr(>|z|)": table["p_value"]}), ""
    return pd.DataFrame({"Estimate": table["estimate"], "Std. Error": table["std_error"], "df": table["df"],
                         "t value": table["statistic"], "Pr(>|t|)": table["p_value"]}), ""


# --- the model criteria and residuals ----------------------------------------------------------


def _criteria(fit) -> pd.DataFrame:
    if fit.reml:
        return pd.DataFrame({"REML criterion at convergence": [fit.deviance]})
    return pd.DataFrame({"AIC": [fit.aic], "BIC": [fit.bic], "logLik": [fit.loglik],
                         "deviance": [fit.deviance], "df.resid": [fit.nobs - fit.npar]})


def _criteria_frame(criteria: pd.DataFrame) -> pd.DataFrame:
    """The criteria as lme4 prints them: rounded to one decimal, formatted together; df.resid whole."""
    if list(criteria.columns) == ["REML criterion at convergence"]:
        return pd.DataFrame({criteria.columns[0]: [f"{criteria.iloc[0, 0]:.1f}"]})
    values = criteria.iloc[0]
    cells = [c.strip() for c in format_numbers(np.round(values.drop("df.resid").to_numpy(dtype=float), 1))]
    return pd.DataFrame([cells + [f"{int(values['df.resid'])}"]], columns=criteria.columns)


def _criteria_text(criteria: pd.DataFrame) -> str:
    cells = _criteria_frame(criteria)
    if cells.shape[1] == 1:
        return f"{cells.columns[0]}: {cells.iloc[0, 0]}"
    return "\n".join(_named_row(list(cells.columns), list(cells.iloc[0])))


def _residual_cells(quantiles: pd.Series) -> list[str]:
    """lme4's: zapped to digits + 1 of the largest, then printed with ``digits``."""
    return format_numbers(zap_small(quantiles.to_numpy(), DIGITS + 1), DIGITS)


def _scaled_residual_lines(quantiles: pd.Series) -> list[str]:
    return _named_row(list(quantiles.index), _residual_cells(quantiles))


def _named_row(names: list[str], cells: list[str]) -> list[str]:
    """A named vector as R prints it: one common width, names over values, right-justified."""
    width = max(len(s) for s in names + cells)
    return [" ".join(s.rjust(width) for s in names), " ".join(s.strip().rjust(width) for s in cells)]


# --- random effects -----------------------------------------------------------------------------


def random_effects_table(fit) -> pd.DataFrame:
    """lme4's printed VarCorr: Groups, Name, Variance, Std.Dev., Corr (lower triangle).

    Variances (and their sds) below ``ZERO_VARIANCE`` of the largest are set to 0: a boundary
    fit's θ stops at a round-off distance from 0.
    """
    rows, width = [], max([t.size for t in fit.spec.terms], default=1)
    for label, term, cov in zip(term_labels(fit.spec.terms), fit.spec.terms, fit.term_covariances()):
        sd, corr = sd_cor(cov)
        for i, name in enumerate(term.column_names):
            cells = [f"{corr[i, j]:.2f}" for j in range(i)] + [""] * (width - 1 - i)
            rows.append([label if i == 0 else "", name, cov[i, i], sd[i], *cells])
    rows.append(["Residual", "", fit.sigma**2, fit.sigma, *[""] * (width - 1)])
    corr_columns = ["Corr"] + [""] * (width - 2) if width > 1 else []
    columns = ["Groups", "Name", "Variance", "Std.Dev."] + [c + " " * k for k, c in enumerate(corr_columns)]
    table = pd.DataFrame(rows, columns=columns)
    zero = table["Variance"] < ZERO_VARIANCE * table["Variance"].max()
    table.loc[zero, ["Variance", "Std.Dev."]] = 0.0
    return table


def _random_effects_cells(table: pd.DataFrame) -> pd.DataFrame:
    """The table as printed: each number column formatted together (R's ``format``)."""
    return table.assign(**{c: format_numbers(table[c], DIGITS) for c in ("Variance", "Std.Dev.")})


def _random_effects_text(table: pd.DataFrame) -> str:
    """lme4 prints VarCorr as a character matrix, every column flush left."""
    cells = _random_effects_cells(table)
    return _matrix_text([""] * len(cells), list(cells.columns), cells.to_numpy(dtype=object).tolist(), right=False)


def _counts(fit) -> str:
    groups = "; ".join(f"{name}, {count}" for name, count in fit.ngrps.items())
    return f"Number of obs: {fit.nobs}" + (f", groups:  {groups}" if groups else "")


# --- fixed effects ----------------------------------------------------------------------------


def _fixed_effects_cells(fixed: pd.DataFrame) -> pd.DataFrame:
    """printCoefmat's cells, with a column of significance stars when there are p-values."""
    cells = pd.DataFrame(coefficient_columns(fixed, DIGITS), index=fixed.index)
    pvalues = fixed.iloc[:, -1]
    if str(fixed.columns[-1]).startswith("Pr(") and (pvalues < 0.1).any():
        cells[""] = significance_stars(pvalues)
    return cells


def _fixed_effects_lines(fixed: pd.DataFrame) -> list[str]:
    cells = _fixed_effects_cells(fixed)
    lines = [_matrix_text(list(cells.index), list(cells.columns), cells.to_numpy(dtype=object).tolist())]
    return lines + (["---", SIGNIF_LEGEND] if "" in cells.columns else [])


def _fixef_correlation(fit) -> pd.DataFrame:
    """The correlations of the fixed-effect estimates, lower triangle, with their full names."""
    vcov = fit.vcov()
    cov = vcov.to_numpy()
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    names = list(vcov.index)
    table = pd.DataFrame(np.where(np.tril(np.ones_like(corr), -1) > 0, corr, np.nan), index=names, columns=names)
    return table.iloc[1:, :-1]


def _correlation_cells(correlation: pd.DataFrame) -> pd.DataFrame:
    """lme4's: rounded to 3 decimals, formatted together, the upper triangle blank."""
    values = correlation.to_numpy(dtype=float)
    shown = ~np.isnan(values)
    text = np.full(values.shape, "", dtype=object)
    if shown.any():
        text[shown] = format_numbers(np.round(values[shown], 3), 7, nsmall=3)
    return pd.DataFrame(text, index=correlation.index, columns=correlation.columns)


def _correlation_text(correlation: pd.DataFrame) -> str:
    cells = _correlation_cells(correlation)
    return _matrix_text(list(cells.index), list(cells.columns), cells.to_numpy(dtype=object).tolist(), right=False)


# --- layout ----------------------------------------------------------------------------------


def _matrix_text(row_names: list[str], columns: list[str], cells: list[list[str]], right: bool = True) -> str:
    """A character matrix as R's ``print(quote = FALSE)`` lays it out: row names flush left,
    each column as wide as its widest cell or header, justified right (or left)."""
    name_width = max((len(r) for r in row_names), default=0)
    widths = [max([len(c)] + [len(row[k]) for row in cells]) for k, c in enumerate(columns)]

    def line(first: str, values: list[str]) -> str:
        fields = [v.rjust(w) if right else v.ljust(w) for v, w in zip(values, widths)]
        return " ".join([first.ljust(name_width), *fields]).rstrip()

    return "\n".join([line("", columns)] + [line(name, row) for name, row in zip(row_names, cells)])


def _notes(fit) -> tuple[str, ...]:
    notes = list(_residual_lines(fit.residual_params()))
    if fit.is_singular:
        notes.append("boundary (singular) fit: a variance is estimated as 0 or a correlation as ±1")
    if not fit.converged:
        notes.append(fit.message)
    return tuple(notes)


def _residual_lines(params: ResidualParameters) -> list[str]:
    """The fitted residual structure's own report lines (nlme's), then a blank line."""
    return list(params.lines) + ([""] if params.lines else [])
