"""Multi-class logistic regression: the classifier on top of the stack."""

import numpy as np
import pytensor
import pytensor.tensor as pt

from sda.checks import check_count
from sda.graph_types import Tensor, TensorSharedVariable
from sda.mlp import zero_bias


class LogisticRegression:
    """Softmax regression ``P(y | x) = softmax(x W + b)``.

    ``W`` and ``b`` start at zero, as in the tutorial; the hidden layers
    below break the symmetry.

    Parameters
    ----------
    input : TensorVariable
        Symbolic input matrix, one example per row.
    n_in : int
        Input width.
    n_out : int
        Number of classes.
    W, b : shared variables, optional
        Existing weights (``n_in x n_out``) and bias to use instead of zeros.

    Attributes
    ----------
    p_y_given_x, log_p_y_given_x : TensorVariable
        Class probabilities and their logarithms (computed with ``log_softmax``).
    y_pred : TensorVariable
        The most probable class of each row.
    params : list of shared variables
        ``[W, b]``.

    Examples
    --------
    >>> import numpy as np, pytensor, pytensor.tensor as pt
    >>> from sda import LogisticRegression
    >>> x, y = pt.matrix("x"), pt.ivector("y")
    >>> classifier = LogisticRegression(x, n_in=3, n_out=4)
    >>> nll = pytensor.function([x, y], classifier.negative_log_likelihood(y))
    >>> round(float(nll(np.ones((2, 3), dtype="float32"), np.array([0, 3], dtype="int32"))), 4)
    1.3863
    """

    def __init__(
        self,
        input: Tensor,
        n_in: int,
        n_out: int,
        W: TensorSharedVariable | None = None,
        b: TensorSharedVariable | None = None,
    ) -> None:
        n_in, n_out = check_count("n_in", n_in), check_count("n_out", n_out, minimum=2)
        if W is None:  # zeros, as in the tutorial: each class's column gets its own gradient
            W = pytensor.shared(np.zeros((n_in, n_out), dtype=pytensor.config.floatX), name="W")
        self.W: TensorSharedVariable = W
        self.b = b if b is not None else zero_bias(n_out)
        self.input = input
        self.linear: Tensor = pt.dot(input, self.W) + self.b
        # Work in log space so a confident wrong answer costs a large,
        # finite amount instead of log(0) = -inf.
        self.log_p_y_given_x = pt.special.log_softmax(self.linear, axis=-1)
        self.p_y_given_x = pt.special.softmax(self.linear, axis=-1)
        self.y_pred = pt.argmax(self.linear, axis=1)
        self.params = [self.W, self.b]

    def negative_log_likelihood(self, y: Tensor) -> Tensor:
        """Mean negative log-probability of the correct labels ``y``.

        Parameters
        ----------
        y : TensorVariable
            Integer vector of labels, one per row of the input.

        Returns
        -------
        TensorVariable
            A scalar: the minibatch's mean cost.
        """
        # int64 bounds: PyTensor's JAX backend hands the default int8 constants to
        # jnp.arange, which overflows past 127 rows. The C graph is the same.
        rows = pt.arange(np.int64(0), y.shape[0], np.int64(1))
        cost: Tensor = -pt.mean(self.log_p_y_given_x[rows, y])
        return cost

    def errors(self, y: Tensor) -> Tensor:
        """Fraction of the minibatch that is misclassified.

        Parameters
        ----------
        y : TensorVariable
            Integer vector of labels, one per row of the input.

        Returns
        -------
        TensorVariable
            A floatX scalar in [0, 1].

        Raises
        ------
        TypeError
            If ``y`` is not a vector.
        """
        if y.ndim != self.y_pred.ndim:
            raise TypeError(f"y must be a vector of labels, got {y.ndim} dimensions")
        error_rate: Tensor = pt.mean(pt.neq(self.y_pred, y), dtype=pytensor.config.floatX)
        return error_rate
