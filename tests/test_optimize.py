"""Batch fine-tuning: the flat vector, its gradient, and CG / L-BFGS on real MNIST rows."""

import dataclasses
import re

import numpy as np
import pytensor
import pytest

from sda import SdA
from sda.checkpoint import Checkpoint
from sda.data import load_dataset, shared_dataset
from sda.errors import SettingError, SettingTypeError, TrainingDiverged
from sda.finetune import (
    PassBudget,
    autoencoder_line_search,
    autoencoder_monitor,
    classifier_line_search,
    classifier_monitor,
    finetune,
)
from sda.optimize import DeepAutoencoder, FlatObjective, FlatParams, dropout_mask
from sda.rundir import load_params, save_params
from sda.sgd import sgd_updates
from sda.train import pretrain


@pytest.fixture(scope="module")
def mnist_small(shared_data):
    return load_dataset("mnist", shared_data).subset(n_train=1000, n_valid=500, n_test=500)


def shared_splits(dataset):
    return [shared_dataset(s) for s in (dataset.train, dataset.valid, dataset.test)]


def line_search(
    model,
    shared,
    method="cg",
    batch_size=1000,
    line_searches=3,
    warmup_epochs=0,
    budget_passes=None,
    max_epochs=1000,
    patience=None,
    weight_decay=0.0,
    input_dropout=0.0,
    seed=0,
    eval_every=0.5,
    chunk_rows=10_000,
    **loop,
):
    """CG or L-BFGS on shuffled batches through the fine-tuning loop, measured in pass-equivalents."""
    step = classifier_line_search(
        model,
        shared[0],
        method,
        batch_size,
        line_searches,
        warmup_epochs,
        weight_decay,
        input_dropout,
        seed,
        chunk_rows,
    )
    policy = PassBudget(eval_every, budget_passes, patience)
    monitor = classifier_monitor(model, shared, policy, chunk_rows, weight_decay)
    return finetune(model, step, monitor, max_epochs=max_epochs, **loop)


def full_batch(model, shared, method, max_iterations, **settings):
    """The loop's full-batch mode: one run of ``max_iterations`` over every row, each iterate
    measured (one costs a pass at least)."""
    n_rows = shared[0][1].get_value(borrow=True).shape[0]
    return line_search(
        model, shared, method, n_rows, max_iterations, max_epochs=1, eval_every=1.0, **settings
    )


def autoencoder_run(model, train_x, valid_x, batch_size, line_searches=3, budget_passes=None, **loop):
    autoencoder = DeepAutoencoder(model)
    step = autoencoder_line_search(autoencoder, train_x, "cg", batch_size, line_searches, chunk_rows=400)
    monitor = autoencoder_monitor(autoencoder, train_x, valid_x, PassBudget(0.5, budget_passes), 400)
    return finetune(model, step, monitor, **loop)


def tiny_model(seed, n_ins=5, layers=(4, 3), n_outs=3):
    model = SdA(
        np.random.RandomState(seed),
        n_ins=n_ins,
        hidden_layers_sizes=layers,
        n_outs=n_outs,
        corruption_levels=(0.1,) * len(layers),
    )
    rng = np.random.default_rng(seed)
    for p in model.named_params().values():  # the softmax layer and biases start at zero
        p.set_value(p.get_value() + rng.normal(scale=0.3, size=p.get_value().shape).astype(p.dtype))
    return model


def central_differences(objective, vector, eps=1e-6):
    grad = np.empty_like(vector)
    for i in range(vector.size):
        step = np.zeros_like(vector)
        step[i] = eps
        grad[i] = (objective.evaluate(vector + step)[0] - objective.evaluate(vector - step)[0]) / (2 * eps)
    return grad


