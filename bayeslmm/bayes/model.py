"""The Bayesian path: the model spec as a PyMC model, sampled with NUTS.

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
import warnings
from dataclasses import dataclass

import numpy as np
import xarray as xr

from bayeslmm.linalg import logdensity as ld
from bayeslmm.checks import check_count
from bayeslmm.linalg.crossprod import CrossProducts, cross_products_of_columns
from bayeslmm.errors import LMMError
from bayeslmm.model.priors import Flat, ModelPriors, Normal
from bayeslmm.model.spec import ModelSpec


@dataclass(frozen=True)
class BayesSetup:
    """Everything both PyMC models and the conditional draws read."""

    spec: ModelSpec
    stats: CrossProducts
    priors: ModelPriors
    residual: object = None  # a bound residual structure (bayeslmm.cov), or None for σ²I

    @property
    def labels(self) -> tuple[str, ...]:
        return self.priors.labels


# --- names ------------------------------------------------------------------------------


def effect_dim(label: str) -> str:
    return f"{label}_effect"


def pair_dim(label: str) -> str:
    return f"{label}_pair"


def term_pairs(term) -> list[tuple[int, int]]:
    """(row, column) of each correlation, lme4's order: lower triangle column by column."""
    return [(r, c) for c in range(term.size) for r in range(c + 1, term.size)]


def coords(spec: ModelSpec, labels) -> dict[str, list]:
    out: dict[str, list] = {"fixef": list(spec.fixef_names), "obs": list(range(spec.n))}
    for factor in spec.factors:
        out[factor.name] = list(factor.levels)
        out[effect_dim(factor.name)] = list(factor.column_names)
    for term, label in zip(spec.terms, labels):
        out[effect_dim(label)] = list(term.column_names)
        pairs = term_pairs(term)
        if pairs:
            out[pair_dim(label)] = [f"{term.column_names[c]},{term.column_names[r]}" for r, c in pairs]
    return out


# --- the PyMC models -----------------------------------------------------------------------


def build_model(setup: BayesSetup, marginalize: bool):
    """The PyMC model of ``setup``: marginalised (b, β integrated) or hierarchical."""
    import pymc as pm

    spec = setup.spec
    if marginalize and len(spec.factors) > 1 and setup.residual is not None:
        raise LMMError(
            "the marginalised model with a residual structure supports one grouping factor; this model has "
            f"{len(spec.factors)} ({', '.join(f.name for f in spec.factors)}): use marginalize=False"
        )
    names = coords(spec, setup.labels) | residual_coords(setup.residual)
    with pm.Model(coords=names) as model:
        sigma = _scale_rv(setup.priors.sigma, "sigma")
        chols = [_term_chol(term, label, prior) for term, label, prior
                 in zip(spec.terms, setup.labels, setup.priors.terms)]
        factor_chols = _factor_chols(spec, chols)
        residual = None if setup.residual is None else residual_rvs(setup.residual, setup.priors.residual)
        if marginalize:
            _marginal_likelihood(setup, sigma, factor_chols, residual)
        else:
            _hierarchical_likelihood(setup, sigma, factor_chols, residual)
    return model


# --- residual structures -----------------------------------------------------------------


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


def _scale_rv(prior, name: str, dims=None):
    import pymc as pm

    family = {"HalfStudentT": pm.HalfStudentT, "HalfNormal": pm.HalfNormal, "Exponential": pm.Exponential}
    params = {k: v for k, v in vars(prior).items()}
    return family[type(prior).__name__](name, **params, dims=dims)


def _stacked_dist(priors: tuple):
    """One PyMC dist of shape (S,) from S scale priors of one family (per-column parameters)."""
    kinds = {type(p) for p in priors}
    if len(kinds) != 1:
        raise LMMError("the sd priors of one random term must be of one family")
    first = priors[0]
    arrays = {k: np.array([getattr(p, k) for p in priors], dtype=float) for k in vars(first)}
    return type(first)(**arrays).dist()


