"""Pictures of a trained SdA: its first-layer filters and its reconstructions.

Images are drawn pixel for pixel on matplotlib's Agg canvas (a ``Figure``
object, never pyplot), so a PNG's size in pixels is exactly the tiled
array's size times ``zoom`` (plus the label margin of the reconstructions).
"""

import math

import numpy as np
import pytensor
import pytensor.tensor as pt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100
GAP = 1.0  # value of the one-pixel lines between tiles (white)
LABEL_WIDTH = 90  # pixels left of the reconstruction rows for their names


def tile_images(rows, image_shape, grid=None, scale_rows=True):
    """Lay the flat images in ``rows`` out on a grid, row by row.

    Returns a 2-D array with a one-pixel line between tiles; ``grid`` is
    ``(rows, columns)``, by default as square as possible. With
    ``scale_rows`` each image is stretched to [0, 1] on its own (filters
    have arbitrary ranges); without, values are kept (pixels already in [0, 1]).

    Parameters
    ----------
    rows : array_like
        ``(n, height * width)``: one flat image per row.
    image_shape : (int, int)
        ``(height, width)`` of each image.
    grid : (int, int), optional
        ``(rows, columns)`` of tiles.
    scale_rows : bool
        Stretch each image to [0, 1] on its own.

    Returns
    -------
    numpy.ndarray
        The float64 picture, ``grid[0] * (height + 1) - 1`` by ``grid[1] * (width + 1) - 1``.

    Raises
    ------
    ValueError
        If the rows do not hold images of ``image_shape``, or the grid is too small.

    Examples
    --------
    >>> tile_images(np.eye(4), (2, 2), scale_rows=False).shape
    (5, 5)
    """
    rows = np.asarray(rows, dtype=np.float64)
    height, width = image_shape
    if rows.ndim != 2 or rows.shape[1] != height * width:
        raise ValueError(
            f"rows must be (n, {height * width}) for images of shape {image_shape}, got {rows.shape}"
        )
    if grid is None:
        columns = math.ceil(math.sqrt(len(rows)))
        grid = (math.ceil(len(rows) / columns), columns)
    if grid[0] * grid[1] < len(rows):
        raise ValueError(f"a {grid[0]} x {grid[1]} grid cannot hold {len(rows)} images")
    if scale_rows:
        low = rows.min(axis=1, keepdims=True)
        span = rows.max(axis=1, keepdims=True) - low
        rows = (rows - low) / np.where(span > 0, span, 1.0)  # a flat image becomes all 0
    out = np.full((grid[0] * (height + 1) - 1, grid[1] * (width + 1) - 1), GAP)
    for i, image in enumerate(rows):
        top, left = (i // grid[1]) * (height + 1), (i % grid[1]) * (width + 1)
        out[top : top + height, left : left + width] = image.reshape(height, width)
    return out


def save_gray(array, path, zoom=2, labels=None):
    """Write a [0, 1] array as a grayscale PNG, each value a ``zoom`` x ``zoom``
    block; ``labels`` names equal horizontal bands in a left margin.

    Parameters
    ----------
    array : numpy.ndarray
        2-D values in [0, 1], 0 black.
    path : str or pathlib.Path
        The PNG file.
    zoom : int
        Pixels per value along each side.
    labels : list of str, optional
        One label per horizontal band, written in a left margin.
    """
    pixels = np.kron(array, np.ones((zoom, zoom)))
    margin = LABEL_WIDTH if labels else 0
    figure = Figure(
        figsize=((pixels.shape[1] + margin) / DPI, pixels.shape[0] / DPI), dpi=DPI, facecolor="white"
    )
    FigureCanvasAgg(figure)
    figure.figimage(pixels, xo=margin, cmap="gray", vmin=0.0, vmax=1.0, origin="upper")
    for i, label in enumerate(labels or []):
        figure.text(
            4 / (pixels.shape[1] + margin), 1 - (i + 0.5) / len(labels), label, va="center", fontsize=9
        )
    figure.savefig(path, dpi=DPI)


def save_filters(model, image_shape, path, n=100, zoom=2):
    """Tile the first ``n`` filters (columns of the first layer's ``W``) as a PNG.

    Parameters
    ----------
    model : SdA
        The model whose first layer is drawn.
    image_shape : (int, int)
        ``(height, width)`` of an input image.
    path : str or pathlib.Path
        The PNG file.
    n : int
        How many filters to draw.
    zoom : int
        Pixels per weight along each side.
    """
    weights = model.dA_layers[0].W.get_value()
    save_gray(tile_images(weights[:, :n].T, image_shape), path, zoom)


def _compile_reconstructions(model):
    """``f(x) -> (first dA's, whole stack's reconstruction of x)``: the stack
    encodes up through every layer, then decodes back down through every dA."""
    x = pt.matrix("x")
    first = pt.sigmoid(model.unrolled_pre_activation(x, 1))
    stack = pt.sigmoid(model.unrolled_pre_activation(x))
    return pytensor.function([x], [first, stack], name="reconstruct")


def reconstruction_rows(model, x, corruption_level, n=10, seed=0):
    """The rows of the reconstruction picture: the first ``n`` images of ``x``,
    the same images with masking noise (drawn from ``default_rng(seed)``), and
    what the first dA and the whole stack rebuild from the noisy ones.

    Parameters
    ----------
    model : SdA
        The trained model.
    x : numpy.ndarray
        Input rows in [0, 1].
    corruption_level : float
        The fraction of pixels the noise zeroes.
    n : int
        How many images.
    seed : int
        Seeds the noise.

    Returns
    -------
    dict of str to numpy.ndarray
        ``original``, ``corrupted``, ``first dA`` and, for a stack of two layers
        or more, ``whole stack``: ``n`` rows each.
    """
    originals = np.asarray(x[:n], dtype=pytensor.config.floatX)
    keep = np.random.default_rng(seed).random(originals.shape) >= corruption_level
    corrupted = originals * keep
    first, stack = _compile_reconstructions(model)(corrupted)
    rows = {"original": originals, "corrupted": corrupted, "first dA": first}
    if model.n_layers > 1:
        rows["whole stack"] = stack
    return rows


def save_reconstructions(model, x, corruption_level, path, n=10, seed=0, image_shape=None, zoom=2):
    """Save the rows of ``reconstruction_rows`` as one labelled PNG; returns the rows.
    ``image_shape`` defaults to square images.

    Parameters
    ----------
    model, x, corruption_level, n, seed
        As for ``reconstruction_rows``.
    path : str or pathlib.Path
        The PNG file.
    image_shape : (int, int), optional
        ``(height, width)`` of an input image.
    zoom : int
        Pixels per value along each side.

    Returns
    -------
    dict of str to numpy.ndarray
        The rows drawn, as ``reconstruction_rows`` gives them.
    """
    rows = reconstruction_rows(model, x, corruption_level, n, seed)
    side = math.isqrt(rows["original"].shape[1])
    image_shape = image_shape or (side, side)
    tiles = tile_images(
        np.concatenate(list(rows.values())), image_shape, grid=(len(rows), n), scale_rows=False
    )
    save_gray(tiles, path, zoom, labels=list(rows))
    return rows


def save_run_pictures(model, dataset, folder, corruption_level, seed=0):
    """Write ``filters.png`` and ``reconstructions.png`` (of test images) into
    ``folder``; returns a one-line note of what was done.

    Parameters
    ----------
    model : SdA
        The trained model.
    dataset : Dataset
        Its data set; one without an image shape gets no pictures.
    folder : str or pathlib.Path
        The run folder.
    corruption_level : float
        The first layer's noise level, shown in the reconstructions.
    seed : int
        Seeds the noise.

    Returns
    -------
    str
        What was written, or why nothing was.
    """
    if dataset.image_shape is None:
        return f"no pictures: the {dataset.name} data set has no image shape"
    save_filters(model, dataset.image_shape, f"{folder}/filters.png")
    save_reconstructions(
        model,
        dataset.test.x,
        corruption_level,
        f"{folder}/reconstructions.png",
        seed=seed,
        image_shape=dataset.image_shape,
    )
    return f"pictures: filters.png and reconstructions.png in {folder}"
