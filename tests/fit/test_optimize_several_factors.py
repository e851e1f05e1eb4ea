"""REML/ML with several grouping factors: L-BFGS-B with the exact gradient reaches lme4's optimum
on the crossed maximal design, the checks say when it does not, and COBYQA remains a fallback."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

import bayeslmm as blm
from bayeslmm.errors import ConvergenceWarning
from bayeslmm.fit import optimize
from bayeslmm.fit.start import moment_start
from bayeslmm.linalg import gradient as gr
from bayeslmm.linalg import logdensity as ld
from conftest import REPO, TESTS

GRADIENT_REFERENCE = json.loads((TESTS / "reference" / "gradient_reference.json").read_text())


@pytest.mark.parametrize("case_id", ["crossed_maximal_reml", "crossed_maximal_ml"])
def test_crossed_maximal_design_reaches_lme4s_optimum(case_id):
    case = GRADIENT_REFERENCE[case_id]
    model = blm.LMM(case["formula"], pd.read_csv(REPO / case["data_file"]))
    with warnings.catch_warnings():  # fit() runs BLAS on one thread
        warnings.simplefilter("error", ConvergenceWarning)
        warnings.simplefilter("ignore", blm.SingularFitWarning)
        fit = model.fit(case["method"])
    best_of_lme4 = max(case["default"]["logLik"], case["tight_refit"]["logLik"])
    assert fit.loglik >= best_of_lme4 - 1e-6
    assert fit.optsum.optimizer == "L-BFGS-B" and fit.optsum.converged
    assert fit.optsum.gradient_norm < optimize.GRADIENT_TOLERANCE
    assert np.sum(fit.theta[model.layout.diagonal] < 1e-4) >= 1  # singular, as lme4 finds it


def test_a_failing_gradient_falls_back_to_cobyqa_and_says_so(monkeypatch):
    model = blm.LMM("diameter ~ 1 + (1 | plate) + (1 | sample)", blm.datasets.load("Penicillin"))
    expected = model.fit().deviance
    monkeypatch.setattr(gr, "objective_gradient", lambda theta, *args: (np.nan, np.full(len(theta), np.nan)))
    monkeypatch.setattr(optimize, "check_convergence", lambda *args: (True, "not checked", 0.0))
    fit = model.fit()
    assert fit.optsum.optimizer.startswith("COBYQA (fallback")
    assert "maxfev" in fit.optsum.tolerances
    assert fit.deviance == pytest.approx(expected, abs=1e-6)


def test_negative_curvature_on_the_interior_is_reported(monkeypatch):
    model = blm.LMM("diameter ~ 1 + (1 | plate) + (1 | sample)", blm.datasets.load("Penicillin"))
    assert model.fit().optsum.converged
    monkeypatch.setattr(optimize, "negative_curvature", lambda *args: 1)
    with pytest.warns(ConvergenceWarning, match="degenerate Hessian with 1 negative"):
        fit = model.fit()
    assert not fit.optsum.converged


def test_interior_hessian_equals_second_differences_of_the_deviance():
    model = blm.LMM("strength ~ 1 + (1 | batch/cask)", blm.datasets.load("Pastes"))
    fit = model.fit()
    stats, layout = model.stats, model.layout
    hessian, free = optimize.interior_hessian(fit.theta, stats, layout, True)
    assert list(free) == list(range(layout.size))  # both sds are away from 0
    step = 1e-3
    for a in free:
        for b in free:
            ea, eb = np.eye(layout.size)[a] * step * layout.scale[a], np.eye(layout.size)[b] * step * layout.scale[b]
            value = sum(sign_a * sign_b * ld.objective(fit.theta + sign_a * ea + sign_b * eb, stats, layout, True)
                        for sign_a in (1, -1) for sign_b in (1, -1)) / (4 * step**2)
            assert hessian[a, b] == pytest.approx(value, rel=1e-4, abs=1e-6)
    assert np.all(np.linalg.eigvalsh(hessian) > 0) and optimize.negative_curvature(fit.theta, stats, layout, True) == 0


def test_a_start_on_a_false_boundary_is_left_with_several_factors():
    model = blm.LMM("diameter ~ 1 + (1 | plate) + (1 | sample)", blm.datasets.load("Penicillin"))
    best = optimize.fit_theta(model.stats, model.layout, reml=True)
    start = best.theta.copy()
    start[0] = 0.0  # the derivative in a diagonal is 0 at 0: L-BFGS-B alone stays there
    from_boundary = optimize.fit_theta(model.stats, model.layout, reml=True, start=start)
    assert from_boundary.deviance == pytest.approx(best.deviance, abs=1e-8)
    assert from_boundary.theta[0] > 0.1


def test_forward_screen_of_the_hessian_agrees_with_central_differences(monkeypatch):
    """The screen (forward differences from the gradient at θ̂) gives the central Hessian's
    eigenvalues to far within SCREEN_MARGIN, and where it is not decisive the central one decides."""
    model = blm.LMM("strength ~ 1 + (1 | batch/cask)", blm.datasets.load("Pastes"))
    fit = model.fit()
    stats, layout = model.stats, model.layout
    gradient = gr.objective_gradient(fit.theta, stats, layout, True)[1]
    central = np.linalg.eigvalsh(optimize.interior_hessian(fit.theta, stats, layout, True)[0])
    forward = np.linalg.eigvalsh(optimize.interior_hessian(fit.theta, stats, layout, True, gradient)[0])
    assert np.max(np.abs(forward - central)) < 1e-2 * optimize.SCREEN_MARGIN * np.max(np.abs(central))
    calls = []
    original = optimize.interior_hessian
    monkeypatch.setattr(optimize, "interior_hessian", lambda *args: calls.append(len(args)) or original(*args))
    assert optimize.negative_curvature(fit.theta, stats, layout, True, gradient) == 0
    assert calls == [5]  # the screen alone: positive definite by far
    monkeypatch.setattr(optimize, "SCREEN_MARGIN", np.inf)
    assert optimize.negative_curvature(fit.theta, stats, layout, True, gradient) == 0
    assert calls == [5, 5, 4]  # not decisive: central differences decide


@pytest.mark.parametrize("formula, data", [
    ("strength ~ 1 + (1 | batch/cask)", "Pastes"),
    ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin"),
])
def test_the_hessian_from_deviances_equals_the_one_from_gradients(formula, data):
    """The route a large second block takes (second differences of the deviance, as lme4's
    deriv12) against central differences of the exact gradient, at the optimum."""
    model = blm.LMM(formula, blm.datasets.load(data))
    fit = model.fit()
    stats, layout = model.stats, model.layout
    from_gradients, free = optimize.interior_hessian(fit.theta, stats, layout, True)
    from_deviances, same = optimize.interior_hessian_from_deviances(fit.theta, fit.optsum.deviance,
                                                                    stats, layout, True)
    assert list(same) == list(free) and free.size == layout.size
    np.testing.assert_allclose(from_deviances, from_gradients, rtol=1e-3, atol=1e-6 * np.abs(from_gradients).max())


def test_a_fit_whose_hessian_check_takes_the_deviance_route_is_the_same_fit(monkeypatch):
    """Every second block counted as large: the check takes the deviances' Hessian and passes."""
    model = blm.LMM("diameter ~ 1 + (1 | plate) + (1 | sample)", blm.datasets.load("Penicillin"))
    expected = model.fit()
    calls = []
    monkeypatch.setattr(optimize, "LARGE_SECOND_BLOCK", 0)
    monkeypatch.setattr(optimize, "NEWTON_STEPS", 0)  # L-BFGS-B, as for a small block (Newton: below)
    monkeypatch.setattr(optimize, "interior_hessian", lambda *args: calls.append(args))  # must not be used
    fit = model.fit()
    assert fit.optsum.converged and not calls
    assert fit.loglik == pytest.approx(expected.loglik, abs=1e-10)


