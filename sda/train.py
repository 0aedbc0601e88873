"""Training loops: layer-wise pre-training and SGD fine-tuning with early stopping.

The loops take a model and shared data, and report each epoch through an
``on_epoch(record)`` callback (a dict), so the command line, the tests and
the experiments all drive the same code. Both loops keep their position in
a ``Progress`` and can save it in a ``Checkpoint``; given a loaded
``Progress`` they continue exactly where it left off.

Both loops guard against divergence: every minibatch cost is checked (one
float test per step) and the parameters at every validation and checkpoint,
so a NaN or infinity stops the run with ``sda.errors.TrainingDiverged``
before it can reach a checkpoint or the best model. A cost that climbs far
above where it started gets a ``RuntimeWarning`` (``sda.errors.CostWatch``).
"""

import time
from dataclasses import dataclass

import numpy as np
import pytensor
from tqdm import tqdm  # plain text bars: a notebook (the docs) needs no widgets

from sda.batching import n_batches
from sda.checkpoint import Checkpoint, Progress
from sda.checks import check_decay
from sda.constraints import SGD_BATCH_SIZE, check_setting
from sda.errors import CostWatch, SettingError, check_finite

PRETRAINING, FINETUNING = "pre-training", "fine-tuning"  # phase names in error messages


def noop(record):
    """The default callback: takes a record and does nothing."""


def _progress_bar(start, count, description, show):
    # disable=None: no bar when the output is not a terminal (logs, CI)
    return tqdm(
        range(start, count),
        desc=description,
        leave=False,
        initial=start,
        total=count,
        disable=None if show else True,
        unit="batch",
    )


def check_params(model, phase, **where):
    """Raise ``TrainingDiverged`` naming the first parameter of ``model`` that
    holds a NaN or infinity. ``where`` takes the ``layer``, ``epoch`` and
    ``step`` to name. It reads every weight, so loops call it only at
    validation and checkpoint points, not every step."""
    for name, param in model.named_params().items():
        check_finite(param.get_value(borrow=True), phase, f"parameter {name}", **where)


class EpochCostWatch:
    """Warns (``sda.errors.CostWatch``) when an epoch's mean cost rises far above the start.

    The start is the first minibatch's cost when training starts from
    scratch (an untrained model costs about the same on every minibatch),
    otherwise the first epoch's mean: one minibatch of a resumed, half-trained
    model can cost far less than the average.
    """

    def __init__(self, name: str, from_scratch: bool):
        self.watch, self.first_step = CostWatch(name), from_scratch

    def step(self, cost: float) -> None:
        if self.first_step:
            self.watch(cost)
            self.first_step = False

    def epoch(self, mean_cost: float) -> None:
        self.watch(mean_cost)


def _save_if_due(checkpoint, progress, model, phase, **where):
    """Save at the checkpoint's interval, after checking the parameters, so a
    diverged state never overwrites the last good checkpoint."""
    if checkpoint.due(progress):
        check_params(model, phase, **where)
        checkpoint.save(progress)


# ---------------------------------------------------------------- pre-training
def cache_layer_input(model, layer, train_x, chunk_rows=5000):
    """The input of dA ``layer`` for every training row, as float32 numpy.

    The frozen encoders run over ``chunk_rows`` rows at a time, so no
    intermediate the size of the whole graph is ever held.
    """
    encode = model.layer_input_function(layer)
    data = train_x.get_value(borrow=True)
    out = np.empty((data.shape[0], model.dA_layers[layer].n_visible), dtype=pytensor.config.floatX)
    for start in range(0, data.shape[0], chunk_rows):
        out[start : start + chunk_rows] = encode(data[start : start + chunk_rows])
    return out


class LayerSource:
    """What layer ``k`` trains on: the inputs, or (fast path) the stored
    output of layers ``0..k-1``. One shared variable is reused, so only one
    representation is held at a time."""

    def __init__(self, model, train_x, cached):
        self.model, self.train_x, self.cached, self.store = model, train_x, cached, None

    def for_layer(self, layer):
        """``(shared matrix, cached?)`` to compile layer ``layer``'s step on."""
        if not self.cached or layer == 0:
            return self.train_x, False
        values = cache_layer_input(self.model, layer, self.train_x)
        if self.store is None:
            self.store = pytensor.shared(values, name="layer_input", borrow=True)
        else:
            self.store.set_value(values, borrow=True)  # drops the previous layer's copy
        return self.store, True


