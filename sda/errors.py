"""Errors a user can act on, and the guard that stops a diverging run.

Every command prints an ``SdAError`` as one line and exits with status 2, so
an error raised here must say what went wrong and what to do about it.
"""

import contextlib
import math
import sys
import warnings
from collections.abc import Callable

import numpy as np


class SdAError(Exception):
    """A problem the user can fix: its message names the problem and the fix."""


class SettingError(SdAError, ValueError):
    """A setting or argument of the right type whose value makes no sense."""


class SettingTypeError(SdAError, TypeError):
    """A setting or argument of the wrong type."""


COST_RISE = 10.0  # a cost this many times its first value means the steps are far too large


class TrainingFailed(SdAError):
    """A run that finished without learning: its model is no better than a guess.

    Raised after training, so the run's files stay for inspection; the
    message says what happened and which setting to change.
    """


class TrainingDiverged(TrainingFailed):
    """A cost or parameter stopped being a finite number, or a cost ended far above its start.

    Raised by every training loop (pre-training, SGD, CG, L-BFGS, the deep
    auto-encoder) before the bad values reach a checkpoint or a saved model.

    Examples
    --------
    >>> raise TrainingDiverged("fine-tuning", "cost", epoch=3, step=120, value=float("nan"))
    Traceback (most recent call last):
    ...
    sda.errors.TrainingDiverged: fine-tuning diverged at epoch 3, step 120: the cost is nan; \
try a smaller learning rate
    """

    def __init__(
        self,
        phase: str,
        what: str,
        *,
        layer: int | None = None,
        epoch: int | None = None,
        step: int | None = None,
        value: float | str = float("nan"),
        hint: str = "try a smaller learning rate",
    ):
        self.phase, self.what, self.layer, self.epoch, self.step = phase, what, layer, epoch, step
        where = ", ".join(
            f"{name} {number}"
            for name, number in [("layer", layer), ("epoch", epoch), ("step", step)]
            if number is not None
        )
        super().__init__(f"{phase} diverged{' at ' + where if where else ''}: the {what} is {value}; {hint}")


def check_finite(value, phase: str, what: str = "cost", **where) -> None:
    """Raise ``TrainingDiverged`` unless every entry of ``value`` is finite.

    ``where`` takes the ``layer``, ``epoch`` and ``step`` to name in the error.

    Parameters
    ----------
    value : float or array_like
        A cost, or parameter values.
    phase : str
        The training phase, for the message ("pre-training", "L-BFGS", ...).
    what : str
        What ``value`` is, for the message.
    **where
        ``layer``, ``epoch`` and ``step``, as far as they are known.

    Raises
    ------
    TrainingDiverged
        If an entry is NaN or infinite; the message names the first.

    Examples
    --------
    >>> check_finite(0.5, "pre-training", layer=0, epoch=1, step=10)
    >>> check_finite([1.0, float("inf")], "L-BFGS", "parameter vector", step=4)
    Traceback (most recent call last):
    ...
    sda.errors.TrainingDiverged: L-BFGS diverged at step 4: the parameter vector is inf; \
try a smaller learning rate
    """
    array = np.asarray(value)
    if not np.all(np.isfinite(array)):
        bad = array.flat[np.flatnonzero(~np.isfinite(array))[0]]
        raise TrainingDiverged(phase, what, value=float(bad), **where)


class CostWatch:
    """Warns once when a training cost rises far above where it started.

    A cost that grows to ``factor`` times its first value (both taken as
    magnitudes) means the steps are too large even if nothing is NaN yet.

    Examples
    --------
    >>> import warnings
    >>> watch = CostWatch("fine-tuning", factor=10)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     for cost in [2.0, 1.5, 30.0, 40.0]:
    ...         watch(cost)
    >>> len(caught)
    1
    """

    def __init__(self, phase: str, factor: float = COST_RISE):
        self.phase, self.factor, self.warned = phase, factor, False
        self.start: float | None = None  # the first cost seen

    def __call__(self, cost: float) -> None:
        cost = abs(float(cost))
        if self.start is None:
            self.start = cost
        elif not self.warned and math.isfinite(cost) and cost > self.factor * max(self.start, 1e-12):
            self.warned = True
            warnings.warn(
                f"{self.phase}: the cost rose from {self.start:.4g} to {cost:.4g}; "
                "the run may be diverging: try a smaller learning rate",
                RuntimeWarning,
                stacklevel=2,
            )


def check_cost_end(phase: str, start: float, end: float, hint: str, factor: float = COST_RISE) -> None:
    """Raise ``TrainingDiverged`` when a phase's cost ended ``factor`` times above where it began.

    ``start`` is the phase's first cost and ``end`` its last epoch's mean
    (magnitudes, as ``CostWatch`` takes them); ``hint`` names the setting to
    lower. A cost that rose and came back down is only warned of.

    Parameters
    ----------
    phase : str
        The training phase, for the message.
    start, end : float
        The phase's first cost and its last epoch's mean cost.
    hint : str
        What to change, ending the message.
    factor : float
        How many times its start the end may reach.

    Raises
    ------
    TrainingDiverged
        If ``|end| > factor * |start|``.

    Examples
    --------
    >>> check_cost_end("fine-tuning", 2.3, 0.1, "lower --finetune-lr")
    >>> check_cost_end("fine-tuning", 2.3, 3.0e6, "lower --finetune-lr (now 1e+06)")
    Traceback (most recent call last):
    ...
    sda.errors.TrainingDiverged: fine-tuning diverged: the cost at the end is 3e+06, over 10 times the \
2.3 it began at; lower --finetune-lr (now 1e+06)
    """
    start, end = abs(float(start)), abs(float(end))
    if end > factor * max(start, 1e-12):
        raise TrainingDiverged(
            phase,
            "cost at the end",
            hint=hint,
            value=f"{end:.4g}, over {factor:g} times the {start:.4g} it began at",
        )