@pytest.mark.parametrize("formula, data", [
    ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin"),
    ("strength ~ 1 + (1 | batch) + (1 | cask:batch)", "Pastes"),
])
def test_newton_from_deviances_on_a_large_block_reaches_the_optimum(monkeypatch, formula, data):
    """Every second block counted as large: Newton's steps from the central differences of the
    deviance reach L-BFGS-B's optimum, the exact gradient confirms it, and the check takes the
    Hessian of those differences at θ̂ (no Hessian from gradients is formed)."""
    model = blm.LMM(formula, blm.datasets.load(data))
    expected = model.fit()
    monkeypatch.setattr(optimize, "LARGE_SECOND_BLOCK", 0)
    hessians, gradients = [], []
    central = optimize.central_differences
    monkeypatch.setattr(optimize, "central_differences", lambda *args: hessians.append(args[0]) or central(*args))
    monkeypatch.setattr(optimize, "interior_hessian", lambda *args: gradients.append(args))  # must not be used
    fit = model.fit()
    assert fit.optsum.optimizer.startswith("Newton") and fit.optsum.converged and not gradients
    assert fit.loglik >= expected.loglik - 1e-8
    assert np.abs(fit.optsum.gradient_norm) <= optimize.LARGE_BLOCK_GTOL
    np.testing.assert_allclose(fit.theta, expected.theta, rtol=1e-4, atol=1e-6)
    # the check's Hessian (the last one formed) is one at θ̂, to the differences' step
    assert np.max(np.abs(fit.theta - hessians[-1]) / model.layout.scale) <= optimize.DEVIANCE_STEP


