"""The default configuration on full MNIST (about 20 minutes on 2 cores): `python -m pytest -m slow`."""

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_default_run_reaches_the_tutorials_quality(tmp_path, shared_data):
    done = subprocess.run(
        [sys.executable, "-m", "sda.run", "--data", str(shared_data), "--out", str(tmp_path),
         "--name", "default", "--no-progress"],
        capture_output=True, text=True, timeout=5400,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "default" / "summary.json").read_text())
    assert summary["test_error"] <= 0.0140  # the tutorial reports 1.3 %; we promise 1.40 %
