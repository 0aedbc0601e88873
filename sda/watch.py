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

    Parameters
    ----------
    record : object
        What a loop reports (a step's or an epoch's record); ignored.

    Examples
    --------
    >>> noop({"cost": 1.0}) is None
    True
    """


def progress_bar(start: int, count: int, description: str, show: bool) -> Iterable[int]:
    """``range(start, count)``, shown as a bar of minibatches when ``show`` and the output is a terminal.

    Parameters
    ----------
    start : int
        The first minibatch index: the minibatches an epoch has already done
        (non-zero when a run resumes mid-epoch); the bar starts there.
    count : int
        Minibatches per epoch; the range ends there.
    description : str
        The bar's label, e.g. ``"fine-tune epoch 3"``.
    show : bool
        Draw the bar; it is drawn only when the output is also a terminal.

    Returns
    -------
    iterable of int
        The minibatch indices ``start, ..., count - 1``.

    Examples
    --------
    >>> list(progress_bar(2, 5, "epoch 1", show=False))
    [2, 3, 4]
    """
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
    """Raise ``TrainingDiverged`` naming the first parameter of ``model`` that holds a NaN or infinity.

    It reads every weight, so loops call it only at validation and checkpoint
    points, not every step.

    Parameters
    ----------
    model : SdA
        Any model with ``named_params()`` (name to shared variable).
    phase : str
        The training phase, for the message (:data:`PRETRAINING`, :data:`FINETUNING`, ...).
    **where
        The ``layer``, ``epoch`` and ``step`` to name in the message, as far as they are known.

    Raises
    ------
    sda.errors.TrainingDiverged
        If a parameter holds a NaN or infinity; the message names the parameter and the place.
    """
    for name, param in model.named_params().items():
        check_finite(param.get_value(borrow=True), phase, f"parameter {name}", **where)


class EpochCostWatch:
    """Warns (``sda.errors.CostWatch``) when an epoch's mean cost rises far above the start.

    The start is the first minibatch's cost when training starts from
    scratch (an untrained model costs about the same on every minibatch),
    otherwise the first epoch's mean: one minibatch of a resumed, half-trained
    model can cost far less than the average.

    Parameters
    ----------
    name : str
        The phase (and layer) named in the warning, e.g. ``"pre-training layer 0"``.
    from_scratch : bool
        Whether training starts from scratch: then the first minibatch's cost
        is the start, else the first epoch's mean cost.
    """

    def __init__(self, name: str, from_scratch: bool):
        self.watch, self.first_step = CostWatch(name), from_scratch

    def step(self, cost: float) -> None:
        """Take a minibatch's cost; only the first one of a run from scratch is watched.

        Parameters
        ----------
        cost : float
            The minibatch's cost, as the compiled step returned it.
        """
        if self.first_step:
            self.watch(cost)
            self.first_step = False

    def epoch(self, mean_cost: float) -> None:
        """Take an epoch's mean cost; warn if it rose far above the start.

        Parameters
        ----------
        mean_cost : float
            The mean minibatch cost of the epoch just finished.
        """
        self.watch(mean_cost)


def save_if_due(checkpoint: Any, progress: Any, model: Any, phase: str, **where: Any) -> None:
    """Save at the checkpoint's interval, after checking the parameters.

    The check comes first, so a diverged state never overwrites the last good checkpoint.

    Parameters
    ----------
    checkpoint : sda.checkpoint.Checkpoint
        Saves when ``checkpoint.due(progress)`` (every ``checkpoint.every`` minibatch steps).
    progress : sda.checkpoint.Progress
        The training state to save.
    model : SdA
        Whose parameters are checked to be finite before saving.
    phase : str
        The training phase, for a divergence message.
    **where
        The ``layer``, ``epoch`` and ``step`` to name in a divergence message.

    Raises
    ------
    sda.errors.TrainingDiverged
        If a parameter holds a NaN or infinity at a save point; nothing is saved then.
    """
    if checkpoint.due(progress):
        check_params(model, phase, **where)
        checkpoint.save(progress)
