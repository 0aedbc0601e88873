"""One run's settings: a dataclass, its presets, and its checks."""

import dataclasses
import json
import math
from dataclasses import dataclass

from sda.dA import LOSSES

FINETUNERS = ("sgd", "cg", "lbfgs")


@dataclass
class RunConfig:
    """Every hyper-parameter of ``python -m sda.run``; saved as ``config.json``."""

    # data
    dataset: str = "mnist"
    data: str | None = None  # a file or folder; default: $SDA_DATA, then the cache
    n_train: int | None = None  # use only the first rows of each split
    n_valid: int | None = None
    n_test: int | None = None
    # architecture
    hidden_layers: tuple = (1000, 1000, 1000)
    corruption_levels: tuple = (0.1, 0.2, 0.3)
    tied: bool = True
    loss: str = "cross_entropy"
    # SGD extras for both phases (the gradual-training paper uses both)
    momentum: float = 0.0
    weight_decay: float = 0.0
    # pre-training
    pretrain_epochs: int = 15
    pretrain_lr: float = 0.02
    pretrain_batch_size: int = 20
    cached: bool = True  # train layer k on the stored output of layers below
    # fine-tuning
    finetune: str = "sgd"  # or "cg" / "lbfgs": batch optimisers over one flat vector
    finetune_lr: float = 2.0
    finetune_batch_size: int = 20
    finetune_epochs: int = 1000  # the most; early stopping usually ends sooner
    patience: int = 10_000  # minibatch iterations
    patience_increase: float = 2.0
    improvement_threshold: float = 0.995
    batch_patience: int = 20  # cg/lbfgs: stop after this many iterations without improvement
    eval_batch_size: int = 1000  # rows per validation/test call; does not change the result
    # bookkeeping
    seed: int = 89677
    checkpoint_every: int = 5000  # minibatch steps between checkpoints (0: phase ends only)
    log_every: int = 100  # keep every N-th minibatch cost in steps.csv (0: none)
    out: str = "runs"
    name: str | None = None  # the run folder's name; default: time and preset
    preset: str = "default"
    progress: bool = True

    def check(self):
        """Raise ``ValueError`` naming the first setting that makes no sense."""
        positive_ints = ["pretrain_batch_size", "finetune_batch_size", "finetune_epochs",
                         "patience", "eval_batch_size"]
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ["checkpoint_every", "log_every"]:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be 0 or more steps, got {value!r}")
        if not isinstance(self.pretrain_epochs, int) or self.pretrain_epochs < 0:
            raise ValueError(f"pretrain_epochs must be 0 or more, got {self.pretrain_epochs!r}")
        for name in ["n_train", "n_valid", "n_test"]:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive number of rows, got {value!r}")
        for name in ["pretrain_lr", "finetune_lr"]:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be 0 or more, got {self.weight_decay!r}")
        if self.finetune not in FINETUNERS:
            raise ValueError(f"finetune must be one of {FINETUNERS}, got {self.finetune!r}")
        if not isinstance(self.batch_patience, int) or self.batch_patience < 1:
            raise ValueError(f"batch_patience must be a positive integer, got {self.batch_patience!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if len(self.corruption_levels) != len(self.hidden_layers):
            raise ValueError(
                f"{len(self.hidden_layers)} hidden layers but {len(self.corruption_levels)} "
                "corruption levels: give one level per layer"
            )
        return self

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text):
        values = json.loads(text)
        for name in ("hidden_layers", "corruption_levels"):
            values[name] = tuple(values[name])
        return cls(**values)


PRESETS = {
    # Tuned for 2 CPU cores: minibatches of 20 let BLAS work at full speed.
    # Both learning rates are the tutorial's per-example rates (0.001 and
    # 0.1) times the batch size, as each step averages 20 gradients; this
    # keeps the tutorial's ratio of step size to gradient noise.
    "default": {},
    # The original tutorial, exactly: one example per step.
    "tutorial": dict(pretrain_batch_size=1, finetune_batch_size=1, pretrain_lr=0.001,
                     finetune_lr=0.1, pretrain_epochs=15, finetune_epochs=1000),
    # A one-minute offline run on scikit-learn's bundled 8x8 digits.
    "demo": dict(dataset="digits", hidden_layers=(100, 100), corruption_levels=(0.1, 0.2),
                 pretrain_epochs=10, pretrain_batch_size=10, pretrain_lr=0.01,
                 finetune_batch_size=10, finetune_lr=0.1, finetune_epochs=100,
                 patience=4000, eval_batch_size=300),
}


def preset(preset_name, **overrides):
    """A ``RunConfig`` from a preset, with ``overrides`` applied."""
    if preset_name not in PRESETS:
        raise ValueError(f"unknown preset {preset_name!r}: choose one of {sorted(PRESETS)}")
    return RunConfig(**{**PRESETS[preset_name], "preset": preset_name, **overrides})


__all__ = ["PRESETS", "RunConfig", "preset"]
