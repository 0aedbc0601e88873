"""One run's settings: dataclasses whose fields carry their own help, the presets, and the checks.

Every command builds its flags from these fields (see ``sda.cli``), so a
setting's name, type, help and allowed values are written once, here.
``check()`` refuses every value that makes no sense before anything is
loaded, built or written.
"""

import dataclasses
import json
import math
import os
import types
import typing
from dataclasses import dataclass, field

from sda import engine
from sda.checks import check_decay, check_passes
from sda.dA import LOSSES
from sda.data import DATASETS
from sda.errors import SettingError
from sda.optimize import DEFAULT_BATCH_SIZE

FINETUNERS = ("sgd", "cg", "lbfgs")
MODES = tuple(engine.MODES)  # use_mode's names
PATIENCE_UNITS = ("iterations", "epochs")
SGD_BATCH_SIZE = 20  # the default preset's SGD minibatch; see PRESETS
# settings that only one kind of fine-tuning reads: a flag given for the other kind is refused
SGD_ONLY = (
    "finetune_lr",
    "finetune_lr_decay",
    "patience",
    "patience_unit",
    "patience_increase",
    "improvement_threshold",
)
MINIBATCH_ONLY = ("batch_patience", "line_searches", "warmup_epochs", "budget_passes", "eval_every")
MAX_SEED = 2**32 - 1  # numpy's RandomState takes seeds in [0, 2**32 - 1]


def setting(default, help, **extra):
    """A dataclass field with its command-line help stored on it.

    ``extra`` may hold ``choices``, ``metavar`` and ``default_text`` (how the
    help should describe a default of None, e.g. "all rows").
    """
    return field(default=default, metadata={"help": help, **extra})


