"""The engine set-up: float32, backend choice, and the no-BLAS fallback."""

import os
import subprocess
import sys

import pytensor
import pytest

from sda import engine


def test_float32_and_backend_are_set_without_environment_flags():
    assert "PYTENSOR_FLAGS" not in os.environ
    assert pytensor.config.floatX == "float32"
    assert pytensor.config.mode in ("CVM", "NUMBA")
    if pytensor.config.mode == "CVM":
        assert pytensor.config.blas__ldflags


def test_without_blas_it_warns_and_falls_back_to_numba(monkeypatch):
    monkeypatch.setattr(engine, "_mkl_ldflags", lambda: None)
    monkeypatch.setattr(engine, "_system_blas_ldflags", lambda: None)
    monkeypatch.delenv(engine.BLAS_ENV, raising=False)
    monkeypatch.delenv(engine.MODE_ENV, raising=False)
    with pytest.warns(RuntimeWarning, match="no BLAS library could be linked"):
        mode, ldflags, description = engine._choose_backend()
    assert (mode, ldflags) == ("NUMBA", "")
    assert "Numba" in description


def test_mkl_from_pip_is_found_when_installed():
    if not any(name.startswith("libmkl_rt") for name in os.listdir(os.path.join(sys.prefix, "lib"))):
        pytest.fail("this test expects pip's mkl wheel, which requirements.txt installs on x86_64 Linux")
    flags = engine._mkl_ldflags()
    assert "-l:libmkl_rt" in flags and "-rpath" in flags


def test_the_library_still_trains_on_the_numba_backend(tmp_path):
    """The path a machine without BLAS takes: same code, other backend."""
    env = {**os.environ, engine.MODE_ENV: "NUMBA"}
    done = subprocess.run(
        [sys.executable, "-m", "sda.run", "--preset", "demo", "--pretrain-epochs", "1",
         "--finetune-epochs", "3", "--out", str(tmp_path), "--name", "numba"],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr
    assert "NUMBA" in done.stdout
    assert (tmp_path / "numba" / "summary.json").exists()
