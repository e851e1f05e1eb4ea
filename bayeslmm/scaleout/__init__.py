"""Fits from a Dask DataFrame: two passes build the sufficient statistics, partition by partition.

``bayeslmm.LMM(formula, ddf)`` with a ``dask.dataframe.DataFrame`` runs :class:`ScaledData`: a
first pass for what is global (levels, transform statistics, missing values;
:mod:`~bayeslmm.scaleout.passes`), then a second for the cross-products (map, then tree
reduction, on the active Dask scheduler; :mod:`~bayeslmm.scaleout.statistics`).  REML/ML and the
marginalised posterior then run from the statistics as for data in memory.  Dask itself is
imported only when such a model is built.
"""
from bayeslmm.scaleout.model import ScaledData, ScaledFitState
from bayeslmm.scaleout.results import DaskLMMResult

__all__ = ["ScaledData", "ScaledFitState", "DaskLMMResult"]
