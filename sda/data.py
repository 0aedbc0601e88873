"""Datasets: find, download, parse and validate them.

Every loader returns a :class:`Dataset` of three :class:`Split` s whose ``x``
is C-contiguous float32 in [0, 1] and whose ``y`` is int32 class labels, all
checked by :func:`validate_split`; :func:`load_dataset` then checks with
:func:`check_classes` that every split holds the same classes. Every bad input
raises :class:`DataError`, whose message says what is wrong and how to fix it.

Files are looked for in an explicit ``path``, then in the folder named by
``$SDA_DATA``, then in :func:`cache_dir`; missing ones are downloaded into the
cache, each mirror in turn, every download checked against its sha256. MNIST
has two formats: the tutorial's ``mnist.pkl.gz`` and the four IDX files. A
local copy of either is used first; then each is downloaded in that order.
Fashion-MNIST uses the same file names as MNIST, so it lives in a
``fashion-mnist/`` subfolder there (and Debian's ``dataset-fashion-mnist``
package is found too).

Nothing read here can run code or inflate a decompression bomb: pickles
may hold numpy arrays only, a gzip file may not inflate to more than
``GZIP_MAX_RATIO`` times its size (nor beyond ``GZIP_MAX_BYTES``), and an IDX
file's header is checked before its body is inflated. :func:`open_npz`
reads any ``.npz`` (a checkpoint, a pretrained model) with the same care
and clear messages.
"""

import dataclasses
import functools
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

from sda.checks import check_count
from sda.constraints import DATASETS, check_setting
from sda.errors import SdAError, SettingTypeError

log = logging.getLogger(__name__)

DATA_ENV = "SDA_DATA"
DOWNLOAD_TIMEOUT = 60  # seconds without data before a download attempt fails
IDX_VALID_SIZE = 10_000  # the last rows of an IDX training file form the validation split
# A gzip file may inflate to at most GZIP_MAX_RATIO times its size, or to
# GZIP_ANY_RATIO_BELOW whatever its size, and never beyond GZIP_MAX_BYTES; more
# is a decompression bomb. Real images gzip 2- to 14-fold (mnist.pkl.gz: 16 MB
# to 220 MB), while tiny or blank test files compress far better.
GZIP_MAX_BYTES = 1 << 30
GZIP_MAX_RATIO = 100
GZIP_ANY_RATIO_BELOW = 64 << 20
IDX_CHUNK = 1 << 20  # bytes inflated per read
DIGITS_SIZES = (1197, 300, 300)  # train / valid / test rows of the 1797 digits
DIGITS_SEED = 0
NPZ_KEYS = ("x_train", "y_train", "x_valid", "y_valid", "x_test", "y_test")
SPLITS = ("train", "valid", "test")


class DataError(SdAError, ValueError):
    """A dataset is missing, corrupt or malformed; the message says how to fix it."""


class DataNotFound(DataError):
    """A data file is in none of the places looked at and could not be downloaded."""


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

    def subset(
        self, n_train: int | None = None, n_valid: int | None = None, n_test: int | None = None
    ) -> "Dataset":
        """The first rows of each split (None keeps a split whole).

        The classes are not checked again: a few rows may miss some classes
        by chance, and ``n_classes`` stays that of the whole data set, which
        :func:`load_dataset` checked.

        Parameters
        ----------
        n_train, n_valid, n_test : int, optional
            Rows to keep from the start of each split; None keeps them all.

        Returns
        -------
        Dataset
            A new data set; this one is unchanged.

        Raises
        ------
        SdAError
            If a count is not a positive integer, or exceeds its split's rows.

        Examples
        --------
        >>> digits = load_dataset("digits")
        >>> len(digits.subset(n_train=100).train.y)
        100
        """
        wanted = {"train": n_train, "valid": n_valid, "test": n_test}
        heads = {what: _head(split, wanted[what], what) for what, split in self._splits()}
        return dataclasses.replace(self, **heads)


def _head(split, n, what):
    """The first ``n`` rows of ``split``."""
    if n is None:
        return split
    n = check_count(f"n_{what}", n)
    available = len(split.y)
    if n > available:
        raise DataError(f"cannot take {n} {what} examples: choose 1 to {available}")
    return Split(split.x[:n], split.y[:n])


