"""Checks of the caller's data, of a built spec and of counts and levels passed as arguments;
each raises LMMError or warns with a count."""
from __future__ import annotations

import difflib
import numbers
import warnings

import numpy as np
import pandas as pd

from bayeslmm.errors import LMMError

ALIAS_TOLERANCE = 1e-7  # lme4's chkRank.drop.cols: qr(X, tol = 1e-7)


def check_count(value, name: str = "n", minimum: int = 1) -> int:
    """An integer ≥ ``minimum`` (1: draws, refits, simulations; 0: tuning steps), as an int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        need = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer ≥ {minimum}")
        raise LMMError(f"{name} must be {need} (e.g. 1000); got {value!r}")
    return int(value)


def check_level(level) -> float:
    """A confidence level strictly between 0 and 1, as a float."""
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0 < level < 1:
        raise LMMError(f"level must be between 0 and 1 (e.g. 0.95); got {level!r}")
    return float(level)


# arguments users bring from R (lme4, brms, rstanarm) and PyMC, with what to write instead
_FOREIGN_ARGUMENTS = {
    "REML": lambda v: f"use fit(method={'REML' if v else 'ML'!r})",
    "control": lambda v: "optimizer settings are not exposed; REML/ML use lme4's optimisers and "
                         "convergence checks (pass start=θ to start elsewhere)",
    "family": lambda v: "bayeslmm fits Gaussian linear mixed models only (no GLMMs); "
                        "transform the response in the formula, e.g. 'np.log(y) ~ …'",
    "subset": lambda v: "select the rows before, e.g. LMM(formula, data[data.x > 0])",
    "na_action": lambda v: "rows missing a used value are always dropped, with a warning that counts them",
    "iter": lambda v: "use draws= (draws after tuning, per chain) and tune=",
    "warmup": lambda v: "use tune=",
    "seed": lambda v: "use random_seed=",
    "verbose": lambda v: "use progressbar=",
}


def check_arguments(extra: dict, function) -> None:
    """LMMError for the first argument in ``extra`` that ``function`` does not take, with
    the right spelling: advice for names from R and PyMC, else the closest valid name."""
    if not extra:
        return
    import inspect

    name, value = next(iter(extra.items()))
    valid = [p.name for p in inspect.signature(function).parameters.values()
             if p.name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD]
    if name in _FOREIGN_ARGUMENTS:
        advice = _FOREIGN_ARGUMENTS[name](value)
    else:
        near = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
        advice = (f"did you mean {near[0]!r}? " if near else "") + f"valid arguments: {', '.join(valid)}"
    raise LMMError(f"{function.__qualname__.removesuffix('.__init__')}() got an unknown argument {name}={value!r}: {advice}")


def check_columns_exist(names: list[str], data: pd.DataFrame, role: str = "named in the formula") -> None:
    columns = [str(c) for c in data.columns]
    for name in names:
        if name not in data.columns:
            near = difflib.get_close_matches(name, columns, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in near)}?" if near else ""
            raise LMMError(
                f"column {name!r} {role} is not in the data{hint} "
                f"(columns: {', '.join(columns[:20])}{' …' if len(columns) > 20 else ''})"
            )


def drop_missing_rows(data: pd.DataFrame, used: list[str]) -> pd.DataFrame:
    """A copy of ``data[used]`` without rows that miss a value; warns with the count."""
    subset = data.loc[:, used].copy()
    for name in used:
        column = subset[name]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            values = column.to_numpy(dtype=float, na_value=np.nan)
            if np.isinf(values).any():
                count = int(np.isinf(values).sum())
                raise LMMError(
                    f"column {name!r} has {count} infinite value{'s' if count > 1 else ''}; "
                    "replace them with finite numbers or NaN (NaN rows are dropped)"
                )
    missing = subset.isna().any(axis=1).to_numpy()
    if missing.any():
        count = int(missing.sum())
        warnings.warn(
            f"dropped {count} of {len(subset)} rows with missing values in the columns "
            f"the model uses ({', '.join(used)})",
            stacklevel=4,
        )
        subset = subset.loc[~missing]
    if subset.shape[0] == 0:
        raise LMMError("no rows are left after dropping rows with missing values")
    if subset.shape[0] == 1:
        raise LMMError(f"the model has 1 observation{' left after dropping missing values' if missing.any() else ''}; "
                       "a linear mixed model needs several observations per group")
    return subset


def check_finite(values: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(values)):
        count = int((~np.isfinite(values)).sum())
        raise LMMError(f"{name!r} evaluates to {count} non-finite value(s) (e.g. log of 0 or of a negative number)")


def non_aliased_columns(X: np.ndarray) -> np.ndarray:
    """Indices of columns kept, in order: a column in the span of earlier kept ones is dropped.

    Gram–Schmidt against the kept columns (twice, for stability) mirrors R's
    limited-pivoting QR (dqrdc2) that lme4 uses: earlier columns win.
    """
    kept, basis = [], np.empty((X.shape[0], 0))
    for j in range(X.shape[1]):
        column = X[:, j]
        norm = np.linalg.norm(column)
        residual = column - basis @ (basis.T @ column)
        residual = residual - basis @ (basis.T @ residual)
        size = np.linalg.norm(residual)
        if norm > 0 and size > ALIAS_TOLERANCE * norm:
            kept.append(j)
            basis = np.column_stack([basis, residual / size])
    return np.asarray(kept, dtype=int)


def check_response_varies(spec) -> None:
    """A constant response leaves nothing to model: σ would be 0 and the REML criterion infinite."""
    if np.ptp(spec.y) == 0:
        what = (f"constant ({spec.observed[0]:g} in every row)" if spec.offset is None
                else f"the offset plus a constant ({spec.y[0]:g})")
        raise LMMError(f"the response {spec.response_name!r} is {what}, so there is no variation to model; "
                       "check the response column")


PRECISION_LOST = 1e-9  # the sufficient statistics keep ~16 digits of y'y; below this ratio < 7 remain


def check_response_precision(spec) -> None:
    """Before fitting: the residual sum of squares of least squares on X against y'y."""
    fitted = spec.X @ np.linalg.lstsq(spec.X, spec.y, rcond=None)[0] if spec.p else 0.0
    check_residual_precision(float(np.sum((spec.y - fitted) ** 2)), float(spec.y @ spec.y), spec)


