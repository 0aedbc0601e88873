"""``python -m sda.experiments.gradual``: stacked against gradual training of a deep DAE.

Part 1 trains the first layer once, then the upper layers once per
stacked-vs-gradual fraction ``f`` (same seed, same update budget), and
scores each auto-encoder by its test reconstruction cross-entropy above the
data's own entropy (``sda.gradual.relative_cross_entropy``).
Part 2 starts classifiers from the pure stacked (f=1) and pure gradual (f=0)
auto-encoders, fine-tunes them with SGD on class-stratified labelled subsets
of several sizes (the same rows for both), and reports the test error at the
best validation point.

Writes ``gradual_fraction.{md,csv,json,png}``, ``gradual_classifier.{md,csv,json,png}``
and the auto-encoders' weights (``dae_f0.npz``, ``dae_f1.npz``, ...).

Each piece of training (the first layer, one fraction's upper layers, one
classifier) is a *stage*: :func:`run_stage` runs it, and with a row file it
saves a checkpoint as it goes and the stage's result when it ends, so that
``sda.reproduce gradual`` can stop anywhere and continue with the same
numbers. This command runs every stage once, without checkpoints.
"""

import argparse
import csv
import dataclasses
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
from sklearn.model_selection import train_test_split

from sda import engine
from sda.batching import n_batches
from sda.checkpoint import Checkpoint, Progress
from sda.cli import (
    add_settings_flags,
    apply_mode,
    build_model,
    check_batch_sizes,
    experiment_folder,
    load_data,
    settings_from_args,
)
from sda.config import CommandSettings, SettingError, setting
from sda.constraints import MAX_SEED
from sda.data import Dataset, Split, shared_dataset
from sda.errors import exit_status
from sda.finetune import MinibatchSGD, Monitor, PatienceRule, finetune
from sda.gradual import data_entropy, relative_cross_entropy, train_gradual
from sda.graph_types import TensorSharedVariable
from sda.plots import plot_curves
from sda.rundir import atomic_write, load_params, read_text, save_params
from sda.SdA import SdA

ARMS = {1.0: "stacked (f=1)", 0.0: "gradual (f=0)"}  # the classifiers' starting points
FINETUNE_SAVE_EVERY = 5000  # a resumable classifier's minibatch steps between saves


@dataclass
class GradualSettings(CommandSettings):
    """Every setting of the experiment; the data flags come from ``CommandSettings``.

    Each field's help is its flag's (``python -m sda.experiments.gradual --help``).
    Training budgets are in epochs over the ``n_train`` auto-encoder rows
    (``first_epochs`` for the first layer, ``upper_budget`` layer-epochs for
    each upper layer, split stacked/gradual by each of the ``fractions``);
    ``sizes`` are the labelled rows of the classifiers.
    """

    n_train: int = setting(10_000, "unlabelled rows the auto-encoders train on", metavar="N")
    n_valid: int | None = setting(
        5000, "validation rows for the classifiers' early stopping", default_text="all", metavar="N"
    )
    hidden_layers: tuple[int, ...] = setting(
        (500, 500), "hidden layer sizes, bottom first (two or more)", metavar="SIZE"
    )
    corruption: float = setting(0.15)
    first_epochs: float = setting(8.0)
    upper_budget: float = setting(12.0)
    fractions: tuple[float, ...] = setting((0.0, 0.25, 0.5, 0.75, 1.0), metavar="F")
    lr: float = setting(0.01)
    momentum: float = setting(0.9, "auto-encoder momentum, in [0, 1)")
    weight_decay: float = setting(1e-5, "auto-encoder weight decay on weight matrices")
    batch_size: int = setting(20, "minibatch size of every phase")
    sizes: tuple[int, ...] = setting((1000, 5000, 10_000, 50_000), metavar="N")
    finetune_lr: float = setting(0.1, "classifier learning rate")
    finetune_epochs: int = setting(30, "most fine-tuning epochs per classifier")
    finetune_examples: int = setting(100_000)
    seed: int = setting(1234, f"seed of weights, noise and subsets, 0 to {MAX_SEED}")
    out: str | None = setting(
        None,
        "output folder; refused if it already holds files, so an earlier result is never overwritten",
        default_text="a new folder runs/DATE-TIME-gradual",
    )

    # what sda.cli.build_model reads: the same seed everywhere, so every arm
    # starts from the same weights and noise
    tied, loss = True, "cross_entropy"

    @property
    def corruption_levels(self) -> tuple[float, ...]:
        """``corruption`` for every hidden layer, as ``sda.cli.build_model`` reads it."""
        return (self.corruption,) * len(self.hidden_layers)

    def check(self) -> Self:
        """Check every setting; sort ``fractions`` and drop repeats; return self.

        Returns
        -------
        GradualSettings
            ``self``, with ``fractions`` sorted.

        Raises
        ------
        SettingError
            A setting out of range, fewer than two hidden layers, or ``fractions``
            without both 0 and 1.
        """
        super().check()
        if len(self.hidden_layers) < 2:
            raise SettingError(
                "hidden_layers needs at least two layers: gradual training starts at the second"
            )
        self.fractions = tuple(sorted(set(map(float, self.fractions))))
        if not set(ARMS) <= set(self.fractions):
            raise SettingError("the classifiers start from f=0 and f=1: include both in --fractions")
        return self


