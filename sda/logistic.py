"""Multi-class logistic regression: the classifier on top of the stack."""

import numpy as np
import pytensor
import pytensor.tensor as pt


class LogisticRegression:
    """Softmax regression ``P(y | x) = softmax(x W + b)``.

    ``W`` and ``b`` start at zero, as in the tutorial; the hidden layers
    below break the symmetry.
    """

    def __init__(self, input, n_in, n_out, W=None, b=None):
        floatX = pytensor.config.floatX
        if W is None:
            W = pytensor.shared(np.zeros((n_in, n_out), dtype=floatX), name="W")
        if b is None:
            b = pytensor.shared(np.zeros(n_out, dtype=floatX), name="b")
        self.W, self.b = W, b
        self.input = input
        self.linear = pt.dot(input, W) + b
        # Work in log space so a confident wrong answer costs a large,
        # finite amount instead of log(0) = -inf.
        self.log_p_y_given_x = pt.special.log_softmax(self.linear, axis=-1)
        self.p_y_given_x = pt.special.softmax(self.linear, axis=-1)
        self.y_pred = pt.argmax(self.linear, axis=1)
        self.params = [self.W, self.b]

    def negative_log_likelihood(self, y):
        """Mean negative log-probability of the correct labels ``y``."""
        return -pt.mean(self.log_p_y_given_x[pt.arange(y.shape[0]), y])

    def errors(self, y):
        """Fraction of the minibatch that is misclassified."""
        if y.ndim != self.y_pred.ndim:
            raise TypeError(f"y must be a vector of labels, got {y.ndim} dimensions")
        return pt.mean(pt.neq(self.y_pred, y), dtype=pytensor.config.floatX)
