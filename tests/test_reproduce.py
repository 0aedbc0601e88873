"""``python -m sda.reproduce``: each reproduction starts, checks its settings and resumes exactly."""

import json

import numpy as np
import pytest

import sda.reproduce
from sda import reproduce
from sda.rundir import RunDir

TINY = ["--dataset", "digits", "--n-hidden", "16", "--n-filters", "16", "--epochs", "2"]


def weights(folder, level):
    with np.load(folder / f"corruption-{level:.2f}" / "checkpoint.npz") as saved:
        return saved["hidden0.W"]


def test_filters_writes_the_picture_and_a_report(tmp_path):
    assert reproduce.main(["filters", *TINY, "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "filters.json").read_text())
    assert [m["corruption"] for m in report["models"]] == [0.0, 0.3]
    assert all(len(m["epoch_costs"]) == 2 for m in report["models"])
    # the noisy auto-encoder reconstructs worse while training: its cost is higher
    assert report["models"][1]["epoch_costs"][-1] > report["models"][0]["epoch_costs"][-1]
    assert (tmp_path / "filters.png").stat().st_size > 0
    assert not np.array_equal(weights(tmp_path, 0.0), weights(tmp_path, 0.3))


def test_an_interrupted_reproduction_resumes_to_the_same_bits(tmp_path, monkeypatch):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert reproduce.main(["filters", *TINY, "--out", str(whole)]) == 0

    monkeypatch.setattr(sda.reproduce, "CHECKPOINT_EVERY", 7)
    real_pretrain = sda.reproduce.pretrain

    def stop_after_30_steps(*args, **kwargs):
        def on_step(record):
            if record["step"] == 30:
                raise KeyboardInterrupt

        return real_pretrain(*args, on_step=on_step, **kwargs)

    monkeypatch.setattr(sda.reproduce, "pretrain", stop_after_30_steps)
    assert reproduce.main(["filters", *TINY, "--out", str(parts)]) == 130
    monkeypatch.setattr(sda.reproduce, "pretrain", real_pretrain)
    assert reproduce.main(["filters", *TINY, "--out", str(parts)]) == 0
    for level in (0.0, 0.3):
        np.testing.assert_array_equal(weights(parts, level), weights(whole, level))
    costs = [json.loads((f / "filters.json").read_text())["models"] for f in (whole, parts)]
    assert [m["epoch_costs"] for m in costs[0]] == [m["epoch_costs"] for m in costs[1]]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--corruption-levels", "0.3", "1.0"], "corruption_levels[1] must be in [0, 1), got 1.0"),
        (["--n-filters", "17"], "n_filters 17 is more than the 16 hidden units"),
        (["--learning-rate", "0"], "learning_rate must be more than 0, got 0.0"),
        (["--batch-size", "5000"], "batch_size 5000 is larger than the 1197 training rows"),
    ],
)
def test_filters_refuses_nonsense_settings_in_one_line(tmp_path, capsys, flags, message):
    assert reproduce.main(["filters", *TINY, *flags, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_folder_made_with_other_settings_is_refused(tmp_path, capsys):
    assert reproduce.main(["filters", *TINY, "--out", str(tmp_path)]) == 0
    assert reproduce.main(["filters", *TINY, "--learning-rate", "0.05", "--out", str(tmp_path)]) == 2
    assert "made with other settings (learning_rate)" in capsys.readouterr().err


def test_a_second_process_on_the_folder_is_refused_before_it_writes(tmp_path, capsys):
    with RunDir(tmp_path):  # another process working in the folder holds this lock
        assert reproduce.main(["filters", *TINY, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is in use by another sda process" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
    assert reproduce.main(["filters", *TINY, "--out", str(tmp_path)]) == 0  # free again


def test_a_damaged_checkpoint_says_how_to_train_that_model_again(tmp_path, capsys):
    assert reproduce.main(["filters", *TINY, "--out", str(tmp_path)]) == 0
    (tmp_path / "corruption-0.30" / "checkpoint.npz").write_bytes(b"junk")
    assert reproduce.main(["filters", *TINY, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert "checkpoint.npz is not a valid checkpoint file" in err
    assert f"delete the folder {tmp_path / 'corruption-0.30'} to train this auto-encoder again" in err


TUTORIAL = ["tutorial", "--dataset", "digits", "--n-train", "60", "--n-valid", "30", "--n-test", "30"]


def test_tutorial_stops_resumes_and_reports_beside_the_published_run(tmp_path, monkeypatch):
    out = ["--out", str(tmp_path)]
    real_run = sda.reproduce.run_sda

    def stop_in_finetuning(config, resume_dir=None):
        def on_epoch(record):
            if record["phase"] == "finetune":
                raise KeyboardInterrupt

        return real_run(config, resume_dir=resume_dir, on_epoch=on_epoch)

    monkeypatch.setattr(sda.reproduce, "run_sda", stop_in_finetuning)
    assert reproduce.main([*TUTORIAL, *out]) == 130
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "interrupted"

    calls = []
    monkeypatch.setattr(sda.reproduce, "run_sda", lambda *a, **k: calls.append(k) or real_run(*a, **k))
    assert reproduce.main([*TUTORIAL, *out]) == 0
    assert calls[0]["resume_dir"] == tmp_path / "run"  # continued, not started again
    report = json.loads((tmp_path / "tutorial.json").read_text())
    assert report["published"]["test_error"] == 0.013
    ours = report["ours"]
    assert ours["test_error_standard_error"] == pytest.approx(
        (ours["test_error"] * (1 - ours["test_error"]) / 30) ** 0.5
    )
    assert ours["finetune_epochs_run"] >= ours["best_epoch"] >= 1

    assert reproduce.main([*TUTORIAL, *out]) == 0  # finished: reported again without training
    assert len(calls) == 1
