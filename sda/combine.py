"""``python -m sda.combine``: one comparison table from several ``sda.compare`` folders.

A full-MNIST comparison with several seeds is too long for one sitting. Run
its arms and seeds as separate ``sda.compare`` commands from the same
``--pretrained`` weights, then combine their folders here. The folders must
hold the same pre-trained weights (their arrays checked by a digest), the same data,
model, weight decay and thresholds, and no arm and seed twice. An arm that
parts ran with different settings of its own (say mini-batch CG at
``--finetune-batch-size`` 1000 and 250) gives one row per setting, labelled
with the values that differ.

``--budget-passes`` cuts every run at that many pass-equivalents: its row is
read from its evaluations up to the first one at or past the budget (best
validation error, test error there, training loss, costs, thresholds). A
run's path does not depend on its budget, so this is the row a run with
that budget would have written, measured on the same grid.

Writes ``comparison.md``, ``runs.csv``, ``summary.csv``, the plots, and
``comparison.json`` naming every source folder and command.
"""

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass, fields
from pathlib import Path

from sda.cli import add_settings_flags, experiment_folder, settings_from_args
from sda.compare import (
    ADDED_LATER,
    ARM_READS,
    CompareSettings,
    markdown_table,
    result_row,
    summarise,
    upgrade,
    write_tables_and_plots,
)
from sda.config import SettingError, check_fields, setting
from sda.data import open_npz
from sda.errors import SdAError, exit_status

# what every combined folder must share, or their rows do not belong in one table
SHARED = ["dataset", "rows", "hidden_layers", "weight_decay", "thresholds"]


@dataclass
class CombineSettings:
    """The folders to combine, the budget to cut them at, and where to write."""

    folders: tuple[str, ...] = setting((), default_text="none: give two or more", metavar="FOLDER")
    budget_passes: float | None = setting(
        None, "cut every run at this many pass-equivalents", default_text="each run's own budget"
    )
    out: str | None = setting(
        None,
        "output folder; refused if it already holds files",
        default_text="a new folder runs/DATE-TIME-combine",
    )

    def check(self):
        """Check every setting; the first bad one raises.

        Returns
        -------
        CombineSettings
            ``self``, checked.

        Raises
        ------
        SettingError
            If fewer than two folders are given, or a setting is out of range.
        """
        check_fields(self)
        if len(self.folders) < 2:
            raise SettingError("give two or more folders to combine")
        return self


