"""The stacked denoising auto-encoder: dAs for pre-training, an MLP for fine-tuning.

The two views share parameters. Layer ``i``'s dA encodes with the very same
shared variables ``W`` and ``b`` as the MLP's ``i``-th sigmoid layer, so
pre-training a dA *is* initialising the MLP; only the dA's visible bias
(and an untied decoder) belong to the dA alone.
"""

import math

import numpy as np
import pytensor
import pytensor.tensor as pt

from sda.dA import LOSSES, dA
from sda.logistic import LogisticRegression
from sda.mlp import HiddenLayer
from sda.sgd import sgd_updates


def check_architecture(n_ins, hidden_layers_sizes, n_outs, corruption_levels):
    """Raise ``ValueError`` naming the first nonsense setting."""
    sizes = list(hidden_layers_sizes)
    if not sizes:
        raise ValueError("hidden_layers_sizes is empty: give at least one layer size, e.g. (1000,)")
    for name, value in [("n_ins", n_ins), ("n_outs", n_outs)] + [
        (f"hidden_layers_sizes[{i}]", s) for i, s in enumerate(sizes)
    ]:
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if n_outs < 2:
        raise ValueError(f"n_outs must be at least 2 classes, got {n_outs}")
    if len(corruption_levels) != len(sizes):
        raise ValueError(
            f"corruption_levels has {len(corruption_levels)} values but there are "
            f"{len(sizes)} hidden layers: give one level per layer"
        )
    for i, level in enumerate(corruption_levels):
        if not 0.0 <= level < 1.0:
            raise ValueError(
                f"corruption_levels[{i}] = {level!r} is outside [0, 1): it is the "
                "probability of zeroing an input"
            )


def batch_slice(data, index, batch_size):
    """Rows ``index * batch_size`` up to the next batch; the last may be short."""
    return data[index * batch_size : (index + 1) * batch_size]


def n_batches(n_rows, batch_size):
    """Number of minibatches that cover all rows (the last may be short)."""
    return math.ceil(n_rows / batch_size)


