"""``python -m sda.sweep``: hyper-parameter search on Optuna, one ordinary run per trial.

    python -m sda.sweep SPACE.toml [--trials N] [--out DIR] [--storage URL] [--study NAME]

``SPACE.toml`` names ``RunConfig`` fields: fixed values under ``[fixed]``
(a ``preset`` among them), ranges under ``[search]``, and the sweep's own
settings under ``[sweep]`` (see ``sweeps/demo.toml``). Every trial is a
``sda.run.run`` with its own run folder in ``OUT/runs``; its objective is the
best validation error, and a median pruner stops poor trials through the
run's ``on_epoch`` callback. The test error is recorded but never optimised.

The study lives in a journal file, ``OUT/journal.log``, unless ``--storage``
names a database (``postgresql://user@host/db``), which several workers on
one machine or many can share. Running the same command again resumes: the
finished trials are kept, a trial whose worker was killed is marked
failed and run again with the same parameters, and a journal line cut
short by a killed writer is dropped (the original kept as
``journal.log.cut``). Before the first trial, every range's bounds are
checked against the data; a trial that still fails with a user error
(its settings, its data, a diverged run) is marked failed with the
reason, and the sweep goes on. At the end the folder gets
``trials.csv``, ``summary.md``, ``best_config.json``, ``objective.png`` and
``importances.png``.
"""

import argparse
import contextlib
import csv
import dataclasses
import functools
import io
import itertools
import json
import math
import os
import socket
import sys
import time
import tomllib
import types
import typing
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, cast

import optuna
import optuna.storages.journal
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from optuna.trial import TrialState

import sda.run
from sda.cli import check_batch_sizes, check_model_memory, load_data
from sda.config import RunConfig, check_field, preset
from sda.constraints import check_range, check_setting
from sda.errors import SdAError, SettingError, SettingTypeError, exit_status
from sda.rundir import atomic_write, read_text, usable_folder

SWEEP_SETTINGS = {
    "trials": 20,
    "seed": 0,
    "sampler": "tpe",
    "pruner": "median",
    "startup_trials": 3,
    "prune_after_epochs": 2,
}
# The sweep owns these: each trial's folder is OUT/runs/trial-NNNN, with no progress bars.
SWEEP_OWNED = ("out", "name", "progress")
NOT_SEARCHABLE = SWEEP_OWNED + ("preset", "data")
RUN_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
MAX_COMBINATIONS = 1000  # of choices, tried when the file is read
# Shared storage: a worker that stops beating for GRACE_SECONDS is taken for dead.
HEARTBEAT_SECONDS, GRACE_SECONDS = 10, 60


class SweepError(SettingError):
    """A search space or storage that cannot be used; raised before any trial runs."""


class InvalidTrial(SdAError):
    """A trial whose drawn settings make no valid run: it fails, the sweep goes on."""


