"""``python -m sda.reproduce NAME``: rebuild a published figure and set it beside the original.

Each reproduction writes into its own folder (``--out``) and can be stopped
and started again: a second call with the same settings continues from the
checkpoints where the first one stopped, and skips the parts already done.
A folder made with other settings is refused, so one folder never mixes two
protocols, and so is a second process on a folder another one is working in.

``filters``
    The dA tutorial's filter picture: one denoising auto-encoder with 500
    hidden units, trained on MNIST's 50,000 training images for 15 epochs
    at learning rate 0.1 in minibatches of 20, once without corruption and
    once with 30 % masking noise; the first 100 filters of each are drawn
    side by side (``filters.png``).

``tutorial``
    The SdA tutorial's own run, ``python -m sda.run --preset tutorial`` in
    the folder's ``run/``: three layers of 1,000 units, one example per
    step, pre-training at 0.001 for 15 epochs per layer, fine-tuning at 0.1
    with a patience of 10 epochs. Its errors, epochs and minutes are set
    beside the tutorial's (``tutorial.md``, ``tutorial.json``), with the
    binomial standard error of the test error.

``gradual``
    Kalmanovich & Chechik's MNIST experiment (Figures 3a and 4 and the
    numbers of section 4.1) at the paper's budgets, through the stages of
    ``sda.experiments.gradual``. For each of 3 random splits of the 60,000
    training and validation images into 50,000 training and 10,000
    validation rows (seeds 1234, 1235, 1236): the first 1,000-unit layer
    for 50 epochs (15 % masking noise); the second for a budget of 80
    gradual epochs (160 layer-epochs) at each stacked fraction f = 0, 0.25,
    0.5, 0.75, 1; 80 more gradual epochs of joint tuning of the f=0 and
    f=1 auto-encoders, whose test cross-entropy above its minimum is set
    beside the paper's 9.61 ± 0.06 and 10.38 ± 0.06 nats per image; and
    classifiers started from f=0 and f=1 on stratified labelled sets of
    1,000 to 50,000 rows (at most 50 epochs and 500,000 examples seen, the
    best validation point kept). Each stage lives in ``split-<k>/``: a
    checkpoint while it trains (auto-encoders at the end of every pass,
    classifiers every 5,000 minibatches) and a ``.json`` row when done.
    ``gradual.md``, ``gradual.json``, ``gradual_fraction.png`` and
    ``gradual_classifier.png`` are rewritten after every part, from the
    stages finished so far (mean ± sample sd over the splits done, and the
    stages still missing).

    **Wall time on this 2-core machine** (measured with 300 minibatches of
    20 per stage on real MNIST, with other jobs running, load about 3):
    a first-layer epoch 20.5 s (8.2 ms a step), a stacked second-layer
    epoch 35.3 s (14.1 ms), a gradual epoch 78.6 s (31.5 ms; 2
    layer-epochs), a fine-tuning step 12.8 ms (32 s per 50,000 examples)
    and a 10,000-row validation 0.9 s. Per split: the first layer 17 min;
    the five fractions 94 to 105 min each, 8.3 h together; the joint
    tuning 2 x 105 min, 3.5 h; the 12 classifiers (1.9 million examples
    per arm) about 50 min. About 13 hours per split, **39 hours** for the
    three, so the reproduction is meant to be run in several sittings:
    stop it at any point and run the same command again.

``hinton``
    Hinton & Salakhutdinov (2006)'s classification protocol (a
    784-500-500-2000-10 network, all 60,000 training images, a fixed budget
    and no early stopping) for mini-batch CG and for SGD, from one SdA
    pre-training per seed; ``sda.experiments.hinton`` has the details, the
    timings and the budget.

``writers``
    Whether mini-batch CG's validation/test gap comes from which writers
    validation sees: the default comparison's sgd and cg-hs2006 arms,
    validated on the validation rows and on either random half of the test
    rows, from one pre-training (``sda.experiments.writers``).
"""

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from sda import engine
from sda.checkpoint import Checkpoint, Progress
from sda.cli import add_settings_flags, apply_mode, claim_folder, load_data, settings_from_args
from sda.config import PRESETS, CommandSettings, RunConfig, SettingError, setting
from sda.constraints import MAX_SEED
from sda.data import Dataset, Split, shared_dataset
from sda.errors import exit_status
from sda.experiments.gradual import (
    ARMS,
    GradualSettings,
    auto_encoder_data,
    classifier_curves,
    markdown_table,
    sweep_fractions,
    tune_stage,
)
from sda.experiments.hinton import HintonSettings, reproduce_hinton
from sda.experiments.writers import WritersSettings, reproduce_writers
from sda.pictures import tile_images
from sda.plots import plot_error_bars
from sda.run import run as run_sda
from sda.rundir import atomic_write, read_text
from sda.SdA import SdA
from sda.train import pretrain

