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
from dataclasses import dataclass

import numpy as np

from sda import engine
from sda.batching import n_batches
from sda.cli import (
    add_settings_flags,
    apply_mode,
    build_model,
    exit_status,
    experiment_folder,
    given_settings,
    load_data,
    print_pretrain_epoch,
)
from sda.config import PRESETS, RunConfig, SettingError, setting
from sda.constraints import SGD_BATCH_SIZE, check_setting
from sda.data import shared_dataset
from sda.finetune import MinibatchSGD, Monitor, PatienceRule, finetune
from sda.plots import plot_curves
from sda.rundir import save_params
from sda.train import pretrain

ARMS = {"pretrained": "pre-trained", "random": "random init"}
COLUMNS = ["arm", "iteration", "epoch", "train_loss", "test_accuracy", "seconds"]


@dataclass
class BaselineConfig(RunConfig):
    """A run's settings plus the experiment's own; ``batch_size`` sets both phases' minibatches."""

    finetune_epochs: int = setting(1000, "fine-tuning epochs, the same for both arms (early stopping is off)")
    batch_size: int = setting(SGD_BATCH_SIZE)
    eval_every_iterations: int = setting(500)
    out: str | None = setting(
        None,
        "output folder; refused if it already holds files, so an earlier result is never overwritten",
        default_text="a new folder runs/DATE-TIME-baseline",
    )

    def __post_init__(self):
        self.pretrain_batch_size = self.finetune_batch_size = self.batch_size

    def check(self):
        check_setting("batch_size", self.batch_size)  # named as the user typed it, not as the phases' copies
        super().check()
        return self


# the preset behind the flags' defaults, for a full run (the classic preset, which
# docs/baseline.md measured) and for --quick
FULL = {**PRESETS["classic"], "preset": "classic", "finetune_epochs": 10, "eval_every_iterations": 500}
QUICK = {
    **PRESETS["demo"],
    "preset": "demo",
    "pretrain_epochs": 1,
    "finetune_epochs": 2,
    "eval_every_iterations": 40,
    "batch_size": 10,
}
FLAGS = [
    "dataset",
    "data",
    "n_train",
    "n_valid",
    "n_test",
    "mode",
    "hidden_layers",
    "corruption_levels",
    "pretrain_epochs",
    "pretrain_lr",
    "finetune_epochs",
    "finetune_lr",
    "batch_size",
    "eval_every_iterations",
    "seed",
    "out",
]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m sda.experiments.baseline", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tiny end-to-end run on the 8x8 digits (the demo preset, 1 pre-training and "
        "2 fine-tuning epochs); other flags still apply",
    )
    add_settings_flags(parser, BaselineConfig, {"default": FULL, "--quick": QUICK}, FLAGS)
    return parser


def settings_from_args(args):
    """The checked ``BaselineConfig``: the full or ``--quick`` preset with the flags laid over it.

    Without ``--corruption-levels``, each layer takes the preset's level for
    its depth.
    """
    values = {**(QUICK if args.quick else FULL), "progress": False}
    given = given_settings(args, BaselineConfig)
    if "hidden_layers" in given and "corruption_levels" not in given:
        levels = values.get("corruption_levels", RunConfig.corruption_levels)
        given["corruption_levels"] = levels[: len(given["hidden_layers"])]
    return BaselineConfig(**{**values, **given}).check()


def finetune_arm(model, shared, config, arm):
    """Fine-tune for exactly ``config.finetune_epochs`` epochs; returns the
    curve points, the ``FinetuneResult`` and the wall time in seconds."""
    count = n_batches(shared[0][1].get_value(borrow=True).shape[0], config.finetune_batch_size)
    train_fn, valid_score, test_score = model.build_finetune_functions(
        shared,
        config.finetune_batch_size,
        config.finetune_lr,
        config.eval_batch_size,
        config.momentum,
        config.weight_decay,
    )
    points, window = [], []
    started = time.perf_counter()

    def on_step(record):
        window.append(record.cost)
        if record.iteration % config.eval_every_iterations == 0:
            point = {
                "arm": arm,
                "iteration": record.iteration,
                "epoch": record.iteration / count,
                "train_loss": float(np.mean(window)),
                "test_accuracy": 1 - test_score.error(),
                "seconds": time.perf_counter() - started,
            }
            window.clear()
            points.append(point)
            print(
                f"{ARMS[arm]:12s} iteration {point['iteration']:6d}  epoch {point['epoch']:6.2f}  "
                f"loss {point['train_loss']:.4f}  test accuracy "
                f"{100 * point['test_accuracy']:6.2f}%  {point['seconds']:7.1f}s",
                flush=True,
            )

    # early stopping must not end one arm sooner
    step = MinibatchSGD(train_fn, shared[0][1].get_value(borrow=True).shape[0], config.finetune_batch_size)
    # a patience of every iteration never stops early
    monitor = Monitor(
        PatienceRule(config.finetune_epochs * count), model.params, valid_score.error, test_score.error
    )
    result = finetune(model, step, monitor, max_epochs=config.finetune_epochs, on_step=on_step)
    return points, result, time.perf_counter() - started