def _as_array(values, name, what):
    """``values`` as an array; a ragged list gets a DataError instead of numpy's message."""
    try:
        return np.asarray(values)
    except ValueError:
        raise DataError(
            f"{what}: {name} is ragged (its rows have different lengths); give every "
            f"example the same number of {'features' if name == 'x' else 'labels'}"
        ) from None


def validate_split(x, y, n_classes: int, what: str) -> Split:
    """Check one split and return it as C-contiguous float32 ``x`` and int32 ``y``.

    ``x`` may be (n, n_features) or (n, height, width) images, float in [0, 1]
    or uint8 (divided by 255). ``y`` holds class numbers 0 to ``n_classes - 1``.
    ``what`` names the split in error messages.

    Parameters
    ----------
    x : array_like
        The inputs.
    y : array_like
        Their integer labels.
    n_classes : int
        The number of classes.
    what : str
        The split's name, for messages.

    Returns
    -------
    Split
        ``x`` float32 ``(n, n_features)``, ``y`` int32 ``(n,)``.

    Raises
    ------
    DataError
        If a shape, dtype or value is wrong; the message says which and how to fix it.

    Examples
    --------
    >>> validate_split([[0.0, 1.0]], [7], 10, "train").y
    array([7], dtype=int32)
    """
    x, y = _as_array(x, "x", what), _as_array(y, "y", what)
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
        raise DataError(f"{what}: y has shape {y.shape} and dtype {y.dtype}; it must be a 1-D integer array")
    if len(y) != len(x):
        raise DataError(f"{what}: x has {len(x)} rows but y has {len(y)} labels; they must match")
    bad_rows = np.flatnonzero((y < 0) | (y >= n_classes))
    if bad_rows.size:
        row = bad_rows[0]
        raise DataError(
            f"{what}: label {y[row]} in row {row} is not a class number 0 to {n_classes - 1} "
            f"({bad_rows.size} such labels); fix or drop those rows"
        )
    return Split(np.ascontiguousarray(x, dtype=np.float32), y.astype(np.int32))


def _classes(numbers) -> str:
    """Sorted class numbers as short text: "class 7", "classes 3, 5", "classes 10 to 999"."""
    numbers = [int(n) for n in numbers]
    if len(numbers) == 1:
        return f"class {numbers[0]}"
    if len(numbers) > 2 and numbers[-1] - numbers[0] == len(numbers) - 1:
        return f"classes {numbers[0]} to {numbers[-1]}"
    return "classes " + ", ".join(map(str, numbers[:5])) + (", ..." if len(numbers) > 5 else "")


def check_classes(dataset: Dataset, where: str) -> None:
    """Refuse a class found only in training, or in validation or test but not in training.

    A class seen only in training can never be scored; one missing from
    training can never be learned. Loading a data set checks this; subsets do
    not (see :meth:`Dataset.subset`). ``where`` names the data in messages.

    Parameters
    ----------
    dataset : Dataset
        The data set to check.
    where : str
        Names it in messages.

    Raises
    ------
    DataError
        If a class is only in training, or in validation or test but not in training.
    """
    # the classes present, not a count per class: n_classes may be far larger than the rows
    present = {what: np.unique(split.y) for what, split in dataset._splits()}
    only_train = np.setdiff1d(present["train"], np.union1d(present["valid"], present["test"]))
    if only_train.size:
        raise DataError(
            f"{where}: train holds {_classes(only_train)} but neither valid nor test does, so the error "
            "on it is never measured; add such examples to valid or test, or drop them from train"
        )
    for what in ("valid", "test"):
        untrained = np.setdiff1d(present[what], present["train"])
        if untrained.size:
            raise DataError(
                f"{where}: {what} holds {_classes(untrained)} but train does not, so the model cannot "
                f"learn it; add such training examples, or drop those rows from {what}"
            )


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
MNIST_PICKLE = "mnist.pkl.gz"
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

