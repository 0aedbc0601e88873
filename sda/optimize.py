"""Batch fine-tuning: conjugate gradient and L-BFGS over one flat parameter vector.

SGD (``sda.train``) steps after every minibatch with a hand-set learning rate.
Here fine-tuning is posed as the minimisation of a deterministic function:
scipy's optimisers see every parameter of the network as a single float64
vector, get a mean cost and its gradient at that vector, and pick their own
step lengths by line search.

Two ways to use them:

- :func:`finetune_minibatch`, as Hinton & Salakhutdinov (2006) fine-tuned
  their networks: the training set is reshuffled every epoch and cut into
  batches of ``m`` rows (1,000 by default); on each batch CG (or L-BFGS) runs
  ``k`` line searches (iterations), restarted from scratch on the next batch.
  The first ``warmup_epochs`` epochs may train the softmax layer alone. Full
  batch is ``m`` = the training-set size. Cost is counted in
  *pass-equivalents*: every row pushed through forward and backward, line
  search trial points included, divided by the training-set size. An
  :class:`Evaluator` measures the model at the same pass-equivalents for
  every optimiser (SGD too, see ``sda.compare``).
- :func:`finetune_batch` and :func:`finetune_autoencoder`: the older
  full-batch runs, one record per optimiser iteration.

All keep the parameters with the best validation error in the model.
"""

import math
import time
from dataclasses import dataclass

import numpy as np
import pytensor
import pytensor.tensor as pt
from scipy.optimize import fmin_cg, minimize
from threadpoolctl import ThreadpoolController

from sda.batching import batch_sizes
from sda.checkpoint import Checkpoint, Progress
from sda.checks import check_count, check_passes, check_probability
from sda.constraints import DEFAULT_BATCH_SIZE, DEFAULT_CHUNK_ROWS, check_setting
from sda.dA import reconstruction_loss
from sda.engine import batched_function
from sda.errors import SettingError, check_finite
from sda.train import FinetuneResult, noop

METHODS = ("cg", "lbfgs")
PHASES = {"cg": "CG fine-tuning", "lbfgs": "L-BFGS fine-tuning"}  # names in divergence errors
_CG_STATUS = {  # fmin_cg's warnflag; 1, its iteration limit, is never reported: _Tracker stops first
    0: "converged",
    2: "line search failed (precision loss)",
    3: "NaN in the cost or gradient",
}


class FlatParams:
    """A list of shared variables seen as one flat float64 vector.

    ``unpack`` writes into the very shared variables it was given, so every
    compiled function that uses them (SGD's, the scorers) sees the values.
    """

    def __init__(self, params):
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

    def pack(self):
        """The current values, concatenated into a new float64 vector."""
        return np.concatenate([p.get_value(borrow=True).ravel() for p in self.params], dtype=np.float64)

    def unpack(self, vector):
        """Set every parameter from its slice of ``vector``, cast to its dtype."""
        vector = np.asarray(vector)
        if vector.shape != (self.size,):
            raise ValueError(f"expected a vector of {self.size} values, got shape {vector.shape}")
        for p, (start, end, shape) in zip(self.params, self._indptr):
            # astype copies, so the shared variable may keep the array
            p.set_value(vector[start:end].reshape(shape).astype(p.dtype), borrow=True)

    def matrix_mask(self):
        """True at the entries of weight matrices: what weight decay acts on (not biases),
        as in ``sda.sgd.sgd_updates``."""
        mask = np.zeros(self.size, dtype=bool)
        for start, end, shape in self._indptr:
            mask[start:end] = len(shape) == 2
        return mask


def weight_penalty(params, weight_decay):
    """``weight_decay / 2`` times the squared weight-matrix entries: the term
    whose gradient is SGD's ``weight_decay * W`` (``sda.sgd.sgd_updates``)."""
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


