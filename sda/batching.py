"""Minibatches over a shared matrix, and a scorer that averages over a whole split.

A split is cut into batches of ``batch_size`` rows in order; the last batch
may be short. Every loop and scorer uses these helpers so that they agree on
where a batch starts and how many there are.
"""

import math

import numpy as np


def batch_slice(data, index, batch_size):
    """Rows ``index * batch_size`` up to the next batch; the last may be short.

    Parameters
    ----------
    data : TensorVariable or numpy.ndarray
        A matrix or vector whose rows are the examples.
    index : int or scalar TensorVariable
        Which batch, counted from 0.
    batch_size : int
        Rows per batch.

    Returns
    -------
    The rows of batch ``index``, of the same kind as ``data``.

    Examples
    --------
    >>> batch_slice(np.arange(5), 2, 2)
    array([4])
    """
    return data[index * batch_size : (index + 1) * batch_size]


def n_batches(n_rows: int, batch_size: int) -> int:
    """Number of minibatches that cover all rows (the last may be short).

    Parameters
    ----------
    n_rows : int
        Rows in the split.
    batch_size : int
        Rows per batch.

    Returns
    -------
    int
        ``ceil(n_rows / batch_size)``.

    Examples
    --------
    >>> n_batches(25, 10)
    3
    """
    return math.ceil(n_rows / batch_size)


def batch_sizes(n_rows: int, batch_size: int) -> np.ndarray:
    """The number of rows in each batch, the short last one included.

    Parameters
    ----------
    n_rows : int
        Rows in the split.
    batch_size : int
        Rows per batch.

    Returns
    -------
    numpy.ndarray
        One count per batch, summing to ``n_rows``.

    Examples
    --------
    >>> batch_sizes(25, 10).tolist()
    [10, 10, 5]
    """
    count = n_batches(n_rows, batch_size)
    return np.diff(np.minimum(np.arange(count + 1) * batch_size, n_rows))


class SplitScorer:
    """The error rate of a whole split, computed one batch at a time.

    Calling the scorer returns each batch's error rate; ``error()`` weighs
    them by ``batch_sizes`` into the split's error rate.

    Parameters
    ----------
    batch_error : callable
        ``batch_error(index)``: the mean error over batch ``index``.
    n_rows : int
        Rows in the split.
    batch_size : int
        Rows per batch.

    Examples
    --------
    >>> labels = np.array([0, 1, 1, 0, 1])
    >>> scorer = SplitScorer(lambda i: np.mean(batch_slice(labels, i, 2)), n_rows=5, batch_size=2)
    >>> scorer()
    [0.5, 0.5, 1.0]
    >>> scorer.error()
    0.6
    """

    def __init__(self, batch_error, n_rows: int, batch_size: int):
        self.batch_error = batch_error
        self.batch_sizes = batch_sizes(n_rows, batch_size)

    def __call__(self) -> list[float]:
        return [float(self.batch_error(i)) for i in range(len(self.batch_sizes))]

    def error(self) -> float:
        """The split's error rate: every row counts once.

        Returns
        -------
        float
            The batches' error rates weighted by their sizes.
        """
        return float(np.average(self(), weights=self.batch_sizes))
