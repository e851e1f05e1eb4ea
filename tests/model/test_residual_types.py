"""Each residual structure against brute force: its whitening W satisfies W R W' = I for the
dense R built here from its natural parameters, mixes rows only within a group, its log|R|
is numpy's slogdet, colouring inverts whitening, the PyTensor whitening equals the NumPy one,
and its PyMC variables, start values and posterior reading agree.  And no module dispatches
on structures with hasattr/getattr."""
from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import pkgutil

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayeslmm as blm
from bayeslmm import cov
from bayeslmm.model import residual
from bayeslmm.model.priors import ResidualPrior
from conftest import REPO

STEPS = {1: 1, 2: 2, 3: 4, 4: 5, 5: 8}  # integer times with gaps of 1, 2, 1, 3

STRUCTURES = {
    "cs": cov.CompoundSymmetry(group="tree"),
    "ar1": cov.AR1(time="step", group="tree"),
    "arh1": cov.ARH1(time="step", group="tree"),
    "us": cov.Unstructured(time="visit", group="tree"),
    "het": cov.Heteroscedastic(by="treat"),
    "ar1+het": cov.AR1(time="step", group="tree") & cov.Heteroscedastic(by="treat"),
    "cs+het": cov.CompoundSymmetry(group="tree") & cov.Heteroscedastic(by="visit"),
    "us+het": cov.Unstructured(time="visit", group="tree") & cov.Heteroscedastic(by="treat"),
    "toep": cov.Toeplitz(time="visit", group="tree"),
    "toep+het": cov.Toeplitz(time="visit", group="tree") & cov.Heteroscedastic(by="treat"),
}


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    """24 trees, a fifth of the visits missing, rows shuffled: groups of unequal size out of order."""
    sitka = blm.datasets.load("Sitka")
    trees = sitka["tree"].drop_duplicates().sample(24, random_state=3)
    data = sitka[sitka["tree"].isin(trees)].sample(frac=0.8, random_state=4)
    return data.assign(step=data["visit"].map(STEPS))


def _ratios(data: pd.DataFrame, column: str, log_sd) -> np.ndarray:
    """Each row's sd ratio exp(log_sd) of its level of ``column``, the first level's 1."""
    levels = np.sort(data[column].unique())
    return np.exp(np.r_[0.0, log_sd])[np.searchsorted(levels, data[column].to_numpy())]


def dense_R(structure, data: pd.DataFrame, params: dict) -> np.ndarray:
    """R (n × n) written out entry by entry from the structure's definition."""
    if isinstance(structure, cov.Combined):
        D = np.diag(_ratios(data, structure.variance.by, params["variance"]["log_sd"]))
        return D @ dense_R(structure.structure, data, params["structure"]) @ D
    if isinstance(structure, cov.Heteroscedastic):
        return np.diag(_ratios(data, structure.by, params["log_sd"]) ** 2)
    group = data[structure.group].to_numpy()
    same = group[:, None] == group[None, :]
    if isinstance(structure, cov.CompoundSymmetry):
        return np.where(same, params["rho"], 0.0) + (1 - params["rho"]) * np.eye(len(data))
    t = data[structure.time].to_numpy()
    if isinstance(structure, (cov.Unstructured, cov.Toeplitz)):  # S itself: tests/model/test_toeplitz.py checks it
        position = np.searchsorted(np.sort(np.unique(t)), t)
        return np.where(same, params["S"][position[:, None], position[None, :]], 0.0)
    R = np.where(same, params["rho"] ** np.abs(t[:, None] - t[None, :]), 0.0)
    if isinstance(structure, cov.ARH1):
        D = np.diag(_ratios(data, structure.time, params["log_sd"]))
        R = D @ R @ D
    return R


def _bound_at_random_phi(structure, rows, seed: int = 1):
    bound = structure.bind(rows)
    phi = np.random.default_rng(seed).normal(0, 0.4, bound.start.size)
    return bound, phi, bound.natural(phi)


@pytest.mark.parametrize("name", STRUCTURES)
def test_whitening_is_an_inverse_square_root_within_groups(rows, name):
    """W R W' = I (so W'W = R⁻¹) and W_ij = 0 for rows of different residual groups."""
    bound, _, params = _bound_at_random_phi(STRUCTURES[name], rows)
    R = dense_R(STRUCTURES[name], rows, params)
    W, _ = bound.whiten_natural(params, np.eye(len(rows)))
    np.testing.assert_allclose(W @ R @ W.T, np.eye(len(rows)), atol=1e-10)
    other_group = bound.groups[:, None] != bound.groups[None, :]
    assert np.all(W[other_group] == 0)


