"""Every model and result pickles and works after loading; posteriors round-trip through netCDF,
also into another process."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest

import bayeslmm as blm
from bayeslmm import persist
from bayeslmm.model import priors
from bayeslmm.model import residual as cov
from conftest import REPO

FORMULA = "Reaction ~ Days + (Days | Subject)"
pytestmark = pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto")  # 100 draws


@pytest.fixture(scope="module")
def sleep():
    return blm.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def reml(sleep):
    return blm.LMM("Reaction ~ scale(Days) + (Days | Subject)", sleep).fit()


@pytest.fixture(scope="module")
def posterior(sleep):
    model = blm.LMM(FORMULA, sleep)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", blm.PosteriorWarning)  # 100 draws: low ESS is expected
        return model.fit(method="NUTS", draws=100, tune=100, chains=2, random_seed=5, progressbar=False)


def _round_trip(obj):
    return pickle.loads(pickle.dumps(obj))


def _in_another_process(code: str) -> None:
    """Run ``code`` in a fresh interpreter that imports this checkout's bayeslmm."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def _tables(fit) -> dict:
    return {"fixef": fit.fixef(), "varcorr": fit.varcorr(), "ranef": fit.ranef(), "coef_table": fit.coef_table(),
            "anova": fit.anova(), "summary": str(fit.summary())}


def _bayes_tables(post, newdata) -> dict:
    return {"fixef": post.fixef(), "varcorr": post.varcorr(), "ranef": post.ranef(), "summary": str(post.summary()),
            "predict": post.predict(newdata), "loo": float(post.loo().elpd)}


def _assert_same(left: dict, right: dict) -> None:
    assert left.keys() == right.keys()
    for key, value in left.items():
        if isinstance(value, (pd.DataFrame, pd.Series)):
            pd.testing.assert_frame_equal(pd.DataFrame(value), pd.DataFrame(right[key]), check_exact=True,
                                          check_index_type=False)
        else:
            assert value == right[key], key


def test_model_fit_and_summary_pickle(sleep, reml):
    model = _round_trip(blm.LMM(FORMULA, sleep))
    np.testing.assert_allclose(model.fit().theta, blm.LMM(FORMULA, sleep).fit().theta)
    loaded = _round_trip(reml)
    _assert_same(_tables(loaded), _tables(reml))
    pd.testing.assert_series_equal(loaded.predict(sleep.head(7)), reml.predict(sleep.head(7)))
    assert str(_round_trip(reml.summary())) == str(reml.summary())
    assert _round_trip(reml.coef_table()).equals(reml.coef_table())


@pytest.mark.filterwarnings("ignore::bayeslmm.ConvergenceWarning")
def test_a_fit_with_a_residual_structure_pickles():
    sitka = blm.datasets.load("Sitka")
    fit = blm.LMM("size ~ time + (1 | tree)", sitka, residual="ar1(time | tree)").fit()
    loaded = _round_trip(fit)
    np.testing.assert_array_equal(loaded.predict(sitka.head(5)), fit.predict(sitka.head(5)))
    assert str(loaded.summary()) == str(fit.summary())


def test_anova_of_loaded_fits(sleep):
    small = blm.LMM("Reaction ~ Days + (1 | Subject)", sleep).fit(method="ML")
    large = blm.LMM(FORMULA, sleep).fit(method="ML")
    table = blm.anova(_round_trip(small), _round_trip(large))
    pd.testing.assert_frame_equal(table, blm.anova(small, large))


def test_reml_fit_saved_in_one_process_loads_in_another(tmp_path, sleep, reml):
    path = reml.save(tmp_path / "fit.pkl")
    out = tmp_path / "tables.pkl"
    _in_another_process(f"""
        import pickle, bayeslmm as blm
        fit = blm.load({str(path)!r})
        tables = {{"fixef": fit.fixef(), "varcorr": fit.varcorr(), "ranef": fit.ranef(),
                  "coef_table": fit.coef_table(), "anova": fit.anova(), "summary": str(fit.summary()),
                  "predict": fit.predict(blm.datasets.load("sleepstudy").head(9))}}
        pickle.dump(tables, open({str(out)!r}, "wb"))
    """)
    expected = {**_tables(reml), "predict": reml.predict(sleep.head(9))}
    _assert_same(pickle.load(out.open("rb")), expected)


def test_posterior_pickles(posterior, sleep):
    _assert_same(_bayes_tables(_round_trip(posterior), sleep.head(6)), _bayes_tables(posterior, sleep.head(6)))
    assert str(_round_trip(posterior.summary())) == str(posterior.summary())


def test_results_after_cached_inference_pickle(sleep):
    fit = blm.LMM(FORMULA, sleep).fit()
    fit.coef_table(ddf="kenward-roger"), fit.confint(method="wald")  # fills caches
    small = blm.LMM("Reaction ~ Days + (1 | Subject)", sleep).fit()
    rlrt = blm.exact_rlrt(small, n_sim=50, seed=1)
    assert _round_trip(fit).coef_table(ddf="kenward-roger").equals(fit.coef_table(ddf="kenward-roger"))
    loaded = _round_trip(rlrt)
    assert (loaded.statistic, loaded.p_value, str(loaded)) == (rlrt.statistic, rlrt.p_value, str(rlrt))
    np.testing.assert_array_equal(loaded.sample, rlrt.sample)


