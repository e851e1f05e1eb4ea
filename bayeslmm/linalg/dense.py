"""In-place kernels for the dense second block of the blocked Cholesky (Q2 × Q2).

With a large later grouping factor the second block is the one big matrix of a fit: at
Q2 = 8,000 (the issue's 60,000 users × 8,000 items) it is 512 MB, one pass over it costs
~0.1–0.3 s and a fresh allocation of it as much again in page faults, against ~4.5 s for
its Cholesky factor on one BLAS thread.  So every kernel here overwrites the one array it
is given and forms no other full-size array; LAPACK is called on Fortran-ordered views so
that SciPy copies nothing.  The Cholesky factor and the inverse of a block of thousands of rows
may use more than one BLAS thread, on request (:func:`bayeslmm.threads.large_blocks_from`).
"""
from __future__ import annotations

import functools

import numpy as np
from scipy.linalg.lapack import dpotrf, dpotri

from bayeslmm.threads import large_block

MIRROR_BLOCK = 512  # rows copied per step when mirroring a triangle (a few MB at a time)


def mirror_upper(M: np.ndarray) -> np.ndarray:
    """Copy the upper triangle of the square C-ordered ``M`` onto its lower one, in place; returns M."""
    n = M.shape[0]
    for start in range(0, n, MIRROR_BLOCK):
        stop = min(start + MIRROR_BLOCK, n)
        M[stop:, start:stop] = M[start:stop, stop:].T
        block = M[start:stop, start:stop]
        rows, cols = strict_lower(stop - start)
        block[rows, cols] = block[cols, rows]
    return M


@functools.cache
def strict_lower(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the strict lower triangle of an n × n matrix (made once per n)."""
    return np.tril_indices(n, -1)


def cholesky_in_place(A: np.ndarray) -> np.ndarray | None:
    """The lower Cholesky factor L of the symmetric C-ordered ``A``, in A's memory (A is destroyed).

    L is returned Fortran-ordered (A's transpose view, which is A again by symmetry), with its
    upper triangle zeroed; None where A is not positive definite.
    """
    with large_block(A.shape[0]):
        factor, info = dpotrf(A.T, lower=1, clean=1, overwrite_a=1)
    return factor if info == 0 else None


def inverse_from_cholesky(L: np.ndarray, overwrite: bool = False) -> np.ndarray:
    """(LL')⁻¹ from the lower Cholesky factor L (LAPACK dpotri on one copy of L, or in L's own
    memory when ``overwrite`` and L is Fortran-ordered, as :func:`cholesky_in_place` returns it:
    no fresh Q2 × Q2 array), full and symmetric."""
    copy = L if overwrite and L.flags.f_contiguous else np.array(L, order="F")
    with large_block(L.shape[0]):
        inverse, info = dpotri(copy, lower=1, overwrite_c=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"inverse from the Cholesky factor failed (info={info})")
    return mirror_upper(inverse.T)  # the Fortran lower triangle is the C-ordered view's upper one


def scale_rows_and_columns(M: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """diag(scale) M diag(scale), in place; returns M."""
    M *= scale[:, None]
    M *= scale[None, :]
    return M
