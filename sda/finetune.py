"""One fine-tuning loop: an interchangeable optimiser step, one monitor, one result.

:func:`finetune` walks the training data epoch by epoch and batch by batch.
What happens on a batch is the **step**'s business:

- :class:`MinibatchSGD` takes one SGD update per minibatch, with the minibatches
  in data order (the tutorial's loop, ``sda.run``) or reshuffled every epoch
  by a seed (``sda.compare``). Momentum, weight decay and input dropout are
  in the compiled function it is given (``SdA.build_finetune_functions`` or
  :func:`compile_rows_step`); it decays the learning rate per epoch.
- :class:`BatchLineSearch` runs ``k`` iterations (line searches) of conjugate
  gradient or L-BFGS on batches of ``m`` rows reshuffled every epoch, as
  Hinton & Salakhutdinov (2006) did, optionally training the top layer
  alone in the first epochs; ``m`` = every row is full-batch.

The :class:`Monitor` measures the model (the validation error, or a
:class:`~sda.optimize.DeepAutoencoder`'s validation loss; the training loss
when asked), keeps the best parameters and the test error there, and applies
a stopping **policy**: :class:`PatienceRule` (the tutorial's rule, in
iterations, measured every ``validation_frequency`` iterations, one
:class:`EpochRecord` per epoch) or :class:`PassBudget` (measured every
``eval_every`` pass-equivalents, one :class:`Evaluation` each, stopping at a
budget or after ``no_change`` evaluations without improvement). ``max_epochs``
always applies. The loop's whole state is in ``Progress``/``Checkpoint``
(``sda.checkpoint``), so a loaded ``Progress`` continues exactly.

Every cost, gradient and checked parameter must be finite: otherwise the run
stops with ``sda.errors.TrainingDiverged`` before the value can reach a
checkpoint or the best parameters.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import pytensor
import pytensor.tensor as pt

from sda.batching import n_batches
from sda.checkpoint import Checkpoint, Progress
from sda.checks import check_choice, check_count, check_decay, check_passes
from sda.constraints import DEFAULT_BATCH_SIZE, DEFAULT_CHUNK_ROWS, check_setting
from sda.errors import SettingError, check_finite
from sda.optimize import (
    METHODS,
    PHASES,
    DeepAutoencoder,
    FlatObjective,
    StopSearch,
    autoencoder_measures,
    classifier_measures,
    run_line_searches,
    single_thread_scipy,
)
from sda.sgd import SGDStep as CompiledStep
from sda.sgd import sgd_updates
from sda.watch import FINETUNING, EpochCostWatch, check_params, noop, progress_bar

BUDGET_TOLERANCE = 1e-9  # pass-equivalents: a budget reached up to rounding is reached


# ------------------------------------------------------------------ records
@dataclass(kw_only=True)
class _Row:
    """A record that becomes one row of a CSV file or one JSON object."""

    def row(self) -> dict[str, Any]:
        """The record as a dict: its fields are the columns of ``metrics.csv``,
        ``steps.csv`` or ``comparison.json``."""
        return asdict(self)


@dataclass(kw_only=True)
class EpochRecord(_Row):
    """One fine-tuning epoch under the :class:`PatienceRule` (a row of ``metrics.csv``).

    ``cost`` is the epoch's mean minibatch cost; ``valid_error`` the last
    validation error measured; ``test_error`` the test error at the best
    validation point; ``seconds`` the fine-tuning time so far.
    """

    phase: str = "finetune"
    epoch: int  # counted from 1
    cost: float
    valid_error: float
    best_valid_error: float
    test_error: float
    seconds: float

    def where(self) -> str:
        """Where in training this record was taken, as the run prints it.

        Returns
        -------
        str
            ``"epoch"`` and the epoch number, right-aligned in four places.

        Examples
        --------
        >>> EpochRecord(epoch=3, cost=0.5, valid_error=0.1, best_valid_error=0.1, test_error=0.1,
        ...             seconds=1.0).where()
        'epoch    3'
        """
        return f"epoch {self.epoch:4d}"


@dataclass(kw_only=True)
class Evaluation(_Row):
    """One measurement under a :class:`PassBudget`.

    ``epoch`` numbers the evaluations from 0 (the starting point);
    ``passes`` is the pass-equivalents spent when it was taken, ``data_epoch``
    the epoch over the data under way, ``updates`` the parameter updates so
    far and ``seconds`` the optimiser's time (measuring excluded). ``cost``
    and ``train_loss`` are the training objective over every row (plus the
    weight penalty), ``valid_error`` the validation error (an auto-encoder's:
    its mean validation loss per row). ``test_error`` is the test error at
    the best point so far; ``current_test_error`` the test error of the model
    as it is at this point, measured only when the :class:`Monitor` is asked
    to test at every evaluation (None otherwise).
    """

    phase: str = "finetune"
    epoch: int
    passes: float
    data_epoch: int
    updates: int
    seconds: float
    cost: float
    train_loss: float
    valid_error: float
    best_valid_error: float
    test_error: float
    current_test_error: float | None = None

    def where(self) -> str:
        """Where in training this record was taken, as the run prints it.

        Returns
        -------
        str
            The pass-equivalents spent, to two decimals, and ``"passes"``.
        """
        return f"{self.passes:7.2f} passes"


@dataclass(kw_only=True)
class StepRecord(_Row):
    """One SGD minibatch (a row of ``steps.csv``); ``step`` counts over the whole run."""

    phase: str = "finetune"
    epoch: int  # epochs finished before this step, from 0
    step: int
    iteration: int
    cost: float


Record = EpochRecord | Evaluation


@dataclass
class FinetuneResult:
    """What a fine-tuning run reached and cost; the best parameters are left in the model.

    ``best_epoch`` is the epoch of the best validation error under the
    :class:`PatienceRule` and the number of the best :class:`Evaluation`
    under a :class:`PassBudget`; ``epochs_run`` counts the data epochs begun;
    ``iterations`` the parameter updates (for CG, one per line search).
    ``passes`` counts rows pushed through forward and backward over the
    training-set size (line-search trial points included); ``best_passes``
    where the best point was measured (NaN under the patience rule).
    ``seconds`` is the optimiser's time, ``eval_seconds`` the measuring time.
    ``stop_reason`` is ``"patience"``, ``"budget"`` or ``"max_epochs"``.
    """

    best_valid_error: float
    test_error: float
    best_epoch: int
    epochs_run: int
    iterations: int
    passes: float
    best_passes: float
    seconds: float
    eval_seconds: float
    stop_reason: str
    history: list[Record] = field(default_factory=list)


# ----------------------------------------------------------------- policies
@dataclass
class PatienceRule:
    """The tutorial's patience rule, counted in minibatch iterations.

    The run lasts ``patience`` iterations at least; a validation error below
    ``improvement_threshold`` times the best so far raises it to
    ``patience_increase`` times the iterations done. Validation comes every
    ``validation_frequency`` iterations (by default ``min(batches per epoch,
    patience // 2)``, as in the tutorial). A ``patience`` of the whole budget
    (``epochs * batches``) never stops early.
    """

    patience: int = 10_000
    patience_increase: float = 2.0
    improvement_threshold: float = 0.995
    validation_frequency: int | None = None

    def __post_init__(self) -> None:
        for name in ("patience", "patience_increase", "improvement_threshold"):
            check_setting(name, getattr(self, name))
        if self.validation_frequency is not None:
            check_count("validation_frequency", self.validation_frequency)

    def frequency(self, n_batches: int) -> int:
        """Iterations between validations for ``n_batches`` minibatches per epoch.

        Parameters
        ----------
        n_batches : int
            Minibatches (batches) per epoch over the training rows.

        Returns
        -------
        int
            ``validation_frequency`` when it is set, else ``min(n_batches,
            max(1, patience // 2))`` iterations.

        Examples
        --------
        >>> PatienceRule(patience=10_000).frequency(50), PatienceRule(patience=40).frequency(50)
        (50, 20)
        """
        return self.validation_frequency or min(n_batches, max(1, self.patience // 2))

    def update(self, progress: Progress, valid_error: float) -> bool:
        """Record one validation error in ``progress``; return whether it is the best yet.

        A real improvement (below ``improvement_threshold`` times the best so
        far) raises the patience to at least ``patience_increase`` times the
        iterations done, as in the tutorial; a smaller one only becomes the
        new best.

        Parameters
        ----------
        progress : Progress
            The fine-tuning state. Its ``iteration`` (updates so far),
            ``patience`` (in iterations) and ``best_valid_error`` are read;
            ``valid_error`` is set, and at a new best ``best_valid_error``,
            ``best_epoch`` (the epoch under way, from 1) and possibly
            ``patience``.
        valid_error : float
            The validation error just measured; lower is better.

        Returns
        -------
        bool
            Whether ``valid_error`` is below the best so far.

        Examples
        --------
        >>> progress = Progress(iteration=300, patience=500, best_valid_error=0.1)
        >>> PatienceRule(patience_increase=2.0).update(progress, 0.05), progress.patience
        (True, 600)
        """
        progress.valid_error = valid_error
        if not valid_error < progress.best_valid_error:
            return False
        if valid_error < progress.best_valid_error * self.improvement_threshold:
            progress.patience = max(progress.patience, int(progress.iteration * self.patience_increase))
        progress.best_valid_error, progress.best_epoch = valid_error, progress.epoch + 1
        return True


@dataclass
class PassBudget:
    """Measure every ``eval_every`` pass-equivalents; stop at a budget or without improvement.

    Points fall every ``eval_every`` pass-equivalents from 0 (the starting
    point); a step coarser than that is measured at the first update past
    each point. The run stops once ``budget_passes`` are spent (checked after
    every update, so the last line search may overrun it a little) or after
    ``no_change`` evaluations without a lower validation error.
    """

    eval_every: float = 0.5
    budget_passes: float | None = None
    no_change: int | None = None

    def __post_init__(self) -> None:
        check_passes("eval_every", self.eval_every)
        check_passes("budget_passes", self.budget_passes, allow_none=True)
        if self.no_change is not None:
            check_count("patience", self.no_change)


# ------------------------------------------------------------------ monitor
class Monitor:
    """Measures the model, keeps its best parameters and applies the stopping policy.

    Parameters
    ----------
    policy : PatienceRule or PassBudget
        When to measure and when to stop.
    params : sequence of shared variables
        What to keep at the best point (the model's, or an auto-encoder's).
    valid_error : callable
        ``valid_error() -> float``: lower is better.
    test_error : callable, optional
        Called at each new best; NaN in the records without it.
    train_loss : callable, optional
        ``train_loss() -> float``, measured at each :class:`Evaluation`
        (NaN in the records without it).
    test_every : bool
        Under a :class:`PassBudget`, also measure ``test_error`` at every
        evaluation (each record's ``current_test_error``), e.g. to draw the
        test error against pass-equivalents; needs ``test_error``.

    Raises
    ------
    SettingError
        ``test_every`` under the :class:`PatienceRule`, or without ``test_error``.
    """

    def __init__(
        self,
        policy: PatienceRule | PassBudget,
        params: Sequence[Any],
        valid_error: Callable[[], float],
        test_error: Callable[[], float] | None = None,
        train_loss: Callable[[], float] | None = None,
        test_every: bool = False,
    ):
        if test_every and (not isinstance(policy, PassBudget) or test_error is None):
            raise SettingError(
                "test_every measures the test error at each evaluation of a PassBudget: "
                "give a PassBudget and a test_error, or leave test_every out"
            )
        self.test_every = test_every
        self.policy, self.params, self.model = policy, list(params), None
        self.valid_error, self.test_error, self.train_loss = valid_error, test_error, train_loss
        self.on_record: Callable[[Any], None] = noop
        self.checkpoint = Checkpoint()
        self.state: dict[str, Any] = {}  # PassBudget: the evaluator's state, saved in Progress
        self.history: list[Record] = []

    # -- set-up
    def begin(
        self,
        progress: Progress,
        checkpoint: Checkpoint,
        fresh: bool,
        on_record: Callable[[Record], None],
        model: Any,
    ) -> None:
        """Start (``fresh``) or resume measuring with the state in ``progress`` and ``checkpoint``.

        :func:`finetune` calls it once, before the first epoch.

        Parameters
        ----------
        progress : Progress
            The fine-tuning state. Under the :class:`PatienceRule` it holds
            the rule's counters (a fresh run sets ``patience``); under a
            :class:`PassBudget` the evaluator's state lives in
            ``optimizer_state["evaluator"]``, created empty on a fresh run and
            read back (with the records so far) on a resumed one.
        checkpoint : Checkpoint
            Keeps the best parameter values in ``best``; a loaded one brings
            them back.
        fresh : bool
            Whether fine-tuning starts now rather than resumes.
        on_record : callable
            ``on_record(record)`` gets each :class:`EpochRecord` or :class:`Evaluation`.
        model : SdA
            Whose parameters (``named_params()``) are checked to be finite before
            each validation of the patience rule.
        """
        self.checkpoint, self.on_record, self.model = checkpoint, on_record, model
        policy = self.policy
        if isinstance(policy, PatienceRule):
            if fresh:
                progress.patience = policy.patience
            return
        saved = progress.optimizer_state.get("evaluator")
        if saved is None:
            saved = {
                "next_point": 0.0,
                "best_valid_error": math.inf,
                "best_passes": 0.0,
                "best_evaluation": 0,
                "test_error": math.nan,
                "since_best": 0,
                "seconds": 0.0,
                "history": [],
            }
            progress.optimizer_state["evaluator"] = saved
        self.state = saved
        self.history = [Evaluation(**row) for row in saved["history"]]

    @property
    def eval_seconds(self) -> float:
        """Time spent measuring at :class:`PassBudget` points (0 under the patience rule)."""
        return self.state["seconds"] if isinstance(self.policy, PassBudget) else 0.0

    @property
    def reports_epochs(self) -> bool:
        """Whether it reports every epoch, a cut last one included (the patience rule)."""
        return isinstance(self.policy, PatienceRule)

    def start(self, progress: Progress, step: Step, clock: Callable[[], float]) -> None:
        """Measure the starting point when a :class:`PassBudget` point is due there.

        :func:`finetune` calls it once, before the first epoch: a fresh run
        measures its untrained point (pass-equivalent 0); a resumed one
        normally has its next point ahead and measures nothing.

        Parameters
        ----------
        progress : Progress
            The fine-tuning state.
        step : Step
            The optimiser step; its ``passes`` say where the run is.
        clock : callable
            ``clock() -> float``: the fine-tuning seconds so far, measuring
            included (the monitor takes its own measuring time off).
        """
        policy = self.policy
        if isinstance(policy, PassBudget) and step.passes >= self.state["next_point"]:
            self._evaluate(progress, step, clock, policy)

    # -- during the run
    def stop_reason(self, progress: Progress, passes: float) -> str:
        """Why the run must stop now (``""``: it goes on).

        Parameters
        ----------
        progress : Progress
            The fine-tuning state; the patience rule compares its
            ``iteration`` with its ``patience``.
        passes : float
            Pass-equivalents spent so far, for a :class:`PassBudget`'s budget.

        Returns
        -------
        str
            ``"patience"`` (patience used up, or ``no_change`` evaluations
            without improvement), ``"budget"`` (``budget_passes`` spent, up to
            rounding) or ``""``.
        """
        policy = self.policy
        if isinstance(policy, PatienceRule):
            return "patience" if progress.iteration >= progress.patience else ""
        budget, no_change = policy.budget_passes, policy.no_change
        if budget is not None and passes >= budget - BUDGET_TOLERANCE:
            return "budget"
        if no_change is not None and self.state["since_best"] >= no_change:
            return "patience"
        return ""

    def after_update(self, progress: Progress, step: Step, clock: Callable[[], float]) -> str:
        """Measure if a point is due after an update; return the stop reason.

        The step calls it (through :func:`finetune`) after every parameter
        update, once ``progress.iteration`` counts it. The patience rule
        validates every :meth:`PatienceRule.frequency` iterations; a
        :class:`PassBudget` measures once ``step.passes`` reaches its next point.

        Parameters
        ----------
        progress : Progress
            The fine-tuning state.
        step : Step
            The optimiser step: its ``n_batches`` and ``passes``.
        clock : callable
            ``clock() -> float``: the fine-tuning seconds so far.

        Returns
        -------
        str
            As :meth:`stop_reason`: ``""`` to go on.

        Raises
        ------
        sda.errors.TrainingDiverged
            A parameter is not finite at a validation of the patience rule.
        """
        policy = self.policy
        if isinstance(policy, PatienceRule):
            if progress.iteration % policy.frequency(step.n_batches) == 0:
                self._validate(progress, policy)
        elif step.passes >= self.state["next_point"]:
            self._evaluate(progress, step, clock, policy)
        return self.stop_reason(progress, step.passes)

    def _validate(self, progress: Progress, rule: PatienceRule) -> None:
        """The :class:`PatienceRule`'s validation: keep the parameters and test error of a new best.
        Non-finite parameters stop the run first: they must never become the best."""
        check_params(self.model, FINETUNING, epoch=progress.epoch + 1, step=progress.steps)
        if rule.update(progress, self.valid_error()):
            self.checkpoint.best = [param.get_value() for param in self.params]
            if self.test_error is not None:
                progress.test_error = self.test_error()

    def _evaluate(
        self, progress: Progress, step: Step, clock: Callable[[], float], budget: PassBudget
    ) -> Evaluation:
        """Measure now (a :class:`PassBudget` point); report and return the record."""
        started = time.perf_counter()
        state, passes = self.state, step.passes
        seconds = clock() - state["seconds"]
        train_loss = self.train_loss() if self.train_loss is not None else math.nan
        valid_error = self.valid_error()
        current_test_error = self.test_error() if self.test_every and self.test_error else None
        if valid_error < state["best_valid_error"]:
            state.update(
                best_valid_error=valid_error,
                best_passes=passes,
                since_best=0,
                best_evaluation=len(self.history),
            )
            self.checkpoint.best = [p.get_value() for p in self.params]
            if self.test_every:
                state["test_error"] = current_test_error
            elif self.test_error is not None:
                state["test_error"] = self.test_error()
        else:
            state["since_best"] += 1
        state["next_point"] = (math.floor(passes / budget.eval_every + 1e-9) + 1) * budget.eval_every
        record = Evaluation(
            epoch=len(self.history),
            passes=passes,
            data_epoch=step.data_epoch(progress),
            updates=progress.iteration,
            seconds=seconds,
            cost=train_loss,
            train_loss=train_loss,
            valid_error=valid_error,
            best_valid_error=state["best_valid_error"],
            test_error=state["test_error"],
            current_test_error=current_test_error,
        )
        self.history.append(record)
        state["history"].append(record.row())
        state["seconds"] += time.perf_counter() - started
        self.on_record(record)
        return record

    def end_epoch(self, progress: Progress, cost: float) -> None:
        """Under the :class:`PatienceRule`, report the epoch just finished.

        :func:`finetune` calls it after every finished epoch (under the
        patience rule also after the one the run stopped in).

        Parameters
        ----------
        progress : Progress
            The fine-tuning state, its ``epoch`` already counting the finished one.
        cost : float
            The epoch's mean minibatch cost, the record's ``cost``.
        """
        if not self.reports_epochs:
            return
        record = EpochRecord(
            epoch=progress.epoch,
            cost=cost,
            valid_error=progress.valid_error,
            best_valid_error=progress.best_valid_error,
            test_error=progress.test_error,
            seconds=progress.seconds["finetune"],
        )
        self.history.append(record)
        self.on_record(record)

    def finish(self, progress: Progress, step: Step, clock: Callable[[], float]) -> None:
        """Measure where the run ended (if not yet), then put the best parameters back.

        :func:`finetune` calls it once, when the epochs are over. Under a
        :class:`PassBudget` the end point is measured unless the last
        :class:`Evaluation` was taken there.

        Parameters
        ----------
        progress : Progress
            The fine-tuning state.
        step : Step
            The optimiser step; its ``passes`` say where the run ended.
        clock : callable
            ``clock() -> float``: the fine-tuning seconds so far.
        """
        policy, last = self.policy, self.history[-1] if self.history else None
        if isinstance(policy, PassBudget) and not (
            isinstance(last, Evaluation) and last.passes == step.passes
        ):
            self._evaluate(progress, step, clock, policy)
        if self.checkpoint.best is not None:
            for param, value in zip(self.params, self.checkpoint.best):
                param.set_value(value)

    def store(self, progress: Progress) -> None:
        """Bring the best point into ``progress`` before a checkpoint is saved.

        Under a :class:`PassBudget` the evaluator's best validation and test
        errors are copied to ``progress.best_valid_error`` and
        ``progress.test_error`` (the rest of its state is already in
        ``progress.optimizer_state``); the patience rule keeps them there all along.

        Parameters
        ----------
        progress : Progress
            The fine-tuning state about to be saved.
        """
        if isinstance(self.policy, PassBudget):
            progress.best_valid_error = self.state["best_valid_error"]
            progress.test_error = self.state["test_error"]

    def result(self, progress: Progress, step: Step, seconds: float, stop_reason: str) -> FinetuneResult:
        """What the run reached: the best point measured, the counts and the records.

        Parameters
        ----------
        progress : Progress
            The fine-tuning state at the end.
        step : Step
            The optimiser step; its ``passes`` are the run's.
        seconds : float
            The optimiser's time, measuring excluded.
        stop_reason : str
            ``"patience"``, ``"budget"`` or ``"max_epochs"``.

        Returns
        -------
        FinetuneResult
            The best validation error, the test error there and where it was
            measured (the epoch under the patience rule, the evaluation's
            number and its pass-equivalents under a :class:`PassBudget`).
        """
        if isinstance(self.policy, PassBudget):
            best = (self.state["best_valid_error"], self.state["test_error"], self.state["best_evaluation"])
            best_passes = self.state["best_passes"]
        else:
            best = (progress.best_valid_error, progress.test_error, progress.best_epoch)
            best_passes = math.nan
        return FinetuneResult(
            *best,
            epochs_run=progress.epoch + (progress.batch > 0),
            iterations=progress.iteration,
            passes=step.passes,
            best_passes=best_passes,
            seconds=seconds,
            eval_seconds=self.eval_seconds,
            stop_reason=stop_reason,
            history=list(self.history),
        )


# -------------------------------------------------------------------- steps
class Step(Protocol):
    """What :func:`finetune` asks of an optimiser step.

    The loop calls :meth:`begin` once, then enters :meth:`running` for the
    rest of the run. Each epoch it calls :meth:`begin_epoch`, then
    :meth:`run_batch` for batches ``progress.batch`` to ``n_batches - 1``
    until one returns a stop reason, then :meth:`end_epoch`. When the epochs
    are over it calls :meth:`finish`. :meth:`store` comes before every
    checkpoint save. The step owns the parameter updates and the counters
    they move (``progress.batch``, ``progress.steps``, ``progress.iteration``);
    the loop counts epochs, and the :class:`Monitor` measures and decides
    when to stop.

    Attributes
    ----------
    n_batches : int
        Batches per epoch over the training rows.
    phase : str
        The phase a divergence error names (``"fine-tuning"``, ``"CG fine-tuning"``, ...).
    saves_every_batch : bool
        Save a checkpoint after every batch; else every ``checkpoint.every``
        minibatch steps. The end of the run saves either way.
    passes : float
        Pass-equivalents spent over the whole run, a resumed one included.
    """

    n_batches: int
    phase: str
    saves_every_batch: bool  # else at the checkpoint's interval

    @property
    def passes(self) -> float:
        """Rows pushed forward and backward so far over the number of training rows."""
        ...

    def begin(
        self, progress: Progress, checkpoint: Checkpoint, on_step: Callable[[StepRecord], None]
    ) -> None:
        """Take the run up where ``progress`` stands; called once, before the first epoch.

        ``progress`` is in the fine-tuning phase by then, fresh or loaded from
        a checkpoint. The step restores its own state from it and from
        ``checkpoint`` (SGD velocities, rows trained on, the shuffling
        generator as the epoch began), so a resumed run continues exactly.

        Parameters
        ----------
        progress : Progress
            Where fine-tuning is (``epoch``, ``batch``, ``steps``,
            ``iteration``), and the step's saved ``optimizer_state``.
        checkpoint : Checkpoint
            The run's checkpoint; a loaded one holds the saved velocities
            until :meth:`Checkpoint.restore_velocities` takes them.
        on_step : callable
            ``on_step(record)`` for each :class:`StepRecord` the step reports.
        """
        ...

    def running(self) -> contextlib.AbstractContextManager:
        """The context the rest of the run, measuring included, runs in.

        Returns
        -------
        contextlib.AbstractContextManager
            Entered once, after :meth:`begin`, and left when the epochs are
            over (e.g. one BLAS thread for scipy's optimisers).
        """
        ...

    def begin_epoch(self, progress: Progress) -> None:
        """Prepare epoch ``progress.epoch`` (from 0) before its first batch.

        Called at the start of every epoch, the one a resumed run is in the
        middle of included (then ``progress.batch`` > 0). The order of the
        rows and the learning rate must follow from the epoch and the saved
        state alone, so that a resumed epoch's remaining batches are the ones
        it would have had; what a resume needs to redraw them goes into
        ``progress.optimizer_state`` here.

        Parameters
        ----------
        progress : Progress
            The fine-tuning state; ``epoch`` counts the epochs finished.
        """
        ...

    def run_batch(
        self, progress: Progress, after_update: Callable[[], str], stop_reason: Callable[[], str]
    ) -> str:
        """Train on batch ``progress.batch`` of the epoch; return why the run must stop.

        After every parameter update the step adds 1 to ``progress.iteration``
        and calls ``after_update()`` (the monitor measures there when a point
        is due); a stop reason ends the batch. A finished batch adds 1 to
        ``progress.batch`` and ``progress.steps``. Every cost must be checked
        to be finite before it is used.

        Parameters
        ----------
        progress : Progress
            The fine-tuning state: the batch to train on, and the counters to advance.
        after_update : callable
            ``after_update() -> str``, to call after each update: the stop
            reason, ``""`` to go on.
        stop_reason : callable
            ``stop_reason() -> str``: the policy's stop reason without
            measuring, for work that updated nothing but spent passes.

        Returns
        -------
        str
            ``""`` to go on, else the stop reason (``"patience"`` or ``"budget"``).

        Raises
        ------
        sda.errors.TrainingDiverged
            A cost, gradient or parameter vector is not finite.
        """
        ...

    def data_epoch(self, progress: Progress) -> int:
        """The epoch over the data under way, for an :class:`Evaluation`'s ``data_epoch``.

        Parameters
        ----------
        progress : Progress
            The fine-tuning state when the point is measured.

        Returns
        -------
        int
            The data epoch, from 1 once training has begun.
        """
        ...

    def end_epoch(self, cost: float) -> None:
        """Close an epoch; called after each finished epoch (and after a cut one under the patience rule).

        Parameters
        ----------
        cost : float
            The epoch's mean minibatch cost (``Progress.finish_epoch``); 0 for
            a step that adds no batch costs, as the line searches do.
        """
        ...

    def finish(self) -> None:
        """End the run; called once, after the monitor has put the best parameters back.

        The step undoes what must not outlive the run (a decayed learning
        rate); the loop then checks the parameters and saves the last checkpoint.
        """
        ...

    def store(self, progress: Progress) -> None:
        """Write the step's own state into ``progress.optimizer_state``; called before every save.

        Parameters
        ----------
        progress : Progress
            The fine-tuning state about to be saved.
        """
        ...


def momentum_at(epoch: int, start: float, end: float, epochs: int) -> float:
    """The momentum of epoch ``epoch`` (from 0) on a ramp from ``start`` to ``end`` over ``epochs`` epochs.

    It rises linearly and then stays at ``end`` (Srivastava et al., 2014,
    ramp it from 0.5 to 0.99). It follows from the epoch alone, so a resumed
    run continues the same schedule.

    Parameters
    ----------
    epoch : int
        Epochs finished.
    start, end : float
        The momentum at epoch 0 and from epoch ``epochs`` on.
    epochs : int
        The ramp's length.

    Returns
    -------
    float

    Examples
    --------
    >>> [momentum_at(e, 0.5, 0.9, 4) for e in (0, 2, 4, 10)]
    [0.5, 0.7, 0.9, 0.9]
    """
    return start + (end - start) * min(1.0, epoch / epochs)


class MinibatchSGD:
    """One SGD update per minibatch; saved at the checkpoint's interval.

    Parameters
    ----------
    train_fn : sda.sgd.SGDStep
        The compiled update: ``train_fn(index)`` on minibatch ``index`` in
        data order (``SdA.build_finetune_functions``), or ``train_fn(rows)``
        on a vector of row numbers with ``shuffle_seed`` (:func:`compile_rows_step`).
        Its ``velocities`` go into the checkpoint.
    n_rows, batch_size : int
        Training rows, and rows per minibatch (the last may be short).
    shuffle_seed : int, optional
        Reshuffle the rows every epoch with a generator seeded by it; data order without.
    lr_decay : float
        Epoch ``e`` (from 0) trains at ``train_fn``'s starting learning rate
        times ``lr_decay ** e``; 1 keeps it constant. The rate follows from
        the epoch alone, so a resumed run continues the same schedule.
    phase : str
        Names the phase in a divergence error.
    momentum_ramp : (float, int), optional
        ``(end, epochs)``: epoch ``e`` trains at the momentum
        ``momentum_at(e, start, end, epochs)``, where ``start`` is the
        momentum ``train_fn`` was compiled with (it must be shared:
        ``build_finetune_functions(..., momentum_schedule=True)``).

    Raises
    ------
    SettingError
        A bad count, ``lr_decay`` < 1 with a step compiled without a shared
        rate, or a momentum ramp for a step without a shared momentum.
    """

    def __init__(
        self,
        train_fn: CompiledStep,
        n_rows: int,
        batch_size: int,
        shuffle_seed: int | None = None,
        lr_decay: float = 1.0,
        phase: str = FINETUNING,
        momentum_ramp: tuple[float, int] | None = None,
    ) -> None:
        self.train_fn, self.phase = train_fn, phase
        self.saves_every_batch = False
        self.on_step: Callable[[StepRecord], None] = noop
        self.n_rows, self.batch_size = check_count("n_rows", n_rows), check_count("batch_size", batch_size)
        self.n_batches = n_batches(n_rows, batch_size)
        self.shuffle_seed = shuffle_seed
        self.lr_decay = check_decay("lr_decay", lr_decay)
        self.rate = getattr(train_fn, "learning_rate", None)  # a shared variable, when it has one
        if self.lr_decay != 1.0 and self.rate is None:
            raise SettingError(
                "lr_decay needs a step compiled with a shared learning rate "
                "(SdA.build_finetune_functions makes one)"
            )
        self.start_rate = None if self.rate is None or self.lr_decay == 1.0 else float(self.rate.get_value())
        self.momentum = getattr(train_fn, "momentum", None)
        self.momentum_ramp = momentum_ramp
        if momentum_ramp is not None:
            if self.momentum is None:
                raise SettingError(
                    "momentum_ramp needs a step compiled with a shared momentum "
                    "(SdA.build_finetune_functions(..., momentum_schedule=True) makes one)"
                )
            check_setting("momentum", momentum_ramp[0], as_name="final momentum")
            check_count("momentum ramp epochs", momentum_ramp[1])
            self.start_momentum = float(self.momentum.get_value())
        self.examples = 0
        self.order: np.ndarray | None = None
        self.rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
        self.watch = EpochCostWatch(phase, True)

    @property
    def passes(self) -> float:
        """Rows trained on over ``n_rows``: SGD pushes each row forward and backward once."""
        return self.examples / self.n_rows

    def begin(
        self, progress: Progress, checkpoint: Checkpoint, on_step: Callable[[StepRecord], None]
    ) -> None:
        """Hand the velocities to ``checkpoint`` and take up the rows trained on and the generator.

        Parameters
        ----------
        progress : Progress
            Where fine-tuning is; with shuffling, its ``optimizer_state``
            holds the generator as the epoch began.
        checkpoint : Checkpoint
            Saves ``train_fn``'s velocities; a loaded one sets them.
        on_step : callable
            Gets a :class:`StepRecord` per minibatch.
        """
        self.on_step = on_step
        checkpoint.restore_velocities(getattr(self.train_fn, "velocities", []))
        self.watch = EpochCostWatch(self.phase, progress.epoch == progress.batch == 0)
        self.examples = progress.epoch * self.n_rows + min(progress.batch * self.batch_size, self.n_rows)
        if self.rng is not None and "epoch_rng" in progress.optimizer_state:
            self.rng.bit_generator.state = progress.optimizer_state["epoch_rng"]

    def running(self) -> contextlib.AbstractContextManager:
        """No context: the compiled step needs none.

        Returns
        -------
        contextlib.nullcontext
        """
        return contextlib.nullcontext()

    def begin_epoch(self, progress: Progress) -> None:
        """Set the epoch's learning rate and, with ``shuffle_seed``, draw its order of rows.

        Parameters
        ----------
        progress : Progress
            The fine-tuning state; its ``epoch`` sets the rate, and the
            generator is saved in its ``optimizer_state`` before the draw.
        """
        if self.rate is not None and self.start_rate is not None:
            self.rate.set_value(np.float32(self.start_rate * self.lr_decay**progress.epoch))
        if self.momentum is not None and self.momentum_ramp is not None:
            self.momentum.set_value(
                np.float32(momentum_at(progress.epoch, self.start_momentum, *self.momentum_ramp))
            )
        if self.rng is not None:
            progress.optimizer_state["epoch_rng"] = self.rng.bit_generator.state  # resume redraws the order
            self.order = self.rng.permutation(self.n_rows)

    def run_batch(
        self, progress: Progress, after_update: Callable[[], str], stop_reason: Callable[[], str]
    ) -> str:
        """One update on the next minibatch; the stop reason if the run must end here.

        Parameters
        ----------
        progress : Progress
            The fine-tuning state: ``batch`` picks the minibatch; ``batch``,
            ``steps``, ``iteration`` and the epoch's cost advance.
        after_update : callable
            ``after_update() -> str``, called after the update.
        stop_reason : callable
            Unused: every minibatch updates the parameters.

        Returns
        -------
        str
            What ``after_update()`` returned.

        Raises
        ------
        sda.errors.TrainingDiverged
            The minibatch's cost is not finite.
        """
        start = progress.batch * self.batch_size
        batch = progress.batch if self.order is None else self.order[start : start + self.batch_size]
        cost = float(self.train_fn(batch))
        # printed fine-tuning epochs count from 1; steps as in steps.csv
        check_finite(cost, self.phase, epoch=progress.epoch + 1, step=progress.steps + 1)
        self.watch.step(cost)
        progress.finish_batch(cost)
        progress.iteration += 1
        self.examples += min(self.batch_size, self.n_rows - start)
        self.on_step(
            StepRecord(epoch=progress.epoch, step=progress.steps, iteration=progress.iteration, cost=cost)
        )
        return after_update()

    def data_epoch(self, progress: Progress) -> int:
        """Data epochs begun.

        Parameters
        ----------
        progress : Progress
            The fine-tuning state.

        Returns
        -------
        int
            ``progress.epoch``, plus 1 once a minibatch of the epoch under way is done.
        """
        return progress.epoch + (progress.batch > 0)

    def end_epoch(self, cost: float) -> None:
        """Watch the epoch's mean cost: warn (``sda.errors.CostWatch``) if it rose far above the start.

        Parameters
        ----------
        cost : float
            The epoch's mean minibatch cost.
        """
        self.watch.epoch(cost)

    def finish(self) -> None:
        """Put the learning rate back to its starting value."""
        if self.rate is not None and self.start_rate is not None:
            self.rate.set_value(np.float32(self.start_rate))  # a later run starts its schedule there

    def store(self, progress: Progress) -> None:
        """With shuffling, record the rows trained on beside the generator's state.

        Parameters
        ----------
        progress : Progress
            The fine-tuning state about to be saved: ``optimizer_state["examples"]``.
        """
        if self.rng is not None:
            progress.optimizer_state["examples"] = [self.examples]


class BatchLineSearch:
    """``line_searches`` iterations of CG or L-BFGS per batch of ``batch_size`` shuffled rows.

    Every epoch the training rows are shuffled by a generator seeded with
    ``seed`` and cut into batches of ``batch_size`` (the last may be short).
    On each batch the optimiser minimises the batch's mean cost (the
    objective's, weight penalty included), starting afresh: no conjugate
    direction or L-BFGS memory is carried over. In the first
    ``warmup_epochs`` epochs ``warmup`` (an objective over the top layer's
    parameters alone, on the same rows) is minimised instead, as in
    Hinton & Salakhutdinov's ``backpropclassify.m``; those evaluations push
    each row through the whole network and count as full pass-equivalents.
    With input dropout, each batch draws one pixel mask from ``(seed, epoch,
    batch)`` and keeps it through its line searches.

    Parameters
    ----------
    objective : FlatObjective
        The training objective over every parameter.
    method : {"cg", "lbfgs"}
        ``scipy.optimize.fmin_cg`` or ``minimize(method="L-BFGS-B")``.
    batch_size : int
        Rows per batch, ``m``; the number of training rows makes it full-batch.
    line_searches : int
        Iterations per batch, ``k`` (for CG each is one line search).
    warmup_epochs : int
        First epochs that minimise ``warmup`` instead.
    warmup : FlatObjective, optional
        Required when ``warmup_epochs`` > 0.
    seed : int
        Seeds the shuffling and the dropout masks.

    Raises
    ------
    SettingError
        An unknown method, a bad count, or a batch larger than the training set.
    """

    def __init__(
        self,
        objective: FlatObjective,
        method: str = "cg",
        batch_size: int = DEFAULT_BATCH_SIZE,
        line_searches: int = 3,
        warmup_epochs: int = 0,
        warmup: FlatObjective | None = None,
        seed: int = 0,
    ) -> None:
        check_choice("method", method, METHODS)
        self.n_rows = objective.n_rows
        check_count("batch_size", batch_size)
        check_count("line_searches", line_searches)
        check_count("warmup_epochs", warmup_epochs, minimum=0)
        if batch_size > self.n_rows:
            raise SettingError(
                f"batch_size {batch_size} is larger than the {self.n_rows} training rows: "
                f"use at most {self.n_rows} (that is full-batch {method})"
            )
        if warmup_epochs and warmup is None:
            raise SettingError("warmup_epochs needs a warm-up objective (the top layer's parameters)")
        self.objectives = [objective] + ([warmup] if warmup_epochs and warmup is not None else [])
        self.method, self.batch_size, self.line_searches = method, batch_size, line_searches
        self.warmup_epochs, self.seed = warmup_epochs, seed
        self.phase = objective.phase
        self.saves_every_batch = True  # a batch costs far more than a save
        self.n_batches = n_batches(self.n_rows, batch_size)
        self.rng = np.random.default_rng(seed)
        self.order: np.ndarray = np.arange(self.n_rows)

    @property
    def passes(self) -> float:
        """Rows the objectives pushed forward and backward (trial points included) over the training rows."""
        return sum(objective.examples for objective in self.objectives) / self.n_rows

    def begin(
        self, progress: Progress, checkpoint: Checkpoint, on_step: Callable[[StepRecord], None]
    ) -> None:
        """Take up the objectives' row counts and the generator as the epoch began.

        Parameters
        ----------
        progress : Progress
            Where fine-tuning is; its ``optimizer_state`` holds the saved
            counts (and, from a checkpoint saved before ``progress.iteration``
            counted them, the updates).
        checkpoint : Checkpoint
            Unused: the line searches keep no arrays between batches.
        on_step : callable
            Unused: the line searches report no :class:`StepRecord`.
        """
        state = progress.optimizer_state
        if "updates" in state:  # saved before progress.iteration counted the updates
            progress.iteration = state.pop("updates")
            state.pop("stop_reason", None)
        if "examples" in state:  # resuming: counters, and the generator as the epoch began
            for objective, examples in zip(self.objectives, state["examples"]):
                objective.examples = examples
            self.rng.bit_generator.state = state["epoch_rng"]

    def running(self) -> contextlib.AbstractContextManager:
        """One thread for scipy's BLAS: its memory-bound vector algebra only loses by more.

        Returns
        -------
        contextlib.AbstractContextManager
        """
        return single_thread_scipy()

    def begin_epoch(self, progress: Progress) -> None:
        """Save the generator in ``progress.optimizer_state``, then shuffle the rows for the epoch.

        Parameters
        ----------
        progress : Progress
            The fine-tuning state.
        """
        progress.optimizer_state["epoch_rng"] = self.rng.bit_generator.state  # resume redraws the order
        self.order = self.rng.permutation(self.n_rows)

    def run_batch(
        self, progress: Progress, after_update: Callable[[], str], stop_reason: Callable[[], str]
    ) -> str:
        """Minimise the next batch's cost; the stop reason if the run must end here.

        Runs ``line_searches`` iterations on the batch (on ``warmup`` in the
        warm-up epochs), counting each accepted iterate as an update.

        Parameters
        ----------
        progress : Progress
            The fine-tuning state: ``epoch`` and ``batch`` pick the rows (and
            the dropout mask); ``iteration``, then ``batch`` and ``steps``
            for a finished batch, advance.
        after_update : callable
            ``after_update() -> str``, called at each accepted iterate; a stop
            reason ends the line searches there.
        stop_reason : callable
            ``stop_reason() -> str``, asked after the line searches: failed
            ones spend passes too.

        Returns
        -------
        str
            ``""`` to go on, else the stop reason; a cut batch is left unfinished.

        Raises
        ------
        sda.errors.TrainingDiverged
            A cost, gradient or parameter vector is not finite.
        """
        objective = self.objectives[-1 if progress.epoch < self.warmup_epochs else 0]
        start = progress.batch * self.batch_size
        # the mask comes from where the batch is, so a resumed run redraws it
        objective.use_rows(
            self.order[start : start + self.batch_size], mask_seed=(self.seed, progress.epoch, progress.batch)
        )
        objective.where = {"epoch": progress.epoch + 1, "step": progress.steps + 1}
        stop = ""

        def accepted() -> None:
            nonlocal stop
            progress.iteration += 1
            stop = after_update()
            if stop:
                raise StopSearch

        run_line_searches(objective, self.method, self.line_searches, accepted)
        stop = stop or stop_reason()  # failed line searches cost too
        if not stop:
            progress.batch += 1
            progress.steps += 1
        return stop

    def data_epoch(self, progress: Progress) -> int:
        """The epoch under way, from 1.

        Parameters
        ----------
        progress : Progress
            The fine-tuning state.

        Returns
        -------
        int
            ``progress.epoch + 1``.
        """
        return progress.epoch + 1

    def end_epoch(self, cost: float) -> None:
        """Nothing to close: each batch starts its optimiser afresh.

        Parameters
        ----------
        cost : float
            Unused (0: the line searches add no batch costs).
        """

    def finish(self) -> None:
        """Nothing to undo."""

    def store(self, progress: Progress) -> None:
        """Record each objective's rows pushed through, for :attr:`passes` on resuming.

        Parameters
        ----------
        progress : Progress
            The fine-tuning state about to be saved: ``optimizer_state["examples"]``.
        """
        progress.optimizer_state["examples"] = [objective.examples for objective in self.objectives]


# --------------------------------------------------------------------- loop
def finetune(
    model: Any,
    step: Step,
    monitor: Monitor,
    *,
    max_epochs: int = 1000,
    on_record: Callable[[Record], None] = noop,
    on_step: Callable[[StepRecord], None] = noop,
    show_progress: bool = False,
    progress: Progress | None = None,
    checkpoint: Checkpoint | None = None,
) -> FinetuneResult:
    """Fine-tune with ``step`` until ``monitor``'s policy or ``max_epochs`` stops it.

    The best parameters the monitor measured are left in the model.

    Parameters
    ----------
    model : SdA
        Whose parameters (``named_params()``) are checked to be finite before
        every validation, every checkpoint and at the end, and saved in the
        checkpoint; the step and monitor work on its shared variables.
    step : MinibatchSGD or BatchLineSearch
        What one batch does to the parameters (any :class:`Step`).
    monitor : Monitor
        Measures, keeps the best, and decides when to stop.
    max_epochs : int
        Stop after this many epochs over the data.
    on_record : callable
        Gets each :class:`EpochRecord` (patience rule) or :class:`Evaluation` (pass budget).
    on_step : callable
        Gets a :class:`StepRecord` per SGD minibatch.
    show_progress : bool
        Show a bar of minibatches on a terminal.
    progress, checkpoint : Progress, Checkpoint, optional
        Resume from and save the training state (``sda.checkpoint``). A
        :class:`BatchLineSearch` saves after every batch, an :class:`MinibatchSGD` every
        ``checkpoint.every`` minibatches; both save when they end.

    Returns
    -------
    FinetuneResult

    Raises
    ------
    sda.errors.TrainingDiverged
        A cost, gradient or parameter is not finite (naming the epoch and step).
    SettingError
        ``max_epochs`` is not a positive integer.

    Examples
    --------
    >>> import numpy as np
    >>> from sda import SdA
    >>> from sda.data import load_dataset, shared_dataset
    >>> digits = load_dataset("digits").subset(200, 50, 50)
    >>> datasets = [shared_dataset(s) for s in (digits.train, digits.valid, digits.test)]
    >>> model = SdA(np.random.RandomState(0), n_ins=64, hidden_layers_sizes=(32,),
    ...             corruption_levels=(0.1,))
    >>> train_fn, valid_score, test_score = model.build_finetune_functions(
    ...     datasets, batch_size=20, learning_rate=0.1)
    >>> monitor = Monitor(PatienceRule(), model.params, valid_score.error, test_score.error)
    >>> result = finetune(model, MinibatchSGD(train_fn, n_rows=200, batch_size=20), monitor,
    ...                   max_epochs=3)
    >>> result.epochs_run, result.iterations, 0.0 <= result.best_valid_error <= 1.0
    (3, 30, True)
    """
    check_count("max_epochs", max_epochs)
    checkpoint = checkpoint or Checkpoint()
    p = progress or Progress()
    fresh = p.phase == "pretrain"
    if fresh:
        p.start_phase("finetune")
    step.begin(p, checkpoint, on_step)
    monitor.begin(p, checkpoint, fresh, on_record, model)
    started = time.perf_counter() - p.seconds["finetune"]

    def clock() -> float:
        return time.perf_counter() - started

    def save() -> None:
        p.seconds["finetune"] = clock()
        step.store(p)
        monitor.store(p)
        checkpoint.save(p)

    def after_update() -> str:
        return monitor.after_update(p, step, clock)

    def stop_reason() -> str:
        return monitor.stop_reason(p, step.passes)

    with step.running():
        stop = stop_reason()  # a run saved as it stopped has nothing left to do
        monitor.start(p, step, clock)  # the common starting point of a pass budget
        while not stop and p.epoch < max_epochs:
            step.begin_epoch(p)
            for _ in progress_bar(p.batch, step.n_batches, f"fine-tune epoch {p.epoch + 1}", show_progress):
                stop = step.run_batch(p, after_update, stop_reason)
                p.seconds["finetune"] = clock()
                due = (not stop) if step.saves_every_batch else checkpoint.due(p)
                if due and checkpoint.path is not None:
                    check_params(model, step.phase, epoch=p.epoch + 1, step=p.steps)
                    save()
                if stop:
                    break
            if stop and not monitor.reports_epochs:
                break  # a cut epoch is not finished; the tutorial's rule still reports it
            cost = p.finish_epoch()
            step.end_epoch(cost)
            monitor.end_epoch(p, cost)
        stop = stop or "max_epochs"
        monitor.finish(p, step, clock)
    seconds = clock() - monitor.eval_seconds
    step.finish()
    check_params(model, step.phase, epoch=p.epoch, step=p.steps)
    p.phase = "done"
    save()
    return monitor.result(p, step, seconds, stop)


# ----------------------------------------------------- compiling the steps
def compile_rows_step(
    cost: Any,
    params: Sequence[Any],
    inputs: Sequence[Any],
    data: Sequence[Any],
    learning_rate: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    noise_updates: Sequence[Any] = (),
) -> CompiledStep:
    """An SGD update on the rows of ``data`` (shared variables fed to ``inputs``) numbered by a vector.

    For :class:`MinibatchSGD` with a ``shuffle_seed``, whose minibatches are
    not contiguous slices of the data.

    Parameters
    ----------
    cost : TensorVariable
        The scalar cost of a minibatch, in terms of ``inputs``.
    params : sequence of shared variables
        What the step updates.
    inputs : sequence of TensorVariable
        The symbolic inputs of ``cost`` (e.g. ``[model.x, model.y]``).
    data : sequence of shared variables
        One per input, rows first: the step feeds ``data[i][rows]`` to ``inputs[i]``.
    learning_rate : float
        The SGD step size, a constant compiled into the step.
    momentum, weight_decay : float
        As in :func:`sda.sgd.sgd_updates`.
    noise_updates : sequence of (shared variable, expression) pairs
        Updates that advance the random generators of a noisy ``cost`` every step.

    Returns
    -------
    sda.sgd.SGDStep
        ``step(rows) -> cost``: one update on the row numbers ``rows``
        (an int vector), returning their cost before it; its
        ``velocities`` are the momentum state.

    Raises
    ------
    SettingError, SettingTypeError
        ``momentum`` or ``weight_decay`` is out of range or of the wrong type.

    Examples
    --------
    >>> w = pytensor.shared(np.zeros(2, dtype="float32"), name="w")
    >>> x = pt.matrix("x")
    >>> data = pytensor.shared(np.ones((4, 2), dtype="float32"))
    >>> step = compile_rows_step(pt.mean(pt.sum(pt.sqr(x - w), axis=1)), [w], [x], [data], 0.25)
    >>> float(step(np.array([0, 1]))), w.get_value().tolist()
    (2.0, [0.5, 0.5])
    """
    rows = pt.lvector("rows")
    updates, velocities = sgd_updates(cost, list(params), np.float32(learning_rate), momentum, weight_decay)
    function = pytensor.function(
        [rows],
        cost,
        updates=updates + list(noise_updates),
        name="sgd_step",
        givens={v: d[rows] for v, d in zip(inputs, data)},
    )
    return CompiledStep(function, velocities)


def classifier_line_search(
    model: Any,
    train: Sequence[Any],
    method: str = "cg",
    batch_size: int = DEFAULT_BATCH_SIZE,
    line_searches: int = 3,
    warmup_epochs: int = 0,
    weight_decay: float = 0.0,
    input_dropout: float = 0.0,
    seed: int = 0,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> BatchLineSearch:
    """A :class:`BatchLineSearch` on a supervised SdA's training cost.

    ``train`` is ``(train_x, train_y)`` (shared variables). The objective
    runs over every parameter and, with ``warmup_epochs``, the warm-up one
    over the softmax layer's alone; ``weight_decay`` adds ``weight_decay / 2
    * sum(W ** 2)`` over the weight matrices, ``input_dropout`` zeroes that
    share of the training pixels (one mask per batch).

    Parameters
    ----------
    model : SdA
        The supervised model; its ``finetune_cost`` is minimised over its ``params``.
    train : sequence of shared variables
        ``(train_x, train_y)``: the training inputs and their int32 labels.
    method : {"cg", "lbfgs"}
        Conjugate gradient or L-BFGS.
    batch_size : int
        Rows per batch, ``m``; the number of training rows makes it full-batch.
    line_searches : int
        Iterations per batch, ``k``.
    warmup_epochs : int
        First epochs that train the softmax layer alone.
    weight_decay : float
        Coefficient of the penalty on the weight matrices.
    input_dropout : float
        Share of training pixels zeroed, in [0, 1).
    seed : int
        Seeds the shuffling and the dropout masks.
    chunk_rows : int
        Rows per compiled evaluation, bounding memory.

    Returns
    -------
    BatchLineSearch

    Raises
    ------
    SettingError, SettingTypeError
        An unknown method or a bad setting (see :class:`BatchLineSearch`).

    Examples
    --------
    Full-batch L-BFGS, five iterations, each one measured (it costs a pass at least):

    >>> import numpy as np
    >>> from sda import SdA
    >>> from sda.data import load_dataset, shared_dataset
    >>> digits = load_dataset("digits").subset(200, 50, 50)
    >>> datasets = [shared_dataset(s) for s in (digits.train, digits.valid, digits.test)]
    >>> model = SdA(np.random.RandomState(0), n_ins=64, hidden_layers_sizes=(32,),
    ...             corruption_levels=(0.1,))
    >>> step = classifier_line_search(model, datasets[0], "lbfgs", batch_size=200, line_searches=5)
    >>> monitor = classifier_monitor(model, datasets, PassBudget(eval_every=1.0))
    >>> result = finetune(model, step, monitor, max_epochs=1)
    >>> result.iterations, [record.updates for record in result.history]
    (5, [0, 1, 2, 3, 4, 5])
    """
    check_choice("method", method, METHODS)

    def objective(params: Sequence[Any]) -> FlatObjective:
        return FlatObjective(
            model.finetune_cost,
            params,
            [model.x, model.y],
            list(train),
            chunk_rows,
            weight_decay,
            PHASES[method],
            input_dropout,
        )

    warmup = objective(model.logLayer.params) if warmup_epochs else None
    return BatchLineSearch(
        objective(model.params), method, batch_size, line_searches, warmup_epochs, warmup, seed
    )


def classifier_monitor(
    model: Any,
    datasets: Sequence[Any],
    policy: PatienceRule | PassBudget,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    weight_decay: float = 0.0,
    test_every: bool = False,
) -> Monitor:
    """A :class:`Monitor` of a supervised SdA: its validation and test errors and its training objective.

    Parameters
    ----------
    model : SdA
        The supervised model; the monitor keeps its ``params`` at the best point.
    datasets : sequence of (shared variable, shared variable)
        ``[(train_x, train_y), (valid_x, valid_y), (test_x, test_y)]``.
    policy : PatienceRule or PassBudget
        When to measure and when to stop.
    chunk_rows : int
        Rows per compiled evaluation, bounding memory.
    weight_decay : float
        The penalty coefficient the training objective includes, as the
        optimiser's (the training loss is the mean cost over every training
        row plus ``weight_decay / 2 * sum(W ** 2)``).
    test_every : bool
        Measure the test error at every evaluation of a :class:`PassBudget`
        (:class:`Monitor`'s ``test_every``).

    Returns
    -------
    Monitor
        Its ``valid_error`` and ``test_error`` are error rates (the share of
        rows misclassified); ``train_loss`` the training objective.
    """
    train_loss, valid_error, test_error = classifier_measures(model, datasets, chunk_rows, weight_decay)
    return Monitor(policy, model.params, valid_error, test_error, train_loss, test_every)


def autoencoder_line_search(
    autoencoder: DeepAutoencoder,
    train_x: Any,
    method: str = "cg",
    batch_size: int = DEFAULT_BATCH_SIZE,
    line_searches: int = 3,
    seed: int = 0,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> BatchLineSearch:
    """A :class:`BatchLineSearch` on a :class:`~sda.optimize.DeepAutoencoder`'s reconstruction cost.

    The cost is the mean reconstruction loss of the rows of ``train_x``, as
    in Hinton & Salakhutdinov's ``backprop.m``.

    Parameters
    ----------
    autoencoder : DeepAutoencoder
        The unrolled SdA; its ``params`` are minimised over.
    train_x : shared variable
        The training inputs, one row each.
    method : {"cg", "lbfgs"}
        Conjugate gradient or L-BFGS.
    batch_size : int
        Rows per batch, ``m``; the number of training rows makes it full-batch.
    line_searches : int
        Iterations per batch, ``k``.
    seed : int
        Seeds the shuffling.
    chunk_rows : int
        Rows per compiled evaluation, bounding memory.

    Returns
    -------
    BatchLineSearch

    Raises
    ------
    SettingError, SettingTypeError
        An unknown method or a bad setting (see :class:`BatchLineSearch`).
    """
    check_choice("method", method, METHODS)
    objective = FlatObjective(
        autoencoder.cost,
        autoencoder.params,
        [autoencoder.x],
        [train_x],
        chunk_rows,
        phase=f"deep auto-encoder {PHASES[method]}",
    )
    return BatchLineSearch(objective, method, batch_size, line_searches, seed=seed)


def autoencoder_monitor(
    autoencoder: DeepAutoencoder,
    train_x: Any,
    valid_x: Any,
    policy: PatienceRule | PassBudget,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Monitor:
    """A :class:`Monitor` of a :class:`~sda.optimize.DeepAutoencoder`'s reconstruction loss.

    Parameters
    ----------
    autoencoder : DeepAutoencoder
        The unrolled SdA; the monitor keeps its ``params`` at the best point.
    train_x, valid_x : shared variable
        The training and validation inputs, one row each.
    policy : PatienceRule or PassBudget
        When to measure and when to stop.
    chunk_rows : int
        Rows per compiled evaluation, bounding memory.

    Returns
    -------
    Monitor
        Its ``valid_error`` is the mean reconstruction loss per validation
        row (the records' ``valid_error``), its ``train_loss`` the same per
        training row; it has no test error.
    """
    train_loss, valid_loss = autoencoder_measures(autoencoder, train_x, valid_x, chunk_rows)
    return Monitor(policy, autoencoder.params, valid_loss, train_loss=train_loss)