def test_posterior_saved_to_netcdf_loads_in_another_process(tmp_path, posterior, sleep):
    path = posterior.save(tmp_path / "posterior.nc")
    out = tmp_path / "tables.pkl"
    _in_another_process(f"""
        import pickle, warnings, bayeslmm as blm
        warnings.simplefilter("ignore", blm.PosteriorWarning)
        post = blm.load({str(path)!r})
        newdata = blm.datasets.load("sleepstudy").head(6)
        tables = {{"fixef": post.fixef(), "varcorr": post.varcorr(), "ranef": post.ranef(),
                  "summary": str(post.summary()), "predict": post.predict(newdata),
                  "loo": float(post.loo().elpd), "type": type(post).__name__,
                  "posterior": post.idata["posterior"].to_dataset()}}
        pickle.dump(tables, open({str(out)!r}, "wb"))
    """)
    loaded = pickle.load(out.open("rb"))
    assert loaded.pop("type") == "BayesResult"
    assert loaded.pop("posterior").identical(posterior.idata["posterior"].to_dataset())
    _assert_same(loaded, _bayes_tables(posterior, sleep.head(6)))


def test_loaded_posterior_keeps_priors_and_sampler(tmp_path, posterior):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", blm.PosteriorWarning)
        loaded = blm.load(posterior.save(tmp_path / "p.nc"))
    assert persist.encode(loaded.setup.priors) == persist.encode(posterior.setup.priors)
    assert (loaded.marginalize, loaded.sampler) == (posterior.marginalize, posterior.sampler)
    assert loaded.spec.row_labels.equals(posterior.spec.row_labels)


@pytest.mark.parametrize("value", [
    cov.Combined(cov.AR1(time="visit", group="tree"), cov.Heteroscedastic(by="treat")),
    cov.Independent(), cov.CompoundSymmetry(group="g"),
    priors.ResidualPrior(priors.ScaledBeta(2, 3), priors.Normal(0.5, 2), 3.0),
    priors.TermPrior((priors.HalfStudentT(3, 1.5), priors.HalfNormal(0.1)), 2.0),
])
def test_structures_and_priors_round_trip_through_json(value):
    assert persist.decode(persist.encode(value)) == value


def test_training_rows_round_trip_with_dtypes_and_labels():
    rows = pd.DataFrame({"y": [1.5, 2.5, -3.0], "n": [1, 2, 3], "flag": [True, False, True],
                         "word": ["a", "b/c", "d"],
                         "level": pd.Categorical(["lo", "hi", "lo"], categories=["lo", "hi"], ordered=True),
                         "odd name/with:chars": [0.1, 0.2, 0.3]},
                        index=pd.Index(["r1", "r7", "r9"])).astype({"word": object})
    back = persist.rows_frame(persist.rows_dataset(rows))
    pd.testing.assert_frame_equal(back, rows, check_index_type=False)


def test_loading_what_is_not_a_saved_fit(tmp_path):
    with pytest.raises(blm.LMMError, match="no file"):
        blm.load(tmp_path / "missing.nc")
    (tmp_path / "junk.bin").write_bytes(b"not a fit at all")
    with pytest.raises(blm.LMMError, match="neither a saved posterior"):
        blm.load(tmp_path / "junk.bin")
    import xarray as xr

    xr.Dataset({"a": ("x", [1.0])}).to_netcdf(tmp_path / "other.nc", engine="h5netcdf")
    with pytest.raises(blm.LMMError, match="not a posterior saved by BayesResult.save"):
        blm.load(tmp_path / "other.nc")


def test_caller_data_is_not_modified_by_fit_pickle_or_save(tmp_path, sleep):
    pl = pytest.importorskip("polars")
    frame = pl.from_pandas(sleep)
    before, pandas_before = frame.clone(), sleep.copy(deep=True)
    fit = blm.LMM(FORMULA, frame).fit()
    fit.save(tmp_path / "fit.pkl")
    _round_trip(fit).predict(frame.head(3))
    assert frame.equals(before)
    pd.testing.assert_frame_equal(sleep, pandas_before)


@pytest.mark.filterwarnings("ignore::bayeslmm.PosteriorWarning")  # a tiny run: diagnostics are not the point
def test_a_weighted_posterior_round_trips_with_its_weights(tmp_path):
    data = blm.datasets.load("sleepstudy")
    weights = 1 + (data["Days"] % 3) / 2
    post = blm.LMM("Reaction ~ Days + (1 | Subject)", data, weights=weights.to_numpy()).fit(
        method="NUTS", draws=50, tune=50, chains=1, random_seed=2, progressbar=False)
    post.save(tmp_path / "weighted.nc")
    loaded = blm.load(tmp_path / "weighted.nc")
    np.testing.assert_array_equal(loaded.spec.weights, post.spec.weights)
    pd.testing.assert_frame_equal(loaded.fixef(), post.fixef())
