"""Command line: ``bayeslmm fit DATA.csv "FORMULA" [--method REML|ML|NUTS] [--residual "ar1(visit | id)"]``,
``bayeslmm example NAME`` and ``bayeslmm plot DATA.csv "FORMULA" --kind caterpillar -o fig.png``;
NUTS takes ``--draws --tune --chains --seed --no-progress``.

What the command prints goes to stdout: the summary (``--output table``, the default), or the
estimates as one machine-readable table (``--output csv`` or ``--output json``, broom.mixed's
``tidy()`` layout, :mod:`bayeslmm.results.tidy`).  Everything else goes to stderr: the
sampler's progress bar and messages, warnings and errors.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings

import pandas as pd

from bayeslmm import datasets
from bayeslmm.errors import LMMError
from bayeslmm.inference.fixed_effects import DDF_METHODS
from bayeslmm.lmm import LMM
from bayeslmm.plots.cli import add_plot_parser, plot_command
from bayeslmm.results.tidy import tidy

NUTS = LMM.NUTS_DEFAULTS
EXAMPLES = {
    "sleepstudy": "Reaction ~ Days + (Days | Subject)",
    "Dyestuff": "Yield ~ 1 + (1 | Batch)",
    "Penicillin": "diameter ~ 1 + (1 | plate) + (1 | sample)",
    "Pastes": "strength ~ 1 + (1 | batch/cask)",
    "Sitka": "size ~ time * treat + (1 | tree)",
}
OUTPUTS = ("table", "csv", "json")


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (``sys.argv[1:]`` when None); returns the exit status.

    Examples
    --------
    >>> from bayeslmm.cli import main
    >>> main(["example", "Dyestuff", "--output", "csv"])  # doctest: +ELLIPSIS
    effect,group,term,estimate,std_error,statistic,df,p_value,conf_low,conf_high
    fixed,,(Intercept),152...,19.38...
    0
    """
    args = _parser().parse_args(argv)
    try:
        if args.command == "plot":
            with stdout_to_stderr():
                path = plot_command(args, _read_csv(args.data), _sampling_options(args))
            print(f"wrote {path}")
            return 0
        data, formula, data_name = _data_and_formula(args)
        with warnings.catch_warnings(record=True) as caught, stdout_to_stderr():
            warnings.simplefilter("always")
            model = LMM(formula, data, residual=getattr(args, "residual", None), data_name=data_name)
            fit = model.fit(method=args.method, **_sampling_options(args))
        if args.output == "table" and args.command == "example":
            print(f"Example {data_name}: {len(data)} rows, formula {formula}\n")
        with warnings.catch_warnings(record=True) as also:
            warnings.simplefilter("always")
            print(_report(fit, args.output, args.ddf), end="")
        for warning in caught + also:
            print(f"warning: {warning.message}", file=sys.stderr)
    except LMMError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _data_and_formula(args) -> tuple[pd.DataFrame, str, str]:
    """The data, the formula and the name the summary's ``Data:`` line gives the data."""
    if args.command == "example":
        name = {k.lower(): k for k in EXAMPLES}.get(args.name.lower())
        if name is None:
            raise LMMError(f"no example {args.name!r}; choose one of {', '.join(EXAMPLES)}")
        return datasets.load(name), EXAMPLES[name], name
    return _read_csv(args.data), args.formula, args.data


def _report(fit, output: str, ddf: str) -> str:
    """What goes to stdout: the summary, or the tidy table as CSV or JSON."""
    frequentist = hasattr(fit, "coef_table")
    if output == "table":
        return str(fit.summary(ddf=ddf) if frequentist else fit.summary())
    table = tidy(fit, ddf=ddf)
    if output == "csv":
        return table.to_csv(index=False)
    header = {"formula": fit.spec.formula, "data": fit.spec.data_name, "nobs": fit.nobs, "groups": fit.ngrps}
    if frequentist:
        header |= {"method": fit.method, "ddf": ddf, "deviance": fit.deviance, "loglik": fit.loglik,
                   "aic": fit.aic, "bic": fit.bic}
    else:
        header |= {"method": "NUTS", "draws": fit.diagnostics["draws"], "divergences": fit.diagnostics["divergences"]}
    return json.dumps({**header, "estimates": json.loads(table.to_json(orient="records", double_precision=15))}, indent=2) + "\n"


@contextlib.contextmanager
def stdout_to_stderr():
    """Send whatever is written to stdout meanwhile to stderr: Python's ``sys.stdout`` (PyMC's
    rich progress bar) and file descriptor 1 (output of compiled code), so that stdout holds
    only the command's result."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no file descriptors 1 and 2 (an embedded interpreter): Python's streams only
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def _sampling_options(args) -> dict:
    """The NUTS options given on the command line (LMM.fit rejects them with --method REML/ML)."""
    given = {"draws": args.draws, "tune": args.tune, "chains": args.chains, "random_seed": args.seed,
             "progressbar": False if args.no_progress else None}
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
    plot = add_plot_parser(commands)  # its -o/--output is the figure's file
    for sub in (fit, example):
        sub.add_argument("--output", default="table", choices=OUTPUTS, type=str.lower,
                         help="table: the summary (default); csv or json: the fixed effects and variance "
                              "parameters as one machine-readable table (broom.mixed's tidy layout)")
        sub.add_argument("--ddf", default="satterthwaite", choices=DDF_METHODS, type=str.lower,
                         help="denominator df of the fixed effects' t tests of a REML/ML fit")
    for sub in (fit, example, plot):
        sub.add_argument("--method", default="REML", choices=["REML", "ML", "NUTS"], type=str.upper,
                         help="REML or ML fit, or the Bayesian posterior by NUTS")
        nuts = sub.add_argument_group("NUTS (with --method NUTS)")
        nuts.add_argument("--draws", type=int, help=f"draws per chain after tuning (default {NUTS['draws']})")
        nuts.add_argument("--tune", type=int, help=f"tuning steps per chain (default {NUTS['tune']})")
        nuts.add_argument("--chains", type=int, help=f"default {NUTS['chains']}")
        nuts.add_argument("--seed", type=int, default=None, help="random seed, for reproducible draws")
        nuts.add_argument("--no-progress", action="store_true",
                          help="no progress bar (it goes to stderr, never into the printed output)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
