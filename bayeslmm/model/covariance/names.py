"""Every name of a covariance parameter: θ's (lme4's ``getME(, "theta")``), confint's and
bootMer's (``sd_(Intercept)|Subject``, ``cor_Days.(Intercept)|Subject``, ``sigma``), the rows
of ``as.data.frame(VarCorr)`` (grp, var1, var2), the term labels, and the posterior's
variables, dims and coords.
"""
from __future__ import annotations

from bayeslmm.model.covariance.triangle import correlation_pairs, lower_triangle, varcorr_entries

SIGMA = "sigma"  # σ's name in confint and the bootstrap


def term_labels(terms) -> list[str]:
    """R's make.unique on group names: 'Subject', 'Subject.1', … (VarCorr's ``grp``)."""
    seen: dict[str, int] = {}
    labels = []
    for term in terms:
        count = seen.get(term.group_name, 0)
        labels.append(term.group_name if count == 0 else f"{term.group_name}.{count}")
        seen[term.group_name] = count + 1
    return labels


def theta_names(term) -> list[str]:
    """lme4's names of a term's θ entries: 'Subject.(Intercept)', 'Subject.Days.(Intercept)', …"""
    cols = term.column_names
    return [f"{term.group_name}.{cols[r]}" if r == c else f"{term.group_name}.{cols[r]}.{cols[c]}"
            for r, c in lower_triangle(term.size)]


def sd_name(column: str, factor: str) -> str:
    """confint's name of an sd: 'sd_(Intercept)|Subject'."""
    return f"sd_{column}|{factor}"


def cor_name(row: str, column: str, factor: str) -> str:
    """confint's name of a correlation: 'cor_Days.(Intercept)|Subject'."""
    return f"cor_{row}.{column}|{factor}"


def sdcor_names(spec) -> list[str]:
    """confint's (``oldNames = FALSE``) names of every term's sds and correlations, θ's order."""
    names = []
    for term in spec.terms:
        factor, cols = spec.factors[term.factor].name, term.column_names
        names += [sd_name(cols[r], factor) if r == c else cor_name(cols[r], cols[c], factor)
                  for r, c in lower_triangle(term.size)]
    return names


def varcorr_rows(term, label: str) -> list[tuple[tuple[str, str, str | None], tuple[int, int]]]:
    """``((grp, var1, var2), (row, column))`` of each of the term's rows of lme4's
    ``as.data.frame(VarCorr)``: the sds, then the correlations."""
    cols = term.column_names
    return [((label, cols[r], None) if r == c else (label, cols[c], cols[r]), (r, c))
            for r, c in varcorr_entries(term.size)]


# --- the posterior's names ---------------------------------------------------------------------


def sd_variable(label: str) -> str:
    return f"sd_{label}"


def corr_variable(label: str) -> str:
    return f"corr_{label}"


def corr_chol_variable(label: str) -> str:
    """The Cholesky factor of a correlated term's correlation matrix (PyMC's LKJCorr variable)."""
    return f"corr_chol_{label}"


def effect_dim(label: str) -> str:
    """The dim of a term's (or factor's) columns."""
    return f"{label}_effect"


def pair_dim(label: str) -> str:
    """The dim of a term's correlations."""
    return f"{label}_pair"


def term_pairs(term) -> list[tuple[int, int]]:
    """(row, column) of each of the term's correlations, lme4's order (the pair dim's order)."""
    return correlation_pairs(term.size)


def pair_coords(term) -> list[str]:
    """The pair dim's labels: 'column,row' ('(Intercept),Days')."""
    return [f"{term.column_names[c]},{term.column_names[r]}" for r, c in term_pairs(term)]


def random_effect_coords(spec, labels) -> dict[str, list]:
    """Coords of the random effects: each factor's levels and columns, each term's columns and
    correlation pairs."""
    out: dict[str, list] = {}
    for factor in spec.factors:
        out[factor.name] = list(factor.levels)
        out[effect_dim(factor.name)] = list(factor.column_names)
    for term, label in zip(spec.terms, labels):
        out[effect_dim(label)] = list(term.column_names)
        if term.size > 1:
            out[pair_dim(label)] = pair_coords(term)
    return out
