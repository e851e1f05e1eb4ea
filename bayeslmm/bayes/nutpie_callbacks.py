"""The kernel as C callbacks for nutpie: no Python, no GIL, between NUTS and the log-density.

nutpie's Rust sampler calls a C function ``int64 logp(dim, x, grad, logp, user_data)`` (and one
that expands x into the stored variables); its own numba path builds them per PyMC model.
Here they are ``numba.cfunc(cache=True)`` wrappers of :func:`bayeslmm.linalg.compiled.marginal_logp`
(one grouping factor) and :func:`bayeslmm.linalg.compiled_blocked.blocked_marginal_logp` (several) that read every statistic from ``user_data``: an int64 header of (address, shape) per array,
built by :func:`pack_arguments`.  So they compile once per installation, whatever the data,
and the chains run in parallel on nutpie's threads.

:func:`compiled_callbacks` loads (or first compiles) them on first use.
numba keys a cached function on its own file's time stamp only: after a change to the kernels
these callbacks call (``compiled.py``, ``compiled_blocked.py``, ``compiled_residual.py``) in a source checkout, delete the
``nutpie_callbacks*.nbi/.nbc`` files of ``__pycache__`` (or this file's stamp changes), or the
callbacks keep the old machine code.
"""
from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from bayeslmm.linalg.compiled import cached, correlation_cholesky, marginal_logp, njit
from bayeslmm.linalg.compiled_blocked import blocked_marginal_logp
from bayeslmm.linalg.compiled_residual import VARIANCES_ONLY, residual_marginal_logp

SLOT = 4  # header entries per array: address, then up to three dims
HEADER_ARRAYS = 24  # arrays a header has room for (the several-factor kernel's 22 and its scalars)


@intrinsic
def _void_pointer(typingctx, address):
    """The integer ``address`` as a void pointer (for numba.carray)."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(address), codegen


def pack_arguments(arguments: tuple) -> tuple[np.ndarray, list[np.ndarray]]:
    """The header nutpie passes as user_data, and the arrays it points to (keep them alive): the
    kernel's array arguments in their order, then its scalar arguments as one float64 array."""
    arrays = [np.ascontiguousarray(v) for v in arguments if isinstance(v, np.ndarray)]
    arrays.append(np.array([v for v in arguments if not isinstance(v, np.ndarray)], dtype=np.float64))
    header = np.zeros(SLOT * HEADER_ARRAYS, dtype=np.int64)
    for k, array in enumerate(arrays):
        assert array.dtype in (np.int64, np.float64) and array.ndim <= SLOT - 1
        header[SLOT * k] = array.ctypes.data
        header[SLOT * k + 1 : SLOT * k + 1 + array.ndim] = array.shape
    return header, arrays


@njit
def _ints(h, k):
    return numba.carray(_void_pointer(h[SLOT * k]), (h[SLOT * k + 1],), np.int64)


@njit
def _ints2(h, k):
    return numba.carray(_void_pointer(h[SLOT * k]), (h[SLOT * k + 1], h[SLOT * k + 2]), np.int64)


@njit
def _f1(h, k):
    return numba.carray(_void_pointer(h[SLOT * k]), (h[SLOT * k + 1],), np.float64)


@njit
def _f2(h, k):
    return numba.carray(_void_pointer(h[SLOT * k]), (h[SLOT * k + 1], h[SLOT * k + 2]), np.float64)


@njit
def _f3(h, k):
    return numba.carray(_void_pointer(h[SLOT * k]), (h[SLOT * k + 1], h[SLOT * k + 2], h[SLOT * k + 3]),
                        np.float64)


@njit
def _header(user_data):
    return numba.carray(user_data, (SLOT * HEADER_ARRAYS,), np.int64)


LOGP_SIGNATURE = types.int64(types.uint64, types.CPointer(types.double), types.CPointer(types.double),
                              types.CPointer(types.double), types.voidptr)
EXPAND_SIGNATURE = types.int64(types.uint64, types.uint64, types.CPointer(types.double),
                               types.CPointer(types.double), types.voidptr)


def logp_callback(dim, x_, grad_, logp_, user_data):
    h = _header(user_data)
    x, grad, out = numba.carray(x_, (dim,)), numba.carray(grad_, (dim,)), numba.carray(logp_, (1,))
    scalars = _f1(h, 14)
    value, gradient = marginal_logp(x, _ints(h, 0), _ints(h, 1), _ints(h, 2), _f1(h, 3), _f1(h, 4), _ints(h, 5),
                                    _f1(h, 6), _f1(h, 7), _f1(h, 8), _f3(h, 9), _f3(h, 10), _f2(h, 11), scalars[0],
                                    scalars[1], _f2(h, 12), _f1(h, 13), scalars[2])
    return _store(value, gradient, grad, out)


