"""The pieces of batch fine-tuning: one flat parameter vector, a deterministic
objective over it, and the line searches of conjugate gradient and L-BFGS.

SGD steps after every minibatch with a hand-set learning rate. Here
fine-tuning is posed as the minimisation of a deterministic function:
scipy's optimisers see every parameter of the network as a single float64
vector (:class:`FlatParams`), get a mean cost and its gradient at that vector
(:class:`FlatObjective`), and pick their own step lengths by line search
(:func:`run_line_searches`). Cost is counted in *pass-equivalents*: every row
pushed through forward and backward, line-search trial points included,
divided by the training-set size. The loop that runs them batch by batch is
``sda.finetune`` (its ``BatchStep``); the measures it watches are here too
(:func:`classifier_measures`, :func:`autoencoder_measures`, and the unrolled
:class:`DeepAutoencoder`).
"""

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, cast

import numpy as np
import pytensor
import pytensor.tensor as pt
from scipy.optimize import fmin_cg, minimize
from threadpoolctl import ThreadpoolController

from sda.batching import batch_sizes
from sda.checks import check_count, check_probability
from sda.constraints import DEFAULT_CHUNK_ROWS, check_setting
from sda.dA import reconstruction_loss
from sda.engine import batched_function
from sda.errors import check_finite
from sda.graph_types import Tensor, TensorSharedVariable

METHODS = ("cg", "lbfgs")
PHASES = {"cg": "CG fine-tuning", "lbfgs": "L-BFGS fine-tuning"}  # names in divergence errors


class FlatParams:
    """A list of shared variables seen as one flat float64 vector.

    ``unpack`` writes into the very shared variables it was given, so every
    compiled function that uses them (SGD's, the scorers) sees the values.

    Parameters
    ----------
    params : iterable of TensorSharedVariable
        The parameters, in the order their values are laid out in the vector
        (e.g. ``SdA.params``).

    Raises
    ------
    ValueError
        ``params`` is empty.

    Examples
    --------
    >>> import pytensor
    >>> W = pytensor.shared(np.ones((2, 3), dtype=np.float32))
    >>> b = pytensor.shared(np.zeros(3, dtype=np.float32))
    >>> flat = FlatParams([W, b])
    >>> flat.size, flat.pack().dtype, int(flat.matrix_mask().sum())
    (9, dtype('float64'), 6)
    """

    def __init__(self, params: Iterable[TensorSharedVariable]):
        self.params = list(params)
        if not self.params:
            raise ValueError("no parameters to flatten: pass the model's shared variables")
        # (start, end, shape) of each parameter in the vector, as scikit-learn's MLP does
        self._indptr = []
        start = 0
        for p in self.params:
            shape = p.get_value(borrow=True).shape
            end = start + int(np.prod(shape))
            self._indptr.append((start, end, shape))
            start = end
        self.size = start

    def pack(self) -> np.ndarray:
        """The current values, concatenated into a new float64 vector.

        Returns
        -------
        numpy.ndarray
            float64, of length ``size``: each parameter raveled in C order, one after another.
        """
        return np.concatenate([p.get_value(borrow=True).ravel() for p in self.params], dtype=np.float64)

    def unpack(self, vector: np.ndarray) -> None:
        """Set every parameter from its slice of ``vector``, cast to its dtype.

        Parameters
        ----------
        vector : array_like
            ``size`` values laid out as :meth:`pack` lays them out.

        Raises
        ------
        ValueError
            ``vector`` is not of shape ``(size,)``.
        """
        vector = np.asarray(vector)
        if vector.shape != (self.size,):
            raise ValueError(f"expected a vector of {self.size} values, got shape {vector.shape}")
        for p, (start, end, shape) in zip(self.params, self._indptr):
            # astype copies, so the shared variable may keep the array
            p.set_value(vector[start:end].reshape(shape).astype(p.dtype), borrow=True)

    def matrix_mask(self) -> np.ndarray:
        """True at the entries of weight matrices: what weight decay acts on (not biases),
        as in ``sda.sgd.sgd_updates``.

        Returns
        -------
        numpy.ndarray
            Boolean, of length ``size``.
        """
        mask = np.zeros(self.size, dtype=bool)
        for start, end, shape in self._indptr:
            mask[start:end] = len(shape) == 2
        return mask


