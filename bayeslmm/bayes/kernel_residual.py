"""A setup with a residual structure encoded as :mod:`bayeslmm.linalg.compiled_residual`'s
arguments: the component statistics of the raw rows, the weights' codes, the structure's
priors, and its PyMC variables in the kernel's parameter vector.

Covered (one grouping factor, or none): AR(1) (``cov.AR1``, gaps in time included: ρ^d), ARH(1), compound
symmetry, one variance per level of a factor (``cov.Heteroscedastic``), and AR(1) or compound
symmetry with such variances on top (``&``).  :func:`residual_gap` says what is not covered.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy.special import betaln

from bayeslmm.arrays import group_sums
from bayeslmm.bayes.setup import BayesSetup
from bayeslmm.linalg import compiled_residual as cr
from bayeslmm.linalg.crossprod import CrossProducts
from bayeslmm.model.residual.ar1 import BoundAR1
from bayeslmm.model.residual.combined import BoundCombined
from bayeslmm.model.residual.cs import BoundCS
from bayeslmm.model.residual.heteroscedastic import BoundHeteroscedastic


@dataclass(frozen=True)
class Rows:
    """How a covered structure reads the rows: its correlation (an AR(1) or CS binding, or None),
    each row's stratum of sd ratios (0: the reference level) and the sd ratios' variables."""

    correlation: BoundAR1 | BoundCS | None
    strata: np.ndarray
    n_strata: int
    ratios: object | None  # parts.SdRatios of the sd ratios, None without

    @property
    def kind(self) -> int:
        if isinstance(self.correlation, BoundAR1):
            return cr.AUTOREGRESSIVE
        return cr.COMPOUND_SYMMETRY if isinstance(self.correlation, BoundCS) else cr.VARIANCES_ONLY

    @property
    def rho_low(self) -> float:
        """ρ's lower end (the structure's own: −1, or compound symmetry's by its largest group);
        −1 where there is no ρ, a placeholder the kernel does not read."""
        return -1.0 if self.correlation is None else self.correlation.rho.low


def structure_name(bound) -> str:
    """The structure as the user wrote it, for messages: ``AR1``, ``Unstructured``, ``CS & Heteroscedastic``."""
    if isinstance(bound, BoundCombined):
        return f"{structure_name(bound.structure)} & {structure_name(bound.variance)}"
    if isinstance(bound, BoundAR1):
        return "ARH1" if bound.heteroscedastic else "AR1"
    names = {"BoundCS": "CompoundSymmetry", "BoundToeplitz": "Toeplitz", "BoundUnstructured": "Unstructured",
             "BoundHeteroscedastic": "Heteroscedastic"}
    return names.get(type(bound).__name__, type(bound).__name__)


def residual_rows(bound) -> Rows | None:
    """The structure's reading of the rows where the kernel covers it, else None."""
    n = bound.groups.size
    if isinstance(bound, BoundHeteroscedastic):
        return Rows(None, bound.codes, len(bound.levels), bound.ratios)
    if isinstance(bound, BoundCS):
        return Rows(bound, np.zeros(n, dtype=np.int64), 1, None)
    if isinstance(bound, BoundAR1):
        if not bound.heteroscedastic:
            return Rows(bound, np.zeros(n, dtype=np.int64), 1, None)
        strata = np.empty(n, dtype=np.int64)  # ARH(1): one sd per time point; time_level is in sorted order
        strata[np.arange(n) if bound.order is None else bound.order] = bound.time_level
        return Rows(bound, strata, len(bound.levels), bound.ratios)
    if isinstance(bound, BoundCombined) and isinstance(bound.structure, (BoundCS, BoundAR1)):
        if isinstance(bound.structure, BoundAR1) and bound.structure.heteroscedastic:
            return None  # two sets of sd ratios (by time and by the factor): not covered
        return Rows(bound.structure, bound.variance.codes, len(bound.variance.levels), bound.variance.ratios)
    return None


def residual_gap(setup: BayesSetup) -> str | None:
    """None where the kernel covers the setup's residual structure (or there is none); otherwise
    the shape that is not covered, for the fallback's warning."""
    bound = setup.residual
    if bound is None:
        return None
    if len(setup.spec.factors) > 1:
        return (f"a residual structure ({structure_name(bound)}) with {len(setup.spec.factors)} grouping factors "
                "(the kernel covers residual structures with one grouping factor)")
    if residual_rows(bound) is None:
        return (f"the residual structure {structure_name(bound)} (the kernel covers AR1, ARH1, CompoundSymmetry, "
                "Heteroscedastic, and AR1 or CompoundSymmetry & Heteroscedastic)")
    return None


# --- the component statistics --------------------------------------------------------------------