def weights_digest(path: Path) -> str:
    """sha256 over the arrays of a saved model (names, dtypes, shapes, values), not the file's bytes.

    Parameters
    ----------
    path : pathlib.Path
        A ``pretrained.npz``.

    Returns
    -------
    str
        The hex digest: equal for equal weights, however the file was compressed.
    """
    digest = hashlib.sha256()
    stored = open_npz(path, "saved model")
    for name in sorted(stored):
        value = stored[name]
        digest.update(f"{name} {value.dtype} {value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def read_comparison(folder: Path) -> dict:
    """``comparison.json`` of one ``sda.compare`` folder, with the digest of its
    ``pretrained.npz``; ``SdAError`` naming the folder if either is missing or unreadable.

    Parameters
    ----------
    folder : pathlib.Path
        An output folder of ``sda.compare``.

    Returns
    -------
    dict
        The record, with ``folder`` and the weights' ``weights`` digest added.

    Raises
    ------
    SdAError
        If the folder, its ``comparison.json`` or its ``pretrained.npz`` is missing or damaged.
    """
    if not folder.is_dir():
        raise SdAError(f"{folder} is not a folder: give the output folders of sda.compare")
    path = folder / "comparison.json"
    try:
        record = json.loads(path.read_text())
        weights = weights_digest(folder / "pretrained.npz")
    except FileNotFoundError as error:
        raise SdAError(
            f"{folder} is not an sda.compare folder: {Path(error.filename).name} is missing"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SdAError(f"{path} cannot be read ({error}): is it a finished sda.compare folder?") from None
    if not (isinstance(record, dict) and {"settings", "runs", "histories"} <= set(record)):
        raise SdAError(f"{path} lacks settings, runs or histories: it is not an sda.compare result")
    # The recorded settings label the rows: check them as sda.compare checked its flags, leaving
    # out what it recorded beside them (command, backend...) and the pretrained path: the part's
    # own pretrained.npz, digested above, is what counts. from_dict refuses a non-object itself.
    record["settings"] = upgrade(record["settings"])  # an older folder's names
    recorded, checked = record["settings"], {f.name for f in fields(CompareSettings)} - {"pretrained"}
    if isinstance(recorded, dict):
        recorded = {name: value for name, value in recorded.items() if name in checked}
    CompareSettings.from_dict(recorded, source=str(path))
    return {**record, "folder": str(folder), "weights": weights}


def check_comparable(records: list[dict], labels: list[dict]) -> None:
    """Refuse folders whose rows would not belong in one table (``labels``
    from :func:`arm_labels`: runs of one label and seed are duplicates).

    Parameters
    ----------
    records : list of dict
        The folders' records, from ``read_comparison``.
    labels : list of dict
        Each record's ``{arm: label}``.

    Raises
    ------
    SdAError
        If the parts start from different weights, differ in a setting every
        arm shares, or hold the same run twice.
    """
    first = records[0]
    for record in records[1:]:
        if record["weights"] != first["weights"]:
            raise SdAError(
                f"{record['folder']} and {first['folder']} start from different "
                "pretrained.npz: run every part with the same --pretrained"
            )
        for name in SHARED:
            if record["settings"].get(name) != first["settings"].get(name):
                raise SdAError(
                    f"{record['folder']} and {first['folder']} differ in {name} "
                    f"({record['settings'].get(name)!r} against "
                    f"{first['settings'].get(name)!r})"
                )
    seen: dict[tuple[str, int], str] = {}  # (arm, seed) -> the folder it came from
    for record, mine in zip(records, labels):
        for run in record["runs"]:
            key = (mine[run["arm"]], run["seed"])
            if key in seen:
                raise SdAError(
                    f"{key[0]} seed {key[1]} is in both {seen[key]} and "
                    f"{record['folder']}: combine each run once"
                )
            seen[key] = record["folder"]


def arm_labels(records: list[dict]) -> list[dict]:
    """Per record, ``{arm: label}``: the arm's name, followed by the values of the
    settings it reads (``compare.ARM_READS``) wherever the parts ran it with
    different ones, so that such runs make rows of their own.

    Parameters
    ----------
    records : list of dict
        The folders' records, from ``read_comparison``.

    Returns
    -------
    list of dict
        One ``{arm: label}`` per record.

    Raises
    ------
    SdAError
        If a record lacks a setting one of its arms reads.

    Examples
    --------
    >>> parts = [{"folder": "p", "runs": [{"arm": "cg-hs2006"}], "settings": {
    ...     "cg_batch_size": m, "line_searches": 3, "warmup_epochs": 1}} for m in (1000, 250)]
    >>> [labels["cg-hs2006"] for labels in arm_labels(parts)]
    ['cg-hs2006 (cg_batch_size 1000)', 'cg-hs2006 (cg_batch_size 250)']
    """

    def reads(record, arm):
        settings = {**ADDED_LATER, **record["settings"]}
        missing = [name for name in ARM_READS.get(arm, ()) if name not in settings]
        if missing:
            raise SdAError(
                f"{record['folder']}/comparison.json lacks the setting {missing[0]} that "
                f"{arm} reads: make that part again with sda.compare"
            )
        return tuple(settings[name] for name in ARM_READS.get(arm, ()))

    ran = [{run["arm"] for run in record["runs"]} for record in records]
    labels = []
    for record, arms in zip(records, ran):
        mine = {}
        for arm in arms:
            variants = {reads(other, arm) for other, its in zip(records, ran) if arm in its}
            shown = [
                f"{name} {value}"
                for i, (name, value) in enumerate(zip(ARM_READS.get(arm, ()), reads(record, arm)))
                if len({variant[i] for variant in variants}) > 1
            ]
            mine[arm] = f"{arm} ({', '.join(shown)})" if shown else arm
        labels.append(mine)
    return labels


def cut(history: list[dict], budget: float | None) -> list[dict]:
    """The evaluation records up to the first one at or past ``budget`` pass-equivalents.

    Parameters
    ----------
    history : list of dict
        One run's evaluation records, each with ``passes``.
    budget : float or None
        Pass-equivalents; None keeps every record.

    Returns
    -------
    list of dict
        The leading records, down to the first at or past the budget.

    Examples
    --------
    >>> [r["passes"] for r in cut([{"passes": p} for p in [0, 5, 10, 15]], 7)]
    [0, 5, 10]
    """
    if budget is None:
        return history
    end = next((i for i, r in enumerate(history) if r["passes"] >= budget), len(history) - 1)
    return history[: end + 1]


def runs_histories(record: dict) -> list[list[dict]]:
    """Each run's evaluation records, in the order of ``record["runs"]``
    (``histories`` keeps them per arm, in run order).

    Parameters
    ----------
    record : dict
        One folder's record, from ``read_comparison``.

    Returns
    -------
    list of list of dict
        One history per run.
    """
    taken: dict[str, int] = {}  # runs of each arm seen so far
    ordered = []
    for run in record["runs"]:
        i = taken[run["arm"]] = taken.get(run["arm"], -1) + 1
        ordered.append(record["histories"][run["arm"]][i])
    return ordered


def combine(settings: CombineSettings, command: str) -> list[dict]:
    """Combine the folders' runs into one table and its plots; return the summary.

    Parameters
    ----------
    settings : CombineSettings
        The folders, the budget to cut every run at, and the output folder.
    command : str
        The command line, recorded in the output.

    Returns
    -------
    list of dict
        The summary: one entry per arm, over its seeds.

    Raises
    ------
    SdAError
        If a folder is unreadable or the parts do not belong in one table.
    """
    records = [read_comparison(Path(folder)) for folder in settings.folders]
    labels = arm_labels(records)
    check_comparable(records, labels)
    thresholds = records[0]["settings"]["thresholds"]
    rows: list[dict] = []
    histories: dict[str, list[list[dict]]] = {}  # arm -> each run's evaluation records
    arms: list[str] = []
    for record, mine in zip(records, labels):
        try:
            for run, full in zip(record["runs"], runs_histories(record), strict=True):
                history = cut(full, settings.budget_passes)
                last = history[-1]
                stop = run["stop_reason"] if len(history) == len(full) else "budget"
                arm = mine[run["arm"]]
                rows.append(
                    result_row(
                        arm,
                        run["seed"],
                        history,
                        thresholds,
                        last["passes"],
                        last["updates"],
                        last["seconds"],
                        stop,
                    )
                )
                histories.setdefault(arm, []).append(history)
                arms += [] if arm in arms else [arm]
        except (KeyError, TypeError, IndexError, ValueError) as error:
            raise SdAError(
                f"{record['folder']}/comparison.json is damaged ({type(error).__name__}: "
                f"{error}): make that part again with sda.compare"
            ) from None
    summary = summarise(rows, arms)
    with experiment_folder(settings.out, "combine") as out:
        budget = (
            "each run's own budget"
            if settings.budget_passes is None
            else f"every run cut at {settings.budget_passes:g} pass-equivalents"
        )
        header = [f"Command: `{command}`  ", f"Combined: {budget}; sources:", ""]
        header += [
            f"- `{r['folder']}`: `{r['settings'].get('command', '?')}` ({r['settings'].get('backend', '?')})"
            for r in records
        ]
        text = write_tables_and_plots(out.path, rows, summary, histories, thresholds, header)
        (out.path / "comparison.md").write_text("\n".join(text) + "\n")
        out.write_json(
            "comparison.json",
            {
                "command": command,
                "budget_passes": settings.budget_passes,
                "sources": [
                    {
                        "folder": r["folder"],
                        "command": r["settings"].get("command"),
                        "weights_sha256": r["weights"],
                    }
                    for r in records
                ],
                "settings": {name: records[0]["settings"].get(name) for name in SHARED},
                "runs": rows,
                "summary": summary,
                "histories": histories,
            },
        )
        print(markdown_table(summary, thresholds), f"\nfiles in {out.path}", sep="\n")
    return summary


def build_parser():
    """The argument parser of ``python -m sda.combine``.

    Returns
    -------
    argparse.ArgumentParser
        Its help lists every flag with its default.
    """
    parser = argparse.ArgumentParser(prog="python -m sda.combine", description=__doc__.split("\n\n")[0])
    add_settings_flags(parser, CombineSettings, {"default": {}})
    return parser


def main(argv=None):
    """``python -m sda.combine``: parse ``argv``, run, and turn a user's error into one line.

    Parameters
    ----------
    argv : list of str, optional
        The arguments; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        The exit status: 0, 2 after a one-line error, 130 if interrupted.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python -m sda.combine", *argv])
    args = build_parser().parse_args(argv)
    return exit_status(lambda: combine(settings_from_args(args, CombineSettings, {}), command))


if __name__ == "__main__":
    sys.exit(main())
