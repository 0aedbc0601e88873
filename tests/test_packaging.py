"""What a normal (non-editable) install gets, and version floors that can be met.

CI (.ci/run) also installs the built wheel in a fresh venv and runs every command's --help.
"""

import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

import sda

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def floor(specifier):
    """The lowest version a specifier set allows through its ``>=`` clauses (0 if none)."""
    return max([Version(s.version) for s in specifier if s.operator == ">="], default=Version("0"))


def test_the_wheel_holds_every_module_of_the_source(tmp_path):
    # Built from a copy, so a stale build/ folder in the clone cannot add modules.
    source = tmp_path / "source"
    shutil.copytree(ROOT / "sda", source / "sda", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        check=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("sda_pytensor-*.whl")
    assert wheel.name.startswith(f"sda_pytensor-{sda.__version__}-")  # pyproject.toml reads sda.__version__
    packed = {name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("sda/")}
    expected = {path.relative_to(source).as_posix() for path in (source / "sda").rglob("*.py")}
    assert "sda/experiments/baseline.py" in expected
    assert packed == expected


def test_python_and_numpy_floors_are_at_least_pytensors():
    pytensor = importlib.metadata.metadata("pytensor")
    ours = {Requirement(r).name: Requirement(r) for r in PROJECT["dependencies"]}
    assert "pytensor" in ours
    # Every pytensor ours allows needs what the installed one needs (3.0.x share their floors).
    assert floor(Requirement(f"python{PROJECT['requires-python']}").specifier) >= floor(
        Requirement(f"python{pytensor['Requires-Python']}").specifier
    )
    theirs = [Requirement(r) for r in importlib.metadata.requires("pytensor") if "extra" not in r]
    shared = [r for r in theirs if r.name in ours]
    assert "numpy" in {r.name for r in shared}
    for requirement in shared:
        assert floor(ours[requirement.name].specifier) >= floor(requirement.specifier), requirement


def test_the_jax_extra_installs_what_use_mode_jax_needs():
    extras = PROJECT["optional-dependencies"]
    assert [Requirement(r).name for r in extras["jax"]] == ["jax"]


def test_every_install_line_names_this_distribution():
    # "sda" on PyPI is an unrelated package: "sda[jax]" or "pip install -U sda" would fetch it.
    assert PROJECT["name"] == "sda-pytensor"
    unrelated = re.compile(r"(?<![\w./-])sda\[|pip install[^'\"`&;|]*?(?<![\w./-])sda(?![\w.-])")
    texts = [
        ROOT / "README.md",
        ROOT / "pyproject.toml",
        ROOT / ".ci" / "run",
        *(ROOT / "sda").rglob("*.py"),
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "tests").glob("*.py"),
    ]
    wrong = [
        f"{path.relative_to(ROOT)}: {line.strip()}"
        for path in texts
        if path != Path(__file__)
        for line in path.read_text().splitlines()
        if unrelated.search(line)
    ]
    assert wrong == []
