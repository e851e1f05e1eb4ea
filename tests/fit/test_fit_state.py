"""The fit state (a self-contained REML/ML fit) and the optimiser's summary."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

import bayeslmm as blm
from bayeslmm.fit.optimize import GRADIENT_TOLERANCE, scaled_gradient
from bayeslmm.fit.state import FitState, fit_state

SLOPES = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep():
    return blm.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def slopes(sleep):
    return blm.LMM(SLOPES, sleep).fit()


def test_optsum_records_the_fit(slopes):
    optsum = slopes.optsum
    assert optsum is slopes.state.optsum
    np.testing.assert_array_equal(optsum.theta, slopes.theta)
    np.testing.assert_array_equal(optsum.start, slopes.layout.start)
    assert optsum.optimizer == "L-BFGS-B" and optsum.tolerances["ftol"] == 1e-15
    assert optsum.converged and optsum.n_evaluations > 1
    assert optsum.deviance == slopes.deviance
    # the reported gradient is the one the convergence check saw, recomputed here
    worst = np.max(np.abs(scaled_gradient(slopes.theta, slopes.state.stats, slopes.layout, True)))
    assert optsum.gradient_norm == pytest.approx(worst, rel=1e-12) and worst < GRADIENT_TOLERANCE
    text = repr(optsum)
    for line in ("Initial θ", "Final θ", "Optimizer", "L-BFGS-B", "Function evaluations", "Final max|gradient|",
                 str(optsum.n_evaluations)):
        assert line in text


def test_optsum_of_several_factors_and_of_a_residual_structure():
    penicillin = blm.LMM("diameter ~ 1 + (1 | plate) + (1 | sample)", blm.datasets.load("Penicillin")).fit()
    assert penicillin.optsum.optimizer == "L-BFGS-B" and penicillin.optsum.converged
    ar1 = blm.LMM("size ~ time", blm.datasets.load("Sitka"), residual="ar1(visit | tree)").fit()
    optsum = ar1.optsum
    assert optsum.optimizer.startswith("bounded Brent over φ")
    np.testing.assert_array_equal(optsum.phi, ar1.state.phi)
    assert optsum.phi_start.shape == optsum.phi.shape == (1,)
    assert "Final φ" in repr(optsum)


def test_state_holds_the_fit(slopes):
    state = slopes.state
    assert isinstance(state, FitState) and state.reml and state.method == "REML"
    np.testing.assert_array_equal(state.beta, slopes.fixef().to_numpy())
    assert state.sigma == slopes.sigma and state.loglik == slopes.loglik and state.npar == slopes.npar
    stats, logdet = state.stats_at(np.zeros(0))
    assert stats is state.stats and logdet == 0.0


def test_refit_by_ml_and_to_a_new_response_equals_fresh_fits(sleep, slopes):
    model = blm.LMM(SLOPES, sleep)
    ml = slopes.state.refit(reml=False)
    assert ml.loglik == pytest.approx(model.fit("ML").loglik, abs=1e-8)
    y = sleep["Reaction"].to_numpy() * 1.1 + np.arange(len(sleep)) % 7
    fresh = blm.LMM(SLOPES, sleep.assign(Reaction=y)).fit()
    new = slopes.state.refit(y=y)
    assert new.loglik == pytest.approx(fresh.loglik, abs=1e-7)
    np.testing.assert_allclose(new.beta, fresh.fixef().to_numpy(), rtol=1e-7)
    direct = fit_state(slopes.spec, slopes.layout, reml=True)
    np.testing.assert_allclose(direct.theta, slopes.theta, rtol=1e-8)


def test_a_result_is_self_contained_after_pickling(sleep, slopes):
    """Nothing reaches back to the LMM: an unpickled fit refits, simulates and bootstraps."""
    loaded = pickle.loads(pickle.dumps(slopes))
    assert loaded.refit("ML").loglik == pytest.approx(blm.LMM(SLOPES, sleep).fit("ML").loglik, abs=1e-8)
    np.testing.assert_array_equal(loaded.simulate(2, seed=3), slopes.simulate(2, seed=3))
    np.testing.assert_array_equal(loaded.bootstrap(3, seed=1), slopes.bootstrap(3, seed=1))
    with pytest.raises(blm.LMMError, match="method must be one of REML, ML"):
        loaded.refit("NUTS")
