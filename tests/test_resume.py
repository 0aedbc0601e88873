"""Checkpoints: a run killed and resumed ends exactly where an uninterrupted one does."""

import csv
import json
import subprocess
import sys
import time

import numpy as np
import pytest

# Momentum makes the SGD velocities part of the state that must survive the kill.
ARGS = ["--preset", "demo", "--pretrain-epochs", "3", "--finetune-epochs", "20", "--momentum", "0.5",
        "--checkpoint-every", "40", "--log-every", "7", "--no-progress"]


def sda_run(*args):
    return [sys.executable, "-m", "sda.run", *args]


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
    deadline = time.monotonic() + 600
    while saved_phase(checkpoint) != phase:
        if process.poll() is not None:
            pytest.fail(f"the run ended before it could be killed: {process.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("no checkpoint appeared in 10 minutes")
        time.sleep(0.01)
    process.kill()
    process.wait()
    assert process.returncode < 0  # killed, not finished


def metric_rows(folder):
    """metrics.csv without the wall-time column, which differs between runs."""
    return [{k: v for k, v in row.items() if k != "seconds"}
            for row in csv.DictReader(open(folder / "metrics.csv"))]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    done = subprocess.run(sda_run(*ARGS, "--out", str(out), "--name", "full"),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return out / "full"


@pytest.mark.parametrize("phase", ["pretrain", "finetune"])
def test_killed_and_resumed_run_matches_the_uninterrupted_one(tmp_path, uninterrupted, phase):
    folder = tmp_path / "killed"
    kill_when(phase, [*ARGS, "--out", str(tmp_path), "--name", "killed"], folder / "checkpoint.npz")
    assert not (folder / "model.npz").exists()

    done = subprocess.run(sda_run("--resume", str(folder)), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"resuming: {phase}" in done.stdout

    with np.load(uninterrupted / "model.npz") as a, np.load(folder / "model.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert metric_rows(folder) == metric_rows(uninterrupted)
    assert (folder / "steps.csv").read_text() == (uninterrupted / "steps.csv").read_text()
    summaries = [json.loads((f / "summary.json").read_text()) for f in (uninterrupted, folder)]
    assert summaries[0]["test_error"] == summaries[1]["test_error"]


def test_resume_refuses_a_folder_without_a_checkpoint(tmp_path):
    done = subprocess.run(sda_run("--resume", str(tmp_path)), capture_output=True, text=True)
    assert done.returncode == 2 and "no checkpoint.npz" in done.stderr


def test_resume_takes_no_other_settings(uninterrupted):
    done = subprocess.run(sda_run("--resume", str(uninterrupted), "--finetune-lr", "0.5"),
                          capture_output=True, text=True)
    assert done.returncode == 2 and "--resume takes no other settings" in done.stderr