# ------------------------------------------------------------- search space
@dataclass(frozen=True)
class Param:
    """One searched ``RunConfig`` field: a float or int range, or a list of choices.

    Tuple-valued fields (``hidden_layers``, ``corruption_levels``) take lists as
    choices; Optuna sees them as their JSON text.

    Attributes
    ----------
    name : str
        The ``RunConfig`` field searched.
    kind : {"float", "int", "categorical"}
        A range of floats or of ints, or a list of choices.
    low, high : float or None
        A range's bounds, both included; None for choices.
    log : bool
        Draw a range on a log scale (``low`` > 0).
    step : float or None
        A range's spacing; None draws any value (1 for an int range).
    choices : tuple
        The values to choose from (lists for tuple-valued fields); empty for a range.
    """

    name: str
    kind: str  # "float", "int" or "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        """The trial's value of this field, in the type ``RunConfig`` wants.

        Parameters
        ----------
        trial : optuna.Trial
            The trial that draws the value (and records it under ``name``).

        Returns
        -------
        float, int, tuple or other choice
            A tuple for a list-valued choice; a choice's own value otherwise.
        """
        if self.kind in ("float", "int"):
            low, high = self.low, self.high
            assert low is not None and high is not None  # a range's bounds are set when it is read
            if self.kind == "float":
                return trial.suggest_float(self.name, low, high, log=self.log, step=self.step)
            return trial.suggest_int(self.name, int(low), int(high), log=self.log, step=int(self.step or 1))
        return self.decode(trial.suggest_categorical(self.name, [self.encode(c) for c in self.choices]))

    @staticmethod
    def encode(choice: Any) -> Any:
        """A choice as Optuna can store it: a list as its JSON text, anything else as it is.

        Parameters
        ----------
        choice : bool, int, float, str or list
            One of a parameter's choices.

        Returns
        -------
        bool, int, float or str

        Examples
        --------
        >>> Param.encode([500, 500]), Param.encode(0.1)
        ('[500, 500]', 0.1)
        """
        return json.dumps(choice) if isinstance(choice, list) else choice

    def decode(self, value: Any) -> Any:
        """A value Optuna stored for this parameter, back as ``RunConfig`` takes it
        (:meth:`encode`'s inverse).

        Parameters
        ----------
        value : bool, int, float or str
            A trial's value of this parameter.

        Returns
        -------
        object
            A tuple when the choices are lists; ``value`` itself otherwise.

        Examples
        --------
        >>> Param("hidden_layers", "categorical", choices=([500], [500, 500])).decode("[500, 500]")
        (500, 500)
        """
        return (
            tuple(json.loads(value))
            if isinstance(value, str) and isinstance(self.choices[0], list)
            else value
        )

    def extremes(self) -> list[Any]:
        """The values that bound this parameter, to check against ``RunConfig.check``.

        Returns
        -------
        list
            ``[low, high]`` of a range; every choice (lists as tuples) of a categorical.
        """
        if self.kind == "categorical":
            return [tuple(c) if isinstance(c, list) else c for c in self.choices]
        return [self.low, self.high]


@dataclass(frozen=True)
class SearchSpace:
    """What ``SPACE.toml`` declares: fixed fields, searched fields, sweep settings.

    Attributes
    ----------
    source : str
        The file it was read from, named in messages.
    fixed : dict
        ``[fixed]``: ``RunConfig`` field to value (a ``preset`` among them), lists as tuples.
    params : tuple of Param
        ``[search]``: one per searched field.
    settings : dict
        ``[sweep]`` over ``SWEEP_SETTINGS``: ``trials``, ``seed``, ``sampler``, ...
    """

    source: str  # the file, for messages
    fixed: dict
    params: tuple
    settings: dict

    def config(self, values: dict, **bookkeeping: Any) -> RunConfig:
        """The checked ``RunConfig`` of one trial: the preset, the fixed
        fields, the trial's ``values``, then the sweep's ``bookkeeping``.

        Parameters
        ----------
        values : dict
            Searched field to the trial's value (:meth:`suggest`); may be partial.
        **bookkeeping
            Fields the sweep sets for each trial (``out``, ``name``, ``progress``).

        Returns
        -------
        RunConfig

        Raises
        ------
        SettingError
            The values make no valid run (e.g. three layers with two corruption levels).
        """
        fields = {k: v for k, v in self.fixed.items() if k != "preset"}
        return preset(self.fixed.get("preset", "default"), **fields, **values, **bookkeeping).check()

    def suggest(self, trial: optuna.Trial) -> dict:
        """Draw every searched field's value for ``trial``.

        Parameters
        ----------
        trial : optuna.Trial
            The trial that draws and records the values.

        Returns
        -------
        dict
            Field name to its value, as :meth:`config` takes it.
        """
        return {param.name: param.suggest(trial) for param in self.params}

    def as_json(self) -> str:
        """A canonical text of the space, kept in the study to refuse a changed file.

        Returns
        -------
        str
            JSON of the fixed fields and the searched ones, keys sorted (the
            ``[sweep]`` settings are not part of it).
        """
        return json.dumps(
            {"fixed": self.fixed, "params": [dataclasses.asdict(p) for p in self.params]},
            sort_keys=True,
            default=list,
        )


def field_types() -> dict:
    """``{field: set of allowed value types}`` from ``RunConfig``'s annotations.

    Returns
    -------
    dict
        ``RunConfig`` field name to a set of types; ``tuple[int, ...]`` counts as
        ``tuple`` and an optional field does not list ``NoneType``.
    """
    types_of = {}
    for field in dataclasses.fields(RunConfig):
        hint = field.type
        alternatives = hint.__args__ if isinstance(hint, types.UnionType) else (hint,)
        # tuple[int, ...] counts as tuple
        types_of[field.name] = {typing.get_origin(a) or a for a in alternatives} - {type(None)}
    return types_of


def load_space(path: str | os.PathLike[str]) -> SearchSpace:
    """Read and check a search-space file.

    Parameters
    ----------
    path : str or Path
        A TOML file with ``[sweep]`` settings, ``[fixed]`` fields (a ``preset``
        among them) and ``[search]`` ranges, as in ``sweeps/demo.toml``.

    Returns
    -------
    SearchSpace

    Raises
    ------
    SweepError
        One line naming the file, the table or field, and the fix: unknown
        fields or settings, wrong types, empty or reversed ranges, a log range
        from 0, values that ``RunConfig.check`` refuses.
    """
    path = Path(path)
    try:
        document = tomllib.loads(read_text(path, "sweep"))
    except SdAError as error:  # missing, a folder, binary or unreadable: read_text says which
        raise SweepError(str(error)) from None
    except tomllib.TOMLDecodeError as error:
        raise SweepError(f"{path} is not valid TOML: {error}") from None

    def refuse(message):
        raise SweepError(f"{path}: {message}")

    unknown = set(document) - {"sweep", "fixed", "search"}
    if unknown:
        refuse(f"unknown table(s) {sorted(unknown)}: use [sweep], [fixed] and [search]")
    settings = {**SWEEP_SETTINGS, **document.get("sweep", {})}
    check_settings(settings, refuse)
    kinds = field_types()
    fixed = {
        name: check_fixed(name, value, kinds, refuse) for name, value in document.get("fixed", {}).items()
    }
    search = document.get("search", {})
    if not search:
        refuse(
            "[search] is empty: give at least one field with a range, e.g. finetune_lr = "
            "{low = 0.01, high = 1.0, log = true}"
        )
    both = sorted(set(fixed) & set(search))
    if both:
        refuse(f"{both} both fixed and searched: keep each field in one table")
    params = tuple(check_param(name, spec, kinds, refuse) for name, spec in search.items())
    space = SearchSpace(str(path), fixed, params, settings)
    check_extremes(space, refuse)
    return space


def check_settings(settings: dict[str, Any], refuse: Callable[[str], NoReturn]) -> None:
    """Refuse an unknown ``[sweep]`` setting or a bad value.

    Parameters
    ----------
    settings : dict
        ``[sweep]`` over ``SWEEP_SETTINGS``.
    refuse : callable
        Raises the error for a message (naming the file).
    """
    unknown = set(settings) - set(SWEEP_SETTINGS)
    if unknown:
        refuse(f"unknown [sweep] setting(s) {sorted(unknown)}: known are {sorted(SWEEP_SETTINGS)}")
    for name, value in settings.items():
        try:
            check_setting(name, value)
        except (SettingError, SettingTypeError) as error:  # a wrong type too: the file is what is wrong
            refuse(f"[sweep] {error}")


def unknown_field(name: str, kinds: dict[str, set[type]], refuse: Callable[[str], NoReturn]) -> None:
    """Refuse a name that is not a ``RunConfig`` field.

    Parameters
    ----------
    name : str
        A key of ``[fixed]`` or ``[search]``.
    kinds : dict
        :func:`field_types`.
    refuse : callable
        Raises the error for a message (naming the file).
    """
    if name not in kinds:
        refuse(
            f"{name!r} is not a RunConfig field: see python -m sda.run --help for the fields "
            "(flags with - written as _)"
        )


def fits(value: Any, allowed: set[type]) -> bool:
    """Whether a TOML value can stand for a field of the ``allowed`` types.

    Parameters
    ----------
    value : object
        A value read from the TOML file.
    allowed : set of type
        The field's types (a :func:`field_types` entry).

    Returns
    -------
    bool
        An int fits a float field; a list fits a tuple field; a bool only a bool field.

    Examples
    --------
    >>> fits(1, {float}), fits(True, {int}), fits([500, 500], {tuple})
    (True, False, True)
    """
    if isinstance(value, bool):
        return bool in allowed
    if isinstance(value, int):
        return bool({int, float} & allowed)
    if isinstance(value, list):
        return tuple in allowed
    return type(value) in allowed


def check_fixed(name: str, value: Any, kinds: dict[str, set[type]], refuse: Callable[[str], NoReturn]) -> Any:
    """A ``[fixed]`` field's value, checked against the field's type and constraints.

    Parameters
    ----------
    name : str
        The field.
    value : object
        Its value as read from the TOML file.
    kinds : dict
        :func:`field_types`.
    refuse : callable
        Raises the error for a message (naming the file).

    Returns
    -------
    object
        ``value``, a list made a tuple.
    """
    unknown_field(name, kinds, refuse)
    if name in SWEEP_OWNED:
        refuse(f"[fixed] {name} is set by the sweep for each trial: remove it")
    if not fits(value, kinds[name]):
        refuse(f"[fixed] {name} = {value!r} has the wrong type for this field")
    value = tuple(value) if isinstance(value, list) else value
    try:  # e.g. a misspelt preset, blamed here rather than on the first [search] range tried with it
        check_field(RUN_FIELDS[name], value)
    except (SettingError, SettingTypeError) as error:
        refuse(f"[fixed] {error}")
    return value


def check_param(
    name: str, spec: Any, kinds: dict[str, set[type]], refuse: Callable[[str], NoReturn]
) -> Param:
    """A ``[search]`` entry as a checked :class:`Param`.

    Parameters
    ----------
    name : str
        The field searched.
    spec : dict
        ``{low, high[, log][, step]}`` for a range, or ``{choices}``.
    kinds : dict
        :func:`field_types`.
    refuse : callable
        Raises the error for a message (naming the file): an unsearchable
        field, missing or extra keys, wrong types, an empty or reversed range,
        a log range from 0, bounds outside the field's allowed values.

    Returns
    -------
    Param
    """
    unknown_field(name, kinds, refuse)
    if name in NOT_SEARCHABLE:
        refuse(f"{name} cannot be searched: fix it under [fixed] or leave it to the sweep")
    allowed = kinds[name]
    if not isinstance(spec, dict):
        refuse(f"[search] {name} must be a table: {{low = .., high = .., log = ..}} or {{choices = [..]}}")
    if "choices" in spec:
        extra = set(spec) - {"choices"}
        choices = spec["choices"]
        if extra:
            refuse(f"[search] {name}: choices take no other keys (got {sorted(extra)})")
        if not isinstance(choices, list) or not choices:
            refuse(f"[search] {name}: choices must be a non-empty list")
        bad = [c for c in choices if not fits(c, allowed)]
        if bad:
            refuse(f"[search] {name}: choice(s) {bad} have the wrong type for this field")
        return Param(name, "categorical", choices=tuple(choices))
    extra = set(spec) - {"low", "high", "log", "step"}
    if extra or not {"low", "high"} <= set(spec):
        refuse(
            f"[search] {name} needs low and high (and optionally log, step), or choices; "
            f"got keys {sorted(spec)}"
        )
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    if float in allowed:
        kind = "float"
    elif int in allowed and all(isinstance(v, int) for v in (low, high, step or 1)):
        kind = "int"
    else:
        refuse(
            f"[search] {name}: a range needs a numeric field and whole-number bounds for an int "
            "field; use choices = [..] for the others"
        )
    if (
        not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high))
        or not math.isfinite(low)
        or not math.isfinite(high)
        or not low < high
    ):
        refuse(f"[search] {name}: needs numbers low < high, got low = {low!r}, high = {high!r}")
    if not isinstance(log, bool):
        refuse(f"[search] {name}: log must be true or false, got {log!r}")
    if log and low <= 0:
        refuse(f"[search] {name}: a log range needs low > 0, got {low!r}")
    if step is not None and (log or not isinstance(step, int | float) or step <= 0):
        refuse(f"[search] {name}: step must be a positive number, and cannot go with log = true")
    try:
        check_range(name, low, high)
    except (SettingError, SettingTypeError) as error:
        refuse(f"[search] {name} = {{low = {low!r}, high = {high!r}}} leaves the allowed values: {error}")
    return Param(name, kind, low=low, high=high, log=log, step=step)


def check_extremes(
    space: SearchSpace,
    refuse: Callable[[str], NoReturn],
    check: Callable[[SearchSpace, dict], str | None] | None = None,
) -> None:
    """Each bound of a range, and each choice in at least one combination of
    the other choices, must make a valid ``RunConfig``: a bad range fails
    now, not in trial 40. (Choices that clash, such as 3 layers with 2
    corruption levels, are allowed: those trials fail with the reason.)
    ``check(space, values)`` says why values make no valid run (default:
    ``invalid``, ``RunConfig``'s own checks; ``invalid_for_data`` adds the data's).

    Choices are tried in at most ``MAX_COMBINATIONS`` combinations.

    Parameters
    ----------
    space : SearchSpace
        The space to check.
    refuse : callable
        Raises the error for a message (naming the file).
    check : callable, optional
        ``check(space, values) -> str or None``; :func:`invalid` when None.
    """
    check = check or invalid
    choices = [p for p in space.params if p.kind == "categorical"]
    lows = {p.name: p.low for p in space.params if p.kind != "categorical"}
    combinations = [
        dict(zip([p.name for p in choices], values))
        for values in itertools.islice(itertools.product(*(p.extremes() for p in choices)), MAX_COMBINATIONS)
    ]
    problems = {i: check(space, {**lows, **c}) for i, c in enumerate(combinations)}
    if all(problems.values()):
        problem = check(space, {})  # the [fixed] fields with the preset's values for the rest
        if problem:
            refuse(f"[fixed] gives an invalid run, whatever [search] chooses: {problem}")
    for param in choices:
        for value in param.extremes():
            tried = [problems[i] for i, c in enumerate(combinations) if c[param.name] == value]
            if tried and all(tried):
                refuse(f"[search] {param.name} = {value!r} gives an invalid run: {tried[0]}")
    base = combinations[next(i for i, problem in problems.items() if not problem)] if choices else {}
    for param in space.params:
        for value in [] if param.kind == "categorical" else param.extremes():
            problem = check(space, {**lows, **base, param.name: value})
            if problem:
                refuse(f"[search] {param.name} = {value!r} gives an invalid run: {problem}")


def invalid(space: SearchSpace, values: dict) -> str | None:
    """Why ``values`` make no valid run, or None.

    Parameters
    ----------
    space : SearchSpace
        Gives the preset and fixed fields.
    values : dict
        Searched field to value; may be partial.

    Returns
    -------
    str or None
        The error ``RunConfig.check`` raises, as text.
    """
    try:
        space.config(values)
    except (SdAError, ValueError, TypeError) as error:
        return str(error)
    return None


def invalid_for_data(space: SearchSpace, values: dict, datasets: dict) -> str | None:
    """Why ``values`` make no valid run on their data, or None: ``invalid``'s
    checks, then minibatch sizes against the training rows and the model's
    size against the memory available. ``datasets`` caches each data set read.

    Parameters
    ----------
    space : SearchSpace
        Gives the preset and fixed fields.
    values : dict
        Searched field to value; may be partial.
    datasets : dict
        The cache, filled as data sets are read: ``(dataset, data, n_train,
        n_valid, n_test)`` to the loaded ``Dataset``.

    Returns
    -------
    str or None
        The first problem, as text (a data set that cannot be loaded is one).
    """
    problem = invalid(space, values)
    if problem:
        return problem
    config = space.config(values)
    key = (config.dataset, config.data, config.n_train, config.n_valid, config.n_test)
    try:
        if key not in datasets:
            datasets[key] = load_data(
                dataclasses.replace(config, finetune_batch_size=None, pretrain_batch_size=1)
            )
        check_batch_sizes(config, len(datasets[key].train.y))
        check_model_memory(config, datasets[key])
    except SdAError as error:
        return str(error)
    return None


def check_against_data(space: SearchSpace) -> None:
    """Refuse, before the sweep starts, a range whose bounds make no run on the
    data (a batch size above the training rows, a model too large for the
    memory): the checks of ``check_extremes`` with the data loaded.

    Parameters
    ----------
    space : SearchSpace
        The space read by :func:`load_space`.

    Raises
    ------
    SweepError
        Naming the file, the field and its bad bound.
    """

    def refuse(message):
        raise SweepError(f"{space.source}: {message}")

    check_extremes(space, refuse, functools.partial(invalid_for_data, datasets={}))


# ---------------------------------------------------------------- storage
def open_storage(url: str | None, out: Path) -> optuna.storages.BaseStorage:
    """The journal file ``out/journal.log``, or Optuna's RDB storage for ``url``.

    A journal's cut-short last line is dropped first (:func:`repair_journal`).
    Opening a database is tried three times, a second apart, as workers
    started together race to create its tables.

    Parameters
    ----------
    url : str or None
        An SQLAlchemy database URL (``--storage``); None for the journal file.
    out : Path
        The sweep folder (made if missing) that holds the journal.

    Returns
    -------
    optuna.storages.BaseStorage
        A ``JournalStorage``, or an ``RDBStorage`` whose heartbeat re-queues
        the trials of workers that stopped beating.

    Raises
    ------
    SweepError
        ``out`` cannot be used, the journal is damaged, the database driver is
        missing or the database cannot be opened.
    """
    if url is None:
        journal = usable_folder(out) / "journal.log"
        lock = optuna.storages.journal.JournalFileSymlinkLock(str(journal))
        backend = optuna.storages.journal.JournalFileBackend(str(journal), lock_obj=lock)
        lock.acquire()  # a writer holds it while it appends: a cut line under it is a killed writer's
        try:
            repaired = repair_journal(journal)
        finally:
            lock.release()
        if repaired:
            print(repaired, flush=True)
        return optuna.storages.JournalStorage(backend)
    url = with_installed_driver(url)
    for _ in range(3):  # workers started together race to create the tables: try again
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat
                return optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=HEARTBEAT_SECONDS,
                    grace_period=GRACE_SECONDS,
                    heartbeat_stale_trial_callback=retry_interrupted,
                    engine_kwargs={"pool_pre_ping": True},
                )
        except ImportError as error:
            raise SweepError(
                f"--storage {url}: a driver is missing ({error}); "
                "pip install 'sda-pytensor[sweep]' (psycopg2-binary for PostgreSQL)"
            ) from None
        except Exception as error:  # sqlalchemy's: a bad URL, no server, no database, a race
            problem = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            time.sleep(1)
    raise SweepError(
        f"--storage {url}: cannot open the database ({problem}); check the URL, that the "
        "server runs and that the database exists"
    )


def repair_journal(path: Path) -> str | None:
    """Drop the cut-short last line a killed writer left in the journal ``path``.

    Optuna's journal is one JSON object per line. A worker killed while it
    appends leaves a last line without its newline; the next append would
    glue onto it and make the whole journal unreadable. The original is kept
    beside it as ``journal.log.cut`` (``.cut.1`` and on when that is taken).

    Parameters
    ----------
    path : Path
        The journal file (it may not exist yet).

    Returns
    -------
    str or None
        One line saying what was dropped and where the original is, or None
        when the journal was whole.

    Raises
    ------
    SweepError
        The journal is not a journal (binary, or a line that is not JSON
        other than a cut-short last one): what to do about it.
    """
    if not path.is_file():
        return None
    content = path.read_bytes()
    damaged = (
        f"{path} is damaged (not an Optuna journal): move it aside (or restore it from a copy) and "
        "run the same command again, which starts the study afresh in a new journal"
    )
    try:
        lines = content.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        raise SweepError(damaged + "; it is not text") from None
    *whole, cut = lines  # after the last newline: "" unless a write was cut short
    for number, line in enumerate(whole, start=1):
        try:
            if not isinstance(json.loads(line), dict):
                raise ValueError
        except ValueError:
            raise SweepError(damaged + f"; line {number} is not a journal entry") from None
    if not cut:
        return None
    if not cut.lstrip().startswith("{"):
        raise SweepError(damaged + "; its last line is not a journal entry")
    names = (f"{path.name}.cut" + (f".{n}" if n else "") for n in itertools.count())
    backup = next(path.with_name(name) for name in names if not path.with_name(name).exists())
    backup.write_bytes(content)
    atomic_write(path, lambda f: f.write(content[: len(content) - len(cut.encode())]))
    return (
        f"{path} ended in a line cut short by a killed worker: dropped it ({len(cut.encode())} bytes; "
        f"the original is kept as {backup.name})"
    )


def with_installed_driver(url: str) -> str:
    """SQLAlchemy 2.1 reads ``postgresql://`` as psycopg 3; use psycopg2 (the
    ``sweep`` extra's driver) when psycopg 3 is not installed.

    Parameters
    ----------
    url : str
        A database URL.

    Returns
    -------
    str
        ``url`` with the ``postgresql+psycopg2://`` scheme when that is the
        driver installed; otherwise ``url`` unchanged.
    """
    import importlib.util

    if (
        url.startswith("postgresql://")
        and importlib.util.find_spec("psycopg") is None
        and importlib.util.find_spec("psycopg2") is not None
    ):
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def make_sampler(settings: dict[str, Any], salt: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler ``[sweep]`` names: random, or TPE after ``startup_trials`` random ones.

    Parameters
    ----------
    settings : dict
        ``[sweep]``: ``sampler``, ``seed`` and ``startup_trials``.
    salt : int
        Added to the seed, so that each trial (and each worker) draws afresh.

    Returns
    -------
    optuna.samplers.BaseSampler
    """
    seed = settings["seed"] + salt
    if settings["sampler"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, settings["startup_trials"]))


