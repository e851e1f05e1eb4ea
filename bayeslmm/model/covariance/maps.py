"""Maps between a random term's parameterizations: θ ↔ T ↔ D = σ²TT' ↔ (sd, cor) ↔ the
packed LKJ Cholesky factor σT, and θ's bounds.

θ stacks the terms' blocks in lme4's order, so term k's T is its own θ block unpacked
(:func:`term_slices`).  Every function on matrices also takes stacks (…, S, S) of them.
"""
from __future__ import annotations

import numpy as np

from bayeslmm.model.covariance.triangle import (
    columnwise_from_rowwise,
    correlation_pairs,
    lower_triangle,
    n_parameters,
    pack_columnwise,
    rowwise_from_columnwise,
    unpack_columnwise,
)

# --- θ ↔ T -----------------------------------------------------------------------------------


def term_slices(terms) -> list[slice]:
    """Each term's block of θ (and of the sd/cor vector, which has θ's order)."""
    out, start = [], 0
    for term in terms:
        out.append(slice(start, start + n_parameters(term.size)))
        start += n_parameters(term.size)
    return out


def theta_lower(size: int) -> np.ndarray:
    """θ's lower bounds for one S-column term: 0 on T's diagonal, −∞ below it."""
    return np.array([0.0 if r == c else -np.inf for r, c in lower_triangle(size)])


def term_factors(terms, theta: np.ndarray) -> list[np.ndarray]:
    """The relative Cholesky factor T_k (S × S, lower triangular) of every term at ``theta``."""
    theta = np.asarray(theta, dtype=float)
    return [unpack_columnwise(theta[..., block], term.size) for term, block in zip(terms, term_slices(terms))]


def grouping_factors(spec, factors) -> list[np.ndarray]:
    """Each grouping factor's T_f (or D_f, L_f): the terms' matrices ``factors`` on its diagonal."""
    out = [np.zeros((f.n_columns, f.n_columns)) for f in spec.factors]
    for term, M in zip(spec.terms, factors):
        out[term.factor][term.columns, term.columns] = M
    return out


def theta_of_factors(factors) -> np.ndarray:
    """θ from the terms' relative Cholesky factors (the inverse of :func:`term_factors`)."""
    return np.concatenate([pack_columnwise(T) for T in factors], axis=-1) if factors else np.zeros(0)


# --- T ↔ D ↔ (sd, cor) ------------------------------------------------------------------------


def covariance(T: np.ndarray, sigma=1.0) -> np.ndarray:
    """D = σ² T T', the covariance of a term's random effects (σ a scalar or one per stacked T)."""
    T = np.asarray(T, dtype=float)
    sigma = np.asarray(sigma, dtype=float)[..., None, None]
    return sigma**2 * (T @ np.swapaxes(T, -1, -2))


