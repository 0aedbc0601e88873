"""SdAClassifier beside scikit-learn's MLPClassifier and BernoulliRBM + LogisticRegression.

    python -m bench.sklearn_compare [--datasets digits mnist] [--n-train 10000] [--n-test 10000]
                                    [--quick] [--out PATH]

Every model is fitted on the same rows, scaled into [0, 1], and scored on the
same held-out rows; fit time is wall time of ``fit`` (the SdA's includes
compiling its PyTensor functions). Prints a markdown table and writes JSON,
by default to docs/results/sklearn_compare.json, which docs/sklearn.md shows.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

if not __package__:  # run as `python bench/sklearn_compare.py`: make `sda` importable from the repo
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import sklearn
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import BernoulliRBM, MLPClassifier
from sklearn.pipeline import make_pipeline

import sda
from bench.pretrain import prepare_out
from sda import SdAClassifier
from sda.data import load_dataset

# The docs page reads this committed file (bench/results/ is not committed).
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "results" / "sklearn_compare.json"
SEED = 0
# Layer sizes per dataset; the RBM gets as many units as the SdA's first layer.
HIDDEN = {"digits": (100, 100), "mnist": (256, 256)}
QUICK_HIDDEN = (16, 16)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m bench.sklearn_compare", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--datasets", nargs="+", choices=["digits", "mnist"], default=["digits", "mnist"])
    parser.add_argument("--n-train", type=int, default=10_000, help="MNIST training rows (default 10000)")
    parser.add_argument("--n-test", type=int, default=10_000, help="MNIST test rows (default 10000)")
    parser.add_argument(
        "--quick", action="store_true", help="tiny networks and few epochs: a smoke test, not a measurement"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="where to write the JSON results (default: docs/results/sklearn_compare.json)",
    )
    return parser


def load(name, n_train, n_test):
    """``(X_train, y_train, X_test, y_test)``, every value in [0, 1]."""
    if name == "digits":
        X, y = load_digits(return_X_y=True)
        # pixels are 0..16; a stratified half for testing, as in scikit-learn's RBM example
        X_train, X_test, y_train, y_test = train_test_split(
            X / 16.0, y, test_size=0.5, stratify=y, random_state=SEED
        )
        return X_train, y_train, X_test, y_test
    mnist = load_dataset("mnist")  # already in [0, 1]
    return mnist.train.x[:n_train], mnist.train.y[:n_train], mnist.test.x[:n_test], mnist.test.y[:n_test]


def models(hidden, quick):
    """The contenders, by name; the same layer sizes and seed for every network."""
    epochs = 2 if quick else 10
    max_iter = 5 if quick else 200
    return {
        "SdAClassifier (sgd)": SdAClassifier(
            hidden, pretrain_epochs=epochs, max_iter=max_iter, random_state=SEED
        ),
        "SdAClassifier (lbfgs)": SdAClassifier(
            hidden, pretrain_epochs=epochs, solver="lbfgs", max_iter=max_iter, random_state=SEED
        ),
        "SdAClassifier (no pre-training)": SdAClassifier(
            hidden, pretrain_epochs=0, max_iter=max_iter, random_state=SEED
        ),
        "MLPClassifier (adam)": MLPClassifier(
            hidden, early_stopping=True, max_iter=max_iter, random_state=SEED
        ),
        "BernoulliRBM + LogisticRegression": make_pipeline(
            BernoulliRBM(n_components=hidden[0], learning_rate=0.06, n_iter=epochs, random_state=SEED),
            LogisticRegression(C=100.0, max_iter=1000),
        ),
        "LogisticRegression (pixels)": LogisticRegression(C=1.0, max_iter=1000),
    }


def measure(model, X_train, y_train, X_test, y_test):
    """Test accuracy, and the wall and CPU time of ``fit`` (CPU: every thread of
    this process, so it can exceed wall time; it counts less of other jobs' load)."""
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(X_train, y_train)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"accuracy": float(model.score(X_test, y_test)), "fit_seconds": wall, "fit_cpu_seconds": cpu}


def table(results):
    lines = [
        "| dataset (train / test rows) | model | test accuracy | fit wall (s) | fit CPU (s) |",
        "|---|---|---:|---:|---:|",
    ]
    for data in results["datasets"]:
        for row in data["models"]:
            lines.append(
                f"| {data['name']} ({data['n_train']} / {data['n_test']}) | {row['model']} | "
                f"{row['accuracy']:.4f} | {row['fit_seconds']:.1f} | {row['fit_cpu_seconds']:.1f} |"
            )
    return "\n".join(lines)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    prepare_out(parser, args.out)
    results = {
        "command": "python -m bench.sklearn_compare " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} CPUs",
        "versions": {"sda": sda.__version__, "scikit-learn": sklearn.__version__, "numpy": np.__version__},
        "backend": sda.BACKEND,
        "datasets": [],
    }
    for name in args.datasets:
        X_train, y_train, X_test, y_test = load(name, args.n_train, args.n_test)
        hidden = QUICK_HIDDEN if args.quick else HIDDEN[name]
        data = {"name": name, "n_train": len(y_train), "n_test": len(y_test), "hidden": hidden, "models": []}
        for label, model in models(hidden, args.quick).items():
            row = {"model": label, **measure(model, X_train, y_train, X_test, y_test)}
            print(
                f"{name}: {label}: accuracy {row['accuracy']:.4f}, fit {row['fit_seconds']:.1f} s "
                f"({row['fit_cpu_seconds']:.1f} s CPU)",
                flush=True,
            )
            data["models"].append(row)
        results["datasets"].append(data)
    print(table(results))
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
