"""Independent errors σ²I, the default: nothing to bind."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from bayeslmm.model.residual.base import Structure


@dataclass(frozen=True)
class Independent(Structure):
    """σ²I: the default."""

    columns: tuple = ()

    def bind(self, data: pd.DataFrame) -> None:
        return None