def _pieces_ar1(bound: BoundAR1, strata, levels):
    """(code, value, stratum a, stratum b, level, left row, right row) of every product of raw
    rows: a group's first row alone, and each later row with its predecessor (gap d)."""
    order = np.arange(strata.size) if bound.order is None else bound.order
    gap = bound.distances[bound.distance_index]  # in sorted order; 0 for a group's first row
    s, g = strata[order], levels[order]
    first, later = np.flatnonzero(gap == 0), np.flatnonzero(gap > 0)
    previous = later - 1
    d = gap[later]
    ones = np.ones(first.size)
    return [
        (cr.UNIT, 0 * ones, s[first], s[first], g[first], order[first], order[first]),
        (cr.AR_SELF, d, s[later], s[later], g[later], order[later], order[later]),
        (cr.AR_CROSS, d, s[later], s[previous], g[later], order[later], order[previous]),
        (cr.AR_PREVIOUS, d, s[previous], s[previous], g[later], order[previous], order[previous]),
    ], np.unique(d, return_counts=True)


def _outer_sums(index, left, right, size: int) -> np.ndarray:
    """Σ left_i right_i' over the rows i of each index, (size, q, q); one bincount per entry."""
    q = left.shape[1]
    out = np.empty((size, q, q))
    for a in range(q):
        for b in range(q):
            out[:, a, b] = np.bincount(index, weights=left[:, a] * right[:, b], minlength=size)
    return out


@dataclass(frozen=True)
class Components:
    """The component statistics S_c and their codes (compiled_residual's arguments)."""

    codes: np.ndarray  # (C, 3) int64: kind, stratum a, stratum b
    values: np.ndarray  # (C,): the gap d (AR) or group size m (CS)
    ZtZ: np.ndarray  # (C·G, S, S)
    ZtXY: np.ndarray  # (C·G, S, p+1)
    XYtXY: np.ndarray  # (C, p+1, p+1)
    classes: np.ndarray  # (K, 2): each gap (AR) or group size (CS) and its count of rows (AR) or groups (CS)


def components(setup: BayesSetup, rows: Rows) -> Components:
    """Every product of raw rows [Z X y] the whitened statistics are made of, summed by component
    (kind, value, strata) and level of the grouping factor."""
    spec = setup.spec
    if spec.factors:
        raw, levels, G = spec.factors[0].raw, spec.factors[0].codes, spec.factors[0].n_levels
    else:  # no random effects (nlme's gls): one level with no columns
        raw, levels, G = np.zeros((spec.n, 0)), np.zeros(spec.n, dtype=np.int64), 1
    U = np.column_stack([raw, spec.X, spec.y])
    S, q = raw.shape[1], U.shape[1]
    cross_sums = []  # (code, value, a, b, level, left (N, q), right (N, q)); cross products made symmetric
    if rows.kind == cr.AUTOREGRESSIVE:
        pieces, (gaps, counts) = _pieces_ar1(rows.correlation, rows.strata, levels)
        cross_sums = [(k, v, a, b, g, U[i], U[j]) for k, v, a, b, g, i, j in pieces]
        classes = np.column_stack([gaps, counts]).astype(float)
    else:
        everyone = np.arange(spec.n)
        kind = cr.CS_ALL if rows.kind == cr.COMPOUND_SYMMETRY else cr.UNIT
        cross_sums.append((kind, np.zeros(spec.n), rows.strata, rows.strata, levels, U[everyone], U[everyone]))
        classes = np.zeros((0, 2))
        if rows.kind == cr.COMPOUND_SYMMETRY:
            cross_sums += _cs_group_sums(rows, U, levels)
            sizes, counts = np.unique(rows.correlation.sizes, return_counts=True)
            classes = np.column_stack([sizes, counts]).astype(float)
    keys = np.concatenate([np.column_stack([np.full(len(v), k), v, np.minimum(a, b), np.maximum(a, b)])
                           for k, v, a, b, *_ in cross_sums])
    unique, component = np.unique(keys, axis=0, return_inverse=True)
    component = component.reshape(-1)
    level = np.concatenate([piece[4] for piece in cross_sums])
    left = np.concatenate([piece[5] for piece in cross_sums])
    right = np.concatenate([piece[6] for piece in cross_sums])
    sums = _outer_sums(component * G + level, left, right, unique.shape[0] * G)
    crossed = (unique[:, 0] == cr.AR_CROSS) | ((unique[:, 0] == cr.CS_GROUP) & (unique[:, 2] != unique[:, 3]))
    sums[np.repeat(crossed, G)] += np.swapaxes(sums[np.repeat(crossed, G)], 1, 2)
    XYtXY = sums[:, S:, S:].reshape(unique.shape[0], G, q - S, q - S).sum(axis=1)
    codes = np.column_stack([unique[:, 0], unique[:, 2], unique[:, 3]]).astype(np.int64)
    return Components(codes, unique[:, 1].astype(float), np.ascontiguousarray(sums[:, :S, :S]),
                      np.ascontiguousarray(sums[:, :S, S:]), np.ascontiguousarray(XYtXY), classes)


