"""Residual covariance structures Σ_i = σ² R_i(φ), applied by whitening each group.

One module per structure (``cs``, ``ar1``, ``unstructured``, ``toeplitz``,
``heteroscedastic``, ``combined``), each a user-facing :class:`~bayeslmm.model.residual.base.Structure` and its
:class:`~bayeslmm.model.residual.base.BoundStructure`, the interface the rest of the package
calls (docs/residual_structures.md).  Never an n × n matrix: per-group blocks only.
"""
from bayeslmm.model.residual.ar1 import AR1, ARH1
from bayeslmm.model.residual.base import BoundStructure, ResidualParameters, Structure
from bayeslmm.model.residual.combined import Combined
from bayeslmm.model.residual.cs import CompoundSymmetry
from bayeslmm.model.residual.heteroscedastic import Heteroscedastic
from bayeslmm.model.residual.independent import Independent
from bayeslmm.model.residual.parse import parse
from bayeslmm.model.residual.toeplitz import Toeplitz
from bayeslmm.model.residual.unstructured import Unstructured

__all__ = ["Structure", "BoundStructure", "ResidualParameters", "Independent", "CompoundSymmetry", "AR1", "ARH1",
           "Unstructured", "Toeplitz", "Heteroscedastic", "Combined", "parse"]
