"""The measurements behind ``python -m bench.pretrain``.

Imported only once the thread count is in the environment: numpy's OpenBLAS,
MKL and OpenMP read it when they load.
"""

import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np
import pytensor
import pytensor.tensor as pt

import sda
from bench.references import MklGemm, NumpyDA, NumpyGemm, TorchDA, find_mkl, torch, torch_blas
from sda.batching import batch_slice, n_batches
from sda.cli import build_model
from sda.data import DataError, load_dataset, shared_dataset
from sda.train import cache_layer_input, pretrain

N_VISIBLE, N_HIDDEN = 784, 1000  # the step measured: the first layer of the default stack


@dataclass(frozen=True)
class Sizes:
    rows: int  # at most this many rows of each split
    min_seconds: float  # each throughput figure runs at least this long...
    min_steps: int  # ...and at least this many steps
    repeats: int  # the figure reported is the median of this many
    warmup_steps: int
    # Idle time before each timed run: BLAS worker threads spin for up to
    # 200 ms after a call (MKL's KMP_BLOCKTIME) and would slow the next library.
    pause_seconds: float


FULL = Sizes(rows=50_000, min_seconds=2.0, min_steps=20, repeats=5, warmup_steps=5, pause_seconds=0.3)
QUICK = Sizes(rows=200, min_seconds=0.05, min_steps=2, repeats=3, warmup_steps=2, pause_seconds=0.0)


def one_layer_model(seed, corruption):
    return sda.SdA(np.random.RandomState(seed), N_VISIBLE, (N_HIDDEN,), 10, (corruption,))


# ------------------------------------------------------------- one dA step
def references(corruption, lr, threads):
    """``{name: make(params) -> reference}`` for every yardstick available,
    and ``{name: why}`` for those skipped."""
    made, skipped = {"numpy": lambda p: NumpyDA(p, corruption, lr, NumpyGemm())}, {}
    mkl_path = find_mkl()
    if mkl_path:
        mkl = MklGemm(mkl_path)
        made["numpy+MKL"] = lambda p: NumpyDA(p, corruption, lr, mkl)
    else:
        skipped["numpy+MKL"] = f"no libmkl_rt.so.* in {sys.prefix}/lib"
    if torch is not None:
        torch.set_num_threads(threads)
        made["torch"] = lambda p: TorchDA(p, corruption, lr)
    else:
        skipped["torch"] = "torch is not installed (pip install torch)"
    return made, skipped


def check_same_step(rows, makers, corruption, lr, seed, batch_size=20):
    """Assert that every reference takes sda's step: from the same parameters
    and mask, the same cost and the same updated parameters."""
    model = one_layer_model(seed, corruption)
    auto_encoder, source = model.dA_layers[0], pytensor.shared(rows[:batch_size])
    level = pt.scalar("corruption")
    cost, mask, _ = auto_encoder.corrupted_cost(level)
    # Without the generator's update this leaves its state alone, so the
    # step below draws this very mask.
    peek = pytensor.function([level], [cost, mask], givens={model.x: source})
    peek_cost, mask = peek(corruption)
    start = [p.get_value() for p in auto_encoder.params]
    sda_cost = model.pretraining_function(0, source, batch_size)(0, corruption, lr)
    np.testing.assert_allclose(sda_cost, peek_cost, rtol=1e-6, err_msg="sda drew another mask")
    updated = [p.get_value() for p in auto_encoder.params]
    for name, make in makers.items():
        reference = make(start)
        np.testing.assert_allclose(
            reference.step(rows[:batch_size], mask),
            sda_cost,
            rtol=1e-4,
            err_msg=f"{name} and sda compute different costs",
        )
        for got, want in zip(reference.params(), updated):
            np.testing.assert_allclose(
                got, want, rtol=1e-3, atol=1e-6, err_msg=f"{name} and sda update the parameters differently"
            )


def samples_per_second(steps, batch_size, sizes):
    """``{name: [samples/s of each round]}`` of each ``step(i)``; in every
    round the steps take turns, so a change in the machine's load hits every
    backend alike."""
    for step in steps.values():
        for i in range(sizes.warmup_steps):
            step(i)
    rates = {name: [] for name in steps}
    for _ in range(sizes.repeats):
        for name, step in steps.items():
            time.sleep(sizes.pause_seconds)
            count, start = 0, time.perf_counter()
            while count < sizes.min_steps or time.perf_counter() - start < sizes.min_seconds:
                step(count)
                count += 1
            rates[name].append(count * batch_size / (time.perf_counter() - start))
    return rates


