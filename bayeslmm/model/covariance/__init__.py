"""The covariance parameters of the random-effects terms: their one owner.

A term ``(x1 + … + xS | g)`` has an S × S covariance D of its random effects.  Its
parameterizations, and the maps between them (:mod:`.maps`):

- θ: the lower triangle of the relative Cholesky factor T (D = σ²TT'), column by column
  (lme4's order, :func:`.triangle.lower_triangle`); T's diagonal is bounded below by 0.
  θ stacks the terms in lme4's order; the terms on one grouping factor are the diagonal
  blocks of that factor's T_f (:class:`.layout.ThetaLayout`, lme4's Λθ).
- D = σ²TT', and (sd, cor): the sds and the correlation matrix; the sd/cor vector has θ's
  order (sds on the diagonal), as lme4's confint and bootMer rows.
- PyMC's ``LKJCholeskyCov`` factor σT, packed row by row (:mod:`.triangle` owns both packings).

Names (:mod:`.names`): θ's, confint's (``sd_(Intercept)|Subject``, ``cor_Days.(Intercept)|Subject``,
``sigma``), VarCorr's rows (grp, var1, var2), term labels (R's make.unique), and the posterior's
variables, dims and coords.

**A correlation next to a zero sd** is undefined (0/0): it is reported as NaN, as lme4's
``VarCorr`` and ``as.data.frame(VarCorr(fit))`` report it, in every table and statistic (varcorr,
the printed summary, the bootstrap's statistic).  Every map back from (sd, cor) to D, T, θ or
the LKJ factor reads a NaN correlation as 0 (:func:`.maps.defined`): D does not depend on it.
Searches that need finite coordinates (the profile, NUTS's initial values) start it at 0, as
lme4's profile does.
"""
from bayeslmm.model.covariance.layout import ThetaLayout, theta_layout
from bayeslmm.model.covariance.maps import (
    cholesky_of_sdcor,
    correlation_matrix,
    correlations,
    covariance,
    covariance_of_sdcor,
    defined,
    grouping_factors,
    lkj_of_theta,
    sd_cor,
    sdcor_matrices,
    sdcor_of_theta,
    sdcor_vector,
    term_factors,
    term_slices,
    theta_lower,
    theta_of_factors,
    theta_of_lkj,
    theta_of_sdcor,
)
from bayeslmm.model.covariance.names import (
    SIGMA,
    cor_name,
    corr_chol_variable,
    corr_variable,
    effect_dim,
    pair_coords,
    pair_dim,
    random_effect_coords,
    sd_name,
    sd_variable,
    sdcor_names,
    term_labels,
    term_pairs,
    theta_names,
    varcorr_rows,
)
from bayeslmm.model.covariance.triangle import (
    columnwise_from_rowwise,
    columnwise_indices,
    correlation_pairs,
    lower_triangle,
    n_parameters,
    pack_columnwise,
    pack_rowwise,
    rowwise_from_columnwise,
    rowwise_indices,
    unpack_columnwise,
    unpack_rowwise,
    varcorr_entries,
)

__all__ = [
    "ThetaLayout", "theta_layout",
    "cholesky_of_sdcor", "correlation_matrix", "correlations", "covariance", "covariance_of_sdcor", "defined",
    "grouping_factors", "lkj_of_theta", "sd_cor",
    "sdcor_matrices", "sdcor_of_theta", "sdcor_vector", "term_factors", "term_slices", "theta_lower",
    "theta_of_factors", "theta_of_lkj", "theta_of_sdcor",
    "SIGMA", "corr_chol_variable", "cor_name", "corr_variable", "effect_dim", "pair_coords", "pair_dim",
    "random_effect_coords", "sd_name", "sd_variable", "sdcor_names", "term_labels", "term_pairs", "theta_names",
    "varcorr_rows",
    "columnwise_from_rowwise", "columnwise_indices", "correlation_pairs", "lower_triangle", "n_parameters",
    "pack_columnwise", "pack_rowwise", "rowwise_from_columnwise", "rowwise_indices", "unpack_columnwise",
    "unpack_rowwise", "varcorr_entries",
]