FULL: dict = {}  # the dataclass defaults
QUICK = dict(
    hidden_layers=(40, 40),
    n_train=600,
    n_valid=300,
    n_test=500,
    first_epochs=1.0,
    upper_budget=2.0,
    fractions=(0.0, 0.5, 1.0),
    sizes=(200, 500),
    finetune_epochs=2,
    finetune_examples=1000,
)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m sda.experiments.gradual``: ``--quick`` and a flag per setting.

    Returns
    -------
    argparse.ArgumentParser
        Flags not given are left out of the parsed namespace, so the preset fills them.
    """
    parser = argparse.ArgumentParser(
        prog="python -m sda.experiments.gradual", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tiny end-to-end run (40 x 40 units, 600 rows, 1-2 epochs); other flags still apply",
    )
    add_settings_flags(parser, GradualSettings, {"default": FULL, "--quick": QUICK})
    return parser


def stratified_rows(y: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of ``size`` rows of ``y`` in the classes' proportions (all rows if ``size`` is all).

    Parameters
    ----------
    y : numpy.ndarray
        The labels, one per row.
    size : int
        Rows to pick, at most ``len(y)`` (and at least one per class unless it is all).
    seed : int
        Seeds scikit-learn's stratified split.

    Returns
    -------
    numpy.ndarray
        The row numbers, sorted.

    Raises
    ------
    ValueError
        ``size`` is too small to hold every class, or more than the rows.

    Examples
    --------
    >>> stratified_rows(np.array([0, 0, 1, 1, 1, 1]), 3, seed=0).size
    3
    """
    if size == len(y):
        return np.arange(len(y))
    rows, _ = train_test_split(np.arange(len(y)), train_size=size, stratify=y, random_state=seed)
    return np.sort(rows)


def print_epoch(prefix: str) -> Callable[[dict[str, Any]], None]:
    """An ``on_epoch`` for ``sda.gradual.train_gradual`` that prints each epoch as one line.

    Parameters
    ----------
    prefix : str
        Starts each line (e.g. ``"f=0.50"``).

    Returns
    -------
    callable
        ``report(record)`` for each epoch's record (a dict).
    """

    def report(record: dict[str, Any]) -> None:
        print(
            f"{prefix}  {record['phase']:7s} layer {record['layer']} epoch {record['epoch']:3d}  "
            f"cost {record['cost']:8.3f}  budget {record['budget']:5.2f}  "
            f"{record['seconds']:7.1f}s",
            flush=True,
        )

    return report