def weight_penalty(params: Iterable[TensorSharedVariable], weight_decay: float) -> float:
    """``weight_decay / 2`` times the squared weight-matrix entries: the term
    whose gradient is SGD's ``weight_decay * W`` (``sda.sgd.sgd_updates``).

    Parameters
    ----------
    params : iterable of TensorSharedVariable
        The model's parameters; only the 2-d ones (weight matrices) count, not biases.
    weight_decay : float
        The L2 coefficient, as given to SGD; 0 gives 0 without reading the parameters.

    Returns
    -------
    float
        The penalty, summed in float64.
    """
    if not weight_decay:
        return 0.0
    return (
        0.5
        * weight_decay
        * sum(
            float(np.sum(np.square(p.get_value(borrow=True), dtype=np.float64)))
            for p in params
            if p.ndim == 2
        )
    )


def dropout_mask(rng: np.random.Generator, shape: tuple[int, ...], corruption: float) -> np.ndarray:
    """A float32 input-dropout multiplier: 0 with probability ``corruption``,
    else ``1 / (1 - corruption)``, so a masked pixel keeps its expected value
    (the fixed-mask twin of ``SdA.dropped_input``).

    Parameters
    ----------
    rng : numpy.random.Generator
        Draws the mask (one uniform number per entry).
    shape : tuple of int
        The mask's shape: ``(rows, pixels)`` of the input it multiplies.
    corruption : float
        The probability of dropping an entry, in [0, 1).

    Returns
    -------
    numpy.ndarray
        float32, of shape ``shape``.

    Examples
    --------
    >>> dropout_mask(np.random.default_rng(0), (2, 4), 0.5)
    array([[2., 0., 0., 0.],
           [2., 2., 2., 2.]], dtype=float32)
    """
    keep = rng.random(shape) >= corruption
    return keep.astype(np.float32) / np.float32(1 - corruption)


def _chunked(outputs, inputs, data, chunk_rows, name):
    """Compile ``fn(chunk) -> outputs`` on chunk ``chunk`` of the shared ``data``
    (one per symbolic input); also return each chunk's share of the rows."""
    index = pt.lscalar("chunk")
    fn = batched_function(index, [], outputs, dict(zip(inputs, data)), chunk_rows, name=name)
    n_rows = data[0].get_value(borrow=True).shape[0]
    return fn, batch_sizes(n_rows, chunk_rows) / n_rows


