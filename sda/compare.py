"""``python -m sda.compare``: SGD, conjugate gradient and L-BFGS fine-tuning, fairly.

An SdA is pre-trained once and its weights saved; every arm and every
fine-tuning seed starts from them. The arms:

- ``sgd``: minibatches of ``--sgd-batch-size`` rows at ``--finetune-lr``;
- ``sgd-momentum``: the same with ``--momentum``, its learning rate scaled by
  ``1 - momentum`` so the step in a steady gradient stays the same;
- ``cg-hs2006``: Hinton & Salakhutdinov's mini-batch CG: batches of
  ``--finetune-batch-size`` (1,000), ``--line-searches`` (3) per batch,
  restarted on each batch, the softmax layer alone for ``--warmup-epochs``;
- ``cg-full``: CG on the whole training set, never restarted;
- ``lbfgs-minibatch`` and ``lbfgs-full``: L-BFGS-B the same two ways (no warm-up).

``--finetune-corruption`` adds input dropout to the SGD and mini-batch arms,
so they all minimise the same noisy objective (the full-batch arms would
keep one mask for the whole run, so they refuse it); ``--weight-decay``
adds its penalty to every arm. The measurements always see clean pixels.

Cost is counted in *pass-equivalents*: rows pushed through forward and
backward (line-search trial points included) over the training-set size.
Every arm gets ``--budget-passes`` of them and is measured by one shared
evaluator every ``--eval-every`` pass-equivalents (full training loss,
validation error, test error at the best validation error). Every arm is
shuffled by the fine-tuning seed, so ``--seeds`` gives a spread for each.

Writes ``runs.csv`` (one row per arm and seed), ``summary.csv`` and
``comparison.md`` (mean ± sd over seeds), ``comparison.json`` (settings,
the spacing each arm's measurements came to, at least one update, and
every evaluation record), plots of validation error and training loss
against pass-equivalents and seconds, ``pretrained.npz`` and, with
``--sensitivity-m``/``--sensitivity-k``, ``sensitivity.csv`` and
``sensitivity.png``. ``--autoencoder`` adds the unrolled deep auto-encoder,
fine-tuned by SGD and by mini-batch CG.
"""

import argparse
import csv
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from sda import engine
from sda.cli import (
    add_deprecated_alias,
    add_settings_flags,
    apply_mode,
    build_model,
    experiment_folder,
    load_data,
    print_pretrain_epoch,
    settings_from_args,
)
from sda.config import NETWORK_FLAGS, PRESETS, RunConfig, SettingError, check_pretrained_file, setting
from sda.constraints import ARMS, DEFAULT_BATCH_SIZE, DEFAULT_CHUNK_ROWS, SGD_BATCH_SIZE
from sda.data import shared_dataset
from sda.errors import exit_status
from sda.finetune import (
    FinetuneResult,
    MinibatchSGD,
    PassBudget,
    Record,
    autoencoder_line_search,
    autoencoder_monitor,
    classifier_line_search,
    classifier_monitor,
    compile_rows_step,
    finetune,
)
from sda.gradual import data_entropy
from sda.graph_types import TensorSharedVariable
from sda.optimize import (
    DeepAutoencoder,
)
from sda.plots import _two_and_five
from sda.rundir import load_params, save_params
from sda.SdA import SdA
from sda.sgd import SGDStep
from sda.train import pretrain

# Full-batch CG and L-BFGS run on as one optimisation: iterations per "batch" beyond any budget.
FULL_BATCH_ITERATIONS = 100_000