def check_residual_precision(r2: float, yty: float, spec) -> None:
    """The log-density works from cross-products such as y'y; the residual sum of squares r² is
    their difference, and loses its digits when the response's variation is tiny against its
    size (e.g. 20000 ± 1e-4).  Refuse rather than report a likelihood with no correct digits."""
    if yty > 0 and r2 < PRECISION_LOST * yty:
        raise LMMError(
            f"the response {spec.response_name!r} varies by about {np.sqrt(r2 / spec.n):.3g} (residual sd) around "
            f"values of size {np.sqrt(yty / spec.n):.3g}: too little for double precision to fit it reliably; "
            "subtract a constant near its mean (and rescale) before fitting, e.g. I(y - 20000)"
        )


def check_levels(spec) -> None:
    for factor in spec.factors:
        if factor.n_levels < 2:
            raise LMMError(
                f"grouping factor {factor.name!r} has only {factor.n_levels} level; a random effect "
                "needs at least 2 groups (drop the term, or fit the factor as a fixed effect)"
            )
        if factor.n_levels >= spec.n:
            raise LMMError(
                f"grouping factor {factor.name!r} has {factor.n_levels} levels for {spec.n} observations; "
                "the number of levels of each grouping factor must be < the number of observations "
                "(its variance cannot be told apart from the residual variance)"
            )
    for term in spec.terms:
        _check_random_effect_count(spec, term)


def _check_random_effect_count(spec, term) -> None:
    """lme4's check.nobs.vs.nRE: stop when n ≤ q, the term's levels × columns."""
    q = spec.factors[term.factor].n_levels * term.size
    if spec.n <= q:
        raise LMMError(
            f"number of observations (={spec.n}) <= number of random effects (={q}) for term "
            f"({' + '.join(term.column_names)} | {term.group_name}); the random-effects parameters and the "
            "residual variance are probably unidentifiable: use fewer random-effect columns "
            f"(e.g. (1 | {term.group_name})) or more observations per group"
        )


def weight_values(weights, data: pd.DataFrame) -> np.ndarray:
    """The prior weights as floats aligned to ``data``'s rows: a column name or an array-like
    of length len(data); their positivity is checked on the rows the model keeps
    (:func:`check_weights`), after rows missing a value in the weight column are dropped."""
    if isinstance(weights, str):
        check_columns_exist([weights], data, role="given as weights")
        values = data[weights]
        what = f"weight column {weights!r}"
    else:
        values = np.asarray(weights) if not isinstance(weights, pd.Series) else weights.to_numpy()
        what = "weights"
        if values.ndim != 1 or values.shape[0] != len(data):
            raise LMMError(f"weights must be a column name or one number per row of data ({len(data)}); "
                           f"got an array of shape {values.shape}")
    try:
        return pd.to_numeric(pd.Series(values), errors="raise").to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError):
        raise LMMError(f"{what} must be numeric (positive numbers, one per row); "
                       f"got values of type {pd.Series(values).dtype}") from None


def check_weights(values: np.ndarray) -> None:
    """Prior weights must be positive and finite: Var(ε_i) = σ²/w_i."""
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        kinds = {"missing (NaN)": np.isnan(values), "infinite": np.isinf(values),
                 "zero": values == 0, "negative": values < 0}
        found = ", ".join(f"{int(mask.sum())} {kind}" for kind, mask in kinds.items() if mask.any())
        raise LMMError(f"weights must be positive and finite numbers (Var(ε_i) = σ²/w_i); "
                       f"{int(bad.sum())} of {values.size} are not ({found}); drop those rows or fix their weights")


def same_response(spec, other) -> bool:
    """The same y: row by row, or, where either is summarised data (bayeslmm.scaleout, whose moment
    rows keep the data's mean and sd), the same mean and sd; so a Dask fit compares with the
    in-memory fit of the same rows."""
    if spec.rows_in_memory and other.rows_in_memory:
        return np.array_equal(spec.y, other.y)
    moments = [(np.mean(s.y), np.std(s.y)) for s in (spec, other)]
    return np.allclose(*moments, rtol=1e-12, atol=0)


def check_same_weights(first, other, models: str = "models") -> None:
    """Likelihoods are comparable only under the same prior weights (or none): ``first`` and
    ``other`` are ModelSpecs, ``models`` names them in the message."""
    a, b = first.weights, other.weights
    if (a is None) != (b is None) or (a is not None and not np.array_equal(a, b)):
        describe = lambda w: "no weights" if w is None else "weights"  # noqa: E731
        raise LMMError(f"{models} were fitted with different prior weights ({describe(a)} and {describe(b)}"
                       f"{', unequal values' if a is not None and b is not None else ''}); compare models "
                       "fitted with the same weights=")
