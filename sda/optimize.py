"""Batch fine-tuning: conjugate gradient and L-BFGS over one flat parameter vector.

SGD (``sda.train``) steps after every minibatch with a hand-set learning rate.
Here fine-tuning is posed as the minimisation of one deterministic function:
scipy's optimisers see every parameter of the network as a single float64
vector, get the mean cost over the whole training set and its gradient at
that vector, and pick their own step lengths by line search.

The supervised SdA is fine-tuned by :func:`finetune_batch`; the pre-trained
layers unrolled into one deep auto-encoder (:class:`DeepAutoencoder`) by
:func:`finetune_autoencoder`. Both keep the iterate with the lowest
validation error and leave it in the model.
"""

import time
from dataclasses import dataclass

import numpy as np
import pytensor
import pytensor.tensor as pt
from scipy.optimize import fmin_cg, minimize
from threadpoolctl import ThreadpoolController

from sda.dA import reconstruction_loss
from sda.SdA import batch_slice, n_batches
from sda.train import FinetuneResult, split_error

METHODS = ("cg", "lbfgs")
DEFAULT_CHUNK_ROWS = 10_000  # rows per compiled call: large enough for BLAS, small for memory
_CG_STATUS = {  # fmin_cg's warnflag; its iteration limit (1) is reached by _Tracker first
    0: "converged",
    2: "line search failed (precision loss)",
    3: "NaN in the cost or gradient",
}


def _noop(record):
    pass


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
        return np.concatenate([p.get_value(borrow=True).ravel() for p in self.params],
                              dtype=np.float64)

    def unpack(self, vector):
        """Set every parameter from its slice of ``vector``, cast to its dtype."""
        vector = np.asarray(vector)
        if vector.shape != (self.size,):
            raise ValueError(f"expected a vector of {self.size} values, got shape {vector.shape}")
        for p, (start, end, shape) in zip(self.params, self._indptr):
            # astype copies, so the shared variable may keep the array
            p.set_value(vector[start:end].reshape(shape).astype(p.dtype), borrow=True)


def _chunked(outputs, inputs, data, chunk_rows, name):
    """Compile ``fn(chunk) -> outputs`` on chunk ``chunk`` of the shared ``data``
    (one per symbolic input); also return each chunk's share of the rows."""
    index = pt.lscalar("chunk")
    fn = pytensor.function(
        [index], outputs, name=name,
        givens={v: batch_slice(d, index, chunk_rows) for v, d in zip(inputs, data)},
    )
    n_rows = data[0].get_value(borrow=True).shape[0]
    count = n_batches(n_rows, chunk_rows)
    rows = np.diff(np.minimum(np.arange(count + 1) * chunk_rows, n_rows))
    return fn, rows / n_rows


class FlatObjective:
    """``(cost, gradient)`` of a mean cost at a flat vector of ``params``.

    The cost is averaged over every row of ``data`` (shared variables fed to
    the symbolic ``inputs``), chunk by chunk through one compiled function
    and weighted by rows. So it is the same deterministic function at every
    call, which the line searches of CG and L-BFGS rely on.

    ``passes`` counts evaluations over the whole data set; ``fun_evals`` and
    ``grad_evals`` count what the optimiser asked for. The last point is
    remembered, so asking for the value and then the gradient costs one pass.
    """

    def __init__(self, cost, params, inputs, data, chunk_rows=DEFAULT_CHUNK_ROWS):
        _check_positive("chunk_rows", chunk_rows)
        self.flat = FlatParams(params)
        grads = pytensor.grad(cost, self.flat.params)
        flat_grad = pt.concatenate([g.flatten() for g in grads])
        self._chunk, self._weights = _chunked([cost, flat_grad], inputs, data, chunk_rows,
                                              "cost_and_flat_grad")
        self.passes = self.fun_evals = self.grad_evals = 0
        self._last = None  # (vector, cost, gradient)

    def evaluate(self, vector):
        """Cost and float64 gradient at ``vector``; the model is left at ``vector``."""
        if self._last is None or not np.array_equal(vector, self._last[0]):
            self.flat.unpack(vector)
            cost, grad = 0.0, np.zeros(self.flat.size)
            for i, weight in enumerate(self._weights):
                chunk_cost, chunk_grad = self._chunk(i)
                cost += weight * float(chunk_cost)
                grad += weight * chunk_grad  # weight is a float64 scalar: float64 product
            self.passes += 1
            self._last = (np.array(vector, dtype=np.float64), cost, grad)
        return self._last[1], self._last[2]

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
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        fix = "a positive integer" + (", or None for no limit" if allow_none else "")
        raise ValueError(f"{name} must be {fix}; got {value!r}")


def _check_settings(method, max_iterations, max_passes, patience, chunk_rows):
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose 'cg' (conjugate gradient) or "
                         "'lbfgs' (L-BFGS-B)")
    _check_positive("max_iterations", max_iterations)
    _check_positive("max_passes", max_passes, allow_none=True)
    _check_positive("patience", patience, allow_none=True)
    _check_positive("chunk_rows", chunk_rows)


class _Stop(Exception):
    """Ends an optimiser run from its callback (fmin_cg has no other stop hook)."""


