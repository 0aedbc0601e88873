"""``python -m sda.reproduce writers``: does mini-batch CG's validation/test gap come from the writers?

``sda.compare``'s mini-batch CG runs test 0.27-0.32 points above their own
validation error where SGD's do not (docs/finetuning.md). One explanation:
MNIST's validation rows are the last 10,000 of its training images, written
by the same people as the 50,000 rows trained on, while its test images come
from other writers; a model that learns its writers' hands would then look
better on validation than on test. This reproduction tests it: the default
comparison's ``sgd`` and ``cg-hs2006`` arms (``sda.compare``'s default
settings and network) are run three times from ONE pre-training:

- ``valid``: validation on the ordinary validation rows, test on the test rows;
- ``test-a``: validation on a seeded random half of the 10,000 test images
  (``sda.data.halve_test_rows``, ``--split-seed``), test on the other half;
- ``test-b``: the halves swapped.

Training stays the 50,000 rows. For each arm and each validation source the
report gives the validation error at the stopping point (the best validation
error within the budget), the test error there and the gap between them,
mean ± sd over the fine-tuning seeds. If the writers explain the gap, it
closes when validation and test come from the same pool of writers.

Each finished arm, seed and source is kept in ``runs/`` and skipped when the
command is run again; pre-training continues from its checkpoint; a run
stopped halfway starts again from the pre-trained weights (the comparison's
loop keeps no checkpoint of its own). Timed on 5,000 rows with one
pre-training epoch (2 shared cores under a load average of about 5, so
rough) and scaled to 50,000: pre-training about 160 s per epoch of the
three layers, so about 40 minutes for the default 15; SGD 33 to 75 s per
pass-equivalent, CG about 13 s; an evaluation (every 0.5 passes) about 5 s.
The 18 runs of 20 passes then take about 4 to 6 hours on 2 cores.

Outputs: ``writers.json`` and ``writers.md``, rewritten after every run.
"""

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sda.cli import apply_mode, build_model, claim_folder, load_data
from sda.compare import DEFAULTS as COMPARE_DEFAULTS
from sda.compare import CompareSettings, run_arm
from sda.config import CommandSettings, setting
from sda.constraints import VALID_SOURCES
from sda.data import rearrange, shared_dataset
from sda.experiments.hinton import mean_sd, percent_mean_sd, pretrain_seed
from sda.rundir import atomic_write, load_params, read_text

ARMS = ("sgd", "cg-hs2006")
# sda.compare's defaults: its fields' own, under the classic preset its flags start from
COMPARE_FIELDS = {**{f.name: f.default for f in dataclasses.fields(CompareSettings)}, **COMPARE_DEFAULTS}


@dataclass
class WritersSettings(CommandSettings):
    """The default comparison's sgd and cg-hs2006 arms, validated on the validation rows and on either
    random half of the test rows; the data flags (for a smaller trial) come from ``CommandSettings``."""

    hidden_layers: tuple[int, ...] = setting(COMPARE_FIELDS["hidden_layers"], metavar="SIZE")
    corruption_levels: tuple[float, ...] = setting(COMPARE_FIELDS["corruption_levels"], metavar="LEVEL")
    pretrain_epochs: int = setting(COMPARE_FIELDS["pretrain_epochs"])
    pretrain_lr: float = setting(COMPARE_FIELDS["pretrain_lr"])
    seed: int = setting(
        89677, "seed of the model's weights and its pre-training (the arms shuffle by --seeds)"
    )
    seeds: tuple[int, ...] = setting((1, 2, 3), "fine-tuning seeds of each arm and source", metavar="SEED")
    split_seed: int = setting(0, "seed of the random halving of the test rows")
    budget_passes: float = setting(20.0, "pass-equivalents each run may spend")
    cg_batch_size: int = setting(COMPARE_FIELDS["cg_batch_size"], "rows per batch m of the cg-hs2006 arm")
    out: str = setting("runs/reproduce-writers", "folder of this reproduction; run again to continue")

    def check(self) -> "WritersSettings":
        """Check every setting and the comparison they make as ``sda.compare`` does.

        Returns
        -------
        WritersSettings
            ``self``.

        Raises
        ------
        SettingError
            Naming the first setting that makes no sense.
        """
        super().check()
        self.compare_settings("valid")
        return self

    def compare_settings(self, valid_from: str) -> CompareSettings:
        """``sda.compare``'s default settings with these data, network, seeds and validation source.

        Parameters
        ----------
        valid_from : {"valid", "test-a", "test-b"}
            Where the validation rows come from.

        Returns
        -------
        CompareSettings
            Checked.
        """
        mine = {name: getattr(self, name) for name in (*CommandSettings.__dataclass_fields__, "seeds")}
        network = ("hidden_layers", "corruption_levels", "pretrain_epochs", "pretrain_lr", "seed")
        values = {
            **COMPARE_DEFAULTS,
            **mine,
            **{name: getattr(self, name) for name in network},
            "arms": ARMS,
            "budget_passes": self.budget_passes,
            "cg_batch_size": self.cg_batch_size,
            "valid_from": valid_from,
            "split_seed": self.split_seed,
        }
        return CompareSettings(**values).check()


