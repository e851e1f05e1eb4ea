"""Loading saved fits: a posterior from netCDF (its model rebuilt from the stored formula and
rows), an LMMResult from a pickle.  Above the results and the LMM it rebuilds; the format is
:mod:`bayeslmm.persist`'s.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import xarray as xr

from bayeslmm import bayes, persist
from bayeslmm.errors import LMMError
from bayeslmm.lmm import LMM
from bayeslmm.results.bayesian import BayesResult


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
        signature = handle.read(len(persist.HDF5_SIGNATURE))
    if signature == persist.HDF5_SIGNATURE:
        return load_posterior(path)
    with path.open("rb") as handle:
        try:
            return pickle.load(handle)
        except (pickle.UnpicklingError, EOFError) as err:
            raise LMMError(f"{str(path)!r} is neither a saved posterior (netCDF) nor a pickled fit: {err}") from None


def load_posterior(path: Path):
    """The BayesResult saved at ``path``: the stored draws, and the model rebuilt from its rows."""
    with xr.open_datatree(path, engine=persist.ENGINE) as stored:
        tree = stored.load()
    if persist.MODEL_GROUP not in tree.children or tree[persist.MODEL_GROUP].attrs.get("format") != persist.FORMAT:
        raise LMMError(f"{str(path)!r} is a netCDF file but not a posterior saved by BayesResult.save")
    model_data = tree[persist.MODEL_GROUP].to_dataset()
    attrs = model_data.attrs
    if attrs["version"] > persist.VERSION:
        raise LMMError(f"{str(path)!r} was saved by a newer bayeslmm (format version {attrs['version']}); upgrade")
    del tree[persist.MODEL_GROUP]
    rows = persist.rows_frame(model_data)
    weights = rows.pop(persist.WEIGHTS).to_numpy() if persist.WEIGHTS in rows.columns else None
    model = LMM(attrs["formula"], rows, residual=persist.decode(attrs["residual"]), weights=weights,
                data_name=attrs.get("data_name"))  # absent from files saved before it was stored
    setup = bayes.BayesSetup(model.spec, model.stats, persist.decode(attrs["priors"]), model.residual)
    return BayesResult(setup, tree, bool(attrs["marginalize"]), attrs["sampler"], model=model)
