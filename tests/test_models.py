"""Graph tests: costs, gradients, noise and parameter sharing on tiny shapes."""

import re

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from sda import SdA, dA
from sda.errors import SettingError
from sda.SdA import check_architecture
from sda.sgd import sgd_updates


def numeric_gradient(f, param, eps=1e-6):
    """Central differences of the scalar ``f()`` with respect to every entry of ``param``."""
    value = param.get_value()
    grad = np.zeros_like(value)
    for i in np.ndindex(value.shape):
        for sign in (1, -1):
            shifted = value.copy()
            shifted[i] += sign * eps
            param.set_value(shifted)
            grad[i] += sign * f() / (2 * eps)
    param.set_value(value)
    return grad


def assert_gradients_match(cost, params, givens):
    """Symbolic gradients of ``cost`` equal finite differences, for every parameter."""
    f = pytensor.function([], cost, givens=givens)
    symbolic = pytensor.function([], pytensor.grad(cost, params), givens=givens)()
    for param, g in zip(params, symbolic):
        # float64 (see the fixture): central differences with eps 1e-6 err by O(eps^2) from
        # truncation plus 2.2e-16 * |f| / eps ~ 1e-10 from rounding (seen: 2e-10), hence the
        # atol; rtol 1e-5 is far below what a wrong gradient term gives (order 1).
        np.testing.assert_allclose(
            g, numeric_gradient(f, param), rtol=1e-5, atol=1e-7, err_msg=f"gradient of {param.name}"
        )


@pytest.fixture
def float64():
    # Finite differences need double precision; the graph is the same.
    with pytensor.config.change_flags(floatX="float64"):
        yield


def test_library_runs_in_float32():
    assert pytensor.config.floatX == "float32"
    model = SdA(
        np.random.RandomState(0), n_ins=6, hidden_layers_sizes=(5, 4), n_outs=3, corruption_levels=(0.1, 0.2)
    )
    x = pytensor.shared(np.random.default_rng(0).random((8, 6), dtype=np.float32))
    y = pytensor.shared(np.arange(8, dtype=np.int32) % 3)
    with pytensor.config.change_flags(warn_float64="raise"):
        fns = model.pretraining_functions(x, batch_size=4)
        train_fn, _, _ = model.build_finetune_functions([(x, y)] * 3, 4, 0.1)
    assert all(p.dtype == "float32" for p in model.params)
    assert np.asarray(fns[1](0, 0.2, 0.1)).dtype == np.float32
    assert np.asarray(train_fn(0)).dtype == np.float32


def test_dA_gradient_matches_finite_differences(float64):
    rng = np.random.RandomState(1)
    x = pt.matrix("x")
    auto_encoder = dA(rng, input=x, n_visible=6, n_hidden=4, tied=True)
    cost, _, _ = auto_encoder.corrupted_cost(0.3)  # no rng update: a fixed mask
    data = rng.uniform(size=(5, 6))
    assert_gradients_match(cost, auto_encoder.params, {x: data})


def test_untied_squared_dA_gradient_matches_finite_differences(float64):
    rng = np.random.RandomState(2)
    x = pt.matrix("x")
    auto_encoder = dA(rng, input=x, n_visible=5, n_hidden=3, tied=False, loss="squared")
    cost, _, _ = auto_encoder.corrupted_cost(0.2)
    assert len(auto_encoder.params) == 4
    assert_gradients_match(cost, auto_encoder.params, {x: rng.uniform(size=(4, 5))})


def test_finetune_gradient_matches_finite_differences(float64):
    rng = np.random.RandomState(3)
    model = SdA(rng, n_ins=5, hidden_layers_sizes=(4, 3), n_outs=3, corruption_levels=(0.1, 0.1))
    for p in model.params:  # the softmax layer starts at zero; move it off
        p.set_value(p.get_value() + rng.normal(scale=0.3, size=p.get_value().shape))
    givens = {model.x: rng.uniform(size=(6, 5)), model.y: np.array([0, 1, 2, 2, 1, 0], "int32")}
    assert_gradients_match(model.finetune_cost, model.params, givens)


def numpy_dA_cost(x, mask, W, bhid, bvis):
    """The textbook formula, computed independently in float64."""

    def sigmoid(a):
        return 1 / (1 + np.exp(-a))

    h = sigmoid((x * mask) @ W + bhid)
    z = sigmoid(h @ W.T + bvis)
    return np.mean(-np.sum(x * np.log(z) + (1 - x) * np.log(1 - z), axis=1))


@pytest.mark.floats
def test_dA_cost_equals_numpy_for_the_same_mask():
    rng = np.random.RandomState(4)
    auto_encoder = dA(rng, n_visible=20, n_hidden=7)
    auto_encoder.b.set_value(rng.normal(size=7).astype("float32"))
    cost, mask, _ = auto_encoder.corrupted_cost(0.25)
    x = rng.uniform(size=(9, 20)).astype("float32")
    got_cost, got_mask = pytensor.function([auto_encoder.x], [cost, mask])(x)
    assert 0 < (got_mask == 0).mean() < 1
    expected = numpy_dA_cost(
        x.astype(float), got_mask, *(p.get_value().astype(float) for p in auto_encoder.params)
    )
    # float32 graph vs float64 NumPy: 20- and 7-term dot products and a few elementwise ops,
    # each within a few float32 ulps (1.2e-7); reductions accumulate in float64. Seen: 7e-8.
    np.testing.assert_allclose(got_cost, expected, rtol=1e-5)


