"""scikit-learn estimators: the SdA as a transformer and as a classifier.

:class:`SdATransformer` pre-trains a stack of denoising auto-encoders and
returns a layer's code; :class:`SdAClassifier` pre-trains the stack, then
fine-tunes it with a softmax on top. Both follow scikit-learn's contract
(constructors only store their arguments, ``fit`` returns ``self``, input is
checked with scikit-learn's own helpers), so they work in ``Pipeline``,
``GridSearchCV`` and ``cross_val_score``, and pickle.

Training runs the library's own loops: :func:`sda.train.pretrain`, and
:func:`sda.finetune.finetune` (SGD under the tutorial's
:class:`sda.finetune.PatienceRule`, or full-batch CG and L-BFGS).

Training rows must lie in [0, 1], because every layer reconstructs its
input through a sigmoid and scores it by cross-entropy: ``fit`` refuses other
data rather than silently rescale it. Put a ``MinMaxScaler`` in front. New
rows given to ``predict``, ``predict_proba``, ``transform`` or ``score`` may
hold any finite values (a scaler fitted on other rows maps some of them a
little past 0 or 1): they are clipped into [0, 1], the range the network
was trained on, as ``MinMaxScaler(clip=True)`` would clip them. NaN and
infinity are refused everywhere.
"""

import numbers
import os
import warnings
from collections.abc import Sequence
from typing import Any, Self, cast

import numpy as np
import pytensor
from numpy.typing import ArrayLike
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, ClassifierMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from sda.checks import check_flag, check_memory, training_memory
from sda.constraints import DEFAULT_CHUNK_ROWS, FINETUNERS, check_one_level_per_layer, check_setting
from sda.dA import reconstruction_loss
from sda.data import Split, shared_dataset
from sda.finetune import (
    MinibatchSGD,
    Monitor,
    PassBudget,
    PatienceRule,
    classifier_line_search,
    classifier_monitor,
    finetune,
)
from sda.rundir import set_params
from sda.SdA import SdA
from sda.train import pretrain
from sda.trained import load_run, run_in_chunks

SOLVERS = FINETUNERS
# MinMaxScaler's float rounding can land a few float32 ulps outside [0, 1];
# in fit such values are clipped, anything further out is refused.
RANGE_SLACK = 1e-6
SCALING_HINT = (
    "scale the features into [0, 1] first, e.g. make_pipeline(MinMaxScaler(clip=True), {name}(...))"
)


# ------------------------------------------------------------ the PyTensor side
class _Network:
    """A fitted SdA and the functions compiled from it, each built on first use.

    Estimators hold one of these while they live and pickle only
    :meth:`weights`; :meth:`from_weights` rebuilds it after loading.
    """

    def __init__(self, model: SdA, architecture: dict):
        self.model, self.architecture = model, architecture
        self._compiled: dict = {}  # run_in_chunks' compiled functions, by name

    @classmethod
    def from_weights(cls, architecture: dict, weights: dict, owner: str = "SdA") -> "_Network":
        """Rebuild the network of ``architecture`` (``SdA``'s own checks apply) holding ``weights``.

        The weights are checked as a saved model's are (:func:`sda.rundir.set_params`):
        a missing or unexpected parameter, another shape, or values that are not
        finite floats are refused in one line naming the parameter; ``owner``
        names the estimator in the message.
        """
        # The generator only draws initial weights, which are overwritten at once.
        network = cls(SdA(np.random.RandomState(0), **architecture), architecture)
        set_params(
            network.model,
            weights,
            f"unpickled {owner}",
            misfit_fix="the pickle is damaged or was not written by sda; fit the estimator again",
        )
        return network

    def weights(self) -> dict:
        """Every parameter as a numpy array, by the SdA's stable names."""
        return {name: param.get_value() for name, param in self.model.named_params().items()}

    def _run(self, name, output, X):
        return run_in_chunks(self._compiled, self.model, name, output, X, DEFAULT_CHUNK_ROWS)

    def log_proba(self, X):
        return self._run("log_proba", self.model.logLayer.log_p_y_given_x, X)

    def code(self, X, layer):
        return self._run(f"code{layer}", self.model.sigmoid_layers[layer].output, X)

    def reconstruction_costs(self, X, depth):
        """Per-row loss of reconstructing ``X`` through the first ``depth`` layers, no noise."""
        pre_activation = self.model.unrolled_pre_activation(self.model.x, depth)
        loss = reconstruction_loss(self.model.x, pre_activation, self.architecture["loss"])
        return self._run(f"reconstruction{depth}", loss, X)


