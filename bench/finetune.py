"""How fast sda fine-tunes, against the same MLP step in NumPy and PyTorch.

    python -m bench.finetune [--quick] [--threads N] [--batch-sizes 20 100] [--profile] [--out PATH]

In one process, on the same MNIST training rows and thread count: samples/s
of one fine-tuning SGD step of the default network (784-1000-1000-1000-10,
sigmoid hidden layers, softmax, mean negative log-likelihood, float32) in
sda, in hand-written numpy (numpy's BLAS, and MKL's sgemm via ctypes) and in
PyTorch, the backends taking turns as in ``bench.pretrain``; then
``bench.pretrain``'s dA step the same way, so that one run gives both steps'
ratios. ``--profile``
adds PyTensor's per-Op profile of sda's fine-tuning and pre-training steps.
Prints a plain-text table and writes JSON.
"""

import argparse
import json
import sys
from pathlib import Path

if not __package__:  # run as `python bench/finetune.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.pretrain import THREAD_VARIABLES, parse_and_pin_threads, usable_cpus

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "finetune.json"
PROFILE_STEPS = 200  # steps per profiled function: enough for stable shares at B=20


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m bench.finetune", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few hundred rows and short timings; a smoke test, not a measurement",
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
        default=[20, 100],
        help="batch sizes to compare (default: 20 100)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile sda's fine-tuning and pre-training steps per Op (PyTensor's "
        "profiler; its bookkeeping slows the steps, so these runs are not timed)",
    )
    parser.add_argument("--data", help="MNIST file or folder (default: $SDA_DATA, then sda's cache)")
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="where to write the JSON results (default: bench/results/finetune.json)",
    )
    return parser


# ------------------------------------------------------------- measurements
def finetune_references(lr, threads):
    """``{name: make(params) -> reference}`` and ``{name: why}`` for those skipped."""
    from bench.references import MklGemm, NumpyGemm, NumpyMLP, TorchMLP, find_mkl, torch

    made, skipped = {"numpy": lambda p: NumpyMLP(p, lr, NumpyGemm())}, {}
    mkl_path = find_mkl()
    if mkl_path:
        mkl = MklGemm(mkl_path)
        made["numpy+MKL"] = lambda p: NumpyMLP(p, lr, mkl)
    else:
        skipped["numpy+MKL"] = f"no libmkl_rt.so.* in {sys.prefix}/lib"
    if torch is not None:
        torch.set_num_threads(threads)
        made["torch"] = lambda p: TorchMLP(p, lr)
    else:
        skipped["torch"] = "torch is not installed (pip install torch)"
    return made, skipped


def network(config, dataset, seed=0):
    """The default network as ``sda.run`` builds it, with a random softmax
    layer: its zero start would leave the hidden layers' gradients zero,
    and the step check would then check nothing below the top."""
    import numpy as np

    from sda.cli import build_model

    model = build_model(config, dataset)
    top = model.logLayer.W
    shape = top.get_value(borrow=True).shape
    top.set_value(np.random.default_rng(seed).normal(0, 0.1, shape).astype(np.float32))
    return model


def sda_step(model, x, y, batch_size, lr):
    """``step(i)``: sda's compiled fine-tuning step on minibatch ``i`` of ``(x, y)``."""
    from sda.data import Split, shared_dataset

    shared = shared_dataset(Split(x, y))
    train_fn, _, _ = model.build_finetune_functions([shared] * 3, batch_size, lr)
    return train_fn


