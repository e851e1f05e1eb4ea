"""model/priors.py: the data-scaled defaults as its docstring states them, β's prior as a
Gaussian density, overrides by name, and errors that name what is wrong."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

import bayeslmm as blm
from bayeslmm.model.priors import (
    LOG_2PI,
    Exponential,
    Flat,
    HalfNormal,
    HalfStudentT,
    Normal,
    ResidualPrior,
    ScaledBeta,
    TermPrior,
    resolve,
)

SLOPES = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep():
    return blm.datasets.load("sleepstudy")


def _spec(sleep, formula=SLOPES, **columns):
    return blm.LMM(formula, sleep.assign(**columns)).spec


def _sd(values) -> float:
    values = np.asarray(values, float)
    return float(np.sqrt(np.mean((values - values.mean()) ** 2)))


def test_defaults_are_the_documented_data_scaled_ones(sleep):
    y, days = sleep["Reaction"].to_numpy(), sleep["Days"].to_numpy()
    priors = resolve(_spec(sleep), ("Subject",))
    # the intercept at the predictors' means: Normal(mean(y), 2.5 sd(y)); a slope: 2.5 sd(y) / sd(x)
    assert priors.beta.names == ("(Intercept)", "Days")
    intercept, slope = priors.beta.coordinates
    assert intercept.mu == pytest.approx(y.mean(), rel=1e-12)
    assert intercept.sigma == pytest.approx(2.5 * _sd(y), rel=1e-12)
    assert slope.mu == 0 and slope.sigma == pytest.approx(2.5 * _sd(y) / _sd(days), rel=1e-12)
    np.testing.assert_allclose(priors.beta.A, [[1, days.mean()], [0, 1]], rtol=1e-12)
    # random-effect sds: HalfStudentT(3, sd(y) / rms(column)); LKJ(2); σ: Exponential with mean sd(y)
    (term,) = priors.terms
    assert [type(p) for p in term.sds] == [HalfStudentT, HalfStudentT] and term.eta == 2
    np.testing.assert_allclose([p.sigma for p in term.sds], [_sd(y), _sd(y) / np.sqrt(np.mean(days**2))],
                               rtol=1e-12)
    assert [p.nu for p in term.sds] == [3, 3]
    assert isinstance(priors.sigma, Exponential) and priors.sigma.scale == pytest.approx(_sd(y), rel=1e-12)
    assert priors.residual is None
    assert resolve(_spec(sleep), ("Subject",), residual=True).residual == ResidualPrior(ScaledBeta(1, 1),
                                                                                         Normal(0, 1), 2.0)


def test_defaults_follow_the_units_of_the_data(sleep):
    """Reaction in seconds instead of ms and Days in weeks: every default scale moves with them,
    so the prior says the same thing about the same data."""
    ms = resolve(_spec(sleep), ("Subject",))
    s = resolve(_spec(sleep, Reaction=sleep["Reaction"] / 1000, Days=sleep["Days"] / 7), ("Subject",))
    unit = np.array([1 / 1000, 7 / 1000])  # β_0 in s, β_Days in s per week
    np.testing.assert_allclose([c.sigma for c in s.beta.coordinates],
                               unit * [c.sigma for c in ms.beta.coordinates], rtol=1e-10)
    np.testing.assert_allclose([p.sigma for p in s.terms[0].sds],
                               unit * [p.sigma for p in ms.terms[0].sds], rtol=1e-10)
    assert s.sigma.scale == pytest.approx(ms.sigma.scale / 1000, rel=1e-10)


def test_beta_prior_is_the_gaussian_density_of_the_intercept_at_the_means(sleep):
    """−½(β'P₀β − 2β'shift + constant + p log 2π) = Σ_j log N(γ_j | μ_j, s_j), γ = Aβ, summing over
    the Gaussian coordinates only (a Flat one adds nothing)."""
    spec = _spec(sleep)
    rng = np.random.default_rng(0)
    for overrides in ({}, {"Days": Flat()}):
        beta_prior = resolve(spec, ("Subject",), overrides).beta
        for _ in range(3):
            beta = rng.normal([250, 10], [20, 5])
            quadratic = beta @ beta_prior.precision @ beta - 2 * beta @ beta_prior.shift
            ours = -0.5 * (quadratic + beta_prior.constant + len(beta) * LOG_2PI)
            gamma = beta_prior.A @ beta
            dense = sum(norm.logpdf(g, c.mu, c.sigma) for g, c in zip(gamma, beta_prior.coordinates)
                        if isinstance(c, Normal))
            assert ours == pytest.approx(dense, rel=1e-12)


def test_overrides_by_name(sleep):
    spec = _spec(sleep)
    defaults = resolve(spec, ("Subject",))
    priors = resolve(spec, ("Subject",), {"Days": Normal(0, 1), "Subject": {"sd": HalfNormal(10), "eta": 4},
                                          "sigma": HalfNormal(30)})
    assert priors.beta.coordinates == (defaults.beta.coordinates[0], Normal(0, 1))
    assert priors.terms[0].sds == (HalfNormal(10),) * 2 and priors.terms[0].eta == 4
    assert priors.sigma == HalfNormal(30)
    # "fixef" sets every fixed effect; a name beats it
    every = resolve(spec, ("Subject",), {"fixef": Flat(), "Days": Normal(1, 2)}).beta
    assert every.coordinates == (Flat(), Normal(1, 2))
    # an uncorrelated term's second column is its own term, "Subject.1"
    split = resolve(_spec(sleep, "Reaction ~ Days + (Days || Subject)"), ("Subject", "Subject.1"),
                    {"Subject.1": {"sd": Exponential(5)}})
    assert split.terms == (TermPrior((defaults.terms[0].sds[0],), 2.0), TermPrior((Exponential(5),), 2.0))
    residual = resolve(spec, ("Subject",), {"residual": {"rho": ScaledBeta(2, 2), "eta": 3}}, residual=True)
    assert residual.residual == ResidualPrior(ScaledBeta(2, 2), Normal(0, 1), 3)


@pytest.mark.parametrize("overrides, message", [
    ({"Dayz": Normal(0, 1)}, r"no parameter named 'Dayz'.*valid names: fixef, sigma, \(Intercept\), Days, Subject"),
    ({"residual": {}}, r"no parameter named 'residual'"),  # only with a residual structure
    ({"Days": HalfNormal(1)}, r"fixed effect 'Days' must be bayeslmm.priors.Normal or Flat, not HalfNormal"),
    ({"fixef": Exponential(1)}, r"fixed effect '\(Intercept\)' must be .*Normal or Flat, not Exponential"),
    ({"sigma": Normal(0, 1)}, r"prior on sigma must be HalfStudentT, HalfNormal or Exponential .*not Normal"),
    ({"Subject": {"scale": HalfNormal(1)}}, r"random term 'Subject' is a dict with keys 'sd' and/or 'eta'"),
    ({"Subject": HalfNormal(1)}, r"random term 'Subject' is a dict"),
    ({"Subject": {"sd": Normal(0, 1)}}, r"prior on Subject sd must be HalfStudentT"),
    ({"Subject": {"eta": 0}}, r"LKJ shape eta of 'Subject' must be positive; got 0"),
])
def test_bad_overrides_name_the_problem(sleep, overrides, message):
    with pytest.raises(blm.LMMError, match=message):
        resolve(_spec(sleep), ("Subject",), overrides)


@pytest.mark.parametrize("override, message", [
    ({"phi": ScaledBeta()}, r"dict with keys 'rho' \(ScaledBeta\), 'log_sd_ratio' \(Normal\)"),
    ({"rho": Normal(0, 1)}, r"residual prior 'rho' must be ScaledBeta; got Normal"),
    ({"eta": -1}, r"residual prior 'eta' must be a positive number; got -1"),
])
def test_bad_residual_overrides_name_the_problem(sleep, override, message):
    with pytest.raises(blm.LMMError, match=message):
        resolve(_spec(sleep), ("Subject",), {"residual": override}, residual=True)