def summary_table(rows):
    lines = [
        "| arm | final test accuracy | best test accuracy on the curve "
        "| test accuracy at best validation | pre-training | fine-tuning |",
        "|" + " --- |" * 6,
    ]
    for row in rows:
        lines.append(
            f"| {ARMS[row['arm']]} | {100 * row['final']:.2f} % | {100 * row['best']:.2f} % "
            f"| {100 * row['at_best_valid']:.2f} % | {row['pretrain_seconds']:.1f} s "
            f"| {row['finetune_seconds']:.1f} s |"
        )
    return "\n".join(lines)


def write_outputs(out, points, rows, header):
    with open(out / "baseline.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(points)
    (out / "baseline_summary.md").write_text(
        "# Pre-training against random initialisation\n\n" + header + "\n\n" + summary_table(rows) + "\n"
    )
    for key, filename, label, scale, log_y in [
        ("train_loss", "baseline_loss.png", "training loss (mean of the last minibatches)", 1, True),
        ("test_accuracy", "baseline_accuracy.png", "test accuracy (%)", 100, False),
    ]:
        curves = {
            name: (
                [p["iteration"] for p in points if p["arm"] == arm],
                [scale * p[key] for p in points if p["arm"] == arm],
            )
            for arm, name in ARMS.items()
        }
        plot_curves(
            curves,
            out / filename,
            "fine-tuning iterations (minibatches)",
            label,
            title="Fine-tuning with and without pre-training",
            log_y=log_y,
        )


def run_baseline(config, command):
    """Train both arms and write the outputs into a new folder (``config.out``, or a dated one
    under runs/); returns the summary rows. Everything is checked before the folder is made."""
    apply_mode(config.mode)
    dataset = load_data(config)
    total = config.finetune_epochs * n_batches(len(dataset.train.y), config.finetune_batch_size)
    if config.eval_every_iterations > total:
        raise SettingError(
            f"--eval-every-iterations {config.eval_every_iterations} is more than the {total} "
            "fine-tuning iterations: the curves would be empty"
        )
    shared = [shared_dataset(s) for s in (dataset.train, dataset.valid, dataset.test)]
    sizes = "/".join(str(len(s.y)) for s in (dataset.train, dataset.valid, dataset.test))
    header = (
        f"Command: `{command}`  \nData: {dataset.name}, train/valid/test = {sizes}; "
        f"hidden layers {' x '.join(map(str, config.hidden_layers))}; corruption "
        f"{', '.join(map(str, config.corruption_levels))}; batch size "
        f"{config.finetune_batch_size}; pre-training: {config.pretrain_epochs} epoch(s) per "
        f"layer at lr {config.pretrain_lr}; fine-tuning: {config.finetune_epochs} epoch(s) "
        f"({total} iterations) at lr {config.finetune_lr}, a point every "
        f"{config.eval_every_iterations} iterations; seed {config.seed}.  \nBackend: {engine.BACKEND}"
    )
    with experiment_folder(config.out, "baseline") as out:
        print(header.replace("  \n", "\n"), f"\noutput folder: {out.path}", flush=True)
        rows = train_arms(config, dataset, shared, out.path, header)
    print(summary_table(rows), f"files in {out.path}", sep="\n")
    return rows


def train_arms(config, dataset, shared, out, header):
    """Both arms, from the same seed; writes every output into ``out``."""
    points, rows = [], []
    for arm in ARMS:
        model = build_model(config, dataset)
        pretrain_seconds = 0.0
        if arm == "pretrained":
            started = time.perf_counter()
            pretrain(
                model,
                shared[0][0],
                config.pretrain_batch_size,
                config.pretrain_epochs,
                config.pretrain_lr,
                cached=config.cached,
                momentum=config.momentum,
                weight_decay=config.weight_decay,
                on_epoch=print_pretrain_epoch,
            )
            pretrain_seconds = time.perf_counter() - started
        save_params(model, out / f"{arm}_start.npz")
        curve, result, seconds = finetune_arm(model, shared, config, arm)
        points += curve
        accuracies = [p["test_accuracy"] for p in curve]
        rows.append(
            dict(
                arm=arm,
                final=accuracies[-1],
                best=max(accuracies),
                at_best_valid=1 - result.test_error,
                pretrain_seconds=pretrain_seconds,
                finetune_seconds=seconds,
            )
        )
    write_outputs(out, points, rows, header)
    return rows


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    command = " ".join(["python -m sda.experiments.baseline", *argv])
    return exit_status(lambda: run_baseline(settings_from_args(args), command))


if __name__ == "__main__":
    sys.exit(main())
