"""``python -m sda.run``: pre-train an SdA, fine-tune it, and keep the results.

Every hyper-parameter is a flag; ``--preset`` picks a starting point
(``default``, ``tutorial`` or ``demo``) whose values any flag overrides.
Results go to a run folder: ``config.json``, ``metrics.csv``, ``model.npz``,
``summary.json``, ``steps.csv``, ``filters.png``, ``reconstructions.png`` and
``checkpoint.npz``, from which ``--resume RUN_DIR`` continues a run that was
stopped.

Every setting is checked before the folder is made. The folder is locked
while a run uses it, and ``summary.json`` says how the run ended: "done",
"diverged" (a cost became NaN or infinite, or ended over ten times where
it began), "failed" (another error, or a model that never beat always
guessing the commonest class; the model and checkpoint of the last good
point stay as they were) or "interrupted" (with how to resume). A run
that diverged or failed exits with status 2.
"""

import argparse
import contextlib
import dataclasses
import json
import os
import resource
import sys
from collections.abc import Callable, Sequence
from typing import Any, cast

from sda import engine
from sda.checkpoint import Checkpoint, Progress
from sda.cli import (
    add_settings_flags,
    apply_mode,
    build_model,
    given_settings,
    load_data,
    print_pretrain_epoch,
)
from sda.config import PRESETS, RunConfig, check_optimiser_flags, preset
from sda.data import Dataset, shared_dataset
from sda.errors import (
    SdAError,
    TrainingDiverged,
    TrainingFailed,
    check_beats_chance,
    check_cost_end,
    exit_status,
    recorded_warnings,
)
from sda.finetune import (
    FinetuneResult,
    MinibatchSGD,
    Monitor,
    PassBudget,
    PatienceRule,
    Record,
    Step,
    StepRecord,
    classifier_line_search,
    classifier_monitor,
)
from sda.finetune import finetune as finetune_loop
from sda.graph_types import TensorSharedVariable
from sda.pictures import save_run_pictures
from sda.rundir import METRICS, RunDir, load_params, read_text
from sda.SdA import SdA
from sda.train import pretrain
from sda.trained import model_metadata
from sda.watch import FINETUNING, check_params

__all__ = ["build_model", "build_parser", "main", "parse", "run"]

