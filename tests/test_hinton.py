"""The ``hinton`` reproduction and what it added below it: the data rearranged (training on the
validation rows, validating on a seeded half of the test rows), SGD under a pass budget in
``sda.run``, the test error at every evaluation, and fine-tuning from ``--pretrained`` weights."""

import csv
import json

import numpy as np
import pytest

from sda import reproduce
from sda.cli import settings_from_args
from sda.compare import DEFAULTS as COMPARE_DEFAULTS
from sda.compare import CompareSettings
from sda.compare import build_parser as compare_parser
from sda.data import DataError, halve_test_rows, load_dataset, rearrange, shared_dataset
from sda.errors import SettingError
from sda.experiments import writers
from sda.experiments.hinton import HintonSettings, reproduce_hinton
from sda.finetune import MinibatchSGD, Monitor, PassBudget, PatienceRule, classifier_monitor, finetune
from sda.run import main as main_run
from sda.rundir import METRICS, save_params
from sda.SdA import SdA

TINY = dict(
    dataset="digits",
    n_train=200,
    n_valid=60,
    n_test=60,
    hidden_layers=(16, 16),
    corruption_levels=(0.1, 0.2),
    pretrain_epochs=2,
    seeds=(1,),
    budget_passes=2.0,
    eval_every=0.5,
    cg_batch_size=100,
    warmup_epochs=1,
)
TINY_FLAGS = ["--dataset", "digits", "--n-train", "200", "--n-valid", "60", "--n-test", "60"]
TINY_FLAGS += ["--hidden-layers", "16", "16", "--corruption-levels", "0.1", "0.2", "--pretrain-epochs", "2"]
TINY_FLAGS += ["--seeds", "1", "--budget-passes", "2", "--eval-every", "0.5", "--cg-batch-size", "100"]
TINY_FLAGS += ["--warmup-epochs", "1"]


# ---------------------------------------------------------------- the data
def test_the_test_halves_are_a_seeded_permutation_disjoint_covering_and_swapped():
    a, b = halve_test_rows(1001, split_seed=7)
    assert len(a) == 500 and len(b) == 501 and not set(a) & set(b)
    assert sorted([*a, *b]) == list(range(1001))
    assert not np.array_equal(a, np.arange(500))  # never a cut by position
    again, other = halve_test_rows(1001, split_seed=7), halve_test_rows(1001, split_seed=8)
    assert np.array_equal(again[0], a) and not np.array_equal(other[0], a)

    digits = load_dataset("digits").subset(100, 50, 40)
    first, second = rearrange(digits, valid_from="test-a"), rearrange(digits, valid_from="test-b")
    assert np.array_equal(first.valid.x, second.test.x) and np.array_equal(first.test.y, second.valid.y)
    rows = {tuple(r) for r in digits.test.x}
    assert {tuple(r) for r in first.valid.x} | {tuple(r) for r in first.test.x} == rows
    assert np.array_equal(first.train.x, digits.train.x)  # training stays as it was
    assert rearrange(digits) is digits


def test_training_on_the_validation_rows_appends_them_and_keeps_the_validation_set():
    digits = load_dataset("digits").subset(100, 50, 40)
    both = rearrange(digits, train_on_valid=True)
    assert np.array_equal(both.train.x, np.concatenate([digits.train.x, digits.valid.x]))
    assert np.array_equal(both.train.y[100:], digits.valid.y) and both.valid is digits.valid


def test_a_bad_rearrangement_is_refused():
    digits = load_dataset("digits").subset(100, 50, 1)
    with pytest.raises(SettingError, match="valid_from must be one of"):
        rearrange(digits, valid_from="test")
    with pytest.raises(DataError, match="cannot halve 1 test row"):
        rearrange(digits, valid_from="test-a")


# ------------------------------------------------------- the test error measured everywhere
def sgd_run(test_every):
    digits = load_dataset("digits").subset(200, 50, 50)
    shared = [shared_dataset(s) for s in (digits.train, digits.valid, digits.test)]
    model = SdA(np.random.RandomState(0), n_ins=64, hidden_layers_sizes=(32,), corruption_levels=(0.1,))
    train_fn, _, _ = model.build_finetune_functions(shared, batch_size=20, learning_rate=0.1)
    monitor = classifier_monitor(model, shared, PassBudget(0.5, 2.0), test_every=test_every)
    return finetune(model, MinibatchSGD(train_fn, 200, 20), monitor).history


def test_the_test_error_is_measured_at_every_evaluation_when_asked():
    every, at_best = sgd_run(True), sgd_run(False)
    assert [r.passes for r in every] == [0, 0.5, 1, 1.5, 2]
    assert all(0 <= r.current_test_error <= 1 for r in every)
    assert all(r.current_test_error is None for r in at_best)
    # the same training: the test error at the best point agrees with the one measured there
    assert [r.test_error for r in every] == [r.test_error for r in at_best]
    best = min(range(len(every)), key=lambda i: (every[i].valid_error, i))
    assert every[-1].test_error == every[best].current_test_error


