"""The interface of residual structures Σ_i = σ² R_i(φ) (docs/residual_structures.md).

A :class:`Structure` is what the user writes (``blm.cov.AR1(time="visit", group="tree")``): a
frozen dataclass naming columns.  Binding it to the model's rows gives a
:class:`BoundStructure`, which owns everything the rest of the package asks of a structure:
its whitening, its natural parameters, its log-determinants, its colouring, its PyMC
variables and their start values, reading a posterior draw back, and its report.  Callers use
only this interface; optional capabilities have defaults here.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import pandas as pd


class ResidualParameters(dict):
    """A fitted structure's parameters by name (ρ, sd ratios, …; what ``fit.residual_params()``
    returns) and ``lines``, the text a summary prints for them (as nlme prints its correlation
    and variance structures).  Empty for independent errors."""

    def __init__(self, values: dict | None = None, lines: tuple[str, ...] = ()):
        super().__init__(values or {})
        self.lines = tuple(lines)


class Structure(ABC):
    """A residual structure as written: the columns it reads, and how it binds to the rows."""

    variance_by: str | None = None  # a column by whose levels the structure already has one variance each

    @property
    @abstractmethod
    def columns(self) -> tuple:
        """The data columns the structure reads (kept with the model's rows)."""

    @abstractmethod
    def bind(self, data: pd.DataFrame) -> BoundStructure | None:
        """The structure on these rows (``data``: the model's rows, its ``columns``); None: σ²I."""


class BoundStructure(ABC):
    """A structure bound to the model's rows.

    φ is the unconstrained vector the optimiser moves; ``natural(φ)`` maps it to the structure's
    own parameters (ρ, log sd ratios, a covariance matrix), a dict that the PyMC model builds
    directly from its variables (``pymc_variables``) and a posterior draw gives back
    (``posterior_natural``).  Everything numeric takes natural parameters, so the REML/ML
    search and the PyMC model run the same code: ``whiten_natural`` is written against the
    array namespace ``xp`` (NumPy or ``pytensor.tensor``).

    Parameters
    ----------
    groups : (n,) int array
        Each row's residual group: whitening mixes rows only within a group.
    names : tuple of str
        A label for each φ_k.
    start : array
        φ where the search starts (see also :meth:`moment_start`).
    group_name : str or None
        The column the groups are levels of (None: each row its own group); labels the
        per-group log-likelihood.
    group_levels : array
        The label of each group.
    """

    # True: a TimeCovariance whose covariance_jacobian(φ) gives ∂S/∂φ, for the exact GLS gradient
    # (fit/residual.py); otherwise the search over several φ uses central differences
    has_covariance_jacobian = False

    def __init__(self, groups: np.ndarray, names: tuple, start, group_name: str | None, group_levels):
        self.groups = np.asarray(groups)
        self.names = tuple(names)
        self.start = np.asarray(start, dtype=float)
        self.group_name, self.group_levels = group_name, np.asarray(group_levels)

    @property
    def n_groups(self) -> int:
        return int(self.groups.max()) + 1

    # --- the likelihood ----------------------------------------------------------------------

    @abstractmethod
    def natural(self, phi) -> dict:
        """The natural parameters at φ (NumPy)."""

    @abstractmethod
    def whiten_natural(self, params: dict, M, xp=np):
        """(W M, Σ_i log|R_i|): the columns M whitened group by group, W_i'W_i = R_i⁻¹."""

    @abstractmethod
    def group_logdets(self, params: dict) -> np.ndarray:
        """log|R_i| of each group (NumPy), for the per-group log-likelihood."""

    @abstractmethod
    def colour(self, params: dict, Z: np.ndarray) -> np.ndarray:
        """R^{1/2} Z per group, the inverse of the whitening (to simulate correlated errors)."""

    def whiten(self, phi, M: np.ndarray) -> tuple[np.ndarray, float]:
        """``whiten_natural`` at φ, in NumPy."""
        whitened, logdet = self.whiten_natural(self.natural(np.asarray(phi, dtype=float)), M)
        return whitened, float(logdet)

    # --- the REML/ML search and its inference --------------------------------------------------

    def moment_start(self, residuals: np.ndarray) -> np.ndarray:
        """φ to start the search from, given least-squares residuals; the fixed ``start`` unless
        the structure has a moment estimate close to the optimum."""
        return self.start.copy()

    def coordinates(self) -> list:
        """For each φ_k, (name, monotone map φ_k → the reported parameter), or None where φ_k
        means nothing alone (an unstructured Cholesky entry).  Profile intervals on φ_k map
        through it exactly."""
        return [None] * len(self.start)

    @abstractmethod
    def parameters(self, phi) -> ResidualParameters:
        """The fitted parameters at φ by name, with their summary lines."""

    # --- the Bayesian model and its posterior --------------------------------------------------

    @abstractmethod
    def coords(self) -> dict[str, list]:
        """PyMC dims of the structure's variables and their labels."""

    @abstractmethod
    def pymc_variables(self, prior) -> dict:
        """Create the structure's variables in the current PyMC model, with their priors
        (``prior``: a :class:`bayeslmm.model.priors.ResidualPrior`); returns the natural
        parameters as tensors."""

    @abstractmethod
    def initial_values(self, phi) -> dict:
        """Start values of the free variables ``pymc_variables`` made, at φ (e.g. φ̂)."""

    @abstractmethod
    def posterior_natural(self, posterior, d: int) -> dict:
        """The natural parameters at draw d of ``posterior`` (chain and draw flattened), NumPy."""

    @abstractmethod
    def reported_variables(self) -> tuple[str, ...]:
        """The deterministic variables to keep in the posterior (ρ, sd ratios, correlations)."""

    @abstractmethod
    def posterior_draws(self, posterior) -> dict:
        """The reported parameters' draws by label (``post.residual_params()`` summarises them)."""


def draw_of(posterior, name: str, d: int) -> np.ndarray:
    """Variable ``name`` at draw d, chain and draw flattened."""
    values = posterior[name].values
    return values.reshape((-1,) + values.shape[2:])[d]
