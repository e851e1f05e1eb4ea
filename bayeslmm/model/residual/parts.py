"""Parameters several structures share, with their PyMC variables, start values, posterior
draws and report: a correlation ρ over (low, 1) (compound symmetry, AR(1)) and sd ratios by
the levels of a column, relative to the first level (ARH(1), heteroscedastic, unstructured)."""
from __future__ import annotations

import numpy as np

from bayeslmm.model.residual.base import draw_of


class Correlation:
    """ρ in (low, 1); in the PyMC model ρ = low + (1 − low)·u with u ~ Beta(a, b), ``rho_unit``."""

    variables = ("rho",)

    def __init__(self, low: float):
        self.low = low

    def pymc_variable(self, prior):
        import pymc as pm

        unit = pm.Beta("rho_unit", alpha=prior.rho.a, beta=prior.rho.b)
        return pm.Deterministic("rho", self.low + (1.0 - self.low) * unit)

    def initial_values(self, rho) -> dict:
        return {"rho_unit": float(np.clip((rho - self.low) / (1 - self.low), 0.02, 0.98))}

    @staticmethod
    def of_draw(posterior, d: int) -> float:
        return float(draw_of(posterior, "rho", d))

    @staticmethod
    def posterior_draws(posterior) -> dict:
        return {"rho": posterior["rho"]}

    @staticmethod
    def line(rho: float) -> str:
        return f"Residual correlation: rho = {rho:.4f}"


class SdRatios:
    """One sd per level of ``column`` relative to the first (log sd ratios, the first fixed at 0).

    PyMC: ``log_sd_ratio_<column>`` ~ Normal, one per level after the first, and the
    deterministic ``sd_ratio_<column>`` over the dim ``<column>_ratio`` (all levels)."""

    def __init__(self, column: str, levels):
        self.column, self.levels = column, np.asarray(levels)
        self.dim = f"{column}_ratio"
        self.free_name, self.variable = f"log_sd_ratio_{column}", f"sd_ratio_{column}"
        self.names = tuple(f"variance ratio {lv}" for lv in self.levels[1:])
        self.size = len(self.names)

    def labels(self) -> list[str]:
        return [str(level) for level in self.levels]

    def coords(self) -> dict:
        return {self.dim: self.labels()}

    def coordinates(self) -> list:
        return [(f"sd_ratio_{level}", np.exp) for level in self.levels[1:]]

    def ratios(self, log_sd) -> dict:
        """{level: sd ratio}, the first level's 1."""
        return dict(zip(self.labels(), np.r_[1.0, np.exp(log_sd)]))

    def pymc_variables(self, prior):
        """(log sd ratios after the first level, sd ratios of every level) as tensors."""
        import pymc as pm
        import pytensor.tensor as pt

        log_sd = pm.Normal(self.free_name, prior.log_sd_ratio.mu, prior.log_sd_ratio.sigma, shape=self.size)
        ratios = pt.exp(pt.concatenate([pt.zeros(1), log_sd]))
        pm.Deterministic(self.variable, ratios, dims=self.dim)
        return log_sd, ratios

    def initial_values(self, log_sd) -> dict:
        return {self.free_name: np.asarray(log_sd, dtype=float)}

    def of_draw(self, posterior, d: int) -> np.ndarray:
        """The sd ratios of every level at draw d."""
        return draw_of(posterior, self.variable, d)

    def posterior_draws(self, posterior) -> dict:
        """The draws of each level's ratio but the first (1 by definition)."""
        ratios = posterior[self.variable]
        dim = ratios.dims[-1]
        return {f"{self.variable}[{level}]": ratios.sel({dim: level}) for level in ratios[dim].values[1:]}

    @staticmethod
    def line(ratios: dict, by: str | None = None) -> str:
        """The report line of ``ratios`` ({level: sd ratio}); ``by``: the factor, when on top of a correlation."""
        ratios = "  ".join(f"{k}: {v:.4f}" for k, v in ratios.items())
        return (f"Residual sd by {by}, relative to the first level: {ratios}" if by else
                f"Residual sd relative to the first level: {ratios}")
