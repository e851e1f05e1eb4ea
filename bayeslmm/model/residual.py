"""Residual covariance structures Σ_i = σ² R_i(φ), applied by whitening each group.

Each structure, bound to the model's rows, gives for parameters φ (unconstrained):
a whitening W_i with W_i'W_i = R_i⁻¹ applied to columns of [y X Z-raw], and Σ_i log|R_i|.
The shared log-density then runs unchanged on the whitened data and adds Σ log|R_i|
(docs/design.md, "Residual structures").  Never an n × n matrix: per-group blocks only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayeslmm.arrays import group_sums
from bayeslmm.errors import LMMError


@dataclass(frozen=True)
class Independent:
    """σ²I: the default."""

    columns: tuple = ()

    def bind(self, data: pd.DataFrame):
        return None


@dataclass(frozen=True)
class CompoundSymmetry:
    """σ² on the diagonal and a common covariance σ²ρ within each ``group``."""

    group: str

    @property
    def columns(self) -> tuple:
        return (self.group,)

    def bind(self, data: pd.DataFrame) -> "BoundCS":
        return _named(BoundCS(_codes(data, self.group)), data, self.group)


@dataclass(frozen=True)
class _OverTime:
    """A structure over the ``time`` points within each level of ``group``."""

    time: str
    group: str

    @property
    def columns(self) -> tuple:
        return (self.time, self.group)


@dataclass(frozen=True)
class AR1(_OverTime):
    """Correlation ρ^|t_j − t_k| over an integer or ordered ``time`` within each ``group``."""

    def bind(self, data: pd.DataFrame) -> "BoundAR1":
        return _named(BoundAR1(*_ordered_times(data, self.time, self.group), heteroscedastic=False),
                      data, self.group, self.time)


@dataclass(frozen=True)
class ARH1(AR1):
    """AR(1) correlations with one variance per time point (varIdent by time)."""

    def bind(self, data: pd.DataFrame) -> "BoundAR1":
        return _named(BoundAR1(*_ordered_times(data, self.time, self.group), heteroscedastic=True),
                      data, self.group, self.time)


def _named(bound, data: pd.DataFrame, group: str | None, ratio_column: str | None = None):
    """Attach the column names the Bayesian path labels its variables with: the grouping
    (``None``: every row its own block) and the column whose levels the sd ratios follow."""
    bound.group_name, bound.ratio_name = group, ratio_column
    bound.group_levels = np.sort(data[group].unique()) if group else np.asarray(data.index)
    return bound


def _codes(data: pd.DataFrame, column: str) -> np.ndarray:
    return pd.factorize(data[column], sort=True)[0]


def _ordered_times(data: pd.DataFrame, time: str, group: str):
    """Group codes, integer time positions (gaps kept) and the time levels."""
    groups = _codes(data, group)
    values = data[time]
    if pd.api.types.is_numeric_dtype(values):
        levels = np.unique(values.to_numpy())
        if not np.allclose(levels, np.round(levels)):
            raise LMMError(f"time column {time!r} must hold integers or an ordered factor (visit numbers)")
        positions = np.searchsorted(levels, values.to_numpy())
        gaps = np.round(values.to_numpy() - levels.min()).astype(int)
    else:
        categories = values.astype("category").cat
        levels = np.asarray(categories.categories)
        positions = gaps = categories.codes.to_numpy()
    pairs = pd.DataFrame({"g": groups, "t": positions})
    if pairs.duplicated().any():
        count = int(pairs.duplicated().sum())
        raise LMMError(f"time {time!r} repeats within a level of {group!r} in {count} row(s); "
                       "each group needs distinct time points")
    return groups, positions, np.asarray(gaps), levels


class Bound:
    """A structure bound to the model's rows.

    ``natural(φ)`` maps the unconstrained φ the optimiser moves to the structure's own
    parameters (ρ, log sd ratios, a covariance matrix); ``whiten_natural(params, M, xp)``
    whitens the columns M group by group and returns Σ log|R_i|.  It is written against
    the array namespace ``xp`` (NumPy or PyTensor), so the REML/ML search and the PyMC
    model run this same code.
    """

    def whiten(self, phi, M: np.ndarray) -> tuple[np.ndarray, float]:
        whitened, logdet = self.whiten_natural(self.natural(np.asarray(phi, dtype=float)), M)
        return whitened, float(logdet)

    def coordinates(self) -> list:
        """For each φ_k, (name, monotone map φ_k → the reported parameter), or None where φ_k
        means nothing alone (an unstructured Cholesky entry).  Profile intervals on φ_k map
        through it exactly."""
        return [None] * len(self.start)


class BoundCS(Bound):
    def __init__(self, groups: np.ndarray):
        self.groups = groups
        self.sizes = np.bincount(groups)
        self.lowest_rho = -1.0 / (self.sizes.max() - 1) if self.sizes.max() > 1 else -1.0
        self.names = ("rho",)
        self.start = np.zeros(1)

    def natural(self, phi) -> dict:
        share = np.clip(1 / (1 + np.exp(-phi[0])), 1e-12, 1 - 1e-12)  # R stays positive definite
        return {"rho": self.lowest_rho + (1 - self.lowest_rho) * share}  # (lowest, 1)

    def parameters(self, phi) -> dict:
        return {"rho": float(self.natural(phi)["rho"])}

    def coordinates(self) -> list:
        return [("rho", lambda x: float(self.natural(np.array([x]))["rho"]))]

    def whiten_natural(self, params: dict, M, xp=np):
        """R^{-1/2} M per group, with R = (1−ρ)(I − P) + (1 − ρ + mρ)P, P = J/m."""
        rho = params["rho"]
        m = self.sizes[self.groups][:, None]
        means = group_sums(M, self.groups, self.sizes.size, xp)[self.groups] / m
        whitened = (M - means) / xp.sqrt(1 - rho) + means / xp.sqrt(1 - rho + m * rho)
        return whitened, self.group_logdets(params, xp).sum()

    def group_logdets(self, params: dict, xp=np):
        rho = params["rho"]
        return (self.sizes - 1) * xp.log(1 - rho) + xp.log(1 - rho + self.sizes * rho)

    def colour(self, params: dict, Z: np.ndarray) -> np.ndarray:
        """R^{1/2} Z per group (the inverse of the whitening)."""
        rho = params["rho"]
        m = self.sizes[self.groups][:, None]
        means = group_sums(Z, self.groups, self.sizes.size)[self.groups] / m
        return (Z - means) * np.sqrt(1 - rho) + means * np.sqrt(1 - rho + m * rho)


def put_rows(shape: tuple, index: tuple, values, xp=np):
    """An array of zeros of ``shape`` with ``values`` at ``index``."""
    if xp is np:
        out = np.zeros(shape)
        out[index] = values
        return out
    return xp.set_subtensor(xp.zeros(shape)[index], values)


class BoundAR1(Bound):
    """AR(1) over time positions with gaps: e*_j = (e_j − ρ^d e_{j−1}) / √(1 − ρ^{2d}) (Markov)."""

    def __init__(self, groups, positions, gaps, levels, heteroscedastic: bool):
        self.groups = groups
        order = np.lexsort((gaps, groups))
        self.order = None if np.array_equal(order, np.arange(order.size)) else order  # data often come sorted
        self.unorder = None if self.order is None else np.argsort(order)
        g, t = groups[order], gaps[order]
        first = np.r_[True, g[1:] != g[:-1]]  # in sorted order, row i − 1 precedes row i
        self.sorted_groups = g
        self.rank = np.arange(g.size) - np.maximum.accumulate(np.where(first, np.arange(g.size), 0))  # within group
        distance = np.where(first, 0, t - np.r_[0, t[:-1]])
        self.distances, self.distance_index = np.unique(distance, return_inverse=True)
        self.time_level = positions[order]
        self.levels = levels
        self.heteroscedastic = heteroscedastic
        extra = tuple(f"variance ratio {lv}" for lv in levels[1:]) if heteroscedastic else ()
        self.names = ("rho",) + extra
        self.start = np.zeros(1 + len(extra))

    def natural(self, phi) -> dict:
        return {"rho": np.tanh(phi[0]), "log_sd": phi[1:] if self.heteroscedastic else None}

    def coordinates(self) -> list:
        ratios = [(f"sd_ratio_{level}", np.exp) for level in self.levels[1:]] if self.heteroscedastic else []
        return [("rho", np.tanh)] + ratios

    def parameters(self, phi) -> dict:
        out = {"rho": float(np.tanh(phi[0]))}
        if self.heteroscedastic:
            out["sd ratios"] = dict(zip(map(str, self.levels), np.r_[1.0, np.exp(phi[1:])]))
        return out

    def whiten_natural(self, params: dict, M, xp=np):
        rows = M if self.order is None else M[self.order]
        logdet = 0.0
        if self.heteroscedastic:
            log_sd = xp.concatenate([xp.zeros(1), params["log_sd"]])[self.time_level]
            rows = rows / xp.exp(log_sd)[:, None]
            logdet = 2.0 * log_sd.sum()
        lag, scale = self._lags(params, xp)
        previous = xp.concatenate([xp.zeros_like(rows[:1]), rows[:-1]])
        whitened = (rows - lag[:, None] * previous) / scale[:, None]
        whitened = whitened if self.unorder is None else whitened[self.unorder]
        return whitened, logdet + xp.log(scale**2).sum()

    def _lags(self, params: dict, xp=np):
        """ρ^d to the previous row (0 for a group's first row) and √(1 − ρ^{2d}), in sorted order."""
        positive = self.distances > 0
        lag = xp.where(positive, params["rho"] ** np.maximum(self.distances, 1), 0.0)[self.distance_index]
        return lag, xp.sqrt(1 - lag**2)

    def _row_log_sd(self, params: dict) -> np.ndarray:
        if not self.heteroscedastic:
            return np.zeros(self.time_level.size)
        return np.r_[0.0, params["log_sd"]][self.time_level]

    def group_logdets(self, params: dict, xp=np):
        lag, scale = self._lags(params)
        per_row = np.log(scale**2) + 2.0 * self._row_log_sd(params)
        return group_sums(per_row, self.sorted_groups, self.groups.max() + 1)

    def colour(self, params: dict, Z: np.ndarray) -> np.ndarray:
        """The inverse of the whitening: e_j = ρ^d e_{j−1} + √(1 − ρ^{2d}) z_j, rank by rank in each group."""
        lag, scale = self._lags(params)
        z = Z if self.order is None else Z[self.order]
        e = scale[:, None] * z
        for k in range(1, self.rank.max() + 1):
            rows = np.flatnonzero(self.rank == k)
            e[rows] += lag[rows, None] * e[rows - 1]
        e *= np.exp(self._row_log_sd(params))[:, None]
        return e if self.unorder is None else e[self.unorder]


@dataclass(frozen=True)
class Unstructured(_OverTime):
    """A free covariance over the ``time`` points within each ``group`` (nlme's corSymm + varIdent,
    mmrm's ``us()``); a group with missing visits uses the sub-matrix of the visits it has."""

    def bind(self, data: pd.DataFrame) -> "BoundUnstructured":
        return _named(BoundUnstructured(*_ordered_times(data, self.time, self.group)), data, self.group, self.time)


@dataclass(frozen=True)
class Heteroscedastic:
    """One residual variance per level of ``by`` (nlme's varIdent), relative to the first level."""

    by: str

    @property
    def columns(self) -> tuple:
        return (self.by,)

    def bind(self, data: pd.DataFrame) -> "BoundHeteroscedastic":
        codes, levels = pd.factorize(data[self.by], sort=True)
        return _named(BoundHeteroscedastic(codes, np.asarray(levels)), data, None, self.by)


@dataclass(frozen=True)
class Combined:
    """A correlation structure with one residual variance per level of a factor on top:
    Σ_i = σ² D_i R_i D_i (nlme's ``correlation=`` with ``weights=varIdent(...)``).

    Build it with ``cov.AR1(...) & cov.Heteroscedastic(by="treat")`` or the shorthand
    ``"ar1(visit | tree) + het(treat)"``.
    """

    structure: object
    variance: Heteroscedastic

    def __post_init__(self):
        if not isinstance(self.variance, Heteroscedastic):
            raise LMMError("a structure combines with Heteroscedastic(by=...) only, e.g. "
                           "cov.AR1(time='visit', group='tree') & cov.Heteroscedastic(by='treat')")
        if isinstance(self.structure, (Independent, Heteroscedastic, Combined)):
            raise LMMError("combine Heteroscedastic with CompoundSymmetry, AR1, ARH1 or Unstructured; "
                           "on its own it needs no combining")
        if isinstance(self.structure, (ARH1, Unstructured)) and self.variance.by == self.structure.time:
            raise LMMError(f"{type(self.structure).__name__} already has one variance per {self.variance.by!r}; "
                           "a Heteroscedastic by the same column would not be identifiable")

    @property
    def columns(self) -> tuple:
        return tuple(dict.fromkeys(self.structure.columns + self.variance.columns))

    def bind(self, data: pd.DataFrame) -> "BoundCombined":
        structure = self.structure.bind(data)
        combined = BoundCombined(structure, self.variance.bind(data), self.variance.by)
        combined.group_name, combined.group_levels = structure.group_name, structure.group_levels
        return combined


class BoundCombined(Bound):
    """W = W_R D⁻¹: scale each row by its sd ratio, then whiten the correlation."""

    def __init__(self, structure, variance: "BoundHeteroscedastic", by: str):
        self.structure, self.variance, self.by = structure, variance, by
        self.groups = structure.groups
        self.names = structure.names + variance.names
        self.start = np.r_[structure.start, variance.start]
        self._split = len(structure.start)

    def natural(self, phi) -> dict:
        return {"structure": self.structure.natural(phi[: self._split]),
                "variance": self.variance.natural(phi[self._split:])}

    def coordinates(self) -> list:
        return self.structure.coordinates() + self.variance.coordinates()

    def parameters(self, phi) -> dict:
        out = dict(self.structure.parameters(phi[: self._split]))
        out[f"sd ratios by {self.by}"] = self.variance.parameters(phi[self._split:])["sd ratios"]
        return out

    def whiten_natural(self, params: dict, M, xp=np):
        scaled, logdet_d = self.variance.whiten_natural(params["variance"], M, xp)
        whitened, logdet_r = self.structure.whiten_natural(params["structure"], scaled, xp)
        return whitened, logdet_d + logdet_r

    def group_logdets(self, params: dict, xp=np):
        per_row = self.variance.group_logdets(params["variance"])
        return self.structure.group_logdets(params["structure"]) + group_sums(per_row, self.groups,
                                                                             self.groups.max() + 1)

    def colour(self, params: dict, Z: np.ndarray) -> np.ndarray:
        return self.variance.colour(params["variance"], self.structure.colour(params["structure"], Z))


def _combine(self, other):
    return Combined(self, other)


for _structure in (CompoundSymmetry, AR1, Unstructured):
    _structure.__and__ = _combine  # ARH1 inherits AR1's


class BoundHeteroscedastic(Bound):
    def __init__(self, codes: np.ndarray, levels: np.ndarray):
        self.codes, self.levels = codes, levels
        self.groups = np.arange(codes.size)  # each row is its own block
        self.names = tuple(f"variance ratio {lv}" for lv in levels[1:])
        self.start = np.zeros(len(levels) - 1)

    def natural(self, phi) -> dict:
        return {"log_sd": phi}

    def parameters(self, phi) -> dict:
        return {"sd ratios": dict(zip(map(str, self.levels), np.r_[1.0, np.exp(phi)]))}

    def coordinates(self) -> list:
        return [(f"sd_ratio_{level}", np.exp) for level in self.levels[1:]]

    def whiten_natural(self, params: dict, M, xp=np):
        log_sd = xp.concatenate([xp.zeros(1), params["log_sd"]])[self.codes]
        return M / xp.exp(log_sd)[:, None], 2.0 * log_sd.sum()

    def group_logdets(self, params: dict, xp=np):
        return 2.0 * np.r_[0.0, params["log_sd"]][self.codes]

    def colour(self, params: dict, Z: np.ndarray) -> np.ndarray:
        return Z * np.exp(np.r_[0.0, params["log_sd"]][self.codes])[:, None]


class BoundUnstructured(Bound):
    """Σ_rel = L L' over T time points with L[0, 0] = 1 (σ is the sd at the first time point).

    Each group's rows are laid out on the T time points, (G, T), with zeros where a visit
    is missing; a group's covariance is S on its observed visits and the identity on the
    missing ones (independent of them), so whitening is one batched product with the
    inverse Cholesky factor of its missing-visit pattern and missing entries stay 0.
    """

    def __init__(self, groups, positions, gaps, levels):
        self.groups, self.levels, self.size = groups, levels, len(levels)
        self.time_positions = positions
        G = groups.max() + 1
        observed = np.zeros((G, self.size), dtype=bool)
        observed[groups, positions] = True
        self.masks, self.pattern_of_group = np.unique(observed, axis=0, return_inverse=True)
        self.pattern_of_group = self.pattern_of_group.reshape(-1)
        self.pattern_counts = np.bincount(self.pattern_of_group)
        counts = np.bincount(positions, minlength=self.size)
        if np.any(counts < 2) or G <= self.size:
            raise LMMError(f"an unstructured covariance over {self.size} time points needs every time point "
                           f"in at least 2 groups and more groups than time points; the data have "
                           f"{G} groups and {counts.min()} at the rarest time point")
        self.lower = np.tril_indices(self.size)
        self.names = tuple(f"L[{i},{j}]" for i, j in zip(*self.lower))[1:]
        self.start = np.zeros(len(self.lower[0]) - 1)

    def pad(self, M, xp=np):
        """Rows (n, k) laid out as (G, T, k), zeros at missing visits."""
        shape = (self.pattern_of_group.size, self.size, M.shape[1])
        return put_rows(shape, (self.groups, self.time_positions), M, xp)

    def inverse_factors(self, S, xp=np):
        """L_p⁻¹ (P, T, T) of each pattern's covariance (S observed, I missing) and log|S_p|."""
        both = self.masks[:, :, None] & self.masks[:, None, :]
        patterned = xp.where(both, S, 0.0) + np.eye(self.size) * ~self.masks[:, :, None]
        L = xp.linalg.cholesky(patterned)
        diagonal = L[:, np.arange(self.size), np.arange(self.size)]
        return xp.linalg.inv(L), 2.0 * xp.log(diagonal).sum(axis=1)

    def _cholesky(self, phi) -> np.ndarray:
        L = np.zeros((self.size, self.size))
        L[self.lower] = np.r_[0.0, phi]
        diagonal = np.diag_indices(self.size)
        L[diagonal] = np.exp(L[diagonal])  # L[0, 0] = exp(0) = 1
        return L

    def relative_covariance(self, phi) -> np.ndarray:
        L = self._cholesky(phi)
        return L @ L.T

    def covariance_jacobian(self, phi) -> np.ndarray:
        """∂S/∂φ_k, (K, T, T): S = LL' gives ∂S = E L' + L E' for E = ∂L/∂φ_k (one entry)."""
        L = self._cholesky(phi)
        rows, cols = self.lower[0][1:], self.lower[1][1:]
        # ∂L/∂φ_k is the unit entry (i, j), times L_ii on the diagonal (log parameter)
        weights = np.where(rows == cols, L[rows, cols], 1.0)
        EL = np.zeros((rows.size, self.size, self.size))
        EL[np.arange(rows.size), rows, :] = weights[:, None] * L[:, cols].T  # E L' has row i = w·(column j of L)
        return EL + np.swapaxes(EL, 1, 2)

    def moment_start(self, residuals: np.ndarray) -> np.ndarray:
        """φ of the pairwise-complete covariance of the residuals by time point (made positive
        definite), relative to the first time point: a start close to the optimum."""
        table = np.full((self.groups.max() + 1, self.size), np.nan)
        table[self.groups, self.time_positions] = residuals
        S = pd.DataFrame(table).cov(min_periods=2).to_numpy()
        S = np.where(np.isfinite(S), S, 0.0)
        values, vectors = np.linalg.eigh(S)
        S = (vectors * np.maximum(values, 1e-3 * values.max())) @ vectors.T
        L = np.linalg.cholesky(S / S[0, 0])
        L[np.diag_indices(self.size)] = np.log(np.diag(L))
        return L[self.lower][1:]

    def parameters(self, phi) -> dict:
        S = self.relative_covariance(phi)
        sd = np.sqrt(np.diag(S))
        names = list(map(str, self.levels))
        return {"sd ratios": dict(zip(names, sd)),
                "correlation": pd.DataFrame(S / np.outer(sd, sd), index=names, columns=names)}

    def natural(self, phi) -> dict:
        return {"S": self.relative_covariance(phi)}

    def whiten_natural(self, params: dict, M, xp=np):
        L_inv, logdets = self.inverse_factors(params["S"], xp)
        whitened = xp.matmul(L_inv[self.pattern_of_group], self.pad(M, xp))
        return whitened[self.groups, self.time_positions], (logdets * self.pattern_counts).sum()

    def group_logdets(self, params: dict, xp=np):
        return self.inverse_factors(params["S"])[1][self.pattern_of_group]

    def colour(self, params: dict, Z: np.ndarray) -> np.ndarray:
        L = np.linalg.inv(self.inverse_factors(params["S"])[0])
        return (L[self.pattern_of_group] @ self.pad(Z))[self.groups, self.time_positions]


_SHORTHAND = {"ar1": AR1, "ar1h": ARH1, "arh1": ARH1, "us": Unstructured, "un": Unstructured}


def parse(text: str):
    """mmrm-style shorthand: ``"ar1(visit | tree)"``, ``"ar1h(…)"``/``"arh1(…)"``, ``"us(…)"``,
    ``"cs(tree)"`` or ``"cs(visit | tree)"``, ``"ind"``, ``"het(treat)"`` and a structure
    with a variance per level of a factor, ``"ar1(visit | tree) + het(treat)"``."""
    import re

    if text and "+" in text:
        parts = [part.strip() for part in text.split("+")]
        if len(parts) != 2:
            raise LMMError(f"residual structure {text!r}: combine one structure with one het(factor)")
        return Combined(parse(parts[0]), parse(parts[1]))
    match = re.fullmatch(r"\s*(\w+)\s*(?:\(\s*(?:([\w.]+)\s*\|\s*)?([\w.]+)\s*\))?\s*", text or "")
    if not match:
        raise LMMError(f"residual structure {text!r} is not of the form 'ar1(visit | tree)'")
    name, time, group = match.group(1).lower(), match.group(2), match.group(3)
    if name in ("ind", "iid", "independent") and group is None:
        return Independent()
    if name in ("het", "varident") and group and time is None:
        return Heteroscedastic(by=group)
    if name == "cs" and group:
        return CompoundSymmetry(group=group)
    if name in _SHORTHAND and time and group:
        return _SHORTHAND[name](time=time, group=group)
    raise LMMError(f"residual structure {text!r} is not known; use ind, cs(group), ar1(time | group), "
                   "ar1h(time | group), us(time | group), het(factor) or one of them + het(factor)")
