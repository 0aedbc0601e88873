"""The model's graphs on PyTensor's JAX backend (CPU): the optional `jax` extra.

CI installs the extra (`pip install -e .[test,jax]`), runs them with `-m jax`, and fails if they skip.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from sda import SdA, engine
from sda.data import load_dataset, shared_dataset
from sda.sgd import sgd_updates

# Marked `jax`: the default suite deselects them; CI's JAX job runs them with -m jax.
# Expected under JAX: it computes in float32 and int32 unless x64 is enabled (sda wants float32),
# it skips PyTensor's runtime shape asserts, and it steps a copy of each shared generator.
pytestmark = [
    pytest.mark.jax,
    pytest.mark.filterwarnings("ignore:Explicitly requested dtype:UserWarning"),
    pytest.mark.filterwarnings("ignore:Skipping Assert:UserWarning"),
    pytest.mark.filterwarnings("ignore:The RandomType SharedVariables:UserWarning"),
]


@pytest.fixture(autouse=True)
def jax_installed():
    """Asked for with -m jax but not installed: a skip, which CI's JAX job turns into a failure."""
    pytest.importorskip("jax", reason="the JAX backend is optional: pip install 'sda-pytensor[jax]'")


BATCH = 10  # the demo preset's batch size; digits' 1,197 training rows end in a short batch of 7


@pytest.fixture
def mode(monkeypatch):
    """``mode(name)`` switches the backend for graphs compiled afterwards; undone after the test."""
    monkeypatch.setattr(pytensor.config, "mode", pytensor.config.mode)
    monkeypatch.setattr(engine, "BACKEND", engine.BACKEND)
    return engine.use_mode


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def demo_model(seed=5):
    """The demo preset's network: 64 -> 100 -> 100 -> 10."""
    return SdA(
        np.random.default_rng(seed),
        n_ins=64,
        hidden_layers_sizes=(100, 100),
        n_outs=10,
        corruption_levels=(0.1, 0.2),
    )


def finetune_costs(digits, steps):
    """Fine-tune a fresh demo model for ``steps`` minibatches; the costs, the epoch's
    last (short) batch's cost, and then the cost of the first 300 rows in one batch."""
    model = demo_model()
    train_x, train_y = shared_dataset(digits.train)
    updates, _ = sgd_updates(model.finetune_cost, model.params, np.float32(0.1), 0.0, 0.0)
    index = pt.lscalar("index")
    step = engine.batched_function(
        index, [], model.finetune_cost, {model.x: train_x, model.y: train_y}, BATCH, updates=updates
    )
    costs = [float(step(i)) for i in range(steps)]
    last = float(step(len(digits.train.y) // BATCH))
    big_batch = engine.batched_function(
        index, [], model.finetune_cost, {model.x: train_x, model.y: train_y}, 300
    )
    return np.array(costs), last, float(big_batch(0))


def test_finetuning_on_jax_follows_the_c_backend(digits, mode):
    assert "C backend" in mode("c")
    c_costs, c_last, c_big = finetune_costs(digits, steps=119)
    assert "JAX" in mode("jax")
    jax_costs, jax_last, jax_big = finetune_costs(digits, steps=119)
    # Same seed, no noise: the same float32 arithmetic, summed in another order by XLA than by
    # MKL, so each cost differs by rounding (eps = 1.2e-7). Measured here over 120 steps: at most
    # 2.2e-7 relative, SGD at lr 0.1 on a 3-layer net does not amplify it. 1e-5 leaves room for
    # other CPUs' blockings; a wrong gradient or a lost update moves the cost by over 1e-2.
    np.testing.assert_allclose(jax_costs, c_costs, rtol=1e-5)
    np.testing.assert_allclose(jax_last, c_last, rtol=1e-5)  # the short last batch (7 rows)
    np.testing.assert_allclose(jax_big, c_big, rtol=1e-5)  # over 127 rows: no int8 row index
    assert jax_costs[-10:].mean() < 0.85 * jax_costs[:10].mean()  # 0.77 here, one epoch


def test_pretraining_on_jax_draws_fresh_noise_and_lowers_the_cost(digits, mode):
    mode("jax")
    model = demo_model()
    train_x, _ = shared_dataset(digits.train)
    auto_encoder = model.dA_layers[0]
    corruption, lr = pt.scalar("corruption"), pt.scalar("lr")
    cost, updates = auto_encoder.get_cost_updates(corruption, lr)
    step = engine.batched_function(
        pt.lscalar("index"), [corruption, lr], cost, {model.x: train_x}, BATCH, updates=updates
    )
    # JAX draws from its own generator (seeded from the shared one), so its masks are not the C
    # backend's: check what must hold whatever the stream. With lr 0 only the mask changes.
    assert float(step(0, 0.5, 0.0)) != float(step(0, 0.5, 0.0))
    costs = np.array([float(step(i, 0.1, 0.01)) for i in range(120)])  # one epoch, short batch last
    assert np.isfinite(costs).all()
    assert costs[-20:].mean() < 0.6 * costs[:20].mean()  # about 0.3 on the C backend


def test_the_demo_run_trains_on_jax(tmp_path):
    """The command end to end: every graph sda.run compiles goes through the JAX backend."""
    env = {**os.environ, engine.MODE_ENV: "jax"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sda.run",
            "--preset",
            "demo",
            "--pretrain-epochs",
            "1",
            "--finetune-epochs",
            "3",
            "--out",
            str(tmp_path),
            "--name",
            "jax",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    assert "sda: JAX" in done.stdout
    summary = json.loads((tmp_path / "jax" / "summary.json").read_text())
    assert summary["test_error"] < 0.5  # 90 % is chance; about 12 % after 3 epochs on the C backend
