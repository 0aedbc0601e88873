"""Batch fine-tuning: the flat vector, its gradient, and CG / L-BFGS on real MNIST rows."""

import numpy as np
import pytensor
import pytest

from sda import SdA
from sda.data import load_dataset, shared_dataset
from sda.optimize import DeepAutoencoder, FlatObjective, FlatParams, finetune_autoencoder, finetune_batch
from sda.train import pretrain, split_error


@pytest.fixture(scope="module")
def mnist_small(shared_data):
    return load_dataset("mnist", shared_data).subset(n_train=1000, n_valid=500, n_test=500)


def shared_splits(dataset):
    return [shared_dataset(s) for s in (dataset.train, dataset.valid, dataset.test)]


def tiny_model(seed, n_ins=5, layers=(4, 3), n_outs=3):
    model = SdA(np.random.RandomState(seed), n_ins=n_ins, hidden_layers_sizes=layers,
                n_outs=n_outs, corruption_levels=(0.1,) * len(layers))
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


def test_flat_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    with pytensor.config.change_flags(floatX="float64"):
        model = tiny_model(1)
        x = pytensor.shared(rng.random((7, 5)))
        y = pytensor.shared(np.array([0, 1, 2, 2, 1, 0, 1], dtype="int32"))
        # Chunks of 3, 3 and 1 rows: the weighting by rows must give the plain mean.
        objective = FlatObjective(model.finetune_cost, model.params, [model.x, model.y], [x, y],
                                  chunk_rows=3)
        whole = pytensor.function([], model.finetune_cost, givens={model.x: x, model.y: y})()
    vector = objective.flat.pack()
    cost, grad = objective.evaluate(vector)
    assert cost == pytest.approx(float(whole), rel=1e-12)
    assert grad.dtype == np.float64 and grad.shape == vector.shape
    np.testing.assert_allclose(grad, central_differences(objective, vector), rtol=1e-5, atol=1e-8)


def numpy_deep_autoencoder_cost(x, W0, b0, W1, b1, c1, c0):
    def sigmoid(a):
        return 1 / (1 + np.exp(-a))

    z = sigmoid(sigmoid(sigmoid(sigmoid(x @ W0 + b0) @ W1 + b1) @ W1.T + c1) @ W0.T + c0)
    return np.mean(-np.sum(x * np.log(z) + (1 - x) * np.log(1 - z), axis=1))


def test_deep_autoencoder_is_the_unrolled_stack_and_its_gradient_is_right():
    rng = np.random.default_rng(2)
    with pytensor.config.change_flags(floatX="float64"):
        model = tiny_model(3, n_ins=6, layers=(4, 3))
        autoencoder = DeepAutoencoder(model)
        data = rng.random((5, 6))
        x = pytensor.shared(data)
        objective = FlatObjective(autoencoder.cost, autoencoder.params, [autoencoder.x], [x],
                                  chunk_rows=2)
    names = [p.name for p in autoencoder.params]
    assert names == ["W", "b", "W", "b", "bvis", "bvis"]  # tied: no decoder matrices
    assert autoencoder.params[-1] is model.dA_layers[0].b_prime
    vector = objective.flat.pack()
    cost, grad = objective.evaluate(vector)
    values = [p.get_value() for p in autoencoder.params]
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
    np.testing.assert_allclose(first_layer.W.get_value(), before[0] + 1, rtol=1e-6)
    assert not np.allclose(hidden(inputs), old_output)
    with pytest.raises(ValueError, match="vector of"):
        flat.unpack(vector[:-1])


@pytest.mark.parametrize("method", ["cg", "lbfgs"])
def test_batch_finetuning_learns_mnist(mnist_small, method):
    model = SdA(np.random.RandomState(5), n_ins=784, hidden_layers_sizes=(64,), n_outs=10,
                corruption_levels=(0.1,))
    shared = shared_splits(mnist_small)
    valid_score = model.error_scorer(*shared[1], 500)
    assert split_error(valid_score) > 0.85  # the zero softmax layer predicts class 0 everywhere
    records = []
    result = finetune_batch(model, shared, method, max_iterations=15, patience=15,
                            chunk_rows=400, on_iteration=records.append)
    costs = [r["cost"] for r in result.history]
    assert records == result.history and len(costs) == result.iterations == 15
    assert costs[-1] < 0.3 * np.log(10)  # the cost starts at log(10) = 2.30
    assert result.best_valid_error < 0.25 and result.test_error < 0.3  # ~17 % when working
    # The best parameters are the ones left in the model.
    assert split_error(valid_score) == pytest.approx(result.best_valid_error, abs=1e-6)
    assert result.passes >= result.iterations and result.fun_evals >= result.iterations
    assert result.stop_reason == "max_iterations" and result.seconds > 0
    assert [r["passes"] for r in records] == sorted(r["passes"] for r in records)


def test_runs_stop_on_patience_and_on_the_pass_budget(mnist_small):
    data = mnist_small.subset(n_train=300, n_valid=1, n_test=100)
    model = SdA(np.random.RandomState(6), n_ins=784, hidden_layers_sizes=(16,), n_outs=10,
                corruption_levels=(0.1,))
    # One validation row: its error is 0 or 1, so it soon stops improving.
    result = finetune_batch(model, shared_splits(data), "cg", max_iterations=100, patience=3)
    assert result.stop_reason == "patience"
    assert result.iterations == result.best_epoch + 3
    result = finetune_batch(model, shared_splits(data), "lbfgs", max_iterations=100, max_passes=4,
                            patience=None)
    assert result.stop_reason == "max_passes" and 4 <= result.passes <= 8


def test_deep_autoencoder_finetuning_lowers_the_reconstruction_error(mnist_small):
    model = SdA(np.random.RandomState(7), n_ins=784, hidden_layers_sizes=(64, 32), n_outs=10,
                corruption_levels=(0.1, 0.2))
    (train_x, _), (valid_x, _), _ = shared_splits(mnist_small)
    pretrain(model, train_x, batch_size=20, epochs=1, learning_rate=0.05)
    encoder_before = model.sigmoid_layers[0].W.get_value()
    result = finetune_autoencoder(model, train_x, valid_x, max_iterations=10, chunk_rows=400)
    assert result.valid_error_after < 0.9 * result.valid_error_before
    assert result.iterations == 10 and result.passes >= 10
    # The unrolled network shares the SdA's encoders, which now hold the best iterate.
    assert not np.allclose(model.sigmoid_layers[0].W.get_value(), encoder_before)
    error = DeepAutoencoder(model).error_function(valid_x)()
    assert error == pytest.approx(result.valid_error_after, rel=1e-5)


@pytest.mark.parametrize("settings, message", [
    (dict(method="sgd"), "unknown method 'sgd'"),
    (dict(max_iterations=0), "max_iterations must be a positive integer"),
    (dict(max_passes=-1), "max_passes must be a positive integer, or None"),
    (dict(patience=0), "patience must be a positive integer, or None"),
    (dict(chunk_rows=2.5), "chunk_rows must be a positive integer"),
])
def test_bad_settings_are_refused(settings, message):
    model = tiny_model(8)
    data = [(pytensor.shared(np.zeros((4, 5), "float32")), pytensor.shared(np.zeros(4, "int32")))] * 3
    with pytest.raises(ValueError, match=message):
        finetune_batch(model, data, **settings)
    with pytest.raises(ValueError, match="no parameters"):
        FlatParams([])