def pretrain(
    model,
    train_x,
    batch_size=SGD_BATCH_SIZE,
    epochs=15,
    learning_rate=0.02,
    corruption_levels=None,
    cached=True,
    layers=None,
    momentum=0.0,
    weight_decay=0.0,
    on_epoch=noop,
    on_step=noop,
    show_progress=False,
    progress=None,
    checkpoint=None,
):
    """Greedy layer-wise pre-training; returns each layer's per-epoch mean cost.

    With ``cached=True`` (the fast path), layer ``k`` trains on the stored
    output of layers ``0..k-1``, computed once, instead of recomputing it
    for every minibatch. ``on_step(record)`` sees every minibatch's cost;
    ``progress``/``checkpoint``: see ``sda.checkpoint``.

    Raises ``sda.errors.TrainingDiverged`` (naming the layer, epoch and
    step) as soon as a cost or parameter is not finite, before anything is
    saved; warns when a layer's cost climbs far above its first minibatch's.

    Parameters
    ----------
    model : SdA
        The stack whose dAs are trained, bottom up.
    train_x : shared variable
        The training inputs, one row per example (``sda.data.shared_dataset``).
    batch_size, epochs : int
        Minibatch rows, and passes over the data per layer.
    learning_rate : float
        SGD step on the minibatch's mean cost.
    corruption_levels : sequence of float, optional
        One per layer; the model's own levels by default.
    cached : bool
        The fast path (see above); the same result either way.
    layers : list of int, optional
        Which layers to train; all by default.
    momentum, weight_decay : float
        As in ``sda.sgd.sgd_updates``.
    on_epoch, on_step : callable
        Get a dict per epoch (``phase``, ``layer``, ``epoch``, ``cost``,
        ``seconds``) and per minibatch.
    show_progress : bool
        Show a progress bar on a terminal.
    progress, checkpoint : Progress, Checkpoint, optional
        Resume from and save training state (``sda.checkpoint``).

    Returns
    -------
    list of list of float
        Per layer, the mean cost of each epoch.

    Examples
    --------
    >>> import numpy as np
    >>> from sda import SdA
    >>> from sda.data import load_dataset, shared_dataset
    >>> digits = load_dataset("digits").subset(200, 50, 50)
    >>> model = SdA(np.random.RandomState(0), n_ins=64, hidden_layers_sizes=(32, 16),
    ...             corruption_levels=(0.1, 0.2))
    >>> history = pretrain(model, shared_dataset(digits.train)[0], batch_size=20, epochs=2,
    ...                    learning_rate=0.1)
    >>> [len(costs) for costs in history]
    [2, 2]
    """
    levels = model.corruption_levels if corruption_levels is None else corruption_levels
    layers = list(range(model.n_layers) if layers is None else layers)
    progress = progress or Progress(layer=layers[0])
    checkpoint = checkpoint or Checkpoint()
    count = n_batches(train_x.get_value(borrow=True).shape[0], batch_size)
    source = LayerSource(model, train_x, cached)
    started = time.perf_counter() - progress.seconds["pretrain"]
    remaining = [layer for layer in layers if layer >= progress.layer]
    for layer in remaining if progress.phase == "pretrain" else []:
        if len(progress.pretrain_history) <= layer:
            progress.pretrain_history.append([])
        if progress.epoch < epochs:  # epochs=0: nothing to train, so nothing to compile
            data, from_cache = source.for_layer(layer)
            step = model.pretraining_function(layer, data, batch_size, from_cache, momentum, weight_decay)
            checkpoint.restore_velocities(step.velocities)
            watch = EpochCostWatch(f"{PRETRAINING} layer {layer}", progress.epoch == progress.batch == 0)
            while progress.epoch < epochs:
                bar = _progress_bar(
                    progress.batch, count, f"pre-train layer {layer} epoch {progress.epoch}", show_progress
                )
                for index in bar:
                    cost = float(step(index, levels[layer], learning_rate))
                    # printed epochs count from 0 in pre-training; steps as in steps.csv
                    check_finite(
                        cost, PRETRAINING, layer=layer, epoch=progress.epoch, step=progress.steps + 1
                    )
                    watch.step(cost)
                    progress.finish_batch(cost)
                    on_step(
                        {
                            "phase": "pretrain",
                            "layer": layer,
                            "epoch": progress.epoch,
                            "step": progress.steps,
                            "cost": cost,
                        }
                    )
                    progress.seconds["pretrain"] = time.perf_counter() - started
                    _save_if_due(
                        checkpoint,
                        progress,
                        model,
                        PRETRAINING,
                        layer=layer,
                        epoch=progress.epoch,
                        step=progress.steps,
                    )
                epoch = progress.epoch
                progress.pretrain_history[layer].append(progress.finish_epoch())
                watch.epoch(progress.pretrain_history[layer][-1])
                on_epoch(
                    {
                        "phase": "pretrain",
                        "layer": layer,
                        "epoch": epoch,
                        "cost": progress.pretrain_history[layer][-1],
                        "seconds": progress.seconds["pretrain"],
                    }
                )
        check_params(model, PRETRAINING, layer=layer, step=progress.steps)
        progress.layer = layer + 1
        progress.start_phase("pretrain")
        checkpoint.velocities = []  # the next layer starts with fresh ones
        checkpoint.save(progress)
    return progress.pretrain_history


