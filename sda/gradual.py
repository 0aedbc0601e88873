"""Gradual training of deep denoising auto-encoders (Kalmanovich & Chechik, 2015).

Stacked training freezes layers ``0..k-1`` and trains dA ``k`` alone to
denoise their (corrupted) output. Gradual training instead adds layer ``k``
on top of the layers already trained and keeps training all of them
together: the *input* is corrupted, encoded through layers ``0..k``, decoded
back through the dAs' decoders ``k..0``, and scored against the clean input.

The hybrid schedule spends a fraction ``f`` of each upper layer's update
budget on stacked training of that layer and the rest on gradual training;
``f=1`` is pure stacked training, ``f=0`` pure gradual training.

Budget accounting, in *layer-epochs*: a pass over the training set that
updates one layer costs 1; a gradual pass at depth ``k+1`` updates ``k+1``
layers and costs ``k+1``. So for the paper's 2-layer network one gradual
epoch of the second layer is worth two stacked epochs, as in their
section 3.2. Budgets are spent in minibatch steps, so fractions of an epoch
are allowed.
"""

import math
import time
from collections.abc import Callable, Iterable, Sequence
from numbers import Real
from typing import Any

import numpy as np
import pytensor.tensor as pt
from scipy.special import entr

from sda.batching import n_batches
from sda.checkpoint import Checkpoint, Progress
from sda.constraints import SGD_BATCH_SIZE, check_setting
from sda.dA import reconstruction_loss
from sda.engine import batched_function
from sda.errors import SettingError, check_finite
from sda.graph_types import RandomGenerator, Tensor, TensorSharedVariable
from sda.optimize import DeepAutoencoder
from sda.SdA import SdA
from sda.sgd import SGDStep, sgd_updates
from sda.train import LayerSource
from sda.watch import EpochCostWatch, check_params, noop

PHASE_NAMES = {"stacked": "stacked pre-training", "gradual": "gradual training"}  # in error messages


# ------------------------------------------------------------------- graphs
def gradual_cost(
    model: SdA, depth: int, corruption: float | Tensor
) -> tuple[Tensor, list[TensorSharedVariable], RandomGenerator]:
    """``(cost, params, next_rng)`` of one gradual step on ``model.x``.

    Masking noise from dA 0's generator hits the input only; the loss is the
    mean over the minibatch of the reconstruction loss against the clean
    input. ``params`` are every dA parameter of layers ``0..depth-1``.

    Parameters
    ----------
    model : SdA
        The stack; its input ``model.x`` is encoded through layers ``0..depth-1``
        and decoded back through their decoders.
    depth : int
        How many layers, from the bottom, are trained jointly (at least 1).
    corruption : float or scalar TensorVariable
        The fraction of input values zeroed, in [0, 1).

    Returns
    -------
    cost : TensorVariable
        The scalar mean reconstruction loss (the model's ``loss``).
    params : list of TensorSharedVariable
        Weights and biases of the dAs ``0..depth-1`` (decoder biases included).
    next_rng : RandomGeneratorVariable
        dA 0's generator after the mask is drawn, for the step's updates.
    """
    first = model.dA_layers[0]
    next_rng, mask = first.get_corruption_mask(model.x, corruption)
    pre_activation = model.unrolled_pre_activation(model.x * mask, depth)
    cost = pt.mean(reconstruction_loss(model.x, pre_activation, first.loss))
    params = [p for auto_encoder in model.dA_layers[:depth] for p in auto_encoder.params]
    return cost, params, next_rng