def make_pruner(settings: dict[str, Any]) -> optuna.pruners.BasePruner:
    """The pruner ``[sweep]`` names: none, or the median rule.

    Parameters
    ----------
    settings : dict
        ``[sweep]``: ``pruner``, ``startup_trials`` (trials never pruned) and
        ``prune_after_epochs`` (fine-tuning epochs before a trial may be pruned).

    Returns
    -------
    optuna.pruners.BasePruner
    """
    if settings["pruner"] == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=settings["startup_trials"], n_warmup_steps=settings["prune_after_epochs"]
    )


def open_study(space: SearchSpace, storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    """Create the study or load it; refuse one made from another search space.

    Parameters
    ----------
    space : SearchSpace
        The space; a new study records its :meth:`~SearchSpace.as_json`.
    storage : optuna.storages.BaseStorage
        Where the study lives (:func:`open_storage`).
    name : str
        The study's name.

    Returns
    -------
    optuna.Study
        Minimising, with the space's sampler and pruner.

    Raises
    ------
    SweepError
        The stored study was made from another search space.
    """
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="minimize",
        load_if_exists=True,
        sampler=make_sampler(space.settings),
        pruner=make_pruner(space.settings),
    )
    recorded = study.user_attrs.get("space")
    if recorded is None:
        study.set_user_attr("space", space.as_json())
    elif recorded != space.as_json():
        raise SweepError(
            f"study {name!r} was made from another search space than {space.source}: "
            "give a new --study name (or --out folder), or restore the file"
        )
    return study