Work = Callable[[Progress | None, Checkpoint], dict[str, Any]]


def run_stage(
    row_file: Path | None, setup: Callable[[], tuple[SdA, Work]], save_every: int = 0
) -> dict[str, Any]:
    """One stage of training: ``model, work = setup()``, then ``work(progress, checkpoint)``
    returns the stage's result row.

    With a ``row_file`` the stage is resumable: a finished stage (its row
    file is there) is neither set up nor run again, and its row is read back;
    an unfinished one continues from ``<row_file stem>-checkpoint.npz``,
    which ``work`` keeps up to date through ``checkpoint``. The row is
    written (atomically) when ``work`` returns, and the checkpoint is then removed.

    Parameters
    ----------
    row_file : Path or None
        The stage's ``.json`` result; None runs the stage once, without checkpoints.
    setup : callable
        ``setup() -> (model, work)``: builds the model (a checkpoint then
        restores its parameters and generators) and ``work(progress,
        checkpoint) -> row``, which trains (``progress`` is None for a fresh
        start, else where the checkpoint stopped), saves what later stages
        read, and returns a JSON-ready dict.
    save_every : int, default 0
        Minibatch steps between saves, for loops that save at that interval
        (``sda.finetune``); 0: only where the loop saves on its own.

    Returns
    -------
    dict
        The stage's row.

    Raises
    ------
    SdAError
        A damaged row file or checkpoint, or one that does not fit ``model``.
    """
    if row_file is not None and row_file.is_file():
        try:
            return json.loads(read_text(row_file, "stage result"))
        except ValueError:
            raise SettingError(f"{row_file} is damaged: delete it to train that stage again") from None
    model, work = setup()
    if row_file is None:
        return work(None, Checkpoint())
    path = row_file.with_name(f"{row_file.stem}-checkpoint.npz")
    checkpoint = Checkpoint(path, model, every=save_every, fix=f"delete {path} to train that stage again")
    progress = checkpoint.load() if checkpoint.path.is_file() else None
    row = work(progress, checkpoint)
    payload = json.dumps(row, indent=2) + "\n"
    atomic_write(row_file, lambda f: f.write(payload.encode()))
    checkpoint.path.unlink(missing_ok=True)
    return row


def ae_training(settings: GradualSettings) -> dict[str, Any]:
    """The keyword arguments of ``sda.gradual.train_gradual`` every auto-encoder stage shares.

    Parameters
    ----------
    settings : GradualSettings
        The experiment's settings.

    Returns
    -------
    dict
        ``epochs_per_layer`` (``first_epochs``, then ``upper_budget`` per upper
        layer), ``batch_size``, ``learning_rate``, ``corruption``, ``momentum``
        and ``weight_decay``.
    """
    return dict(
        epochs_per_layer=[settings.first_epochs]
        + [settings.upper_budget] * (len(settings.hidden_layers) - 1),
        batch_size=settings.batch_size,
        learning_rate=settings.lr,
        corruption=settings.corruption,
        momentum=settings.momentum,
        weight_decay=settings.weight_decay,
    )


def first_layer_stage(
    settings: GradualSettings, dataset: Dataset, train_x: TensorSharedVariable, out: Path, resumable: bool
) -> dict[str, Any]:
    """Train the first layer, shared by every fraction, and save it as ``out/dae_layer0.npz``.

    Parameters
    ----------
    settings : GradualSettings
        The experiment's settings.
    dataset : Dataset
        Sizes the model.
    train_x : TensorSharedVariable
        The auto-encoders' training rows.
    out : Path
        The folder of the weights (and, resumable, of the stage's files).
    resumable : bool
        Checkpoint the stage and skip it once done (:func:`run_stage`).

    Returns
    -------
    dict
        ``records``: the epoch records of ``sda.gradual.train_gradual``.
    """

    def setup() -> tuple[SdA, Work]:
        model = build_model(settings, dataset)

        def work(progress: Progress | None, checkpoint: Checkpoint) -> dict[str, Any]:
            records = train_gradual(
                model,
                train_x,
                layers=[0],
                on_epoch=print_epoch("first layer"),
                progress=progress,
                checkpoint=checkpoint,
                **ae_training(settings),
            )
            save_params(model, out / "dae_layer0.npz")
            return dict(records=records)

        return model, work

    return run_stage(out / "dae_layer0.json" if resumable else None, setup)