def _term_chol(term, label: str, prior):
    """Cholesky factor (S × S) of the term's covariance D = diag(sd) R diag(sd)."""
    import pymc as pm
    import pytensor.tensor as pt

    if term.size == 1:
        sd = _scale_rv(prior.sds[0], f"sd_{label}", dims=(effect_dim(label),))
        return sd.reshape((1, 1))
    chol, corr, stds = pm.LKJCholeskyCov(f"chol_{label}", n=term.size, eta=prior.eta,
                                         sd_dist=_stacked_dist(prior.sds), compute_corr=True,
                                         store_in_trace=False)
    pm.Deterministic(f"sd_{label}", stds, dims=(effect_dim(label),))
    rows, cols = zip(*term_pairs(term))
    pm.Deterministic(f"corr_{label}", corr[list(rows), list(cols)], dims=(pair_dim(label),))
    return pt.as_tensor(chol)


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
        stats, residual_logdet = _whitened_cross_products(setup, residual)
    if factor_chols:
        C, logdet = ld.factorize_graph([chol / sigma for chol in factor_chols], stats, xp=pt)
    else:
        C, logdet = pt.as_tensor(stats.XYtXY), -stats.log_weights  # log|W⁻¹|, as factorize_T's
    deviance = ld.deviance_beta_integrated(C, logdet, stats.n, sigma**2, beta.precision, beta.shift,
                                           beta.constant, xp=pt)
    pm.Potential("marginal_loglik", -0.5 * (deviance + residual_logdet))


def _whitened_cross_products(setup: BayesSetup, params, xp=None):
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


# --- sampling ---------------------------------------------------------------------------------


def check_sampling_arguments(draws, tune, chains) -> None:
    for name, value, minimum in (("draws", draws, 1), ("tune", tune, 0), ("chains", chains, 1)):
        check_count(value, name, minimum)


def sample(setup: BayesSetup, *, draws: int, tune: int, chains: int, random_seed, marginalize: bool,
           sampler: str, progressbar: bool, target_accept: float, log_likelihood: bool, cores: int | None = None):
    """Run NUTS and return the posterior as an ArviZ DataTree with β and b for every draw."""
    import pymc as pm

    check_sampling_arguments(draws, tune, chains)
    if sampler not in ("pymc", "nutpie"):
        raise LMMError(f"sampler must be 'pymc' or 'nutpie'; got {sampler!r}")
    if sampler == "nutpie":
        try:
            import nutpie  # noqa: F401
        except ImportError:
            raise LMMError("sampler='nutpie' needs nutpie: pip install 'bayeslmm[nutpie]'") from None
    model = build_model(setup, marginalize)
    seeds = np.random.SeedSequence(random_seed)
    rng = np.random.default_rng(seeds.spawn(1)[0])
    options = {} if cores is None else {"cores": cores}
    if marginalize:  # store only what NUTS samples; sds and correlations follow in NumPy
        starts = initial_values(setup, chains, rng)
        options["var_names"] = [rv.name for rv in model.free_RVs] + residual_names(model)
        # nutpie takes one starting point for all chains; PyMC's NUTS one per chain
        options.update({"initvals": starts[0]} if sampler == "nutpie" else {"initvals": starts, "init": "adapt_full"})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
        # the dense mass matrix is chosen on purpose (see docs/design.md)
        warnings.filterwarnings("ignore", message="QuadPotentialFullAdapt is an experimental feature")
        idata = pm.sample(draws=draws, tune=tune, chains=chains, random_seed=random_seed, model=model,
                          nuts_sampler=sampler, progressbar=progressbar, target_accept=target_accept,
                          compute_convergence_checks=False, **options)
    if marginalize:
        _add_sds_and_correlations(idata, setup)
        _add_conditional_draws(idata, setup, rng)
    idata["observed_data"] = xr.DataTree(xr.Dataset({"y": (("obs",), setup.spec.observed)},
                                                    coords={"obs": np.arange(setup.spec.n)}))
    if log_likelihood:
        add_pointwise_log_likelihood(idata, setup)
    return idata


