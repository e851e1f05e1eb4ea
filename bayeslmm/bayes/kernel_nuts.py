"""NUTS over the compiled kernel: nutpie's Rust sampler calls the numba log-density and gradient.

No model is compiled per fit: :mod:`bayeslmm.linalg.compiled` is machine code loaded from
numba's disk cache, and nutpie calls it through a thin Python callback
(``nutpie.compiled_pyfunc.from_pyfunc``).  The posterior holds the variables PyMC's NUTS stores
for the marginalised model, with the same names and dims (σ, the sds of one-column terms, the
packed Cholesky factors), so the post-processing of :mod:`bayeslmm.bayes.sampling` is shared.
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from bayeslmm.bayes.kernel import log_density, parameter_blocks
from bayeslmm.bayes.setup import BayesSetup
from bayeslmm.errors import LMMError
from bayeslmm.model.covariance import effect_dim, pack_rowwise, unpack_rowwise


def sample_kernel(setup: BayesSetup, start: dict, *, draws: int, tune: int, chains: int, random_seed,
                  progressbar: bool, target_accept: float, cores: int | None) -> xr.DataTree:
    """Posterior and sample_stats of the marginalised model, sampled by nutpie over the kernel.

    ``start`` is one point of the PyMC model's variables (:func:`bayeslmm.bayes.sampling.initial_values`);
    every chain starts there, jittered on the unconstrained scale by ±0.1."""
    try:
        from nutpie import sample as nutpie_sample
        from nutpie.compiled_pyfunc import from_pyfunc
    except ImportError:
        raise LMMError("sampler='kernel' needs nutpie: pip install 'bayeslmm[nutpie]', or use sampler='pymc'") from None
    blocks = parameter_blocks(setup)
    x0 = to_unconstrained(setup, start)
    kernel = log_density(setup)
    kernel(x0)  # loads (or compiles) the kernel once here, not in every chain's thread

    def make_logp():
        return lambda x, **_: kernel(x)

    def make_expand(*_):
        return lambda x, **_: from_unconstrained(setup, x)

    def initial_point(seed):
        return x0 + np.random.default_rng(seed).uniform(-0.1, 0.1, x0.size)

    names = [b.name for b in blocks]
    shapes = [_constrained_shape(setup, b) for b in blocks]
    compiled = from_pyfunc(x0.size, make_logp, make_expand, [np.dtype("float64")] * len(blocks), shapes, names,
                           make_initial_point_fn=initial_point)
    seed = int(np.random.SeedSequence(random_seed).generate_state(1)[0])
    options = {} if cores is None else {"cores": cores}
    trace = nutpie_sample(compiled, draws=draws, tune=max(tune, 1), chains=chains, seed=seed, save_warmup=False,
                          progress_bar=progressbar, target_accept=target_accept, **options)
    return xr.DataTree.from_dict({"posterior": _named_as_pymc(setup, trace["posterior"].to_dataset()),
                                  "sample_stats": trace["sample_stats"].to_dataset()})


def _constrained_shape(setup: BayesSetup, block) -> tuple[int, ...]:
    return () if block.name == "sigma" else (block.size,)


def _named_as_pymc(setup: BayesSetup, posterior: xr.Dataset) -> xr.Dataset:
    """The dims and coords PyMC gives: an sd over its term's effects, a packed factor over its
    own integer axis (nutpie names every axis ``<variable>_dim_0``)."""
    for block, term, label in zip(parameter_blocks(setup)[1:], setup.spec.terms, setup.labels):
        axis = f"{block.name}_dim_0"
        if block.packed_cholesky:
            posterior = posterior.assign_coords({axis: np.arange(block.size)})
        else:
            posterior = posterior.rename({axis: effect_dim(label)}).assign_coords(
                {effect_dim(label): list(term.column_names)})
    return posterior


def to_unconstrained(setup: BayesSetup, point: dict) -> np.ndarray:
    """The kernel's vector at a point of the PyMC model's variables (logs of σ, sds, the diagonals)."""
    x = np.empty(sum(b.size for b in parameter_blocks(setup)))
    for block, term in zip(parameter_blocks(setup), [None, *setup.spec.terms]):
        value = np.atleast_1d(np.asarray(point[block.name], dtype=float))
        if block.packed_cholesky:
            L = unpack_rowwise(value, term.size)
            np.fill_diagonal(L, np.log(np.diag(L)))
            value = pack_rowwise(L)
        else:
            value = np.log(value)
        x[block.start : block.start + block.size] = value
    return x


def from_unconstrained(setup: BayesSetup, x: np.ndarray) -> dict[str, np.ndarray]:
    """The PyMC model's variables at the kernel's vector x (what the posterior stores)."""
    out = {}
    for block, term in zip(parameter_blocks(setup), [None, *setup.spec.terms]):
        value = np.asarray(x[block.start : block.start + block.size], dtype=float)
        if block.packed_cholesky:
            L = unpack_rowwise(value, term.size)
            np.fill_diagonal(L, np.exp(np.diag(L)))
            out[block.name] = pack_rowwise(L)
        else:
            out[block.name] = np.exp(value) if block.start else np.exp(value).reshape(())
    return out
