"""Residual covariance structures users write (``blm.cov.AR1(time="visit", group="tree")``)
and the mmrm-style shorthand parser; each is defined in :mod:`bayeslmm.model.residual`."""
from bayeslmm.model.residual import (
                                     AR1,
                                     ARH1,
                                     Combined,
                                     CompoundSymmetry,
                                     Heteroscedastic,
                                     Independent,
                                     Toeplitz,
                                     Unstructured,
                                     parse,
)

__all__ = ["Independent", "CompoundSymmetry", "AR1", "ARH1", "Unstructured", "Toeplitz", "Heteroscedastic", "Combined",
           "parse"]
