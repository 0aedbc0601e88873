"""Training tests on a real MNIST subset from ../shared/data."""

import numpy as np
import pytensor
import pytest

from sda import SdA
from sda.batching import SplitScorer
from sda.checkpoint import Progress
from sda.data import load_dataset, shared_dataset
from sda.errors import SettingError
from sda.finetune import MinibatchSGD, Monitor, PatienceRule, finetune
from sda.sgd import SGDStep
from sda.train import cache_layer_input, pretrain


@pytest.fixture(scope="module")
def mnist_small(shared_data):
    return load_dataset("mnist", shared_data).subset(n_train=3000, n_valid=1000, n_test=2000)


def small_model(seed=1234, layers=(200, 100)):
    return SdA(
        np.random.RandomState(seed),
        n_ins=784,
        hidden_layers_sizes=layers,
        n_outs=10,
        corruption_levels=(0.1, 0.2, 0.3)[: len(layers)],
    )


def test_pretraining_lowers_reconstruction_cost(mnist_small):
    model = small_model()
    train_x, _ = shared_dataset(mnist_small.train)
    history = pretrain(model, train_x, batch_size=20, epochs=4, learning_rate=0.05)
    assert len(history) == 2 and all(len(costs) == 4 for costs in history)
    for costs in history:
        assert costs[-1] < 0.95 * costs[0]


def test_pretraining_zero_epochs_compiles_nothing_and_leaves_the_weights(mnist_small, monkeypatch):
    model = small_model(layers=(20, 10))
    before = [p.get_value() for p in model.params]

    def refuse(*args, **kwargs):
        raise AssertionError("a step was compiled for zero epochs")

    monkeypatch.setattr(model, "pretraining_function", refuse)
    monkeypatch.setattr(model, "layer_input_function", refuse)  # the cached fast path's encoder
    train_x, _ = shared_dataset(mnist_small.train)
    assert pretrain(model, train_x, batch_size=20, epochs=0) == [[], []]
    for value, param in zip(before, model.params):
        np.testing.assert_array_equal(param.get_value(), value)


@pytest.mark.floats
def test_cached_and_uncached_pretraining_give_the_same_parameters(mnist_small):
    train_x, _ = shared_dataset(mnist_small.subset(n_train=400).train)
    results = []
    for cached in (False, True):
        model = small_model(seed=7, layers=(60, 50, 40))
        pretrain(model, train_x, batch_size=10, epochs=2, learning_rate=0.05, cached=cached)
        results.append([p.get_value() for p in model.named_params().values()])
    # The layer inputs come from 400-row chunks in one, from 10-row batches in the other: other
    # GEMM blockings, inputs ~1e-6 apart (see test_cache_holds_the_frozen_layers_output), and 80
    # SGD steps carry that into the weights. Seen: 0 here, 3.6e-7 with MKL_CBWR=COMPATIBLE; the
    # atol covers weights near 0, and a real difference in the two paths is over 1e-3.
    for uncached, cached in zip(*results):
        np.testing.assert_allclose(cached, uncached, rtol=2e-4, atol=2e-5)
    assert not np.allclose(results[0][0], small_model(seed=7, layers=(60, 50, 40)).params[0].get_value())


def finetune_sgd(
    model, train_fn, valid_score, test_score, n_rows=200, max_epochs=1000, rule=None, lr_decay=1.0, **kwargs
):
    """The tutorial's loop: minibatches of 20 rows in data order, under the patience rule."""
    step = MinibatchSGD(train_fn, n_rows, batch_size=20, lr_decay=lr_decay)
    monitor = Monitor(rule or PatienceRule(), model.params, valid_score.error, test_score.error)
    return finetune(model, step, monitor, max_epochs=max_epochs, **kwargs)


