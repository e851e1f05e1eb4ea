"""t and F tests of the fixed effects (lmerTest's summary and anova), with Satterthwaite,
Kenward–Roger or asymptotic denominator degrees of freedom.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as st

from bayeslmm.checks import check_level
from bayeslmm.errors import LMMError
from bayeslmm.inference import contrasts
from bayeslmm.inference.kenward_roger import kenward_roger, kenward_roger_ftest, kr_df_and_scale, satterthwaite_ftest
from bayeslmm.inference.satterthwaite import satterthwaite_df, satterthwaite_pieces
from bayeslmm.threads import one_blas_thread

DDF_METHODS = ("satterthwaite", "kenward-roger", "asymptotic")


def check_ddf(ddf) -> str:
    """The ddf method in lower case (R spells them 'Satterthwaite', 'Kenward-Roger')."""
    if not isinstance(ddf, str) or ddf.lower() not in DDF_METHODS:
        raise LMMError(f"ddf must be one of {', '.join(map(repr, DDF_METHODS))}; got {ddf!r}")
    return ddf.lower()


@one_blas_thread()
def coef_table(fit, ddf: str = "satterthwaite", level: float = 0.95) -> pd.DataFrame:
    """Fixed-effect estimates with t tests (broom's columns, snake case).

    ``ddf="satterthwaite"``: df = 2 (Var ĉ)² / (g'Ag) per coefficient, with g the gradient of
    Var ĉ in the variance parameters (θ, σ) and A = 2 H⁻¹ their asymptotic covariance, H the
    Hessian of the deviance — lmerTest's construction, by central differences here.
    ``"kenward-roger"``: pbkrtest's adjusted covariance Φ_A gives the standard errors and the
    Kenward–Roger df of each unit contrast (REML fits; see :mod:`bayeslmm.ddf`, and
    :mod:`bayeslmm.kr_blocks` for residual structures, at most one grouping factor there).  ``"asymptotic"``: normal reference (df = ∞).
    """
    level = check_level(level)
    ddf = check_ddf(ddf)
    estimate, se = fit.fixef().to_numpy(), fit.se().to_numpy()
    if ddf == "kenward-roger":
        se, df = _kenward_roger_t(fit)
    elif ddf == "satterthwaite":
        df = satterthwaite_df(fit)
    else:
        df = np.full(estimate.size, np.inf)
    statistic = estimate / se
    quantile = st.t.ppf(0.5 + level / 2, df)
    return pd.DataFrame({"estimate": estimate, "std_error": se, "statistic": statistic, "df": df,
                         "p_value": 2 * st.t.sf(np.abs(statistic), df),
                         "conf_low": estimate - quantile * se, "conf_high": estimate + quantile * se},
                        index=fit.fixef().index)


def _kenward_roger_t(fit) -> tuple[np.ndarray, np.ndarray]:
    """KR standard errors (√diag Φ_A) and the KR df of each coefficient's unit contrast."""
    kr = kenward_roger(fit)
    unit = np.eye(fit.spec.p)
    return np.sqrt(np.diag(kr.phi_adjusted)), np.array([kr_df_and_scale(kr, row)[0] for row in unit])


@one_blas_thread()
def f_tests(fit, type: int = 3, ddf: str = "satterthwaite") -> pd.DataFrame:
    """F tests of each fixed-effect term, as lmerTest's ``anova(fit, type, ddf)`` prints them.

    Columns ``Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F)``; one row per model term.
    Hypotheses: lmerTest's type 3 (or sequential type 1), see :mod:`bayeslmm.contrasts`.
    ``"satterthwaite"``: Wald F on Var(β̂), df combined over the eigen-directions of
    L Var(β̂) L'.  ``"kenward-roger"``: Wald F on the adjusted Φ_A, scaled, with KR's df.
    Mean Sq is the unscaled Wald F times σ̂² (as lmerTest's).
    """
    kind, hypotheses = _hypotheses(fit, type)
    ddf = check_ddf(ddf)
    if ddf == "asymptotic":
        raise LMMError("F tests by term need ddf='satterthwaite' or 'kenward-roger'")
    beta = fit.fixef().to_numpy()
    if ddf == "kenward-roger":
        kr = kenward_roger(fit)
        tests = [kenward_roger_ftest(kr, L, beta) for L in hypotheses.values()]
    else:
        gradients, A = satterthwaite_pieces(fit)
        vcov = fit.vcov().to_numpy()
        tests = [satterthwaite_ftest(vcov, gradients, A, L, beta) for L in hypotheses.values()]
    mean_sq = np.array([t.wald_f for t in tests]) * fit.sigma**2
    num_df = np.array([t.num_df for t in tests], dtype=int)
    den_df = np.array([t.den_df for t in tests], dtype=float)
    f_value = np.array([t.f_value for t in tests], dtype=float)
    table = pd.DataFrame({"Sum Sq": mean_sq * num_df, "Mean Sq": mean_sq, "NumDF": num_df, "DenDF": den_df,
                          "F value": f_value, "Pr(>F)": st.f.sf(f_value, num_df, den_df)},
                         index=pd.Index(list(hypotheses), name="term"))
    method = "Satterthwaite's" if ddf == "satterthwaite" else "Kenward-Roger's"
    table.attrs["heading"] = f"Type {'III' if kind == 3 else 'I'} Analysis of Variance Table with {method} method"
    table.attrs["hypotheses"] = hypotheses
    return table


def _hypotheses(fit, type) -> tuple[int, dict]:
    kind = {3: 3, "3": 3, "III": 3, 1: 1, "1": 1, "I": 1}.get(type) if isinstance(type, (int, str)) else None
    if kind is None:
        raise LMMError(f"type must be 3 (lmerTest's type III) or 1 (sequential); got {type!r}")
    return kind, contrasts.type3_contrasts(fit.spec) if kind == 3 else contrasts.type1_contrasts(fit.spec)
