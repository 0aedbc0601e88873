"""Stochastic gradient descent updates, shared by pre-training and fine-tuning."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pytensor
import pytensor.tensor as pt

from sda.constraints import check_setting
from sda.graph_types import Tensor, TensorSharedVariable, Update


def sgd_updates(
    cost: Tensor,
    params: Sequence[TensorSharedVariable],
    learning_rate: float | np.floating[Any] | Tensor | TensorSharedVariable,
    momentum: float | TensorSharedVariable = 0.0,
    weight_decay: float = 0.0,
    max_norm: float | None = None,
) -> tuple[list[Update], list[TensorSharedVariable]]:
    """Updates for one SGD step, and the velocity variables momentum needs.

    ``v <- momentum * v - learning_rate * (dcost/dp + weight_decay * p)`` and
    ``p <- p + v``; with ``momentum=0`` this is plain SGD and no velocity is
    kept. Weight decay applies to weight matrices only, not to biases.
    Returns ``(updates, velocities)``; the velocities are training state and
    belong in a checkpoint.

    Parameters
    ----------
    cost : TensorVariable
        The scalar cost to descend, a graph of ``params``.
    params : sequence of TensorSharedVariable
        The parameters to update; those with two dimensions (weight matrices)
        are decayed.
    learning_rate : float or scalar TensorVariable
        The step size; a shared or symbolic scalar lets a compiled step take a
        new rate at every call (a float32 one keeps the graph in float32).
    momentum : float or shared scalar, default 0.0
        Fraction of the previous step added to this one, in [0, 1); 0 keeps no
        velocities. A shared float32 scalar lets a loop change it between
        steps (a momentum schedule); velocities are then always kept.
    weight_decay : float, default 0.0
        L2 penalty factor on the weight matrices, at least 0.
    max_norm : float, optional
        After the step, every column of a weight matrix (one unit's incoming
        weights) whose L2 norm exceeds ``max_norm`` is scaled back to that
        norm (the max-norm constraint of Srivastava et al., 2014). None: no
        constraint.

    Returns
    -------
    updates : list of (SharedVariable, Variable)
        ``(parameter or velocity, its new value)`` pairs for ``pytensor.function``'s
        ``updates``.
    velocities : list of TensorSharedVariable
        One zero-initialised velocity per parameter (empty when ``momentum`` is 0),
        each named ``"<parameter>.velocity"``.

    Raises
    ------
    SettingTypeError, SettingError
        If ``momentum``, ``weight_decay`` or ``max_norm`` is not a number or out of its range.
    """
    scheduled = isinstance(momentum, pytensor.compile.SharedVariable)
    factor = momentum if scheduled else np.float32(check_setting("momentum", momentum))
    weight_decay = check_setting("weight_decay", weight_decay)
    if max_norm is not None:
        max_norm = check_setting("max_norm", max_norm)
    updates: list[Update] = []
    velocities: list[TensorSharedVariable] = []
    gradients = cast(list[Tensor], pytensor.grad(cost, list(params)))  # a list for a list of params
    for p, g in zip(params, gradients):
        if weight_decay and p.ndim == 2:
            g = g + np.float32(weight_decay) * p
        if scheduled or momentum:
            v = pytensor.shared(np.zeros_like(p.get_value(borrow=True)), name=f"{p.name}.velocity")
            step = factor * v - learning_rate * g
            updates += [(v, step)]
            velocities.append(v)
            new_p = p + step
        else:
            new_p = p - learning_rate * g
        if max_norm is not None and p.ndim == 2:
            new_p = within_max_norm(new_p, max_norm)
        updates.append((p, new_p))
    return updates, velocities


def within_max_norm(weights: Tensor, max_norm: float) -> Tensor:
    """``weights`` with every column longer than ``max_norm`` (L2) scaled back to ``max_norm``.

    Parameters
    ----------
    weights : TensorVariable
        A weight matrix, one unit's incoming weights per column.
    max_norm : float
        The largest L2 norm a column may keep.

    Returns
    -------
    TensorVariable
        The constrained matrix; columns within the norm are multiplied by 1, which
        the compiled graph may round in the last float32 place.

    Examples
    --------
    >>> w = pytensor.shared(np.array([[3.0, 0.1], [4.0, 0.1]], dtype="float32"))
    >>> within_max_norm(w, 1.0).eval().round(3)
    array([[0.6, 0.1],
           [0.8, 0.1]], dtype=float32)
    """
    norms = pt.sqrt(pt.sum(pt.sqr(weights), axis=0))
    limit = np.float32(max_norm)
    constrained: Tensor = weights * (limit / pt.maximum(norms, limit))  # 1 where the norm is within
    return constrained


@dataclass
class SGDStep:
    """A compiled SGD step and the momentum velocities it updates.

    Call it as the compiled function, by position or by the names of its
    inputs (``step(index=3, corruption=0.1, lr=0.001)``); it returns the
    minibatch's cost. The ``velocities`` (empty without momentum) are the
    step's own training state: a loop hands them to its ``Checkpoint`` so
    they survive a kill.
    ``learning_rate`` and ``momentum``, when the step was compiled with
    shared ones, let a loop change them between epochs without recompiling.

    Examples
    --------
    >>> import pytensor.tensor as pt
    >>> w = pytensor.shared(np.float32(3.0), name="w")
    >>> updates, velocities = sgd_updates(pt.sqr(w), [w], np.float32(0.25), momentum=0.5)
    >>> step = SGDStep(pytensor.function([], pt.sqr(w), updates=updates), velocities)
    >>> float(step()), float(w.get_value()), [v.name for v in step.velocities]
    (9.0, 1.5, ['w.velocity'])
    """

    function: Callable  # a pytensor Function; under JAX, engine's row-slicing stand-in
    velocities: list = field(default_factory=list)
    learning_rate: pytensor.compile.SharedVariable | None = None
    momentum: pytensor.compile.SharedVariable | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)