@dataclass
class CompareSettings(RunConfig):
    """The model and its pre-training (a run's settings) plus the comparison's own.

    Fields of ``RunConfig`` that only ``sda.run`` uses (patience, checkpoints,
    ...) keep their defaults and have no flag here. Each field's help is its
    flag's (``python -m sda.compare --help``); the fine-tuning budget and
    spacing are in pass-equivalents, the batch sizes in rows.
    """

    seed: int = setting(
        89677, "seed of the model's weights and its pre-training (the arms shuffle by --seeds)"
    )
    pretrained: str | None = setting(None, default_text="pre-train", metavar="PATH")
    arms: tuple[str, ...] = setting(ARMS, metavar="ARM")
    seeds: tuple[int, ...] = setting((1, 2, 3), metavar="SEED")
    budget_passes: float = setting(
        20.0, "pass-equivalents each arm may spend (rows through forward+backward / training rows)"
    )
    eval_every: float = setting(0.5, "pass-equivalents between measurements")
    thresholds: tuple[float, ...] = setting((2.0, 1.6), metavar="PERCENT")
    sgd_batch_size: int = setting(SGD_BATCH_SIZE)
    finetune_lr: float = setting(2.0, "learning rate of the sgd arms")
    momentum: float = setting(
        0.9, "momentum of the sgd-momentum arm, in (0, 1); its learning rate is scaled by 1 - momentum"
    )
    weight_decay: float = setting(0.0, "L2 penalty on the weight matrices, the same objective for every arm")
    finetune_corruption: float = setting(
        0.0,
        "input dropout of the sgd and mini-batch arms, in [0, 1): each training pixel zeroed "
        "with this probability, the rest scaled by 1/(1 - it) (sgd: a fresh mask every step; "
        "cg/lbfgs: one mask per mini-batch, kept through its line searches)",
    )
    cg_batch_size: int = setting(DEFAULT_BATCH_SIZE)
    line_searches: int = setting(3, "line searches (iterations) k per batch of the mini-batch arms")
    warmup_epochs: int = setting(1, "cg-hs2006: first epochs that train the softmax layer alone")
    sensitivity_m: tuple[int, ...] | None = setting(None, default_text="no sensitivity runs", metavar="M")
    sensitivity_k: tuple[int, ...] | None = setting(None, default_text="--line-searches", metavar="K")
    autoencoder: bool = setting(False)
    ae_lr: float = setting(0.01)
    chunk_rows: int = setting(DEFAULT_CHUNK_ROWS)
    out: str | None = setting(
        None,
        "output folder; refused if it already holds files, so an earlier result is never overwritten",
        default_text="a new folder runs/DATE-TIME-compare",
    )

    def check(self) -> Self:
        """Check every setting, as ``RunConfig.check`` does, and those of the comparison; return self.

        Returns
        -------
        CompareSettings
            ``self``, unchanged.

        Raises
        ------
        SettingError
            A setting out of range (``SettingTypeError`` for a wrong type);
            ``momentum`` not above 0; ``finetune_corruption`` with a full-batch
            arm; an arm or seed given twice; a ``pretrained`` file that does not exist.
        """
        super().check()
        if not self.momentum > 0:
            raise SettingError(
                f"momentum must be more than 0 for the sgd-momentum arm, got "
                f"{self.momentum!r}; the sgd arm is the one without"
            )
        full_batch = [arm for arm in self.arms if arm.endswith("-full")]
        if self.finetune_corruption and full_batch:
            # one batch per epoch and one epoch per run: a single mask, i.e. one fixed noisy copy
            raise SettingError(
                f"--finetune-corruption would give {', '.join(full_batch)} one "
                "dropout mask for the whole run, not dropout: leave the full-batch "
                "arms out of --arms, or run them without it"
            )
        check_pretrained_file(self.pretrained, "leave --pretrained out to pre-train")
        return self

    def finetune_rows(self) -> int:
        """Rows of the largest fine-tuning batch: the sgd arms' or the mini-batch arms'.

        Returns
        -------
        int
            ``max(sgd_batch_size, cg_batch_size)``, which the training set must hold.
        """
        return max(self.sgd_batch_size, self.cg_batch_size)

    @classmethod
    def from_dict(cls, values: Any, source: str = "the settings") -> Self:
        """As ``RunConfig.from_dict``; a folder written before ``cg_batch_size`` had its name
        records it as ``finetune_batch_size`` (``upgrade``).

        Parameters
        ----------
        values : dict
            Setting name to its JSON value (lists for tuples); missing ones take their defaults.
        source : str
            Names where the values came from in errors (e.g. a ``comparison.json`` path).

        Returns
        -------
        CompareSettings
            Checked.

        Raises
        ------
        SettingError
            ``values`` names an unknown setting or holds a bad value.
        SettingTypeError
            ``values`` is not a dict, or holds a value of the wrong type.
        """
        return super().from_dict(upgrade(values), source)


# settings a comparison.json may record under an older name
RENAMED = {"finetune_batch_size": "cg_batch_size"}


def upgrade(recorded: Any) -> Any:
    """``comparison.json``'s settings with the names of this version (``RENAMED``).

    Parameters
    ----------
    recorded : dict
        The settings as a ``comparison.json`` recorded them; anything else is
        given back as it is (for ``from_dict`` to refuse).

    Returns
    -------
    dict
        A new dict with each old name replaced by its new one (unless both are present).

    Examples
    --------
    >>> upgrade({"finetune_batch_size": 250, "line_searches": 3})
    {'line_searches': 3, 'cg_batch_size': 250}
    """
    if not isinstance(recorded, dict):
        return recorded
    upgraded = dict(recorded)
    for old, new in RENAMED.items():
        if old in upgraded and new not in upgraded:
            upgraded[new] = upgraded.pop(old)
    return upgraded


