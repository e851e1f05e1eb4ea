"""The compiled kernel equals the PyMC marginalised model (the specification): its logp and
dlogp, priors and Jacobians included, at random points."""
from __future__ import annotations

import warnings

import numba
import numpy as np
import pandas as pd
import pytest
from numba.core.caching import CacheImpl  # numba's list of cache directories to try
from scipy import stats

import bayeslmm as blm
from bayeslmm import bayes
from bayeslmm.bayes.kernel import encode_scale_prior, kernel_covers, log_density, parameter_blocks
from bayeslmm.linalg import compiled_blocked
from bayeslmm.linalg.compiled import cached, scale_logp

pytestmark = pytest.mark.filterwarnings("ignore:.*BLAS.*", "ignore::bayeslmm.PosteriorWarning",
                                        "ignore:Numba will use object mode")


@pytest.fixture(scope="module")
def sleepstudy():
    return blm.datasets.load("sleepstudy")


def _pymc_point(model_pm, blocks, x) -> dict:
    """The PyMC value variables at the kernel's vector x (same order, same layout; scalars: σ and
    a residual structure's ρ)."""
    names, initial = [v.name for v in model_pm.value_vars], model_pm.initial_point()
    assert len(names) == len(blocks)
    return {name: (x[b.start] if np.ndim(initial[name]) == 0 else x[b.start : b.start + b.size])
            for name, b in zip(names, blocks)}


def _assert_kernel_equals_pymc(model: blm.LMM, priors=None, points: int = 4, spread: float = 1e-9) -> None:
    """The gradient equals PyMC's dlogp to 1e-8; the log-density equals PyMC's logp up to one
    constant, the same at every point to 1e-9 and itself below 1e-7: PyMC evaluates some prior
    constants in float32 (``pt.log(2)`` of an integer in HalfStudentT, ``log(sqrt(2/π))`` in
    HalfNormal: 2e-8 and 4e-8), where the kernel's are exact to float64
    (test_scale_prior_constants_are_exact)."""
    setup = model._bayes_setup(priors)
    assert kernel_covers(setup)
    model_pm = model.pymc_model(marginalize=True, priors=priors)
    logp, dlogp = model_pm.compile_logp(), model_pm.compile_dlogp()
    blocks, kernel = parameter_blocks(setup), log_density(setup)
    rng = np.random.default_rng(20261130)
    offsets = []
    for _ in range(points):
        x = rng.normal(scale=0.7, size=sum(b.size for b in blocks))
        x[0] += np.log(np.std(setup.spec.y))  # σ on the data's scale, where the likelihood is not flat
        value, gradient = kernel(x)
        point = _pymc_point(model_pm, blocks, x)
        offsets.append(value - logp(point))
        np.testing.assert_allclose(gradient, dlogp(point), rtol=0, atol=1e-8)
    assert np.ptp(offsets) < spread
    assert abs(offsets[0]) < 1e-7


@pytest.mark.parametrize("prior, scipy_logpdf", [
    (blm.priors.HalfStudentT(3.0, 56.17), lambda x: np.log(2) + stats.t.logpdf(x, 3.0, scale=56.17)),
    (blm.priors.HalfNormal(40.0), lambda x: stats.halfnorm.logpdf(x, scale=40.0)),
    (blm.priors.Exponential(12.5), lambda x: stats.expon.logpdf(x, scale=12.5)),
])
def test_scale_prior_constants_are_exact(prior, scipy_logpdf):
    """The kernel's scale priors equal scipy's float64 densities to rounding, and their slopes
    central differences."""
    kind, a, b, constant = encode_scale_prior(prior)
    for x in (0.3, 30.0, 400.0):
        value, slope = scale_logp(kind, a, b, constant, x)
        assert value == pytest.approx(scipy_logpdf(x), rel=0, abs=1e-14)
        assert slope == pytest.approx((scipy_logpdf(x + 1e-5) - scipy_logpdf(x - 1e-5)) / 2e-5, rel=1e-6)


