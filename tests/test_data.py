"""Tests for sda.data: real MNIST files, small synthetic files, and every bad input."""

import codecs
import functools
import gzip
import http.server
import io
import os
import pathlib
import pickle
import re
import shutil
import threading
import tracemalloc
import warnings

import numpy as np
import pytest

from sda import data
from sda.data import DataError, DataNotFound, Source
from sda.errors import SdAError, SettingTypeError

MNIST_TRAIN_COUNTS = [4932, 5678, 4968, 5101, 4859, 4506, 4951, 5175, 4842, 4988]
UNREACHABLE = "http://127.0.0.1:9/"  # the discard port: nothing listens there


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No $SDA_DATA and an empty cache, so only explicit paths find real data."""
    monkeypatch.delenv("SDA_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Every mirror points at a closed local port, so no test can reach the internet."""
    for name, source in list(data.SOURCES.items()):
        offline_source = Source(source.sha256, (UNREACHABLE + name,), source.system_dir)
        monkeypatch.setitem(data.SOURCES, name, offline_source)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(tmp_path):
    """An HTTP server on 127.0.0.1 serving the folder it yields, and its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def mnist(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        return data.load_dataset("mnist", shared_data, download=False)


def splits(dataset):
    return dataset.train, dataset.valid, dataset.test


def idx_bytes(array, magic):
    return np.array([magic, *array.shape], dtype=">u4").tobytes() + array.tobytes()


def write_idx(folder, n_train=10_010, n_test=4, shape=(2, 3)):
    """Write four small IDX files into ``folder``; return their arrays by prefix."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)  # the first ten training rows hold every class
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images, 2051)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels, 2049)))
        arrays[prefix] = images, labels
    return arrays


def npz_arrays(n=(6, 3, 4), features=5, n_classes=3):
    rng = np.random.default_rng(1)
    arrays = {}
    for what, rows in zip(("train", "valid", "test"), n):
        arrays[f"x_{what}"] = rng.random((rows, features), dtype=np.float32)
        arrays[f"y_{what}"] = np.arange(rows) % n_classes
    return arrays


def write_npz(tmp_path, **arrays):
    path = tmp_path / "set.npz"
    np.savez(path, **arrays)
    return path


def no_download(*args, **kwargs):
    raise AssertionError("must not download")


# --- real data -------------------------------------------------------------------


def test_mnist_pickle(mnist):
    assert [split.x.shape for split in splits(mnist)] == [(50000, 784), (10000, 784), (10000, 784)]
    for split in splits(mnist):
        assert split.x.dtype == np.float32 and split.y.dtype == np.int32
        assert split.x.flags.c_contiguous
        assert split.x.min() == 0
    assert mnist.train.y[0] == 5
    assert np.bincount(mnist.train.y).tolist() == MNIST_TRAIN_COUNTS
    assert mnist.train.x.max() == np.float32(0.99609375)
    assert (mnist.n_classes, mnist.n_features, mnist.image_shape) == (10, 784, (28, 28))


def test_mnist_idx_equals_pickle(mnist, shared_data):
    idx = data.load_dataset("mnist-idx", shared_data, download=False)
    assert idx.image_shape == (28, 28)
    for from_idx, from_pickle in zip(splits(idx), splits(mnist)):
        assert from_idx.x.dtype == np.float32
        np.testing.assert_array_equal(from_idx.x, from_pickle.x)
        np.testing.assert_array_equal(from_idx.y, from_pickle.y)


def test_shared_files_match_their_sha256(shared_data, tmp_path):
    for name in ("mnist.pkl.gz", *data.IDX_FILES):
        data.verify_sha256(shared_data / name, data.SOURCES[name].sha256)
    damaged = tmp_path / "t10k-labels-idx1-ubyte.gz"
    damaged.write_bytes(b"x" + (shared_data / damaged.name).read_bytes()[1:])
    expected = data.SOURCES[damaged.name].sha256
    with pytest.raises(DataError, match=f"sha256 {data.sha256_of(damaged)}, expected {expected}"):
        data.verify_sha256(damaged, expected)


def test_fashion_mnist_refuses_mnist_files(shared_data):
    with pytest.raises(DataError, match="is MNIST, not Fashion-MNIST"):
        data.load_dataset("fashion-mnist", shared_data, download=False)


