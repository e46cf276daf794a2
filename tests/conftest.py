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


@pytest.fixture
def log_space_recomputations(monkeypatch):
    """The sizes of the batches the cpu backend recomputes with the float64
    log-space kernel for the rest of one test (the examples the probability-space
    check refuses, or that no path fits), in call order."""
    from lattice.backends import cpu as cpu_module

    sizes = []
    real = cpu_module.CPUBackend._forward_backward_log

    def spy(self, problem, checkpoint):
        sizes.append(len(problem.lengths))
        return real(self, problem, checkpoint)

    monkeypatch.setattr(cpu_module.CPUBackend, "_forward_backward_log", spy)
    return sizes

