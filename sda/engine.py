"""PyTensor set-up: float32, the fastest CPU backend we can get, and its BLAS.

This is the only module that changes ``pytensor.config``. Importing ``sda``
imports it once, so users never need ``PYTENSOR_FLAGS``; but what a user did
set there or in a ``.pytensorrc`` (``mode``, ``linker``, ``floatX``,
``blas__ldflags``) is kept, and ``BACKEND`` says what was chosen and why.

Why the C backend ("CVM") and not PyTensor's default Numba linker or JAX:
``python -m bench.floor``, three runs on an idle 2-core AMD EPYC with MKL
linked, put the C backend 2.2-3.5x ahead of Numba at batch sizes 1 and 20
and 1.4-1.5x ahead at 100, for both the dA step and the fine-tuning step;
and 1.4-1.7x (batch 1) and 1.05-1.2x (batch 20) ahead of JAX, which led
only at batch 100 (C/JAX 0.79-0.84 for the dA step, 0.88-0.97 for
fine-tuning). Every preset trains at batch 1 or 20, so C it is; the README's
Performance section has the tables. Without a linkable BLAS the C backend
falls back to NumPy C-API calls that are slower than Numba (58 vs 256
samples/s at batch 1), so there we keep Numba.
"""

import ctypes.util
import glob
import importlib.util
import inspect
import logging
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pytensor
from pytensor.compile.mode import get_mode
from pytensor.link.jax.linker import JAXLinker

from sda.batching import batch_slice
from sda.errors import SdAError, SettingTypeError

if TYPE_CHECKING:  # for annotations only: engine configures PyTensor before the graphs are imported
    from pytensor.graph.basic import Variable

    from sda.graph_types import Tensor, Update

FLOATX = "float32"
BLAS_ENV = "SDA_BLAS_LDFLAGS"  # override the detected BLAS link flags
MODE_ENV = "SDA_MODE"  # the mode by name, as `--mode` takes it, e.g. SDA_MODE=numba
MODES = {"c": "CVM", "numba": "NUMBA", "jax": "JAX"}  # use_mode's names -> PyTensor's modes
USER_SETTINGS = ("mode", "linker", "floatX", "blas__ldflags")  # kept when the user set them


def user_settings() -> dict[str, str]:
    """The settings of ``USER_SETTINGS`` made in ``PYTENSOR_FLAGS`` or a ``.pytensorrc``.

    Returns
    -------
    dict
        ``{name: value}`` for each one the user set; PyTensor's defaults are left out.

    Examples
    --------
    >>> user_settings()  # doctest: +SKIP
    {'floatX': 'float64'}
    """
    config = pytensor.config
    # Each setting is a ConfigParam on the config's class; PyTensor marks it
    # non-default when it read a value from the flags or an rc file.
    return {
        name: str(getattr(config, name))
        for name in USER_SETTINGS
        if not getattr(type(config), name).is_default
    }


def _mkl_ldflags():
    """Link flags for pip's ``mkl`` wheel, which installs into ``<prefix>/lib``."""
    libdir = os.path.join(sys.prefix, "lib")
    for pattern in ("libmkl_rt.so.*", "libmkl_rt.*.dylib", "libmkl_rt.so", "libmkl_rt.dylib"):
        found = sorted(glob.glob(os.path.join(libdir, pattern)))
        if found:
            # '-l:NAME' links the versioned file the wheel ships (there is no
            # unversioned symlink); the rpath lets the compiled module find it.
            name = os.path.basename(found[-1])
            return f"-L{libdir} -l:{name} -Xlinker -rpath -Xlinker {libdir}"
    return None


def _system_blas_ldflags():
    """Link flags for a system BLAS PyTensor does not find by itself."""
    for name in ("openblas", "blas"):
        if ctypes.util.find_library(name):
            return f"-l{name}"
    return None


def _blas_ldflags(user):
    """The BLAS link flags: the user's, then ``$SDA_BLAS_LDFLAGS``, then detected; None if none."""
    if "blas__ldflags" in user:
        return user["blas__ldflags"] or None  # an empty setting means "no BLAS"
    return os.environ.get(BLAS_ENV) or _mkl_ldflags() or _system_blas_ldflags()


