"""Shared test fixtures."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

MNIST_FILES = (
    "mnist.pkl.gz",
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder holding the real MNIST files: $SDA_DATA, else <repo>/../shared/data."""
    folder = Path(os.environ.get("SDA_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
    missing = [name for name in MNIST_FILES if not (folder / name).is_file()]
    if missing:
        pytest.fail(
            f"MNIST files missing from {folder}: {', '.join(missing)}. "
            "Set SDA_DATA to the folder holding them (see shared/data/README.md)."
        )
    return folder


@pytest.fixture(scope="session")
def demo_run_once(tmp_path_factory) -> tuple[Path, str]:
    """``python -m sda.run --preset demo`` run once for every module that reads a finished run:
    its folder and what it printed. Tests read it through ``demo_run_copy``."""
    out = tmp_path_factory.mktemp("demo-run")
    done = subprocess.run(
        [sys.executable, "-m", "sda.run", "--preset", "demo", "--out", str(out), "--name", "demo"],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return out / "demo", done.stdout


@pytest.fixture(scope="module")
def demo_run_copy(demo_run_once, tmp_path_factory) -> Path:
    """Each test module's own copy of the demo run's folder: no module sees another's writes."""
    folder, _ = demo_run_once
    return Path(shutil.copytree(folder, tmp_path_factory.mktemp("runs") / "demo"))