# Keys are paths relative to a data folder or the cache. Tests replace entries
# to point the mirrors and checksums at a local server.
SOURCES = {
    MNIST_PICKLE: Source(
        "0c66b22fbfd977a01005ad5c02363406bc02a29cc2bc8e3c99e0f2aa2550a9ed",
        ("http://www.iro.umontreal.ca/~lisa/deep/data/mnist/mnist.pkl.gz",),
    ),
    **{
        name: Source(sha256, tuple(url + name for url in _IDX_URLS))
        for name, sha256 in zip(IDX_FILES, _MNIST_IDX_SHA256)
    },
    **{
        f"fashion-mnist/{name}": Source(sha256, tuple(url + name for url in _FASHION_URLS), _FASHION_DEBIAN)
        for name, sha256 in zip(IDX_FILES, _FASHION_SHA256)
    },
}


def cache_dir() -> pathlib.Path:
    """The download cache: ``$XDG_CACHE_HOME/sda``, else ``~/.cache/sda``.

    Returns
    -------
    pathlib.Path
        The folder; it may not exist yet.
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    root = pathlib.Path(xdg) if os.path.isabs(xdg) else pathlib.Path.home() / ".cache"
    return root / "sda"


def _existing(path):
    """``path`` as a Path; DataError if it does not exist."""
    path = pathlib.Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path} does not exist; pass an existing data file or its folder")
    return path


def locate(filename: str, path=None, *, download: bool = True) -> pathlib.Path:
    """Find the known file ``filename`` (a key of SOURCES), downloading it if allowed.

    Looks in ``path`` (the file itself, or a folder holding it), then in
    ``$SDA_DATA``, the cache and a distribution package's folder; then tries
    each mirror in turn. Raises ``DataNotFound`` listing every place and every
    failed mirror.

    Parameters
    ----------
    filename : str
        A key of ``SOURCES`` (e.g. ``"mnist.pkl.gz"``).
    path : str or pathlib.Path, optional
        The file, or a folder holding it, to look in first.
    download : bool
        Try the mirrors when no local copy is found.

    Returns
    -------
    pathlib.Path
        The file, its sha256 checked.

    Raises
    ------
    DataNotFound
        If no copy is found and no mirror gives one.
    DataError
        If ``filename`` is unknown, or a copy is damaged.
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
            except (OSError, http.client.HTTPException, DataError) as exc:  # URLError is an OSError
                failures.append(f"  {url}: {exc}")
    lines = [f"{basename} not found. Looked in:", *(f"  {place}" for place in places)]
    lines += ["Downloading failed:", *failures] if download else ["Downloading is off."]
    lines.append(
        f"Fix: put {basename} in {target.parent}, or set {DATA_ENV} to a folder "
        f"holding {filename}, or pass --data PATH (the file or its folder)."
    )
    raise DataNotFound("\n".join(lines))


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
    """Hex sha256 of a file.

    Parameters
    ----------
    path : str or pathlib.Path
        The file, read in 1 MiB chunks.

    Returns
    -------
    str
        64 hexadecimal digits.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path, expected) -> None:
    """DataError unless the file at ``path`` has sha256 ``expected``.

    Parameters
    ----------
    path : str or pathlib.Path
        The file.
    expected : str
        The hex sha256 it should have.

    Raises
    ------
    DataError
        If the digests differ.
    """
    actual = sha256_of(path)
    if actual != expected:
        raise DataError(f"{path} has sha256 {actual}, expected {expected}; replace the file")


def _permission_denied(path):
    return DataError(
        f"cannot read {path}: permission denied; make it readable for this user "
        f"(e.g. chmod u+r {path}) or point to a readable copy"
    )


def _corrupt(path, exc):
    if isinstance(exc, PermissionError):
        return _permission_denied(path)
    return DataError(
        f"cannot read {path}: {type(exc).__name__}: {exc}. The file is truncated, corrupt or "
        "not in the expected format: replace it (delete it to download it again)"
    )


_ZIP_STARTS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first entry, or an empty zip


def open_npz(path, what: str, fix: str | None = None) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` file ``path``, read without ever unpickling.

    ``what`` names the kind of file in error messages ("checkpoint",
    "pretrained model", ...). Any problem raises ``DataError``: "file X is not
    a valid <what> file: <reason>", or a permission error named as such.

    Parameters
    ----------
    path : str or pathlib.Path
        The ``.npz`` file.
    what : str
        The kind of file, for messages.
    fix : str, optional
        What the user should do about a damaged file; by default, replace it
        with a file written by sda or point to the right one.

    Returns
    -------
    dict of str to numpy.ndarray
        Every array, by name.

    Raises
    ------
    DataError
        If the file is missing, unreadable, not a zip of ``.npy`` arrays, or holds pickled objects.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "model.npz"
    >>> np.savez(path, W=np.eye(2))
    >>> open_npz(path, "model")["W"].shape
    (2, 2)
    >>> _ = path.write_bytes(b"junk")
    >>> open_npz(path, "model")
    Traceback (most recent call last):
    ...
    sda.data.DataError: file ... is not a valid model file: it is not an .npz (zip) archive; ...
    """
    path = pathlib.Path(path)
    if fix is None:
        fix = f"replace it with a {what} file written by sda, or point to the right file"
    try:
        with open(path, "rb") as f:
            start = f.read(4)
        if start not in _ZIP_STARTS:
            reason = "it is empty" if not start else "it is not an .npz (zip) archive"
            raise DataError(f"file {path} is not a valid {what} file: {reason}; {fix}")
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except DataError:
        raise
    except PermissionError:
        raise _permission_denied(path) from None
    except FileNotFoundError:
        raise DataError(f"{what} file {path} does not exist; check the path") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder, not a {what} file; {fix}") from None
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        # A damaged member, or one holding Python objects (never unpickled).
        raise DataError(
            f"file {path} is not a valid {what} file: it is damaged ({type(exc).__name__}: {exc}); {fix}"
        ) from None


