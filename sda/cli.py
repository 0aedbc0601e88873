"""What every command line of the package shares.

- Flags are generated from a settings dataclass (``sda.config``): each
  field's name, type, choices and help text live on the field, so a setting
  is described once. Its help ends in one "(default: X)", followed by the
  value of each preset that differs.
- The settings object is the one carrier of a command's choices: it is
  built from a preset plus the flags given, and checked before anything is
  loaded, built or written.
- ``load_data``, ``build_model`` and ``apply_mode`` turn settings into data,
  a model and a PyTensor mode the same way in every command;
  ``sda.rundir.RunDir`` makes and locks the output folder.
- ``exit_status`` turns every user error into one line and status 2, and
  Ctrl-C into one line and status 130.
"""

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sda import engine
from sda.checks import check_memory, training_memory
from sda.config import CommandSettings, field_choices, field_help
from sda.data import Dataset, load_dataset, rearrange
from sda.errors import SettingError
from sda.optimize import DEFAULT_CHUNK_ROWS, METHODS
from sda.rundir import RunDir, atomic_write, read_text, usable_folder
from sda.SdA import SdA
from sda.trained import INPUTS_HELP

SETTINGS_FILE = "settings.json"  # a resumable command's settings, in its --out folder


# ------------------------------------------------------------------------ flags
def _flag(name):
    return "--" + name.replace("_", "-")


def _show(value, f):
    """A default as the help shows it."""
    if value is None:
        return f.metadata.get("default_text", "none")
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    return str(value)


def describe_default(f: dataclasses.Field[Any], defaults: Mapping[str, Mapping[str, Any]]) -> str:
    """ "(default: X)" for field ``f``, then "; LABEL: Y" for each other preset that differs.

    ``defaults`` maps a label (the first one is the plain default) to the
    values that preset sets; fields it leaves out keep the dataclass default.

    Parameters
    ----------
    f : dataclasses.Field
        A settings field (``sda.config.setting``).
    defaults : mapping of str to mapping
        Label -> the values that preset sets, the plain default first (at least one).

    Returns
    -------
    str
        E.g. ``"(default: 0.05; --preset demo: 0.01)"``; a None default shows the
        field's ``default_text``.
    """
    values = {label: preset.get(f.name, f.default) for label, preset in defaults.items()}
    (first, value), *others = values.items()
    differing = [f"{label}: {_show(v, f)}" for label, v in others if v != value]
    return f"(default: {'; '.join([_show(value, f), *differing])})"


def add_settings_flags(
    parser: argparse.ArgumentParser,
    settings_class: type[Any],
    defaults: Mapping[str, Mapping[str, Any]],
    names: Sequence[str] | None = None,
) -> None:
    """Add one flag per field of ``settings_class`` (or per field in ``names``).

    Flags default to "not given" (``argparse.SUPPRESS``), so the parsed
    namespace holds only what the user typed, and ``settings_from_args``
    lays it over a preset.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        Receives the flags.
    settings_class : dataclass type
        Its fields give each flag's name, type, help, choices and metavar.
    defaults : dict
        Label -> values of each preset, the plain default first, e.g.
        ``{"default": {...}, "--quick": {...}}``; the help shows them.
    names : list of str, optional
        The fields to expose (default: all).

    Examples
    --------
    >>> import argparse
    >>> from sda.config import PRESETS, RunConfig
    >>> parser = argparse.ArgumentParser()
    >>> add_settings_flags(parser, RunConfig, {"default": {}, "--preset demo": PRESETS["demo"]},
    ...                    ["pretrain_lr"])
    >>> parser._actions[-1].help
    'pre-training learning rate (default: 0.05; --preset demo: 0.01)'
    >>> settings_from_args(parser.parse_args(["--pretrain-lr", "0.5"]), RunConfig, {}).pretrain_lr
    0.5
    """
    fields = {f.name: f for f in dataclasses.fields(settings_class)}
    for name in names or fields:
        f = fields[name]
        options: dict[str, Any] = dict(
            dest=name,
            default=argparse.SUPPRESS,
            help=f"{field_help(f)} {describe_default(f, defaults)}".replace("%", "%%"),
        )
        annotation = f.type
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        if annotation is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(annotation) is tuple:
            options.update(nargs="+", type=typing.get_args(annotation)[0])
        else:
            options["type"] = annotation
        if field_choices(f):
            options["choices"] = field_choices(f)
        if "metavar" in f.metadata:
            options["metavar"] = f.metadata["metavar"]
        parser.add_argument(_flag(name), **options)