CHECKPOINT_EVERY = 5000  # minibatch steps between saves: a few per epoch of full MNIST


@dataclass
class FiltersSettings(CommandSettings):
    """The dA tutorial's settings (its ``test_dA``); the data flags come from ``CommandSettings``."""

    n_hidden: int = setting(500, "hidden units of the auto-encoder")
    corruption_levels: tuple[float, ...] = setting(
        (0.0, 0.3), "masking-noise levels to train, one auto-encoder each, in [0, 1)", metavar="LEVEL"
    )
    epochs: int = setting(15)
    learning_rate: float = setting(0.1)
    batch_size: int = setting(20, "minibatch size")
    seed: int = setting(123, f"seed of the initial weights and the noise, 0 to {MAX_SEED}")
    n_filters: int = setting(100)
    out: str = setting("runs/reproduce-filters", "folder of this reproduction; run again to continue")

    def check(self) -> "FiltersSettings":
        """Check every setting, and that the filters drawn are at most the hidden units.

        Returns
        -------
        FiltersSettings
            ``self``, so a caller may chain it.

        Raises
        ------
        SettingError
            Naming the first setting that makes no sense.
        """
        super().check()  # each field against sda.constraints
        if self.n_filters > self.n_hidden:
            raise SettingError(
                f"n_filters {self.n_filters} is more than the {self.n_hidden} hidden units: "
                f"draw at most {self.n_hidden}"
            )
        return self


def train_filters(
    settings: FiltersSettings, level: float, train_x, n_ins: int, n_outs: int, folder: Path
) -> tuple[np.ndarray, dict]:
    """Train (or finish training) one auto-encoder.

    The state is saved to ``folder/checkpoint.npz`` every ``CHECKPOINT_EVERY``
    steps and at the end, so a later call resumes from it exactly.

    Parameters
    ----------
    settings : FiltersSettings
        Its size, epochs, learning rate, minibatch and seed.
    level : float
        The masking-noise level.
    train_x : shared variable
        The training images, one per row.
    n_ins, n_outs : int
        Pixels per image and classes (the unused softmax layer's size).
    folder : Path
        Where its checkpoint lives.

    Returns
    -------
    weights : numpy.ndarray
        The encoder's ``W``, one filter per column.
    report : dict
        ``corruption``, each epoch's mean cost and the training minutes.
    """
    folder.mkdir(exist_ok=True)
    model = SdA(
        np.random.RandomState(settings.seed),
        n_ins=n_ins,
        hidden_layers_sizes=(settings.n_hidden,),
        n_outs=n_outs,
        corruption_levels=(level,),
    )
    checkpoint = Checkpoint(
        folder / "checkpoint.npz",
        model,
        every=CHECKPOINT_EVERY,
        fix=f"delete the folder {folder} to train this auto-encoder again",
    )
    progress = checkpoint.load() if checkpoint.path.is_file() else Progress()
    if progress.layer < model.n_layers:
        label = f"corruption {100 * level:g} %"

        def report(record):
            print(f"{label}: training epoch {record['epoch']}, cost {record['cost']:.4f}", flush=True)

        pretrain(
            model,
            train_x,
            settings.batch_size,
            settings.epochs,
            settings.learning_rate,
            progress=progress,
            checkpoint=checkpoint,
            on_epoch=report,
        )
    costs = progress.pretrain_history[0]
    return model.dA_layers[0].W.get_value(), {
        "corruption": level,
        "epoch_costs": costs,
        "minutes": progress.seconds["pretrain"] / 60,
    }


