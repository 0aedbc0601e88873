"""Divergence: a non-finite cost or parameter stops every training loop before
anything is saved, and a cost that climbs far above its start gets a warning."""

import json
import warnings

import numpy as np
import pytest

from sda import SdA
from sda.checkpoint import Checkpoint, Progress
from sda.data import load_dataset, shared_dataset
from sda.errors import TrainingDiverged
from sda.finetune import MinibatchSGD, Monitor, PatienceRule, finetune
from sda.gradual import train_gradual
from sda.train import pretrain

# Learning rates that blow up on these tiny models (measured): 1e38 overflows the
# float32 pre-training cost to inf at the second step; 1e30 makes the softmax NaN at
# the third fine-tuning step; 1e6 only drives the costs to millions, never to NaN.
OVERFLOWING_LR = 1e38
NAN_FINETUNE_LR = 1e30
GARBAGE_LR = 1e6
HINT = "try a smaller learning rate"


@pytest.fixture(scope="module")
def digits():
    """200/100/100 rows of scikit-learn's 8x8 digits as shared variables."""
    data = load_dataset("digits").subset(n_train=200, n_valid=100, n_test=100)
    return [shared_dataset(s) for s in (data.train, data.valid, data.test)]


def finetune_sgd(
    model, train_fn, valid_score, test_score, max_epochs=1000, validation_frequency=None, **loop
):
    """The tutorial's loop on the 200 training rows, in minibatches of 10."""
    step = MinibatchSGD(train_fn, n_rows=200, batch_size=10)
    rule = PatienceRule(validation_frequency=validation_frequency)
    monitor = Monitor(rule, model.params, valid_score.error, test_score.error)
    return finetune(model, step, monitor, max_epochs=max_epochs, **loop)


def tiny_model(seed=1):
    return SdA(
        np.random.RandomState(seed),
        n_ins=64,
        hidden_layers_sizes=(16, 8),
        n_outs=10,
        corruption_levels=(0.1, 0.2),
    )