def compare_rates(steps, batch_size, sizes):
    """One row of a step table (see ``rate_row``), measured."""
    return rate_row(samples_per_second(steps, batch_size, sizes), batch_size)


def rate_row(rounds, batch_size):
    """A step table's row from ``{name: [samples/s of each round]}``, sda among the names.

    Each backend's rate is its median over rounds. sda's ratio to another
    backend is the median over rounds of the ratio within one round, with
    its lowest and highest: both sides of a round's ratio ran under the same
    machine load, so the range shows how far one run can be trusted.

    >>> row = rate_row({"sda": [10.0, 20.0, 40.0], "torch": [10.0, 5.0, 40.0]}, 20)
    >>> row["ratios"], row["ratio_ranges"], row["samples_per_second"]
    ({'sda/torch': 1.0}, {'sda/torch': [1.0, 4.0]}, {'sda': 20.0, 'torch': 10.0})
    """
    per_round = {
        f"sda/{name}": [mine / theirs for mine, theirs in zip(rounds["sda"], rates)]
        for name, rates in rounds.items()
        if name != "sda"
    }
    return {
        "batch_size": batch_size,
        "samples_per_second": {name: statistics.median(r) for name, r in rounds.items()},
        "ratios": {name: statistics.median(r) for name, r in per_round.items()},
        "ratio_ranges": {name: [min(r), max(r)] for name, r in per_round.items()},
        "rounds": len(rounds["sda"]),
        "round_rates": rounds,
    }


def step_throughput(rows, batch_sizes, sizes, corruption, lr, seed, threads):
    """samples/s of one dA step in sda and in every reference, per batch size."""
    makers, skipped = references(corruption, lr, threads)
    check_same_step(rows, makers, corruption, lr, seed)
    model = one_layer_model(seed, corruption)
    start = [p.get_value() for p in model.dA_layers[0].params]
    source = pytensor.shared(rows, borrow=True)
    table = []
    for batch_size in batch_sizes:
        count = len(rows) // batch_size  # whole batches only: every step is the same size
        sda_step = model.pretraining_function(0, source, batch_size)
        steps = {"sda": lambda i, f=sda_step, c=count: f(i % c, corruption, lr)}
        for name, reference in {name: make(start) for name, make in makers.items()}.items():
            steps[name] = lambda i, r=reference, b=batch_size, c=count: r.step(batch_slice(rows, i % c, b))
        table.append(compare_rates(steps, batch_size, sizes))
    return {
        "rows": len(rows),
        "corruption": corruption,
        "learning_rate": lr,
        "batch_sizes": table,
        "skipped": skipped,
    }


# -------------------------------------------------- epochs of the full stack
def time_epoch(step, count, *args):
    step(0, *args)  # warm-up: the first call allocates the outputs
    start = time.perf_counter()
    for index in range(count):
        step(index, *args)
    return time.perf_counter() - start


def layer_epochs(config, dataset, train_x):
    """One pre-training epoch of each layer, cached and uncached, the way
    ``sda.train.pretrain`` runs it but with compilation left out; the cached
    figure includes computing the cache (encoder compilation included)."""
    model = build_model(config, dataset)
    batch_size, lr = config.pretrain_batch_size, config.pretrain_lr
    count = n_batches(len(dataset.train.y), batch_size)
    layers, cache_bytes = [], 0
    for layer, level in enumerate(model.corruption_levels):
        uncached = time_epoch(model.pretraining_function(layer, train_x, batch_size), count, level, lr)
        cache_seconds, cached = 0.0, uncached  # layer 1 reads the data itself: nothing to cache
        if layer > 0:
            start = time.perf_counter()
            cache = pytensor.shared(cache_layer_input(model, layer, train_x), borrow=True)
            cache_seconds = time.perf_counter() - start
            cache_bytes = max(cache_bytes, cache.get_value(borrow=True).nbytes)
            step = model.pretraining_function(layer, cache, batch_size, cached=True)
            cached = cache_seconds + time_epoch(step, count, level, lr)
        layers.append(
            {
                "layer": layer + 1,
                "uncached_seconds": uncached,
                "cached_seconds": cached,
                "cache_seconds": cache_seconds,
                "uncached/cached": uncached / cached,
            }
        )
    return {
        "hidden_layers": list(config.hidden_layers),
        "batch_size": batch_size,
        "rows": len(dataset.train.y),
        "layers": layers,
        "cache_bytes": cache_bytes,
    }