PRESET_DEFAULTS = {
    "default": PRESETS["default"],
    **{f"--preset {name}": values for name, values in PRESETS.items() if name != "default"},
}


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m sda.run``: ``--preset``, ``--resume`` and a flag per setting.

    Returns
    -------
    argparse.ArgumentParser
        Its ``parse_args`` gives only the flags given (the others are suppressed),
        so that :func:`parse` can tell a given value from a preset's.
    """
    parser = argparse.ArgumentParser(
        prog="python -m sda.run",
        description="Pre-train an SdA, fine-tune it, and keep the results in a run folder.",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=argparse.SUPPRESS,
        help="starting values; flags override them (default: default)",
    )
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its last checkpoint (or from the "
        "start if it was stopped before one), with the settings in its "
        "config.json (no other flags)",
    )
    names = [f.name for f in dataclasses.fields(RunConfig) if f.name != "preset"]
    add_settings_flags(parser, RunConfig, PRESET_DEFAULTS, names)
    return parser


def parse(argv: Sequence[str] | None = None) -> tuple[RunConfig | None, str | None]:
    """``(config, resume_dir)`` from the command line; ``config`` is None when resuming
    (``run`` reads it from the folder).

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    config : RunConfig or None
        The preset with the given flags applied; None with ``--resume``.
    resume_dir : str or None
        The folder ``--resume`` names; None for a new run.

    Raises
    ------
    SdAError
        ``--resume`` is given with other settings, or a flag the chosen
        optimiser would ignore is given.
    SettingError
        A setting is out of its range or choices.
    """
    args = build_parser().parse_args(argv)
    given = given_settings(args, RunConfig)
    if args.resume is None:
        config = preset(getattr(args, "preset", "default"), **given)
        # a flag that would be silently ignored
        check_optimiser_flags(config.finetune, given, budget=config.budget_passes is not None)
        return config, None
    if given or hasattr(args, "preset"):
        raise SdAError(
            f"--resume takes no other settings (got {sorted(given) or ['preset']}): the "
            "run continues with the config.json in its folder"
        )
    return None, args.resume


def read_config(run_dir: RunDir) -> RunConfig:
    """The ``RunConfig`` saved in ``run_dir``; ``SdAError`` naming config.json if it is unusable.

    Parameters
    ----------
    run_dir : RunDir
        The folder of a run started by ``python -m sda.run``.

    Returns
    -------
    RunConfig
        The settings in its ``config.json``, checked.

    Raises
    ------
    SdAError
        The folder holds no ``config.json``, or it cannot be read or holds bad settings.
    """
    path = run_dir.path / "config.json"
    if not path.exists():
        raise SdAError(
            f"cannot resume {run_dir.path}: it holds no config.json; give the folder "
            "of a run started by python -m sda.run"
        )
    return RunConfig.from_json(read_text(path, "run folder"), source=str(path))


class Reporter:
    """Prints one line per epoch, appends it to ``metrics.csv``, then calls ``on_epoch``.

    It also keeps each phase's first and last cost (``costs``: ``{(phase,
    layer): [first, last]}``), so that a run whose cost ended far above its
    start can be failed. A phase's start is its first minibatch's cost; for a
    phase begun before a resume, its first epoch's mean in ``metrics.csv``
    (one minibatch of a half-trained model can cost far less than the start).

    Parameters
    ----------
    run_dir : RunDir
        The run folder whose ``metrics.csv`` and ``steps.csv`` grow.
    rows : int
        Rows of ``metrics.csv`` already written by the run being resumed
        (their costs seed ``costs``); 0 for a new run.
    step_every : int
        Keep every ``step_every``-th minibatch cost in ``steps.csv``; 0 keeps none.
    on_epoch : callable, optional
        Called with each record's row (a dict) after it is printed and written.
    """

    def __init__(
        self,
        run_dir: RunDir,
        rows: int = 0,
        step_every: int = 0,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
    ):
        self.run_dir, self.rows, self.step_every, self.on_epoch = run_dir, rows, step_every, on_epoch
        self.costs: dict[tuple[str, int | None], list[float]] = {}
        for row in METRICS.read(run_dir.path)[:rows] if rows else ():
            self._cost(
                {
                    "phase": row["phase"],
                    "layer": int(row["layer"]) if row["layer"] else None,
                    "cost": float(row["cost"]),
                }
            )

    def _cost(self, record):
        first_last = self.costs.setdefault((record["phase"], record.get("layer")), [record["cost"]] * 2)
        first_last[1] = record["cost"]

    def step(self, record: StepRecord | dict[str, Any]) -> None:
        """Keep every ``step_every``-th minibatch cost in ``steps.csv``.

        Parameters
        ----------
        record : StepRecord or dict
            One minibatch: fine-tuning's :class:`~sda.finetune.StepRecord`, or
            pre-training's dict with ``phase``, ``layer``, ``step`` and ``cost``.
        """
        row = _row(record)
        self.costs.setdefault((row["phase"], row.get("layer")), [row["cost"]] * 2)
        if self.step_every and row["step"] % self.step_every == 0:
            self.run_dir.append_step(row)

    def __call__(self, record: Record | dict[str, Any]) -> None:
        """Take a pre-training record (a dict) or a fine-tuning one (``sda.finetune``'s)."""
        row = _row(record)
        self._cost(row)
        self.run_dir.append_metrics(row)
        self.rows += 1
        if isinstance(record, dict):
            print_pretrain_epoch(record)
        else:  # SGD reports epochs; cg/lbfgs evaluation points, in pass-equivalents
            print(
                f"fine-tune {record.where()}  cost {record.cost:.4f}  "
                f"valid {100 * record.valid_error:5.2f}%  "
                f"best {100 * record.best_valid_error:5.2f}%  "
                f"test@best {100 * record.test_error:5.2f}%  {record.seconds:7.1f}s",
                flush=True,
            )
        if self.on_epoch is not None:
            self.on_epoch(row)


def _row(record):
    """A record as the dict the run folder's tables take (pre-training's already is one)."""
    return record if isinstance(record, dict) else record.row()


def peak_memory_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes).

    Returns
    -------
    float
        In MiB, rounded to 0.1.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def early_stopping(config: RunConfig, n_train_batches: int) -> PatienceRule:
    """The run's ``PatienceRule`` for ``n_train_batches`` per epoch.

    Patience in epochs becomes iterations here; validation comes every
    ``min(n_train_batches, patience // 2)`` iterations, as in the tutorial.

    Parameters
    ----------
    config : RunConfig
        Gives ``patience`` (in epochs), ``patience_increase`` and ``improvement_threshold``.
    n_train_batches : int
        Fine-tuning minibatches per epoch.

    Returns
    -------
    sda.finetune.PatienceRule
    """
    return PatienceRule(
        config.patience_iterations(n_train_batches),
        config.patience_increase,
        config.improvement_threshold,
        config.validation_frequency(n_train_batches),
    )