def test_kernel_equals_pymc_with_correlated_slopes(sleepstudy):
    _assert_kernel_equals_pymc(blm.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy))


def test_kernel_equals_pymc_with_an_intercept_and_other_priors(sleepstudy):
    priors = {"sigma": blm.priors.HalfNormal(40.0), "fixef": blm.priors.Flat()}
    _assert_kernel_equals_pymc(blm.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy), priors)


def test_kernel_equals_pymc_with_prior_weights_and_uncorrelated_terms(sleepstudy):
    weights = np.random.default_rng(3).uniform(0.5, 2.0, len(sleepstudy))
    model = blm.LMM("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", sleepstudy, weights=weights)
    _assert_kernel_equals_pymc(model)


def test_kernel_equals_pymc_with_three_correlated_columns(sleepstudy):
    """Three columns: the CholeskyCorr vector's three entries in PyMC's order (its "spiral" fill)."""
    data = sleepstudy.assign(late=(sleepstudy["Days"] > 4).astype(float))
    _assert_kernel_equals_pymc(blm.LMM("Reaction ~ Days + (1 + Days + late | Subject)", data))


def test_correlation_factor_matches_pymcs_cholesky_corr_transform():
    """The kernel's map from the unconstrained vector to the correlation's Cholesky factor is PyMC's
    CholeskyCorr backward transform, and kernel_nuts' inverse its forward one, for 2 to 5 columns."""
    from pymc.distributions.transforms import CholeskyCorrTransform

    from bayeslmm.bayes.kernel_nuts import from_unconstrained, to_unconstrained
    from bayeslmm.linalg.compiled import correlation_cholesky

    rng = np.random.default_rng(4)
    for size in range(2, 6):
        z = rng.normal(size=size * (size - 1) // 2)
        L = np.zeros((size, size))
        correlation_cholesky(z, size, L)
        np.testing.assert_allclose(L, CholeskyCorrTransform(size).backward(z).eval(), rtol=0, atol=1e-14)
        data = pd.DataFrame({"g": np.repeat(["a", "b", "c"], 10), "y": rng.normal(size=30)})
        columns = [f"x{k}" for k in range(size - 1)]
        data = data.assign(**{c: rng.normal(size=30) for c in columns})
        model = blm.LMM(f"y ~ 1 + (1 + {' + '.join(columns)} | g)", data)
        setup = model._bayes_setup(None)
        x = rng.normal(size=1 + size + z.size)
        point = from_unconstrained(setup, x)
        np.testing.assert_allclose(CholeskyCorrTransform(size).forward(point["corr_chol_g"]).eval(),
                                   x[1 + size:], rtol=1e-12)
        np.testing.assert_allclose(to_unconstrained(setup, point), x, rtol=1e-12, atol=1e-14)


def test_kernel_covers_several_factors_with_a_small_second_block_and_residual_structures_of_one(monkeypatch):
    data = blm.datasets.load("Penicillin")
    model = blm.LMM("diameter ~ 1 + (1 | plate) + (1 | sample)", data)
    assert kernel_covers(model._bayes_setup(None))
    monkeypatch.setattr(compiled_blocked, "MAX_SECOND_BLOCK", 5)  # sample has 6 levels
    assert not kernel_covers(model._bayes_setup(None))
    sitka = blm.datasets.load("Sitka")
    assert kernel_covers(blm.LMM("size ~ time + (1 | tree)", sitka, residual="ar1(visit | tree)")._bayes_setup(None))
    assert not kernel_covers(blm.LMM("size ~ time + (1 | tree)", sitka, residual="us(visit | tree)")._bayes_setup(None))


def test_kernel_equals_pymc_with_crossed_factors():
    _assert_kernel_equals_pymc(blm.LMM("diameter ~ 1 + (1 | plate) + (1 | sample)", blm.datasets.load("Penicillin")))


def crossed_slopes(seed=0, n_subj=12, n_item=8) -> pd.DataFrame:
    """Subjects × items, every subject meeting every item, with a ±0.5 contrast varying by both."""
    rng = np.random.default_rng(seed)
    data = pd.DataFrame([(f"s{s}", f"i{i}") for s in range(n_subj) for i in range(n_item)], columns=["subj", "item"])
    data["a"] = rng.choice([-0.5, 0.5], len(data))
    subj, item = data.subj.str[1:].astype(int), data.item.str[1:].astype(int)
    data["y"] = (rng.normal(size=n_subj)[subj] + 0.5 * rng.normal(size=n_item)[item]
                 + data.a * (1 + 0.7 * rng.normal(size=n_subj)[subj]) + rng.normal(size=len(data)))
    data["w"] = rng.uniform(0.5, 2.0, len(data))
    return data


def test_kernel_equals_pymc_with_crossed_correlated_slopes_and_weights():
    """Correlated slopes on both factors (a CholeskyCorr vector per factor), nested too (three
    factors), prior weights."""
    data = crossed_slopes()
    data["block"] = data.subj.str[1:].astype(int) // 3
    model = blm.LMM("y ~ a + (1 + a | subj) + (1 + a | item) + (1 | block)", data, weights="w")
    _assert_kernel_equals_pymc(model)


def test_kernel_sampler_agrees_with_pymcs_nuts_with_crossed_factors():
    """Several factors: nutpie over the compiled kernel and PyMC's NUTS over the blocked-Cholesky
    Op sample the same posterior (means within a few Monte Carlo standard errors).  The kernel's
    chains are 1,000 draws long (half a second): with 500, R-hat itself varies by ~0.02 with the
    starting points (1.0203 after a change of θ̂ at the 1e-8 level, 1.002 with 1,000 draws)."""
    model = blm.LMM("y ~ a + (1 + a | subj) + (1 | item)", crossed_slopes(seed=4))
    options = {"draws": 500, "tune": 500, "chains": 2, "random_seed": 3, "progressbar": False}
    ours = model.fit(method="NUTS", **(options | {"draws": 1000}))
    theirs = model.fit(method="NUTS", sampler="pymc", **options)
    assert ours.sampler == "kernel" and theirs.sampler == "pymc"
    for name in ("sigma", "sd_subj", "sd_item", "corr_subj", "beta", "b_item"):
        a, b = ours.posterior[name], theirs.posterior[name]
        se = np.hypot(a.std(("chain", "draw")).values, b.std(("chain", "draw")).values) / np.sqrt(200)
        assert np.all(np.abs(a.mean(("chain", "draw")).values - b.mean(("chain", "draw")).values) < 4 * se), name
    assert ours.diagnostics["divergences"] == 0 and ours.diagnostics["max_r_hat"] < 1.02


@pytest.fixture(scope="module")
def slopes(sleepstudy):
    return blm.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy)


