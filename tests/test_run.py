"""End to end: ``python -m sda.run`` on the offline demo, and its flags."""

import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytensor
import pytest

from sda import SdA
from sda.config import PRESETS, RunConfig, preset
from sda.data import load_dataset
from sda.run import build_parser, main, parse, run
from sda.rundir import load_params


def run_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "sda.run", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def demo_run(demo_run_copy, demo_run_once):
    return demo_run_copy, demo_run_once[1]


def test_demo_writes_every_file(demo_run):
    folder, stdout = demo_run
    assert sorted(p.name for p in folder.iterdir()) == [
        "checkpoint.npz",
        "config.json",
        "filters.png",
        "metrics.csv",
        "model.npz",
        "reconstructions.png",
        "steps.csv",
        "summary.json",
    ]
    config = RunConfig.from_json((folder / "config.json").read_text())
    assert config == preset("demo", out=config.out, name="demo")
    assert "test error" in stdout


def test_demo_metrics_have_a_row_per_epoch(demo_run):
    folder, _ = demo_run
    rows = list(csv.DictReader(open(folder / "metrics.csv")))
    demo = preset("demo")
    pre = [r for r in rows if r["phase"] == "pretrain"]
    fine = [r for r in rows if r["phase"] == "finetune"]
    assert len(pre) == demo.pretrain_epochs * len(demo.hidden_layers)
    assert [int(r["layer"]) for r in pre[:: demo.pretrain_epochs]] == [0, 1]
    assert 1 <= len(fine) <= demo.finetune_epochs
    assert float(pre[-1]["cost"]) < float(pre[demo.pretrain_epochs]["cost"])  # layer 1 learned


def test_demo_keeps_minibatch_costs(demo_run):
    folder, _ = demo_run
    rows = list(csv.DictReader(open(folder / "steps.csv")))
    steps = [int(r["step"]) for r in rows]
    every = preset("demo").log_every
    assert steps == list(range(every, every * (len(steps) + 1), every))
    assert {r["phase"] for r in rows} == {"pretrain", "finetune"}
    assert all(float(r["cost"]) > 0 for r in rows)


@pytest.mark.floats
def test_demo_model_and_summary_agree(demo_run):
    folder, _ = demo_run
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "done" and summary["warnings"] == []
    assert summary["test_error"] < 0.10  # 8x8 digits; chance is 90 %
    assert set(summary["seconds"]) == {"pretrain", "finetune", "total"}
    assert 50 < summary["peak_memory_mib"] < 4000
    demo = preset("demo")
    model = SdA(
        np.random.RandomState(0),
        n_ins=64,
        hidden_layers_sizes=demo.hidden_layers,
        n_outs=10,
        corruption_levels=demo.corruption_levels,
    )
    load_params(model, folder / "model.npz")
    test = load_dataset("digits").test
    predict = pytensor.function([model.x], model.logLayer.y_pred)
    # The same rows counted by another compilation: logits may differ in the last bits, which
    # flips an argmax only at a near-tie (one row moves the error by 1/300, far above 1e-6).
    assert np.mean(predict(test.x) != test.y) == pytest.approx(summary["test_error"], abs=1e-6)


def test_help_lists_every_setting():
    text = build_parser().format_help()
    for name in RunConfig.__dataclass_fields__:
        assert "--" + name.replace("_", "-") in text


def test_tutorial_preset_is_the_original():
    config, _ = parse(["--preset", "tutorial"])
    assert (config.pretrain_batch_size, config.finetune_batch_size) == (1, 1)
    assert (config.pretrain_lr, config.finetune_lr) == (0.001, 0.1)
    assert (config.pretrain_epochs, config.finetune_epochs) == (15, 1000)
    assert config.hidden_layers == (1000, 1000, 1000)
    assert config.corruption_levels == (0.1, 0.2, 0.3)
    assert (config.patience, config.patience_unit) == (10, "epochs")
    assert (config.patience_increase, config.improvement_threshold) == (2.0, 0.995)


def test_flags_override_the_preset():
    config, _ = parse(
        [
            "--preset",
            "demo",
            "--hidden-layers",
            "30",
            "40",
            "50",
            "--corruption-levels",
            "0.1",
            "0.1",
            "0.3",
            "--no-cached",
        ]
    )
    assert config.hidden_layers == (30, 40, 50) and config.cached is False
    assert config.dataset == PRESETS["demo"]["dataset"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--finetune-lr", "-1"], "finetune_lr must be more than 0, got -1.0"),
        (["--pretrain-batch-size", "0"], "pretrain_batch_size must be at least 1, got 0"),
        (["--hidden-layers", "10", "10", "10"], "one level per layer"),
        (["--patience-increase", "0.5"], "patience_increase must be at least 1, got 0.5"),
        (["--improvement-threshold", "nan"], "improvement_threshold must be in (0, 1], got nan"),
        (["--corruption-levels", "1.0", "0.1"], "corruption_levels[0] must be in [0, 1), got 1.0"),
        (["--seed", str(2**40)], "seed must be in [0, 4294967295]"),
        (["--name", "../.."], "not a plain folder name"),
        (["--data", "/no/such/file.npz"], "/no/such/file.npz"),
        # given flags that the chosen optimiser would ignore, and batches the data cannot fill
        (["--line-searches", "3"], "line_searches is read only by --finetune cg or lbfgs"),
        (["--eval-every", "1"], "eval_every is read only under a pass budget"),
        (["--finetune", "cg", "--patience", "5"], "patience is read only by --finetune sgd"),
        (["--finetune-batch-size", "5000"], "finetune_batch_size 5000 is larger than the 1197 training"),
        (
            ["--finetune", "cg", "--n-train", "50", "--finetune-batch-size", "51"],
            "finetune_batch_size 51 is larger than the 50 training rows",
        ),
        (["--name", "tab\there"], "not a plain folder name"),
    ],
)
def test_bad_settings_fail_early_with_a_clear_error(tmp_path, capsys, args, message):
    assert main(["--preset", "demo", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())  # failed before making a run folder


def test_an_out_under_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["--preset", "demo", "--out", str(tmp_path / "file" / "runs")]) == 2
    assert "it or a folder above it is a file" in capsys.readouterr().err


