"""Formula transforms that must behave as in R rather than as formulae defines them.

formulae's ``scale(x)`` divides by the population sd; R's (and so lme4's) by the
sample sd (n − 1).  The formula text is rewritten to a stateful transform of our
own before formulae sees it, and column names are mapped back afterwards.
"""
from __future__ import annotations

import re

import numpy as np
from formulae.transforms import register_stateful_transform

_OURS = "bayeslmm_r_scale"
_SCALE_CALL = re.compile(r"(?<![\w.])scale\(")


@register_stateful_transform
class RScale:
    """R's ``scale(x)``: centre by the mean, divide by the sample sd; remembered for new data."""

    __transform_name__ = _OURS

    def __init__(self):
        self.params_set = False
        self.mean = None
        self.std = None

    def __call__(self, x):
        if not self.params_set:
            self.mean = np.mean(x)
            self.std = np.std(x, ddof=1)
            self.params_set = True
        return (x - self.mean) / self.std


def to_formulae_text(text: str) -> str:
    return _SCALE_CALL.sub(f"{_OURS}(", text)


def from_formulae_names(names: list[str]) -> list[str]:
    return [name.replace(f"{_OURS}(", "scale(") for name in names]