# ------------------------------------------------------ interrupted trials
def worker_id() -> str:
    """This process, as trials record their worker: ``host:pid``.

    Returns
    -------
    str
    """
    return f"{socket.gethostname()}:{os.getpid()}"


def is_dead(worker: str) -> bool:
    """Whether ``worker`` ran on this machine and its process is gone (or a zombie).

    Parameters
    ----------
    worker : str
        A :func:`worker_id`.

    Returns
    -------
    bool
        False for a worker on another machine or a process this user may not signal.
    """
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname():
        return False  # another machine's worker: the shared storage's heartbeat covers it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return False


def retry_interrupted(study: optuna.Study, trial: optuna.trial.FrozenTrial | optuna.Trial) -> None:
    """Queue a killed trial's parameters again as a new trial whose
    ``retry_of`` names it (also the shared storage's callback for a trial
    whose worker stopped beating).

    Parameters
    ----------
    study : optuna.Study
        The study that gets the new trial.
    trial : optuna.trial.FrozenTrial or optuna.Trial
        The killed trial; its parameters and distributions are copied.
    """
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs={"retry_of": trial.number},
        )
    )


def recover_interrupted(study: optuna.Study) -> list[int]:
    """Fail every running trial whose worker on this machine has died, and queue it again.

    Two workers recovering at once cannot both succeed: the storage lets
    only one of them finish a trial. Workers on other machines are left to
    the database's heartbeat (``GRACE_SECONDS`` without a beat).

    Parameters
    ----------
    study : optuna.Study

    Returns
    -------
    list of int
        The numbers of the trials failed and queued again.
    """
    storage = study._storage  # Optuna has no public call to finish another worker's trial
    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker")
        if worker is None or not is_dead(worker):
            continue
        try:
            won = storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            won = False
        if won:
            retry_interrupted(study, trial)
            recovered.append(trial.number)
    return recovered


