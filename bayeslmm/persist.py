"""Saving and loading fits.

A posterior is saved as one netCDF (HDF5) file: ArviZ's DataTree groups as sampled, plus a
``bayeslmm`` group holding what rebuilds the model — the cleaned training rows as
variables over ``row``, and as attributes the formula, the residual structure, the
resolved priors (JSON), the sampler and how it sampled.  Loading refits nothing: it
rebuilds the model specification from the formula and the rows, and puts the stored
draws back (docs/design.md, "Saved posteriors").  A REML/ML fit is pickled.
"""
from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from bayeslmm.errors import LMMError

FORMAT = "bayeslmm-posterior"
VERSION = 1
MODEL_GROUP = "bayeslmm"
ENGINE = "h5netcdf"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


# --- entry points --------------------------------------------------------------------------


def save_posterior(result, path) -> Path:
    """Write ``result`` (a BayesResult) to ``path`` as netCDF."""
    tree = result.idata.copy()
    tree[MODEL_GROUP] = xr.DataTree(_model_dataset(result))
    path = Path(path)
    tree.to_netcdf(path, engine=ENGINE)
    return path


def save_pickle(result, path) -> Path:
    path = Path(path)
    with path.open("wb") as handle:
        pickle.dump(result, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def load(path):
    """A fit saved with ``save``: a BayesResult from netCDF, an LMMResult from a pickle.

    Only load pickles you trust: unpickling runs code.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import bayeslmm as blm
    >>> fit = blm.LMM("Reaction ~ Days + (1 | Subject)", blm.datasets.load("sleepstudy")).fit()
    >>> path = fit.save(pathlib.Path(tempfile.mkdtemp()) / "fit.pkl")
    >>> blm.load(path).fixef().equals(fit.fixef())
    True
    """
    path = Path(path)
    if not path.is_file():
        raise LMMError(f"no file {str(path)!r} to load a fit from")
    with path.open("rb") as handle:
        signature = handle.read(len(_HDF5_SIGNATURE))
    if signature == _HDF5_SIGNATURE:
        return _load_posterior(path)
    with path.open("rb") as handle:
        try:
            return pickle.load(handle)
        except (pickle.UnpicklingError, EOFError) as err:
            raise LMMError(f"{str(path)!r} is neither a saved posterior (netCDF) nor a pickled fit: {err}") from None


def _load_posterior(path: Path):
    from bayeslmm import bayes
    from bayeslmm.lmm import LMM
    from bayeslmm.results.bayesian import BayesResult

    with xr.open_datatree(path, engine=ENGINE) as stored:
        tree = stored.load()
    if MODEL_GROUP not in tree.children or tree[MODEL_GROUP].attrs.get("format") != FORMAT:
        raise LMMError(f"{str(path)!r} is a netCDF file but not a posterior saved by BayesResult.save")
    model_data = tree[MODEL_GROUP].to_dataset()
    attrs = model_data.attrs
    if attrs["version"] > VERSION:
        raise LMMError(f"{str(path)!r} was saved by a newer bayeslmm (format version {attrs['version']}); upgrade")
    del tree[MODEL_GROUP]
    rows = rows_frame(model_data)
    weights = rows.pop(WEIGHTS).to_numpy() if WEIGHTS in rows.columns else None
    model = LMM(attrs["formula"], rows, residual=decode(attrs["residual"]), weights=weights)
    setup = bayes.BayesSetup(model.spec, model.stats, decode(attrs["priors"]), model.residual)
    return BayesResult(setup, tree, bool(attrs["marginalize"]), attrs["sampler"], model=model)


# --- the model group -------------------------------------------------------------------------


WEIGHTS = "(prior weights)"  # the rows' weights= values, stored as one more column


def _model_dataset(result) -> xr.Dataset:
    """The training rows (and their prior weights), and the rest of the model as attributes."""
    rows = result.spec.design.data
    if result.spec.weights is not None:
        rows = rows.assign(**{WEIGHTS: result.spec.weights})
    dataset = rows_dataset(rows)
    dataset.attrs.update(format=FORMAT, version=VERSION, formula=result.spec.formula,
                         residual=encode(result.structure), priors=encode(result.setup.priors),
                         marginalize=int(result.marginalize), sampler=result.sampler)
    return dataset


def rows_dataset(data: pd.DataFrame) -> xr.Dataset:
    """The rows as variables ``column_<k>`` over ``row`` (netCDF forbids some characters in
    names, so each keeps its column name in an attribute); :func:`rows_frame` inverts it."""
    variables = {f"column_{k}": _variable(name, data[name]) for k, name in enumerate(data.columns)}
    return xr.Dataset(variables, coords={"row": _index_values(data.index)})


def _variable(name, column: pd.Series) -> xr.Variable:
    attrs = {"name": str(name)}
    if isinstance(column.dtype, pd.CategoricalDtype):
        attrs.update(kind="category", categories=json.dumps(column.cat.categories.tolist()),
                     ordered=int(column.cat.ordered))
        return xr.Variable("row", column.cat.codes.to_numpy(), attrs)
    if pd.api.types.is_bool_dtype(column):
        return xr.Variable("row", column.to_numpy().astype(np.int8), {**attrs, "kind": "bool"})
    if column.dtype == object:
        if not column.map(lambda v: isinstance(v, str)).all():
            raise LMMError(f"column {name!r} mixes text with other Python objects; cannot save it "
                           "(make it text, numbers or categorical before fitting)")
        return xr.Variable("row", column.to_numpy().astype(str), {**attrs, "kind": "text"})
    return xr.Variable("row", column.to_numpy(), {**attrs, "kind": "plain"})


def _index_values(index: pd.Index) -> np.ndarray:
    if isinstance(index, pd.MultiIndex):
        raise LMMError("a data frame with a MultiIndex cannot be saved with the posterior; reset_index() first")
    values = index.to_numpy()
    return values.astype(str) if values.dtype == object else values


def rows_frame(dataset: xr.Dataset) -> pd.DataFrame:
    """The training rows back, with their dtypes, category order and row labels."""
    columns, text = {}, []
    for variable in dataset.data_vars.values():
        kind, values = variable.attrs["kind"], variable.values
        if kind == "category":
            categories = json.loads(variable.attrs["categories"])
            values = pd.Categorical.from_codes(values, categories, ordered=bool(variable.attrs["ordered"]))
        elif kind == "bool":
            values = values.astype(bool)
        elif kind == "text":
            text.append(variable.attrs["name"])
        columns[variable.attrs["name"]] = values
    # object, as the entry leaves text (pandas ≥ 3 would infer its string dtype)
    return pd.DataFrame(columns, index=pd.Index(dataset["row"].values)).astype(dict.fromkeys(text, object))


# --- priors and residual structures as JSON ----------------------------------------------------


def encode(value) -> str:
    """JSON of a prior or residual-structure object (dataclasses of bayeslmm.priors/cov)."""
    return json.dumps(_plain(value))


def decode(text: str):
    return _rebuild(json.loads(text))


def _plain(value):
    if dataclasses.is_dataclass(value):
        fields = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"__type__": f"{_owner(type(value))}.{type(value).__name__}", **fields}
    if isinstance(value, np.ndarray):
        return {"__array__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _owner(cls) -> str:
    # saved under the public namespace that exports the class (blm.cov, blm.priors), so the
    # file does not depend on which internal module defines it
    for module, namespace in _modules().items():
        if vars(namespace).get(cls.__name__) is cls:
            return module
    raise LMMError(f"cannot save a {cls.__name__}: only bayeslmm.priors and bayeslmm.cov objects are saved")


def _modules() -> dict:  # imported when used: the package's __init__ imports this module
    from bayeslmm.model import priors
    from bayeslmm.model import residual as cov

    return {"cov": cov, "priors": priors}


def _rebuild(value):
    if isinstance(value, list):
        return tuple(_rebuild(v) for v in value)  # every sequence in these dataclasses is a tuple
    if not isinstance(value, dict):
        return value
    if "__array__" in value:
        return np.asarray(value["__array__"], dtype=value["dtype"])
    module, _, name = value["__type__"].partition(".")
    namespace = _modules().get(module)
    cls = vars(namespace).get(name) if namespace else None
    if not dataclasses.is_dataclass(cls):  # only dataclasses of our two modules are ever built
        raise LMMError(f"the saved model names {value['__type__']!r}, which is not a prior or residual structure")
    return cls(**{k: _rebuild(v) for k, v in value.items() if k != "__type__"})
