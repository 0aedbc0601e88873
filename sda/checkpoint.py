"""Training state that survives a kill: save it atomically, load it, resume.

A checkpoint is one ``.npz`` holding every array of the training state
(parameters, SGD velocities, the early-stopping best parameters) and a JSON
string with the rest (where the loops are, the early-stopping counters, the
random generators' states). It is read with ``allow_pickle=False``.
"""

import copy
import json
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pytensor

from sda.data import open_npz
from sda.errors import SdAError
from sda.rundir import atomic_write

BEST_PREFIX = "best/"
VELOCITY_PREFIX = "velocity/"
PHASES = ("pretrain", "finetune", "done")
NUMBER = (int, float)
# what sda.finetune keeps in Progress.optimizer_state, and its types: a shuffling step's rows
# trained on and its generator as the epoch began; a pass-budget monitor's evaluator
SHUFFLE_STATE = {"examples": list, "epoch_rng": dict}
EVALUATOR_STATE = {
    "next_point": NUMBER,
    "best_valid_error": NUMBER,
    "best_passes": NUMBER,
    "best_evaluation": int,
    "test_error": NUMBER,
    "since_best": int,
    "seconds": NUMBER,
    "history": list,
}


@dataclass
class Progress:
    """Where training is; loops read it to start and update it as they go."""

    phase: str = "pretrain"  # then "finetune", then "done"
    layer: int = 0  # pre-training: the layer being trained
    epoch: int = 0  # epochs finished in this layer or phase
    batch: int = 0  # minibatches finished in this epoch
    epoch_cost_sum: float = 0.0  # over the minibatches finished in this epoch
    steps: int = 0  # minibatch steps over the whole run (checkpoint clock)
    pretrain_history: list = field(default_factory=list)  # per layer, per epoch mean costs
    # fine-tuning: parameter updates, and the patience rule's state
    iteration: int = 0
    patience: int = 0
    valid_error: float = math.nan
    best_valid_error: float = math.inf
    best_epoch: int = 0
    test_error: float = math.nan
    seconds: dict = field(default_factory=lambda: {"pretrain": 0.0, "finetune": 0.0})
    metrics_rows: int = 0  # rows of metrics.csv written when this was saved
    # sda.finetune with shuffled batches or a pass budget: shuffling state, cost counters, the evaluator
    optimizer_state: dict = field(default_factory=dict)
    # the run's settings when this was saved (sda.run), so that a config.json edited later is caught
    settings: dict = field(default_factory=dict)
    # the warnings shown so far (sda.run writes them to summary.json)
    warnings: list = field(default_factory=list)
    # the epoch records of a loop that returns them all (sda.gradual.train_gradual)
    records: list = field(default_factory=list)

    def finish_batch(self, cost: float) -> None:
        """Count a finished minibatch and add its cost to the epoch's sum.

        Parameters
        ----------
        cost : float
            The minibatch's mean cost (a numpy scalar is taken too).
        """
        self.batch += 1
        self.steps += 1
        self.epoch_cost_sum += float(cost)

    def finish_epoch(self) -> float:
        """The epoch's mean cost; resets the within-epoch counters.

        Returns
        -------
        float
            The mean of the epoch's minibatch costs (0.0 for an epoch of no minibatches).
        """
        mean = self.epoch_cost_sum / max(self.batch, 1)
        self.epoch += 1
        self.batch, self.epoch_cost_sum = 0, 0.0
        return mean

    def start_phase(self, phase: str) -> None:
        """Begin ``phase`` (or a new layer of it) at its first epoch and minibatch.

        Parameters
        ----------
        phase : str
            "pretrain", "finetune" or "done".
        """
        self.phase, self.epoch, self.batch, self.epoch_cost_sum = phase, 0, 0, 0.0


def _generator_state(shared_rng):
    return shared_rng.get_value(borrow=True).bit_generator.state


def _set_generator_state(shared_rng, state):
    generator = shared_rng.get_value()
    generator.bit_generator.state = state
    shared_rng.set_value(generator, borrow=True)


