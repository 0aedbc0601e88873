"""The pre-training benchmark runs end to end (``--quick``) and writes complete results."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `bench` is not installed: import it from the clone
    sys.path.insert(0, str(REPO))


def assert_row_is_its_rounds(row):
    # the JSON keeps every round's rates, so each published median and ratio can be recomputed
    from bench.measure import rate_row

    assert row["rounds"] == 3 and all(len(r) == 3 for r in row["round_rates"].values())
    assert row == rate_row(row["round_rates"], row["batch_size"])


def test_a_ratio_is_the_median_of_the_rounds_ratios_not_of_the_medians():
    from bench.measure import rate_row

    # a slow round hits both backends; the ratio of the medians (25 / 10) would hide that
    # sda was 1.5 times as fast in two rounds of three
    row = rate_row({"sda": [15.0, 30.0, 25.0], "numpy": [10.0, 20.0, 5.0]}, 20)
    assert row["ratios"] == {"sda/numpy": 1.5}
    assert row["ratio_ranges"] == {"sda/numpy": [1.5, 5.0]}
    assert row["samples_per_second"] == {"sda": 25.0, "numpy": 10.0} and row["rounds"] == 3


def test_quick_benchmark_writes_every_figure(shared_data, tmp_path):
    out = tmp_path / "b.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.pretrain", "--quick", "--out", str(out)],
        cwd=REPO,
        env={**os.environ, "SDA_DATA": str(shared_data)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "samples/s" in done.stdout and "uncached/cached" in done.stdout
    results = json.loads(out.read_text())

    step = results["step"]
    assert [row["batch_size"] for row in step["batch_sizes"]] == [1, 20, 100]
    for row in step["batch_sizes"]:
        rates = row["samples_per_second"]
        assert {"sda", "numpy"} <= set(rates)
        assert all(rate > 0 for rate in rates.values())
        others = set(rates) - {"sda"}
        assert set(row["ratios"]) == {f"sda/{name}" for name in others}
        assert_row_is_its_rounds(row)
    assert set(rates) | set(step["skipped"]) == {"sda", "numpy", "numpy+MKL", "torch"}

    layers = results["layer_epochs"]["layers"]
    assert [row["layer"] for row in layers] == [1, 2, 3]
    for row in layers:
        assert row["uncached_seconds"] > 0 and row["cached_seconds"] > 0
        assert row["uncached/cached"] == row["uncached_seconds"] / row["cached_seconds"]
    assert layers[0]["cache_seconds"] == 0 and layers[0]["uncached/cached"] == 1
    assert all(0 < row["cache_seconds"] < row["cached_seconds"] for row in layers[1:])

    assert results["full_pretraining"] is None  # --quick without --full
    assert results["finetune"]["epoch_seconds"] > 0 and results["finetune"]["valid_seconds"] > 0
    assert results["memory"]["peak_rss_bytes"] > results["memory"]["cache_bytes"] > 0


# ------------------------------------------------------------ fine-tuning step
def small_network(shared_data):
    """A two-layer network on 200 MNIST rows: the step check of bench.finetune,
    without the cost of compiling the default 3x1000 network."""
    from bench.finetune import network
    from sda.config import preset
    from sda.data import load_dataset

    config = preset("default", hidden_layers=(200, 100), corruption_levels=(0.1, 0.2))
    dataset = load_dataset("mnist", str(shared_data)).subset(200, 10, 10)
    return network(config, dataset), dataset.train.x, dataset.train.y


def test_every_finetune_reference_takes_sdas_step(shared_data):
    from bench.finetune import check_same_step, finetune_references

    model, x, y = small_network(shared_data)
    makers, skipped = finetune_references(lr=0.5, threads=1)
    assert set(makers) | set(skipped) == {"numpy", "numpy+MKL", "torch"} and "numpy" in makers
    start = [p.get_value() for p in model.params]
    cost = check_same_step(model, x, y, makers, lr=0.5)  # asserts cost and parameters, float32 tolerances
    assert 0 < cost < 10  # a softmax over 10 classes from a random top layer: about log(10)
    for param, value in zip(model.params, start):
        assert (param.get_value() == value).all()  # the check leaves the model as it found it


def test_finetune_step_check_catches_a_different_step(shared_data):
    import pytest

    from bench.finetune import check_same_step
    from bench.references import NumpyGemm, NumpyMLP

    model, x, y = small_network(shared_data)
    wrong_rate = {"numpy": lambda p: NumpyMLP(p, 0.75, NumpyGemm())}  # lr 0.75 instead of 0.5
    with pytest.raises(AssertionError, match="update the parameters differently"):
        check_same_step(model, x, y, wrong_rate, lr=0.5)


def test_quick_finetune_benchmark_writes_ratios_and_profiles(shared_data, tmp_path):
    out = tmp_path / "f.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.finetune",
            "--quick",
            "--profile",
            "--batch-sizes",
            "20",
            "--out",
            str(out),
        ],
        cwd=REPO,
        env={**os.environ, "SDA_DATA": str(shared_data)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "One fine-tuning step, 784-1000-1000-1000-10" in done.stdout
    results = json.loads(out.read_text())
    (row,) = results["step"]["batch_sizes"]
    rates = row["samples_per_second"]
    assert row["batch_size"] == 20 and all(rate > 0 for rate in rates.values())
    assert set(rates) | set(results["step"]["skipped"]) == {"sda", "numpy", "numpy+MKL", "torch"}
    assert_row_is_its_rounds(row)
    (pre_row,) = results["pretrain_step"]["batch_sizes"]
    assert pre_row["batch_size"] == 20 and set(pre_row["samples_per_second"]) == set(rates)
    (profile,) = results["profile"]
    for step in ("finetune", "pretrain"):
        shares = profile[step]["classes"].values()
        assert abs(sum(shares) - 1) < 1e-9 and profile[step]["ms_per_step"] > 0
    assert "Dot22" in profile["finetune"]["classes"] or "Gemm" in profile["finetune"]["classes"]


def test_an_out_that_cannot_be_written_is_refused_before_measuring(tmp_path):
    file = tmp_path / "file"
    file.write_text("kept")
    for bench, out, message in [
        ("bench.finetune", tmp_path, "is a folder"),
        ("bench.pretrain", file / "r.json", "cannot make its folder"),
        ("bench.floor", file / "r.json", "cannot make its folder"),
        ("bench.sklearn_compare", tmp_path, "is a folder"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", bench, "--quick", "--out", str(out)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2 and message in done.stderr.splitlines()[-1], done.stderr
        assert "samples/s" not in done.stdout and "accuracy" not in done.stdout  # nothing measured
    assert file.read_text() == "kept"


# ------------------------------------------------------------------ floor
def floor_line(stdout, batch_size, name):
    """The words of the floor table's line for ``name`` at ``batch_size``."""
    (line,) = [line for line in stdout.splitlines() if line.startswith(f"{batch_size:>5}  {name:<10} ")]
    return line.split()


