"""``python -m sda.combine``: parts of a comparison made apart, combined into one table."""

import json

import pytest

from sda.combine import main as combine
from sda.compare import main as compare

SMALL = [
    "--dataset",
    "digits",
    "--hidden-layers",
    "20",
    "--eval-every",
    "0.5",
    "--cg-batch-size",
    "200",
    "--line-searches",
    "2",
]


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """Part A pre-trains and runs both arms to 2 pass-equivalents; B runs CG
    seed 2 from A's weights to 4; C is B's run as it would be with A's budget."""
    root = tmp_path_factory.mktemp("combine")
    assert (
        compare(
            [
                *SMALL,
                "--pretrain-epochs",
                "1",
                "--arms",
                "sgd",
                "cg-hs2006",
                "--seeds",
                "1",
                "--budget-passes",
                "2",
                "--out",
                str(root / "a"),
            ]
        )
        == 0
    )
    weights = str(root / "a" / "pretrained.npz")
    for name, budget in [("b", "4"), ("c", "2")]:
        assert (
            compare(
                [
                    *SMALL,
                    "--pretrained",
                    weights,
                    "--arms",
                    "cg-hs2006",
                    "--seeds",
                    "2",
                    "--budget-passes",
                    budget,
                    "--out",
                    str(root / name),
                ]
            )
            == 0
        )
    return root


def saved(folder):
    return json.loads((folder / "comparison.json").read_text())


@pytest.mark.floats
def test_a_cut_run_is_the_run_its_budget_would_have_made(parts, capsys):
    assert (
        combine(
            [
                "--folders",
                str(parts / "a"),
                str(parts / "b"),
                "--budget-passes",
                "2",
                "--out",
                str(parts / "ab"),
            ]
        )
        == 0
    )
    combined = saved(parts / "ab")
    assert [(r["arm"], r["seed"]) for r in combined["runs"]] == [
        ("sgd", 1),
        ("cg-hs2006", 1),
        ("cg-hs2006", 2),
    ]
    cut, reference = combined["runs"][2], saved(parts / "c")["runs"][0]
    assert saved(parts / "b")["runs"][0]["passes"] >= 4 > cut["passes"]
    # same process, same machine: the path is bit for bit the same; only the clock differs
    for key in ["best_valid_error", "test_error", "final_train_loss", "passes", "updates", "stop_reason"]:
        assert cut[key] == reference[key], key
    # the summary is over both CG seeds, and the table names its sources and the cut
    cg = next(entry for entry in combined["summary"] if entry["arm"] == "cg-hs2006")
    assert cg["seeds"] == 2 and cg["best_valid_error"][2] == 2
    text = (parts / "ab" / "comparison.md").read_text()
    assert "every run cut at 2 pass-equivalents" in text and str(parts / "b") in text
    assert "| cg-hs2006 |" in capsys.readouterr().out
    assert (parts / "ab" / "valid_error_vs_passes.png").stat().st_size > 0


def test_an_arm_run_with_other_settings_gets_rows_of_its_own(parts, capsys):
    """The same arm and seed at another batch size is another row, named by
    the setting that differs, not a duplicate and not mixed into one mean."""
    assert (
        compare(
            [
                *SMALL,
                "--cg-batch-size",
                "100",  # the last value given wins
                "--pretrained",
                str(parts / "a" / "pretrained.npz"),
                "--arms",
                "cg-hs2006",
                "--seeds",
                "2",
                "--budget-passes",
                "2",
                "--out",
                str(parts / "m100"),
            ]
        )
        == 0
    )
    assert (
        combine(
            [
                "--folders",
                str(parts / "a"),
                str(parts / "c"),
                str(parts / "m100"),
                "--out",
                str(parts / "mixed"),
            ]
        )
        == 0
    )
    combined = saved(parts / "mixed")
    assert [(r["arm"], r["seed"]) for r in combined["runs"]] == [
        ("sgd", 1),
        ("cg-hs2006 (cg_batch_size 200)", 1),
        ("cg-hs2006 (cg_batch_size 200)", 2),
        ("cg-hs2006 (cg_batch_size 100)", 2),
    ]
    assert [entry["seeds"] for entry in combined["summary"]] == [1, 2, 1]
    assert "| cg-hs2006 (cg_batch_size 100) |" in capsys.readouterr().out


