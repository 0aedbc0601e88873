"""A model too large for the memory available is refused in one line before anything is allocated,
wherever a model is built from settings; labels far above the rows never size an array."""

import numpy as np
import pytest

from sda import data
from sda.checks import available_memory, check_memory, training_memory
from sda.errors import SettingError

HUGE = "100000000"  # 10**8 hidden units: hundreds of GiB of weights on any input


def test_available_memory_is_read_and_has_a_fallback(monkeypatch):
    assert available_memory() > 0
    monkeypatch.setattr("builtins.open", lambda *args, **kwargs: (_ for _ in ()).throw(OSError()))
    assert available_memory() > 0  # from os.sysconf


def test_the_estimate_counts_weights_their_gradients_and_the_cache():
    parts = training_memory(
        784, (1000, 1000, 1000), 10, n_rows=70_000, n_train=50_000, batch_rows=20, eval_rows=1000
    )
    weights = 784 * 1000 + 2 * 1000 * 1000 + 1000 * 10 + 3 * 1000 + 784 + 2 * 1000 + 10
    assert parts["parameters"] == 3 * 4 * weights + 8 * 1000 * 1000  # and the float64 first draw
    assert parts["cached layer inputs"] == 2 * 4 * 50_000 * 1000
    assert sum(parts.values()) < 2**30  # the default network fits any machine


def test_check_memory_names_the_part_and_the_setting():
    with pytest.raises(
        SettingError,
        match=r"needs about 1\.44 TiB of memory \(parameters: 1\.44 TiB\) but "
        r"1 GiB is available: reduce hidden_layers$",
    ):
        check_memory(training_memory(784, (10**8,), 10), {"parameters": "hidden_layers"}, available=2**30)
    check_memory({"parameters": 2**29}, {}, available=2**30)  # fits: nothing said


def test_run_refuses_a_huge_model_before_making_its_folder(tmp_path, capsys):
    from sda.run import main

    assert (
        main(
            [
                "--preset",
                "demo",
                "--hidden-layers",
                HUGE,
                "--corruption-levels",
                "0.1",
                "--out",
                str(tmp_path / "runs"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is available: reduce --hidden-layers (100000000)" in err
    assert not (tmp_path / "runs").exists()


def test_compare_refuses_a_huge_model(tmp_path, capsys):
    from sda.compare import main

    assert (
        main(
            [
                "--dataset",
                "digits",
                "--hidden-layers",
                HUGE,
                "--corruption-levels",
                "0.1",
                "--out",
                str(tmp_path / "cmp"),
            ]
        )
        == 2
    )
    assert "is available: reduce --hidden-layers" in capsys.readouterr().err
    assert not (tmp_path / "cmp").exists()


def test_an_estimator_refuses_a_huge_model_before_drawing_weights():
    from sda.estimators import SdATransformer

    X = data.load_dataset("digits").train.x[:50]
    with pytest.raises(SettingError, match="is available: reduce hidden_layer_sizes or batch_size$"):
        SdATransformer(hidden_layer_sizes=(10**8,)).fit(X)


def write_npz(path, y_train, **extra):
    rng = np.random.default_rng(0)
    x = rng.random((30, 4), dtype=np.float32)
    y = np.arange(30) % 3
    np.savez(path, x_train=x, y_train=y_train, x_valid=x, y_valid=y, x_test=x, y_test=y, **extra)
    return path


def test_a_label_far_above_the_rows_is_refused_without_sizing_an_array_by_it(tmp_path):
    y = np.arange(30) % 3
    y[0] = 2**31 - 1
    with pytest.raises(
        data.DataError,
        match=r"the labels run from 0 to 2147483647 \(in train, row 0\), but "
        r"no label is in 2147483644 classes \(classes 3 to 7, \.\.\.\).*"
        r"relabel the classes 0 to K-1",
    ):
        data.load_dataset("npz", write_npz(tmp_path / "big.npz", y))


def test_a_declared_huge_n_classes_loads_and_its_model_is_refused(tmp_path, capsys):
    from sda.run import main

    path = write_npz(tmp_path / "many.npz", np.arange(30) % 3, n_classes=2**31 - 1)
    assert data.load_dataset("npz", path).n_classes == 2**31 - 1  # valid data: accepted
    assert main(["--preset", "demo", "--data", str(path), "--out", str(tmp_path / "runs")]) == 2
    assert (
        "is available: reduce the number of classes (2147483647, the data's n_classes)"
        in capsys.readouterr().err
    )