def fraction_stage(
    settings: GradualSettings,
    dataset: Dataset,
    data: tuple[TensorSharedVariable, TensorSharedVariable],
    f: float,
    out: Path,
    resumable: bool,
) -> dict[str, Any]:
    """Train the upper layers with stacked fraction ``f`` from ``out/dae_layer0.npz``; save
    ``out/dae_f<f>.npz``.

    Parameters
    ----------
    settings : GradualSettings
        The experiment's settings.
    dataset : Dataset
        Sizes the model.
    data : (TensorSharedVariable, TensorSharedVariable)
        The auto-encoders' training rows and the test rows they are scored on.
    f : float
        The share of each upper layer's budget trained stacked.
    out : Path
        The folder of the weights (and, resumable, of the stage's files).
    resumable : bool
        Checkpoint the stage and skip it once done (:func:`run_stage`).

    Returns
    -------
    dict
        ``records`` (the epoch records), ``stacked_epochs`` and ``gradual_epochs``
        (epochs over the training rows) and ``test_relative_ce`` (nats per image
        above the test set's entropy).
    """
    train_x, test_x = data

    def setup() -> tuple[SdA, Work]:
        model = build_model(settings, dataset)
        load_params(model, out / "dae_layer0.npz")

        def work(progress: Progress | None, checkpoint: Checkpoint) -> dict[str, Any]:
            records = train_gradual(
                model,
                train_x,
                fraction_stacked=f,
                layers=range(1, len(settings.hidden_layers)),
                on_epoch=print_epoch(f"f={f:.2f}"),
                progress=progress,
                checkpoint=checkpoint,
                **ae_training(settings),
            )
            save_params(model, out / f"dae_f{f:g}.npz")
            count = n_batches(train_x.get_value(borrow=True).shape[0], settings.batch_size)
            epochs = {
                f"{phase}_epochs": sum(r["steps"] for r in records if r["phase"] == phase) / count
                for phase in ("stacked", "gradual")
            }
            return dict(records=records, **epochs, test_relative_ce=relative_cross_entropy(model, test_x))

        return model, work

    row = run_stage(out / f"dae_f{f:g}.json" if resumable else None, setup)
    print(
        f"f={f:.2f}  test cross-entropy above its minimum: {row['test_relative_ce']:.3f} nats per image",
        flush=True,
    )
    return row


def tune_stage(
    settings: GradualSettings,
    dataset: Dataset,
    data: tuple[TensorSharedVariable, TensorSharedVariable],
    f: float,
    epochs: float,
    out: Path,
) -> dict[str, Any]:
    """Tune every layer of ``out/dae_f<f>.npz`` jointly, noise on the input, for ``epochs``
    gradual epochs; save ``out/tuned_f<f>.npz``. Resumable (:func:`run_stage`).

    Joint tuning is gradual training of the top layer: the whole unrolled stack
    learns to denoise the input. Its budget is ``epochs`` times the depth in layer-epochs.

    Parameters
    ----------
    settings : GradualSettings
        The experiment's settings.
    dataset : Dataset
        Sizes the model.
    data : (TensorSharedVariable, TensorSharedVariable)
        The auto-encoders' training rows and the test rows they are scored on.
    f : float
        Which fraction's auto-encoder to tune.
    epochs : float
        Passes over the training rows (positive).
    out : Path
        The folder of the weights and of the stage's files.

    Returns
    -------
    dict
        ``records`` and ``test_relative_ce``, as :func:`fraction_stage`'s.
    """
    train_x, test_x = data

    def setup() -> tuple[SdA, Work]:
        model = build_model(settings, dataset)
        load_params(model, out / f"dae_f{f:g}.npz")
        depth = len(settings.hidden_layers)
        training = ae_training(settings)
        training["epochs_per_layer"] = training["epochs_per_layer"][:-1] + [epochs * depth]

        def work(progress: Progress | None, checkpoint: Checkpoint) -> dict[str, Any]:
            records = train_gradual(
                model,
                train_x,
                fraction_stacked=0.0,
                layers=[depth - 1],
                on_epoch=print_epoch(f"tune f={f:g}"),
                progress=progress,
                checkpoint=checkpoint,
                **training,
            )
            save_params(model, out / f"tuned_f{f:g}.npz")
            return dict(records=records, test_relative_ce=relative_cross_entropy(model, test_x))

        return model, work

    row = run_stage(out / f"tuned_f{f:g}.json", setup)
    print(f"tuned f={f:g}  test cross-entropy above its minimum: {row['test_relative_ce']:.3f}", flush=True)
    return row


