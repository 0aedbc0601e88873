"""The modern fine-tuning recipe's pieces: hidden-unit dropout against numpy, the max-norm constraint."""

import numpy as np
import pytensor
import pytest

from sda import SdA
from sda.errors import SettingError
from sda.sgd import sgd_updates


def small_model(seed=3):
    return SdA(
        np.random.RandomState(seed),
        n_ins=12,
        hidden_layers_sizes=(9, 7),
        n_outs=4,
        corruption_levels=(0.1, 0.2),
    )


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def numpy_thinned_cost(model, x, y, generator, input_level, hidden_level):
    """The same cost drawn with numpy: masks in the graph's order, from a copy of its generator."""
    h = x.astype(np.float64)
    if input_level:
        h = h * generator.binomial(1, 1 - input_level, size=h.shape) / np.float32(1 - input_level)
    for layer in model.sigmoid_layers:
        h = sigmoid(h @ layer.W.get_value() + layer.b.get_value())
        h = h * generator.binomial(1, 1 - hidden_level, size=h.shape) / np.float32(1 - hidden_level)
    logits = h @ model.logLayer.W.get_value() + model.logLayer.b.get_value()
    log_p = (
        logits
        - np.log(np.sum(np.exp(logits - logits.max(1, keepdims=True)), 1, keepdims=True))
        - logits.max(1, keepdims=True)
    )
    return -np.mean(log_p[np.arange(len(y)), y])


@pytest.mark.floats
@pytest.mark.parametrize("input_level", [0.0, 0.2])
def test_thinned_cost_is_numpys_with_the_same_masks(input_level):
    model = small_model()
    for p in model.params:  # non-zero softmax weights, so every mask changes the cost
        p.set_value(np.random.default_rng(1).normal(0, 0.5, p.get_value().shape).astype(p.dtype))
    rng = np.random.default_rng(5)
    x = rng.random((6, 12)).astype("float32")
    y = rng.integers(0, 4, 6).astype("int32")
    cost, noise = model.dropout_finetune_cost(input_level, hidden_dropout=0.5)
    step = pytensor.function([model.x, model.y], cost, updates=noise)
    generator = model.dA_layers[0].rng.get_value()
    expected = numpy_thinned_cost(model, x, y, _copy(generator), input_level, 0.5)
    first = float(step(x, y))
    # float32 graph against float64 numpy: a few ulps of a cost near 1
    assert first == pytest.approx(expected, rel=1e-5)
    second = float(step(x, y))
    assert second != first  # the generator moved on: fresh masks every step
    assert float(pytensor.function([model.x, model.y], model.finetune_cost)(x, y)) not in (first, second)


def _copy(generator):
    fresh = np.random.default_rng()
    fresh.bit_generator.state = generator.bit_generator.state
    return fresh


def test_no_dropout_is_the_plain_cost_and_bad_levels_are_refused():
    model = small_model()
    cost, noise = model.dropout_finetune_cost(0.0, 0.0)
    assert cost is model.finetune_cost and noise == []
    with pytest.raises(SettingError, match=r"hidden_dropout must be in \[0, 1\), got 1.0"):
        model.dropout_finetune_cost(0.0, 1.0)


@pytest.mark.floats
@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_max_norm_scales_back_only_the_columns_that_outgrow_it(momentum):
    rng = np.random.default_rng(2)
    w = pytensor.shared((rng.normal(0, 1, (5, 4)) * [0.1, 0.1, 3.0, 3.0]).astype("float32"), name="w")
    b = pytensor.shared(np.zeros(4, dtype="float32"), name="b")
    x = rng.random((3, 5)).astype("float32")
    cost = pytensor.tensor.sum(pytensor.tensor.dot(x, w) + b) ** 2 / 100
    updates, _ = sgd_updates(cost, [w, b], np.float32(0.01), momentum=momentum, max_norm=1.0)
    grad_w, grad_b = pytensor.function([], pytensor.grad(cost, [w, b]))()
    before = w.get_value()
    pytensor.function([], [], updates=updates)()
    free = before - 0.01 * grad_w  # the first step: no velocity yet, with or without momentum
    norms = np.linalg.norm(free, axis=0)
    expected = free * np.minimum(1, 1.0 / norms)
    np.testing.assert_allclose(w.get_value(), expected, rtol=1e-6)
    assert np.all(np.linalg.norm(w.get_value(), axis=0) <= 1.0 + 1e-6)
    assert norms[:2].max() < 1 < norms[2:].min()  # two columns kept, two scaled back
    np.testing.assert_allclose(b.get_value(), -0.01 * grad_b, rtol=1e-6)  # biases: a plain step