# ------------------------------------------------------------------ the shared base
# each estimator parameter -> the setting of sda.constraints it is (messages name the parameter)
AS_SETTING = {
    "pretrain_epochs": "pretrain_epochs",
    "pretrain_learning_rate": "pretrain_lr",
    "batch_size": "batch_size",
    "momentum": "momentum",
    "alpha": "weight_decay",
    "solver": "finetune",
    "learning_rate_init": "finetune_lr",
    "max_iter": "finetune_epochs",
    "n_iter_no_change": "patience",
    "validation_fraction": "validation_fraction",
    "input_dropout": "finetune_corruption",
    "hidden_dropout": "finetune_hidden_dropout",
    "max_norm": "max_norm",
}
OPTIONAL = ("max_norm",)  # None switches it off
SGD_ONLY = ("input_dropout", "hidden_dropout", "max_norm")  # what only solver="sgd" reads


class _SdAEstimator(BaseEstimator):
    """What both estimators share: settings checks, input checks, pre-training, pickling."""

    def _check_settings(self):
        """Raise ``ValueError`` or ``TypeError`` naming the first setting that makes no sense.

        Every setting goes through its rule in ``sda.constraints``, the one
        ``SdA`` and the run configurations use, so a bad value gets the same
        error and words (the parameters named as here, e.g. ``alpha``).
        """
        sizes = self.hidden_layer_sizes
        sizes = check_setting("hidden_layers", [sizes] if np.isscalar(sizes) else sizes, "hidden_layer_sizes")
        levels = self.corruption_levels
        levels = check_setting("corruption_levels", [levels] * len(sizes) if np.isscalar(levels) else levels)
        check_one_level_per_layer(sizes, levels)
        check_setting("tied", self.tied)
        check_setting("loss", self.loss)
        if isinstance(self.verbose, numbers.Integral) and not isinstance(self.verbose, bool | np.bool_):
            check_setting("verbose", self.verbose)  # scikit-learn's levels 0, 1, 2 ...
        else:
            check_flag("verbose", self.verbose)
        for name in self._get_param_names():
            if name in AS_SETTING:
                check_setting(AS_SETTING[name], getattr(self, name), name, allow_none=name in OPTIONAL)
        return list(sizes), list(levels)

    def _validate_X(self, X: ArrayLike, reset: bool) -> np.ndarray:
        """``X`` as float32, checked by scikit-learn's helpers: for ``fit``
        (``reset``) every value in [0, 1], for predictions clipped into it."""
        X = self._check_finite(validate_data(self, X, dtype=np.float32, reset=reset, ensure_all_finite=False))
        return self._check_range(X) if reset else self._clip(X)

    def _check_finite(self, X: np.ndarray) -> np.ndarray:
        """Refuse a validated ``X`` holding NaN or infinity, in one line that names where."""
        if not np.isfinite(X).all():
            row, column = np.argwhere(~np.isfinite(X))[0]
            kind = "NaN" if np.isnan(X[row, column]) else "infinity or a value too large for float32"
            name = type(self).__name__
            raise ValueError(
                f"Input X contains {kind} (first at row {row}, column {column}): {name} "
                "needs finite values; drop or impute them, e.g. "
                f"make_pipeline(SimpleImputer(), MinMaxScaler(), {name}(...))"
            )
        return X

    @staticmethod
    def _clip(X):
        """``X`` clipped into [0, 1], in a copy when any value is outside: ``X`` may be the caller's."""
        outside = X.min(initial=0.0) < 0 or X.max(initial=0.0) > 1
        return np.clip(X, 0.0, 1.0) if outside else X

    def _check_range(self, X: np.ndarray) -> np.ndarray:
        """Refuse training rows with values outside [0, 1]; clip rounding slack."""
        name = type(self).__name__
        low, high = float(X.min(initial=0.0)), float(X.max(initial=0.0))
        if low < -RANGE_SLACK:
            raise ValueError(
                f"Negative values in data passed to {name} (minimum {low:.4g}): it needs "
                f"every value in [0, 1]; {SCALING_HINT.format(name=name)}"
            )
        if high > 1 + RANGE_SLACK:
            raise ValueError(
                f"Values above 1 in data passed to {name} (maximum {high:.4g}): it needs "
                f"every value in [0, 1]; {SCALING_HINT.format(name=name)}"
            )
        return self._clip(X)

    def _seeds(self, count):
        """``count`` integer seeds, every one drawn from ``random_state``."""
        return check_random_state(self.random_state).randint(np.iinfo(np.int32).max, size=count)

    def _build(self, n_features, n_outs, seed):
        sizes, levels = self._check_settings()
        for unpickled in ("_architecture", "_weights"):  # a refit replaces a loaded model
            self.__dict__.pop(unpickled, None)
        architecture = dict(
            n_ins=n_features,
            hidden_layers_sizes=tuple(sizes),
            n_outs=n_outs,
            corruption_levels=tuple(levels),
            tied=bool(self.tied),
            loss=self.loss,
        )
        check_memory(
            training_memory(n_features, sizes, n_outs, tied=bool(self.tied), batch_rows=self.batch_size),
            dict.fromkeys(("parameters", "minibatch"), "hidden_layer_sizes or batch_size"),
        )
        self._network = _Network(SdA(np.random.RandomState(seed), **architecture), architecture)
        return self._network.model

    def _pretrain(self, model, X):
        """Greedy layer-wise pre-training on the rows ``X``; sets ``pretrain_loss_curves_``."""
        if self.batch_size > len(X):
            warnings.warn(
                f"batch_size={self.batch_size} is larger than the {len(X)} training rows, "
                f"so every minibatch holds all {len(X)}; give a smaller batch_size",
                UserWarning,
                stacklevel=3,
            )
        shared_x = pytensor.shared(np.ascontiguousarray(X), name="x", borrow=True)
        self.pretrain_loss_curves_ = pretrain(
            model,
            shared_x,
            self.batch_size,
            self.pretrain_epochs,
            self.pretrain_learning_rate,
            momentum=self.momentum,
            weight_decay=self.alpha,
            on_epoch=self._report,
        )
        return self.pretrain_loss_curves_

    def _report(self, record):
        if not self.verbose:
            return
        if record["phase"] == "pretrain":
            print(f"pre-train layer {record['layer']} epoch {record['epoch']}: cost {record['cost']:.4f}")
        else:
            print(
                f"fine-tune epoch {record['epoch']}: cost {record['cost']:.4f}, "
                f"validation error {record['valid_error']:.4f}"
            )

    def _fitted(self) -> _Network:
        """The fitted network (``__setstate__`` rebuilds it when a pickle is loaded)."""
        check_is_fitted(self)
        return self._network

    @classmethod
    def from_run(cls, folder: str | os.PathLike[str], **params: Any) -> Self:
        """A fitted estimator holding the model a run of ``python -m sda.run`` trained.

        Parameters
        ----------
        folder : str or path-like
            The run folder, or its ``model.npz``; loaded by :func:`sda.trained.load_run`.
        **params
            Other constructor parameters, e.g. ``layer`` for the transformer;
            the architecture ones come from the run.

        Returns
        -------
        estimator
            Fitted: ``predict``, ``transform`` and ``score`` use the run's
            weights (a classifier's ``classes_`` are its labels); ``fit`` trains
            a new model of the same architecture.

        Raises
        ------
        SdAError
            If ``folder`` holds no readable model (``sda.trained.load_run``).
        ValueError, TypeError
            If a parameter in ``params`` is refused.
        """
        trained = load_run(folder)
        architecture = trained.architecture
        estimator = cls(
            hidden_layer_sizes=architecture["hidden_layers_sizes"],
            corruption_levels=architecture["corruption_levels"],
            tied=architecture["tied"],
            loss=architecture["loss"],
            **params,
        )
        estimator._check_settings()
        estimator._network = _Network(trained.model, dict(architecture))
        estimator.n_features_in_ = architecture["n_ins"]
        if isinstance(estimator, ClassifierMixin):
            estimator.classes_ = trained.classes
        return estimator

    # Pickles and deep copies hold numpy weights only: compiled functions and
    # shared variables are rebuilt on first use (see ``_fitted``).
    def __getstate__(self):
        state = dict(super().__getstate__())
        network = state.pop("_network", None)
        if network is not None:
            state["_architecture"], state["_weights"] = network.architecture, network.weights()
        return state

    def __setstate__(self, state):
        """Restore a pickle, rebuilding the network at once so damaged weights are refused here."""
        super().__setstate__(state)
        if "_weights" in state:
            self._network = _Network.from_weights(
                self.__dict__.pop("_architecture"), self.__dict__.pop("_weights"), type(self).__name__
            )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True  # [0, 1] in fact; see the module docstring
        return tags