@pytest.mark.floats
def test_finetuning_reaches_a_low_test_error(mnist_small):
    model = small_model()
    shared = [shared_dataset(s) for s in (mnist_small.train, mnist_small.valid, mnist_small.test)]
    pretrain(model, shared[0][0], batch_size=20, epochs=3, learning_rate=0.05)
    train_fn, valid_score, test_score = model.build_finetune_functions(shared, 20, 0.5, 500)
    # Before fine-tuning the zero softmax layer predicts class 0 for every row.
    assert test_score.error() > 0.85
    result = finetune_sgd(model, train_fn, valid_score, test_score, n_rows=3000, max_epochs=15)
    # About 10.5 % when working; a model whose gradients or parameter
    # sharing are broken stays far above this.
    assert result.test_error < 0.13
    assert result.best_valid_error < 0.13
    # The best-validation parameters are the ones left in the model.
    # The same compiled scorer on the same parameters: identical on one machine. One row
    # moves the error by 1/3000; 1e-6 only absorbs the float64 averaging over batches.
    assert valid_score.error() == pytest.approx(result.best_valid_error, abs=1e-6)


def test_early_stopping_stops_when_patience_runs_out(mnist_small):
    data = mnist_small.subset(n_train=200, n_valid=200, n_test=200)
    model = small_model(layers=(20,))
    shared = [shared_dataset(s) for s in (data.train, data.valid, data.test)]
    train_fn, valid_score, test_score = model.build_finetune_functions(shared, 20, 0.1)
    result = finetune_sgd(
        model, train_fn, valid_score, test_score, max_epochs=500, rule=PatienceRule(30, patience_increase=1.0)
    )
    assert result.epochs_run == 3 and result.iterations == 30


def test_a_fixed_budget_runs_every_epoch(mnist_small):
    data = mnist_small.subset(n_train=200, n_valid=200, n_test=200)
    model = small_model(layers=(20,))
    shared = [shared_dataset(s) for s in (data.train, data.valid, data.test)]
    # at a rate of almost 0 the validation error never really improves after the first
    # validation, so any patience shorter than the budget would stop the run early
    train_fn, valid_score, test_score = model.build_finetune_functions(shared, 20, 1e-12)
    # a patience of the whole budget (6 epochs of 10 minibatches)
    result = finetune_sgd(model, train_fn, valid_score, test_score, max_epochs=6, rule=PatienceRule(60))
    assert result.epochs_run == 6 and result.iterations == 60


def test_the_learning_rate_decays_every_epoch_from_its_start(mnist_small):
    data = mnist_small.subset(n_train=200, n_valid=200, n_test=200)
    shared = [shared_dataset(s) for s in (data.train, data.valid, data.test)]
    rates, train_steps = [], []

    def finetune(lr_decay):
        model = small_model(layers=(20,))
        train_fn, valid_score, test_score = model.build_finetune_functions(shared, 20, 0.4)
        train_steps.append(train_fn)
        finetune_sgd(
            model,
            train_fn,
            valid_score,
            test_score,
            max_epochs=4,
            rule=PatienceRule(40),
            lr_decay=lr_decay,
            on_record=lambda _: rates.append(float(train_fn.learning_rate.get_value())),
        )
        return [p.get_value() for p in model.params]

    decayed = finetune(0.5)
    assert rates == pytest.approx([0.4, 0.2, 0.1, 0.05], rel=1e-6)  # float32 of each product
    assert float(train_steps[-1].learning_rate.get_value()) == pytest.approx(0.4)  # reset for reuse
    rates.clear()
    constant = finetune(1.0)
    assert rates == pytest.approx([0.4] * 4, rel=1e-6)
    # the same start and batches, smaller steps from the second epoch on
    assert not np.allclose(decayed[0], constant[0])


def test_a_decay_needs_a_shared_learning_rate_and_a_sensible_factor():
    step = SGDStep(lambda index: 0.0)  # no shared learning rate to change
    for lr_decay, message in [
        (0.9, "needs a step compiled with a shared learning rate"),
        (0.0, r"lr_decay must be in \(0, 1\]"),
    ]:
        with pytest.raises(SettingError, match=message):
            MinibatchSGD(step, n_rows=20, batch_size=20, lr_decay=lr_decay)


