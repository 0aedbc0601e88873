"""The stacked denoising auto-encoder: dAs for pre-training, an MLP for fine-tuning.

The two views share parameters. Layer ``i``'s dA encodes with the very same
shared variables ``W`` and ``b`` as the MLP's ``i``-th sigmoid layer, so
pre-training a dA *is* initialising the MLP; only the dA's visible bias
(and an untied decoder) belong to the dA alone.
"""

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile import Function
from pytensor.graph.basic import Variable
from pytensor.graph.replace import clone_replace

from sda.batching import SplitScorer
from sda.checks import check_numpy_rng
from sda.constraints import check_one_level_per_layer, check_setting
from sda.dA import dA
from sda.engine import batched_function
from sda.graph_types import (
    NumpyRNG,
    RandomGenerator,
    RandomGeneratorSharedVariable,
    Tensor,
    TensorSharedVariable,
    Update,
)
from sda.logistic import LogisticRegression
from sda.mlp import HiddenLayer
from sda.noise import bernoulli
from sda.sgd import SGDStep, sgd_updates


def check_architecture(
    n_ins: int,
    hidden_layers_sizes: Sequence[int],
    n_outs: int,
    corruption_levels: Sequence[float],
    tied: bool = True,
    loss: str = "cross_entropy",
) -> None:
    """Raise an error naming the first nonsense setting and its fix (``sda.constraints``).

    Parameters
    ----------
    n_ins, hidden_layers_sizes, n_outs, corruption_levels, tied, loss
        As for ``SdA``.

    Raises
    ------
    SettingTypeError
        A setting of the wrong type (a ``TypeError``).
    SettingError
        A setting whose value makes no sense (a ``ValueError``); both are ``SdAError`` s.
    """
    sizes = check_setting("hidden_layers", hidden_layers_sizes, "hidden_layers_sizes")
    check_setting("n_ins", n_ins)
    check_setting("n_outs", n_outs)
    levels = check_setting("corruption_levels", corruption_levels)
    check_one_level_per_layer(sizes, levels)
    check_setting("tied", tied)
    check_setting("loss", loss)


