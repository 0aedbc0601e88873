"""``python -m sda.compare``: SGD, conjugate gradient and L-BFGS fine-tuning side by side.

An SdA is pre-trained once and its weights saved; before each optimiser they
are loaded again, so all start from the same point. Each optimiser may use
the same number of passes over the training set (``--budget-passes``): an
SGD epoch is one pass, and so is each evaluation of the cost and gradient
over the whole training set by CG or L-BFGS. Validation is not counted in
passes, but its time is in the wall times.

Writes ``comparison.csv``, ``comparison.json`` (with every per-epoch or
per-iteration record), ``comparison.md``, ``valid_error_vs_time.png``,
``valid_error_vs_passes.png`` and the pre-trained ``pretrained.npz``.
"""

import argparse
import csv
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from sda import BACKEND, SdA
from sda.cli import exit_status
from sda.config import preset
from sda.data import DATASETS, load_dataset, shared_dataset
from sda.optimize import DEFAULT_CHUNK_ROWS, METHODS, finetune_autoencoder, finetune_batch
from sda.plots import plot_curves
from sda.rundir import RunDir, load_params, save_params
from sda.SdA import n_batches
from sda.train import EarlyStopping, finetune_sgd, pretrain

OPTIMISERS = ("sgd", *METHODS)
LABELS = {"sgd": "SGD", "cg": "CG", "lbfgs": "L-BFGS"}
# RunConfig fields of `python -m sda.run` that this command replaces or ignores
UNUSED_RUN_SETTINGS = ("finetune_epochs", "patience", "patience_increase", "improvement_threshold",
                         "out", "name", "preset", "progress")
COLUMNS = ["method", "best_valid_error", "test_error", "seconds", "passes", "iterations",
           "fun_evals", "grad_evals", "stop_reason"]


