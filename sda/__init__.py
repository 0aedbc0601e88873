"""Stacked denoising auto-encoders on PyTensor.

Importing the package configures PyTensor once (float32, the C backend with
a BLAS when one can be linked): see ``sda.engine``.
"""

from sda.dA import dA
from sda.engine import BACKEND  # noqa: F401  (must run before any graph is built)
from sda.logistic import LogisticRegression
from sda.mlp import HiddenLayer
from sda.SdA import SdA

__all__ = ["BACKEND", "HiddenLayer", "LogisticRegression", "SdA", "dA"]
__version__ = "0.1.0"
