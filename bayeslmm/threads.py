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
fit: 10.4 s and 4.6 s).  No size up to 2,000 was found where the second thread pays on a shared
machine, so every kernel of a fit gets one thread, with the one opt-in exception below.  That also makes the result independent of the
machine: OpenBLAS's last bits depend on its thread count, and with two threads the same fit took another
optimizer path (154 evaluations instead of 151, θ different in the 8th digit).

The limit covers both BLAS libraries loaded (NumPy's and SciPy's OpenBLAS) and is restored on
exit; user code outside a fit keeps its own setting (the limit is process-wide: other Python
threads calling BLAS during a fit get one thread too).  Entering costs ~15 µs (one
threadpoolctl controller, made once), so nesting is harmless.

One exception: the Cholesky factor and inverse of a dense second block of at least LARGE_BLOCK
rows (a later grouping factor with thousands of levels) run on the BLAS threads the caller had
outside the fit (OpenBLAS's default: one per core; :func:`large_block` around the two kernels)
where the machine has idle cores for them (:func:`idle_cores`, the 1-minute load average), and
always inside ``with large_blocks_from(size):`` from that size on.  There a kernel
takes seconds and the threads have real work; measured at n = 8,000 (dpotrf / dpotri): 4.3 /
7.2 s on one thread and 1.9 / 3.1 s on two on an idle machine, but 4.8 / 10.4 s against 7.5 /
13.9 s with two other processes running (load average 4), and at n = 4,000 under the same load
two threads lost by 1.4–5×.  Whole fits of the issue's 1M ratings on the shared 2-core machine
(load 3–7): 356–434 s with two threads on the block against 256 s with one (same 14
evaluations), and 384 s against 110 s with the moment start (7 evaluations); idle, 59 s against
91 s.  So the default asks the load average first: it pays only on otherwise idle cores.  The
log-likelihood depends on the thread count in its last digits only (tests/test_threads.py checks
1e-8 on a 300-row block, and on a 5,000-row one by the default route).
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import os

from threadpoolctl import ThreadpoolController

LARGE_BLOCK = 5000  # rows from which a dense block's Cholesky and inverse may use the caller's threads
_caller_threads: contextvars.ContextVar[int | None] = contextvars.ContextVar("caller_threads", default=None)
_large_block: contextvars.ContextVar[int | None] = contextvars.ContextVar("large_block", default=None)


@functools.cache
def blas_controller() -> ThreadpoolController:
    """threadpoolctl's view of the BLAS libraries loaded, made once (making one scans every
    shared library of the process: ~1 ms).  NumPy and SciPy, whose BLAS it must see, are
    loaded by the time bayeslmm calls this."""
    return ThreadpoolController()


@contextlib.contextmanager
def one_blas_thread():
    """Limit every loaded BLAS to one thread inside the block; restore the previous limits after.

    Usable as ``with one_blas_thread():`` and as a decorator, ``@one_blas_thread()``.  The
    outermost one remembers the caller's thread count for :func:`large_block`.
    """
    outer = _caller_threads.get()
    token = _caller_threads.set(blas_threads() if outer is None else outer)
    try:
        with blas_controller().limit(limits=1, user_api="blas"):
            yield
    finally:
        _caller_threads.reset(token)


def blas_threads() -> int:
    """The largest thread count of the loaded BLAS libraries now."""
    return max((lib.num_threads for lib in blas_controller().select(user_api="blas").lib_controllers), default=1)


def large_block_threads(size: int) -> int:
    """The BLAS threads :func:`large_block` gives a kernel on a ``size`` × ``size`` block: the
    caller's outside the fit from the threshold set by :func:`large_blocks_from` on; without one,
    from LARGE_BLOCK on where the machine has a core idle for each extra thread
    (:func:`idle_cores`); else 1 (and 1 outside :func:`one_blas_thread`, where nothing is limited
    and this module changes nothing)."""
    caller, threshold = _caller_threads.get(), _large_block.get()
    if caller is None or caller <= 1:
        return 1
    if threshold is None:
        return caller if size >= LARGE_BLOCK and idle_cores(caller - 1) else 1
    return caller if size >= threshold else 1


def idle_cores(extra: int) -> bool:
    """Whether ``extra`` more threads find idle cores: the 1-minute load average, less the fit's
    own thread (~1), plus the extra threads at most the cores, with half a core to spare."""
    return os.getloadavg()[0] - 1.0 + extra <= (os.cpu_count() or 1) - 0.5


@contextlib.contextmanager
def large_block(size: int):
    """Around one dense kernel on a ``size`` × ``size`` block inside a fit: the caller's BLAS
    threads for it where :func:`large_block_threads` says so (see the module's docstring)."""
    threads = large_block_threads(size)
    if threads <= 1:
        yield
        return
    with blas_controller().limit(limits=threads, user_api="blas"):
        yield


@contextlib.contextmanager
def large_blocks_from(size: int):
    """Inside the block, :func:`large_block` uses the caller's threads from ``size`` rows on
    whatever the load (``math.inf``: never); outside, from LARGE_BLOCK on where cores are idle."""
    token = _large_block.set(size)
    try:
        yield
    finally:
        _large_block.reset(token)
