"""Hypothesis matrices of type-1 and type-3 F tests, one per fixed-effect model term.

Type 3 follows lmerTest (SAS's construction): write every column of the
"rank-deficient" design rdX (an intercept plus, per term, all dummy columns of its
factors times its numeric variables) in the treatment-coded basis, then, from the
highest-order terms down, make a term's columns orthogonal to those of every term that
contains it (same numeric variables, a strict superset of the factors).  The rows of
the result that belong to the treatment-coded coefficients are the hypotheses; they
are mapped to the model's own coding at the end, so a term's test does not depend on
how it was coded.  For Sitka's ``size ~ time * treat`` this makes ``time``'s hypothesis
the slope averaged over both treatments (β_time + ½ β_time:treat), not β_time.

Type 1 (sequential): rows of the unit upper-triangular U' with X'X = U'DU.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bayeslmm.errors import LMMError
from bayeslmm.formula.transforms import from_formulae_names


@dataclass(frozen=True)
class _Component:
    name: str
    numeric: bool
    full: np.ndarray  # (n, k): all dummy columns (factor) or the values (numeric)
    keep: np.ndarray  # columns of ``full`` in treatment coding (a factor drops its first level if reduced)


@dataclass(frozen=True)
class _Term:
    name: str
    components: tuple[_Component, ...]
    x_columns: np.ndarray  # this term's columns of the model's X

    @property
    def variables(self) -> set[str]:
        return {c.name for c in self.components}

    @property
    def numerics(self) -> set[str]:
        return {c.name for c in self.components if c.numeric}

    def contained_in(self, other: "_Term") -> bool:
        return self.variables < other.variables and self.numerics == other.numerics


def model_terms(spec) -> list[_Term]:
    """The fixed part's terms in R's order (by interaction order), intercept excluded."""
    design = getattr(spec, "design", None)
    if design is None:
        raise LMMError("F tests by model term need a model built from a formula (LMM(formula, data))")
    common = design.fixed.common
    kept = np.asarray(design.kept_columns)
    terms = []
    for name, piece in common.slices.items():
        if name == "Intercept":
            continue
        columns = np.flatnonzero((kept >= piece.start) & (kept < piece.stop))
        terms.append(_Term(name, tuple(_component(c) for c in common.terms[name].components), columns))
    return sorted(terms, key=lambda t: len(t.components))  # stable, as R orders term labels


def _component(component) -> _Component:
    value = np.asarray(component.value, dtype=float)
    value = value.reshape(len(value), -1)
    if component.kind != "categoric":
        return _Component(component.name, True, value, np.arange(value.shape[1]))
    contrast = np.asarray(component.contrast_matrix.matrix, dtype=float)
    # which level each row has: its coded values equal that level's row of the contrast matrix
    matches = np.all(np.abs(value[:, None, :] - contrast[None, :, :]) < 1e-12, axis=2)
    if not np.all(matches.sum(axis=1) == 1):
        raise LMMError(f"cannot recover the levels of {component.name!r} from its coding for type-3 tests")
    reduced = contrast.shape[1] < contrast.shape[0]
    keep = np.arange(1 if reduced else 0, contrast.shape[0])
    return _Component(component.name, False, matches.astype(float), keep)


def _row_products(blocks: list[np.ndarray]) -> np.ndarray:
    """Row-wise Kronecker product, the first block varying fastest (R's column order)."""
    out = np.ones((blocks[0].shape[0], 1))
    for block in blocks:
        out = (block[:, :, None] * out[:, None, :]).reshape(len(out), -1)
    return out


def _term_columns(term: _Term) -> tuple[np.ndarray, np.ndarray]:
    """The term's rdX columns and which of them are its treatment-coded columns."""
    full = _row_products([c.full for c in term.components])
    kept, stride = np.zeros(1, dtype=int), 1
    for c in term.components:  # same order as _row_products: later components vary slower
        kept = (kept[None, :] + stride * c.keep[:, None]).reshape(-1)
        stride *= c.full.shape[1]
    return full, kept


def type3_contrasts(spec) -> dict[str, np.ndarray]:
    """lmerTest's type-3 hypothesis matrix of every term (rows of coefficients of X)."""
    terms = model_terms(spec)
    if spec.p <= 1 or len(terms) <= 1:
        return type1_contrasts(spec)
    intercept = "Intercept" in spec.design.fixed.common.slices
    rd_blocks, treat_blocks, rd_of_treat, treat_term = [], [], [], []
    if intercept:
        rd_blocks.append(np.ones((spec.n, 1)))
        treat_blocks.append(np.ones((spec.n, 1)))
        rd_of_treat.append(np.array([0]))
        treat_term.append(-1)
    start = int(intercept)
    for k, term in enumerate(terms):
        full, kept = _term_columns(term)
        rd_blocks.append(full)
        treat_blocks.append(full[:, kept])
        rd_of_treat.append(start + kept)
        treat_term += [k] * len(kept)
        start += full.shape[1]
    rdX, X_treat = np.hstack(rd_blocks), np.hstack(treat_blocks)
    rd_of_treat, treat_term = np.concatenate(rd_of_treat), np.asarray(treat_term)
    to_model = _coding_map(X_treat, spec.X)
    L = np.linalg.lstsq(X_treat, rdX, rcond=None)[0].T  # rdX columns in the treatment basis
    L[np.abs(L) < 1e-10] = 0.0
    for k in sorted(range(len(terms)), key=lambda j: -len(terms[j].components)):
        containing = [j for j in range(len(terms)) if terms[k].contained_in(terms[j])]
        if containing:
            mine, theirs = treat_term == k, np.isin(treat_term, containing)
            coef = np.linalg.lstsq(L[:, theirs], L[:, mine], rcond=None)[0]
            L[:, mine] -= L[:, theirs] @ coef
    L = L[rd_of_treat]
    out = {}
    for k, term in enumerate(terms):
        rows = L[:, treat_term == k].T
        rows = rows[np.abs(rows).sum(axis=1) > 1e-8]
        out[_r_label(term.name)] = rows @ to_model
    return out


def _coding_map(X_treat: np.ndarray, X: np.ndarray) -> np.ndarray:
    """M with X_treat M = X: treatment-coded coefficients of the model's coefficients."""
    if np.linalg.matrix_rank(X_treat) < X_treat.shape[1] or X_treat.shape[1] != X.shape[1]:
        raise LMMError("type-3 tests need a full-rank fixed-effect design (no aliased or empty cells); "
                       "drop the aliased terms or use type=1")
    M = np.linalg.lstsq(X_treat, X, rcond=None)[0]
    if not np.allclose(X_treat @ M, X, atol=1e-8 * max(1.0, np.abs(X).max())):
        raise LMMError("could not map the fixed-effect coding to treatment coding for type-3 tests")
    return M


def type1_contrasts(spec) -> dict[str, np.ndarray]:
    """Sequential (type-1) hypotheses: the term's rows of U' where X'X = U'DU, U unit upper."""
    lower = np.linalg.cholesky(spec.X.T @ spec.X)
    unit_upper = (lower / np.diag(lower)).T  # rows: U
    return {_r_label(t.name): unit_upper[t.x_columns] for t in model_terms(spec)}


def _r_label(name: str) -> str:
    """formulae's term name → the label R prints (they agree except for transforms)."""
    return from_formulae_names([name])[0]
