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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, cast

import numpy as np

from sda import engine
from sda.batching import n_batches
from sda.cli import (
    add_settings_flags,
    apply_mode,
    build_model,
    experiment_folder,
    given_settings,
    load_data,
    print_pretrain_epoch,
)
from sda.config import NETWORK_FLAGS, PRESETS, RunConfig, SettingError, setting
from sda.constraints import SGD_BATCH_SIZE, check_setting
from sda.data import Dataset, shared_dataset
from sda.errors import exit_status
from sda.finetune import FinetuneResult, MinibatchSGD, Monitor, PatienceRule, StepRecord, finetune
from sda.graph_types import TensorSharedVariable
from sda.plots import plot_curves
from sda.rundir import save_params
from sda.SdA import SdA
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

    def check(self) -> Self:
        """Check ``batch_size`` (under its own name), then every setting as ``RunConfig.check`` does.

        Returns
        -------
        BaselineConfig
            ``self``, unchanged.

        Raises
        ------
        SettingError
            The first setting that makes no sense, named as its flag is.
        """
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
    *NETWORK_FLAGS,
    "finetune_epochs",
    "finetune_lr",
    "batch_size",
    "eval_every_iterations",
    "seed",
    "out",
]


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m sda.experiments.baseline``: ``--quick`` and a flag per
    entry of ``FLAGS``.

    Returns
    -------
    argparse.ArgumentParser
        Flags not given are left out of the parsed namespace, so the preset fills them.
    """
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


def settings_from_args(args: argparse.Namespace) -> BaselineConfig:
    """The checked ``BaselineConfig``: the full or ``--quick`` preset with the flags laid over it.

    Without ``--corruption-levels``, each layer takes the preset's level for
    its depth.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed by :func:`build_parser`.

    Returns
    -------
    BaselineConfig
        Checked, with progress bars off.

    Raises
    ------
    SettingError
        A setting out of its range or choices.
    """
    values = {**(QUICK if args.quick else FULL), "progress": False}
    given = given_settings(args, BaselineConfig)
    if "hidden_layers" in given and "corruption_levels" not in given:
        levels = values.get("corruption_levels", RunConfig.corruption_levels)
        given["corruption_levels"] = levels[: len(given["hidden_layers"])]
    return BaselineConfig(**{**values, **given}).check()


def finetune_arm(
    model: SdA,
    shared: Sequence[tuple[TensorSharedVariable, TensorSharedVariable]],
    config: BaselineConfig,
    arm: str,
) -> tuple[list[dict[str, Any]], FinetuneResult, float]:
    """Fine-tune for exactly ``config.finetune_epochs`` epochs; returns the
    curve points, the ``FinetuneResult`` and the wall time in seconds.

    Parameters
    ----------
    model : SdA
        The arm's network, pre-trained or at its initial weights.
    shared : sequence of (TensorSharedVariable, TensorSharedVariable)
        ``(x, y)`` shared pairs of the training, validation and test sets.
    config : BaselineConfig
        Gives the batch size, learning rate, epochs and ``eval_every_iterations``.
    arm : str
        A key of ``ARMS``, recorded in each point and printed.

    Returns
    -------
    points : list of dict
        One every ``eval_every_iterations`` minibatches, with the ``COLUMNS``:
        the mean cost of the minibatches since the last point and the test accuracy.
    result : sda.finetune.FinetuneResult
        The best parameters measured are left in ``model``.
    seconds : float
        Fine-tuning's wall time, measuring included.

    Raises
    ------
    sda.errors.TrainingDiverged
        A cost or parameter is not finite.
    """
    batch_size = cast(int, config.finetune_batch_size)  # __post_init__ sets it to batch_size
    count = n_batches(shared[0][1].get_value(borrow=True).shape[0], batch_size)
    train_fn, valid_score, test_score = model.build_finetune_functions(
        shared,
        batch_size,
        config.finetune_lr,
        config.eval_batch_size,
        config.momentum,
        config.weight_decay,
    )
    points, window = [], []
    started = time.perf_counter()

    def on_step(record: StepRecord) -> None:
        window.append(record.cost)
        if record.iteration % config.eval_every_iterations == 0:
            point: dict[str, Any] = {
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
    step = MinibatchSGD(train_fn, shared[0][1].get_value(borrow=True).shape[0], batch_size)
    # a patience of every iteration never stops early
    monitor = Monitor(
        PatienceRule(config.finetune_epochs * count), model.params, valid_score.error, test_score.error
    )
    result = finetune(model, step, monitor, max_epochs=config.finetune_epochs, on_step=on_step)
    return points, result, time.perf_counter() - started


def summary_table(rows: Sequence[dict[str, Any]]) -> str:
    """The arms' results as a Markdown table, accuracies in percent.

    Parameters
    ----------
    rows : sequence of dict
        :func:`train_arms`' rows.

    Returns
    -------
    str
    """
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


def write_outputs(
    out: Path, points: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]], header: str
) -> None:
    """Write ``baseline.csv``, ``baseline_summary.md`` and the two plots into ``out``.

    Parameters
    ----------
    out : Path
        The output folder.
    points : sequence of dict
        Both arms' curve points (:func:`finetune_arm`).
    rows : sequence of dict
        :func:`train_arms`' rows.
    header : str
        Markdown that opens the summary (the command, the data, the settings).
    """
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


def run_baseline(config: BaselineConfig, command: str) -> list[dict[str, Any]]:
    """Train both arms and write the outputs into a new folder (``config.out``, or a dated one
    under runs/); returns the summary rows. Everything is checked before the folder is made.

    Parameters
    ----------
    config : BaselineConfig
        Checked settings.
    command : str
        The command line, quoted in ``baseline_summary.md``.

    Returns
    -------
    list of dict
        :func:`train_arms`' rows.

    Raises
    ------
    SettingError
        ``eval_every_iterations`` is more than the fine-tuning iterations.
    SdAError
        Data that cannot be loaded, an output folder that holds files, or an arm that diverged.
    """
    apply_mode(config.mode)
    dataset = load_data(config)
    batch_size = cast(int, config.finetune_batch_size)  # __post_init__ sets it to batch_size
    total = config.finetune_epochs * n_batches(len(dataset.train.y), batch_size)
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


def train_arms(
    config: BaselineConfig,
    dataset: Dataset,
    shared: Sequence[tuple[TensorSharedVariable, TensorSharedVariable]],
    out: Path,
    header: str,
) -> list[dict[str, Any]]:
    """Both arms, from the same seed; writes every output into ``out``.

    Parameters
    ----------
    config : BaselineConfig
        The experiment's settings.
    dataset : Dataset
        The data, which sizes the model.
    shared : sequence of (TensorSharedVariable, TensorSharedVariable)
        ``dataset``'s training, validation and test sets as shared ``(x, y)`` pairs.
    out : Path
        The output folder.
    header : str
        Markdown that opens the summary.

    Returns
    -------
    list of dict
        One per arm: ``arm``, the ``final`` and ``best`` test accuracy on the
        curve, ``at_best_valid`` (the test accuracy at the best validation
        error) and the ``pretrain_seconds`` and ``finetune_seconds``.
    """
    points, rows = [], []
    for arm in ARMS:
        model = build_model(config, dataset)
        pretrain_seconds = 0.0
        if arm == "pretrained":
            started = time.perf_counter()
            pretrain(
                model,
                shared[0][0],
                **config.pretrain_arguments(),
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m sda.experiments.baseline`` with these arguments.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    int
        The exit status: 0 when done, 2 for bad input or an arm that diverged.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    command = " ".join(["python -m sda.experiments.baseline", *argv])
    return exit_status(lambda: run_baseline(settings_from_args(args), command))


if __name__ == "__main__":
    sys.exit(main())
