"""Array helpers shared by the model layer and the linear algebra, for NumPy or PyTensor (``xp``)."""
from __future__ import annotations

import numpy as np


def group_sums(M, groups: np.ndarray, size: int, xp=np, trailing: tuple | None = None):
    """Σ of the rows of M within each group, (size, …); ``trailing``: M's other axes, for a
    PyTensor M whose shape is only known symbolically."""
    shape = (size,) + tuple(M.shape[1:] if trailing is None else trailing)
    if xp is np:
        out = np.zeros(shape)
        np.add.at(out, groups, M)
        return out
    return xp.specify_shape(xp.inc_subtensor(xp.zeros(shape)[groups], M), shape)


def put_rows(shape: tuple, index: tuple, values, xp=np):
    """An array of zeros of ``shape`` with ``values`` at ``index``."""
    if xp is np:
        out = np.zeros(shape)
        out[index] = values
        return out
    return xp.set_subtensor(xp.zeros(shape)[index], values)