def finetune(
    model: SdA,
    shared: Sequence[tuple[TensorSharedVariable, TensorSharedVariable]],
    config: RunConfig,
    report: Reporter,
    progress: Progress,
    checkpoint: Checkpoint,
) -> FinetuneResult:
    """Fine-tune with the optimiser ``config.finetune`` names: SGD under the
    tutorial's patience rule (or, with ``budget_passes``, under a pass budget
    without early stopping), or CG / L-BFGS on batches under a pass budget.

    Parameters
    ----------
    model : SdA
        The pre-trained network; the best parameters measured are left in it.
    shared : sequence of (TensorSharedVariable, TensorSharedVariable)
        ``(x, y)`` shared pairs of the training, validation and test sets.
    config : RunConfig
        The run's settings (optimiser, rates, batch sizes, stopping rule).
    report : Reporter
        Gets every record and minibatch cost.
    progress, checkpoint : Progress, Checkpoint
        The training state to continue from, and where it is saved.

    Returns
    -------
    sda.finetune.FinetuneResult

    Raises
    ------
    sda.errors.TrainingDiverged
        A cost, gradient or parameter is not finite.
    """
    n_train = len(shared[0][1].get_value(borrow=True))
    step: Step
    budget = PassBudget(config.eval_every, config.budget_passes, config.batch_patience)
    if config.finetune != "sgd":
        step = classifier_line_search(
            model,
            shared[0],
            config.finetune,
            min(config.finetune_rows(), n_train),
            config.line_searches,
            config.warmup_epochs,
            config.weight_decay,
            config.finetune_corruption,
            config.seed,
        )
        monitor = classifier_monitor(
            model, shared, budget, weight_decay=config.weight_decay, test_every=config.test_every_eval
        )
    else:
        train_fn, valid_score, test_score = model.build_finetune_functions(
            shared,
            config.finetune_rows(),
            config.finetune_lr,
            config.eval_batch_size,
            config.momentum,
            config.weight_decay,
            config.finetune_corruption,
            config.finetune_hidden_dropout,
            config.max_norm,
            momentum_schedule=config.momentum_ramp is not None,
        )
        ramp = None if config.momentum_ramp is None else (config.momentum_ramp, config.momentum_ramp_epochs)
        step = MinibatchSGD(
            train_fn, n_train, config.finetune_rows(), lr_decay=config.finetune_lr_decay, momentum_ramp=ramp
        )
        if config.budget_passes is not None:  # measured like cg/lbfgs, with no early stop
            monitor = classifier_monitor(
                model,
                shared,
                PassBudget(config.eval_every, config.budget_passes),
                weight_decay=config.weight_decay,
                test_every=config.test_every_eval,
            )
        else:
            monitor = Monitor(
                early_stopping(config, step.n_batches), model.params, valid_score.error, test_score.error
            )
    return finetune_loop(
        model,
        step,
        monitor,
        max_epochs=config.finetune_epochs,
        on_record=report,
        on_step=report.step,
        show_progress=config.progress,
        progress=progress,
        checkpoint=checkpoint,
    )


