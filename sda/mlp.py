"""A fully connected hidden layer, as used in the tutorial's MLP."""

import numpy as np
import pytensor
import pytensor.tensor as pt


def uniform_weights(rng, n_in, n_out, activation=pt.sigmoid, name="W"):
    """The tutorial's initialisation: U(-r, r) with r = sqrt(6 / (n_in + n_out)).

    Glorot and Bengio derived r for tanh; for the logistic sigmoid, whose
    slope at 0 is a quarter of tanh's, the range is four times wider.
    """
    bound = np.sqrt(6.0 / (n_in + n_out))
    if activation is pt.sigmoid:
        bound *= 4
    values = rng.uniform(low=-bound, high=bound, size=(n_in, n_out))
    return pytensor.shared(values.astype(pytensor.config.floatX), name=name)


def zero_bias(n, name="b"):
    return pytensor.shared(np.zeros(n, dtype=pytensor.config.floatX), name=name)


class HiddenLayer:
    """``output = activation(input W + b)``; ``activation=None`` means linear.

    ``rng`` is a ``numpy.random.Generator`` or ``RandomState``. Pass ``W``
    and ``b`` to share existing parameters instead of creating new ones.
    """

    def __init__(self, rng, input, n_in, n_out, W=None, b=None, activation=pt.sigmoid):
        self.W = W if W is not None else uniform_weights(rng, n_in, n_out, activation)
        self.b = b if b is not None else zero_bias(n_out)
        self.input = input
        self.pre_activation = pt.dot(input, self.W) + self.b
        self.output = self.pre_activation if activation is None else activation(self.pre_activation)
        self.params = [self.W, self.b]
