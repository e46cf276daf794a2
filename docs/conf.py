"""Sphinx configuration for lattice's documentation.

Build with warnings as errors, as CI does::

    pip install ".[docs]"
    sphinx-build -W -b html docs docs/_build/html

The API reference is generated from the docstrings of the *installed* package
(numpydoc format), so install lattice first; this file does not put the source folder
on ``sys.path`` (it has no compiled kernels unless built in place).
"""

import importlib.util
import os

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

import lattice

project = "lattice"
author = "the lattice developers"
copyright = "the lattice developers, BSD-3-Clause"
release = lattice.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "numpydoc",
    "matplotlib.sphinxext.plot_directive",
]

exclude_patterns = ["_build"]
root_doc = "index"
html_theme = "alabaster"
html_theme_options = {"description": "alignment lattices, fast", "fixed_sidebar": True}
html_static_path = []

# API reference: numpydoc renders the docstrings; class members are documented
# explicitly in api.rst, so numpydoc must not add autosummary tables of them
autodoc_member_order = "bysource"
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
# torch is optional: document lattice.torch even where it is not installed
autodoc_mock_imports = [] if importlib.util.find_spec("torch") else ["torch"]

# figures drawn at build time (the plots are cheap numpy + matplotlib)
plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 110)]
plot_rcparams = {"figure.autolayout": False}

pygments_style = "sphinx"


class CommandHelp(SphinxDirective):
    """``.. command-help:: NAME``: the ``--help`` text of ``lattice NAME``, as built.

    Keeps the command-line reference identical to what the installed command prints.
    """

    required_arguments = 1

    def run(self):
        from lattice.cli import build_parser

        previous = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = "88"
        try:
            parser = build_parser()
            if self.arguments[0] == "lattice":
                text = parser.format_help()
            else:
                subparsers = next(
                    a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"
                )
                text = subparsers.choices[self.arguments[0]].format_help()
        finally:
            if previous is None:
                os.environ.pop("COLUMNS", None)
            else:
                os.environ["COLUMNS"] = previous
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app):
    app.add_directive("command-help", CommandHelp)
