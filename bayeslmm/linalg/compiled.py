"""One grouping factor's marginal log-density (b and β integrated) and its exact gradient, compiled:
the Bayesian log-density (:func:`marginal_logp`) and the REML/ML objective (:func:`profiled_deviance`)
are the same Schur complement and the same derivative through it.

The same math as :func:`bayeslmm.linalg.logdensity.factorize_first` followed by
:func:`bayeslmm.linalg.logdensity.deviance_beta_integrated`, written as loops over the
per-level S×S blocks with ``numba.njit(cache=True)``: every argument is an array of a fixed
dtype and rank (the sufficient statistics, the prior's constants, the parameter layout), so
the machine code is compiled once per installation and loaded from numba's on-disk cache in
every later process, whatever the model or data set.

The parameters are those PyMC samples for the marginalised model (the specification,
:mod:`bayeslmm.bayes.model`): x = [log σ, then per random term its log sds and, for two or
more columns, LKJCorr's unconstrained CholeskyCorr vector of its correlation's Cholesky factor].
The log-density includes the priors on σ and the sds, the LKJ density of the correlations and
the Jacobians of PyMC's transforms, so it equals the PyMC model's logp.

The gradient, with D = −2 log p(y | θ, σ) and the Schur complement C = [X y]'[X y] − Σ_g Q_g,
Q_g = V_g'T A_g⁻¹ T'V_g, A_g = T'Z_g'Z_g T + I, V_g = Z_g'[X y], T = (Cholesky of the
covariance)/σ:

    ∂D/∂C = G: G_MM = (H⁻¹ + uu')/σ², G_wM = −u/σ², G_ss = 1/σ²  (H = M/σ² + P0, u = H⁻¹h)
    ∂D/∂T = Σ_g 2 Z_g'Z_g T (A_g⁻¹ + K_g G K_g') − 2 V_g G K_g',    K_g = A_g⁻¹T'V_g
    ∂D/∂log σ = 2n − 2⟨G, C⟩ − ⟨∂D/∂T, T⟩.
"""
from __future__ import annotations

import math
import warnings

import numba
import numpy as np

# the scale priors' families, as the kernel's codes (bayeslmm.bayes.kernel encodes the priors)
HALF_STUDENT_T, HALF_NORMAL, EXPONENTIAL = 0, 1, 2
LOG_2PI = math.log(2 * math.pi)


def cached(decorator, function):
    """``decorator(cache=True)(function)`` (numba.njit or numba.cfunc with its signature bound):
    compiled once and kept in numba's disk cache (the package's __pycache__, else the user's
    cache directory, or NUMBA_CACHE_DIR).  Where no cache directory is writable, compiled in
    memory in every process, with a warning, rather than failing."""
    try:
        return decorator(cache=True)(function)
    except RuntimeError as error:  # numba: "cannot cache function …: no locator available"
        warnings.warn(f"bayeslmm's compiled log-density cannot be cached on disk ({error}); it is compiled in "
                      "memory in every process. Set NUMBA_CACHE_DIR to a writable directory to cache it.",
                      RuntimeWarning, stacklevel=2)
        return decorator(cache=False)(function)


def njit(function):
    """numba.njit, cached on disk where possible (:func:`cached`)."""
    return cached(numba.njit, function)


@njit
def scale_logp(kind, a, b, constant, x):
    """log density of a scale prior at x > 0 and its derivative in x (constants precomputed)."""
    if kind == HALF_STUDENT_T:  # a = ν, b = scale
        nu_s2 = a * b * b
        return constant - 0.5 * (a + 1.0) * math.log1p(x * x / nu_s2), -(a + 1.0) * x / (nu_s2 + x * x)
    if kind == HALF_NORMAL:  # b = scale
        return constant - 0.5 * x * x / (b * b), -x / (b * b)
    return constant - x / b, -1.0 / b  # Exponential, b = scale (the mean)


@njit
def cholesky_into(A, L):
    """Lower Cholesky factor of the small SPD ``A`` into ``L``; False if not positive definite."""
    n = A.shape[0]
    for i in range(n):
        for j in range(i + 1):
            s = A[i, j]
            for k in range(j):
                s -= L[i, k] * L[j, k]
            if i == j:
                if not s > 0.0:
                    return False
                L[i, i] = math.sqrt(s)
            else:
                L[i, j] = s / L[j, j]
        for j in range(i + 1, n):
            L[i, j] = 0.0
    return True


