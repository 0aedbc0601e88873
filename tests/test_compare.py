"""End to end: ``python -m sda.compare`` on a small MNIST subset with a tiny budget."""

import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from sda import engine
from sda.cli import settings_from_args
from sda.compare import ARMS, DEFAULTS, CompareSettings, build_parser, main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BUDGET = 2
N_TRAIN = 500
SGD_BATCH = 20
SMALL = [
    "--n-train",
    str(N_TRAIN),
    "--n-valid",
    "300",
    "--n-test",
    "300",
    "--hidden-layers",
    "40",
    "--budget-passes",
    str(BUDGET),
    "--cg-batch-size",
    "100",
    "--line-searches",
    "2",
    "--sgd-batch-size",
    str(SGD_BATCH),
]
PLOTS = {f"{y}_vs_{x}.png" for y in ("valid_error", "train_loss") for x in ("passes", "seconds")}


@pytest.fixture(scope="module")
def comparison(tmp_path_factory, shared_data):
    out = tmp_path_factory.mktemp("compare") / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sda.compare",
            "--data",
            str(shared_data),
            *SMALL,
            "--pretrain-epochs",
            "1",
            "--seeds",
            "1",
            "2",
            "--thresholds",
            "60",
            "30",
            "--sensitivity-m",
            "100",
            "250",
            "--autoencoder",
            "--out",
            str(out),
        ],
        cwd=out.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return out, done.stdout, json.loads((out / "comparison.json").read_text())


def test_writes_the_tables_the_data_and_the_plots(comparison):
    out, stdout, _ = comparison
    assert "pre-train layer 0 epoch   0  cost" in stdout  # long pre-training shows progress
    assert {p.name for p in out.iterdir()} == {
        "comparison.json",
        "comparison.md",
        "runs.csv",
        "summary.csv",
        "pretrained.npz",
        "sensitivity.csv",
        "sensitivity.png",
        *PLOTS,
    }
    for name in [*PLOTS, "sensitivity.png"]:
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE
    table = (out / "comparison.md").read_text()
    for arm in ARMS:
        assert f"| {arm} |" in table and f"| {arm} |" in stdout
    assert "passes to 60 %" in table and "Deep auto-encoder" in table


def test_every_arm_and_seed_starts_at_the_same_point_and_spends_its_budget(comparison):
    _, _, saved = comparison
    runs = saved["runs"]
    assert [(r["arm"], r["seed"]) for r in runs] == [(arm, seed) for arm in ARMS for seed in (1, 2)]
    starts = {
        (h[0]["passes"], round(h[0]["train_loss"], 5), h[0]["valid_error"])
        for histories in saved["histories"].values()
        for h in histories
    }
    assert len(starts) == 1  # the same pre-trained weights, measured the same way
    for run in runs:
        assert BUDGET <= run["passes"] < BUDGET + 5, run["arm"]  # one line search may overrun
        # Every arm lowers the training loss below the zero softmax's log(10) at some point
        # (on 100-row batches mini-batch L-BFGS may end a little above it again).
        history = saved["histories"][run["arm"]][[1, 2].index(run["seed"])]
        assert min(r["train_loss"] for r in history) < np.log(10), run["arm"]
        # The best point is never worse than the start. The untrained softmax layer gets about
        # 90 % wrong: in 2 passes SGD and mini-batch CG must do far better; full-batch CG and
        # L-BFGS make one or two updates, and L-BFGS restarted on 100-row batches is slow.
        assert run["best_valid_error"] <= history[0]["valid_error"], run["arm"]
        if run["arm"] in ("sgd", "sgd-momentum", "cg-hs2006"):
            assert run["best_valid_error"] < 0.8 and run["test_error"] < 0.8, run["arm"]
    sgd = [r for r in runs if r["arm"] == "sgd"]
    assert all(r["passes"] == BUDGET and r["updates"] == BUDGET * N_TRAIN / SGD_BATCH for r in sgd)
    # SGD is measured after the first minibatch at or past every half pass-equivalent
    expected = [math.ceil(0.5 * i * N_TRAIN / SGD_BATCH) * SGD_BATCH / N_TRAIN for i in range(2 * BUDGET + 1)]
    assert [r["passes"] for r in saved["histories"]["sgd"][0]] == expected
    # shuffling follows the seed: two seeds, two different runs
    assert sgd[0]["final_train_loss"] != sgd[1]["final_train_loss"]


