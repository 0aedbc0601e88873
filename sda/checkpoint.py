"""Training state that survives a kill: save it atomically, load it, resume.

A checkpoint is one ``.npz`` holding every array of the training state
(parameters, SGD velocities, the early-stopping best parameters) and a JSON
string with the rest (where the loops are, the early-stopping counters, the
random generators' states). It is read with ``allow_pickle=False``.
"""

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from sda.rundir import atomic_write

BEST_PREFIX = "best/"
VELOCITY_PREFIX = "velocity/"


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
    # fine-tuning's early stopping
    iteration: int = 0
    patience: int = 0
    valid_error: float = math.nan
    best_valid_error: float = math.inf
    best_epoch: int = 0
    test_error: float = math.nan
    seconds: dict = field(default_factory=lambda: {"pretrain": 0.0, "finetune": 0.0})
    metrics_rows: int = 0  # rows of metrics.csv written when this was saved

    def finish_batch(self, cost):
        self.batch += 1
        self.steps += 1
        self.epoch_cost_sum += float(cost)

    def finish_epoch(self):
        """The epoch's mean cost; resets the within-epoch counters."""
        mean = self.epoch_cost_sum / max(self.batch, 1)
        self.epoch += 1
        self.batch, self.epoch_cost_sum = 0, 0.0
        return mean

    def start_phase(self, phase):
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
    """

    def __init__(self, path=None, model=None, every=0):
        self.path, self.model, self.every = path, model, every
        self.velocities = []  # the SGD velocities of the step now running
        self.best = None  # early stopping's best parameter values
        self.pending = {}
        self.on_save = None  # called with the Progress before each save

    def maybe_save(self, progress):
        if self.every and progress.steps % self.every == 0:
            self.save(progress)

    def save(self, progress):
        if self.path is None:  # a loop run without checkpoints
            return
        if self.on_save:
            self.on_save(progress)
        arrays = {name: p.get_value() for name, p in self.model.named_params().items()}
        arrays.update({f"{VELOCITY_PREFIX}{i}": v.get_value() for i, v in enumerate(self.velocities)})
        if self.best is not None:
            arrays.update({f"{BEST_PREFIX}{i}": value for i, value in enumerate(self.best)})
        state = {"progress": asdict(progress),
                 "generators": {name: _generator_state(rng)
                                for name, rng in self.model.random_generators().items()}}
        arrays["state.json"] = np.array(json.dumps(state))
        atomic_write(self.path, lambda f: np.savez(f, **arrays))

    def load(self):
        """Restore parameters and generators; return the saved ``Progress``."""
        with np.load(self.path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        state = json.loads(str(arrays.pop("state.json")))
        for name, p in self.model.named_params().items():
            p.set_value(arrays.pop(name))
        for name, rng in self.model.random_generators().items():
            _set_generator_state(rng, state["generators"][name])
        best = sorted((k for k in arrays if k.startswith(BEST_PREFIX)),
                      key=lambda k: int(k[len(BEST_PREFIX):]))
        self.best = [arrays.pop(k) for k in best] or None
        self.pending = arrays  # the velocities
        return Progress(**state["progress"])

    def restore_velocities(self, velocities):
        """Track ``velocities``; give them their saved values if resuming."""
        self.velocities = list(velocities)
        for i, v in enumerate(self.velocities):
            saved = self.pending.pop(f"{VELOCITY_PREFIX}{i}", None)
            if saved is not None:
                v.set_value(saved)
