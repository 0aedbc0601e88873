"""``python -m sda.experiments.baseline``: fine-tuning with and without pre-training.

Two arms train the same network on the same data with the same fine-tuning
budget: one fine-tunes after layer-wise pre-training, the other from the
SdA's own random initial weights. Both build their model from the same seed,
so the random arm starts where the pre-trained arm started pre-training, and
both see the same minibatches in the same order. Every ``--eval-every``
fine-tuning iterations each arm records the mean of the last minibatch costs
and the accuracy on the test set.

Writes ``baseline.csv`` (the curves), ``baseline_loss.png``,
``baseline_accuracy.png``, ``baseline_summary.md`` and each arm's starting
weights (``pretrained_start.npz``, ``random_start.npz``).
"""

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

from sda import BACKEND
from sda.cli import exit_status
from sda.config import preset
from sda.data import DATASETS, load_dataset, shared_dataset
from sda.plots import plot_curves
from sda.run import build_model
from sda.rundir import RunDir, save_params
from sda.SdA import n_batches
from sda.train import EarlyStopping, finetune_sgd, pretrain, split_error

ARMS = {"pretrained": "pre-trained", "random": "random init"}
COLUMNS = ["arm", "iteration", "epoch", "train_loss", "test_accuracy", "seconds"]
# (preset, overrides) behind the flags' defaults, for a full run and for --quick
FULL = ("default", dict(finetune_epochs=10, eval_every=500))
QUICK = ("demo", dict(pretrain_epochs=1, finetune_epochs=2, eval_every=40))


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m sda.experiments.baseline", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true",
        help="a tiny end-to-end run on the 8x8 digits (the demo preset, 1 pre-training and "
             "2 fine-tuning epochs); other flags still apply")
    add("--dataset", choices=DATASETS, help="which data set (default: mnist)")
    add("--data", help="a data file or the folder holding it (default: $SDA_DATA, then the cache)")
    add("--n-train", type=int, help="use only the first N training rows")
    add("--n-valid", type=int, help="use only the first N validation rows")
    add("--n-test", type=int, help="use only the first N test rows")
    add("--hidden-layers", type=int, nargs="+", help="hidden layer sizes (default: 1000 1000 1000)")
    add("--corruption-levels", type=float, nargs="+",
        help="masking noise per layer (default: the preset's first levels)")
    add("--pretrain-epochs", type=int, help="pre-training passes per layer (default: 15)")
    add("--pretrain-lr", type=float, help="pre-training learning rate (default: 0.02)")
    add("--finetune-epochs", type=int,
        help="fine-tuning passes, the same for both arms (default: 10)")
    add("--finetune-lr", type=float, help="fine-tuning learning rate (default: 2.0)")
    add("--batch-size", type=int, help="minibatch size of both phases (default: 20)")
    add("--eval-every", type=int,
        help="fine-tuning iterations between two points of the curves (default: 500)")
    add("--seed", type=int, help="seed of the initial weights and the noise (default: 89677)")
    add("--out", help="output folder (default: runs/DATE-TIME-baseline)")
    return parser


def settings_from_args(args):
    """``(RunConfig, eval_every)``: the chosen preset with the flags applied."""
    name, extra = QUICK if args.quick else FULL
    given = {key: value for key, value in vars(args).items()
             if value is not None and key not in ("quick", "out", "batch_size")}
    if args.batch_size is not None:
        given.update(pretrain_batch_size=args.batch_size, finetune_batch_size=args.batch_size)
    values = {**extra, **given}
    eval_every = values.pop("eval_every")
    if eval_every < 1:
        raise ValueError(f"--eval-every must be a positive number of iterations, got {eval_every}")
    layers = tuple(values.get("hidden_layers", preset(name).hidden_layers))
    levels = values.get("corruption_levels", preset(name).corruption_levels[: len(layers)])
    values.update(hidden_layers=layers, corruption_levels=tuple(levels), progress=False)
    return preset(name, **values).check(), eval_every


def finetune_arm(model, shared, config, eval_every, arm):
    """Fine-tune for exactly ``config.finetune_epochs`` epochs; returns the
    curve points, the ``FinetuneResult`` and the wall time in seconds."""
    count = n_batches(shared[0][1].get_value(borrow=True).shape[0], config.finetune_batch_size)
    train_fn, valid_score, test_score = model.build_finetune_functions(
        shared, config.finetune_batch_size, config.finetune_lr, config.eval_batch_size,
        config.momentum, config.weight_decay)
    points, window = [], []
    started = time.perf_counter()

    def on_step(record):
        window.append(record["cost"])
        if record["iteration"] % eval_every == 0:
            point = {"arm": arm, "iteration": record["iteration"],
                     "epoch": record["iteration"] / count, "train_loss": float(np.mean(window)),
                     "test_accuracy": 1 - split_error(test_score),
                     "seconds": time.perf_counter() - started}
            window.clear()
            points.append(point)
            print(f"{ARMS[arm]:12s} iteration {point['iteration']:6d}  epoch {point['epoch']:6.2f}  "
                  f"loss {point['train_loss']:.4f}  test accuracy "
                  f"{100 * point['test_accuracy']:6.2f}%  {point['seconds']:7.1f}s", flush=True)

    # patience as long as the budget: early stopping must not end one arm sooner
    result = finetune_sgd(model, train_fn, valid_score, test_score, count,
                          max_epochs=config.finetune_epochs,
                          stopping=EarlyStopping(patience=config.finetune_epochs * count),
                          on_step=on_step)
    return points, result, time.perf_counter() - started


