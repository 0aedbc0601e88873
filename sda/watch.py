"""What every training loop shares: the do-nothing callback, the divergence
checks on a model's parameters and costs, and the progress bar.

Pre-training (``sda.train``), gradual training (``sda.gradual``) and the
fine-tuning loop (``sda.finetune``) import these from here, so no loop
imports another for its helpers.
"""

from collections.abc import Iterable
from typing import Any

from tqdm import tqdm  # plain text bars: a notebook (the docs) needs no widgets

from sda.errors import CostWatch, check_finite

PRETRAINING, FINETUNING = "pre-training", "fine-tuning"  # phase names in error messages


def noop(record: Any) -> None:
    """The default callback: takes a record and does nothing.

    Examples
    --------
    >>> noop({"cost": 1.0}) is None
    True
    """


def progress_bar(start: int, count: int, description: str, show: bool) -> Iterable[int]:
    """``range(start, count)``, shown as a bar of minibatches when ``show`` and the output is a terminal."""
    # disable=None: no bar when the output is not a terminal (logs, CI)
    return tqdm(
        range(start, count),
        desc=description,
        leave=False,
        initial=start,
        total=count,
        disable=None if show else True,
        unit="batch",
    )


def check_params(model: Any, phase: str, **where: Any) -> None:
    """Raise ``TrainingDiverged`` naming the first parameter of ``model`` that
    holds a NaN or infinity. ``where`` takes the ``layer``, ``epoch`` and
    ``step`` to name. It reads every weight, so loops call it only at
    validation and checkpoint points, not every step."""
    for name, param in model.named_params().items():
        check_finite(param.get_value(borrow=True), phase, f"parameter {name}", **where)


class EpochCostWatch:
    """Warns (``sda.errors.CostWatch``) when an epoch's mean cost rises far above the start.

    The start is the first minibatch's cost when training starts from
    scratch (an untrained model costs about the same on every minibatch),
    otherwise the first epoch's mean: one minibatch of a resumed, half-trained
    model can cost far less than the average.
    """

    def __init__(self, name: str, from_scratch: bool):
        self.watch, self.first_step = CostWatch(name), from_scratch

    def step(self, cost: float) -> None:
        if self.first_step:
            self.watch(cost)
            self.first_step = False

    def epoch(self, mean_cost: float) -> None:
        self.watch(mean_cost)


def save_if_due(checkpoint: Any, progress: Any, model: Any, phase: str, **where: Any) -> None:
    """Save at the checkpoint's interval, after checking the parameters, so a
    diverged state never overwrites the last good checkpoint."""
    if checkpoint.due(progress):
        check_params(model, phase, **where)
        checkpoint.save(progress)
