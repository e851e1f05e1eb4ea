"""emmeans' reference grid and the linear functions of β it defines (R's emmeans package).

The grid holds every predictor of the fixed part: each factor at all its levels, each
covariate at its mean over the fitted rows (or at the values ``at=`` gives), in every
combination.  Its rows of X are built by the model's own formula machinery for new data,
so contrasts, transforms (``scale``, ``poly``, ``log``) and interactions are coded exactly as
in fitting; a covariate's mean is that of the data column, not of its transform, as in
emmeans.  A marginal mean is the average of the grid's rows of X that share its values of
the ``specs`` and ``by`` variables, with equal weights over the rest (emmeans' default
``weights = "equal"``): a linear function l'β.  Contrasts are differences of those rows.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayeslmm.errors import LMMError
from bayeslmm.formula.design import new_fixed_matrix
from bayeslmm.formula.frame import Predictor, fixed_predictors, formulae_frame
from bayeslmm.model.spec import ModelSpec

CONTRAST_METHODS = ("pairwise", "trt.vs.ctrl")
_SPEC_SEPARATORS = re.compile(r"[*:+]")
_ARITHMETIC = re.compile(r"[-+/*]")  # a label holding these is parenthesised, as emmeans does


@dataclass(frozen=True)
class MarginalMeans:
    """The marginal means as linear functions of β: row i of ``L`` gives mean i.

    ``labels`` has one column per ``specs`` then ``by`` variable; ``averaged`` names the
    factors the means average over.
    """

    labels: pd.DataFrame
    L: np.ndarray
    specs: tuple[str, ...]
    by: tuple[str, ...]
    averaged: tuple[str, ...]

    def families(self) -> list[np.ndarray]:
        """The row indices of each ``by`` group (one group of all rows without ``by``)."""
        if not self.by:
            return [np.arange(len(self.labels))]
        keys = self.labels[list(self.by)].astype(str).agg("\x1f".join, axis=1)
        return [np.flatnonzero(keys.to_numpy() == key) for key in pd.unique(keys)]


def parse_specs(specs, by=None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The ``specs`` and ``by`` variables from a name, a list of names, or emmeans' text
    ``"~ a * b | c"`` (``*``, ``:`` or ``+`` between names; ``by`` after ``|``)."""
    if isinstance(specs, str):
        text, _, after = specs.strip().lstrip("~").partition("|")
        names = [name.strip() for name in _SPEC_SEPARATORS.split(text)]
        extra_by = [name.strip() for name in _SPEC_SEPARATORS.split(after)] if after else []
    elif isinstance(specs, (list, tuple)) and all(isinstance(name, str) for name in specs):
        names, extra_by = list(specs), []
    else:
        raise LMMError(f"specs must be a variable name, a list of names or a text like '~ treat | time'; got {specs!r}")
    by_names = ([by] if isinstance(by, str) else list(by or ())) + extra_by
    if not all(names) or not all(by_names):
        raise LMMError(f"specs {specs!r} (by {by!r}) has an empty name; write e.g. 'treat', ['treat', 'time'] "
                       "or '~ treat | time'")
    overlap = set(names) & set(by_names)
    if overlap or len(set(names)) < len(names) or len(set(by_names)) < len(by_names):
        raise LMMError(f"each variable may appear once in specs and by; {sorted(overlap) or names + by_names} repeat")
    return tuple(names), tuple(by_names)


def predictors(spec: ModelSpec) -> tuple[Predictor, ...]:
    """The fixed part's predictors (factors with their levels, covariates), in formula order."""
    design = spec.design
    if design.fixed.common is None:
        raise LMMError("the model has no fixed effects, so it has no marginal means")
    if design.offsets:
        raise LMMError("marginal means of a model with an offset() are not built; fit the model without the "
                       "offset (e.g. with the offset subtracted from the response)")
    if len(design.kept_columns) < np.asarray(design.fixed.common.design_matrix).shape[1]:
        raise LMMError("the model dropped aliased fixed-effect columns, so some marginal means are not estimable; "
                       "refit without the aliased terms (see the warning at fitting)")
    return fixed_predictors(design.fixed.common, design.level_columns, design.data)


