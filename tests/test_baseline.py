"""``python -m sda.experiments.baseline --quick``: both arms end to end, and where each starts."""

import csv
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.image import imread

from sda.data import load_dataset
from sda.experiments.baseline import build_parser, main, settings_from_args
from sda.run import build_model


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("baseline") / "out"
    done = subprocess.run(
        [sys.executable, "-m", "sda.experiments.baseline", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return out, done.stdout


def params(path):
    with np.load(path) as stored:
        return {name: stored[name] for name in stored.files}


def test_writes_both_curves_the_table_and_the_plots(quick_run):
    out, stdout = quick_run
    assert "pre-train layer 1 epoch   0  cost" in stdout  # the pretrained arm shows its progress
    assert {p.name for p in out.iterdir()} == {
        "baseline.csv",
        "baseline_summary.md",
        "baseline_loss.png",
        "baseline_accuracy.png",
        "pretrained_start.npz",
        "random_start.npz",
    }
    rows = list(csv.DictReader(open(out / "baseline.csv")))
    # --quick: 2 epochs of 120 minibatches, a point every 40 iterations, for each arm
    for arm in ("pretrained", "random"):
        curve = [r for r in rows if r["arm"] == arm]
        assert [int(r["iteration"]) for r in curve] == [40, 80, 120, 160, 200, 240]
        assert all(0 <= float(r["test_accuracy"]) <= 1 for r in curve)
        assert float(curve[-1]["train_loss"]) < float(curve[0]["train_loss"])
    for name in ("baseline_loss.png", "baseline_accuracy.png"):
        assert imread(out / name).shape[:2] == (528, 768)
    table = (out / "baseline_summary.md").read_text()
    for label in ("| pre-trained |", "| random init |"):
        assert label in table and label in stdout


def test_random_arm_starts_from_a_fresh_sdA_and_the_other_from_pretrained_weights(quick_run):
    out, _ = quick_run
    config = settings_from_args(build_parser().parse_args(["--quick"]))
    fresh = {
        name: p.get_value() for name, p in build_model(config, load_dataset("digits")).named_params().items()
    }
    random_start, pretrained_start = params(out / "random_start.npz"), params(out / "pretrained_start.npz")
    assert random_start.keys() == fresh.keys() == pretrained_start.keys()
    for name, value in fresh.items():  # the same seed's draws, no arithmetic: exact anywhere
        np.testing.assert_array_equal(random_start[name], value, err_msg=name)
    for layer in range(len(config.hidden_layers)):
        assert not np.allclose(pretrained_start[f"hidden{layer}.W"], fresh[f"hidden{layer}.W"])
    # pre-training leaves the softmax layer alone: both arms fine-tune it from the same start
    np.testing.assert_array_equal(pretrained_start["logistic.W"], fresh["logistic.W"])


def test_flags_override_the_quick_preset_and_bad_budgets_fail_clearly(tmp_path, capsys):
    config = settings_from_args(
        build_parser().parse_args(
            ["--quick", "--hidden-layers", "7", "--batch-size", "5", "--eval-every-iterations", "3"]
        )
    )
    assert (config.hidden_layers, config.corruption_levels, config.eval_every_iterations) == ((7,), (0.1,), 3)
    assert config.pretrain_batch_size == config.finetune_batch_size == 5
    assert main(["--quick", "--eval-every-iterations", "0"]) == 2
    assert "eval_every_iterations must be at least 1, got 0" in capsys.readouterr().err
    assert main(["--quick", "--eval-every-iterations", "1000", "--out", str(tmp_path / "o")]) == 2
    assert "curves would be empty" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_out_pointed_at_earlier_results_is_refused(quick_run, capsys):
    out, _ = quick_run
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["--quick", "--out", str(out)]) == 2
    assert "already holds files" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
