"""The compiled functions take their inputs by position and by the tutorial's names.

The Theano SdA tutorial calls ``pretraining_fns[i](index=..., corruption=...,
lr=...)``: the names of the symbolic variables, not of the Python ones. The
calls below are the tutorial's own lines (``xrange`` read as ``range``).
"""

import re

import numpy as np
import pytensor
import pytest

from sda import SdA
from sda.engine import BatchedFunction
from sda.errors import SettingTypeError

N_ROWS, N_INS, BATCH = 23, 6, 5  # a short last batch of 3 rows


def tutorial_data():
    rng = np.random.default_rng(3)
    x = rng.random((N_ROWS, N_INS), dtype=np.float32)
    y = rng.integers(0, 3, N_ROWS).astype("int32")
    return pytensor.shared(x, name="x"), pytensor.shared(y, name="y")


def tutorial_model():
    # the tutorial's constructor call, on a tiny network
    numpy_rng = np.random.RandomState(89677)
    return SdA(
        numpy_rng=numpy_rng, n_ins=N_INS, hidden_layers_sizes=[4, 3], n_outs=3, corruption_levels=(0.1, 0.2)
    )


def values(model):
    return {name: param.get_value() for name, param in model.named_params().items()}


def assert_same_state(first, second):
    a, b = values(first), values(second)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_inputs_carry_the_tutorial_names():
    sda = tutorial_model()
    train_set_x, train_set_y = tutorial_data()
    for fn in sda.pretraining_functions(train_set_x=train_set_x, batch_size=BATCH):
        assert fn.function.names == ("index", "corruption", "lr")
        # the compiled PyTensor function's own inputs have those names too
        assert [i.name for i in fn.function.function.maker.inputs[:3]] == ["index", "corruption", "lr"]
    train_fn, validate_model, _ = sda.build_finetune_functions(
        datasets=[(train_set_x, train_set_y)] * 3, batch_size=BATCH, learning_rate=0.1
    )
    assert train_fn.function.names == validate_model.batch_error.names == ("index",)


@pytest.mark.floats
def test_pretraining_by_the_tutorials_names_matches_the_positional_call_bit_for_bit():
    train_set_x, _ = tutorial_data()
    batch_size, pretrain_lr, pretraining_epochs = BATCH, 0.001, 2
    n_train_batches = -(-N_ROWS // batch_size)
    corruption_levels = [0.1, 0.2, 0.3]

    by_position = tutorial_model()
    positional_fns = by_position.pretraining_functions(train_set_x, batch_size)
    positional_costs = [
        positional_fns[i](batch_index, corruption_levels[i], pretrain_lr)
        for i in range(by_position.n_layers)
        for _epoch in range(pretraining_epochs)
        for batch_index in range(n_train_batches)
    ]

    sda = tutorial_model()
    pretraining_fns = sda.pretraining_functions(train_set_x=train_set_x, batch_size=batch_size)
    by_name = []
    for i in range(sda.n_layers):
        for _epoch in range(pretraining_epochs):
            c = []
            for batch_index in range(n_train_batches):
                c.append(
                    pretraining_fns[i](index=batch_index, corruption=corruption_levels[i], lr=pretrain_lr)
                )
            by_name.extend(c)

    assert len(by_name) == 2 * 2 * n_train_batches
    np.testing.assert_array_equal(by_name, positional_costs)
    assert_same_state(sda, by_position)
    assert not np.array_equal(values(sda)["hidden0.W"], values(tutorial_model())["hidden0.W"])  # it trained


@pytest.mark.floats
def test_finetuning_by_name_matches_the_positional_call_bit_for_bit():
    datasets = [tutorial_data()] * 3
    n_train_batches, finetune_lr = -(-N_ROWS // BATCH), 0.1
    results = []
    for by_name in (False, True):
        sda = tutorial_model()
        train_fn, validate_model, test_model = sda.build_finetune_functions(
            datasets=datasets, batch_size=BATCH, learning_rate=finetune_lr
        )
        costs = []
        for minibatch_index in range(n_train_batches):
            costs.append(train_fn(index=minibatch_index) if by_name else train_fn(minibatch_index))
        validation_losses = validate_model()
        this_validation_loss = np.mean(validation_losses)
        test_losses = test_model()
        per_batch = (
            [validate_model.batch_error(index=i) for i in range(n_train_batches)]
            if by_name
            else [validate_model.batch_error(i) for i in range(n_train_batches)]
        )
        results.append((sda, costs, validation_losses, this_validation_loss, test_losses, per_batch))
    (first, *numbers), (second, *again) = results
    for a, b in zip(numbers, again):
        np.testing.assert_array_equal(a, b)
    assert_same_state(first, second)
    assert len(numbers[1]) == n_train_batches and 0 <= numbers[2] <= 1


def message(call):
    with pytest.raises(TypeError) as error:
        call()
    assert isinstance(error.value, SettingTypeError)
    return str(error.value)


def test_wrong_arguments_name_the_inputs_the_function_takes():
    sda = tutorial_model()
    train_set_x, train_set_y = tutorial_data()
    pretraining_fns = sda.pretraining_functions(train_set_x=train_set_x, batch_size=BATCH)
    train_fn, validate_model, _ = sda.build_finetune_functions([(train_set_x, train_set_y)] * 3, BATCH, 0.1)
    # the tutorial warns of this one: the Python variables' names are not the inputs' names
    assert message(lambda: pretraining_fns[1](index=0, corruption_level=0.1, learning_rate=0.1)) == (
        "pretrain_layer1(index, corruption, lr): got an unexpected keyword argument 'corruption_level'"
    )
    assert message(lambda: pretraining_fns[0](0, 0.1)) == (
        "pretrain_layer0(index, corruption, lr): missing a required argument: 'lr'"
    )
    assert message(lambda: pretraining_fns[0](0, 0.1, 0.1, 4)) == (
        "pretrain_layer0(index, corruption, lr): too many positional arguments"
    )
    assert message(lambda: pretraining_fns[0](0, index=1, corruption=0.1, lr=0.1)) == (
        "pretrain_layer0(index, corruption, lr): multiple values for argument 'index'"
    )
    assert message(lambda: train_fn(minibatch_index=0)) == (
        "train(index): got an unexpected keyword argument 'minibatch_index'"
    )
    assert re.fullmatch(r"valid\(index\): .*'i'", message(lambda: validate_model.batch_error(i=0)))
    assert_same_state(sda, tutorial_model())  # no refused call took a step


def test_the_jax_stand_in_slices_the_named_index():
    """Under JAX the batch is cut out in NumPy: a call by name feeds the same rows."""
    data = pytensor.shared(np.arange(10.0, dtype="float32").reshape(5, 2))
    fed = BatchedFunction(
        lambda rows, lr: (rows.tolist(), lr), ["index", "lr"], "step", rows_from=[data], batch_size=2
    )
    assert fed(index=2, lr=0.5) == fed(2, 0.5) == ([[8.0, 9.0]], 0.5)
    assert fed(lr=0.5, index=1) == ([[4.0, 5.0], [6.0, 7.0]], 0.5)