def grid_values(spec: ModelSpec, found: tuple[Predictor, ...], at: dict | None) -> dict[str, list]:
    """Each predictor's values in the grid: a factor's levels, a covariate's mean, or ``at``'s."""
    at = dict(at or {})
    names = [p.name for p in found]
    unknown = [name for name in at if name not in names]
    if unknown:
        raise LMMError(f"at= names {', '.join(map(repr, unknown))}, not a predictor of the fixed part; "
                       f"its predictors are {', '.join(map(repr, names))}")
    values = {}
    for predictor in found:
        chosen = at.get(predictor.name)
        if predictor.levels is not None:
            values[predictor.name] = list(predictor.levels) if chosen is None else _chosen_levels(predictor, chosen)
        elif chosen is None:
            values[predictor.name] = [float(np.mean(spec.design.data[predictor.name].to_numpy(dtype=float)))]
        else:
            values[predictor.name] = _chosen_numbers(predictor.name, chosen)
    return values


def _chosen_levels(predictor: Predictor, chosen) -> list:
    wanted = [str(value) for value in np.atleast_1d(np.asarray(chosen, dtype=object))]
    texts = [str(level) for level in predictor.levels]
    missing = [value for value in wanted if value not in texts]
    if missing:
        raise LMMError(f"at= gives {predictor.name!r} the value(s) {', '.join(missing)}, which are not among its "
                       f"levels {', '.join(texts)}")
    return [level for level, text in zip(predictor.levels, texts) if text in wanted]


def _chosen_numbers(name: str, chosen) -> list[float]:
    try:
        numbers = np.atleast_1d(np.asarray(chosen, dtype=float))
    except (TypeError, ValueError):
        raise LMMError(f"at= must give the covariate {name!r} numbers; got {chosen!r}") from None
    if numbers.ndim != 1 or not numbers.size or not np.all(np.isfinite(numbers)):
        raise LMMError(f"at= must give the covariate {name!r} one or more finite numbers; got {chosen!r}")
    return list(dict.fromkeys(numbers.tolist()))


def grid_codes(values: dict[str, list], names=None) -> pd.DataFrame:
    """Every combination of the values' positions, the first name varying fastest (emmeans' order)."""
    names = list(values) if names is None else list(names)
    combos = [row[::-1] for row in itertools.product(*(range(len(values[name])) for name in reversed(names)))]
    return pd.DataFrame(combos, columns=names, dtype=int)


def grid_frame(spec: ModelSpec, found: tuple[Predictor, ...], values: dict[str, list], codes: pd.DataFrame
               ) -> pd.DataFrame:
    """The grid as new data: covariates as floats, factors with their training type (a
    categorical keeps its categories, a number read through ``C()`` stays a number)."""
    frame = pd.DataFrame(index=codes.index)
    for predictor in found:
        name = predictor.name
        column = np.empty(len(values[name]), dtype=object)
        column[:] = values[name]
        frame[name] = column[codes[name].to_numpy()]
        training = spec.design.data[name].dtype
        if predictor.levels is None:
            frame[name] = frame[name].astype(float)
        elif isinstance(training, pd.CategoricalDtype):
            frame[name] = pd.Categorical(frame[name], categories=training.categories)
        elif pd.api.types.is_numeric_dtype(training):
            frame[name] = frame[name].astype(training)
    return frame


def grid_matrix(spec: ModelSpec, grid: pd.DataFrame) -> np.ndarray:
    """The grid's rows of X, coded by the model's formula exactly as in fitting."""
    level_columns = tuple(c for c in spec.design.level_columns if c.source in grid.columns)
    return new_fixed_matrix(spec.design, formulae_frame(grid, level_columns, fitting=False))