def test_dA_cost_stays_finite_when_units_saturate():
    auto_encoder = dA(np.random.RandomState(5), n_visible=10, n_hidden=4)
    auto_encoder.W.set_value(np.full((10, 4), 60.0, dtype="float32"))
    auto_encoder.b_prime.set_value(np.full(10, -400.0, dtype="float32"))
    cost, updates = auto_encoder.get_cost_updates(0.0, 0.1)
    value = pytensor.function([auto_encoder.x], cost, updates=updates)(np.ones((3, 10), "float32"))
    assert np.isfinite(value) and abs(value - 1600) < 1  # sigmoid(-160) rounds to 0 in float32


def mask_function(auto_encoder, level, shape):
    _, mask, next_rng = auto_encoder.corrupted_cost(level)
    data = np.ones(shape, dtype="float32")
    f = pytensor.function([], mask, givens={auto_encoder.x: data}, updates={auto_encoder.rng: next_rng})
    return f


@pytest.mark.parametrize("level", [0.1, 0.3, 0.5])
def test_mask_zero_fraction_matches_corruption_level(level):
    f = mask_function(dA(np.random.RandomState(6), n_visible=500, n_hidden=3), level, (200, 500))
    assert abs((f() == 0).mean() - level) < 0.01  # 100,000 draws: std is below 0.0016


def test_every_call_draws_a_new_mask_and_the_seed_repeats_them():
    first = mask_function(dA(np.random.RandomState(7), n_visible=50, n_hidden=3), 0.5, (4, 50))
    again = mask_function(dA(np.random.RandomState(7), n_visible=50, n_hidden=3), 0.5, (4, 50))
    other = mask_function(dA(np.random.RandomState(8), n_visible=50, n_hidden=3), 0.5, (4, 50))
    a1, a2 = first(), first()
    assert not np.array_equal(a1, a2)
    # 0/1 draws from a seeded generator, no float arithmetic: exact on any machine.
    np.testing.assert_array_equal(a1, again())
    np.testing.assert_array_equal(a2, again())
    assert not np.array_equal(a1, other())


def test_dA_updates_include_the_generator():
    auto_encoder = dA(np.random.RandomState(9), n_visible=4, n_hidden=2)
    _, updates = auto_encoder.get_cost_updates(0.1, 0.1)
    assert auto_encoder.rng in dict(updates)


def test_dA_and_hidden_layer_share_one_variable():
    model = SdA(
        np.random.RandomState(10),
        n_ins=12,
        hidden_layers_sizes=(8, 6),
        n_outs=3,
        corruption_levels=(0.1, 0.2),
    )
    for hidden, auto_encoder in zip(model.sigmoid_layers, model.dA_layers):
        assert auto_encoder.W is hidden.W and auto_encoder.b is hidden.b
    data = pytensor.shared(np.random.default_rng(1).random((10, 12), dtype=np.float32))
    top_output = pytensor.function([], model.sigmoid_layers[1].output, givens={model.x: data})
    before = top_output()
    model.pretraining_functions(data, batch_size=5)[1](0, 0.2, 0.5)
    assert not np.allclose(before, top_output())


def test_corruption_levels_are_stored_and_checked():
    model = SdA(
        np.random.RandomState(0), n_ins=4, hidden_layers_sizes=(3, 3), n_outs=2, corruption_levels=(0.0, 0.4)
    )
    assert model.corruption_levels == (0.0, 0.4)
    with pytest.raises(ValueError, match="one level per layer"):
        check_architecture(4, (3, 3), 2, (0.1,))
    with pytest.raises(ValueError, match=re.escape("corruption_levels[0] must be in [0, 1), got 1.5")):
        check_architecture(4, (3,), 2, (1.5,))
    with pytest.raises(ValueError, match=re.escape("hidden_layers_sizes[0] must be at least 1, got 0")):
        check_architecture(4, (0,), 2, (0.1,))
    with pytest.raises(ValueError, match="hidden_layers_sizes must hold at least 1 value"):
        check_architecture(4, (), 2, ())
    with pytest.raises(ValueError, match="loss must be one of 'cross_entropy', 'squared', got 'hinge'"):
        dA(np.random.RandomState(0), n_visible=3, n_hidden=2, loss="hinge")