# --- digits, npz, synthetic IDX ----------------------------------------------------


def test_digits():
    digits = data.load_dataset("digits")
    assert [split.x.shape for split in splits(digits)] == [(1197, 64), (300, 64), (300, 64)]
    for split in splits(digits):
        assert split.x.dtype == np.float32 and split.y.dtype == np.int32
        assert split.x.min() == 0 and split.x.max() == 1
    assert digits.image_shape == (8, 8) and digits.n_classes == 10
    assert set(digits.train.y.tolist()) == set(range(10))
    again = data.load_dataset("digits")
    for first, second in zip(splits(digits), splits(again)):
        np.testing.assert_array_equal(first.x, second.x)
        np.testing.assert_array_equal(first.y, second.y)


def test_npz_round_trip_float(tmp_path):
    arrays = npz_arrays()
    dataset = data.load_dataset("mnist", write_npz(tmp_path, **arrays))  # .npz wins
    assert dataset.name == "npz" and dataset.n_classes == 3 and dataset.image_shape is None
    for what, split in zip(("train", "valid", "test"), splits(dataset)):
        np.testing.assert_array_equal(split.x, arrays[f"x_{what}"])
        np.testing.assert_array_equal(split.y, arrays[f"y_{what}"])
        assert split.y.dtype == np.int32


def test_npz_round_trip_uint8_images_with_declared_classes(tmp_path):
    rng = np.random.default_rng(2)
    arrays = {}
    for what, labels in (("train", [0, 6, 1, 2, 3]), ("valid", [6, 2]), ("test", [0, 1, 3])):
        arrays[f"x_{what}"] = rng.integers(0, 256, (len(labels), 4, 3), dtype=np.uint8)
        arrays[f"y_{what}"] = np.array(labels, dtype=np.uint8)
    # Classes 4 and 5 have no examples: allowed only because the file declares 7 classes.
    dataset = data.load_dataset("npz", write_npz(tmp_path, **arrays, n_classes=7))
    assert dataset.image_shape == (4, 3) and dataset.n_features == 12
    assert dataset.n_classes == 7
    expected = arrays["x_train"].reshape(5, 12).astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(dataset.train.x, expected)
    assert dataset.train.x.dtype == np.float32 and dataset.train.x.flags.c_contiguous


def test_subset(tmp_path):
    dataset = data.load_dataset("npz", write_npz(tmp_path, **npz_arrays()))
    small = dataset.subset(n_train=2, n_test=1)
    assert [len(split.y) for split in splits(small)] == [2, 3, 1]
    np.testing.assert_array_equal(small.train.x, dataset.train.x[:2])
    assert small.n_classes == dataset.n_classes
    with pytest.raises(DataError, match="cannot take 7 train examples: choose 1 to 6"):
        dataset.subset(n_train=7)
    with pytest.raises(ValueError, match="n_train must be at least 1, got 0"):
        dataset.subset(n_train=0)
    assert len(dataset.subset(n_valid=np.int64(2)).valid.y) == 2  # numpy integers are counts too


def test_subset_may_miss_classes_the_whole_set_has():
    digits = data.load_dataset("digits")
    tiny = digits.subset(n_train=3, n_valid=1, n_test=1)
    # Loading checked the classes; a few rows cannot hold them all, and that is fine.
    assert len(set(tiny.train.y.tolist())) <= 3 and tiny.n_classes == 10


def test_shared_dataset(tmp_path):
    split = data.load_dataset("npz", write_npz(tmp_path, **npz_arrays())).train
    x, y = data.shared_dataset(split)
    assert x.dtype == "float32" and y.dtype == "int32"
    np.testing.assert_array_equal(x.get_value(), split.x)
    np.testing.assert_array_equal(y.get_value(), split.y)
    assert np.shares_memory(x.get_value(borrow=True), split.x)


