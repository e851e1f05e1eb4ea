"""NUTS: initial values near the REML estimate, sampling, and the posterior's derived variables.
"""
from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import xarray as xr

from bayeslmm.bayes.draws import add_conditional_draws
from bayeslmm.bayes.kernel import kernel_covers, uncovered_shape
from bayeslmm.bayes.kernel_nuts import sample_kernel
from bayeslmm.bayes.model import build_model
from bayeslmm.bayes.predictive import add_pointwise_log_likelihood, linear_predictor, residual_noise
from bayeslmm.bayes.setup import BayesSetup, coords
from bayeslmm.checks import check_count
from bayeslmm.errors import LMMError, SamplerFallbackWarning
from bayeslmm.fit.state import fit_state
from bayeslmm.linalg import compiled_blocked
from bayeslmm.model.covariance import (
    corr_chol_variable,
    corr_variable,
    correlations,
    covariance,
    defined,
    pair_dim,
    sd_cor,
    sd_variable,
    term_factors,
    theta_layout,
)
from bayeslmm.threads import one_blas_thread


def check_sampling_arguments(draws, tune, chains) -> None:
    for name, value, minimum in (("draws", draws, 1), ("tune", tune, 0), ("chains", chains, 1)):
        check_count(value, name, minimum)


# the exact draws of b may take at most this share of the memory available when sampling starts,
# counted twice (the chunks drawn, then concatenated: bayeslmm.bayes.draws.conditional_draws)
RANDOM_EFFECT_DRAWS_SHARE = 0.5