class FlatObjective:
    """``(cost, gradient)`` of a mean cost at a flat vector of ``params``.

    The cost is averaged over the rows of ``data`` (shared variables fed to
    the symbolic ``inputs``) chosen by :meth:`use_rows` (default: all), chunk
    by chunk through one compiled function and weighted by rows, plus
    ``weight_decay / 2`` times the squared weight-matrix entries (the
    objective SGD with the same weight decay minimises). For a fixed choice
    of rows it is the same deterministic function at every call, which the
    line searches of CG and L-BFGS rely on.

    With ``input_dropout`` p > 0 the first input (the pixels) is multiplied by
    a fixed mask: each entry 0 with probability p, else ``1 / (1 - p)``, as
    SGD's ``SdA.dropped_input`` does. The mask is drawn by :meth:`use_rows`
    from its ``mask_seed``, not by a random stream, so that every line search
    on a batch still sees one deterministic function.

    ``examples`` counts rows pushed through forward and backward, so
    ``passes`` (``examples`` over the number of data rows) is the cost in
    pass-equivalents; ``fun_evals`` and ``grad_evals`` count what the
    optimiser asked for. The last point is remembered, so asking for the
    value and then the gradient costs one evaluation. Every cost, gradient
    and vector is checked to be finite (``phase`` and ``where``, e.g.
    ``{"epoch": 2, "step": 40}``, name the place in the error).

    Parameters
    ----------
    cost : TensorVariable
        The symbolic scalar mean cost over a batch of ``inputs`` (e.g. ``SdA.finetune_cost``).
    params : sequence of TensorSharedVariable
        The parameters to optimise; they make up the flat vector (:class:`FlatParams`).
    inputs : sequence of TensorVariable
        The symbolic inputs of ``cost`` (e.g. ``[model.x, model.y]``); the first is the pixels.
    data : sequence of TensorSharedVariable
        The shared data fed to each input, row by row (e.g. ``[train_x, train_y]``).
    chunk_rows : int
        Rows per call of the compiled function: bounds memory, not the result.
    weight_decay : float
        The L2 coefficient on the weight matrices (biases are not decayed).
    phase : str
        Names the phase in a divergence error.
    input_dropout : float
        The probability p of dropping each input pixel, in [0, 1); 0 keeps every pixel.

    Raises
    ------
    SettingError
        A bad ``chunk_rows``, ``weight_decay`` or ``input_dropout``.
    ValueError
        ``params`` is empty.
    """

    def __init__(
        self,
        cost: Tensor,
        params: Sequence[TensorSharedVariable],
        inputs: Sequence[Tensor],
        data: Sequence[TensorSharedVariable],
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        weight_decay: float = 0.0,
        phase: str = "CG fine-tuning",
        input_dropout: float = 0.0,
    ):
        check_count("chunk_rows", chunk_rows)
        check_setting("weight_decay", weight_decay)
        check_probability("input_dropout", input_dropout)
        self.flat = FlatParams(params)
        # a list of tensors, given a list of parameters
        grads = cast(list[Tensor], pytensor.grad(cost, self.flat.params))
        flat_grad = pt.concatenate([g.flatten() for g in grads])
        rows = pt.lvector("rows")
        givens: dict[Any, Any] = {v: d[rows] for v, d in zip(inputs, data)}
        fn_inputs = [rows]
        if input_dropout:
            mask = pt.tensor("dropout_mask", dtype=inputs[0].dtype, shape=(None,) * data[0].ndim)
            givens[inputs[0]] = data[0][rows] * mask
            fn_inputs.append(mask)
        self._fn = pytensor.function(fn_inputs, [cost, flat_grad], name="cost_and_flat_grad", givens=givens)
        self.n_rows, *self._row_shape = data[0].get_value(borrow=True).shape
        self.chunk_rows, self.weight_decay, self.phase = chunk_rows, weight_decay, phase
        self.input_dropout = input_dropout
        self._decayed = self.flat.matrix_mask()
        self.where: dict[str, int] = {}
        self.examples = self.fun_evals = self.grad_evals = 0
        # with dropout, no mask until use_rows draws one
        self._chunks: list[tuple[np.ndarray, ...]] | None = None
        self._last: tuple[np.ndarray, float, np.ndarray] | None = None  # (vector, cost, gradient)
        if not input_dropout:
            self.use_rows(np.arange(self.n_rows))

    @property
    def passes(self) -> float:
        """Rows pushed through forward and backward, in whole-data-set units."""
        return self.examples / self.n_rows

    def use_rows(
        self, rows: Sequence[int] | np.ndarray, mask_seed: int | Sequence[int] | None = None
    ) -> None:
        """Make the mean run over these row numbers of the data from now on.

        With input dropout, ``mask_seed`` (an int or a sequence of ints, e.g.
        ``(seed, epoch, batch)``) draws the mask these rows keep until the next
        call; it is required then and unused otherwise. Until the first call
        the mean runs over every row (with input dropout there is no mean
        until then).

        Parameters
        ----------
        rows : array_like of int
            Row numbers of the data, in any order; repeats count twice.
        mask_seed : int or sequence of int, optional
            Seeds the input-dropout mask of these rows.

        Raises
        ------
        ValueError
            ``rows`` is not a non-empty vector, or the objective drops input
            pixels and ``mask_seed`` is missing.
        """
        rows = np.asarray(rows, dtype=np.int64)
        if rows.ndim != 1 or rows.size == 0:
            raise ValueError("use_rows needs a non-empty vector of row numbers")
        inputs = [rows]  # what self._fn takes, row by row
        if self.input_dropout:
            if mask_seed is None:
                raise ValueError("this objective drops input pixels: pass use_rows a mask_seed")
            inputs.append(
                dropout_mask(
                    np.random.default_rng(mask_seed), (rows.size, *self._row_shape), self.input_dropout
                )
            )
        self._chunks = [
            tuple(part[i : i + self.chunk_rows] for part in inputs)
            for i in range(0, rows.size, self.chunk_rows)
        ]
        self._last = None

    def evaluate(self, vector: np.ndarray) -> tuple[float, np.ndarray]:
        """Cost and float64 gradient at ``vector``; the model is left at ``vector``.

        Asking again at the same vector costs nothing; otherwise every chosen
        row goes forward and backward once (counted in ``examples``).

        Parameters
        ----------
        vector : array_like
            A point in parameter space, laid out as :meth:`FlatParams.pack` lays it out.

        Returns
        -------
        cost : float
            The row-weighted mean cost plus the weight penalty.
        gradient : numpy.ndarray
            Its float64 gradient with respect to ``vector``.

        Raises
        ------
        ValueError
            The objective drops input pixels and :meth:`use_rows` has not drawn a mask yet.
        sda.errors.TrainingDiverged
            The vector, the cost or the gradient is not finite.
        """
        if self._last is not None and np.array_equal(vector, self._last[0]):
            return self._last[1], self._last[2]
        if self._chunks is None:
            raise ValueError(
                "this objective drops input pixels: call use_rows(rows, mask_seed) before evaluating it"
            )
        vector = np.array(vector, dtype=np.float64)
        check_finite(vector, self.phase, "parameter vector", **self.where)
        self.flat.unpack(vector)
        cost, grad = 0.0, np.zeros(self.flat.size)
        total = sum(chunk[0].size for chunk in self._chunks)
        for chunk in self._chunks:
            chunk_cost, chunk_grad = self._fn(*chunk)
            weight = chunk[0].size / total
            cost += weight * float(chunk_cost)
            grad += weight * chunk_grad  # weight is a Python float: the sum stays float64
        self.examples += total
        if self.weight_decay:
            decayed = vector[self._decayed]
            cost += 0.5 * self.weight_decay * float(decayed @ decayed)
            grad[self._decayed] += self.weight_decay * decayed
        check_finite(cost, self.phase, "cost", **self.where)
        check_finite(grad, self.phase, "gradient", **self.where)
        self._last = (vector, cost, grad)
        return cost, grad

    def move_to(self, vector: np.ndarray) -> None:
        """Leave the model at ``vector`` (an iterate the optimiser accepted).

        Parameters
        ----------
        vector : array_like
            A point in parameter space, laid out as :meth:`FlatParams.pack` lays it out.
        """
        self.flat.unpack(vector)
        self._last = None  # the cached point is no longer the model's

    def value(self, vector: np.ndarray) -> float:
        """The cost at ``vector``, counted as one function evaluation (scipy's ``f``).

        Parameters
        ----------
        vector : numpy.ndarray
            A point in parameter space.

        Returns
        -------
        float
            As the cost of :meth:`evaluate`.
        """
        self.fun_evals += 1
        return self.evaluate(vector)[0]

    def gradient(self, vector: np.ndarray) -> np.ndarray:
        """The gradient at ``vector``, counted as one gradient evaluation (scipy's ``fprime``).

        Parameters
        ----------
        vector : numpy.ndarray
            A point in parameter space.

        Returns
        -------
        numpy.ndarray
            As the gradient of :meth:`evaluate`.
        """
        self.grad_evals += 1
        return self.evaluate(vector)[1]

    def value_and_gradient(self, vector: np.ndarray) -> tuple[float, np.ndarray]:
        """Cost and gradient at ``vector``, counted as one of each (scipy's ``jac=True``).

        Parameters
        ----------
        vector : numpy.ndarray
            A point in parameter space.

        Returns
        -------
        cost : float
        gradient : numpy.ndarray
            As :meth:`evaluate` gives them.
        """
        self.fun_evals += 1
        self.grad_evals += 1
        return self.evaluate(vector)