def dropout_mask(rng, shape, corruption):
    """A float32 input-dropout multiplier: 0 with probability ``corruption``,
    else ``1 / (1 - corruption)``, so a masked pixel keeps its expected value
    (the fixed-mask twin of ``SdA.dropped_input``).

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
    """

    def __init__(
        self,
        cost,
        params,
        inputs,
        data,
        chunk_rows=DEFAULT_CHUNK_ROWS,
        weight_decay=0.0,
        phase="CG fine-tuning",
        input_dropout=0.0,
    ):
        _check_positive("chunk_rows", chunk_rows)
        check_setting("weight_decay", weight_decay)
        check_probability("input_dropout", input_dropout)
        self.flat = FlatParams(params)
        grads = pytensor.grad(cost, self.flat.params)
        flat_grad = pt.concatenate([g.flatten() for g in grads])
        rows = pt.lvector("rows")
        givens = {v: d[rows] for v, d in zip(inputs, data)}
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
        self.where = {}
        self.examples = self.fun_evals = self.grad_evals = 0
        self._chunks = self._last = None  # with dropout, no mask until use_rows draws one
        if not input_dropout:
            self.use_rows(np.arange(self.n_rows))

    @property
    def passes(self):
        """Rows pushed through forward and backward, in whole-data-set units."""
        return self.examples / self.n_rows

    def use_rows(self, rows, mask_seed=None):
        """Make the mean run over these row numbers of the data from now on.

        With input dropout, ``mask_seed`` (an int or a sequence of ints, e.g.
        ``(seed, epoch, batch)``) draws the mask these rows keep until the next
        call; it is required then and unused otherwise. Until the first call
        the mean runs over every row (with input dropout there is no mean
        until then).
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
        self._last = None  # (vector, cost, gradient)

    def evaluate(self, vector):
        """Cost and float64 gradient at ``vector``; the model is left at ``vector``."""
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

    def move_to(self, vector):
        """Leave the model at ``vector`` (an iterate the optimiser accepted)."""
        self.flat.unpack(vector)
        self._last = None  # the cached point is no longer the model's

    def value(self, vector):
        self.fun_evals += 1
        return self.evaluate(vector)[0]

    def gradient(self, vector):
        self.grad_evals += 1
        return self.evaluate(vector)[1]

    def value_and_gradient(self, vector):
        self.fun_evals += 1
        self.grad_evals += 1
        return self.evaluate(vector)


def _check_positive(name, value, allow_none=False):
    return value if value is None and allow_none else check_count(name, value)


def _check_method(method):
    if method not in METHODS:
        raise SettingError(
            f"unknown method {method!r}: choose 'cg' (conjugate gradient) or 'lbfgs' (L-BFGS-B)"
        )


def _check_settings(method, max_iterations, max_passes, patience, chunk_rows):
    _check_method(method)
    _check_positive("max_iterations", max_iterations)
    _check_positive("max_passes", max_passes, allow_none=True)
    _check_positive("patience", patience, allow_none=True)
    _check_positive("chunk_rows", chunk_rows)


def _single_thread_scipy():
    """The optimisers' vector algebra runs on the OpenBLAS bundled with numpy and
    scipy. It is memory-bound, so extra threads only add latency: on busy cores
    they made CG and L-BFGS twice as slow. PyTensor's BLAS keeps its threads."""
    return ThreadpoolController().select(prefix="libscipy_openblas").limit(limits=1)


class _Tracker:
    """The per-iteration callback: scores each iterate on the validation set,
    keeps the best, reports a record and stops the run when a limit is hit."""

    def __init__(self, objective, method, validate, test, max_iterations, max_passes, patience, on_iteration):
        self.objective, self.method = objective, method
        self.validate, self.test = validate, test
        self.max_iterations, self.max_passes, self.patience = max_iterations, max_passes, patience
        self.on_iteration = on_iteration
        self.history, self.iteration = [], 0
        self.best_vector = objective.flat.pack()
        self.initial_error = self.best_error = validate()
        self.best_iteration = 0
        self.test_error = test() if test else None
        self.start = time.perf_counter()

    def __call__(self, vector):
        self.iteration += 1
        cost, _ = self.objective.evaluate(vector)  # free: the optimiser just evaluated it
        error = self.validate()
        if error < self.best_error:
            self.best_error, self.best_iteration = error, self.iteration
            self.best_vector = np.array(vector, dtype=np.float64)
            if self.test:
                self.test_error = self.test()
        record = {
            "phase": "finetune",
            "method": self.method,
            "iteration": self.iteration,
            "epoch": self.iteration,
            "seconds": time.perf_counter() - self.start,
            "passes": self.objective.passes,
            "fun_evals": self.objective.fun_evals,
            "grad_evals": self.objective.grad_evals,
            "cost": cost,
            "valid_error": error,
            "best_valid_error": self.best_error,
        }
        if self.test:
            record["test_error"] = self.test_error
        self.history.append(record)
        self.on_iteration(record)
        if self.iteration >= self.max_iterations:
            raise _Stop("max_iterations")
        if self.max_passes and self.objective.passes >= self.max_passes:
            raise _Stop("max_passes")
        if self.patience and self.iteration - self.best_iteration >= self.patience:
            raise _Stop("patience")


