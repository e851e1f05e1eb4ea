"""Kenward–Roger with a residual covariance structure (bayeslmm/kr_blocks.py).

No R reference exists here (pbkrtest does not take nlme::gls fits; mmrm is not installed),
so the general per-block code is checked by: (1) reproducing the pbkrtest-verified KR of
bayeslmm/ddf.py on models without a structure; (2) compound symmetry GLS against the
random-intercept model, whose KR differs by a term KR's non-invariance predicts in closed
form; (3) ∂R/∂ψ and ∂²R/∂ψ∂ψ against AR(1) / ARH(1)'s explicit R_jk = s_j s_k ρ^|t_j − t_k|;
(4) Φ = (X'V⁻¹X)⁻¹ against the fit's own vcov (which never builds V).
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import bayeslmm as blm
from bayeslmm.inference import kenward_roger as ddf
from bayeslmm.inference import kenward_roger_residual as kr_blocks


@pytest.fixture(scope="module")
def sitka():
    return blm.datasets.load("Sitka")


def _df(kr, p):
    return np.array([ddf.kr_df_and_scale(kr, row)[0] for row in np.eye(p)])


@pytest.mark.parametrize("formula, dataset", [("Reaction ~ Days + (Days | Subject)", "sleepstudy"),
                                              ("size ~ time * treat + (1 | tree)", "Sitka"),
                                              ("size ~ time * treat", "Sitka")])
def test_block_code_reproduces_the_independent_errors_kr(formula, dataset):
    """Forced onto a model without a structure (R_b = I), the general code equals ddf.py's KR."""
    fit = blm.LMM(formula, blm.datasets.load(dataset)).fit()
    linear, general = ddf.kenward_roger(fit), kr_blocks.kenward_roger_blocks(fit)
    np.testing.assert_allclose(general.phi_adjusted, linear.phi_adjusted, rtol=1e-8)
    np.testing.assert_allclose(general.W, linear.W, rtol=1e-8)
    np.testing.assert_allclose(_df(general, fit.spec.p), _df(linear, fit.spec.p), rtol=1e-8)


def test_compound_symmetry_gls_against_the_random_intercept_model(sitka):
    """Same V, parameters (σ², ρ) versus (τ², s²) = (σ²ρ, σ²(1 − ρ)).

    KR's df depend on first derivatives of V only (P_k, W), which transform covariantly, so
    they agree (to the two optimisers' agreement, Φ within ~2e-7).  Φ_A does not: KR drops
    the bias of σ̂, which is not reparametrisation invariant.  Second-order Taylor in both
    coordinates gives Φ_A(σ², ρ) = Φ_A(τ², s²) + W_{σ²ρ} Φ (P_τ − P_s) Φ exactly
    (∂²τ²/∂σ²∂ρ = 1 = −∂²s²/∂σ²∂ρ): a check of the ¼R_ij term's sign and size.  On Sitka
    the standard errors differ by ~0.35 % (the variances by ~2 % at most)."""
    cs = blm.LMM("size ~ time * treat", sitka, residual="cs(tree)").fit()
    ri = blm.LMM("size ~ time * treat + (1 | tree)", sitka).fit()
    kr_cs, kr_ri = ddf.kenward_roger(cs), ddf.kenward_roger(ri)
    np.testing.assert_allclose(kr_cs.phi, kr_ri.phi, rtol=1e-6)
    np.testing.assert_allclose(_df(kr_cs, 4), _df(kr_ri, 4), rtol=1e-5)
    # W transforms as a covariance: W_(σ²,ρ) = J⁻¹ W_(τ²,s²) J⁻ᵀ, J = ∂(τ², s²)/∂(σ², ρ)
    sigma2, rho = cs.sigma**2, cs.state.residual.natural(cs.state.phi)["rho"]
    J_inv = np.linalg.inv(np.array([[rho, sigma2], [1 - rho, -sigma2]]))
    np.testing.assert_allclose(kr_cs.W, J_inv @ kr_ri.W @ J_inv.T, rtol=1e-5)
    predicted = kr_ri.phi_adjusted + kr_cs.W[0, 1] * kr_ri.phi @ (kr_ri.P[0] - kr_ri.P[1]) @ kr_ri.phi
    np.testing.assert_allclose(kr_cs.phi_adjusted, predicted, rtol=1e-5)
    gap = np.sqrt(np.diag(kr_cs.phi_adjusted) / np.diag(kr_ri.phi_adjusted)) - 1
    assert np.all(np.abs(gap) > 1e-3)  # the second-derivative term is not negligible here