@pytest.mark.floats
def test_flat_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    with pytensor.config.change_flags(floatX="float64"):
        model = tiny_model(1)
        x = pytensor.shared(rng.random((7, 5)))
        y = pytensor.shared(np.array([0, 1, 2, 2, 1, 0, 1], dtype="int32"))
        # Chunks of 3, 3 and 1 rows: the weighting by rows must give the plain mean.
        objective = FlatObjective(model.finetune_cost, model.params, [model.x, model.y], [x, y], chunk_rows=3)
        whole = pytensor.function([], model.finetune_cost, givens={model.x: x, model.y: y})()
    vector = objective.flat.pack()
    cost, grad = objective.evaluate(vector)
    # float64 throughout: chunked and whole sums differ by a few 2.2e-16 roundings.
    assert cost == pytest.approx(float(whole), rel=1e-12)
    assert grad.dtype == np.float64 and grad.shape == vector.shape
    # Central differences (eps 1e-6) err by O(eps^2) + 2.2e-16 * |f| / eps ~ 1e-10 (seen 7e-11),
    # hence the atol; a wrong gradient term is off by order 1.
    np.testing.assert_allclose(grad, central_differences(objective, vector), rtol=1e-5, atol=1e-8)


def numpy_deep_autoencoder_cost(x, W0, b0, W1, b1, c1, c0):
    def sigmoid(a):
        return 1 / (1 + np.exp(-a))

    z = sigmoid(sigmoid(sigmoid(sigmoid(x @ W0 + b0) @ W1 + b1) @ W1.T + c1) @ W0.T + c0)
    return np.mean(-np.sum(x * np.log(z) + (1 - x) * np.log(1 - z), axis=1))


@pytest.mark.floats
def test_deep_autoencoder_is_the_unrolled_stack_and_its_gradient_is_right():
    rng = np.random.default_rng(2)
    with pytensor.config.change_flags(floatX="float64"):
        model = tiny_model(3, n_ins=6, layers=(4, 3))
        autoencoder = DeepAutoencoder(model)
        data = rng.random((5, 6))
        x = pytensor.shared(data)
        objective = FlatObjective(autoencoder.cost, autoencoder.params, [autoencoder.x], [x], chunk_rows=2)
    names = [p.name for p in autoencoder.params]
    assert names == ["W", "b", "W", "b", "bvis", "bvis"]  # tied: no decoder matrices
    assert autoencoder.params[-1] is model.dA_layers[0].b_prime
    vector = objective.flat.pack()
    cost, grad = objective.evaluate(vector)
    values = [p.get_value() for p in autoencoder.params]
    # float64 graph vs float64 NumPy: a few roundings of 2.2e-16 apart; gradient as above.
    assert cost == pytest.approx(numpy_deep_autoencoder_cost(data, *values), rel=1e-10)
    np.testing.assert_allclose(grad, central_differences(objective, vector), rtol=1e-5, atol=1e-8)


def test_pack_then_unpack_is_the_identity_on_the_models_own_variables():
    model = tiny_model(4, n_ins=8, layers=(6, 5), n_outs=4)
    flat = FlatParams(model.params)
    first_layer = model.sigmoid_layers[0]
    assert flat.params[0] is first_layer.W and flat.params[1] is first_layer.b
    before = [p.get_value() for p in model.params]
    vector = flat.pack()
    assert vector.dtype == np.float64 and vector.size == sum(v.size for v in before)
    flat.unpack(vector)
    np.testing.assert_array_equal(flat.pack(), vector)
    for p, value in zip(model.params, before):
        assert p.get_value().dtype == np.float32
        np.testing.assert_array_equal(p.get_value(), value)

    # A function compiled beforehand, as SGD's are, sees the unpacked values.
    hidden = pytensor.function([model.x], first_layer.output)
    inputs = np.ones((2, 8), dtype="float32")
    old_output = hidden(inputs)
    vector[: before[0].size] += 1.0
    flat.unpack(vector)
    # Both round the exact sum w + 1 to float32 once, so they are equal; rtol 1e-6 is 8 ulps.
    np.testing.assert_allclose(first_layer.W.get_value(), before[0] + 1, rtol=1e-6)
    assert not np.allclose(hidden(inputs), old_output)
    with pytest.raises(ValueError, match="vector of"):
        flat.unpack(vector[:-1])