def test_max_norm_must_be_positive():
    w = pytensor.shared(np.ones((2, 2), dtype="float32"))
    with pytest.raises(SettingError, match=r"max_norm must be more than 0, got 0"):
        sgd_updates(pytensor.tensor.sum(w), [w], 0.1, max_norm=0)


@pytest.mark.floats
def test_a_shared_momentum_takes_the_same_steps_and_a_ramp_sets_it_each_epoch(tmp_path):
    from sda.data import load_dataset, shared_dataset
    from sda.finetune import MinibatchSGD, Monitor, PassBudget, finetune, momentum_at

    digits = load_dataset("digits").subset(200, 50, 50)
    datasets = [shared_dataset(s) for s in (digits.train, digits.valid, digits.test)]
    runs = {}
    for schedule in (False, True):
        model = SdA(np.random.RandomState(0), n_ins=64, hidden_layers_sizes=(16,), corruption_levels=(0.1,))
        train_fn, valid, test = model.build_finetune_functions(
            datasets, batch_size=20, learning_rate=0.1, momentum=0.5, momentum_schedule=schedule
        )
        seen = []
        step = MinibatchSGD(train_fn, 200, 20, momentum_ramp=(0.9, 2) if schedule else None)
        monitor = Monitor(PassBudget(eval_every=1.0), model.params, valid.error, test.error)

        def record(evaluation, train_fn=train_fn, seen=seen):
            if train_fn.momentum is not None:
                seen.append(round(float(train_fn.momentum.get_value()), 6))

        finetune(model, step, monitor, max_epochs=1, on_record=record)
        runs[schedule] = [p.get_value() for p in model.params]
        if schedule:
            assert seen[-1] == 0.5  # epoch 0 of the ramp
    for fixed, shared in zip(runs[False], runs[True]):
        np.testing.assert_array_equal(fixed, shared)  # one epoch at 0.5 either way: the same bits
    assert momentum_at(1, 0.5, 0.9, 2) == pytest.approx(0.7)


def test_the_momentum_ramp_rises_epoch_by_epoch_then_stays():
    from sda.data import load_dataset, shared_dataset
    from sda.finetune import MinibatchSGD, Monitor, PassBudget, finetune

    digits = load_dataset("digits").subset(100, 50, 50)
    datasets = [shared_dataset(s) for s in (digits.train, digits.valid, digits.test)]
    model = SdA(np.random.RandomState(0), n_ins=64, hidden_layers_sizes=(8,), corruption_levels=(0.1,))
    train_fn, valid, test = model.build_finetune_functions(
        datasets, batch_size=20, learning_rate=0.1, momentum=0.5, momentum_schedule=True
    )
    seen = []
    monitor = Monitor(PassBudget(eval_every=1.0), model.params, valid.error, test.error)
    step = MinibatchSGD(train_fn, 100, 20, momentum_ramp=(0.9, 2))
    finetune(
        model,
        step,
        monitor,
        max_epochs=4,
        on_record=lambda r: seen.append(round(float(train_fn.momentum.get_value()), 6)),
    )
    assert seen == [0.5, 0.5, 0.7, 0.9, 0.9]  # the start, then after each epoch
    with pytest.raises(SettingError, match="momentum_ramp needs a step compiled with a shared momentum"):
        MinibatchSGD(model.build_finetune_functions(datasets, 20, 0.1)[0], 100, 20, momentum_ramp=(0.9, 2))