def _minimize(objective, method, tracker):
    """Run the optimiser from the model's current parameters; return why it
    stopped. The best vector is left in the model."""
    with _single_thread_scipy():
        try:
            reason = _optimise(objective, method, tracker.max_iterations, tracker)
        except _Stop as stop:
            reason = str(stop)
    objective.flat.unpack(tracker.best_vector)
    return reason


@dataclass(kw_only=True)
class BatchStats:
    """What a batch optimiser run cost and how it went."""

    method: str
    passes: float  # pass-equivalents over the training set; validation is not counted
    fun_evals: int  # cost values the optimiser asked for
    grad_evals: int  # gradients the optimiser asked for
    seconds: float  # wall time of the optimiser, validation included, compilation not
    stop_reason: str
    history: list  # one record (dict) per iteration


@dataclass
class BatchFinetuneResult(FinetuneResult, BatchStats):
    """A ``FinetuneResult`` in which an "epoch" is one optimiser iteration."""


@dataclass
class AutoencoderResult(BatchStats):
    """Validation reconstruction error (mean loss per example) before and after."""

    valid_error_before: float
    valid_error_after: float
    best_iteration: int
    iterations: int


def _stats(method, objective, tracker, reason):
    return dict(
        method=method,
        passes=objective.passes,
        fun_evals=objective.fun_evals,
        grad_evals=objective.grad_evals,
        seconds=time.perf_counter() - tracker.start,
        stop_reason=reason,
        history=tracker.history,
    )


def finetune_batch(
    model,
    datasets,
    method="cg",
    max_iterations=200,
    max_passes=None,
    patience=20,
    chunk_rows=DEFAULT_CHUNK_ROWS,
    weight_decay=0.0,
    on_iteration=noop,
):
    """Supervised fine-tuning of an SdA with CG (``fmin_cg``) or L-BFGS-B.

    ``datasets`` is ``[(train_x, train_y), (valid_x, valid_y), (test_x,
    test_y)]`` of shared variables. The run stops after ``max_iterations``
    iterations, once ``max_passes`` passes over the training set are used
    (the iteration under way completes), after ``patience`` iterations
    without a lower validation error, or when scipy stops. The parameters
    with the best validation error are left in the model. ``on_iteration``
    gets each iteration's record, with the keys ``sda.train`` reports use.

    Parameters
    ----------
    model : SdA
        The network; all of ``model.params`` become one flat vector.
    datasets : list
        ``[(train_x, train_y), (valid_x, valid_y), (test_x, test_y)]`` of shared variables.
    method : {"cg", "lbfgs"}
        ``scipy.optimize.fmin_cg`` or ``minimize(method="L-BFGS-B")``.
    max_iterations : int
        Optimiser iterations at most.
    max_passes : int, optional
        Stop once this many evaluations over the whole training set are used.
    patience : int, optional
        Stop after this many iterations without a lower validation error.
    chunk_rows : int
        Rows per compiled call (speed and memory only).
    weight_decay : float
        As SGD's: the objective gains ``weight_decay / 2 * sum(W ** 2)`` over weight matrices.
    on_iteration : callable
        Gets each iteration's record (``iteration``, ``passes``, ``cost``,
        ``valid_error``, ``best_valid_error``, ``test_error``, ``seconds``, ...).

    Returns
    -------
    BatchFinetuneResult
        A ``FinetuneResult`` (its epochs are iterations) plus ``passes``,
        ``fun_evals``, ``grad_evals``, ``seconds``, ``stop_reason`` and ``history``.

    Examples
    --------
    >>> import numpy as np
    >>> from sda import SdA
    >>> from sda.data import load_dataset, shared_dataset
    >>> digits = load_dataset("digits").subset(200, 50, 50)
    >>> datasets = [shared_dataset(s) for s in (digits.train, digits.valid, digits.test)]
    >>> model = SdA(np.random.RandomState(0), n_ins=64, hidden_layers_sizes=(32,),
    ...             corruption_levels=(0.1,))
    >>> result = finetune_batch(model, datasets, method="lbfgs", max_iterations=5)
    >>> result.iterations <= 5, result.passes >= result.iterations
    (True, True)
    """
    _check_settings(method, max_iterations, max_passes, patience, chunk_rows)
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = datasets
    objective = FlatObjective(
        model.finetune_cost,
        model.params,
        [model.x, model.y],
        [train_x, train_y],
        chunk_rows,
        weight_decay,
        PHASES[method],
    )
    valid_score = model.error_scorer(valid_x, valid_y, chunk_rows, "valid")
    test_score = model.error_scorer(test_x, test_y, chunk_rows, "test")
    tracker = _Tracker(
        objective,
        method,
        valid_score.error,
        test_score.error,
        max_iterations,
        max_passes,
        patience,
        on_iteration,
    )
    reason = _minimize(objective, method, tracker)
    return BatchFinetuneResult(
        tracker.best_error,
        tracker.test_error,
        tracker.best_iteration,
        tracker.iteration,
        tracker.iteration,
        **_stats(method, objective, tracker, reason),
    )


