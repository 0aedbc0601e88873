"""Gradual training: its graph, its schedule, its metric and the experiment command."""

import json
import re
import subprocess
import sys

import numpy as np
import pytensor
import pytest
from pytensor.graph.traversal import ancestors
from pytensor.tensor.random.op import RandomVariable
from test_models import assert_gradients_match

from sda import SdA
from sda.checkpoint import Checkpoint
from sda.data import load_dataset, shared_dataset
from sda.errors import SettingError
from sda.gradual import (
    data_entropy,
    gradual_cost,
    gradual_step_function,
    relative_cross_entropy,
    schedule,
    train_gradual,
)
from sda.train import pretrain

SETTINGS = dict(batch_size=20, learning_rate=0.05, corruption=0.2, momentum=0.5, weight_decay=1e-4)


def tiny_model(sizes=(20, 10), n_ins=784, seed=3):
    return SdA(
        np.random.RandomState(seed),
        n_ins=n_ins,
        hidden_layers_sizes=sizes,
        n_outs=10,
        corruption_levels=[0.2] * len(sizes),
    )


@pytest.fixture(scope="module")
def mnist(shared_data):
    """100 real training rows and 200 test rows, as shared matrices."""
    data = load_dataset("mnist", shared_data).subset(100, 10, 200)
    return shared_dataset(data.train)[0], shared_dataset(data.test)[0]


def values(model):
    return {name: p.get_value() for name, p in model.named_params().items()}


def test_gradual_gradient_matches_finite_differences():
    with pytensor.config.change_flags(floatX="float64"):
        model = tiny_model(sizes=(4, 3), n_ins=6)
        x = np.random.default_rng(0).random((5, 6))
        # No rng update is compiled, so every call draws the same mask.
        cost, params, _ = gradual_cost(model, 2, 0.3)
        assert len(params) == 6  # W, b, b_prime of both layers
        assert_gradients_match(cost, params, {model.x: x})


@pytest.mark.floats
def test_noise_is_applied_to_the_input_only(mnist):
    train_x, _ = mnist
    model = tiny_model()
    cost, _, _ = gradual_cost(model, 2, 0.3)
    draws = [
        v.owner for v in ancestors([cost]) if v.owner is not None and isinstance(v.owner.op, RandomVariable)
    ]
    assert len(draws) == 1
    assert model.dA_layers[0].rng in draws[0].inputs
    # Without noise the step's cost is the clean reconstruction cost of the stack.
    clean, _, _ = gradual_cost(model, 2, 0.0)
    reference = pytensor.function([], model.unrolled_pre_activation(model.x, 2), givens={model.x: train_x})()
    x = train_x.get_value()
    expected = np.mean(np.sum(np.logaddexp(0, reference) - x * reference, axis=1))
    got = pytensor.function([], clean, givens={model.x: train_x})()
    # The same float32 pre-activations; only the loss differs (float32 softplus vs float64
    # logaddexp), a few ulps per term, summed in float64. Seen: equal to the last bit.
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_gradual_training_moves_the_lower_layer_and_stacked_does_not(mnist):
    train_x, _ = mnist
    trained = {}
    for f in (0.0, 1.0):
        model = tiny_model()
        before = values(model)
        train_gradual(model, train_x, [1, 2], fraction_stacked=f, layers=[1], **SETTINGS)
        trained[f] = after = values(model)
        assert not np.array_equal(after["hidden1.W"], before["hidden1.W"])
        lower_moved = not np.array_equal(after["hidden0.W"], before["hidden0.W"])
        assert lower_moved == (f == 0.0)
    assert not np.array_equal(trained[0.0]["hidden1.W"], trained[1.0]["hidden1.W"])


