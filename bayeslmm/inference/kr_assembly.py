"""Kenward–Roger's final assembly, shared by every form of V.

Both :mod:`bayeslmm.inference.kenward_roger` (V linear in its parameters, per level of a
grouping factor or dense) and :mod:`bayeslmm.inference.kenward_roger_residual` (a residual
structure, V non-linear in ψ) reduce the data to the same sums over blocks of V:

    X'V⁻¹X,   P_k = −X'V⁻¹V_kV⁻¹X,   Q_kl = X'V⁻¹V_kV⁻¹V_lV⁻¹X,   K_kl = tr(V⁻¹V_kV⁻¹V_l),
    R_kl = X'V⁻¹V_klV⁻¹X   (0 where V is linear in its parameters).

From those, with Φ = (X'V⁻¹X)⁻¹ (Kenward & Roger 1997, as pbkrtest computes it):

    I_kl = K_kl − 2 tr(ΦQ_kl) + tr(ΦP_kΦP_l),   W = 2 I⁻¹,
    Φ_A = Φ + 2Φ [Σ_kl W_kl (Q_kl − P_kΦP_l − ¼R_kl)] Φ.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bayeslmm.model.covariance import lower_triangle


@dataclass(frozen=True)
class KenwardRoger:
    """Φ, the adjusted Φ_A and the pieces the df need (P_k and W)."""

    phi: np.ndarray  # (p, p)
    phi_adjusted: np.ndarray  # (p, p)
    P: np.ndarray  # (m, p, p), m variance parameters
    W: np.ndarray  # (m, m)


def assemble(XVX: np.ndarray, P: np.ndarray, Q: np.ndarray, K: np.ndarray, R: np.ndarray | None = None
             ) -> KenwardRoger:
    """Φ, Φ_A, P and W from X'V⁻¹X (p, p), P (m, p, p), Q and R (m, m, p, p) and K (m, m)."""
    phi = np.linalg.inv(XVX)
    phi = (phi + phi.T) / 2
    PhiP = phi @ P  # (m, p, p)
    info = K - 2 * np.einsum("pr,klpr->kl", phi, Q) + np.einsum("kpr,lrp->kl", PhiP, PhiP)
    W = twice_inverse(info)
    curvature = Q if R is None else Q - R / 4
    middle = np.einsum("kl,klpr->pr", W, curvature) - np.einsum("kl,kps,lsr->pr", W, P @ phi, P)
    adjusted = phi + 2 * phi @ middle @ phi
    return KenwardRoger(phi, (adjusted + adjusted.T) / 2, P, W)


def twice_inverse(info: np.ndarray) -> np.ndarray:
    """2 I⁻¹, by the pseudo-inverse when I is (nearly) singular, as pbkrtest does."""
    smallest = np.min(np.abs(np.linalg.eigvalsh(info)))
    W = 2 * (np.linalg.inv(info) if smallest > 1e-10 else np.linalg.pinv(info))
    return (W + W.T) / 2


def term_patterns(spec, factor_index: int) -> list[tuple[int, int]]:
    """(row, column) inside a factor's S columns of every covariance parameter on that factor."""
    out = []
    for term in spec.terms:
        if term.factor == factor_index:
            out += [(term.offset + r, term.offset + c) for r, c in lower_triangle(term.size)]
    return out


def pattern(size: int, pairs) -> np.ndarray:
    """The symmetric 0/1 matrix with ones at ``pairs`` (and their mirror images): ∂D/∂D_rc."""
    E = np.zeros((size, size))
    for r, c in pairs:
        E[r, c] = E[c, r] = 1.0
    return E