def sd_cor(D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sds (…, S) and the correlation matrix (…, S, S) of a covariance D.

    A correlation next to a zero sd is NaN (0/0, as lme4's ``VarCorr``); the diagonal is 1.
    """
    D = np.asarray(D, dtype=float)
    sd = np.sqrt(np.diagonal(D, axis1=-2, axis2=-1))
    scale = sd[..., :, None] * sd[..., None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        cor = np.where(scale > 0, D / np.where(scale > 0, scale, 1.0), np.nan)
    size = D.shape[-1]
    cor[..., np.arange(size), np.arange(size)] = 1.0
    return sd, cor


def sdcor_vector(D: np.ndarray) -> np.ndarray:
    """sds on the diagonal, correlations below it, in lme4's (θ's) order (lme4's ``Cv_to_Sv``
    with NaN, not 0, next to a zero sd)."""
    sd, cor = sd_cor(D)
    size = sd.shape[-1]
    return pack_columnwise(np.where(np.eye(size, dtype=bool), sd[..., None, :] * np.eye(size), cor))


def sdcor_matrices(v: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(sd, cor) from an sd/cor vector in θ's order (the inverse of :func:`sdcor_vector`)."""
    L = unpack_columnwise(v, size)
    sd = np.diagonal(L, axis1=-2, axis2=-1).copy()
    strict = np.tril(L, -1)
    return sd, strict + np.swapaxes(strict, -1, -2) + np.eye(size)


def correlation_matrix(values: np.ndarray, size: int) -> np.ndarray:
    """The correlation matrix (…, S, S) from its correlations (…, S(S−1)/2) in lme4's order."""
    values = np.asarray(values, dtype=float)
    R = np.broadcast_to(np.eye(size), values.shape[:-1] + (size, size)).copy()
    for k, (r, c) in enumerate(correlation_pairs(size)):
        R[..., r, c] = R[..., c, r] = values[..., k]
    return R


def correlations(cor: np.ndarray) -> np.ndarray:
    """The correlations (…, S(S−1)/2) below the diagonal of ``cor`` (…, S, S), lme4's order."""
    pairs = correlation_pairs(np.shape(cor)[-1])
    return np.stack([cor[..., r, c] for r, c in pairs], axis=-1) if pairs else np.zeros(np.shape(cor)[:-2] + (0,))


def defined(cor: np.ndarray) -> np.ndarray:
    """Correlations with the undefined ones (NaN, next to a zero sd) set to 0: the value every
    map back to D, T or the LKJ factor reads them as (any value gives the same D), and what a
    search over finite coordinates starts from (lme4's profile does the same)."""
    return np.nan_to_num(np.asarray(cor, dtype=float), nan=0.0)


def covariance_of_sdcor(sd: np.ndarray, cor: np.ndarray) -> np.ndarray:
    """D = diag(sd) R diag(sd)."""
    sd = np.asarray(sd, dtype=float)
    return sd[..., :, None] * defined(cor) * sd[..., None, :]


def cholesky_of_sdcor(sd: np.ndarray, cor: np.ndarray) -> np.ndarray:
    """L = diag(sd) chol(R): lower triangular, L L' = D, defined at zero sds too.

    Raises ``numpy.linalg.LinAlgError`` when R is not positive definite."""
    sd = np.asarray(sd, dtype=float)
    return sd[..., :, None] * np.linalg.cholesky(defined(cor))


# --- all terms: θ ↔ the sd/cor vector ----------------------------------------------------------


def sdcor_of_theta(terms, theta: np.ndarray, sigma: float) -> np.ndarray:
    """Every term's sds and correlations at (θ, σ), stacked in θ's order (confint's rows)."""
    parts = [sdcor_vector(covariance(T, sigma)) for T in term_factors(terms, theta)]
    return np.concatenate(parts) if parts else np.zeros(0)


def theta_of_sdcor(terms, values: np.ndarray, sigma: float) -> np.ndarray | None:
    """θ at the sds and correlations ``values`` (θ's order) and σ; None where they are not a
    covariance (a negative sd, a correlation outside (−1, 1), R not positive definite)."""
    factors = []
    for term, block in zip(terms, term_slices(terms)):
        sd, cor = sdcor_matrices(values[block], term.size)
        cor = defined(cor)
        if np.any(sd < 0) or np.any(np.abs(cor - np.eye(term.size)) >= 1):  # off the diagonal
            return None
        try:
            factors.append(cholesky_of_sdcor(sd, cor) / sigma)
        except np.linalg.LinAlgError:
            return None
    return theta_of_factors(factors)


# --- θ ↔ PyMC's packed LKJ Cholesky factor -----------------------------------------------------


def lkj_of_theta(theta_block: np.ndarray, size: int, sigma=1.0) -> np.ndarray:
    """LKJCholeskyCov's packed factor σT (row by row) from one term's θ block."""
    return np.asarray(sigma, dtype=float)[..., None] * rowwise_from_columnwise(theta_block, size)


def theta_of_lkj(packed: np.ndarray, size: int, sigma=1.0) -> np.ndarray:
    """One term's θ block from LKJCholeskyCov's packed factor σT."""
    return columnwise_from_rowwise(packed, size) / np.asarray(sigma, dtype=float)[..., None]
