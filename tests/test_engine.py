"""The engine set-up: float32, backend choice, the user's own PyTensor settings, use_mode."""

import json
import os
import subprocess
import sys

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from sda import engine
from sda.errors import SdAError

SHOW_CONFIG = (
    "import json, pytensor, sda; c = pytensor.config; print(json.dumps({"
    "'mode': str(c.mode), 'linker': c.linker, 'floatX': c.floatX, 'ldflags': c.blas__ldflags, "
    "'backend': sda.BACKEND}))"
)


def config_after_import(tmp_path, **env):
    """PyTensor's settings after ``import sda`` in a fresh process with ``env`` added."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTENSOR_FLAGS", "PYTENSORRC", engine.MODE_ENV, engine.BLAS_ENV)
    }
    clean["PYTENSORRC"] = str(tmp_path / "no-such-rc")  # neither ~/.pytensorrc nor the caller's
    done = subprocess.run(
        [sys.executable, "-c", SHOW_CONFIG], env={**clean, **env}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture
def restore_mode(monkeypatch):
    """Undo use_mode's changes after the test."""
    monkeypatch.setattr(pytensor.config, "mode", pytensor.config.mode)
    monkeypatch.setattr(pytensor.config, "blas__ldflags", pytensor.config.blas__ldflags)
    monkeypatch.setattr(engine, "BACKEND", engine.BACKEND)


def test_float32_and_backend_are_set_without_environment_flags():
    assert "PYTENSOR_FLAGS" not in os.environ
    assert pytensor.config.floatX == "float32"
    assert pytensor.config.mode in ("CVM", "NUMBA")
    assert engine.BACKEND.endswith("; float32")
    if pytensor.config.mode == "CVM":
        assert pytensor.config.blas__ldflags
        assert engine.BACKEND.startswith("C backend (CVM) with BLAS: ")


def test_settings_the_user_made_in_pytensor_flags_are_kept(tmp_path):
    config = config_after_import(
        tmp_path, PYTENSOR_FLAGS="floatX=float64,mode=FAST_COMPILE,blas__ldflags=-lmyblas"
    )
    assert (config["floatX"], config["mode"], config["ldflags"]) == ("float64", "FAST_COMPILE", "-lmyblas")
    assert config["backend"].startswith("PyTensor mode FAST_COMPILE (set by the user); float64")
    assert "kept from PYTENSOR_FLAGS/.pytensorrc: floatX=float64, blas__ldflags=-lmyblas" in config["backend"]


def test_settings_the_user_made_in_a_pytensorrc_are_kept(tmp_path):
    rc = tmp_path / "pytensorrc"
    rc.write_text("[global]\nfloatX = float64\nlinker = py\n\n[blas]\nldflags = -lmyblas\n")
    config = config_after_import(tmp_path, PYTENSORRC=str(rc))
    # A linker of the user's own only applies while the mode is PyTensor's default, "Mode".
    assert (config["floatX"], config["linker"], config["mode"]) == ("float64", "py", "Mode")
    assert config["ldflags"] == "-lmyblas"
    assert config["backend"].startswith("PyTensor mode Mode with linker py (set by the user)")


def test_sda_mode_picks_the_backend_and_keeps_the_users_float_type(tmp_path):
    config = config_after_import(tmp_path, SDA_MODE="numba", PYTENSOR_FLAGS="floatX=float64")
    assert (config["mode"], config["floatX"]) == ("NUMBA", "float64")
    assert config["backend"].startswith("Numba (set by $SDA_MODE); float64")


def test_without_blas_it_warns_and_falls_back_to_numba(monkeypatch):
    monkeypatch.setattr(engine, "_mkl_ldflags", lambda: None)
    monkeypatch.setattr(engine, "_system_blas_ldflags", lambda: None)
    monkeypatch.delenv(engine.BLAS_ENV, raising=False)
    with pytest.warns(RuntimeWarning, match="no BLAS library could be linked"):
        mode, ldflags, description = engine._choose_backend({})
    assert (mode, ldflags) == ("NUMBA", "")
    assert "Numba" in description


def test_mkl_from_pip_is_found_when_installed():
    if not any(name.startswith("libmkl_rt") for name in os.listdir(os.path.join(sys.prefix, "lib"))):
        pytest.fail("this test expects pip's mkl wheel, which requirements.txt installs on x86_64 Linux")
    flags = engine._mkl_ldflags()
    assert "-l:libmkl_rt" in flags and "-rpath" in flags


def test_use_mode_switches_the_backend_for_later_graphs(restore_mode):
    before = engine.BACKEND
    assert engine.use_mode(None) == before
    assert engine.use_mode("numba") == engine.BACKEND == "Numba (chosen); float32"
    assert pytensor.config.mode == "NUMBA" and not engine.uses_jax()
    description = engine.use_mode("C")  # names are case-insensitive
    assert pytensor.config.mode == "CVM"
    assert description.startswith("C backend (CVM) with BLAS: ") and pytensor.config.blas__ldflags


def test_use_mode_refuses_what_cannot_run(restore_mode, monkeypatch):
    mode = pytensor.config.mode
    with pytest.raises(SdAError, match="unknown mode 'gpu': choose one of c, numba, jax"):
        engine.use_mode("gpu")
    real_find_spec = engine.importlib.util.find_spec
    monkeypatch.setattr(
        engine.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "jax" else real_find_spec(name, *a),
    )
    with pytest.raises(SdAError, match=r"pip install 'sda-pytensor\[jax\]'"):
        engine.use_mode("jax")
    assert pytensor.config.mode == mode  # nothing changed


@pytest.mark.parametrize("name", ["c", "numba"])
def test_batched_function_feeds_each_minibatch_the_last_one_short(name, restore_mode):
    engine.use_mode(name)
    data = pytensor.shared(np.arange(14, dtype="float32").reshape(7, 2))
    index, rows, scale = pt.lscalar("index"), pt.matrix("rows"), pt.scalar("scale")
    total = engine.batched_function(index, [scale], scale * rows.sum(), {rows: data}, batch_size=3)
    # Small integers and their sums are exact in float32, so this is exact on any machine.
    assert [float(total(i, 2.0)) for i in range(3)] == [30.0, 102.0, 50.0]


def test_the_library_still_trains_on_the_numba_backend(tmp_path):
    """The path a machine without BLAS takes: same code, other backend."""
    env = {**os.environ, engine.MODE_ENV: "numba"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sda.run",
            "--preset",
            "demo",
            "--pretrain-epochs",
            "1",
            "--finetune-epochs",
            "3",
            "--out",
            str(tmp_path),
            "--name",
            "numba",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    assert "sda: Numba (set by $SDA_MODE)" in done.stdout
    summary = json.loads((tmp_path / "numba" / "summary.json").read_text())
    assert summary["test_error"] < 0.5  # 90 % is chance; about 12 % after 3 epochs on the C backend