def test_idx_split_and_scaling(tmp_path):
    arrays = write_idx(tmp_path / "idx")
    dataset = data.load_dataset("mnist-idx", tmp_path / "idx" / "train-images-idx3-ubyte.gz")
    train_images, train_labels = arrays["train"]
    assert [len(split.y) for split in splits(dataset)] == [10, 10_000, 4]
    assert dataset.image_shape == (2, 3)
    np.testing.assert_array_equal(dataset.valid.x, train_images[10:].reshape(-1, 6) / 256)
    np.testing.assert_array_equal(dataset.train.y, train_labels[:10])
    np.testing.assert_array_equal(dataset.test.y, arrays["t10k"][1])


def test_fashion_mnist_found_under_sda_data(tmp_path, monkeypatch):
    arrays = write_idx(tmp_path / "store" / "fashion-mnist")
    write_idx(tmp_path / "store", shape=(1, 1))  # MNIST-named files must not be picked up
    monkeypatch.setenv("SDA_DATA", str(tmp_path / "store"))
    dataset = data.load_dataset("fashion-mnist", download=False)
    assert dataset.name == "fashion-mnist" and dataset.image_shape == (2, 3)
    np.testing.assert_array_equal(dataset.test.x, arrays["t10k"][0].reshape(-1, 6) / 256)


def test_fashion_mnist_found_in_system_folder(tmp_path, monkeypatch):
    write_idx(tmp_path / "system")
    for name in data.IDX_FILES:
        key = f"fashion-mnist/{name}"
        source = data.SOURCES[key]
        monkeypatch.setitem(data.SOURCES, key, Source(source.sha256, (), tmp_path / "system"))
    found = data.locate("fashion-mnist/t10k-labels-idx1-ubyte.gz", download=False)
    assert found == tmp_path / "system" / "t10k-labels-idx1-ubyte.gz"
    assert len(data.load_dataset("fashion-mnist", download=False).test.y) == 4


# --- where files are found -----------------------------------------------------------


def test_locate_order(shared_data, tmp_path, monkeypatch):
    name = "t10k-labels-idx1-ubyte.gz"
    monkeypatch.setattr(data, "_download", no_download)
    monkeypatch.setenv("SDA_DATA", str(shared_data))
    assert data.locate(name) == shared_data / name
    (tmp_path / name).write_bytes(b"")
    assert data.locate(name, tmp_path) == tmp_path / name
    assert data.locate(name, shared_data / "mnist.pkl.gz") == shared_data / "mnist.pkl.gz"


def test_cache_dir(monkeypatch, tmp_path):
    assert data.cache_dir() == tmp_path / "cache" / "sda"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data.cache_dir() == pathlib.Path.home() / ".cache" / "sda"


# --- downloads -----------------------------------------------------------------------


def test_download_into_cache(shared_data, monkeypatch):
    name = "t10k-labels-idx1-ubyte.gz"
    original = shared_data / name
    urls = (UNREACHABLE + name, original.as_uri())  # the first mirror is down
    monkeypatch.setitem(data.SOURCES, name, Source(data.SOURCES[name].sha256, urls))
    found = data.locate(name)
    assert found == data.cache_dir() / name
    assert found.read_bytes() == original.read_bytes()
    assert os.listdir(data.cache_dir()) == [name]  # no temporary file left
    monkeypatch.setattr(data, "_download", no_download)
    assert data.locate(name) == found  # cached now


def test_download_with_wrong_sha256(shared_data, tmp_path, monkeypatch):
    name = "t10k-labels-idx1-ubyte.gz"
    tampered = tmp_path / name
    tampered.write_bytes(b"x" + (shared_data / name).read_bytes()[1:])
    expected = data.SOURCES[name].sha256
    monkeypatch.setitem(data.SOURCES, name, Source(expected, (tampered.as_uri(),)))
    actual = data.sha256_of(tampered)
    with pytest.raises(DataError, match=f"sha256 {actual}, expected {expected}"):
        data.locate(name)
    assert os.listdir(data.cache_dir()) == []  # neither the file nor a temporary one


def test_no_network_says_where_to_put_the_file(monkeypatch):
    url = UNREACHABLE + "mnist.pkl.gz"
    monkeypatch.setitem(data.SOURCES, "mnist.pkl.gz", Source("0" * 64, (url,)))
    with pytest.raises(DataError) as error:
        data.load_dataset("mnist")
    message = str(error.value)
    cache = data.cache_dir()
    assert f"Looked in:\n  {cache / 'mnist.pkl.gz'}" in message
    assert f"Downloading failed:\n  {url}" in message
    assert f"put mnist.pkl.gz in {cache}, or set SDA_DATA" in message
    assert "--data PATH" in message


