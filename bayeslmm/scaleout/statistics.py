"""The second pass: the sufficient statistics of a Dask DataFrame, partition by partition.

Each partition's rows go through the code an in-memory fit uses: the model's design evaluated
on them (:func:`bayeslmm.results.newdata.new_data_matrices`, the data set's levels and transform
statistics fixed), a :class:`~bayeslmm.model.spec.ModelSpec` of the partition whose factors
have only the levels present there, and :func:`bayeslmm.linalg.crossprod.cross_products` (whitened
first by :func:`bayeslmm.fit.residual.whitened_spec` with a residual structure).  The partition's
statistics are then placed at the data set's level indices (:class:`PartialStatistics`) and
summed by a tree reduction; only these sums ever reach the driver.  With one grouping factor
(and no residual structure) each level's [X y]'[X y], row count and Σ log w are summed too:
leave-one-group-out LOO of the posterior reads them instead of rows.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from bayeslmm.fit.residual import whitened_spec
from bayeslmm.formula.design import evaluate_new_rows, level_labels
from bayeslmm.formula.frame import formulae_frame
from bayeslmm.linalg.crossprod import (
    CrossProducts,
    GroupCrossProducts,
    cross_products,
    downdate_pairs,
    group_cross_products,
)
from bayeslmm.model.spec import GroupingFactor, ModelSpec
from bayeslmm.results.newdata import new_data_matrices
from bayeslmm.scaleout.design import Template
from bayeslmm.scaleout.frame import clean_rows
from bayeslmm.scaleout.passes import tree_reduce


@dataclass(frozen=True)
class PartitionRows:
    """One partition as the model sees it: its spec (factors with the levels present, ``ids``
    their indices among the data set's levels) and its bound residual structure."""

    spec: ModelSpec
    ids: tuple[np.ndarray, ...]  # per factor: the data set's index of each local level
    bound: object = None


def partition_rows(partition: pd.DataFrame, template: Template) -> PartitionRows | None:
    """The partition's cleaned rows as a spec of their own (None when no row is left)."""
    rows, _ = clean_rows(partition, template.columns)
    if len(rows) == 0:
        return None
    spec = template.spec
    X, offset, _ = new_data_matrices(spec, rows, allow_new_levels=False, include_re=False)
    coded = factor_codes_and_columns(spec, rows)
    response = response_values(template, rows)
    y = response if offset is None else response - offset
    factors, ids = [], []
    for factor, (codes, raw) in zip(spec.factors, coded):
        present, local = np.unique(codes, return_inverse=True)
        factors.append(GroupingFactor(factor.name, local.astype(np.intp), tuple(present), raw, factor.column_names))
        ids.append(present)
    weights = None if template.weights is None else rows[template.weights].to_numpy(dtype=float)
    local = ModelSpec(spec.formula, spec.response_name, y, X, spec.fixef_names, tuple(factors), spec.terms,
                      rows.index, weights=weights)
    bound = None if template.structure is None else template.structure.bind(rows.loc[:, list(template.structure.columns)])
    return PartitionRows(local, tuple(ids), bound)


def factor_codes_and_columns(spec: ModelSpec, rows: pd.DataFrame) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each factor's level codes and columns for ``rows``, as :func:`new_data_matrices` gives them.

    A one-column factor's codes are its column's categorical codes: the partition was cast to the
    data set's categories, whose order is the factor's (no label formatted or looked up per row)."""
    design = spec.design
    frame = formulae_frame(rows, design.level_columns, fitting=False)
    out = []
    for f, factor in enumerate(spec.factors):
        raw = np.column_stack([evaluate_new_rows(design.bars[b].common, frame)
                               for b, owner in enumerate(design.bar_factor) if owner == f])
        group = design.factor_groups[f]
        if len(group) == 1:
            codes = rows[group[0]].cat.codes.to_numpy().astype(np.intp)
        else:
            codes = pd.Index(factor.levels).get_indexer(level_labels(rows, group))
        out.append((codes, raw))
    return out


def response_values(template: Template, rows: pd.DataFrame) -> np.ndarray:
    """The response evaluated on ``rows`` as new data of the template's response design."""
    frame = formulae_frame(rows, template.spec.design.level_columns, fitting=False)
    return np.asarray(template.response.common.evaluate_new_data(frame).design_matrix, dtype=float)[:, 0]


@dataclass
class PartialStatistics:
    """Cross-products of some partitions, at the data set's indices: the first factor's blocks
    of the levels present (``first``), the later factors' stacked columns present (``second``)."""

    n: int
    XYtXY: np.ndarray
    log_weights: float
    logdet: float  # Σ log|R_i(φ)| of a residual structure
    moments: np.ndarray  # Σ a a' of a = [1, y, X, Z columns] unweighted, unwhitened
    first: np.ndarray | None = None  # level indices
    ZtZ1: np.ndarray | None = None
    ZtXY1: np.ndarray | None = None
    second: np.ndarray | None = None  # stacked column indices of the later factors
    ZtZ2: np.ndarray | None = None
    ZtXY2: np.ndarray | None = None
    Z2tZ1: sp.coo_matrix | None = None  # (Q2, Q1) at the data set's indices
    # one factor, no residual structure: leave-one-group-out's per-level statistics, for the
    # levels present (``first``, in its order)
    groups: GroupCrossProducts | None = None


def partition_statistics(part: PartitionRows | None, template: Template, phi=None) -> PartialStatistics | None:
    """The statistics of one partition (whitened at ``phi`` with a residual structure)."""
    if part is None:
        return None
    spec, logdet = part.spec, 0.0
    moments = _moments(spec)
    if part.bound is not None:
        spec, logdet = whitened_spec(spec, part.bound, phi)
    stats = cross_products(spec)
    out = PartialStatistics(stats.n, stats.XYtXY, stats.log_weights, float(logdet), moments)
    if not spec.factors:
        return out
    global_factors = template.spec.factors
    S1 = global_factors[0].n_columns
    out.first, out.ZtZ1, out.ZtXY1 = part.ids[0], stats.ZtZ1, stats.ZtXY1
    if len(global_factors) == 1 and part.bound is None:
        out.groups = group_cross_products(spec)
    if len(global_factors) > 1:
        out.second = _stacked_indices(part.ids[1:], global_factors[1:])
        out.ZtZ2, out.ZtXY2 = stats.ZtZ2, stats.ZtXY2
        coo = stats.Z2tZ1.tocoo()
        columns = part.ids[0][coo.col // S1] * S1 + coo.col % S1
        shape = (_q(global_factors[1:]), global_factors[0].n_levels * S1)
        out.Z2tZ1 = sp.coo_matrix((coo.data, (out.second[coo.row], columns)), shape=shape)
    return out


def _moments(spec: ModelSpec) -> np.ndarray:
    A = np.column_stack([np.ones(spec.n), spec.y, spec.X] + [f.raw for f in spec.factors])
    return A.T @ A


def _q(factors) -> int:
    return sum(f.n_levels * f.n_columns for f in factors)


def _stacked_indices(ids, factors) -> np.ndarray:
    """The data set's stacked column index of each local column of the later factors."""
    pieces, offset = [], 0
    for present, factor in zip(ids, factors):
        S = factor.n_columns
        pieces.append((offset + present[:, None] * S + np.arange(S)).reshape(-1))
        offset += factor.n_levels * S
    return np.concatenate(pieces)


def add_partials(*parts: PartialStatistics | None) -> PartialStatistics | None:
    """The sum of several partitions' statistics (the reduce step)."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    out = PartialStatistics(sum(p.n for p in parts), sum(p.XYtXY for p in parts), sum(p.log_weights for p in parts),
                            sum(p.logdet for p in parts), sum(p.moments for p in parts))
    if parts[0].first is None:
        return out
    out.first, (out.ZtZ1, out.ZtXY1) = _sum_at([p.first for p in parts], [(p.ZtZ1, p.ZtXY1) for p in parts])
    if parts[0].groups is not None:
        _, summed = _sum_at([p.first for p in parts],
                            [(p.groups.XYtXY, p.groups.n, p.groups.log_weights) for p in parts])
        out.groups = GroupCrossProducts(*summed)
    if parts[0].second is not None:
        out.second, (out.ZtXY2,) = _sum_at([p.second for p in parts], [(p.ZtXY2,) for p in parts])
        out.ZtZ2 = np.zeros((out.second.size, out.second.size))
        for p in parts:
            where = np.searchsorted(out.second, p.second)
            out.ZtZ2[np.ix_(where, where)] += p.ZtZ2
        total = parts[0].Z2tZ1
        for p in parts[1:]:
            total = total + p.Z2tZ1
        out.Z2tZ1 = total.tocoo()
    return out


def _sum_at(indices: list[np.ndarray], arrays: list[tuple]) -> tuple[np.ndarray, tuple]:
    """Arrays indexed by ``indices`` (first axis) summed where the indices coincide."""
    stacked = np.concatenate(indices)
    union, where = np.unique(stacked, return_inverse=True)
    sums = []
    for k in range(len(arrays[0])):
        values = np.concatenate([a[k] for a in arrays])
        if union.size == stacked.size:  # no index twice (rows grouped by partition): a reordering
            out = np.empty_like(values)
            out[where] = values
        else:
            out = np.zeros((union.size,) + values.shape[1:])
            np.add.at(out, where, values)
        sums.append(out)
    return union, tuple(sums)


def cross_products_of(total: PartialStatistics, template: Template) -> CrossProducts:
    """The data set's :class:`CrossProducts` from the summed partial statistics."""
    p = total.XYtXY.shape[0] - 1
    factors = template.spec.factors
    if not factors:
        return CrossProducts(total.n, p, total.XYtXY, None, None, None, None, None, log_weights=total.log_weights)
    levels = tuple(f.n_levels for f in factors)
    G1, S1 = levels[0], factors[0].n_columns
    ZtZ1, ZtXY1 = np.zeros((G1, S1, S1)), np.zeros((G1, S1, p + 1))
    ZtZ1[total.first], ZtXY1[total.first] = total.ZtZ1, total.ZtXY1
    if len(factors) == 1:
        return CrossProducts(total.n, p, total.XYtXY, ZtZ1, ZtXY1, None, None, None, levels,
                             log_weights=total.log_weights, by_group=_group_statistics(total, G1))
    Q2 = _q(factors[1:])
    ZtZ2, ZtXY2 = np.zeros((Q2, Q2)), np.zeros((Q2, p + 1))
    ZtZ2[np.ix_(total.second, total.second)], ZtXY2[total.second] = total.ZtZ2, total.ZtXY2
    Z2tZ1 = total.Z2tZ1.tocsr()
    return CrossProducts(total.n, p, total.XYtXY, ZtZ1, ZtXY1, ZtZ2, ZtXY2, Z2tZ1, levels,
                         pairs=downdate_pairs(Z2tZ1, G1, S1), log_weights=total.log_weights)


def _group_statistics(total: PartialStatistics, G: int) -> GroupCrossProducts | None:
    """The per-level statistics of leave-one-group-out at the data set's level indices."""
    if total.groups is None:
        return None
    k = total.groups.XYtXY.shape[1]
    XYtXY, n, log_weights = np.zeros((G, k, k)), np.zeros(G), np.zeros(G)
    XYtXY[total.first] = total.groups.XYtXY
    n[total.first], log_weights[total.first] = total.groups.n, total.groups.log_weights
    return GroupCrossProducts(XYtXY, n, log_weights)


def select_columns(total: PartialStatistics, kept: np.ndarray, p: int) -> PartialStatistics:
    """The statistics with only the fixed-effect columns ``kept`` (of ``p``): aliased ones dropped."""
    xy = np.append(kept, p)
    moment_columns = np.concatenate([[0, 1], 2 + kept, np.arange(2 + p, total.moments.shape[0])])
    return dataclasses.replace(
        total, XYtXY=total.XYtXY[np.ix_(xy, xy)], moments=total.moments[np.ix_(moment_columns, moment_columns)],
        ZtXY1=None if total.ZtXY1 is None else total.ZtXY1[..., xy],
        ZtXY2=None if total.ZtXY2 is None else total.ZtXY2[..., xy],
        groups=None if total.groups is None else dataclasses.replace(
            total.groups, XYtXY=total.groups.XYtXY[:, xy[:, None], xy]))


def second_pass(parts: list, template: Template, phi=None) -> PartialStatistics:
    """The summed statistics of delayed partitions (``parts``: delayed PartitionRows) on the active scheduler."""
    import dask

    shared = dask.delayed(template)
    mapped = [dask.delayed(partition_statistics)(part, shared, phi) for part in parts]
    return tree_reduce(mapped, add_partials).compute()
