"""The compiled kernel with a residual structure equals the PyMC marginalised model (the
specification): its logp and dlogp at random points, priors and Jacobians included; its
component statistics are the structure's own whitening; NUTS over it is the default and its
posterior agrees with PyMC's NUTS."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from test_kernel import _assert_kernel_equals_pymc

import bayeslmm as blm
from bayeslmm import bayes
from bayeslmm.bayes import kernel_residual
from bayeslmm.bayes.kernel import kernel_covers, log_density, parameter_blocks
from bayeslmm.fit import residual as fit_residual
from bayeslmm.linalg import compiled_residual
from bayeslmm.linalg.crossprod import cross_products

pytestmark = pytest.mark.filterwarnings("ignore:.*BLAS.*", "ignore::bayeslmm.PosteriorWarning",
                                        "ignore::bayeslmm.SingularFitWarning")


@pytest.fixture(scope="module")
def sitka():
    data = blm.datasets.load("Sitka")
    return data.assign(t=(data["time"] - 200.0) / 50.0)  # days centred and scaled: slopes of size ~1


@pytest.fixture(scope="module")
def gappy(sitka):
    """A quarter of the visits missing: gaps of 2, 3 and 4 visits within trees (ρ^d), groups of unequal size."""
    return sitka[np.random.default_rng(1).uniform(size=len(sitka)) > 0.25]


COVERED = [
    ("size ~ t * treat + (1 | tree)", "ar1(visit | tree)", False),
    ("size ~ t * treat + (1 | tree)", "ar1(time | tree)", False),  # time in days: gaps of 22–31 (ρ^d)
    ("size ~ t * treat + (1 | tree)", "ar1(visit | tree)", True),
    ("size ~ t * treat + (1 + t | tree)", "ar1(visit | tree)", False),
    ("size ~ t * treat + (1 | tree)", "ar1h(visit | tree)", True),
    ("size ~ t * treat + (1 | tree)", "cs(tree)", True),
    ("size ~ t * treat + (1 | tree)", "het(treat)", False),
    ("size ~ t * treat + (1 | tree)", "cs(tree) + het(treat)", True),
    ("size ~ t * treat + (1 | tree)", "ar1(visit | tree) + het(treat)", True),
    ("size ~ t * treat", "ar1(visit | tree)", False),  # no random effects (nlme's gls)
    ("size ~ t * treat", "ar1h(visit | tree)", False),
]


@pytest.mark.parametrize("formula, structure, with_gaps", COVERED)
def test_kernel_equals_pymc_with_a_residual_structure(sitka, gappy, formula, structure, with_gaps):
    """The gradient equals PyMC's dlogp to 1e-8 and the log-density PyMC's logp up to one constant
    (the same at every point to 1e-9, itself below 1e-7: PyMC's float32 prior constants), with the
    structure's parameters among the coordinates (test_kernel.py's check)."""
    model = blm.LMM(formula, gappy if with_gaps else sitka, residual=structure)
    assert parameter_blocks(model._bayes_setup(None))[-1].transform != "log"  # the structure's variables last
    _assert_kernel_equals_pymc(model)


@pytest.mark.parametrize("formula, structure, with_gaps", COVERED[:1] + COVERED[4:9])
def test_gradient_in_the_structure_equals_central_differences(sitka, gappy, formula, structure, with_gaps):
    model = blm.LMM(formula, gappy if with_gaps else sitka, residual=structure)
    setup = model._bayes_setup(None)
    kernel = log_density(setup)
    x = np.random.default_rng(3).normal(scale=0.5, size=sum(b.size for b in parameter_blocks(setup)))
    x[0] += np.log(0.3)
    value, gradient = kernel(x)
    step = 1e-5
    central = np.array([(kernel(x + h)[0] - kernel(x - h)[0]) / (2 * step) for h in np.eye(x.size) * step])
    np.testing.assert_allclose(gradient, central, rtol=1e-6, atol=1e-6 * abs(value))


@pytest.mark.parametrize("formula, structure, with_gaps", COVERED)
def test_component_statistics_are_the_structures_whitening(sitka, gappy, formula, structure, with_gaps):
    """Σ_c w_c(φ) S_c and Σ log|R_i D_i²| equal the cross-products of the rows the structure itself
    whitens (the frequentist path's whitened_spec) at random φ."""
    model = blm.LMM(formula, gappy if with_gaps else sitka, residual=structure)
    setup = model._bayes_setup(None)
    rows = kernel_residual.residual_rows(setup.residual)
    parts = kernel_residual.components(setup, rows)
    info, *middle = kernel_residual.residual_arguments(setup, 0)[:6]
    rng = np.random.default_rng(5)
    for _ in range(3):
        xr = rng.normal(scale=0.8, size=len(setup.residual.start))
        ok, w, *_, logdet, _, _, _ = compiled_residual.residual_weights(xr, info, *middle)
        assert ok
        ZtZ, ZtXY, XYtXY = compiled_residual.weighted_statistics(w, parts.ZtZ, parts.ZtXY, parts.XYtXY)
        white, expected_logdet = fit_residual.whitened_spec(model.spec, setup.residual, _frequentist_phi(setup, xr))
        stats = cross_products(white)
        np.testing.assert_allclose(XYtXY, stats.XYtXY, rtol=1e-11, atol=1e-9)
        if model.spec.factors:
            np.testing.assert_allclose(ZtZ, stats.ZtZ1, rtol=1e-11, atol=1e-9)
            np.testing.assert_allclose(ZtXY, stats.ZtXY1, rtol=1e-11, atol=1e-9)
        assert logdet == pytest.approx(expected_logdet, rel=1e-12, abs=1e-10)


def _frequentist_phi(setup, xr) -> np.ndarray:
    """The frequentist φ at the kernel's (PyMC's) unconstrained residual coordinates."""
    rows = kernel_residual.residual_rows(setup.residual)
    if rows.kind == compiled_residual.VARIANCES_ONLY:
        return np.asarray(xr)
    u = 1.0 / (1.0 + np.exp(-xr[0]))
    if rows.kind == compiled_residual.AUTOREGRESSIVE:
        first = np.arctanh(2.0 * u - 1.0)  # ρ = tanh φ_0
    else:
        first = np.log(u / (1.0 - u))  # compound symmetry: ρ = low + (1 − low) · logistic(φ_0)
    return np.r_[first, xr[1:]]


def test_uncovered_structures_fall_back_with_a_warning_naming_them(sitka):
    toeplitz = blm.LMM("size ~ t * treat + (1 | tree)", sitka, residual="toep(visit | tree)")
    assert not kernel_covers(toeplitz._bayes_setup(None))
    with pytest.warns(blm.SamplerFallbackWarning, match="residual structure Toeplitz"):
        assert bayes.resolve_sampler(toeplitz._bayes_setup(None), None, marginalize=True) == "pymc"
    both = blm.LMM("size ~ t * treat + (1 | tree)", sitka, residual="ar1h(visit | tree) + het(treat)")
    with pytest.warns(blm.SamplerFallbackWarning, match=r"sampler='kernel'.*ARH1 & Heteroscedastic"):
        assert bayes.resolve_sampler(both._bayes_setup(None), "kernel", marginalize=True) == "pymc"


@pytest.fixture(scope="module")
def ar1_small(sitka):
    return blm.LMM("size ~ t + (1 | tree)", sitka, residual="ar1(visit | tree)")


@pytest.fixture(scope="module")
def ar1_kernel_fit(ar1_small):
    with warnings.catch_warnings():
        warnings.simplefilter("error", blm.SamplerFallbackWarning)  # the default no longer falls back
        return ar1_small.fit(method="NUTS", draws=600, tune=600, chains=2, random_seed=11, progressbar=False)


def test_nuts_on_an_ar1_model_runs_the_kernel_without_a_warning(ar1_kernel_fit, ar1_small):
    assert ar1_kernel_fit.sampler == "kernel"
    posterior = ar1_kernel_fit.posterior
    for name in ("sigma", "sd_tree", "rho_unit", "rho", "beta", "b_tree"):
        assert name in posterior
    assert posterior["b_tree"].dims == ("chain", "draw", "tree", "tree_effect")
    np.testing.assert_allclose(posterior["rho"], 2.0 * posterior["rho_unit"] - 1.0, rtol=1e-14)
    assert "log_likelihood" in ar1_kernel_fit.idata and ar1_kernel_fit.diagnostics["divergences"] == 0


def test_kernel_posterior_agrees_with_pymcs_nuts(ar1_small, ar1_kernel_fit):
    """The same posterior, up to Monte Carlo error (4 standard errors of the difference of means,
    each run's standard errors from its smallest bulk ESS)."""
    pymc_fit = ar1_small.fit(method="NUTS", sampler="pymc", draws=600, tune=600, chains=2, random_seed=11,
                             progressbar=False)
    for name in ("sigma", "sd_tree", "rho", "beta"):
        ours, theirs = ar1_kernel_fit.posterior[name], pymc_fit.posterior[name]
        se = [fit.posterior[name].std(("chain", "draw")).values / np.sqrt(fit.diagnostics["min_ess_bulk"])
              for fit in (ar1_kernel_fit, pymc_fit)]
        difference = np.abs(ours.mean(("chain", "draw")).values - theirs.mean(("chain", "draw")).values)
        assert np.all(difference < 4 * np.hypot(*se)), name


def test_to_and_from_unconstrained_round_trip_the_structures_variables(sitka):
    from bayeslmm.bayes.kernel_nuts import from_unconstrained, to_unconstrained

    model = blm.LMM("size ~ t * treat + (1 + t | tree)", sitka, residual="cs(tree) + het(treat)")
    setup = model._bayes_setup(None)
    x = np.random.default_rng(2).normal(size=sum(b.size for b in parameter_blocks(setup)))
    point = from_unconstrained(setup, x)
    assert 0 < point["rho_unit"] < 1 and point["rho_unit"].shape == ()
    np.testing.assert_allclose(to_unconstrained(setup, point), x, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("formula, structure", [("size ~ t * treat + (1 | tree)", "ar1h(visit | tree)"),
                                                ("size ~ t * treat", "cs(tree) + het(treat)")])
def test_statistics_of_a_draw_are_the_rows_whitened_at_its_parameters(sitka, formula, structure):
    """The exact draws' whitened statistics from the components equal the PyMC path's whitening
    of the rows at the draw's ρ and sd ratios."""
    import xarray as xr

    from bayeslmm.bayes.model import whitened_cross_products

    model = blm.LMM(formula, sitka, residual=structure)
    setup = model._bayes_setup(None)
    rows = kernel_residual.residual_rows(setup.residual)
    rng = np.random.default_rng(8)
    posterior = xr.Dataset({"rho_unit": (("chain", "draw"), rng.uniform(0.05, 0.95, (1, 3))),
                            rows.ratios.free_name: (("chain", "draw", "k"), rng.normal(0, 0.5, (1, 3, rows.ratios.size)))})
    posterior = kernel_residual.add_residual_variables(setup, posterior)
    at = kernel_residual.draw_statistics(setup, posterior)
    for d in range(3):
        expected, _ = whitened_cross_products(setup, setup.residual.posterior_natural(posterior, d), xp=np)
        ours = at(d)
        np.testing.assert_allclose(ours.XYtXY, expected.XYtXY, rtol=1e-11)
        if model.spec.factors:
            np.testing.assert_allclose(ours.ZtZ1, expected.ZtZ1, rtol=1e-11)
            np.testing.assert_allclose(ours.ZtXY1, expected.ZtXY1, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("structure", ["ar1(visit | tree)", "cs(tree)"])
def test_a_correlation_at_the_end_of_its_range_has_log_density_minus_infinity(sitka, structure):
    """ρ's Beta variable rounding onto 0 or 1 (ρ = ±1, or CS's lowest ρ) makes R singular: −∞ with a
    zero gradient, as nutpie expects of a point outside the support, and no division by zero."""
    model = blm.LMM("size ~ t + (1 | tree)", sitka, residual=structure)
    setup = model._bayes_setup(None)
    kernel = log_density(setup)
    x = np.zeros(sum(b.size for b in parameter_blocks(setup)))
    for logit in (40.0, -40.0):
        x[-1] = logit
        value, gradient = kernel(x)
        assert value == -np.inf and not gradient.any()
    x[-1] = 3.0
    assert np.isfinite(kernel(x)[0])
