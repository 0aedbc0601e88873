"""One run's settings: dataclasses of settings, the presets, and the checks.

Every field is a setting of ``sda.constraints.SETTINGS``, the one table of
each setting's type, allowed values and help; every command builds its flags
from these fields (see ``sda.cli``). ``check()`` refuses every value that
makes no sense before anything is loaded, built or written.

``RunConfig()`` is the default run: its field defaults are the default
preset, and every other preset lists only what differs from it.
"""

import dataclasses
import json
import os
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Self

from sda.constraints import (
    DEFAULT_BATCH_SIZE,
    PRESET_NAMES,
    SETTINGS,
    SGD_BATCH_SIZE,
    check_one_level_per_layer,
)
from sda.errors import SettingError, SettingTypeError

# settings that only one kind of fine-tuning reads: a flag given for the other kind is refused
PATIENCE_RULE_ONLY = ("patience", "patience_unit", "patience_increase", "improvement_threshold")
SGD_ONLY = (
    "finetune_lr",
    "finetune_lr_decay",
    "finetune_hidden_dropout",
    "max_norm",
    "momentum_ramp",
    "momentum_ramp_epochs",
    *PATIENCE_RULE_ONLY,
)
MINIBATCH_ONLY = ("batch_patience", "line_searches", "warmup_epochs")
# read under a pass budget: always by cg/lbfgs, by sgd only with a budget_passes
PASS_BUDGET_ONLY = ("eval_every", "test_every_eval")


def setting(default: Any, help: str | None = None, **extra: Any) -> Any:
    """A dataclass field for the setting of ``sda.constraints.SETTINGS`` named like the field.

    Its type, allowed values and help come from that table; ``help`` replaces
    the table's help where a command uses the setting in a narrower sense
    (e.g. ``momentum`` of compare's sgd-momentum arm). ``extra`` may hold
    ``metavar`` and ``default_text`` (how the help should describe a default
    of None, e.g. "all rows").

    Parameters
    ----------
    default : object
        The field's default value (immutable: a tuple, not a list).
    help : str, optional
        The flag's help text; default: the table's help for the setting.
    **extra
        More field metadata for ``sda.cli.add_settings_flags``: ``metavar`` (the
        flag's value placeholder) and ``default_text``.

    Returns
    -------
    dataclasses.Field
        The field, to assign to a class attribute of a settings dataclass.
    """
    return field(default=default, metadata={**extra, **({"help": help} if help else {})})


def field_help(f: dataclasses.Field[Any]) -> str:
    """The help of field ``f``: its own, else the table's.

    Parameters
    ----------
    f : dataclasses.Field
        A field made by ``setting``, named like a setting of the table.

    Returns
    -------
    str
        The help text, as ``--help`` shows it.
    """
    return f.metadata.get("help") or SETTINGS[f.name].help


def field_choices(f: dataclasses.Field[Any]) -> tuple[str, ...] | None:
    """The values a flag of one value may take (a list setting's items are checked by the table).

    Parameters
    ----------
    f : dataclasses.Field
        A field named like a setting of the table.

    Returns
    -------
    tuple of str or None
        The setting's choices, or None when it has none or takes a list.
    """
    entry = SETTINGS[f.name]
    return None if entry.many else entry.choices


