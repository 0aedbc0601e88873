"""End to end: ``python -m sda.compare`` on a small MNIST subset with a tiny budget."""

import csv
import json
import subprocess
import sys

import pytest

from sda.compare import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BUDGET = 4
SMALL = ["--n-train", "500", "--n-valid", "300", "--n-test", "300", "--hidden-layers", "40",
         "--budget-passes", str(BUDGET)]


@pytest.fixture(scope="module")
def comparison(tmp_path_factory, shared_data):
    out = tmp_path_factory.mktemp("compare") / "out"
    done = subprocess.run(
        [sys.executable, "-m", "sda.compare", "--data", str(shared_data), *SMALL,
         "--pretrain-epochs", "1", "--autoencoder", "--out", str(out)],
        cwd=out.parent, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return out, done.stdout


def test_writes_the_table_the_data_and_both_plots(comparison):
    out, stdout = comparison
    assert {p.name for p in out.iterdir()} == {
        "comparison.csv", "comparison.json", "comparison.md", "pretrained.npz",
        "valid_error_vs_time.png", "valid_error_vs_passes.png"}
    for name in ("valid_error_vs_time.png", "valid_error_vs_passes.png"):
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE
    table = (out / "comparison.md").read_text()
    for label in ("SGD", "CG", "L-BFGS"):
        assert f"| {label} |" in table and f"| {label} |" in stdout
    assert "Deep auto-encoder" in table


def test_every_optimiser_has_sensible_numbers(comparison):
    out, _ = comparison
    rows = {row["method"]: row for row in csv.DictReader(open(out / "comparison.csv"))}
    assert list(rows) == ["sgd", "cg", "lbfgs"]
    for method, row in rows.items():
        # The untrained softmax layer gets about 90 % wrong; every optimiser must do better.
        assert 0 <= float(row["best_valid_error"]) < 0.85, method
        assert 0 <= float(row["test_error"]) < 0.85, method
        assert float(row["seconds"]) > 0
    assert float(rows["sgd"]["passes"]) == BUDGET
    for method in ("cg", "lbfgs"):
        row = rows[method]
        # The budget is checked after each iteration, whose line search may overrun it.
        assert BUDGET <= int(row["passes"]) <= 2 * BUDGET
        assert int(row["fun_evals"]) >= 1 and int(row["grad_evals"]) >= 1
        assert row["stop_reason"] == "max_passes"


def test_json_keeps_every_record_and_the_autoencoder_result(comparison):
    out, _ = comparison
    saved = json.loads((out / "comparison.json").read_text())
    assert [r["method"] for r in saved["results"]] == ["sgd", "cg", "lbfgs"]
    assert len(saved["histories"]["sgd"]) == BUDGET
    for row in saved["results"][1:]:
        history = saved["histories"][row["method"]]
        assert len(history) == row["iterations"] and history[-1]["passes"] == row["passes"]
    autoencoder = saved["autoencoder"]
    assert autoencoder["valid_error_after"] < autoencoder["valid_error_before"]
    assert saved["settings"]["budget_passes"] == BUDGET


def test_reloaded_weights_give_the_same_start(comparison, shared_data, tmp_path, capsys):
    out, _ = comparison
    again = tmp_path / "again"
    code = main(["--data", str(shared_data), *SMALL, "--pretrained", str(out / "pretrained.npz"),
                 "--methods", "cg", "--out", str(again)])
    assert code == 0, capsys.readouterr().err
    first = {r["method"]: r for r in csv.DictReader(open(out / "comparison.csv"))}["cg"]
    second = next(csv.DictReader(open(again / "comparison.csv")))
    assert float(second["best_valid_error"]) == pytest.approx(float(first["best_valid_error"]),
                                                              abs=0.01)


@pytest.mark.parametrize("flags, message", [
    (["--budget-passes", "0"], "--budget-passes must be a positive integer"),
    (["--patience", "-2"], "--patience must be a positive integer"),
    (["--hidden-layers", "10", "10", "10", "10"], "one level per layer"),
    (["--pretrained", "missing.npz"], "--pretrained missing.npz: no such file"),
])
def test_bad_flags_are_refused_before_any_work(flags, message, tmp_path, capsys):
    assert main([*flags, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
