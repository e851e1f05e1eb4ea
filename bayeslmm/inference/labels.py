"""lme4's labels of the variance parameters in ``confint`` and bootstrap tables."""
from __future__ import annotations

from bayeslmm.model.spec import term_labels


def variance_names(fit) -> list[str]:
    """``sd_(Intercept)|Subject``, ``cor_Days.(Intercept)|Subject``, … in lme4's θ order."""
    names = []
    for term, label in zip(fit.spec.terms, term_labels(fit.spec.terms)):
        group = fit.spec.factors[term.factor].name
        for c in range(term.size):
            for r in range(c, term.size):
                cols = term.column_names
                names.append(f"sd_{cols[r]}|{group}" if r == c else f"cor_{cols[r]}.{cols[c]}|{group}")
    return names
