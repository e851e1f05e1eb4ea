"""Plots of a fit (a REML/ML ``LMMResult`` or a ``BayesResult`` posterior), each returning a
matplotlib Figure.  matplotlib (and arviz-plots) are imported only when a plot is drawn."""
from bayeslmm.plots.caterpillar import caterpillar

__all__ = ["caterpillar"]