def _warn_no_blas():
    warnings.warn(
        "sda: no BLAS library could be linked, so the C backend would be slow; "
        "using PyTensor's Numba backend instead. For 2-5x faster training on "
        "x86_64 Linux run `pip install mkl`, or install OpenBLAS "
        "(e.g. `apt-get install libopenblas-dev`), or set "
        f"{BLAS_ENV} to your BLAS link flags.",
        RuntimeWarning,
        stacklevel=4,
    )


def _choose_backend(user):
    """Return ``(mode, ldflags, description)`` given the ``user_settings()``: the PyTensor
    mode to set (None: keep the user's), the BLAS link flags to set ("" for none) and why."""
    ldflags = _blas_ldflags(user)
    if "mode" in user or "linker" in user:
        linker = f" with linker {user['linker']}" if "linker" in user else ""
        return None, ldflags or "", f"PyTensor mode {pytensor.config.mode}{linker} (set by the user)"
    if not pytensor.config.cxx:
        return "NUMBA", "", "Numba (no C++ compiler found for the C backend)"
    if ldflags is None:
        _warn_no_blas()
        return "NUMBA", "", "Numba (no BLAS found)"
    return "CVM", ldflags, f"C backend (CVM) with BLAS: {ldflags}"


class _QuietBlasCheck(logging.Filter):
    """Hide PyTensor's false alarm: it looks for a file ending in ``.so`` and
    does not recognise the versioned ``libmkl_rt.so.3`` the wheel ships."""

    def filter(self, record):
        return "did not find a dynamic library" not in record.getMessage()


def _apply(mode, ldflags, user):
    """Set what the user did not: the mode, the BLAS flags and float32."""
    if mode is not None:
        pytensor.config.mode = mode
    if ldflags and "blas__ldflags" not in user:
        pytensor.config.blas__ldflags = ldflags
    if "floatX" not in user:
        pytensor.config.floatX = FLOATX


def _describe(description, user):
    """One line: the backend, the float type, and which settings came from the user."""
    line = f"{description}; {pytensor.config.floatX}"
    kept = [f"{name}={value}" for name, value in user.items() if name not in ("mode", "linker")]
    if kept:
        line += f"; kept from PYTENSOR_FLAGS/.pytensorrc: {', '.join(kept)}"
    return line


def configure() -> str:
    """Set PyTensor up for sda, keeping what the user set; return a one-line description.

    ``$SDA_MODE`` (c, numba or jax) picks the mode like ``use_mode`` does.

    Returns
    -------
    str
        What was chosen, e.g. ``"C backend (CVM) with BLAS: -lopenblas; float32"``.

    Examples
    --------
    ``import sda`` runs it once and keeps the line in ``sda.BACKEND``:

    >>> import sda
    >>> sda.BACKEND  # doctest: +SKIP
    'C backend (CVM) with BLAS: -L/venv/lib -l:libmkl_rt.so.3 ...; float32'
    """
    logging.getLogger("pytensor.tensor.blas").addFilter(_QuietBlasCheck())
    if os.environ.get(MODE_ENV):
        return use_mode(os.environ[MODE_ENV], _source=f"set by ${MODE_ENV}")
    user = user_settings()
    mode, ldflags, description = _choose_backend(user)
    _apply(mode, ldflags, user)
    return _describe(description, user)


