"""OptSummary: what the optimiser of a REML/ML fit did (MixedModels.jl's OptSummary).

Every fit over θ returns one: the θ it started from and ended at, the optimiser and its
stopping tolerances, the evaluations of the profiled deviance, the largest scaled gradient
component at the end (components pushing against an active bound excluded), and the
convergence verdict with its message.  A fit with a residual structure searches φ with θ
profiled out; its summary adds φ's start and end.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class OptSummary:
    """The optimiser's record of one fit (``fit.optsum``).

    Attributes
    ----------
    theta, deviance : the final θ and the profiled deviance (−2ℓ, REML or ML) there.
    converged, message : the verdict (lme4's gradient check) and its explanation.
    n_evaluations : evaluations of the profiled deviance (and its gradient).
    optimizer : its name, e.g. ``"L-BFGS-B"``; ``tolerances`` its stopping rules.
    start : the initial θ.
    gradient_norm : max |∂(−2ℓ)/∂θ| in θ's natural units at the end (NaN where not computed).
    phi_start, phi : a residual structure's initial and final φ (empty without one).

    Examples
    --------
    >>> import bayeslmm as blm
    >>> fit = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy")).fit()
    >>> fit.optsum.optimizer, fit.optsum.converged
    ('L-BFGS-B', True)
    """

    theta: np.ndarray
    deviance: float
    converged: bool
    message: str
    n_evaluations: int
    optimizer: str = ""
    tolerances: dict = field(default_factory=dict)
    start: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gradient_norm: float = np.nan
    phi_start: np.ndarray = field(default_factory=lambda: np.zeros(0))
    phi: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __repr__(self) -> str:
        rows = [("Initial θ", _vector(self.start)), ("Final θ", _vector(self.theta))]
        if self.phi.size:
            rows += [("Initial φ", _vector(self.phi_start)), ("Final φ", _vector(self.phi))]
        rows += [
            ("Optimizer", self.optimizer or "none"),
            ("Tolerances", ", ".join(f"{k} = {v:g}" for k, v in self.tolerances.items()) or "none"),
            ("Function evaluations", str(self.n_evaluations)),
            ("Final max|gradient|", f"{self.gradient_norm:.3g}"),
            ("Final objective", f"{self.deviance:.6f}"),
            ("Converged", f"{self.converged}: {self.message}"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(["OptSummary"] + [f"  {name.ljust(width)}  {value}" for name, value in rows])


def _vector(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in np.asarray(values, dtype=float)) + "]"
