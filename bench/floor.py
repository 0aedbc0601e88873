"""How close sda's steps come to their matrix products alone, on every PyTensor backend.

    python -m bench.floor [--quick] [--rounds N] [--threads N] [--batch-sizes 1 20 100]
                          [--finetune-batch-sizes 20 100] [--data PATH] [--out PATH]

In one process, on the same MNIST training rows and thread count, the
backends taking turns in rounds as in ``bench.pretrain``: samples/s of one
dA pre-training step (784 -> 1000, tied, masking noise) and of one
fine-tuning step of the default network (784-1000-1000-1000-10), compiled
by PyTensor's C, Numba and JAX backends, beside the *floor*: the same
step's unavoidable sgemm calls alone, made through the MKL that sda's C
backend links, and beside the numpy and PyTorch references. Prints each
rate, the GFLOP/s it amounts to, its share of the floor's rate, and writes
JSON with every round's rates.
"""

import argparse
import json
import os
import sys
import warnings
from dataclasses import replace
from pathlib import Path

if not __package__:  # run as `python bench/floor.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.pretrain import THREAD_VARIABLES, parse_and_pin_threads, usable_cpus

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "floor.json"
# sda's graphs compiled by each of PyTensor's backends, by column: the C backend (sda's
# default) is the "sda" every ratio starts from
BACKENDS = {"sda": "c", "numba": "numba", "jax": "jax"}
CORRUPTION = 0.3  # the dA step's masking noise; the step's speed does not depend on it
# Warnings PyTensor's JAX backend gives for every sda graph; tests/test_jax.py says why they are expected.
JAX_WARNINGS = ("Explicitly requested dtype", "Skipping Assert", "The RandomType SharedVariables")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few hundred rows and short timings; a smoke test, not a measurement",
    )
    parser.add_argument(
        "--rounds", type=int, help="rounds of turns per batch size (default: 5, or 3 with --quick)"
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
        help="batch sizes of the pre-training step (default: 1 20 100)",
    )
    parser.add_argument(
        "--finetune-batch-sizes",
        type=int,
        nargs="+",
        default=[20, 100],
        help="batch sizes of the fine-tuning step (default: 20 100)",
    )
    parser.add_argument("--data", help="MNIST file or folder (default: $SDA_DATA, then sda's cache)")
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="where to write the JSON results (default: bench/results/floor.json)",
    )
    return parser


# ------------------------------------------------------------ the GEMMs
def gemm(what, m, n, k):
    """One matrix product ``C (m x n) = A (m x k) B (k x n)``: ``2 m n k`` flops."""
    return {"what": what, "m": m, "n": n, "k": k, "flops": 2 * m * n * k}


def pretrain_gemms(n_visible, n_hidden, batch_size):
    """The five products of one tied dA step; nothing cheaper computes its cost and gradient."""
    v, h, b = n_visible, n_hidden, batch_size
    return [
        gemm("encode: x~ W", b, h, v),
        gemm("decode: h W^T", b, v, h),
        gemm("back through W: d_a W", b, h, v),
        gemm("W -= lr x~^T d_h (encoder's gradient)", v, h, b),
        gemm("W -= lr d_a^T h (decoder's gradient)", v, h, b),
    ]


def finetune_gemms(layers, batch_size):
    """The products of one MLP step over ``layers`` (input, hidden..., classes): per layer,
    forward and the weight gradient; back through every weight matrix but the first's,
    as nothing needs the gradient of the input."""
    pairs = list(zip(layers[:-1], layers[1:]))
    b = batch_size
    return (
        [gemm(f"forward {i + 1}: a W{i + 1}", b, n_out, n_in) for i, (n_in, n_out) in enumerate(pairs)]
        + [
            gemm(f"back through W{i + 1}: delta W{i + 1}^T", b, n_in, n_out)
            for i, (n_in, n_out) in enumerate(pairs)
            if i > 0
        ]
        + [gemm(f"W{i + 1} -= lr a^T delta", n_in, n_out, b) for i, (n_in, n_out) in enumerate(pairs)]
    )


