"""Filter and reconstruction pictures: tiling, PNG sizes and the pixels shown."""

import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.image import imread

from sda import SdA
from sda.data import load_dataset
from sda.pictures import (
    GAP,
    LABEL_WIDTH,
    reconstruction_rows,
    save_filters,
    save_reconstructions,
    save_run_pictures,
    tile_images,
)


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def small_sdA(n_ins, hidden=(30, 20), seed=3):
    return SdA(
        np.random.RandomState(seed),
        n_ins=n_ins,
        hidden_layers_sizes=hidden,
        corruption_levels=(0.3,) * len(hidden),
    )


@pytest.fixture(scope="module")
def mnist(shared_data):
    return load_dataset("mnist", shared_data).subset(100, 100, 100)


def test_tiles_fill_the_grid_row_by_row_with_lines_between():
    rows = np.arange(24, dtype=float).reshape(6, 4) / 23  # six 2x2 images
    tiled = tile_images(rows, (2, 2), scale_rows=False)
    assert tiled.shape == (2 * 3 - 1, 3 * 3 - 1)  # 2 rows x 3 columns, 1-pixel lines
    for i in range(6):
        top, left = 3 * (i // 3), 3 * (i % 3)
        np.testing.assert_allclose(tiled[top : top + 2, left : left + 2], rows[i].reshape(2, 2))  # copies
    assert (tiled[2, :] == GAP).all() and (tiled[:, 2] == GAP).all()
    wide = tile_images(rows, (2, 2), grid=(1, 8), scale_rows=False)
    assert wide.shape == (2, 8 * 3 - 1)
    assert (wide[:, 18:] == GAP).all()  # the two empty cells
    with pytest.raises(ValueError, match="cannot hold"):
        tile_images(rows, (2, 2), grid=(2, 2))
    with pytest.raises(ValueError, match="rows must be"):
        tile_images(rows, (3, 3))


def test_each_image_is_scaled_to_the_unit_range_on_its_own():
    rows = np.array([[-4.0, 0.0, 2.0, 1.0], [10.0, 10.5, 11.0, 10.0], [7.0, 7.0, 7.0, 7.0]])
    tiled = tile_images(rows, (2, 2), grid=(1, 3))
    for i, expected in enumerate([[0, 4 / 6, 1, 5 / 6], [0, 0.5, 1, 0], [0, 0, 0, 0]]):
        np.testing.assert_allclose(tiled[:, 3 * i : 3 * i + 2].ravel(), expected)  # float64: 1 rounding


def test_filter_png_has_one_tile_per_hidden_unit(tmp_path):
    model = small_sdA(64)  # 30 filters: a 5 x 6 grid of 8x8 tiles
    save_filters(model, (8, 8), tmp_path / "filters.png", zoom=3)
    image = imread(tmp_path / "filters.png")
    assert image.shape[:2] == (3 * (5 * 9 - 1), 3 * (6 * 9 - 1))
    assert plt.get_fignums() == []  # drawn on Figure objects, not through pyplot
    save_filters(model, (8, 8), tmp_path / "four.png", n=4, zoom=1)
    assert imread(tmp_path / "four.png").shape[:2] == (2 * 9 - 1, 2 * 9 - 1)


def test_corrupted_row_zeroes_about_the_corruption_fraction(mnist):
    model = small_sdA(784)
    rows = reconstruction_rows(model, mnist.test.x, 0.3, n=20, seed=5)
    lit = rows["original"] > 0
    assert lit.sum() > 2000
    zeroed = (rows["corrupted"] == 0) & lit
    # Over 2,000 Bernoulli(0.3) draws the fraction's std is below 0.0103: 0.04 is four of them.
    assert zeroed.sum() / lit.sum() == pytest.approx(0.3, abs=0.04)
    kept = ~(rows["corrupted"] == 0)
    np.testing.assert_array_equal(rows["corrupted"][kept], rows["original"][kept])
    again = reconstruction_rows(model, mnist.test.x, 0.3, n=20, seed=5)
    np.testing.assert_array_equal(again["corrupted"], rows["corrupted"])  # the seed fixes the mask


@pytest.mark.floats
def test_reconstruction_rows_are_the_dAs_own_reconstructions(mnist, tmp_path):
    model = small_sdA(784)
    rows = save_reconstructions(model, mnist.test.x, 0.25, tmp_path / "r.png", n=10, seed=1)
    assert list(rows) == ["original", "corrupted", "first dA", "whole stack"]
    values = {name: p.get_value() for name, p in model.named_params().items()}
    w0, b0, v0 = values["hidden0.W"], values["hidden0.b"], values["dA0.bvis"]
    w1, b1, v1 = values["hidden1.W"], values["hidden1.b"], values["dA1.bvis"]
    code = sigmoid(rows["corrupted"] @ w0 + b0)
    first = sigmoid(code @ w0.T + v0)
    stack = sigmoid(sigmoid(sigmoid(code @ w1 + b1) @ w1.T + v1) @ w0.T + v0)
    # MKL in the graph vs NumPy's OpenBLAS here, both float32: 784- and 30-term sums rounded in
    # other orders move z by ~1e-6, and sigmoid's slope (<= 1/4) shrinks it. Seen: 1.2e-7.
    np.testing.assert_allclose(rows["first dA"], first, atol=1e-5)
    np.testing.assert_allclose(rows["whole stack"], stack, atol=1e-5)

    image = imread(tmp_path / "r.png")
    zoom, tile = 2, 29
    assert image.shape[:2] == (zoom * (4 * tile - 1), LABEL_WIDTH + zoom * (10 * tile - 1))
    band = image[2 * tile * zoom : (2 * tile + 28) * zoom : zoom, LABEL_WIDTH::zoom, 0]
    shown = np.stack([band[:, i * tile : i * tile + 28].ravel() for i in range(10)])
    np.testing.assert_allclose(shown, first, atol=0.01)  # the PNG's third row: 8 bits, steps of 1/255


def test_run_pictures_are_written_or_skipped_with_a_note(tmp_path):
    digits = load_dataset("digits")
    model = small_sdA(64)
    note = save_run_pictures(model, digits, tmp_path, 0.3, seed=0)
    assert "filters.png" in note
    assert {p.name for p in tmp_path.iterdir()} == {"filters.png", "reconstructions.png"}
    shapeless = dataclasses.replace(digits, image_shape=None)
    note = save_run_pictures(model, shapeless, tmp_path / "none", 0.3)
    assert note.startswith("no pictures") and not (tmp_path / "none").exists()
