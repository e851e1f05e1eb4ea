"""A residual structure's variables in the PyMC model and in the posterior.
"""
from __future__ import annotations

import numpy as np
import xarray as xr


def ratio_dim(bound) -> str:
    return f"{bound.ratio_name}_ratio"


def residual_coords(bound) -> dict[str, list]:
    """Dims of the residual structure's variables: the levels its sd ratios follow."""
    if bound is None:
        return {}
    if hasattr(bound, "structure"):
        return residual_coords(bound.structure) | residual_coords(bound.variance)
    out = {}
    if _has_ratios(bound):
        out[ratio_dim(bound)] = [str(level) for level in bound.levels]
    if hasattr(bound, "masks"):  # unstructured: the correlation matrix over the time points
        out[f"{bound.ratio_name}_"] = [str(level) for level in bound.levels]
    return out


def _has_ratios(bound) -> bool:
    return getattr(bound, "heteroscedastic", True) and bound.ratio_name is not None


def residual_rvs(bound, prior):
    """PyMC variables for a residual structure, returned as its natural parameters
    (what :meth:`bayeslmm.cov.Bound.whiten_natural` takes): ρ, log sd ratios, S."""
    import pymc as pm
    import pytensor.tensor as pt

    if hasattr(bound, "structure"):
        return {"structure": residual_rvs(bound.structure, prior), "variance": residual_rvs(bound.variance, prior)}
    params = {}
    if "rho" in bound.names:
        low = getattr(bound, "lowest_rho", -1.0)
        unit = pm.Beta("rho_unit", alpha=prior.rho.a, beta=prior.rho.b)
        params["rho"] = pm.Deterministic("rho", low + (1.0 - low) * unit)
    if _has_ratios(bound):
        dim = ratio_dim(bound)
        log_sd = pm.Normal(f"log_sd_ratio_{bound.ratio_name}", prior.log_sd_ratio.mu, prior.log_sd_ratio.sigma,
                           shape=len(bound.levels) - 1)
        params["log_sd"] = log_sd
        ratios = pt.exp(pt.concatenate([pt.zeros(1), log_sd]))
        pm.Deterministic(f"sd_ratio_{bound.ratio_name}", ratios, dims=dim)
    if hasattr(bound, "masks"):
        chol = pm.LKJCorr("residual_corr_chol", n=bound.size, eta=prior.eta)  # R = L L' ~ LKJ(η)
        pm.Deterministic("residual_corr", pt.dot(chol, chol.T), dims=(ratio_dim(bound), f"{bound.ratio_name}_"))
        scaled = ratios[:, None] * chol
        params = {"S": pt.dot(scaled, scaled.T)}
    return params


def residual_natural(bound, posterior: xr.Dataset, d: int) -> dict:
    """The structure's natural parameters at draw d (chain and draw flattened), in NumPy."""
    if hasattr(bound, "structure"):
        return {"structure": residual_natural(bound.structure, posterior, d),
                "variance": residual_natural(bound.variance, posterior, d)}
    flat = lambda name: posterior[name].values.reshape((-1,) + posterior[name].shape[2:])[d]  # noqa: E731
    params = {}
    if "rho" in bound.names:
        params["rho"] = float(flat("rho"))
    if _has_ratios(bound):
        ratios = flat(f"sd_ratio_{bound.ratio_name}")
        params["log_sd"] = np.log(ratios[1:])
    if hasattr(bound, "masks"):
        params = {"S": ratios[:, None] * flat("residual_corr") * ratios[None, :]}
    return params


def residual_start(bound, phi) -> dict:
    """Initial values of the structure's free variables at its REML estimate φ̂."""
    if hasattr(bound, "structure"):
        split = len(bound.structure.start)
        return residual_start(bound.structure, phi[:split]) | residual_start(bound.variance, phi[split:])
    natural, out = bound.natural(phi), {}
    if "rho" in bound.names:
        low = getattr(bound, "lowest_rho", -1.0)
        out["rho_unit"] = float(np.clip((natural["rho"] - low) / (1 - low), 0.02, 0.98))
    if _has_ratios(bound) and not hasattr(bound, "masks"):
        out[f"log_sd_ratio_{bound.ratio_name}"] = np.asarray(natural["log_sd"], dtype=float)
    return out
