"""Toeplitz: one correlation per lag between the time points of a group (mmrm's ``toep()``)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayeslmm.errors import LMMError
from bayeslmm.model.residual.ar1 import OverTime
from bayeslmm.model.residual.base import ResidualParameters, draw_of
from bayeslmm.model.residual.rows import ordered_times
from bayeslmm.model.residual.time_blocks import TimeCovariance


@dataclass(frozen=True)
class Toeplitz(OverTime):
    """Correlation ρ_k between two visits k time points apart, within each ``group``; a common
    variance.  With T time points, T − 1 correlations (AR(1) is the case ρ_k = ρ^k)."""

    def bind(self, data: pd.DataFrame) -> BoundToeplitz:
        return BoundToeplitz(*ordered_times(data, self.time, self.group), group_name=self.group,
                             group_levels=self.levels_of_group(data), ratio_name=self.time)


def autocorrelations(partial, size: int, xp=np):
    """ρ_1 … ρ_size from the partial autocorrelations π_1 … π_size (Durbin–Levinson).

    Every π in (−1, 1)^size gives a positive definite Toeplitz matrix and back, so φ_k with
    π_k = tanh(φ_k) moves freely.  With a_{m−1} the order m − 1 prediction coefficients:
    ρ_m = Σ_j a_{m−1,j} ρ_{m−j} + π_m (1 − Σ_j a_{m−1,j} ρ_j), a_{m,j} = a_{m−1,j} − π_m a_{m−1,m−j}.
    Written on scalars so that NumPy and PyTensor run it alike.
    """
    rho, coefficients = [], []
    for m in range(size):
        p = partial[m]
        predicted = sum(a * r for a, r in zip(coefficients, reversed(rho)))
        explained = sum(a * r for a, r in zip(coefficients, rho))
        rho.append(predicted + p * (1 - explained))
        coefficients = [a - p * b for a, b in zip(coefficients, reversed(coefficients))] + [p]
    return xp.stack(rho)


class BoundToeplitz(TimeCovariance):
    """S[j, k] = ρ_|j−k| over the time points' positions, ρ_0 = 1; φ_k = atanh(π_k), the
    partial autocorrelations.  PyMC: π_k = 2u_k − 1 with u_k ~ Beta(a, b) (``rho``'s prior)."""

    def __init__(self, groups, positions, gaps, levels, group_name: str, group_levels, ratio_name: str):
        if len(levels) < 2:
            raise LMMError(f"a Toeplitz structure needs at least 2 time points in {ratio_name!r}")
        lags = range(1, len(levels))
        super().__init__(groups, positions, levels, tuple(f"partial correlation lag {k}" for k in lags),
                         group_name, group_levels, ratio_name)
        self.lag_dim = f"{ratio_name}_lag"
        self.lags = np.abs(np.arange(self.size)[:, None] - np.arange(self.size)[None, :])

    def _matrix(self, rho, xp=np):
        """The Toeplitz matrix of ρ_1 … ρ_{T−1}."""
        return xp.concatenate([xp.ones(1), rho])[self.lags]

    def correlations(self, phi) -> np.ndarray:
        return autocorrelations(np.tanh(phi), self.size - 1)

    def relative_covariance(self, phi) -> np.ndarray:
        return self._matrix(self.correlations(phi))

    def coordinates(self) -> list:
        return [("rho_lag_1", np.tanh)] + [None] * (self.size - 2)  # π_1 = ρ_1; later π_k are not ρ_k

    def parameters(self, phi) -> ResidualParameters:
        by_lag = {lag: float(rho) for lag, rho in zip(range(1, self.size), self.correlations(phi))}
        text = "  ".join(f"{lag}: {rho:.4f}" for lag, rho in by_lag.items())
        return ResidualParameters({"correlation by lag": by_lag}, (f"Residual correlation by lag: {text}",))

    def coords(self) -> dict:
        return {self.lag_dim: list(range(1, self.size))}

    def pymc_variables(self, prior) -> dict:
        import pymc as pm
        import pytensor.tensor as pt

        unit = pm.Beta("pacf_unit", alpha=prior.rho.a, beta=prior.rho.b, shape=self.size - 1)
        rho = pm.Deterministic("residual_acf", autocorrelations(2 * unit - 1, self.size - 1, pt), dims=self.lag_dim)
        return {"S": self._matrix(rho, pt)}

    def initial_values(self, phi) -> dict:
        return {"pacf_unit": np.clip((np.tanh(phi) + 1) / 2, 0.02, 0.98)}

    def posterior_natural(self, posterior, d: int) -> dict:
        return {"S": self._matrix(draw_of(posterior, "residual_acf", d))}

    def reported_variables(self) -> tuple:
        return ("residual_acf",)

    def posterior_draws(self, posterior) -> dict:
        acf = posterior["residual_acf"]
        return {f"rho_lag[{lag}]": acf.sel({self.lag_dim: lag}) for lag in acf[self.lag_dim].values}
