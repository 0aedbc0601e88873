"""Layer-wise pre-training of the stacked dAs, with the cached fast path.

The loop takes a model and shared data, and reports each epoch through an
``on_epoch(record)`` callback (a dict), so the command line, the tests and
the experiments all drive the same code. It keeps its position in a
``Progress`` and can save it in a ``Checkpoint``; given a loaded
``Progress`` it continues exactly where it left off. Fine-tuning is
``sda.finetune``.

Every minibatch cost is checked (one float test per step) and the
parameters at every checkpoint, so a NaN or infinity stops the run with
``sda.errors.TrainingDiverged`` before it can reach a checkpoint. A cost that
climbs far above where it started gets a ``RuntimeWarning``
(``sda.errors.CostWatch``).
"""

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pytensor

from sda.batching import n_batches
from sda.checkpoint import Checkpoint, Progress
from sda.constraints import SGD_BATCH_SIZE
from sda.errors import check_finite
from sda.graph_types import TensorSharedVariable
from sda.SdA import SdA
from sda.watch import PRETRAINING, EpochCostWatch, check_params, noop, progress_bar, save_if_due


# ---------------------------------------------------------------- pre-training
def cache_layer_input(
    model: SdA, layer: int, train_x: TensorSharedVariable, chunk_rows: int = 5000
) -> np.ndarray:
    """The input of dA ``layer`` for every training row, as float32 numpy.

    The frozen encoders run over ``chunk_rows`` rows at a time, so no
    intermediate the size of the whole graph is ever held.

    Parameters
    ----------
    model : SdA
        The stack whose encoders below ``layer`` are applied.
    layer : int
        The dA whose input is made, counted from 0 (the bottom); 0 gives the
        inputs themselves.
    train_x : TensorSharedVariable
        The training inputs, one row per example.
    chunk_rows : int, default 5000
        Rows encoded per compiled call.

    Returns
    -------
    ndarray of shape (rows of ``train_x``, ``model.dA_layers[layer].n_visible``)
        The representation layer ``layer`` trains on, in ``floatX``.
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
    representation is held at a time.

    Parameters
    ----------
    model : SdA
        The stack being pre-trained.
    train_x : TensorSharedVariable
        The training inputs, one row per example.
    cached : bool
        Whether layers above the first train on a stored representation (the
        fast path) or on ``train_x`` through the frozen encoders.
    """

    def __init__(self, model: SdA, train_x: TensorSharedVariable, cached: bool) -> None:
        self.model, self.train_x, self.cached = model, train_x, cached
        self.store: TensorSharedVariable | None = None

    def for_layer(self, layer: int) -> tuple[TensorSharedVariable, bool]:
        """``(shared matrix, cached?)`` to compile layer ``layer``'s step on.

        Parameters
        ----------
        layer : int
            The dA to be trained, counted from 0 (the bottom).

        Returns
        -------
        data : TensorSharedVariable
            ``train_x``, or the shared store now holding ``layer``'s input.
        cached : bool
            True when ``data`` is the stored representation (the step then
            takes its rows as the dA's input directly).
        """
        if not self.cached or layer == 0:
            return self.train_x, False
        values = cache_layer_input(self.model, layer, self.train_x)
        if self.store is None:
            self.store = pytensor.shared(values, name="layer_input", borrow=True)
        else:
            self.store.set_value(values, borrow=True)  # drops the previous layer's copy
        return self.store, True


def pretrain(
    model: SdA,
    train_x: TensorSharedVariable,
    batch_size: int = SGD_BATCH_SIZE,
    epochs: int = 15,
    learning_rate: float = 0.02,
    corruption_levels: Sequence[float] | None = None,
    cached: bool = True,
    layers: Iterable[int] | None = None,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    on_epoch: Callable[[dict[str, Any]], None] = noop,
    on_step: Callable[[dict[str, Any]], None] = noop,
    show_progress: bool = False,
    progress: Progress | None = None,
    checkpoint: Checkpoint | None = None,
) -> list[list[float]]:
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
        Minibatch rows (default 20), and passes over the data per layer
        (default 15).
    learning_rate : float
        SGD step on the minibatch's mean cost (default 0.02).
    corruption_levels : sequence of float, optional
        One per layer, each the fraction of inputs zeroed, in [0, 1); the
        model's own levels by default.
    cached : bool
        The fast path (see above); the same result either way.
    layers : list of int, optional
        Which layers to train, in increasing order, counted from 0; all by default.
    momentum, weight_decay : float
        As in ``sda.sgd.sgd_updates``.
    on_epoch, on_step : callable
        Get a dict per epoch (``phase``, ``layer``, ``epoch``, ``cost``,
        ``seconds``) and per minibatch (``phase``, ``layer``, ``epoch``,
        ``step``, ``cost``).
    show_progress : bool
        Show a progress bar on a terminal.
    progress, checkpoint : Progress, Checkpoint, optional
        Resume from and save training state (``sda.checkpoint``).

    Returns
    -------
    list of list of float
        Per layer, the mean cost of each epoch.

    Raises
    ------
    TrainingDiverged
        When a minibatch cost or a parameter is not finite.

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
                bar = progress_bar(
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
                    save_if_due(
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