def sweep_fractions(
    settings: GradualSettings, dataset: Dataset, out: Path, resumable: bool = False
) -> list[dict[str, Any]]:
    """Part 1: one auto-encoder per fraction; returns the table rows.

    The first layer is trained once and saved as ``dae_layer0.npz``; each
    fraction's auto-encoder starts from it and is saved as ``dae_f<f>.npz``.

    Parameters
    ----------
    settings : GradualSettings
        The experiment's settings.
    dataset : Dataset
        The data; the auto-encoders train on its first ``n_train`` training rows
        and are scored on its test rows.
    out : Path
        The output folder.
    resumable : bool, default False
        Checkpoint every stage and skip those already done (:func:`run_stage`).

    Returns
    -------
    list of dict
        One per fraction: ``fraction``, ``stacked_epochs`` and ``gradual_epochs``
        (epochs over the rows), ``test_relative_ce`` (nats per image above the
        data's entropy) and ``seconds``.
    """
    data = auto_encoder_data(settings, dataset)
    # the first layer is the same for every f: train it once
    first_records = first_layer_stage(settings, dataset, data[0], out, resumable)["records"]
    rows = []
    for f in settings.fractions:
        row = fraction_stage(settings, dataset, data, f, out, resumable)
        rows.append(
            dict(
                fraction=f,
                stacked_epochs=row["stacked_epochs"],
                gradual_epochs=row["gradual_epochs"],
                test_relative_ce=row["test_relative_ce"],
                seconds=first_records[-1]["seconds"] + row["records"][-1]["seconds"],
            )
        )
    return rows


def auto_encoder_data(
    settings: GradualSettings, dataset: Dataset
) -> tuple[TensorSharedVariable, TensorSharedVariable]:
    """The auto-encoders' training rows (the first ``n_train``) and test rows, as shared matrices.

    Parameters
    ----------
    settings : GradualSettings
        Gives ``n_train``.
    dataset : Dataset
        The data.

    Returns
    -------
    (TensorSharedVariable, TensorSharedVariable)
        The training and the test inputs.
    """
    first_rows = slice(settings.n_train)
    train_x, _ = shared_dataset(Split(dataset.train.x[first_rows], dataset.train.y[first_rows]))
    test_x, _ = shared_dataset(dataset.test)
    return train_x, test_x


