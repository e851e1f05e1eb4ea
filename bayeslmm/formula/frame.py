"""The texts and the frame formulae evaluates, with R's meaning made explicit.

R reads a formula against a model frame whose factors carry their levels in order
(the first is the reference) and drop unused levels; formulae sorts the levels of an
unordered categorical and knows no ``levels=``.  So, before formulae sees them:

- every formula text is rewritten once (:func:`~bayeslmm.formula.transforms.to_formulae_text`);
- ``C(x, levels=[...])`` becomes a derived column, an ordered categorical with those
  levels, named by the text as written (so its columns read ``C(x, levels=[...])[b]``);
- categorical columns become ordered categoricals with their unused levels dropped, so
  that formulae keeps the caller's order, as R keeps a factor's.

Ordered and unordered categoricals alike get treatment contrasts in level order (R would
give an ordered factor ``contr.poly``); ``C(x, Sum)`` and ``C(x, Treatment("b"))`` choose others.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass

import formulae as fm
import pandas as pd

from bayeslmm.errors import LMMError
from bayeslmm.formula.bars import ParsedFormula
from bayeslmm.formula.transforms import to_formulae_text


@dataclass(frozen=True)
class LevelColumn:
    """``C(source, levels=[...])``: a derived categorical column with the levels in this order."""

    name: str  # the call as written, the derived column's name
    source: str
    levels: tuple


@dataclass(frozen=True)
class FormulaeTexts:
    """Every piece of a parsed formula as formulae will evaluate it."""

    response: str
    fixed: str
    bars: tuple[str, ...]  # each bar's left-hand side
    offsets: tuple[str, ...]
    level_columns: tuple[LevelColumn, ...]


_LEVELS_CALL = re.compile(r"(?<![\w.])C\(\s*(`[^`]+`|[A-Za-z_.][\w.]*)\s*,\s*levels\s*=\s*(\[[^\]]*\])\s*\)")


def formulae_texts(parsed: ParsedFormula) -> FormulaeTexts:
    found: dict[str, LevelColumn] = {}

    def rewrite(text: str) -> str:
        return _LEVELS_CALL.sub(lambda m: _level_column(m, found, parsed.text), to_formulae_text(text))

    return FormulaeTexts(rewrite(parsed.response), rewrite(parsed.fixed), tuple(rewrite(b.lhs) for b in parsed.bars),
                         # offset(off / 1000) is arithmetic in R, as inside I(): formulae's '/' would nest
                         tuple(f"I({rewrite(o)})" for o in parsed.offsets), tuple(found.values()))


def _level_column(match: re.Match, found: dict, formula: str) -> str:
    name = match.group(0)
    try:
        levels = tuple(ast.literal_eval(match.group(2)))
    except (ValueError, SyntaxError):
        raise LMMError(f"the levels in {name!r} of {formula!r} must be a list of literal values, "
                       "e.g. C(dose, levels=['low', 'mid', 'high'])") from None
    if len(set(levels)) != len(levels) or not levels:
        raise LMMError(f"the levels in {name!r} of {formula!r} must be distinct and not empty")
    found[name] = LevelColumn(name, match.group(1).strip("`"), levels)
    return f"`{name}`"


def formulae_frame(data: pd.DataFrame, level_columns: tuple[LevelColumn, ...], fitting: bool = True) -> pd.DataFrame:
    """A copy of ``data`` with the level columns added and categoricals in their given order."""
    frame = data.copy()
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = _in_order(frame[name].array, fitting)
    for column in level_columns:
        frame[column.name] = _in_order(_with_levels(frame[column.source], column), fitting)
    return frame


def _in_order(values: pd.Categorical, fitting: bool) -> pd.Categorical:
    # model.frame(drop.unused.levels = TRUE), as lme4 builds it; new data keep every level
    values = values.remove_unused_categories() if fitting else values
    return values.as_ordered()


def _with_levels(source: pd.Series, column: LevelColumn) -> pd.Categorical:
    unknown = pd.unique(source[~source.isin(column.levels) & source.notna()])
    if len(unknown):
        raise LMMError(
            f"column {column.source!r} has value(s) {', '.join(map(repr, unknown[:5]))} not among the levels of "
            f"{column.name!r}; list every value that occurs (levels {list(column.levels)})"
        )
    return pd.Categorical(source.astype(object), categories=list(column.levels))


# --- the columns a formula uses ----------------------------------------------------------


def used_columns(texts: FormulaeTexts, data: pd.DataFrame, formula: str) -> set[str]:
    """The data columns the formula reads (for dropping rows with missing values)."""
    names = {column.source for column in texts.level_columns}
    derived = {column.name for column in texts.level_columns}
    for text in (f"{texts.response} ~ {texts.fixed}", *texts.bars, *texts.offsets):
        names |= _columns_of(text, data, formula)
    return names - derived


def _columns_of(text: str, data: pd.DataFrame, formula: str) -> set[str]:
    try:
        description = fm.model_description(text)
    except Exception as err:  # formulae raises several parse error types
        raise LMMError(f"could not parse formula {formula!r} near {text!r}: {err}") from None
    terms = list(description.common_terms) + ([description.response.term] if description.response else [])
    names = set()
    for term in terms:
        for component in getattr(term, "components", []):
            if type(component).__name__ == "Variable":
                names.add(component.name)
            else:
                names |= _call_columns(component.call, data)
    return names


@dataclass(frozen=True)
class Predictor:
    """A data column the fixed part reads: a factor with its levels in the model's order, or a
    numeric covariate (``levels`` None), whatever transforms it goes through (log, poly, I())."""

    name: str
    levels: tuple | None


def fixed_predictors(common, level_columns: tuple[LevelColumn, ...], data: pd.DataFrame) -> tuple[Predictor, ...]:
    """The predictors of a fitted formulae design ``common``, in order of appearance.

    A column is a factor if any term reads it as categorical (``g``, ``C(Days)``,
    ``C(g, levels=[...])`` whose derived column stands for its source); otherwise it is a
    covariate.  The levels are formulae's, the ones the coefficients were coded with.
    """
    derived = {column.name: column.source for column in level_columns}
    levels: dict[str, tuple | None] = {}
    for term in common.terms.values():
        for component in getattr(term, "components", []):
            if type(component).__name__ == "Variable":
                names = {derived.get(component.name, component.name)}
            else:
                names = _call_columns(component.call, data)
            categoric = component.kind == "categoric" and len(names) == 1
            for name in sorted(names):
                if categoric:
                    levels[name] = levels.get(name) or tuple(component.levels)
                else:
                    levels.setdefault(name, None)
    return tuple(Predictor(name, value) for name, value in levels.items())


def _call_columns(call, data: pd.DataFrame) -> set[str]:
    """Data columns read by formulae's lazy call (``I(x ** 2)``, ``log(`my col`)``): its variables,
    not the functions it calls (formulae's own list loses the variables inside ``I()``)."""
    names, stack = set(), [call]
    while stack:
        node = stack.pop()
        if hasattr(node, "callee"):  # a call: its arguments, not the function
            stack += list(node.args) + list(node.kwargs.values())
        elif hasattr(node, "op"):  # an operator
            stack += list(node.args)
        elif hasattr(node, "name") and node.name in data.columns:
            names.add(node.name)
    return names
