"""The blocked Cholesky of several grouping factors as one PyTensor Op with an exact gradient.

With two or more grouping factors the marginal log-density needs the second block's dense
Cholesky.  Written as a PyTensor graph, NUTS differentiated it by reverse mode through a
scatter of pairs and a Q2 × Q2 Cholesky at every leapfrog step (under 2 ESS/s on the issue-12
crossed design).  Here the forward pass is the NumPy factorization the REML fit uses
(:func:`bayeslmm.linalg.logdensity.factorize_T`) and the backward pass is its exact
vector-Jacobian product (:func:`bayeslmm.linalg.gradient.factorization_vjp`, the same
selected-inversion formulas as the REML gradient): one source for the value and the gradient
of both paths.  The rest of the marginal log-density (β integrated under its prior, σ, the
priors and their Jacobians) stays in the PyMC graph, which differentiates it as usual.
"""
from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from bayeslmm.linalg import gradient as gr
from bayeslmm.linalg import logdensity as ld
from bayeslmm.linalg.crossprod import CrossProducts
from bayeslmm.threads import one_blas_thread


class BlockedCholesky(Op):
    """(T_1, …, T_F) ↦ (C, log|L|²): the Schur complement of [X y] and the log-determinant.

    Each T_f is factor f's relative covariance factor (S_f × S_f, Λ_f = I ⊗ T_f).  Where the
    factorization fails, C and log|L|² are NaN, which NUTS treats as a rejected point.

    Examples
    --------
    >>> import pytensor.tensor as pt
    >>> import bayeslmm as blm
    >>> from bayeslmm.bayes.factorization_op import BlockedCholesky
    >>> model = blm.LMM("diameter ~ 1 + (1 | plate) + (1 | sample)", blm.datasets.load("Penicillin"))
    >>> C, logdet = BlockedCholesky(model.stats)(pt.eye(1), pt.eye(1))
    >>> C.eval().shape
    (2, 2)
    """

    def __init__(self, stats: CrossProducts):
        self.stats = stats
        self.last = (None, None)  # the last (key, factorization): the gradient reuses the value's

    def make_node(self, *Ts):
        Ts = [pt.as_tensor_variable(T).astype("float64") for T in Ts]
        return Apply(self, Ts, [pt.dmatrix(), pt.dscalar()])

    def factorization(self, Ts) -> ld.Factorization | None:
        key = tuple(np.asarray(T).tobytes() for T in Ts)
        if self.last[0] != key:
            with one_blas_thread():  # small dense kernels: see bayeslmm.threads
                fact = ld.factorize_T([np.asarray(T, dtype=float) for T in Ts], self.stats)
            self.last = (key, fact)
        return self.last[1]

    def perform(self, node, inputs, outputs):
        fact = self.factorization(inputs)
        size = self.stats.p + 1
        outputs[0][0] = np.full((size, size), np.nan) if fact is None else fact.C.copy()
        outputs[1][0] = np.asarray(np.nan if fact is None else fact.logdet)

    def pullback(self, inputs, outputs, cotangents):
        C_bar, logdet_bar = cotangents
        if isinstance(C_bar.type, DisconnectedType):
            C_bar = pt.zeros((self.stats.p + 1,) * 2)
        if isinstance(logdet_bar.type, DisconnectedType):
            logdet_bar = pt.as_tensor_variable(0.0)
        return BlockedCholeskyVJP(self)(*inputs, C_bar, logdet_bar)


class BlockedCholeskyVJP(Op):
    """(T_1, …, T_F, C̄, log|L|²‾) ↦ (T̄_1, …, T̄_F): the exact gradient of :class:`BlockedCholesky`."""

    def __init__(self, forward: BlockedCholesky):
        self.forward = forward

    def make_node(self, *inputs):
        inputs = [pt.as_tensor_variable(x).astype("float64") for x in inputs]
        return Apply(self, inputs, [T.type() for T in inputs[:-2]])

    def perform(self, node, inputs, outputs):
        *Ts, C_bar, logdet_bar = inputs
        fact = self.forward.factorization(Ts)
        if fact is None:
            grads = [np.full(np.shape(T), np.nan) for T in Ts]
        else:
            with one_blas_thread():
                grads = gr.factorization_vjp(fact, self.forward.stats, np.asarray(C_bar), float(logdet_bar))
        for out, g in zip(outputs, grads):
            out[0] = np.asarray(g, dtype=float)
