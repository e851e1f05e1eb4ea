"""AR(1) over the time points within each group, and ARH(1) (one variance per time point)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayeslmm.arrays import group_sums
from bayeslmm.model.residual.base import BoundStructure, ResidualParameters
from bayeslmm.model.residual.combined import Combinable
from bayeslmm.model.residual.parts import Correlation, SdRatios
from bayeslmm.model.residual.rows import ordered_times


@dataclass(frozen=True)
class OverTime(Combinable):
    """A structure over the ``time`` points within each level of ``group``."""

    time: str
    group: str

    @property
    def columns(self) -> tuple:
        return (self.time, self.group)

    def levels_of_group(self, data: pd.DataFrame) -> np.ndarray:
        """The sorted levels of ``group``: the labels of the residual groups."""
        return np.sort(data[self.group].unique())


@dataclass(frozen=True)
class AR1(OverTime):
    """Correlation ρ^|t_j − t_k| over an integer or ordered ``time`` within each ``group``."""

    def bind(self, data: pd.DataFrame) -> BoundAR1:
        return BoundAR1(*ordered_times(data, self.time, self.group), heteroscedastic=False,
                        group_name=self.group, group_levels=self.levels_of_group(data), ratio_name=self.time)


@dataclass(frozen=True)
class ARH1(AR1):
    """AR(1) correlations with one variance per time point (varIdent by time)."""

    @property
    def variance_by(self) -> str:
        return self.time

    def bind(self, data: pd.DataFrame) -> BoundAR1:
        return BoundAR1(*ordered_times(data, self.time, self.group), heteroscedastic=True,
                        group_name=self.group, group_levels=self.levels_of_group(data), ratio_name=self.time)


class BoundAR1(BoundStructure):
    """AR(1) over time positions with gaps (Markov): e*_j = (e_j − ρ^d e_{j−1}) / √(1 − ρ^{2d})
    for a gap d to the group's previous row; ρ = tanh(φ_0).  ARH(1) first divides each row by
    its time point's sd ratio exp(φ_{1+t})."""

    def __init__(self, groups, positions, gaps, levels, heteroscedastic: bool, group_name: str,
                 group_levels, ratio_name: str):
        self.ratios = SdRatios(ratio_name, levels) if heteroscedastic else None
        extra = self.ratios.names if heteroscedastic else ()
        super().__init__(groups, ("rho",) + extra, np.zeros(1 + len(extra)), group_name, group_levels)
        self.heteroscedastic, self.levels, self.ratio_name = heteroscedastic, levels, ratio_name
        self.rho = Correlation(-1.0)
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

    def natural(self, phi) -> dict:
        return {"rho": np.tanh(phi[0]), "log_sd": phi[1:] if self.heteroscedastic else None}

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

    def group_logdets(self, params: dict) -> np.ndarray:
        lag, scale = self._lags(params)
        per_row = np.log(scale**2) + 2.0 * self._row_log_sd(params)
        return group_sums(per_row, self.sorted_groups, self.n_groups)

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

    def coordinates(self) -> list:
        return [("rho", np.tanh)] + (self.ratios.coordinates() if self.heteroscedastic else [])

    def parameters(self, phi) -> ResidualParameters:
        rho = float(np.tanh(phi[0]))
        values, lines = {"rho": rho}, [self.rho.line(rho)]
        if self.heteroscedastic:
            values["sd ratios"] = self.ratios.ratios(phi[1:])
            lines.append(self.ratios.line(values["sd ratios"]))
        return ResidualParameters(values, lines)

    def coords(self) -> dict:
        return self.ratios.coords() if self.heteroscedastic else {}

    def pymc_variables(self, prior) -> dict:
        params = {"rho": self.rho.pymc_variable(prior)}
        if self.heteroscedastic:
            params["log_sd"] = self.ratios.pymc_variables(prior)[0]
        return params

    def initial_values(self, phi) -> dict:
        natural = self.natural(phi)
        out = self.rho.initial_values(natural["rho"])
        return out | (self.ratios.initial_values(natural["log_sd"]) if self.heteroscedastic else {})

    def posterior_natural(self, posterior, d: int) -> dict:
        params = {"rho": self.rho.of_draw(posterior, d)}
        if self.heteroscedastic:
            params["log_sd"] = np.log(self.ratios.of_draw(posterior, d)[1:])
        return params

    def reported_variables(self) -> tuple:
        return self.rho.variables + ((self.ratios.variable,) if self.heteroscedastic else ())

    def posterior_draws(self, posterior) -> dict:
        out = self.rho.posterior_draws(posterior)
        return out | (self.ratios.posterior_draws(posterior) if self.heteroscedastic else {})