def chance_error(labels) -> float:
    """The error rate of always guessing the commonest of ``labels``.

    Parameters
    ----------
    labels : array_like
        Class labels.

    Returns
    -------
    float
        The fraction of ``labels`` outside the commonest class.

    Examples
    --------
    >>> chance_error([0, 0, 1, 2])
    0.5
    """
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    return float(1.0 - counts.max() / counts.sum())


def check_beats_chance(best_error: float, labels, hint: str) -> None:
    """Raise ``TrainingFailed`` unless ``best_error`` lies below chance on ``labels``.

    Chance is the error of always guessing the commonest class of the
    validation ``labels``: a model that never gets below it has learned
    nothing a constant answer does not give. A weak model that does get
    below it passes, however little (on a skewed validation set, beating
    chance by little can still be real learning); a validation set of one
    class cannot tell, and always passes.

    Parameters
    ----------
    best_error : float
        The run's best validation error rate.
    labels : array_like
        The validation labels.
    hint : str
        What to change, ending the message.

    Raises
    ------
    TrainingFailed
        If ``best_error`` is not below chance.

    Examples
    --------
    >>> check_beats_chance(0.45, [0, 1] * 50, "lower the learning rates")
    >>> check_beats_chance(0.5, [0, 1] * 50, "lower the learning rates")
    Traceback (most recent call last):
    ...
    sda.errors.TrainingFailed: the run never beat chance: its best validation error, 50.00 %, is not \
below the 50.00 % of always guessing the commonest class; lower the learning rates
    """
    chance = chance_error(labels)
    if chance > 0 and not best_error < chance:
        raise TrainingFailed(
            f"the run never beat chance: its best validation error, {100 * best_error:.2f} %, is not below "
            f"the {100 * chance:.2f} % of always guessing the commonest class; {hint}"
        )


@contextlib.contextmanager
def recorded_warnings(into: list):
    """Show warnings as before and also append each message, once, to ``into``.

    Only what the warning filters let through is recorded. ``sda.run``
    keeps the list in its checkpoint and writes it to ``summary.json``, so a
    run that warned of divergence but finished does not read as a clean
    success.

    Parameters
    ----------
    into : list of str
        Receives ``"Category: message"`` for each warning shown while the block runs.

    Yields
    ------
    list of str
        ``into`` itself.

    Examples
    --------
    >>> seen = []
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("always")
    ...     warnings.showwarning = lambda *args, **kwargs: None  # print nothing here
    ...     with recorded_warnings(seen):
    ...         watch = CostWatch("fine-tuning", factor=10)
    ...         for cost in [1.0, 20.0, 30.0]:
    ...             watch(cost)
    >>> seen  # doctest: +NORMALIZE_WHITESPACE
    ['RuntimeWarning: fine-tuning: the cost rose from 1 to 20; the run may be diverging:
      try a smaller learning rate']
    """
    with warnings.catch_warnings():
        shown = warnings.showwarning

        def record(message, category, *args, **kwargs):
            text = f"{category.__name__}: {message}"
            if text not in into:  # a resumed run replays the steps that warned
                into.append(text)
            shown(message, category, *args, **kwargs)

        warnings.showwarning = record
        yield into


# ------------------------------------------------------------- the commands' exit
INTERRUPTED = 130  # the shell's status for a process stopped by Ctrl-C (128 + SIGINT)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """A warning as one line a user reads, without the source location."""
    print(f"warning: {message}", file=file or sys.stderr, flush=True)


def exit_status(action: Callable[[], object]) -> int:
    """Run ``action()``; return the process exit status (0, 2 or 130).

    A user error (``SdAError``, which includes ``DataError`` and
    ``TrainingDiverged``) or an operating-system error (a full disk, a file
    that cannot be written) becomes one line on stderr and status 2; Ctrl-C
    becomes one line (its message says where to resume, if a run was
    interrupted) and status 130. Warnings (e.g. a diverging cost) print as
    one "warning: ..." line. It lives here, beside the errors, so that a
    command that trains nothing (``sda.replot``) need not import the
    training stack to report them.

    Parameters
    ----------
    action : callable
        The command's work, called without arguments.

    Returns
    -------
    int
        0 when ``action`` returns, 2 after a user or operating-system error, 130 after Ctrl-C.
    """
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            action()
    except KeyboardInterrupt as stop:
        print(f"interrupted{': ' + str(stop) if str(stop) else ''}", file=sys.stderr)
        return INTERRUPTED
    except (SdAError, OSError) as error:  # anything else is a bug: its traceback stays
        print("error: " + " ".join(str(error).split()), file=sys.stderr)
        return 2
    return 0
