"""Training tests on a real MNIST subset from ../shared/data."""

import numpy as np
import pytensor
import pytest

from sda import SdA
from sda.data import load_dataset, shared_dataset
from sda.SdA import n_batches
from sda.train import EarlyStopping, cache_layer_input, finetune_sgd, pretrain, split_error


@pytest.fixture(scope="module")
def mnist_small(shared_data):
    return load_dataset("mnist", shared_data).subset(n_train=3000, n_valid=1000, n_test=2000)


def small_model(seed=1234, layers=(200, 100)):
    return SdA(np.random.RandomState(seed), n_ins=784, hidden_layers_sizes=layers, n_outs=10,
               corruption_levels=(0.1, 0.2, 0.3)[: len(layers)])


def test_pretraining_lowers_reconstruction_cost(mnist_small):
    model = small_model()
    train_x, _ = shared_dataset(mnist_small.train)
    history = pretrain(model, train_x, batch_size=20, epochs=4, learning_rate=0.05)
    assert len(history) == 2 and all(len(costs) == 4 for costs in history)
    for costs in history:
        assert costs[-1] < 0.95 * costs[0]


def test_cached_and_uncached_pretraining_give_the_same_parameters(mnist_small):
    train_x, _ = shared_dataset(mnist_small.subset(n_train=400).train)
    results = []
    for cached in (False, True):
        model = small_model(seed=7, layers=(60, 50, 40))
        pretrain(model, train_x, batch_size=10, epochs=2, learning_rate=0.05, cached=cached)
        results.append([p.get_value() for p in model.named_params().values()])
    for uncached, cached in zip(*results):
        np.testing.assert_allclose(cached, uncached, rtol=2e-4, atol=2e-5)
    assert not np.allclose(results[0][0], small_model(seed=7, layers=(60, 50, 40)).params[0].get_value())


def test_finetuning_reaches_a_low_test_error(mnist_small):
    model = small_model()
    shared = [shared_dataset(s) for s in (mnist_small.train, mnist_small.valid, mnist_small.test)]
    pretrain(model, shared[0][0], batch_size=20, epochs=3, learning_rate=0.05)
    train_fn, valid_score, test_score = model.build_finetune_functions(shared, 20, 0.5, 500)
    # Before fine-tuning the zero softmax layer predicts class 0 for every row.
    assert split_error(test_score) > 0.85
    result = finetune_sgd(model, train_fn, valid_score, test_score, n_batches(3000, 20),
                          max_epochs=15)
    # About 10.5 % when working; a model whose gradients or parameter
    # sharing are broken stays far above this.
    assert result.test_error < 0.13
    assert result.best_valid_error < 0.13
    # The best-validation parameters are the ones left in the model.
    assert split_error(valid_score) == pytest.approx(result.best_valid_error, abs=1e-6)


def test_early_stopping_stops_when_patience_runs_out(mnist_small):
    data = mnist_small.subset(n_train=200, n_valid=200, n_test=200)
    model = small_model(layers=(20,))
    shared = [shared_dataset(s) for s in (data.train, data.valid, data.test)]
    train_fn, valid_score, test_score = model.build_finetune_functions(shared, 20, 0.1)
    result = finetune_sgd(model, train_fn, valid_score, test_score, n_train_batches=10,
                          max_epochs=500, stopping=EarlyStopping(patience=30, patience_increase=1.0))
    assert result.epochs_run == 3 and result.iterations == 30


def test_early_stopping_rejects_nonsense():
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=0)
    with pytest.raises(ValueError, match="improvement_threshold"):
        EarlyStopping(improvement_threshold=1.5)


def test_cache_holds_the_frozen_layers_output(mnist_small):
    model = small_model()
    train_x, _ = shared_dataset(mnist_small.subset(n_train=700).train)
    cached = cache_layer_input(model, 1, train_x, chunk_rows=300)  # three uneven chunks
    direct = pytensor.function([model.x], model.sigmoid_layers[0].output)(mnist_small.train.x[:700])
    assert cached.dtype == np.float32 and cached.shape == (700, 200)
    np.testing.assert_allclose(cached, direct, rtol=1e-6)
