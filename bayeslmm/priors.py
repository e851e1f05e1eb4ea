"""The priors users write (``from bayeslmm.priors import Normal``); defined in
:mod:`bayeslmm.model.priors`, whose docstring documents the data-scaled defaults."""
from bayeslmm.model.priors import Exponential, Flat, HalfNormal, HalfStudentT, Normal, ScaledBeta

__all__ = ["Normal", "Flat", "HalfStudentT", "HalfNormal", "Exponential", "ScaledBeta"]
