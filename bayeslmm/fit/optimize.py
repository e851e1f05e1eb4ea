"""REML / ML: minimise the profiled deviance over θ, then profile β and σ.

θ is optimised in units of its natural size (``layout.scale``: 1 / rms of the
column it multiplies), so that a slope on time in days is as well conditioned as
an intercept.  L-BFGS-B with the exact gradient (:mod:`bayeslmm.linalg.gradient`)
for any number of grouping factors, finished near the optimum by Newton steps with the
convergence check's own Hessian (several factors); COBYQA, a derivative-free trust-region
method with bounds (the role BOBYQA plays in lme4), only as a fallback where the gradient
path fails.  Convergence is checked as lme4's checkConv does: the scaled gradient,
and with several factors the Hessian on the interior.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
from scipy.optimize import OptimizeResult, minimize

from bayeslmm.errors import ConvergenceWarning
from bayeslmm.fit.optsum import OptSummary
from bayeslmm.fit.start import moment_start
from bayeslmm.linalg import gradient as gr
from bayeslmm.linalg.crossprod import CrossProducts
from bayeslmm.model.covariance import ThetaLayout

GRADIENT_TOLERANCE = 2e-3  # lme4's check.conv.grad tolerance, here on the scaled gradient
HESSIAN_TOLERANCE = 1e-6  # lme4's check.conv.hess: smallest / largest eigenvalue above −this
HESSIAN_MAX_SIZE = 40  # free θ entries up to which the Hessian check runs (2 gradients per entry)


def fit_theta(stats: CrossProducts, layout: ThetaLayout, reml: bool, start=None, tolerances=None) -> OptSummary:
    """Minimise the profiled deviance over θ, from ``start`` or ``layout.start``.

    ``tolerances`` overrides L-BFGS-B's ``ftol``/``gtol``: bootstrap refits, warm-started near
    their optimum, need θ to ~1e-6 rather than the last digits.  Where the gradient path fails
    (a non-finite deviance or gradient), COBYQA refits from the start and the summary says so.
    """
    if layout.size == 0:
        return OptSummary(np.zeros(0), gr.objective(np.zeros(0), stats, layout, reml), True, "no θ to optimise", 1)
    scale = layout.scale
    if start is None:  # several factors: each fitted alone gives a start near the optimum
        start = moment_start(stats, layout, reml, fit_theta)
    start = layout.start if start is None else np.asarray(start, dtype=float)
    optimizer, options = optimizer_settings(stats, layout, tolerances)
    evaluations = Evaluations(stats, layout, reml)
    free = free_coordinates(start, layout).size
    if deviance_hessian(stats, free) and free == start.size:  # Newton steps only where no θ is on its bound
        newton, start = newton_from_deviances(evaluations, start, options["gtol"])
        if newton is not None:
            return newton
    handover = NEWTON_HANDOVER if newton_finishes(stats, layout) else None
    result = _minimise(evaluations, start / scale, optimizer, options, handover)
    if result.get("handover"):  # near the optimum, in the interior: Newton steps with the check's Hessian
        finish, theta, count = newton_finish(evaluations, result.x * scale, options["gtol"], start, int(result.nfev))
        if finish is not None:
            return finish
        result = _minimise(evaluations, theta / scale, optimizer, options)  # L-BFGS-B on to gtol
        result.nfev += count
    if not _finite_result(result):
        optimizer, options = "COBYQA", fallback_settings(layout)
        result = _minimise(evaluations, start / scale, optimizer, options)
        optimizer = "COBYQA (fallback: the gradient path gave a non-finite value)"
    theta, count = snap_to_bounds(result.x * scale, layout), int(result.nfev)
    deviance, gradient = _deviance_and_gradient(theta, evaluations)
    for _ in range(int(layout.diagonal.sum())):  # each restart frees at least one diagonal
        probe = _below_false_boundary(theta, deviance, stats, layout, reml)
        if probe is None:
            break
        result = _minimise(evaluations, probe / scale, optimizer, options)
        theta, count = snap_to_bounds(result.x * scale, layout), count + int(result.nfev)
        deviance, gradient = _deviance_and_gradient(theta, evaluations)
    converged, message, gradient_norm = check_convergence(theta, deviance, gradient, stats, layout, reml,
                                                          result.message)
    return OptSummary(theta, deviance, converged, message, count, optimizer=optimizer, tolerances=options,
                      start=start, gradient_norm=gradient_norm)


NEWTON_STEPS = 6  # Newton steps on a large second block before handing over to L-BFGS-B
# how far (scaled θ) Newton's steps keep a Hessian: its error grows with the distance moved, ~1% here
STALE_HESSIAN = 1e-2
# a Newton step is taken unless the deviance rises by more than its rounding: at the gradient's floor
# the predicted fall (g'H⁻¹g/2, ~1e-10 at the 1M ratings) is far below the deviance's last digits,
# and a strict test there handed a converging fit to L-BFGS-B, which thrashed (the gradient decides)
NEWTON_ROUNDING = 1e-11


def newton_from_deviances(evaluations: "Evaluations", start, gtol: float) -> tuple[OptSummary | None, np.ndarray]:
    """Newton's method on a large second block with few θ, the Hessian (and the first step's
    gradient) from central differences of the deviance, then exact gradients; the summary, or None where a step would leave the
    interior or not descend, where a Hessian is not positive definite or NEWTON_STEPS are not
    enough (then L-BFGS-B fits from the best θ reached, also returned).

    There an exact gradient costs three Choleskys of the block (its dense inverse is two) and a
    deviance one.  From the moment start (within ~3e-4 of the optimum in scaled θ on the 1M
    ratings) the central differences the convergence check needs anyway (lme4's deriv12 scheme,
    :func:`central_differences`) give the gradient and Hessian of a first Newton step; the exact
    gradient there (a second step: the first lands ~1e-6 off, from the differences' gradient and
    the third derivative) and at the next point, where it reaches the gradient's rounding floor,
    confirms it; the check reuses the Hessian where θ is within its difference step (the Hessian
    there is the same to the differences' own error).  L-BFGS-B took a unit-length step away
    first and four more gradients to come back.  Further steps, from a start further away, take
    the exact gradients and keep the Hessian up to STALE_HESSIAN from where it was formed.
    """
    stats, layout, reml = evaluations.stats, evaluations.layout, evaluations.reml
    scale, theta = layout.scale, np.asarray(start, dtype=float)
    value, grad, hessian, centre, count = evaluations.deviance(theta), None, None, None, 1
    for _ in range(NEWTON_STEPS):
        if free_coordinates(theta, layout).size != theta.size or not np.isfinite(value):
            break
        if hessian is None or np.max(np.abs(theta / scale - centre)) > STALE_HESSIAN:
            differences, hessian, _ = central_differences(theta, value, stats, layout, reml)
            centre, count = theta / scale, count + theta.size * (theta.size + 1)
            grad = differences if grad is None else grad  # the first step's: exact ones after it
        try:
            move = -scipy.linalg.cho_solve(scipy.linalg.cho_factor(hessian), grad)
        except np.linalg.LinAlgError:
            break
        step, evaluated = _descending_step(evaluations, theta, value, move * scale)
        count += evaluated
        if step is None:
            break
        theta, value, exact = step
        grad = exact * scale
        if np.max(np.abs(grad)) <= gtol:  # the check's Hessian: this one where θ is within its step
            return _newton_summary(evaluations, theta, value, exact, hessian, centre, count,
                                   "Newton (Hessian from deviances)", {"gtol": gtol}, start), theta
    return None, theta


# L-BFGS-B hands over to newton_finish at the first interior point whose scaled gradient is below this:
# Newton steps from there are ~1e-4 (the Hessian's smallest eigenvalue is ~300 on the crossed and
# nested benchmark designs), within the reach where the check may reuse the Hessian (DEVIANCE_STEP)
NEWTON_HANDOVER = 0.3
NEWTON_FINISH_STEPS = 3


def newton_finishes(stats: CrossProducts, layout: ThetaLayout) -> bool:
    """Whether L-BFGS-B hands over to :func:`newton_finish`: several grouping factors with a
    small second block (a gradient is cheap next to a large block's factorization, where
    :func:`newton_from_deviances` runs instead) and θ small enough for the Hessian check."""
    return stats.n_factors > 1 and stats.pairs.size < LARGE_SECOND_BLOCK and 0 < layout.size <= HESSIAN_MAX_SIZE


def newton_finish(evaluations: "Evaluations", theta, gtol: float, start,
                  used: int = 0) -> tuple[OptSummary | None, np.ndarray, int]:
    """Newton's method from a point near the optimum with every θ inside its bounds, the Hessian
    the convergence check needs anyway (forward differences of the exact gradient, one per θ):
    (the summary, θ reached, gradients used counting the ``used`` before), the summary None where
    the Hessian is not positive definite beyond the screen's error, or a step would leave the
    interior or not descend, or NEWTON_FINISH_STEPS are not enough (L-BFGS-B goes on from θ).

    From where L-BFGS-B's scaled gradient first falls below NEWTON_HANDOVER, one Newton step
    reaches its stop (gtol) and the check reuses the Hessian where θ has moved at most
    DEVIANCE_STEP from where it was formed: on the three-factor benchmark design 8 L-BFGS-B
    evaluations, 5 for the Hessian and 2 steps (15 gradients) where L-BFGS-B took 13 to gtol and
    the check 5 more."""
    stats, layout, reml = evaluations.stats, evaluations.layout, evaluations.reml
    scale = layout.scale
    value, grad = _deviance_and_gradient(theta, evaluations)
    hessian, free = interior_hessian(theta, stats, layout, reml, grad)
    used += free.size
    if free.size != theta.size or not np.all(np.isfinite(hessian)) or not _positive_beyond_screen(hessian):
        return None, theta, used
    factor, centre = scipy.linalg.cho_factor(hessian), theta / scale
    for _ in range(NEWTON_FINISH_STEPS):
        step, evaluated = _descending_step(evaluations, theta, value,
                                           -scipy.linalg.cho_solve(factor, grad * scale) * scale)
        used += evaluated
        if step is None:
            break
        theta, value, grad = step
        if np.max(np.abs(scaled_gradient(theta, stats, layout, reml, grad))) <= gtol:
            return _newton_summary(evaluations, theta, value, grad, hessian, centre, used, "L-BFGS-B, then Newton",
                                   {"gtol": gtol, "handover": NEWTON_HANDOVER}, start), theta, used
    return None, theta, used


def _descending_step(evaluations: "Evaluations", theta, value: float, move) -> tuple[tuple | None, bool]:
    """((θ + move, its deviance, its exact gradient), whether it was evaluated), the first None
    where the step leaves the interior, or the deviance rises by more than its rounding
    (NEWTON_ROUNDING), or the gradient is not finite."""
    trial = theta + move
    if np.any(trial[evaluations.layout.diagonal] <= 0):
        return None, False
    trial_value, trial_grad = _deviance_and_gradient(trial, evaluations)
    if not (trial_value <= value + NEWTON_ROUNDING * abs(value) and np.all(np.isfinite(trial_grad))):
        return None, True
    return (trial, trial_value, trial_grad), True


def _newton_summary(evaluations: "Evaluations", theta, value: float, grad, hessian, centre, count: int,
                    optimizer: str, tolerances: dict, start) -> OptSummary:
    """The summary of Newton steps that reached gtol at θ: the convergence check reuses their
    ``hessian`` (in scaled θ) where θ is within DEVIANCE_STEP of where it was formed (``centre``,
    scaled), the Hessian there being the same to the differences' own error."""
    stats, layout, reml = evaluations.stats, evaluations.layout, evaluations.reml
    near = np.max(np.abs(theta / layout.scale - centre)) <= DEVIANCE_STEP
    converged, message, norm = check_convergence(theta, value, grad, stats, layout, reml,
                                                 "Newton steps: scaled gradient below gtol", hessian if near else None)
    return OptSummary(theta, value, converged, message, count, optimizer=optimizer, tolerances=tolerances,
                      start=np.asarray(start, dtype=float), gradient_norm=norm)


def newton_theta(stats: CrossProducts, layout: ThetaLayout, reml: bool, start, tolerance: float = 1e-2,
                 iterations: int = 8) -> OptSummary | None:
    """A few Newton steps from a nearby start (one grouping factor: exact gradient, Hessian by
    differences of it), for the inner fits of an outer search where θ̂ moves little between
    calls; L-BFGS-B's first step from such a start is a unit step that takes many halvings
    to undo.  None when it does not reach a scaled gradient below ``tolerance`` (the caller
    then runs the full fit) or when θ reaches a bound."""
    scale = layout.scale
    x = np.asarray(start, dtype=float) / scale

    def gradient(z):
        value, grad = gr.objective_gradient(z * scale, stats, layout, reml)
        return value, grad * scale

    value, grad = gradient(x)
    for count in range(iterations):
        if not np.isfinite(value):
            return None
        if np.max(np.abs(grad)) < tolerance:
            return OptSummary(x * scale, value, True, "Newton steps from a warm start", 2 * count + 1,
                              optimizer="Newton", tolerances={"max|gradient|": tolerance},
                              start=np.asarray(start, dtype=float), gradient_norm=float(np.max(np.abs(grad))))
        step = 1e-6 * np.maximum(np.abs(x), 1.0)
        hessian = np.column_stack([(gradient(x + h)[1] - grad) / h[j]
                                   for j, h in enumerate(np.diag(step))])
        try:
            move = np.linalg.solve(0.5 * (hessian + hessian.T), grad)
        except np.linalg.LinAlgError:
            return None
        trial = x - move
        if np.any(trial[layout.diagonal] <= 0):
            return None
        trial_value, trial_grad = gradient(trial)
        if not trial_value <= value:
            return None
        x, value, grad = trial, trial_value, trial_grad
    return None


# L-BFGS-B's stop on the projected scaled gradient with several grouping factors: 1% of
# GRADIENT_TOLERANCE and about the rounding floor of their gradient (~1e-5 at a deviance of
# 1e4), below which its last line search only thrashes (a third of the evaluations of a
# three-factor fit) for changes in θ of ~1e-10.
SEVERAL_FACTORS_GTOL = 2e-5


def optimizer_settings(stats: CrossProducts, layout: ThetaLayout, tolerances=None) -> tuple[str, dict]:
    """The optimiser and its options: L-BFGS-B with the exact gradient for any number of grouping
    factors.  ``tolerances`` override its stops to make them rougher (warm-started refits), never
    to put ``gtol`` below the floor of the default's."""
    floor = SEVERAL_FACTORS_GTOL if stats.n_factors > 1 else 1e-10
    line_searches = 50
    if stats.n_factors > 1 and stats.pairs.size >= LARGE_SECOND_BLOCK:
        floor, line_searches = LARGE_BLOCK_GTOL, LARGE_BLOCK_MAXLS
    options = {"maxiter": 5000, "ftol": 1e-15, "gtol": floor, "maxls": line_searches, **(tolerances or {})}
    return "L-BFGS-B", {**options, "gtol": max(options["gtol"], floor)}


# A large second block's stops: its gradient's rounding floor grows with the deviance (measured at
# the 1M-ratings optimum, deviance 3e6: ±3e-4 between points 1e-9 apart), above SEVERAL_FACTORS_GTOL,
# so L-BFGS-B's last line search could only request near-identical points, each a factorization and
# a dense inverse of seconds (40 of the 46 requests of that fit; with a tenth of the check's
# tolerance still 17, with half of it 6, the same log-likelihood to 1e-9).  Half the convergence
# check's tolerance, which still decides, and at most 10 line-search steps.
LARGE_BLOCK_GTOL = 0.5 * GRADIENT_TOLERANCE
LARGE_BLOCK_MAXLS = 10


def fallback_settings(layout: ThetaLayout) -> dict:
    """COBYQA's options, for the derivative-free fallback."""
    return {"maxfev": 500 * (layout.size + 1), "final_tr_radius": 1e-8}


class Evaluations:
    """The deviance and its exact gradient in θ for one fit, remembered by θ's bytes.

    L-BFGS-B asks for points again: where its line search runs out of digits it can request
    the same θ a dozen times (16 of the 45 evaluations of the InstEval-sized fit), and the
    convergence check starts at the point it stopped on.  Each evaluation is a factorization
    and, with a large second block, its dense inverse: seconds at Q2 = 8,000.
    """

    def __init__(self, stats: CrossProducts, layout: ThetaLayout, reml: bool):
        self.stats, self.layout, self.reml = stats, layout, reml
        self.known: dict[bytes, tuple[float, np.ndarray]] = {}

    def __call__(self, theta) -> tuple[float, np.ndarray]:
        theta = np.asarray(theta, dtype=float)
        key = theta.tobytes()
        if key not in self.known:
            self.known[key] = gr.objective_gradient(theta, self.stats, self.layout, self.reml)
        return self.known[key]

    def deviance(self, theta) -> float:
        """The deviance alone: remembered, or computed without the gradient."""
        known = self.known.get(np.asarray(theta, dtype=float).tobytes())
        if known is not None and np.isfinite(known[0]):
            return known[0]
        return gr.objective(theta, self.stats, self.layout, self.reml)  # also where the gradient path failed


def _deviance_and_gradient(theta, evaluations: Evaluations) -> tuple[float, np.ndarray]:
    """The profiled deviance at θ and its exact gradient, once for the restart probes and the
    convergence checks: remembered where the optimiser evaluated θ (its final point, unless
    snapped to a bound), else evaluated; the deviance alone where the gradient path cannot
    give it."""
    try:
        deviance, gradient = evaluations(theta)
    except np.linalg.LinAlgError:
        deviance, gradient = np.nan, np.full(theta.shape, np.nan)
    if not np.isfinite(deviance):
        deviance = evaluations.deviance(theta)
    return deviance, gradient


def _finite_result(result) -> bool:
    jac = getattr(result, "jac", None)
    return bool(np.isfinite(result.fun) and (jac is None or np.all(np.isfinite(jac))))


class _GradientReached(Exception):
    """Raised inside L-BFGS-B's objective at a point that meets its gradient test (see
    :func:`_lbfgsb`), with that point's scaled θ, deviance and scaled gradient, and whether it
    met the handover's test only."""

    def __init__(self, x, value, grad, handover: bool):
        super().__init__()
        self.x, self.value, self.grad, self.handover = x, value, grad, handover


def _minimise(evaluations: Evaluations, start_scaled, optimizer: str, options: dict, handover: float | None = None):
    stats, layout, reml = evaluations.stats, evaluations.layout, evaluations.reml
    scale = layout.scale
    bounds = [(0.0, None) if lo == 0 else (None, None) for lo in layout.lower]
    if optimizer == "L-BFGS-B":
        return _lbfgsb(evaluations, start_scaled, bounds, options, handover)

    def fun(scaled):
        return gr.objective(scaled * scale, stats, layout, reml)
    return minimize(fun, start_scaled, method="COBYQA", bounds=bounds, options=options)


def _lbfgsb(evaluations: Evaluations, start_scaled, bounds, options: dict, handover: float | None = None):
    """L-BFGS-B on the scaled θ, stopped at the first point it evaluates whose projected scaled
    gradient is within ``gtol`` and whose deviance is within rounding (NEWTON_ROUNDING) of the
    lowest seen.  L-BFGS-B tests its gradient only at the points its line searches accept; at
    the gradient's rounding floor (several factors: ~1e-5) a line search from a point just above
    ``gtol`` finds no decrease beyond rounding and asks for ~20 near-identical points (the
    three-factor design: 24 of 37 evaluations) while one of the first it tried already met the test.
    With ``handover``, it stops as well at the first such point with the gradient within
    ``handover`` and every θ away from its bound (for :func:`newton_finish`; the result's
    ``handover`` says which stop)."""
    stats, layout, reml = evaluations.stats, evaluations.layout, evaluations.reml
    scale, gtol = layout.scale, options["gtol"]
    lowest, calls = [np.inf], [0]

    def fun(scaled):
        calls[0] += 1
        try:
            value, grad = evaluations(scaled * scale)
        except np.linalg.LinAlgError:
            return np.nan, np.full(scaled.shape, np.nan)
        worst = np.max(np.abs(scaled_gradient(scaled * scale, stats, layout, reml, grad)), initial=0.0)
        grad = grad * scale
        if value <= lowest[0] + NEWTON_ROUNDING * abs(value):
            if worst <= gtol:
                raise _GradientReached(np.array(scaled), value, grad, False)
            if handover is not None and worst <= handover and \
                    free_coordinates(scaled * scale, layout).size == scaled.size:
                raise _GradientReached(np.array(scaled), value, grad, True)
        lowest[0] = min(lowest[0], value)
        return value, grad

    try:
        return minimize(fun, start_scaled, jac=True, method="L-BFGS-B", bounds=bounds, options=options)
    except _GradientReached as reached:
        message = ("projected scaled gradient below the handover to Newton steps" if reached.handover
                   else "projected scaled gradient below gtol at an evaluated point")
        return OptimizeResult(x=reached.x, fun=reached.value, jac=reached.grad, success=True, nfev=calls[0],
                              message=message, handover=reached.handover)


PROBES = (1e-3, 1e-2, 1e-1)  # off-bound steps, in units of θ's natural size


def _below_false_boundary(theta, here, stats, layout, reml):
    """A point with lower deviance than ``here`` (the deviance at θ) just inside a bound the
    optimiser stopped on, or None.

    The deviance depends on a diagonal θ_j through θ_j² near 0, so its derivative there is 0
    whatever the optimum: a gradient method that steps onto the bound stops on it even when
    the optimum is inside (a third of the null refits of Dyestuff's random intercept did).
    Each diagonal at 0 is probed at small positive values; a lower deviance means restart.
    """
    at_bound = np.flatnonzero(layout.diagonal & (theta <= 0))
    if at_bound.size == 0:  # nothing to probe
        return None
    best, best_value = None, here - 1e-10 * max(1.0, abs(here))
    for j in at_bound:
        for step in PROBES:
            probe = theta.copy()
            probe[j] = step * layout.scale[j]
            value = gr.objective(probe, stats, layout, reml)
            if value < best_value:
                best, best_value = probe, value
    return best


def snap_to_bounds(theta: np.ndarray, layout: ThetaLayout) -> np.ndarray:
    theta = np.array(theta, dtype=float)
    theta[layout.diagonal] = np.maximum(theta[layout.diagonal], 0.0)
    return theta


def scaled_gradient(theta, stats, layout, reml, gradient=None) -> np.ndarray:
    """Exact gradient in θ's natural units; components pushing against an active bound set to 0.
    ``gradient`` is the gradient at θ where the caller already has it."""
    if gradient is None:
        gradient = gr.objective_gradient(theta, stats, layout, reml)[1]
    grad = gradient * layout.scale
    at_bound = layout.diagonal & (theta <= 0) & (grad > 0)
    return np.where(at_bound, 0.0, grad)


def check_convergence(theta, deviance, gradient, stats, layout, reml, optimizer_message,
                      hessian=None) -> tuple[bool, str, float]:
    """lme4's check: converged when max|scaled gradient| ≤ GRADIENT_TOLERANCE and, with several
    grouping factors, the Hessian on the interior has no negative eigenvalue (a warning
    otherwise); the verdict, its message and that maximum.  ``gradient`` is the exact gradient
    at θ; ``hessian`` the Hessian over every θ in scaled units where the optimiser has one
    formed within its differences' step of θ (:func:`newton_from_deviances`,
    :func:`newton_finish`)."""
    if not np.isfinite(deviance):
        return False, "the deviance is not finite at the optimum", np.nan
    grad = scaled_gradient(theta, stats, layout, reml, gradient)
    worst = float(np.max(np.abs(grad)))
    if worst > GRADIENT_TOLERANCE:
        message = (
            f"model failed to converge: max|grad| = {worst:.3g} (tol = {GRADIENT_TOLERANCE}); "
            f"optimizer said: {optimizer_message}"
        )
        warnings.warn(message, ConvergenceWarning, stacklevel=5)
        return False, message, worst
    negative = negative_curvature(theta, stats, layout, reml, gradient, deviance, hessian) if stats.n_factors > 1 else 0
    if negative:
        message = (f"model failed to converge: degenerate Hessian with {negative} negative eigenvalue(s) "
                   f"(max|grad| = {worst:.2g})")
        warnings.warn(message, ConvergenceWarning, stacklevel=5)
        return False, message, worst
    return True, f"converged (max|grad| = {worst:.2g})", worst


# From this size of the dense second block (Q2) a gradient costs about three factorizations (its
# dense inverse, dpotri, is twice the Cholesky), so for up to DEVIANCE_HESSIAN_MAX_SIZE free θ the
# p(p + 1) deviances of second differences are cheaper than 2p gradients.
LARGE_SECOND_BLOCK = 2000
DEVIANCE_HESSIAN_MAX_SIZE = 4
DEVIANCE_STEP = 1e-3


HESSIAN_STEP = 1e-4  # central differences of the exact gradient, in scaled units
# forward differences: between the gradient's rounding (which dominates at 1e-6) and truncation;
# eigenvalues within ~6e-6 of the largest of the central ones on Pastes and Penicillin
SCREEN_STEP = 3e-6
SCREEN_MARGIN = 1e-3  # smallest / largest eigenvalue above which the forward screen decides alone


def free_coordinates(theta, layout) -> np.ndarray:
    """The indices of θ away from their bound, where the Hessian is checked."""
    return np.flatnonzero(~layout.diagonal | (theta > 2 * HESSIAN_STEP * layout.scale))


def interior_hessian(theta, stats, layout, reml, gradient=None) -> tuple[np.ndarray, np.ndarray]:
    """The Hessian of the deviance in scaled θ over the coordinates away from their bound, and
    those coordinates' indices: central differences of the exact gradient (2 gradients per
    coordinate) or, given ``gradient`` at θ, forward differences (1 per coordinate)."""
    scale, free = layout.scale, free_coordinates(theta, layout)
    forward = gradient is not None
    h = SCREEN_STEP if forward else HESSIAN_STEP
    columns = []
    for j in free:
        step = np.zeros_like(theta)
        step[j] = h * scale[j]
        up = gr.objective_gradient(theta + step, stats, layout, reml)[1]
        if forward:
            columns.append((up - gradient)[free] * scale[free] / h)
        else:
            down = gr.objective_gradient(theta - step, stats, layout, reml)[1]
            columns.append((up - down)[free] * scale[free] / (2 * h))
    hessian = np.column_stack(columns) if columns else np.zeros((0, 0))
    return 0.5 * (hessian + hessian.T), free


def deviance_hessian(stats: CrossProducts, free: int) -> bool:
    """Whether the Hessian over ``free`` θ entries is cheaper from deviances than from gradients:
    a large dense second block (its gradient's inverse costs two Choleskys) and few θ."""
    return stats.n_factors > 1 and stats.pairs.size >= LARGE_SECOND_BLOCK and 0 < free <= DEVIANCE_HESSIAN_MAX_SIZE


def interior_hessian_from_deviances(theta, deviance, stats, layout, reml) -> tuple[np.ndarray, np.ndarray]:
    """The same Hessian as :func:`interior_hessian` from central second differences of the
    deviance (lme4's own deriv12 scheme), given the ``deviance`` at θ: 2p + p(p − 1)
    factorizations without the gradient's dense inverse, for p free coordinates
    (:func:`central_differences`)."""
    _, hessian, free = central_differences(theta, deviance, stats, layout, reml)
    return hessian, free


def central_differences(theta, deviance, stats, layout, reml) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The gradient and Hessian of the deviance in scaled θ over the coordinates away from their
    bound, and those coordinates, from central differences of the deviance given its value at θ.
    The step is DEVIANCE_STEP in scaled units (second differences of a deviance carrying ~1e-12
    relative rounding need a larger one than the gradient's), at most half the way to a bound."""
    free = free_coordinates(theta, layout)
    scaled = theta[free] / layout.scale[free]
    h = np.where(layout.diagonal[free], np.minimum(DEVIANCE_STEP, scaled / 2), DEVIANCE_STEP)
    steps = np.zeros((free.size, theta.size))
    steps[np.arange(free.size), free] = h * layout.scale[free]

    def at(offset):
        return gr.objective(theta + offset, stats, layout, reml)

    up, down = np.array([at(step) for step in steps]), np.array([at(-step) for step in steps])
    hessian = np.diag(up + down - 2 * deviance)
    for i in range(free.size):
        for j in range(i):
            both = at(steps[i] + steps[j]) + at(-steps[i] - steps[j])
            hessian[i, j] = hessian[j, i] = 0.5 * (both - up[i] - down[i] - up[j] - down[j] + 2 * deviance)
    return (up - down) / (2 * h), hessian / np.outer(h, h), free


def negative_curvature(theta, stats, layout, reml, gradient=None, deviance=None, hessian=None) -> int:
    """How many eigenvalues of the interior Hessian are below −HESSIAN_TOLERANCE × the largest
    (lme4's check.conv.hess); 0 where there are more than HESSIAN_MAX_SIZE free coordinates.

    Given the gradient at θ, forward differences screen first at half the cost: where their
    smallest eigenvalue is above SCREEN_MARGIN × the largest, far beyond their error, the
    Hessian is positive definite; anywhere nearer 0 the central differences decide.  Given the
    ``deviance`` at θ, a large second block with few free θ takes the Hessian from deviances
    instead (:func:`interior_hessian_from_deviances`); a ``hessian`` over every θ that the caller
    has (Newton's, :func:`newton_from_deviances` and :func:`newton_finish`) decides alone."""
    size = free_coordinates(theta, layout).size
    if not 0 < size <= HESSIAN_MAX_SIZE:
        return 0
    if hessian is not None and size == theta.size:
        return _negative_eigenvalues(hessian)
    if deviance is not None and deviance_hessian(stats, size):
        return _negative_eigenvalues(interior_hessian_from_deviances(theta, deviance, stats, layout, reml)[0])
    if gradient is not None and np.all(np.isfinite(gradient)):
        if _positive_beyond_screen(interior_hessian(theta, stats, layout, reml, gradient)[0]):
            return 0
    return _negative_eigenvalues(interior_hessian(theta, stats, layout, reml)[0])


def _positive_beyond_screen(hessian: np.ndarray) -> bool:
    """Whether a Hessian from forward differences is positive definite beyond their error: its
    smallest eigenvalue above SCREEN_MARGIN × the largest."""
    eigenvalues = np.linalg.eigvalsh(hessian)
    return bool(eigenvalues[0] > SCREEN_MARGIN * np.max(np.abs(eigenvalues)))


def _negative_eigenvalues(hessian: np.ndarray) -> int:
    """Eigenvalues below −HESSIAN_TOLERANCE × the largest in magnitude (lme4's check.conv.hess)."""
    eigenvalues = np.linalg.eigvalsh(hessian)
    largest = np.max(np.abs(eigenvalues))
    return int(np.sum(eigenvalues < -HESSIAN_TOLERANCE * largest)) if largest > 0 else 0