@pytest.mark.floats
def test_scorers_cover_the_short_last_batch():
    rng = np.random.default_rng(11)
    model = SdA(
        np.random.RandomState(11), n_ins=5, hidden_layers_sizes=(4,), n_outs=3, corruption_levels=(0.1,)
    )
    model.logLayer.W.set_value(rng.normal(size=(4, 3)).astype("float32"))
    x, y = rng.random((25, 5), dtype=np.float32), rng.integers(0, 3, 25).astype("int32")
    shared = (pytensor.shared(x), pytensor.shared(y))
    _, valid_score, _ = model.build_finetune_functions([shared] * 3, 10, 0.1)
    assert list(valid_score.batch_sizes) == [10, 10, 5]
    predictions = pytensor.function([model.x], model.logLayer.y_pred)(x)
    overall = np.average(valid_score(), weights=valid_score.batch_sizes)
    assert len(valid_score()) == 3
    # Both count the same wrong rows (argmax of logits that differ in the last bits at most:
    # no near-ties with these random weights), so they differ only by float64 rounding;
    # one row is 1/25 = 0.04.
    np.testing.assert_allclose(overall, np.mean(predictions != y), rtol=1e-6)


@pytest.mark.floats
def test_momentum_and_weight_decay_follow_their_equations():
    rng = np.random.default_rng(12)
    w = pytensor.shared(rng.normal(size=(3, 2)).astype("float32"), name="w")
    b = pytensor.shared(rng.normal(size=2).astype("float32"), name="b")
    x = rng.normal(size=(4, 3)).astype("float32")
    cost = pt.sum((pt.dot(x, w) + b) ** 2)
    updates, velocities = sgd_updates(cost, [w, b], np.float32(0.01), momentum=0.9, weight_decay=0.1)
    step = pytensor.function([], [], updates=updates)
    grads = pytensor.function([], pytensor.grad(cost, [w, b]))
    v_w, v_b = np.zeros((3, 2)), np.zeros(2)
    for _ in range(3):
        g_w, g_b = grads()
        w0, b0 = w.get_value(), b.get_value()
        v_w = 0.9 * v_w - 0.01 * (g_w + 0.1 * w0)  # weights decay ...
        v_b = 0.9 * v_b - 0.01 * g_b  # ... biases do not
        step()
        # float32 step vs the float64 formula on its float32 inputs: a handful of float32
        # roundings (1.2e-7 each) per entry, no cancellation (|w| ~ 1 >> |v| ~ 0.01). Seen: 6e-7.
        np.testing.assert_allclose(w.get_value(), w0 + v_w, rtol=1e-5)
        np.testing.assert_allclose(b.get_value(), b0 + v_b, rtol=1e-5)
    assert [v.name for v in velocities] == ["w.velocity", "b.velocity"]
    with pytest.raises(SettingError, match="momentum"):
        sgd_updates(cost, [w], 0.1, momentum=1.0)
    with pytest.raises(SettingError, match="weight_decay"):
        sgd_updates(cost, [w], 0.1, weight_decay=-1)


def test_dropped_input_zeroes_pixels_and_keeps_the_expected_value():
    model = SdA(
        np.random.RandomState(3), n_ins=400, hidden_layers_sizes=(8,), n_outs=3, corruption_levels=(0.1,)
    )
    next_rng, noisy_x = model.dropped_input(0.25)
    draw = pytensor.function([model.x], noisy_x, updates=[(model.dA_layers[0].rng, next_rng)])
    x = np.random.default_rng(3).uniform(0.5, 1.0, (50, 400)).astype("float32")
    noisy = draw(x)
    assert noisy.dtype == np.float32
    dropped = noisy == 0
    # 20,000 pixels: the zeroed fraction is within 4 standard errors (0.012) of 0.25
    assert abs(dropped.mean() - 0.25) < 0.012
    np.testing.assert_allclose(noisy[~dropped], x[~dropped] / 0.75, rtol=1e-6)
    assert not np.array_equal(draw(x) == 0, dropped)  # a new mask every call


@pytest.mark.floats
def test_finetuning_input_noise_masks_the_training_pixels_only():
    rng = np.random.default_rng(12)
    model = SdA(
        np.random.RandomState(12), n_ins=30, hidden_layers_sizes=(8,), n_outs=3, corruption_levels=(0.1,)
    )
    model.logLayer.W.set_value(rng.normal(size=(8, 3)).astype("float32"))  # not blind to x
    x, y = rng.random((20, 30), dtype=np.float32), rng.integers(0, 3, 20).astype("int32")
    shared = (pytensor.shared(x), pytensor.shared(y))
    cost = pytensor.function([model.x, model.y], model.finetune_cost)
    # all but surely every pixel masked (p = 1e-6 each, 600 pixels): the cost of a blank batch
    blank, *_ = model.build_finetune_functions([shared] * 3, 20, 0.0, input_corruption=1 - 1e-6)
    np.testing.assert_array_equal(blank(0), cost(np.zeros_like(x), y))
    # at 0.5 each call draws a new mask from the first dA's generator, so the cost moves
    # though the weights do not (rate 0); the scores still see clean pixels
    noisy, valid_score, _ = model.build_finetune_functions([shared] * 3, 20, 0.0, input_corruption=0.5)
    before = model.dA_layers[0].rng.get_value().bit_generator.state
    costs = [float(noisy(0)) for _ in range(3)]
    assert len(set(costs)) == 3 and cost(x, y) not in costs
    assert model.dA_layers[0].rng.get_value().bit_generator.state != before
    predictions = pytensor.function([model.x], model.logLayer.y_pred)(x)
    assert valid_score.error() == pytest.approx(np.mean(predictions != y))
