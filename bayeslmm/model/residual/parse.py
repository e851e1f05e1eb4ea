"""The mmrm-style shorthand for residual structures: ``"ar1(visit | tree) + het(treat)"``."""
from __future__ import annotations

import re

from bayeslmm.errors import LMMError
from bayeslmm.model.residual.ar1 import AR1, ARH1
from bayeslmm.model.residual.base import Structure
from bayeslmm.model.residual.combined import Combined
from bayeslmm.model.residual.cs import CompoundSymmetry
from bayeslmm.model.residual.heteroscedastic import Heteroscedastic
from bayeslmm.model.residual.independent import Independent
from bayeslmm.model.residual.toeplitz import Toeplitz
from bayeslmm.model.residual.unstructured import Unstructured

OVER_TIME = {"ar1": AR1, "ar1h": ARH1, "arh1": ARH1, "us": Unstructured, "un": Unstructured, "toep": Toeplitz}
SHORTHAND = re.compile(r"\s*(\w+)\s*(?:\(\s*(?:([\w.]+)\s*\|\s*)?([\w.]+)\s*\))?\s*")


def parse(text: str) -> Structure:
    """mmrm-style shorthand: ``"ar1(visit | tree)"``, ``"ar1h(…)"``/``"arh1(…)"``, ``"us(…)"``, ``"toep(…)"``,
    ``"cs(tree)"`` or ``"cs(visit | tree)"``, ``"ind"``, ``"het(treat)"`` and a structure
    with a variance per level of a factor, ``"ar1(visit | tree) + het(treat)"``.

    Examples
    --------
    >>> parse("ar1(visit | tree) + het(treat)")
    Combined(structure=AR1(time='visit', group='tree'), variance=Heteroscedastic(by='treat'))
    """
    if text and "+" in text:
        parts = [part.strip() for part in text.split("+")]
        if len(parts) != 2:
            raise LMMError(f"residual structure {text!r}: combine one structure with one het(factor)")
        return Combined(parse(parts[0]), parse(parts[1]))
    match = SHORTHAND.fullmatch(text or "")
    if not match:
        raise LMMError(f"residual structure {text!r} is not of the form 'ar1(visit | tree)'")
    name, time, group = match.group(1).lower(), match.group(2), match.group(3)
    if name in ("ind", "iid", "independent") and group is None:
        return Independent()
    if name in ("het", "varident") and group and time is None:
        return Heteroscedastic(by=group)
    if name == "cs" and group:
        return CompoundSymmetry(group=group)
    if name in OVER_TIME and time and group:
        return OVER_TIME[name](time=time, group=group)
    over_time = ", ".join(f"{key}(time | group)" for key in OVER_TIME)
    raise LMMError(f"residual structure {text!r} is not known; use ind, cs(group), {over_time}, het(factor) "
                   "or one of them + het(factor)")
