"""Turn a parsed formula and a DataFrame into a ModelSpec, checking the data on the way.

formulae evaluates the fixed part and each bar's left-hand side as ordinary
(common) designs; grouping factors are coded here, so no dense n × levels
matrix is ever built.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import formulae as fm
import numpy as np
import pandas as pd

from bayeslmm import checks, frames
from bayeslmm.errors import LMMError
from bayeslmm.formula.bars import ParsedFormula, RandomBar, parse_formula
from bayeslmm.formula.frame import FormulaeTexts, LevelColumn, formulae_frame, formulae_texts, used_columns
from bayeslmm.formula.transforms import R_FUNCTIONS, from_formulae_names
from bayeslmm.model.spec import GroupingFactor, ModelSpec, RandomTerm


@dataclass(frozen=True)
class Design:
    """What is needed to evaluate the same model on new data."""

    fixed: object  # formulae DesignMatrices of the fixed part
    bars: tuple[object, ...]  # formulae DesignMatrices of each bar's left-hand side
    bar_factor: tuple[int, ...]  # factor index of each bar
    factor_groups: tuple[tuple[str, ...], ...]  # grouping variables of each factor
    kept_columns: np.ndarray  # fixed columns kept after dropping aliased ones
    offsets: tuple[object, ...] = ()  # formulae DesignMatrices of each offset's expression
    parsed: ParsedFormula | None = None
    texts: FormulaeTexts | None = None  # the formula as formulae evaluates it, rewritten once
    # what the formulae designs are rebuilt from after unpickling: they hold the module
    # namespace formulae evaluates in, which cannot be pickled
    data: pd.DataFrame | None = None  # the cleaned training rows of the used columns

    @property
    def level_columns(self) -> tuple[LevelColumn, ...]:
        """The ``C(x, levels=[...])`` columns to derive, in training and new data alike."""
        return self.texts.level_columns

    def __getstate__(self) -> dict:
        return {**self.__dict__, "fixed": None, "bars": None, "offsets": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        # same formula, same rows: stateful transforms (scale, poly, …) learn the same parameters
        frame = formulae_frame(self.data, self.level_columns)
        fixed, bars, offsets = formulae_designs(self.texts, frame, self.parsed.text)
        self.__dict__.update(fixed=fixed, bars=bars, offsets=offsets)


def build_spec(formula: str, data: pd.DataFrame, extra_columns: tuple = ()) -> ModelSpec:
    """Parse ``formula``, check and clean ``data`` (never modified) and build the spec.

    ``extra_columns`` (e.g. a residual structure's time and group) take part in dropping
    rows with missing values, so that every part of the model sees the same rows.
    """
    parsed = parse_formula(formula)
    data = frames.to_pandas(data)
    texts = formulae_texts(parsed)
    covariates = covariate_columns(parsed, texts, data)
    grouping = {name for bar in parsed.bars for name in bar.group}
    used = sorted(set(covariates) | grouping | set(extra_columns))
    checks.check_columns_exist(used, data)
    clean = frames.read_numeric_strings(checks.drop_missing_rows(data, used), covariates)
    frame = formulae_frame(clean, texts.level_columns)
    fixed, bar_designs, offset_designs = formulae_designs(texts, frame, parsed.text)
    offset = offset_values(offset_designs, parsed.offsets)
    y = _response(fixed, parsed)
    X, names, kept = _fixed_matrix(fixed)
    factors, terms, bar_factor, groups = random_part(parsed, clean, bar_designs)
    design = Design(fixed, bar_designs, bar_factor, groups, kept, offset_designs, parsed, texts, clean)
    working = y if offset is None else y - offset
    spec = ModelSpec(parsed.text, parsed.response, working, X, names, factors, terms, clean.index, design,
                     offset=offset)
    checks.check_response_varies(spec)
    checks.check_response_precision(spec)
    checks.check_levels(spec)
    return spec


# --- variables -----------------------------------------------------------------


def covariate_columns(parsed: ParsedFormula, texts: FormulaeTexts, data: pd.DataFrame) -> list[str]:
    """The columns of the response, the fixed part, the offsets and the random terms'
    left-hand sides, less the grouping factors': a column that groups is a factor throughout."""
    names = used_columns(texts, data, parsed.text)
    return sorted(names.difference(*(bar.group for bar in parsed.bars)))


def formulae_designs(texts: FormulaeTexts, frame: pd.DataFrame, formula: str) -> tuple:
    """formulae's designs of the fixed part, of each bar's left-hand side and of each offset."""
    fixed = _design(f"{texts.response} ~ {texts.fixed}", frame, formula)
    distinct = {lhs: _design(lhs, frame, formula) for lhs in dict.fromkeys(texts.bars)}  # e.g. "1" once
    bars = tuple(distinct[lhs] for lhs in texts.bars)
    offsets = tuple(_design(f"0 + {text}", frame, formula) for text in texts.offsets)
    return fixed, bars, offsets


def _design(text: str, frame: pd.DataFrame, formula: str):
    try:
        return fm.design_matrices(text, frame, na_action="error", extra_namespace=R_FUNCTIONS)
    except LMMError:
        raise
    except KeyError as err:  # formulae's lookup of an unknown function or name
        raise LMMError(
            f"{err.args[0]!r} in formula {formula!r} is neither a column of the data nor a known function; "
            f"known functions are {', '.join(sorted(R_FUNCTIONS))}, I, poly, scale, C, offset and np.*"
        ) from None
    except Exception as err:
        raise LMMError(f"could not evaluate {text!r} of formula {formula!r}: {err}") from None


def new_fixed_matrix(design: Design, frame: pd.DataFrame) -> np.ndarray:
    """The fixed-effect rows X of new data (``formulae_frame`` of it): every transform, contrast
    and interaction as learnt in fitting, the aliased columns dropped as in fitting."""
    if design.fixed.common is None:
        return np.zeros((len(frame), 0))
    return evaluate_new_rows(design.fixed.common, frame)[:, design.kept_columns]


def evaluate_new_rows(common, frame: pd.DataFrame) -> np.ndarray:
    """A formulae common design evaluated on new rows, as floats."""
    try:
        return np.asarray(common.evaluate_new_data(frame)).astype(float)
    except Exception as err:  # formulae reports missing columns and unseen categories this way
        raise LMMError(f"could not evaluate the model's predictors on newdata: {err}") from None


# --- offsets ---------------------------------------------------------------------


def offset_values(designs, expressions) -> np.ndarray | None:
    """The sum of the offsets' values (None without offsets); each must be one numeric column."""
    if not designs:
        return None
    total = 0.0
    for design, expression in zip(designs, expressions):
        values = np.asarray(design.common.design_matrix, dtype=float)
        if values.shape[1] != 1 or any(term.kind == "categoric" for term in design.common.terms.values()):
            raise LMMError(f"offset({expression}) must be one numeric column; it gives {values.shape[1]} columns")
        checks.check_finite(values[:, 0], f"offset({expression})")
        total = total + values[:, 0]
    return total


# --- fixed part ----------------------------------------------------------------


def _response(fixed, parsed: ParsedFormula) -> np.ndarray:
    if getattr(fixed.response, "kind", "numeric") != "numeric":
        raise LMMError(
            f"the response {parsed.response!r} must be numeric; it is categorical. "
            "A linear mixed model needs a numeric (continuous) outcome."
        )
    y = np.asarray(fixed.response.design_matrix, dtype=float).reshape(-1)
    checks.check_finite(y, parsed.response)
    return y


def _fixed_matrix(fixed) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
    """X in R's column order, aliased columns dropped; also the formulae columns it keeps."""
    if fixed.common is None:  # y ~ 0 (+ random terms): no fixed effects at all
        n = np.asarray(fixed.response.design_matrix).shape[0]
        return np.zeros((n, 0)), (), np.zeros(0, dtype=int)
    full = np.asarray(fixed.common.design_matrix, dtype=float)
    names = lme4_names(column_names(fixed.common))
    order = r_term_order(fixed.common)
    kept = order[checks.non_aliased_columns(full[:, order])]
    dropped = [names[j] for j in order if j not in set(kept)]
    if dropped:
        plural = "s" if len(dropped) > 1 else ""
        warnings.warn(
            f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} column{plural} / "
            f"coefficient{plural}: {', '.join(dropped)}",
            stacklevel=4,
        )
    return np.ascontiguousarray(full[:, kept]), tuple(names[j] for j in kept), kept


