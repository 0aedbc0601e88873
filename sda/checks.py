"""Argument checks for the library's constructors.

Each check raises an error that is both an ``SdAError`` (the commands print it
as one line) and the ``TypeError`` or ``ValueError`` Python code expects, and
its message names the argument, what it got and what to pass instead.
"""

import math
import numbers
from collections.abc import Sequence

import numpy as np

from sda.errors import SettingError, SettingTypeError


def check_count(name: str, value, minimum: int = 1) -> int:
    """Return ``value`` as an int, refusing bools, floats and counts below ``minimum``.

    Examples
    --------
    >>> check_count("n_hidden", 500)
    500
    >>> check_count("n_hidden", 2.5)
    Traceback (most recent call last):
    ...
    sda.errors.SettingTypeError: n_hidden must be a whole number, got 2.5 (float); pass an int such as 3
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise SettingTypeError(
            f"{name} must be a whole number, got {value!r} ({type(value).__name__}); "
            f"pass an int such as {max(minimum, 3)}"
        )
    if value < minimum:
        wanted = "a positive integer" if minimum == 1 else f"at least {minimum}"
        raise SettingError(f"{name} must be {wanted}, got {value}")
    return int(value)


def check_sequence(name: str, value, example: str) -> list:
    """Return ``value`` as a list, refusing scalars and strings.

    ``example`` shows a valid value in the message.
    """
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray):
        raise SettingTypeError(
            f"{name} must be a list or tuple, got {value!r} ({type(value).__name__}); "
            f"pass e.g. {example}"
        )
    return list(value)


def check_probability(name: str, value) -> float:
    """Return ``value`` as a float in [0, 1), refusing strings, bools and NaN."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise SettingTypeError(
            f"{name} must be a number in [0, 1), got {value!r} ({type(value).__name__}); "
            "pass e.g. 0.1"
        )
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise SettingError(
            f"{name} = {value!r} is outside [0, 1): it is the probability of zeroing an input"
        )
    return float(value)


def check_decay(name: str, value) -> float:
    """Return ``value`` as a float in (0, 1], a per-epoch factor on a learning rate.

    Examples
    --------
    >>> check_decay("finetune_lr_decay", 0.95)
    0.95
    >>> check_decay("finetune_lr_decay", 0)
    Traceback (most recent call last):
    ...
    sda.errors.SettingError: finetune_lr_decay must be in (0, 1] (1 keeps the rate constant), got 0
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise SettingTypeError(f"{name} must be a number in (0, 1], got {value!r} "
                               f"({type(value).__name__}); pass e.g. 0.95")
    if not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise SettingError(f"{name} must be in (0, 1] (1 keeps the rate constant), got {value!r}")
    return float(value)


def check_passes(name: str, value, allow_none: bool = False) -> float | None:
    """Return ``value`` as a float, a positive finite number of pass-equivalents.

    A pass-equivalent is one training set's worth of rows pushed forward and
    backward; budgets and evaluation spacing are counted in them.

    Examples
    --------
    >>> check_passes("budget_passes", 200)
    200.0
    >>> check_passes("eval_every", 0)
    Traceback (most recent call last):
    ...
    sda.errors.SettingError: eval_every must be a positive number of pass-equivalents, got 0
    """
    if value is None and allow_none:
        return None
    none = " or None" if allow_none else ""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise SettingTypeError(f"{name} must be a positive number of pass-equivalents{none}, got "
                               f"{value!r} ({type(value).__name__}); pass e.g. 0.5")
    if not (math.isfinite(value) and value > 0):
        raise SettingError(f"{name} must be a positive number of pass-equivalents{none}, got {value!r}")
    return float(value)


def check_flag(name: str, value) -> bool:
    """Return ``value`` if it is a bool; ``tied="no"`` must not read as True."""
    if not isinstance(value, bool | np.bool_):
        raise SettingTypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def check_choice(name: str, value, choices: tuple) -> None:
    """Refuse ``value`` unless it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise SettingError(f"unknown {name} {value!r}: choose one of {choices}")


def check_numpy_rng(name: str, value) -> None:
    """Refuse anything but a ``numpy.random.Generator`` or ``RandomState``."""
    if not isinstance(value, np.random.Generator | np.random.RandomState):
        raise SettingTypeError(
            f"{name} must be a numpy random generator, got {value!r} ({type(value).__name__}); "
            "pass e.g. numpy.random.default_rng(1234) or numpy.random.RandomState(1234)"
        )