def classifier_stage(
    settings: GradualSettings,
    dataset: Dataset,
    shared: list[tuple[TensorSharedVariable, TensorSharedVariable]],
    size: int,
    epochs: int,
    f: float,
    out: Path,
    resumable: bool,
) -> dict[str, Any]:
    """Fine-tune a classifier started from ``out/dae_f<f>.npz`` on ``size`` labelled rows.

    Every run gets all its ``epochs``; the parameters with the best validation
    error are kept and scored on the test rows.

    Parameters
    ----------
    settings : GradualSettings
        The experiment's settings.
    dataset : Dataset
        Sizes the model.
    shared : list of (TensorSharedVariable, TensorSharedVariable)
        The labelled training subset, the validation and the test rows.
    size : int
        Rows of the labelled subset.
    epochs : int
        Fine-tuning epochs.
    f : float
        Which fraction's auto-encoder starts the classifier.
    out : Path
        The folder of the weights (and, resumable, of the stage's files).
    resumable : bool
        Checkpoint the stage every ``FINETUNE_SAVE_EVERY`` steps and skip it
        once done (:func:`run_stage`).

    Returns
    -------
    dict
        ``test_error`` and ``valid_error`` (the best validation error), as fractions.
    """

    def setup() -> tuple[SdA, Work]:
        model = build_model(settings, dataset)
        load_params(model, out / f"dae_f{f:g}.npz")
        train_fn, valid_score, test_score = model.build_finetune_functions(
            shared, settings.batch_size, settings.finetune_lr, eval_batch_size=1000
        )
        count = n_batches(size, settings.batch_size)

        def work(progress: Progress | None, checkpoint: Checkpoint) -> dict[str, Any]:
            step = MinibatchSGD(train_fn, size, settings.batch_size)
            monitor = Monitor(PatienceRule(epochs * count), model.params, valid_score.error, test_score.error)
            result = finetune(
                model, step, monitor, max_epochs=epochs, progress=progress, checkpoint=checkpoint
            )
            return dict(test_error=result.test_error, valid_error=result.best_valid_error)

        return model, work

    row_file = out / f"classifier_n{size}_f{f:g}.json" if resumable else None
    row = run_stage(row_file, setup, save_every=FINETUNE_SAVE_EVERY)
    print(
        f"{size:6d} labelled  {ARMS[f]:14s} {epochs:3d} epochs  best valid error "
        f"{100 * row['valid_error']:5.2f}%  test error {100 * row['test_error']:5.2f}%",
        flush=True,
    )
    return row


def finetune_epochs(settings: GradualSettings, size: int) -> int:
    """Fine-tuning epochs on ``size`` rows: at most ``finetune_epochs`` and ``finetune_examples``
    examples seen, at least one.

    Parameters
    ----------
    settings : GradualSettings
        Gives ``finetune_epochs`` and ``finetune_examples``.
    size : int
        Labelled rows.

    Returns
    -------
    int
    """
    return max(1, min(settings.finetune_epochs, math.ceil(settings.finetune_examples / size)))


def classifier_curves(
    settings: GradualSettings, dataset: Dataset, out: Path, resumable: bool = False
) -> list[dict[str, Any]]:
    """Part 2: fine-tune classifiers from the f=1 and f=0 auto-encoders; returns the rows.

    Each labelled size gets at most ``finetune_epochs`` epochs and
    ``finetune_examples`` examples seen (at least one epoch), the best
    validation point kept.

    Parameters
    ----------
    settings : GradualSettings
        The experiment's settings.
    dataset : Dataset
        The data; each subset is stratified from its whole training split.
    out : Path
        The folder holding :func:`sweep_fractions`' ``dae_f0.npz`` and ``dae_f1.npz``.
    resumable : bool, default False
        Checkpoint every classifier and skip those already done (:func:`run_stage`).

    Returns
    -------
    list of dict
        One per size: ``size``, ``epochs``, each arm's ``*_test_error`` and
        ``*_valid_error`` (fractions) and ``improvement_pct`` (gradual over stacked).
    """
    valid, test = (shared_dataset(split) for split in (dataset.valid, dataset.test))
    rows = []
    for size in settings.sizes:
        picked = stratified_rows(dataset.train.y, size, settings.seed)
        train = shared_dataset(Split(dataset.train.x[picked], dataset.train.y[picked]))
        epochs = finetune_epochs(settings, size)
        row: dict[str, Any] = dict(size=size, epochs=epochs)
        for f in ARMS:
            result = classifier_stage(
                settings, dataset, [train, valid, test], size, epochs, f, out, resumable
            )
            key = "stacked" if f == 1 else "gradual"
            row[f"{key}_test_error"], row[f"{key}_valid_error"] = result["test_error"], result["valid_error"]
        row["improvement_pct"] = 100 * (1 - row["gradual_test_error"] / row["stacked_test_error"])
        rows.append(row)
    return rows


