"""The backend seam as a second backend sees it: dispatch by array type, the
interface's methods, and a backend that leaves the alignment distribution out."""

import numpy as np
import pytest

import lattice
from lattice.backends import Backend, get_backend, register_backend, unregister_backend


class FakeArray(np.ndarray):
    """A numpy array whose type lives in another package (as cupy.ndarray would)."""


FakeArray.__module__ = "fake_arrays.core"


class ForwardOnly(Backend):
    """A backend that computes forward scores with the CPU kernels and nothing else:
    what a partial GPU backend looks like to the engine."""

    name = "forward-only"

    def __init__(self):
        self.problems = []

    def forward(self, problem, semiring):
        self.problems.append(problem)
        return get_backend("cpu").forward(problem, semiring)


@pytest.fixture
def forward_only():
    register_backend("forward-only", ForwardOnly, ["fake_arrays"])
    try:
        yield get_backend("forward-only")
    finally:
        unregister_backend("forward-only")


def _inputs():
    rng = np.random.default_rng(0)
    e = np.log(rng.dirichlet(np.ones(3), size=(2, 6))).view(FakeArray)
    return e, lattice.build("ctc", [1, 2])


def test_arrays_of_a_registered_package_go_to_its_backend(forward_only):
    e, g = _inputs()
    scores = lattice.forward(e, g)
    assert len(forward_only.problems) == 1
    np.testing.assert_array_equal(scores, lattice.forward(np.asarray(e), g))


@pytest.mark.parametrize("call, what", [
    (lambda e, g: lattice.sample(e, g, 3, seed=0), r"sampling \(lattice.sample\)"),
    (lambda e, g: lattice.kbest(e, g, 2), r"k-best paths \(lattice.kbest\)"),
    (lambda e, g: lattice.entropy(e, g), r"entropy and token posteriors"),
    (lambda e, g: lattice.token_posteriors(e, g), r"entropy and token posteriors"),
])
def test_a_backend_without_the_distribution_says_what_it_lacks(forward_only, call, what):
    e, g = _inputs()
    with pytest.raises(NotImplementedError, match=r"'forward-only' backend does not "
                                                  r"implement " + what):
        call(e, g)


def test_the_base_class_leaves_every_method_to_the_backend(forward_only):
    e, g = _inputs()
    for call in (lambda: lattice.forward_backward(e, g), lambda: lattice.viterbi(e, g)):
        with pytest.raises(NotImplementedError):
            call()