def _analytic_arh1(visits, rho, ratios):
    """R, ∂R/∂(ρ, ratios), ∂²R for R_jk = s_j s_k ρ^d, d = |t_j − t_k|, s = (1, ratios)[visit]."""
    s_all = np.r_[1.0, ratios] if len(ratios) else np.ones(visits.max())
    s, d = s_all[visits - 1], np.abs(np.subtract.outer(visits, visits)).astype(float)
    ss = np.outer(s, s)
    corr, d_corr = rho**d, d * rho ** np.maximum(d - 1, 0)
    dd_corr = d * (d - 1) * rho ** np.maximum(d - 2, 0)
    K = 1 + len(ratios)
    first, second = np.zeros((K,) + d.shape), np.zeros((K, K) + d.shape)
    first[0], second[0, 0] = ss * d_corr, ss * dd_corr
    on = [(visits == k + 1).astype(float) for k in range(K)]  # on[k] = ∂s/∂ratio_k for k ≥ 1
    for k in range(1, K):
        dss = np.outer(on[k], s) + np.outer(s, on[k])
        first[k] = dss * corr
        second[0, k] = second[k, 0] = dss * d_corr
        for j in range(1, K):
            second[k, j] = (np.outer(on[k], on[j]) + np.outer(on[j], on[k])) * corr
    return ss * corr, first, second


@pytest.mark.parametrize("structure", ["ar1(visit | tree)", "ar1h(visit | tree)"])
def test_relative_covariance_derivatives_match_the_explicit_ar1(sitka, structure):
    """Blocks with missing visits (gaps) included: rows dropped from four trees."""
    data = sitka.drop(index=[1, 7, 13, 40]).reset_index(drop=True)
    bound = blm.LMM("size ~ time", data, residual=structure).residual
    phi = np.r_[np.arctanh(0.8), np.log([1.2, 0.9, 1.5, 1.1])][: len(bound.start)]
    layout = kr_blocks.block_layout(bound.groups)
    base, first, second = kr_blocks.relative_derivatives(bound, phi, layout)
    assert sorted(layout.groups) == [4, 5]
    for size, rows in layout.groups.items():
        for b, block in enumerate(rows):
            R, dR, d2R = _analytic_arh1(data["visit"].to_numpy()[block], 0.8, np.exp(phi[1:]))
            np.testing.assert_allclose(base[size][b], R, atol=1e-12)
            np.testing.assert_allclose(first[size][:, b], dR, atol=1e-8 * np.abs(dR).max())
            np.testing.assert_allclose(second[size][:, :, b], d2R, atol=1e-5 * np.abs(d2R).max())


@pytest.mark.parametrize("formula, structure", [("size ~ time * treat", "ar1(visit | tree)"),
                                                ("size ~ time * treat + (1 | tree)", "ar1(visit | tree)"),
                                                ("size ~ time * treat", "het(treat)"),
                                                ("size ~ time * treat", "us(visit | tree)")])
def test_public_api_with_a_residual_structure(sitka, formula, structure):
    fit = blm.LMM(formula, sitka, residual=structure).fit()
    kr = ddf.kenward_roger(fit)
    np.testing.assert_allclose(kr.phi, fit.vcov().to_numpy(), rtol=1e-8)  # V per block is the fitted V
    table = fit.coef_table(ddf="kenward-roger")
    assert np.all(np.isfinite(table.to_numpy())) and np.all(table["df"] > 1)
    assert np.all(table["std_error"] >= fit.se() * (1 - 1e-8))  # here the adjustment inflates Var(β̂)
    anova = fit.anova(type=3, ddf="kenward-roger")
    assert list(anova.index) == ["time", "treat", "time:treat"]
    assert np.all(np.isfinite(anova.to_numpy()))
    # time:treat is the one coefficient time:treat[ozone]: the same contrast, the same df
    assert anova.loc["time:treat", "DenDF"] == pytest.approx(table.loc["time:treat[ozone]", "df"], rel=1e-10)


def test_heteroscedastic_kr_is_satterthwaite_with_expected_information(sitka):
    """For one coefficient KR's df is 2(c'Φc)²/(g'Wg); with W ≈ the observed-information A of
    Satterthwaite (as here, variances per group) the two methods agree closely."""
    fit = blm.LMM("size ~ time * treat", sitka, residual="het(treat)").fit()
    np.testing.assert_allclose(fit.coef_table(ddf="kenward-roger")["df"], fit.coef_table()["df"], rtol=1e-5)


def test_results_do_not_depend_on_row_order(sitka):
    formula, structure = "size ~ time * treat + (1 | tree)", "ar1(visit | tree)"
    base = blm.LMM(formula, sitka, residual=structure).fit().coef_table(ddf="kenward-roger")
    shuffled = sitka.sample(frac=1.0, random_state=3).reset_index(drop=True)
    other = blm.LMM(formula, shuffled, residual=structure).fit().coef_table(ddf="kenward-roger")
    columns = ["estimate", "std_error", "statistic", "df"]  # p-values near 1e-29 magnify fit noise
    np.testing.assert_allclose(other[columns].to_numpy(), base[columns].to_numpy(), rtol=1e-5)


def test_clear_errors(sitka):
    # the check comes before any algebra, so an unfitted stand-in (fitting this model takes ~10 s) shows it
    model = blm.LMM("size ~ time + (1 | tree) + (1 | visit)", sitka, residual="het(treat)")
    two = SimpleNamespace(reml=True, state=SimpleNamespace(spec=model.spec, residual=model.residual))
    with pytest.raises(blm.LMMError, match="at most one grouping factor"):
        ddf.kenward_roger(two)
    ml = blm.LMM("size ~ time", sitka, residual="ar1(visit | tree)").fit("ML")
    with pytest.raises(blm.LMMError, match="REML"):
        ml.anova(ddf="kenward-roger")