class DeepAutoencoder:
    """The SdA's pre-trained layers unrolled into one deep auto-encoder.

    The input goes up through the hidden layers' encoders and back down
    through the dAs' decoders in reverse order, sigmoid everywhere and no
    corruption. Decoders are tied (``W.T``) unless the dAs were built
    untied, so the parameters are the encoders' ``W``, ``b`` plus each
    decoder's visible bias (and its own matrix when untied). They are the
    SdA's shared variables: fine-tuning this changes the SdA's encoders.
    """

    def __init__(self, model):
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

    def error_function(self, data_x, chunk_rows=DEFAULT_CHUNK_ROWS, squared=False):
        """A function returning the mean reconstruction loss per row of ``data_x``
        (with ``squared``: the squared error summed over each row's pixels)."""
        fn, weights = _chunked(
            self.squared_error if squared else self.cost, [self.x], [data_x], chunk_rows, "reconstruction"
        )
        return lambda: float(sum(w * fn(i) for i, w in enumerate(weights)))


def finetune_autoencoder(
    model,
    train_x,
    valid_x,
    method="cg",
    max_iterations=100,
    max_passes=None,
    patience=None,
    chunk_rows=DEFAULT_CHUNK_ROWS,
    on_iteration=noop,
):
    """Fine-tune the SdA unrolled as a :class:`DeepAutoencoder` to reconstruct
    ``train_x``; the settings work as in :func:`finetune_batch`. The
    parameters with the lowest validation reconstruction error are left in
    the model."""
    _check_settings(method, max_iterations, max_passes, patience, chunk_rows)
    autoencoder = DeepAutoencoder(model)
    objective = FlatObjective(
        autoencoder.cost,
        autoencoder.params,
        [autoencoder.x],
        [train_x],
        chunk_rows,
        phase=f"deep auto-encoder {PHASES[method]}",
    )
    tracker = _Tracker(
        objective,
        method,
        autoencoder.error_function(valid_x, chunk_rows),
        None,
        max_iterations,
        max_passes,
        patience,
        on_iteration,
    )
    reason = _minimize(objective, method, tracker)
    return AutoencoderResult(
        valid_error_before=tracker.initial_error,
        valid_error_after=tracker.best_error,
        best_iteration=tracker.best_iteration,
        iterations=tracker.iteration,
        **_stats(method, objective, tracker, reason),
    )


