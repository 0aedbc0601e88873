"""``python -m sda.run``: pre-train an SdA, fine-tune it, and keep the results.

Every hyper-parameter is a flag; ``--preset`` picks a starting point
(``default``, ``tutorial`` or ``demo``) whose values any flag overrides.
Results go to a run folder: ``config.json``, ``metrics.csv``, ``model.npz``,
``summary.json``, ``steps.csv``, ``filters.png``, ``reconstructions.png`` and
``checkpoint.npz``, from which ``--resume RUN_DIR``
continues a run that was stopped.
"""

import argparse
import dataclasses
import resource
import sys
from pathlib import Path

import numpy as np

from sda import BACKEND, SdA
from sda.checkpoint import Checkpoint, Progress
from sda.cli import exit_status
from sda.config import PRESETS, RunConfig, preset
from sda.data import DATASETS, load_dataset, shared_dataset
from sda.optimize import finetune_batch
from sda.pictures import save_run_pictures
from sda.rundir import RunDir
from sda.SdA import n_batches
from sda.train import EarlyStopping, finetune_sgd, pretrain

HELP = {
    "dataset": f"which data set: {', '.join(DATASETS)}",
    "data": "a data file or the folder holding it (default: $SDA_DATA, then the cache folder)",
    "n_train": "use only the first N training rows",
    "n_valid": "use only the first N validation rows",
    "n_test": "use only the first N test rows",
    "hidden_layers": "hidden layer sizes, bottom first",
    "corruption_levels": "masking-noise level of each layer's dA",
    "tied": "decoder weights are the transposed encoder weights",
    "loss": "reconstruction loss: cross_entropy or squared",
    "momentum": "SGD momentum in both phases (0: plain SGD)",
    "weight_decay": "L2 penalty on the weight matrices in both phases",
    "pretrain_epochs": "passes over the training set per layer",
    "pretrain_lr": "pre-training learning rate",
    "pretrain_batch_size": "pre-training minibatch size",
    "cached": "train layer k on the stored output of the layers below (fast path)",
    "finetune": "fine-tuning optimiser: sgd, cg (scipy fmin_cg) or lbfgs (L-BFGS-B)",
    "batch_patience": "cg/lbfgs: stop after this many iterations without a better validation error",
    "finetune_lr": "fine-tuning learning rate (sgd)",
    "finetune_batch_size": "fine-tuning minibatch size",
    "finetune_epochs": "most fine-tuning epochs (cg/lbfgs: iterations); early stopping usually "
                       "ends sooner",
    "patience": "early stopping: look at least this many minibatches",
    "patience_increase": "early stopping: multiply patience by this on a real improvement",
    "improvement_threshold": "early stopping: relative improvement that counts as real",
    "eval_batch_size": "rows per validation/test call (speed only)",
    "seed": "seed of every random draw",
    "checkpoint_every": "save the training state every N minibatch steps (0: at phase ends only)",
    "log_every": "write every N-th minibatch cost to steps.csv (0: never)",
    "out": "folder that holds the run folders",
    "name": "run folder name (default: date, time and preset)",
    "progress": "show progress bars",
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m sda.run", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default",
                        help="starting values; flags override them")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its last checkpoint, with the "
                             "settings in its config.json (no other flags)")
    defaults = RunConfig()
    for f in dataclasses.fields(RunConfig):
        if f.name == "preset":
            continue
        flag, default = "--" + f.name.replace("_", "-"), getattr(defaults, f.name)
        help_text = HELP[f.name] + (f" (default preset: {default})" if default is not None else "")
        kwargs = dict(dest=f.name, default=None, help=help_text)
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, tuple):
            kwargs.update(nargs="+", type=type(default[0]))
        elif f.name in ("n_train", "n_valid", "n_test"):
            kwargs["type"] = int
        elif default is not None:
            kwargs["type"] = type(default)
        parser.add_argument(flag, **kwargs)
    return parser


def parse(argv=None):
    """``(config, resume_dir)`` from the command line."""
    args = vars(build_parser().parse_args(argv))
    name, resume_dir = args.pop("preset"), args.pop("resume")
    overrides = {k: (tuple(v) if isinstance(v, list) else v) for k, v in args.items() if v is not None}
    if resume_dir is None:
        return preset(name, **overrides).check(), None
    if overrides:
        raise ValueError(f"--resume takes no other settings (got {sorted(overrides)}): the run "
                         "continues with the config.json in its folder")
    if not (Path(resume_dir) / "checkpoint.npz").exists():
        raise ValueError(f"cannot resume {resume_dir}: it holds no checkpoint.npz; give the "
                         "folder of a run started by python -m sda.run")
    return RunConfig.from_json((Path(resume_dir) / "config.json").read_text()).check(), resume_dir


