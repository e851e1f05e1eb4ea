"""The model's design learnt from the whole data set without holding its rows.

formulae learns a design (columns, contrasts, transform parameters) from the frame it is
given.  Here it is given a sample of rows whose categorical columns carry the data set's
categories, and the parameters of the stateful transforms are then replaced by the data
set's, computed from the first pass's power sums: ``scale(x)``'s mean and sample sd, and
``poly(x, k)``'s recurrence coefficients (formulae's, which are R's).  Evaluated on any
partition, the design then gives the columns an in-memory fit of all rows would.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
from formulae.transforms import Polynomial

from bayeslmm import checks
from bayeslmm.errors import LMMError
from bayeslmm.formula.design import Design, column_names, formulae_designs, lme4_names, r_term_order, random_part
from bayeslmm.formula.frame import formulae_frame
from bayeslmm.formula.transforms import RScale
from bayeslmm.model.spec import GroupingFactor, ModelSpec
from bayeslmm.scaleout.frame import Columns
from bayeslmm.scaleout.passes import PowerSumRequest, PowerSums


def designs(columns: Columns, sample: pd.DataFrame):
    """formulae's designs learnt on ``sample``: the fixed part, the bars, the offsets and the
    response as a design of its own (so that partitions evaluate it as new data)."""
    texts = dataclasses.replace(columns.texts, offsets=columns.texts.offsets + (f"I({columns.texts.response})",))
    frame = formulae_frame(sample, columns.texts.level_columns, fitting=False)
    fixed, bars, offsets = formulae_designs(texts, frame, columns.formula)
    return fixed, bars, offsets[:-1], offsets[-1]


@dataclass(frozen=True)
class Template:
    """What every partition needs: the model's columns, a spec carrying the design learnt from
    the whole data set (levels, transform statistics ``sums``), the response's design, the
    weights column and the residual structure.

    formulae's designs are rebuilt after pickling (for Dask's workers) from the sample rows,
    so the data set's transform parameters are set on them again here."""

    columns: Columns
    spec: ModelSpec
    response: object
    sums: dict
    weights: str | None = None
    structure: object = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "response": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        design = self.spec.design
        response = designs(self.columns, design.data)[-1]
        set_transform_parameters(stateful_transforms(design.fixed, design.bars, design.offsets, response), self.sums)
        self.__dict__["response"] = response


def stateful_transforms(fixed, bars, offsets, response) -> list[tuple[object, str]]:
    """Every stateful transform in the designs, with the column it reads."""
    found = []
    for design in (fixed, *bars, *offsets, response):
        terms = [] if design.common is None else list(design.common.terms.values())
        for term in terms:
            for component in getattr(term, "components", []):
                call = getattr(component, "call", None)
                transform = getattr(call, "stateful_transform", None)
                if transform is not None:
                    found.append((transform, _column_argument(call, component)))
    return found


def _column_argument(call, component) -> str:
    argument = call.args[0] if call.args else None
    if type(argument).__name__ != "LazyVariable" or not isinstance(call.stateful_transform, (RScale, Polynomial)):
        raise LMMError(f"{component.name} is not built for a Dask DataFrame: only scale(column) and poly(column, k) "
                       "learn from the data there; compute the transformed column first (ddf.assign(...))")
    return argument.name


def power_sum_requests(transforms, sample: pd.DataFrame) -> tuple[PowerSumRequest, ...]:
    """The power sums each transform's column needs, shifted and scaled by the sample's mean and sd."""
    degree = {}
    for transform, column in transforms:
        needs = 2 if isinstance(transform, RScale) else (0 if transform.raw else 2 * transform.degree)
        degree[column] = max(degree.get(column, 0), needs)
    requests = []
    for column, k in degree.items():
        values = sample[column].to_numpy(dtype=float)
        shift, scale = float(np.mean(values)), float(np.std(values)) or 1.0
        requests.append(PowerSumRequest(column, shift, scale, k))
    return tuple(requests)


def set_transform_parameters(transforms, sums: dict[str, PowerSums]) -> None:
    """Each transform's parameters as it would learn them from all rows."""
    for transform, column in transforms:
        if isinstance(transform, RScale):
            transform.mean, transform.std = scale_parameters(sums[column])
            transform.params_set = True
        elif not transform.raw:
            transform.alpha, transform.norms2 = poly_parameters(sums[column], transform.degree)


def scale_parameters(power: PowerSums) -> tuple[float, float]:
    """R's scale(): the mean and the sample sd (n − 1)."""
    n, s1, s2 = power.sums[:3]
    mean_t = s1 / n
    return power.shift + power.scale * mean_t, power.scale * float(np.sqrt((s2 - n * mean_t**2) / (n - 1)))


