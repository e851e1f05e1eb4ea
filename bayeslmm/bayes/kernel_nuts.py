"""NUTS over the compiled kernel: nutpie's Rust sampler calls the numba log-density and gradient.

No model is compiled per fit: :mod:`bayeslmm.linalg.compiled` is machine code loaded from
numba's disk cache, and nutpie calls it as a C callback (:mod:`bayeslmm.bayes.nutpie_callbacks`)
through the model class of nutpie's own numba path, ``CompiledPyMCModel``.  The posterior holds the variables PyMC's NUTS stores
for the marginalised model, with the same names and dims (σ, the sds, the correlations'
Cholesky factors), so the post-processing of :mod:`bayeslmm.bayes.sampling` is shared.
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from bayeslmm.bayes.kernel import kernel_arguments, parameter_blocks, sd_blocks, several_factors
from bayeslmm.bayes.kernel_residual import add_residual_variables
from bayeslmm.bayes.setup import BayesSetup
from bayeslmm.errors import LMMError
from bayeslmm.linalg.compiled import corr_index, correlation_cholesky
from bayeslmm.model.covariance import effect_dim
from bayeslmm.threads import one_blas_thread


def sample_kernel(setup: BayesSetup, start: dict, *, draws: int, tune: int, chains: int, random_seed,
                  progressbar: bool, target_accept: float, cores: int | None) -> xr.DataTree:
    """Posterior and sample_stats of the marginalised model, sampled by nutpie over the kernel.

    ``start`` is one point of the PyMC model's variables (:func:`bayeslmm.bayes.sampling.initial_values`);
    every chain starts there, jittered on the unconstrained scale by ±0.1."""
    try:
        from nutpie import sample as nutpie_sample
        from nutpie.compile_pymc import CompiledPyMCModel
    except ImportError:
        raise LMMError("sampler='kernel' needs nutpie: pip install 'bayeslmm[nutpie]', or use sampler='pymc'") from None
    from bayeslmm.bayes import nutpie_callbacks

    blocks = parameter_blocks(setup)
    x0 = to_unconstrained(setup, start)
    header, arrays = nutpie_callbacks.pack_arguments(kernel_arguments(setup))

    def initial_point(seed):
        return x0 + np.random.default_rng(seed).uniform(-0.1, 0.1, x0.size)

    names, shapes = [b.name for b in blocks], [_constrained_shape(setup, b) for b in blocks]
    ends = np.cumsum([int(np.prod(shape)) for shape in shapes])  # the stored values, one after another
    slices = [slice(int(end - np.prod(shape)), int(end)) for end, shape in zip(ends, shapes)]
    # nutpie's model of C callbacks (its numba path's class, given our callbacks and user data)
    logp_func, expand_func = _callbacks(setup, nutpie_callbacks)
    compiled = CompiledPyMCModel(
        _n_dim=x0.size, dims={}, _coords={}, _shapes=dict(zip(names, shapes)),
        compiled_logp_func=logp_func, compiled_expand_func=expand_func,
        initial_point_func=initial_point, shared_data={}, shared_var_keys={}, user_data=header,
        n_expanded=int(ends[-1]), shape_info=(names, slices, shapes),
        logp_func=None, expand_func=None)
    seed = int(np.random.SeedSequence(random_seed).generate_state(1)[0])
    options = {} if cores is None else {"cores": cores}
    if setup.residual is not None:  # σ, ρ (and an intercept's sd) lie along a ridge: a diagonal mass
        options["adaptation"] = "low_rank"  # matrix gave a quarter of the ESS (docs/design.md)
    with one_blas_thread():  # the several-factor kernel's LAPACK Cholesky, on each of nutpie's threads
        trace = nutpie_sample(compiled, draws=draws, tune=max(tune, 1), chains=chains, seed=seed, save_warmup=False,
                              progress_bar=progressbar, target_accept=target_accept, **options)
    del arrays  # the header holds their addresses: alive until sampling is done
    posterior = _named_as_pymc(setup, trace["posterior"].to_dataset())
    if setup.residual is not None:
        posterior = add_residual_variables(setup, posterior)
    return xr.DataTree.from_dict({"posterior": posterior, "sample_stats": trace["sample_stats"].to_dataset()})


def _callbacks(setup: BayesSetup, callbacks):
    """nutpie's logp and expand callbacks for the setup's kernel."""
    if setup.residual is not None:
        return callbacks.residual_callbacks()
    return callbacks.compiled_callbacks(several_factors(setup))


def _constrained_shape(setup: BayesSetup, block) -> tuple[int, ...]:
    """The stored value's shape: σ and ρ's Beta variable scalars, sds and log sd ratios vectors,
    a correlation's Cholesky factor S × S."""
    if block.name == "sigma" or block.transform == "logodds":
        return ()
    return (block.correlation, block.correlation) if block.correlation else (block.size,)


def _named_as_pymc(setup: BayesSetup, posterior: xr.Dataset) -> xr.Dataset:
    """The dims and coords PyMC gives: sds over their term's effects, a correlation's Cholesky
    factor over two integer axes (nutpie names every axis ``<variable>_dim_k``)."""
    for block, term, label in zip(sd_blocks(setup), setup.spec.terms, setup.labels):
        posterior = posterior.rename({f"{block.name}_dim_0": effect_dim(label)}).assign_coords(
            {effect_dim(label): list(term.column_names)})
    for block in parameter_blocks(setup)[1:]:
        if block.correlation:
            axes = [f"{block.name}_dim_{k}" for k in (0, 1)]
            posterior = posterior.assign_coords({axis: np.arange(block.correlation) for axis in axes})
    return posterior


def to_unconstrained(setup: BayesSetup, point: dict) -> np.ndarray:
    """The kernel's vector at a point of the PyMC model's variables: logs of σ and the sds,
    each correlation factor's CholeskyCorr vector (z_ij = L_ij / L_ii), and a residual
    structure's ρ variable on the log-odds scale and its log sd ratios."""
    x = np.empty(sum(b.size for b in parameter_blocks(setup)))
    for block in parameter_blocks(setup):
        value = np.asarray(point[block.name], dtype=float)
        if block.correlation:  # z_ij = L_ij / L_ii, at its place in the CholeskyCorr vector
            z = np.empty(block.size)
            for i in range(block.correlation):
                for j in range(i):
                    z[corr_index(block.correlation, i, j)] = value[i, j] / value[i, i]
            value = z
        elif block.transform == "logodds":
            value = np.log(value) - np.log1p(-value)
        elif block.transform == "identity":
            value = np.atleast_1d(value)
        else:
            value = np.log(np.atleast_1d(value))
        x[block.start : block.start + block.size] = value
    return x


def from_unconstrained(setup: BayesSetup, x: np.ndarray) -> dict[str, np.ndarray]:
    """The PyMC model's variables at the kernel's vector x (what the posterior stores)."""
    out = {}
    for block in parameter_blocks(setup):
        value = np.asarray(x[block.start : block.start + block.size], dtype=float)
        if block.correlation:
            L = np.zeros((block.correlation, block.correlation))
            correlation_cholesky(value, block.correlation, L)
            out[block.name] = L
        elif block.transform == "logodds":
            out[block.name] = (1.0 / (1.0 + np.exp(-value))).reshape(())
        elif block.transform == "identity":
            out[block.name] = value
        else:
            out[block.name] = np.exp(value) if block.start else np.exp(value).reshape(())
    return out
