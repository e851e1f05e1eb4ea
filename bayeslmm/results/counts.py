"""The counts both result types report, read from their model's spec."""
from __future__ import annotations


class SpecCounts:
    """``nobs`` and ``ngrps`` for a result with a ``spec`` (a :class:`~bayeslmm.model.spec.ModelSpec`)."""

    @property
    def nobs(self) -> int:
        """Number of observations used in the fit."""
        return self.spec.n

    @property
    def ngrps(self) -> dict[str, int]:
        """Number of levels of each grouping factor, by name (lme4's ``ngrps``)."""
        return {f.name: f.n_levels for f in self.spec.factors}