# ------------------------------------------------------------------ type checks
def _fits(value, annotation) -> bool:
    """Whether ``value`` has the type ``annotation`` names (floats must be finite)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, option) for option in typing.get_args(annotation))
    if origin is tuple:
        element = typing.get_args(annotation)[0]
        return isinstance(value, tuple) and all(_fits(v, element) for v in value)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, annotation)


def _describe(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(option) for option in typing.get_args(annotation))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(annotation)[0]).replace('a ', '', 1)}s"
    names = {
        type(None): "None",
        bool: "true or false",
        int: "a whole number",
        float: "a finite number",
        str: "a string",
    }
    return names.get(annotation, annotation.__name__)


def check_field(f: dataclasses.Field, value) -> None:
    """Raise ``SettingError`` if ``value`` has the wrong type for field ``f`` or
    is not among its choices."""
    if not _fits(value, f.type):
        raise SettingError(f"{f.name} must be {_describe(f.type)}, got {value!r}")
    choices = f.metadata.get("choices")
    if choices and value is not None and value not in choices:
        raise SettingError(f"{f.name} must be one of {', '.join(map(str, choices))}; got {value!r}")


def check_fields(settings) -> None:
    """Raise ``SettingError`` for the first field of the wrong type or not among its choices."""
    for f in dataclasses.fields(settings):
        check_field(f, getattr(settings, f.name))


def _at_least(settings, names, low):
    for name in names:
        value = getattr(settings, name)
        if value is not None and value < low:
            raise SettingError(f"{name} must be {low} or more, got {value!r}")


def _within(name, value, low, high, closed_high=False):
    inside = low <= value <= high if closed_high else low <= value < high
    if not inside:
        raise SettingError(f"{name} must be in [{low}, {high}{']' if closed_high else ')'}, got {value!r}")


def check_name(name) -> None:
    """Refuse a run-folder name that is not one plain folder name inside ``--out``."""
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


def check_optimiser_flags(finetune, given) -> None:
    """Refuse settings in ``given`` (names the user set) that the ``finetune`` optimiser ignores.

    Examples
    --------
    >>> check_optimiser_flags("cg", ["budget_passes"])
    >>> check_optimiser_flags("sgd", ["budget_passes"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    sda.errors.SettingError: budget_passes is read only by --finetune cg or lbfgs, not by ...
    """
    unused, users = (MINIBATCH_ONLY, "cg or lbfgs") if finetune == "sgd" else (SGD_ONLY, "sgd")
    ignored = [name for name in given if name in unused]
    if ignored:
        raise SettingError(
            f"{', '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} read only "
            f"by --finetune {users}, not by --finetune {finetune}: drop "
            f"{'it' if len(ignored) == 1 else 'them'}, or choose {users}"
        )


def check_layers(hidden_layers, corruption_levels) -> None:
    """At least one layer, sizes positive, one corruption level in [0, 1) per layer."""
    if len(hidden_layers) < 1:
        raise SettingError("hidden_layers must list at least one layer size")
    if any(size < 1 for size in hidden_layers):
        raise SettingError(f"hidden_layers must be positive sizes, got {hidden_layers}")
    for level in corruption_levels:
        _within("corruption_levels", level, 0, 1)
    if len(corruption_levels) != len(hidden_layers):
        raise SettingError(
            f"{len(hidden_layers)} hidden layers but {len(corruption_levels)} corruption levels: "
            "give one level per layer"
        )


PRESETS = {
    # Twelve minutes on 2 cores (docs/sweep.md has the search and the seeds):
    # the classic preset's network and minibatches, 5 pre-training epochs per
    # layer at a rate 2.5 times higher, then 40 fine-tuning epochs with input
    # dropout 0.2 at a rate that decays 5 % per epoch, keeping the epoch with
    # the best validation error. The patience outlasts any epoch budget, so
    # early stopping never ends the run, and validation comes once per epoch.
    "default": dict(
        pretrain_epochs=5,
        pretrain_lr=0.05,
        finetune_corruption=0.2,
        finetune_lr_decay=0.95,
        finetune_epochs=40,
        patience=1000,
        patience_unit="epochs",
    ),
    # The default until 2026-11: minibatches of 20 let BLAS work at full
    # speed. Both learning rates are the tutorial's per-example rates (0.001
    # and 0.1) times the batch size, as each step averages 20 gradients; this
    # keeps the tutorial's ratio of step size to gradient noise. Early
    # stopping looks at least 10,000 minibatches (4 epochs of full MNIST at
    # batch 20) and validates once per epoch (min(batches per epoch,
    # patience // 2)). The comparisons and the baseline experiment start here.
    "classic": dict(patience=10_000, patience_unit="iterations"),
    # The original tutorial, exactly: one example per step, patience of 10
    # epochs (10 x the number of training batches), raised to at least twice
    # the iterations done after an improvement of more than 0.5 %, and
    # validation once per epoch.
    "tutorial": dict(
        pretrain_batch_size=1,
        finetune_batch_size=1,
        pretrain_lr=0.001,
        finetune_lr=0.1,
        pretrain_epochs=15,
        finetune_epochs=1000,
        patience=10,
        patience_unit="epochs",
        patience_increase=2.0,
        improvement_threshold=0.995,
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
        finetune_epochs=100,
        patience=4000,
        eval_batch_size=300,
    ),
}


# --------------------------------------------------------------------- settings
@dataclass
class CommandSettings:
    """What every command shares: the data it reads and the PyTensor mode it compiles with."""

    dataset: str = setting("mnist", "which data set", choices=DATASETS)
    data: str | None = setting(
        None,
        "a data file or the folder holding it",
        default_text="$SDA_DATA, then the cache folder",
        metavar="PATH",
    )
    n_train: int | None = setting(None, "use only the first N training rows", default_text="all", metavar="N")
    n_valid: int | None = setting(
        None, "use only the first N validation rows", default_text="all", metavar="N"
    )
    n_test: int | None = setting(None, "use only the first N test rows", default_text="all", metavar="N")
    mode: str | None = setting(
        None,
        "PyTensor backend to compile with",
        choices=MODES,
        default_text="the engine's choice, see sda.engine",
    )

    def check(self):
        """Raise ``SettingError`` naming the first setting that makes no sense; return self."""
        check_fields(self)
        _at_least(self, ["n_train", "n_valid", "n_test"], 1)
        return self

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values, source="the settings"):
        """Settings from a JSON-like dict (lists for tuples), checked; ``source`` names it in errors.

        Settings missing from ``values`` take their defaults (a folder written
        before they existed); unknown ones are refused.
        """
        if not isinstance(values, dict):
            raise SettingError(f"{source} must hold a JSON object of settings, got {type(values).__name__}")
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


@dataclass
class RunConfig(CommandSettings):
    """Every hyper-parameter of ``python -m sda.run``; saved as ``config.json``."""

    # architecture
    hidden_layers: tuple[int, ...] = setting(
        (1000, 1000, 1000), "hidden layer sizes, bottom first", metavar="SIZE"
    )
    corruption_levels: tuple[float, ...] = setting(
        (0.1, 0.2, 0.3), "masking-noise level of each layer's dA, in [0, 1)", metavar="LEVEL"
    )
    tied: bool = setting(True, "decoder weights are the transposed encoder weights")
    loss: str = setting("cross_entropy", "reconstruction loss", choices=LOSSES)
    # SGD extras for both phases (the gradual-training paper uses both)
    momentum: float = setting(0.0, "SGD momentum in both phases, in [0, 1) (0: plain SGD)")
    weight_decay: float = setting(0.0, "L2 penalty on the weight matrices in both phases")
    # pre-training
    pretrain_epochs: int = setting(15, "passes over the training set per layer")
    pretrain_lr: float = setting(0.02, "pre-training learning rate")
    pretrain_batch_size: int = setting(20, "pre-training minibatch size")
    cached: bool = setting(
        True, "train layer k on the stored output of the layers below (fast path, same result)"
    )
    # fine-tuning
    finetune: str = setting(
        "sgd", "fine-tuning optimiser: sgd, cg (conjugate gradient) or lbfgs (L-BFGS-B)", choices=FINETUNERS
    )
    finetune_lr: float = setting(2.0, "fine-tuning learning rate (sgd)")
    finetune_lr_decay: float = setting(
        1.0, "multiply the fine-tuning learning rate by this after every epoch, in (0, 1] (1: constant; sgd)"
    )
    finetune_corruption: float = setting(
        0.0,
        "input dropout while fine-tuning: each pixel zeroed "
        "with this probability, the rest scaled by 1/(1 - "
        "it), in [0, 1) (0: none; validation and test see "
        "clean pixels; cg/lbfgs keep one mask per "
        "mini-batch)",
    )
    finetune_batch_size: int | None = setting(
        None,
        "fine-tuning minibatch size (cg/lbfgs: rows per mini-batch, m)",
        default_text=f"{SGD_BATCH_SIZE} for sgd, {DEFAULT_BATCH_SIZE} for cg/lbfgs",
    )
    finetune_epochs: int = setting(
        1000,
        "most fine-tuning epochs (cg/lbfgs: sweeps over the "
        "training batches, not pass-equivalents); with the "
        "classic and tutorial presets early stopping usually ends "
        "sooner",
    )
    patience: int = setting(
        10_000,
        "early stopping: train at least this many minibatch "
        "iterations, or epochs with --patience-unit epochs",
    )
    patience_unit: str = setting("iterations", "what --patience counts", choices=PATIENCE_UNITS)
    patience_increase: float = setting(
        2.0,
        "early stopping: after a real improvement at iteration i, patience becomes at least "
        "i x this (1 or more)",
    )
    improvement_threshold: float = setting(
        0.995,
        "early stopping: a validation error below this x the best so far is a real improvement, in (0, 1]",
    )
    batch_patience: int = setting(
        20, "cg/lbfgs: stop after this many iterations without a better validation error"
    )
    line_searches: int = setting(3, "mini-batch cg/lbfgs: line searches (iterations) per mini-batch")
    warmup_epochs: int = setting(0, "mini-batch cg/lbfgs: epochs that train only the top layer first")
    budget_passes: float | None = setting(
        None,
        "cg/lbfgs: stop after this many passes over the training set, counting every "
        "example through forward and backward, line-search trials included",
        default_text="no pass budget",
    )
    eval_every: float = setting(
        0.5,
        "cg/lbfgs: pass-equivalents between two measurements of the "
        "training loss and validation error (--batch-patience counts "
        "these)",
    )
    eval_batch_size: int = setting(1000, "rows per validation/test call (speed only)")
    # bookkeeping
    seed: int = setting(89677, f"seed of every random draw, 0 to {MAX_SEED}")
    checkpoint_every: int = setting(
        5000,
        "save the training state every N minibatch steps "
        "(0: at phase ends only); cg/lbfgs save after every "
        "mini-batch whatever N is",
        metavar="N",
    )
    log_every: int = setting(100, "write every N-th minibatch cost to steps.csv (0: never)", metavar="N")
    out: str = setting("runs", "folder that holds the run folders")
    name: str | None = setting(
        None,
        "run folder name inside --out, without path separators",
        default_text="date, time and preset, made unique",
    )
    preset: str = setting("default", "starting values; flags override them", choices=tuple(PRESETS))
    progress: bool = setting(True, "show progress bars")

    def check(self):
        super().check()
        _at_least(
            self,
            [
                "pretrain_batch_size",
                "finetune_batch_size",
                "finetune_epochs",
                "patience",
                "eval_batch_size",
                "batch_patience",
                "line_searches",
            ],
            1,
        )
        _at_least(
            self, ["pretrain_epochs", "checkpoint_every", "log_every", "warmup_epochs", "weight_decay"], 0
        )
        for name in ["pretrain_lr", "finetune_lr"]:
            if not getattr(self, name) > 0:
                raise SettingError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        check_passes("budget_passes", self.budget_passes, allow_none=True)
        check_passes("eval_every", self.eval_every)
        _within("momentum", self.momentum, 0, 1)
        check_decay("finetune_lr_decay", self.finetune_lr_decay)
        _within("finetune_corruption", self.finetune_corruption, 0, 1)
        if not self.patience_increase >= 1:
            raise SettingError(
                f"patience_increase must be 1 or more (patience never shrinks), "
                f"got {self.patience_increase!r}"
            )
        if not 0 < self.improvement_threshold <= 1:
            raise SettingError(f"improvement_threshold must be in (0, 1], got {self.improvement_threshold!r}")
        _within("seed", self.seed, 0, MAX_SEED, closed_high=True)
        if self.warmup_epochs >= self.finetune_epochs:
            raise SettingError(
                f"warmup_epochs {self.warmup_epochs} leaves none of the "
                f"{self.finetune_epochs} fine-tuning epochs to train the whole "
                "network: give fewer warm-up epochs or more --finetune-epochs"
            )
        check_layers(self.hidden_layers, self.corruption_levels)
        check_name(self.name)
        if self.out == "":
            raise SettingError("out must name a folder, got an empty string")
        return self

    def finetune_rows(self) -> int:
        """Rows per fine-tuning minibatch: the setting, else the chosen optimiser's default.

        SGD takes 20; CG and L-BFGS take Hinton & Salakhutdinov's 1,000.
        """
        if self.finetune_batch_size is not None:
            return self.finetune_batch_size
        return SGD_BATCH_SIZE if self.finetune == "sgd" else DEFAULT_BATCH_SIZE

    def patience_iterations(self, n_train_batches: int) -> int:
        """``patience`` in minibatch iterations, for a training set of ``n_train_batches``."""
        if self.patience_unit == "epochs":
            return self.patience * n_train_batches
        return self.patience

    def validation_frequency(self, n_train_batches: int) -> int:
        """Iterations between validations: the tutorial's ``min(n_train_batches, patience // 2)``."""
        return max(1, min(n_train_batches, self.patience_iterations(n_train_batches) // 2))

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text, source="config.json"):
        """A checked ``RunConfig`` from JSON text; errors name ``source``."""
        try:
            values = json.loads(text)
        except ValueError as error:
            raise SettingError(
                f"{source} is not valid JSON ({error}): restore it from the run's log, or start the run again"
            ) from None
        return cls.from_dict(values, source)


def preset(preset_name, **overrides):
    """A checked ``RunConfig`` from a preset, with ``overrides`` applied.

    A preset's ``finetune_batch_size`` is an SGD minibatch (1 in the
    tutorial), its ``SGD_ONLY`` settings (rate, decay, patience) are SGD's,
    and its input dropout was chosen for SGD: with ``finetune="cg"`` or
    ``"lbfgs"``, those not in ``overrides`` take their field defaults (for
    the batch size, the optimiser's default m), so ``config.json`` records
    no setting the run ignored and no SGD choice CG did not ask for.

    Examples
    --------
    >>> preset("tutorial", finetune="cg").finetune_rows()
    1000
    >>> preset("default", finetune="cg").finetune_corruption
    0.0
    """
    if preset_name not in PRESETS:
        raise SettingError(f"unknown preset {preset_name!r}: choose one of {sorted(PRESETS)}")
    values = {**PRESETS[preset_name], "preset": preset_name, **overrides}
    if values.get("finetune", "sgd") != "sgd":
        for name in ("finetune_batch_size", "finetune_corruption", *SGD_ONLY):
            if name not in overrides:
                values.pop(name, None)
    return RunConfig(**values).check()


__all__ = ["PRESETS", "CommandSettings", "RunConfig", "SettingError", "preset", "setting"]