def check_same_step(model, x, y, makers, lr, batch_size=20):
    """Assert that every reference takes sda's step: from the same parameters
    and minibatch, the same cost and the same updated parameters.

    float32 tolerances: the three matrix products per layer are summed in a
    different order by each BLAS (blocking, threads), which moves costs by a
    few ulps (rtol 1e-4 is about 800 float32 ulps) and the updated weights by
    far less than the step itself (atol 1e-5 against steps of about 1e-3).
    """
    import numpy as np

    start = [p.get_value() for p in model.params]
    sda_cost = float(sda_step(model, x[:batch_size], y[:batch_size], batch_size, lr)(0))
    updated = [p.get_value() for p in model.params]
    assert all((u != s).any() for u, s in zip(updated, start)), "a parameter did not move: nothing to compare"
    for param, value in zip(model.params, start):
        param.set_value(value)  # leave the model as it was
    for name, make in makers.items():
        reference = make(start)
        np.testing.assert_allclose(
            reference.step(x[:batch_size], y[:batch_size]),
            sda_cost,
            rtol=1e-4,
            err_msg=f"{name} and sda compute different costs",
        )
        for got, want in zip(reference.params(), updated):
            np.testing.assert_allclose(
                got, want, rtol=1e-3, atol=1e-5, err_msg=f"{name} and sda update the parameters differently"
            )
    return sda_cost


def step_throughput(model, x, y, batch_sizes, sizes, lr, threads):
    """samples/s of one fine-tuning step in sda and in every reference, per batch size."""
    from bench.measure import compare_rates
    from sda.batching import batch_slice

    makers, skipped = finetune_references(lr, threads)
    check_same_step(model, x, y, makers, lr)
    start = [p.get_value() for p in model.params]
    table = []
    for batch_size in batch_sizes:
        count = len(y) // batch_size  # whole batches only: every step is the same size
        for param, value in zip(model.params, start):
            param.set_value(value)
        train_fn = sda_step(model, x, y, batch_size, lr)
        steps = {"sda": lambda i, f=train_fn, c=count: f(i % c)}
        for name, reference in {name: make(start) for name, make in makers.items()}.items():
            steps[name] = lambda i, r=reference, b=batch_size, c=count: r.step(
                batch_slice(x, i % c, b), batch_slice(y, i % c, b)
            )
        table.append(compare_rates(steps, batch_size, sizes))
    return {
        "rows": len(y),
        "learning_rate": lr,
        "layers": layer_sizes(model),
        "batch_sizes": table,
        "skipped": skipped,
    }


def layer_sizes(model):
    return (
        [model.sigmoid_layers[0].W.get_value(borrow=True).shape[0]]
        + [layer.W.get_value(borrow=True).shape[1] for layer in model.sigmoid_layers]
        + [model.logLayer.W.get_value(borrow=True).shape[1]]
    )


# ----------------------------------------------------------------- profile
def op_profile(fn, call, steps, top=8):
    """Run ``call(i)`` ``steps`` times on a function compiled with
    ``profile=True``; return its slowest Ops and each Op class's share."""
    stats = getattr(fn, "function", fn).profile  # a compiled function, or sda.sgd.SGDStep holding one
    call(0)  # the first call allocates every output: leave it out
    stats.apply_time.clear()
    stats.apply_callcount.clear()
    stats.fct_call_time, stats.fct_callcount = 0.0, 0
    for i in range(steps):
        call(i)
    total = sum(stats.apply_time.values())
    by_class = {}
    for (_, node), seconds in stats.apply_time.items():
        name = type(node.op).__name__
        by_class[name] = by_class.get(name, 0.0) + seconds
    slowest = sorted(stats.apply_time.items(), key=lambda item: -item[1])[:top]
    return {
        "steps": steps,
        "ms_per_step": 1000 * stats.fct_call_time / max(stats.fct_callcount, 1),
        "ops_ms_per_step": 1000 * total / steps,
        "classes": {k: v / total for k, v in sorted(by_class.items(), key=lambda item: -item[1])},
        "slowest": [
            {
                "op": str(node.op)[:90],
                "share": seconds / total,
                "outputs": [getattr(o.type, "dtype", type(o.type).__name__) for o in node.outputs],
            }
            for (_, node), seconds in slowest
        ],
        "float64_ops": sorted(
            {
                str(node.op)[:60]
                for (_, node) in stats.apply_time
                if any(getattr(o.type, "dtype", "") == "float64" for o in node.outputs)
            }
        ),
    }


