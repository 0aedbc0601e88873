"""Datasets: find, download, parse and validate them.

Every loader returns a :class:`Dataset` of three :class:`Split` s whose ``x``
is C-contiguous float32 in [0, 1] and whose ``y`` is int32 class labels, all
checked by :func:`validate_split`. Every bad input raises :class:`DataError`,
whose message says what is wrong and how to fix it.

Files are looked for in an explicit ``path``, then in the folder named by
``$SDA_DATA``, then in :func:`cache_dir`; missing ones are downloaded into the
cache. Fashion-MNIST uses the same file names as MNIST, so it lives in a
``fashion-mnist/`` subfolder there (and Debian's ``dataset-fashion-mnist``
package is found too).
"""

import dataclasses
import gzip
import hashlib
import http.client
import logging
import os
import pathlib
import pickle
import tempfile
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

log = logging.getLogger(__name__)

DATA_ENV = "SDA_DATA"
DATASETS = ("mnist", "mnist-idx", "fashion-mnist", "digits", "npz")
DOWNLOAD_TIMEOUT = 60  # seconds without data before a download attempt fails
IDX_VALID_SIZE = 10_000  # the last rows of an IDX training file form the validation split
DIGITS_SIZES = (1197, 300, 300)  # train / valid / test rows of the 1797 digits
DIGITS_SEED = 0
NPZ_KEYS = ("x_train", "y_train", "x_valid", "y_valid", "x_test", "y_test")


class DataError(ValueError):
    """A dataset is missing, corrupt or malformed; the message says how to fix it."""


@dataclass(frozen=True, eq=False)
class Split:
    """One split: ``x`` float32 (n, n_features) in [0, 1], ``y`` int32 (n,) labels."""

    x: np.ndarray
    y: np.ndarray


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train, validation and test splits of one classification dataset.

    ``image_shape`` is the (height, width) of one example, None if unknown.
    """

    name: str
    train: Split
    valid: Split
    test: Split
    n_classes: int
    image_shape: tuple[int, int] | None = None

    def __post_init__(self):
        widths = {what: split.x.shape[1] for what, split in self._splits()}
        if len(set(widths.values())) > 1:
            raise DataError(
                f"{self.name}: the splits have different numbers of features {widths}; "
                "every split must hold images of the same size"
            )
        if self.image_shape is not None and int(np.prod(self.image_shape)) != self.n_features:
            raise DataError(
                f"{self.name}: image shape {self.image_shape} does not match "
                f"{self.n_features} features; pass the (height, width) of the images"
            )

    def _splits(self):
        return (("train", self.train), ("valid", self.valid), ("test", self.test))

    @property
    def n_features(self) -> int:
        """Number of inputs per example (pixels per image)."""
        return self.train.x.shape[1]

    def subset(self, n_train=None, n_valid=None, n_test=None) -> "Dataset":
        """The first rows of each split (None keeps a split whole)."""
        wanted = {"train": n_train, "valid": n_valid, "test": n_test}
        heads = {what: _head(split, wanted[what], what) for what, split in self._splits()}
        return dataclasses.replace(self, **heads)


def _head(split, n, what):
    """The first ``n`` rows of ``split``."""
    if n is None:
        return split
    available = len(split.y)
    if not 0 < n <= available:
        raise DataError(f"cannot take {n} {what} examples: choose 1 to {available}")
    return Split(split.x[:n], split.y[:n])


def validate_split(x, y, n_classes, what) -> Split:
    """Check one split and return it as C-contiguous float32 ``x`` and int32 ``y``.

    ``x`` may be (n, n_features) or (n, height, width) images, float in [0, 1]
    or uint8 (divided by 255). ``what`` names the split in error messages.
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 3:
        x = x.reshape(x.shape[0], x.shape[1] * x.shape[2])
    if x.ndim != 2 or 0 in x.shape:
        raise DataError(
            f"{what}: x has shape {x.shape}; it must be a non-empty "
            "(examples, features) or (examples, height, width) array"
        )
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / np.float32(255)
    elif x.dtype.kind == "f":
        lo, hi = x.min(), x.max()  # NaN propagates, so one pass finds every problem
        if not 0 <= lo <= hi <= 1:
            bad = x.size - np.count_nonzero(np.isfinite(x))
            if bad:
                raise DataError(f"{what}: x holds {bad} NaN or infinite values; fix or drop them")
            outside = np.count_nonzero((x < 0) | (x > 1))
            raise DataError(
                f"{what}: {outside} pixel values lie outside [0, 1] "
                f"(min {lo}, max {hi}); rescale x into [0, 1]"
            )
    else:
        raise DataError(f"{what}: x has dtype {x.dtype}; use float values in [0, 1] or uint8")
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(
            f"{what}: y has shape {y.shape} and dtype {y.dtype}; it must be a 1-D integer array"
        )
    if len(y) != len(x):
        raise DataError(f"{what}: x has {len(x)} rows but y has {len(y)} labels; they must match")
    bad = np.count_nonzero((y < 0) | (y >= n_classes))
    if bad:
        raise DataError(
            f"{what}: {bad} labels lie outside [0, {n_classes}) (min {y.min()}, max {y.max()}); "
            f"labels must be class numbers 0 to {n_classes - 1}"
        )
    return Split(np.ascontiguousarray(x, dtype=np.float32), y.astype(np.int32))