def summary_table(rows):
    lines = ["| arm | final test accuracy | best test accuracy on the curve "
             "| test accuracy at best validation | pre-training | fine-tuning |",
             "|" + " --- |" * 6]
    for row in rows:
        lines.append(
            f"| {ARMS[row['arm']]} | {100 * row['final']:.2f} % | {100 * row['best']:.2f} % "
            f"| {100 * row['at_best_valid']:.2f} % | {row['pretrain_seconds']:.1f} s "
            f"| {row['finetune_seconds']:.1f} s |")
    return "\n".join(lines)


def write_outputs(out, points, rows, header):
    with open(out / "baseline.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(points)
    (out / "baseline_summary.md").write_text(
        "# Pre-training against random initialisation\n\n" + header + "\n\n"
        + summary_table(rows) + "\n")
    for key, filename, label, scale, log_y in [
            ("train_loss", "baseline_loss.png", "training loss (mean of the last minibatches)",
             1, True),
            ("test_accuracy", "baseline_accuracy.png", "test accuracy (%)", 100, False)]:
        curves = {name: ([p["iteration"] for p in points if p["arm"] == arm],
                         [scale * p[key] for p in points if p["arm"] == arm])
                  for arm, name in ARMS.items()}
        plot_curves(curves, out / filename, "fine-tuning iterations (minibatches)", label,
                    title="Fine-tuning with and without pre-training", log_y=log_y)


def run_baseline(config, eval_every, out, command):
    """Train both arms and write the outputs into the folder ``out``; returns the summary rows."""
    dataset = load_dataset(config.dataset, config.data).subset(config.n_train, config.n_valid,
                                                              config.n_test)
    shared = [shared_dataset(s) for s in (dataset.train, dataset.valid, dataset.test)]
    sizes = "/".join(str(len(s.y)) for s in (dataset.train, dataset.valid, dataset.test))
    total = config.finetune_epochs * n_batches(len(dataset.train.y), config.finetune_batch_size)
    if eval_every > total:
        raise ValueError(f"--eval-every {eval_every} is more than the {total} fine-tuning "
                         "iterations: the curves would be empty")
    out = RunDir(out).path
    header = (f"Command: `{command}`  \nData: {dataset.name}, train/valid/test = {sizes}; "
              f"hidden layers {' x '.join(map(str, config.hidden_layers))}; corruption "
              f"{', '.join(map(str, config.corruption_levels))}; batch size "
              f"{config.finetune_batch_size}; pre-training: {config.pretrain_epochs} epoch(s) per "
              f"layer at lr {config.pretrain_lr}; fine-tuning: {config.finetune_epochs} epoch(s) "
              f"({total} iterations) at lr {config.finetune_lr}, a point every {eval_every}; "
              f"seed {config.seed}.  \nBackend: {BACKEND}")
    print(header.replace("  \n", "\n"), f"\noutput folder: {out}", flush=True)

    points, rows = [], []
    for arm in ARMS:
        model = build_model(config, dataset)
        pretrain_seconds = 0.0
        if arm == "pretrained":
            started = time.perf_counter()
            pretrain(model, shared[0][0], config.pretrain_batch_size, config.pretrain_epochs,
                     config.pretrain_lr, cached=config.cached, momentum=config.momentum,
                     weight_decay=config.weight_decay)
            pretrain_seconds = time.perf_counter() - started
        save_params(model, out / f"{arm}_start.npz")
        curve, result, seconds = finetune_arm(model, shared, config, eval_every, arm)
        points += curve
        accuracies = [p["test_accuracy"] for p in curve]
        rows.append(dict(arm=arm, final=accuracies[-1], best=max(accuracies),
                         at_best_valid=1 - result.test_error, pretrain_seconds=pretrain_seconds,
                         finetune_seconds=seconds))
    write_outputs(out, points, rows, header)
    print(summary_table(rows), f"files in {out}", sep="\n")
    return rows


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)

    def action():
        config, eval_every = settings_from_args(args)
        out = args.out or Path("runs") / RunDir.default_name("baseline")
        run_baseline(config, eval_every, out,
                     " ".join(["python -m sda.experiments.baseline", *argv]))

    return exit_status(action)


if __name__ == "__main__":
    sys.exit(main())
