"""θ ↔ the relative covariance factors T_f of each grouping factor (lme4's Λθ).

θ stacks, term by term in lme4's order, the lower triangle of each term's
Cholesky factor column by column; diagonal entries are bounded below by 0.
Terms on the same factor occupy diagonal blocks of that factor's T.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    lower, names, scale = [], [], []
    entries: list[list[tuple[int, int, int]]] = [[] for _ in spec.factors]
    rms = [np.sqrt(np.mean(f.raw**2, axis=0)) for f in spec.factors]
    for term in spec.terms:
        for c in range(term.size):
            for r in range(c, term.size):
                entries[term.factor].append((term.offset + r, term.offset + c, len(lower)))
                size = rms[term.factor][term.offset + r]
                scale.append(1.0 / size if size > 0 else 1.0)
                lower.append(0.0 if r == c else -np.inf)
                pair = term.column_names[r] if r == c else f"{term.column_names[r]}.{term.column_names[c]}"
                names.append(f"{term.group_name}.{pair}")
    packed = tuple(
        tuple(np.asarray(col, dtype=np.intp).reshape(-1) for col in zip(*e)) if e else (np.empty(0, np.intp),) * 3
        for e in entries
    )
    sizes = tuple(f.n_columns for f in spec.factors)
    return ThetaLayout(len(lower), np.asarray(lower), tuple(names), sizes, packed, np.asarray(scale))
