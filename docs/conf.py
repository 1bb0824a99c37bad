"""Sphinx configuration for mcscore's documentation.

Build: ``pip install ".[docs]" && make -C docs html`` (warnings are errors).
The gallery runs every script in ``examples/`` with ``--quick`` unless
``MCSCORE_DOCS_FULL=1`` is set; the API pages are generated from the
package's ``__all__`` lists, so a new public name appears without editing
this directory.
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import mcscore  # noqa: E402
import _apigen  # noqa: E402

project = "mcscore"
author = "the mcscore developers"
copyright = "2026, the mcscore developers"
release = mcscore.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip"]
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

# API reference: one page per public object, generated from __all__.
_apigen.write_api(HERE / "api")
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
# The optional bridges import their framework at import time; the API pages
# are built without PyTorch or JAX installed.
autodoc_mock_imports = list(_apigen.MOCKED)
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# The gallery: the scripts in examples/, each run once (quick mode unless
# MCSCORE_DOCS_FULL=1), their printed output and figures captured.
# (_sg.argv: a name, not a function object, so the configuration pickles.)

sphinx_gallery_conf = {
    "examples_dirs": str(HERE.parent / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r".*\.py$",
    "ignore_pattern": r"(setup\.py|__init__\.py|/_[^/]*\.py)$",
    "reset_argv": "_sg.argv",
    "image_scrapers": ("matplotlib", "_sg.written_figures"),
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "plot_gallery": "True",
    "abort_on_example_error": True,
    "show_memory": False,
    "min_reported_time": 3600,
}

html_theme = "alabaster"
html_title = f"mcscore {release}"
html_static_path = []
nitpicky = False
