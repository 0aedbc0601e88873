"""The denoising auto-encoder (Vincent et al., 2008).

Encode a corrupted input, decode, and score the reconstruction against the
clean input:

    x~ = x * m,             m_i ~ Bernoulli(1 - corruption_level)
    h  = sigmoid(x~ W + b_hid)
    z  = sigmoid(h W' + b_vis),  W' = W.T when the weights are tied
    L  = -sum_i [x_i log z_i + (1 - x_i) log(1 - z_i)]

The loss is computed from the decoder's pre-activation ``a`` (z = sigmoid(a))
through the identity ``L = sum_i softplus(a_i) - x_i a_i``, which stays finite
when a unit saturates; log(sigmoid(a)) rounds to log(0) in float32.
"""

import numpy as np
import pytensor
import pytensor.tensor as pt

from sda.checks import check_numpy_rng
from sda.constraints import LOSSES, check_setting
from sda.mlp import uniform_weights, zero_bias
from sda.noise import bernoulli
from sda.sgd import sgd_updates


def draw_seed(numpy_rng):
    """An integer seed from a numpy ``Generator`` or legacy ``RandomState``."""
    if isinstance(numpy_rng, np.random.Generator):
        return int(numpy_rng.integers(2**30))
    return int(numpy_rng.randint(2**30))


def reconstruction_loss(x, pre_activation, loss="cross_entropy"):
    """Per-example loss between targets ``x`` and ``sigmoid(pre_activation)``."""
    if loss == "cross_entropy":
        return pt.sum(pt.softplus(pre_activation) - x * pre_activation, axis=1)
    if loss == "squared":
        return pt.sum(pt.sqr(x - pt.sigmoid(pre_activation)), axis=1)
    raise ValueError(f"unknown loss {loss!r}: choose one of {LOSSES}")


class dA:
    """A denoising auto-encoder with masking noise.

    Pass ``W`` and ``bhid`` to share the encoder with a ``HiddenLayer``
    (the SdA does this). ``pytensor_rng`` is a shared random generator
    (``pt.random.shared_rng``); by default one is seeded from ``numpy_rng``.
    ``tied=False`` gives the decoder its own weight matrix ``W_prime``.

    Parameters
    ----------
    numpy_rng : numpy.random.RandomState or numpy.random.Generator
        Draws the initial weights (and the noise generator's seed).
    pytensor_rng : shared random generator, optional
        The masking noise's generator; its state advances with every step.
    input : TensorVariable, optional
        Symbolic input matrix; a new ``pt.matrix("x")`` by default.
    n_visible, n_hidden : int
        Inputs per example and hidden units.
    W, bhid, bvis : shared variables, optional
        Existing encoder weights, hidden bias and visible bias to use
        instead of new ones (``W`` is ``n_visible x n_hidden``).
    tied : bool
        Decode with ``W.T`` (True) or with a separate ``W_prime``.
    loss : {"cross_entropy", "squared"}
        The reconstruction loss.

    Attributes
    ----------
    x : TensorVariable
        The symbolic minibatch, one example per row.
    params : list of shared variables
        ``[W, b, b_prime]`` (plus ``W_prime`` when untied): what training updates.

    Examples
    --------
    >>> import numpy as np, pytensor
    >>> from sda import dA
    >>> auto_encoder = dA(np.random.RandomState(0), n_visible=6, n_hidden=3)
    >>> cost, updates = auto_encoder.get_cost_updates(corruption_level=0.3, learning_rate=0.1)
    >>> [variable.name for variable, _ in updates]
    ['W', 'bhid', 'bvis', None]
    >>> step = pytensor.function([auto_encoder.x], cost, updates=updates)
    >>> bool(step(np.full((4, 6), 0.5, dtype="float32")) > 0)
    True
    """

    def __init__(
        self,
        numpy_rng,
        pytensor_rng=None,
        input=None,
        n_visible=784,
        n_hidden=500,
        W=None,
        bhid=None,
        bvis=None,
        tied=True,
        loss="cross_entropy",
    ):
        check_numpy_rng("numpy_rng", numpy_rng)
        n_visible, n_hidden = check_setting("n_visible", n_visible), check_setting("n_hidden", n_hidden)
        check_setting("tied", tied)
        check_setting("loss", loss)
        self.n_visible, self.n_hidden = n_visible, n_hidden
        self.loss = loss
        self.W = W if W is not None else uniform_weights(numpy_rng, n_visible, n_hidden)
        self.b = bhid if bhid is not None else zero_bias(n_hidden, name="bhid")
        self.b_prime = bvis if bvis is not None else zero_bias(n_visible, name="bvis")
        if tied:
            self.W_prime = self.W.T
            self.params = [self.W, self.b, self.b_prime]
        else:
            self.W_prime = uniform_weights(numpy_rng, n_hidden, n_visible, name="W_prime")
            self.params = [self.W, self.b, self.b_prime, self.W_prime]
        if pytensor_rng is None:
            pytensor_rng = pt.random.shared_rng(np.random.default_rng(draw_seed(numpy_rng)))
        self.rng = pytensor_rng
        self.x = pt.matrix("x") if input is None else input

    def get_corruption_mask(self, input, corruption_level):
        """``(next_rng, mask)``: a float mask that zeroes each entry with
        probability ``corruption_level``."""
        # PyTensor's bernoulli's draws, taken faster (sda.noise). int8 draws
        # are the cheapest; cast before multiplying, or the product would be
        # upcast to float64.
        next_rng, mask = bernoulli(
            p=1 - corruption_level,
            size=input.shape,
            rng=self.rng,
            dtype="int8",
            return_next_rng=True,
        )
        return next_rng, pt.cast(mask, pytensor.config.floatX)

    def get_hidden_values(self, input):
        return pt.sigmoid(pt.dot(input, self.W) + self.b)

    def get_reconstruction_pre_activation(self, hidden):
        return pt.dot(hidden, self.W_prime) + self.b_prime

    def get_reconstructed_input(self, hidden):
        return pt.sigmoid(self.get_reconstruction_pre_activation(hidden))

    def corrupted_cost(self, corruption_level):
        """``(cost, mask, next_rng)``: mean loss over the minibatch ``self.x``."""
        next_rng, mask = self.get_corruption_mask(self.x, corruption_level)
        hidden = self.get_hidden_values(self.x * mask)
        pre_activation = self.get_reconstruction_pre_activation(hidden)
        cost = pt.mean(reconstruction_loss(self.x, pre_activation, self.loss))
        return cost, mask, next_rng

    def get_cost_updates(
        self, corruption_level, learning_rate, momentum=0.0, weight_decay=0.0, return_velocities=False
    ):
        """Cost and SGD updates for one step; the generator's update is
        included so every call draws a fresh mask. With
        ``return_velocities=True`` the momentum velocities the updates use
        (training state for a checkpoint) come back as a third value."""
        cost, _, next_rng = self.corrupted_cost(corruption_level)
        updates, velocities = sgd_updates(cost, self.params, learning_rate, momentum, weight_decay)
        updates.append((self.rng, next_rng))
        return (cost, updates, velocities) if return_velocities else (cost, updates)
