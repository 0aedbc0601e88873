"""``python -m sda.experiments.gradual``: stacked against gradual training of a deep DAE.

Part 1 trains the first layer once, then the upper layers once per
stacked-vs-gradual fraction ``f`` (same seed, same update budget), and
scores each auto-encoder by its test reconstruction cross-entropy above the
data's own entropy (``sda.gradual.relative_cross_entropy``).
Part 2 starts classifiers from the pure stacked (f=1) and pure gradual (f=0)
auto-encoders, fine-tunes them with SGD on class-stratified labelled subsets
of several sizes (the same rows for both), and reports the test error at the
best validation point.

Writes ``gradual_fraction.{md,csv,json,png}``, ``gradual_classifier.{md,csv,json,png}``
and the auto-encoders' weights (``dae_f0.npz``, ``dae_f1.npz``, ...).
"""

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from sda import BACKEND, SdA
from sda.cli import exit_status
from sda.data import DATASETS, Split, load_dataset, shared_dataset
from sda.gradual import data_entropy, relative_cross_entropy, train_gradual
from sda.plots import plot_curves
from sda.rundir import RunDir, atomic_write, load_params, save_params
from sda.SdA import n_batches
from sda.train import EarlyStopping, finetune_sgd

FULL = dict(hidden_layers=[500, 500], n_train=10_000, n_valid=5_000, n_test=None,
            first_epochs=8, upper_budget=12, fractions=[0, 0.25, 0.5, 0.75, 1],
            sizes=[1000, 5000, 10_000, 50_000], finetune_epochs=30, finetune_examples=100_000)
QUICK = dict(hidden_layers=[40, 40], n_train=600, n_valid=300, n_test=500, first_epochs=1,
             upper_budget=2, fractions=[0, 0.5, 1], sizes=[200, 500], finetune_epochs=2,
             finetune_examples=1000)
ARMS = {1.0: "stacked (f=1)", 0.0: "gradual (f=0)"}  # the classifiers' starting points


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m sda.experiments.gradual",
                                     description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true",
        help="a tiny end-to-end run (40 x 40 units, 600 rows, 1-2 epochs); other flags still apply")
    add("--dataset", choices=DATASETS, default="mnist", help="which data set (default: mnist)")
    add("--data", help="a data file or the folder holding it (default: $SDA_DATA, then the cache)")
    add("--n-train", type=int, help="unlabelled rows the auto-encoders train on (default: 10000)")
    add("--n-valid", type=int, help="validation rows for the classifiers' early stopping (default: 5000)")
    add("--n-test", type=int, help="test rows scored (default: all)")
    add("--hidden-layers", type=int, nargs="+", help="hidden layer sizes (default: 500 500)")
    add("--corruption", type=float, default=0.15, help="masking noise on the input (default: 0.15)")
    add("--first-epochs", type=float, help="epochs of the first layer (default: 8)")
    add("--upper-budget", type=float,
        help="each upper layer's budget in layer-epochs; a gradual epoch at depth d costs d "
             "(default: 12)")
    add("--fractions", type=float, nargs="+",
        help="stacked-vs-gradual fractions f to sweep; include 0 and 1 for the classifiers "
             "(default: 0 0.25 0.5 0.75 1)")
    add("--lr", type=float, default=0.01, help="auto-encoder learning rate (default: 0.01)")
    add("--momentum", type=float, default=0.9, help="auto-encoder momentum (default: 0.9)")
    add("--weight-decay", type=float, default=1e-5,
        help="auto-encoder weight decay on weight matrices (default: 1e-5)")
    add("--batch-size", type=int, default=20, help="minibatch size of every phase (default: 20)")
    add("--sizes", type=int, nargs="+",
        help="labelled training-set sizes for the classifiers (default: 1000 5000 10000 50000)")
    add("--finetune-lr", type=float, default=0.1, help="classifier learning rate (default: 0.1)")
    add("--finetune-epochs", type=int, help="most fine-tuning epochs per classifier (default: 30)")
    add("--finetune-examples", type=int,
        help="most examples seen per classifier, so large sets get fewer epochs (default: 100000)")
    add("--seed", type=int, default=1234, help="seed of weights, noise and subsets (default: 1234)")
    add("--out", help="output folder (default: runs/DATE-TIME-gradual)")
    return parser


def settings_from_args(args):
    """The flags with the defaults of a full or ``--quick`` run filled in, checked."""
    defaults = QUICK if args.quick else FULL
    settings = {**vars(args), **{k: v for k, v in defaults.items() if getattr(args, k) is None}}
    if len(settings["hidden_layers"]) < 2:
        raise ValueError("--hidden-layers needs at least two layers: gradual training starts at "
                         "the second")
    if any(not 0 <= f <= 1 for f in settings["fractions"]):
        raise ValueError(f"--fractions must lie in [0, 1], got {settings['fractions']}")
    settings["fractions"] = sorted(set(map(float, settings["fractions"])))
    if not set(ARMS) <= set(settings["fractions"]):
        raise ValueError("the classifiers start from f=0 and f=1: include both in --fractions")
    for name in ("first_epochs", "upper_budget", "finetune_epochs", "finetune_examples",
                 "batch_size", "lr", "finetune_lr"):
        if not settings[name] > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {settings[name]}")
    return argparse.Namespace(**settings)