def use_mode(name: str | None, _source: str = "chosen") -> str:
    """Compile the graphs built from now on with PyTensor's C, Numba or JAX backend.

    Parameters
    ----------
    name : {"c", "numba", "jax"} or None
        "c": the C backend (CVM) with a BLAS; "numba": PyTensor's Numba
        backend; "jax": PyTensor's JAX backend (needs ``pip install 'sda-pytensor[jax]'``).
        None keeps the current choice. The user's ``floatX`` and
        ``blas__ldflags`` are kept either way.

    Returns
    -------
    str
        One line saying what is in use; also stored in ``sda.engine.BACKEND``.

    Raises
    ------
    SdAError
        If the name is unknown or the backend cannot run here, with the fix.

    Examples
    --------
    >>> from sda.engine import use_mode
    >>> use_mode("numba")  # doctest: +SKIP
    'Numba (chosen); float32'
    """
    global BACKEND
    if name is None:
        return BACKEND
    key = str(name).lower()
    if key not in MODES:
        raise SdAError(f"unknown mode {name!r}: choose one of {', '.join(MODES)}")
    user = user_settings()
    ldflags = _blas_ldflags(user)
    if key == "jax" and importlib.util.find_spec("jax") is None:
        raise SdAError("mode 'jax' needs JAX, which is not installed: pip install 'sda-pytensor[jax]'")
    if key == "c" and not pytensor.config.cxx:
        raise SdAError(
            "mode 'c' needs a C++ compiler and none was found: install g++ "
            "(e.g. apt-get install g++) or use mode 'numba'"
        )
    if key == "c" and ldflags is None:
        warnings.warn(
            "sda: mode 'c' without a BLAS library is slow; `pip install mkl` or set "
            f"{BLAS_ENV} to your BLAS link flags",
            RuntimeWarning,
            stacklevel=2,
        )
    descriptions = {"c": f"C backend (CVM) with BLAS: {ldflags or 'none'}", "numba": "Numba", "jax": "JAX"}
    _apply(MODES[key], ldflags, user)
    BACKEND = _describe(f"{descriptions[key]} ({_source})", user)
    return BACKEND


def uses_jax() -> bool:
    """Whether graphs compiled now go to PyTensor's JAX backend.

    Returns
    -------
    bool
        True after ``use_mode("jax")`` (or ``mode=JAX`` in ``PYTENSOR_FLAGS``).

    Examples
    --------
    >>> uses_jax()  # doctest: +SKIP
    False
    """
    return isinstance(get_mode(None).linker, JAXLinker)


def bind_arguments(name: str, names: Sequence[str], args: tuple, kwargs: dict) -> tuple:
    """A call's arguments in the order of ``names``, given by position, by name or both.

    Parameters
    ----------
    name : str
        The function's name, for the error message.
    names : sequence of str
        Its inputs' names, in order: those of the symbolic variables.
    args, kwargs
        The call's positional and keyword arguments.

    Returns
    -------
    tuple
        One value per name.

    Raises
    ------
    SettingTypeError
        A ``TypeError`` naming the inputs the function takes, for an unknown or
        repeated name, a missing input or too many values.

    Examples
    --------
    >>> bind_arguments("step", ["index", "corruption", "lr"], (3,), {"lr": 0.1, "corruption": 0.2})
    (3, 0.2, 0.1)
    >>> bind_arguments("step", ["index", "lr"], (), {"index": 3, "rate": 0.1})
    Traceback (most recent call last):
    ...
    sda.errors.SettingTypeError: step(index, lr): got an unexpected keyword argument 'rate'
    """
    takes = f"{name}({', '.join(names)})"
    unknown = [key for key in kwargs if key not in names]
    if unknown:  # named before a missing input: a misspelt name is the likelier mistake
        raise SettingTypeError(f"{takes}: got an unexpected keyword argument {unknown[0]!r}")
    signature = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
    )
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as error:  # Python's own wording, after the inputs the function takes
        raise SettingTypeError(f"{takes}: {error}") from None
    return tuple(bound.arguments[n] for n in names)