# ------------------------------------------------------ mini-batch CG and L-BFGS
class Evaluator:
    """Measures a model at fixed pass-equivalent points, the same for every optimiser.

    Call :meth:`due` with the pass-equivalents spent so far and, when it says
    so, call the evaluator: it measures the model as it is, keeps the best
    parameters (by ``valid_error``) and the test error there, and hands a
    record to ``on_record``. Points fall every ``every`` pass-equivalents,
    starting at 0 (the pre-trained start); an optimiser whose steps are
    coarser than ``every`` is measured at the first accepted step past each
    point, and the record says where (``passes``). Measuring is not counted
    in the pass-equivalents, and its time is kept apart (``state["seconds"]``).

    Parameters
    ----------
    measure : callable
        ``measure() -> dict`` with at least ``"train_loss"`` and ``"valid_error"``.
    params : list of shared variables
        What to keep at the best point.
    every : float
        Pass-equivalents between measurements.
    test : callable, optional
        ``test() -> float``, called at each new best validation error.
    on_record : callable
        Gets each record (a dict).
    """

    def __init__(self, measure, params, every=0.5, test=None, on_record=noop):
        self.every = check_passes("eval_every", every)
        self.measure, self.params, self.test = measure, list(params), test
        self.on_record = on_record
        self.best = None  # parameter values at the best validation error
        self.state = {
            "next_point": 0.0,
            "best_valid_error": math.inf,
            "best_passes": 0.0,
            "best_evaluation": 0,
            "test_error": math.nan,
            "since_best": 0,
            "seconds": 0.0,
            "history": [],
        }

    def due(self, passes):
        return passes >= self.state["next_point"]

    def __call__(self, passes, **counters):
        """Measure now; ``counters`` (e.g. ``updates``, ``seconds``) go into the record."""
        started = time.perf_counter()
        state = self.state
        values = self.measure()
        if values["valid_error"] < state["best_valid_error"]:
            state.update(
                best_valid_error=values["valid_error"],
                best_passes=passes,
                since_best=0,
                best_evaluation=len(state["history"]),
            )
            self.best = [p.get_value() for p in self.params]
            if self.test:
                state["test_error"] = self.test()
        else:
            state["since_best"] += 1
        state["next_point"] = (math.floor(passes / self.every + 1e-9) + 1) * self.every
        record = {
            "phase": "finetune",
            "epoch": len(state["history"]),
            "passes": passes,
            **counters,
            "cost": values["train_loss"],
            **values,
            "best_valid_error": state["best_valid_error"],
            "test_error": state["test_error"],
        }
        state["history"].append(record)
        state["seconds"] += time.perf_counter() - started
        self.on_record(record)
        return record

    def restore_best(self):
        """Put the best parameters measured back into the model."""
        if self.best is not None:
            for p, value in zip(self.params, self.best):
                p.set_value(value)


def classifier_measures(model, datasets, chunk_rows=DEFAULT_CHUNK_ROWS, weight_decay=0.0):
    """``(measure, test)`` for an :class:`Evaluator` of a supervised SdA: the
    mean training cost over every training row (plus the weight penalty: the
    objective all optimisers minimise) and the validation error; the test error."""
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = datasets
    loss, weights = _chunked(
        model.finetune_cost, [model.x, model.y], [train_x, train_y], chunk_rows, "train_loss"
    )
    valid_score = model.error_scorer(valid_x, valid_y, chunk_rows, "valid")
    test_score = model.error_scorer(test_x, test_y, chunk_rows, "test")

    def measure():
        train_loss = sum(w * float(loss(i)) for i, w in enumerate(weights))
        return {
            "train_loss": train_loss + weight_penalty(model.params, weight_decay),
            "valid_error": valid_score.error(),
        }

    return measure, test_score.error


@dataclass
class MinibatchResult(FinetuneResult):
    """A ``FinetuneResult`` (``best_epoch``: the evaluation number of the best
    point; ``epochs_run``: data epochs begun; ``iterations``: parameter updates)
    and what the run cost."""

    method: str = ""
    passes: float = 0.0  # pass-equivalents, line-search trial points included
    best_passes: float = 0.0  # pass-equivalents at the best validation error
    updates: int = 0  # accepted optimiser iterations (each one line search for CG)
    seconds: float = 0.0  # optimiser wall time; the evaluator's is apart
    eval_seconds: float = 0.0
    stop_reason: str = ""
    history: list = None  # the evaluator's records


def _check_minibatch_settings(
    method, batch_size, line_searches, warmup_epochs, budget_passes, max_epochs, patience, n_rows
):
    _check_method(method)
    _check_positive("batch_size", batch_size)
    _check_positive("line_searches", line_searches)
    _check_positive("max_epochs", max_epochs)
    _check_positive("patience", patience, allow_none=True)
    check_setting("warmup_epochs", warmup_epochs)
    check_passes("budget_passes", budget_passes, allow_none=True)
    if batch_size > n_rows:
        raise SettingError(
            f"batch_size {batch_size} is larger than the {n_rows} training rows: "
            f"use at most {n_rows} (that is full-batch {method})"
        )