@njit
def solve_spd(L, B, out):
    """out = (LL')⁻¹ B for the Cholesky factor L, column by column of B."""
    n = L.shape[0]
    for c in range(B.shape[1]):
        for i in range(n):  # L z = b
            s = B[i, c]
            for k in range(i):
                s -= L[i, k] * out[k, c]
            out[i, c] = s / L[i, i]
        for i in range(n - 1, -1, -1):  # L'x = z
            s = out[i, c]
            for k in range(i + 1, n):
                s -= L[k, i] * out[k, c]
            out[i, c] = s / L[i, i]


@njit
def product_into(A, B, out, alpha, beta, transpose_a=False, transpose_b=False):
    """out = beta·out + alpha·op(A)op(B), op a transpose where asked (small matrices: loops
    beat BLAS calls, and contiguous arrays beat transposed views, here)."""
    rows, inner = (A.shape[1], A.shape[0]) if transpose_a else (A.shape[0], A.shape[1])
    cols = B.shape[0] if transpose_b else B.shape[1]
    for i in range(rows):
        for j in range(cols):
            s = 0.0
            for k in range(inner):
                s += (A[k, i] if transpose_a else A[i, k]) * (B[j, k] if transpose_b else B[k, j])
            out[i, j] = alpha * s if beta == 0.0 else beta * out[i, j] + alpha * s  # out may be np.empty's


@njit
def corr_index(size, row, col):
    """The place of entry (row, col), row > col, of a size × size correlation Cholesky factor in
    PyMC's CholeskyCorr vector: the strict lower triangle of rows 1…size−1, filled as TensorFlow
    Probability's ``fill_triangular`` fills a triangle ("spiral" order)."""
    n = size - 1
    total = n * (n + 1) // 2
    q = (row - 1) * n + col
    return n + q if q < total - n else total - 1 - (q - (total - n))


@njit
def correlation_cholesky(z, size, L):
    """The correlation's Cholesky factor from PyMC's CholeskyCorr vector z into L (size × size):
    row i is [z_i, 1] / ‖[z_i, 1]‖.  Returns the row norms ‖[z_i, 1]‖."""
    norms = np.ones(size)
    for i in range(size):
        s2 = 1.0
        for j in range(i):
            L[i, j] = z[corr_index(size, i, j)]
            s2 += L[i, j] * L[i, j]
        norms[i] = math.sqrt(s2)
        for j in range(i):
            L[i, j] /= norms[i]
        L[i, i] = 1.0 / norms[i]
        for j in range(i + 1, size):
            L[i, j] = 0.0
    return norms


