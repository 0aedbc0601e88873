"""Masking noise: Bernoulli draws with numpy's numbers at a fraction of the cost.

PyTensor's ``bernoulli`` draws through ``scipy.stats.bernoulli.rvs``, i.e.
``Generator.binomial(1, p)``, which spends about 20 ns on each entry of a
mask. For one trial numpy's binomial sampler (the inversion method of
``random_binomial`` in numpy's ``distributions.c``) reads one uniform double
``U`` per entry and compares it with ``qn = exp(log(1 - p'))``, where ``p'``
is the smaller of ``p`` and ``1 - p``:

    p <= 1/2:   draw = 1 if U > qn else 0          (p' = p)
    p >  1/2:   draw = 1 if U <= qn else 0         (p' = 1 - p, returned as 1 - X)

``Generator.random`` reads the very same doubles from the bit generator, so
drawing ``U`` for the whole mask at once and comparing gives the same bits
and leaves the generator in the same state, about five times faster. The
one case where numpy reads a second double (``U - qn`` exceeding the next
term of the inversion, possible only when ``qn`` rounds far enough below
``1 - p'``) is detected from ``p`` alone, before drawing, and left to numpy.
"""

import math

import numpy as np
from pytensor.tensor.random.basic import BernoulliRV

# The largest double Generator.random returns: (2**53 - 1) / 2**53.
LARGEST_UNIFORM = (2**53 - 1) / 2**53


def inversion_threshold(p: float) -> float | None:
    """The ``qn`` numpy's one-trial binomial sampler compares ``U`` with, for success probability ``p``.

    Parameters
    ----------
    p : float
        The probability of a one, in [0, 1].

    Returns
    -------
    float or None
        ``exp(log(1 - p'))`` with ``p' = min(p, 1 - p)`` computed as numpy
        computes it; None when some ``U`` would make numpy read a second
        double, so that comparing one ``U`` per entry would not reproduce it.

    Examples
    --------
    >>> inversion_threshold(0.7)  # keep a pixel with probability 0.7: U <= qn keeps it
    0.7
    """
    smaller = p if p <= 0.5 else 1.0 - p
    q = 1.0 - smaller
    qn = math.exp(1 * math.log(q))
    # numpy's next step after U > qn: U -= qn, then U > (p' qn) / q would draw again
    if LARGEST_UNIFORM - qn > (smaller * qn) / q:
        return None
    return qn


def bernoulli_mask(rng: np.random.Generator, p: float, size: tuple[int, ...]) -> np.ndarray | None:
    """``rng.binomial(1, p, size)``'s values and effect on ``rng``, as int8, drawn five times faster.

    Parameters
    ----------
    rng : numpy.random.Generator
        Advanced by one double per entry, as ``rng.binomial`` advances it.
    p : float
        The probability of a one, in [0, 1].
    size : tuple of int
        The mask's shape.

    Returns
    -------
    numpy.ndarray or None
        The int8 mask; None (and ``rng`` untouched) when ``p`` is one of the
        values for which ``inversion_threshold`` cannot reproduce numpy.

    Examples
    --------
    >>> a, b = np.random.default_rng(5), np.random.default_rng(5)
    >>> bool((bernoulli_mask(a, 0.7, (3, 4)) == b.binomial(1, 0.7, (3, 4))).all())
    True
    >>> a.random() == b.random()
    True
    """
    if p == 0.0:  # numpy returns 0 without drawing
        return np.zeros(size, dtype=np.int8)
    qn = inversion_threshold(p)
    if qn is None:
        return None
    uniform = rng.random(size)
    ones = uniform <= qn if p > 0.5 else uniform > qn
    return ones.view(np.int8)  # bool and int8 share their bytes: no copy


class FastBernoulliRV(BernoulliRV):
    """PyTensor's ``bernoulli`` with the same draws, taken by ``bernoulli_mask``
    on the C backend (``perform``).

    The Numba and JAX backends compile it as they compile ``bernoulli``, which
    it subclasses. A success probability that is not one number in [0, 1], a
    legacy ``RandomState`` or no ``size`` go through ``bernoulli`` unchanged.
    """

    @classmethod
    def rng_fn(cls, rng, p, size):
        """Draw the Bernoulli samples, as PyTensor's ``BernoulliRV.rng_fn`` does.

        Parameters
        ----------
        rng : numpy.random.Generator or numpy.random.RandomState
            The generator; it advances exactly as under ``Generator.binomial``.
        p : array_like
            The probability of a 1.
        size : tuple of int or None
            The output shape.

        Returns
        -------
        numpy.ndarray
            The samples: through :func:`bernoulli_mask` for one ``p`` and a
            ``Generator``, otherwise through PyTensor's own implementation.
        """
        if (
            isinstance(rng, np.random.Generator)
            and size is not None
            and np.size(p) == 1
            and np.ndim(p) <= len(size)  # p broadcasts to size
        ):
            value = float(np.reshape(p, ()))
            if 0.0 <= value <= 1.0:
                mask = bernoulli_mask(rng, value, tuple(size))
                if mask is not None:
                    return mask
        return super().rng_fn(rng, p, size)


bernoulli = FastBernoulliRV()
