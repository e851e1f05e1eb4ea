"""Exact draws of β and b given each posterior draw of σ, the sds and correlations (and φ).

β ~ N(H⁻¹h, H⁻¹) from the shared log-density's factorization, then b | β from the
conditional modes plus scaled noise: the marginalised sampler's posterior has the same
variables as the hierarchical one.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import xarray as xr

from bayeslmm.bayes import compiled_draws
from bayeslmm.bayes.kernel_residual import draw_statistics
from bayeslmm.bayes.model import whitened_cross_products
from bayeslmm.bayes.setup import BayesSetup, coords
from bayeslmm.linalg import logdensity as ld
from bayeslmm.model.covariance import (
    cholesky_of_sdcor,
    corr_variable,
    correlation_matrix,
    effect_dim,
    grouping_factors,
    sd_variable,
)


def posterior_parameters(posterior: xr.Dataset, setup: BayesSetup):
    """σ (D,) and each term's Cholesky factor (D, S, S) over all draws, from sd and corr."""
    sigma = posterior["sigma"].values.reshape(-1)
    chols = []
    for term, label in zip(setup.spec.terms, setup.labels):
        sd = posterior[sd_variable(label)].values.reshape(sigma.size, term.size)
        cor = (posterior[corr_variable(label)].values.reshape(sigma.size, -1) if term.size > 1
               else np.zeros((sigma.size, 0)))
        chols.append(cholesky_of_sdcor(sd, correlation_matrix(cor, term.size)))
    return sigma, chols


def factor_Ts(setup: BayesSetup, chols: list[np.ndarray], sigma: np.ndarray, d: int) -> list[np.ndarray]:
    """Relative factors T_f = blockdiag(chol_k) / σ of draw d."""
    return grouping_factors(setup.spec, [chol[d] / sigma[d] for chol in chols])