@njit
def covariance_cholesky(x, term_start, term_size, term_offset, S):
    """The factor's block-diagonal Cholesky factor of the covariance from the parameters x, with
    the correlations' factors and their row norms (per column).  A term's parameters: its log
    sds, then (two or more columns) its CholeskyCorr vector."""
    Lcov, Lcorr, norms = np.zeros((S, S)), np.zeros((S, S)), np.ones(S)
    for t in range(term_start.shape[0]):
        c, s, o = term_start[t], term_size[t], term_offset[t]
        block = Lcorr[c : c + s, c : c + s]  # a view: the term's block is filled in place
        norms[c : c + s] = correlation_cholesky(x[o + s : o + s + s * (s - 1) // 2], s, block)
        for i in range(s):
            sd = math.exp(x[o + i])
            for j in range(i + 1):
                Lcov[c + i, c + j] = sd * block[i, j]
    return Lcov, Lcorr, norms


@njit
def schur_complement_small(T, ZtZ, ZtXY, XYtXY):
    """:func:`schur_complement`, with one or two columns per level unrolled
    (:func:`schur_complement_1`, :func:`schur_complement_2`: 5–10× faster, the cost of NUTS on
    thousands of levels).  The Bayesian kernel, the posterior's draws, the several-factor
    kernels' first factor and the starts run it; the one-factor REML/ML objective keeps the
    general loop, whose rounding its optimiser's reference fits were settled with (its stopping
    point sits at the objective's rounding floor, ~4e-9 on Sitka's `(1 | tree)` fit, so any
    change of rounding moves θ̂ by ~1e-5 relative there)."""
    if ZtZ.shape[1] == 1:
        return schur_complement_1(T, ZtZ, ZtXY, XYtXY)
    if ZtZ.shape[1] == 2:
        return schur_complement_2(T, ZtZ, ZtXY, XYtXY)
    return schur_complement(T, ZtZ, ZtXY, XYtXY)


@njit
def schur_complement(T, ZtZ, ZtXY, XYtXY):
    """The Schur complement C = [X y]'[X y] − Σ_g V_g'T A_g⁻¹ T'V_g and log|A| = Σ_g log|A_g|,
    A_g = T'Z_g'Z_g T + I, V_g = Z_g'[X y], with K_all (A_g⁻¹T'V_g) and Ainv_all (A_g⁻¹) for
    :func:`schur_gradient`: (ok, log|A|, C, K_all, Ainv_all), ok False where an A_g is not
    positive definite."""
    G_levels, S = ZtZ.shape[0], ZtZ.shape[1]
    p1 = XYtXY.shape[0]
    K_all, Ainv_all = np.empty((G_levels, S, p1)), np.empty((G_levels, S, S))
    A, L, ZT = np.empty((S, S)), np.empty((S, S)), np.empty((S, S))
    W, eye = np.empty((S, p1)), np.eye(S)
    C = XYtXY.copy()
    logdet = 0.0
    for g in range(G_levels):
        product_into(ZtZ[g], T, ZT, 1.0, 0.0)
        A[:, :] = eye
        product_into(T, ZT, A, 1.0, 1.0, True)  # A = T'Z'ZT + I
        if not cholesky_into(A, L):
            return False, np.inf, C, K_all, Ainv_all
        for i in range(S):
            logdet += 2.0 * math.log(L[i, i])
        product_into(T, ZtXY[g], W, 1.0, 0.0, True)
        solve_spd(L, W, K_all[g])
        solve_spd(L, eye, Ainv_all[g])
        product_into(W, K_all[g], C, -1.0, 1.0, True)  # C −= W'A⁻¹W
    return True, logdet, C, K_all, Ainv_all


@njit
def schur_gradient_small(T, ZtZ, ZtXY, K_all, Ainv_all, Gc):
    """:func:`schur_gradient`, with one or two columns per level unrolled (as :func:`schur_complement_small`)."""
    if T.shape[0] == 1:
        return schur_gradient_1(T, ZtZ, ZtXY, K_all, Ainv_all, Gc)
    if T.shape[0] == 2:
        return schur_gradient_2(T, ZtZ, ZtXY, K_all, Ainv_all, Gc)
    return schur_gradient(T, ZtZ, ZtXY, K_all, Ainv_all, Gc)


@njit
def schur_gradient(T, ZtZ, ZtXY, K_all, Ainv_all, Gc):
    """∂D/∂T (S×S) of a D = log|A| + f(C) whose derivative in C is Gc (symmetric):
    Σ_g 2 Z_g'Z_g T (A_g⁻¹ + K_g Gc K_g') − 2 V_g Gc K_g'."""
    S, p1 = T.shape[0], Gc.shape[0]
    dT = np.zeros((S, S))
    KG, inner, ZT = np.empty((S, p1)), np.empty((S, S)), np.empty((S, S))
    for g in range(ZtZ.shape[0]):
        product_into(K_all[g], Gc, KG, 1.0, 0.0)
        inner[:, :] = Ainv_all[g]
        product_into(KG, K_all[g], inner, 1.0, 1.0, False, True)  # A⁻¹ + K G K'
        product_into(ZtZ[g], T, ZT, 1.0, 0.0)
        product_into(ZT, inner, dT, 2.0, 1.0)
        product_into(ZtXY[g], KG, dT, -2.0, 1.0, False, True)
    return dT


LOG_FLUSH = 1e150  # det A_g ≥ 1, so a product of them is logged before it can overflow


@njit
def schur_complement_1(T, ZtZ, ZtXY, XYtXY):
    """:func:`schur_complement` with one column per level: A_g = t²z_g + 1, scalars throughout.
    log|A| = log Π_g A_g, logged whenever the product passes :data:`LOG_FLUSH` (one log per
    level cost a third of the pass)."""
    G_levels, p1 = ZtZ.shape[0], XYtXY.shape[0]
    K_all, Ainv_all = np.empty((G_levels, 1, p1)), np.empty((G_levels, 1, 1))
    C = XYtXY.copy()
    t = T[0, 0]
    w = np.empty(p1)
    logdet, product = 0.0, 1.0
    for g in range(G_levels):
        a = t * t * ZtZ[g, 0, 0] + 1.0
        if not a > 0.0:
            return False, np.inf, C, K_all, Ainv_all
        product *= a
        if product > LOG_FLUSH:
            logdet += math.log(product)
            product = 1.0
        Ainv_all[g, 0, 0] = 1.0 / a
        for j in range(p1):
            w[j] = t * ZtXY[g, 0, j]
            K_all[g, 0, j] = w[j] / a
        for i in range(p1):  # the upper triangle; mirrored below
            for j in range(i, p1):
                C[i, j] -= w[i] * K_all[g, 0, j]
    return True, logdet + math.log(product), mirror_upper(C), K_all, Ainv_all


@njit
def schur_complement_2(T, ZtZ, ZtXY, XYtXY):
    """:func:`schur_complement` with two columns per level, unrolled: A_g's entries, its
    determinant and inverse as scalars (log|A| as in :func:`schur_complement_1`)."""
    G_levels, p1 = ZtZ.shape[0], XYtXY.shape[0]
    K_all, Ainv_all = np.empty((G_levels, 2, p1)), np.empty((G_levels, 2, 2))
    C = XYtXY.copy()
    t00, t01, t10, t11 = T[0, 0], T[0, 1], T[1, 0], T[1, 1]
    w0, w1 = np.empty(p1), np.empty(p1)
    logdet, product = 0.0, 1.0
    for g in range(G_levels):
        z00, z01, z11 = ZtZ[g, 0, 0], ZtZ[g, 0, 1], ZtZ[g, 1, 1]
        m00, m01 = z00 * t00 + z01 * t10, z00 * t01 + z01 * t11  # Z'Z T
        m10, m11 = z01 * t00 + z11 * t10, z01 * t01 + z11 * t11
        a00 = t00 * m00 + t10 * m10 + 1.0  # A = T'Z'Z T + I
        a01 = t00 * m01 + t10 * m11
        a11 = t01 * m01 + t11 * m11 + 1.0
        det = a00 * a11 - a01 * a01
        if not (a00 > 0.0 and det > 0.0):
            return False, np.inf, C, K_all, Ainv_all
        product *= det
        if product > LOG_FLUSH:
            logdet += math.log(product)
            product = 1.0
        i00, i01, i11 = a11 / det, -a01 / det, a00 / det
        Ainv_all[g, 0, 0], Ainv_all[g, 0, 1], Ainv_all[g, 1, 0], Ainv_all[g, 1, 1] = i00, i01, i01, i11
        for j in range(p1):
            v0, v1 = ZtXY[g, 0, j], ZtXY[g, 1, j]
            w0[j], w1[j] = t00 * v0 + t10 * v1, t01 * v0 + t11 * v1  # W = T'V
            K_all[g, 0, j] = i00 * w0[j] + i01 * w1[j]
            K_all[g, 1, j] = i01 * w0[j] + i11 * w1[j]
        for i in range(p1):  # the upper triangle; mirrored below
            for j in range(i, p1):
                C[i, j] -= w0[i] * K_all[g, 0, j] + w1[i] * K_all[g, 1, j]
    return True, logdet + math.log(product), mirror_upper(C), K_all, Ainv_all


@njit
def mirror_upper(C):
    """C with its lower triangle copied from the upper one (in place)."""
    for i in range(C.shape[0]):
        for j in range(i):
            C[i, j] = C[j, i]
    return C


@njit
def schur_gradient_1(T, ZtZ, ZtXY, K_all, Ainv_all, Gc):
    """:func:`schur_gradient` with one column per level, in scalars."""
    p1 = Gc.shape[0]
    t = T[0, 0]
    kg = np.empty(p1)
    d = 0.0
    for g in range(ZtZ.shape[0]):
        inner = Ainv_all[g, 0, 0]  # A⁻¹ + K Gc K'
        cross = 0.0  # V Gc K'
        for j in range(p1):
            s = 0.0
            for k in range(p1):
                s += K_all[g, 0, k] * Gc[k, j]
            kg[j] = s
            inner += s * K_all[g, 0, j]
            cross += ZtXY[g, 0, j] * s
        d += ZtZ[g, 0, 0] * t * inner - cross
    dT = np.empty((1, 1))
    dT[0, 0] = 2.0 * d
    return dT


@njit
def schur_gradient_2(T, ZtZ, ZtXY, K_all, Ainv_all, Gc):
    """:func:`schur_gradient` with two columns per level, unrolled (A⁻¹ + K Gc K' is symmetric)."""
    p1 = Gc.shape[0]
    t00, t01, t10, t11 = T[0, 0], T[0, 1], T[1, 0], T[1, 1]
    kg0, kg1 = np.empty(p1), np.empty(p1)
    d00 = d01 = d10 = d11 = 0.0
    for g in range(ZtZ.shape[0]):
        for j in range(p1):  # K Gc
            s0 = s1 = 0.0
            for k in range(p1):
                s0 += K_all[g, 0, k] * Gc[k, j]
                s1 += K_all[g, 1, k] * Gc[k, j]
            kg0[j], kg1[j] = s0, s1
        n00, n01, n11 = Ainv_all[g, 0, 0], Ainv_all[g, 0, 1], Ainv_all[g, 1, 1]  # A⁻¹ + K Gc K'
        for j in range(p1):
            n00 += kg0[j] * K_all[g, 0, j]
            n01 += kg0[j] * K_all[g, 1, j]
            n11 += kg1[j] * K_all[g, 1, j]
        z00, z01, z11 = ZtZ[g, 0, 0], ZtZ[g, 0, 1], ZtZ[g, 1, 1]
        m00, m01 = z00 * t00 + z01 * t10, z00 * t01 + z01 * t11  # Z'Z T
        m10, m11 = z01 * t00 + z11 * t10, z01 * t01 + z11 * t11
        d00 += m00 * n00 + m01 * n01
        d01 += m00 * n01 + m01 * n11
        d10 += m10 * n00 + m11 * n01
        d11 += m10 * n01 + m11 * n11
        for j in range(p1):  # − V Gc K'
            v0, v1 = ZtXY[g, 0, j], ZtXY[g, 1, j]
            d00 -= v0 * kg0[j]
            d01 -= v0 * kg1[j]
            d10 -= v1 * kg0[j]
            d11 -= v1 * kg1[j]
    dT = np.empty((2, 2))
    dT[0, 0], dT[0, 1], dT[1, 0], dT[1, 1] = 2.0 * d00, 2.0 * d01, 2.0 * d10, 2.0 * d11
    return dT


@njit
def beta_gradient(Hinv, u, sigma2):
    """∂D/∂C of the β part: Gc_XX = (H⁻¹ + uu')/σ², Gc_Xy = −u/σ², Gc_yy = 1/σ²."""
    p = u.shape[0]
    Gc = np.empty((p + 1, p + 1))
    for i in range(p):
        for j in range(p):
            Gc[i, j] = (Hinv[i, j] + u[i, 0] * u[j, 0]) / sigma2
        Gc[i, p] = Gc[p, i] = -u[i, 0] / sigma2
    Gc[p, p] = 1.0 / sigma2
    return Gc


@njit
def beta_integrated(C, logdet, sigma2, n, log_weights, precision, shift, constant, want_gradient):
    """D = −2 log p(y | T, σ) from the Schur complement C and log|L|² (b and β integrated;
    logdensity.deviance_beta_integrated) and, if ``want_gradient``, ∂D/∂C (Gc, symmetric) and
    ∂D/∂σ² at fixed C.  D is inf where H is not positive definite."""
    p = C.shape[0] - 1
    Gc = np.zeros((p + 1, p + 1))
    LH, H = np.empty((p, p)), np.empty((p, p))
    h, u = np.empty((p, 1)), np.empty((p, 1))
    for i in range(p):
        h[i, 0] = C[i, p] / sigma2 + shift[i]
        for j in range(p):
            H[i, j] = C[i, j] / sigma2 + precision[i, j]
    if not cholesky_into(H, LH):
        return np.inf, Gc, 0.0
    solve_spd(LH, h, u)
    D = logdet - log_weights + n * (LOG_2PI + math.log(sigma2)) + C[p, p] / sigma2 + constant
    for i in range(p):
        D += 2.0 * math.log(LH[i, i]) - h[i, 0] * u[i, 0]
    if not want_gradient:
        return D, Gc, 0.0
    Hinv = np.empty((p, p))
    solve_spd(LH, np.eye(p), Hinv)
    Gc = beta_gradient(Hinv, u, sigma2)
    return D, Gc, (n - np.sum(Gc * C)) / sigma2


@njit
def marginal_deviance(T, sigma2, ZtZ, ZtXY, XYtXY, n, log_weights, precision, shift, constant,
                      want_gradient):
    """D = −2 log p(y | T, σ) with b and β integrated (logdensity.deviance_beta_integrated),
    and, if ``want_gradient``, ∂D/∂T (S×S) and ∂D/∂σ² at fixed T.  D is inf where a
    Cholesky factor does not exist."""
    S = ZtZ.shape[1]
    ok, logdet, C, K_all, Ainv_all = schur_complement_small(T, ZtZ, ZtXY, XYtXY)
    dT = np.zeros((S, S))
    if not ok:
        return np.inf, dT, 0.0
    D, Gc, dsigma2 = beta_integrated(C, logdet, sigma2, n, log_weights, precision, shift, constant, want_gradient)
    if not want_gradient or not np.isfinite(D):
        return D, dT, 0.0
    return D, schur_gradient_small(T, ZtZ, ZtXY, K_all, Ainv_all, Gc), dsigma2


@njit
def profiled_deviance(T, ZtZ, ZtXY, XYtXY, n, log_weights, reml, want_gradient, unrolled=False):
    """The REML criterion or −2 log-likelihood (ML) with β and σ profiled out, as
    :func:`bayeslmm.linalg.logdensity.profiled_deviance`, and, if ``want_gradient``, its
    derivative in T (S×S): the frequentist objective of one grouping factor.  ``unrolled``: the
    one- and two-column loops of :func:`schur_complement_small` (5–10× faster, other rounding:
    for starts; the fit itself keeps the general loop, see there).

    By the envelope theorem this is :func:`marginal_deviance`'s T-derivative at σ̂², with β
    integrated under a flat prior (REML: H = C_XX/σ², so H⁻¹/σ² = C_XX⁻¹ and u = β̂) or
    profiled (ML: no H⁻¹ term).  inf where a factor does not exist or r² ≤ 0."""
    S, p = ZtZ.shape[1], XYtXY.shape[0] - 1
    if unrolled:
        ok, logdet, C, K_all, Ainv_all = schur_complement_small(T, ZtZ, ZtXY, XYtXY)
    else:
        ok, logdet, C, K_all, Ainv_all = schur_complement(T, ZtZ, ZtXY, XYtXY)
    dT = np.zeros((S, S))
    if not ok:
        return np.inf, dT
    LX, beta = np.empty((p, p)), np.empty((p, 1))
    if p > 0 and not cholesky_into(np.ascontiguousarray(C[:p, :p]), LX):
        return np.inf, dT
    solve_spd(LX, np.ascontiguousarray(C[:p, p:]), beta)
    r2 = C[p, p]
    logdet_M = 0.0
    for i in range(p):
        r2 -= C[i, p] * beta[i, 0]
        logdet_M += 2.0 * math.log(LX[i, i])
    if not r2 > 0.0:
        return np.inf, dT
    dof = n - p if reml else n
    D = logdet - log_weights + dof * (1.0 + LOG_2PI + math.log(r2 / dof))
    if reml:
        D += logdet_M
    if not want_gradient:
        return D, dT
    sigma2 = r2 / dof
    Hinv = np.zeros((p, p))  # REML: H⁻¹ = σ² C_XX⁻¹; ML profiles β, so no H⁻¹ term
    if reml:
        solve_spd(LX, np.eye(p) * sigma2, Hinv)
    Gc = beta_gradient(Hinv, beta, sigma2)
    if unrolled:
        return D, schur_gradient_small(T, ZtZ, ZtXY, K_all, Ainv_all, Gc)
    return D, schur_gradient(T, ZtZ, ZtXY, K_all, Ainv_all, Gc)


@njit
def marginal_logp(x, term_start, term_size, term_offset, term_eta, term_constant, prior_kind, prior_a,
                  prior_b, prior_constant, ZtZ, ZtXY, XYtXY, n, log_weights, precision, shift, constant):
    """The PyMC marginalised model's log-density at the unconstrained x, and its gradient.

    The scale priors are given per column of the factor (then σ's last); ``term_constant``
    is each correlated term's LKJ normalising constant.  With L the correlation's Cholesky
    factor and N_i = ‖[z_i, 1]‖ = 1/L_ii, LKJCorr's density (2η − 3 + S − i) log L_ii and the
    CholeskyCorr transform's Jacobian (i + 2) log L_ii add up to −(2η + S − 1) log N_i."""
    S = ZtZ.shape[1]
    sigma = math.exp(x[0])
    Lcov, Lcorr, norms = covariance_cholesky(x, term_start, term_size, term_offset, S)
    D, dT, dsigma2 = marginal_deviance(Lcov / sigma, sigma * sigma, ZtZ, ZtXY, XYtXY, n, log_weights,
                                       precision, shift, constant, True)
    return logp_from_deviance(x, D, dT, dsigma2, Lcov, Lcorr, norms, term_start, term_size, term_offset, term_eta,
                              term_constant, prior_kind, prior_a, prior_b, prior_constant)


@njit
def logp_from_deviance(x, D, dT, dsigma2, Lcov, Lcorr, norms, term_start, term_size, term_offset, term_eta,
                       term_constant, prior_kind, prior_a, prior_b, prior_constant):
    """The log-density and its gradient in x from the likelihood's D = −2 log p(y | T, σ), its
    derivatives ∂D/∂T (T = Lcov/σ, all columns) and ∂D/∂σ², the priors, the LKJ densities and
    the transforms' Jacobians (:func:`marginal_logp`; the scale priors per column, σ's last)."""
    S = Lcov.shape[0]
    grad = np.zeros(x.shape[0])
    sigma = math.exp(x[0])
    if not np.isfinite(D):
        return -np.inf, grad
    lp = -0.5 * D
    grad[0] = -0.5 * (2.0 * sigma * sigma * dsigma2 - np.sum(dT * Lcov) / sigma)
    dL = -0.5 * dT / sigma  # ∂logp/∂(Cholesky of the covariance), the likelihood's part
    value, slope = scale_logp(prior_kind[S], prior_a[S], prior_b[S], prior_constant[S], sigma)
    lp += value + x[0]  # the log transform's Jacobian
    grad[0] += slope * sigma + 1.0
    for t in range(term_start.shape[0]):
        c, s, o = term_start[t], term_size[t], term_offset[t]
        power = 2.0 * term_eta[t] + s - 1.0
        if s > 1:
            lp += term_constant[t]
        for i in range(s):
            sd = math.exp(x[o + i])
            value, slope = scale_logp(prior_kind[c + i], prior_a[c + i], prior_b[c + i], prior_constant[c + i], sd)
            lp += value + x[o + i]
            through_sd, along_row = 0.0, 0.0  # Σ_j dL_ij Lcov_ij, and Σ_j (dL_ij sd) L_ij
            for j in range(i + 1):
                through_sd += dL[c + i, c + j] * Lcov[c + i, c + j]
                along_row += dL[c + i, c + j] * sd * Lcorr[c + i, c + j]
            grad[o + i] = through_sd + slope * sd + 1.0
            if s == 1:
                continue
            N = norms[c + i]
            lp -= power * math.log(N)
            for j in range(i):  # ∂L_ik/∂z_ij = (δ_kj − L_ik L_ij)/N_i
                z = Lcorr[c + i, c + j] * N
                grad[o + s + corr_index(s, i, j)] = ((dL[c + i, c + j] * sd - along_row * Lcorr[c + i, c + j]) / N
                                                     - power * z / (N * N))
    return lp, grad
