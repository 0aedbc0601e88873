"""Argument checks for the library's constructors.

Each check raises an error that is both an ``SdAError`` (the commands print it
as one line) and the ``TypeError`` or ``ValueError`` Python code expects, and
its message names the argument, what it got and what to pass instead.
"""

import math
import numbers
import os
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
            f"{name} must be a list or tuple, got {value!r} ({type(value).__name__}); pass e.g. {example}"
        )
    return list(value)


def check_probability(name: str, value) -> float:
    """Return ``value`` as a float in [0, 1), refusing strings, bools and NaN."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise SettingTypeError(
            f"{name} must be a number in [0, 1), got {value!r} ({type(value).__name__}); pass e.g. 0.1"
        )
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise SettingError(f"{name} = {value!r} is outside [0, 1): it is the probability of zeroing an input")
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
        raise SettingTypeError(
            f"{name} must be a number in (0, 1], got {value!r} ({type(value).__name__}); pass e.g. 0.95"
        )
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
        raise SettingTypeError(
            f"{name} must be a positive number of pass-equivalents{none}, got "
            f"{value!r} ({type(value).__name__}); pass e.g. 0.5"
        )
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


# ----------------------------------------------------------------- memory
FLOAT_BYTES = 4  # float32, the engine's floatX
FLAT_VECTORS = {"sgd": 0, "cg": 8, "lbfgs": 26}  # float64 copies of all parameters (scipy's state)
ACTIVATION_COPIES = 4  # a minibatch's activations: forward, corrupted input, backward, update


def available_memory() -> int | None:
    """Bytes of memory this process may still take: ``MemAvailable`` of ``/proc/meminfo``,
    else the free physical pages ``os.sysconf`` reports, else None (unknown)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def training_memory(
    n_features: int,
    hidden_layers: Sequence[int],
    n_classes: int,
    *,
    tied: bool = True,
    optimiser: str = "sgd",
    n_rows: int = 0,
    n_train: int = 0,
    cached: bool = True,
    batch_rows: int = 0,
    eval_rows: int = 0,
) -> dict[str, int]:
    """Bytes a model and its training will allocate, by part, before it allocates any of it.

    Parameters
    ----------
    n_features, hidden_layers, n_classes : int, sequence of int, int
        The network: inputs, hidden layer sizes (bottom first) and softmax outputs.
    tied : bool
        Decoders share the encoders' weights (untied ones add a matrix per layer).
    optimiser : str
        "sgd" (a gradient and a velocity per parameter), "cg" or "lbfgs" (float64
        flat copies of every parameter for scipy as well).
    n_rows, n_train : int
        Rows of the whole data set (held as float32) and of its training split
        (whose hidden representation layer-wise pre-training caches).
    cached : bool
        Whether pre-training caches each layer's input (the fast path).
    batch_rows, eval_rows : int
        Rows per training minibatch and per evaluation chunk.

    Returns
    -------
    dict
        ``{"parameters", "flat vectors", "data", "cached layer inputs", "minibatch",
        "evaluation chunks"}`` in bytes.

    Examples
    --------
    >>> parts = training_memory(784, (1000,), 10)
    >>> parts["parameters"] // 2**20  # weights, gradients, velocities and the float64 first draw
    15
    """
    sizes = [n_features, *hidden_layers]
    matrices = [n_in * n_out for n_in, n_out in zip(sizes, sizes[1:])]
    weights = (
        sum(matrices) * (1 if tied else 2)
        + sum(hidden_layers)
        + sum(sizes[:-1])
        + sizes[-1] * n_classes
        + n_classes
    )
    # each parameter, its gradient and its velocity; the first weights are drawn as float64
    first_draw = 2 * FLOAT_BYTES * max([*matrices, sizes[-1] * n_classes])
    units = sum(sizes) + n_classes
    return {
        "parameters": 3 * FLOAT_BYTES * weights + first_draw,
        "flat vectors": 2 * FLOAT_BYTES * weights * FLAT_VECTORS.get(optimiser, 0),
        "data": FLOAT_BYTES * n_rows * (n_features + 1),
        # the new layer's input is made before the previous one is dropped
        "cached layer inputs": 2 * FLOAT_BYTES * n_train * max(hidden_layers[:-1], default=0) * cached,
        "minibatch": ACTIVATION_COPIES * FLOAT_BYTES * batch_rows * units,
        "evaluation chunks": 2 * FLOAT_BYTES * eval_rows * units,
    }


def _size(n_bytes: float) -> str:
    """``n_bytes`` in binary units, e.g. "1.5 GiB"."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n_bytes < 1024 or unit == "PiB":
            return f"{n_bytes:.3g} {unit}"
        n_bytes /= 1024
    raise AssertionError  # the loop always returns


def check_memory(parts: dict[str, int], reduce: dict[str, str], available: int | None = None) -> None:
    """Refuse, before anything is allocated, a model whose ``parts`` (``training_memory``)
    add up to more than the ``available`` bytes (default: ``available_memory()``; unknown: no check).

    ``reduce`` names, for each part, the setting that shrinks it; the message names the
    setting of the largest part.

    Examples
    --------
    >>> parts = training_memory(784, (10**8,), 10)
    >>> check_memory(parts, {"parameters": "hidden_layers"}, available=2**34)
    Traceback (most recent call last):
    ...
    sda.errors.SettingError: the model needs about 1.44 TiB of memory (parameters: 1.44 TiB) but 16 GiB \
is available: reduce hidden_layers
    """
    available = available_memory() if available is None else available
    needed = sum(parts.values())
    if available is None or needed <= available:
        return
    largest = max(parts, key=lambda part: parts[part])
    raise SettingError(
        f"the model needs about {_size(needed)} of memory ({largest}: "
        f"{_size(parts[largest])}) but {_size(available)} is available: "
        f"reduce {reduce.get(largest, largest)}"
    )
