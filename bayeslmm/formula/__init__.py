"""Formula stage: lme4 formula text + data → ModelSpec (no math)."""
from bayeslmm.formula.bars import ParsedFormula, RandomBar, parse_formula
from bayeslmm.formula.design import build_spec

__all__ = ["ParsedFormula", "RandomBar", "parse_formula", "build_spec"]
