"""The run folder: config, per-epoch metrics, the model and a summary.

Parameters are stored as ``.npz`` keyed by ``SdA.named_params()`` names and
read back with ``allow_pickle=False``: a model file can never run code.
Every file is written to a temporary name first and then renamed, so a run
killed mid-write leaves the previous version intact.
"""

import csv
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def atomic_write(path, write):
    """Call ``write(file_object)`` on a temporary file, then rename it to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_params(model, path):
    """Write every named parameter of ``model`` to the ``.npz`` file ``path``."""
    values = {name: p.get_value() for name, p in model.named_params().items()}
    atomic_write(path, lambda f: np.savez(f, **values))


def load_params(model, path):
    """Set ``model``'s parameters from an ``.npz`` written by ``save_params``."""
    params = model.named_params()
    with np.load(path, allow_pickle=False) as stored:
        missing = sorted(set(params) - set(stored.files))
        extra = sorted(set(stored.files) - set(params))
        if missing or extra:
            raise ValueError(
                f"{path} does not fit this model (missing {missing}, unexpected {extra}): "
                "build the model with the same layer sizes and decoder setting as the saved one"
            )
        for name, p in params.items():
            value = stored[name]
            if value.shape != p.get_value(borrow=True).shape:
                raise ValueError(
                    f"{path}: {name} has shape {value.shape}, the model expects "
                    f"{p.get_value(borrow=True).shape}: the layer sizes differ"
                )
            p.set_value(value.astype(p.dtype))


class RunDir:
    """A folder holding one run's files."""

    METRICS = ["phase", "layer", "epoch", "cost", "valid_error", "best_valid_error",
               "test_error", "seconds"]

    def __init__(self, path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    @classmethod
    def create(cls, out, name):
        """A new folder under ``out``; refuses to reuse an existing one."""
        path = Path(out) / name
        if path.exists():
            raise FileExistsError(f"run folder {path} exists already: choose another --name")
        return cls(path)

    @staticmethod
    def default_name(preset):
        return time.strftime("%Y%m%d-%H%M%S") + f"-{preset}"

    def write_json(self, filename, obj):
        text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
        atomic_write(self.path / filename, lambda f: f.write(text.encode()))

    STEPS = ["phase", "layer", "epoch", "step", "cost"]

    def _append(self, filename, fields, record):
        path = self.path / filename
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(record)

    def append_metrics(self, record):
        """Add one per-epoch row to ``metrics.csv`` (the header comes with the first)."""
        self._append("metrics.csv", self.METRICS, record)

    def append_step(self, record):
        """Add one minibatch's cost to ``steps.csv``."""
        self._append("steps.csv", self.STEPS, record)

    def rewind(self, metrics_rows, last_step):
        """Drop what a killed run wrote after its checkpoint: rows of
        ``metrics.csv`` past ``metrics_rows`` and of ``steps.csv`` past ``last_step``."""
        for filename, keep in [("metrics.csv", lambda i, row: i < metrics_rows),
                               ("steps.csv", lambda i, row: int(row["step"]) <= last_step)]:
            path = self.path / filename
            if not path.exists():
                continue
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                fields, rows = reader.fieldnames, [r for i, r in enumerate(reader) if keep(i, r)]
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
            atomic_write(path, lambda f, text=text: f.write(text.getvalue().encode()))

    def save_model(self, model, filename="model.npz"):
        save_params(model, self.path / filename)