def saved_checkpoint(path):
    """``(steps, arrays)`` of a checkpoint file, read as plain numpy."""
    with np.load(path, allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    return json.loads(str(arrays.pop("state.json")))["progress"]["steps"], arrays


def poison(model):
    """Set one weight of ``hidden0.W`` to NaN."""
    param = model.named_params()["hidden0.W"]
    value = param.get_value()
    value.flat[0] = np.nan
    param.set_value(value)


# ---------------------------------------------------------------- huge rates
@pytest.mark.parametrize("cached", [True, False])
@pytest.mark.parametrize("layer", [0, 1])
def test_pretraining_with_a_huge_rate_names_layer_epoch_and_step(digits, cached, layer):
    with pytest.raises(TrainingDiverged) as caught:
        pretrain(
            tiny_model(),
            digits[0][0],
            batch_size=10,
            epochs=2,
            learning_rate=OVERFLOWING_LR,
            cached=cached,
            layers=[layer],
        )
    assert str(caught.value) == (
        f"pre-training diverged at layer {layer}, epoch 0, step 2: the cost is inf; {HINT}"
    )
    assert (caught.value.phase, caught.value.layer, caught.value.epoch, caught.value.step) == (
        "pre-training",
        layer,
        0,
        2,
    )


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_finetuning_with_a_huge_rate_names_epoch_and_step(digits, momentum):
    model = tiny_model()
    train_fn, valid_score, test_score = model.build_finetune_functions(
        digits, 10, NAN_FINETUNE_LR, momentum=momentum
    )
    with pytest.raises(TrainingDiverged) as caught:
        finetune_sgd(model, train_fn, valid_score, test_score, max_epochs=3)
    assert str(caught.value).startswith("fine-tuning diverged at epoch 1, step ")
    assert str(caught.value).endswith(f": the cost is nan; {HINT}")
    assert caught.value.epoch == 1 and caught.value.step <= 20


@pytest.mark.parametrize(
    "fraction_stacked, phase, layer", [(1.0, "stacked pre-training", 0), (0.0, "gradual training", 1)]
)
def test_gradual_training_with_a_huge_rate_names_phase_layer_epoch_and_step(
    digits, fraction_stacked, phase, layer
):
    with pytest.raises(TrainingDiverged) as caught:
        train_gradual(
            tiny_model(),
            digits[0][0],
            2,
            batch_size=10,
            learning_rate=OVERFLOWING_LR,
            fraction_stacked=fraction_stacked,
            layers=[layer],
        )
    assert str(caught.value).startswith(f"{phase} diverged at layer {layer}, epoch 0, step 2: the cost is ")
    assert str(caught.value).endswith(HINT)


# ------------------------------------------------ nothing bad reaches the disk
def snapshot_and_poison(model, poison_step, snapshots):
    """``on_step``: copy the parameters into ``snapshots[step]`` for each step it
    holds; set one weight of ``hidden0.W`` to NaN after ``poison_step``."""

    def on_step(record):
        step = record["step"] if isinstance(record, dict) else record.step  # pre-training's is a dict
        if step in snapshots:
            snapshots[step] = [p.get_value() for p in model.params]
        if step == poison_step:
            poison(model)

    return on_step


def assert_checkpoint_holds(path, steps, model, snapshot, prefix=""):
    saved_steps, arrays = saved_checkpoint(path)
    assert saved_steps == steps
    names = {p: name for name, p in model.named_params().items()}
    for i, (param, value) in enumerate(zip(model.params, snapshot, strict=True)):
        saved = arrays[f"{prefix}{i}" if prefix else names[param]]
        assert np.all(np.isfinite(saved))
        np.testing.assert_array_equal(saved, value)  # the same process: bit-identical


@pytest.mark.parametrize(
    "poison_step, what",
    [
        (9, "the cost is nan"),  # step 10's cost is NaN: caught before the save due at step 10
        (10, "the parameter hidden0.W is nan"),  # caught by the parameter check before that save
    ],
)
def test_pretraining_keeps_the_last_good_checkpoint(digits, tmp_path, poison_step, what):
    model, snapshots = tiny_model(), {5: None}
    checkpoint = Checkpoint(tmp_path / "checkpoint.npz", model, every=5)
    with pytest.raises(TrainingDiverged, match=f"layer 0, epoch 0, step 10: {what}"):
        pretrain(
            model,
            digits[0][0],
            batch_size=10,
            epochs=2,
            learning_rate=0.1,
            momentum=0.5,
            on_step=snapshot_and_poison(model, poison_step, snapshots),
            checkpoint=checkpoint,
        )
    assert_checkpoint_holds(checkpoint.path, 5, model, snapshots[5])


def test_finetuning_keeps_the_best_model_and_the_last_good_checkpoint(digits, tmp_path):
    model, snapshots = tiny_model(), {5: None, 7: None}
    # saves at steps 7 and 14; validations at 5 (the first, so the best) and 10 (after the poison)
    checkpoint = Checkpoint(tmp_path / "checkpoint.npz", model, every=7)
    train_fn, valid_score, test_score = model.build_finetune_functions(digits, 10, 0.1, momentum=0.5)
    with pytest.raises(
        TrainingDiverged, match="fine-tuning diverged at epoch 1, step 10: the parameter hidden0.W is nan"
    ):
        finetune_sgd(
            model,
            train_fn,
            valid_score,
            test_score,
            max_epochs=3,
            validation_frequency=5,
            checkpoint=checkpoint,
            on_step=snapshot_and_poison(model, 10, snapshots),
        )
    for best, value in zip(checkpoint.best, snapshots[5], strict=True):
        np.testing.assert_array_equal(best, value)
    assert_checkpoint_holds(checkpoint.path, 7, model, snapshots[7])
    assert_checkpoint_holds(checkpoint.path, 7, model, snapshots[5], prefix="best/")


def test_a_model_with_nan_weights_stops_at_the_first_step(digits):
    # e.g. weights loaded from a diverged run: they must not train on
    model = tiny_model()
    poison(model)
    with pytest.raises(TrainingDiverged, match="layer 0, epoch 0, step 1: the cost is nan"):
        pretrain(model, digits[0][0], batch_size=10, epochs=1)
    train_fn, valid_score, test_score = model.build_finetune_functions(digits, 10, 0.1)
    with pytest.raises(TrainingDiverged, match="fine-tuning diverged at epoch 1, step 1: the cost is nan"):
        finetune_sgd(model, train_fn, valid_score, test_score)


# ------------------------------------------------------------------ warnings
def train_each_loop(digits, learning_rate):
    """Pre-train, fine-tune and gradually train a tiny model at ``learning_rate``."""
    pretrain(tiny_model(), digits[0][0], batch_size=10, epochs=2, learning_rate=learning_rate)
    model = tiny_model()
    train_fn, valid_score, test_score = model.build_finetune_functions(
        digits, 10, learning_rate, momentum=0.9
    )
    finetune_sgd(model, train_fn, valid_score, test_score, max_epochs=3)
    train_gradual(tiny_model(), digits[0][0], 2, batch_size=10, learning_rate=learning_rate, layers=[1])


def divergence_warnings(caught):
    return sorted(
        str(w.message).split(":")[0]
        for w in caught
        if issubclass(w.category, RuntimeWarning) and "diverging" in str(w.message)
    )


def test_a_huge_rate_that_ends_in_garbage_warns(digits):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_each_loop(digits, GARBAGE_LR)
    assert divergence_warnings(caught) == [
        "fine-tuning",
        "gradual training layer 1",
        "pre-training layer 0",
        "pre-training layer 1",
    ]


class ScriptedStep:
    """A stand-in for a compiled SGD step: returns ``first`` once, then ``rest``."""

    velocities = []

    def __init__(self, first, rest):
        self.costs = iter([first])
        self.rest = rest

    def __call__(self, index):
        return next(self.costs, self.rest)


class ConstantScorer:
    def error(self):
        return 0.5


@pytest.mark.parametrize("resumed", [False, True])
def test_a_resumed_run_does_not_take_one_cheap_minibatch_as_its_start(resumed):
    # A half-trained model may cost 0.001 on one minibatch and 0.1 on average:
    # only a run from scratch, where every minibatch costs about the same, starts there.
    progress = (
        Progress(
            phase="finetune", epoch=1, batch=5, steps=25, iteration=25, patience=10**6, best_valid_error=0.5
        )
        if resumed
        else None
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        finetune_sgd(
            tiny_model(),
            ScriptedStep(0.001, 0.1),
            ConstantScorer(),
            ConstantScorer(),
            max_epochs=3,
            progress=progress,
        )
    assert divergence_warnings(caught) == ([] if resumed else ["fine-tuning"])


def test_a_sane_rate_does_not_warn(digits):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_each_loop(digits, 0.05)
    assert divergence_warnings(caught) == []


# -------------------------------------------------------------- the command
DEMO = ["--preset", "demo", "--pretrain-epochs", "1", "--finetune-epochs", "3", "--no-progress"]


def test_a_diverging_run_fails_and_saves_no_model(tmp_path, capsys):
    from sda.run import main

    assert main([*DEMO, "--finetune-lr", "1e30", "--out", str(tmp_path), "--name", "nan"]) == 2
    # 2 layers x 120 pre-training steps, then NaN at the third fine-tuning step
    assert "fine-tuning diverged at epoch 1, step 243: the cost is nan" in capsys.readouterr().err
    folder = tmp_path / "nan"
    assert not (folder / "model.npz").exists()
    with np.load(folder / "checkpoint.npz", allow_pickle=False) as stored:
        assert all(np.all(np.isfinite(stored[name])) for name in stored.files if name != "state.json")


@pytest.mark.parametrize(
    "flag, phase", [("--pretrain-lr", "pre-training layer 0"), ("--finetune-lr", "fine-tuning")]
)
def test_a_run_whose_cost_ends_in_garbage_fails_and_keeps_its_files(tmp_path, capsys, flag, phase):
    from sda.run import main

    assert main([*DEMO, flag, "1e6", "--out", str(tmp_path), "--name", "big"]) == 2
    # the command prints each warning as one line, without Python's file-and-line prefix
    out, err = capsys.readouterr()
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert warnings and warnings[0].startswith(f"warning: {phase}: the cost rose from")
    errors = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {phase} diverged: the cost at the end is ")
    assert errors[0].endswith(f"it began at; lower {flag} (now 1e+06)")
    # the run's files stay for inspection, and summary.json says how it ended
    folder = tmp_path / "big"
    assert (folder / "model.npz").exists() and (folder / "metrics.csv").exists()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["error"].startswith("TrainingDiverged: ")
    assert summary["warnings"] == [line.replace("warning: ", "RuntimeWarning: ", 1) for line in warnings]


def test_a_run_that_never_beats_chance_fails(tmp_path, capsys):
    from sda.run import main

    # every image blank: the model cannot tell the classes apart, whatever it learns
    blank = {
        f"{part}_{what}": np.zeros((40, 4), np.float32) if part == "x" else np.arange(40) % 2
        for what in ("train", "valid", "test")
        for part in ("x", "y")
    }
    np.savez(tmp_path / "blank.npz", **blank)
    assert main([*DEMO, "--data", str(tmp_path / "blank.npz"), "--out", str(tmp_path), "--name", "flat"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(
            "error: the run never beat chance: its best validation error, 50.00 %, is not "
            "below the 50.00 % of always guessing the commonest class; lower --pretrain-lr "
            "(now 0.01) or --finetune-lr (now 0.1), or train for more epochs"
        )
        and err.count("\n") == 1
    )
    summary = json.loads((tmp_path / "flat" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"].startswith("TrainingFailed: ")


def test_chance_is_the_error_of_guessing_the_commonest_class():
    from sda.errors import TrainingFailed, chance_error, check_beats_chance

    assert chance_error([3] * 90 + [1] * 10) == pytest.approx(0.1)
    check_beats_chance(0.099, [3] * 90 + [1] * 10, "")  # a weak model on a skewed set still passes
    for best in (0.1, 0.5):
        with pytest.raises(TrainingFailed, match="never beat chance"):
            check_beats_chance(best, [3] * 90 + [1] * 10, "")
    check_beats_chance(0.0, [2] * 10, "")  # one class: nothing to beat


def test_a_resumed_run_judges_its_cost_from_where_each_phase_began(tmp_path):
    # One minibatch of a half-trained model can cost far below the epoch means before it: the
    # phases begun before a resume start from their first epoch in metrics.csv, not from it.
    from sda.run import Reporter
    from sda.rundir import RunDir

    run_dir = RunDir.create(tmp_path, "resumed")
    rows = [
        {"phase": "pretrain", "layer": 0, "epoch": 0, "cost": 66.0},
        {"phase": "pretrain", "layer": 0, "epoch": 1, "cost": 60.0},
        {
            "phase": "finetune",
            "epoch": 1,
            "cost": 0.4,
            "valid_error": 0.05,
            "best_valid_error": 0.05,
            "test_error": 0.05,
            "seconds": 1.0,
        },
        {
            "phase": "finetune",
            "epoch": 2,
            "cost": 0.04,
            "valid_error": 0.04,
            "best_valid_error": 0.04,
            "test_error": 0.04,
            "seconds": 2.0,
        },
    ]
    for row in rows:
        run_dir.append_metrics(row)
    report = Reporter(run_dir, rows=len(rows))
    report.step({"phase": "finetune", "epoch": 3, "step": 1, "cost": 0.001})
    assert report.costs == {("pretrain", 0): [66.0, 60.0], ("finetune", None): [0.4, 0.04]}
    report.step({"phase": "pretrain", "layer": 1, "epoch": 0, "step": 1, "cost": 450.0})  # a new phase
    assert report.costs[("pretrain", 1)] == [450.0, 450.0]