class GemmFloor:
    """``step(i)``: one step's products alone, in the order and layout the step needs them,
    through ``mkl`` (a ``bench.references.MklGemm``), on minibatch ``i`` of ``rows``.

    Every operand but the minibatch and the weights is a buffer filled once (the values do
    not change sgemm's speed); each weight update is GEMM's fused ``W -= lr A^T B`` on the
    weights themselves, its sign alternating from step to step so the weights stay put.
    """

    def __init__(self, mkl, weights, rows, batch_size, lr, tied):
        import numpy as np

        self.mkl, self.rows, self.batch_size, self.lr = mkl, rows, batch_size, float(lr)
        self.weights = [np.array(w, dtype=np.float32) for w in weights]
        self.count = len(rows) // batch_size
        rng = np.random.default_rng(0)
        sizes = [w.shape[0] for w in self.weights] + [self.weights[-1].shape[1]]
        # a sigmoid's range for activations; gradient-sized errors
        self.inputs = [rng.random((batch_size, n), dtype=np.float32) for n in sizes]
        self.errors = [rng.normal(0, 1e-3, (batch_size, n)).astype(np.float32) for n in sizes]
        self.outputs = [np.empty((batch_size, n), dtype=np.float32) for n in sizes]
        self.tied = tied

    def step(self, i):
        from sda.batching import batch_slice

        x = batch_slice(self.rows, i % self.count, self.batch_size)
        gemm, weights, lr = self.mkl.gemm, self.weights, self.lr
        self.lr = -lr  # the next step undoes this one's updates
        if self.tied:  # the dA: encode, decode, back through W, W's two gradients
            (W,), h, d_a = weights, self.inputs[1], self.errors[0]
            gemm(1.0, x, W, 0.0, self.outputs[1])
            gemm(1.0, h, W.T, 0.0, self.outputs[0])
            gemm(1.0, d_a, W, 0.0, self.outputs[1])
            gemm(-lr, x.T, self.errors[1], 1.0, W)
            gemm(-lr, d_a.T, h, 1.0, W)
            return
        activations = [x, *self.inputs[1:]]
        for depth, W in enumerate(weights):
            gemm(1.0, activations[depth], W, 0.0, self.outputs[depth + 1])
        for depth in range(len(weights) - 1, 0, -1):
            gemm(1.0, self.errors[depth + 1], weights[depth].T, 0.0, self.outputs[depth])
        for depth, W in enumerate(weights):
            gemm(-lr, activations[depth].T, self.errors[depth + 1], 1.0, W)


# ----------------------------------------------------------- measurements
def compile_backends(build):
    """``({column: step}, {column: why not}, {column: what it is})``: ``build()`` compiled
    under each of sda's backends (``sda.engine.use_mode``); the mode in force is kept.

    ``build`` must make a new model (and shared data) each time: a JAX function turns the
    values of its shared variables into JAX arrays, which the C and Numba backends cannot read.
    """
    import pytensor

    from sda import engine
    from sda.errors import SdAError

    steps, skipped, described = {}, {}, {}
    chosen = engine.BACKEND
    with pytensor.config.change_flags(mode=pytensor.config.mode), warnings.catch_warnings():
        for message in JAX_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        try:
            for column, mode in BACKENDS.items():
                try:
                    described[column] = engine.use_mode(mode)
                except SdAError as error:
                    skipped[column] = str(error)
                    continue
                steps[column] = build()
        finally:
            engine.BACKEND = chosen
    return steps, skipped, described


def measure(steps, batch_size, sizes, gemms):
    """One table row: ``bench.measure.rate_row`` of the turns, with the floor's products,
    each column's GFLOP/s of those products, and each column's rate over the floor's."""
    from bench.measure import rate_row, samples_per_second

    with warnings.catch_warnings():  # JAX warns again as it traces on its first calls
        for message in JAX_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        rounds = samples_per_second(steps, batch_size, sizes)
    row = rate_row(rounds, batch_size)
    flops = sum(g["flops"] for g in gemms)
    row["gemms"], row["flops_per_step"] = gemms, flops
    row["gflops"] = {
        name: rate / batch_size * flops / 1e9 for name, rate in row["samples_per_second"].items()
    }
    # rate_row's ratio of "sda" to "floor", with each column in sda's place
    shares = {
        name: rate_row({"sda": rates, "floor": rounds["floor"]}, batch_size)
        for name, rates in rounds.items()
        if name != "floor"
    }
    row["of_floor"] = {name: s["ratios"]["sda/floor"] for name, s in shares.items()}
    row["of_floor_ranges"] = {name: s["ratio_ranges"]["sda/floor"] for name, s in shares.items()}
    return row