# --- loaders -------------------------------------------------------------------


def _refuse(module, name):
    return DataError(
        f"refusing to unpickle {module}.{name}: this pickle asks for more than "
        "numpy arrays and only numpy arrays are allowed; use a trusted mnist.pkl.gz"
    )


def _latin1_bytes(text, encoding):
    """``_codecs.encode`` as Python 3 uses it at protocol 2 (bytes as latin-1 text), and no more."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _refuse("_codecs", f"encode with {type(text).__name__} and {encoding!r}")
    return text.encode("latin1")


def _empty_bytes(*args):
    """``bytes()`` as Python 3 writes an empty bytes object at protocol 2; nothing else."""
    if args:
        raise _refuse("builtins", f"bytes with arguments {args!r}")
    return b""


class _NumpyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else, so a pickle cannot run code.

    Allowed: numpy's array rebuilders (Python 2 and 3 module names), ``ndarray``
    and ``dtype``, and two guarded stand-ins for what Python 3 writes at
    protocol 2: ``_codecs.encode`` for latin-1 text only and an empty ``bytes()``.
    """

    _reconstruct = np.zeros(0).__reduce__()[0]  # real objects, no numpy.core warning
    _frombuffer = np.zeros(0).__reduce_ex__(5)[0]  # protocol 5's rebuilder
    _allowed: ClassVar = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy.core.numeric", "_frombuffer"): _frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_bytes,
        ("__builtin__", "bytes"): _empty_bytes,
        ("builtins", "bytes"): _empty_bytes,
    }

    def find_class(self, module, name):
        try:
            return self._allowed[module, name]
        except KeyError:
            raise _refuse(module, name) from None


def _inflate_limit(file) -> int:
    """The most bytes the gzip ``file`` may inflate to before it counts as a bomb."""
    return min(GZIP_MAX_BYTES, max(GZIP_ANY_RATIO_BELOW, GZIP_MAX_RATIO * os.path.getsize(file)))


def _bomb(file, claim):
    return DataError(
        f"{file} {claim}, but a gzip file of images of its size holds at most {_inflate_limit(file)} "
        f"bytes ({GZIP_MAX_RATIO}-fold, {GZIP_MAX_BYTES} in all); it is a decompression bomb or "
        "damaged: replace it"
    )


class _LimitedReader:
    """The unpickler's view of a gzip stream: it refuses to inflate a bomb."""

    def __init__(self, stream, file):
        self.stream, self.file, self.left = stream, file, _inflate_limit(file)

    def _count(self, data):
        self.left -= len(data)
        if self.left < 0:
            raise _bomb(self.file, "keeps inflating")
        return data

    def read(self, size=-1):  # never asks gzip for more than one byte past the limit
        return self._count(self.stream.read(self.left + 1 if size < 0 else min(size, self.left + 1)))

    def readline(self):
        return self._count(self.stream.readline(self.left + 1))


