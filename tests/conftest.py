"""Shared helpers: reference cases (made in R, stored as JSON; tests never call R) and their data."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

import bayeslmm as blm

TESTS = Path(__file__).parent
REPO = TESTS.parent


def _load(name: str) -> dict:
    return json.loads((TESTS / "reference" / name).read_text())


PUBLIC = _load("public_reference.json")  # lme4 1.1-31 / nlme 3.1-162 / lmerTest: shared/reference
# the shared reference's lmerTest/pbkrtest cases with denominator df: (key, formula, dataset)
DDF_CASES = [("sleepstudy_satterthwaite", "Reaction ~ Days + (Days | Subject)", "sleepstudy"),
             ("sitka_satterthwaite", "size ~ time * treat + (1 | tree)", "Sitka")]
EXTRA = _load("extra_reference.json")  # made by tests/reference/make_extra_reference.R


def case_data(case: dict) -> pd.DataFrame:
    if "data_file" in case:
        return pd.read_csv(REPO / case["data_file"])
    return blm.datasets.load(case["dataset"])


def python_formula(r_formula: str) -> str:
    """R's log(x) is numpy's np.log(x) in a Python formula; everything else reads the same."""
    return re.sub(r"(?<![\w.])log\(", "np.log(", r_formula)


def our_name(lme4_name: str, data: pd.DataFrame) -> str:
    """lme4's coefficient name → ours: 'treatozone' → 'treat[ozone]', 'log(x)' → 'np.log(x)'."""
    return ":".join(_one_part(part, data) for part in lme4_name.split(":"))


def _one_part(part: str, data: pd.DataFrame) -> str:
    if part == "(Intercept)" or part in data.columns:
        return part
    if part.startswith("log("):
        return "np." + part
    if part.startswith("scale("):
        return part
    for column in data.columns:
        if not pd.api.types.is_numeric_dtype(data[column]) and part.startswith(column):
            level = part[len(column):]
            if level in set(data[column].astype(str)):
                return f"{column}[{level}]"
    raise KeyError(f"cannot map lme4 name {part!r}")


def our_group(lme4_group: str) -> str:
    """lme4 labels the innermost of (1 | a/b/c) 'c:(b:a)'; bayeslmm writes 'c:b:a'."""
    return lme4_group.replace("(", "").replace(")", "")


@pytest.fixture(scope="session")
def sleepstudy() -> pd.DataFrame:
    return blm.datasets.load("sleepstudy")


def pymc_values(pm_model):
    """A function from a point of ``pm_model``'s value variables to every unobserved variable's
    value by name (σ, sds, Cholesky factors on their natural scale)."""
    names = [v.name for v in pm_model.unobserved_value_vars]
    values_of = pm_model.compile_fn(pm_model.unobserved_value_vars, inputs=pm_model.value_vars,
                                    on_unused_input="ignore")
    return lambda point: dict(zip(names, values_of(point)))
