"""``python -m sda.replot RUN_DIR``: plot a run's learning curves from its CSV files.

A run writes its numbers (``metrics.csv`` per epoch, ``steps.csv`` per
sampled minibatch) but draws only its filters and reconstructions. This
command reads those files, retrains nothing, and draws the curves:
pre-training cost per layer, fine-tuning cost, validation and test error,
and the sampled minibatch costs. It works on a finished run and on one still
going or stopped.
"""

import argparse
import math
import sys
from collections import defaultdict
from pathlib import Path

from sda.errors import SdAError, exit_status
from sda.plots import plot_curves
from sda.rundir import METRICS, STEPS, usable_folder

DESCRIPTION = (
    "Plot a run's learning curves (pre-training and fine-tuning costs, validation and "
    "test errors, sampled minibatch costs) from its metrics.csv and steps.csv, "
    "without retraining."
)


def _number(text):
    """A CSV cell as a float; empty cells (columns a phase leaves out) are NaN."""
    return float(text) if text not in ("", None) else math.nan


def _curve(rows, x_key, y_key, scale=1.0, x_shift=0):
    """``(xs, ys)`` over the rows whose cells are finite (NaN before the first validation)."""
    points = [(_number(r[x_key]) + x_shift, scale * _number(r[y_key])) for r in rows]
    points = [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]
    return [x for x, _ in points], [y for _, y in points]


def _by_layer(rows):
    layers = defaultdict(list)
    for row in rows:
        layers[int(row["layer"])].append(row)
    return dict(sorted(layers.items()))


def replot(run_dir, out=None):
    """Write the run's PNGs into ``out`` (default: the run folder); returns their paths.

    Parameters
    ----------
    run_dir : str or path-like
        A run folder holding ``metrics.csv`` (and perhaps ``steps.csv``).
    out : str or path-like, optional
        The folder to write the PNGs into; ``run_dir`` by default.

    Returns
    -------
    list of pathlib.Path
        The PNGs written; a curve with no finite point is left out.

    Raises
    ------
    SdAError
        If ``run_dir`` holds no ``metrics.csv``, a CSV file is damaged, or ``out`` is not writable.
    """
    run_dir = Path(run_dir)
    if not (run_dir / METRICS.filename).exists():
        raise SdAError(f"{run_dir} holds no metrics.csv: give the folder of a run made by python -m sda.run")
    metrics = METRICS.read(run_dir)  # checked: a damaged file is named, not plotted
    steps = STEPS.read(run_dir) if (run_dir / STEPS.filename).exists() else []
    out = usable_folder(out or run_dir)
    pretrain = [r for r in metrics if r["phase"] == "pretrain"]
    finetune = [r for r in metrics if r["phase"] == "finetune"]
    figures = []  # (filename, curves, x label, y label, title, log_y)
    if pretrain:
        # pre-training rows number epochs from 0, fine-tuning rows from 1: plot epochs done
        curves = {
            f"layer {layer}": _curve(rows, "epoch", "cost", x_shift=1)
            for layer, rows in _by_layer(pretrain).items()
        }
        figures.append(
            ("pretrain_cost.png", curves, "epoch", "mean reconstruction cost", "Pre-training", False)
        )
    if finetune:
        # cg/lbfgs rows come at evaluation points, numbered in "epoch": their x is pass-equivalents
        x_key, x_label = ("passes", "pass-equivalents") if finetune[0].get("passes") else ("epoch", "epoch")
        figures.append(
            (
                "finetune_cost.png",
                {"training": _curve(finetune, x_key, "cost")},
                x_label,
                "mean training cost",
                "Fine-tuning",
                True,
            )
        )
        errors = {
            "validation": _curve(finetune, x_key, "valid_error", 100),
            "test at best validation": _curve(finetune, x_key, "test_error", 100),
        }
        figures.append(("finetune_error.png", errors, x_label, "error (%)", "Fine-tuning", False))
    step_pretrain = [r for r in steps if r["phase"] == "pretrain"]
    step_finetune = [r for r in steps if r["phase"] == "finetune"]
    if step_pretrain:
        curves = {
            f"layer {layer}": _curve(rows, "step", "cost") for layer, rows in _by_layer(step_pretrain).items()
        }
        figures.append(
            (
                "steps_pretrain.png",
                curves,
                "minibatch step",
                "minibatch cost",
                "Pre-training, sampled minibatches",
                False,
            )
        )
    if step_finetune:
        figures.append(
            (
                "steps_finetune.png",
                {"training": _curve(step_finetune, "step", "cost")},
                "minibatch step",
                "minibatch cost",
                "Fine-tuning, sampled minibatches",
                True,
            )
        )
    written = []
    for filename, curves, x_label, y_label, title, log_y in figures:
        curves = {label: curve for label, curve in curves.items() if curve[0]}  # no finite point
        if not curves:
            continue
        plot_curves(curves, out / filename, x_label, y_label, title=title, log_y=log_y)
        written.append(out / filename)
    return written


def main(argv=None):
    """``python -m sda.replot``: parse ``argv``, run, and turn a user's error into one line.

    Parameters
    ----------
    argv : list of str, optional
        The arguments; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        The exit status: 0, 2 after a one-line error, 130 if interrupted.
    """
    parser = argparse.ArgumentParser(prog="python -m sda.replot", description=DESCRIPTION)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a folder made by python -m sda.run")
    parser.add_argument("--out", help="write the PNGs here instead of into RUN_DIR")
    args = parser.parse_args(argv)
    return exit_status(lambda: print("\n".join(str(path) for path in replot(args.run_dir, args.out))))


if __name__ == "__main__":
    sys.exit(main())
