"""The compiled kernel's arguments for one BayesSetup: its statistics, priors and parameter layout.

:func:`bayeslmm.linalg.compiled.marginal_logp` takes only arrays, so that it compiles once;
this module encodes a setup into them (:func:`kernel_arguments`) and says which setups it
covers (:func:`kernel_covers`): one grouping factor or several with a small second block, no
residual structure; one grouping factor with the residual structures of
:mod:`bayeslmm.bayes.kernel_residual`.  The vector of unconstrained parameters is laid out as
PyMC's marginalised model's value variables, in their order: log σ, then per random term its
log sds and, for two or more columns, its correlation's CholeskyCorr vector, then the residual
structure's variables (:func:`parameter_blocks`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bayeslmm.bayes.kernel_residual import residual_arguments, residual_blocks, residual_gap
from bayeslmm.bayes.setup import BayesSetup
from bayeslmm.linalg import compiled, compiled_blocked, compiled_residual
from bayeslmm.model.covariance import corr_chol_variable, sd_variable
from bayeslmm.model.priors import Exponential, HalfNormal, HalfStudentT


def kernel_covers(setup: BayesSetup) -> bool:
    """Whether the compiled kernel evaluates this setup's marginalised model: one grouping factor,
    or several whose second block is small (:func:`bayeslmm.linalg.compiled_blocked.covers`), and
    no residual structure; or one grouping factor (or none) with a residual structure the residual
    kernel covers (:func:`bayeslmm.bayes.kernel_residual.residual_gap`)."""
    if setup.residual is not None:
        return residual_gap(setup) is None
    if not setup.spec.factors:
        return False
    return len(setup.spec.factors) == 1 or compiled_blocked.covers(setup.stats)


def uncovered_shape(setup: BayesSetup, marginalize: bool = True) -> str:
    """What the kernel does not cover in this setup, for the fallback's warning ('' where covered)."""
    if not marginalize:
        return "the hierarchical model (marginalize=False)"
    if setup.residual is not None:
        return residual_gap(setup) or ""
    if not setup.spec.factors:
        return "a model without random effects"
    if kernel_covers(setup):
        return ""
    return (f"{len(setup.spec.factors)} grouping factors whose later factors have more than "
            f"{compiled_blocked.MAX_SECOND_BLOCK} random effects together")


def several_factors(setup: BayesSetup) -> bool:
    """Whether the setup runs the several-factor kernel (:func:`bayeslmm.linalg.compiled_blocked.blocked_marginal_logp`)."""
    return len(setup.spec.factors) > 1


@dataclass(frozen=True)
class ParameterBlock:
    """One PyMC value variable inside the kernel's parameter vector."""

    name: str  # the posterior variable's name (sigma, sd_… or corr_chol_…)
    start: int
    size: int
    correlation: int = 0  # columns of the correlation whose CholeskyCorr vector this is; 0 for log values
    transform: str = "log"  # σ and sds: log; a residual structure's: "logodds" (ρ's Beta) or "identity"


def parameter_blocks(setup: BayesSetup) -> list[ParameterBlock]:
    """The value variables in PyMC's order, with their place in the kernel's vector: log σ, then
    per term its log sds and, for two or more columns, its correlation's CholeskyCorr vector;
    then a residual structure's variables."""
    blocks, start = [ParameterBlock("sigma", 0, 1)], 1
    for term, label in zip(setup.spec.terms, setup.labels):
        blocks.append(ParameterBlock(sd_variable(label), start, term.size))
        start += term.size
        if term.size > 1:
            blocks.append(ParameterBlock(corr_chol_variable(label), start, term.size * (term.size - 1) // 2,
                                         term.size))
            start += blocks[-1].size
    for name, size, transform in residual_blocks(setup) if setup.residual is not None else ():
        blocks.append(ParameterBlock(name, start, size, transform=transform))
        start += size
    return blocks


def sd_blocks(setup: BayesSetup) -> list[ParameterBlock]:
    """The terms' log sds, one block per term."""
    return [b for b in parameter_blocks(setup)[1:] if not b.correlation and b.transform == "log"]


