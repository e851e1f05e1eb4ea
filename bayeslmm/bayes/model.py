"""The model spec as PyMC models: marginalised (b, β integrated out) or hierarchical.

Two PyMC models share their priors (built once, here):

- hierarchical (``marginalize=False``): β, b = L z with z ~ N(0, I) (non-centred), and
  y ~ N(Xβ + Zb, σ²) by indexing (``b[codes] * raw``), never a dense Z;
- marginalised (the default for sampling): the same priors on σ, the sds and the LKJ
  correlations; b and β integrated out analytically by the shared log-density
  (:func:`bayeslmm.logdensity.deviance_beta_integrated` on the graph that
  :func:`bayeslmm.logdensity.factorize_first` builds), added as a ``pm.Potential``.
  After sampling, β and then b are drawn exactly from their Gaussian conditionals for
  every draw (:func:`conditional_draws`), so both models give the same posterior variables.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from bayeslmm.bayes.setup import BayesSetup, coords
from bayeslmm.errors import LMMError
from bayeslmm.linalg import logdensity as ld
from bayeslmm.linalg.crossprod import cross_products_of_columns
from bayeslmm.model.covariance import corr_chol_variable, corr_variable, effect_dim, pair_dim, sd_variable, term_pairs
from bayeslmm.model.priors import Flat, Normal
from bayeslmm.model.spec import ModelSpec


def build_model(setup: BayesSetup, marginalize: bool):
    """The PyMC model of ``setup``: marginalised (b, β integrated) or hierarchical."""
    import pymc as pm

    spec = setup.spec
    if marginalize and len(spec.factors) > 1 and setup.residual is not None:
        raise LMMError(
            "the marginalised model with a residual structure supports one grouping factor; this model has "
            f"{len(spec.factors)} ({', '.join(f.name for f in spec.factors)}): use marginalize=False"
        )
    names = coords(spec, setup.labels) | ({} if setup.residual is None else setup.residual.coords())
    with pm.Model(coords=names) as model:
        sigma = _scale_rv(setup.priors.sigma, "sigma")
        chols = [_term_chol(term, label, prior) for term, label, prior
                 in zip(spec.terms, setup.labels, setup.priors.terms)]
        factor_chols = _factor_chols(spec, chols)
        residual = None if setup.residual is None else setup.residual.pymc_variables(setup.priors.residual)
        if marginalize:
            _marginal_likelihood(setup, sigma, factor_chols, residual)
        else:
            _hierarchical_likelihood(setup, sigma, factor_chols, residual)
    return model


def _scale_rv(prior, name: str, dims=None):
    import pymc as pm

    family = {"HalfStudentT": pm.HalfStudentT, "HalfNormal": pm.HalfNormal, "Exponential": pm.Exponential}
    params = {k: v for k, v in vars(prior).items()}
    return family[type(prior).__name__](name, **params, dims=dims)


def _stacked_scale_rv(priors: tuple, name: str, dims):
    """One PyMC scale variable of shape (S,) from S priors of one family (per-column parameters)."""
    kinds = {type(p) for p in priors}
    if len(kinds) != 1:
        raise LMMError("the sd priors of one random term must be of one family")
    first = priors[0]
    arrays = {k: np.array([getattr(p, k) for p in priors], dtype=float) for k in vars(first)}
    return _scale_rv(type(first)(**arrays), name, dims=dims)


def _term_chol(term, label: str, prior):
    """Cholesky factor (S × S) of the term's covariance D = diag(sd) R diag(sd): the sds and the
    correlation's Cholesky factor are separate variables (log sds; LKJCorr's CholeskyCorr
    transform), so a slope whose sd nears zero leaves its correlations to their prior rather than
    pulling the factor's off-diagonal into a funnel, as LKJCholeskyCov's packed factor does."""
    import pymc as pm
    import pytensor.tensor as pt

    sd = _stacked_scale_rv(prior.sds, sd_variable(label), dims=(effect_dim(label),))
    if term.size == 1:
        return sd.reshape((1, 1))
    L = pm.LKJCorr(corr_chol_variable(label), n=term.size, eta=prior.eta)  # R = LL' ~ LKJ(η)
    rows, cols = zip(*term_pairs(term))
    pm.Deterministic(corr_variable(label), pt.dot(L, L.T)[list(rows), list(cols)], dims=(pair_dim(label),))
    return sd[:, None] * L


def _factor_chols(spec: ModelSpec, chols: list):
    """Each factor's block-diagonal Cholesky factor, from the chols of its terms."""
    import pytensor.tensor as pt

    out = [pt.zeros((f.n_columns, f.n_columns)) for f in spec.factors]
    for term, chol in zip(spec.terms, chols):
        out[term.factor] = pt.set_subtensor(out[term.factor][term.columns, term.columns], chol)
    return out