def add_deprecated_alias(parser: argparse.ArgumentParser, old_flag: str, name: str) -> None:
    """Let ``old_flag`` still set the setting ``name``, printing one deprecation line to stderr.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        Already holds the setting's own flag (``--`` and ``name`` with dashes).
    old_flag : str
        The deprecated flag, e.g. ``"--finetune-batch-size"``; it takes the
        same type and values as the setting's own flag.
    name : str
        The setting (the namespace attribute) the old flag sets.

    Examples
    --------
    >>> import argparse, contextlib, io
    >>> parser = argparse.ArgumentParser()
    >>> parser.add_argument("--cg-batch-size", dest="cg_batch_size", type=int)  # doctest: +ELLIPSIS
    _StoreAction(...)
    >>> add_deprecated_alias(parser, "--finetune-batch-size", "cg_batch_size")
    >>> with contextlib.redirect_stderr(io.StringIO()) as err:
    ...     parser.parse_args(["--finetune-batch-size", "250"]).cg_batch_size
    250
    >>> err.getvalue()
    'warning: --finetune-batch-size is deprecated: use --cg-batch-size\\n'
    """
    new_flag = _flag(name)
    new = next(action for action in parser._actions if new_flag in action.option_strings)

    class Deprecated(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            print(f"warning: {option_string} is deprecated: use {new_flag}", file=sys.stderr)
            setattr(namespace, name, values)

    parser.add_argument(
        old_flag,
        action=Deprecated,
        dest=name,
        default=argparse.SUPPRESS,
        type=new.type,  # type: ignore[arg-type]  # None (no conversion) is valid; typeshed omits it
        metavar=new.metavar or name.upper(),
        help=f"deprecated: use {new_flag}, the same setting: {new.help}",
    )


def given_settings(args: argparse.Namespace, settings_class: type[Any]) -> dict[str, Any]:
    """The settings the user typed, from a namespace made by ``add_settings_flags``.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line; flags not given are absent from it.
    settings_class : dataclass type
        The settings the flags were made from; other attributes of ``args``
        (positional arguments, command-only options) are left out.

    Returns
    -------
    dict of str to object
        Setting name -> value typed, lists made tuples.
    """
    names = {f.name for f in dataclasses.fields(settings_class)}
    return {
        name: tuple(value) if isinstance(value, list) else value
        for name, value in vars(args).items()
        if name in names
    }


def settings_from_args(
    args: argparse.Namespace, settings_class: type[Any], preset_values: Mapping[str, Any]
) -> Any:
    """A checked ``settings_class`` from ``preset_values`` with the flags in ``args`` laid over them.

    Hidden layers given without corruption levels take the preset's level
    for their depth, so ``--hidden-layers 500 500`` alone makes sense.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line (``add_settings_flags``).
    settings_class : dataclass type
        The settings to build; it has a ``check()`` that returns the instance.
    preset_values : mapping of str to object
        The preset's settings, under the flags; fields in neither keep their defaults.

    Returns
    -------
    settings_class
        The settings, checked.

    Raises
    ------
    SettingTypeError, SettingError
        If a setting is refused by ``check()``.
    """
    given = given_settings(args, settings_class)
    fields = {f.name: f for f in dataclasses.fields(settings_class)}
    if "hidden_layers" in given and "corruption_levels" in fields and "corruption_levels" not in given:
        levels = preset_values.get("corruption_levels", fields["corruption_levels"].default)
        given["corruption_levels"] = levels[: len(given["hidden_layers"])]
    return settings_class(**{**preset_values, **given}).check()


# ---------------------------------------------------------- data, model, engine
# minibatch settings of the commands, the one a user types first (baseline's batch_size sets the others)
BATCH_SETTINGS = (
    "batch_size",
    "sgd_batch_size",
    "pretrain_batch_size",
    "finetune_batch_size",
    "cg_batch_size",
    "sensitivity_m",
)


def check_batch_sizes(settings: Any, n_rows: int) -> None:
    """Refuse a minibatch size in ``settings`` larger than the ``n_rows`` training rows.

    A size left at None (CG's default of 1,000 rows) is cut to fit by the
    loop instead; a size the user gave is never silently changed.

    Parameters
    ----------
    settings : dataclass instance
        A command's settings; those of its fields named in ``BATCH_SETTINGS``
        (an int, a tuple of ints, or None) are checked.
    n_rows : int
        Training rows available.

    Raises
    ------
    SettingError
        Naming the first minibatch size above ``n_rows``.
    """
    for name in BATCH_SETTINGS:
        value = getattr(settings, name, None)
        for size in value if isinstance(value, tuple) else [value]:
            if size is not None and size > n_rows:
                raise SettingError(
                    f"{name} {size} is larger than the {n_rows} training rows: use "
                    f"at most {n_rows}, or more training rows"
                )


def load_data(settings: CommandSettings) -> Dataset:
    """The data set ``settings`` names, cut to its ``n_train``/``n_valid``/``n_test`` rows.

    Its minibatch sizes are checked against the training rows here, before
    any folder is made.

    Parameters
    ----------
    settings : CommandSettings
        Its ``dataset``, ``data`` (folder or file, or None) and row counts
        (None: all rows of the split) choose the data; where it has them,
        ``train_on_valid``, ``valid_from`` and ``split_seed`` then choose
        which rows train, validate and test (``sda.data.rearrange``).

    Returns
    -------
    Dataset
        The train, valid and test splits as numpy arrays.

    Raises
    ------
    DataError
        If the data set cannot be found, read or validated, or a split has
        fewer rows than asked for.
    SettingError
        If a minibatch size is larger than the training rows.
    """
    dataset = load_dataset(settings.dataset, settings.data).subset(
        settings.n_train, settings.n_valid, settings.n_test
    )
    # commands without these settings keep the data set's own splits
    dataset = rearrange(
        dataset,
        getattr(settings, "train_on_valid", False),
        getattr(settings, "valid_from", "valid"),
        getattr(settings, "split_seed", 0),
    )
    check_batch_sizes(settings, len(dataset.train.y))
    return dataset


def check_model_memory(settings: Any, dataset: Dataset) -> None:
    """Refuse, before any of it is allocated, a model and training that ``settings`` and
    ``dataset`` make too large for the memory available (``sda.checks.check_memory``).

    Settings a command lacks count as their smallest: no caching, SGD, no minibatch.

    Parameters
    ----------
    settings : dataclass instance
        A command's settings with ``hidden_layers`` and ``tied``; ``finetune``,
        ``cached``, ``pretrain_batch_size``, ``finetune_rows()`` and
        ``eval_batch_size`` are read when present.
    dataset : Dataset
        The data the model is sized for and trained on.

    Raises
    ------
    SettingError
        If the model and its training need more memory than is available; the
        message names the flag that shrinks the largest part.
    """
    layers = tuple(settings.hidden_layers)
    finetune_rows = settings.finetune_rows() if hasattr(settings, "finetune_rows") else 0
    if getattr(settings, "finetune", "sgd") in METHODS:  # CG and L-BFGS evaluate their batch in chunks
        finetune_rows = min(finetune_rows, DEFAULT_CHUNK_ROWS)
    parts = training_memory(
        dataset.n_features,
        layers,
        dataset.n_classes,
        tied=settings.tied,
        optimiser=getattr(settings, "finetune", "sgd"),
        n_rows=sum(len(split.y) for split in (dataset.train, dataset.valid, dataset.test)),
        n_train=len(dataset.train.y),
        cached=getattr(settings, "cached", False),
        batch_rows=max(getattr(settings, "pretrain_batch_size", 0), finetune_rows),
        eval_rows=getattr(settings, "eval_batch_size", 0),
    )
    widths = f"--hidden-layers ({' '.join(map(str, layers))})"
    reduce = {
        "parameters": widths,
        "flat vectors": f"{widths}, or fine-tune with --finetune sgd",
        "data": "--n-train, --n-valid or --n-test",
        "cached layer inputs": "--n-train, or pre-train with --no-cached",
        "minibatch": f"{widths}, --pretrain-batch-size or --finetune-batch-size",
        "evaluation chunks": f"{widths} or --eval-batch-size",
    }
    if dataset.n_classes > max(dataset.n_features, *layers):  # the softmax layer outweighs the rest
        reduce = dict.fromkeys(reduce, f"the number of classes ({dataset.n_classes}, the data's n_classes)")
    check_memory(parts, reduce)


def build_model(settings: Any, dataset: Dataset) -> SdA:
    """The SdA ``settings`` describes, sized for ``dataset``; its weights come from ``settings.seed``.

    ``settings`` needs ``seed``, ``hidden_layers``, ``corruption_levels``,
    ``tied`` and ``loss``. A model too large for the memory available is
    refused first (``check_model_memory``).

    Parameters
    ----------
    settings : dataclass instance
        A command's settings (e.g. ``RunConfig``).
    dataset : Dataset
        Gives the inputs (``n_features``) and softmax outputs (``n_classes``).

    Returns
    -------
    SdA
        A new, untrained model, its weights drawn from ``RandomState(settings.seed)``.

    Raises
    ------
    SettingError
        If the model would not fit in the memory available.
    """
    check_model_memory(settings, dataset)
    return SdA(
        np.random.RandomState(settings.seed),
        n_ins=dataset.n_features,
        hidden_layers_sizes=settings.hidden_layers,
        n_outs=dataset.n_classes,
        corruption_levels=settings.corruption_levels,
        tied=settings.tied,
        loss=settings.loss,
    )


def trained_model_parser(prog: str, description: str, inputs_help: str) -> argparse.ArgumentParser:
    """A parser for a command that uses a trained run's model on input files: RUN_DIR, then INPUT...

    The commands add their own options; ``inputs_help`` says what INPUT may be.

    Parameters
    ----------
    prog : str
        The command's name in usage lines, e.g. ``"python -m sda.predict"``.
    description : str
        What the command does, for ``--help``.
    inputs_help : str
        The help of the INPUT arguments.

    Returns
    -------
    argparse.ArgumentParser
        With the positional ``run_dir`` and ``inputs`` (one or more).
    """
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=INPUTS_HELP)
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="a run folder made by python -m sda.run, or its model.npz"
    )
    parser.add_argument("inputs", metavar="INPUT", nargs="+", help=inputs_help)
    return parser