# ----------------------------------------------------------------- fine-tuning
@dataclass
class EarlyStopping:
    """The tutorial's patience rule, counted in minibatch iterations."""

    patience: int = 10_000
    patience_increase: float = 2.0
    improvement_threshold: float = 0.995

    def __post_init__(self):
        for name in ("patience", "patience_increase", "improvement_threshold"):
            check_setting(name, getattr(self, name))

    def update(self, progress, valid_error):
        """Record one validation error in ``progress``; return whether it is the best yet.

        A real improvement (below ``improvement_threshold`` times the best so
        far) raises the patience to at least ``patience_increase`` times the
        iterations done, as in the tutorial; a smaller one only becomes the
        new best.

        Examples
        --------
        >>> progress = Progress(iteration=300, patience=500, best_valid_error=0.1)
        >>> EarlyStopping(patience_increase=2.0).update(progress, 0.05), progress.patience
        (True, 600)
        """
        progress.valid_error = valid_error
        if not valid_error < progress.best_valid_error:
            return False
        if valid_error < progress.best_valid_error * self.improvement_threshold:
            progress.patience = max(progress.patience, int(progress.iteration * self.patience_increase))
        progress.best_valid_error, progress.best_epoch = valid_error, progress.epoch + 1
        return True


def fixed_budget(epochs: int, n_batches: int) -> EarlyStopping:
    """Early stopping that never stops early: fine-tuning runs all ``epochs``.

    Its patience is the whole budget, ``epochs * n_batches`` iterations, so
    only ``max_epochs`` ends the run; the best validation point is still
    kept. Experiments use it to give every arm the same number of updates.

    Examples
    --------
    >>> fixed_budget(epochs=3, n_batches=10).patience
    30
    """
    return EarlyStopping(patience=epochs * n_batches)


@dataclass
class FinetuneResult:
    best_valid_error: float
    test_error: float  # on the test set, at the best validation point
    best_epoch: int
    epochs_run: int
    iterations: int


