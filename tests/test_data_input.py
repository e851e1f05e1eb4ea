"""Any data frame in: pandas (numpy, pyarrow, category), polars, pyarrow; converted once, never modified."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayeslmm as blm

pl = pytest.importorskip("polars")
pa = pytest.importorskip("pyarrow")

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    data = blm.datasets.load("sleepstudy")
    return data.assign(Subject=data["Subject"].astype(str))


@pytest.fixture(scope="module")
def reference(sleep):
    return blm.LMM(FORMULA, sleep).fit()


def _same_fit(fit, reference) -> None:
    np.testing.assert_allclose(fit.theta, reference.theta, rtol=1e-10)
    np.testing.assert_allclose(fit.fixef(), reference.fixef(), rtol=1e-10)
    assert list(fit.fixef().index) == list(reference.fixef().index)


def test_polars_frame_fits_as_pandas_and_is_not_modified(sleep, reference):
    frame = pl.from_pandas(sleep)
    before = frame.clone()
    fit = blm.LMM(FORMULA, frame).fit()
    _same_fit(fit, reference)
    assert frame.equals(before)
    np.testing.assert_allclose(fit.predict(frame.head(5)), reference.predict(sleep.head(5)))


def test_pyarrow_table_and_interchange_protocol(sleep, reference):
    table = pa.Table.from_pandas(sleep, preserve_index=False)
    _same_fit(blm.LMM(FORMULA, table).fit(), reference)

    class Interchange:  # a frame known only by the interchange protocol
        def __init__(self, table):
            self.table = table

        def __dataframe__(self, *args, **kwargs):
            return self.table.__dataframe__(*args, **kwargs)

    _same_fit(blm.LMM(FORMULA, Interchange(table)).fit(), reference)


def test_pyarrow_backed_pandas_columns(sleep, reference):
    arrow = sleep.astype({"Reaction": "double[pyarrow]", "Days": "int64[pyarrow]", "Subject": "string[pyarrow]"})
    before = arrow.copy(deep=True)
    fit = blm.LMM(FORMULA, arrow).fit()
    _same_fit(fit, reference)
    pd.testing.assert_frame_equal(arrow, before)
    np.testing.assert_allclose(fit.predict(arrow.head(4)), reference.predict(sleep.head(4)))


def test_nullable_columns_with_missing_values_drop_the_rows(sleep):
    data = sleep.astype({"Reaction": "Float64"})
    data.loc[data.index[:3], "Reaction"] = pd.NA
    with pytest.warns(UserWarning, match="dropped 3 of 180 rows"):
        fit = blm.LMM(FORMULA, data).fit()
    assert fit.spec.n == 177


def test_enum_order_is_the_reference_level():
    penicillin = blm.datasets.load("Penicillin")
    order = ["F", "E", "D", "C", "B", "A"]
    enum = pl.from_pandas(penicillin).with_columns(pl.col("sample").cast(pl.Enum(order)))
    fit = blm.LMM("diameter ~ sample + (1 | plate)", enum).fit()
    assert list(fit.fixef().index) == ["(Intercept)"] + [f"sample[{s}]" for s in order[1:]]
    as_category = penicillin.assign(sample=pd.Categorical(penicillin["sample"], categories=order, ordered=True))
    np.testing.assert_allclose(blm.LMM("diameter ~ sample + (1 | plate)", as_category).fit().fixef(), fit.fixef())


def test_numbers_stored_as_text_are_read_as_numbers_with_a_warning(sleep, reference):
    text = sleep.assign(Days=sleep["Days"].astype(str), Reaction=sleep["Reaction"].map(repr))
    with pytest.warns(UserWarning, match=r"'Days'.*|'Reaction'"):
        fit = blm.LMM(FORMULA, text).fit()
    _same_fit(fit, reference)
    with pytest.warns(UserWarning, match="'Days'"):
        predicted = fit.predict(text.head(3))
    np.testing.assert_allclose(predicted, reference.predict(sleep.head(3)))


def test_numeric_text_grouping_factor_is_a_factor_without_warning(sleep, reference):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = blm.LMM(FORMULA, sleep.assign(Subject=sleep["Subject"].astype(str))).fit()
    assert fit.spec.factors[0].levels[0] == "308"
    _same_fit(fit, reference)


def test_text_that_is_not_all_numbers_stays_a_factor(sleep):
    data = sleep.assign(Days=sleep["Days"].astype(str).replace({"0": "zero"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = blm.LMM("Reaction ~ Days + (1 | Subject)", data).fit()
    assert "Days[zero]" in fit.fixef().index


@pytest.mark.parametrize("bad", [{"Reaction": [1.0, 2.0]}, np.zeros((3, 2)), [[1, 2]], "data.csv"])
def test_not_a_data_frame_says_what_is_accepted(bad):
    with pytest.raises(blm.LMMError, match=r"data must be a data frame: .*polars.*got"):
        blm.LMM(FORMULA, bad)


def test_newdata_that_is_not_a_data_frame(reference):
    with pytest.raises(blm.LMMError, match="newdata must be a data frame"):
        reference.predict({"Days": [1]})
