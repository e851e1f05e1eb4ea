"""``bayeslmm plot DATA.csv "FORMULA" --kind caterpillar -o fig.png``: fit, draw, save.

bayeslmm/cli.py adds the subcommand with :func:`add_plot_parser` (its ``--method`` and NUTS
options are the ``fit`` command's) and runs it with :func:`plot_command`."""
from __future__ import annotations

from bayeslmm.errors import LMMError
from bayeslmm.lmm import LMM
from bayeslmm.plots import (
    caterpillar,
    forest,
    lattice,
    posterior_predictive,
    predictions,
    profile_zeta,
    residual_diagnostics,
    spaghetti,
    trace,
)


def _predictions(fit, args):
    return predictions(fit, x=args.x, by=args.by, groups=args.groups, group=args.group)


# each kind: its drawing from a fit and the command's arguments
KINDS = {
    "caterpillar": lambda fit, args: caterpillar(fit),
    "lattice": lambda fit, args: lattice(fit, x=args.x, group=args.group, levels=args.groups),
    "spaghetti": lambda fit, args: spaghetti(fit, x=args.x, group=args.group),
    "residuals": lambda fit, args: residual_diagnostics(fit, group=args.group),
    "profile": lambda fit, args: profile_zeta(fit),
    "predictions": _predictions,
    "forest": lambda fit, args: forest(fit),
    "trace": lambda fit, args: trace(fit),
    "rank": lambda fit, args: trace(fit, kind="rank"),
    "ppc": lambda fit, args: posterior_predictive(fit, random_seed=args.seed),
}
POSTERIOR_KINDS = ("forest", "trace", "rank", "ppc")


def add_plot_parser(commands):
    """The ``plot`` subcommand's parser (its own options; the caller adds ``--method`` and NUTS's)."""
    plot = commands.add_parser("plot", help="fit a model to a CSV file and save a plot of the fit")
    plot.add_argument("data", help="CSV file with a header row")
    plot.add_argument("formula", help="lme4 formula, e.g. 'y ~ x + (x | g)'")
    plot.add_argument("--kind", default="caterpillar", choices=list(KINDS),
                      help=f"the plot (default caterpillar; {', '.join(POSTERIOR_KINDS)} need --method NUTS)")
    plot.add_argument("-o", "--output", default="bayeslmm-plot.png",
                      help="the file to write; its extension picks the format (.png, .pdf, .svg)")
    plot.add_argument("--residual", default=None, help="residual covariance structure, e.g. 'ar1(visit | id)'")
    plot.add_argument("--x", default=None, help="predictor along the x axis (lattice, spaghetti, predictions)")
    plot.add_argument("--by", default=None, help="second predictor, one curve per value (predictions)")
    plot.add_argument("--group", default=None, help="grouping factor (default: the one with the most levels)")
    plot.add_argument("--groups", nargs="+", default=None,
                      help="levels of --group to draw (lattice panels; predictions' group curves)")
    return plot


def plot_command(args, data, sampling: dict) -> str:
    """Fit ``args.formula`` to ``data`` by ``args.method`` (``sampling``: NUTS's options), draw
    ``args.kind`` and save it to ``args.output``; returns the path written.

    Examples
    --------
    >>> import argparse, pathlib, tempfile
    >>> import bayeslmm as blm
    >>> from bayeslmm.plots.cli import add_plot_parser, plot_command
    >>> parser = add_plot_parser(argparse.ArgumentParser().add_subparsers())
    >>> output = pathlib.Path(tempfile.mkdtemp()) / "fig.png"
    >>> args = parser.parse_args(["Dyestuff.csv", "Yield ~ 1 + (1 | Batch)", "-o", str(output)])
    >>> args.method = "REML"  # bayeslmm/cli.py adds --method
    >>> plot_command(args, blm.datasets.load("Dyestuff"), {}) == str(output) and output.exists()
    True
    """
    if args.kind in POSTERIOR_KINDS and args.method != "NUTS":
        raise LMMError(f"--kind {args.kind} plots a posterior; add --method NUTS")
    fit = LMM(args.formula, data, residual=args.residual).fit(method=args.method, **sampling)
    figure = KINDS[args.kind](fit, args)
    try:
        figure.savefig(args.output, dpi=150)
    except (OSError, ValueError) as err:
        raise LMMError(f"could not write the plot to {args.output!r}: {err}") from None
    return args.output
