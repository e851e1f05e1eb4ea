"""The exact restricted likelihood-ratio test of one variance component being 0
(Crainiceanu & Ruppert 2004, JRSS-B 66(1); R's RLRsim::exactRLRT).

For y = Xβ + Zb + ε, b ~ N(0, λσ²I_K), ε ~ N(0, σ²I_n) and H0: λ = 0, the RLRT has the
null distribution of

    sup_{λ ≥ 0}  (n − p) log(1 + N(λ)/D(λ)) − Σ_s log(1 + λμ_s),
    N(λ) = Σ_s λμ_s/(1 + λμ_s) w_s²,   D(λ) = Σ_s w_s²/(1 + λμ_s) + Σ_{s>K}^{n−p} w_s²,

with w_s iid N(0, 1) and μ_s the eigenvalues of Z'P₀Z, P₀ = I − X(X'X)⁻¹X'.  Z'P₀Z is
Z'Z − Z'X(X'X)⁻¹X'Z, formed from the model's per-group cross-products (K × K, never n × n).
As in RLRsim, μ is scaled to max 1 and the supremum taken over λ = 0 and a grid of
``grid_length − 1`` values log-spaced between e^{−10} and e^{8}.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bayeslmm.checks import check_count, check_same_weights
from bayeslmm.errors import LMMError
from bayeslmm.fit.state import FitState
from bayeslmm.linalg import gradient as gr
from bayeslmm.linalg import logdensity as ld
from bayeslmm.threads import one_blas_thread

SIMULATION_BATCH = 2000  # simulated statistics per block (bounds memory: batch × (K + grid))


@dataclass(frozen=True)
class RLRTResult:
    """The RLRT, its simulated p-value and null sample; prints like R's ``htest``."""

    statistic: float
    p_value: float
    n_sim: int
    sample: np.ndarray = field(repr=False)
    data: str = ""

    method = "simulated finite sample distribution of RLRT."

    def as_series(self) -> pd.Series:
        return pd.Series({"RLRT": self.statistic, "p_value": self.p_value, "n_sim": self.n_sim})

    def __str__(self) -> str:
        p = "p-value < 2.2e-16" if self.p_value < 2.2e-16 else f"p-value = {self.p_value:.4g}"
        return (f"\n\t{self.method}\n\t\n\t(p-value based on {self.n_sim} simulated values)\n\n"
                f"data:  {self.data}\nRLRT = {self.statistic:.5g}, {p}\n")

    def __repr__(self) -> str:
        return str(self)


@one_blas_thread()
def exact_rlrt(m, mA=None, m0=None, n_sim: int = 10000, seed=None, log_grid: tuple[float, float] = (-10.0, 8.0),
               grid_length: int = 200) -> RLRTResult:
    """Simulated exact RLRT that the one variance component of ``m`` is zero (RLRsim's exactRLRT).

    Parameters
    ----------
    m : LMM or LMMResult
        A model with a single scalar random term, e.g. ``y ~ x + (1 | g)``; an LMM or an ML fit
        is fitted by REML.  With ``mA`` and ``m0`` it is the model holding only the tested term,
        whose null distribution is used (Greven et al. 2008).
    mA, m0 : LMMResult, optional
        REML fits with and without the tested term (same fixed effects, one parameter apart);
        the statistic is then 2(ℓ_R(mA) − ℓ_R(m0)).
    n_sim : int
        Simulated null values; ``seed`` makes them reproducible.

    Returns
    -------
    RLRTResult
        ``statistic``, ``p_value`` (the share of simulated values above the statistic), ``n_sim``
        and ``sample``.

    Examples
    --------
    >>> import bayeslmm as blm
    >>> model = blm.LMM("Reaction ~ Days + (1 | Subject)", blm.datasets.load("sleepstudy"))
    >>> test = blm.exact_rlrt(model, n_sim=1000, seed=1)
    >>> round(test.statistic, 2), test.p_value
    (107.2, 0.0)
    """
    n_sim = check_count(n_sim, "n_sim")
    grid_length = check_count(grid_length, "grid_length")
    fit = _reml_fit(m)
    _check_single_component(fit)
    if (mA is None) != (m0 is None):
        raise LMMError("give both mA (with the tested term) and m0 (without it), or neither")
    statistic = _null_model_statistic(fit) if mA is None else _two_model_statistic(fit, mA, m0)
    statistic = max(0.0, statistic)
    if statistic == 0:  # RLRsim: no simulation needed, p = 1
        return RLRTResult(0.0, 1.0, 0, np.zeros(0), fit.spec.formula)
    mu = eigenvalues(fit)
    sample = simulate_null(mu, fit.spec.n, fit.spec.p, n_sim, np.random.default_rng(seed),
                           _grid(log_grid, grid_length))
    return RLRTResult(float(statistic), float(np.mean(statistic < sample)), n_sim, sample, fit.spec.formula)


