"""A trained model back from disk: ``model.npz`` with its architecture, loaded and used.

``python -m sda.run`` writes ``model.npz``: every parameter by its
``SdA.named_params()`` name and, under ``sda.rundir.METADATA_KEY``, a JSON
text that says what they are (:func:`model_metadata`): the layer sizes, the
activation, the reconstruction loss, tied or untied decoders, the corruption
levels, the class labels, the input the model expects (image shape, and how
``sda.data`` scaled grey levels into [0, 1]), the model-file format and the
sda version that wrote it. So a ``model.npz`` loads on its own
(:func:`load_model`), read with ``allow_pickle=False``. A file written before
the metadata existed loads from its run folder (:func:`load_run`), whose
``config.json`` holds the same settings.

Every problem (a damaged file, a missing or misshapen parameter, NaN
weights, a file of another format) is an ``SdAError`` whose one line names
the file and the fix.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytensor

import sda  # its __version__, read when a file is written or checked
from sda.data import open_npz
from sda.errors import SdAError, SettingError
from sda.rundir import METADATA_KEY, read_text, set_params
from sda.SdA import SdA, check_architecture

MODEL_FORMAT = 1  # raised whenever model.npz changes in a way an older sda cannot read
ACTIVATION = "sigmoid"  # the only hidden-layer activation SdA builds
CHUNK_ROWS = 1000  # rows per call of a compiled function: bounded memory on any input size
# How sda.data turns a data set's grey levels into [0, 1]: (brightest level, divisor).
# MNIST's pickle (and the IDX loader, to match it) holds k/256 for k = 0..255; the 8x8
# digits hold k/16 for k = 0..16; an npz data set of uint8 pixels is divided by 255.
PIXEL_SCALES = {
    "mnist": (255, 256),
    "mnist-idx": (255, 256),
    "fashion-mnist": (255, 256),
    "digits": (16, 16),
    "npz": (255, 255),
}
BRIGHT_BACKGROUND = 0.5  # a mean border pixel above this is a dark digit on a light page
ARCHITECTURE = ("n_ins", "hidden_layers_sizes", "n_outs", "corruption_levels", "tied", "loss")
# settings of config.json that must agree with model.npz's architecture
CONFIG_ARCHITECTURE = {
    "hidden_layers": "hidden_layers_sizes",
    "corruption_levels": "corruption_levels",
    "tied": "tied",
    "loss": "loss",
}


def model_metadata(
    model: SdA, dataset_name: str | None = None, image_shape: tuple[int, int] | None = None
) -> dict:
    """What ``model.npz`` records beside ``model``'s parameters.

    Parameters
    ----------
    model : SdA
        The trained model.
    dataset_name : str, optional
        The data set it was trained on (a ``sda.data.DATASETS`` name): it
        fixes how an image's grey levels are scaled. None: divided by 255.
    image_shape : (int, int), optional
        (height, width) of the input images, if the rows are images.

    Returns
    -------
    dict
        JSON-ready: ``format``, ``sda_version``, ``architecture`` (``SdA``'s
        keyword arguments plus ``activation``), ``classes`` and ``input``.

    Examples
    --------
    >>> import numpy as np
    >>> model = SdA(np.random.RandomState(0), n_ins=64, hidden_layers_sizes=(16,), n_outs=10,
    ...             corruption_levels=(0.1,))
    >>> meta = model_metadata(model, "digits", (8, 8))
    >>> meta["architecture"]["hidden_layers_sizes"], meta["input"]["pixel_scale"]
    ([16], [16, 16])
    """
    named = model.named_params()
    shapes = [named[f"hidden{i}.W"].get_value(borrow=True).shape for i in range(model.n_layers)]
    n_outs = int(named["logistic.b"].get_value(borrow=True).shape[0])
    architecture = dict(
        n_ins=int(shapes[0][0]),
        hidden_layers_sizes=[int(s[1]) for s in shapes],
        n_outs=n_outs,
        corruption_levels=list(model.corruption_levels),
        tied="dA0.W_prime" not in named,
        loss=model.dA_layers[0].loss,
        activation=ACTIVATION,
    )
    return {
        "format": MODEL_FORMAT,
        "sda_version": sda.__version__,
        "architecture": architecture,
        "classes": list(range(n_outs)),
        "input": {
            "dataset": dataset_name,
            "image_shape": None if image_shape is None else [int(n) for n in image_shape],
            "pixel_scale": list(PIXEL_SCALES.get(dataset_name or "", (255, 255))),
        },
    }


# ------------------------------------------------------------------ reading it back
def _refuse(path, problem, fix="restore the file, or train the model again"):
    return SdAError(f"{path}: {problem}; {fix}")


def _read_metadata(path, entry) -> dict:
    """The metadata dict of ``entry`` (the stored string array), its format checked."""
    if entry.dtype.kind != "U" or entry.ndim != 0:
        raise _refuse(
            path,
            f"{METADATA_KEY} holds a {entry.dtype} array of shape {entry.shape}, "
            "not the JSON text sda writes",
        )
    try:
        metadata = json.loads(entry.item())
    except ValueError as error:
        raise _refuse(path, f"{METADATA_KEY} is not valid JSON ({error})") from None
    if not isinstance(metadata, dict) or type(metadata.get("format")) is not int:
        raise _refuse(path, f"{METADATA_KEY} names no model format")
    if metadata["format"] != MODEL_FORMAT:
        writer = metadata.get("sda_version", "an unknown version")
        newer = metadata["format"] > MODEL_FORMAT
        raise _refuse(
            path,
            f"it is a format-{metadata['format']} model file written by sda "
            f"{writer}, and this sda {sda.__version__} reads format {MODEL_FORMAT}",
            "upgrade sda (pip install -U sda-pytensor)"
            if newer
            else f"load it with the sda {writer} that wrote it",
        )
    return metadata


def _architecture(path, metadata) -> dict:
    """``SdA``'s keyword arguments from the metadata, every value checked."""
    found = metadata.get("architecture")
    if not isinstance(found, dict) or any(name not in found for name in ARCHITECTURE):
        raise _refuse(path, f"{METADATA_KEY} lacks some of the architecture {list(ARCHITECTURE)}")
    if found.get("activation", ACTIVATION) != ACTIVATION:
        raise _refuse(
            path,
            f"its hidden layers use {found['activation']!r}, and SdA builds {ACTIVATION} layers only",
            "load it with the library that wrote it",
        )
    architecture = {name: found[name] for name in ARCHITECTURE}
    for name in ("hidden_layers_sizes", "corruption_levels"):
        if isinstance(architecture[name], list):
            architecture[name] = tuple(architecture[name])
    try:
        check_architecture(**architecture)
    except SdAError as error:
        raise _refuse(path, f"its architecture is unusable: {error}") from None
    return architecture


