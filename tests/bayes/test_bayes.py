"""The Bayesian path: one log-density with the frequentist fit, exact conditional draws,
agreement of the marginalised and hierarchical samplers, tables, prediction and LOO."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from scipy.special import logsumexp
from scipy.stats import multivariate_normal, norm

import bayeslmm as blm
from bayeslmm import bayes
from bayeslmm.linalg import logdensity as ld
from bayeslmm.model.priors import Flat, HalfNormal, Normal

pytestmark = pytest.mark.filterwarnings("ignore:.*BLAS.*", "ignore::bayeslmm.PosteriorWarning")

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def model(sleepstudy_module):
    return blm.LMM(FORMULA, sleepstudy_module)


@pytest.fixture(scope="module")
def sleepstudy_module():
    return blm.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def quick(model):
    """A short marginalised run: enough for tables, prediction and LOO."""
    return model.fit(method="NUTS", draws=300, tune=400, chains=2, random_seed=11, progressbar=False)


def _parameters_at(model_pm, point):
    """σ and the Cholesky factor of Subject's covariance implied by a point of the PyMC model."""
    values = dict(zip([v.name for v in model_pm.unobserved_value_vars],
                      model_pm.compile_fn(model_pm.unobserved_value_vars, inputs=model_pm.value_vars,
                                          on_unused_input="ignore")(point)))
    sigma = values["sigma"]
    return float(sigma), values["sd_Subject"][:, None] * values["corr_chol_Subject"]


def test_marginal_model_log_density_is_the_shared_log_density(model):
    """logp(model) = −½ deviance_beta_integrated (NumPy) + log priors + log Jacobians, to 1e-8."""
    pm_model = model.pymc_model(marginalize=True)
    total = pm_model.compile_logp()
    priors_only = pm_model.compile_logp(vars=pm_model.free_RVs)
    setup = model._bayes_setup(None)
    prior = setup.priors.beta
    rng = np.random.default_rng(5)
    for _ in range(5):
        point = {v.name: rng.normal(0, 0.7, size=np.shape(pm_model.initial_point()[v.name]))
                 + pm_model.initial_point()[v.name] for v in pm_model.value_vars}
        point["sigma_log__"] = np.log(20.0) + rng.normal(0, 0.3)
        sigma, chol = _parameters_at(pm_model, point)
        fact = ld.factorize_T([chol / sigma], model.stats)
        shared = -0.5 * ld.deviance_beta_integrated(fact.C, fact.logdet, model.spec.n, sigma**2,
                                                    prior.precision, prior.shift, prior.constant)
        assert total(point) == pytest.approx(priors_only(point) + shared, abs=1e-8, rel=1e-12)


def test_the_sigma_prior_term_is_the_documented_exponential(model):
    """The prior part is what the docs say: σ ~ Exponential(mean sd(y)), with the log-transform's Jacobian."""
    pm_model = model.pymc_model(marginalize=True)
    sigma_logp = pm_model.compile_logp(vars=[pm_model["sigma"]])
    scale = float(np.std(model.spec.y))
    for log_sigma in (2.0, 3.3):
        expected = -np.log(scale) - np.exp(log_sigma) / scale + log_sigma
        point = {**pm_model.initial_point(), "sigma_log__": log_sigma}
        assert sigma_logp(point) == pytest.approx(expected, abs=1e-10)


def test_flat_prior_posterior_mode_of_variance_parameters_is_reml(model):
    """With β flat, the marginal log-density (the one the PyMC model evaluates, as the test above
    shows) is REML's: its mode over (θ, σ) is the REML estimate."""
    flat = model._bayes_setup({"fixef": Flat()}).priors.beta

    def deviance(x):
        fact = ld.factorize(x[:-1], model.stats, model.layout)
        return ld.deviance_beta_integrated(fact.C, fact.logdet, model.spec.n, np.exp(2 * x[-1]),
                                           flat.precision, flat.shift, flat.constant)

    start = np.append(model.layout.start, np.log(np.std(model.spec.y)))
    best = minimize(deviance, start, method="BFGS", options={"gtol": 1e-6})
    reml = model.fit()
    sigma = np.exp(best.x[-1])
    T = model.layout.factors_T(best.x[:-1])[0]  # θ's column signs are not identified; D is
    np.testing.assert_allclose(sigma**2 * T @ T.T, reml.term_covariances()[0], rtol=1e-4)
    np.testing.assert_allclose(sigma, reml.sigma, rtol=1e-5)
    assert -0.5 * best.fun == pytest.approx(reml.loglik, abs=1e-6)