@pytest.fixture(scope="module")
def kernel_fit(slopes):
    return slopes.fit(method="NUTS", sampler="kernel", draws=500, tune=500, chains=2, random_seed=5,
                      progressbar=False)


@pytest.fixture(scope="module")
def pymc_fit(slopes):
    return slopes.fit(method="NUTS", sampler="pymc", draws=500, tune=500, chains=2, random_seed=5,
                      progressbar=False)


def test_kernel_sampler_gives_pymcs_layout(kernel_fit, pymc_fit):
    """Same groups, variables, dims and coords as PyMC's NUTS: the post-processing is shared."""
    assert kernel_fit.sampler == "kernel" and pymc_fit.sampler == "pymc"
    assert set(kernel_fit.idata.children) == set(pymc_fit.idata.children)
    for group in ("posterior", "log_likelihood", "observed_data"):
        ours, theirs = kernel_fit.idata[group].to_dataset(), pymc_fit.idata[group].to_dataset()
        assert {k: v.dims for k, v in ours.data_vars.items()} == {k: v.dims for k, v in theirs.data_vars.items()}
        for name in ours.coords:
            np.testing.assert_array_equal(ours[name].values, theirs[name].values)
    assert "diverging" in kernel_fit.idata["sample_stats"].to_dataset()


