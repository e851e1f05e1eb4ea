"""θ ↔ the relative covariance factors T_f of each grouping factor (lme4's Λθ).

θ stacks, term by term in lme4's order, the lower triangle of each term's
Cholesky factor column by column; diagonal entries are bounded below by 0.
Terms on the same factor occupy diagonal blocks of that factor's T.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bayeslmm.model.covariance.maps import term_slices, theta_lower
from bayeslmm.model.covariance.names import theta_names
from bayeslmm.model.covariance.triangle import columnwise_indices
from bayeslmm.model.spec import ModelSpec


@dataclass(frozen=True)
class ThetaLayout:
    size: int
    lower: np.ndarray  # 0 on diagonal entries, -inf elsewhere
    names: tuple[str, ...]  # lme4's names, e.g. "Subject.Days.(Intercept)"
    factor_sizes: tuple[int, ...]  # S of each factor
    entries: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]  # per factor: rows, cols, θ index
    scale: np.ndarray  # 1 / rms of the column each θ entry multiplies: θ's natural size

    def factors_T(self, theta: np.ndarray) -> list[np.ndarray]:
        """The S×S lower-triangular T of every factor at ``theta``."""
        out = []
        for size, (rows, cols, index) in zip(self.factor_sizes, self.entries):
            T = np.zeros((size, size))
            T[rows, cols] = theta[index]
            out.append(T)
        return out

    @property
    def start(self) -> np.ndarray:
        """Every T diagonal, each random effect's sd equal to σ per unit of its column's rms.

        With columns of unit rms (intercepts, standardised covariates) this is lme4's
        identity start; with a covariate such as time in days it is on the right scale.
        """
        return np.where(self.lower == 0, self.scale, 0.0)

    @property
    def diagonal(self) -> np.ndarray:
        return self.lower == 0


def theta_layout(spec: ModelSpec) -> ThetaLayout:
    """θ's size, bounds, names, natural scales and place in each factor's T, for ``spec``."""
    entries: list[list[np.ndarray]] = [[] for _ in spec.factors]
    rms = [np.sqrt(np.mean(f.raw**2, axis=0)) for f in spec.factors]
    scale = []
    for term, block in zip(spec.terms, term_slices(spec.terms)):
        rows, cols = columnwise_indices(term.size)
        index = np.arange(block.start, block.stop, dtype=np.intp)
        entries[term.factor].append(np.stack([term.offset + rows, term.offset + cols, index]))
        size = rms[term.factor][term.offset + rows]
        scale.append(np.where(size > 0, 1.0 / np.where(size > 0, size, 1.0), 1.0))
    packed = tuple(tuple(np.concatenate(e, axis=1)) if e else (np.empty(0, np.intp),) * 3 for e in entries)
    lower = np.concatenate([theta_lower(t.size) for t in spec.terms]) if spec.terms else np.zeros(0)
    names = tuple(name for term in spec.terms for name in theta_names(term))
    sizes = tuple(f.n_columns for f in spec.factors)
    return ThetaLayout(lower.size, lower, names, sizes, packed, np.concatenate(scale) if scale else np.zeros(0))
