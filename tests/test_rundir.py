"""Run folders: safe names and creation, the lock, checked CSV files and checked checkpoints."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sda import SdA
from sda.checkpoint import Checkpoint, Progress
from sda.errors import SdAError
from sda.rundir import METRICS, STEPS, RunDir, atomic_write, load_params, usable_folder


# ---------------------------------------------------------------- making folders
def test_default_names_never_collide(tmp_path, monkeypatch):
    monkeypatch.setattr(RunDir, "default_name", staticmethod(lambda kind: f"same-second-{kind}"))
    first, second, third = (RunDir.create(tmp_path, kind="demo") for _ in range(3))
    assert [d.path.name for d in (first, second, third)] == [
        "same-second-demo",
        "same-second-demo-2",
        "same-second-demo-3",
    ]
    for d in (first, second, third):
        d.unlock()


def test_a_chosen_name_is_never_reused(tmp_path):
    RunDir.create(tmp_path, "mine").unlock()
    with pytest.raises(SdAError, match="exists already: choose another --name, or continue it"):
        RunDir.create(tmp_path, "mine")


def test_a_name_the_file_system_refuses_is_one_clear_error(tmp_path):
    with pytest.raises(SdAError, match="cannot make run folder .*: File name too long"):
        RunDir.create(tmp_path, "a" * 300)  # longer than any Linux file system's 255 bytes
    assert list(tmp_path.iterdir()) == []


def test_out_under_a_file_or_without_permission_is_one_clear_error(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SdAError, match="it or a folder above it is a file"):
        RunDir.create(tmp_path / "file" / "runs", "a")
    with pytest.raises(SdAError, match="it or a folder above it is a file"):
        usable_folder(tmp_path / "file")
    with pytest.raises(SdAError, match="--out must name a folder, got an empty string"):
        RunDir.claim("", "gradual")  # not the current folder

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", refuse)  # tests may run as root, where chmod does not bite
    with pytest.raises(SdAError, match="permission denied; choose a folder you can write to"):
        usable_folder(tmp_path / "new")


def test_an_experiment_never_writes_into_earlier_results(tmp_path):
    out = tmp_path / "results"
    with RunDir.claim(out, "baseline") as claimed:  # new, or existing and empty: fine
        (claimed.path / "baseline.csv").write_text("earlier\n")
    with pytest.raises(SdAError, match=r"already holds files \(baseline.csv\); choose a new folder"):
        RunDir.claim(out, "baseline")
    assert (out / "baseline.csv").read_text() == "earlier\n"


# ------------------------------------------------------------------------ lock
def test_a_locked_folder_is_refused_in_this_process_and_in_another(tmp_path):
    folder = RunDir.create(tmp_path, "run")  # created locked
    with pytest.raises(SdAError, match="in use by another sda process"):
        RunDir(folder.path).lock()
    (folder.path / "config.json").write_text("{}")
    done = subprocess.run(
        [sys.executable, "-m", "sda.run", "--resume", str(folder.path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert (
        done.stderr == f"error: {folder.path} is in use by another sda process: wait for it to "
        "end, or stop it\n"
    )
    folder.unlock()
    with RunDir(folder.path):  # free again
        pass


# ---------------------------------------------------------------------- tables
GOOD_METRICS = (
    "phase,layer,epoch,cost,valid_error,best_valid_error,test_error,seconds\r\n"
    "pretrain,0,0,25.4,,,,1.0\r\nfinetune,,1,2.0,0.5,0.5,0.4,2.0\r\n"
)


@pytest.mark.parametrize(
    "text, message",
    [
        ("phase,layer,epoch\r\npretrain,0,0\r\n", "columns ['cost', 'valid_error'"),
        (GOOD_METRICS.replace("25.4", "abc"), "line 2: column cost holds 'abc', not a number"),
        (GOOD_METRICS.replace("pretrain,0,0", "pretrain,,0"), "line 2: column layer is empty"),
        (GOOD_METRICS.replace("finetune", "train"), "line 3: phase 'train' is not one of"),
        (GOOD_METRICS.replace(",1,2.0", ",1.5,2.0"), "column epoch holds '1.5', not a whole number"),
        ("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "it holds binary data"),
        ("", "columns ['phase', 'layer'"),
    ],
)
def test_a_damaged_metrics_file_is_named(tmp_path, text, message):
    (tmp_path / "metrics.csv").write_bytes(text.encode("latin-1"))
    with pytest.raises(SdAError) as caught:
        METRICS.read(tmp_path)
    assert str(tmp_path / "metrics.csv") in str(caught.value) and message in str(caught.value)


def test_tables_read_good_files_and_drop_a_line_cut_off_by_a_kill(tmp_path):
    (tmp_path / "metrics.csv").write_text(GOOD_METRICS + "finetune,,2,1.", newline="")
    assert [r["epoch"] for r in METRICS.read(tmp_path)] == ["0", "1"]
    (tmp_path / "steps.csv").mkdir()
    with pytest.raises(SdAError, match="is a folder where a file should be"):
        STEPS.read(tmp_path)
    with pytest.raises(SdAError, match="steps.csv is missing"):
        STEPS.read(tmp_path / "nowhere")


def test_rewind_keeps_the_checkpointed_rows_and_drops_the_rest(tmp_path):
    folder = RunDir(tmp_path)
    (tmp_path / "metrics.csv").write_text(GOOD_METRICS + "finetune,,2,1.5,0.4,0.4,0.3,3.0\r\n", newline="")
    steps = "phase,layer,epoch,step,cost\r\n" + "".join(
        f"pretrain,0,0,{step},1.0\r\n" for step in (10, 20, 30)
    )
    (tmp_path / "steps.csv").write_text(steps, newline="")
    folder.rewind(metrics_rows=2, last_step=20)
    assert [r["epoch"] for r in METRICS.read(tmp_path)] == ["0", "1"]
    assert [r["step"] for r in STEPS.read(tmp_path)] == ["10", "20"]
    # killed before its first checkpoint, mid-way through writing a header: nothing to keep
    (tmp_path / "metrics.csv").write_text("phase,la", newline="")
    folder.rewind(metrics_rows=0, last_step=0)
    assert METRICS.read(tmp_path) == [] and STEPS.read(tmp_path) == []


# ------------------------------------------------------------------ checkpoints
def tiny_model(sizes=(4, 3)):
    return SdA(
        np.random.RandomState(0),
        n_ins=6,
        hidden_layers_sizes=sizes,
        n_outs=2,
        corruption_levels=(0.1,) * len(sizes),
    )


@pytest.fixture
def saved(tmp_path):
    """A checkpoint of ``tiny_model()`` with best values, and the path."""
    model = tiny_model()
    checkpoint = Checkpoint(tmp_path / "checkpoint.npz", model)
    checkpoint.best = [p.get_value() for p in model.params]
    checkpoint.save(Progress(phase="finetune", iteration=7))
    return tmp_path / "checkpoint.npz"


def params_of(model):
    return {name: p.get_value().copy() for name, p in model.named_params().items()}


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda w: np.where(w == w.flat[0], np.nan, w), "hidden0.W holds non-finite values"),
        (lambda w: w.astype(np.int64), "hidden0.W holds int64 values"),
    ],
)
def test_saved_weights_that_are_not_finite_floats_are_refused_and_change_nothing(tmp_path, damage, message):
    # e.g. sda.compare --pretrained: NaN weights must not be blamed on the learning rate later
    good = params_of(tiny_model())
    path = tmp_path / "pretrained.npz"
    np.savez(path, **{**good, "hidden0.W": damage(good["hidden0.W"])})
    model = tiny_model()
    model.named_params()["hidden0.b"].set_value(np.ones(4, dtype=np.float32))
    before = params_of(model)
    with pytest.raises(SdAError, match=message):
        load_params(model, path)
    assert all((before[name] == after).all() for name, after in params_of(model).items())
    np.savez(path, **{**good, "hidden0.W": good["hidden0.W"].astype(np.float64)})
    load_params(model, path)  # finite float64 weights are fine: cast to the model's float32
    assert (params_of(model)["hidden0.W"] == good["hidden0.W"]).all()


def test_a_good_checkpoint_loads(saved):
    progress = Checkpoint(saved, tiny_model()).load()
    assert (progress.phase, progress.iteration) == ("finetune", 7)


def rewrite(path, change):
    with np.load(path) as stored:
        arrays = {name: stored[name] for name in stored.files}
    change(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda a: a.update({"hidden0.W": np.zeros((6, 5), "float32")}),
            "hidden0.W is float32 (6, 5), the model needs float32 (6, 4)",
        ),
        (
            lambda a: a.update({"hidden0.W": a["hidden0.W"].astype("float64")}),
            "hidden0.W is float64 (6, 4), the model needs float32 (6, 4)",
        ),
        (lambda a: a.pop("logistic.b"), "it lacks ['logistic.b']"),
        (lambda a: a.update({"hidden9.W": a["hidden0.W"]}), "unexpected ['hidden9.W']"),
        (lambda a: a["hidden1.b"].__setitem__(0, np.nan), "non-finite values in hidden1.b"),
        (lambda a: a["best/0"].__setitem__(0, np.inf), "non-finite values in best/0"),
        (lambda a: a.pop("state.json"), "holds no state.json entry"),
        (lambda a: a.update({"state.json": np.array("{broken")}), "its state is unreadable"),
        (
            lambda a: a.update(
                {"state.json": np.array(json.dumps({**json.loads(str(a["state.json"])), "generators": {}}))}
            ),
            "it saves generators []",
        ),
    ],
)
def test_a_foreign_or_damaged_checkpoint_is_refused_and_changes_nothing(saved, damage, message):
    rewrite(saved, damage)
    model = tiny_model()
    before = params_of(model)
    with pytest.raises(SdAError) as caught:
        Checkpoint(saved, model).load()
    assert str(saved) in str(caught.value) and message in str(caught.value)
    for name, value in params_of(model).items():
        np.testing.assert_array_equal(value, before[name])


def with_optimizer_state(change):
    """A ``rewrite`` change: a mini-batch CG state (as sda.finetune saves it), then ``change`` on it."""

    def damage(arrays):
        state = json.loads(str(arrays["state.json"]))
        evaluator = {
            "next_point": 1.0,
            "best_valid_error": 0.5,
            "best_passes": 0.5,
            "best_evaluation": 1,
            "test_error": 0.4,
            "since_best": 0,
            "seconds": 0.1,
            "history": [],
        }
        optimizer = {
            "examples": [100],
            "evaluator": evaluator,
            "epoch_rng": np.random.default_rng(1).bit_generator.state,
        }
        change(optimizer)
        state["progress"]["optimizer_state"] = optimizer
        arrays["state.json"] = np.array(json.dumps(state))

    return damage


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda o: o.pop("examples"), "unreadable optimizer_state (examples is missing"),
        (lambda o: o.pop("epoch_rng"), "unreadable optimizer_state (epoch_rng is missing or of the wrong"),
        (lambda o: o["evaluator"].pop("history"), "unreadable optimizer_state.evaluator (history"),
        (lambda o: o.update(examples=["x"]), "examples are not numbers"),
        (
            lambda o: o.update(epoch_rng={"bit_generator": "PCG64", "state": {"state": "x"}}),
            "unusable shuffling state",
        ),
    ],
)
def test_a_damaged_cg_state_is_refused_before_use(saved, change, message):
    # without the check, sda.finetune met these mid-resume as a KeyError or TypeError traceback
    rewrite(saved, with_optimizer_state(lambda o: None))
    assert Checkpoint(saved, tiny_model()).load().optimizer_state["examples"] == [100]  # a good one loads
    rewrite(saved, with_optimizer_state(change))
    with pytest.raises(SdAError) as caught:
        Checkpoint(saved, tiny_model()).load()
    assert message in str(caught.value)


def test_another_architecture_is_refused(saved):
    with pytest.raises(
        SdAError,
        match="does not match config.json: hidden0.W is float32 \\(6, 4\\), "
        "the model needs float32 \\(6, 5\\)",
    ):
        Checkpoint(saved, tiny_model((5, 3))).load()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:100]), "is not a valid checkpoint"),
        (lambda p: p.write_bytes(b""), "is not a valid checkpoint"),
        (lambda p: (os.remove(p), p.mkdir()), "is a folder where the checkpoint file should be"),
        (lambda p: np.savez(p.open("wb"), x=np.array([{}], dtype=object)), "is not a valid checkpoint"),
    ],
)
def test_a_truncated_empty_or_pickled_checkpoint_is_named(saved, damage, message):
    damage(saved)
    with pytest.raises(SdAError) as caught:
        Checkpoint(saved, tiny_model()).load()
    assert str(saved) in str(caught.value) and message in str(caught.value)


def test_atomic_write_without_replace_keeps_a_file_that_appeared_meanwhile(tmp_path):
    # sda.encode checks --out first and writes last: another process may have written it between
    path = tmp_path / "codes.npy"
    path.write_bytes(b"the other process's")
    with pytest.raises(FileExistsError):
        atomic_write(path, lambda f: f.write(b"ours"), replace=False)
    assert path.read_bytes() == b"the other process's"
    assert [p.name for p in tmp_path.iterdir()] == ["codes.npy"]  # no temporary file left
    atomic_write(tmp_path / "new.npy", lambda f: f.write(b"ours"), replace=False)
    assert (tmp_path / "new.npy").read_bytes() == b"ours"