def check_random_effect_draws_fit(setup: BayesSetup, draws: int, chains: int, available: int | None = None) -> None:
    """LMMError, before any sampling, when every draw of b would not fit in memory.

    Every posterior draw stores one exact draw of all random effects: draws × chains × Σ G_f S_f
    numbers, e.g. 16 GB for 1,000 draws of 1M groups with two effects (a Dask DataFrame's data
    set).  Rather than fail hours later (or be killed), say how many draws would fit."""
    effects = sum(f.n_levels * f.n_columns for f in setup.spec.factors)
    available = _available_memory() if available is None else available
    if not effects or available is None:
        return
    per_draw = 2 * 8 * effects
    if draws * chains * per_draw > RANDOM_EFFECT_DRAWS_SHARE * available:
        fit = max(1, int(RANDOM_EFFECT_DRAWS_SHARE * available // per_draw))
        raise LMMError(f"the exact draws of the random effects would not fit in memory: {draws} draws × {chains} "
                       f"chains × {effects:,} effects take {draws * chains * effects * 8 / 1e9:.3g} GB, twice that "
                       f"while they are assembled, against {available / 1e9:.3g} GB available; sample at most "
                       f"draws × chains = {fit} here (e.g. draws={max(1, fit // chains)})")


def _available_memory() -> int | None:
    """The memory available to new allocations (Linux's MemAvailable), in bytes; None where unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


SAMPLERS = ("kernel", "pymc", "nutpie")  # NUTS over the compiled kernel; PyMC's NUTS; nutpie over PyMC's graph


def resolve_sampler(setup: BayesSetup, sampler: str | None, marginalize: bool) -> str:
    """The sampler to run: ``None`` is the compiled kernel where it covers the model (the
    marginalised model of one grouping factor, or of several whose later factors have a small
    second block, without a residual structure; of one grouping factor with the residual
    structures :mod:`bayeslmm.bayes.kernel_residual` covers) and nutpie is installed, PyMC's NUTS
    otherwise.  ``"kernel"`` elsewhere falls back to PyMC's NUTS with a warning; both warnings
    name the shape not covered.  An unknown name is an LMMError listing the valid ones."""
    if sampler is not None and sampler not in SAMPLERS:
        raise LMMError(f"sampler must be one of {', '.join(map(repr, SAMPLERS))} (or None for the default); "
                       f"got {sampler!r}")
    covered = marginalize and kernel_covers(setup)
    coverage = ("the compiled kernel covers the marginalised model of one grouping factor or of several whose later "
                f"factors have at most {compiled_blocked.MAX_SECOND_BLOCK} random effects together, and of one "
                "grouping factor with an AR1, ARH1, CompoundSymmetry or Heteroscedastic residual structure (or AR1 "
                "or CompoundSymmetry & Heteroscedastic)")
    if sampler is None and marginalize and not covered:
        warnings.warn(f"{coverage}; it does not cover {uncovered_shape(setup)}, not this one yet: PyMC's NUTS samples "
                      "it over the PyMC graph (the same posterior, slower). Pass sampler='pymc' to choose it "
                      "explicitly.", SamplerFallbackWarning, stacklevel=4)
    if sampler is None:
        return "kernel" if covered and _nutpie_installed() else "pymc"
    if sampler == "kernel" and not covered:
        warnings.warn(f"sampler='kernel': {coverage}, not {uncovered_shape(setup, marginalize)}; this model is "
                      "sampled by PyMC's NUTS (sampler='pymc')", SamplerFallbackWarning, stacklevel=4)
        return "pymc"
    if sampler in ("kernel", "nutpie") and not _nutpie_installed():
        raise LMMError(f"sampler={sampler!r} needs nutpie: pip install 'bayeslmm[nutpie]', or use sampler='pymc'")
    return sampler


def _nutpie_installed() -> bool:
    return importlib.util.find_spec("nutpie") is not None


def sample(setup: BayesSetup, *, draws: int, tune: int, chains: int, random_seed, marginalize: bool,
           sampler: str, progressbar: bool, target_accept: float, log_likelihood: bool, cores: int | None = None):
    """Run NUTS (``sampler`` as :func:`resolve_sampler` returns it) and return the posterior as
    an ArviZ DataTree with β and b for every draw."""
    check_sampling_arguments(draws, tune, chains)
    check_random_effect_draws_fit(setup, draws, chains)
    seeds = np.random.SeedSequence(random_seed)
    rng = np.random.default_rng(seeds.spawn(1)[0])
    arguments = {"draws": draws, "tune": tune, "chains": chains, "random_seed": random_seed,
                 "progressbar": progressbar, "target_accept": target_accept, "cores": cores}
    if sampler == "kernel":
        idata = sample_kernel(setup, initial_values(setup, chains, rng)[0], **arguments)
    else:
        idata = _sample_pymc(setup, marginalize, sampler, rng, **arguments)
    # thousands of small factorizations, one per draw: on one BLAS thread (see bayeslmm.threads;
    # measured on the maximal crossed design under load, 1.8 ms per draw against 100 ms)
    with one_blas_thread():
        if marginalize:
            _add_correlations(idata, setup)
            add_conditional_draws(idata, setup, rng)
        if setup.spec.rows_in_memory:  # summarised data (bayeslmm.scaleout) keep their rows where they are
            idata["observed_data"] = xr.DataTree(xr.Dataset({"y": (("obs",), setup.spec.observed)},
                                                            coords={"obs": np.arange(setup.spec.n)}))
        if log_likelihood and setup.spec.rows_in_memory:
            add_pointwise_log_likelihood(idata, setup)
    return idata


def _sample_pymc(setup: BayesSetup, marginalize: bool, sampler: str, rng, *, draws, tune, chains, random_seed,
                 progressbar, target_accept, cores):
    """PyMC's NUTS (or nutpie over PyMC's compiled graph) on the PyMC model."""
    import pymc as pm

    model = build_model(setup, marginalize)
    options = {} if cores is None else {"cores": cores}
    if marginalize:  # store only what NUTS samples; sds and correlations follow in NumPy
        starts = initial_values(setup, chains, rng)
        options["var_names"] = [rv.name for rv in model.free_RVs] + residual_names(setup)
        # nutpie takes one starting point for all chains; PyMC's NUTS one per chain
        options.update({"initvals": starts[0]} if sampler == "nutpie" else {"initvals": starts, "init": "adapt_full"})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
        # the dense mass matrix is chosen on purpose (see docs/design.md)
        warnings.filterwarnings("ignore", message="QuadPotentialFullAdapt is an experimental feature")
        # several factors: our NumPy Op inside PyTensor's numba backend is called in object mode, as meant
        warnings.filterwarnings("ignore", message="Numba will use object mode to run BlockedCholesky")
        return pm.sample(draws=draws, tune=tune, chains=chains, random_seed=random_seed, model=model,
                         nuts_sampler=sampler, progressbar=progressbar, target_accept=target_accept,
                         compute_convergence_checks=False, **options)


def residual_names(setup: BayesSetup) -> list[str]:
    """The residual structure's readable variables (ρ, sd ratios, correlation matrix)."""
    return [] if setup.residual is None else list(setup.residual.reported_variables())


def initial_values(setup: BayesSetup, chains: int, rng) -> list[dict]:
    """Per-chain starting points near the REML estimate (sds floored, correlations shrunk), jittered."""
    spec = setup.spec
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = setup.stats if setup.residual is None else None  # re-whitened for every φ otherwise
        reml = fit_state(spec, theta_layout(spec), True, residual=setup.residual, stats=stats)
    residual = {} if setup.residual is None else setup.residual.initial_values(reml.phi)
    sigma = reml.sigma or float(np.std(spec.y))
    estimates = [sd_cor(covariance(T, sigma)) for T in term_factors(spec.terms, reml.theta)]
    out = []
    for _ in range(chains):
        jitter = lambda size: np.exp(rng.uniform(-0.1, 0.1, size))  # noqa: E731
        point = {"sigma": sigma * jitter(None)} | residual
        for term, label, prior, (sd_hat, cor_hat) in zip(spec.terms, setup.labels, setup.priors.terms, estimates):
            floor = 0.05 * np.array([p.typical_scale for p in prior.sds])
            point[sd_variable(label)] = np.maximum(sd_hat, floor) * jitter(term.size)
            if term.size > 1:
                shrunk = 0.8 * defined(cor_hat)  # an undefined correlation (a zero sd) starts at 0
                np.fill_diagonal(shrunk, 1.0)
                point[corr_chol_variable(label)] = np.linalg.cholesky(shrunk)
        out.append(point)
    return out


def _add_correlations(idata, setup: BayesSetup) -> None:
    """Correlation draws of each correlated term, R = LL', from its correlation's Cholesky factor."""
    posterior = idata["posterior"].to_dataset()
    new = {}
    for term, label in zip(setup.spec.terms, setup.labels):
        if term.size == 1:
            continue
        L = posterior[corr_chol_variable(label)].values
        new[corr_variable(label)] = (("chain", "draw", pair_dim(label)), correlations(L @ np.swapaxes(L, -1, -2)))
    if new:
        dims = {d for value in new.values() for d in value[0][2:]}
        names = coords(setup.spec, setup.labels)
        idata["posterior"] = xr.DataTree(posterior.assign(new).assign_coords({d: names[d] for d in dims}))


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
        idata["prior_predictive"] = xr.DataTree(residual_prior_predictive(setup, idata, random_seed))
    return idata


def residual_prior_predictive(setup: BayesSetup, idata, random_seed) -> xr.Dataset:
    """y = Xβ + Zb + σ R^{1/2} z per prior draw, R at the draw's structure parameters."""
    prior, spec = idata["prior"].to_dataset(), setup.spec
    mu = linear_predictor(setup, prior, spec.X, [(f.codes, f.raw) for f in spec.factors])
    rng = np.random.default_rng(np.random.SeedSequence(random_seed).spawn(2)[1])
    y = mu + residual_noise(setup, prior, rng.standard_normal(mu.shape))
    return xr.Dataset({"y": (("chain", "draw", "obs"), y.reshape(prior.sizes["chain"], prior.sizes["draw"], spec.n))},
                      coords={"chain": prior["chain"], "draw": prior["draw"], "obs": np.arange(spec.n)})
