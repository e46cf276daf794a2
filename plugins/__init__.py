"""Built-in graph builders of lattice, installed as ``lattice_plugins``.

They use only the public ``lattice`` API and are registered through the
``lattice.graphs`` entry points in pyproject.toml, exactly as a third-party plugin.
"""