def r_term_order(common) -> np.ndarray:
    """Columns ordered as R's model.matrix orders terms: by interaction order, then as written."""
    slices = list(common.slices.items())
    degree = {name: len(getattr(common.terms[name], "components", [])) for name, _ in slices}
    ordered = sorted(slices, key=lambda item: degree[item[0]])  # stable
    return np.concatenate([np.arange(sl.start, sl.stop) for _, sl in ordered]).astype(int)


def column_names(common) -> list[str]:
    """The column names of a formulae common design, as its ``as_dataframe()`` labels them,
    without building that n-row DataFrame: each term's labels, nested lists flattened."""
    names, pending = [], [term.labels for term in common.terms.values()]
    while pending:
        item = pending.pop(0)
        if isinstance(item, list):
            pending = item + pending
        else:
            names.append(item)
    return names


def lme4_names(columns) -> list[str]:
    return ["(Intercept)" if c == "Intercept" else c for c in from_formulae_names(list(columns))]


# --- random part ---------------------------------------------------------------


def random_part(parsed: ParsedFormula, data: pd.DataFrame, bar_designs, levels: dict | None = None):
    """Code each grouping factor once and stack the columns of all its bars.

    ``levels`` (grouping columns → level labels) gives factors levels known beforehand, e.g. a
    data set's that ``data`` is a part of (:mod:`bayeslmm.scaleout`); by default ``data``'s own."""
    groups = bar_groups(parsed)
    coded = [group_codes(data, g) if levels is None else (pd.Index(levels[g]).get_indexer(level_labels(data, g)),
                                                           tuple(levels[g])) for g in groups]
    order = sorted(range(len(groups)), key=lambda f: -len(coded[f][1]))  # stable
    rank = {f: i for i, f in enumerate(order)}
    bar_factor = tuple(rank[groups.index(bar.group)] for bar in parsed.bars)
    factors = [_factor(parsed, groups[f], coded[f], bar_designs, bar_factor, rank[f]) for f in order]
    terms = _terms(parsed.bars, bar_designs, bar_factor, factors)
    _check_repeated_columns(parsed, factors)
    return tuple(factors), terms, bar_factor, tuple(groups[f] for f in order)


