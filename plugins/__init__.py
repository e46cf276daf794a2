"""Built-in graph builders of lattice, installed as ``lattice_plugins``.

They use only the public ``lattice`` API (with the builder-facing parts:
:mod:`lattice.checks` for their options and targets, ``GraphBatch.from_valid`` for
the arrays the ``ctc`` batch builder makes valid itself) and are registered through the
``lattice.graphs`` entry points in pyproject.toml, exactly as a third-party plugin.
"""