def poly_parameters(power: PowerSums, degree: int) -> tuple[dict, dict]:
    """formulae's (R's) three-term recurrence P_{k+1} = (x − α_k)P_k − (‖P_k‖²/‖P_{k−1}‖²) P_{k−1}
    from power sums: each P_k is kept as its coefficients in t = (x − shift)/scale."""
    a, s, H = power.shift, power.scale, power.sums

    def inner(c, extra):  # Σ_rows t^extra P(t)²
        return sum(c[i] * c[j] * H[i + j + extra] for i in range(c.size) for j in range(c.size))

    alpha, norms2 = {}, {}
    previous, current = None, np.array([1.0])
    for k in range(degree + 1):
        norms2[k] = inner(current, 0)
        if k == degree:
            break
        alpha[k] = a + s * inner(current, 1) / norms2[k]
        following = s * np.append(0.0, current) + (a - alpha[k]) * np.append(current, 0.0)
        if previous is not None:
            following[: previous.size] -= norms2[k] / norms2[k - 1] * previous
        previous, current = current, following
    return alpha, norms2


def template(columns: Columns, sample: pd.DataFrame, levels: dict, sums: dict, weights=None,
             structure=None) -> Template:
    """A spec of the ``sample`` rows with the data set's design: its levels, transform statistics
    and every formulae column of the fixed part in R's order (aliased columns are found later,
    from the data set's cross-products)."""
    fixed, bars, offsets, response = designs(columns, sample)
    set_transform_parameters(stateful_transforms(fixed, bars, offsets, response), sums)
    if fixed.common is None:
        order, names = np.zeros(0, dtype=int), ()
    else:
        order = r_term_order(fixed.common)
        all_names = lme4_names(column_names(fixed.common))
        names = tuple(all_names[j] for j in order)
    factors, terms, bar_factor, groups = random_part(columns.parsed, sample, bars, levels)
    design = Design(fixed, bars, bar_factor, groups, order, offsets, columns.parsed, columns.texts, sample)
    n = len(sample)
    spec = ModelSpec(columns.parsed.text, columns.parsed.response, np.zeros(n), np.zeros((n, len(names))), names,
                     factors, terms, sample.index, design)
    return Template(columns, spec, response, sums, weights, structure)


def non_aliased(moments: np.ndarray, p: int) -> np.ndarray:
    """The fixed-effect columns kept: Gram–Schmidt on X'X (the moments' X block) with lme4's
    tolerance, earlier columns winning, as :func:`bayeslmm.checks.non_aliased_columns` on rows."""
    gram = moments[2:2 + p, 2:2 + p]
    kept: list[int] = []
    for j in range(p):
        norm2 = gram[j, j]
        if kept:
            block, cross = gram[np.ix_(kept, kept)], gram[kept, j]
            remaining = norm2 - cross @ np.linalg.solve(block, cross)
        else:
            remaining = norm2
        if norm2 > 0 and remaining > (checks.ALIAS_TOLERANCE**2) * norm2:
            kept.append(j)
    return np.asarray(kept, dtype=int)


def moment_rows(moments: np.ndarray) -> np.ndarray:
    """Rows a_i = [1, y, X, Z columns] whose means and second moments are the data's exactly:
    μ ± √r λ_j^½ v_j over the r positive eigenpairs of the covariance.  Everything computed from
    the rows' means, sds or Gram matrix (default priors, θ's natural scale, type-1 hypotheses)
    then equals the in-memory value."""
    n = moments[0, 0]
    mean = moments[0] / n
    covariance = moments / n - np.outer(mean, mean)
    values, vectors = np.linalg.eigh(covariance[1:, 1:])
    keep = values > 1e-12 * max(values.max(), 1e-300)
    r = max(int(keep.sum()), 1)
    steps = (vectors[:, keep] * np.sqrt(r * values[keep])).T
    rows = np.vstack([mean[1:] + steps, mean[1:] - steps]) if keep.any() else mean[None, 1:]
    return np.column_stack([np.ones(len(rows)), rows])


def summarised_spec(template: ModelSpec, kept: np.ndarray, moments: np.ndarray, n: int) -> ModelSpec:
    """The model's spec for summarised data: names, terms, levels and design (with the columns
    kept) from the template, moment rows for y, X and the factors' columns, and ``n`` rows."""
    rows = moment_rows(moments)
    p = kept.size
    y, X = rows[:, 1], rows[:, 2:2 + p]
    factors, start = [], 2 + p
    for factor in template.factors:
        S = factor.n_columns
        factors.append(GroupingFactor(factor.name, np.zeros(len(rows), dtype=np.intp), factor.levels,
                                      rows[:, start:start + S], factor.column_names))
        start += S
    design = dataclasses.replace(template.design, kept_columns=template.design.kept_columns[kept])
    return dataclasses.replace(template, y=y, X=X, fixef_names=tuple(template.fixef_names[j] for j in kept),
                               factors=tuple(factors), row_labels=pd.RangeIndex(len(rows)), design=design,
                               summarised_rows=int(n))