def marginal_means(spec: ModelSpec, specs, by=None, at=None) -> MarginalMeans:
    """The marginal means of ``specs`` (within each level of ``by``) as rows of L.

    Examples
    --------
    >>> import bayeslmm as blm
    >>> fit = blm.LMM("size ~ time * treat + (1 | tree)", blm.datasets.load("Sitka")).fit()
    >>> list(fit.fixef().index)
    ['(Intercept)', 'time', 'treat[ozone]', 'time:treat[ozone]']
    >>> means = marginal_means(fit.spec, "treat", by="time", at={"time": [152, 258]})
    >>> means.labels.values.tolist()
    [['control', 152.0], ['ozone', 152.0], ['control', 258.0], ['ozone', 258.0]]
    >>> means.L.tolist()
    [[1.0, 152.0, 0.0, 0.0], [1.0, 152.0, 1.0, 152.0], [1.0, 258.0, 0.0, 0.0], [1.0, 258.0, 1.0, 258.0]]
    """
    spec_names, by_names = parse_specs(specs, by)
    found = predictors(spec)
    known = [p.name for p in found]
    unknown = [name for name in spec_names + by_names if name not in known]
    if unknown:
        raise LMMError(f"{', '.join(map(repr, unknown))} is not a predictor of the fixed part; "
                       f"its predictors are {', '.join(map(repr, known))}")
    values = grid_values(spec, found, at)
    codes = grid_codes(values)
    X = grid_matrix(spec, grid_frame(spec, found, values, codes))
    kept = list(spec_names + by_names)
    wanted = grid_codes(values, kept)  # the means' order: the first spec fastest, by slowest
    L = group_means(X, codes[kept], [len(values[name]) for name in kept])
    labels = pd.DataFrame({name: [values[name][code] for code in wanted[name]] for name in kept})
    averaged = tuple(p.name for p in found if p.levels is not None and p.name not in kept and len(values[p.name]) > 1)
    return MarginalMeans(labels, L, spec_names, by_names, averaged)


def group_means(X: np.ndarray, codes: pd.DataFrame, sizes: list[int]) -> np.ndarray:
    """The mean row of X over each combination of ``codes`` (equal weights), combinations
    ordered as :func:`grid_codes` orders them (the first column fastest)."""
    group = np.ravel_multi_index(tuple(codes.to_numpy().T), sizes, order="F")
    sums = np.zeros((int(np.prod(sizes)), X.shape[1]))
    np.add.at(sums, group, X)
    return sums / np.bincount(group, minlength=len(sums))[:, None]


# --- contrasts ---------------------------------------------------------------------------------


def contrast_pairs(n: int, method: str) -> list[tuple[int, int]]:
    """(first, second) of each contrast first − second among n means, in emmeans' order:
    pairwise 1−2, 1−3, …, 2−3, …; trt.vs.ctrl 2−1, 3−1, … (the first mean is the control)."""
    if method == "pairwise":
        return [(i, j) for i in range(n) for j in range(i + 1, n)]
    if method == "trt.vs.ctrl":
        return [(j, 0) for j in range(1, n)]
    raise LMMError(f"method must be one of {', '.join(map(repr, CONTRAST_METHODS))}; got {method!r}")


def mean_labels(means: MarginalMeans, rows: np.ndarray) -> list[str]:
    """emmeans' labels of the means in ``rows``: the specs' values joined by spaces, a
    variable's name before values that are all numbers (``time152``), parenthesised when a
    label holds an operator (``(a-b)``)."""
    parts = []
    for name in means.specs:
        texts = [_text(value) for value in means.labels[name].iloc[rows]]
        numeric = all(_is_number(text) for text in texts)
        parts.append([name + text if numeric else text for text in texts])
    labels = [" ".join(words) for words in zip(*parts)]
    return [f"({label})" if _ARITHMETIC.search(label) else label for label in labels]


def _text(value) -> str:
    """A value as R's as.character writes it: 152, 201.5 (15 significant digits)."""
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.15g}"
    return str(value)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Contrasts:
    """Contrasts of marginal means as linear functions of β (rows of ``L``), with their labels
    (``contrast`` and the ``by`` variables), family (``by`` group) and family size in means."""

    labels: pd.DataFrame
    L: np.ndarray
    family: np.ndarray  # the by group of each contrast
    n_means: np.ndarray  # the number of means in each contrast's family


def contrasts(means: MarginalMeans, method: str) -> Contrasts:
    """The ``method`` contrasts among the means of each ``by`` group."""
    names, rows, family, n_means = [], [], [], []
    by_rows = []
    for index, members in enumerate(means.families()):
        labels = mean_labels(means, members)
        for first, second in contrast_pairs(len(members), method):
            names.append(f"{labels[first]} - {labels[second]}")
            rows.append(means.L[members[first]] - means.L[members[second]])
            family.append(index)
            n_means.append(len(members))
            by_rows.append(members[0])
    table = pd.DataFrame({"contrast": names})
    for name in means.by:
        table[name] = means.labels[name].to_numpy()[by_rows] if by_rows else []
    L = np.array(rows).reshape(len(rows), means.L.shape[1])
    return Contrasts(table, L, np.array(family, dtype=int), np.array(n_means, dtype=int))
