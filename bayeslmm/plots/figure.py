"""What every plot shares: a figure of panels (matplotlib imported here, lazily), the kind of
fit, the z of an interval and the point estimates and intervals of either kind of fit."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as st

from bayeslmm.checks import check_level
from bayeslmm.errors import LMMError
from bayeslmm.results.bayesian import BayesResult, interval_columns
from bayeslmm.results.frequentist import LMMResult

PANEL_SIZE = (3.2, 2.6)  # inches per panel: a grid of panels stays readable in a notebook
MAX_LABELLED_LEVELS = 40  # beyond this, level names along an axis would overlap: they are left out

# gids that tell a plot's data artists apart from its decorations (tests and users find them so)
ESTIMATE, INTERVAL, DATA, POPULATION, GROUP, REFERENCE = \
    "estimate", "interval", "data", "population", "group", "reference"


def panels(count: int, ncols: int | None = None, sharex: bool = False, sharey: bool = False,
           panel_size: tuple[float, float] = PANEL_SIZE):
    """A new Figure with ``count`` panels in a grid (unused cells left empty), and the panels in order.

    The figure is not registered with pyplot, so a notebook shows it once, when returned.
    """
    from matplotlib.figure import Figure

    show_figures_in_notebooks()

    ncols = ncols or min(count, 4)
    nrows = math.ceil(count / ncols)
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=sharex, sharey=sharey, squeeze=False).ravel()
    for ax in axes[count:]:
        ax.remove()
    return fig, list(axes[:count])


def show_figures_in_notebooks() -> None:
    """In a Jupyter (IPython) session, a returned Figure displays as an image without
    ``%matplotlib inline`` first: IPython's PNG formatter is registered for Figures, as that
    magic registers it.  Outside IPython nothing happens (IPython is not imported)."""
    import sys

    if "IPython" not in sys.modules:
        return
    from IPython import get_ipython
    from IPython.core.pylabtools import select_figure_formats

    shell = get_ipython()
    if shell is not None and "image/png" in shell.display_formatter.formatters:
        select_figure_formats(shell, {"png"})


def check_fit(fit) -> None:
    """A REML/ML fit or a posterior, else an LMMError saying what plots take."""
    if not isinstance(fit, (LMMResult, BayesResult)):
        raise LMMError(f"plots take a fit from LMM(...).fit() or .fit(method='NUTS'); got {type(fit).__name__}")


def check_posterior(fit, plot: str) -> None:
    """Posterior plots need draws: an LMMError for a REML/ML fit names what to do."""
    if not isinstance(fit, BayesResult):
        raise LMMError(f"{plot} plots posterior draws; fit with method='NUTS' "
                       f"(got {type(fit).__name__})")


def is_posterior(fit) -> bool:
    return isinstance(fit, BayesResult)


def z_value(level: float) -> float:
    """The normal quantile of a central ``level`` interval (1.96 for 0.95)."""
    return float(st.norm.ppf(0.5 + check_level(level) / 2))


def ranef_intervals(fit, level: float) -> pd.DataFrame:
    """Random effects with ``grpvar, term, grp, estimate, lower, upper``: the conditional mode
    ± z·conditional sd of a REML/ML fit (lme4's dotplot), or a posterior's mean and
    equal-tailed interval."""
    if not fit.spec.factors:
        raise LMMError("the model has no random effects to plot; add a term such as (1 | group)")
    table = fit.ranef(level=level) if is_posterior(fit) else fit.ranef(cond_var=True)
    keys = table[["grpvar", "term", "grp"]]
    if is_posterior(fit):
        low, high = interval_columns(level)
        values = {"estimate": table["mean"], "lower": table[low], "upper": table[high]}
    else:
        z = z_value(level)
        values = {"estimate": table["condval"], "lower": table["condval"] - z * table["condsd"],
                  "upper": table["condval"] + z * table["condsd"]}
    return keys.assign(**{name: column.to_numpy(float) for name, column in values.items()})


def fitted_values(fit, include_re: bool = True) -> np.ndarray:
    """The fitted rows' predictions: Xβ̂ (+ Zb̂) of a REML/ML fit, the posterior mean of a posterior's."""
    if is_posterior(fit):
        return fit.predict(include_re=include_re)["mean"].to_numpy()
    return fit.predict(include_re=include_re).to_numpy()


def figure_of(plot_collection):
    """The matplotlib Figure an arviz-plots PlotCollection drew on."""
    show_figures_in_notebooks()
    return plot_collection.viz["figure"].item()
