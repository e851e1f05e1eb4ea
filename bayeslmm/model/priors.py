"""Priors for the Bayesian path: small declarative objects, defaults scaled to the data.

Defaults (in the spirit of rstanarm and brms; the scales are data-based so that the
same model works for reaction times in ms and log tree sizes):

- the intercept, taken at the mean of the predictors (as rstanarm and brms do):
  Normal(mean(y), 2.5 · sd(y));
- each other fixed effect j: Normal(0, 2.5 · sd(y) / sd(x_j));
- the sd of each random effect on column s: HalfStudentT(ν = 3, sd(y) / rms(column s))
  (the intercept's column has rms 1, a slope's sd is per unit of its covariate);
- the correlation matrix of each correlated term: LKJ(η = 2), mildly favouring small correlations;
- the residual sd σ: Exponential with mean sd(y);
- with a residual structure (``residual=``): its correlation ρ (AR(1), ARH(1), compound
  symmetry) uniform over its range, ``ScaledBeta(1, 1)``; the log of each residual sd ratio
  (ARH(1), unstructured, Heteroscedastic) Normal(0, 1), i.e. ratios within about ×7 either way;
  the unstructured correlation matrix LKJ(η = 2).

Override any of them by name with ``priors={...}`` (see :func:`resolve`).  A flat
prior on the fixed effects is ``priors={"fixef": Flat()}``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bayeslmm.errors import LMMError
from bayeslmm.model.spec import ModelSpec

LOG_2PI = np.log(2 * np.pi)


# --- the prior objects users write ---------------------------------------------------


def _check_parameters(prior, positive: tuple[str, ...], real: tuple[str, ...] = ()) -> None:
    """LMMError at construction for a scale or shape that is not a positive finite number, or
    a location that is not finite (PyMC would only fail, less clearly, when sampling)."""
    for name in positive + real:
        value = getattr(prior, name)
        values = np.asarray(value)  # arrays too: priors of several columns are built at once
        finite = values.dtype.kind in "iuf" and np.isfinite(values).all()
        if not finite or (name in positive and (values <= 0).any()):
            need = "a positive finite number" if name in positive else "a finite number"
            raise LMMError(f"{type(prior).__name__}: {name} must be {need} (e.g. "
                           f"{type(prior).__name__}({name}=1)); got {value!r}")


@dataclass(frozen=True)
class Normal:
    """Normal(mu, sigma) prior on one fixed effect."""

    mu: float = 0.0
    sigma: float = 1.0

    def __post_init__(self):
        _check_parameters(self, ("sigma",), ("mu",))


@dataclass(frozen=True)
class Flat:
    """Improper flat prior on fixed effects (their marginal likelihood is then REML's)."""


@dataclass(frozen=True)
class HalfStudentT:
    """Half-Student-t(nu, sigma) prior on a standard deviation."""

    nu: float = 3.0
    sigma: float = 1.0

    def __post_init__(self):
        _check_parameters(self, ("nu", "sigma"))

    @property
    def typical_scale(self) -> float:
        """The prior's scale parameter: the size of sd it expects (what initial values floor at)."""
        return self.sigma

    def dist(self, size=None):
        import pymc as pm

        return pm.HalfStudentT.dist(nu=self.nu, sigma=self.sigma, size=size)


@dataclass(frozen=True)
class HalfNormal:
    """Half-normal(sigma) prior on a standard deviation."""

    sigma: float = 1.0

    def __post_init__(self):
        _check_parameters(self, ("sigma",))

    @property
    def typical_scale(self) -> float:
        """The prior's scale parameter: the size of sd it expects (what initial values floor at)."""
        return self.sigma

    def dist(self, size=None):
        import pymc as pm

        return pm.HalfNormal.dist(sigma=self.sigma, size=size)


@dataclass(frozen=True)
class Exponential:
    """Exponential prior on a standard deviation, with the given mean (``scale``)."""

    scale: float = 1.0

    def __post_init__(self):
        _check_parameters(self, ("scale",))

    @property
    def typical_scale(self) -> float:
        """The prior's scale parameter: the size of sd it expects (what initial values floor at)."""
        return self.scale

    def dist(self, size=None):
        import pymc as pm

        return pm.Exponential.dist(scale=self.scale, size=size)


@dataclass(frozen=True)
class ScaledBeta:
    """Beta(a, b) stretched over a residual correlation's range: (−1, 1) for AR(1), and
    (−1/(m − 1), 1) for compound symmetry in groups of up to m rows.  a = b = 1 is uniform."""

    a: float = 1.0
    b: float = 1.0

    def __post_init__(self):
        _check_parameters(self, ("a", "b"))


SCALE_PRIORS = (HalfStudentT, HalfNormal, Exponential)
BETA_PRIORS = (Normal, Flat)


# --- the resolved priors of one model ----------------------------------------------------


@dataclass(frozen=True)
class TermPrior:
    sds: tuple  # one scale prior per column of the term
    eta: float  # LKJ shape (unused for one-column terms)


@dataclass(frozen=True)
class BetaPrior:
    """β's prior as independent priors on γ = Aβ (A: β → intercept at the predictors' means).

    Gaussian in β with precision P0 = A' D A (D = 1/s² on Gaussian coordinates, 0 on
    flat ones); ``shift`` = P0 m0 = A' D μ; ``quad`` = μ' D μ.  Flat coordinates make P0
    singular, which the marginal likelihood handles as REML does.
    """

    names: tuple[str, ...]
    coordinates: tuple  # Normal or Flat, one per γ_j
    A: np.ndarray  # γ = A β

    @property
    def precision(self) -> np.ndarray:
        return self.A.T @ np.diag(self._inverse_variances) @ self.A

    @property
    def shift(self) -> np.ndarray:
        return self.A.T @ (self._inverse_variances * self._means)

    @property
    def constant(self) -> float:
        """μ'Dμ − log|D|₊ − (number of flat coordinates)·log 2π, the prior's part of −2ℓ."""
        d = self._inverse_variances
        gaussian = d > 0
        return float((self._means**2 * d).sum() - np.log(d[gaussian]).sum() - (~gaussian).sum() * LOG_2PI)

    @property
    def _inverse_variances(self) -> np.ndarray:
        return np.array([0.0 if isinstance(c, Flat) else 1.0 / c.sigma**2 for c in self.coordinates])

    @property
    def _means(self) -> np.ndarray:
        return np.array([0.0 if isinstance(c, Flat) else c.mu for c in self.coordinates])


@dataclass(frozen=True)
class ResidualPrior:
    """Priors of a residual structure's parameters."""

    rho: ScaledBeta = ScaledBeta()
    log_sd_ratio: Normal = Normal(0.0, 1.0)  # on the log of each sd ratio
    eta: float = 2.0  # LKJ shape of the unstructured correlation


@dataclass(frozen=True)
class ModelPriors:
    beta: BetaPrior
    terms: tuple[TermPrior, ...]  # in spec.terms order
    sigma: object
    labels: tuple[str, ...] = field(default=())  # term labels, e.g. "Subject", "Subject.1"
    residual: ResidualPrior | None = None


def resolve(spec: ModelSpec, labels: tuple[str, ...], overrides: dict | None = None,
            residual: bool = False) -> ModelPriors:
    """Default priors for ``spec``, with ``overrides`` by name.

    Keys: a fixed-effect name (``"Days"``, ``"(Intercept)"``) → Normal or Flat; ``"fixef"``
    → Normal or Flat for every fixed effect; a random-term label (``"Subject"``, or
    ``"Subject.1"`` for its second term) → ``{"sd": scale prior, "eta": float}``;
    ``"sigma"`` → a scale prior (HalfStudentT, HalfNormal or Exponential); with a residual
    structure, ``"residual"`` → ``{"rho": ScaledBeta, "log_sd_ratio": Normal, "eta": float}``.
    """
    overrides = dict(overrides or {})
    _check_names(spec, labels + (("residual",) if residual else ()), overrides)
    y_sd = float(np.std(spec.y)) or 1.0
    beta = _beta_prior(spec, y_sd, overrides)
    terms = tuple(_term_prior(spec, term, label, y_sd, overrides.get(label, {}))
                  for term, label in zip(spec.terms, labels))
    sigma = _scale(overrides.get("sigma", Exponential(scale=y_sd)), "sigma")
    residual_prior = _residual_prior(overrides.get("residual", {})) if residual else None
    return ModelPriors(beta, terms, sigma, labels, residual_prior)


def _residual_prior(override) -> ResidualPrior:
    kinds = {"rho": ScaledBeta, "log_sd_ratio": Normal, "eta": (int, float)}
    if not isinstance(override, dict) or set(override) - set(kinds):
        raise LMMError("the residual structure's prior is a dict with keys 'rho' (ScaledBeta), "
                       f"'log_sd_ratio' (Normal) and/or 'eta' (LKJ shape); got {override!r}")
    for key, value in override.items():
        if not isinstance(value, kinds[key]) or (key == "eta" and not value > 0):
            raise LMMError(f"residual prior {key!r} must be {'a positive number' if key == 'eta' else kinds[key].__name__}; "
                           f"got {value!r}")
    return ResidualPrior(**override)


def _check_names(spec, labels, overrides) -> None:
    valid = ["fixef", "sigma", *spec.fixef_names, *labels]
    unknown = [k for k in overrides if k not in valid]
    if unknown:
        raise LMMError(f"no parameter named {unknown[0]!r} to set a prior on; valid names: {', '.join(valid)}")


def _beta_prior(spec: ModelSpec, y_sd: float, overrides: dict) -> BetaPrior:
    names = spec.fixef_names
    A = np.eye(len(names))
    coordinates = []
    x_sd = spec.X.std(axis=0) if spec.n else np.ones(len(names))
    for j, name in enumerate(names):
        if name == "(Intercept)":
            A[j] = spec.X.mean(axis=0)  # γ_0 = β_0 + Σ β_k x̄_k: the intercept at the means
            default = Normal(float(np.mean(spec.y)), 2.5 * y_sd)
        else:
            default = Normal(0.0, 2.5 * y_sd / (x_sd[j] if x_sd[j] > 0 else 1.0))
        chosen = overrides.get(name, overrides.get("fixef", default))
        if not isinstance(chosen, BETA_PRIORS):
            raise LMMError(f"the prior on fixed effect {name!r} must be bayeslmm.priors.Normal or Flat, "
                           f"not {type(chosen).__name__}")
        coordinates.append(chosen)
    return BetaPrior(names, tuple(coordinates), A)


def _term_prior(spec, term, label, y_sd, override) -> TermPrior:
    if not isinstance(override, dict) or set(override) - {"sd", "eta"}:
        raise LMMError(f"the prior on random term {label!r} is a dict with keys 'sd' and/or 'eta', "
                       f"e.g. {{'sd': HalfNormal(10), 'eta': 2}}; got {override!r}")
    raw = spec.factors[term.factor].raw[:, term.columns]
    rms = np.sqrt(np.mean(raw**2, axis=0))
    defaults = tuple(HalfStudentT(3.0, y_sd / (r if r > 0 else 1.0)) for r in rms)
    sds = defaults if "sd" not in override else (_scale(override["sd"], f"{label} sd"),) * term.size
    eta = float(override.get("eta", 2.0))
    if not eta > 0:
        raise LMMError(f"the LKJ shape eta of {label!r} must be positive; got {eta}")
    return TermPrior(sds, eta)


def _scale(prior, what: str):
    if not isinstance(prior, SCALE_PRIORS):
        raise LMMError(f"the prior on {what} must be HalfStudentT, HalfNormal or Exponential from "
                       f"bayeslmm.priors, not {type(prior).__name__}")
    return prior
