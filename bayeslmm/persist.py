"""Saving fits (loading.py reads them back).

A posterior is saved as one netCDF (HDF5) file: ArviZ's DataTree groups as sampled, plus a
``bayeslmm`` group holding what rebuilds the model — the cleaned training rows as
variables over ``row``, and as attributes the formula, the residual structure, the
resolved priors (JSON), the sampler and how it sampled.  Loading refits nothing: it
rebuilds the model specification from the formula and the rows, and puts the stored
draws back (docs/design.md, "Saved posteriors").  A REML/ML fit is pickled.  Loading
either is :func:`bayeslmm.loading.load`, above the results it rebuilds.
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
from bayeslmm.model import priors
from bayeslmm.model import residual as cov

FORMAT = "bayeslmm-posterior"
VERSION = 1
MODEL_GROUP = "bayeslmm"
ENGINE = "h5netcdf"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


# --- entry points --------------------------------------------------------------------------


def save_posterior(result, path) -> Path:
    """Write ``result`` (a BayesResult) to ``path`` as netCDF."""
    if not result.spec.rows_in_memory:
        raise LMMError("a posterior of a Dask DataFrame model cannot be saved with its training rows (the file "
                       "rebuilds the model from them); save the draws alone: result.idata.to_netcdf(path)")
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
                         marginalize=int(result.marginalize), sampler=result.sampler,
                         data_name=result.spec.data_name)
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


def _modules() -> dict:
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