def _load_mnist_pickle(path, download):
    file = locate(MNIST_PICKLE, path, download=download)
    try:
        with gzip.open(file, "rb") as f:
            content = _NumpyUnpickler(_LimitedReader(f, file), encoding="latin1").load()
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


def _inflate_exactly(f, file, shape, header_size, size):
    """The next ``size`` bytes of the gzip stream ``f``, refusing one byte more or less."""
    data = np.empty(size, np.uint8)
    view, filled = memoryview(data), 0
    while filled < size and (count := f.readinto(view[filled : filled + IDX_CHUNK])):
        filled += count
    expected = header_size + size
    if filled < size:
        raise DataError(
            f"{file} holds {header_size + filled} bytes but its header {shape} needs {expected}; "
            "the file is truncated or damaged: replace it"
        )
    if f.read(1):  # stop at the first byte too many: a bomb is never inflated
        raise DataError(
            f"{file} holds more than the {expected} bytes its header {shape} needs; "
            "the file is damaged or a decompression bomb: replace it"
        )
    return data.reshape(shape)


def _read_idx(file, images):
    """The uint8 array of an IDX file: (n, rows, cols) images or (n,) labels.

    The header is checked before the body is inflated, and inflating stops as
    soon as the body is longer than the header says.
    """
    magic, ndim = (2051, 3) if images else (2049, 1)
    header_size = 4 * (1 + ndim)
    try:
        with gzip.open(file, "rb") as f:
            header = f.read(header_size)
            found = int.from_bytes(header[:4], "big")
            if found != magic:
                raise DataError(
                    f"{file} has magic number {found}, expected {magic} for IDX "
                    f"{'images' if images else 'labels'}; check that the right file has this name"
                )
            if len(header) < header_size:
                raise DataError(f"{file} is truncated: it is shorter than an IDX header; replace it")
            shape = tuple(int(n) for n in np.frombuffer(header, ">u4", count=ndim, offset=4))
            size = int(np.prod(shape, dtype=object))  # Python ints: no overflow
            if size > _inflate_limit(file):  # refused before inflating anything
                raise _bomb(file, f"has a header promising {shape}, {size} bytes")
            return _inflate_exactly(f, file, shape, header_size, size)
    except (OSError, EOFError, zlib.error) as exc:
        raise _corrupt(file, exc) from exc


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


def _load_mnist(path, download):
    """MNIST from the tutorial's pickle or the IDX files: local copies first, then downloads."""
    if path is not None and path.is_file() and path.name in IDX_FILES:
        return _load_idx("mnist", path, download)
    formats = (_load_mnist_pickle, functools.partial(_load_idx, "mnist"))
    for may_download in (False, True) if download else (False,):
        missing = []
        for load in formats:
            try:
                return load(path, may_download)
            except DataNotFound as exc:
                missing.append(str(exc))
    raise DataNotFound(
        "MNIST is found in neither of its formats, the tutorial's mnist.pkl.gz or the "
        "four IDX files. Either will do:\n" + "\n".join(missing)
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
        for what, start, stop in zip(SPLITS, bounds, bounds[1:])
    ]
    return Dataset("digits", *splits, n_classes=10, image_shape=(8, 8))


def _declared_classes(path, arrays):
    """The npz's ``n_classes`` entry, or None if it has none."""
    if "n_classes" not in arrays:
        return None
    value = arrays["n_classes"]
    if value.ndim != 0 or value.dtype.kind not in "iu" or value < 2:
        raise DataError(
            f"{path}: n_classes is {value!r}; store it as one whole number of at least 2, "
            "e.g. numpy.savez(..., n_classes=10)"
        )
    return int(value)