def test_early_stopping_extends_patience_only_on_a_real_improvement():
    stopping = PatienceRule(patience=100, patience_increase=2.0, improvement_threshold=0.9)
    p = Progress(phase="finetune", epoch=4, iteration=80, patience=100)
    # The first validation always counts as a real improvement over an infinite best.
    assert stopping.update(p, 0.5) is True
    assert (p.valid_error, p.best_valid_error, p.best_epoch, p.patience) == (0.5, 0.5, 5, 160)
    # Better, but not below 0.9 * 0.5: a new best, patience unchanged.
    p.iteration, p.epoch = 200, 9
    assert stopping.update(p, 0.46) is True
    assert (p.best_valid_error, p.best_epoch, p.patience) == (0.46, 10, 160)
    # A real improvement: patience = max(patience, iteration * increase).
    assert stopping.update(p, 0.4) is True
    assert p.patience == 400
    # Worse: recorded as the latest error only.
    p.iteration = 300
    assert stopping.update(p, 0.45) is False
    assert (p.valid_error, p.best_valid_error, p.patience) == (0.45, 0.4, 400)
    # patience never shrinks: iteration * increase below the current patience
    p.iteration = 10
    assert stopping.update(p, 0.1) is True and p.patience == 400


def test_split_scorer_weighs_every_row_once():
    errors = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 1], dtype=float)  # 3 wrong of 10 rows
    scorer = SplitScorer(lambda i: errors[4 * i : 4 * i + 4].mean(), n_rows=10, batch_size=4)
    assert list(scorer.batch_sizes) == [4, 4, 2]
    assert scorer() == [0.5, 0.0, 0.5]
    assert scorer.error() == pytest.approx(0.3)  # the unweighted mean of the batches would be 1/3


def test_sgd_steps_return_their_velocities_and_leave_the_model_alone(mnist_small):
    data = mnist_small.subset(n_train=40, n_valid=20, n_test=20)
    shared = [shared_dataset(s) for s in (data.train, data.valid, data.test)]
    model = small_model(layers=(20,))
    attributes = set(vars(model)) | {name for a in model.dA_layers for name in vars(a)}
    train_fn, _, _ = model.build_finetune_functions(shared, 20, 0.1, momentum=0.9)
    step = model.pretraining_function(0, shared[0][0], 20, momentum=0.9)
    assert isinstance(train_fn, SGDStep) and isinstance(step, SGDStep)
    assert [v.name for v in train_fn.velocities] == [f"{p.name}.velocity" for p in model.params]
    assert [v.name for v in step.velocities] == [f"{p.name}.velocity" for p in model.dA_layers[0].params]
    assert set(vars(model)) | {name for a in model.dA_layers for name in vars(a)} == attributes
    # the softmax bias: the hidden layers' gradients are 0 while the softmax weights are 0
    before = train_fn.velocities[-1].get_value()
    train_fn(0)
    assert not np.array_equal(train_fn.velocities[-1].get_value(), before)
    plain, _, _ = model.build_finetune_functions(shared, 20, 0.1)
    assert plain.velocities == []


def test_early_stopping_rejects_nonsense():
    with pytest.raises(SettingError, match="patience"):
        PatienceRule(patience=0)
    with pytest.raises(SettingError, match="improvement_threshold"):
        PatienceRule(improvement_threshold=1.5)


@pytest.mark.floats
def test_cache_holds_the_frozen_layers_output(mnist_small):
    model = small_model()
    train_x, _ = shared_dataset(mnist_small.subset(n_train=700).train)
    cached = cache_layer_input(model, 1, train_x, chunk_rows=300)  # three uneven chunks
    direct = pytensor.function([model.x], model.sigmoid_layers[0].output)(mnist_small.train.x[:700])
    assert cached.dtype == np.float32 and cached.shape == (700, 200)
    # Each value is sigmoid(z), z a 784-term float32 dot product. The 300-row chunks and the
    # 700-row batch get other GEMM blockings (and other CPUs other kernels), which round z's
    # partial sums differently: a few ulps of |z| <= ~10, about 1e-6, which sigmoid passes on
    # as at most |dz| relative. Seen: 1.5e-6 on an AVX-512 Xeon and with MKL_CBWR=COMPATIBLE.
    # A wrong layer or row would be off by over 1e-2.
    np.testing.assert_allclose(cached, direct, rtol=1e-5)
