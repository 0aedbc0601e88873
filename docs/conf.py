"""Sphinx configuration: an executed tutorial site built with myst-nb.

Build with ``sphinx-build -W -b html docs docs/_build/html`` from the repository root.
Every page that is a MyST text notebook runs top to bottom in its own kernel at build
time; a cell that raises fails the build.
"""

import os
import pathlib
import sys

DOCS = pathlib.Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(REPO))  # autodoc imports sda from this checkout

# Find MNIST the way the tests do: $SDA_DATA, else ../shared/data beside the clone.
# The notebook kernels inherit this environment.
_shared_data = REPO.parent / "shared" / "data"
if not os.environ.get("SDA_DATA") and _shared_data.is_dir():
    os.environ["SDA_DATA"] = str(_shared_data)
# Two cores, several kernels in a row: keep each library to its share.
os.environ.setdefault("OMP_NUM_THREADS", "2")

import sda  # noqa: E402  (this checkout, after the environment above is set)

project = "sda"
author = "the sda developers"
copyright = "2026, the sda developers"
release = version = sda.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx_design",
]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}

# MyST: $...$ maths, ::: fences, headings as link targets.
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# myst-nb: run every notebook page; a failing cell fails the build.
nb_execution_mode = "cache"
nb_execution_cache_path = str(DOCS / "_build" / ".jupyter_cache")
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_timeout = 600
nb_merge_streams = True

# API reference from the numpydoc docstrings.
autosummary_generate = True
# Members are listed in api.md; documenting all of them would pull in scikit-learn's
# inherited set_*_request methods, whose docstrings link to its own glossary.
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

html_theme = "pydata_sphinx_theme"
html_title = "sda: stacked denoising auto-encoders"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_static_path = []