def build_model(s, dataset):
    # the same seed everywhere: every arm starts from the same weights and noise
    return SdA(np.random.RandomState(s.seed), n_ins=dataset.n_features,
               hidden_layers_sizes=s.hidden_layers, n_outs=dataset.n_classes,
               corruption_levels=[s.corruption] * len(s.hidden_layers))


def stratified_rows(y, size, seed):
    """Indices of ``size`` rows of ``y`` in the classes' proportions (all rows if ``size`` is all)."""
    if size == len(y):
        return np.arange(len(y))
    rows, _ = train_test_split(np.arange(len(y)), train_size=size, stratify=y, random_state=seed)
    return np.sort(rows)


def print_epoch(prefix):
    def report(record):
        print(f"{prefix}  {record['phase']:7s} layer {record['layer']} epoch {record['epoch']:3d}  "
              f"cost {record['cost']:8.3f}  budget {record['budget']:5.2f}  "
              f"{record['seconds']:7.1f}s", flush=True)
    return report


def sweep_fractions(s, dataset, out):
    """Part 1: one auto-encoder per fraction; returns the table rows."""
    train_x, _ = shared_dataset(Split(dataset.train.x[: s.n_train], dataset.train.y[: s.n_train]))
    test_x, _ = shared_dataset(dataset.test)
    budgets = [s.first_epochs] + [s.upper_budget] * (len(s.hidden_layers) - 1)
    common = dict(epochs_per_layer=budgets, batch_size=s.batch_size, learning_rate=s.lr,
                  corruption=s.corruption, momentum=s.momentum, weight_decay=s.weight_decay)
    first = build_model(s, dataset)  # the first layer is the same for every f: train it once
    first_records = train_gradual(first, train_x, layers=[0], on_epoch=print_epoch("first layer"),
                                  **common)
    save_params(first, out / "dae_layer0.npz")
    rows = []
    for f in s.fractions:
        model = build_model(s, dataset)
        load_params(model, out / "dae_layer0.npz")
        records = train_gradual(model, train_x, fraction_stacked=f,
                                layers=range(1, len(s.hidden_layers)),
                                on_epoch=print_epoch(f"f={f:.2f}"), **common)
        save_params(model, out / f"dae_f{f:g}.npz")
        epochs = {phase: sum(r["steps"] for r in records if r["phase"] == phase)
                  / n_batches(s.n_train, s.batch_size) for phase in ("stacked", "gradual")}
        rows.append(dict(fraction=f, stacked_epochs=epochs["stacked"],
                         gradual_epochs=epochs["gradual"],
                         test_relative_ce=relative_cross_entropy(model, test_x),
                         seconds=first_records[-1]["seconds"] + records[-1]["seconds"]))
        print(f"f={f:.2f}  test cross-entropy above its minimum: "
              f"{rows[-1]['test_relative_ce']:.3f} nats per image", flush=True)
    return rows


def classifier_curves(s, dataset, out):
    """Part 2: fine-tune classifiers from the f=1 and f=0 auto-encoders; returns the rows."""
    valid, test = (shared_dataset(split) for split in (dataset.valid, dataset.test))
    rows = []
    for size in s.sizes:
        picked = stratified_rows(dataset.train.y, size, s.seed)
        train = shared_dataset(Split(dataset.train.x[picked], dataset.train.y[picked]))
        count = n_batches(size, s.batch_size)
        epochs = max(1, min(s.finetune_epochs, math.ceil(s.finetune_examples / size)))
        row = dict(size=size, epochs=epochs)
        for f, arm in ARMS.items():
            model = build_model(s, dataset)
            load_params(model, out / f"dae_f{f:g}.npz")
            train_fn, valid_score, test_score = model.build_finetune_functions(
                [train, valid, test], s.batch_size, s.finetune_lr, eval_batch_size=1000)
            # patience as long as the budget: every run gets all its epochs
            result = finetune_sgd(model, train_fn, valid_score, test_score, count,
                                  max_epochs=epochs,
                                  stopping=EarlyStopping(patience=epochs * count))
            key = "stacked" if f == 1 else "gradual"
            row[f"{key}_test_error"], row[f"{key}_valid_error"] = (result.test_error,
                                                                   result.best_valid_error)
            print(f"{size:6d} labelled  {arm:14s} {epochs:3d} epochs  best valid error "
                  f"{100 * result.best_valid_error:5.2f}%  test error "
                  f"{100 * result.test_error:5.2f}%", flush=True)
        row["improvement_pct"] = 100 * (1 - row["gradual_test_error"] / row["stacked_test_error"])
        rows.append(row)
    return rows


