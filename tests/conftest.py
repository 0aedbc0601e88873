"""Shared test fixtures."""

import os
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