def save_filter_figure(panels: dict, image_shape: tuple, n: int, path: Path) -> None:
    """Draw the first ``n`` filters (columns of each weight matrix) of every panel side by side.

    Parameters
    ----------
    panels : dict
        Title -> weight matrix (one filter per column).
    image_shape : tuple
        ``(height, width)`` of a filter drawn as an image.
    n : int
        Filters drawn per panel.
    path : Path
        The grey-level PNG written.
    """
    figure = Figure(figsize=(4.2 * len(panels), 4.6), layout="constrained")
    canvas = FigureCanvasAgg(figure)
    for axes, (title, weights) in zip(np.atleast_1d(figure.subplots(1, len(panels))), panels.items()):
        axes.imshow(
            tile_images(weights[:, :n].T, image_shape), cmap="gray", vmin=0, vmax=1, interpolation="nearest"
        )
        axes.set_title(title)
        axes.set_axis_off()
    canvas.draw()
    # grey levels only: one byte per pixel keeps the committed picture small
    Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("L").save(path, optimize=True)


def reproduce_filters(settings: FiltersSettings, command: str) -> dict:
    """The ``filters`` reproduction.

    Parameters
    ----------
    settings : FiltersSettings
        Checked settings.
    command : str
        The command line, recorded in the report.

    Returns
    -------
    dict
        The report also written as ``filters.json``: each model's epoch
        costs and minutes.
    """
    apply_mode(settings.mode)
    dataset = load_data(settings)
    side = int(round(dataset.n_features**0.5))
    if side * side != dataset.n_features:
        raise SettingError(f"the filters are drawn as square images: {settings.dataset} rows are not")
    out = Path(settings.out)
    with claim_folder(out, settings) as resumed:
        print(
            f"sda: {engine.BACKEND}\ndata: {dataset.name}, {len(dataset.train.y)} training rows\n"
            f"{'continuing' if resumed else 'writing'} {out}",
            flush=True,
        )
        train_x = shared_dataset(dataset.train)[0]
        started = time.perf_counter()
        panels, reports = {}, []
        for level in settings.corruption_levels:
            weights, report = train_filters(
                settings,
                level,
                train_x,
                dataset.n_features,
                dataset.n_classes,
                out / f"corruption-{level:.2f}",
            )
            panels[f"corruption {100 * level:g} %"] = weights
            reports.append(report)
        save_filter_figure(panels, (side, side), settings.n_filters, out / "filters.png")
        result = {
            "command": command,
            "backend": engine.BACKEND,
            "models": reports,
            "seconds_this_call": time.perf_counter() - started,
        }
        atomic_write(out / "filters.json", lambda f: f.write(json.dumps(result, indent=2).encode()))
        print(f"filters in {out / 'filters.png'}")
        return result


# What the tutorial's text reports for its run (batch 1, on a Xeon E5430 at 2.66 GHz with GotoBLAS).
TUTORIAL_PUBLISHED = {
    "best_valid_error": 0.0139,
    "test_error": 0.0130,
    "finetune_epochs_run": 36,
    "pretrain_minutes": 585.01,
    "finetune_minutes": 444.2,
}


@dataclass
class TutorialSettings(CommandSettings):
    """Where the tutorial's run goes; the data flags (for a smaller trial) come from ``CommandSettings``."""

    out: str = setting("runs/reproduce-tutorial", "folder of this reproduction; run again to continue")


def binomial_standard_error(error: float, n: int) -> float:
    """The standard error of an error rate measured on ``n`` independent examples.

    Parameters
    ----------
    error : float
        The measured error rate, in [0, 1].
    n : int
        How many examples it was measured on.

    Returns
    -------
    float
        ``sqrt(error (1 - error) / n)``.

    Examples
    --------
    >>> round(binomial_standard_error(0.013, 10_000), 5)
    0.00113
    """
    return math.sqrt(error * (1 - error) / n)


