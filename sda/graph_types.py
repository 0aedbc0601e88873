"""Names for the PyTensor types the model graphs pass around, for type annotations.

PyTensor's variables are generic in their type and their owner; the models
take and return tensors of any of them.
"""

from typing import Any, TypeAlias

import numpy as np
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Variable
from pytensor.tensor.random.variable import RandomGeneratorSharedVariable, RandomGeneratorVariable
from pytensor.tensor.sharedvar import TensorSharedVariable
from pytensor.tensor.variable import TensorVariable

__all__ = [
    "NumpyRNG",
    "RandomGenerator",
    "RandomGeneratorSharedVariable",
    "Tensor",
    "TensorSharedVariable",
    "Update",
]

Tensor: TypeAlias = TensorVariable[Any, Any]
"""A symbolic tensor: an input, a layer's output, a cost."""

RandomGenerator: TypeAlias = RandomGeneratorVariable[Any]
"""A symbolic random generator: the next state of a shared one, after a draw."""

NumpyRNG: TypeAlias = np.random.Generator | np.random.RandomState
"""The generators that draw initial weights: numpy's new ``Generator`` or the tutorial's ``RandomState``."""

Update: TypeAlias = tuple[SharedVariable, Variable[Any, Any]]
"""One ``(shared variable, its new value)`` pair of a compiled function's ``updates``: a
parameter and its SGD step, or a noise generator and its next state."""
