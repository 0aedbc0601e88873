"""``python -m sda.reproduce NAME``: rebuild a published figure and set it beside the original.

Each reproduction writes into its own folder (``--out``) and can be stopped
and started again: a second call with the same settings continues from the
checkpoints where the first one stopped, and skips the parts already done.
A folder made with other settings is refused, so one folder never mixes two
protocols.

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
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from sda import engine
from sda.checkpoint import Checkpoint, Progress
from sda.cli import add_settings_flags, apply_mode, exit_status, load_data, settings_from_args
from sda.config import PRESETS, CommandSettings, RunConfig, SettingError, setting
from sda.constraints import MAX_SEED
from sda.data import shared_dataset
from sda.experiments.hinton import HintonSettings, reproduce_hinton
from sda.experiments.writers import WritersSettings, reproduce_writers
from sda.pictures import tile_images
from sda.run import run as run_sda
from sda.rundir import atomic_write, read_text, usable_folder
from sda.SdA import SdA
from sda.train import pretrain

SETTINGS_FILE = "settings.json"
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


def claim_folder(path: Path, settings: CommandSettings) -> bool:
    """Make ``path`` this reproduction's folder, or check that it already is.

    Parameters
    ----------
    path : Path
        The ``--out`` folder.
    settings : CommandSettings
        The reproduction's settings, saved in the folder the first time.

    Returns
    -------
    bool
        True when the folder was made by an earlier call with the same
        settings (the call continues it).

    Raises
    ------
    SettingError
        The folder holds another reproduction's settings, or files of its own.
    """
    usable_folder(path)
    saved_file = path / SETTINGS_FILE
    values = json.loads(json.dumps(settings.to_dict()))  # as saved: tuples become lists
    if saved_file.is_file():
        try:
            saved = json.loads(read_text(saved_file, "reproduction"))
        except ValueError:
            raise SettingError(
                f"{saved_file} is damaged: restore it, or start again in another --out"
            ) from None
        if saved != values:
            changed = sorted(k for k in set(saved) | set(values) if saved.get(k) != values.get(k))
            raise SettingError(
                f"{path} holds a reproduction made with other settings ({', '.join(changed)}): "
                "give the same settings to continue it, or another --out"
            )
        return True
    if path.exists() and any(path.iterdir()):
        raise SettingError(f"{path} already holds files: give an empty or new folder as --out")
    path.mkdir(parents=True, exist_ok=True)
    atomic_write(saved_file, lambda f: f.write(json.dumps(values, indent=2).encode()))
    return False


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
    checkpoint = Checkpoint(folder / "checkpoint.npz", model, every=CHECKPOINT_EVERY)
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
    resumed = claim_folder(out, settings)
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
            settings, level, train_x, dataset.n_features, dataset.n_classes, out / f"corruption-{level:.2f}"
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
    claim_folder(out, settings)
    folder = out / "run"
    summary_file = folder / "summary.json"
    done = summary_file.is_file() and json.loads(read_text(summary_file)).get("status") == "done"
    if not done:
        run_sda(config, resume_dir=folder if (folder / "config.json").is_file() else None)
    summary = json.loads(read_text(summary_file, "run folder"))
    n_test = len(load_data(config).test.y)
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


# name: (settings, what runs it, one line for --help)
REPRODUCTIONS: dict[str, tuple[type[CommandSettings], Callable[..., dict], str]] = {
    "filters": (FiltersSettings, reproduce_filters, "the dA tutorial's filters at 0 %% and 30 %% noise"),
    "tutorial": (
        TutorialSettings,
        reproduce_tutorial,
        "the SdA tutorial's run at batch 1, beside its errors",
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
