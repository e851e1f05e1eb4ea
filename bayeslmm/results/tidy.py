"""One long table of a fit's estimates, in broom.mixed's ``tidy()`` layout, for machine reading
(the command line's ``--output csv`` and ``--output json``).

One row per fixed effect (``effect = "fixed"``) and per variance parameter (``effect =
"ran_pars"``: the sd of each random effect ``sd__(Intercept)``, each correlation
``cor__(Intercept).Days``, and the residual sd ``sd__Observation`` in group ``Residual``, as
broom.mixed names them).  A REML/ML fit gives ``estimate``, and for the fixed effects lmerTest's
``std_error, statistic, df, p_value, conf_low, conf_high`` (:meth:`LMMResult.coef_table`); a
posterior gives the posterior ``estimate`` (mean), ``std_error`` (sd), the equal-tailed
interval ``conf_low, conf_high`` and ``ess_bulk, ess_tail, r_hat`` for every row.  A residual
structure's parameters are not in it (see ``residual_params()``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

KEYS = ["effect", "group", "term"]
POSTERIOR_COLUMNS = {"mean": "estimate", "sd": "std_error", "ess_bulk": "ess_bulk", "ess_tail": "ess_tail",
                     "r_hat": "r_hat"}


def tidy(result, ddf: str = "satterthwaite", level: float = 0.95) -> pd.DataFrame:
    """The estimates of a REML/ML fit or a posterior as one long table (see the module).

    ``ddf`` chooses the fixed effects' t tests of a REML/ML fit; ``level`` the intervals.

    Examples
    --------
    >>> import bayeslmm as blm
    >>> from bayeslmm.results.tidy import tidy
    >>> fit = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy")).fit()
    >>> tidy(fit)[["effect", "group", "term"]].values.tolist()  # doctest: +NORMALIZE_WHITESPACE
    [['fixed', None, '(Intercept)'], ['fixed', None, 'Days'], ['ran_pars', 'Subject', 'sd__(Intercept)'],
     ['ran_pars', 'Subject', 'sd__Days'], ['ran_pars', 'Subject', 'cor__(Intercept).Days'],
     ['ran_pars', 'Residual', 'sd__Observation']]
    >>> round(float(tidy(fit).loc[1, "df"]), 2)
    17.0
    """
    if hasattr(result, "coef_table"):
        fixed = result.coef_table(ddf=ddf, level=level)
        ran_pars = _ran_pars(result.varcorr()).rename(columns={"sdcor": "estimate"})
    else:
        fixed = _posterior_columns(result.fixef(level=level))
        ran_pars = _ran_pars(_posterior_columns(result.varcorr(level=level)))
    fixed = fixed.rename_axis("term").reset_index().assign(effect="fixed", group=None)
    table = pd.concat([fixed, ran_pars.assign(effect="ran_pars")], ignore_index=True)
    return table[KEYS + [c for c in table.columns if c not in KEYS and c not in ("grp", "var1", "var2", "vcov")]]


def _posterior_columns(table: pd.DataFrame) -> pd.DataFrame:
    """ArviZ's summary columns under broom's names (the interval's two columns are the ``CI`` ones)."""
    lower, upper = [c for c in table.columns if str(c).endswith("% CI")]
    kept = table.drop(columns=[c for c in ("mcse_mean", "mcse_sd") if c in table.columns])
    return kept.rename(columns={**POSTERIOR_COLUMNS, lower: "conf_low", upper: "conf_high"})


def _ran_pars(varcorr: pd.DataFrame) -> pd.DataFrame:
    """varcorr's rows (grp, var1, var2) as broom.mixed's group and term."""
    residual = varcorr["grp"] == "Residual"
    correlation = varcorr["var2"].notna() & ~residual
    term = np.where(residual, "sd__Observation",
                    np.where(correlation, "cor__" + varcorr["var1"].astype(str) + "." + varcorr["var2"].astype(str),
                             "sd__" + varcorr["var1"].astype(str)))
    return varcorr.assign(group=varcorr["grp"], term=term)