def single_thread_scipy() -> AbstractContextManager[Any]:
    """Limit the OpenBLAS bundled with numpy and scipy to one thread.

    The optimisers' vector algebra runs on it. It is memory-bound, so extra
    threads only add latency: on busy cores they made CG and L-BFGS twice as
    slow. PyTensor's BLAS keeps its threads.

    Returns
    -------
    contextlib.AbstractContextManager
        threadpoolctl's limiter. The limit applies at once; leaving its
        ``with`` block (or its ``restore_original_limits()``) lifts it.
    """
    return ThreadpoolController().select(prefix="libscipy_openblas").limit(limits=1)


class DeepAutoencoder:
    """The SdA's pre-trained layers unrolled into one deep auto-encoder.

    The input goes up through the hidden layers' encoders and back down
    through the dAs' decoders in reverse order, sigmoid everywhere and no
    corruption. Decoders are tied (``W.T``) unless the dAs were built
    untied, so the parameters are the encoders' ``W``, ``b`` plus each
    decoder's visible bias (and its own matrix when untied). They are the
    SdA's shared variables: fine-tuning this changes the SdA's encoders.

    Parameters
    ----------
    model : SdA
        A (pre-trained) stacked denoising auto-encoder; its ``x`` is this one's input.
    """

    def __init__(self, model: Any):
        self.x = model.x
        pre_activation = model.unrolled_pre_activation(model.x)
        self.reconstruction = pt.sigmoid(pre_activation)
        # The loss works on the pre-activation, which stays finite when units saturate.
        loss = model.dA_layers[0].loss
        self.cost = pt.mean(reconstruction_loss(self.x, pre_activation, loss))
        # Hinton & Salakhutdinov's reconstruction measure: squared error summed over pixels
        self.squared_error = pt.mean(pt.sum(pt.sqr(self.x - self.reconstruction), axis=1))
        self.params = [p for layer in model.sigmoid_layers for p in layer.params]
        self.params += [p for a in reversed(model.dA_layers) for p in a.params[2:]]

    def error_function(
        self, data_x: TensorSharedVariable, chunk_rows: int = DEFAULT_CHUNK_ROWS, squared: bool = False
    ) -> Callable[[], float]:
        """A function returning the mean reconstruction loss per row of ``data_x``
        (with ``squared``: the squared error summed over each row's pixels).

        Parameters
        ----------
        data_x : TensorSharedVariable
            The input rows (pixels) to reconstruct.
        chunk_rows : int
            Rows per call of the compiled function: bounds memory, not the result.
        squared : bool
            Measure the squared error summed over pixels (Hinton & Salakhutdinov's
            measure) instead of the dAs' training loss.

        Returns
        -------
        callable
            ``() -> float``: the mean over every row at the model's current parameters.
        """
        fn, weights = _chunked(
            self.squared_error if squared else self.cost, [self.x], [data_x], chunk_rows, "reconstruction"
        )
        return lambda: float(sum(w * fn(i) for i, w in enumerate(weights)))


