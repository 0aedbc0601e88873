"""``python -m sda.replot``: a finished run's curves drawn again from its CSV files."""

import shutil
import subprocess
import sys

import pytest
from matplotlib.image import imread

from sda.replot import main, replot

PNGS = {"pretrain_cost.png", "finetune_cost.png", "finetune_error.png", "steps_pretrain.png",
        "steps_finetune.png"}


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    done = subprocess.run(
        [sys.executable, "-m", "sda.run", "--preset", "demo", "--pretrain-epochs", "1",
         "--finetune-epochs", "2", "--log-every", "10", "--out", str(out), "--name", "r"],
        cwd=out, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return out / "r"


def test_writes_every_plot_into_the_run_folder(run_folder, tmp_path):
    folder = shutil.copytree(run_folder, tmp_path / "r")
    before = {p.name for p in folder.iterdir()}
    done = subprocess.run([sys.executable, "-m", "sda.replot", str(folder)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert {p.name for p in folder.iterdir()} - before == PNGS
    for name in PNGS:
        assert imread(folder / name).shape[:2] == (528, 768)  # plot_curves' 6.4 x 4.4 in at 120 dpi


def test_out_folder_and_a_run_without_steps(run_folder, tmp_path):
    assert main([str(run_folder), "--out", str(tmp_path / "plots")]) == 0
    assert {p.name for p in (tmp_path / "plots").iterdir()} == PNGS
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run_folder / "metrics.csv", bare)
    assert {p.name for p in replot(bare)} == {"pretrain_cost.png", "finetune_cost.png",
                                             "finetune_error.png"}


def test_a_folder_without_metrics_is_a_clear_error(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "holds no metrics.csv" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="python -m sda.run"):
        replot(tmp_path)