def profile_steps(config, dataset, batch_sizes, lr, steps):
    """PyTensor's per-Op profile of sda's fine-tuning step and of the first
    layer's pre-training step, at each batch size."""
    import pytensor

    from bench.measure import one_layer_model

    x, y = dataset.train.x, dataset.train.y
    profiles = []
    with pytensor.config.change_flags(profile=True):
        level, pre_lr = config.corruption_levels[0], config.pretrain_lr
        for batch_size in batch_sizes:
            count = len(y) // batch_size
            train_fn = sda_step(network(config, dataset), x, y, batch_size, lr)
            pre_fn = one_layer_model(config.seed, level).pretraining_function(
                0, pytensor.shared(x, borrow=True), batch_size
            )
            profiles.append(
                {
                    "batch_size": batch_size,
                    "finetune": op_profile(train_fn, lambda i, f=train_fn, c=count: f(i % c), steps),
                    "pretrain": op_profile(
                        pre_fn, lambda i, f=pre_fn, c=count: f(i % c, level, pre_lr), steps
                    ),
                }
            )
    return profiles


# ------------------------------------------------------------------ report
def profile_table(profiles):
    lines = []
    for row in profiles:
        for step in ("finetune", "pretrain"):
            p = row[step]
            lines.append(
                f"{step} step, batch {row['batch_size']}: {p['ms_per_step']:.2f} ms per call, "
                f"{p['ops_ms_per_step']:.2f} ms in Ops; by Op class: "
                + ", ".join(f"{k} {100 * v:.0f}%" for k, v in list(p["classes"].items())[:5])
            )
            lines += [
                f"  {100 * op['share']:5.1f}%  {op['op']}  -> {', '.join(op['outputs'])}"
                for op in p["slowest"]
            ]
            if p["float64_ops"]:
                lines.append(f"  float64 outputs: {', '.join(p['float64_ops'])}")
    return lines


def report(results, sizes):
    from bench.pretrain import step_table

    m, step = results["machine"], results["step"]
    lines = [
        f"machine   {m['cpu']}, {m['cores']} cores; threads per backend: {m['threads']}",
        "versions  " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        *[f"BLAS      {name}: {what}" for name, what in m["blas"].items() if name != "loaded"],
        "",
        f"One fine-tuning step, {'-'.join(map(str, step['layers']))}, float32, {step['rows']} MNIST rows: "
        f"samples/s (median of {sizes.repeats} rounds of >= {sizes.min_seconds:g} s each; ratios: median "
        "of the rounds' ratios, lowest-highest)",
        *step_table(step),
        "",
        "One dA pre-training step, 784 -> 1000 (as in bench.pretrain), same rows: samples/s",
        *step_table(results["pretrain_step"]),
    ]
    if results["profile"]:
        lines += ["", "Where sda's time goes (PyTensor profiler):", *profile_table(results["profile"])]
    return "\n".join(lines)


def main(argv=None):
    parser = build_parser()
    args = parse_and_pin_threads(parser, argv)
    # Imported only now: BLAS and OpenMP libraries read their thread count as they load.
    from bench.measure import FULL, QUICK, blas_in_use, machine, measured_subset
    from bench.measure import step_throughput as pretrain_throughput
    from sda.config import preset

    sizes = QUICK if args.quick else FULL
    if max(args.batch_sizes) > sizes.rows:
        parser.error(f"--batch-sizes must be at most the {sizes.rows} rows measured")
    config = preset("default")
    dataset = measured_subset(config, sizes, args.data)
    results = {"machine": machine(args.threads), "quick": sizes == QUICK}
    results["step"] = step_throughput(
        network(config, dataset),
        dataset.train.x,
        dataset.train.y,
        args.batch_sizes,
        sizes,
        config.finetune_lr,
        args.threads,
    )
    # The pre-training step again (bench.pretrain's measurement), so that one run under one
    # machine load gives both steps' ratios.
    results["pretrain_step"] = pretrain_throughput(
        dataset.train.x,
        args.batch_sizes,
        sizes,
        config.corruption_levels[0],
        config.pretrain_lr,
        config.seed,
        args.threads,
    )
    steps = 5 if args.quick else PROFILE_STEPS
    results["profile"] = (
        profile_steps(config, dataset, args.batch_sizes, config.finetune_lr, steps) if args.profile else None
    )
    results["machine"]["blas"] = blas_in_use()
    print(report(results, sizes))
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
