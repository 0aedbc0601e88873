"""``python -m sda.reproduce``: each reproduction starts, checks its settings and resumes exactly."""

import json

import numpy as np
import pytest

import sda.experiments.gradual
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


GRADUAL = [
    "gradual",
    "--dataset",
    "digits",
    "--hidden-layers",
    "12",
    "12",
    "--first-epochs",
    "1",
    "--upper-budget",
    "2",
    "--tune-epochs",
    "1",
    "--fractions",
    "0",
    "0.5",
    "1",
    "--sizes",
    "100",
    "300",
    "--finetune-epochs",
    "2",
    "--splits",
    "2",
    "--n-valid",
    "200",
]


def gradual_numbers(folder):
    """Every number of the report and every weight file, by name."""
    report = json.loads((folder / "gradual.json").read_text())
    del report["command"]
    arrays = {}
    for path in sorted(folder.glob("split-*/*.npz")):
        with np.load(path) as saved:
            arrays.update({f"{path.parent.name}/{path.name}/{k}": saved[k] for k in saved.files})
    return report, arrays


@pytest.fixture(scope="module")
def gradual_whole(tmp_path_factory):
    """The tiny reproduction, run once without a stop."""
    out = tmp_path_factory.mktemp("gradual") / "whole"
    assert reproduce.main([*GRADUAL, "--out", str(out)]) == 0
    return out


def test_gradual_writes_its_report_beside_the_paper(gradual_whole):
    report = json.loads((gradual_whole / "gradual.json").read_text())
    assert report["missing"] == []
    assert [r["fraction"] for r in report["fractions"]] == [0, 0.5, 1]
    assert all(r["n"] == 2 and r["sd"] > 0 and r["mean"] > 0 for r in report["fractions"])
    assert report["tuned"]["1"]["paper_mean"] == 10.38 and report["tuned"]["0"]["paper_mean"] == 9.61
    assert [c["size"] for c in report["classifiers"]] == [100, 300]
    assert all(len(c["arms"]["0"]["values"]) == 2 for c in report["classifiers"])
    assert "None: the reproduction is complete." in (gradual_whole / "gradual.md").read_text()
    for name in ("gradual_fraction.png", "gradual_classifier.png"):
        assert (gradual_whole / name).stat().st_size > 0
    assert not list(gradual_whole.glob("split-*/*checkpoint*"))  # finished stages leave no checkpoint


def test_gradual_stopped_in_stages_resumes_to_the_same_bits(gradual_whole, tmp_path, monkeypatch, capsys):
    parts = tmp_path / "parts"
    real_train, real_finetune = sda.experiments.gradual.train_gradual, sda.experiments.gradual.finetune

    def stop_at_pass(n):
        def train(*args, on_epoch, **kwargs):
            def stop(record):
                on_epoch(record)
                if record["phase"] == "gradual" and record["epoch"] == n:
                    raise KeyboardInterrupt

            return real_train(*args, on_epoch=stop, **kwargs)

        return train

    # 1: in split 0, the first gradual pass of f=0 (the pass is saved, then the stop)
    monkeypatch.setattr(sda.experiments.gradual, "train_gradual", stop_at_pass(0))
    assert reproduce.main([*GRADUAL, "--out", str(parts)]) == 130
    partial = json.loads((parts / "gradual.json").read_text())
    assert "split 0: f=0" in partial["missing"] and "split 1: first layer" in partial["missing"]
    assert "split 0: f=0" in (parts / "gradual.md").read_text()
    assert (parts / "split-0" / "dae_f0-checkpoint.npz").is_file()
    capsys.readouterr()

    # 2: in the middle of a classifier's fine-tuning, after a few saves
    monkeypatch.setattr(sda.experiments.gradual, "train_gradual", real_train)
    monkeypatch.setattr(sda.experiments.gradual, "FINETUNE_SAVE_EVERY", 4)

    def stop_finetuning(*args, **kwargs):
        def on_step(record):
            if record.step == 11:
                raise KeyboardInterrupt

        return real_finetune(*args, on_step=on_step, **kwargs)

    monkeypatch.setattr(sda.experiments.gradual, "finetune", stop_finetuning)
    assert reproduce.main([*GRADUAL, "--out", str(parts)]) == 130
    assert "f=0.00  gradual layer 1 epoch   0" not in capsys.readouterr().out  # the saved pass is kept
    [stopped] = (parts / "split-0").glob("classifier_*-checkpoint.npz")

    resumed_at = {}

    def record_start(*args, progress, **kwargs):
        resumed_at[len(resumed_at)] = progress and progress.steps
        return real_finetune(*args, progress=progress, **kwargs)

    monkeypatch.setattr(sda.experiments.gradual, "finetune", record_start)
    capsys.readouterr()
    assert reproduce.main([*GRADUAL, "--out", str(parts)]) == 0
    split_0 = capsys.readouterr().out.split("split 1 (seed")[0]
    assert "first layer  stacked" not in split_0 and "tune f=0  gradual" not in split_0  # done: skipped
    assert resumed_at[0] == 8  # the stopped classifier went on from its last save
    assert not stopped.exists()
    (report, arrays), (whole_report, whole_arrays) = gradual_numbers(parts), gradual_numbers(gradual_whole)
    assert report == whole_report
    assert arrays.keys() == whole_arrays.keys()
    for name, value in whole_arrays.items():
        np.testing.assert_array_equal(arrays[name], value, err_msg=name)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--splits", "0"], "splits must be"),
        (["--tune-epochs", "-1"], "tune_epochs must be"),
        (["--fractions", "0", "0.5"], "include both in --fractions"),
        (["--n-valid", "1497"], "--n-valid must be less than the 1497 training and validation rows"),
        (["--sizes", "1298"], "--sizes must lie in 1..1297"),
        (["--n-train", "1298"], "--n-train must be 1 to 1297"),
        (["--hidden-layers", "12"], "hidden_layers needs at least two layers"),
    ],
)
def test_gradual_refuses_nonsense_settings_in_one_line(tmp_path, capsys, flags, message):
    assert reproduce.main([*GRADUAL, *flags, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_gradual_folder_made_with_other_settings_is_refused(gradual_whole, capsys):
    assert reproduce.main([*GRADUAL, "--upper-budget", "4", "--out", str(gradual_whole)]) == 2
    assert "made with other settings (upper_budget)" in capsys.readouterr().err


def test_a_gradual_folder_in_use_is_refused(gradual_whole, capsys):
    with RunDir(gradual_whole):  # as another process training there would hold it
        assert reproduce.main([*GRADUAL, "--out", str(gradual_whole)]) == 2
    assert "is in use by another sda process" in capsys.readouterr().err