def residual_names(model) -> list[str]:
    """The residual structure's readable variables (ρ, sd ratios, correlation matrix)."""
    return [d.name for d in model.deterministics if d.name == "rho" or d.name.startswith(("sd_ratio_", "residual_corr"))]


def initial_values(setup: BayesSetup, chains: int, rng) -> list[dict]:
    """Per-chain starting points near the REML estimate (sds floored, correlations shrunk), jittered."""
    from bayeslmm.fit.optimize import fit_theta
    from bayeslmm.model.covariance import theta_layout

    spec, layout = setup.spec, theta_layout(setup.spec)
    stats, residual = setup.stats, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if setup.residual is None:
            opt = fit_theta(stats, layout, reml=True)
        else:
            from bayeslmm.fit.residual import fit_with_residual, whitened_stats

            opt, phi = fit_with_residual(spec, layout, setup.residual, reml=True)
            stats = whitened_stats(spec, setup.residual, phi)[0]
            residual = residual_start(setup.residual, phi)
    fact = ld.factorize(opt.theta, stats, layout)
    sigma = float(np.sqrt(ld.sigma2_hat(ld.profile(fact, spec.p), spec.n, True))) or float(np.std(spec.y))
    Ts = layout.factors_T(opt.theta)
    out = []
    for _ in range(chains):
        jitter = lambda size: np.exp(rng.uniform(-0.1, 0.1, size))  # noqa: E731
        point = {"sigma": sigma * jitter(None)} | residual
        for term, label, prior in zip(spec.terms, setup.labels, setup.priors.terms):
            T = Ts[term.factor][term.columns, term.columns]
            cov = sigma**2 * T @ T.T
            floor = 0.05 * np.array([p.sigma if hasattr(p, "sigma") else p.scale for p in prior.sds])
            sd = np.maximum(np.sqrt(np.diag(cov)), floor) * jitter(term.size)
            if term.size == 1:
                point[f"sd_{label}"] = sd
                continue
            corr = 0.8 * cov / np.outer(np.sqrt(np.diag(cov)) + 1e-300, np.sqrt(np.diag(cov)) + 1e-300)
            np.fill_diagonal(corr, 1.0)
            chol = sd[:, None] * np.linalg.cholesky(corr)
            point[f"chol_{label}"] = chol[np.tril_indices(term.size)]
        out.append(point)
    return out


def _add_sds_and_correlations(idata, setup: BayesSetup) -> None:
    """sd and correlation draws of each correlated term from its packed Cholesky factor."""
    posterior = idata["posterior"].to_dataset()
    new = {}
    for term, label in zip(setup.spec.terms, setup.labels):
        if term.size == 1:
            continue
        packed = posterior[f"chol_{label}"].values
        L = np.zeros(packed.shape[:2] + (term.size, term.size))
        L[..., np.tril_indices(term.size)[0], np.tril_indices(term.size)[1]] = packed
        cov = L @ np.swapaxes(L, -1, -2)
        sd = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
        corr = cov / (sd[..., :, None] * sd[..., None, :])
        rows, cols = zip(*term_pairs(term))
        new[f"sd_{label}"] = (("chain", "draw", effect_dim(label)), sd)
        new[f"corr_{label}"] = (("chain", "draw", pair_dim(label)), corr[..., list(rows), list(cols)])
    if new:
        dims = {d for value in new.values() for d in value[0][2:]}
        names = coords(setup.spec, setup.labels)
        idata["posterior"] = xr.DataTree(posterior.assign(new).assign_coords({d: names[d] for d in dims}))


