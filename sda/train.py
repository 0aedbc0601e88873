"""Training loops: layer-wise pre-training and SGD fine-tuning with early stopping.

The loops take a model and shared data, and report each epoch through an
``on_epoch(record)`` callback (a dict), so the command line, the tests and
the experiments all drive the same code. Both loops keep their position in
a ``Progress`` and can save it in a ``Checkpoint``; given a loaded
``Progress`` they continue exactly where it left off.
"""

import time
from dataclasses import dataclass

import numpy as np
import pytensor
from tqdm.auto import tqdm

from sda.checkpoint import Checkpoint, Progress
from sda.SdA import n_batches


def _noop(record):
    pass


def _progress_bar(start, count, description, show):
    # disable=None: no bar when the output is not a terminal (logs, CI)
    return tqdm(range(start, count), desc=description, leave=False, initial=start, total=count,
                disable=None if show else True, unit="batch")


def split_error(score):
    """The error rate of a whole split from a scorer's per-batch rates."""
    return float(np.average(score(), weights=score.batch_sizes))


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


def pretrain(model, train_x, batch_size=20, epochs=15, learning_rate=0.02, corruption_levels=None,
             cached=True, layers=None, momentum=0.0, weight_decay=0.0, on_epoch=_noop,
             on_step=_noop, show_progress=False, progress=None, checkpoint=None):
    """Greedy layer-wise pre-training; returns each layer's per-epoch mean cost.

    With ``cached=True`` (the fast path), layer ``k`` trains on the stored
    output of layers ``0..k-1``, computed once, instead of recomputing it
    for every minibatch. ``on_step(record)`` sees every minibatch's cost;
    ``progress``/``checkpoint``: see ``sda.checkpoint``.
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
        data, from_cache = source.for_layer(layer)
        step = model.pretraining_function(layer, data, batch_size, from_cache, momentum,
                                          weight_decay)
        checkpoint.restore_velocities(model.dA_layers[layer].velocities)
        if len(progress.pretrain_history) <= layer:
            progress.pretrain_history.append([])
        while progress.epoch < epochs:
            bar = _progress_bar(progress.batch, count,
                                f"pre-train layer {layer} epoch {progress.epoch}", show_progress)
            for index in bar:
                cost = step(index, levels[layer], learning_rate)
                progress.finish_batch(cost)
                on_step({"phase": "pretrain", "layer": layer, "epoch": progress.epoch,
                         "step": progress.steps, "cost": float(cost)})
                progress.seconds["pretrain"] = time.perf_counter() - started
                checkpoint.maybe_save(progress)
            epoch = progress.epoch
            progress.pretrain_history[layer].append(progress.finish_epoch())
            on_epoch({"phase": "pretrain", "layer": layer, "epoch": epoch,
                      "cost": progress.pretrain_history[layer][-1],
                      "seconds": progress.seconds["pretrain"]})
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
        if self.patience < 1 or self.patience_increase < 1 or not 0 < self.improvement_threshold <= 1:
            raise ValueError(
                "early stopping needs patience >= 1, patience_increase >= 1 and "
                f"0 < improvement_threshold <= 1; got {self}"
            )


@dataclass
class FinetuneResult:
    best_valid_error: float
    test_error: float  # on the test set, at the best validation point
    best_epoch: int
    epochs_run: int
    iterations: int


def finetune_sgd(model, train_fn, valid_score, test_score, n_train_batches, max_epochs=1000,
                 stopping=None, validation_frequency=None, on_epoch=_noop, on_step=_noop,
                 show_progress=False, progress=None, checkpoint=None):
    """SGD fine-tuning with early stopping; leaves the best-validation
    parameters in the model and returns a ``FinetuneResult``.
    ``on_step(record)`` sees every minibatch's cost."""
    stopping = stopping or EarlyStopping()
    checkpoint = checkpoint or Checkpoint()
    p = progress or Progress()
    if p.phase == "pretrain":
        p.start_phase("finetune")
        p.patience = stopping.patience
    checkpoint.restore_velocities(model.finetune_velocities)
    validation_frequency = validation_frequency or min(n_train_batches, max(1, stopping.patience // 2))
    started = time.perf_counter() - p.seconds["finetune"]
    while p.epoch < max_epochs and p.iteration < p.patience:
        bar = _progress_bar(p.batch, n_train_batches, f"fine-tune epoch {p.epoch + 1}", show_progress)
        for index in bar:
            cost = train_fn(index)
            p.finish_batch(cost)
            p.iteration += 1
            on_step({"phase": "finetune", "epoch": p.epoch, "step": p.steps,
                     "iteration": p.iteration, "cost": float(cost)})
            if p.iteration % validation_frequency == 0:
                _validate(model, p, stopping, valid_score, test_score, checkpoint)
            p.seconds["finetune"] = time.perf_counter() - started
            checkpoint.maybe_save(p)
            if p.iteration >= p.patience:
                break
        cost = p.finish_epoch()
        on_epoch({"phase": "finetune", "epoch": p.epoch, "cost": cost, "valid_error": p.valid_error,
                  "best_valid_error": p.best_valid_error, "test_error": p.test_error,
                  "seconds": p.seconds["finetune"]})
    if checkpoint.best is not None:
        for param, value in zip(model.params, checkpoint.best):
            param.set_value(value)
    p.phase = "done"
    checkpoint.save(p)
    return FinetuneResult(p.best_valid_error, p.test_error, p.best_epoch, p.epoch, p.iteration)


def _validate(model, p, stopping, valid_score, test_score, checkpoint):
    """The tutorial's early-stopping bookkeeping after one validation."""
    p.valid_error = split_error(valid_score)
    if p.valid_error < p.best_valid_error:
        if p.valid_error < p.best_valid_error * stopping.improvement_threshold:
            p.patience = max(p.patience, int(p.iteration * stopping.patience_increase))
        p.best_valid_error, p.best_epoch = p.valid_error, p.epoch + 1
        checkpoint.best = [param.get_value() for param in model.params]
        p.test_error = split_error(test_score)