def kernel_arguments(setup: BayesSetup) -> tuple:
    """Everything after x that :func:`bayeslmm.linalg.compiled.marginal_logp` takes (one factor) or
    :func:`bayeslmm.linalg.compiled_blocked.blocked_marginal_logp` (several)."""
    start, size, offset, eta, lkj, kind, a, b, constant = term_arguments(setup)
    stats, beta = setup.stats, setup.priors.beta
    tail = (_f64(stats.XYtXY), float(stats.n), float(stats.log_weights), _f64(beta.precision), _f64(beta.shift),
            float(beta.constant))
    if setup.residual is not None:
        blocks = parameter_blocks(setup)
        residual_start = sum(b.size for b in blocks if b.transform == "log")  # φ comes last
        return ((start, size, offset, eta, lkj, kind, a, b, constant) + residual_arguments(setup, residual_start)
                + (float(stats.n), _f64(beta.precision), _f64(beta.shift), float(beta.constant)))
    if not several_factors(setup):
        return (start, size, offset, eta, lkj, kind, a, b, constant, _f64(stats.ZtZ1), _f64(stats.ZtXY1)) + tail
    sizes = np.array([f.n_columns for f in setup.spec.factors], dtype=np.int64)
    levels = np.array(stats.levels, dtype=np.int64)
    by_level, dense = compiled_blocked.level_arguments(stats)
    return ((start, size, offset, kind, sizes, levels, eta, lkj, a, b, constant, _f64(stats.ZtZ1), _f64(stats.ZtXY1),
             _f64(stats.ZtZ2), _f64(stats.ZtXY2)) + by_level + (dense,) + tail)


def term_arguments(setup: BayesSetup) -> tuple:
    """Per term: its first column (the factors' columns one after another), size, place in x, LKJ η
    and constant; per column (σ last): the scale prior's code, parameters and constant."""
    spec, priors = setup.spec, setup.priors
    terms = spec.terms
    first_column = np.cumsum([0] + [f.n_columns for f in spec.factors])
    start = np.array([first_column[t.factor] + t.columns.start for t in terms], dtype=np.int64)
    size = np.array([t.size for t in terms], dtype=np.int64)
    offset = np.array([b.start for b in sd_blocks(setup)], dtype=np.int64)
    eta = np.array([getattr(p, "eta", 1.0) for p in priors.terms], dtype=float)
    lkj = np.array([lkj_constant(e, s) if s > 1 else 0.0 for e, s in zip(eta, size)])
    scale_priors = [None] * int(first_column[-1]) + [priors.sigma]
    for column, term, prior in zip(start, terms, priors.terms):
        scale_priors[column : column + term.size] = prior.sds
    kind, a, b, constant = (np.array(v) for v in zip(*map(encode_scale_prior, scale_priors)))
    return start, size, offset, eta, lkj, kind.astype(np.int64), a.astype(float), b.astype(float), constant.astype(float)


def _f64(array) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float64)


def encode_scale_prior(prior) -> tuple[int, float, float, float]:
    """(family code, first parameter, scale, log normalising constant) of a scale prior."""
    if isinstance(prior, HalfStudentT):
        nu, s = float(prior.nu), float(prior.sigma)
        constant = (math.log(2.0) + math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2)
                    - 0.5 * math.log(nu * math.pi * s * s))
        return compiled.HALF_STUDENT_T, nu, s, constant
    if isinstance(prior, HalfNormal):
        s = float(prior.sigma)
        return compiled.HALF_NORMAL, 0.0, s, 0.5 * math.log(2.0 / math.pi) - math.log(s)
    if isinstance(prior, Exponential):
        return compiled.EXPONENTIAL, 0.0, float(prior.scale), -math.log(float(prior.scale))
    raise TypeError(f"not a scale prior: {prior!r}")


def lkj_constant(eta: float, n: int) -> float:
    """The log normalising constant of LKJ(η) on n×n correlation matrices, as PyMC's."""
    k = np.arange(1, n)
    return float((n - 1) * math.lgamma(eta + 0.5 * (n - 1))
                 - sum(0.5 * kk * math.log(math.pi) + math.lgamma(eta + 0.5 * (n - 1 - kk)) for kk in k))


def log_density(setup: BayesSetup):
    """x ↦ (log p, ∇ log p) of the marginalised model, through the compiled kernel."""
    arguments = kernel_arguments(setup)
    kernel = (compiled_residual.residual_marginal_logp if setup.residual is not None else
              compiled_blocked.blocked_marginal_logp if several_factors(setup) else compiled.marginal_logp)
    return lambda x: kernel(np.asarray(x, dtype=float), *arguments)
