"""The dA pre-training step written by hand, as yardsticks for sda's compiled step.

Each reference keeps its own copy of ``(W, b_hid, b_vis)`` and takes one SGD
step per ``step(x, mask=None)`` call, returning the cost: masking noise, tied
weights, the cross-entropy of ``sigmoid(a)`` computed as ``softplus(a) - x a``,
averaged over the minibatch. ``mask`` replays a given corruption (to check
that every implementation takes the same step).
"""

import ctypes
import glob
import os
import re
import sys

import numpy as np
from scipy.special import expit

try:
    import torch
except ImportError:  # the torch column is then skipped
    torch = None


class NumpyGemm:
    """Matrix products through numpy, i.e. the BLAS numpy's wheel bundles."""

    def __init__(self):
        self.products = {}  # by shape: a fresh 3 MB temporary per step costs more than the product

    def dot(self, a, b):
        return a @ b

    def sub_dot(self, alpha, a, b, out):
        # numpy cannot do GEMM's fused `out -= alpha a b`: the product, then two passes over it
        product = self.products.get(out.shape)
        if product is None:
            product = self.products[out.shape] = np.empty_like(out)
        np.matmul(a, b, out=product)
        product *= alpha
        out -= product


class MklGemm:
    """Matrix products through MKL's ``cblas_sgemm`` (the library sda links), via ctypes."""

    ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

    def __init__(self, path):
        self.path = path
        self.lib = ctypes.CDLL(path)
        self.sgemm = self.lib.cblas_sgemm
        c_int, c_float, c_ptr = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
        self.sgemm.argtypes = [c_int] * 6 + [c_float, c_ptr, c_int, c_ptr, c_int, c_float, c_ptr, c_int]
        self.sgemm.restype = None

    def version(self):
        buffer = ctypes.create_string_buffer(256)
        self.lib.mkl_get_version_string(buffer, len(buffer))
        found = re.search(r"Version (\S+)", buffer.value.decode())
        return f"MKL {found.group(1) if found else '?'} (threads: {self.lib.mkl_get_max_threads()})"

    def dot(self, a, b):
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.float32)
        self.gemm(1.0, a, b, 0.0, out)
        return out

    def sub_dot(self, alpha, a, b, out):
        self.gemm(-alpha, a, b, 1.0, out)

    def gemm(self, alpha, a, b, beta, c):
        """``c = alpha a b + beta c`` in place."""
        (m, k), n = a.shape, b.shape[1]
        assert b.shape[0] == k and c.shape == (m, n) and c.flags.c_contiguous
        assert a.dtype == b.dtype == c.dtype == np.float32
        a_ptr, a_trans, lda = self.operand(a)
        b_ptr, b_trans, ldb = self.operand(b)
        self.sgemm(
            self.ROW_MAJOR, a_trans, b_trans, m, n, k, alpha, a_ptr, lda, b_ptr, ldb, beta, c.ctypes.data, n
        )

    @classmethod
    def operand(cls, matrix):
        """``(pointer, transpose flag, leading dimension)``: a transposed view
        (``W.T``, ``x.T``) is passed as its row-major original, transposed."""
        if matrix.flags.c_contiguous:
            return matrix.ctypes.data, cls.NO_TRANS, matrix.shape[1]
        if matrix.flags.f_contiguous:
            return matrix.ctypes.data, cls.TRANS, matrix.shape[0]
        raise ValueError("cblas_sgemm needs C- or Fortran-contiguous matrices")


def find_mkl():
    """Path of pip's ``libmkl_rt`` in this environment (what sda links), or None."""
    found = sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so.*")))
    return found[-1] if found else None


class NumpyDA:
    """The step in plain numpy float32 with the hand-written backward pass;
    ``gemm`` chooses which BLAS does the matrix products."""

    def __init__(self, params, corruption, lr, gemm, seed=0):
        self.W, self.b_hid, self.b_vis = (np.array(p, dtype=np.float32) for p in params)
        self.corruption, self.lr, self.gemm = corruption, lr, gemm
        self.rng = np.random.default_rng(seed)

    def step(self, x, mask=None):
        if mask is None:
            mask = self.rng.random(x.shape, dtype=np.float32) >= self.corruption
        n, lr, W, dot = len(x), self.lr, self.W, self.gemm.dot
        x_masked = x * mask
        h = expit(dot(x_masked, W) + self.b_hid)
        a = dot(h, W.T) + self.b_vis
        cost = (np.logaddexp(0, a) - x * a).sum() / n
        d_a = (expit(a) - x) / n
        d_h = dot(d_a, W) * h * (1 - h)
        # W is tied: the encoder's and the decoder's gradients both update it.
        self.gemm.sub_dot(lr, x_masked.T, d_h, W)
        self.gemm.sub_dot(lr, d_a.T, h, W)
        self.b_hid -= lr * d_h.sum(axis=0)
        self.b_vis -= lr * d_a.sum(axis=0)
        return float(cost)

    def params(self):
        return [self.W, self.b_hid, self.b_vis]