def _marginal_likelihood(setup: BayesSetup, sigma, factor_chols, residual=None) -> None:
    import pymc as pm
    import pytensor.tensor as pt

    stats, beta, residual_logdet = setup.stats, setup.priors.beta, 0.0
    if residual is not None:  # whiten [X y Z] at the structure's parameters, inside the graph
        stats, residual_logdet = whitened_cross_products(setup, residual)
    if len(factor_chols) > 1:  # the second block's Cholesky: NumPy inside one Op, exact gradient
        from bayeslmm.bayes.factorization_op import BlockedCholesky  # imports PyTensor: on first use

        C, logdet = BlockedCholesky(stats)(*[chol / sigma for chol in factor_chols])
    elif factor_chols:
        C, logdet = ld.factorize_graph([chol / sigma for chol in factor_chols], stats, xp=pt)
    else:
        C, logdet = pt.as_tensor(stats.XYtXY), -stats.log_weights  # log|W⁻¹|, as factorize_T's
    deviance = ld.deviance_beta_integrated(C, logdet, stats.n, sigma**2, beta.precision, beta.shift,
                                           beta.constant, xp=pt)
    pm.Potential("marginal_loglik", -0.5 * (deviance + residual_logdet))


def whitened_cross_products(setup: BayesSetup, params, xp=None):
    """Cross-products of the data whitened at the structure's ``params`` (graph or NumPy)."""
    import pytensor.tensor as pt

    xp = pt if xp is None else xp
    spec = setup.spec
    factor = spec.factors[0] if spec.factors else None
    columns = [spec.X, spec.y[:, None]] + ([factor.raw] if factor else [])
    white, logdet = setup.residual.whiten_natural(params, np.column_stack(columns), xp)
    XY, raw = white[:, : spec.p + 1], (white[:, spec.p + 1:] if factor else None)
    stats = cross_products_of_columns(XY, raw, factor.codes if factor else None,
                                      factor.n_levels if factor else 0, spec.p, factor.n_columns if factor else 0, xp)
    stats = dataclasses.replace(stats, n=spec.n)
    return stats, logdet


def _hierarchical_likelihood(setup: BayesSetup, sigma, factor_chols, residual=None) -> None:
    import pymc as pm
    import pytensor.tensor as pt

    spec = setup.spec
    beta = pm.Deterministic("beta", pt.dot(np.linalg.inv(setup.priors.beta.A), _centred_beta(setup)),
                            dims="fixef")
    mu = pt.dot(spec.X, beta)
    for factor, chol in zip(spec.factors, factor_chols):
        dims = (factor.name, effect_dim(factor.name))
        z = pm.Normal(f"z_{factor.name}", 0.0, 1.0, dims=dims)
        b = pm.Deterministic(f"b_{factor.name}", pt.dot(z, chol.T), dims=dims)
        mu = mu + (b[factor.codes] * factor.raw).sum(axis=1)
    if residual is None:
        pm.Normal("y", mu=mu, sigma=sigma * spec.noise_scale, observed=spec.y, dims="obs")
        return
    # y ~ N(μ, σ²R): the whitened residual is N(0, σ²I), plus the Jacobian −½ log|R|
    white, logdet = setup.residual.whiten_natural(residual, (spec.y - mu)[:, None], pt)
    pm.Potential("loglik", -0.5 * ((white**2).sum() / sigma**2 + spec.n * (ld.LOG_2PI + 2 * pt.log(sigma)) + logdet))


def _centred_beta(setup: BayesSetup):
    """γ = Aβ (the intercept taken at the predictors' means), one prior per coordinate."""
    import pymc as pm
    import pytensor.tensor as pt

    coordinates = setup.priors.beta.coordinates
    if all(isinstance(c, Normal) for c in coordinates):
        return pm.Normal("beta_centred", mu=np.array([c.mu for c in coordinates]),
                         sigma=np.array([c.sigma for c in coordinates]), dims="fixef")
    if all(isinstance(c, Flat) for c in coordinates):
        return pm.Flat("beta_centred", dims="fixef")
    names = setup.spec.fixef_names
    parts = [pm.Flat(f"beta_centred[{n}]") if isinstance(c, Flat) else pm.Normal(f"beta_centred[{n}]", c.mu, c.sigma)
             for n, c in zip(names, coordinates)]
    return pt.stack(parts)