def blocked_logp_callback(dim, x_, grad_, logp_, user_data):
    """:func:`logp_callback` for two or more grouping factors (kernel.kernel_arguments' order)."""
    h = _header(user_data)
    x, grad, out = numba.carray(x_, (dim,)), numba.carray(grad_, (dim,)), numba.carray(logp_, (1,))
    scalars = _f1(h, 22)
    value, gradient = blocked_marginal_logp(
        x, _ints(h, 0), _ints(h, 1), _ints(h, 2), _ints(h, 3), _ints(h, 4), _ints(h, 5), _f1(h, 6), _f1(h, 7),
        _f1(h, 8), _f1(h, 9), _f1(h, 10), _f3(h, 11), _f3(h, 12), _f2(h, 13), _f2(h, 14), _ints(h, 15), _ints(h, 16),
        _f2(h, 17), _f2(h, 18), _f2(h, 19), scalars[0], scalars[1], _f2(h, 20), _f1(h, 21), scalars[2])
    return _store(value, gradient, grad, out)


@njit
def _store(value, gradient, grad, out):
    out[0] = value
    grad[:] = gradient
    if not math.isfinite(value):
        return 4  # nutpie: a non-finite log-density, treated as a divergence
    return 0


def expand_callback(dim, n_expanded, x_, out_, user_data):
    """The stored values, in the kernel's order: σ and each term's sds exponentiated, and each
    correlated term's correlation Cholesky factor (S × S, row by row) from its CholeskyCorr vector."""
    h = _header(user_data)
    x, out = numba.carray(x_, (dim,)), numba.carray(out_, (n_expanded,))
    _expand_terms(x, out, _ints(h, 1), _ints(h, 2))
    return 0


@njit
def _expand_terms(x, out, size, offset):
    """σ, each term's sds and correlation factors into ``out``; returns the next free place."""
    out[0] = math.exp(x[0])
    k = 1
    for t in range(size.shape[0]):
        s, o = size[t], offset[t]
        for i in range(s):
            out[k] = math.exp(x[o + i])
            k += 1
        if s > 1:
            L = np.empty((s, s))
            correlation_cholesky(x[o + s : o + s + s * (s - 1) // 2], s, L)
            for i in range(s):
                for j in range(s):
                    out[k] = L[i, j]
                    k += 1
    return k


def residual_logp_callback(dim, x_, grad_, logp_, user_data):
    """:func:`logp_callback` for one grouping factor with a residual structure
    (:func:`bayeslmm.linalg.compiled_residual.residual_marginal_logp`, kernel.kernel_arguments' order)."""
    h = _header(user_data)
    x, grad, out = numba.carray(x_, (dim,)), numba.carray(grad_, (dim,)), numba.carray(logp_, (1,))
    scalars = _f1(h, 20)
    value, gradient = residual_marginal_logp(
        x, _ints(h, 0), _ints(h, 1), _ints(h, 2), _f1(h, 3), _f1(h, 4), _ints(h, 5), _f1(h, 6), _f1(h, 7), _f1(h, 8),
        _ints(h, 9), _ints2(h, 10), _f1(h, 11), _f2(h, 12), _f1(h, 13), _f1(h, 14), _f3(h, 15), _f3(h, 16),
        _f3(h, 17), scalars[0], _f2(h, 18), _f1(h, 19), scalars[1])
    return _store(value, gradient, grad, out)


def residual_expand_callback(dim, n_expanded, x_, out_, user_data):
    """:func:`expand_callback`, then the structure's stored variables: ρ's Beta variable
    u = 1/(1 + e^−x) and the log sd ratios as they are."""
    h = _header(user_data)
    x, out = numba.carray(x_, (dim,)), numba.carray(out_, (n_expanded,))
    k = _expand_terms(x, out, _ints(h, 1), _ints(h, 2))
    info = _ints(h, 9)
    for i in range(info[1], dim):
        correlation = i == info[1] and info[0] != VARIANCES_ONLY
        out[k] = 1.0 / (1.0 + math.exp(-x[i])) if correlation else x[i]
        k += 1
    return 0


@functools.cache
def compiled_callbacks(several_factors: bool):
    """(log-density callback, expand callback) as numba cfuncs, loaded from numba's cache (or first
    compiled) on first use: the one-factor and the several-factor callbacks each cost a few tenths
    of a second to load, so a fit loads only the one it runs."""
    logp = blocked_logp_callback if several_factors else logp_callback
    return (cached(lambda cache: numba.cfunc(LOGP_SIGNATURE, cache=cache), logp),
            cached(lambda cache: numba.cfunc(EXPAND_SIGNATURE, cache=cache), expand_callback))


@functools.cache
def residual_callbacks():
    """(log-density, expand) callbacks of :func:`bayeslmm.linalg.compiled_residual.residual_marginal_logp`
    (one grouping factor or none, with a residual structure) as numba cfuncs, loaded from numba's
    cache (or first compiled) on first use: only fits with a residual structure load them."""
    return (cached(lambda cache: numba.cfunc(LOGP_SIGNATURE, cache=cache), residual_logp_callback),
            cached(lambda cache: numba.cfunc(EXPAND_SIGNATURE, cache=cache), residual_expand_callback))