class Reporter:
    """Prints one line per epoch and appends it to ``metrics.csv``."""

    def __init__(self, run_dir, rows=0, step_every=0):
        self.run_dir, self.rows, self.step_every = run_dir, rows, step_every

    def step(self, record):
        """Keep every ``step_every``-th minibatch cost in ``steps.csv``."""
        if self.step_every and record["step"] % self.step_every == 0:
            self.run_dir.append_step(record)

    def __call__(self, record):
        self.run_dir.append_metrics(record)
        self.rows += 1
        if record["phase"] == "pretrain":
            print(f"pre-train layer {record['layer']} epoch {record['epoch']:3d}  "
                  f"cost {record['cost']:9.4f}  {record['seconds']:7.1f}s", flush=True)
        else:
            print(f"fine-tune epoch {record['epoch']:4d}  cost {record['cost']:.4f}  "
                  f"valid {100 * record['valid_error']:5.2f}%  "
                  f"best {100 * record['best_valid_error']:5.2f}%  "
                  f"test@best {100 * record['test_error']:5.2f}%  {record['seconds']:7.1f}s",
                  flush=True)


def peak_memory_mib():
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def build_model(config, dataset):
    return SdA(np.random.RandomState(config.seed), n_ins=dataset.n_features,
               hidden_layers_sizes=config.hidden_layers, n_outs=dataset.n_classes,
               corruption_levels=config.corruption_levels, tied=config.tied, loss=config.loss)


def finetune(model, shared, config, report, progress, checkpoint):
    """Fine-tune with the optimiser ``config.finetune`` names."""
    if config.finetune != "sgd":
        # A batch run is short and is not checkpointed part-way: a resumed
        # run starts it again from the pre-trained weights.
        result = finetune_batch(model, shared, config.finetune, config.finetune_epochs,
                                patience=config.batch_patience, on_iteration=report)
        progress.seconds["finetune"] = result.seconds
        progress.phase = "done"
        checkpoint.save(progress)
        return result
    train_fn, valid_score, test_score = model.build_finetune_functions(
        shared, config.finetune_batch_size, config.finetune_lr, config.eval_batch_size,
        config.momentum, config.weight_decay)
    return finetune_sgd(
        model, train_fn, valid_score, test_score,
        n_batches(len(shared[0][1].get_value(borrow=True)), config.finetune_batch_size),
        config.finetune_epochs,
        EarlyStopping(config.patience, config.patience_increase, config.improvement_threshold),
        on_epoch=report, on_step=report.step, show_progress=config.progress, progress=progress,
        checkpoint=checkpoint)


def run(config, resume_dir=None):
    """Train as ``config`` says, or continue the run in ``resume_dir``;
    return the summary dict (also written to the run folder)."""
    dataset = load_dataset(config.dataset, config.data).subset(config.n_train, config.n_valid,
                                                              config.n_test)
    if resume_dir:
        run_dir = RunDir(resume_dir)
    else:
        run_dir = RunDir.create(config.out, config.name or RunDir.default_name(config.preset))
        run_dir.write_json("config.json", dataclasses.asdict(config))
    print(f"sda: {BACKEND}\ndata: {dataset.name}, train/valid/test = "
          f"{len(dataset.train.y)}/{len(dataset.valid.y)}/{len(dataset.test.y)}\n"
          f"run folder: {run_dir.path}", flush=True)

    model = build_model(config, dataset)
    checkpoint = Checkpoint(run_dir.path / "checkpoint.npz", model, config.checkpoint_every)
    progress = Progress()
    if resume_dir:
        progress = checkpoint.load()
        run_dir.rewind(progress.metrics_rows, progress.steps)
        print(f"resuming: {progress.phase}, layer {progress.layer}, epoch {progress.epoch}, "
              f"batch {progress.batch}", flush=True)
    report = Reporter(run_dir, progress.metrics_rows, config.log_every)
    checkpoint.on_save = lambda p: setattr(p, "metrics_rows", report.rows)
    shared = [shared_dataset(s) for s in (dataset.train, dataset.valid, dataset.test)]

    history = pretrain(model, shared[0][0], config.pretrain_batch_size, config.pretrain_epochs,
                       config.pretrain_lr, cached=config.cached, momentum=config.momentum,
                       weight_decay=config.weight_decay, on_epoch=report, on_step=report.step,
                       show_progress=config.progress, progress=progress, checkpoint=checkpoint)
    result = finetune(model, shared, config, report, progress, checkpoint)

    run_dir.save_model(model)
    print(save_run_pictures(model, dataset, run_dir.path, config.corruption_levels[0], config.seed),
          flush=True)
    seconds = progress.seconds
    summary = {
        "best_valid_error": result.best_valid_error, "test_error": result.test_error,
        "best_epoch": result.best_epoch, "finetune_epochs_run": result.epochs_run,
        "pretrain_final_costs": [costs[-1] for costs in history if costs],
        "seconds": {**seconds, "total": seconds["pretrain"] + seconds["finetune"]},
        "backend": BACKEND,
        "peak_memory_mib": peak_memory_mib(),
    }
    run_dir.write_json("summary.json", summary)
    print(f"best validation error {100 * result.best_valid_error:.2f}% (epoch {result.best_epoch}), "
          f"test error {100 * result.test_error:.2f}%; pre-training {seconds['pretrain'] / 60:.1f} min, "
          f"fine-tuning {seconds['finetune'] / 60:.1f} min; files in {run_dir.path}")
    return summary


def main(argv=None):
    return exit_status(lambda: run(*parse(argv)))


if __name__ == "__main__":
    sys.exit(main())