def write_tutorial_report(out: Path, command: str, summary: dict, n_test: int) -> dict:
    """Set the finished run's figures beside the tutorial's: ``tutorial.json`` and ``tutorial.md``.

    Parameters
    ----------
    out : Path
        The reproduction's folder.
    command : str
        The command line, recorded in the report.
    summary : dict
        The run's ``summary.json``.
    n_test : int
        Test images, for the binomial standard error.

    Returns
    -------
    dict
        The report written to ``tutorial.json``.
    """
    ours = {
        "best_valid_error": summary["best_valid_error"],
        "test_error": summary["test_error"],
        "test_error_standard_error": binomial_standard_error(summary["test_error"], n_test),
        "finetune_epochs_run": summary["finetune_epochs_run"],
        "best_epoch": summary["best_epoch"],
        "pretrain_minutes": summary["seconds"]["pretrain"] / 60,
        "finetune_minutes": summary["seconds"]["finetune"] / 60,
    }
    result = {
        "command": command,
        "published": TUTORIAL_PUBLISHED,
        "ours": ours,
        "backend": summary["backend"],
    }
    atomic_write(out / "tutorial.json", lambda f: f.write(json.dumps(result, indent=2).encode()))
    published = TUTORIAL_PUBLISHED
    lines = [
        f"Command: `{command}`",
        "",
        "| | the tutorial | ours |",
        "| --- | --- | --- |",
        f"| best validation error | {100 * published['best_valid_error']:.2f} % | "
        f"{100 * ours['best_valid_error']:.2f} % |",
        f"| test error (± binomial s.e.) | {100 * published['test_error']:.2f} % | "
        f"{100 * ours['test_error']:.2f} ± {100 * ours['test_error_standard_error']:.2f} % |",
        f"| fine-tuning epochs run | {published['finetune_epochs_run']} | {ours['finetune_epochs_run']} "
        f"(best model at epoch {ours['best_epoch']}) |",
        f"| pre-training | {published['pretrain_minutes']:.0f} min | {ours['pretrain_minutes']:.1f} min |",
        f"| fine-tuning | {published['finetune_minutes']:.0f} min | {ours['finetune_minutes']:.1f} min |",
    ]
    (out / "tutorial.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[2:]))
    return result


def reproduce_tutorial(settings: TutorialSettings, command: str) -> dict:
    """The ``tutorial`` reproduction: the run, started, continued or only reported.

    Parameters
    ----------
    settings : TutorialSettings
        Checked settings.
    command : str
        The command line, recorded in the report.

    Returns
    -------
    dict
        The published figures beside ours, also written as ``tutorial.json``
        (and as a table in ``tutorial.md``).
    """
    out = Path(settings.out)
    data = {
        name: getattr(settings, name) for name in ("dataset", "data", "n_train", "n_valid", "n_test", "mode")
    }
    config = RunConfig(
        **{**PRESETS["tutorial"], **data}, preset="tutorial", out=str(out), name="run", progress=False
    )
    config.check()
    with claim_folder(out, settings):
        folder = out / "run"
        summary_file = folder / "summary.json"
        done = summary_file.is_file() and json.loads(read_text(summary_file)).get("status") == "done"
        if not done:
            run_sda(config, resume_dir=folder if (folder / "config.json").is_file() else None)
        summary = json.loads(read_text(summary_file, "run folder"))
        return write_tutorial_report(out, command, summary, len(load_data(config).test.y))


# What Kalmanovich & Chechik report for MNIST: test cross-entropy above its minimum after the
# sweep and a further 80 epochs of joint tuning (section 4.1), mean ± sd over 3 splits.
GRADUAL_PUBLISHED_TUNED = {1.0: (10.38, 0.06), 0.0: (9.61, 0.06)}
GRADUAL_PUBLISHED_IMPROVEMENT_PCT = 7.39
# Figure 4's sizes are drawn, not written, in the paper's text: these span its axis up to the
# full training split, where the paper finds the gradual advantage fading.
GRADUAL_SIZES = (1000, 2000, 5000, 10_000, 20_000, 50_000)


@dataclass
class GradualReproductionSettings(GradualSettings):
    """Kalmanovich & Chechik's MNIST experiment (Figures 3a and 4) at the paper's budgets.

    Each of ``splits`` random train/validation splits of the training and
    validation rows (seeds ``seed``, ``seed + 1``, ...) gets the whole
    experiment: the first layer, every fraction's upper layers, the joint
    tuning of f=0 and f=1, and the classifiers.
    """

    n_train: int | None = setting(  # type: ignore[assignment]
        None,
        "unlabelled rows the auto-encoders train on, from each split's training rows",
        default_text="all",
        metavar="N",
    )
    n_valid: int | None = setting(
        10_000,
        "validation rows of each split, drawn at random from the training and validation rows; "
        "the rest are its training rows",
        metavar="N",
    )
    hidden_layers: tuple[int, ...] = setting(
        (1000, 1000), "hidden layer sizes, bottom first (two or more)", metavar="SIZE"
    )
    first_epochs: float = setting(50.0)
    upper_budget: float = setting(
        160.0, "each upper layer's budget in layer-epochs (the paper's 80 gradual epochs)"
    )
    tune_epochs: float = setting(80.0)
    splits: int = setting(3)
    sizes: tuple[int, ...] = setting(GRADUAL_SIZES, metavar="N")
    finetune_epochs: int = setting(50, "fine-tuning epochs per classifier, best validation point kept")
    finetune_examples: int = setting(
        500_000, "most examples seen per classifier, so large sets get fewer epochs"
    )
    seed: int = setting(
        1234,
        f"seed of split 0 (its rows, weights, noise and subsets); split k uses seed + k, 0 to {MAX_SEED}",
    )
    out: str = setting(  # type: ignore[assignment]
        "runs/reproduce-gradual", "folder of this reproduction; run again to continue"
    )

    def check(self) -> Self:
        """Check every setting, and that the split seeds stay in range.

        Returns
        -------
        GradualReproductionSettings
            ``self``, with ``fractions`` sorted.

        Raises
        ------
        SettingError
            Naming the first setting that makes no sense.
        """
        super().check()
        if self.seed + self.splits - 1 > MAX_SEED:
            raise SettingError(
                f"splits use seeds {self.seed} to {self.seed + self.splits - 1}: give a --seed "
                f"of at most {MAX_SEED - self.splits + 1}"
            )
        return self


def gradual_split(dataset: Dataset, n_valid: int, seed: int) -> Dataset:
    """One random train/validation split of ``dataset``'s training and validation rows together.

    Parameters
    ----------
    dataset : Dataset
        The data; its test rows are kept as they are.
    n_valid : int
        Validation rows of the split; the other rows, in random order, train.
    seed : int
        Seeds the permutation.

    Returns
    -------
    Dataset
        The split.

    Examples
    --------
    >>> from sda.data import load_dataset
    >>> split = gradual_split(load_dataset("digits"), 100, seed=0)
    >>> len(split.valid.y), len(split.train.y) + len(split.valid.y) == 1497
    (100, True)
    """
    x = np.concatenate([dataset.train.x, dataset.valid.x])
    y = np.concatenate([dataset.train.y, dataset.valid.y])
    order = np.random.RandomState(seed).permutation(len(y))
    valid, train = order[:n_valid], order[n_valid:]
    return dataclasses.replace(dataset, train=Split(x[train], y[train]), valid=Split(x[valid], y[valid]))


def mean_and_sd(values: list[float]) -> dict[str, Any]:
    """``n``, ``mean`` and the sample standard deviation ``sd`` (None below two values) of ``values``.

    Parameters
    ----------
    values : list of float
        The measurements, one per split (possibly none).

    Returns
    -------
    dict
        ``{"n", "mean", "sd", "values"}``; ``mean`` is None without values.

    Examples
    --------
    >>> mean_and_sd([1.0, 3.0])
    {'n': 2, 'mean': 2.0, 'sd': 1.4142135623730951, 'values': [1.0, 3.0]}
    """
    mean = float(np.mean(values)) if values else None
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return {"n": len(values), "mean": mean, "sd": sd, "values": values}


def _read_row(path: Path) -> dict[str, Any] | None:
    return json.loads(read_text(path, "stage result")) if path.is_file() else None


def gradual_report(settings: GradualReproductionSettings, command: str) -> dict[str, Any]:
    """Write ``gradual.json``, ``gradual.md`` and the two figures from the stages finished so far.

    Parameters
    ----------
    settings : GradualReproductionSettings
        The reproduction's settings (its folder is ``settings.out``).
    command : str
        The command line, recorded in the report.

    Returns
    -------
    dict
        The report written as ``gradual.json``: per fraction, tuned arm and
        classifier the per-split values with their mean and sd, the paper's
        numbers, and the stages still missing.
    """
    out = Path(settings.out)
    folders = [out / f"split-{split}" for split in range(settings.splits)]
    missing: list[str] = []

    def collect(name: str, what: str, key: str) -> dict[str, Any]:
        values = []
        for split, folder in enumerate(folders):
            row = _read_row(folder / f"{name}.json")
            if row is None:
                missing.append(f"split {split}: {what}")
            else:
                values.append(row[key])
        return mean_and_sd(values)

    missing.extend(
        f"split {split}: first layer"
        for split, folder in enumerate(folders)
        if not (folder / "dae_layer0.json").is_file()
    )
    fractions = [
        {"fraction": f, **collect(f"dae_f{f:g}", f"f={f:g}", "test_relative_ce")} for f in settings.fractions
    ]
    tuned = {}
    if settings.tune_epochs:
        for f in ARMS:
            tuned[f"{f:g}"] = {
                **collect(f"tuned_f{f:g}", f"joint tuning of f={f:g}", "test_relative_ce"),
                "paper_mean": GRADUAL_PUBLISHED_TUNED[f][0],
                "paper_sd": GRADUAL_PUBLISHED_TUNED[f][1],
            }
    classifiers = []
    for size in settings.sizes:
        arms = {
            f"{f:g}": collect(
                f"classifier_n{size}_f{f:g}", f"classifier on {size} rows from f={f:g}", "test_error"
            )
            for f in ARMS
        }
        stacked, gradual = arms["1"]["mean"], arms["0"]["mean"]
        improvement = 100 * (1 - gradual / stacked) if stacked and gradual is not None else None
        classifiers.append({"size": size, "arms": arms, "improvement_pct": improvement})
    report = {
        "command": command,
        "backend": engine.BACKEND,
        "unit": "test cross-entropy above the test set's own entropy, nats per image; "
        "classifier test error, a fraction",
        "fractions": fractions,
        "tuned": tuned,
        "published": {
            "tuned": {f"{f:g}": list(v) for f, v in GRADUAL_PUBLISHED_TUNED.items()},
            "improvement_pct": GRADUAL_PUBLISHED_IMPROVEMENT_PCT,
        },
        "classifiers": classifiers,
        "missing": missing,
    }
    atomic_write(out / "gradual.json", lambda f: f.write((json.dumps(report, indent=2) + "\n").encode()))
    (out / "gradual.md").write_text(gradual_markdown(settings, report))
    gradual_figures(out, report)
    return report


def _mean_sd(summary: dict[str, Any], scale: float = 1.0, digits: int = 2) -> str:
    if summary["mean"] is None:
        return "missing"
    text = f"{scale * summary['mean']:.{digits}f}"
    if summary["sd"] is not None:
        text += f" ± {scale * summary['sd']:.{digits}f}"
    return f"{text} (n={summary['n']})"


def gradual_markdown(settings: GradualReproductionSettings, report: dict[str, Any]) -> str:
    """The report as Markdown: the settings, the three tables beside the paper, what is missing.

    Parameters
    ----------
    settings : GradualReproductionSettings
        The reproduction's settings.
    report : dict
        :func:`gradual_report`'s dict.

    Returns
    -------
    str
    """
    lines = [
        "# Gradual against stacked training of a deep DAE (Kalmanovich & Chechik), MNIST",
        "",
        f"Command: `{report['command']}`  ",
        f"Data: {settings.dataset}; backend: {report['backend']}  ",
        f"Network {' x '.join(map(str, settings.hidden_layers))} sigmoid units, tied decoders, "
        f"{settings.corruption:g} masking noise on the input; batch {settings.batch_size}, lr {settings.lr}, "
        f"momentum {settings.momentum}, weight decay {settings.weight_decay}; first layer "
        f"{settings.first_epochs:g} epochs, upper budget {settings.upper_budget:g} layer-epochs "
        f"({settings.upper_budget / 2:g} gradual epochs at depth 2), joint tuning {settings.tune_epochs:g} "
        f"epochs; {settings.splits} splits (seeds {settings.seed} to {settings.seed + settings.splits - 1}).",
        "",
        "Cross-entropy: mean over test images of the summed pixel cross-entropy (nats) minus the test "
        "set's own entropy, on clean images. Mean ± sample sd over the splits finished (n).",
        "",
        "## Reconstruction against the stacked fraction f (Figure 3a)",
        "",
        markdown_table(
            ["f", "test CE above minimum (nats/image)", "per split"],
            [
                [f"{r['fraction']:g}", _mean_sd(r), ", ".join(f"{v:.3f}" for v in r["values"])]
                for r in report["fractions"]
            ],
        ),
    ]
    if report["tuned"]:
        lines += [
            "",
            f"## After {settings.tune_epochs:g} epochs of joint tuning (section 4.1)",
            "",
            markdown_table(
                ["start", "ours (nats/image)", "the paper"],
                [
                    [ARMS[float(f)], _mean_sd(t), f"{t['paper_mean']:.2f} ± {t['paper_sd']:.2f}"]
                    for f, t in report["tuned"].items()
                ],
            ),
        ]
        stacked, gradual = report["tuned"]["1"]["mean"], report["tuned"]["0"]["mean"]
        if stacked is not None and gradual is not None:
            lines += [
                "",
                f"Improvement of gradual over stacked: {100 * (1 - gradual / stacked):.2f} % "
                f"(the paper: {report['published']['improvement_pct']} %).",
            ]
    lines += [
        "",
        "## Classifier test error against labelled-set size (Figure 4)",
        "",
        markdown_table(
            ["labelled examples", "stacked (f=1) test error %", "gradual (f=0) test error %", "improvement"],
            [
                [
                    f"{c['size']}",
                    _mean_sd(c["arms"]["1"], 100),
                    _mean_sd(c["arms"]["0"], 100),
                    "missing" if c["improvement_pct"] is None else f"{c['improvement_pct']:+.1f} %",
                ]
                for c in report["classifiers"]
            ],
        ),
        "",
        "## Stages missing",
        "",
    ]
    lines += [f"- {m}" for m in report["missing"]] or ["None: the reproduction is complete."]
    return "\n".join(lines) + "\n"


def gradual_figures(out: Path, report: dict[str, Any]) -> None:
    """``gradual_fraction.png`` and ``gradual_classifier.png`` from the finished stages.

    Parameters
    ----------
    out : Path
        The reproduction's folder.
    report : dict
        :func:`gradual_report`'s dict.
    """

    def points(summaries, xs, scale=1.0):
        done = [(x, s) for x, s in zip(xs, summaries) if s["mean"] is not None]
        return (
            [x for x, _ in done],
            [scale * s["mean"] for _, s in done],
            [scale * (s["sd"] or 0.0) for _, s in done],
        )

    fractions = report["fractions"]
    curves = {"sweep (ours)": points(fractions, [r["fraction"] for r in fractions])}
    if report["tuned"]:
        tuned = report["tuned"]
        curves["after joint tuning (ours)"] = points(list(tuned.values()), [float(f) for f in tuned])
        curves["after joint tuning (paper)"] = (
            [float(f) for f in tuned],
            [t["paper_mean"] for t in tuned.values()],
            [t["paper_sd"] for t in tuned.values()],
        )
    plot_error_bars(
        curves,
        out / "gradual_fraction.png",
        "f: share of the upper layer's budget spent stacked",
        "test cross-entropy above its minimum (nats per image)",
        title="Stacked (f=1) to gradual (f=0), equal budgets; ± sd over splits",
    )
    sizes = [c["size"] for c in report["classifiers"]]
    plot_error_bars(
        {
            arm: points([c["arms"][f"{f:g}"] for c in report["classifiers"]], sizes, 100)
            for f, arm in ARMS.items()
        },
        out / "gradual_classifier.png",
        "labelled training examples",
        "test error (%)",
        title="Classifiers started from each auto-encoder; ± sd over splits",
        log_x=True,
    )


def reproduce_gradual(settings: GradualReproductionSettings, command: str) -> dict:
    """The ``gradual`` reproduction: every stage of every split, started, continued or skipped,
    then the report.

    Parameters
    ----------
    settings : GradualReproductionSettings
        Checked settings.
    command : str
        The command line, recorded in the report.

    Returns
    -------
    dict
        The report also written as ``gradual.json`` (see :func:`gradual_report`).

    Raises
    ------
    SettingError
        Row counts or sizes that do not fit the data, or a folder made with other settings.
    SdAError
        Another process is training in the folder.
    """
    apply_mode(settings.mode)
    dataset = load_data(dataclasses.replace(settings, n_train=None, n_valid=None))
    pool = len(dataset.train.y) + len(dataset.valid.y)
    n_valid = len(dataset.valid.y) if settings.n_valid is None else settings.n_valid
    if n_valid >= pool:
        raise SettingError(
            f"--n-valid must be less than the {pool} training and validation rows, got {n_valid}"
        )
    n_rows = pool - n_valid
    n_train = n_rows if settings.n_train is None else settings.n_train
    if n_train > n_rows:
        raise SettingError(f"--n-train must be 1 to {n_rows} (the rows left for training), got {n_train}")
    if settings.batch_size > n_train:
        raise SettingError(f"batch_size {settings.batch_size} is larger than the {n_train} training rows")
    if any(size > n_rows for size in settings.sizes):
        raise SettingError(
            f"--sizes must lie in 1..{n_rows} (the rows left for training), got {settings.sizes}"
        )
    out = Path(settings.out)
    with claim_folder(out, settings) as resumed:  # one process at a time trains in the folder
        print(
            f"sda: {engine.BACKEND}\ndata: {dataset.name}, {n_rows} training and {n_valid} validation "
            f"rows per split, {len(dataset.test.y)} test rows\n"
            f"{'continuing' if resumed else 'writing'} {out}",
            flush=True,
        )
        report = gradual_report(settings, command)
        for split in range(settings.splits):
            seed = settings.seed + split
            split_settings = dataclasses.replace(settings, seed=seed, n_train=n_train)
            data = gradual_split(dataset, n_valid, seed)
            folder = out / f"split-{split}"
            folder.mkdir(exist_ok=True)
            print(f"split {split} (seed {seed})", flush=True)
            sweep_fractions(split_settings, data, folder, resumable=True)
            gradual_report(settings, command)
            if settings.tune_epochs:
                shared = auto_encoder_data(split_settings, data)
                for f in ARMS:
                    tune_stage(split_settings, data, shared, f, settings.tune_epochs, folder)
                gradual_report(settings, command)
            classifier_curves(split_settings, data, folder, resumable=True)
            report = gradual_report(settings, command)
        print((out / "gradual.md").read_text())
        return report


# name: (settings, what runs it, one line for --help)
REPRODUCTIONS: dict[str, tuple[type[CommandSettings], Callable[..., dict], str]] = {
    "filters": (FiltersSettings, reproduce_filters, "the dA tutorial's filters at 0 %% and 30 %% noise"),
    "tutorial": (
        TutorialSettings,
        reproduce_tutorial,
        "the SdA tutorial's run at batch 1, beside its errors",
    ),
    "gradual": (
        GradualReproductionSettings,
        reproduce_gradual,
        "Kalmanovich & Chechik's gradual against stacked training on MNIST, 3 splits",
    ),
    "hinton": (
        HintonSettings,
        reproduce_hinton,
        "Hinton & Salakhutdinov's CG protocol on 60,000 rows, for CG and SGD, beside their 1.2 %%",
    ),
    "writers": (
        WritersSettings,
        reproduce_writers,
        "CG's and SGD's validation/test gap when validation comes from the test writers",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The command's parser: one sub-command per reproduction, its flags from its settings.

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = argparse.ArgumentParser(prog="python -m sda.reproduce", description=__doc__.split("\n\n")[0])
    names = parser.add_subparsers(dest="name", required=True, metavar="NAME")
    for name, (settings_class, _, summary) in REPRODUCTIONS.items():
        sub = names.add_parser(name, help=summary, description=settings_class.__doc__)
        add_settings_flags(sub, settings_class, {"default": {}})
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m sda.reproduce`` on ``argv`` (default: the command line).

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the command's name.

    Returns
    -------
    int
        The exit status: 0, 2 for a user error, 130 when interrupted.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python -m sda.reproduce", *argv])
    args = build_parser().parse_args(argv)
    settings_class, reproduction, _ = REPRODUCTIONS[args.name]
    return exit_status(lambda: reproduction(settings_from_args(args, settings_class, {}), command))


if __name__ == "__main__":
    sys.exit(main())
