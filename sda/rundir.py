"""The run folder: creating it safely, locking it, and reading and writing its files.

Parameters are stored as ``.npz`` keyed by ``SdA.named_params()`` names and
read back with ``allow_pickle=False``: a model file can never run code.
Every file is written to a temporary name first and then renamed, so a run
killed mid-write leaves the previous version intact. Every problem with a
folder or a file (missing, damaged, not writable, in use) is an ``SdAError``
whose message names the file.
"""

import contextlib
import csv
import fcntl
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from sda.data import DataError, open_npz
from sda.errors import SdAError, SettingError

MAX_SUFFIX = 1000  # default names that collide get "-2", "-3", ... up to this
METADATA_KEY = "metadata.json"  # the entry of a model .npz that describes it (not a parameter)


def atomic_write(path, write, replace=True):
    """Call ``write(file_object)`` on a temporary file, then rename it to ``path``.

    With ``replace=False`` a file that appeared at ``path`` meanwhile (another
    process's) is kept: ``FileExistsError``, and the new file is dropped.

    Parameters
    ----------
    path : str or pathlib.Path
        The file to write; its folder must exist.
    write : callable
        ``write(f)`` writes the contents to the binary file object ``f``.
    replace : bool
        Replace a file at ``path`` (True), or keep it and raise (False).

    Raises
    ------
    FileExistsError
        With ``replace=False``, if ``path`` exists when the file is linked into place.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        if replace:
            os.replace(tmp, path)
        else:  # a hard link, unlike a rename, refuses an existing name
            os.link(tmp, path)
            os.unlink(tmp)
    except BaseException:
        # an interrupt may land after the rename, when the temporary name is gone
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_text(path, what="file"):
    """The text of ``path``; an ``SdAError`` naming it if it is missing, a folder or unreadable.

    Parameters
    ----------
    path : str or pathlib.Path
        The file to read, as UTF-8.
    what : str
        What needs the file, for the message.

    Returns
    -------
    str
        The file's text.

    Raises
    ------
    SdAError
        If the file is missing, a folder, binary or unreadable.
    """
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SdAError(f"{path} is missing: this {what} needs it") from None
    except IsADirectoryError:
        raise SdAError(f"{path} is a folder where a file should be: remove or rename it") from None
    except UnicodeDecodeError:
        raise SdAError(
            f"{path} is not a text file (it holds binary data): restore it or start again"
        ) from None
    except OSError as error:
        raise SdAError(f"cannot read {path}: {error.strerror}") from None


def folder_error(path, error, flag="--out"):
    """One-line ``SdAError`` for an ``OSError`` raised while making the folder ``path``.

    Parameters
    ----------
    path : str or pathlib.Path
        The folder that could not be made.
    error : OSError
        What making it raised.
    flag : str
        The flag or name that gave the path, for the message.

    Returns
    -------
    SdAError
        The error to raise, with a fix for the permission and file-in-the-way cases.
    """
    if isinstance(error, PermissionError):
        return SdAError(f"cannot write in {flag} {path}: permission denied; choose a folder you can write to")
    if isinstance(error, (FileExistsError, NotADirectoryError)):
        return SdAError(
            f"{flag} {path} cannot be a folder: it or a folder above it is a file; choose another path"
        )
    return SdAError(f"cannot make {flag} {path}: {error.strerror or error}")


def usable_folder(path, flag="--out"):
    """Make the folder ``path`` (and its parents) if needed and check it is writable.

    Returns the ``Path``; raises ``SdAError`` naming ``flag`` otherwise.
    Commands that write outputs (``sda.replot``, ``sda.compare``) call this
    before any work.

    Parameters
    ----------
    path : str or pathlib.Path
        The folder.
    flag : str
        The flag that gave the path, for the message.

    Returns
    -------
    pathlib.Path
        The folder, made if it was missing.

    Raises
    ------
    SdAError
        If ``path`` is empty, cannot be made or is not writable.
    """
    if path == "":  # Path("") would quietly mean the current folder
        raise SdAError(f"{flag} must name a folder, got an empty string")
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise folder_error(path, error, flag) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise folder_error(path, PermissionError(), flag)
    return path


def save_params(model, path, metadata=None):
    """Write every named parameter of ``model`` to the ``.npz`` file ``path``.

    ``metadata``, a JSON-serialisable dict (see ``sda.trained``), is stored
    beside them as JSON text under ``METADATA_KEY``: a plain string array,
    readable without pickle.

    Parameters
    ----------
    model : SdA
        The model whose ``named_params()`` are written.
    path : str or pathlib.Path
        The ``.npz`` file, written atomically.
    metadata : dict, optional
        JSON-serialisable facts about the model (architecture, data set).
    """
    values = {name: p.get_value() for name, p in model.named_params().items()}
    if metadata is not None:
        values[METADATA_KEY] = np.array(json.dumps(metadata, sort_keys=True))
    atomic_write(path, lambda f: np.savez(f, **values))


def load_params(model, path):
    """Set ``model``'s parameters from an ``.npz`` written by ``save_params``.

    Parameters
    ----------
    model : SdA
        The model to set; its architecture must match the file's.
    path : str or pathlib.Path
        The ``.npz`` file.

    Raises
    ------
    SdAError
        ``DataError`` or ``SettingError`` if the file is damaged or does not fit the model.
    """
    set_params(model, open_npz(path, "saved model"), path)


def set_params(model, stored, source, misfit_fix=None):
    """Set ``model``'s parameters from ``stored``, arrays by parameter name.

    Every array is checked (names, shapes, finite floats) before any is set,
    so a refused set leaves the model as it was; finite float64 arrays are
    cast to the model's float32. The metadata entry is not a parameter and
    is left to ``sda.trained``. ``source`` names where the arrays came from
    (a file, an unpickled estimator) in messages; ``misfit_fix`` replaces
    the advice given when names, shapes or values do not fit.

    Parameters
    ----------
    model : SdA
        The model to set.
    stored : dict of str to numpy.ndarray
        The arrays, by the names of ``model.named_params()``.
    source : str
        Where the arrays came from, for messages.
    misfit_fix : str, optional
        The advice to give when the arrays do not fit.

    Raises
    ------
    DataError
        If ``stored`` is not arrays by name, or an array is not finite floats.
    SettingError
        If names or shapes differ from the model's.
    """
    params = model.named_params()
    if not isinstance(stored, dict):
        raise DataError(
            f"{source} holds its weights in a {type(stored).__name__}, not arrays by "
            f"parameter name: " + (misfit_fix or "point to a saved model written by sda")
        )
    stored = {name: value for name, value in stored.items() if name != METADATA_KEY}
    missing = sorted(set(params) - set(stored))
    extra = sorted(set(stored) - set(params))
    if missing or extra:
        raise SettingError(
            f"{source} does not fit this model (missing {missing}, unexpected {extra}): "
            + (misfit_fix or "build the model with the same layer sizes and decoder setting as the saved one")
        )
    for name, p in params.items():  # every array is checked before any is set
        value, expected = stored[name], p.get_value(borrow=True)
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f" or not np.all(np.isfinite(value)):
            problem = (
                f"is a {type(value).__name__}, not an array"
                if not isinstance(value, np.ndarray)
                else f"holds {value.dtype} values"
                if value.dtype.kind != "f"
                else "holds non-finite values (saved from a run that diverged?)"
            )
            raise DataError(
                f"{source}: {name} {problem}, not usable weights; "
                + (misfit_fix or "point to a saved model written by sda")
            )
        if value.shape != expected.shape:
            raise SettingError(
                f"{source}: {name} has shape {value.shape}, the model expects "
                f"{expected.shape}: " + (misfit_fix or "the layer sizes differ")
            )
    for name, p in params.items():
        p.set_value(stored[name].astype(p.dtype))


# ----------------------------------------------------------------------- tables
class Table:
    """A CSV file of a run folder: its columns, and which must hold numbers.

    ``kinds`` maps a column to "int" or "float" (an empty cell is allowed
    unless the column is ``required``, or required for the row's phase).
    """

    PHASES = ("pretrain", "finetune")

    def __init__(self, filename, kinds, required, required_in_phase=None, added_later=()):
        self.filename, self.kinds, self.required = filename, kinds, required
        self.columns = ["phase", *kinds]
        self.added_later = added_later  # columns a file written by an older sda may lack
        self.required_in_phase = required_in_phase or {}

    def read(self, folder):
        """The rows as dicts of the original text; ``SdAError`` naming the file if damaged.

        Parameters
        ----------
        folder : str or pathlib.Path
            The run folder holding the table's file.

        Returns
        -------
        list of dict
            One ``{column: text}`` per complete row; a last line cut off by a kill is dropped.

        Raises
        ------
        SdAError
            If the file is missing, binary, not CSV, lacks a column or holds a bad row.
        """
        path = Path(folder) / self.filename
        text = read_text(path, "run folder")
        if "\0" in text:
            raise self._damaged(path, "it holds binary data")
        # every row ends in a newline: a last line without one was cut off by a kill mid-append
        text = text[: text.rfind("\n") + 1]
        try:
            reader = csv.DictReader(io.StringIO(text, newline=""))
            missing = [
                c for c in self.columns if c not in (reader.fieldnames or []) and c not in self.added_later
            ]
            if missing:
                raise self._damaged(path, f"columns {missing} are missing")
            rows = list(reader)
        except csv.Error as error:
            raise self._damaged(path, f"it is not valid CSV ({error})") from None
        for number, row in enumerate(rows, start=2):  # line 1 is the header
            self._check_row(path, number, row)
        return rows

    def _check_row(self, path, number, row):
        if row["phase"] not in self.PHASES:
            raise self._damaged(path, f"line {number}: phase {row['phase']!r} is not one of {self.PHASES}")
        needed = set(self.required) | set(self.required_in_phase.get(row["phase"], ()))
        for column, kind in self.kinds.items():
            cell = row.get(column)
            if cell in ("", None):
                if column in needed:
                    raise self._damaged(path, f"line {number}: column {column} is empty")
                continue
            try:
                int(cell) if kind == "int" else float(cell)
            except ValueError:
                raise self._damaged(
                    path,
                    f"line {number}: column {column} holds {cell!r}, "
                    f"not {'a whole number' if kind == 'int' else 'a number'}",
                ) from None

    @staticmethod
    def _damaged(path, problem):
        return SdAError(f"{path} is damaged: {problem}; restore the file, or start the run again")


METRICS = Table(
    "metrics.csv",
    {
        "layer": "int",
        "epoch": "int",
        "cost": "float",
        "valid_error": "float",
        "best_valid_error": "float",
        "test_error": "float",
        "seconds": "float",
        "passes": "float",  # under a pass budget: pass-equivalents spent
        "current_test_error": "float",  # with test_every_eval: the test error at this point, else empty
    },
    required=("epoch", "cost"),
    required_in_phase={"pretrain": ("layer",)},
    added_later=("passes", "current_test_error"),
)
STEPS = Table(
    "steps.csv",
    {"layer": "int", "epoch": "int", "step": "int", "cost": "float"},
    required=("epoch", "step", "cost"),
    required_in_phase={"pretrain": ("layer",)},
)


# ------------------------------------------------------------------- the folder
class RunDir:
    """A folder holding one run's files; ``with run_dir:`` holds its lock."""

    METRICS = METRICS.columns
    STEPS = STEPS.columns

    def __init__(self, path):
        self.path = Path(path)
        self._lock_fd = None

    @classmethod
    def create(cls, out, name=None, kind="run"):
        """Make a new folder under ``out`` and lock it.

        With a ``name``, an existing folder of that name is refused. Without
        one the name is the date, time and ``kind``, with "-2", "-3", ...
        added when another run took it first: ``mkdir`` fails if the folder
        exists, so two runs started in the same second each get their own.

        Parameters
        ----------
        out : str or pathlib.Path
            The folder to make the run's folder in.
        name : str, optional
            The run folder's name; by default the date, time and ``kind``.
        kind : str
            The last part of a default name (the preset, "compare", ...).

        Returns
        -------
        RunDir
            The new folder, locked.

        Raises
        ------
        SdAError
            If ``out`` is not usable, the named folder exists, or every dated name is taken.
        """
        out = usable_folder(out)
        candidates = (
            [name]
            if name
            else [cls.default_name(kind)] + [f"{cls.default_name(kind)}-{i}" for i in range(2, MAX_SUFFIX)]
        )
        for candidate in candidates:
            path = out / candidate
            try:
                path.mkdir()
            except FileExistsError:
                continue
            except OSError as error:  # e.g. a --name too long for the file system
                raise folder_error(path, error, "run folder") from None
            run_dir = cls(path)
            run_dir.lock()
            return run_dir
        if name:
            raise SdAError(
                f"run folder {out / name} exists already: choose another --name, or "
                f"continue it with --resume {out / name}"
            )
        raise SdAError(f"{out} holds {MAX_SUFFIX} runs named {candidates[0]}...: choose a --name")

    @classmethod
    def claim(cls, out, kind):
        """A locked output folder for an experiment: ``out``, or a new dated one if None.

        An ``out`` that already holds files is refused: earlier results are
        never overwritten.

        Parameters
        ----------
        out : str or pathlib.Path or None
            The experiment's folder; None makes a dated one under ``runs``.
        kind : str
            The last part of a dated name.

        Returns
        -------
        RunDir
            The folder, locked.

        Raises
        ------
        SdAError
            If ``out`` already holds files, or cannot be made or written.
        """
        if out is None:
            return cls.create("runs", kind=kind)
        run_dir = cls(usable_folder(out))
        run_dir.lock()
        earlier = sorted(p.name for p in run_dir.path.iterdir())
        if earlier:
            run_dir.unlock()
            shown = ", ".join(earlier[:4]) + (", ..." if len(earlier) > 4 else "")
            raise SdAError(
                f"--out {run_dir.path} already holds files ({shown}); choose a new "
                "folder: earlier results are never overwritten"
            )
        return run_dir

    @classmethod
    def existing(cls, path):
        """An existing run folder (for ``--resume``); ``SdAError`` if it is not a folder.

        Parameters
        ----------
        path : str or pathlib.Path
            A run folder.

        Returns
        -------
        RunDir
            The folder, not yet locked.

        Raises
        ------
        SdAError
            If ``path`` is missing or a file.
        """
        path = Path(path)
        if not path.is_dir():
            problem = "is a file" if path.exists() else "does not exist"
            raise SdAError(
                f"cannot resume {path}: it {problem}; give the folder of a run started by python -m sda.run"
            )
        return cls(path)

    @staticmethod
    def default_name(kind):
        """A dated folder name: the time now, then ``kind``.

        Parameters
        ----------
        kind : str
            What the folder holds (the preset, "compare", ...).

        Returns
        -------
        str
            ``YYYYmmdd-HHMMSS-kind``, in local time.
        """
        return time.strftime("%Y%m%d-%H%M%S") + f"-{kind}"

    # ---------------------------------------------------------------- locking
    def lock(self):
        """Take a non-blocking exclusive lock on the folder; refuse if another process holds it.

        The lock is on the folder itself (``flock`` on its descriptor), so
        it adds no file and dies with the process that holds it.
        """
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SdAError(
                f"{self.path} is in use by another sda process: wait for it to end, or stop it"
            ) from None
        self._lock_fd = fd

    def unlock(self):
        """Release the folder's lock, if this object holds it."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the lock
            self._lock_fd = None

    def __enter__(self):
        if self._lock_fd is None:
            self.lock()
        return self

    def __exit__(self, *exc):
        self.unlock()

    # ---------------------------------------------------------------- writing
    def write_json(self, filename, obj):
        """Write ``obj`` as JSON to ``filename`` in the folder, atomically.

        Parameters
        ----------
        filename : str
            The file's name in the folder.
        obj : object
            JSON-serialisable; written indented, keys sorted.
        """
        text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
        atomic_write(self.path / filename, lambda f: f.write(text.encode()))

    def _append(self, table, record):
        path = self.path / table.filename
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=table.columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(record)

    def append_metrics(self, record):
        """Add one per-epoch row to ``metrics.csv`` (the header comes with the first).

        Parameters
        ----------
        record : dict
            One epoch's values by column of ``metrics.csv``; other keys are ignored.
        """
        self._append(METRICS, record)

    def append_step(self, record):
        """Add one minibatch's cost to ``steps.csv``.

        Parameters
        ----------
        record : dict
            ``phase``, ``layer``, ``step`` and ``cost``; other keys are ignored.
        """
        self._append(STEPS, record)

    def rewind(self, metrics_rows, last_step):
        """Drop what a killed run wrote after its checkpoint: rows of
        ``metrics.csv`` past ``metrics_rows`` and of ``steps.csv`` past ``last_step``.

        Both files are read and checked before either is rewritten.

        Parameters
        ----------
        metrics_rows : int
            Rows of ``metrics.csv`` written before the checkpoint.
        last_step : int
            The last step of ``steps.csv`` written before it.

        Raises
        ------
        SdAError
            If either file is damaged, or ``metrics.csv`` holds fewer rows than the checkpoint says.
        """
        kept = {}
        for table, needed, keep in [
            (METRICS, metrics_rows, lambda i, row: i < metrics_rows),
            (STEPS, last_step, lambda i, row: int(row["step"]) <= last_step),
        ]:
            path = self.path / table.filename
            if not needed:  # nothing was saved before the checkpoint: drop whatever is there
                if path.is_file():
                    kept[table] = []
                continue
            if not path.exists():
                if table is METRICS:
                    raise SdAError(
                        f"{path} is missing but the checkpoint was saved after "
                        f"{metrics_rows} rows: restore it"
                    )
                continue  # a run with --log-every 0 keeps no steps.csv
            rows = table.read(self.path)
            if table is METRICS and len(rows) < metrics_rows:
                raise SdAError(
                    f"{path} holds {len(rows)} rows but the checkpoint was saved after "
                    f"{metrics_rows}: restore the file"
                )
            kept[table] = [row for i, row in enumerate(rows) if keep(i, row)]
        for table, rows in kept.items():
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=table.columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
            atomic_write(self.path / table.filename, lambda f, text=text: f.write(text.getvalue().encode()))

    def save_model(self, model, filename="model.npz", metadata=None):
        """Write ``model``'s parameters, and ``metadata`` if given, to ``filename`` in the folder.

        Parameters
        ----------
        model : SdA
            The model whose parameters are written.
        filename : str
            The ``.npz`` file's name in the folder.
        metadata : dict, optional
            As for ``save_params``.
        """
        save_params(model, self.path / filename, metadata)