def _input(path, metadata, n_ins) -> dict:
    """``dataset``, ``image_shape`` and ``pixel_scale`` of the model's input, checked."""
    found = metadata.get("input", {})
    if not isinstance(found, dict):
        raise _refuse(path, f"its input format {found!r} is not a JSON object")
    image_shape, scale = found.get("image_shape"), found.get("pixel_scale", [255, 255])
    if image_shape is not None and (
        not isinstance(image_shape, list)
        or len(image_shape) != 2
        or not all(isinstance(n, int) for n in image_shape)
        or math.prod(image_shape) != n_ins
    ):
        raise _refuse(path, f"its image shape {image_shape} does not hold its {n_ins} inputs")
    if (
        not isinstance(scale, list)
        or len(scale) != 2
        or not all(type(n) is int and 0 < n <= 256 for n in scale)
    ):
        raise _refuse(path, f"its pixel scale {scale} is not two whole numbers from 1 to 256")
    if image_shape is None and math.isqrt(n_ins) ** 2 == n_ins:  # square images, as in every data set
        image_shape = [math.isqrt(n_ins)] * 2
    return {
        "dataset": found.get("dataset"),
        "pixel_scale": tuple(scale),
        "image_shape": None if image_shape is None else tuple(image_shape),
    }


def _metadata_from_settings(path, settings, stored) -> dict:
    """The metadata an older ``model.npz`` lacks, from its run's ``config.json`` settings."""
    try:
        architecture = {
            "n_ins": int(stored["hidden0.W"].shape[0]),
            "hidden_layers_sizes": settings["hidden_layers"],
            "n_outs": int(stored["logistic.b"].shape[0]),
            "corruption_levels": settings["corruption_levels"],
            "tied": settings["tied"],
            "loss": settings["loss"],
        }
    except (KeyError, IndexError) as error:
        raise _refuse(path, f"it lacks {error} and holds no {METADATA_KEY}") from None
    dataset = settings.get("dataset")
    if str(settings.get("data") or "").endswith(".npz"):  # load_dataset reads such a file as "npz"
        dataset = "npz"
    return {
        "format": MODEL_FORMAT,
        "sda_version": "unknown (no metadata)",
        "architecture": architecture,
        "classes": list(range(architecture["n_outs"])),
        "input": {"dataset": dataset, "pixel_scale": list(PIXEL_SCALES.get(dataset, (255, 255)))},
    }


