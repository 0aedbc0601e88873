"""``python -m sda.reproduce hinton``: Hinton & Salakhutdinov (2006)'s MNIST classification protocol.

Their ``backpropclassify.m`` fine-tunes a 784-500-500-2000-10 network on all
60,000 MNIST training images by mini-batch conjugate gradient: batches of
m = 1,000 rows, 3 line searches per batch, the softmax layer trained alone
for the first 5 epochs, a fixed 200 epochs and no early stopping; they
report 1.2 % test error. Here, for each seed:

- the network is pre-trained ONCE by our SdA pre-training (denoising
  auto-encoders, not their RBMs), with ``RunConfig``'s default pre-training
  (5 epochs per layer, rate 0.05, minibatches of 20, masking noise 0.1, 0.2,
  0.3), in ``seed-S/pretrain`` (resumable from its checkpoint);
- two ``sda.run`` run folders start from those weights
  (``--pretrained``): ``seed-S/cg``, their recipe (``--finetune cg
  --finetune-batch-size 1000 --line-searches 3 --warmup-epochs 5``), and
  ``seed-S/sgd``, plain minibatch SGD: the default's minibatches of 20 at
  rate 2.0, without its input dropout and learning-rate decay, so that
  both arms minimise the same objective (theirs, with no regulariser) and
  differ only in the optimiser; both train on the 60,000 rows (``--train-on-valid``) under the
  SAME fixed budget of pass-equivalents (``--budget-passes``), with no early
  stop, and measure the test error at every evaluation
  (``--test-every-eval``). The figure reported is the test error at the end
  of the budget, not at a best validation point (validation rows are rows
  trained on here: there is no held-out validation in their protocol).

The budget was chosen before any test error was seen, from timing runs on
this machine (2 cores shared with other work, load average about 1.3; MKL,
float32; ``sda.run`` on 6,000 MNIST rows, a pre-training epoch per layer
and a few CG and SGD epochs, scaled to 60,000 rows):

- pre-training, one epoch of each layer: 28 + 45 + 80 s, so 5 epochs per
  layer cost about 13 minutes per seed;
- CG fine-tuning of the whole network: about 16 s per pass-equivalent
  (about 10 s in the softmax-only warm-up, which still pushes every row
  through the network); one CG epoch of their recipe (60 batches of 3 line
  searches) costs about 6.8 pass-equivalents, so their 200 epochs would be
  about 1,360 passes, some 6 hours per seed for CG alone;
- SGD (the default minibatches of 20): about 35 s per pass-equivalent;
- an evaluation (training loss on 60,000 rows, validation and test errors
  on 10,000 each): about 7 s.

``BUDGET_PASSES`` = 120 pass-equivalents, with an evaluation every 5: the
CG arm gets about 18 epochs of their recipe (the first 5 softmax-only, about
34 passes), the SGD arm 120 epochs. Per seed: about 13 minutes of
pre-training, 29 of CG, 70 of SGD and 6 of evaluations, so 3 seeds come to
about 6 hours, leaving room for up to half as much again when the cores are
shared (timed under a load average of 4 to 6, CG and SGD ran 2 to 3 times
slower). Ours is therefore far shorter than their 200 epochs.

Outputs: ``hinton.json``, ``hinton.md`` (per arm the mean ± sd over seeds of
the final test error, each seed's figure, passes and minutes, beside the
published 1.2 %), ``hinton_curve.csv`` and ``hinton_curve.png`` (test error
against pass-equivalents, both arms, every seed). They are rewritten after
every run finishes, from whatever is done so far, and name the seeds and
arms still missing.
"""

import csv
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sda.checkpoint import Checkpoint, Progress
from sda.cli import apply_mode, build_model, claim_folder, load_data, print_pretrain_epoch
from sda.config import CommandSettings, RunConfig, SettingError, preset, setting
from sda.data import shared_dataset
from sda.run import run as run_sda
from sda.rundir import METRICS, atomic_write, read_text, save_params
from sda.train import pretrain

PUBLISHED_TEST_ERROR = 0.012  # Hinton & Salakhutdinov (2006), backpropclassify.m after RBM pre-training
PUBLISHED_EPOCHS = 200
BUDGET_PASSES = 120.0  # see the module docstring: about 6 hours for 3 seeds on 2 cores
ARMS = ("cg", "sgd")
DONE = "done"