def finetune_sgd(
    model,
    train_fn,
    valid_score,
    test_score,
    n_train_batches,
    max_epochs=1000,
    stopping=None,
    validation_frequency=None,
    lr_decay=1.0,
    on_epoch=noop,
    on_step=noop,
    show_progress=False,
    progress=None,
    checkpoint=None,
):
    """SGD fine-tuning with early stopping; leaves the best-validation
    parameters in the model and returns a ``FinetuneResult``.

    ``train_fn``, ``valid_score`` and ``test_score`` are what
    ``SdA.build_finetune_functions`` returns; ``train_fn.velocities`` go into
    the checkpoint. ``on_step(record)`` sees every minibatch's cost.
    Raises ``sda.errors.TrainingDiverged`` (naming the epoch and step) as
    soon as a cost or parameter is not finite, before it reaches the
    checkpoint or the best parameters; warns when an epoch's mean cost climbs
    far above the first minibatch's cost.

    Parameters
    ----------
    model : SdA
        The network; its ``params`` are the ones kept at the best point.
    train_fn : SGDStep
        ``train_fn(index)`` takes one SGD step on training minibatch ``index``.
    valid_score, test_score : SplitScorer
        Score the validation and test sets (``.error()``).
    n_train_batches : int
        Minibatches per epoch.
    max_epochs : int
        Stop after this many epochs whatever the patience.
    stopping : EarlyStopping, optional
        The patience rule: ``patience`` iterations at least, raised to
        ``iteration * patience_increase`` after a validation error below
        ``improvement_threshold`` times the best so far.
    validation_frequency : int, optional
        Iterations between validations; ``min(n_train_batches, patience // 2)``
        by default, as in the tutorial.
    lr_decay : float
        Epoch ``e`` (from 0) trains at ``train_fn``'s starting learning rate
        times ``lr_decay ** e``; 1 keeps it constant. The rate follows from
        the epoch alone, so a resumed run continues the same schedule.
    on_epoch, on_step : callable
        Get a dict per epoch (``epoch``, ``cost``, ``valid_error``,
        ``best_valid_error``, ``test_error``, ``seconds``) and per minibatch.
    show_progress : bool
        Show a progress bar on a terminal.
    progress, checkpoint : Progress, Checkpoint, optional
        Resume from and save training state (``sda.checkpoint``).

    Returns
    -------
    FinetuneResult
        ``best_valid_error``, ``test_error`` (at the best validation point),
        ``best_epoch``, ``epochs_run`` and ``iterations``.

    Examples
    --------
    >>> import numpy as np
    >>> from sda import SdA
    >>> from sda.data import load_dataset, shared_dataset
    >>> digits = load_dataset("digits").subset(200, 50, 50)
    >>> datasets = [shared_dataset(s) for s in (digits.train, digits.valid, digits.test)]
    >>> model = SdA(np.random.RandomState(0), n_ins=64, hidden_layers_sizes=(32,),
    ...             corruption_levels=(0.1,))
    >>> train_fn, valid_score, test_score = model.build_finetune_functions(
    ...     datasets, batch_size=20, learning_rate=0.1)
    >>> result = finetune_sgd(model, train_fn, valid_score, test_score, n_train_batches=10,
    ...                       max_epochs=3)
    >>> result.epochs_run, 0.0 <= result.best_valid_error <= 1.0
    (3, True)
    """
    stopping = stopping or EarlyStopping()
    checkpoint = checkpoint or Checkpoint()
    p = progress or Progress()
    if p.phase == "pretrain":
        p.start_phase("finetune")
        p.patience = stopping.patience
    checkpoint.restore_velocities(train_fn.velocities)
    watch = EpochCostWatch(FINETUNING, p.epoch == p.batch == 0)
    validation_frequency = validation_frequency or min(n_train_batches, max(1, stopping.patience // 2))
    schedule = _decay_schedule(train_fn, lr_decay)
    started = time.perf_counter() - p.seconds["finetune"]
    while p.epoch < max_epochs and p.iteration < p.patience:
        schedule(p.epoch)
        bar = _progress_bar(p.batch, n_train_batches, f"fine-tune epoch {p.epoch + 1}", show_progress)
        for index in bar:
            cost = float(train_fn(index))
            # printed fine-tuning epochs count from 1; steps as in steps.csv
            where = dict(epoch=p.epoch + 1, step=p.steps + 1)
            check_finite(cost, FINETUNING, **where)
            watch.step(cost)
            p.finish_batch(cost)
            p.iteration += 1
            on_step(
                {
                    "phase": "finetune",
                    "epoch": p.epoch,
                    "step": p.steps,
                    "iteration": p.iteration,
                    "cost": cost,
                }
            )
            if p.iteration % validation_frequency == 0:
                _validate(model, p, stopping, valid_score, test_score, checkpoint, where)
            p.seconds["finetune"] = time.perf_counter() - started
            _save_if_due(checkpoint, p, model, FINETUNING, **where)
            if p.iteration >= p.patience:
                break
        cost = p.finish_epoch()
        watch.epoch(cost)
        on_epoch(
            {
                "phase": "finetune",
                "epoch": p.epoch,
                "cost": cost,
                "valid_error": p.valid_error,
                "best_valid_error": p.best_valid_error,
                "test_error": p.test_error,
                "seconds": p.seconds["finetune"],
            }
        )
    schedule(0)  # train_fn back at its starting rate: a later call starts its schedule there
    if checkpoint.best is not None:
        for param, value in zip(model.params, checkpoint.best):
            param.set_value(value)
    check_params(model, FINETUNING, epoch=p.epoch, step=p.steps)
    p.phase = "done"
    checkpoint.save(p)
    return FinetuneResult(p.best_valid_error, p.test_error, p.best_epoch, p.epoch, p.iteration)


def _decay_schedule(train_fn, lr_decay):
    """``set_epoch(e)``: put ``train_fn``'s learning rate at its start value x ``lr_decay ** e``.
    The start is read once, here; ``finetune_sgd`` sets epoch 0 again when it returns."""
    if check_decay("lr_decay", lr_decay) == 1.0:
        return noop
    if train_fn.learning_rate is None:
        raise SettingError(
            "lr_decay needs a step compiled with a shared learning rate "
            "(SdA.build_finetune_functions makes one)"
        )
    start = float(train_fn.learning_rate.get_value())

    def set_epoch(epoch):
        train_fn.learning_rate.set_value(np.float32(start * lr_decay**epoch))

    return set_epoch


def _validate(model, p, stopping, valid_score, test_score, checkpoint, where):
    """Score the validation set; keep the parameters and test error of a new best.
    Non-finite parameters stop the run first: they must never become the best."""
    check_params(model, FINETUNING, **where)
    if stopping.update(p, valid_score.error()):
        checkpoint.best = [param.get_value() for param in model.params]
        p.test_error = test_score.error()