@pytest.mark.floats
@pytest.mark.parametrize("method", ["cg", "lbfgs"])
def test_batch_finetuning_learns_mnist(mnist_small, method):
    model = SdA(
        np.random.RandomState(5), n_ins=784, hidden_layers_sizes=(64,), n_outs=10, corruption_levels=(0.1,)
    )
    shared = shared_splits(mnist_small)
    valid_score = model.error_scorer(*shared[1], 500)
    assert valid_score.error() > 0.85  # the zero softmax layer predicts class 0 everywhere
    records = []
    result = full_batch(model, shared, method, 15, patience=15, chunk_rows=400, on_record=records.append)
    costs = [r.cost for r in result.history]
    assert records == result.history and result.iterations == 15
    assert [r.updates for r in records[:16]] == list(range(16))  # the start, then every iterate
    assert costs[-1] < 0.3 * np.log(10)  # the cost starts at log(10) = 2.30
    assert result.best_valid_error < 0.25 and result.test_error < 0.3  # ~17 % when working
    # The best parameters are the ones left in the model. Same scorer, same parameters:
    # identical on one machine; one row moves the error by far more than 1e-6.
    assert valid_score.error() == pytest.approx(result.best_valid_error, abs=1e-6)
    assert result.passes >= result.iterations
    assert result.stop_reason == "max_epochs" and result.seconds > 0
    assert [r.passes for r in records] == sorted(r.passes for r in records)


def test_runs_stop_on_patience_and_on_the_pass_budget(mnist_small):
    data = mnist_small.subset(n_train=300, n_valid=1, n_test=100)
    model = SdA(
        np.random.RandomState(6), n_ins=784, hidden_layers_sizes=(16,), n_outs=10, corruption_levels=(0.1,)
    )
    # One validation row: its error is 0 or 1, so it soon stops improving.
    result = full_batch(model, shared_splits(data), "cg", 100, patience=3)
    assert result.stop_reason == "patience"
    assert result.iterations == result.best_epoch + 3
    result = full_batch(model, shared_splits(data), "lbfgs", 100, budget_passes=4)
    assert result.stop_reason == "budget" and 4 <= result.passes <= 8


@pytest.mark.floats
def test_batch_finetuning_with_weight_decay_minimises_the_penalised_cost(mnist_small):
    data = mnist_small.subset(n_train=200, n_valid=100, n_test=1)
    model = SdA(
        np.random.RandomState(6), n_ins=784, hidden_layers_sizes=(16,), n_outs=10, corruption_levels=(0.1,)
    )
    cost = model.finetune_cost
    shared = shared_splits(data)
    result = full_batch(model, shared, "lbfgs", 1, weight_decay=0.5)
    assert model.finetune_cost is cost  # the penalty lives in the objective, not in the model
    # The zero softmax layer predicts one class; the first step improves on it, so the
    # model holds the first iterate (evaluation 1), whose recorded cost must include the penalty.
    assert result.best_epoch == 1
    (train_x, train_y), _, _ = shared
    mean_nll = pytensor.function([], cost, givens={model.x: train_x, model.y: train_y})()
    penalty = 0.25 * sum(
        float(np.sum(p.get_value().astype(np.float64) ** 2)) for p in model.params if p.ndim == 2
    )
    assert penalty > 1e-3 * float(mean_nll)  # large enough for the check below to see it
    # One float32 graph over all 200 rows vs the monitor's float64 sum of float32 chunks:
    # a few float32 ulps (1.2e-7) of a cost near log(10).
    assert result.history[1].cost == pytest.approx(float(mean_nll) + penalty, rel=1e-5)