class TorchDA:
    """The step as idiomatic PyTorch: autograd and ``torch.optim.SGD``, the
    equivalent of sda's symbolic gradient and plain SGD updates."""

    def __init__(self, params, corruption, lr, seed=0):
        self.weights = [torch.nn.Parameter(torch.tensor(np.asarray(p, dtype=np.float32))) for p in params]
        self.optimizer = torch.optim.SGD(self.weights, lr=lr)
        self.keep = 1.0 - corruption
        self.generator = torch.Generator().manual_seed(seed)

    def step(self, x, mask=None):
        x = torch.from_numpy(x)  # shares memory: no copy per step
        if mask is None:
            mask = torch.empty_like(x).bernoulli_(self.keep, generator=self.generator)
        else:
            mask = torch.from_numpy(np.asarray(mask, dtype=np.float32))
        W, b_hid, b_vis = self.weights
        h = torch.sigmoid(torch.addmm(b_hid, x * mask, W))
        a = torch.addmm(b_vis, h, W.t())
        cost = (torch.nn.functional.softplus(a) - x * a).sum(dim=1).mean()
        self.optimizer.zero_grad()
        cost.backward()
        self.optimizer.step()
        return cost.item()

    def params(self):
        return [w.detach().numpy() for w in self.weights]


def torch_blas():
    """Which BLAS and how many threads torch uses, from its build settings."""
    found = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    return f"{found.group(1) if found else '?'} built into torch (threads: {torch.get_num_threads()})"


# ------------------------------------------------------------ fine-tuning step
# The MLP of fine-tuning: sigmoid hidden layers, a softmax on top, the mean
# negative log-likelihood of the labels, plain SGD. ``params`` are in the order
# of ``SdA.params``: ``[W0, b0, W1, b1, ..., W_out, b_out]``.


class NumpyMLP:
    """The fine-tuning step in plain numpy float32 with the hand-written backward pass."""

    def __init__(self, params, lr, gemm):
        self.weights = [np.array(p, dtype=np.float32) for p in params]
        self.lr, self.gemm = np.float32(lr), gemm

    def step(self, x, y):
        dot, layers = self.gemm.dot, list(zip(self.weights[0::2], self.weights[1::2]))
        activations = [x]
        for W, b in layers[:-1]:
            activations.append(expit(dot(activations[-1], W) + b))
        logits = dot(activations[-1], layers[-1][0]) + layers[-1][1]
        logits -= logits.max(axis=1, keepdims=True)  # a stable softmax: exp never overflows
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        rows = np.arange(len(y))
        cost = -log_p[rows, y].mean()
        delta = np.exp(log_p)
        delta[rows, y] -= 1
        delta /= len(y)  # d cost / d logits
        for depth in range(len(layers) - 1, -1, -1):
            W, b = layers[depth]
            below = activations[depth]
            # The error of the layer below uses W before its update.
            below_delta = dot(delta, W.T) * below * (1 - below) if depth else None
            self.gemm.sub_dot(self.lr, below.T, delta, W)
            b -= self.lr * delta.sum(axis=0)
            delta = below_delta
        return float(cost)

    def params(self):
        return self.weights


class TorchMLP:
    """The fine-tuning step as idiomatic PyTorch: autograd, ``cross_entropy``
    and ``torch.optim.SGD``."""

    def __init__(self, params, lr):
        self.weights = [torch.nn.Parameter(torch.tensor(np.asarray(p, dtype=np.float32))) for p in params]
        self.optimizer = torch.optim.SGD(self.weights, lr=lr)

    def step(self, x, y):
        hidden = torch.from_numpy(x)  # shares memory: no copy per step
        layers = list(zip(self.weights[0::2], self.weights[1::2]))
        for W, b in layers[:-1]:
            hidden = torch.sigmoid(torch.addmm(b, hidden, W))
        logits = torch.addmm(layers[-1][1], hidden, layers[-1][0])
        cost = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y).long())
        self.optimizer.zero_grad()
        cost.backward()
        self.optimizer.step()
        return cost.item()

    def params(self):
        return [w.detach().numpy() for w in self.weights]
