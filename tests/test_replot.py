"""``python -m sda.replot``: a finished run's curves drawn again from its CSV files."""

import shutil
import subprocess
import sys

import pytest
from matplotlib.image import imread

from sda.errors import SdAError
from sda.replot import main, replot

PNGS = {
    "pretrain_cost.png",
    "finetune_cost.png",
    "finetune_error.png",
    "steps_pretrain.png",
    "steps_finetune.png",
}


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sda.run",
            "--preset",
            "demo",
            "--pretrain-epochs",
            "1",
            "--finetune-epochs",
            "2",
            "--log-every",
            "10",
            "--out",
            str(out),
            "--name",
            "r",
        ],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return out / "r"


def test_writes_every_plot_into_the_run_folder(run_folder, tmp_path):
    folder = shutil.copytree(run_folder, tmp_path / "r")
    before = {p.name for p in folder.iterdir()}
    done = subprocess.run(
        [sys.executable, "-m", "sda.replot", str(folder)], capture_output=True, text=True, timeout=120
    )
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
    assert {p.name for p in replot(bare)} == {"pretrain_cost.png", "finetune_cost.png", "finetune_error.png"}


def test_a_folder_without_metrics_is_a_clear_error(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "holds no metrics.csv" in capsys.readouterr().err
    with pytest.raises(SdAError, match="python -m sda.run"):
        replot(tmp_path)


@pytest.mark.parametrize(
    "name, damage, message",
    [
        ("metrics.csv", lambda text: text.replace(",cost,", ",kost,", 1), "columns ['cost'] are missing"),
        ("metrics.csv", lambda text: text.replace("pretrain,0,0,", "pretrain,0,0,x"), "holds 'x"),
        ("steps.csv", lambda text: "\0\x01\x02" + text, "it holds binary data"),
        ("steps.csv", lambda text: text.replace(",", ";"), "columns ['phase', 'layer'"),
    ],
)
def test_a_damaged_csv_is_named_and_nothing_is_drawn(run_folder, tmp_path, capsys, name, damage, message):
    folder = shutil.copytree(run_folder, tmp_path / "r")
    path = folder / name
    path.write_bytes(damage(path.read_bytes().decode()).encode())
    assert main([str(folder), "--out", str(tmp_path / "plots")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path} is damaged" in err and message in err
    assert not (tmp_path / "plots").exists()


def test_an_unusable_out_is_one_line(run_folder, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main([str(run_folder), "--out", str(tmp_path / "file" / "plots")]) == 2
    assert "it or a folder above it is a file" in capsys.readouterr().err


def test_the_help_says_what_is_drawn_and_from_what(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Plot a run's learning curves" in text and "from its metrics.csv and steps.csv" in text


def test_replot_imports_no_training_code():
    # It plots CSV files: the training loops, the optimisers (scipy.optimize) and the command
    # plumbing that builds models are not needed, so they are not loaded.
    done = subprocess.run(
        [sys.executable, "-c", "import sys, sda.replot; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert "sda.replot" in loaded
    assert not loaded & {"sda.cli", "sda.train", "sda.optimize", "sda.checkpoint", "scipy.optimize"}