def apply_mode(mode: str | None) -> str | None:
    """Compile later graphs with PyTensor backend ``mode`` (None: keep the engine's choice).

    Returns the one-line description ``sda.engine.use_mode`` gives, or None.

    Parameters
    ----------
    mode : {"c", "numba", "jax"} or None
        The backend, as in ``sda.engine.use_mode``.

    Returns
    -------
    str or None
        The description of the mode now in use, or None when ``mode`` is None.

    Raises
    ------
    SdAError
        If the backend cannot be used here (e.g. JAX is not installed).
    """
    return None if mode is None else engine.use_mode(mode)


@contextlib.contextmanager
def claim_folder(path: str | os.PathLike[str], settings: CommandSettings) -> Iterator[bool]:
    """Hold ``path`` as this reproduction's folder: make it, or check that it already is.

    The folder stays locked while the ``with`` block runs, so a second
    process on it is refused before it reads or writes anything.

    Parameters
    ----------
    path : str or path-like
        The ``--out`` folder; made if missing.
    settings : CommandSettings
        The reproduction's settings, saved in the folder the first time.

    Yields
    ------
    bool
        True when the folder was made by an earlier call with the same
        settings (the call continues it).

    Raises
    ------
    SettingError
        The folder holds another reproduction's settings, or files of its own.
    SdAError
        Another process is working in the folder.
    """
    folder: Path = usable_folder(path)
    with RunDir(folder):
        saved_file = folder / SETTINGS_FILE
        values = json.loads(json.dumps(settings.to_dict()))  # as saved: tuples become lists
        if saved_file.is_file():
            try:
                saved = json.loads(read_text(saved_file, "reproduction"))
            except ValueError:
                raise SettingError(
                    f"{saved_file} is damaged: restore it, or start again in another --out"
                ) from None
            if saved != values:
                changed = sorted(k for k in set(saved) | set(values) if saved.get(k) != values.get(k))
                raise SettingError(
                    f"{folder} holds a reproduction made with other settings ({', '.join(changed)}): "
                    "give the same settings to continue it, or another --out"
                )
            yield True
            return
        if any(folder.iterdir()):
            raise SettingError(f"{folder} already holds files: give an empty or new folder as --out")
        atomic_write(saved_file, lambda f: f.write(json.dumps(values, indent=2).encode()))
        yield False