# --- where files are and where they come from ---------------------------------


@dataclass(frozen=True)
class Source:
    """Where a known file comes from: its sha256 (None if unpublished) and mirrors."""

    sha256: str | None
    urls: tuple[str, ...]
    system_dir: pathlib.Path | None = None  # where a distribution package installs it


_IDX_URLS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
_FASHION_URLS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
_FASHION_DEBIAN = pathlib.Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = (  # training images and labels, then test images and labels
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
_MNIST_IDX_SHA256 = (
    "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
)
_FASHION_SHA256 = (  # Zalando's originals; Debian's recompressed copies differ
    "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
)

# Keys are paths relative to a data folder or the cache.
SOURCES = {
    "mnist.pkl.gz": Source(
        "0c66b22fbfd977a01005ad5c02363406bc02a29cc2bc8e3c99e0f2aa2550a9ed",
        ("http://www.iro.umontreal.ca/~lisa/deep/data/mnist/mnist.pkl.gz",),
    ),
    **{
        name: Source(sha256, tuple(url + name for url in _IDX_URLS))
        for name, sha256 in zip(IDX_FILES, _MNIST_IDX_SHA256)
    },
    **{
        f"fashion-mnist/{name}": Source(
            sha256, tuple(url + name for url in _FASHION_URLS), _FASHION_DEBIAN
        )
        for name, sha256 in zip(IDX_FILES, _FASHION_SHA256)
    },
}


def cache_dir() -> pathlib.Path:
    """The download cache: ``$XDG_CACHE_HOME/sda``, else ``~/.cache/sda``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    root = pathlib.Path(xdg) if os.path.isabs(xdg) else pathlib.Path.home() / ".cache"
    return root / "sda"


def _existing(path):
    """``path`` as a Path; DataError if it does not exist."""
    path = pathlib.Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path} does not exist; pass an existing data file or its folder")
    return path


def locate(filename, path=None, *, download=True) -> pathlib.Path:
    """Find the known file ``filename`` (a key of SOURCES), downloading it if allowed.

    Looks in ``path`` (the file itself, or a folder holding it), then in
    ``$SDA_DATA``, the cache and a distribution package's folder.
    """
    if filename not in SOURCES:
        raise DataError(f"unknown data file {filename!r}; known files: {', '.join(SOURCES)}")
    source = SOURCES[filename]
    basename = pathlib.PurePosixPath(filename).name
    places = []
    if path is not None:
        path = _existing(path)
        if path.is_file():
            return path
        places += [path / filename, path / basename]
    if os.environ.get(DATA_ENV):
        places.append(pathlib.Path(os.environ[DATA_ENV]).expanduser() / filename)
    target = cache_dir() / filename
    places.append(target)
    if source.system_dir is not None:
        places.append(source.system_dir / basename)
    places = list(dict.fromkeys(places))
    # Found files are not hashed, only downloads: parsing and validation catch
    # damage, and a recompressed copy holds the same data under another hash
    # (Debian's Fashion-MNIST files are such copies).
    for place in places:
        if place.is_file():
            return place

    failures = []
    if download:
        for url in source.urls:
            try:
                _download(url, target, source.sha256)
                return target
            except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
                failures.append(f"  {url}: {exc}")
    lines = [f"{basename} not found. Looked in:", *(f"  {place}" for place in places)]
    lines += ["Downloading failed:", *failures] if download else ["Downloading is off."]
    lines.append(
        f"Fix: put {basename} in {target.parent}, or set {DATA_ENV} to a folder "
        f"holding {filename}, or pass --data PATH (the file or its folder)."
    )
    raise DataError("\n".join(lines))


def _download(url, target, sha256):
    """Fetch ``url`` into ``target`` atomically, checking ``sha256`` if given."""
    log.info("downloading %s to %s", url, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, part = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        digest = hashlib.sha256()
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response,
        ):
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise DataError(
                f"{url} gave a file with sha256 {digest.hexdigest()}, expected {sha256}; "
                f"the download is corrupt or the mirror changed: retry, or put a good copy "
                f"of {target.name} in {target.parent}"
            )
        os.replace(part, target)
    finally:
        if os.path.exists(part):
            os.remove(part)


def sha256_of(path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path, expected) -> None:
    """DataError unless the file at ``path`` has sha256 ``expected``."""
    actual = sha256_of(path)
    if actual != expected:
        raise DataError(f"{path} has sha256 {actual}, expected {expected}; replace the file")


def _corrupt(path, exc):
    return DataError(
        f"cannot read {path}: {type(exc).__name__}: {exc}. The file is truncated, corrupt or "
        "not in the expected format: replace it (delete it to download it again)"
    )


# --- loaders -------------------------------------------------------------------


class _NumpyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else, so a pickle cannot run code."""

    _reconstruct = np.zeros(0).__reduce__()[0]  # real object, no numpy.core warning
    _allowed: ClassVar = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module, name):
        try:
            return self._allowed[module, name]
        except KeyError:
            raise DataError(
                f"refusing to unpickle {module}.{name}: this pickle asks for more than "
                "numpy arrays and only numpy arrays are allowed; use a trusted mnist.pkl.gz"
            ) from None


