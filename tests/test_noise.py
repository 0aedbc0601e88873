"""Masking noise (``sda.noise``): numpy's Bernoulli numbers, drawn faster, and resumable."""

import importlib

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy import stats

from sda import SdA, noise
from sda.checkpoint import _generator_state, _set_generator_state
from sda.noise import FastBernoulliRV, bernoulli_mask, inversion_threshold

# Keep probabilities as the dAs compute them (1 - level in float32), the two branches of
# numpy's sampler and their boundary, the ends, and the tiniest probabilities.
LEVELS = np.linspace(0, 0.99, 100, dtype=np.float32)
PROBABILITIES = [
    *(float(np.float32(1) - level) for level in LEVELS),
    *np.linspace(0, 1, 201).tolist(),
    0.5,
    float(np.nextafter(0.5, 1)),
    float(np.nextafter(0.5, 0)),
    5e-324,
    1e-300,
    float(np.nextafter(1, 0)),
]


@pytest.mark.parametrize("p", PROBABILITIES)
def test_the_mask_is_numpys_binomial_draw_bit_for_bit(p):
    ours, numpys = np.random.default_rng(11), np.random.default_rng(11)
    mask = bernoulli_mask(ours, p, (13, 29))
    assert mask.dtype == np.int8
    np.testing.assert_array_equal(mask, numpys.binomial(1, p, (13, 29)))
    # the generators read the same doubles, so they go on alike
    assert ours.bit_generator.state == numpys.bit_generator.state


def test_many_draws_in_a_row_follow_numpy_across_levels():
    ours, numpys = np.random.default_rng(3), np.random.default_rng(3)
    for step in range(200):
        p = float(np.float32(1) - LEVELS[step % len(LEVELS)])
        np.testing.assert_array_equal(bernoulli_mask(ours, p, (4, 50)), numpys.binomial(1, p, (4, 50)))
    assert ours.random() == numpys.random()


def test_the_threshold_is_numpys_for_the_keep_probability():
    # p > 1/2 keeps U <= exp(log(1 - (1 - p))), which is 0.7 itself for p = 0.7
    assert inversion_threshold(0.7) == 0.7
    assert inversion_threshold(0.2) == np.exp(np.log(0.8))


def test_a_probability_numpy_might_draw_twice_for_goes_to_numpy(monkeypatch):
    monkeypatch.setattr(noise, "inversion_threshold", lambda p: None)
    rng = np.random.default_rng(0)
    assert bernoulli_mask(rng, 0.7, (3, 3)) is None
    assert rng.bit_generator.state == np.random.default_rng(0).bit_generator.state  # untouched
    # and the op then draws through scipy, as PyTensor's bernoulli does
    ours, reference = np.random.default_rng(4), np.random.default_rng(4)
    drawn = FastBernoulliRV.rng_fn(ours, np.float32(0.7), (5, 6))
    np.testing.assert_array_equal(drawn, stats.bernoulli.rvs(0.7, size=(5, 6), random_state=reference))


def compiled_mask(op, seed, probability, shape, mode=None):
    """``f(p) -> mask`` drawn by ``op`` from a shared generator seeded with ``seed``, which it advances."""
    rng = pt.random.shared_rng(np.random.default_rng(seed))
    p = pt.scalar("p")
    next_rng, mask = op(p=probability(p), size=shape, rng=rng, dtype="int8", return_next_rng=True)
    return pytensor.function([p], mask, updates=[(rng, next_rng)], mode=mode), rng


@pytest.mark.parametrize(
    "probability, shape",
    [
        (lambda p: p, (20, 30)),  # a scalar probability
        (lambda p: 1 - p.dimshuffle("x", "x"), (20, 30)),  # a (1, 1) one, as the dA's graph has
        (lambda p: pt.stack([p, 1 - p, p / 2]), (4, 3)),  # one per column: PyTensor's own draw
    ],
)
def test_the_compiled_op_draws_what_pytensors_bernoulli_draws(probability, shape):
    ours, our_rng = compiled_mask(noise.bernoulli, 21, probability, shape)
    theirs, their_rng = compiled_mask(pt.random.bernoulli, 21, probability, shape)
    for level in (0.3, 0.0, 0.9, 0.5, 0.3):
        np.testing.assert_array_equal(ours(level), theirs(level))
    assert _generator_state(our_rng) == _generator_state(their_rng)