class SdA:
    """A stack of dAs whose encoders form a sigmoid MLP with a softmax on top."""

    def __init__(
        self,
        numpy_rng,
        n_ins=784,
        hidden_layers_sizes=(1000, 1000, 1000),
        n_outs=10,
        corruption_levels=(0.1, 0.2, 0.3),
        tied=True,
        loss="cross_entropy",
    ):
        check_architecture(n_ins, hidden_layers_sizes, n_outs, corruption_levels)
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}: choose one of {LOSSES}")
        self.n_layers = len(hidden_layers_sizes)
        self.corruption_levels = tuple(float(c) for c in corruption_levels)
        self.x = pt.matrix("x")  # rows of pixels
        self.y = pt.ivector("y")  # their labels
        self.sigmoid_layers, self.dA_layers, self.params = [], [], []
        self.finetune_velocities = []

        layer_input, n_in = self.x, n_ins
        for n_out in hidden_layers_sizes:
            hidden = HiddenLayer(numpy_rng, layer_input, n_in, n_out, activation=pt.sigmoid)
            auto_encoder = dA(
                numpy_rng, input=layer_input, n_visible=n_in, n_hidden=n_out,
                W=hidden.W, bhid=hidden.b, tied=tied, loss=loss,
            )
            self.sigmoid_layers.append(hidden)
            self.dA_layers.append(auto_encoder)
            self.params.extend(hidden.params)
            layer_input, n_in = hidden.output, n_out

        self.logLayer = LogisticRegression(layer_input, n_in, n_outs)
        self.params.extend(self.logLayer.params)
        self.finetune_cost = self.logLayer.negative_log_likelihood(self.y)
        self.errors = self.logLayer.errors(self.y)

    # ------------------------------------------------------------ pre-training
    def pretraining_function(self, layer, source, batch_size, cached=False, momentum=0.0,
                             weight_decay=0.0):
        """Compile ``fn(index, corruption, lr) -> cost``: one SGD step of dA
        ``layer`` on minibatch ``index`` of the shared matrix ``source``.

        ``cached=False``: ``source`` holds network inputs, pushed through the
        frozen layers below on every call (the tutorial's way).
        ``cached=True``: ``source`` holds the layer's own input, the stored
        output of the layers below (see ``layer_input_function``).
        ``momentum`` and ``weight_decay`` are as in ``sda.sgd.sgd_updates``.
        """
        index = pt.lscalar("index")
        corruption = pt.scalar("corruption")
        lr = pt.scalar("lr")
        auto_encoder = self.dA_layers[layer]
        cost, updates = auto_encoder.get_cost_updates(corruption, lr, momentum, weight_decay)
        fed = auto_encoder.x if cached else self.x
        return pytensor.function(
            [index, corruption, lr], cost, updates=updates,
            givens={fed: batch_slice(source, index, batch_size)},
            name=f"pretrain_layer{layer}",
        )

    def pretraining_functions(self, train_set_x, batch_size):
        """One compiled pre-training step per layer, fed from ``train_set_x``."""
        return [self.pretraining_function(i, train_set_x, batch_size) for i in range(self.n_layers)]

    def unrolled_pre_activation(self, input, depth=None):
        """The pre-activation of ``input``'s reconstruction through encoders
        ``0..depth-1`` and back down through the dAs' decoders (no noise):
        the stack unrolled into one deep auto-encoder. Default: every layer."""
        hidden = input
        for auto_encoder in self.dA_layers[:depth]:
            hidden = auto_encoder.get_hidden_values(hidden)
        for auto_encoder in reversed(self.dA_layers[:depth]):
            pre_activation = auto_encoder.get_reconstruction_pre_activation(hidden)
            hidden = pt.sigmoid(pre_activation)
        return pre_activation

    def layer_input_function(self, layer):
        """Compile ``f(x) -> input of dA layer``: the frozen encoders below it."""
        return pytensor.function([self.x], self.dA_layers[layer].x, name=f"encode_to_layer{layer}")

    # ------------------------------------------------------------- fine-tuning
    def build_finetune_functions(self, datasets, batch_size, learning_rate, eval_batch_size=None,
                                 momentum=0.0, weight_decay=0.0):
        """Return ``(train_fn, valid_score, test_score)``.

        ``datasets`` is ``[(train_x, train_y), (valid_x, valid_y), (test_x,
        test_y)]`` of shared variables. ``train_fn(index)`` takes one SGD step
        on a training minibatch and returns its cost. ``valid_score()`` and
        ``test_score()`` return the error rate of every evaluation batch
        (``eval_batch_size``, default ``batch_size``) over the whole split,
        the short last batch included; each has a ``batch_sizes`` array so
        ``numpy.average(scores, weights=fn.batch_sizes)`` is the split's error.
        With ``momentum``, the velocities are kept in ``self.finetune_velocities``.
        """
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = datasets
        index = pt.lscalar("index")
        updates, self.finetune_velocities = sgd_updates(
            self.finetune_cost, self.params, np.float32(learning_rate), momentum, weight_decay)
        train_fn = pytensor.function(
            [index], self.finetune_cost, updates=updates,
            givens={self.x: batch_slice(train_x, index, batch_size),
                    self.y: batch_slice(train_y, index, batch_size)},
            name="train",
        )
        eval_batch_size = eval_batch_size or batch_size
        valid_score = self.error_scorer(valid_x, valid_y, eval_batch_size, "valid")
        test_score = self.error_scorer(test_x, test_y, eval_batch_size, "test")
        return train_fn, valid_score, test_score

    def error_scorer(self, set_x, set_y, batch_size, name="score"):
        """A closure returning the per-batch error rates over a shared split.
        It is compiled once; calling it copies no data."""
        index = pt.lscalar("index")
        batch_error = pytensor.function(
            [index], self.errors,
            givens={self.x: batch_slice(set_x, index, batch_size),
                    self.y: batch_slice(set_y, index, batch_size)},
            name=name,
        )
        n_rows = set_x.get_value(borrow=True).shape[0]
        count = n_batches(n_rows, batch_size)

        def score():
            return [float(batch_error(i)) for i in range(count)]

        score.batch_sizes = np.diff(np.minimum(np.arange(count + 1) * batch_size, n_rows))
        return score

    # -------------------------------------------------------------- parameters
    def named_params(self):
        """Every shared parameter by a stable name, e.g. ``hidden0.W``; the
        dA's encoder is the hidden layer's, so it appears once."""
        named = {}
        for i, (hidden, auto_encoder) in enumerate(zip(self.sigmoid_layers, self.dA_layers)):
            named[f"hidden{i}.W"] = hidden.W
            named[f"hidden{i}.b"] = hidden.b
            for p in auto_encoder.params[2:]:
                named[f"dA{i}.{p.name}"] = p
        named["logistic.W"] = self.logLayer.W
        named["logistic.b"] = self.logLayer.b
        return named

    def random_generators(self):
        """The dAs' shared random generators, by name (for checkpoints)."""
        return {f"dA{i}.rng": a.rng for i, a in enumerate(self.dA_layers)}
