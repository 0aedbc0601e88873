"""``python -m sda.predict RUN_DIR INPUT...``: classify images and arrays with a trained run's model.

The model comes from the run folder (``model.npz``, checked against
``config.json``; see ``sda.trained.load_run``). Every input is read and
checked before any is classified, so a bad one stops the command before
anything is printed. One line per image, or per row of an array: the label
and its probability, or the ``--top K`` labels; ``--json`` prints the same
as one JSON list instead.
"""

import argparse
import json
import sys

import numpy as np

from sda.cli import trained_model_parser
from sda.errors import SettingError, exit_status
from sda.trained import load_run, read_input

DESCRIPTION = (
    "Classify images (PNG) and arrays (.npy/.npz) with the model a run of python -m sda.run "
    "trained, one line per image or array row: the label and its probability."
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m sda.predict``.

    Returns
    -------
    argparse.ArgumentParser
        Its help lists every flag with its default.
    """
    parser = trained_model_parser("python -m sda.predict", DESCRIPTION, "image or array files (see below)")
    parser.add_argument(
        "--top",
        type=int,
        default=1,
        metavar="K",
        help="show the K most probable labels of each input (default: 1)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON list, an object per image or row, instead of lines",
    )
    return parser


def predict(run_dir, inputs, top: int = 1) -> list[dict]:
    """Classify every image and array row of ``inputs`` with the model of ``run_dir``.

    Parameters
    ----------
    run_dir : str or path-like
        A run folder made by ``python -m sda.run``, or its ``model.npz``.
    inputs : list of str or path-like
        Image files and ``.npy``/``.npz`` array files (see ``sda.trained.read_input``).
    top : int
        How many of the most probable labels to give for each.

    Returns
    -------
    list of dict
        One per image or array row, in order: ``input`` (the file), ``row``
        (the row of an array; None for an image), ``label``, ``probability``,
        ``top`` (the ``top`` most probable ``[label, probability]`` pairs) and
        ``inverted`` (whether a dark-on-light image was inverted).

    Raises
    ------
    SdAError
        A bad run folder, ``top`` or input; nothing is classified then.
    """
    trained = load_run(run_dir)
    n_classes = len(trained.classes)
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= n_classes:
        raise SettingError(
            f"--top {top} is not a number of labels from 1 to the model's {n_classes} "
            "classes: give one in that range"
        )
    read = [read_input(path, trained) for path in inputs]  # every input checked before any work
    results = []
    for item in read:
        for row, proba in enumerate(trained.predict_proba(item.rows)):
            best = np.argsort(-proba, kind="stable")[:top]
            pairs = [[trained.classes[k].item(), float(proba[k])] for k in best]
            results.append(
                {
                    "input": str(item.path),
                    "row": None if item.image else row,
                    "label": pairs[0][0],
                    "probability": pairs[0][1],
                    "top": pairs,
                    "inverted": item.inverted,
                }
            )
    return results


def _line(result) -> str:
    where = result["input"] + ("" if result["row"] is None else f"[{result['row']}]")
    return f"{where}: " + ", ".join(f"{label} ({p:.3f})" for label, p in result["top"])


def main(argv=None) -> int:
    """``python -m sda.predict``: parse ``argv``, run, and turn a user's error into one line.

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
        results = predict(args.run_dir, args.inputs, args.top)
        for path in dict.fromkeys(r["input"] for r in results if r["inverted"]):
            print(
                f"note: {path} is a dark digit on a light background; inverted it, as the model "
                "was trained on light digits on dark",
                file=sys.stderr,
            )
        print(json.dumps(results) if args.json else "\n".join(map(_line, results)))

    return exit_status(action)


if __name__ == "__main__":
    sys.exit(main())
