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

from typing import Literal, overload

import numpy as np
import pytensor
import pytensor.tensor as pt

from sda.checks import check_numpy_rng
from sda.constraints import LOSSES, check_setting
from sda.graph_types import (
    NumpyRNG,
    RandomGenerator,
    RandomGeneratorSharedVariable,
    Tensor,
    TensorSharedVariable,
    Update,
)
from sda.mlp import uniform_weights, zero_bias
from sda.noise import bernoulli
from sda.sgd import sgd_updates


def draw_seed(numpy_rng: NumpyRNG) -> int:
    """An integer seed from a numpy ``Generator`` or legacy ``RandomState``.

    Parameters
    ----------
    numpy_rng : numpy.random.Generator or numpy.random.RandomState
        The generator the seed is drawn from (it advances by one draw).

    Returns
    -------
    int
        A seed in ``[0, 2**30)``, as the tutorial draws its ``theano_rng``'s.

    Examples
    --------
    >>> draw_seed(np.random.RandomState(123)) == np.random.RandomState(123).randint(2**30)
    True
    """
    if isinstance(numpy_rng, np.random.Generator):
        return int(numpy_rng.integers(2**30))
    return int(numpy_rng.randint(2**30))


def reconstruction_loss(x: Tensor, pre_activation: Tensor, loss: str = "cross_entropy") -> Tensor:
    """Per-example loss between targets ``x`` and the reconstruction ``sigmoid(pre_activation)``.

    The cross-entropy ``-sum_i x_i log z_i + (1 - x_i) log(1 - z_i)`` with
    ``z = sigmoid(a)`` is written as ``sum_i softplus(a_i) - x_i a_i``, the
    same value, which stays finite when a unit saturates (``z`` rounding
    to 0 or 1 would make ``log z`` infinite).

    Parameters
    ----------
    x : TensorVariable
        The clean targets, one row per example, in [0, 1].
    pre_activation : TensorVariable
        The decoder's pre-activation ``a`` for the same rows.
    loss : {"cross_entropy", "squared"}
        The cross-entropy above, or the squared error ``sum_i (x_i - z_i)**2``.

    Returns
    -------
    TensorVariable
        One loss per row (summed over the row's entries).

    Raises
    ------
    ValueError
        For a ``loss`` that is neither.
    """
    if loss == "cross_entropy":
        cross_entropy: Tensor = pt.sum(pt.softplus(pre_activation) - x * pre_activation, axis=1)
        return cross_entropy
    if loss == "squared":
        squared: Tensor = pt.sum(pt.sqr(x - pt.sigmoid(pre_activation)), axis=1)
        return squared
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
        numpy_rng: NumpyRNG,
        pytensor_rng: RandomGeneratorSharedVariable | None = None,
        input: Tensor | None = None,
        n_visible: int = 784,
        n_hidden: int = 500,
        W: TensorSharedVariable | None = None,
        bhid: TensorSharedVariable | None = None,
        bvis: TensorSharedVariable | None = None,
        tied: bool = True,
        loss: str = "cross_entropy",
    ) -> None:
        check_numpy_rng("numpy_rng", numpy_rng)
        n_visible, n_hidden = check_setting("n_visible", n_visible), check_setting("n_hidden", n_hidden)
        check_setting("tied", tied)
        check_setting("loss", loss)
        self.n_visible, self.n_hidden = n_visible, n_hidden
        self.loss = loss
        self.W = W if W is not None else uniform_weights(numpy_rng, n_visible, n_hidden)
        self.b = bhid if bhid is not None else zero_bias(n_hidden, name="bhid")
        self.b_prime = bvis if bvis is not None else zero_bias(n_visible, name="bvis")
        self.W_prime: Tensor
        self.params: list[TensorSharedVariable]
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

    def get_corruption_mask(
        self, input: Tensor, corruption_level: float | Tensor
    ) -> tuple[RandomGenerator, Tensor]:
        """A masking-noise mask for ``input`` and the generator's next state.

        Parameters
        ----------
        input : TensorVariable
            The rows to be corrupted; the mask has their shape.
        corruption_level : float or TensorVariable
            The probability that an entry is zeroed, in [0, 1).

        Returns
        -------
        next_rng : shared-generator update value
            The state ``self.rng`` must take after the draw (an update of
            the compiled function, so every call draws a fresh mask).
        mask : TensorVariable
            floatX entries, 0 with probability ``corruption_level``, else 1.
        """
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

    def get_hidden_values(self, input: Tensor) -> Tensor:
        """The code ``sigmoid(input W + b)``.

        Parameters
        ----------
        input : TensorVariable
            Rows of visible values (corrupted or clean).

        Returns
        -------
        TensorVariable
            One row of ``n_hidden`` values per input row.
        """
        hidden: Tensor = pt.sigmoid(pt.dot(input, self.W) + self.b)
        return hidden

    def get_reconstruction_pre_activation(self, hidden: Tensor) -> Tensor:
        """The decoder's pre-activation ``hidden W' + b'`` (``W' = W.T`` when tied).

        Parameters
        ----------
        hidden : TensorVariable
            Rows of codes.

        Returns
        -------
        TensorVariable
            One row of ``n_visible`` values per code; the loss works on these.
        """
        pre_activation: Tensor = pt.dot(hidden, self.W_prime) + self.b_prime
        return pre_activation

    def get_reconstructed_input(self, hidden: Tensor) -> Tensor:
        """The reconstruction ``sigmoid(hidden W' + b')``.

        Parameters
        ----------
        hidden : TensorVariable
            Rows of codes.

        Returns
        -------
        TensorVariable
            One row of ``n_visible`` values in (0, 1) per code.
        """
        reconstruction: Tensor = pt.sigmoid(self.get_reconstruction_pre_activation(hidden))
        return reconstruction

    def corrupted_cost(self, corruption_level: float | Tensor) -> tuple[Tensor, Tensor, RandomGenerator]:
        """The denoising cost of the minibatch ``self.x``.

        Parameters
        ----------
        corruption_level : float or TensorVariable
            The probability that an input entry is zeroed before encoding.

        Returns
        -------
        cost : TensorVariable
            The mean over rows of the reconstruction loss against the clean
            ``self.x``.
        mask : TensorVariable
            The mask the corrupted input was multiplied by.
        next_rng : shared-generator update value
            The noise generator's next state (see :meth:`get_corruption_mask`).
        """
        next_rng, mask = self.get_corruption_mask(self.x, corruption_level)
        hidden = self.get_hidden_values(self.x * mask)
        pre_activation = self.get_reconstruction_pre_activation(hidden)
        cost: Tensor = pt.mean(reconstruction_loss(self.x, pre_activation, self.loss))
        return cost, mask, next_rng

    @overload
    def get_cost_updates(
        self,
        corruption_level: float | Tensor,
        learning_rate: float | Tensor,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        return_velocities: Literal[False] = False,
    ) -> tuple[Tensor, list[Update]]: ...

    @overload
    def get_cost_updates(
        self,
        corruption_level: float | Tensor,
        learning_rate: float | Tensor,
        momentum: float,
        weight_decay: float,
        return_velocities: Literal[True],
    ) -> tuple[Tensor, list[Update], list[TensorSharedVariable]]: ...

    def get_cost_updates(
        self,
        corruption_level: float | Tensor,
        learning_rate: float | Tensor,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        return_velocities: bool = False,
    ) -> tuple[Tensor, list[Update]] | tuple[Tensor, list[Update], list[TensorSharedVariable]]:
        """Cost and SGD updates for one step, as the tutorial's method is called.

        The generator's update is included, so every call of a function
        compiled with these updates draws a fresh mask.

        Parameters
        ----------
        corruption_level : float or TensorVariable
            The probability that an input entry is zeroed.
        learning_rate : float or TensorVariable
            The SGD step on the minibatch's mean cost.
        momentum, weight_decay : float
            As in :func:`sda.sgd.sgd_updates` (0: plain SGD).
        return_velocities : bool
            Also return the momentum velocities the updates use (training
            state, for a checkpoint).

        Returns
        -------
        cost : TensorVariable
            The minibatch's mean reconstruction loss.
        updates : list of (shared variable, expression)
            The parameter updates and the generator's.
        velocities : list of shared variables
            Only with ``return_velocities=True``.
        """
        cost, _, next_rng = self.corrupted_cost(corruption_level)
        updates: list[Update]
        velocities: list[TensorSharedVariable]
        updates, velocities = sgd_updates(cost, self.params, learning_rate, momentum, weight_decay)
        updates.append((self.rng, next_rng))
        return (cost, updates, velocities) if return_velocities else (cost, updates)
