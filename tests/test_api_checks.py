"""Wrong arguments to the library and damaged files give errors that name the problem and the fix.

Every error here is an ``SdAError`` (the commands print it as one line) and
also the ``TypeError`` or ``ValueError`` Python code expects.
"""

import gzip
import pathlib
import re
import zipfile

import numpy as np
import pytensor.tensor as pt
import pytest

from sda import data
from sda.dA import dA
from sda.data import DataError, open_npz
from sda.errors import SdAError, SettingError, SettingTypeError
from sda.logistic import LogisticRegression
from sda.mlp import HiddenLayer
from sda.SdA import SdA, check_architecture


def build(**changes):
    settings = dict(n_ins=4, hidden_layers_sizes=(3,), n_outs=2, corruption_levels=(0.1,))
    return SdA(np.random.RandomState(0), **{**settings, **changes})


def test_error_classes_are_user_errors_of_the_usual_kinds():
    assert issubclass(SettingError, SdAError) and issubclass(SettingError, ValueError)
    assert issubclass(SettingTypeError, SdAError) and issubclass(SettingTypeError, TypeError)


@pytest.mark.parametrize(
    "changes, kind, message",
    [
        (dict(tied="no"), TypeError, "tied must be True or False, got 'no' (str)"),
        (
            dict(corruption_levels=0.1),
            TypeError,
            "corruption_levels must be a list, each item a number in [0, 1), got 0.1 (float)",
        ),
        (
            dict(corruption_levels="0.1"),
            TypeError,
            "corruption_levels must be a list, each item a number in [0, 1), got '0.1' (str)",
        ),
        (
            dict(corruption_levels=("0.1",)),
            TypeError,
            "corruption_levels[0] must be a number in [0, 1), got '0.1'",
        ),
        (
            dict(corruption_levels=(float("nan"),)),
            ValueError,
            "corruption_levels[0] must be in [0, 1), got nan",
        ),
        (
            dict(corruption_levels=(0.1, 0.2)),
            ValueError,
            "corruption_levels has 2 values but there are 1 hidden",
        ),
        (
            dict(hidden_layers_sizes=[True]),
            TypeError,
            "hidden_layers_sizes[0] must be a whole number at least 1, got True (bool)",
        ),
        (
            dict(hidden_layers_sizes=[float("nan")]),
            TypeError,
            "hidden_layers_sizes[0] must be a whole number at least 1, got nan (float)",
        ),
        (
            dict(hidden_layers_sizes=[[3, 2]]),
            TypeError,
            "hidden_layers_sizes[0] must be a whole number at least 1, got [3, 2] (list)",
        ),
        (
            dict(hidden_layers_sizes=3),
            TypeError,
            "hidden_layers_sizes must be a list, each item a whole number at least 1, got 3 (int)",
        ),
        (
            dict(hidden_layers_sizes=(0,)),
            ValueError,
            "hidden_layers_sizes[0] must be at least 1, got 0",
        ),
        (dict(hidden_layers_sizes=()), ValueError, "hidden_layers_sizes must hold at least 1 value, got []"),
        (dict(n_ins=4.0), TypeError, "n_ins must be a whole number at least 1, got 4.0 (float)"),
        (dict(n_outs=1), ValueError, "n_outs must be at least 2, got 1"),
        (dict(loss="hinge"), ValueError, "loss must be one of 'cross_entropy', 'squared', got 'hinge'"),
    ],
)
def test_sda_refuses_bad_arguments(changes, kind, message):
    with pytest.raises(kind, match=re.escape(message)) as error:
        build(**changes)
    assert isinstance(error.value, SdAError)


def test_sda_needs_a_numpy_generator():
    with pytest.raises(
        TypeError,
        match=re.escape(
            "numpy_rng must be a numpy random generator, got None "
            "(NoneType); pass e.g. numpy.random.default_rng(1234)"
        ),
    ):
        SdA(None, n_ins=4, hidden_layers_sizes=(3,), n_outs=2, corruption_levels=(0.1,))


def test_numpy_numbers_and_arrays_are_accepted():
    model = SdA(
        np.random.default_rng(1),
        n_ins=np.int64(4),
        hidden_layers_sizes=np.array([3, 2]),
        n_outs=np.int32(2),
        corruption_levels=np.array([0.1, 0.0]),
        tied=np.bool_(False),
    )
    assert model.n_layers == 2 and model.corruption_levels == (0.1, 0.0)
    assert [p.get_value().shape for p in model.params][:2] == [(4, 3), (3,)]


def test_check_architecture_can_validate_settings_without_a_model():
    check_architecture(784, [500, 500], 10, [0.1, 0.2], tied=False, loss="squared")
    with pytest.raises(SettingTypeError, match="tied must be True or False"):
        check_architecture(784, [500], 10, [0.1], tied=1)