def resume_hint(run_dir: RunDir) -> str:
    """How to continue the run in ``run_dir``: with ``--resume``, from its checkpoint if it has one.

    Parameters
    ----------
    run_dir : RunDir
        The run folder.

    Returns
    -------
    str
        A sentence naming the command to type.
    """
    if (run_dir.path / "checkpoint.npz").is_file():
        return f"resume it with: python -m sda.run --resume {run_dir.path}"
    return (
        f"it had saved no checkpoint yet; python -m sda.run --resume {run_dir.path} starts it "
        "again from the beginning"
    )


def run(
    config: RunConfig | None = None,
    resume_dir: str | os.PathLike[str] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train as ``config`` says, or continue the run in ``resume_dir``;
    return the summary dict (also written to the run folder).

    Parameters
    ----------
    config : RunConfig or None
        The settings of a new run; checked before anything is made. When
        resuming it may be None (the folder's ``config.json`` is used) and
        otherwise must equal it.
    resume_dir : path or None
        A run folder to continue from its checkpoint (or from the start, if
        it was stopped before its first checkpoint).
    on_epoch : callable or None
        Called with every per-epoch record after the run's own reporting; an
        exception it raises stops the run (``summary.json`` records it).

    Returns
    -------
    dict
        The summary: best validation error, test error, epochs, timings.

    Raises
    ------
    SdAError
        For bad settings, damaged or foreign folder files, a folder in use by
        another process, or a diverged run.
    TypeError
        Neither ``config`` nor ``resume_dir`` is given.
    """
    if config is None and resume_dir is None:
        raise TypeError("run() needs a config, a resume_dir, or both")
    run_dir = RunDir.existing(resume_dir) if resume_dir is not None else None
    try:
        if run_dir is not None:
            run_dir.lock()  # before reading anything: a second process is refused here
            stored = read_config(run_dir)
            if config is not None and config != stored:
                raise SdAError(
                    f"the settings given differ from {run_dir.path / 'config.json'}: "
                    "a resumed run keeps its own settings"
                )
            config = stored
        config = cast(RunConfig, config).check()  # given, or read from resume_dir
        apply_mode(config.mode)
        dataset = load_data(config)
        model = build_model(config, dataset)
        if config.pretrained is not None:  # a checkpoint, when there is one, replaces them below
            load_params(model, config.pretrained)
        progress = Progress()
        if run_dir is None:
            run_dir = RunDir.create(config.out, config.name, config.preset)
            run_dir.write_json("config.json", config.to_dict())
        checkpoint = Checkpoint(run_dir.path / "checkpoint.npz", model, config.checkpoint_every)
        if resume_dir is not None:
            if checkpoint.path.exists():
                progress = checkpoint.load()  # checked against the model before anything is set
                check_same_settings(progress.settings, config, checkpoint.path)
            run_dir.rewind(progress.metrics_rows, progress.steps)
        progress.settings = training_settings(config)
        return _train(
            config, dataset, model, run_dir, checkpoint, progress, on_epoch, resuming=resume_dir is not None
        )
    finally:
        if run_dir is not None:
            run_dir.unlock()


# settings that do not change what is trained: a moved folder or another backend may resume
NOT_TRAINING = ("out", "name", "progress", "mode", "data")


def training_settings(config: RunConfig) -> dict[str, Any]:
    """The settings a checkpoint records: all but those in ``NOT_TRAINING``.

    Parameters
    ----------
    config : RunConfig
        The run's settings.

    Returns
    -------
    dict
        Setting name to its JSON value.
    """
    return {k: v for k, v in json.loads(config.to_json()).items() if k not in NOT_TRAINING}


def check_same_settings(saved: dict[str, Any], config: RunConfig, path: os.PathLike[str]) -> None:
    """Refuse to resume when config.json no longer says what the checkpoint was trained with.

    Parameters
    ----------
    saved : dict
        The settings the checkpoint recorded (:func:`training_settings` when it was saved).
    config : RunConfig
        The settings in the folder's ``config.json`` now.
    path : path-like
        The checkpoint, named in the error.

    Raises
    ------
    SdAError
        A setting that changes training differs (up to three are named).
    """
    changed = sorted(k for k, v in training_settings(config).items() if k in saved and saved[k] != v)
    if changed:
        shown = ", ".join(f"{k} {saved[k]!r} -> {getattr(config, k)!r}" for k in changed[:3])
        raise SdAError(
            f"config.json differs from the settings {path} was saved with ({shown}): "
            "restore config.json, or start a new run with the new settings"
        )


def _train(config, dataset, model, run_dir, checkpoint, progress, on_epoch, resuming):
    print(
        f"sda: {engine.BACKEND}\ndata: {dataset.name}, train/valid/test = "
        f"{len(dataset.train.y)}/{len(dataset.valid.y)}/{len(dataset.test.y)}\n"
        f"run folder: {run_dir.path}",
        flush=True,
    )
    if resuming:
        print(
            f"resuming: {progress.phase}, layer {progress.layer}, epoch {progress.epoch}, "
            f"batch {progress.batch}",
            flush=True,
        )
    report = Reporter(run_dir, progress.metrics_rows, config.log_every, on_epoch)
    checkpoint.on_save = lambda p: setattr(p, "metrics_rows", report.rows)
    shared = [shared_dataset(s) for s in (dataset.train, dataset.valid, dataset.test)]
    try:
        with recorded_warnings(progress.warnings):
            history, result = _pretrain_and_finetune(config, model, shared, report, progress, checkpoint)
    except KeyboardInterrupt:
        hint = resume_hint(run_dir)
        _record_end(run_dir, "interrupted", progress, resume=hint)
        raise KeyboardInterrupt(f"the run in {run_dir.path} was stopped; {hint}") from None
    except TrainingDiverged as error:
        # resuming would diverge again at the same settings: a new run is the way on
        _record_end(
            run_dir,
            "diverged",
            progress,
            error=f"{type(error).__name__}: {error}",
            next_step="start a new run with a smaller learning rate",
        )
        raise
    except Exception as error:
        _record_end(
            run_dir, "failed", progress, error=f"{type(error).__name__}: {error}", resume=resume_hint(run_dir)
        )
        raise
    run_dir.save_model(model, metadata=model_metadata(model, dataset.name, dataset.image_shape))
    print(
        save_run_pictures(model, dataset, run_dir.path, config.corruption_levels[0], config.seed), flush=True
    )
    seconds = progress.seconds
    summary = {
        "status": "done",
        "best_valid_error": result.best_valid_error,
        "test_error": result.test_error,
        "best_epoch": result.best_epoch,
        "finetune_epochs_run": result.epochs_run,
        "pretrain_final_costs": [costs[-1] for costs in history if costs],
        "seconds": {**seconds, "total": seconds["pretrain"] + seconds["finetune"]},
        "backend": engine.BACKEND,
        "peak_memory_mib": peak_memory_mib(),
        "warnings": progress.warnings,
    }
    where = f"epoch {result.best_epoch}"
    if uses_pass_budget(config):  # its best_epoch counts evaluations: say where in passes instead
        summary.update(
            passes=result.passes,
            best_passes=result.best_passes,
            updates=result.iterations,
            stop_reason=result.stop_reason,
        )
        where = f"at {result.best_passes:.2f} of {result.passes:.2f} passes; stopped by {result.stop_reason}"
    failure = training_failure(config, dataset, report.costs, result.best_valid_error)
    if failure is not None:  # the files stay for inspection; summary.json says it failed, and why
        summary.update(
            status="diverged" if isinstance(failure, TrainingDiverged) else "failed",
            error=f"{type(failure).__name__}: {failure}",
            next_step="start a new run with the setting the error names changed",
        )
        run_dir.write_json("summary.json", summary)
        raise failure
    run_dir.write_json("summary.json", summary)
    warned = f"; {len(progress.warnings)} warning(s), listed in summary.json" if progress.warnings else ""
    print(
        f"best validation error {100 * result.best_valid_error:.2f}% ({where}), "
        f"test error {100 * result.test_error:.2f}%; pre-training {seconds['pretrain'] / 60:.1f} min, "
        f"fine-tuning {seconds['finetune'] / 60:.1f} min; files in {run_dir.path}{warned}"
    )
    return summary


def uses_pass_budget(config: RunConfig) -> bool:
    """Whether fine-tuning measures and stops by pass-equivalents (cg/lbfgs always, sgd with a budget).

    Parameters
    ----------
    config : RunConfig
        The run's settings.

    Returns
    -------
    bool
    """
    return config.finetune != "sgd" or config.budget_passes is not None


def _pretrain_and_finetune(config, model, shared, report, progress, checkpoint):
    # with pretrained weights (set from the file, or the checkpoint) there is nothing to pre-train
    history = (
        []
        if config.pretrained is not None
        else pretrain(
            model,
            shared[0][0],
            **config.pretrain_arguments(),
            on_epoch=report,
            on_step=report.step,
            show_progress=config.progress,
            progress=progress,
            checkpoint=checkpoint,
        )
    )
    result = finetune(model, shared, config, report, progress, checkpoint)
    check_params(model, FINETUNING)  # never save a model that is not finite
    return history, result


def training_failure(
    config: RunConfig,
    dataset: Dataset,
    costs: dict[tuple[str, int | None], list[float]],
    best_valid_error: float,
) -> TrainingFailed | None:
    """The ``TrainingFailed`` a finished run deserves, or None.

    A phase whose cost ended ``COST_RISE`` times above where it began has
    diverged (``check_cost_end``), and so has a model that never beat chance
    on the validation set (``check_beats_chance``); either error names the
    learning rate to lower.

    Parameters
    ----------
    config : RunConfig
        The run's settings, whose learning rates the error names.
    dataset : Dataset
        The data trained on; its validation labels set the chance level.
    costs : dict
        ``{(phase, layer): [first, last]}`` costs of each phase (``Reporter.costs``).
    best_valid_error : float
        The best validation error fine-tuning reached, in [0, 1].

    Returns
    -------
    TrainingFailed or None
        The error (a ``TrainingDiverged`` for a cost that rose), not raised; None when training worked.
    """
    rates = {
        "pretrain": f"lower --pretrain-lr (now {config.pretrain_lr:g})",
        "finetune": f"lower --finetune-lr (now {config.finetune_lr:g})"
        if config.finetune == "sgd"
        else "pre-train with a lower --pretrain-lr, or give a larger --finetune-batch-size",
    }
    try:
        for (phase, layer), (first, last) in costs.items():
            name = f"pre-training layer {layer}" if phase == "pretrain" else "fine-tuning"
            check_cost_end(name, first, last, rates[phase])
        finetune_lr = f" or --finetune-lr (now {config.finetune_lr:g})" if config.finetune == "sgd" else ""
        check_beats_chance(
            best_valid_error, dataset.valid.y, f"{rates['pretrain']}{finetune_lr}, or train for more epochs"
        )
    except TrainingFailed as failure:
        return failure
    return None


def _record_end(run_dir, status, progress, **details):
    """Say in ``summary.json`` how the run ended; the model and checkpoint are left alone."""
    where = {
        "phase": progress.phase,
        "layer": progress.layer,
        "epoch": progress.epoch,
        "step": progress.steps,
    }
    details["warnings"] = progress.warnings
    with contextlib.suppress(OSError):  # the run's own error matters more than this note
        run_dir.write_json("summary.json", {"status": status, "stopped_at": where, **details})


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m sda.run`` with these arguments.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    int
        The exit status: 0 when done, 2 for bad input or a run that diverged or failed.
    """
    return exit_status(lambda: run(*parse(argv)))


if __name__ == "__main__":
    sys.exit(main())