def markdown_table(header, lines):
    return "\n".join(["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
                     + ["| " + " | ".join(line) + " |" for line in lines])


def fraction_table(rows):
    return markdown_table(
        ["f", "stacked epochs", "gradual epochs", "test CE above minimum (nats/image)",
         "training time"],
        [[f"{r['fraction']:g}", f"{r['stacked_epochs']:g}", f"{r['gradual_epochs']:g}",
          f"{r['test_relative_ce']:.3f}", f"{r['seconds']:.0f} s"] for r in rows])


def classifier_table(rows):
    return markdown_table(
        ["labelled examples", "epochs", "stacked (f=1) test error", "gradual (f=0) test error",
         "improvement"],
        [[f"{r['size']}", f"{r['epochs']}", f"{100 * r['stacked_test_error']:.2f} %",
          f"{100 * r['gradual_test_error']:.2f} %", f"{r['improvement_pct']:+.1f} %"]
         for r in rows])


def write_table(out, name, title, header, table, rows):
    """``name``.md, .csv and .json from the same rows."""
    text = f"# {title}\n\n{header}\n\n{table}\n"
    atomic_write(out / f"{name}.md", lambda f: f.write(text.encode()))
    with open(out / f"{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    payload = json.dumps({"header": header, "rows": rows}, indent=2) + "\n"
    atomic_write(out / f"{name}.json", lambda f: f.write(payload.encode()))


def run(s, out, command):
    dataset = load_dataset(s.dataset, s.data).subset(None, s.n_valid, s.n_test)
    if not 0 < s.n_train <= len(dataset.train.y):
        raise ValueError(f"--n-train must be 1 to {len(dataset.train.y)}, got {s.n_train}")
    if any(not 0 < size <= len(dataset.train.y) for size in s.sizes):
        raise ValueError(f"--sizes must lie in 1..{len(dataset.train.y)}, got {s.sizes}")
    out = RunDir(out).path
    header = (
        f"Command: `{command}`  \nData: {dataset.name}; auto-encoders train on the first "
        f"{s.n_train} training rows; {len(dataset.valid.y)} validation and "
        f"{len(dataset.test.y)} test rows (test-set entropy {data_entropy(dataset.test.x):.3f} "
        f"nats per image).  \nNetwork {' x '.join(map(str, s.hidden_layers))} sigmoid units, tied "
        f"decoders, masking noise {s.corruption} on the input; batch {s.batch_size}, lr {s.lr}, "
        f"momentum {s.momentum}, weight decay {s.weight_decay}; first layer {s.first_epochs:g} "
        f"epochs, each upper layer {s.upper_budget:g} layer-epochs; seed {s.seed}.  \n"
        f"Classifiers: SGD lr {s.finetune_lr}, at most {s.finetune_epochs} epochs and "
        f"{s.finetune_examples} examples seen, best validation point kept.  \nBackend: {BACKEND}")
    print(header.replace("  \n", "\n"), f"\noutput folder: {out}", flush=True)

    fraction_rows = sweep_fractions(s, dataset, out)
    write_table(out, "gradual_fraction", "Test reconstruction against the stacked fraction f",
                header, fraction_table(fraction_rows), fraction_rows)
    plot_curves({"test set": ([r["fraction"] for r in fraction_rows],
                              [r["test_relative_ce"] for r in fraction_rows])},
                out / "gradual_fraction.png", "f: share of the upper layers' budget spent stacked",
                "cross-entropy above its minimum (nats per image)",
                title="Stacked (f=1) to gradual (f=0) training, equal budgets")
    print(fraction_table(fraction_rows), flush=True)
    classifier_rows = classifier_curves(s, dataset, out)
    write_table(out, "gradual_classifier", "Classifier test error against labelled-set size",
                header, classifier_table(classifier_rows), classifier_rows)
    plot_curves({arm: ([r["size"] / 1000 for r in classifier_rows],
                       [100 * r[f"{key}_test_error"] for r in classifier_rows])
                 for key, arm in zip(("stacked", "gradual"), ARMS.values())},
                out / "gradual_classifier.png", "labelled training examples (thousands)",
                "test error (%)", title="Classifiers started from each auto-encoder", log_y=True)
    print(classifier_table(classifier_rows), flush=True)
    print(f"files in {out}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)

    def action():
        settings = settings_from_args(args)
        out = args.out or Path("runs") / RunDir.default_name("gradual")
        run(settings, out, " ".join(["python -m sda.experiments.gradual", *argv]))

    return exit_status(action)


if __name__ == "__main__":
    sys.exit(main())
