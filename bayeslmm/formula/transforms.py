"""Formula text as R users write it, rewritten into what formulae evaluates the same way.

- ``scale(x)``: formulae's divides by the population sd, R's (and so lme4's) by the sample
  sd (n − 1); it becomes a stateful transform of our own, its names mapped back afterwards.
- ``^``: R's power (inside ``I()``) and crossing (``(a + b)^2``) are both formulae's ``**``.
- ``Q("my col")``: a column name that is no identifier, formulae's backticks.
- ``factor(x)``: R's name for ``C(x)``.
- ``log``, ``exp``, ``sqrt``, ``abs`` (and ``log10``, ``log2``, ``log1p``) without ``np.``:
  evaluated by NumPy, passed to formulae as :data:`R_FUNCTIONS`.
"""
from __future__ import annotations

import re

import numpy as np
from formulae.transforms import register_stateful_transform

from bayeslmm.errors import LMMError

_OURS = "bayeslmm_r_scale"
_SCALE_CALL = re.compile(r"(?<![\w.])scale\(")
_FACTOR_CALL = re.compile(r"(?<![\w.])factor\(")
_Q_CALL = re.compile(r"""(?<![\w.])Q\(\s*(?:"([^"]*)"|'([^']*)')\s*\)""")
_STRING = re.compile(r""""[^"]*"|'[^']*'|`[^`]*`""")

R_FUNCTIONS = {"log": np.log, "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs,
               "log10": np.log10, "log2": np.log2, "log1p": np.log1p}


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
    text = _Q_CALL.sub(lambda m: f"`{m.group(1) if m.group(1) is not None else m.group(2)}`", text)
    text = _outside_strings(text, lambda code: code.replace("^", "**"))
    text = _FACTOR_CALL.sub("C(", text)
    _refuse_factor_arguments(text)
    return _SCALE_CALL.sub(f"{_OURS}(", text)


def _outside_strings(text: str, rewrite) -> str:
    """``rewrite`` applied to the code between string literals and backticked names only."""
    pieces, start = [], 0
    for match in _STRING.finditer(text):
        pieces += [rewrite(text[start : match.start()]), match.group()]
        start = match.end()
    return "".join(pieces + [rewrite(text[start:])])


def _refuse_factor_arguments(text: str) -> None:
    if re.search(r"(?<![\w.])C\([^()]*\blevels\s*=\s*c\(", text):
        raise LMMError(
            "levels=c(...) is R syntax; give the levels as a Python list, e.g. "
            "C(dose, levels=['low', 'mid', 'high'])"
        )


def from_formulae_names(names: list[str]) -> list[str]:
    """formulae's column names with R's spellings: ``scale(x)``, ``poly(x, 2)1`` (not ``[0]``)."""
    return [_poly_name(name.replace(f"{_OURS}(", "scale(")) for name in names]


_POLY_COLUMN = re.compile(r"^(poly\(.*\))\[(\d+)\]$")


def _poly_name(name: str) -> str:
    match = _POLY_COLUMN.match(name)
    return f"{match.group(1)}{int(match.group(2)) + 1}" if match else name
