"""Unstructured: a free covariance over the time points within each group."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayeslmm.errors import LMMError
from bayeslmm.model.residual.ar1 import OverTime
from bayeslmm.model.residual.base import ResidualParameters, draw_of
from bayeslmm.model.residual.parts import SdRatios
from bayeslmm.model.residual.rows import ordered_times
from bayeslmm.model.residual.time_blocks import TimeCovariance


@dataclass(frozen=True)
class Unstructured(OverTime):
    """A free covariance over the ``time`` points within each ``group`` (nlme's corSymm + varIdent,
    mmrm's ``us()``); a group with missing visits uses the sub-matrix of the visits it has."""

    @property
    def variance_by(self) -> str:
        return self.time

    def bind(self, data: pd.DataFrame) -> BoundUnstructured:
        return BoundUnstructured(*ordered_times(data, self.time, self.group), group_name=self.group,
                                 group_levels=self.levels_of_group(data), ratio_name=self.time)


class BoundUnstructured(TimeCovariance):
    """S = L L' over T time points with L[0, 0] = 1 (σ is the sd at the first time point); φ
    holds L's lower triangle after L[0, 0], log on the diagonal.

    In the PyMC model S = diag(r) C diag(r): sd ratios r (as ARH(1)'s) and C ~ LKJ(η).
    """

    has_covariance_jacobian = True

    def __init__(self, groups, positions, gaps, levels, group_name: str, group_levels, ratio_name: str):
        self.lower = np.tril_indices(len(levels))
        names = tuple(f"L[{i},{j}]" for i, j in zip(*self.lower))[1:]
        super().__init__(groups, positions, levels, names, group_name, group_levels, ratio_name)
        self.ratios = SdRatios(ratio_name, levels)
        counts = np.bincount(positions, minlength=self.size)
        if np.any(counts < 2) or self.n_groups <= self.size:
            raise LMMError(f"an unstructured covariance over {self.size} time points needs every time point "
                           f"in at least 2 groups and more groups than time points; the data have "
                           f"{self.n_groups} groups and {counts.min()} at the rarest time point")

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
        table = np.full((self.n_groups, self.size), np.nan)
        table[self.groups, self.time_positions] = residuals
        S = pd.DataFrame(table).cov(min_periods=2).to_numpy()
        S = np.where(np.isfinite(S), S, 0.0)
        values, vectors = np.linalg.eigh(S)
        S = (vectors * np.maximum(values, 1e-3 * values.max())) @ vectors.T
        L = np.linalg.cholesky(S / S[0, 0])
        L[np.diag_indices(self.size)] = np.log(np.diag(L))
        return L[self.lower][1:]

    def parameters(self, phi) -> ResidualParameters:
        S = self.relative_covariance(phi)
        sd = np.sqrt(np.diag(S))
        names = self.ratios.labels()
        correlation = pd.DataFrame(S / np.outer(sd, sd), index=names, columns=names)
        ratios = dict(zip(names, sd))
        return ResidualParameters({"sd ratios": ratios, "correlation": correlation},
                                  (self.ratios.line(ratios), "Residual correlation matrix:",
                                   correlation.round(3).to_string()))

    def coords(self) -> dict:
        return self.ratios.coords() | {f"{self.ratio_name}_": self.ratios.labels()}

    def pymc_variables(self, prior) -> dict:
        import pymc as pm
        import pytensor.tensor as pt

        ratios = self.ratios.pymc_variables(prior)[1]
        chol = pm.LKJCorr("residual_corr_chol", n=self.size, eta=prior.eta)  # C = L L' ~ LKJ(η)
        pm.Deterministic("residual_corr", pt.dot(chol, chol.T), dims=(self.ratios.dim, f"{self.ratio_name}_"))
        scaled = ratios[:, None] * chol
        return {"S": pt.dot(scaled, scaled.T)}

    def initial_values(self, phi) -> dict:
        return {}  # PyMC's own start (the LKJ factor has no simple map from φ̂)

    def posterior_natural(self, posterior, d: int) -> dict:
        ratios = self.ratios.of_draw(posterior, d)
        return {"S": ratios[:, None] * draw_of(posterior, "residual_corr", d) * ratios[None, :]}

    def reported_variables(self) -> tuple:
        return (self.ratios.variable, "residual_corr")

    def posterior_draws(self, posterior) -> dict:
        corr = posterior["residual_corr"]
        rows, cols = corr.dims[-2:]
        levels = corr[rows].values
        out = self.ratios.posterior_draws(posterior)
        for j in range(len(levels)):
            for i in range(j + 1, len(levels)):
                out[f"corr[{levels[i]},{levels[j]}]"] = corr.isel({rows: i, cols: j})
        return out