# --------------------------------------------------------------------- transformer
class SdATransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, _SdAEstimator):
    """Features learnt by a stack of denoising auto-encoders.

    ``fit`` pre-trains the stack greedily, one layer at a time
    (:func:`sda.train.pretrain`): each dA learns to rebuild its clean input
    from a copy with a fraction ``corruption_levels`` of the entries zeroed.
    ``transform`` returns a layer's code.

    Every value of the training rows must lie in [0, 1] (pixel intensities,
    probabilities): ``fit`` refuses other data with a ``ValueError`` rather
    than rescale it; use ``make_pipeline(MinMaxScaler(), SdATransformer(...))``.
    ``transform`` and ``score`` take any finite values and clip them into
    [0, 1], the range the stack was trained on. NaN and infinity are refused.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(100,)
        Units in each hidden layer, bottom first.
    corruption_levels : float or tuple of float, default=0.1
        Fraction of inputs each dA zeroes in training, one for every layer or one per layer.
    pretrain_epochs : int, default=10
        Passes over the data for each layer.
    pretrain_learning_rate : float, default=0.02
        SGD step size of pre-training (the cost is the mean over a minibatch).
    batch_size : int, default=20
        Rows per SGD step.
    momentum : float, default=0.0
        SGD momentum, in [0, 1).
    alpha : float, default=0.0
        Weight decay (L2 penalty) on the weight matrices.
    tied : bool, default=True
        Whether each decoder reuses its encoder's weights transposed.
    loss : {"cross_entropy", "squared"}, default="cross_entropy"
        Reconstruction loss.
    layer : int, default=-1
        The hidden layer whose code ``transform`` returns; negative counts from the top.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights and the corruption noise: the same value gives the same model.
    verbose : bool, default=False
        Print each epoch's cost.

    Attributes
    ----------
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of str
        Names of the features seen in ``fit``, when ``X`` had string column names.
    pretrain_loss_curves_ : list of list of float
        For each layer, the mean reconstruction cost of every epoch.

    See Also
    --------
    SdAClassifier : The same stack, fine-tuned with a softmax classifier on top.
    sklearn.neural_network.BernoulliRBM : Another unsupervised feature learner for [0, 1] data.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sda import SdATransformer
    >>> X = load_digits().data / 16  # pixel values 0..16, scaled into [0, 1]
    >>> sdae = SdATransformer(hidden_layer_sizes=(32, 16), pretrain_epochs=2, random_state=0)
    >>> sdae.fit_transform(X).shape
    (1797, 16)
    >>> sdae.set_params(layer=0).transform(X[:5]).shape
    (5, 32)
    >>> sdae.score(X) < 0  # minus the mean reconstruction cost: greater is better
    True
    """

    def __init__(
        self,
        hidden_layer_sizes: int | Sequence[int] = (100,),
        *,
        corruption_levels: float | Sequence[float] = 0.1,
        pretrain_epochs: int = 10,
        pretrain_learning_rate: float = 0.02,
        batch_size: int = 20,
        momentum: float = 0.0,
        alpha: float = 0.0,
        tied: bool = True,
        loss: str = "cross_entropy",
        layer: int = -1,
        random_state: int | np.random.RandomState | None = None,
        verbose: bool | int = False,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.corruption_levels = corruption_levels
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_learning_rate = pretrain_learning_rate
        self.batch_size = batch_size
        self.momentum = momentum
        self.alpha = alpha
        self.tied = tied
        self.loss = loss
        self.layer = layer
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X: ArrayLike, y: Any = None) -> Self:
        """Pre-train the stack on ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows, every value in [0, 1].
        y : None
            Ignored.

        Returns
        -------
        self : SdATransformer
            The fitted transformer.

        Raises
        ------
        ValueError
            If ``X`` holds NaN, infinity or values outside [0, 1], or a
            parameter (e.g. ``layer``) is out of range.
        TypeError
            If a parameter has the wrong type.
        """
        X = self._validate_X(X, reset=True)
        (seed,) = self._seeds(1)
        self._layer_index()  # a bad ``layer`` fails before training, not after
        # The SdA always has a softmax layer (of at least 2 classes); unused here.
        model = self._build(X.shape[1], 2, seed)
        self._pretrain(model, X)
        return self

    def _layer_index(self):
        n_layers = len(self._check_settings()[0])
        if (
            isinstance(self.layer, bool)
            or not isinstance(self.layer, (int, np.integer))
            or not -n_layers <= self.layer < n_layers
        ):
            raise ValueError(
                f"layer must be an integer from {-n_layers} to {n_layers - 1} for "
                f"{n_layers} hidden layers, got {self.layer!r}"
            )
        return self.layer % n_layers

    def transform(self, X: ArrayLike) -> np.ndarray:
        """The code of hidden layer ``layer`` for each row of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows of finite values, clipped into [0, 1].

        Returns
        -------
        X_new : ndarray of shape (n_samples, hidden_layer_sizes[layer]), float32
            The layer's sigmoid activations, computed without corruption.
        """
        network = self._fitted()
        return network.code(self._validate_X(X, reset=False), self._layer_index())

    def score(self, X: ArrayLike, y: Any = None) -> float:
        """Minus the mean reconstruction cost of ``X`` (greater is better).

        Each row goes up to hidden layer ``layer`` and back down through the
        dAs' decoders, without corruption; its cost is ``loss`` between the
        row and its reconstruction.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows of finite values, clipped into [0, 1].
        y : None
            Ignored.

        Returns
        -------
        score : float
            The negative mean reconstruction cost per row.
        """
        network = self._fitted()
        X = self._validate_X(X, reset=False)
        return -float(np.mean(network.reconstruction_costs(X, self._layer_index() + 1), dtype=np.float64))

    @property
    def _n_features_out(self):
        """Columns of ``transform``'s output (for ``get_feature_names_out``)."""
        return self._fitted().architecture["hidden_layers_sizes"][self._layer_index()]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # the network computes in float32
        return tags


