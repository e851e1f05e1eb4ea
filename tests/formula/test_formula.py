"""Formula parsing (bars, ||, a/b) and the spec it builds: names, factors, terms."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayeslmm as blm
from bayeslmm.formula import build_spec, parse_formula
from conftest import REPO


def test_bars_are_found_and_the_fixed_part_is_kept():
    parsed = parse_formula("Reaction ~ Days + (Days | Subject)")
    assert parsed.response == "Reaction" and parsed.fixed == "Days"
    assert [(b.lhs, b.group) for b in parsed.bars] == [("Days", ("Subject",))]


def test_double_bar_expands_to_one_bar_per_term():
    parsed = parse_formula("y ~ x + (1 + x + z || g)")
    assert [b.lhs for b in parsed.bars] == ["1", "0 + x", "0 + z"]
    assert [b.lhs for b in parse_formula("y ~ (0 + x || g)").bars] == ["0 + x"]


def test_nesting_expands_outer_to_inner_with_lme4_labels():
    parsed = parse_formula("y ~ x + (1 | a/b/c)")
    assert [b.group_name for b in parsed.bars] == ["a", "b:a", "c:b:a"]


def test_no_random_term_and_intercept_only_fixed_part():
    assert parse_formula("y ~ x").bars == ()
    assert parse_formula("y ~ (1 | g)").fixed == "1"


def test_parenthesised_fixed_terms_are_not_bars():
    parsed = parse_formula("y ~ (x + z) + (1 | g)")
    assert parsed.fixed == "(x + z)" and len(parsed.bars) == 1


@pytest.mark.parametrize("bad, named", [
    ("y x", "exactly one '~'"), ("y ~ (x|)", r"'\(x\|\)' .* is malformed; write it as '\(lhs \| group\)'"),
    ("y ~ (x | g", r"1 unclosed '\('"), ("~ x", "no response on the left of '~'"),
    ("y ~ (x|g|h)", r"'\(x\|g\|h\)' .* is malformed"), ("y ~ x)", r"a '\)' without a matching '\('"),
    ("", "must be a non-empty string"), ("y ~ (1 | a+b)", r"grouping factor 'a\+b' .* must be column names")])
def test_malformed_formulas_raise(bad, named):
    with pytest.raises(blm.LMMError, match=named):
        parse_formula(bad)


def test_names_follow_formulae_with_lme4_intercept():
    data = blm.datasets.load("Sitka")
    spec = build_spec("size ~ time * treat + np.log(time) + (1 | tree)", data)
    assert spec.fixef_names == ("(Intercept)", "time", "treat[ozone]", "np.log(time)", "time:treat[ozone]")
    spec = build_spec("size ~ C(visit) * treat + (1 | tree)", data)
    assert spec.fixef_names[:3] == ("(Intercept)", "C(visit)[2]", "C(visit)[3]")
    assert spec.fixef_names[-1] == "C(visit)[5]:treat[ozone]" and len(spec.fixef_names) == 10


def test_zero_intercept_and_categorical_random_slopes():
    data = pd.read_csv(REPO / "tests/data/catslope.csv")
    spec = build_spec("y ~ 0 + trt + (trt | g)", data)
    assert spec.fixef_names == ("trt[a]", "trt[b]", "trt[c]")
    assert spec.factors[0].column_names == ("(Intercept)", "trt[b]", "trt[c]")
    spec0 = build_spec("y ~ trt + (0 + trt | g)", data)
    assert spec0.factors[0].column_names == ("trt[a]", "trt[b]", "trt[c]")


def test_scale_is_rs_scale_with_the_sample_sd():
    data = pd.read_csv(REPO / "tests/data/transform.csv")
    spec = build_spec("y ~ scale(z) + (1 | g)", data)
    z = data["z"].to_numpy()
    np.testing.assert_allclose(spec.X[:, 1], (z - z.mean()) / z.std(ddof=1))
    assert spec.fixef_names[1] == "scale(z)"


def test_numeric_grouping_column_is_a_factor_in_numeric_order():
    data = pd.read_csv(REPO / "tests/data/numgroup.csv")
    spec = build_spec("y ~ x + (1 | g)", data)
    assert spec.factors[0].levels[:3] == ("1", "2", "3")
    assert spec.factors[0].n_levels == data["g"].nunique()


def test_interaction_grouping_levels_are_observed_combinations():
    data = blm.datasets.load("Pastes")
    spec = build_spec("strength ~ 1 + (1 | batch:cask)", data)
    assert spec.factors[0].name == "batch:cask" and spec.factors[0].n_levels == 30
    assert spec.factors[0].levels[:2] == ("A:a", "A:b")


def test_crossed_factors_are_ordered_by_number_of_levels():
    data = pd.read_csv(REPO / "tests/data/crossed3.csv")
    spec = build_spec("y ~ x + (1 | f3) + (1 | f1) + (1 | f2)", data)
    levels = [f.n_levels for f in spec.factors]
    assert levels == sorted(levels, reverse=True)
    assert [t.group_name for t in spec.terms] == [f.name for f in spec.factors]


def test_several_terms_on_one_factor_share_its_block():
    data = pd.read_csv(REPO / "tests/data/twoterms.csv")
    spec = build_spec("y ~ x + (1 | g) + (0 + x | g)", data)
    assert len(spec.factors) == 1 and spec.factors[0].column_names == ("(Intercept)", "x")
    assert [(t.offset, t.size) for t in spec.terms] == [(0, 1), (1, 1)]


def test_the_same_column_twice_on_one_factor_raises():
    data = pd.read_csv(REPO / "tests/data/twoterms.csv")
    with pytest.raises(blm.LMMError, match="more than one term"):
        build_spec("y ~ x + (x | g) + (0 + x | g)", data)


def test_no_dense_level_matrices_are_built():
    """Z is never formed: the spec holds codes and n × S raw columns only."""
    data = pd.read_csv(REPO / "tests/data/crossed3.csv")
    spec = build_spec("y ~ x + (1 | f1) + (1 | f2) + (1 | f3)", data)
    for factor in spec.factors:
        assert factor.raw.shape == (spec.n, 1) and factor.codes.shape == (spec.n,)


@pytest.mark.parametrize("formula, named", [
    ("Reaction ~ Days + 1 | Subject", "'1 | Subject'"),
    ("Reaction ~ (1 | Subject) + Days | Subject", "'Days | Subject'"),
    ("Reaction ~ Days + (1 | Subject) - 1", "'(1 | Subject) - 1'"),
])
def test_a_bar_outside_parentheses_is_refused_not_dropped(formula, named):
    with pytest.raises(blm.LMMError, match="outside a parenthesised") as err:
        parse_formula(formula)
    assert named in str(err.value)


@pytest.mark.parametrize("formula", ["y ~ x:offset(z)", "y ~ x + (offset(z) | g)", "y ~ x * offset(z)"])
def test_an_offset_inside_another_term_is_refused(formula):
    with pytest.raises(blm.LMMError, match="offset"):
        parse_formula(formula)


def test_offsets_are_taken_out_of_the_fixed_part():
    parsed = parse_formula("y ~ x + offset(log(e)) + offset(w) + (1 | g)")
    assert parsed.fixed == "x" and parsed.offsets == ("log(e)", "w")


def test_unknown_functions_and_levels_are_lmm_errors():
    data = blm.datasets.load("sleepstudy").assign(dose=lambda d: np.array(["a", "b", "c"])[d["Days"] % 3])
    with pytest.raises(blm.LMMError, match="'foo'.*neither a column"):
        blm.LMM("Reaction ~ foo(Days) + (1 | Subject)", data)
    with pytest.raises(blm.LMMError, match="'c' not among the levels"):
        blm.LMM("Reaction ~ C(dose, levels=['a', 'b']) + (1 | Subject)", data)
    with pytest.raises(blm.LMMError, match="Python list"):
        blm.LMM("Reaction ~ factor(dose, levels=c('a', 'b', 'c')) + (1 | Subject)", data)
    with pytest.raises(blm.LMMError, match="one numeric column"):
        blm.LMM("Reaction ~ Days + offset(dose) + (1 | Subject)", data)


def test_columns_inside_calls_take_part_in_dropping_missing_rows():
    data = blm.datasets.load("sleepstudy").assign(**{"my col": lambda d: d["Days"] * 1.0})
    data.loc[[3, 7], "my col"] = np.nan
    with pytest.warns(UserWarning, match="dropped 2 of 180 rows"):
        model = blm.LMM('Reaction ~ I(Q("my col") ** 2) + (1 | Subject)', data)
    assert model.spec.n == 178


def test_transforms_in_random_terms_and_for_new_data():
    data = blm.datasets.load("sleepstudy")
    fit = blm.LMM("Reaction ~ Days + (log(Days + 1) | Subject)", data).fit()
    assert fit.varcorr()["var1"].tolist()[:2] == ["(Intercept)", "log(Days + 1)"]
    np.testing.assert_allclose(fit.predict(data.head(5)), fit.fitted().head(5), rtol=1e-10)


def test_grouping_columns_with_spaces_in_backticks_or_q():
    data = blm.datasets.load("sleepstudy").rename(columns={"Subject": "the subject"})
    plain = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy")).fit()
    for formula in ["Reaction ~ Days + (Days | `the subject`)", 'Reaction ~ Days + (Days | Q("the subject"))']:
        fit = blm.LMM(formula, data).fit()
        assert fit.loglik == pytest.approx(plain.loglik, abs=1e-8)
        assert fit.varcorr()["grp"].iloc[0] == "the subject"


def test_r_function_names_are_numpys_and_backticks_name_columns():
    data = blm.datasets.load("sleepstudy").assign(**{"days plus": lambda d: d["Days"] + 1.0})
    r_names = blm.LMM("Reaction ~ exp(Days / 10) + sqrt(Days) + abs(Days - 4) + (1 | Subject)", data).fit()
    numpy = blm.LMM("Reaction ~ np.exp(Days / 10) + np.sqrt(Days) + np.abs(Days - 4) + (1 | Subject)", data).fit()
    np.testing.assert_allclose(r_names.fixef().to_numpy(), numpy.fixef().to_numpy(), rtol=1e-12)
    quoted = blm.LMM("Reaction ~ `days plus` + (1 | Subject)", data).fit()
    plain = blm.LMM("Reaction ~ Days + (1 | Subject)", data).fit()
    assert quoted.fixef()["days plus"] == pytest.approx(plain.fixef()["Days"], rel=1e-10)


def test_an_ordered_categorical_gets_treatment_contrasts_in_level_order():
    data = blm.datasets.load("sleepstudy")
    data["dose"] = pd.Categorical(np.array(["low", "mid", "high"])[data["Days"] % 3],
                                  categories=["low", "mid", "high"], ordered=True)
    fit = blm.LMM("Reaction ~ dose + (1 | Subject)", data).fit()
    assert list(fit.fixef().index) == ["(Intercept)", "dose[mid]", "dose[high]"]
    means = data.groupby("dose", observed=True)["Reaction"].mean()  # balanced: the contrasts are mean differences
    np.testing.assert_allclose(fit.fixef().iloc[1:], means.iloc[1:] - means.iloc[0], rtol=1e-8)
