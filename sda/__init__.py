"""Stacked denoising auto-encoders on PyTensor.

Importing the package configures PyTensor once (float32, the C backend with
a BLAS when one can be linked): see ``sda.engine``.
"""

from sda.dA import dA
from sda.engine import BACKEND  # noqa: F401  (must run before any graph is built)
from sda.logistic import LogisticRegression
from sda.mlp import HiddenLayer
from sda.SdA import SdA
from sda.trained import TrainedModel, load_model, load_run

__all__ = [
    "BACKEND",
    "HiddenLayer",
    "LogisticRegression",
    "SdA",
    "SdAClassifier",
    "SdATransformer",
    "TrainedModel",
    "dA",
    "load_model",
    "load_run",
]
# The one place the version is written: pyproject.toml and docs/conf.py read it from here.
__version__ = "0.1.0"
_ESTIMATORS = ("SdAClassifier", "SdATransformer")


def __getattr__(name):
    # The scikit-learn estimators import sklearn, which takes longer than sda
    # itself: load them only when asked for, so `import sda` stays fast.
    if name in _ESTIMATORS:
        from sda import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module 'sda' has no attribute {name!r}")