@pytest.mark.floats
def test_deep_autoencoder_finetuning_lowers_the_reconstruction_error(mnist_small):
    model = SdA(
        np.random.RandomState(7),
        n_ins=784,
        hidden_layers_sizes=(64, 32),
        n_outs=10,
        corruption_levels=(0.1, 0.2),
    )
    (train_x, _), (valid_x, _), _ = shared_splits(mnist_small)
    pretrain(model, train_x, batch_size=20, epochs=1, learning_rate=0.05)
    encoder_before = model.sigmoid_layers[0].W.get_value()
    n_rows = train_x.get_value(borrow=True).shape[0]
    result = autoencoder_run(model, train_x, valid_x, n_rows, line_searches=10, max_epochs=1)
    assert result.best_valid_error < 0.9 * result.history[0].valid_error
    assert result.iterations == 10 and result.passes >= 10
    # The unrolled network shares the SdA's encoders, which now hold the best iterate.
    assert not np.allclose(model.sigmoid_layers[0].W.get_value(), encoder_before)
    error = DeepAutoencoder(model).error_function(valid_x)()
    # Another compilation and chunking of the same float32 graph: other GEMM blockings round
    # each row's sum of non-negative terms differently, by a few ulps (1e-6 relative).
    assert error == pytest.approx(result.best_valid_error, rel=1e-5)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(method="sgd"), "method must be one of 'cg', 'lbfgs', got 'sgd'"),
        (dict(max_iterations=0), "line_searches must be at least 1, got 0"),
        (dict(budget_passes=-1), "budget_passes must be more than 0, got -1"),
        (dict(patience=0), "patience must be at least 1, got 0"),
        (dict(chunk_rows=2.5), "chunk_rows must be a whole number at least 1, got 2.5 (float)"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    model = tiny_model(8)
    data = [(pytensor.shared(np.zeros((4, 5), "float32")), pytensor.shared(np.zeros(4, "int32")))] * 3
    settings = {"method": "cg", "max_iterations": 5, **settings}
    with pytest.raises((SettingError, SettingTypeError), match=re.escape(message)):
        full_batch(model, data, settings.pop("method"), settings.pop("max_iterations"), **settings)
    with pytest.raises(ValueError, match="no parameters"):
        FlatParams([])


# ------------------------------------------------------ mini-batch CG and L-BFGS
@pytest.mark.floats
def test_objective_on_some_rows_with_weight_decay_is_sgds_objective():
    """The flat objective on chosen rows, with weight decay, has the right
    gradient, and one SGD step with the same decay moves along it."""
    rng = np.random.default_rng(9)
    # powers of two: sgd_updates casts the decay to float32, which must not round it
    rows, decay, rate = np.array([0, 2, 5]), 0.125, 0.0625
    with pytensor.config.change_flags(floatX="float64"):
        model = tiny_model(10)
        x = pytensor.shared(rng.random((7, 5)))
        y = pytensor.shared(np.array([0, 1, 2, 2, 1, 0, 1], dtype="int32"))
        objective = FlatObjective(
            model.finetune_cost, model.params, [model.x, model.y], [x, y], chunk_rows=2, weight_decay=decay
        )
        objective.use_rows(rows)
        on_rows = pytensor.function([], model.finetune_cost, givens={model.x: x[rows], model.y: y[rows]})
        updates, _ = sgd_updates(model.finetune_cost, model.params, rate, weight_decay=decay)
        sgd_step = pytensor.function([], [], updates=updates, givens={model.x: x[rows], model.y: y[rows]})
    vector = objective.flat.pack()
    cost, grad = objective.evaluate(vector)
    penalty = 0.5 * decay * sum(np.sum(p.get_value() ** 2) for p in model.params if p.ndim == 2)
    assert cost == pytest.approx(float(on_rows()) + penalty, rel=1e-12)  # float64 throughout
    assert objective.examples == 3 and objective.passes == pytest.approx(3 / 7)
    objective.evaluate(vector)  # the same point again is remembered, not recounted
    assert objective.examples == 3
    np.testing.assert_allclose(grad, central_differences(objective, vector), rtol=1e-5, atol=1e-8)
    objective.move_to(vector)  # the finite differences left the model elsewhere
    sgd_step()
    # float64 throughout: the two computations differ only in summation order
    np.testing.assert_allclose(objective.flat.pack(), vector - rate * grad, rtol=1e-12, atol=1e-14)


@pytest.mark.floats
def test_objective_with_input_dropout_is_the_cost_on_masked_pixels():
    """One batch's mask stays put through every evaluation, so CG's line
    searches see one function whose gradient is right; another batch's
    seed draws another mask."""
    rng = np.random.default_rng(13)
    rows = np.array([1, 2, 4, 6])
    with pytensor.config.change_flags(floatX="float64"):
        model = tiny_model(14)
        x = pytensor.shared(rng.random((7, 5)))
        y = pytensor.shared(np.array([0, 1, 2, 2, 1, 0, 1], dtype="int32"))
        objective = FlatObjective(
            model.finetune_cost, model.params, [model.x, model.y], [x, y], chunk_rows=3, input_dropout=0.5
        )  # chunks of 3 and 1 rows
        mask = dropout_mask(np.random.default_rng((5, 0, 1)), (4, 5), 0.5)
        masked = x.get_value()[rows] * mask
        on_masked = pytensor.function(
            [], model.finetune_cost, givens={model.x: pytensor.shared(masked), model.y: y[rows]}
        )
    assert set(np.unique(mask)) == {0.0, 2.0}
    objective.use_rows(rows, mask_seed=(5, 0, 1))
    vector = objective.flat.pack()
    cost, grad = objective.evaluate(vector)
    assert cost == pytest.approx(float(on_masked()), rel=1e-12)  # float64 throughout
    np.testing.assert_allclose(grad, central_differences(objective, vector), rtol=1e-5, atol=1e-8)
    objective.use_rows(rows, mask_seed=(5, 0, 2))
    assert objective.evaluate(vector)[0] != cost
    objective.use_rows(rows, mask_seed=(5, 0, 1))
    assert objective.evaluate(vector)[0] == cost
    with pytest.raises(ValueError, match="pass use_rows a mask_seed"):
        objective.use_rows(rows)
    unmasked = FlatObjective(model.finetune_cost, model.params, [model.x, model.y], [x, y], input_dropout=0.5)
    with pytest.raises(ValueError, match=r"call use_rows\(rows, mask_seed\) before evaluating"):
        unmasked.evaluate(vector)
    with pytest.raises(SettingError, match=r"input_dropout must be in \[0, 1\), got 1.0"):
        FlatObjective(model.finetune_cost, model.params, [model.x, model.y], [x, y], input_dropout=1.0)


def test_objective_refuses_non_finite_points_naming_where():
    model = tiny_model(11)
    x = pytensor.shared(np.zeros((4, 5), "float32"))
    y = pytensor.shared(np.zeros(4, "int32"))
    objective = FlatObjective(
        model.finetune_cost, model.params, [model.x, model.y], [x, y], phase="L-BFGS fine-tuning"
    )
    objective.where = {"epoch": 2, "step": 5}
    vector = objective.flat.pack()
    vector[3] = np.nan
    with pytest.raises(
        TrainingDiverged, match="L-BFGS fine-tuning diverged at epoch 2, step 5: the parameter vector is nan"
    ):
        objective.evaluate(vector)
    assert objective.examples == 0


@pytest.fixture(scope="module")
def pretrained_small(mnist_small, tmp_path_factory):
    """A 784-32-10 SdA pre-trained for one epoch on 1,000 rows, saved once."""
    model = SdA(
        np.random.RandomState(12), n_ins=784, hidden_layers_sizes=(32,), n_outs=10, corruption_levels=(0.1,)
    )
    shared = shared_splits(mnist_small)
    pretrain(model, shared[0][0], batch_size=20, epochs=1, learning_rate=0.05)
    path = tmp_path_factory.mktemp("pretrained") / "pretrained.npz"
    save_params(model, path)
    return model, shared, path


def without_seconds(history):
    return [dataclasses.replace(record, seconds=0.0) for record in history]


def test_warm_up_moves_the_softmax_layer_alone(pretrained_small):
    model, shared, path = pretrained_small
    load_params(model, path)
    hidden_before = [p.get_value() for p in model.sigmoid_layers[0].params]
    result = line_search(model, shared, "cg", batch_size=250, line_searches=2, warmup_epochs=1, max_epochs=1)
    assert result.stop_reason == "max_epochs" and result.epochs_run == 1
    for p, before in zip(model.sigmoid_layers[0].params, hidden_before):
        np.testing.assert_array_equal(p.get_value(), before)
    assert np.abs(model.logLayer.W.get_value()).max() > 0  # it started at zero
    assert result.best_valid_error < 0.5
    # four batches of 250 rows, each at least one evaluation per accepted line search
    assert 0 < result.iterations <= 8 and result.passes >= result.iterations / 4


def test_budget_evaluation_points_and_seeds(pretrained_small):
    model, shared, path = pretrained_small

    def run(seed, method="cg"):
        load_params(model, path)
        return line_search(
            model, shared, method, batch_size=250, line_searches=3, budget_passes=2, seed=seed, eval_every=0.5
        )

    first = run(1)
    history = first.history
    assert first.stop_reason == "budget"
    # A zero softmax layer gives exactly log(10) per row, up to the float32 rounding of
    # log-softmax (a few ulps, 1.2e-7 each); rows are averaged in float64.
    assert history[0].passes == 0 and history[0].cost == pytest.approx(np.log(10), rel=1e-6)
    assert history[-1].passes == first.passes
    # The budget is checked after each iteration: at most one line search too many,
    # and a line search here takes few evaluations of 250 rows (a quarter pass each).
    assert 2 <= first.passes <= 2 + 20 * 0.25
    passes = [r.passes for r in history]
    assert passes == sorted(set(passes))
    for point in (0.5, 1.0, 1.5, 2.0):  # each point is measured at the first update past it
        assert any(point <= p < point + 0.25 * 20 for p in passes)
    assert [r.updates for r in history] == sorted(r.updates for r in history)
    assert without_seconds(run(1).history) == without_seconds(history)  # same seed, same numbers
    assert [r.valid_error for r in run(2).history] != [r.valid_error for r in history]
    lbfgs = run(1, "lbfgs")
    assert lbfgs.stop_reason == "budget" and lbfgs.best_valid_error < 0.6


@pytest.mark.floats
@pytest.mark.parametrize("input_dropout", [0.0, 0.2])
def test_a_killed_run_resumes_exactly(pretrained_small, tmp_path, input_dropout):
    """Stop a run mid-epoch by raising from its callback; resuming from the
    checkpoint of the last finished batch must give the uninterrupted run
    (with input dropout, the same masks too)."""
    model, shared, path = pretrained_small
    settings = dict(
        method="cg",
        batch_size=250,
        line_searches=2,
        warmup_epochs=1,
        budget_passes=8,
        seed=3,
        eval_every=0.5,
        input_dropout=input_dropout,
    )
    load_params(model, path)
    whole = line_search(model, shared, **settings)
    expected = [p.get_value() for p in model.params]

    class Killed(Exception):
        pass

    seen = []

    def kill_late(record):
        """Kill in the second epoch (past the warm-up) once a batch of it is done:
        a batch has at most 2 updates."""
        if record.data_epoch == 2:
            seen.append(record.updates)
            if record.updates > seen[0] + 2:
                raise Killed

    load_params(model, path)
    checkpoint_path = tmp_path / "checkpoint.npz"
    with pytest.raises(Killed):
        line_search(
            model, shared, **settings, on_record=kill_late, checkpoint=Checkpoint(checkpoint_path, model)
        )
    fresh = SdA(
        np.random.RandomState(99), n_ins=784, hidden_layers_sizes=(32,), n_outs=10, corruption_levels=(0.1,)
    )
    checkpoint = Checkpoint(checkpoint_path, fresh)
    progress = checkpoint.load()
    assert progress.phase == "finetune" and progress.epoch == 1 and progress.batch > 0
    resumed = line_search(fresh, shared, **settings, progress=progress, checkpoint=checkpoint)
    # Same compiled graphs, same inputs, one machine: bit for bit.
    for p, value in zip(fresh.params, expected):
        np.testing.assert_array_equal(p.get_value(), value)
    assert without_seconds(resumed.history) == without_seconds(whole.history)
    assert (resumed.passes, resumed.iterations) == (whole.passes, whole.iterations)
    assert Checkpoint(checkpoint_path, fresh).load().phase == "done"


def test_input_dropout_changes_the_path_but_not_what_is_measured(pretrained_small):
    model, shared, path = pretrained_small

    def run(input_dropout):
        load_params(model, path)
        return line_search(
            model,
            shared,
            "cg",
            batch_size=250,
            line_searches=3,
            budget_passes=2,
            seed=4,
            input_dropout=input_dropout,
        ).history

    clean, dropped = run(0.0), run(0.3)
    # the evaluator measures on clean pixels: both start from one measurement
    assert without_seconds(dropped[:1]) == without_seconds(clean[:1])
    assert dropped[-1].train_loss != clean[-1].train_loss
    assert without_seconds(run(0.3)) == without_seconds(dropped)  # same seed, same masks


def test_every_batch_of_every_epoch_draws_its_own_mask(pretrained_small, monkeypatch):
    model, shared, path = pretrained_small
    seeds = []
    use_rows = FlatObjective.use_rows

    def recording(self, rows, mask_seed=None):
        seeds.append(mask_seed)
        return use_rows(self, rows, mask_seed)

    monkeypatch.setattr(FlatObjective, "use_rows", recording)
    load_params(model, path)
    line_search(
        model,
        shared,
        "cg",
        batch_size=250,
        line_searches=1,
        warmup_epochs=1,
        max_epochs=2,
        seed=7,
        input_dropout=0.2,
    )
    # 1,000 rows in batches of 250, a warm-up epoch then one of the whole network
    assert seeds == [(7, epoch, batch) for epoch in range(2) for batch in range(4)]


def test_minibatch_cg_beats_full_batch_cg_at_the_same_budget(shared_data):
    """Hinton & Salakhutdinov's point, on a small problem. Robust because at 6
    pass-equivalents full-batch CG has made only a couple of line searches
    (each costs 2-3 passes, and the first only moves the zero softmax layer),
    while 200-row batches make about ten times as many, and on redundant data
    like MNIST a 200-row gradient points almost as well as the full one
    (measured over two model and two shuffling seeds: training loss 0.35-0.41
    against 1.04-1.06, validation error 15-18 % against 27-28 %)."""
    data = load_dataset("mnist", shared_data).subset(n_train=2000, n_valid=500, n_test=500)
    shared = shared_splits(data)
    model = SdA(
        np.random.RandomState(13), n_ins=784, hidden_layers_sizes=(100,), n_outs=10, corruption_levels=(0.1,)
    )
    pretrain(model, shared[0][0], batch_size=20, epochs=1, learning_rate=0.05)
    start = [p.get_value() for p in model.params]
    results = {}
    for name, batch_size, line_searches in [("mini-batch", 200, 3), ("full batch", 2000, 10_000)]:
        for p, value in zip(model.params, start):
            p.set_value(value)
        results[name] = line_search(
            model, shared, "cg", batch_size=batch_size, line_searches=line_searches, budget_passes=6, seed=4
        )
    mini, full = results["mini-batch"], results["full batch"]
    assert mini.iterations > 3 * full.iterations
    assert mini.history[-1].train_loss < 0.8 * full.history[-1].train_loss
    assert mini.best_valid_error < full.best_valid_error


@pytest.mark.floats
def test_minibatch_autoencoder_lowers_both_reconstruction_errors(pretrained_small):
    model, shared, path = pretrained_small
    load_params(model, path)
    (train_x, _), (valid_x, _), _ = shared
    autoencoder = DeepAutoencoder(model)
    squared = autoencoder.error_function(valid_x, squared=True)
    before = squared()
    data = valid_x.get_value()
    reconstruction = pytensor.function([model.x], autoencoder.reconstruction)(data)
    # Two compilations of the same float32 reconstruction (chunks vs the whole split, so other
    # GEMM blockings): 1e-6-relative differences in z, squared errors of non-negative terms.
    # 1e-4 is generous yet far below what a wrong reconstruction would give.
    assert before == pytest.approx(np.mean(np.sum((data - reconstruction) ** 2, axis=1)), rel=1e-4)
    result = autoencoder_run(model, train_x, valid_x, batch_size=250, budget_passes=2)
    assert result.best_valid_error < 0.95 * result.history[0].valid_error
    assert squared() < before


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(method="sgd"), "method must be one of 'cg', 'lbfgs', got 'sgd'"),
        (dict(batch_size=5), "batch_size 5 is larger than the 4 training rows"),
        (dict(line_searches=0), "line_searches must be at least 1, got 0"),
        (dict(warmup_epochs=-1), "warmup_epochs must be at least 0, got -1"),
        (dict(budget_passes=0), "budget_passes must be more than 0, got 0"),
        (dict(eval_every=0.0), "eval_every must be more than 0, got 0.0"),
        (dict(weight_decay=-1.0), "weight_decay must be at least 0, got -1.0"),
    ],
)
def test_bad_minibatch_settings_are_refused(settings, message):
    model = tiny_model(14)
    data = [(pytensor.shared(np.zeros((4, 5), "float32")), pytensor.shared(np.zeros(4, "int32")))] * 3
    with pytest.raises(SettingError, match=message):
        line_search(model, data, **{"batch_size": 2, **settings})