# the values behind the flags' defaults: the classic preset (the network and pre-training that
# docs/finetuning.md measured), with the comparison's own defaults
DEFAULTS = {**PRESETS["classic"], "preset": "classic", "progress": False}
FLAGS = [
    *NETWORK_FLAGS,
    "train_on_valid",
    "valid_from",
    "split_seed",
    "seed",
    "pretrained",
    "arms",
    "seeds",
    "budget_passes",
    "eval_every",
    "thresholds",
    "sgd_batch_size",
    "finetune_lr",
    "momentum",
    "weight_decay",
    "finetune_corruption",
    "cg_batch_size",
    "line_searches",
    "warmup_epochs",
    "sensitivity_m",
    "sensitivity_k",
    "autoencoder",
    "ae_lr",
    "chunk_rows",
    "out",
]
# what comparison.json records about the pre-trained model
MODEL_SETTINGS = [
    "hidden_layers",
    "corruption_levels",
    "tied",
    "loss",
    "pretrain_epochs",
    "pretrain_lr",
    "pretrain_batch_size",
    "cached",
]


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m sda.compare``: a flag per entry of ``FLAGS``.

    Returns
    -------
    argparse.ArgumentParser
        Flags not given are left out of the parsed namespace, so the ``DEFAULTS`` fill them.
    """
    parser = argparse.ArgumentParser(prog="python -m sda.compare", description=__doc__.split("\n\n")[0])
    add_settings_flags(parser, CompareSettings, {"default": DEFAULTS}, FLAGS)
    add_deprecated_alias(parser, "--finetune-batch-size", "cg_batch_size")
    return parser


def print_record(label: str, percent: bool = True) -> Callable[[Record], None]:
    """A fine-tuning ``on_record`` that prints each evaluation as one line.

    Parameters
    ----------
    label : str
        Starts each line (e.g. ``"sgd seed 1"``).
    percent : bool
        Show the validation error as a percentage; False shows it as is (an
        auto-encoder's reconstruction loss).

    Returns
    -------
    callable
        ``report(record)`` for each :class:`~sda.finetune.Evaluation`.
    """

    def report(record: Any) -> None:  # an Evaluation: every arm runs under a PassBudget
        valid = f"{100 * record.valid_error:6.2f}%" if percent else f"{record.valid_error:8.3f}"
        print(
            f"{label:24s} passes {record.passes:6.2f}  updates {record.updates:7d}  "
            f"train loss {record.train_loss:.4f}  valid {valid}  {record.seconds:7.1f}s",
            flush=True,
        )

    return report


# --------------------------------------------------------------- fine-tuning
def budget(settings: CompareSettings) -> PassBudget:
    """The one measure every arm gets: every ``eval_every`` pass-equivalents, up to the budget.

    Parameters
    ----------
    settings : CompareSettings
        Gives ``eval_every`` and ``budget_passes`` (pass-equivalents).

    Returns
    -------
    sda.finetune.PassBudget
        Without a ``no_change`` stop: every arm spends its whole budget.
    """
    return PassBudget(settings.eval_every, settings.budget_passes)


def arm_monitor(
    model: SdA,
    shared: Sequence[tuple[TensorSharedVariable, TensorSharedVariable]],
    settings: CompareSettings,
) -> Any:
    """The classifier arms' monitor: validation and test errors, and the training objective.

    Parameters
    ----------
    model : SdA
        The network fine-tuned.
    shared : sequence of (TensorSharedVariable, TensorSharedVariable)
        ``(x, y)`` shared pairs of the training, validation and test sets.
    settings : CompareSettings
        Gives the budget, ``chunk_rows`` and ``weight_decay`` (part of the training objective).

    Returns
    -------
    sda.finetune.Monitor
    """
    return classifier_monitor(model, shared, budget(settings), settings.chunk_rows, settings.weight_decay)


def shuffled_sgd(
    model: SdA,
    train_fn: SGDStep,
    n_rows: int,
    settings: CompareSettings,
    seed: int,
    monitor: Any,
    report: Callable[[Record], None],
    phase: str = "SGD fine-tuning",
) -> FinetuneResult:
    """SGD on minibatches of ``--sgd-batch-size`` rows reshuffled every epoch by ``seed``.

    Parameters
    ----------
    model : SdA
        The network fine-tuned; the best parameters measured are left in it.
    train_fn : sda.sgd.SGDStep
        One update on a vector of row numbers (``sda.finetune.compile_rows_step``).
    n_rows : int
        Training rows.
    settings : CompareSettings
        Gives ``sgd_batch_size`` (rows per minibatch).
    seed : int
        Seeds the shuffle of every epoch.
    monitor : sda.finetune.Monitor
        Measures under the comparison's pass budget.
    report : callable
        Gets each :class:`~sda.finetune.Evaluation`.
    phase : str
        Names the phase in a divergence error.

    Returns
    -------
    sda.finetune.FinetuneResult

    Raises
    ------
    sda.errors.TrainingDiverged
        A cost or parameter is not finite.
    """
    step = MinibatchSGD(train_fn, n_rows, settings.sgd_batch_size, shuffle_seed=seed, phase=phase)
    return finetune(model, step, monitor, on_record=report)


def batch_finetune(
    model: SdA,
    shared: Sequence[tuple[TensorSharedVariable, TensorSharedVariable]],
    settings: CompareSettings,
    seed: int,
    report: Callable[[Record], None],
    method: str,
    batch_size: int,
    line_searches: int,
    warmup_epochs: int = 0,
) -> FinetuneResult:
    """CG or L-BFGS on batches of ``batch_size`` rows, ``line_searches`` per batch.

    Parameters
    ----------
    model : SdA
        The network fine-tuned; the best parameters measured are left in it.
    shared : sequence of (TensorSharedVariable, TensorSharedVariable)
        ``(x, y)`` shared pairs of the training, validation and test sets.
    settings : CompareSettings
        Gives ``weight_decay``, ``finetune_corruption``, ``chunk_rows`` and the budget.
    seed : int
        Seeds the batches' shuffle and dropout masks.
    report : callable
        Gets each :class:`~sda.finetune.Evaluation`.
    method : {"cg", "lbfgs"}
        The optimiser.
    batch_size : int
        Rows per batch; the training rows make it full-batch.
    line_searches : int
        Iterations (line searches) per batch.
    warmup_epochs : int
        First epochs that train the softmax layer alone.

    Returns
    -------
    sda.finetune.FinetuneResult

    Raises
    ------
    sda.errors.TrainingDiverged
        A cost, gradient or parameter is not finite.
    """
    step = classifier_line_search(
        model,
        shared[0],
        method,
        batch_size,
        line_searches,
        warmup_epochs,
        settings.weight_decay,
        settings.finetune_corruption,
        seed,
        settings.chunk_rows,
    )
    return finetune(model, step, arm_monitor(model, shared, settings), on_record=report)


# ----------------------------------------------------------------------- arms
# The settings each arm reads besides those every arm shares (keep in step with
# arm_settings and run_arm); sda.combine keeps runs of one arm made with
# different values apart.
ARM_READS = {
    "sgd": ("sgd_batch_size", "finetune_lr", "finetune_corruption"),
    "sgd-momentum": ("sgd_batch_size", "finetune_lr", "momentum", "finetune_corruption"),
    "cg-hs2006": ("cg_batch_size", "line_searches", "warmup_epochs", "finetune_corruption"),
    "cg-full": (),  # no --finetune-corruption: see CompareSettings.check
    "lbfgs-minibatch": ("cg_batch_size", "line_searches", "finetune_corruption"),
    "lbfgs-full": (),
}
# settings added after comparison parts were first written, with the value those parts ran at
ADDED_LATER = {"finetune_corruption": 0.0}


def arm_settings(arm: str, settings: CompareSettings, n_train: int) -> dict[str, Any]:
    """``batch_finetune`` keywords of a CG / L-BFGS arm.

    Parameters
    ----------
    arm : str
        One of the CG / L-BFGS arms of ``ARMS`` (``"cg-hs2006"``, ``"cg-full"``,
        ``"lbfgs-minibatch"``, ``"lbfgs-full"``).
    settings : CompareSettings
        Gives the mini-batch arms' ``cg_batch_size``, ``line_searches`` and ``warmup_epochs``.
    n_train : int
        Training rows: the full-batch arms' batch size.

    Returns
    -------
    dict
        ``method``, ``batch_size``, ``line_searches`` and, for ``cg-hs2006``, ``warmup_epochs``.

    Raises
    ------
    KeyError
        ``arm`` is not a CG / L-BFGS arm.
    """
    minibatch = dict(batch_size=settings.cg_batch_size, line_searches=settings.line_searches)
    full = dict(batch_size=n_train, line_searches=FULL_BATCH_ITERATIONS)
    return {
        "cg-hs2006": dict(method="cg", warmup_epochs=settings.warmup_epochs, **minibatch),
        "cg-full": dict(method="cg", **full),
        "lbfgs-minibatch": dict(method="lbfgs", **minibatch),
        "lbfgs-full": dict(method="lbfgs", **full),
    }[arm]


def run_arm(
    arm: str,
    seed: int,
    model: SdA,
    shared: Sequence[tuple[TensorSharedVariable, TensorSharedVariable]],
    settings: CompareSettings,
    label: str,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One arm from the model's current (pre-trained) weights; a result row and the records.

    Parameters
    ----------
    arm : str
        One of ``ARMS``.
    seed : int
        The fine-tuning seed: shuffles, dropout masks.
    model : SdA
        The network, at the pre-trained weights; left at the arm's best.
    shared : sequence of (TensorSharedVariable, TensorSharedVariable)
        ``(x, y)`` shared pairs of the training, validation and test sets.
    settings : CompareSettings
        The comparison's settings.
    label : str
        Starts each printed line.

    Returns
    -------
    row : dict
        The ``runs.csv`` row (:func:`result_row`).
    history : list of dict
        Every evaluation record, as ``comparison.json`` keeps it.
    """
    report = print_record(label)
    n_train = shared[0][1].get_value(borrow=True).shape[0]
    if arm.startswith("sgd"):
        monitor = arm_monitor(model, shared, settings)
        momentum = settings.momentum if arm == "sgd-momentum" else 0.0
        # the dropout masks follow the fine-tuning seed, whatever ran before
        model.dA_layers[0].rng.set_value(np.random.default_rng(seed))
        cost, noise = model.dropout_finetune_cost(settings.finetune_corruption)
        train_fn = compile_rows_step(
            cost,
            model.params,
            [model.x, model.y],
            list(shared[0]),
            settings.finetune_lr * (1 - momentum),
            momentum,
            settings.weight_decay,
            noise,
        )
        result = shuffled_sgd(model, train_fn, n_train, settings, seed, monitor, report)
    else:
        result = batch_finetune(model, shared, settings, seed, report, **arm_settings(arm, settings, n_train))
    history = [record.row() for record in result.history]
    counts = (result.passes, result.iterations, result.seconds, result.stop_reason)
    return result_row(arm, seed, history, settings.thresholds, *counts), history


def result_row(
    arm: str,
    seed: int,
    history: Sequence[dict[str, Any]],
    thresholds: Sequence[float],
    passes: float,
    updates: int,
    seconds: float,
    stop_reason: str,
) -> dict[str, Any]:
    """A ``runs.csv`` row from a run's evaluation records: its best point (the
    last record's best validation error and the test error there), its costs,
    and the cost of reaching each validation-error threshold (percent).

    Parameters
    ----------
    arm : str
        The arm's name.
    seed : int
        Its fine-tuning seed.
    history : sequence of dict
        The run's evaluation records, in order (at least one).
    thresholds : sequence of float
        Validation errors, in percent.
    passes : float
        Pass-equivalents the run spent.
    updates : int
        Parameter updates it made.
    seconds : float
        The optimiser's time (measuring excluded).
    stop_reason : str
        What ended it.

    Returns
    -------
    dict
        The columns above, plus ``passes_to_T%`` and ``seconds_to_T%`` for each
        threshold ``T``: the first record at or under it, None if none was.

    Examples
    --------
    >>> history = [{"passes": 0.0, "seconds": 0.0, "valid_error": 0.05, "best_valid_error": 0.05,
    ...             "test_error": 0.06, "train_loss": 0.3},
    ...            {"passes": 1.0, "seconds": 2.0, "valid_error": 0.015, "best_valid_error": 0.015,
    ...             "test_error": 0.02, "train_loss": 0.1}]
    >>> row = result_row("sgd", 1, history, [2.0, 1.0], 1.0, 50, 2.0, "budget")
    >>> row["passes_to_2%"], row["passes_to_1%"]
    (1.0, None)
    """
    last = history[-1]
    row = dict(
        arm=arm,
        seed=seed,
        best_valid_error=last["best_valid_error"],
        test_error=last["test_error"],
        final_train_loss=last["train_loss"],
        passes=passes,
        updates=updates,
        seconds=seconds,
        stop_reason=stop_reason,
    )
    for threshold in thresholds:
        reached = next((r for r in history if 100 * r["valid_error"] <= threshold), None)
        row[f"passes_to_{threshold:g}%"] = reached["passes"] if reached else None
        row[f"seconds_to_{threshold:g}%"] = reached["seconds"] if reached else None
    return row


def summarise(rows: Sequence[dict[str, Any]], arms: Sequence[str]) -> list[dict[str, Any]]:
    """Per arm: mean and sd over seeds of each number (thresholds over the seeds that got there).

    Parameters
    ----------
    rows : sequence of dict
        ``runs.csv`` rows (:func:`result_row`), each arm with at least one.
    arms : sequence of str
        The arms to summarise, in the order of the summary.

    Returns
    -------
    list of dict
        One per arm: ``arm``, ``seeds`` (rows), and for each number a tuple
        ``(mean, sd, count)`` over the rows that have it; ``sd`` is None for a
        single value, and ``(None, None, 0)`` when no row has one.
    """
    summary = []
    for arm in arms:
        mine = [r for r in rows if r["arm"] == arm]
        entry = {"arm": arm, "seeds": len(mine)}
        for key in mine[0]:
            if key in ("arm", "seed", "stop_reason"):
                continue
            values = [r[key] for r in mine if r[key] is not None]
            # one value has no spread to show: its sd is None, not a claimed 0
            entry[key] = (
                (
                    float(np.mean(values)),
                    float(np.std(values, ddof=1)) if len(values) > 1 else None,
                    len(values),
                )
                if values
                else (None, None, 0)
            )
        summary.append(entry)
    return summary


def _format(value, percent=False, digits=2):
    mean, sd, count = value
    if mean is None:
        return "not reached"
    scale = 100 if percent else 1
    spread = "" if sd is None else f" ± {scale * sd:.{digits}f}"
    return f"{scale * mean:.{digits}f}{spread}"


def markdown_table(summary: Sequence[dict[str, Any]], thresholds: Sequence[float]) -> str:
    """The summary as a Markdown table: mean ± sd per arm, errors in percent.

    Parameters
    ----------
    summary : sequence of dict
        :func:`summarise`'s entries.
    thresholds : sequence of float
        The validation errors (percent) whose passes and seconds to reach are shown.

    Returns
    -------
    str
        The table's lines; a threshold reached by fewer seeds than all says how many.
    """
    header = [
        "arm",
        "best valid error (%)",
        "test error at best valid (%)",
        "final train loss",
        "passes",
        "updates",
        "optimiser seconds",
    ]
    for t in thresholds:
        header += [f"passes to {t:g} %", f"seconds to {t:g} %"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for entry in summary:
        cells = [
            entry["arm"],
            _format(entry["best_valid_error"], True),
            _format(entry["test_error"], True),
            _format(entry["final_train_loss"], digits=4),
            _format(entry["passes"], digits=1),
            _format(entry["updates"], digits=0),
            _format(entry["seconds"], digits=1),
        ]
        for t in thresholds:
            for kind in ("passes", "seconds"):
                value = entry[f"{kind}_to_{t:g}%"]
                reached = f" ({value[2]}/{entry['seeds']})" if value[2] < entry["seeds"] else ""
                cells.append(_format(value, digits=1) + (reached if value[0] is not None else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------- plots
def plot_bands(
    histories: dict[str, list[list[dict[str, Any]]]],
    x_key: str,
    y_key: str,
    path: str | Path,
    xlabel: str,
    ylabel: str,
    log_x: bool = False,
    scale: float = 1.0,
) -> None:
    """One line per arm (the mean over seeds) with a band of ± one sd; each
    seed's curve is interpolated onto the first seed's measurement points.

    Parameters
    ----------
    histories : dict
        ``{arm: [records of each seed]}``, each record a dict of evaluation columns.
    x_key, y_key : str
        The record columns plotted (e.g. ``"passes"`` and ``"valid_error"``).
    path : str or Path
        The PNG written.
    xlabel, ylabel : str
        The axes' labels.
    log_x : bool
        A logarithmic x axis (points at 0 are left out); the y axis always is.
    scale : float
        Multiplies every y value (100 shows fractions in percent).
    """
    figure = Figure(figsize=(6.4, 4.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    for arm, runs in histories.items():
        xs = np.array([r[x_key] for r in runs[0]])
        if log_x:
            xs = xs[xs > 0]
        curves = np.array(
            [np.interp(xs, [r[x_key] for r in run], [scale * r[y_key] for r in run]) for run in runs]
        )
        mean, sd = curves.mean(axis=0), curves.std(axis=0)
        axes.plot(xs, mean, label=arm)
        axes.fill_between(xs, mean - sd, mean + sd, alpha=0.25)
    if log_x:
        axes.set_xscale("log")
    axes.set_yscale("log")
    # plain numbers (2, 5, 10) read better than powers of ten, as in sda.plots
    for axis in [axes.yaxis, axes.xaxis] if log_x else [axes.yaxis]:
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(FuncFormatter(_two_and_five))
    axes.set(xlabel=xlabel, ylabel=ylabel)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    figure.savefig(path, dpi=120)


def plot_sensitivity(rows: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Final training loss and best validation error against m, one line per k.

    Parameters
    ----------
    rows : sequence of dict
        ``sensitivity.csv`` rows: ``m`` (batch rows), ``k`` (line searches per
        batch), ``final_train_loss`` and ``best_valid_error``.
    path : str or Path
        The PNG written.
    """
    figure = Figure(figsize=(9, 4), layout="constrained")
    FigureCanvasAgg(figure)
    loss_axes, error_axes = figure.subplots(1, 2)
    for k in sorted({r["k"] for r in rows}):
        mine = sorted((r for r in rows if r["k"] == k), key=lambda r: r["m"])
        ms = [r["m"] for r in mine]
        loss_axes.plot(ms, [r["final_train_loss"] for r in mine], marker="o", label=f"k = {k}")
        error_axes.plot(ms, [100 * r["best_valid_error"] for r in mine], marker="o", label=f"k = {k}")
    for axes, ylabel in [
        (loss_axes, "training loss at the budget"),
        (error_axes, "best validation error (%)"),
    ]:
        axes.set_xscale("log")
        axes.set(xlabel="batch size m", ylabel=ylabel)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize="small")
    figure.savefig(path, dpi=120)


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write ``rows`` as a CSV file whose columns are the first row's keys.

    Parameters
    ----------
    path : str or Path
        The file written (replaced if it exists).
    rows : sequence of dict
        At least one; every row has the first row's keys.
    """
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


# ------------------------------------------------------------- auto-encoder
def run_autoencoder(
    model: SdA,
    shared: Sequence[tuple[TensorSharedVariable, TensorSharedVariable]],
    pretrained: str | Path,
    settings: CompareSettings,
) -> dict[str, Any]:
    """The unrolled deep auto-encoder, by SGD and by mini-batch CG (first seed):
    validation reconstruction as excess cross-entropy over the data's own
    entropy and as squared error, both per image.

    Parameters
    ----------
    model : SdA
        The network whose layers are unrolled; each arm starts from ``pretrained``.
    shared : sequence of (TensorSharedVariable, TensorSharedVariable)
        ``(x, y)`` shared pairs of the training and validation sets (and test, unused).
    pretrained : str or Path
        The pre-trained weights (``.npz``) loaded before each arm.
    settings : CompareSettings
        Gives ``ae_lr``, ``cg_batch_size``, ``line_searches``, the budget and the first seed.

    Returns
    -------
    dict
        ``data_entropy`` (nats per image) and, for ``pretrained``, ``sgd`` and
        ``cg``, a dict of ``excess_cross_entropy`` and ``squared_error`` per
        image (the arms also ``passes`` and ``seconds``).
    """
    train_x, valid_x = shared[0][0], shared[1][0]
    autoencoder = DeepAutoencoder(model)
    cross_entropy = autoencoder.error_function(valid_x, settings.chunk_rows)
    squared = autoencoder.error_function(valid_x, settings.chunk_rows, squared=True)
    entropy = data_entropy(valid_x.get_value(borrow=True))

    def reconstruction():
        return {"excess_cross_entropy": cross_entropy() - entropy, "squared_error": squared()}

    results = {"data_entropy": entropy, "pretrained": reconstruction()}
    seed = settings.seeds[0]
    n_train = train_x.get_value(borrow=True).shape[0]
    for arm in ("sgd", "cg"):
        load_params(model, pretrained)
        report = print_record(f"auto-encoder {arm}", percent=False)
        monitor = autoencoder_monitor(autoencoder, train_x, valid_x, budget(settings), settings.chunk_rows)
        if arm == "sgd":
            train_fn = compile_rows_step(
                autoencoder.cost, autoencoder.params, [autoencoder.x], [train_x], settings.ae_lr
            )
            result = shuffled_sgd(
                model, train_fn, n_train, settings, seed, monitor, report, "auto-encoder SGD"
            )
        else:
            step = autoencoder_line_search(
                autoencoder,
                train_x,
                "cg",
                settings.cg_batch_size,
                settings.line_searches,
                seed,
                settings.chunk_rows,
            )
            result = finetune(model, step, monitor, on_record=report)
        results[arm] = {**reconstruction(), "passes": result.passes, "seconds": result.seconds}
    return results


def autoencoder_text(results: dict[str, Any]) -> list[str]:
    """The deep auto-encoder's section of ``comparison.md``.

    Parameters
    ----------
    results : dict
        :func:`run_autoencoder`'s results.

    Returns
    -------
    list of str
        Markdown lines: a heading, the data's entropy and a table of the arms.
    """
    lines = [
        "## Deep auto-encoder",
        "",
        f"Validation images; their own entropy is {results['data_entropy']:.1f} nats per image.",
        "",
        "| | excess cross-entropy (nats/image) | squared error per image | passes | seconds |",
        "| --- | --- | --- | --- | --- |",
        "| pre-trained | {excess_cross_entropy:.2f} | {squared_error:.2f} | 0 | 0 |".format(
            **results["pretrained"]
        ),
    ]
    for arm, label in [("sgd", "SGD"), ("cg", "mini-batch CG")]:
        lines.append(
            "| {label} | {excess_cross_entropy:.2f} | {squared_error:.2f} | {passes:.1f} "
            "| {seconds:.1f} |".format(label=label, **results[arm])
        )
    return lines


def measured_every(histories: dict) -> dict:
    """``{arm: median pass-equivalents between two measurements}``: what ``eval_every`` came to.

    Measurements come between updates, so an arm whose update is longer than
    ``eval_every`` measured after every update, less often than asked; None
    for an arm measured once.

    Parameters
    ----------
    histories : dict
        ``{arm: [records of each seed]}``, each record a dict with ``passes``.

    Returns
    -------
    dict
        ``{arm: float or None}``, rounded to 6 decimals.

    Examples
    --------
    >>> measured_every({"sgd": [[{"passes": 0.0}, {"passes": 0.1}, {"passes": 0.2}]]})
    {'sgd': 0.1}
    """
    spacing = {}
    for arm, runs in histories.items():
        gaps = np.concatenate([np.diff([record["passes"] for record in history]) for history in runs])
        spacing[arm] = round(float(np.median(gaps)), 6) if gaps.size else None
    return spacing


# -------------------------------------------------------------------- command
def compare(settings: CompareSettings, command: str) -> list[dict[str, Any]]:
    """Pre-train once, run every arm and seed, write the outputs; returns the summary.

    The data, the model and ``--pretrained`` are checked before the output
    folder (``settings.out``, or a dated one under runs/) is made, so a bad
    setting leaves nothing behind.

    Parameters
    ----------
    settings : CompareSettings
        Checked settings.
    command : str
        The command line, recorded in ``comparison.json`` and ``comparison.md``.

    Returns
    -------
    list of dict
        :func:`summarise`'s summary, one entry per arm.

    Raises
    ------
    SdAError
        Data that cannot be loaded or is too small for a batch size, ``pretrained``
        weights that do not fit the model, an output folder that holds files, or
        an arm that diverged.
    """
    apply_mode(settings.mode)
    dataset = load_data(settings)  # refuses batch sizes (and sensitivity_m) above the training rows
    model = build_model(settings, dataset)
    if settings.pretrained:
        load_params(model, settings.pretrained)  # weights that do not fit the model are refused here
    with experiment_folder(settings.out, "compare") as out:  # refuses a folder holding earlier results
        return _compare(settings, command, dataset, model, out)


def _compare(settings, command, dataset, model, out):
    shared = [shared_dataset(s) for s in (dataset.train, dataset.valid, dataset.test)]
    sizes = [len(s.y) for s in (dataset.train, dataset.valid, dataset.test)]
    print(
        f"sda: {engine.BACKEND}\ndata: {dataset.name}, train/valid/test = {'/'.join(map(str, sizes))}\n"
        f"output folder: {out.path}",
        flush=True,
    )
    started = time.perf_counter()
    if not settings.pretrained:
        pretrain(
            model,
            shared[0][0],
            settings.pretrain_batch_size,
            settings.pretrain_epochs,
            settings.pretrain_lr,
            cached=settings.cached,
            on_epoch=print_pretrain_epoch,
        )
        print(f"pre-training took {time.perf_counter() - started:.1f}s", flush=True)
    pretrained = out.path / "pretrained.npz"
    save_params(model, pretrained)

    rows, histories = [], {}
    for arm in settings.arms:
        for seed in settings.seeds:
            load_params(model, pretrained)
            row, history = run_arm(arm, seed, model, shared, settings, f"{arm} seed {seed}")
            rows.append(row)
            histories.setdefault(arm, []).append(history)
    summary = summarise(rows, settings.arms)

    sensitivity = []
    grid = settings.sensitivity_m or settings.sensitivity_k
    for m in (settings.sensitivity_m or [settings.cg_batch_size]) if grid else []:
        for k in settings.sensitivity_k or [settings.line_searches]:
            load_params(model, pretrained)
            result = batch_finetune(
                model, shared, settings, settings.seeds[0], print_record(f"cg m={m} k={k}"), "cg", m, k
            )
            sensitivity.append(
                dict(
                    m=m,
                    k=k,
                    best_valid_error=result.best_valid_error,
                    test_error=result.test_error,
                    final_train_loss=result.history[-1].train_loss,
                    passes=result.passes,
                    updates=result.iterations,
                    seconds=result.seconds,
                )
            )
    autoencoder = run_autoencoder(model, shared, pretrained, settings) if settings.autoencoder else None
    total_seconds = time.perf_counter() - started

    values = settings.to_dict()
    recorded = {
        **{name: values[name] for name in FLAGS},
        "measured_every": measured_every(histories),
        "rows": sizes,
        "backend": engine.BACKEND,
        "command": command,
        "model": {name: values[name] for name in MODEL_SETTINGS},
    }
    out.write_json(
        "comparison.json",
        {
            "settings": recorded,
            "runs": rows,
            "summary": summary,
            "histories": histories,
            "sensitivity": sensitivity,
            "autoencoder": autoencoder,
            "total_seconds": total_seconds,
        },
    )
    start = settings.pretrained or f"{settings.pretrain_epochs} epochs per layer"
    header = [
        f"Command: `{command}`  ",
        f"Data: {dataset.name}, train/valid/test = {'/'.join(map(str, sizes))}; hidden layers "
        f"{', '.join(map(str, settings.hidden_layers))}; pre-training: {start}; budget "
        f"{settings.budget_passes:g} pass-equivalents per arm; seeds {list(settings.seeds)}; "
        f"total {total_seconds / 60:.1f} min.  ",
        f"Backend: {engine.BACKEND}",
    ]
    text = write_tables_and_plots(out.path, rows, summary, histories, settings.thresholds, header)
    if sensitivity:
        write_csv(out.path / "sensitivity.csv", sensitivity)
        plot_sensitivity(sensitivity, out.path / "sensitivity.png")
        text += [
            "",
            "## Mini-batch CG: sensitivity to m and k (first seed)",
            "",
            "| m | k | best valid error (%) | final train loss | updates |",
            "|" + " --- |" * 5,
        ]
        text += [
            f"| {r['m']} | {r['k']} | {100 * r['best_valid_error']:.2f} | "
            f"{r['final_train_loss']:.4f} | {r['updates']} |"
            for r in sensitivity
        ]
    if autoencoder:
        text += [""] + autoencoder_text(autoencoder)
    (out.path / "comparison.md").write_text("\n".join(text) + "\n")
    print(markdown_table(summary, settings.thresholds), f"\nfiles in {out.path}", sep="\n")
    return summary


def write_tables_and_plots(
    folder: Path,
    rows: Sequence[dict[str, Any]],
    summary: Sequence[dict[str, Any]],
    histories: dict[str, list[list[dict[str, Any]]]],
    thresholds: Sequence[float],
    header: Sequence[str],
) -> list[str]:
    """Write ``runs.csv``, ``summary.csv`` and the validation-error and
    training-loss plots into ``folder``; return the lines of
    ``comparison.md`` (``header`` lines, then the table and how to read it).

    Parameters
    ----------
    folder : Path
        The output folder.
    rows : sequence of dict
        ``runs.csv`` rows (:func:`result_row`).
    summary : sequence of dict
        :func:`summarise`'s entries.
    histories : dict
        ``{arm: [records of each seed]}``.
    thresholds : sequence of float
        Validation errors (percent) whose passes and seconds to reach are tabled.
    header : sequence of str
        Markdown lines that open ``comparison.md`` (the command, the data, ...).

    Returns
    -------
    list of str
        The lines of ``comparison.md``, without its optional sections.
    """
    write_csv(folder / "runs.csv", rows)
    write_csv(
        folder / "summary.csv",
        [
            {k: v if not isinstance(v, tuple) else _format(v, digits=6) for k, v in entry.items()}
            for entry in summary
        ],
    )
    for y_key, ylabel, scale, name in [
        ("valid_error", "validation error (%)", 100, "valid_error"),
        ("train_loss", "training loss", 1, "train_loss"),
    ]:
        plot_bands(
            histories,
            "passes",
            y_key,
            folder / f"{name}_vs_passes.png",
            "pass-equivalents",
            ylabel,
            log_x=True,
            scale=scale,
        )
        plot_bands(
            histories,
            "seconds",
            y_key,
            folder / f"{name}_vs_seconds.png",
            "optimiser seconds",
            ylabel,
            scale=scale,
        )
    return [
        "# Fine-tuning comparison",
        "",
        *header,
        "",
        markdown_table(summary, thresholds),
        "",
        "Mean ± sd over seeds. Pass-equivalents: rows pushed through forward and backward, "
        "line-search trial points included, over the training rows. Seconds: the optimiser's "
        "wall time, the evaluator's excluded. Thresholds: over the seeds that reached them "
        "(how many, when not all). The full-batch arms see every row at every evaluation, so "
        "their seed changes only the order of summation.",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m sda.compare`` with these arguments.

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
    command = " ".join(["python -m sda.compare", *argv])
    args = build_parser().parse_args(argv)
    return exit_status(lambda: compare(settings_from_args(args, CompareSettings, DEFAULTS), command))


if __name__ == "__main__":
    sys.exit(main())