class SdA:
    """A stack of dAs whose encoders form a sigmoid MLP with a softmax on top.

    Layer ``i``'s dA and the MLP's ``i``-th ``HiddenLayer`` hold the same
    shared ``W`` and ``b``, so pre-training the dAs initialises the MLP.

    Parameters
    ----------
    numpy_rng : numpy.random.RandomState or numpy.random.Generator
        Draws the initial weights and seeds each dA's noise generator.
    n_ins : int
        Inputs per example (784 for MNIST).
    hidden_layers_sizes : sequence of int
        Units of each hidden layer, bottom first.
    n_outs : int
        Number of classes (at least 2).
    corruption_levels : sequence of float
        Masking-noise level of each layer's dA, in [0, 1).
    tied : bool
        Tied (``W.T``) or separate decoder weights in every dA.
    loss : {"cross_entropy", "squared"}
        The dAs' reconstruction loss.

    Attributes
    ----------
    sigmoid_layers : list of HiddenLayer
        The MLP's hidden layers.
    dA_layers : list of dA
        One dA per hidden layer, sharing that layer's ``W`` and ``b``.
    logLayer : LogisticRegression
        The softmax classifier on top.
    params : list of shared variables
        Every parameter the MLP fine-tunes, bottom first.
    x, y : TensorVariable
        The symbolic input rows and their int32 labels.

    Examples
    --------
    >>> import numpy as np
    >>> from sda import SdA
    >>> model = SdA(np.random.RandomState(0), n_ins=64, hidden_layers_sizes=(32, 16),
    ...             n_outs=10, corruption_levels=(0.1, 0.2))
    >>> model.dA_layers[1].W is model.sigmoid_layers[1].W
    True
    >>> [p.get_value().shape for p in model.params]
    [(64, 32), (32,), (32, 16), (16,), (16, 10), (10,)]
    """

    def __init__(
        self,
        numpy_rng: NumpyRNG,
        n_ins: int = 784,
        hidden_layers_sizes: Sequence[int] = (1000, 1000, 1000),
        n_outs: int = 10,
        corruption_levels: Sequence[float] = (0.1, 0.2, 0.3),
        tied: bool = True,
        loss: str = "cross_entropy",
    ) -> None:
        check_numpy_rng("numpy_rng", numpy_rng)
        check_architecture(n_ins, hidden_layers_sizes, n_outs, corruption_levels, tied, loss)
        self.n_layers = len(hidden_layers_sizes)
        self.corruption_levels = tuple(float(c) for c in corruption_levels)
        self.x = pt.matrix("x")  # rows of pixels
        self.y = pt.ivector("y")  # their labels
        self.sigmoid_layers: list[HiddenLayer] = []
        self.dA_layers: list[dA] = []
        self.params: list[TensorSharedVariable] = []

        layer_input, n_in = self.x, n_ins
        for n_out in hidden_layers_sizes:
            hidden = HiddenLayer(numpy_rng, layer_input, n_in, n_out, activation=pt.sigmoid)
            auto_encoder = dA(
                numpy_rng,
                input=layer_input,
                n_visible=n_in,
                n_hidden=n_out,
                W=hidden.W,
                bhid=hidden.b,
                tied=tied,
                loss=loss,
            )
            self.sigmoid_layers.append(hidden)
            self.dA_layers.append(auto_encoder)
            self.params.extend(hidden.params)
            layer_input, n_in = hidden.output, n_out

        self.logLayer = LogisticRegression(layer_input, n_in, n_outs)
        self.params.extend(self.logLayer.params)
        self.finetune_cost = self.logLayer.negative_log_likelihood(self.y)
        self.errors = self.logLayer.errors(self.y)

    # ------------------------------------------------------------ pre-training
    def pretraining_function(
        self,
        layer: int,
        source: TensorSharedVariable,
        batch_size: int,
        cached: bool = False,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> SGDStep:
        """Compile ``fn(index, corruption, lr) -> cost``: one SGD step of dA
        ``layer`` on minibatch ``index`` of the shared matrix ``source``.

        As in the tutorial, the inputs may also be given by the names of the
        symbolic variables: ``fn(index=i, corruption=0.1, lr=0.001)``.

        Parameters
        ----------
        layer : int
            Which dA, counted from the bottom.
        source : TensorSharedVariable
            The training rows. With ``cached=False``, network inputs, pushed
            through the frozen layers below on every call (the tutorial's way);
            with ``cached=True``, the layer's own input, the stored output of
            the layers below (see ``layer_input_function``).
        batch_size : int
            Rows per minibatch.
        cached : bool
            What ``source`` holds, as above.
        momentum, weight_decay : float
            As in ``sda.sgd.sgd_updates``.

        Returns
        -------
        SGDStep
            The compiled step; its ``velocities`` are the momentum state.
        """
        index = pt.lscalar("index")
        corruption = pt.scalar("corruption")
        lr = pt.scalar("lr")
        auto_encoder = self.dA_layers[layer]
        cost, updates, velocities = auto_encoder.get_cost_updates(
            corruption, lr, momentum, weight_decay, return_velocities=True
        )
        fed = auto_encoder.x if cached else self.x
        step = batched_function(
            index,
            [corruption, lr],
            cost,
            {fed: source},
            batch_size,
            updates=updates,
            name=f"pretrain_layer{layer}",
        )
        return SGDStep(step, velocities)

    def pretraining_functions(self, train_set_x: TensorSharedVariable, batch_size: int) -> list[SGDStep]:
        """One compiled pre-training step per layer, fed from ``train_set_x``.

        Parameters
        ----------
        train_set_x : TensorSharedVariable
            The training inputs, one example per row.
        batch_size : int
            Rows per minibatch.

        Returns
        -------
        list of SGDStep
            ``fn(index, corruption, lr) -> cost`` for each layer, bottom first
            (see ``pretraining_function``).
        """
        return [self.pretraining_function(i, train_set_x, batch_size) for i in range(self.n_layers)]

    def unrolled_pre_activation(self, input: Tensor, depth: int | None = None) -> Tensor:
        """The pre-activation of ``input``'s reconstruction through the stack
        unrolled into one deep auto-encoder (no noise).

        Parameters
        ----------
        input : TensorVariable
            Symbolic input rows.
        depth : int, optional
            Encode through layers ``0..depth-1`` and decode back down through
            their dAs' decoders; every layer by default.

        Returns
        -------
        TensorVariable
            The bottom decoder's pre-activation; ``sigmoid`` of it is the reconstruction.
        """
        hidden = input
        for auto_encoder in self.dA_layers[:depth]:
            hidden = auto_encoder.get_hidden_values(hidden)
        for auto_encoder in reversed(self.dA_layers[:depth]):
            pre_activation: Tensor = auto_encoder.get_reconstruction_pre_activation(hidden)
            hidden = pt.sigmoid(pre_activation)
        return pre_activation

    def layer_input_function(self, layer: int) -> Function:
        """Compile ``f(x) -> input of dA layer``: the frozen encoders below it.

        Parameters
        ----------
        layer : int
            Which dA, counted from the bottom (0 gives the identity).

        Returns
        -------
        pytensor.compile.Function
            Maps rows of network inputs to rows of the layer's input.
        """
        encode: Function = pytensor.function(
            [self.x], self.dA_layers[layer].x, name=f"encode_to_layer{layer}"
        )
        return encode

    # ------------------------------------------------------------- fine-tuning
    def build_finetune_functions(
        self,
        datasets: Sequence[tuple[TensorSharedVariable, Tensor]],
        batch_size: int,
        learning_rate: float,
        eval_batch_size: int | None = None,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        input_corruption: float = 0.0,
        hidden_dropout: float = 0.0,
        max_norm: float | None = None,
        momentum_schedule: bool = False,
    ) -> tuple[SGDStep, SplitScorer, SplitScorer]:
        """Compile the fine-tuning step and the validation and test scorers.

        Parameters
        ----------
        datasets : sequence of (TensorSharedVariable, TensorVariable)
            ``[(train_x, train_y), (valid_x, valid_y), (test_x, test_y)]``:
            shared inputs and their int32 labels.
        batch_size : int
            Rows per training minibatch.
        learning_rate : float
            The SGD step's starting rate (a shared variable, so a schedule can change it).
        eval_batch_size : int, optional
            Rows per evaluation batch; ``batch_size`` by default.
        momentum, weight_decay : float
            As in ``sda.sgd.sgd_updates``.
        input_corruption : float
            Above 0, training sees masked pixels (see ``dropped_input``); the
            scores see clean ones.
        hidden_dropout : float
            Above 0, training also drops each hidden unit with this
            probability (see ``dropout_finetune_cost``); the scores use the
            whole network.
        max_norm : float, optional
            After every step, each unit's incoming weights are scaled back to
            at most this L2 norm (``sda.sgd.within_max_norm``); None: no limit.
        momentum_schedule : bool
            Compile the momentum as a shared scalar starting at ``momentum``
            (``train_fn.momentum``), so a loop can ramp it between epochs.

        Returns
        -------
        train_fn : SGDStep
            ``train_fn(index)`` (or ``train_fn(index=i)``) takes one SGD step on
            a training minibatch and returns its cost; its ``velocities`` are
            the momentum state and its shared ``learning_rate`` starts at
            ``learning_rate``.
        valid_score, test_score : SplitScorer
            ``valid_score()`` lists each batch's error rate, as the tutorial's
            ``validate_model()`` does; ``valid_score.error()`` is the split's
            error rate.
        """
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = datasets
        index = pt.lscalar("index")
        # shared, so a schedule can change it between epochs (train_fn.learning_rate)
        rate = pytensor.shared(np.float32(learning_rate), name="finetune_lr")
        cost, noise = self.dropout_finetune_cost(input_corruption, hidden_dropout)
        shared_momentum = None
        if momentum_schedule:
            check_setting("momentum", momentum)
            shared_momentum = pytensor.shared(np.float32(momentum), name="finetune_momentum")
        updates, velocities = sgd_updates(
            cost,
            self.params,
            rate,
            momentum if shared_momentum is None else shared_momentum,
            weight_decay,
            max_norm,
        )
        train_fn = SGDStep(
            batched_function(
                index,
                [],
                cost,
                {self.x: train_x, self.y: train_y},
                batch_size,
                updates=updates + noise,
                name="train",
            ),
            velocities,
            rate,
            shared_momentum,
        )
        eval_batch_size = eval_batch_size or batch_size
        valid_score = self.error_scorer(valid_x, valid_y, eval_batch_size, "valid")
        test_score = self.error_scorer(test_x, test_y, eval_batch_size, "test")
        return train_fn, valid_score, test_score

    def dropout_finetune_cost(
        self, corruption_level: float, hidden_dropout: float = 0.0
    ) -> tuple[Tensor, list[Update]]:
        """The fine-tuning cost of a thinned network: dropped pixels, and dropped hidden units.

        Each pixel is zeroed with probability ``corruption_level`` and each
        hidden unit's output with probability ``hidden_dropout``; what is
        kept is scaled by ``1 / (1 - level)``, so every unit's expected input
        stays what the whole network gives it (Srivastava et al., 2014, with
        the scaling done while training). The masks are drawn in order
        (pixels, then each hidden layer bottom up) from the first dA's
        generator.

        Parameters
        ----------
        corruption_level : float
            Probability of dropping each pixel, in [0, 1); 0 drops none.
        hidden_dropout : float
            Probability of dropping each hidden unit, in [0, 1); 0 drops none.

        Returns
        -------
        cost : TensorVariable
            The mean negative log-likelihood of the thinned network
            (``finetune_cost`` itself when both levels are 0).
        noise_updates : list of (shared variable, new value)
            The generator update an SGD step must apply to draw fresh masks
            next time (none when both levels are 0).
        """
        check_setting("finetune_corruption", corruption_level, as_name="corruption_level")
        check_setting("finetune_corruption", hidden_dropout, as_name="hidden_dropout")
        if hidden_dropout:
            return self._thinned_cost(corruption_level, hidden_dropout)
        if not corruption_level:
            return self.finetune_cost, []
        next_rng, noisy_x = self.dropped_input(corruption_level)
        # the same graph with x swapped for the noisy pixels: no second network to build
        replace: dict[Variable[Any, Any], Variable[Any, Any]] = {self.x: noisy_x}
        # one output in, one out: PyTensor's annotation also allows the list a list gives
        cost = cast(Tensor, clone_replace(self.finetune_cost, replace))
        return cost, [(self.dA_layers[0].rng, next_rng)]

    def _thinned_cost(self, input_level: float, hidden_level: float) -> tuple[Tensor, list[Update]]:
        """``dropout_finetune_cost`` with hidden dropout: the network built again on the same
        shared parameters, a mask after the input and after every hidden layer."""
        rng: Any = self.dA_layers[0].rng
        h = self.x
        if input_level:
            rng, h = self.dropped_input(input_level)
        no_weights_drawn = np.random.RandomState(0)  # the layers below are given their W and b
        for layer in self.sigmoid_layers:
            n_in, n_out = layer.W.get_value(borrow=True).shape
            h = HiddenLayer(no_weights_drawn, h, n_in, n_out, W=layer.W, b=layer.b).output
            rng, mask = bernoulli(
                p=1 - hidden_level, size=h.shape, rng=rng, dtype="int8", return_next_rng=True
            )
            h = h * pt.cast(mask, pytensor.config.floatX) / np.float32(1 - hidden_level)
        n_in, n_out = self.logLayer.W.get_value(borrow=True).shape
        top = LogisticRegression(h, n_in, n_out, W=self.logLayer.W, b=self.logLayer.b)
        return top.negative_log_likelihood(self.y), [(self.dA_layers[0].rng, rng)]

    def dropped_input(self, corruption_level: float) -> tuple[RandomGenerator, Tensor]:
        """``self.x`` with each pixel zeroed with probability ``corruption_level``
        and the rest scaled by ``1 / (1 - corruption_level)`` (input dropout).

        The scaling keeps every pixel's expected value, so the clean pixels
        that validation and test see need no correction.

        Parameters
        ----------
        corruption_level : float
            Probability of dropping each pixel, in [0, 1).

        Returns
        -------
        next_rng : RandomGeneratorVariable
            The first dA's generator after drawing the mask.
        noisy_x : TensorVariable
            The dropped and rescaled pixels.
        """
        next_rng, mask = self.dA_layers[0].get_corruption_mask(self.x, corruption_level)
        keep = np.float32(1 - corruption_level)  # a float32 constant keeps the graph float32
        return next_rng, self.x * mask / keep

    def error_scorer(
        self, set_x: TensorSharedVariable, set_y: Tensor, batch_size: int, name: str = "score"
    ) -> SplitScorer:
        """The error rate over a shared split, compiled once; scoring copies no data.

        Parameters
        ----------
        set_x : TensorSharedVariable
            The split's inputs, one example per row.
        set_y : TensorVariable
            Their int32 labels.
        batch_size : int
            Rows per call.
        name : str
            The compiled function's name.

        Returns
        -------
        SplitScorer
            Its ``batch_error(index)`` scores one batch, ``error()`` the split.
        """
        index = pt.lscalar("index")
        batch_error = batched_function(
            index, [], self.errors, {self.x: set_x, self.y: set_y}, batch_size, name=name
        )
        return SplitScorer(batch_error, set_x.get_value(borrow=True).shape[0], batch_size)

    # -------------------------------------------------------------- parameters
    def named_params(self) -> dict[str, TensorSharedVariable]:
        """Every shared parameter by a stable name.

        Returns
        -------
        dict of str to TensorSharedVariable
            ``hidden0.W``, ``hidden0.b``, ``dA0.bvis``, ..., ``logistic.b``;
            a dA's encoder is its hidden layer's, so it appears once.

        Examples
        --------
        >>> model = SdA(np.random.RandomState(0), n_ins=4, hidden_layers_sizes=(3,), n_outs=2,
        ...             corruption_levels=(0.1,))
        >>> list(model.named_params())
        ['hidden0.W', 'hidden0.b', 'dA0.bvis', 'logistic.W', 'logistic.b']
        """
        named: dict[str, TensorSharedVariable] = {}
        for i, (hidden, auto_encoder) in enumerate(zip(self.sigmoid_layers, self.dA_layers)):
            named[f"hidden{i}.W"] = hidden.W
            named[f"hidden{i}.b"] = hidden.b
            for p in auto_encoder.params[2:]:
                named[f"dA{i}.{p.name}"] = p
        named["logistic.W"] = self.logLayer.W
        named["logistic.b"] = self.logLayer.b
        return named

    def random_generators(self) -> dict[str, RandomGeneratorSharedVariable]:
        """The dAs' shared random generators, by name (for checkpoints).

        Returns
        -------
        dict of str to RandomGeneratorSharedVariable
            ``{"dA0.rng": ..., "dA1.rng": ...}``.
        """
        return {f"dA{i}.rng": a.rng for i, a in enumerate(self.dA_layers)}