def _load_mnist_pickle(path, download):
    file = locate("mnist.pkl.gz", path, download=download)
    try:
        with gzip.open(file, "rb") as f:
            content = _NumpyUnpickler(f, encoding="latin1").load()
    except DataError:
        raise
    except Exception as exc:  # bad pickle bytes can raise almost any exception type
        raise _corrupt(file, exc) from exc
    try:
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = content
    except (TypeError, ValueError):
        raise DataError(
            f"{file} does not hold ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)); "
            "use the Theano tutorial's mnist.pkl.gz"
        ) from None
    return Dataset(
        "mnist",
        validate_split(train_x, train_y, 10, f"{file} train"),
        validate_split(valid_x, valid_y, 10, f"{file} valid"),
        validate_split(test_x, test_y, 10, f"{file} test"),
        n_classes=10,
        image_shape=(28, 28),
    )


def _read_idx(file, images):
    """The uint8 array of an IDX file: (n, rows, cols) images or (n,) labels."""
    magic, ndim = (2051, 3) if images else (2049, 1)
    try:
        with gzip.open(file, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise _corrupt(file, exc) from exc
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DataError(
            f"{file} has magic number {found}, expected {magic} for IDX "
            f"{'images' if images else 'labels'}; check that the right file has this name"
        )
    header_size = 4 * (1 + ndim)
    if len(data) < header_size:
        raise DataError(f"{file} is truncated: it is shorter than an IDX header; replace it")
    shape = tuple(int(n) for n in np.frombuffer(data, ">u4", count=ndim, offset=4))
    expected = header_size + int(np.prod(shape))
    if len(data) != expected:
        raise DataError(
            f"{file} holds {len(data)} bytes but its header {shape} needs {expected}; "
            "the file is truncated or damaged: replace it"
        )
    return np.frombuffer(data, np.uint8, offset=header_size).reshape(shape)


def _load_idx(name, path, download):
    prefix = "fashion-mnist/" if name == "fashion-mnist" else ""
    folder = path.parent if path is not None and path.is_file() else path
    files = [locate(prefix + file, folder, download=download) for file in IDX_FILES]
    images_file, labels_file = files[:2]
    if prefix and sha256_of(labels_file) == _MNIST_IDX_SHA256[1]:
        raise DataError(f"{labels_file} is MNIST, not Fashion-MNIST; point --data elsewhere")
    train_x, train_y, test_x, test_y = (
        _read_idx(file, images) for file, images in zip(files, (True, False, True, False))
    )
    if len(train_x) != len(train_y) or len(train_x) <= IDX_VALID_SIZE:
        raise DataError(
            f"{images_file} holds {len(train_x)} images and {labels_file} {len(train_y)} labels; "
            f"they must be equal and above {IDX_VALID_SIZE}: use matching files"
        )
    n_train = len(train_x) - IDX_VALID_SIZE

    def scaled(images):  # k/256, as in mnist.pkl.gz
        return images.reshape(len(images), -1).astype(np.float32) / np.float32(256)

    return Dataset(
        name,
        validate_split(scaled(train_x[:n_train]), train_y[:n_train], 10, f"{name} train"),
        validate_split(scaled(train_x[n_train:]), train_y[n_train:], 10, f"{name} valid"),
        validate_split(scaled(test_x), test_y, 10, f"{name} test"),
        n_classes=10,
        image_shape=train_x.shape[1:],
    )


def _load_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(DIGITS_SEED).permutation(len(digits.target))
    x, y = digits.data[order] / 16.0, digits.target[order]
    n_train, n_valid, _ = DIGITS_SIZES
    bounds = (0, n_train, n_train + n_valid, len(y))
    splits = [
        validate_split(x[start:stop], y[start:stop], 10, f"digits {what}")
        for what, start, stop in zip(("train", "valid", "test"), bounds, bounds[1:])
    ]
    return Dataset("digits", *splits, n_classes=10, image_shape=(8, 8))


def _load_npz(path):
    if path is None or not path.is_file():
        raise DataError("the npz dataset needs the path of a .npz file: pass --data FILE.npz")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(f"{path} is not an .npz archive; save the arrays with numpy.savez")
        with archive:
            missing = [key for key in NPZ_KEYS if key not in archive.files]
            if missing:
                raise DataError(
                    f"{path} lacks {', '.join(missing)}; an npz dataset needs the arrays "
                    f"{', '.join(NPZ_KEYS)} (it has {', '.join(archive.files) or 'none'})"
                )
            arrays = {key: archive[key] for key in NPZ_KEYS}
    except DataError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        raise _corrupt(path, exc) from exc
    labels = [arrays[f"y_{what}"] for what in ("train", "valid", "test")]
    top = max((int(y.max()) for y in labels if y.size and y.dtype.kind in "iu"), default=0)
    n_classes = max(2, top + 1)
    splits = [
        validate_split(arrays[f"x_{what}"], arrays[f"y_{what}"], n_classes, f"{path} {what}")
        for what in ("train", "valid", "test")
    ]
    x_train = arrays["x_train"]
    image_shape = tuple(x_train.shape[1:]) if x_train.ndim == 3 else None
    return Dataset("npz", *splits, n_classes=n_classes, image_shape=image_shape)


def load_dataset(name="mnist", path=None, *, download=True) -> Dataset:
    """Load dataset ``name`` (one of DATASETS); a ``path`` ending in .npz means "npz".

    ``path`` is a data file or the folder holding the files; "digits" ships
    with scikit-learn and ignores it.
    """
    if path is not None:
        path = _existing(path)
        if path.suffix == ".npz":
            name = "npz"
    if name == "mnist":
        return _load_mnist_pickle(path, download)
    if name in ("mnist-idx", "fashion-mnist"):
        return _load_idx(name, path, download)
    if name == "digits":
        return _load_digits()
    if name == "npz":
        return _load_npz(path)
    raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def shared_dataset(split: Split) -> tuple:
    """``(x, y)`` as PyTensor shared variables (float32 and int32), sharing memory."""
    import pytensor

    x = pytensor.shared(np.asarray(split.x, dtype=np.float32), name="x", borrow=True)
    y = pytensor.shared(np.asarray(split.y, dtype=np.int32), name="y", borrow=True)
    return x, y
