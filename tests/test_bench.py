"""The pre-training benchmark runs end to end (``--quick``) and writes complete results."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_quick_benchmark_writes_every_figure(shared_data, tmp_path):
    out = tmp_path / "b.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.pretrain", "--quick", "--out", str(out)],
        cwd=REPO, env={**os.environ, "SDA_DATA": str(shared_data)},
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "samples/s" in done.stdout and "uncached/cached" in done.stdout
    results = json.loads(out.read_text())

    step = results["step"]
    assert [row["batch_size"] for row in step["batch_sizes"]] == [1, 20, 100]
    for row in step["batch_sizes"]:
        rates = row["samples_per_second"]
        assert {"sda", "numpy"} <= set(rates)
        assert all(rate > 0 for rate in rates.values())
        others = set(rates) - {"sda"}
        assert set(row["ratios"]) == {f"sda/{name}" for name in others}
        for name in others:
            assert row["ratios"][f"sda/{name}"] == rates["sda"] / rates[name]
    assert set(rates) | set(step["skipped"]) == {"sda", "numpy", "numpy+MKL", "torch"}

    layers = results["layer_epochs"]["layers"]
    assert [row["layer"] for row in layers] == [1, 2, 3]
    for row in layers:
        assert row["uncached_seconds"] > 0 and row["cached_seconds"] > 0
        assert row["uncached/cached"] == row["uncached_seconds"] / row["cached_seconds"]
    assert layers[0]["cache_seconds"] == 0 and layers[0]["uncached/cached"] == 1
    assert all(0 < row["cache_seconds"] < row["cached_seconds"] for row in layers[1:])

    assert results["full_pretraining"] is None  # --quick without --full
    assert results["finetune"]["epoch_seconds"] > 0 and results["finetune"]["valid_seconds"] > 0
    assert results["memory"]["peak_rss_bytes"] > results["memory"]["cache_bytes"] > 0