def markdown_table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    """A Markdown table.

    Parameters
    ----------
    header : sequence of str
        The column titles.
    lines : sequence of sequence of str
        The rows' cells, already formatted.

    Returns
    -------
    str

    Examples
    --------
    >>> print(markdown_table(["f", "CE"], [["0", "1.5"]]))
    | f | CE |
    | --- | --- |
    | 0 | 1.5 |
    """
    return "\n".join(
        ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        + ["| " + " | ".join(line) + " |" for line in lines]
    )


def fraction_table(rows: Sequence[dict[str, Any]]) -> str:
    """Part 1's rows as a Markdown table.

    Parameters
    ----------
    rows : sequence of dict
        :func:`sweep_fractions`' rows.

    Returns
    -------
    str
    """
    return markdown_table(
        ["f", "stacked epochs", "gradual epochs", "test CE above minimum (nats/image)", "training time"],
        [
            [
                f"{r['fraction']:g}",
                f"{r['stacked_epochs']:g}",
                f"{r['gradual_epochs']:g}",
                f"{r['test_relative_ce']:.3f}",
                f"{r['seconds']:.0f} s",
            ]
            for r in rows
        ],
    )


def classifier_table(rows: Sequence[dict[str, Any]]) -> str:
    """Part 2's rows as a Markdown table, errors in percent.

    Parameters
    ----------
    rows : sequence of dict
        :func:`classifier_curves`' rows.

    Returns
    -------
    str
    """
    return markdown_table(
        [
            "labelled examples",
            "epochs",
            "stacked (f=1) test error",
            "gradual (f=0) test error",
            "improvement",
        ],
        [
            [
                f"{r['size']}",
                f"{r['epochs']}",
                f"{100 * r['stacked_test_error']:.2f} %",
                f"{100 * r['gradual_test_error']:.2f} %",
                f"{r['improvement_pct']:+.1f} %",
            ]
            for r in rows
        ],
    )