def full_pretraining(config, dataset, train_x):
    """Wall time of ``sda.run``'s pre-training phase: the same call, compilation included."""
    model = build_model(config, dataset)
    layer_seconds = {}
    start = time.perf_counter()
    pretrain(
        model,
        train_x,
        config.pretrain_batch_size,
        config.pretrain_epochs,
        config.pretrain_lr,
        cached=config.cached,
        on_epoch=lambda r: layer_seconds.update({r["layer"] + 1: r["seconds"]}),
    )
    return {
        "seconds": time.perf_counter() - start,
        "epochs": config.pretrain_epochs,
        "cached": config.cached,
        "layer_seconds": list(layer_seconds.values()),
    }


def finetune_epoch(config, dataset):
    """One fine-tuning epoch and one full validation pass, compilation left out."""
    model = build_model(config, dataset)
    shared = [shared_dataset(s) for s in (dataset.train, dataset.valid, dataset.test)]
    batch_size = config.finetune_rows()  # the preset may leave it to the optimiser's default
    train_fn, valid_score, _ = model.build_finetune_functions(
        shared, batch_size, config.finetune_lr, config.eval_batch_size
    )
    epoch = time_epoch(train_fn, n_batches(len(dataset.train.y), batch_size))
    start = time.perf_counter()
    valid_score()
    return {
        "batch_size": batch_size,
        "rows": len(dataset.train.y),
        "epoch_seconds": epoch,
        "valid_rows": len(dataset.valid.y),
        "eval_batch_size": config.eval_batch_size,
        "valid_seconds": time.perf_counter() - start,
    }


# ------------------------------------------------------------------ context
def cpu_model():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def peak_rss_bytes():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux counts kilobytes


def blas_in_use():
    """Which BLAS each backend calls; threadpoolctl (if installed) adds what is loaded."""
    numpy_blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    blas = {"numpy": f"{numpy_blas['name']} {numpy_blas.get('version', '')}".strip(), "sda": sda.BACKEND}
    mkl_path = find_mkl()
    if mkl_path:
        blas["numpy+MKL"] = MklGemm(mkl_path).version()
    if torch is not None:
        blas["torch"] = torch_blas()
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        blas["loaded"] = ["unknown (pip install threadpoolctl to list the loaded BLAS/OpenMP libraries)"]
    else:
        blas["loaded"] = [
            f"{os.path.basename(lib['filepath'])}: {lib['internal_api']} "
            f"{lib.get('version') or ''} (threads: {lib['num_threads']})".replace("  ", " ")
            for lib in threadpool_info()
        ]
    return blas


def machine(threads):
    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pytensor": pytensor.__version__,
        "sda": sda.__version__,
    }
    if torch is not None:
        versions["torch"] = torch.__version__
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads,
        "sda_backend": sda.BACKEND,
        "versions": versions,
    }


def measured_subset(config, sizes, data=None):
    """``config``'s data set (from ``data``, or looked up as usual), each split cut to ``sizes.rows``.

    A missing or damaged data set ends the benchmark with its one-line error.
    """
    try:
        whole = load_dataset(config.dataset, data)
    except DataError as error:
        raise SystemExit(f"error: {error}") from None
    splits = (whole.train, whole.valid, whole.test)
    return whole.subset(*(min(sizes.rows, len(split.y)) for split in splits))


def run(config, sizes, batch_sizes, threads, data=None, full=False):
    """Every measurement; returns the results as a JSON-ready dict."""
    dataset = measured_subset(config, sizes, data)
    train_x, _ = shared_dataset(dataset.train)
    results = {"machine": machine(threads), "quick": sizes == QUICK}
    results["step"] = step_throughput(
        dataset.train.x,
        batch_sizes,
        sizes,
        config.corruption_levels[0],
        config.pretrain_lr,
        config.seed,
        threads,
    )
    results["layer_epochs"] = layer_epochs(config, dataset, train_x)
    results["full_pretraining"] = full_pretraining(config, dataset, train_x) if full else None
    results["finetune"] = finetune_epoch(config, dataset)
    results["machine"]["blas"] = blas_in_use()  # now that every library is loaded
    results["memory"] = {
        "peak_rss_bytes": peak_rss_bytes(),
        "cache_bytes": results["layer_epochs"]["cache_bytes"],
    }
    return results
