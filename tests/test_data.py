"""Tests for sda.data: real MNIST files, small synthetic files, and every bad input."""

import gzip
import os
import pathlib
import pickle
import re
import shutil
import warnings

import numpy as np
import pytest

from sda import data
from sda.data import DataError, Source

MNIST_TRAIN_COUNTS = [4932, 5678, 4968, 5101, 4859, 4506, 4951, 5175, 4842, 4988]
UNREACHABLE = "http://127.0.0.1:9/"  # the discard port: nothing listens there


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No $SDA_DATA and an empty cache, so only explicit paths find real data."""
    monkeypatch.delenv("SDA_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def mnist(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        return data.load_dataset("mnist", shared_data, download=False)


def splits(dataset):
    return dataset.train, dataset.valid, dataset.test


def idx_bytes(array, magic):
    return np.array([magic, *array.shape], dtype=">u4").tobytes() + array.tobytes()


def write_idx(folder, n_train=10_003, n_test=4, shape=(2, 3)):
    """Write four small IDX files into ``folder``; return their arrays by prefix."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(idx_bytes(images, 2051))
        )
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(idx_bytes(labels, 2049))
        )
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


def test_npz_round_trip_uint8_images(tmp_path):
    rng = np.random.default_rng(2)
    arrays = {}
    for what, rows in (("train", 5), ("valid", 2), ("test", 3)):
        arrays[f"x_{what}"] = rng.integers(0, 256, (rows, 4, 3), dtype=np.uint8)
        arrays[f"y_{what}"] = np.array([0, 6, 1, 2, 3][:rows], dtype=np.uint8)
    dataset = data.load_dataset("npz", write_npz(tmp_path, **arrays))
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
    for bad in (0, 7):
        with pytest.raises(DataError, match=f"cannot take {bad} train examples: choose 1 to 6"):
            dataset.subset(n_train=bad)


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
    assert [len(split.y) for split in splits(dataset)] == [3, 10_000, 4]
    assert dataset.image_shape == (2, 3)
    np.testing.assert_array_equal(dataset.valid.x, train_images[3:].reshape(-1, 6) / 256)
    np.testing.assert_array_equal(dataset.train.y, train_labels[:3])
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


class Payload:
    """Pickles to a call of ``function(argument)``."""

    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return self.function, (self.argument,)


@pytest.mark.parametrize("kind", ["exec", "os.system"])
def test_pickle_that_runs_code_is_refused(tmp_path, kind):
    marker = tmp_path / "ran"
    payload = {
        "exec": Payload(exec, f"open({str(marker)!r}, 'w').close()"),
        "os.system": Payload(os.system, f"touch '{marker}'"),
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
    labels.write_bytes(gzip.compress(idx_bytes(np.zeros(10_002, np.uint8), 2049)))
    with pytest.raises(DataError, match="10003 images and .* 10002 labels"):
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
    with pytest.raises(DataError, match="test: 1 labels lie outside \\[0, 3\\)"):
        data.load_dataset("npz", write_npz(tmp_path, **arrays))


def test_label_above_n_classes():
    with pytest.raises(DataError, match="train: 1 labels lie outside \\[0, 10\\)"):
        data.validate_split(np.zeros((2, 3)), np.array([3, 10]), 10, "train")


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
    with pytest.raises(DataError, match=f"cannot read {re.escape(str(fake))}"):
        data.load_dataset("npz", fake)