def _cs_group_sums(rows: Rows, U, levels) -> list:
    """Compound symmetry's (Σ_group u)(Σ_group u)'/m, split by pairs of strata: Σ_j u_j/r_j is
    Σ_s (Σ_{j in s} u_j)/r_s, so the pair (s, s') carries 1/(r_s r_s')."""
    bound, n_strata = rows.correlation, rows.n_strata
    n_groups = bound.sizes.size
    sums = group_sums(U, bound.groups * n_strata + rows.strata, n_groups * n_strata)
    present = np.zeros(n_groups * n_strata, dtype=bool)
    present[bound.groups * n_strata + rows.strata] = True
    sums, present = sums.reshape(n_groups, n_strata, -1), present.reshape(n_groups, n_strata)
    level_of_group = np.zeros(n_groups, dtype=np.int64)
    level_of_group[bound.groups] = levels  # groups are nested in the factor's levels (check_nesting)
    out = []
    for s in range(n_strata):
        for t in range(s, n_strata):
            groups = np.flatnonzero(present[:, s] & present[:, t])
            m = bound.sizes[groups].astype(float)
            out.append((cr.CS_GROUP, m, np.full(groups.size, s), np.full(groups.size, t), level_of_group[groups],
                        sums[groups, s] / m[:, None], sums[groups, t]))
    return out


# --- the kernel's arguments and parameters --------------------------------------------------------


def residual_arguments(setup: BayesSetup, start: int) -> tuple:
    """compiled_residual.residual_marginal_logp's residual arguments, from ``info`` to the
    component statistics; ``start``: φ's place in the parameter vector."""
    rows = residual_rows(setup.residual)
    parts = components(setup, rows)
    prior = setup.priors.residual
    low = rows.rho_low
    a, b = float(prior.rho.a), float(prior.rho.b)
    residual_prior = np.array([a, b, betaln(a, b), low, float(prior.log_sd_ratio.mu), float(prior.log_sd_ratio.sigma)])
    info = np.array([rows.kind, start, rows.n_strata, parts.codes.shape[0]], dtype=np.int64)
    strata_count = np.bincount(rows.strata, minlength=rows.n_strata).astype(float)
    return (info, parts.codes, parts.values, parts.classes, strata_count, residual_prior, parts.ZtZ, parts.ZtXY,
            parts.XYtXY)


def residual_blocks(setup: BayesSetup) -> list[tuple[str, int, str]]:
    """The structure's PyMC value variables in order: (name, size, transform), the transform
    ``logodds`` (ρ's Beta variable) or ``identity`` (the log sd ratios)."""
    rows = residual_rows(setup.residual)
    blocks = [] if rows.kind == cr.VARIANCES_ONLY else [("rho_unit", 1, "logodds")]
    return blocks + ([(rows.ratios.free_name, rows.ratios.size, "identity")] if rows.ratios is not None else [])


def add_residual_variables(setup: BayesSetup, posterior: xr.Dataset) -> xr.Dataset:
    """The structure's reported variables from its sampled ones, as PyMC's Deterministics: ρ from
    its Beta variable, every level's sd ratio (the first 1) from the log ratios."""
    rows = residual_rows(setup.residual)
    new = {}
    if rows.kind != cr.VARIANCES_ONLY:
        new["rho"] = rows.rho_low + (1.0 - rows.rho_low) * posterior["rho_unit"]
    if rows.ratios is not None:
        log_sd = posterior[rows.ratios.free_name].values
        ratios = np.exp(np.concatenate([np.zeros(log_sd.shape[:2] + (1,)), log_sd], axis=-1))
        new[rows.ratios.variable] = (("chain", "draw", rows.ratios.dim), ratios)
    return posterior.assign(new).assign_coords(rows.ratios.coords() if rows.ratios is not None else {})


def draw_statistics(setup: BayesSetup, posterior: xr.Dataset):
    """d ↦ the statistics whitened at draw d's φ (a CrossProducts), as Σ_c w_c S_c from the
    component statistics: no row is whitened per draw.  None where the kernel does not cover
    the structure (the caller whitens the rows)."""
    if residual_gap(setup) is not None:
        return None
    rows, spec = residual_rows(setup.residual), setup.spec
    info, codes, values, classes, strata_count, prior, ZtZ, ZtXY, XYtXY = residual_arguments(setup, 0)
    coordinates = []  # φ on PyMC's unconstrained scale, (draws, P)
    if rows.kind != cr.VARIANCES_ONLY:
        u = posterior["rho_unit"].values.reshape(-1, 1)
        coordinates.append(np.log(u) - np.log1p(-u))
    if rows.ratios is not None:
        coordinates.append(posterior[rows.ratios.free_name].values.reshape(-1, rows.ratios.size))
    phi = np.ascontiguousarray(np.concatenate(coordinates, axis=1))
    levels = (spec.factors[0].n_levels,) if spec.factors else ()

    def at(d: int) -> CrossProducts:
        w = cr.residual_weights(phi[d], info, codes, values, classes, strata_count, prior)[1]
        Z, V, XY = cr.weighted_statistics(w, ZtZ, ZtXY, XYtXY)
        if not spec.factors:
            return CrossProducts(spec.n, spec.p, XY, None, None, None, None, None)
        return CrossProducts(spec.n, spec.p, XY, Z, V, None, None, None, levels)

    return at
