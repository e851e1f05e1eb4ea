"""Text and HTML reports of a fit, laid out as lme4's ``summary(lmer)`` prints."""
from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayeslmm.model.covariance import sd_cor, term_labels
from bayeslmm.model.residual import ResidualParameters


@dataclass(frozen=True)
class Summary:
    """The pieces of a summary; ``str()`` gives lme4-style text, Jupyter renders HTML."""

    title: str
    formula: str
    criteria: pd.DataFrame  # one row: REML criterion, or AIC/BIC/logLik/deviance/df.resid
    scaled_residuals: pd.Series
    random_effects: pd.DataFrame  # Groups, Name, Variance, Std.Dev., Corr…
    counts: str
    fixed_effects: pd.DataFrame  # Estimate, Std. Error, t value
    correlation: pd.DataFrame
    notes: tuple[str, ...]

    def __str__(self) -> str:
        parts = [self.title, f"Formula: {self.formula}", "", _criteria_text(self.criteria), "",
                 "Scaled residuals:", _indent(self.scaled_residuals.to_frame().T.to_string(
                     index=False, float_format=lambda v: f"{v:.4f}")), "",
                 "Random effects:", _indent(_left_justified(self.random_effects, ["Groups", "Name"])),
                 self.counts, ""]
        if len(self.fixed_effects):
            parts += ["Fixed effects:", self.fixed_effects.to_string(float_format=_format_number), ""]
        if len(self.correlation):
            parts += ["Correlation of Fixed Effects:",
                      self.correlation.to_string(na_rep="", float_format=lambda v: f"{v:.3f}"), ""]
        parts += list(self.notes)
        return "\n".join(parts).rstrip() + "\n"

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        blocks = [f"<h4>{html.escape(self.title)}</h4>",
                  f"<p><b>Formula:</b> <code>{html.escape(self.formula)}</code></p>",
                  self.criteria.to_html(index=False, float_format=_format_number),
                  "<p><b>Scaled residuals</b></p>",
                  self.scaled_residuals.to_frame().T.to_html(index=False, float_format=lambda v: f"{v:.4f}"),
                  "<p><b>Random effects</b></p>",
                  self.random_effects.to_html(index=False, na_rep="", float_format=_format_number),
                  f"<p>{html.escape(self.counts)}</p>"]
        if len(self.fixed_effects):
            blocks += ["<p><b>Fixed effects</b></p>", self.fixed_effects.to_html(float_format=_format_number)]
        blocks += [f"<p><i>{html.escape(note)}</i></p>" for note in self.notes]
        return "\n".join(blocks)


def summarize(fit) -> Summary:
    return Summary(
        title=("Linear mixed model fit by REML" if fit.reml else "Linear mixed model fit by maximum likelihood")
        if fit.spec.factors else f"Linear model fit by {'REML' if fit.reml else 'maximum likelihood'}",
        formula=fit.spec.formula,
        criteria=_criteria(fit),
        scaled_residuals=fit.scaled_residual_quantiles(),
        random_effects=random_effects_table(fit),
        counts=_counts(fit),
        fixed_effects=_fixed_effects(fit.fixef(), fit.se()),
        correlation=_fixef_correlation(fit),
        notes=_notes(fit),
    )


def _criteria(fit) -> pd.DataFrame:
    if fit.reml:
        return pd.DataFrame({"REML criterion at convergence": [fit.deviance]})
    return pd.DataFrame({"AIC": [fit.aic], "BIC": [fit.bic], "logLik": [fit.loglik],
                         "deviance": [fit.deviance], "df.resid": [fit.nobs - fit.npar]})


def _criteria_text(criteria: pd.DataFrame) -> str:
    if list(criteria.columns) == ["REML criterion at convergence"]:
        return f"REML criterion at convergence: {criteria.iloc[0, 0]:.1f}"
    return criteria.to_string(index=False, float_format=lambda v: f"{v:.1f}")


def random_effects_table(fit) -> pd.DataFrame:
    """lme4's printed VarCorr: Groups, Name, Variance, Std.Dev., Corr (lower triangle)."""
    rows, width = [], max([t.size for t in fit.spec.terms], default=1)
    for label, term, cov in zip(term_labels(fit.spec.terms), fit.spec.terms, fit.term_covariances()):
        sd, corr = sd_cor(cov)
        for i, name in enumerate(term.column_names):
            cells = [f"{corr[i, j]:.2f}" for j in range(i)] + [""] * (width - 1 - i)
            rows.append([label if i == 0 else "", name, cov[i, i], sd[i], *cells])
    rows.append(["Residual", "", fit.sigma**2, fit.sigma, *[""] * (width - 1)])
    corr_columns = ["Corr"] + [""] * (width - 2) if width > 1 else []
    columns = ["Groups", "Name", "Variance", "Std.Dev."] + [c + " " * k for k, c in enumerate(corr_columns)]
    return pd.DataFrame(rows, columns=columns)


def _counts(fit) -> str:
    groups = "; ".join(f"{name}, {count}" for name, count in fit.ngrps.items())
    return f"Number of obs: {fit.nobs}" + (f", groups:  {groups}" if groups else "")


def _fixed_effects(estimate: pd.Series, se: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"Estimate": estimate, "Std. Error": se, "t value": estimate / se})


def _fixef_correlation(fit) -> pd.DataFrame:
    vcov = fit.vcov()
    cov = vcov.to_numpy()
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    names = list(vcov.index)
    short = [_abbreviate(n) for n in names]
    table = pd.DataFrame(np.where(np.tril(np.ones_like(corr), -1) > 0, corr, np.nan), index=names, columns=short)
    return table.iloc[1:, :-1]


def _abbreviate(name: str) -> str:
    return "(Intr)" if name == "(Intercept)" else name[:6]


def _notes(fit) -> tuple[str, ...]:
    notes = list(_residual_lines(fit.residual_params()))
    if fit.is_singular:
        notes.append("boundary (singular) fit: a variance is estimated as 0 or a correlation as ±1")
    if not fit.converged:
        notes.append(fit.message)
    return tuple(notes)


def _left_justified(table: pd.DataFrame, columns: list[str]) -> str:
    """Text table with the label columns flush left, as R prints them."""
    widths = {c: max([len(str(c))] + [len(str(v)) for v in table[c]]) for c in columns}
    formatters = {c: (lambda w: lambda v: f"{v:<{w}}")(widths[c]) for c in columns}
    header = [f"{c:<{widths[c]}}" if c in widths else c for c in table.columns]
    return table.to_string(index=False, na_rep="", float_format=_format_number, formatters=formatters,
                           header=header)


def _residual_lines(params: ResidualParameters) -> list[str]:
    """The fitted residual structure's own report lines (nlme's), then a blank line."""
    return list(params.lines) + ([""] if params.lines else [])


def _format_number(value: float) -> str:
    return f"{value:.4g}" if abs(value) >= 1e5 or (0 < abs(value) < 1e-3) else f"{value:.4f}"


def _indent(text: str) -> str:
    return "\n".join(" " + line for line in text.splitlines())