def test_kernel_sampler_agrees_with_pymcs_nuts(kernel_fit, pymc_fit):
    """Posterior means within a few Monte Carlo standard errors of PyMC's, and converged."""
    for name in ("sigma", "sd_Subject", "corr_Subject", "beta"):
        ours, theirs = kernel_fit.posterior[name], pymc_fit.posterior[name]
        mean_a, mean_b = ours.mean(("chain", "draw")).values, theirs.mean(("chain", "draw")).values
        se = np.hypot(ours.std(("chain", "draw")).values, theirs.std(("chain", "draw")).values) / np.sqrt(200)
        assert np.all(np.abs(mean_a - mean_b) < 4 * se), name
    assert kernel_fit.diagnostics["divergences"] == 0 and kernel_fit.diagnostics["max_r_hat"] < 1.02


def test_kernel_sampler_is_reproducible(slopes, kernel_fit):
    again = slopes.fit(method="NUTS", sampler="kernel", draws=500, tune=500, chains=2, random_seed=5,
                       progressbar=False)
    np.testing.assert_array_equal(again.posterior["b_Subject"].values, kernel_fit.posterior["b_Subject"].values)


def test_unknown_sampler_lists_the_valid_ones(slopes):
    with pytest.raises(blm.LMMError, match="'kernel', 'pymc', 'nutpie'"):
        slopes.fit(method="NUTS", sampler="stan")


def test_kernel_sampler_elsewhere_falls_back_to_pymc_with_a_warning(slopes):
    with pytest.warns(blm.SamplerFallbackWarning, match="sampled by PyMC's NUTS"):
        post = slopes.fit(method="NUTS", sampler="kernel", marginalize=False, draws=20, tune=20, chains=1,
                          random_seed=1, progressbar=False, log_likelihood=False)
    assert post.sampler == "pymc"


def test_default_sampler_is_the_kernel_where_it_covers_the_model(sleepstudy, monkeypatch):
    one = blm.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy)
    post = one.fit(method="NUTS", draws=50, tune=50, chains=1, random_seed=2, progressbar=False,
                   log_likelihood=False)
    assert post.sampler == "kernel"
    assert bayes.resolve_sampler(one._bayes_setup(None), None, marginalize=False) == "pymc"
    crossed = blm.LMM("diameter ~ 1 + (1 | plate) + (1 | sample)", blm.datasets.load("Penicillin"))
    assert bayes.resolve_sampler(crossed._bayes_setup(None), None, marginalize=True) == "kernel"
    monkeypatch.setattr(compiled_blocked, "MAX_SECOND_BLOCK", 5)  # a second block the kernel does not take
    with pytest.warns(blm.SamplerFallbackWarning, match="not this one yet: PyMC's NUTS samples it"):
        assert bayes.resolve_sampler(crossed._bayes_setup(None), None, marginalize=True) == "pymc"
    with warnings.catch_warnings():  # chosen explicitly: no warning
        warnings.simplefilter("error")
        assert bayes.resolve_sampler(crossed._bayes_setup(None), "pymc", marginalize=True) == "pymc"


def test_without_a_writable_cache_directory_the_kernel_compiles_in_memory_with_a_warning(monkeypatch):
    monkeypatch.setattr(CacheImpl, "_locator_classes", [])  # none usable, as on a read-only system

    def twice(x):
        return 2.0 * x

    with pytest.warns(RuntimeWarning, match="NUMBA_CACHE_DIR"):
        compiled = cached(numba.njit, twice)
    assert compiled(1.5) == 3.0
