"""Argument checks for the library's functions, and the memory a model will need.

The ``check_*`` functions apply the rules of ``sda.constraints`` to an
argument of any name: each raises an error that is both an ``SdAError`` (the
commands print it as one line) and the ``TypeError`` or ``ValueError`` Python
code expects, in the table's words. A named setting is checked with
``sda.constraints.check_setting``.
"""

import numbers
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from sda.constraints import COUNT, DECAY, POSITIVE, PROBABILITY, Interval, Setting, check_setting
from sda.errors import SettingError, SettingTypeError

__all__ = [
    "check_choice",
    "check_count",
    "check_decay",
    "check_flag",
    "check_memory",
    "check_numpy_rng",
    "check_passes",
    "check_probability",
    "check_sequence",
    "check_setting",
    "training_memory",
]


def check_count(name: str, value: Any, minimum: int = 1) -> int:
    """Return ``value`` as an int, refusing bools, floats and counts below ``minimum``.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : object
        The value given; any integral number (``int``, ``numpy.int64``, ...) but a bool.
    minimum : int, default 1
        The smallest count allowed.

    Returns
    -------
    int
        ``value`` as a Python int.

    Raises
    ------
    SettingTypeError
        If ``value`` is not a whole number (a float, a string, a bool...).
    SettingError
        If ``value`` is below ``minimum``.

    Examples
    --------
    >>> check_count("n_hidden", 500)
    500
    >>> check_count("n_hidden", 2.5)
    Traceback (most recent call last):
    ...
    sda.errors.SettingTypeError: n_hidden must be a whole number at least 1, got 2.5 (float)
    """
    interval = COUNT if minimum == 1 else Interval(numbers.Integral, minimum, None, closed="left")
    return Setting(name, int, "", interval).check(value)


def check_sequence(name: str, value: Any, kind: type = int) -> tuple[Any, ...]:
    """Return ``value`` as a tuple of ``kind``, refusing scalars, strings and empty lists.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : object
        The value given: a non-empty list, tuple or array.
    kind : type, default int
        The type of every item (``int`` refuses bools and floats).

    Returns
    -------
    tuple
        The items, each as a plain ``kind``.

    Raises
    ------
    SettingTypeError
        If ``value`` is not a sequence, or an item is not of ``kind``.
    SettingError
        If ``value`` is empty.
    """
    return Setting(name, kind, "", many=True).check(value)


def check_probability(name: str, value: Any) -> float:
    """Return ``value`` as a float in [0, 1), refusing strings, bools and NaN.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : object
        The value given, a real number (e.g. a corruption level).

    Returns
    -------
    float
        ``value`` as a Python float.

    Raises
    ------
    SettingTypeError
        If ``value`` is not a real number.
    SettingError
        If ``value`` is outside [0, 1) or NaN.
    """
    return Setting(name, float, "", PROBABILITY).check(value)


def check_decay(name: str, value: Any) -> float:
    """Return ``value`` as a float in (0, 1], a per-epoch factor on a learning rate (1: constant).

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : object
        The value given, a real number.

    Returns
    -------
    float
        ``value`` as a Python float.

    Raises
    ------
    SettingTypeError
        If ``value`` is not a real number.
    SettingError
        If ``value`` is outside (0, 1].

    Examples
    --------
    >>> check_decay("finetune_lr_decay", 0.95)
    0.95
    >>> check_decay("finetune_lr_decay", 0)
    Traceback (most recent call last):
    ...
    sda.errors.SettingError: finetune_lr_decay must be in (0, 1], got 0
    """
    return Setting(name, float, "", DECAY).check(value)


def check_passes(name: str, value: Any, allow_none: bool = False) -> float | None:
    """Return ``value`` as a float, a positive finite number of pass-equivalents.

    A pass-equivalent is one training set's worth of rows pushed forward and
    backward; budgets and evaluation spacing are counted in them.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : object
        The value given, a real number of pass-equivalents.
    allow_none : bool, default False
        Whether None (no budget, no spacing) is accepted and returned as is.

    Returns
    -------
    float or None
        ``value`` as a Python float (None only when ``allow_none``).

    Raises
    ------
    SettingTypeError
        If ``value`` is not a real number (or is None without ``allow_none``).
    SettingError
        If ``value`` is not more than 0, or not finite.

    Examples
    --------
    >>> check_passes("budget_passes", 200)
    200.0
    >>> check_passes("eval_every", 0)
    Traceback (most recent call last):
    ...
    sda.errors.SettingError: eval_every must be more than 0, got 0
    """
    return Setting(name, float, "", POSITIVE).check(value, allow_none=allow_none)


def check_flag(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool; ``tied="no"`` must not read as True.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : object
        The value given: ``True``, ``False`` or a numpy bool.

    Returns
    -------
    bool
        ``value`` as a Python bool.

    Raises
    ------
    SettingTypeError
        If ``value`` is not a bool (a string, an int...).
    """
    return Setting(name, bool, "").check(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : object
        The value given, a string.
    choices : sequence of str
        The strings allowed.

    Returns
    -------
    str
        ``value``.

    Raises
    ------
    SettingTypeError
        If ``value`` is not a string.
    SettingError
        If ``value`` is not one of ``choices``; the message lists them.
    """
    return Setting(name, str, "", choices=tuple(choices)).check(value)


def check_numpy_rng(name: str, value: Any) -> None:
    """Refuse anything but a ``numpy.random.Generator`` or ``RandomState``.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : object
        The value given.

    Raises
    ------
    SettingTypeError
        If ``value`` is neither a ``numpy.random.Generator`` nor a ``RandomState``
        (e.g. a bare seed); the message shows how to make one.
    """
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
    else the free physical pages ``os.sysconf`` reports, else None (unknown).

    Returns
    -------
    int or None
        Available bytes, or None where the system does not say.
    """
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

    Parameters
    ----------
    parts : dict of str to int
        Bytes needed by part, as ``training_memory`` returns them.
    reduce : dict of str to str
        For a part, the setting (or flag) that makes it smaller; a part not
        named here is named itself in the message.
    available : int, optional
        Bytes available; default ``available_memory()``. When that is unknown
        nothing is refused.

    Raises
    ------
    SettingError
        If the parts add up to more than ``available`` bytes.

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