def test_the_op_runs_on_numba_as_bernoulli_does():
    draw, _ = compiled_mask(noise.bernoulli, 2, lambda p: p, (200, 100), mode="NUMBA")
    mask = draw(0.7)
    assert mask.dtype == np.int8 and set(np.unique(mask)) == {0, 1}
    assert abs(mask.mean() - 0.7) < 0.01  # 20,000 draws: the standard error is 0.003


def small_model(seed=9):
    return SdA(
        np.random.RandomState(seed), n_ins=30, hidden_layers_sizes=(12,), n_outs=3, corruption_levels=(0.3,)
    )


ROWS = np.random.default_rng(1).random((50, 30), dtype=np.float32)


def pretraining_run(model, steps, start=0):
    """Costs of ``steps`` pre-training steps of layer 0, at varying noise levels."""
    step = model.pretraining_function(0, pytensor.shared(ROWS, borrow=True), batch_size=10)
    return [float(step(i % 5, [0.3, 0.1, 0.0, 0.6][i % 4], 0.1)) for i in range(start, start + steps)]


def test_the_pretraining_step_takes_the_fast_draw_in_place():
    step = small_model().pretraining_function(0, pytensor.shared(ROWS), batch_size=10)
    draws = [
        node.op
        for node in step.function.maker.fgraph.toposort()
        if isinstance(node.op, pt.random.basic.BernoulliRV)
    ]
    assert len(draws) == 1 and isinstance(draws[0], FastBernoulliRV) and draws[0].inplace


def test_pretraining_takes_the_same_steps_as_with_pytensors_bernoulli(monkeypatch):
    fast = small_model()
    fast_costs = pretraining_run(fast, 12)
    monkeypatch.setattr(importlib.import_module("sda.dA"), "bernoulli", pt.random.bernoulli)
    reference = small_model()
    assert fast_costs == pretraining_run(reference, 12)
    for ours, theirs in zip(fast.named_params().values(), reference.named_params().values()):
        np.testing.assert_array_equal(ours.get_value(), theirs.get_value())
    assert _generator_state(fast.dA_layers[0].rng) == _generator_state(reference.dA_layers[0].rng)


def test_a_restored_generator_state_repeats_the_masks_exactly():
    model = small_model()
    pretraining_run(model, 3)
    params = list(model.named_params().values())  # with the dA's visible bias
    saved_params = [p.get_value() for p in params]
    saved_state = _generator_state(model.dA_layers[0].rng)
    after = pretraining_run(model, 5, start=3)
    for param, value in zip(params, saved_params):
        param.set_value(value)
    _set_generator_state(model.dA_layers[0].rng, saved_state)
    assert pretraining_run(model, 5, start=3) == after


def finetuning_costs(model, steps):
    """Costs of ``steps`` fine-tuning steps with input dropout, which draws from the first dA's generator."""
    labels = pytensor.shared(np.arange(50, dtype=np.int32) % 3)
    split = (pytensor.shared(ROWS, borrow=True), labels)
    train, _, _ = model.build_finetune_functions(
        [split] * 3, batch_size=10, learning_rate=0.1, input_corruption=0.2
    )
    return [float(train(i % 5)) for i in range(steps)]


def test_finetuning_with_input_dropout_takes_the_same_steps_as_with_pytensors_bernoulli(monkeypatch):
    fast_costs = finetuning_costs(small_model(), 8)
    monkeypatch.setattr(importlib.import_module("sda.dA"), "bernoulli", pt.random.bernoulli)
    assert fast_costs == finetuning_costs(small_model(), 8)
