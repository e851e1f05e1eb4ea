"""Predictions and pointwise log-likelihoods from posterior draws: Xβ + Zb per draw, the
log-likelihood per observation or per group (LOO), and residual noise for predictive draws.
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from bayeslmm.bayes import compiled_draws
from bayeslmm.bayes.draws import factor_Ts, posterior_parameters
from bayeslmm.bayes.setup import BayesSetup
from bayeslmm.errors import LMMError
from bayeslmm.linalg import logdensity as ld
from bayeslmm.model.spec import ModelSpec

DRAW_BLOCK = 32  # draws per block of the compiled loops: 32 × 20,000 rows of float64 is 5 MB


def linear_predictor(setup: BayesSetup, posterior: xr.Dataset, X: np.ndarray, factors_codes_raw,
                     block: int = DRAW_BLOCK) -> np.ndarray:
    """Xβ + Zb for every draw, (D, m); unseen levels (codes ≥ G) contribute nothing here."""
    beta = posterior["beta"].values.reshape(-1, setup.spec.p)
    mu = np.empty((beta.shape[0], X.shape[0]))
    for start in range(0, beta.shape[0], block):
        _linear_predictor_into(mu, slice(start, start + block), setup, posterior, X, factors_codes_raw)
    return mu


def _linear_predictor_into(mu, draws: slice, setup: BayesSetup, posterior: xr.Dataset, X, factors_codes_raw) -> None:
    """mu[draws] = Xβ + Zb for those draws (compiled loops, :mod:`bayeslmm.bayes.compiled_draws`)."""
    spec = setup.spec
    beta = posterior["beta"].values.reshape(-1, spec.p)
    compiled_draws.fixed_part(mu[draws], np.ascontiguousarray(X, dtype=float), np.ascontiguousarray(beta[draws]))
    for factor, (codes, raw) in zip(spec.factors, factors_codes_raw):
        b = posterior[f"b_{factor.name}"].values.reshape(beta.shape[0], factor.n_levels, factor.n_columns)
        compiled_draws.add_random(mu[draws], np.ascontiguousarray(codes, dtype=np.int64),
                                  np.ascontiguousarray(raw, dtype=float), np.ascontiguousarray(b[draws]))


def add_pointwise_log_likelihood(idata, setup: BayesSetup, block: int = DRAW_BLOCK) -> None:
    """log N(y_i | x_iβ + z_i b, σ²/w_i) per observation and draw, ArviZ's ``log_likelihood`` group
    (w_i = 1 without prior weights).  Without a residual structure, ``block`` draws at a time:
    each block's Xβ + Zb is turned into its log-densities while in cache, in the output array."""
    _check_rows_in_memory(setup.spec)
    posterior = idata["posterior"].to_dataset()
    spec = setup.spec
    factors = [(f.codes, f.raw) for f in spec.factors]
    sigma = posterior["sigma"].values.reshape(-1)
    if setup.residual is not None:
        mu = linear_predictor(setup, posterior, spec.X, factors)
        idata["log_likelihood"] = xr.DataTree(_residual_group_log_likelihood(setup, posterior, mu, sigma[:, None]))
        return
    loglik = np.empty((sigma.size, spec.n))
    row_scale = np.broadcast_to(np.asarray(spec.noise_scale, dtype=float), (spec.n,))
    y = np.ascontiguousarray(spec.y, dtype=float)
    for start in range(0, sigma.size, block):
        draws = slice(start, start + block)
        _linear_predictor_into(loglik, draws, setup, posterior, spec.X, factors)
        compiled_draws.gaussian_log_likelihood(loglik[draws], y, sigma[draws], np.ascontiguousarray(row_scale))
    shape = (posterior.sizes["chain"], posterior.sizes["draw"], spec.n)
    idata["log_likelihood"] = xr.DataTree(xr.Dataset(
        {"y": (("chain", "draw", "obs"), loglik.reshape(shape))},
        coords={"chain": posterior["chain"], "draw": posterior["draw"], "obs": np.arange(spec.n)}))