def spanned(values):
    """A median over rounds as the floor table prints it: ``["0.93", "(0.90-1.01)"]``."""
    import statistics

    return [f"{statistics.median(values):.2f}", f"({min(values):.2f}-{max(values):.2f})"]


def test_quick_floor_benchmark_prints_what_its_json_holds(shared_data, tmp_path):
    import statistics

    from bench.measure import rate_row

    out = tmp_path / "floor.json"
    # one batch size per step, each its own, so every table line is found once
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.floor",
            "--quick",
            "--rounds",
            "2",
            "--batch-sizes",
            "2",
            "--finetune-batch-sizes",
            "3",
            "--out",
            str(out),
        ],
        cwd=REPO,
        env={**os.environ, "SDA_DATA": str(shared_data)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    assert "libmkl_rt" in done.stdout and "the library sda's C backend links and loads" in done.stdout
    results = json.loads(out.read_text())
    assert results["rounds"] == 2
    layers = [784, 1000, 1000, 1000, 10]
    expected = {  # the floor's flops per step, from the network's sizes
        "pretrain": (2, 5, 5 * 2 * 2 * 784 * 1000),
        # forward, weight gradient and (but for the first layer) back through each weight matrix
        "finetune": (
            3,
            11,
            sum(3 * 2 * 3 * n_in * n_out for n_in, n_out in zip(layers, layers[1:])) - 2 * 3 * 784 * 1000,
        ),
    }
    for step, (batch_size, gemm_count, flops) in expected.items():
        (row,) = results[step]["batch_sizes"]
        rounds = row["round_rates"]
        assert row["batch_size"] == batch_size and all(len(r) == 2 for r in rounds.values())
        # every backend and reference is measured or said not to be, in the table too
        assert set(rounds) | set(results[step]["skipped"]) == {
            "sda",
            "numba",
            "jax",
            "floor",
            "numpy",
            "numpy+MKL",
            "torch",
        }
        assert {"sda", "numba", "floor", "numpy"} <= set(rounds)
        for name, why in results[step]["skipped"].items():
            assert f"  {name:<10} not measured: {why}" in done.stdout
        assert len(row["gemms"]) == gemm_count
        assert row["flops_per_step"] == sum(2 * g["m"] * g["n"] * g["k"] for g in row["gemms"]) == flops
        assert {key: row[key] for key in rate_row(rounds, batch_size)} == rate_row(rounds, batch_size)
        for name, rates in rounds.items():
            rate = statistics.median(rates)
            gflops = rate / batch_size * flops / 1e9
            assert row["gflops"][name] == gflops
            shares = [mine / floor for mine, floor in zip(rates, rounds["floor"])]
            ratios = [sda / mine for sda, mine in zip(rounds["sda"], rates)]
            if name != "floor":
                assert row["of_floor"][name] == statistics.median(shares)
            printed = (
                [f"{rate:.0f}", f"{gflops:.2f}"]
                + (["1"] if name == "floor" else spanned(shares))
                + ([] if name == "sda" else spanned(ratios))
            )
            assert floor_line(done.stdout, batch_size, name)[2:] == printed