def _is_result(m) -> bool:
    """A REML/ML result: it carries its fit state."""
    return isinstance(getattr(m, "state", None), FitState)


def _reml_fit(m):
    """The REML fit of ``m``: a result (refitted by REML if it is ML) or a model (its ``fit``)."""
    if _is_result(m):
        return m if m.reml else m.refit("REML")
    if not callable(getattr(m, "fit", None)):
        raise LMMError(f"m must be an LMM or its REML fit (LMMResult); got {type(m).__name__}")
    return m.fit("REML")


def _check_single_component(fit) -> None:
    spec = fit.spec
    if fit.state.residual is not None:
        raise LMMError("exact_rlrt needs independent errors; the model has a residual structure")
    if len(spec.terms) != 1 or spec.terms[0].size != 1:
        raise LMMError(f"exact_rlrt tests a single variance: m needs one scalar random term such as (1 | g); "
                       f"{spec.formula!r} has {fit.layout.size} covariance parameters. For a model with "
                       "several terms pass it as mA, the model without the tested term as m0, and the "
                       "model with only the tested term as m")


def _null_model_statistic(fit) -> float:
    """2(ℓ_R(θ̂) − ℓ_R(θ = 0)): the REML criterion with no random effect is that of lm."""
    zero = gr.objective(np.zeros(fit.layout.size), fit.state.stats, fit.layout, reml=True)
    return zero - fit.deviance


def _two_model_statistic(fit, mA, m0) -> float:
    for name, other in (("mA", mA), ("m0", m0)):
        if not _is_result(other) or not other.reml:
            raise LMMError(f"{name} must be a REML fit (LMMResult from LMM(...).fit('REML'))")
    if mA.spec.fixef_names != m0.spec.fixef_names or not np.allclose(mA.spec.X, m0.spec.X):
        raise LMMError("fixed effects of mA and m0 differ: REML-based inference needs the same fixed effects")
    if mA.spec.n != m0.spec.n or not np.array_equal(mA.spec.y, m0.spec.y):
        raise LMMError("mA and m0 were fitted to different data; fit them to the same rows")
    check_same_weights(mA.spec, m0.spec, "mA and m0")
    if mA.npar - m0.npar != 1:
        raise LMMError(f"mA and m0 differ by {mA.npar - m0.npar} parameters; exact_rlrt tests a single "
                       "variance (covariances set to 0 under H0 are not allowed)")
    return 2 * (mA.loglik - m0.loglik)


def eigenvalues(fit) -> np.ndarray:
    """μ: eigenvalues of Z'P₀Z (descending, scaled to max 1, rank-deficient part kept at 0)."""
    stats, p = fit.state.stats, fit.spec.p
    ZtZ = stats.ZtZ1[:, 0, 0]
    ZtX = stats.ZtXY1[:, 0, :p]
    L = np.linalg.cholesky(stats.XYtXY[:p, :p])
    U = ld.solve_lower(L, ZtX.T)  # L⁻¹X'Z: Z'X(X'X)⁻¹X'Z = U'U
    mu = np.linalg.eigvalsh(np.diag(ZtZ) - U.T @ U)[::-1]
    mu = np.clip(mu, 0.0, None)[: min(fit.spec.n, mu.size)]
    return mu / mu[0]


def _grid(log_grid, grid_length: int) -> np.ndarray:
    low, high = log_grid
    if not low < high:
        raise LMMError(f"log_grid must be (low, high) with low < high; got {log_grid!r}")
    return np.r_[0.0, np.exp(np.linspace(low, high, grid_length - 1))]


def simulate_null(mu: np.ndarray, n: int, p: int, n_sim: int, rng: np.random.Generator,
                  grid: np.ndarray) -> np.ndarray:
    """n_sim draws of the RLRT under H0, the supremum over ``grid`` (which includes λ = 0)."""
    K = mu.size
    shrink = 1.0 / (1.0 + np.outer(mu, grid))  # (K, grid): 1 / (1 + λμ_s)
    penalty = np.log1p(np.outer(mu, grid)).sum(axis=0)  # Σ_s log(1 + λμ_s)
    out = np.empty(n_sim)
    for start in range(0, n_sim, SIMULATION_BATCH):
        size = min(SIMULATION_BATCH, n_sim - start)
        w2 = rng.standard_normal((size, K)) ** 2
        rest = rng.chisquare(n - p - K, size) if n - p > K else np.zeros(size)
        D = w2 @ shrink + rest[:, None]  # (size, grid)
        total = w2.sum(axis=1) + rest  # N + D
        value = (n - p) * np.log(total[:, None] / D) - penalty
        out[start:start + size] = np.maximum(value.max(axis=1), 0.0)
    return out
