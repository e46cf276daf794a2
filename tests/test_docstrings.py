"""Every docstring example of the installed package runs and prints what it shows."""

import doctest
import importlib
import pkgutil

import pytest

import lattice
import lattice_plugins


def _modules():
    for package in (lattice, lattice_plugins):
        yield package.__name__
        # walk_packages: subpackages too (lattice.backends)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not info.name.rsplit(".", 1)[-1].startswith("_core"):
                yield info.name


@pytest.fixture
def restore_registry_and_threads():
    explicit = dict(lattice.registry._explicit)
    yield
    lattice.registry._explicit.clear()
    lattice.registry._explicit.update(explicit)
    lattice.set_num_threads(None)


@pytest.mark.parametrize("name", sorted(set(_modules())))
def test_docstring_examples(name, restore_registry_and_threads):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_every_public_function_has_an_example():
    missing = []
    for name in lattice.__all__:
        obj = getattr(lattice, name)
        if callable(obj) and not isinstance(obj, type(lattice)):
            if ">>>" not in (obj.__doc__ or ""):
                missing.append(name)
    assert not missing, f"public callables without a docstring example: {missing}"