def test_the_summary_is_the_mean_and_sd_over_seeds(comparison):
    _, _, saved = comparison
    for entry in saved["summary"]:
        runs = [r for r in saved["runs"] if r["arm"] == entry["arm"]]
        errors = [r["best_valid_error"] for r in runs]
        mean, sd, count = entry["best_valid_error"]
        # float64 statistics of the same numbers: pytest's default rel=1e-6 is ample.
        assert count == 2 and mean == pytest.approx(np.mean(errors))
        assert sd == pytest.approx(np.std(errors, ddof=1))
        reached = [r["passes_to_60%"] for r in runs if r["passes_to_60%"] is not None]
        assert entry["passes_to_60%"][2] == len(reached)
    for run in saved["runs"]:  # the cost to reach a threshold is where the record first got there
        history = saved["histories"][run["arm"]][[1, 2].index(run["seed"])]
        first = next((r for r in history if r["valid_error"] <= 0.6), None)
        assert run["passes_to_60%"] == (first["passes"] if first else None)


def test_sensitivity_and_autoencoder_results(comparison):
    out, _, saved = comparison
    rows = list(csv.DictReader(open(out / "sensitivity.csv")))
    assert [(int(r["m"]), int(r["k"])) for r in rows] == [(100, 2), (250, 2)]
    assert int(rows[0]["updates"]) > int(rows[1]["updates"])  # smaller batches, more updates
    autoencoder = saved["autoencoder"]
    assert autoencoder["data_entropy"] > 0
    before = autoencoder["pretrained"]
    for arm in ("sgd", "cg"):
        after = autoencoder[arm]
        assert 0 < after["excess_cross_entropy"] < before["excess_cross_entropy"], arm
        assert 0 < after["squared_error"] < before["squared_error"], arm


