"""Compound symmetry: σ² on the diagonal and a common covariance σ²ρ within each group."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayeslmm.arrays import group_sums
from bayeslmm.model.residual.base import BoundStructure, ResidualParameters
from bayeslmm.model.residual.combined import Combinable
from bayeslmm.model.residual.parts import Correlation
from bayeslmm.model.residual.rows import codes


@dataclass(frozen=True)
class CompoundSymmetry(Combinable):
    """σ² on the diagonal and a common covariance σ²ρ within each ``group``."""

    group: str

    @property
    def columns(self) -> tuple:
        return (self.group,)

    def bind(self, data: pd.DataFrame) -> BoundCS:
        return BoundCS(codes(data, self.group), self.group, np.sort(data[self.group].unique()))


class BoundCS(BoundStructure):
    """R = (1−ρ)(I − P) + (1 − ρ + mρ)P per group of size m, P = J/m; ρ in (−1/(m_max − 1), 1)
    through a logistic map of φ, so that every R stays positive definite."""

    def __init__(self, groups: np.ndarray, group_name: str, group_levels):
        super().__init__(groups, ("rho",), np.zeros(1), group_name, group_levels)
        self.sizes = np.bincount(groups)
        self.lowest_rho = -1.0 / (self.sizes.max() - 1) if self.sizes.max() > 1 else -1.0
        self.rho = Correlation(self.lowest_rho)

    def natural(self, phi) -> dict:
        share = np.clip(1 / (1 + np.exp(-phi[0])), 1e-12, 1 - 1e-12)  # R stays positive definite
        return {"rho": self.lowest_rho + (1 - self.lowest_rho) * share}  # (lowest, 1)

    def whiten_natural(self, params: dict, M, xp=np):
        """R^{-1/2} M per group: the group mean and the deviations from it scaled apart."""
        rho = params["rho"]
        m = self.sizes[self.groups][:, None]
        means = group_sums(M, self.groups, self.sizes.size, xp)[self.groups] / m
        whitened = (M - means) / xp.sqrt(1 - rho) + means / xp.sqrt(1 - rho + m * rho)
        return whitened, self._logdets(rho, xp).sum()

    def _logdets(self, rho, xp=np):
        return (self.sizes - 1) * xp.log(1 - rho) + xp.log(1 - rho + self.sizes * rho)

    def group_logdets(self, params: dict) -> np.ndarray:
        return self._logdets(params["rho"])

    def colour(self, params: dict, Z: np.ndarray) -> np.ndarray:
        rho = params["rho"]
        m = self.sizes[self.groups][:, None]
        means = group_sums(Z, self.groups, self.sizes.size)[self.groups] / m
        return (Z - means) * np.sqrt(1 - rho) + means * np.sqrt(1 - rho + m * rho)

    def coordinates(self) -> list:
        return [("rho", lambda x: float(self.natural(np.array([x]))["rho"]))]

    def parameters(self, phi) -> ResidualParameters:
        rho = float(self.natural(phi)["rho"])
        return ResidualParameters({"rho": rho}, (self.rho.line(rho),))

    def coords(self) -> dict:
        return {}

    def pymc_variables(self, prior) -> dict:
        return {"rho": self.rho.pymc_variable(prior)}

    def initial_values(self, phi) -> dict:
        return self.rho.initial_values(self.natural(phi)["rho"])

    def posterior_natural(self, posterior, d: int) -> dict:
        return {"rho": self.rho.of_draw(posterior, d)}

    def reported_variables(self) -> tuple:
        return self.rho.variables

    def posterior_draws(self, posterior) -> dict:
        return self.rho.posterior_draws(posterior)
