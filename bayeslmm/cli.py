"""Command line: ``bayeslmm fit DATA.csv "FORMULA" [--method REML|ML|NUTS] [--residual "ar1(visit | id)"]``
and ``bayeslmm example NAME``; NUTS takes ``--draws --tune --chains --seed``."""
from __future__ import annotations

import argparse
import sys
import warnings

import pandas as pd

from bayeslmm import datasets
from bayeslmm.errors import LMMError
from bayeslmm.lmm import LMM
from bayeslmm.plots.cli import add_plot_parser, plot_command

NUTS = LMM.NUTS_DEFAULTS
EXAMPLES = {
    "sleepstudy": "Reaction ~ Days + (Days | Subject)",
    "Dyestuff": "Yield ~ 1 + (1 | Batch)",
    "Penicillin": "diameter ~ 1 + (1 | plate) + (1 | sample)",
    "Pastes": "strength ~ 1 + (1 | batch/cask)",
    "Sitka": "size ~ time * treat + (1 | tree)",
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "plot":
            print(f"wrote {plot_command(args, _read_csv(args.data), _sampling_options(args))}")
            return 0
        if args.command == "example":
            name = {k.lower(): k for k in EXAMPLES}.get(args.name.lower())
            if name is None:
                raise LMMError(f"no example {args.name!r}; choose one of {', '.join(EXAMPLES)}")
            data, formula = datasets.load(name), EXAMPLES[name]
            print(f"Example {name}: {len(data)} rows, formula {formula}\n")
        else:
            data, formula = _read_csv(args.data), args.formula
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = LMM(formula, data, residual=getattr(args, "residual", None))
            fit = model.fit(method=args.method, **_sampling_options(args))
        print(fit.summary())
        for warning in caught:
            print(f"warning: {warning.message}", file=sys.stderr)
    except LMMError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _sampling_options(args) -> dict:
    """The NUTS options given on the command line (LMM.fit rejects them with --method REML/ML)."""
    given = {"draws": args.draws, "tune": args.tune, "chains": args.chains, "random_seed": args.seed}
    return {name: value for name, value in given.items() if value is not None}


def _read_csv(path: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.ParserError) as err:
        raise LMMError(f"could not read {path!r} as CSV: {err}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bayeslmm", description="Linear mixed models from lme4 formulas.")
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("fit", help="fit a model to a CSV file and print its summary")
    fit.add_argument("data", help="CSV file with a header row")
    fit.add_argument("formula", help="lme4 formula, e.g. 'y ~ x + (x | g)'")
    fit.add_argument("--residual", default=None,
                     help="residual covariance structure, e.g. 'ar1(visit | id)', 'us(visit | id)', 'cs(id)'")
    example = commands.add_parser("example", help="fit a bundled example and print its summary")
    example.add_argument("name", help=f"one of: {', '.join(EXAMPLES)}")
    plot = add_plot_parser(commands)
    for sub in (fit, example, plot):
        sub.add_argument("--method", default="REML", choices=["REML", "ML", "NUTS"], type=str.upper,
                         help="REML or ML fit, or the Bayesian posterior by NUTS")
        nuts = sub.add_argument_group("NUTS (with --method NUTS)")
        nuts.add_argument("--draws", type=int, help=f"draws per chain after tuning (default {NUTS['draws']})")
        nuts.add_argument("--tune", type=int, help=f"tuning steps per chain (default {NUTS['tune']})")
        nuts.add_argument("--chains", type=int, help=f"default {NUTS['chains']}")
        nuts.add_argument("--seed", type=int, default=None, help="random seed, for reproducible draws")
    return parser


if __name__ == "__main__":
    sys.exit(main())