def gradual_step_function(
    model: SdA,
    depth: int,
    train_x: TensorSharedVariable,
    batch_size: int,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
) -> SGDStep:
    """Compile ``fn(index, corruption, lr) -> cost``: one SGD step of the
    first ``depth`` layers, trained jointly on minibatch ``index`` of the
    shared matrix ``train_x``; an ``sda.sgd.SGDStep`` with its velocities.

    Parameters
    ----------
    model : SdA
        The stack to train.
    depth : int
        How many layers, from the bottom, are trained jointly (at least 1).
    train_x : TensorSharedVariable
        The training inputs, one row per example.
    batch_size : int
        Rows per minibatch; minibatch ``index`` holds rows
        ``index * batch_size`` to ``(index + 1) * batch_size`` (the last may be shorter).
    momentum, weight_decay : float
        As in ``sda.sgd.sgd_updates``.

    Returns
    -------
    SGDStep
        ``step(index, corruption, lr)`` returns the minibatch's mean cost and
        updates the parameters of layers ``0..depth-1`` and dA 0's generator.
    """
    index = pt.lscalar("index")
    corruption = pt.scalar("corruption")
    lr = pt.scalar("lr")
    cost, params, next_rng = gradual_cost(model, depth, corruption)
    updates, velocities = sgd_updates(cost, params, lr, momentum, weight_decay)
    updates.append((model.dA_layers[0].rng, next_rng))  # a fresh mask every step
    step = batched_function(
        index,
        [corruption, lr],
        cost,
        {model.x: train_x},
        batch_size,
        updates=updates,
        name=f"gradual_depth{depth}",
    )
    return SGDStep(step, velocities)


# ------------------------------------------------------------------- metric
def data_entropy(x: Any) -> float:
    """Mean over rows of ``sum_i -x_i log x_i - (1 - x_i) log(1 - x_i)``: the
    cross-entropy of ``x`` with itself, the least any reconstruction can score.

    Parameters
    ----------
    x : array_like of shape (n_rows, n_features)
        Values in [0, 1], one row per example.

    Returns
    -------
    float
        The mean per-row entropy, in nats.

    Examples
    --------
    >>> round(data_entropy([[0.5, 1.0], [0.0, 0.5]]), 4)  # log 2 per row
    0.6931
    """
    x = np.asarray(x, dtype=np.float64)
    return float(np.mean(np.sum(entr(x) + entr(1 - x), axis=1)))


def relative_cross_entropy(model: SdA, data_x: TensorSharedVariable) -> float:
    """Reconstruction cross-entropy per example of the whole unrolled stack
    (no noise) on the shared matrix ``data_x``, minus ``data_entropy``.

    Parameters
    ----------
    model : SdA
        A stack built with ``loss="cross_entropy"``.
    data_x : TensorSharedVariable
        Inputs in [0, 1], one row per example.

    Returns
    -------
    float
        Nats per example above the data's own entropy; 0 is a perfect reconstruction.

    Raises
    ------
    SettingError
        If the model's loss is not cross-entropy.
    """
    if model.dA_layers[0].loss != "cross_entropy":
        raise SettingError("relative_cross_entropy needs a model built with loss='cross_entropy'")
    error = DeepAutoencoder(model).error_function(data_x)()
    return error - data_entropy(data_x.get_value(borrow=True))


# ---------------------------------------------------------------- schedule
def _budgets(model, epochs_per_layer):
    if isinstance(epochs_per_layer, Real):
        epochs_per_layer = [epochs_per_layer] * model.n_layers
    budgets = list(epochs_per_layer)
    if len(budgets) != model.n_layers:
        raise SettingError(
            f"epochs_per_layer has {len(budgets)} values for {model.n_layers} "
            "layers: give one budget per layer, or a single number"
        )
    return [
        check_setting("first_epochs", budget, f"epochs_per_layer[{layer}]")
        for layer, budget in enumerate(budgets)
    ]


def schedule(layer: int, budget: float, fraction_stacked: float, steps_per_epoch: int) -> tuple[int, int]:
    """``(stacked_steps, gradual_steps)`` that spend ``budget`` layer-epochs
    on ``layer``: a share ``fraction_stacked`` stacked, the rest gradual at
    depth ``layer + 1``, whose steps cost ``layer + 1`` each.

    Parameters
    ----------
    layer : int
        The layer being trained, counted from 0; layer 0 is all stacked.
    budget : float
        The layer's budget in layer-epochs (may be fractional).
    fraction_stacked : float
        Share of the budget spent on stacked training, in [0, 1].
    steps_per_epoch : int
        Minibatches per pass over the training set.

    Returns
    -------
    stacked_steps, gradual_steps : int
        Minibatch steps of each kind, rounded to whole steps.

    Examples
    --------
    >>> schedule(1, 2, 0.5, 100)  # 100 stacked steps, then 100 layer-epochs' worth at depth 2
    (100, 50)
    """
    total = budget * steps_per_epoch
    if layer == 0:
        return round(total), 0  # a lone first layer is a plain dA: stacked and gradual agree
    stacked = round(fraction_stacked * total)
    return stacked, round((total - stacked) / (layer + 1))