def counts_as_done(trial: optuna.trial.FrozenTrial) -> bool:
    """Finished with a result: complete, pruned, or failed by its own
    settings (diverged); a killed trial does not count, its retry does.

    Parameters
    ----------
    trial : optuna.trial.FrozenTrial

    Returns
    -------
    bool
    """
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and "error" in trial.user_attrs
    )


# ------------------------------------------------------------------ trials
class PruneOnEpoch:
    """``sda.run``'s ``on_epoch`` callback: report each fine-tuning epoch's best
    validation error to the trial, and stop the run when the pruner says so.

    Parameters
    ----------
    trial : optuna.Trial
        The trial the run belongs to.
    """

    def __init__(self, trial: optuna.Trial):
        self.trial = trial

    def __call__(self, record: dict) -> None:
        if record["phase"] != "finetune" or not math.isfinite(record.get("best_valid_error", math.inf)):
            return
        self.trial.report(record["best_valid_error"], record["epoch"])
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after fine-tuning epoch {record['epoch']}")


class Objective:
    """One trial: an ordinary ``sda.run`` in ``runs/trial-NNNN``, its output in
    ``runs/trial-NNNN.log``; the value is the best validation error.

    Parameters
    ----------
    space : SearchSpace
        Gives each trial's settings.
    out : Path
        The sweep folder; the run folders and logs go in ``out/runs``.
    """

    def __init__(self, space: SearchSpace, out: Path):
        self.space, self.runs = space, out / "runs"

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", worker_id())
        name = f"trial-{trial.number:04d}"
        trial.set_user_attr("run_dir", str(self.runs / name))
        self.runs.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        try:
            config = self.trial_config(trial, name)
            with open(self.runs / f"{name}.log", "w") as log, contextlib.redirect_stdout(log):
                summary = sda.run.run(config, on_epoch=PruneOnEpoch(trial))
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:  # Ctrl-C: queue the trial, so that the same command runs it again
            retry_interrupted(trial.study, trial)
            raise
        except Exception as error:
            trial.set_user_attr("error", f"{type(error).__name__}: {error}")
            raise
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
        for key in ("test_error", "best_epoch", "finetune_epochs_run"):
            trial.set_user_attr(key, summary[key])
        return summary["best_valid_error"]

    def trial_config(self, trial: optuna.Trial, name: str) -> RunConfig:
        """The settings of ``trial``'s run, whose folder is ``runs/name``.

        Parameters
        ----------
        trial : optuna.Trial
            Draws the searched values.
        name : str
            The run folder's name (``trial-NNNN``).

        Returns
        -------
        RunConfig

        Raises
        ------
        InvalidTrial
            The values drawn make no valid run (e.g. choices that clash).
        """
        try:
            return self.space.config(self.space.suggest(trial), out=str(self.runs), name=name, progress=False)
        except (SdAError, ValueError) as error:  # two choices that clash, e.g. layers and corruption levels
            raise InvalidTrial(f"trial {trial.number}'s settings are invalid: {error}") from None


