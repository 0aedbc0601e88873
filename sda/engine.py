"""PyTensor set-up: float32, the fastest CPU backend we can get, and its BLAS.

This is the only module that changes ``pytensor.config``. Importing ``sda``
imports it once, so users never need ``PYTENSOR_FLAGS``.

Why the C backend ("CVM") and not PyTensor's default Numba linker: with
MKL linked, one dA step (784 -> 1000, float32) ran 8.6x, 1.5x and 1.15x
faster than with Numba at batch sizes 1, 20 and 100 on a 2-core AMD EPYC
(``SDA_MODE=NUMBA python -m bench.pretrain`` measures the Numba side); the
gain is largest at batch 1, where Numba's per-call overhead dominates.
Without a linkable BLAS the C backend falls back to NumPy C-API calls that
are slower than Numba (58 vs 256 samples/s at batch 1), so there we keep Numba.
"""

import ctypes.util
import glob
import logging
import os
import sys
import warnings

import pytensor

FLOATX = "float32"
BLAS_ENV = "SDA_BLAS_LDFLAGS"  # override the detected BLAS link flags
MODE_ENV = "SDA_MODE"  # override the chosen mode, e.g. "NUMBA" to compare


def _mkl_ldflags():
    """Link flags for pip's ``mkl`` wheel, which installs into ``<prefix>/lib``."""
    libdir = os.path.join(sys.prefix, "lib")
    for pattern in ("libmkl_rt.so.*", "libmkl_rt.*.dylib", "libmkl_rt.so", "libmkl_rt.dylib"):
        found = sorted(glob.glob(os.path.join(libdir, pattern)))
        if found:
            # '-l:NAME' links the versioned file the wheel ships (there is no
            # unversioned symlink); the rpath lets the compiled module find it.
            name = os.path.basename(found[-1])
            return f"-L{libdir} -l:{name} -Xlinker -rpath -Xlinker {libdir}"
    return None


def _system_blas_ldflags():
    """Link flags for a system BLAS PyTensor does not find by itself."""
    for name in ("openblas", "blas"):
        if ctypes.util.find_library(name):
            return f"-l{name}"
    return None


def _choose_backend():
    """Return ``(mode, ldflags, description)`` for this machine."""
    forced_mode = os.environ.get(MODE_ENV)
    ldflags = os.environ.get(BLAS_ENV) or _mkl_ldflags() or _system_blas_ldflags()
    if forced_mode:
        return forced_mode, ldflags or "", f"{forced_mode} (set by ${MODE_ENV})"
    if not pytensor.config.cxx:
        return "NUMBA", "", "Numba (no C++ compiler found for the C backend)"
    if ldflags is None:
        warnings.warn(
            "sda: no BLAS library could be linked, so the C backend would be slow; "
            "using PyTensor's Numba backend instead. For 2-5x faster training on "
            "x86_64 Linux run `pip install mkl`, or install OpenBLAS "
            "(e.g. `apt-get install libopenblas-dev`), or set "
            f"{BLAS_ENV} to your BLAS link flags.",
            RuntimeWarning,
            stacklevel=3,
        )
        return "NUMBA", "", "Numba (no BLAS found)"
    return "CVM", ldflags, f"C backend (CVM) with BLAS: {ldflags}"


class _QuietBlasCheck(logging.Filter):
    """Hide PyTensor's false alarm: it looks for a file ending in ``.so`` and
    does not recognise the versioned ``libmkl_rt.so.3`` the wheel ships."""

    def filter(self, record):
        return "did not find a dynamic library" not in record.getMessage()


def configure():
    """Apply the float type, mode and BLAS flags; return a one-line description."""
    mode, ldflags, description = _choose_backend()
    pytensor.config.floatX = FLOATX
    pytensor.config.mode = mode
    if ldflags:
        pytensor.config.blas__ldflags = ldflags
    logging.getLogger("pytensor.tensor.blas").addFilter(_QuietBlasCheck())
    return description


BACKEND = configure()
