"""A fully connected hidden layer, as used in the tutorial's MLP."""

from collections.abc import Callable

import numpy as np
import pytensor
import pytensor.tensor as pt

from sda.checks import check_count, check_numpy_rng
from sda.graph_types import NumpyRNG, Tensor, TensorSharedVariable

Activation = Callable[[Tensor], Tensor]


def uniform_weights(
    rng: NumpyRNG, n_in: int, n_out: int, activation: Activation | None = pt.sigmoid, name: str = "W"
) -> TensorSharedVariable:
    """The tutorial's initialisation: U(-r, r) with r = sqrt(6 / (n_in + n_out)).

    Glorot and Bengio derived r for tanh; for the logistic sigmoid, whose
    slope at 0 is a quarter of tanh's, the range is four times wider.

    Parameters
    ----------
    rng : numpy.random.Generator or numpy.random.RandomState
        Draws the weights.
    n_in, n_out : int
        The matrix's rows (inputs) and columns (units).
    activation : callable or None
        The units' activation; ``pt.sigmoid`` widens the range fourfold.
    name : str
        The shared variable's name.

    Returns
    -------
    TensorSharedVariable
        An ``n_in x n_out`` floatX matrix.

    Examples
    --------
    >>> W = uniform_weights(np.random.default_rng(0), 4, 2)
    >>> W.get_value().shape, bool(abs(W.get_value()).max() <= 4 * np.sqrt(6 / 6))
    ((4, 2), True)
    """
    bound = np.sqrt(6.0 / (n_in + n_out))
    if activation is pt.sigmoid:
        bound *= 4
    values = rng.uniform(low=-bound, high=bound, size=(n_in, n_out))
    weights: TensorSharedVariable = pytensor.shared(values.astype(pytensor.config.floatX), name=name)
    return weights


def zero_bias(n: int, name: str = "b") -> TensorSharedVariable:
    """A shared floatX vector of ``n`` zeros: every layer's starting bias.

    Parameters
    ----------
    n : int
        The vector's length.
    name : str
        The shared variable's name.

    Returns
    -------
    TensorSharedVariable
        ``n`` zeros of ``pytensor.config.floatX``.

    Examples
    --------
    >>> zero_bias(3).get_value()
    array([0., 0., 0.], dtype=float32)
    """
    bias: TensorSharedVariable = pytensor.shared(np.zeros(n, dtype=pytensor.config.floatX), name=name)
    return bias


class HiddenLayer:
    """``output = activation(input W + b)``; ``activation=None`` means linear.

    ``rng`` is a ``numpy.random.Generator`` or ``RandomState``. Pass ``W``
    and ``b`` to share existing parameters instead of creating new ones.

    Parameters
    ----------
    rng : numpy.random.Generator or numpy.random.RandomState
        Draws the initial weights, uniform in ``+-sqrt(6 / (n_in + n_out))``
        (four times wider for the sigmoid).
    input : TensorVariable
        Symbolic input matrix, one example per row.
    n_in, n_out : int
        Input and output widths.
    W, b : shared variables, optional
        Existing weights (``n_in x n_out``) and bias to use.
    activation : callable or None
        Applied to ``input W + b``; ``pt.sigmoid`` by default.

    Attributes
    ----------
    output : TensorVariable
        The layer's symbolic output.
    params : list of shared variables
        ``[W, b]``.

    Examples
    --------
    >>> import numpy as np, pytensor, pytensor.tensor as pt
    >>> from sda import HiddenLayer
    >>> x = pt.matrix("x")
    >>> layer = HiddenLayer(np.random.default_rng(0), x, n_in=4, n_out=2)
    >>> f = pytensor.function([x], layer.output)
    >>> f(np.zeros((3, 4), dtype="float32"))  # sigmoid(0 + zero bias)
    array([[0.5, 0.5],
           [0.5, 0.5],
           [0.5, 0.5]], dtype=float32)
    """

    def __init__(
        self,
        rng: NumpyRNG,
        input: Tensor,
        n_in: int,
        n_out: int,
        W: TensorSharedVariable | None = None,
        b: TensorSharedVariable | None = None,
        activation: Activation | None = pt.sigmoid,
    ) -> None:
        check_numpy_rng("rng", rng)
        n_in, n_out = check_count("n_in", n_in), check_count("n_out", n_out)
        self.W = W if W is not None else uniform_weights(rng, n_in, n_out, activation)
        self.b = b if b is not None else zero_bias(n_out)
        self.input = input
        self.pre_activation: Tensor = pt.dot(input, self.W) + self.b
        self.output = self.pre_activation if activation is None else activation(self.pre_activation)
        self.params = [self.W, self.b]