# ------------------------------------------------------------- measures
def classifier_measures(
    model: Any,
    datasets: Sequence[tuple[TensorSharedVariable, TensorSharedVariable]],
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    weight_decay: float = 0.0,
) -> tuple[Callable[[], float], Callable[[], float], Callable[[], float]]:
    """``(train_loss, valid_error, test_error)`` of a supervised SdA, for ``sda.finetune.Monitor``:
    the mean training cost over every training row plus the weight penalty (the
    objective every optimiser minimises), and the validation and test errors.

    Parameters
    ----------
    model : SdA
        The network measured, at its current parameters on every call.
    datasets : sequence of (TensorSharedVariable, TensorSharedVariable)
        ``(x, y)`` shared pairs of the training, validation and test sets, in that order.
    chunk_rows : int
        Rows per call of the compiled functions: bounds memory, not the result.
    weight_decay : float
        The L2 coefficient the training loss includes (:func:`weight_penalty`).

    Returns
    -------
    train_loss, valid_error, test_error : callable
        Each ``() -> float``; the errors are fractions of rows misclassified, in [0, 1].
    """
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = datasets
    loss, weights = _chunked(
        model.finetune_cost, [model.x, model.y], [train_x, train_y], chunk_rows, "train_loss"
    )
    valid_score = model.error_scorer(valid_x, valid_y, chunk_rows, "valid")
    test_score = model.error_scorer(test_x, test_y, chunk_rows, "test")

    def train_loss() -> float:
        loss_sum = sum(w * float(loss(i)) for i, w in enumerate(weights))
        return loss_sum + weight_penalty(model.params, weight_decay)

    return train_loss, valid_score.error, test_score.error