def test_central_differences_give_the_exact_gradient_and_the_gradients_hessian():
    """The first Newton step's gradient and Hessian from deviances, against the exact gradient and
    central differences of it, away from the optimum."""
    model = blm.LMM("diameter ~ 1 + (1 | plate) + (1 | sample)", blm.datasets.load("Penicillin"))
    stats, layout = model.stats, model.layout
    theta = model.fit().theta * np.array([1.1, 0.9])
    deviance, exact = gr.objective_gradient(theta, stats, layout, True)
    gradient, hessian, free = optimize.central_differences(theta, deviance, stats, layout, True)
    np.testing.assert_allclose(gradient, exact * layout.scale, rtol=1e-5)
    np.testing.assert_allclose(hessian, optimize.interior_hessian(theta, stats, layout, True)[0], rtol=1e-4)


def test_newton_hands_over_to_lbfgsb_where_it_cannot_step(monkeypatch):
    """A Hessian that is not positive definite: L-BFGS-B fits instead, to the same optimum."""
    model = blm.LMM("diameter ~ 1 + (1 | plate) + (1 | sample)", blm.datasets.load("Penicillin"))
    expected = model.fit()
    monkeypatch.setattr(optimize, "LARGE_SECOND_BLOCK", 0)
    central, calls = optimize.central_differences, []

    def negated_first(*args):  # Newton's Hessian negative definite; the check's own unchanged
        gradient, hessian, free = central(*args)
        calls.append(args)
        return gradient, (-hessian if len(calls) == 1 else hessian), free

    monkeypatch.setattr(optimize, "central_differences", negated_first)
    fit = model.fit()
    assert fit.optsum.optimizer == "L-BFGS-B" and fit.optsum.converged
    assert fit.loglik == pytest.approx(expected.loglik, abs=1e-6)


class _Recorded(optimize.Evaluations):
    """Evaluations that keep every request: θ, the deviance and the exact gradient."""

    def __init__(self, *args):
        super().__init__(*args)
        self.requests = []

    def __call__(self, theta):
        value, grad = super().__call__(theta)
        self.requests.append((np.array(theta, dtype=float), value, grad))
        return value, grad


def _three_factor_model():
    """bench_crossed's three-factor design: pupils in classes in schools, crossed with neighbourhoods."""
    rng = np.random.default_rng(14)
    school, klass, hood = np.repeat(np.arange(40), 60), np.repeat(np.arange(160), 15), rng.integers(0, 50, 2400)
    ses = rng.normal(size=2400)
    correlation = np.linalg.cholesky(np.array([[1.0, 0.3], [0.3, 1.0]]))
    b_school = rng.normal(size=(40, 2)) @ correlation.T * [0.6, 0.2]
    y = (1 + 0.3 * ses + b_school[school, 0] + b_school[school, 1] * ses + 0.4 * rng.normal(size=160)[klass]
         + 0.3 * rng.normal(size=50)[hood] + rng.normal(size=2400))
    data = pd.DataFrame({"y": y, "ses": ses, "school": np.char.add("s", school.astype(str)),
                         "class": np.char.add("c", klass.astype(str)), "hood": np.char.add("h", hood.astype(str))})
    return blm.LMM("y ~ ses + (1 + ses | school) + (1 | class) + (1 | hood)", data)