class _Tracker:
    """The per-iteration callback: scores each iterate on the validation set,
    keeps the best, reports a record and stops the run when a limit is hit."""

    def __init__(self, objective, method, validate, test, max_iterations, max_passes, patience,
                 on_iteration):
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
            "phase": "finetune", "method": self.method, "iteration": self.iteration,
            "epoch": self.iteration, "seconds": time.perf_counter() - self.start,
            "passes": self.objective.passes, "fun_evals": self.objective.fun_evals,
            "grad_evals": self.objective.grad_evals, "cost": cost, "valid_error": error,
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
    x0 = objective.flat.pack()
    # The optimisers' vector algebra runs on the OpenBLAS bundled with numpy and
    # scipy. It is memory-bound, so extra threads only add latency: on busy cores
    # they made CG and L-BFGS twice as slow. PyTensor's BLAS keeps its threads.
    with ThreadpoolController().select(prefix="libscipy_openblas").limit(limits=1):
        try:
            if method == "cg":
                *_, warnflag = fmin_cg(objective.value, x0, fprime=objective.gradient,
                                       maxiter=tracker.max_iterations, callback=tracker,
                                       full_output=True, disp=False)
                reason = _CG_STATUS.get(warnflag, f"fmin_cg warnflag {warnflag}")
            else:
                reason = minimize(objective.value_and_gradient, x0, jac=True, method="L-BFGS-B",
                                  callback=tracker,
                                  options={"maxiter": tracker.max_iterations}).message
        except _Stop as stop:
            reason = str(stop)
    objective.flat.unpack(tracker.best_vector)
    return reason


@dataclass(kw_only=True)
class BatchStats:
    """What a batch optimiser run cost and how it went."""

    method: str
    passes: int  # evaluations over the whole training set; validation is not counted
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
    return dict(method=method, passes=objective.passes, fun_evals=objective.fun_evals,
                grad_evals=objective.grad_evals, seconds=time.perf_counter() - tracker.start,
                stop_reason=reason, history=tracker.history)


def finetune_batch(model, datasets, method="cg", max_iterations=200, max_passes=None,
                   patience=20, chunk_rows=DEFAULT_CHUNK_ROWS, on_iteration=_noop):
    """Supervised fine-tuning of an SdA with CG (``fmin_cg``) or L-BFGS-B.

    ``datasets`` is ``[(train_x, train_y), (valid_x, valid_y), (test_x,
    test_y)]`` of shared variables. The run stops after ``max_iterations``
    iterations, once ``max_passes`` passes over the training set are used
    (the iteration under way completes), after ``patience`` iterations
    without a lower validation error, or when scipy stops. The parameters
    with the best validation error are left in the model. ``on_iteration``
    gets each iteration's record, with the keys ``sda.train`` reports use.
    """
    _check_settings(method, max_iterations, max_passes, patience, chunk_rows)
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = datasets
    objective = FlatObjective(model.finetune_cost, model.params, [model.x, model.y],
                              [train_x, train_y], chunk_rows)
    valid_score = model.error_scorer(valid_x, valid_y, chunk_rows, "valid")
    test_score = model.error_scorer(test_x, test_y, chunk_rows, "test")
    tracker = _Tracker(objective, method, lambda: split_error(valid_score),
                       lambda: split_error(test_score), max_iterations, max_passes, patience,
                       on_iteration)
    reason = _minimize(objective, method, tracker)
    return BatchFinetuneResult(
        tracker.best_error, tracker.test_error, tracker.best_iteration, tracker.iteration,
        tracker.iteration, **_stats(method, objective, tracker, reason),
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
        self.params = [p for layer in model.sigmoid_layers for p in layer.params]
        self.params += [p for a in reversed(model.dA_layers) for p in a.params[2:]]

    def error_function(self, data_x, chunk_rows=DEFAULT_CHUNK_ROWS):
        """A function returning the mean reconstruction loss per row of ``data_x``."""
        fn, weights = _chunked(self.cost, [self.x], [data_x], chunk_rows, "reconstruction")
        return lambda: float(sum(w * fn(i) for i, w in enumerate(weights)))


def finetune_autoencoder(model, train_x, valid_x, method="cg", max_iterations=100, max_passes=None,
                         patience=None, chunk_rows=DEFAULT_CHUNK_ROWS, on_iteration=_noop):
    """Fine-tune the SdA unrolled as a :class:`DeepAutoencoder` to reconstruct
    ``train_x``; the settings work as in :func:`finetune_batch`. The
    parameters with the lowest validation reconstruction error are left in
    the model."""
    _check_settings(method, max_iterations, max_passes, patience, chunk_rows)
    autoencoder = DeepAutoencoder(model)
    objective = FlatObjective(autoencoder.cost, autoencoder.params, [autoencoder.x], [train_x],
                              chunk_rows)
    tracker = _Tracker(objective, method, autoencoder.error_function(valid_x, chunk_rows), None,
                       max_iterations, max_passes, patience, on_iteration)
    reason = _minimize(objective, method, tracker)
    return AutoencoderResult(
        valid_error_before=tracker.initial_error, valid_error_after=tracker.best_error,
        best_iteration=tracker.best_iteration, iterations=tracker.iteration,
        **_stats(method, objective, tracker, reason),
    )
