"""``python -m sda.encode RUN_DIR INPUT... --layer K --out FILE``: a hidden layer's code, as ``.npy``.

The model comes from the run folder (see ``sda.trained.load_run``). Layers
are numbered from 0 at the bottom, as in ``metrics.csv``, the parameter names
(``hidden0.W``) and ``SdATransformer``'s ``layer``; a negative number counts
from the top. The inputs, the layer and the output path are all checked
before anything is computed, and the file is written whole or not at all; an
existing file is kept unless ``--overwrite`` is given.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from sda.cli import trained_model_parser
from sda.errors import SettingError, exit_status
from sda.rundir import atomic_write, usable_folder
from sda.trained import load_run, read_input

DESCRIPTION = (
    "Write the code a hidden layer of a trained run's model gives each image or array "
    "row, as one float32 .npy array of shape (rows, layer size)."
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m sda.encode``.

    Returns
    -------
    argparse.ArgumentParser
        Its help lists every flag with its default.
    """
    parser = trained_model_parser(
        "python -m sda.encode",
        DESCRIPTION,
        "image or array files (see below); their rows are encoded in order",
    )
    parser.add_argument(
        "--layer",
        type=int,
        default=-1,
        metavar="K",
        help="the hidden layer, numbered from 0 at the bottom as in metrics.csv and "
        "SdATransformer; negative counts from the top (default: -1, the top)",
    )
    parser.add_argument("--out", required=True, metavar="FILE", help="the .npy file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    return parser


def check_out(out, overwrite: bool = False) -> Path:
    """``out`` as a ``Path`` to write, or ``SettingError`` if it is no ``.npy`` file to (over)write.

    Parameters
    ----------
    out : str or path-like
        The ``.npy`` file to write.
    overwrite : bool
        Whether an existing file may be replaced.

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    SettingError
        If ``out`` does not end in ``.npy``, is a folder, or exists without ``overwrite``.
    """
    out = Path(out)
    if out.suffix != ".npy":
        raise SettingError(f"--out {out} must end in .npy (numpy.save's format): e.g. --out codes.npy")
    if out.is_dir():
        raise SettingError(f"--out {out} is a folder; give a file name ending in .npy")
    if out.exists() and not overwrite:
        raise SettingError(
            f"--out {out} exists already; choose another name, or add --overwrite to replace it"
        )
    return out


def encode(run_dir, inputs, layer: int, out, overwrite: bool = False) -> np.ndarray:
    """Write to ``out`` the code of hidden ``layer`` for every image and array row of ``inputs``.

    Parameters
    ----------
    run_dir : str or path-like
        A run folder made by ``python -m sda.run``, or its ``model.npz``.
    inputs : list of str or path-like
        Image files and ``.npy``/``.npz`` array files (see ``sda.trained.read_input``).
    layer : int
        The hidden layer: 0 is the bottom; negative counts from the top.
    out : str or path-like
        The ``.npy`` file to write.
    overwrite : bool
        Replace ``out`` if it exists (otherwise that is refused).

    Returns
    -------
    ndarray of shape (rows, layer size), float32
        The codes written.

    Raises
    ------
    SdAError
        A bad run folder, input, layer or output path; nothing is written then.
    """
    out = check_out(out, overwrite)
    trained = load_run(run_dir)
    index = trained.layer_index(layer, "--layer")
    rows = np.concatenate([read_input(path, trained).rows for path in inputs])
    codes = trained.encode(rows, index)
    usable_folder(out.parent, "--out's folder")
    try:
        atomic_write(out, lambda f: np.save(f, codes, allow_pickle=False), replace=overwrite)
    except FileExistsError:  # another process wrote it since check_out
        raise SettingError(
            f"--out {out} was written by another process meanwhile; it is kept: "
            "choose another name, or add --overwrite to replace it"
        ) from None
    return codes


def main(argv=None) -> int:
    """``python -m sda.encode``: parse ``argv``, run, and turn a user's error into one line.

    Parameters
    ----------
    argv : list of str, optional
        The arguments; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        The exit status: 0, 2 after a one-line error, 130 if interrupted.
    """
    args = build_parser().parse_args(argv)

    def action():
        codes = encode(args.run_dir, args.inputs, args.layer, args.out, args.overwrite)
        print(
            f"wrote {args.out}: {codes.shape[0]} rows x {codes.shape[1]} values, the code of "
            f"--layer {args.layer}"
        )

    return exit_status(action)


if __name__ == "__main__":
    sys.exit(main())