class Checkpoint:
    """Saves and restores a model's training state in one file.

    ``every``: save after every this many minibatch steps (0: only when a
    loop calls ``save``). Velocities are created by the loops after loading,
    so their loaded values wait in ``pending`` until the loop hands the
    variables over with ``restore_velocities``; early stopping's best
    parameter values are plain arrays, kept in ``best``.

    Parameters
    ----------
    path : str or path-like, optional
        The ``.npz`` file to save to and load from; None (the default) makes a
        checkpoint that never saves, for loops run without one.
    model : SdA, optional
        The model whose parameters (``named_params()``) and random generators
        (``random_generators()``) are saved and restored; needed with a ``path``.
    every : int, default 0
        Minibatch steps between saves (``due``); 0 saves only when a loop calls
        ``save`` (at the end of a layer or phase).
    fix : str, default "restore the file, or start the run again without --resume"
        What a message about a damaged or foreign checkpoint tells the user to do.

    Attributes
    ----------
    velocities : list of TensorSharedVariable
        The SGD velocities of the step now running, saved with the parameters.
    best : list of ndarray or None
        Early stopping's best parameter values, in the order of ``model.params``.
    pending : dict of str to ndarray
        Loaded velocity values not yet handed to a step (``restore_velocities``).
    on_save : callable or None
        Called with the ``Progress`` before each save (e.g. to record the rows
        of ``metrics.csv`` written so far).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        model: Any = None,
        every: int = 0,
        fix: str = "restore the file, or start the run again without --resume",
    ) -> None:
        self.model, self.every, self.fix = model, every, fix
        self.path: Any = path  # kept as given: a caller that passed a Path may use its methods
        self.velocities: list[Any] = []  # the SGD velocities of the step now running
        self.best: list[np.ndarray] | None = None  # early stopping's best parameter values
        self.pending: dict[str, np.ndarray] = {}
        self.on_save: Callable[[Progress], None] | None = None  # called with the Progress before each save

    def due(self, progress: Progress) -> bool:
        """True when ``progress`` is at a save point (every ``every`` steps).

        Parameters
        ----------
        progress : Progress
            The training position; its ``steps`` counts minibatch steps over the run.

        Returns
        -------
        bool
            Whether ``every`` is set and ``progress.steps`` is a multiple of it.
        """
        return bool(self.every) and progress.steps % self.every == 0

    def save(self, progress: Progress) -> None:
        """Write the model's parameters and generators, the velocities, the best
        parameters and ``progress`` to ``path``, atomically (a kill mid-save leaves
        the previous checkpoint whole). Does nothing without a ``path``.

        Parameters
        ----------
        progress : Progress
            The training position to save; ``on_save`` sees it first.
        """
        if self.path is None:  # a loop run without checkpoints
            return
        if self.on_save:
            self.on_save(progress)
        arrays = {name: p.get_value() for name, p in self.model.named_params().items()}
        arrays.update({f"{VELOCITY_PREFIX}{i}": v.get_value() for i, v in enumerate(self.velocities)})
        if self.best is not None:
            arrays.update({f"{BEST_PREFIX}{i}": value for i, value in enumerate(self.best)})
        state = {
            "progress": asdict(progress),
            "generators": {
                name: _generator_state(rng) for name, rng in self.model.random_generators().items()
            },
        }
        arrays["state.json"] = np.array(json.dumps(state))
        atomic_write(self.path, lambda f: np.savez(f, **arrays))

    def load(self) -> Progress:
        """Restore parameters and generators; return the saved ``Progress``.

        Everything is read and checked against the model first (names,
        shapes, dtypes, finite values, a readable state); only then is
        anything set, so a foreign or damaged file changes nothing. Raises
        ``SdAError`` naming the file and the mismatch.

        The best parameters go to ``best`` and the velocities wait in
        ``pending`` for ``restore_velocities``.

        Returns
        -------
        Progress
            Where training was when the checkpoint was saved.

        Raises
        ------
        SdAError
            If the file is missing, damaged or not a checkpoint, or does not fit
            the model (names, shapes, dtypes, generators, training position), or
            holds non-finite values.
        """
        arrays, state = self._read()
        params = self.model.named_params()
        self._check_arrays(arrays, params)
        progress = self._check_state(state)
        for name, p in params.items():
            p.set_value(arrays.pop(name))
        for name, rng in self.model.random_generators().items():
            _set_generator_state(rng, state["generators"][name])
        best = sorted(
            (k for k in arrays if k.startswith(BEST_PREFIX)), key=lambda k: int(k[len(BEST_PREFIX) :])
        )
        self.best = [arrays.pop(k) for k in best] or None
        self.pending = arrays  # the velocities
        return progress

    def _refuse(self, problem, fix=None):
        return SdAError(f"{self.path} {problem}: {fix or self.fix}")

    def _read(self):
        """Every array and the JSON state, read with ``allow_pickle=False``."""
        if Path(self.path).is_dir():
            raise self._refuse("is a folder where the checkpoint file should be")
        arrays = open_npz(self.path, "checkpoint", self.fix)  # damaged, empty, foreign: one clear error
        if "state.json" not in arrays:
            raise self._refuse("is not a valid checkpoint: it holds no state.json entry")
        try:
            state = json.loads(str(arrays.pop("state.json")))
            if not isinstance(state, dict) or not {"progress", "generators"} <= set(state):
                raise ValueError("state.json lacks progress or generators")
        except ValueError as error:
            raise self._refuse(f"is not a valid checkpoint: its state is unreadable ({error})") from None
        return arrays, state

    def _check_arrays(self, arrays, params):
        """Parameters, best values and velocities must fit the model and be finite."""
        stored = {k for k in arrays if not k.startswith((BEST_PREFIX, VELOCITY_PREFIX))}
        missing, extra = sorted(set(params) - stored), sorted(stored - set(params))
        fix = "resume with the config.json this checkpoint was saved with"
        if missing or extra:
            raise self._refuse(
                f"does not match config.json: it lacks {missing} and has unexpected {extra}", fix
            )
        expected = {name: p.get_value(borrow=True) for name, p in params.items()}
        best = sorted(k for k in arrays if k.startswith(BEST_PREFIX))
        if best and len(best) != len(self.model.params):
            raise self._refuse(
                f"holds {len(best)} best-parameter arrays for a model with "
                f"{len(self.model.params)} parameters",
                fix,
            )
        for i, p in enumerate(self.model.params):
            if best:
                expected[f"{BEST_PREFIX}{i}"] = p.get_value(borrow=True)
        for name, want in expected.items():
            value = arrays.get(name)
            if value is None:
                raise self._refuse(f"lacks {name}", fix)
            if value.shape != want.shape or value.dtype != want.dtype:
                raise self._refuse(
                    f"does not match config.json: {name} is {value.dtype} "
                    f"{value.shape}, the model needs {want.dtype} {want.shape}",
                    fix,
                )
        for name, value in arrays.items():
            if value.dtype.kind not in "fiu":
                raise self._refuse(f"is not a valid checkpoint: {name} holds {value.dtype} values")
            if not np.all(np.isfinite(value)):
                raise self._refuse(
                    f"holds non-finite values in {name} (the run had diverged)",
                    "start the run again with a smaller learning rate",
                )

    def _check_state(self, state):
        """The saved ``Progress`` and generator states, checked against the model."""
        generators = self.model.random_generators()
        saved = state["generators"]
        if not isinstance(saved, dict) or set(saved) != set(generators):
            raise self._refuse(
                f"does not match config.json: it saves generators "
                f"{sorted(saved) if isinstance(saved, dict) else saved!r}, the "
                f"model has {sorted(generators)}"
            )
        for name, rng in generators.items():
            try:  # on a copy, so nothing changes if the state is bad
                _set_generator_state(pytensor.shared(copy.deepcopy(rng.get_value())), saved[name])
            except (TypeError, ValueError, KeyError) as error:
                raise self._refuse(f"holds an unusable state for generator {name} ({error})") from None
        try:
            progress = Progress(**state["progress"])
        except TypeError as error:
            raise self._refuse(f"holds an unreadable training position ({error})") from None
        for f in fields(Progress):
            value, default = getattr(progress, f.name), getattr(Progress(), f.name)
            kinds = (int, float) if isinstance(default, float) else type(default)
            if not isinstance(value, kinds) or isinstance(value, bool):
                raise self._refuse(f"holds an unreadable training position ({f.name} = {value!r})")
        if progress.phase not in PHASES or not 0 <= progress.layer <= self.model.n_layers:
            raise self._refuse(
                f"holds an impossible training position (phase {progress.phase!r}, "
                f"layer {progress.layer} of {self.model.n_layers})"
            )
        if progress.optimizer_state:
            self._check_optimizer_state(progress.optimizer_state)
        return progress

    def _check_optimizer_state(self, state):
        """The fine-tuning loop's state must have every entry, of its type, before it is used:
        the shuffling state (if any) and the evaluator's (if any)."""
        shuffled = bool(SHUFFLE_STATE.keys() & state.keys())
        parts = [("optimizer_state", state, SHUFFLE_STATE)] if shuffled else []
        if "evaluator" in state or not shuffled:
            parts.append(("optimizer_state.evaluator", state.get("evaluator"), EVALUATOR_STATE))
        for where, saved, expected in parts:
            for key, kinds in expected.items():
                if not isinstance(saved, dict) or not isinstance(saved.get(key), kinds):
                    raise self._refuse(f"holds an unreadable {where} ({key} is missing or of the wrong type)")
        if not shuffled:
            return
        if not all(isinstance(n, NUMBER) for n in state["examples"]):
            raise self._refuse("holds an unreadable optimizer_state (examples are not numbers)")
        try:  # on a throw-away generator, so nothing changes if the state is bad
            np.random.default_rng().bit_generator.state = state["epoch_rng"]
        except (TypeError, ValueError, KeyError) as error:
            raise self._refuse(f"holds an unusable shuffling state ({error})") from None

    def restore_velocities(self, velocities: Iterable[Any]) -> None:
        """Track ``velocities``; give them their saved values if resuming.

        Parameters
        ----------
        velocities : iterable of TensorSharedVariable
            The running step's momentum velocities (``SGDStep.velocities``), in
            the order the step made them; empty without momentum.
        """
        self.velocities = list(velocities)
        for i, v in enumerate(self.velocities):
            saved = self.pending.pop(f"{VELOCITY_PREFIX}{i}", None)
            if saved is not None:
                v.set_value(saved)