def pretrain_floor(rows, batch_sizes, sizes, corruption, lr, seed, threads, mkl):
    """The dA step (as ``bench.measure.step_throughput`` times it) on every backend, its floor
    and the references, per batch size."""
    import pytensor

    from bench.measure import N_HIDDEN, N_VISIBLE, check_same_step, one_layer_model, references
    from sda.batching import batch_slice

    makers, skipped = references(corruption, lr, threads)
    check_same_step(rows, makers, corruption, lr, seed)
    start = [p.get_value() for p in one_layer_model(seed, corruption).dA_layers[0].params]
    table, backends = [], {}
    for batch_size in batch_sizes:
        count = len(rows) // batch_size  # whole batches only: every step is the same size
        compiled, skipped_backends, backends = compile_backends(
            lambda b=batch_size: one_layer_model(seed, corruption).pretraining_function(
                0, pytensor.shared(rows, borrow=True), b
            )
        )
        # The cost is read as a float, as a training loop does: a JAX step returns before it
        # has computed, and would otherwise be timed queueing steps, not taking them.
        steps = {
            name: lambda i, f=f, c=count: float(f(i % c, corruption, lr)) for name, f in compiled.items()
        }
        steps["floor"] = GemmFloor(mkl, start[:1], rows, batch_size, lr, tied=True).step
        for name, reference in {name: make(start) for name, make in makers.items()}.items():
            steps[name] = lambda i, r=reference, b=batch_size, c=count: r.step(batch_slice(rows, i % c, b))
        table.append(measure(steps, batch_size, sizes, pretrain_gemms(N_VISIBLE, N_HIDDEN, batch_size)))
    return {
        "rows": len(rows),
        "corruption": corruption,
        "learning_rate": lr,
        "batch_sizes": table,
        "skipped": {**skipped_backends, **skipped},
        "backends": backends,
    }


def finetune_floor(config, dataset, batch_sizes, sizes, threads, mkl):
    """The fine-tuning step (as ``bench.finetune.step_throughput`` times it) on every backend,
    its floor and the references, per batch size."""
    from bench.finetune import check_same_step, finetune_references, layer_sizes, network, sda_step
    from sda.batching import batch_slice

    x, y, lr = dataset.train.x, dataset.train.y, config.finetune_lr
    model = network(config, dataset)
    makers, skipped = finetune_references(lr, threads)
    check_same_step(model, x, y, makers, lr)
    start = [p.get_value() for p in model.params]
    table, backends = [], {}
    for batch_size in batch_sizes:
        count = len(y) // batch_size
        compiled, skipped_backends, backends = compile_backends(
            lambda b=batch_size: sda_step(network(config, dataset), x, y, b, lr)
        )
        steps = {name: lambda i, f=f, c=count: float(f(i % c)) for name, f in compiled.items()}  # see above
        steps["floor"] = GemmFloor(mkl, start[0::2], x, batch_size, lr, tied=False).step
        for name, reference in {name: make(start) for name, make in makers.items()}.items():
            steps[name] = lambda i, r=reference, b=batch_size, c=count: r.step(
                batch_slice(x, i % c, b), batch_slice(y, i % c, b)
            )
        table.append(measure(steps, batch_size, sizes, finetune_gemms(layer_sizes(model), batch_size)))
    return {
        "rows": len(y),
        "learning_rate": lr,
        "layers": layer_sizes(model),
        "batch_sizes": table,
        "skipped": {**skipped_backends, **skipped},
        "backends": backends,
    }


def floor_blas():
    """``(MklGemm, what threadpoolctl saw)``: the MKL whose ``cblas_sgemm`` the floor calls,
    checked to be the library sda's C backend links and loads; ``SystemExit`` if it is not."""
    import numpy as np
    import pytensor
    import pytensor.tensor as pt

    from bench.references import MklGemm, find_mkl
    from sda import engine

    path, ldflags = find_mkl(), pytensor.config.blas__ldflags
    if path is None or f"-l:{os.path.basename(path)}" not in ldflags:
        raise SystemExit(
            f"error: the floor calls MKL's cblas_sgemm, but sda's C backend links "
            f"{ldflags or 'no BLAS'!r}: pip install mkl, so that both use the same library"
        )
    # A product compiled by the C backend loads its BLAS; ask threadpoolctl which library that
    # is before the floor loads anything itself.
    matrix = pt.matrix("a", dtype="float32")
    with pytensor.config.change_flags(mode=engine.MODES["c"]):
        pytensor.function([matrix], pt.dot(matrix, matrix))(np.ones((2, 2), dtype=np.float32))
    loaded = loaded_library(path)
    if loaded is None:
        raise SystemExit(f"error: sda's C backend did not load {path}, so the floor would not use its BLAS")
    return MklGemm(path), loaded