@dataclass
class HintonSettings(CommandSettings):
    """Hinton & Salakhutdinov's classification protocol for mini-batch CG and for SGD, from one
    SdA pre-training per seed; the data flags (for a smaller trial) come from ``CommandSettings``."""

    dataset: str = setting("mnist-idx")
    hidden_layers: tuple[int, ...] = setting((500, 500, 2000), metavar="SIZE")
    corruption_levels: tuple[float, ...] = setting((0.1, 0.2, 0.3), metavar="LEVEL")
    pretrain_epochs: int = setting(5)
    pretrain_lr: float = setting(0.05)
    seeds: tuple[int, ...] = setting(
        (1, 2, 3), "seeds; each pre-trains its own network and fine-tunes it by both arms", metavar="SEED"
    )
    budget_passes: float = setting(
        BUDGET_PASSES, "pass-equivalents of fine-tuning each arm runs, with no early stop"
    )
    eval_every: float = setting(5.0, "pass-equivalents between two measurements of the test error")
    cg_batch_size: int = setting(1000, "rows per batch m of the cg arm")
    line_searches: int = setting(3, "line searches per batch of the cg arm")
    warmup_epochs: int = setting(5, "first epochs of the cg arm that train only the softmax layer")
    out: str = setting("runs/reproduce-hinton", "folder of this reproduction; run again to continue")

    def check(self) -> "HintonSettings":
        """Check every setting, and that hidden layers and noise levels pair up.

        Returns
        -------
        HintonSettings
            ``self``.

        Raises
        ------
        SettingError
            Naming the first setting that makes no sense.
        """
        super().check()
        if self.eval_every > self.budget_passes:
            raise SettingError(
                f"eval_every {self.eval_every:g} is more than the budget of {self.budget_passes:g} passes: "
                "give a smaller --eval-every"
            )
        self.run_config(self.seeds[0], "cg", Path(self.out))  # the rest as sda.run checks it
        return self

    def run_config(self, seed: int, arm: str, folder: Path, pretrained: str | None = None) -> RunConfig:
        """The ``sda.run`` settings of one arm of one seed (``pretrained`` None: only to check them).

        Parameters
        ----------
        seed : int
            The seed of the pre-training and of the fine-tuning's draws.
        arm : {"cg", "sgd"}
            The fine-tuning optimiser.
        folder : Path
            The seed's folder; the run is ``folder / arm``.
        pretrained : str, optional
            The seed's pre-trained weights.

        Returns
        -------
        RunConfig
            Checked.
        """
        data = {name: getattr(self, name) for name in ("dataset", "data", "n_train", "n_valid", "n_test")}
        mode = {"mode": self.mode}
        cg = dict(
            finetune_batch_size=self.cg_batch_size,
            line_searches=self.line_searches,
            warmup_epochs=self.warmup_epochs,
        )
        plain_sgd = dict(finetune_corruption=0.0, finetune_lr_decay=1.0)
        return preset(
            "default",
            **data,
            **mode,
            train_on_valid=True,
            hidden_layers=self.hidden_layers,
            corruption_levels=self.corruption_levels,
            pretrain_epochs=self.pretrain_epochs,
            pretrain_lr=self.pretrain_lr,
            pretrained=pretrained,
            finetune=arm,
            # a cap the budget always reaches first: their 200 CG epochs, one SGD epoch per pass
            finetune_epochs=max(PUBLISHED_EPOCHS, math.ceil(self.budget_passes) + 1),
            budget_passes=self.budget_passes,
            eval_every=self.eval_every,
            test_every_eval=True,
            seed=seed,
            out=str(folder),
            name=arm,
            progress=False,
            **(cg if arm == "cg" else plain_sgd),
        )


def pretrain_seed(
    config: RunConfig, dataset: Any, folder: Path, on_epoch: Callable[[dict], None] | None = None
) -> Path:
    """Pre-train (or finish pre-training) the network of one seed; its weights' file.

    The state is saved to ``folder/checkpoint.npz`` every
    ``config.checkpoint_every`` steps and after each layer, so a later call
    resumes from it exactly; ``pretrained.npz`` and ``pretrain.json`` are
    written when it is done, and a folder holding them is left alone.

    Parameters
    ----------
    config : RunConfig
        The network, its pre-training and the seed.
    dataset : Dataset
        The rows to pre-train on.
    folder : Path
        The seed's pre-training folder.
    on_epoch : callable, optional
        Called with each epoch's record after it is printed.

    Returns
    -------
    Path
        ``folder / "pretrained.npz"``.
    """
    weights = folder / "pretrained.npz"
    if weights.is_file():
        return weights
    folder.mkdir(parents=True, exist_ok=True)
    model = build_model(config, dataset)
    checkpoint = Checkpoint(
        folder / "checkpoint.npz",
        model,
        every=config.checkpoint_every,
        fix=f"delete the folder {folder} to pre-train this network again",
    )
    progress = checkpoint.load() if checkpoint.path.is_file() else Progress()

    def report(record: dict) -> None:
        print_pretrain_epoch(record)
        if on_epoch is not None:
            on_epoch(record)

    if progress.layer < model.n_layers:  # else stopped after its last save, before the weights' file
        pretrain(
            model,
            shared_dataset(dataset.train)[0],
            config.pretrain_batch_size,
            config.pretrain_epochs,
            config.pretrain_lr,
            cached=config.cached,
            on_epoch=report,
            progress=progress,
            checkpoint=checkpoint,
        )
    minutes = progress.seconds["pretrain"] / 60
    atomic_write(folder / "pretrain.json", lambda f: f.write(json.dumps({"minutes": minutes}).encode()))
    save_params(model, weights)
    return weights


