"""Fixtures shared by the test modules."""

import contextlib

import pytest

import lattice


@pytest.fixture
def cpu_options():
    """Set options of the cpu backend for the rest of one test.

    ``cpu_options(banded=False, ell_max_degree=0)`` runs the test's later engine
    calls on the CSR loops; everything is restored when the test ends (see
    ``CPUBackend.options``).
    """
    cpu = lattice.backends.get_backend("cpu")
    with contextlib.ExitStack() as stack:
        yield lambda **changes: stack.enter_context(cpu.options(**changes))
