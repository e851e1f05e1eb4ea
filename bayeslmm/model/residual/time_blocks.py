"""Structures given by one relative covariance S (T × T) over the time points of each group."""
from __future__ import annotations

from abc import abstractmethod

import numpy as np

from bayeslmm.arrays import put_rows
from bayeslmm.model.residual.base import BoundStructure


class TimeCovariance(BoundStructure):
    """R_i = S on the time points group i has (unstructured, Toeplitz); ``natural`` is {"S": S}.

    Each group's rows are laid out on the T time points, (G, T), with zeros where a visit
    is missing; a group's covariance is S on its observed visits and the identity on the
    missing ones (independent of them), so whitening is one batched product with the
    inverse Cholesky factor of its missing-visit pattern and missing entries stay 0.
    Subclasses give ``relative_covariance(φ)`` and the PyMC side.
    """

    def __init__(self, groups, positions, levels, names: tuple, group_name: str, group_levels, ratio_name: str):
        super().__init__(groups, names, np.zeros(len(names)), group_name, group_levels)
        self.levels, self.ratio_name, self.size = levels, ratio_name, len(levels)
        self.time_positions = positions
        observed = np.zeros((self.n_groups, self.size), dtype=bool)
        observed[groups, positions] = True
        self.masks, self.pattern_of_group = np.unique(observed, axis=0, return_inverse=True)
        self.pattern_of_group = self.pattern_of_group.reshape(-1)
        self.pattern_counts = np.bincount(self.pattern_of_group)

    @abstractmethod
    def relative_covariance(self, phi) -> np.ndarray:
        """S at φ (T × T, NumPy)."""

    def natural(self, phi) -> dict:
        return {"S": self.relative_covariance(phi)}

    def pad(self, M, xp=np):
        """Rows (n, k) laid out as (G, T, k), zeros at missing visits."""
        shape = (self.pattern_of_group.size, self.size, M.shape[1])
        return put_rows(shape, (self.groups, self.time_positions), M, xp)

    def inverse_factors(self, S, xp=np):
        """L_p⁻¹ (P, T, T) of each pattern's covariance (S observed, I missing) and log|S_p|."""
        both = self.masks[:, :, None] & self.masks[:, None, :]
        patterned = xp.where(both, S, 0.0) + np.eye(self.size) * ~self.masks[:, :, None]
        L = xp.linalg.cholesky(patterned)
        diagonal = L[:, np.arange(self.size), np.arange(self.size)]
        return xp.linalg.inv(L), 2.0 * xp.log(diagonal).sum(axis=1)

    def whiten_natural(self, params: dict, M, xp=np):
        L_inv, logdets = self.inverse_factors(params["S"], xp)
        whitened = xp.matmul(L_inv[self.pattern_of_group], self.pad(M, xp))
        return whitened[self.groups, self.time_positions], (logdets * self.pattern_counts).sum()

    def group_logdets(self, params: dict) -> np.ndarray:
        return self.inverse_factors(params["S"])[1][self.pattern_of_group]

    def colour(self, params: dict, Z: np.ndarray) -> np.ndarray:
        L = np.linalg.inv(self.inverse_factors(params["S"])[0])
        return (L[self.pattern_of_group] @ self.pad(Z))[self.groups, self.time_positions]