@contextlib.contextmanager
def experiment_folder(out: str | os.PathLike[str] | None, kind: str) -> Iterator[RunDir]:
    """``RunDir.claim(out, kind)``, locked while the block runs; Ctrl-C inside it
    becomes a ``KeyboardInterrupt`` saying where the partial results are.

    Parameters
    ----------
    out : str or path-like or None
        The folder to write into (it must hold no files yet); None makes a new
        dated one under ``runs``.
    kind : str
        What the experiment is, e.g. ``"compare"``: the last part of a dated name.

    Yields
    ------
    RunDir
        The claimed, locked folder.

    Raises
    ------
    SdAError
        If ``out`` already holds files, or cannot be made or written.

    Examples
    --------
    >>> import tempfile
    >>> with experiment_folder(tempfile.mkdtemp(), "demo") as folder:
    ...     folder.path.is_dir()
    True
    """
    with RunDir.claim(out, kind) as folder:
        try:
            yield folder
        except KeyboardInterrupt:
            raise KeyboardInterrupt(f"partial results are in {folder.path}") from None


# --------------------------------------------------------------------- progress
def print_pretrain_epoch(record: Mapping[str, Any]) -> None:
    """Print one pre-training epoch's record (``sda.train.pretrain``'s ``on_epoch``) as one line.

    Parameters
    ----------
    record : mapping
        With ``layer``, ``epoch``, ``cost`` and ``seconds`` (of pre-training so far).

    Examples
    --------
    >>> print_pretrain_epoch({"layer": 0, "epoch": 2, "cost": 66.80472, "seconds": 38.14})
    pre-train layer 0 epoch   2  cost   66.8047     38.1s
    """
    print(
        f"pre-train layer {record['layer']} epoch {record['epoch']:3d}  "
        f"cost {record['cost']:9.4f}  {record['seconds']:7.1f}s",
        flush=True,
    )
