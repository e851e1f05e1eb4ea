"""Fits from a Dask DataFrame on a real distributed.LocalCluster equal the in-memory fits of the same rows."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

import bayeslmm as blm
from bayeslmm.bayes import group_log_likelihood
from bayeslmm.errors import LMMError

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    """Two worker processes of one thread each: every task's arguments really are pickled."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None, memory_limit="1GB")
    with distributed.Client(cluster) as connected:
        yield connected
    cluster.close()


def simulated(seed: int = 1, subjects: int = 40, visits: int = 8) -> pd.DataFrame:
    """Subjects × visits with a slope, a categorical covariate, crossed items, weights, AR(1)-ish
    errors and a few missing values; rows sorted by subject."""
    rng = np.random.default_rng(seed)
    subject = np.repeat(np.arange(subjects), visits)
    visit = np.tile(np.arange(visits), subjects)
    x = rng.normal(size=subject.size) + visit / 2
    item = rng.integers(0, 12, size=subject.size)
    arm = rng.choice(["control", "low", "high"], size=subject.size)
    b = rng.normal(size=(subjects, 2)) * [1.0, 0.4]
    e = np.zeros(subject.size)
    for i in range(1, subject.size):
        e[i] = (0.6 * e[i - 1] if visit[i] else 0.0) + rng.normal()
    y = (2.0 + 0.7 * x + (arm == "high") * 0.5 + b[subject, 0] + b[subject, 1] * x
         + rng.normal(size=12)[item] * 0.8 + e)
    frame = pd.DataFrame({"y": y, "x": x, "visit": visit, "arm": arm, "subject": [f"s{s:02d}" for s in subject],
                          "item": item, "w": rng.uniform(0.5, 2.0, size=subject.size)})
    frame.loc[[5, subject.size // 2 + 1], "x"] = np.nan  # rows dropped in both fits
    return frame


def assert_same_fit(memory, scaled) -> None:
    assert abs(memory.loglik - scaled.loglik) < 1e-8
    np.testing.assert_allclose(scaled.fixef(), memory.fixef(), rtol=1e-8)
    np.testing.assert_allclose(scaled.sigma, memory.sigma, rtol=1e-8)
    sds = memory.varcorr()["var2"].isna().to_numpy()  # the sds and σ (a correlation near 0 is not relative)
    np.testing.assert_allclose(scaled.varcorr()["sdcor"][sds], memory.varcorr()["sdcor"][sds], rtol=1e-8)
    np.testing.assert_allclose(scaled.varcorr()["sdcor"], memory.varcorr()["sdcor"], rtol=1e-5, atol=1e-8)
    assert scaled.nobs == memory.nobs and scaled.ngrps == memory.ngrps


def both(formula: str, data: pd.DataFrame, partitions: int = 3, **options):
    """The fit from a Dask DataFrame and the in-memory fit of the same rows started at its θ̂.

    Both optimisers stop at a scaled gradient of ~1e-6 at worst (L-BFGS-B's relative stop on the
    deviance), i.e. sds ~1e-8 to 1e-7 apart between two independent fits; started at the Dask
    fit's θ̂, the in-memory fit stays there only if that is its optimum to the last digits too."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the rows dropped, in both
        scaled = blm.LMM(formula, dd.from_pandas(data, npartitions=partitions, sort=False), **options).fit()
        independent = blm.LMM(formula, data, **options).fit()
        memory = blm.LMM(formula, data, **options).fit(start=scaled.theta)
    assert abs(independent.loglik - scaled.loglik) < 1e-8
    np.testing.assert_allclose(scaled.theta, independent.theta, rtol=1e-5, atol=1e-7)
    return memory, scaled


def test_one_factor_with_categorical_scale_and_poly(client):
    memory, scaled = both("y ~ C(arm) + scale(x) + poly(visit, 2) + (1 + x | subject)", simulated())
    assert_same_fit(memory, scaled)
    assert scaled.fixef().index.tolist() == memory.fixef().index.tolist()
    ranef_memory, ranef_scaled = memory.ranef(), scaled.ranef()
    np.testing.assert_allclose(ranef_scaled["condval"], ranef_memory["condval"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ranef_scaled["condsd"], ranef_memory["condsd"], rtol=1e-6)
    np.testing.assert_allclose(scaled.coef_table()["df"], memory.coef_table()["df"], rtol=1e-5)


def test_two_crossed_factors(client):
    memory, scaled = both("y ~ x + (1 | subject) + (1 | item)", simulated(2))
    assert_same_fit(memory, scaled)
    with pytest.raises(LMMError, match="nested"):  # read from the rows, which are not held
        scaled.variance_components()


def test_weights(client):
    memory, scaled = both("y ~ x + (1 + x | subject)", simulated(3), weights="w")
    assert_same_fit(memory, scaled)


def test_ar1_residual_structure(client):
    data = simulated(4, subjects=30, visits=6)
    residual = blm.cov.AR1(time="visit", group="subject")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        memory = blm.LMM("y ~ x + (1 | subject)", data, residual=residual).fit()
        by_subject = data.assign(key=data["subject"].str[1:].astype(int)).set_index("key")
        ddf = dd.from_pandas(by_subject, npartitions=3, sort=True)  # divisions by subject: none is split
        scaled = blm.LMM("y ~ x + (1 | subject)", ddf, residual=residual).fit()
    assert_same_fit(memory, scaled)
    np.testing.assert_allclose(scaled.state.phi, memory.state.phi, rtol=1e-6)


def test_residual_groups_across_partitions_are_an_error(client):
    data = simulated(5, subjects=10, visits=6)
    ddf = dd.from_pandas(data, npartitions=4, sort=False)  # 60 rows in 4 pieces of 15: subjects split
    with pytest.raises(LMMError, match=r"set_index\('subject'\)"):
        blm.LMM("y ~ x + (1 | subject)", ddf, residual=blm.cov.AR1(time="visit", group="subject"))


def test_lazy_rows_equal_in_memory(client):
    data = simulated(6)
    memory, scaled = both("y ~ x + (1 + x | subject)", data)
    fitted = scaled.fitted()
    assert type(fitted).__module__.startswith("dask")
    pd.testing.assert_series_equal(fitted.compute().sort_index(), memory.fitted().sort_index(), rtol=1e-7,
                                   check_names=False)
    residuals = scaled.residuals().compute().sort_index()
    np.testing.assert_allclose(residuals, memory.residuals().sort_index(), rtol=1e-6, atol=1e-8)
    new = dd.from_pandas(data.dropna().iloc[:50], npartitions=2)
    np.testing.assert_allclose(scaled.predict(new).compute(), memory.predict(data.dropna().iloc[:50]), rtol=1e-7)
    expected = -0.5 * ((residuals / memory.sigma) ** 2 + np.log(2 * np.pi * memory.sigma**2))
    np.testing.assert_allclose(scaled.pointwise_loglik().compute().sort_index(), expected, rtol=1e-6)
    assert "Scaled residuals" in str(scaled.summary())


def test_methods_that_need_rows_raise(client):
    _, scaled = both("y ~ x + C(arm) + (1 | subject)", simulated(7))
    for call, pattern in [(lambda: scaled.simulate(2), "simulate"), (lambda: scaled.bootstrap(5), "bootstrap"),
                          (lambda: scaled.coef_table(ddf="kenward-roger"), "Kenward"),
                          (lambda: scaled.anova(type=3), "type=1"),
                          (lambda: scaled.confint(method="bootstrap"), "bootstrap")]:
        with pytest.raises(LMMError, match=pattern):
            call()
    assert scaled.confint(method="wald").shape[0] == len(scaled.fixef()) + 2


def test_profile_confint_and_anova_from_statistics(client):
    memory, scaled = both("y ~ x + C(arm) + (1 | subject)", simulated(8))
    np.testing.assert_allclose(scaled.confint(), memory.confint(), rtol=1e-5)
    np.testing.assert_allclose(scaled.anova(type=1)["F value"], memory.anova(type=1)["F value"], rtol=1e-6)
    ml = scaled.refit("ML")
    assert abs(ml.loglik - memory.refit("ML").loglik) < 1e-8
    data = simulated(8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        smaller = blm.LMM("y ~ x + (1 | subject)", dd.from_pandas(data, npartitions=3)).fit("ML")
        smaller_memory = blm.LMM("y ~ x + (1 | subject)", data).fit("ML")
    lrt, lrt_memory = blm.anova(smaller, ml), blm.anova(smaller_memory, memory.refit("ML"))
    np.testing.assert_allclose(lrt["Chisq"].iloc[1], lrt_memory["Chisq"].iloc[1], rtol=1e-6)


def test_default_priors_equal_in_memory(client):
    data = simulated(9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        memory = blm.LMM("y ~ x + (1 + x | subject)", data)
        scaled = blm.LMM("y ~ x + (1 + x | subject)", dd.from_pandas(data, npartitions=3))
    np.testing.assert_allclose(numbers(scaled._bayes_setup(None).priors), numbers(memory._bayes_setup(None).priors),
                               rtol=1e-10)


def test_marginalised_posterior_from_the_statistics(client):
    data = simulated(10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = blm.LMM("y ~ x + (1 + x | subject)", dd.from_pandas(data, npartitions=3))
        post = model.fit(method="NUTS", draws=200, tune=200, chains=1, random_seed=1, progressbar=False)
    reml = model.fit()
    table = post.fixef()
    assert np.all(np.abs(table["mean"] - reml.fixef()) < 3 * table["sd"])
    assert post.idata["posterior"]["b_subject"].shape[-2] == 40  # exact draws of b for every group
    assert "observed_data" not in post.idata.children
    with pytest.raises(LMMError, match="loo\\(by='group'\\)"):  # the rows' log-likelihood needs the rows
        post.loo()
    with pytest.raises(LMMError, match="idata.to_netcdf"):
        post.save("never-written.nc")
    for refused in (lambda: model.fit(method="NUTS", marginalize=False), model.sample_prior_predictive):
        with pytest.raises(LMMError, match="Dask DataFrame does not hold its rows"):
            refused()


def nuts(model, seed: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few draws: ArviZ's diagnostics
        return model.fit(method="NUTS", draws=100, tune=150, chains=2, random_seed=seed, progressbar=False)


@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto")  # 200 draws, 40 groups
@pytest.mark.parametrize("weights", [None, "w"])
def test_group_log_likelihood_from_the_statistics(client, weights):
    """Each group's marginal log-likelihood (b integrated out) at the Dask posterior's draws, from the
    per-group statistics of the pass, equals the in-memory model's from its rows at the same draws."""
    data = simulated(11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        scaled = blm.LMM("y ~ x + (1 + x | subject)", dd.from_pandas(data, npartitions=3), weights=weights)
        memory = blm.LMM("y ~ x + (1 + x | subject)", data, weights=weights)
    assert scaled.stats.by_group is not None and memory.stats.by_group is None
    post = nuts(scaled, seed=2)
    from_statistics = group_log_likelihood(post.idata, post.setup)["y"]
    from_rows = group_log_likelihood(post.idata, memory._bayes_setup(None))["y"]
    assert from_statistics.shape == (2, 100, 40)
    assert list(from_statistics["subject"].values) == list(from_rows["subject"].values)
    np.testing.assert_allclose(from_statistics.values, from_rows.values, rtol=1e-8)
    loo = post.loo(by="group")
    assert loo.n_data_points == 40 and np.isfinite(float(loo.elpd))


@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto")
def test_compare_by_group_from_the_statistics(client):
    data = simulated(12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        slope = nuts(blm.LMM("y ~ x + (1 + x | subject)", dd.from_pandas(data, npartitions=3)), seed=3)
        intercept = nuts(blm.LMM("y ~ x + (1 | subject)", dd.from_pandas(data, npartitions=3)), seed=4)
        table = blm.compare({"slope": slope, "intercept": intercept}, by="group")
    assert sorted(table.index) == ["intercept", "slope"]
    assert table.loc[table.index[0], "elpd"] >= table.loc[table.index[1], "elpd"]
    with pytest.raises(LMMError, match="Dask DataFrame does not hold"):
        blm.compare({"slope": slope, "intercept": intercept})  # by observation: the rows
    memory = nuts(blm.LMM("y ~ x + (1 + x | subject)", data), seed=3)  # the same rows, in memory
    both = blm.compare({"dask": slope, "memory": memory}, by="group")
    assert sorted(both.index) == ["dask", "memory"]
    shifted = nuts(blm.LMM("y ~ x + (1 + x | subject)", data.assign(y=data["y"] + 1.0)), seed=3)
    with pytest.raises(LMMError, match="other data"):
        blm.compare({"dask": slope, "shifted": shifted}, by="group")


def test_group_log_likelihood_needs_one_factor_and_no_residual_structure(client):
    data = simulated(13)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        crossed = blm.LMM("y ~ x + (1 | subject) + (1 | item)", dd.from_pandas(data, npartitions=3))
        post = nuts(crossed, seed=5)
    assert crossed.stats.by_group is None
    with pytest.raises(LMMError, match="exactly one grouping factor"):
        post.loo(by="group")
    by_subject = data.assign(key=data["subject"].str[1:].astype(int)).set_index("key")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ar1 = blm.LMM("y ~ x + (1 | subject)", dd.from_pandas(by_subject, npartitions=3, sort=True),
                      residual=blm.cov.AR1(time="visit", group="subject"))
    with pytest.raises(LMMError, match="posterior with a residual structure"):
        ar1.fit(method="NUTS")


def numbers(priors) -> np.ndarray:
    """Every number of the resolved priors, in order."""
    flat, pending = [], [dataclasses.astuple(priors)]
    while pending:
        item = pending.pop(0)
        if isinstance(item, (tuple, list)):
            pending = list(item) + pending
        elif isinstance(item, np.ndarray) or isinstance(item, (int, float)) and not isinstance(item, bool):
            flat.extend(np.ravel(item).astype(float))
    return np.asarray(flat)


def test_import_does_not_import_dask():
    code = "import sys, bayeslmm; print(any(m.split('.')[0] in ('dask', 'distributed') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
