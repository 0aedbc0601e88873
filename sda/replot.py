"""``python -m sda.replot RUN_DIR``: draw a finished run's curves again from its CSV files.

Nothing is retrained: ``metrics.csv`` gives the per-epoch pre-training and
fine-tuning curves, ``steps.csv`` (if the run kept one) the minibatch costs.
"""

import argparse
import csv
import math
import sys
from collections import defaultdict
from pathlib import Path

from sda.plots import plot_curves


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _number(text):
    """A CSV cell as a float; empty cells (columns a phase leaves out) are NaN."""
    return float(text) if text not in ("", None) else math.nan


def _curve(rows, x_key, y_key, scale=1.0, x_shift=0):
    """``(xs, ys)`` over the rows whose ``y_key`` is finite (NaN before the first validation)."""
    points = [(_number(r[x_key]) + x_shift, scale * _number(r[y_key])) for r in rows]
    points = [(x, y) for x, y in points if math.isfinite(y)]
    return [x for x, _ in points], [y for _, y in points]


def _by_layer(rows):
    layers = defaultdict(list)
    for row in rows:
        layers[int(row["layer"])].append(row)
    return dict(sorted(layers.items()))


def replot(run_dir, out=None):
    """Write the run's PNGs into ``out`` (default: the run folder); returns their paths."""
    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.csv"
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{run_dir} holds no metrics.csv: give the folder of a run "
                                "made by python -m sda.run")
    out = Path(out or run_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = read_rows(metrics_path)
    pretrain = [r for r in metrics if r["phase"] == "pretrain"]
    finetune = [r for r in metrics if r["phase"] == "finetune"]
    steps = read_rows(run_dir / "steps.csv") if (run_dir / "steps.csv").is_file() else []
    figures = []  # (filename, curves, x label, y label, title, log_y)
    if pretrain:
        # pre-training rows number epochs from 0, fine-tuning rows from 1: plot epochs done
        curves = {f"layer {layer}": _curve(rows, "epoch", "cost", x_shift=1)
                  for layer, rows in _by_layer(pretrain).items()}
        figures.append(("pretrain_cost.png", curves, "epoch", "mean reconstruction cost",
                        "Pre-training", False))
    if finetune:
        figures.append(("finetune_cost.png", {"training": _curve(finetune, "epoch", "cost")},
                        "epoch", "mean training cost", "Fine-tuning", True))
        errors = {"validation": _curve(finetune, "epoch", "valid_error", 100),
                  "test at best validation": _curve(finetune, "epoch", "test_error", 100)}
        figures.append(("finetune_error.png", errors, "epoch", "error (%)", "Fine-tuning", False))
    step_pretrain = [r for r in steps if r["phase"] == "pretrain"]
    step_finetune = [r for r in steps if r["phase"] == "finetune"]
    if step_pretrain:
        curves = {f"layer {layer}": _curve(rows, "step", "cost")
                  for layer, rows in _by_layer(step_pretrain).items()}
        figures.append(("steps_pretrain.png", curves, "minibatch step", "minibatch cost",
                        "Pre-training, sampled minibatches", False))
    if step_finetune:
        figures.append(("steps_finetune.png", {"training": _curve(step_finetune, "step", "cost")},
                        "minibatch step", "minibatch cost", "Fine-tuning, sampled minibatches",
                        True))
    written = []
    for filename, curves, x_label, y_label, title, log_y in figures:
        plot_curves(curves, out / filename, x_label, y_label, title=title, log_y=log_y)
        written.append(out / filename)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sda.replot",
                                     description="Draw a run's curves again from its CSV files, "
                                                 "without retraining.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a folder made by python -m sda.run")
    parser.add_argument("--out", help="write the PNGs here instead of into RUN_DIR")
    args = parser.parse_args(argv)
    try:
        written = replot(args.run_dir, args.out)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(str(path) for path in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
