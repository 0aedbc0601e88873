"""Stochastic gradient descent updates, shared by pre-training and fine-tuning."""

import pytensor


def sgd_updates(cost, params, learning_rate):
    """``[(p, p - learning_rate * dcost/dp), ...]`` for every parameter."""
    grads = pytensor.grad(cost, params)
    return [(p, p - learning_rate * g) for p, g in zip(params, grads)]