# ---------------------------------------------------------------------- classifier
class SdAClassifier(ClassifierMixin, _SdAEstimator):
    """A stacked denoising auto-encoder classifier.

    ``fit`` pre-trains a stack of denoising auto-encoders greedily on ``X``
    (:func:`sda.train.pretrain`), puts a softmax layer on top and fine-tunes
    the whole network on the labels: by minibatch SGD with the tutorial's
    early stopping, or by conjugate gradient or L-BFGS over all the rows
    (:func:`sda.finetune.finetune`). A
    stratified share ``validation_fraction`` of the training rows is held out
    to pick the best iterate.

    Every value of the training rows must lie in [0, 1] (pixel intensities,
    probabilities): ``fit`` refuses other data with a ``ValueError`` rather
    than rescale it; use ``make_pipeline(MinMaxScaler(), SdAClassifier(...))``.
    ``predict``, ``predict_proba``, ``predict_log_proba`` and ``score`` take
    any finite values and clip them into [0, 1], the range the network was
    trained on, so held-out rows that a scaler maps a little past 1 are
    scored. NaN and infinity are refused.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(100,)
        Units in each hidden layer, bottom first.
    corruption_levels : float or tuple of float, default=0.1
        Fraction of inputs each dA zeroes in pre-training, one for every layer or one per layer.
    pretrain_epochs : int, default=10
        Pre-training passes over the data for each layer; 0 skips pre-training.
    pretrain_learning_rate : float, default=0.02
        SGD step size of pre-training.
    solver : {"sgd", "cg", "lbfgs"}, default="sgd"
        Fine-tuning optimiser: minibatch SGD, scipy's nonlinear conjugate
        gradient, or L-BFGS-B. CG and L-BFGS use every row at each step and
        choose their own step lengths.
    batch_size : int, default=20
        Rows per SGD step, in pre-training and in fine-tuning with ``"sgd"``.
    learning_rate_init : float, default=1.0
        Fine-tuning SGD step size (``"sgd"`` only).
    max_iter : int, default=200
        Most fine-tuning epochs (``"sgd"``) or optimiser iterations (``"cg"``, ``"lbfgs"``).
    n_iter_no_change : int, default=10
        Early stopping: epochs (``"sgd"``: the initial patience of the
        tutorial's rule, which grows as the validation error improves) or
        iterations (``"cg"``, ``"lbfgs"``) without a better validation score.
    validation_fraction : float, default=0.1
        Share of the training rows held out, stratified, for early stopping.
        0 watches the training error instead.
    momentum : float, default=0.0
        SGD momentum, in [0, 1), in pre-training and ``"sgd"`` fine-tuning.
    alpha : float, default=0.0
        Weight decay (L2 penalty) on the weight matrices, in every phase.
    input_dropout : float, default=0.0
        ``"sgd"`` fine-tuning: each input value zeroed with this probability
        at every step, the rest scaled by ``1 / (1 - input_dropout)``; in [0, 1).
    hidden_dropout : float, default=0.0
        ``"sgd"`` fine-tuning: each hidden unit's output zeroed with this
        probability at every step, the rest scaled up to keep its mean; in [0, 1).
        Predictions use the whole network, which approximates averaging the
        thinned networks trained.
    max_norm : float or None, default=None
        ``"sgd"`` fine-tuning: after every step, each unit's incoming weights
        (a column of each weight matrix) longer than this are scaled back to
        it; None leaves them free.
    tied : bool, default=True
        Whether each decoder reuses its encoder's weights transposed.
    loss : {"cross_entropy", "squared"}, default="cross_entropy"
        Reconstruction loss of pre-training.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the corruption noise, the dropout masks
        and the validation split: the same value gives the same model.
    verbose : bool, default=False
        Print each epoch's cost.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, in the order of ``predict_proba``'s columns.
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of str
        Names of the features seen in ``fit``, when ``X`` had string column names.
    pretrain_loss_curves_ : list of list of float
        For each layer, the mean reconstruction cost of every pre-training epoch.
    loss_curve_ : list of float
        Fine-tuning training cost (mean negative log-likelihood) at each epoch or iteration.
    validation_scores_ : list of float
        Validation accuracy at each epoch or iteration.
    best_validation_score_ : float
        The best validation accuracy; the model keeps the weights that reached it.
    n_iter_ : int
        Fine-tuning epochs (``"sgd"``) or iterations (``"cg"``, ``"lbfgs"``) run.

    See Also
    --------
    SdATransformer : The pre-trained stack alone, as features.
    sklearn.neural_network.MLPClassifier : The same network trained from a random start.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.model_selection import train_test_split
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import MinMaxScaler
    >>> from sda import SdAClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    >>> model = make_pipeline(MinMaxScaler(clip=True), SdAClassifier(
    ...     hidden_layer_sizes=(64,), pretrain_epochs=3, max_iter=20, random_state=0))
    >>> model.fit(X_train, y_train).score(X_test, y_test) > 0.9
    True
    >>> model.predict_proba(X_test[:2]).shape
    (2, 10)
    """

    def __init__(
        self,
        hidden_layer_sizes: int | Sequence[int] = (100,),
        *,
        corruption_levels: float | Sequence[float] = 0.1,
        pretrain_epochs: int = 10,
        pretrain_learning_rate: float = 0.02,
        solver: str = "sgd",
        batch_size: int = 20,
        learning_rate_init: float = 1.0,
        max_iter: int = 200,
        n_iter_no_change: int = 10,
        validation_fraction: float = 0.1,
        momentum: float = 0.0,
        alpha: float = 0.0,
        input_dropout: float = 0.0,
        hidden_dropout: float = 0.0,
        max_norm: float | None = None,
        tied: bool = True,
        loss: str = "cross_entropy",
        random_state: int | np.random.RandomState | None = None,
        verbose: bool | int = False,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.corruption_levels = corruption_levels
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_learning_rate = pretrain_learning_rate
        self.solver = solver
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.n_iter_no_change = n_iter_no_change
        self.validation_fraction = validation_fraction
        self.momentum = momentum
        self.alpha = alpha
        self.input_dropout = input_dropout
        self.hidden_dropout = hidden_dropout
        self.max_norm = max_norm
        self.tied = tied
        self.loss = loss
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X: ArrayLike, y: ArrayLike) -> Self:
        """Pre-train the stack on ``X``, then fine-tune it on the labels ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows, every value in [0, 1].
        y : array-like of shape (n_samples,)
            Class labels: any hashable values, e.g. integers or strings.

        Returns
        -------
        self : SdAClassifier
            The fitted classifier.

        Raises
        ------
        ValueError
            If ``X`` holds NaN, infinity or values outside [0, 1], ``y`` holds
            fewer than 2 classes or continuous values, ``validation_fraction``
            cannot hold out a stratified share, a parameter is out of range, or
            ``input_dropout``, ``hidden_dropout`` or ``max_norm`` is given with
            ``solver`` other than ``"sgd"``.
        TypeError
            If a parameter has the wrong type.
        """
        # validate_data is untyped: name what it returns, so X is an array from here on
        X, y = cast(
            tuple[np.ndarray, np.ndarray],
            validate_data(self, X, y, dtype=np.float32, ensure_all_finite=False),
        )
        check_classification_targets(y)
        X = self._check_range(self._check_finite(X))
        self._check_settings()
        regularised = [name for name in SGD_ONLY if getattr(self, name) not in (0, None)]
        if self.solver != "sgd" and regularised:
            # full-batch CG and L-BFGS would see one fixed mask: not dropout
            raise ValueError(
                f"{', '.join(regularised)} apply only to solver='sgd'; use it, or leave them at their "
                f"defaults for solver={self.solver!r}"
            )
        encoder = LabelEncoder()
        labels = encoder.fit_transform(y).astype(np.int32)
        self.classes_ = encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 classes in y; got only one "
                f"class, {self.classes_[0]!r}"
            )
        model_seed, split_seed = self._seeds(2)
        train, valid = self._split(X, labels, split_seed)
        model = self._build(X.shape[1], len(self.classes_), model_seed)
        self._pretrain(model, train.x)
        self._finetune(model, train, valid)
        return self

    def _split(self, X, labels, seed):
        """``(train, valid)`` Splits: a stratified, seeded share of the rows held
        out; with ``validation_fraction=0``, the shuffled rows serve as both."""
        if self.validation_fraction == 0:
            order = np.random.RandomState(seed).permutation(len(X))
            train = Split(X[order], labels[order])
            return train, train
        n_classes = len(self.classes_)
        # at least one row of every class, as stratification needs
        n_valid = max(int(np.ceil(self.validation_fraction * len(X))), n_classes)
        smallest = np.bincount(labels).min()
        if smallest < 2 or len(X) - n_valid < n_classes:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} cannot hold out a stratified share "
                f"of {len(X)} rows in {n_classes} classes (the smallest has {smallest} rows); give "
                "more rows, or set validation_fraction=0 to watch the training error instead"
            )
        x_train, x_valid, y_train, y_valid = train_test_split(
            X, labels, test_size=n_valid, stratify=labels, random_state=seed
        )
        return Split(x_train, y_train), Split(x_valid, y_valid)

    def _finetune(self, model, train, valid):
        """Fine-tune with ``solver``; sets the curves and ``n_iter_``."""
        # The loops also score a test split: the validation split (the same shared
        # arrays) stands in for it.
        held_out = shared_dataset(valid)
        shared = [shared_dataset(train), held_out, held_out]
        records = []

        def keep(record):
            records.append(record)
            self._report(record.row())

        if self.solver == "sgd":
            train_fn, valid_score, _ = model.build_finetune_functions(
                shared,
                self.batch_size,
                self.learning_rate_init,
                DEFAULT_CHUNK_ROWS,
                self.momentum,
                self.alpha,
                self.input_dropout,
                self.hidden_dropout,
                self.max_norm,
            )
            step = MinibatchSGD(train_fn, len(train.y), self.batch_size)
            # patience in epochs, validated once an epoch
            rule = PatienceRule(self.n_iter_no_change * step.n_batches, validation_frequency=step.n_batches)
            # valid_score twice: a new best is not scored a second time as the "test" error
            monitor = Monitor(rule, model.params, valid_score.error, valid_score.error)
            result = finetune(model, step, monitor, max_epochs=self.max_iter, on_record=keep)
            self.n_iter_ = int(result.epochs_run)
        else:
            # full batch: one run of max_iter iterations over every row, measured after each
            # (each costs at least one pass), stopped after n_iter_no_change without improvement
            step = classifier_line_search(
                model, shared[0], self.solver, len(train.y), self.max_iter, weight_decay=self.alpha
            )
            policy = PassBudget(eval_every=1.0, no_change=self.n_iter_no_change)
            monitor = classifier_monitor(model, shared, policy, weight_decay=self.alpha)

            def keep_iterates(record):
                """One record per iteration: not the starting point, nor a last one at the same iterate."""
                if record.updates > (records[-1].updates if records else 0):
                    keep(record)

            result = finetune(model, step, monitor, max_epochs=1, on_record=keep_iterates)
            self.n_iter_ = int(result.iterations)
        self.loss_curve_ = [float(r.cost) for r in records]
        self.validation_scores_ = [1.0 - float(r.valid_error) for r in records]
        self.best_validation_score_ = 1.0 - float(result.best_valid_error)

    def predict_log_proba(self, X: ArrayLike) -> np.ndarray:
        """Log of the class probabilities of each row of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows of finite values, clipped into [0, 1].

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``.
        """
        network = self._fitted()
        log_proba = network.log_proba(self._validate_X(X, reset=False)).astype(np.float64)
        # The network's float32 softmax is normalised again in float64, so
        # exp(log_proba) sums to 1 to double precision.
        return log_proba - logsumexp(log_proba, axis=1, keepdims=True)

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities of each row of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows of finite values, clipped into [0, 1].

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``; each row sums to 1.
        """
        return np.exp(self.predict_log_proba(X))

    def predict(self, X: ArrayLike) -> np.ndarray:
        """The most probable class of each row of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows of finite values, clipped into [0, 1].

        Returns
        -------
        y : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        log_proba = self.predict_log_proba(X)  # checks the model is fitted, before classes_ is read
        return self.classes_[np.argmax(log_proba, axis=1)]