def autoencoder_measures(
    autoencoder: DeepAutoencoder,
    train_x: TensorSharedVariable,
    valid_x: TensorSharedVariable,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> tuple[Callable[[], float], Callable[[], float]]:
    """``(train_loss, valid_loss)`` of a :class:`DeepAutoencoder`, for ``sda.finetune.Monitor``:
    the mean reconstruction loss per training and per validation row.

    Parameters
    ----------
    autoencoder : DeepAutoencoder
        The unrolled network measured, at its current parameters on every call.
    train_x, valid_x : TensorSharedVariable
        The training and validation input rows.
    chunk_rows : int
        Rows per call of the compiled functions: bounds memory, not the result.

    Returns
    -------
    train_loss, valid_loss : callable
        Each ``() -> float`` (:meth:`DeepAutoencoder.error_function`).
    """
    return autoencoder.error_function(train_x, chunk_rows), autoencoder.error_function(valid_x, chunk_rows)


class StopSearch(Exception):
    """Ends the line searches of :func:`run_line_searches` from their callback
    (``fmin_cg`` has no other stop hook)."""


def _optimise(objective, method, iterations, callback):
    """``iterations`` iterations of ``method`` from the model's parameters, on the
    objective's current rows; ``callback(vector)`` sees each accepted iterate."""
    x0 = objective.flat.pack()
    if method == "cg":
        fmin_cg(
            objective.value,
            x0,
            fprime=objective.gradient,
            maxiter=iterations,
            callback=callback,
            full_output=True,
            disp=False,
        )
    else:
        minimize(
            objective.value_and_gradient,
            x0,
            jac=True,
            method="L-BFGS-B",
            callback=callback,
            options={"maxiter": iterations},
        )


def run_line_searches(
    objective: FlatObjective, method: str, iterations: int, after_update: Callable[[], None]
) -> None:
    """``iterations`` iterations of ``method`` (``"cg"`` or ``"lbfgs"``) on the
    objective's current rows, from the model's parameters.

    ``after_update()`` runs at each accepted iterate and may end the search
    by raising :class:`StopSearch`. The model is left at the last accepted
    iterate (where it began if none was).

    Parameters
    ----------
    objective : FlatObjective
        The function minimised, on the rows its :meth:`~FlatObjective.use_rows` chose.
    method : {"cg", "lbfgs"}
        scipy's ``fmin_cg`` (Polak-Ribiere conjugate gradient) or ``minimize``'s L-BFGS-B.
    iterations : int
        The most iterations (line searches) to run.
    after_update : callable
        ``() -> None``, called with the model at each accepted iterate.

    Raises
    ------
    sda.errors.TrainingDiverged
        A point the search tries, its cost or its gradient is not finite.
    """
    accepted = None

    def callback(vector):
        nonlocal accepted
        accepted = vector.copy()
        objective.move_to(vector)
        after_update()

    try:
        _optimise(objective, method, iterations, callback)
    except StopSearch:
        pass
    if accepted is not None:
        objective.move_to(accepted)
