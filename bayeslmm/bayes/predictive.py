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
from bayeslmm.linalg.crossprod import group_cross_products
from bayeslmm.model.spec import ModelSpec


def linear_predictor(setup: BayesSetup, posterior: xr.Dataset, X: np.ndarray, factors_codes_raw) -> np.ndarray:
    """Xβ + Zb for every draw, (D, m); unseen levels (codes ≥ G) contribute nothing here."""
    arguments = _predictor_arguments(setup, posterior, X, factors_codes_raw)
    mu = np.empty((arguments[1].shape[0], X.shape[0]))
    compiled_draws.linear_predictor(mu, *arguments)
    return mu


def _predictor_arguments(setup: BayesSetup, posterior: xr.Dataset, X, factors_codes_raw) -> tuple:
    """What :func:`bayeslmm.bayes.compiled_draws.draw_mean` takes: X', β (D, p), where each row's
    level starts among a draw's effects (F, m), the factors' columns stacked (Σ S_f, m), their
    effects side by side (D, Σ G_f S_f) and S_f.  A row of an unseen level (code ≥ G_f) gets
    index 0 and zero columns."""
    spec = setup.spec
    beta = np.ascontiguousarray(posterior["beta"].values.reshape(-1, spec.p))
    factors = spec.factors[:len(factors_codes_raw)]
    b = [posterior[f"b_{f.name}"].values.reshape(beta.shape[0], -1) for f in factors]
    index, columns, start = np.zeros((len(factors), X.shape[0]), dtype=np.int64), [], 0
    for f, (factor, (codes, raw)) in enumerate(zip(factors, factors_codes_raw)):
        known = codes < factor.n_levels
        index[f] = np.where(known, start + codes * factor.n_columns, 0)
        columns.append(np.where(known[:, None], raw, 0.0).T)
        start += factor.n_levels * factor.n_columns
    rawT = np.concatenate(columns) if columns else np.zeros((0, X.shape[0]))
    b = b[0] if len(b) == 1 else np.concatenate(b, axis=1) if b else np.zeros((beta.shape[0], 1))
    sizes = np.array([f.n_columns for f in factors], dtype=np.int64)
    return (np.ascontiguousarray(np.asarray(X, dtype=float).T), beta, index, np.ascontiguousarray(rawT, dtype=float),
            np.ascontiguousarray(b, dtype=float), sizes)


def add_pointwise_log_likelihood(idata, setup: BayesSetup) -> None:
    """log N(y_i | x_iβ + z_i b, σ²/w_i) per observation and draw, ArviZ's ``log_likelihood`` group
    (w_i = 1 without prior weights); without a residual structure in one compiled pass, written
    into the output array."""
    _check_rows_in_memory(setup.spec)
    posterior = idata["posterior"].to_dataset()
    spec = setup.spec
    factors = [(f.codes, f.raw) for f in spec.factors]
    sigma = np.ascontiguousarray(posterior["sigma"].values.reshape(-1))
    if setup.residual is not None:
        mu = linear_predictor(setup, posterior, spec.X, factors)
        idata["log_likelihood"] = xr.DataTree(_residual_group_log_likelihood(setup, posterior, mu, sigma[:, None]))
        return
    loglik = np.empty((sigma.size, spec.n))
    row_scale = np.ascontiguousarray(np.broadcast_to(np.asarray(spec.noise_scale, dtype=float), (spec.n,)))
    compiled_draws.pointwise_log_likelihood(loglik, np.ascontiguousarray(spec.y, dtype=float), sigma, row_scale,
                                            *_predictor_arguments(setup, posterior, spec.X, factors))
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
    """Each group's marginal log-likelihood (b integrated, β and θ at the draw): for leave-one-group-out.

    It needs only per-group statistics (:class:`~bayeslmm.linalg.crossprod.GroupCrossProducts`):
    those a Dask DataFrame's pass kept (``stats.by_group``), or else computed from the rows."""
    spec, stats = setup.spec, setup.stats
    if setup.residual is not None:
        raise LMMError("with a residual structure the log-likelihood is already one term per "
                       f"{setup.residual.group_name or 'row'} (its rows are correlated): use loo() or loo(by='obs')")
    if len(spec.factors) != 1:
        raise LMMError("leave-one-group-out needs exactly one grouping factor (with several, the groups of one "
                       f"factor share the effects of the others and are not independent); this model has "
                       f"{len(spec.factors)}: use loo() (by observation)")
    groups = stats.by_group
    if groups is None:
        _check_rows_in_memory(spec)
        groups = group_cross_products(spec)
    posterior = idata["posterior"].to_dataset()
    sigma, chols = posterior_parameters(posterior, setup)
    beta = posterior["beta"].values.reshape(sigma.size, -1)
    factor = spec.factors[0]
    out = np.empty((sigma.size, factor.n_levels))
    for d in range(sigma.size):
        fact = ld.factorize_T(factor_Ts(setup, chols, sigma, d), stats)
        out[d] = -0.5 * ld.group_deviances(fact, groups.XYtXY, groups.n, sigma[d] ** 2, beta[d], groups.log_weights)
    shape = (posterior.sizes["chain"], posterior.sizes["draw"], factor.n_levels)
    return xr.Dataset({"y": (("chain", "draw", factor.name), out.reshape(shape))},
                      coords={"chain": posterior["chain"], "draw": posterior["draw"],
                              factor.name: list(factor.levels)})


def _check_rows_in_memory(spec: ModelSpec) -> None:
    if not spec.rows_in_memory:
        raise LMMError("the pointwise log-likelihood of a posterior needs the rows, which a model of a Dask "
                       "DataFrame does not hold: use leave-one-group-out, loo(by='group') (from per-group "
                       "statistics), or fit an in-memory model (ddf.compute())")


def residual_noise(setup: BayesSetup, draws: xr.Dataset, z: np.ndarray) -> np.ndarray:
    """ε = σ_d z_d (σ_d z_d/√w with prior weights), or σ_d R_d^{1/2} z_d per residual group with a
    structure, for every draw d of ``draws`` (posterior or prior); z is (D, n) standard normal."""
    sigma = draws["sigma"].values.reshape(-1, 1)
    bound = setup.residual
    if bound is None:
        return sigma * setup.spec.noise_scale * z
    return sigma * np.stack([bound.colour(bound.posterior_natural(draws, d), z[d][:, None])[:, 0]
                             for d in range(z.shape[0])])
