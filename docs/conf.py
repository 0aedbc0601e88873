"""Sphinx configuration: an executed tutorial site built with myst-nb.

Build with ``SDA_DATA=../shared/data sphinx-build -W -b html docs docs/_build/html`` from
the repository root (``SDA_DATA``: a folder holding MNIST). Every page that is a MyST text
notebook runs top to bottom in its own kernel at build time; a cell that raises fails the
build. Each such page links its executed notebook, and every API entry its source.
"""

import os
import pathlib
import sys

import nbformat
from sphinx.errors import SphinxError

DOCS = pathlib.Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(REPO))  # autodoc imports sda from this checkout

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
    "sphinx.ext.viewcode",
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
    # The pages are listed once, in the left sidebar (book-nav.html): the header holds only the
    # title, search and the theme switch, so no menu can wrap under the title at any width;
    # "left" sizes the title's box to the title (the default squeezes it into the sidebar's width).
    "navbar_center": [],
    "navbar_align": "left",
    "secondary_sidebar_items": ["page-toc"],
    "article_header_end": ["notebook-download"],
}
html_sidebars = {"**": ["book-nav"]}
# Follow the reader's system setting; without a default the theme logs a console error on a
# reader's first visit (no stored mode yet).
html_context = {"default_mode": "auto"}
html_static_path = []
templates_path = ["_templates"]


def find_mnist(app, config) -> None:
    """Stop the build before any page runs unless MNIST is at hand, in one line.

    MNIST is found the way the tests find it: ``$SDA_DATA``, else ``../shared/data``
    beside the clone, else the library's download cache (downloading it if the
    network allows). A relative ``$SDA_DATA`` is taken from where sphinx-build was
    started, because the notebook kernels run in ``docs/``; they inherit the result.
    """
    if config.nb_execution_mode == "off":
        return
    from sda.data import DATA_ENV, DataError, DataNotFound, cache_dir, load_dataset

    shared_data = REPO.parent / "shared" / "data"
    if os.environ.get(DATA_ENV):
        os.environ[DATA_ENV] = str(pathlib.Path(os.environ[DATA_ENV]).expanduser().resolve())
    elif shared_data.is_dir():
        os.environ[DATA_ENV] = str(shared_data)
    try:
        load_dataset("mnist")
    except DataError as exc:
        if isinstance(exc, DataNotFound):
            folder = os.environ.get(DATA_ENV)
            where = f"not in {DATA_ENV}={folder}" if folder else f"{DATA_ENV} unset"
            problem = f"{where}, not in {cache_dir()}, downloading failed"
        else:
            problem = " ".join(str(exc).split())
        # One line and status 2, as the library's commands do; a SystemExit passes through
        # sphinx-build, whose own report of an exception is a page of traceback.
        print(
            f"error: the executed pages need MNIST: {problem}; set {DATA_ENV} to a folder "
            f"holding mnist.pkl.gz, as in {DATA_ENV}=../shared/data sphinx-build -W -b html docs "
            "docs/_build/html",
            file=sys.stderr,
        )
        raise SystemExit(2) from None


def offer_notebook(app, pagename, templatename, context, doctree) -> None:
    """Put an executed page's notebook beside its HTML page and hand its link to the template.

    myst-nb writes every executed page, outputs included, to ``jupyter_execute/``
    next to the HTML output; the ``notebook-download.html`` template shows the link.
    The notebook keeps the page's hidden cells, so it runs top to bottom as the page did.
    """
    from myst_nb.sphinx_ import NbMetadataCollector

    if doctree is None or not NbMetadataCollector.get_exec_data(app.env, pagename):
        return
    executed = pathlib.Path(app.outdir).parent / "jupyter_execute" / f"{pagename}.ipynb"
    if not executed.is_file():
        raise SphinxError(f"{executed} is missing; delete {pathlib.Path(app.outdir).parent} and build again")
    notebook = nbformat.read(executed, as_version=4)
    # The build's own bookkeeping (the cells' lines in the .md, its text format) means
    # nothing to a reader's Jupyter.
    notebook.metadata.pop("source_map", None)
    notebook.metadata.pop("jupytext", None)
    target = pathlib.Path(app.outdir) / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)
    context["notebook_download"] = context["pathto"](f"{pagename}.ipynb", resource=True)


def setup(app):
    app.connect("config-inited", find_mnist)
    app.connect("html-page-context", offer_notebook)