# ------------------------------------------------------------------ checks
def _allows_none(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in typing.get_args(
        annotation
    )


def check_field(f: dataclasses.Field[Any], value: Any) -> None:
    """Check ``value`` for field ``f`` against the table (``sda.constraints``).

    None is accepted when the field's annotation allows it (``int | None``).

    Parameters
    ----------
    f : dataclasses.Field
        A field named like a setting of the table.
    value : object
        The value given for it.

    Raises
    ------
    SettingTypeError
        For a value of the wrong type.
    SettingError
        For a value out of range or not among the choices.
    """
    SETTINGS[f.name].check(value, allow_none=_allows_none(f.type))


def check_fields(settings: Any) -> None:
    """Check every field of ``settings`` against the table; raise for the first bad one.

    Parameters
    ----------
    settings : dataclass instance
        Settings whose every field is named like a setting of the table
        (``CommandSettings``, ``RunConfig``, a command's own settings).

    Raises
    ------
    SettingTypeError, SettingError
        As ``check_field``, for the first field whose value is refused.
    """
    for f in dataclasses.fields(settings):
        check_field(f, getattr(settings, f.name))


def check_name(name: str | None) -> None:
    """Refuse a run-folder name that is not one plain folder name inside ``--out``.

    Parameters
    ----------
    name : str or None
        The run folder's name; None (a name is made up) is accepted.

    Raises
    ------
    SettingError
        If ``name`` is empty, ``.`` or ``..``, absolute, or holds a path
        separator or a control character.
    """
    if name is None:
        return
    separators = [os.sep] + ([os.altsep] if os.altsep else [])
    if (
        name in ("", ".", "..")
        or any(s in name for s in separators)
        or any(not c.isprintable() for c in name)
        or os.path.isabs(name)
    ):
        raise SettingError(
            f"name {name!r} is not a plain folder name: give a name without "
            "path separators, '..' or control characters; use --out to choose "
            "where it goes"
        )


def check_optimiser_flags(finetune: str, given: Iterable[str], budget: bool = False) -> None:
    """Refuse settings in ``given`` (names the user set) that the ``finetune`` optimiser ignores.

    SGD follows the patience rule, or with a pass budget (``budget``) the
    measurements every ``eval_every`` pass-equivalents; CG and L-BFGS always
    follow a pass budget.

    Parameters
    ----------
    finetune : str
        The fine-tuning optimiser: "sgd", "cg" or "lbfgs".
    given : iterable of str
        Names of the settings the user gave explicitly (not by a preset or default).
    budget : bool
        Whether the run has a ``budget_passes``.

    Raises
    ------
    SettingError
        If a setting only SGD reads (``SGD_ONLY``) is given for CG or L-BFGS;
        one only they read (``MINIBATCH_ONLY``) is given for SGD; for SGD
        without a budget, one only a pass budget reads (``PASS_BUDGET_ONLY``);
        for SGD with one, one of the patience rule (``PATIENCE_RULE_ONLY``).

    Examples
    --------
    >>> check_optimiser_flags("cg", ["budget_passes"])
    >>> check_optimiser_flags("sgd", ["budget_passes", "eval_every"], budget=True)
    >>> check_optimiser_flags("sgd", ["line_searches"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    sda.errors.SettingError: line_searches is read only by --finetune cg or lbfgs, not by ...
    """
    given = list(given)
    groups: list[tuple[tuple[str, ...], str, str]]
    if finetune == "sgd":
        groups = [(MINIBATCH_ONLY, "by --finetune cg or lbfgs", "choose cg or lbfgs")]
        if budget:
            groups.append((PATIENCE_RULE_ONLY, "by the patience rule", "drop --budget-passes"))
        else:
            groups.append((PASS_BUDGET_ONLY, "under a pass budget", "give --budget-passes"))
    else:
        groups = [(SGD_ONLY, "by --finetune sgd", "choose sgd")]
    for unused, users, other in groups:
        ignored = [name for name in given if name in unused]
        if ignored:
            them = "it" if len(ignored) == 1 else "them"
            raise SettingError(
                f"{', '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} read only {users}, "
                f"not by --finetune {finetune}{' with --budget-passes' * budget}: drop {them}, or {other}"
            )


def check_pretrained_file(path: str | None, otherwise: str) -> None:
    """Refuse a ``pretrained`` weights file that is not there (None: nothing to check).

    Parameters
    ----------
    path : str or None
        The ``pretrained`` setting.
    otherwise : str
        What else the user may do, ending the message.

    Raises
    ------
    SettingError
        ``path`` is a folder or does not exist.
    """
    if path is not None and not os.path.isfile(path):
        problem = "is a folder" if os.path.isdir(path) else "no such file"
        raise SettingError(
            f"pretrained {path}: {problem}; pass a pretrained.npz of the same layers, or {otherwise}"
        )


PRESETS: dict[str, dict[str, Any]] = {
    # Twelve minutes on 2 cores (docs/sweep.md has the search and the seeds):
    # the classic preset's network and minibatches, 5 pre-training epochs per
    # layer at a rate 2.5 times higher, then 40 fine-tuning epochs with input
    # dropout 0.2 at a rate that decays 5 % per epoch, keeping the epoch with
    # the best validation error. The patience outlasts any epoch budget, so
    # early stopping never ends the run, and validation comes once per epoch.
    # RunConfig's field defaults are these values.
    "default": {},
    # The default until 2026-11: minibatches of 20 let BLAS work at full
    # speed. Both learning rates are the tutorial's per-example rates (0.001
    # and 0.1) times the batch size, as each step averages 20 gradients; this
    # keeps the tutorial's ratio of step size to gradient noise. Early
    # stopping looks at least 10,000 minibatches (4 epochs of full MNIST at
    # batch 20) and validates once per epoch (min(batches per epoch,
    # patience // 2)). The comparisons and the baseline experiment start here.
    "classic": dict(
        pretrain_epochs=15,
        pretrain_lr=0.02,
        finetune_corruption=0.0,
        finetune_lr_decay=1.0,
        finetune_epochs=1000,
        patience=10_000,
        patience_unit="iterations",
    ),
    # The original tutorial, exactly: one example per step, patience of 10
    # epochs (10 x the number of training batches), raised to at least twice
    # the iterations done after an improvement of more than 0.5 %, and
    # validation once per epoch.
    "tutorial": dict(
        pretrain_batch_size=1,
        finetune_batch_size=1,
        pretrain_lr=0.001,
        finetune_lr=0.1,
        finetune_lr_decay=1.0,
        finetune_corruption=0.0,
        pretrain_epochs=15,
        finetune_epochs=1000,
        patience=10,
        patience_unit="epochs",
    ),
    # A short offline run on scikit-learn's bundled 8x8 digits.
    "demo": dict(
        dataset="digits",
        hidden_layers=(100, 100),
        corruption_levels=(0.1, 0.2),
        pretrain_epochs=10,
        pretrain_batch_size=10,
        pretrain_lr=0.01,
        finetune_batch_size=10,
        finetune_lr=0.1,
        finetune_lr_decay=1.0,
        finetune_corruption=0.0,
        finetune_epochs=100,
        patience=4000,
        patience_unit="iterations",
        eval_batch_size=300,
    ),
}


# --------------------------------------------------------------------- settings
@dataclass
class CommandSettings:
    """What every command shares: the data it reads and the PyTensor mode it compiles with."""

    dataset: str = setting("mnist")
    data: str | None = setting(None, default_text="$SDA_DATA, then the cache folder", metavar="PATH")
    n_train: int | None = setting(None, default_text="all", metavar="N")
    n_valid: int | None = setting(None, default_text="all", metavar="N")
    n_test: int | None = setting(None, default_text="all", metavar="N")
    mode: str | None = setting(None, default_text="the engine's choice, see sda.engine")

    def check(self) -> Self:
        """Raise ``SettingError`` (``SettingTypeError`` for a wrong type) naming the first
        setting that makes no sense; return self.

        Returns
        -------
        CommandSettings
            ``self``, so a constructor call can be checked in one expression.

        Raises
        ------
        SettingTypeError, SettingError
            For the first setting that has the wrong type or is out of range.
        """
        check_fields(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        """The settings as a dict of plain values, ready for JSON.

        Returns
        -------
        dict of str to object
            Each field's name and value (tuples stay tuples; JSON writes them as lists).
        """
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Any, source: str = "the settings") -> Self:
        """Settings from a JSON-like dict (lists for tuples), checked; ``source`` names it in errors.

        Settings missing from ``values`` take their defaults (a folder written
        before they existed); unknown ones are refused.

        Parameters
        ----------
        values : dict of str to object
            Setting names and values, as read from JSON.
        source : str, default "the settings"
            What the values came from (e.g. a file's path), to begin error messages.

        Returns
        -------
        CommandSettings
            An instance of ``cls``, checked.

        Raises
        ------
        SettingTypeError
            If ``values`` is not a dict, or a setting has the wrong type.
        SettingError
            If a setting is unknown or out of range.
        """
        if not isinstance(values, dict):
            raise SettingTypeError(
                f"{source} must hold a JSON object of settings, got {type(values).__name__}"
            )
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise SettingError(
                f"{source} has unknown settings {unknown}: it was not written by this version of sda"
            )
        values = {
            name: tuple(value)
            if typing.get_origin(known[name].type) is tuple and isinstance(value, list)
            else value
            for name, value in values.items()
        }
        try:
            return cls(**values).check()
        except SettingError as error:
            raise SettingError(f"{source}: {error}") from None
        except SettingTypeError as error:
            raise SettingTypeError(f"{source}: {error}") from None


# The flags of every command that pre-trains a network of its own: the data and backend
# (CommandSettings), then the network and its pre-training; each command adds its own after them.
NETWORK_FLAGS = [
    *(f.name for f in dataclasses.fields(CommandSettings)),
    "hidden_layers",
    "corruption_levels",
    "pretrain_epochs",
    "pretrain_lr",
]


@dataclass
class RunConfig(CommandSettings):
    """Every hyper-parameter of ``python -m sda.run``; saved as ``config.json``."""

    # which rows train, validate and test (sda.data.rearrange)
    train_on_valid: bool = setting(False)
    valid_from: str = setting("valid")
    split_seed: int = setting(0)
    # architecture
    hidden_layers: tuple[int, ...] = setting((1000, 1000, 1000), metavar="SIZE")
    corruption_levels: tuple[float, ...] = setting((0.1, 0.2, 0.3), metavar="LEVEL")
    tied: bool = setting(True)
    loss: str = setting("cross_entropy")
    # SGD extras for both phases (the gradual-training paper uses both)
    momentum: float = setting(0.0)
    weight_decay: float = setting(0.0)
    # pre-training
    pretrain_epochs: int = setting(5)
    pretrain_lr: float = setting(0.05)
    pretrain_batch_size: int = setting(20)
    cached: bool = setting(True)
    pretrained: str | None = setting(
        None,
        "skip pre-training: start fine-tuning from these saved weights (a pretrained.npz of the same layers)",
        default_text="pre-train",
        metavar="PATH",
    )
    # fine-tuning
    finetune: str = setting("sgd")
    finetune_lr: float = setting(2.0)
    finetune_lr_decay: float = setting(0.95)
    finetune_corruption: float = setting(0.2)
    finetune_hidden_dropout: float = setting(0.0)
    max_norm: float | None = setting(None, default_text="no limit")
    momentum_ramp: float | None = setting(None, default_text="no ramp: --momentum throughout")
    momentum_ramp_epochs: int = setting(10)
    finetune_batch_size: int | None = setting(
        None, default_text=f"{SGD_BATCH_SIZE} for sgd, {DEFAULT_BATCH_SIZE} for cg/lbfgs"
    )
    finetune_epochs: int = setting(40)
    patience: int = setting(1000)
    patience_unit: str = setting("epochs")
    patience_increase: float = setting(2.0)
    improvement_threshold: float = setting(0.995)
    batch_patience: int = setting(20)
    line_searches: int = setting(3)
    warmup_epochs: int = setting(0)
    budget_passes: float | None = setting(None, default_text="no pass budget")
    eval_every: float = setting(0.5)
    test_every_eval: bool = setting(False)
    eval_batch_size: int = setting(1000)
    # bookkeeping
    seed: int = setting(89677)
    checkpoint_every: int = setting(5000, metavar="N")
    log_every: int = setting(100, metavar="N")
    # None only where a command makes a dated folder of its own (sda.compare, the experiments)
    out: str | None = setting("runs")
    name: str | None = setting(None, default_text="date, time and preset, made unique")
    preset: str = setting("default")
    progress: bool = setting(True)

    def check(self) -> Self:
        """Check every setting and how they fit together; return self.

        Returns
        -------
        RunConfig
            ``self``.

        Raises
        ------
        SettingTypeError, SettingError
            For the first setting with the wrong type or out of range; also
            ``SettingError`` when ``warmup_epochs`` is not below
            ``finetune_epochs``, when ``hidden_layers`` and
            ``corruption_levels`` differ in length, when ``name`` is not a
            plain folder name, when ``out`` is empty, when ``test_every_eval``
            is asked of SGD without a pass budget, or when ``pretrained`` is
            not a file.
        """
        super().check()
        if self.warmup_epochs >= self.finetune_epochs:
            raise SettingError(
                f"warmup_epochs {self.warmup_epochs} leaves none of the "
                f"{self.finetune_epochs} fine-tuning epochs to train the whole "
                "network: give fewer warm-up epochs or more --finetune-epochs"
            )
        check_one_level_per_layer(self.hidden_layers, self.corruption_levels)
        check_name(self.name)
        if self.out == "":
            raise SettingError("out must name a folder, got an empty string")
        if self.test_every_eval and self.finetune == "sgd" and self.budget_passes is None:
            raise SettingError(
                "test_every_eval measures at the evaluations of a pass budget: give --budget-passes, "
                "or leave --test-every-eval out"
            )
        check_pretrained_file(self.pretrained, "leave --pretrained out to pre-train")
        return self

    def pretrain_arguments(self) -> dict[str, Any]:
        """The keyword arguments of :func:`sda.train.pretrain` these settings give.

        Returns
        -------
        dict
            ``batch_size``, ``epochs``, ``learning_rate``, ``cached``,
            ``momentum`` and ``weight_decay``.

        Examples
        --------
        >>> RunConfig().pretrain_arguments()["epochs"]
        15
        """
        return dict(
            batch_size=self.pretrain_batch_size,
            epochs=self.pretrain_epochs,
            learning_rate=self.pretrain_lr,
            cached=self.cached,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
        )

    def finetune_rows(self) -> int:
        """Rows per fine-tuning minibatch: the setting, else the chosen optimiser's default.

        SGD takes 20; CG and L-BFGS take Hinton & Salakhutdinov's 1,000.

        Returns
        -------
        int
            Rows per fine-tuning minibatch (CG's and L-BFGS's batch of m rows).
        """
        if self.finetune_batch_size is not None:
            return self.finetune_batch_size
        return SGD_BATCH_SIZE if self.finetune == "sgd" else DEFAULT_BATCH_SIZE

    def patience_iterations(self, n_train_batches: int) -> int:
        """``patience`` in minibatch iterations, for a training set of ``n_train_batches``.

        Parameters
        ----------
        n_train_batches : int
            Minibatches per epoch of the training set.

        Returns
        -------
        int
            ``patience`` itself when ``patience_unit`` is "iterations", else
            ``patience`` epochs times ``n_train_batches``.
        """
        if self.patience_unit == "epochs":
            return self.patience * n_train_batches
        return self.patience

    def validation_frequency(self, n_train_batches: int) -> int:
        """Iterations between validations: the tutorial's ``min(n_train_batches, patience // 2)``.

        Parameters
        ----------
        n_train_batches : int
            Minibatches per epoch of the training set.

        Returns
        -------
        int
            Minibatch iterations between two validations, at least 1.
        """
        return max(1, min(n_train_batches, self.patience_iterations(n_train_batches) // 2))

    def to_json(self) -> str:
        """The settings as indented JSON, the text of a run folder's ``config.json``.

        Returns
        -------
        str
            A JSON object of every setting; ``from_json`` reads it back.
        """
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "config.json") -> Self:
        """A checked ``RunConfig`` from JSON text; errors name ``source``.

        Parameters
        ----------
        text : str or bytes
            JSON text, as ``to_json`` writes it.
        source : str, default "config.json"
            What the text came from (e.g. the file's path), to begin error messages.

        Returns
        -------
        RunConfig
            The settings, checked.

        Raises
        ------
        SettingError
            If ``text`` is not valid JSON, holds an unknown setting or a value out of range.
        SettingTypeError
            If it holds no JSON object, or a value of the wrong type.
        """
        try:
            values = json.loads(text)
        except ValueError as error:
            raise SettingError(
                f"{source} is not valid JSON ({error}): restore it from the run's log, or start the run again"
            ) from None
        return cls.from_dict(values, source)


def preset(preset_name: str, **overrides: Any) -> RunConfig:
    """A checked ``RunConfig`` from a preset, with ``overrides`` applied.

    A preset's ``finetune_batch_size`` is an SGD minibatch (1 in the
    tutorial), its ``SGD_ONLY`` settings (rate, decay, patience) are SGD's,
    and its input dropout was chosen for SGD: with ``finetune="cg"`` or
    ``"lbfgs"``, those not in ``overrides`` take the classic preset's values
    (no batch size, so the optimiser's default m; a constant rate; no
    dropout), so ``config.json`` records no SGD choice CG did not ask for.

    Parameters
    ----------
    preset_name : str
        One of ``PRESETS``: "default", "classic", "tutorial" or "demo".
    **overrides
        Settings of ``RunConfig`` that replace the preset's.

    Returns
    -------
    RunConfig
        The run's settings, checked.

    Raises
    ------
    SettingTypeError, SettingError
        If ``preset_name`` is not a preset, or a setting is refused by ``RunConfig.check``.
    TypeError
        If an override is not a setting of ``RunConfig``.

    Examples
    --------
    >>> preset("tutorial", finetune="cg").finetune_rows()
    1000
    >>> preset("default", finetune="cg").finetune_corruption
    0.0
    """
    SETTINGS["preset"].check(preset_name)
    values = {**PRESETS[preset_name], "preset": preset_name, **overrides}
    if values.get("finetune", "sgd") != "sgd":
        for name in ("finetune_batch_size", "finetune_corruption", *SGD_ONLY):
            if name not in overrides:
                values[name] = PRESETS["classic"].get(name, FIELD_DEFAULTS[name])
    return RunConfig(**values).check()


FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)}
assert tuple(PRESETS) == PRESET_NAMES, "sda.constraints.PRESET_NAMES lists the presets"

__all__ = ["PRESETS", "CommandSettings", "RunConfig", "SettingError", "preset", "setting"]
