"""The first pass over a Dask DataFrame: what is global to the data set.

An in-memory fit learns these from all its rows at once; here each partition reports its
part and the parts are merged by a tree reduction (:func:`tree_reduce`), on whichever
scheduler is active:

- the number of rows kept and of rows dropped for missing values;
- the levels of every categorical covariate and grouping factor (an interaction's observed
  combinations), ordered as an in-memory fit orders them;
- the power sums that the stateful transforms ``scale(x)`` and ``poly(x, k)`` learn from
  (of x shifted and scaled by a sample's mean and sd, for conditioning);
- with a residual structure, its groups' labels, to check each lies in one partition.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bayeslmm.errors import LMMError
from bayeslmm.formula.design import level_labels
from bayeslmm.scaleout.frame import Columns, clean_rows, is_categorical

SPLIT_EVERY = 8  # partitions' results merged per task of the tree reduction


@dataclass(frozen=True)
class PowerSums:
    """Σ t^j, j = 0 … degree, of t = (x − shift) / scale over the rows kept."""

    column: str
    shift: float
    scale: float
    sums: np.ndarray

    def add(self, other: "PowerSums") -> "PowerSums":
        return PowerSums(self.column, self.shift, self.scale, self.sums + other.sums)


@dataclass(frozen=True)
class PowerSumRequest:
    column: str
    shift: float
    scale: float
    degree: int

    def of(self, rows: pd.DataFrame) -> PowerSums:
        t = (rows[self.column].to_numpy(dtype=float) - self.shift) / self.scale
        return PowerSums(self.column, self.shift, self.scale,
                         np.array([np.sum(t**j) for j in range(self.degree + 1)]))


@dataclass
class GlobalFacts:
    """One partition's (or several merged partitions') share of the data set's global facts."""

    kept: int = 0
    dropped: int = 0
    partitions: int = 0
    values: dict = field(default_factory=dict)  # categorical column → its distinct values
    combinations: dict = field(default_factory=dict)  # interaction's columns → distinct rows
    sums: dict = field(default_factory=dict)  # column → PowerSums
    residual_groups: np.ndarray | None = None  # labels of the residual structure's groups
    split_groups: np.ndarray | None = None  # labels found in more than one partition


def partition_facts(partition: pd.DataFrame, columns: Columns, requests: tuple[PowerSumRequest, ...],
                    structure) -> GlobalFacts:
    """The global facts of one partition (the first pass's map step)."""
    rows, dropped = clean_rows(partition, columns)
    facts = GlobalFacts(kept=len(rows), dropped=dropped, partitions=1)
    for name in columns.used:
        if is_categorical(rows[name]) and name not in columns.extra:
            facts.values[name] = pd.unique(rows[name].dropna())
    for group in columns.groups:
        for name in group:
            facts.values[name] = pd.unique(rows[name])
        if len(group) > 1:
            facts.combinations[group] = rows.loc[:, list(group)].drop_duplicates()
    facts.sums = {request.column: request.of(rows) for request in requests}
    if structure is not None and structure.columns and len(rows):
        facts.residual_groups = np.unique(structure.bind(rows).group_levels.astype(str))
    return facts


def merge_facts(*parts: GlobalFacts) -> GlobalFacts:
    """The facts of several partitions together (the first pass's reduce step)."""
    out = GlobalFacts(kept=sum(p.kept for p in parts), dropped=sum(p.dropped for p in parts),
                      partitions=sum(p.partitions for p in parts))
    for name in parts[0].values:
        out.values[name] = pd.unique(np.concatenate([np.asarray(p.values[name], dtype=object) for p in parts]))
    for group in parts[0].combinations:
        out.combinations[group] = pd.concat([p.combinations[group] for p in parts]).drop_duplicates()
    for name in parts[0].sums:
        total = parts[0].sums[name]
        for p in parts[1:]:
            total = total.add(p.sums[name])
        out.sums[name] = total
    labels = [p.residual_groups for p in parts if p.residual_groups is not None]
    split = [p.split_groups for p in parts if p.split_groups is not None]
    if labels:
        stacked = np.concatenate(labels)
        unique, counts = np.unique(stacked, return_counts=True)
        out.residual_groups = unique
        split.append(unique[counts > 1])
    out.split_groups = np.concatenate(split) if split else None
    return out


def tree_reduce(mapped: list, combine, split_every: int = SPLIT_EVERY):
    """``combine`` over delayed values, ``split_every`` at a time, until one delayed value is left."""
    import dask

    level = list(mapped)
    while len(level) > 1:
        level = [dask.delayed(combine)(*level[k:k + split_every]) for k in range(0, len(level), split_every)]
    return level[0] if len(level) == 1 else dask.delayed(combine)(*level)


def first_pass(ddf, columns: Columns, requests: tuple[PowerSumRequest, ...], structure,
               group_name: str | None = None) -> GlobalFacts:
    """The data set's global facts, computed on the active Dask scheduler (``group_name``: the
    residual structure's grouping column, for the error when a group spans partitions)."""
    import dask

    shared = dask.delayed(columns), dask.delayed(requests), dask.delayed(structure)
    mapped = [dask.delayed(partition_facts)(part, *shared) for part in ddf.to_delayed()]
    facts = tree_reduce(mapped, merge_facts).compute()
    if facts.kept == 0:
        raise LMMError("no rows are left after dropping rows with missing values")
    if facts.split_groups is not None and len(facts.split_groups):
        name = group_name or "the structure's group"
        raise LMMError(
            f"the residual structure needs each group's rows in one partition, but {len(facts.split_groups)} "
            f"group(s) of {name!r} span several (e.g. {', '.join(map(str, facts.split_groups[:3]))}); "
            f"repartition by the group first: ddf = ddf.set_index({name!r}) or ddf.shuffle({name!r})")
    return facts


def categories(facts: GlobalFacts, meta: pd.DataFrame) -> dict:
    """Every categorical column's categories in the order an in-memory fit uses: a categorical
    column's own order (its unused categories dropped), else sorted as R sorts a factor's levels."""
    out = {}
    for name, values in facts.values.items():
        dtype = meta[name].dtype
        known = isinstance(dtype, pd.CategoricalDtype) and "__UNKNOWN_CATEGORIES__" not in list(dtype.categories)
        if known:
            present = set(values)
            out[name] = [c for c in dtype.categories if c in present]
        else:
            out[name] = list(pd.Categorical(values).categories)
    return out


def factor_levels(facts: GlobalFacts, columns: Columns, categories_of: dict) -> dict:
    """Each grouping factor's level labels, as an in-memory fit labels and orders them: a column's
    categories; an interaction's observed combinations, the first column varying slowest."""
    out = {group: tuple(level_labels(pd.DataFrame({group[0]: categories_of[group[0]]}), group))
           for group in columns.groups if len(group) == 1}
    for group, rows in facts.combinations.items():
        coded = pd.DataFrame({name: pd.Categorical(rows[name], categories=categories_of[name]) for name in group})
        ordered = coded.iloc[np.lexsort([coded[name].cat.codes for name in reversed(group)])]
        out[group] = tuple(level_labels(ordered, group))
    return out
