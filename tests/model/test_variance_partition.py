"""The variance partition (model/variance_partition.py): each ICC is the correlation, read off the
dense marginal covariance V = ZDZ' + σ²I of the fitted model, of two observations that share that
factor's group (and no group of a factor it is not nested in); shares count intercepts only."""
from __future__ import annotations

import numpy as np
import pytest

import bayeslmm as blm
from bayeslmm.model.variance_partition import nested_in, variance_partition, variance_rows

CASES = {
    "nested": ("strength ~ 1 + (1 | batch/cask)", "Pastes"),
    "crossed": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin"),
    "one factor": ("Yield ~ 1 + (1 | Batch)", "Dyestuff"),
    "slopes": ("Reaction ~ Days + (Days | Subject)", "sleepstudy"),
}


def fitted(case: str):
    formula, data = CASES[case]
    return blm.LMM(formula, blm.datasets.load(data)).fit()


def intercept_covariance(fit) -> np.ndarray:
    """V at covariates 0 (only intercept columns of Z), dense, from varcorr()'s variances."""
    spec, varcorr = fit.spec, fit.varcorr()
    V = np.eye(spec.n) * fit.sigma**2
    for term, label in zip(spec.terms, varcorr["grp"].unique()):
        if "(Intercept)" in term.column_names:
            codes = spec.factors[term.factor].codes
            variance = varcorr.query("grp == @label and var1 == '(Intercept)' and var2.isna()")["vcov"].item()
            V += variance * (codes[:, None] == codes[None, :])
    return V


def pair_correlations(fit, f: int) -> np.ndarray:
    """Correlations of the pairs i ≠ j that share factor f's group and no group of a factor f is
    not nested in (brute force over all pairs)."""
    spec = fit.spec
    V = intercept_covariance(fit)
    corr = V / np.sqrt(np.outer(np.diag(V), np.diag(V)))
    same = [factor.codes[:, None] == factor.codes[None, :] for factor in spec.factors]
    pairs = same[f] & ~np.eye(spec.n, dtype=bool)
    nested = nested_in(spec)
    for g in range(len(spec.factors)):
        if not nested[f, g]:
            pairs &= ~same[g]
    assert pairs.any()
    return corr[pairs]


@pytest.mark.parametrize("case", list(CASES))
def test_icc_is_the_correlation_of_two_observations_sharing_the_group(case):
    fit = fitted(case)
    table = fit.variance_components()
    for f, factor in enumerate(fit.spec.factors):
        icc = table.query("group == @factor.name and effect == '(Intercept)'")["icc"].item()
        np.testing.assert_allclose(pair_correlations(fit, f), icc, rtol=1e-10)


def test_nested_icc_includes_the_parents_and_not_the_children():
    """Pastes: two samples of one batch from different casks correlate by batch / total (≈ 0.15,
    where batch / (batch + σ²) would say 0.71); two of one cask by (cask + batch) / total."""
    fit = fitted("nested")
    spec = fit.spec
    names = [f.name for f in spec.factors]
    assert names == ["cask:batch", "batch"]
    np.testing.assert_array_equal(nested_in(spec), [[True, True], [False, True]])
    table = fit.variance_components().set_index("group")
    variance, total = table["variance"], table["variance"].sum()
    assert table.loc["batch", "icc"] == pytest.approx(variance["batch"] / total, rel=1e-12)
    assert table.loc["cask:batch", "icc"] == pytest.approx((variance["cask:batch"] + variance["batch"]) / total,
                                                           rel=1e-12)
    assert table.loc["batch", "icc"] < 0.2 < variance["batch"] / (variance["batch"] + variance["Residual"])


def test_one_factor_is_the_course_notes_rho_and_var_prop():
    """The course notes: ρ = d / (d + σ²), and var_prop each variance over their sum."""
    fit = fitted("one factor")
    table = fit.variance_components()
    d, sigma2 = table["variance"]
    assert table["icc"].iloc[0] == pytest.approx(d / (d + sigma2), rel=1e-12)
    np.testing.assert_allclose(table["var_prop"], [d / (d + sigma2), sigma2 / (d + sigma2)], rtol=1e-12)


def test_slopes_are_reported_but_not_shared():
    fit = fitted("slopes")
    table = fit.variance_components()
    assert list(zip(table["group"], table["effect"])) == [("Subject", "(Intercept)"), ("Subject", "Days"),
                                                         ("Residual", "")]
    slope = table.iloc[1]
    assert slope["variance"] == pytest.approx(fit.varcorr()["vcov"].iloc[1], rel=1e-12)
    assert np.isnan(slope["var_prop"]) and np.isnan(slope["icc"])
    assert table["var_prop"].sum() == pytest.approx(1.0)  # the intercept and σ² only
    assert np.isnan(table["icc"].iloc[2])


def test_the_partition_applies_to_every_draw_at_once():
    """Leading axes (a posterior's chain and draw) are kept: each draw gives its own partition."""
    spec = fitted("crossed").spec
    rng = np.random.default_rng(1)
    draws = rng.gamma(2.0, size=(3, 5, len(variance_rows(spec))))
    together = variance_partition(spec, draws)
    for c, d in [(0, 0), (2, 4)]:
        alone = variance_partition(spec, draws[c, d])
        for name in ("var_prop", "icc"):
            np.testing.assert_allclose(together[name][c, d], alone[name], rtol=1e-14)
    np.testing.assert_allclose(together["var_prop"].sum(axis=-1), 1.0, rtol=1e-12)