def posterior_parameters(posterior: xr.Dataset, setup: BayesSetup):
    """σ (D,) and each term's Cholesky factor (D, S, S) over all draws, from sd and corr."""
    sigma = posterior["sigma"].values.reshape(-1)
    chols = []
    for term, label in zip(setup.spec.terms, setup.labels):
        sd = posterior[f"sd_{label}"].values.reshape(sigma.size, term.size)
        R = np.broadcast_to(np.eye(term.size), (sigma.size, term.size, term.size)).copy()
        for k, (r, c) in enumerate(term_pairs(term)):
            R[:, r, c] = R[:, c, r] = posterior[f"corr_{label}"].values.reshape(sigma.size, -1)[:, k]
        L = np.linalg.cholesky(R) if term.size > 1 else R
        chols.append(sd[:, :, None] * L)
    return sigma, chols


def factor_Ts(setup: BayesSetup, chols: list[np.ndarray], sigma: np.ndarray, d: int) -> list[np.ndarray]:
    """Relative factors T_f = blockdiag(chol_k) / σ of draw d."""
    Ts = [np.zeros((f.n_columns, f.n_columns)) for f in setup.spec.factors]
    for term, chol in zip(setup.spec.terms, chols):
        Ts[term.factor][term.columns, term.columns] = chol[d] / sigma[d]
    return Ts


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
    parts = [_draws_together(setup, sigma[i:i + step], [c[i:i + step] for c in chols], rng)
             for i in range(0, sigma.size, step)]
    beta = np.concatenate([p[0] for p in parts])
    b = [np.concatenate([p[1][f] for p in parts]) for f in range(len(spec.factors))]
    return beta, b


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
    for d in range(sigma.size):
        stats, _ = _whitened_cross_products(setup, residual_natural(setup.residual, posterior, d), xp=np)
        parts.append(_draws_together(dataclasses.replace(setup, stats=stats), sigma[d:d + 1],
                                     [c[d:d + 1] for c in chols], rng))
    beta = np.concatenate([p[0] for p in parts])
    return beta, [np.concatenate([p[1][f] for p in parts]) for f in range(len(setup.spec.factors))]


def _add_conditional_draws(idata, setup: BayesSetup, rng) -> None:
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


def linear_predictor(setup: BayesSetup, posterior: xr.Dataset, X: np.ndarray, factors_codes_raw,
                     chunk: int = 64) -> np.ndarray:
    """Xβ + Zb for every draw, (D, m); unseen levels (codes ≥ G) contribute nothing here.

    Z b is gathered ``chunk`` draws at a time, so that the draws' b stay in cache while
    every row picks its level's effects (a gather over all draws at once was 3× slower).
    """
    beta = posterior["beta"].values.reshape(-1, setup.spec.p)
    mu = beta @ X.T
    for factor, (codes, raw) in zip(setup.spec.factors, factors_codes_raw):
        b = posterior[f"b_{factor.name}"].values.reshape(beta.shape[0], factor.n_levels, factor.n_columns)
        known = codes < factor.n_levels
        rows = slice(None) if known.all() else known
        codes, raw = codes[known], raw[known]
        for start in range(0, beta.shape[0], chunk):
            draws = slice(start, start + chunk)
            mu[draws, rows] += sum(np.take(b[draws, :, s], codes, axis=1) * raw[:, s]
                                   for s in range(factor.n_columns))
    return mu


def add_pointwise_log_likelihood(idata, setup: BayesSetup) -> None:
    """log N(y_i | x_iβ + z_i b, σ²/w_i) per observation and draw, ArviZ's ``log_likelihood`` group
    (w_i = 1 without prior weights)."""
    posterior = idata["posterior"].to_dataset()
    spec = setup.spec
    mu = linear_predictor(setup, posterior, spec.X, [(f.codes, f.raw) for f in spec.factors])
    sigma = posterior["sigma"].values.reshape(-1, 1)
    if setup.residual is not None:
        idata["log_likelihood"] = xr.DataTree(_residual_group_log_likelihood(setup, posterior, mu, sigma))
        return
    loglik = np.subtract(spec.y, mu, out=mu)  # in place: (draws, n) can be large
    loglik /= sigma * spec.noise_scale
    loglik **= 2
    loglik += ld.LOG_2PI + 2 * np.log(sigma * spec.noise_scale)
    loglik *= -0.5
    shape = (posterior.sizes["chain"], posterior.sizes["draw"], spec.n)
    idata["log_likelihood"] = xr.DataTree(xr.Dataset(
        {"y": (("chain", "draw", "obs"), loglik.reshape(shape))},
        coords={"chain": posterior["chain"], "draw": posterior["draw"], "obs": np.arange(spec.n)}))