def conditional_draws(setup: BayesSetup, sigma, chols, rng, chunk_elements: int = 200_000):
    """β | θ, σ, y and then b | β, θ, σ, y: one exact draw per posterior draw.

    β ~ N(H⁻¹h, H⁻¹) (see :func:`bayeslmm.logdensity.beta_conditional`), then
    u = L⁻ᵀ(c − Rβ + σz), z ~ N(0, I), and b = T u.  With one grouping factor the
    draws are factorized together in chunks; with several, one at a time.
    """
    spec = setup.spec
    if len(spec.factors) > 1:
        return _draws_one_at_a_time(setup, sigma, chols, rng)
    size = max(1, spec.factors[0].n_levels * spec.factors[0].n_columns * (spec.p + 1)) if spec.factors else 1
    step = max(1, chunk_elements // size)
    if spec.factors:
        return _draws_compiled(setup, sigma, chols, rng, step)
    parts = [_draws_together(setup, sigma[i:i + step], [c[i:i + step] for c in chols], rng)
             for i in range(0, sigma.size, step)]
    beta = np.concatenate([p[0] for p in parts])
    b = [np.concatenate([p[1][f] for p in parts]) for f in range(len(spec.factors))]
    return beta, b


def _draws_compiled(setup: BayesSetup, sigma, chols, rng, step: int, block: int = 16):
    """One grouping factor: :func:`bayeslmm.bayes.compiled_draws.one_factor_draws`, ``block`` chunks of
    ``step`` draws per call, with the standard normals :func:`_draws_together` draws per chunk, in
    its order (so the same draws for the same seed).  A call is one parallel region, which waits
    for a descheduled thread on a loaded machine; so blocks of many chunks, and a buffer of
    normals of one block (fresh memory is slow to touch the first time, 2.5-3.5 s per GB measured
    on this project's virtual machine)."""
    spec, stats = setup.spec, setup.stats
    factor, p = spec.factors[0], spec.p
    T = np.zeros((sigma.size, factor.n_columns, factor.n_columns))
    for term, chol in zip(spec.terms, chols):
        T[:, term.columns, term.columns] = chol / sigma[:, None, None]
    sigma = np.ascontiguousarray(sigma, dtype=float)
    beta, b = np.empty((sigma.size, p)), np.empty((sigma.size, factor.n_levels, factor.n_columns))
    size = min(sigma.size, step * block)
    z_beta, z_b = np.empty((size, p)), np.empty((size, factor.n_levels, factor.n_columns))
    arrays = [np.ascontiguousarray(a, dtype=float) for a in (stats.ZtZ1, stats.ZtXY1, stats.XYtXY,
                                                              setup.priors.beta.precision, setup.priors.beta.shift)]
    for start in range(0, sigma.size, size):
        draws = slice(start, min(start + size, sigma.size))
        count = draws.stop - start
        for chunk in range(0, count, step):
            rng.standard_normal(out=z_beta[chunk : min(chunk + step, count)])
            rng.standard_normal(out=z_b[chunk : min(chunk + step, count)])
        compiled_draws.one_factor_draws(T[draws], sigma[draws], *arrays, z_beta[:count], z_b[:count], beta[draws],
                                        b[draws])
    return beta, [b]


def _draw_beta(C, sigma, prior, rng) -> np.ndarray:
    mean, LH = ld.beta_conditional(C, sigma**2, prior.precision, prior.shift)
    z = rng.standard_normal(mean.shape)
    return mean + np.linalg.solve(np.swapaxes(LH, -1, -2), z[..., None])[..., 0]


def _draws_together(setup: BayesSetup, sigma, chols, rng):
    """Draws for D parameter values at once (no or one grouping factor)."""
    spec, stats, p = setup.spec, setup.stats, setup.spec.p
    if not spec.factors:
        C = np.broadcast_to(stats.XYtXY, (sigma.size, p + 1, p + 1))
        return _draw_beta(C, sigma, setup.priors.beta, rng), []
    T = np.stack([factor_Ts(setup, chols, sigma, d)[0] for d in range(sigma.size)])
    # entry by entry, like the factorization: (D, G) arrays per entry, no per-level matrices
    _, Linv, R, C, _ = ld.factorize_first(T[:, None], stats, as_entries=True)
    beta = _draw_beta(C, sigma, setup.priors.beta, rng)
    S = len(R)
    z = rng.standard_normal(R[0].shape[:-1] + (S,))
    v = [R[s][..., p] - np.matmul(R[s][..., :p], beta[:, :, None])[..., 0] + sigma[:, None] * z[..., s]
         for s in range(S)]  # c − Rβ + σz
    u = [sum(Linv[t, s] * v[t] for t in range(s, S)) for s in range(S)]  # L⁻ᵀ v
    b = [sum(T[:, s, k, None] * u[k] for k in range(S)) for s in range(S)]  # T u
    return beta, [np.stack(b, axis=-1)]


def _draws_one_at_a_time(setup: BayesSetup, sigma, chols, rng):
    spec = setup.spec
    Q = sum(f.n_levels * f.n_columns for f in spec.factors)
    beta = np.empty((sigma.size, spec.p))
    b = [np.empty((sigma.size, f.n_levels, f.n_columns)) for f in spec.factors]
    for d in range(sigma.size):
        Ts = factor_Ts(setup, chols, sigma, d)
        fact = ld.factorize_T(Ts, setup.stats)
        beta[d] = _draw_beta(fact.C, sigma[d:d + 1], setup.priors.beta, rng)
        u = ld.conditional_u(fact, beta[d], noise=sigma[d] * rng.standard_normal(Q))
        for f, (u_f, T) in enumerate(zip(u, Ts)):
            b[f][d] = u_f @ T.T
    return beta, b


def _draws_with_residual(setup: BayesSetup, posterior, sigma, chols, rng):
    """The exact draws of β and b, one posterior draw at a time on the data whitened at its φ."""
    parts = []
    whitened = draw_statistics(setup, posterior)  # from the kernel's component statistics where it covers them
    for d in range(sigma.size):
        stats = (whitened(d) if whitened is not None else
                 whitened_cross_products(setup, setup.residual.posterior_natural(posterior, d), xp=np)[0])
        parts.append(_draws_together(dataclasses.replace(setup, stats=stats), sigma[d:d + 1],
                                     [c[d:d + 1] for c in chols], rng))
    beta = np.concatenate([p[0] for p in parts])
    return beta, [np.concatenate([p[1][f] for p in parts]) for f in range(len(setup.spec.factors))]


def add_conditional_draws(idata, setup: BayesSetup, rng) -> None:
    posterior = idata["posterior"].to_dataset()
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    sigma, chols = posterior_parameters(posterior, setup)
    if setup.residual is None:
        beta, b = conditional_draws(setup, sigma, chols, rng)
    else:
        beta, b = _draws_with_residual(setup, posterior, sigma, chols, rng)
    new = {"beta": (("chain", "draw", "fixef"), beta.reshape(chains, draws, -1))}
    for factor, b_f in zip(setup.spec.factors, b):
        new[f"b_{factor.name}"] = (("chain", "draw", factor.name, effect_dim(factor.name)),
                                   b_f.reshape(chains, draws, factor.n_levels, factor.n_columns))
    coords_ = {k: v for k, v in coords(setup.spec, setup.labels).items() if k != "obs"}
    posterior = posterior.assign(new).assign_coords({k: v for k, v in coords_.items() if k in
                                                      {d for var in new.values() for d in var[0]}})
    idata["posterior"] = xr.DataTree(posterior)
