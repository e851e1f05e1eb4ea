"""The variance-components table of a REML/ML fit: variances, sds with profile intervals,
shares of variance and intraclass correlations (defined in :mod:`bayeslmm.model.variance_partition`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from bayeslmm.inference.profile import confint
from bayeslmm.model.covariance import SIGMA, sd_name
from bayeslmm.model.variance_partition import variance_partition, variance_rows


def variance_components(fit, level: float = 0.95) -> pd.DataFrame:
    """The course notes' table: per random effect and the residual, its variance and sd with a
    profile interval for the sd, its share of the variance (``var_prop``) and its intraclass
    correlation (``icc``), both from :func:`~bayeslmm.model.variance_partition.variance_partition`."""
    intervals = confint(fit, method="profile", level=level)
    rows = variance_rows(fit.spec)
    variances = np.r_[[v for cov in fit.term_covariances() for v in np.diag(cov)], fit.sigma**2]
    labels = [sd_name(row.effect, row.group) if row.factor is not None else SIGMA for row in rows]
    table = pd.DataFrame({"group": [row.group for row in rows], "effect": [row.effect for row in rows],
                          "variance": variances, "sd": np.sqrt(variances),
                          "sd_lower": intervals.loc[labels, "lower"].to_numpy(),
                          "sd_upper": intervals.loc[labels, "upper"].to_numpy()})
    return table.assign(**variance_partition(fit.spec, variances))