def run_file(out: Path, source: str, arm: str, seed: int) -> Path:
    """Where one finished run's row and records are kept.

    Parameters
    ----------
    out : Path
        The reproduction's folder.
    source : str
        The validation source.
    arm : str
        The arm.
    seed : int
        The fine-tuning seed.

    Returns
    -------
    Path
    """
    return out / "runs" / f"{source}-{arm}-seed{seed}.json"


def write_reports(settings: WritersSettings, command: str, out: Path) -> dict[str, Any]:
    """Write ``writers.json`` and ``writers.md`` from the runs finished so far.

    Parameters
    ----------
    settings : WritersSettings
        The reproduction's settings.
    command : str
        The command line, recorded.
    out : Path
        The reproduction's folder.

    Returns
    -------
    dict
        The report written as ``writers.json``: per arm and source, each
        seed's validation error at the stopping point, the test error there
        and their gap, with means and sds, and the seeds still missing.
    """
    table: dict[str, Any] = {}
    for arm in ARMS:
        for source in VALID_SOURCES:
            seeds, missing = {}, []
            for seed in settings.seeds:
                path = run_file(out, source, arm, seed)
                if not path.is_file():
                    missing.append(seed)
                    continue
                row = json.loads(read_text(path))["row"]
                valid, test = row["best_valid_error"], row["test_error"]
                seeds[str(seed)] = {"valid_error": valid, "test_error": test, "gap": test - valid}
            entry: dict[str, Any] = {"seeds": seeds, "missing_seeds": missing}
            for name in ("valid_error", "test_error", "gap"):
                entry[name], entry[f"{name}_sd"] = mean_sd([s[name] for s in seeds.values()])
            table[f"{arm} / {source}"] = entry
    result = {"command": command, "split_seed": settings.split_seed, "runs": table}
    atomic_write(out / "writers.json", lambda f: f.write(json.dumps(result, indent=2).encode()))

    lines = [
        f"Command: `{command}`",
        "",
        "Validation error at the stopping point, the test error there and the gap (test - validation), "
        "in %, mean ± sd over seeds; valid: MNIST's validation rows; test-a, test-b: a random half of "
        f"the test rows (split seed {settings.split_seed}), tested on the other half.",
        "",
        "| arm / validation | validation | test | gap | gap per seed | missing seeds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, entry in table.items():
        gaps = ", ".join(f"{s}: {100 * v['gap']:+.2f}" for s, v in entry["seeds"].items()) or "-"
        lines.append(
            f"| {name} | {percent_mean_sd(entry['valid_error'], entry['valid_error_sd'])} | "
            f"{percent_mean_sd(entry['test_error'], entry['test_error_sd'])} | "
            f"{percent_mean_sd(entry['gap'], entry['gap_sd'])} | "
            f"{gaps} | {' '.join(map(str, entry['missing_seeds'])) or '-'} |"
        )
    (out / "writers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[4:]), flush=True)
    return result


def reproduce_writers(settings: WritersSettings, command: str) -> dict[str, Any]:
    """The ``writers`` reproduction: one pre-training, then every source, arm and seed not yet done.

    Parameters
    ----------
    settings : WritersSettings
        Checked settings.
    command : str
        The command line, recorded in the report.

    Returns
    -------
    dict
        The report also written as ``writers.json``.
    """
    apply_mode(settings.mode)
    ordinary = settings.compare_settings("valid")
    dataset = load_data(ordinary)  # batch sizes larger than the training rows are refused here
    out = Path(settings.out)
    with claim_folder(out, settings):  # one process at a time in the folder
        (out / "runs").mkdir(exist_ok=True)
        weights = pretrain_seed(ordinary, dataset, out / "pretrain")
        model = build_model(ordinary, dataset)
        try:
            for source in VALID_SOURCES:
                compare = settings.compare_settings(source)
                arranged = rearrange(dataset, valid_from=source, split_seed=settings.split_seed)
                shared = [shared_dataset(s) for s in (arranged.train, arranged.valid, arranged.test)]
                for arm in ARMS:
                    for seed in settings.seeds:
                        path = run_file(out, source, arm, seed)
                        if path.is_file():
                            continue
                        load_params(model, weights)
                        row, history = run_arm(
                            arm, seed, model, shared, compare, f"{source} {arm} seed {seed}"
                        )
                        saved = {"row": row, "history": history}
                        atomic_write(path, lambda f, saved=saved: f.write(json.dumps(saved).encode()))
                        write_reports(settings, command, out)
        finally:  # a stopped reproduction reports what it has, and what it lacks
            result = write_reports(settings, command, out)
        return result