def _residual_group_log_likelihood(setup: BayesSetup, posterior, mu, sigma) -> xr.Dataset:
    """log N(y_i | μ_i, σ²R_i) of each residual group's block: with correlated errors the rows
    of a group are not conditionally independent, so the group is LOO's unit."""
    bound, spec = setup.residual, setup.spec
    n_groups = bound.n_groups
    sizes = np.bincount(bound.groups, minlength=n_groups)
    out = np.empty((sigma.size, n_groups))
    for d in range(sigma.size):
        params = bound.posterior_natural(posterior, d)
        white, _ = bound.whiten_natural(params, (spec.y - mu[d])[:, None])
        squares = np.bincount(bound.groups, white[:, 0] ** 2, minlength=n_groups)
        out[d] = -0.5 * (squares / sigma[d, 0] ** 2 + sizes * (ld.LOG_2PI + 2 * np.log(sigma[d, 0]))
                         + bound.group_logdets(params))
    dim = bound.group_name or "obs"
    shape = (posterior.sizes["chain"], posterior.sizes["draw"], n_groups)
    return xr.Dataset({"y": (("chain", "draw", dim), out.reshape(shape))},
                      coords={"chain": posterior["chain"], "draw": posterior["draw"],
                              dim: [str(level) for level in bound.group_levels]})


def group_log_likelihood(idata, setup: BayesSetup) -> xr.Dataset:
    """Each group's marginal log-likelihood (b integrated, β and θ at the draw): for leave-one-group-out."""
    spec, stats = setup.spec, setup.stats
    _check_rows_in_memory(spec)
    if setup.residual is not None:
        raise LMMError("with a residual structure the log-likelihood is already one term per "
                       f"{setup.residual.group_name or 'row'} (its rows are correlated): use loo() or loo(by='obs')")
    if len(spec.factors) != 1:
        raise LMMError("leave-one-group-out needs exactly one grouping factor; this model has "
                       f"{len(spec.factors)}")
    posterior = idata["posterior"].to_dataset()
    sigma, chols = posterior_parameters(posterior, setup)
    beta = posterior["beta"].values.reshape(sigma.size, -1)
    factor = spec.factors[0]
    XYtXY_g = _per_group_cross_products(spec.weighted())
    n_g = np.bincount(factor.codes, minlength=factor.n_levels)
    log_weights_g = 0.0 if spec.weights is None else np.bincount(factor.codes, np.log(spec.weights),
                                                                 minlength=factor.n_levels)
    out = np.empty((sigma.size, factor.n_levels))
    for d in range(sigma.size):
        fact = ld.factorize_T(factor_Ts(setup, chols, sigma, d), stats)
        out[d] = -0.5 * ld.group_deviances(fact, XYtXY_g, n_g, sigma[d] ** 2, beta[d], log_weights_g)
    shape = (posterior.sizes["chain"], posterior.sizes["draw"], factor.n_levels)
    return xr.Dataset({"y": (("chain", "draw", factor.name), out.reshape(shape))},
                      coords={"chain": posterior["chain"], "draw": posterior["draw"],
                              factor.name: list(factor.levels)})


def _check_rows_in_memory(spec: ModelSpec) -> None:
    if not spec.rows_in_memory:
        raise LMMError("pointwise and per-group log-likelihoods of a posterior need the rows, which a model of a "
                       "Dask DataFrame does not hold; fit an in-memory model (ddf.compute()) for LOO")


def _per_group_cross_products(spec: ModelSpec) -> np.ndarray:
    """[X y]'[X y] within each level of the single factor, (G, p+1, p+1)."""
    factor = spec.factors[0]
    XY = np.column_stack([spec.X, spec.y])
    outer = (XY[:, :, None] * XY[:, None, :]).reshape(spec.n, -1)
    sums = np.zeros((factor.n_levels, outer.shape[1]))
    np.add.at(sums, factor.codes, outer)
    return sums.reshape(factor.n_levels, XY.shape[1], XY.shape[1])


def residual_noise(setup: BayesSetup, draws: xr.Dataset, z: np.ndarray) -> np.ndarray:
    """ε = σ_d z_d (σ_d z_d/√w with prior weights), or σ_d R_d^{1/2} z_d per residual group with a
    structure, for every draw d of ``draws`` (posterior or prior); z is (D, n) standard normal."""
    sigma = draws["sigma"].values.reshape(-1, 1)
    bound = setup.residual
    if bound is None:
        return sigma * setup.spec.noise_scale * z
    return sigma * np.stack([bound.colour(bound.posterior_natural(draws, d), z[d][:, None])[:, 0]
                             for d in range(z.shape[0])])