def test_parts_with_and_without_input_dropout_are_rows_of_their_own(parts, tmp_path, capsys):
    """A part written before --finetune-corruption existed ran without dropout,
    and is labelled so beside one that used it."""
    assert (
        compare(
            [
                *SMALL,
                "--finetune-corruption",
                "0.2",
                "--pretrained",
                str(parts / "a" / "pretrained.npz"),
                "--arms",
                "cg-hs2006",
                "--seeds",
                "2",
                "--budget-passes",
                "2",
                "--out",
                str(tmp_path / "dropout"),
            ]
        )
        == 0
    )
    older = tmp_path / "older"
    older.mkdir()
    (older / "pretrained.npz").write_bytes((parts / "c" / "pretrained.npz").read_bytes())
    record = saved(parts / "c")
    del record["settings"]["finetune_corruption"]
    (older / "comparison.json").write_text(json.dumps(record))
    assert combine(["--folders", str(older), str(tmp_path / "dropout"), "--out", str(tmp_path / "both")]) == 0
    runs = saved(tmp_path / "both")["runs"]
    assert [r["arm"] for r in runs] == [
        "cg-hs2006 (finetune_corruption 0.0)",
        "cg-hs2006 (finetune_corruption 0.2)",
    ]
    assert runs[0]["final_train_loss"] != runs[1]["final_train_loss"]
    assert "| cg-hs2006 (finetune_corruption 0.2) |" in capsys.readouterr().out


def test_a_part_written_before_cg_batch_size_had_its_name_still_combines(parts, tmp_path, capsys):
    """Its comparison.json names CG's m finetune_batch_size: read as cg_batch_size, its runs
    share the rows of the parts that ran the same m."""
    older = tmp_path / "older"
    older.mkdir()
    (older / "pretrained.npz").write_bytes((parts / "c" / "pretrained.npz").read_bytes())
    record = saved(parts / "c")
    record["settings"]["finetune_batch_size"] = record["settings"].pop("cg_batch_size")
    (older / "comparison.json").write_text(json.dumps(record))
    assert combine(["--folders", str(parts / "a"), str(older), "--out", str(tmp_path / "both")]) == 0
    runs = saved(tmp_path / "both")["runs"]
    assert sorted((r["arm"], r["seed"]) for r in runs) == [("cg-hs2006", 1), ("cg-hs2006", 2), ("sgd", 1)]


@pytest.mark.parametrize(
    "folders, message",
    [
        (["a"], "give two or more folders"),
        (["a", "a"], "sgd seed 1 is in both"),
        (["a", "a/pretrained.npz"], "pretrained.npz is not a folder: give the output folders"),
        (["a", "."], "is not an sda.compare folder: comparison.json is missing"),
    ],
)
def test_parts_that_do_not_belong_together_are_refused(parts, folders, message, capsys):
    assert combine(["--folders", *[str(parts / f) for f in folders], "--out", str(parts / "refused")]) == 2
    assert message in capsys.readouterr().err
    assert not (parts / "refused").exists()


def test_other_weights_or_a_damaged_record_are_refused(parts, tmp_path, capsys):
    other = tmp_path / "other"
    assert (
        compare(
            [
                *SMALL,
                "--pretrain-epochs",
                "1",
                "--seed",
                "5",
                "--arms",
                "sgd",
                "--seeds",
                "3",
                "--budget-passes",
                "0.5",
                "--out",
                str(other),
            ]
        )
        == 0
    )
    assert combine(["--folders", str(parts / "a"), str(other), "--out", str(tmp_path / "x")]) == 2
    assert "start from different pretrained.npz" in capsys.readouterr().err
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "pretrained.npz").write_bytes((parts / "a" / "pretrained.npz").read_bytes())
    record = saved(parts / "c")
    record["runs"][0]["seed"] = 7
    del record["histories"]["cg-hs2006"][0][-1]["updates"]
    (damaged / "comparison.json").write_text(json.dumps(record))
    assert combine(["--folders", str(parts / "a"), str(damaged), "--out", str(tmp_path / "y")]) == 2
    assert "comparison.json is damaged (KeyError: 'updates')" in capsys.readouterr().err
    record = saved(parts / "c")
    del record["settings"]["line_searches"]
    (damaged / "comparison.json").write_text(json.dumps(record))
    assert combine(["--folders", str(parts / "a"), str(damaged), "--out", str(tmp_path / "z")]) == 2
    assert "lacks the setting line_searches that cg-hs2006 reads" in capsys.readouterr().err
    record = saved(parts / "c")
    record["settings"]["line_searches"] = "three"  # would label a row "line_searches three"
    (damaged / "comparison.json").write_text(json.dumps(record))
    assert combine(["--folders", str(parts / "a"), str(damaged), "--out", str(tmp_path / "w")]) == 2
    assert "comparison.json: line_searches must be a whole number at least 1, got 'three' (str)" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "w").exists()
    assert not (tmp_path / "z").exists()
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