class BatchedFunction:
    """A compiled ``f(index, *inputs)``, called by position or by its inputs' names.

    The names are those of the symbolic variables, as for a PyTensor
    function, so the tutorial's ``fn(index=i, corruption=0.1, lr=0.001)`` and
    ``fn(i, 0.1, 0.001)`` take the same step. ``batched_function`` builds it.

    Parameters
    ----------
    function : callable
        The compiled function, called with the values by position.
    names : sequence of str
        The names of ``f``'s arguments, ``index`` first.
    name : str
        ``f``'s name, for error messages.
    rows_from : list of shared variables, optional
        Set under JAX: minibatch ``index`` of each of these is cut out in
        NumPy and passed to ``function`` in place of ``index``, before the
        other inputs (JAX traces once per batch shape, a full and a short
        last one).
    batch_size : int
        Rows per batch, with ``rows_from``.

    Examples
    --------
    >>> total = BatchedFunction(lambda index, scale: index * scale, ["index", "scale"], "total")
    >>> total(3, 2.0), total(index=3, scale=2.0), total(3, scale=2.0)
    (6.0, 6.0, 6.0)
    """

    def __init__(self, function, names: Sequence[str], name: str, rows_from=None, batch_size: int = 0):
        self.function, self.names, self.name = function, tuple(names), name
        self.rows_from, self.batch_size = rows_from, batch_size

    def __getattr__(self, name):
        # Everything else (maker, profile, free, ...) is the compiled function's, as before.
        if name == "function":  # not set yet, e.g. while unpickling: no recursion
            raise AttributeError(name)
        return getattr(self.function, name)

    def __call__(self, *args, **kwargs):
        if kwargs or len(args) != len(self.names):  # the training loops' positional calls skip this
            args = bind_arguments(self.name, self.names, args, kwargs)
        if self.rows_from is None:
            return self.function(*args)
        index, *others = args
        rows = [
            batch_slice(source.get_value(borrow=True), int(index), self.batch_size)
            for source in self.rows_from
        ]
        return self.function(*rows, *others)


def batched_function(
    index: "Tensor",
    inputs: Sequence["Tensor"],
    outputs: "Tensor | Sequence[Tensor]",
    batches: "Mapping[Tensor, Tensor]",
    batch_size: int,
    updates: "Sequence[Update] | None" = None,
    name: str | None = None,
) -> BatchedFunction:
    """Compile ``f(index, *inputs)`` that feeds minibatch ``index`` of shared matrices to a graph.

    On the C and Numba backends the graph slices the shared matrices itself
    (``givens``), so a call copies no data. JAX cannot slice at a traced
    index when the slice's length can change (the last batch may be short),
    so under JAX the rows are sliced in NumPy and passed in.

    Parameters
    ----------
    index : scalar integer TensorVariable
        The batch number, ``f``'s first argument.
    inputs : list of TensorVariable
        ``f``'s other arguments, e.g. a learning rate.
    outputs : TensorVariable or list of them
        What ``f`` returns.
    batches : dict
        ``{variable in the graph: shared matrix or vector}``; the variable is
        replaced by rows ``index * batch_size`` up to the next batch.
    batch_size : int
        Rows per batch.
    updates : list of (shared, expression), optional
        As in ``pytensor.function``.
    name : str, optional
        The compiled function's name.

    Returns
    -------
    BatchedFunction
        ``f(index, *inputs)``, whose arguments may also be given by the
        variables' names, e.g. ``f(index=0)``.

    Examples
    --------
    >>> import numpy as np, pytensor.tensor as pt
    >>> data = pytensor.shared(np.arange(5.0, dtype="float32"))
    >>> index, x = pt.lscalar("index"), pt.vector("x")
    >>> total = batched_function(index, [], x.sum(), {x: data}, batch_size=2)
    >>> [float(total(i)) for i in range(3)]
    [1.0, 5.0, 4.0]
    >>> float(total(index=2))
    4.0
    """
    # An unnamed input (plain PyTensor allows it) is called by position, or as input<k>.
    names = [variable.name or f"input{k}" for k, variable in enumerate((index, *inputs))]
    if not uses_jax():
        givens: dict[Variable[Any, Any], Variable[Any, Any]] = {
            variable: batch_slice(source, index, batch_size) for variable, source in batches.items()
        }
        function = pytensor.function([index, *inputs], outputs, updates=updates, givens=givens, name=name)
        return BatchedFunction(function, names, name or "batched_function")
    # Fresh inputs stand in for the batch variables, which need not be the graph's roots.
    fed: dict[Variable[Any, Any], Variable[Any, Any]] = {
        variable: variable.type(name=variable.name) for variable in batches
    }
    function = pytensor.function([*fed.values(), *inputs], outputs, updates=updates, givens=fed, name=name)
    return BatchedFunction(function, names, name or "batched_function", list(batches.values()), batch_size)


BACKEND = configure()