class _Stop(Exception):
    """Ends an optimiser run from its callback (fmin_cg has no other stop hook)."""


def _optimise(objective, method, iterations, callback):
    """``iterations`` iterations of ``method`` from the model's parameters, on the
    objective's current rows; ``callback(vector)`` sees each accepted iterate.
    Returns scipy's reason for stopping."""
    x0 = objective.flat.pack()
    if method == "cg":
        *_, warnflag = fmin_cg(
            objective.value,
            x0,
            fprime=objective.gradient,
            maxiter=iterations,
            callback=callback,
            full_output=True,
            disp=False,
        )
        return _CG_STATUS.get(warnflag, f"fmin_cg warnflag {warnflag}")
    return minimize(
        objective.value_and_gradient,
        x0,
        jac=True,
        method="L-BFGS-B",
        callback=callback,
        options={"maxiter": iterations},
    ).message


def _run_batch(objective, method, iterations, after_update):
    """``iterations`` iterations of ``method`` on the objective's current rows,
    from the model's parameters; ``after_update()`` runs at each accepted
    iterate and may end the batch by raising ``_Stop``. The model is left at
    the last accepted iterate (where it began if none was)."""
    accepted = None

    def callback(vector):
        nonlocal accepted
        accepted = vector.copy()
        objective.move_to(vector)
        after_update()

    try:
        _optimise(objective, method, iterations, callback)
    except _Stop:
        pass
    if accepted is not None:
        objective.move_to(accepted)


def finetune_minibatch(
    model,
    datasets,
    method="cg",
    batch_size=DEFAULT_BATCH_SIZE,
    line_searches=3,
    warmup_epochs=0,
    budget_passes=None,
    max_epochs=1000,
    patience=None,
    weight_decay=0.0,
    input_dropout=0.0,
    seed=0,
    eval_every=0.5,
    chunk_rows=DEFAULT_CHUNK_ROWS,
    on_evaluation=noop,
    progress=None,
    checkpoint=None,
):
    """Mini-batch CG or L-BFGS fine-tuning of a supervised SdA (Hinton & Salakhutdinov, 2006).

    Every epoch the training rows are shuffled by a generator seeded with
    ``seed`` and cut into batches of ``batch_size`` (the last may be short).
    On each batch, ``line_searches`` iterations of ``method`` minimise the
    batch's mean cost plus the weight penalty, starting afresh (no conjugate
    direction or L-BFGS memory is carried over). In the first
    ``warmup_epochs`` epochs only the softmax layer's parameters move, as in
    their ``backpropclassify.m``; those evaluations still push each row
    through the whole network and are counted as full pass-equivalents.
    With ``input_dropout``, each batch draws one pixel mask from ``(seed,
    epoch, batch)`` and keeps it through its line searches (a full batch
    keeps one mask per epoch); the warm-up epochs see masked pixels too, so
    every epoch minimises the same objective. The evaluator measures on
    clean pixels.

    Parameters
    ----------
    model : SdA
    datasets : list
        ``[(train_x, train_y), (valid_x, valid_y), (test_x, test_y)]`` of shared variables.
    method : {"cg", "lbfgs"}
        ``scipy.optimize.fmin_cg`` or ``minimize(method="L-BFGS-B")``.
    batch_size : int
        Rows per batch, ``m``; the number of training rows makes it full-batch.
    line_searches : int
        Iterations per batch, ``k`` (for CG each is one line search).
    warmup_epochs : int
        First epochs that train the softmax layer alone.
    budget_passes : float, optional
        Stop once this many pass-equivalents are spent (checked after each
        iteration, so the last line search may overrun it a little).
    max_epochs : int
        Stop after this many epochs.
    patience : int, optional
        Stop after this many evaluations without a lower validation error.
    weight_decay : float
        As SGD's: the objective gains ``weight_decay / 2 * sum(W ** 2)`` over weight matrices.
    input_dropout : float
        In [0, 1): the share of training pixels zeroed (the rest scaled by
        ``1 / (1 - input_dropout)``), one mask per batch.
    seed : int
        Seeds the shuffling and the dropout masks.
    eval_every : float
        Pass-equivalents between the :class:`Evaluator`'s measurements.
    chunk_rows : int
        Rows per compiled call (speed and memory only).
    on_evaluation : callable
        Gets each evaluation record: ``phase``, ``epoch`` (the evaluation
        number), ``data_epoch``, ``passes``, ``updates``, ``seconds``,
        ``cost``/``train_loss``, ``valid_error``, ``best_valid_error``, ``test_error``.
    progress, checkpoint : Progress, Checkpoint, optional
        With a ``Checkpoint`` that has a path, the state is saved after every
        batch; given the ``Progress`` it loaded, the run continues exactly.

    Returns
    -------
    MinibatchResult
        The best-validation parameters are left in the model.

    Examples
    --------
    >>> result = finetune_minibatch(model, datasets, "cg", batch_size=1000,
    ...                             line_searches=3, warmup_epochs=1, budget_passes=20)  # doctest: +SKIP
    """
    (train_x, train_y) = datasets[0]
    n_rows = train_x.get_value(borrow=True).shape[0]
    _check_minibatch_settings(
        method, batch_size, line_searches, warmup_epochs, budget_passes, max_epochs, patience, n_rows
    )
    phase = PHASES[method]

    def objective(params):
        return FlatObjective(
            model.finetune_cost,
            params,
            [model.x, model.y],
            [train_x, train_y],
            chunk_rows,
            weight_decay,
            phase,
            input_dropout,
        )

    objectives = [objective(model.params)]
    if warmup_epochs:  # Hinton & Salakhutdinov's warm-up: the softmax layer alone
        objectives.append(objective(model.logLayer.params))
    measure, test = classifier_measures(model, datasets, chunk_rows, weight_decay)
    evaluator = Evaluator(measure, model.params, eval_every, test, on_evaluation)
    return _minibatch_run(
        objectives,
        evaluator,
        method,
        batch_size,
        line_searches,
        warmup_epochs,
        budget_passes,
        max_epochs,
        patience,
        seed,
        progress,
        checkpoint,
    )


