"""BLAS on one thread around REML/ML fits and their inference: fast and the same on every machine.

A fit is thousands of small dense kernels (Cholesky factors, triangular solves and products
of blocks of a few to a few thousand rows).  OpenBLAS's default is one thread per core, and
its threads spin-wait for one another: when another process holds a core, each kernel waits
for a descheduled thread.  Measured on the 2-core machine of issue 12 with another process
running, scipy's Cholesky, 1 vs 2 threads:

    n = 140:  0.08 ms vs 0.30 ms      n = 1000:  17 ms vs 123 ms
    n = 500:  4.4 ms vs 7.1 ms        n = 2000: 114 ms vs 1376 ms

and whole fits: the three-factor fit of tests/data/schools_hoods.csv took 20 s with two
threads and 0.8 s with one; its Satterthwaite table 49 s and 0.7 s (the issue's InstEval-sized
fit: 10.4 s and 4.6 s).  No size was found where the second thread pays on a shared machine,
so there is no threshold: one thread always.  That also makes the result independent of the
machine: OpenBLAS's last bits depend on its thread count, and with two threads the same fit took another
optimizer path (154 evaluations instead of 151, θ different in the 8th digit).

The limit covers both BLAS libraries loaded (NumPy's and SciPy's OpenBLAS) and is restored on
exit; user code outside a fit keeps its own setting (the limit is process-wide: other Python
threads calling BLAS during a fit get one thread too).  Entering costs ~15 µs (one
threadpoolctl controller, made once), so nesting is harmless.
"""
from __future__ import annotations

import contextlib
import functools

from threadpoolctl import ThreadpoolController


@functools.cache
def blas_controller() -> ThreadpoolController:
    """threadpoolctl's view of the BLAS libraries loaded, made once (making one scans every
    shared library of the process: ~1 ms).  NumPy and SciPy, whose BLAS it must see, are
    loaded by the time bayeslmm calls this."""
    return ThreadpoolController()


@contextlib.contextmanager
def one_blas_thread():
    """Limit every loaded BLAS to one thread inside the block; restore the previous limits after.

    Usable as ``with one_blas_thread():`` and as a decorator, ``@one_blas_thread()``.
    """
    with blas_controller().limit(limits=1, user_api="blas"):
        yield
