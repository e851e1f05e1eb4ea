"""A correlation structure with one residual variance per level of a factor on top."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayeslmm.arrays import group_sums
from bayeslmm.errors import LMMError
from bayeslmm.model.residual.base import BoundStructure, ResidualParameters, Structure
from bayeslmm.model.residual.heteroscedastic import BoundHeteroscedastic, Heteroscedastic


class Combinable(Structure):
    """A correlation structure that takes a variance per level of a factor on top:
    ``structure & cov.Heteroscedastic(by=...)``."""

    def __and__(self, other) -> Combined:
        return Combined(self, other)


@dataclass(frozen=True)
class Combined(Structure):
    """A correlation structure with one residual variance per level of a factor on top:
    Σ_i = σ² D_i R_i D_i (nlme's ``correlation=`` with ``weights=varIdent(...)``).

    Build it with ``cov.AR1(...) & cov.Heteroscedastic(by="treat")`` or the shorthand
    ``"ar1(visit | tree) + het(treat)"``.
    """

    structure: Structure
    variance: Heteroscedastic

    def __post_init__(self):
        if not isinstance(self.variance, Heteroscedastic):
            raise LMMError("a structure combines with Heteroscedastic(by=...) only, e.g. "
                           "cov.AR1(time='visit', group='tree') & cov.Heteroscedastic(by='treat')")
        if not isinstance(self.structure, Combinable):
            raise LMMError("combine Heteroscedastic with a correlation structure (e.g. CompoundSymmetry, AR1, Unstructured); "
                           "on its own it needs no combining")
        if self.variance.by == self.structure.variance_by:
            raise LMMError(f"{type(self.structure).__name__} already has one variance per {self.variance.by!r}; "
                           "a Heteroscedastic by the same column would not be identifiable")

    @property
    def columns(self) -> tuple:
        return tuple(dict.fromkeys(self.structure.columns + self.variance.columns))

    def bind(self, data: pd.DataFrame) -> BoundCombined:
        return BoundCombined(self.structure.bind(data), self.variance.bind(data))


class BoundCombined(BoundStructure):
    """W = W_R D⁻¹: scale each row by its sd ratio, then whiten the correlation; φ is the
    structure's φ followed by the variance's."""

    def __init__(self, structure: BoundStructure, variance: BoundHeteroscedastic):
        super().__init__(structure.groups, structure.names + variance.names, np.r_[structure.start, variance.start],
                         structure.group_name, structure.group_levels)
        self.structure, self.variance, self.by = structure, variance, variance.ratio_name
        self.split = len(structure.start)

    def _parts(self, phi) -> tuple:
        return phi[: self.split], phi[self.split:]

    def natural(self, phi) -> dict:
        own, variance = self._parts(phi)
        return {"structure": self.structure.natural(own), "variance": self.variance.natural(variance)}

    def whiten_natural(self, params: dict, M, xp=np):
        scaled, logdet_d = self.variance.whiten_natural(params["variance"], M, xp)
        whitened, logdet_r = self.structure.whiten_natural(params["structure"], scaled, xp)
        return whitened, logdet_d + logdet_r

    def group_logdets(self, params: dict) -> np.ndarray:
        per_row = self.variance.group_logdets(params["variance"])
        return self.structure.group_logdets(params["structure"]) + group_sums(per_row, self.groups, self.n_groups)

    def colour(self, params: dict, Z: np.ndarray) -> np.ndarray:
        return self.variance.colour(params["variance"], self.structure.colour(params["structure"], Z))

    def coordinates(self) -> list:
        return self.structure.coordinates() + self.variance.coordinates()

    def parameters(self, phi) -> ResidualParameters:
        own, variance = self._parts(phi)
        out = self.structure.parameters(own)
        ratios = self.variance.ratios.ratios(variance)
        return ResidualParameters(out | {f"sd ratios by {self.by}": ratios},
                                  out.lines + (self.variance.ratios.line(ratios, by=self.by),))

    def coords(self) -> dict:
        return self.structure.coords() | self.variance.coords()

    def pymc_variables(self, prior) -> dict:
        return {"structure": self.structure.pymc_variables(prior), "variance": self.variance.pymc_variables(prior)}

    def initial_values(self, phi) -> dict:
        own, variance = self._parts(phi)
        return self.structure.initial_values(own) | self.variance.initial_values(variance)

    def posterior_natural(self, posterior, d: int) -> dict:
        return {"structure": self.structure.posterior_natural(posterior, d),
                "variance": self.variance.posterior_natural(posterior, d)}

    def reported_variables(self) -> tuple:
        return self.structure.reported_variables() + self.variance.reported_variables()

    def posterior_draws(self, posterior) -> dict:
        return self.structure.posterior_draws(posterior) | self.variance.posterior_draws(posterior)