def finetune_autoencoder_minibatch(
    model,
    train_x,
    valid_x,
    method="cg",
    batch_size=DEFAULT_BATCH_SIZE,
    line_searches=3,
    budget_passes=None,
    max_epochs=1000,
    patience=None,
    seed=0,
    eval_every=0.5,
    chunk_rows=DEFAULT_CHUNK_ROWS,
    on_evaluation=noop,
):
    """Mini-batch CG or L-BFGS on the SdA unrolled as a :class:`DeepAutoencoder`
    (their ``backprop.m``); settings as in :func:`finetune_minibatch`. The
    records' ``train_loss`` and ``valid_error`` are mean reconstruction losses
    per row; the parameters with the lowest validation loss are left in the model."""
    n_rows = train_x.get_value(borrow=True).shape[0]
    _check_minibatch_settings(
        method, batch_size, line_searches, 0, budget_passes, max_epochs, patience, n_rows
    )
    autoencoder = DeepAutoencoder(model)
    objective = FlatObjective(
        autoencoder.cost,
        autoencoder.params,
        [autoencoder.x],
        [train_x],
        chunk_rows,
        phase=f"deep auto-encoder {PHASES[method]}",
    )
    evaluator = Evaluator(
        autoencoder_measure(autoencoder, train_x, valid_x, chunk_rows),
        autoencoder.params,
        eval_every,
        on_record=on_evaluation,
    )
    return _minibatch_run(
        [objective],
        evaluator,
        method,
        batch_size,
        line_searches,
        0,
        budget_passes,
        max_epochs,
        patience,
        seed,
        None,
        None,
    )


def autoencoder_measure(autoencoder, train_x, valid_x, chunk_rows=DEFAULT_CHUNK_ROWS):
    """``measure()`` for an :class:`Evaluator` of a :class:`DeepAutoencoder`: mean
    reconstruction loss per training and per validation row."""
    train_loss = autoencoder.error_function(train_x, chunk_rows)
    valid_loss = autoencoder.error_function(valid_x, chunk_rows)
    return lambda: {"train_loss": train_loss(), "valid_error": valid_loss()}