def write_table(
    out: Path, name: str, title: str, header: str, table: str, rows: Sequence[dict[str, Any]]
) -> None:
    """``name``.md, .csv and .json from the same rows.

    Parameters
    ----------
    out : Path
        The output folder.
    name : str
        The files' name without extension.
    title : str
        The Markdown file's heading.
    header : str
        Markdown under the heading (the command, the data, the settings); also in the JSON.
    table : str
        The rows as a Markdown table.
    rows : sequence of dict
        At least one; the CSV's columns are the first row's keys.
    """
    text = f"# {title}\n\n{header}\n\n{table}\n"
    atomic_write(out / f"{name}.md", lambda f: f.write(text.encode()))
    with open(out / f"{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    payload = json.dumps({"header": header, "rows": rows}, indent=2) + "\n"
    atomic_write(out / f"{name}.json", lambda f: f.write(payload.encode()))


def run_gradual(settings: GradualSettings, command: str) -> None:
    """Both parts of the experiment, written into a new folder (``settings.out``, or a dated one
    under runs/). Everything is checked before the folder is made.

    Parameters
    ----------
    settings : GradualSettings
        Checked settings.
    command : str
        The command line, quoted in the tables' headers.

    Raises
    ------
    SettingError
        ``n_train``, a batch size or a labelled size is more than the training rows.
    SdAError
        Data that cannot be loaded, an output folder that holds files, or a
        training that diverged.
    """
    apply_mode(settings.mode)
    # n_train counts the auto-encoders' rows; the classifiers draw from the whole training split
    dataset = load_data(dataclasses.replace(settings, n_train=None))  # type: ignore[arg-type]  # None: all rows
    n_rows = len(dataset.train.y)
    if settings.n_train > n_rows:
        raise SettingError(f"--n-train must be 1 to {n_rows}, got {settings.n_train}")
    check_batch_sizes(settings, settings.n_train)  # the auto-encoders' rows
    if any(size > n_rows for size in settings.sizes):
        raise SettingError(f"--sizes must lie in 1..{n_rows}, got {settings.sizes}")
    header = (
        f"Command: `{command}`  \nData: {dataset.name}; auto-encoders train on the first "
        f"{settings.n_train} training rows; {len(dataset.valid.y)} validation and "
        f"{len(dataset.test.y)} test rows (test-set entropy {data_entropy(dataset.test.x):.3f} "
        f"nats per image).  \nNetwork {' x '.join(map(str, settings.hidden_layers))} sigmoid "
        f"units, tied decoders, masking noise {settings.corruption} on the input; batch "
        f"{settings.batch_size}, lr {settings.lr}, momentum {settings.momentum}, weight decay "
        f"{settings.weight_decay}; first layer {settings.first_epochs:g} epochs, each upper layer "
        f"{settings.upper_budget:g} layer-epochs; seed {settings.seed}.  \n"
        f"Classifiers: SGD lr {settings.finetune_lr}, at most {settings.finetune_epochs} epochs and "
        f"{settings.finetune_examples} examples seen, best validation point kept.  \n"
        f"Backend: {engine.BACKEND}"
    )
    with experiment_folder(settings.out, "gradual") as out:
        print(header.replace("  \n", "\n"), f"\noutput folder: {out.path}", flush=True)
        both_parts(settings, dataset, out.path, header)
    print(f"files in {out.path}")


def both_parts(settings: GradualSettings, dataset: Dataset, out: Path, header: str) -> None:
    """Part 1 (the fraction sweep) and part 2 (the classifiers), each written as it ends.

    Parameters
    ----------
    settings : GradualSettings
        The experiment's settings.
    dataset : Dataset
        The data (the whole training split).
    out : Path
        The output folder.
    header : str
        Markdown that opens each table's file.
    """
    fraction_rows = sweep_fractions(settings, dataset, out)
    write_table(
        out,
        "gradual_fraction",
        "Test reconstruction against the stacked fraction f",
        header,
        fraction_table(fraction_rows),
        fraction_rows,
    )
    plot_curves(
        {
            "test set": (
                [r["fraction"] for r in fraction_rows],
                [r["test_relative_ce"] for r in fraction_rows],
            )
        },
        out / "gradual_fraction.png",
        "f: share of the upper layers' budget spent stacked",
        "cross-entropy above its minimum (nats per image)",
        title="Stacked (f=1) to gradual (f=0) training, equal budgets",
    )
    print(fraction_table(fraction_rows), flush=True)
    classifier_rows = classifier_curves(settings, dataset, out)
    write_table(
        out,
        "gradual_classifier",
        "Classifier test error against labelled-set size",
        header,
        classifier_table(classifier_rows),
        classifier_rows,
    )
    plot_curves(
        {
            arm: (
                [r["size"] / 1000 for r in classifier_rows],
                [100 * r[f"{key}_test_error"] for r in classifier_rows],
            )
            for key, arm in zip(("stacked", "gradual"), ARMS.values())
        },
        out / "gradual_classifier.png",
        "labelled training examples (thousands)",
        "test error (%)",
        title="Classifiers started from each auto-encoder",
        log_y=True,
    )
    print(classifier_table(classifier_rows), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m sda.experiments.gradual`` with these arguments.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    int
        The exit status: 0 when done, 2 for bad input or a training that diverged.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)

    command = " ".join(["python -m sda.experiments.gradual", *argv])
    preset_values = QUICK if args.quick else FULL
    return exit_status(lambda: run_gradual(settings_from_args(args, GradualSettings, preset_values), command))


if __name__ == "__main__":
    sys.exit(main())
