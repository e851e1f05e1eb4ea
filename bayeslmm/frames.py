"""The data entry: any data frame in, one numpy-backed pandas DataFrame out.

Every entry point (``LMM(...)``, ``predict(newdata=...)``) converts once, here, so the
formula stage only ever sees pandas columns of plain numpy dtypes, ``object`` strings or
``category``.  The caller's frame is never modified: a column that needs another dtype
is replaced in a new frame.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from bayeslmm.errors import LMMError

ACCEPTED = ("a pandas DataFrame (numpy- or pyarrow-backed), a polars DataFrame, a pyarrow Table, "
            "or any data frame that narwhals or the dataframe interchange protocol (__dataframe__) reads")


def is_dask_frame(data) -> bool:
    """A ``dask.dataframe.DataFrame``, told by its type's module so that Dask is not imported."""
    return type(data).__module__.split(".")[0] == "dask" and hasattr(data, "npartitions") and hasattr(data, "columns")


def to_pandas(data, name: str = "data") -> pd.DataFrame:
    """``data`` as a pandas DataFrame with numpy-backed columns; LMMError for anything else.

    polars Enum/Categorical columns become pandas categoricals with the same category
    order (the first category is the factor's reference level).

    Examples
    --------
    >>> import polars as pl
    >>> from bayeslmm.frames import to_pandas
    >>> to_pandas(pl.DataFrame({"x": [1.0, 2.0]})).dtypes.tolist()
    [dtype('float64')]
    """
    frame = data if isinstance(data, pd.DataFrame) else _foreign_to_pandas(data, name)
    if frame.shape[0] == 0:
        raise LMMError(f"{name} has no rows; a model needs observations to fit")
    plain = {column: _numpy_backed(frame[column]) for column, dtype in frame.dtypes.items()
             if _needs_conversion(dtype)}
    return _replace(frame, plain)


def _foreign_to_pandas(data, name: str) -> pd.DataFrame:
    """A polars/pyarrow/… frame through narwhals, else through the interchange protocol."""
    import narwhals as nw

    try:
        return nw.from_native(data, eager_only=True).to_pandas()
    except TypeError:
        pass  # narwhals does not know this type; the interchange protocol may
    if hasattr(data, "__dataframe__"):
        with warnings.catch_warnings():  # pandas deprecates the protocol; it is our last resort
            warnings.filterwarnings("ignore", message=".*Interchange Protocol is deprecated")
            return pd.api.interchange.from_dataframe(data)
    raise LMMError(f"{name} must be a data frame: {ACCEPTED}; got {type(data).__name__}"
                   + (" (wrap a dict of columns as pandas.DataFrame(...))" if isinstance(data, dict) else ""))


def _replace(frame: pd.DataFrame, plain: dict) -> pd.DataFrame:
    """``frame`` with the columns in ``plain`` replaced by position (any column labels)."""
    if not plain:
        return frame
    out = frame.copy(deep=False)
    for position, column in enumerate(frame.columns):
        if column in plain:
            out.isetitem(position, plain[column])
    return out


def _needs_conversion(dtype) -> bool:
    """pyarrow-backed, pandas' string dtypes and the nullable (masked) numbers and booleans."""
    return isinstance(dtype, (pd.ArrowDtype, pd.StringDtype)) or (
        isinstance(dtype, pd.api.extensions.ExtensionDtype) and not isinstance(dtype, pd.CategoricalDtype)
        and dtype.kind in "iufb")


def _numpy_backed(column: pd.Series) -> pd.Series:
    """The same values in a numpy dtype: numbers as int/float (float when values are missing),
    strings as object with NaN for missing, dictionary-encoded arrow columns as categoricals."""
    dtype = column.dtype
    if isinstance(dtype, pd.ArrowDtype) and str(dtype.pyarrow_dtype).startswith("dictionary"):
        return _arrow_dictionary(column)
    if dtype.kind in "iufb":
        missing = column.isna().to_numpy()
        target = float if missing.any() or dtype.kind == "f" else dtype.numpy_dtype
        if dtype.kind == "b" and missing.any():
            return column.astype(object).where(~missing, np.nan)
        return pd.Series(column.to_numpy(dtype=target, na_value=np.nan) if target is float
                         else column.to_numpy(dtype=target), index=column.index, name=column.name)
    if dtype.kind in "OU" or isinstance(dtype, pd.StringDtype) or "string" in str(dtype):
        # dtype=object explicitly: pandas ≥ 3 would infer its string dtype again
        return pd.Series(column.to_numpy(dtype=object, na_value=np.nan), dtype=object, index=column.index,
                         name=column.name)
    return column.astype(object)


def _arrow_dictionary(column: pd.Series) -> pd.Series:
    """An arrow dictionary column as a categorical, in the dictionary's order."""
    import pyarrow as pa

    array = pa.array(column.array)  # pandas' __arrow_array__: its arrow data, chunked or not
    array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    categories = array.dictionary.to_pylist()
    values = array.dictionary_decode().to_pylist()
    return pd.Series(pd.Categorical(values, categories=categories), index=column.index, name=column.name)


def read_numeric_strings(frame: pd.DataFrame, columns) -> pd.DataFrame:
    """``frame`` with each of ``columns`` that holds only numbers written as text (``"1.5"``,
    ``"2"``) read as numbers, with a warning that names it; other columns unchanged.

    Covariates and the response are numbers; a grouping factor is categorical whatever it
    holds, so only covariate and response columns are passed here.
    """
    converted = {}
    for name in (c for c in columns if c in frame.columns):  # newdata may lack some
        column = frame[name]
        present = column.dropna()
        if column.dtype == object and len(present) and present.map(lambda v: isinstance(v, str)).all():
            numbers = pd.to_numeric(column, errors="coerce")
            if numbers.notna().sum() == column.notna().sum():
                converted[name] = numbers.astype(float)
    if converted:
        warnings.warn(f"read {len(converted)} column(s) of numbers stored as text as numbers: "
                      f"{', '.join(map(repr, converted))}; convert them yourself (e.g. "
                      "pandas.to_numeric) or make them categorical to decide otherwise", UserWarning,
                      stacklevel=5)
    return _replace(frame, converted)