def progress_line(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """One line per finished trial: its state, validation and test errors, the best so far, its parameters.

    Parameters
    ----------
    study : optuna.Study
        The study, for the best trial so far.
    trial : optuna.trial.FrozenTrial
        The trial just finished.
    """
    value = trial.value if trial.state == TrialState.COMPLETE else last_report(trial)
    test = trial.user_attrs.get("test_error")
    try:
        best = f"{percent(study.best_value)} (#{study.best_trial.number})"
    except ValueError:  # no complete trial yet
        best = percent(None)
    params = " ".join(f"{k}={format_value(v)}" for k, v in trial.params.items())
    failed = trial.state == TrialState.FAIL and "error" in trial.user_attrs
    error = f"  {trial.user_attrs['error']}" if failed else ""
    print(
        f"trial {trial.number:3d} {trial.state.name.lower():8s} valid {percent(value)} "
        f"test {percent(test)} best {best}  {trial.user_attrs.get('seconds', 0):6.1f}s  {params}{error}",
        flush=True,
    )


def percent(fraction: float | None) -> str:
    """A fraction as a percentage six characters wide; a dash for None.

    Parameters
    ----------
    fraction : float or None

    Returns
    -------
    str

    Examples
    --------
    >>> percent(0.0123), percent(None)
    (' 1.23%', '     -')
    """
    return "     -" if fraction is None else f"{100 * fraction:5.2f}%"


def last_report(trial: optuna.trial.FrozenTrial) -> float | None:
    """The last validation error a trial reported (a pruned trial's result), or None.

    Parameters
    ----------
    trial : optuna.trial.FrozenTrial

    Returns
    -------
    float or None
        The value reported at its latest fine-tuning epoch.
    """
    return trial.intermediate_values[max(trial.intermediate_values)] if trial.intermediate_values else None


def format_value(value: Any) -> str:
    """A parameter's value as the progress lines show it: floats to four significant digits.

    Parameters
    ----------
    value : object

    Returns
    -------
    str

    Examples
    --------
    >>> format_value(0.012345), format_value(3)
    ('0.01235', '3')
    """
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def optimise(study: optuna.Study, space: SearchSpace, out: Path, trials: int, shared: bool) -> None:
    """Run trials until the study holds ``trials`` done ones and none queued
    (several workers may overshoot by one each), recovering killed trials first.

    Parameters
    ----------
    study : optuna.Study
        The study, in its storage.
    space : SearchSpace
        Gives each trial's settings and the sampler's.
    out : Path
        The sweep folder; run folders go in ``out/runs``.
    trials : int
        Done trials (:func:`counts_as_done`) to reach.
    shared : bool
        Whether the storage is a database other workers may share: each
        worker then salts its sampler's seed with its process id.
    """
    objective = Objective(space, out)
    while True:
        recovered = recover_interrupted(study)
        if recovered:
            print(f"re-queued trial(s) {recovered}: their worker on this machine was killed", flush=True)
        known = study.get_trials(deepcopy=False)
        queued = any(t.state == TrialState.WAITING for t in known)
        if sum(counts_as_done(t) for t in known) >= trials and not queued:
            return
        # A fresh seed per trial: a single worker draws the same parameters on a
        # rerun; workers sharing a database draw different ones.
        study.sampler = make_sampler(space.settings, len(known) + (os.getpid() if shared else 0))
        # a trial that fails with a user error (its settings, its data, its training) is a result
        # of the search: it is marked failed, with the reason, and the sweep goes on
        study.optimize(objective, n_trials=1, catch=(SdAError,), callbacks=[progress_line])


# ----------------------------------------------------------------- summary


def trial_rows(study: optuna.Study) -> list[dict]:
    """One flat dict per trial, for ``trials.csv`` and the markdown table.

    Parameters
    ----------
    study : optuna.Study

    Returns
    -------
    list of dict
        ``trial``, ``state``, ``valid_error_%`` (a pruned trial's last report),
        ``test_error_%``, ``best_epoch``, ``seconds``, one column per searched
        field, ``note`` (why it failed, was pruned or re-run) and ``run_dir``.
    """
    names = sorted({name for t in study.trials for name in t.params})
    retried = {t.user_attrs["retry_of"]: t.number for t in study.trials if "retry_of" in t.user_attrs}
    rows = []
    for t in study.trials:
        value = t.value if t.state == TrialState.COMPLETE else last_report(t)
        test = t.user_attrs.get("test_error")
        note = t.user_attrs.get("error", "")
        if t.state == TrialState.PRUNED and t.intermediate_values:
            note = f"pruned after fine-tuning epoch {max(t.intermediate_values)}"
        if t.number in retried:
            note = f"interrupted, re-run as #{retried[t.number]}"
        elif t.state == TrialState.RUNNING and is_dead(t.user_attrs.get("worker", "")):
            note = "interrupted: its worker is gone; the next sweep run queues it again"
        elif "retry_of" in t.user_attrs:
            note = f"re-run of #{t.user_attrs['retry_of']}"
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name.lower(),
                "valid_error_%": None if value is None else round(100 * value, 3),
                "test_error_%": None if test is None else round(100 * test, 3),
                "best_epoch": t.user_attrs.get("best_epoch"),
                "seconds": t.user_attrs.get("seconds"),
                **{name: t.params.get(name) for name in names},
                "note": note,
                "run_dir": t.user_attrs.get("run_dir"),
            }
        )
    return rows


