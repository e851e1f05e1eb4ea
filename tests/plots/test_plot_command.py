"""``bayeslmm plot DATA.csv FORMULA --kind ... -o fig.png`` writes the figure of that kind."""
from __future__ import annotations

import argparse

import matplotlib.image
import pytest

import bayeslmm as blm
from bayeslmm.cli import main
from bayeslmm.plots.cli import KINDS, add_plot_parser

pytestmark = pytest.mark.filterwarnings("ignore:.*BLAS.*", "ignore::bayeslmm.PosteriorWarning")

SLEEP = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "sleepstudy.csv"
    blm.datasets.load("sleepstudy").to_csv(path, index=False)
    return path


@pytest.mark.parametrize("kind, extra", [("caterpillar", []), ("lattice", ["--groups", "308", "309"]),
                                         ("residuals", []), ("predictions", ["--x", "Days"]), ("spaghetti", [])])
def test_each_frequentist_kind_writes_its_figure(sleep_csv, tmp_path, capsys, kind, extra):
    output = tmp_path / f"{kind}.png"
    assert main(["plot", str(sleep_csv), SLEEP, "--kind", kind, "-o", str(output), *extra]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {output}"
    figure = KINDS[kind](blm.LMM(SLEEP, blm.datasets.load("sleepstudy")).fit(), _arguments(extra))
    width, height = figure.get_size_inches() * 150
    assert matplotlib.image.imread(output).shape[:2] == (round(height), round(width))  # that figure, at 150 dpi


def test_a_posterior_kind_and_the_profile(sleep_csv, tmp_path):
    output = tmp_path / "forest.pdf"
    assert main(["plot", str(sleep_csv), SLEEP, "--kind", "forest", "--method", "NUTS", "--draws", "100",
                 "--tune", "100", "--chains", "2", "--seed", "1", "-o", str(output)]) == 0
    assert output.read_bytes().startswith(b"%PDF")
    dyestuff = tmp_path / "dyestuff.csv"
    blm.datasets.load("Dyestuff").to_csv(dyestuff, index=False)
    assert main(["plot", str(dyestuff), "Yield ~ 1 + (1 | Batch)", "--kind", "profile", "-o",
                 str(tmp_path / "profile.svg")]) == 0
    assert (tmp_path / "profile.svg").read_text().lstrip().startswith("<?xml")


def test_errors_are_reported(sleep_csv, tmp_path, capsys):
    assert main(["plot", str(sleep_csv), SLEEP, "--kind", "trace", "-o", str(tmp_path / "t.png")]) == 2
    assert "--kind trace plots a posterior; add --method NUTS" in capsys.readouterr().err
    assert main(["plot", str(sleep_csv), SLEEP, "--x", "Subject", "--kind", "lattice"]) == 2
    assert "x must be a predictor of the fixed part" in capsys.readouterr().err
    assert main(["plot", str(sleep_csv), SLEEP, "-o", str(tmp_path / "none" / "fig.png")]) == 2
    assert "could not write the plot" in capsys.readouterr().err


def _arguments(extra: list[str]):
    """The plot command's arguments as its parser reads them."""
    commands = argparse.ArgumentParser().add_subparsers()
    return add_plot_parser(commands).parse_args(["data.csv", SLEEP, *extra])