def bar_groups(parsed: ParsedFormula) -> list[tuple[str, ...]]:
    """The grouping variables of every grouping factor, in the order the bars name them."""
    groups: list[tuple[str, ...]] = []
    for bar in parsed.bars:
        if bar.group not in groups:
            groups.append(bar.group)
    return groups


def _factor(parsed, group, coded, bar_designs, bar_factor, index) -> GroupingFactor:
    codes, levels = coded
    mine = [b for b, f in enumerate(bar_factor) if f == index]
    raw = np.column_stack([np.asarray(bar_designs[b].common.design_matrix, float) for b in mine])
    names = sum((lme4_names(column_names(bar_designs[b].common)) for b in mine), [])
    return GroupingFactor(parsed.bars[mine[0]].group_name, codes, levels, raw, tuple(names))


def _terms(bars, bar_designs, bar_factor, factors) -> tuple[RandomTerm, ...]:
    offsets = [0] * len(factors)
    terms = []
    for bar, design, f in zip(bars, bar_designs, bar_factor):
        names = tuple(lme4_names(column_names(design.common)))
        terms.append(RandomTerm(bar.group_name, names, f, offsets[f]))
        offsets[f] += len(names)
    # lme4 orders terms by decreasing number of levels, keeping formula order on ties
    return tuple(sorted(terms, key=lambda t: -factors[t.factor].n_levels))


def _check_repeated_columns(parsed: ParsedFormula, factors) -> None:
    for factor in factors:
        seen = [c for c in factor.column_names]
        repeated = {c for c in seen if seen.count(c) > 1}
        if repeated:
            raise LMMError(
                f"the random-effect column(s) {sorted(repeated)} appear in more than one term on "
                f"{factor.name!r} in {parsed.text!r}; give each column once per grouping factor, "
                f"e.g. '(1 | g) + (0 + x | g)'"
            )


def group_codes(data: pd.DataFrame, group: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Level codes and labels of a grouping factor (an interaction when several columns).

    Levels are sorted as R sorts a factor's levels; an interaction's levels are the
    observed combinations, the first variable varying slowest (lme4's ``a:b``).
    """
    parts = [_categorical(data[name]) for name in group]
    if len(parts) == 1:
        cat = parts[0]
        return cat.codes.astype(np.intp), tuple(_format_level(v) for v in cat.categories)
    stacked = np.column_stack([c.codes for c in parts])
    combos, codes = np.unique(stacked, axis=0, return_inverse=True)
    labels = tuple(
        ":".join(_format_level(parts[k].categories[j]) for k, j in enumerate(row)) for row in combos
    )
    return codes.reshape(-1).astype(np.intp), labels


def level_labels(data: pd.DataFrame, group: tuple[str, ...]) -> np.ndarray:
    """The level label of every row, formatted as in :func:`group_codes` (for new data)."""
    columns = [data[name].map(_format_level).astype(str).to_numpy() for name in group]
    labels = columns[0]
    for col in columns[1:]:
        labels = np.char.add(np.char.add(labels.astype(str), ":"), col.astype(str))
    return labels


def _categorical(column: pd.Series) -> pd.Categorical:
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.remove_unused_categories().array
    return pd.Categorical(column)


_INTEGRAL_FLOAT = re.compile(r"^-?\d+\.0$")


def _format_level(value) -> str:
    text = str(value)
    return text[:-2] if isinstance(value, float) and _INTEGRAL_FLOAT.match(text) else text


__all__ = ["build_spec", "Design", "bar_groups", "evaluate_new_rows", "group_codes", "level_labels", "lme4_names",
           "new_fixed_matrix", "random_part", "r_term_order", "RandomBar"]