def markdown_table(rows: list[dict], skip: Sequence[str] = ("run_dir",)) -> str:
    """``rows`` as a Markdown table: percentages to 2 decimals, other floats to 4 digits.

    Parameters
    ----------
    rows : list of dict
        :func:`trial_rows`; the first row's keys are the columns.
    skip : sequence of str
        Columns left out.

    Returns
    -------
    str

    Examples
    --------
    >>> print(markdown_table([{"trial": 0, "valid_error_%": 1.234, "lr": 0.012345, "run_dir": "x"}]))
    | trial | valid_error_% | lr |
    |---|---|---|
    | 0 | 1.23 | 0.01235 |
    """
    columns = [c for c in rows[0] if c not in skip] if rows else []

    def cell(column, value):
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.2f}" if column.endswith("_%") else f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(c, row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def importances(study: optuna.Study) -> tuple[dict, str]:
    """``({param: importance}, how)``; the default evaluator first, then
    fANOVA, and an empty dict with the reason when neither works.

    Parameters
    ----------
    study : optuna.Study

    Returns
    -------
    values : dict
        Searched field to its importance, most important first.
    how : str
        The evaluator's class name, or why none could be computed (fewer
        than two complete trials, the evaluators' errors).
    """
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}, f"needs at least 2 complete trials (this study has {len(complete)})"
    reasons = []
    for evaluator in (
        optuna.importance.PedAnovaImportanceEvaluator(),
        optuna.importance.FanovaImportanceEvaluator(seed=0),
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return (
                    optuna.importance.get_param_importances(study, evaluator=evaluator),
                    type(evaluator).__name__,
                )
        except (RuntimeError, ValueError) as error:
            reasons.append(f"{type(evaluator).__name__}: {error}")
    return {}, "; ".join(reasons)


def new_axes(height: float = 3.5) -> tuple[Figure, Any]:
    """A figure off-screen on matplotlib's Agg canvas, as in ``sda.plots`` (no pyplot).

    Parameters
    ----------
    height : float
        In inches; the width is 6.

    Returns
    -------
    figure : matplotlib.figure.Figure
    axes : matplotlib.axes.Axes
    """
    figure = Figure(figsize=(6, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots()


def objective(trial: optuna.trial.FrozenTrial) -> float:
    """A complete trial's best validation error (Optuna types it optional: others have none).

    Parameters
    ----------
    trial : optuna.trial.FrozenTrial
        A trial in state COMPLETE.

    Returns
    -------
    float
        Its objective value.
    """
    assert trial.value is not None, f"trial {trial.number} is not complete"
    return trial.value


def plot_objective(study: optuna.Study, path: Path) -> None:
    """Each trial's best validation error (pruned: its last report) and the best so far.

    Parameters
    ----------
    study : optuna.Study
    path : Path
        The PNG written.
    """
    figure, axes = new_axes()
    for state, marker in [(TrialState.COMPLETE, "o"), (TrialState.PRUNED, "x")]:
        # a pruned trial is plotted only when it reported: its last report is a float
        points = [
            (t.number, 100 * (objective(t) if state == TrialState.COMPLETE else cast(float, last_report(t))))
            for t in study.get_trials(deepcopy=False, states=(state,))
            if state == TrialState.COMPLETE or t.intermediate_values
        ]
        if points:
            label = "complete" if state == TrialState.COMPLETE else "pruned (last report)"
            axes.plot(*zip(*points), marker, label=label)
    best, best_line = math.inf, []
    for t in study.trials:
        if t.state == TrialState.COMPLETE:
            best = min(best, 100 * objective(t))
        best_line.append(best)
    if any(math.isfinite(b) for b in best_line):
        axes.step(range(len(best_line)), best_line, where="post", label="best so far")
    axes.set(xlabel="trial", ylabel="best validation error (%)", title=f"study {study.study_name}")
    if axes.get_legend_handles_labels()[0]:  # every trial failed: nothing to label
        axes.legend()
    figure.savefig(path, dpi=100)


def plot_importances(values: dict, how: str, path: Path) -> None:
    """A bar per searched field, its length the field's importance.

    Parameters
    ----------
    values, how : dict, str
        :func:`importances`' result (``values`` not empty).
    path : Path
        The PNG written.
    """
    figure, axes = new_axes(0.5 * len(values) + 1.5)
    names = sorted(values, key=lambda name: values[name])
    axes.barh(names, [values[n] for n in names])
    axes.set(xlabel=f"importance ({how})", title="parameter importances")
    figure.savefig(path, dpi=100)


def write_summary(study: optuna.Study, space: SearchSpace, out: Path, command: str) -> str:
    """Write the sweep's summary into ``out``.

    Parameters
    ----------
    study : optuna.Study
    space : SearchSpace
    out : Path
        The sweep folder: gets ``trials.csv``, ``summary.md``, ``best_config.json``
        (the best run's whole ``config.json``), ``objective.png`` and ``importances.png``.
    command : str
        The command line, quoted in ``summary.md``.

    Returns
    -------
    str
        The text of ``summary.md``.
    """
    rows = trial_rows(study)
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    atomic_write(out / "trials.csv", lambda f: f.write(buffer.getvalue().encode()))
    states = {s.name.lower(): sum(t.state == s for t in study.trials) for s in TrialState}
    lines = [
        f"# Sweep `{study.study_name}`",
        "",
        f"Last command: `{command}`",
        "",
        f"Search space: `{space.source}`; trials: " + ", ".join(f"{n} {s}" for s, n in states.items() if n),
        "",
        "Objective: best validation error of each run (lower is better); the test error is only "
        "reported. Pruned trials show their last reported validation error.",
        "",
        markdown_table(rows) if rows else "(no trials yet)",
        "",
    ]
    try:
        best = study.best_trial
    except ValueError:
        lines.append("No complete trial yet.")
    else:
        searched = {p.name: p.decode(best.params[p.name]) for p in space.params if p.name in best.params}
        lines += [
            f"## Best trial: #{best.number}",
            "",
            f"Validation error {100 * objective(best):.2f} %, test error "
            f"{100 * best.user_attrs.get('test_error', math.nan):.2f} %, run folder "
            f"`{best.user_attrs.get('run_dir')}`.",
            "",
            "```json",
            json.dumps({"fixed": space.fixed, "searched": searched}, indent=2, default=list),
            "```",
            "",
        ]
        config_file = Path(best.user_attrs.get("run_dir", "")) / "config.json"
        if config_file.is_file():
            text = config_file.read_text()
            atomic_write(out / "best_config.json", lambda f: f.write(text.encode()))
            lines.append("Its whole `RunConfig`: `best_config.json`.")
    plot_objective(study, out / "objective.png")
    values, how = importances(study)
    if values:
        plot_importances(values, how, out / "importances.png")
        lines += [
            "",
            f"Parameter importances ({how}): "
            + ", ".join(f"{name} {value:.2f}" for name, value in values.items()),
            "",
        ]
    else:
        lines += ["", f"Parameter importances: not computed ({how}).", ""]
    lines.append("![objective vs trial](objective.png)")
    if values:
        lines.append("![importances](importances.png)")
    text = "\n".join(lines) + "\n"
    atomic_write(out / "summary.md", lambda f: f.write(text.encode()))
    return text


# ------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m sda.sweep``: the space file, ``--trials``, ``--out``,
    ``--storage`` and ``--study``.

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = argparse.ArgumentParser(
        prog="python -m sda.sweep",
        description="Hyper-parameter search on Optuna: one ordinary sda run per trial, its objective the "
        "best validation error. Running the same command again resumes the sweep.",
        epilog="The space file has [sweep] settings (trials, seed, sampler, pruner, startup_trials, "
        "prune_after_epochs), [fixed] RunConfig fields (a preset among them) and [search] ranges: "
        "name = {low = .., high = .., log = true} or name = {choices = [..]}.",
    )
    parser.add_argument("space", help="the search-space TOML file (see sweeps/demo.toml)")
    parser.add_argument(
        "--trials",
        type=int,
        help="stop when the study holds this many finished trials (default: [sweep] trials; "
        "0: only write the summary)",
    )
    parser.add_argument(
        "--out",
        help="the sweep's folder: journal, run folders, summary (default: sweeps-out/<space file's name>)",
    )
    parser.add_argument(
        "--storage",
        help="an Optuna RDB URL, e.g. postgresql://user@host/db, shared by "
        "several workers (default: a journal file in --out)",
    )
    parser.add_argument("--study", help="the study's name (default: the space file's name)")
    return parser


def sweep(argv: Sequence[str] | None = None) -> str:
    """Run ``python -m sda.sweep`` with the arguments ``argv``.

    Parameters
    ----------
    argv : list of str or None
        The command line after the program name (None: ``sys.argv[1:]``).

    Returns
    -------
    str
        The text of the sweep's ``summary.md``.

    Raises
    ------
    SweepError
        A bad space file, ``--trials`` below 0, a range that makes no run on
        the data, a storage that cannot be opened, or a study made from
        another space.
    """
    args = build_parser().parse_args(argv)
    space = load_space(args.space)  # every check before any folder exists
    trials = space.settings["trials"] if args.trials is None else args.trials
    if trials < 0:
        raise SweepError(f"--trials must be 0 or more, got {trials}")
    stem = Path(args.space).stem
    out = Path(args.out or Path("sweeps-out") / stem)
    if trials:
        check_against_data(space)  # batch sizes against the rows, the model against the memory
    # failed trials print their own line (progress_line); Optuna's warning would add a traceback
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(args.storage, out)
    study = open_study(space, storage, args.study or stem)
    usable_folder(out)
    done = sum(counts_as_done(t) for t in study.trials)
    where = args.storage.split("@")[-1] if args.storage else out / "journal.log"
    plan = f"running up to {trials}; run folders in {out / 'runs'}" if trials else "writing the summary"
    print(f"study {study.study_name} in {where}: {done} trial(s) done, {plan}", flush=True)
    if trials:
        optimise(study, space, out, trials, shared=args.storage is not None)
    text = write_summary(study, space, out, "python -m sda.sweep " + " ".join(argv or sys.argv[1:]))
    print(f"summary: {out / 'summary.md'}", flush=True)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m sda.sweep`` with these arguments.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    int
        The exit status: 0 when done, 2 for bad input, 130 when stopped by Ctrl-C.
    """
    try:
        return exit_status(lambda: sweep(argv))
    except KeyboardInterrupt:
        print("sweep stopped; the same command resumes it and re-runs the stopped trial", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