def test_a_diverged_run_says_so_and_keeps_no_nan_model(tmp_path, capsys):
    folder = tmp_path / "nan"
    assert (
        main(
            [
                "--preset",
                "demo",
                "--pretrain-epochs",
                "1",
                "--finetune-lr",
                "1e30",
                "--out",
                str(tmp_path),
                "--name",
                "nan",
                "--no-progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "fine-tuning diverged" in err and err.count("\n") == 1
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "diverged" and "TrainingDiverged" in summary["error"]
    assert not (folder / "model.npz").exists() and not (folder / "filters.png").exists()
    with np.load(folder / "checkpoint.npz") as stored:  # the last good point: after pre-training
        assert all(np.isfinite(stored[name]).all() for name in stored.files if name != "state.json")


def test_run_reports_each_epoch_to_on_epoch_and_stops_when_it_raises(tmp_path):
    class Enough(Exception):
        pass

    records = []

    def on_epoch(record):
        records.append(record)
        if record["phase"] == "finetune":
            raise Enough

    config = preset("demo", pretrain_epochs=1, out=str(tmp_path), name="r", progress=False)
    with pytest.raises(Enough):
        run(config, on_epoch=on_epoch)
    assert [r["phase"] for r in records] == ["pretrain", "pretrain", "finetune"]
    assert {"epoch", "cost", "valid_error", "best_valid_error", "test_error"} <= set(records[-1])
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"].startswith("Enough")
    assert not (tmp_path / "r" / "model.npz").exists()


def test_a_config_json_edited_after_the_checkpoint_is_refused(tmp_path, capsys):
    run(preset("demo", pretrain_epochs=1, finetune_epochs=2, out=str(tmp_path), name="r", progress=False))
    folder = tmp_path / "r"
    config = json.loads((folder / "config.json").read_text())
    metrics = (folder / "metrics.csv").read_bytes()
    # e.g. cg -> sgd: SGD would carry on from CG's position and report nonsense
    (folder / "config.json").write_text(json.dumps({**config, "finetune_lr": 0.5}))
    assert main(["--resume", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "config.json differs from the settings" in err and "finetune_lr 0.1 -> 0.5" in err
    assert (folder / "metrics.csv").read_bytes() == metrics
    # where the folder lives and how it is shown do not change the training: those may differ
    (folder / "config.json").write_text(json.dumps({**config, "out": "moved", "progress": True}))
    assert main(["--resume", str(folder)]) == 0


@pytest.mark.parametrize("method, every", [("cg", None), ("lbfgs", 2.0)])
def test_batch_finetuning_from_the_command_line(tmp_path, method, every):
    spacing = ["--eval-every", str(every)] if every else []
    done = run_cli(
        "--preset",
        "demo",
        "--pretrain-epochs",
        "2",
        "--finetune",
        method,
        "--finetune-batch-size",
        "100",
        "--budget-passes",
        "10",
        *spacing,
        "--out",
        str(tmp_path),
        "--name",
        method,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / method / "summary.json").read_text())
    assert summary["status"] == "done" and summary["test_error"] < 0.15
    rows = [r for r in csv.DictReader(open(tmp_path / method / "metrics.csv")) if r["phase"] == "finetune"]
    passes = [float(r["passes"]) for r in rows]
    # one row per evaluation point, every --eval-every (default half a) pass-equivalent, until
    # the budget is spent: the first iteration past each multiple of it is measured, once
    every = every or 0.5
    steps = [math.floor(p / every + 1e-9) for p in passes]
    assert steps == sorted(set(steps)) and len(rows) >= 0.8 * 10 / every
    assert 10 <= passes[-1] < 11  # the last line search may overrun the budget a little
    # the summary says what was spent and why it stopped; its best point is in passes, not "epochs"
    assert summary["stop_reason"] == "budget" and summary["passes"] == pytest.approx(passes[-1])
    best = min(rows, key=lambda r: float(r["valid_error"]))
    assert summary["best_passes"] == pytest.approx(float(best["passes"]))
    assert f"of {passes[-1]:.2f} passes; stopped by budget" in done.stdout


def test_unknown_choices_are_refused_by_the_parser(capsys):
    for flag, value in [("--finetune", "adam"), ("--dataset", "nope"), ("--mode", "gpu")]:
        with pytest.raises(SystemExit) as stop:
            parse([flag, value])
        assert stop.value.code == 2 and f"invalid choice: '{value}'" in capsys.readouterr().err


def test_decoder_loss_and_sgd_options_reach_the_model(tmp_path):
    done = run_cli(
        "--preset",
        "demo",
        "--pretrain-epochs",
        "2",
        "--finetune-epochs",
        "5",
        "--no-tied",
        "--loss",
        "squared",
        "--momentum",
        "0.5",
        "--weight-decay",
        "1e-4",
        "--out",
        str(tmp_path),
        "--name",
        "options",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    with np.load(tmp_path / "options" / "model.npz") as stored:
        assert {"dA0.W_prime", "dA1.W_prime"} <= set(stored.files)  # untied decoders
        assert stored["dA0.W_prime"].shape == (100, 64)
    summary = json.loads((tmp_path / "options" / "summary.json").read_text())
    assert summary["test_error"] < 0.2