def _inferred_classes(path, labels):
    """Classes 0 to the largest label, refusing labels that leave classes unused.

    One stray label (1000 among 0 to 9) would otherwise silently make a
    1001-class model.
    """
    valid_labels = [y for y in labels.values() if y.size and y.dtype.kind in "iu"]
    n_classes = max(2, 1 + max((int(y.max()) for y in valid_labels), default=0))
    if len(valid_labels) < len(labels):
        return n_classes  # validate_split names the split whose labels are not integers
    # the classes used, not a flag per class: one huge label must not allocate n_classes of anything
    used = np.unique(np.concatenate([y[y >= 0] for y in valid_labels]).astype(np.int64))
    # every missing class if there are few, else the first ones (the k-th lies below used.size + k)
    unused = np.setdiff1d(np.arange(min(n_classes, used.size + 2**20)), used)
    if unused.size:
        top = n_classes - 1
        split = next((what for what, y in labels.items() if (y == top).any()), None)
        where = f" (in {split}, row {int(np.flatnonzero(labels[split] == top)[0])})" if split else ""
        missing = n_classes - used.size
        some = (
            _classes(unused) if missing == unused.size else f"{missing} classes ({_classes(unused[:5])}, ...)"
        )
        # more classes than labelled rows: labels that are not class numbers, e.g. raw ids
        rows = sum(y.size for y in valid_labels)
        relabel = (
            ", or relabel the classes 0 to K-1 (numpy.unique(y, return_inverse=True) does it)"
            if n_classes > rows
            else ""
        )
        raise DataError(
            f"{path}: the labels run from 0 to {top}{where}, but no label is in {some}, "
            f"so this would be a {n_classes}-class model. Fix the stray label{relabel}, or "
            f"if there really are {n_classes} classes, store that in the file: "
            f"numpy.savez(..., n_classes={n_classes})"
        )
    return n_classes


def _load_npz(path):
    if path is None or not path.is_file():
        raise DataError("the npz dataset needs the path of a .npz file: pass --data FILE.npz")
    arrays = open_npz(path, "npz dataset")
    missing = [key for key in NPZ_KEYS if key not in arrays]
    if missing:
        raise DataError(
            f"{path} lacks {', '.join(missing)}; an npz dataset needs the arrays "
            f"{', '.join(NPZ_KEYS)} (it has {', '.join(arrays) or 'none'})"
        )
    labels = {what: arrays[f"y_{what}"] for what in SPLITS}
    n_classes = _declared_classes(path, arrays) or _inferred_classes(path, labels)
    splits = [
        validate_split(arrays[f"x_{what}"], labels[what], n_classes, f"{path} {what}") for what in SPLITS
    ]
    x_train = arrays["x_train"]
    image_shape = tuple(x_train.shape[1:]) if x_train.ndim == 3 else None
    return Dataset("npz", *splits, n_classes=n_classes, image_shape=image_shape)


def load_dataset(name: str = "mnist", path=None, *, download: bool = True) -> Dataset:
    """Load dataset ``name`` (one of DATASETS); a ``path`` ending in .npz means "npz".

    ``path`` is a data file or the folder holding the files; "digits" ships
    with scikit-learn and ignores it. An npz file holds the arrays NPZ_KEYS
    and optionally ``n_classes``; without it the classes are 0 to the
    largest label, and every one of them must occur.

    Parameters
    ----------
    name : str
        One of ``DATASETS``: "mnist" (the tutorial's ``mnist.pkl.gz``),
        "mnist-idx", "fashion-mnist", "digits" or "npz".
    path : str or path-like, optional
        A data file or its folder. Without it the files are looked for in
        ``$SDA_DATA``, then in the cache folder (``~/.cache/sda``).
    download : bool
        Download a missing file into the cache (checked against its sha256).

    Returns
    -------
    Dataset
        ``train``, ``valid`` and ``test`` splits (float32 ``x`` in [0, 1],
        int32 ``y``), ``n_classes`` and ``image_shape``; ``subset(n_train,
        n_valid, n_test)`` keeps the first rows of each split.

    Raises
    ------
    DataError
        The file is missing, corrupt or malformed; the message says how to fix it.
    SettingTypeError
        ``path`` is neither a str nor an ``os.PathLike``.

    Examples
    --------
    >>> digits = load_dataset("digits")
    >>> digits.n_classes, digits.n_features, len(digits.train.y)
    (10, 64, 1197)
    """
    if path is not None:
        if not isinstance(path, str | os.PathLike):
            raise SettingTypeError(
                f"path must be a file or folder name (a str or os.PathLike), got {path!r} "
                f'({type(path).__name__}); pass e.g. "data/mnist.pkl.gz", or None to '
                f"look in ${DATA_ENV} and the cache"
            )
        path = _existing(path)
        if path.suffix == ".npz":
            name = "npz"
    if name == "mnist":
        dataset = _load_mnist(path, download)
    elif name in ("mnist-idx", "fashion-mnist"):
        dataset = _load_idx(name, path, download)
    elif name == "digits":
        dataset = _load_digits()
    elif name == "npz":
        dataset = _load_npz(path)
    else:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    check_classes(dataset, str(path) if path is not None else name)
    return dataset


