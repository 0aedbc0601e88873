"""Training loops: layer-wise pre-training and SGD fine-tuning with early stopping.

The loops take a model and shared data, and report each epoch through an
``on_epoch(record)`` callback (a dict), so the command line, the tests and
the experiments all drive the same code.
"""

import time
from dataclasses import dataclass

import numpy as np
import pytensor
from tqdm.auto import tqdm

from sda.SdA import n_batches


def _noop(record):
    pass


def _progress(count, description, show):
    # disable=None: no bar when the output is not a terminal (logs, CI)
    return tqdm(range(count), desc=description, leave=False, disable=None if show else True,
                unit="batch")


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


def pretrain(model, train_x, batch_size=20, epochs=15, learning_rate=0.02, corruption_levels=None,
             cached=True, layers=None, on_epoch=_noop, show_progress=False):
    """Greedy layer-wise pre-training; returns each layer's per-epoch mean cost.

    With ``cached=True`` (the fast path), layer ``k`` trains on the stored
    output of layers ``0..k-1``, computed once, instead of recomputing it
    for every minibatch. Only one such representation is held at a time.
    """
    levels = model.corruption_levels if corruption_levels is None else corruption_levels
    count = n_batches(train_x.get_value(borrow=True).shape[0], batch_size)
    history, cache = [], None
    for layer in layers if layers is not None else range(model.n_layers):
        start = time.perf_counter()
        if cached and layer > 0:
            values = cache_layer_input(model, layer, train_x)
            if cache is None:
                cache = pytensor.shared(values, name="layer_input", borrow=True)
            else:
                cache.set_value(values, borrow=True)  # drop the previous layer's copy
            step = model.pretraining_function(layer, cache, batch_size, cached=True)
        else:
            step = model.pretraining_function(layer, train_x, batch_size)
        costs = []
        for epoch in range(epochs):
            batch_costs = [
                step(i, levels[layer], learning_rate)
                for i in _progress(count, f"pre-train layer {layer} epoch {epoch}", show_progress)
            ]
            costs.append(float(np.mean(batch_costs)))
            on_epoch({"phase": "pretrain", "layer": layer, "epoch": epoch, "cost": costs[-1],
                      "seconds": time.perf_counter() - start})
        history.append(costs)
    return history


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
                 stopping=None, validation_frequency=None, on_epoch=_noop, show_progress=False):
    """SGD fine-tuning with early stopping; leaves the best-validation
    parameters in the model and returns a ``FinetuneResult``."""
    stopping = stopping or EarlyStopping()
    patience = stopping.patience
    validation_frequency = validation_frequency or min(n_train_batches, max(1, patience // 2))
    best_valid, test_error, best_epoch, best_values = np.inf, np.nan, 0, None
    valid_error = np.nan
    iteration, epoch, start = 0, 0, time.perf_counter()
    while epoch < max_epochs and iteration < patience:
        epoch += 1
        costs = []
        for index in _progress(n_train_batches, f"fine-tune epoch {epoch}", show_progress):
            costs.append(train_fn(index))
            iteration += 1
            if iteration % validation_frequency == 0:
                valid_error = split_error(valid_score)
                if valid_error < best_valid:
                    if valid_error < best_valid * stopping.improvement_threshold:
                        patience = max(patience, int(iteration * stopping.patience_increase))
                    best_valid, best_epoch = valid_error, epoch
                    best_values = [p.get_value() for p in model.params]
                    test_error = split_error(test_score)
            if iteration >= patience:
                break
        on_epoch({"phase": "finetune", "epoch": epoch, "cost": float(np.mean(costs)),
                  "valid_error": valid_error, "best_valid_error": best_valid,
                  "test_error": test_error, "seconds": time.perf_counter() - start})
    if best_values is not None:
        for p, value in zip(model.params, best_values):
            p.set_value(value)
    return FinetuneResult(best_valid, test_error, best_epoch, epoch, iteration)
