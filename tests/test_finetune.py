"""The one fine-tuning loop: typed records, and a shuffled SGD run that resumes exactly."""

import dataclasses

import numpy as np
import pytest

from sda import SdA
from sda.checkpoint import Checkpoint
from sda.data import load_dataset, shared_dataset
from sda.finetune import (
    EpochRecord,
    Evaluation,
    MinibatchSGD,
    Monitor,
    PassBudget,
    PatienceRule,
    StepRecord,
    classifier_line_search,
    classifier_monitor,
    compile_rows_step,
    finetune,
)
from sda.rundir import METRICS, STEPS


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits").subset(n_train=200, n_valid=100, n_test=100)
    return [shared_dataset(s) for s in (data.train, data.valid, data.test)]


def tiny_model(seed=1):
    return SdA(np.random.RandomState(seed), n_ins=64, hidden_layers_sizes=(16,), corruption_levels=(0.1,))


def test_records_are_typed_and_give_the_run_folders_columns(digits):
    model = tiny_model()
    train_fn, valid_score, test_score = model.build_finetune_functions(digits, 20, 0.1)
    records, steps = [], []
    monitor = Monitor(PatienceRule(), model.params, valid_score.error, test_score.error)
    result = finetune(
        model,
        MinibatchSGD(train_fn, n_rows=200, batch_size=20),
        monitor,
        max_epochs=2,
        on_record=records.append,
        on_step=steps.append,
    )
    assert [type(r) for r in records] == [EpochRecord] * 2 and result.history == records
    assert list(records[0].row()) == [
        "phase",
        "epoch",
        "cost",
        "valid_error",
        "best_valid_error",
        "test_error",
        "seconds",
    ]
    assert set(records[0].row()) <= set(METRICS.columns) and records[0].where() == "epoch    1"
    assert len(steps) == 20 and all(isinstance(s, StepRecord) for s in steps)
    assert set(steps[0].row()) - {"iteration"} <= set(STEPS.columns)
    # a pass budget: one Evaluation per point, its columns in comparison.json's order
    evaluations = finetune(
        model,
        MinibatchSGD(
            compile_rows_step(model.finetune_cost, model.params, [model.x, model.y], list(digits[0]), 0.1),
            n_rows=200,
            batch_size=20,
            shuffle_seed=1,
        ),
        classifier_monitor(model, digits, PassBudget(eval_every=0.5, budget_passes=1)),
    ).history
    assert [type(r) for r in evaluations] == [Evaluation] * 3 and [r.passes for r in evaluations] == [
        0,
        0.5,
        1,
    ]
    assert list(evaluations[0].row()) == [
        "phase",
        "epoch",
        "passes",
        "data_epoch",
        "updates",
        "seconds",
        "cost",
        "train_loss",
        "valid_error",
        "best_valid_error",
        "test_error",
        "current_test_error",
    ]
    assert evaluations[1].where() == "   0.50 passes"


def shuffled_sgd(model, digits, **loop):
    train_fn = compile_rows_step(
        model.finetune_cost, model.params, [model.x, model.y], list(digits[0]), 0.1, momentum=0.5
    )
    step = MinibatchSGD(train_fn, n_rows=200, batch_size=20, shuffle_seed=3)
    monitor = classifier_monitor(model, digits, PassBudget(eval_every=0.5, budget_passes=3))
    return finetune(model, step, monitor, **loop)


def test_a_killed_shuffled_sgd_run_resumes_exactly(digits, tmp_path):
    """The shuffling generator, the momentum and the evaluator's state are in the checkpoint."""
    model = tiny_model()
    whole = shuffled_sgd(model, digits)
    expected = [p.get_value() for p in model.params]

    class Killed(Exception):
        pass

    def kill(record):
        if record.step == 25:  # mid-epoch 2, after the save at step 21
            raise Killed

    model = tiny_model()
    path = tmp_path / "checkpoint.npz"
    with pytest.raises(Killed):
        shuffled_sgd(model, digits, on_step=kill, checkpoint=Checkpoint(path, model, every=7))
    fresh = tiny_model(seed=9)
    checkpoint = Checkpoint(path, fresh, every=7)
    progress = checkpoint.load()
    assert (progress.epoch, progress.batch, progress.steps) == (2, 1, 21)
    resumed = shuffled_sgd(fresh, digits, progress=progress, checkpoint=checkpoint)
    for p, value in zip(fresh.params, expected):
        np.testing.assert_array_equal(p.get_value(), value)

    def without_seconds(history):
        return [dataclasses.replace(r, seconds=0.0) for r in history]

    assert without_seconds(resumed.history) == without_seconds(whole.history)
    assert (resumed.passes, resumed.iterations, resumed.best_passes) == (
        whole.passes,
        whole.iterations,
        whole.best_passes,
    )


def test_a_cg_checkpoint_saved_before_the_one_loop_resumes_its_update_count(digits, tmp_path):
    """Such checkpoints kept the updates in optimizer_state["updates"]; now Progress.iteration does."""

    def run(model, **loop):
        step = classifier_line_search(model, digits[0], "cg", batch_size=50, line_searches=2, seed=2)
        return finetune(model, step, classifier_monitor(model, digits, PassBudget(budget_passes=8)), **loop)

    whole = run(tiny_model())
    path = tmp_path / "checkpoint.npz"

    class Killed(Exception):
        pass

    def kill(record):
        if record.data_epoch == 2:
            raise Killed

    model = tiny_model()
    with pytest.raises(Killed):
        run(model, on_record=kill, checkpoint=Checkpoint(path, model))
    progress = Checkpoint(path, model).load()
    # as the older loop saved it
    progress.optimizer_state.update(updates=progress.iteration, stop_reason="")
    progress.iteration = 0
    fresh = tiny_model(seed=9)
    checkpoint = Checkpoint(path, fresh)
    checkpoint.load()
    resumed = run(fresh, progress=progress, checkpoint=checkpoint)
    assert [r.updates for r in resumed.history] == [r.updates for r in whole.history]
    assert resumed.iterations == whole.iterations
