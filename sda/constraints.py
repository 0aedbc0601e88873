"""The one table of settings: each setting's type, allowed values and help, and the check that reads it.

Every place a setting enters (the model constructors, the run configurations
and their flags, the scikit-learn estimators, the training functions, the
sweep's search ranges) checks it against its entry in ``SETTINGS``, so a rule
is written once and a bad value gets the same error and the same words
wherever it is given:

- a value of the wrong type raises ``SettingTypeError`` (a ``TypeError``);
- a value of the right type outside the allowed range or choices raises
  ``SettingError`` (a ``ValueError``).

The table's constraints follow scikit-learn's ``_parameter_constraints``
(``sklearn.utils._param_validation``): an ``Interval`` of whole or real
numbers, closed or open at each end, or a tuple of choices. This module sits
at the bottom of the package (it imports only ``sda.errors``), so the model
graphs can use it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sda.errors import SettingError, SettingTypeError

MAX_SEED = 2**32 - 1  # numpy's RandomState takes seeds in [0, 2**32 - 1]
SGD_BATCH_SIZE = 20  # SGD's fine-tuning minibatch when none is given
# Hinton & Salakhutdinov's batches m, for CG and L-BFGS when no batch size is given:
# SGD's 20 rows are far too few for a line search.
DEFAULT_BATCH_SIZE = 1000
DEFAULT_CHUNK_ROWS = 10_000  # rows per compiled evaluation call: large enough for BLAS, small for memory

LOSSES = ("cross_entropy", "squared")
FINETUNERS = ("sgd", "cg", "lbfgs")
PATIENCE_UNITS = ("iterations", "epochs")
DATASETS = ("mnist", "mnist-idx", "fashion-mnist", "digits", "npz")
VALID_SOURCES = ("valid", "test-a", "test-b")
MODES = ("c", "numba", "jax")
PRESET_NAMES = ("default", "classic", "tutorial", "demo")
ARMS = ("sgd", "sgd-momentum", "cg-hs2006", "cg-full", "lbfgs-minibatch", "lbfgs-full")
SAMPLERS, PRUNERS = ("tpe", "random"), ("median", "none")


@dataclass(frozen=True)
class Interval:
    """Numbers from ``low`` to ``high`` (None: unbounded), like scikit-learn's ``Interval``.

    ``closed`` is "left", "right", "both" or "neither"; an unbounded end is
    open. Every number inside is finite.

    Examples
    --------
    >>> momentum = Interval(numbers.Real, 0, 1, closed="left")
    >>> 0.9 in momentum, 1.0 in momentum, str(momentum)
    (True, False, 'in [0, 1)')
    >>> str(Interval(numbers.Integral, 1, None, closed="left"))
    'at least 1'
    """

    kind: type  # numbers.Integral or numbers.Real
    low: float | None
    high: float | None
    closed: str = "both"

    def __contains__(self, value) -> bool:
        if not math.isfinite(value):
            return False
        left, right = self.closed in ("left", "both"), self.closed in ("right", "both")
        above = self.low is None or (value >= self.low if left else value > self.low)
        below = self.high is None or (value <= self.high if right else value < self.high)
        return above and below

    def __str__(self) -> str:
        left, right = self.closed in ("left", "both"), self.closed in ("right", "both")
        low, high = self.low, self.high
        if low is not None and high is not None:
            return f"in {'[' if left else '('}{low}, {high}{']' if right else ')'}"
        if low is not None:
            return f"at least {low}" if left else f"more than {low}"
        if high is not None:
            return f"at most {high}" if right else f"less than {high}"
        return "a finite number"


@dataclass(frozen=True)
class Setting:
    """One setting: its type, the values it allows, and what it means.

    Parameters
    ----------
    name : str
        The setting's name (its flag is ``--`` + the name with ``-`` for ``_``).
    kind : type
        ``int``, ``float``, ``bool`` or ``str``; for a list setting, each item's type.
    help : str
        What the setting means, for the flag's help.
    interval : Interval, optional
        The numbers allowed.
    choices : tuple of str, optional
        The strings allowed.
    many : bool
        A list of values (at least ``min_items``), each checked.
    min_items : int
        The fewest items a list setting may hold.
    distinct : bool
        Whether a list setting's items must differ (a seed or an arm given
        twice would only repeat a run).
    """

    name: str
    kind: type
    help: str
    interval: Interval | None = None
    choices: tuple | None = None
    many: bool = False
    min_items: int = 1
    distinct: bool = False

    def describe(self) -> str:
        """The values allowed, as a message says them.

        Returns
        -------
        str
            E.g. "a number in [0, 1)" or "one of 'sgd', 'cg', 'lbfgs'".
        """
        if self.choices is not None:
            return "one of " + ", ".join(map(repr, self.choices))
        noun = {int: "a whole number", float: "a number", bool: "True or False", str: "a string"}[self.kind]
        return f"{noun} {self.interval}" if self.interval is not None else noun

    def check(self, value, name: str | None = None, allow_none: bool = False):
        """Return ``value`` checked and as its plain Python type (a tuple for a list setting).

        Parameters
        ----------
        value
            The value given.
        name : str, optional
            The name to put in a message (the caller's name for this setting,
            e.g. ``hidden_layers_sizes`` for ``hidden_layers``); default: ``self.name``.
        allow_none : bool
            Whether None is a valid value (returned as is).

        Returns
        -------
        int, float, bool, str, tuple or None
            ``value`` as the setting's type (a tuple of them for a list setting).

        Raises
        ------
        SettingTypeError
            ``value`` has the wrong type.
        SettingError
            ``value`` is out of range, not a choice, or an empty list.

        Examples
        --------
        >>> SETTINGS["momentum"].check(1.5)
        Traceback (most recent call last):
        ...
        sda.errors.SettingError: momentum must be in [0, 1), got 1.5
        >>> SETTINGS["tied"].check("no")
        Traceback (most recent call last):
        ...
        sda.errors.SettingTypeError: tied must be True or False, got 'no' (str)
        """
        name = name or self.name
        if value is None and allow_none:
            return None
        if not self.many:
            return self._check_one(value, name)
        if isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray):
            raise SettingTypeError(
                f"{name} must be a list, each item {self.describe()}, got {value!r} ({type(value).__name__})"
            )
        if len(value) < self.min_items:
            raise SettingError(f"{name} must hold at least {self.min_items} value, got {list(value)}")
        items = tuple(self._check_one(item, f"{name}[{i}]") for i, item in enumerate(value))
        if self.distinct and len(set(items)) != len(items):
            raise SettingError(f"{name} {' '.join(map(str, items))}: give each one once")
        return items

    def _check_one(self, value, name: str):
        if not self._has_type(value):
            raise SettingTypeError(
                f"{name} must be {self.describe()}, got {value!r} ({type(value).__name__})"
            )
        if self.choices is not None and value not in self.choices:
            raise SettingError(f"{name} must be {self.describe()}, got {value!r}")
        if self.interval is not None and value not in self.interval:
            raise SettingError(f"{name} must be {self.interval}, got {value!r}")
        if self.kind is float and not math.isfinite(value):
            raise SettingError(f"{name} must be a finite number, got {value!r}")
        return self.kind(value)

    def _has_type(self, value) -> bool:
        if self.kind is bool:
            return isinstance(value, bool | np.bool_)
        if isinstance(value, bool | np.bool_):  # True is an int to Python, never a count or a rate
            return False
        if self.kind is int:
            return isinstance(value, numbers.Integral)
        if self.kind is float:
            return isinstance(value, numbers.Real)
        return isinstance(value, self.kind)


# the rules; each setting below names one
COUNT = Interval(numbers.Integral, 1, None, closed="left")  # sizes, epochs, patience ...
COUNT_OR_ZERO = Interval(numbers.Integral, 0, None, closed="left")
POSITIVE = Interval(numbers.Real, 0, None, closed="neither")  # learning rates, budgets
NON_NEGATIVE = Interval(numbers.Real, 0, None, closed="left")  # penalties
PROBABILITY = Interval(numbers.Real, 0, 1, closed="left")  # noise levels, momentum, shares held out
FRACTION = Interval(numbers.Real, 0, 1, closed="both")
DECAY = Interval(numbers.Real, 0, 1, closed="right")  # per-epoch factors, 1: constant
SEED = Interval(numbers.Integral, 0, MAX_SEED, closed="both")

_TABLE = [
    # ----------------------------------------------------------- data and engine
    Setting("dataset", str, "which data set", choices=DATASETS),
    Setting("data", str, "a data file or the folder holding it"),
    Setting("n_train", int, "use only the first N training rows", COUNT),
    Setting("n_valid", int, "use only the first N validation rows", COUNT),
    Setting("n_test", int, "use only the first N test rows", COUNT),
    Setting("mode", str, "PyTensor backend to compile with", choices=MODES),
    Setting(
        "train_on_valid",
        bool,
        "train on the training and validation rows together (the validation error then measures rows "
        "trained on)",
    ),
    Setting(
        "valid_from",
        str,
        "validation rows: the data set's own (valid), or one half of the test rows drawn by "
        "--split-seed (test-a, or test-b: the other half), the rest being the test set",
        choices=VALID_SOURCES,
    ),
    Setting("split_seed", int, "seed of the random halving of the test rows for --valid-from test-a/b", SEED),
    # -------------------------------------------------------------- architecture
    Setting("n_ins", int, "inputs per example", COUNT),
    Setting("n_outs", int, "number of classes", Interval(numbers.Integral, 2, None, closed="left")),
    Setting("n_visible", int, "inputs per example of a dA", COUNT),
    Setting("n_hidden", int, "hidden units of a dA", COUNT),
    Setting("hidden_layers", int, "hidden layer sizes, bottom first", COUNT, many=True),
    Setting(
        "corruption_levels",
        float,
        "masking-noise level of each layer's dA, in [0, 1)",
        PROBABILITY,
        many=True,
    ),
    Setting("tied", bool, "decoder weights are the transposed encoder weights"),
    Setting("loss", str, "reconstruction loss", choices=LOSSES),
    # --------------------------------------------------------- SGD, both phases
    Setting("momentum", float, "SGD momentum in both phases, in [0, 1) (0: plain SGD)", PROBABILITY),
    Setting("weight_decay", float, "L2 penalty on the weight matrices in both phases", NON_NEGATIVE),
    Setting(
        "max_norm",
        float,
        "fine-tuning: scale back every unit's incoming weights whose L2 norm exceeds this (max-norm)",
        POSITIVE,
    ),
    Setting("batch_size", int, "minibatch size of both phases", COUNT),
    # ------------------------------------------------------------- pre-training
    Setting("pretrain_epochs", int, "passes over the training set per layer", COUNT_OR_ZERO),
    Setting("pretrain_lr", float, "pre-training learning rate", POSITIVE),
    Setting("pretrain_batch_size", int, "pre-training minibatch size", COUNT),
    Setting(
        "cached",
        bool,
        "train layer k on the stored output of the layers below (fast path, same result)",
    ),
    # -------------------------------------------------------------- fine-tuning
    Setting(
        "finetune",
        str,
        "fine-tuning optimiser: sgd, cg (conjugate gradient) or lbfgs (L-BFGS-B)",
        choices=FINETUNERS,
    ),
    Setting("finetune_lr", float, "fine-tuning learning rate (sgd)", POSITIVE),
    Setting(
        "finetune_lr_decay",
        float,
        "multiply the fine-tuning learning rate by this after every epoch, in (0, 1] (1: constant; sgd)",
        DECAY,
    ),
    Setting(
        "finetune_hidden_dropout",
        float,
        "hidden dropout while fine-tuning: each hidden unit's output zeroed with this probability, "
        "the rest scaled by 1/(1 - it), in [0, 1) (0: none; sgd)",
        PROBABILITY,
    ),
    Setting(
        "momentum_ramp",
        float,
        "fine-tuning: raise the momentum linearly from --momentum to this over --momentum-ramp-epochs "
        "epochs, then hold it, in [0, 1) (sgd)",
        PROBABILITY,
    ),
    Setting("momentum_ramp_epochs", int, "fine-tuning epochs the momentum ramp takes (sgd)", COUNT),
    Setting(
        "finetune_corruption",
        float,
        "input dropout while fine-tuning: each pixel zeroed with this probability, the rest scaled "
        "by 1/(1 - it), in [0, 1) (0: none; validation and test see clean pixels; cg/lbfgs keep one "
        "mask per mini-batch)",
        PROBABILITY,
    ),
    Setting(
        "finetune_batch_size", int, "fine-tuning minibatch size (cg/lbfgs: rows per mini-batch, m)", COUNT
    ),
    Setting(
        "finetune_epochs",
        int,
        "most fine-tuning epochs (cg/lbfgs: sweeps over the training batches, not pass-equivalents); "
        "with the classic and tutorial presets early stopping usually ends sooner",
        COUNT,
    ),
    Setting(
        "patience",
        int,
        "early stopping: train at least this many minibatch iterations, or epochs with "
        "--patience-unit epochs",
        COUNT,
    ),
    Setting("patience_unit", str, "what --patience counts", choices=PATIENCE_UNITS),
    Setting(
        "patience_increase",
        float,
        "early stopping: after a real improvement at iteration i, patience becomes at least i x this "
        "(1 or more)",
        Interval(numbers.Real, 1, None, closed="left"),
    ),
    Setting(
        "improvement_threshold",
        float,
        "early stopping: a validation error below this x the best so far is a real improvement, in (0, 1]",
        DECAY,
    ),
    Setting(
        "batch_patience",
        int,
        "cg/lbfgs: stop after this many iterations without a better validation error",
        COUNT,
    ),
    Setting("line_searches", int, "mini-batch cg/lbfgs: line searches (iterations) per mini-batch", COUNT),
    Setting(
        "warmup_epochs",
        int,
        "mini-batch cg/lbfgs: epochs that train only the top layer first",
        COUNT_OR_ZERO,
    ),
    Setting(
        "budget_passes",
        float,
        "stop after this many passes over the training set, counting every example through forward and "
        "backward, line-search trials included (sgd: instead of the patience rule)",
        POSITIVE,
    ),
    Setting(
        "eval_every",
        float,
        "pass-equivalents between two measurements of the training loss and validation error "
        "(cg/lbfgs, or sgd with --budget-passes; --batch-patience counts these)",
        POSITIVE,
    ),
    Setting(
        "test_every_eval",
        bool,
        "measure the test error at every evaluation of a pass budget, not only at a new best "
        "(metrics.csv's current_test_error)",
    ),
    Setting("eval_batch_size", int, "rows per validation/test call (speed only)", COUNT),
    Setting(
        "chunk_rows",
        int,
        "rows per compiled call of CG/L-BFGS and the evaluator (speed and memory only)",
        COUNT,
    ),
    # ------------------------------------------------------------- bookkeeping
    Setting("seed", int, f"seed of every random draw, 0 to {MAX_SEED}", SEED),
    Setting(
        "checkpoint_every",
        int,
        "save the training state every N minibatch steps (0: at phase ends only); cg/lbfgs save after "
        "every mini-batch whatever N is",
        COUNT_OR_ZERO,
    ),
    Setting("log_every", int, "write every N-th minibatch cost to steps.csv (0: never)", COUNT_OR_ZERO),
    Setting("out", str, "folder that holds the run folders"),
    Setting("name", str, "run folder name inside --out, without path separators"),
    Setting("preset", str, "starting values; flags override them", choices=PRESET_NAMES),
    Setting("progress", bool, "show progress bars"),
    # ------------------------------------------------------ sda.compare's own
    Setting(
        "pretrained",
        str,
        "skip pre-training: start from these saved weights, e.g. the pretrained.npz of an earlier "
        "comparison with the same layers",
    ),
    Setting("arms", str, "which optimisers to run", choices=ARMS, many=True, distinct=True),
    Setting(
        "seeds",
        int,
        "fine-tuning seeds (shuffling); each arm runs once per seed",
        SEED,
        many=True,
        distinct=True,
    ),
    Setting(
        "thresholds",
        float,
        "validation errors (%) whose cost to reach is reported",
        Interval(numbers.Real, 0, 100, closed="right"),
        many=True,
    ),
    Setting("sgd_batch_size", int, "minibatch size of the sgd arms", COUNT),
    Setting("cg_batch_size", int, "rows per batch m of the mini-batch CG and L-BFGS arms", COUNT),
    Setting(
        "sensitivity_m",
        int,
        "also run mini-batch CG (first seed) for each of these batch sizes ...",
        COUNT,
        many=True,
    ),
    Setting("sensitivity_k", int, "... and each of these line-search counts", COUNT, many=True),
    Setting(
        "autoencoder",
        bool,
        "also fine-tune the unrolled deep auto-encoder by SGD and by mini-batch CG",
    ),
    Setting("ae_lr", float, "learning rate of the auto-encoder's SGD arm", POSITIVE),
    # ------------------------------------------ sda.combine and the experiments
    Setting(
        "folders",
        str,
        "sda.compare output folders, made from the same --pretrained weights",
        many=True,
        min_items=0,
    ),
    Setting(
        "eval_every_iterations",
        int,
        "fine-tuning iterations between two points of the curves",
        COUNT,
    ),
    Setting("corruption", float, "masking noise on the input, in [0, 1)", PROBABILITY),
    Setting("first_epochs", float, "epochs of the first layer", POSITIVE),
    Setting(
        "upper_budget",
        float,
        "each upper layer's budget in layer-epochs; a gradual epoch at depth d costs d",
        POSITIVE,
    ),
    Setting(
        "fractions",
        float,
        "stacked-vs-gradual fractions f to sweep, in [0, 1]; include 0 and 1 for the classifiers",
        FRACTION,
        many=True,
    ),
    Setting(
        "fraction_stacked",
        float,
        "share of each upper layer's budget trained stacked, in [0, 1]; the rest is gradual",
        FRACTION,
    ),
    Setting("lr", float, "auto-encoder learning rate", POSITIVE),
    Setting("sizes", int, "labelled training-set sizes for the classifiers", COUNT, many=True),
    Setting(
        "finetune_examples", int, "most examples seen per classifier, so large sets get fewer epochs", COUNT
    ),
    Setting("splits", int, "random train/validation splits, each trained and scored on its own", COUNT),
    Setting(
        "tune_epochs",
        float,
        "gradual epochs of joint tuning of every layer after the sweep, for the f=0 and f=1 "
        "auto-encoders (0: none)",
        NON_NEGATIVE,
    ),
    # ------------------------------------------------- sda.reproduce filters' own
    Setting("epochs", int, "passes over the training set", COUNT),
    Setting("learning_rate", float, "SGD step on the minibatch's mean cost", POSITIVE),
    Setting("n_filters", int, "filters drawn per auto-encoder (a square number fills the grid)", COUNT),
    # ------------------------------------------------------- the estimators' own
    Setting(
        "validation_fraction",
        float,
        "share of the rows held out for early stopping, in [0, 1) (0: watch the training error)",
        PROBABILITY,
    ),
    Setting("verbose", int, "print a line per epoch (True or a level 1, 2, ...)", COUNT_OR_ZERO),
    # ------------------------------------------------------------ the sweep's own
    Setting("trials", int, "trials to run in all (0: only report)", COUNT_OR_ZERO),
    Setting("sampler", str, "how trials are drawn", choices=SAMPLERS),
    Setting("pruner", str, "how poor trials are stopped early", choices=PRUNERS),
    Setting("startup_trials", int, "trials drawn at random before the sampler learns", COUNT_OR_ZERO),
    Setting("prune_after_epochs", int, "epochs every trial runs before it may be pruned", COUNT_OR_ZERO),
]
SETTINGS: dict[str, Setting] = {entry.name: entry for entry in _TABLE}
assert len(SETTINGS) == len(_TABLE), "a setting is listed twice"


def check_setting(name: str, value, as_name: str | None = None, allow_none: bool = False):
    """Check ``value`` against the table's setting ``name``; return it as its plain type.

    Parameters
    ----------
    name : str
        A setting of ``SETTINGS``.
    value
        The value given.
    as_name : str, optional
        The caller's name for the setting in messages (e.g. ``SdAClassifier``'s
        ``alpha`` for ``weight_decay``).
    allow_none : bool
        Whether None is a valid value.

    Returns
    -------
    int, float, bool, str, tuple or None
        ``value`` as the setting's type.

    Raises
    ------
    SettingTypeError, SettingError
        As ``Setting.check``.

    Examples
    --------
    >>> check_setting("hidden_layers", [500, 500])
    (500, 500)
    >>> check_setting("weight_decay", -1, as_name="alpha")
    Traceback (most recent call last):
    ...
    sda.errors.SettingError: alpha must be at least 0, got -1
    """
    return SETTINGS[name].check(value, as_name, allow_none)


def check_one_level_per_layer(sizes, levels) -> None:
    """Refuse corruption ``levels`` that are not one per hidden layer of ``sizes``.

    Parameters
    ----------
    sizes : sequence of int
        Hidden layer sizes.
    levels : sequence of float
        Their corruption levels.

    Examples
    --------
    >>> check_one_level_per_layer((500, 500), (0.1,))
    Traceback (most recent call last):
    ...
    sda.errors.SettingError: corruption_levels has 1 values but there are 2 hidden layers: give one level \
per layer
    """
    if len(levels) != len(sizes):
        raise SettingError(
            f"corruption_levels has {len(levels)} values but there are "
            f"{len(sizes)} hidden layers: give one level per layer"
        )


def check_range(name: str, low, high) -> None:
    """Refuse a search range [``low``, ``high``] of setting ``name`` that leaves its allowed values.

    Both ends must be allowed values (an interval holds everything between
    two of its points).

    Parameters
    ----------
    name : str
        A setting of ``SETTINGS`` with an interval.
    low, high : number
        The range's ends.

    Raises
    ------
    SettingTypeError, SettingError
        An end of the wrong type, or outside the setting's allowed values.

    Examples
    --------
    >>> check_range("momentum", 0.5, 1.5)
    Traceback (most recent call last):
    ...
    sda.errors.SettingError: momentum must be in [0, 1), got 1.5
    """
    entry = SETTINGS[name]
    for bound in (low, high):
        entry._check_one(bound, name)