@pytest.mark.parametrize("name", STRUCTURES)
def test_log_determinants_are_slogdet(rows, name):
    """Σ log|R_i| of the whitening, and each group's log|R_i|, equal numpy's slogdet."""
    bound, phi, params = _bound_at_random_phi(STRUCTURES[name], rows)
    R = dense_R(STRUCTURES[name], rows, params)
    _, logdet = bound.whiten(phi, np.ones((len(rows), 1)))
    assert logdet == pytest.approx(np.linalg.slogdet(R)[1], rel=1e-10)
    per_group = [np.linalg.slogdet(R[np.ix_(bound.groups == g, bound.groups == g)])[1] for g in range(bound.n_groups)]
    np.testing.assert_allclose(bound.group_logdets(params), per_group, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", STRUCTURES)
def test_colour_and_whiten_are_inverses(rows, name):
    bound, phi, params = _bound_at_random_phi(STRUCTURES[name], rows)
    Z = np.random.default_rng(2).normal(size=(len(rows), 3))
    np.testing.assert_allclose(bound.whiten(phi, bound.colour(params, Z))[0], Z, atol=1e-12)
    np.testing.assert_allclose(bound.colour(params, bound.whiten(phi, Z)[0]), Z, atol=1e-12)


@pytest.mark.parametrize("name", ["cs", "arh1", "us+het", "toep"])
def test_pytensor_whitening_is_the_numpy_one(rows, name):
    import pytensor.tensor as pt

    bound, _, params = _bound_at_random_phi(STRUCTURES[name], rows)
    M = np.random.default_rng(5).normal(size=(len(rows), 2))
    white, logdet = bound.whiten_natural(_as_tensors(params), pt.as_tensor(M), pt)
    expected, expected_logdet = bound.whiten_natural(params, M)
    np.testing.assert_allclose(white.eval(), expected, rtol=1e-10, atol=1e-12)
    assert float(logdet.eval()) == pytest.approx(expected_logdet, rel=1e-10)


def _as_tensors(params: dict) -> dict:
    import pytensor.tensor as pt

    return {k: _as_tensors(v) if isinstance(v, dict) else (None if v is None else pt.as_tensor(v))
            for k, v in params.items()}


@pytest.mark.parametrize("name", [n for n in STRUCTURES if not n.startswith("us")])
def test_pymc_start_values_read_back_as_the_natural_parameters(rows, name):
    """Variables from ``pymc_variables`` started at ``initial_values(φ)`` and stored as a
    posterior draw: ``posterior_natural`` gives back natural(φ), and the reported variables
    carry the dims ``coords`` names."""
    import pymc as pm

    bound, phi, params = _bound_at_random_phi(STRUCTURES[name], rows)
    with pm.Model(coords=bound.coords()) as model:
        bound.pymc_variables(ResidualPrior())
    start = bound.initial_values(phi)
    assert set(start) == {rv.name for rv in model.free_RVs}
    for rv in model.free_RVs:
        model.set_initval(rv, start[rv.name])
    reported = bound.reported_variables()
    every = model.compile_fn(model.unobserved_value_vars, inputs=model.value_vars)(model.initial_point())
    values = [dict(zip([v.name for v in model.unobserved_value_vars], every))[v] for v in reported]
    posterior = xr.Dataset({v: (("chain", "draw") + model.named_vars_to_dims.get(v, ()), x[None, None])
                            for v, x in zip(reported, values)}, coords=bound.coords())
    _assert_same(bound.posterior_natural(posterior, 0), params)
    assert set(bound.posterior_draws(posterior)) >= ({"rho"} if "rho" in bound.names else set())


def _assert_same(got: dict, expected: dict) -> None:
    assert set(got) <= set(expected)
    for key, value in got.items():
        if isinstance(value, dict):
            _assert_same(value, expected[key])
        else:
            np.testing.assert_allclose(value, expected[key], rtol=1e-8)


def test_combining_is_defined_on_the_classes_that_combine():
    """``&`` comes from the classes' own bases, not assigned afterwards; Heteroscedastic and
    Independent do not combine."""
    for cls in (cov.CompoundSymmetry, cov.AR1, cov.ARH1, cov.Unstructured):
        assert "__and__" not in vars(cls) and cls.__and__ is residual.combined.Combinable.__and__
    with pytest.raises(TypeError):
        cov.Heteroscedastic(by="treat") & cov.Heteroscedastic(by="visit")
    with pytest.raises(blm.LMMError, match="on its own"):
        cov.Combined(cov.Independent(), cov.Heteroscedastic(by="treat"))


# --- no dispatch on structures by attribute probing --------------------------------------------


def _structure_attributes(rows) -> set[str]:
    """The attribute and method names only structures have: those of the structure classes and
    of bound instances, less every name a class elsewhere in bayeslmm has too (so that probing
    an unrelated object for, say, ``levels`` is not taken for dispatch on a structure)."""
    ours, elsewhere = set(), set()
    for info in pkgutil.walk_packages(blm.__path__, "bayeslmm."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            names = set(vars(cls)) | ({f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set())
            is_structure = issubclass(cls, (residual.Structure, residual.BoundStructure))
            (ours if is_structure else elsewhere).update(names)
    for structure in STRUCTURES.values():
        ours |= set(vars(structure.bind(rows)))
    return {n for n in ours - elsewhere if not n.startswith("__")}


def _probes(tree: ast.AST):
    """(line, object source, attribute) of every hasattr(x, a) and getattr(x, a, default)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and (
                node.func.id == "hasattr" or (node.func.id == "getattr" and len(node.args) == 3)):
            attribute = node.args[1].value if isinstance(node.args[1], ast.Constant) else None
            yield node.lineno, ast.unparse(node.args[0]), attribute


def test_no_module_probes_structures_with_hasattr_or_getattr(rows):
    """Callers use the structure interface: no hasattr/getattr-with-default that asks for a
    structure's attribute or probes an object named like a structure."""
    attributes = _structure_attributes(rows)
    found = []
    for path in sorted((REPO / "bayeslmm").rglob("*.py")):
        for line, obj, attribute in _probes(ast.parse(path.read_text())):
            suspicious_object = any(word in obj.lower() for word in ("bound", "structure", "residual"))
            if attribute in attributes or suspicious_object:
                found.append(f"{path.relative_to(REPO)}:{line}: ({obj}, {attribute!r})")
    assert not found, "dispatch on structures by attribute:\n" + "\n".join(found)


def test_the_probe_finds_what_it_looks_for():
    code = "hasattr(bound, 'structure')\ngetattr(x, 'masks', None)\ngetattr(x, 'y')\nhasattr(data, 'shape')"
    assert [(obj, a) for _, obj, a in _probes(ast.parse(code))] == [("bound", "structure"), ("x", "masks"),
                                                                      ("data", "shape")]
