"""Heteroscedastic errors: one residual variance per level of a factor (nlme's varIdent)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayeslmm.model.residual.base import BoundStructure, ResidualParameters, Structure
from bayeslmm.model.residual.parts import SdRatios


@dataclass(frozen=True)
class Heteroscedastic(Structure):
    """One residual variance per level of ``by`` (nlme's varIdent), relative to the first level."""

    by: str

    @property
    def columns(self) -> tuple:
        return (self.by,)

    def bind(self, data: pd.DataFrame) -> BoundHeteroscedastic:
        codes, levels = pd.factorize(data[self.by], sort=True)
        return BoundHeteroscedastic(codes, np.asarray(levels), self.by, np.asarray(data.index))


class BoundHeteroscedastic(BoundStructure):
    """Each row divided by its level's sd ratio exp(φ); every row is its own group."""

    def __init__(self, codes: np.ndarray, levels: np.ndarray, by: str, row_labels):
        self.ratios = SdRatios(by, levels)
        super().__init__(np.arange(codes.size), self.ratios.names, np.zeros(self.ratios.size), None, row_labels)
        self.codes, self.levels, self.ratio_name = codes, levels, by

    def natural(self, phi) -> dict:
        return {"log_sd": phi}

    def whiten_natural(self, params: dict, M, xp=np):
        log_sd = xp.concatenate([xp.zeros(1), params["log_sd"]])[self.codes]
        return M / xp.exp(log_sd)[:, None], 2.0 * log_sd.sum()

    def group_logdets(self, params: dict) -> np.ndarray:
        return 2.0 * np.r_[0.0, params["log_sd"]][self.codes]

    def colour(self, params: dict, Z: np.ndarray) -> np.ndarray:
        return Z * np.exp(np.r_[0.0, params["log_sd"]][self.codes])[:, None]

    def coordinates(self) -> list:
        return self.ratios.coordinates()

    def parameters(self, phi) -> ResidualParameters:
        ratios = self.ratios.ratios(phi)
        return ResidualParameters({"sd ratios": ratios}, (self.ratios.line(ratios),))

    def coords(self) -> dict:
        return self.ratios.coords()

    def pymc_variables(self, prior) -> dict:
        return {"log_sd": self.ratios.pymc_variables(prior)[0]}

    def initial_values(self, phi) -> dict:
        return self.ratios.initial_values(phi)

    def posterior_natural(self, posterior, d: int) -> dict:
        return {"log_sd": np.log(self.ratios.of_draw(posterior, d)[1:])}

    def reported_variables(self) -> tuple:
        return (self.ratios.variable,)

    def posterior_draws(self, posterior) -> dict:
        return self.ratios.posterior_draws(posterior)
