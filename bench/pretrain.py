"""How fast sda pre-trains, against the same dA step in NumPy and PyTorch.

    python -m bench.pretrain [--quick] [--full] [--threads N] [--batch-sizes 1 20 100] [--out PATH]

In one process, on the same MNIST training rows and thread count: samples/s
of one dA step (784 -> 1000, float32) in sda, in hand-written numpy (numpy's
BLAS, and MKL's sgemm via ctypes) and in PyTorch; one pre-training epoch per
layer of the default 3x1000 stack, cached and uncached; optionally the
default preset's whole pre-training phase; one fine-tuning epoch and
validation pass; peak memory. Prints a plain-text table and writes JSON.
"""

import argparse
import json
import os
import sys
from pathlib import Path

if not __package__:  # run as `python bench/pretrain.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "pretrain.json"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def usable_cpus():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m bench.pretrain", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few hundred rows and short timings (under a minute); a smoke test, not a measurement",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="also time the default preset's whole pre-training phase "
        "(3 layers x 5 epochs: about 2.5 minutes on 2 cores)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=usable_cpus(),
        help="threads for every backend (sets "
        + ", ".join(THREAD_VARIABLES)
        + "; default: the usable CPUs, %(default)s)",
    )
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[1, 20, 100],
        help="batch sizes of the single-step comparison (default: 1 20 100)",
    )
    parser.add_argument("--data", help="MNIST file or folder (default: $SDA_DATA, then sda's cache)")
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="where to write the JSON results (default: bench/results/pretrain.json)",
    )
    return parser


# ------------------------------------------------------------------- table
def step_table(step):
    """Samples/s per backend, then sda's ratio to each: the median over rounds (lowest-highest)."""
    names = list(step["batch_sizes"][0]["samples_per_second"])
    ratios = list(step["batch_sizes"][0]["ratios"])
    lines = [" ".join([f"{'batch':>5}"] + [f"{n:>10}" for n in names] + [f"{r:>22}" for r in ratios])]
    for row in step["batch_sizes"]:
        rates = [f"{row['samples_per_second'][n]:>10.0f}" for n in names]
        spans = [
            f"{row['ratios'][r]:.2f} ({row['ratio_ranges'][r][0]:.2f}-{row['ratio_ranges'][r][1]:.2f})"
            for r in ratios
        ]
        lines.append(" ".join([f"{row['batch_size']:>5}"] + rates + [f"{span:>22}" for span in spans]))
    lines += [f"({name} skipped: {why})" for name, why in step["skipped"].items()]
    return lines


def layer_table(epochs):
    lines = [f"{'layer':>5} {'uncached s':>10} {'cached s':>10} {'cache s':>10} {'uncached/cached':>15}"]
    for row in epochs["layers"]:
        cache = f"{row['cache_seconds']:>10.2f}" if row["layer"] > 1 else f"{'-':>10}"
        lines.append(
            f"{row['layer']:>5} {row['uncached_seconds']:>10.2f} {row['cached_seconds']:>10.2f} "
            f"{cache} {row['uncached/cached']:>15.2f}"
        )
    return lines


def report(results, sizes):
    m, step, epochs, tune = results["machine"], results["step"], results["layer_epochs"], results["finetune"]
    lines = [
        f"machine   {m['cpu']}, {m['cores']} cores; threads per backend: {m['threads']}",
        "versions  " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        *[f"BLAS      {name}: {what}" for name, what in m["blas"].items() if name != "loaded"],
        *[f"loaded    {lib}" for lib in m["blas"]["loaded"]],
        "",
        f"One dA pre-training step, 784 -> 1000, float32, {step['rows']} MNIST rows: samples/s "
        f"(median of {sizes.repeats} rounds of >= {sizes.min_seconds:g} s each; ratios: median "
        "of the rounds' ratios, lowest-highest)",
        *step_table(step),
        "",
        f"One pre-training epoch per layer, {'x'.join(map(str, epochs['hidden_layers']))} stack, "
        f"{epochs['rows']} rows, batch {epochs['batch_size']} (cached includes computing the cache)",
        *layer_table(epochs),
        "",
    ]
    full = results["full_pretraining"]
    if full:
        per_layer = ", ".join(f"layer {i + 1} {s:.1f} s" for i, s in enumerate(full["layer_seconds"]))
        lines.append(
            f"Default pre-training ({len(full['layer_seconds'])} layers x {full['epochs']} epochs, "
            f"cached={full['cached']}, compilation included): {full['seconds']:.1f} s ({per_layer})"
        )
    else:
        lines.append("Default pre-training: not measured (pass --full)")
    lines += [
        f"Fine-tuning epoch ({tune['rows']} rows, batch {tune['batch_size']}): "
        f"{tune['epoch_seconds']:.2f} s; validation pass ({tune['valid_rows']} rows, "
        f"batch {tune['eval_batch_size']}): {tune['valid_seconds']:.2f} s",
        f"Memory: peak RSS {results['memory']['peak_rss_bytes'] / 2**20:.0f} MiB; "
        f"cached layer input {results['memory']['cache_bytes'] / 2**20:.0f} MiB",
    ]
    return "\n".join(lines)


def prepare_out(parser, path):
    """Refuse an ``--out`` the results could not be written to, before anything is measured,
    and make its folder."""
    if path.is_dir():
        parser.error(f"--out {path} is a folder: give the path of a JSON file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        parser.error(f"--out {path}: cannot make its folder ({error.strerror})")
    if not os.access(path.parent, os.W_OK):
        parser.error(f"--out {path}: its folder is not writable; choose another path")


def parse_and_pin_threads(parser, argv):
    """Parse ``argv`` and set every BLAS/OpenMP thread count to ``--threads``.

    Call it before importing numpy's BLAS users, which read the count as they load.
    """
    args = parser.parse_args(argv)
    if args.threads < 1 or min(args.batch_sizes) < 1:
        parser.error("--threads and --batch-sizes must be at least 1")
    prepare_out(parser, args.out)
    for name in THREAD_VARIABLES:
        os.environ[name] = str(args.threads)
    return args


def main(argv=None):
    parser = build_parser()
    args = parse_and_pin_threads(parser, argv)
    # Imported only now: BLAS and OpenMP libraries read their thread count as they load.
    from bench.measure import FULL, QUICK, run
    from sda.config import preset

    sizes = QUICK if args.quick else FULL
    if max(args.batch_sizes) > sizes.rows:
        parser.error(f"--batch-sizes must be at most the {sizes.rows} rows measured")
    results = run(preset("default"), sizes, args.batch_sizes, args.threads, args.data, args.full)
    print(report(results, sizes))
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