def test_an_earlier_result_is_never_overwritten(comparison, shared_data, capsys):
    out, _, _ = comparison
    before = (out / "comparison.json").read_bytes()
    assert main(["--data", str(shared_data), *SMALL, "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "already holds files" in error
    assert (out / "comparison.json").read_bytes() == before


def test_flags_become_checked_settings():
    settings = settings_from_args(
        build_parser().parse_args(["--hidden-layers", "40", "20"]), CompareSettings, DEFAULTS
    )
    # layers given alone take the default levels for their depth
    assert (settings.hidden_layers, settings.corruption_levels) == ((40, 20), (0.1, 0.2))
    assert (settings.arms, settings.seeds, settings.budget_passes) == (ARMS, (1, 2, 3), 20.0)
    helps = [action.help for action in build_parser()._actions if action.dest != "help"]
    assert all(text.count("(default:") == 1 and "None" not in text for text in helps)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--budget-passes", "0"], "budget_passes must be more than 0, got 0.0"),
        (["--eval-every", "-1"], "eval_every must be more than 0, got -1.0"),
        (["--line-searches", "0"], "line_searches must be at least 1, got 0"),
        (["--sensitivity-m", "100", "0"], "sensitivity_m[1] must be at least 1, got 0"),
        (["--warmup-epochs", "-1"], "warmup_epochs must be at least 0, got -1"),
        (["--momentum", "1"], "momentum must be in [0, 1), got 1.0"),
        (["--momentum", "0"], "momentum must be more than 0"),
        (["--finetune-corruption", "1"], "finetune_corruption must be in [0, 1), got 1.0"),
        (
            ["--finetune-corruption", "0.2"],  # every arm, the full-batch ones too
            "would give cg-full, lbfgs-full one dropout mask for the whole run",
        ),
        (["--arms", "sgd", "adam"], "arms[1] must be one of 'sgd', 'sgd-momentum'"),
        (["--seeds", "1", "1"], "give each one once"),
        (["--seeds", "-1"], "seeds[0] must be in [0, 4294967295], got -1"),
        (["--hidden-layers", "10", "10", "10", "10"], "one level per layer"),
        (["--pretrained", "missing.npz"], "pretrained missing.npz: no such file"),
        (["--pretrained", "."], "pretrained .: is a folder"),
        (["--thresholds", "-5"], "thresholds[0] must be in (0, 100], got -5.0"),
        (["--thresholds", "2", "0"], "thresholds[1] must be in (0, 100], got 0.0"),
    ],
)
def test_bad_flags_are_refused_before_any_work(flags, message, tmp_path, capsys):
    assert main([*flags, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_comparison_json_records_the_spacing_each_arm_measured_at(tmp_path):
    # measurements come between updates: an --eval-every below one update cannot be what was used
    out = tmp_path / "out"
    assert (
        main(
            [
                "--dataset",
                "digits",
                "--n-train",
                "200",
                "--hidden-layers",
                "10",
                "--pretrain-epochs",
                "0",
                "--arms",
                "sgd",
                "--cg-batch-size",
                "100",
                "--seeds",
                "1",
                "--budget-passes",
                "0.5",
                "--eval-every",
                "1e-7",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    recorded = json.loads((out / "comparison.json").read_text())["settings"]
    assert recorded["eval_every"] == 1e-7  # the setting as given, beside what it came to
    assert recorded["measured_every"] == {"sgd": pytest.approx(SGD_BATCH / 200)}  # one update


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--data", "missing-folder"], "missing-folder"),
        (["--cg-batch-size", "600"], "cg_batch_size 600 is larger than the 500 training rows"),
        (["--hidden-layers", "30"], "the layer sizes differ"),  # weights of a 40-unit layer
        # refused, not silently cut to 500 while the table would still say 600
        (["--sensitivity-m", "100", "600"], "sensitivity_m 600 is larger than the 500 training rows"),
        (["--sgd-batch-size", "501"], "sgd_batch_size 501 is larger than the 500 training rows"),
    ],
)
def test_bad_data_or_weights_leave_no_folder(
    flags, message, comparison, shared_data, tmp_path, monkeypatch, capsys
):
    pretrained = comparison[0] / "pretrained.npz"
    monkeypatch.chdir(tmp_path)  # without --out the folder would be made under runs/ here
    given = ["--data", str(shared_data), *SMALL, "--pretrained", str(pretrained), *flags]
    assert main(given) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1 and message in error
    assert list(tmp_path.iterdir()) == []


def test_one_seed_claims_no_spread_and_the_backend_is_the_one_used(tmp_path, monkeypatch):
    # the backend is read when the files are written, after --mode switched it
    monkeypatch.setattr(engine, "BACKEND", "the backend in use")
    out = tmp_path / "one"
    assert (
        main(
            [
                "--dataset",
                "digits",
                "--hidden-layers",
                "20",
                "--pretrain-epochs",
                "1",
                "--arms",
                "sgd",
                "--seeds",
                "4",
                "--budget-passes",
                "0.5",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["settings"]["backend"] == "the backend in use"
    text = (out / "comparison.md").read_text()
    assert "Backend: the backend in use" in text
    mean, sd, count = saved["summary"][0]["best_valid_error"]
    assert (sd, count) == (None, 1)
    row = next(line for line in text.splitlines() if line.startswith("| sgd |"))
    assert "±" not in row and f"{100 * mean:.2f}" in row


@pytest.mark.floats
def test_the_sgd_arms_dropout_masks_follow_the_seed_alone(tmp_path):
    """With input dropout, seed 2's SGD run is the same whether seed 1 ran
    before it in the same process or not: each run reseeds the masks."""
    common = [
        "--dataset",
        "digits",
        "--hidden-layers",
        "20",
        "--pretrain-epochs",
        "1",
        "--arms",
        "sgd",
        "--budget-passes",
        "1",
        "--finetune-corruption",
        "0.3",
    ]
    assert main([*common, "--seeds", "1", "2", "--out", str(tmp_path / "both")]) == 0
    pretrained = str(tmp_path / "both" / "pretrained.npz")
    assert main([*common, "--pretrained", pretrained, "--seeds", "2", "--out", str(tmp_path / "alone")]) == 0
    both = json.loads((tmp_path / "both" / "comparison.json").read_text())
    alone = json.loads((tmp_path / "alone" / "comparison.json").read_text())
    assert both["settings"]["finetune_corruption"] == 0.3
    after_seed_1, seed_2 = both["histories"]["sgd"][1], alone["histories"]["sgd"][0]
    assert [r["train_loss"] for r in after_seed_1] == [r["train_loss"] for r in seed_2]
    assert both["histories"]["sgd"][0][-1]["train_loss"] != seed_2[-1]["train_loss"]