def halve_test_rows(n_rows: int, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``n_rows`` test rows into two halves at random: rows ``a`` and rows ``b``, each sorted.

    A seeded permutation, never a cut by position: MNIST's first 5,000 test
    images come from a cleaner pool of writers than its last 5,000.

    Parameters
    ----------
    n_rows : int
        Test rows, at least 2.
    split_seed : int
        Seeds the permutation.

    Returns
    -------
    a, b : numpy.ndarray
        Row numbers: ``a`` holds ``n_rows // 2`` of them, ``b`` the rest.

    Raises
    ------
    DataError
        Fewer than 2 rows.

    Examples
    --------
    >>> a, b = halve_test_rows(6, split_seed=0)
    >>> len(a), len(b), sorted([*a, *b]) == list(range(6))
    (3, 3, True)
    """
    if n_rows < 2:
        raise DataError(f"cannot halve {n_rows} test row(s): keep at least 2, or validate on the valid rows")
    order = np.random.default_rng(check_setting("split_seed", split_seed)).permutation(n_rows)
    return np.sort(order[: n_rows // 2]), np.sort(order[n_rows // 2 :])


def rearrange(
    dataset: Dataset, train_on_valid: bool = False, valid_from: str = "valid", split_seed: int = 0
) -> Dataset:
    """Choose which rows train, validate and test.

    Parameters
    ----------
    dataset : Dataset
        The data set as loaded (and cut to its row counts).
    train_on_valid : bool
        Train on the training rows followed by the validation rows; the
        validation set stays as it is (it then measures rows trained on).
    valid_from : {"valid", "test-a", "test-b"}
        "valid" keeps the data set's validation rows; "test-a" validates on
        half ``a`` of :func:`halve_test_rows` and tests on half ``b``; "test-b"
        swaps the halves.
    split_seed : int
        Seeds the halving of the test rows.

    Returns
    -------
    Dataset
        A new data set (``dataset`` itself when nothing changes).

    Raises
    ------
    SettingError, SettingTypeError
        A setting out of its choices or range.
    DataError
        Too few test rows to halve.

    Examples
    --------
    >>> digits = load_dataset("digits").subset(100, 50, 40)
    >>> swapped = rearrange(digits, train_on_valid=True, valid_from="test-b")
    >>> len(swapped.train.y), len(swapped.valid.y), len(swapped.test.y)
    (150, 20, 20)
    """
    check_setting("train_on_valid", train_on_valid)
    check_setting("valid_from", valid_from)
    train, valid, test = dataset.train, dataset.valid, dataset.test
    if valid_from != "valid":
        a, b = halve_test_rows(len(test.y), split_seed)
        valid_rows, test_rows = (a, b) if valid_from == "test-a" else (b, a)
        valid, test = (Split(test.x[rows], test.y[rows]) for rows in (valid_rows, test_rows))
    if train_on_valid:
        train = Split(np.concatenate([train.x, dataset.valid.x]), np.concatenate([train.y, dataset.valid.y]))
    if train is dataset.train and valid is dataset.valid:
        return dataset
    return dataclasses.replace(dataset, train=train, valid=valid, test=test)


def shared_dataset(split: Split) -> tuple:
    """``(x, y)`` as PyTensor shared variables (float32 and int32), sharing memory.

    Parameters
    ----------
    split : Split
        The rows and labels.

    Returns
    -------
    (TensorSharedVariable, TensorSharedVariable)
        ``x`` float32 and ``y`` int32, named ``"x"`` and ``"y"``.
    """
    import pytensor

    x = pytensor.shared(np.asarray(split.x, dtype=np.float32), name="x", borrow=True)
    y = pytensor.shared(np.asarray(split.y, dtype=np.int32), name="y", borrow=True)
    return x, y