def test_newton_finishes_with_the_checks_hessian(monkeypatch):
    """Near the optimum and inside the bounds, L-BFGS-B hands over to Newton steps with the Hessian
    the check needs: the same optimum as L-BFGS-B to gtol, every gradient counted in the summary
    (the check reuses the Hessian: no gradient after the last step) and fewer of them."""
    model = _three_factor_model()
    calls = []
    evaluate = gr.objective_gradient

    def counted(*args):
        calls.append(args[0])
        return evaluate(*args)

    start = moment_start(model.stats, model.layout, True, optimize.fit_theta)
    monkeypatch.setattr(optimize.gr, "objective_gradient", counted)
    finished = optimize.fit_theta(model.stats, model.layout, True, start=start)
    assert finished.optimizer == "L-BFGS-B, then Newton" and finished.converged
    assert len(calls) == finished.n_evaluations  # distinct points: L-BFGS-B's, the Hessian's, the steps'
    np.testing.assert_array_equal(calls[-1], finished.theta)
    assert finished.gradient_norm <= optimize.SEVERAL_FACTORS_GTOL
    monkeypatch.setattr(optimize, "NEWTON_HANDOVER", None)
    monkeypatch.setattr(optimize, "newton_finishes", lambda *args: False)
    calls.clear()
    plain = optimize.fit_theta(model.stats, model.layout, True, start=start)
    assert plain.optimizer == "L-BFGS-B" and plain.converged
    assert finished.deviance == pytest.approx(plain.deviance, abs=1e-9)
    assert finished.n_evaluations < len(calls)  # L-BFGS-B to gtol, then the check's Hessian


def test_newton_finish_hands_back_to_lbfgsb_where_its_steps_are_not_enough(monkeypatch):
    model = _three_factor_model()
    expected = model.fit()
    monkeypatch.setattr(optimize, "NEWTON_FINISH_STEPS", 0)
    refit = optimize.fit_theta(model.stats, model.layout, True)
    assert refit.optimizer == "L-BFGS-B" and refit.converged
    assert refit.deviance == pytest.approx(expected.optsum.deviance, abs=1e-9)


def test_lbfgsb_stops_at_the_first_point_that_meets_its_gradient_test():
    """L-BFGS-B ends at the first point it evaluates whose projected scaled gradient is within gtol
    and whose deviance is within rounding of the lowest so far, even inside a line search, and
    asks for nothing after it.  On this design (bench_crossed's three factors, from the moment
    start, one BLAS thread as fits run) L-BFGS-B's own test, on accepted points only, met such a
    point at its 13th request and went on to 37: a line search at the gradient's rounding floor."""
    from threadpoolctl import threadpool_limits

    model = _three_factor_model()
    stats, layout = model.stats, model.layout
    _, options = optimize.optimizer_settings(stats, layout)
    evaluations = _Recorded(stats, layout, True)
    with threadpool_limits(1):
        start = moment_start(stats, layout, True, optimize.fit_theta)
        result = optimize._minimise(evaluations, start / layout.scale, "L-BFGS-B", options)
    lowest, first = np.inf, None
    for i, (theta, value, grad) in enumerate(evaluations.requests):
        scaled = optimize.scaled_gradient(theta, stats, layout, True, grad)
        if np.max(np.abs(scaled)) <= options["gtol"] and value <= lowest + optimize.NEWTON_ROUNDING * abs(value):
            first = i
            break
        lowest = min(lowest, value)
    assert first is not None and len(evaluations.requests) == first + 1
    np.testing.assert_array_equal(result.x * layout.scale, evaluations.requests[first][0])
    assert result.nfev == first + 1 and result.success
