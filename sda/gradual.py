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

import time
from numbers import Real

import numpy as np
import pytensor.tensor as pt
from scipy.special import entr

from sda.batching import n_batches
from sda.constraints import SGD_BATCH_SIZE, check_setting
from sda.dA import reconstruction_loss
from sda.engine import batched_function
from sda.errors import SettingError, check_finite
from sda.optimize import DeepAutoencoder
from sda.sgd import SGDStep, sgd_updates
from sda.train import LayerSource
from sda.watch import EpochCostWatch, check_params, noop

PHASE_NAMES = {"stacked": "stacked pre-training", "gradual": "gradual training"}  # in error messages


# ------------------------------------------------------------------- graphs
def gradual_cost(model, depth, corruption):
    """``(cost, params, next_rng)`` of one gradual step on ``model.x``.

    Masking noise from dA 0's generator hits the input only; the loss is the
    mean over the minibatch of the reconstruction loss against the clean
    input. ``params`` are every dA parameter of layers ``0..depth-1``.
    """
    first = model.dA_layers[0]
    next_rng, mask = first.get_corruption_mask(model.x, corruption)
    pre_activation = model.unrolled_pre_activation(model.x * mask, depth)
    cost = pt.mean(reconstruction_loss(model.x, pre_activation, first.loss))
    params = [p for auto_encoder in model.dA_layers[:depth] for p in auto_encoder.params]
    return cost, params, next_rng


def gradual_step_function(model, depth, train_x, batch_size, momentum=0.0, weight_decay=0.0):
    """Compile ``fn(index, corruption, lr) -> cost``: one SGD step of the
    first ``depth`` layers, trained jointly on minibatch ``index`` of the
    shared matrix ``train_x``; an ``sda.sgd.SGDStep`` with its velocities."""
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
def data_entropy(x):
    """Mean over rows of ``sum_i -x_i log x_i - (1 - x_i) log(1 - x_i)``: the
    cross-entropy of ``x`` with itself, the least any reconstruction can score."""
    x = np.asarray(x, dtype=np.float64)
    return float(np.mean(np.sum(entr(x) + entr(1 - x), axis=1)))


def relative_cross_entropy(model, data_x):
    """Reconstruction cross-entropy per example of the whole unrolled stack
    (no noise) on the shared matrix ``data_x``, minus ``data_entropy``."""
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


def schedule(layer, budget, fraction_stacked, steps_per_epoch):
    """``(stacked_steps, gradual_steps)`` that spend ``budget`` layer-epochs
    on ``layer``: a share ``fraction_stacked`` stacked, the rest gradual at
    depth ``layer + 1``, whose steps cost ``layer + 1`` each."""
    total = budget * steps_per_epoch
    if layer == 0:
        return round(total), 0  # a lone first layer is a plain dA: stacked and gradual agree
    stacked = round(fraction_stacked * total)
    return stacked, round((total - stacked) / (layer + 1))


def train_gradual(
    model,
    train_x,
    epochs_per_layer,
    batch_size=SGD_BATCH_SIZE,
    learning_rate=0.01,
    corruption=None,
    momentum=0.0,
    weight_decay=0.0,
    fraction_stacked=0.0,
    layers=None,
    on_epoch=noop,
):
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
    records, started = [], time.perf_counter()

    def run(step, n_steps, tags, cost_per_step, spent):
        """``n_steps`` minibatch steps in data order, a record per pass; returns
        the layer-epochs spent on the layer so far."""
        epoch, costs = 0, []
        phase = PHASE_NAMES[tags["phase"]]
        # minibatch reconstruction costs stay within a small factor of each other,
        # so the first one is a fair start even for layers trained before
        watch = EpochCostWatch(f"{phase} layer {tags['layer']}", from_scratch=True)
        for i in range(n_steps):
            costs.append(float(step(i % count, level, learning_rate)))
            check_finite(costs[-1], phase, layer=tags["layer"], epoch=epoch, step=i + 1)
            watch.step(costs[-1])
            if len(costs) == count or i == n_steps - 1:
                spent += cost_per_step * len(costs) / count
                record = dict(
                    tags,
                    epoch=epoch,
                    steps=len(costs),
                    cost=float(np.mean(costs)),
                    budget=spent,
                    seconds=time.perf_counter() - started,
                )
                records.append(record)
                watch.epoch(record["cost"])
                on_epoch(record)
                epoch, costs = epoch + 1, []
        check_params(model, phase, layer=tags["layer"], step=n_steps)
        return spent

    for layer in layers:
        stacked_steps, gradual_steps = schedule(layer, budgets[layer], fraction_stacked, count)
        spent = 0.0
        if stacked_steps:
            data, cached = source.for_layer(layer)
            step = model.pretraining_function(layer, data, batch_size, cached, momentum, weight_decay)
            spent = run(step, stacked_steps, dict(phase="stacked", layer=layer), 1, spent)
        if gradual_steps:
            step = gradual_step_function(model, layer + 1, train_x, batch_size, momentum, weight_decay)
            run(step, gradual_steps, dict(phase="gradual", layer=layer), layer + 1, spent)
    return records