@pytest.mark.floats
def test_fraction_one_is_exactly_stacked_pretraining(mnist):
    train_x, _ = mnist
    gradual, stacked = tiny_model(), tiny_model()
    records = train_gradual(gradual, train_x, 2, fraction_stacked=1.0, **SETTINGS)
    pretrain(
        stacked,
        train_x,
        SETTINGS["batch_size"],
        2,
        SETTINGS["learning_rate"],
        [0.2, 0.2],
        cached=True,
        momentum=SETTINGS["momentum"],
        weight_decay=SETTINGS["weight_decay"],
    )
    assert [r["phase"] for r in records] == ["stacked"] * 4
    # The same graphs on the same minibatches: bit-identical on one machine and thread count.
    for name, value in values(stacked).items():
        np.testing.assert_array_equal(values(gradual)[name], value, err_msg=name)


@pytest.mark.floats
def test_training_is_deterministic_and_the_budget_is_shared(mnist):
    train_x, _ = mnist
    runs = []
    for _ in range(2):
        model = tiny_model()
        records = train_gradual(model, train_x, [1, 4], fraction_stacked=0.5, **SETTINGS)
        runs.append(values(model))
    for name in runs[0]:  # same seed, same machine and thread count: bit-identical
        np.testing.assert_array_equal(runs[0][name], runs[1][name], err_msg=name)
    # layer 1: 2 stacked epochs (cost 1 each) then 1 gradual epoch at depth 2 (cost 2)
    assert [(r["phase"], r["layer"], r["budget"]) for r in records] == [
        ("stacked", 0, 1.0),
        ("stacked", 1, 1.0),
        ("stacked", 1, 2.0),
        ("gradual", 1, 4.0),
    ]


class Stop(Exception):
    pass


@pytest.mark.floats
@pytest.mark.parametrize("stop_after", [1, 3, 5])  # after layer 0; mid-stacked, mid-gradual layer 1
def test_a_stopped_training_resumes_from_its_checkpoint_to_the_same_bits(mnist, tmp_path, stop_after):
    train_x, _ = mnist
    # 100 rows in minibatches of 30: 4 per pass; layer 1 takes 10 stacked steps, then 6 gradual
    # ones, so each of its phases ends with a partial pass
    budgets, settings = [1, 5.5], dict(SETTINGS, batch_size=30)
    whole = tiny_model()
    whole_records = train_gradual(whole, train_x, budgets, fraction_stacked=0.45, **settings)

    model = tiny_model()
    checkpoint = Checkpoint(tmp_path / "checkpoint.npz", model)
    seen = []

    def stop(record):
        seen.append(record)
        if len(seen) == stop_after:
            raise Stop

    with pytest.raises(Stop):
        train_gradual(
            model, train_x, budgets, fraction_stacked=0.45, on_epoch=stop, checkpoint=checkpoint, **settings
        )
    resumed = tiny_model(seed=4)  # other weights and generators: all must come from the checkpoint
    checkpoint = Checkpoint(tmp_path / "checkpoint.npz", resumed)
    progress = checkpoint.load()
    records = train_gradual(
        resumed, train_x, budgets, fraction_stacked=0.45, progress=progress, checkpoint=checkpoint, **settings
    )

    def without_time(rs):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rs]

    assert [r["phase"] for r in whole_records] == ["stacked"] * 4 + ["gradual"] * 2
    assert without_time(records) == without_time(whole_records)
    for name, value in values(whole).items():
        np.testing.assert_array_equal(values(resumed)[name], value, err_msg=name)
    for name, rng in whole.random_generators().items():
        assert (
            rng.get_value().bit_generator.state
            == resumed.random_generators()[name].get_value().bit_generator.state
        )


def test_gradual_step_returns_the_velocities_of_every_layer_it_trains(mnist):
    model = tiny_model()
    step = gradual_step_function(model, 2, mnist[0], batch_size=20, momentum=0.5)
    params = [p for auto_encoder in model.dA_layers for p in auto_encoder.params]
    assert [v.name for v in step.velocities] == [f"{p.name}.velocity" for p in params]
    step(0, 0.2, 0.05)
    assert all(np.any(v.get_value() != 0) for v in step.velocities)
    assert gradual_step_function(model, 2, mnist[0], batch_size=20).velocities == []