def loaded_library(path):
    """threadpoolctl's description of the library at ``path`` if it is loaded, else None."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "loaded? not checked (pip install threadpoolctl)"
    for lib in threadpool_info():
        if os.path.realpath(lib["filepath"]) == os.path.realpath(path):
            return (
                f"{lib['internal_api']} {lib.get('version')}, threading layer "
                f"{lib.get('threading_layer', '?')}, threads {lib['num_threads']}"
            )
    return None


# ------------------------------------------------------------------ report
def span(ratio, low_high):
    return f"{ratio:.2f} ({low_high[0]:.2f}-{low_high[1]:.2f})"


def floor_table(step):
    """One line per batch size and column: samples/s, GFLOP/s of the floor's products, the
    rate over the floor's and sda's ratio to it, medians over rounds (lowest-highest)."""
    lines = [f"{'batch':>5}  {'column':<10} {'samples/s':>10} {'GFLOP/s':>8}  {'of floor':<18}  sda/column"]
    for row in step["batch_sizes"]:
        for name, rate in row["samples_per_second"].items():
            share = span(row["of_floor"][name], row["of_floor_ranges"][name]) if name != "floor" else "1"
            ratio = (
                ""
                if name == "sda"
                else span(row["ratios"][f"sda/{name}"], row["ratio_ranges"][f"sda/{name}"])
            )
            lines.append(
                f"{row['batch_size']:>5}  {name:<10} {rate:>10.0f} {row['gflops'][name]:>8.2f}  "
                f"{share:<18}  {ratio}".rstrip()
            )
    lines += [f"  {name:<10} not measured: {why}" for name, why in step["skipped"].items()]
    return lines


def gemm_lines(step):
    row = step["batch_sizes"][0]
    return [f"  {g['what']}: {g['m']} x {g['k']} times {g['k']} x {g['n']}" for g in row["gemms"]]


def report(results, sizes):
    m, pre, tune = results["machine"], results["pretrain"], results["finetune"]
    floor = results["floor_blas"]
    lines = [
        f"machine   {m['cpu']}, {m['cores']} cores; threads per backend: {m['threads']}",
        "versions  " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        *[f"backend   {name}: {what}" for name, what in pre["backends"].items()],
        f"BLAS      floor: cblas_sgemm of {floor['version']} from {floor['path']} via ctypes: the library "
        f"sda's C backend links and loads (threadpoolctl: {floor['loaded']})",
        "BLAS      numba: Numba's np.dot, i.e. scipy's BLAS (scipy.linalg.cython_blas); "
        "jax: XLA's own kernels",
        *[f"BLAS      {name}: {what}" for name, what in m["blas"].items() if name not in ("loaded", "sda")],
        *[f"loaded    {lib}" for lib in m["blas"]["loaded"]],
        "",
        f"Rates: samples/s, median of {sizes.repeats} rounds of >= {sizes.min_seconds:g} s per column, the "
        "columns taking turns; ratios: median of the rounds' ratios (lowest-highest). GFLOP/s: the floor's "
        "products (2 m n k each) per second at that rate.",
        "",
        f"One dA pre-training step, 784 -> 1000, tied, masking noise {pre['corruption']}, "
        f"{pre['rows']} MNIST rows; floor: {len(pre['batch_sizes'][0]['gemms'])} sgemm calls per step",
        *gemm_lines(pre),
        *floor_table(pre),
        "",
        f"One fine-tuning step, {'-'.join(map(str, tune['layers']))}, {tune['rows']} MNIST rows; "
        f"floor: {len(tune['batch_sizes'][0]['gemms'])} sgemm calls per step",
        *gemm_lines(tune),
        *floor_table(tune),
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = build_parser()
    args = parse_and_pin_threads(parser, argv)
    if min(args.finetune_batch_sizes) < 1 or (args.rounds is not None and args.rounds < 1):
        parser.error("--finetune-batch-sizes and --rounds must be at least 1")
    # Imported only now: BLAS and OpenMP libraries read their thread count as they load.
    from bench.measure import FULL, QUICK, blas_in_use, machine, measured_subset
    from sda.config import preset

    sizes = QUICK if args.quick else FULL
    if args.rounds:
        sizes = replace(sizes, repeats=args.rounds)
    if max(args.batch_sizes + args.finetune_batch_sizes) > sizes.rows:
        parser.error(f"batch sizes must be at most the {sizes.rows} rows measured")
    config = preset("default")
    dataset = measured_subset(config, sizes, args.data)
    mkl, loaded = floor_blas()
    results = {"machine": machine(args.threads), "quick": args.quick, "rounds": sizes.repeats}
    results["pretrain"] = pretrain_floor(
        dataset.train.x,
        args.batch_sizes,
        sizes,
        CORRUPTION,
        config.pretrain_lr,
        config.seed,
        args.threads,
        mkl,
    )
    results["finetune"] = finetune_floor(config, dataset, args.finetune_batch_sizes, sizes, args.threads, mkl)
    results["machine"]["blas"] = blas_in_use()  # now that every library is loaded
    results["floor_blas"] = {"path": mkl.path, "version": mkl.version(), "loaded": loaded}
    print(report(results, sizes))
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