@pytest.mark.parametrize(
    "make, kind, message",
    [
        (lambda: dA(None, n_visible=3, n_hidden=2), TypeError, "numpy_rng must be a numpy random generator"),
        (
            lambda: dA(np.random.RandomState(0), n_visible=3, n_hidden=2, tied="yes"),
            TypeError,
            "tied must be True or False, got 'yes'",
        ),
        (
            lambda: dA(np.random.RandomState(0), n_visible=3, n_hidden=0),
            ValueError,
            "n_hidden must be at least 1, got 0",
        ),
        (
            lambda: HiddenLayer(np.random.RandomState(0), pt.matrix(), 2.5, 3),
            TypeError,
            "n_in must be a whole number at least 1, got 2.5 (float)",
        ),
        (lambda: HiddenLayer("seed", pt.matrix(), 2, 3), TypeError, "rng must be a numpy random generator"),
        (lambda: LogisticRegression(pt.matrix(), 3, 1), ValueError, "n_out must be at least 2, got 1"),
    ],
)
def test_layers_refuse_bad_arguments(make, kind, message):
    with pytest.raises(kind, match=re.escape(message)) as error:
        make()
    assert isinstance(error.value, SdAError)


# --- data arguments ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return data.load_dataset("digits")


@pytest.mark.parametrize("n", [2.5, True, "10"])
def test_subset_needs_whole_row_counts(digits, n):
    with pytest.raises(
        SettingTypeError, match=f"n_train must be a whole number at least 1, got {re.escape(repr(n))}"
    ):
        digits.subset(n_train=n)


def test_ragged_lists_are_named_as_such():
    with pytest.raises(
        DataError,
        match="train: x is ragged \\(its rows have different lengths\\); give "
        "every example the same number of features",
    ):
        data.validate_split([[0.1, 0.2], [0.3]], [0, 1], 2, "train")
    with pytest.raises(DataError, match="train: y is ragged"):
        data.validate_split([[0.1], [0.3]], [[0], [1, 0]], 2, "train")


# --- damaged npz files --------------------------------------------------------------------


def saved(tmp_path, **arrays):
    path = tmp_path / "checkpoint.npz"
    np.savez(path, **arrays)
    return path


def test_open_npz_reads_every_array(tmp_path):
    path = saved(tmp_path, W=np.eye(2, dtype=np.float32), b=np.zeros(2))
    arrays = open_npz(path, "checkpoint")
    assert sorted(arrays) == ["W", "b"]
    np.testing.assert_array_equal(arrays["W"], np.eye(2))


def damage(path, kind):
    content = path.read_bytes()
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"\x00not an archive at all")
    elif kind == "truncated":
        path.write_bytes(content[: len(content) // 2])
    elif kind == "flipped byte":  # the member's CRC no longer matches
        with zipfile.ZipFile(path) as archive:
            info = archive.infolist()[0]
        start = info.header_offset + 30 + len(info.filename) + 100  # inside the array's data
        path.write_bytes(content[:start] + bytes([content[start] ^ 0xFF]) + content[start + 1 :])
    elif kind == "pickled object":
        np.savez(path, W=np.array([{"a": 1}], dtype=object))
    elif kind == "npy":
        path.unlink()
        np.save(path.with_suffix(".npy"), np.eye(2))
        path.with_suffix(".npy").rename(path)
    elif kind == "gzip":
        path.write_bytes(gzip.compress(content))


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("empty", "it is empty"),
        ("garbage", "it is not an .npz \\(zip\\) archive"),
        ("npy", "it is not an .npz \\(zip\\) archive"),
        ("gzip", "it is not an .npz \\(zip\\) archive"),
        ("truncated", "it is damaged \\(BadZipFile"),
        ("flipped byte", "it is damaged \\(BadZipFile: Bad CRC-32"),
        ("pickled object", "it is damaged \\(ValueError: Object arrays cannot be loaded"),
    ],
)
def test_damaged_npz_is_named_as_not_valid(tmp_path, kind, reason):
    path = saved(tmp_path, W=np.arange(100, dtype=np.float64))
    damage(path, kind)
    with pytest.raises(
        DataError,
        match=f"^file {re.escape(str(path))} is not a valid checkpoint file: "
        f"{reason}.*; replace it with a checkpoint file written by sda",
    ):
        open_npz(path, "checkpoint")


def test_missing_npz_and_folder_instead_of_file(tmp_path):
    with pytest.raises(DataError, match="pretrained model file .*nowhere.npz does not exist; check the path"):
        open_npz(tmp_path / "nowhere.npz", "pretrained model")
    folder = re.escape(str(tmp_path))
    with pytest.raises(DataError, match=f"{folder} is a folder, not a pretrained model file"):
        open_npz(tmp_path, "pretrained model")


def refuse_to_open(monkeypatch, target):
    """Make every open of ``target`` fail as an unreadable file does (chmod alone cannot stop root)."""
    real_open = open

    def denied(path, *args, **kwargs):
        if pathlib.Path(path) == target:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", denied)


def test_unreadable_npz_is_a_permission_problem_not_damage(tmp_path, monkeypatch):
    path = saved(tmp_path, W=np.eye(2))
    refuse_to_open(monkeypatch, path)
    with pytest.raises(DataError, match=f"cannot read {re.escape(str(path))}: permission denied") as error:
        open_npz(path, "checkpoint")
    assert "not a valid" not in str(error.value) and "delete" not in str(error.value)


def test_unreadable_data_file_is_not_called_corrupt(tmp_path, monkeypatch):
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(b"whatever"))
    refuse_to_open(monkeypatch, path)
    with pytest.raises(DataError, match="permission denied; make it readable for this user") as error:
        data.load_dataset("mnist", path)
    assert "corrupt" not in str(error.value) and "delete" not in str(error.value)