@pytest.mark.parametrize("formula, data", [(FORMULA, "sleepstudy"),
                                           ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin")])
def test_conditional_draws_are_exact(formula, data):
    """At fixed (σ, D) and a flat β prior, draws of β and b have the GLS / BLUP moments."""
    model = blm.LMM(formula, blm.datasets.load(data))
    reml = model.fit()
    setup = model._bayes_setup({"fixef": Flat()})
    D = 8000 if len(model.spec.factors) == 1 else 2000
    sigma = np.full(D, reml.sigma)
    chols = [np.broadcast_to(np.linalg.cholesky(cov + 1e-300 * np.eye(len(cov))), (D,) + cov.shape)
             for cov in reml.term_covariances()]
    beta, b = bayes.conditional_draws(setup, sigma, chols, np.random.default_rng(0))
    se = reml.se().to_numpy()
    assert np.all(np.abs(beta.mean(axis=0) - reml.fixef().to_numpy()) < 4 * se / np.sqrt(D))
    np.testing.assert_allclose(np.cov(beta.T).reshape(reml.vcov().shape), reml.vcov().to_numpy(), rtol=0.1)
    ranef = reml.ranef()
    draws = np.concatenate([bf.transpose(0, 2, 1).reshape(D, -1) for bf in b], axis=1)
    assert np.all(np.abs(draws.mean(axis=0) - ranef["condval"]) < 4.5 * ranef["condsd"] / np.sqrt(D) + 1e-9)
    # the draws' spread adds the uncertainty in β to lme4's condsd, so it can only be larger
    assert np.all(draws.std(axis=0) >= 0.97 * ranef["condsd"])


def test_marginalised_and_hierarchical_posteriors_agree(model):
    """Means and 5%/95% quantiles of β, sds, correlation and σ agree within Monte Carlo error."""
    kwargs = dict(draws=1000, tune=1000, chains=4, progressbar=False)
    fast = model.fit(method="NUTS", random_seed=1, **kwargs)
    slow = model.fit(method="NUTS", random_seed=2, marginalize=False, **kwargs)
    for table in ("fixef", "varcorr"):
        a, b = getattr(fast, table)(), getattr(slow, table)()
        mc_error = np.sqrt(a["mcse_mean"] ** 2 + b["mcse_mean"] ** 2)
        assert np.all(np.abs(a["mean"] - b["mean"]) < 4 * mc_error)
    for name in ("beta", "sd_Subject", "corr_Subject", "sigma"):
        x, y = fast.posterior[name], slow.posterior[name]
        for q in (0.05, 0.95):
            qx = x.quantile(q, dim=("chain", "draw")).values
            qy = y.quantile(q, dim=("chain", "draw")).values
            # the quantiles' own Monte Carlo errors, as for the means above (a fixed 0.12 sd was
            # about one Monte Carlo standard error of the 95% quantile of a skewed sd)
            mc_error = np.hypot(quantile_mcse(x, q), quantile_mcse(y, q))
            assert np.all(np.abs(qx - qy) < 4 * mc_error)


def quantile_mcse(draws, q: float) -> np.ndarray:
    from arviz_stats import mcse

    return np.asarray(mcse(draws, method="quantile", prob=q)).reshape(-1)


def test_result_tables_and_data(quick, model):
    assert list(quick.fixef().index) == ["(Intercept)", "Days"]
    for column in ("mean", "sd", "ess_bulk", "ess_tail", "r_hat"):
        assert column in quick.fixef().columns
    assert {"l-95% CI", "u-95% CI"} <= set(quick.fixef().columns)
    vc = quick.varcorr()
    assert list(vc[["grp", "var1"]].fillna("").itertuples(index=False, name=None)) == [
        ("Subject", "(Intercept)"), ("Subject", "Days"), ("Subject", "(Intercept)"), ("Residual", "")]
    assert vc["var2"].tolist()[2] == "Days"
    ranef = quick.ranef()
    assert list(ranef.columns[:3]) == ["grpvar", "term", "grp"] and len(ranef) == 36
    assert list(ranef["grp"][:18]) == list(model.spec.factors[0].levels)
    shares = quick.variance_components().query("measure == 'var_prop'")
    assert shares["group"].tolist() == ["Subject", "Residual"]
    assert np.all((shares["mean"] > 0) & (shares["mean"] < 1))
    for group in ("posterior", "sample_stats", "observed_data", "log_likelihood"):
        assert group in quick.idata.children
    posterior = quick.posterior
    assert posterior["b_Subject"].dims == ("chain", "draw", "Subject", "Subject_effect")
    assert list(posterior["beta"].coords["fixef"].values) == ["(Intercept)", "Days"]
    text = str(quick.summary())
    assert "Fixed effects:" in text and "Divergences:" in text and "<table" in quick._repr_html_()


def test_tables_have_the_labels_of_the_reml_fit(quick, model):
    """One API: the same rows, labelled the same, in both result types."""
    reml = model.fit()
    assert list(quick.fixef().index) == list(reml.fixef().index)
    labels = ["grp", "var1", "var2"]
    pd.testing.assert_frame_equal(quick.varcorr()[labels], reml.varcorr()[labels])
    labels = ["grpvar", "term", "grp"]
    pd.testing.assert_frame_equal(quick.ranef()[labels], reml.ranef()[labels])
    frequentist = reml.variance_components()
    expected = [(row.group, row.effect, measure) for row in frequentist.itertuples()
                for measure in ("variance", "sd", "var_prop", "icc") if not np.isnan(getattr(row, measure))]
    assert list(quick.variance_components()[["group", "effect", "measure"]].itertuples(index=False, name=None)) \
        == expected


def test_level_sets_the_equal_tailed_interval(quick):
    """level=0.9: columns l-90% CI and u-90% CI, the 5% and 95% quantiles of the draws, inside
    the default 95% interval."""
    wide, narrow = quick.fixef(), quick.fixef(level=0.9)
    assert {"l-95% CI", "u-95% CI"} <= set(wide.columns) and "l-95% CI" not in narrow.columns
    draws = quick.posterior["beta"].values.reshape(-1, 2)
    np.testing.assert_allclose(narrow[["l-90% CI", "u-90% CI"]].to_numpy(),
                               np.quantile(draws, [0.05, 0.95], axis=0).T, rtol=1e-10)
    np.testing.assert_allclose(wide[["l-95% CI", "u-95% CI"]].to_numpy(),
                               np.quantile(draws, [0.025, 0.975], axis=0).T, rtol=1e-10)
    assert np.all(narrow["l-90% CI"] > wide["l-95% CI"]) and np.all(narrow["u-90% CI"] < wide["u-95% CI"])
    for table in (quick.varcorr(level=0.9), quick.ranef(level=0.9), quick.variance_components(level=0.9),
                  quick.predict(level=0.9)):
        assert {"l-90% CI", "u-90% CI"} <= set(table.columns)
    with pytest.raises(blm.LMMError, match="level must be between 0 and 1"):
        quick.fixef(level=95)


def test_variance_components_summarise_the_partition_of_each_draw(quick):
    """One factor: the ICC of each draw is d / (d + σ²) (the course notes' ρ), summarised."""
    sd = quick.posterior["sd_Subject"].isel(Subject_effect=0).values
    sigma = quick.posterior["sigma"].values
    rho = sd**2 / (sd**2 + sigma**2)
    table = quick.variance_components().set_index(["group", "effect", "measure"])
    icc = table.loc[("Subject", "(Intercept)", "icc")]
    assert icc["mean"] == pytest.approx(rho.mean(), rel=1e-12)
    assert icc["l-95% CI"] == pytest.approx(np.quantile(rho, 0.025), rel=1e-10)
    assert table.loc[("Subject", "Days", "variance"), "mean"] == pytest.approx(
        (quick.posterior["sd_Subject"].isel(Subject_effect=1).values ** 2).mean(), rel=1e-12)


def _draws(posterior, name) -> np.ndarray:
    return posterior[name].values.reshape(-1, *posterior[name].shape[2:])


def test_result_tables_summarise_the_draws(quick):
    """Each row's mean and sd are those of its draws; the 95% interval holds 95% of them."""
    post = quick.posterior
    b = _draws(post, "b_Subject")  # (draws, subject, effect); ranef lists effect by effect
    cases = [(quick.fixef(), _draws(post, "beta")),
             (quick.varcorr(), np.column_stack([_draws(post, "sd_Subject"), _draws(post, "corr_Subject"),
                                                _draws(post, "sigma")])),
             (quick.ranef(), np.concatenate([b[:, :, 0], b[:, :, 1]], axis=1))]
    for table, draws in cases:
        np.testing.assert_allclose(table["mean"], draws.mean(axis=0), rtol=1e-10)
        np.testing.assert_allclose(table["sd"], draws.std(axis=0, ddof=1), rtol=1e-6)
        inside = ((draws >= table["l-95% CI"].to_numpy()) & (draws <= table["u-95% CI"].to_numpy())).mean(axis=0)
        assert np.all(np.abs(inside - 0.95) < 0.01)


def test_posterior_is_near_reml(quick, model):
    reml = model.fit()
    fixef = quick.fixef()
    assert np.all(np.abs(fixef["mean"] - reml.fixef()) < 0.5 * fixef["sd"])
    assert np.all(np.abs(fixef["sd"] / reml.se() - 1) < 0.25)


def test_prediction(quick, sleepstudy_module):
    fitted = quick.predict()
    assert len(fitted) == 180 and "mean" in fitted.columns
    new = pd.DataFrame({"Days": [0, 5, 5], "Subject": ["308", "new1", "new1"]})
    with pytest.raises(blm.LMMError, match="not seen in the fit.*allow_new_levels=True"):
        quick.predict(new)  # lme4's and brms's default: new levels are an error unless allowed
    mean = quick.predict(new, allow_new_levels=True, random_seed=1, summary=False)
    assert mean.shape[-1] == 3
    # two rows of the same new subject share that subject's random effect draws
    population = quick.predict(new, include_re=False, summary=False)
    shift = (mean - population).values
    assert np.allclose(shift[..., 1], shift[..., 2]) and shift[..., 1].std() > 5
    pps = quick.predict(new, kind="pps", allow_new_levels=True, random_seed=1)
    assert np.all(pps["sd"].to_numpy() > quick.predict(new, allow_new_levels=True, random_seed=1)["sd"].to_numpy())
    with pytest.raises(blm.LMMError, match="kind"):
        quick.predict(new, kind="median")
    idata = quick.sample_posterior_predictive(random_seed=3)
    assert idata["posterior_predictive"]["y"].shape[-1] == 180


def _lppd(loglik) -> float:
    """The in-sample log pointwise predictive density Σ_i log mean_s p(y_i | θ_s)."""
    pointwise = loglik.values.reshape(-1, loglik.shape[-1])
    return float(np.sum(logsumexp(pointwise, axis=0) - np.log(len(pointwise))))


def _assert_loo_consistent(loo, loglik, most):
    """elpd_loo lies below the in-sample lppd by p_loo, which is positive and below ``most``."""
    lppd = _lppd(loglik)
    assert float(loo.p) == pytest.approx(lppd - float(loo.elpd), rel=1e-8)
    assert 0 < float(loo.p) < most


@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto")  # 600 draws, one subject of 18 left out
def test_loo_by_observation_and_by_group(quick, model, sleepstudy_module):
    """By observation the log-likelihood is log N(y_i | x_iβ + z_i b, σ²) at each draw (β, b, σ);
    by group it is the subject's marginal log N(y_g | X_gβ, σ²I + Z_g D Z_g'). LOO agrees with
    each; compare() ranks the fits by those elpd values."""
    spec, post = model.spec, quick.posterior
    codes, days = spec.factors[0].codes, sleepstudy_module["Days"].to_numpy()
    by_obs = quick.idata["log_likelihood"]["y"]
    by_group = bayes.group_log_likelihood(quick.idata, quick.setup)["y"]
    for chain, draw in [(0, 5), (1, 299)]:
        beta, b, sigma = (post[name].values[chain, draw] for name in ("beta", "b_Subject", "sigma"))
        mu = spec.X @ beta + b[codes, 0] + b[codes, 1] * days
        np.testing.assert_allclose(by_obs.values[chain, draw], norm.logpdf(spec.y, mu, sigma), rtol=1e-10)
        sd, corr = post["sd_Subject"].values[chain, draw], post["corr_Subject"].values[chain, draw, 0]
        D = np.outer(sd, sd) * np.array([[1, corr], [corr, 1]])
        for g in (0, 7, 17):
            rows = codes == g
            Z = np.column_stack([np.ones(rows.sum()), days[rows]])
            V = sigma**2 * np.eye(rows.sum()) + Z @ D @ Z.T
            dense = multivariate_normal.logpdf(spec.y[rows], spec.X[rows] @ beta, V)
            assert float(by_group.values[chain, draw, g]) == pytest.approx(dense, rel=1e-10)
    n_parameters = 2 + 3 + 1 + 2 * 18  # β, D, σ and the subjects' effects
    loo, loo_group = quick.loo(), quick.loo(by="group")
    assert loo.n_data_points == 180 and loo_group.n_data_points == 18
    _assert_loo_consistent(loo, by_obs, n_parameters)
    _assert_loo_consistent(loo_group, by_group, n_parameters)
    other = model.fit(method="NUTS", draws=300, tune=400, chains=2, random_seed=3, progressbar=False,
                      priors={"sigma": HalfNormal(50.0)})
    for by in ("obs", "group"):
        table = blm.compare({"default": quick, "halfnormal": other}, by=by)
        elpd = {name: float(result.loo(by=by).elpd) for name, result in (("default", quick), ("halfnormal", other))}
        assert table.index[0] == max(elpd, key=elpd.get)
        for name, value in elpd.items():  # ArviZ rounds the table's elpd to 2 significant digits
            assert table.loc[name, "elpd"] == pytest.approx(value, rel=0.01)
    with pytest.raises(blm.LMMError, match="by must be"):
        quick.loo(by="subject")


def test_hierarchical_model_structure(model, sleepstudy_module):
    hier = model.pymc_model(marginalize=False)
    names = {v.name for v in hier.free_RVs}
    assert names == {"sigma", "sd_Subject", "corr_chol_Subject", "beta_centred", "z_Subject"}
    assert {d.name for d in hier.deterministics} >= {"beta", "b_Subject", "corr_Subject"}
    assert hier.named_vars_to_dims["b_Subject"] == ("Subject", "Subject_effect")
    assert list(hier.coords["Subject"]) == list(model.spec.factors[0].levels)
    uncorrelated = blm.LMM("Reaction ~ Days + (Days || Subject)", sleepstudy_module).pymc_model()
    assert {v.name for v in uncorrelated.free_RVs} == {"sigma", "sd_Subject", "sd_Subject.1", "beta_centred",
                                                        "z_Subject"}


def test_priors_by_name_and_flat(model):
    setup = model._bayes_setup({"Days": Normal(0, 1), "Subject": {"sd": HalfNormal(10.0), "eta": 4},
                                "sigma": HalfNormal(30.0)})
    assert setup.priors.beta.coordinates[1] == Normal(0, 1)
    assert setup.priors.terms[0].eta == 4 and setup.priors.terms[0].sds == (HalfNormal(10.0),) * 2
    flat = model._bayes_setup({"fixef": Flat()}).priors.beta
    assert np.all(flat.precision == 0)
    prior = model.sample_prior_predictive(draws=50, random_seed=1)
    assert prior["prior_predictive"]["y"].shape == (1, 50, 180)


def test_bad_bayesian_input(model):
    with pytest.raises(blm.LMMError, match="valid names: fixef, sigma, \\(Intercept\\), Days, Subject"):
        model.fit(method="NUTS", priors={"Dayz": Normal(0, 1)})
    for bad in ({"draws": 0}, {"chains": 1.5}, {"tune": -1}, {"draws": True}):
        with pytest.raises(blm.LMMError, match="must be a"):
            model.fit(method="NUTS", progressbar=False, **bad)
    with pytest.raises(blm.LMMError, match="sampler"):
        model.fit(method="NUTS", sampler="stan")
    try:
        import nutpie  # noqa: F401
    except ImportError:
        with pytest.raises(blm.LMMError, match="bayeslmm\\[nutpie\\]"):
            model.fit(method="NUTS", sampler="nutpie")
    with pytest.raises(blm.LMMError, match="HalfStudentT, HalfNormal or Exponential"):
        model.fit(method="NUTS", priors={"sigma": Normal(0, 1)})
    with pytest.raises(blm.LMMError, match="compare needs"):
        blm.compare({"one": None})


def test_sampling_problems_are_warned_and_summarised(model):
    """Too few draws for a reliable ESS: a PosteriorWarning, and the same text in the summary."""
    with pytest.warns(blm.PosteriorWarning, match="effective sample size down to"):
        post = model.fit(method="NUTS", draws=15, tune=15, chains=2, random_seed=3, progressbar=False,
                         log_likelihood=False)
    assert any(p.startswith("effective sample size") for p in post.diagnostics["problems"])
    assert "WARNING: effective sample size down to" in str(post.summary())


@pytest.mark.slow
def test_nutpie_sampler_where_installed(model):
    pytest.importorskip("nutpie")
    post = model.fit(method="NUTS", sampler="nutpie", draws=300, tune=300, chains=2, random_seed=1,
                     progressbar=False)
    assert post.sampler == "nutpie" and post.posterior.sizes["draw"] == 300
    assert set(post.posterior["b_Subject"].dims) >= {"Subject", "Subject_effect"}
    reml = model.fit()
    np.testing.assert_allclose(post.fixef()["mean"], reml.fixef(), atol=2.5 * post.fixef()["sd"].max())


def test_several_factors_are_marginalised_by_default():
    """Crossed factors sample the marginalised model and draw b for both factors exactly; the
    posterior medians of σ and the sds sit near the REML estimates (weak priors, 144 rows)."""
    model = blm.LMM("diameter ~ 1 + (1 | plate) + (1 | sample)", blm.datasets.load("Penicillin"))
    result = model.fit(method="NUTS", draws=300, tune=300, chains=2, random_seed=1, progressbar=False)
    assert result.marginalize and {"b_plate", "b_sample"} <= set(result.posterior.data_vars)
    reml = model.fit()
    table = result.varcorr()
    medians = [float(result.posterior[v].median()) for v in ("sd_plate", "sd_sample", "sigma")]
    np.testing.assert_allclose(medians, reml.varcorr()["sdcor"].to_numpy(), rtol=0.35)
    assert table["r_hat"].max() < 1.05
    # crossed factors: the ICC of each draw is that factor's variance over the total
    sd_plate, sd_sample, sigma = (result.posterior[v].values.reshape(-1) for v in ("sd_plate", "sd_sample", "sigma"))
    icc = result.variance_components().query("measure == 'icc'").set_index("group")["mean"]
    total = sd_plate**2 + sd_sample**2 + sigma**2
    assert icc["plate"] == pytest.approx((sd_plate**2 / total).mean(), rel=1e-12)
    assert icc["sample"] == pytest.approx((sd_sample**2 / total).mean(), rel=1e-12)


@pytest.mark.parametrize("formula, data", [
    ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin"),  # crossed
    ("strength ~ 1 + (1 | batch/cask)", "Pastes"),  # nested
    ("Reaction ~ Days + (Days | Subject) + (1 | DayGroup)", "sleepstudy"),  # a 2×2 block and a crossed factor
])
def test_marginal_log_density_with_several_factors_is_the_shared_one(formula, data):
    """With several grouping factors the PyMC graph (the blocked Cholesky Op: the NumPy
    factorization inside the graph) equals the NumPy blocked Cholesky, which the lme4
    references check, plus log priors and Jacobians, to 1e-8."""
    frame = blm.datasets.load(data)
    if data == "sleepstudy":
        frame = frame.assign(DayGroup=(frame["Days"] // 3).astype(str))
    model = blm.LMM(formula, frame)
    pm_model = model.pymc_model(marginalize=True)
    total, priors_only = pm_model.compile_logp(), pm_model.compile_logp(vars=pm_model.free_RVs)
    names = [v.name for v in pm_model.unobserved_value_vars]
    values_of = pm_model.compile_fn(pm_model.unobserved_value_vars, inputs=pm_model.value_vars,
                                    on_unused_input="ignore")
    setup = model._bayes_setup(None)
    prior = setup.priors.beta
    rng = np.random.default_rng(3)
    start = pm_model.initial_point()
    for _ in range(3):
        point = {k: v + rng.normal(0, 0.5, np.shape(v)) for k, v in start.items()}
        values = dict(zip(names, values_of(point)))
        sigma = float(values["sigma"])
        chols = []
        for term, label in zip(model.spec.terms, setup.labels):
            if term.size == 1:
                chols.append(np.reshape(values[f"sd_{label}"], (1, 1, 1)))
            else:
                chols.append((values[f"sd_{label}"][:, None] * values[f"corr_chol_{label}"])[None])
        fact = ld.factorize_T(bayes.factor_Ts(setup, chols, np.array([sigma]), 0), model.stats)
        shared = -0.5 * ld.deviance_beta_integrated(fact.C, fact.logdet, model.spec.n, sigma**2,
                                                    prior.precision, prior.shift, prior.constant)
        assert total(point) == pytest.approx(priors_only(point) + shared, abs=1e-8, rel=1e-12)


@pytest.mark.parametrize("formula, data", [
    ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin"),  # scalar terms
    ("Reaction ~ Days + (Days | Subject) + (1 + Days | DayGroup)", "sleepstudy"),  # LKJ on both factors
])
def test_marginal_gradient_with_several_factors_equals_central_differences(formula, data):
    """NUTS's gradient of the marginalised model with several factors (the blocked Cholesky Op's
    exact vector-Jacobian product, then PyMC's own graph: priors, Jacobians, LKJ transforms) in
    every unconstrained coordinate, against central differences of the compiled log-density."""
    frame = blm.datasets.load(data)
    if data == "sleepstudy":
        frame = frame.assign(DayGroup=(frame["Days"] // 3).astype(str))
    pm_model = blm.LMM(formula, frame).pymc_model(marginalize=True)
    logp, dlogp = pm_model.compile_logp(), pm_model.compile_dlogp()
    rng = np.random.default_rng(4)
    start = pm_model.initial_point()
    names, sizes = list(start), [np.size(v) for v in start.values()]
    for _ in range(2):
        point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in start.items()}
        flat = np.concatenate([np.ravel(point[k]) for k in names])

        def at(x):
            pieces = np.split(x, np.cumsum(sizes)[:-1])
            return logp({k: piece.reshape(np.shape(start[k])) for k, piece in zip(names, pieces)})

        numeric = np.array([(at(flat + h) - at(flat - h)) / 2e-6 for h in 1e-6 * np.eye(flat.size)])
        np.testing.assert_allclose(dlogp(point), numeric, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_marginalised_and_hierarchical_agree_with_crossed_factors():
    """Penicillin's crossed plate and sample: means and 5 %/95 % quantiles of σ, both sds and β
    within 4 Monte Carlo standard errors of their difference (sample has 6 levels, so its sd's
    upper tail is long and its quantiles carry their own, larger, Monte Carlo error)."""
    import arviz as az

    model = blm.LMM("diameter ~ 1 + (1 | plate) + (1 | sample)", blm.datasets.load("Penicillin"))
    runs = [model.fit(method="NUTS", draws=1000, tune=1000, chains=4, random_seed=seed, marginalize=marginalize,
                      progressbar=False, target_accept=0.95) for seed, marginalize in ((1, True), (2, False))]
    for name in ("sigma", "sd_plate", "sd_sample", "beta"):
        a, b = (r.posterior[name].values.reshape(4000, -1) for r in runs)
        ess = np.minimum(*(np.asarray(az.ess(r.posterior[name].to_dataset(name="x"))["x"].values).reshape(-1)
                           for r in runs))
        mcse = np.sqrt(a.var(axis=0) / ess + b.var(axis=0) / ess)
        assert np.all(np.abs(a.mean(axis=0) - b.mean(axis=0)) < 4 * mcse), name
        for q in (0.05, 0.95):
            quantile_mcse = np.hypot(*(np.asarray(az.mcse(r.posterior[name].to_dataset(name="x"), method="quantile",
                                                          prob=q)["x"].values).reshape(-1) for r in runs))
            gap = np.abs(np.quantile(a, q, axis=0) - np.quantile(b, q, axis=0))
            assert np.all(gap < 4 * quantile_mcse), (name, q)


def test_draws_of_b_that_would_not_fit_in_memory_are_refused_before_sampling(model, monkeypatch):
    """18 subjects × 2 effects × 8 bytes × 2 (assembly) = 576 bytes per draw: with 1 MB 'available'
    and half of it allowed, at most 868 draws × chains; 4 × 1000 is refused before any sampling."""
    from bayeslmm.bayes import sampling

    setup = model._bayes_setup(None)
    sampling.check_random_effect_draws_fit(setup, 1000, 4, available=10**7)  # 4,000 × 576 B < 5 MB
    with pytest.raises(blm.LMMError, match=r"draws × chains = 868 here \(e.g. draws=217\)"):
        sampling.check_random_effect_draws_fit(setup, 1000, 4, available=10**6)
    monkeypatch.setattr(sampling, "_available_memory", lambda: 10**6)

    def never(*args, **kwargs):
        raise AssertionError("sampled although the draws of b would not fit")

    monkeypatch.setattr(sampling, "sample_kernel", never)
    monkeypatch.setattr(sampling, "_sample_pymc", never)
    with pytest.raises(blm.LMMError, match="would not fit in memory"):
        model.fit(method="NUTS", draws=1000, chains=4, progressbar=False)
