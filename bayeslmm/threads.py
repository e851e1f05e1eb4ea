"""BLAS on one thread around REML/ML fits and their inference: fast and the same on every machine.

A fit is thousands of small dense kernels (Cholesky factors, triangular solves and products
of blocks of a few to a few thousand rows).  OpenBLAS's default is one thread per core, and
its threads spin-wait for one another: when another process holds a core, each kernel waits
for a descheduled thread.  Measured on the 2-core machine of issue 12, one other process
running, scipy's Cholesky, 1 vs 2 threads:

    n = 140:  0.08 ms vs 0.30 ms      n = 1000:  17 ms vs 123 ms
    n = 500:  4.4 ms vs 7.1 ms        n = 2000: 114 ms vs 1376 ms

and idle, the second thread gains little below n ≈ 1000 (benchmarks in the report of issue
12).  So there is no size below which one thread should be used and above which two pay: one
thread is never much slower and often ten times faster.  It also makes the result independent
of the machine: OpenBLAS splits sums differently with the thread count, which moved the
optimum of a crossed fit.  Hence one thread always, not a size threshold.

The limit covers both BLAS libraries loaded (NumPy's and SciPy's OpenBLAS) and is restored on
exit; user code outside a fit keeps its own setting.  Entering costs ~15 µs (one
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