def test_test_every_needs_a_pass_budget_and_a_test_error():
    with pytest.raises(SettingError, match="test_every measures"):
        Monitor(PatienceRule(), [], lambda: 0.0, lambda: 0.0, test_every=True)
    with pytest.raises(SettingError, match="test_every measures"):
        Monitor(PassBudget(), [], lambda: 0.0, test_every=True)


# ------------------------------------------------------------------ sda.run
def metrics(folder):
    return [r for r in METRICS.read(folder) if r["phase"] == "finetune"]


def test_sgd_runs_under_a_pass_budget_with_the_test_error_at_every_point(tmp_path):
    argv = ["--preset", "demo", "--out", str(tmp_path), "--name", "r", "--pretrain-epochs", "1"]
    argv += ["--budget-passes", "2", "--eval-every", "0.5", "--test-every-eval"]
    assert main_run(argv) == 0
    rows = metrics(tmp_path / "r")
    assert [round(float(r["passes"]), 1) for r in rows] == [0, 0.5, 1, 1.5, 2]  # 1197 rows, minibatches of 10
    assert all(0 <= float(r["current_test_error"]) <= 1 for r in rows)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["stop_reason"] == "budget" and summary["passes"] == 2


@pytest.mark.parametrize(
    "flags, error",
    [
        (["--test-every-eval"], "test_every_eval measures at the evaluations of a pass budget"),
        (["--eval-every", "1"], "eval_every is read only under a pass budget"),
        (["--budget-passes", "1", "--patience", "5"], "patience is read only by the patience rule"),
        (["--pretrained", "missing.npz"], "pretrained missing.npz: no such file"),
        (["--valid-from", "test-a", "--split-seed", "-1"], "split_seed must be in [0, 4294967295]"),
    ],
)
def test_sda_run_refuses_what_it_would_ignore_or_cannot_use(flags, error, tmp_path, capsys):
    assert main_run(["--preset", "demo", "--out", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert error in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_a_run_from_pretrained_weights_skips_pre_training(tmp_path):
    model = SdA(
        np.random.RandomState(5), n_ins=64, hidden_layers_sizes=(100, 100), corruption_levels=(0.1, 0.2)
    )
    save_params(model, tmp_path / "w.npz")
    argv = ["--preset", "demo", "--out", str(tmp_path), "--name", "r", "--finetune-epochs", "1"]
    assert main_run([*argv, "--pretrained", str(tmp_path / "w.npz")]) == 0
    assert not [r for r in METRICS.read(tmp_path / "r") if r["phase"] == "pretrain"]
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["pretrain_final_costs"] == []


def test_pretrained_weights_of_other_layers_are_refused_before_a_run_folder(tmp_path, capsys):
    model = SdA(
        np.random.RandomState(5), n_ins=64, hidden_layers_sizes=(50, 50), corruption_levels=(0.1, 0.2)
    )
    save_params(model, tmp_path / "w.npz")
    assert (
        main_run(
            ["--preset", "demo", "--out", str(tmp_path / "runs"), "--pretrained", str(tmp_path / "w.npz")]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "w.npz" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------- the reproduction
def report(out):
    saved = json.loads((out / "hinton.json").read_text())
    with open(out / "hinton_curve.csv") as f:
        return saved["arms"], list(csv.reader(f))


def without_minutes(arms):
    """Each arm's seeds' figures, but the minutes (which differ from run to run)."""
    return {
        arm: {seed: {k: v for k, v in r.items() if k != "minutes"} for seed, r in found["seeds"].items()}
        for arm, found in arms.items()
    }


def test_hinton_writes_its_reports_and_resumes_to_the_same_numbers(tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    settings = HintonSettings(**TINY, out=str(whole)).check()
    result = reproduce_hinton(settings, "test")
    for arm in ("cg", "sgd"):
        found = result["arms"][arm]
        assert found["missing_seeds"] == [] and 0 <= found["seeds"]["1"]["test_error"] <= 1
        assert found["seeds"]["1"]["passes"] >= 2
    for name in ("hinton.md", "hinton_curve.png"):
        assert (whole / name).stat().st_size > 0
    # the cg arm trained on the 200 + 60 rows
    assert json.loads((whole / "seed-1" / "cg" / "config.json").read_text())["train_on_valid"] is True

    calls = {"n": 0}

    def stop_at(n):
        def on_epoch(record):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt

        return on_epoch

    settings = HintonSettings(**TINY, out=str(parts)).check()
    with pytest.raises(KeyboardInterrupt):
        reproduce_hinton(settings, "test", stop_at(3))  # in pre-training's second layer
    calls["n"] = 0
    with pytest.raises(KeyboardInterrupt):
        reproduce_hinton(settings, "test", stop_at(4))  # in the cg arm
    # the reports of a stopped reproduction say what is missing, and draw what is there
    arms, curve = report(parts)
    assert arms["cg"]["missing_seeds"] == arms["sgd"]["missing_seeds"] == [1]
    assert [row[:2] for row in curve[1:]] == [["cg", "1"]] * 2
    assert "Not finished yet: cg seeds 1; sgd seeds 1" in (parts / "hinton.md").read_text()
    reproduce_hinton(settings, "test")
    (arms_whole, curve_whole), (arms_parts, curve_parts) = report(whole), report(parts)
    assert without_minutes(arms_parts) == without_minutes(arms_whole) and curve_parts == curve_whole


def test_hinton_refuses_bad_settings_in_one_line(tmp_path, capsys):
    for flags, error in [
        (["--seeds", "1", "1"], "seeds 1 1: give each one once"),
        (["--budget-passes", "0"], "budget_passes must be more than 0"),
        (["--eval-every", "5", "--budget-passes", "2"], "eval_every 5 is more than the budget"),
        (["--hidden-layers", "10"], "corruption_levels has 2 values but there are 1 hidden layers"),
    ]:
        assert reproduce.main(["hinton", *TINY_FLAGS, *flags, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert error in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


def test_a_damaged_pre_training_checkpoint_says_to_pre_train_that_seed_again(tmp_path, capsys):
    def stop_in_the_second_layer(record):
        if record.get("layer") == 1:
            raise KeyboardInterrupt

    settings = HintonSettings(**TINY, out=str(tmp_path)).check()
    with pytest.raises(KeyboardInterrupt):
        reproduce_hinton(settings, "test", stop_in_the_second_layer)
    folder = tmp_path / "seed-1" / "pretrain"
    (folder / "checkpoint.npz").write_bytes(b"junk")
    flags = ["--seeds", "1", "--budget-passes", "2", "--eval-every", "0.5", "--cg-batch-size", "100"]
    assert (
        reproduce.main(["hinton", *TINY_FLAGS, *flags, "--warmup-epochs", "1", "--out", str(tmp_path)]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith(f"delete the folder {folder} to pre-train this network again")


# ------------------------------------------------------------------ writers
WRITERS = ["writers", "--dataset", "digits", "--n-train", "200", "--n-valid", "60", "--n-test", "60"]
WRITERS += ["--hidden-layers", "16", "16", "--pretrain-epochs", "1", "--seeds", "1", "2"]
WRITERS += ["--budget-passes", "1", "--cg-batch-size", "100"]


def test_writers_reports_every_arm_and_source_and_resumes_to_the_same_numbers(tmp_path, monkeypatch):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert reproduce.main([*WRITERS, "--out", str(whole)]) == 0
    runs = json.loads((whole / "writers.json").read_text())["runs"]
    assert list(runs) == [f"{a} / {s}" for a in ("sgd", "cg-hs2006") for s in ("valid", "test-a", "test-b")]
    for entry in runs.values():
        assert entry["missing_seeds"] == [] and set(entry["seeds"]) == {"1", "2"}
        for seed in entry["seeds"].values():
            assert seed["gap"] == seed["test_error"] - seed["valid_error"]
    # validating on one half and on the other: different rows, so different errors
    assert runs["sgd / test-a"]["seeds"] != runs["sgd / test-b"]["seeds"]
    assert "| cg-hs2006 / test-b |" in (whole / "writers.md").read_text()

    real_run_arm, calls = writers.run_arm, {"n": 0}

    def stop_at_the_fifth(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_run_arm(*args, **kwargs)

    monkeypatch.setattr(writers, "run_arm", stop_at_the_fifth)
    assert reproduce.main([*WRITERS, "--out", str(parts)]) == 130
    partial = json.loads((parts / "writers.json").read_text())["runs"]
    assert partial["cg-hs2006 / valid"]["missing_seeds"] == [] and partial["sgd / test-a"][
        "missing_seeds"
    ] == [
        1,
        2,
    ]
    monkeypatch.setattr(writers, "run_arm", real_run_arm)
    done_before = {p.name: p.stat().st_mtime_ns for p in (parts / "runs").iterdir()}
    assert reproduce.main([*WRITERS, "--out", str(parts)]) == 0
    assert all((parts / "runs" / name).stat().st_mtime_ns == t for name, t in done_before.items())
    assert json.loads((parts / "writers.json").read_text())["runs"] == runs


def test_writers_refuses_bad_settings_before_writing(tmp_path, capsys):
    for flags, error in [
        (["--seeds", "3", "3"], "seeds 3 3: give each one once"),
        (["--split-seed", "-2"], "split_seed must be in"),
        (["--cg-batch-size", "500"], "cg_batch_size 500 is larger than the 200 training rows"),
        (["--out", str(tmp_path / "x"), "--budget-passes", "-1"], "budget_passes must be more than 0"),
    ]:
        assert reproduce.main([*WRITERS, "--out", str(tmp_path / "x"), *flags]) == 2
        err = capsys.readouterr().err
        assert error in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


def test_sda_compare_takes_the_validation_source_as_a_flag():
    args = compare_parser().parse_args(["--valid-from", "test-b", "--split-seed", "4", "--train-on-valid"])
    settings = settings_from_args(args, CompareSettings, COMPARE_DEFAULTS)
    assert (settings.valid_from, settings.split_seed, settings.train_on_valid) == ("test-b", 4, True)
