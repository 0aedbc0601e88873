"""Errors a user can act on, and the guard that stops a diverging run.

Every command prints an ``SdAError`` as one line and exits with status 2, so
an error raised here must say what went wrong and what to do about it.
"""

import contextlib
import math
import warnings

import numpy as np


class SdAError(Exception):
    """A problem the user can fix: its message names the problem and the fix."""


class SettingError(SdAError, ValueError):
    """A setting or argument of the right type whose value makes no sense."""


class SettingTypeError(SdAError, TypeError):
    """A setting or argument of the wrong type."""


class TrainingDiverged(SdAError):
    """A cost or parameter stopped being a finite number.

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

    def __init__(self, phase: str, what: str, *, layer: int | None = None,
                 epoch: int | None = None, step: int | None = None, value: float = float("nan"),
                 hint: str = "try a smaller learning rate"):
        self.phase, self.what, self.layer, self.epoch, self.step = phase, what, layer, epoch, step
        where = ", ".join(f"{name} {number}" for name, number in
                          [("layer", layer), ("epoch", epoch), ("step", step)] if number is not None)
        super().__init__(f"{phase} diverged{' at ' + where if where else ''}: the {what} is "
                         f"{value}; {hint}")


def check_finite(value, phase: str, what: str = "cost", **where) -> None:
    """Raise ``TrainingDiverged`` unless every entry of ``value`` is finite.

    ``where`` takes the ``layer``, ``epoch`` and ``step`` to name in the error.

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

    def __init__(self, phase: str, factor: float = 10.0):
        self.phase, self.factor, self.start, self.warned = phase, factor, None, False

    def __call__(self, cost: float) -> None:
        cost = abs(float(cost))
        if self.start is None:
            self.start = cost
        elif not self.warned and math.isfinite(cost) and cost > self.factor * max(self.start, 1e-12):
            self.warned = True
            warnings.warn(f"{self.phase}: the cost rose from {self.start:.4g} to {cost:.4g}; "
                          "the run may be diverging: try a smaller learning rate",
                          RuntimeWarning, stacklevel=2)


@contextlib.contextmanager
def recorded_warnings(into: list):
    """Show warnings as before and also append each message, once, to ``into``.

    Only what the warning filters let through is recorded. ``sda.run``
    keeps the list in its checkpoint and writes it to ``summary.json``, so a
    run that warned of divergence but finished does not read as a clean
    success.

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