def finetune_arm(config: RunConfig, on_epoch: Callable[[dict], None] | None = None) -> None:
    """Start, continue or skip (when done) the ``sda.run`` folder of one arm of one seed.

    Parameters
    ----------
    config : RunConfig
        The arm's settings (:meth:`HintonSettings.run_config`).
    on_epoch : callable, optional
        Passed to ``sda.run.run``.
    """
    folder = Path(str(config.out)) / str(config.name)
    summary = folder / "summary.json"
    if summary.is_file() and json.loads(read_text(summary)).get("status") == DONE:
        return
    resume = folder if (folder / "config.json").is_file() else None
    run_sda(config, resume_dir=resume, on_epoch=on_epoch)


def read_arm(folder: Path) -> dict[str, Any] | None:
    """One arm's curve and end, from its run folder (None before its first evaluation).

    Parameters
    ----------
    folder : Path
        An ``sda.run`` folder of this reproduction.

    Returns
    -------
    dict or None
        ``status`` ("done" or "unfinished"), ``curve`` (``[passes, test
        error]`` per evaluation), and when done ``test_error`` (at the end of
        the budget), ``passes`` and ``minutes`` of fine-tuning.
    """
    if not (folder / METRICS.filename).is_file():
        return None
    rows = [r for r in METRICS.read(folder) if r["phase"] == "finetune"]
    if not rows:
        return None
    curve = [[float(r["passes"]), float(r["current_test_error"])] for r in rows]
    summary_file = folder / "summary.json"
    summary = json.loads(read_text(summary_file)) if summary_file.is_file() else {}
    if summary.get("status") != DONE:
        return {"status": "unfinished", "curve": curve}
    return {
        "status": DONE,
        "test_error": curve[-1][1],
        "passes": summary["passes"],
        "minutes": summary["seconds"]["finetune"] / 60,
        "curve": curve,
    }


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN for fewer than 2 values; both NaN for none).

    Parameters
    ----------
    values : list of float

    Returns
    -------
    mean, sd : float

    Examples
    --------
    >>> mean_sd([0.01, 0.03])
    (0.02, 0.01414213562373095)
    """
    if not values:
        return math.nan, math.nan
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
    return float(np.mean(values)), sd


def percent_mean_sd(mean: float, sd: float) -> str:
    """``mean ± sd`` in percent as the reports print it: "-" with no value, the mean alone with one.

    Parameters
    ----------
    mean, sd : float
        As :func:`mean_sd` returns them.

    Returns
    -------
    str

    Examples
    --------
    >>> [percent_mean_sd(*mean_sd(values)) for values in ([0.01, 0.03], [0.0154], [])]
    ['2.00 ± 1.41', '1.54', '-']
    """
    if math.isnan(mean):
        return "-"
    return f"{100 * mean:.2f}" if math.isnan(sd) else f"{100 * mean:.2f} ± {100 * sd:.2f}"


def write_reports(settings: HintonSettings, command: str, out: Path) -> dict[str, Any]:
    """Write ``hinton.json``, ``hinton.md``, ``hinton_curve.csv`` and ``hinton_curve.png`` from what is done.

    Parameters
    ----------
    settings : HintonSettings
        The reproduction's settings.
    command : str
        The command line, recorded.
    out : Path
        The reproduction's folder.

    Returns
    -------
    dict
        The report written as ``hinton.json``.
    """
    arms: dict[str, Any] = {}
    curves = []
    for arm in ARMS:
        seeds, missing = {}, []
        for seed in settings.seeds:
            found = read_arm(out / f"seed-{seed}" / arm)
            if found is not None:
                curves += [(arm, seed, passes, error) for passes, error in found["curve"]]
            if found is None or found["status"] != DONE:
                missing.append(seed)
            else:
                seeds[str(seed)] = {k: v for k, v in found.items() if k != "curve"}
        mean, sd = mean_sd([s["test_error"] for s in seeds.values()])
        arms[arm] = {"test_error_mean": mean, "test_error_sd": sd, "seeds": seeds, "missing_seeds": missing}
    pretrain_minutes = {}
    for seed in settings.seeds:
        info = out / f"seed-{seed}" / "pretrain" / "pretrain.json"
        if info.is_file():
            pretrain_minutes[str(seed)] = json.loads(read_text(info))["minutes"]
    result = {
        "command": command,
        "published": {"test_error": PUBLISHED_TEST_ERROR, "epochs": PUBLISHED_EPOCHS, "pre-training": "RBMs"},
        "budget_passes": settings.budget_passes,
        "pretrain_minutes": pretrain_minutes,
        "arms": arms,
    }
    atomic_write(out / "hinton.json", lambda f: f.write(json.dumps(result, indent=2).encode()))
    with open(out / "hinton_curve.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arm", "seed", "passes", "test_error"])
        writer.writerows(curves)
    lines = [
        f"Command: `{command}`",
        "",
        f"Test error at the end of {settings.budget_passes:g} pass-equivalents of fine-tuning, on all "
        "training rows, no early stopping; pre-trained once per seed as an SdA (theirs: RBMs, "
        f"and {PUBLISHED_EPOCHS} CG epochs, far longer than this budget).",
        "",
        "| arm | test error, mean ± sd | each seed | passes | minutes | published |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for arm, found in arms.items():
        seeds = found["seeds"]
        each = ", ".join(f"{s}: {100 * v['test_error']:.2f} %" for s, v in seeds.items()) or "none yet"
        passes = ", ".join(f"{v['passes']:.1f}" for v in seeds.values())
        minutes = ", ".join(f"{v['minutes']:.1f}" for v in seeds.values())
        published = f"{100 * PUBLISHED_TEST_ERROR:.1f} %" if arm == "cg" else "-"
        lines.append(
            f"| {arm} | {percent_mean_sd(found['test_error_mean'], found['test_error_sd'])} % | "
            f"{each} | {passes} | {minutes} | {published} |"
        )
    unfinished = {arm: found["missing_seeds"] for arm, found in arms.items() if found["missing_seeds"]}
    if unfinished:
        lines += [
            "",
            "Not finished yet: "
            + "; ".join(f"{a} seeds {' '.join(map(str, s))}" for a, s in unfinished.items()),
        ]
    (out / "hinton.md").write_text("\n".join(lines) + "\n")
    save_curve_figure(curves, out / "hinton_curve.png")
    print("\n".join(lines[4:]), flush=True)
    return result


def save_curve_figure(curves: list[tuple[str, int, float, float]], path: Path) -> None:
    """Draw the test error against pass-equivalents, one line per arm and seed.

    Parameters
    ----------
    curves : list of (arm, seed, passes, test error)
        The points, in order along each run.
    path : Path
        The PNG written.
    """
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    colours = {"cg": "tab:blue", "sgd": "tab:orange"}
    for arm in ARMS:
        for seed in sorted({c[1] for c in curves if c[0] == arm}):
            points = [(p, 100 * e) for a, s, p, e in curves if a == arm and s == seed]
            xs, ys = zip(*points)
            axes.plot(xs, ys, color=colours[arm], label=f"{arm} seed {seed}", alpha=0.8)
    axes.axhline(100 * PUBLISHED_TEST_ERROR, color="grey", linestyle="--", label="published (CG, RBMs)")
    axes.set_xlabel("pass-equivalents of fine-tuning")
    axes.set_ylabel("test error (%)")
    axes.set_yscale("log")
    axes.legend(fontsize="small")
    figure.savefig(path)


def reproduce_hinton(
    settings: HintonSettings, command: str, on_epoch: Callable[[dict], None] | None = None
) -> dict[str, Any]:
    """The ``hinton`` reproduction: every seed's pre-training and both arms, started, continued or skipped.

    Parameters
    ----------
    settings : HintonSettings
        Checked settings.
    command : str
        The command line, recorded in the report.
    on_epoch : callable, optional
        Called with every pre-training and fine-tuning record (a hook to stop the run).

    Returns
    -------
    dict
        The report also written as ``hinton.json``.
    """
    apply_mode(settings.mode)
    out = Path(settings.out)
    # the same rows for every seed; batch sizes larger than the training rows are refused here
    dataset = load_data(settings.run_config(settings.seeds[0], "cg", out))
    with claim_folder(out, settings):  # one process at a time in the folder
        started = time.perf_counter()
        try:
            for seed in settings.seeds:
                folder = out / f"seed-{seed}"
                config = settings.run_config(seed, "cg", folder)
                weights = pretrain_seed(config, dataset, folder / "pretrain", on_epoch)
                for arm in ARMS:
                    finetune_arm(settings.run_config(seed, arm, folder, str(weights)), on_epoch)
                    write_reports(settings, command, out)
        finally:  # a stopped reproduction reports what it has, and what it lacks
            result = write_reports(settings, command, out)
        print(
            f"hinton: {(time.perf_counter() - started) / 60:.1f} min this call; reports in {out}", flush=True
        )
        return result