def test_download_off(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "_download", no_download)
    monkeypatch.setenv("SDA_DATA", str(tmp_path / "store"))
    with pytest.raises(DataError, match="Downloading is off") as error:
        data.load_dataset("mnist-idx", tmp_path, download=False)
    assert str(tmp_path / "store" / "train-images-idx3-ubyte.gz") in str(error.value)


# --- bad input -----------------------------------------------------------------------


def test_missing_explicit_path(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_download", no_download)
    missing = tmp_path / "nowhere" / "mnist.pkl.gz"
    with pytest.raises(DataError, match=f"{re.escape(str(missing))} does not exist"):
        data.load_dataset("mnist", missing)


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'cifar'; choose one of mnist, mnist-idx"):
        data.load_dataset("cifar")


def test_truncated_gzip(shared_data, tmp_path):
    content = (shared_data / "mnist.pkl.gz").read_bytes()
    truncated = tmp_path / "mnist.pkl.gz"
    truncated.write_bytes(content[: len(content) // 2])
    with pytest.raises(DataError, match=f"cannot read {re.escape(str(truncated))}: EOFError.*truncated"):
        data.load_dataset("mnist", truncated)


def test_not_a_gzip(tmp_path):
    fake = tmp_path / "mnist.pkl.gz"
    fake.write_text("not compressed")
    with pytest.raises(DataError, match=f"cannot read {re.escape(str(fake))}: BadGzipFile"):
        data.load_dataset("mnist", fake)


class Call:
    """Pickles to a call of ``function(*arguments)``."""

    def __init__(self, function, *arguments):
        self.function, self.arguments = function, arguments

    def __reduce__(self):
        return self.function, self.arguments


@pytest.mark.parametrize(
    "kind",
    [
        "exec",
        "os.system",
        "builtins.eval",
        "_codecs.encode rot13",
        "_codecs.encode bytes",
        "bytes of a huge size",
    ],
)
def test_hostile_pickles_are_refused_without_running(tmp_path, kind):
    marker = tmp_path / "ran"
    payload = {
        "exec": Call(exec, f"open({str(marker)!r}, 'w').close()"),
        "os.system": Call(os.system, f"touch '{marker}'"),
        "builtins.eval": Call(eval, f"open({str(marker)!r}, 'w').close()"),
        "_codecs.encode rot13": Call(codecs.encode, "hello", "rot13"),
        "_codecs.encode bytes": Call(codecs.encode, b"x", "zlib"),
        "bytes of a huge size": Call(bytes, 1 << 40),
    }[kind]
    evil = tmp_path / "mnist.pkl.gz"
    evil.write_bytes(gzip.compress(pickle.dumps(((payload, 1), 2, 3), protocol=2)))
    with pytest.raises(DataError, match="refusing to unpickle .*only numpy arrays are allowed"):
        data.load_dataset("mnist", evil)
    assert not marker.exists()


def test_pickle_with_wrong_layout(tmp_path):
    odd = tmp_path / "mnist.pkl.gz"
    odd.write_bytes(gzip.compress(pickle.dumps([np.zeros(3)], protocol=4)))
    with pytest.raises(DataError, match="does not hold \\(\\(train_x, train_y\\)"):
        data.load_dataset("mnist", odd)


def test_idx_wrong_magic(tmp_path):
    write_idx(tmp_path)
    images = tmp_path / "t10k-images-idx3-ubyte.gz"
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    shutil.copy(labels, images)
    with pytest.raises(DataError, match=f"{re.escape(str(images))} has magic number 2049, expected 2051"):
        data.load_dataset("mnist-idx", tmp_path)


def test_idx_truncated(tmp_path):
    write_idx(tmp_path)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(gzip.decompress(labels.read_bytes())[:-1]))
    with pytest.raises(DataError, match=f"{re.escape(str(labels))} holds 11 bytes .* needs 12; .*truncated"):
        data.load_dataset("mnist-idx", tmp_path)


def test_idx_images_and_labels_disagree(tmp_path):
    write_idx(tmp_path)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(idx_bytes(np.zeros(10_009, np.uint8), 2049)))
    with pytest.raises(DataError, match="10010 images and .* 10009 labels"):
        data.load_dataset("mnist-idx", tmp_path)


def test_npz_nan_pixels(tmp_path):
    arrays = npz_arrays()
    arrays["x_valid"][1, :2] = np.nan
    with pytest.raises(DataError, match="valid: x holds 2 NaN or infinite values"):
        data.load_dataset("npz", write_npz(tmp_path, **arrays))


def test_npz_pixels_out_of_range(tmp_path):
    arrays = npz_arrays()
    arrays["x_train"] = arrays["x_train"] * 255
    with pytest.raises(DataError, match="train: .* pixel values lie outside \\[0, 1\\]"):
        data.load_dataset("npz", write_npz(tmp_path, **arrays))


def test_npz_negative_label(tmp_path):
    arrays = npz_arrays()
    arrays["y_test"][0] = -1
    with pytest.raises(DataError, match="test: label -1 in row 0 is not a class number 0 to 2"):
        data.load_dataset("npz", write_npz(tmp_path, **arrays))


def test_label_above_n_classes():
    with pytest.raises(
        DataError,
        match="train: label 10 in row 1 is not a class number 0 to 9 "
        "\\(2 such labels\\); fix or drop those rows",
    ):
        data.validate_split(np.zeros((3, 3)), np.array([3, 10, 11]), 10, "train")


def test_non_integer_labels():
    with pytest.raises(DataError, match="y has shape \\(2,\\) and dtype float64"):
        data.validate_split(np.zeros((2, 3)), np.array([0.0, 1.0]), 10, "train")


def test_npz_lengths_differ(tmp_path):
    arrays = npz_arrays()
    arrays["y_train"] = arrays["y_train"][:5]
    with pytest.raises(DataError, match="train: x has 6 rows but y has 5 labels"):
        data.load_dataset("npz", write_npz(tmp_path, **arrays))


def test_npz_feature_counts_differ(tmp_path):
    arrays = npz_arrays()
    arrays["x_valid"] = arrays["x_valid"][:, :4]
    with pytest.raises(DataError, match="different numbers of features .*'valid': 4"):
        data.load_dataset("npz", write_npz(tmp_path, **arrays))


def test_npz_missing_key(tmp_path):
    arrays = npz_arrays()
    del arrays["y_test"]
    with pytest.raises(DataError, match="lacks y_test; an npz dataset needs the arrays x_train"):
        data.load_dataset("npz", write_npz(tmp_path, **arrays))


def test_npz_needs_a_file(tmp_path):
    with pytest.raises(DataError, match="needs the path of a .npz file"):
        data.load_dataset("npz", tmp_path)


def test_npz_not_a_zip(tmp_path):
    fake = tmp_path / "set.npz"
    fake.write_text("not a zip")
    with pytest.raises(
        DataError,
        match=f"file {re.escape(str(fake))} is not a valid npz dataset file: "
        "it is not an .npz \\(zip\\) archive",
    ):
        data.load_dataset("npz", fake)


def test_data_error_is_a_user_error_and_a_value_error():
    assert issubclass(DataError, SdAError) and issubclass(DataError, ValueError)
    assert issubclass(DataNotFound, DataError)


# --- labels and classes ----------------------------------------------------------------


def ten_class_arrays():
    return npz_arrays(n=(20, 10, 10), n_classes=10)


@pytest.mark.parametrize("split, row", [("train", 5), ("test", 7)])
def test_one_stray_label_is_refused(tmp_path, split, row):
    arrays = ten_class_arrays()
    arrays[f"y_{split}"][row] = 1000
    path = write_npz(tmp_path, **arrays)
    with pytest.raises(DataError) as error:
        data.load_dataset("npz", path)
    message = str(error.value)
    assert message.startswith(
        f"{path}: the labels run from 0 to 1000 (in {split}, row {row}), "
        "but no label is in classes 10 to 999, so this would be a 1001-class model"
    )
    assert "Fix the stray label" in message and "numpy.savez(..., n_classes=1001)" in message


def test_float_labels_are_named_before_any_class_counting(tmp_path):
    arrays = npz_arrays(n=(3, 3, 3))
    for what in ("train", "test"):
        arrays[f"y_{what}"] = np.array([0, 1, 3])
    arrays["y_valid"] = np.array([2.0, 1.0, 0.0])  # without it, class 2 looks like a gap
    with pytest.raises(
        DataError, match="valid: y has shape \\(3,\\) and dtype float64; it must be a 1-D integer array"
    ):
        data.load_dataset("npz", write_npz(tmp_path, **arrays))


def test_declared_n_classes_refuses_a_label_beyond_it(tmp_path):
    arrays = ten_class_arrays()
    arrays["y_valid"][2] = 1000
    path = write_npz(tmp_path, **arrays, n_classes=10)
    with pytest.raises(
        DataError, match=f"{re.escape(str(path))} valid: label 1000 in row 2 is not a class number 0 to 9"
    ):
        data.load_dataset("npz", path)


@pytest.mark.parametrize("declared", [np.array([10]), np.float64(10.0), np.int64(1)])
def test_declared_n_classes_must_be_one_whole_number(tmp_path, declared):
    path = write_npz(tmp_path, **ten_class_arrays(), n_classes=declared)
    with pytest.raises(DataError, match="n_classes is .*; store it as one whole number of at least 2"):
        data.load_dataset("npz", path)


def test_declared_n_classes_is_used(tmp_path):
    dataset = data.load_dataset("npz", write_npz(tmp_path, **ten_class_arrays(), n_classes=12))
    assert dataset.n_classes == 12


def test_class_only_in_training_is_refused(tmp_path):
    arrays = npz_arrays()  # classes 0, 1, 2 in every split
    arrays["y_train"][[1, 4]] = 3
    path = write_npz(tmp_path, **arrays)
    with pytest.raises(
        DataError,
        match=f"{re.escape(str(path))}: train holds class 3 but neither valid "
        "nor test does, so the error on it is never measured",
    ):
        data.load_dataset("npz", path)


def test_class_missing_from_training_is_refused(tmp_path):
    arrays = npz_arrays()
    arrays["y_train"][arrays["y_train"] == 2] = 1
    path = write_npz(tmp_path, **arrays)
    with pytest.raises(
        DataError,
        match="valid holds class 2 but train does not, so the model cannot "
        "learn it; add such training examples, or drop those rows",
    ):
        data.load_dataset("npz", path)


def test_class_check_runs_for_declared_data_sets(tmp_path):
    arrays = write_idx(tmp_path)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    test_labels = arrays["t10k"][1].copy()
    test_labels[0] = 9  # fine: class 9 is in train
    labels.write_bytes(gzip.compress(idx_bytes(test_labels, 2049)))
    assert data.load_dataset("mnist-idx", tmp_path).test.y[0] == 9
    train_labels = tmp_path / "train-labels-idx1-ubyte.gz"
    train = arrays["train"][1].copy()
    train[9] = 8  # the training split is the first ten rows: now it lacks class 9
    train_labels.write_bytes(gzip.compress(idx_bytes(train, 2049)))
    with pytest.raises(DataError, match="valid holds class 9 but train does not"):
        data.load_dataset("mnist-idx", tmp_path)


# --- IDX decompression bombs --------------------------------------------------------------

ZEROS_MEMBER = 16 << 20  # one gzip member inflates to 16 MiB of zeros, from about 16 KiB


def write_bomb(path, shape, inflated_bytes):
    """An IDX images gzip with header ``shape`` and ``inflated_bytes`` of zeros after it.

    gzip members concatenate, so one small member repeated builds the bomb in
    milliseconds without ever holding the inflated bytes.
    """
    member = gzip.compress(bytes(ZEROS_MEMBER), compresslevel=9)
    header = gzip.compress(np.array([2051, *shape], dtype=">u4").tobytes())
    path.write_bytes(header + member * (inflated_bytes // ZEROS_MEMBER))
    return path


def peak_bytes_of(function):
    tracemalloc.start()
    try:
        function()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_idx_bomb_behind_an_honest_header_stops_after_the_promised_bytes(tmp_path):
    write_idx(tmp_path)
    bomb = write_bomb(tmp_path / "train-images-idx3-ubyte.gz", (60_000, 28, 28), 3 << 29)  # 1.5 GiB
    assert bomb.stat().st_size < 2 << 20  # small on disk

    def load():
        with pytest.raises(
            DataError,
            match=f"{re.escape(str(bomb))} holds more than the 47040016 bytes "
            "its header \\(60000, 28, 28\\) needs; .* decompression bomb",
        ):
            data.load_dataset("mnist-idx", tmp_path)

    # The promised 47 MB are read, in 1 MiB chunks; inflating the whole bomb would take 1.5 GiB.
    assert peak_bytes_of(load) < 100 << 20


@pytest.mark.parametrize(
    "shape",
    [
        (2_000_000, 28, 28),  # 1.5 GiB: above the 1 GiB cap
        (150_000, 28, 28),  # 118 MB from a gzip about 1000 times smaller
    ],
)
def test_idx_bomb_with_a_huge_header_is_refused_before_inflating(tmp_path, shape):
    write_idx(tmp_path)
    size = int(np.prod(shape))
    bomb = write_bomb(tmp_path / "train-images-idx3-ubyte.gz", shape, min(size, 3 << 29))
    limit = max(64 << 20, 100 * bomb.stat().st_size)
    assert limit < size

    def load():
        with pytest.raises(
            DataError,
            match=f"{re.escape(str(bomb))} has a header promising "
            f"{re.escape(str(shape))}, {size} bytes, but a gzip file of "
            f"images of its size holds at most {limit} bytes",
        ):
            data.load_dataset("mnist-idx", tmp_path)

    assert peak_bytes_of(load) < 1 << 20  # not even one chunk was inflated


class CountingGzip(gzip.GzipFile):
    """A GzipFile that counts the bytes it inflates for its reader."""

    inflated = 0

    def read(self, size=-1):
        data = super().read(size)
        CountingGzip.inflated += len(data)
        return data

    def readline(self, size=-1):
        line = super().readline(size)
        CountingGzip.inflated += len(line)
        return line


def test_pickle_bomb_stops_at_the_inflate_limit(tmp_path, monkeypatch):
    # A protocol-4 pickle announcing 1.5 GiB of bytes (BINBYTES8), then 1.5 GiB of zeros.
    announce = gzip.compress(b"\x80\x04\x8e" + (3 << 29).to_bytes(8, "little"))
    bomb = tmp_path / "mnist.pkl.gz"
    bomb.write_bytes(announce + gzip.compress(bytes(ZEROS_MEMBER), compresslevel=9) * 96)
    limit = 100 * bomb.stat().st_size  # 150 MB for this 1.5 MB file
    monkeypatch.setattr(CountingGzip, "inflated", 0)
    monkeypatch.setattr(data.gzip, "open", lambda file, mode: CountingGzip(file, mode))
    with pytest.raises(
        DataError,
        match=f"{re.escape(str(bomb))} keeps inflating, but a gzip file of "
        f"images of its size holds at most {limit} bytes",
    ):
        data.load_dataset("mnist", bomb)
    # (Python's unpickler reserves the announced size up front, so tracemalloc cannot tell;
    # the pages it never fills cost no memory. What matters is how much was inflated.)
    assert CountingGzip.inflated == limit + 1  # one byte past the limit, of 1.5 GiB


# --- pickles ----------------------------------------------------------------------------


def small_mnist_content():
    """((x, y), (x, y), (x, y)) shaped like the tutorial's file: 784 float32 pixels, int64 labels."""
    rng = np.random.default_rng(3)
    return tuple((rng.random((10, 784), dtype=np.float32), np.arange(10)) for _ in range(3))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_pickles_of_every_protocol_load(tmp_path, protocol):
    content = small_mnist_content()
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps(content, protocol=protocol)))
    if protocol == 2:  # Python 3 writes bytes at protocol 2 as a call of _codecs.encode
        assert b"_codecs" in gzip.decompress(path.read_bytes())
    dataset = data.load_dataset("mnist", path)
    for (x, y), split in zip(content, splits(dataset)):
        np.testing.assert_array_equal(split.x, x)
        np.testing.assert_array_equal(split.y, y)


def test_protocol_2_empty_array_needs_only_an_empty_bytes():
    pickled = pickle.dumps(np.zeros(0, np.float32), protocol=2)
    loaded = data._NumpyUnpickler(io.BytesIO(pickled), encoding="latin1").load()
    assert loaded.dtype == np.float32 and loaded.shape == (0,)


# --- mirrors on a local HTTP server --------------------------------------------------------


def test_mirrors_are_tried_in_order_until_one_has_the_right_sha256(mirror, monkeypatch):
    root, url = mirror
    name = "t10k-labels-idx1-ubyte.gz"
    good = gzip.compress(idx_bytes(np.arange(4, dtype=np.uint8), 2049))
    (root / "bad").mkdir()
    (root / "good").mkdir()
    (root / "bad" / name).write_bytes(good[:-1] + b"!")  # served, but the wrong bytes
    (root / "good" / name).write_bytes(good)
    sha256 = data.sha256_of(root / "good" / name)
    urls = (url + "gone/" + name, url + "bad/" + name, url + "good/" + name)
    monkeypatch.setitem(data.SOURCES, name, Source(sha256, urls))
    found = data.locate(name)
    assert found == data.cache_dir() / name and found.read_bytes() == good
    assert os.listdir(data.cache_dir()) == [name]


def test_every_mirror_failing_names_each_failure(mirror, monkeypatch):
    root, url = mirror
    name = "t10k-labels-idx1-ubyte.gz"
    (root / name).write_bytes(b"not the file")
    expected = "0" * 64
    monkeypatch.setitem(data.SOURCES, name, Source(expected, (url + "gone/" + name, url + name)))
    with pytest.raises(DataNotFound) as error:
        data.locate(name)
    message = str(error.value)
    assert f"  {url}gone/{name}: HTTP Error 404" in message
    assert (
        f"  {url}{name}: {url}{name} gave a file with sha256 {data.sha256_of(root / name)}, "
        f"expected {expected}" in message
    )
    assert os.listdir(data.cache_dir()) == []  # nothing kept, not even a temporary file


def test_mnist_falls_back_from_the_pickle_to_idx_mirrors(mirror, monkeypatch):
    root, url = mirror
    arrays = write_idx(root / "idx")
    (root / "bad").mkdir()
    monkeypatch.setitem(
        data.SOURCES,
        "mnist.pkl.gz",
        Source(data.SOURCES["mnist.pkl.gz"].sha256, (url + "gone/mnist.pkl.gz",)),
    )
    for name in data.IDX_FILES:
        (root / "bad" / name).write_bytes(b"junk")
        sha256 = data.sha256_of(root / "idx" / name)
        monkeypatch.setitem(data.SOURCES, name, Source(sha256, (url + "bad/" + name, url + "idx/" + name)))
    dataset = data.load_dataset("mnist")
    assert dataset.name == "mnist" and dataset.image_shape == (2, 3)
    np.testing.assert_array_equal(dataset.test.y, arrays["t10k"][1])
    assert sorted(os.listdir(data.cache_dir())) == sorted(data.IDX_FILES)


def test_mnist_prefers_local_idx_files_to_downloading_the_pickle(tmp_path, monkeypatch):
    write_idx(tmp_path / "store")
    monkeypatch.setenv("SDA_DATA", str(tmp_path / "store"))
    monkeypatch.setattr(data, "_download", no_download)
    assert data.load_dataset("mnist").name == "mnist"
    assert len(data.load_dataset("mnist", tmp_path / "store" / "t10k-images-idx3-ubyte.gz").test.y) == 4


def test_mnist_found_nowhere_lists_both_formats(monkeypatch):
    with pytest.raises(DataNotFound) as error:
        data.load_dataset("mnist", download=False)
    message = str(error.value)
    assert message.startswith("MNIST is found in neither of its formats")
    assert "mnist.pkl.gz not found" in message and "train-images-idx3-ubyte.gz not found" in message


@pytest.mark.parametrize("path", [123, 1.5, ["data"]])
def test_a_path_of_the_wrong_type_is_one_clear_error(path):
    with pytest.raises(
        SettingTypeError,
        match=r"path must be a file or folder name \(a str or "
        rf"os.PathLike\), got {re.escape(repr(path))}",
    ):
        data.load_dataset("mnist", path=path)