def _minibatch_run(
    objectives,
    evaluator,
    method,
    batch_size,
    line_searches,
    warmup_epochs,
    budget_passes,
    max_epochs,
    patience,
    seed,
    progress,
    checkpoint,
):
    """The loop of :func:`finetune_minibatch`: ``objectives`` are the one over
    every parameter and, with warm-up epochs, the warm-up one (same rows)."""
    n_rows = objectives[0].n_rows
    checkpoint = checkpoint or Checkpoint()
    p = progress or Progress()
    if p.phase == "pretrain":
        p.start_phase("finetune")
    state = p.optimizer_state
    rng = np.random.default_rng(seed)
    if state:  # resuming: counters, the evaluator's record, the generator as the epoch began
        for objective, examples in zip(objectives, state["examples"]):
            objective.examples = examples
        evaluator.state = state["evaluator"]
        evaluator.best = checkpoint.best
        rng.bit_generator.state = state["epoch_rng"]
    else:
        state.update(updates=0, stop_reason="")
    started = time.perf_counter() - p.seconds["finetune"]

    def spent():
        return sum(objective.examples for objective in objectives) / n_rows

    def seconds():
        return time.perf_counter() - started - evaluator.state["seconds"]

    def evaluate_if_due():
        if evaluator.due(spent()):
            evaluator(spent(), data_epoch=p.epoch + 1, updates=state["updates"], seconds=seconds())

    def stop_reason():
        if budget_passes is not None and spent() >= budget_passes - 1e-9:
            return "budget"
        if patience is not None and evaluator.state["since_best"] >= patience:
            return "patience"
        return ""

    def after_update():
        state["updates"] += 1
        evaluate_if_due()
        state["stop_reason"] = stop_reason()
        if state["stop_reason"]:
            raise _Stop

    with _single_thread_scipy():
        evaluate_if_due()  # the common starting point
        while not state["stop_reason"] and p.epoch < max_epochs:
            state["epoch_rng"] = rng.bit_generator.state  # before drawing: resume redraws the order
            order = rng.permutation(n_rows)
            objective = objectives[-1 if p.epoch < warmup_epochs else 0]
            batches = range(0, n_rows, batch_size)
            for start in batches[p.batch :]:
                # the mask comes from where the batch is, so a resumed run redraws it
                objective.use_rows(order[start : start + batch_size], mask_seed=(seed, p.epoch, p.batch))
                objective.where = {"epoch": p.epoch + 1, "step": p.steps + 1}
                _run_batch(objective, method, line_searches, after_update)
                state["stop_reason"] = state["stop_reason"] or stop_reason()  # failed searches cost too
                if state["stop_reason"]:
                    break
                p.batch += 1
                p.steps += 1
                _save(p, checkpoint, evaluator, objectives, started)
            else:
                p.epoch += 1
                p.batch = 0
        state["stop_reason"] = state["stop_reason"] or "max_epochs"
        if evaluator.state["history"][-1]["passes"] != spent():  # measure where it ended
            evaluator(spent(), data_epoch=p.epoch + 1, updates=state["updates"], seconds=seconds())
    final_seconds = seconds()
    evaluator.restore_best()
    p.phase = "done"
    _save(p, checkpoint, evaluator, objectives, started)
    history = evaluator.state["history"]
    return MinibatchResult(
        evaluator.state["best_valid_error"],
        evaluator.state["test_error"],
        evaluator.state["best_evaluation"],
        p.epoch + (p.batch > 0),
        state["updates"],
        method=method,
        passes=spent(),
        best_passes=evaluator.state["best_passes"],
        updates=state["updates"],
        seconds=final_seconds,
        eval_seconds=evaluator.state["seconds"],
        stop_reason=state["stop_reason"],
        history=history,
    )


def _save(progress, checkpoint, evaluator, objectives, started):
    """Bring the saved state up to date and write the checkpoint (if it has a path)."""
    progress.optimizer_state.update(examples=[o.examples for o in objectives], evaluator=evaluator.state)
    progress.seconds["finetune"] = time.perf_counter() - started
    progress.best_valid_error = evaluator.state["best_valid_error"]
    progress.test_error = evaluator.state["test_error"]
    checkpoint.best = evaluator.best
    checkpoint.save(progress)