def load_model(path, settings: dict | None = None) -> "TrainedModel":
    """The trained model in the ``.npz`` file ``path``, written by ``python -m sda.run``.

    Parameters
    ----------
    path : str or path-like
        A ``model.npz``.
    settings : dict, optional
        The run's ``config.json`` values, used only when the file is older
        than its metadata; :func:`load_run` passes them.

    Returns
    -------
    TrainedModel
        The ``SdA`` with its parameters set, its class labels and input format.

    Raises
    ------
    SdAError
        The file is missing or damaged, lacks a parameter or holds one of the
        wrong shape or dtype, holds non-finite weights, was written in a model
        format this sda cannot read, or records no architecture and no
        ``settings`` were given. The message names the file and the fix.
    """
    path = Path(path)
    stored = open_npz(path, "saved model")
    if METADATA_KEY in stored:
        metadata = _read_metadata(path, stored[METADATA_KEY])
    elif settings is not None:
        metadata = _metadata_from_settings(path, settings, stored)
    else:
        raise _refuse(
            path,
            f"it holds no {METADATA_KEY} (it was written before model files recorded their architecture)",
            "load its run folder with sda.load_run, which reads the run's config.json",
        )
    architecture = _architecture(path, metadata)
    classes = metadata.get("classes")
    if (
        not isinstance(classes, list)
        or len(classes) != architecture["n_outs"]
        or not all(type(c) in (int, str) for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise _refuse(
            path,
            f"its class labels {classes!r} are not {architecture['n_outs']} distinct "
            "labels (whole numbers or text), one per output",
        )
    # The generator only draws initial weights, which set_params overwrites at once.
    model = SdA(np.random.RandomState(0), **architecture)
    record = "the architecture it records" if METADATA_KEY in stored else "its run's config.json"
    set_params(
        model,
        stored,
        path,
        misfit_fix=f"its weights do not match {record}; restore the run's own files, or train again",
    )
    return TrainedModel(
        model=model,
        architecture=architecture,
        classes=np.array(classes),
        path=path,
        sda_version=str(metadata.get("sda_version")),
        **_input(path, metadata, architecture["n_ins"]),
    )


def _read_json(path):
    """The JSON object in the run-folder file ``path``; ``SdAError`` naming it if it is not one."""
    try:
        value = json.loads(read_text(path, "run folder"))
    except ValueError as error:
        raise SdAError(
            f"{path} is damaged: it is not valid JSON ({error}); restore it, or start the run again"
        ) from None
    if not isinstance(value, dict):
        raise SdAError(f"{path} is damaged: it holds no JSON object; restore it, or start the run again")
    return value


def load_run(folder) -> "TrainedModel":
    """The trained model of a run folder made by ``python -m sda.run``.

    ``model.npz`` is loaded and checked against the folder's ``config.json``
    (layer sizes, corruption levels, decoder, loss); the run's settings and
    ``summary.json`` come along as plain dicts.

    Parameters
    ----------
    folder : str or path-like
        The run folder; a path to a ``model.npz`` itself also works.

    Returns
    -------
    TrainedModel
        ``model`` (the ``SdA``), ``classes``, ``settings`` (config.json),
        ``summary`` (summary.json, or None) and the input format, with
        ``predict``, ``predict_proba`` and ``encode``.

    Raises
    ------
    SdAError
        The folder is missing or holds no finished run, or a file in it is
        damaged or disagrees with another; the message names the file and the fix.

    Examples
    --------
    >>> import tempfile
    >>> load_run(tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sda.errors.SdAError: ... holds no model.npz and no config.json: it is not a run folder; give \
the folder of a run made by python -m sda.run
    """
    folder = Path(folder)
    if folder.is_file():
        return load_model(folder)
    if not folder.is_dir():
        raise SdAError(
            f"{folder} does not exist: give the folder of a run made by python -m sda.run, or its model.npz"
        )
    path, config_path, summary_path = (folder / name for name in ("model.npz", "config.json", "summary.json"))
    settings = _read_json(config_path) if config_path.exists() else None
    summary = _read_json(summary_path) if summary_path.exists() else None
    if not path.exists():
        if settings is None:
            raise SdAError(
                f"{folder} holds no model.npz and no config.json: it is not a run folder; "
                "give the folder of a run made by python -m sda.run"
            )
        status = (summary or {}).get("status", "not finished")
        raise SdAError(
            f"{folder} holds no model.npz: the run is {status} (a run writes its model "
            f"when it ends); finish it with python -m sda.run --resume {folder}"
        )
    trained = load_model(path, settings)
    checked = {} if settings is None else settings
    for name, key in CONFIG_ARCHITECTURE.items() if settings is not None else ():
        given = checked.get(name)
        given = tuple(given) if isinstance(given, list) else given
        if given != trained.architecture[key]:
            raise SdAError(
                f"{path} does not match {config_path}: {name} is "
                f"{trained.architecture[key]!r} in the model and {given!r} in the "
                "settings; the files come from different runs: restore the run's own"
            )
    trained.settings, trained.summary = settings, summary
    return trained


# ------------------------------------------------------------------ using it
def run_in_chunks(
    compiled: dict, model: SdA, name: str, output, x: np.ndarray, chunk_rows: int = CHUNK_ROWS
) -> np.ndarray:
    """``output``, a function of ``model.x``, evaluated on the rows ``x`` in chunks of ``chunk_rows``.

    The function is compiled on first use and kept in ``compiled`` under
    ``name``, so a model's users compile each output once.

    Parameters
    ----------
    compiled : dict
        Compiled functions by name, filled on first use.
    model : SdA
        The model whose input ``model.x`` the output depends on.
    name : str
        The compiled function's name and key in ``compiled``.
    output : TensorVariable
        What to evaluate.
    x : numpy.ndarray
        The rows, float32.
    chunk_rows : int
        Rows per call, which bounds the memory a call takes.

    Returns
    -------
    numpy.ndarray
        The chunks' outputs, concatenated along the rows.
    """
    if name not in compiled:
        compiled[name] = pytensor.function([model.x], output, name=name)
    fn = compiled[name]
    if not len(x):
        return fn(x)
    return np.concatenate([fn(x[start : start + chunk_rows]) for start in range(0, len(x), chunk_rows)])


@dataclass
class TrainedModel:
    """A trained ``SdA`` with what it needs to be used: its class labels and input format.

    Made by :func:`load_run` or :func:`load_model`. Rows given to
    ``predict``, ``predict_proba`` and ``encode`` are checked: shape
    ``(n, n_ins)`` (or ``(n_ins,)`` for one row), finite, within [0, 1].

    Attributes
    ----------
    model : SdA
        The network, its parameters set from the file.
    architecture : dict
        ``SdA``'s keyword arguments that rebuild it.
    classes : ndarray
        The label of each output, in order.
    path : Path
        The ``model.npz`` it came from.
    sda_version : str
        The sda version that wrote the file.
    dataset : str or None
        The data set it was trained on.
    image_shape : (int, int) or None
        (height, width) of an input image; None if the rows are not square images.
    pixel_scale : (int, int)
        (brightest grey level, divisor) of the training data: an 8-bit grey
        value ``g`` becomes ``round(g * level / 255) / divisor``.
    settings : dict or None
        The run's ``config.json`` (:func:`load_run` only).
    summary : dict or None
        The run's ``summary.json`` (:func:`load_run` only).
    """

    model: SdA
    architecture: dict
    classes: np.ndarray
    path: Path
    sda_version: str
    dataset: str | None
    image_shape: tuple[int, int] | None
    pixel_scale: tuple[int, int]
    settings: dict | None = None
    summary: dict | None = None
    _compiled: dict = field(default_factory=dict, repr=False)

    @property
    def n_layers(self) -> int:
        """The number of hidden layers."""
        return self.model.n_layers

    def check_rows(self, x, source: str = "x") -> np.ndarray:
        """``x`` as float32 rows of ``n_ins`` values in [0, 1]; ``SettingError`` naming ``source`` if not.

        Parameters
        ----------
        x : array_like
            ``(n, n_ins)`` rows, or one ``(n_ins,)`` row.
        source : str
            What ``x`` is, for the message.

        Returns
        -------
        numpy.ndarray
            ``(n, n_ins)`` float32.

        Raises
        ------
        SettingError
            If the shape is wrong, or a value is not a finite number in [0, 1].
        """
        x = np.asarray(x)
        n_ins = self.architecture["n_ins"]
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != n_ins:
            raise SettingError(
                f"{source} has shape {x.shape}; this model takes rows of {n_ins} values, shape (n, {n_ins})"
            )
        if x.dtype.kind not in "fiu":
            raise SettingError(f"{source} holds {x.dtype} values; give numbers in [0, 1]")
        x = x.astype(np.float32)
        if not np.all(np.isfinite(x)):
            raise SettingError(f"{source} holds NaN or infinite values; give numbers in [0, 1]")
        if len(x) and (x.min() < 0 or x.max() > 1):
            raise SettingError(
                f"{source} holds values from {x.min():.4g} to {x.max():.4g}; this model "
                "takes values in [0, 1], scaled as its training data was"
            )
        return x

    def from_grey(self, grey: np.ndarray) -> np.ndarray:
        """8-bit grey levels (0 to 255) scaled as the training data was (see ``pixel_scale``).

        Parameters
        ----------
        grey : numpy.ndarray
            Grey levels from 0 to 255, of any shape.

        Returns
        -------
        numpy.ndarray
            float32 values in [0, 1], of ``grey``'s shape.

        Examples
        --------
        >>> import numpy as np
        >>> trained = TrainedModel(None, {}, np.arange(10), Path("m.npz"), "0.1.0", "digits",
        ...                        (8, 8), (16, 16))
        >>> trained.from_grey(np.array([0, 128, 255], np.uint8))  # the digits' levels 0, 8, 16
        array([0. , 0.5, 1. ], dtype=float32)
        """
        levels, divisor = self.pixel_scale
        return (np.round(grey.astype(np.float64) * levels / 255) / divisor).astype(np.float32)

    def _run(self, name, output, x):
        return run_in_chunks(self._compiled, self.model, name, output, x)

    def predict_proba(self, x) -> np.ndarray:
        """The softmax output for each row of ``x``: one probability per class, in ``classes`` order.

        Parameters
        ----------
        x : array_like
            Rows of ``n_ins`` values in [0, 1] (see ``check_rows``).

        Returns
        -------
        numpy.ndarray
            ``(n, n_classes)`` float32; each row sums to 1.
        """
        return self._run("proba", self.model.logLayer.p_y_given_x, self.check_rows(x))

    def predict(self, x) -> np.ndarray:
        """The most probable class label of each row of ``x``.

        Parameters
        ----------
        x : array_like
            Rows of ``n_ins`` values in [0, 1] (see ``check_rows``).

        Returns
        -------
        numpy.ndarray
            One label of ``classes`` per row.
        """
        return self.classes[np.argmax(self.predict_proba(x), axis=1)]

    def layer_index(self, layer: int, what: str = "layer") -> int:
        """``layer`` as an index from 0 (the bottom; negative counts from the top), else ``SettingError``
        naming it ``what``.

        Parameters
        ----------
        layer : int
            A hidden layer, from 0 at the bottom, or from -1 at the top.
        what : str
            What ``layer`` is called, for the message (e.g. ``--layer``).

        Returns
        -------
        int
            The layer's index from the bottom.

        Raises
        ------
        SettingError
            If ``layer`` is not an integer naming one of the model's layers.
        """
        n = self.n_layers
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not -n <= layer < n:
            raise SettingError(
                f"{what} {layer!r} does not exist: this model has {n} hidden layers, "
                f"numbered 0 to {n - 1} from the bottom (or -{n} to -1 from the top)"
            )
        return int(layer) % n

    def encode(self, x, layer: int = -1) -> np.ndarray:
        """The code of hidden layer ``layer`` (0 is the bottom; negative counts from the top) of each row.

        Parameters
        ----------
        x : array_like
            Rows of ``n_ins`` values in [0, 1] (see ``check_rows``).
        layer : int
            The hidden layer, from 0 at the bottom, or from -1 at the top.

        Returns
        -------
        numpy.ndarray
            ``(n, units of the layer)`` float32 codes in (0, 1).

        Raises
        ------
        SettingError
            If ``layer`` does not exist or the rows are not valid inputs.
        """
        index = self.layer_index(layer)
        return self._run(f"code{index}", self.model.sigmoid_layers[index].output, self.check_rows(x))


# ------------------------------------------------------------------ input files
INPUTS_HELP = (
    "An INPUT is an image file or an array file. Images (PNG, or anything Pillow reads) "
    "must be grey-scale (colour is turned to grey) and exactly the model's image size, "
    "the square root of its inputs: 28x28 for MNIST, 8x8 for the demo preset's digits. "
    "As in the training data, a digit is light on a dark background; a dark digit on a "
    "light background (mean border pixel above 0.5) is inverted, with a note. Grey levels "
    "g of 0 to 255 are scaled as the training data was: g/256 for MNIST and Fashion-MNIST, "
    "round(16 g/255)/16 for the digits, g/255 otherwise. Arrays (.npy, or .npz holding "
    "one array) hold rows of the model's n_ins inputs, or images of its size, as float "
    "values in [0, 1] scaled the same way, or as uint8 grey levels."
)


@dataclass
class Input:
    """The rows read from one input file, and whether its image was inverted."""

    path: Path
    rows: np.ndarray
    image: bool = False  # an image file (one row), not an array file
    inverted: bool = False


def _image_grey(path) -> np.ndarray:
    """The 8-bit grey pixels of the image file ``path`` (Pillow turns colour to grey)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                raise SettingError(
                    f"{path} has {image.mode} pixels (16-bit or float); save it as an 8-bit grey-scale PNG"
                )
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                if np.asarray(image.convert("RGBA"))[..., 3].min() < 255:
                    raise SettingError(f"{path} has transparent pixels; flatten it onto a background first")
            return np.asarray(image.convert("L"))
    except UnidentifiedImageError:
        raise SettingError(
            f"{path} is neither an image Pillow can read nor a .npy/.npz array; give a PNG or an array file"
        ) from None
    except OSError as error:  # a truncated or damaged image
        raise SettingError(f"{path} is a damaged image ({error}); give a readable PNG") from None


def _border_mean(image) -> float:
    """The mean of the outermost pixels: the background of a centred digit."""
    return float(np.mean(np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])))


def read_input(path, trained: TrainedModel) -> Input:
    """The rows of one input file for ``trained``, checked.

    A ``.npy``, or a ``.npz`` holding one array, gives rows ``(n, n_ins)``,
    one row ``(n_ins,)``, or images ``(n, h, w)`` / ``(h, w)`` of the model's
    image shape; float values must lie in [0, 1], scaled as the training data
    was, and uint8 values are grey levels, scaled as an image's. Any other
    file is read as an image by Pillow: grey-scale (colour is turned to
    grey), exactly the model's image shape, a light digit on a dark
    background as in the training data. A dark digit on a light background
    (mean border pixel above ``BRIGHT_BACKGROUND``) is inverted, and the
    returned ``inverted`` says so.

    Parameters
    ----------
    path : str or pathlib.Path
        The input file.
    trained : TrainedModel
        The model the rows are for: its input size, image shape and pixel scale.

    Returns
    -------
    Input
        The checked float32 rows, and whether the image was inverted.

    Raises
    ------
    SettingError
        The file is missing, neither an image nor an array, or holds the
        wrong shape, NaN, or values outside [0, 1]; the message names it and the fix.
    """
    path = Path(path)
    if not path.exists():
        raise SettingError(f"{path} does not exist; check the path")
    if path.is_dir():
        raise SettingError(f"{path} is a folder; give an image or a .npy/.npz file")
    shape = trained.image_shape
    if path.suffix in (".npy", ".npz"):
        if path.suffix == ".npz":
            arrays = open_npz(path, "array")
            if len(arrays) != 1:
                raise SettingError(
                    f"{path} holds {len(arrays)} arrays {sorted(arrays)}; save the "
                    "rows to use as its only array (or as a .npy)"
                )
            (x,) = arrays.values()
        else:
            try:
                x = np.load(path, allow_pickle=False)
            except (OSError, ValueError, EOFError) as error:
                raise SettingError(
                    f"{path} is not a valid .npy array ({error}); save it with numpy.save"
                ) from None
        if shape is not None and x.ndim in (2, 3) and tuple(x.shape[-2:]) == tuple(shape):
            x = x.reshape(-1, math.prod(shape))
        if x.dtype == np.uint8:
            x = trained.from_grey(x)
        if x.size == 0:
            raise SettingError(f"{path} holds no values (its shape is {x.shape}); give at least one row")
        return Input(path, trained.check_rows(x, str(path)))
    grey = _image_grey(path)
    if shape is None:
        raise SettingError(
            f"{path} is an image, but this model's {trained.architecture['n_ins']} "
            "inputs are not a square image; give its rows as a .npy array"
        )
    if grey.shape != tuple(shape):
        height, width = shape
        raise SettingError(
            f"{path} is {grey.shape[1]}x{grey.shape[0]} pixels; this model takes "
            f"{width}x{height} grey-scale images, like its {trained.dataset or 'training'} "
            "data: resize it first"
        )
    inverted = _border_mean(grey) / 255 > BRIGHT_BACKGROUND
    if inverted:
        grey = 255 - grey
    return Input(
        path,
        trained.check_rows(trained.from_grey(grey).reshape(1, -1), str(path)),
        image=True,
        inverted=inverted,
    )