def train_gradual(
    model: SdA,
    train_x: TensorSharedVariable,
    epochs_per_layer: float | Sequence[float],
    batch_size: int = SGD_BATCH_SIZE,
    learning_rate: float = 0.01,
    corruption: float | None = None,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    fraction_stacked: float = 0.0,
    layers: Iterable[int] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] = noop,
    progress: Progress | None = None,
    checkpoint: Checkpoint | None = None,
) -> list[dict[str, Any]]:
    """Train ``model``'s dAs with the stacked/gradual hybrid; return the epoch records.

    ``epochs_per_layer`` (one number, or one per layer) is each layer's
    budget in layer-epochs (see the module docstring). Layer 0 gets plain dA
    training. Layer ``k >= 1`` first trains alone (stacked, on the stored
    output of the layers below, as ``sda.train.pretrain`` does) for a share
    ``fraction_stacked`` of its budget, then jointly with layers ``0..k-1``
    (gradual) for the rest. With ``fraction_stacked=1`` this is exactly
    ``sda.train.pretrain(model, train_x, batch_size, epochs, learning_rate,
    [corruption] * n, cached=True, ...)``.

    ``corruption`` is the input's masking level (default: the model's level
    for layer 0) and is used for every stacked layer too, as in the paper.
    ``layers`` trains only those layers (default: all), e.g. ``[1]`` to go on
    from a trained first layer. ``on_epoch(record)`` sees each pass over the
    data (the last of a phase may be partial): ``phase`` ("stacked" or
    "gradual"), ``layer``, ``epoch``, ``steps``, mean ``cost``, ``budget``
    (layer-epochs spent so far on this layer) and ``seconds``.

    Raises ``sda.errors.TrainingDiverged`` naming the phase, layer, epoch and
    step when a cost or parameter is not finite; warns when a phase's cost
    climbs far above its first minibatch's.

    ``progress`` and ``checkpoint`` make the training resumable: the state
    (parameters, generators, SGD velocities and the records so far) is saved
    at the end of every pass over the data, and a ``Progress`` loaded from
    that checkpoint continues from the pass after it with the same numbers
    as an uninterrupted call. ``progress.layer`` is the layer in training,
    ``progress.epoch`` the passes finished in it (stacked, then gradual) and
    ``progress.records`` the records; once every layer is done,
    ``progress.layer`` is past the last one.

    Parameters
    ----------
    model : SdA
        The stack whose dAs are trained, bottom up.
    train_x : TensorSharedVariable
        The training inputs, one row per example (``sda.data.shared_dataset``).
    epochs_per_layer : float or sequence of float
        Each layer's budget in layer-epochs: one number for all, or one per layer.
    batch_size : int, default 20
        Rows per minibatch.
    learning_rate : float, default 0.01
        SGD step on the minibatch's mean cost.
    corruption : float, optional
        Fraction of input values zeroed, in [0, 1); default the model's level
        for layer 0.
    momentum, weight_decay : float
        As in ``sda.sgd.sgd_updates``.
    fraction_stacked : float, default 0.0
        Share of each upper layer's budget spent on stacked training, in [0, 1].
    layers : iterable of int, optional
        The layers to train, counted from 0; all by default.
    on_epoch : callable
        Gets a dict per pass over the data (keys above), after the pass is saved.
    progress, checkpoint : Progress, Checkpoint, optional
        Resume from and save the training state (``sda.checkpoint``).

    Returns
    -------
    list of dict
        Every pass's record, in order, those of an interrupted earlier call included.

    Raises
    ------
    SettingError, SettingTypeError
        If a setting is out of range or of the wrong type, ``epochs_per_layer``
        has not one value per layer, or ``layers`` names no layer or one the
        model lacks.
    TrainingDiverged
        When a cost or parameter is not finite.
    """
    check_setting("fraction_stacked", fraction_stacked)
    budgets = _budgets(model, epochs_per_layer)
    check_setting("batch_size", batch_size)
    check_setting("learning_rate", learning_rate)
    level = model.corruption_levels[0] if corruption is None else check_setting("corruption", corruption)
    layers = list(range(model.n_layers)) if layers is None else list(layers)
    if not layers or any(layer not in range(model.n_layers) for layer in layers):
        raise SettingError(f"layers must name some of the layers 0..{model.n_layers - 1}, got {layers}")

    count = n_batches(train_x.get_value(borrow=True).shape[0], batch_size)
    source = LayerSource(model, train_x, cached=True)
    progress = progress or Progress(layer=layers[0])
    checkpoint = checkpoint or Checkpoint()
    started = time.perf_counter() - progress.seconds["pretrain"]

    def run(step, n_steps, first_pass, tags, cost_per_step, spent):
        """Minibatch steps ``first_pass * count`` to ``n_steps - 1`` in data order,
        a record and a save per pass; returns the layer-epochs spent on the layer so far."""
        checkpoint.restore_velocities(step.velocities)
        epoch, costs = first_pass, []
        phase = PHASE_NAMES[tags["phase"]]
        # minibatch reconstruction costs stay within a small factor of each other,
        # so the first one is a fair start even for layers trained before
        watch = EpochCostWatch(f"{phase} layer {tags['layer']}", from_scratch=True)
        for i in range(first_pass * count, n_steps):
            costs.append(float(step(i % count, level, learning_rate)))
            check_finite(costs[-1], phase, layer=tags["layer"], epoch=epoch, step=i + 1)
            watch.step(costs[-1])
            if len(costs) == count or i == n_steps - 1:
                spent += cost_per_step * len(costs) / count
                progress.seconds["pretrain"] = time.perf_counter() - started
                record = dict(
                    tags,
                    epoch=epoch,
                    steps=len(costs),
                    cost=float(np.mean(costs)),
                    budget=spent,
                    seconds=progress.seconds["pretrain"],
                )
                progress.records.append(record)
                progress.epoch += 1
                progress.steps += len(costs)
                watch.epoch(record["cost"])
                if i == n_steps - 1:
                    checkpoint.velocities = []  # the next phase starts with fresh ones
                if checkpoint.path is not None:
                    check_params(model, phase, layer=tags["layer"], step=i + 1)
                    checkpoint.save(progress)
                on_epoch(record)
                epoch, costs = epoch + 1, []
        check_params(model, phase, layer=tags["layer"], step=n_steps)
        return spent

    for layer in [layer for layer in layers if layer >= progress.layer]:
        if layer > progress.layer:
            progress.layer, progress.epoch = layer, 0
        stacked_steps, gradual_steps = schedule(layer, budgets[layer], fraction_stacked, count)
        stacked_passes, gradual_passes = math.ceil(stacked_steps / count), math.ceil(gradual_steps / count)
        spent = progress.records[-1]["budget"] if progress.epoch else 0.0
        if progress.epoch < stacked_passes:
            data, cached = source.for_layer(layer)
            step = model.pretraining_function(layer, data, batch_size, cached, momentum, weight_decay)
            tags = dict(phase="stacked", layer=layer)
            spent = run(step, stacked_steps, progress.epoch, tags, 1, spent)
        if progress.epoch - stacked_passes < gradual_passes:
            step = gradual_step_function(model, layer + 1, train_x, batch_size, momentum, weight_decay)
            tags = dict(phase="gradual", layer=layer)
            run(step, gradual_steps, progress.epoch - stacked_passes, tags, layer + 1, spent)
        progress.layer, progress.epoch = layer + 1, 0
        checkpoint.save(progress)
    return progress.records
