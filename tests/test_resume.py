"""Checkpoints: a run killed, stopped or damaged, and ``--resume``."""

import csv
import json
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from sda.run import main

# Momentum makes the SGD velocities part of the state that must survive the kill, and
# the decaying learning rate must pick up its schedule at the epoch the run stopped in.
ARGS = [
    "--preset",
    "demo",
    "--pretrain-epochs",
    "3",
    "--finetune-epochs",
    "6",
    "--momentum",
    "0.5",
    "--finetune-lr-decay",
    "0.9",
    "--finetune-corruption",
    "0.2",
    "--checkpoint-every",
    "40",
    "--log-every",
    "7",
    "--no-progress",
]


def sda_run(*args):
    return [sys.executable, "-m", "sda.run", *args]


def resume_in_a_new_process(folder):
    """``python -m sda.run --resume folder`` as a user runs it: a process of its own, like the
    uninterrupted run, so nothing an earlier test loaded (another BLAS or OpenMP runtime, as
    ``import torch`` brings) changes the float results; returns its exit status."""
    return subprocess.run(sda_run("--resume", str(folder)), capture_output=True, text=True).returncode


def saved_phase(path):
    """The phase recorded in a checkpoint, or None while there is none."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            return json.loads(str(stored["state.json"]))["progress"]["phase"]
    except (FileNotFoundError, ValueError, OSError, KeyError):
        return None


def kill_when(phase, args, checkpoint):
    """Start a run and SIGKILL it as soon as it has saved a checkpoint in ``phase``."""
    process = subprocess.Popen(sda_run(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for_checkpoint(process, phase, checkpoint)
    process.kill()
    process.wait()
    assert process.returncode < 0  # killed, not finished


def wait_for_checkpoint(process, phase, checkpoint):
    """Return once ``process`` has saved a checkpoint in ``phase``."""
    deadline = time.monotonic() + 600
    while saved_phase(checkpoint) != phase:
        if process.poll() is not None:
            pytest.fail(f"the run ended before it could be killed: {process.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("no checkpoint appeared in 10 minutes")
        time.sleep(0.01)


def metric_rows(folder):
    """metrics.csv without the wall-time column, which differs between runs."""
    return [
        {k: v for k, v in row.items() if k != "seconds"}
        for row in csv.DictReader(open(folder / "metrics.csv"))
    ]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    done = subprocess.run(
        sda_run(*ARGS, "--out", str(out), "--name", "full"), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return out / "full"


@pytest.mark.floats
@pytest.mark.parametrize("phase", ["pretrain", "finetune"])
def test_killed_and_resumed_run_matches_the_uninterrupted_one(tmp_path, uninterrupted, phase):
    folder = tmp_path / "killed"
    kill_when(phase, [*ARGS, "--out", str(tmp_path), "--name", "killed"], folder / "checkpoint.npz")
    assert not (folder / "model.npz").exists()

    done = subprocess.run(sda_run("--resume", str(folder)), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"resuming: {phase}" in done.stdout
    assert_same_run(folder, uninterrupted)


def assert_same_run(folder, uninterrupted):
    """The same model bit for bit (one machine, one thread count), the same rows and summary."""
    with np.load(uninterrupted / "model.npz") as a, np.load(folder / "model.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert metric_rows(folder) == metric_rows(uninterrupted)
    assert (folder / "steps.csv").read_text() == (uninterrupted / "steps.csv").read_text()
    summaries = [json.loads((f / "summary.json").read_text()) for f in (uninterrupted, folder)]
    assert summaries[0]["test_error"] == summaries[1]["test_error"]
    assert summaries[1]["status"] == "done"


def test_resume_refuses_a_folder_that_is_not_a_run(tmp_path):
    done = subprocess.run(sda_run("--resume", str(tmp_path)), capture_output=True, text=True)
    assert done.returncode == 2 and "holds no config.json" in done.stderr
    assert main(["--resume", str(tmp_path / "nowhere")]) == 2


@pytest.mark.floats
def test_a_run_killed_before_its_first_checkpoint_starts_again_cleanly(tmp_path, uninterrupted):
    folder = tmp_path / "early"
    folder.mkdir()
    shutil.copy(uninterrupted / "config.json", folder)
    # what a run killed in its first epochs leaves: a few rows, the last one cut off
    for name in ("metrics.csv", "steps.csv"):
        lines = (uninterrupted / name).read_text().splitlines(keepends=True)
        (folder / name).write_text("".join(lines[:3]) + lines[3][:5], newline="")
    assert resume_in_a_new_process(folder) == 0
    assert_same_run(folder, uninterrupted)


@pytest.mark.floats
def test_ctrl_c_says_where_to_resume_and_the_resumed_run_matches(tmp_path, uninterrupted):
    folder = tmp_path / "stopped"
    # a shell starts background jobs with Ctrl-C ignored: give the run the default handling
    process = subprocess.Popen(
        sda_run(*ARGS, "--out", str(tmp_path), "--name", "stopped"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_for_checkpoint(process, "finetune", folder / "checkpoint.npz")
    process.send_signal(signal.SIGINT)
    stderr = process.communicate(timeout=300)[1]
    assert process.returncode == 130, stderr
    assert stderr.splitlines()[-1] == (
        f"interrupted: the run in {folder} was stopped; resume it with: python -m sda.run --resume {folder}"
    )
    assert "Traceback" not in stderr
    assert json.loads((folder / "summary.json").read_text())["status"] == "interrupted"
    assert not (folder / "model.npz").exists()
    assert resume_in_a_new_process(folder) == 0
    assert_same_run(folder, uninterrupted)


def test_resume_takes_no_other_settings(uninterrupted):
    done = subprocess.run(
        sda_run("--resume", str(uninterrupted), "--finetune-lr", "0.5"), capture_output=True, text=True
    )
    assert done.returncode == 2 and "--resume takes no other settings" in done.stderr


def snapshot(folder):
    return {p.name: p.read_bytes() if p.is_file() else "folder" for p in folder.iterdir()}


def edit_config(folder, **changes):
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def nan_weights(folder):
    path = folder / "checkpoint.npz"
    with np.load(path) as stored:
        arrays = {name: stored[name] for name in stored.files}
    arrays["hidden0.W"][0, 0] = np.nan
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def replace(folder, name, content):
    path = folder / name
    path.unlink()
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda f: edit_config(f, hidden_layers=[99, 100]),
            "checkpoint.npz does not match config.json: hidden0.W is float32 (64, 100), the model "
            "needs float32 (64, 99)",
        ),
        (lambda f: edit_config(f, colour="red"), "config.json has unknown settings ['colour']"),
        (lambda f: edit_config(f, hidden_layers="100"), "config.json: hidden_layers must be a list"),
        (lambda f: edit_config(f, seed=-4), "config.json: seed must be in [0, 4294967295]"),
        (lambda f: replace(f, "config.json", None), "config.json is a folder where a file should be"),
        (lambda f: replace(f, "config.json", b'{"seed": '), "config.json is not valid JSON"),
        (nan_weights, "checkpoint.npz holds non-finite values in hidden0.W"),
        (
            lambda f: replace(f, "checkpoint.npz", (f / "checkpoint.npz").read_bytes()[:500]),
            "checkpoint.npz is not a valid checkpoint",
        ),
        (lambda f: replace(f, "checkpoint.npz", None), "checkpoint.npz is a folder"),
        (
            lambda f: replace(f, "metrics.csv", b"phase,epoch\r\nfinetune,1\r\n"),
            "metrics.csv is damaged: columns ['layer', 'cost'",
        ),
        (
            lambda f: replace(f, "metrics.csv", (f / "metrics.csv").read_bytes().replace(b",0,", b",x,", 1)),
            "metrics.csv is damaged: line 2: column layer holds 'x'",
        ),
        (lambda f: replace(f, "steps.csv", bytes(range(256))), "steps.csv is not a text file"),
        (
            lambda f: replace(
                f, "metrics.csv", b"".join((f / "metrics.csv").read_bytes().splitlines(keepends=True)[:2])
            ),
            "metrics.csv holds 1 rows but the checkpoint was saved after",
        ),
    ],
)
def test_resume_refuses_a_damaged_or_foreign_folder_and_touches_nothing(
    tmp_path, uninterrupted, capsys, damage, message
):
    folder = shutil.copytree(uninterrupted, tmp_path / "copy")
    damage(folder)
    before = snapshot(folder)
    assert main(["--resume", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert message in err
    assert snapshot(folder) == before


# Mini-batch CG checkpoints after every batch; 150-row batches give several per epoch.
CG_ARGS = [
    "--preset",
    "demo",
    "--pretrain-epochs",
    "2",
    "--finetune",
    "cg",
    "--finetune-batch-size",
    "150",
    "--budget-passes",
    "6",
    "--no-progress",
]


@pytest.mark.floats
def test_a_killed_cg_run_resumes_exactly(tmp_path):
    done = subprocess.run(
        sda_run(*CG_ARGS, "--out", str(tmp_path), "--name", "full"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "killed"
    kill_when("finetune", [*CG_ARGS, "--out", str(tmp_path), "--name", "killed"], folder / "checkpoint.npz")
    assert not (folder / "model.npz").exists()
    done = subprocess.run(sda_run("--resume", str(folder)), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "resuming: finetune" in done.stdout
    assert_same_run(folder, tmp_path / "full")


# The modern fine-tuning recipe adds state a resume must restore: hidden-dropout masks drawn
# from the same generator, the momentum ramp's position, the max-norm-constrained weights.
RECIPE_ARGS = [
    *ARGS,
    "--finetune-hidden-dropout",
    "0.3",
    "--max-norm",
    "2.0",
    "--momentum-ramp",
    "0.9",
    "--momentum-ramp-epochs",
    "4",
]


@pytest.mark.floats
def test_a_killed_run_with_the_fine_tuning_recipe_resumes_exactly(tmp_path):
    done = subprocess.run(
        sda_run(*RECIPE_ARGS, "--out", str(tmp_path), "--name", "full"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "killed"
    kill_when(
        "finetune", [*RECIPE_ARGS, "--out", str(tmp_path), "--name", "killed"], folder / "checkpoint.npz"
    )
    assert resume_in_a_new_process(folder) == 0
    assert_same_run(folder, tmp_path / "full")