def build_parser():
    defaults = preset("default")
    parser = argparse.ArgumentParser(
        prog="python -m sda.compare", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--dataset", choices=DATASETS, default=defaults.dataset, help="which data set")
    add("--data", help="a data file or the folder holding it (default: $SDA_DATA, then the cache)")
    add("--n-train", type=int, help="use only the first N training rows")
    add("--n-valid", type=int, help="use only the first N validation rows")
    add("--n-test", type=int, help="use only the first N test rows")
    add("--hidden-layers", type=int, nargs="+", default=list(defaults.hidden_layers),
        help="hidden layer sizes, bottom first")
    add("--corruption-levels", type=float, nargs="+",
        help="masking noise of each layer's dA (default: the preset's first levels)")
    add("--pretrain-epochs", type=int, default=defaults.pretrain_epochs,
        help="pre-training passes per layer")
    add("--finetune-lr", type=float, default=defaults.finetune_lr, help="SGD learning rate")
    add("--seed", type=int, default=defaults.seed, help="seed of every random draw")
    add("--pretrained", help="skip pre-training: start from these saved weights, e.g. the "
                             "pretrained.npz of an earlier comparison with the same layers")
    add("--budget-passes", type=int, default=30,
        help="passes over the training set each optimiser may use")
    add("--patience", type=int,
        help="CG/L-BFGS: also stop after this many iterations without a better validation "
             "error (default: spend the whole budget)")
    add("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS,
        help="rows per compiled call of CG/L-BFGS and their scorers (speed and memory only)")
    add("--methods", nargs="+", choices=OPTIMISERS, default=list(OPTIMISERS),
        help="which optimisers to run")
    add("--autoencoder", action="store_true",
        help="also fine-tune the unrolled deep auto-encoder with CG and report its "
             "validation reconstruction error before and after")
    add("--out", help="output folder (default: runs/compare-DATE-TIME)")
    return parser


def check_args(args):
    """The run's ``RunConfig``; ValueError naming the flag for nonsense values."""
    for flag in ("budget_passes", "patience", "chunk_rows"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be a positive integer, got {value}")
    if args.pretrained and not Path(args.pretrained).is_file():
        raise ValueError(f"--pretrained {args.pretrained}: no such file; pass the pretrained.npz "
                         "of an earlier comparison, or leave the flag out to pre-train")
    layers = tuple(args.hidden_layers)
    levels = preset("default").corruption_levels[: len(layers)]
    return preset(
        "default", dataset=args.dataset, data=args.data, n_train=args.n_train,
        n_valid=args.n_valid, n_test=args.n_test, hidden_layers=layers,
        corruption_levels=tuple(args.corruption_levels or levels),
        pretrain_epochs=args.pretrain_epochs, finetune_lr=args.finetune_lr, seed=args.seed,
    ).check()


def print_record(label, record, count, percent=True):
    valid = f"{100 * record['valid_error']:6.2f}%" if percent else f"{record['valid_error']:.3f}"
    print(f"{label:7s} {count:5d}  passes {record['passes']:6.1f}  cost {record['cost']:.4f}  "
          f"valid {valid}  {record['seconds']:8.1f}s", flush=True)


def run_sgd(model, shared, config, budget):
    """SGD for ``budget`` epochs (early stopping cannot end it sooner)."""
    count = n_batches(shared[0][1].get_value(borrow=True).shape[0], config.finetune_batch_size)
    train_fn, valid_score, test_score = model.build_finetune_functions(
        shared, config.finetune_batch_size, config.finetune_lr, config.eval_batch_size,
        config.momentum, config.weight_decay)
    history = []

    def on_epoch(record):
        record["passes"] = record["epoch"]
        history.append(record)
        print_record("SGD", record, record["epoch"])

    result = finetune_sgd(model, train_fn, valid_score, test_score, count, max_epochs=budget,
                          stopping=EarlyStopping(patience=budget * count), on_epoch=on_epoch)
    row = dict(method="sgd", best_valid_error=result.best_valid_error, test_error=result.test_error,
               seconds=history[-1]["seconds"], passes=result.iterations / count,
               iterations=result.iterations, stop_reason="budget")
    return row, history


def run_batch(model, shared, method, budget, args):
    """CG or L-BFGS until the pass budget (or ``--patience``) runs out."""
    result = finetune_batch(
        model, shared, method, max_iterations=budget, max_passes=budget, patience=args.patience,
        chunk_rows=args.chunk_rows,
        on_iteration=lambda record: print_record(LABELS[method], record, record["iteration"]),
    )
    row = {name: getattr(result, name) for name in COLUMNS}
    return row, result.history


def run_autoencoder(model, shared, budget, args):
    result = finetune_autoencoder(
        model, shared[0][0], shared[1][0], "cg", max_iterations=budget, max_passes=budget,
        patience=args.patience, chunk_rows=args.chunk_rows,
        on_iteration=lambda record: print_record("AE-CG", record, record["iteration"], False),
    )
    return {name: value for name, value in dataclasses.asdict(result).items() if name != "history"}


def markdown_table(rows):
    lines = ["| optimiser | best valid error | test error | wall time | passes | iterations "
             "| f / grad evals | stopped by |", "|" + " --- |" * 8]
    for row in rows:
        evals = "" if row.get("fun_evals") is None else f"{row['fun_evals']} / {row['grad_evals']}"
        lines.append(
            f"| {LABELS[row['method']]} | {100 * row['best_valid_error']:.2f} % "
            f"| {100 * row['test_error']:.2f} % | {row['seconds']:.1f} s | {row['passes']:g} "
            f"| {row['iterations']} | {evals} | {row['stop_reason']} |")
    return "\n".join(lines)


def write_outputs(out, settings, rows, histories, autoencoder):
    with open(out.path / "comparison.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    out.write_json("comparison.json", {"settings": settings, "results": rows,
                                       "histories": histories, "autoencoder": autoencoder})
    sizes = settings["rows"]
    start = settings["pretrained"] or f"{settings['pretrain_epochs']} epochs per layer"
    text = [
        "# Fine-tuning comparison", "",
        f"Command: `{settings['command']}`  ",
        f"Data: {settings['dataset']}, train/valid/test = {sizes[0]}/{sizes[1]}/{sizes[2]}; "
        f"hidden layers {', '.join(map(str, settings['hidden_layers']))}; "
        f"pre-training: {start}; "
        f"budget: {settings['budget_passes']} passes over the training set.  ",
        f"Backend: {settings['backend']}", "", markdown_table(rows), "",
        "Passes: an SGD epoch, or one cost-and-gradient evaluation over the whole training "
        "set. Validation is not counted in passes but is included in the wall time.",
    ]
    if autoencoder:
        text += ["", "## Deep auto-encoder (CG)", "",
                 f"Validation reconstruction error (mean cross-entropy per example): "
                 f"{autoencoder['valid_error_before']:.3f} before, "
                 f"{autoencoder['valid_error_after']:.3f} after {autoencoder['iterations']} "
                 f"iterations ({autoencoder['passes']} passes, {autoencoder['seconds']:.1f} s)."]
    (out.path / "comparison.md").write_text("\n".join(text) + "\n")
    for x_key, x_label, filename in [("seconds", "wall time (s)", "valid_error_vs_time.png"),
                                     ("passes", "passes over the training set",
                                      "valid_error_vs_passes.png")]:
        curves = {LABELS[method]: ([r[x_key] for r in history],
                                   [100 * r["valid_error"] for r in history])
                  for method, history in histories.items()}
        plot_curves(curves, out.path / filename, x_label, "validation error (%)",
                    title="Fine-tuning from the same pre-trained weights", log_y=True)


def compare(args, command):
    config = check_args(args)
    dataset = load_dataset(config.dataset, config.data).subset(config.n_train, config.n_valid,
                                                              config.n_test)
    out = RunDir(args.out or Path("runs") / RunDir.default_name("compare"))
    shared = [shared_dataset(s) for s in (dataset.train, dataset.valid, dataset.test)]
    rows_per_split = [len(s.y) for s in (dataset.train, dataset.valid, dataset.test)]
    print(f"sda: {BACKEND}\ndata: {dataset.name}, train/valid/test = "
          f"{'/'.join(map(str, rows_per_split))}\noutput folder: {out.path}", flush=True)

    model = SdA(np.random.RandomState(config.seed), n_ins=dataset.n_features,
                hidden_layers_sizes=config.hidden_layers, n_outs=dataset.n_classes,
                corruption_levels=config.corruption_levels, tied=config.tied, loss=config.loss)
    if args.pretrained:
        load_params(model, args.pretrained)
    else:
        start = time.perf_counter()
        pretrain(model, shared[0][0], config.pretrain_batch_size, config.pretrain_epochs,
                 config.pretrain_lr, cached=config.cached, momentum=config.momentum,
                 weight_decay=config.weight_decay)
        print(f"pre-training took {time.perf_counter() - start:.1f}s", flush=True)
    pretrained = out.path / "pretrained.npz"
    save_params(model, pretrained)

    rows, histories = [], {}
    for method in args.methods:
        load_params(model, pretrained)
        if method == "sgd":
            row, history = run_sgd(model, shared, config, args.budget_passes)
        else:
            row, history = run_batch(model, shared, method, args.budget_passes, args)
        rows.append(row)
        histories[method] = history
    autoencoder = None
    if args.autoencoder:
        load_params(model, pretrained)
        autoencoder = run_autoencoder(model, shared, args.budget_passes, args)

    settings = {name: value for name, value in dataclasses.asdict(config).items()
                if name not in UNUSED_RUN_SETTINGS}
    settings.update(vars(args), out=str(out.path), rows=rows_per_split, backend=BACKEND,
                    command=command)
    write_outputs(out, settings, rows, histories, autoencoder)
    print(markdown_table(rows), f"\nfiles in {out.path}", sep="\n")
    return rows


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python -m sda.compare", *argv])
    return exit_status(lambda: compare(build_parser().parse_args(argv), command))


if __name__ == "__main__":
    sys.exit(main())