def _residual_group_log_likelihood(setup: BayesSetup, posterior, mu, sigma) -> xr.Dataset:
    """log N(y_i | μ_i, σ²R_i) of each residual group's block: with correlated errors the rows
    of a group are not conditionally independent, so the group is LOO's unit."""
    bound, spec = setup.residual, setup.spec
    n_groups = bound.groups.max() + 1
    sizes = np.bincount(bound.groups, minlength=n_groups)
    out = np.empty((sigma.size, n_groups))
    for d in range(sigma.size):
        params = residual_natural(bound, posterior, d)
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


def _per_group_cross_products(spec: ModelSpec) -> np.ndarray:
    """[X y]'[X y] within each level of the single factor, (G, p+1, p+1)."""
    factor = spec.factors[0]
    XY = np.column_stack([spec.X, spec.y])
    outer = (XY[:, :, None] * XY[:, None, :]).reshape(spec.n, -1)
    sums = np.zeros((factor.n_levels, outer.shape[1]))
    np.add.at(sums, factor.codes, outer)
    return sums.reshape(factor.n_levels, XY.shape[1], XY.shape[1])


def prior_predictive(setup: BayesSetup, draws: int, random_seed):
    import pymc as pm

    check_sampling_arguments(draws, 0, 1)
    model = build_model(setup, marginalize=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
        # with a residual structure the potential is y's likelihood, which prior draws do not involve
        warnings.filterwarnings("ignore", message="The effect of Potentials")
        idata = pm.sample_prior_predictive(draws=draws, model=model, random_seed=random_seed)
    if setup.residual is not None:  # y is a potential there: draw it here, with the structure's correlation
        idata["prior_predictive"] = xr.DataTree(_residual_prior_predictive(setup, idata, random_seed))
    return idata


def residual_noise(setup: BayesSetup, draws: xr.Dataset, z: np.ndarray) -> np.ndarray:
    """ε = σ_d z_d (σ_d z_d/√w with prior weights), or σ_d R_d^{1/2} z_d per residual group with a
    structure, for every draw d of ``draws`` (posterior or prior); z is (D, n) standard normal."""
    sigma = draws["sigma"].values.reshape(-1, 1)
    bound = setup.residual
    if bound is None:
        return sigma * setup.spec.noise_scale * z
    return sigma * np.stack([bound.colour(residual_natural(bound, draws, d), z[d][:, None])[:, 0]
                             for d in range(z.shape[0])])


def _residual_prior_predictive(setup: BayesSetup, idata, random_seed) -> xr.Dataset:
    """y = Xβ + Zb + σ R^{1/2} z per prior draw, R at the draw's structure parameters."""
    prior, spec = idata["prior"].to_dataset(), setup.spec
    mu = linear_predictor(setup, prior, spec.X, [(f.codes, f.raw) for f in spec.factors])
    rng = np.random.default_rng(np.random.SeedSequence(random_seed).spawn(2)[1])
    y = mu + residual_noise(setup, prior, rng.standard_normal(mu.shape))
    return xr.Dataset({"y": (("chain", "draw", "obs"), y.reshape(prior.sizes["chain"], prior.sizes["draw"], spec.n))},
                      coords={"chain": prior["chain"], "draw": prior["draw"], "obs": np.arange(spec.n)})


__all__ = ["BayesSetup", "build_model", "sample", "conditional_draws", "prior_predictive"]