def test_schedule_counts_a_gradual_step_at_depth_d_as_d_updates():
    assert schedule(0, 3, 0.7, 10) == (30, 0)
    assert schedule(1, 4, 0.25, 10) == (10, 15)
    assert schedule(1, 4, 0.0, 10) == (0, 20)
    assert schedule(2, 6, 0.5, 10) == (30, 10)


@pytest.mark.floats
def test_relative_cross_entropy_is_zero_for_a_perfect_reconstruction():
    x = (np.random.default_rng(1).random((50, 6)) < 0.5).astype(np.float32)
    assert data_entropy(x) == 0.0
    assert data_entropy(np.full((3, 6), 0.5)) == pytest.approx(6 * np.log(2))
    model = tiny_model(sizes=(6,), n_ins=6)
    # steep identity encoder and decoder: binary inputs come back almost exactly
    gain = np.float32(40)
    model.dA_layers[0].W.set_value(gain * np.eye(6, dtype=np.float32))
    model.dA_layers[0].b.set_value(np.full(6, -gain / 2, dtype=np.float32))
    model.dA_layers[0].b_prime.set_value(np.full(6, -gain / 2, dtype=np.float32))
    # Exactly about 6 * softplus(-20) = 1.2e-8 per row; float32 terms of size 20 round by
    # ulp(20) = 1.9e-6, so 1e-5 allows a few such roundings per row (seen: 6e-9).
    assert relative_cross_entropy(model, pytensor.shared(x)) == pytest.approx(0, abs=1e-5)


def test_relative_cross_entropy_is_positive_on_mnist(mnist):
    train_x, test_x = mnist
    model = tiny_model()
    untrained = relative_cross_entropy(model, test_x)
    train_gradual(model, train_x, [2, 2], **SETTINGS)
    assert 0 < relative_cross_entropy(model, test_x) < untrained


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(fraction_stacked=-0.1), "fraction_stacked"),
        (dict(fraction_stacked=1.5), "fraction_stacked"),
        (dict(epochs_per_layer=0), re.escape("epochs_per_layer[0] must be more than 0, got 0")),
        (dict(epochs_per_layer=[1, -2]), re.escape("epochs_per_layer[1] must be more than 0, got -2")),
        (dict(epochs_per_layer=[1, 2, 3]), "one budget per layer"),
        (dict(batch_size=0), "batch_size"),
        (dict(learning_rate=-1), "learning_rate"),
        (dict(corruption=1.0), "corruption"),
        (dict(layers=[2]), "layers"),
    ],
)
def test_bad_settings_raise(mnist, change, message):
    settings = {**SETTINGS, "epochs_per_layer": 1, **change}
    with pytest.raises(SettingError, match=message):
        train_gradual(tiny_model(), mnist[0], **settings)


def test_metric_refuses_a_squared_loss_model(mnist):
    model = SdA(np.random.RandomState(0), hidden_layers_sizes=(5,), corruption_levels=(0.1,), loss="squared")
    with pytest.raises(SettingError, match="cross_entropy"):
        relative_cross_entropy(model, mnist[1])


def run_experiment(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "sda.experiments.gradual", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_experiment_runs_end_to_end(shared_data, tmp_path):
    out = tmp_path / "run"
    done = run_experiment("--quick", "--data", str(shared_data), "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in ("gradual_fraction", "gradual_classifier"):
        for suffix in (".md", ".csv", ".json", ".png"):
            assert (out / f"{name}{suffix}").stat().st_size > 0
    rows = json.loads((out / "gradual_fraction.json").read_text())["rows"]
    assert [r["fraction"] for r in rows] == [0, 0.5, 1]
    assert all(r["test_relative_ce"] > 0 for r in rows)
    sizes = [r["size"] for r in json.loads((out / "gradual_classifier.json").read_text())["rows"]]
    assert sizes == [200, 500]


def test_experiment_needs_both_pure_arms(tmp_path):
    done = run_experiment("--quick", "--fractions", "0", "0.5", cwd=tmp_path)
    assert done.returncode == 2
    assert "include both" in done.stderr
